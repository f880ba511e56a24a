//! Gossip payloads ([`palaver_proto::wire::Payload`]).

use palaver_proto::wire::{MAX_PAYLOAD_BYTES, Payload};
use proptest::prelude::*;

use super::generate;
use super::mutate::{config, mutated, noise};

/// What every decoded payload must satisfy: it is the one encoding of
/// itself, so it decodes to the same value again.
fn check(bytes: &[u8]) {
    if let Ok(p) = Payload::decode(bytes) {
        assert_eq!(p.encode(), bytes, "a payload accepted in another encoding");
        assert_eq!(Payload::decode(&p.encode()), Ok(p));
    }
}

proptest! {
    #![proptest_config(config(512, "proptest-regressions/fuzz/wire.txt"))]

    #[test]
    fn every_payload_decodes_to_itself_and_fits_the_limit(p in generate::payload()) {
        let bytes = p.encode();
        prop_assert!(bytes.len() <= MAX_PAYLOAD_BYTES);
        prop_assert_eq!(Payload::decode(&bytes), Ok(p));
    }

    #[test]
    fn a_mutated_payload_never_panics_and_decodes_only_as_its_own_encoding(
        bytes in mutated(generate::payload().prop_map(|p| p.encode())),
    ) {
        check(&bytes);
    }

    #[test]
    fn arbitrary_bytes_never_panic_the_payload_decoder(bytes in noise(MAX_PAYLOAD_BYTES + 8)) {
        check(&bytes);
    }
}
