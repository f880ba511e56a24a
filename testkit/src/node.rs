//! One real `node` driven by a test through its JSON line protocol: commands
//! and their replies (replies come in command order), waits until an output
//! line matches, and every line seen so far to assert on.
//!
//! Every wait is on an output line, with a deadline that only bounds a
//! failing test, never on a fixed sleep. A [`Node`] fails the test by
//! panicking, saying what it waited for and what the node printed.

#![allow(
    clippy::panic,
    clippy::expect_used,
    reason = "a test harness fails by panicking"
)]

use std::path::PathBuf;
use std::process::ExitStatus;
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

use palaver_proto::line::{Event, Reply};
use serde_json::Value;

use crate::lines::Line;
use crate::node_command::NodeCommand;
use crate::node_process::NodeProcess;
use crate::output::{Output, Ready, is_reply};
use crate::{PROMPT, binary, temp_dir};

/// A running node of a test (see the module docs).
#[derive(Debug)]
pub struct Node {
    pub name: String,
    pub peer_id: String,
    /// Its listen addresses, each ending in `/p2p/<peer id>`.
    pub listen: Vec<String>,
    process: NodeProcess,
    lines: Receiver<Line>,
    /// Every output line so far, in order (the first is `ready`).
    pub seen: Vec<Value>,
    replies_taken: usize,
    pub data_dir: PathBuf,
}

impl Node {
    /// Starts `node --json --no-mdns --nick NAME` listening on loopback
    /// (QUIC and TCP) with the extra arguments, on a fresh data dir for
    /// `test`, and waits for its `ready` line.
    pub fn start(test: &str, name: &str, extra: &[&str]) -> Node {
        let args = [
            "--json",
            "--no-mdns",
            "--nick",
            name,
            "--listen",
            "/ip4/127.0.0.1/udp/0/quic-v1",
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
        ];
        Self::spawn(name, temp_dir(test, name), &[&args[..], extra].concat())
    }

    /// Starts the node binary with exactly these arguments (plus `--data-dir`).
    pub fn spawn(name: &str, data_dir: PathBuf, args: &[&str]) -> Node {
        Self::spawn_with(name, data_dir, &[], args)
    }

    /// Like [`Node::spawn`], run through `prefix` (e.g. `ip netns exec NS`).
    pub fn spawn_with(name: &str, data_dir: PathBuf, prefix: &[&str], args: &[&str]) -> Node {
        let command = NodeCommand::new(binary("node"), data_dir)
            .prefix(prefix)
            .args(args);
        Self::from_command(name, &command)
    }

    /// Starts `command` and waits for its `ready` line.
    pub fn from_command(name: &str, command: &NodeCommand) -> Node {
        let (tx, lines) = channel();
        let process = command
            .spawn(0, tx)
            .unwrap_or_else(|e| panic!("{name}: {e:#}"));
        let mut node = Node {
            name: name.to_owned(),
            peer_id: String::new(),
            listen: Vec::new(),
            process,
            lines,
            seen: Vec::new(),
            replies_taken: 0,
            data_dir: command.data_dir().to_owned(),
        };
        let first = node.next_line(PROMPT).unwrap_or_else(|| {
            panic!(
                "{name}: no ready line; its stderr: {}",
                node.process.stderr_tail()
            )
        });
        assert_eq!(
            first["event"], "ready",
            "{name}: first line must be ready: {first}"
        );
        let ready = Ready::from_value(&first).unwrap_or_else(|e| panic!("{name}: {e:#}"));
        node.peer_id = ready.peer_id;
        node.listen = ready.listen;
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
            Ok(line) => {
                assert!(
                    !line.is_text(),
                    "{}: stdout line is not JSON: {}",
                    self.name,
                    line.value
                );
                self.seen.push(line.value.clone());
                Some(line.value)
            }
            Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => None,
        }
    }

    /// Writes raw bytes to the node's stdin.
    pub fn write_raw(&mut self, bytes: &[u8]) {
        self.process
            .write(bytes)
            .unwrap_or_else(|e| panic!("{}: {e:#}", self.name));
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

    /// Sends a command and returns its reply as the protocol's [`Reply`].
    pub fn ask(&mut self, line: &str) -> Reply {
        let reply = self.command(line);
        match Output::from_value(&reply) {
            Ok(Output::Reply(reply)) => reply,
            other => panic!("{}: {line}: not a reply: {reply} ({other:?})", self.name),
        }
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

    /// Waits until some event (earlier ones included), read as the
    /// protocol's [`Event`], matches. A line the protocol does not know fails.
    pub fn wait_for_event(
        &mut self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&Event) -> bool,
    ) -> Event {
        let name = self.name.clone();
        let event = |v: &Value| match Output::from_value(v) {
            Ok(Output::Event(e)) => Some(e),
            Ok(Output::Reply(_)) => None,
            Err(e) => panic!("{name}: not a line of the protocol ({e}): {v}"),
        };
        let found = self.wait_for(what, timeout, |v| event(v).is_some_and(|e| pred(&e)));
        event(&found).expect("the line just matched as an event")
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
        // Each line is looked at once: a count of thousands stays linear.
        let mut found: Vec<Value> = Vec::new();
        let mut checked = 0;
        loop {
            found.extend(self.seen[checked..].iter().filter(|v| pred(v)).cloned());
            checked = self.seen.len();
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
        self.wait_for_event(&what, PROMPT, |e| {
            matches!(e, Event::Joined { room: r, peer_id, .. } if r.as_str() == room && peer_id == other)
        });
    }

    /// Closes stdin (the node quits as on /quit) and waits for the exit status.
    pub fn close_and_wait(&mut self) -> ExitStatus {
        self.process.close_stdin();
        self.wait_exit()
    }

    /// Waits for the process to exit on its own: its stdout closes first.
    pub fn wait_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + PROMPT;
        loop {
            match self
                .lines
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            {
                Ok(line) => self.seen.push(line.value),
                Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => {
                    panic!("{}: did not exit within {PROMPT:?}", self.name)
                }
            }
        }
        self.process.wait().expect("wait for node")
    }

    /// SIGKILL: the node gets no chance to say goodbye.
    pub fn kill(&mut self) {
        self.process.kill();
    }

    /// The `message` lines of `room` seen so far.
    pub fn messages(&self, room: &str) -> Vec<Value> {
        self.seen
            .iter()
            .filter(|v| v["event"] == "message" && v["room"] == room)
            .cloned()
            .collect()
    }

    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// Its exit status, if it has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.process.try_wait()
    }

    /// The last lines of its stderr, for an error message.
    pub fn stderr_tail(&self) -> String {
        self.process.stderr_tail()
    }
}
