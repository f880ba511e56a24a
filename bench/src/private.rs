//! Private (end-to-end encrypted) rooms: what the sealing costs.
//!
//! - Two nodes in a private room and in a public room at once: publish →
//!   `message` at the other node in each, in interleaved blocks, so the
//!   public room is the floor the private one (XChaCha20-Poly1305 per frame)
//!   is set beside.
//! - Joining by invite: `/join CODE` on a fresh node that knows nobody, to
//!   its `ok` (it holds the room's key) and to its first message from the
//!   inviter.
//! - A removal, in this process for rooms of 10 and 100 members: the signed
//!   rotation and the age lockbox sealed to everyone who stays, the time one
//!   member needs to open it, and its size, beside as many one-recipient age
//!   encryptions measured in the same run.
//! - A removal in a small room of real nodes: `/kick` to its `ok` (the new
//!   key is out) and to `left … removed` at the removed member.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use libp2p::identity::Keypair;
use palaver_node::store::Store;
use palaver_proto::private::EpochKey;
use palaver_proto::private::keyring::GENESIS_PARENT;
use palaver_proto::private::rotation::{Role, RosterEntry, Rotation, Statement};
use palaver_testkit::PROMPT;
use palaver_testkit::output::REPLIES;
use serde::Serialize;

use crate::cluster::{Cluster, Line, Spawn};
use crate::report::{Row, ms, us};
use crate::stats::{Latency, ratio};
use crate::traffic::{self, Plan};

const LISTEN: &str = "/ip4/127.0.0.1/udp/0/quic-v1";

/// Sizes of one run.
#[derive(Debug, Clone)]
pub struct Sizes {
    /// Messages per room (private and public) for the latency.
    pub messages: usize,
    /// Fresh nodes that join by invite.
    pub joins: usize,
    /// Members removed from the small room of real nodes.
    pub kicks: usize,
    /// Rooms (members before the removal) of the in-process removal.
    pub removal_rooms: Vec<usize>,
    /// Times each in-process removal is repeated.
    pub removal_reps: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct RoomLatency {
    pub messages: usize,
    pub delivered: usize,
    pub latency: Latency,
}

#[derive(Debug, Clone, Serialize)]
pub struct Joins {
    pub joins: usize,
    /// `/join CODE` written → `ok` read.
    pub to_ok: Latency,
    /// `/join CODE` written → the first message from the inviter, who sends
    /// one every `inviter_interval_ms` from the joiner's `ok` on.
    pub to_first_message: Latency,
    pub inviter_interval_ms: f64,
    /// First messages that came by catch-up (`replay`) rather than live.
    pub first_message_replayed: usize,
    /// Each join's → ok and → first message, in order (the room grows by
    /// one member each time).
    pub each_ms: Vec<(f64, f64)>,
}

/// One removal from a room of `members`, in this process.
#[derive(Debug, Clone, Serialize)]
pub struct Removal {
    /// Members before the removal.
    pub members: usize,
    /// Whom the lockbox is sealed to: those who stay, but its author (as
    /// the node's `rotate` does).
    pub recipients: usize,
    pub reps: usize,
    pub sign: Latency,
    pub seal: Latency,
    pub sign_and_seal: Latency,
    /// A member whose stanza comes first, and the last one (age tries the
    /// stanzas in order: the worst case).
    pub open_first: Latency,
    pub open_last: Latency,
    pub rotation_bytes: usize,
    /// The lockbox as published (frame header and age ciphertext).
    pub lockbox_bytes: usize,
    pub max_lockbox_bytes: usize,
    /// One age X25519 encryption and decryption of 32 bytes, one recipient.
    pub age_encrypt_32_us: f64,
    pub age_decrypt_32_us: f64,
}

impl Removal {
    /// The floor of sign + seal: one 32-byte age encryption per recipient.
    pub fn seal_floor_ms(&self) -> f64 {
        self.recipients as f64 * self.age_encrypt_32_us / 1e3
    }

