//! Bookkeeping for catch-up, free of I/O: which pulls from which peer are
//! under way, where each stands, which wait for a slot, and when each room
//! is due for anti-entropy. The event loop feeds it what comes (answers,
//! store results, time) and applies the [`Action`]s it asks for.
//!
//! A pull reconciles one room with one peer (`/palaver/history/2`): rounds
//! of negentropy, each computed by the store thread over the room's set,
//! and fetches of what a round said is missing, [`MAX_FETCH`] at a time,
//! before the next round. It ends when reconciliation is over and
//! everything learnt is fetched, at the first fault, or when it stalls.
//!
//! Pulls are asked for when a member appears or reconnects, for messages
//! shed under load (from the peer that forwarded them and from another
//! member), and every anti-entropy period with a random present member of
//! each room, so that nothing stays missing for longer than that. A pull
//! asked for while the slots are full waits in a queue and starts when one
//! frees. A peer that stalls or serves junk gets a strike; random picks
//! avoid peers with strikes while others are there.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use libp2p::PeerId;
use libp2p::request_response::OutboundRequestId;
use palaver_proto::RoomName;
use palaver_proto::contract::MAX_CLOCK_SKEW_MS;
use palaver_proto::history::reconcile::Step;
use palaver_proto::history::{MAX_FETCH, MessageRef, Request};

/// Most pulls under way at once, all rooms together.
pub const MAX_PULLS: usize = 16;
/// Most pulls under way in one room (the rest of the room has the same messages).
pub const MAX_PULLS_PER_ROOM: usize = 3;
/// The soonest the same peer is asked about the same room again because it
/// appeared or reconnected (shed messages and anti-entropy do not wait).
pub const REPEAT_AFTER: Duration = Duration::from_secs(10);
/// Most reconciliation rounds in one pull (a store of 100,000 messages
/// reaches an empty one in about 60).
pub const MAX_ROUNDS: usize = 512;
/// Most requests in one pull, rounds and fetches together.
pub const MAX_REQUESTS: usize = 8192;
/// A pull whose peer has not answered for this long ends, and the peer gets a strike.
pub const STALL_AFTER: Duration = Duration::from_secs(30);
/// How long after a "busy" or "not a member" refusal the request is sent
/// again (plus up to as much again, at random).
pub const BUSY_RETRY: Duration = Duration::from_secs(1);
/// Most refusals one pull takes before it gives up.
pub const MAX_REFUSALS: u32 = 30;
/// Most pulls waiting for a slot.
const MAX_QUEUED: usize = 1024;
/// Most (peer, room) start times remembered.
const MAX_REMEMBERED: usize = 4096;
/// Most rooms remembered as owing shed messages, and forwarders per room.
const MAX_SHED: usize = 256;
const MAX_SHED_FORWARDERS: usize = 8;
/// How often shed messages owed are looked at while any are.
pub const SHED_CHECK: Duration = Duration::from_millis(250);
/// Strikes after which a peer is picked only when nobody else is there.
const STRIKES_TO_AVOID: u32 = 2;
/// Most peers whose strikes are remembered.
const MAX_STRUCK: usize = 4096;

/// Which pull.
pub type Key = (PeerId, RoomName);

/// Why a pull is asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// The peer became a member of the room, or connected again.
    Met,
    /// Live messages were shed under load.
    Shed,
    /// The room's anti-entropy period came round.
    AntiEntropy,
}

/// What the event loop is to do for catch-up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Compute a round of a pull's reconciliation on the store thread: the
    /// first message (`answer` is `None`) or the reading of the peer's answer.
    Reconcile { key: Key, answer: Option<Vec<u8>> },
    /// Send this request to the pull's peer, and record its id with [`CatchUps::sent`].
    Send { key: Key, request: Request },
}

/// What a pull waits for.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Asked {
    /// The store thread (a round to compute, or a page to store).
    Store,
    /// The peer's answer to this reconciliation message.
    Reconcile(Vec<u8>),
    /// The peer's answer to this fetch.
    Fetch(Vec<MessageRef>),
    /// The time to send this request again (the peer was busy).
    Retry(Request, Instant),
}

