//! Rooms of 10 and 25 node processes, 100 messages a second in total from
//! five authors: time until the last member has each message, delivery
//! ratio, and CPU per delivered message beside the crypto floor.

use std::path::Path;
use std::time::Duration;

use serde::Serialize;

use crate::cluster::Cluster;
use crate::crypto;
use crate::report::{Row, ms, us};
use crate::stats::{Latency, ratio};
use crate::traffic::{self, Plan};

#[derive(Debug, Clone, Serialize)]
pub struct Room {
    pub nodes: usize,
    pub authors: usize,
    pub rate_per_s: f64,
    pub messages: usize,
    pub expected_deliveries: usize,
    pub deliveries: usize,
    pub delivery_ratio: f64,
    pub to_last_member: Latency,
    pub to_each_member: Latency,
    pub cpu_per_delivery_us: f64,
    /// All members' CPU with no traffic, seconds per second.
    pub idle_cpu_per_s: f64,
    /// CPU per delivery less what the members spend idle over the same time.
    pub cpu_per_delivery_net_of_idle_us: f64,
    /// verify + encrypt at the receiver, plus sign + encrypt at the author
    /// shared among the receivers.
    pub crypto_floor_per_delivery_us: f64,
}

pub fn run(
    node: &Path,
    work: &Path,
    sizes: &[usize],
    seconds: u64,
    crypto: &crypto::Figures,
) -> anyhow::Result<Vec<Room>> {
    let mut rooms = Vec::new();
    for &n in sizes {
        let mut cluster = Cluster::new(node, &work.join(format!("room-{n}")))?;
        let members = traffic::start_room(
            &mut cluster,
            n,
            "/ip4/127.0.0.1/udp/0/quic-v1",
            "quic-v1",
            "bench",
            &format!("r{n}-"),
        )?;
        let authors: Vec<usize> = members
            .iter()
            .copied()
            .step_by((n / 5).max(1))
            .take(5)
            .collect();
        traffic::warm_up(&mut cluster, "bench", &authors, &members)?;
        let idle_cpu_per_s = traffic::idle_cpu_per_s(&cluster, &members, Duration::from_secs(2));
        let rate = 100.0;
        let count = (rate * seconds as f64) as usize;
        let outcome = traffic::run(
            &mut cluster,
            &Plan {
                room: "bench".into(),
                authors: authors.clone(),
                members: members.clone(),
                count,
                interval: Duration::from_secs_f64(1.0 / rate),
                text_bytes: 64,
                drain: Duration::from_secs(10),
                tag: "room".into(),
            },
        )?;
        cluster.stop();
        let receivers = (n - 1) as f64;
        rooms.push(Room {
            nodes: n,
            authors: authors.len(),
            rate_per_s: rate,
            messages: outcome.sent,
            expected_deliveries: outcome.expected_deliveries,
            deliveries: outcome.deliveries,
            delivery_ratio: outcome.delivery_ratio(),
            to_last_member: Latency::of(&outcome.to_last),
            to_each_member: Latency::of(&outcome.to_each),
            cpu_per_delivery_us: outcome.cpu_per_delivery_us(),
            idle_cpu_per_s,
            cpu_per_delivery_net_of_idle_us: if outcome.deliveries == 0 {
                0.0
            } else {
                (outcome.cpu.as_secs_f64() - idle_cpu_per_s * outcome.elapsed.as_secs_f64())
                    .max(0.0)
                    * 1e6
                    / outcome.deliveries as f64
            },
            crypto_floor_per_delivery_us: crypto.receive_us() + crypto.send_us() / receivers,
        });
    }
    Ok(rooms)
}

pub fn rows(rooms: &[Room]) -> Vec<Row> {
    let mut rows = Vec::new();
    for r in rooms {
        let n = r.nodes;
        let big = n >= 25;
        let mut p99 = Row::new(
            "rooms",
            format!(
                "{n} nodes, {} msg/s from {} authors: send → last member, p50 / p99",
                r.rate_per_s, r.authors
            ),
            format!(
                "{} / {}",
                ms(r.to_last_member.p50_ms),
                ms(r.to_last_member.p99_ms)
            ),
        )
        .baseline(format!(
            "to each member p50 {}",
            ms(r.to_each_member.p50_ms)
        ));
        if big {
            p99 = p99.target("p99 ≤ 50 ms", r.to_last_member.p99_ms <= 50.0);
        }
        rows.push(p99);
        let mut delivery = Row::new(
            "rooms",
            format!("{n} nodes: delivered"),
            format!(
                "{}/{} ({:.2} %)",
                r.deliveries,
                r.expected_deliveries,
                r.delivery_ratio * 100.0
            ),
        );
        if big {
            delivery = delivery.target("100 %", r.deliveries == r.expected_deliveries);
        }
        rows.push(delivery);
        rows.push(
            Row::new(
                "rooms",
                format!("{n} nodes: CPU per delivered message (all processes)"),
                us(r.cpu_per_delivery_us),
            )
            .against(
                format!("crypto floor {}", us(r.crypto_floor_per_delivery_us)),
                ratio(r.cpu_per_delivery_us, r.crypto_floor_per_delivery_us),
            ),
        );
        rows.push(
            Row::new(
                "rooms",
                format!("{n} nodes: the same, less idle CPU ({:.1} % of a core for all {n} with no traffic)", r.idle_cpu_per_s * 100.0),
                us(r.cpu_per_delivery_net_of_idle_us),
            )
            .against(format!("crypto floor {}", us(r.crypto_floor_per_delivery_us)), ratio(r.cpu_per_delivery_net_of_idle_us, r.crypto_floor_per_delivery_us)),
        );
    }
    rows
}
