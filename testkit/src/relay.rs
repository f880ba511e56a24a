//! A real `relay` process: how to start it ([`RelayCommand`]) and the running
//! relay ([`Relay`]), whose listen addresses are read from its stdout (with
//! `--json`, `{"event":"listening","addr":…}` lines; without, the bare
//! addresses a person pastes into `node --bootstrap`). It is killed when
//! dropped, so that no path leaves it running.
//!
//! Like a node, a started relay sees only the `PALAVER_*` variables set here.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc::{RecvTimeoutError, channel};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, PeerId};

use crate::lines::read_text_lines;
use crate::log_file::tail;
use crate::run_to_end::run_to_end;
use crate::{PROMPT, binary};

/// A relay to start (see the module docs).
#[derive(Debug, Clone)]
pub struct RelayCommand {
    binary: PathBuf,
    identity: Option<PathBuf>,
    args: Vec<OsString>,
    json: bool,
    log: String,
    stderr: Option<PathBuf>,
}

impl RelayCommand {
    /// The relay `binary`, with `--json` output and the test log filter; its
    /// stderr is discarded unless [`RelayCommand::stderr_to`] says where.
    pub fn new(binary: impl Into<PathBuf>) -> RelayCommand {
        RelayCommand {
            binary: binary.into(),
            identity: None,
            args: Vec::new(),
            json: true,
            log: crate::test_log_filter(),
            stderr: None,
        }
    }

    /// The key file (`--identity`), created by the relay if missing.
    pub fn identity(mut self, path: impl Into<PathBuf>) -> RelayCommand {
        self.identity = Some(path.into());
        self
    }

    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> RelayCommand {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    pub fn args<I, S>(mut self, args: I) -> RelayCommand
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    /// Bare addresses on stdout, as a person sees them (no `--json`).
    pub fn plain_output(mut self) -> RelayCommand {
        self.json = false;
        self
    }

    /// The relay's log filter (`RUST_LOG`).
    pub fn log(mut self, filter: &str) -> RelayCommand {
        filter.clone_into(&mut self.log);
        self
    }

    /// Writes the relay's stderr to this file.
    pub fn stderr_to(mut self, path: impl Into<PathBuf>) -> RelayCommand {
        self.stderr = Some(path.into());
        self
    }

    fn command(&self) -> Command {
        let mut command = Command::new(&self.binary);
        if self.json {
            command.arg("--json");
        }
        if let Some(identity) = &self.identity {
            command.arg("--identity").arg(identity);
        }
        command.args(&self.args);
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("PALAVER_") {
                command.env_remove(key);
            }
        }
        command.env("RUST_LOG", &self.log);
        command
    }

    /// Starts the relay and waits (up to [`PROMPT`]) until it has printed
    /// `listeners` listen addresses.
    pub fn start(&self, listeners: usize) -> anyhow::Result<Relay> {
        let stderr = match &self.stderr {
            Some(path) => Stdio::from(
                std::fs::File::create(path)
                    .with_context(|| format!("cannot create {}", path.display()))?,
            ),
            None => Stdio::null(),
        };
        let mut child = self
            .command()
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .with_context(|| format!("cannot start {}", self.binary.display()))?;
        let stdout = child.stdout.take();
        // From here on the relay is killed whatever happens.
        let mut relay = Relay {
            child,
            addrs: Vec::new(),
        };
        let stdout = stdout.ok_or_else(|| anyhow!("no stdout from the relay"))?;
        let (tx, lines) = channel();
        // The relay's exit is seen by waiting for it, not by its stdout's end.
        drop(read_text_lines(stdout, tx));
        let deadline = Instant::now() + PROMPT;
        while relay.addrs.len() < listeners {
            let left = deadline.saturating_duration_since(Instant::now());
            match lines.recv_timeout(left) {
                Ok(line) => {
                    let addr = listening_addr(&line)
                        .ok_or_else(|| anyhow!("the relay printed {line:?}"))?;
                    relay.addrs.push(addr.to_string());
                }
                Err(e) => {
                    let why = match e {
                        RecvTimeoutError::Timeout => format!("within {PROMPT:?}"),
                        RecvTimeoutError::Disconnected => "before its stdout closed".to_owned(),
                    };
                    let exited = relay.child.try_wait().ok().flatten();
                    let log = self
                        .stderr
                        .as_deref()
                        .map_or_else(|| "(stderr discarded)".to_owned(), tail);
                    bail!(
                        "the relay printed {} of {listeners} listen addresses {why}{}: {log}",
                        relay.addrs.len(),
                        exited.map_or(String::new(), |s| format!(" (it exited: {s})")),
                    );
                }
            }
        }
        // Whatever it prints later is read (so it never blocks) and dropped.
        std::thread::spawn(move || for _ in lines {});
        Ok(relay)
    }

