//! Serving catch-up, free of I/O: which peers' requests are answered now,
//! and the application-score penalties of peers whose pages failed
//! verification.
//!
//! A request is answered only about a room this node is in, only to a peer
//! it counts as a present member of that room, a few at once (fewer per
//! peer), and within two token buckets of work, one per peer and one for
//! everyone: the store thread that answers also verifies live gossip, so
//! no asker (nor all of them) may keep it busy. Work is counted in
//! envelopes read (each an age decryption and a signature check); a
//! reconciliation round counts as [`RECONCILE_COST`].

use std::collections::HashMap;
use std::time::{Duration, Instant};

use libp2p::PeerId;
use palaver_proto::history::{Refusal, Request};

/// Most catch-up requests answered at once; more are refused as busy.
pub const MAX_SERVING: usize = 8;
/// Most catch-up requests from one peer answered at once, so one peer cannot
/// take every slot (nor keep the store thread from live messages).
pub const MAX_SERVING_PER_PEER: usize = 2;
/// Application-score cost of one envelope that failed verification in catch-up.
pub const BAD_ENVELOPE_PENALTY: f64 = 1.0;
/// Application-score cost of one chat message over its author's rate.
pub const EXCESS_PENALTY: f64 = 0.01;
/// The most excess messages cost a peer: −5 in gossipsub (weight 10), far
/// above the gossip threshold of −10.
pub const MAX_EXCESS_PENALTY: f64 = 0.5;
/// Most peers whose catch-up penalties are remembered.
const MAX_PENALISED: usize = 4096;
/// The work of one reconciliation round, in envelopes read (a pass over the
/// room's set in memory: about what reading 32 envelopes costs for a
/// 100,000-message room).
pub const RECONCILE_COST: f64 = 32.0;
/// One peer's budget: a burst, and what comes back each second. About 10 %
/// of a core at a sustained rate.
pub const PEER_BURST: f64 = 4096.0;
pub const PEER_RATE: f64 = 2048.0;
/// Everyone's budget together.
pub const TOTAL_BURST: f64 = 8192.0;
pub const TOTAL_RATE: f64 = 4096.0;
/// Most peers whose buckets are remembered.
const MAX_BUCKETS: usize = 4096;

/// A token bucket.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn full(burst: f64, now: Instant) -> Self {
        Self {
            tokens: burst,
            at: now,
        }
    }

    fn refill(&mut self, burst: f64, rate: f64, now: Instant) {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate).min(burst);
        self.at = now;
    }
}

/// What a request costs, in envelopes read.
pub fn cost(request: &Request) -> f64 {
    match request {
        Request::Reconcile { .. } => RECONCILE_COST,
        Request::Fetch { refs, .. } => refs.len().max(1) as f64,
    }
}

/// See the module docs.
#[derive(Debug)]
pub struct Serving {
    total: usize,
    by_peer: HashMap<PeerId, usize>,
    penalties: HashMap<PeerId, f64>,
    budgets: HashMap<PeerId, Bucket>,
    everyone: Bucket,
}

impl Serving {
    pub fn new(now: Instant) -> Self {
        Self {
            total: 0,
            by_peer: HashMap::new(),
            penalties: HashMap::new(),
            budgets: HashMap::new(),
            everyone: Bucket::full(TOTAL_BURST, now),
        }
    }

    /// Whether a request from `peer` about a room (`joined` by this node,
    /// where `peer` is a present `member` or not) costing `cost` is
    /// answered; if so it holds a slot until [`Self::answered`].
    pub fn admit(
        &mut self,
        peer: PeerId,
        joined: bool,
        member: bool,
        cost: f64,
        now: Instant,
    ) -> Result<(), Refusal> {
        // Having left a room, this node does not say what it kept of it.
        if !joined {
            return Err(Refusal::Unavailable);
        }
        if !member {
            return Err(Refusal::NotMember);
        }
        let of_peer = self.by_peer.get(&peer).copied().unwrap_or(0);
        if self.total >= MAX_SERVING || of_peer >= MAX_SERVING_PER_PEER {
            return Err(Refusal::Busy);
        }
        if self.budgets.len() >= MAX_BUCKETS && !self.budgets.contains_key(&peer) {
            // Buckets that are full again say nothing a new one would not.
            let refill = Duration::from_secs_f64(PEER_BURST / PEER_RATE);
            self.budgets
                .retain(|_, b| now.saturating_duration_since(b.at) < refill);
            if self.budgets.len() >= MAX_BUCKETS {
                return Err(Refusal::Busy);
            }
        }
        let bucket = self
            .budgets
            .entry(peer)
            .or_insert_with(|| Bucket::full(PEER_BURST, now));
        bucket.refill(PEER_BURST, PEER_RATE, now);
        self.everyone.refill(TOTAL_BURST, TOTAL_RATE, now);
        if bucket.tokens < cost || self.everyone.tokens < cost {
            return Err(Refusal::Busy);
        }
        bucket.tokens -= cost;
        self.everyone.tokens -= cost;
        self.total += 1;
        *self.by_peer.entry(peer).or_insert(0) += 1;
        Ok(())
    }

