//! Keeps PROTOCOL.md true: every constant its tables name must have the
//! code's value, every constant of the contract must be there, and its test
//! vectors must be what the code produces. A second implementation is written
//! from that page, so a stale number there is a bug.
#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

use std::collections::BTreeMap;

use libp2p_identity::Keypair;
use palaver_proto::contract::{self, labels};
use palaver_proto::envelope::{Envelope, hex_id};
use palaver_proto::history::reconcile::{Items, item_id};
use palaver_proto::history::{MessageRef, Refusal, Request, Response};
use palaver_proto::wire::{Body, Payload};

const PAGE: &str = include_str!("../../PROTOCOL.md");

/// The rows of every table in the page whose first cell is a constant's name
/// in backticks (`NAME` or `labels::NAME`): name, then the other cells with
/// their outer backticks removed.
fn constant_rows() -> Vec<(String, Vec<String>)> {
    PAGE.lines()
        .filter_map(|line| {
            let cells: Vec<&str> = line.trim().strip_prefix('|')?.split('|').collect();
            let name = unquote(cells.first()?)?;
            let bare = name.strip_prefix("labels::").unwrap_or(name);
            let is_constant = bare.starts_with(|c: char| c.is_ascii_uppercase())
                && bare
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
            if !is_constant {
                return None;
            }
            let rest = cells[1..]
                .iter()
                .map(|c| unquote(c).unwrap_or(c.trim()).to_owned())
                .collect();
            Some((name.to_owned(), rest))
        })
        .collect()
}

/// The text of a cell that is one code span, without its backticks.
fn unquote(cell: &str) -> Option<&str> {
    let inner = cell.trim().strip_prefix('`')?.strip_suffix('`')?;
    (!inner.contains('`')).then_some(inner)
}

/// Every constant the page must document, with its value written as the
/// page's conventions say: strings and labels escaped, integers in decimal,
/// durations as `<n> ms`.
fn expected() -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    let mut put = |name: &str, value: String| {
        assert!(m.insert(name.to_owned(), value).is_none(), "{name} twice");
    };
    for (name, value) in [
        ("TOPIC_PREFIX", contract::TOPIC_PREFIX),
        (
            "IDENTIFY_PROTOCOL_VERSION",
            contract::IDENTIFY_PROTOCOL_VERSION,
        ),
        ("HISTORY_PROTOCOL", contract::HISTORY_PROTOCOL),
        ("RELAY_HOP_PROTOCOL", contract::RELAY_HOP_PROTOCOL),
        ("RENDEZVOUS_PROTOCOL", contract::RENDEZVOUS_PROTOCOL),
        (
            "RENDEZVOUS_NAMESPACE_PREFIX",
            contract::RENDEZVOUS_NAMESPACE_PREFIX,
        ),
    ] {
        put(name, labels::escaped(value.as_bytes()));
    }
    for (name, value) in [
        ("RENDEZVOUS_HASH_BYTES", contract::RENDEZVOUS_HASH_BYTES),
        ("MESSAGE_ID_BYTES", contract::MESSAGE_ID_BYTES),
        ("ENVELOPE_VERSION", usize::from(contract::ENVELOPE_VERSION)),
        ("PAYLOAD_VERSION", usize::from(contract::PAYLOAD_VERSION)),
        ("HISTORY_VERSION", usize::from(contract::HISTORY_VERSION)),
        ("MAX_PAYLOAD_BYTES", contract::MAX_PAYLOAD_BYTES),
        ("MAX_ENVELOPE_BYTES", contract::MAX_ENVELOPE_BYTES),
        ("MAX_GOSSIP_FRAME_BYTES", contract::MAX_GOSSIP_FRAME_BYTES),
        ("MAX_ROOMS", contract::MAX_ROOMS),
        ("LISTENED_EPOCHS", contract::LISTENED_EPOCHS),
        ("MAX_TOPICS_PER_PEER", contract::MAX_TOPICS_PER_PEER),
        (
            "MAX_GOSSIP_CONTROL_BYTES",
            contract::MAX_GOSSIP_CONTROL_BYTES,
        ),
        (
            "NEGENTROPY_VERSION",
            usize::from(contract::NEGENTROPY_VERSION),
        ),
        ("MAX_RECONCILE_BYTES", contract::MAX_RECONCILE_BYTES),
        ("MAX_FETCH", contract::MAX_FETCH),
        ("MAX_FETCH_BYTES", contract::MAX_FETCH_BYTES),
        ("MAX_REQUEST_BYTES", contract::MAX_REQUEST_BYTES),
        ("MAX_RESPONSE_BYTES", contract::MAX_RESPONSE_BYTES),
        ("ROOM_MAX_LEN", contract::ROOM_MAX_LEN),
        ("NICK_MAX_CHARS", contract::NICK_MAX_CHARS),
        ("TEXT_MAX_BYTES", contract::TEXT_MAX_BYTES),
    ] {
        put(name, value.to_string());
    }
    put("MAX_CLOCK_SKEW_MS", contract::MAX_CLOCK_SKEW_MS.to_string());
    for (name, value) in [
        ("BEACON_INTERVAL", contract::BEACON_INTERVAL),
        ("MEMBER_TIMEOUT", contract::MEMBER_TIMEOUT),
    ] {
        put(name, format!("{} ms", value.as_millis()));
    }
    for label in &labels::ALL {
        put(
            &format!("labels::{}", label.name),
            labels::escaped(label.bytes),
        );
    }
    m
}

