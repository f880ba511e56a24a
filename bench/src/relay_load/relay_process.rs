//! The relay under test, as a process of its own (started by the test kit):
//! its default limits (but for the per-IP ones: every client of the bench
//! is on 127.0.0.1, so those are raised to the load's size), loopback TCP
//! and QUIC, its TCP address read from its JSON output, and killed when
//! dropped, so that no path leaves it running.

use std::process::ExitStatus;

use libp2p::{Multiaddr, PeerId};
use palaver_testkit::{Relay, RelayCommand};

use super::Options;

/// Where the clients reach the relay.
#[derive(Debug, Clone)]
pub(super) struct Target {
    /// Its TCP address, ending in `/p2p/<relay>`.
    pub(super) addr: Multiaddr,
    pub(super) peer: PeerId,
}

/// The running relay; killed (and reaped) when dropped, on every path.
pub(super) struct RelayProcess {
    relay: Relay,
    pub(super) target: Target,
}

impl RelayProcess {
    pub(super) fn start(options: &Options) -> anyhow::Result<Self> {
        // Every client, the idle room's and the probes', with room to spare.
        let per_ip = (options.reservations.saturating_mul(2).saturating_add(1024)).to_string();
        let relay = RelayCommand::new(&options.relay)
            .identity(options.work_dir.join("relay.key"))
            .args(["--listen", "/ip4/127.0.0.1/tcp/0"])
            .args(["--listen", "/ip4/127.0.0.1/udp/0/quic-v1"])
            .args(["--max-connections-per-ip", &per_ip])
            .args(["--max-registrations-per-ip", &per_ip])
            .args(["--max-circuits-per-ip", &per_ip])
            .args(["--max-handshakes-per-ip", &per_ip])
            .log("warn")
            .stderr_to(options.work_dir.join("relay.stderr"))
            .start(2)?;
        let (addr, peer) = relay.tcp_target()?;
        Ok(Self {
            relay,
            target: Target { addr, peer },
        })
    }

    pub(super) fn pid(&self) -> u32 {
        self.relay.pid()
    }

    /// Its exit status if it has exited, without waiting.
    pub(super) fn try_wait(&mut self) -> Option<ExitStatus> {
        self.relay.try_wait()
    }
}
