//! Runs real `node` processes for tests and reads their JSON output.
//!
//! Every wait is on an output line (with a generous deadline that only
//! bounds a failing test), never on a fixed sleep.

#![allow(dead_code, reason = "each test uses part of the harness")]

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::OnceLock;
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The passphrase test nodes are started with (through PALAVER_PASSPHRASE).
pub const PASSPHRASE: &str = "correct horse battery staple";
/// scrypt cost for test key files: cheap, unlike the default.
pub const TEST_KDF_LOG_N: &str = "10";

/// Deadline for anything a healthy node does promptly.
pub const PROMPT: Duration = Duration::from_secs(30);

/// The kinds of output lines that answer a command (one per command).
const REPLIES: &[&str] = &[
    "ok", "sent", "rooms", "who", "peers", "history", "id", "error",
];

pub fn is_reply(v: &Value) -> bool {
    v["event"].as_str().is_some_and(|e| REPLIES.contains(&e))
}

/// Where this test process keeps its nodes' directories and logs. On first
/// use, the folders of test processes that have exited are removed, so runs
/// do not pile up in the temp dir; the last one's stay to be looked at.
fn test_root() -> &'static Path {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    ROOT.get_or_init(|| {
        let tmp = std::env::temp_dir();
        for entry in std::fs::read_dir(&tmp).into_iter().flatten().flatten() {
            let name = entry.file_name();
            let pid = name
                .to_str()
                .and_then(|n| n.strip_prefix("palaver-tests-"))
                .and_then(|p| p.parse::<u32>().ok());
            if let Some(pid) = pid
                && !Path::new("/proc").join(pid.to_string()).exists()
            {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
        let root = tmp.join(format!("palaver-tests-{}", std::process::id()));
        std::fs::create_dir_all(&root).expect("create the test root");
        root
    })
}

