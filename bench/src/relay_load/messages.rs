//! What the coordinator and its clients tell each other over their
//! channels: commands and hold plans one way, reports and tallies the other.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use libp2p::PeerId;
use libp2p::rendezvous::Namespace;

use super::reasons::Reasons;

/// What the coordinator asks of a reserved client.
pub(super) enum Command {
    OpenCircuit { dest: PeerId },
    Hold(Plan),
    Stop,
}

/// What a client does during a hold.
pub(super) struct Plan {
    /// When to discover (each waits for the previous answer)...
    pub(super) discover_at: VecDeque<Instant>,
    /// ...and which namespaces, in turn.
    pub(super) discover_in: Vec<Namespace>,
    /// Whether discovers go through libp2p's rendezvous client, which checks
    /// the signature of every record in the answer, as a node does (the
    /// probes), or go on the wire with the records only counted (the load;
    /// see `raw_discover`).
    pub(super) check_records: bool,
    pub(super) echo: Option<Echoing>,
    /// No echo is sent from then on.
    pub(super) until: Instant,
    /// Whatever is still unanswered then counts as failed.
    pub(super) give_up: Instant,
}

pub(super) struct Echoing {
    pub(super) to: PeerId,
    pub(super) every: Duration,
    pub(super) next: Instant,
}

/// What a client tells the coordinator.
pub(super) enum Report {
    /// Reserved; and registered, or why not, if it was to register.
    Reserved {
        index: usize,
        peer: PeerId,
        registration: Option<Result<(), String>>,
    },
    /// No reservation (the client has stopped).
    Refused {
        why: String,
    },
    Circuit {
        index: usize,
        dest: PeerId,
        result: Result<(), String>,
    },
    Held {
        tally: Tally,
    },
}

/// What one client saw during a hold (and since its ramp).
#[derive(Debug, Default)]
pub(super) struct Tally {
    pub(super) discovers_asked: usize,
    /// Discover → answer, the answer's records checked (libp2p's client)...
    pub(super) discover: Vec<Duration>,
    /// ...and only counted (`raw_discover`).
    pub(super) discover_unchecked: Vec<Duration>,
    pub(super) discover_failures: usize,
    pub(super) registrations_seen: usize,
    pub(super) echo: Vec<Duration>,
    pub(super) echo_failures: usize,
    pub(super) reservation_lost: bool,
    pub(super) circuit_lost: bool,
    pub(super) registrations_lost: usize,
    pub(super) reasons: Reasons,
}
