//! The Palaver relay as a library: [`run`] serves circuit relay v2,
//! rendezvous, identify, ping and AutoNAT until SIGTERM or SIGINT. It keeps no
//! chat data: nodes register under hashed room namespaces and relay circuits
//! carry only end-to-end encrypted streams.

mod behaviour;
mod identity;
mod ip_limits;
mod metrics;

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use futures::StreamExt;
use libp2p::core::multiaddr::Protocol;
use libp2p::metrics::{Metrics, Recorder};
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, SwarmBuilder, noise, tcp, yamux};

pub use behaviour::per_minute;
use behaviour::{Behaviour, BehaviourEvent};
pub use identity::IdentityError;

/// What a relay admits, so that no client can take it all.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_connections: u32,
    /// Most inbound connections from one IPv4 address or IPv6 /48, pending
    /// and established together (relayed ones not counted).
    pub max_connections_per_ip: usize,
    /// Most of those whose handshake is under way at once.
    pub max_handshakes_per_ip: usize,
    pub max_reservations: usize,
    pub max_reservations_per_peer: usize,
    pub reservation_duration: Duration,
    pub reservation_rate_per_minute: std::num::NonZeroU32,
    pub max_circuits: usize,
    pub max_circuits_per_peer: usize,
    /// Most circuits open at once from sources on one IPv4 address or IPv6 /48.
    pub max_circuits_per_ip: usize,
    pub max_circuit_duration: Duration,
    pub max_circuit_bytes: u64,
    pub circuit_rate_per_minute: std::num::NonZeroU32,
    pub max_registrations: usize,
    pub max_registrations_per_peer: usize,
    /// Most rendezvous registrations of peers connected from one IPv4
    /// address or IPv6 /48.
    pub max_registrations_per_ip: usize,
    /// The largest `limit` a discover is answered with (larger ones are clamped).
    pub max_discover_limit: u64,
    /// Shortest and longest rendezvous registration, seconds.
    pub min_ttl: u64,
    pub max_ttl: u64,
}

/// Everything a relay needs to start.
#[derive(Debug, Clone)]
pub struct Config {
    pub identity: PathBuf,
    pub listen: Vec<Multiaddr>,
    pub external: Vec<Multiaddr>,
    pub metrics: Option<SocketAddr>,
    pub json: bool,
    pub limits: Limits,
}

/// Why a relay could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Identity(#[from] IdentityError),
    #[error("cannot set up the {0} transport: {1}")]
    Transport(&'static str, String),
    #[error("cannot listen on {addr}: {reason}")]
    Listen { addr: Multiaddr, reason: String },
    #[error("cannot serve metrics on {addr}: {source}")]
    Metrics {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot watch for signals: {0}")]
    Signals(std::io::Error),
    #[error("invalid limits: {0}")]
    Limits(String),
}

/// Runs the relay until SIGTERM or SIGINT.
pub async fn run(config: Config) -> Result<(), Error> {
    use tokio::signal::unix::{SignalKind, signal};
    if config.limits.min_ttl > config.limits.max_ttl {
        return Err(Error::Limits(format!(
            "--min-ttl ({}) is above --max-ttl ({})",
            config.limits.min_ttl, config.limits.max_ttl
        )));
    }
    let keypair = identity::load_or_create(&config.identity)?;
    let mut registry = prometheus_client::registry::Registry::with_prefix("palaver_relay");
    let metrics = Metrics::new(&mut registry);
    let limits = config.limits.clone();
    let mut swarm = SwarmBuilder::with_existing_identity(keypair)
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )
        .map_err(|e| Error::Transport("TCP", e.to_string()))?
        .with_quic()
        .with_behaviour(|key| Behaviour::new(key, &limits))
        .map_err(|e| Error::Transport("behaviour", e.to_string()))?
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(120)))
        .build();
    for addr in &config.listen {
        swarm.listen_on(addr.clone()).map_err(|e| Error::Listen {
            addr: addr.clone(),
            reason: e.to_string(),
        })?;
    }
    for addr in &config.external {
        swarm.add_external_address(addr.clone());
    }
    if let Some(addr) = config.metrics {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| Error::Metrics { addr, source })?;
        tokio::spawn(metrics::serve(listener, registry));
    }
    let mut term = signal(SignalKind::terminate()).map_err(Error::Signals)?;
    let mut int = signal(SignalKind::interrupt()).map_err(Error::Signals)?;
    let local = *swarm.local_peer_id();
    let specific: Vec<Multiaddr> = config
        .listen
        .iter()
        .filter(|a| !is_unspecified(a))
        .cloned()
        .collect();
    loop {
        tokio::select! {
            event = swarm.select_next_some() => {
                metrics.record(&event);
                match event {
                    SwarmEvent::NewListenAddr { address, .. } => {
                        // An address the relay was told to listen on exactly is reachable as such.
                        if specific.iter().any(|s| same_listener(s, &address)) {
                            swarm.add_external_address(address.clone());
                        }
                        print_listening(&address.with(Protocol::P2p(local)), config.json);
                    }
                    SwarmEvent::ListenerError { error, .. } => tracing::warn!("listener error: {error}"),
                    SwarmEvent::ListenerClosed { addresses, reason, .. } => {
                        tracing::warn!(?addresses, ?reason, "listener closed");
                    }
                    SwarmEvent::Behaviour(event) => on_behaviour_event(&metrics, event),
                    SwarmEvent::ExternalAddrConfirmed { address } => tracing::info!(%address, "external address"),
                    SwarmEvent::IncomingConnectionError { send_back_addr, error, .. } => {
                        tracing::debug!(%send_back_addr, "incoming connection failed: {error}");
                    }
                    other => tracing::trace!(?other, "swarm event"),
                }
            }
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }
    tracing::info!("shutting down");
    Ok(())
}

