//! The private rooms a node is in, free of I/O: each room's keyring (the
//! rules in `palaver_proto::private::keyring`), the invite tokens this node
//! issued, the lockboxes it keeps to hand to members who missed a rotation,
//! and when it should re-key. The event loop feeds it what arrived and the
//! time, draws the random keys and tokens, signs, seals and publishes; this
//! core decides. A room's record (what survives a restart) is encoded here
//! and kept by the store, encrypted like everything else.
//!
//! A private room is named by its handle `NAME~TAG` (see
//! [`RoomName::private`]), which every member derives alike from the name in
//! its invite and the room id, and which no public room can have.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use libp2p::PeerId;
use palaver_proto::RoomName;
use palaver_proto::private::keyring::{Epoch, GENESIS_PARENT, Keyring, Refusal};
use palaver_proto::private::redeem::Reason;
use palaver_proto::private::rotation::{MAX_ROSTER, Role, RosterEntry, Rotation, Statement};
use palaver_proto::private::{EpochId, EpochKey, ROOM_ID_BYTES, TOKEN_BYTES};
use serde::{Deserialize, Serialize};

/// How long an invite code admits someone.
pub const INVITE_TTL_MS: u64 = 7 * 24 * 3600 * 1000;
/// Most invite tokens a room remembers; the oldest spent ones go first.
pub const MAX_INVITES: usize = 64;
/// Epochs of a room whose topics a member listens on: the current one and
/// those before it, so that a member a rotation has not yet reached is
/// still heard, and a lockbox published on the old topic arrives.
pub const LISTENED_EPOCHS: usize = palaver_proto::contract::LISTENED_EPOCHS;
/// Lockboxes a member keeps to publish again for a member who comes back
/// on an older epoch's topic.
pub const KEPT_LOCKBOXES: usize = 4;
/// How long a member of rank k waits before it re-keys in place of those
/// ranked before it (k steps).
pub const REKEY_STEP: Duration = Duration::from_secs(3);
/// How often a member sends the room's current key again to members it
/// hears on an older epoch (they missed a rotation: offline, or its
/// lockbox was never published because its author was killed).
pub const NUDGE_INTERVAL: Duration = Duration::from_secs(10);
/// Version of a room's stored record.
const RECORD_VERSION: u8 = 1;

/// What became of an invite token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenState {
    Open,
    Used,
    Revoked,
}

/// An invite this node issued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    pub token: [u8; TOKEN_BYTES],
    pub expires_ms: u64,
    pub state: TokenState,
}

#[derive(Debug, Clone)]
struct Room {
    /// The name its members know it by (the handle without its tag).
    name: RoomName,
    keyring: Keyring,
    /// The rotations behind the epochs held, for the record.
    rotations: Vec<Rotation>,
    invites: Vec<Token>,
    /// Lockbox frames to publish again, newest last.
    lockboxes: VecDeque<Vec<u8>>,
    /// When this member re-keys the room if no one ranked before it has.
    rekey_at: Option<Instant>,
    /// Notes to removed members, to send again if they still speak.
    notices: VecDeque<Vec<u8>>,
    /// When the current key was last sent again.
    nudged_at: Option<Instant>,
    /// The sending epoch last reported.
    sending: Option<EpochId>,
}

/// The current key sent again to members heard on an older epoch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nudge {
    /// The signed rotation of the current epoch.
    pub rotation: Vec<u8>,
    /// Its members but this node.
    pub recipients: Vec<String>,
    /// Notes to removed members.
    pub notices: Vec<Vec<u8>>,
}

/// Why a private room's command cannot be done.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PrivateError {
    #[error("not in a private room {0}")]
    NotPrivate(RoomName),
    #[error("already in a private room {0}: it has the same name and tag")]
    HandleTaken(RoomName),
    #[error("only an admin of {0} may remove a member")]
    NotAdmin(RoomName),
    #[error("{peer} is not a member of {room}")]
    NotAMember { room: RoomName, peer: PeerId },
    #[error("a member cannot remove itself; /leave {0} instead")]
    KickSelf(RoomName),
    #[error("no invite of this node has that code")]
    UnknownInvite,
    #[error("the room's keys do not fit together: {0}")]
    Keys(#[from] Refusal),
    #[error("the room's name with its tag is not a valid handle: {0}")]
    Handle(String),
}

