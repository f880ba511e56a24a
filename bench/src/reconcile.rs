//! Catch-up by range-based set reconciliation (negentropy,
//! `/palaver/history/2`), driven through real `Store`s (RocksDB and age) with
//! every request and response encoded and decoded as on the wire, and the
//! asker doing what a node does: rounds of reconciliation, each followed by
//! fetches of what it said is missing, [`MAX_FETCH`] at a time, each page's
//! envelopes verified on every core and stored, refs an answer left out
//! (past `MAX_FETCH_BYTES`) asked again. Bytes are the encoded requests
//! and responses.
//!
//! Figures, each beside a floor from the same run: stores of `set` messages
//! differing by 10 (scattered across the history, and the 10 newest): rounds
//! and reconciliation bytes, beside the bytes of fetching the 10 alone;
//! identical stores: rounds and bytes, beside one round's framing and a
//! fingerprint; the CPU of serving a round (the answerer's
//! `Store::reconcile_answer`) for `set` and `big` messages, beside reading
//! one envelope from the store; `big` messages reconciled into an empty
//! store, time and bytes with every fetch, beside fetching and storing the
//! same envelopes with no reconciliation.

use std::collections::{HashSet, VecDeque};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use libp2p::identity::Keypair;
use palaver_node::store::{Keys, Store, is_chat, message_ref, parallel};
use palaver_proto::RoomName;
use palaver_proto::envelope::Envelope;
use palaver_proto::history::reconcile::Items;
use palaver_proto::history::{MAX_FETCH, MessageRef, Request, Response};
use palaver_proto::wire::{Body, Payload};
use serde::Serialize;

use crate::report::{Row, us};
use crate::stats::{Latency, ratio};

/// The node's bound on rounds in one pull (`network::catch_up::MAX_ROUNDS`).
const MAX_ROUNDS: usize = 512;
/// How many messages the two stores differ by.
const GAP: usize = 10;
/// The target on reconciliation bytes, "≤ 5 KB", taken as 5,000 bytes.
const GAP_BYTES_TARGET: usize = 5_000;
const IDENTICAL_BYTES_TARGET: usize = 100;
/// The bytes of a negentropy fingerprint.
const FINGERPRINT_BYTES: usize = 16;

/// One pull: what the asker sent and got, and how long it took.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Pull {
    /// Reconciliation rounds (requests).
    pub rounds: usize,
    /// Encoded reconciliation requests and responses, both ways.
    pub reconcile_bytes: usize,
    /// The same, round by round.
    pub round_bytes: Vec<usize>,
    /// Fetch requests, and their encoded requests and responses.
    pub fetches: usize,
    pub fetch_bytes: usize,
    /// Envelopes fetched, verified and newly stored.
    pub stored: usize,
    /// Refs an answer left out (its byte budget) and asked again.
    pub asked_again: usize,
    pub seconds: f64,
}

impl Pull {
    pub fn bytes(&self) -> usize {
        self.reconcile_bytes + self.fetch_bytes
    }
}

/// Two stores of `stored` messages, the asker lacking `missing` of them.
#[derive(Debug, Clone, Serialize)]
pub struct Gap {
    pub shape: &'static str,
    pub stored: usize,
    pub missing: usize,
    pub pull: Pull,
    /// Fetching the missing envelopes alone (request and answer, encoded).
    pub fetch_alone_bytes: usize,
}

/// Two stores holding the same messages.
#[derive(Debug, Clone, Serialize)]
pub struct Identical {
    pub stored: usize,
    pub pull: Pull,
    /// One round's framing with a 16-byte fingerprint in the request.
    pub floor_bytes: usize,
}

/// The CPU of serving each round of one reconciliation, on this thread.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RoundCpu {
    pub rounds: usize,
    /// Every round's answer, all samples pooled.
    pub per_round: Latency,
    /// The round whose answers took longest (at the median), and its figures.
    pub heaviest_round: usize,
    pub heaviest: Latency,
}

/// The answerer's CPU per round, `stored` messages held.
#[derive(Debug, Clone, Serialize)]
pub struct Answers {
    pub stored: usize,
    /// For an asker lacking 10 scattered messages.
    pub lacking_ten: RoundCpu,
    /// For an empty asker (the largest answers, a frame of ids each).
    pub empty_asker: RoundCpu,
    /// Floors: one envelope read from the store (RocksDB, age decrypt,
    /// signature check), and the answer to an identical set's first message.
    pub envelope_read: Latency,
    pub identical_answer: Latency,
}