    /// Runs the relay to its end (stdin closed at once), collecting its
    /// stdout and stderr; killed after `deadline`.
    pub fn run(&self, deadline: Duration) -> anyhow::Result<Output> {
        run_to_end(&mut self.command(), b"", deadline)
    }
}

/// The address a relay's output line gives: the `addr` of a
/// `{"event":"listening","addr":…}` line with `--json`, the line itself
/// without.
fn listening_addr(line: &str) -> Option<Multiaddr> {
    match serde_json::from_str::<serde_json::Value>(line) {
        Ok(v) => {
            if v.get("event")?.as_str()? != "listening" {
                return None;
            }
            v.get("addr")?.as_str()?.parse().ok()
        }
        Err(_) => line.parse().ok(),
    }
}

/// A running relay (see the module docs).
#[derive(Debug)]
pub struct Relay {
    child: Child,
    /// Its listen addresses as printed, each ending in `/p2p/<relay>`.
    pub addrs: Vec<String>,
}

impl Relay {
    /// Starts the relay next to the test executable with `--identity
    /// identity` and `args`, its stderr in `<identity without extension>.stderr`,
    /// and waits for `listeners` listen addresses.
    ///
    /// # Panics
    ///
    /// When it does not start.
    #[allow(clippy::panic, reason = "a test harness fails by panicking")]
    pub fn start(identity: &Path, listeners: usize, args: &[&str]) -> Relay {
        RelayCommand::new(binary("relay"))
            .identity(identity)
            .args(args)
            .stderr_to(identity.with_extension("stderr"))
            .start(listeners)
            .unwrap_or_else(|e| panic!("start the relay: {e:#}"))
    }

    /// The listen address using `transport` ("quic-v1" or "tcp").
    ///
    /// # Panics
    ///
    /// When it has none.
    #[allow(clippy::panic, reason = "a test harness fails by panicking")]
    pub fn addr(&self, transport: &str) -> String {
        self.addrs
            .iter()
            .find(|a| a.contains(&format!("/{transport}")))
            .unwrap_or_else(|| panic!("no {transport} address in {:?}", self.addrs))
            .clone()
    }

    /// Its plain TCP listen address (no WebSocket, no circuit) and its peer id.
    pub fn tcp_target(&self) -> anyhow::Result<(Multiaddr, PeerId)> {
        for addr in self
            .addrs
            .iter()
            .filter_map(|a| a.parse::<Multiaddr>().ok())
        {
            if is_tcp(&addr)
                && let Some(peer) = peer_of(&addr)
            {
                return Ok((addr, peer));
            }
        }
        bail!("no TCP address with a peer id in {:?}", self.addrs)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its exit status if it has exited, without waiting.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Reaps the relay, waiting for as long as it runs.
    pub fn wait(&mut self) -> anyhow::Result<ExitStatus> {
        self.child.wait().context("wait for the relay")
    }

    /// SIGKILL, and reaps it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Whether `addr` is plain TCP (no WebSocket, no relayed circuit).
fn is_tcp(addr: &Multiaddr) -> bool {
    addr.iter().any(|p| matches!(p, Protocol::Tcp(_)))
        && !addr
            .iter()
            .any(|p| matches!(p, Protocol::Ws(_) | Protocol::Wss(_) | Protocol::P2pCircuit))
}

fn peer_of(addr: &Multiaddr) -> Option<PeerId> {
    match addr.iter().last() {
        Some(Protocol::P2p(peer)) => Some(peer),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_relays_tcp_address_is_read_from_its_listening_line() {
        let peer = PeerId::random();
        let tcp = format!(r#"{{"event":"listening","addr":"/ip4/127.0.0.1/tcp/4001/p2p/{peer}"}}"#);
        let quic = format!(
            r#"{{"event":"listening","addr":"/ip4/127.0.0.1/udp/4001/quic-v1/p2p/{peer}"}}"#
        );
        let addr = listening_addr(&tcp).unwrap();
        assert!(is_tcp(&addr));
        assert_eq!(peer_of(&addr), Some(peer));
        assert!(!is_tcp(&listening_addr(&quic).unwrap()));
        assert!(listening_addr(r#"{"event":"other","addr":"/ip4/1.2.3.4/tcp/1"}"#).is_none());
        assert!(listening_addr("not json").is_none());
    }

    #[test]
    fn without_json_the_line_is_the_address() {
        let line =
            "/ip4/127.0.0.1/udp/9/quic-v1/p2p/12D3KooWLbmkW4nDzbxnbNMqRjUTbPYrGV6bvN6orpEwvPKtp5WJ";
        let addr = listening_addr(line).unwrap();
        assert_eq!(addr.to_string(), line, "the address as printed");
        let ws: Multiaddr = "/ip4/127.0.0.1/tcp/4002/ws".parse().unwrap();
        assert!(!is_tcp(&ws));
        assert_eq!(peer_of(&ws), None);
    }
}
