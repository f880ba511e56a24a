//! The relays this node uses: bootstrap peers that turned out (by identify)
//! to offer circuit relay v2 and rendezvous. For each one this keeps the
//! reservation (how others reach a node behind a NAT) and, per room, when to
//! register its hashed namespace and when to look its members up.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use libp2p::core::transport::ListenerId;
use libp2p::rendezvous::Namespace;
use libp2p::{Multiaddr, PeerId};
use palaver_proto::{RoomName, contract};

use crate::api::{RelayStatus, ReservationState};

/// How long a rendezvous registration lasts; it is refreshed at half of it.
pub const REGISTRATION_TTL: u64 = 5 * 60;
/// How often each room's members are looked up at each relay.
pub const DISCOVER_INTERVAL: Duration = Duration::from_secs(15);
/// How long to wait before asking again after a refused reservation or registration.
pub const RETRY: Duration = Duration::from_secs(5);

/// The rendezvous namespace of a room: a hash, so the relay does not learn the
/// name (though it can test guesses of it: pick unguessable names for privacy).
pub fn namespace(room: &RoomName) -> Namespace {
    Namespace::new(contract::rendezvous_namespace(room))
        .unwrap_or_else(|_| Namespace::from_static("palaver/invalid"))
}

/// The state of the reservation at one relay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reservation {
    None { retry_at: Instant },
    Pending(ListenerId),
    Active(ListenerId),
}

impl Reservation {
    fn listener(self) -> Option<ListenerId> {
        match self {
            Self::Pending(l) | Self::Active(l) => Some(l),
            Self::None { .. } => None,
        }
    }
}

#[derive(Debug)]
struct Relay {
    /// How this node reaches the relay, ending in `/p2p/<relay>`.
    addr: Multiaddr,
    reservation: Reservation,
    /// Per room: when to register (again).
    register_at: HashMap<RoomName, Instant>,
    discover_at: Instant,
}

/// What is due at one relay now.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Due {
    /// Ask for a reservation by listening on this circuit address.
    pub reserve: Option<Multiaddr>,
    pub register: Vec<RoomName>,
    pub discover: Vec<RoomName>,
}

/// The relays in use, by peer id.
#[derive(Debug, Default)]
pub struct Relays {
    relays: HashMap<PeerId, Relay>,
    /// A private room's namespace, derived from its current key (see
    /// `palaver_proto::private::EpochKey::rendezvous_namespace`).
    private: HashMap<RoomName, Namespace>,
}

impl Relays {
    /// The namespace a room registers under.
    pub fn ns(&self, room: &RoomName) -> Namespace {
        self.private
            .get(room)
            .cloned()
            .unwrap_or_else(|| namespace(room))
    }

    /// A private room's namespace from now on (`None`: forget it).
    pub fn set_private(&mut self, room: &RoomName, ns: Option<Namespace>) {
        match ns {
            Some(ns) => self.private.insert(room.clone(), ns),
            None => self.private.remove(room),
        };
    }

    /// Starts using (or, after a reconnection, refreshes) a relay: everything
    /// is due at once.
    pub fn identified(
        &mut self,
        peer: PeerId,
        addr: Multiaddr,
        rooms: &BTreeSet<RoomName>,
        now: Instant,
    ) {
        let relay = self.relays.entry(peer).or_insert_with(|| Relay {
            addr: addr.clone(),
            reservation: Reservation::None { retry_at: now },
            register_at: HashMap::new(),
            discover_at: now,
        });
        relay.addr = addr;
        relay.register_at = rooms.iter().map(|r| (r.clone(), now)).collect();
        relay.discover_at = now;
        if let Reservation::None { retry_at } = &mut relay.reservation {
            *retry_at = now;
        }
    }

    pub fn peers(&self) -> impl Iterator<Item = &PeerId> {
        self.relays.keys()
    }

    /// A room was joined: register and look it up at every relay now.
    pub fn room_joined(&mut self, room: &RoomName, now: Instant) {
        for relay in self.relays.values_mut() {
            relay.register_at.insert(room.clone(), now);
            relay.discover_at = now;
        }
    }

    pub fn room_left(&mut self, room: &RoomName) {
        for relay in self.relays.values_mut() {
            relay.register_at.remove(room);
        }
    }

    /// This node's addresses changed: register everything again.
    pub fn addresses_changed(&mut self, now: Instant) {
        for relay in self.relays.values_mut() {
            for at in relay.register_at.values_mut() {
                *at = now;
            }
        }
    }

    /// `relay` registered `ns`: refresh it at half its `ttl`, and look for
    /// those who registered first now.
    pub fn registered(&mut self, relay: &PeerId, ns: &Namespace, ttl: u64, now: Instant) {
        let Some(relay) = self.relays.get_mut(relay) else {
            return;
        };
        let private = &self.private;
        for (room, at) in relay.register_at.iter_mut() {
            let room_ns = private
                .get(room)
                .cloned()
                .unwrap_or_else(|| namespace(room));
            if room_ns == *ns {
                relay.discover_at = now;
                *at = now + Duration::from_secs(ttl.clamp(2, REGISTRATION_TTL) / 2);
            }
        }
    }

