//! The catch-up protocol, `/palaver/history/2`: how two members of a room find
//! out which messages the other lacks and hand them over.
//!
//! The asking side pulls in two kinds of steps:
//! 1. [`Request::Reconcile`]: a round of range-based set reconciliation (the
//!    negentropy protocol, see [`reconcile`]) over the room's messages,
//!    ordered by (timestamp, id). Two sets that differ by a few messages
//!    agree in a few rounds and a few KB, whatever the shape of the gaps;
//!    each round tells the asker some of the messages it lacks.
//! 2. [`Request::Fetch`]: "send me these ones". The answer is their signed
//!    envelopes, each verified by the asker as if gossiped.
//!
//! Both sides ask, so each ends up with what the other had. Every message is
//! bounded in count and bytes, so no peer can make another read or send
//! unbounded data. The encoding is versioned and strict, like [`crate::wire`].

pub mod reconcile;

use crate::contract::MESSAGE_ID_BYTES;
use crate::envelope::{MAX_ENVELOPE_BYTES, MessageId};
use crate::names::{ROOM_MAX_LEN, RoomName};
use crate::wire::{Reader, WireError};

/// The protocol name negotiated on the stream
/// ([`crate::contract::HISTORY_PROTOCOL`]).
pub const PROTOCOL: &str = crate::contract::HISTORY_PROTOCOL;
/// The version this code writes, first byte of every request and response.
pub const VERSION: u8 = 2;
/// Largest reconciliation message, either way (negentropy's frame size limit).
pub const MAX_RECONCILE_BYTES: usize = 60_000;
/// Most envelopes asked for (and sent) in one fetch.
pub const MAX_FETCH: usize = 256;
/// Most bytes of envelopes (each with its 4-byte length) in one fetch
/// answer; the answerer stops before it would pass this.
pub const MAX_FETCH_BYTES: usize = 262_144;
/// Largest valid request: a reconciliation message of the largest size
/// (larger than a fetch of [`MAX_FETCH`] references).
pub const MAX_REQUEST_BYTES: usize = 2 + 1 + ROOM_MAX_LEN + 2 + MAX_RECONCILE_BYTES;
/// Largest valid response: a fetch answer of [`MAX_FETCH_BYTES`].
pub const MAX_RESPONSE_BYTES: usize = 2 + 2 + MAX_FETCH_BYTES;

/// One message as catch-up names it: its author's timestamp and its id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MessageRef {
    pub ts: u64,
    pub id: MessageId,
}

/// What one member asks another.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// One round of reconciliation of `room`: a negentropy message.
    Reconcile { room: RoomName, message: Vec<u8> },
    /// The envelopes of these messages, from `room`.
    Fetch {
        room: RoomName,
        refs: Vec<MessageRef>,
    },
}

/// Why a request was not answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The peer is answering too many requests, or this asker used up its
    /// budget; ask again later.
    Busy,
    /// The peer cannot read its history right now, or is not in the room.
    Unavailable,
    /// The peer does not (yet) count the asker as a member of the room; ask
    /// again once it has heard from the asker.
    NotMember,
}

/// The answer to a [`Request`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    /// The answer to a reconciliation round: a negentropy message.
    Reconcile(Vec<u8>),
    /// Signed envelopes, as stored (those not held are left out, and those
    /// past [`MAX_FETCH_BYTES`]).
    Envelopes(Vec<Vec<u8>>),
    Refused(Refusal),
}