/// One pull from one peer about one room.
#[derive(Debug)]
struct Pull {
    asked: Asked,
    /// The next reconciliation message, sent once `to_fetch` is empty.
    next: Option<Vec<u8>>,
    /// Missing messages still to fetch, oldest first.
    to_fetch: VecDeque<MessageRef>,
    rounds: usize,
    requests: usize,
    refusals: u32,
    /// When the peer last answered (or the pull started).
    heard: Instant,
    /// This node's clock (unix ms) when the pull's first round was computed.
    started_ms: Option<u64>,
}

/// Every pull under way, waiting, or due.
#[derive(Debug)]
pub struct CatchUps {
    pulls: HashMap<Key, Pull>,
    requests: HashMap<OutboundRequestId, Key>,
    started: HashMap<Key, Instant>,
    queue: VecDeque<(Key, Reason)>,
    /// Rooms whose live messages were shed, and who forwarded them.
    shed: HashMap<RoomName, HashSet<PeerId>>,
    shed_check_at: Option<Instant>,
    /// When each joined room is next due for anti-entropy.
    anti_entropy: HashMap<RoomName, Instant>,
    period: Duration,
    strikes: HashMap<PeerId, u32>,
    /// Per room: everything dated before this (unix ms) was agreed with a
    /// member by a pull that ended well.
    synced: HashMap<RoomName, u64>,
    actions: Vec<Action>,
    rng: u64,
}

impl CatchUps {
    /// Catch-up with an anti-entropy round every `period` (give or take a
    /// quarter, at random); `seed` seeds the jitter.
    pub fn new(period: Duration, seed: u64) -> Self {
        Self {
            pulls: HashMap::new(),
            requests: HashMap::new(),
            started: HashMap::new(),
            queue: VecDeque::new(),
            shed: HashMap::new(),
            shed_check_at: None,
            anti_entropy: HashMap::new(),
            period,
            strikes: HashMap::new(),
            synced: HashMap::new(),
            actions: Vec::new(),
            rng: seed | 1,
        }
    }

    /// What the event loop is to do now (each call empties the list).
    pub fn take_actions(&mut self) -> Vec<Action> {
        std::mem::take(&mut self.actions)
    }

    /// Asks for a pull from `peer` about `room`. It starts at once if a slot
    /// is free, waits for one otherwise; a pull under way, already waiting,
    /// or (for [`Reason::Met`]) started less than [`REPEAT_AFTER`] ago is
    /// not asked twice.
    pub fn request(&mut self, peer: PeerId, room: &RoomName, reason: Reason, now: Instant) {
        let key = (peer, room.clone());
        if self.pulls.contains_key(&key) || self.queue.iter().any(|(k, _)| *k == key) {
            return;
        }
        if reason == Reason::Met
            && self
                .started
                .get(&key)
                .is_some_and(|t| now.saturating_duration_since(*t) < REPEAT_AFTER)
        {
            return;
        }
        if self.has_slot(room) {
            self.start(key, now);
        } else if self.queue.len() < MAX_QUEUED {
            self.queue.push_back((key, reason));
        }
    }

    fn has_slot(&self, room: &RoomName) -> bool {
        self.pulls.len() < MAX_PULLS
            && self.pulls.keys().filter(|(_, r)| r == room).count() < MAX_PULLS_PER_ROOM
    }

    fn start(&mut self, key: Key, now: Instant) {
        if self.started.len() >= MAX_REMEMBERED {
            self.started
                .retain(|_, t| now.saturating_duration_since(*t) < REPEAT_AFTER);
        }
        self.started.insert(key.clone(), now);
        self.pulls.insert(
            key.clone(),
            Pull {
                asked: Asked::Store,
                next: None,
                to_fetch: VecDeque::new(),
                rounds: 0,
                requests: 0,
                refusals: 0,
                heard: now,
                started_ms: None,
            },
        );
        self.actions.push(Action::Reconcile { key, answer: None });
    }

    /// Starts waiting pulls while slots are free.
    fn fill_slots(&mut self, now: Instant) {
        let mut waiting = VecDeque::with_capacity(self.queue.len());
        while let Some((key, reason)) = self.queue.pop_front() {
            if self.pulls.len() >= MAX_PULLS {
                waiting.push_back((key, reason));
                continue;
            }
            if self.pulls.contains_key(&key) {
                continue;
            }
            if self.has_slot(&key.1) {
                self.start(key, now);
            } else {
                waiting.push_back((key, reason));
            }
        }
        self.queue = waiting;
    }

