//! The task that owns the `Swarm`. One `select!` over swarm events, commands
//! and a timer; each arm is one call into a handler that translates libp2p
//! events into [`Event`]s and commands into swarm calls and a [`Reply`].

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use futures::StreamExt;
use libp2p::core::ConnectedPoint;
use libp2p::core::transport::ListenerId;
use libp2p::identity::Keypair;
use libp2p::multiaddr::Protocol;
use libp2p::swarm::{ConnectionId, DialError, SwarmEvent};
use libp2p::{Multiaddr, PeerId, Swarm, gossipsub, mdns};
use palaver_proto::envelope::{Envelope, EnvelopeError};
use palaver_proto::line::{Command, Event, Reply};
use palaver_proto::wire::Body;
use palaver_proto::{ErrorCode, Nick, RoomName};
use tokio::sync::{mpsc, oneshot};

use super::behaviour::{Behaviour, BehaviourEvent, room_of};
use super::catch_up::CatchUps;
use super::connections::{Bootstrap, Connections, dial_opts, peer_of};
use super::relays::Relays;
use super::{NetworkConfig, unix_ms};
use crate::rooms::Rooms;
use crate::store::is_history;
use crate::store::worker::{PutDone, StoreHandle};

mod commands;
mod history;
mod nat;

use history::Done;

/// How often timers (beacons, timeouts, redials, gaps) are looked at.
const TICK: Duration = Duration::from_millis(250);
/// How long the node keeps running after `/quit`, so its goodbyes go out.
const QUIT_GRACE: Duration = Duration::from_millis(400);
/// Longest a quitting node waits for its own messages to be stored.
const STORE_GRACE: Duration = Duration::from_secs(5);
/// How long start-up waits for the listeners to report their addresses.
const LISTEN_WAIT: Duration = Duration::from_secs(3);
/// Most gossip messages being verified at once; more are ignored. Half the
/// store's queue, so that live gossip never takes the slots `/send`,
/// `/history` and catch-up need.
const MAX_VERIFYING: usize = crate::store::worker::QUEUE / 2;
/// A pull for shed messages walks back to this long before the first was
/// shed (their timestamps are their authors' clocks, a little earlier).
const SHED_LOOKBACK_MS: u64 = 30 * 1000;
/// How far a live payload's timestamp may be from this node's clock.
const MAX_CLOCK_SKEW_MS: u64 = 5 * 60 * 1000;
/// Most listen addresses kept (relays report circuit addresses too).
const MAX_LISTEN_ADDRS: usize = 64;
/// Most peers remembered as seen by mDNS.
const MAX_MDNS_SEEN: usize = 1024;
/// Most `/dial`s waiting for their outcome at once.
const MAX_PENDING_DIALS: usize = 64;

type Responder = oneshot::Sender<Reply>;

/// A gossip message judged on the store thread: its envelope verified and
/// checked. Chat is stored next, and shown once [`Done::Stored`] says so.
struct Verified {
    id: gossipsub::MessageId,
    from: PeerId,
    verdict: Result<Envelope, gossipsub::MessageAcceptance>,
    /// Chat, which is being stored; otherwise presence, shown at once.
    chat: bool,
}

#[derive(Debug)]
struct Shutdown {
    at: Instant,
    /// Every `/quit` (and signal) waiting to hear that the node is done.
    replies: Vec<Responder>,
}

