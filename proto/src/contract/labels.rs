//! Every domain-separation label and format magic Palaver hashes, signs or
//! writes, spelled once. Two inputs under different labels can never be taken
//! for one another, so a signature, a hash or a sealed value made for one
//! purpose is worthless for any other. A second implementation needs these
//! bytes exactly: PROTOCOL.md lists them, and a test checks that it does.
//!
//! The wire labels are part of what peers exchange. The at-rest ones are
//! never sent; they belong to the format of a node's data dir, which another
//! implementation reading the same data dir would need.

/// Whether a label is part of what peers exchange or only of a node's own files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Sent to, or checked by, other peers.
    Wire,
    /// Only in the node's data dir (key file and history store).
    AtRest,
}

/// One row of the label table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Label {
    /// The constant's name in this module.
    pub name: &'static str,
    /// The exact bytes.
    pub bytes: &'static [u8],
    pub scope: Scope,
    /// What the label separates, in a few words.
    pub purpose: &'static str,
}

/// What an envelope's ed25519 signature covers before the envelope's own
/// bytes (version through payload).
pub const ENVELOPE_SIGNATURE: &[u8] = b"palaver/envelope/v1\0";
/// What is hashed before the room name to make its rendezvous namespace.
pub const RENDEZVOUS_NAMESPACE: &[u8] = b"palaver room v1\0";
/// What every plaintext in the history store starts with, before the key it
/// was sealed under.
pub const STORE_VALUE: &[u8] = b"palaver/value/v1\0";
/// The message of the HMAC-SHA256 (keyed by the age identity's secret string)
/// that derives the store's index key. No trailing NUL, unlike the others.
pub const STORE_INDEX_KEY: &[u8] = b"palaver/store-index/v1";
/// The label of a room's store tag: HMAC-SHA256(index key, label, 0x00, room
/// name), first 16 bytes. The 0x00 between label and data is added by the
/// tagging, not part of the label.
pub const STORE_ROOM_TAG: &[u8] = b"room";
/// The label of a message's store tag: HMAC-SHA256(index key, label, 0x00,
/// message id), first 16 bytes.
pub const STORE_ID_TAG: &[u8] = b"id";
/// The message of the HMAC-SHA256 (keyed by the store's index key) that
/// derives the key sealing the reconciliation index: each stored message's
/// id, encrypted with XChaCha20-Poly1305, readable without age.
pub const STORE_ID_SEAL: &[u8] = b"palaver/store-id-seal/v1";
/// The HKDF-SHA256 `info` that derives a private room's epoch id from the
/// epoch key (first 16 bytes): names the key without revealing it.
pub const PRIVATE_EPOCH_ID: &[u8] = b"palaver/private/epoch-id/v1";
/// The HKDF-SHA256 `info` that derives a private room's gossipsub topic id
/// from the epoch key: opaque, and new with every key.
pub const PRIVATE_TOPIC: &[u8] = b"palaver/private/topic/v1";
/// The HKDF-SHA256 `info` that derives a private room's rendezvous
/// namespace from the epoch key.
pub const PRIVATE_NAMESPACE: &[u8] = b"palaver/private/namespace/v1";
/// The HKDF-SHA256 `info` that derives the XChaCha20-Poly1305 key sealing a
/// private room's frames from the epoch key.
pub const PRIVATE_MESSAGE_KEY: &[u8] = b"palaver/private/message-key/v1";
/// What the associated data of a sealed private frame starts with, before
/// the frame's version and epoch id.
pub const PRIVATE_FRAME: &[u8] = b"palaver/private/frame/v1\0";
/// What a private room's rotation signature covers before the statement's
/// own bytes.
pub const PRIVATE_ROTATION: &[u8] = b"palaver/private/rotation/v1\0";
/// The first line of the decrypted key file.
pub const KEY_FILE_MAGIC: &str = "palaver-keys v1";

