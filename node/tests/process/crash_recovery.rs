//! A node killed (SIGKILL) at a random moment while messages stream in has
//! lost nothing it showed: every message it emitted is in its history when
//! it comes back, its store opens every time, and it rejoins its rooms.

use std::collections::BTreeSet;
use std::os::unix::process::ExitStatusExt;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use palaver_testkit::{Node, PROMPT, temp_dir};
use serde_json::{Value, json};

const CYCLES: usize = 20;
/// Messages the receiver emits before it is killed: 1..=MAX_BEFORE_KILL.
const MAX_BEFORE_KILL: u64 = 40;
/// Messages the sender may have out that the receiver has not shown yet,
/// so some are always on their way (and being stored) at the kill. With
/// at most CYCLES × (MAX_BEFORE_KILL + AHEAD + 1) messages in all, every
/// one fits in one `/history lobby 1000`.
const AHEAD: usize = 5;

/// xorshift64: enough randomness to pick when to kill.
struct Rng(u64);

impl Rng {
    /// Seeded from `PALAVER_TEST_SEED` (to replay a failure), else the clock.
    fn new() -> Self {
        let seed = std::env::var("PALAVER_TEST_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
                now.as_secs() ^ u64::from(now.subsec_nanos()) << 20
            })
            .max(1);
        println!("seed {seed} (PALAVER_TEST_SEED={seed} replays this run)");
        Rng(seed)
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
}

fn is_lobby_message(v: &Value) -> bool {
    v["event"] == "message" && v["room"] == "lobby"
}

/// Checks that every id in `emitted` is in `node`'s stored history of the lobby.
fn assert_history_holds(node: &mut Node, emitted: &BTreeSet<String>, when: &str) {
    let history = node.command("/history lobby 1000");
    assert_eq!(history["event"], "history", "{when}: {history}");
    assert_eq!(history["corrupt"], 0, "{when}: {history}");
    let messages = history["messages"].as_array().unwrap();
    assert!(
        messages.len() < 1000,
        "{when}: the whole lobby fits in one page ({} messages)",
        messages.len()
    );
    let stored: BTreeSet<String> = messages
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_owned())
        .collect();
    let lost: Vec<&String> = emitted.difference(&stored).collect();
    assert!(
        lost.is_empty(),
        "{when}: {} of {} messages shown before a kill are not in the history: {lost:?}",
        lost.len(),
        emitted.len()
    );
}

#[test]
fn a_node_killed_while_messages_stream_in_keeps_every_message_it_showed() {
    let started = Instant::now();
    let mut rng = Rng::new();
    let mut a = Node::start("crash", "sender", &[]);
    let a_id = a.peer_id.clone();
    assert_eq!(a.command("/join lobby")["event"], "ok");
    let bootstrap = a.addr("tcp");
    let b_dir = temp_dir("crash", "receiver");
    let b_args = [
        "--json",
        "--no-mdns",
        "--nick",
        "receiver",
        "--listen",
        "/ip4/127.0.0.1/tcp/0",
        "--bootstrap",
        &bootstrap,
    ];

    let mut b_id = None;
    // Every message id the receiver emitted in any earlier run.
    let mut emitted = BTreeSet::new();
    let mut sent_total = 0;
    for cycle in 0..=CYCLES {
        // The store opened (else no `ready`), the identity and rooms are back.
        let mut b = Node::spawn(&format!("receiver-{cycle}"), b_dir.clone(), &b_args);
        let ready = b.seen[0].clone();
        let b_id = b_id.get_or_insert_with(|| b.peer_id.clone()).clone();
        assert_eq!(b.peer_id, b_id, "cycle {cycle}: the same identity");
        if cycle == 0 {
            assert_eq!(ready["rooms"], json!([]), "{ready}");
            assert_eq!(b.command("/join lobby")["event"], "ok");
        } else {
            assert_eq!(ready["rooms"], json!(["lobby"]), "cycle {cycle}: {ready}");
            assert_history_holds(&mut b, &emitted, &format!("cycle {cycle}"));
        }
        if cycle == CYCLES {
            assert!(b.close_and_wait().success());
            break;
        }

        b.wait_joined("lobby", &a_id);
        if cycle == 0 {
            a.wait_joined("lobby", &b_id);
        }
        let target = 1 + usize::try_from(rng.next() % MAX_BEFORE_KILL).unwrap();
        // One of its own too: a `sent` reply also promises it is stored.
        b.send_line(&format!("/send lobby from the receiver in cycle {cycle}"));
        let mut sent = 0;
        for shown in 1..=target {
            while sent < shown + AHEAD {
                a.send_line(&format!("cycle {cycle} message {sent}"));
                sent += 1;
            }
            b.wait_for_count("messages", shown, PROMPT, is_lobby_message);
        }
        b.kill();
        // Whatever it wrote before it died counts as shown.
        let status = b.wait_exit();
        assert_eq!(
            status.signal(),
            Some(9),
            "cycle {cycle}: SIGKILLed: {status}"
        );
        let shown = b.messages("lobby");
        assert!(shown.len() >= target, "cycle {cycle}");
        emitted.extend(shown.iter().map(|m| m["id"].as_str().unwrap().to_owned()));
        let own: Vec<&Value> = b.seen.iter().filter(|v| v["event"] == "sent").collect();
        emitted.extend(own.iter().map(|m| m["id"].as_str().unwrap().to_owned()));
        for _ in 0..sent {
            let reply = a.reply();
            assert_eq!(reply["event"], "sent", "cycle {cycle}: {reply}");
        }
        sent_total += sent;
        println!(
            "cycle {cycle}: killed after {} shown (target {target}) and {} own sent; {sent} sent to it",
            shown.len(),
            own.len()
        );
    }
    println!(
        "{} messages shown before kills, {sent_total} sent, in {:?}",
        emitted.len(),
        started.elapsed()
    );
    assert!(emitted.len() >= CYCLES);
    assert!(a.close_and_wait().success());
}

#[test]
fn a_room_joined_just_before_a_kill_is_joined_again() {
    let dir = temp_dir("join-kill", "a");
    let args = ["--json", "--no-mdns", "--listen", "/ip4/127.0.0.1/tcp/0"];
    for attempt in 0..20 {
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut node = Node::spawn("a", dir.clone(), &args);
        assert_eq!(node.command("/join lobby")["event"], "ok");
        assert_eq!(node.command("/join second")["event"], "ok");
        node.kill();
        let mut again = Node::spawn("a-again", dir.clone(), &args);
        let ready = again.seen[0].clone();
        let mut rooms: Vec<&str> = ready["rooms"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r.as_str().unwrap())
            .collect();
        rooms.sort_unstable();
        assert_eq!(
            rooms,
            ["lobby", "second"],
            "attempt {attempt}: a join replied ok is forgotten: {ready}"
        );
        assert!(again.close_and_wait().success());
    }
}
