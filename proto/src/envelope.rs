//! Signed envelopes: a [`Payload`] together with its author's public key and
//! signature, so that anyone holding the bytes (a forwarding peer, a catch-up
//! page, a stored history) can check who wrote it and that nothing changed.
//!
//! Layout of version 1 (integers big-endian):
//!
//! ```text
//! version u8 = 1 | key_len u8 | key (libp2p protobuf encoding, ed25519 only)
//! | payload_len u16 | payload (wire::Payload) | sig_len u8 | signature
//! ```
//!
//! The signature covers `"palaver/envelope/v1\0"` followed by every byte
//! before `sig_len`, so the version, the key and the payload are all bound.
//! Decoding is strict (no trailing bytes, one encoding per envelope), and the
//! envelope's id is a hash of all its bytes, signature included.

use libp2p_identity::{KeyType, Keypair, PeerId, PublicKey};

use crate::contract::{MESSAGE_ID_BYTES, labels, message_id};
use crate::wire::{MAX_PAYLOAD_BYTES, Payload, WireError};

/// The version this code writes.
pub const VERSION: u8 = 1;
/// What the signature covers before the envelope's own bytes.
const DOMAIN: &[u8] = labels::ENVELOPE_SIGNATURE;
/// The longest key and signature accepted (ed25519: 36 and 64 bytes).
const MAX_KEY_BYTES: usize = 64;
const MAX_SIGNATURE_BYTES: usize = 64;
/// Largest valid envelope.
pub const MAX_ENVELOPE_BYTES: usize =
    2 + MAX_KEY_BYTES + 2 + MAX_PAYLOAD_BYTES + 1 + MAX_SIGNATURE_BYTES;

/// Why bytes are not a genuine envelope.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    #[error("unknown envelope version {0}")]
    UnknownVersion(u8),
    #[error("envelope is {0} bytes long, more than any valid envelope")]
    TooLong(usize),
    #[error("envelope ends early")]
    Truncated,
    #[error("envelope has {0} bytes after its end")]
    TrailingBytes(usize),
    #[error("the author's key is not a valid ed25519 public key")]
    BadKey,
    #[error("the signature does not match the author's key and the content")]
    BadSignature,
    #[error("cannot sign: {0}")]
    Signing(String),
    #[error("payload: {0}")]
    Payload(#[from] WireError),
}

impl EnvelopeError {
    /// Whether the sender is at fault (as opposed to merely newer than us).
    pub fn is_malformed(&self) -> bool {
        !matches!(
            self,
            Self::UnknownVersion(_) | Self::Payload(WireError::UnknownVersion(_))
        )
    }
}

/// A verified envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    bytes: Vec<u8>,
    author: PeerId,
    payload: Payload,
}

impl Envelope {
    /// Signs `payload` as the owner of `keypair`.
    pub fn seal(keypair: &Keypair, payload: Payload) -> Result<Self, EnvelopeError> {
        let bytes = Self::seal_bytes(keypair, &payload.encode())?;
        Ok(Self {
            bytes,
            author: keypair.public().to_peer_id(),
            payload,
        })
    }

    /// The envelope of payload bytes as they are, whether [`Payload::decode`]
    /// takes them or not: what an older version or another implementation may
    /// send (tests send with it what [`Payload::encode`] cannot write).
    pub fn seal_bytes(keypair: &Keypair, body: &[u8]) -> Result<Vec<u8>, EnvelopeError> {
        let key = keypair.public().encode_protobuf();
        let (Ok(key_len), Ok(body_len)) = (u8::try_from(key.len()), u16::try_from(body.len()))
        else {
            return Err(EnvelopeError::Signing("key or payload too long".into()));
        };
        let mut bytes = Vec::with_capacity(4 + key.len() + body.len() + 65);
        bytes.push(VERSION);
        bytes.push(key_len);
        bytes.extend_from_slice(&key);
        bytes.extend_from_slice(&body_len.to_be_bytes());
        bytes.extend_from_slice(body);
        let signature = keypair
            .sign(&signed_message(&bytes))
            .map_err(|e| EnvelopeError::Signing(e.to_string()))?;
        let Ok(sig_len) = u8::try_from(signature.len()) else {
            return Err(EnvelopeError::Signing("signature too long".into()));
        };
        bytes.push(sig_len);
        bytes.extend_from_slice(&signature);
        Ok(bytes)
    }

    /// Decodes and verifies an envelope: the key, the signature over
    /// everything, then the payload.
    pub fn open(bytes: &[u8]) -> Result<Self, EnvelopeError> {
        let version = *bytes.first().ok_or(EnvelopeError::Truncated)?;
        if version != VERSION {
            return Err(EnvelopeError::UnknownVersion(version));
        }
        if bytes.len() > MAX_ENVELOPE_BYTES {
            return Err(EnvelopeError::TooLong(bytes.len()));
        }
        let mut at = 1;
        let key_len = usize::from(*bytes.get(at).ok_or(EnvelopeError::Truncated)?);
        at += 1;
        let key = bytes
            .get(at..at + key_len)
            .ok_or(EnvelopeError::Truncated)?;
        at += key_len;
        let body_len = bytes.get(at..at + 2).ok_or(EnvelopeError::Truncated)?;
        let body_len = usize::from(u16::from_be_bytes([body_len[0], body_len[1]]));
        at += 2;
        let body = bytes
            .get(at..at + body_len)
            .ok_or(EnvelopeError::Truncated)?;
        at += body_len;
        let signed = &bytes[..at];
        let sig_len = usize::from(*bytes.get(at).ok_or(EnvelopeError::Truncated)?);
        at += 1;
        let signature = bytes
            .get(at..at + sig_len)
            .ok_or(EnvelopeError::Truncated)?;
        at += sig_len;
        if at != bytes.len() {
            return Err(EnvelopeError::TrailingBytes(bytes.len() - at));
        }
        if key_len > MAX_KEY_BYTES || sig_len > MAX_SIGNATURE_BYTES {
            return Err(EnvelopeError::BadKey);
        }
        let public = PublicKey::try_decode_protobuf(key).map_err(|_| EnvelopeError::BadKey)?;
        if public.key_type() != KeyType::Ed25519 {
            return Err(EnvelopeError::BadKey);
        }
        if !public.verify(&signed_message(signed), signature) {
            return Err(EnvelopeError::BadSignature);
        }
        let payload = Payload::decode(body)?;
        Ok(Self {
            bytes: bytes.to_vec(),
            author: public.to_peer_id(),
            payload,
        })
    }

