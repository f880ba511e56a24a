//! The node's history on its own disk: RocksDB holding age ciphertexts. This
//! is the only code that touches RocksDB or age.
//!
//! - Every value is encrypted to the node's own X25519 recipient. age has no
//!   associated data, so each plaintext starts with its own key: a value
//!   moved to another key, or altered, fails the check on read and is
//!   reported as corrupt, never shown. Messages are kept as their signed
//!   envelopes and re-verified on read, so what is shown is what its author
//!   signed.
//! - Keys reveal nothing: a room is named by an HMAC of its name and a message
//!   by an HMAC of its id, both keyed by a secret from the key file. What is
//!   left in the clear is a message's timestamp (it orders the keys), sizes
//!   and counts.
//!
//! - Catch-up reconciles sets of (timestamp, id) and must not decrypt every
//!   envelope to list them (age costs an X25519 exchange per value). So each
//!   message also has an index row holding its id sealed with
//!   XChaCha20-Poly1305 under a key derived from the index key, the row key
//!   as associated data. At open, the index rows are read into memory, one
//!   sorted set per room ([`Items`]), and kept up to date on every write.
//!
//! Layout (one column family):
//! - `m` room-tag(16) ts(8, big-endian) id-tag(16) → encrypted envelope
//! - `r` room-tag(16) ts(8, big-endian) id-tag(16) → sealed message id
//! - `s/state` → encrypted [`SavedState`] encoding
//! - `s/sessions` → encrypted `v1\n<session>\n`: every session this node
//!   used (or reserved) is at or below it (see [`Store::start_sessions`])
//! - `s/index` → empty: every message has its index row (set once, after
//!   the index rows of a store from before them were written)
//! - `s/lockbox-identity` → encrypted age X25519 identity private rooms'
//!   lockboxes are sealed to (made at first open; its own key, apart from
//!   the one the store is encrypted to, because its recipient is given to
//!   other members)

pub mod key_file;
pub mod parallel;
pub(crate) mod worker;

use std::collections::HashMap;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use chacha20poly1305::aead::{Aead, KeyInit, Payload as AeadPayload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hmac::{Hmac, Mac};
use palaver_proto::contract::labels;
use palaver_proto::envelope::{Envelope, MessageId};
use palaver_proto::history::MessageRef;
use palaver_proto::history::reconcile::{Items, ReconcileError, Step};
use palaver_proto::wire::Body;
use palaver_proto::{Nick, RoomName};
use rocksdb::{DB, Direction, IteratorMode, Options, WriteBatch};
use sha2::Sha256;

pub use key_file::Keys;

/// The store's directory inside the data dir.
pub const STORE_DIR: &str = "store";
/// What every plaintext starts with, before its key.
const VALUE_MAGIC: &[u8] = labels::STORE_VALUE;
const MESSAGE_PREFIX: u8 = b'm';
const INDEX_PREFIX: u8 = b'r';
const STATE_KEY: &[u8] = b"s/state";
const SESSIONS_KEY: &[u8] = b"s/sessions";
const INDEXED_KEY: &[u8] = b"s/index";
const LOCKBOX_IDENTITY_KEY: &[u8] = b"s/lockbox-identity";
/// A private room's record: `p` and the room's handle tag (as its messages').
const PRIVATE_PREFIX: u8 = b'p';
const TAG_BYTES: usize = 16;
const MESSAGE_KEY_BYTES: usize = 1 + TAG_BYTES + 8 + TAG_BYTES;
const NONCE_BYTES: usize = 24;
/// Index rows sealed (or envelopes read, when building the index) per batch.
const INDEX_CHUNK: usize = 4096;

/// Why the store failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open the history store at {path}: {reason}")]
    Open { path: PathBuf, reason: String },
    #[error("history store: {0}")]
    Db(String),
    #[error("cannot encrypt for the history store: {0}")]
    Encrypt(String),
}

impl From<rocksdb::Error> for StoreError {
    fn from(e: rocksdb::Error) -> Self {
        StoreError::Db(e.into_string())
    }
}

/// A stored key and its value.
type Row = (Box<[u8]>, Box<[u8]>);

/// A page of history, oldest first, and how many stored values in its range
/// failed their checks (decryption, key binding or signature) and were left out.
#[derive(Debug, Default)]
pub struct Page {
    pub messages: Vec<Envelope>,
    pub corrupt: usize,
}

