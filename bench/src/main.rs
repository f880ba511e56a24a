//! `palaver-bench`: Palaver's benchmark suite. Starts real node and relay
//! processes (and plain processes for the floors), measures, stops them all,
//! prints one table, and writes the figures as JSON and as the generated
//! section of BENCHMARKS.md. `scripts/bench` builds and runs it.

mod cluster;
mod crypto;
mod floor;
mod footprint;
mod latency;
mod natlab;
mod private;
mod procfs;
mod reconcile;
mod relay_load;
mod report;
mod rooms;
mod stats;
mod store;
mod throughput;
mod traffic;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand, ValueEnum};
use serde_json::{Value, json};

use crate::report::Row;

/// Palaver's benchmarks: every figure beside a floor measured in the same run.
#[derive(Debug, Parser)]
#[command(name = "palaver-bench", version)]
struct Cli {
    /// Small sizes and short runs (under a minute): checks the suite works,
    /// its figures are only indications.
    #[arg(long, env = "PALAVER_BENCH_QUICK")]
    quick: bool,

    /// Run only these benchmarks (comma-separated) [default: all].
    #[arg(long, env = "PALAVER_BENCH_ONLY", value_delimiter = ',')]
    only: Vec<Bench>,

    /// Directory holding the release `node` and `relay` binaries.
    #[arg(long, env = "PALAVER_BENCH_BIN_DIR", default_value = "target/release")]
    bin_dir: PathBuf,

    /// Another build's `node` directory (the code before a change): the
    /// footprint's idle CPU is measured for it too, in the same run.
    #[arg(long, env = "PALAVER_BENCH_BEFORE_BIN_DIR")]
    before_bin_dir: Option<PathBuf>,

    /// The repository (for scripts/natlab).
    #[arg(long, env = "PALAVER_BENCH_REPO", default_value = ".")]
    repo: PathBuf,

    /// Scratch directory for data dirs and logs (wiped first)
    /// [default: a directory under the system's temp dir].
    #[arg(long, env = "PALAVER_BENCH_WORK_DIR")]
    work_dir: Option<PathBuf>,

    /// Write every figure as JSON to this file.
    #[arg(long, env = "PALAVER_BENCH_JSON")]
    json: Option<PathBuf>,

    /// Write the generated section of this Markdown file (BENCHMARKS.md).
    #[arg(long, env = "PALAVER_BENCH_MARKDOWN")]
    markdown: Option<PathBuf>,

    /// Throughput: probe these rates (messages/s, comma-separated) instead
    /// of the usual ladder; e.g. one rate, to profile it.
    #[arg(long, env = "PALAVER_BENCH_THROUGHPUT_RATES", value_delimiter = ',')]
    throughput_rates: Vec<u32>,

    /// The command line to credit in the Markdown (what a reader reruns).
    #[arg(long, env = "PALAVER_BENCH_COMMAND", default_value = "scripts/bench")]
    command: String,

