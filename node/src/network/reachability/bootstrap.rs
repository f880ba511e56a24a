//! The `--bootstrap` peers, kept dialled: each is dialled whenever the node is
//! not connected to it, with exponential backoff, so a relay that restarts is
//! found again and one that keeps dropping the node is not hammered.

use std::time::{Duration, Instant};

use libp2p::swarm::ConnectionId;
use libp2p::{Multiaddr, PeerId};

use super::connections::peer_of;

const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// How soon a dial the swarm put off (the peer was being dialled another
/// way) is asked for again; the backoff is left as it was.
const DEFERRED_RETRY: Duration = Duration::from_millis(250);
/// A connection that lasted this long resets the redial backoff.
const STABLE_CONNECTION: Duration = Duration::from_secs(30);

#[derive(Debug)]
struct Entry {
    addr: Multiaddr,
    peer: Option<PeerId>,
    dialing: Option<ConnectionId>,
    next_attempt: Instant,
    backoff: Duration,
    connected_at: Option<Instant>,
}

/// The `--bootstrap` peers and when to dial each next.
#[derive(Debug, Default)]
pub struct Bootstrap {
    entries: Vec<Entry>,
}

impl Bootstrap {
    pub fn new(addrs: &[Multiaddr], local: PeerId, now: Instant) -> Self {
        let entries = addrs
            .iter()
            .filter(|a| {
                let own = peer_of(a) == Some(local);
                if own {
                    tracing::warn!(addr = %a, "ignoring a --bootstrap address of this node itself");
                }
                !own
            })
            .map(|addr| Entry {
                addr: addr.clone(),
                peer: peer_of(addr),
                dialing: None,
                next_attempt: now,
                backoff: FIRST_BACKOFF,
                connected_at: None,
            })
            .collect();
        Self { entries }
    }

    /// The addresses to dial now: not connected, not being dialled, backoff over.
    pub fn due(&self, now: Instant, connected: impl Fn(&PeerId) -> bool) -> Vec<Multiaddr> {
        self.entries
            .iter()
            .filter(|e| {
                e.dialing.is_none()
                    && e.next_attempt <= now
                    && !e.peer.as_ref().is_some_and(&connected)
            })
            .map(|e| e.addr.clone())
            .collect()
    }

    pub fn dialing(&mut self, addr: &Multiaddr, id: ConnectionId) {
        if let Some(e) = self.entries.iter_mut().find(|e| &e.addr == addr) {
            e.dialing = Some(id);
        }
    }

