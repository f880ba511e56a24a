//! Hole punching: runs `scripts/natlab --trials N` (root only: it builds
//! network namespaces and NAT routers) and reads its JSON figures.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

use crate::report::{Row, ms};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Transport {
    pub trials: usize,
    pub successes: usize,
    pub median_ms: Option<f64>,
    pub p95_ms: Option<f64>,
    #[serde(default)]
    pub failures: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Figures {
    pub quic: Transport,
    pub tcp: Transport,
}

pub fn run(repo: &Path, work: &Path, trials: usize) -> anyhow::Result<Figures> {
    let json = work.join("natlab.json");
    let status = Command::new(repo.join("scripts/natlab"))
        .args(["--trials", &trials.to_string(), "--json"])
        .arg(&json)
        .status()
        .context("run scripts/natlab")?;
    if !status.success() {
        bail!("scripts/natlab --trials {trials} failed: {status}");
    }
    let text = std::fs::read_to_string(&json)?;
    Ok(serde_json::from_str(&text)?)
}

pub fn rows(f: &Figures) -> Vec<Row> {
    [("QUIC", &f.quic), ("TCP", &f.tcp)]
        .into_iter()
        .map(|(name, t)| {
            Row::new(
                "hole punch",
                format!(
                    "{name}, cone NAT lab: direct after hole punch; relayed → direct median / p95"
                ),
                format!(
                    "{}/{}; {} / {}",
                    t.successes,
                    t.trials,
                    t.median_ms.map_or("-".into(), ms),
                    t.p95_ms.map_or("-".into(), ms)
                ),
            )
            .target(
                format!("{0}/{0}", t.trials),
                t.trials > 0 && t.successes == t.trials,
            )
        })
        .collect()
}
