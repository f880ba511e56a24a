//! Relay under load: a load generator holding many reservations, relayed
//! circuits with traffic, and rendezvous register/discover from many peers,
//! against a real `relay` process; its memory, CPU and discover latency,
//! beside the same relay idle.
//!
//! The relay runs as its own process with its default limits, listening on
//! loopback TCP and QUIC. The generator is this process: one swarm per client
//! (its own key; TCP, Noise, Yamux; relay client, rendezvous client and a
//! small echo protocol), each driven by its own task. The load's clients share
//! one runtime; three probe clients, which time discovers and echoes, run on
//! threads of their own (the echo's two ends on one, the discoverer on
//! another), so that what they time is the relay, not a queue of a thousand
//! clients in this process. A discover's time includes the client's own work
//! on the answer (libp2p's rendezvous codec checks the signature of every
//! record in it), shown beside it as a floor timed in this process. The
//! generator and the relay share the machine's cores. In order:
//!
//! 1. Idle: the relay's RSS and CPU with no client at all.
//! 2. Baseline on the idle relay: the probes reserve, two of them open a
//!    circuit; a room's worth of clients (as many as share a namespace under
//!    load) register under one namespace and leave (their registrations stay
//!    for their TTL). One probe discovers that namespace and one echoes
//!    [`ECHO_BYTES`] over the circuit, every [`PROBE_EVERY`] for
//!    [`IDLE_PROBE`].
//! 3. Ramp: `reservations` clients connect ([`RAMP_CONCURRENCY`] at a time,
//!    well under the relay's 256 pending incoming connections), each reserves
//!    a slot (`listen_on(<relay>/p2p-circuit)`) and the first
//!    `rendezvous_peers` register under one of [`ROOMS`] namespaces; then
//!    `circuits` disjoint pairs of them open a circuit source → relay →
//!    destination.
//! 4. Hold: for `hold`, every circuit carries an echo of [`ECHO_BYTES`] every
//!    [`ECHO_INTERVAL`], every rendezvous peer discovers its namespace several
//!    times (evenly spread, so the relay sees a steady rate), and the probes
//!    time discovers of the load's namespaces and echoes as when idle, while
//!    the relay's RSS and CPU are sampled.
//!
//! A client is refused when a reservation, registration, circuit, discover
//! or echo fails or goes unanswered, or when a reservation or circuit it
//! held is lost before the end of the hold. The relay's default circuit
//! limits (1 h, 64 MiB each way) are far above what the hold uses.

use std::collections::{BTreeMap, VecDeque};
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command as Process, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail};
use futures::StreamExt;
use libp2p::core::transport::ListenerId;
use libp2p::multiaddr::Protocol;
use libp2p::rendezvous::Namespace;
use libp2p::request_response::{self, OutboundRequestId, ProtocolSupport};
use libp2p::swarm::dial_opts::DialOpts;
use libp2p::swarm::{ConnectionId, NetworkBehaviour, SwarmEvent};
use libp2p::{
    Multiaddr, PeerId, StreamProtocol, Swarm, SwarmBuilder, noise, relay, rendezvous, tcp, yamux,
};
use serde::{Deserialize, Serialize};
use tokio::runtime::Handle;
use tokio::sync::{Semaphore, mpsc};

use crate::procfs;
use crate::report::{Row, mib, ms};
use crate::stats::{Latency, ratio};

/// How much load to generate.
#[derive(Debug, Clone)]
pub struct Options {
    /// The `relay` binary.
    pub relay: PathBuf,
    /// A scratch directory for the relay's identity and logs.
    pub work_dir: PathBuf,
    pub reservations: usize,
    pub circuits: usize,
    pub rendezvous_peers: usize,
    /// How long the full load is held while measured.
    pub hold: Duration,
}

/// How many of something were asked for and how they ended.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Count {
    pub asked: usize,
    /// Granted (a reservation, registration, circuit) or answered (a discover, an echo).
    pub ok: usize,
    /// Refused, failed or unanswered.
    pub refused: usize,
    /// Granted, then lost before the end of the hold.
    pub lost: usize,
}

impl Count {
    /// Granted and still held at the end.
    pub fn held(&self) -> usize {
        self.ok.saturating_sub(self.lost)
    }

    pub fn failures(&self) -> usize {
        self.refused + self.lost
    }

    fn fraction(&self) -> String {
        format!("{}/{}", self.held(), self.asked)
    }

    fn add(&mut self, other: &Count) {
        self.asked += other.asked;
        self.ok += other.ok;
        self.refused += other.refused;
        self.lost += other.lost;
    }
}

/// The figures.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Figures {
    /// The load's clients.
    pub reservations: Count,
    pub registrations: Count,
    pub circuits: Count,
    pub discovers: Count,
    pub echoes: Count,
    /// The probes under load: their discovers and echoes, and their
    /// reservations and circuit (asked once, lost or not).
    pub probe_discovers: Count,
    pub probe_echoes: Count,
    pub probe_connections: Count,
    /// On the idle relay: the room's clients, and the probes.
    pub idle_clients: Count,
    pub idle_registrations: Count,
    pub idle_circuits: Count,
    pub idle_discovers: Count,
    pub idle_echoes: Count,
    /// Every failure under load (refused, unanswered or lost), all kinds.
    pub refusals: usize,
    /// Why, with how many times each.
    pub refusal_reasons: Vec<String>,
    pub namespaces: usize,
    /// Mean registrations in one discover answer: the probe's under load,
    /// the load's clients', and the probe's on the idle relay.
    pub registrations_per_answer: f64,
    pub load_registrations_per_answer: f64,
    pub idle_registrations_per_answer: f64,
    /// Discover → answer, timed by the probe under load.
    pub discover: Latency,
    /// The same, timed by the load's clients themselves.
    pub load_discover: Latency,
    /// The probe's on the idle relay.
    pub idle_discover: Latency,
    /// The client's own share of a discover: decoding and verifying the
    /// signed peer records of one answer (what libp2p's rendezvous codec
    /// does), timed in this process before the load starts.
    pub discover_verify_floor: Latency,
    /// Echo round trips over a circuit: the probe's under load, the load's
    /// circuits', the probe's on the idle relay.
    pub echo: Latency,
    pub load_echo: Latency,
    pub idle_echo: Latency,
    pub echo_bytes: usize,
    pub echo_interval_ms: f64,
    pub probe_every_ms: f64,
    /// Relay RSS with no client.
    pub relay_rss_idle_mib: f64,
    /// Highest relay RSS sampled during the hold.
    pub relay_rss_loaded_mib: f64,
    /// Relay VmHWM at the end of the hold (the ramp included).
    pub relay_peak_rss_mib: f64,
    /// Relay CPU, percent of one core: idle, and during the hold.
    pub relay_cpu_idle_pct: f64,
    pub relay_cpu_hold_pct: f64,
    /// Relay CPU seconds for the whole ramp, and the ramp's wall time.
    pub relay_cpu_ramp_s: f64,
    pub ramp_s: f64,
    /// This process (the load generator) during the hold, percent of one core.
    pub generator_cpu_hold_pct: f64,
    pub hold_s: f64,
    pub wall_s: f64,
    pub open_files_limit: u64,
}

