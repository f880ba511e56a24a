//! What a node's data dir gives away, and how its passphrase guards it: a
//! wrong, missing or changed passphrase and a damaged key file are clear
//! errors that change nothing, and no room name, nick, peer id or message text
//! reaches the disk in the clear (1,000 canaries are written and every byte of
//! the data dir is searched for them).

use std::collections::{BTreeSet, VecDeque};
use std::path::{Path, PathBuf};
use std::process::ExitStatus;

use libp2p::PeerId;
use palaver_testkit::{Node, NodeCommand, PASSPHRASE, PROMPT, binary, temp_dir};
use serde_json::Value;

/// What a one-shot run of the node needs on its command line (plus `--data-dir`).
const NODE_ARGS: &[&str] = &["--json", "--no-mdns", "--listen", "/ip4/127.0.0.1/tcp/0"];

/// One finished run of the node binary.
#[derive(Debug)]
struct Run {
    status: ExitStatus,
    /// stdout, one JSON value per line.
    lines: Vec<Value>,
    stderr: String,
}

impl Run {
    /// The `ready` line of a run that started and quit cleanly.
    fn ready(&self) -> &Value {
        assert!(self.status.success(), "the node failed: {self:#?}");
        let ready = self.lines.first().expect("a ready line");
        assert_eq!(ready["event"], "ready", "{self:#?}");
        ready
    }

    fn peer_id(&self) -> String {
        self.ready()["peer_id"]
            .as_str()
            .expect("peer_id")
            .to_owned()
    }

    /// A failed run: non-zero exit, `expected` on stderr, nothing on stdout.
    fn assert_refused(&self, expected: &str) {
        assert!(!self.status.success(), "should have failed: {self:#?}");
        assert!(
            self.stderr.contains(expected),
            "{expected:?} not on stderr: {self:#?}"
        );
        assert!(
            self.lines.is_empty(),
            "nothing on stdout on failure: {self:#?}"
        );
    }
}

