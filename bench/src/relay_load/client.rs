//! One load client: its swarm (its own key; TCP, Noise, Yamux; relay client,
//! rendezvous client and a small echo protocol) and the task that drives it,
//! reserving and registering during the ramp, then opening a circuit,
//! discovering and echoing as the coordinator asks.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use libp2p::core::transport::ListenerId;
use libp2p::multiaddr::Protocol;
use libp2p::rendezvous::Namespace;
use libp2p::request_response::{self, OutboundRequestId, ProtocolSupport};
use libp2p::swarm::dial_opts::DialOpts;
use libp2p::swarm::{ConnectionId, NetworkBehaviour, SwarmEvent};
use libp2p::{PeerId, StreamProtocol, Swarm, SwarmBuilder, noise, relay, rendezvous, tcp, yamux};
use serde::{Deserialize, Serialize};
use tokio::sync::{Semaphore, mpsc};

use super::messages::{Command, Plan, Report, Tally};
use super::raw_discover::{DiscoverAnswer, DiscoverRequest, RawDiscoverCodec};
use super::relay_process::Target;
use super::{ECHO_BYTES, STEP_TIMEOUT};

/// Registration TTL asked for (the relay accepts 60 s to 24 h).
const REGISTRATION_TTL: u64 = 300;
/// Most registrations asked for in one discover (the node asks for 200).
const DISCOVER_LIMIT: u64 = 200;
/// The echo protocol: each request is answered with itself.
const ECHO_PROTOCOL: StreamProtocol = StreamProtocol::new("/palaver-bench/echo/1");
/// Request timeout of discovers and echoes.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// A client: reserves, registers, discovers, and echoes over circuits.
#[derive(NetworkBehaviour)]
struct Client {
    relay: relay::client::Behaviour,
    rendezvous: rendezvous::client::Behaviour,
    /// Discovers without checking the answer's records (see `raw_discover`).
    discover: request_response::Behaviour<RawDiscoverCodec>,
    echo: request_response::cbor::Behaviour<Echo, Echo>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Echo(String);

fn client_swarm() -> anyhow::Result<Swarm<Client>> {
    Ok(SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )?
        .with_relay_client(noise::Config::new, yamux::Config::default)?
        .with_behaviour(|key, relay| Client {
            relay,
            rendezvous: rendezvous::client::Behaviour::new(key.clone()),
            discover: request_response::Behaviour::with_codec(
                RawDiscoverCodec,
                [(rendezvous::PROTOCOL_NAME, ProtocolSupport::Outbound)],
                request_response::Config::default().with_request_timeout(REQUEST_TIMEOUT),
            ),
            echo: request_response::cbor::Behaviour::new(
                [(ECHO_PROTOCOL, ProtocolSupport::Full)],
                request_response::Config::default().with_request_timeout(REQUEST_TIMEOUT),
            ),
        })?
        // Circuits stay open between echoes; the reservation keeps the relay connection.
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(600)))
        .build())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Reservation,
    Registration,
}

enum CircuitState {
    Pending { since: Instant },
    Up(ConnectionId),
    Done,
}

/// One client's swarm and state.
struct ClientTask {
    index: usize,
    swarm: Swarm<Client>,
    target: Target,
    /// Where it registers, if it does.
    namespace: Option<Namespace>,
    reports: mpsc::UnboundedSender<Report>,
    listener: Option<ListenerId>,
    reserved: bool,
    circuit: Option<(PeerId, CircuitState)>,
    plan: Option<Plan>,
    discovers_sent: usize,
    /// The discover awaiting its answer: its request id when it went on the
    /// wire (`raw_discover`), and when it was sent.
    discover_sent: Option<(Option<OutboundRequestId>, Instant)>,
    echo_sent: Option<(OutboundRequestId, Instant)>,
    payload: String,
    tally: Tally,
}

