//! Generators of valid values: names, payloads, keys and peers, catch-up
//! messages, invites, redeem messages and rotations. Keys are made from
//! generated seeds, so every case is reproducible and shrinks.

use libp2p_identity::{Keypair, PeerId};
use palaver_proto::envelope::MessageId;
use palaver_proto::history::{MessageRef, Refusal, Request, Response};
use palaver_proto::names::{Nick, RoomName, Text};
use palaver_proto::private::redeem;
use palaver_proto::private::rotation::{Role, RosterEntry, Statement};
use palaver_proto::private::{EpochKey, Invite, InvitePeer};
use palaver_proto::wire::{Body, Payload};
use proptest::prelude::*;

/// A public room's name, or a private room's handle.
pub fn room() -> impl Strategy<Value = RoomName> {
    prop_oneof![
        "[A-Za-z0-9._-]{1,64}",
        "[A-Za-z0-9._-]{1,55}~[0-9a-f]{8}",
        Just("palaver-invite1-AQID".to_owned()),
    ]
    .prop_map(|s| s.parse().unwrap())
}

/// A character as people type them: ASCII mostly, then any at all.
fn character() -> impl Strategy<Value = char> {
    prop_oneof![
        4 => proptest::char::range(' ', '~'),
        1 => prop::sample::select(vec!['\t', 'é', 'Ω', '字', '👩', '\u{200D}', '\u{00A0}']),
        1 => any::<char>(),
    ]
}

fn chars(len: std::ops::RangeInclusive<usize>) -> impl Strategy<Value = String> {
    prop::collection::vec(character(), len).prop_map(|c| c.into_iter().collect())
}

pub fn nick() -> impl Strategy<Value = Nick> {
    chars(1..=32).prop_filter_map("not a nick", |s| s.parse().ok())
}

pub fn text() -> impl Strategy<Value = Text> {
    prop_oneof![
        8 => chars(1..=64),
        1 => chars(900..=1024),
        1 => (1usize..=4096).prop_map(|n| "t".repeat(n)),
    ]
    .prop_filter_map("not a text", |s| s.parse().ok())
}

pub fn body() -> impl Strategy<Value = Body> {
    prop_oneof![
        4 => text().prop_map(Body::Chat),
        1 => Just(Body::Join),
        1 => Just(Body::Leave),
        1 => Just(Body::Quit),
        1 => Just(Body::Presence),
    ]
}

pub fn payload() -> impl Strategy<Value = Payload> {
    (
        room(),
        nick(),
        any::<u64>(),
        any::<u64>(),
        any::<u64>(),
        body(),
    )
        .prop_map(|(room, nick, ts, session, seq, body)| Payload {
            room,
            nick,
            ts,
            session,
            seq,
            body,
        })
}

/// An ed25519 keypair from a generated seed.
pub fn keypair() -> impl Strategy<Value = Keypair> {
    any::<[u8; 32]>().prop_map(|seed| Keypair::ed25519_from_bytes(seed).unwrap())
}

/// A peer id from a seed: an ed25519 key's (inline), or a SHA-256 one (as
/// larger keys have).
fn peer_from(seed: [u8; 32], hashed: bool) -> PeerId {
    if hashed {
        let mut bytes = vec![0x12, 0x20];
        bytes.extend_from_slice(&seed);
        PeerId::from_bytes(&bytes).unwrap()
    } else {
        Keypair::ed25519_from_bytes(seed)
            .unwrap()
            .public()
            .to_peer_id()
    }
}

pub fn peer() -> impl Strategy<Value = PeerId> {
    (any::<[u8; 32]>(), prop::bool::weighted(0.2)).prop_map(|(s, h)| peer_from(s, h))
}

/// `n` distinct peers (in `range`).
pub fn distinct_peers(range: std::ops::Range<usize>) -> impl Strategy<Value = Vec<PeerId>> {
    prop::collection::btree_set(any::<[u8; 32]>(), range)
        .prop_flat_map(|seeds| {
            let n = seeds.len();
            (
                Just(seeds),
                prop::collection::vec(prop::bool::weighted(0.2), n),
            )
        })
        .prop_map(|(seeds, hashed)| {
            seeds
                .into_iter()
                .zip(hashed)
                .map(|(s, h)| peer_from(s, h))
                .collect()
        })
}