/// Runs the node binary on `data_dir` with exactly `args`, the `PALAVER_*`
/// variables of this process removed and `env` set, `input` on stdin (a pipe,
/// never a terminal) and then end of input, and waits for it to exit; a node
/// that hangs fails the test instead of hanging it.
fn run_node(data_dir: &Path, args: &[&str], env: &[(&str, &str)], input: &str) -> Run {
    let out = NodeCommand::new(binary("node"), data_dir)
        .no_passphrase()
        .log("warn")
        .args(args)
        .envs(env.iter().copied())
        .run(input.as_bytes(), PROMPT)
        .unwrap_or_else(|e| panic!("{e:#}"));
    let stdout = String::from_utf8(out.stdout).expect("stdout is UTF-8");
    Run {
        status: out.status,
        lines: stdout
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l:?}")))
            .collect(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn with_passphrase(passphrase: &str) -> [(&'static str, &str); 1] {
    [("PALAVER_PASSPHRASE", passphrase)]
}

fn key_file(dir: &Path) -> PathBuf {
    dir.join("keys.age")
}

/// A node started by the harness on `dir`'s data, told to quit, and the
/// `ready` line it printed.
fn start_and_quit(name: &str, dir: &Path, commands: &[&str]) -> (Value, Vec<Value>) {
    let mut node = Node::spawn(name, dir.to_owned(), NODE_ARGS);
    let ready = node.seen[0].clone();
    let replies = commands.iter().map(|c| node.command(c)).collect();
    assert!(node.close_and_wait().success(), "{name} quits cleanly");
    (ready, replies)
}

#[test]
fn a_wrong_passphrase_is_a_clear_error_that_leaves_the_key_file_as_it_was() {
    let mut node = Node::start("wrong-pass", "a", &[]);
    let dir = node.data_dir.clone();
    let id = node.peer_id.clone();
    assert!(node.close_and_wait().success());
    let before = std::fs::read(key_file(&dir)).unwrap();

    for wrong in ["not the passphrase", "correct horse battery staple "] {
        let run = run_node(&dir, NODE_ARGS, &with_passphrase(wrong), "/id\n");
        run.assert_refused("wrong passphrase");
        assert_eq!(run.status.code(), Some(1), "{run:#?}");
        assert_eq!(
            std::fs::read(key_file(&dir)).unwrap(),
            before,
            "keys.age is left byte for byte as it was"
        );
    }

    let run = run_node(&dir, NODE_ARGS, &with_passphrase(PASSPHRASE), "/id\n");
    assert_eq!(
        run.peer_id(),
        id,
        "the right passphrase opens the same identity"
    );
}

#[test]
fn without_a_passphrase_the_node_exits_2_and_creates_nothing() {
    let parent = temp_dir("no-pass", "parent");
    let fresh = parent.join("fresh");
    let empty = parent.join("empty");
    std::fs::create_dir(&empty).unwrap();
    for dir in [&fresh, &empty] {
        let run = run_node(dir, NODE_ARGS, &[], "/join lobby\n");
        assert_eq!(run.status.code(), Some(2), "{run:#?}");
        run.assert_refused("no passphrase: ");
        assert!(
            run.stderr.contains("--passphrase-file") && run.stderr.contains("PALAVER_PASSPHRASE"),
            "the message says how to give one: {run:#?}"
        );
    }
    assert!(!fresh.exists(), "no data dir is created");
    let left: Vec<_> = std::fs::read_dir(&empty)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(
        left.is_empty(),
        "an existing data dir stays empty: {left:?}"
    );

    // The same for `passwd` (the old passphrase is missing).
    let run = run_node(
        &fresh,
        &["passwd"],
        &[("PALAVER_NEW_PASSPHRASE", "whatever")],
        "",
    );
    assert_eq!(run.status.code(), Some(2), "{run:#?}");
    run.assert_refused("no passphrase: ");
    assert!(!fresh.exists());
}

#[test]
fn a_passphrase_file_works_and_its_trailing_newline_is_not_part_of_it() {
    let dir = temp_dir("pass-file", "a");
    let file = temp_dir("pass-file", "secrets").join("passphrase");
    std::fs::write(&file, "a passphrase from a file\n").unwrap();
    let file_arg = file.to_str().unwrap();
    let args: Vec<&str> = NODE_ARGS
        .iter()
        .copied()
        .chain(["--passphrase-file", file_arg])
        .collect();

    let created = run_node(&dir, &args, &[], "/id\n");
    let id = created.peer_id();
    assert!(key_file(&dir).exists());

    // The file wins over the variable; the same file opens the keys again.
    let again = run_node(&dir, &args, &with_passphrase("something else"), "/id\n");
    assert_eq!(again.peer_id(), id);
    // The passphrase is the file's content without its newline...
    let by_env = run_node(
        &dir,
        NODE_ARGS,
        &with_passphrase("a passphrase from a file"),
        "/id\n",
    );
    assert_eq!(by_env.peer_id(), id);
    // ... not with it, and not the harness's.
    for wrong in ["a passphrase from a file\n", PASSPHRASE] {
        run_node(&dir, NODE_ARGS, &with_passphrase(wrong), "").assert_refused("wrong passphrase");
    }
    // A passphrase file that cannot be read is a clear error too.
    let missing = file.with_file_name("no-such-file");
    let run = run_node(
        &dir,
        &["--json", "--passphrase-file", missing.to_str().unwrap()],
        &[],
        "",
    );
    assert_eq!(run.status.code(), Some(2), "{run:#?}");
    run.assert_refused("cannot read passphrase file");
}

#[test]
fn passwd_changes_the_passphrase_and_keeps_identity_rooms_and_history() {
    let dir = temp_dir("passwd", "a");
    let (ready, replies) = start_and_quit(
        "a",
        &dir,
        &[
            "/nick Oriel",
            "/join vault",
            "/send vault written under the old passphrase",
        ],
    );
    let id = ready["peer_id"].as_str().unwrap().to_owned();
    assert_eq!(replies[2]["event"], "sent", "{replies:?}");
    let message_id = replies[2]["id"].clone();

    // Old passphrase from the variable, the new one from a file.
    let new_file = temp_dir("passwd", "secrets").join("new");
    std::fs::write(&new_file, "the new passphrase\n").unwrap();
    let run = run_node(
        &dir,
        &[
            "passwd",
            "--new-passphrase-file",
            new_file.to_str().unwrap(),
        ],
        &with_passphrase(PASSPHRASE),
        "",
    );
    assert!(run.status.success(), "{run:#?}");
    assert!(run.stderr.contains("passphrase changed"), "{run:#?}");
    assert!(!dir.join("keys.tmp").exists(), "no temporary file is left");

    run_node(&dir, NODE_ARGS, &with_passphrase(PASSPHRASE), "/id\n")
        .assert_refused("wrong passphrase");
    let after = run_node(
        &dir,
        NODE_ARGS,
        &with_passphrase("the new passphrase"),
        "/history vault 10\n",
    );
    let ready = after.ready();
    assert_eq!(ready["peer_id"], id.as_str(), "the same identity");
    assert_eq!(ready["nick"], "Oriel", "the same nick");
    assert_eq!(
        ready["rooms"],
        serde_json::json!(["vault"]),
        "the same rooms"
    );
    let history = after
        .lines
        .iter()
        .find(|v| v["event"] == "history")
        .unwrap_or_else(|| panic!("no history reply: {after:#?}"));
    assert_eq!(history["corrupt"], 0, "{history}");
    let messages = history["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 1, "{history}");
    assert_eq!(messages[0]["text"], "written under the old passphrase");
    assert_eq!(messages[0]["id"], message_id);
    assert_eq!(messages[0]["from"], id.as_str());

    // Once more, the new one from the variable: only the newest one works.
    let run = run_node(
        &dir,
        &["passwd"],
        &[
            ("PALAVER_PASSPHRASE", "the new passphrase"),
            ("PALAVER_NEW_PASSPHRASE", "the newest passphrase"),
        ],
        "",
    );
    assert!(run.status.success(), "{run:#?}");
    for old in [PASSPHRASE, "the new passphrase"] {
        run_node(&dir, NODE_ARGS, &with_passphrase(old), "").assert_refused("wrong passphrase");
    }
    let newest = run_node(
        &dir,
        NODE_ARGS,
        &with_passphrase("the newest passphrase"),
        "",
    );
    assert_eq!(newest.peer_id(), id);

    // A wrong old passphrase changes nothing.
    let before = std::fs::read(key_file(&dir)).unwrap();
    let run = run_node(
        &dir,
        &["passwd"],
        &[
            ("PALAVER_PASSPHRASE", "a guess"),
            ("PALAVER_NEW_PASSPHRASE", "taken over"),
        ],
        "",
    );
    run.assert_refused("wrong passphrase");
    assert_eq!(std::fs::read(key_file(&dir)).unwrap(), before);
}

#[test]
fn passwd_while_the_node_runs_is_refused_and_changes_nothing() {
    let mut node = Node::start("passwd-busy", "a", &[]);
    let dir = node.data_dir.clone();
    let id = node.peer_id.clone();
    let before = std::fs::read(key_file(&dir)).unwrap();
    let run = run_node(
        &dir,
        &["passwd"],
        &[
            ("PALAVER_PASSPHRASE", PASSPHRASE),
            ("PALAVER_NEW_PASSPHRASE", "while it runs"),
        ],
        "",
    );
    run.assert_refused("in use");
    assert_eq!(std::fs::read(key_file(&dir)).unwrap(), before);
    assert!(!dir.join("keys.tmp").exists());
    // The running node is unharmed, and the old passphrase still opens the keys.
    assert_eq!(node.command("/join lobby")["event"], "ok");
    assert!(node.close_and_wait().success());
    assert_eq!(std::fs::read(key_file(&dir)).unwrap(), before);
    run_node(&dir, NODE_ARGS, &with_passphrase("while it runs"), "")
        .assert_refused("wrong passphrase");
    let run = run_node(&dir, NODE_ARGS, &with_passphrase(PASSPHRASE), "");
    assert_eq!(run.peer_id(), id);
}

#[test]
fn a_corrupt_key_file_is_a_clear_error_and_is_left_in_place() {
    let dir = temp_dir("corrupt-keys", "a");
    let id = run_node(&dir, NODE_ARGS, &with_passphrase(PASSPHRASE), "").peer_id();
    let good = std::fs::read(key_file(&dir)).unwrap();
    let header_end = good
        .windows(4)
        .position(|w| w == b"\n---")
        .expect("an age header");
    let flipped = |i: usize| {
        let mut bytes = good.clone();
        bytes[i] ^= 1;
        bytes
    };
    let damaged: [(&str, Vec<u8>); 5] = [
        (
            "garbage",
            (0..=255u8).rev().chain(*b"not an age file\n\0").collect(),
        ),
        ("empty", Vec::new()),
        ("cut short", good[..good.len() - 10].to_vec()),
        ("last byte flipped", flipped(good.len() - 1)),
        ("header MAC flipped", flipped(header_end + 6)),
    ];
    for (what, bytes) in &damaged {
        std::fs::write(key_file(&dir), bytes).unwrap();
        let run = run_node(&dir, NODE_ARGS, &with_passphrase(PASSPHRASE), "/id\n");
        run.assert_refused("is corrupt");
        assert!(
            run.stderr.contains("keys.age"),
            "{what}: names the file: {run:#?}"
        );
        assert!(
            !run.stderr.contains("wrong passphrase"),
            "{what}: not blamed on the passphrase: {run:#?}"
        );
        let run = run_node(
            &dir,
            &["passwd"],
            &[
                ("PALAVER_PASSPHRASE", PASSPHRASE),
                ("PALAVER_NEW_PASSPHRASE", "another"),
            ],
            "",
        );
        run.assert_refused("is corrupt");
        assert_eq!(
            &std::fs::read(key_file(&dir)).unwrap(),
            bytes,
            "{what}: left in place, byte for byte"
        );
        assert!(!dir.join("keys.tmp").exists());
    }
    // Put back, the good file works again: nothing else was touched.
    std::fs::write(key_file(&dir), &good).unwrap();
    let run = run_node(&dir, NODE_ARGS, &with_passphrase(PASSPHRASE), "");
    assert_eq!(run.peer_id(), id);
}

// ---- the canary test ----

const ROOM: &str = "canary-room-q7x";
const NICK: &str = "Vexmoor-Quillon";
const OTHER_NICK: &str = "Brambleth-Oxley";
const CANARIES: usize = 1000;
const OTHER_CANARIES: usize = 5;
/// Messages in flight at once (well below the store's queue).
const WINDOW: usize = 64;

fn canary(n: usize) -> String {
    format!("canary-{n}-zebra-quartz")
}

/// The bytes a peer id's base58 string stands for (its identity multihash,
/// which holds the public key).
fn peer_id_bytes(text: &str) -> Vec<u8> {
    text.parse::<PeerId>()
        .unwrap_or_else(|e| panic!("{text}: not a peer id: {e}"))
        .to_bytes()
}

/// Every file under `dir`, recursively.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut dirs = vec![dir.to_owned()];
    while let Some(d) = dirs.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let entry = entry.unwrap();
            let kind = entry.file_type().unwrap();
            if kind.is_dir() {
                dirs.push(entry.path());
            } else {
                files.push(entry.path());
            }
        }
    }
    files.sort();
    files
}

/// Where each needle occurs in the files under `dir`: (file, needle's name).
fn search_tree(dir: &Path, needles: &[(&str, Vec<u8>)]) -> Vec<(PathBuf, String)> {
    let mut hits = Vec::new();
    for file in files_under(dir) {
        let bytes = std::fs::read(&file).unwrap();
        for (name, needle) in needles {
            if bytes.windows(needle.len()).any(|w| w == needle.as_slice()) {
                hits.push((file.clone(), (*name).to_owned()));
            }
        }
    }
    hits
}

/// What must never be on the disk in the clear.
fn needles(peer_ids: &[&str]) -> Vec<(&'static str, Vec<u8>)> {
    let mut needles = vec![
        ("the canary prefix", b"canary-".to_vec()),
        ("a canary's tail", b"-zebra-quartz".to_vec()),
        ("the room name", ROOM.as_bytes().to_vec()),
        ("the room name's distinctive part", b"room-q7x".to_vec()),
        ("the nick", NICK.as_bytes().to_vec()),
        ("the other node's nick", OTHER_NICK.as_bytes().to_vec()),
    ];
    for id in peer_ids {
        needles.push(("a peer id (base58)", id.as_bytes().to_vec()));
        needles.push(("a peer id (bytes)", peer_id_bytes(id)));
    }
    needles
}

/// Sends every text to `room`, at most [`WINDOW`] at once, and checks each
/// is replied `sent` (so it is stored).
fn send_all(node: &mut Node, texts: &[String]) -> Vec<Value> {
    let mut in_flight = VecDeque::new();
    let mut next = texts.iter();
    let mut sent = Vec::with_capacity(texts.len());
    loop {
        while in_flight.len() < WINDOW {
            let Some(text) = next.next() else { break };
            node.send_line(&format!("/send {ROOM} {text}"));
            in_flight.push_back(text);
        }
        let Some(text) = in_flight.pop_front() else {
            return sent;
        };
        let reply = node.reply();
        assert_eq!(reply["event"], "sent", "{}: {text}: {reply}", node.name);
        assert_eq!(reply["room"], ROOM);
        sent.push(reply);
    }
}

/// Searches every file under `dir` for what must not be there, after
/// checking the store holds the messages and files of each of `kinds`.
fn assert_nothing_readable(dir: &Path, peer_ids: &[&str], kinds: &[&str], when: &str) {
    let store_files: Vec<PathBuf> = files_under(&dir.join("store"));
    let store_bytes: u64 = store_files
        .iter()
        .map(|f| std::fs::metadata(f).unwrap().len())
        .sum();
    assert!(
        store_files.len() >= 3 && store_bytes > (CANARIES * 100) as u64,
        "{when}: the store holds the messages: {store_bytes} bytes in {store_files:?}"
    );
    let all = files_under(dir);
    for kind in kinds {
        assert!(
            all.iter().any(|f| f
                .file_name()
                .is_some_and(|n| n.to_string_lossy().contains(kind))),
            "{when}: a {kind} file is among those searched: {all:?}"
        );
    }
    let hits = search_tree(dir, &needles(peer_ids));
    assert!(hits.is_empty(), "{when}: readable on disk: {hits:#?}");
}

#[test]
fn the_search_for_canaries_finds_one_in_a_plaintext_file() {
    let dir = temp_dir("canary-control", "plain");
    let deep = dir.join("store").join("deeper");
    std::fs::create_dir_all(&deep).unwrap();
    std::fs::write(dir.join("empty"), b"").unwrap();
    let mut bytes = vec![0u8, 0xff, 7];
    bytes.extend_from_slice(canary(417).as_bytes());
    bytes.extend_from_slice(&[0x80; 3]);
    std::fs::write(deep.join("000007.log"), &bytes).unwrap();
    let peer = libp2p::identity::Keypair::generate_ed25519()
        .public()
        .to_peer_id()
        .to_string();
    std::fs::write(dir.join("LOG"), peer_id_bytes(&peer)).unwrap();
    let hits = search_tree(&dir, &needles(&[&peer]));
    let found: BTreeSet<(String, String)> = hits
        .iter()
        .map(|(f, n)| {
            (
                f.strip_prefix(&dir).unwrap().to_string_lossy().into_owned(),
                n.clone(),
            )
        })
        .collect();
    let expected: BTreeSet<(String, String)> = [
        ("LOG", "a peer id (bytes)"),
        ("store/deeper/000007.log", "the canary prefix"),
        ("store/deeper/000007.log", "a canary's tail"),
    ]
    .iter()
    .map(|(f, n)| ((*f).to_owned(), (*n).to_owned()))
    .collect();
    assert_eq!(found, expected);
}

#[test]
fn a_thousand_canaries_leave_no_room_nick_peer_id_or_text_readable_in_the_data_dir() {
    // The directory names say nothing the search looks for (RocksDB's LOG
    // holds the store's path).
    let dir = temp_dir("disk-scan", "first");
    let mut a = Node::spawn(
        "first",
        dir.clone(),
        &[
            "--json",
            "--no-mdns",
            "--nick",
            NICK,
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
        ],
    );
    let mut b = Node::spawn(
        "second",
        temp_dir("disk-scan", "second"),
        &[
            "--json",
            "--no-mdns",
            "--nick",
            OTHER_NICK,
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
            "--bootstrap",
            &a.addr("tcp"),
        ],
    );
    let (a_id, b_id) = (a.peer_id.clone(), b.peer_id.clone());
    for n in [&mut a, &mut b] {
        assert_eq!(n.command(&format!("/join {ROOM}"))["event"], "ok");
    }
    a.wait_joined(ROOM, &b_id);
    b.wait_joined(ROOM, &a_id);
    // A private room too: its name, keys and invite tokens are stored.
    let invite = a.command("/create canary-private-zebra-quartz");
    assert_eq!(invite["event"], "invite", "{invite}");
    let private = invite["room"].as_str().unwrap().to_owned();
    let code = invite["code"].as_str().unwrap();
    assert_eq!(b.command(&format!("/join {code}"))["event"], "ok");
    assert_eq!(a.command(&format!("/invite {private}"))["event"], "invite");
    assert_eq!(
        a.command(&format!("/send {private} canary-secret-zebra-quartz"))["event"],
        "sent"
    );
    b.wait_for("the private canary", PROMPT, |v| {
        v["event"] == "message" && v["room"] == private.as_str()
    });

    // The other node talks first, so that what it says is stored as received.
    let theirs: Vec<String> = (0..OTHER_CANARIES)
        .map(|n| format!("canary-b{n}-zebra-quartz"))
        .collect();
    send_all(&mut b, &theirs);
    a.wait_for_count("the other node's canaries", OTHER_CANARIES, PROMPT, |v| {
        v["event"] == "message" && v["room"] == ROOM && v["from"] == b_id.as_str()
    });

    let ours: Vec<String> = (0..CANARIES).map(canary).collect();
    let sent = send_all(&mut a, &ours);
    assert!(
        sent.iter().any(|r| r["peers"].as_u64().unwrap() >= 1),
        "they went out to the other node"
    );
    b.wait_for_count("the canaries", CANARIES, PROMPT, |v| {
        v["event"] == "message" && v["room"] == ROOM && v["from"] == a_id.as_str()
    });
    assert!(a.close_and_wait().success());
    assert!(b.close_and_wait().success());

    let ids = [a_id.as_str(), b_id.as_str()];
    let kinds = [
        "keys.age",
        ".log",
        "MANIFEST-",
        "OPTIONS-",
        "LOG",
        "CURRENT",
    ];
    assert_nothing_readable(&dir, &ids, &kinds, "after the first run");

    // They were really stored: the node comes back with its nick, room and
    // every canary.
    let mut again = Node::spawn("first-again", dir.clone(), NODE_ARGS);
    assert_eq!(again.peer_id, a_id);
    let ready = again.seen[0].clone();
    assert_eq!(ready["nick"], NICK, "{ready}");
    assert_eq!(
        ready["rooms"],
        serde_json::json!([ROOM, private]),
        "{ready}"
    );
    let history = again.command(&format!("/history {ROOM} 1000"));
    assert_eq!(history["event"], "history", "{history}");
    assert_eq!(history["corrupt"], 0);
    let texts: Vec<&str> = history["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["text"].as_str().unwrap())
        .collect();
    let expected: Vec<&str> = ours.iter().map(String::as_str).collect();
    assert_eq!(
        texts, expected,
        "the last 1,000 stored are the canaries, in order"
    );
    assert!(again.close_and_wait().success());

    // Reopening replays the write-ahead log into table files: search again.
    let kinds = [&kinds[..], &[".sst"]].concat();
    assert_nothing_readable(&dir, &ids, &kinds, "after a restart");
}

/// Whether this test runs as root (it can then make files another user owns).
fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

#[test]
fn a_data_dir_others_may_write_to_or_that_another_user_owns_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = temp_dir("unsafe-dir", "a");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let run = run_node(&dir, NODE_ARGS, &with_passphrase("p"), "/id\n");
    run.assert_refused("other users may write to it");
    assert!(!key_file(&dir).exists(), "nothing is created in it");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    if !is_root() {
        eprintln!("not root: the case of a dir another user owns is skipped");
        return;
    }
    std::os::unix::fs::chown(&dir, Some(65534), Some(65534)).unwrap();
    let run = run_node(&dir, NODE_ARGS, &with_passphrase("p"), "/id\n");
    run.assert_refused("belongs to uid 65534");
}

#[test]
fn an_identity_planted_by_another_user_is_not_imported() {
    if !is_root() {
        eprintln!("not root: cannot make a file another user owns; skipped");
        return;
    }
    let dir = temp_dir("planted-identity", "a");
    std::fs::create_dir_all(&dir).unwrap();
    let planted = libp2p::identity::Keypair::generate_ed25519();
    let file = dir.join("identity.key");
    std::fs::write(&file, planted.to_protobuf_encoding().unwrap()).unwrap();
    std::os::unix::fs::chown(&file, Some(65534), Some(65534)).unwrap();
    let run = run_node(&dir, NODE_ARGS, &with_passphrase("p"), "/id\n");
    run.assert_refused("belongs to uid 65534");
    assert!(!key_file(&dir).exists());
}

#[test]
fn a_link_planted_where_the_key_file_is_written_is_not_written_through() {
    let dir = temp_dir("planted-link", "a");
    std::fs::create_dir_all(&dir).unwrap();
    let target = temp_dir("planted-link", "victim").join("victim");
    std::fs::write(&target, "precious").unwrap();
    // What the node used to write first, then rename over the key file.
    std::os::unix::fs::symlink(&target, dir.join("keys.tmp")).unwrap();
    let run = run_node(&dir, NODE_ARGS, &with_passphrase("p"), "/id\n");
    run.ready();
    assert!(key_file(&dir).exists());
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "precious");
    assert!(
        !std::fs::symlink_metadata(key_file(&dir))
            .unwrap()
            .file_type()
            .is_symlink(),
        "the key file is a file of its own"
    );
}

