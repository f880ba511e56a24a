//! Reachability, free of I/O: how this node stays reachable and reaches the
//! members of its rooms. It owns the connections by peer, the bootstrap peers
//! it keeps dialled, the relays it uses (reservations, rendezvous
//! registration and discovery per room), AutoNAT's verdict, hole punches under
//! way, the addresses of discovered members, redials of lost members, and
//! fresh circuits opened before a relay ends the old one.
//!
//! The event loop feeds it what libp2p reported, with the time, and applies
//! the [`Action`]s it queues (in one place); [`Reachability::poll_at`] says
//! when it next wants [`Reachability::poll`]. Nothing here touches a socket,
//! so every rule is unit-tested below.

mod action;
mod bootstrap;
mod connections;
mod members;
mod relays;
mod scope;

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use libp2p::core::transport::ListenerId;
use libp2p::multiaddr::Protocol;
use libp2p::rendezvous::Namespace;
use libp2p::swarm::ConnectionId;
use libp2p::{Multiaddr, PeerId};
use palaver_proto::RoomName;

use crate::api::{Event, NatStatus, PeerStatus, RelayStatus};
pub use action::{Action, Dial, DialFailure, DialPurpose};
use bootstrap::Bootstrap;
pub use connections::peer_of;
use connections::{Connections, age};
use members::Members;
pub use relays::REGISTRATION_TTL;
use relays::Relays;

/// How long a relayed connection may wait for its upgrade before the hole
/// punch is reported failed.
pub const PUNCH_TIMEOUT: Duration = Duration::from_secs(30);
/// Most hole punches followed at once (each is one relayed peer).
const MAX_PUNCHING: usize = 1024;
/// Most listen addresses kept (relays report circuit addresses too).
const MAX_LISTEN_ADDRS: usize = 64;
/// Most external address candidates remembered (what peers said they saw).
const MAX_CANDIDATES: usize = 32;

/// See the module docs.
#[derive(Debug)]
pub struct Reachability {
    local: PeerId,
    connections: Connections,
    bootstrap: Bootstrap,
    relays: Relays,
    nat: NatStatus,
    /// The rooms this node is in: registered and looked up at every relay.
    rooms: BTreeSet<RoomName>,
    /// Peers with only a relayed connection, since when.
    punching: HashMap<PeerId, Instant>,
    members: Members,
    /// Where this node listens, circuits at relays included.
    listen_addrs: Vec<Multiaddr>,
    /// Addresses of this node that peers said they saw, newest last.
    candidates: std::collections::VecDeque<Multiaddr>,
    actions: Vec<Action>,
}

impl Reachability {
    pub fn new(local: PeerId, bootstrap: &[Multiaddr], now: Instant) -> Self {
        Self {
            local,
            connections: Connections::default(),
            bootstrap: Bootstrap::new(bootstrap, local, now),
            relays: Relays::default(),
            nat: NatStatus::Unknown,
            rooms: BTreeSet::new(),
            punching: HashMap::new(),
            members: Members::default(),
            listen_addrs: Vec::new(),
            candidates: std::collections::VecDeque::new(),
            actions: Vec::new(),
        }
    }

    /// The actions queued since the last call, in order.
    pub fn take_actions(&mut self) -> Vec<Action> {
        std::mem::take(&mut self.actions)
    }

    // ---- what is known ----

    pub fn is_connected(&self, peer: &PeerId) -> bool {
        self.connections.is_connected(peer)
    }

    pub fn peers(&self, score_of: impl Fn(&PeerId) -> Option<f64>) -> Vec<PeerStatus> {
        self.connections.list(score_of)
    }

    pub fn relays(&self) -> Vec<RelayStatus> {
        self.relays.info()
    }

    pub fn nat(&self) -> NatStatus {
        self.nat
    }

    /// Where this node listens, each address ending in its `/p2p/…`.
    pub fn listen_addrs(&self) -> Vec<Multiaddr> {
        self.listen_addrs.iter().map(|a| self.with_p2p(a)).collect()
    }

    /// `addr`, ending in this node's `/p2p/…`.
    pub fn with_p2p(&self, addr: &Multiaddr) -> Multiaddr {
        if peer_of(addr).is_some() {
            addr.clone()
        } else {
            addr.clone().with(Protocol::P2p(self.local))
        }
    }

    // ---- connections ----