enum Wake {
    Command(Command),
    Swarm(SwarmEvent<ClientEvent>),
    Timer,
}

/// One client's life: reserve and register (one of a bounded number at
/// once), then follow the coordinator's commands until told to stop.
pub(super) async fn client(
    index: usize,
    target: Target,
    namespace: Option<Namespace>,
    ramp: Arc<Semaphore>,
    reports: mpsc::UnboundedSender<Report>,
    commands: mpsc::UnboundedReceiver<Command>,
) {
    let Ok(permit) = ramp.acquire_owned().await else {
        return;
    };
    let swarm = match client_swarm() {
        Ok(s) => s,
        Err(e) => {
            let _ = reports.send(Report::Refused {
                why: format!("cannot build the client: {e}"),
            });
            return;
        }
    };
    let mut c = ClientTask {
        index,
        swarm,
        target,
        namespace,
        reports,
        listener: None,
        reserved: false,
        circuit: None,
        plan: None,
        discovers_sent: 0,
        discover_sent: None,
        echo_sent: None,
        payload: "x".repeat(ECHO_BYTES),
        tally: Tally::default(),
    };
    let outcome = tokio::time::timeout(STEP_TIMEOUT, c.ramp()).await;
    drop(permit);
    let outcome = outcome.unwrap_or_else(|_| {
        Err(if c.reserved {
            (
                Stage::Registration,
                "no registration answer in time".to_owned(),
            )
        } else {
            (
                Stage::Reservation,
                "no reservation answer in time".to_owned(),
            )
        })
    });
    let peer = *c.swarm.local_peer_id();
    let report = match outcome {
        Ok(()) => Report::Reserved {
            index,
            peer,
            registration: c.namespace.is_some().then_some(Ok(())),
        },
        // Still reserved: it keeps its reservation.
        Err((Stage::Registration, why)) => Report::Reserved {
            index,
            peer,
            registration: Some(Err(why)),
        },
        Err((Stage::Reservation, why)) => Report::Refused { why },
    };
    let reserved = matches!(report, Report::Reserved { .. });
    let _ = c.reports.send(report);
    if reserved {
        c.serve(commands).await;
    }
}

impl ClientTask {
    /// Connects to the relay, reserves a slot, and registers.
    async fn ramp(&mut self) -> Result<(), (Stage, String)> {
        let refused = |why: String| (Stage::Reservation, why);
        self.swarm
            .dial(self.target.addr.clone())
            .map_err(|e| refused(format!("cannot dial the relay: {e}")))?;
        loop {
            match self.swarm.select_next_some().await {
                SwarmEvent::ConnectionEstablished { peer_id, .. }
                    if peer_id == self.target.peer && self.listener.is_none() =>
                {
                    let circuit = self.target.addr.clone().with(Protocol::P2pCircuit);
                    let listener = self
                        .swarm
                        .listen_on(circuit)
                        .map_err(|e| refused(format!("cannot ask for a reservation: {e}")))?;
                    self.listener = Some(listener);
                }
                SwarmEvent::OutgoingConnectionError { error, .. } => {
                    return Err(refused(format!("cannot connect to the relay: {error}")));
                }
                SwarmEvent::ConnectionClosed { peer_id, cause, .. }
                    if peer_id == self.target.peer =>
                {
                    return Err(refused(format!(
                        "the relay closed the connection: {cause:?}"
                    )));
                }
                SwarmEvent::ListenerClosed {
                    listener_id,
                    reason,
                    ..
                } if Some(listener_id) == self.listener => {
                    let why = match reason {
                        Ok(()) => "closed".to_owned(),
                        Err(e) => e.to_string(),
                    };
                    return Err(refused(format!("reservation refused: {why}")));
                }
                SwarmEvent::ListenerError { listener_id, error }
                    if Some(listener_id) == self.listener =>
                {
                    return Err(refused(format!("reservation failed: {error}")));
                }
                SwarmEvent::Behaviour(ClientEvent::Relay(
                    relay::client::Event::ReservationReqAccepted { .. },
                )) if !self.reserved => {
                    self.reserved = true;
                    let Some(ns) = self.namespace.clone() else {
                        return Ok(());
                    };
                    // The relay client has already confirmed the relayed
                    // address as external: it is what the registration carries.
                    self.swarm
                        .behaviour_mut()
                        .rendezvous
                        .register(ns, self.target.peer, Some(REGISTRATION_TTL))
                        .map_err(|e| (Stage::Registration, format!("cannot register: {e}")))?;
                }
                SwarmEvent::Behaviour(ClientEvent::Rendezvous(
                    rendezvous::client::Event::Registered { .. },
                )) => return Ok(()),
                SwarmEvent::Behaviour(ClientEvent::Rendezvous(
                    rendezvous::client::Event::RegisterFailed { error, .. },
                )) => {
                    return Err((
                        Stage::Registration,
                        format!("registration refused: {error:?}"),
                    ));
                }
                _ => {}
            }
        }
    }