pub fn message_id() -> impl Strategy<Value = MessageId> {
    any::<MessageId>()
}

pub fn message_ref() -> impl Strategy<Value = MessageRef> {
    (any::<u64>(), message_id()).prop_map(|(ts, id)| MessageRef { ts, id })
}

pub fn history_request() -> impl Strategy<Value = Request> {
    prop_oneof![
        (room(), prop::collection::vec(any::<u8>(), 0..256))
            .prop_map(|(room, message)| Request::Reconcile { room, message }),
        (room(), prop::collection::vec(message_ref(), 0..=32))
            .prop_map(|(room, refs)| Request::Fetch { room, refs }),
    ]
}

pub fn history_response() -> impl Strategy<Value = Response> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..256).prop_map(Response::Reconcile),
        prop::collection::vec(prop::collection::vec(any::<u8>(), 0..200), 0..16)
            .prop_map(Response::Envelopes),
        prop::sample::select(vec![
            Refusal::Busy,
            Refusal::Unavailable,
            Refusal::NotMember
        ])
        .prop_map(Response::Refused),
    ]
}

pub fn epoch_key() -> impl Strategy<Value = EpochKey> {
    any::<[u8; 32]>().prop_map(EpochKey::from_bytes)
}

/// An age X25519 recipient's shape: `age1` and bech32 characters.
pub fn recipient() -> impl Strategy<Value = String> {
    "age1[02-9ac-hj-np-z]{1,58}"
}

fn invite_peer() -> impl Strategy<Value = InvitePeer> {
    (
        peer(),
        prop::collection::vec(prop::collection::vec(any::<u8>(), 1..=24), 0..=8),
    )
        .prop_map(|(peer, addrs)| InvitePeer { peer, addrs })
}

/// An invite whose code fits [`palaver_proto::private::MAX_INVITE_CHARS`].
pub fn invite() -> impl Strategy<Value = Invite> {
    (
        any::<[u8; 16]>(),
        any::<[u8; 16]>(),
        any::<u64>(),
        room(),
        prop::collection::vec(invite_peer(), 1..=8),
    )
        .prop_map(|(room_id, token, expires_ms, name, peers)| Invite {
            room_id,
            token,
            expires_ms,
            name,
            peers,
        })
        .prop_filter("code too long", |i| i.encode().is_ok())
}

pub fn redeem_request() -> impl Strategy<Value = redeem::Request> {
    (any::<[u8; 16]>(), any::<[u8; 16]>(), recipient()).prop_map(|(room_id, token, recipient)| {
        redeem::Request {
            room_id,
            token,
            recipient,
        }
    })
}

pub fn redeem_response() -> impl Strategy<Value = redeem::Response> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 1..512).prop_map(redeem::Response::Welcome),
        prop::sample::select(vec![
            redeem::Reason::Unknown,
            redeem::Reason::Used,
            redeem::Reason::Expired,
            redeem::Reason::Revoked,
            redeem::Reason::Full,
            redeem::Reason::Busy,
        ])
        .prop_map(redeem::Response::Refused),
    ]
}

/// A statement of 1 to 6 members and up to 4 removed peers, all distinct.
pub fn statement() -> impl Strategy<Value = Statement> {
    (
        any::<[u8; 16]>(),
        any::<u64>(),
        any::<[u8; 16]>(),
        epoch_key(),
        distinct_peers(1..11),
        prop::collection::vec((any::<bool>(), recipient()), 6),
        any::<prop::sample::Index>(),
    )
        .prop_map(|(room_id, generation, parent, key, peers, roles, split)| {
            let members = split.index(peers.len().min(6)) + 1;
            let (members, removed) = peers.split_at(members);
            Statement {
                room_id,
                generation,
                parent,
                key,
                members: members
                    .iter()
                    .zip(roles)
                    .map(|(peer, (admin, recipient))| RosterEntry {
                        peer: *peer,
                        role: if admin { Role::Admin } else { Role::Member },
                        recipient,
                    })
                    .collect(),
                removed: removed.iter().take(4).copied().collect(),
            }
        })
}
