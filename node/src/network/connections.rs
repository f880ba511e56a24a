//! Bookkeeping of connections: who is connected over what (for `/peers` and the
//! `peer_connected` events), and the bootstrap peers to keep dialling, with
//! exponential backoff, whenever the node is not connected to them.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use libp2p::multiaddr::Protocol;
use libp2p::swarm::ConnectionId;
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::{Multiaddr, PeerId};
use palaver_proto::line::{Event, PeerInfo};

const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// A connection that lasted this long resets the redial backoff.
const STABLE_CONNECTION: Duration = Duration::from_secs(30);

/// Whether an address goes through a relay circuit.
pub fn is_relayed(addr: &Multiaddr) -> bool {
    addr.iter().any(|p| matches!(p, Protocol::P2pCircuit))
}

/// The relay a circuit address goes through (the `/p2p/…` before `/p2p-circuit`).
pub fn relay_of(addr: &Multiaddr) -> Option<PeerId> {
    let mut last = None;
    for p in addr.iter() {
        match p {
            Protocol::P2p(peer) => last = Some(peer),
            Protocol::P2pCircuit => return last,
            _ => {}
        }
    }
    None
}

/// The peer an address names with a trailing `/p2p/…`, if any.
pub fn peer_of(addr: &Multiaddr) -> Option<PeerId> {
    match addr.iter().last() {
        Some(Protocol::P2p(peer)) => Some(peer),
        _ => None,
    }
}

/// How to dial an address: to the peer it names, unless already connected to
/// or dialling it, or to whoever answers.
pub fn dial_opts(addr: &Multiaddr) -> DialOpts {
    match peer_of(addr) {
        Some(peer) => DialOpts::peer_id(peer)
            .addresses(vec![addr.clone()])
            .condition(PeerCondition::DisconnectedAndNotDialing)
            .build(),
        None => DialOpts::unknown_peer_id().address(addr.clone()).build(),
    }
}

#[derive(Debug)]
struct Conn {
    id: ConnectionId,
    addr: Multiaddr,
    relayed: bool,
    since: Instant,
}

/// Open connections by peer.
#[derive(Debug, Default)]
pub struct Connections {
    peers: HashMap<PeerId, Vec<Conn>>,
}

impl Connections {
    pub fn established(
        &mut self,
        peer: PeerId,
        id: ConnectionId,
        addr: Multiaddr,
        relayed: bool,
    ) -> Event {
        let event = Event::PeerConnected {
            peer_id: peer.to_string(),
            addr: addr.to_string(),
            relayed,
        };
        self.peers.entry(peer).or_default().push(Conn {
            id,
            addr,
            relayed,
            since: Instant::now(),
        });
        event
    }

    /// Peers connected only through relays, each with the age of its newest
    /// circuit and the relay it goes through.
    pub fn relayed_only(&self, now: Instant) -> Vec<(PeerId, Duration, Option<PeerId>)> {
        self.peers
            .iter()
            .filter(|(_, conns)| !conns.is_empty() && conns.iter().all(|c| c.relayed))
            .filter_map(|(peer, conns)| {
                let newest = conns.iter().max_by_key(|c| c.since)?;
                Some((
                    *peer,
                    now.saturating_duration_since(newest.since),
                    relay_of(&newest.addr),
                ))
            })
            .collect()
    }

    /// Forgets a connection; reports the peer gone when it was its last.
    pub fn closed(&mut self, peer: PeerId, id: ConnectionId) -> Option<Event> {
        let conns = self.peers.get_mut(&peer)?;
        conns.retain(|c| c.id != id);
        if !conns.is_empty() {
            return None;
        }
        self.peers.remove(&peer);
        Some(Event::PeerDisconnected {
            peer_id: peer.to_string(),
        })
    }

    /// Whether some connection to `peer` does not go through a relay.
    pub fn has_direct(&self, peer: &PeerId) -> bool {
        self.peers
            .get(peer)
            .is_some_and(|c| c.iter().any(|c| !c.relayed))
    }

    /// One entry per connected peer, its direct connection preferred, with
    /// the score `score_of` gives it.
    pub fn list(&self, score_of: impl Fn(&PeerId) -> Option<f64>) -> Vec<PeerInfo> {
        let mut peers: Vec<PeerInfo> = self
            .peers
            .iter()
            .filter_map(|(peer, conns)| {
                let best = conns
                    .iter()
                    .find(|c| !c.relayed)
                    .or_else(|| conns.first())?;
                Some(PeerInfo {
                    peer_id: peer.to_string(),
                    addr: best.addr.to_string(),
                    relayed: best.relayed,
                    score: score_of(peer),
                })
            })
            .collect();
        peers.sort_by(|a, b| a.peer_id.cmp(&b.peer_id));
        peers
    }
}

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

    #[test]
    fn peers_prefer_their_direct_connection() {
        let mut c = Connections::default();
        let peer = PeerId::random();
        let relayed: Multiaddr = format!("/ip4/1.2.3.4/tcp/1/p2p/{}/p2p-circuit", PeerId::random())
            .parse()
            .unwrap();
        let direct: Multiaddr = "/ip4/5.6.7.8/udp/2/quic-v1".parse().unwrap();
        c.established(peer, ConnectionId::new_unchecked(1), relayed, true);
        assert!(c.list(|_| None)[0].relayed);
        c.established(peer, ConnectionId::new_unchecked(2), direct, false);
        assert!(!c.list(|_| None)[0].relayed);
        assert!(c.closed(peer, ConnectionId::new_unchecked(2)).is_none());
        assert!(c.closed(peer, ConnectionId::new_unchecked(1)).is_some());
        assert!(c.list(|_| None).is_empty());
    }
}
