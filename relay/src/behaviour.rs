//! The relay's composed libp2p behaviour and the limits of each part.

use std::num::NonZeroU32;
use std::time::Duration;

use libp2p::identity::Keypair;
use libp2p::swarm::NetworkBehaviour;
use libp2p::{autonat, connection_limits, identify, ping, relay, rendezvous};

use crate::{Limits, ip_limits};

/// The protocol version identify announces.
pub use palaver_proto::contract::IDENTIFY_PROTOCOL_VERSION as PROTOCOL_VERSION;

#[derive(NetworkBehaviour)]
pub struct Behaviour {
    pub limits: connection_limits::Behaviour,
    pub ip_limits: ip_limits::Behaviour,
    pub relay: relay::Behaviour,
    pub rendezvous: rendezvous::server::Behaviour,
    pub identify: identify::Behaviour,
    pub ping: ping::Behaviour,
    pub autonat: autonat::Behaviour,
}

impl Behaviour {
    pub fn new(key: &Keypair, limits: &Limits) -> Self {
        let local = key.public().to_peer_id();
        let relay_config = relay::Config {
            max_reservations: limits.max_reservations,
            max_reservations_per_peer: limits.max_reservations_per_peer,
            reservation_duration: limits.reservation_duration,
            max_circuits: limits.max_circuits,
            max_circuits_per_peer: limits.max_circuits_per_peer,
            max_circuits_per_ip: limits.max_circuits_per_ip,
            max_circuit_duration: limits.max_circuit_duration,
            max_circuit_bytes: limits.max_circuit_bytes,
            reservation_rate_limiters: Vec::new(),
            circuit_src_rate_limiters: Vec::new(),
        }
        // Per peer only: many honest peers share one address behind a NAT.
        .reservation_rate_per_peer(limits.reservation_rate_per_minute, Duration::from_secs(60))
        .circuit_src_per_peer(limits.circuit_rate_per_minute, Duration::from_secs(60));
        Self {
            limits: connection_limits::Behaviour::new(
                connection_limits::ConnectionLimits::default()
                    .with_max_established(Some(limits.max_connections))
                    .with_max_established_per_peer(Some(8))
                    .with_max_pending_incoming(Some(256)),
            ),
            ip_limits: ip_limits::Behaviour::new(
                limits.max_connections_per_ip,
                limits.max_handshakes_per_ip,
            ),
            relay: relay::Behaviour::new(local, relay_config),
            rendezvous: rendezvous::server::Behaviour::new(
                rendezvous::server::Config::default()
                    .with_min_ttl(limits.min_ttl)
                    .with_max_ttl(limits.max_ttl)
                    .with_max_registration_per_peer(limits.max_registrations_per_peer)
                    .with_max_registration_total(limits.max_registrations)
                    .with_max_registrations_per_ip(limits.max_registrations_per_ip)
                    .with_max_discover_limit(limits.max_discover_limit),
            ),
            identify: identify::Behaviour::new(
                identify::Config::new(PROTOCOL_VERSION.to_owned(), key.public())
                    .with_agent_version(format!("palaver-relay/{}", env!("CARGO_PKG_VERSION"))),
            ),
            ping: ping::Behaviour::default(),
            // Serves dial-back probes to nodes, private addresses included (a
            // relay on a campus or company network is normal). It does not
            // probe for itself: its external addresses are configured.
            autonat: autonat::Behaviour::new(
                local,
                autonat::Config {
                    only_global_ips: false,
                    boot_delay: Duration::from_secs(u64::from(u32::MAX)),
                    refresh_interval: Duration::from_secs(u64::from(u32::MAX)),
                    throttle_clients_global_max: 120,
                    throttle_clients_peer_max: 4,
                    ..Default::default()
                },
            ),
        }
    }
}

/// A rate of one per minute, the floor of any configured rate.
pub fn per_minute(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN)
}