    /// A connection opened. A relayed one starts a hole punch; a direct one
    /// to a peer being punched to ends it successfully. Returns whether it
    /// is the peer's first connection.
    pub fn connected(
        &mut self,
        peer: PeerId,
        id: ConnectionId,
        addr: Multiaddr,
        relayed: bool,
        now: Instant,
    ) -> bool {
        if relayed {
            if !self.connections.has_direct(&peer) && self.punching.len() < MAX_PUNCHING {
                self.punching.entry(peer).or_insert(now);
            }
        } else {
            self.punch_outcome(peer, Ok(()));
        }
        self.members.connected(&peer);
        self.bootstrap.established(id, peer, now);
        let first = self
            .connections
            .established(peer, id, addr.clone(), relayed, now);
        self.actions.push(Action::Emit(Event::PeerConnected {
            peer,
            addr,
            relayed,
        }));
        first
    }

    /// A connection closed. When it was the peer's last, the peer is
    /// reported gone, a bootstrap peer is dialled again after its backoff,
    /// and a room member (`is_member`) after [`REDIAL_DELAY`] (a relay
    /// circuit that reached its limit ends this way). Returns whether the
    /// peer is gone.
    pub fn disconnected(
        &mut self,
        peer: PeerId,
        id: ConnectionId,
        is_member: bool,
        now: Instant,
    ) -> bool {
        if !self.connections.closed(peer, id) {
            return false;
        }
        self.actions
            .push(Action::Emit(Event::PeerDisconnected { peer }));
        self.bootstrap.disconnected(peer, now);
        self.punching.remove(&peer);
        if is_member {
            self.members.lost(peer, now);
        }
        true
    }

    /// A dial was started (the swarm took it): a bootstrap dial is followed.
    pub fn dialing(&mut self, purpose: &DialPurpose, id: ConnectionId) {
        if let DialPurpose::Bootstrap(addr) = purpose {
            self.bootstrap.dialing(addr, id);
        }
    }

    /// A dial could not start (`id` is `None`) or failed.
    pub fn dial_failed(&mut self, failed: DialFailure, now: Instant) {
        let addr = match failed {
            DialFailure::Deferred(DialPurpose::Bootstrap(addr)) => {
                return self.bootstrap.deferred(&addr, now);
            }
            DialFailure::NotStarted(DialPurpose::Bootstrap(addr)) => addr,
            DialFailure::NotStarted(_) | DialFailure::Deferred(_) => return,
            DialFailure::Failed(id) => match self.bootstrap.addr_of(id) {
                Some(addr) => addr,
                None => return,
            },
        };
        tracing::info!(%addr, "bootstrap peer unreachable; will retry");
        self.bootstrap.dial_failed(&addr, now);
    }

    // ---- relays ----

    /// identify told what `peer` speaks: a bootstrap peer that offers circuit
    /// relay and rendezvous becomes one of this node's relays.
    pub fn identified(&mut self, peer: PeerId, offers_relay: bool, now: Instant) {
        let Some(addr) = self.bootstrap.addr_of_peer(&peer) else {
            return;
        };
        if !offers_relay {
            return;
        }
        let addr = if peer_of(&addr).is_some() {
            addr
        } else {
            addr.with(Protocol::P2p(peer))
        };
        tracing::info!(relay = %addr, "using relay");
        self.actions.push(Action::AddAutonatServer {
            peer,
            addr: addr.clone(),
        });
        self.relays.identified(peer, addr, &self.rooms, now);
    }

    /// A relay accepted a reservation; circuits through it end after `limit`.
    pub fn reservation_accepted(&mut self, relay: PeerId, limit: Option<Duration>) {
        if let Some(limit) = limit {
            self.members.circuit_limit(relay, limit);
        }
    }

    /// The listener asked for by [`Action::Reserve`] at `relay`.
    pub fn reserving(&mut self, relay: &PeerId, listener: ListenerId) {
        self.relays.reserving(relay, listener);
    }

    /// A listener reported an address. A reservation that became active
    /// makes the node reachable through that relay.
    pub fn new_listen_addr(&mut self, listener: ListenerId, addr: Multiaddr, now: Instant) {
        if !self.listen_addrs.contains(&addr) && self.listen_addrs.len() < MAX_LISTEN_ADDRS {
            self.listen_addrs.push(addr.clone());
        }
        self.reservation_listening(listener, &addr, now);
    }

    pub fn expired_listen_addr(&mut self, addr: &Multiaddr) {
        self.listen_addrs.retain(|a| a != addr);
    }

