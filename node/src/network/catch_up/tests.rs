#![allow(
    clippy::unwrap_used,
    clippy::panic,
    reason = "a test fails by panicking"
)]

use palaver_proto::history::reconcile::Items;

use super::*;

const NOW_MS: u64 = 1_700_000_000_000;

fn r(ts: u64) -> MessageRef {
    MessageRef {
        ts,
        id: [ts as u8; 16],
    }
}

fn room() -> RoomName {
    "lobby".parse().unwrap()
}

fn catch_ups() -> CatchUps {
    CatchUps::new(Duration::from_secs(60), 7)
}

/// The only action due, which must be a reconciliation round for the store.
fn store_round(c: &mut CatchUps) -> (Key, Option<Vec<u8>>) {
    match c.take_actions().as_slice() {
        [Action::Reconcile { key, answer }] => (key.clone(), answer.clone()),
        other => panic!("expected one store round, got {other:?}"),
    }
}

/// The only action due, which must be a request to a peer.
fn sent(c: &mut CatchUps) -> Request {
    match c.take_actions().as_slice() {
        [Action::Send { key, request }] => {
            c.sent(OutboundRequestId::default_for_tests(), key.clone());
            request.clone()
        }
        other => panic!("expected one request, got {other:?}"),
    }
}

trait TestId {
    fn default_for_tests() -> Self;
}

thread_local! {
    static IDS: std::cell::RefCell<libp2p::request_response::Behaviour<crate::CatchUpCodec>> =
        std::cell::RefCell::new(libp2p::request_response::Behaviour::new(
            [(
                libp2p::StreamProtocol::new("/t"),
                libp2p::request_response::ProtocolSupport::Full,
            )],
            Default::default(),
        ));
}

impl TestId for OutboundRequestId {
    // Request ids cannot be made outside libp2p: a behaviour that is never
    // polled hands out fresh ones.
    fn default_for_tests() -> Self {
        IDS.with(|b| {
            b.borrow_mut().send_request(
                &PeerId::random(),
                Request::Fetch {
                    room: room(),
                    refs: vec![],
                },
            )
        })
    }
}

fn step(next: Option<Vec<u8>>, need: Vec<MessageRef>) -> Step {
    Step {
        next,
        need,
        have: 0,
    }
}

#[test]
fn a_pull_reconciles_then_fetches_what_is_missing_before_the_next_round() {
    let mut c = catch_ups();
    let peer = PeerId::random();
    let now = Instant::now();
    c.request(peer, &room(), Reason::Met, now);
    let (key, answer) = store_round(&mut c);
    assert_eq!((key.clone(), answer), ((peer, room()), None));
    c.on_step(&key, step(Some(vec![1]), vec![]), NOW_MS, now);
    assert!(matches!(sent(&mut c), Request::Reconcile { message, .. } if message == vec![1]));
    assert!(c.on_reconcile_answer(&key, now));
    assert!(
        c.take_actions().is_empty(),
        "the loop hands the store the peer's answer itself"
    );
    let need: Vec<MessageRef> = (1..=300).map(r).collect();
    c.on_step(&key, step(Some(vec![2]), need.clone()), NOW_MS, now);
    let Request::Fetch { refs, .. } = sent(&mut c) else {
        panic!("expected a fetch");
    };
    assert_eq!(refs, need[..MAX_FETCH]);
    assert_eq!(c.on_envelopes(&key, now), Some(refs.clone()));
    c.on_fetched(&key, &refs, &refs, now);
    let Request::Fetch { refs, .. } = sent(&mut c) else {
        panic!("expected the rest");
    };
    assert_eq!(refs, need[MAX_FETCH..]);
    c.on_envelopes(&key, now);
    c.on_fetched(&key, &refs, &refs, now);
    assert!(matches!(sent(&mut c), Request::Reconcile { message, .. } if message == vec![2]));
    assert!(c.on_reconcile_answer(&key, now));
    c.on_step(&key, step(None, vec![]), NOW_MS, now);
    assert!(c.take_actions().is_empty(), "over");
    assert!(c.pulls.is_empty());
}

#[test]
fn what_an_answer_left_out_for_its_byte_budget_is_asked_again() {
    let mut c = catch_ups();
    let peer = PeerId::random();
    let now = Instant::now();
    c.request(peer, &room(), Reason::Met, now);
    let (key, _) = store_round(&mut c);
    c.on_step(&key, step(None, vec![r(1), r(2), r(3)]), NOW_MS, now);
    let Request::Fetch { refs, .. } = sent(&mut c) else {
        panic!()
    };
    c.on_envelopes(&key, now);
    c.on_fetched(&key, &refs, &[r(1)], now);
    let Request::Fetch { refs: again, .. } = sent(&mut c) else {
        panic!()
    };
    assert_eq!(again, vec![r(2), r(3)]);
    c.on_envelopes(&key, now);
    c.on_fetched(&key, &again, &[], now);
    assert!(
        c.take_actions().is_empty(),
        "a page with nothing in it is not asked again"
    );
}