/// Clients connecting to the relay at once during a ramp.
const RAMP_CONCURRENCY: usize = 64;
/// Rendezvous namespaces the load's peers are spread over (rooms).
const ROOMS: usize = 10;
/// The namespace of the room registered on the idle relay.
const IDLE_ROOM: &str = "bench-idle";
/// Registration TTL asked for (the relay accepts 60 s to 24 h).
const REGISTRATION_TTL: u64 = 300;
/// Most registrations asked for in one discover (the node asks for 200).
const DISCOVER_LIMIT: u64 = 200;
/// One discover per rendezvous peer per this much of the hold (a node
/// discovers each room every 15 s: this is three times that rate)...
const DISCOVER_PERIOD: Duration = Duration::from_secs(5);
/// ...and at least this many per peer.
const MIN_DISCOVERS_PER_PEER: usize = 3;
/// Echo payload over each circuit, and how often.
const ECHO_BYTES: usize = 1024;
const ECHO_INTERVAL: Duration = Duration::from_millis(250);
const ECHO_PROTOCOL: StreamProtocol = StreamProtocol::new("/palaver-bench/echo/1");
/// The probes: one discover and one echo this often, idle and under load.
const PROBE_EVERY: Duration = Duration::from_millis(20);
/// How long the probes time the idle relay.
const IDLE_PROBE: Duration = Duration::from_secs(2);
/// Rounds of the verification floor.
const FLOOR_ROUNDS: usize = 31;
/// How long the idle relay's CPU is watched.
const IDLE_WINDOW: Duration = Duration::from_secs(1);
/// Longest wait for one client's reservation and registration, or one circuit.
const STEP_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest wait for answers still due when the hold ends.
const GRACE: Duration = Duration::from_secs(5);
/// Request timeout of discovers and echoes.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the relay's memory is sampled during the hold.
const SAMPLE_EVERY: Duration = Duration::from_millis(250);
/// Longest wait for the relay to print its listen addresses.
const RELAY_START_TIMEOUT: Duration = Duration::from_secs(15);
/// The issue's targets.
const RSS_TARGET_MB: f64 = 200.0;
const DISCOVER_P99_TARGET_MS: f64 = 10.0;
/// Bytes per MB over bytes per MiB.
const MIB_IN_MB: f64 = 1.048_576;
/// Most distinct failure reasons kept.
const MAX_REASONS: usize = 24;

pub fn run(options: &Options) -> anyhow::Result<Figures> {
    let began = Instant::now();
    if options.reservations == 0 {
        bail!("relay load: no reservations asked for");
    }
    if options.rendezvous_peers > options.reservations {
        bail!(
            "relay load: {} rendezvous peers but {} reservations: the rendezvous peers are \
             reserving clients (a registration carries the relayed address), so at most as many",
            options.rendezvous_peers,
            options.reservations
        );
    }
    if options.circuits * 2 > options.reservations {
        bail!(
            "relay load: {} circuits need {} reserving clients (disjoint pairs), only {} asked for",
            options.circuits,
            options.circuits * 2,
            options.reservations
        );
    }
    std::fs::create_dir_all(&options.work_dir)
        .with_context(|| format!("cannot create {}", options.work_dir.display()))?;
    // One socket per client on each side, plus the runtime's and the relay's own.
    let clients = options.reservations + room_size(options.rendezvous_peers) + PROBES;
    let open_files_limit = ensure_open_files(clients as u64 + 512)?;
    let floor = verify_floor(room_size(options.rendezvous_peers), FLOOR_ROUNDS)?;
    let mut relay = RelayProcess::start(options)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the load generator's runtime")?;
    // The echo probes and the discover probe each have a thread of their
    // own: a discover answer costs its client milliseconds of CPU, which an
    // echo must not wait behind.
    let probe_runtime = |name: &str| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name(name)
            .enable_all()
            .build()
            .context("cannot start a probe's runtime")
    };
    let echo_probes = probe_runtime("relay-load-echo")?;
    let discover_probe = probe_runtime("relay-load-discover")?;
    let probes = [
        echo_probes.handle().clone(),
        discover_probe.handle().clone(),
    ];
    let result = runtime.block_on(measure(options, &mut relay, &probes));
    // Every client closes with its runtime; then the relay is stopped (also on error).
    for r in [echo_probes, discover_probe, runtime] {
        r.shutdown_timeout(Duration::from_secs(5));
    }
    let exited = relay.child.try_wait().ok().flatten();
    drop(relay);
    let mut figures = result?;
    if let Some(status) = exited {
        bail!("the relay exited during the benchmark ({status})");
    }
    figures.discover_verify_floor = floor;
    figures.open_files_limit = open_files_limit;
    figures.wall_s = began.elapsed().as_secs_f64();
    Ok(figures)
}

/// The three probe clients: an echo's destination, its source, a discoverer.
const PROBES: usize = 3;

/// The probes, ready: their fleet and who does what.
struct Probes {
    fleet: Fleet,
    echo_source: usize,
    echo_dest: PeerId,
    discoverer: usize,
}

impl Probes {
    /// Reserves the probes (the echo's two ends on the first runtime, the
    /// discoverer on the second) and opens their circuit.
    async fn start(
        [echo, discover]: &[Handle; 2],
        target: &Target,
        f: &mut Figures,
    ) -> anyhow::Result<Self> {
        let runtimes = [echo.clone(), echo.clone(), discover.clone()];
        let mut fleet = Fleet::spawn(&runtimes, PROBES, target, |_| None);
        let ramp = fleet.ramp(Instant::now() + ramp_deadline(PROBES)).await?;
        let &[(_, echo_dest), (echo_source, _), (discoverer, _)] = ramp.reserved.as_slice() else {
            bail!(
                "the idle relay refused a probe's reservation: {}",
                ramp.reasons.list().join("; ")
            );
        };
        let circuits = fleet
            .open_circuits(
                &[(echo_source, echo_dest)],
                Instant::now() + STEP_TIMEOUT + GRACE,
            )
            .await?;
        f.idle_circuits = Count {
            asked: 1,
            ok: circuits.established.len(),
            refused: circuits.refused,
            lost: 0,
        };
        if circuits.established.is_empty() {
            bail!(
                "the idle relay refused the probes' circuit: {}",
                circuits.reasons.list().join("; ")
            );
        }
        Ok(Self {
            fleet,
            echo_source,
            echo_dest,
            discoverer,
        })
    }

