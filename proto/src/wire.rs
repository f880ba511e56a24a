//! The versioned binary encoding of what a node publishes to a room's
//! gossipsub topic.
//!
//! Layout of version 1 (integers big-endian):
//!
//! ```text
//! version u8 = 1 | kind u8 | ts u64 | session u64 | seq u64
//! | room_len u8 | room | nick_len u8 | nick | (chat only: text_len u16 | text)
//! ```
//!
//! `session` is new each time the author joins the room (it grows: unix
//! milliseconds at start, plus one per join) and `seq` counts the payloads the
//! author has published to the room in that session, so a receiver can
//! restore each author's order and refuse replays. Decoding is strict: every field is
//! validated, and trailing bytes or a non-chat payload with text are refused,
//! so each payload has exactly one encoding.

use crate::names::{NICK_MAX_CHARS, NameError, Nick, ROOM_MAX_LEN, RoomName, TEXT_MAX_BYTES, Text};

/// The version this code writes.
pub const VERSION: u8 = 1;
/// Largest payload a valid version-1 encoding can have.
pub const MAX_PAYLOAD_BYTES: usize =
    2 + 3 * 8 + 1 + ROOM_MAX_LEN + 1 + 4 * NICK_MAX_CHARS + 2 + TEXT_MAX_BYTES;

/// What a payload says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    /// A chat message.
    Chat(Text),
    /// The author joined the room.
    Join,
    /// The author left the room.
    Leave,
    /// The author's node is shutting down.
    Quit,
    /// The author is (still) in the room: a periodic beacon.
    Presence,
}

impl Body {
    fn kind(&self) -> u8 {
        match self {
            Body::Chat(_) => 1,
            Body::Join => 2,
            Body::Leave => 3,
            Body::Quit => 4,
            Body::Presence => 5,
        }
    }
}

/// One published payload. The author is not part of it: the signed
/// [`crate::envelope::Envelope`] that carries it names the author (gossip
/// itself is anonymous).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payload {
    pub room: RoomName,
    pub nick: Nick,
    /// The author's clock, unix milliseconds.
    pub ts: u64,
    pub session: u64,
    pub seq: u64,
    pub body: Body,
}

/// Why bytes are not a payload.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// Written by a newer version: not wrong, just not understood here.
    #[error("unknown payload version {0}")]
    UnknownVersion(u8),
    #[error("payload is {0} bytes long, more than any valid payload")]
    TooLong(usize),
    #[error("payload ends early")]
    Truncated,
    #[error("payload has {0} bytes after its end")]
    TrailingBytes(usize),
    #[error("unknown payload kind {0}")]
    UnknownKind(u8),
    #[error("invalid {field}: {error}")]
    Invalid {
        field: &'static str,
        error: NameError,
    },
    #[error("{0} is not UTF-8")]
    NotUtf8(&'static str),
    #[error("{count} {what}, more than the {max} allowed")]
    TooMany {
        what: &'static str,
        count: usize,
        max: usize,
    },
}

impl WireError {
    /// Whether the sender is at fault (as opposed to merely newer than us).
    pub fn is_malformed(&self) -> bool {
        !matches!(self, WireError::UnknownVersion(_))
    }
}

impl Payload {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        out.push(VERSION);
        out.push(self.body.kind());
        out.extend_from_slice(&self.ts.to_be_bytes());
        out.extend_from_slice(&self.session.to_be_bytes());
        out.extend_from_slice(&self.seq.to_be_bytes());
        // Lengths fit: the newtypes bound room to 64 bytes, nick to 128, text to 4096.
        out.push(self.room.as_str().len() as u8);
        out.extend_from_slice(self.room.as_str().as_bytes());
        out.push(self.nick.as_str().len() as u8);
        out.extend_from_slice(self.nick.as_str().as_bytes());
        if let Body::Chat(text) = &self.body {
            out.extend_from_slice(&(text.as_str().len() as u16).to_be_bytes());
            out.extend_from_slice(text.as_str().as_bytes());
        }
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, WireError> {
        let mut r = Reader(bytes);
        let version = r.u8()?;
        if version != VERSION {
            return Err(WireError::UnknownVersion(version));
        }
        if bytes.len() > MAX_PAYLOAD_BYTES {
            return Err(WireError::TooLong(bytes.len()));
        }
        let kind = r.u8()?;
        let ts = r.u64()?;
        let session = r.u64()?;
        let seq = r.u64()?;
        let room = r.name("room")?;
        let nick = r.wire_nick()?;
        let body = match kind {
            1 => {
                let len = usize::from(r.u16()?);
                let text =
                    Text::from_wire(r.str(len, "text")?).map_err(|error| WireError::Invalid {
                        field: "text",
                        error,
                    })?;
                Body::Chat(text)
            }
            2 => Body::Join,
            3 => Body::Leave,
            4 => Body::Quit,
            5 => Body::Presence,
            other => return Err(WireError::UnknownKind(other)),
        };
        if !r.0.is_empty() {
            return Err(WireError::TrailingBytes(r.0.len()));
        }
        Ok(Payload {
            room,
            nick,
            ts,
            session,
            seq,
            body,
        })
    }
}

pub(crate) struct Reader<'a>(pub(crate) &'a [u8]);