impl Request {
    pub fn room(&self) -> &RoomName {
        match self {
            Request::Reconcile { room, .. } | Request::Fetch { room, .. } => room,
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        out.push(VERSION);
        let room = self.room().as_str().as_bytes();
        match self {
            Request::Reconcile { message, .. } => {
                out.push(1);
                // Fits: the newtype bounds room names to 64 bytes.
                out.push(room.len() as u8);
                out.extend_from_slice(room);
                let message = &message[..message.len().min(MAX_RECONCILE_BYTES)];
                out.extend_from_slice(&(message.len() as u16).to_be_bytes());
                out.extend_from_slice(message);
            }
            Request::Fetch { refs, .. } => {
                out.push(2);
                out.push(room.len() as u8);
                out.extend_from_slice(room);
                let refs = &refs[..refs.len().min(MAX_FETCH)];
                out.extend_from_slice(&(refs.len() as u16).to_be_bytes());
                for r in refs {
                    put_ref(&mut out, r);
                }
            }
        }
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, WireError> {
        if bytes.len() > MAX_REQUEST_BYTES {
            return Err(WireError::TooLong(bytes.len()));
        }
        let mut r = Reader(bytes);
        version(&mut r)?;
        let kind = r.u8()?;
        let room = r.name("room")?;
        let request = match kind {
            1 => Request::Reconcile {
                room,
                message: reconcile_message(&mut r)?,
            },
            2 => {
                let count = count(&mut r, "references", MAX_FETCH)?;
                let refs = (0..count)
                    .map(|_| get_ref(&mut r))
                    .collect::<Result<_, _>>()?;
                Request::Fetch { room, refs }
            }
            other => return Err(WireError::UnknownKind(other)),
        };
        end(&r)?;
        Ok(request)
    }
}

impl Response {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256);
        out.push(VERSION);
        match self {
            Response::Reconcile(message) => {
                out.push(1);
                let message = &message[..message.len().min(MAX_RECONCILE_BYTES)];
                out.extend_from_slice(&(message.len() as u16).to_be_bytes());
                out.extend_from_slice(message);
            }
            Response::Envelopes(envelopes) => {
                out.push(2);
                let mut budget = MAX_FETCH_BYTES;
                let mut kept: Vec<&Vec<u8>> = Vec::new();
                for e in envelopes.iter().filter(|e| e.len() <= MAX_ENVELOPE_BYTES) {
                    let Some(left) = budget.checked_sub(4 + e.len()) else {
                        break;
                    };
                    if kept.len() == MAX_FETCH {
                        break;
                    }
                    budget = left;
                    kept.push(e);
                }
                out.extend_from_slice(&(kept.len() as u16).to_be_bytes());
                for e in kept {
                    out.extend_from_slice(&(e.len() as u32).to_be_bytes());
                    out.extend_from_slice(e);
                }
            }
            Response::Refused(why) => {
                out.push(3);
                out.push(match why {
                    Refusal::Busy => 1,
                    Refusal::Unavailable => 2,
                    Refusal::NotMember => 3,
                });
            }
        }
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, WireError> {
        if bytes.len() > MAX_RESPONSE_BYTES {
            return Err(WireError::TooLong(bytes.len()));
        }
        let mut r = Reader(bytes);
        version(&mut r)?;
        let response = match r.u8()? {
            1 => Response::Reconcile(reconcile_message(&mut r)?),
            2 => {
                let count = count(&mut r, "envelopes", MAX_FETCH)?;
                let mut envelopes = Vec::with_capacity(count);
                for _ in 0..count {
                    let b = r.take(4)?;
                    let len = u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize;
                    if len > MAX_ENVELOPE_BYTES {
                        return Err(WireError::TooLong(len));
                    }
                    envelopes.push(r.take(len)?.to_vec());
                }
                Response::Envelopes(envelopes)
            }
            3 => Response::Refused(match r.u8()? {
                1 => Refusal::Busy,
                2 => Refusal::Unavailable,
                3 => Refusal::NotMember,
                other => return Err(WireError::UnknownKind(other)),
            }),
            other => return Err(WireError::UnknownKind(other)),
        };
        end(&r)?;
        Ok(response)
    }
}

fn reconcile_message(r: &mut Reader<'_>) -> Result<Vec<u8>, WireError> {
    let len = usize::from(r.u16()?);
    if len > MAX_RECONCILE_BYTES {
        return Err(WireError::TooLong(len));
    }
    Ok(r.take(len)?.to_vec())
}

fn version(r: &mut Reader<'_>) -> Result<(), WireError> {
    match r.u8()? {
        VERSION => Ok(()),
        other => Err(WireError::UnknownVersion(other)),
    }
}

fn count(r: &mut Reader<'_>, what: &'static str, max: usize) -> Result<usize, WireError> {
    let count = usize::from(r.u16()?);
    if count > max {
        return Err(WireError::TooMany { what, count, max });
    }
    Ok(count)
}

fn end(r: &Reader<'_>) -> Result<(), WireError> {
    match r.0.len() {
        0 => Ok(()),
        n => Err(WireError::TrailingBytes(n)),
    }
}

fn id(r: &mut Reader<'_>) -> Result<MessageId, WireError> {
    let mut id = [0u8; MESSAGE_ID_BYTES];
    id.copy_from_slice(r.take(MESSAGE_ID_BYTES)?);
    Ok(id)
}

fn put_ref(out: &mut Vec<u8>, r: &MessageRef) {
    out.extend_from_slice(&r.ts.to_be_bytes());
    out.extend_from_slice(&r.id);
}

fn get_ref(r: &mut Reader<'_>) -> Result<MessageRef, WireError> {
    let ts = r.u64()?;
    let id = id(r)?;
    Ok(MessageRef { ts, id })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Encoded size of a [`MessageRef`].
    const REF_BYTES: usize = 8 + MESSAGE_ID_BYTES;

    fn room() -> RoomName {
        "lobby".parse().unwrap()
    }

    #[test]
    fn every_request_and_response_round_trips() {
        let requests = [
            Request::Reconcile {
                room: room(),
                message: vec![0x61, 0, 0],
            },
            Request::Reconcile {
                room: room(),
                message: vec![],
            },
            Request::Fetch {
                room: room(),
                refs: vec![
                    MessageRef { ts: 1, id: [1; 16] },
                    MessageRef { ts: 2, id: [2; 16] },
                ],
            },
        ];
        for r in requests {
            assert_eq!(Request::decode(&r.encode()).unwrap(), r);
        }
        let responses = [
            Response::Reconcile(vec![0x61]),
            Response::Envelopes(vec![vec![1, 2, 3], vec![]]),
            Response::Refused(Refusal::Busy),
            Response::Refused(Refusal::Unavailable),
            Response::Refused(Refusal::NotMember),
        ];
        for r in responses {
            assert_eq!(Response::decode(&r.encode()).unwrap(), r);
        }
    }

    #[test]
    fn the_largest_messages_fit_their_limits() {
        let room: RoomName = "r".repeat(ROOM_MAX_LEN).parse().unwrap();
        let reconcile = Request::Reconcile {
            room: room.clone(),
            message: vec![7; MAX_RECONCILE_BYTES],
        }
        .encode();
        assert_eq!(reconcile.len(), MAX_REQUEST_BYTES);
        let fetch = Request::Fetch {
            room,
            refs: vec![MessageRef { ts: 1, id: [1; 16] }; MAX_FETCH],
        }
        .encode();
        assert!(fetch.len() <= MAX_REQUEST_BYTES);
        // An answer stops before its byte budget: what is left out is asked again.
        let big = vec![vec![9u8; MAX_ENVELOPE_BYTES]; MAX_FETCH];
        let encoded = Response::Envelopes(big).encode();
        assert!(encoded.len() <= MAX_RESPONSE_BYTES);
        let Ok(Response::Envelopes(kept)) = Response::decode(&encoded) else {
            panic!("does not decode");
        };
        assert_eq!(kept.len(), MAX_FETCH_BYTES / (4 + MAX_ENVELOPE_BYTES));
    }

    #[test]
    fn oversized_pages_are_refused_before_they_are_read() {
        let mut fetch = vec![VERSION, 2, 5];
        fetch.extend_from_slice(b"lobby");
        fetch.extend_from_slice(&((MAX_FETCH + 1) as u16).to_be_bytes());
        fetch.extend(std::iter::repeat_n(0u8, (MAX_FETCH + 1) * REF_BYTES));
        assert!(Request::decode(&fetch).is_err());
        let mut reconcile = vec![VERSION, 1];
        reconcile.extend_from_slice(&((MAX_RECONCILE_BYTES + 1) as u16).to_be_bytes());
        assert!(matches!(
            Response::decode(&reconcile),
            Err(WireError::TooLong(_))
        ));
        let mut envelopes = vec![VERSION, 2, 0, 1];
        envelopes.extend_from_slice(&u32::MAX.to_be_bytes());
        assert!(matches!(
            Response::decode(&envelopes),
            Err(WireError::TooLong(_))
        ));
    }

    #[test]
    fn truncated_or_trailing_bytes_and_unknown_versions_are_refused() {
        let good = Request::Fetch {
            room: room(),
            refs: vec![MessageRef { ts: 1, id: [1; 16] }],
        }
        .encode();
        for n in 0..good.len() {
            assert!(Request::decode(&good[..n]).is_err(), "prefix of {n} bytes");
        }
        let mut long = good.clone();
        long.push(0);
        assert!(Request::decode(&long).is_err());
        let mut older = good;
        older[0] = 1;
        assert_eq!(Request::decode(&older), Err(WireError::UnknownVersion(1)));
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for len in 0..2000 {
            let bytes: Vec<u8> = (0..len % 300)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    (x % 4) as u8
                })
                .collect();
            let _ = Request::decode(&bytes);
            let _ = Response::decode(&bytes);
        }
    }
}
