//! Relay under load: a load generator holding many reservations, relayed
//! circuits with traffic, and rendezvous register/discover from many peers,
//! against a real `relay` process; its memory, CPU and discover latency,
//! beside the same relay idle.
//!
//! The relay runs as its own process with its default limits (the per-IP
//! caps raised: every client is on 127.0.0.1), listening on
//! loopback TCP and QUIC. The generator is this process: one swarm per client
//! (its own key; TCP, Noise, Yamux; relay client, rendezvous client and a
//! small echo protocol), each driven by its own task. The load's clients share
//! one runtime; four probe clients, which time discovers and echoes, run on
//! threads of their own (the echo's two ends on one, each of two discoverers
//! on another), so that what they time is the relay, not a queue of a thousand
//! clients in this process. A probe's discover time includes the client's
//! own work on the answer (libp2p's rendezvous codec checks the signature of
//! every record in it, as a node's does), shown beside it as a floor timed in
//! this process. The second discoverer, and the load's clients, send the
//! same discover request on the wire and only count the records in the
//! answer (`raw_discover`): the relay's work is the same, its answer time is
//! timed apart from the client's checks, and the generator does not spend
//! most of a core checking signatures beside the relay it measures. The generator and
//! the relay share the machine's cores. In order:
//!
//! 1. Idle: the relay's RSS and CPU with no client at all.
//! 2. Baseline on the idle relay: the probes reserve, two of them open a
//!    circuit; a room's worth of clients (as many as share a namespace under
//!    load) register under one namespace and stay connected (a relay drops
//!    the registrations of a peer that leaves). Two probes discover that
//!    namespace and one echoes
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
//! 5. Flood: with the load still connected, one client sends `flood`
//!    discovers, half without a namespace and half for a loaded room with
//!    `limit` 10 000 (`flood`), while the relay's RSS is sampled.
//!
//! A client is refused when a reservation, registration, circuit, discover
//! or echo fails or goes unanswered, or when a reservation or circuit it
//! held is lost before the end of the hold. The relay's default circuit
//! limits (1 h, 64 MiB each way) are far above what the hold uses.

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use libp2p::PeerId;
use libp2p::rendezvous::Namespace;
use serde::Serialize;
use tokio::runtime::Handle;

use crate::procfs;
use crate::stats::{Latency, ratio};

mod client;
mod fleet;
mod flood;
mod messages;
mod open_files;
mod probes;
mod raw_discover;
mod reasons;
mod relay_process;
mod rows;
mod summary;
mod verify_floor;

pub use rows::rows;

use fleet::{Fleet, circuit_pairs, ramp_deadline};
use messages::{Command, Echoing, Plan};
use open_files::ensure_open_files;
use probes::{PROBES, Probes};
use reasons::Reasons;
use relay_process::RelayProcess;
use summary::Summary;
use verify_floor::verify_floor;

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
    /// Discovers in the flood (half without a namespace, half wide).
    pub flood: usize,
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
    /// Discover → answer, timed by the probe under load, checking every
    /// record of the answer as a node does.
    pub discover: Latency,
    /// Discover → answer under load, timed by the probe that only counts the
    /// records: the relay's part of a discover.
    pub relay_discover: Latency,
    /// Discover → answer (records counted), timed by the load's clients themselves.
    pub load_discover: Latency,
    /// The probes' on the idle relay.
    pub idle_discover: Latency,
    pub idle_relay_discover: Latency,
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
    /// The discover flood, after the hold.
    pub flood: flood::Flooded,
    pub flood_limit: u64,
}

