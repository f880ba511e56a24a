//! The signed statement a lockbox carries at every membership change of a
//! private room: which room, which epoch it follows, the new epoch key, and
//! the roster that holds it. The node encrypts it to every member of the
//! roster with age (the lockbox); this module only writes, reads and
//! verifies it.
//!
//! Layout of version 1 (integers big-endian):
//!
//! ```text
//! version u8 = 1 | room_id [16] | generation u64 | parent epoch_id [16] | key [32]
//! | author_key_len u8 | author key (libp2p protobuf, ed25519)
//! | member_count u16 (1..=MAX_ROSTER) | members × ( peer_len u8 | peer id | role u8
//!   | recipient_len u8 | age X25519 recipient, ASCII )
//! | removed_count u16 (..=MAX_REMOVED) | removed × ( peer_len u8 | peer id )
//! | sig_len u8 | signature
//! ```
//!
//! The signature covers `labels::PRIVATE_ROTATION` and every byte before
//! `sig_len`. Members are sorted by peer id bytes, removed peers too, with no
//! duplicates and no peer in both lists, so each statement has one
//! encoding. The first epoch of a room has generation 0 and a parent of 16
//! zero bytes.

use libp2p_identity::{KeyType, Keypair, PeerId, PublicKey};

use super::bytes::{EndsEarly, Reader};
use super::{EPOCH_ID_BYTES, EpochId, EpochKey, ROOM_ID_BYTES};
use crate::contract::labels;

/// The version this code writes.
pub const VERSION: u8 = 1;
/// Most members of a private room: keeps a lockbox (about 100 bytes of age
/// stanza and 100 of roster per member) inside one gossip message.
pub const MAX_ROSTER: usize = 200;
/// Most removed peers a statement carries.
pub const MAX_REMOVED: usize = 1024;
/// Longest age recipient string (`age1` and 58 bech32 characters for X25519).
pub const MAX_RECIPIENT_CHARS: usize = 90;
const MAX_KEY_BYTES: usize = 64;
const MAX_PEER_ID_BYTES: usize = 64;
const MAX_SIGNATURE_BYTES: usize = 64;

/// What a member may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    Member,
    /// May remove members and make admins.
    Admin,
}

/// One member of a roster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RosterEntry {
    pub peer: PeerId,
    pub role: Role,
    /// The age X25519 recipient lockboxes are encrypted to.
    pub recipient: String,
}

/// What an author states at a change (before signing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    pub room_id: [u8; ROOM_ID_BYTES],
    pub generation: u64,
    pub parent: EpochId,
    pub key: EpochKey,
    pub members: Vec<RosterEntry>,
    pub removed: Vec<PeerId>,
}

/// A verified, signed statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rotation {
    bytes: Vec<u8>,
    author: PeerId,
    statement: Statement,
}

/// Why bytes are not a genuine rotation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RotationError {
    #[error("unknown rotation version {0}")]
    UnknownVersion(u8),
    #[error("rotation ends early")]
    Truncated,
    #[error("rotation has {0} bytes after its end")]
    TrailingBytes(usize),
    #[error("rotation's {0} is not valid")]
    Invalid(&'static str),
    #[error("{what}: {count}, outside 1..={max}")]
    Count {
        what: &'static str,
        count: usize,
        max: usize,
    },
    #[error("members and removed peers must be sorted, distinct and apart")]
    NotCanonical,
    #[error("the signature does not match the author's key and the content")]
    BadSignature,
    #[error("cannot sign: {0}")]
    Signing(String),
}

impl Rotation {
    /// Signs `statement` as the owner of `keypair`.
    pub fn sign(keypair: &Keypair, mut statement: Statement) -> Result<Self, RotationError> {
        statement.members.sort_by_key(|m| m.peer.to_bytes());
        statement.removed.sort_by_key(|p| p.to_bytes());
        check_canonical(&statement)?;
        let mut out = vec![VERSION];
        out.extend_from_slice(&statement.room_id);
        out.extend_from_slice(&statement.generation.to_be_bytes());
        out.extend_from_slice(&statement.parent);
        out.extend_from_slice(statement.key.as_bytes());
        short(&mut out, &keypair.public().encode_protobuf(), "author key")?;
        out.extend_from_slice(&(statement.members.len() as u16).to_be_bytes());
        for m in &statement.members {
            short(&mut out, &m.peer.to_bytes(), "peer id")?;
            out.push(match m.role {
                Role::Member => 0,
                Role::Admin => 1,
            });
            if m.recipient.len() > MAX_RECIPIENT_CHARS || !m.recipient.is_ascii() {
                return Err(RotationError::Invalid("recipient"));
            }
            short(&mut out, m.recipient.as_bytes(), "recipient")?;
        }
        out.extend_from_slice(&(statement.removed.len() as u16).to_be_bytes());
        for p in &statement.removed {
            short(&mut out, &p.to_bytes(), "peer id")?;
        }
        let signature = keypair
            .sign(&signed(&out))
            .map_err(|e| RotationError::Signing(e.to_string()))?;
        short(&mut out, &signature, "signature")?;
        Ok(Self {
            bytes: out,
            author: keypair.public().to_peer_id(),
            statement,
        })
    }

