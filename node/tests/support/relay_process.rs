//! Runs a real `relay` process for tests (the binary next to `node`; built
//! by `cargo test --workspace`).

#![allow(dead_code, reason = "each test uses part of the harness")]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

pub struct Relay {
    child: Child,
    pub addrs: Vec<String>,
    pub identity: PathBuf,
}

impl Relay {
    pub fn binary() -> PathBuf {
        let path = Path::new(env!("CARGO_BIN_EXE_node")).with_file_name("relay");
        assert!(
            path.exists(),
            "{} is missing: build it with cargo test --workspace (or cargo build --bins)",
            path.display()
        );
        path
    }

    /// Starts a relay with `args` and waits for the listening lines of its
    /// `listeners` listen addresses.
    pub fn start(identity: &Path, listeners: usize, args: &[&str]) -> Relay {
        let stderr = std::fs::File::create(identity.with_extension("stderr")).expect("stderr file");
        let mut child = Command::new(Self::binary())
            .arg("--json")
            .arg("--identity")
            .arg(identity)
            .args(args)
            .env(
                "RUST_LOG",
                std::env::var("PALAVER_TEST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("start relay");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let mut addrs = Vec::new();
        while addrs.len() < listeners {
            let line = lines
                .next()
                .expect("relay printed its addresses")
                .expect("read relay stdout");
            let v: serde_json::Value = serde_json::from_str(&line).expect("relay output is JSON");
            assert_eq!(v["event"], "listening", "{v}");
            addrs.push(v["addr"].as_str().expect("addr").to_owned());
        }
        Relay {
            child,
            addrs,
            identity: identity.to_owned(),
        }
    }

    pub fn addr(&self, transport: &str) -> String {
        self.addrs
            .iter()
            .find(|a| a.contains(&format!("/{transport}")))
            .expect("relay address")
            .clone()
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.kill();
    }
}
