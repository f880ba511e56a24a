#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

use libp2p::identity::Keypair;
use palaver_proto::private::redeem::Reason;
use palaver_proto::private::rotation::Rotation;

use super::*;

fn key(b: u8) -> EpochKey {
    EpochKey::from_bytes([b; 32])
}

struct Member {
    keypair: Keypair,
    rooms: PrivateRooms,
}

impl Member {
    fn new() -> Self {
        let keypair = Keypair::generate_ed25519();
        let rooms = PrivateRooms::new(keypair.public().to_peer_id());
        Self { keypair, rooms }
    }

    fn peer(&self) -> PeerId {
        self.keypair.public().to_peer_id()
    }

    fn sign(&self, s: Statement) -> Rotation {
        Rotation::sign(&self.keypair, s).unwrap()
    }
}

fn created(alice: &mut Member) -> RoomName {
    let s = genesis([7; 16], key(1), alice.peer(), "age1alice".into());
    let r = alice.sign(s);
    alice.rooms.add(&"team".parse().unwrap(), r).unwrap()
}

/// Alice admits `who` with a fresh token; both take the rotation.
fn admit(alice: &mut Member, handle: &RoomName, who: &mut Member, k: u8) -> Rotation {
    alice.rooms.invite(handle, [k; 16], 1_000).unwrap();
    let (h, s) = alice
        .rooms
        .redeem(
            who.peer(),
            &[7; 16],
            &[k; 16],
            "age1who".into(),
            key(k),
            2_000,
        )
        .unwrap();
    assert_eq!(&h, handle);
    let r = alice.sign(s);
    assert!(alice.rooms.take(handle, r.clone()).unwrap().new);
    r
}

#[test]
fn a_created_room_has_a_handle_of_its_name_and_id_and_one_admin() {
    let mut alice = Member::new();
    let handle = created(&mut alice);
    assert_eq!(handle.as_str(), "team~07070707");
    assert_eq!(alice.rooms.handle_of(&[7; 16]), Some(&handle));
    assert!(alice.rooms.is_member(&handle, &alice.peer()));
    let (join, leave) = alice.rooms.sync_topics(&handle);
    assert_eq!(join, vec![key(1).topic()]);
    assert!(leave.is_empty());
    assert_eq!(alice.rooms.room_of_topic(&key(1).topic()), Some(&handle));
}

#[test]
fn an_invite_admits_one_peer_once_and_moves_the_room_to_a_new_key() {
    let mut alice = Member::new();
    let mut bob = Member::new();
    let handle = created(&mut alice);
    let welcome = admit(&mut alice, &handle, &mut bob, 2);
    assert_eq!(alice.rooms.current(&handle).unwrap().key, key(2));
    let bob_handle = bob.rooms.add(&"team".parse().unwrap(), welcome).unwrap();
    assert_eq!(bob_handle, handle);
    assert!(bob.rooms.is_member(&handle, &alice.peer()));
    // The same token again, another peer: used.
    let carol = Member::new();
    let again = alice.rooms.redeem(
        carol.peer(),
        &[7; 16],
        &[2; 16],
        "age1c".into(),
        key(9),
        3_000,
    );
    assert_eq!(again.unwrap_err(), Reason::Used);
    // An unknown token, an unknown room: the same answer.
    let unknown = alice.rooms.redeem(
        carol.peer(),
        &[7; 16],
        &[3; 16],
        "age1c".into(),
        key(9),
        3_000,
    );
    assert_eq!(unknown.unwrap_err(), Reason::Unknown);
    let other_room = alice.rooms.redeem(
        carol.peer(),
        &[8; 16],
        &[2; 16],
        "age1c".into(),
        key(9),
        3_000,
    );
    assert_eq!(other_room.unwrap_err(), Reason::Unknown);
}

#[test]
fn an_expired_or_revoked_invite_admits_no_one() {
    let mut alice = Member::new();
    let handle = created(&mut alice);
    let carol = Member::new();
    alice.rooms.invite(&handle, [4; 16], 0).unwrap();
    let late = alice.rooms.redeem(
        carol.peer(),
        &[7; 16],
        &[4; 16],
        "age1c".into(),
        key(9),
        INVITE_TTL_MS,
    );
    assert_eq!(late.unwrap_err(), Reason::Expired);
    alice.rooms.invite(&handle, [5; 16], 0).unwrap();
    assert_eq!(alice.rooms.revoke(&[7; 16], &[5; 16]).unwrap(), handle);
    let revoked = alice
        .rooms
        .redeem(carol.peer(), &[7; 16], &[5; 16], "age1c".into(), key(9), 1);
    assert_eq!(revoked.unwrap_err(), Reason::Revoked);
    assert!(alice.rooms.revoke(&[7; 16], &[6; 16]).is_err());
}