    /// Starts one discover (of `namespaces` in turn) and one echo every
    /// [`PROBE_EVERY`] from `start` to `until`.
    fn hold(&self, namespaces: Vec<Namespace>, start: Instant, until: Instant) {
        let times = (until.duration_since(start).as_secs_f64() / PROBE_EVERY.as_secs_f64()) as u32;
        let give_up = until + GRACE;
        self.fleet.send(
            self.discoverer,
            Command::Hold(Plan {
                discover_at: (0..times).map(|j| start + PROBE_EVERY * j).collect(),
                discover_in: namespaces,
                echo: None,
                until,
                give_up,
            }),
        );
        self.fleet.send(
            self.echo_source,
            Command::Hold(Plan {
                discover_at: VecDeque::new(),
                discover_in: Vec::new(),
                echo: Some(Echoing {
                    to: self.echo_dest,
                    every: PROBE_EVERY,
                    next: start,
                }),
                until,
                give_up,
            }),
        );
        // The echo's destination only answers; it reports losses.
        if let Some(dest) = (0..PROBES).find(|i| *i != self.discoverer && *i != self.echo_source) {
            self.fleet.send(
                dest,
                Command::Hold(Plan {
                    discover_at: VecDeque::new(),
                    discover_in: Vec::new(),
                    echo: None,
                    until,
                    give_up,
                }),
            );
        }
    }

    /// What the probes timed during a hold.
    async fn held(&mut self, deadline: Instant) -> anyhow::Result<Summary> {
        let tallies = self.fleet.held(PROBES, deadline).await?;
        Ok(Summary::of(tallies))
    }
}

/// Tallies summed.
#[derive(Default)]
struct Summary {
    discovers: Count,
    echoes: Count,
    reservations_lost: usize,
    circuits_lost: usize,
    discover: Vec<Duration>,
    echo: Vec<Duration>,
    registrations_seen: usize,
    registrations_lost: usize,
    reasons: Reasons,
}

impl Summary {
    fn of(tallies: Vec<Tally>) -> Self {
        let mut s = Self::default();
        for t in tallies {
            s.reasons.merge(&t.reasons);
            s.discovers.asked += t.discovers_asked;
            s.discovers.ok += t.discover.len();
            s.discovers.refused += t.discover_failures;
            s.echoes.asked += t.echo.len() + t.echo_failures;
            s.echoes.ok += t.echo.len();
            s.echoes.refused += t.echo_failures;
            s.reservations_lost += usize::from(t.reservation_lost);
            s.circuits_lost += usize::from(t.circuit_lost);
            s.registrations_lost += t.registrations_lost;
            s.registrations_seen += t.registrations_seen;
            s.discover.extend(t.discover);
            s.echo.extend(t.echo);
        }
        s
    }

    fn per_answer(&self) -> f64 {
        ratio(self.registrations_seen as f64, self.discover.len() as f64)
    }
}