    fn reservation_listening(&mut self, listener: ListenerId, addr: &Multiaddr, now: Instant) {
        let Some((relay, newly)) = self.relays.reservation_active(listener) else {
            return;
        };
        tracing::info!(%relay, %addr, "reachable through relay");
        self.actions.push(Action::AddExternalAddr(addr.clone()));
        self.relays.addresses_changed(now);
        // One event per reservation: renewals and further addresses are no news.
        if newly {
            self.actions.push(Action::Emit(Event::Reservation {
                relay,
                addr: Some(addr.clone()),
                active: true,
            }));
        }
    }

    /// A listener closed: a reservation's end is reported, and it is asked
    /// for again later.
    pub fn listener_closed(&mut self, listener: ListenerId, addrs: &[Multiaddr], now: Instant) {
        self.listen_addrs.retain(|a| !addrs.contains(a));
        let Some((relay, was_active)) = self.relays.reservation_closed(listener, now) else {
            return;
        };
        tracing::info!(%relay, "relay reservation ended");
        for a in addrs {
            self.actions.push(Action::RemoveExternalAddr(a.clone()));
        }
        if was_active {
            self.actions.push(Action::Emit(Event::Reservation {
                relay,
                addr: addrs.first().cloned(),
                active: false,
            }));
        }
    }

    /// An external address was confirmed: registrations carry addresses, so
    /// they are made again.
    pub fn addresses_changed(&mut self, now: Instant) {
        self.relays.addresses_changed(now);
    }

    /// A peer said it sees this node at `addr` (identify's observed address).
    pub fn external_candidate(&mut self, addr: Multiaddr) {
        let addr = without_p2p(&addr);
        if !self.candidates.contains(&addr) {
            if self.candidates.len() >= MAX_CANDIDATES {
                self.candidates.pop_front();
            }
            self.candidates.push_back(addr);
        }
    }

    /// `addr` was confirmed as this node's external address. A confirmation
    /// names whatever address its AutoNAT server chose to name, so it is
    /// kept only if this node listens there or a peer saw it there (a
    /// candidate); any other is withdrawn at once, never advertised.
    pub fn external_confirmed(&mut self, addr: &Multiaddr, now: Instant) {
        let bare = without_p2p(addr);
        let known = self.candidates.contains(&bare)
            || self.listen_addrs.iter().any(|a| without_p2p(a) == bare);
        if known {
            self.addresses_changed(now);
        } else {
            tracing::warn!(%addr, "an external address this node never saw was confirmed; withdrawn");
            self.actions.push(Action::RemoveExternalAddr(addr.clone()));
        }
    }

    /// AutoNAT's verdict. Reachable directly, the node needs no reservation.
    pub fn nat_status(&mut self, nat: NatStatus) {
        self.nat = nat;
        if nat == NatStatus::Public {
            for listener in self.relays.listeners() {
                self.actions.push(Action::RemoveListener(listener));
            }
        }
    }

    // ---- rooms and members ----

    pub fn room_joined(&mut self, room: &RoomName, now: Instant) {
        self.rooms.insert(room.clone());
        self.relays.room_joined(room, now);
    }

    pub fn room_left(&mut self, room: &RoomName) {
        self.rooms.remove(room);
        self.relays.room_left(room);
        for relay in self.connected_relays() {
            self.actions.push(Action::Unregister {
                relay,
                namespace: self.relays.ns(room),
            });
        }
        self.relays.set_private(room, None);
    }

    /// A private room registers under `ns` (derived from its current key)
    /// from now on: the old registration goes, the new one is made now.
    pub fn private_namespace(&mut self, room: &RoomName, ns: &str, now: Instant) {
        let Ok(ns) = Namespace::new(ns.to_owned()) else {
            return;
        };
        if self.relays.ns(room) == ns {
            return;
        }
        let joined = self.rooms.contains(room);
        if joined {
            self.room_left(room);
        }
        self.relays.set_private(room, Some(ns));
        if joined {
            self.room_joined(room, now);
        }
    }

    /// `relay` registered this node under `ns` for `ttl` seconds.
    pub fn registered(&mut self, relay: &PeerId, ns: &Namespace, ttl: u64, now: Instant) {
        self.relays.registered(relay, ns, ttl, now);
    }

