//! The task that owns the `Swarm`. One `select!` over swarm events, commands,
//! what the store thread finished, and one timer set to the earliest
//! deadline any core asks for; each arm is one call. The cores (rooms,
//! reachability, catch-up, serving) are I/O-free: this loop feeds them and
//! applies what they ask for.
//!
//! - `swarm.rs`: libp2p events in, each handed to the core it concerns;
//! - `apply.rs`: reachability's actions carried out on the swarm;
//! - `messages.rs`: the road of a message, received or sent, through the
//!   store to the console and the room;
//! - `catch_up.rs`: pulling what this node missed, and serving others;
//! - `commands.rs`: the console's commands, each answered once.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use futures::StreamExt;
use libp2p::core::transport::ListenerId;
use libp2p::identity::Keypair;
use libp2p::swarm::ConnectionId;
use libp2p::{PeerId, Swarm};
use palaver_proto::RoomName;
use tokio::sync::{mpsc, oneshot};

use super::behaviour::Behaviour;
use super::catch_up::CatchUps;
use super::reachability::Reachability;
use super::serving::Serving;
use super::{NetworkConfig, Store, StoreDone, unix_ms};
use crate::api::{Answer, Command, Event};
use crate::private::PrivateRooms;
use crate::rooms::Rooms;

mod apply;
mod catch_up;
mod commands;
mod messages;
mod private;
mod swarm;

pub use private::SealFor;

/// How long the node keeps running after `/quit`, so its goodbyes go out.
const QUIT_GRACE: Duration = Duration::from_millis(400);
/// Longest a quitting node waits for its own messages to be stored.
const STORE_GRACE: Duration = Duration::from_secs(5);
/// How long start-up waits for the listeners to report their addresses.
const LISTEN_WAIT: Duration = Duration::from_secs(3);
/// How soon a save the store was too busy for is tried again.
const SAVE_RETRY: Duration = Duration::from_millis(250);
/// The soonest the timer fires again after it fired: a core that keeps
/// asking for the past cannot make the loop spin.
const MIN_TIMER_GAP: Duration = Duration::from_millis(5);
/// The timer's deadline when no core asks for one.
const IDLE_WAKE: Duration = Duration::from_secs(3600);

type Responder = oneshot::Sender<Answer>;

#[derive(Debug)]
struct Shutdown {
    at: Instant,
    /// Every `/quit` (and signal) waiting to hear that the node is done.
    replies: Vec<Responder>,
}

/// Work under way that the loop answers for later.
#[derive(Debug, Default)]
struct Pending {
    /// `/dial`s waiting for their outcome.
    dials: HashMap<ConnectionId, Responder>,
    /// Live messages handed to the store thread, not yet judged.
    verifying: usize,
    /// Commands waiting for the store to answer them (own messages,
    /// `/history`, saving the rooms and nick): quitting waits for them.
    store_replies: usize,
    /// When to try again to save the rooms and nick the store was too busy for.
    save_retry: Option<Instant>,
    /// Events the console was too slow for.
    dropped_events: u64,
    /// Invites this node is redeeming, by the request out.
    redeems: HashMap<libp2p::request_response::OutboundRequestId, private::Redeeming>,
    /// Lockboxes the store thread is trying to open.
    opening: usize,
    /// The run id each connected peer's identify gave.
    runs: HashMap<PeerId, String>,
    /// Peers that restarted: dialled again at these addresses once every
    /// old connection to them is closed.
    restarted: HashMap<PeerId, Vec<libp2p::Multiaddr>>,
}

/// Owns the swarm and the cores; see the module docs.
pub struct EventLoop {
    swarm: Swarm<Behaviour>,
    /// Signs this node's envelopes.
    keypair: Keypair,
    /// `None` once every [`super::Client`] is gone.
    commands: Option<mpsc::Receiver<(Command, Responder)>>,
    events: mpsc::Sender<Event>,
    store: Store,
    stored: mpsc::Receiver<StoreDone>,
    rooms: Rooms,
    /// The private rooms' keys, rosters and invites.
    private: PrivateRooms,
    /// The age recipient other members seal this node's lockboxes to.
    recipient: String,
    reach: Reachability,
    catch_ups: CatchUps,
    serving: Serving,
    pending: Pending,
    shutdown: Option<Shutdown>,
    timer: Timer,
    /// What `run` starts with.
    start: Start,
}

