//! How to reach the members of this node's rooms: the addresses rendezvous
//! and mDNS told, members lost and dialled again, and fresh circuits opened
//! before a relay ends the old one at its limit.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, PeerId};

use super::action::{Dial, DialPurpose};
use super::connections::{Connections, age, is_relayed};
use super::scope::{Scope, may_dial};

/// Most addresses remembered (and dialled) per discovered peer.
const MAX_ADDRS_PER_PEER: usize = 4;
/// Most registrations read from one discovery answer.
pub const MAX_READ_PER_DISCOVERY: usize = 64;
/// Most members dialled from one discovery answer: a relay handing out made-up
/// members at someone else's address cannot turn every member into a flood
/// of dials to it.
pub const MAX_DIALS_PER_DISCOVERY: usize = 16;
/// Most members dialled because a discovery named them, a minute, over all
/// rooms and relays.
pub const MAX_DISCOVERY_DIALS_PER_MINUTE: u32 = 128;
/// Most peers whose discovered addresses are remembered, for redialling.
const MAX_KNOWN_PEERS: usize = 4096;
/// Share of a circuit's duration limit after which a fresh one is opened.
const CIRCUIT_REFRESH_AT: f64 = 0.7;
/// Longest circuit limit believed from a relay (a lying relay cannot make
/// the arithmetic overflow, nor postpone refreshes for ever).
const MAX_CIRCUIT_LIMIT: Duration = Duration::from_secs(24 * 3600);
/// Shortest circuit limit believed: a relay saying 0 would have every
/// member's circuit replaced on every wake-up.
const MIN_CIRCUIT_LIMIT: Duration = Duration::from_secs(10);
/// Wait before dialling a lost room member again.
pub const REDIAL_DELAY: Duration = Duration::from_secs(1);
/// Most peers remembered as seen by mDNS.
const MAX_MDNS_SEEN: usize = 1024;
/// Most peers dialled from one mDNS announcement batch.
const MAX_LAN_PEERS: usize = 64;

/// See the module docs.
#[derive(Debug, Default)]
pub struct Members {
    /// Where discovered room members can be reached.
    known_addrs: HashMap<PeerId, Vec<Multiaddr>>,
    /// Lost room members to dial again, and when.
    redial_at: HashMap<PeerId, Instant>,
    /// How long circuits through each relay may last.
    circuit_limits: HashMap<PeerId, Duration>,
    /// When a fresh circuit to each peer was last opened.
    circuit_refreshed: HashMap<PeerId, Instant>,
    mdns_seen: HashSet<PeerId>,
    /// Discovery dials made in the current minute, and when it began.
    discovery_dials: (Option<Instant>, u32),
}

impl Members {
    /// Members found at a relay whose addresses reach as far as `relay`:
    /// remember how to reach them, and dial those not connected (up to
    /// [`MAX_DIALS_PER_DISCOVERY`], and [`MAX_DISCOVERY_DIALS_PER_MINUTE`] in
    /// all). Who is in a room with this node (`is_member`) is the last
    /// forgotten when too many are known.
    pub fn discovered(
        &mut self,
        local: PeerId,
        found: impl IntoIterator<Item = (PeerId, Vec<Multiaddr>)>,
        connections: &Connections,
        is_member: impl Fn(&PeerId) -> bool,
        relay: Scope,
        now: Instant,
    ) -> Vec<Dial> {
        let mut dials = Vec::new();
        if self
            .discovery_dials
            .0
            .is_none_or(|start| age(now, start) >= Duration::from_secs(60))
        {
            self.discovery_dials = (Some(now), 0);
        }
        for (peer, addrs) in found.into_iter().take(MAX_READ_PER_DISCOVERY) {
            let mut addrs: Vec<Multiaddr> =
                addrs.into_iter().filter(|a| may_dial(a, relay)).collect();
            if peer == local || addrs.is_empty() {
                continue;
            }
            addrs.sort_by_key(is_relayed);
            addrs.dedup();
            addrs.truncate(MAX_ADDRS_PER_PEER);
            if self.known_addrs.len() >= MAX_KNOWN_PEERS && !self.known_addrs.contains_key(&peer) {
                let victim = self
                    .known_addrs
                    .keys()
                    .find(|p| !is_member(p))
                    .or_else(|| self.known_addrs.keys().next())
                    .copied();
                if let Some(v) = victim {
                    self.known_addrs.remove(&v);
                }
            }
            self.known_addrs.insert(peer, addrs.clone());
            if !connections.is_connected(&peer)
                && dials.len() < MAX_DIALS_PER_DISCOVERY
                && self.discovery_dials.1 < MAX_DISCOVERY_DIALS_PER_MINUTE
            {
                tracing::debug!(%peer, ?addrs, "dialling a discovered member");
                self.discovery_dials.1 += 1;
                dials.push(member_dial(peer, addrs));
            }
        }
        dials
    }

