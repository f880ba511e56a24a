//! Restores each author's order and refuses replays. Gossip can deliver one
//! author's payloads out of order (a late IWANT answer, a mesh change), so
//! each payload carries the author's `(session, seq)`; this buffer releases
//! payloads in that order, holding an early one for at most [`GAP_WAIT`] while
//! the missing ones arrive. Each `(session, seq)` is released at most once,
//! and nothing from an earlier session once a later one was seen, so a peer
//! that re-publishes an author's old signed payloads gets nothing shown.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

/// How long an early payload waits for the ones before it.
pub const GAP_WAIT: Duration = Duration::from_millis(1500);
/// Most payloads held for one author; more releases the oldest held at once.
pub const MAX_HELD_PER_AUTHOR: usize = 256;
/// Most skipped sequence numbers remembered (so that they may still arrive).
const MAX_SKIPPED: usize = 256;

/// Ordering state of one author in one room.
#[derive(Debug)]
pub struct AuthorOrder<T> {
    session: u64,
    next_seq: u64,
    held: BTreeMap<u64, (Instant, T)>,
    /// Sequence numbers given up on: the only ones below `next_seq` still welcome.
    skipped: BTreeSet<u64>,
}

impl<T> AuthorOrder<T> {
    /// Starts tracking at the first payload seen from an author.
    pub fn new(session: u64, seq: u64) -> Self {
        Self {
            session,
            next_seq: seq,
            held: BTreeMap::new(),
            skipped: BTreeSet::new(),
        }
    }

    /// Takes a payload; returns those now in order to process, in order.
    /// A payload already released, or from an earlier session, is dropped.
    pub fn push(&mut self, session: u64, seq: u64, item: T, now: Instant) -> Vec<T> {
        if session < self.session {
            return Vec::new();
        }
        let mut out = Vec::new();
        if session > self.session {
            // The author restarted (or rejoined): what waited from before goes first.
            out.extend(std::mem::take(&mut self.held).into_values().map(|(_, v)| v));
            self.skipped.clear();
            self.session = session;
            self.next_seq = seq;
        }
        if seq < self.next_seq {
            if self.skipped.remove(&seq) {
                out.push(item); // late, but never shown: it waited out its gap
            }
        } else if seq == self.next_seq {
            out.push(item);
            self.next_seq = seq.saturating_add(1);
            self.release_consecutive(&mut out);
        } else {
            self.held.entry(seq).or_insert((now + GAP_WAIT, item));
            if self.held.len() > MAX_HELD_PER_AUTHOR {
                self.skip_gap(&mut out);
            }
        }
        out
    }

    /// Releases what waited longer than [`GAP_WAIT`], and what follows it.
    pub fn expire(&mut self, now: Instant) -> Vec<T> {
        let mut out = Vec::new();
        while self.held.values().any(|(deadline, _)| *deadline <= now) {
            self.skip_gap(&mut out);
        }
        out
    }

    /// Gives up on every gap: releases all that is held, in order.
    pub fn release_all(&mut self) -> Vec<T> {
        let mut out = Vec::new();
        while !self.held.is_empty() {
            self.skip_gap(&mut out);
        }
        out
    }

    /// Whether a payload at `(session, seq)` is one not taken before: of a
    /// later session, or of this one and neither released nor held (a
    /// skipped one arriving late counts). A replay is not.
    pub fn is_new(&self, session: u64, seq: u64) -> bool {
        match session.cmp(&self.session) {
            std::cmp::Ordering::Less => false,
            std::cmp::Ordering::Greater => true,
            std::cmp::Ordering::Equal if seq < self.next_seq => self.skipped.contains(&seq),
            std::cmp::Ordering::Equal => !self.held.contains_key(&seq),
        }
    }

    /// The furthest `(session, seq)` taken from this author, released or
    /// held: everything at or below it is old.
    pub fn high_water(&self) -> (u64, u64) {
        let released = self.next_seq.saturating_sub(1);
        let held = self.held.last_key_value().map_or(0, |(seq, _)| *seq);
        (self.session, released.max(held))
    }

    /// How many payloads are held.
    pub fn held(&self) -> usize {
        self.held.len()
    }

    /// When the first held payload stops waiting for its gap.
    pub fn next_expiry(&self) -> Option<Instant> {
        self.held.values().map(|(deadline, _)| *deadline).min()
    }

    /// Gives up on the gap before the first held payload.
    fn skip_gap(&mut self, out: &mut Vec<T>) {
        if let Some((&seq, _)) = self.held.first_key_value() {
            let from = self.next_seq.max(seq.saturating_sub(MAX_SKIPPED as u64));
            self.skipped.extend(from..seq);
            while self.skipped.len() > MAX_SKIPPED {
                self.skipped.pop_first();
            }
            self.next_seq = seq;
            self.release_consecutive(out);
        }
    }