impl std::fmt::Debug for EventLoop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventLoop")
            .field("local", self.swarm.local_peer_id())
            .finish_non_exhaustive()
    }
}

/// What the loop's one timer knows.
#[derive(Debug)]
struct Timer {
    /// When it last fired.
    fired: Instant,
    /// Reachability's next deadline, as of its last input: asking costs a
    /// walk over the connections, too much for every gossip message.
    reach_at: Option<Instant>,
}

/// What [`EventLoop::run`] starts with.
#[derive(Debug, Default)]
struct Start {
    listeners: Vec<ListenerId>,
    rejoin: Vec<RoomName>,
}

impl EventLoop {
    pub(super) fn new(
        swarm: Swarm<Behaviour>,
        keypair: Keypair,
        config: NetworkConfig,
        listeners: Vec<ListenerId>,
        commands: mpsc::Receiver<(Command, Responder)>,
        events: mpsc::Sender<Event>,
    ) -> Self {
        let local = *swarm.local_peer_id();
        let now = Instant::now();
        let mut private = PrivateRooms::new(local);
        let mut rejoin: Vec<RoomName> = config
            .rooms
            .into_iter()
            .filter(|r| !r.is_private())
            .collect();
        for record in &config.private {
            match private.load(record) {
                Ok(handle) => rejoin.push(handle),
                Err(e) => tracing::warn!("a private room's record does not read, left out: {e}"),
            }
        }
        // Sessions start above every one an earlier run used (kept by the
        // store), not only above the clock: a run that joined rooms many
        // times, each join a session, can be ahead of the clock.
        let sessions = config.store.sessions();
        Self {
            start: Start { listeners, rejoin },
            private,
            recipient: config.recipient,
            reach: Reachability::new(local, &config.bootstrap, now),
            rooms: Rooms::new(local, config.nick, sessions.after)
                .with_sessions_saved(sessions.saved.unwrap_or(u64::MAX)),
            store: config.store,
            stored: config.stored,
            catch_ups: CatchUps::new(
                config.anti_entropy,
                u64::from_be_bytes(seed(&local)) ^ unix_ms(),
            ),
            serving: Serving::new(now),
            pending: Pending::default(),
            keypair,
            commands: Some(commands),
            events,
            shutdown: None,
            timer: Timer {
                fired: now,
                reach_at: None,
            },
            swarm,
        }
    }

    fn local(&self) -> PeerId {
        *self.swarm.local_peer_id()
    }

    /// Runs until `/quit`, or until every [`super::Client`] is gone.
    pub async fn run(mut self) {
        let start = std::mem::take(&mut self.start);
        self.wait_for_listeners(start.listeners).await;
        let rooms = self.rejoin(start.rejoin);
        self.apply_reach_actions();
        let ready = Event::Ready {
            peer: self.local(),
            nick: self.rooms.nick().clone(),
            listen: self.reach.listen_addrs(),
            rooms,
        };
        self.emit(ready);
        while !self.finished() {
            let wake = tokio::time::Instant::from_std(self.next_wake());
            tokio::select! {
                event = self.swarm.select_next_some() => self.on_swarm_event(event),
                command = next_command(&mut self.commands) => self.on_command(command),
                Some(done) = self.stored.recv() => self.on_store_done(done),
                () = tokio::time::sleep_until(wake) => self.on_timer(),
            }
        }
        for reply in self.shutdown.take().map(|s| s.replies).unwrap_or_default() {
            let _ = reply.send(Answer::Done("quit"));
        }
    }

    async fn wait_for_listeners(&mut self, listeners: Vec<ListenerId>) {
        let mut unreported: std::collections::HashSet<ListenerId> = listeners.into_iter().collect();
        let deadline = tokio::time::Instant::now() + LISTEN_WAIT;
        while !unreported.is_empty() {
            match tokio::time::timeout_at(deadline, self.swarm.select_next_some()).await {
                Ok(event) => {
                    if let libp2p::swarm::SwarmEvent::NewListenAddr { listener_id, .. } = &event {
                        unreported.remove(listener_id);
                    }
                    self.on_swarm_event(event);
                }
                Err(_) => {
                    tracing::warn!("some listeners reported no address within {LISTEN_WAIT:?}");
                    break;
                }
            }
        }
    }