    async fn serve(mut self, mut commands: mpsc::UnboundedReceiver<Command>) {
        loop {
            let now = Instant::now();
            self.tick(now);
            let wake_at = self.next_wake(now);
            let sleep =
                tokio::time::sleep_until(wake_at.unwrap_or(now + Duration::from_secs(3600)).into());
            let wake = tokio::select! {
                command = commands.recv() => match command {
                    None | Some(Command::Stop) => return,
                    Some(command) => Wake::Command(command),
                },
                event = self.swarm.select_next_some() => Wake::Swarm(event),
                () = sleep, if wake_at.is_some() => Wake::Timer,
            };
            match wake {
                Wake::Command(command) => self.on_command(command),
                Wake::Swarm(event) => self.on_event(event),
                Wake::Timer => {}
            }
        }
    }

    fn on_command(&mut self, command: Command) {
        match command {
            Command::OpenCircuit { dest } => {
                let addr = self
                    .target
                    .addr
                    .clone()
                    .with(Protocol::P2pCircuit)
                    .with(Protocol::P2p(dest));
                let opts = DialOpts::peer_id(dest).addresses(vec![addr]).build();
                match self.swarm.dial(opts) {
                    Ok(()) => {
                        let since = Instant::now();
                        self.circuit = Some((dest, CircuitState::Pending { since }));
                    }
                    Err(e) => {
                        self.circuit = Some((dest, CircuitState::Done));
                        self.report_circuit(dest, Err(format!("cannot dial the circuit: {e}")));
                    }
                }
            }
            Command::Hold(plan) => {
                self.tally.discovers_asked += plan.discover_at.len();
                self.discovers_sent = 0;
                self.plan = Some(plan);
            }
            Command::Stop => {}
        }
    }

    fn report_circuit(&self, dest: PeerId, result: Result<(), String>) {
        let _ = self.reports.send(Report::Circuit {
            index: self.index,
            dest,
            result,
        });
    }

