//! Attacks on who a room shows as present (issue 13): a departed member's
//! signed payloads published again (a ghost `joined`, a silent member kept
//! alive), a flood of sybil members in a full room (present members pushed
//! out with a false `left … timeout`), and a member whose sessions ran ahead
//! of its clock restarting (listed present, but its messages taken as old).

use std::collections::HashSet;
use std::sync::mpsc as std_mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use libp2p::identity::Keypair;
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, PeerId, gossipsub};
use palaver_proto::contract::MEMBER_TIMEOUT;
use palaver_proto::envelope::Envelope;
use palaver_proto::wire::{Body, Payload};
use palaver_testkit::raw_peer::{RawBehaviourEvent, RawPeerOptions, raw_peer_in_room};
use palaver_testkit::{Node, PROMPT, temp_dir};
use serde_json::Value;
use tokio::runtime::Runtime;
use tokio::sync::mpsc;

/// What a raw peer saw.
enum Seen {
    Subscribed(PeerId),
    /// A gossip message's bytes.
    Message(Vec<u8>),
}

/// A bare gossipsub peer in the lobby: it reports what it sees, publishes
/// whatever bytes it is given, and checks nothing. A fresh one is needed to
/// publish bytes another one received (gossipsub refuses to publish a
/// message it has seen).
struct RawPeer {
    key: Keypair,
    publish: mpsc::UnboundedSender<Vec<u8>>,
    seen: std_mpsc::Receiver<Seen>,
    task: tokio::task::JoinHandle<()>,
}

impl RawPeer {
    /// Connects to the node at `addr` and waits for its subscription to the lobby.
    fn join(rt: &Runtime, addr: &str, node: &str) -> RawPeer {
        let raw = Self::connect(rt, addr);
        raw.wait_subscribed(node);
        raw
    }

    /// Waits for `node`'s subscription to the lobby.
    fn wait_subscribed(&self, node: &str) {
        let node: PeerId = node.parse().unwrap();
        self.next(
            &format!("{node}'s subscription"),
            |s| matches!(s, Seen::Subscribed(p) if *p == node),
        );
    }

    /// Connects to the node at `addr`, subscribed to the lobby.
    fn connect(rt: &Runtime, addr: &str) -> RawPeer {
        let _guard = rt.enter();
        let key = Keypair::generate_ed25519();
        let (mut swarm, topic) = raw_peer_in_room(
            key.clone(),
            RawPeerOptions::default(),
            "lobby",
            addr.parse::<Multiaddr>().unwrap(),
        )
        .unwrap();
        let (publish, mut to_publish) = mpsc::unbounded_channel::<Vec<u8>>();
        let (seen_tx, seen) = std_mpsc::channel();
        let task = rt.spawn(async move {
            loop {
                tokio::select! {
                    Some(data) = to_publish.recv() => {
                        if let Err(e) = swarm.behaviour_mut().gossipsub.publish(topic.clone(), data) {
                            panic!("raw peer cannot publish: {e}");
                        }
                    }
                    event = swarm.select_next_some() => match event {
                        SwarmEvent::Behaviour(RawBehaviourEvent::Gossipsub(
                            gossipsub::Event::Subscribed { peer_id, .. },
                        )) => {
                            let _ = seen_tx.send(Seen::Subscribed(peer_id));
                        }
                        SwarmEvent::Behaviour(RawBehaviourEvent::Gossipsub(
                            gossipsub::Event::Message { message, .. },
                        )) => {
                            let _ = seen_tx.send(Seen::Message(message.data));
                        }
                        _ => {}
                    },
                }
            }
        });
        RawPeer {
            key,
            publish,
            seen,
            task,
        }
    }

    /// Waits (up to [`PROMPT`]) for something seen that matches; returns the
    /// message bytes of what matched (empty for a subscription).
    fn next(&self, what: &str, pred: impl Fn(&Seen) -> bool) -> Vec<u8> {
        let deadline = Instant::now() + PROMPT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.seen.recv_timeout(left) {
                Ok(s) if pred(&s) => {
                    return match s {
                        Seen::Message(data) => data,
                        Seen::Subscribed(_) => Vec::new(),
                    };
                }
                Ok(_) => {}
                Err(_) => panic!("the raw peer waited {PROMPT:?} for {what}"),
            }
        }
    }

    fn publish(&self, data: Vec<u8>) {
        self.publish.send(data).unwrap();
    }
}

