//! The open-file limit: every client holds a socket in this process and one
//! in the relay (which inherits the limit), so a thousand clients need more
//! than the usual soft limit of 1024.

use std::process::{Command as Process, Stdio};

use anyhow::{anyhow, bail};

/// Makes sure this process (and so the relay it starts) may open `needed`
/// files, raising the soft limit to the hard one if it must.
pub(super) fn ensure_open_files(needed: u64) -> anyhow::Result<u64> {
    let (soft, hard) = open_files_limits()?;
    if soft >= needed {
        return Ok(soft);
    }
    if hard > soft {
        // setrlimit(2) would need unsafe code here: util-linux's prlimit does it.
        let raised = Process::new("prlimit")
            .arg(format!("--pid={}", std::process::id()))
            .arg(format!("--nofile={hard}:{hard}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if let Err(e) = raised {
            tracing::warn!("cannot run prlimit to raise the open-file limit: {e}");
        }
    }
    let (soft, _) = open_files_limits()?;
    if soft < needed {
        bail!(
            "the open-file limit is {soft} (hard {hard}) but this load needs about {needed} \
             (one socket per client in this process and in the relay): raise it, e.g. \
             `ulimit -n {needed}`, or run smaller sizes"
        );
    }
    Ok(soft)
}

/// The soft and hard `RLIMIT_NOFILE` of this process.
fn open_files_limits() -> anyhow::Result<(u64, u64)> {
    let limits = std::fs::read_to_string("/proc/self/limits")?;
    let rest = limits
        .lines()
        .find_map(|l| l.strip_prefix("Max open files"))
        .ok_or_else(|| anyhow!("no open-file limit in /proc/self/limits"))?;
    let mut values = rest.split_whitespace().map(|v| {
        if v == "unlimited" {
            Ok(u64::MAX)
        } else {
            v.parse::<u64>()
        }
    });
    let soft = values.next().ok_or_else(|| anyhow!("unreadable limit"))??;
    let hard = values.next().ok_or_else(|| anyhow!("unreadable limit"))??;
    Ok((soft, hard))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_open_file_limit_is_readable() {
        let (soft, hard) = open_files_limits().unwrap();
        assert!(soft > 0 && hard >= soft);
    }
}