    fn on_event(&mut self, event: SwarmEvent<ClientEvent>) {
        let now = Instant::now();
        match event {
            SwarmEvent::ConnectionEstablished {
                peer_id,
                connection_id,
                endpoint,
                ..
            } => {
                if let Some((dest, state)) = &mut self.circuit
                    && *dest == peer_id
                    && endpoint.is_relayed()
                    && matches!(state, CircuitState::Pending { .. })
                {
                    *state = CircuitState::Up(connection_id);
                    let dest = *dest;
                    self.report_circuit(dest, Ok(()));
                }
            }
            SwarmEvent::OutgoingConnectionError {
                peer_id: Some(peer),
                error,
                ..
            } => {
                if let Some((dest, state)) = &mut self.circuit
                    && *dest == peer
                    && matches!(state, CircuitState::Pending { .. })
                {
                    *state = CircuitState::Done;
                    let dest = *dest;
                    self.report_circuit(dest, Err(format!("circuit refused: {error}")));
                }
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                connection_id,
                cause,
                ..
            } => {
                if peer_id == self.target.peer && !self.tally.reservation_lost {
                    self.tally.reservation_lost = true;
                    self.tally
                        .reasons
                        .add(format!("relay connection lost: {cause:?}"));
                }
                if let Some((_, state)) = &mut self.circuit
                    && matches!(state, CircuitState::Up(c) if *c == connection_id)
                {
                    *state = CircuitState::Done;
                    self.tally.circuit_lost = true;
                    self.tally.reasons.add(format!("circuit lost: {cause:?}"));
                }
            }
            SwarmEvent::ListenerClosed {
                listener_id,
                reason,
                ..
            } if Some(listener_id) == self.listener && !self.tally.reservation_lost => {
                self.tally.reservation_lost = true;
                self.tally
                    .reasons
                    .add(format!("reservation lost: {reason:?}"));
            }
            SwarmEvent::Behaviour(ClientEvent::Rendezvous(event)) => match event {
                rendezvous::client::Event::Discovered { registrations, .. } => {
                    if let Some((None, sent)) = self.discover_sent {
                        self.discover_sent = None;
                        self.tally.discover.push(now.duration_since(sent));
                        self.tally.registrations_seen += registrations.len();
                    }
                }
                rendezvous::client::Event::DiscoverFailed { error, .. }
                    if matches!(self.discover_sent, Some((None, _))) =>
                {
                    self.discover_sent = None;
                    self.tally.discover_failures += 1;
                    self.tally
                        .reasons
                        .add(format!("discover failed: {error:?}"));
                }
                rendezvous::client::Event::RegisterFailed { error, .. } => {
                    self.tally.registrations_lost += 1;
                    self.tally
                        .reasons
                        .add(format!("registration refresh refused: {error:?}"));
                }
                _ => {}
            },
            SwarmEvent::Behaviour(ClientEvent::Discover(event)) => self.on_discover(event, now),
            SwarmEvent::Behaviour(ClientEvent::Echo(event)) => match event {
                request_response::Event::Message { message, .. } => match message {
                    request_response::Message::Request {
                        request, channel, ..
                    } => {
                        let _ = self
                            .swarm
                            .behaviour_mut()
                            .echo
                            .send_response(channel, request);
                    }
                    request_response::Message::Response { request_id, .. } => {
                        if let Some((id, sent)) = self.echo_sent
                            && id == request_id
                        {
                            self.echo_sent = None;
                            self.tally.echo.push(now.duration_since(sent));
                        }
                    }
                },
                request_response::Event::OutboundFailure {
                    request_id, error, ..
                } => {
                    if let Some((id, _)) = self.echo_sent
                        && id == request_id
                    {
                        self.echo_sent = None;
                        self.tally.echo_failures += 1;
                        self.tally.reasons.add(format!("echo failed: {error}"));
                    }
                }
                _ => {}
            },
            _ => {}
        }
    }

    fn on_discover(
        &mut self,
        event: request_response::Event<DiscoverRequest, DiscoverAnswer>,
        now: Instant,
    ) {
        let (request_id, answer) = match event {
            request_response::Event::Message {
                message:
                    request_response::Message::Response {
                        request_id,
                        response,
                    },
                ..
            } => (request_id, Ok(response)),
            request_response::Event::OutboundFailure {
                request_id, error, ..
            } => (request_id, Err(error.to_string())),
            _ => return,
        };
        let Some((Some(id), sent)) = self.discover_sent else {
            return;
        };
        if id != request_id {
            return;
        }
        self.discover_sent = None;
        match answer {
            Ok(DiscoverAnswer {
                status: 0,
                registrations,
            }) => {
                self.tally.discover_unchecked.push(now.duration_since(sent));
                self.tally.registrations_seen += registrations;
            }
            Ok(DiscoverAnswer { status, .. }) => {
                self.tally.discover_failures += 1;
                self.tally
                    .reasons
                    .add(format!("discover refused with status {status}"));
            }
            Err(error) => {
                self.tally.discover_failures += 1;
                self.tally.reasons.add(format!("discover failed: {error}"));
            }
        }
    }

