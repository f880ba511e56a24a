//! Footprint of one node: start → `ready` with the default passphrase unlock
//! (scrypt, slow by design) and with a cheap one, resident memory idle and
//! with 10 rooms, beside a plain process started the same way; and the CPU
//! an idle node spends in a room (a laptop's battery), beside plain
//! processes idle over the same window and, when asked, the same row for
//! another build's node (the code before a change) in the same run.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::anyhow;
use serde::Serialize;

use crate::cluster::{Cluster, Spawn};
use crate::report::{Row, mib, ms};
use crate::stats::{percentile, ratio};
use crate::{procfs, traffic};

#[derive(Debug, Clone, Serialize)]
pub struct Figures {
    /// First start: creates the key file at the default scrypt cost.
    pub first_start_ms: f64,
    /// Restarts, median: unlocking a key file at the default cost (log N 18).
    pub restart_default_unlock_ms: f64,
    /// Restarts, median: a key file at log N 10, so next to no unlock cost.
    pub restart_cheap_unlock_ms: f64,
    /// A plain process (this binary's echo helper): spawn → first line.
    pub plain_process_start_ms: f64,
    pub idle_rss_mib: f64,
    pub ten_rooms_rss_mib: f64,
    pub plain_process_rss_mib: f64,
    /// Nodes in the room the idle CPU is measured in.
    pub idle_room_nodes: usize,
    /// CPU per node per second, a room with no traffic (beacons, gossipsub
    /// heartbeats, pings, timers), in ms.
    pub idle_cpu_ms_per_s: f64,
    /// The same for the nodes of `--before-bin-dir`, when given.
    pub before_idle_cpu_ms_per_s: Option<f64>,
    /// The same number of plain processes, idle over the same window.
    pub plain_idle_cpu_ms_per_s: f64,
}

/// The idle-CPU measurement: how many nodes in the room, and how long.
#[derive(Debug, Clone, Copy)]
pub struct Idle {
    pub nodes: usize,
    pub window: Duration,
}

const LISTEN: [&str; 4] = [
    "--listen",
    "/ip4/127.0.0.1/udp/0/quic-v1",
    "--listen",
    "/ip4/127.0.0.1/tcp/0",
];

fn start_ms(cluster: &mut Cluster, spawn: &Spawn) -> anyhow::Result<f64> {
    let i = cluster.start(spawn)?;
    let n = &cluster.nodes[i];
    let took = n.ready_at.duration_since(n.spawned_at()).as_secs_f64() * 1e3;
    cluster.stop();
    Ok(took)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    percentile(&v, 0.5)
}

/// CPU per node per second (ms) of `idle.nodes` nodes of `node` in one
/// room, once the room has formed, over `idle.window`.
fn idle_cpu_ms_per_s(node: &Path, work: &Path, idle: Idle) -> anyhow::Result<f64> {
    let mut cluster = Cluster::new(node, work)?;
    let members = traffic::start_room(
        &mut cluster,
        idle.nodes,
        "/ip4/127.0.0.1/udp/0/quic-v1",
        "quic",
        "idle",
        "idle",
    )?;
    traffic::warm_up(&mut cluster, "idle", &members, &members)?;
    // Let the catch-up and the hurried beacons of the warm-up settle.
    std::thread::sleep(Duration::from_secs(2));
    let per_s = traffic::idle_cpu_per_s(&cluster, &members, idle.window);
    cluster.stop();
    Ok(per_s * 1e3 / idle.nodes.max(1) as f64)
}

