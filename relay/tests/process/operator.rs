//! The relay as an operator runs it: clear errors for bad input, a stable
//! identity, metrics, and a clean stop on SIGTERM.

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Output};

use palaver_testkit::{PROMPT, Relay, RelayCommand, binary, temp_dir};

/// The relay with `args`, printing bare addresses as a person sees them.
fn relay(args: &[&str]) -> RelayCommand {
    RelayCommand::new(binary("relay")).plain_output().args(args)
}

/// Runs a relay that is expected to stop by itself (refusing to start).
fn run(args: &[&str]) -> Output {
    relay(args).run(PROMPT).unwrap()
}

/// Starts a relay, its stderr in `dir`, and reads its first listening line.
fn start(dir: &Path, args: &[&str]) -> (Relay, String) {
    let relay = relay(args)
        .stderr_to(dir.join("relay.stderr"))
        .start(1)
        .unwrap();
    let line = relay.addrs[0].clone();
    (relay, line)
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn bad_flags_are_refused_with_a_clear_error() {
    let o = run(&["--listen", "not-a-multiaddr"]);
    assert_eq!(o.status.code(), Some(2), "{o:?}");
    assert!(stderr(&o).contains("--listen"), "{}", stderr(&o));
    let o = run(&["--max-reservations", "lots"]);
    assert_eq!(o.status.code(), Some(2));
    let dir = temp_dir("ttl", "relay");
    let id = dir.join("id.key");
    let o = run(&[
        "--identity",
        id.to_str().unwrap(),
        "--min-ttl",
        "100",
        "--max-ttl",
        "10",
        "--listen",
        "/ip4/127.0.0.1/tcp/0",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("--min-ttl"), "{}", stderr(&o));
}

#[test]
fn an_unreadable_or_corrupt_identity_is_a_clear_error() {
    let dir = temp_dir("identity", "relay");
    let o = run(&[
        "--identity",
        dir.to_str().unwrap(),
        "--listen",
        "/ip4/127.0.0.1/tcp/0",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("cannot read identity file"),
        "{}",
        stderr(&o)
    );
    let corrupt = dir.join("corrupt.key");
    std::fs::write(&corrupt, b"not a key").unwrap();
    let o = run(&[
        "--identity",
        corrupt.to_str().unwrap(),
        "--listen",
        "/ip4/127.0.0.1/tcp/0",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("not a valid key"), "{}", stderr(&o));
    assert_eq!(
        std::fs::read(&corrupt).unwrap(),
        b"not a key",
        "left as it was"
    );
    assert!(o.stdout.is_empty());
}

#[test]
fn a_port_in_use_is_a_clear_error() {
    let dir = temp_dir("port", "relay");
    let id = dir.join("id.key");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let o = run(&[
        "--identity",
        id.to_str().unwrap(),
        "--listen",
        &format!("/ip4/127.0.0.1/tcp/{port}"),
    ]);
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    assert!(
        stderr(&o).contains(&format!("cannot listen on /ip4/127.0.0.1/tcp/{port}")),
        "{}",
        stderr(&o)
    );
}

#[test]
fn the_identity_survives_a_restart_and_sigterm_stops_the_relay_cleanly() {
    let dir = temp_dir("restart", "relay");
    let id = dir.join("sub").join("id.key");
    let args = [
        "--identity",
        id.to_str().unwrap(),
        "--listen",
        "/ip4/127.0.0.1/udp/0/quic-v1",
    ];
    let (mut first, line) = start(&dir, &args);
    assert!(
        line.starts_with("/ip4/127.0.0.1/udp/") && line.contains("/quic-v1/p2p/12D3KooW"),
        "{line}"
    );
    let peer = line.rsplit('/').next().unwrap().to_owned();
    Command::new("kill")
        .args(["-TERM", &first.pid().to_string()])
        .status()
        .unwrap();
    assert!(first.wait().unwrap().success(), "exit 0 after SIGTERM");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&id).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let (mut second, line) = start(&dir, &args);
    assert!(
        line.ends_with(&format!("/p2p/{peer}")),
        "same peer id after restart: {line}"
    );
    second.kill();
}

#[test]
fn metrics_are_served_over_http() {
    let dir = temp_dir("metrics", "relay");
    let id = dir.join("id.key");
    let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let metrics = probe.local_addr().unwrap();
    drop(probe);
    let (mut relay, _) = start(
        &dir,
        &[
            "--identity",
            id.to_str().unwrap(),
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
            "--metrics",
            &metrics.to_string(),
        ],
    );
    let mut s = std::net::TcpStream::connect(metrics).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).unwrap();
    assert!(body.starts_with("HTTP/1.1 200 OK"), "{body}");
    assert!(
        body.contains("palaver_relay_libp2p_swarm_new_listen_addr_total"),
        "{body}"
    );
    relay.kill();
}
