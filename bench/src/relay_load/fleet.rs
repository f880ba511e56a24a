//! The coordinator's side of many clients: a fleet of them spawned and
//! ramped up a bounded number at a time, circuits opened between its
//! reserved clients, and what each saw during a hold collected.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::bail;
use libp2p::PeerId;
use libp2p::rendezvous::Namespace;
use tokio::runtime::Handle;
use tokio::sync::{Semaphore, mpsc};

use super::client::client;
use super::messages::{Command, Report, Tally};
use super::reasons::Reasons;
use super::relay_process::Target;
use super::{RAMP_CONCURRENCY, STEP_TIMEOUT};

/// The clients of one phase, and the coordinator's side of their channels.
pub(super) struct Fleet {
    size: usize,
    commands: Vec<mpsc::UnboundedSender<Command>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    reports: mpsc::UnboundedReceiver<Report>,
}

/// How a ramp went.
#[derive(Default)]
pub(super) struct Ramp {
    /// Clients holding a reservation, by index.
    pub(super) reserved: Vec<(usize, PeerId)>,
    /// Which of them registered (the others were not to, or were refused).
    pub(super) registered: BTreeMap<usize, PeerId>,
    pub(super) reservations_refused: usize,
    pub(super) registrations_refused: usize,
    pub(super) reasons: Reasons,
}

/// How opening circuits went.
#[derive(Default)]
pub(super) struct Circuits {
    /// Source index and destination of each circuit up.
    pub(super) established: Vec<(usize, PeerId)>,
    pub(super) refused: usize,
    pub(super) reasons: Reasons,
}

impl Fleet {
    /// Starts `size` clients, client `i` on `runtimes[i]` (or the last), to
    /// register under `namespace(i)`.
    pub(super) fn spawn(
        runtimes: &[Handle],
        size: usize,
        target: &Target,
        namespace: impl Fn(usize) -> Option<Namespace>,
    ) -> Self {
        let ramp = Arc::new(Semaphore::new(RAMP_CONCURRENCY));
        let (report, reports) = mpsc::unbounded_channel();
        let mut commands = Vec::with_capacity(size);
        let mut tasks = Vec::with_capacity(size);
        for index in 0..size {
            let (command, rx) = mpsc::unbounded_channel();
            commands.push(command);
            let Some(runtime) = runtimes.get(index).or(runtimes.last()) else {
                break;
            };
            tasks.push(runtime.spawn(client(
                index,
                target.clone(),
                namespace(index),
                ramp.clone(),
                report.clone(),
                rx,
            )));
        }
        Self {
            size,
            commands,
            tasks,
            reports,
        }
    }

    pub(super) fn send(&self, index: usize, command: Command) {
        if let Some(c) = self.commands.get(index) {
            let _ = c.send(command);
        }
    }

    async fn next(&mut self, deadline: Instant, waiting_for: &str) -> anyhow::Result<Report> {
        match tokio::time::timeout_at(deadline.into(), self.reports.recv()).await {
            Ok(Some(report)) => Ok(report),
            Ok(None) => bail!("every client stopped while waiting for {waiting_for}"),
            Err(_) => bail!("timed out waiting for {waiting_for}"),
        }
    }

    pub(super) async fn ramp(&mut self, deadline: Instant) -> anyhow::Result<Ramp> {
        let mut ramp = Ramp::default();
        for _ in 0..self.size {
            match self.next(deadline, "the clients' reservations").await? {
                Report::Reserved {
                    index,
                    peer,
                    registration,
                } => {
                    ramp.reserved.push((index, peer));
                    match registration {
                        Some(Ok(())) => {
                            ramp.registered.insert(index, peer);
                        }
                        Some(Err(why)) => {
                            ramp.registrations_refused += 1;
                            ramp.reasons.add(why);
                        }
                        None => {}
                    }
                }
                Report::Refused { why } => {
                    ramp.reservations_refused += 1;
                    ramp.reasons.add(why);
                }
                _ => {}
            }
        }
        ramp.reserved.sort_unstable_by_key(|(i, _)| *i);
        Ok(ramp)
    }

    pub(super) async fn open_circuits(
        &mut self,
        pairs: &[(usize, PeerId)],
        deadline: Instant,
    ) -> anyhow::Result<Circuits> {
        for (source, dest) in pairs {
            self.send(*source, Command::OpenCircuit { dest: *dest });
        }
        let mut circuits = Circuits::default();
        let mut answered = 0;
        while answered < pairs.len() {
            if let Report::Circuit {
                index,
                dest,
                result,
            } = self.next(deadline, "the circuits").await?
            {
                answered += 1;
                match result {
                    Ok(()) => circuits.established.push((index, dest)),
                    Err(why) => {
                        circuits.refused += 1;
                        circuits.reasons.add(why);
                    }
                }
            }
        }
        circuits.established.sort_unstable_by_key(|(i, _)| *i);
        Ok(circuits)
    }

    pub(super) async fn held(
        &mut self,
        count: usize,
        deadline: Instant,
    ) -> anyhow::Result<Vec<Tally>> {
        let mut tallies = Vec::with_capacity(count);
        while tallies.len() < count {
            if let Report::Held { tally } = self.next(deadline, "the end of the hold").await? {
                tallies.push(tally);
            }
        }
        Ok(tallies)
    }

    /// Stops every client and waits (a little) for each to close.
    pub(super) async fn stop(self) {
        for c in &self.commands {
            let _ = c.send(Command::Stop);
        }
        drop(self.commands);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        for task in self.tasks {
            let _ = tokio::time::timeout_at(deadline, task).await;
        }
    }
}

/// How long a whole ramp of `clients` may take.
pub(super) fn ramp_deadline(clients: usize) -> Duration {
    STEP_TIMEOUT * (clients.div_ceil(RAMP_CONCURRENCY) as u32 + 1)
}

/// Disjoint (source, destination) pairs among the reserved clients: the
/// source's index and the destination's peer id.
pub(super) fn circuit_pairs(reserved: &[(usize, PeerId)], circuits: usize) -> Vec<(usize, PeerId)> {
    reserved
        .chunks_exact(2)
        .take(circuits)
        .filter_map(|pair| match pair {
            [(source, _), (_, dest)] => Some((*source, *dest)),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn circuits_pair_distinct_clients() {
        let reserved: Vec<(usize, PeerId)> = (0..7).map(|i| (i, PeerId::random())).collect();
        let pairs = circuit_pairs(&reserved, 10);
        assert_eq!(pairs.len(), 3);
        assert_eq!(pairs[0], (0, reserved[1].1));
        assert_eq!(pairs[2], (4, reserved[5].1));
        assert_eq!(circuit_pairs(&reserved, 2).len(), 2);
    }
}
