//! Serving catch-up, free of I/O: which peers' requests are answered now
//! (a few at once, fewer per peer, only rooms this node is in), and the
//! application-score penalties of peers whose pages failed verification.

use std::collections::HashMap;

use libp2p::PeerId;
use palaver_proto::history::Refusal;

/// Most catch-up requests answered at once; more are refused as busy.
pub const MAX_SERVING: usize = 8;
/// Most catch-up requests from one peer answered at once, so one peer cannot
/// take every slot (nor keep the store thread from live messages).
pub const MAX_SERVING_PER_PEER: usize = 2;
/// Application-score cost of one envelope that failed verification in catch-up.
pub const BAD_ENVELOPE_PENALTY: f64 = 1.0;
/// Most peers whose catch-up penalties are remembered.
const MAX_PENALISED: usize = 4096;

/// See the module docs.
#[derive(Debug, Default)]
pub struct Serving {
    total: usize,
    by_peer: HashMap<PeerId, usize>,
    penalties: HashMap<PeerId, f64>,
}

impl Serving {
    /// Whether a request from `peer` about a room (`joined` by this node) is
    /// answered; if so it holds a slot until [`Self::answered`].
    pub fn admit(&mut self, peer: PeerId, joined: bool) -> Result<(), Refusal> {
        // Having left a room, this node does not say what it kept of it.
        if !joined {
            return Err(Refusal::Unavailable);
        }
        let of_peer = self.by_peer.get(&peer).copied().unwrap_or(0);
        if self.total >= MAX_SERVING || of_peer >= MAX_SERVING_PER_PEER {
            return Err(Refusal::Busy);
        }
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

    /// `peer` served `bad` envelopes that failed verification. Returns its
    /// new application score (weight 10 per point in gossipsub).
    pub fn penalise(&mut self, peer: PeerId, bad: usize) -> f64 {
        if self.penalties.len() >= MAX_PENALISED && !self.penalties.contains_key(&peer) {
            self.penalties.clear();
        }
        let score = self.penalties.entry(peer).or_insert(0.0);
        *score -= bad as f64 * BAD_ENVELOPE_PENALTY;
        *score
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_peer_gets_two_slots_and_everyone_together_eight() {
        let mut s = Serving::default();
        let greedy = PeerId::random();
        assert_eq!(s.admit(greedy, true), Ok(()));
        assert_eq!(s.admit(greedy, true), Ok(()));
        assert_eq!(s.admit(greedy, true), Err(Refusal::Busy));
        let others: Vec<PeerId> = (0..3).map(|_| PeerId::random()).collect();
        for p in &others {
            assert_eq!(s.admit(*p, true), Ok(()));
            assert_eq!(s.admit(*p, true), Ok(()));
        }
        assert_eq!(s.admit(PeerId::random(), true), Err(Refusal::Busy));
        s.answered(&greedy);
        assert_eq!(s.admit(greedy, true), Ok(()));
    }

    #[test]
    fn a_room_this_node_is_not_in_is_unavailable() {
        let mut s = Serving::default();
        assert_eq!(s.admit(PeerId::random(), false), Err(Refusal::Unavailable));
        // A refusal holds no slot.
        for _ in 0..MAX_SERVING {
            assert_eq!(s.admit(PeerId::random(), true), Ok(()));
        }
    }

    #[test]
    fn penalties_add_up_per_peer() {
        let mut s = Serving::default();
        let bad = PeerId::random();
        assert_eq!(s.penalise(bad, 2), -2.0);
        assert_eq!(s.penalise(bad, 3), -5.0);
        assert_eq!(s.penalise(PeerId::random(), 1), -1.0);
    }
}
