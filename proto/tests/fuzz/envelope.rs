//! Signed envelopes ([`palaver_proto::envelope::Envelope`]).

use palaver_proto::envelope::{Envelope, MAX_ENVELOPE_BYTES};
use proptest::prelude::*;

use super::generate;
use super::mutate::{apply, config, mutations, noise};

proptest! {
    #![proptest_config(config(256, "proptest-regressions/fuzz/envelope.txt"))]

    #[test]
    fn every_sealed_envelope_opens_to_its_author_and_payload(
        key in generate::keypair(),
        payload in generate::payload(),
    ) {
        let sealed = Envelope::seal(&key, payload.clone()).unwrap();
        prop_assert!(sealed.as_bytes().len() <= MAX_ENVELOPE_BYTES);
        let opened = Envelope::open(sealed.as_bytes()).unwrap();
        prop_assert_eq!(opened.author(), key.public().to_peer_id());
        prop_assert_eq!(opened.payload(), &payload);
        prop_assert_eq!(opened.id(), sealed.id());
        prop_assert_eq!(opened, sealed);
    }

    /// Only the author can make an envelope: a changed one that still
    /// opens is no change at all.
    #[test]
    fn a_mutated_envelope_never_panics_and_opens_only_unchanged(
        key in generate::keypair(),
        payload in generate::payload(),
        m in mutations(),
    ) {
        let sealed = Envelope::seal(&key, payload).unwrap();
        let bytes = apply(sealed.as_bytes().to_vec(), &m);
        if let Ok(opened) = Envelope::open(&bytes) {
            prop_assert_eq!(opened.as_bytes(), sealed.as_bytes());
            prop_assert_eq!(opened, sealed);
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic_the_envelope_opener(bytes in noise(MAX_ENVELOPE_BYTES + 8)) {
        if let Ok(opened) = Envelope::open(&bytes) {
            prop_assert_eq!(opened.as_bytes(), &bytes[..]);
        }
    }
}
