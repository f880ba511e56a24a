//! Unit tests of the rooms core: payloads and the time in, events out.

use super::departed::DEPARTED_MEMORY;
use super::*;

fn room() -> RoomName {
    "lobby".parse().unwrap()
}

fn payload(seq: u64, body: Body) -> Payload {
    Payload {
        room: room(),
        nick: "bob".parse().unwrap(),
        ts: 1,
        session: 9,
        seq,
        body,
    }
}

fn chat(seq: u64, text: &str) -> Payload {
    payload(seq, Body::Chat(text.parse().unwrap()))
}

fn texts(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .map(|e| match e {
            Event::Message(m) => m.text.to_string(),
            Event::Joined { .. } => "+joined".into(),
            Event::Left { reason, .. } => format!("-{reason:?}"),
            other => format!("{other:?}"),
        })
        .collect()
}

fn setup() -> (Rooms, PeerId, Instant) {
    let now = Instant::now();
    let mut rooms = Rooms::new(PeerId::random(), "me".parse().unwrap(), 1);
    assert_eq!(rooms.join(room(), now), Ok(true));
    (rooms, PeerId::random(), now)
}

#[test]
fn a_first_payload_announces_the_member_then_its_content() {
    let (mut rooms, bob, now) = setup();
    let ev = rooms.on_payload(bob, "i1".into(), chat(4, "hi"), now);
    assert_eq!(texts(&ev), ["+joined", "hi"]);
    let who = rooms.who(&room()).unwrap();
    assert_eq!(who.len(), 2);
}

#[test]
fn messages_come_out_in_the_authors_order() {
    let (mut rooms, bob, now) = setup();
    rooms.on_payload(bob, "j".into(), payload(0, Body::Join), now);
    assert!(
        rooms
            .on_payload(bob, "b".into(), chat(2, "two"), now)
            .is_empty()
    );
    let ev = rooms.on_payload(bob, "a".into(), chat(1, "one"), now);
    assert_eq!(texts(&ev), ["one", "two"]);
}

#[test]
fn a_leave_removes_the_member_and_says_why() {
    let (mut rooms, bob, now) = setup();
    rooms.on_payload(bob, "j".into(), payload(0, Body::Join), now);
    let ev = rooms.on_payload(bob, "l".into(), payload(1, Body::Quit), now);
    assert_eq!(texts(&ev), ["-Quit"]);
    assert_eq!(rooms.who(&room()).unwrap().len(), 1);
}

#[test]
fn a_goodbye_from_a_stranger_is_no_arrival() {
    let (mut rooms, bob, now) = setup();
    assert!(
        rooms
            .on_payload(bob, "q".into(), payload(3, Body::Quit), now)
            .is_empty()
    );
    assert_eq!(rooms.who(&room()).unwrap().len(), 1);
}

#[test]
fn a_replayed_message_is_shown_once() {
    let (mut rooms, bob, now) = setup();
    assert_eq!(
        texts(&rooms.on_payload(bob, "a".into(), chat(0, "once"), now)),
        ["+joined", "once"]
    );
    assert!(
        rooms
            .on_payload(bob, "a".into(), chat(0, "once"), now)
            .is_empty()
    );
}

#[test]
fn rejoining_a_room_starts_a_new_session() {
    let (mut rooms, _, now) = setup();
    let first = rooms.outgoing(&room(), Body::Join, 1).unwrap();
    rooms.leave(&room(), now);
    rooms.join(room(), now).unwrap();
    let second = rooms.outgoing(&room(), Body::Join, 1).unwrap();
    assert!(second.session > first.session);
}

#[test]
fn a_full_room_never_pushes_out_a_live_member_for_a_newcomer() {
    let (mut rooms, _, now) = setup();
    let first = PeerId::random();
    rooms.on_payload(first, "f".into(), payload(0, Body::Join), now);
    let later = now + Duration::from_secs(1);
    for i in 0..MAX_MEMBERS - 1 {
        rooms.on_payload(
            PeerId::random(),
            format!("{i}"),
            payload(0, Body::Join),
            later,
        );
    }
    // Sybils keep coming: every member is live, so none is shown, none goes.
    for i in 0..100 {
        let events = rooms.on_payload(
            PeerId::random(),
            format!("s{i}"),
            payload(0, Body::Join),
            later,
        );
        assert!(events.is_empty(), "{events:?}");
    }
    assert!(rooms.is_member(&room(), &first));
    assert_eq!(rooms.who(&room()).unwrap().len(), MAX_MEMBERS + 1);
}

