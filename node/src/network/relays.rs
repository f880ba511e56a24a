//! The relays this node uses: bootstrap peers that turned out (by identify)
//! to offer circuit relay v2 and rendezvous. For each one this keeps the relay
//! reservation (how others reach a node behind a NAT), which rooms are
//! registered under which hashed namespace, and when to refresh and discover.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use libp2p::core::transport::ListenerId;
use libp2p::rendezvous::Namespace;
use libp2p::{Multiaddr, PeerId, StreamProtocol};
use palaver_proto::RoomName;
use palaver_proto::line::RelayInfo;
use sha2::{Digest, Sha256};

/// The protocols that make a peer a relay this node can use.
pub const HOP_PROTOCOL: StreamProtocol = StreamProtocol::new("/libp2p/circuit/relay/0.2.0/hop");
pub const RENDEZVOUS_PROTOCOL: StreamProtocol = StreamProtocol::new("/rendezvous/1.0.0");
/// How long a rendezvous registration lasts; it is refreshed at half of it.
pub const REGISTRATION_TTL: u64 = 5 * 60;
/// How often each room's members are looked up at each relay.
pub const DISCOVER_INTERVAL: Duration = Duration::from_secs(15);
/// How long to wait before asking again after a refused reservation or registration.
pub const RETRY: Duration = Duration::from_secs(5);
/// Most registrations returned by one discovery.
pub const DISCOVER_LIMIT: u64 = 200;

/// The rendezvous namespace of a room: a hash, so the relay does not learn the
/// name (though it can test guesses of it: pick unguessable names for privacy).
pub fn namespace(room: &RoomName) -> Namespace {
    let digest = Sha256::digest(format!("palaver room v1\0{room}").as_bytes());
    let hex: String = digest.iter().take(16).map(|b| format!("{b:02x}")).collect();
    Namespace::new(format!("palaver/{hex}"))
        .unwrap_or_else(|_| Namespace::from_static("palaver/invalid"))
}

/// The state of the reservation at one relay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reservation {
    None { retry_at: Instant },
    Pending(ListenerId),
    Active(ListenerId),
}

#[derive(Debug)]
pub struct Relay {
    /// How this node reaches the relay, ending in `/p2p/<relay>`.
    pub addr: Multiaddr,
    pub reservation: Reservation,
    /// Per room: when to register (again).
    pub register_at: HashMap<RoomName, Instant>,
    pub discover_at: Instant,
}

/// The relays in use, by peer id.
#[derive(Debug, Default)]
pub struct Relays {
    relays: HashMap<PeerId, Relay>,
}

impl Relays {
    /// Starts using (or, after a reconnection, refreshes) a relay: everything
    /// is due at once.
    pub fn identified(
        &mut self,
        peer: PeerId,
        addr: Multiaddr,
        rooms: impl Iterator<Item = RoomName>,
        now: Instant,
    ) {
        let relay = self.relays.entry(peer).or_insert_with(|| Relay {
            addr: addr.clone(),
            reservation: Reservation::None { retry_at: now },
            register_at: HashMap::new(),
            discover_at: now,
        });
        relay.addr = addr;
        relay.register_at = rooms.map(|r| (r, now)).collect();
        relay.discover_at = now;
        if let Reservation::None { retry_at } = &mut relay.reservation {
            *retry_at = now;
        }
    }

    pub fn get_mut(&mut self, peer: &PeerId) -> Option<&mut Relay> {
        self.relays.get_mut(peer)
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = (&PeerId, &mut Relay)> {
        self.relays.iter_mut()
    }

    pub fn peers(&self) -> Vec<PeerId> {
        self.relays.keys().copied().collect()
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

    /// The relay whose reservation listener this is.
    pub fn by_listener(&mut self, listener: ListenerId) -> Option<(&PeerId, &mut Relay)> {
        self.relays.iter_mut().find(|(_, r)| {
            matches!(r.reservation, Reservation::Pending(l) | Reservation::Active(l) if l == listener)
        })
    }

    pub fn info(&self) -> Vec<RelayInfo> {
        let mut out: Vec<RelayInfo> = self
            .relays
            .iter()
            .map(|(peer, r)| RelayInfo {
                peer_id: peer.to_string(),
                addr: r.addr.to_string(),
                reservation: match r.reservation {
                    Reservation::None { .. } => "none",
                    Reservation::Pending(_) => "pending",
                    Reservation::Active(_) => "active",
                }
                .to_owned(),
            })
            .collect();
        out.sort_by(|a, b| a.peer_id.cmp(&b.peer_id));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        relays.identified(peer, addr.clone(), ["a".parse().unwrap()].into_iter(), now);
        let r = relays.get_mut(&peer).unwrap();
        r.register_at
            .insert("a".parse().unwrap(), now + Duration::from_secs(100));
        r.discover_at = now + Duration::from_secs(100);
        let later = now + Duration::from_secs(1);
        relays.identified(peer, addr, ["a".parse().unwrap()].into_iter(), later);
        let r = relays.get_mut(&peer).unwrap();
        assert_eq!(r.discover_at, later);
        assert_eq!(
            r.register_at.values().copied().collect::<Vec<_>>(),
            vec![later]
        );
    }
}
