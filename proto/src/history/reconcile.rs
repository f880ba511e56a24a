//! Range-based set reconciliation of a room's messages: the negentropy
//! protocol (the `negentropy` crate, protocol version `0x61`), so that two
//! members learn which messages the other holds that they lack in a few
//! rounds, however many messages they hold and wherever the gaps are.
//!
//! Negentropy reconciles sets of items, each a timestamp and a 32-byte id,
//! in (timestamp, id) order. A message is the item whose timestamp is its
//! payload's `ts` and whose id is [`item_id`]: the `ts` again (8 bytes,
//! big-endian), its 16-byte message id, and 8 zero bytes. Carrying the `ts`
//! inside the id lets the asker fetch what it learns it lacks by (ts, id),
//! which is how the answerer's store finds it; the zeros let the asker drop
//! ids that name no message.
//!
//! [`Items`] is a room's set, sorted; it is what both sides compute
//! fingerprints over. The answerer keeps no state between rounds, and nor
//! does the asker (each round is computed afresh over its current set), so a
//! round costs one pass over the set at most and a set that changes between
//! rounds still converges.

use negentropy::{Bound, Id, Item, Negentropy, NegentropyStorageBase};

use super::{MAX_RECONCILE_BYTES, MessageRef};
use crate::contract::MESSAGE_ID_BYTES;

/// Bytes of an item id (negentropy's id size).
pub const ITEM_ID_BYTES: usize = negentropy::ID_SIZE;
/// The negentropy protocol version this speaks (first byte of every message).
pub const NEGENTROPY_VERSION: u8 = negentropy::PROTOCOL_VERSION as u8;

/// Why a reconciliation message could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("reconciliation failed: {0}")]
pub struct ReconcileError(String);

impl From<negentropy::Error> for ReconcileError {
    fn from(e: negentropy::Error) -> Self {
        ReconcileError(e.to_string())
    }
}

/// The negentropy id of a message: `ts` (8, big-endian) · message id (16) · 8 zero bytes.
pub fn item_id(r: &MessageRef) -> [u8; ITEM_ID_BYTES] {
    let mut id = [0u8; ITEM_ID_BYTES];
    id[..8].copy_from_slice(&r.ts.to_be_bytes());
    id[8..8 + MESSAGE_ID_BYTES].copy_from_slice(&r.id);
    id
}

/// The message an item id names, if it is one [`item_id`] could give.
pub fn message_ref(id: &[u8; ITEM_ID_BYTES]) -> Option<MessageRef> {
    let (ts, rest) = id.split_first_chunk::<8>()?;
    let (message, zeros) = rest.split_first_chunk::<MESSAGE_ID_BYTES>()?;
    zeros.iter().all(|b| *b == 0).then(|| MessageRef {
        ts: u64::from_be_bytes(*ts),
        id: *message,
    })
}

/// How many ranges negentropy splits a range into (a range of fewer than
/// twice as many items is sent as a list of ids).
const fn negentropy_buckets() -> usize {
    16
}

fn item(r: &MessageRef) -> Item {
    Item::with_timestamp_and_id(r.ts, Id::from_byte_array(item_id(r)))
}

/// What the asker learnt from one round.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Step {
    /// The next message to send, or `None` when reconciliation is over.
    pub next: Option<Vec<u8>>,
    /// Messages the other side holds and this one lacks, in (ts, id) order.
    pub need: Vec<MessageRef>,
    /// How many this side holds that the other lacks (it pulls them itself).
    pub have: usize,
}

/// A room's messages, as reconciliation sees them: sorted by (ts, id), each once.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Items {
    items: Vec<Item>,
}

impl Items {
    pub fn new() -> Self {
        Self::default()
    }

    /// A set of these messages (in any order, repeats counted once).
    pub fn from_refs(refs: impl IntoIterator<Item = MessageRef>) -> Self {
        let mut items: Vec<Item> = refs.into_iter().map(|r| item(&r)).collect();
        items.sort_unstable();
        items.dedup();
        Self { items }
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Adds a message; false if it was there already.
    pub fn insert(&mut self, r: MessageRef) -> bool {
        let item = item(&r);
        match self.items.binary_search(&item) {
            Ok(_) => false,
            Err(at) => {
                self.items.insert(at, item);
                true
            }
        }
    }

    /// Removes a message; false if it was not there.
    pub fn remove(&mut self, r: &MessageRef) -> bool {
        match self.items.binary_search(&item(r)) {
            Ok(at) => {
                self.items.remove(at);
                true
            }
            Err(_) => false,
        }
    }

    /// Whether the set holds this message.
    pub fn contains(&self, r: &MessageRef) -> bool {
        self.items.binary_search(&item(r)).is_ok()
    }

    /// The messages, oldest first.
    pub fn refs(&self) -> impl DoubleEndedIterator<Item = MessageRef> + '_ {
        self.items
            .iter()
            .filter_map(|i| message_ref(i.id.as_bytes()))
    }