#[test]
fn messages_dated_beyond_the_allowed_skew_are_never_fetched() {
    let mut c = catch_ups();
    let now = Instant::now();
    c.request(PeerId::random(), &room(), Reason::Met, now);
    let (key, _) = store_round(&mut c);
    let fresh = r(NOW_MS + MAX_CLOCK_SKEW_MS);
    let future = r(NOW_MS + MAX_CLOCK_SKEW_MS + 1);
    let far = r(u64::MAX);
    c.on_step(&key, step(None, vec![fresh, future, far]), NOW_MS, now);
    let Request::Fetch { refs, .. } = sent(&mut c) else {
        panic!()
    };
    assert_eq!(refs, vec![fresh]);
}

#[test]
fn a_pull_asked_for_while_the_slots_are_full_starts_when_one_frees() {
    let mut c = catch_ups();
    let now = Instant::now();
    let peers: Vec<PeerId> = (0..MAX_PULLS_PER_ROOM + 1)
        .map(|_| PeerId::random())
        .collect();
    for p in &peers {
        c.request(*p, &room(), Reason::Met, now);
    }
    assert_eq!(c.take_actions().len(), MAX_PULLS_PER_ROOM);
    assert_eq!(c.queue.len(), 1);
    c.end(&(peers[0], room()), true, now);
    let (key, _) = store_round(&mut c);
    assert_eq!(
        key.0, peers[MAX_PULLS_PER_ROOM],
        "the waiting pull took the slot"
    );
    assert!(c.queue.is_empty());
}

#[test]
fn a_silent_peer_stalls_its_pull_and_gets_a_strike() {
    let mut c = catch_ups();
    let now = Instant::now();
    let silent = PeerId::random();
    c.request(silent, &room(), Reason::Met, now);
    let (key, _) = store_round(&mut c);
    c.on_step(&key, step(Some(vec![1]), vec![]), NOW_MS, now);
    sent(&mut c);
    assert_eq!(c.poll_at(), Some(now + STALL_AFTER));
    c.poll(now + STALL_AFTER);
    assert!(c.pulls.is_empty());
    assert_eq!(c.strikes.get(&silent), Some(&1));
    // Two strikes: a random pick avoids it while anyone else is there.
    c.end(&key, true, now);
    let good = PeerId::random();
    for _ in 0..20 {
        assert_eq!(c.pick(&[silent, good]), Some(good));
    }
    assert_eq!(c.pick(&[silent]), Some(silent), "unless it is the only one");
    assert_eq!(c.pick(&[]), None);
}

#[test]
fn a_busy_refusal_sends_the_same_request_again_later_and_gives_up_eventually() {
    let mut c = catch_ups();
    let now = Instant::now();
    c.request(PeerId::random(), &room(), Reason::Met, now);
    let (key, _) = store_round(&mut c);
    c.on_step(&key, step(None, vec![r(5)]), NOW_MS, now);
    let first = sent(&mut c);
    c.busy(&key, now);
    c.poll(now);
    assert!(c.take_actions().is_empty(), "not yet");
    c.poll(now + 2 * BUSY_RETRY);
    assert_eq!(sent(&mut c), first);
    let mut t = now + 2 * BUSY_RETRY;
    for _ in 0..MAX_REFUSALS {
        c.busy(&key, t);
        t += 2 * BUSY_RETRY;
        c.poll(t);
        c.take_actions();
    }
    assert!(c.pulls.is_empty(), "gave up");
}

#[test]
fn met_peers_are_not_pulled_twice_in_a_row_but_anti_entropy_and_shed_are() {
    let mut c = catch_ups();
    let now = Instant::now();
    let peer = PeerId::random();
    c.request(peer, &room(), Reason::Met, now);
    let (key, _) = store_round(&mut c);
    c.request(peer, &room(), Reason::Met, now);
    assert!(c.take_actions().is_empty(), "under way");
    c.on_step(&key, step(None, vec![]), NOW_MS, now);
    c.request(peer, &room(), Reason::Met, now);
    assert!(c.take_actions().is_empty(), "too soon");
    c.request(peer, &room(), Reason::AntiEntropy, now);
    store_round(&mut c);
}

