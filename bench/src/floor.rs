//! The transport floor: what the same path costs with no libp2p, no
//! cryptography and no storage. Two plain processes, `floor-source` and
//! `floor-sink`, forward lines exactly the way a message travels between two
//! nodes: the driver writes a line to the source's stdin, the source sends
//! it over a UDP or TCP socket on loopback, the sink prints it on stdout,
//! and the driver reads it. The same driver code times both paths.
//! `floor-echo` answers datagrams or lines back for a plain ping-pong.

use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};

use crate::stats::Latency;

/// Which socket the floor uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Socket {
    Udp,
    Tcp,
}

impl Socket {
    fn arg(self) -> &'static str {
        match self {
            Self::Udp => "udp",
            Self::Tcp => "tcp",
        }
    }
}

/// A UDP socket on loopback, its port announced on `out`.
fn announced_udp(out: &mut impl Write) -> anyhow::Result<UdpSocket> {
    let s = UdpSocket::bind("127.0.0.1:0")?;
    writeln!(out, "port {}", s.local_addr()?.port())?;
    out.flush()?;
    Ok(s)
}

/// A TCP listener on loopback, its port announced on `out`.
fn announced_tcp(out: &mut impl Write) -> anyhow::Result<TcpListener> {
    let l = TcpListener::bind("127.0.0.1:0")?;
    writeln!(out, "port {}", l.local_addr()?.port())?;
    out.flush()?;
    Ok(l)
}

/// `floor-sink`: listens on loopback, prints `port N`, then prints every
/// line (datagram) it receives.
pub fn sink(socket: Socket) -> anyhow::Result<()> {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    match socket {
        Socket::Udp => {
            let s = announced_udp(&mut out)?;
            let mut buf = vec![0u8; 65_536];
            loop {
                let n = s.recv(&mut buf)?;
                out.write_all(&buf[..n])?;
                out.write_all(b"\n")?;
                out.flush()?;
            }
        }
        Socket::Tcp => {
            let (stream, _) = announced_tcp(&mut out)?.accept()?;
            stream.set_nodelay(true)?;
            for line in BufReader::new(stream).lines() {
                writeln!(out, "{}", line?)?;
                out.flush()?;
            }
            Ok(())
        }
    }
}

/// `floor-source`: sends every stdin line to the sink at `port`.
pub fn source(socket: Socket, port: u16) -> anyhow::Result<()> {
    let stdin = std::io::stdin();
    match socket {
        Socket::Udp => {
            let s = UdpSocket::bind("127.0.0.1:0")?;
            s.connect(("127.0.0.1", port))?;
            for line in stdin.lock().lines() {
                s.send(line?.as_bytes())?;
            }
        }
        Socket::Tcp => {
            let mut s = TcpStream::connect(("127.0.0.1", port))?;
            s.set_nodelay(true)?;
            for line in stdin.lock().lines() {
                s.write_all(format!("{}\n", line?).as_bytes())?;
            }
        }
    }
    Ok(())
}

/// `floor-echo`: prints `port N`, then sends back whatever arrives.
pub fn echo(socket: Socket) -> anyhow::Result<()> {
    let mut out = std::io::stdout();
    match socket {
        Socket::Udp => {
            let s = announced_udp(&mut out)?;
            let mut buf = vec![0u8; 65_536];
            loop {
                let (n, from) = s.recv_from(&mut buf)?;
                s.send_to(&buf[..n], from)?;
            }
        }
        Socket::Tcp => {
            let (mut stream, _) = announced_tcp(&mut out)?.accept()?;
            stream.set_nodelay(true)?;
            let mut buf = [0u8; 64];
            loop {
                let n = stream.read(&mut buf)?;
                if n == 0 {
                    return Ok(());
                }
                stream.write_all(&buf[..n])?;
            }
        }
    }
}

/// A helper process of this binary, killed when dropped.
struct Helper {
    child: Child,
}

