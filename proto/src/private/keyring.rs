//! The rules every member of a private room follows to agree on one key
//! without any ordering service: which rotations it accepts, which epoch it
//! sends under, and when its roster needs a new key. Free of I/O and of
//! clocks: a second implementation that follows these rules converges with
//! this one.
//!
//! - A rotation is accepted if it names this room, its parent is an epoch
//!   already held (or it is the genesis a member was welcomed with), and its
//!   author is in the parent's roster. Any member may add members (an
//!   invite). Removing a member, or making an admin, needs an admin of the
//!   parent, except that anyone may drop a peer already known to be removed
//!   (that is a re-key after concurrent changes, not a new removal).
//! - Removals are permanent here: a removed peer never counts as a member
//!   again (coming back takes an invite and a new room membership record,
//!   which is the node's business).
//! - The *merged roster* is the union of the members of every head (an
//!   epoch no held epoch names as parent), less every known removal, each
//!   member with the highest role any head gives it.
//! - The epoch to send under is, among the heads whose roster holds no
//!   removed peer, the one with the highest (generation, epoch id); none
//!   while every head holds one (until the re-key that merges them). An
//!   epoch a held epoch follows is never sent under again: its members
//!   have moved on, and listen on the newest epochs only.
//! - The room needs a new key when there is no such epoch or its roster is
//!   not the merged one. The members who may make it are those of the
//!   merged roster; [`Keyring::rekey_rank`] orders them, so the first (lowest
//!   peer id present) does it at once and the others only if it did not.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use libp2p_identity::PeerId;

use super::rotation::{Role, RosterEntry, Rotation, Statement};
use super::{EPOCH_ID_BYTES, EpochId, EpochKey, ROOM_ID_BYTES};

/// Most epochs a keyring holds; the oldest (lowest generation) go first.
pub const MAX_EPOCHS: usize = 64;
/// Most rotations held back until what justifies them arrives (their parent,
/// or the admin's rotation that removed a peer they drop); the oldest go.
pub const MAX_DEFERRED: usize = 16;

/// One epoch a member holds the key of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Epoch {
    pub id: EpochId,
    pub parent: EpochId,
    pub generation: u64,
    pub key: EpochKey,
    pub author: PeerId,
    /// Sorted by peer id bytes.
    pub members: Vec<RosterEntry>,
}

impl Epoch {
    fn role_of(&self, peer: &PeerId) -> Option<Role> {
        self.members
            .iter()
            .find(|m| m.peer == *peer)
            .map(|m| m.role)
    }
}

/// Why a rotation is not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("the rotation is for another room")]
    OtherRoom,
    #[error("the rotation follows an epoch this member does not hold")]
    UnknownParent,
    #[error("the rotation's author is not a member of the epoch it follows")]
    NotAMember,
    #[error("only an admin may remove a member or make an admin")]
    NotAllowed,
    #[error("the rotation's generation is not one more than its parent's")]
    BadGeneration,
    #[error("the rotation gives a removed peer back its membership")]
    Readmits,
    #[error("this member is not in the rotation's roster")]
    NotForUs,
}

/// What a member holds of one private room's keys.
#[derive(Debug, Clone)]
pub struct Keyring {
    room_id: [u8; ROOM_ID_BYTES],
    local: PeerId,
    epochs: HashMap<EpochId, Epoch>,
    removed: BTreeSet<Vec<u8>>,
    /// Rotations refused for now (unknown parent, or a removal not yet
    /// known to be an admin's), tried again after each one taken.
    deferred: Vec<Rotation>,
}

/// The parent a room's first epoch names.
pub const GENESIS_PARENT: EpochId = [0; EPOCH_ID_BYTES];

