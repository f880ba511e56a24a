//! What a room remembers of the members who left it (or timed out, or were
//! removed, or were present when this node left): how far each one's
//! `(session, seq)` had got. A payload at or below that is from before the
//! departure, so it brings no `joined`: someone replays it (an envelope they
//! saw), or it is very late.
//!
//! Why this is needed at all: a live payload is taken while its timestamp is
//! within [`MAX_CLOCK_SKEW_MS`] of the receiver's clock, and gossipsub forgets
//! the ids it has seen after 120 s, so for minutes after a member left, its
//! signed presence or chat can be published again as a fresh gossip message.
//! How long: a payload sent before the departure, by an author whose clock
//! was at most [`MAX_CLOCK_SKEW_MS`] ahead of ours (else it was refused then
//! too), is refused by its timestamp at most twice the skew after the
//! departure; [`DEPARTED_MEMORY`] adds a minute to that. After it, the
//! timestamp check alone refuses what this record would.
//!
//! Bounded: at most [`MAX_DEPARTED`] per room, the oldest departure
//! forgotten first (a flood of sybil departures can push a real member's
//! record out early; then its replay is a ghost again, for at most
//! `MEMBER_TIMEOUT`, which is where it was before).

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use libp2p::PeerId;
use palaver_proto::contract::MAX_CLOCK_SKEW_MS;

/// How long a departure is remembered: twice the allowed clock skew and a
/// minute (11 minutes), longer than any payload from before it stays fresh.
pub const DEPARTED_MEMORY: Duration = Duration::from_millis(2 * MAX_CLOCK_SKEW_MS + 60_000);
/// Most departures one room remembers; more forget the oldest.
pub const MAX_DEPARTED: usize = 4096;

#[derive(Debug, Clone, Copy)]
struct Entry {
    /// Its place in departure order (the key in `by_order`).
    order: u64,
    at: Instant,
    high_water: (u64, u64),
}

/// The departures of one room (see the module docs).
#[derive(Debug, Default)]
pub struct Departed {
    by_peer: HashMap<PeerId, Entry>,
    by_order: BTreeMap<u64, PeerId>,
    next_order: u64,
}

impl Departed {
    /// `peer` departed at `now`, its payloads having got to `high_water`.
    pub fn remember(&mut self, peer: PeerId, high_water: (u64, u64), now: Instant) {
        let order = self.next_order;
        // A counter of departures: 2^64 of them never happen.
        self.next_order = self.next_order.saturating_add(1);
        let high_water = match self.by_peer.get(&peer) {
            Some(old) => old.high_water.max(high_water),
            None => high_water,
        };
        let entry = Entry {
            order,
            at: now,
            high_water,
        };
        if let Some(old) = self.by_peer.insert(peer, entry) {
            self.by_order.remove(&old.order);
        }
        self.by_order.insert(order, peer);
        while self.by_order.len() > MAX_DEPARTED {
            if let Some((_, oldest)) = self.by_order.pop_first() {
                self.by_peer.remove(&oldest);
            }
        }
    }

    /// Whether a payload of `peer` at `(session, seq)` is from before its
    /// departure (at or below its high water, remembered until `now`).
    pub fn is_old(&self, peer: &PeerId, session: u64, seq: u64, now: Instant) -> bool {
        self.by_peer.get(peer).is_some_and(|e| {
            now.saturating_duration_since(e.at) < DEPARTED_MEMORY && (session, seq) <= e.high_water
        })
    }

    /// `peer` is back (a payload above its high water): nothing to remember.
    pub fn forget(&mut self, peer: &PeerId) {
        if let Some(old) = self.by_peer.remove(peer) {
            self.by_order.remove(&old.order);
        }
    }

    /// Forgets what is older than [`DEPARTED_MEMORY`].
    pub fn expire(&mut self, now: Instant) {
        while let Some((_, peer)) = self.by_order.first_key_value() {
            let peer = *peer;
            match self.by_peer.get(&peer) {
                Some(e) if now.saturating_duration_since(e.at) < DEPARTED_MEMORY => break,
                _ => {
                    self.by_order.pop_first();
                    self.by_peer.remove(&peer);
                }
            }
        }
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.by_peer.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_peer.is_empty()
    }

    /// When the oldest departure was, if any.
    pub fn oldest(&self) -> Option<Instant> {
        let (_, peer) = self.by_order.first_key_value()?;
        self.by_peer.get(peer).map(|e| e.at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_payload_at_or_below_the_high_water_is_old_until_the_memory_ends() {
        let now = Instant::now();
        let (peer, mut d) = (PeerId::random(), Departed::default());
        d.remember(peer, (7, 12), now);
        assert!(d.is_old(&peer, 7, 12, now));
        assert!(d.is_old(&peer, 7, 3, now));
        assert!(d.is_old(&peer, 6, 99, now), "an earlier session");
        assert!(!d.is_old(&peer, 7, 13, now), "after the departure");
        assert!(!d.is_old(&peer, 8, 0, now), "a new session");
        assert!(!d.is_old(&PeerId::random(), 7, 0, now), "never seen");
        let later = now + DEPARTED_MEMORY;
        assert!(!d.is_old(&peer, 7, 12, later));
        d.expire(later);
        assert_eq!(d.len(), 0);
    }

    #[test]
    fn the_memory_is_bounded_and_forgets_the_oldest_first() {
        let now = Instant::now();
        let mut d = Departed::default();
        let first = PeerId::random();
        d.remember(first, (1, 1), now);
        let second = PeerId::random();
        d.remember(second, (1, 1), now);
        for _ in 0..MAX_DEPARTED - 1 {
            d.remember(PeerId::random(), (1, 1), now);
        }
        assert_eq!(d.len(), MAX_DEPARTED);
        assert!(!d.is_old(&first, 1, 1, now), "the oldest is forgotten");
        assert!(d.is_old(&second, 1, 1, now));
    }

    #[test]
    fn departing_again_keeps_the_highest_mark_and_moves_to_the_back() {
        let now = Instant::now();
        let mut d = Departed::default();
        let peer = PeerId::random();
        d.remember(peer, (2, 5), now);
        d.remember(PeerId::random(), (1, 1), now);
        d.remember(peer, (2, 3), now + Duration::from_secs(1));
        assert!(d.is_old(&peer, 2, 5, now));
        assert_eq!(d.oldest(), Some(now));
        d.forget(&peer);
        assert!(!d.is_old(&peer, 2, 5, now));
        assert_eq!(d.len(), 1);
    }
}