impl<'a> Reader<'a> {
    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        if self.0.len() < n {
            return Err(WireError::Truncated);
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, WireError> {
        Ok(self.take(1)?[0])
    }

    pub(crate) fn u16(&mut self) -> Result<u16, WireError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    pub(crate) fn u64(&mut self) -> Result<u64, WireError> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8)?);
        Ok(u64::from_be_bytes(a))
    }

    pub(crate) fn str(&mut self, n: usize, field: &'static str) -> Result<&'a str, WireError> {
        std::str::from_utf8(self.take(n)?).map_err(|_| WireError::NotUtf8(field))
    }

    /// A nick preceded by its length in one byte, read by [`Nick::from_wire`].
    pub(crate) fn wire_nick(&mut self) -> Result<Nick, WireError> {
        let len = usize::from(self.u8()?);
        Nick::from_wire(self.str(len, "nick")?).map_err(|error| WireError::Invalid {
            field: "nick",
            error,
        })
    }

    /// A validated name (room, nick) preceded by its length in one byte.
    pub(crate) fn name<T: std::str::FromStr<Err = NameError>>(
        &mut self,
        field: &'static str,
    ) -> Result<T, WireError> {
        let len = usize::from(self.u8()?);
        self.str(len, field)?
            .parse()
            .map_err(|error| WireError::Invalid { field, error })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(body: Body) -> Payload {
        Payload {
            room: "lobby".parse().unwrap(),
            nick: "Zoë".parse().unwrap(),
            ts: 1_700_000_000_123,
            session: 42,
            seq: 7,
            body,
        }
    }

    #[test]
    fn every_kind_round_trips() {
        for body in [
            Body::Chat("héllo\tthere".parse().unwrap()),
            Body::Join,
            Body::Leave,
            Body::Quit,
            Body::Presence,
        ] {
            let p = sample(body);
            assert_eq!(Payload::decode(&p.encode()), Ok(p));
        }
    }

    #[test]
    fn the_largest_valid_payload_fits_the_limit() {
        let p = Payload {
            room: "r".repeat(64).parse().unwrap(),
            nick: "é".repeat(32).parse().unwrap(),
            body: Body::Chat("t".repeat(4096).parse().unwrap()),
            ..sample(Body::Join)
        };
        let bytes = p.encode();
        assert!(bytes.len() <= MAX_PAYLOAD_BYTES);
        assert_eq!(Payload::decode(&bytes), Ok(p));
    }

    #[test]
    fn every_truncation_of_a_payload_is_refused() {
        let bytes = sample(Body::Chat("hello".parse().unwrap())).encode();
        for n in 0..bytes.len() {
            assert!(
                Payload::decode(&bytes[..n]).is_err(),
                "prefix of {n} bytes decoded"
            );
        }
    }

    #[test]
    fn trailing_bytes_and_unknown_kinds_are_refused() {
        let mut bytes = sample(Body::Join).encode();
        bytes.push(0);
        assert_eq!(Payload::decode(&bytes), Err(WireError::TrailingBytes(1)));
        let mut bytes = sample(Body::Join).encode();
        bytes[1] = 99;
        assert_eq!(Payload::decode(&bytes), Err(WireError::UnknownKind(99)));
    }

    #[test]
    fn invalid_fields_are_refused_and_blamed_on_the_sender() {
        let mut bytes = sample(Body::Chat("ok".parse().unwrap())).encode();
        let last = bytes.len() - 1;
        bytes[last] = 0x1b; // escape character in the text
        let err = Payload::decode(&bytes).unwrap_err();
        assert!(matches!(err, WireError::Invalid { field: "text", .. }));
        assert!(err.is_malformed());
    }

    #[test]
    fn a_payload_from_an_older_node_with_a_nick_delimiter_is_read_with_it_replaced() {
        let p = Payload {
            nick: "bobXfoo".parse().unwrap(),
            ..sample(Body::Chat("aYb".parse().unwrap()))
        };
        let mut bytes = p.encode();
        let at = |bytes: &[u8], c: u8| bytes.iter().rposition(|&b| b == c).unwrap();
        let x = at(&bytes, b'X');
        bytes[x] = b'#';
        // U+2028 in the text: three bytes for the three of "aYb".
        let y = at(&bytes, b'a');
        bytes[y..y + 3].copy_from_slice("\u{2028}".as_bytes());
        let read = Payload::decode(&bytes).unwrap();
        assert_eq!(read.nick.as_str(), "bob\u{FFFD}foo");
        assert_eq!(read.body, Body::Chat("\u{FFFD}".parse().unwrap()));
    }

    #[test]
    fn a_newer_version_is_not_called_malformed() {
        let mut bytes = sample(Body::Join).encode();
        bytes[0] = 2;
        let err = Payload::decode(&bytes).unwrap_err();
        assert_eq!(err, WireError::UnknownVersion(2));
        assert!(!err.is_malformed());
    }

    #[test]
    fn random_bytes_never_panic_the_decoder() {
        // A small deterministic generator (xorshift) keeps the test reproducible.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let valid = sample(Body::Chat("fuzz me".parse().unwrap())).encode();
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let mut bytes = valid.clone();
            let i = (x as usize) % bytes.len();
            bytes[i] = (x >> 32) as u8;
            let _ = Payload::decode(&bytes);
            let len = (x >> 40) as usize % 64;
            let noise: Vec<u8> = (0..len).map(|k| (x >> (k % 56)) as u8).collect();
            let _ = Payload::decode(&noise);
        }
    }
}
