//! Where a workspace binary (`node`, `relay`) is, for a test that runs it.
//!
//! `env!("CARGO_BIN_EXE_…")` names only the binaries of the crate whose
//! tests are compiled, so the kit looks where cargo puts every binary of the
//! workspace: next to the running test executable (`target/<profile>/`; the
//! test itself is in its `deps/`). Callers that know the path (the benchmarks'
//! `--bin-dir`) pass it to [`crate::NodeCommand`] or [`crate::RelayCommand`]
//! instead.

use std::path::{Path, PathBuf};

/// The workspace binary `name`, next to the running test executable.
///
/// # Panics
///
/// When it is not there: a test that needs it fails, saying how to build it.
#[allow(
    clippy::panic,
    reason = "a test harness fails by panicking, saying what is missing"
)]
pub fn binary(name: &str) -> PathBuf {
    let me = std::env::current_exe()
        .unwrap_or_else(|e| panic!("cannot tell where this test executable is: {e}"));
    let path = binary_dir(&me).join(name);
    assert!(
        path.exists(),
        "{} is missing: build it with cargo test --workspace (or cargo build --bins) \
         in the same profile as the tests",
        path.display()
    );
    path
}

/// The directory holding the workspace binaries, for the executable at `me`:
/// its own directory, or the one above for a test in `deps/`.
fn binary_dir(me: &Path) -> &Path {
    let dir = me.parent().unwrap_or(me);
    match dir.file_name() {
        Some(name) if name == "deps" => dir.parent().unwrap_or(dir),
        _ => dir,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binaries_are_found_beside_a_test_in_deps_or_beside_a_binary() {
        assert_eq!(
            binary_dir(Path::new("/t/target/release/deps/process-0123abcd")),
            Path::new("/t/target/release")
        );
        assert_eq!(
            binary_dir(Path::new("/t/target/release/palaver-bench")),
            Path::new("/t/target/release")
        );
    }
}
