//! Catch-up between real node processes: what a member missed while it was
//! offline reaches it when it comes back, once each, in order, marked as
//! replayed; and a peer serving altered or forged envelopes is refused.

use std::collections::HashSet;
use std::time::{SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use libp2p::gossipsub::{self, IdentTopic};
use libp2p::identity::Keypair;
use libp2p::request_response;
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, PeerId};
use palaver_proto::envelope::Envelope;
use palaver_proto::history::Request;
use palaver_proto::wire::{Body, Payload};
use palaver_testkit::raw_peer::{
    RawBehaviour, RawBehaviourEvent, RawPeerOptions, Served, raw_peer_in_room,
};
use palaver_testkit::{Node, PROMPT};
use serde_json::Value;

fn texts(messages: &[Value]) -> Vec<String> {
    messages
        .iter()
        .map(|m| m["text"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn a_member_back_from_offline_receives_exactly_what_it_missed_in_order() {
    let mut a = Node::start("catchup", "a", &[]);
    let a_addr = a.addr("quic-v1");
    let mut b = Node::start("catchup", "b", &["--bootstrap", &a_addr]);
    assert_eq!(a.command("/join lobby")["event"], "ok");
    assert_eq!(b.command("/join lobby")["event"], "ok");
    a.wait_joined("lobby", &b.peer_id);
    b.wait_joined("lobby", &a.peer_id);
    assert_eq!(a.command("/send lobby before, from a")["event"], "sent");
    b.wait_for("a's first message", PROMPT, |v| {
        v["event"] == "message" && v["text"] == "before, from a"
    });
    assert_eq!(b.command("/send lobby before, from b")["event"], "sent");
    a.wait_for("b's first message", PROMPT, |v| {
        v["event"] == "message" && v["text"] == "before, from b"
    });

    // b goes away; a and c talk.
    let b_dir = b.data_dir.clone();
    let b_id = b.peer_id.clone();
    assert!(b.close_and_wait().success());
    drop(b);
    let mut c = Node::start("catchup", "c", &["--bootstrap", &a_addr]);
    assert_eq!(c.command("/join lobby")["event"], "ok");
    a.wait_joined("lobby", &c.peer_id);
    c.wait_joined("lobby", &a.peer_id);
    let mut sent = Vec::new();
    for i in 0..50 {
        let (from, to) = if i % 2 == 0 {
            (&mut a, &mut c)
        } else {
            (&mut c, &mut a)
        };
        let text = format!("missed {i:02} from {}", from.name);
        let reply = from.command(&format!("/send lobby {text}"));
        assert_eq!(reply["event"], "sent", "{reply}");
        to.wait_for(&text, PROMPT, |v| {
            v["event"] == "message" && v["text"] == text
        });
        sent.push((reply["id"].as_str().unwrap().to_owned(), text));
    }

    // b comes back on its own data dir: it rejoins the lobby by itself.
    let mut b = Node::spawn(
        "b2",
        b_dir,
        &[
            "--json",
            "--no-mdns",
            "--listen",
            "/ip4/127.0.0.1/udp/0/quic-v1",
            "--bootstrap",
            &a_addr,
        ],
    );
    assert_eq!(b.peer_id, b_id);
    let ready = b.seen[0].clone();
    assert_eq!(ready["rooms"], serde_json::json!(["lobby"]), "{ready}");
    assert_eq!(ready["nick"], "b", "the nick is kept too");
    let replayed = b.wait_for_count("50 replayed messages", 50, PROMPT, |v| {
        v["event"] == "message" && v["replay"] == true
    });
    assert_eq!(
        texts(&replayed),
        sent.iter().map(|(_, t)| t.clone()).collect::<Vec<_>>(),
        "exactly the missed messages, in order"
    );
    let ids: Vec<&str> = replayed.iter().map(|m| m["id"].as_str().unwrap()).collect();
    assert_eq!(
        ids,
        sent.iter().map(|(id, _)| id.as_str()).collect::<Vec<_>>()
    );

    // A live message after catch-up: by the time it arrives, nothing was
    // shown twice and nothing else was replayed.
    let b2 = b.peer_id.clone();
    a.wait_joined("lobby", &b2);
    assert_eq!(a.command("/send lobby live again")["event"], "sent");
    b.wait_for("the live message", PROMPT, |v| {
        v["event"] == "message" && v["text"] == "live again"
    });
    let all = b.messages("lobby");
    let unique: HashSet<&str> = all.iter().map(|m| m["id"].as_str().unwrap()).collect();
    assert_eq!(unique.len(), all.len(), "no message shown twice: {all:#?}");
    assert_eq!(all.len(), 51, "{all:#?}");
    assert_eq!(all.last().unwrap()["replay"], false);

    let history = b.command("/history lobby 100");
    let messages = history["messages"].as_array().unwrap();
    let history_texts = texts(messages);
    assert_eq!(history["corrupt"], 0);
    assert_eq!(history_texts.len(), 53, "{history_texts:#?}");
    assert_eq!(&history_texts[..2], ["before, from a", "before, from b"]);
    assert_eq!(
        history_texts[2..52],
        sent.iter().map(|(_, t)| t.clone()).collect::<Vec<_>>()[..]
    );
    assert_eq!(history_texts[52], "live again");
}

#[test]
fn a_message_sent_while_alone_reaches_members_who_come_later() {
    let mut a = Node::start("alone", "a", &[]);
    assert_eq!(a.command("/join quiet")["event"], "ok");
    let sent = a.command("/send quiet anyone here?");
    assert_eq!(sent["peers"], 0, "{sent}");
    let mut b = Node::start("alone", "b", &["--bootstrap", &a.addr("quic-v1")]);
    assert_eq!(b.command("/join quiet")["event"], "ok");
    let m = b.wait_for("the message sent before b came", PROMPT, |v| {
        v["event"] == "message" && v["text"] == "anyone here?"
    });
    assert_eq!(m["replay"], true);
    assert_eq!(m["from"], a.peer_id.as_str());
    assert_eq!(m["id"], sent["id"]);
}

// ---- a hostile catch-up server ----

/// A raw peer in `lobby` that speaks the catch-up protocol, dialling `addr`.
/// Call inside a tokio runtime.
fn raw_peer(key: Keypair, addr: Multiaddr) -> (libp2p::Swarm<RawBehaviour>, IdentTopic) {
    let options = RawPeerOptions {
        catch_up: true,
        ..RawPeerOptions::default()
    };
    raw_peer_in_room(key, options, "lobby", addr).unwrap()
}

/// `nick` joining `lobby` now, signed by `key`.
fn join_envelope(key: &Keypair, nick: &str) -> Vec<u8> {
    let payload = Payload {
        room: "lobby".parse().unwrap(),
        nick: nick.parse().unwrap(),
        ts: now_ms(),
        session: 1,
        seq: 0,
        body: Body::Join,
    };
    Envelope::seal(key, payload).unwrap().as_bytes().to_vec()
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

fn chat(key: &Keypair, text: &str, ts: u64) -> Vec<u8> {
    let payload = Payload {
        room: "lobby".parse().unwrap(),
        nick: "carol".parse().unwrap(),
        ts,
        session: 1,
        seq: ts,
        body: Body::Chat(text.parse().unwrap()),
    };
    Envelope::seal(key, payload).unwrap().as_bytes().to_vec()
}

fn replace(haystack: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    assert_eq!(from.len(), to.len());
    let at = haystack
        .windows(from.len())
        .position(|w| w == from)
        .expect("pattern in envelope");
    let mut out = haystack.to_vec();
    out[at..at + from.len()].copy_from_slice(to);
    out
}

#[test]
fn a_catch_up_page_with_altered_and_forged_envelopes_yields_only_the_genuine_ones() {
    let mut node = Node::start("forged", "n", &[]);
    assert_eq!(node.command("/join lobby")["event"], "ok");
    let node_id: PeerId = node.peer_id.parse().unwrap();

    // What the hostile server offers: three genuine messages by carol, one
    // of hers with its text changed (signature kept), and one that claims
    // to be hers but is signed by mallory.
    let carol = Keypair::generate_ed25519();
    let mallory = Keypair::generate_ed25519();
    let base = now_ms() - 60_000;
    let genuine: Vec<(Vec<u8>, u64)> = (0..3)
        .map(|i| (chat(&carol, &format!("genuine {i}"), base + i), base + i))
        .collect();
    let altered = replace(
        &chat(&carol, "pay alice 10", base + 10),
        b"pay alice 10",
        b"pay alice 99",
    );
    let forged = {
        let by_mallory = chat(&mallory, "carol owes me", base + 11);
        replace(
            &by_mallory,
            &mallory.public().encode_protobuf(),
            &carol.public().encode_protobuf(),
        )
    };
    assert!(Envelope::open(&altered).is_err() && Envelope::open(&forged).is_err());
    let mut offered: Vec<(Vec<u8>, u64)> = genuine.clone();
    offered.push((altered, base + 10));
    offered.push((forged, base + 11));
    let offered = Served::new(offered);

    let rt = tokio::runtime::Runtime::new().unwrap();
    let key = Keypair::generate_ed25519();
    let raw_id = key.public().to_peer_id();
    let join = join_envelope(&key, "mallory");
    let addr: Multiaddr = node.addr("quic-v1").parse().unwrap();
    let (served_tx, served) = std::sync::mpsc::channel::<&'static str>();
    let _guard = rt.enter();
    let (mut swarm, topic) = raw_peer(key, addr);
    let task = rt.spawn(async move {
        let mut announced = false;
        loop {
            match swarm.select_next_some().await {
                SwarmEvent::Behaviour(RawBehaviourEvent::Gossipsub(
                    gossipsub::Event::Subscribed { peer_id, .. },
                )) if peer_id == node_id && !announced => {
                    announced = true;
                    swarm
                        .behaviour_mut()
                        .gossipsub
                        .publish(topic.clone(), join.clone())
                        .unwrap();
                }
                SwarmEvent::Behaviour(RawBehaviourEvent::CatchUp(
                    request_response::Event::Message {
                        message:
                            request_response::Message::Request {
                                request, channel, ..
                            },
                        ..
                    },
                )) => {
                    let _ = served_tx.send(match request {
                        Request::Reconcile { .. } => "reconcile",
                        Request::Fetch { .. } => "fetch",
                    });
                    // Everything asked for, whatever it is.
                    let response = offered.answer(&request);
                    let _ = swarm.behaviour_mut().respond(channel, response);
                }
                _ => {}
            }
        }
    });

    node.wait_joined("lobby", &raw_id.to_string());
    let asked: Vec<&str> = (0..2)
        .map(|_| served.recv_timeout(PROMPT).unwrap())
        .collect();
    assert!(
        asked.contains(&"reconcile") && asked.contains(&"fetch"),
        "{asked:?}"
    );
    let replayed = node.wait_for_count("three genuine replays", 3, PROMPT, |v| {
        v["event"] == "message" && v["replay"] == true
    });
    assert_eq!(
        texts(&replayed),
        ["genuine 0", "genuine 1", "genuine 2"],
        "the genuine ones, in order"
    );
    for m in &replayed {
        assert_eq!(m["from"], carol.public().to_peer_id().to_string());
    }
    // The history holds the genuine ones and nothing else; the server lost score.
    let history = node.command("/history lobby 100");
    assert_eq!(
        texts(history["messages"].as_array().unwrap()),
        ["genuine 0", "genuine 1", "genuine 2"]
    );
    let peers = node.command("/peers");
    let score = peers["peers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["peer_id"] == raw_id.to_string())
        .map(|p| p["score"].as_f64().unwrap())
        .expect("the hostile server is listed");
    assert!(score < 0.0, "score {score} after two bad envelopes");
    task.abort();
}

// ---- shed under load, then pulled ----

/// Messages a node had to shed (more arrived than it could verify) are pulled
/// from the peer that sent them once the load has eased, with no reconnection:
/// every message is shown exactly once, live or replayed.
#[test]
fn messages_shed_under_a_flood_are_pulled_from_their_sender_afterwards() {
    // Enough that the node's verification queue (512) overflows: the event
    // loop takes each in faster than the store thread verifies and stores.
    const FLOOD: usize = 3000;
    let mut node = Node::start("shed", "n", &[]);
    assert_eq!(node.command("/join lobby")["event"], "ok");
    let node_id: PeerId = node.peer_id.parse().unwrap();

    let key = Keypair::generate_ed25519();
    let raw_id = key.public().to_peer_id();
    let base = now_ms() - 20_000;
    let flood: Vec<(Vec<u8>, u64)> = (0..FLOOD as u64)
        .map(|i| (chat(&key, &format!("flood {i}"), base + i), base + i))
        .collect();
    let held_after = Served::new(flood.clone());
    let held_before = Served::default();
    let join = join_envelope(&key, "flooder");

    let rt = tokio::runtime::Runtime::new().unwrap();
    let _guard = rt.enter();
    let addr: Multiaddr = node.addr("quic-v1").parse().unwrap();
    let (mut swarm, topic) = raw_peer(key, addr);
    let (flood_now, mut flood_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    // What the peer served: ("reconcile", 0) or ("fetch", envelopes).
    let (served_tx, served) = std::sync::mpsc::channel::<(&'static str, usize)>();
    let task = rt.spawn(async move {
        let mut flooded = false;
        loop {
            let event = tokio::select! {
                event = swarm.select_next_some() => event,
                Some(()) = flood_rx.recv() => {
                    for (bytes, _) in flood.iter() {
                        let gossip = &mut swarm.behaviour_mut().gossipsub;
                        gossip.publish(topic.clone(), bytes.clone()).unwrap();
                    }
                    flooded = true;
                    continue;
                }
            };
            match event {
                SwarmEvent::Behaviour(RawBehaviourEvent::Gossipsub(
                    gossipsub::Event::Subscribed { peer_id, .. },
                )) if peer_id == node_id => {
                    swarm
                        .behaviour_mut()
                        .gossipsub
                        .publish(topic.clone(), join.clone())
                        .unwrap();
                }
                SwarmEvent::Behaviour(RawBehaviourEvent::CatchUp(
                    request_response::Event::Message {
                        message:
                            request_response::Message::Request {
                                request, channel, ..
                            },
                        ..
                    },
                )) => {
                    let held = if flooded { &held_after } else { &held_before };
                    let response = held.answer(&request);
                    let _ = served_tx.send(match &response {
                        palaver_proto::history::Response::Envelopes(e) => ("fetch", e.len()),
                        _ => ("reconcile", 0),
                    });
                    let _ = swarm.behaviour_mut().respond(channel, response);
                }
                _ => {}
            }
        }
    });

    // The node meets the peer and asks what it holds: nothing yet.
    node.wait_joined("lobby", &raw_id.to_string());
    assert_eq!(served.recv_timeout(PROMPT).unwrap(), ("reconcile", 0));
    flood_now.send(()).unwrap();

    let shown = node.wait_for_count("every flooded message", FLOOD, 4 * PROMPT, |v| {
        v["event"] == "message"
    });
    let texts: Vec<&str> = shown.iter().map(|m| m["text"].as_str().unwrap()).collect();
    let distinct: HashSet<&str> = texts.iter().copied().collect();
    assert_eq!(distinct.len(), FLOOD, "each message shown once");
    let replayed = shown.iter().filter(|m| m["replay"] == true).count();
    assert!(
        replayed > 0,
        "the flood shed nothing: every message came live, so this test showed nothing"
    );
    // Only a pull after the flood (none of the other triggers: no
    // reconnection, no busy refusal) can have brought the replays.
    let mut fetched = 0;
    while let Ok((what, n)) = served.try_recv() {
        if what == "fetch" {
            fetched += n;
        }
    }
    assert_eq!(fetched, replayed, "the replays are what was fetched");
    node.drain();
    let messages = node.seen.iter().filter(|v| v["event"] == "message").count();
    assert_eq!(messages, FLOOD, "nothing shown twice");
    task.abort();
}
