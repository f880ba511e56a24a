//! Paced chat traffic through real nodes, timed from the `/send` line written
//! to an author to the `message` event each other member prints. Latency,
//! rooms and throughput all run on this.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::cluster::{Cluster, Line};
use crate::procfs;
use crate::stats::Latency;

/// What to send.
#[derive(Debug, Clone)]
pub struct Plan {
    pub room: String,
    /// Nodes that send, in turn.
    pub authors: Vec<usize>,
    /// Every node in the room (authors included); each message is expected
    /// at every member but its author.
    pub members: Vec<usize>,
    pub count: usize,
    /// Time between two sends, all authors together.
    pub interval: Duration,
    pub text_bytes: usize,
    /// How long to wait for stragglers after the last send.
    pub drain: Duration,
    /// Marks this run's texts, so lines of an earlier run are not counted.
    pub tag: String,
}

/// What happened.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    pub sent: usize,
    /// `error` replies to `/send`.
    pub send_errors: usize,
    pub expected_deliveries: usize,
    pub deliveries: usize,
    /// Send → `message` at each member, every delivery.
    pub to_each: Vec<Duration>,
    /// Send → `message` at the last member, for messages every member got,
    /// in send order.
    pub to_last: Vec<Duration>,
    /// Messages every member got.
    pub complete: usize,
    /// How long the sending took (`count × interval` when the pace held).
    pub send_time: Duration,
    /// CPU time of all members' processes from the first send until every
    /// message arrived (or the drain ended), and that wall time.
    pub cpu: Duration,
    pub elapsed: Duration,
}

impl Outcome {
    pub fn delivery_ratio(&self) -> f64 {
        if self.expected_deliveries == 0 {
            return 0.0;
        }
        self.deliveries as f64 / self.expected_deliveries as f64
    }

    pub fn lossless(&self) -> bool {
        self.sent > 0 && self.send_errors == 0 && self.deliveries == self.expected_deliveries
    }

    /// Time to the last member over the first and last fifth of the
    /// messages: a queue that grows shows as a last fifth far slower.
    pub fn first_and_last_fifth(&self) -> (Latency, Latency) {
        let fifth = (self.to_last.len() / 5).max(1).min(self.to_last.len());
        (
            Latency::of(&self.to_last[..fifth]),
            Latency::of(&self.to_last[self.to_last.len() - fifth..]),
        )
    }

    /// CPU time per delivered message, microseconds.
    pub fn cpu_per_delivery_us(&self) -> f64 {
        if self.deliveries == 0 {
            return 0.0;
        }
        self.cpu.as_secs_f64() * 1e6 / self.deliveries as f64
    }
}

fn text(tag: &str, seq: usize, bytes: usize) -> String {
    let mut t = format!("{tag}{seq} ");
    while t.len() < bytes {
        t.push('x');
    }
    t
}

/// The sequence number in a text this run sent, if it is one.
fn seq_of(tag: &str, text: &str) -> Option<usize> {
    text.strip_prefix(tag)?.split(' ').next()?.parse().ok()
}

struct Tally<'a> {
    plan: &'a Plan,
    sent_at: Vec<Option<Instant>>,
    arrivals: Vec<HashMap<usize, Instant>>,
    deliveries: usize,
    send_errors: usize,
}

impl Tally<'_> {
    fn take(&mut self, line: &Line) {
        match line.event() {
            "message" => {
                if line.value["room"] != self.plan.room.as_str() {
                    return;
                }
                let Some(seq) = line.value["text"]
                    .as_str()
                    .and_then(|t| seq_of(&self.plan.tag, t))
                else {
                    return;
                };
                if let Some(arrived) = self.arrivals.get_mut(seq)
                    && arrived.insert(line.source, line.at).is_none()
                {
                    self.deliveries += 1;
                }
            }
            "error" => self.send_errors += 1,
            _ => {}
        }
    }
}