    #[command(subcommand)]
    helper: Option<Helper>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Bench {
    Crypto,
    Latency,
    Rooms,
    Private,
    Throughput,
    Store,
    Reconcile,
    Relay,
    Natlab,
    Footprint,
}

/// The plain processes of the floors (started by the suite itself).
#[derive(Debug, Subcommand)]
enum Helper {
    #[command(hide = true, name = "floor-sink")]
    Sink { socket: floor::Socket },
    #[command(hide = true, name = "floor-source")]
    Source { socket: floor::Socket, port: u16 },
    #[command(hide = true, name = "floor-echo")]
    Echo { socket: floor::Socket },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(helper) = &cli.helper {
        let result = match *helper {
            Helper::Sink { socket } => floor::sink(socket),
            Helper::Source { socket, port } => floor::source(socket, port),
            Helper::Echo { socket } => floor::echo(socket),
        };
        return match result {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("palaver-bench: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    match suite(&cli) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("palaver-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Sizes of one run.
struct Sizes {
    crypto_ops: usize,
    latency_messages: usize,
    room_sizes: Vec<usize>,
    room_seconds: u64,
    private: private::Sizes,
    throughput_probe_s: f64,
    throughput_confirm_s: f64,
    throughput_rates: Vec<u32>,
    throughput_texts: Vec<usize>,
    store: (usize, usize, usize),
    /// Reconcile: stores of this many differing by 10, the large store, answers timed per round.
    reconcile: (usize, usize, usize),
    /// Reservations, circuits, rendezvous peers, hold, discovers in the flood.
    relay: (usize, usize, usize, Duration, usize),
    natlab_trials: usize,
    footprint_restarts: usize,
    idle: footprint::Idle,
    settle: Duration,
}

impl Sizes {
    fn full() -> Self {
        Self {
            crypto_ops: 2_000,
            latency_messages: 2_000,
            room_sizes: vec![10, 25],
            room_seconds: 20,
            private: private::Sizes {
                messages: 1_000,
                joins: 10,
                kicks: 5,
                removal_rooms: vec![10, 100],
                removal_reps: 100,
            },
            throughput_probe_s: 3.0,
            throughput_confirm_s: 30.0,
            throughput_rates: throughput::RATES.to_vec(),
            throughput_texts: vec![64, 1024],
            store: (100_000, 20_000, 300),
            reconcile: (10_000, 100_000, 300),
            relay: (1_000, 100, 1_000, Duration::from_secs(30), 10_000),
            natlab_trials: 20,
            footprint_restarts: 3,
            idle: footprint::Idle {
                nodes: 10,
                window: Duration::from_secs(30),
            },
            settle: Duration::from_secs(3),
        }
    }

    fn quick() -> Self {
        Self {
            crypto_ops: 300,
            latency_messages: 200,
            room_sizes: vec![10],
            room_seconds: 3,
            private: private::Sizes {
                messages: 100,
                joins: 3,
                kicks: 2,
                removal_rooms: vec![10, 100],
                removal_reps: 10,
            },
            throughput_probe_s: 1.0,
            throughput_confirm_s: 2.0,
            throughput_rates: throughput::RATES[..2].to_vec(),
            throughput_texts: vec![64],
            store: (5_000, 2_000, 50),
            reconcile: (1_000, 2_000, 30),
            relay: (100, 10, 100, Duration::from_secs(3), 500),
            natlab_trials: 0,
            footprint_restarts: 1,
            idle: footprint::Idle {
                nodes: 5,
                window: Duration::from_secs(3),
            },
            settle: Duration::from_secs(1),
        }
    }
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|u| u.split_whitespace().next())
            == Some("0")
    })
}

/// Runs the chosen benchmarks; Ok(false) when one failed to run.
fn suite(cli: &Cli) -> anyhow::Result<bool> {
    let began = Instant::now();
    let mut sizes = if cli.quick {
        Sizes::quick()
    } else {
        Sizes::full()
    };
    if !cli.throughput_rates.is_empty() {
        sizes.throughput_rates.clone_from(&cli.throughput_rates);
    }
    let wanted = |b: Bench| cli.only.is_empty() || cli.only.contains(&b);
    let me = std::env::current_exe()?;
    let node = absolute(&cli.bin_dir.join("node"))?;
    let relay = absolute(&cli.bin_dir.join("relay"))?;
    let before_node = match &cli.before_bin_dir {
        Some(dir) => Some(absolute(&dir.join("node"))?),
        None => None,
    };
    let work = match &cli.work_dir {
        Some(w) => w.clone(),
        // Its own folder in the temp dir; those of runs that died are removed.
        None => palaver_testkit::scratch::process_dir("palaver-bench")?,
    };
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work)?;

    let mut rows: Vec<Row> = Vec::new();
    let mut figures = serde_json::Map::new();
    let mut all_ran = true;
    let mut record = |name: &str, result: anyhow::Result<(Value, Vec<Row>)>, took: Duration| {
        eprintln!("bench: {name} done in {:.1} s", took.as_secs_f64());
        match result {
            Ok((value, r)) => {
                figures.insert(name.to_owned(), value);
                rows.extend(r);
            }
            Err(e) => {
                all_ran = false;
                eprintln!("bench: {name} FAILED: {e:#}");
                figures.insert(name.to_owned(), json!({ "error": format!("{e:#}") }));
                rows.push(Row::new("failed", name.to_owned(), format!("{e:#}")));
            }
        }
    };