impl Keyring {
    /// A keyring holding the first epoch this member got: the genesis it
    /// made, or the rotation it was welcomed with (trusted because it came
    /// from the member whose invite it redeemed).
    pub fn new(local: PeerId, first: &Rotation) -> Result<Self, Refusal> {
        let s = first.statement();
        let mut ring = Self {
            room_id: s.room_id,
            local,
            epochs: HashMap::new(),
            removed: BTreeSet::new(),
            deferred: Vec::new(),
        };
        ring.insert(first)?;
        Ok(ring)
    }

    pub fn room_id(&self) -> [u8; ROOM_ID_BYTES] {
        self.room_id
    }

    /// Takes a rotation another member published. `Ok(true)` if it is new.
    /// One that may become acceptable once more arrives (an unknown parent,
    /// a removal not yet known) is held back and tried again after each
    /// rotation taken; its refusal is still returned.
    pub fn accept(&mut self, rotation: &Rotation) -> Result<bool, Refusal> {
        match self.check(rotation) {
            Ok(false) => Ok(false),
            Ok(true) => {
                self.insert(rotation)?;
                self.retry_deferred();
                Ok(true)
            }
            Err(e @ (Refusal::UnknownParent | Refusal::NotAllowed)) => {
                if !self.deferred.iter().any(|d| d.bytes() == rotation.bytes()) {
                    if self.deferred.len() >= MAX_DEFERRED {
                        self.deferred.remove(0);
                    }
                    self.deferred.push(rotation.clone());
                }
                Err(e)
            }
            Err(e) => Err(e),
        }
    }

    fn retry_deferred(&mut self) {
        loop {
            let pending = std::mem::take(&mut self.deferred);
            let mut progress = false;
            for r in pending {
                match self.check(&r) {
                    Ok(true) => progress |= self.insert(&r).is_ok(),
                    Err(Refusal::UnknownParent | Refusal::NotAllowed) => self.deferred.push(r),
                    Ok(false) | Err(_) => {}
                }
            }
            if !progress {
                return;
            }
        }
    }

    /// Whether a rotation may be taken now: `Ok(true)` new, `Ok(false)` held.
    fn check(&self, rotation: &Rotation) -> Result<bool, Refusal> {
        let s = rotation.statement();
        if s.room_id != self.room_id {
            return Err(Refusal::OtherRoom);
        }
        let id = s.key.id();
        if self.epochs.contains_key(&id) {
            return Ok(false);
        }
        let parent = self.epochs.get(&s.parent).ok_or(Refusal::UnknownParent)?;
        if s.generation != parent.generation.saturating_add(1) {
            return Err(Refusal::BadGeneration);
        }
        let author_role = parent
            .role_of(&rotation.author())
            .ok_or(Refusal::NotAMember)?;
        let newly_removed = parent.members.iter().any(|m| {
            !s.members.iter().any(|n| n.peer == m.peer)
                && !self.removed.contains(&m.peer.to_bytes())
        });
        let new_admin = s
            .members
            .iter()
            .any(|n| n.role == Role::Admin && parent.role_of(&n.peer) != Some(Role::Admin));
        // A peer the parent did not hold, known to be removed: a concurrent
        // sibling of the removal may still hold it (it is then no member of
        // any key sent under), but no rotation may bring it back.
        let readmits = s.members.iter().any(|n| {
            parent.role_of(&n.peer).is_none() && self.removed.contains(&n.peer.to_bytes())
        });
        if readmits {
            return Err(Refusal::Readmits);
        }
        // A non-admin may only repeat removals already known.
        let bans = s
            .removed
            .iter()
            .any(|p| !self.removed.contains(&p.to_bytes()));
        if (newly_removed || new_admin || bans) && author_role != Role::Admin {
            return Err(Refusal::NotAllowed);
        }
        Ok(true)
    }

