//! Catch-up (`/palaver/history/2`) against members that lie, stall, flood or
//! miss things: real node processes beside raw libp2p peers that play the
//! member. Each test is one attack or one way catch-up used to lose
//! messages (issue 11), and what the node must still do.

use std::collections::HashSet;
use std::sync::mpsc as std_mpsc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use libp2p::identity::Keypair;
use libp2p::request_response;
use libp2p::swarm::SwarmEvent;
use libp2p::{PeerId, gossipsub};
use palaver_proto::envelope::Envelope;
use palaver_proto::history::reconcile::Items;
use palaver_proto::history::{Refusal, Request, Response};
use palaver_proto::wire::{Body, Payload};
use palaver_testkit::raw_peer::{RawBehaviourEvent, RawPeerOptions, Served, raw_peer_in_room};
use palaver_testkit::{Node, PROMPT};
use tokio::runtime::Runtime;
use tokio::sync::mpsc;

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

fn envelope(key: &Keypair, body: Body, ts: u64, seq: u64) -> Vec<u8> {
    let payload = Payload {
        room: "lobby".parse().unwrap(),
        nick: "carol".parse().unwrap(),
        ts,
        session: 1,
        seq,
        body,
    };
    Envelope::seal(key, payload).unwrap().as_bytes().to_vec()
}

fn chat(key: &Keypair, text: &str, ts: u64, seq: u64) -> Vec<u8> {
    envelope(key, Body::Chat(text.parse().unwrap()), ts, seq)
}

/// How a raw member answers the node's catch-up requests.
enum Answers {
    /// As a node holding these would.
    Serve(Served),
    /// Never: it takes each request and holds it unanswered.
    Never,
}