/// Every label, in one table.
pub const ALL: [Label; 14] = [
    Label {
        name: "ENVELOPE_SIGNATURE",
        bytes: ENVELOPE_SIGNATURE,
        scope: Scope::Wire,
        purpose: "envelope signatures",
    },
    Label {
        name: "RENDEZVOUS_NAMESPACE",
        bytes: RENDEZVOUS_NAMESPACE,
        scope: Scope::Wire,
        purpose: "a room's rendezvous namespace",
    },
    Label {
        name: "PRIVATE_EPOCH_ID",
        bytes: PRIVATE_EPOCH_ID,
        scope: Scope::Wire,
        purpose: "a private room's epoch id",
    },
    Label {
        name: "PRIVATE_TOPIC",
        bytes: PRIVATE_TOPIC,
        scope: Scope::Wire,
        purpose: "a private room's topic id",
    },
    Label {
        name: "PRIVATE_NAMESPACE",
        bytes: PRIVATE_NAMESPACE,
        scope: Scope::Wire,
        purpose: "a private room's rendezvous namespace",
    },
    Label {
        name: "PRIVATE_MESSAGE_KEY",
        bytes: PRIVATE_MESSAGE_KEY,
        scope: Scope::Wire,
        purpose: "the key sealing a private room's frames",
    },
    Label {
        name: "PRIVATE_FRAME",
        bytes: PRIVATE_FRAME,
        scope: Scope::Wire,
        purpose: "a sealed private frame's associated data",
    },
    Label {
        name: "PRIVATE_ROTATION",
        bytes: PRIVATE_ROTATION,
        scope: Scope::Wire,
        purpose: "a private room's rotation signatures",
    },
    Label {
        name: "STORE_VALUE",
        bytes: STORE_VALUE,
        scope: Scope::AtRest,
        purpose: "sealed store values",
    },
    Label {
        name: "STORE_INDEX_KEY",
        bytes: STORE_INDEX_KEY,
        scope: Scope::AtRest,
        purpose: "the store's index key",
    },
    Label {
        name: "STORE_ID_SEAL",
        bytes: STORE_ID_SEAL,
        scope: Scope::AtRest,
        purpose: "the key sealing the store's reconciliation index",
    },
    Label {
        name: "STORE_ROOM_TAG",
        bytes: STORE_ROOM_TAG,
        scope: Scope::AtRest,
        purpose: "room tags in store keys",
    },
    Label {
        name: "STORE_ID_TAG",
        bytes: STORE_ID_TAG,
        scope: Scope::AtRest,
        purpose: "message tags in store keys",
    },
    Label {
        name: "KEY_FILE_MAGIC",
        bytes: KEY_FILE_MAGIC.as_bytes(),
        scope: Scope::AtRest,
        purpose: "the decrypted key file",
    },
];

