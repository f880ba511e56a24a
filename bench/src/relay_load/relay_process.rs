//! The relay under test, as a process of its own: started with its default
//! limits on loopback TCP and QUIC, its TCP address read from its JSON
//! output, and killed when dropped, so that no path leaves it running.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command as Process, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail};
use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, PeerId};

use super::Options;

/// Longest wait for the relay to print its listen addresses.
const RELAY_START_TIMEOUT: Duration = Duration::from_secs(15);

/// Where the clients reach the relay.
#[derive(Debug, Clone)]
pub(super) struct Target {
    /// Its TCP address, ending in `/p2p/<relay>`.
    pub(super) addr: Multiaddr,
    pub(super) peer: PeerId,
}

/// The running relay; killed (and reaped) when dropped, on every path.
pub(super) struct RelayProcess {
    pub(super) child: Child,
    pub(super) target: Target,
}

impl Drop for RelayProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl RelayProcess {
    pub(super) fn start(options: &Options) -> anyhow::Result<Self> {
        let log = options.work_dir.join("relay.stderr");
        let stderr =
            File::create(&log).with_context(|| format!("cannot create {}", log.display()))?;
        let mut child = Process::new(&options.relay)
            .arg("--json")
            .arg("--identity")
            .arg(options.work_dir.join("relay.key"))
            .args(["--listen", "/ip4/127.0.0.1/tcp/0"])
            .args(["--listen", "/ip4/127.0.0.1/udp/0/quic-v1"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .with_context(|| format!("cannot start {}", options.relay.display()))?;
        let stdout = child.stdout.take();
        // From here on the relay is killed whatever happens.
        let mut relay = Self {
            child,
            target: Target {
                addr: Multiaddr::empty(),
                peer: PeerId::random(),
            },
        };
        let stdout = stdout.ok_or_else(|| anyhow!("no stdout from the relay"))?;
        let (lines, from_relay) = std::sync::mpsc::channel();
        // Reads stdout to its end (when the relay exits), so it never blocks on it.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = lines.send(line);
            }
        });
        let deadline = Instant::now() + RELAY_START_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match from_relay.recv_timeout(left) {
                Ok(line) => {
                    if let Some(addr) = listening_addr(&line).filter(is_tcp)
                        && let Some(peer) = peer_of(&addr)
                    {
                        relay.target = Target { addr, peer };
                        return Ok(relay);
                    }
                }
                Err(_) => {
                    let status = relay.child.try_wait().ok().flatten();
                    bail!(
                        "the relay printed no TCP listen address within {} s{}: {}",
                        RELAY_START_TIMEOUT.as_secs(),
                        status.map_or(String::new(), |s| format!(" (it exited: {s})")),
                        tail(&log)
                    );
                }
            }
        }
    }
}

/// The last lines of a log, for an error message.
fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let tail = lines[lines.len().saturating_sub(5)..].join(" | ");
    if tail.is_empty() {
        format!("{} is empty", path.display())
    } else {
        tail
    }
}

/// The address of a `{"event":"listening","addr":…}` line.
fn listening_addr(line: &str) -> Option<Multiaddr> {
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    if v.get("event")?.as_str()? != "listening" {
        return None;
    }
    v.get("addr")?.as_str()?.parse().ok()
}

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
}
