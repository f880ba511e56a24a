//! Where started processes keep their data dirs, identities and logs: one
//! folder per test (or benchmark) process in the temp dir,
//! `<prefix>-<pid>`. The first time a process asks for its folder, the
//! folders of processes that have exited are removed, so runs do not pile up
//! in the temp dir; the last run's stay to be looked at.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The prefix of the test processes' folders.
pub const TEST_PREFIX: &str = "palaver-tests";

/// This process's folder `<temp dir>/<prefix>-<pid>`, created if needed,
/// after removing the `<prefix>-<pid>` folders of processes that are gone.
pub fn process_dir(prefix: &str) -> std::io::Result<PathBuf> {
    let tmp = std::env::temp_dir();
    remove_exited(&tmp, prefix);
    let dir = tmp.join(format!("{prefix}-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// Removes the `<prefix>-<pid>` folders in `tmp` whose process has exited.
fn remove_exited(tmp: &Path, prefix: &str) {
    let Ok(entries) = std::fs::read_dir(tmp) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let pid = name
            .to_str()
            .and_then(|n| n.strip_prefix(prefix))
            .and_then(|n| n.strip_prefix('-'))
            .and_then(|p| p.parse::<u32>().ok());
        if let Some(pid) = pid
            && !Path::new("/proc").join(pid.to_string()).exists()
        {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// This test process's folder (`palaver-tests-<pid>`), made on first use.
///
/// # Panics
///
/// When it cannot be created.
#[allow(clippy::panic, reason = "a test harness fails by panicking")]
pub fn test_root() -> &'static Path {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    ROOT.get_or_init(|| {
        process_dir(TEST_PREFIX).unwrap_or_else(|e| panic!("cannot create the test root: {e}"))
    })
}

/// A fresh, empty directory `<test>-<name>` for one process of one test.
///
/// # Panics
///
/// When it cannot be created.
#[allow(clippy::panic, reason = "a test harness fails by panicking")]
pub fn temp_dir(test: &str, name: &str) -> PathBuf {
    let dir = test_root().join(format!("{test}-{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)
        .unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
    dir
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_folders_of_exited_processes_with_the_prefix_are_removed() {
        let tmp = process_dir("palaver-kit-self-test")
            .unwrap()
            .join("scratch");
        std::fs::create_dir_all(&tmp).unwrap();
        // No process has a pid this large (Linux's maximum is 2^22).
        let gone = tmp.join("palaver-x-4294967295");
        let alive = tmp.join(format!("palaver-x-{}", std::process::id()));
        let other = tmp.join("palaver-y-4294967295");
        let not_a_pid = tmp.join("palaver-x-notes");
        for dir in [&gone, &alive, &other, &not_a_pid] {
            std::fs::create_dir_all(dir).unwrap();
        }
        remove_exited(&tmp, "palaver-x");
        assert!(!gone.exists());
        assert!(alive.exists() && other.exists() && not_a_pid.exists());
    }
}
