//! `relay`: the Palaver rendezvous server and circuit relay v2 point. Parses
//! the command line, sets up logging on stderr, and runs the library.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use libp2p::Multiaddr;
use palaver_relay::{Config, Limits, per_minute};

/// Palaver relay: rendezvous and circuit relay v2 for nodes behind NATs.
///
/// Prints each listen address, ending in /p2p/<peer id>, on stdout as soon as
/// it listens: paste one into `node --bootstrap`. Logs go to stderr
/// (RUST_LOG=info for more). Stops cleanly on SIGTERM or SIGINT.
#[derive(Debug, Parser)]
#[command(name = "relay", version)]
struct Cli {
    /// Address to listen on (repeatable; env: comma-separated)
    /// [default: /ip4/0.0.0.0/udp/4001/quic-v1 and /ip4/0.0.0.0/tcp/4001].
    #[arg(long = "listen", env = "PALAVER_RELAY_LISTEN", value_delimiter = ',')]
    listen: Vec<Multiaddr>,

    /// Address at which nodes reach this relay, announced from the start
    /// (repeatable; env: comma-separated). A specific --listen address counts too.
    #[arg(
        long = "external-addr",
        env = "PALAVER_RELAY_EXTERNAL_ADDR",
        value_delimiter = ','
    )]
    external_addr: Vec<Multiaddr>,

    /// File holding the relay's key, created on first start
    /// [default: the platform's data directory, e.g. ~/.local/share/palaver-relay/identity.key].
    #[arg(long, env = "PALAVER_RELAY_IDENTITY")]
    identity: Option<PathBuf>,

    /// Serve Prometheus metrics at http://ADDR/metrics, e.g. 127.0.0.1:9100.
    #[arg(long, env = "PALAVER_RELAY_METRICS")]
    metrics: Option<SocketAddr>,

    /// Print {"event":"listening","addr":…} lines instead of bare addresses.
    #[arg(long, env = "PALAVER_RELAY_JSON")]
    json: bool,

    /// Most connections at once.
    #[arg(long, env = "PALAVER_RELAY_MAX_CONNECTIONS", default_value_t = 4096)]
    max_connections: u32,

    /// Most inbound connections from one IPv4 address or one IPv6 /48, pending
    /// and established together, so that sybils on one host cannot take every
    /// slot (a NAT shared by many honest nodes needs room too).
    #[arg(
        long,
        env = "PALAVER_RELAY_MAX_CONNECTIONS_PER_IP",
        default_value_t = 128
    )]
    max_connections_per_ip: usize,

    /// Most of those still in their handshake at once, so that a few hosts
    /// with stalled handshakes cannot take every pending slot (256 in all).
    #[arg(
        long,
        env = "PALAVER_RELAY_MAX_HANDSHAKES_PER_IP",
        default_value_t = 16
    )]
    max_handshakes_per_ip: usize,

    /// Most relay reservations at once, all peers together.
    #[arg(long, env = "PALAVER_RELAY_MAX_RESERVATIONS", default_value_t = 2048)]
    max_reservations: usize,

    /// Most relay reservations one peer holds at once.
    #[arg(
        long,
        env = "PALAVER_RELAY_MAX_RESERVATIONS_PER_PEER",
        default_value_t = 4
    )]
    max_reservations_per_peer: usize,

    /// How long a reservation lasts before the node must renew it, seconds.
    #[arg(
        long,
        env = "PALAVER_RELAY_RESERVATION_DURATION",
        default_value_t = 3600
    )]
    reservation_duration: u64,

    /// Most reservation requests one peer may make per minute.
    #[arg(long, env = "PALAVER_RELAY_RESERVATION_RATE", default_value_t = 30)]
    reservation_rate: u32,

    /// Most relayed circuits at once.
    #[arg(long, env = "PALAVER_RELAY_MAX_CIRCUITS", default_value_t = 1024)]
    max_circuits: usize,

    /// Most relayed circuits one peer has open at once.
    #[arg(
        long,
        env = "PALAVER_RELAY_MAX_CIRCUITS_PER_PEER",
        default_value_t = 64
    )]
    max_circuits_per_peer: usize,

    /// Most relayed circuits open at once from sources on one IPv4 address or
    /// one IPv6 /48, so that sybils on one host cannot hold every circuit.
    #[arg(long, env = "PALAVER_RELAY_MAX_CIRCUITS_PER_IP", default_value_t = 128)]
    max_circuits_per_ip: usize,

    /// Longest life of one circuit, seconds (nodes re-open a circuit that ends).
    #[arg(
        long,
        env = "PALAVER_RELAY_MAX_CIRCUIT_DURATION",
        default_value_t = 3600
    )]
    max_circuit_duration: u64,

    /// Most bytes one circuit carries, each way.
    #[arg(long, env = "PALAVER_RELAY_MAX_CIRCUIT_BYTES", default_value_t = 64 << 20)]
    max_circuit_bytes: u64,

    /// Most circuits one peer may open per minute.
    #[arg(long, env = "PALAVER_RELAY_CIRCUIT_RATE", default_value_t = 60)]
    circuit_rate: u32,

    /// Most rendezvous registrations kept, all peers together.
    #[arg(
        long,
        env = "PALAVER_RELAY_MAX_REGISTRATIONS",
        default_value_t = 20_000
    )]
    max_registrations: usize,

    /// Most rendezvous registrations of one peer (one per room it is in).
    #[arg(
        long,
        env = "PALAVER_RELAY_MAX_REGISTRATIONS_PER_PEER",
        default_value_t = 256
    )]
    max_registrations_per_peer: usize,

    /// Most rendezvous registrations of peers connected from one IPv4 address
    /// or one IPv6 /48.
    #[arg(
        long,
        env = "PALAVER_RELAY_MAX_REGISTRATIONS_PER_IP",
        default_value_t = 1000
    )]
    max_registrations_per_ip: usize,

    /// Most registrations one rendezvous discover answers with; a larger
    /// `limit` is clamped. A discover must name its namespace (room).
    #[arg(long, env = "PALAVER_RELAY_MAX_DISCOVER_LIMIT", default_value_t = 100)]
    max_discover_limit: u64,

    /// Shortest rendezvous registration accepted, seconds.
    #[arg(long, env = "PALAVER_RELAY_MIN_TTL", default_value_t = 60)]
    min_ttl: u64,

    /// Longest rendezvous registration accepted, seconds (nodes register for
    /// 5 minutes and refresh; a peer's registrations also end when it disconnects).
    #[arg(long, env = "PALAVER_RELAY_MAX_TTL", default_value_t = 2 * 3600)]
    max_ttl: u64,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Logs go to stderr through a queue: a stderr nobody reads costs log
    // lines, never a stalled event loop.
    let (stderr, _flush_logs_on_exit) = tracing_appender::non_blocking(std::io::stderr());
    tracing_subscriber::fmt()
        .with_writer(stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    let Some(identity) = cli
        .identity
        .or_else(|| dirs::data_dir().map(|d| d.join("palaver-relay").join("identity.key")))
    else {
        eprintln!("relay: no data directory for the identity: pass --identity FILE");
        return ExitCode::from(2);
    };
    let listen = if cli.listen.is_empty() {
        ["/ip4/0.0.0.0/udp/4001/quic-v1", "/ip4/0.0.0.0/tcp/4001"]
            .iter()
            .filter_map(|a| a.parse().ok())
            .collect()
    } else {
        cli.listen
    };
    let config = Config {
        identity,
        listen,
        external: cli.external_addr,
        metrics: cli.metrics,
        json: cli.json,
        limits: Limits {
            max_connections: cli.max_connections,
            max_connections_per_ip: cli.max_connections_per_ip,
            max_handshakes_per_ip: cli.max_handshakes_per_ip,
            max_reservations: cli.max_reservations,
            max_reservations_per_peer: cli.max_reservations_per_peer,
            reservation_duration: Duration::from_secs(cli.reservation_duration),
            reservation_rate_per_minute: per_minute(cli.reservation_rate),
            max_circuits: cli.max_circuits,
            max_circuits_per_peer: cli.max_circuits_per_peer,
            max_circuits_per_ip: cli.max_circuits_per_ip,
            max_circuit_duration: Duration::from_secs(cli.max_circuit_duration),
            max_circuit_bytes: cli.max_circuit_bytes,
            circuit_rate_per_minute: per_minute(cli.circuit_rate),
            max_registrations: cli.max_registrations,
            max_registrations_per_peer: cli.max_registrations_per_peer,
            max_registrations_per_ip: cli.max_registrations_per_ip,
            max_discover_limit: cli.max_discover_limit,
            min_ttl: cli.min_ttl,
            max_ttl: cli.max_ttl,
        },
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("relay: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(palaver_relay::run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("relay: {e}");
            ExitCode::FAILURE
        }
    }
}