    /// The floor of the worst-case open: one 32-byte age decryption per stanza tried.
    pub fn open_floor_ms(&self) -> f64 {
        self.recipients as f64 * self.age_decrypt_32_us / 1e3
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct LiveRemoval {
    /// Node processes in the room at each removal (the removed one included).
    pub nodes: usize,
    pub kicks: usize,
    /// `/kick` written → its `ok`.
    pub to_ok: Latency,
    /// `/kick` written → `left … removed` at the removed member.
    pub to_left: Latency,
    /// Each removal's → ok and → left, in order.
    pub each_ms: Vec<(f64, f64)>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Figures {
    pub interval_ms: f64,
    pub text_bytes: usize,
    pub private: RoomLatency,
    /// The same nodes' public room, in blocks interleaved with the private ones.
    pub public: RoomLatency,
    pub blocks: usize,
    pub joins: Joins,
    pub removals: Vec<Removal>,
    pub live_removal: LiveRemoval,
}

pub fn run(node: &Path, work: &Path, sizes: &Sizes) -> anyhow::Result<Figures> {
    // In-process first, on a quiet machine.
    let removals = sizes
        .removal_rooms
        .iter()
        .map(|&n| removal(n, sizes.removal_reps))
        .collect::<anyhow::Result<Vec<_>>>()?;

    let mut cluster = Cluster::new(node, &work.join("private"))?;
    let a = cluster.start(&Spawn::new("p-alice", &["--listen", LISTEN]))?;
    let a_addr = cluster.nodes[a].addr("quic-v1")?;
    let b = cluster.start(&Spawn::new(
        "p-bob",
        &["--listen", LISTEN, "--bootstrap", &a_addr],
    ))?;
    let (room, code) = create(&mut cluster, a, "bench")?;
    join(&mut cluster, b, &code)?;
    let public = "bench";
    for i in [a, b] {
        cluster.command(i, &format!("/join {public}"))?;
    }
    for r in [room.as_str(), public] {
        traffic::warm_up(&mut cluster, r, &[a, b], &[a, b])?;
    }

    // 1. Latency: blocks of each room in turn, the order swapped every block.
    let interval = Duration::from_millis(3);
    let text_bytes = 64;
    let blocks = 10.min(sizes.messages.max(1));
    let per_block = sizes.messages.div_ceil(blocks);
    let mut private = (0, 0, Vec::new());
    let mut open = (0, 0, Vec::new());
    for k in 0..blocks {
        let order = if k % 2 == 0 {
            [(room.as_str(), true), (public, false)]
        } else {
            [(public, false), (room.as_str(), true)]
        };
        for (r, is_private) in order {
            let outcome = traffic::run(
                &mut cluster,
                &Plan {
                    room: r.to_owned(),
                    authors: vec![a],
                    members: vec![a, b],
                    count: per_block,
                    interval,
                    text_bytes,
                    drain: Duration::from_secs(5),
                    tag: format!("{}{k}-", if is_private { "p" } else { "o" }),
                },
            )?;
            let into = if is_private { &mut private } else { &mut open };
            into.0 += outcome.sent;
            into.1 += outcome.deliveries;
            into.2.extend(outcome.to_each);
        }
    }
    let latency = |(messages, delivered, samples): (usize, usize, Vec<Duration>)| RoomLatency {
        messages,
        delivered,
        latency: Latency::of(&samples),
    };

    // 2. Joins by invite, each a fresh node with a fresh code, into a room
    //    of their own (the latency's room holds its messages as history,
    //    whose catch-up would compete with the joins).
    let (join_room, code) = create(&mut cluster, a, "joins")?;
    join(&mut cluster, b, &code)?;
    let inviter_interval = Duration::from_millis(5);
    let a_peer = cluster.nodes[a].peer_id.clone();
    let mut to_ok = Vec::new();
    let mut to_first = Vec::new();
    let mut replayed = 0;
    let mut joiners = Vec::new();
    for j in 0..sizes.joins {
        let code = invite(&mut cluster, a, &join_room)?;
        let n = cluster.start(&Spawn::new(format!("p-join{j}"), &["--listen", LISTEN]))?;
        cluster.clear();
        let written = Instant::now();
        let ok = join(&mut cluster, n, &code)?;
        to_ok.push(ok.at.saturating_duration_since(written));
        let tag = format!("join{j}-");
        let deadline = Instant::now() + PROMPT;
        let first = 'talk: {
            for seq in 0.. {
                cluster.command(a, &format!("/send {join_room} {tag}{seq}"))?;
                let heard = cluster.wait(inviter_interval, |l| {
                    l.source == n
                        && l.event() == "message"
                        && l.value["room"] == join_room.as_str()
                        && l.value["from"] == a_peer.as_str()
                        && l.value["text"]
                            .as_str()
                            .is_some_and(|t| t.starts_with(&tag))
                });
                if let Ok(line) = heard {
                    break 'talk line;
                }
                if Instant::now() > deadline {
                    break;
                }
            }
            bail!("joiner {j}: no message from the inviter within {PROMPT:?} of its ok");
        };
        to_first.push(first.at.saturating_duration_since(written));
        if first.value["replay"] == true {
            replayed += 1;
        }
        joiners.push(n);
    }

    // 3. Removals from a room of four processes: the inviter, two members
    //    who stay, and a fresh member removed each time.
    let (kick_room, code) = create(&mut cluster, a, "kick")?;
    join(&mut cluster, b, &code)?;
    let c = match joiners.first() {
        Some(&c) => c,
        None => {
            let c = cluster.start(&Spawn::new("p-carol", &["--listen", LISTEN]))?;
            joiners.push(c);
            c
        }
    };
    let code = invite(&mut cluster, a, &kick_room)?;
    join(&mut cluster, c, &code)?;
    let mut kick_ok = Vec::new();
    let mut kick_left = Vec::new();
    for k in 0..sizes.kicks {
        let code = invite(&mut cluster, a, &kick_room)?;
        let v = cluster.start(&Spawn::new(format!("p-removed{k}"), &["--listen", LISTEN]))?;
        join(&mut cluster, v, &code)?;
        traffic::warm_up(&mut cluster, &kick_room, &[a], &[a, b, c, v])?;
        let victim = cluster.nodes[v].peer_id.clone();
        cluster.clear();
        let written = Instant::now();
        let ok = cluster.command(a, &format!("/kick {kick_room} {victim}"))?;
        if ok.event() != "ok" {
            bail!("/kick: {}", ok.value);
        }
        let left = cluster
            .wait(PROMPT, |l| {
                l.source == v
                    && l.event() == "left"
                    && l.value["room"] == kick_room.as_str()
                    && l.value["peer_id"] == victim.as_str()
                    && l.value["reason"] == "removed"
            })
            .with_context(|| format!("removed member {k}: not told it was removed"))?;
        kick_ok.push(ok.at.saturating_duration_since(written));
        kick_left.push(left.at.saturating_duration_since(written));
    }
    cluster.stop();

    Ok(Figures {
        interval_ms: interval.as_secs_f64() * 1e3,
        text_bytes,
        private: latency(private),
        public: latency(open),
        blocks,
        joins: Joins {
            joins: to_ok.len(),
            to_ok: Latency::of(&to_ok),
            to_first_message: Latency::of(&to_first),
            inviter_interval_ms: inviter_interval.as_secs_f64() * 1e3,
            first_message_replayed: replayed,
            each_ms: each_ms(&to_ok, &to_first),
        },
        removals,
        live_removal: LiveRemoval {
            nodes: 4,
            kicks: kick_ok.len(),
            to_ok: Latency::of(&kick_ok),
            to_left: Latency::of(&kick_left),
            each_ms: each_ms(&kick_ok, &kick_left),
        },
    })
}

fn each_ms(a: &[Duration], b: &[Duration]) -> Vec<(f64, f64)> {
    a.iter()
        .zip(b)
        .map(|(a, b)| (a.as_secs_f64() * 1e3, b.as_secs_f64() * 1e3))
        .collect()
}

/// A string field of a reply, or an error naming the reply.
fn field(line: &Line, name: &str) -> anyhow::Result<String> {
    line.value[name]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| anyhow!("node {}: no {name} in {}", line.source, line.value))
}

/// `/create NAME` on node `i`: the room's handle and its first code.
fn create(cluster: &mut Cluster, i: usize, name: &str) -> anyhow::Result<(String, String)> {
    let reply = cluster.command(i, &format!("/create {name}"))?;
    if reply.event() != "invite" {
        bail!("node {i}: /create {name} answered {}", reply.value);
    }
    Ok((field(&reply, "room")?, field(&reply, "code")?))
}

/// `/invite ROOM` on node `i`: a fresh code.
fn invite(cluster: &mut Cluster, i: usize, room: &str) -> anyhow::Result<String> {
    let reply = cluster.command(i, &format!("/invite {room}"))?;
    if reply.event() != "invite" {
        bail!("node {i}: /invite {room} answered {}", reply.value);
    }
    field(&reply, "code")
}

/// `/join CODE` on node `i`, and its `ok` (it holds the room's key).
fn join(cluster: &mut Cluster, i: usize, code: &str) -> anyhow::Result<Line> {
    cluster.send(i, &format!("/join {code}"))?;
    let reply = cluster
        .wait(PROMPT, |l| l.source == i && REPLIES.contains(&l.event()))
        .with_context(|| format!("node {i}: no reply to /join CODE"))?;
    if reply.event() != "ok" {
        bail!("node {i}: /join CODE answered {}", reply.value);
    }
    Ok(reply)
}

/// One removal from a room of `members`, `reps` times: the admin signs the
/// rotation (the others stay, the last is removed) and seals it to everyone
/// who stays but itself; the first and the last recipient open it.
pub fn removal(members: usize, reps: usize) -> anyhow::Result<Removal> {
    if members < 3 {
        bail!("a removal needs a room of 3 or more, not {members}");
    }
    let reps = reps.max(1);
    let keys: Vec<Keypair> = (0..members).map(|_| Keypair::generate_ed25519()).collect();
    let identities: Vec<age::x25519::Identity> = (0..members)
        .map(|_| age::x25519::Identity::generate())
        .collect();
    let roster: Vec<RosterEntry> = keys
        .iter()
        .zip(&identities)
        .enumerate()
        .map(|(i, (k, id))| RosterEntry {
            peer: k.public().to_peer_id(),
            role: if i == 0 { Role::Admin } else { Role::Member },
            recipient: id.to_public().to_string(),
        })
        .collect();
    let stays = &roster[..members - 1];
    let statement = Statement {
        room_id: [7; palaver_proto::private::ROOM_ID_BYTES],
        generation: 1,
        parent: GENESIS_PARENT,
        key: EpochKey::from_bytes([9; palaver_proto::private::EPOCH_KEY_BYTES]),
        members: stays.to_vec(),
        removed: vec![roster[members - 1].peer],
    };
    let recipients: Vec<String> = stays[1..].iter().map(|m| m.recipient.clone()).collect();
    let (first, last) = (&identities[1], &identities[members - 2]);

    let (mut sign, mut seal, mut both) = (Vec::new(), Vec::new(), Vec::new());
    let (mut open_first, mut open_last) = (Vec::new(), Vec::new());
    let mut sizes = (0, 0);
    for _ in 0..reps {
        let statement = statement.clone();
        let start = Instant::now();
        let rotation = Rotation::sign(&keys[0], statement).context("sign the rotation")?;
        let signed = Instant::now();
        let sealed = Store::seal_lockbox(&recipients, rotation.bytes()).context("seal")?;
        let done = Instant::now();
        let frame = palaver_proto::private::lockbox(&sealed).context("frame the lockbox")?;
        std::hint::black_box(&frame);
        sign.push(signed - start);
        seal.push(done - signed);
        both.push(done - start);
        sizes = (rotation.bytes().len(), frame.len());
        for (who, into) in [(first, &mut open_first), (last, &mut open_last)] {
            let start = Instant::now();
            let opened = age::decrypt(who, &sealed).context("open the lockbox")?;
            into.push(start.elapsed());
            if opened != rotation.bytes() {
                bail!("the lockbox opened to something else than the rotation");
            }
        }
    }

    // The floor: one-recipient age of 32 bytes, as many times as there are recipients.
    let n = (reps * recipients.len()).clamp(50, 2_000);
    let one = age::x25519::Identity::generate();
    let to = one.to_public();
    let start = Instant::now();
    let boxes = (0..n)
        .map(|_| age::encrypt(&to, &[5u8; 32]).context("age encrypt"))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let age_encrypt_32_us = start.elapsed().as_secs_f64() * 1e6 / n as f64;
    let start = Instant::now();
    for b in &boxes {
        std::hint::black_box(age::decrypt(&one, b).context("age decrypt")?);
    }
    let age_decrypt_32_us = start.elapsed().as_secs_f64() * 1e6 / n as f64;

    Ok(Removal {
        members,
        recipients: recipients.len(),
        reps,
        sign: Latency::of(&sign),
        seal: Latency::of(&seal),
        sign_and_seal: Latency::of(&both),
        open_first: Latency::of(&open_first),
        open_last: Latency::of(&open_last),
        rotation_bytes: sizes.0,
        lockbox_bytes: sizes.1,
        max_lockbox_bytes: palaver_proto::private::MAX_LOCKBOX_BYTES,
        age_encrypt_32_us,
        age_decrypt_32_us,
    })
}

pub fn rows(f: &Figures) -> Vec<Row> {
    let mut rows = Vec::new();
    for (label, p, o) in [
        ("p50", f.private.latency.p50_ms, f.public.latency.p50_ms),
        ("p99", f.private.latency.p99_ms, f.public.latency.p99_ms),
    ] {
        rows.push(
            Row::new(
                "private",
                format!(
                    "private room, 2 nodes, QUIC: publish → message at the other node, {label} ({}/{} delivered)",
                    f.private.delivered, f.private.messages
                ),
                ms(p),
            )
            .against(
                format!(
                    "public room, same nodes, interleaved: {} ({}/{} delivered)",
                    ms(o),
                    f.public.delivered,
                    f.public.messages
                ),
                ratio(p, o),
            ),
        );
    }
    let j = &f.joins;
    rows.push(Row::new(
        "private",
        format!(
            "invite: /join CODE on a fresh node → ok (holds the key), p50 / p99 ({} joins)",
            j.joins
        ),
        format!("{} / {}", ms(j.to_ok.p50_ms), ms(j.to_ok.p99_ms)),
    ));
    rows.push(
        Row::new(
            "private",
            format!(
                "invite: /join CODE → first message from the inviter (sending every {} ms from the ok), p50 / p99",
                j.inviter_interval_ms
            ),
            format!(
                "{} / {}",
                ms(j.to_first_message.p50_ms),
                ms(j.to_first_message.p99_ms)
            ),
        )
        .baseline(format!(
            "→ ok p50 {}; {} of {} first messages by catch-up",
            ms(j.to_ok.p50_ms),
            j.first_message_replayed,
            j.joins
        )),
    );
    for r in &f.removals {
        let n = r.members;
        let k = r.recipients;
        rows.push(
            Row::new(
                "private",
                format!(
                    "room of {n}, one removed: sign rotation + seal lockbox to the {k} who stay, one core, p50"
                ),
                ms(r.sign_and_seal.p50_ms),
            )
            .against(
                format!(
                    "{k} × age encrypt of 32 B ({}) = {}",
                    us(r.age_encrypt_32_us),
                    ms(r.seal_floor_ms())
                ),
                ratio(r.sign_and_seal.p50_ms, r.seal_floor_ms()),
            ),
        );
        rows.push(
            Row::new(
                "private",
                format!(
                    "room of {n}: a member opens the lockbox, last of {k} stanzas (worst case), p50"
                ),
                ms(r.open_last.p50_ms),
            )
            .against(
                format!(
                    "{k} × age decrypt of 32 B ({}) = {}; first stanza {}",
                    us(r.age_decrypt_32_us),
                    ms(r.open_floor_ms()),
                    ms(r.open_first.p50_ms)
                ),
                ratio(r.open_last.p50_ms, r.open_floor_ms()),
            ),
        );
        rows.push(
            Row::new(
                "private",
                format!("room of {n}: lockbox as published"),
                format!("{} B", r.lockbox_bytes),
            )
            .against(
                format!(
                    "the signed rotation alone {} B; cap {} B",
                    r.rotation_bytes, r.max_lockbox_bytes
                ),
                ratio(r.lockbox_bytes as f64, r.rotation_bytes as f64),
            ),
        );
    }
    let l = &f.live_removal;
    rows.push(Row::new(
        "private",
        format!(
            "room of {} nodes: /kick → ok (new key out), p50 / p99 ({} kicks)",
            l.nodes, l.kicks
        ),
        format!("{} / {}", ms(l.to_ok.p50_ms), ms(l.to_ok.p99_ms)),
    ));
    rows.push(Row::new(
        "private",
        format!(
            "room of {} nodes: /kick → left … removed at the removed member, p50 / p99",
            l.nodes
        ),
        format!("{} / {}", ms(l.to_left.p50_ms), ms(l.to_left.p99_ms)),
    ));
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_removal_seals_to_those_who_stay_but_the_author() {
        let r = removal(5, 2).unwrap_or_else(|e| panic!("{e:#}"));
        assert_eq!(r.recipients, 3);
        assert!(r.lockbox_bytes > r.rotation_bytes, "{r:?}");
        assert!(r.seal_floor_ms() > 0.0 && r.open_last.samples == 2);
    }
}