impl Helper {
    fn start(
        me: &Path,
        args: &[&str],
    ) -> anyhow::Result<(Self, ChildStdin, BufReader<ChildStdout>)> {
        let mut child = Command::new(me)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .with_context(|| format!("start {} {args:?}", me.display()))?;
        let stdin = child.stdin.take().ok_or_else(|| anyhow!("no stdin"))?;
        let stdout = child.stdout.take().ok_or_else(|| anyhow!("no stdout"))?;
        Ok((Self { child }, stdin, BufReader::new(stdout)))
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn read_port(out: &mut BufReader<ChildStdout>) -> anyhow::Result<u16> {
    let mut line = String::new();
    out.read_line(&mut line)?;
    line.trim()
        .strip_prefix("port ")
        .and_then(|p| p.parse().ok())
        .ok_or_else(|| anyhow!("helper said {line:?}, not its port"))
}

/// Times `count` lines through source → socket → sink, one every `interval`,
/// exactly as [`crate::latency`] times messages through two nodes.
pub fn forward(
    me: &Path,
    socket: Socket,
    count: usize,
    interval: Duration,
) -> anyhow::Result<Latency> {
    let (_sink, _sink_in, mut sink_out) = Helper::start(me, &["floor-sink", socket.arg()])?;
    let port = read_port(&mut sink_out)?;
    let (_source, source_in, _source_out) =
        Helper::start(me, &["floor-source", socket.arg(), &port.to_string()])?;
    let mut source_in = BufWriter::new(source_in);
    // The sink's lines are read on their own thread, stamped as they arrive.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in sink_out.lines() {
            let at = Instant::now();
            let Ok(line) = line else { break };
            if tx.send((at, line)).is_err() {
                break;
            }
        }
    });
    // Warm up (and for TCP, wait until connected): one line must come through.
    let warm = Instant::now();
    loop {
        writeln!(source_in, "warm")?;
        source_in.flush()?;
        if rx.recv_timeout(Duration::from_millis(200)).is_ok() {
            break;
        }
        if warm.elapsed() > Duration::from_secs(10) {
            bail!("the {socket:?} floor sink received nothing");
        }
    }
    let mut sent_at = vec![None; count];
    let mut samples = Vec::with_capacity(count);
    let start = Instant::now();
    for i in 0..count {
        let due = start + interval * i as u32;
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        sent_at[i] = Some(Instant::now());
        writeln!(source_in, "{i}")?;
        source_in.flush()?;
        for (at, line) in rx.try_iter() {
            record(&sent_at, &mut samples, at, &line);
        }
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while samples.len() < count {
        let Ok((at, line)) = rx.recv_timeout(deadline.saturating_duration_since(Instant::now()))
        else {
            break;
        };
        record(&sent_at, &mut samples, at, &line);
    }
    Ok(Latency::of(&samples))
}

fn record(sent_at: &[Option<Instant>], samples: &mut Vec<Duration>, at: Instant, line: &str) {
    if let Some(sent) = line
        .trim()
        .parse::<usize>()
        .ok()
        .and_then(|i| sent_at.get(i).copied().flatten())
    {
        samples.push(at.duration_since(sent));
    }
}

/// Round trips of a small packet between this process and `floor-echo`.
pub fn ping_pong(me: &Path, socket: Socket, count: usize) -> anyhow::Result<Latency> {
    let (_echo, _in, mut out) = Helper::start(me, &["floor-echo", socket.arg()])?;
    let port = read_port(&mut out)?;
    let mut samples = Vec::with_capacity(count);
    let payload = [7u8; 32];
    let mut buf = [0u8; 64];
    match socket {
        Socket::Udp => {
            let s = UdpSocket::bind("127.0.0.1:0")?;
            s.connect(("127.0.0.1", port))?;
            s.set_read_timeout(Some(Duration::from_secs(2)))?;
            for _ in 0..count {
                let start = Instant::now();
                s.send(&payload)?;
                s.recv(&mut buf)?;
                samples.push(start.elapsed());
            }
        }
        Socket::Tcp => {
            let mut s = TcpStream::connect(("127.0.0.1", port))?;
            s.set_nodelay(true)?;
            s.set_read_timeout(Some(Duration::from_secs(2)))?;
            for _ in 0..count {
                let start = Instant::now();
                s.write_all(&payload)?;
                s.read_exact(&mut buf[..payload.len()])?;
                samples.push(start.elapsed());
            }
        }
    }
    Ok(Latency::of(&samples))
}