/// What a node remembers between runs besides messages: its nick and rooms.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SavedState {
    pub nick: Option<Nick>,
    pub rooms: Vec<RoomName>,
}

impl SavedState {
    fn encode(&self) -> Vec<u8> {
        let mut out = String::from("v1\n");
        if let Some(nick) = &self.nick {
            out.push_str(&format!("nick {nick}\n"));
        }
        for room in &self.rooms {
            out.push_str(&format!("room {room}\n"));
        }
        out.into_bytes()
    }

    fn decode(bytes: &[u8]) -> Option<Self> {
        let text = std::str::from_utf8(bytes).ok()?;
        let mut lines = text.lines();
        if lines.next()? != "v1" {
            return None;
        }
        let mut state = SavedState::default();
        for line in lines {
            match line.split_once(' ')? {
                // A nick saved before its characters were refused (the value
                // itself is authentic): the default nick, the rooms kept.
                ("nick", n) => {
                    state.nick = n.parse().ok();
                    if state.nick.is_none() {
                        tracing::warn!(
                            "the saved nick {n:?} is no longer allowed; /nick NAME sets another"
                        );
                    }
                }
                ("room", r) => state.rooms.push(r.parse().ok()?),
                _ => return None,
            }
        }
        Some(state)
    }
}

/// Where a run's sessions start (see [`Store::start_sessions`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sessions {
    /// The first session of the run is the one after this.
    pub after: u64,
    /// Sessions up to this one are on disk as used; `None` if none could be
    /// saved (then nothing waits for the store, as before it kept them).
    pub saved: Option<u64>,
}

/// How much history is kept. The oldest messages go first: of their room
/// when it holds more than `room_messages` or they are older than
/// `max_age_ms`, and of the largest room when all rooms together hold more
/// than `total_messages`. So a flood of valid messages cannot fill the disk,
/// and what arrives now is still stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    pub room_messages: usize,
    pub total_messages: usize,
    /// `None`: kept whatever their age.
    pub max_age_ms: Option<u64>,
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            room_messages: 100_000,
            total_messages: 1_000_000,
            max_age_ms: None,
        }
    }
}

/// Each room's messages as catch-up reconciles them, by room tag.
#[derive(Debug, Default)]
struct Index {
    rooms: HashMap<[u8; TAG_BYTES], Items>,
}

