//! Two nodes, one room: publish → `message` at the other node, paced, over
//! QUIC and over TCP, beside the same path through two plain processes and
//! the crypto each message needs on its way.

use std::path::Path;
use std::time::Duration;

use serde::Serialize;

use crate::cluster::Cluster;
use crate::crypto;
use crate::floor::{self, Socket};
use crate::report::{Row, ms};
use crate::stats::Latency;
use crate::traffic::{self, Plan};

#[derive(Debug, Clone, Serialize)]
pub struct Transport {
    pub transport: &'static str,
    pub messages: usize,
    pub delivered: usize,
    pub latency: Latency,
    /// The same pacing through plain processes over the matching socket.
    pub floor_forward: Latency,
    /// Plain round trips over the matching socket.
    pub floor_ping_pong: Latency,
}

#[derive(Debug, Clone, Serialize)]
pub struct Figures {
    pub interval_ms: f64,
    pub text_bytes: usize,
    /// Crypto on the critical path: the author signs and encrypts before
    /// publishing, the receiver verifies and encrypts before showing.
    pub crypto_floor_us: f64,
    pub transports: Vec<Transport>,
}

pub fn run(
    me: &Path,
    node: &Path,
    work: &Path,
    count: usize,
    crypto: &crypto::Figures,
) -> anyhow::Result<Figures> {
    let interval = Duration::from_millis(3);
    let text_bytes = 64;
    let mut transports = Vec::new();
    for (name, listen, proto, socket) in [
        (
            "QUIC",
            "/ip4/127.0.0.1/udp/0/quic-v1",
            "quic-v1",
            Socket::Udp,
        ),
        ("TCP", "/ip4/127.0.0.1/tcp/0", "tcp", Socket::Tcp),
    ] {
        let mut cluster = Cluster::new(node, &work.join(format!("latency-{proto}")))?;
        let members = traffic::start_room(&mut cluster, 2, listen, proto, "bench", "lat")?;
        traffic::warm_up(&mut cluster, "bench", &members[..1], &members)?;
        let outcome = traffic::run(
            &mut cluster,
            &Plan {
                room: "bench".into(),
                authors: vec![members[0]],
                members: members.clone(),
                count,
                interval,
                text_bytes,
                drain: Duration::from_secs(5),
                tag: "lat".into(),
            },
        )?;
        cluster.stop();
        transports.push(Transport {
            transport: name,
            messages: outcome.sent,
            delivered: outcome.deliveries,
            latency: Latency::of(&outcome.to_each),
            floor_forward: floor::forward(me, socket, count, interval)?,
            floor_ping_pong: floor::ping_pong(me, socket, count)?,
        });
    }
    Ok(Figures {
        interval_ms: interval.as_secs_f64() * 1e3,
        text_bytes,
        crypto_floor_us: crypto.send_us() + crypto.receive_us(),
        transports,
    })
}

pub fn rows(f: &Figures) -> Vec<Row> {
    let crypto_ms = f.crypto_floor_us / 1e3;
    let mut rows = Vec::new();
    for t in &f.transports {
        let socket = if t.transport == "QUIC" { "UDP" } else { "TCP" };
        let quic = t.transport == "QUIC";
        for (label, value, floor, target) in [
            ("p50", t.latency.p50_ms, t.floor_forward.p50_ms, 0.5),
            ("p99", t.latency.p99_ms, t.floor_forward.p99_ms, 2.0),
        ] {
            let floor_total = floor + crypto_ms;
            let mut row = Row::new(
                "latency",
                format!(
                    "{}: publish → message at the other node, {label} ({}/{} delivered)",
                    t.transport, t.delivered, t.messages
                ),
                ms(value),
            )
            .against(
                format!(
                    "{} plain pipe→{socket}→pipe + {} crypto = {}",
                    ms(floor),
                    ms(crypto_ms),
                    ms(floor_total)
                ),
                value / floor_total,
            );
            if quic {
                row = row.target(
                    format!("≤ {target} ms"),
                    value <= target && t.delivered == t.messages,
                );
            }
            rows.push(row);
        }
        rows.push(Row::new(
            "latency",
            format!("{socket} ping-pong between two plain processes, round trip p50 / p99"),
            format!(
                "{} / {}",
                ms(t.floor_ping_pong.p50_ms),
                ms(t.floor_ping_pong.p99_ms)
            ),
        ));
    }
    rows
}