impl Drop for RawPeer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// A payload in the lobby, stamped now.
fn payload(session: u64, seq: u64, body: Body) -> Payload {
    Payload {
        room: "lobby".parse().unwrap(),
        nick: "raw".parse().unwrap(),
        ts: now_ms(),
        session,
        seq,
        body,
    }
}

fn sealed(key: &Keypair, payload: Payload) -> Vec<u8> {
    Envelope::seal(key, payload).unwrap().as_bytes().to_vec()
}

/// Whether `data` is an envelope by `author`.
fn by(data: &[u8], author: &str) -> bool {
    Envelope::open(data).is_ok_and(|e| e.author().to_string() == author)
}

fn is_event(v: &Value, event: &str, peer: &str) -> bool {
    v["event"] == event && v["room"] == "lobby" && v["peer_id"] == peer
}

/// Whether `node`'s output after `mark` has an `event` about `peer`.
fn any_since(node: &Node, mark: usize, event: &str, peer: &str) -> bool {
    node.seen[mark..].iter().any(|v| is_event(v, event, peer))
}

/// Sends a chat as `raw` (a member of its own) and waits until `node`
/// shows it: every payload `raw` published before has been taken by then.
fn control(raw: &RawPeer, node: &mut Node, text: &str) {
    raw.publish(sealed(
        &raw.key,
        payload(1, 0, Body::Chat(text.parse().unwrap())),
    ));
    node.wait_for("the raw peer's control message", PROMPT, |v| {
        v["event"] == "message" && v["text"] == text
    });
}

fn who_lists(node: &mut Node, peer: &str) -> bool {
    let who = node.command("/who lobby");
    who["members"]
        .as_array()
        .unwrap()
        .iter()
        .any(|m| m["peer_id"] == peer)
}

/// B speaks in the lobby while a raw peer records it, before A is there
/// (so A's gossipsub never saw those messages: publishing them again needs
/// no wait for its duplicate cache to forget them). Returns A, B, what was
/// recorded of B's, and the recorder.
fn a_member_recorded_before_the_victim_came(
    rt: &Runtime,
    test: &str,
) -> (Node, Node, Vec<Vec<u8>>) {
    let mut b = Node::start(test, "b", &[]);
    let recorder = RawPeer::connect(rt, &b.addr("quic-v1"));
    let b_id = b.peer_id.clone();
    assert_eq!(b.command("/join lobby")["event"], "ok");
    recorder.wait_subscribed(&b_id);
    let mut recorded = vec![recorder.next(
        "b's join",
        |s| matches!(s, Seen::Message(d) if by(d, &b_id)),
    )];
    for i in 0..12 {
        assert_eq!(
            b.command(&format!("/send lobby early {i}"))["event"],
            "sent"
        );
        recorded.push(recorder.next(
            "b's chat",
            |s| matches!(s, Seen::Message(d) if by(d, &b_id)),
        ));
    }
    let mut a = Node::start(test, "a", &["--bootstrap", &b.addr("quic-v1")]);
    assert_eq!(a.command("/join lobby")["event"], "ok");
    a.wait_joined("lobby", &b_id);
    b.wait_joined("lobby", &a.peer_id.clone());
    (a, b, recorded)
}

#[test]
fn a_departed_members_payloads_published_again_bring_no_ghost_joined() {
    let rt = Runtime::new().unwrap();
    let (mut a, mut b, recorded) = a_member_recorded_before_the_victim_came(&rt, "ghost-left");
    let b_id = b.peer_id.clone();
    let replayer = RawPeer::join(&rt, &a.addr("quic-v1"), &a.peer_id);

    assert_eq!(b.command("/leave lobby")["event"], "ok");
    a.wait_for("b left", PROMPT, |v| {
        is_event(v, "left", &b_id) && v["reason"] == "left"
    });
    let mark = a.mark();
    for data in recorded {
        replayer.publish(data);
    }
    control(&replayer, &mut a, "after the replays");
    assert!(
        !any_since(&a, mark, "joined", &b_id),
        "a replay brought b back: {:#?}",
        &a.seen[mark..]
    );
    assert!(!who_lists(&mut a, &b_id));
}