/// What a raw member saw.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seen {
    /// The node asked it something ("reconcile" or "fetch").
    Asked(&'static str),
    /// The node answered one of its own requests.
    Answer(&'static str),
}

/// A raw libp2p peer that is a member of `lobby` on one node: it announces
/// itself once it sees the node's subscription, answers catch-up as told,
/// publishes what it is given, and sends catch-up requests it is given.
struct RawMember {
    id: PeerId,
    publish: mpsc::UnboundedSender<Vec<u8>>,
    ask: mpsc::UnboundedSender<Request>,
    seen: std_mpsc::Receiver<Seen>,
    task: tokio::task::JoinHandle<()>,
}

impl RawMember {
    fn join(rt: &Runtime, node: &Node, answers: Answers) -> RawMember {
        let node_id: PeerId = node.peer_id.parse().unwrap();
        let _guard = rt.enter();
        let key = Keypair::generate_ed25519();
        let id = key.public().to_peer_id();
        let join = envelope(&key, Body::Join, now_ms(), 0);
        let options = RawPeerOptions {
            catch_up: true,
            ..RawPeerOptions::default()
        };
        let addr = node.addr("quic-v1").parse().unwrap();
        let (mut swarm, topic) = raw_peer_in_room(key, options, "lobby", addr).unwrap();
        let (publish, mut to_publish) = mpsc::unbounded_channel::<Vec<u8>>();
        let (ask, mut to_ask) = mpsc::unbounded_channel::<Request>();
        let (seen_tx, seen) = std_mpsc::channel();
        let task = rt.spawn(async move {
            let mut held = Vec::new();
            let mut announced = false;
            loop {
                tokio::select! {
                    Some(data) = to_publish.recv() => {
                        // A full queue drops some: a flood need not be whole.
                        let _ = swarm.behaviour_mut().gossipsub.publish(topic.clone(), data);
                    }
                    Some(request) = to_ask.recv() => {
                        if let Some(c) = swarm.behaviour_mut().catch_up.as_mut() {
                            c.send_request(&node_id, request);
                        }
                    }
                    event = swarm.select_next_some() => match event {
                        SwarmEvent::Behaviour(RawBehaviourEvent::Gossipsub(
                            gossipsub::Event::Subscribed { peer_id, .. },
                        )) if peer_id == node_id && !announced => {
                            announced = true;
                            let _ = swarm.behaviour_mut().gossipsub.publish(topic.clone(), join.clone());
                        }
                        SwarmEvent::Behaviour(RawBehaviourEvent::CatchUp(
                            request_response::Event::Message { message, .. },
                        )) => match message {
                            request_response::Message::Request { request, channel, .. } => {
                                let _ = seen_tx.send(Seen::Asked(match request {
                                    Request::Reconcile { .. } => "reconcile",
                                    Request::Fetch { .. } => "fetch",
                                }));
                                match &answers {
                                    Answers::Serve(served) => {
                                        let response = served.answer(&request);
                                        let _ = swarm.behaviour_mut().respond(channel, response);
                                    }
                                    Answers::Never => held.push(channel),
                                }
                            }
                            request_response::Message::Response { response, .. } => {
                                let _ = seen_tx.send(Seen::Answer(match response {
                                    Response::Refused(Refusal::Busy) => "busy",
                                    Response::Refused(_) => "refused",
                                    Response::Reconcile(_) => "reconcile",
                                    Response::Envelopes(_) => "envelopes",
                                }));
                            }
                        },
                        SwarmEvent::Behaviour(RawBehaviourEvent::CatchUp(
                            request_response::Event::OutboundFailure { .. },
                        )) => {
                            let _ = seen_tx.send(Seen::Answer("failed"));
                        }
                        _ => {}
                    },
                }
            }
        });
        RawMember {
            id,
            publish,
            ask,
            seen,
            task,
        }
    }

    /// Waits until the node asked this member something of kind `what`.
    fn wait_asked(&self, what: &'static str) {
        loop {
            match self.seen.recv_timeout(PROMPT) {
                Ok(Seen::Asked(w)) if w == what => return,
                Ok(_) => {}
                Err(e) => panic!("the node never asked for a {what}: {e}"),
            }
        }
    }
}

impl Drop for RawMember {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn texts(messages: &[serde_json::Value]) -> Vec<String> {
    messages
        .iter()
        .map(|m| m["text"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// Two nodes in the lobby, connected.
fn pair(test: &str, extra: &[&str]) -> (Node, Node) {
    let mut a = Node::start(test, "a", extra);
    let a_addr = a.addr("quic-v1");
    let mut args = vec!["--bootstrap", &a_addr];
    args.extend_from_slice(extra);
    let mut b = Node::start(test, "b", &args);
    assert_eq!(a.command("/join lobby")["event"], "ok");
    assert_eq!(b.command("/join lobby")["event"], "ok");
    a.wait_joined("lobby", &b.peer_id);
    b.wait_joined("lobby", &a.peer_id);
    (a, b)
}

/// `from` sends `text` and `to` shows it, live.
fn delivered(from: &mut Node, to: &mut Node, text: &str) {
    let m = shown(from, to, text);
    assert_eq!(m["replay"], false, "{text} came live");
}

/// `from` sends `text` and `to` shows it, live or (shed under load) caught up.
fn shown(from: &mut Node, to: &mut Node, text: &str) -> serde_json::Value {
    let reply = from.command(&format!("/send lobby {text}"));
    assert_eq!(reply["event"], "sent", "{reply}");
    to.wait_for(text, PROMPT, |v| {
        v["event"] == "message" && v["text"] == text
    })
}

#[test]
fn a_member_serving_messages_from_the_future_silences_no_one() {
    let (mut a, mut b) = pair("future", &[]);
    let carol = Keypair::generate_ed25519();
    let now = now_ms();
    let day = 86_400_000;
    // 300 messages a day ahead, one at the end of time, one genuine and recent.
    let mut offered: Vec<(Vec<u8>, u64)> = (0..300)
        .map(|i| {
            (
                chat(&carol, &format!("tomorrow {i}"), now + day + i, i),
                now + day + i,
            )
        })
        .collect();
    offered.push((chat(&carol, "the end of time", u64::MAX, 400), u64::MAX));
    offered.push((
        chat(&carol, "a minute ago", now - 60_000, 500),
        now - 60_000,
    ));
    let rt = Runtime::new().unwrap();
    let hostile = RawMember::join(&rt, &a, Answers::Serve(Served::new(offered)));
    a.wait_joined("lobby", &hostile.id.to_string());
    let replayed = a.wait_for("the genuine message", PROMPT, |v| {
        v["event"] == "message" && v["replay"] == true
    });
    assert_eq!(replayed["text"], "a minute ago");
    // Everyone's live messages still arrive everywhere, both ways.
    delivered(&mut a, &mut b, "a still speaks");
    delivered(&mut b, &mut a, "b still speaks");
    delivered(&mut a, &mut b, "and a again");
    let history = a.command("/history lobby 1000");
    let listed = texts(history["messages"].as_array().unwrap());
    assert_eq!(
        listed.last().map(String::as_str),
        Some("and a again"),
        "{listed:?}"
    );
    assert!(
        !listed
            .iter()
            .any(|t| t.starts_with("tomorrow") || t == "the end of time"),
        "nothing from the future is kept: {listed:?}"
    );
    a.drain();
    assert!(
        !a.seen.iter().any(|v| v["event"] == "message"
            && v["text"]
                .as_str()
                .is_some_and(|t| t.starts_with("tomorrow"))),
        "nor shown"
    );
}

#[test]
fn a_member_who_missed_twenty_thousand_messages_gets_all_of_them() {
    const MISSED: u64 = 20_000;
    let mut a = Node::start("twenty-thousand", "a", &[]);
    assert_eq!(a.command("/join lobby")["event"], "ok");
    let carol = Keypair::generate_ed25519();
    let base = now_ms() - 3_600_000;
    let offered: Vec<(Vec<u8>, u64)> = (0..MISSED)
        .map(|i| (chat(&carol, &format!("m{i}"), base + i, i), base + i))
        .collect();
    let rt = Runtime::new().unwrap();
    let member = RawMember::join(&rt, &a, Answers::Serve(Served::new(offered)));
    a.wait_joined("lobby", &member.id.to_string());
    let shown = a.wait_for_count("every missed message", MISSED as usize, 6 * PROMPT, |v| {
        v["event"] == "message" && v["replay"] == true
    });
    let distinct: HashSet<String> = texts(&shown).into_iter().collect();
    assert_eq!(distinct.len(), MISSED as usize, "each once");
}

#[test]
fn two_members_that_missed_each_others_messages_reconcile_within_one_anti_entropy_period() {
    let (mut a, mut b) = pair("anti-entropy", &["--anti-entropy-secs", "5"]);
    let carol = Keypair::generate_ed25519();
    let dave = Keypair::generate_ed25519();
    let ts = now_ms() - 60_000;
    let rt = Runtime::new().unwrap();
    // Each node learns one message from a member the other never meets, by
    // catch-up, which is not gossiped on: neither sees the other's.
    let for_a = Served::new([(chat(&carol, "only a was told", ts, 1), ts)]);
    let for_b = Served::new([(chat(&dave, "only b was told", ts + 1, 1), ts + 1)]);
    let to_a = RawMember::join(&rt, &a, Answers::Serve(for_a));
    let to_b = RawMember::join(&rt, &b, Answers::Serve(for_b));
    a.wait_for("a's own", PROMPT, |v| v["text"] == "only a was told");
    b.wait_for("b's own", PROMPT, |v| v["text"] == "only b was told");
    // They leave; a and b stay connected throughout, with no new member.
    drop(to_a);
    drop(to_b);
    a.wait_for("the other's", 3 * Duration::from_secs(5) + PROMPT, |v| {
        v["event"] == "message" && v["text"] == "only b was told"
    });
    b.wait_for("the other's", 3 * Duration::from_secs(5) + PROMPT, |v| {
        v["event"] == "message" && v["text"] == "only a was told"
    });
}

#[test]
fn a_thousand_requests_from_one_peer_do_not_make_a_node_shed_an_honest_members_messages() {
    const HONEST: usize = 300;
    const REQUESTS: usize = 1000;
    let (mut a, mut b) = pair("request-flood", &[]);
    // a holds history worth asking for.
    for i in 0..300 {
        assert_eq!(a.command(&format!("/send lobby old {i}"))["event"], "sent");
    }
    let rt = Runtime::new().unwrap();
    let greedy = RawMember::join(&rt, &a, Answers::Serve(Served::default()));
    a.wait_joined("lobby", &greedy.id.to_string());
    // It asks for a's whole set again and again while b talks: each answer
    // lists every id a holds.
    for _ in 0..REQUESTS {
        greedy
            .ask
            .send(Request::Reconcile {
                room: "lobby".parse().unwrap(),
                message: Items::new().initiate().unwrap(),
            })
            .unwrap();
    }
    for i in 0..HONEST {
        let reply = b.command(&format!("/send lobby honest {i}"));
        assert_eq!(reply["event"], "sent");
    }
    let shown = a.wait_for_count("every honest message", HONEST, 2 * PROMPT, |v| {
        v["event"] == "message" && v["text"].as_str().is_some_and(|t| t.starts_with("honest "))
    });
    assert!(
        shown.iter().all(|m| m["replay"] == false),
        "some were shed and only recovered later"
    );
    // The node did not do all that work: its budget (or its stream limit)
    // refused most of it.
    let mut answers = Vec::new();
    while answers.len() < REQUESTS {
        match greedy.seen.recv_timeout(PROMPT) {
            Ok(Seen::Answer(kind)) => answers.push(kind),
            Ok(_) => {}
            Err(_) => break,
        }
    }
    let served = answers.iter().filter(|k| **k == "reconcile").count();
    assert!(
        served > 0,
        "the greedy member is a member: it is served some"
    );
    assert!(served < REQUESTS / 2, "{served} of {REQUESTS} served");
}

#[test]
fn three_peers_that_never_answer_do_not_stop_an_honest_members_catch_up() {
    let mut a = Node::start("silent", "a", &[]);
    assert_eq!(a.command("/join lobby")["event"], "ok");
    let rt = Runtime::new().unwrap();
    let silent: Vec<RawMember> = (0..3)
        .map(|_| RawMember::join(&rt, &a, Answers::Never))
        .collect();
    for s in &silent {
        a.wait_joined("lobby", &s.id.to_string());
        s.wait_asked("reconcile");
    }
    // Every slot of the room is held by a peer that never answers; then an
    // honest member with history arrives.
    let mut b = Node::start("silent", "b", &[]);
    assert_eq!(b.command("/join lobby")["event"], "ok");
    for i in 0..5 {
        assert_eq!(
            b.command(&format!("/send lobby while apart {i}"))["event"],
            "sent"
        );
    }
    assert_eq!(
        b.command(&format!("/dial {}", a.addr("quic-v1")))["event"],
        "ok"
    );
    a.wait_joined("lobby", &b.peer_id);
    let shown = a.wait_for_count("b's history", 5, 2 * PROMPT, |v| {
        v["event"] == "message" && v["replay"] == true
    });
    let mut got = texts(&shown);
    got.sort();
    assert_eq!(
        got,
        (0..5)
            .map(|i| format!("while apart {i}"))
            .collect::<Vec<_>>()
    );
}

#[test]
fn a_flood_of_valid_messages_keeps_the_store_under_its_cap_while_honest_messages_are_still_shown() {
    const FLOOD: u64 = 20_000;
    const CAP: usize = 500;
    let cap = CAP.to_string();
    // Slow authors (10 a second, 20 at once) so that the flood meets the rate limit.
    let (mut a, mut b) = pair(
        "disk-flood",
        &["--retain-messages", &cap, "--author-rate", "10"],
    );
    let rt = Runtime::new().unwrap();
    let flooder = RawMember::join(&rt, &a, Answers::Serve(Served::default()));
    a.wait_joined("lobby", &flooder.id.to_string());
    // 20,000 valid, fresh messages from 100 authors (sybils).
    let authors: Vec<Keypair> = (0..100).map(|_| Keypair::generate_ed25519()).collect();
    let now = now_ms();
    for i in 0..FLOOD {
        let key = &authors[(i % 100) as usize];
        flooder
            .publish
            .send(chat(key, &format!("flood {i}"), now + i / 100, i / 100))
            .unwrap();
    }
    // The honest member keeps to the rate; under the flood a message of
    // its may be shed, and then comes by catch-up: late, not lost.
    for i in 0..20 {
        shown(&mut b, &mut a, &format!("honest {i}"));
    }
    let history = a.command("/history lobby 1000");
    let listed = texts(history["messages"].as_array().unwrap());
    assert!(listed.len() <= CAP, "{} messages kept", listed.len());
    for i in 0..20 {
        assert!(
            listed.contains(&format!("honest {i}")),
            "honest {i} was stored"
        );
    }
    a.drain();
    let flood_shown = a
        .seen
        .iter()
        .filter(|v| {
            v["event"] == "message" && v["text"].as_str().is_some_and(|t| t.starts_with("flood "))
        })
        .count();
    assert!(
        flood_shown < FLOOD as usize / 2,
        "the authors' rate limits let {flood_shown} through"
    );
}

/// A node restarted on its own data dir, bootstrapping to `peer`.
fn restart(name: &str, dir: std::path::PathBuf, peer: &str) -> Node {
    Node::spawn(
        name,
        dir,
        &[
            "--json",
            "--no-mdns",
            "--listen",
            "/ip4/127.0.0.1/udp/0/quic-v1",
            "--bootstrap",
            peer,
        ],
    )
}

#[test]
fn a_member_offline_twice_with_a_long_stretch_online_between_ends_with_every_message() {
    // Long enough that an inventory walked newest first (the protocol
    // before reconciliation) meets two full pages it already holds before
    // reaching the first gap, and stops there.
    const STRETCH: usize = 600;
    // a alone: the first gap, which b and c miss.
    let mut a = Node::start("offline-twice", "a", &[]);
    assert_eq!(a.command("/join lobby")["event"], "ok");
    for i in 0..3 {
        assert_eq!(
            a.command(&format!("/send lobby gap one {i}"))["event"],
            "sent"
        );
    }
    let a_dir = a.data_dir.clone();
    assert!(a.close_and_wait().success());
    drop(a);
    // b and c, online together for a long stretch.
    let mut b = Node::start("offline-twice", "b", &[]);
    let b_addr = b.addr("quic-v1");
    let mut c = Node::start("offline-twice", "c", &["--bootstrap", &b_addr]);
    assert_eq!(b.command("/join lobby")["event"], "ok");
    assert_eq!(c.command("/join lobby")["event"], "ok");
    b.wait_joined("lobby", &c.peer_id);
    c.wait_joined("lobby", &b.peer_id);
    for i in 0..STRETCH {
        assert_eq!(
            b.command(&format!("/send lobby stretch {i}"))["event"],
            "sent"
        );
    }
    c.wait_for_count("the stretch", STRETCH, 2 * PROMPT, |v| {
        v["event"] == "message"
            && v["text"]
                .as_str()
                .is_some_and(|t| t.starts_with("stretch "))
    });
    // b goes away; a comes back to c (each catches up from the other), and
    // c talks: the second gap. Then a goes, so b only ever meets c.
    let b_dir = b.data_dir.clone();
    assert!(b.close_and_wait().success());
    drop(b);
    let c_addr = c.addr("quic-v1");
    let mut a = restart("a2", a_dir, &c_addr);
    a.wait_joined("lobby", &c.peer_id);
    c.wait_for_count("the first gap, from a", 3, PROMPT, |v| {
        v["event"] == "message" && v["replay"] == true
    });
    for i in 0..3 {
        assert_eq!(
            c.command(&format!("/send lobby gap two {i}"))["event"],
            "sent"
        );
    }
    assert!(a.close_and_wait().success());
    drop(a);
    let mut b = restart("b2", b_dir, &c_addr);
    b.wait_for_count("both gaps", 6, 2 * PROMPT, |v| {
        v["event"] == "message" && v["replay"] == true
    });
    let history = b.command("/history lobby 1000");
    let listed = texts(history["messages"].as_array().unwrap());
    assert_eq!(listed.len(), STRETCH + 6, "every message, once");
    for i in 0..3 {
        assert!(listed.contains(&format!("gap one {i}")), "gap one {i}");
        assert!(listed.contains(&format!("gap two {i}")), "gap two {i}");
    }
}