    /// Sends what is due, gives up on a circuit that takes too long, and
    /// reports a finished hold.
    fn tick(&mut self, now: Instant) {
        if let Some((dest, state)) = &mut self.circuit
            && let CircuitState::Pending { since } = state
            && now.duration_since(*since) >= STEP_TIMEOUT
        {
            *state = CircuitState::Done;
            let dest = *dest;
            self.report_circuit(dest, Err("no circuit in time".to_owned()));
        }
        let Some(plan) = &mut self.plan else {
            return;
        };
        if self.discover_sent.is_none()
            && plan.discover_at.front().is_some_and(|at| *at <= now)
            && now < plan.give_up
        {
            plan.discover_at.pop_front();
            let turn = self.discovers_sent % plan.discover_in.len().max(1);
            self.discovers_sent += 1;
            match plan.discover_in.get(turn) {
                Some(ns) if plan.check_records => {
                    self.swarm.behaviour_mut().rendezvous.discover(
                        Some(ns.clone()),
                        None,
                        Some(DISCOVER_LIMIT),
                        self.target.peer,
                    );
                    self.discover_sent = Some((None, now));
                }
                Some(ns) => {
                    let id = self
                        .swarm
                        .behaviour_mut()
                        .discover
                        .send_request(&self.target.peer, DiscoverRequest::new(ns, DISCOVER_LIMIT));
                    self.discover_sent = Some((Some(id), now));
                }
                None => {
                    self.tally.discover_failures += 1;
                    self.tally.reasons.add("no namespace to discover");
                }
            }
        }
        if let Some(echo) = &mut plan.echo
            && self.echo_sent.is_none()
            && echo.next <= now
            && now < plan.until
        {
            let id = self
                .swarm
                .behaviour_mut()
                .echo
                .send_request(&echo.to, Echo(self.payload.clone()));
            self.echo_sent = Some((id, now));
            // A late echo does not make the next ones come in a burst.
            echo.next = (echo.next + echo.every).max(now);
        }
        let finished = now >= plan.until
            && plan.discover_at.is_empty()
            && self.discover_sent.is_none()
            && self.echo_sent.is_none();
        if finished || now >= plan.give_up {
            let unanswered =
                plan.discover_at.len() + usize::from(self.discover_sent.take().is_some());
            if unanswered > 0 {
                self.tally.discover_failures += unanswered;
                self.tally
                    .reasons
                    .add("discover unanswered by the end of the hold");
            }
            if self.echo_sent.take().is_some() {
                self.tally.echo_failures += 1;
                self.tally
                    .reasons
                    .add("echo unanswered by the end of the hold");
            }
            self.plan = None;
            let tally = std::mem::take(&mut self.tally);
            let _ = self.reports.send(Report::Held { tally });
        }
    }

    /// When something is next due, if anything is.
    fn next_wake(&self, now: Instant) -> Option<Instant> {
        let circuit = match &self.circuit {
            Some((_, CircuitState::Pending { since })) => Some(*since + STEP_TIMEOUT),
            _ => None,
        };
        let plan = self.plan.as_ref().map(|plan| {
            let mut at = if now < plan.until {
                plan.until
            } else {
                plan.give_up
            };
            if self.discover_sent.is_none()
                && let Some(d) = plan.discover_at.front()
            {
                at = at.min(*d);
            }
            if let Some(echo) = &plan.echo
                && self.echo_sent.is_none()
                && echo.next < plan.until
            {
                at = at.min(echo.next);
            }
            at
        });
        match (circuit, plan) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}