    /// The asker's first message. A set too small to split is sent as its
    /// list of ids (negentropy's own first message); a larger one as one
    /// range, the whole set, with its fingerprint: 20 bytes, and the whole
    /// exchange when both sides hold the same. (Negentropy would send 16
    /// ranges; this is the same message format with one range, answered by
    /// the same code, at the cost of half a round when the sets differ.)
    pub fn initiate(&self) -> Result<Vec<u8>, ReconcileError> {
        if self.items.len() < 2 * negentropy_buckets() {
            let mut n = Negentropy::borrowed(self, MAX_RECONCILE_BYTES as u64)?;
            return Ok(n.initiate()?);
        }
        let fingerprint = self.fingerprint(0, self.items.len())?.to_bytes();
        // Version, the upper bound "infinity" (timestamp 0 in negentropy's
        // delta encoding, no id prefix), mode 1 (fingerprint), the fingerprint.
        let mut message = vec![NEGENTROPY_VERSION, 0, 0, 1];
        message.extend_from_slice(&fingerprint);
        Ok(message)
    }

    /// The answerer's reply to an asker's message.
    pub fn answer(&self, message: &[u8]) -> Result<Vec<u8>, ReconcileError> {
        let mut n = Negentropy::borrowed(self, MAX_RECONCILE_BYTES as u64)?;
        Ok(n.reconcile(message)?)
    }

    /// The asker's reading of an answer: what it lacks, and what to send next.
    pub fn step(&self, answer: &[u8]) -> Result<Step, ReconcileError> {
        let mut n = Negentropy::borrowed(self, MAX_RECONCILE_BYTES as u64)?;
        n.set_initiator();
        let (mut have, mut need) = (Vec::new(), Vec::new());
        let next = n.reconcile_with_ids(answer, &mut have, &mut need)?;
        let mut need: Vec<MessageRef> = need
            .iter()
            .filter_map(|id| message_ref(id.as_bytes()))
            .filter(|r| !self.contains(r))
            .collect();
        need.sort_unstable();
        need.dedup();
        Ok(Step {
            next,
            need,
            have: have.len(),
        })
    }
}

impl NegentropyStorageBase for Items {
    fn size(&self) -> Result<usize, negentropy::Error> {
        Ok(self.items.len())
    }

    fn get_item(&self, i: usize) -> Result<Option<Item>, negentropy::Error> {
        Ok(self.items.get(i).copied())
    }

    fn iterate(
        &self,
        begin: usize,
        end: usize,
        cb: &mut dyn FnMut(Item, usize) -> Result<bool, negentropy::Error>,
    ) -> Result<(), negentropy::Error> {
        let Some(range) = self.items.get(begin..end) else {
            return Err(negentropy::Error::BadRange);
        };
        for (i, item) in range.iter().enumerate() {
            if !cb(*item, begin + i)? {
                break;
            }
        }
        Ok(())
    }

