//! Footprint of one node: start → `ready` with the default passphrase unlock
//! (scrypt, slow by design) and with a cheap one, and resident memory idle
//! and with 10 rooms; beside a plain process started the same way.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::anyhow;
use serde::Serialize;

use crate::cluster::{Cluster, Spawn};
use crate::procfs;
use crate::report::{Row, mib, ms};
use crate::stats::{percentile, ratio};

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

pub fn run(
    me: &Path,
    node: &Path,
    work: &Path,
    restarts: usize,
    settle: Duration,
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
    Ok(Figures {
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
    vec![
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
    ]
}