    /// A request admitted earlier was answered (or could not be).
    pub fn answered(&mut self, peer: &PeerId) {
        self.total = self.total.saturating_sub(1);
        if let Some(n) = self.by_peer.get_mut(peer) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.by_peer.remove(peer);
            }
        }
    }

    /// `peer` sent a chat message over its author's rate. Returns its new
    /// application score.
    /// The excess alone never costs more than [`MAX_EXCESS_PENALTY`]: a
    /// fast honest sender is slowed, not cut off.
    pub fn penalise_excess(&mut self, peer: PeerId) -> f64 {
        let score = self.penalties.get(&peer).copied().unwrap_or(0.0);
        if score <= -MAX_EXCESS_PENALTY {
            return score;
        }
        self.add_penalty(peer, EXCESS_PENALTY)
    }

    /// `peer` served `bad` envelopes that failed verification. Returns its
    /// new application score (weight 10 per point in gossipsub).
    pub fn penalise(&mut self, peer: PeerId, bad: usize) -> f64 {
        self.add_penalty(peer, bad as f64 * BAD_ENVELOPE_PENALTY)
    }

    fn add_penalty(&mut self, peer: PeerId, penalty: f64) -> f64 {
        if self.penalties.len() >= MAX_PENALISED && !self.penalties.contains_key(&peer) {
            // The least penalised is forgotten: clearing the map would give
            // the worst offenders a clean slate at their next offence.
            let least = self
                .penalties
                .iter()
                .max_by(|a, b| a.1.total_cmp(b.1))
                .map(|(p, _)| *p);
            if let Some(least) = least {
                self.penalties.remove(&least);
            }
        }
        let score = self.penalties.entry(peer).or_insert(0.0);
        *score -= penalty;
        *score
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admit(s: &mut Serving, peer: PeerId, now: Instant) -> Result<(), Refusal> {
        s.admit(peer, true, true, RECONCILE_COST, now)
    }

    #[test]
    fn one_peer_gets_two_slots_and_everyone_together_eight() {
        let now = Instant::now();
        let mut s = Serving::new(now);
        let greedy = PeerId::random();
        assert_eq!(admit(&mut s, greedy, now), Ok(()));
        assert_eq!(admit(&mut s, greedy, now), Ok(()));
        assert_eq!(admit(&mut s, greedy, now), Err(Refusal::Busy));
        let others: Vec<PeerId> = (0..3).map(|_| PeerId::random()).collect();
        for p in &others {
            assert_eq!(admit(&mut s, *p, now), Ok(()));
            assert_eq!(admit(&mut s, *p, now), Ok(()));
        }
        assert_eq!(admit(&mut s, PeerId::random(), now), Err(Refusal::Busy));
        s.answered(&greedy);
        assert_eq!(admit(&mut s, greedy, now), Ok(()));
    }

    #[test]
    fn a_room_this_node_is_not_in_is_unavailable_and_a_stranger_is_not_served() {
        let now = Instant::now();
        let mut s = Serving::new(now);
        let peer = PeerId::random();
        assert_eq!(
            s.admit(peer, false, true, 1.0, now),
            Err(Refusal::Unavailable)
        );
        assert_eq!(
            s.admit(peer, true, false, 1.0, now),
            Err(Refusal::NotMember)
        );
        // A refusal holds no slot.
        for _ in 0..MAX_SERVING {
            assert_eq!(admit(&mut s, PeerId::random(), now), Ok(()));
        }
    }

    #[test]
    fn a_peer_that_spends_its_budget_waits_for_it_to_refill() {
        let now = Instant::now();
        let mut s = Serving::new(now);
        let peer = PeerId::random();
        let mut served = 0.0;
        while s.admit(peer, true, true, 256.0, now).is_ok() {
            s.answered(&peer);
            served += 256.0;
        }
        assert_eq!(served, PEER_BURST);
        // Someone else still has theirs.
        assert_eq!(s.admit(PeerId::random(), true, true, 256.0, now), Ok(()));
        let later = now + Duration::from_millis(500);
        assert_eq!(s.admit(peer, true, true, 256.0, later), Ok(()));
        s.answered(&peer);
        let mut more = 256.0;
        while s.admit(peer, true, true, 256.0, later).is_ok() {
            s.answered(&peer);
            more += 256.0;
        }
        assert!(
            more <= PEER_RATE * 0.5 + 256.0,
            "refills at its rate: {more}"
        );
    }

    #[test]
    fn everyone_together_cannot_exceed_the_total_budget() {
        let now = Instant::now();
        let mut s = Serving::new(now);
        let mut served = 0.0;
        for _ in 0..100 {
            let peer = PeerId::random();
            if s.admit(peer, true, true, 1024.0, now).is_ok() {
                s.answered(&peer);
                served += 1024.0;
            }
        }
        assert_eq!(served, TOTAL_BURST);
    }

    #[test]
    fn penalties_add_up_per_peer() {
        let mut s = Serving::new(Instant::now());
        let bad = PeerId::random();
        assert_eq!(s.penalise(bad, 2), -2.0);
        assert_eq!(s.penalise(bad, 3), -5.0);
        assert_eq!(s.penalise(PeerId::random(), 1), -1.0);
    }

    #[test]
    fn a_full_penalty_table_forgets_the_least_penalised_not_the_worst() {
        let mut s = Serving::new(Instant::now());
        let worst = PeerId::random();
        s.penalise(worst, 50);
        for _ in 0..MAX_PENALISED + 10 {
            s.penalise(PeerId::random(), 1);
        }
        assert_eq!(s.penalties.len(), MAX_PENALISED);
        assert_eq!(s.penalise(worst, 1), -51.0);
    }
}