    /// Records the id of a request just sent for `key`.
    pub fn sent(&mut self, id: OutboundRequestId, key: Key) {
        if let Some(pull) = self.pulls.get_mut(&key) {
            pull.requests += 1;
        }
        self.requests.insert(id, key);
    }

    /// Which pull an answer (or a failure) belongs to, forgetting the request.
    pub fn answered(&mut self, id: &OutboundRequestId) -> Option<Key> {
        self.requests.remove(id)
    }

    /// The store computed a round: fetch what is missing (dated up to
    /// `now_ms` plus the allowed skew; later ones are refused, so that no
    /// one can bury history under the future), then send the next message.
    pub fn on_step(&mut self, key: &Key, step: Step, now_ms: u64, now: Instant) {
        let Some(pull) = self.pulls.get_mut(key) else {
            return;
        };
        if pull.asked != Asked::Store {
            return self.end(key, false, now);
        }
        pull.started_ms.get_or_insert(now_ms);
        let not_after = now_ms.saturating_add(MAX_CLOCK_SKEW_MS);
        pull.to_fetch
            .extend(step.need.into_iter().filter(|r| r.ts <= not_after));
        pull.next = step.next;
        self.advance(key, now);
    }

    /// A reconciliation answer came: true if one was asked for (it goes to
    /// the store next); otherwise the pull ends.
    pub fn on_reconcile_answer(&mut self, key: &Key, now: Instant) -> bool {
        let Some(pull) = self.pulls.get_mut(key) else {
            return false;
        };
        if !matches!(pull.asked, Asked::Reconcile(_)) {
            self.end(key, true, now);
            return false;
        }
        pull.asked = Asked::Store;
        pull.heard = now;
        true
    }

    /// Fetched envelopes came: what the fetch asked for, to check them
    /// against; `None` (and the pull ends) if no fetch was asked for.
    pub fn on_envelopes(&mut self, key: &Key, now: Instant) -> Option<Vec<MessageRef>> {
        let pull = self.pulls.get_mut(key)?;
        match std::mem::replace(&mut pull.asked, Asked::Store) {
            Asked::Fetch(refs) => {
                pull.heard = now;
                Some(refs)
            }
            _ => {
                self.end(key, true, now);
                None
            }
        }
    }

    /// A fetched page was checked and stored; `served` are the genuine
    /// envelopes it held. What was asked for and not served is asked again
    /// if the page made progress (an answer stops at its byte budget).
    pub fn on_fetched(
        &mut self,
        key: &Key,
        asked: &[MessageRef],
        served: &[MessageRef],
        now: Instant,
    ) {
        let Some(pull) = self.pulls.get_mut(key) else {
            return;
        };
        if !served.is_empty() {
            let served: HashSet<&MessageRef> = served.iter().collect();
            for r in asked.iter().rev().filter(|r| !served.contains(r)) {
                pull.to_fetch.push_front(*r);
            }
        }
        self.advance(key, now);
    }

    /// The pull's next request, or its end.
    fn advance(&mut self, key: &Key, now: Instant) {
        let Some(pull) = self.pulls.get_mut(key) else {
            return;
        };
        if pull.requests >= MAX_REQUESTS {
            tracing::debug!(peer = %key.0, room = %key.1, "catch-up took too many requests; ended");
            return self.end(key, false, now);
        }
        let request = if !pull.to_fetch.is_empty() {
            let n = pull.to_fetch.len().min(MAX_FETCH);
            let refs: Vec<MessageRef> = pull.to_fetch.drain(..n).collect();
            pull.asked = Asked::Fetch(refs.clone());
            Request::Fetch {
                room: key.1.clone(),
                refs,
            }
        } else if let Some(message) = pull.next.take() {
            pull.rounds += 1;
            if pull.rounds > MAX_ROUNDS {
                tracing::debug!(peer = %key.0, room = %key.1, "reconciliation does not converge; ended");
                return self.end(key, true, now);
            }
            pull.asked = Asked::Reconcile(message.clone());
            Request::Reconcile {
                room: key.1.clone(),
                message,
            }
        } else {
            tracing::debug!(peer = %key.0, room = %key.1, "caught up");
            self.strikes.remove(&key.0);
            if let Some(started) = pull.started_ms {
                // What the peer held then is here now, up to the allowed skew.
                let agreed = started.saturating_sub(MAX_CLOCK_SKEW_MS);
                let synced = self.synced.entry(key.1.clone()).or_insert(0);
                *synced = (*synced).max(agreed);
            }
            return self.end(key, false, now);
        };
        self.actions.push(Action::Send {
            key: key.clone(),
            request,
        });
    }

