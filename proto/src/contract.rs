//! The wire contract in one place: every name, number, hash and label that
//! two Palaver implementations must agree on to talk, so that the node, the
//! relay, the tests and the bench import one definition instead of copying
//! it. PROTOCOL.md (at the repository root) describes the same contract in
//! prose, and a test checks that its table of constants matches this module.
//!
//! Everything here is strings, bytes and numbers: no libp2p types, so that
//! the crate stays free of networking. The node wraps what it needs (a
//! gossipsub `IdentTopic`, a rendezvous `Namespace`, a `StreamProtocol`).
//!
//! The byte layouts themselves live with their codecs ([`crate::envelope`],
//! [`crate::wire`], [`crate::history`]); their versions and size limits are
//! re-exported here, so that this module is the whole table.

pub mod labels;

use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::envelope::MessageId;
use crate::names::RoomName;

pub use crate::envelope::MAX_ENVELOPE_BYTES;
pub use crate::history::reconcile::NEGENTROPY_VERSION;
pub use crate::history::{
    MAX_FETCH, MAX_FETCH_BYTES, MAX_RECONCILE_BYTES, MAX_REQUEST_BYTES, MAX_RESPONSE_BYTES,
};
pub use crate::names::{NICK_MAX_CHARS, ROOM_MAX_LEN, TEXT_MAX_BYTES};
pub use crate::wire::MAX_PAYLOAD_BYTES;

// ---- protocol names ----

/// The protocol version a node (and a relay) announces with identify.
/// Informational: no peer refuses another over it.
pub const IDENTIFY_PROTOCOL_VERSION: &str = "/palaver/2.0.0";
/// The catch-up protocol, negotiated on each request's stream
/// ([`crate::history`]).
pub const HISTORY_PROTOCOL: &str = "/palaver/history/2";
/// libp2p circuit relay v2, the hop side a relay serves.
pub const RELAY_HOP_PROTOCOL: &str = "/libp2p/circuit/relay/0.2.0/hop";
/// libp2p rendezvous, which a relay serves.
pub const RENDEZVOUS_PROTOCOL: &str = "/rendezvous/1.0.0";
/// A bootstrap peer is used as a relay when identify says it offers all of these.
pub const RELAY_PROTOCOLS: [&str; 2] = [RELAY_HOP_PROTOCOL, RENDEZVOUS_PROTOCOL];

// ---- versions ----

/// The first byte of every envelope this code writes.
pub const ENVELOPE_VERSION: u8 = crate::envelope::VERSION;
/// The first byte of every payload this code writes.
pub const PAYLOAD_VERSION: u8 = crate::wire::VERSION;
/// The first byte of every catch-up request and response this code writes.
pub const HISTORY_VERSION: u8 = crate::history::VERSION;

// ---- gossip ----

/// What a room's gossipsub topic starts with. The `2` is the gossip
/// generation: version 1 nodes signed gossip too, and the two refuse each
/// other's messages, so they use different topics.
pub const TOPIC_PREFIX: &str = "palaver/2/room/";
/// Largest gossipsub frame (one length-prefixed RPC, which may carry several
/// messages) a node reads; a larger one ends the stream. libp2p's default.
pub const MAX_GOSSIP_FRAME_BYTES: usize = 64 * 1024;
/// Most rooms a node is in at once, public and private together.
pub const MAX_ROOMS: usize = 256;
/// Topics a node listens on for one private room: those of its key's newest
/// epochs (a public room has one topic).
pub const LISTENED_EPOCHS: usize = 3;
/// Most topics a node takes one peer to be subscribed to: a subscription RPC
/// that would take the peer beyond it is ignored, as are topics that are
/// neither a public nor a private room's. A node listens on at most
/// `MAX_ROOMS × LISTENED_EPOCHS` topics, plus one per room for a moment while
/// its key changes.
pub const MAX_TOPICS_PER_PEER: usize = MAX_ROOMS * (LISTENED_EPOCHS + 1);
/// Most bytes of subscriptions and control messages one gossipsub RPC may
/// carry (gossipsub's default, 16 KiB, is below the hello of a node in
/// [`MAX_ROOMS`] rooms: a peer reading it with that default would drop the
/// stream and never learn its topics).
pub const MAX_GOSSIP_CONTROL_BYTES: usize = MAX_GOSSIP_FRAME_BYTES;
/// How far a live payload's timestamp may be from the receiver's clock, either
/// way, before it is ignored as a replay (or as from the future).
pub const MAX_CLOCK_SKEW_MS: u64 = 5 * 60 * 1000;

