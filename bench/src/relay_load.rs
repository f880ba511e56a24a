//! Relay under load: a load generator holding many reservations, relayed
//! circuits with traffic, and rendezvous register/discover from many peers,
//! against a real `relay` process; its memory, CPU and discover latency,
//! beside the same relay idle.

use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

use crate::report::Row;

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

/// The figures.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Figures {}

pub fn run(_options: &Options) -> anyhow::Result<Figures> {
    anyhow::bail!("not written yet")
}

pub fn rows(_f: &Figures) -> Vec<Row> {
    Vec::new()
}
