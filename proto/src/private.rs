//! The wire contract of private rooms, free of I/O: what is derived from a
//! room's epoch key (its id, the gossipsub topic, the rendezvous namespace,
//! the frame key), how a frame is sealed with XChaCha20-Poly1305, and how an
//! invite code is written.
//!
//! A private room has a secret 32-byte *epoch key*, replaced whenever its
//! membership changes. Everything a non-member could see is derived from
//! it with HKDF-SHA256 under its own label ([`crate::contract::labels`]), so
//! the topic and the namespace say nothing of the room and change with
//! every key. A frame carries a signed [`crate::envelope::Envelope`] inside:
//! authorship is checked after decryption, exactly as in a public room.
//!
//! What is published on a private topic, version 1: a message frame or a
//! lockbox.
//!
//! ```text
//! version u8 = 1 | kind u8 = 0 | epoch_id [16] | nonce [24] | ciphertext (plaintext + 16-byte tag)
//! version u8 = 1 | kind u8 = 1 | age ciphertext (binary age format, to every member's recipient)
//! ```
//!
//! A message frame's associated data is `labels::PRIVATE_FRAME` followed by
//! the version, the kind and the epoch id, so a frame cannot be moved to
//! another epoch or taken for anything else. A lockbox holds a signed
//! [`rotation::Rotation`]; the node writes and opens the age part. The nonce is random (24 bytes: collisions are not a
//! concern at any rate a room can reach).
//!
//! An invite code is [`INVITE_PREFIX`] followed by base64url (no padding)
//! of, version 1 (integers big-endian):
//!
//! ```text
//! version u8 = 1 | room_id [16] | token [16] | expires_ms u64 | name_len u8 | name
//! | peer_count u8 (1..=8) | peer_count × ( peer_len u8 | peer id
//!   | addr_count u8 (0..=8) | addr_count × ( addr_len u8 | multiaddr bytes ) )
//! ```

use chacha20poly1305::aead::{Aead, KeyInit, Payload as AeadPayload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use data_encoding::BASE64URL_NOPAD;
use hkdf::Hkdf;
use libp2p_identity::PeerId;
use sha2::Sha256;

use crate::contract::labels;
use crate::envelope::MAX_ENVELOPE_BYTES;
use crate::names::RoomName;

mod bytes;
pub mod keyring;
pub mod redeem;
pub mod rotation;

/// The frame version this code writes.
pub const FRAME_VERSION: u8 = 1;
/// Bytes of a frame before its ciphertext.
pub const FRAME_HEADER_BYTES: usize = 2 + EPOCH_ID_BYTES + NONCE_BYTES;
/// The kind byte of a message frame and of a lockbox.
pub const KIND_MESSAGE: u8 = 0;
pub const KIND_LOCKBOX: u8 = 1;
/// Largest lockbox (its age ciphertext and two bytes): inside one gossip
/// message, with room for gossipsub's own framing.
pub const MAX_LOCKBOX_BYTES: usize = crate::contract::MAX_GOSSIP_FRAME_BYTES - 1024;
/// Bytes the AEAD adds to the plaintext.
pub const TAG_BYTES: usize = 16;
/// Largest valid frame: one envelope, sealed.
pub const MAX_FRAME_BYTES: usize = FRAME_HEADER_BYTES + MAX_ENVELOPE_BYTES + TAG_BYTES;
/// Length of an epoch key.
pub const EPOCH_KEY_BYTES: usize = 32;
/// Length of an epoch id.
pub const EPOCH_ID_BYTES: usize = 16;
/// Length of the random nonce of a frame.
pub const NONCE_BYTES: usize = 24;
/// Length of a room id (random, chosen by the room's creator, never changes).
pub const ROOM_ID_BYTES: usize = 16;
/// Length of an invite's secret token.
pub const TOKEN_BYTES: usize = 16;
/// How many bytes of a derived topic or namespace id are kept (written as
/// twice as many lowercase hex digits).
pub const DERIVED_ID_BYTES: usize = 16;
/// What a private room's topic starts with; 32 hex digits follow.
pub const PRIVATE_TOPIC_PREFIX: &str = "palaver/2/private/";
/// What a private room's rendezvous namespace starts with; 32 hex digits follow.
pub const PRIVATE_NAMESPACE_PREFIX: &str = "palaver/p/";
/// What every invite code starts with.
pub const INVITE_PREFIX: &str = "palaver-invite1-";
/// The invite encoding version this code writes.
pub const INVITE_VERSION: u8 = 1;
/// Most members an invite names, and most addresses per member.
pub const MAX_INVITE_PEERS: usize = 8;
pub const MAX_INVITE_ADDRS: usize = 8;
/// Longest invite code accepted, in characters.
pub const MAX_INVITE_CHARS: usize = 4096;
/// Longest peer id and address in an invite, in bytes.
const MAX_PEER_ID_BYTES: usize = 64;
const MAX_ADDR_BYTES: usize = 255;

/// A private room's epoch key. Its `Debug` shows only the epoch id.
#[derive(Clone, PartialEq, Eq)]
pub struct EpochKey([u8; EPOCH_KEY_BYTES]);

/// The public name of an epoch key.
pub type EpochId = [u8; EPOCH_ID_BYTES];

impl std::fmt::Debug for EpochKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "EpochKey({})", lower_hex(&self.id()))
    }
}