/// The gossipsub topic of a room: [`TOPIC_PREFIX`] followed by the name.
/// Gossipsub hashes it with the identity function, so this string is also
/// the topic hash on the wire.
pub fn topic(room: &RoomName) -> String {
    format!("{TOPIC_PREFIX}{room}")
}

/// The room whose topic this is; `None` for any other topic (another prefix,
/// or what follows it is not a valid room name).
pub fn room_of_topic(topic: &str) -> Option<RoomName> {
    topic
        .strip_prefix(TOPIC_PREFIX)?
        .parse::<RoomName>()
        .ok()
        .filter(|room| !room.is_private())
}

// ---- message ids ----

/// Length of a message id.
pub const MESSAGE_ID_BYTES: usize = 16;

/// The id of an envelope: the first [`MESSAGE_ID_BYTES`] bytes of SHA-256
/// over all its bytes, signature included. Gossipsub uses it as the message
/// id, catch-up to name messages, the store to key them.
pub fn message_id(envelope_bytes: &[u8]) -> MessageId {
    let digest = Sha256::digest(envelope_bytes);
    let mut id = [0u8; MESSAGE_ID_BYTES];
    id.copy_from_slice(&digest[..MESSAGE_ID_BYTES]);
    id
}

// ---- rendezvous ----

/// What a room's rendezvous namespace starts with.
pub const RENDEZVOUS_NAMESPACE_PREFIX: &str = "palaver/";
/// How many bytes of the hash a namespace keeps (written as twice as many hex digits).
pub const RENDEZVOUS_HASH_BYTES: usize = 16;

/// The rendezvous namespace under which a room's members register at a
/// relay: [`RENDEZVOUS_NAMESPACE_PREFIX`] and the lowercase hex of the first
/// [`RENDEZVOUS_HASH_BYTES`] bytes of SHA-256([`labels::RENDEZVOUS_NAMESPACE`]
/// followed by the room name). A hash, so that the relay does not learn the
/// name (though it can test guesses of it).
pub fn rendezvous_namespace(room: &RoomName) -> String {
    let mut hasher = Sha256::new();
    hasher.update(labels::RENDEZVOUS_NAMESPACE);
    hasher.update(room.as_str().as_bytes());
    let digest = hasher.finalize();
    let mut out =
        String::with_capacity(RENDEZVOUS_NAMESPACE_PREFIX.len() + 2 * RENDEZVOUS_HASH_BYTES);
    out.push_str(RENDEZVOUS_NAMESPACE_PREFIX);
    out.push_str(&lower_hex(&digest[..RENDEZVOUS_HASH_BYTES]));
    out
}

// ---- presence ----

/// How often a member publishes a presence beacon in each room it is in.
pub const BEACON_INTERVAL: Duration = Duration::from_secs(5);
/// Silence after which a member is taken to have gone (reason `timeout`).
/// Several beacon intervals, so that a lost beacon or two is no departure.
pub const MEMBER_TIMEOUT: Duration = Duration::from_secs(20);