#[test]
fn every_joined_room_is_due_for_anti_entropy_about_once_a_period() {
    let mut c = catch_ups();
    let now = Instant::now();
    c.joined(&room(), now);
    let due = c.poll_at().unwrap();
    assert!(due >= now + Duration::from_secs(45) && due <= now + Duration::from_secs(75));
    assert!(c.poll(due - Duration::from_millis(1)).is_empty());
    assert_eq!(c.poll(due), vec![room()]);
    let next = c.poll_at().unwrap();
    assert!(next >= due + Duration::from_secs(45), "one period on");
    c.left(&room(), now);
    assert_eq!(c.poll_at(), None);
}

#[test]
fn shed_rooms_are_handed_out_once_the_load_has_eased() {
    let mut c = catch_ups();
    let now = Instant::now();
    let (a, b) = (PeerId::random(), PeerId::random());
    c.shed(a, &room(), now);
    c.shed(b, &room(), now);
    assert_eq!(c.poll_at(), Some(now + SHED_CHECK));
    assert!(c.take_shed(now + SHED_CHECK, false).is_empty());
    assert_eq!(c.poll_at(), Some(now + 2 * SHED_CHECK));
    let shed = c.take_shed(now + 2 * SHED_CHECK, true);
    assert_eq!(shed.len(), 1);
    let mut forwarders = shed[0].1.clone();
    forwarders.sort();
    let mut expected = vec![a, b];
    expected.sort();
    assert_eq!(forwarders, expected);
    assert_eq!(c.poll_at(), None);
}

#[test]
fn pulls_are_bounded_per_room_and_in_all_and_the_queue_too() {
    let mut c = catch_ups();
    let now = Instant::now();
    for i in 0..100 {
        let other: RoomName = format!("r{i}").parse().unwrap();
        for _ in 0..5 {
            c.request(PeerId::random(), &other, Reason::Met, now);
        }
    }
    assert_eq!(c.pulls.len(), MAX_PULLS);
    for _ in 0..2 * MAX_QUEUED {
        c.request(PeerId::random(), &room(), Reason::Met, now);
    }
    assert_eq!(c.queue.len(), MAX_QUEUED);
}

#[test]
fn a_pull_converges_against_a_real_reconciliation() {
    // The core driven by two real sets, as the store thread would.
    let theirs = Items::from_refs((0..5_000).map(|i| r(NOW_MS - 10_000 + i)));
    let mut ours_refs: Vec<MessageRef> = theirs.refs().collect();
    ours_refs.retain(|m| m.ts % 500 != 0);
    let mut ours = Items::from_refs(ours_refs);
    let mut c = catch_ups();
    let now = Instant::now();
    c.request(PeerId::random(), &room(), Reason::Met, now);
    let (key, _) = store_round(&mut c);
    c.on_step(
        &key,
        Step {
            next: Some(ours.initiate().unwrap()),
            ..Step::default()
        },
        NOW_MS,
        now,
    );
    for _ in 0..100 {
        let actions = c.take_actions();
        let Some(Action::Send { key, request }) = actions.first().cloned() else {
            break;
        };
        c.sent(OutboundRequestId::default_for_tests(), key.clone());
        match request {
            Request::Reconcile { message, .. } => {
                let answer = theirs.answer(&message).unwrap();
                assert!(c.on_reconcile_answer(&key, now));
                c.take_actions();
                c.on_step(&key, ours.step(&answer).unwrap(), NOW_MS, now);
            }
            Request::Fetch { refs, .. } => {
                c.on_envelopes(&key, now);
                for m in &refs {
                    ours.insert(*m);
                }
                c.on_fetched(&key, &refs, &refs, now);
            }
        }
    }
    assert!(c.pulls.is_empty());
    assert_eq!(ours, theirs);
}

#[test]
fn a_pull_that_ends_well_marks_the_room_agreed_up_to_its_start_less_the_skew() {
    let mut c = catch_ups();
    let now = Instant::now();
    assert_eq!(c.synced_until(&room()), None);
    c.request(PeerId::random(), &room(), Reason::Met, now);
    let (key, _) = store_round(&mut c);
    c.on_step(&key, step(None, vec![]), NOW_MS, now);
    assert_eq!(c.synced_until(&room()), Some(NOW_MS - MAX_CLOCK_SKEW_MS));
    // A pull that fails says nothing.
    c.request(PeerId::random(), &room(), Reason::Met, now);
    let (key, _) = store_round(&mut c);
    c.on_step(&key, step(Some(vec![1]), vec![]), NOW_MS + 60_000, now);
    c.end(&key, true, now);
    assert_eq!(c.synced_until(&room()), Some(NOW_MS - MAX_CLOCK_SKEW_MS));
    c.left(&room(), now);
    assert_eq!(c.synced_until(&room()), None);
}
