//! Private rooms' encodings ([`palaver_proto::private`]): message frames and
//! lockboxes, invite codes, the redeem request and answer, and rotations.

use data_encoding::BASE64URL_NOPAD;
use palaver_proto::private::redeem::{self, MAX_REQUEST_BYTES, MAX_RESPONSE_BYTES};
use palaver_proto::private::rotation::Rotation;
use palaver_proto::private::{
    FRAME_HEADER_BYTES, Frame, INVITE_PREFIX, Invite, MAX_FRAME_BYTES, MAX_INVITE_CHARS,
    MAX_LOCKBOX_BYTES, NONCE_BYTES, Published, TAG_BYTES, lockbox,
};
use proptest::prelude::*;

use super::generate;
use super::mutate::{apply, config, mutated, mutations, noise};

fn check_published(bytes: &[u8]) {
    match Published::parse(bytes) {
        Ok(Published::Message(frame)) => {
            assert!((FRAME_HEADER_BYTES + TAG_BYTES..=MAX_FRAME_BYTES).contains(&bytes.len()));
            assert_eq!(Frame::parse(bytes), Ok(frame));
        }
        Ok(Published::Lockbox(age)) => {
            assert!(bytes.len() <= MAX_LOCKBOX_BYTES);
            assert_eq!(lockbox(age).unwrap(), bytes);
        }
        Err(_) => {}
    }
}

/// An accepted code re-encodes to itself (outer white space aside).
fn check_invite(code: &str) {
    if let Ok(invite) = Invite::decode(code) {
        assert_eq!(
            invite.encode().unwrap(),
            code.trim(),
            "another encoding accepted"
        );
        assert_eq!(Invite::decode(&invite.encode().unwrap()), Ok(invite));
    }
}

fn check_redeem_request(bytes: &[u8]) {
    if let Ok(r) = redeem::Request::decode(bytes) {
        assert_eq!(r.encode().unwrap(), bytes, "another encoding accepted");
    }
}

fn check_redeem_response(bytes: &[u8]) {
    if let Ok(r) = redeem::Response::decode(bytes) {
        assert_eq!(r.encode().unwrap(), bytes, "another encoding accepted");
    }
}

fn invite_bytes(code: &str) -> Vec<u8> {
    BASE64URL_NOPAD
        .decode(code.strip_prefix(INVITE_PREFIX).unwrap().as_bytes())
        .unwrap()
}