/// A label's bytes as a Rust byte-string literal would spell them, without
/// the quotes: printable ASCII as itself, `\0`, `\t`, `\n`, `\r`, `\\`, `\"`,
/// and `\xNN` (lowercase) for any other byte. PROTOCOL.md writes every label
/// this way, inside backticks.
pub fn escaped(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for &b in bytes {
        match b {
            0 => out.push_str("\\0"),
            b'\t' => out.push_str("\\t"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\\' => out.push_str("\\\\"),
            b'"' => out.push_str("\\\""),
            0x20..=0x7e => out.push(char::from(b)),
            other => out.push_str(&format!("\\x{other:02x}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_holds_every_label_under_its_own_name() {
        let find = |name: &str| ALL.iter().find(|l| l.name == name).map(|l| l.bytes);
        assert_eq!(find("ENVELOPE_SIGNATURE"), Some(ENVELOPE_SIGNATURE));
        assert_eq!(find("RENDEZVOUS_NAMESPACE"), Some(RENDEZVOUS_NAMESPACE));
        assert_eq!(find("STORE_VALUE"), Some(STORE_VALUE));
        assert_eq!(find("STORE_INDEX_KEY"), Some(STORE_INDEX_KEY));
        assert_eq!(find("STORE_ROOM_TAG"), Some(STORE_ROOM_TAG));
        assert_eq!(find("STORE_ID_TAG"), Some(STORE_ID_TAG));
        assert_eq!(find("STORE_ID_SEAL"), Some(STORE_ID_SEAL));
        assert_eq!(find("KEY_FILE_MAGIC"), Some(KEY_FILE_MAGIC.as_bytes()));
        assert_eq!(find("PRIVATE_EPOCH_ID"), Some(PRIVATE_EPOCH_ID));
        assert_eq!(find("PRIVATE_TOPIC"), Some(PRIVATE_TOPIC));
        assert_eq!(find("PRIVATE_NAMESPACE"), Some(PRIVATE_NAMESPACE));
        assert_eq!(find("PRIVATE_MESSAGE_KEY"), Some(PRIVATE_MESSAGE_KEY));
        assert_eq!(find("PRIVATE_FRAME"), Some(PRIVATE_FRAME));
        assert_eq!(find("PRIVATE_ROTATION"), Some(PRIVATE_ROTATION));
    }

    #[test]
    fn the_labels_are_spelled_exactly_as_the_format_needs() {
        assert_eq!(ENVELOPE_SIGNATURE, b"palaver/envelope/v1\x00");
        assert_eq!(RENDEZVOUS_NAMESPACE, b"palaver room v1\x00");
        assert_eq!(STORE_VALUE, b"palaver/value/v1\x00");
        assert_eq!(STORE_INDEX_KEY, b"palaver/store-index/v1");
        assert_eq!(STORE_ROOM_TAG, b"room");
        assert_eq!(STORE_ID_TAG, b"id");
        assert_eq!(STORE_ID_SEAL, b"palaver/store-id-seal/v1");
        assert_eq!(KEY_FILE_MAGIC, "palaver-keys v1");
        assert_eq!(PRIVATE_EPOCH_ID, b"palaver/private/epoch-id/v1");
        assert_eq!(PRIVATE_TOPIC, b"palaver/private/topic/v1");
        assert_eq!(PRIVATE_NAMESPACE, b"palaver/private/namespace/v1");
        assert_eq!(PRIVATE_MESSAGE_KEY, b"palaver/private/message-key/v1");
        assert_eq!(PRIVATE_FRAME, b"palaver/private/frame/v1\x00");
        assert_eq!(PRIVATE_ROTATION, b"palaver/private/rotation/v1\x00");
    }

    #[test]
    fn no_label_is_another_or_begins_another() {
        for a in &ALL {
            for b in &ALL {
                if a.name != b.name {
                    assert!(
                        !b.bytes.starts_with(a.bytes),
                        "{} begins {}",
                        a.name,
                        b.name
                    );
                }
            }
        }
    }

    #[test]
    fn only_the_signature_namespace_and_private_room_labels_go_on_the_wire() {
        let wire: Vec<&str> = ALL
            .iter()
            .filter(|l| l.scope == Scope::Wire)
            .map(|l| l.name)
            .collect();
        assert_eq!(
            wire,
            [
                "ENVELOPE_SIGNATURE",
                "RENDEZVOUS_NAMESPACE",
                "PRIVATE_EPOCH_ID",
                "PRIVATE_TOPIC",
                "PRIVATE_NAMESPACE",
                "PRIVATE_MESSAGE_KEY",
                "PRIVATE_FRAME",
                "PRIVATE_ROTATION",
            ]
        );
    }

    #[test]
    fn escaping_spells_bytes_as_a_rust_byte_string_would() {
        assert_eq!(escaped(b"palaver room v1\0"), "palaver room v1\\0");
        assert_eq!(escaped(b"a\tb\nc\rd"), "a\\tb\\nc\\rd");
        assert_eq!(escaped(b"q\"s\\"), "q\\\"s\\\\");
        assert_eq!(escaped(&[0x7f, 0xff, 0x01]), "\\x7f\\xff\\x01");
        assert_eq!(escaped(b""), "");
    }
}
