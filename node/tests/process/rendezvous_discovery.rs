//! Nodes that know only a relay find each other through its rendezvous
//! service, room by room (no `--bootstrap` to each other, no mDNS).

use palaver_testkit::{Node, PROMPT, Relay, temp_dir};

#[test]
fn three_nodes_that_know_only_the_relay_find_each_other_per_room() {
    let dir = temp_dir("rendezvous", "relay");
    let relay = Relay::start(
        &dir.join("identity.key"),
        2,
        &[
            "--listen",
            "/ip4/127.0.0.1/udp/0/quic-v1",
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
        ],
    );
    let quic = relay.addr("quic-v1");
    let mut nodes: Vec<Node> = ["ann", "ben", "cat"]
        .iter()
        .map(|n| Node::start("rendezvous", n, &["--bootstrap", &quic]))
        .collect();
    // ann and ben share a room cat is not in; all three share the lobby.
    for n in nodes.iter_mut() {
        assert_eq!(n.command("/join lobby")["event"], "ok");
    }
    for n in nodes.iter_mut().take(2) {
        assert_eq!(n.command("/join pair")["event"], "ok");
    }
    let ids: Vec<String> = nodes.iter().map(|n| n.peer_id.clone()).collect();
    for n in nodes.iter_mut() {
        let own = n.peer_id.clone();
        for id in ids.iter().filter(|id| **id != own) {
            n.wait_joined("lobby", id);
        }
    }
    nodes[0].wait_joined("pair", &ids[1]);
    // The relay shows up in /id.
    let id = nodes[0].command("/id");
    assert_eq!(
        id["relays"][0]["peer_id"],
        quic.rsplit('/').next().unwrap(),
        "{id}"
    );
    // Messages flow between nodes that found each other this way.
    assert_eq!(
        nodes[2].command("/send lobby found you all")["event"],
        "sent"
    );
    for n in nodes.iter_mut().take(2) {
        n.wait_for("cat's message", PROMPT, |v| {
            v["event"] == "message" && v["text"] == "found you all"
        });
    }
    assert_eq!(nodes[1].command("/send pair just us")["event"], "sent");
    nodes[0].wait_for("ben's pair message", PROMPT, |v| {
        v["event"] == "message" && v["text"] == "just us"
    });
    nodes[2].drain();
    assert!(nodes[2].messages("pair").is_empty());
}
