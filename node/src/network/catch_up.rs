//! Bookkeeping for catch-up, free of I/O: which pulls from which peer are
//! under way, where each stands, and which may start. The event loop sends
//! the requests this asks for and feeds back what comes.
//!
//! One pull walks the other side's inventory of a room newest first, a page
//! at a time, and fetches the messages this node lacks, oldest first within
//! a page. It stops at the first page with nothing missing, at the end of the
//! other side's history, after [`MAX_PAGES`] pages, or at the first fault.
//!
//! A node under more load than it can verify sheds live messages (see the
//! event loop). Whoever sent one has it, so the node remembers that peer and
//! room, and once the load has eased pulls from it, walking back past pages
//! with nothing missing to a little before the first message it shed.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use libp2p::PeerId;
use libp2p::request_response::OutboundRequestId;
use palaver_proto::RoomName;
use palaver_proto::history::{MAX_FETCH, MAX_INVENTORY, MessageRef, Request};

/// Most inventory pages one pull walks (256 references each).
pub const MAX_PAGES: usize = 40;
/// Most pulls under way at once, all rooms together.
pub const MAX_PULLS: usize = 16;
/// Most pulls under way in one room (the rest of the room has the same messages).
pub const MAX_PULLS_PER_ROOM: usize = 3;
/// The soonest the same peer is asked about the same room again.
pub const REPEAT_AFTER: Duration = Duration::from_secs(10);
/// Most (peer, room) start times remembered.
const MAX_REMEMBERED: usize = 4096;
/// How long after a "busy" refusal a pull is tried again (plus up to as much again).
pub const BUSY_RETRY: Duration = Duration::from_secs(2);
/// Most pulls waiting to be retried.
const MAX_RETRIES: usize = 256;
/// Most (peer, room) pairs remembered as owing shed messages.
const MAX_SHED: usize = 256;
/// How often pulls owed for shed messages are looked at while any are owed.
pub const SHED_CHECK: Duration = Duration::from_millis(250);

/// One pull from one peer about one room.
#[derive(Debug)]
struct Pull {
    /// The oldest reference of the last inventory page.
    cursor: Option<MessageRef>,
    pages: usize,
    more: bool,
    /// Missing references still to fetch, in chunks, oldest first.
    to_fetch: VecDeque<Vec<MessageRef>>,
    /// Walk back at least to this timestamp (ms), even past pages with
    /// nothing missing: messages were shed from then on.
    back_to: Option<u64>,
    /// What the request under way asked for.
    asked: Asked,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Asked {
    Inventory,
    Fetch(Vec<MessageRef>),
    /// Waiting for the store (which refs are missing, or storing a page).
    Store,
}

type Key = (PeerId, RoomName);

/// Every pull under way.
#[derive(Debug, Default)]
pub struct CatchUps {
    pulls: HashMap<Key, Pull>,
    requests: HashMap<OutboundRequestId, Key>,
    started: HashMap<Key, Instant>,
    /// Pulls refused as busy, and when to try them again.
    retries: HashMap<Key, Instant>,
    /// Peers whose live messages about a room were shed, and the timestamp
    /// (ms) to walk back to when pulling them.
    shed: HashMap<Key, u64>,
    /// While shed messages are owed: when to look again whether their pulls may start.
    shed_check_at: Option<Instant>,
}

impl CatchUps {
    /// Whether a pull from `peer` about `room` may start now; if so it is
    /// recorded, and the first request to send is returned.
    pub fn start(&mut self, peer: PeerId, room: &RoomName, now: Instant) -> Option<Request> {
        self.start_back_to(peer, room, now, None)
    }

    fn start_back_to(
        &mut self,
        peer: PeerId,
        room: &RoomName,
        now: Instant,
        back_to: Option<u64>,
    ) -> Option<Request> {
        let key = (peer, room.clone());
        if self.pulls.contains_key(&key)
            || self.pulls.len() >= MAX_PULLS
            || self.pulls.keys().filter(|(_, r)| r == room).count() >= MAX_PULLS_PER_ROOM
            || self
                .started
                .get(&key)
                .is_some_and(|t| now.saturating_duration_since(*t) < REPEAT_AFTER)
        {
            return None;
        }
        if self.started.len() >= MAX_REMEMBERED {
            self.started
                .retain(|_, t| now.saturating_duration_since(*t) < REPEAT_AFTER);
        }
        self.started.insert(key.clone(), now);
        self.pulls.insert(
            key,
            Pull {
                cursor: None,
                pages: 0,
                more: false,
                to_fetch: VecDeque::new(),
                back_to,
                asked: Asked::Inventory,
            },
        );
        Some(inventory(room, None))
    }