    /// A dial could not even start, or failed.
    pub fn dial_failed(&mut self, addr: &Multiaddr, now: Instant) {
        if let Some(e) = self.entries.iter_mut().find(|e| &e.addr == addr) {
            e.dialing = None;
            e.next_attempt = now + e.backoff;
            e.backoff = (e.backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// A dial the swarm put off: asked for again shortly, the backoff unchanged.
    pub fn deferred(&mut self, addr: &Multiaddr, now: Instant) {
        if let Some(e) = self.entries.iter_mut().find(|e| &e.addr == addr) {
            e.dialing = None;
            e.next_attempt = now + DEFERRED_RETRY;
        }
    }

    /// The address of a bootstrap peer, if `peer` is one.
    pub fn addr_of_peer(&self, peer: &PeerId) -> Option<Multiaddr> {
        self.entries
            .iter()
            .find(|e| e.peer.as_ref() == Some(peer))
            .map(|e| e.addr.clone())
    }

    /// Maps a failed connection id back to its entry's address.
    pub fn addr_of(&self, id: ConnectionId) -> Option<Multiaddr> {
        self.entries
            .iter()
            .find(|e| e.dialing == Some(id))
            .map(|e| e.addr.clone())
    }

    pub fn established(&mut self, id: ConnectionId, peer: PeerId, now: Instant) {
        if let Some(e) = self.entries.iter_mut().find(|e| e.dialing == Some(id)) {
            e.dialing = None;
            e.peer = Some(peer);
            e.connected_at = Some(now);
        }
    }

    /// The last connection to `peer` closed: dial it again after a backoff.
    /// Only a connection that lasted resets the backoff, so a peer that
    /// accepts and at once drops (a full relay) is not dialled every second.
    pub fn disconnected(&mut self, peer: PeerId, now: Instant) {
        for e in self.entries.iter_mut().filter(|e| e.peer == Some(peer)) {
            if e.connected_at
                .take()
                .is_some_and(|at| now.duration_since(at) >= STABLE_CONNECTION)
            {
                e.backoff = FIRST_BACKOFF;
            }
            e.next_attempt = now + e.backoff;
            e.backoff = (e.backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// When [`Bootstrap::due`] next has something, if ever (without new input).
    pub fn next_due(&self, connected: impl Fn(&PeerId) -> bool) -> Option<Instant> {
        self.entries
            .iter()
            .filter(|e| e.dialing.is_none() && !e.peer.as_ref().is_some_and(&connected))
            .map(|e| e.next_attempt)
            .min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(peer: PeerId) -> Multiaddr {
        format!("/ip4/127.0.0.1/udp/1/quic-v1/p2p/{peer}")
            .parse()
            .unwrap()
    }

    #[test]
    fn a_failing_bootstrap_peer_is_retried_with_growing_backoff() {
        let now = Instant::now();
        let peer = PeerId::random();
        let a = addr(peer);
        let mut b = Bootstrap::new(std::slice::from_ref(&a), PeerId::random(), now);
        assert_eq!(b.due(now, |_| false), vec![a.clone()]);
        let id = ConnectionId::new_unchecked(1);
        b.dialing(&a, id);
        assert!(b.due(now, |_| false).is_empty());
        assert_eq!(b.addr_of(id), Some(a.clone()));
        b.dial_failed(&a, now);
        assert!(
            b.due(now + Duration::from_millis(999), |_| false)
                .is_empty()
        );
        assert_eq!(b.due(now + FIRST_BACKOFF, |_| false).len(), 1);
        b.dial_failed(&a, now);
        assert!(b.due(now + FIRST_BACKOFF, |_| false).is_empty());
        assert_eq!(b.due(now + FIRST_BACKOFF * 2, |_| false).len(), 1);
    }

    #[test]
    fn a_connected_bootstrap_peer_is_not_dialled_and_a_lost_one_is() {
        let now = Instant::now();
        let peer = PeerId::random();
        let a = addr(peer);
        let mut b = Bootstrap::new(std::slice::from_ref(&a), PeerId::random(), now);
        let id = ConnectionId::new_unchecked(2);
        b.dialing(&a, id);
        b.established(id, peer, now);
        assert!(b.due(now, |p| *p == peer).is_empty());
        let lasted = now + STABLE_CONNECTION;
        b.disconnected(peer, lasted);
        assert_eq!(b.due(lasted + FIRST_BACKOFF, |_| false), vec![a]);
    }

    #[test]
    fn a_peer_that_keeps_dropping_us_at_once_is_dialled_ever_less_often() {
        let now = Instant::now();
        let peer = PeerId::random();
        let a = addr(peer);
        let mut b = Bootstrap::new(std::slice::from_ref(&a), PeerId::random(), now);
        let mut t = now;
        let mut waits = Vec::new();
        for i in 0..4 {
            let id = ConnectionId::new_unchecked(10 + i);
            b.dialing(&a, id);
            b.established(id, peer, t);
            b.disconnected(peer, t);
            let next = (1..=120)
                .map(|s| t + Duration::from_secs(s))
                .find(|at| !b.due(*at, |_| false).is_empty())
                .unwrap();
            waits.push(next.duration_since(t).as_secs());
            t = next;
        }
        assert_eq!(waits, vec![1, 2, 4, 8]);
    }

    #[test]
    fn an_own_address_is_not_a_bootstrap_peer() {
        let me = PeerId::random();
        let b = Bootstrap::new(&[addr(me)], me, Instant::now());
        assert!(b.due(Instant::now(), |_| false).is_empty());
    }
}
