//! The rules a received envelope must pass, as pure functions: a live gossip
//! message (is it forwarded, dropped, or held against the peer that sent
//! it?) and a page of envelopes fetched by catch-up (which are genuine?).
//! They run on the store thread, so they see nothing but their arguments.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use libp2p::PeerId;
use palaver_proto::RoomName;
use palaver_proto::envelope::{Envelope, EnvelopeError};
use palaver_proto::history::MessageRef;

use crate::store::{is_chat, message_ref, parallel};

pub use palaver_proto::contract::MAX_CLOCK_SKEW_MS;

/// What is known of a live gossip message before its envelope is opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveCheck {
    /// The peer that forwarded it (it answers for what it forwards).
    pub from: PeerId,
    /// The room of the topic it came on.
    pub room: RoomName,
    /// This node: its own envelopes coming back are dropped.
    pub local: PeerId,
    /// When it arrived, unix milliseconds.
    pub received_ms: u64,
    /// In a private room, who may have written in it (its members, past
    /// and present): anyone else's envelope was replayed from elsewhere by
    /// a member, and is held against the peer that sent it.
    pub authors: Option<Arc<HashSet<PeerId>>>,
}

/// The verdict on a live message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Genuine and fresh: forwarded, and shown (chat once stored).
    Accept(Envelope),
    /// Not shown nor forwarded, but not the sender's fault (a newer version,
    /// a replay, a clock far off, an echo of our own).
    Ignore,
    /// Malformed or forged: held against the peer that sent it.
    Reject,
    /// Genuine, but its author is sending chat faster than
    /// [`AuthorRates`] allows: dropped, and counted (a little) against the
    /// peer that sent it (nodes do not forward the excess).
    Excess,
}

/// Chat messages one author may send in one room, a second, by default
/// (node policy; flag `--author-rate`); twice as many in a burst. Far above
/// what people type, and above what one node can send (BENCHMARKS.md), so
/// only a flood meets it.
pub const DEFAULT_AUTHOR_RATE: u32 = 2000;
/// Most (author, room) buckets remembered.
const MAX_AUTHORS: usize = 8192;

/// Per-author rate limits on live chat, a token bucket per (author, room).
#[derive(Debug)]
pub struct AuthorRates {
    buckets: HashMap<(PeerId, RoomName), (f64, u64)>,
    rate: f64,
    burst: f64,
}

impl AuthorRates {
    /// `rate` messages a second per author and room (at least 1), twice as many in a burst.
    pub fn new(rate: u32) -> Self {
        let rate = f64::from(rate.max(1));
        Self {
            buckets: HashMap::new(),
            rate,
            burst: 2.0 * rate,
        }
    }

    /// Whether one more chat message from `author` in `room` at `now_ms` is
    /// within its rate; if so it is counted.
    pub fn allow(&mut self, author: PeerId, room: &RoomName, now_ms: u64) -> bool {
        let refill_ms = (self.burst / self.rate * 1000.0) as u64;
        if self.buckets.len() >= MAX_AUTHORS && !self.buckets.contains_key(&(author, room.clone()))
        {
            // Full buckets again say nothing a new one would not.
            self.buckets
                .retain(|_, (_, at)| now_ms.saturating_sub(*at) < refill_ms);
            if self.buckets.len() >= MAX_AUTHORS {
                return false;
            }
        }
        let (tokens, at) = self
            .buckets
            .entry((author, room.clone()))
            .or_insert((self.burst, now_ms));
        let elapsed = now_ms.saturating_sub(*at) as f64 / 1000.0;
        *tokens = (*tokens + elapsed * self.rate).min(self.burst);
        *at = now_ms.max(*at);
        if *tokens < 1.0 {
            return false;
        }
        *tokens -= 1.0;
        true
    }
}