    /// A live message about `room` from `peer` was shed; messages from
    /// `since` (ms) on are to be pulled from it once [`Self::start_shed`] is
    /// called. At most [`MAX_SHED`] pairs are remembered.
    pub fn shed(&mut self, peer: PeerId, room: &RoomName, since: u64, now: Instant) {
        self.shed_check_at.get_or_insert(now + SHED_CHECK);
        let key = (peer, room.clone());
        if let Some(earliest) = self.shed.get_mut(&key) {
            *earliest = (*earliest).min(since);
        } else if self.shed.len() < MAX_SHED {
            self.shed.insert(key, since);
        }
    }

    /// Starts the pulls owed for shed messages that may start now, from
    /// peers `reachable` says are still there (the others are forgotten);
    /// the rest wait for a later call. Nothing starts while the node is
    /// still under load (not `eased`).
    pub fn start_shed(
        &mut self,
        now: Instant,
        eased: bool,
        reachable: impl Fn(&Key) -> bool,
    ) -> Vec<(PeerId, Request)> {
        self.shed.retain(|key, _| reachable(key));
        self.shed_check_at = (!self.shed.is_empty()).then(|| now + SHED_CHECK);
        if !eased {
            return Vec::new();
        }
        let owed: Vec<(Key, u64)> = self.shed.iter().map(|(k, t)| (k.clone(), *t)).collect();
        let mut started = Vec::new();
        for ((peer, room), since) in owed {
            if let Some(request) = self.start_back_to(peer, &room, now, Some(since)) {
                self.shed.remove(&(peer, room));
                started.push((peer, request));
            }
        }
        if self.shed.is_empty() {
            self.shed_check_at = None;
        }
        started
    }

    /// Records the id of the request just sent for `peer` and `room`.
    pub fn sent(&mut self, id: OutboundRequestId, peer: PeerId, room: RoomName) {
        self.requests.insert(id, (peer, room));
    }

    /// Which pull a response belongs to (forgetting the request).
    pub fn answered(&mut self, id: &OutboundRequestId) -> Option<Key> {
        self.requests.remove(id)
    }

    /// An inventory page came: the store is to say which of `refs` are
    /// missing. Returns false (and ends the pull) if none was asked for or
    /// the page is not newest-first below the cursor.
    pub fn on_inventory(&mut self, key: &Key, refs: &[MessageRef], more: bool) -> bool {
        let Some(pull) = self.pulls.get_mut(key) else {
            return false;
        };
        // Newest first by timestamp (ties come in the other side's key order).
        let ordered = refs.windows(2).all(|w| w[0].ts >= w[1].ts)
            && pull
                .cursor
                .is_none_or(|c| refs.first().is_none_or(|f| f.ts <= c.ts && *f != c));
        if pull.asked != Asked::Inventory || !ordered || refs.len() > MAX_INVENTORY {
            self.pulls.remove(key);
            return false;
        }
        pull.pages += 1;
        pull.more = more && !refs.is_empty();
        pull.cursor = refs.last().copied().or(pull.cursor);
        pull.asked = Asked::Store;
        true
    }

    /// The store said which references of the last page are missing.
    /// Returns the next request, or `None` when the pull is over.
    pub fn on_missing(&mut self, key: &Key, mut missing: Vec<MessageRef>) -> Option<Request> {
        let pull = self.pulls.get_mut(key)?;
        let reaching_back = pull
            .back_to
            .is_some_and(|t| pull.cursor.is_some_and(|c| c.ts > t));
        if missing.is_empty() && !reaching_back {
            // Everything on this page is here already: older pages are too.
            self.pulls.remove(key);
            return None;
        }
        missing.sort();
        pull.to_fetch = missing.chunks(MAX_FETCH).map(<[_]>::to_vec).collect();
        self.next(key)
    }

    /// What a fetch asked for, to check the envelopes that answer it.
    pub fn on_envelopes(&mut self, key: &Key) -> Option<Vec<MessageRef>> {
        let pull = self.pulls.get_mut(key)?;
        match std::mem::replace(&mut pull.asked, Asked::Store) {
            Asked::Fetch(refs) => Some(refs),
            _ => {
                self.pulls.remove(key);
                None
            }
        }
    }

    /// A fetched page was stored. Returns the next request, or `None` when
    /// the pull is over.
    pub fn on_stored(&mut self, key: &Key) -> Option<Request> {
        self.next(key)
    }

    /// Ends a pull (a fault, a refusal, a failed request, a lost peer).
    pub fn end(&mut self, key: &Key) {
        self.pulls.remove(key);
    }

