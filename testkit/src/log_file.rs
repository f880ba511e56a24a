//! The stderr logs of started processes, read back when one fails to start
//! so that the error says why.

use std::path::Path;

/// The last five lines of the log at `path`, joined by ` | `, or a note that
/// it is empty or missing.
pub fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let tail = lines[lines.len().saturating_sub(5)..].join(" | ");
    if tail.is_empty() {
        format!("{} is empty", path.display())
    } else {
        tail
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tail_is_the_last_five_lines_or_says_the_log_is_empty() {
        let dir = crate::scratch::process_dir("palaver-kit-self-test").unwrap();
        let log = dir.join("tail.stderr");
        std::fs::write(&log, "1\n2\n3\n4\n5\n6\n7\n").unwrap();
        assert_eq!(tail(&log), "3 | 4 | 5 | 6 | 7");
        std::fs::write(&log, "").unwrap();
        assert!(tail(&log).ends_with("is empty"));
    }
}