#[test]
fn a_silent_member_is_not_kept_alive_by_replays_nor_brought_back_after_its_timeout() {
    let rt = Runtime::new().unwrap();
    let (mut a, mut b, recorded) = a_member_recorded_before_the_victim_came(&rt, "ghost-timeout");
    let (a_id, b_id) = (a.peer_id.clone(), b.peer_id.clone());
    let replayer = RawPeer::join(&rt, &a.addr("quic-v1"), &a.peer_id);

    b.kill();
    let killed = Instant::now();
    let mark = a.mark();
    let mut replays = recorded.into_iter();
    // One replay after each of A's beacons: before the fix each one kept B present.
    loop {
        a.drain();
        if any_since(&a, mark, "left", &b_id) {
            break;
        }
        assert!(
            killed.elapsed() < MEMBER_TIMEOUT + Duration::from_secs(15),
            "b, killed, was never reported gone: replays kept it present"
        );
        replayer.next(
            "a's beacon",
            |s| matches!(s, Seen::Message(d) if by(d, &a_id)),
        );
        match replays.next() {
            Some(data) => replayer.publish(data),
            None => panic!("out of recorded payloads, and b still present"),
        }
    }
    let left = a.seen[mark..]
        .iter()
        .find(|v| is_event(v, "left", &b_id))
        .unwrap()
        .clone();
    assert_eq!(left["reason"], "timeout", "{left}");
    let mark = a.mark();
    for data in replays {
        replayer.publish(data);
    }
    control(&replayer, &mut a, "after the replays");
    assert!(
        !any_since(&a, mark, "joined", &b_id),
        "a replay brought b back: {:#?}",
        &a.seen[mark..]
    );
}

/// Publishes a presence of each key (its first payload in the lobby).
fn arrive(raw: &RawPeer, keys: &[Keypair]) {
    for key in keys {
        raw.publish(sealed(key, payload(1, 0, Body::Presence)));
    }
}

#[test]
fn a_full_room_flooded_with_sybils_never_reports_a_present_member_gone() {
    const MAX_MEMBERS: usize = 2048;
    const BATCH: usize = 256;
    let rt = Runtime::new().unwrap();
    let mut a = Node::start("sybils", "a", &[]);
    let mut b = Node::start("sybils", "b", &["--bootstrap", &a.addr("quic-v1")]);
    for n in [&mut a, &mut b] {
        assert_eq!(n.command("/join lobby")["event"], "ok");
    }
    let b_id = b.peer_id.clone();
    a.wait_joined("lobby", &b_id);
    let raw = RawPeer::join(&rt, &a.addr("quic-v1"), &a.peer_id);
    let sybil_count = |a: &mut Node, n: usize| {
        let not_b = |v: &Value| v["event"] == "joined" && v["peer_id"] != b_id.as_str();
        a.wait_for_count("sybils joined", n, PROMPT, not_b);
    };

    // The room fills: B and MAX_MEMBERS - 1 sybils, in batches the node
    // verifies without shedding any.
    let filling = Instant::now();
    let fill: Vec<Keypair> = (0..MAX_MEMBERS - 1)
        .map(|_| Keypair::generate_ed25519())
        .collect();
    for (i, batch) in fill.chunks(BATCH).enumerate() {
        arrive(&raw, batch);
        sybil_count(&mut a, (i * BATCH + batch.len()).min(fill.len()));
    }
    let mark = a.mark();
    // Twice the room more: before the fix each evicted the member silent
    // longest, B among them, however recently B had beaconed.
    let extra: Vec<Keypair> = (0..2 * MAX_MEMBERS)
        .map(|_| Keypair::generate_ed25519())
        .collect();
    for (i, batch) in extra.chunks(BATCH).enumerate() {
        arrive(&raw, batch);
        // A member's chat after the batch: once shown, the batch was taken.
        let text = format!("mark {i}");
        let seq = u64::try_from(i).unwrap() + 1;
        raw.publish(sealed(
            &fill[0],
            payload(1, seq, Body::Chat(text.parse().unwrap())),
        ));
        a.wait_for_since(mark, "the mark", PROMPT, |v| {
            v["event"] == "message" && v["text"] == text.as_str()
        });
    }
    assert!(
        !any_since(&a, 0, "left", &b_id),
        "a present member was reported gone"
    );
    assert!(who_lists(&mut a, &b_id));
    let newcomers: HashSet<String> = extra
        .iter()
        .map(|k| k.public().to_peer_id().to_string())
        .collect();
    let shown = a.seen[mark..]
        .iter()
        .filter(|v| {
            v["event"] == "joined" && v["peer_id"].as_str().is_some_and(|p| newcomers.contains(p))
        })
        .count();
    // Unless the flood took so long that the first sybils timed out.
    if filling.elapsed() < MEMBER_TIMEOUT {
        assert_eq!(shown, 0, "the room was full of live members");
    }
    // B is still heard.
    assert_eq!(b.command("/send lobby still here")["event"], "sent");
    a.wait_for("b's message", PROMPT, |v| {
        v["event"] == "message" && v["text"] == "still here"
    });
}

