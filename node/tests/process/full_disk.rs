//! A full disk: the node says so for each message it cannot store, sends
//! nothing it has not stored, keeps serving, and loses nothing it said it
//! sent. Needs root (it mounts a small tmpfs); CI runs as root.

use std::process::Command;

use palaver_testkit::{Node, temp_dir};

struct Mount(std::path::PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

fn mount_tmpfs(dir: &std::path::Path, size: &str, remount: bool) -> bool {
    let options = if remount {
        format!("remount,size={size}")
    } else {
        format!("size={size}")
    };
    Command::new("mount")
        .args(["-t", "tmpfs", "-o", &options, "tmpfs"])
        .arg(dir)
        .status()
        .is_ok_and(|s| s.success())
}

#[test]
fn a_full_disk_refuses_messages_clearly_and_loses_none_that_were_sent() {
    if is_not_root() {
        eprintln!("skipped: needs root to mount a tmpfs (CI runs as root)");
        return;
    }
    let dir = temp_dir("fulldisk", "mnt");
    assert!(mount_tmpfs(&dir, "3m", false), "mount a 3 MiB tmpfs");
    let _mount = Mount(dir.clone());
    let data_dir = dir.join("node");
    std::fs::create_dir_all(&data_dir).unwrap();
    let args = ["--json", "--no-mdns", "--listen", "/ip4/127.0.0.1/tcp/0"];
    let mut n = Node::spawn("full", data_dir.clone(), &args);
    assert_eq!(n.command("/join lobby")["event"], "ok");
    let filler = "x".repeat(4000);
    let mut sent = Vec::new();
    let refusal = loop {
        assert!(sent.len() < 5000, "the disk never filled");
        let reply = n.command(&format!("/send lobby {} {filler}", sent.len()));
        match reply["event"].as_str().unwrap() {
            "sent" => sent.push(reply["id"].as_str().unwrap().to_owned()),
            _ => break reply,
        }
    };
    assert_eq!(refusal["code"], "storage", "{refusal}");
    assert!(
        refusal["message"]
            .as_str()
            .unwrap()
            .contains("No space left"),
        "{refusal}"
    );
    assert!(sent.len() > 10, "some messages fit before the disk filled");
    // Still serving, and everything it said it sent is there.
    assert_eq!(n.command("/rooms")["rooms"][0], "lobby");
    let history = n.command("/history lobby 1000");
    let ids: Vec<&str> = history["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, sent.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(n.close_and_wait().success());

    // With room again, the node starts and has every sent message.
    assert!(mount_tmpfs(&dir, "64m", true), "grow the tmpfs");
    let mut again = Node::spawn("full-again", data_dir, &args);
    assert_eq!(again.seen[0]["rooms"][0], "lobby");
    let history = again.command("/history lobby 1000");
    assert_eq!(history["messages"].as_array().unwrap().len(), sent.len());
    assert_eq!(history["corrupt"], 0);
    assert_eq!(
        again.command("/send lobby there is room now")["event"],
        "sent"
    );
}

/// Whether this process lacks root (uid 0), read from /proc to stay free of libc.
fn is_not_root() -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    !status
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
}