/// `stored` messages reconciled into an empty store.
#[derive(Debug, Clone, Serialize)]
pub struct FromEmpty {
    pub stored: usize,
    pub pull: Pull,
    /// The envelopes' own bytes, summed.
    pub envelope_bytes: usize,
    /// The same envelopes fetched and stored, their refs known beforehand.
    pub fetch_alone: Pull,
}

#[derive(Debug, Clone, Serialize)]
pub struct Figures {
    pub mean_envelope_bytes: f64,
    pub gaps: Vec<Gap>,
    pub identical: Identical,
    pub answers: Vec<Answers>,
    pub from_empty: FromEmpty,
}

/// A deterministic xorshift generator: the same history every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// In `lo..=hi`.
    fn between(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
}

/// A room's history of `n` chat messages, oldest first: four authors, one
/// to four seconds apart, texts mostly short (70 % of 16–160 B, 20 % of
/// 200–1,000 B, 10 % of 1,500–4,000 B). Signed on every core.
pub fn history(room: &RoomName, n: usize) -> anyhow::Result<Vec<Envelope>> {
    let authors: Vec<Keypair> = (0..4).map(|_| Keypair::generate_ed25519()).collect();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut ts = 1_700_000_000_000u64;
    let plan: Vec<(usize, u64, u64, usize)> = (0..n as u64)
        .map(|seq| {
            ts += rng.between(1_000, 4_000);
            let len = match rng.next() % 10 {
                0 => rng.between(1_500, 4_000),
                1 | 2 => rng.between(200, 1_000),
                _ => rng.between(16, 160),
            };
            ((rng.next() % 4) as usize, ts, seq, len as usize)
        })
        .collect();
    parallel::map(&plan, |&(author, ts, seq, len)| {
        let mut text = format!("{seq} ");
        while text.len() < len {
            text.push('x');
        }
        let payload = Payload {
            room: room.clone(),
            nick: "bencher".parse()?,
            ts,
            session: 1,
            seq,
            body: Body::Chat(text.parse()?),
        };
        Envelope::seal(&authors[author], payload).context("seal")
    })
    .into_iter()
    .collect()
}

/// A fresh, empty store of its own keys in `dir`.
fn open(dir: &Path) -> anyhow::Result<Store> {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir)?;
    let keys = Keys {
        keypair: Keypair::generate_ed25519(),
        storage: age::x25519::Identity::generate(),
    };
    Ok(Store::open(dir, &keys)?)
}

fn fill(store: &Store, envelopes: &[Envelope]) -> anyhow::Result<()> {
    for chunk in envelopes.chunks(256) {
        store.put_messages(chunk)?;
    }
    Ok(())
}

/// What a node's store thread answers to a catch-up request.
fn serve(server: &Store, request: Request) -> Response {
    match request {
        Request::Reconcile { room, message } => match server.reconcile_answer(&room, &message) {
            Ok(answer) => Response::Reconcile(answer),
            Err(_) => Response::Refused(palaver_proto::history::Refusal::Unavailable),
        },
        Request::Fetch { room, refs } => {
            let refs = &refs[..refs.len().min(MAX_FETCH)];
            match server.fetch(&room, refs) {
                Ok(envelopes) => {
                    Response::Envelopes(envelopes.iter().map(|e| e.as_bytes().to_vec()).collect())
                }
                Err(_) => Response::Refused(palaver_proto::history::Refusal::Unavailable),
            }
        }
    }
}

/// One request over the "wire": encoded, decoded by the server, answered,
/// the answer encoded and decoded by the asker. Adds both encodings' bytes.
fn exchange(server: &Store, request: &Request, bytes: &mut usize) -> anyhow::Result<Response> {
    let sent = request.encode();
    let answer = serve(server, Request::decode(&sent)?).encode();
    *bytes += sent.len() + answer.len();
    Ok(Response::decode(&answer)?)
}

