//! The relay as a process: real `relay` binaries started by
//! `palaver_testkit`, and libp2p clients that talk to them. One test
//! binary, one module per subject.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a test fails by panicking"
)]

/// The subjects, in `tests/process/` (a test's root file looks for its
/// modules beside itself; those of this inline module are in its folder).
mod process {
    mod client;
    mod misbehaving_clients;
    mod operator;
    mod rendezvous_abuse;
}