    /// The peer refused as busy (or did not count this node as a member
    /// yet): the same request goes again after [`BUSY_RETRY`] and a jitter,
    /// at most [`MAX_REFUSALS`] times in a pull.
    pub fn busy(&mut self, key: &Key, now: Instant) {
        let jitter = self.jitter(BUSY_RETRY);
        let Some(pull) = self.pulls.get_mut(key) else {
            return;
        };
        pull.refusals += 1;
        let request = match std::mem::replace(&mut pull.asked, Asked::Store) {
            Asked::Reconcile(message) => Request::Reconcile {
                room: key.1.clone(),
                message,
            },
            Asked::Fetch(refs) => Request::Fetch {
                room: key.1.clone(),
                refs,
            },
            _ => return self.end(key, true, now),
        };
        if pull.refusals > MAX_REFUSALS {
            return self.end(key, false, now);
        }
        pull.heard = now;
        pull.asked = Asked::Retry(request, now + BUSY_RETRY + jitter);
    }

    /// Ends a pull; a `fault` of the peer's (a stall, junk, a failed
    /// request) gives it a strike. Waiting pulls take the slot.
    pub fn end(&mut self, key: &Key, fault: bool, now: Instant) {
        if self.pulls.remove(key).is_some() {
            self.requests.retain(|_, k| k != key);
        }
        if fault {
            if self.strikes.len() >= MAX_STRUCK && !self.strikes.contains_key(&key.0) {
                self.strikes.clear();
            }
            *self.strikes.entry(key.0).or_insert(0) += 1;
        }
        self.fill_slots(now);
    }

    /// Ends every pull from `peer`, and forgets what waited for it.
    pub fn peer_gone(&mut self, peer: &PeerId, now: Instant) {
        self.pulls.retain(|(p, _), _| p != peer);
        self.requests.retain(|_, (p, _)| p != peer);
        self.queue.retain(|((p, _), _)| p != peer);
        for forwarders in self.shed.values_mut() {
            forwarders.remove(peer);
        }
        self.fill_slots(now);
    }

    // ---- shed messages ----

    /// A live message about `room` forwarded by `peer` was shed: the room
    /// is pulled from `peer` and from another member once the load has eased.
    pub fn shed(&mut self, peer: PeerId, room: &RoomName, now: Instant) {
        self.shed_check_at.get_or_insert(now + SHED_CHECK);
        if let Some(forwarders) = self.shed.get_mut(room) {
            if forwarders.len() < MAX_SHED_FORWARDERS {
                forwarders.insert(peer);
            }
        } else if self.shed.len() < MAX_SHED {
            self.shed.insert(room.clone(), HashSet::from([peer]));
        }
    }

    /// Once the load has `eased`: the rooms owing shed messages and who
    /// forwarded them; the loop asks for pulls from those and from another
    /// present member. Nothing is handed out while under load.
    pub fn take_shed(&mut self, now: Instant, eased: bool) -> Vec<(RoomName, Vec<PeerId>)> {
        if self.shed.is_empty() {
            self.shed_check_at = None;
            return Vec::new();
        }
        if !eased {
            self.shed_check_at = Some(now + SHED_CHECK);
            return Vec::new();
        }
        self.shed_check_at = None;
        self.shed
            .drain()
            .map(|(room, peers)| (room, peers.into_iter().collect()))
            .collect()
    }

    // ---- anti-entropy ----

    /// `room` was joined: its first anti-entropy round is one period away.
    pub fn joined(&mut self, room: &RoomName, now: Instant) {
        let at = now + self.period_with_jitter();
        self.anti_entropy.entry(room.clone()).or_insert(at);
    }