#[test]
fn a_full_room_makes_room_only_by_dropping_a_member_past_its_timeout() {
    let (mut rooms, _, now) = setup();
    let first = PeerId::random();
    rooms.on_payload(first, "f".into(), payload(0, Body::Join), now);
    let later = now + MEMBER_TIMEOUT - Duration::from_secs(1);
    for i in 0..MAX_MEMBERS - 1 {
        rooms.on_payload(
            PeerId::random(),
            format!("{i}"),
            payload(0, Body::Join),
            later,
        );
    }
    // Silent for MEMBER_TIMEOUT, not yet ticked away: it makes room, truly timed out.
    let events = rooms.on_payload(
        PeerId::random(),
        "n".into(),
        payload(0, Body::Join),
        now + MEMBER_TIMEOUT,
    );
    assert_eq!(texts(&events), ["-Timeout", "+joined"]);
    assert!(matches!(&events[0], Event::Left { peer, .. } if *peer == first));
}

#[test]
fn a_departed_members_replayed_payload_brings_no_ghost_joined() {
    let (mut rooms, bob, now) = setup();
    let join = payload(0, Body::Join);
    let hello = chat(1, "hello");
    rooms.on_payload(bob, "j".into(), join.clone(), now);
    rooms.on_payload(bob, "h".into(), hello.clone(), now);
    let ev = rooms.on_payload(bob, "l".into(), payload(2, Body::Leave), now);
    assert_eq!(texts(&ev), ["-Left"]);
    // Minutes later, past gossipsub's duplicate cache, within the clock skew.
    let later = now + Duration::from_secs(200);
    for (id, replayed) in [("j", join), ("h", hello), ("p", payload(2, Body::Presence))] {
        let ev = rooms.on_payload(bob, id.into(), replayed, later);
        assert!(ev.is_empty(), "{ev:?}");
    }
    assert!(!rooms.is_member(&room(), &bob));
    // What it sends after it left is a return.
    let ev = rooms.on_payload(bob, "b".into(), payload(3, Body::Presence), later);
    assert_eq!(texts(&ev), ["+joined"]);
}

#[test]
fn a_timed_out_members_replayed_payload_brings_no_ghost_joined_but_a_restart_does() {
    let (mut rooms, bob, now) = setup();
    rooms.on_payload(bob, "j".into(), payload(0, Body::Join), now);
    rooms.on_payload(bob, "p".into(), payload(1, Body::Presence), now);
    let (ev, _) = rooms.tick(now + MEMBER_TIMEOUT);
    assert_eq!(texts(&ev), ["-Timeout"]);
    let later = now + MEMBER_TIMEOUT + Duration::from_secs(1);
    assert!(
        rooms
            .on_payload(bob, "p".into(), payload(1, Body::Presence), later)
            .is_empty()
    );
    let mut restarted = payload(0, Body::Join);
    restarted.session = 10;
    let ev = rooms.on_payload(bob, "r".into(), restarted, later);
    assert_eq!(texts(&ev), ["+joined"]);
}

#[test]
fn departures_are_remembered_for_longer_than_any_replay_stays_fresh_then_forgotten() {
    let (mut rooms, bob, now) = setup();
    rooms.on_payload(bob, "j".into(), payload(0, Body::Join), now);
    rooms.on_payload(bob, "l".into(), payload(1, Body::Leave), now);
    let skew = Duration::from_millis(2 * palaver_proto::contract::MAX_CLOCK_SKEW_MS);
    // Longer than a payload stays fresh (its author's clock ahead, ours
    // behind), and than the skew window and gossipsub's duplicate cache.
    assert!(DEPARTED_MEMORY > skew);
    assert!(DEPARTED_MEMORY > skew / 2 + Duration::from_secs(120));
    let almost = now + DEPARTED_MEMORY - Duration::from_secs(1);
    assert!(
        rooms
            .on_payload(bob, "j".into(), payload(0, Body::Join), almost)
            .is_empty()
    );
    rooms.tick(now + DEPARTED_MEMORY);
    assert_eq!(rooms.rooms[&room()].departed.len(), 0);
}

#[test]
fn a_replayed_payload_does_not_keep_a_silent_member_alive() {
    let (mut rooms, bob, now) = setup();
    let old = chat(0, "old");
    rooms.on_payload(bob, "a".into(), old.clone(), now);
    rooms.on_payload(bob, "b".into(), chat(1, "newer"), now);
    // Someone replays what bob said, again and again.
    let mut t = now;
    while t < now + MEMBER_TIMEOUT {
        t += Duration::from_secs(3);
        assert!(rooms.on_payload(bob, "a".into(), old.clone(), t).is_empty());
    }
    let (ev, _) = rooms.tick(now + MEMBER_TIMEOUT);
    assert_eq!(texts(&ev), ["-Timeout"]);
}