#[test]
fn a_member_whose_sessions_ran_ahead_of_its_clock_is_heard_at_once_after_a_restart() {
    let mut a = Node::start("sessions", "a", &[]);
    let a_id = a.peer_id.clone();
    let dir = temp_dir("sessions", "m");
    let bootstrap = a.addr("quic-v1");
    let args = [
        "--json",
        "--no-mdns",
        "--nick",
        "m",
        "--listen",
        "/ip4/127.0.0.1/udp/0/quic-v1",
        "--bootstrap",
        &bootstrap,
    ];
    let started = Instant::now();
    let mut m = Node::spawn("m", dir.clone(), &args);
    let m_id = m.peer_id.clone();
    let ready_after = started.elapsed();
    assert_eq!(a.command("/join lobby")["event"], "ok");
    assert_eq!(m.command("/join lobby")["event"], "ok");
    a.wait_joined("lobby", &m_id);
    m.wait_joined("lobby", &a_id);

    // Each join is a new session, +1: joining and leaving a room (nobody
    // else is in) faster than once a millisecond puts them ahead of the
    // clock, which the next start takes them from.
    let mut joins: u64 = 1;
    let mut replies = 1;
    let margin = 4 * ready_after + Duration::from_secs(3);
    loop {
        let lead = i128::from(joins) - i128::try_from(started.elapsed().as_millis()).unwrap();
        if lead > i128::try_from(margin.as_millis()).unwrap() {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "joins here are slower than the clock ({joins} in {:?}): the premise of this test fails",
            started.elapsed()
        );
        let batch = 2000;
        let mut lines = String::new();
        for _ in 0..batch {
            lines.push_str("/join churn\n/leave churn\n");
        }
        m.write_raw(lines.as_bytes());
        joins += batch;
        replies += 2 * batch as usize;
        let answered = m.wait_for_count(
            "replies",
            replies,
            PROMPT * 4,
            palaver_testkit::output::is_reply,
        );
        let refused: Vec<&Value> = answered.iter().filter(|v| v["event"] != "ok").collect();
        assert!(refused.is_empty(), "{:?}", &refused[..refused.len().min(3)]);
    }
    // The lobby's session is now far ahead of the clock too.
    // (Replies from here are not waited for: `Node::command` counts
    // replies one by one, and thousands went by uncounted.)
    let mark = a.mark();
    m.send_line("/leave lobby");
    m.send_line("/join lobby");
    a.wait_for_since(mark, "m back", PROMPT, |v| is_event(v, "joined", &m_id));

    // A crash, and a restart at once: A still has m present, with its last
    // session, when m comes back.
    m.kill();
    let _ = m.wait_exit();
    let mark = a.mark();
    let mut m = Node::spawn("m-again", dir, &args);
    assert_eq!(m.seen[0]["rooms"], serde_json::json!(["lobby"]));
    assert!(
        !any_since(&a, mark, "left", &m_id),
        "m timed out before it was back: the test is too slow for its premise"
    );
    m.wait_joined("lobby", &a_id);
    assert_eq!(m.command("/send lobby back already")["event"], "sent");
    a.wait_for_since(mark, "m's message after its restart", PROMPT, |v| {
        v["event"] == "message" && v["text"] == "back already"
    });
}