/// What taking a rotation did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Taken {
    /// The rotation was new to this member.
    pub new: bool,
    /// It removed this member: the room is gone for it.
    pub removed_self: bool,
}

/// Every private room this node is in.
#[derive(Debug)]
pub struct PrivateRooms {
    local: PeerId,
    rooms: BTreeMap<RoomName, Room>,
    /// The topics listened on, and the room and epoch of each.
    topics: HashMap<String, (RoomName, EpochId)>,
}

impl PrivateRooms {
    pub fn new(local: PeerId) -> Self {
        Self {
            local,
            rooms: BTreeMap::new(),
            topics: HashMap::new(),
        }
    }

    /// The private rooms held, by handle.
    pub fn handles(&self) -> impl Iterator<Item = &RoomName> {
        self.rooms.keys()
    }

    pub fn contains(&self, handle: &RoomName) -> bool {
        self.rooms.contains_key(handle)
    }

    /// The handle of the room with this id, if this node is in it.
    pub fn handle_of(&self, room_id: &[u8; ROOM_ID_BYTES]) -> Option<&RoomName> {
        self.rooms
            .iter()
            .find(|(_, r)| r.keyring.room_id() == *room_id)
            .map(|(h, _)| h)
    }

    pub fn room_id(&self, handle: &RoomName) -> Option<[u8; ROOM_ID_BYTES]> {
        self.rooms.get(handle).map(|r| r.keyring.room_id())
    }

    /// Takes the first epoch of a room: the genesis this node made
    /// (`/create`) or the rotation it was welcomed with (`/join CODE`).
    pub fn add(&mut self, name: &RoomName, first: Rotation) -> Result<RoomName, PrivateError> {
        let keyring = Keyring::new(self.local, &first)?;
        let handle = RoomName::private(name, &keyring.room_id())
            .map_err(|e| PrivateError::Handle(e.to_string()))?;
        if self.rooms.contains_key(&handle) {
            return Err(PrivateError::HandleTaken(handle));
        }
        self.rooms.insert(
            handle.clone(),
            Room {
                name: name.clone(),
                keyring,
                rotations: vec![first],
                invites: Vec::new(),
                lockboxes: VecDeque::new(),
                rekey_at: None,
                notices: VecDeque::new(),
                nudged_at: None,
                sending: None,
            },
        );
        Ok(handle)
    }

    /// Forgets a room (left, or removed): its keys and tokens go. Returns
    /// the topics to stop listening on.
    pub fn remove(&mut self, handle: &RoomName) -> Vec<String> {
        self.rooms.remove(handle);
        self.remove_topics(handle)
    }

    // ---- topics and keys ----

    /// The topics a room should be listened on now: (to subscribe, to leave).
    pub fn sync_topics(&mut self, handle: &RoomName) -> (Vec<String>, Vec<String>) {
        let Some(room) = self.rooms.get(handle) else {
            return (Vec::new(), self.remove_topics(handle));
        };
        let mut epochs: Vec<&Epoch> = room.keyring.epochs().collect();
        epochs.sort_by_key(|e| std::cmp::Reverse((e.generation, e.id)));
        let wanted: HashMap<String, EpochId> = epochs
            .into_iter()
            .take(LISTENED_EPOCHS)
            .map(|e| (e.key.topic(), e.id))
            .collect();
        let mut leave = Vec::new();
        self.topics.retain(|t, (h, _)| {
            let keep = h != handle || wanted.contains_key(t);
            if !keep {
                leave.push(t.clone());
            }
            keep
        });
        let mut join = Vec::new();
        for (t, id) in wanted {
            if !self.topics.contains_key(&t) {
                self.topics.insert(t.clone(), (handle.clone(), id));
                join.push(t);
            }
        }
        (join, leave)
    }

    fn remove_topics(&mut self, handle: &RoomName) -> Vec<String> {
        let gone: Vec<String> = self
            .topics
            .iter()
            .filter(|(_, (h, _))| h == handle)
            .map(|(t, _)| t.clone())
            .collect();
        for t in &gone {
            self.topics.remove(t);
        }
        gone
    }

    /// The room a topic listened on belongs to.
    pub fn room_of_topic(&self, topic: &str) -> Option<&RoomName> {
        self.topics.get(topic).map(|(h, _)| h)
    }

