//! A node's life as a process: restarts keep its identity, a second process is
//! refused, signals quit cleanly, lost bootstrap peers are dialled again, and a
//! person without `--json` reads plain text.

use std::process::Command;

use palaver_testkit::{Node, NodeCommand, PROMPT, binary, temp_dir};

#[test]
fn the_identity_survives_a_restart_and_a_second_process_is_refused() {
    let mut a = Node::start("restart", "a", &[]);
    let dir = a.data_dir.clone();
    let second = NodeCommand::new(binary("node"), &dir)
        .args(["--json", "--no-mdns"])
        .run(b"", PROMPT)
        .unwrap();
    assert!(!second.status.success());
    assert!(
        String::from_utf8_lossy(&second.stderr).contains("in use"),
        "{second:?}"
    );
    assert!(second.stdout.is_empty(), "nothing on stdout on failure");
    let id = a.peer_id.clone();
    assert!(a.close_and_wait().success());
    let again = Node::spawn(
        "a2",
        dir,
        &["--json", "--no-mdns", "--listen", "/ip4/127.0.0.1/tcp/0"],
    );
    assert_eq!(again.peer_id, id);
}

#[test]
fn sigterm_says_goodbye_to_every_room_and_exits_cleanly() {
    let mut a = Node::start("sigterm", "a", &[]);
    let mut b = Node::start("sigterm", "b", &["--bootstrap", &a.addr("quic-v1")]);
    for n in [&mut a, &mut b] {
        assert_eq!(n.command("/join one")["event"], "ok");
        assert_eq!(n.command("/join two")["event"], "ok");
    }
    b.wait_joined("one", &a.peer_id.clone());
    b.wait_joined("two", &a.peer_id.clone());
    let status = Command::new("kill")
        .args(["-TERM", &a.pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    assert!(a.wait_exit().success(), "exit status after SIGTERM");
    for room in ["one", "two"] {
        b.wait_for("a quit", PROMPT, |v| {
            v["event"] == "left" && v["room"] == room && v["reason"] == "quit"
        });
    }
}

#[test]
fn a_lost_bootstrap_peer_is_dialled_again_when_it_comes_back() {
    let mut a = Node::start("redial", "a", &[]);
    let a_addr = a.addr("quic-v1");
    let mut b = Node::start("redial", "b", &["--bootstrap", &a_addr]);
    let a_id = a.peer_id.clone();
    b.wait_for("first connection", PROMPT, |v| {
        v["event"] == "peer_connected" && v["peer_id"] == a_id
    });
    let dir = a.data_dir.clone();
    a.kill();
    b.wait_for("a gone", PROMPT, |v| {
        v["event"] == "peer_disconnected" && v["peer_id"] == a_id
    });
    let mark = b.mark();
    // Same identity, same address: b's bootstrap entry fits it again.
    let listen = a_addr.split("/p2p/").next().unwrap().to_owned();
    let mut a = Node::spawn(
        "a-again",
        dir,
        &["--json", "--no-mdns", "--listen", &listen],
    );
    assert_eq!(a.peer_id, a_id);
    b.wait_for_since(mark, "a reconnected", PROMPT, |v| {
        v["event"] == "peer_connected" && v["peer_id"] == a_id
    });
    for n in [&mut a, &mut b] {
        assert_eq!(n.command("/join lobby")["event"], "ok");
    }
    a.wait_joined("lobby", &b.peer_id.clone());
    assert_eq!(b.command("welcome back")["event"], "sent");
    a.wait_for("b's message", PROMPT, |v| {
        v["event"] == "message" && v["text"] == "welcome back"
    });
}

#[test]
fn without_json_a_person_reads_plain_text() {
    let dir = temp_dir("human", "h");
    let out = NodeCommand::new(binary("node"), &dir)
        .args([
            "--no-mdns",
            "--nick",
            "Ann",
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
        ])
        .run(b"/join lobby\nhello\n/frob\n/who\n", PROMPT)
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.starts_with("you are Ann, peer id 12D3KooW"), "{text}");
    for expected in [
        "ok: join",
        "sent to lobby (0 peers)",
        "error (unknown_command): unknown command /frob",
        "1 in lobby:\n  Ann (",
    ] {
        assert!(
            text.contains(expected),
            "{expected:?} missing from:\n{text}"
        );
    }
    assert!(!text.contains('{'), "no JSON in text mode:\n{text}");
}

#[test]
fn a_data_dir_that_cannot_be_used_is_a_clear_error() {
    let dir = temp_dir("unusable", "u");
    // A file where the data dir should be, and a data dir whose store is a file.
    let file = dir.join("not-a-dir");
    std::fs::write(&file, b"x").unwrap();
    let store_blocked = dir.join("blocked");
    std::fs::create_dir_all(&store_blocked).unwrap();
    std::fs::write(store_blocked.join("store"), b"x").unwrap();
    for (data_dir, expected) in [
        (&file, "cannot create or open data dir"),
        (&store_blocked, "cannot open the history store"),
    ] {
        let out = NodeCommand::new(binary("node"), data_dir)
            .args(["--json", "--no-mdns"])
            .run(b"", PROMPT)
            .unwrap();
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(expected), "{expected:?} not in {stderr}");
        assert!(out.stdout.is_empty(), "nothing on stdout on failure");
    }
    assert_eq!(std::fs::read(&file).unwrap(), b"x", "left as it was");
}
