use libp2p_identity::Keypair;

use super::*;

struct Member {
    keys: Keypair,
    peer: PeerId,
}

fn member() -> Member {
    let keys = Keypair::generate_ed25519();
    let peer = keys.public().to_peer_id();
    Member { keys, peer }
}

fn entry(m: &Member, role: Role) -> RosterEntry {
    RosterEntry {
        peer: m.peer,
        role,
        recipient: format!("age1{}", m.peer),
    }
}

fn key(n: u8) -> EpochKey {
    EpochKey::from_bytes([n; 32])
}

fn genesis(admin: &Member, others: &[&Member]) -> Rotation {
    let mut members = vec![entry(admin, Role::Admin)];
    members.extend(others.iter().map(|m| entry(m, Role::Member)));
    Rotation::sign(
        &admin.keys,
        Statement {
            room_id: [1; 16],
            generation: 0,
            parent: GENESIS_PARENT,
            key: key(1),
            members,
            removed: vec![],
        },
    )
    .unwrap()
}

/// A rotation by `author` from `parent` that keeps `keep` (with their roles
/// in `ring`'s view) and removes `remove`.
fn removal(ring: &Keyring, author: &Member, remove: &Member, n: u8) -> Rotation {
    let parent = ring.current().unwrap();
    let members = parent
        .members
        .iter()
        .filter(|m| m.peer != remove.peer)
        .cloned()
        .collect();
    Rotation::sign(
        &author.keys,
        Statement {
            room_id: ring.room_id(),
            generation: parent.generation + 1,
            parent: parent.id,
            key: key(n),
            members,
            removed: vec![remove.peer],
        },
    )
    .unwrap()
}

#[test]
fn a_member_sends_under_the_newest_key_that_no_removed_peer_holds() {
    let (admin, bob, carol) = (member(), member(), member());
    let g = genesis(&admin, &[&bob, &carol]);
    let mut ring = Keyring::new(bob.peer, &g).unwrap();
    assert_eq!(ring.current().unwrap().key, key(1));
    assert!(!ring.needs_rekey());
    let r = removal(&ring, &admin, &carol, 2);
    assert_eq!(ring.accept(&r), Ok(true));
    assert_eq!(ring.accept(&r), Ok(false), "a repeat is no news");
    let current = ring.current().unwrap();
    assert_eq!(current.key, key(2));
    assert!(!current.members.iter().any(|m| m.peer == carol.peer));
    assert!(ring.is_removed(&carol.peer));
    assert!(!ring.needs_rekey());
}

#[test]
fn only_an_admin_may_remove_a_member_but_any_member_may_add_one() {
    let (admin, bob, carol, dave) = (member(), member(), member(), member());
    let g = genesis(&admin, &[&bob, &carol]);
    let mut ring = Keyring::new(carol.peer, &g).unwrap();
    let by_bob = removal(&ring, &bob, &admin, 2);
    assert_eq!(ring.accept(&by_bob), Err(Refusal::NotAllowed));
    assert_eq!(ring.current().unwrap().key, key(1));
    let mut members = ring.current().unwrap().members.clone();
    members.push(entry(&dave, Role::Member));
    let add = Rotation::sign(
        &bob.keys,
        Statement {
            room_id: ring.room_id(),
            generation: 1,
            parent: ring.current().unwrap().id,
            key: key(3),
            members,
            removed: vec![],
        },
    )
    .unwrap();
    assert_eq!(ring.accept(&add), Ok(true));
    assert_eq!(ring.current().unwrap().members.len(), 4);
}

