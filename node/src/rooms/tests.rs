//! Unit tests of the rooms core: payloads and the time in, events out.

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
    rooms.leave(&room());
    rooms.join(room(), now).unwrap();
    let second = rooms.outgoing(&room(), Body::Join, 1).unwrap();
    assert!(second.session > first.session);
}

#[test]
fn a_full_room_makes_room_by_dropping_the_longest_silent() {
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
    let events = rooms.on_payload(PeerId::random(), "n".into(), payload(0, Body::Join), later);
    assert_eq!(texts(&events), ["-Timeout", "+joined"]);
    assert!(matches!(&events[0], Event::Left { peer, .. } if *peer == first));
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
    assert!(rooms.leave(&"b".parse().unwrap()));
    assert_eq!(rooms.current().map(|r| r.as_str()), Some("lobby"));
    assert!(!rooms.leave(&"b".parse().unwrap()));
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