async fn measure(
    options: &Options,
    relay: &mut RelayProcess,
    probe_runtimes: &[Handle; 2],
) -> anyhow::Result<Figures> {
    let runtime = [Handle::current()];
    let pid = relay.child.id();
    let target = relay.target.clone();
    let mut f = Figures {
        namespaces: ROOMS.min(options.rendezvous_peers.max(1)),
        echo_bytes: ECHO_BYTES,
        echo_interval_ms: ECHO_INTERVAL.as_secs_f64() * 1e3,
        probe_every_ms: PROBE_EVERY.as_secs_f64() * 1e3,
        hold_s: options.hold.as_secs_f64(),
        ..Figures::default()
    };

    // 1. Idle.
    tokio::time::sleep(Duration::from_millis(300)).await;
    f.relay_rss_idle_mib = procfs::memory(pid)?.rss_mib;
    let cpu = procfs::cpu_time(pid)?;
    tokio::time::sleep(IDLE_WINDOW).await;
    f.relay_cpu_idle_pct = percent(procfs::cpu_time(pid)?.saturating_sub(cpu), IDLE_WINDOW);

    // 2. Baseline on the idle relay.
    let mut probes = Probes::start(probe_runtimes, &target, &mut f).await?;
    let size = room_size(options.rendezvous_peers);
    let mut room = Fleet::spawn(&runtime, size, &target, |_| Some(namespace(IDLE_ROOM)));
    let ramp = room.ramp(Instant::now() + ramp_deadline(size)).await?;
    f.idle_clients = Count {
        asked: size,
        ok: ramp.reserved.len(),
        refused: ramp.reservations_refused,
        lost: 0,
    };
    f.idle_registrations = Count {
        asked: size,
        ok: ramp.registered.len(),
        refused: ramp.registrations_refused,
        lost: 0,
    };
    if ramp.registered.len() < size {
        bail!(
            "the idle relay refused {} of {size} clients: {}",
            size - ramp.registered.len(),
            ramp.reasons.list().join("; ")
        );
    }
    // Their registrations stay for their TTL: the namespace the probe discovers.
    room.stop().await;
    let start = Instant::now() + Duration::from_millis(50);
    probes.hold(vec![namespace(IDLE_ROOM)], start, start + IDLE_PROBE);
    let idle = probes
        .held(start + IDLE_PROBE + GRACE + Duration::from_secs(5))
        .await?;
    f.idle_discovers = idle.discovers;
    f.idle_echoes = idle.echoes;
    f.idle_registrations_per_answer = idle.per_answer();
    f.idle_discover = Latency::of(&idle.discover);
    f.idle_echo = Latency::of(&idle.echo);
    if idle.discover.is_empty() || idle.echo.is_empty() {
        bail!(
            "the idle relay answered no discover or no echo: {}",
            idle.reasons.list().join("; ")
        );
    }

    // 3. Ramp.
    tracing::info!(
        reservations = options.reservations,
        circuits = options.circuits,
        rendezvous_peers = options.rendezvous_peers,
        "relay load: ramping up"
    );
    let mut reasons = Reasons::default();
    let ramp_began = Instant::now();
    let ramp_cpu = procfs::cpu_time(pid)?;
    let registrants = options.rendezvous_peers;
    let rooms: Vec<Namespace> = (0..f.namespaces)
        .map(|r| namespace(&format!("bench-{r}")))
        .collect();
    let room_of = |i: usize| rooms.get(i % rooms.len().max(1)).cloned();
    let mut fleet = Fleet::spawn(&runtime, options.reservations, &target, |i| {
        (i < registrants).then(|| room_of(i)).flatten()
    });
    let ramp = fleet
        .ramp(ramp_began + ramp_deadline(options.reservations))
        .await?;
    reasons.merge(&ramp.reasons);
    f.reservations = Count {
        asked: options.reservations,
        ok: ramp.reserved.len(),
        refused: ramp.reservations_refused,
        lost: 0,
    };
    f.registrations = Count {
        asked: registrants,
        ok: ramp.registered.len(),
        refused: ramp.registrations_refused,
        lost: 0,
    };
    let pairs = circuit_pairs(&ramp.reserved, options.circuits);
    let circuits = fleet
        .open_circuits(&pairs, Instant::now() + STEP_TIMEOUT + GRACE)
        .await?;
    reasons.merge(&circuits.reasons);
    f.circuits = Count {
        asked: options.circuits,
        ok: circuits.established.len(),
        refused: circuits.refused,
        lost: 0,
    };
    f.ramp_s = ramp_began.elapsed().as_secs_f64();
    f.relay_cpu_ramp_s = procfs::cpu_time(pid)?
        .saturating_sub(ramp_cpu)
        .as_secs_f64();
    tracing::info!(
        reserved = ramp.reserved.len(),
        circuits = circuits.established.len(),
        seconds = f.ramp_s,
        "relay load: holding"
    );

    // 4. Hold.
    let start = Instant::now() + Duration::from_millis(100);
    let until = start + options.hold;
    let per_peer = discovers_per_peer(options.hold);
    let sources: BTreeMap<usize, PeerId> = circuits.established.iter().copied().collect();
    for (index, _) in &ramp.reserved {
        let mine = ramp
            .registered
            .contains_key(index)
            .then(|| room_of(*index))
            .flatten();
        let discover_at = match &mine {
            Some(_) => discover_offsets(*index, registrants, per_peer, options.hold)
                .into_iter()
                .map(|o| start + o)
                .collect(),
            None => VecDeque::new(),
        };
        let echo = sources.get(index).map(|dest| {
            // Circuits take turns so the relay sees a steady rate.
            let turn = sources.range(..index).count();
            Echoing {
                to: *dest,
                every: ECHO_INTERVAL,
                next: start + ECHO_INTERVAL.mul_f64(turn as f64 / sources.len() as f64),
            }
        });
        fleet.send(
            *index,
            Command::Hold(Plan {
                discover_at,
                discover_in: mine.into_iter().collect(),
                echo,
                until,
                give_up: until + GRACE,
            }),
        );
    }
    probes.hold(rooms.clone(), start, until);
    tokio::time::sleep_until(start.into()).await;
    let relay_cpu = procfs::cpu_time(pid)?;
    let own_cpu = procfs::own_cpu_time()?;
    let mut loaded = 0.0f64;
    loop {
        let now = Instant::now();
        if now >= until {
            break;
        }
        tokio::time::sleep(SAMPLE_EVERY.min(until - now)).await;
        loaded = loaded.max(procfs::memory(pid)?.rss_mib);
    }
    let held = until.duration_since(start);
    f.relay_cpu_hold_pct = percent(procfs::cpu_time(pid)?.saturating_sub(relay_cpu), held);
    f.generator_cpu_hold_pct = percent(procfs::own_cpu_time()?.saturating_sub(own_cpu), held);
    let memory = procfs::memory(pid)?;
    f.relay_rss_loaded_mib = loaded.max(memory.rss_mib);
    f.relay_peak_rss_mib = memory.peak_rss_mib;
    if let Ok(Some(status)) = relay.child.try_wait() {
        bail!("the relay exited under load ({status}); see its log in the work directory");
    }
    let deadline = until + GRACE + Duration::from_secs(5);
    let load = Summary::of(fleet.held(ramp.reserved.len(), deadline).await?);
    let probed = probes.held(deadline).await?;
    fleet.stop().await;
    probes.fleet.stop().await;

    reasons.merge(&load.reasons);
    reasons.merge(&probed.reasons);
    f.discovers = load.discovers;
    f.echoes = load.echoes;
    f.load_discover = Latency::of(&load.discover);
    f.load_echo = Latency::of(&load.echo);
    f.load_registrations_per_answer = load.per_answer();
    f.reservations.lost = load.reservations_lost;
    f.circuits.lost = load.circuits_lost;
    f.registrations.lost = load.registrations_lost;
    f.probe_discovers = probed.discovers;
    f.probe_echoes = probed.echoes;
    // The probes' reservations and their circuit, all granted at the start.
    f.probe_connections = Count {
        asked: PROBES + 1,
        ok: PROBES + 1,
        refused: 0,
        lost: probed.reservations_lost + probed.circuits_lost + probed.registrations_lost,
    };
    f.discover = Latency::of(&probed.discover);
    f.echo = Latency::of(&probed.echo);
    f.registrations_per_answer = probed.per_answer();
    f.refusals = [
        &f.reservations,
        &f.registrations,
        &f.circuits,
        &f.discovers,
        &f.echoes,
        &f.probe_discovers,
        &f.probe_echoes,
        &f.probe_connections,
    ]
    .iter()
    .map(|c| c.failures())
    .sum();
    f.refusal_reasons = reasons.list();
    Ok(f)
}

