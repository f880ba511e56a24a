//! Peers that publish garbage, unsigned or oversized gossip into a room are
//! refused and scored down; the node keeps delivering honest messages.

use std::time::Instant;

use futures::StreamExt;
use libp2p::PeerId;
use libp2p::gossipsub;
use libp2p::swarm::SwarmEvent;
use palaver_proto::envelope::Envelope;
use palaver_proto::wire::{Body, Payload};
use palaver_testkit::raw_peer::{RawBehaviourEvent, RawPeerOptions, raw_peer_in_room};
use palaver_testkit::{Node, PROMPT};
use tokio::runtime::Runtime;
use tokio::sync::mpsc;

/// A bare gossipsub peer, driven on the runtime, that publishes whatever bytes
/// it is given into the lobby topic, with no checks of its own. Palaver's
/// gossip is anonymous (the envelope carries the signature); a raw peer made
/// with `gossip_signed` adds gossipsub's own signature, which nodes refuse.
struct RawPeer {
    id: PeerId,
    key: libp2p::identity::Keypair,
    publish: mpsc::UnboundedSender<Vec<u8>>,
    task: tokio::task::JoinHandle<()>,
}

impl RawPeer {
    /// Connects to `node` at `addr`; returns once the node's subscription to the lobby is seen.
    fn join(rt: &Runtime, gossip_signed: bool, addr: &str, node: &str) -> RawPeer {
        let node: PeerId = node.parse().unwrap();
        let _guard = rt.enter();
        let key = libp2p::identity::Keypair::generate_ed25519();
        let options = RawPeerOptions {
            signed_gossip: gossip_signed,
            ..RawPeerOptions::default()
        };
        let (mut swarm, topic) =
            raw_peer_in_room(key.clone(), options, "lobby", addr.parse().unwrap()).unwrap();
        let id = *swarm.local_peer_id();
        let (publish, mut to_publish) = mpsc::unbounded_channel::<Vec<u8>>();
        let (subscribed_tx, subscribed) = std::sync::mpsc::channel();
        let task = rt.spawn(async move {
            loop {
                tokio::select! {
                    Some(data) = to_publish.recv() => {
                        if let Err(e) = swarm.behaviour_mut().gossipsub.publish(topic.clone(), data) {
                            panic!("raw peer cannot publish: {e}");
                        }
                    }
                    event = swarm.select_next_some() => {
                        if let SwarmEvent::Behaviour(RawBehaviourEvent::Gossipsub(
                            gossipsub::Event::Subscribed { peer_id, .. },
                        )) = event
                            && peer_id == node {
                                let _ = subscribed_tx.send(());
                            }
                    }
                }
            }
        });
        subscribed
            .recv_timeout(PROMPT)
            .expect("the node's subscription reaches the raw peer");
        RawPeer {
            id,
            key,
            publish,
            task,
        }
    }

    fn publish(&self, data: Vec<u8>) {
        self.publish.send(data).unwrap();
    }

    /// A well-formed chat message, in an envelope this peer signs.
    fn chat(&self, text: &str, seq: u64) -> Vec<u8> {
        Envelope::seal(&self.key, chat_payload(text, seq))
            .unwrap()
            .as_bytes()
            .to_vec()
    }
}

impl Drop for RawPeer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn chat_payload(text: &str, seq: u64) -> Payload {
    Payload {
        room: "lobby".parse().unwrap(),
        nick: "raw".parse().unwrap(),
        ts: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64,
        session: 1,
        seq,
        body: Body::Chat(text.parse().unwrap()),
    }
}

/// The node's score of `peer`, as `/peers` reports it.
fn score(node: &mut Node, peer: &PeerId) -> Option<f64> {
    let peers = node.command("/peers");
    peers["peers"]
        .as_array()?
        .iter()
        .find(|p| p["peer_id"] == peer.to_string())?["score"]
        .as_f64()
}

/// Asks until the node scores `peer` below `threshold`. Each ask is one
/// command round trip; the deadline only bounds a failing test.
fn wait_for_score_below(node: &mut Node, peer: &PeerId, threshold: f64) {
    let deadline = Instant::now() + PROMPT;
    loop {
        match score(node, peer) {
            Some(s) if s < threshold => return,
            s => assert!(Instant::now() < deadline, "score of {peer} stayed at {s:?}"),
        }
    }
}