    /// What is due now at `relay`; each item is rescheduled as it is handed
    /// out. No reservation is asked for while the node is `public`.
    pub fn due(
        &mut self,
        peer: &PeerId,
        rooms: &BTreeSet<RoomName>,
        public: bool,
        now: Instant,
    ) -> Due {
        let mut due = Due::default();
        let Some(relay) = self.relays.get_mut(peer) else {
            return due;
        };
        if let Reservation::None { retry_at } = relay.reservation
            && !public
            && retry_at <= now
        {
            // Until the listener is known (or refused), nothing is asked again.
            relay.reservation = Reservation::None {
                retry_at: now + RETRY,
            };
            due.reserve = Some(
                relay
                    .addr
                    .clone()
                    .with(libp2p::multiaddr::Protocol::P2pCircuit),
            );
        }
        for (room, at) in relay.register_at.iter_mut() {
            if *at <= now {
                *at = now + RETRY;
                due.register.push(room.clone());
            }
        }
        due.register.sort();
        if relay.discover_at <= now {
            relay.discover_at = now + DISCOVER_INTERVAL;
            due.discover = rooms.iter().cloned().collect();
        }
        due
    }

    /// When something is next due at `peer`.
    pub fn next_due(&self, peer: &PeerId, public: bool) -> Option<Instant> {
        let relay = self.relays.get(peer)?;
        let reserve = match relay.reservation {
            Reservation::None { retry_at } if !public => Some(retry_at),
            _ => None,
        };
        let register = relay.register_at.values().copied().min();
        [reserve, register, Some(relay.discover_at)]
            .into_iter()
            .flatten()
            .min()
    }

    /// A reservation was asked for at `relay`, through `listener`.
    pub fn reserving(&mut self, relay: &PeerId, listener: ListenerId) {
        if let Some(r) = self.relays.get_mut(relay) {
            r.reservation = Reservation::Pending(listener);
        }
    }

    /// The listener of a reservation became active. Returns the relay, and
    /// whether the reservation is new (not a renewal or another address).
    pub fn reservation_active(&mut self, listener: ListenerId) -> Option<(PeerId, bool)> {
        let (peer, relay) = self.by_listener(listener)?;
        let newly = !matches!(relay.reservation, Reservation::Active(_));
        relay.reservation = Reservation::Active(listener);
        Some((peer, newly))
    }

    /// The listener of a reservation closed: it is asked for again after
    /// [`RETRY`]. Returns the relay, and whether the reservation had been active.
    pub fn reservation_closed(
        &mut self,
        listener: ListenerId,
        now: Instant,
    ) -> Option<(PeerId, bool)> {
        let (peer, relay) = self.by_listener(listener)?;
        let was_active = matches!(relay.reservation, Reservation::Active(_));
        relay.reservation = Reservation::None {
            retry_at: now + RETRY,
        };
        Some((peer, was_active))
    }

    /// The listeners of every reservation asked for or held.
    pub fn listeners(&self) -> Vec<ListenerId> {
        self.relays
            .values()
            .filter_map(|r| r.reservation.listener())
            .collect()
    }

    fn by_listener(&mut self, listener: ListenerId) -> Option<(PeerId, &mut Relay)> {
        self.relays
            .iter_mut()
            .find(|(_, r)| r.reservation.listener() == Some(listener))
            .map(|(p, r)| (*p, r))
    }

    pub fn info(&self) -> Vec<RelayStatus> {
        let mut out: Vec<RelayStatus> = self
            .relays
            .iter()
            .map(|(peer, r)| RelayStatus {
                peer: *peer,
                addr: r.addr.clone(),
                reservation: match r.reservation {
                    Reservation::None { .. } => ReservationState::None,
                    Reservation::Pending(_) => ReservationState::Pending,
                    Reservation::Active(_) => ReservationState::Active,
                },
            })
            .collect();
        out.sort_by_key(|r| r.peer);
        out
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

    use super::*;

    fn rooms(names: &[&str]) -> BTreeSet<RoomName> {
        names.iter().map(|n| n.parse().unwrap()).collect()
    }

    #[test]
    fn namespaces_hide_room_names_and_differ_per_room() {
        let a = namespace(&"lobby".parse().unwrap());
        let b = namespace(&"Lobby".parse().unwrap());
        assert_ne!(a, b);
        assert!(!a.to_string().contains("lobby"));
        assert_eq!(a.to_string().len(), "palaver/".len() + 32);
        assert_eq!(a, namespace(&"lobby".parse().unwrap()));
    }

    #[test]
    fn a_relay_identified_again_has_everything_due() {
        let now = Instant::now();
        let mut relays = Relays::default();
        let peer = PeerId::random();
        let addr: Multiaddr = "/ip4/10.0.0.1/tcp/4001".parse().unwrap();
        let joined = rooms(&["a"]);
        relays.identified(peer, addr.clone(), &joined, now);
        let first = relays.due(&peer, &joined, false, now);
        assert!(first.reserve.is_some());
        assert_eq!(first.register, vec!["a".parse().unwrap()]);
        assert_eq!(first.discover, vec!["a".parse().unwrap()]);
        assert_eq!(relays.due(&peer, &joined, false, now), Due::default());
        let later = now + Duration::from_secs(1);
        relays.identified(peer, addr, &joined, later);
        let again = relays.due(&peer, &joined, false, later);
        assert_eq!(again.register.len(), 1);
        assert_eq!(again.discover.len(), 1);
    }
}