#[test]
fn a_room_left_and_joined_again_still_knows_what_it_saw() {
    let (mut rooms, bob, now) = setup();
    let (carol, join) = (PeerId::random(), payload(0, Body::Join));
    rooms.on_payload(bob, "j".into(), join.clone(), now);
    rooms.on_payload(carol, "c".into(), join.clone(), now);
    rooms.on_payload(bob, "l".into(), payload(1, Body::Leave), now);
    assert!(rooms.leave(&room(), now));
    rooms.join(room(), now).unwrap();
    // Neither the departed one nor one present when this node left comes
    // back by a replay; carol's next payload does bring her back.
    assert!(
        rooms
            .on_payload(bob, "j".into(), join.clone(), now)
            .is_empty()
    );
    assert!(rooms.on_payload(carol, "c".into(), join, now).is_empty());
    let ev = rooms.on_payload(carol, "p".into(), payload(1, Body::Presence), now);
    assert_eq!(texts(&ev), ["+joined"]);
}

#[test]
fn sessions_wait_for_the_store_only_when_the_reserved_ones_run_out() {
    let now = Instant::now();
    let mut rooms =
        Rooms::new(PeerId::random(), "me".parse().unwrap(), 1_000).with_sessions_saved(1_003);
    // Fewer than half a block left: more are asked for at once.
    let until = rooms.sessions_to_save().unwrap();
    assert_eq!(until, 1_000 + SESSION_BLOCK);
    assert_eq!(rooms.sessions_to_save(), None, "one save at a time");
    for r in ["a", "b", "c"] {
        rooms.join(r.parse().unwrap(), now).unwrap();
    }
    assert_eq!(
        rooms.join("d".parse().unwrap(), now),
        Err(JoinError::SessionsUnsaved)
    );
    // A failed save is asked for again.
    rooms.sessions_saved(until, false);
    let again = rooms.sessions_to_save().unwrap();
    rooms.sessions_saved(again, true);
    rooms.join("d".parse().unwrap(), now).unwrap();
    assert_eq!(rooms.next_session(), 1_005);
    assert_eq!(rooms.sessions_to_save(), None, "plenty reserved");
}

#[test]
fn a_failed_join_leaves_the_current_room_alone() {
    let (mut rooms, _, now) = setup();
    for i in 1..MAX_ROOMS {
        rooms.join(format!("r{i}").parse().unwrap(), now).unwrap();
    }
    let current = rooms.current().cloned();
    assert_eq!(
        rooms.join("onemore".parse().unwrap(), now),
        Err(JoinError::TooManyRooms)
    );
    assert_eq!(rooms.current().cloned(), current);
}

#[test]
fn a_silent_member_times_out() {
    let (mut rooms, bob, now) = setup();
    rooms.on_payload(bob, "j".into(), payload(0, Body::Join), now);
    let (ev, _) = rooms.tick(now + MEMBER_TIMEOUT - Duration::from_millis(1));
    assert!(ev.is_empty());
    let (ev, _) = rooms.tick(now + MEMBER_TIMEOUT);
    assert_eq!(texts(&ev), ["-Timeout"]);
}

#[test]
fn beacons_are_due_periodically_and_sooner_for_newcomers() {
    let (mut rooms, bob, now) = setup();
    assert!(rooms.tick(now).1.is_empty());
    assert_eq!(rooms.tick(now + BEACON_INTERVAL).1, vec![room()]);
    let later = now + BEACON_INTERVAL + Duration::from_secs(2);
    rooms.on_payload(bob, "j".into(), payload(0, Body::Join), later);
    assert_eq!(
        rooms.tick(later + Duration::from_millis(200)).1,
        vec![room()]
    );
}

#[test]
fn payloads_for_rooms_not_joined_or_from_ourselves_are_dropped() {
    let (mut rooms, _, now) = setup();
    let me = rooms.local;
    assert!(
        rooms
            .on_payload(me, "x".into(), chat(0, "echo"), now)
            .is_empty()
    );
    let mut other = chat(0, "elsewhere");
    other.room = "other".parse().unwrap();
    assert!(
        rooms
            .on_payload(PeerId::random(), "y".into(), other, now)
            .is_empty()
    );
}

#[test]
fn payloads_held_in_one_room_are_bounded_across_authors() {
    let (mut rooms, _, now) = setup();
    let authors: Vec<PeerId> = (0..40).map(|_| PeerId::random()).collect();
    for a in &authors {
        rooms.on_payload(*a, "j".into(), payload(0, Body::Join), now);
    }
    // Every author skips seq 1, so everything after it waits.
    for seq in 2..60 {
        for a in &authors {
            rooms.on_payload(*a, format!("{a}{seq}"), chat(seq, "x"), now);
        }
    }
    let held: usize = rooms.rooms[&room()]
        .members
        .values()
        .map(|m| m.order.held())
        .sum();
    assert!(held <= MAX_HELD_PER_ROOM, "{held} held");
}