#[test]
fn every_documented_constant_has_the_codes_value() {
    let expected = expected();
    let rows = constant_rows();
    for (name, cells) in &rows {
        let Some(value) = expected.get(name) else {
            panic!("PROTOCOL.md documents {name}, which this test does not check");
        };
        let documented = cells.first().map(String::as_str).unwrap_or("");
        assert_eq!(
            documented, value,
            "PROTOCOL.md says {name} is `{documented}`, the code says `{value}`"
        );
    }
    for name in expected.keys() {
        assert!(
            rows.iter().any(|(n, _)| n == name),
            "PROTOCOL.md has no table row for {name}"
        );
    }
}

#[test]
fn every_label_row_gives_its_bytes_in_hex_too() {
    let mut with_hex = 0;
    for (name, cells) in constant_rows() {
        let Some(bare) = name.strip_prefix("labels::") else {
            continue;
        };
        let Some(hex) = cells.get(1).filter(|c| {
            !c.is_empty()
                && c.chars()
                    .all(|ch| ch.is_ascii_hexdigit() && !ch.is_ascii_uppercase())
        }) else {
            continue;
        };
        let label = labels::ALL.iter().find(|l| l.name == bare).unwrap();
        let code: String = label.bytes.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(*hex, code, "PROTOCOL.md's hex of {name}");
        with_hex += 1;
    }
    assert_eq!(
        with_hex,
        labels::ALL.len(),
        "the label table gives every label in hex"
    );
}

/// The `name: value` lines of the page's test vectors.
fn vectors() -> BTreeMap<&'static str, &'static str> {
    let section = PAGE.split("\n## Test vectors\n").nth(1).unwrap();
    let block = section.split("```text\n").nth(1).unwrap();
    let block = block.split("```").next().unwrap();
    block
        .lines()
        .filter_map(|l| l.split_once(": "))
        .map(|(k, v)| (k.trim(), v.trim()))
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn the_test_vectors_are_what_the_code_produces() {
    let vectors = vectors();
    let mut checked = Vec::new();
    let mut check = |name: &'static str, code: String| {
        let Some(documented) = vectors.get(name) else {
            panic!("PROTOCOL.md has no test vector {name:?}");
        };
        assert_eq!(*documented, code, "PROTOCOL.md's test vector {name:?}");
        checked.push(name);
    };
    let seed: [u8; 32] = std::array::from_fn(|i| i as u8);
    check("seed", hex(&seed));
    let key = Keypair::ed25519_from_bytes(seed).unwrap();
    let public = key.public();
    let encoded_key = public.encode_protobuf();
    check("key", hex(&encoded_key));
    check("public key", hex(&encoded_key[4..]));
    check("peer id", public.to_peer_id().to_string());

    let room: palaver_proto::RoomName = "lobby".parse().unwrap();
    let payload = Payload {
        room: room.clone(),
        nick: "alice".parse().unwrap(),
        ts: 1_700_000_000_000,
        session: 1_700_000_000_001,
        seq: 0,
        body: Body::Chat("hello".parse().unwrap()),
    };
    check("payload", hex(&payload.encode()));
    let envelope = Envelope::seal(&key, payload).unwrap();
    check("envelope", hex(envelope.as_bytes()));
    let id = contract::message_id(envelope.as_bytes());
    check("message id", hex_id(&id));
    check("topic", contract::topic(&room));
    check("namespace", contract::rendezvous_namespace(&room));

    let reference = MessageRef {
        ts: 1_700_000_000_000,
        id,
    };
    check("item id", hex(&item_id(&reference)));
    // Negentropy messages are the `negentropy` crate's (the reference
    // implementation's Rust port), over the sets named in PROTOCOL.md.
    let held = Items::from_refs([reference]);
    let first = held.initiate().unwrap();
    let reconcile = Request::Reconcile {
        room: room.clone(),
        message: first.clone(),
    };
    check("reconcile request", hex(&reconcile.encode()));
    let answer = Items::new().answer(&first).unwrap();
    check(
        "reconcile response",
        hex(&Response::Reconcile(answer).encode()),
    );
    let fetch = Request::Fetch {
        room,
        refs: vec![reference],
    };
    check("fetch request", hex(&fetch.encode()));
    let envelopes = Response::Envelopes(vec![envelope.as_bytes().to_vec()]);
    check("envelopes response", hex(&envelopes.encode()));
    check(
        "refused busy",
        hex(&Response::Refused(Refusal::Busy).encode()),
    );
    for name in vectors.keys() {
        assert!(
            checked.contains(name),
            "PROTOCOL.md has a test vector {name:?} this test does not check"
        );
    }
}