    /// Ends a pull the other side was too busy for; it is tried again after
    /// [`BUSY_RETRY`] and a jitter derived from `jitter` (so that a crowd
    /// refused at once does not come back at once).
    pub fn busy(&mut self, key: &Key, now: Instant, jitter: u64) {
        self.pulls.remove(key);
        if self.retries.len() < MAX_RETRIES {
            let extra = Duration::from_millis(jitter % BUSY_RETRY.as_millis() as u64);
            self.retries.insert(key.clone(), now + BUSY_RETRY + extra);
        }
    }

    /// Pulls due to be tried again; each may start at once.
    pub fn due_retries(&mut self, now: Instant) -> Vec<Key> {
        let due: Vec<Key> = self
            .retries
            .iter()
            .filter(|(_, at)| **at <= now)
            .map(|(k, _)| k.clone())
            .collect();
        for key in &due {
            self.retries.remove(key);
            self.started.remove(key);
        }
        due
    }

    /// When a retry is due, or (while shed messages are owed) when to look
    /// again whether their pulls may start.
    pub fn poll_at(&self) -> Option<Instant> {
        self.retries
            .values()
            .copied()
            .chain(self.shed_check_at)
            .min()
    }

    /// Ends every pull from `peer`.
    pub fn peer_gone(&mut self, peer: &PeerId) {
        self.pulls.retain(|(p, _), _| p != peer);
        self.requests.retain(|_, (p, _)| p != peer);
        self.retries.retain(|(p, _), _| p != peer);
        self.shed.retain(|(p, _), _| p != peer);
        if self.shed.is_empty() {
            self.shed_check_at = None;
        }
    }

