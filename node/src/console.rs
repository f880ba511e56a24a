//! The node's face on stdin/stdout. A thread reads stdin line by line (bounded,
//! so no line can grow memory); this task parses each line, hands commands to
//! the event loop in order, and writes exactly one reply per line, in line
//! order, with events in between. stdout carries nothing else, and is
//! written by a thread of its own, which writes whatever lines have queued up
//! in one go: the console never waits for a write unless that queue is full.
//! The line protocol's records are built here only ([`render`]).

mod nicks;
mod render;

use std::io::{self, BufRead, Write};
use std::pin::Pin;
use std::thread::JoinHandle;

use futures::StreamExt;
use futures::stream::FuturesOrdered;
use palaver_proto::ErrorCode;
use palaver_proto::line::{MAX_LINE_BYTES, Reply, human, parse_line};
use tokio::sync::mpsc;

use crate::api::{Command, Event};
use crate::network::Client;

/// Lines read ahead of the console.
const INPUT_QUEUE: usize = 64;
/// Commands whose reply is awaited at once; reading pauses beyond this.
const MAX_IN_FLIGHT: usize = 1024;
/// Lines waiting for the stdout writer; the console waits beyond this.
const OUTPUT_QUEUE: usize = 1024;
/// Most bytes the writer gathers into one write.
const MAX_WRITE: usize = 64 * 1024;

enum Input {
    Line(Vec<u8>),
    TooLong(usize),
    Eof,
}

type PendingReply = Pin<Box<dyn Future<Output = Reply> + Send>>;

/// Runs the console until the event loop has finished.
/// `first_lines` are read before stdin, as if typed first.
pub async fn run(
    client: Client,
    mut events: mpsc::Receiver<Event>,
    json: bool,
    first_lines: Vec<String>,
) {
    let mut out = Output::start(json);
    // `ready` is the first line: nothing else is written before it.
    match events.recv().await {
        Some(first) => out.event(first).await,
        None => return,
    }
    let mut input = spawn_stdin_reader(first_lines);
    let mut in_flight: FuturesOrdered<PendingReply> = FuturesOrdered::new();
    let mut reading = true;
    loop {
        tokio::select! {
            // Replies first, then events, then new input: output stays in step with input.
            biased;
            Some(reply) = in_flight.next() => out.reply(&reply).await,
            event = events.recv() => match event {
                Some(event) => out.event(event).await,
                None => break,
            },
            line = input.recv(), if reading && in_flight.len() < MAX_IN_FLIGHT => {
                match line {
                    Some(Input::Line(bytes)) => match parse_line(&bytes).map_err(Reply::from).and_then(render::command) {
                        Ok(command) => {
                            reading = command != Command::Quit;
                            let answer = client.submit(command).await;
                            in_flight.push_back(Box::pin(async move { render::answer(answer.await) }));
                        }
                        Err(refused) => in_flight.push_back(ready(refused)),
                    },
                    Some(Input::TooLong(len)) => in_flight.push_back(ready(Reply::error(
                        ErrorCode::LineTooLong,
                        format!("line is {len} bytes long; the limit is {MAX_LINE_BYTES}"),
                    ))),
                    Some(Input::Eof) | None => {
                        // End of input quits like /quit, with no reply: there was no command.
                        reading = false;
                        drop(client.submit(Command::Quit).await);
                    }
                }
            }
        }
    }
    // The event loop is done; what is left resolves at once.
    while let Some(reply) = in_flight.next().await {
        out.reply(&reply).await;
    }
    out.finish().await;
}

fn ready(reply: Reply) -> PendingReply {
    Box::pin(futures::future::ready(reply))
}

struct Output {
    json: bool,
    /// The readable mode's memory of who had each nick first.
    first_keys: nicks::FirstKeys,
    sink: Sink,
    writer: Option<JoinHandle<()>>,
}

/// Where lines go.
enum Sink {
    /// To the writer thread.
    Thread(mpsc::Sender<String>),
    /// Written here, blocking: only if the writer thread could not start.
    Direct,
    /// Nowhere: stdout is broken (nobody reads it) or finished.
    Closed,
}