    /// Reads and verifies a rotation.
    pub fn open(bytes: &[u8]) -> Result<Self, RotationError> {
        let mut r = Reader(bytes);
        let version = r.u8()?;
        if version != VERSION {
            return Err(RotationError::UnknownVersion(version));
        }
        let room_id = r.array::<ROOM_ID_BYTES>()?;
        let generation = u64::from_be_bytes(r.array::<8>()?);
        let parent = r.array::<EPOCH_ID_BYTES>()?;
        let key = EpochKey::from_bytes(r.array::<32>()?);
        let author_key = read_short(&mut r, MAX_KEY_BYTES, "author key")?;
        let members_len = usize::from(u16::from_be_bytes(r.array::<2>()?));
        if members_len == 0 || members_len > MAX_ROSTER {
            return Err(RotationError::Count {
                what: "members",
                count: members_len,
                max: MAX_ROSTER,
            });
        }
        let mut members = Vec::with_capacity(members_len);
        for _ in 0..members_len {
            let peer = read_peer(&mut r)?;
            let role = match r.u8()? {
                0 => Role::Member,
                1 => Role::Admin,
                _ => return Err(RotationError::Invalid("role")),
            };
            let recipient = read_short(&mut r, MAX_RECIPIENT_CHARS, "recipient")?;
            let recipient = std::str::from_utf8(recipient)
                .ok()
                .filter(|s| s.is_ascii() && !s.is_empty())
                .ok_or(RotationError::Invalid("recipient"))?
                .to_owned();
            members.push(RosterEntry {
                peer,
                role,
                recipient,
            });
        }
        let removed_len = usize::from(u16::from_be_bytes(r.array::<2>()?));
        if removed_len > MAX_REMOVED {
            return Err(RotationError::Count {
                what: "removed peers",
                count: removed_len,
                max: MAX_REMOVED,
            });
        }
        let mut removed = Vec::with_capacity(removed_len);
        for _ in 0..removed_len {
            removed.push(read_peer(&mut r)?);
        }
        let signed_len = bytes.len() - r.0.len();
        let signature = read_short(&mut r, MAX_SIGNATURE_BYTES, "signature")?;
        if !r.0.is_empty() {
            return Err(RotationError::TrailingBytes(r.0.len()));
        }
        let public = PublicKey::try_decode_protobuf(author_key)
            .ok()
            .filter(|k| k.key_type() == KeyType::Ed25519)
            .ok_or(RotationError::Invalid("author key"))?;
        let signed_part = bytes.get(..signed_len).ok_or(RotationError::Truncated)?;
        if !public.verify(&signed(signed_part), signature) {
            return Err(RotationError::BadSignature);
        }
        let statement = Statement {
            room_id,
            generation,
            parent,
            key,
            members,
            removed,
        };
        check_canonical(&statement)?;
        Ok(Self {
            bytes: bytes.to_vec(),
            author: public.to_peer_id(),
            statement,
        })
    }

    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    pub fn author(&self) -> PeerId {
        self.author
    }

    pub fn statement(&self) -> &Statement {
        &self.statement
    }
}

fn signed(bytes: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(labels::PRIVATE_ROTATION.len() + bytes.len());
    m.extend_from_slice(labels::PRIVATE_ROTATION);
    m.extend_from_slice(bytes);
    m
}

fn check_canonical(s: &Statement) -> Result<(), RotationError> {
    if s.members.is_empty() || s.members.len() > MAX_ROSTER {
        return Err(RotationError::Count {
            what: "members",
            count: s.members.len(),
            max: MAX_ROSTER,
        });
    }
    if s.removed.len() > MAX_REMOVED {
        return Err(RotationError::Count {
            what: "removed peers",
            count: s.removed.len(),
            max: MAX_REMOVED,
        });
    }
    let members: Vec<Vec<u8>> = s.members.iter().map(|m| m.peer.to_bytes()).collect();
    let removed: Vec<Vec<u8>> = s.removed.iter().map(|p| p.to_bytes()).collect();
    let strictly_sorted = |v: &[Vec<u8>]| v.windows(2).all(|w| w[0] < w[1]);
    if !strictly_sorted(&members)
        || !strictly_sorted(&removed)
        || members.iter().any(|m| removed.binary_search(m).is_ok())
    {
        return Err(RotationError::NotCanonical);
    }
    Ok(())
}