    /// Who signed it.
    pub fn author(&self) -> PeerId {
        self.author
    }

    pub fn payload(&self) -> &Payload {
        &self.payload
    }

    /// The signed bytes, as sent and stored.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The envelope's id: a hash of all its bytes, hex.
    pub fn id(&self) -> String {
        hex_id(&self.id_bytes())
    }

    /// The envelope's id as bytes: the first 16 bytes of SHA-256 over all its
    /// bytes ([`crate::contract::message_id`]).
    pub fn id_bytes(&self) -> MessageId {
        message_id(&self.bytes)
    }
}

/// An envelope id: 16 bytes of SHA-256 over the envelope.
pub type MessageId = [u8; MESSAGE_ID_BYTES];

/// An envelope id as the line protocol shows it (lowercase hex).
pub fn hex_id(id: &MessageId) -> String {
    id.iter().map(|b| format!("{b:02x}")).collect()
}

fn signed_message(bytes: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(DOMAIN.len() + bytes.len());
    m.extend_from_slice(DOMAIN);
    m.extend_from_slice(bytes);
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::Body;

    fn payload(text: &str) -> Payload {
        Payload {
            room: "lobby".parse().unwrap(),
            nick: "alice".parse().unwrap(),
            ts: 1_700_000_000_000,
            session: 1,
            seq: 0,
            body: Body::Chat(text.parse().unwrap()),
        }
    }

    #[test]
    fn a_sealed_envelope_opens_to_the_same_author_and_payload() {
        let key = Keypair::generate_ed25519();
        let sealed = Envelope::seal(&key, payload("hello")).unwrap();
        let opened = Envelope::open(sealed.as_bytes()).unwrap();
        assert_eq!(opened.author(), key.public().to_peer_id());
        assert_eq!(opened.payload(), &payload("hello"));
        assert_eq!(opened.id(), sealed.id());
        assert!(sealed.as_bytes().len() <= MAX_ENVELOPE_BYTES);
    }

    #[test]
    fn an_altered_text_under_the_old_signature_is_refused() {
        let key = Keypair::generate_ed25519();
        let sealed = Envelope::seal(&key, payload("pay 10")).unwrap();
        let mut bytes = sealed.as_bytes().to_vec();
        let at = bytes.windows(6).position(|w| w == b"pay 10").unwrap();
        bytes[at + 4] = b'9';
        assert_eq!(Envelope::open(&bytes), Err(EnvelopeError::BadSignature));
    }

    #[test]
    fn an_envelope_signed_by_another_key_is_refused() {
        let alice = Keypair::generate_ed25519();
        let mallory = Keypair::generate_ed25519();
        // Mallory's signature under Alice's key: a forgery.
        let genuine = Envelope::seal(&alice, payload("hi")).unwrap();
        let forged_sig = Envelope::seal(&mallory, payload("hi")).unwrap();
        let mut bytes = genuine.as_bytes().to_vec();
        let sig = &forged_sig.as_bytes()[forged_sig.as_bytes().len() - 64..];
        let len = bytes.len();
        bytes[len - 64..].copy_from_slice(sig);
        assert_eq!(Envelope::open(&bytes), Err(EnvelopeError::BadSignature));
    }

    #[test]
    fn truncations_trailing_bytes_and_other_versions_are_refused() {
        let key = Keypair::generate_ed25519();
        let bytes = Envelope::seal(&key, payload("x"))
            .unwrap()
            .as_bytes()
            .to_vec();
        for n in 0..bytes.len() {
            assert!(
                Envelope::open(&bytes[..n]).is_err(),
                "prefix of {n} bytes opened"
            );
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(
            Envelope::open(&longer),
            Err(EnvelopeError::TrailingBytes(1))
        );
        let mut newer = bytes;
        newer[0] = 2;
        let err = Envelope::open(&newer).unwrap_err();
        assert!(!err.is_malformed());
    }

    #[test]
    fn ids_differ_when_anything_differs() {
        let key = Keypair::generate_ed25519();
        let a = Envelope::seal(&key, payload("a")).unwrap();
        let b = Envelope::seal(&key, payload("b")).unwrap();
        assert_ne!(a.id(), b.id());
        assert_eq!(a.id().len(), 32);
    }

    #[test]
    fn random_bytes_never_panic_the_opener() {
        let key = Keypair::generate_ed25519();
        let valid = Envelope::seal(&key, payload("fuzz"))
            .unwrap()
            .as_bytes()
            .to_vec();
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        for _ in 0..5_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let mut bytes = valid.clone();
            let i = (x as usize) % bytes.len();
            bytes[i] ^= (x >> 40) as u8 | 1;
            assert!(
                Envelope::open(&bytes).is_err(),
                "a flipped byte at {i} still opened"
            );
        }
    }
}
