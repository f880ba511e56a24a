//! Getting through NATs: relays found among the bootstrap peers (identify),
//! reservations on them, rendezvous registration and discovery per room,
//! AutoNAT's verdict, and DCUtR hole punching from relayed to direct.

use std::time::{Duration, Instant};

use libp2p::core::transport::ListenerId;
use libp2p::multiaddr::Protocol;
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::{Multiaddr, PeerId, autonat, dcutr, identify, relay, rendezvous};
use palaver_proto::line::Event;

use super::super::connections::{is_relayed, peer_of};
use super::super::relays::{
    DISCOVER_INTERVAL, DISCOVER_LIMIT, HOP_PROTOCOL, REGISTRATION_TTL, RENDEZVOUS_PROTOCOL, RETRY,
    Reservation, namespace,
};
use super::EventLoop;

/// How long a relayed connection may wait for its upgrade before the hole
/// punch is reported failed.
pub(super) const PUNCH_TIMEOUT: Duration = Duration::from_secs(30);
/// Most addresses remembered per discovered peer.
const MAX_ADDRS_PER_PEER: usize = 8;
/// Most members dialled from one discovery answer.
const MAX_DIALS_PER_DISCOVERY: usize = 64;
/// Most peers whose discovered addresses are remembered, for redialling.
const MAX_KNOWN_PEERS: usize = 4096;
/// Share of a circuit's duration limit after which a fresh one is opened.
const CIRCUIT_REFRESH_AT: f64 = 0.7;
/// Wait before dialling a lost room member again.
const REDIAL_DELAY: Duration = Duration::from_secs(1);

impl EventLoop {
    pub(super) fn on_identify(&mut self, event: identify::Event) {
        let identify::Event::Received { peer_id, info, .. } = event else {
            return;
        };
        tracing::debug!(%peer_id, agent = %info.agent_version, observed = %info.observed_addr, "identified");
        let is_relay =
            info.protocols.contains(&HOP_PROTOCOL) && info.protocols.contains(&RENDEZVOUS_PROTOCOL);
        let Some(addr) = self.bootstrap.addr_of_peer(&peer_id) else {
            return;
        };
        if !is_relay {
            return;
        }
        let addr = if peer_of(&addr).is_some() {
            addr
        } else {
            addr.with(Protocol::P2p(peer_id))
        };
        tracing::info!(relay = %addr, "using relay");
        self.swarm
            .behaviour_mut()
            .autonat
            .add_server(peer_id, Some(addr.clone()));
        let rooms: Vec<_> = self.rooms.joined().cloned().collect();
        self.relays
            .identified(peer_id, addr, rooms.into_iter(), Instant::now());
        self.nat_tick(Instant::now());
    }

    pub(super) fn on_relay_client(&mut self, event: relay::client::Event) {
        match event {
            relay::client::Event::ReservationReqAccepted {
                relay_peer_id,
                renewal,
                limit,
            } => {
                tracing::info!(relay = %relay_peer_id, renewal, ?limit, "relay reservation accepted");
                // Circuits through this relay end after the same limit.
                if let Some(d) = limit.and_then(|l| l.duration()) {
                    self.circuit_limits.insert(relay_peer_id, d);
                }
            }
            other => tracing::debug!(?other, "relay client"),
        }
    }

    pub(super) fn on_rendezvous(&mut self, event: rendezvous::client::Event) {
        let now = Instant::now();
        match event {
            rendezvous::client::Event::Registered {
                rendezvous_node,
                ttl,
                namespace: ns,
            } => {
                tracing::debug!(relay = %rendezvous_node, %ns, ttl, "registered");
                if let Some(relay) = self.relays.get_mut(&rendezvous_node) {
                    for (room, at) in relay.register_at.iter_mut() {
                        if namespace(room) == ns {
                            // Now findable: look for those who registered first.
                            relay.discover_at = now;
                            *at = now + Duration::from_secs(ttl.max(2) / 2);
                        }
                    }
                }
            }
            rendezvous::client::Event::RegisterFailed {
                rendezvous_node,
                namespace: ns,
                error,
            } => {
                tracing::info!(relay = %rendezvous_node, %ns, ?error, "registration refused; will retry");
            }
            rendezvous::client::Event::Discovered { registrations, .. } => {
                for registration in registrations.into_iter().take(MAX_DIALS_PER_DISCOVERY) {
                    let peer = registration.record.peer_id();
                    let addrs = registration.record.addresses().to_vec();
                    self.discovered(peer, addrs);
                }
            }
            rendezvous::client::Event::DiscoverFailed {
                rendezvous_node,
                error,
                ..
            } => {
                tracing::info!(relay = %rendezvous_node, ?error, "discovery failed");
            }
            rendezvous::client::Event::Expired { .. } => {}
        }
    }