#[test]
fn a_member_cannot_make_itself_admin_nor_can_an_outsider_rotate() {
    let (admin, bob, outsider) = (member(), member(), member());
    let g = genesis(&admin, &[&bob]);
    let mut ring = Keyring::new(admin.peer, &g).unwrap();
    let parent = ring.current().unwrap().clone();
    let room_id = ring.room_id();
    let promote = |author: &Member| {
        let members = parent
            .members
            .iter()
            .map(|m| RosterEntry {
                role: Role::Admin,
                ..m.clone()
            })
            .collect();
        Rotation::sign(
            &author.keys,
            Statement {
                room_id,
                generation: 1,
                parent: parent.id,
                key: key(4),
                members,
                removed: vec![],
            },
        )
        .unwrap()
    };
    assert_eq!(ring.accept(&promote(&bob)), Err(Refusal::NotAllowed));
    assert_eq!(ring.accept(&promote(&outsider)), Err(Refusal::NotAMember));
}

#[test]
fn rotations_for_another_room_or_a_skipped_generation_are_refused() {
    let (admin, bob) = (member(), member());
    let mut ring = Keyring::new(bob.peer, &genesis(&admin, &[&bob])).unwrap();
    let parent = ring.current().unwrap().clone();
    let make = |room: [u8; 16], generation: u64| {
        Rotation::sign(
            &admin.keys,
            Statement {
                room_id: room,
                generation,
                parent: parent.id,
                key: key(9),
                members: parent.members.clone(),
                removed: vec![],
            },
        )
        .unwrap()
    };
    assert_eq!(ring.accept(&make([2; 16], 1)), Err(Refusal::OtherRoom));
    assert_eq!(ring.accept(&make([1; 16], 5)), Err(Refusal::BadGeneration));
}

#[test]
fn two_concurrent_removals_by_two_admins_both_end_up_out_with_everyone_on_one_key() {
    let (a, b, c, d, e) = (member(), member(), member(), member(), member());
    // a and b are admins; c and d are removed at once, by a and by b.
    let mut members = vec![entry(&a, Role::Admin), entry(&b, Role::Admin)];
    members.extend([&c, &d, &e].iter().map(|m| entry(m, Role::Member)));
    let g = Rotation::sign(
        &a.keys,
        Statement {
            room_id: [1; 16],
            generation: 0,
            parent: GENESIS_PARENT,
            key: key(1),
            members,
            removed: vec![],
        },
    )
    .unwrap();
    let base = Keyring::new(e.peer, &g).unwrap();
    let by_a = removal(&base, &a, &c, 2);
    let by_b = removal(&base, &b, &d, 3);

    // Three members take the two removals in different orders.
    let mut rings: Vec<Keyring> = [a.peer, b.peer, e.peer]
        .iter()
        .map(|p| Keyring::new(*p, &g).unwrap())
        .collect();
    for (i, ring) in rings.iter_mut().enumerate() {
        let (first, second) = if i % 2 == 0 {
            (&by_a, &by_b)
        } else {
            (&by_b, &by_a)
        };
        ring.accept(first).unwrap();
        ring.accept(second).unwrap();
        assert!(ring.needs_rekey(), "neither key leaves both out");
        assert!(ring.current().is_none(), "no key is safe to send under");
    }
    // Every member agrees on who re-keys first: the lowest peer id present.
    let present = [a.peer, b.peer, e.peer];
    let firsts: Vec<PeerId> = rings
        .iter()
        .zip(present)
        .filter(|(r, _)| r.rekey_rank(&present) == Some(0))
        .map(|(_, p)| p)
        .collect();
    assert_eq!(firsts.len(), 1);
    let steward_at = present.iter().position(|p| *p == firsts[0]).unwrap();
    let steward_keys = [&a, &b, &e][steward_at];
    let statement = rings[steward_at].rekey(key(7)).unwrap();
    let merge = Rotation::sign(&steward_keys.keys, statement).unwrap();
    for ring in &mut rings {
        ring.accept(&merge).unwrap();
        let current = ring.current().unwrap();
        assert_eq!(current.key, key(7));
        let peers: Vec<PeerId> = current.members.iter().map(|m| m.peer).collect();
        assert!(!peers.contains(&c.peer) && !peers.contains(&d.peer));
        assert_eq!(peers.len(), 3);
        assert!(!ring.needs_rekey());
    }
}

