//! Property tests of the key file's decoders (issue 13): the decrypted text
//! ([`Keys::decode`]), the age file around it ([`decrypt`]), and the legacy
//! plaintext identity. None panics on arbitrary or bent input; the keys come
//! back from what was written; and a file that still opens after it was bent
//! holds the very keys written (age authenticates it). Cheap scrypt, and
//! `PROPTEST_CASES` raises the modest default count (`scripts/fuzz`).
#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{Config, FileFailurePersistence};

use super::*;

/// Cheap scrypt, as the other tests of the key file use.
const TEST_LOG_N: u8 = 4;

fn config(default_cases: u32) -> Config {
    let mut config = Config {
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(
            "proptest-regressions/store/key_file/fuzz.txt",
        ))),
        ..Config::default()
    };
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = default_cases;
    }
    config
}

fn keys(seed: [u8; 32]) -> Keys {
    Keys::generate(Some(Keypair::ed25519_from_bytes(seed).unwrap()))
}

/// What two sets of keys are, compared.
fn same(a: &Keys, b: &Keys) -> bool {
    a.keypair.public() == b.keypair.public()
        && a.storage.to_string().expose_secret() == b.storage.to_string().expose_secret()
}

fn plaintext(keys: &Keys) -> String {
    keys.encode().unwrap().expose_secret().to_owned()
}

/// The key file's bytes for `keys`, as [`write`] makes them (in memory).
fn ciphertext(keys: &Keys, passphrase: &SecretString) -> Vec<u8> {
    let mut recipient = age::scrypt::Recipient::new(passphrase.clone());
    recipient.set_work_factor(TEST_LOG_N);
    age::encrypt(&recipient, plaintext(keys).as_bytes()).unwrap()
}

/// One change to some bytes.
#[derive(Debug, Clone)]
enum Mutation {
    FlipBit(Index, u8),
    SetByte(Index, u8),
    Truncate(Index),
    Insert(Index, Vec<u8>),
    Remove(Index, usize),
}

fn mutations() -> impl Strategy<Value = Vec<Mutation>> {
    let one = prop_oneof![
        (any::<Index>(), 0u8..8).prop_map(|(i, b)| Mutation::FlipBit(i, b)),
        (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::SetByte(i, b)),
        any::<Index>().prop_map(Mutation::Truncate),
        (any::<Index>(), prop::collection::vec(any::<u8>(), 1..8))
            .prop_map(|(i, b)| Mutation::Insert(i, b)),
        (any::<Index>(), 1usize..8).prop_map(|(i, n)| Mutation::Remove(i, n)),
    ];
    prop::collection::vec(one, 1..=3)
}

fn apply(mut bytes: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
    for m in mutations {
        let len = bytes.len();
        match m {
            Mutation::FlipBit(i, b) if len > 0 => bytes[i.index(len)] ^= 1 << b,
            Mutation::SetByte(i, b) if len > 0 => bytes[i.index(len)] = *b,
            Mutation::Truncate(i) if len > 0 => bytes.truncate(i.index(len)),
            Mutation::Insert(i, more) => {
                let at = i.index(len + 1);
                bytes.splice(at..at, more.iter().copied());
            }
            Mutation::Remove(i, n) if len > 0 => {
                let at = i.index(len);
                bytes.drain(at..(at + n).min(len));
            }
            _ => {}
        }
    }
    bytes
}

/// Whatever decodes encodes again to text that decodes to the same keys.
fn check_text(text: &str) {
    if let Ok(decoded) = Keys::decode(text) {
        let again = Keys::decode(&plaintext(&decoded)).unwrap();
        assert!(same(&decoded, &again));
    }
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn the_keys_come_back_from_their_text(seed in any::<[u8; 32]>()) {
        let keys = keys(seed);
        let decoded = Keys::decode(&plaintext(&keys)).unwrap();
        prop_assert!(same(&keys, &decoded));
    }

    #[test]
    fn bent_key_text_never_panics_the_decoder(seed in any::<[u8; 32]>(), m in mutations()) {
        let bytes = apply(plaintext(&keys(seed)).into_bytes(), &m);
        check_text(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn arbitrary_key_text_never_panics_the_decoder(
        lines in prop::collection::vec(
            prop_oneof![
                "libp2p [0-9a-fA-F+ -]{0,150}",
                "age AGE-SECRET-KEY-1[0-9A-Z]{0,70}",
                "\\PC{0,40}",
            ],
            0..4,
        ),
    ) {
        check_text(&lines.join("\n"));
        check_text(&format!("{MAGIC}\n{}", lines.join("\n")));
    }

    #[test]
    fn arbitrary_legacy_identities_never_panic_the_import(
        bytes in prop::collection::vec(any::<u8>(), 0..128),
        seed in any::<[u8; 32]>(),
        m in mutations(),
    ) {
        let _ = Keypair::from_protobuf_encoding(&bytes);
        let valid = Keypair::ed25519_from_bytes(seed).unwrap().to_protobuf_encoding().unwrap();
        let _ = Keypair::from_protobuf_encoding(&apply(valid, &m));
    }
}

proptest! {
    #![proptest_config(config(64))]

    #[test]
    fn a_bent_key_file_never_panics_and_opens_only_to_the_keys_written(
        seed in any::<[u8; 32]>(),
        m in mutations(),
    ) {
        let passphrase = SecretString::from("passphrase".to_owned());
        let keys = keys(seed);
        let path = Path::new(KEY_FILE);
        let file = ciphertext(&keys, &passphrase);
        prop_assert!(same(&decrypt(path, &file, &passphrase).unwrap(), &keys));
        if let Ok(opened) = decrypt(path, &apply(file, &m), &passphrase) {
            prop_assert!(same(&opened, &keys));
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic_the_key_file_reader(
        bytes in prop::collection::vec(any::<u8>(), 0..512),
    ) {
        let passphrase = SecretString::from("p".to_owned());
        let path = Path::new(KEY_FILE);
        let _ = decrypt(path, &bytes, &passphrase);
        let mut armoured = b"age-encryption.org/v1\n-> scrypt ".to_vec();
        armoured.extend_from_slice(&bytes);
        let _ = decrypt(path, &armoured, &passphrase);
    }
}
