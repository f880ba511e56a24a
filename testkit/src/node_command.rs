//! How to start one `node`: its binary, data dir, flags, environment,
//! passphrase and scrypt cost, and what it runs inside (`ip netns exec NS`).
//!
//! A started node sees only the `PALAVER_*` variables set here: those of
//! the test process (a developer's `PALAVER_BOOTSTRAP`, say) are removed. Its
//! stderr goes to `<data dir>.stderr`, beside its data dir, to be looked at
//! when a test fails.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc::Sender;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow};

use crate::lines::{Line, read_lines};
use crate::node_process::NodeProcess;
use crate::run_to_end::run_to_end;
use crate::{PASSPHRASE, TEST_KDF_LOG_N};

/// A node to start (see the module docs).
#[derive(Debug, Clone)]
pub struct NodeCommand {
    binary: PathBuf,
    data_dir: PathBuf,
    prefix: Vec<OsString>,
    args: Vec<OsString>,
    passphrase: Option<String>,
    kdf_log_n: u8,
    log: String,
    env: Vec<(OsString, OsString)>,
}

impl NodeCommand {
    /// The node `binary` on `data_dir` (passed as `--data-dir` after the
    /// other arguments), with the kit's [`PASSPHRASE`], a cheap scrypt cost
    /// ([`TEST_KDF_LOG_N`]) and the test log filter.
    pub fn new(binary: impl Into<PathBuf>, data_dir: impl Into<PathBuf>) -> NodeCommand {
        NodeCommand {
            binary: binary.into(),
            data_dir: data_dir.into(),
            prefix: Vec::new(),
            args: Vec::new(),
            passphrase: Some(PASSPHRASE.to_owned()),
            kdf_log_n: TEST_KDF_LOG_N,
            log: crate::test_log_filter(),
            env: Vec::new(),
        }
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Where the node's stderr goes: `<data dir>.stderr`.
    pub fn stderr_path(&self) -> PathBuf {
        let mut path = self.data_dir.clone().into_os_string();
        path.push(".stderr");
        PathBuf::from(path)
    }

    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> NodeCommand {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    pub fn args<I, S>(mut self, args: I) -> NodeCommand
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    /// Sets an environment variable (after the kit's own, so it wins).
    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> NodeCommand {
        self.env
            .push((key.as_ref().to_owned(), value.as_ref().to_owned()));
        self
    }

    /// Sets environment variables (after the kit's own, so they win).
    pub fn envs<I, K, V>(mut self, vars: I) -> NodeCommand
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<OsStr>,
        V: AsRef<OsStr>,
    {
        self.env.extend(
            vars.into_iter()
                .map(|(k, v)| (k.as_ref().to_owned(), v.as_ref().to_owned())),
        );
        self
    }

    /// The passphrase given in `PALAVER_PASSPHRASE`.
    pub fn passphrase(mut self, passphrase: &str) -> NodeCommand {
        self.passphrase = Some(passphrase.to_owned());
        self
    }

    /// No `PALAVER_PASSPHRASE` at all.
    pub fn no_passphrase(mut self) -> NodeCommand {
        self.passphrase = None;
        self
    }

    /// scrypt cost (log2 N) of a key file created now (`PALAVER_KDF_LOG_N`).
    pub fn kdf_log_n(mut self, log_n: u8) -> NodeCommand {
        self.kdf_log_n = log_n;
        self
    }

    /// The node's log filter (`RUST_LOG`).
    pub fn log(mut self, filter: &str) -> NodeCommand {
        filter.clone_into(&mut self.log);
        self
    }

    /// Runs the node through this command line, e.g. `ip netns exec NS`.
    pub fn prefix(mut self, prefix: &[&str]) -> NodeCommand {
        self.prefix = prefix.iter().map(OsString::from).collect();
        self
    }

    /// The command line and environment, without stdio.
    fn command(&self) -> Command {
        let mut command = match self.prefix.split_first() {
            Some((program, rest)) => {
                let mut c = Command::new(program);
                c.args(rest).arg(&self.binary);
                c
            }
            None => Command::new(&self.binary),
        };
        command
            .args(&self.args)
            .arg("--data-dir")
            .arg(&self.data_dir);
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("PALAVER_") {
                command.env_remove(key);
            }
        }
        if let Some(passphrase) = &self.passphrase {
            command.env("PALAVER_PASSPHRASE", passphrase);
        }
        command
            .env("PALAVER_KDF_LOG_N", self.kdf_log_n.to_string())
            .env("RUST_LOG", &self.log)
            .envs(self.env.iter().map(|(k, v)| (k, v)));
        command
    }

    /// Starts the node with piped stdin and stdout; each stdout line goes to
    /// `lines` as printed by `source`. Does not wait for anything.
    pub fn spawn(&self, source: usize, lines: Sender<Line>) -> anyhow::Result<NodeProcess> {
        let stderr_path = self.stderr_path();
        let stderr = std::fs::File::create(&stderr_path)
            .with_context(|| format!("cannot create {}", stderr_path.display()))?;
        let spawned_at = Instant::now();
        let mut child = self
            .command()
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .with_context(|| format!("cannot start {}", self.binary.display()))?;
        let stdin = child.stdin.take();
        let Some(stdout) = child.stdout.take() else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(anyhow!("{}: no stdout pipe", self.binary.display()));
        };
        let stdout_ended = read_lines(stdout, source, lines);
        Ok(NodeProcess::new(
            child,
            stdin,
            stdout_ended,
            spawned_at,
            stderr_path,
        ))
    }

