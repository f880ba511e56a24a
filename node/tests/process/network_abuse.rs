//! What hostile peers, lying relays and sybils do to a node's networking, and
//! that it stays reachable and in touch with its rooms.

use futures::StreamExt;
use libp2p::multiaddr::Protocol;
use libp2p::swarm::SwarmEvent;
use libp2p::{ping, request_response};
use palaver_proto::line::Event;
use palaver_testkit::lying_autonat::{LyingAutonatBehaviourEvent, dial_back_claim, lying_autonat};
use palaver_testkit::lying_relay::{
    DISCOVER, Lies, LyingBehaviourEvent, answer, kind, lying_relay,
};
use palaver_testkit::{Node, PROMPT};
use tokio::runtime::Runtime;

/// A room name of 60 characters: long topics make a big hello.
fn long_room(i: usize) -> String {
    format!("room-{i:03}-{}", "x".repeat(51))
}

#[test]
fn a_node_in_250_rooms_with_long_names_is_heard_by_a_peer_that_connects_later() {
    let test = "many-rooms";
    let mut busy = Node::start(test, "busy", &[]);
    let rooms: Vec<String> = (0..250).map(long_room).collect();
    for room in &rooms {
        assert_eq!(
            busy.command(&format!("/join {room}"))["event"],
            "ok",
            "{room}"
        );
    }
    // The peer connects after busy is in every room: busy greets it with one
    // hello naming all 250 topics (about 21 KB).
    let last = rooms.last().unwrap();
    let mut peer = Node::start(test, "peer", &["--bootstrap", &busy.addr("tcp")]);
    assert_eq!(peer.command(&format!("/join {last}"))["event"], "ok");
    // The peer must know busy listens on the room: else nothing it sends
    // there (its presence included) reaches busy.
    busy.wait_joined(last, &peer.peer_id);
    peer.wait_joined(last, &busy.peer_id);
    assert_eq!(
        peer.command(&format!("/send {last} from the peer"))["event"],
        "sent"
    );
    busy.wait_for_event(
        "the peer's message",
        PROMPT,
        |e| matches!(e, Event::Message(m) if m.text.as_str() == "from the peer"),
    );
    assert_eq!(
        busy.command(&format!("/send {last} from busy"))["event"],
        "sent"
    );
    peer.wait_for_event(
        "busy's message",
        PROMPT,
        |e| matches!(e, Event::Message(m) if m.text.as_str() == "from busy"),
    );
}

/// A lying relay on loopback, run on `rt`: its address (with its peer id),
/// and a channel told the kind of every rendezvous request it answered.
fn start_lying_relay(rt: &Runtime, lies: Lies) -> (String, std::sync::mpsc::Receiver<u64>) {
    let _guard = rt.enter();
    let key = libp2p::identity::Keypair::generate_ed25519();
    let id = key.public().to_peer_id();
    let mut swarm = lying_relay(key).unwrap();
    swarm
        .listen_on("/ip4/127.0.0.1/tcp/0".parse().unwrap())
        .unwrap();
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let (answered_tx, answered_rx) = std::sync::mpsc::channel();
    rt.spawn(async move {
        loop {
            match swarm.select_next_some().await {
                SwarmEvent::NewListenAddr { address, .. } => {
                    // A relay offers circuits once it knows where it is reachable.
                    swarm.add_external_address(address.clone());
                    let _ = addr_tx.send(address.with(Protocol::P2p(id)));
                }
                SwarmEvent::Behaviour(LyingBehaviourEvent::Rendezvous(
                    request_response::Event::Message {
                        message:
                            request_response::Message::Request {
                                request, channel, ..
                            },
                        ..
                    },
                )) => {
                    if let Some(answer) = answer(&request, &lies) {
                        let _ = swarm
                            .behaviour_mut()
                            .rendezvous
                            .send_response(channel, answer);
                        let _ = answered_tx.send(kind(&request).unwrap_or(u64::MAX));
                    }
                }
                _ => {}
            }
        }
    });
    let addr = addr_rx.recv_timeout(PROMPT).unwrap();
    (addr.to_string(), answered_rx)
}