#[test]
fn garbage_forged_gossip_signed_and_oversized_gossip_is_refused_and_the_node_keeps_delivering() {
    let rt = Runtime::new().unwrap();
    let mut a = Node::start("hostile", "a", &[]);
    let mut b = Node::start("hostile", "b", &["--bootstrap", &a.addr("quic-v1")]);
    for n in [&mut a, &mut b] {
        assert_eq!(n.command("/join lobby")["event"], "ok");
    }
    a.wait_joined("lobby", &b.peer_id.clone());
    let quic = a.addr("quic-v1");

    // Victor is a well-behaved raw peer: the control that such a peer is heard.
    let victor = RawPeer::join(&rt, false, &quic, &a.peer_id);
    victor.publish(victor.chat("victor is heard", 0));
    a.wait_for("victor's message", PROMPT, |v| {
        v["event"] == "message" && v["text"] == "victor is heard"
    });
    assert!(score(&mut a, &victor.id).unwrap() >= 0.0);

    // Mallory's messages are garbage, name another room, claim to be
    // victor's while she signed them, or had their text altered.
    let mallory = RawPeer::join(&rt, false, &quic, &a.peer_id);
    let mut other_room = chat_payload("wrong room", 0);
    other_room.room = "elsewhere".parse().unwrap();
    let mut altered = mallory.chat("pay 10", 7);
    let at = altered.windows(6).position(|w| w == b"pay 10").unwrap();
    altered[at + 4] = b'9';
    for garbage in [
        b"\x01garbage".to_vec(),
        vec![1; 64],
        Envelope::seal(&mallory.key, other_room)
            .unwrap()
            .as_bytes()
            .to_vec(),
        [mallory.chat("trailing", 3), vec![0]].concat(),
        {
            let hers = mallory.chat("victor's words, mallory's signature", 5);
            let (theirs, mine) = (
                victor.key.public().encode_protobuf(),
                mallory.key.public().encode_protobuf(),
            );
            let at = hers.windows(mine.len()).position(|w| w == mine).unwrap();
            let mut forged = hers.clone();
            forged[at..at + mine.len()].copy_from_slice(&theirs);
            forged
        },
        altered,
    ] {
        mallory.publish(garbage);
    }
    // The node scores her down until it ignores her…
    wait_for_score_below(&mut a, &mallory.id, -80.0);
    // …so that not even a well-formed message is taken from her now.
    mallory.publish(mallory.chat("mallory after garbage", 1));

    // Oscar sends a message far over the size limit; Trudy adds gossipsub's
    // own signature, which Palaver's anonymous gossip refuses.
    let oscar = RawPeer::join(&rt, false, &quic, &a.peer_id);
    oscar.publish(vec![b'x'; 200_000]);
    let trudy = RawPeer::join(&rt, true, &quic, &a.peer_id);
    trudy.publish(trudy.chat("gossip-signed", 0));

    // Honest traffic still flows both ways, several rounds after the attacks.
    for i in 0..5 {
        assert_eq!(
            b.command(&format!("/send lobby honest {i}"))["event"],
            "sent"
        );
        a.wait_for("honest message", PROMPT, |v| {
            v["event"] == "message" && v["text"] == format!("honest {i}")
        });
        assert_eq!(
            a.command(&format!("/send lobby reply {i}"))["event"],
            "sent"
        );
        b.wait_for("reply", PROMPT, |v| {
            v["event"] == "message" && v["text"] == format!("reply {i}")
        });
    }
    a.drain();
    let texts: Vec<&str> = a
        .seen
        .iter()
        .filter(|v| v["event"] == "message")
        .filter_map(|v| v["text"].as_str())
        .collect();
    assert_eq!(texts[0], "victor is heard");
    assert_eq!(
        texts[1..],
        ["honest 0", "honest 1", "honest 2", "honest 3", "honest 4"],
        "only honest messages"
    );
    b.drain();
    assert!(!b.seen.iter().any(|v| v["event"] == "message"
        && ["mallory after garbage", "gossip-signed"].contains(&v["text"].as_str().unwrap_or(""))));
    drop((victor, mallory, oscar, trudy));
}

/// Payload bytes of a chat under `nick`, which `Payload::encode` would
/// refuse to write (an older version or another implementation may send it).
fn chat_bytes_with_nick(nick: &str, text: &str, seq: u64) -> Vec<u8> {
    let stand_in = "x".repeat(nick.len());
    let mut payload = chat_payload(text, seq);
    payload.nick = stand_in.parse().unwrap();
    let mut bytes = payload.encode();
    let at = bytes
        .windows(stand_in.len())
        .position(|w| w == stand_in.as_bytes())
        .unwrap();
    bytes[at..at + nick.len()].copy_from_slice(nick.as_bytes());
    bytes
}