    /// Everything in `room` dated before this (unix ms) was agreed with a
    /// member: a message dated earlier that comes by catch-up later was not
    /// held by that member then, so it is back-dated (or was withheld).
    pub fn synced_until(&self, room: &RoomName) -> Option<u64> {
        self.synced.get(room).copied()
    }

    /// `room` was left: its pulls end and its rounds stop.
    pub fn left(&mut self, room: &RoomName, now: Instant) {
        self.anti_entropy.remove(room);
        self.synced.remove(room);
        self.shed.remove(room);
        self.queue.retain(|((_, r), _)| r != room);
        self.pulls.retain(|(_, r), _| r != room);
        self.requests.retain(|_, (_, r)| r != room);
        self.fill_slots(now);
    }

    /// One of `candidates` (the present members of a room), at random,
    /// avoiding peers with strikes while there are others.
    pub fn pick(&mut self, candidates: &[PeerId]) -> Option<PeerId> {
        let good: Vec<PeerId> = candidates
            .iter()
            .copied()
            .filter(|p| self.strikes.get(p).copied().unwrap_or(0) < STRIKES_TO_AVOID)
            .collect();
        let from = if good.is_empty() { candidates } else { &good };
        if from.is_empty() {
            return None;
        }
        let i = (self.next_random() % from.len() as u64) as usize;
        from.get(i).copied()
    }

    // ---- time ----

    /// What is due at `now`: busy requests sent again, stalled pulls ended
    /// (as actions), and the rooms due for anti-entropy (returned; each is
    /// due again one period on).
    pub fn poll(&mut self, now: Instant) -> Vec<RoomName> {
        let stalled: Vec<Key> = self
            .pulls
            .iter()
            .filter(|(_, p)| {
                matches!(p.asked, Asked::Reconcile(_) | Asked::Fetch(_))
                    && now.saturating_duration_since(p.heard) >= STALL_AFTER
            })
            .map(|(k, _)| k.clone())
            .collect();
        for key in stalled {
            tracing::debug!(peer = %key.0, room = %key.1, "catch-up stalled; ended");
            self.end(&key, true, now);
        }
        let due: Vec<Key> = self
            .pulls
            .iter()
            .filter(|(_, p)| matches!(&p.asked, Asked::Retry(_, at) if *at <= now))
            .map(|(k, _)| k.clone())
            .collect();
        for key in due {
            let Some(pull) = self.pulls.get_mut(&key) else {
                continue;
            };
            let Asked::Retry(request, _) = std::mem::replace(&mut pull.asked, Asked::Store) else {
                continue;
            };
            pull.asked = match &request {
                Request::Reconcile { message, .. } => Asked::Reconcile(message.clone()),
                Request::Fetch { refs, .. } => Asked::Fetch(refs.clone()),
            };
            pull.heard = now;
            self.actions.push(Action::Send { key, request });
        }
        let rooms: Vec<RoomName> = self
            .anti_entropy
            .iter()
            .filter(|(_, at)| **at <= now)
            .map(|(r, _)| r.clone())
            .collect();
        for room in &rooms {
            let at = now + self.period_with_jitter();
            self.anti_entropy.insert(room.clone(), at);
        }
        rooms
    }

    /// The next time [`Self::poll`] or [`Self::take_shed`] has something to do.
    pub fn poll_at(&self) -> Option<Instant> {
        let pulls = self.pulls.values().filter_map(|p| match &p.asked {
            Asked::Retry(_, at) => Some(*at),
            Asked::Reconcile(_) | Asked::Fetch(_) => Some(p.heard + STALL_AFTER),
            Asked::Store => None,
        });
        pulls
            .chain(self.anti_entropy.values().copied())
            .chain(self.shed_check_at)
            .min()
    }

    fn period_with_jitter(&mut self) -> Duration {
        let quarter = self.period / 4;
        self.period - quarter + self.jitter(quarter * 2)
    }

    /// A random duration below `max`.
    fn jitter(&mut self, max: Duration) -> Duration {
        let ms = max.as_millis() as u64;
        if ms == 0 {
            return Duration::ZERO;
        }
        Duration::from_millis(self.next_random() % ms)
    }

    /// xorshift64: jitter and random picks need spread, not secrecy.
    fn next_random(&mut self) -> u64 {
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng = x;
        x
    }
}

#[cfg(test)]
mod tests;