impl Output {
    fn start(json: bool) -> Self {
        let (tx, rx) = mpsc::channel(OUTPUT_QUEUE);
        let writer = std::thread::Builder::new()
            .name("stdout".into())
            .spawn(move || write_lines(rx, io::stdout()));
        match writer {
            Ok(writer) => Self {
                json,
                first_keys: nicks::FirstKeys::default(),
                sink: Sink::Thread(tx),
                writer: Some(writer),
            },
            Err(e) => {
                tracing::error!("cannot start the stdout writer ({e}); writing stdout directly");
                Self {
                    json,
                    first_keys: nicks::FirstKeys::default(),
                    sink: Sink::Direct,
                    writer: None,
                }
            }
        }
    }

    async fn reply(&mut self, reply: &Reply) {
        let line = if self.json {
            to_json(reply)
        } else {
            human::reply(reply)
        };
        self.write(line).await;
    }

    async fn event(&mut self, event: Event) {
        let event = render::event(event);
        let line = if self.json {
            to_json(&event)
        } else {
            let note = self.first_keys.note(&event);
            human::event_noting(&event, note)
        };
        self.write(line).await;
    }

    async fn write(&mut self, mut line: String) {
        line.push('\n');
        let delivered = match &self.sink {
            Sink::Thread(lines) => lines.send(line).await.is_ok(),
            Sink::Direct => {
                let mut out = io::stdout();
                out.write_all(line.as_bytes())
                    .and_then(|()| out.flush())
                    .is_ok()
            }
            Sink::Closed => true,
        };
        if !delivered {
            // Nobody reads our output any more (the writer said why); keep
            // serving the network regardless.
            self.sink = Sink::Closed;
        }
    }

    /// Waits until every line is written.
    async fn finish(&mut self) {
        self.sink = Sink::Closed;
        if let Some(writer) = self.writer.take() {
            let _ = tokio::task::spawn_blocking(move || writer.join()).await;
        }
    }
}

/// Writes lines as they come, all that are queued in one write.
fn write_lines(mut rx: mpsc::Receiver<String>, mut out: impl Write) {
    let mut buf = Vec::with_capacity(MAX_WRITE);
    while let Some(line) = rx.blocking_recv() {
        buf.clear();
        buf.extend_from_slice(line.as_bytes());
        while buf.len() < MAX_WRITE {
            match rx.try_recv() {
                Ok(line) => buf.extend_from_slice(line.as_bytes()),
                Err(_) => break,
            }
        }
        if let Err(e) = out.write_all(&buf).and_then(|()| out.flush()) {
            tracing::warn!("cannot write to stdout ({e}); output stops here");
            return;
        }
    }
}

fn to_json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|e| {
        format!(r#"{{"event":"error","code":"internal","message":"cannot encode output: {e}"}}"#)
    })
}

fn spawn_stdin_reader(first_lines: Vec<String>) -> mpsc::Receiver<Input> {
    let (tx, rx) = mpsc::channel(INPUT_QUEUE);
    let spawned = std::thread::Builder::new()
        .name("stdin".into())
        .spawn(move || {
            for line in first_lines {
                if tx.blocking_send(Input::Line(line.into_bytes())).is_err() {
                    return;
                }
            }
            read_lines(io::stdin().lock(), &tx);
        });
    if let Err(e) = spawned {
        tracing::error!("cannot start the stdin reader: {e}");
    }
    rx
}

