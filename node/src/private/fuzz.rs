//! Property tests of the private-room record loader (issue 13): a room's
//! record comes back whole, and no record, however bent (its JSON, or the
//! signed rotations and tokens inside it), panics [`PrivateRooms::load`];
//! whatever loads records again as something that loads to the same room.
//! `PROPTEST_CASES` raises the modest default count (`scripts/fuzz`).
#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

use libp2p::identity::Keypair;
use palaver_proto::private::rotation::Rotation;
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{Config, FileFailurePersistence};

use super::*;

fn config() -> Config {
    let mut config = Config {
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(
            "proptest-regressions/private/fuzz.txt",
        ))),
        ..Config::default()
    };
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = 128;
    }
    config
}

fn keypair(seed: [u8; 32]) -> Keypair {
    Keypair::ed25519_from_bytes(seed).unwrap()
}

/// What a room went through before its record was written.
#[derive(Debug, Clone)]
struct History {
    creator: [u8; 32],
    room_id: [u8; ROOM_ID_BYTES],
    name: String,
    /// Seeds of the members admitted by invite, in turn.
    admitted: Vec<[u8; 32]>,
    /// Invites issued and left open (token, revoked).
    invites: Vec<([u8; TOKEN_BYTES], bool)>,
    lockboxes: Vec<Vec<u8>>,
}

fn history() -> impl Strategy<Value = History> {
    (
        any::<[u8; 32]>(),
        any::<[u8; ROOM_ID_BYTES]>(),
        prop_oneof!["[A-Za-z0-9._-]{1,55}", "[a-z]{1,8}~[0-9a-f]{8}"],
        prop::collection::btree_set(any::<[u8; 32]>(), 0..4),
        prop::collection::vec((any::<[u8; TOKEN_BYTES]>(), any::<bool>()), 0..6),
        prop::collection::vec(prop::collection::vec(any::<u8>(), 1..64), 0..6),
    )
        .prop_map(
            |(creator, room_id, name, admitted, invites, lockboxes)| History {
                creator,
                room_id,
                name,
                admitted: admitted.into_iter().filter(|s| *s != creator).collect(),
                invites,
                lockboxes,
            },
        )
}

/// The creator's rooms after `h`, and the room's handle.
fn play(h: &History) -> (PrivateRooms, RoomName) {
    let alice = keypair(h.creator);
    let local = alice.public().to_peer_id();
    let mut rooms = PrivateRooms::new(local);
    let first = genesis(
        h.room_id,
        EpochKey::from_bytes([1; 32]),
        local,
        "age1creator".into(),
    );
    let name: RoomName = h.name.parse().unwrap();
    let handle = rooms
        .add(&name, Rotation::sign(&alice, first).unwrap())
        .unwrap();
    for (k, seed) in h.admitted.iter().enumerate() {
        let token = [k as u8; TOKEN_BYTES];
        rooms.invite(&handle, token, 1_000).unwrap();
        let peer = keypair(*seed).public().to_peer_id();
        let key = EpochKey::from_bytes([k as u8 + 2; 32]);
        let (_, s) = rooms
            .redeem(peer, &h.room_id, &token, "age1member".into(), key, 2_000)
            .unwrap();
        rooms
            .take(&handle, Rotation::sign(&alice, s).unwrap())
            .unwrap();
    }
    for (token, revoked) in &h.invites {
        rooms.invite(&handle, *token, 3_000).unwrap();
        if *revoked {
            let _ = rooms.revoke(&h.room_id, token);
        }
    }
    for l in &h.lockboxes {
        rooms.keep_lockbox(&handle, l.clone());
    }
    (rooms, handle)
}

/// A record with its rotations in a fixed order (loading may reorder them).
fn normal(record: &[u8]) -> serde_json::Value {
    let mut v: serde_json::Value = serde_json::from_slice(record).unwrap();
    if let Some(serde_json::Value::Array(rotations)) = v.get_mut("rotations") {
        rotations.sort_by_key(|r| r.as_str().map(str::to_owned));
    }
    v
}

/// Whatever loads records again as something that loads to the same room.
fn check_load(local: PeerId, bytes: &[u8]) {
    let mut rooms = PrivateRooms::new(local);
    let Ok(handle) = rooms.load(bytes) else {
        return;
    };
    let again = rooms.record(&handle).unwrap();
    let mut other = PrivateRooms::new(local);
    assert_eq!(other.load(&again).as_ref(), Ok(&handle));
    assert_eq!(normal(&other.record(&handle).unwrap()), normal(&again));
    assert_eq!(
        other.current(&handle).map(|e| e.id),
        rooms.current(&handle).map(|e| e.id)
    );
    assert_eq!(other.roster(&handle), rooms.roster(&handle));
}

/// One change inside the record's fields, past the JSON.
#[derive(Debug, Clone)]
enum Bend {
    /// A byte of one signed rotation changed (by a non-zero xor), or the
    /// rotation cut short there (`None`).
    Rotation(Index, Index, Option<u8>),
    /// A rotation from outside (arbitrary bytes).
    ForeignRotation(Vec<u8>),
    /// A token of another length, or not hex.
    Token(Index, String),
    /// Another version.
    Version(u64),
    /// Another name.
    Name(String),
    /// A lockbox that is not hex.
    Lockbox(String),
}

