//! Real `node` processes driven through their line protocol, as scripts and
//! bots drive them, started by the test kit. Every node's output lines,
//! timestamped by the kit's reader threads the moment they are read, are
//! funnelled into one channel, so a benchmark measures from the command it
//! writes to the event another process prints.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use palaver_testkit::output::REPLIES;
use palaver_testkit::{NodeCommand, NodeProcess, PROMPT, Ready, TEST_KDF_LOG_N};

pub use palaver_testkit::Line;

/// A running node of a cluster.
#[derive(Debug)]
pub struct ClusterNode {
    pub name: String,
    pub peer_id: String,
    pub listen: Vec<String>,
    /// When it printed `ready`.
    pub ready_at: Instant,
    process: NodeProcess,
}

impl ClusterNode {
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// When it was spawned.
    pub fn spawned_at(&self) -> Instant {
        self.process.spawned_at
    }

    /// The listen address using `transport` ("quic-v1" or "tcp").
    pub fn addr(&self, transport: &str) -> anyhow::Result<String> {
        self.listen
            .iter()
            .find(|a| a.contains(&format!("/{transport}")))
            .cloned()
            .ok_or_else(|| anyhow!("{}: no {transport} address in {:?}", self.name, self.listen))
    }
}

/// How to start one node.
#[derive(Debug, Clone)]
pub struct Spawn {
    pub name: String,
    /// Arguments besides `--json --no-mdns --nick NAME --data-dir DIR`.
    pub args: Vec<String>,
    /// scrypt cost for a key file created now.
    pub kdf_log_n: u8,
    /// Keep the data dir from an earlier start instead of wiping it.
    pub reuse_data_dir: bool,
}

impl Spawn {
    pub fn new(name: impl Into<String>, args: &[&str]) -> Self {
        Self {
            name: name.into(),
            args: args.iter().map(|s| (*s).to_owned()).collect(),
            kdf_log_n: TEST_KDF_LOG_N,
            reuse_data_dir: false,
        }
    }
}

/// Nodes started together, their output merged into one timestamped stream.
#[derive(Debug)]
pub struct Cluster {
    node_bin: PathBuf,
    work_dir: PathBuf,
    pub nodes: Vec<ClusterNode>,
    tx: Sender<Line>,
    rx: Receiver<Line>,
    backlog: VecDeque<Line>,
}

impl Cluster {
    pub fn new(node_bin: &Path, work_dir: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(work_dir)
            .with_context(|| format!("create {}", work_dir.display()))?;
        let (tx, rx) = channel();
        Ok(Self {
            node_bin: node_bin.to_owned(),
            work_dir: work_dir.to_owned(),
            nodes: Vec::new(),
            tx,
            rx,
            backlog: VecDeque::new(),
        })
    }

    /// Starts a node and waits for its `ready` line; returns its index.
    pub fn start(&mut self, spawn: &Spawn) -> anyhow::Result<usize> {
        let index = self.nodes.len();
        let data_dir = self.work_dir.join(&spawn.name);
        if !spawn.reuse_data_dir {
            let _ = std::fs::remove_dir_all(&data_dir);
        }
        let process = NodeCommand::new(&self.node_bin, data_dir)
            .args(["--json", "--no-mdns", "--nick", &spawn.name])
            .args(&spawn.args)
            .kdf_log_n(spawn.kdf_log_n)
            .log("warn")
            .spawn(index, self.tx.clone())?;
        // Taken before the wait, so that late lines of a node that failed to
        // start never pass for a later one's.
        self.nodes.push(ClusterNode {
            name: spawn.name.clone(),
            peer_id: String::new(),
            listen: Vec::new(),
            ready_at: process.spawned_at,
            process,
        });
        let ready = self.wait(PROMPT, |l| l.source == index).with_context(|| {
            format!(
                "{}: no output; its stderr: {}",
                spawn.name,
                self.nodes[index].process.stderr_tail()
            )
        })?;
        let parsed = Ready::from_value(&ready.value).with_context(|| spawn.name.clone())?;
        let node = &mut self.nodes[index];
        node.ready_at = ready.at;
        node.peer_id = parsed.peer_id;
        node.listen = parsed.listen;
        Ok(index)
    }

    /// Writes one command line to node `i`.
    pub fn send(&mut self, i: usize, line: &str) -> anyhow::Result<()> {
        let node = self
            .nodes
            .get_mut(i)
            .ok_or_else(|| anyhow!("no node {i}"))?;
        node.process
            .send_line(line)
            .with_context(|| node.name.clone())
    }

    /// The next line from any node, or None after `timeout`.
    pub fn next(&mut self, timeout: Duration) -> Option<Line> {
        self.backlog
            .pop_front()
            .or_else(|| self.rx.recv_timeout(timeout).ok())
    }

    /// Lines already read, without waiting.
    pub fn drain(&mut self) -> Vec<Line> {
        let mut lines: Vec<Line> = self.backlog.drain(..).collect();
        lines.extend(self.rx.try_iter());
        lines
    }

    /// The first line matching `want` within `timeout`; lines that do not
    /// match are kept, in order, for later calls.
    pub fn wait(
        &mut self,
        timeout: Duration,
        want: impl Fn(&Line) -> bool,
    ) -> anyhow::Result<Line> {
        if let Some(pos) = self.backlog.iter().position(&want) {
            return self
                .backlog
                .remove(pos)
                .ok_or_else(|| anyhow!("backlog changed"));
        }
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(line) if want(&line) => return Ok(line),
                Ok(line) => {
                    // Bound what a chatty node can pile up while we wait.
                    if self.backlog.len() >= 100_000 {
                        self.backlog.pop_front();
                    }
                    self.backlog.push_back(line);
                }
                Err(_) => bail!("nothing matching within {timeout:?}"),
            }
        }
    }

    /// Sends a command to node `i` and waits for its reply (`ok`, `sent`, …
    /// or `error`, which is an error here).
    pub fn command(&mut self, i: usize, line: &str) -> anyhow::Result<Line> {
        self.send(i, line)?;
        let reply = self
            .wait(PROMPT, |l| l.source == i && REPLIES.contains(&l.event()))
            .with_context(|| format!("node {i}: no reply to {line}"))?;
        if reply.event() == "error" {
            bail!("node {i}: {line}: {}", reply.value);
        }
        Ok(reply)
    }

    /// Forgets lines read so far.
    pub fn clear(&mut self) {
        self.drain();
    }

    /// Quits every node (`/quit`, then a kill after 10 s) and waits for them.
    /// Their indices stay taken, so late lines of a stopped node never pass
    /// for a later one's. (Dropping the cluster kills them.)
    pub fn stop(&mut self) {
        for node in &mut self.nodes {
            // A node stopped before has its stdin closed already.
            let _ = node.process.send_line("/quit");
            node.process.close_stdin();
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        for node in &mut self.nodes {
            let left = deadline.saturating_duration_since(Instant::now());
            if node.process.wait_exit(left).is_err() {
                node.process.kill();
            }
        }
        self.clear();
    }
}
