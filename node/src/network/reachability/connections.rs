//! Who is connected over what: the open connections by peer (for `/peers`,
//! hole punching and circuit refreshes), and the small facts addresses tell
//! (relayed or not, through which relay, to which peer).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use libp2p::multiaddr::Protocol;
use libp2p::swarm::ConnectionId;
use libp2p::{Multiaddr, PeerId};

use crate::api::PeerStatus;

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
    /// Records a new connection; returns whether it is the peer's first.
    pub fn established(
        &mut self,
        peer: PeerId,
        id: ConnectionId,
        addr: Multiaddr,
        relayed: bool,
        now: Instant,
    ) -> bool {
        let conns = self.peers.entry(peer).or_default();
        conns.push(Conn {
            id,
            addr,
            relayed,
            since: now,
        });
        conns.len() == 1
    }

    /// Forgets a connection; returns whether it was the peer's last.
    pub fn closed(&mut self, peer: PeerId, id: ConnectionId) -> bool {
        let Some(conns) = self.peers.get_mut(&peer) else {
            return false;
        };
        conns.retain(|c| c.id != id);
        if !conns.is_empty() {
            return false;
        }
        self.peers.remove(&peer);
        true
    }

    pub fn is_connected(&self, peer: &PeerId) -> bool {
        self.peers.contains_key(peer)
    }

    /// The address of a direct connection to `peer`, if there is one.
    pub fn direct_addr(&self, peer: &PeerId) -> Option<Multiaddr> {
        self.peers
            .get(peer)?
            .iter()
            .find(|c| !c.relayed)
            .map(|c| c.addr.clone())
    }

    /// Whether some connection to `peer` does not go through a relay.
    pub fn has_direct(&self, peer: &PeerId) -> bool {
        self.peers
            .get(peer)
            .is_some_and(|c| c.iter().any(|c| !c.relayed))
    }

    /// Peers connected only through relays, each with the time its newest
    /// circuit was opened and the relay it goes through.
    pub fn relayed_only(&self) -> impl Iterator<Item = (PeerId, Instant, Option<PeerId>)> + '_ {
        self.peers
            .iter()
            .filter(|(_, conns)| conns.iter().all(|c| c.relayed))
            .filter_map(|(peer, conns)| {
                let newest = conns.iter().max_by_key(|c| c.since)?;
                Some((*peer, newest.since, relay_of(&newest.addr)))
            })
    }

    /// One entry per connected peer, its direct connection preferred, with
    /// the score `score_of` gives it.
    pub fn list(&self, score_of: impl Fn(&PeerId) -> Option<f64>) -> Vec<PeerStatus> {
        let mut peers: Vec<PeerStatus> = self
            .peers
            .iter()
            .filter_map(|(peer, conns)| {
                let best = conns
                    .iter()
                    .find(|c| !c.relayed)
                    .or_else(|| conns.first())?;
                Some(PeerStatus {
                    peer: *peer,
                    addr: best.addr.clone(),
                    relayed: best.relayed,
                    score: score_of(peer),
                })
            })
            .collect();
        peers.sort_by_key(|p| p.peer);
        peers
    }
}

/// How long ago `since` was, never negative.
pub fn age(now: Instant, since: Instant) -> Duration {
    now.saturating_duration_since(since)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_prefer_their_direct_connection() {
        let now = Instant::now();
        let mut c = Connections::default();
        let peer = PeerId::random();
        let relayed: Multiaddr = format!("/ip4/1.2.3.4/tcp/1/p2p/{}/p2p-circuit", PeerId::random())
            .parse()
            .unwrap();
        let direct: Multiaddr = "/ip4/5.6.7.8/udp/2/quic-v1".parse().unwrap();
        assert!(c.established(peer, ConnectionId::new_unchecked(1), relayed, true, now));
        assert!(c.list(|_| None)[0].relayed);
        assert!(!c.established(peer, ConnectionId::new_unchecked(2), direct, false, now));
        assert!(!c.list(|_| None)[0].relayed);
        assert!(!c.closed(peer, ConnectionId::new_unchecked(2)));
        assert!(c.closed(peer, ConnectionId::new_unchecked(1)));
        assert!(c.list(|_| None).is_empty());
    }

    #[test]
    fn a_circuit_address_names_its_relay_and_a_direct_one_none() {
        let relay = PeerId::random();
        let target = PeerId::random();
        let circuit: Multiaddr = format!("/ip4/1.2.3.4/tcp/1/p2p/{relay}/p2p-circuit/p2p/{target}")
            .parse()
            .unwrap();
        assert!(is_relayed(&circuit));
        assert_eq!(relay_of(&circuit), Some(relay));
        assert_eq!(peer_of(&circuit), Some(target));
        let direct: Multiaddr = "/ip4/5.6.7.8/udp/2/quic-v1".parse().unwrap();
        assert!(!is_relayed(&direct));
        assert_eq!(relay_of(&direct), None);
        assert_eq!(peer_of(&direct), None);
    }
}