impl EpochKey {
    /// A key from 32 secret random bytes (the caller draws them from the
    /// operating system's generator).
    pub fn from_bytes(bytes: [u8; EPOCH_KEY_BYTES]) -> Self {
        Self(bytes)
    }

    pub fn as_bytes(&self) -> &[u8; EPOCH_KEY_BYTES] {
        &self.0
    }

    /// HKDF-SHA256 (no salt, the key as input key material) expanded under `info`.
    fn derive<const N: usize>(&self, info: &[u8]) -> [u8; N] {
        let mut out = [0u8; N];
        // N ≤ 32 here, far below HKDF-SHA256's 8160-byte limit: expand cannot fail.
        if Hkdf::<Sha256>::new(None, &self.0)
            .expand(info, &mut out)
            .is_err()
        {
            out = [0u8; N];
        }
        out
    }

    /// The epoch id: names this key in frames without revealing it.
    pub fn id(&self) -> EpochId {
        self.derive(labels::PRIVATE_EPOCH_ID)
    }

    /// The gossipsub topic of the room under this key: [`PRIVATE_TOPIC_PREFIX`]
    /// and 32 lowercase hex digits. Like a public topic, the string is its hash.
    pub fn topic(&self) -> String {
        let id: [u8; DERIVED_ID_BYTES] = self.derive(labels::PRIVATE_TOPIC);
        format!("{PRIVATE_TOPIC_PREFIX}{}", lower_hex(&id))
    }

    /// The rendezvous namespace the room's members register under with this key.
    pub fn rendezvous_namespace(&self) -> String {
        let id: [u8; DERIVED_ID_BYTES] = self.derive(labels::PRIVATE_NAMESPACE);
        format!("{PRIVATE_NAMESPACE_PREFIX}{}", lower_hex(&id))
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        let key: [u8; 32] = self.derive(labels::PRIVATE_MESSAGE_KEY);
        XChaCha20Poly1305::new(&key.into())
    }

    /// Seals `plaintext` (an envelope) into a frame under this key, with the
    /// caller's fresh random `nonce`.
    pub fn seal(&self, nonce: [u8; NONCE_BYTES], plaintext: &[u8]) -> Result<Vec<u8>, FrameError> {
        if plaintext.len() > MAX_ENVELOPE_BYTES {
            return Err(FrameError::TooLong(plaintext.len()));
        }
        let id = self.id();
        let aad = frame_aad(&id);
        let ciphertext = self
            .cipher()
            .encrypt(
                XNonce::from_slice(&nonce),
                AeadPayload {
                    msg: plaintext,
                    aad: &aad,
                },
            )
            .map_err(|_| FrameError::Sealing)?;
        let mut out = Vec::with_capacity(FRAME_HEADER_BYTES + ciphertext.len());
        out.push(FRAME_VERSION);
        out.push(KIND_MESSAGE);
        out.extend_from_slice(&id);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ciphertext);
        Ok(out)
    }

    /// Opens a frame sealed under this key: its plaintext, or why not.
    pub fn open(&self, frame: &Frame<'_>) -> Result<Vec<u8>, FrameError> {
        if frame.epoch != self.id() {
            return Err(FrameError::WrongEpoch);
        }
        let aad = frame_aad(&frame.epoch);
        self.cipher()
            .decrypt(
                XNonce::from_slice(&frame.nonce),
                AeadPayload {
                    msg: frame.ciphertext,
                    aad: &aad,
                },
            )
            .map_err(|_| FrameError::NotAuthentic)
    }
}

fn frame_aad(epoch: &EpochId) -> Vec<u8> {
    let mut aad = Vec::with_capacity(labels::PRIVATE_FRAME.len() + 2 + EPOCH_ID_BYTES);
    aad.extend_from_slice(labels::PRIVATE_FRAME);
    aad.push(FRAME_VERSION);
    aad.push(KIND_MESSAGE);
    aad.extend_from_slice(epoch);
    aad
}

/// A parsed, still sealed frame: which epoch's key opens it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame<'a> {
    pub epoch: EpochId,
    nonce: [u8; NONCE_BYTES],
    ciphertext: &'a [u8],
}