    // The crypto floor comes first: latency, rooms and throughput are set beside it.
    eprintln!("bench: crypto");
    let t = Instant::now();
    let floors = sizes
        .throughput_texts
        .iter()
        .chain([64].iter())
        .map(|&b| crypto::measure(b, sizes.crypto_ops))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let floor64 = *floors
        .last()
        .ok_or_else(|| anyhow::anyhow!("no crypto floor"))?;
    let busy = sizes
        .throughput_texts
        .iter()
        .map(|&b| crypto::measure_all_cores_busy(b, sizes.crypto_ops))
        .collect::<anyhow::Result<Vec<_>>>()?;
    if wanted(Bench::Crypto) {
        let mut r = crypto::rows(&floor64);
        for f in floors.iter().filter(|f| f.text_bytes != 64) {
            r.extend(crypto::rows(f).into_iter().take(4));
        }
        for (b, f) in busy.iter().zip(&floors) {
            r.extend(crypto::busy_rows(b, f));
        }
        record(
            "crypto",
            Ok((json!({ "one_core": floors, "all_cores_busy": busy }), r)),
            t.elapsed(),
        );
    }
    macro_rules! bench {
        ($b:expr, $name:literal, $run:expr, $rows:path) => {
            if wanted($b) {
                eprintln!("bench: {}", $name);
                let t = Instant::now();
                let result = $run.and_then(|f| Ok((serde_json::to_value(&f)?, $rows(&f))));
                record($name, result, t.elapsed());
            }
        };
    }
    bench!(
        Bench::Latency,
        "latency",
        latency::run(&me, &node, &work, sizes.latency_messages, &floor64),
        latency::rows
    );
    bench!(
        Bench::Rooms,
        "rooms",
        rooms::run(
            &node,
            &work,
            &sizes.room_sizes,
            sizes.room_seconds,
            &floor64
        ),
        rooms::rows
    );
    bench!(
        Bench::Private,
        "private",
        private::run(&node, &work, &sizes.private),
        private::rows
    );
    let throughput_floors: Vec<(crypto::Figures, crypto::Figures)> =
        floors.iter().copied().zip(busy.iter().copied()).collect();
    bench!(
        Bench::Throughput,
        "throughput",
        throughput::run(
            &node,
            &work,
            sizes.throughput_probe_s,
            sizes.throughput_confirm_s,
            &sizes.throughput_rates,
            &throughput_floors
        ),
        throughput::rows
    );
    let (stored, writes, pages) = sizes.store;
    bench!(
        Bench::Store,
        "store",
        store::run(&work, stored, writes, pages),
        store::rows
    );
    let (set, big, answers) = sizes.reconcile;
    bench!(
        Bench::Reconcile,
        "reconcile",
        reconcile::run(&work, set, big, answers),
        reconcile::rows
    );
    let (reservations, circuits, rendezvous_peers, hold, flood) = sizes.relay;
    bench!(
        Bench::Relay,
        "relay",
        relay_load::run(&relay_load::Options {
            relay: relay.clone(),
            work_dir: work.join("relay"),
            reservations,
            circuits,
            rendezvous_peers,
            hold,
            flood,
        }),
        relay_load::rows
    );
    if wanted(Bench::Natlab) {
        if sizes.natlab_trials == 0 {
            eprintln!("bench: natlab skipped in --quick (scripts/test runs the NAT lab as a test)");
        } else if !is_root() {
            eprintln!("bench: natlab skipped: it needs root (network namespaces)");
            record(
                "natlab",
                Ok((
                    json!({"skipped": "needs root"}),
                    vec![Row::new("hole punch", "NAT lab", "skipped: needs root")],
                )),
                Duration::ZERO,
            );
        } else {
            bench!(
                Bench::Natlab,
                "natlab",
                natlab::run(&cli.repo, &work, sizes.natlab_trials),
                natlab::rows
            );
        }
    }
    bench!(
        Bench::Footprint,
        "footprint",
        footprint::run(
            &me,
            &node,
            before_node.as_deref(),
            &work,
            sizes.footprint_restarts,
            sizes.settle,
            sizes.idle
        ),
        footprint::rows
    );