    fn release_consecutive(&mut self, out: &mut Vec<T>) {
        while let Some((_, item)) = self.held.remove(&self.next_seq) {
            out.push(item);
            self.next_seq = self.next_seq.saturating_add(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_order_payloads_pass_straight_through() {
        let now = Instant::now();
        let mut o = AuthorOrder::new(1, 10);
        assert_eq!(o.push(1, 10, 'a', now), vec!['a']);
        assert_eq!(o.push(1, 11, 'b', now), vec!['b']);
    }

    #[test]
    fn an_early_payload_waits_for_the_one_before_it() {
        let now = Instant::now();
        let mut o = AuthorOrder::new(1, 0);
        assert_eq!(o.push(1, 0, 'a', now), vec!['a']);
        assert_eq!(o.push(1, 2, 'c', now), Vec::<char>::new());
        assert_eq!(o.push(1, 3, 'd', now), Vec::<char>::new());
        assert_eq!(o.push(1, 1, 'b', now), vec!['b', 'c', 'd']);
        assert_eq!(o.held(), 0);
    }

    #[test]
    fn a_gap_that_never_fills_is_skipped_after_the_wait() {
        let now = Instant::now();
        let mut o = AuthorOrder::new(1, 0);
        assert!(o.push(1, 2, 'c', now).is_empty());
        assert!(o.expire(now + GAP_WAIT / 2).is_empty());
        assert_eq!(o.expire(now + GAP_WAIT), vec!['c']);
        // the missing one, arriving after all, is still shown, once
        assert_eq!(o.push(1, 1, 'b', now + GAP_WAIT * 2), vec!['b']);
        assert!(o.push(1, 1, 'b', now + GAP_WAIT * 2).is_empty());
        assert_eq!(o.push(1, 3, 'd', now), vec!['d']);
    }

    #[test]
    fn a_restarted_author_starts_a_new_sequence() {
        let now = Instant::now();
        let mut o = AuthorOrder::new(1, 5);
        assert!(o.push(1, 7, 'x', now).is_empty());
        assert_eq!(o.push(2, 0, 'a', now), vec!['x', 'a']);
        assert_eq!(o.push(2, 1, 'b', now), vec!['b']);
        assert!(
            o.push(1, 8, 'o', now).is_empty(),
            "an earlier session is over"
        );
    }

    #[test]
    fn a_replayed_payload_is_never_released_twice() {
        let now = Instant::now();
        let mut o = AuthorOrder::new(1, 0);
        assert_eq!(o.push(1, 0, 'a', now), vec!['a']);
        assert_eq!(o.push(1, 1, 'b', now), vec!['b']);
        assert!(o.push(1, 0, 'a', now).is_empty());
        assert!(o.push(1, 1, 'b', now).is_empty());
    }

    #[test]
    fn each_early_payload_waits_at_most_its_own_gap_wait() {
        let now = Instant::now();
        let mut o = AuthorOrder::new(1, 1);
        assert!(o.push(1, 3, 'c', now).is_empty());
        assert!(o.push(1, 2, 'b', now + Duration::from_secs(1)).is_empty());
        // 3 has waited its GAP_WAIT: it goes, with 2 before it.
        assert_eq!(o.expire(now + GAP_WAIT), vec!['b', 'c']);
    }

    #[test]
    fn only_a_payload_not_taken_before_is_new() {
        let now = Instant::now();
        let mut o = AuthorOrder::new(3, 0);
        assert!(o.is_new(3, 0));
        o.push(3, 0, 'a', now);
        assert!(!o.is_new(3, 0), "released");
        assert!(!o.is_new(2, 9), "an earlier session");
        assert!(o.is_new(3, 1));
        o.push(3, 2, 'c', now);
        assert!(!o.is_new(3, 2), "held");
        assert!(o.is_new(4, 0), "a later session");
        o.expire(now + GAP_WAIT);
        assert!(o.is_new(3, 1), "skipped, so still welcome once");
    }

    #[test]
    fn the_high_water_counts_what_is_held() {
        let now = Instant::now();
        let mut o = AuthorOrder::new(5, 10);
        o.push(5, 10, 'a', now);
        assert_eq!(o.high_water(), (5, 10));
        o.push(5, 14, 'e', now);
        assert_eq!(o.high_water(), (5, 14));
    }

    #[test]
    fn a_flood_of_early_payloads_is_bounded() {
        let now = Instant::now();
        let mut o = AuthorOrder::new(1, 0);
        let mut released = 0;
        for seq in 1..=(MAX_HELD_PER_AUTHOR as u64 + 10) {
            released += o.push(1, seq * 2, seq, now).len();
        }
        assert!(o.held() <= MAX_HELD_PER_AUTHOR);
        assert!(released > 0);
    }
}