pub fn rows(f: &Figures) -> Vec<Row> {
    const B: &str = "relay";
    let rss_target = format!(
        "≤ {RSS_TARGET_MB:.0} MB (= {:.1} MiB)",
        RSS_TARGET_MB / MIB_IN_MB
    );
    let load = format!(
        "{} reservations, {} circuits, {} rendezvous peers",
        f.reservations.asked, f.circuits.asked, f.registrations.asked
    );
    let idle_mib = format!("{} idle", mib(f.relay_rss_idle_mib));
    let idle_cpu = format!("{} idle", core_pct(f.relay_cpu_idle_pct));
    let with_lost = |c: &Count| {
        if c.lost > 0 {
            format!("{} ({} lost)", c.fraction(), c.lost)
        } else {
            c.fraction()
        }
    };
    let idle_failures: usize = [
        &f.idle_clients,
        &f.idle_registrations,
        &f.idle_circuits,
        &f.idle_discovers,
        &f.idle_echoes,
    ]
    .iter()
    .map(|c| c.failures())
    .sum();
    vec![
        Row::new(
            B,
            "reservations held to the end of the hold",
            with_lost(&f.reservations),
        )
        .baseline(format!("idle relay: {}", f.idle_clients.fraction())),
        Row::new(
            B,
            format!("rendezvous registrations ({} namespaces)", f.namespaces),
            with_lost(&f.registrations),
        )
        .baseline(format!("idle relay: {}", f.idle_registrations.fraction())),
        Row::new(
            B,
            format!(
                "circuits, each echoing {} B every {:.0} ms",
                f.echo_bytes, f.echo_interval_ms
            ),
            with_lost(&f.circuits),
        )
        .baseline(format!("idle relay: {}", f.idle_circuits.fraction())),
        Row::new(
            B,
            format!("discovers answered during the {:.0} s hold", f.hold_s),
            f.discovers.fraction(),
        )
        .baseline(format!("idle relay: {}", f.idle_discovers.fraction())),
        Row::new(
            B,
            format!("relay RSS under load ({load})"),
            mib(f.relay_rss_loaded_mib),
        )
        .against(
            idle_mib.clone(),
            ratio(f.relay_rss_loaded_mib, f.relay_rss_idle_mib),
        )
        .target(
            rss_target.clone(),
            within_megabytes(f.relay_rss_loaded_mib, RSS_TARGET_MB),
        ),
        Row::new(
            B,
            "relay peak RSS (VmHWM, the ramp included)",
            mib(f.relay_peak_rss_mib),
        )
        .against(idle_mib, ratio(f.relay_peak_rss_mib, f.relay_rss_idle_mib))
        .target(
            rss_target,
            within_megabytes(f.relay_peak_rss_mib, RSS_TARGET_MB),
        ),
        Row::new(
            B,
            "relay CPU during the hold",
            core_pct(f.relay_cpu_hold_pct),
        )
        .against(
            idle_cpu.clone(),
            ratio(f.relay_cpu_hold_pct, f.relay_cpu_idle_pct),
        ),
        Row::new(
            B,
            format!("relay CPU for the ramp ({:.1} s)", f.ramp_s),
            format!("{:.2} CPU-s", f.relay_cpu_ramp_s),
        )
        .baseline(idle_cpu),
        Row::new(
            B,
            format!(
                "discover → answer p50, probe ({:.0} registrations an answer)",
                f.registrations_per_answer
            ),
            ms(f.discover.p50_ms),
        )
        .against(
            format!(
                "{} idle ({:.0} an answer)",
                ms(f.idle_discover.p50_ms),
                f.idle_registrations_per_answer
            ),
            ratio(f.discover.p50_ms, f.idle_discover.p50_ms),
        ),
        Row::new(
            B,
            format!(
                "discover → answer p99, probe ({} samples)",
                f.discover.samples
            ),
            ms(f.discover.p99_ms),
        )
        .against(
            format!("{} idle", ms(f.idle_discover.p99_ms)),
            ratio(f.discover.p99_ms, f.idle_discover.p99_ms),
        )
        .target(
            format!("discover p99 ≤ {DISCOVER_P99_TARGET_MS:.0} ms"),
            f.discover.samples > 0 && f.discover.p99_ms <= DISCOVER_P99_TARGET_MS,
        ),
        Row::new(
            B,
            format!(
                "discover: the client's own share, verifying {:.0} signed records (median)",
                f.idle_registrations_per_answer
            ),
            ms(f.discover_verify_floor.p50_ms),
        )
        .against(
            format!("{} idle discover p50", ms(f.idle_discover.p50_ms)),
            ratio(f.discover_verify_floor.p50_ms, f.idle_discover.p50_ms),
        ),
        Row::new(
            B,
            format!(
                "discover → answer p99 as the {} load clients time it (all in this process)",
                f.registrations.asked
            ),
            ms(f.load_discover.p99_ms),
        )
        .against(
            format!("{} idle", ms(f.idle_discover.p99_ms)),
            ratio(f.load_discover.p99_ms, f.idle_discover.p99_ms),
        ),
        Row::new(
            B,
            format!(
                "echo round trip over a circuit p50, probe ({} samples)",
                f.echo.samples
            ),
            ms(f.echo.p50_ms),
        )
        .against(
            format!("{} idle", ms(f.idle_echo.p50_ms)),
            ratio(f.echo.p50_ms, f.idle_echo.p50_ms),
        ),
        Row::new(
            B,
            "echo round trip over a circuit p99, probe",
            ms(f.echo.p99_ms),
        )
        .against(
            format!("{} idle", ms(f.idle_echo.p99_ms)),
            ratio(f.echo.p99_ms, f.idle_echo.p99_ms),
        ),
        Row::new(
            B,
            format!(
                "echo round trip p99 over the {} load circuits (all in this process)",
                f.circuits.held()
            ),
            ms(f.load_echo.p99_ms),
        )
        .against(
            format!("{} idle", ms(f.idle_echo.p99_ms)),
            ratio(f.load_echo.p99_ms, f.idle_echo.p99_ms),
        ),
        Row::new(B, "honest clients refused", refusals_text(f))
            .baseline(format!("idle relay: {idle_failures}"))
            .target("no honest client refused", f.refusals == 0),
        Row::new(
            B,
            "load generator CPU during the hold (same machine)",
            core_pct(f.generator_cpu_hold_pct),
        )
        .baseline(format!(
            "{} cores shared with the relay",
            std::thread::available_parallelism().map_or(0, |n| n.get())
        )),
    ]
}

fn refusals_text(f: &Figures) -> String {
    if f.refusals == 0 {
        return "0".to_owned();
    }
    let mut probe_requests = f.probe_discovers;
    probe_requests.add(&f.probe_echoes);
    let parts: Vec<String> = [
        ("reservations", &f.reservations),
        ("registrations", &f.registrations),
        ("circuits", &f.circuits),
        ("discovers", &f.discovers),
        ("echoes", &f.echoes),
        ("probe requests", &probe_requests),
        ("probe connections", &f.probe_connections),
    ]
    .iter()
    .filter(|(_, c)| c.failures() > 0)
    .map(|(what, c)| format!("{} {what}", c.failures()))
    .collect();
    format!("{} ({})", f.refusals, parts.join(", "))
}

fn core_pct(v: f64) -> String {
    format!("{v:.1} % of a core")
}

/// CPU time over wall time, percent of one core.
fn percent(cpu: Duration, wall: Duration) -> f64 {
    ratio(cpu.as_secs_f64(), wall.as_secs_f64()) * 100.0
}

/// Whether `mib` MiB is at most `mb` MB (10^6 bytes).
fn within_megabytes(mib: f64, mb: f64) -> bool {
    mib * MIB_IN_MB <= mb
}