proptest! {
    #![proptest_config(config(256, "proptest-regressions/fuzz/private.txt"))]

    #[test]
    fn every_frame_opens_under_its_key_to_what_was_sealed(
        key in generate::epoch_key(),
        nonce in any::<[u8; NONCE_BYTES]>(),
        plaintext in prop::collection::vec(any::<u8>(), 0..600),
    ) {
        let frame = key.seal(nonce, &plaintext).unwrap();
        prop_assert!(frame.len() <= MAX_FRAME_BYTES);
        let parsed = Frame::parse(&frame).unwrap();
        prop_assert_eq!(parsed.epoch, key.id());
        prop_assert_eq!(key.open(&parsed).unwrap(), plaintext);
    }

    /// Only a holder of the key can make a frame: a changed one that still
    /// opens is no change at all.
    #[test]
    fn a_mutated_frame_never_panics_and_opens_only_unchanged(
        key in generate::epoch_key(),
        nonce in any::<[u8; NONCE_BYTES]>(),
        plaintext in prop::collection::vec(any::<u8>(), 0..200),
        m in mutations(),
    ) {
        let frame = key.seal(nonce, &plaintext).unwrap();
        let bytes = apply(frame.clone(), &m);
        check_published(&bytes);
        if let Ok(parsed) = Frame::parse(&bytes)
            && let Ok(opened) = key.open(&parsed)
        {
            prop_assert_eq!(&bytes, &frame);
            prop_assert_eq!(opened, plaintext);
        }
    }

    #[test]
    fn every_lockbox_parses_back_to_its_age_part_and_mutations_never_panic(
        age in prop::collection::vec(any::<u8>(), 1..600),
        m in mutations(),
    ) {
        let published = lockbox(&age).unwrap();
        prop_assert_eq!(Published::parse(&published), Ok(Published::Lockbox(&age[..])));
        check_published(&apply(published, &m));
    }

    #[test]
    fn arbitrary_bytes_never_panic_the_frame_parser(mut bytes in noise(1024), kind in 0u8..3) {
        check_published(&bytes);
        if bytes.len() >= 2 {
            bytes[0] = 1;
            bytes[1] = kind;
            check_published(&bytes);
        }
    }

    #[test]
    fn every_invite_code_decodes_to_its_invite(invite in generate::invite()) {
        let code = invite.encode().unwrap();
        prop_assert!(code.len() <= MAX_INVITE_CHARS);
        prop_assert_eq!(Invite::decode(&code), Ok(invite.clone()));
        prop_assert_eq!(Invite::decode(&format!("  {code}\n")), Ok(invite));
    }

    /// Mutations of what the base64 carries: they get past the base64.
    #[test]
    fn a_mutated_invite_never_panics_and_decodes_only_as_its_own_code(
        invite in generate::invite(),
        m in mutations(),
    ) {
        let bytes = apply(invite_bytes(&invite.encode().unwrap()), &m);
        check_invite(&format!("{INVITE_PREFIX}{}", BASE64URL_NOPAD.encode(&bytes)));
    }

    /// Mutations of the code as pasted: cut, bent, with stray characters.
    #[test]
    fn a_mangled_invite_code_never_panics_the_decoder(
        code in mutated(generate::invite().prop_map(|i| i.encode().unwrap().into_bytes())),
    ) {
        check_invite(&String::from_utf8_lossy(&code));
    }

    #[test]
    fn arbitrary_invite_codes_never_panic_the_decoder(
        bytes in noise(3000),
        text in "\\PC{0,100}",
    ) {
        check_invite(&format!("{INVITE_PREFIX}{}", BASE64URL_NOPAD.encode(&bytes)));
        check_invite(&format!("{INVITE_PREFIX}{text}"));
        check_invite(&text);
    }

    #[test]
    fn every_redeem_message_decodes_to_itself(
        request in generate::redeem_request(),
        response in generate::redeem_response(),
    ) {
        let bytes = request.encode().unwrap();
        prop_assert!(bytes.len() <= MAX_REQUEST_BYTES);
        prop_assert_eq!(redeem::Request::decode(&bytes), Ok(request));
        let bytes = response.encode().unwrap();
        prop_assert!(bytes.len() <= MAX_RESPONSE_BYTES);
        prop_assert_eq!(redeem::Response::decode(&bytes), Ok(response));
    }

    #[test]
    fn a_mutated_redeem_message_never_panics_and_decodes_only_as_its_own_encoding(
        request in mutated(generate::redeem_request().prop_map(|r| r.encode().unwrap())),
        response in mutated(generate::redeem_response().prop_map(|r| r.encode().unwrap())),
    ) {
        check_redeem_request(&request);
        check_redeem_response(&response);
        check_redeem_request(&response);
        check_redeem_response(&request);
    }

    #[test]
    fn arbitrary_bytes_never_panic_the_redeem_decoders(bytes in noise(MAX_REQUEST_BYTES + 8)) {
        check_redeem_request(&bytes);
        check_redeem_response(&bytes);
    }
}

proptest! {
    #![proptest_config(config(128, "proptest-regressions/fuzz/private.txt"))]

    #[test]
    fn every_signed_rotation_opens_to_its_author_and_statement(
        key in generate::keypair(),
        statement in generate::statement(),
    ) {
        let signed = Rotation::sign(&key, statement.clone()).unwrap();
        let opened = Rotation::open(signed.bytes()).unwrap();
        prop_assert_eq!(opened.author(), key.public().to_peer_id());
        let mut sorted = statement;
        sorted.members.sort_by_key(|m| m.peer.to_bytes());
        sorted.removed.sort_by_key(|p| p.to_bytes());
        prop_assert_eq!(opened.statement(), &sorted);
        prop_assert_eq!(opened, signed);
    }

    /// Only the author can make a rotation: a changed one that still opens
    /// is no change at all.
    #[test]
    fn a_mutated_rotation_never_panics_and_opens_only_unchanged(
        key in generate::keypair(),
        statement in generate::statement(),
        m in mutations(),
    ) {
        let signed = Rotation::sign(&key, statement).unwrap();
        let bytes = apply(signed.bytes().to_vec(), &m);
        if let Ok(opened) = Rotation::open(&bytes) {
            prop_assert_eq!(opened, signed);
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic_the_rotation_opener(mut bytes in noise(MAX_RESPONSE_BYTES)) {
        let _ = Rotation::open(&bytes);
        if let Some(b) = bytes.first_mut() {
            *b = 1;
        }
        let _ = Rotation::open(&bytes);
        let _ = redeem::Response::decode(&bytes);
    }
}
