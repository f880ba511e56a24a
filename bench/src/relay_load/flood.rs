//! A discover flood: one client sends many discovers that ask for more than a
//! node ever does — half without a namespace (every room at once), half for
//! a loaded room with `limit` [`FLOOD_LIMIT`] — [`IN_FLIGHT`] at a time, while
//! the relay's RSS is sampled. What it shows: namespace-less discovers are
//! refused, a wide one gets at most the relay's clamp (100 records), and the
//! relay's memory stays where the load left it (no answer clones every
//! registration, no cookie holds every id).

use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use futures::StreamExt;
use libp2p::rendezvous::{self, Namespace};
use libp2p::request_response::{self, ProtocolSupport};
use libp2p::swarm::SwarmEvent;
use libp2p::{SwarmBuilder, noise, tcp, yamux};

use super::raw_discover::{DiscoverRequest, RawDiscoverCodec};
use super::relay_process::Target;
use crate::procfs;

/// The `limit` each discover asks for.
pub(super) const FLOOD_LIMIT: u64 = 10_000;
/// Discovers awaiting their answer at once (under request-response's 100
/// concurrent streams per connection).
const IN_FLIGHT: usize = 64;
/// How often the relay's RSS is sampled during the flood.
const SAMPLE_EVERY: Duration = Duration::from_millis(100);
/// Longest the whole flood may take.
const FLOOD_TIMEOUT: Duration = Duration::from_secs(300);

/// How the flood went.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct Flooded {
    pub asked: usize,
    /// Namespace-less discovers the relay refused, of those sent.
    pub everything_refused: usize,
    pub everything_asked: usize,
    /// Wide discovers answered, and the records they carried.
    pub wide_answered: usize,
    pub wide_asked: usize,
    pub wide_records: usize,
    /// The largest wide answer.
    pub wide_max_records: usize,
    /// Requests that failed or went unanswered.
    pub failed: usize,
    pub rss_before_mib: f64,
    /// Highest RSS sampled during the flood.
    pub rss_peak_mib: f64,
    pub rss_after_mib: f64,
    pub seconds: f64,
}

/// Sends `count` discovers to the relay (process `pid`), alternating
/// namespace-less and wide ones for `room`.
pub(super) async fn flood(
    target: &Target,
    pid: u32,
    count: usize,
    room: &Namespace,
) -> anyhow::Result<Flooded> {
    let mut swarm = SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )?
        .with_behaviour(|_| {
            request_response::Behaviour::with_codec(
                RawDiscoverCodec,
                [(rendezvous::PROTOCOL_NAME, ProtocolSupport::Outbound)],
                request_response::Config::default()
                    .with_request_timeout(Duration::from_secs(30))
                    .with_max_concurrent_streams(IN_FLIGHT * 2),
            )
        })?
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
        .build();
    swarm
        .dial(target.addr.clone())
        .context("cannot dial the relay for the flood")?;
    let began = Instant::now();
    let give_up = began + FLOOD_TIMEOUT;
    loop {
        match tokio::time::timeout_at(give_up.into(), swarm.select_next_some()).await {
            Ok(SwarmEvent::ConnectionEstablished { peer_id, .. }) if peer_id == target.peer => {
                break;
            }
            Ok(SwarmEvent::OutgoingConnectionError { error, .. }) => {
                bail!("the flood's client cannot connect: {error}")
            }
            Ok(_) => {}
            Err(_) => bail!("the flood's client did not connect"),
        }
    }
    let everything = DiscoverRequest::everything(FLOOD_LIMIT);
    let wide = DiscoverRequest::new(room, FLOOD_LIMIT);
    let mut f = Flooded {
        asked: count,
        rss_before_mib: procfs::memory(pid)?.rss_mib,
        ..Flooded::default()
    };
    f.rss_peak_mib = f.rss_before_mib;
    let mut pending = std::collections::HashMap::new();
    let mut sent = 0usize;
    let mut done = 0usize;
    let mut sample = tokio::time::interval(SAMPLE_EVERY);
    while done < count {
        while sent < count && pending.len() < IN_FLIGHT {
            let is_everything = sent.is_multiple_of(2);
            let request = if is_everything {
                f.everything_asked += 1;
                everything.clone()
            } else {
                f.wide_asked += 1;
                wide.clone()
            };
            let id = swarm.behaviour_mut().send_request(&target.peer, request);
            pending.insert(id, is_everything);
            sent += 1;
        }
        let event = tokio::select! {
            event = swarm.select_next_some() => event,
            _ = sample.tick() => {
                f.rss_peak_mib = f.rss_peak_mib.max(procfs::memory(pid)?.rss_mib);
                continue;
            }
            () = tokio::time::sleep_until(give_up.into()) => {
                bail!("the flood did not finish within {FLOOD_TIMEOUT:?} ({done} of {count} answered)")
            }
        };
        match event {
            SwarmEvent::Behaviour(request_response::Event::Message {
                message:
                    request_response::Message::Response {
                        request_id,
                        response,
                    },
                ..
            }) => {
                let Some(is_everything) = pending.remove(&request_id) else {
                    continue;
                };
                done += 1;
                match (is_everything, response.status) {
                    (true, 0) => {}
                    (true, _) => f.everything_refused += 1,
                    (false, 0) => {
                        f.wide_answered += 1;
                        f.wide_records += response.registrations;
                        f.wide_max_records = f.wide_max_records.max(response.registrations);
                    }
                    (false, _) => {}
                }
            }
            SwarmEvent::Behaviour(request_response::Event::OutboundFailure {
                request_id, ..
            }) if pending.remove(&request_id).is_some() => {
                done += 1;
                f.failed += 1;
            }
            SwarmEvent::ConnectionClosed { peer_id, .. } if peer_id == target.peer => {
                bail!("the relay closed the flood's connection ({done} of {count} answered)")
            }
            _ => {}
        }
    }
    f.seconds = began.elapsed().as_secs_f64();
    let memory = procfs::memory(pid)?;
    f.rss_peak_mib = f.rss_peak_mib.max(memory.rss_mib);
    f.rss_after_mib = memory.rss_mib;
    Ok(f)
}