/// Owns the swarm and the chat state; see the module docs.
pub struct EventLoop {
    swarm: Swarm<Behaviour>,
    local: PeerId,
    /// Signs this node's envelopes.
    keypair: Keypair,
    verified_tx: mpsc::Sender<Verified>,
    verified_rx: mpsc::Receiver<Verified>,
    verifying: usize,
    commands: mpsc::Receiver<(Command, Responder)>,
    commands_closed: bool,
    events: mpsc::Sender<Event>,
    dropped_events: u64,
    nick: Nick,
    rooms: Rooms,
    connections: Connections,
    bootstrap: Bootstrap,
    listen_addrs: Vec<Multiaddr>,
    unreported_listeners: HashSet<ListenerId>,
    pending_dials: HashMap<ConnectionId, Responder>,
    mdns_seen: HashSet<PeerId>,
    relays: Relays,
    /// Peers with only a relayed connection, since when.
    punching: HashMap<PeerId, Instant>,
    /// Where discovered room members can be reached.
    known_addrs: HashMap<PeerId, Vec<Multiaddr>>,
    /// Lost room members to dial again, and when.
    redial_at: HashMap<PeerId, Instant>,
    /// How long circuits through each relay may last.
    circuit_limits: HashMap<PeerId, Duration>,
    /// When a fresh circuit to each peer was last opened.
    circuit_refreshed: HashMap<PeerId, Instant>,
    shutdown: Option<Shutdown>,
    /// The history store (its own thread).
    store: StoreHandle,
    /// Rooms to join again at start.
    rejoin: Vec<RoomName>,
    /// What the store thread finished. Bounded by what may be under way:
    /// [`crate::store::worker::QUEUE`] jobs, each with one answer.
    done_tx: mpsc::UnboundedSender<Done>,
    done_rx: mpsc::UnboundedReceiver<Done>,
    catch_ups: CatchUps,
    /// Catch-up requests being answered, in all and per peer.
    serving: usize,
    serving_by_peer: HashMap<PeerId, usize>,
    /// Own messages handed to the store, not yet replied to.
    storing_own: usize,
    /// The rooms or nick changed but could not be saved yet.
    state_unsaved: bool,
    /// Application-score points peers lost for catch-up pages that failed verification.
    penalties: HashMap<PeerId, f64>,
}