    fn insert(&mut self, rotation: &Rotation) -> Result<(), Refusal> {
        let s: &Statement = rotation.statement();
        if !s.members.iter().any(|m| m.peer == self.local) {
            // Still learn its removals: they are facts about the room.
            self.note_removed(s);
            return Err(Refusal::NotForUs);
        }
        self.note_removed(s);
        let id = s.key.id();
        self.epochs.insert(
            id,
            Epoch {
                id,
                parent: s.parent,
                generation: s.generation,
                key: s.key.clone(),
                author: rotation.author(),
                members: s.members.clone(),
            },
        );
        while self.epochs.len() > MAX_EPOCHS {
            let Some(oldest) = self
                .epochs
                .values()
                .min_by_key(|e| (e.generation, e.id))
                .map(|e| e.id)
            else {
                break;
            };
            self.epochs.remove(&oldest);
        }
        Ok(())
    }

    fn note_removed(&mut self, s: &Statement) {
        for p in &s.removed {
            self.removed.insert(p.to_bytes());
        }
    }

    /// The key of an epoch this member holds (to open a frame).
    pub fn key(&self, id: &EpochId) -> Option<&EpochKey> {
        self.epochs.get(id).map(|e| &e.key)
    }

    /// Every epoch held (to subscribe to their topics).
    pub fn epochs(&self) -> impl Iterator<Item = &Epoch> {
        self.epochs.values()
    }

    /// Whether `peer` is known to be removed.
    pub fn is_removed(&self, peer: &PeerId) -> bool {
        self.removed.contains(&peer.to_bytes())
    }

    /// The epoch to send under: see the module docs.
    pub fn current(&self) -> Option<&Epoch> {
        self.heads()
            .filter(|e| {
                !e.members
                    .iter()
                    .any(|m| self.removed.contains(&m.peer.to_bytes()))
            })
            .max_by_key(|e| (e.generation, e.id))
    }

    fn heads(&self) -> impl Iterator<Item = &Epoch> {
        self.epochs
            .values()
            .filter(|e| !self.epochs.values().any(|c| c.parent == e.id))
    }

    /// The roster every member should end up on: see the module docs.
    pub fn merged_roster(&self) -> Vec<RosterEntry> {
        let mut merged: BTreeMap<Vec<u8>, RosterEntry> = BTreeMap::new();
        for head in self.heads() {
            for m in &head.members {
                let key = m.peer.to_bytes();
                if self.removed.contains(&key) {
                    continue;
                }
                merged
                    .entry(key)
                    .and_modify(|e| e.role = e.role.max(m.role))
                    .or_insert_with(|| m.clone());
            }
        }
        merged.into_values().collect()
    }

    /// Whether the room needs a new key (see the module docs).
    pub fn needs_rekey(&self) -> bool {
        let merged = self.merged_roster();
        self.current().is_none_or(|c| c.members != merged)
    }

    /// The next rotation's statement from the merged roster (the caller
    /// draws the key and signs): its parent is the highest head by
    /// (generation, epoch id), even one that holds a removed peer, since
    /// after concurrent removals every head may.
    pub fn rekey(&self, key: EpochKey) -> Option<Statement> {
        let parent = self.heads().max_by_key(|e| (e.generation, e.id))?;
        Some(Statement {
            room_id: self.room_id,
            generation: parent.generation.saturating_add(1),
            parent: parent.id,
            key,
            members: self.merged_roster(),
            removed: self
                .removed
                .iter()
                .filter_map(|b| PeerId::from_bytes(b).ok())
                .collect(),
        })
    }

    /// This member's place among those of `present` (and itself) who are in
    /// the merged roster, lowest peer id first: 0 re-keys at once, rank k
    /// waits k steps. `None` if it may not re-key.
    pub fn rekey_rank(&self, present: &[PeerId]) -> Option<usize> {
        let merged = self.merged_roster();
        let me = self.local.to_bytes();
        if !merged.iter().any(|m| m.peer == self.local) {
            return None;
        }
        let below = merged
            .iter()
            .filter(|m| m.peer != self.local && present.contains(&m.peer))
            .filter(|m| m.peer.to_bytes() < me)
            .count();
        Some(below)
    }
}

#[cfg(test)]
mod tests;
