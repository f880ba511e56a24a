//! The node as a process: real `node` binaries (and a relay, and raw libp2p
//! peers) started by `palaver_testkit`, driven through their JSON line
//! protocol on loopback and, as root, in network namespaces. One test
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
    mod catch_up;
    mod catch_up_attacks;
    mod chat_between_processes;
    mod crash_recovery;
    mod data_dir_security;
    mod full_disk;
    mod hostile_peer;
    mod lan_discovery;
    mod lifecycle;
    mod malformed_input;
    mod network_abuse;
    mod private_rooms;
    mod rendezvous_discovery;
    mod room_state_abuse;
}