/// The encrypted history of one node.
pub struct Store {
    db: DB,
    identity: age::x25519::Identity,
    recipient: age::x25519::Recipient,
    index_key: [u8; 32],
    seal: XChaCha20Poly1305,
    index: Mutex<Index>,
    retention: Retention,
    /// Opens the lockboxes private rooms seal to this node.
    lockbox: age::x25519::Identity,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.db.path())
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Opens (creating on first start) the store in `data_dir`, readable with `keys`.
    pub fn open(data_dir: &Path, keys: &Keys) -> Result<Self, StoreError> {
        let path = data_dir.join(STORE_DIR);
        // Private even when the data dir is not: sizes and timestamps are metadata.
        if let Err(e) = std::fs::DirBuilder::new().mode(0o700).create(&path)
            && e.kind() != std::io::ErrorKind::AlreadyExists
        {
            return Err(StoreError::Open {
                path,
                reason: e.to_string(),
            });
        }
        let mut options = Options::default();
        options.create_if_missing(true);
        // Ciphertext does not compress.
        options.set_compression_type(rocksdb::DBCompressionType::None);
        // The info log holds options and file events only; keep it short.
        options.set_keep_log_file_num(2);
        options.set_max_log_file_size(1 << 20);
        options.set_log_level(rocksdb::LogLevel::Warn);
        let db = DB::open(&options, &path).map_err(|e| StoreError::Open {
            path: path.clone(),
            reason: e.into_string(),
        })?;
        let identity = keys.storage.clone();
        let recipient = identity.to_public();
        let index_key = keys.index_key();
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&index_key)
            .unwrap_or_else(|_| hmac_accepts_any_key());
        mac.update(labels::STORE_ID_SEAL);
        let seal_key: [u8; 32] = mac.finalize().into_bytes().into();
        let mut store = Self {
            db,
            identity,
            recipient,
            index_key,
            seal: XChaCha20Poly1305::new(&seal_key.into()),
            index: Mutex::new(Index::default()),
            retention: Retention::default(),
            lockbox: age::x25519::Identity::generate(),
        };
        store.lockbox = store.load_lockbox_identity()?;
        store.load_index()?;
        Ok(store)
    }

    /// Reads the index rows into memory, writing them first for the
    /// messages of a store from before them.
    fn load_index(&self) -> Result<(), StoreError> {
        if self.db.get(INDEXED_KEY)?.is_none() {
            self.build_index()?;
        }
        let mut rooms: HashMap<[u8; TAG_BYTES], Vec<MessageRef>> = HashMap::new();
        let mut corrupt = 0usize;
        let mut rows: Vec<Row> = Vec::with_capacity(INDEX_CHUNK);
        let mut flush = |rows: &mut Vec<Row>, corrupt: &mut usize| {
            let opened = parallel::map(rows, |(k, v)| {
                let (room, ts) = split_row_key(k)?;
                Some((room, ts, self.open_id(k, v)?))
            });
            for entry in opened {
                match entry {
                    Some((room, ts, id)) => {
                        rooms.entry(room).or_default().push(MessageRef { ts, id })
                    }
                    None => *corrupt += 1,
                }
            }
            rows.clear();
        };
        for item in self.db.prefix_iterator([INDEX_PREFIX]) {
            let (key, value) = item?;
            if key.first() != Some(&INDEX_PREFIX) {
                break;
            }
            rows.push((key, value));
            if rows.len() == INDEX_CHUNK {
                flush(&mut rows, &mut corrupt);
            }
        }
        flush(&mut rows, &mut corrupt);
        if corrupt > 0 {
            tracing::warn!(
                corrupt,
                "index rows that fail their checks are left out of catch-up"
            );
        }
        let mut index = self.lock_index();
        index.rooms = rooms
            .into_iter()
            .map(|(room, refs)| (room, Items::from_refs(refs)))
            .collect();
        Ok(())
    }

    /// Writes an index row for every stored message (decrypting each: once,
    /// for a store written before index rows existed), then the marker.
    fn build_index(&self) -> Result<(), StoreError> {
        let mut rows: Vec<Row> = Vec::with_capacity(INDEX_CHUNK);
        let mut written = 0usize;
        let mut flush = |rows: &mut Vec<Row>| -> Result<(), StoreError> {
            let sealed = parallel::map(rows, |(k, v)| {
                let envelope = self.decrypt_message(k, v)?;
                let mut key = k.to_vec();
                key[0] = INDEX_PREFIX;
                Some(self.seal_id(&key, &envelope.id_bytes()).map(|v| (key, v)))
            });
            let mut batch = WriteBatch::default();
            for row in sealed.into_iter().flatten() {
                let (key, value) = row?;
                batch.put(key, value);
                written += 1;
            }
            self.db.write(batch)?;
            rows.clear();
            Ok(())
        };
        for item in self.db.prefix_iterator([MESSAGE_PREFIX]) {
            let (key, value) = item?;
            if key.first() != Some(&MESSAGE_PREFIX) {
                break;
            }
            rows.push((key, value));
            if rows.len() == INDEX_CHUNK {
                flush(&mut rows)?;
            }
        }
        flush(&mut rows)?;
        self.db.put(INDEXED_KEY, [])?;
        if written > 0 {
            tracing::info!(written, "indexed the stored messages for catch-up");
        }
        Ok(())
    }

    /// Keeps at most this much history from now on (and drops what is over it now).
    pub fn set_retention(&mut self, retention: Retention, now_ms: u64) -> Result<(), StoreError> {
        self.retention = retention;
        let rooms: Vec<[u8; TAG_BYTES]> = self.lock_index().rooms.keys().copied().collect();
        self.enforce_retention(&rooms, now_ms)
    }

    /// Drops the oldest messages of `rooms` (and of the largest rooms) that
    /// the retention does not keep.
    fn enforce_retention(&self, rooms: &[[u8; TAG_BYTES]], now_ms: u64) -> Result<(), StoreError> {
        let r = self.retention;
        let oldest_kept = r.max_age_ms.map(|age| now_ms.saturating_sub(age));
        let mut drop: Vec<([u8; TAG_BYTES], MessageRef)> = Vec::new();
        {
            let index = self.lock_index();
            for tag in rooms {
                let Some(items) = index.rooms.get(tag) else {
                    continue;
                };
                let over = items.len().saturating_sub(r.room_messages);
                let old = oldest_kept.map_or(0, |t| items.refs().take_while(|m| m.ts < t).count());
                drop.extend(items.refs().take(over.max(old)).map(|m| (*tag, m)));
            }
        }
        self.delete_messages(&drop)?;
        let mut total: usize = self.lock_index().rooms.values().map(Items::len).sum();
        while total > r.total_messages {
            let largest = {
                let index = self.lock_index();
                index
                    .rooms
                    .iter()
                    .max_by_key(|(_, items)| items.len())
                    .map(|(tag, items)| {
                        // A tenth of what is over at a time, at least one.
                        let n = (total - r.total_messages)
                            .div_ceil(10)
                            .max(1)
                            .min(items.len());
                        items.refs().take(n).map(|m| (*tag, m)).collect::<Vec<_>>()
                    })
            };
            let Some(batch) = largest.filter(|b| !b.is_empty()) else {
                break;
            };
            total = total.saturating_sub(batch.len());
            self.delete_messages(&batch)?;
        }
        if !drop.is_empty() {
            tracing::info!(
                dropped = drop.len(),
                "history over its retention: the oldest messages were dropped"
            );
        }
        Ok(())
    }

    /// Deletes messages (their rows and index rows) in one write.
    fn delete_messages(
        &self,
        messages: &[([u8; TAG_BYTES], MessageRef)],
    ) -> Result<(), StoreError> {
        if messages.is_empty() {
            return Ok(());
        }
        let mut batch = WriteBatch::default();
        for (tag, m) in messages {
            let key = self.key_in_room(tag, m);
            batch.delete(Self::index_row_key(&key));
            batch.delete(key);
        }
        self.db.write(batch)?;
        let mut index = self.lock_index();
        for (tag, m) in messages {
            if let Some(items) = index.rooms.get_mut(tag) {
                items.remove(m);
                if items.is_empty() {
                    index.rooms.remove(tag);
                }
            }
        }
        Ok(())
    }

    /// Drops everything stored of `room`. Returns how many messages went.
    pub fn forget(&self, room: &RoomName) -> Result<usize, StoreError> {
        let tag = self.room_tag(room);
        let mut forgotten = 0;
        for prefix in [MESSAGE_PREFIX, INDEX_PREFIX] {
            let mut start = vec![prefix];
            start.extend_from_slice(&tag);
            let mut batch = WriteBatch::default();
            for item in self.db.prefix_iterator(&start) {
                let (key, _) = item?;
                if !key.starts_with(&start) {
                    break;
                }
                if prefix == MESSAGE_PREFIX {
                    forgotten += 1;
                }
                batch.delete(key);
                if batch.len() >= INDEX_CHUNK {
                    self.db.write(std::mem::take(&mut batch))?;
                }
            }
            self.db.write(batch)?;
        }
        self.lock_index().rooms.remove(&tag);
        Ok(forgotten)
    }

    fn lock_index(&self) -> MutexGuard<'_, Index> {
        // Nothing panics while holding it; a poisoned lock still holds a whole index.
        self.index.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Seals a message id for its index row `key`: a fresh random nonce,
    /// then XChaCha20-Poly1305 with the key as associated data.
    fn seal_id(&self, key: &[u8], id: &MessageId) -> Result<Vec<u8>, StoreError> {
        let mut nonce = [0u8; NONCE_BYTES];
        getrandom::getrandom(&mut nonce).map_err(|e| StoreError::Encrypt(e.to_string()))?;
        let sealed = self
            .seal
            .encrypt(
                XNonce::from_slice(&nonce),
                AeadPayload { msg: id, aad: key },
            )
            .map_err(|e| StoreError::Encrypt(e.to_string()))?;
        let mut value = nonce.to_vec();
        value.extend_from_slice(&sealed);
        Ok(value)
    }

    /// The message id sealed in an index row, if it opens under its key.
    fn open_id(&self, key: &[u8], value: &[u8]) -> Option<MessageId> {
        let (nonce, sealed) = value.split_at_checked(NONCE_BYTES)?;
        let id = self
            .seal
            .decrypt(
                XNonce::from_slice(nonce),
                AeadPayload {
                    msg: sealed,
                    aad: key,
                },
            )
            .ok()?;
        id.try_into().ok()
    }

    fn tag(&self, label: &[u8], data: &[u8]) -> [u8; TAG_BYTES] {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.index_key)
            .unwrap_or_else(|_| hmac_accepts_any_key());
        mac.update(label);
        mac.update(&[0]);
        mac.update(data);
        let full = mac.finalize().into_bytes();
        let mut tag = [0u8; TAG_BYTES];
        tag.copy_from_slice(&full[..TAG_BYTES]);
        tag
    }

    fn room_prefix(&self, room: &RoomName) -> Vec<u8> {
        let mut key = Vec::with_capacity(MESSAGE_KEY_BYTES);
        key.push(MESSAGE_PREFIX);
        key.extend_from_slice(&self.tag(labels::STORE_ROOM_TAG, room.as_str().as_bytes()));
        key
    }

    fn room_tag(&self, room: &RoomName) -> [u8; TAG_BYTES] {
        self.tag(labels::STORE_ROOM_TAG, room.as_str().as_bytes())
    }

    fn message_key(&self, room: &RoomName, r: &MessageRef) -> Vec<u8> {
        let mut key = self.room_prefix(room);
        key.extend_from_slice(&r.ts.to_be_bytes());
        key.extend_from_slice(&self.tag(labels::STORE_ID_TAG, &r.id));
        key
    }

    fn key_in_room(&self, tag: &[u8; TAG_BYTES], r: &MessageRef) -> Vec<u8> {
        let mut key = Vec::with_capacity(MESSAGE_KEY_BYTES);
        key.push(MESSAGE_PREFIX);
        key.extend_from_slice(tag);
        key.extend_from_slice(&r.ts.to_be_bytes());
        key.extend_from_slice(&self.tag(labels::STORE_ID_TAG, &r.id));
        key
    }

    /// The index row beside a message's row: the same key under `r`.
    fn index_row_key(message_key: &[u8]) -> Vec<u8> {
        let mut key = message_key.to_vec();
        if let Some(first) = key.first_mut() {
            *first = INDEX_PREFIX;
        }
        key
    }

    fn encrypt_value(&self, key: &[u8], data: &[u8]) -> Result<Vec<u8>, StoreError> {
        let mut plaintext = Vec::with_capacity(VALUE_MAGIC.len() + 1 + key.len() + data.len());
        plaintext.extend_from_slice(VALUE_MAGIC);
        // Keys are at most MESSAGE_KEY_BYTES long.
        plaintext.push(key.len() as u8);
        plaintext.extend_from_slice(key);
        plaintext.extend_from_slice(data);
        age::encrypt(&self.recipient, &plaintext).map_err(|e| StoreError::Encrypt(e.to_string()))
    }

    /// Decrypts a value and checks that it was encrypted under `key`; returns its data.
    fn decrypt_value(&self, key: &[u8], value: &[u8]) -> Option<Vec<u8>> {
        let plaintext = age::decrypt(&self.identity, value).ok()?;
        let rest = plaintext.strip_prefix(VALUE_MAGIC)?;
        let (&len, rest) = rest.split_first()?;
        let (bound_key, data) = rest.split_at_checked(usize::from(len))?;
        (bound_key == key).then(|| data.to_vec())
    }

    /// Opens a stored message and checks it against its key: genuine
    /// signature, same room, timestamp and id.
    fn decrypt_message(&self, key: &[u8], value: &[u8]) -> Option<Envelope> {
        let data = self.decrypt_value(key, value)?;
        let envelope = Envelope::open(&data).ok()?;
        let r = MessageRef {
            ts: envelope.payload().ts,
            id: envelope.id_bytes(),
        };
        (self.message_key(&envelope.payload().room, &r) == key).then_some(envelope)
    }

    /// Stores chat envelopes (already verified), skipping those already held.
    /// Returns, for each, whether it was new. One atomic write; the
    /// encryption runs on every core.
    pub fn put_messages(&self, envelopes: &[Envelope]) -> Result<Vec<bool>, StoreError> {
        let keys: Vec<Vec<u8>> = envelopes
            .iter()
            .map(|e| self.message_key(&e.payload().room, &message_ref(e)))
            .collect();
        let mut new = Vec::with_capacity(keys.len());
        let mut seen = std::collections::HashSet::new();
        for (key, held) in keys.iter().zip(self.db.multi_get(&keys)) {
            new.push(held?.is_none() && seen.insert(key.clone()));
        }
        let to_encrypt: Vec<(&Vec<u8>, &Envelope)> = keys
            .iter()
            .zip(envelopes)
            .zip(&new)
            .filter(|(_, new)| **new)
            .map(|(pair, _)| pair)
            .collect();
        let encrypted = parallel::map(&to_encrypt, |(key, envelope)| {
            let value = self.encrypt_value(key, envelope.as_bytes())?;
            let index_key = Self::index_row_key(key);
            let sealed = self.seal_id(&index_key, &envelope.id_bytes())?;
            Ok::<_, StoreError>((value, index_key, sealed))
        });
        let mut batch = WriteBatch::default();
        for ((key, _), row) in to_encrypt.iter().zip(encrypted) {
            let (value, index_key, sealed) = row?;
            batch.put(key, value);
            batch.put(index_key, sealed);
        }
        if !batch.is_empty() {
            self.db.write(batch)?;
            let mut touched = Vec::new();
            {
                let mut index = self.lock_index();
                for (_, envelope) in &to_encrypt {
                    let room = self.room_tag(&envelope.payload().room);
                    if !touched.contains(&room) {
                        touched.push(room);
                    }
                    index
                        .rooms
                        .entry(room)
                        .or_default()
                        .insert(message_ref(envelope));
                }
            }
            self.enforce_retention(&touched, unix_ms())?;
        }
        Ok(new)
    }

    /// How many messages of `room` are held.
    pub fn room_len(&self, room: &RoomName) -> usize {
        let tag = self.room_tag(room);
        self.lock_index().rooms.get(&tag).map_or(0, Items::len)
    }

    /// The first message of a reconciliation of `room`, as the asker.
    pub fn reconcile_start(&self, room: &RoomName) -> Result<Step, ReconcileError> {
        let tag = self.room_tag(room);
        let index = self.lock_index();
        let empty = Items::new();
        let items = index.rooms.get(&tag).unwrap_or(&empty);
        Ok(Step {
            next: Some(items.initiate()?),
            ..Step::default()
        })
    }

    /// The asker's reading of an answer in a reconciliation of `room`.
    /// What the retention would drop at once (older than the room's oldest
    /// message while it is full, or than the age kept) is not asked for, so
    /// that it is not fetched again at every round of anti-entropy.
    pub fn reconcile_step(&self, room: &RoomName, answer: &[u8]) -> Result<Step, ReconcileError> {
        let tag = self.room_tag(room);
        let index = self.lock_index();
        let empty = Items::new();
        let items = index.rooms.get(&tag).unwrap_or(&empty);
        let mut step = items.step(answer)?;
        let full = items.len() >= self.retention.room_messages;
        let oldest = items.refs().next();
        let oldest_kept = self
            .retention
            .max_age_ms
            .map(|age| unix_ms().saturating_sub(age));
        step.need.retain(|m| {
            !(full && oldest.is_some_and(|o| *m < o)) && oldest_kept.is_none_or(|t| m.ts >= t)
        });
        Ok(step)
    }

    /// The answer to a peer's reconciliation message about `room`.
    pub fn reconcile_answer(
        &self,
        room: &RoomName,
        message: &[u8],
    ) -> Result<Vec<u8>, ReconcileError> {
        let tag = self.room_tag(room);
        let index = self.lock_index();
        let empty = Items::new();
        index.rooms.get(&tag).unwrap_or(&empty).answer(message)
    }

    /// The newest `limit` messages of `room` dated up to `not_after`, as
    /// stored values in newest-first order, and whether older ones exist.
    fn newest(
        &self,
        room: &RoomName,
        not_after: u64,
        limit: usize,
    ) -> Result<(Vec<Row>, bool), StoreError> {
        let prefix = self.room_prefix(room);
        let mut start = prefix.clone();
        start.extend_from_slice(&not_after.to_be_bytes());
        start.extend_from_slice(&[0xff; TAG_BYTES]);
        let mut rows = Vec::with_capacity(limit.min(1024));
        let mut more = false;
        for item in self
            .db
            .iterator(IteratorMode::From(&start, Direction::Reverse))
        {
            let (key, value) = item?;
            if !key.starts_with(&prefix) {
                break;
            }
            if rows.len() == limit {
                more = true;
                break;
            }
            rows.push((key, value));
        }
        Ok((rows, more))
    }

    /// The last `limit` messages of `room` dated up to `not_after` (unix
    /// ms), oldest first, each decrypted and re-verified (in parallel).
    pub fn latest(
        &self,
        room: &RoomName,
        limit: usize,
        not_after: u64,
    ) -> Result<Page, StoreError> {
        let (mut rows, _) = self.newest(room, not_after, limit)?;
        rows.reverse();
        let opened = parallel::map(&rows, |(k, v)| self.decrypt_message(k, v));
        let total = opened.len();
        let messages: Vec<Envelope> = opened.into_iter().flatten().collect();
        Ok(Page {
            corrupt: total - messages.len(),
            messages,
        })
    }

    /// The stored envelopes of `refs` in `room`; those not held (or corrupt) are left out.
    pub fn fetch(&self, room: &RoomName, refs: &[MessageRef]) -> Result<Vec<Envelope>, StoreError> {
        let keys: Vec<Vec<u8>> = refs.iter().map(|r| self.message_key(room, r)).collect();
        let mut rows = Vec::with_capacity(keys.len());
        let values = self.db.multi_get(&keys);
        for (key, value) in keys.into_iter().zip(values) {
            if let Some(value) = value? {
                rows.push((key, value));
            }
        }
        let opened = parallel::map(&rows, |(k, v)| self.decrypt_message(k, v));
        Ok(opened.into_iter().flatten().collect())
    }

    /// The identity of a store from before lockboxes is made now, once.
    /// One that does not decrypt stops the open: making a new one would
    /// silently cut this node off from every private room it is in.
    fn load_lockbox_identity(&self) -> Result<age::x25519::Identity, StoreError> {
        use age::secrecy::ExposeSecret;
        if let Some(value) = self.db.get(LOCKBOX_IDENTITY_KEY)? {
            return self
                .decrypt_value(LOCKBOX_IDENTITY_KEY, &value)
                .and_then(|data| String::from_utf8(data).ok())
                .and_then(|s| s.parse::<age::x25519::Identity>().ok())
                .ok_or_else(|| StoreError::Db("the private-room identity is corrupt".into()));
        }
        let identity = age::x25519::Identity::generate();
        let secret = identity.to_string();
        let value = self.encrypt_value(LOCKBOX_IDENTITY_KEY, secret.expose_secret().as_bytes())?;
        self.db.put(LOCKBOX_IDENTITY_KEY, value)?;
        Ok(identity)
    }

    /// The age recipient other members seal this node's lockboxes to.
    pub fn lockbox_recipient(&self) -> String {
        self.lockbox.to_public().to_string()
    }

    /// Seals `plaintext` (a signed rotation) to every recipient at once: a
    /// lockbox. Refuses a recipient that is not an age X25519 recipient.
    pub fn seal_lockbox(recipients: &[String], plaintext: &[u8]) -> Result<Vec<u8>, StoreError> {
        use std::io::Write;
        let parsed: Vec<age::x25519::Recipient> = recipients
            .iter()
            .map(|r| {
                r.parse()
                    .map_err(|e: &str| StoreError::Encrypt(e.to_owned()))
            })
            .collect::<Result<_, _>>()?;
        let encryptor =
            age::Encryptor::with_recipients(parsed.iter().map(|r| r as &dyn age::Recipient))
                .map_err(|e| StoreError::Encrypt(e.to_string()))?;
        let mut out = Vec::with_capacity(plaintext.len() + 100 * parsed.len() + 64);
        let encrypt = |e: std::io::Error| StoreError::Encrypt(e.to_string());
        let mut writer = encryptor.wrap_output(&mut out).map_err(encrypt)?;
        writer.write_all(plaintext).map_err(encrypt)?;
        writer.finish().map_err(encrypt)?;
        Ok(out)
    }

    /// Whether `recipient` is an age X25519 recipient a lockbox can be sealed to.
    pub fn is_recipient(recipient: &str) -> bool {
        recipient.len() <= palaver_proto::private::rotation::MAX_RECIPIENT_CHARS
            && recipient.parse::<age::x25519::Recipient>().is_ok()
    }

    /// Opens a lockbox sealed to this node: `None` if it is not to this
    /// node, or not a genuine age file.
    pub fn open_lockbox(&self, lockbox: &[u8]) -> Option<Vec<u8>> {
        age::decrypt(&self.lockbox, lockbox).ok()
    }

    /// Keeps a private room's record (its keys, tokens and kept lockboxes),
    /// or with `None` forgets it: a room left or removed from leaves no key
    /// behind.
    pub fn save_private(&self, handle: &RoomName, record: Option<&[u8]>) -> Result<(), StoreError> {
        let mut key = vec![PRIVATE_PREFIX];
        key.extend_from_slice(&self.room_tag(handle));
        match record {
            Some(record) => {
                let value = self.encrypt_value(&key, record)?;
                Ok(self.db.put(&key, value)?)
            }
            None => Ok(self.db.delete(&key)?),
        }
    }

    /// Every private room's record, and how many fail their checks (left
    /// out, and left on disk: they are never overwritten by accident).
    pub fn private_records(&self) -> Result<(Vec<Vec<u8>>, usize), StoreError> {
        let mut records = Vec::new();
        let mut corrupt = 0;
        for item in self.db.prefix_iterator([PRIVATE_PREFIX]) {
            let (key, value) = item?;
            if key.first() != Some(&PRIVATE_PREFIX) {
                break;
            }
            match self.decrypt_value(&key, &value) {
                Some(record) => records.push(record),
                None => corrupt += 1,
            }
        }
        Ok((records, corrupt))
    }

    /// Remembers the nick and rooms.
    pub fn save_state(&self, state: &SavedState) -> Result<(), StoreError> {
        let value = self.encrypt_value(STATE_KEY, &state.encode())?;
        Ok(self.db.put(STATE_KEY, value)?)
    }

    /// What [`Store::save_state`] kept last; `Err` names a value that fails its checks.
    pub fn load_state(&self) -> Result<SavedState, StoreError> {
        match self.db.get(STATE_KEY)? {
            None => Ok(SavedState::default()),
            Some(value) => self
                .decrypt_value(STATE_KEY, &value)
                .and_then(|data| SavedState::decode(&data))
                .ok_or_else(|| StoreError::Db("the saved rooms and nick are corrupt".into())),
        }
    }
}