fn lower_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use libp2p_identity::Keypair;

    use super::*;
    use crate::envelope::{Envelope, hex_id};
    use crate::wire::{Body, Payload};

    fn room(name: &str) -> RoomName {
        name.parse().unwrap()
    }

    fn unhex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn a_topic_names_its_room_and_nothing_else() {
        assert_eq!(topic(&room("lobby")), "palaver/2/room/lobby");
        assert_eq!(topic(&room("A.b_c-9")), "palaver/2/room/A.b_c-9");
    }

    #[test]
    fn every_room_comes_back_from_its_topic() {
        for name in ["lobby", "Lobby", "a", "A.b_c-9", &"x".repeat(ROOM_MAX_LEN)] {
            assert_eq!(
                room_of_topic(&topic(&room(name))),
                Some(room(name)),
                "{name}"
            );
        }
    }

    #[test]
    fn other_topics_name_no_room() {
        for other in [
            "",
            "palaver/2/room/",
            "palaver/1/room/lobby",
            "palaver/2/room/bad room",
            "palaver/2/room/lobby/extra",
            "xpalaver/2/room/lobby",
            "/palaver/2/room/lobby",
            "palaver/2/room",
            // A private room's handle is never a public topic.
            "palaver/2/room/team~0a0b0c0d",
        ] {
            assert_eq!(room_of_topic(other), None, "{other:?}");
        }
        let too_long = format!("{TOPIC_PREFIX}{}", "x".repeat(ROOM_MAX_LEN + 1));
        assert_eq!(room_of_topic(&too_long), None);
    }

    #[test]
    fn message_ids_match_independently_computed_hashes() {
        // python3: hashlib.sha256(data).digest()[:16].hex()
        assert_eq!(hex_id(&message_id(b"")), "e3b0c44298fc1c149afbf4c8996fb924");
        assert_eq!(
            hex_id(&message_id(b"abc")),
            "ba7816bf8f01cfea414140de5dae2223"
        );
        assert_eq!(message_id(b"abc").len(), MESSAGE_ID_BYTES);
    }

    #[test]
    fn an_envelope_is_identified_by_the_hash_of_its_bytes() {
        let key = Keypair::generate_ed25519();
        let payload = Payload {
            room: room("lobby"),
            nick: "ann".parse().unwrap(),
            ts: 1,
            session: 1,
            seq: 0,
            body: Body::Join,
        };
        let envelope = Envelope::seal(&key, payload).unwrap();
        assert_eq!(envelope.id_bytes(), message_id(envelope.as_bytes()));
        assert_eq!(envelope.id(), hex_id(&message_id(envelope.as_bytes())));
    }

    #[test]
    fn a_sealed_envelope_matches_the_independently_computed_vector() {
        // Computed with python3's hashlib and the `cryptography` package's
        // Ed25519 from the layouts alone (PROTOCOL.md, "Test vectors").
        let seed: [u8; 32] = std::array::from_fn(|i| i as u8);
        let key = Keypair::ed25519_from_bytes(seed).unwrap();
        let payload = Payload {
            room: room("lobby"),
            nick: "alice".parse().unwrap(),
            ts: 1_700_000_000_000,
            session: 1_700_000_000_001,
            seq: 0,
            body: Body::Chat("hello".parse().unwrap()),
        };
        let envelope = Envelope::seal(&key, payload).unwrap();
        let expected = unhex(concat!(
            "01240801122003a107bff3ce10be1d70dd18e74bc09967e4d6309ba50d5f1ddc8664125531b8",
            "002d01010000018bcfe568000000018bcfe568010000000000000000056c6f62627905616c6963",
            "65000568656c6c6f40546dfbc20820527cd9abd6e73ca79a8ddc12ef9806ec1d054b0f86e9f307",
            "42651290df30d513f7fb74780901689c47ee1679157719826a4ecefea65d7c9fdf01",
        ));
        assert_eq!(envelope.as_bytes(), expected.as_slice());
        assert_eq!(
            hex_id(&message_id(&expected)),
            "90423ed47c619dfc3d9bf77d64628e76"
        );
        assert_eq!(
            envelope.author().to_string(),
            "12D3KooWA4Xop1JaT3MHxwYMkCepYsv4iPVopMXwCz5iHYdBfeSB"
        );
    }

    #[test]
    fn namespaces_match_independently_computed_hashes() {
        // python3: "palaver/" + hashlib.sha256(b"palaver room v1\0" + name).digest()[:16].hex()
        for (name, expected) in [
            ("lobby", "palaver/e9204953d350ed6a8ce953e44504289e"),
            ("Lobby", "palaver/210a03c5af11bf0865da4b9cd97040be"),
            ("a", "palaver/5418aadbcc6904b578e4ba0585e87fe4"),
            (&"x".repeat(64), "palaver/b8585b591215c2882f3f28dc7d13ec8f"),
        ] {
            assert_eq!(rendezvous_namespace(&room(name)), expected, "{name}");
        }
    }

    #[test]
    fn a_namespace_hides_its_room_and_has_a_fixed_length() {
        // Names with letters past `f`, which hex cannot spell by chance.
        for name in ["lobby", "z", &"x".repeat(64)] {
            let ns = rendezvous_namespace(&room(name));
            assert!(ns.starts_with(RENDEZVOUS_NAMESPACE_PREFIX));
            assert!(!ns[RENDEZVOUS_NAMESPACE_PREFIX.len()..].contains(name));
            assert_eq!(
                ns.len(),
                RENDEZVOUS_NAMESPACE_PREFIX.len() + 2 * RENDEZVOUS_HASH_BYTES
            );
            // libp2p-rendezvous refuses namespaces over 255 bytes.
            assert!(ns.len() <= 255);
        }
    }

    #[test]
    fn protocol_names_are_libp2p_protocol_ids() {
        for id in [
            IDENTIFY_PROTOCOL_VERSION,
            HISTORY_PROTOCOL,
            RELAY_HOP_PROTOCOL,
            RENDEZVOUS_PROTOCOL,
        ] {
            assert!(
                id.starts_with('/') && !id.contains(char::is_whitespace),
                "{id}"
            );
        }
        assert_eq!(crate::history::PROTOCOL, HISTORY_PROTOCOL);
        assert_eq!(RELAY_PROTOCOLS, [RELAY_HOP_PROTOCOL, RENDEZVOUS_PROTOCOL]);
    }

    #[test]
    fn the_versions_are_those_the_codecs_write() {
        assert_eq!(ENVELOPE_VERSION, 1);
        assert_eq!(PAYLOAD_VERSION, 1);
        assert_eq!(HISTORY_VERSION, 2);
        assert_eq!(NEGENTROPY_VERSION, 0x61);
        assert_eq!(
            crate::wire::Payload::decode(&[PAYLOAD_VERSION + 1]).unwrap_err(),
            crate::wire::WireError::UnknownVersion(PAYLOAD_VERSION + 1)
        );
    }

    #[test]
    fn the_size_limits_follow_from_the_layouts() {
        // Payload: version, kind, ts, session, seq, room (u8 length), nick
        // (u8 length, 4 bytes per char at most), text (u16 length).
        assert_eq!(MAX_PAYLOAD_BYTES, 2 + 24 + 1 + 64 + 1 + 128 + 2 + 4096);
        // Envelope: version, key (u8 length, 64 at most), payload (u16
        // length), signature (u8 length, 64 at most).
        assert_eq!(MAX_ENVELOPE_BYTES, 2 + 64 + 2 + MAX_PAYLOAD_BYTES + 1 + 64);
        // A reconciliation message of the largest size (u16 length), in the
        // largest room; a fetch of 256 references of 8 + 16 bytes fits it.
        assert_eq!(MAX_REQUEST_BYTES, 3 + 64 + 2 + MAX_RECONCILE_BYTES);
        const { assert!(3 + 64 + 2 + MAX_FETCH * (8 + MESSAGE_ID_BYTES) <= MAX_REQUEST_BYTES) };
        // A fetch answer's envelope bytes, after its kind and count.
        assert_eq!(MAX_RESPONSE_BYTES, 4 + MAX_FETCH_BYTES);
        // A reconciliation answer fits the response limit; negentropy needs
        // frames of at least 4096 bytes; the largest envelope fits a fetch answer.
        const { assert!(4 + MAX_RECONCILE_BYTES <= MAX_RESPONSE_BYTES) };
        const { assert!(MAX_RECONCILE_BYTES >= 4096 && MAX_RECONCILE_BYTES <= u16::MAX as usize) };
        const { assert!(4 + MAX_ENVELOPE_BYTES <= MAX_FETCH_BYTES) };
        // One envelope fits a gossipsub frame with room to spare.
        const { assert!(MAX_ENVELOPE_BYTES * 4 < MAX_GOSSIP_FRAME_BYTES) };
        // The hello of a node in every room it may be in fits the control
        // limit: one subscription is its topic and at most 8 bytes of
        // protobuf framing, a private room listens on LISTENED_EPOCHS topics.
        let public = TOPIC_PREFIX.len() + ROOM_MAX_LEN + 8;
        let private = LISTENED_EPOCHS
            * (crate::private::PRIVATE_TOPIC_PREFIX.len()
                + 2 * crate::private::DERIVED_ID_BYTES
                + 8);
        assert!(MAX_ROOMS * public.max(private) + 8 <= MAX_GOSSIP_CONTROL_BYTES);
        assert!(
            MAX_ROOMS * public.max(private) > 16 * 1024,
            "gossipsub's default would do"
        );
    }

    #[test]
    fn a_member_survives_a_few_lost_beacons_before_timing_out() {
        assert!(MEMBER_TIMEOUT >= 3 * BEACON_INTERVAL);
        assert_eq!(MAX_CLOCK_SKEW_MS, 300_000);
    }
}