#[test]
fn a_kicked_member_learns_it_is_removed_and_gets_no_key_after() {
    let mut alice = Member::new();
    let mut bob = Member::new();
    let handle = created(&mut alice);
    let welcome = admit(&mut alice, &handle, &mut bob, 2);
    bob.rooms.add(&"team".parse().unwrap(), welcome).unwrap();
    // Bob is no admin: he cannot kick.
    assert!(matches!(
        bob.rooms.kick(&handle, alice.peer(), key(3)),
        Err(PrivateError::NotAdmin(_))
    ));
    let (s, recipient) = alice.rooms.kick(&handle, bob.peer(), key(3)).unwrap();
    assert_eq!(recipient.as_deref(), Some("age1who"));
    let notice = alice
        .rooms
        .removal_notice(&handle, &s, bob.peer(), key(4))
        .unwrap();
    let removal = alice.sign(s);
    alice.rooms.take(&handle, removal.clone()).unwrap();
    assert!(!alice.rooms.is_member(&handle, &bob.peer()));
    assert_eq!(alice.rooms.current(&handle).unwrap().key, key(3));
    // Bob cannot open the real lockbox; the notice tells him.
    let taken = bob.rooms.take(&handle, alice.sign(notice)).unwrap();
    assert!(taken.removed_self);
    assert!(bob.rooms.key(&handle, &key(3).id()).is_none());
    // His old code does not bring him back.
    alice.rooms.invite(&handle, [6; 16], 1_000).unwrap();
    let back = alice.rooms.redeem(
        bob.peer(),
        &[7; 16],
        &[6; 16],
        "age1who".into(),
        key(5),
        2_000,
    );
    assert_eq!(back.unwrap_err(), Reason::Revoked);
}

#[test]
fn a_room_comes_back_from_its_record_with_keys_and_tokens() {
    let mut alice = Member::new();
    let mut bob = Member::new();
    let handle = created(&mut alice);
    admit(&mut alice, &handle, &mut bob, 2);
    alice.rooms.invite(&handle, [9; 16], 5).unwrap();
    alice.rooms.keep_lockbox(&handle, vec![1, 2, 3]);
    let record = alice.rooms.record(&handle).unwrap();
    let mut again = PrivateRooms::new(alice.peer());
    assert_eq!(again.load(&record).unwrap(), handle);
    assert_eq!(again.current(&handle).unwrap().key, key(2));
    assert!(again.is_member(&handle, &bob.peer()));
    let used = again.redeem(bob.peer(), &[7; 16], &[2; 16], "x".into(), key(8), 6);
    assert_eq!(used.unwrap_err(), Reason::Used);
    assert!(
        again
            .redeem(bob.peer(), &[7; 16], &[9; 16], "x".into(), key(8), 6)
            .is_ok()
    );
    assert!(again.load(b"{not a record").is_err());
    // Another node cannot take the record as its own.
    assert!(
        PrivateRooms::new(Member::new().peer())
            .load(&record)
            .is_err()
    );
}

#[test]
fn a_member_listens_on_the_last_few_epochs_only() {
    let mut alice = Member::new();
    let handle = created(&mut alice);
    alice.rooms.sync_topics(&handle);
    for k in 2..6 {
        let s = alice.rooms.rooms[&handle].keyring.rekey(key(k)).unwrap();
        let r = alice.sign(s);
        alice.rooms.take(&handle, r).unwrap();
        alice.rooms.sync_topics(&handle);
    }
    let listened: HashSet<String> = alice.rooms.topics.keys().cloned().collect();
    let expected: HashSet<String> = (3..6).map(|k| key(k).topic()).collect();
    assert_eq!(listened, expected);
    // An old epoch's topic gets the kept lockboxes; the current one does not.
    alice.rooms.keep_lockbox(&handle, vec![9]);
    assert_eq!(alice.rooms.lockboxes_for(&key(3).topic()), vec![vec![9]]);
    assert!(alice.rooms.lockboxes_for(&key(5).topic()).is_empty());
}

#[test]
fn a_member_heard_on_an_older_epoch_is_sent_the_current_key_again_now_and_then() {
    let mut alice = Member::new();
    let mut bob = Member::new();
    let handle = created(&mut alice);
    admit(&mut alice, &handle, &mut bob, 2);
    let now = Instant::now();
    let current = key(2).id();
    assert_eq!(alice.rooms.heard_on(&handle, &current, now), None);
    let nudge = alice.rooms.heard_on(&handle, &key(1).id(), now).unwrap();
    assert_eq!(nudge.recipients, vec!["age1who".to_owned()]);
    assert_eq!(
        Rotation::open(&nudge.rotation).unwrap().statement().key,
        key(2)
    );
    assert_eq!(
        alice
            .rooms
            .heard_on(&handle, &key(1).id(), now + Duration::from_secs(1)),
        None
    );
    assert!(
        alice
            .rooms
            .heard_on(&handle, &key(1).id(), now + NUDGE_INTERVAL)
            .is_some()
    );
}
