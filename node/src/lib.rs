//! The Palaver chat node as a library: [`run`] takes a [`Config`] and serves
//! the line protocol on stdin/stdout until `/quit`, end of input or a signal.

pub mod console;
pub mod data_dir;
pub mod network;
pub mod rooms;

use std::path::PathBuf;

use libp2p::Multiaddr;
use palaver_proto::Nick;
use palaver_proto::line::Command;

use crate::data_dir::{DataDir, DataDirError};
use crate::network::{NetworkConfig, NetworkError};

/// Everything a node needs to start.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where the identity (and later the history) lives.
    pub data_dir: PathBuf,
    /// Display name; a name derived from the peer id when absent.
    pub nick: Option<Nick>,
    pub listen: Vec<Multiaddr>,
    pub bootstrap: Vec<Multiaddr>,
    /// JSON lines on stdout instead of text for a person.
    pub json: bool,
    pub mdns: bool,
}

impl Config {
    /// QUIC first, TCP as fallback, on every interface, on ports the OS picks.
    pub fn default_listen() -> Vec<Multiaddr> {
        ["/ip4/0.0.0.0/udp/0/quic-v1", "/ip4/0.0.0.0/tcp/0"]
            .iter()
            .filter_map(|a| a.parse().ok())
            .collect()
    }
}

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    DataDir(#[from] DataDirError),
    #[error(transparent)]
    Network(#[from] NetworkError),
}

/// Runs a node until it is told to quit.
pub async fn run(config: Config) -> Result<(), Error> {
    let data_dir = DataDir::open(&config.data_dir)?;
    let keypair = data_dir.identity()?;
    let peer_id = keypair.public().to_peer_id();
    let nick = config
        .nick
        .clone()
        .unwrap_or_else(|| default_nick(&peer_id.to_string()));
    tracing::info!(%peer_id, data_dir = %data_dir.path().display(), "starting");
    let network = NetworkConfig {
        nick,
        listen: config.listen,
        bootstrap: config.bootstrap,
        mdns: config.mdns,
    };
    let (client, events, event_loop) = network::new(keypair, network)?;
    let event_loop = tokio::spawn(event_loop.run());
    tokio::spawn(quit_on_signal(client.clone()));
    console::run(client, events, config.json).await;
    if let Err(e) = event_loop.await {
        tracing::error!("the network task failed: {e}");
    }
    drop(data_dir);
    Ok(())
}

/// `anon-` and the last six characters of the peer id.
#[allow(
    clippy::expect_used,
    reason = "base58 characters always make a valid nick"
)]
fn default_nick(peer_id: &str) -> Nick {
    let tail = &peer_id[peer_id.len().saturating_sub(6)..];
    format!("anon-{tail}").parse().expect("a valid nick")
}

/// SIGINT and SIGTERM quit like `/quit`: goodbyes are announced first.
async fn quit_on_signal(client: network::Client) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::warn!("cannot watch for signals");
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    tracing::info!("signal received; quitting");
    client.request(Command::Quit).await;
}