impl std::fmt::Debug for EventLoop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventLoop")
            .field("local", &self.local)
            .finish_non_exhaustive()
    }
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
        let (verified_tx, verified_rx) = mpsc::channel(MAX_VERIFYING);
        let (done_tx, done_rx) = mpsc::unbounded_channel();
        Self {
            store: config.store,
            rejoin: config.rooms,
            done_tx,
            done_rx,
            catch_ups: CatchUps::default(),
            serving: 0,
            serving_by_peer: HashMap::new(),
            storing_own: 0,
            state_unsaved: false,
            penalties: HashMap::new(),
            local,
            keypair,
            verified_tx,
            verified_rx,
            verifying: 0,
            commands,
            commands_closed: false,
            events,
            dropped_events: 0,
            nick: config.nick,
            rooms: Rooms::new(local, unix_ms()),
            connections: Connections::default(),
            bootstrap: Bootstrap::new(&config.bootstrap, local, now),
            listen_addrs: Vec::new(),
            unreported_listeners: listeners.into_iter().collect(),
            pending_dials: HashMap::new(),
            mdns_seen: HashSet::new(),
            relays: Relays::default(),
            punching: HashMap::new(),
            known_addrs: HashMap::new(),
            redial_at: HashMap::new(),
            circuit_limits: HashMap::new(),
            circuit_refreshed: HashMap::new(),
            shutdown: None,
            swarm,
        }
    }

    /// Runs until `/quit`, or until every [`super::Client`] is gone.
    pub async fn run(mut self) {
        self.wait_for_listeners().await;
        let mut rooms = Vec::new();
        for room in std::mem::take(&mut self.rejoin) {
            match self.join(room.clone()) {
                Ok(_) => rooms.push(room),
                Err(e) => tracing::warn!(%room, "cannot join again: {e:?}"),
            }
        }
        let ready = Event::Ready {
            peer_id: self.local.to_string(),
            nick: self.nick.clone(),
            listen: self.listen_addrs_p2p(),
            rooms,
        };
        self.emit(ready);
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        while !self.finished() {
            tokio::select! {
                event = self.swarm.select_next_some() => self.on_swarm_event(event),
                command = self.commands.recv(), if !self.commands_closed => self.on_command(command),
                Some(verified) = self.verified_rx.recv() => self.on_verified(verified),
                Some(done) = self.done_rx.recv() => self.on_done(done),
                _ = tick.tick() => self.on_tick(),
            }
        }
        for reply in self.shutdown.take().map(|s| s.replies).unwrap_or_default() {
            let _ = reply.send(Reply::ok("quit"));
        }
    }

    async fn wait_for_listeners(&mut self) {
        let deadline = tokio::time::Instant::now() + LISTEN_WAIT;
        while !self.unreported_listeners.is_empty() {
            match tokio::time::timeout_at(deadline, self.swarm.select_next_some()).await {
                Ok(event) => self.on_swarm_event(event),
                Err(_) => {
                    tracing::warn!("some listeners reported no address within {LISTEN_WAIT:?}");
                    break;
                }
            }
        }
    }

    /// Quitting is done once the goodbyes had their grace, and every own
    /// message being stored got its reply (or a few seconds passed).
    fn finished(&self) -> bool {
        let now = Instant::now();
        self.shutdown
            .as_ref()
            .is_some_and(|s| now >= s.at && (self.storing_own == 0 || now >= s.at + STORE_GRACE))
    }

    /// Hands an event to the console without ever waiting for it.
    fn emit(&mut self, event: Event) {
        if let Err(mpsc::error::TrySendError::Full(_)) = self.events.try_send(event) {
            self.dropped_events += 1;
            if self.dropped_events.is_power_of_two() {
                tracing::warn!(
                    dropped = self.dropped_events,
                    "output is not being read; dropping events"
                );
            }
        }
    }

    // ---- swarm events ----

    fn on_swarm_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        match event {
            SwarmEvent::Behaviour(BehaviourEvent::Gossipsub(e)) => self.on_gossipsub(e),
            SwarmEvent::Behaviour(BehaviourEvent::Mdns(e)) => self.on_mdns(e),
            SwarmEvent::Behaviour(BehaviourEvent::Identify(e)) => self.on_identify(e),
            SwarmEvent::Behaviour(BehaviourEvent::Ping(_)) => {}
            SwarmEvent::Behaviour(BehaviourEvent::RelayClient(e)) => self.on_relay_client(e),
            SwarmEvent::Behaviour(BehaviourEvent::Dcutr(e)) => self.on_dcutr(e),
            SwarmEvent::Behaviour(BehaviourEvent::Rendezvous(e)) => self.on_rendezvous(e),
            SwarmEvent::Behaviour(BehaviourEvent::Autonat(e)) => self.on_autonat(e),
            SwarmEvent::Behaviour(BehaviourEvent::History(e)) => self.on_history(e),
            SwarmEvent::Behaviour(BehaviourEvent::Limits(never)) => match never {},
            SwarmEvent::ConnectionEstablished {
                peer_id,
                connection_id,
                endpoint,
                ..
            } => self.on_connection_established(peer_id, connection_id, &endpoint),
            SwarmEvent::ConnectionClosed {
                peer_id,
                connection_id,
                cause,
                ..
            } => self.on_connection_closed(peer_id, connection_id, cause.map(|c| c.to_string())),
            SwarmEvent::OutgoingConnectionError {
                connection_id,
                error,
                ..
            } => self.on_dial_error(connection_id, error),
            SwarmEvent::NewListenAddr {
                listener_id,
                address,
            } => self.on_new_listen_addr(listener_id, address),
            SwarmEvent::ExpiredListenAddr { address, .. } => {
                self.listen_addrs.retain(|a| *a != address)
            }
            SwarmEvent::ListenerError { error, .. } => tracing::warn!("listener error: {error}"),
            SwarmEvent::ListenerClosed {
                listener_id,
                addresses,
                reason,
            } => self.on_listener_closed(listener_id, addresses, reason),
            SwarmEvent::NewExternalAddrCandidate { address } => {
                tracing::debug!(%address, "external address candidate")
            }
            SwarmEvent::ExternalAddrConfirmed { address } => {
                self.on_external_addr_confirmed(address)
            }
            other => tracing::trace!(?other, "swarm event"),
        }
    }

    fn on_connection_established(
        &mut self,
        peer: PeerId,
        id: ConnectionId,
        endpoint: &ConnectedPoint,
    ) {
        // A circuit someone opened to us has only `/p2p/<them>` as its remote
        // address; the circuit itself is our listen address at the relay.
        let relayed = endpoint.is_relayed();
        let addr = match endpoint {
            ConnectedPoint::Listener { local_addr, .. } if relayed => local_addr.clone(),
            other => other.get_remote_address().clone(),
        };
        tracing::debug!(%peer, %addr, relayed, "connection established");
        self.punch_on_connect(peer, relayed);
        let event = self.connections.established(peer, id, addr, relayed);
        self.emit(event);
        self.bootstrap.established(id, peer, Instant::now());
        if let Some(reply) = self.pending_dials.remove(&id) {
            let _ = reply.send(Reply::ok("dial"));
        }
        self.catch_up_with_member(peer);
    }

    fn on_connection_closed(&mut self, peer: PeerId, id: ConnectionId, cause: Option<String>) {
        tracing::debug!(%peer, ?cause, "connection closed");
        if let Some(event) = self.connections.closed(peer, id) {
            self.emit(event);
            self.bootstrap.disconnected(peer, Instant::now());
            self.nat_peer_lost(peer, Instant::now());
            self.catch_ups.peer_gone(&peer);
        }
    }

    fn on_dial_error(&mut self, id: ConnectionId, error: DialError) {
        tracing::debug!("dial failed: {error}");
        if let Some(reply) = self.pending_dials.remove(&id) {
            let _ = reply.send(Reply::error(
                ErrorCode::DialFailed,
                truncate(&format!("dial failed: {error}"), 600),
            ));
        }
        if let Some(addr) = self.bootstrap.addr_of(id) {
            tracing::info!(%addr, "bootstrap peer unreachable; will retry: {error}");
            self.bootstrap.dial_failed(&addr, Instant::now());
        }
    }

    fn on_new_listen_addr(&mut self, listener: ListenerId, address: Multiaddr) {
        tracing::info!(%address, "listening");
        self.unreported_listeners.remove(&listener);
        self.nat_listen_addr(listener, &address);
        if !self.listen_addrs.contains(&address) && self.listen_addrs.len() < MAX_LISTEN_ADDRS {
            self.listen_addrs.push(address);
        }
    }

    fn on_listener_closed(
        &mut self,
        listener: ListenerId,
        addresses: Vec<Multiaddr>,
        reason: Result<(), std::io::Error>,
    ) {
        tracing::info!(?addresses, ?reason, "listener closed");
        self.nat_listener_closed(listener, &addresses);
        self.listen_addrs.retain(|a| !addresses.contains(a));
    }

    fn on_external_addr_confirmed(&mut self, address: Multiaddr) {
        tracing::info!(%address, "reachable at a confirmed external address");
        self.relays.addresses_changed(Instant::now());
    }

    fn on_gossipsub(&mut self, event: gossipsub::Event) {
        match event {
            gossipsub::Event::Message {
                propagation_source,
                message_id,
                message,
            } => self.on_gossip_message(propagation_source, message_id, message),
            gossipsub::Event::Subscribed { peer_id, topic } => {
                tracing::debug!(%peer_id, %topic, "peer subscribed");
                if let Some(room) = room_of(&topic) {
                    self.rooms.on_peer_subscribed(&room, Instant::now());
                }
            }
            gossipsub::Event::SlowPeer {
                peer_id,
                failed_messages,
            } => {
                tracing::debug!(%peer_id, ?failed_messages, "slow peer");
            }
            other => tracing::trace!(?other, "gossipsub event"),
        }
    }

    /// A gossip message arrived. Its envelope is verified, checked and (chat)
    /// stored on the store thread, in one hand-over; [`Self::on_verified`]
    /// forwards it and shows it.
    fn on_gossip_message(
        &mut self,
        from: PeerId,
        id: gossipsub::MessageId,
        message: gossipsub::Message,
    ) {
        use gossipsub::MessageAcceptance::{Ignore, Reject};
        // Gossip is anonymous (see behaviour.rs): the envelope names the
        // author, and `from` answers for whatever it forwards.
        let Some(room) = room_of(&message.topic) else {
            return self.judge(&id, &from, Reject);
        };
        if !self.rooms.is_joined(&room) {
            return self.judge(&id, &from, Ignore);
        }
        if self.verifying >= MAX_VERIFYING {
            tracing::debug!("too many messages waiting for verification; ignoring one");
            self.shed(from, &room);
            return self.judge(&id, &from, Ignore);
        }
        let verified = self.verified_tx.clone();
        let stored = self.done_tx.clone();
        let local = self.local;
        let message_id = id.clone();
        let shed_room = room.clone();
        let queued = self.store.open_and_put(message.data, move |opened| {
            let verdict = live_verdict(from, &room, local, opened, unix_ms());
            let chat = verdict.as_ref().is_ok_and(is_history);
            let to_store = verdict.as_ref().ok().filter(|_| chat).cloned();
            // The verdict goes back at once, so the message is forwarded
            // without waiting for the disk. Never blocks: at most
            // MAX_VERIFYING are under way, and the channel holds that many.
            let _ = verified.blocking_send(Verified {
                id: message_id,
                from,
                verdict,
                chat,
            });
            to_store.map(|envelope| {
                let shown = envelope.clone();
                let done: PutDone = Box::new(move |result| {
                    let new = result
                        .map(|n| n.first().copied().unwrap_or(false))
                        .map_err(|e| e.to_string());
                    let _ = stored.send(Done::Stored {
                        envelope: shown,
                        new,
                    });
                });
                (envelope, done)
            })
        });
        match queued {
            Ok(()) => self.verifying += 1,
            Err(busy) => {
                tracing::debug!("a live message is dropped: {busy}");
                self.shed(from, &shed_room);
                self.judge(&id, &from, Ignore);
            }
        }
    }

    /// A live message from `from` was not taken in (more load than this
    /// node can verify and store): `from` has it, and is asked for it once
    /// the load has eased ([`Self::recover_shed`]).
    fn shed(&mut self, from: PeerId, room: &RoomName) {
        let since = unix_ms().saturating_sub(SHED_LOOKBACK_MS);
        self.catch_ups.shed(from, room, since);
    }

    fn on_verified(&mut self, v: Verified) {
        use gossipsub::MessageAcceptance::{Accept, Ignore};
        self.verifying = self.verifying.saturating_sub(1);
        match v.verdict {
            // Left while it was being verified.
            Ok(envelope) if !self.rooms.is_joined(&envelope.payload().room) => {
                self.judge(&v.id, &v.from, Ignore);
            }
            Ok(envelope) => {
                self.judge(&v.id, &v.from, Accept);
                // Chat is shown once stored (`Done::Stored`); presence at once.
                if !v.chat {
                    self.show_live(&envelope, true);
                }
            }
            Err(acceptance) => self.judge(&v.id, &v.from, acceptance),
        }
    }

    fn judge(
        &mut self,
        id: &gossipsub::MessageId,
        from: &PeerId,
        acceptance: gossipsub::MessageAcceptance,
    ) {
        self.swarm
            .behaviour_mut()
            .gossipsub
            .report_message_validation_result(id, from, acceptance);
    }

    fn on_mdns(&mut self, event: mdns::Event) {
        let mdns::Event::Discovered(found) = event else {
            return;
        };
        let mut by_peer: HashMap<PeerId, Vec<Multiaddr>> = HashMap::new();
        for (peer, addr) in found {
            if peer != self.local && !self.swarm.is_connected(&peer) {
                by_peer.entry(peer).or_default().push(addr);
            }
        }
        for (peer, mut addrs) in by_peer {
            // Both sides discover each other; the smaller peer id dials, the
            // other only if a later announcement finds them still apart.
            let first_sighting = self.mdns_seen.insert(peer);
            if self.mdns_seen.len() > MAX_MDNS_SEEN {
                self.mdns_seen.clear();
            }
            if first_sighting && self.local > peer {
                continue;
            }
            addrs.sort_by_key(|a| !a.iter().any(|p| matches!(p, Protocol::QuicV1)));
            tracing::info!(%peer, "found on the local network");
            let opts = libp2p::swarm::dial_opts::DialOpts::peer_id(peer)
                .addresses(addrs)
                .condition(libp2p::swarm::dial_opts::PeerCondition::DisconnectedAndNotDialing)
                .build();
            if let Err(e) = self.swarm.dial(opts) {
                tracing::debug!(%peer, "cannot dial a local peer: {e}");
            }
        }
    }

    // ---- timers ----

    fn on_tick(&mut self) {
        let now = Instant::now();
        if self.state_unsaved {
            self.save_state(None);
        }
        let (events, beacons) = self.rooms.tick(now);
        self.emit_room_events(events);
        for room in beacons {
            let _ = self.publish(&room, Body::Presence);
        }
        if self.shutdown.is_none() {
            for addr in self.bootstrap.due(now, |p| self.swarm.is_connected(p)) {
                self.dial_bootstrap(addr, now);
            }
            self.nat_tick(now);
            self.retry_catch_ups(now);
            self.recover_shed(now);
        }
    }

    fn dial_bootstrap(&mut self, addr: Multiaddr, now: Instant) {
        let opts = dial_opts(&addr);
        let id = opts.connection_id();
        match self.swarm.dial(opts) {
            Ok(()) => self.bootstrap.dialing(&addr, id),
            Err(DialError::DialPeerConditionFalse(_)) => {}
            Err(e) => {
                tracing::info!(%addr, "cannot dial bootstrap peer: {e}");
                self.bootstrap.dial_failed(&addr, now);
            }
        }
    }

    // ---- helpers ----

    fn with_p2p(&self, addr: &Multiaddr) -> Multiaddr {
        if peer_of(addr).is_some() {
            addr.clone()
        } else {
            addr.clone().with(Protocol::P2p(self.local))
        }
    }

    fn listen_addrs_p2p(&self) -> Vec<String> {
        self.listen_addrs
            .iter()
            .map(|a| self.with_p2p(a).to_string())
            .collect()
    }
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// Decides whether a gossip message's opened envelope is forwarded (Accept),
/// dropped (Ignore) or held against the peer that sent it (Reject). Runs on
/// the store thread, so it sees nothing but its arguments.
fn live_verdict(
    from: PeerId,
    room: &RoomName,
    local: PeerId,
    envelope: Result<Envelope, EnvelopeError>,
    now_ms: u64,
) -> Result<Envelope, gossipsub::MessageAcceptance> {
    use gossipsub::MessageAcceptance::{Ignore, Reject};
    let envelope = envelope.map_err(|e| {
        tracing::debug!(%from, "envelope refused: {e}");
        if e.is_malformed() { Reject } else { Ignore }
    })?;
    let payload = envelope.payload();
    if payload.room != *room {
        tracing::debug!(%from, "payload names another room than its topic");
        return Err(Reject);
    }
    if envelope.author() == local {
        return Err(Ignore);
    }
    // Live gossip is fresh: an old payload can only be a replay (history
    // comes by catch-up, not gossip). Clocks may differ by a few minutes.
    if now_ms.abs_diff(payload.ts) > MAX_CLOCK_SKEW_MS {
        tracing::debug!(%from, ts = payload.ts, "stale or future payload");
        return Err(Ignore);
    }
    Ok(envelope)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

    use gossipsub::MessageAcceptance::{Ignore, Reject};
    use palaver_proto::wire::Payload;

    use super::*;

    const NOW: u64 = 1_700_000_000_000;

    fn chat(author: &Keypair, room: &str, ts: u64) -> Envelope {
        let payload = Payload {
            room: room.parse().unwrap(),
            nick: "ann".parse().unwrap(),
            ts,
            session: 1,
            seq: 1,
            body: Body::Chat("hello".parse().unwrap()),
        };
        Envelope::seal(author, payload).unwrap()
    }

    fn verdict(
        envelope: Envelope,
        topic_room: &str,
        local: PeerId,
    ) -> Option<gossipsub::MessageAcceptance> {
        let from = PeerId::random();
        let opened = Envelope::open(envelope.as_bytes());
        live_verdict(from, &topic_room.parse().unwrap(), local, opened, NOW).err()
    }

    #[test]
    fn a_fresh_envelope_for_its_topic_is_accepted() {
        let author = Keypair::generate_ed25519();
        assert_eq!(
            verdict(
                chat(&author, "lobby", NOW - 1_000),
                "lobby",
                PeerId::random()
            ),
            None
        );
    }

    #[test]
    fn an_envelope_naming_another_room_than_its_topic_is_rejected() {
        let author = Keypair::generate_ed25519();
        assert_eq!(
            verdict(chat(&author, "other", NOW), "lobby", PeerId::random()),
            Some(Reject)
        );
    }

    #[test]
    fn own_stale_and_future_envelopes_are_ignored() {
        let author = Keypair::generate_ed25519();
        let me = author.public().to_peer_id();
        assert_eq!(
            verdict(chat(&author, "lobby", NOW), "lobby", me),
            Some(Ignore)
        );
        let stale = NOW - MAX_CLOCK_SKEW_MS - 1;
        assert_eq!(
            verdict(chat(&author, "lobby", stale), "lobby", PeerId::random()),
            Some(Ignore)
        );
        let future = NOW + MAX_CLOCK_SKEW_MS + 1;
        assert_eq!(
            verdict(chat(&author, "lobby", future), "lobby", PeerId::random()),
            Some(Ignore)
        );
    }

    #[test]
    fn a_truncated_envelope_is_rejected_and_an_unknown_version_ignored() {
        let author = Keypair::generate_ed25519();
        let bytes = chat(&author, "lobby", NOW).as_bytes().to_vec();
        let room = "lobby".parse().unwrap();
        let judge = |b: &[u8]| {
            live_verdict(
                PeerId::random(),
                &room,
                PeerId::random(),
                Envelope::open(b),
                NOW,
            )
            .err()
        };
        assert_eq!(judge(&bytes[..bytes.len() - 10]), Some(Reject));
        // A later version may be valid to nodes that know it: not held against the sender.
        assert_eq!(judge(b"\xffa later version"), Some(Ignore));
    }
}
