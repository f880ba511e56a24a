//! The four probe clients, which time discovers and echoes on runtimes of
//! their own, so that what they time is the relay and not a queue of the
//! load's clients: the two ends of an echo over a circuit, a discoverer that
//! checks every record of an answer as a node does, and one that only counts
//! them, which times the relay's own part of a discover.

use std::collections::VecDeque;
use std::time::Instant;

use anyhow::bail;
use libp2p::PeerId;
use libp2p::rendezvous::Namespace;
use tokio::runtime::Handle;

use super::fleet::{Fleet, ramp_deadline};
use super::messages::{Command, Echoing, Plan};
use super::relay_process::Target;
use super::summary::Summary;
use super::{Count, Figures, GRACE, PROBE_EVERY, STEP_TIMEOUT};

/// The probe clients: an echo's destination, its source, two discoverers.
pub(super) const PROBES: usize = 4;

/// The probes, ready: their fleet and who does what.
pub(super) struct Probes {
    pub(super) fleet: Fleet,
    echo_source: usize,
    echo_dest: PeerId,
    discoverer: usize,
    /// Discovers without checking the records: the relay's part.
    relay_discoverer: usize,
}

impl Probes {
    /// Reserves the probes (the echo's two ends on the first runtime, each
    /// discoverer on one of its own) and opens their circuit.
    pub(super) async fn start(
        [echo, discover, relay_discover]: &[Handle; 3],
        target: &Target,
        f: &mut Figures,
    ) -> anyhow::Result<Self> {
        let runtimes = [
            echo.clone(),
            echo.clone(),
            discover.clone(),
            relay_discover.clone(),
        ];
        let mut fleet = Fleet::spawn(&runtimes, PROBES, target, |_| None);
        let ramp = fleet.ramp(Instant::now() + ramp_deadline(PROBES)).await?;
        let &[
            (_, echo_dest),
            (echo_source, _),
            (discoverer, _),
            (relay_discoverer, _),
        ] = ramp.reserved.as_slice()
        else {
            bail!(
                "the idle relay refused a probe's reservation: {}",
                ramp.reasons.list().join("; ")
            );
        };
        let circuits = fleet
            .open_circuits(
                &[(echo_source, echo_dest)],
                Instant::now() + STEP_TIMEOUT + GRACE,
            )
            .await?;
        f.idle_circuits = Count {
            asked: 1,
            ok: circuits.established.len(),
            refused: circuits.refused,
            lost: 0,
        };
        if circuits.established.is_empty() {
            bail!(
                "the idle relay refused the probes' circuit: {}",
                circuits.reasons.list().join("; ")
            );
        }
        Ok(Self {
            fleet,
            echo_source,
            echo_dest,
            discoverer,
            relay_discoverer,
        })
    }

    /// Starts one discover (of `namespaces` in turn) and one echo every
    /// [`PROBE_EVERY`] from `start` to `until`.
    pub(super) fn hold(&self, namespaces: Vec<Namespace>, start: Instant, until: Instant) {
        let times = (until.duration_since(start).as_secs_f64() / PROBE_EVERY.as_secs_f64()) as u32;
        let give_up = until + GRACE;
        for (discoverer, check_records) in [(self.discoverer, true), (self.relay_discoverer, false)]
        {
            self.fleet.send(
                discoverer,
                Command::Hold(Plan {
                    discover_at: (0..times).map(|j| start + PROBE_EVERY * j).collect(),
                    discover_in: namespaces.clone(),
                    check_records,
                    echo: None,
                    until,
                    give_up,
                }),
            );
        }
        self.fleet.send(
            self.echo_source,
            Command::Hold(Plan {
                discover_at: VecDeque::new(),
                discover_in: Vec::new(),
                check_records: true,
                echo: Some(Echoing {
                    to: self.echo_dest,
                    every: PROBE_EVERY,
                    next: start,
                }),
                until,
                give_up,
            }),
        );
        // The echo's destination only answers; it reports losses.
        if let Some(dest) = (0..PROBES)
            .find(|i| ![self.discoverer, self.relay_discoverer, self.echo_source].contains(i))
        {
            self.fleet.send(
                dest,
                Command::Hold(Plan {
                    discover_at: VecDeque::new(),
                    discover_in: Vec::new(),
                    check_records: true,
                    echo: None,
                    until,
                    give_up,
                }),
            );
        }
    }

    /// What the probes timed during a hold.
    pub(super) async fn held(&mut self, deadline: Instant) -> anyhow::Result<Summary> {
        let tallies = self.fleet.held(PROBES, deadline).await?;
        Ok(Summary::of(tallies))
    }
}
