//! Redeeming an invite: the one request a joiner sends to a member its code
//! names, over `/palaver/invite/1` (a libp2p request-response stream, so
//! Noise already authenticates both peer ids and hides the bytes), and the
//! one answer. The member checks the token, adds the joiner to the roster by
//! a rotation, and answers with that rotation: the joiner's first epoch.
//!
//! Layout of version 1:
//!
//! ```text
//! request:  version u8 = 1 | room_id [16] | token [16] | recipient_len u8 | age X25519 recipient
//! response: version u8 = 1 | 0 | rotation (the rest)      welcome
//!           version u8 = 1 | 1 | reason u8                refused
//! ```
//!
//! Every refusal looks the same to a peer without a valid token whatever the
//! reason: an unknown room and an unknown token are both `unknown`, so the
//! answer says nothing of which rooms the member is in.

use super::rotation::MAX_RECIPIENT_CHARS;
use super::{ROOM_ID_BYTES, TOKEN_BYTES};

/// The protocol the request goes over.
pub const PROTOCOL: &str = "/palaver/invite/1";
/// The version this code writes.
pub const VERSION: u8 = 1;
/// Largest request.
pub const MAX_REQUEST_BYTES: usize = 1 + ROOM_ID_BYTES + TOKEN_BYTES + 1 + MAX_RECIPIENT_CHARS;
/// Largest response: a rotation of a full roster fits well inside.
pub const MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// What a joiner asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub room_id: [u8; ROOM_ID_BYTES],
    pub token: [u8; TOKEN_BYTES],
    /// Where the joiner wants its lockboxes sent.
    pub recipient: String,
}

/// Why an invite was not honoured. Each has a stable line-protocol code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Reason {
    #[error("this invite is not known to the member it names (wrong room or token)")]
    Unknown,
    #[error("this invite was already used; ask for a new one")]
    Used,
    #[error("this invite has expired; ask for a new one")]
    Expired,
    #[error("this invite was revoked by the member who made it")]
    Revoked,
    #[error("the room is full")]
    Full,
    #[error("the member is busy; try again shortly")]
    Busy,
}

impl Reason {
    /// The `error` code the line protocol reports it with.
    pub fn code(self) -> &'static str {
        match self {
            Reason::Unknown => "invite_unknown",
            Reason::Used => "invite_used",
            Reason::Expired => "invite_expired",
            Reason::Revoked => "invite_revoked",
            Reason::Full => "room_full",
            Reason::Busy => "busy",
        }
    }

    fn byte(self) -> u8 {
        match self {
            Reason::Unknown => 0,
            Reason::Used => 1,
            Reason::Expired => 2,
            Reason::Revoked => 3,
            Reason::Full => 4,
            Reason::Busy => 5,
        }
    }

    fn from_byte(b: u8) -> Option<Self> {
        Some(match b {
            0 => Reason::Unknown,
            1 => Reason::Used,
            2 => Reason::Expired,
            3 => Reason::Revoked,
            4 => Reason::Full,
            5 => Reason::Busy,
            _ => return None,
        })
    }
}

/// What the member answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    /// The rotation that admits the joiner (checked by the joiner with
    /// [`super::rotation::Rotation::open`]).
    Welcome(Vec<u8>),
    Refused(Reason),
}

/// Why bytes are not a request or a response.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RedeemError {
    #[error("unknown invite protocol version {0}")]
    UnknownVersion(u8),
    #[error("{0} bytes, more than any valid message")]
    TooLong(usize),
    #[error("message ends early")]
    Truncated,
    #[error("message has bytes after its end")]
    TrailingBytes,
    #[error("invalid {0}")]
    Invalid(&'static str),
}