impl<'a> Frame<'a> {
    /// Reads a message frame's header; the ciphertext is checked by
    /// [`EpochKey::open`].
    pub fn parse(bytes: &'a [u8]) -> Result<Self, FrameError> {
        match Published::parse(bytes)? {
            Published::Message(frame) => Ok(frame),
            Published::Lockbox(_) => Err(FrameError::NotAMessage),
        }
    }
}

/// What was published on a private topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Published<'a> {
    Message(Frame<'a>),
    /// The age ciphertext of a lockbox.
    Lockbox(&'a [u8]),
}

impl<'a> Published<'a> {
    pub fn parse(bytes: &'a [u8]) -> Result<Self, FrameError> {
        let Some((&version, rest)) = bytes.split_first() else {
            return Err(FrameError::Truncated);
        };
        if version != FRAME_VERSION {
            return Err(FrameError::UnknownVersion(version));
        }
        let Some((&kind, rest)) = rest.split_first() else {
            return Err(FrameError::Truncated);
        };
        match kind {
            KIND_MESSAGE => {
                if bytes.len() > MAX_FRAME_BYTES {
                    return Err(FrameError::TooLong(bytes.len()));
                }
                if bytes.len() < FRAME_HEADER_BYTES + TAG_BYTES {
                    return Err(FrameError::Truncated);
                }
                let (epoch, rest) = rest.split_at(EPOCH_ID_BYTES);
                let (nonce, ciphertext) = rest.split_at(NONCE_BYTES);
                let mut e = [0u8; EPOCH_ID_BYTES];
                e.copy_from_slice(epoch);
                let mut n = [0u8; NONCE_BYTES];
                n.copy_from_slice(nonce);
                Ok(Published::Message(Frame {
                    epoch: e,
                    nonce: n,
                    ciphertext,
                }))
            }
            KIND_LOCKBOX => {
                if bytes.len() > MAX_LOCKBOX_BYTES {
                    return Err(FrameError::TooLong(bytes.len()));
                }
                if rest.is_empty() {
                    return Err(FrameError::Truncated);
                }
                Ok(Published::Lockbox(rest))
            }
            other => Err(FrameError::UnknownKind(other)),
        }
    }
}

/// A lockbox ready to publish, from its age ciphertext.
pub fn lockbox(age_ciphertext: &[u8]) -> Result<Vec<u8>, FrameError> {
    let len = age_ciphertext.len().saturating_add(2);
    if len > MAX_LOCKBOX_BYTES {
        return Err(FrameError::TooLong(len));
    }
    if age_ciphertext.is_empty() {
        return Err(FrameError::Truncated);
    }
    let mut out = Vec::with_capacity(len);
    out.push(FRAME_VERSION);
    out.push(KIND_LOCKBOX);
    out.extend_from_slice(age_ciphertext);
    Ok(out)
}

/// Why bytes are not a frame this key opens.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("unknown frame version {0}")]
    UnknownVersion(u8),
    #[error("frame is {0} bytes long, more than any valid frame")]
    TooLong(usize),
    #[error("frame ends early")]
    Truncated,
    #[error("unknown kind {0} of what was published")]
    UnknownKind(u8),
    #[error("a lockbox, not a message frame")]
    NotAMessage,
    #[error("frame is for another epoch")]
    WrongEpoch,
    #[error("frame does not decrypt under the epoch's key")]
    NotAuthentic,
    #[error("cannot seal the frame")]
    Sealing,
}

