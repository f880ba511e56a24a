//! A cap on the relayed circuits opened from one address block (an IPv4
//! address or an IPv6 /48), so that sybils on one host cannot hold every
//! circuit of the relay: `max_circuits_per_peer` alone lets 128 peer ids
//! from one address open more circuits than the relay has.
//!
//! libp2p's relay asks its circuit-source rate limiters before it accepts a
//! circuit, with the source's address, but tells nobody when a circuit ends
//! except through its events. So the count lives in a [`CircuitLimits`]
//! shared by the limiter (which only reads it, and notes the block of a
//! request it let through) and the relay's event loop (which counts a
//! circuit when the relay accepted it and uncounts it when it closed).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use libp2p::relay;
use libp2p::rendezvous::server::IpBlock;
use libp2p::{Multiaddr, PeerId};

/// Requests let through and not yet accepted or refused are kept at most
/// this many; a request whose outcome the relay never reported is dropped
/// after [`PENDING_FOR`].
const MAX_PENDING: usize = 4096;
const PENDING_FOR: Duration = Duration::from_secs(60);

/// The shared count (cheap to clone).
#[derive(Debug, Clone)]
pub struct CircuitLimits(Arc<Mutex<State>>);

#[derive(Debug)]
struct State {
    max_per_block: usize,
    per_block: HashMap<IpBlock, usize>,
    /// The block of each open circuit, by its source and destination (one
    /// source may open several to one destination).
    open: HashMap<(PeerId, PeerId), Vec<IpBlock>>,
    /// The block of each source whose request was let through, until the
    /// relay accepts or refuses it.
    pending: HashMap<PeerId, (IpBlock, Instant)>,
}

impl CircuitLimits {
    pub fn new(max_per_block: usize) -> Self {
        Self(Arc::new(Mutex::new(State {
            max_per_block,
            per_block: HashMap::new(),
            open: HashMap::new(),
            pending: HashMap::new(),
        })))
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock ends the process (see main), so a
        // poisoned lock only means a counting step was cut short.
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The rate limiter handed to the relay's `circuit_src_rate_limiters`.
    pub fn limiter(&self) -> Box<dyn relay::RateLimiter> {
        let limits = self.clone();
        Box::new(move |src: PeerId, addr: &Multiaddr, now: Instant| limits.admit(src, addr, now))
    }

    /// Whether a circuit from `src`, connected at `addr`, may open.
    pub fn admit(&self, src: PeerId, addr: &Multiaddr, now: Instant) -> bool {
        let Some(block) = IpBlock::of_addr(addr) else {
            // No IP (a relayed connection, denied by the relay anyway).
            return true;
        };
        let mut s = self.state();
        if s.per_block.get(&block).copied().unwrap_or(0) >= s.max_per_block {
            return false;
        }
        if s.pending.len() >= MAX_PENDING {
            s.pending
                .retain(|_, (_, at)| now.saturating_duration_since(*at) < PENDING_FOR);
            if s.pending.len() >= MAX_PENDING {
                return false;
            }
        }
        s.pending.insert(src, (block, now));
        true
    }

    /// Counts and uncounts circuits from what the relay reports.
    pub fn on_event(&self, event: &relay::Event) {
        let mut s = self.state();
        match event {
            relay::Event::CircuitReqAccepted {
                src_peer_id,
                dst_peer_id,
            } => {
                if let Some((block, _)) = s.pending.remove(src_peer_id) {
                    let count = s.per_block.entry(block).or_default();
                    *count = count.saturating_add(1);
                    s.open
                        .entry((*src_peer_id, *dst_peer_id))
                        .or_default()
                        .push(block);
                }
            }
            relay::Event::CircuitClosed {
                src_peer_id,
                dst_peer_id,
                ..
            } => {
                let key = (*src_peer_id, *dst_peer_id);
                let Some(blocks) = s.open.get_mut(&key) else {
                    return;
                };
                let block = blocks.pop();
                if blocks.is_empty() {
                    s.open.remove(&key);
                }
                if let Some(block) = block
                    && let Some(count) = s.per_block.get_mut(&block)
                {
                    *count = count.saturating_sub(1);
                    if *count == 0 {
                        s.per_block.remove(&block);
                    }
                }
            }
            #[allow(deprecated)]
            relay::Event::CircuitReqDenied { src_peer_id, .. }
            | relay::Event::CircuitReqDenyFailed { src_peer_id, .. }
            | relay::Event::CircuitReqOutboundConnectFailed { src_peer_id, .. }
            | relay::Event::CircuitReqAcceptFailed { src_peer_id, .. } => {
                s.pending.remove(src_peer_id);
            }
            _ => {}
        }
    }

    /// Circuits open from `block` now.
    #[cfg(test)]
    fn open(&self, block: IpBlock) -> usize {
        self.state().per_block.get(&block).copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> Multiaddr {
        s.parse().unwrap()
    }

    fn accepted(src: PeerId, dst: PeerId) -> relay::Event {
        relay::Event::CircuitReqAccepted {
            src_peer_id: src,
            dst_peer_id: dst,
        }
    }

    fn closed(src: PeerId, dst: PeerId) -> relay::Event {
        relay::Event::CircuitClosed {
            src_peer_id: src,
            dst_peer_id: dst,
            error: None,
        }
    }

    #[test]
    fn circuits_beyond_the_cap_from_one_address_are_refused_and_others_still_open() {
        let limits = CircuitLimits::new(2);
        let now = Instant::now();
        let dst = PeerId::random();
        let sybil = addr("/ip4/192.0.2.7/tcp/4001");
        for _ in 0..2 {
            let src = PeerId::random();
            assert!(limits.admit(src, &sybil, now));
            limits.on_event(&accepted(src, dst));
        }
        assert!(!limits.admit(PeerId::random(), &sybil, now));
        assert!(limits.admit(PeerId::random(), &addr("/ip4/198.51.100.1/tcp/4001"), now));
    }

    #[test]
    fn a_closed_circuit_frees_its_slot_and_a_refused_one_takes_none() {
        let limits = CircuitLimits::new(1);
        let now = Instant::now();
        let (src, dst) = (PeerId::random(), PeerId::random());
        let a = addr("/ip4/192.0.2.7/udp/4001/quic-v1");
        let block = IpBlock::of_addr(&a).unwrap();
        assert!(limits.admit(src, &a, now));
        limits.on_event(&relay::Event::CircuitReqDenied {
            src_peer_id: src,
            dst_peer_id: dst,
            status: relay::StatusCode::NoReservation,
        });
        assert_eq!(limits.open(block), 0);
        assert!(limits.admit(src, &a, now));
        limits.on_event(&accepted(src, dst));
        assert_eq!(limits.open(block), 1);
        assert!(!limits.admit(src, &a, now));
        limits.on_event(&closed(src, dst));
        assert_eq!(limits.open(block), 0);
        assert!(limits.admit(src, &a, now));
        // A close the limiter never counted changes nothing.
        limits.on_event(&closed(PeerId::random(), dst));
        assert_eq!(limits.open(block), 0);
    }

    #[test]
    fn requests_whose_outcome_never_came_do_not_block_others_forever() {
        let limits = CircuitLimits::new(10);
        let now = Instant::now();
        let a = addr("/ip4/192.0.2.7/tcp/1");
        for _ in 0..MAX_PENDING {
            assert!(limits.admit(PeerId::random(), &a, now));
        }
        assert!(!limits.admit(PeerId::random(), &a, now));
        assert!(limits.admit(PeerId::random(), &a, now + PENDING_FOR));
    }
}
