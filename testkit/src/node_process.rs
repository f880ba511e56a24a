//! A running `node` started by [`crate::NodeCommand::spawn`]: its stdin, its
//! exit, and a kill when it is dropped, so that no path leaves it running.
//! Its stdout lines go wherever the command sent them ([`crate::Line`]).

use std::io::Write;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ExitStatus};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};

/// A running node (see the module docs).
#[derive(Debug)]
pub struct NodeProcess {
    child: Child,
    stdin: Option<ChildStdin>,
    /// Disconnected once the node's stdout has ended.
    stdout_ended: Receiver<()>,
    /// When it was spawned.
    pub spawned_at: Instant,
    stderr_path: PathBuf,
}

impl NodeProcess {
    pub(crate) fn new(
        child: Child,
        stdin: Option<ChildStdin>,
        stdout_ended: Receiver<()>,
        spawned_at: Instant,
        stderr_path: PathBuf,
    ) -> NodeProcess {
        NodeProcess {
            child,
            stdin,
            stdout_ended,
            spawned_at,
            stderr_path,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Writes raw bytes to the node's stdin.
    pub fn write(&mut self, bytes: &[u8]) -> anyhow::Result<()> {
        let stdin = self
            .stdin
            .as_mut()
            .ok_or_else(|| anyhow!("stdin is closed"))?;
        stdin.write_all(bytes).context("write to stdin")?;
        stdin.flush().context("flush stdin")
    }

    /// Writes one line (a newline is added).
    pub fn send_line(&mut self, line: &str) -> anyhow::Result<()> {
        self.write(format!("{line}\n").as_bytes())
    }

    /// Closes stdin: the node quits as on `/quit`.
    pub fn close_stdin(&mut self) {
        drop(self.stdin.take());
    }

    /// Waits up to `timeout` for the node to exit on its own (its stdout
    /// ends first), and reaps it.
    pub fn wait_exit(&mut self, timeout: Duration) -> anyhow::Result<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stdout_ended.recv_timeout(left) {
                Ok(()) => {}
                Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => bail!("did not exit within {timeout:?}"),
            }
        }
        self.wait()
    }

    /// Reaps the node, waiting for as long as it runs: for a node whose
    /// stdout has ended, or that was killed.
    pub fn wait(&mut self) -> anyhow::Result<ExitStatus> {
        self.child.wait().context("wait for the node")
    }

    /// SIGKILL (the node gets no chance to say goodbye), and reaps it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Its exit status if it has exited, without waiting.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// The last lines of its stderr, for an error message.
    pub fn stderr_tail(&self) -> String {
        crate::log_file::tail(&self.stderr_path)
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        self.kill();
    }
}