/// A TCP listener on loopback and a channel told of each connection to it.
fn bait() -> (std::net::SocketAddr, std::sync::mpsc::Receiver<()>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            drop(conn);
            if tx.send(()).is_err() {
                break;
            }
        }
    });
    (addr, rx)
}

#[test]
fn a_relay_handing_out_registrations_that_live_forever_does_not_take_the_node_down() {
    let rt = Runtime::new().unwrap();
    let (bait_addr, dialled) = bait();
    let lies = Lies {
        ttl: u64::MAX,
        peers: 2,
        addrs: vec![
            format!("/ip4/127.0.0.1/tcp/{}", bait_addr.port())
                .parse()
                .unwrap(),
        ],
    };
    let (relay, _answered) = start_lying_relay(&rt, lies);
    let mut node = Node::start("forever-ttl", "node", &["--bootstrap", &relay]);
    assert_eq!(node.command("/join lobby")["event"], "ok");
    // The node dials what the relay's discover answer names: it has read
    // the answer, registrations of u64::MAX seconds included.
    if dialled.recv_timeout(PROMPT).is_err() {
        panic!(
            "the node never dialled the discovered peers; exited: {:?}; stderr: {}",
            node.exited(),
            node.stderr_tail()
        );
    }
    // It keeps serving: it answers, and sends.
    assert_eq!(node.command("/id")["event"], "id", "{}", node.stderr_tail());
    assert_eq!(node.command("/send lobby still here")["event"], "sent");
    assert_eq!(node.exited(), None, "{}", node.stderr_tail());
}

#[test]
fn a_connected_stranger_cannot_tell_the_node_it_is_public_nor_where_it_is_reachable() {
    let rt = Runtime::new().unwrap();
    let claim: libp2p::Multiaddr = "/ip4/6.6.6.6/tcp/6666".parse().unwrap();
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let (asked_tx, asked) = std::sync::mpsc::channel();
    let (pinged_tx, pinged) = std::sync::mpsc::channel();
    {
        let _guard = rt.enter();
        let key = libp2p::identity::Keypair::generate_ed25519();
        let id = key.public().to_peer_id();
        let mut swarm = lying_autonat(key).unwrap();
        swarm
            .listen_on("/ip4/127.0.0.1/tcp/0".parse().unwrap())
            .unwrap();
        let answer = dial_back_claim(&claim);
        rt.spawn(async move {
            loop {
                match swarm.select_next_some().await {
                    SwarmEvent::NewListenAddr { address, .. } => {
                        let _ = addr_tx.send(address.with(Protocol::P2p(id)));
                    }
                    SwarmEvent::Behaviour(LyingAutonatBehaviourEvent::Autonat(
                        request_response::Event::Message {
                            message: request_response::Message::Request { channel, .. },
                            ..
                        },
                    )) => {
                        let _ = swarm
                            .behaviour_mut()
                            .autonat
                            .send_response(channel, answer.clone());
                        let _ = asked_tx.send(());
                    }
                    SwarmEvent::Behaviour(LyingAutonatBehaviourEvent::Ping(ping::Event {
                        result: Ok(_),
                        ..
                    })) => {
                        let _ = pinged_tx.send(());
                    }
                    _ => {}
                }
            }
        });
    }
    let stranger = addr_rx.recv_timeout(PROMPT).unwrap().to_string();
    let mut node = Node::start("autonat-liar", "node", &["--bootstrap", &stranger]);
    // Three ping rounds, 2 s apart, from when the two connected: the node's
    // AutoNAT made its first probe 2 s after it started, and would have
    // asked the stranger (its only peer) then.
    for _ in 0..3 {
        pinged.recv_timeout(PROMPT).unwrap();
    }
    assert!(
        asked.try_recv().is_err(),
        "the node asked a stranger whether it is reachable"
    );
    let id = node.command("/id");
    assert_ne!(id["nat"], "public", "{id}");
    let external = id["external"].as_array().unwrap();
    assert!(
        !external
            .iter()
            .any(|a| a.as_str().unwrap().contains("6.6.6.6")),
        "{id}"
    );
}

