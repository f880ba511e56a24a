//! One-shot runs: a process given its whole input, whose stdout and stderr
//! are collected until it exits. A process that hangs is killed at a
//! deadline, so it fails the test instead of hanging it.

use std::io::{Read, Write};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc::channel;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// Runs `command` with `input` on stdin (a pipe, closed after the input),
/// and returns its exit status and everything it wrote, once it has exited.
/// After `deadline` it is killed and this is an error.
pub fn run_to_end(
    command: &mut Command,
    input: &[u8],
    deadline: Duration,
) -> anyhow::Result<Output> {
    let program = command.get_program().to_string_lossy().into_owned();
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start {program}"))?;
    let (Some(mut stdin), Some(mut stdout), Some(mut stderr)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        let _ = child.kill();
        let _ = child.wait();
        bail!("{program}: no pipes");
    };
    let input = input.to_vec();
    // A process that refuses to start never reads its input: a broken pipe is fine.
    std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let (read_tx, read) = channel();
    let out_tx = read_tx.clone();
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = stdout.read_to_end(&mut bytes);
        let _ = out_tx.send((true, bytes));
    });
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = stderr.read_to_end(&mut bytes);
        let _ = read_tx.send((false, bytes));
    });
    let until = Instant::now() + deadline;
    let (mut out, mut err) = (Vec::new(), Vec::new());
    for _ in 0..2 {
        match read.recv_timeout(until.saturating_duration_since(Instant::now())) {
            Ok((true, bytes)) => out = bytes,
            Ok((false, bytes)) => err = bytes,
            Err(_) => {
                let pid = child.id();
                let _ = child.kill();
                let _ = child.wait();
                bail!("{program} (pid {pid}) did not exit within {deadline:?}");
            }
        }
    }
    let status = child
        .wait()
        .with_context(|| format!("cannot wait for {program}"))?;
    Ok(Output {
        status,
        stdout: out,
        stderr: err,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_input_goes_in_and_both_outputs_come_back() {
        let out = run_to_end(
            Command::new("sh").args(["-c", "cat; echo oops >&2; exit 3"]),
            b"hello\n",
            Duration::from_secs(10),
        )
        .unwrap();
        assert_eq!(out.status.code(), Some(3));
        assert_eq!(out.stdout, b"hello\n");
        assert_eq!(out.stderr, b"oops\n");
    }

    #[test]
    fn a_process_that_hangs_is_killed_at_the_deadline() {
        let started = Instant::now();
        let result = run_to_end(
            Command::new("sleep").arg("30"),
            b"",
            Duration::from_millis(200),
        );
        assert!(result.is_err());
        assert!(started.elapsed() < Duration::from_secs(10));
    }
}