/// The idle relay's room: as many clients as share a namespace under load.
fn room_size(rendezvous_peers: usize) -> usize {
    rendezvous_peers.div_ceil(ROOMS).max(1)
}

/// How long a whole ramp of `clients` may take.
fn ramp_deadline(clients: usize) -> Duration {
    STEP_TIMEOUT * (clients.div_ceil(RAMP_CONCURRENCY) as u32 + 1)
}

fn discovers_per_peer(hold: Duration) -> usize {
    ((hold.as_secs_f64() / DISCOVER_PERIOD.as_secs_f64()) as usize).max(MIN_DISCOVERS_PER_PEER)
}

/// When peer `i` of `n` discovers, `k` times within `span`: each peer once
/// in each k-th of the span, the peers in turn, so that together they ask
/// at a steady rate.
fn discover_offsets(i: usize, n: usize, k: usize, span: Duration) -> Vec<Duration> {
    let n = n.max(1) as f64;
    (0..k)
        .map(|j| span.mul_f64((j as f64 + i as f64 / n) / k as f64))
        .collect()
}

/// Disjoint (source, destination) pairs among the reserved clients: the
/// source's index and the destination's peer id.
fn circuit_pairs(reserved: &[(usize, PeerId)], circuits: usize) -> Vec<(usize, PeerId)> {
    reserved
        .chunks_exact(2)
        .take(circuits)
        .filter_map(|pair| match pair {
            [(source, _), (_, dest)] => Some((*source, *dest)),
            _ => None,
        })
        .collect()
}

fn namespace(name: &str) -> Namespace {
    Namespace::new(name.to_owned()).unwrap_or_else(|_| Namespace::from_static("bench"))
}

/// Failure reasons and how often each came.
#[derive(Debug, Default)]
struct Reasons(BTreeMap<String, usize>);

impl Reasons {
    fn add(&mut self, why: impl Into<String>) {
        let why = why.into();
        if self.0.len() < MAX_REASONS || self.0.contains_key(&why) {
            *self.0.entry(why).or_default() += 1;
        }
    }

    fn merge(&mut self, other: &Reasons) {
        for (why, n) in &other.0 {
            if self.0.len() < MAX_REASONS || self.0.contains_key(why) {
                *self.0.entry(why.clone()).or_default() += n;
            }
        }
    }

    fn list(&self) -> Vec<String> {
        self.0
            .iter()
            .map(|(why, n)| format!("{n}× {why}"))
            .collect()
    }
}

/// The floor of a discover answer of `n` registrations on the client: decode
/// and verify `n` signed peer records (each with a relayed address, as the
/// load's are), as libp2p's rendezvous codec does for every answer.
fn verify_floor(n: usize, rounds: usize) -> anyhow::Result<Latency> {
    let relay = PeerId::random();
    let records = (0..n)
        .map(|_| {
            let key = libp2p::identity::Keypair::generate_ed25519();
            let addr: Multiaddr = format!(
                "/ip4/127.0.0.1/tcp/4001/p2p/{relay}/p2p-circuit/p2p/{}",
                key.public().to_peer_id()
            )
            .parse()?;
            let record = libp2p::core::PeerRecord::new(&key, vec![addr])?;
            Ok(record.into_signed_envelope().into_protobuf_encoding())
        })
        .collect::<anyhow::Result<Vec<Vec<u8>>>>()?;
    let mut times = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let began = Instant::now();
        for bytes in &records {
            let envelope = libp2p::core::SignedEnvelope::from_protobuf_encoding(bytes)?;
            let record = libp2p::core::PeerRecord::from_signed_envelope(envelope)?;
            std::hint::black_box(record);
        }
        times.push(began.elapsed());
    }
    Ok(Latency::of(&times))
}

// ---------------------------------------------------------------------------
// The relay process.

/// Where the clients reach the relay.
#[derive(Debug, Clone)]
struct Target {
    /// Its TCP address, ending in `/p2p/<relay>`.
    addr: Multiaddr,
    peer: PeerId,
}

/// The running relay; killed (and reaped) when dropped, on every path.
struct RelayProcess {
    child: Child,
    target: Target,
}

impl Drop for RelayProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl RelayProcess {
    fn start(options: &Options) -> anyhow::Result<Self> {
        let log = options.work_dir.join("relay.stderr");
        let stderr =
            File::create(&log).with_context(|| format!("cannot create {}", log.display()))?;
        let mut child = Process::new(&options.relay)
            .arg("--json")
            .arg("--identity")
            .arg(options.work_dir.join("relay.key"))
            .args(["--listen", "/ip4/127.0.0.1/tcp/0"])
            .args(["--listen", "/ip4/127.0.0.1/udp/0/quic-v1"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .with_context(|| format!("cannot start {}", options.relay.display()))?;
        let stdout = child.stdout.take();
        // From here on the relay is killed whatever happens.
        let mut relay = Self {
            child,
            target: Target {
                addr: Multiaddr::empty(),
                peer: PeerId::random(),
            },
        };
        let stdout = stdout.ok_or_else(|| anyhow!("no stdout from the relay"))?;
        let (lines, from_relay) = std::sync::mpsc::channel();
        // Reads stdout to its end (when the relay exits), so it never blocks on it.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = lines.send(line);
            }
        });
        let deadline = Instant::now() + RELAY_START_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match from_relay.recv_timeout(left) {
                Ok(line) => {
                    if let Some(addr) = listening_addr(&line).filter(is_tcp)
                        && let Some(peer) = peer_of(&addr)
                    {
                        relay.target = Target { addr, peer };
                        return Ok(relay);
                    }
                }
                Err(_) => {
                    let status = relay.child.try_wait().ok().flatten();
                    bail!(
                        "the relay printed no TCP listen address within {} s{}: {}",
                        RELAY_START_TIMEOUT.as_secs(),
                        status.map_or(String::new(), |s| format!(" (it exited: {s})")),
                        tail(&log)
                    );
                }
            }
        }
    }
}

/// The last lines of a log, for an error message.
fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let tail = lines[lines.len().saturating_sub(5)..].join(" | ");
    if tail.is_empty() {
        format!("{} is empty", path.display())
    } else {
        tail
    }
}

/// The address of a `{"event":"listening","addr":…}` line.
fn listening_addr(line: &str) -> Option<Multiaddr> {
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    if v.get("event")?.as_str()? != "listening" {
        return None;
    }
    v.get("addr")?.as_str()?.parse().ok()
}

fn is_tcp(addr: &Multiaddr) -> bool {
    addr.iter().any(|p| matches!(p, Protocol::Tcp(_)))
        && !addr
            .iter()
            .any(|p| matches!(p, Protocol::Ws(_) | Protocol::Wss(_) | Protocol::P2pCircuit))
}