    /// A room member found at a relay: remember how to reach it, and dial it.
    fn discovered(&mut self, peer: PeerId, mut addrs: Vec<Multiaddr>) {
        if peer == self.local || addrs.is_empty() {
            return;
        }
        addrs.truncate(MAX_ADDRS_PER_PEER);
        if self.known_addrs.len() >= MAX_KNOWN_PEERS && !self.known_addrs.contains_key(&peer) {
            // Forget someone not in any room with us, or else anyone.
            let victim = self
                .known_addrs
                .keys()
                .find(|p| !self.rooms.is_member_anywhere(p))
                .or_else(|| self.known_addrs.keys().next())
                .copied();
            if let Some(v) = victim {
                self.known_addrs.remove(&v);
            }
        }
        self.known_addrs.insert(peer, addrs.clone());
        if !self.swarm.is_connected(&peer) {
            tracing::debug!(%peer, ?addrs, "dialling a discovered member");
            self.dial_known(peer, addrs);
        }
    }

    /// Dials a peer at its known addresses, direct ones first.
    fn dial_known(&mut self, peer: PeerId, mut addrs: Vec<Multiaddr>) {
        addrs.sort_by_key(super::super::connections::is_relayed);
        let opts = DialOpts::peer_id(peer)
            .addresses(addrs)
            .condition(PeerCondition::DisconnectedAndNotDialing)
            .build();
        if let Err(e) = self.swarm.dial(opts) {
            tracing::debug!(%peer, "cannot dial: {e}");
        }
    }

    pub(super) fn on_dcutr(&mut self, event: dcutr::Event) {
        let peer = event.remote_peer_id;
        match event.result {
            Ok(_) => self.punch_outcome(peer, Ok(())),
            Err(e) => self.punch_outcome(peer, Err(e.to_string())),
        }
    }

    pub(super) fn on_autonat(&mut self, event: autonat::Event) {
        if let autonat::Event::StatusChanged { old, new } = event {
            tracing::info!(?old, ?new, "NAT status");
            if new.is_public() {
                // Reachable directly: no reservation needed any more.
                let listeners: Vec<ListenerId> = self
                    .relays
                    .iter_mut()
                    .filter_map(|(_, r)| match r.reservation {
                        Reservation::Active(l) | Reservation::Pending(l) => Some(l),
                        Reservation::None { .. } => None,
                    })
                    .collect();
                for l in listeners {
                    self.swarm.remove_listener(l);
                }
            }
        }
    }

    /// A connection opened: a relayed one starts a hole punch, a direct one
    /// to a peer being punched to ends it successfully.
    pub(super) fn punch_on_connect(&mut self, peer: PeerId, relayed: bool) {
        if relayed {
            if !self.connections.has_direct(&peer) {
                self.punching.entry(peer).or_insert_with(Instant::now);
            }
        } else {
            self.punch_outcome(peer, Ok(()));
        }
    }

    /// Reports the outcome of a hole punch once.
    fn punch_outcome(&mut self, peer: PeerId, outcome: Result<(), String>) {
        if self.punching.remove(&peer).is_none() {
            return;
        }
        tracing::info!(%peer, ?outcome, "hole punch");
        let (ok, error) = match outcome {
            Ok(()) => (true, None),
            Err(e) => (false, Some(e)),
        };
        self.emit(Event::HolePunch {
            peer_id: peer.to_string(),
            ok,
            error,
        });
    }

    /// The last connection to a peer closed. A room member is dialled again
    /// (a relay circuit that reached its limit ends this way).
    pub(super) fn nat_peer_lost(&mut self, peer: PeerId, now: Instant) {
        self.punching.remove(&peer);
        if self.known_addrs.contains_key(&peer) && self.rooms.is_member_anywhere(&peer) {
            self.redial_at.insert(peer, now + REDIAL_DELAY);
        }
    }

    /// A new listen address: a reservation that became active makes the node
    /// reachable through that relay.
    pub(super) fn nat_listen_addr(&mut self, listener: ListenerId, address: &Multiaddr) {
        let Some((relay, r)) = self.relays.by_listener(listener) else {
            return;
        };
        tracing::info!(%relay, %address, "reachable through relay");
        let newly_active = !matches!(r.reservation, Reservation::Active(_));
        r.reservation = Reservation::Active(listener);
        let relay = relay.to_string();
        self.swarm.add_external_address(address.clone());
        self.relays.addresses_changed(Instant::now());
        // One event per reservation: renewals and further addresses of the relay are no news.
        if newly_active {
            self.emit(Event::Reservation {
                relay,
                addr: address.to_string(),
                active: true,
            });
        }
    }

    pub(super) fn nat_listener_closed(&mut self, listener: ListenerId, addresses: &[Multiaddr]) {
        let Some((relay, r)) = self.relays.by_listener(listener) else {
            return;
        };
        tracing::info!(%relay, "relay reservation ended");
        let was_active = matches!(r.reservation, Reservation::Active(_));
        r.reservation = Reservation::None {
            retry_at: Instant::now() + RETRY,
        };
        let relay = relay.to_string();
        for a in addresses {
            self.swarm.remove_external_address(a);
        }
        if was_active {
            let addr = addresses.first().map(|a| a.to_string()).unwrap_or_default();
            self.emit(Event::Reservation {
                relay,
                addr,
                active: false,
            });
        }
    }

