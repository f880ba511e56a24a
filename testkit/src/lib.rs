//! Palaver's test kit: everything the multi-process tests of every crate and
//! the benchmarks need to run real `node` and `relay` processes, and bare
//! libp2p peers beside them, written once.
//!
//! - [`binary`] finds a workspace binary next to the running test executable;
//! - [`scratch`] keeps each test process's directories in one folder of the
//!   temp dir, and removes those of test processes that have exited;
//! - [`NodeCommand`] says how to start a node (flags, environment, passphrase,
//!   data dir) and starts it as a [`NodeProcess`], whose stdout lines a
//!   reader thread stamps and parses ([`Line`]);
//! - [`Node`] drives one node for a test: commands and their replies, waits
//!   on output lines with deadlines (never fixed sleeps), and fails the test
//!   by panicking;
//! - [`RelayCommand`] and [`Relay`] do the same for the relay;
//! - `raw_peer` (feature `raw-peer`) builds a bare libp2p peer that speaks a
//!   node's gossip and catch-up protocols, for tests that play a hostile or
//!   minimal peer;
//! - [`lying_relay`] is a relay whose rendezvous answers lie (time-to-live,
//!   records), for tests of what a node does with a malicious relay;
//! - [`lying_autonat`] answers AutoNAT dial-back requests with a made-up
//!   address, for tests of whom a node believes about its reachability;
//! - [`Output`] reads a node's output lines into `palaver_proto`'s own
//!   [`Reply`](palaver_proto::line::Reply) and [`Event`](palaver_proto::line::Event).
//!
//! Everything the kit starts is killed when its handle is dropped.

pub mod binary;
pub mod lines;
pub mod log_file;
pub mod lying_autonat;
pub mod lying_relay;
pub mod node;
pub mod node_command;
pub mod node_process;
pub mod output;
#[cfg(feature = "raw-peer")]
pub mod raw_peer;
pub mod relay;
pub mod run_to_end;
pub mod scratch;

use std::time::Duration;

pub use binary::binary;
pub use lines::Line;
pub use node::Node;
pub use node_command::NodeCommand;
pub use node_process::NodeProcess;
pub use output::{Output, Ready};
pub use relay::{Relay, RelayCommand};
pub use scratch::temp_dir;

/// The passphrase nodes are started with (through `PALAVER_PASSPHRASE`)
/// unless told otherwise.
pub const PASSPHRASE: &str = "correct horse battery staple";

/// scrypt cost (log2 N) of a key file a started node creates: cheap, unlike
/// the default (`palaver_node::DEFAULT_LOG_N`).
pub const TEST_KDF_LOG_N: u8 = 10;

/// Deadline for anything a healthy process does promptly. It only bounds a
/// failing test: every wait returns as soon as what it waits for happens.
pub const PROMPT: Duration = Duration::from_secs(30);

/// The log filter (`RUST_LOG`) of started processes: `PALAVER_TEST_LOG`, or
/// `info`.
pub fn test_log_filter() -> String {
    std::env::var("PALAVER_TEST_LOG").unwrap_or_else(|_| "info".to_owned())
}
