//! Unit tests of the store: real RocksDB and real age in a temporary directory.

use libp2p::identity::Keypair;
use palaver_proto::wire::Payload;

use super::*;

struct TempStore {
    dir: PathBuf,
    keys: Keys,
    store: Option<Store>,
}

impl TempStore {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("palaver-store-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let keys = Keys {
            keypair: Keypair::generate_ed25519(),
            storage: age::x25519::Identity::generate(),
        };
        let store = Some(Store::open(&dir, &keys).unwrap());
        Self { dir, keys, store }
    }

    fn store(&self) -> &Store {
        self.store.as_ref().unwrap()
    }

    fn reopen(&mut self) {
        self.store = None;
        self.store = Some(Store::open(&self.dir, &self.keys).unwrap());
    }
}

impl Drop for TempStore {
    fn drop(&mut self) {
        self.store = None;
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn chat(author: &Keypair, room: &str, ts: u64, text: &str) -> Envelope {
    let payload = Payload {
        room: room.parse().unwrap(),
        nick: "ann".parse().unwrap(),
        ts,
        session: 1,
        seq: ts,
        body: Body::Chat(text.parse().unwrap()),
    };
    Envelope::seal(author, payload).unwrap()
}

/// Chat messages in `room`, one per timestamp, each text `prefix` and its timestamp.
fn chats(
    author: &Keypair,
    room: &str,
    timestamps: impl IntoIterator<Item = u64>,
    prefix: &str,
) -> Vec<Envelope> {
    timestamps
        .into_iter()
        .map(|ts| chat(author, room, ts, &format!("{prefix}{ts}")))
        .collect()
}

fn texts(page: &Page) -> Vec<String> {
    page.messages
        .iter()
        .map(|e| match &e.payload().body {
            Body::Chat(t) => t.as_str().to_owned(),
            _ => String::new(),
        })
        .collect()
}

#[test]
fn messages_come_back_in_time_order_after_a_reopen_and_duplicates_are_not_new() {
    let mut t = TempStore::new("order");
    let ann = Keypair::generate_ed25519();
    let envelopes: Vec<Envelope> = [3, 1, 2]
        .iter()
        .map(|ts| chat(&ann, "lobby", *ts, &format!("m{ts}")))
        .collect();
    assert_eq!(
        t.store().put_messages(&envelopes).unwrap(),
        [true, true, true]
    );
    assert_eq!(
        t.store().put_messages(&envelopes[..1]).unwrap(),
        [false],
        "already held"
    );
    let twice = [envelopes[0].clone(), envelopes[0].clone()];
    t.reopen();
    assert_eq!(t.store().put_messages(&twice).unwrap(), [false, false]);
    let room: RoomName = "lobby".parse().unwrap();
    let page = t.store().latest(&room, 10, u64::MAX).unwrap();
    assert_eq!(texts(&page), ["m1", "m2", "m3"]);
    assert_eq!(page.corrupt, 0);
    assert_eq!(
        texts(&t.store().latest(&room, 2, u64::MAX).unwrap()),
        ["m2", "m3"]
    );
    let other: RoomName = "other".parse().unwrap();
    assert!(
        t.store()
            .latest(&other, 10, u64::MAX)
            .unwrap()
            .messages
            .is_empty()
    );
}

/// Runs a whole reconciliation of `room` with `asker` asking `answerer`;
/// returns what the asker lacks.
fn reconcile(asker: &Store, answerer: &Store, room: &RoomName) -> Vec<MessageRef> {
    let mut message = asker.reconcile_start(room).unwrap().next.unwrap();
    let mut need = Vec::new();
    for _ in 0..100 {
        let answer = answerer.reconcile_answer(room, &message).unwrap();
        let step = asker.reconcile_step(room, &answer).unwrap();
        need.extend(step.need);
        match step.next {
            Some(next) => message = next,
            None => return need,
        }
    }
    panic!("does not converge");
}

#[test]
fn two_stores_reconcile_and_fetch_what_one_lacks_without_reading_envelopes() {
    let a = TempStore::new("reconcile-a");
    let b = TempStore::new("reconcile-b");
    let ann = Keypair::generate_ed25519();
    let room: RoomName = "lobby".parse().unwrap();
    let envelopes = chats(&ann, "lobby", 1..=100, "m");
    a.store().put_messages(&envelopes).unwrap();
    let held: Vec<Envelope> = envelopes
        .iter()
        .filter(|e| e.payload().ts % 10 != 0)
        .cloned()
        .collect();
    b.store().put_messages(&held).unwrap();
    assert_eq!(
        (a.store().room_len(&room), b.store().room_len(&room)),
        (100, 90)
    );
    let mut need = reconcile(b.store(), a.store(), &room);
    need.sort();
    let expected: Vec<MessageRef> = envelopes
        .iter()
        .filter(|e| e.payload().ts % 10 == 0)
        .map(message_ref)
        .collect();
    assert_eq!(need, expected);
    let fetched = a.store().fetch(&room, &need).unwrap();
    assert_eq!(fetched.len(), 10);
    b.store().put_messages(&fetched).unwrap();
    assert!(reconcile(b.store(), a.store(), &room).is_empty());
    let other: RoomName = "other".parse().unwrap();
    assert!(reconcile(b.store(), a.store(), &other).is_empty());
}

#[test]
fn the_index_survives_a_reopen_and_is_built_for_a_store_from_before_it() {
    let mut t = TempStore::new("index");
    let ann = Keypair::generate_ed25519();
    let room: RoomName = "lobby".parse().unwrap();
    let envelopes = chats(&ann, "lobby", 1..=50, "m");
    t.store().put_messages(&envelopes).unwrap();
    t.reopen();
    assert_eq!(t.store().room_len(&room), 50);
    // A store written before index rows: only message rows, no marker.
    let db = &t.store().db;
    let rows: Vec<Box<[u8]>> = db
        .prefix_iterator([INDEX_PREFIX])
        .map(|i| i.unwrap().0)
        .take_while(|k| k.first() == Some(&INDEX_PREFIX))
        .collect();
    assert_eq!(rows.len(), 50);
    for key in rows {
        db.delete(key).unwrap();
    }
    db.delete(INDEXED_KEY).unwrap();
    t.reopen();
    assert_eq!(t.store().room_len(&room), 50, "rebuilt from the envelopes");
    let twin = TempStore::new("index-twin");
    twin.store().put_messages(&envelopes).unwrap();
    assert!(reconcile(t.store(), twin.store(), &room).is_empty());
}

#[test]
fn an_index_row_altered_or_moved_is_left_out() {
    let mut t = TempStore::new("index-tamper");
    let ann = Keypair::generate_ed25519();
    let room: RoomName = "lobby".parse().unwrap();
    let envelopes = chats(&ann, "lobby", 1..=3, "m");
    t.store().put_messages(&envelopes).unwrap();
    let keys: Vec<Vec<u8>> = envelopes
        .iter()
        .map(|e| Store::index_row_key(&t.store().message_key(&room, &message_ref(e))))
        .collect();
    let db = &t.store().db;
    let first = db.get(&keys[0]).unwrap().unwrap();
    db.put(&keys[1], &first).unwrap();
    let mut third = db.get(&keys[2]).unwrap().unwrap();
    third[30] ^= 1;
    db.put(&keys[2], &third).unwrap();
    t.reopen();
    assert_eq!(t.store().room_len(&room), 1);
}

#[test]
fn history_lists_nothing_dated_after_its_bound() {
    let t = TempStore::new("future");
    let ann = Keypair::generate_ed25519();
    let room: RoomName = "lobby".parse().unwrap();
    let envelopes = [
        chat(&ann, "lobby", 1_000, "now"),
        chat(&ann, "lobby", 2_000_000, "a day ahead"),
        chat(&ann, "lobby", u64::MAX, "the end of time"),
    ];
    t.store().put_messages(&envelopes).unwrap();
    assert_eq!(texts(&t.store().latest(&room, 10, 5_000).unwrap()), ["now"]);
    assert_eq!(
        texts(&t.store().latest(&room, 1, u64::MAX).unwrap()),
        ["the end of time"]
    );
}

#[test]
fn a_value_altered_or_moved_to_another_key_is_reported_never_shown() {
    let mut t = TempStore::new("tamper");
    let ann = Keypair::generate_ed25519();
    let room: RoomName = "lobby".parse().unwrap();
    let envelopes = chats(&ann, "lobby", 1..=3, "m");
    t.store().put_messages(&envelopes).unwrap();
    let keys: Vec<Vec<u8>> = envelopes
        .iter()
        .map(|e| t.store().message_key(&room, &message_ref(e)))
        .collect();
    let db = &t.store().db;
    // m1's value under m2's key (a swap), and m3's value altered.
    let first = db.get(&keys[0]).unwrap().unwrap();
    db.put(&keys[1], &first).unwrap();
    let mut third = db.get(&keys[2]).unwrap().unwrap();
    let last = third.len() - 1;
    third[last] ^= 1;
    db.put(&keys[2], &third).unwrap();
    t.reopen();
    let page = t.store().latest(&room, 10, u64::MAX).unwrap();
    assert_eq!(texts(&page), ["m1"]);
    assert_eq!(page.corrupt, 2);
    let refs: Vec<MessageRef> = envelopes.iter().map(message_ref).collect();
    assert_eq!(t.store().fetch(&room, &refs).unwrap().len(), 1);
}

#[test]
fn a_value_encrypted_to_another_identity_does_not_open() {
    let a = TempStore::new("identity-a");
    let b = TempStore::new("identity-b");
    let ann = Keypair::generate_ed25519();
    let room: RoomName = "lobby".parse().unwrap();
    let e = chat(&ann, "lobby", 1, "secret");
    a.store().put_messages(std::slice::from_ref(&e)).unwrap();
    let key_a = a.store().message_key(&room, &message_ref(&e));
    let key_b = b.store().message_key(&room, &message_ref(&e));
    assert_ne!(key_a, key_b, "keys depend on each node's secret");
    let value = a.store().db.get(&key_a).unwrap().unwrap();
    b.store().db.put(&key_b, &value).unwrap();
    assert_eq!(b.store().latest(&room, 10, u64::MAX).unwrap().corrupt, 1);
}

#[test]
fn the_saved_state_survives_a_reopen_and_a_damaged_one_is_an_error() {
    let mut t = TempStore::new("state");
    assert_eq!(t.store().load_state().unwrap(), SavedState::default());
    let state = SavedState {
        nick: Some("zoë".parse().unwrap()),
        rooms: vec!["lobby".parse().unwrap(), "dev".parse().unwrap()],
    };
    t.store().save_state(&state).unwrap();
    t.reopen();
    assert_eq!(t.store().load_state().unwrap(), state);
    t.store().db.put(STATE_KEY, b"junk").unwrap();
    assert!(t.store().load_state().is_err());
}

#[test]
fn a_saved_nick_that_is_no_longer_allowed_falls_back_to_the_default_and_keeps_the_rooms() {
    let t = TempStore::new("old-nick");
    // As an older version saved it, before `#` was refused in nicks.
    let value = t
        .store()
        .encrypt_value(STATE_KEY, b"v1\nnick bob#Ab3dEf\nroom lobby\n")
        .unwrap();
    t.store().db.put(STATE_KEY, value).unwrap();
    assert_eq!(
        t.store().load_state().unwrap(),
        SavedState {
            nick: None,
            rooms: vec!["lobby".parse().unwrap()],
        }
    );
}

#[test]
fn each_run_starts_its_sessions_above_every_earlier_runs_even_ahead_of_the_clock() {
    let mut t = TempStore::new("sessions");
    let first = t.store().start_sessions(1_000, 100);
    assert_eq!(
        first,
        Sessions {
            after: 1_000,
            saved: Some(1_100)
        }
    );
    // That run used sessions up to 1_100 and reserved more; the clock went back.
    t.store().save_sessions(5_000).unwrap();
    t.reopen();
    let second = t.store().start_sessions(2_000, 100);
    assert_eq!(second.after, 5_000);
    assert_eq!(second.saved, Some(5_100));
    // A clock ahead of the record wins.
    assert_eq!(t.store().start_sessions(9_000, 100).after, 9_000);
    // A damaged record is an error, and the clock alone starts sessions.
    t.store().db.put(SESSIONS_KEY, b"junk").unwrap();
    assert!(t.store().load_sessions().is_err());
    assert_eq!(t.store().start_sessions(3_000, 100).after, 3_000);
}

#[test]
fn nothing_readable_reaches_the_disk() {
    let mut t = TempStore::new("plaintext");
    let ann = Keypair::generate_ed25519();
    let envelopes = chats(&ann, "needle-room", 1..=200, "needle-text-");
    t.store().put_messages(&envelopes).unwrap();
    t.store()
        .save_state(&SavedState {
            nick: Some("needle-nick".parse().unwrap()),
            rooms: vec!["needle-room".parse().unwrap()],
        })
        .unwrap();
    t.reopen();
    let mut bytes = Vec::new();
    for entry in std::fs::read_dir(t.dir.join(STORE_DIR)).unwrap() {
        bytes.extend(std::fs::read(entry.unwrap().path()).unwrap());
    }
    assert!(bytes.len() > 200 * 100, "the messages are on disk");
    let ids: Vec<MessageId> = envelopes.iter().map(Envelope::id_bytes).collect();
    for needle in [
        &b"needle"[..],
        ann.public().to_peer_id().to_bytes().as_slice(),
        &ids[0][..],
        &ids[199][..],
    ] {
        assert!(
            !bytes.windows(needle.len()).any(|w| w == needle),
            "{needle:?} found on disk"
        );
    }
}

#[test]
fn retention_drops_the_oldest_of_a_full_room_and_of_the_largest_room_over_the_quota() {
    let mut t = TempStore::new("retention");
    let ann = Keypair::generate_ed25519();
    let lobby: RoomName = "lobby".parse().unwrap();
    let dev: RoomName = "dev".parse().unwrap();
    let retention = Retention {
        room_messages: 30,
        total_messages: 40,
        max_age_ms: None,
    };
    t.store
        .as_mut()
        .unwrap()
        .set_retention(retention, 0)
        .unwrap();
    let lobby_msgs = chats(&ann, "lobby", 1..=50, "l");
    t.store().put_messages(&lobby_msgs).unwrap();
    assert_eq!(t.store().room_len(&lobby), 30);
    let page = t.store().latest(&lobby, 100, u64::MAX).unwrap();
    assert_eq!(
        texts(&page).first().map(String::as_str),
        Some("l21"),
        "the oldest went"
    );
    let dev_msgs: Vec<Envelope> = (1..=20)
        .map(|ts| chat(&ann, "dev", 1_000 + ts, &format!("d{ts}")))
        .collect();
    t.store().put_messages(&dev_msgs).unwrap();
    let (l, d) = (t.store().room_len(&lobby), t.store().room_len(&dev));
    assert!(l + d <= 40, "{l} + {d}");
    assert_eq!(d, 20, "the largest room gave way");
    t.reopen();
    assert_eq!(
        t.store().room_len(&lobby),
        l,
        "what was dropped is gone from disk too"
    );
    assert_eq!(
        t.store()
            .latest(&lobby, 100, u64::MAX)
            .unwrap()
            .messages
            .len(),
        l
    );
}

#[test]
fn messages_older_than_the_age_kept_are_dropped_and_not_asked_for() {
    let mut t = TempStore::new("age");
    let ann = Keypair::generate_ed25519();
    let room: RoomName = "lobby".parse().unwrap();
    let now = super::unix_ms();
    let day = 86_400_000;
    let envelopes = [
        chat(&ann, "lobby", now - 3 * day, "old"),
        chat(&ann, "lobby", now - 1_000, "new"),
    ];
    t.store().put_messages(&envelopes).unwrap();
    let retention = Retention {
        max_age_ms: Some(day),
        ..Retention::default()
    };
    t.store
        .as_mut()
        .unwrap()
        .set_retention(retention, now)
        .unwrap();
    assert_eq!(
        texts(&t.store().latest(&room, 10, u64::MAX).unwrap()),
        ["new"]
    );
    let other = TempStore::new("age-other");
    other.store().put_messages(&envelopes).unwrap();
    assert!(
        reconcile(t.store(), other.store(), &room).is_empty(),
        "what would be dropped at once is not asked for"
    );
}

#[test]
fn forgetting_a_room_drops_its_history_and_nothing_else() {
    let mut t = TempStore::new("forget");
    let ann = Keypair::generate_ed25519();
    let lobby: RoomName = "lobby".parse().unwrap();
    let dev: RoomName = "dev".parse().unwrap();
    let mut envelopes: Vec<Envelope> = (1..=10)
        .map(|ts| chat(&ann, "lobby", ts, &format!("l{ts}")))
        .collect();
    envelopes.push(chat(&ann, "dev", 5, "kept"));
    t.store().put_messages(&envelopes).unwrap();
    assert_eq!(t.store().forget(&lobby).unwrap(), 10);
    assert_eq!(t.store().room_len(&lobby), 0);
    t.reopen();
    assert!(
        t.store()
            .latest(&lobby, 100, u64::MAX)
            .unwrap()
            .messages
            .is_empty()
    );
    assert_eq!(t.store().room_len(&lobby), 0);
    assert_eq!(
        texts(&t.store().latest(&dev, 100, u64::MAX).unwrap()),
        ["kept"]
    );
}

#[test]
fn a_lockbox_opens_for_each_of_its_recipients_and_no_one_else() {
    let (a, b, c) = (
        TempStore::new("lockbox-a"),
        TempStore::new("lockbox-b"),
        TempStore::new("lockbox-c"),
    );
    let to = [a.store().lockbox_recipient(), b.store().lockbox_recipient()];
    let lockbox = Store::seal_lockbox(&to, b"signed rotation").unwrap();
    assert_eq!(
        a.store().open_lockbox(&lockbox).unwrap(),
        b"signed rotation"
    );
    assert_eq!(
        b.store().open_lockbox(&lockbox).unwrap(),
        b"signed rotation"
    );
    assert_eq!(c.store().open_lockbox(&lockbox), None);
    let mut bent = lockbox.clone();
    let last = bent.len() - 1;
    bent[last] ^= 1;
    assert_eq!(a.store().open_lockbox(&bent), None);
    assert_eq!(a.store().open_lockbox(b"not age"), None);
    assert!(Store::seal_lockbox(&["age1nonsense".into()], b"x").is_err());
    assert!(Store::seal_lockbox(&[], b"x").is_err());
}

#[test]
fn the_lockbox_identity_survives_a_reopen_and_is_not_the_storage_key() {
    let mut t = TempStore::new("lockbox-reopen");
    let before = t.store().lockbox_recipient();
    assert_ne!(before, t.keys.storage.to_public().to_string());
    t.reopen();
    assert_eq!(t.store().lockbox_recipient(), before);
}