/// The asker's pull of `room` from `server`, as a node does it: by
/// reconciliation, or (`known`) fetching refs known beforehand.
fn pull(
    asker: &Store,
    server: &Store,
    room: &RoomName,
    known: Option<&[MessageRef]>,
) -> anyhow::Result<Pull> {
    let start = Instant::now();
    let mut p = Pull::default();
    let mut to_fetch: VecDeque<MessageRef> = VecDeque::new();
    let mut next = match known {
        Some(refs) => {
            to_fetch.extend(refs.iter().copied());
            None
        }
        None => asker.reconcile_start(room)?.next,
    };
    loop {
        while !to_fetch.is_empty() {
            let n = to_fetch.len().min(MAX_FETCH);
            let asked: Vec<MessageRef> = to_fetch.drain(..n).collect();
            p.fetches += 1;
            let request = Request::Fetch {
                room: room.clone(),
                refs: asked.clone(),
            };
            let Response::Envelopes(page) = exchange(server, &request, &mut p.fetch_bytes)? else {
                bail!("a fetch was refused");
            };
            // As the store thread checks a fetched page, on every core.
            let wanted: HashSet<&MessageRef> = asked.iter().collect();
            let genuine: Vec<Envelope> = parallel::map(&page, |bytes| {
                let e = Envelope::open(bytes).ok()?;
                (e.payload().room == *room && is_chat(&e) && wanted.contains(&message_ref(&e)))
                    .then_some(e)
            })
            .into_iter()
            .flatten()
            .collect();
            if genuine.len() != page.len() {
                bail!(
                    "{} fetched envelopes failed their checks",
                    page.len() - genuine.len()
                );
            }
            if genuine.is_empty() {
                bail!("a fetch of {} refs served none", asked.len());
            }
            p.stored += asker.put_messages(&genuine)?.iter().filter(|n| **n).count();
            let served: HashSet<MessageRef> = genuine.iter().map(message_ref).collect();
            for r in asked.iter().rev().filter(|r| !served.contains(r)) {
                p.asked_again += 1;
                to_fetch.push_front(*r);
            }
        }
        let Some(message) = next.take() else {
            break;
        };
        p.rounds += 1;
        if p.rounds > MAX_ROUNDS {
            bail!("reconciliation did not converge in {MAX_ROUNDS} rounds");
        }
        let request = Request::Reconcile {
            room: room.clone(),
            message,
        };
        let mut round = 0;
        let Response::Reconcile(answer) = exchange(server, &request, &mut round)? else {
            bail!("a reconciliation round was refused");
        };
        p.reconcile_bytes += round;
        p.round_bytes.push(round);
        let step = asker.reconcile_step(room, &answer)?;
        to_fetch.extend(step.need);
        next = step.next;
    }
    p.seconds = start.elapsed().as_secs_f64();
    Ok(p)
}

/// The encoded bytes of fetching exactly these envelopes, request and answer.
fn fetch_bytes(room: &RoomName, envelopes: &[&Envelope]) -> usize {
    let request = Request::Fetch {
        room: room.clone(),
        refs: envelopes.iter().map(|e| message_ref(e)).collect(),
    };
    let answer = Response::Envelopes(envelopes.iter().map(|e| e.as_bytes().to_vec()).collect());
    request.encode().len() + answer.encode().len()
}

/// Indices of `GAP` messages spread evenly over `n`.
fn scattered(n: usize) -> Vec<usize> {
    (0..GAP).map(|k| k * n / GAP + n / (2 * GAP)).collect()
}

fn median_of<F: FnMut() -> anyhow::Result<()>>(reps: usize, mut f: F) -> anyhow::Result<Latency> {
    let mut samples = Vec::with_capacity(reps);
    for _ in 0..reps {
        let start = Instant::now();
        f()?;
        samples.push(start.elapsed());
    }
    Ok(Latency::of(&samples))
}

/// The answerer's CPU for each round of `asker`'s reconciliation with
/// `server`, each round's answer timed `reps` times.
fn round_cpu(
    server: &Store,
    room: &RoomName,
    asker: &Items,
    reps: usize,
) -> anyhow::Result<RoundCpu> {
    // The asker's messages of every round, as the server will be sent them.
    let mut messages = Vec::new();
    let mut message = asker.initiate()?;
    loop {
        let answer = server.reconcile_answer(room, &message)?;
        messages.push(message);
        match asker.step(&answer)?.next {
            Some(m) if messages.len() < MAX_ROUNDS => message = m,
            Some(_) => bail!("reconciliation did not converge"),
            None => break,
        }
    }
    let mut pooled: Vec<Duration> = Vec::new();
    let mut by_round: Vec<Vec<Duration>> = vec![Vec::with_capacity(reps); messages.len()];
    for _ in 0..reps {
        for (round, m) in messages.iter().enumerate() {
            let start = Instant::now();
            std::hint::black_box(server.reconcile_answer(room, m)?);
            let took = start.elapsed();
            pooled.push(took);
            by_round[round].push(took);
        }
    }
    let (heaviest_round, heaviest) = by_round
        .iter()
        .map(|s| Latency::of(s))
        .enumerate()
        .max_by(|a, b| a.1.p50_ms.total_cmp(&b.1.p50_ms))
        .unwrap_or_default();
    Ok(RoundCpu {
        rounds: messages.len(),
        per_round: Latency::of(&pooled),
        heaviest_round: heaviest_round + 1,
        heaviest,
    })
}

