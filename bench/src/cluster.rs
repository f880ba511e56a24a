//! Real `node` processes driven through their line protocol, as scripts and
//! bots drive them. Every output line is timestamped by a reader thread the
//! moment it is read and funnelled into one channel, so a benchmark measures
//! from the command it writes to the event another process prints.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use serde_json::Value;

/// The passphrase benchmark nodes unlock their keys with.
pub const PASSPHRASE: &str = "bench passphrase, not a secret";
/// scrypt cost of a key file made for a benchmark: cheap (the default is 18).
pub const CHEAP_KDF_LOG_N: u8 = 10;
/// Bounds a wait for something a healthy node does promptly.
pub const PROMPT: Duration = Duration::from_secs(30);

/// One line a node printed.
#[derive(Debug)]
pub struct Line {
    /// Index of the node in its cluster.
    pub node: usize,
    /// When the reader thread read it.
    pub at: Instant,
    pub value: Value,
}

impl Line {
    pub fn event(&self) -> &str {
        self.value["event"].as_str().unwrap_or("")
    }
}

/// A running node.
#[derive(Debug)]
pub struct NodeProcess {
    pub name: String,
    pub peer_id: String,
    pub listen: Vec<String>,
    /// When it was spawned and when it printed `ready`.
    pub spawned_at: Instant,
    pub ready_at: Instant,
    child: Child,
    stdin: Option<ChildStdin>,
}

impl NodeProcess {
    pub fn pid(&self) -> u32 {
        self.child.id()
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
            kdf_log_n: CHEAP_KDF_LOG_N,
            reuse_data_dir: false,
        }
    }
}

/// Nodes started together, their output merged into one timestamped stream.
#[derive(Debug)]
pub struct Cluster {
    node_bin: PathBuf,
    work_dir: PathBuf,
    pub nodes: Vec<NodeProcess>,
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
        let stderr = std::fs::File::create(self.work_dir.join(format!("{}.stderr", spawn.name)))?;
        let spawned_at = Instant::now();
        let mut child = Command::new(&self.node_bin)
            .args(["--json", "--no-mdns", "--nick", &spawn.name, "--data-dir"])
            .arg(&data_dir)
            .args(&spawn.args)
            .env("PALAVER_PASSPHRASE", PASSPHRASE)
            .env("PALAVER_KDF_LOG_N", spawn.kdf_log_n.to_string())
            .env("RUST_LOG", "warn")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .with_context(|| format!("start {}", self.node_bin.display()))?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| anyhow!("no stdout pipe"))?;
        let tx = self.tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let at = Instant::now();
                let Ok(line) = line else { break };
                let value = serde_json::from_str(&line).unwrap_or(Value::String(line));
                if tx
                    .send(Line {
                        node: index,
                        at,
                        value,
                    })
                    .is_err()
                {
                    break;
                }
            }
        });
        let stdin = child.stdin.take();
        self.nodes.push(NodeProcess {
            name: spawn.name.clone(),
            peer_id: String::new(),
            listen: Vec::new(),
            spawned_at,
            ready_at: spawned_at,
            child,
            stdin,
        });
        let ready = self
            .wait(PROMPT, |l| l.node == index)
            .with_context(|| format!("{}: no output (see its .stderr)", spawn.name))?;
        if ready.event() != "ready" {
            bail!("{}: first line is not ready: {}", spawn.name, ready.value);
        }
        let node = &mut self.nodes[index];
        node.ready_at = ready.at;
        node.peer_id = ready.value["peer_id"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        node.listen = ready.value["listen"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        Ok(index)
    }

    /// Writes one command line to node `i`.
    pub fn send(&mut self, i: usize, line: &str) -> anyhow::Result<()> {
        let node = self
            .nodes
            .get_mut(i)
            .ok_or_else(|| anyhow!("no node {i}"))?;
        let stdin = node
            .stdin
            .as_mut()
            .ok_or_else(|| anyhow!("{}: stdin closed", node.name))?;
        stdin.write_all(line.as_bytes())?;
        stdin.write_all(b"\n")?;
        stdin.flush()?;
        Ok(())
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
        const REPLIES: &[&str] = &[
            "ok", "sent", "rooms", "who", "peers", "history", "id", "error",
        ];
        self.send(i, line)?;
        let reply = self
            .wait(PROMPT, |l| l.node == i && REPLIES.contains(&l.event()))
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
    /// for a later one's.
    pub fn stop(&mut self) {
        for node in &mut self.nodes {
            if let Some(mut stdin) = node.stdin.take() {
                let _ = stdin.write_all(b"/quit\n");
            }
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        for node in &mut self.nodes {
            while Instant::now() < deadline {
                if !matches!(node.child.try_wait(), Ok(None)) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = node.child.kill();
            let _ = node.child.wait();
        }
        self.clear();
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            let _ = node.child.kill();
            let _ = node.child.wait();
        }
    }
}