    /// Peers mDNS found on the local network. Both sides find each other:
    /// the smaller peer id dials, the other only if a later announcement
    /// finds them still apart.
    pub fn found_on_lan(
        &mut self,
        local: PeerId,
        found: impl IntoIterator<Item = (PeerId, Multiaddr)>,
        connections: &Connections,
    ) -> Vec<Dial> {
        let mut by_peer: HashMap<PeerId, Vec<Multiaddr>> = HashMap::new();
        for (peer, addr) in found {
            if peer != local && !connections.is_connected(&peer) && by_peer.len() < MAX_LAN_PEERS {
                by_peer.entry(peer).or_default().push(addr);
            }
        }
        let mut dials = Vec::new();
        for (peer, mut addrs) in by_peer {
            let first_sighting = self.mdns_seen.insert(peer);
            if self.mdns_seen.len() > MAX_MDNS_SEEN {
                self.mdns_seen.clear();
            }
            if first_sighting && local > peer {
                continue;
            }
            // QUIC first.
            addrs.sort_by_key(|a| !a.iter().any(|p| matches!(p, Protocol::QuicV1)));
            addrs.dedup();
            addrs.truncate(MAX_ADDRS_PER_PEER);
            tracing::info!(%peer, "found on the local network");
            dials.push(Dial {
                peer: Some(peer),
                addrs,
                purpose: DialPurpose::Member,
            });
        }
        dials
    }

    /// A room member's last connection closed: dial it again shortly (a
    /// relay circuit that reached its limit ends this way).
    pub fn lost(&mut self, peer: PeerId, now: Instant) {
        if self.known_addrs.contains_key(&peer) {
            self.redial_at.insert(peer, now + REDIAL_DELAY);
        }
    }

    /// A connection to `peer` opened: no redial is needed.
    pub fn connected(&mut self, peer: &PeerId) {
        self.redial_at.remove(peer);
    }

    /// Circuits through `relay` end after `limit`.
    pub fn circuit_limit(&mut self, relay: PeerId, limit: Duration) {
        self.circuit_limits
            .insert(relay, limit.clamp(MIN_CIRCUIT_LIMIT, MAX_CIRCUIT_LIMIT));
    }

    /// The dials due by `now`: fresh circuits to members whose circuit
    /// nears its relay's limit, and lost members.
    pub fn poll(
        &mut self,
        now: Instant,
        connections: &Connections,
        is_member: impl Fn(&PeerId) -> bool,
    ) -> Vec<Dial> {
        let mut dials = Vec::new();
        for (peer, opened, relay) in connections.relayed_only() {
            let Some(limit) = relay.and_then(|r| self.circuit_limits.get(&r)) else {
                continue;
            };
            if age(now, opened) < limit.mul_f64(CIRCUIT_REFRESH_AT) || !is_member(&peer) {
                continue;
            }
            if self
                .circuit_refreshed
                .get(&peer)
                .is_some_and(|at| age(now, *at) < limit.mul_f64(0.5))
            {
                continue;
            }
            let circuits = self.circuit_addrs(&peer);
            if !circuits.is_empty() {
                tracing::info!(%peer, "opening a fresh circuit before the old one ends");
                dials.push(Dial {
                    peer: Some(peer),
                    addrs: circuits,
                    purpose: DialPurpose::FreshCircuit,
                });
            }
        }
        if self.circuit_refreshed.len() > MAX_KNOWN_PEERS {
            self.circuit_refreshed.clear();
        }
        for dial in &dials {
            if let Some(peer) = dial.peer {
                self.circuit_refreshed.insert(peer, now);
            }
        }
        let due: Vec<PeerId> = self
            .redial_at
            .iter()
            .filter(|(_, at)| **at <= now)
            .map(|(p, _)| *p)
            .collect();
        for peer in due {
            self.redial_at.remove(&peer);
            if let Some(addrs) = self.known_addrs.get(&peer).cloned()
                && !connections.is_connected(&peer)
            {
                tracing::info!(%peer, "dialling a lost room member again");
                dials.push(member_dial(peer, addrs));
            }
        }
        dials
    }

    /// When [`Self::poll`] next has a dial to make, if ever without new input.
    pub fn poll_at(
        &self,
        connections: &Connections,
        is_member: impl Fn(&PeerId) -> bool,
    ) -> Option<Instant> {
        let redials = self.redial_at.values().copied().min();
        let circuits = connections
            .relayed_only()
            .filter(|(peer, _, _)| is_member(peer) && !self.circuit_addrs(peer).is_empty())
            .filter_map(|(peer, opened, relay)| {
                let limit = self.circuit_limits.get(&relay?)?;
                let at = opened + limit.mul_f64(CIRCUIT_REFRESH_AT);
                let again = self
                    .circuit_refreshed
                    .get(&peer)
                    .map(|t| *t + limit.mul_f64(0.5));
                Some(again.map_or(at, |a| a.max(at)))
            })
            .min();
        redials.into_iter().chain(circuits).min()
    }

    fn circuit_addrs(&self, peer: &PeerId) -> Vec<Multiaddr> {
        self.known_addrs
            .get(peer)
            .map(|addrs| addrs.iter().filter(|a| is_relayed(a)).cloned().collect())
            .unwrap_or_default()
    }
}

/// A dial to a member at its known addresses, direct ones first.
fn member_dial(peer: PeerId, mut addrs: Vec<Multiaddr>) -> Dial {
    addrs.sort_by_key(is_relayed);
    Dial {
        peer: Some(peer),
        addrs,
        purpose: DialPurpose::Member,
    }
}