/// The same for plain processes blocked on a socket: what the accounting
/// itself shows for doing nothing.
fn plain_idle_cpu_ms_per_s(me: &Path, idle: Idle) -> anyhow::Result<f64> {
    let mut children = Vec::new();
    for _ in 0..idle.nodes {
        children.push(
            Command::new(me)
                .args(["floor-echo", "udp"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .spawn()?,
        );
    }
    std::thread::sleep(Duration::from_millis(200));
    let cpu = || -> Duration {
        children
            .iter()
            .filter_map(|c| procfs::cpu_time(c.id()).ok())
            .sum()
    };
    let before = cpu();
    std::thread::sleep(idle.window);
    let used = cpu().saturating_sub(before);
    for mut c in children {
        let _ = c.kill();
        let _ = c.wait();
    }
    Ok(used.as_secs_f64() * 1e3 / idle.window.as_secs_f64() / idle.nodes.max(1) as f64)
}

#[allow(clippy::too_many_arguments, reason = "one benchmark's settings")]
pub fn run(
    me: &Path,
    node: &Path,
    before: Option<&Path>,
    work: &Path,
    restarts: usize,
    settle: Duration,
    idle_room: Idle,
) -> anyhow::Result<Figures> {
    let mut cluster = Cluster::new(node, &work.join("footprint"))?;
    let mut slow = Spawn::new("slow", &LISTEN);
    slow.kdf_log_n = palaver_node::DEFAULT_LOG_N;
    let first_start_ms = start_ms(&mut cluster, &slow)?;
    slow.reuse_data_dir = true;
    let mut default_unlock = Vec::new();
    for _ in 0..restarts {
        default_unlock.push(start_ms(&mut cluster, &slow)?);
    }
    let mut cheap = Spawn::new("cheap", &LISTEN);
    start_ms(&mut cluster, &cheap)?;
    cheap.reuse_data_dir = true;
    let mut cheap_unlock = Vec::new();
    for _ in 0..restarts {
        cheap_unlock.push(start_ms(&mut cluster, &cheap)?);
    }

    // Memory: a started node left alone, then in 10 rooms.
    let i = cluster.start(&cheap)?;
    std::thread::sleep(settle);
    let idle = procfs::memory(cluster.nodes[i].pid())?;
    for r in 0..10 {
        cluster.command(i, &format!("/join room-{r}"))?;
    }
    std::thread::sleep(settle);
    let rooms = procfs::memory(cluster.nodes[i].pid())?;
    cluster.stop();

    // The plain process: spawn → first line, and its memory.
    let mut plain_start = Vec::new();
    let mut plain_rss = 0.0;
    for _ in 0..restarts.max(1) {
        let spawned = Instant::now();
        let mut child = Command::new(me)
            .args(["floor-echo", "udp"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()?;
        let mut line = String::new();
        let stdout = child.stdout.take().ok_or_else(|| anyhow!("no stdout"))?;
        BufReader::new(stdout).read_line(&mut line)?;
        plain_start.push(spawned.elapsed().as_secs_f64() * 1e3);
        plain_rss = procfs::memory(child.id())?.rss_mib;
        let _ = child.kill();
        let _ = child.wait();
    }
    let idle_cpu = idle_cpu_ms_per_s(node, &work.join("idle"), idle_room)?;
    let before_idle = match before {
        Some(before) => Some(idle_cpu_ms_per_s(
            before,
            &work.join("idle-before"),
            idle_room,
        )?),
        None => None,
    };
    Ok(Figures {
        idle_room_nodes: idle_room.nodes,
        idle_cpu_ms_per_s: idle_cpu,
        before_idle_cpu_ms_per_s: before_idle,
        plain_idle_cpu_ms_per_s: plain_idle_cpu_ms_per_s(me, idle_room)?,
        first_start_ms,
        restart_default_unlock_ms: median(default_unlock),
        restart_cheap_unlock_ms: median(cheap_unlock),
        plain_process_start_ms: median(plain_start),
        idle_rss_mib: idle.rss_mib,
        ten_rooms_rss_mib: rooms.rss_mib,
        plain_process_rss_mib: plain_rss,
    })
}

pub fn rows(f: &Figures) -> Vec<Row> {
    let plain = format!("plain process {}", ms(f.plain_process_start_ms));
    let idle_floor = format!("plain processes idle {:.2} ms/s", f.plain_idle_cpu_ms_per_s);
    let mut rows = vec![
        Row::new(
            "footprint",
            format!(
                "idle CPU per node, {} nodes in a room with no traffic",
                f.idle_room_nodes
            ),
            format!("{:.2} ms/s", f.idle_cpu_ms_per_s),
        )
        .baseline(idle_floor),
    ];
    if let Some(before) = f.before_idle_cpu_ms_per_s {
        rows.push(
            Row::new(
                "footprint",
                "the same, the build before (--before-bin-dir)",
                format!("{before:.2} ms/s"),
            )
            .against(
                format!("now {:.2} ms/s", f.idle_cpu_ms_per_s),
                ratio(before, f.idle_cpu_ms_per_s),
            ),
        );
    }
    rows.extend([
        Row::new(
            "footprint",
            "first start → ready (creates keys.age, scrypt log N 18)",
            ms(f.first_start_ms),
        )
        .against(
            plain.clone(),
            ratio(f.first_start_ms, f.plain_process_start_ms),
        ),
        Row::new(
            "footprint",
            "restart → ready, passphrase unlock at the default cost (log N 18)",
            ms(f.restart_default_unlock_ms),
        )
        .against(
            plain.clone(),
            ratio(f.restart_default_unlock_ms, f.plain_process_start_ms),
        ),
        Row::new(
            "footprint",
            "restart → ready, next to no unlock cost (log N 10)",
            ms(f.restart_cheap_unlock_ms),
        )
        .against(
            plain,
            ratio(f.restart_cheap_unlock_ms, f.plain_process_start_ms),
        ),
        Row::new(
            "footprint",
            "node RSS idle (alone, no room)",
            mib(f.idle_rss_mib),
        )
        .against(
            format!("plain process {}", mib(f.plain_process_rss_mib)),
            ratio(f.idle_rss_mib, f.plain_process_rss_mib),
        )
        .target("≤ 30 MB", f.idle_rss_mib * 1.048_576 <= 30.0),
        Row::new(
            "footprint",
            "node RSS in 10 rooms",
            mib(f.ten_rooms_rss_mib),
        )
        .against(
            format!("idle {}", mib(f.idle_rss_mib)),
            ratio(f.ten_rooms_rss_mib, f.idle_rss_mib),
        ),
    ]);
    rows
}
