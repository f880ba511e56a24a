//! The catch-up protocol, `/palaver/history/1`: how two members of a room find
//! out which messages the other lacks and hand them over.
//!
//! The asking side pulls in two steps, newest first:
//! 1. [`Request::Inventory`]: "which messages of this room do you hold, before
//!    this point?" The answer is a page of (timestamp, id) references.
//! 2. [`Request::Fetch`]: "send me these ones", the ids it lacks. The answer is
//!    their signed envelopes, each verified by the asker as if gossiped.
//!
//! Both sides ask, so each ends up with what the other had. Every page is
//! bounded in count and bytes, so no peer can make another read or send
//! unbounded data. The encoding is versioned and strict, like [`crate::wire`].

use crate::contract::MESSAGE_ID_BYTES;
use crate::envelope::{MAX_ENVELOPE_BYTES, MessageId};
use crate::names::{ROOM_MAX_LEN, RoomName};
use crate::wire::{Reader, WireError};

/// The protocol name negotiated on the stream
/// ([`crate::contract::HISTORY_PROTOCOL`]).
pub const PROTOCOL: &str = crate::contract::HISTORY_PROTOCOL;
/// The version this code writes, first byte of every request and response.
pub const VERSION: u8 = 1;
/// Most references in one inventory page.
pub const MAX_INVENTORY: usize = 256;
/// Most envelopes asked for (and sent) in one fetch.
pub const MAX_FETCH: usize = 32;
/// Largest valid request: a fetch of [`MAX_FETCH`] references.
pub const MAX_REQUEST_BYTES: usize = 2 + 1 + ROOM_MAX_LEN + 2 + MAX_FETCH * REF_BYTES;
/// Encoded size of a [`MessageRef`].
const REF_BYTES: usize = 8 + MESSAGE_ID_BYTES;
/// Largest valid response: [`MAX_FETCH`] envelopes of the largest size.
pub const MAX_RESPONSE_BYTES: usize = 2 + 2 + MAX_FETCH * (4 + MAX_ENVELOPE_BYTES);

/// One message as an inventory lists it: its author's timestamp and its id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MessageRef {
    pub ts: u64,
    pub id: MessageId,
}

/// What one member asks another.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// The references of the newest messages held in `room` older than
    /// `before` (all when `None`), newest first, at most `limit`.
    Inventory {
        room: RoomName,
        before: Option<MessageRef>,
        limit: u16,
    },
    /// The envelopes of these messages (as an inventory listed them), from `room`.
    Fetch {
        room: RoomName,
        refs: Vec<MessageRef>,
    },
}

/// Why a request was not answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The peer is answering too many requests; ask again later.
    Busy,
    /// The peer cannot read its history right now.
    Unavailable,
}

/// The answer to a [`Request`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    /// Newest first; `more` when older ones exist beyond this page.
    Inventory {
        refs: Vec<MessageRef>,
        more: bool,
    },
    /// Signed envelopes, as stored (those not held are left out).
    Envelopes(Vec<Vec<u8>>),
    Refused(Refusal),
}

impl Request {
    pub fn room(&self) -> &RoomName {
        match self {
            Request::Inventory { room, .. } | Request::Fetch { room, .. } => room,
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        out.push(VERSION);
        let room = self.room().as_str().as_bytes();
        match self {
            Request::Inventory { before, limit, .. } => {
                out.push(1);
                // Fits: the newtype bounds room names to 64 bytes.
                out.push(room.len() as u8);
                out.extend_from_slice(room);
                match before {
                    Some(r) => {
                        out.push(1);
                        put_ref(&mut out, r);
                    }
                    None => out.push(0),
                }
                out.extend_from_slice(&limit.to_be_bytes());
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
            1 => {
                let before = match r.u8()? {
                    0 => None,
                    1 => Some(get_ref(&mut r)?),
                    other => return Err(WireError::UnknownKind(other)),
                };
                let limit = r.u16()?;
                Request::Inventory {
                    room,
                    before,
                    limit,
                }
            }
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
            Response::Inventory { refs, more } => {
                out.push(1);
                out.push(u8::from(*more));
                let refs = &refs[..refs.len().min(MAX_INVENTORY)];
                out.extend_from_slice(&(refs.len() as u16).to_be_bytes());
                for r in refs {
                    put_ref(&mut out, r);
                }
            }
            Response::Envelopes(envelopes) => {
                out.push(2);
                let envelopes: Vec<&Vec<u8>> = envelopes
                    .iter()
                    .filter(|e| e.len() <= MAX_ENVELOPE_BYTES)
                    .take(MAX_FETCH)
                    .collect();
                out.extend_from_slice(&(envelopes.len() as u16).to_be_bytes());
                for e in envelopes {
                    out.extend_from_slice(&(e.len() as u32).to_be_bytes());
                    out.extend_from_slice(e);
                }
            }
            Response::Refused(why) => {
                out.push(3);
                out.push(match why {
                    Refusal::Busy => 1,
                    Refusal::Unavailable => 2,
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
            1 => {
                let more = match r.u8()? {
                    0 => false,
                    1 => true,
                    other => return Err(WireError::UnknownKind(other)),
                };
                let count = count(&mut r, "references", MAX_INVENTORY)?;
                let refs = (0..count)
                    .map(|_| get_ref(&mut r))
                    .collect::<Result<_, _>>()?;
                Response::Inventory { refs, more }
            }
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
                other => return Err(WireError::UnknownKind(other)),
            }),
            other => return Err(WireError::UnknownKind(other)),
        };
        end(&r)?;
        Ok(response)
    }
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

    fn room() -> RoomName {
        "lobby".parse().unwrap()
    }

    #[test]
    fn every_request_and_response_round_trips() {
        let requests = [
            Request::Inventory {
                room: room(),
                before: None,
                limit: 256,
            },
            Request::Inventory {
                room: room(),
                before: Some(MessageRef {
                    ts: 17,
                    id: [7; 16],
                }),
                limit: 3,
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
            Response::Inventory {
                refs: vec![MessageRef { ts: 9, id: [3; 16] }],
                more: true,
            },
            Response::Envelopes(vec![vec![1, 2, 3], vec![]]),
            Response::Refused(Refusal::Busy),
            Response::Refused(Refusal::Unavailable),
        ];
        for r in responses {
            assert_eq!(Response::decode(&r.encode()).unwrap(), r);
        }
    }

    #[test]
    fn oversized_pages_are_refused_before_they_are_read() {
        let mut fetch = vec![VERSION, 2, 5];
        fetch.extend_from_slice(b"lobby");
        fetch.extend_from_slice(&((MAX_FETCH + 1) as u16).to_be_bytes());
        fetch.extend(std::iter::repeat_n(0u8, (MAX_FETCH + 1) * REF_BYTES));
        assert!(Request::decode(&fetch).is_err());
        let mut inventory = vec![VERSION, 1, 0];
        inventory.extend_from_slice(&((MAX_INVENTORY + 1) as u16).to_be_bytes());
        assert!(matches!(
            Response::decode(&inventory),
            Err(WireError::TooMany { .. })
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
        let mut newer = good;
        newer[0] = 2;
        assert_eq!(Request::decode(&newer), Err(WireError::UnknownVersion(2)));
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