/// Reads `\n`-terminated lines, keeping at most [`MAX_LINE_BYTES`] of each.
fn read_lines(mut reader: impl BufRead, tx: &mpsc::Sender<Input>) {
    let mut line = Vec::new();
    let mut len = 0usize;
    loop {
        let buf = match reader.fill_buf() {
            Ok(buf) => buf,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                tracing::warn!("cannot read stdin: {e}");
                let _ = tx.blocking_send(Input::Eof);
                return;
            }
        };
        if buf.is_empty() {
            if len > 0 {
                let _ = tx.blocking_send(finish(&mut line, &mut len));
            }
            let _ = tx.blocking_send(Input::Eof);
            return;
        }
        let (chunk, end_of_line) = match buf.iter().position(|&b| b == b'\n') {
            Some(i) => (&buf[..i], true),
            None => (buf, false),
        };
        let room = (MAX_LINE_BYTES + 1).saturating_sub(line.len());
        line.extend_from_slice(&chunk[..chunk.len().min(room)]);
        len += chunk.len();
        let used = chunk.len() + usize::from(end_of_line);
        reader.consume(used);
        if end_of_line && tx.blocking_send(finish(&mut line, &mut len)).is_err() {
            return;
        }
    }
}

fn finish(line: &mut Vec<u8>, len: &mut usize) -> Input {
    let total = std::mem::take(len);
    let bytes = std::mem::take(line);
    let without_cr = total - usize::from(bytes.last() == Some(&b'\r') && total == bytes.len());
    if without_cr > MAX_LINE_BYTES {
        Input::TooLong(total)
    } else {
        Input::Line(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(input: &[u8]) -> Vec<Result<Vec<u8>, usize>> {
        let (tx, mut rx) = mpsc::channel(1024);
        read_lines(io::BufReader::with_capacity(7, input), &tx);
        drop(tx);
        let mut out = Vec::new();
        while let Ok(i) = rx.try_recv() {
            match i {
                Input::Line(l) => out.push(Ok(l)),
                Input::TooLong(n) => out.push(Err(n)),
                Input::Eof => break,
            }
        }
        out
    }

    #[test]
    fn lines_split_on_newlines_across_buffer_boundaries() {
        assert_eq!(
            lines(b"hello world\n/rooms\nlast"),
            vec![
                Ok(b"hello world".to_vec()),
                Ok(b"/rooms".to_vec()),
                Ok(b"last".to_vec())
            ]
        );
        assert_eq!(lines(b"\n\n"), vec![Ok(vec![]), Ok(vec![])]);
    }

    #[test]
    fn an_over_long_line_is_reported_by_length_and_the_next_line_survives() {
        let mut input = vec![b'x'; MAX_LINE_BYTES + 5];
        input.extend_from_slice(b"\nok\n");
        assert_eq!(
            lines(&input),
            vec![Err(MAX_LINE_BYTES + 5), Ok(b"ok".to_vec())]
        );
    }

    #[test]
    fn a_line_of_exactly_the_limit_passes_even_with_a_carriage_return() {
        let mut input = vec![b'x'; MAX_LINE_BYTES];
        input.extend_from_slice(b"\r\n");
        let got = lines(&input);
        assert!(matches!(&got[..], [Ok(l)] if l.len() == MAX_LINE_BYTES + 1));
        // The line is within its limit; only its text is too long for a message.
        let Ok(line) = &got[0] else { unreachable!() };
        assert_eq!(parse_line(line).unwrap_err().code, ErrorCode::TextTooLong);
    }

    #[test]
    fn the_writer_writes_every_queued_line_in_order_and_stops_on_a_broken_pipe() {
        let (tx, rx) = mpsc::channel(OUTPUT_QUEUE);
        for i in 0..500 {
            tx.try_send(format!("line {i}\n")).unwrap_or_default();
        }
        drop(tx);
        let mut out = Vec::new();
        write_lines(rx, &mut out);
        let expected: String = (0..500).map(|i| format!("line {i}\n")).collect();
        assert_eq!(String::from_utf8_lossy(&out), expected);

        struct Broken;
        impl Write for Broken {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(io::ErrorKind::BrokenPipe.into())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let (tx, rx) = mpsc::channel(OUTPUT_QUEUE);
        tx.try_send("x\n".to_owned()).unwrap_or_default();
        // Returns instead of waiting for more lines, though the sender lives.
        write_lines(rx, Broken);
        assert!(tx.is_closed());
    }
}