#[test]
fn a_reply_is_stamped_after_what_it_answers_even_when_clocks_disagree() {
    let (mut rooms, bob, now) = setup();
    let mut ahead = chat(0, "from the future");
    ahead.ts = 5_000;
    rooms.on_payload(bob, "x".into(), ahead, now);
    let next = rooms.outgoing(&room(), Body::Presence, 1_000).unwrap();
    assert_eq!(next.ts, 5_001);
    rooms.observe(&room(), 9_000);
    let next = rooms.outgoing(&room(), Body::Presence, 1_000).unwrap();
    assert_eq!(next.ts, 9_001);
    let later = rooms.outgoing(&room(), Body::Presence, 20_000).unwrap();
    assert_eq!(later.ts, 20_000, "a clock ahead of the room is kept");
}

#[test]
fn no_timestamp_seen_pushes_this_nodes_stamps_beyond_a_small_lead() {
    let (mut rooms, bob, now) = setup();
    let clock = 1_700_000_000_000;
    let mut poisoned = chat(0, "a day ahead");
    poisoned.ts = clock + 86_400_000;
    rooms.on_payload(bob, "x".into(), poisoned, now);
    rooms.observe(&room(), u64::MAX);
    let next = rooms.outgoing(&room(), Body::Presence, clock).unwrap();
    assert_eq!(next.ts, clock + MAX_CLOCK_LEAD_MS);
    // A clock that ran ahead and was set back: stamps follow the clock again.
    let own = rooms
        .outgoing(&room(), Body::Presence, clock + 3_600_000)
        .unwrap();
    rooms.observe(&room(), own.ts);
    let after_reset = rooms.outgoing(&room(), Body::Presence, clock).unwrap();
    assert_eq!(after_reset.ts, clock + MAX_CLOCK_LEAD_MS);
}

#[test]
fn members_are_listed_by_the_rooms_they_are_in() {
    let (mut rooms, bob, now) = setup();
    assert!(rooms.rooms_of_member(&bob).is_empty());
    rooms.on_payload(bob, "j".into(), payload(0, Body::Join), now);
    assert_eq!(rooms.rooms_of_member(&bob), vec![room()]);
}

#[test]
fn leaving_the_current_room_falls_back_to_another() {
    let (mut rooms, _, now) = setup();
    rooms.join("b".parse().unwrap(), now).unwrap();
    assert_eq!(rooms.current().map(|r| r.as_str()), Some("b"));
    assert!(rooms.leave(&"b".parse().unwrap(), now));
    assert_eq!(rooms.current().map(|r| r.as_str()), Some("lobby"));
    assert!(!rooms.leave(&"b".parse().unwrap(), now));
}

#[test]
fn the_next_deadline_is_never_later_than_a_beacon_a_gap_or_a_timeout() {
    let (mut rooms, bob, now) = setup();
    assert!(rooms.poll_at().is_some_and(|t| t <= now + BEACON_INTERVAL));
    // A newcomer hurries the beacon.
    rooms.on_payload(bob, "a".into(), chat(0, "hi"), now);
    assert!(
        rooms
            .poll_at()
            .is_some_and(|t| t <= now + Duration::from_millis(1000))
    );
    // A payload held for a gap wakes the rooms when the gap expires.
    let later = now + Duration::from_secs(1);
    let (events, _) = rooms.tick(later);
    assert!(events.is_empty());
    rooms.on_payload(bob, "c".into(), chat(2, "early"), later);
    assert!(rooms.poll_at().is_some_and(|t| t <= later + GAP_WAIT));
    let (events, _) = rooms.tick(later + GAP_WAIT);
    assert_eq!(texts(&events), ["early"]);
    // Then the member's timeout, however long beacons are put off.
    let quiet = later + GAP_WAIT;
    assert!(rooms.poll_at().is_some_and(|t| t <= quiet + MEMBER_TIMEOUT));
    let mut t = quiet;
    let mut left = false;
    while t < quiet + MEMBER_TIMEOUT + BEACON_INTERVAL {
        t = rooms.poll_at().unwrap().max(t + Duration::from_millis(1));
        left |= rooms
            .tick(t)
            .0
            .iter()
            .any(|e| matches!(e, Event::Left { .. }));
    }
    assert!(left, "the silent member timed out by its deadline");
}