    fn next(&mut self, key: &Key) -> Option<Request> {
        let pull = self.pulls.get_mut(key)?;
        if let Some(refs) = pull.to_fetch.pop_front() {
            pull.asked = Asked::Fetch(refs.clone());
            return Some(Request::Fetch {
                room: key.1.clone(),
                refs,
            });
        }
        if pull.more && pull.pages < MAX_PAGES {
            pull.asked = Asked::Inventory;
            return Some(inventory(&key.1, pull.cursor));
        }
        self.pulls.remove(key);
        None
    }
}

fn inventory(room: &RoomName, before: Option<MessageRef>) -> Request {
    Request::Inventory {
        room: room.clone(),
        before,
        limit: MAX_INVENTORY as u16,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(ts: u64) -> MessageRef {
        MessageRef {
            ts,
            id: [ts as u8; 16],
        }
    }

    fn room() -> RoomName {
        "lobby".parse().unwrap()
    }

    #[test]
    fn a_pull_walks_pages_fetching_what_is_missing_oldest_first() {
        let mut c = CatchUps::default();
        let peer = PeerId::random();
        let key = (peer, room());
        let now = Instant::now();
        assert!(matches!(
            c.start(peer, &room(), now),
            Some(Request::Inventory { before: None, .. })
        ));
        assert!(c.on_inventory(&key, &[r(9), r(8), r(7)], true));
        let Some(Request::Fetch { refs, .. }) = c.on_missing(&key, vec![r(9), r(7)]) else {
            panic!("expected a fetch");
        };
        assert_eq!(refs, vec![r(7), r(9)]);
        assert_eq!(c.on_envelopes(&key), Some(vec![r(7), r(9)]));
        assert!(matches!(
            c.on_stored(&key),
            Some(Request::Inventory { before: Some(b), .. }) if b == r(7)
        ));
        assert!(c.on_inventory(&key, &[r(6)], false));
        assert!(c.on_missing(&key, vec![]).is_none());
        assert!(c.start(peer, &room(), now).is_none(), "too soon to repeat");
        assert!(c.start(peer, &room(), now + REPEAT_AFTER).is_some());
    }

    #[test]
    fn a_page_out_of_order_or_unasked_ends_the_pull() {
        let mut c = CatchUps::default();
        let peer = PeerId::random();
        let key = (peer, room());
        c.start(peer, &room(), Instant::now());
        assert!(!c.on_inventory(&key, &[r(1), r(2)], false));
        assert!(c.on_envelopes(&key).is_none());
        c.start(peer, &room(), Instant::now() + REPEAT_AFTER);
        assert!(c.on_envelopes(&key).is_none(), "envelopes nobody asked for");
    }

    #[test]
    fn a_pull_refused_as_busy_is_tried_again_later() {
        let mut c = CatchUps::default();
        let peer = PeerId::random();
        let key = (peer, room());
        let now = Instant::now();
        c.start(peer, &room(), now).unwrap();
        c.busy(&key, now, 7);
        assert!(c.due_retries(now).is_empty());
        let later = now + 2 * BUSY_RETRY;
        assert_eq!(c.due_retries(later), vec![key.clone()]);
        assert!(
            c.start(peer, &room(), later).is_some(),
            "not held back as too soon"
        );
        assert!(
            c.due_retries(later + BUSY_RETRY * 4).is_empty(),
            "retried once"
        );
    }

    #[test]
    fn a_pull_for_shed_messages_walks_back_past_complete_pages_to_when_they_were_shed() {
        let mut c = CatchUps::default();
        let peer = PeerId::random();
        let key = (peer, room());
        let now = Instant::now();
        c.shed(peer, &room(), 50, now);
        c.shed(peer, &room(), 40, now);
        assert_eq!(c.start_shed(now, true, |_| true).len(), 1);
        assert!(c.start_shed(now, true, |_| true).is_empty(), "started once");
        assert!(c.on_inventory(&key, &[r(90), r(80), r(70)], true));
        let next = c.on_missing(&key, vec![]);
        assert!(
            matches!(next, Some(Request::Inventory { before: Some(b), .. }) if b == r(70)),
            "a complete page newer than the first shed message does not end the pull"
        );
        assert!(c.on_inventory(&key, &[r(60), r(45)], true));
        let Some(Request::Fetch { refs, .. }) = c.on_missing(&key, vec![r(45)]) else {
            panic!("expected a fetch");
        };
        assert_eq!(refs, vec![r(45)]);
        assert_eq!(c.on_envelopes(&key), Some(vec![r(45)]));
        assert!(matches!(c.on_stored(&key), Some(Request::Inventory { .. })));
        assert!(c.on_inventory(&key, &[r(39), r(38)], true));
        assert!(
            c.on_missing(&key, vec![]).is_none(),
            "a complete page older than the first shed message ends it"
        );
    }

    #[test]
    fn shed_messages_wait_for_a_pull_to_be_allowed_and_are_forgotten_with_their_peer() {
        let mut c = CatchUps::default();
        let now = Instant::now();
        let (a, b) = (PeerId::random(), PeerId::random());
        c.start(a, &room(), now).unwrap();
        c.shed(a, &room(), 10, now);
        c.shed(b, &room(), 10, now);
        let started = c.start_shed(now, true, |_| true);
        assert_eq!(started.len(), 1, "a is being pulled already");
        assert_eq!(started[0].0, b);
        c.end(&(a, room()));
        assert!(
            c.start_shed(now, true, |_| true).is_empty(),
            "too soon to ask a again"
        );
        assert_eq!(c.start_shed(now + REPEAT_AFTER, true, |_| true).len(), 1);
        c.shed(a, &room(), 10, now);
        c.peer_gone(&a);
        assert!(
            c.start_shed(now + REPEAT_AFTER * 3, true, |_| true)
                .is_empty()
        );
        c.shed(b, &room(), 10, now);
        assert!(
            c.start_shed(now + REPEAT_AFTER * 3, true, |_| false)
                .is_empty()
        );
        assert!(c.shed.is_empty(), "unreachable peers are forgotten");
        for _ in 0..2 * MAX_SHED {
            c.shed(PeerId::random(), &room(), 10, now);
        }
        assert_eq!(c.shed.len(), MAX_SHED);
    }

    #[test]
    fn owed_shed_messages_are_looked_at_on_a_schedule_not_on_every_event() {
        let mut c = CatchUps::default();
        let now = Instant::now();
        assert_eq!(c.poll_at(), None, "nothing owed, nothing to wake for");
        c.shed(PeerId::random(), &room(), 10, now);
        assert_eq!(c.poll_at(), Some(now + SHED_CHECK));
        // Still under load: nothing starts, and the next look is one period on.
        let later = now + SHED_CHECK;
        assert!(c.start_shed(later, false, |_| true).is_empty());
        assert_eq!(c.poll_at(), Some(later + SHED_CHECK));
        // Eased: the pull starts, and nothing is owed any more.
        assert_eq!(c.start_shed(later + SHED_CHECK, true, |_| true).len(), 1);
        assert_eq!(c.poll_at(), None);
    }

    #[test]
    fn pulls_are_bounded_per_room_and_in_all() {
        let mut c = CatchUps::default();
        let now = Instant::now();
        let started = (0..10)
            .filter(|_| c.start(PeerId::random(), &room(), now).is_some())
            .count();
        assert_eq!(started, MAX_PULLS_PER_ROOM);
        for i in 0..100 {
            let other: RoomName = format!("r{i}").parse().unwrap();
            c.start(PeerId::random(), &other, now);
        }
        assert_eq!(c.pulls.len(), MAX_PULLS);
    }
}
