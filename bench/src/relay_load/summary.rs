//! The clients' tallies summed into the counts and samples that the figures
//! are made of.

use std::time::Duration;

use super::Count;
use super::messages::Tally;
use super::reasons::Reasons;
use crate::stats::ratio;

/// Tallies summed.
#[derive(Default)]
pub(super) struct Summary {
    pub(super) discovers: Count,
    pub(super) echoes: Count,
    pub(super) reservations_lost: usize,
    pub(super) circuits_lost: usize,
    /// Discover → answer, the records checked (as a node does)...
    pub(super) discover: Vec<Duration>,
    /// ...and only counted.
    pub(super) discover_unchecked: Vec<Duration>,
    pub(super) echo: Vec<Duration>,
    pub(super) registrations_seen: usize,
    pub(super) registrations_lost: usize,
    pub(super) reasons: Reasons,
}

impl Summary {
    pub(super) fn of(tallies: Vec<Tally>) -> Self {
        let mut s = Self::default();
        for t in tallies {
            s.reasons.merge(&t.reasons);
            s.discovers.asked += t.discovers_asked;
            s.discovers.ok += t.discover.len() + t.discover_unchecked.len();
            s.discovers.refused += t.discover_failures;
            s.echoes.asked += t.echo.len() + t.echo_failures;
            s.echoes.ok += t.echo.len();
            s.echoes.refused += t.echo_failures;
            s.reservations_lost += usize::from(t.reservation_lost);
            s.circuits_lost += usize::from(t.circuit_lost);
            s.registrations_lost += t.registrations_lost;
            s.registrations_seen += t.registrations_seen;
            s.discover.extend(t.discover);
            s.discover_unchecked.extend(t.discover_unchecked);
            s.echo.extend(t.echo);
        }
        s
    }

    pub(super) fn per_answer(&self) -> f64 {
        let answers = self.discover.len() + self.discover_unchecked.len();
        ratio(self.registrations_seen as f64, answers as f64)
    }
}
