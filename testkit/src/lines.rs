//! A started process's stdout, read on a thread of its own: each line is
//! stamped the moment it is read and parsed as JSON, then sent on a channel.
//! Several processes may share one channel (a benchmark times from a line
//! one node prints to a line another prints); each line says which process
//! printed it. Reading on a thread also means a process never blocks on a
//! full stdout pipe while the test is busy elsewhere.

use std::io::{BufRead, BufReader, Read};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::time::Instant;

use serde_json::Value;

/// One line a process printed.
#[derive(Debug, Clone)]
pub struct Line {
    /// Which process printed it (the number it was started with).
    pub source: usize,
    /// When the reader thread read it.
    pub at: Instant,
    /// The line as JSON. A line that is not JSON (a node prints none with
    /// `--json`) is kept as a JSON string holding its text.
    pub value: Value,
}

impl Line {
    /// Parses one line of text printed by `source`, read at `at`.
    pub fn parse(source: usize, at: Instant, text: &str) -> Line {
        let value = serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_owned()));
        Line { source, at, value }
    }

    /// The `event` field naming a JSON line's kind, or "" when it has none.
    pub fn event(&self) -> &str {
        self.value["event"].as_str().unwrap_or("")
    }

    /// Whether the line was not JSON (see [`Line::value`]).
    pub fn is_text(&self) -> bool {
        self.value.is_string()
    }
}

/// Reads `stdout` to its end on a new thread, sending each line to `lines`
/// as printed by `source`. The returned receiver is disconnected once stdout
/// has ended (the process exited or closed it) or `lines` is gone.
pub fn read_lines(
    stdout: impl Read + Send + 'static,
    source: usize,
    lines: Sender<Line>,
) -> Receiver<()> {
    forward_lines(stdout, lines, move |at, text| Line::parse(source, at, text))
}

/// Like [`read_lines`], each line's text as read, for output that is not
/// JSON lines.
pub fn read_text_lines(stdout: impl Read + Send + 'static, lines: Sender<String>) -> Receiver<()> {
    forward_lines(stdout, lines, |_, text| text.to_owned())
}

fn forward_lines<T: Send + 'static>(
    stdout: impl Read + Send + 'static,
    lines: Sender<T>,
    make: impl Fn(Instant, &str) -> T + Send + 'static,
) -> Receiver<()> {
    let (ended, stdout_ended) = channel::<()>();
    std::thread::spawn(move || {
        // Dropped when the thread ends: that disconnects `stdout_ended`.
        let _ended = ended;
        for text in BufReader::new(stdout).lines() {
            let at = Instant::now();
            let Ok(text) = text else { break };
            if lines.send(make(at, &text)).is_err() {
                break;
            }
        }
    });
    stdout_ended
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_lines_are_parsed_and_other_lines_kept_as_text() {
        let at = Instant::now();
        let json = Line::parse(3, at, r#"{"event":"ready","peer_id":"p"}"#);
        assert_eq!((json.source, json.event()), (3, "ready"));
        assert!(!json.is_text());
        let text = Line::parse(0, at, "thread 'main' panicked");
        assert!(text.is_text());
        assert_eq!(text.event(), "");
        assert_eq!(text.value, "thread 'main' panicked");
    }

    #[test]
    fn every_line_is_read_and_the_end_of_stdout_is_seen() {
        let (tx, rx) = channel();
        let ended = read_lines(&b"{\"event\":\"ok\"}\nplain\n"[..], 7, tx);
        let got: Vec<Line> = rx.iter().collect();
        assert_eq!(got.len(), 2);
        assert!(got.iter().all(|l| l.source == 7));
        assert_eq!(got[1].value, "plain");
        assert!(ended.recv().is_err(), "disconnected at the end of stdout");
    }

    #[test]
    fn text_lines_are_passed_on_as_read() {
        let (tx, rx) = channel();
        let ended = read_text_lines(&b"/ip4/127.0.0.1/tcp/1\n{\"event\":\"x\"}\n"[..], tx);
        let got: Vec<String> = rx.iter().collect();
        assert_eq!(got, ["/ip4/127.0.0.1/tcp/1", r#"{"event":"x"}"#]);
        assert!(ended.recv().is_err());
    }
}