fn bend() -> impl Strategy<Value = Bend> {
    prop_oneof![
        4 => (any::<Index>(), any::<Index>(), prop::option::weighted(0.75, 1u8..=255))
            .prop_map(|(r, i, x)| Bend::Rotation(r, i, x)),
        1 => prop::collection::vec(any::<u8>(), 0..300).prop_map(Bend::ForeignRotation),
        1 => (any::<Index>(), "[0-9a-fA-F]{0,40}|.{0,8}").prop_map(|(i, t)| Bend::Token(i, t)),
        1 => prop_oneof![0u64..4, Just(255), Just(256), Just(u64::MAX)].prop_map(Bend::Version),
        1 => "\\PC{0,70}".prop_map(Bend::Name),
        1 => "[0-9a-fA-F]{0,9}|.{0,8}".prop_map(Bend::Lockbox),
    ]
}

fn apply_bend(record: &[u8], bend: &Bend) -> Vec<u8> {
    use serde_json::{Value, json};
    let hex = data_encoding::HEXLOWER;
    let mut v: Value = serde_json::from_slice(record).unwrap();
    match bend {
        Bend::Rotation(r, i, x) => {
            if let Some(Value::Array(rotations)) = v.get_mut("rotations")
                && !rotations.is_empty()
            {
                {
                    let at = r.index(rotations.len());
                    let mut bytes = hex
                        .decode(rotations[at].as_str().unwrap().as_bytes())
                        .unwrap();
                    if bytes.is_empty() {
                        return serde_json::to_vec(&v).unwrap();
                    }
                    let i = i.index(bytes.len());
                    match x {
                        Some(x) => bytes[i] ^= x,
                        None => bytes.truncate(i),
                    }
                    rotations[at] = json!(hex.encode(&bytes));
                }
            }
        }
        Bend::ForeignRotation(bytes) => {
            if let Some(Value::Array(rotations)) = v.get_mut("rotations") {
                rotations.push(json!(hex.encode(bytes)));
            }
        }
        Bend::Token(i, t) => {
            if let Some(Value::Array(invites)) = v.get_mut("invites")
                && !invites.is_empty()
            {
                {
                    let at = i.index(invites.len());
                    invites[at]["token"] = json!(t);
                }
            }
        }
        Bend::Version(n) => v["v"] = json!(n),
        Bend::Name(n) => v["name"] = json!(n),
        Bend::Lockbox(l) => {
            if let Some(Value::Array(lockboxes)) = v.get_mut("lockboxes") {
                lockboxes.insert(0, json!(l));
            }
        }
    }
    serde_json::to_vec(&v).unwrap()
}

/// Byte-level changes to the JSON itself.
fn jolt(mut bytes: Vec<u8>, at: Index, what: u8, kind: u8) -> Vec<u8> {
    let i = at.index(bytes.len());
    match kind % 4 {
        0 => bytes[i] ^= what | 1,
        1 => bytes.truncate(i),
        2 => bytes.insert(i, what),
        _ => {
            bytes.remove(i);
        }
    }
    bytes
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn a_room_comes_back_from_its_record_whole(h in history()) {
        let (rooms, handle) = play(&h);
        let record = rooms.record(&handle).unwrap();
        let mut again = PrivateRooms::new(rooms.local);
        let loaded = again.load(&record);
        prop_assert_eq!(loaded.as_ref(), Ok(&handle));
        prop_assert_eq!(normal(&again.record(&handle).unwrap()), normal(&record));
        prop_assert_eq!(
            again.current(&handle).map(|e| e.id),
            rooms.current(&handle).map(|e| e.id)
        );
        prop_assert_eq!(again.roster(&handle), rooms.roster(&handle));
        check_load(rooms.local, &record);
    }

    #[test]
    fn a_record_with_bent_fields_never_panics_the_loader(
        h in history(),
        bends in prop::collection::vec(bend(), 1..=3),
    ) {
        let (rooms, handle) = play(&h);
        let mut record = rooms.record(&handle).unwrap();
        for b in &bends {
            record = apply_bend(&record, b);
        }
        check_load(rooms.local, &record);
    }

    #[test]
    fn a_record_with_bent_json_never_panics_the_loader(
        h in history(),
        jolts in prop::collection::vec((any::<Index>(), any::<u8>(), any::<u8>()), 1..=4),
    ) {
        let (rooms, handle) = play(&h);
        let mut record = rooms.record(&handle).unwrap();
        for (at, what, kind) in jolts {
            if record.is_empty() {
                break;
            }
            record = jolt(record, at, what, kind);
        }
        check_load(rooms.local, &record);
    }

    #[test]
    fn arbitrary_bytes_never_panic_the_loader(
        seed in any::<[u8; 32]>(),
        bytes in prop::collection::vec(any::<u8>(), 0..256),
        text in "\\{\"v\":1,\"name\":\"[a-z]{1,4}\",\"rotations\":\\[(\"[0-9a-f]{0,80}\")?\\],\"invites\":\\[\\],\"lockboxes\":\\[\\]\\}",
    ) {
        let local = keypair(seed).public().to_peer_id();
        check_load(local, &bytes);
        check_load(local, text.as_bytes());
    }
}