/// The answerer's CPU per round, `server` holding `all`, and its floors.
fn answers(
    server: &Store,
    room: &RoomName,
    all: &[MessageRef],
    reps: usize,
) -> anyhow::Result<Answers> {
    let missing: HashSet<usize> = scattered(all.len()).into_iter().collect();
    let asker = Items::from_refs(
        all.iter()
            .enumerate()
            .filter(|(i, _)| !missing.contains(i))
            .map(|(_, r)| *r),
    );
    let lacking_ten = round_cpu(server, room, &asker, reps)?;
    // Tens of rounds: fewer samples of each.
    let empty_asker = round_cpu(server, room, &Items::new(), reps.div_ceil(10).max(3))?;
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let envelope_read = median_of(reps, || {
        let r = all[rng.next() as usize % all.len()];
        let got = server.fetch(room, &[r])?;
        if got.len() != 1 {
            bail!("a stored envelope did not read back");
        }
        std::hint::black_box(got);
        Ok(())
    })?;
    let same = Items::from_refs(all.iter().copied()).initiate()?;
    let identical_answer = median_of(reps, || {
        std::hint::black_box(server.reconcile_answer(room, &same)?);
        Ok(())
    })?;
    Ok(Answers {
        stored: all.len(),
        lacking_ten,
        empty_asker,
        envelope_read,
        identical_answer,
    })
}

pub fn run(work: &Path, set: usize, big: usize, reps: usize) -> anyhow::Result<Figures> {
    let room: RoomName = "bench".parse()?;
    let set = set.max(4 * GAP);
    let big = big.max(set);
    let envelopes = history(&room, big)?;
    let refs: Vec<MessageRef> = envelopes.iter().map(message_ref).collect();
    let envelope_bytes: usize = envelopes.iter().map(|e| e.as_bytes().len()).sum();
    let dir = work.join("reconcile");

    // Stores of `set` differing by GAP, then identical.
    let small = &envelopes[..set];
    let server = open(&dir.join("server"))?;
    fill(&server, small)?;
    let mut gaps = Vec::new();
    let mut identical = None;
    let newest: Vec<usize> = (set - GAP..set).collect();
    for (shape, missing) in [("scattered", scattered(set)), ("newest", newest)] {
        let asker = open(&dir.join(format!("asker-{shape}")))?;
        let lacks: HashSet<usize> = missing.iter().copied().collect();
        let held: Vec<Envelope> = small
            .iter()
            .enumerate()
            .filter(|(i, _)| !lacks.contains(i))
            .map(|(_, e)| e.clone())
            .collect();
        fill(&asker, &held)?;
        let p = pull(&asker, &server, &room, None)?;
        if p.stored != GAP || asker.room_len(&room) != set {
            bail!(
                "{shape}: {} of {GAP} missing messages stored, {} held of {set}",
                p.stored,
                asker.room_len(&room)
            );
        }
        let lacked: Vec<&Envelope> = missing.iter().map(|&i| &small[i]).collect();
        gaps.push(Gap {
            shape,
            stored: set,
            missing: GAP,
            pull: p,
            fetch_alone_bytes: fetch_bytes(&room, &lacked),
        });
        // Now the two hold the same: what anti-entropy costs between them.
        if identical.is_none() {
            let p = pull(&asker, &server, &room, None)?;
            if p.stored != 0 || p.fetches != 0 {
                bail!("identical stores fetched {} envelopes", p.stored);
            }
            let framing = Request::Reconcile {
                room: room.clone(),
                message: vec![0; FINGERPRINT_BYTES],
            }
            .encode()
            .len()
                + Response::Reconcile(Vec::new()).encode().len();
            identical = Some(Identical {
                stored: set,
                pull: p,
                floor_bytes: framing,
            });
        }
        drop(asker);
        let _ = std::fs::remove_dir_all(dir.join(format!("asker-{shape}")));
    }
    let identical = identical.ok_or_else(|| anyhow::anyhow!("no identical pull"))?;

    // The big store, pulled whole into an empty one; then fetched alone.
    let big_server = open(&dir.join("big"))?;
    fill(&big_server, &envelopes)?;
    let mut answered = vec![answers(&server, &room, &refs[..set], reps)?];
    if big > set {
        answered.push(answers(&big_server, &room, &refs, reps)?);
    }
    drop(server);
    let _ = std::fs::remove_dir_all(dir.join("server"));
    // Each twice, in the order A B B A, the faster of each kept: the
    // shared disk and CPU drift over a run.
    let (mut reconciled, mut fetched): (Option<Pull>, Option<Pull>) = (None, None);
    for by_reconciliation in [true, false, false, true] {
        let name = if by_reconciliation {
            "empty"
        } else {
            "fetched"
        };
        let asker = open(&dir.join(name))?;
        let known = (!by_reconciliation).then_some(&refs[..]);
        let p = pull(&asker, &big_server, &room, known)?;
        if p.stored != big || asker.room_len(&room) != big {
            bail!("{name}: {} of {big} messages stored", p.stored);
        }
        drop(asker);
        let _ = std::fs::remove_dir_all(dir.join(name));
        let best = if by_reconciliation {
            &mut reconciled
        } else {
            &mut fetched
        };
        if best.as_ref().is_none_or(|b| p.seconds < b.seconds) {
            *best = Some(p);
        }
    }
    let (Some(pull_whole), Some(fetch_alone)) = (reconciled, fetched) else {
        bail!("the pulls from an empty store did not run");
    };
    drop(big_server);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(Figures {
        mean_envelope_bytes: envelope_bytes as f64 / big as f64,
        gaps,
        identical,
        answers: answered,
        from_empty: FromEmpty {
            stored: big,
            pull: pull_whole,
            envelope_bytes,
            fetch_alone,
        },
    })
}