/// Whether a topic is a private room's (its owner cannot be read from it).
pub fn is_private_topic(topic: &str) -> bool {
    topic.strip_prefix(PRIVATE_TOPIC_PREFIX).is_some_and(|hex| {
        hex.len() == 2 * DERIVED_ID_BYTES
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

/// One member an invite says how to reach.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvitePeer {
    pub peer: PeerId,
    /// Multiaddr bytes (relay circuit addresses included), unchecked here:
    /// the node parses each and skips those it cannot use.
    pub addrs: Vec<Vec<u8>>,
}

/// What an invite code says: which room, the secret that admits one peer
/// once, until when, and whom to ask.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invite {
    pub room_id: [u8; ROOM_ID_BYTES],
    pub token: [u8; TOKEN_BYTES],
    /// Unix milliseconds after which the issuer refuses it.
    pub expires_ms: u64,
    /// The room's name, as its creator gave it.
    pub name: RoomName,
    pub peers: Vec<InvitePeer>,
}

/// Why a string is not an invite code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InviteError {
    #[error("an invite code starts with {INVITE_PREFIX}")]
    NoPrefix,
    #[error("the invite code is {0} characters long, more than any valid code")]
    TooLong(usize),
    #[error("the invite code is not base64url")]
    NotBase64,
    #[error("the invite code is from a newer version ({0})")]
    UnknownVersion(u8),
    #[error("the invite code ends early (was it cut off?)")]
    Truncated,
    #[error("the invite code has {0} bytes after its end")]
    TrailingBytes(usize),
    #[error("the invite code's {0} is not valid")]
    Invalid(&'static str),
    #[error("the invite code names {0} members; 1 to {MAX_INVITE_PEERS} are allowed")]
    PeerCount(usize),
    #[error("an invite names at most {MAX_INVITE_ADDRS} addresses per member")]
    TooManyAddrs,
}

impl Invite {
    /// The code a person pastes: [`INVITE_PREFIX`] and base64url.
    pub fn encode(&self) -> Result<String, InviteError> {
        if self.peers.is_empty() || self.peers.len() > MAX_INVITE_PEERS {
            return Err(InviteError::PeerCount(self.peers.len()));
        }
        let mut out = vec![INVITE_VERSION];
        out.extend_from_slice(&self.room_id);
        out.extend_from_slice(&self.token);
        out.extend_from_slice(&self.expires_ms.to_be_bytes());
        push_short(&mut out, self.name.as_str().as_bytes(), "name")?;
        out.push(self.peers.len() as u8);
        for p in &self.peers {
            push_short(&mut out, &p.peer.to_bytes(), "peer id")?;
            if p.addrs.len() > MAX_INVITE_ADDRS {
                return Err(InviteError::TooManyAddrs);
            }
            out.push(p.addrs.len() as u8);
            for a in &p.addrs {
                push_short(&mut out, a, "address")?;
            }
        }
        let code = format!("{INVITE_PREFIX}{}", BASE64URL_NOPAD.encode(&out));
        if code.len() > MAX_INVITE_CHARS {
            return Err(InviteError::TooLong(code.len()));
        }
        Ok(code)
    }

    /// Parses a pasted code, strictly (one encoding per invite). Outer white
    /// space is forgiven: codes are pasted.
    pub fn decode(code: &str) -> Result<Self, InviteError> {
        let code = code.trim();
        if code.len() > MAX_INVITE_CHARS {
            return Err(InviteError::TooLong(code.len()));
        }
        let body = code
            .strip_prefix(INVITE_PREFIX)
            .ok_or(InviteError::NoPrefix)?;
        let bytes = BASE64URL_NOPAD
            .decode(body.as_bytes())
            .map_err(|_| InviteError::NotBase64)?;
        let mut r = bytes::Reader(&bytes);
        let version = r.u8()?;
        if version != INVITE_VERSION {
            return Err(InviteError::UnknownVersion(version));
        }
        let room_id = r.array::<ROOM_ID_BYTES>()?;
        let token = r.array::<TOKEN_BYTES>()?;
        let expires_ms = u64::from_be_bytes(r.array::<8>()?);
        let name = std::str::from_utf8(r.short()?)
            .ok()
            .and_then(|s| s.parse::<RoomName>().ok())
            .ok_or(InviteError::Invalid("room name"))?;
        let count = usize::from(r.u8()?);
        if count == 0 || count > MAX_INVITE_PEERS {
            return Err(InviteError::PeerCount(count));
        }
        let mut peers = Vec::with_capacity(count);
        for _ in 0..count {
            let id = r.short()?;
            if id.len() > MAX_PEER_ID_BYTES {
                return Err(InviteError::Invalid("peer id"));
            }
            let peer = PeerId::from_bytes(id).map_err(|_| InviteError::Invalid("peer id"))?;
            let n = usize::from(r.u8()?);
            if n > MAX_INVITE_ADDRS {
                return Err(InviteError::TooManyAddrs);
            }
            let mut addrs = Vec::with_capacity(n);
            for _ in 0..n {
                let a = r.short()?;
                if a.is_empty() {
                    return Err(InviteError::Invalid("address"));
                }
                addrs.push(a.to_vec());
            }
            peers.push(InvitePeer { peer, addrs });
        }
        if !r.0.is_empty() {
            return Err(InviteError::TrailingBytes(r.0.len()));
        }
        Ok(Self {
            room_id,
            token,
            expires_ms,
            name,
            peers,
        })
    }
}

fn push_short(out: &mut Vec<u8>, bytes: &[u8], what: &'static str) -> Result<(), InviteError> {
    let len = u8::try_from(bytes.len()).map_err(|_| InviteError::Invalid(what))?;
    if usize::from(len) > MAX_ADDR_BYTES {
        return Err(InviteError::Invalid(what));
    }
    out.push(len);
    out.extend_from_slice(bytes);
    Ok(())
}

impl From<bytes::EndsEarly> for InviteError {
    fn from(_: bytes::EndsEarly) -> Self {
        InviteError::Truncated
    }
}

fn lower_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests;