    let took = began.elapsed();
    let table = report::text_table(&rows);
    println!("{table}");
    let machine = machine();
    let date = command_output("date", &["-u", "+%Y-%m-%d %H:%M UTC"]);
    let met = rows
        .iter()
        .filter_map(|r| r.target.as_ref())
        .filter(|t| t.met)
        .count();
    let targets = rows.iter().filter(|r| r.target.is_some()).count();
    println!(
        "{met} of {targets} targets met; {:.0} s",
        took.as_secs_f64()
    );
    if let Some(path) = &cli.json {
        let doc = json!({
            "date": date,
            "machine": machine,
            "command": cli.command,
            "quick": cli.quick,
            "seconds": took.as_secs_f64(),
            "targets_met": met,
            "targets": targets,
            "figures": figures,
            "rows": rows,
        });
        std::fs::write(path, serde_json::to_string_pretty(&doc)? + "\n")?;
    }
    if let Some(path) = &cli.markdown {
        let missed: Vec<String> = rows
            .iter()
            .filter(|r| r.target.as_ref().is_some_and(|t| !t.met))
            .map(|r| format!("{}: {}", r.bench, r.what))
            .collect();
        let section = format!(
            "## Latest figures\n\nMeasured {date} on {machine}, by `{}`{} in {:.0} s. Every figure is beside a floor or baseline measured in the same run; the ratio is figure ÷ floor.\n\n{}\n{met} of {targets} targets met.{}\n",
            cli.command,
            if cli.quick {
                " (quick: small sizes, indications only)"
            } else {
                ""
            },
            took.as_secs_f64(),
            report::markdown_table(&rows),
            if missed.is_empty() {
                String::new()
            } else {
                format!(
                    " Not met: {}. See below for what limits each.",
                    missed.join("; ")
                )
            },
        );
        let old = std::fs::read_to_string(path).unwrap_or_else(|_| "# Benchmarks\n".to_owned());
        std::fs::write(path, report::splice(&old, &section))?;
    }
    let _ = std::fs::remove_dir_all(&work);
    let lost = losses(&figures);
    for loss in &lost {
        eprintln!("bench: FAILED: {loss}");
    }
    Ok(all_ran && lost.is_empty())
}

/// Messages lost where no load excuses it (two nodes, paced; rooms at 100
/// messages a second): a bug, not a figure, so the run fails. Throughput
/// probes lose messages by design when a rate is too high.
fn losses(figures: &serde_json::Map<String, Value>) -> Vec<String> {
    let mut lost = Vec::new();
    let count = |v: &Value, key: &str| v[key].as_u64().unwrap_or(0);
    let of = |name: &str| figures.get(name).unwrap_or(&Value::Null);
    for t in of("latency")["transports"].as_array().into_iter().flatten() {
        if count(t, "delivered") != count(t, "messages") {
            lost.push(format!(
                "latency over {}: {} of {} messages delivered",
                t["transport"], t["delivered"], t["messages"]
            ));
        }
    }
    let private = of("private");
    for room in ["private", "public"] {
        let r = &private[room];
        if count(r, "delivered") != count(r, "messages") {
            lost.push(format!(
                "{room} room of 2 nodes: {} of {} messages delivered",
                r["delivered"], r["messages"]
            ));
        }
    }
    for r in of("rooms").as_array().into_iter().flatten() {
        if count(r, "deliveries") != count(r, "expected_deliveries") {
            lost.push(format!(
                "room of {}: {} of {} deliveries",
                r["nodes"], r["deliveries"], r["expected_deliveries"]
            ));
        }
    }
    lost
}

fn absolute(p: &Path) -> anyhow::Result<PathBuf> {
    let p = std::path::absolute(p)?;
    if !p.exists() {
        anyhow::bail!("{} is missing: cargo build --release first", p.display());
    }
    Ok(p)
}

fn command_output(program: &str, args: &[&str]) -> String {
    std::process::Command::new(program)
        .args(args)
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

/// "2 cores (model), 24 GiB, Debian 12, rustc 1.95".
fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|m| m.trim_start_matches([' ', '\t', ':']).to_owned())
        .unwrap_or_default();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mem_gib = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0 / 1024.0);
    let os = std::fs::read_to_string("/etc/os-release")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME="))
        .map(|v| v.trim_matches('"').to_owned())
        .unwrap_or_default();
    let rustc = command_output("rustc", &["--version"]);
    format!("{cores} cores ({model}), {mem_gib:.0} GiB, {os}, {rustc}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn figures(v: Value) -> serde_json::Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn a_message_lost_between_two_nodes_or_in_a_room_fails_the_run() {
        let lost = losses(&figures(json!({
            "latency": {"transports": [
                {"transport": "QUIC", "messages": 200, "delivered": 200},
                {"transport": "TCP", "messages": 200, "delivered": 199},
            ]},
            "rooms": [{"nodes": 10, "deliveries": 2699, "expected_deliveries": 2700}],
            "private": {
                "private": {"messages": 100, "delivered": 99},
                "public": {"messages": 100, "delivered": 100},
            },
        })));
        assert_eq!(lost.len(), 3, "{lost:?}");
    }

    #[test]
    fn benchmarks_that_did_not_run_lose_nothing() {
        assert!(losses(&figures(json!({"store": {}}))).is_empty());
    }
}
