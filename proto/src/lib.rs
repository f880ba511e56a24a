//! Palaver's contracts, free of I/O: the validated names every layer shares, the
//! stdin/stdout line protocol that scripts and bots drive a node with, the
//! versioned wire encoding of what nodes gossip to each other, and the signed
//! envelopes that carry it, the catch-up protocol that exchanges history, and
//! what private rooms derive from their keys and seal with them.
//! [`contract`] gathers every name, number and label two implementations must
//! agree on (topics, message ids, rendezvous namespaces, protocol ids,
//! versions, size limits, domain-separation labels); PROTOCOL.md at the
//! repository root describes the same contract in prose.
//!
//! The line protocol is a public contract: once a command or an output field
//! exists it is extended, never renamed or dropped.

pub mod contract;
pub mod envelope;
pub mod history;
pub mod line;
pub mod names;
pub mod private;
pub mod wire;

pub use line::{Command, ErrorCode, Event, LineError, Reply};
pub use names::{NameError, Nick, RoomName, Text};