impl Request {
    pub fn encode(&self) -> Result<Vec<u8>, RedeemError> {
        let len = u8::try_from(self.recipient.len())
            .ok()
            .filter(|l| usize::from(*l) <= MAX_RECIPIENT_CHARS && *l > 0)
            .ok_or(RedeemError::Invalid("recipient"))?;
        let mut out = Vec::with_capacity(MAX_REQUEST_BYTES);
        out.push(VERSION);
        out.extend_from_slice(&self.room_id);
        out.extend_from_slice(&self.token);
        out.push(len);
        out.extend_from_slice(self.recipient.as_bytes());
        Ok(out)
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, RedeemError> {
        let (&version, rest) = bytes.split_first().ok_or(RedeemError::Truncated)?;
        if version != VERSION {
            return Err(RedeemError::UnknownVersion(version));
        }
        if bytes.len() > MAX_REQUEST_BYTES {
            return Err(RedeemError::TooLong(bytes.len()));
        }
        if rest.len() < ROOM_ID_BYTES + TOKEN_BYTES + 1 {
            return Err(RedeemError::Truncated);
        }
        let (room, rest) = rest.split_at(ROOM_ID_BYTES);
        let (token, rest) = rest.split_at(TOKEN_BYTES);
        let (&len, recipient) = rest.split_first().ok_or(RedeemError::Truncated)?;
        let len = usize::from(len);
        if recipient.len() < len {
            return Err(RedeemError::Truncated);
        }
        if recipient.len() > len {
            return Err(RedeemError::TrailingBytes);
        }
        let recipient = std::str::from_utf8(recipient)
            .ok()
            .filter(|s| !s.is_empty() && s.is_ascii())
            .ok_or(RedeemError::Invalid("recipient"))?
            .to_owned();
        let mut room_id = [0u8; ROOM_ID_BYTES];
        room_id.copy_from_slice(room);
        let mut t = [0u8; TOKEN_BYTES];
        t.copy_from_slice(token);
        Ok(Self {
            room_id,
            token: t,
            recipient,
        })
    }
}

impl Response {
    pub fn encode(&self) -> Result<Vec<u8>, RedeemError> {
        let mut out = vec![VERSION];
        match self {
            Response::Welcome(rotation) => {
                if rotation.len() + 2 > MAX_RESPONSE_BYTES {
                    return Err(RedeemError::TooLong(rotation.len() + 2));
                }
                out.push(0);
                out.extend_from_slice(rotation);
            }
            Response::Refused(reason) => {
                out.push(1);
                out.push(reason.byte());
            }
        }
        Ok(out)
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, RedeemError> {
        let (&version, rest) = bytes.split_first().ok_or(RedeemError::Truncated)?;
        if version != VERSION {
            return Err(RedeemError::UnknownVersion(version));
        }
        if bytes.len() > MAX_RESPONSE_BYTES {
            return Err(RedeemError::TooLong(bytes.len()));
        }
        match rest.split_first() {
            Some((0, rotation)) if !rotation.is_empty() => Ok(Response::Welcome(rotation.to_vec())),
            Some((1, [reason])) => Reason::from_byte(*reason)
                .map(Response::Refused)
                .ok_or(RedeemError::Invalid("reason")),
            Some((1, [])) | Some((0, [])) | None => Err(RedeemError::Truncated),
            Some((1, _)) => Err(RedeemError::TrailingBytes),
            Some(_) => Err(RedeemError::Invalid("kind")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> Request {
        Request {
            room_id: [1; ROOM_ID_BYTES],
            token: [2; TOKEN_BYTES],
            recipient: "age1qqqq".into(),
        }
    }

    #[test]
    fn a_request_and_both_answers_come_back_from_their_bytes() {
        let r = request();
        assert_eq!(Request::decode(&r.encode().unwrap()).unwrap(), r);
        for answer in [
            Response::Welcome(vec![9; 300]),
            Response::Refused(Reason::Used),
            Response::Refused(Reason::Busy),
        ] {
            assert_eq!(Response::decode(&answer.encode().unwrap()).unwrap(), answer);
        }
    }

    #[test]
    fn cut_bent_and_oversized_messages_are_refused_without_panicking() {
        let bytes = request().encode().unwrap();
        for n in 0..bytes.len() {
            assert!(Request::decode(&bytes[..n]).is_err(), "cut at {n}");
        }
        let mut long = bytes.clone();
        long.push(b'x');
        assert!(Request::decode(&long).is_err());
        assert_eq!(
            Request::decode(&[VERSION; MAX_REQUEST_BYTES + 1]),
            Err(RedeemError::TooLong(MAX_REQUEST_BYTES + 1))
        );
        assert_eq!(
            Response::decode(&[VERSION, 1, 77]),
            Err(RedeemError::Invalid("reason"))
        );
        assert_eq!(
            Response::decode(&[VERSION, 1, 0, 0]),
            Err(RedeemError::TrailingBytes)
        );
        assert_eq!(Response::decode(&[VERSION, 0]), Err(RedeemError::Truncated));
        assert_eq!(
            Response::decode(&[2, 0, 1]),
            Err(RedeemError::UnknownVersion(2))
        );
        assert!(Response::decode(&vec![VERSION; MAX_RESPONSE_BYTES + 1]).is_err());
    }

    #[test]
    fn every_refusal_has_its_own_stable_code() {
        let all = [
            Reason::Unknown,
            Reason::Used,
            Reason::Expired,
            Reason::Revoked,
            Reason::Full,
            Reason::Busy,
        ];
        let codes: std::collections::BTreeSet<&str> = all.iter().map(|r| r.code()).collect();
        assert_eq!(codes.len(), all.len());
        for r in all {
            assert_eq!(Reason::from_byte(r.byte()), Some(r));
        }
    }
}