fn peer_of(addr: &Multiaddr) -> Option<PeerId> {
    match addr.iter().last() {
        Some(Protocol::P2p(peer)) => Some(peer),
        _ => None,
    }
}

/// Makes sure this process (and so the relay it starts) may open `needed`
/// files, raising the soft limit to the hard one if it must.
fn ensure_open_files(needed: u64) -> anyhow::Result<u64> {
    let (soft, hard) = open_files_limits()?;
    if soft >= needed {
        return Ok(soft);
    }
    if hard > soft {
        // setrlimit(2) would need unsafe code here: util-linux's prlimit does it.
        let raised = Process::new("prlimit")
            .arg(format!("--pid={}", std::process::id()))
            .arg(format!("--nofile={hard}:{hard}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if let Err(e) = raised {
            tracing::warn!("cannot run prlimit to raise the open-file limit: {e}");
        }
    }
    let (soft, _) = open_files_limits()?;
    if soft < needed {
        bail!(
            "the open-file limit is {soft} (hard {hard}) but this load needs about {needed} \
             (one socket per client in this process and in the relay): raise it, e.g. \
             `ulimit -n {needed}`, or run smaller sizes"
        );
    }
    Ok(soft)
}

/// The soft and hard `RLIMIT_NOFILE` of this process.
fn open_files_limits() -> anyhow::Result<(u64, u64)> {
    let limits = std::fs::read_to_string("/proc/self/limits")?;
    let rest = limits
        .lines()
        .find_map(|l| l.strip_prefix("Max open files"))
        .ok_or_else(|| anyhow!("no open-file limit in /proc/self/limits"))?;
    let mut values = rest.split_whitespace().map(|v| {
        if v == "unlimited" {
            Ok(u64::MAX)
        } else {
            v.parse::<u64>()
        }
    });
    let soft = values.next().ok_or_else(|| anyhow!("unreadable limit"))??;
    let hard = values.next().ok_or_else(|| anyhow!("unreadable limit"))??;
    Ok((soft, hard))
}

// ---------------------------------------------------------------------------
// The load generator's clients.

/// A client: reserves, registers, discovers, and echoes over circuits.
#[derive(NetworkBehaviour)]
struct Client {
    relay: relay::client::Behaviour,
    rendezvous: rendezvous::client::Behaviour,
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
            echo: request_response::cbor::Behaviour::new(
                [(ECHO_PROTOCOL, ProtocolSupport::Full)],
                request_response::Config::default().with_request_timeout(REQUEST_TIMEOUT),
            ),
        })?
        // Circuits stay open between echoes; the reservation keeps the relay connection.
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(600)))
        .build())
}

/// What the coordinator asks of a reserved client.
enum Command {
    OpenCircuit { dest: PeerId },
    Hold(Plan),
    Stop,
}

/// What a client does during a hold.
struct Plan {
    /// When to discover (each waits for the previous answer)...
    discover_at: VecDeque<Instant>,
    /// ...and which namespaces, in turn.
    discover_in: Vec<Namespace>,
    echo: Option<Echoing>,
    /// No echo is sent from then on.
    until: Instant,
    /// Whatever is still unanswered then counts as failed.
    give_up: Instant,
}

struct Echoing {
    to: PeerId,
    every: Duration,
    next: Instant,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Reservation,
    Registration,
}

/// What a client tells the coordinator.
enum Report {
    /// Reserved; and registered, or why not, if it was to register.
    Reserved {
        index: usize,
        peer: PeerId,
        registration: Option<Result<(), String>>,
    },
    /// No reservation (the client has stopped).
    Refused {
        why: String,
    },
    Circuit {
        index: usize,
        dest: PeerId,
        result: Result<(), String>,
    },
    Held {
        tally: Tally,
    },
}