/// Clients connecting to the relay at once during a ramp.
const RAMP_CONCURRENCY: usize = 64;
/// Rendezvous namespaces the load's peers are spread over (rooms).
const ROOMS: usize = 10;
/// The namespace of the room registered on the idle relay.
const IDLE_ROOM: &str = "bench-idle";
/// One discover per rendezvous peer per this much of the hold (a node
/// discovers each room every 15 s: this is three times that rate)...
const DISCOVER_PERIOD: Duration = Duration::from_secs(5);
/// ...and at least this many per peer.
const MIN_DISCOVERS_PER_PEER: usize = 3;
/// Echo payload over each circuit, and how often.
const ECHO_BYTES: usize = 1024;
const ECHO_INTERVAL: Duration = Duration::from_millis(250);
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
/// How often the relay's memory is sampled during the hold.
const SAMPLE_EVERY: Duration = Duration::from_millis(250);

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
    let relay_discover_probe = probe_runtime("relay-load-relay-discover")?;
    let probes = [
        echo_probes.handle().clone(),
        discover_probe.handle().clone(),
        relay_discover_probe.handle().clone(),
    ];
    let result = runtime.block_on(measure(options, &mut relay, &probes));
    // Every client closes with its runtime; then the relay is stopped (also on error).
    for r in [echo_probes, discover_probe, relay_discover_probe, runtime] {
        r.shutdown_timeout(Duration::from_secs(5));
    }
    let exited = relay.try_wait();
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

async fn measure(
    options: &Options,
    relay: &mut RelayProcess,
    probe_runtimes: &[Handle; 3],
) -> anyhow::Result<Figures> {
    let runtime = [Handle::current()];
    let pid = relay.pid();
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
    // They stay connected (their registrations go with their connections):
    // the namespace the probe discovers.
    let start = Instant::now() + Duration::from_millis(50);
    probes.hold(vec![namespace(IDLE_ROOM)], start, start + IDLE_PROBE);
    let idle = probes
        .held(start + IDLE_PROBE + GRACE + Duration::from_secs(5))
        .await;
    room.stop().await;
    let idle = idle?;
    f.idle_discovers = idle.discovers;
    f.idle_echoes = idle.echoes;
    f.idle_registrations_per_answer = idle.per_answer();
    f.idle_discover = Latency::of(&idle.discover);
    f.idle_relay_discover = Latency::of(&idle.discover_unchecked);
    f.idle_echo = Latency::of(&idle.echo);
    if idle.discover.is_empty() || idle.discover_unchecked.is_empty() || idle.echo.is_empty() {
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
                check_records: false,
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
    if let Some(status) = relay.try_wait() {
        bail!("the relay exited under load ({status}); see its log in the work directory");
    }
    let deadline = until + GRACE + Duration::from_secs(5);
    let load = Summary::of(fleet.held(ramp.reserved.len(), deadline).await?);
    let probed = probes.held(deadline).await?;

    // 5. Flood, the load still connected (its registrations still held).
    let flooded = match rooms.first() {
        Some(room) if options.flood > 0 => {
            Some(flood::flood(&target, pid, options.flood, room).await)
        }
        _ => None,
    };
    fleet.stop().await;
    if let Some(flooded) = flooded {
        f.flood = flooded?;
        f.flood_limit = flood::FLOOD_LIMIT;
    }
    if let Some(status) = relay.try_wait() {
        bail!("the relay exited under the discover flood ({status})");
    }
    probes.fleet.stop().await;

    reasons.merge(&load.reasons);
    reasons.merge(&probed.reasons);
    f.discovers = load.discovers;
    f.echoes = load.echoes;
    f.load_discover = Latency::of(&load.discover_unchecked);
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
    f.relay_discover = Latency::of(&probed.discover_unchecked);
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

/// CPU time over wall time, percent of one core.
fn percent(cpu: Duration, wall: Duration) -> f64 {
    ratio(cpu.as_secs_f64(), wall.as_secs_f64()) * 100.0
}

/// The idle relay's room: as many clients as share a namespace under load.
fn room_size(rendezvous_peers: usize) -> usize {
    rendezvous_peers.div_ceil(ROOMS).max(1)
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

fn namespace(name: &str) -> Namespace {
    Namespace::new(name.to_owned()).unwrap_or_else(|_| Namespace::from_static("bench"))
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
    fn the_idle_room_is_as_big_as_a_loaded_one() {
        assert_eq!(room_size(1000), 100);
        assert_eq!(room_size(100), 10);
        assert_eq!(room_size(5), 1);
    }
}