    /// Joins the rooms of the previous run again; returns those joined.
    fn rejoin(&mut self, rooms: Vec<RoomName>) -> Vec<RoomName> {
        let mut joined = Vec::new();
        for room in rooms {
            let result = if room.is_private() {
                self.join_private(&room)
            } else {
                self.join(room.clone())
            };
            match result {
                Ok(()) => joined.push(room),
                Err(e) => tracing::warn!(%room, "cannot join again: {e:?}"),
            }
        }
        joined
    }

    /// Quitting is done once the goodbyes had their grace, and every command
    /// waiting for the store got its answer (or a few seconds passed).
    fn finished(&self) -> bool {
        let now = Instant::now();
        self.shutdown.as_ref().is_some_and(|s| {
            now >= s.at && (self.pending.store_replies == 0 || now >= s.at + STORE_GRACE)
        })
    }

    /// The earliest deadline of any core, of a save to retry, or of quitting.
    fn next_wake(&self) -> Instant {
        let quitting = self.shutdown.as_ref().map(|s| {
            if Instant::now() < s.at {
                s.at
            } else {
                s.at + STORE_GRACE
            }
        });
        // Once quitting, reachability and catch-up are not polled: their
        // deadlines would stay in the past.
        let running = self.shutdown.is_none();
        let deadlines = [
            self.rooms.poll_at(),
            self.timer.reach_at.filter(|_| running),
            self.catch_ups.poll_at().filter(|_| running),
            self.private.poll_at().filter(|_| running),
            self.pending.save_retry,
            quitting,
        ];
        let earliest = deadlines
            .into_iter()
            .flatten()
            .min()
            .unwrap_or_else(|| Instant::now() + IDLE_WAKE);
        earliest.max(self.timer.fired + MIN_TIMER_GAP)
    }

    /// A deadline passed: every core does what is due.
    fn on_timer(&mut self) {
        let now = Instant::now();
        self.timer.fired = now;
        if self.pending.save_retry.is_some_and(|at| at <= now) {
            self.save_state(None);
        }
        self.save_sessions();
        let (events, beacons) = self.rooms.tick(now);
        self.emit_room_events(events);
        // After the goodbyes, a beacon would look like a return.
        if self.shutdown.is_none() {
            for room in beacons {
                let _ = self.publish(&room, palaver_proto::wire::Body::Presence);
            }
        }
        if self.shutdown.is_none() {
            let rooms = &self.rooms;
            self.reach.poll(now, |p| rooms.is_member_anywhere(p));
            self.apply_reach_actions();
            self.poll_catch_ups(now);
            self.poll_private(now);
        }
    }

    /// Reachability took input: its next deadline may have moved.
    pub(super) fn reach_changed(&mut self) {
        let rooms = &self.rooms;
        self.timer.reach_at = self.reach.poll_at(|p| rooms.is_member_anywhere(p));
    }

    /// Hands an event to the console without ever waiting for it.
    fn emit(&mut self, event: Event) {
        if let Err(mpsc::error::TrySendError::Full(_)) = self.events.try_send(event) {
            self.pending.dropped_events += 1;
            if self.pending.dropped_events.is_power_of_two() {
                tracing::warn!(
                    dropped = self.pending.dropped_events,
                    "output is not being read; dropping events"
                );
            }
        }
    }
}

/// The next command, or `None` once the command channel closed (after
/// which this waits for ever).
async fn next_command<T>(commands: &mut Option<mpsc::Receiver<T>>) -> Option<T> {
    match commands {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// Eight bytes of a peer id, to seed catch-up's jitter apart from other nodes'.
fn seed(peer: &PeerId) -> [u8; 8] {
    let bytes = peer.to_bytes();
    let mut seed = [0u8; 8];
    for (i, b) in bytes.iter().rev().take(8).enumerate() {
        seed[i] = *b;
    }
    seed
}