/// What one client saw during a hold (and since its ramp).
#[derive(Debug, Default)]
struct Tally {
    discovers_asked: usize,
    discover: Vec<Duration>,
    discover_failures: usize,
    registrations_seen: usize,
    echo: Vec<Duration>,
    echo_failures: usize,
    reservation_lost: bool,
    circuit_lost: bool,
    registrations_lost: usize,
    reasons: Reasons,
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
    discover_sent: Option<Instant>,
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
async fn client(
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
                    if let Some(sent) = self.discover_sent.take() {
                        self.tally.discover.push(now.duration_since(sent));
                        self.tally.registrations_seen += registrations.len();
                    }
                }
                rendezvous::client::Event::DiscoverFailed { error, .. }
                    if self.discover_sent.take().is_some() =>
                {
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
                Some(ns) => {
                    self.swarm.behaviour_mut().rendezvous.discover(
                        Some(ns.clone()),
                        None,
                        Some(DISCOVER_LIMIT),
                        self.target.peer,
                    );
                    self.discover_sent = Some(now);
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

/// The clients of one phase, and the coordinator's side of their channels.
struct Fleet {
    size: usize,
    commands: Vec<mpsc::UnboundedSender<Command>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    reports: mpsc::UnboundedReceiver<Report>,
}

/// How a ramp went.
#[derive(Default)]
struct Ramp {
    /// Clients holding a reservation, by index.
    reserved: Vec<(usize, PeerId)>,
    /// Which of them registered (the others were not to, or were refused).
    registered: BTreeMap<usize, PeerId>,
    reservations_refused: usize,
    registrations_refused: usize,
    reasons: Reasons,
}

/// How opening circuits went.
#[derive(Default)]
struct Circuits {
    /// Source index and destination of each circuit up.
    established: Vec<(usize, PeerId)>,
    refused: usize,
    reasons: Reasons,
}

impl Fleet {
    /// Starts `size` clients, client `i` on `runtimes[i]` (or the last), to
    /// register under `namespace(i)`.
    fn spawn(
        runtimes: &[Handle],
        size: usize,
        target: &Target,
        namespace: impl Fn(usize) -> Option<Namespace>,
    ) -> Self {
        let ramp = Arc::new(Semaphore::new(RAMP_CONCURRENCY));
        let (report, reports) = mpsc::unbounded_channel();
        let mut commands = Vec::with_capacity(size);
        let mut tasks = Vec::with_capacity(size);
        for index in 0..size {
            let (command, rx) = mpsc::unbounded_channel();
            commands.push(command);
            let Some(runtime) = runtimes.get(index).or(runtimes.last()) else {
                break;
            };
            tasks.push(runtime.spawn(client(
                index,
                target.clone(),
                namespace(index),
                ramp.clone(),
                report.clone(),
                rx,
            )));
        }
        Self {
            size,
            commands,
            tasks,
            reports,
        }
    }

    fn send(&self, index: usize, command: Command) {
        if let Some(c) = self.commands.get(index) {
            let _ = c.send(command);
        }
    }

    async fn next(&mut self, deadline: Instant, waiting_for: &str) -> anyhow::Result<Report> {
        match tokio::time::timeout_at(deadline.into(), self.reports.recv()).await {
            Ok(Some(report)) => Ok(report),
            Ok(None) => bail!("every client stopped while waiting for {waiting_for}"),
            Err(_) => bail!("timed out waiting for {waiting_for}"),
        }
    }

    async fn ramp(&mut self, deadline: Instant) -> anyhow::Result<Ramp> {
        let mut ramp = Ramp::default();
        for _ in 0..self.size {
            match self.next(deadline, "the clients' reservations").await? {
                Report::Reserved {
                    index,
                    peer,
                    registration,
                } => {
                    ramp.reserved.push((index, peer));
                    match registration {
                        Some(Ok(())) => {
                            ramp.registered.insert(index, peer);
                        }
                        Some(Err(why)) => {
                            ramp.registrations_refused += 1;
                            ramp.reasons.add(why);
                        }
                        None => {}
                    }
                }
                Report::Refused { why } => {
                    ramp.reservations_refused += 1;
                    ramp.reasons.add(why);
                }
                _ => {}
            }
        }
        ramp.reserved.sort_unstable_by_key(|(i, _)| *i);
        Ok(ramp)
    }

    async fn open_circuits(
        &mut self,
        pairs: &[(usize, PeerId)],
        deadline: Instant,
    ) -> anyhow::Result<Circuits> {
        for (source, dest) in pairs {
            self.send(*source, Command::OpenCircuit { dest: *dest });
        }
        let mut circuits = Circuits::default();
        let mut answered = 0;
        while answered < pairs.len() {
            if let Report::Circuit {
                index,
                dest,
                result,
            } = self.next(deadline, "the circuits").await?
            {
                answered += 1;
                match result {
                    Ok(()) => circuits.established.push((index, dest)),
                    Err(why) => {
                        circuits.refused += 1;
                        circuits.reasons.add(why);
                    }
                }
            }
        }
        circuits.established.sort_unstable_by_key(|(i, _)| *i);
        Ok(circuits)
    }

    async fn held(&mut self, count: usize, deadline: Instant) -> anyhow::Result<Vec<Tally>> {
        let mut tallies = Vec::with_capacity(count);
        while tallies.len() < count {
            if let Report::Held { tally } = self.next(deadline, "the end of the hold").await? {
                tallies.push(tally);
            }
        }
        Ok(tallies)
    }

    /// Stops every client and waits (a little) for each to close.
    async fn stop(self) {
        for c in &self.commands {
            let _ = c.send(Command::Stop);
        }
        drop(self.commands);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        for task in self.tasks {
            let _ = tokio::time::timeout_at(deadline, task).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discovers_are_spread_evenly_over_the_hold() {
        let span = Duration::from_secs(30);
        let mut all: Vec<Duration> = (0..1000)
            .flat_map(|i| discover_offsets(i, 1000, 6, span))
            .collect();
        assert!(all.iter().all(|o| *o < span));
        all.sort();
        let even = span.as_secs_f64() / 6000.0;
        assert!(
            all.windows(2)
                .all(|w| ((w[1] - w[0]).as_secs_f64() - even).abs() < 1e-6)
        );
        assert_eq!(discover_offsets(0, 1, 3, span).len(), 3);
    }

    #[test]
    fn a_short_hold_still_discovers_several_times() {
        assert_eq!(
            discovers_per_peer(Duration::from_secs(3)),
            MIN_DISCOVERS_PER_PEER
        );
        assert_eq!(discovers_per_peer(Duration::from_secs(30)), 6);
    }

    #[test]
    fn circuits_pair_distinct_clients() {
        let reserved: Vec<(usize, PeerId)> = (0..7).map(|i| (i, PeerId::random())).collect();
        let pairs = circuit_pairs(&reserved, 10);
        assert_eq!(pairs.len(), 3);
        assert_eq!(pairs[0], (0, reserved[1].1));
        assert_eq!(pairs[2], (4, reserved[5].1));
        assert_eq!(circuit_pairs(&reserved, 2).len(), 2);
    }

    #[test]
    fn the_relays_tcp_address_is_read_from_its_listening_line() {
        let peer = PeerId::random();
        let tcp = format!(r#"{{"event":"listening","addr":"/ip4/127.0.0.1/tcp/4001/p2p/{peer}"}}"#);
        let quic = format!(
            r#"{{"event":"listening","addr":"/ip4/127.0.0.1/udp/4001/quic-v1/p2p/{peer}"}}"#
        );
        let addr = listening_addr(&tcp).unwrap();
        assert!(is_tcp(&addr));
        assert_eq!(peer_of(&addr), Some(peer));
        assert!(!is_tcp(&listening_addr(&quic).unwrap()));
        assert!(listening_addr(r#"{"event":"other","addr":"/ip4/1.2.3.4/tcp/1"}"#).is_none());
        assert!(listening_addr("not json").is_none());
    }

    #[test]
    fn the_memory_target_is_in_megabytes_not_mebibytes() {
        assert!(within_megabytes(190.0, 200.0));
        assert!(!within_megabytes(195.0, 200.0));
    }

    #[test]
    fn a_refusal_is_counted_and_named() {
        let mut f = Figures::default();
        assert_eq!(refusals_text(&f), "0");
        f.discovers = Count {
            asked: 10,
            ok: 8,
            refused: 2,
            lost: 0,
        };
        f.circuits = Count {
            asked: 4,
            ok: 4,
            refused: 0,
            lost: 1,
        };
        f.refusals = 3;
        assert_eq!(refusals_text(&f), "3 (1 circuits, 2 discovers)");
        assert_eq!(f.circuits.fraction(), "3/4");
        let refused = rows(&f)
            .into_iter()
            .find(|r| r.what == "honest clients refused")
            .unwrap();
        assert!(refused.target.is_some_and(|t| !t.met));
    }

    #[test]
    fn the_idle_room_is_as_big_as_a_loaded_one() {
        assert_eq!(room_size(1000), 100);
        assert_eq!(room_size(100), 10);
        assert_eq!(room_size(5), 1);
    }

    #[test]
    fn the_open_file_limit_is_readable() {
        let (soft, hard) = open_files_limits().unwrap();
        assert!(soft > 0 && hard >= soft);
    }
}
