//! Several real `node` processes on loopback chatting in rooms.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use palaver_testkit::{Node, PROMPT};
use serde_json::Value;

const PER_NODE: usize = 20;

fn who_ids(node: &mut Node, room: &str) -> Vec<String> {
    let who = node.command(&format!("/who {room}"));
    assert_eq!(who["event"], "who", "{who}");
    let mut ids: Vec<String> = who["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["peer_id"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids
}

/// Checks that `node` got every other author's messages once each, in order.
fn assert_got_all_others_in_order(node: &Node, authors: &[(&str, &str)]) {
    let messages = node.messages("lobby");
    let mut by_author: HashMap<&str, Vec<usize>> = HashMap::new();
    let mut ids = std::collections::HashSet::new();
    for m in &messages {
        assert!(
            ids.insert(m["id"].as_str().unwrap().to_owned()),
            "{}: duplicate {m}",
            node.name
        );
        assert_eq!(m["replay"], false);
        let text = m["text"].as_str().unwrap();
        let (name, n) = text.split_once(" #").unwrap();
        let (_, peer) = authors.iter().find(|(a, _)| *a == name).unwrap();
        assert_eq!(m["from"], *peer, "{}: {m}", node.name);
        assert_eq!(m["nick"], name);
        by_author.entry(name).or_default().push(n.parse().unwrap());
    }
    assert_eq!(
        messages.len(),
        PER_NODE * (authors.len() - 1),
        "{}: {messages:#?}",
        node.name
    );
    for (name, _) in authors.iter().filter(|(a, _)| *a != node.name) {
        let got = &by_author[name];
        let expected: Vec<usize> = (0..PER_NODE).collect();
        assert_eq!(
            got, &expected,
            "{}: {name}'s messages out of order or missing",
            node.name
        );
    }
}

#[test]
fn three_nodes_in_a_line_chat_in_rooms_and_see_each_other_come_and_go() {
    let test = "three";
    let mut a = Node::start(test, "alice", &[]);
    let mut b = Node::start(test, "bob", &["--bootstrap", &a.addr("quic-v1")]);
    let mut c = Node::start(test, "carol", &["--bootstrap", &b.addr("tcp")]);
    let ids = [a.peer_id.clone(), b.peer_id.clone(), c.peer_id.clone()];

    for n in [&mut a, &mut b, &mut c] {
        assert_eq!(
            n.command("/join lobby"),
            serde_json::json!({"event": "ok", "cmd": "join"})
        );
        // joining twice is fine
        assert_eq!(n.command("/join lobby")["event"], "ok");
    }
    for n in [&mut a, &mut b, &mut c] {
        for id in &ids {
            if *id != n.peer_id {
                n.wait_joined("lobby", id);
            }
        }
        let mut expected = ids.to_vec();
        expected.sort();
        assert_eq!(who_ids(n, "lobby"), expected, "{} /who", n.name);
    }

    // Everybody talks at once.
    for i in 0..PER_NODE {
        for n in [&mut a, &mut b, &mut c] {
            let name = n.name.clone();
            n.send_line(&format!("{name} #{i}"));
        }
    }
    for n in [&mut a, &mut b, &mut c] {
        for _ in 0..PER_NODE {
            let r = n.reply();
            assert_eq!(r["event"], "sent", "{r}");
            assert_eq!(r["room"], "lobby");
            assert!(r["peers"].as_u64().unwrap() >= 1, "{r}");
        }
    }
    for n in [&mut a, &mut b, &mut c] {
        n.wait_for_count("lobby messages", 2 * PER_NODE, PROMPT, |v| {
            v["event"] == "message" && v["room"] == "lobby"
        });
    }

    // A second room, without carol: nothing leaks either way.
    assert_eq!(a.command("/join side")["event"], "ok");
    assert_eq!(b.command("/join side")["event"], "ok");
    a.wait_joined("side", &ids[1]);
    b.wait_joined("side", &ids[0]);
    assert_eq!(a.command("/send side for bob only")["event"], "sent");
    b.wait_for("the side message", PROMPT, |v| {
        v["event"] == "message" && v["text"] == "for bob only"
    });
    assert_eq!(b.command("/send lobby back in the lobby")["event"], "sent");
    c.wait_for("bob's lobby message", PROMPT, |v| {
        v["event"] == "message" && v["text"] == "back in the lobby"
    });
    let side = b.messages("side");
    assert_eq!(side.len(), 1, "{side:?}");

    // Leaving a room is seen as `left`.
    assert_eq!(b.command("/leave side")["event"], "ok");
    a.wait_for("bob left side", PROMPT, |v| {
        v["event"] == "left"
            && v["room"] == "side"
            && v["peer_id"] == ids[1]
            && v["reason"] == "left"
    });
    assert_eq!(b.command("/rooms")["rooms"], serde_json::json!(["lobby"]));

    // A node that vanishes is reported gone within 30 s.
    let killed_at = Instant::now();
    c.kill();
    for n in [&mut a, &mut b] {
        n.wait_for("carol timed out", Duration::from_secs(30), |v| {
            v["event"] == "left"
                && v["room"] == "lobby"
                && v["peer_id"] == ids[2]
                && v["reason"] == "timeout"
        });
    }
    assert!(
        killed_at.elapsed() <= Duration::from_secs(31),
        "took {:?}",
        killed_at.elapsed()
    );

    // Final accounting, after everything else had time to arrive.
    for n in [&mut a, &mut b] {
        n.drain();
    }
    let authors = [
        ("alice", ids[0].as_str()),
        ("bob", ids[1].as_str()),
        ("carol", ids[2].as_str()),
    ];
    for n in [&a, &b, &c] {
        let lobby: Vec<&Value> = n.seen.iter().filter(|v| v["event"] == "message").collect();
        assert!(
            lobby
                .iter()
                .all(|m| m["text"] != "for bob only" || m["room"] == "side"),
            "{}",
            n.name
        );
        let only_lobby = Node::messages(n, "lobby")
            .into_iter()
            .filter(|m| m["text"] != "back in the lobby")
            .count();
        assert_eq!(only_lobby, 2 * PER_NODE, "{}", n.name);
    }
    assert!(
        c.messages("side").is_empty(),
        "carol saw a room she is not in"
    );
    assert!(a.messages("side").is_empty(), "own messages are not echoed");
    // Strip the one extra lobby message before checking order.
    for n in [&mut a, &mut b, &mut c] {
        n.seen.retain(|v| v["text"] != "back in the lobby");
        assert_got_all_others_in_order(n, &authors);
    }

    // /quit says goodbye and exits 0.
    assert_eq!(
        a.command("/quit"),
        serde_json::json!({"event": "ok", "cmd": "quit"})
    );
    assert!(a.wait_exit().success());
    b.wait_for("alice quit", PROMPT, |v| {
        v["event"] == "left" && v["peer_id"] == ids[0] && v["reason"] == "quit"
    });
    assert!(b.close_and_wait().success());
}

#[test]
fn history_sent_and_rooms_answer_a_lone_node() {
    let mut a = Node::start("alone", "solo", &[]);
    assert_eq!(
        a.command("/rooms"),
        serde_json::json!({"event": "rooms", "rooms": [], "private": []})
    );
    let err = a.command("hello?");
    assert_eq!(err["code"], "no_current_room", "{err}");
    assert_eq!(a.command("/join lobby")["event"], "ok");
    let sent = a.command("anyone here?");
    assert_eq!(sent["event"], "sent");
    assert_eq!(sent["peers"], 0, "{sent}");
    assert_eq!(a.command("/send elsewhere x")["code"], "not_joined");
    let history = a.command("/history lobby 5");
    let messages = history["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0]["text"], "anyone here?");
    assert_eq!(messages[0]["id"], sent["id"]);
    let id = a.command("/id");
    assert_eq!(id["peer_id"], a.peer_id.as_str());
    assert_eq!(id["nick"], "solo");
    assert_eq!(a.command("/nick Solo Two")["event"], "ok");
    assert_eq!(a.command("/id")["nick"], "Solo Two");
    assert_eq!(a.command("/peers")["peers"], serde_json::json!([]));
    assert_eq!(a.command("/leave")["event"], "ok");
    assert_eq!(a.command("/leave")["code"], "no_current_room");
    assert!(a.close_and_wait().success());
}

#[test]
fn dial_connects_two_nodes_and_reports_failures() {
    let mut a = Node::start("dial", "a", &[]);
    let mut b = Node::start("dial", "b", &[]);
    let ok = b.command(&format!("/dial {}", a.addr("quic-v1")));
    assert_eq!(ok, serde_json::json!({"event": "ok", "cmd": "dial"}));
    a.wait_for("b connected", PROMPT, |v| {
        v["event"] == "peer_connected" && v["peer_id"] == b.peer_id && v["relayed"] == false
    });
    let peers = b.command("/peers");
    assert_eq!(peers["peers"][0]["peer_id"], a.peer_id.as_str(), "{peers}");
    assert_eq!(b.command("/dial not-an-address")["code"], "bad_multiaddr");
    assert_eq!(
        b.command(&format!("/dial {}", b.addr("tcp")))["code"],
        "bad_multiaddr"
    );
    // Nothing listens on port 9 of loopback over TCP.
    let failed = b.command("/dial /ip4/127.0.0.1/tcp/9");
    assert_eq!(failed["code"], "dial_failed", "{failed}");
    a.kill();
    b.wait_for("a disconnected", PROMPT, |v| {
        v["event"] == "peer_disconnected" && v["peer_id"] == a.peer_id
    });
}