#[test]
fn a_nick_dressed_as_another_persons_nick_and_fingerprint_is_refused_or_shown_defused() {
    let rt = Runtime::new().unwrap();
    let mut victor = Node::start("posing", "victor", &[]);
    assert_eq!(victor.command("/join lobby")["event"], "ok");
    let fingerprint = victor.peer_id[victor.peer_id.len() - 16..].to_string();

    // Nobody may pick a nick that holds what the screen sets around one.
    for nick in [
        format!("victor#{fingerprint}"),
        "<victor>".into(),
        "a\u{2028}b".into(),
    ] {
        let reply = victor.command(&format!("/nick {nick}"));
        assert_eq!(reply["code"], "bad_nick", "{nick:?} was taken: {reply}");
    }

    // Mallory, a peer of her own, sends one anyway (as an older version
    // could), and a text with a line separator that could fake a line.
    let mallory = RawPeer::join(&rt, false, &victor.addr("quic-v1"), &victor.peer_id);
    let posing = format!("victor#{fingerprint}");
    let body = chat_bytes_with_nick(&posing, "it's me", 0);
    mallory.publish(Envelope::seal_bytes(&mallory.key, &body).unwrap());
    let shown = victor.wait_for("mallory's message", PROMPT, |v| {
        v["event"] == "message" && v["text"] == "it's me"
    });
    assert_eq!(shown["from"], mallory.id.to_string());
    assert_eq!(shown["nick"], format!("victor\u{FFFD}{fingerprint}"));
}

/// Reads a readable-mode node's lines until one satisfies `pred`.
fn wait_for_text(
    lines: &std::sync::mpsc::Receiver<palaver_testkit::Line>,
    what: &str,
    pred: impl Fn(&str) -> bool,
) -> String {
    let deadline = Instant::now() + PROMPT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = lines
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("no line for {what}"));
        if let Some(text) = line.value.as_str()
            && pred(text)
        {
            return text.to_owned();
        }
    }
}

#[test]
fn the_readable_mode_shows_a_long_fingerprint_and_marks_a_known_nick_under_a_new_key() {
    let rt = Runtime::new().unwrap();
    let command = palaver_testkit::NodeCommand::new(
        palaver_testkit::binary("node"),
        palaver_testkit::temp_dir("readable-posing", "reader"),
    )
    .args([
        "--no-mdns",
        "--nick",
        "reader",
        "--listen",
        "/ip4/127.0.0.1/udp/0/quic-v1",
    ]);
    let (tx, lines) = std::sync::mpsc::channel();
    let mut reader = command.spawn(0, tx).unwrap();
    let ready = wait_for_text(&lines, "ready", |t| t.contains(", peer id "));
    let peer_id = ready.rsplit(' ').next().unwrap().to_owned();
    let listening = wait_for_text(&lines, "listening", |t| t.contains("listening on "));
    let addr = listening
        .trim()
        .trim_start_matches("listening on ")
        .to_owned();
    reader.send_line("/join lobby").unwrap();
    wait_for_text(&lines, "join", |t| t.starts_with("ok: join"));

    let alice = RawPeer::join(&rt, false, &addr, &peer_id);
    let mut first = chat_payload("alice speaks", 0);
    first.nick = "alice".parse().unwrap();
    alice.publish(
        Envelope::seal(&alice.key, first)
            .unwrap()
            .as_bytes()
            .to_vec(),
    );
    let alice_id = alice.id.to_string();
    let line = wait_for_text(&lines, "alice's message", |t| t.contains("alice speaks"));
    assert!(
        line.contains(&format!(
            "<alice#{}> alice speaks",
            &alice_id[alice_id.len() - 16..]
        )),
        "{line}"
    );

    let mallory = RawPeer::join(&rt, false, &addr, &peer_id);
    let mut posing = chat_payload("alice again, honest", 0);
    posing.nick = "alice".parse().unwrap();
    mallory.publish(
        Envelope::seal(&mallory.key, posing)
            .unwrap()
            .as_bytes()
            .to_vec(),
    );
    let line = wait_for_text(&lines, "mallory's message", |t| t.contains("alice again"));
    assert!(
        line.contains("(another key than the first alice seen)"),
        "{line}"
    );
    reader.close_stdin();
    reader.wait_exit(PROMPT).unwrap();
}