    fn find_lower_bound(&self, first: usize, last: usize, value: &Bound) -> usize {
        match self.items.get(first..last) {
            Some(range) => first + range.partition_point(|i| *i < value.item),
            None => first,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(ts: u64, n: u32) -> MessageRef {
        let mut id = [0u8; 16];
        id[..4].copy_from_slice(&n.to_be_bytes());
        id[15] = 1;
        MessageRef { ts, id }
    }

    /// Runs a whole reconciliation; returns what `asker` lacks, and the
    /// rounds and bytes it took (both ways).
    fn reconcile(asker: &Items, answerer: &Items) -> (Vec<MessageRef>, usize, usize) {
        let mut message = asker.initiate().unwrap();
        let (mut rounds, mut bytes, mut need) = (0, 0, Vec::new());
        loop {
            rounds += 1;
            bytes += message.len();
            let answer = answerer.answer(&message).unwrap();
            bytes += answer.len();
            let step = asker.step(&answer).unwrap();
            need.extend(step.need);
            match step.next {
                Some(next) => message = next,
                None => break,
            }
            assert!(rounds < 100, "does not converge");
        }
        need.sort();
        (need, rounds, bytes)
    }

    #[test]
    fn an_item_id_carries_the_timestamp_and_names_its_message() {
        let m = r(1_700_000_000_000, 7);
        let id = item_id(&m);
        assert_eq!(&id[..8], &m.ts.to_be_bytes());
        assert_eq!(message_ref(&id), Some(m));
        let mut junk = id;
        junk[31] = 1;
        assert_eq!(message_ref(&junk), None, "the tail must be zero");
    }

    #[test]
    fn identical_sets_agree_in_one_round_and_a_few_bytes() {
        let set = Items::from_refs((0..10_000).map(|i| r(1_000 + i, i as u32)));
        let (need, rounds, bytes) = reconcile(&set, &set.clone());
        assert!(need.is_empty());
        assert_eq!(rounds, 1);
        assert!(bytes <= 100, "{bytes} bytes");
    }

    #[test]
    fn sets_that_differ_by_ten_scattered_messages_agree_in_a_few_rounds() {
        let all: Vec<MessageRef> = (0..10_000).map(|i| r(1_000 + i * 7, i as u32)).collect();
        let missing: Vec<MessageRef> = (0..10).map(|k| all[k * 997 + 3]).collect();
        let asker = Items::from_refs(all.iter().copied().filter(|m| !missing.contains(m)));
        let answerer = Items::from_refs(all.iter().copied());
        let (need, rounds, _) = reconcile(&asker, &answerer);
        let mut expected = missing.clone();
        expected.sort();
        assert_eq!(need, expected);
        assert!(rounds <= 3, "{rounds} rounds");
    }

    #[test]
    fn a_large_set_reaches_an_empty_one_in_frames_of_bounded_size() {
        let answerer = Items::from_refs((0..20_000).map(|i| r(5 + i, i as u32)));
        let asker = Items::new();
        let mut message = asker.initiate().unwrap();
        let mut need = Vec::new();
        loop {
            let answer = answerer.answer(&message).unwrap();
            assert!(answer.len() <= MAX_RECONCILE_BYTES);
            let step = asker.step(&answer).unwrap();
            need.extend(step.need);
            match step.next {
                Some(next) => {
                    assert!(next.len() <= MAX_RECONCILE_BYTES);
                    message = next;
                }
                None => break,
            }
        }
        assert_eq!(need.len(), 20_000);
    }

    #[test]
    fn what_one_side_holds_alone_counts_as_had_not_needed() {
        let answerer = Items::from_refs((0..50).map(|i| r(i, i as u32)));
        let asker = Items::from_refs((0..60).map(|i| r(i, i as u32)));
        let mut message = asker.initiate().unwrap();
        let mut have = 0;
        loop {
            let step = asker.step(&answerer.answer(&message).unwrap()).unwrap();
            assert!(step.need.is_empty());
            have += step.have;
            match step.next {
                Some(next) => message = next,
                None => break,
            }
        }
        assert_eq!(have, 10);
    }

    #[test]
    fn insert_and_remove_keep_the_set_sorted_and_unique() {
        let mut set = Items::new();
        assert!(set.insert(r(5, 1)));
        assert!(set.insert(r(3, 2)));
        assert!(!set.insert(r(5, 1)));
        assert_eq!(set.refs().collect::<Vec<_>>(), vec![r(3, 2), r(5, 1)]);
        assert!(set.remove(&r(3, 2)));
        assert!(!set.remove(&r(3, 2)));
        assert_eq!(set.len(), 1);
    }

    #[test]
    fn arbitrary_messages_never_panic_either_side() {
        let set = Items::from_refs((0..100).map(|i| r(i * 3, i as u32)));
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for len in 0..3000 {
            let mut bytes: Vec<u8> = (0..len % 200)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    (x % 7) as u8
                })
                .collect();
            if let Some(b) = bytes.first_mut() {
                *b = NEGENTROPY_VERSION;
            }
            let _ = set.answer(&bytes);
            let _ = set.step(&bytes);
        }
    }
}
