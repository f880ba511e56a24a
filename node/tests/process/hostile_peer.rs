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