fn on_behaviour_event(metrics: &Metrics, event: BehaviourEvent) {
    match event {
        BehaviourEvent::Relay(e) => {
            metrics.record(&e);
            tracing::debug!(?e, "relay");
        }
        BehaviourEvent::Identify(e) => metrics.record(&e),
        BehaviourEvent::Ping(e) => metrics.record(&e),
        BehaviourEvent::Rendezvous(e) => tracing::debug!(?e, "rendezvous"),
        BehaviourEvent::Autonat(e) => tracing::debug!(?e, "autonat"),
        BehaviourEvent::Limits(never) => match never {},
        BehaviourEvent::IpLimits(never) => match never {},
    }
}

/// Writes one listen address to stdout, ready to paste into `node --bootstrap`.
fn print_listening(addr: &Multiaddr, json: bool) {
    let line = if json {
        serde_json::json!({"event": "listening", "addr": addr.to_string()}).to_string()
    } else {
        addr.to_string()
    };
    let mut out = std::io::stdout().lock();
    if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
        tracing::warn!("cannot write to stdout");
    }
}

fn is_unspecified(addr: &Multiaddr) -> bool {
    addr.iter().any(|p| match p {
        Protocol::Ip4(ip) => ip.is_unspecified(),
        Protocol::Ip6(ip) => ip.is_unspecified(),
        _ => false,
    })
}

/// Whether `actual` (as reported, with the real port) is the listener
/// configured as `configured` (perhaps with port 0).
fn same_listener(configured: &Multiaddr, actual: &Multiaddr) -> bool {
    configured.len() == actual.len()
        && configured
            .iter()
            .zip(actual.iter())
            .all(|(c, a)| match (c, a) {
                (Protocol::Tcp(0), Protocol::Tcp(_)) | (Protocol::Udp(0), Protocol::Udp(_)) => true,
                (c, a) => c == a,
            })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listener_on_port_zero_matches_its_reported_address() {
        let configured: Multiaddr = "/ip4/10.0.0.1/udp/0/quic-v1".parse().unwrap();
        assert!(same_listener(
            &configured,
            &"/ip4/10.0.0.1/udp/4001/quic-v1".parse().unwrap()
        ));
        assert!(!same_listener(
            &configured,
            &"/ip4/10.0.0.2/udp/4001/quic-v1".parse().unwrap()
        ));
        assert!(!same_listener(
            &configured,
            &"/ip4/10.0.0.1/tcp/4001".parse().unwrap()
        ));
    }

    #[test]
    fn wildcard_listeners_are_recognised() {
        assert!(is_unspecified(&"/ip4/0.0.0.0/tcp/4001".parse().unwrap()));
        assert!(!is_unspecified(&"/ip4/10.0.0.1/tcp/4001".parse().unwrap()));
    }
}