    /// Room members found at `relay`: remember how to reach them, and dial
    /// those not connected, at addresses that reach as far as the relay's.
    /// `is_member` tells who is in a room with this node.
    pub fn discovered(
        &mut self,
        relay: &PeerId,
        found: impl IntoIterator<Item = (PeerId, Vec<Multiaddr>)>,
        is_member: impl Fn(&PeerId) -> bool,
        now: Instant,
    ) {
        let relay_scope = self
            .connections
            .direct_addr(relay)
            .map_or(scope::Scope::Public, |a| scope::scope_of(&a));
        let dials = self.members.discovered(
            self.local,
            found,
            &self.connections,
            is_member,
            relay_scope,
            now,
        );
        self.actions.extend(dials.into_iter().map(Action::Dial));
    }

    /// Peers mDNS found on the local network.
    pub fn found_on_lan(&mut self, found: impl IntoIterator<Item = (PeerId, Multiaddr)>) {
        let dials = self
            .members
            .found_on_lan(self.local, found, &self.connections);
        self.actions.extend(dials.into_iter().map(Action::Dial));
    }

    // ---- hole punching ----

    /// DCUtR's outcome for `peer`.
    pub fn hole_punched(&mut self, peer: PeerId, result: Result<(), String>) {
        self.punch_outcome(peer, result);
    }

    /// Reports the outcome of a hole punch once.
    fn punch_outcome(&mut self, peer: PeerId, result: Result<(), String>) {
        if self.punching.remove(&peer).is_none() {
            return;
        }
        tracing::info!(%peer, ?result, "hole punch");
        self.actions
            .push(Action::Emit(Event::HolePunch { peer, result }));
    }

    // ---- time ----

    /// Everything due by `now`: bootstrap dials; at each connected relay a
    /// reservation, registrations and discoveries; hole punches given up;
    /// fresh circuits; redials of lost members.
    pub fn poll(&mut self, now: Instant, is_member: impl Fn(&PeerId) -> bool) {
        let connections = &self.connections;
        for addr in self.bootstrap.due(now, |p| connections.is_connected(p)) {
            self.actions.push(Action::Dial(Dial {
                peer: peer_of(&addr),
                addrs: vec![addr.clone()],
                purpose: DialPurpose::Bootstrap(addr),
            }));
        }
        self.poll_relays(now);
        let stale: Vec<PeerId> = self
            .punching
            .iter()
            .filter(|(_, since)| age(now, **since) >= PUNCH_TIMEOUT)
            .map(|(p, _)| *p)
            .collect();
        for peer in stale {
            let why = format!("no direct connection within {}s", PUNCH_TIMEOUT.as_secs());
            self.punch_outcome(peer, Err(why));
        }
        let dials = self.members.poll(now, &self.connections, is_member);
        self.actions.extend(dials.into_iter().map(Action::Dial));
    }

    /// The relays this node is connected to now.
    fn connected_relays(&self) -> Vec<PeerId> {
        self.relays
            .peers()
            .filter(|p| self.connections.is_connected(p))
            .copied()
            .collect()
    }

    fn poll_relays(&mut self, now: Instant) {
        let public = self.nat == NatStatus::Public;
        for relay in self.connected_relays() {
            let due = self.relays.due(&relay, &self.rooms, public, now);
            if let Some(circuit) = due.reserve {
                self.actions.push(Action::Reserve { relay, circuit });
            }
            for room in due.register {
                self.actions.push(Action::Register {
                    relay,
                    namespace: self.relays.ns(&room),
                });
            }
            for room in due.discover {
                self.actions.push(Action::Discover {
                    relay,
                    namespace: self.relays.ns(&room),
                });
            }
        }
    }

    /// When [`Self::poll`] next has something to do, if ever without new input.
    pub fn poll_at(&self, is_member: impl Fn(&PeerId) -> bool) -> Option<Instant> {
        let public = self.nat == NatStatus::Public;
        let connections = &self.connections;
        let bootstrap = self.bootstrap.next_due(|p| connections.is_connected(p));
        let relays = self
            .relays
            .peers()
            .filter(|p| connections.is_connected(p))
            .filter_map(|p| self.relays.next_due(p, public))
            .min();
        let punches = self.punching.values().map(|t| *t + PUNCH_TIMEOUT).min();
        let members = self.members.poll_at(connections, is_member);
        [bootstrap, relays, punches, members]
            .into_iter()
            .flatten()
            .min()
    }
}

#[cfg(test)]
mod tests;

/// `addr` without a trailing `/p2p/…`.
fn without_p2p(addr: &Multiaddr) -> Multiaddr {
    let mut addr = addr.clone();
    if matches!(addr.iter().last(), Some(Protocol::P2p(_))) {
        addr.pop();
    }
    addr
}