/// Sends the plan's messages at its pace and collects every arrival.
pub fn run(cluster: &mut Cluster, plan: &Plan) -> anyhow::Result<Outcome> {
    let receivers = plan.members.len().saturating_sub(1);
    let expected = plan.count * receivers;
    let mut tally = Tally {
        plan,
        sent_at: vec![None; plan.count],
        arrivals: vec![HashMap::new(); plan.count],
        deliveries: 0,
        send_errors: 0,
    };
    let pids: Vec<u32> = plan
        .members
        .iter()
        .map(|&i| cluster.nodes[i].pid())
        .collect();
    let cpu_now = || -> Duration { pids.iter().filter_map(|&p| procfs::cpu_time(p).ok()).sum() };
    cluster.clear();
    let cpu_start = cpu_now();
    let start = Instant::now();
    for seq in 0..plan.count {
        let due = start + plan.interval * seq as u32;
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let author = plan.authors[seq % plan.authors.len()];
        tally.sent_at[seq] = Some(Instant::now());
        cluster.send(
            author,
            &format!(
                "/send {} {}",
                plan.room,
                text(&plan.tag, seq, plan.text_bytes)
            ),
        )?;
        for line in cluster.drain() {
            tally.take(&line);
        }
    }
    let send_time = start.elapsed();
    let deadline = Instant::now() + plan.drain;
    while tally.deliveries < expected {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        if let Some(line) = cluster.next(left) {
            tally.take(&line);
        }
    }
    let cpu = cpu_now().saturating_sub(cpu_start);
    let elapsed = start.elapsed();
    let mut out = Outcome {
        sent: plan.count,
        send_errors: tally.send_errors,
        expected_deliveries: expected,
        deliveries: tally.deliveries,
        send_time,
        cpu,
        elapsed,
        ..Outcome::default()
    };
    for (seq, arrived) in tally.arrivals.iter().enumerate() {
        let Some(sent) = tally.sent_at[seq] else {
            continue;
        };
        out.to_each.extend(
            arrived
                .values()
                .map(|at| at.saturating_duration_since(sent)),
        );
        if arrived.len() == receivers
            && let Some(last) = arrived.values().max()
        {
            out.complete += 1;
            out.to_last.push(last.saturating_duration_since(sent));
        }
    }
    Ok(out)
}

/// CPU time the members use per second with no traffic (heartbeats, pings,
/// timers), measured over `window`.
pub fn idle_cpu_per_s(cluster: &Cluster, members: &[usize], window: Duration) -> f64 {
    let pids: Vec<u32> = members.iter().map(|&i| cluster.nodes[i].pid()).collect();
    let cpu_now = || -> Duration { pids.iter().filter_map(|&p| procfs::cpu_time(p).ok()).sum() };
    let before = cpu_now();
    std::thread::sleep(window);
    cpu_now().saturating_sub(before).as_secs_f64() / window.as_secs_f64()
}

/// Node `i` of `n` in a room: the earlier nodes it bootstraps from, so the
/// room forms one connected graph of short paths (no relay needed on loopback).
pub fn bootstrap_peers(i: usize) -> Vec<usize> {
    let mut peers: Vec<usize> = [0, i / 2, i.saturating_sub(1), i.saturating_sub(2)]
        .into_iter()
        .filter(|&p| p < i)
        .collect();
    peers.sort_unstable();
    peers.dedup();
    peers
}

/// Sends one message from each author until every member has it, so the
/// gossip mesh is formed before anything is measured.
pub fn warm_up(
    cluster: &mut Cluster,
    room: &str,
    authors: &[usize],
    members: &[usize],
) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    for (k, &author) in authors.iter().enumerate() {
        for attempt in 0.. {
            let plan = Plan {
                room: room.to_owned(),
                authors: vec![author],
                members: members.to_vec(),
                count: 1,
                interval: Duration::ZERO,
                text_bytes: 0,
                drain: Duration::from_secs(2),
                tag: format!("warm{k}-{attempt}-"),
            };
            if run(cluster, &plan)?.lossless() {
                break;
            }
            if Instant::now() > deadline {
                anyhow::bail!(
                    "the room did not form: a message from node {author} did not reach every member in 60 s"
                );
            }
        }
    }
    Ok(())
}

/// Starts `n` nodes listening on `listen` (a loopback multiaddr with port 0),
/// each bootstrapping from earlier ones over `transport`, all in `room`.
pub fn start_room(
    cluster: &mut Cluster,
    n: usize,
    listen: &str,
    transport: &str,
    room: &str,
    prefix: &str,
) -> anyhow::Result<Vec<usize>> {
    let mut members: Vec<usize> = Vec::with_capacity(n);
    for i in 0..n {
        let mut args = vec!["--listen".to_owned(), listen.to_owned()];
        for p in bootstrap_peers(i) {
            args.push("--bootstrap".to_owned());
            args.push(cluster.nodes[members[p]].addr(transport)?);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let index = cluster.start(&crate::cluster::Spawn::new(format!("{prefix}{i}"), &args))?;
        cluster.command(index, &format!("/join {room}"))?;
        members.push(index);
    }
    Ok(members)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_carry_their_sequence_number_and_size() {
        let t = text("r1-", 42, 64);
        assert_eq!(t.len(), 64);
        assert_eq!(seq_of("r1-", &t), Some(42));
        assert_eq!(seq_of("r2-", &t), None);
    }

    #[test]
    fn every_node_but_the_first_bootstraps_from_earlier_ones() {
        assert!(bootstrap_peers(0).is_empty());
        assert_eq!(bootstrap_peers(1), vec![0]);
        assert_eq!(bootstrap_peers(10), vec![0, 5, 8, 9]);
    }
}