#[test]
fn a_re_key_that_arrives_before_the_removal_it_follows_waits_for_it() {
    let (a, b, c, e) = (member(), member(), member(), member());
    let g = genesis(&a, &[&b, &c, &e]);
    let mut with_removal = Keyring::new(b.peer, &g).unwrap();
    let by_a = removal(&with_removal, &a, &c, 2);
    with_removal.accept(&by_a).unwrap();
    // b (not an admin) re-keys after it: a new epoch from the removal's.
    let rekey = Rotation::sign(&b.keys, with_removal.rekey(key(5)).unwrap()).unwrap();

    let mut late = Keyring::new(e.peer, &g).unwrap();
    assert_eq!(late.accept(&rekey), Err(Refusal::UnknownParent));
    assert_eq!(late.accept(&by_a), Ok(true));
    assert_eq!(
        late.current().unwrap().key,
        key(5),
        "the held re-key was taken"
    );
}

#[test]
fn a_removed_peer_is_not_let_back_in_by_a_later_rotation() {
    let (a, b, c) = (member(), member(), member());
    let g = genesis(&a, &[&b, &c]);
    let mut ring = Keyring::new(b.peer, &g).unwrap();
    ring.accept(&removal(&ring, &a, &c, 2)).unwrap();
    let parent = ring.current().unwrap().clone();
    let mut members = parent.members.clone();
    members.push(entry(&c, Role::Member));
    let back = Rotation::sign(
        &a.keys,
        Statement {
            room_id: ring.room_id(),
            generation: parent.generation + 1,
            parent: parent.id,
            key: key(6),
            members,
            removed: vec![],
        },
    )
    .unwrap();
    assert_eq!(ring.accept(&back), Err(Refusal::Readmits));
    assert_eq!(ring.current().unwrap().key, key(2));
}

#[test]
fn a_member_who_is_no_admin_cannot_ban_a_peer_the_room_does_not_hold() {
    let (a, b, stranger) = (member(), member(), member());
    let g = genesis(&a, &[&b]);
    let mut ring = Keyring::new(a.peer, &g).unwrap();
    let parent = ring.current().unwrap().clone();
    let ban = Rotation::sign(
        &b.keys,
        Statement {
            room_id: ring.room_id(),
            generation: 1,
            parent: parent.id,
            key: key(8),
            members: parent.members.clone(),
            removed: vec![stranger.peer],
        },
    )
    .unwrap();
    assert_eq!(ring.accept(&ban), Err(Refusal::NotAllowed));
    assert!(!ring.is_removed(&stranger.peer));
}

#[test]
fn an_older_epoch_without_the_removed_peers_is_not_sent_under_again() {
    let (a, b, c, d) = (member(), member(), member(), member());
    // a and b only at first; c and d join later; then c and d are removed
    // at once by a and by an admin b (made so when d joined).
    let g = genesis(&a, &[&b]);
    let mut ring = Keyring::new(a.peer, &g).unwrap();
    let grow = |ring: &mut Keyring, add: &[&Member], n: u8| {
        let parent = ring.current().unwrap().clone();
        let mut members = parent.members.clone();
        members.extend(add.iter().map(|m| entry(m, Role::Member)));
        for m in &mut members {
            if m.peer == b.peer {
                m.role = Role::Admin;
            }
        }
        let r = Rotation::sign(
            &a.keys,
            Statement {
                room_id: ring.room_id(),
                generation: parent.generation + 1,
                parent: parent.id,
                key: key(n),
                members,
                removed: vec![],
            },
        )
        .unwrap();
        ring.accept(&r).unwrap();
    };
    grow(&mut ring, &[&c, &d], 2);
    let by_a = removal(&ring, &a, &c, 3);
    let by_b = removal(&ring, &b, &d, 4);
    ring.accept(&by_a).unwrap();
    ring.accept(&by_b).unwrap();
    // The genesis holds neither c nor d, but it was followed: no key until
    // the two removals are merged.
    assert!(ring.current().is_none());
    assert!(ring.needs_rekey());
}