/// "12,345 B".
fn bytes(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    format!("{out} B")
}

fn mib(n: usize) -> String {
    format!("{:.1} MiB", n as f64 / (1024.0 * 1024.0))
}

fn secs(s: f64) -> String {
    format!("{s:.2} s")
}

pub fn rows(f: &Figures) -> Vec<Row> {
    let mut rows = Vec::new();
    for g in &f.gaps {
        let what = format!(
            "{} vs {} lacking the {} {}",
            g.stored,
            g.stored,
            g.missing,
            if g.shape == "newest" {
                "newest"
            } else {
                "scattered over the history"
            }
        );
        rows.push(
            Row::new(
                "reconcile",
                format!("{what}: rounds"),
                g.pull.rounds.to_string(),
            )
            .baseline("1 round")
            .target("≤ 3", g.pull.rounds <= 3),
        );
        rows.push(
            Row::new(
                "reconcile",
                format!(
                    "{what}: reconciliation bytes, both ways (the fetch of the {} apart: {})",
                    g.missing,
                    bytes(g.pull.fetch_bytes)
                ),
                bytes(g.pull.reconcile_bytes),
            )
            .against(
                format!(
                    "fetching the {} envelopes alone {}",
                    g.missing,
                    bytes(g.fetch_alone_bytes)
                ),
                ratio(g.pull.reconcile_bytes as f64, g.fetch_alone_bytes as f64),
            )
            .target(
                "≤ 5 KB (5,000 B)",
                g.pull.reconcile_bytes <= GAP_BYTES_TARGET,
            ),
        );
    }
    let i = &f.identical;
    let what = format!("{} vs the same {}", i.stored, i.stored);
    rows.push(
        Row::new(
            "reconcile",
            format!("{what}: rounds"),
            i.pull.rounds.to_string(),
        )
        .baseline("1 round")
        .target("1", i.pull.rounds == 1),
    );
    rows.push(
        Row::new(
            "reconcile",
            format!("{what}: bytes, both ways"),
            bytes(i.pull.bytes()),
        )
        .against(
            format!(
                "one round's framing with a {FINGERPRINT_BYTES} B fingerprint {}",
                bytes(i.floor_bytes)
            ),
            ratio(i.pull.bytes() as f64, i.floor_bytes as f64),
        )
        .target("≤ 100 B", i.pull.bytes() <= IDENTICAL_BYTES_TARGET),
    );
    for a in &f.answers {
        let floor = format!(
            "one envelope read from the store (decrypt + verify) p50 {}; an identical set's answer p50 {}",
            us(a.envelope_read.p50_ms * 1e3),
            us(a.identical_answer.p50_ms * 1e3)
        );
        for (asker, c) in [
            ("an asker lacking 10 scattered", &a.lacking_ten),
            ("an empty asker", &a.empty_asker),
        ] {
            rows.push(
                Row::new(
                    "reconcile",
                    format!(
                        "CPU per served round (Store::reconcile_answer), {} stored, {asker}: p50 / p99 over {} rounds ({} samples); heaviest, round {}: p50",
                        a.stored, c.rounds, c.per_round.samples, c.heaviest_round
                    ),
                    format!(
                        "{} / {}; {}",
                        us(c.per_round.p50_ms * 1e3),
                        us(c.per_round.p99_ms * 1e3),
                        us(c.heaviest.p50_ms * 1e3)
                    ),
                )
                .against(
                    floor.clone(),
                    ratio(c.per_round.p50_ms, a.envelope_read.p50_ms),
                ),
            );
        }
    }
    let e = &f.from_empty;
    let what = format!(
        "{} stored vs an empty store ({:.0} B envelopes on average)",
        e.stored, f.mean_envelope_bytes
    );
    rows.push(
        Row::new(
            "reconcile",
            format!(
                "{what}: time to reconcile, fetch, verify and store all ({} rounds, {} fetches; best of two)",
                e.pull.rounds, e.pull.fetches
            ),
            secs(e.pull.seconds),
        )
        .against(
            format!(
                "fetching and storing them, refs known, no reconciliation {} (best of two)",
                secs(e.fetch_alone.seconds)
            ),
            ratio(e.pull.seconds, e.fetch_alone.seconds),
        ),
    );
    rows.push(
        Row::new(
            "reconcile",
            format!(
                "{what}: bytes both ways, all fetches included (reconciliation {}; refs asked again {})",
                bytes(e.pull.reconcile_bytes),
                e.pull.asked_again
            ),
            format!("{} ({})", bytes(e.pull.bytes()), mib(e.pull.bytes())),
        )
        .against(
            format!(
                "the envelopes alone {} ({}); fetched with refs known {}",
                bytes(e.envelope_bytes),
                mib(e.envelope_bytes),
                bytes(e.fetch_alone.bytes())
            ),
            ratio(e.pull.bytes() as f64, e.envelope_bytes as f64),
        ),
    );
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_are_grouped_in_thousands() {
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(999), "999 B");
        assert_eq!(bytes(1_000), "1,000 B");
        assert_eq!(bytes(52_345_678), "52,345,678 B");
    }

    #[test]
    fn an_answer_cut_by_its_byte_budget_is_asked_again_and_everything_arrives() {
        let room: RoomName = "bench".parse().unwrap();
        let dir = palaver_testkit::scratch::process_dir("palaver-bench-reconcile-test").unwrap();
        let author = Keypair::generate_ed25519();
        // 300 envelopes of 4 KB: a page of 256 passes MAX_FETCH_BYTES.
        let big: Vec<Envelope> = (0..300u64)
            .map(|seq| {
                let payload = Payload {
                    room: room.clone(),
                    nick: "bencher".parse().unwrap(),
                    ts: 1_700_000_000_000 + seq,
                    session: 1,
                    seq,
                    body: Body::Chat(format!("{seq:04}{}", "y".repeat(4000)).parse().unwrap()),
                };
                Envelope::seal(&author, payload).unwrap()
            })
            .collect();
        let server = open(&dir.join("server")).unwrap();
        fill(&server, &big).unwrap();
        let asker = open(&dir.join("asker")).unwrap();
        let p = pull(&asker, &server, &room, None).unwrap();
        assert_eq!(asker.room_len(&room), big.len());
        drop((asker, server));
        let _ = std::fs::remove_dir_all(&dir);
        assert!(MAX_FETCH * big[0].as_bytes().len() > palaver_proto::history::MAX_FETCH_BYTES);
        assert_eq!(p.stored, 300);
        assert!(p.asked_again > 0, "{p:?}");
        assert!(p.fetch_bytes > 300 * 4000, "{p:?}");
    }
}
