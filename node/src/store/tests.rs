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
    let page = t.store().latest(&room, 10).unwrap();
    assert_eq!(texts(&page), ["m1", "m2", "m3"]);
    assert_eq!(page.corrupt, 0);
    assert_eq!(texts(&t.store().latest(&room, 2).unwrap()), ["m2", "m3"]);
    let other: RoomName = "other".parse().unwrap();
    assert!(t.store().latest(&other, 10).unwrap().messages.is_empty());
}

#[test]
fn inventories_page_newest_first_and_missing_and_fetch_agree() {
    let t = TempStore::new("inventory");
    let ann = Keypair::generate_ed25519();
    let room: RoomName = "lobby".parse().unwrap();
    let envelopes: Vec<Envelope> = (1..=10)
        .map(|ts| chat(&ann, "lobby", ts, &format!("m{ts}")))
        .collect();
    t.store().put_messages(&envelopes[..8]).unwrap();
    let (first, more) = t.store().inventory(&room, None, 5).unwrap();
    assert!(more);
    assert_eq!(
        first.iter().map(|r| r.ts).collect::<Vec<_>>(),
        [8, 7, 6, 5, 4]
    );
    let (second, more) = t.store().inventory(&room, first.last(), 5).unwrap();
    assert!(!more);
    assert_eq!(second.iter().map(|r| r.ts).collect::<Vec<_>>(), [3, 2, 1]);
    let all: Vec<MessageRef> = envelopes.iter().map(message_ref).collect();
    let missing = t.store().missing(&room, &all).unwrap();
    assert_eq!(missing.iter().map(|r| r.ts).collect::<Vec<_>>(), [9, 10]);
    let fetched = t.store().fetch(&room, &all).unwrap();
    assert_eq!(fetched.len(), 8);
    assert_eq!(fetched[0].as_bytes(), envelopes[0].as_bytes());
}

#[test]
fn a_value_altered_or_moved_to_another_key_is_reported_never_shown() {
    let mut t = TempStore::new("tamper");
    let ann = Keypair::generate_ed25519();
    let room: RoomName = "lobby".parse().unwrap();
    let envelopes: Vec<Envelope> = (1..=3)
        .map(|ts| chat(&ann, "lobby", ts, &format!("m{ts}")))
        .collect();
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
    let page = t.store().latest(&room, 10).unwrap();
    assert_eq!(texts(&page), ["m1"]);
    assert_eq!(page.corrupt, 2);
    let refs: Vec<MessageRef> = envelopes.iter().map(message_ref).collect();
    assert_eq!(t.store().fetch(&room, &refs).unwrap().len(), 1);
    let (listed, _) = t.store().inventory(&room, None, 10).unwrap();
    assert_eq!(listed, vec![refs[0]]);
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
    assert_eq!(b.store().latest(&room, 10).unwrap().corrupt, 1);
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
fn nothing_readable_reaches_the_disk() {
    let mut t = TempStore::new("plaintext");
    let ann = Keypair::generate_ed25519();
    let envelopes: Vec<Envelope> = (1..=200)
        .map(|ts| chat(&ann, "needle-room", ts, &format!("needle-text-{ts}")))
        .collect();
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
    for needle in [
        &b"needle"[..],
        ann.public().to_peer_id().to_bytes().as_slice(),
    ] {
        assert!(
            !bytes.windows(needle.len()).any(|w| w == needle),
            "{needle:?} found on disk"
        );
    }
}