#[test]
fn a_running_node_cannot_dump_core() {
    let mut node = Node::start("no-core", "a", &[]);
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", node.pid())).unwrap();
    let core = limits
        .lines()
        .find(|l| l.starts_with("Max core file size"))
        .unwrap();
    let fields: Vec<&str> = core.split_whitespace().collect();
    // "Max core file size  <soft>  <hard>  bytes"
    assert_eq!(&fields[4..6], ["0", "0"], "{core}");
    assert!(node.close_and_wait().success());
}

#[test]
fn a_passphrase_file_other_users_may_read_gets_a_warning() {
    use std::os::unix::fs::PermissionsExt;
    let dir = temp_dir("readable-pass", "a");
    let file = temp_dir("readable-pass", "secrets").join("passphrase");
    std::fs::write(&file, "a passphrase\n").unwrap();
    let args: Vec<&str> = NODE_ARGS
        .iter()
        .copied()
        .chain(["--passphrase-file", file.to_str().unwrap()])
        .collect();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let run = run_node(&dir, &args, &[], "/id\n");
    run.ready();
    assert!(
        run.stderr.contains("may be read by other users"),
        "{run:#?}"
    );
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let run = run_node(&dir, &args, &[], "/id\n");
    run.ready();
    assert!(
        !run.stderr.contains("may be read by other users"),
        "{run:#?}"
    );
}