/// A fresh, empty directory for one node of one test.
pub fn temp_dir(test: &str, name: &str) -> PathBuf {
    let dir = test_root().join(format!("{test}-{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create temp dir");
    dir
}

pub struct Node {
    pub name: String,
    pub peer_id: String,
    pub listen: Vec<String>,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<Value>,
    /// Every output line so far, in order.
    pub seen: Vec<Value>,
    replies_taken: usize,
    pub data_dir: PathBuf,
}

impl Node {
    /// Starts `node --json --no-mdns` on loopback with the extra arguments, and
    /// waits for its `ready` line.
    pub fn start(test: &str, name: &str, extra: &[&str]) -> Node {
        let data_dir = temp_dir(test, name);
        let mut args = vec![
            "--json",
            "--no-mdns",
            "--nick",
            name,
            "--listen",
            "/ip4/127.0.0.1/udp/0/quic-v1",
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
        ];
        args.extend_from_slice(extra);
        Self::spawn(name, data_dir, &args)
    }

    /// Starts the node binary with exactly these arguments (plus `--data-dir`).
    pub fn spawn(name: &str, data_dir: PathBuf, args: &[&str]) -> Node {
        Self::spawn_with(name, data_dir, &[], args)
    }

    /// Like [`Node::spawn`], run through `prefix` (e.g. `ip netns exec NS`).
    pub fn spawn_with(name: &str, data_dir: PathBuf, prefix: &[&str], args: &[&str]) -> Node {
        let stderr = std::fs::File::create(data_dir.with_extension("stderr")).expect("stderr file");
        let node = env!("CARGO_BIN_EXE_node");
        let (program, full_args): (&str, Vec<&str>) = match prefix.split_first() {
            Some((first, rest)) => (
                first,
                rest.iter()
                    .copied()
                    .chain([node])
                    .chain(args.iter().copied())
                    .collect(),
            ),
            None => (node, args.to_vec()),
        };
        let mut child = Command::new(program)
            .args(full_args)
            .arg("--data-dir")
            .arg(&data_dir)
            .env("PALAVER_PASSPHRASE", PASSPHRASE)
            .env("PALAVER_KDF_LOG_N", TEST_KDF_LOG_N)
            .env(
                "RUST_LOG",
                std::env::var("PALAVER_TEST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("start node");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = channel();
        let label = name.to_owned();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let v: Value = serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("{label}: stdout line is not JSON ({e}): {line:?}"));
                if tx.send(v).is_err() {
                    break;
                }
            }
        });
        let stdin = child.stdin.take();
        let mut node = Node {
            name: name.to_owned(),
            peer_id: String::new(),
            listen: Vec::new(),
            child,
            stdin,
            lines,
            seen: Vec::new(),
            replies_taken: 0,
            data_dir,
        };
        let ready = node
            .next_line(PROMPT)
            .unwrap_or_else(|| panic!("{name}: no ready line"));
        assert_eq!(
            ready["event"], "ready",
            "{name}: first line must be ready: {ready}"
        );
        node.peer_id = ready["peer_id"].as_str().expect("peer_id").to_owned();
        node.listen = ready["listen"]
            .as_array()
            .expect("listen")
            .iter()
            .map(|a| a.as_str().unwrap_or("").to_owned())
            .collect();
        node
    }

    /// The listen address using `transport` ("quic-v1" or "tcp").
    pub fn addr(&self, transport: &str) -> String {
        self.listen
            .iter()
            .find(|a| a.contains(&format!("/{transport}")))
            .unwrap_or_else(|| panic!("{}: no {transport} address in {:?}", self.name, self.listen))
            .clone()
    }

    fn next_line(&mut self, timeout: Duration) -> Option<Value> {
        match self.lines.recv_timeout(timeout) {
            Ok(v) => {
                self.seen.push(v.clone());
                Some(v)
            }
            Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => None,
        }
    }

    /// Writes raw bytes to the node's stdin.
    pub fn write_raw(&mut self, bytes: &[u8]) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        stdin.write_all(bytes).expect("write stdin");
        stdin.flush().expect("flush stdin");
    }

    /// Sends one line without waiting for its reply.
    pub fn send_line(&mut self, line: &str) {
        self.write_raw(format!("{line}\n").as_bytes());
    }

    /// The next reply not yet taken (replies come in command order).
    pub fn reply(&mut self) -> Value {
        let index = self.replies_taken;
        let deadline = Instant::now() + PROMPT;
        loop {
            if let Some(v) = self.seen.iter().filter(|v| is_reply(v)).nth(index) {
                self.replies_taken += 1;
                return v.clone();
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if self.next_line(left).is_none() {
                panic!(
                    "{}: no reply #{index} within {PROMPT:?}; output so far: {:#?}",
                    self.name, self.seen
                );
            }
        }
    }

    /// Sends a command and returns its reply.
    pub fn command(&mut self, line: &str) -> Value {
        self.send_line(line);
        self.reply()
    }

    /// Waits until some output line (earlier ones included) matches.
    pub fn wait_for(
        &mut self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        self.wait_for_since(0, what, timeout, pred)
    }

    /// Where the output is now, for [`Node::wait_for_since`].
    pub fn mark(&self) -> usize {
        self.seen.len()
    }

    /// Waits until an output line after `mark` matches.
    pub fn wait_for_since(
        &mut self,
        mark: usize,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + timeout;
        let mut checked = mark;
        loop {
            if let Some(v) = self.seen[checked..].iter().find(|v| pred(v)) {
                return v.clone();
            }
            checked = self.seen.len();
            let left = deadline.saturating_duration_since(Instant::now());
            if self.next_line(left).is_none() {
                panic!(
                    "{}: waited {timeout:?} for {what}; output so far: {:#?}",
                    self.name, self.seen
                );
            }
        }
    }

    /// Waits until `n` output lines match.
    pub fn wait_for_count(
        &mut self,
        what: &str,
        n: usize,
        timeout: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Vec<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let found: Vec<Value> = self.seen.iter().filter(|v| pred(v)).cloned().collect();
            if found.len() >= n {
                return found;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if self.next_line(left).is_none() {
                panic!(
                    "{}: waited {timeout:?} for {n} × {what}, got {}",
                    self.name,
                    found.len()
                );
            }
        }
    }

    /// Reads whatever output is already there without waiting.
    pub fn drain(&mut self) {
        while self.next_line(Duration::ZERO).is_some() {}
    }

    /// Waits for `joined` of `other` in `room`.
    pub fn wait_joined(&mut self, room: &str, other: &str) {
        let what = format!("{other} joined {room}");
        self.wait_for(&what, PROMPT, |v| {
            v["event"] == "joined" && v["room"] == room && v["peer_id"] == other
        });
    }

    /// Closes stdin (the node quits as on /quit) and waits for the exit status.
    pub fn close_and_wait(&mut self) -> std::process::ExitStatus {
        drop(self.stdin.take());
        self.wait_exit()
    }

    /// Waits for the process to exit on its own: its stdout closes first.
    pub fn wait_exit(&mut self) -> std::process::ExitStatus {
        let deadline = Instant::now() + PROMPT;
        loop {
            match self
                .lines
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            {
                Ok(v) => self.seen.push(v),
                Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => {
                    panic!("{}: did not exit within {PROMPT:?}", self.name)
                }
            }
        }
        self.child.wait().expect("wait for node")
    }

    /// SIGKILL: the node gets no chance to say goodbye.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn messages(&self, room: &str) -> Vec<Value> {
        self.seen
            .iter()
            .filter(|v| v["event"] == "message" && v["room"] == room)
            .cloned()
            .collect()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
