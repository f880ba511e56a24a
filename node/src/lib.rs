//! The Palaver chat node as a library: [`run`] takes a [`Config`] and serves
//! the line protocol on stdin/stdout until `/quit`, end of input or a signal.
//!
//! Public beyond [`run`] and [`Config`]: the catch-up codec (for tools and
//! tests that speak the protocol) and [`store`]'s `Store` and `Keys` (for the
//! store benchmark). Everything else is the node's own.

mod api;
mod console;
mod data_dir;
mod network;
mod private;
mod rooms;
pub mod store;
mod validation;

/// The catch-up codec, for tools and tests that speak `/palaver/history/1`.
pub use network::CatchUpCodec;

use std::path::{Path, PathBuf};

use age::secrecy::SecretString;

use libp2p::Multiaddr;
use palaver_proto::Nick;

use crate::api::Command;

use crate::data_dir::{DataDir, DataDirError};
use crate::network::{NetworkConfig, NetworkError};
use crate::store::key_file::{self, KeyFileError};
use crate::store::{Store, StoreError};

pub use crate::network::DEFAULT_MAX_CONNECTIONS;
pub use crate::store::key_file::DEFAULT_LOG_N;
pub use crate::validation::DEFAULT_AUTHOR_RATE;

/// Everything a node needs to start.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where the keys and the history live.
    pub data_dir: PathBuf,
    /// Unlocks the key file (and protects it when it is created).
    pub passphrase: SecretString,
    /// scrypt cost (log2 N) of a key file created now.
    pub kdf_log_n: u8,
    /// Display name; the one saved from the last run, or a name derived
    /// from the peer id, when absent.
    pub nick: Option<Nick>,
    pub listen: Vec<Multiaddr>,
    pub bootstrap: Vec<Multiaddr>,
    /// JSON lines on stdout instead of text for a person.
    pub json: bool,
    pub mdns: bool,
    /// How often each room is reconciled with a random present member.
    pub anti_entropy: std::time::Duration,
    /// How much history is kept.
    pub retention: store::Retention,
    /// Live chat messages one author may send in one room, a second.
    pub author_rate: u32,
    /// Most connections at once (see [`network::ConnectionCaps`]).
    pub max_connections: u32,
    /// An invite code to redeem at start, as if `/join CODE` were typed first.
    pub join: Option<String>,
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
    #[error(transparent)]
    Keys(#[from] KeyFileError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Startup(String),
    /// A part of the running node failed (a bug): the run ends in error.
    #[error("{0}")]
    Crashed(String),
}

/// Whether `data_dir` already holds a key file (so a passphrase prompt
/// asks once, not twice for a new one).
pub fn has_keys(data_dir: &Path) -> bool {
    data_dir.join(key_file::KEY_FILE).exists()
}

/// Re-encrypts the key file in `data_dir` under a new passphrase. The data
/// dir must not be in use.
pub async fn change_passphrase(
    data_dir: &Path,
    old: SecretString,
    new: SecretString,
    kdf_log_n: u8,
) -> Result<(), Error> {
    let dir = DataDir::open(data_dir)?;
    let path = dir.path().to_owned();
    tokio::task::spawn_blocking(move || key_file::change_passphrase(&path, &old, &new, kdf_log_n))
        .await
        .map_err(|e| Error::Startup(e.to_string()))??;
    drop(dir);
    Ok(())
}

/// Runs a node until it is told to quit.
pub async fn run(config: Config) -> Result<(), Error> {
    let data_dir = DataDir::open(&config.data_dir)?;
    let path = data_dir.path().to_owned();
    // The passphrase moves into the unlock and is wiped (secrecy zeroizes
    // on drop) as soon as the key file is open: it is not kept for the run.
    let (passphrase, log_n) = (config.passphrase, config.kdf_log_n);
    let retention = config.retention;
    // scrypt takes a second by design, and RocksDB reads its log: off the runtime.
    let (keys, store, (saved, private)) = tokio::task::spawn_blocking(move || {
        let opened = key_file::open_or_create(&path, &passphrase, log_n);
        drop(passphrase);
        let (keys, created) = opened?;
        if created {
            tracing::info!("created a new identity and key file");
        }
        let mut store = Store::open(&path, &keys)?;
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        store.set_retention(retention, now_ms)?;
        let saved = store.load_state().unwrap_or_else(|e| {
            tracing::warn!("starting without the saved rooms and nick: {e}");
            Default::default()
        });
        let (private, corrupt) = store.private_records()?;
        if corrupt > 0 {
            tracing::warn!(
                corrupt,
                "private rooms whose keys fail their checks are left out"
            );
        }
        Ok::<_, Error>((keys, store, (saved, private)))
    })
    .await
    .map_err(|e| Error::Startup(e.to_string()))??;
    let keypair = keys.keypair;
    let peer_id = keypair.public().to_peer_id();
    let nick = config
        .nick
        .clone()
        .or(saved.nick)
        .unwrap_or_else(|| default_nick(&peer_id.to_string()));
    tracing::info!(%peer_id, data_dir = %data_dir.path().display(), "starting");
    let recipient = store.lockbox_recipient();
    let (store, stored, store_thread) = store::worker::spawn(store, config.author_rate)
        .map_err(|e| Error::Startup(format!("cannot start the store thread: {e}")))?;
    let network = NetworkConfig {
        nick,
        listen: config.listen,
        bootstrap: config.bootstrap,
        mdns: config.mdns,
        store,
        stored,
        rooms: saved.rooms,
        anti_entropy: config.anti_entropy,
        connections: network::ConnectionCaps::new(config.max_connections),
        private,
        recipient,
    };
    let (client, events, event_loop) = network::new(keypair, network)?;
    let event_loop = tokio::spawn(event_loop.run());
    tokio::spawn(quit_on_signal(client.clone()));
    let first_lines = config
        .join
        .map(|code| format!("/join {code}"))
        .into_iter()
        .collect();
    console::run(client, events, config.json, first_lines).await;
    let network = event_loop.await;
    // The event loop is gone, and with it the last store handle: the store
    // thread finishes what was queued and closes the database.
    let store = tokio::task::spawn_blocking(move || store_thread.join()).await;
    drop(data_dir);
    if let Err(e) = network {
        return Err(Error::Crashed(format!("the network task failed: {e}")));
    }
    if !matches!(store, Ok(Ok(_))) {
        return Err(Error::Crashed("the store thread failed".to_owned()));
    }
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
