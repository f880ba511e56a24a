//! Two nodes on one LAN find each other with mDNS, without `--bootstrap`.
//!
//! The LAN is a veth pair between two network namespaces made for the test
//! (root and `ip` from iproute2 needed), so no multicast leaves the machine.

use std::process::Command;

use palaver_testkit::{Node, PROMPT, temp_dir};

fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run ip (iproute2): {e}"));
    assert!(
        out.status.success(),
        "ip {}: {} (this test needs root and iproute2; scripts/test installs it)",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Two namespaces joined by a veth pair, removed again on drop.
struct Lan {
    namespaces: [String; 2],
}

impl Lan {
    fn new() -> Lan {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let id = (std::process::id() % 10_000) * 10 + n;
        let namespaces = [format!("palaver-lan{id}a"), format!("palaver-lan{id}b")];
        let veths = [format!("pv{id}a"), format!("pv{id}b")];
        let lan = Lan {
            namespaces: namespaces.clone(),
        };
        for ns in &namespaces {
            ip(&["netns", "add", ns]);
        }
        ip(&[
            "link", "add", &veths[0], "type", "veth", "peer", "name", &veths[1],
        ]);
        for (i, (ns, veth)) in namespaces.iter().zip(&veths).enumerate() {
            ip(&["link", "set", veth, "netns", ns]);
            ip(&[
                "-n",
                ns,
                "addr",
                "add",
                &format!("10.77.0.{}/24", i + 1),
                "dev",
                veth,
            ]);
            ip(&["-n", ns, "link", "set", veth, "up"]);
            ip(&["-n", ns, "link", "set", "lo", "up"]);
            ip(&["-n", ns, "route", "add", "224.0.0.0/4", "dev", veth]);
        }
        lan
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        for ns in &self.namespaces {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

#[test]
fn two_nodes_on_one_lan_find_each_other_with_mdns_and_chat() {
    let lan = Lan::new();
    let start = |i: usize, name: &str| {
        let ns = &lan.namespaces[i];
        let args = ["--json", "--nick", name];
        Node::spawn_with(
            name,
            temp_dir("lan", name),
            &["ip", "netns", "exec", ns],
            &args,
        )
    };
    let mut a = start(0, "alice");
    let mut b = start(1, "bob");
    for n in [&mut a, &mut b] {
        assert_eq!(n.command("/join lan")["event"], "ok");
    }
    let (ida, idb) = (a.peer_id.clone(), b.peer_id.clone());
    a.wait_joined("lan", &idb);
    b.wait_joined("lan", &ida);
    assert_eq!(a.command("/send lan found you")["event"], "sent");
    b.wait_for("alice's message", PROMPT, |v| {
        v["event"] == "message" && v["text"] == "found you" && v["from"] == ida
    });
    let peers = b.command("/peers");
    assert!(
        peers["peers"][0]["addr"]
            .as_str()
            .unwrap()
            .contains("/10.77.0.1/"),
        "{peers}"
    );
}

#[test]
fn with_no_mdns_a_node_neither_finds_nor_is_found() {
    let lan = Lan::new();
    let a = Node::spawn_with(
        "quiet",
        temp_dir("lan", "quiet"),
        &["ip", "netns", "exec", &lan.namespaces[0]],
        &["--json", "--no-mdns"],
    );
    let mut b = Node::spawn_with(
        "loud",
        temp_dir("lan", "loud"),
        &["ip", "netns", "exec", &lan.namespaces[1]],
        &["--json"],
    );
    // A third node with mDNS on shows that discovery works on this LAN at all.
    let mut c = Node::spawn_with(
        "loud2",
        temp_dir("lan", "loud2"),
        &["ip", "netns", "exec", &lan.namespaces[0]],
        &["--json"],
    );
    b.wait_for("the other mDNS node", PROMPT, |v| {
        v["event"] == "peer_connected" && v["peer_id"] == c.peer_id
    });
    c.drain();
    b.drain();
    for n in [&b, &c] {
        assert!(
            !n.seen
                .iter()
                .any(|v| v["event"] == "peer_connected" && v["peer_id"] == a.peer_id),
            "{} found the quiet node",
            n.name
        );
    }
}