#[test]
fn strangers_connecting_under_fresh_ids_from_one_host_cannot_keep_a_node_from_its_bootstrap_peer() {
    let test = "eclipse";
    // The bootstrap peer's port, free for now: the node's first dials fail
    // and it keeps trying, with its backoff.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let b_dir = palaver_testkit::temp_dir(test, "bootstrap");
    let listen = format!("/ip4/127.0.0.1/tcp/{port}");
    // Its identity first, to name it in the node's --bootstrap.
    let b_id = {
        let mut b = Node::spawn(
            "bootstrap-first",
            b_dir.clone(),
            &["--json", "--no-mdns", "--listen", &listen],
        );
        let id = b.peer_id.clone();
        assert!(b.close_and_wait().success());
        id
    };
    let mut node = Node::start(
        test,
        "node",
        &[
            "--max-connections",
            "40",
            "--bootstrap",
            &format!("{listen}/p2p/{b_id}"),
        ],
    );
    let addr: libp2p::Multiaddr = node.addr("quic-v1").parse().unwrap();
    // 60 strangers, each under a fresh id, from one host.
    let rt = Runtime::new().unwrap();
    let (connected_tx, connected) = std::sync::mpsc::channel();
    for _ in 0..60 {
        let _guard = rt.enter();
        let mut swarm = palaver_testkit::raw_peer::raw_swarm(
            libp2p::identity::Keypair::generate_ed25519(),
            Default::default(),
        )
        .unwrap();
        swarm.dial(addr.clone()).unwrap();
        let tx = connected_tx.clone();
        rt.spawn(async move {
            loop {
                match swarm.select_next_some().await {
                    SwarmEvent::ConnectionEstablished { .. } => {
                        let _ = tx.send(true);
                    }
                    SwarmEvent::OutgoingConnectionError { .. } => {
                        let _ = tx.send(false);
                    }
                    _ => {}
                }
            }
        });
    }
    // Every stranger's dial ended, one way or the other.
    for _ in 0..60 {
        connected.recv_timeout(PROMPT).unwrap();
    }
    // The bootstrap peer comes up: the node reaches it on its next try.
    let b = Node::spawn(
        "bootstrap",
        b_dir,
        &["--json", "--no-mdns", "--listen", &listen],
    );
    node.wait_for_event(
        "connected to its bootstrap peer",
        std::time::Duration::from_secs(90),
        |e| matches!(e, Event::PeerConnected { peer_id, .. } if *peer_id == b.peer_id),
    );
    let peers = node.command("/peers");
    let strangers = peers["peers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["peer_id"] != b.peer_id.as_str())
        .count();
    // --max-connections 40: 30 inbound, a sixth of them from one address.
    assert!(
        strangers <= 5,
        "{strangers} strangers from one host were let in: {peers}"
    );
}

#[test]
fn a_relay_naming_made_up_members_at_someone_elses_address_gets_few_dials_sent_there() {
    let rt = Runtime::new().unwrap();
    // Someone else's host: eight ports, each counting connections to it.
    let (count_tx, counted) = std::sync::mpsc::channel();
    let mut addrs = Vec::new();
    for _ in 0..8 {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        addrs.push(
            format!(
                "/ip4/127.0.0.1/tcp/{}",
                listener.local_addr().unwrap().port()
            )
            .parse()
            .unwrap(),
        );
        let tx = count_tx.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                drop(conn);
                if tx.send(()).is_err() {
                    break;
                }
            }
        });
    }
    // Each discover answer: 64 fresh made-up members at all eight ports.
    let lies = Lies {
        ttl: 7200,
        peers: 64,
        addrs,
    };
    let (relay, answered) = start_lying_relay(&rt, lies);
    let mut node = Node::start("reflector", "node", &["--bootstrap", &relay]);
    assert_eq!(node.command("/join lobby")["event"], "ok");
    // The node dials what an answer names; once it has asked again twice,
    // it has read at least one answer whole and started all its dials.
    counted.recv_timeout(PROMPT).unwrap();
    let mut discovers = 0;
    while discovers < 2 {
        if answered.recv_timeout(PROMPT).unwrap() == DISCOVER {
            discovers += 1;
        }
    }
    let dialled = 1 + counted.try_iter().count();
    // At most 16 members an answer, four addresses each, 128 dials a minute.
    assert!(
        dialled <= 128,
        "{dialled} connections sent to someone else's host"
    );
    assert_eq!(node.command("/id")["event"], "id");
}