    /// Runs the node to its end with `input` on stdin (then end of input),
    /// collecting its stdout and stderr; killed after `deadline`.
    pub fn run(&self, input: &[u8], deadline: Duration) -> anyhow::Result<Output> {
        run_to_end(&mut self.command(), input, deadline)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn envs(command: &Command) -> Vec<(String, Option<String>)> {
        command
            .get_envs()
            .map(|(k, v)| {
                (
                    k.to_string_lossy().into_owned(),
                    v.map(|v| v.to_string_lossy().into_owned()),
                )
            })
            .collect()
    }

    #[test]
    fn the_data_dir_comes_last_and_a_prefix_first() {
        let c = NodeCommand::new("/bin/node", "/tmp/d")
            .args(["--json", "--no-mdns"])
            .prefix(&["ip", "netns", "exec", "ns1"])
            .command();
        assert_eq!(c.get_program(), "ip");
        let args: Vec<&OsStr> = c.get_args().collect();
        assert_eq!(
            args,
            [
                "netns",
                "exec",
                "ns1",
                "/bin/node",
                "--json",
                "--no-mdns",
                "--data-dir",
                "/tmp/d"
            ]
        );
    }

    #[test]
    fn the_passphrase_cost_and_log_are_set_and_variables_given_win() {
        let c = NodeCommand::new("/bin/node", "/tmp/d")
            .kdf_log_n(18)
            .log("warn")
            .env("PALAVER_PASSPHRASE", "other")
            .command();
        let envs = envs(&c);
        let value = |key: &str| {
            envs.iter()
                .rev()
                .find(|(k, _)| k == key)
                .and_then(|(_, v)| v.clone())
        };
        assert_eq!(value("PALAVER_PASSPHRASE").as_deref(), Some("other"));
        assert_eq!(value("PALAVER_KDF_LOG_N").as_deref(), Some("18"));
        assert_eq!(value("RUST_LOG").as_deref(), Some("warn"));
        let none = NodeCommand::new("/bin/node", "/tmp/d")
            .no_passphrase()
            .command();
        assert!(
            !envs_set(&none).contains(&"PALAVER_PASSPHRASE".to_owned()),
            "no passphrase"
        );
    }

    fn envs_set(command: &Command) -> Vec<String> {
        envs(command)
            .into_iter()
            .filter_map(|(k, v)| v.map(|_| k))
            .collect()
    }

    #[test]
    fn the_stderr_file_is_beside_the_data_dir() {
        let c = NodeCommand::new("/bin/node", "/tmp/t/a.b");
        assert_eq!(c.stderr_path(), Path::new("/tmp/t/a.b.stderr"));
    }
}
