//! The node's network: one task (the [`EventLoop`]) owns the libp2p `Swarm`
//! and a few I/O-free cores (rooms and presence, reachability, catch-up,
//! serving); everything else talks to it through a [`Client`] (typed
//! commands with one-shot answers) and reads the typed [`Event`]s it emits.

mod behaviour;
mod catch_up;
mod event_loop;
mod reachability;
mod serving;
mod stream_codec;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use libp2p::identity::Keypair;
use libp2p::request_response::ResponseChannel;
use libp2p::{Multiaddr, PeerId, SwarmBuilder, gossipsub, noise, tcp, yamux};
use palaver_proto::history::Response;
use palaver_proto::{ErrorCode, Nick, RoomName};
use tokio::sync::{mpsc, oneshot};

pub use event_loop::EventLoop;
/// The catch-up codec, for tools and tests that speak `/palaver/history/2`.
pub use stream_codec::CatchUpCodec;

use crate::api::{Answer, Command, Event};
use crate::store::worker::{self, StoreHandle, Tickets};

/// What rides along with the network's store jobs.
#[derive(Debug)]
pub struct StoreTickets;

impl Tickets for StoreTickets {
    /// The gossip message, and the peer that forwarded it.
    type Live = (gossipsub::MessageId, PeerId);
    type Reply = oneshot::Sender<Answer>;
    /// The pull (peer, room) an answer belongs to.
    type Pull = (PeerId, RoomName);
    type Serve = (PeerId, ResponseChannel<Response>);
    /// The reply, and the answer it gets once saved.
    type Saved = (oneshot::Sender<Answer>, Answer);
    type Seal = event_loop::SealFor;
    /// The gossip message, the peer that forwarded it, the room, the frame.
    type Lockbox = (gossipsub::MessageId, PeerId, RoomName, Vec<u8>);
}

/// The store thread as the network sees it.
pub type Store = StoreHandle<StoreTickets>;
/// What the store thread finished, as the network sees it.
pub type StoreDone = worker::Done<StoreTickets>;

/// Commands waiting for the event loop; the console waits when it is full.
const COMMAND_QUEUE: usize = 256;
/// Events waiting for the console; beyond this the loop drops them rather than stall.
const EVENT_QUEUE: usize = 8192;
/// Connections nothing uses are closed after this long.
const IDLE_CONNECTION_TIMEOUT: Duration = Duration::from_secs(600);

/// Most connections at once, unless told otherwise.
pub const DEFAULT_MAX_CONNECTIONS: u32 = 512;

/// How a node's connection slots are shared out, so that strangers opening
/// connections to it under fresh peer ids cannot take them all (an eclipse):
/// a quarter stays for connections this node opens (its bootstrap peers,
/// relays and room members), and one address may open at most a sixth of
/// the rest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionCaps {
    pub total: u32,
    pub inbound: u32,
    pub outbound: u32,
    pub per_address: u32,
}

impl ConnectionCaps {
    pub fn new(total: u32) -> Self {
        let total = total.max(8);
        let outbound = total / 4;
        let inbound = total - outbound;
        Self {
            total,
            inbound,
            outbound,
            per_address: (inbound / 6).max(1),
        }
    }
}

/// What the network part of a node needs to know.
#[derive(Debug)]
pub struct NetworkConfig {
    pub nick: Nick,
    pub listen: Vec<Multiaddr>,
    pub bootstrap: Vec<Multiaddr>,
    pub mdns: bool,
    /// Where messages are kept; nothing is shown before it is stored.
    pub store: Store,
    /// What the store thread finished.
    pub stored: mpsc::Receiver<StoreDone>,
    /// Rooms to join again at start (the ones joined when the node last ran).
    pub rooms: Vec<RoomName>,
    /// How often each room is reconciled with a random present member.
    pub anti_entropy: Duration,
    /// The private rooms' records, as the store keeps them.
    pub private: Vec<Vec<u8>>,
    /// The age recipient lockboxes are sealed to for this node.
    pub recipient: String,
    /// How many connections, and whose.
    pub connections: ConnectionCaps,
}

/// Why the network could not start.
#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    #[error("cannot set up the {0} transport: {1}")]
    Transport(&'static str, String),
    #[error("cannot set up the network behaviour: {0}")]
    Behaviour(String),
    #[error("cannot listen on {addr}: {reason}")]
    Listen { addr: Multiaddr, reason: String },
}

/// A cheap handle to the event loop.
#[derive(Debug, Clone)]
pub struct Client {
    commands: mpsc::Sender<(Command, oneshot::Sender<Answer>)>,
}

impl Client {
    /// Hands a command to the event loop, which applies commands in the order
    /// they are handed over (waiting while its queue is full). The returned
    /// future resolves to its one answer.
    pub async fn submit(&self, command: Command) -> impl Future<Output = Answer> + use<> {
        let (tx, rx) = oneshot::channel();
        let handed_over = self.commands.send((command, tx)).await.is_ok();
        let stopping = || Answer::refused(ErrorCode::Internal, "the node is shutting down");
        async move {
            if !handed_over {
                return stopping();
            }
            rx.await.unwrap_or_else(|_| stopping())
        }
    }

    /// Submits a command and waits for its answer.
    pub async fn request(&self, command: Command) -> Answer {
        self.submit(command).await.await
    }
}

/// Builds the swarm, starts listening, and returns the three parts of a running network.
pub fn new(
    keypair: Keypair,
    config: NetworkConfig,
) -> Result<(Client, mpsc::Receiver<Event>, EventLoop), NetworkError> {
    let mdns = config.mdns;
    let caps = config.connections;
    let mut swarm = SwarmBuilder::with_existing_identity(keypair.clone())
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )
        .map_err(|e| NetworkError::Transport("TCP", e.to_string()))?
        .with_quic()
        .with_dns()
        .map_err(|e| NetworkError::Transport("DNS", e.to_string()))?
        .with_relay_client(noise::Config::new, yamux::Config::default)
        .map_err(|e| NetworkError::Transport("relay", e.to_string()))?
        .with_behaviour(
            |key, relay_client| -> Result<_, Box<dyn std::error::Error + Send + Sync>> {
                Ok(behaviour::Behaviour::new(key, relay_client, mdns, caps)?)
            },
        )
        .map_err(|e| NetworkError::Behaviour(e.to_string()))?
        .with_swarm_config(|c| c.with_idle_connection_timeout(IDLE_CONNECTION_TIMEOUT))
        .build();
    let mut listeners = Vec::new();
    for addr in &config.listen {
        let id = swarm
            .listen_on(addr.clone())
            .map_err(|e| NetworkError::Listen {
                addr: addr.clone(),
                reason: e.to_string(),
            })?;
        listeners.push(id);
    }
    let (command_tx, command_rx) = mpsc::channel(COMMAND_QUEUE);
    let (event_tx, event_rx) = mpsc::channel(EVENT_QUEUE);
    let event_loop = EventLoop::new(swarm, keypair, config, listeners, command_rx, event_tx);
    Ok((
        Client {
            commands: command_tx,
        },
        event_rx,
        event_loop,
    ))
}

/// Unix milliseconds now (0 if the clock is before 1970).
fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