    /// Everything NAT traversal does on time: reserve, register, discover,
    /// give up on stale hole punches, redial lost members.
    pub(super) fn nat_tick(&mut self, now: Instant) {
        let public = self.swarm.behaviour().autonat.nat_status().is_public();
        let joined: Vec<_> = self.rooms.joined().cloned().collect();
        for peer in self.relays.peers() {
            if !self.swarm.is_connected(&peer) {
                continue;
            }
            let Some(relay) = self.relays.get_mut(&peer) else {
                continue;
            };
            if let Reservation::None { retry_at } = relay.reservation
                && !public
                && retry_at <= now
            {
                let circuit = relay.addr.clone().with(Protocol::P2pCircuit);
                relay.reservation = match self.swarm.listen_on(circuit) {
                    Ok(listener) => Reservation::Pending(listener),
                    Err(e) => {
                        tracing::info!(%peer, "cannot ask for a reservation: {e}");
                        Reservation::None {
                            retry_at: now + RETRY,
                        }
                    }
                };
            }
            let Some(relay) = self.relays.get_mut(&peer) else {
                continue;
            };
            let due: Vec<_> = relay
                .register_at
                .iter()
                .filter(|(_, at)| **at <= now)
                .map(|(r, _)| r.clone())
                .collect();
            for room in due {
                relay.register_at.insert(room.clone(), now + RETRY);
                let rendezvous = &mut self.swarm.behaviour_mut().rendezvous;
                if let Err(e) = rendezvous.register(namespace(&room), peer, Some(REGISTRATION_TTL))
                {
                    tracing::debug!(%peer, %room, "cannot register yet: {e}");
                }
            }
            let Some(relay) = self.relays.get_mut(&peer) else {
                continue;
            };
            if relay.discover_at <= now {
                relay.discover_at = now + DISCOVER_INTERVAL;
                for room in &joined {
                    self.swarm.behaviour_mut().rendezvous.discover(
                        Some(namespace(room)),
                        None,
                        Some(DISCOVER_LIMIT),
                        peer,
                    );
                }
            }
        }
        let stale: Vec<PeerId> = self
            .punching
            .iter()
            .filter(|(_, since)| now.duration_since(**since) >= PUNCH_TIMEOUT)
            .map(|(p, _)| *p)
            .collect();
        for peer in stale {
            self.punch_outcome(
                peer,
                Err(format!(
                    "no direct connection within {}s",
                    PUNCH_TIMEOUT.as_secs()
                )),
            );
        }
        self.refresh_circuits(now);
        let due: Vec<PeerId> = self
            .redial_at
            .iter()
            .filter(|(_, at)| **at <= now)
            .map(|(p, _)| *p)
            .collect();
        for peer in due {
            self.redial_at.remove(&peer);
            if let Some(addrs) = self.known_addrs.get(&peer).cloned()
                && !self.swarm.is_connected(&peer)
            {
                tracing::info!(%peer, "dialling a lost room member again");
                self.dial_known(peer, addrs);
            }
        }
    }

    /// Opens a fresh circuit to a room member before the relay ends the old
    /// one at its duration limit, so the room never loses the member.
    fn refresh_circuits(&mut self, now: Instant) {
        for (peer, age, relay) in self.connections.relayed_only(now) {
            let Some(limit) = relay.and_then(|r| self.circuit_limits.get(&r)) else {
                continue;
            };
            if age < limit.mul_f64(CIRCUIT_REFRESH_AT) || !self.rooms.is_member_anywhere(&peer) {
                continue;
            }
            if self
                .circuit_refreshed
                .get(&peer)
                .is_some_and(|at| now.duration_since(*at) < limit.mul_f64(0.5))
            {
                continue;
            }
            let Some(addrs) = self.known_addrs.get(&peer) else {
                continue;
            };
            let circuits: Vec<Multiaddr> =
                addrs.iter().filter(|a| is_relayed(a)).cloned().collect();
            if circuits.is_empty() {
                continue;
            }
            tracing::info!(%peer, "opening a fresh circuit before the old one ends");
            self.circuit_refreshed.insert(peer, now);
            let opts = DialOpts::peer_id(peer)
                .addresses(circuits)
                .condition(PeerCondition::Always)
                .build();
            if let Err(e) = self.swarm.dial(opts) {
                tracing::debug!(%peer, "cannot open a fresh circuit: {e}");
            }
        }
        if self.circuit_refreshed.len() > MAX_KNOWN_PEERS {
            self.circuit_refreshed.clear();
        }
    }

    /// A room was joined or left: tell the relays.
    pub(super) fn nat_room_joined(&mut self, room: &palaver_proto::RoomName) {
        self.relays.room_joined(room, Instant::now());
    }

    pub(super) fn nat_room_left(&mut self, room: &palaver_proto::RoomName) {
        self.relays.room_left(room);
        for peer in self.relays.peers() {
            if self.swarm.is_connected(&peer) {
                self.swarm
                    .behaviour_mut()
                    .rendezvous
                    .unregister(namespace(room), peer);
            }
        }
    }
}