fn short(out: &mut Vec<u8>, bytes: &[u8], what: &'static str) -> Result<(), RotationError> {
    let len = u8::try_from(bytes.len()).map_err(|_| RotationError::Invalid(what))?;
    out.push(len);
    out.extend_from_slice(bytes);
    Ok(())
}

impl From<EndsEarly> for RotationError {
    fn from(_: EndsEarly) -> Self {
        RotationError::Truncated
    }
}

/// A length-prefixed field of at most `max` bytes.
fn read_short<'a>(
    r: &mut Reader<'a>,
    max: usize,
    what: &'static str,
) -> Result<&'a [u8], RotationError> {
    let field = r.short()?;
    if field.len() > max {
        return Err(RotationError::Invalid(what));
    }
    Ok(field)
}

fn read_peer(r: &mut Reader<'_>) -> Result<PeerId, RotationError> {
    let bytes = read_short(r, MAX_PEER_ID_BYTES, "peer id")?;
    PeerId::from_bytes(bytes).map_err(|_| RotationError::Invalid("peer id"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer() -> (Keypair, PeerId) {
        let k = Keypair::generate_ed25519();
        let p = k.public().to_peer_id();
        (k, p)
    }

    fn statement(members: &[PeerId], removed: &[PeerId]) -> Statement {
        Statement {
            room_id: [5; ROOM_ID_BYTES],
            generation: 3,
            parent: [6; EPOCH_ID_BYTES],
            key: EpochKey::from_bytes([7; 32]),
            members: members
                .iter()
                .map(|p| RosterEntry {
                    peer: *p,
                    role: Role::Member,
                    recipient: "age1recipient".into(),
                })
                .collect(),
            removed: removed.to_vec(),
        }
    }

    #[test]
    fn a_signed_rotation_opens_with_its_author_and_statement() {
        let (k, a) = peer();
        let (_, b) = peer();
        let (_, gone) = peer();
        let r = Rotation::sign(&k, statement(&[b, a], &[gone])).unwrap();
        let opened = Rotation::open(r.bytes()).unwrap();
        assert_eq!(opened.author(), a);
        assert_eq!(opened, r);
        assert_eq!(opened.statement().members.len(), 2);
    }

    #[test]
    fn a_changed_byte_or_a_cut_is_refused_and_nothing_panics() {
        let (k, a) = peer();
        let r = Rotation::sign(&k, statement(&[a], &[])).unwrap();
        let bytes = r.bytes().to_vec();
        for i in 0..bytes.len() {
            let mut bent = bytes.clone();
            bent[i] ^= 0x10;
            assert!(Rotation::open(&bent).is_err(), "byte {i} changed");
        }
        for n in 0..bytes.len() {
            assert!(Rotation::open(&bytes[..n]).is_err(), "cut at {n}");
        }
        let mut trailing = bytes.clone();
        trailing.push(0);
        assert_eq!(
            Rotation::open(&trailing),
            Err(RotationError::TrailingBytes(1))
        );
    }

    #[test]
    fn a_peer_both_member_and_removed_or_twice_a_member_is_refused() {
        let (k, a) = peer();
        assert_eq!(
            Rotation::sign(&k, statement(&[a], &[a])),
            Err(RotationError::NotCanonical)
        );
        assert_eq!(
            Rotation::sign(&k, statement(&[a, a], &[])),
            Err(RotationError::NotCanonical)
        );
        assert!(matches!(
            Rotation::sign(&k, statement(&[], &[])),
            Err(RotationError::Count { .. })
        ));
    }

    #[test]
    fn a_full_roster_fits_in_one_gossip_message_with_its_lockbox() {
        let (k, _) = peer();
        let members: Vec<PeerId> = (0..MAX_ROSTER).map(|_| peer().1).collect();
        let mut s = statement(&members, &[]);
        for m in &mut s.members {
            m.recipient = "a".repeat(62);
        }
        let r = Rotation::sign(&k, s).unwrap();
        // About 100 bytes of age stanza per recipient on top.
        let lockbox = r.bytes().len() + 100 * MAX_ROSTER + 200;
        assert!(
            lockbox < crate::contract::MAX_GOSSIP_FRAME_BYTES,
            "{lockbox}"
        );
    }
}