/// Judges a live message's opened envelope.
pub fn live(check: &LiveCheck, opened: Result<Envelope, EnvelopeError>) -> Verdict {
    let from = check.from;
    let envelope = match opened {
        Ok(envelope) => envelope,
        Err(e) => {
            tracing::debug!(%from, "envelope refused: {e}");
            return if e.is_malformed() {
                Verdict::Reject
            } else {
                Verdict::Ignore
            };
        }
    };
    let payload = envelope.payload();
    if payload.room != check.room {
        tracing::debug!(%from, "payload names another room than its topic");
        return Verdict::Reject;
    }
    if envelope.author() == check.local {
        return Verdict::Ignore;
    }
    if check
        .authors
        .as_ref()
        .is_some_and(|a| !a.contains(&envelope.author()))
    {
        tracing::debug!(%from, "envelope by a non-member in a private room");
        return Verdict::Reject;
    }
    // Live gossip is fresh: an old payload can only be a replay (history
    // comes by catch-up, not gossip). Clocks may differ by a few minutes.
    if check.received_ms.abs_diff(payload.ts) > MAX_CLOCK_SKEW_MS {
        tracing::debug!(%from, ts = payload.ts, "stale or future payload");
        return Verdict::Ignore;
    }
    Verdict::Accept(envelope)
}