    /// The topic of one of a room's epochs.
    pub fn epoch_topic(&self, handle: &RoomName, epoch: &EpochId) -> Option<String> {
        self.key(handle, epoch).map(EpochKey::topic)
    }

    /// The key of one of a room's epochs.
    pub fn key(&self, handle: &RoomName, epoch: &EpochId) -> Option<&EpochKey> {
        self.rooms.get(handle)?.keyring.key(epoch)
    }

    /// The epoch a room's messages go out under.
    pub fn current(&self, handle: &RoomName) -> Option<&Epoch> {
        self.rooms.get(handle)?.keyring.current()
    }

    /// Whether `peer` is a member now (in the merged roster).
    pub fn is_member(&self, handle: &RoomName, peer: &PeerId) -> bool {
        self.rooms.get(handle).is_some_and(|r| {
            !r.keyring.is_removed(peer) && r.keyring.merged_roster().iter().any(|m| m.peer == *peer)
        })
    }

    /// Everyone who was a member of an epoch held: who may have written a
    /// message in the room (a removed member's old messages included).
    pub fn authors(&self, handle: &RoomName) -> HashSet<PeerId> {
        self.rooms
            .get(handle)
            .map(|r| {
                r.keyring
                    .epochs()
                    .flat_map(|e| e.members.iter().map(|m| m.peer))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The members now, with their roles.
    pub fn roster(&self, handle: &RoomName) -> Vec<RosterEntry> {
        self.rooms
            .get(handle)
            .map(|r| r.keyring.merged_roster())
            .unwrap_or_default()
    }

    // ---- invites ----

    /// Issues an invite token (drawn by the caller); returns the room's
    /// name, id and the code's expiry.
    pub fn invite(
        &mut self,
        handle: &RoomName,
        token: [u8; TOKEN_BYTES],
        now_ms: u64,
    ) -> Result<(RoomName, [u8; ROOM_ID_BYTES], u64), PrivateError> {
        let room = self
            .rooms
            .get_mut(handle)
            .ok_or_else(|| PrivateError::NotPrivate(handle.clone()))?;
        let expires_ms = now_ms.saturating_add(INVITE_TTL_MS);
        if room.invites.len() >= MAX_INVITES {
            // Spent or expired first, else the oldest.
            let spent = room
                .invites
                .iter()
                .position(|t| t.state != TokenState::Open || t.expires_ms <= now_ms)
                .unwrap_or(0);
            room.invites.remove(spent);
        }
        room.invites.push(Token {
            token,
            expires_ms,
            state: TokenState::Open,
        });
        Ok((room.name.clone(), room.keyring.room_id(), expires_ms))
    }

    /// Revokes one of this node's invite tokens.
    pub fn revoke(
        &mut self,
        room_id: &[u8; ROOM_ID_BYTES],
        token: &[u8; TOKEN_BYTES],
    ) -> Result<RoomName, PrivateError> {
        let (handle, room) = self
            .rooms
            .iter_mut()
            .find(|(_, r)| r.keyring.room_id() == *room_id)
            .ok_or(PrivateError::UnknownInvite)?;
        let t = room
            .invites
            .iter_mut()
            .find(|t| t.token == *token)
            .ok_or(PrivateError::UnknownInvite)?;
        t.state = TokenState::Revoked;
        Ok(handle.clone())
    }

    /// A peer redeems a token: the statement that admits it (with `key`, a
    /// fresh epoch key), or why not. The token is spent at once.
    pub fn redeem(
        &mut self,
        peer: PeerId,
        room_id: &[u8; ROOM_ID_BYTES],
        token: &[u8; TOKEN_BYTES],
        recipient: String,
        key: EpochKey,
        now_ms: u64,
    ) -> Result<(RoomName, Statement), Reason> {
        let (handle, room) = self
            .rooms
            .iter_mut()
            .find(|(_, r)| r.keyring.room_id() == *room_id)
            .ok_or(Reason::Unknown)?;
        let t = room
            .invites
            .iter_mut()
            .find(|t| t.token == *token)
            .ok_or(Reason::Unknown)?;
        match t.state {
            TokenState::Used => return Err(Reason::Used),
            TokenState::Revoked => return Err(Reason::Revoked),
            TokenState::Open if t.expires_ms <= now_ms => return Err(Reason::Expired),
            TokenState::Open => {}
        }
        // A removed peer does not come back by an old code.
        if room.keyring.is_removed(&peer) {
            return Err(Reason::Revoked);
        }
        let mut statement = room.keyring.rekey(key).ok_or(Reason::Busy)?;
        if !statement.members.iter().any(|m| m.peer == peer) {
            if statement.members.len() >= MAX_ROSTER {
                return Err(Reason::Full);
            }
            statement.members.push(RosterEntry {
                peer,
                role: Role::Member,
                recipient,
            });
        }
        t.state = TokenState::Used;
        Ok((handle.clone(), statement))
    }

    // ---- removals and re-keys ----

    /// The statement that removes `peer` (under `key`, fresh), if this node
    /// may: and the recipient to tell the removed member at.
    pub fn kick(
        &self,
        handle: &RoomName,
        peer: PeerId,
        key: EpochKey,
    ) -> Result<(Statement, Option<String>), PrivateError> {
        let room = self
            .rooms
            .get(handle)
            .ok_or_else(|| PrivateError::NotPrivate(handle.clone()))?;
        if peer == self.local {
            return Err(PrivateError::KickSelf(handle.clone()));
        }
        let roster = room.keyring.merged_roster();
        self.check_admin(handle, room)?;
        let Some(gone) = roster.iter().find(|m| m.peer == peer) else {
            return Err(PrivateError::NotAMember {
                room: handle.clone(),
                peer,
            });
        };
        let recipient = gone.recipient.clone();
        let mut statement = room
            .keyring
            .rekey(key)
            .ok_or_else(|| PrivateError::NotPrivate(handle.clone()))?;
        statement.members.retain(|m| m.peer != peer);
        statement.removed.push(peer);
        Ok((statement, Some(recipient)))
    }

    /// The statement that makes `peer` an admin (under `key`, fresh), if
    /// this node may.
    pub fn promote(
        &self,
        handle: &RoomName,
        peer: PeerId,
        key: EpochKey,
    ) -> Result<Statement, PrivateError> {
        let room = self
            .rooms
            .get(handle)
            .ok_or_else(|| PrivateError::NotPrivate(handle.clone()))?;
        self.check_admin(handle, room)?;
        let mut statement = room
            .keyring
            .rekey(key)
            .ok_or_else(|| PrivateError::NotPrivate(handle.clone()))?;
        let member = statement
            .members
            .iter_mut()
            .find(|m| m.peer == peer)
            .ok_or_else(|| PrivateError::NotAMember {
                room: handle.clone(),
                peer,
            })?;
        member.role = Role::Admin;
        Ok(statement)
    }

    fn check_admin(&self, handle: &RoomName, room: &Room) -> Result<(), PrivateError> {
        let admin = room
            .keyring
            .current()
            .and_then(|e| e.members.iter().find(|m| m.peer == self.local))
            .is_some_and(|m| m.role == Role::Admin);
        if admin {
            Ok(())
        } else {
            Err(PrivateError::NotAdmin(handle.clone()))
        }
    }

    /// Whether a room's sending epoch changed since this was last asked:
    /// its member count if so.
    pub fn sending_changed(&mut self, handle: &RoomName) -> Option<usize> {
        let room = self.rooms.get_mut(handle)?;
        let current = room.keyring.current().map(|e| (e.id, e.members.len()));
        let id = current.map(|(id, _)| id);
        if room.sending == id {
            return None;
        }
        room.sending = id;
        current.map(|(_, n)| n)
    }

    /// The note that tells a removed member it is out: a rotation of the
    /// epoch it held, under a key no one uses, that keeps only this admin
    /// and names it removed. It can open it (it is sealed to it alone) and
    /// learns nothing but that.
    pub fn removal_notice(
        &self,
        handle: &RoomName,
        removed: &Statement,
        peer: PeerId,
        decoy: EpochKey,
    ) -> Option<Statement> {
        let room = self.rooms.get(handle)?;
        let me = room
            .keyring
            .merged_roster()
            .into_iter()
            .find(|m| m.peer == self.local)?;
        Some(Statement {
            room_id: removed.room_id,
            generation: removed.generation,
            parent: removed.parent,
            key: decoy,
            members: vec![me],
            removed: vec![peer],
        })
    }

    /// Takes a rotation: one this node signed (accepted as any other), or
    /// one a member published.
    pub fn take(&mut self, handle: &RoomName, rotation: Rotation) -> Result<Taken, PrivateError> {
        let local = self.local;
        let room = self
            .rooms
            .get_mut(handle)
            .ok_or_else(|| PrivateError::NotPrivate(handle.clone()))?;
        let result = room.keyring.accept(&rotation);
        if room.keyring.is_removed(&local) {
            return Ok(Taken {
                new: true,
                removed_self: true,
            });
        }
        let new = match result {
            Ok(new) => new,
            Err(Refusal::NotForUs) => false,
            Err(e) => return Err(e.into()),
        };
        if new {
            room.rotations.push(rotation);
            let held: HashSet<EpochId> = room.keyring.epochs().map(|e| e.id).collect();
            room.rotations
                .retain(|r| held.contains(&r.statement().key.id()));
        }
        Ok(Taken {
            new,
            removed_self: false,
        })
    }

    /// Plans this member's re-key of `handle` if the room needs one: at once
    /// if it ranks first among the members `present`, later otherwise.
    pub fn plan_rekey(&mut self, handle: &RoomName, present: &[PeerId], now: Instant) {
        let Some(room) = self.rooms.get_mut(handle) else {
            return;
        };
        room.rekey_at = if room.keyring.needs_rekey() {
            room.keyring.rekey_rank(present).map(|rank| {
                now + REKEY_STEP.saturating_mul(u32::try_from(rank).unwrap_or(u32::MAX))
            })
        } else {
            None
        };
    }

    /// The rooms whose re-key is due, with the statement for each (under
    /// the keys `draw` gives).
    pub fn due_rekeys(
        &mut self,
        now: Instant,
        mut draw: impl FnMut() -> Option<EpochKey>,
    ) -> Vec<(RoomName, Statement)> {
        let mut due = Vec::new();
        for (handle, room) in &mut self.rooms {
            if room.rekey_at.is_some_and(|at| at <= now) {
                room.rekey_at = None;
                if room.keyring.needs_rekey()
                    && let Some(key) = draw()
                    && let Some(s) = room.keyring.rekey(key)
                {
                    due.push((handle.clone(), s));
                }
            }
        }
        due
    }

    /// The earliest planned re-key.
    pub fn poll_at(&self) -> Option<Instant> {
        self.rooms.values().filter_map(|r| r.rekey_at).min()
    }

    // ---- lockboxes kept ----

    /// Keeps a lockbox frame to publish again later.
    pub fn keep_lockbox(&mut self, handle: &RoomName, frame: Vec<u8>) {
        if let Some(room) = self.rooms.get_mut(handle) {
            if room.lockboxes.contains(&frame) {
                return;
            }
            if room.lockboxes.len() >= KEPT_LOCKBOXES {
                room.lockboxes.pop_front();
            }
            room.lockboxes.push_back(frame);
        }
    }

    /// Keeps a note to a removed member, to send again if it still speaks.
    pub fn keep_notice(&mut self, handle: &RoomName, frame: Vec<u8>) {
        if let Some(room) = self.rooms.get_mut(handle) {
            if room.notices.len() >= KEPT_LOCKBOXES {
                room.notices.pop_front();
            }
            room.notices.push_back(frame);
        }
    }

    /// A frame under `epoch` arrived: if that is not the current epoch, its
    /// sender missed a rotation, and (at most every [`NUDGE_INTERVAL`]) the
    /// current key is sent again where it speaks.
    pub fn heard_on(&mut self, handle: &RoomName, epoch: &EpochId, now: Instant) -> Option<Nudge> {
        let local = self.local;
        let room = self.rooms.get_mut(handle)?;
        let current = room.keyring.current()?;
        if current.id == *epoch
            || room
                .nudged_at
                .is_some_and(|at| now.saturating_duration_since(at) < NUDGE_INTERVAL)
        {
            return None;
        }
        let rotation = room
            .rotations
            .iter()
            .find(|r| r.statement().key.id() == current.id)?
            .bytes()
            .to_vec();
        let recipients = current
            .members
            .iter()
            .filter(|m| m.peer != local)
            .map(|m| m.recipient.clone())
            .collect();
        room.nudged_at = Some(now);
        Some(Nudge {
            rotation,
            recipients,
            notices: room.notices.iter().cloned().collect(),
        })
    }

    /// What to publish on `topic` for a member who just came to it: the
    /// kept lockboxes, if it is an older epoch's topic of a room.
    pub fn lockboxes_for(&self, topic: &str) -> Vec<Vec<u8>> {
        let Some((handle, epoch)) = self.topics.get(topic) else {
            return Vec::new();
        };
        let Some(room) = self.rooms.get(handle) else {
            return Vec::new();
        };
        if room.keyring.current().is_some_and(|c| c.id == *epoch) {
            return Vec::new();
        }
        room.lockboxes.iter().cloned().collect()
    }

    // ---- the record ----

    /// A room's record, as the store keeps it.
    pub fn record(&self, handle: &RoomName) -> Option<Vec<u8>> {
        let room = self.rooms.get(handle)?;
        let hex = data_encoding::HEXLOWER;
        let record = Record {
            v: RECORD_VERSION,
            name: room.name.to_string(),
            rotations: room
                .rotations
                .iter()
                .map(|r| hex.encode(r.bytes()))
                .collect(),
            invites: room
                .invites
                .iter()
                .map(|t| StoredToken {
                    token: hex.encode(&t.token),
                    expires_ms: t.expires_ms,
                    state: t.state,
                })
                .collect(),
            lockboxes: room.lockboxes.iter().map(|l| hex.encode(l)).collect(),
        };
        serde_json::to_vec(&record).ok()
    }

    /// Takes back a room from its record; `Err` says why it does not read.
    pub fn load(&mut self, bytes: &[u8]) -> Result<RoomName, String> {
        let hex = data_encoding::HEXLOWER;
        let record: Record = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        if record.v != RECORD_VERSION {
            return Err(format!("unknown record version {}", record.v));
        }
        let name: RoomName = record.name.parse().map_err(|e| format!("name {e}"))?;
        let mut rotations = Vec::new();
        for r in &record.rotations {
            let bytes = hex.decode(r.as_bytes()).map_err(|e| e.to_string())?;
            rotations.push(Rotation::open(&bytes).map_err(|e| e.to_string())?);
        }
        rotations.sort_by_key(|r| (r.statement().generation, r.statement().key.id()));
        let first = rotations
            .iter()
            .position(|r| r.statement().members.iter().any(|m| m.peer == self.local))
            .ok_or("no epoch of the record holds this node")?;
        let first = rotations.remove(first);
        let handle = self.add(&name, first).map_err(|e| e.to_string())?;
        for r in rotations {
            let _ = self.take(&handle, r);
        }
        let room = self.rooms.get_mut(&handle).ok_or("room vanished")?;
        for t in record.invites {
            let token = hex.decode(t.token.as_bytes()).map_err(|e| e.to_string())?;
            let token: [u8; TOKEN_BYTES] = token.try_into().map_err(|_| "token length")?;
            room.invites.push(Token {
                token,
                expires_ms: t.expires_ms,
                state: t.state,
            });
        }
        room.invites.truncate(MAX_INVITES);
        for l in record.lockboxes.iter().take(KEPT_LOCKBOXES) {
            room.lockboxes
                .push_back(hex.decode(l.as_bytes()).map_err(|e| e.to_string())?);
        }
        Ok(handle)
    }
}

/// A room as the store keeps it (inside the store's encryption).
#[derive(Debug, Serialize, Deserialize)]
struct Record {
    v: u8,
    name: String,
    /// Signed rotations, hex.
    rotations: Vec<String>,
    invites: Vec<StoredToken>,
    /// Lockbox frames, hex.
    lockboxes: Vec<String>,
}

#[derive(Debug, Serialize, Deserialize)]
struct StoredToken {
    token: String,
    expires_ms: u64,
    state: TokenState,
}

/// The genesis statement of a new room: this node its only member, an admin.
pub fn genesis(
    room_id: [u8; ROOM_ID_BYTES],
    key: EpochKey,
    local: PeerId,
    recipient: String,
) -> Statement {
    Statement {
        room_id,
        generation: 0,
        parent: GENESIS_PARENT,
        key,
        members: vec![RosterEntry {
            peer: local,
            role: Role::Admin,
            recipient,
        }],
        removed: Vec::new(),
    }
}

#[cfg(test)]
mod fuzz;
#[cfg(test)]
mod tests;