impl Store {
    /// The sessions of a run starting at `now_ms`: after both the clock and
    /// every session an earlier run used or reserved, the next `block` of
    /// them reserved on disk at once (so a join seldom waits for a write).
    /// A record that fails its checks, or a failed write, is logged and the
    /// clock alone is used.
    pub fn start_sessions(&self, now_ms: u64, block: u64) -> Sessions {
        let stored = self.load_sessions().unwrap_or_else(|e| {
            tracing::warn!(
                "the record of sessions used is unreadable; the clock alone starts them: {e}"
            );
            None
        });
        let after = now_ms.max(stored.unwrap_or(0));
        let until = after.saturating_add(block);
        let saved = match self.save_sessions(until) {
            Ok(()) => Some(until),
            Err(e) => {
                tracing::warn!("cannot keep the sessions used: {e}");
                None
            }
        };
        Sessions { after, saved }
    }

    /// Keeps that every session up to `until` may have been used.
    pub fn save_sessions(&self, until: u64) -> Result<(), StoreError> {
        let value = self.encrypt_value(SESSIONS_KEY, format!("v1\n{until}\n").as_bytes())?;
        Ok(self.db.put(SESSIONS_KEY, value)?)
    }

    /// What [`Store::save_sessions`] kept last, if anything.
    pub fn load_sessions(&self) -> Result<Option<u64>, StoreError> {
        let Some(value) = self.db.get(SESSIONS_KEY)? else {
            return Ok(None);
        };
        let corrupt = || StoreError::Db("the record of sessions used is corrupt".into());
        let data = self
            .decrypt_value(SESSIONS_KEY, &value)
            .ok_or_else(corrupt)?;
        let text = std::str::from_utf8(&data).map_err(|_| corrupt())?;
        let number = text
            .strip_prefix("v1\n")
            .and_then(|t| t.strip_suffix('\n'))
            .ok_or_else(corrupt)?;
        number.parse().map(Some).map_err(|_| corrupt())
    }
}

/// A chat envelope's place in the store.
pub fn message_ref(envelope: &Envelope) -> MessageRef {
    MessageRef {
        ts: envelope.payload().ts,
        id: envelope.id_bytes(),
    }
}

/// Whether an envelope belongs in the history (chat, not presence).
pub fn is_chat(envelope: &Envelope) -> bool {
    matches!(envelope.payload().body, Body::Chat(_))
}

/// Unix milliseconds now (0 before 1970).
fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The room tag and timestamp of a message or index row key.
fn split_row_key(key: &[u8]) -> Option<([u8; TAG_BYTES], u64)> {
    if key.len() != MESSAGE_KEY_BYTES {
        return None;
    }
    let room = key.get(1..1 + TAG_BYTES)?.try_into().ok()?;
    let ts = key.get(1 + TAG_BYTES..1 + TAG_BYTES + 8)?.try_into().ok()?;
    Some((room, u64::from_be_bytes(ts)))
}

#[allow(clippy::panic, reason = "HMAC takes keys of any length")]
fn hmac_accepts_any_key() -> Hmac<Sha256> {
    panic!("HMAC-SHA256 accepts every key length")
}

#[cfg(test)]
mod tests;