/// Checks a fetched page (signatures on every core): each envelope must be
/// genuine, chat, of `room`, and one that was `asked` for; duplicates count
/// once. Returns the genuine ones and how many were not.
pub fn fetched_page(
    room: &RoomName,
    asked: &[MessageRef],
    envelopes: &[Vec<u8>],
    authors: Option<&HashSet<PeerId>>,
) -> (Vec<Envelope>, usize) {
    let asked: HashSet<&MessageRef> = asked.iter().collect();
    let checked = parallel::map(envelopes, |bytes| {
        let envelope = Envelope::open(bytes).ok()?;
        let genuine = envelope.payload().room == *room
            && authors.is_none_or(|a| a.contains(&envelope.author()))
            && is_chat(&envelope)
            && asked.contains(&message_ref(&envelope));
        genuine.then_some(envelope)
    });
    let total = checked.len();
    let mut seen = HashSet::new();
    let genuine: Vec<Envelope> = checked
        .into_iter()
        .flatten()
        .filter(|e| seen.insert(e.id_bytes()))
        .collect();
    let rejected = total.saturating_sub(genuine.len());
    (genuine, rejected)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

    use libp2p::identity::Keypair;
    use palaver_proto::wire::{Body, Payload};

    use super::*;

    const NOW: u64 = 1_700_000_000_000;

    fn chat(author: &Keypair, room: &str, ts: u64) -> Envelope {
        let payload = Payload {
            room: room.parse().unwrap(),
            nick: "ann".parse().unwrap(),
            ts,
            session: 1,
            seq: 1,
            body: Body::Chat("hello".parse().unwrap()),
        };
        Envelope::seal(author, payload).unwrap()
    }

    fn check(room: &str, local: PeerId) -> LiveCheck {
        LiveCheck {
            from: PeerId::random(),
            room: room.parse().unwrap(),
            local,
            received_ms: NOW,
            authors: None,
        }
    }

    fn verdict(envelope: Envelope, topic_room: &str, local: PeerId) -> Verdict {
        live(
            &check(topic_room, local),
            Envelope::open(envelope.as_bytes()),
        )
    }

    #[test]
    fn in_a_private_room_only_its_members_envelopes_are_taken() {
        let member = Keypair::generate_ed25519();
        let stranger = Keypair::generate_ed25519();
        let room = "team~0a0b0c0d";
        let mut check = check(room, PeerId::random());
        check.authors = Some(Arc::new([member.public().to_peer_id()].into()));
        let by = |k: &Keypair| live(&check, Ok(chat(k, room, NOW)));
        assert!(matches!(by(&member), Verdict::Accept(_)));
        assert_eq!(by(&stranger), Verdict::Reject);
        let page: Vec<Vec<u8>> = [&member, &stranger]
            .iter()
            .map(|k| chat(k, room, NOW).as_bytes().to_vec())
            .collect();
        let asked: Vec<MessageRef> = [&member, &stranger]
            .iter()
            .map(|k| message_ref(&chat(k, room, NOW)))
            .collect();
        let authors: HashSet<PeerId> = [member.public().to_peer_id()].into();
        let (genuine, rejected) =
            fetched_page(&room.parse().unwrap(), &asked, &page, Some(&authors));
        assert_eq!((genuine.len(), rejected), (1, 1));
    }

    #[test]
    fn a_fresh_envelope_for_its_topic_is_accepted() {
        let author = Keypair::generate_ed25519();
        let envelope = chat(&author, "lobby", NOW - 1_000);
        assert_eq!(
            verdict(envelope.clone(), "lobby", PeerId::random()),
            Verdict::Accept(envelope)
        );
    }

    #[test]
    fn an_envelope_naming_another_room_than_its_topic_is_rejected() {
        let author = Keypair::generate_ed25519();
        assert_eq!(
            verdict(chat(&author, "other", NOW), "lobby", PeerId::random()),
            Verdict::Reject
        );
    }

    #[test]
    fn own_stale_and_future_envelopes_are_ignored() {
        let author = Keypair::generate_ed25519();
        let me = author.public().to_peer_id();
        assert_eq!(
            verdict(chat(&author, "lobby", NOW), "lobby", me),
            Verdict::Ignore
        );
        let stale = NOW - MAX_CLOCK_SKEW_MS - 1;
        assert_eq!(
            verdict(chat(&author, "lobby", stale), "lobby", PeerId::random()),
            Verdict::Ignore
        );
        let future = NOW + MAX_CLOCK_SKEW_MS + 1;
        assert_eq!(
            verdict(chat(&author, "lobby", future), "lobby", PeerId::random()),
            Verdict::Ignore
        );
    }

    #[test]
    fn an_author_may_burst_then_keeps_to_its_rate_in_each_room() {
        let mut rates = AuthorRates::new(25);
        let (flooder, other) = (PeerId::random(), PeerId::random());
        let lobby: RoomName = "lobby".parse().unwrap();
        let dev: RoomName = "dev".parse().unwrap();
        let allowed = (0..1000)
            .filter(|_| rates.allow(flooder, &lobby, NOW))
            .count();
        assert_eq!(allowed, 50);
        assert!(
            rates.allow(other, &lobby, NOW),
            "others are not limited by it"
        );
        assert!(rates.allow(flooder, &dev, NOW), "nor its other rooms");
        let later = NOW + 2_000;
        let more = (0..1000)
            .filter(|_| rates.allow(flooder, &lobby, later))
            .count();
        assert_eq!(more, 50, "two seconds at 25 a second");
        assert!(
            !rates.allow(flooder, &lobby, NOW),
            "a clock going back gives nothing"
        );
    }

    #[test]
    fn a_truncated_envelope_is_rejected_and_an_unknown_version_ignored() {
        let author = Keypair::generate_ed25519();
        let bytes = chat(&author, "lobby", NOW).as_bytes().to_vec();
        let c = check("lobby", PeerId::random());
        let judge = |b: &[u8]| live(&c, Envelope::open(b));
        assert_eq!(judge(&bytes[..bytes.len() - 10]), Verdict::Reject);
        // A later version may be valid to nodes that know it: not held against the sender.
        assert_eq!(judge(b"\xffa later version"), Verdict::Ignore);
    }

    #[test]
    fn a_fetched_page_keeps_only_genuine_envelopes_that_were_asked_for_once_each() {
        let author = Keypair::generate_ed25519();
        let room: RoomName = "lobby".parse().unwrap();
        let asked_for = chat(&author, "lobby", NOW);
        let not_asked = chat(&author, "lobby", NOW + 1);
        let other_room = chat(&author, "other", NOW + 2);
        let mut altered = asked_for.as_bytes().to_vec();
        let last = altered.len() - 1;
        altered[last] ^= 1;
        let asked = [message_ref(&asked_for), message_ref(&other_room)];
        let page = vec![
            asked_for.as_bytes().to_vec(),
            asked_for.as_bytes().to_vec(),
            not_asked.as_bytes().to_vec(),
            other_room.as_bytes().to_vec(),
            altered,
        ];
        let (genuine, rejected) = fetched_page(&room, &asked, &page, None);
        assert_eq!(genuine, vec![asked_for]);
        assert_eq!(rejected, 4);
    }
}
