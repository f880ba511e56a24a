use libp2p_identity::Keypair;

use super::*;

fn key(byte: u8) -> EpochKey {
    EpochKey::from_bytes([byte; EPOCH_KEY_BYTES])
}

fn invite() -> Invite {
    Invite {
        room_id: [7; ROOM_ID_BYTES],
        token: [9; TOKEN_BYTES],
        expires_ms: 1_800_000_000_000,
        name: "team".parse().unwrap(),
        peers: vec![InvitePeer {
            peer: Keypair::generate_ed25519().public().to_peer_id(),
            addrs: vec![b"\x04\x7f\x00\x00\x01\x06\x1f\x90".to_vec()],
        }],
    }
}

#[test]
fn a_sealed_frame_opens_under_its_key_and_gives_back_the_envelope() {
    let k = key(1);
    let frame = k.seal([3; NONCE_BYTES], b"signed envelope").unwrap();
    let parsed = Frame::parse(&frame).unwrap();
    assert_eq!(parsed.epoch, k.id());
    assert_eq!(k.open(&parsed).unwrap(), b"signed envelope");
}

#[test]
fn a_frame_does_not_open_under_another_key_or_once_a_byte_changed() {
    let k = key(1);
    let frame = k.seal([3; NONCE_BYTES], b"signed envelope").unwrap();
    assert_eq!(
        key(2).open(&Frame::parse(&frame).unwrap()),
        Err(FrameError::WrongEpoch)
    );
    for i in 1..frame.len() {
        let mut bent = frame.clone();
        bent[i] ^= 1;
        let opened = Frame::parse(&bent).and_then(|f| k.open(&f));
        assert!(opened.is_err(), "byte {i} changed and it still opened");
    }
}

#[test]
fn truncated_oversized_and_future_frames_are_refused_before_decrypting() {
    let k = key(1);
    let frame = k.seal([3; NONCE_BYTES], b"x").unwrap();
    assert_eq!(Frame::parse(&[]), Err(FrameError::Truncated));
    assert_eq!(
        Frame::parse(&frame[..FRAME_HEADER_BYTES + 3]),
        Err(FrameError::Truncated)
    );
    let mut future = frame.clone();
    future[0] = 2;
    assert_eq!(Frame::parse(&future), Err(FrameError::UnknownVersion(2)));
    let mut huge = vec![FRAME_VERSION];
    huge.resize(MAX_FRAME_BYTES + 1, 0);
    assert_eq!(
        Frame::parse(&huge),
        Err(FrameError::TooLong(MAX_FRAME_BYTES + 1))
    );
    assert!(matches!(
        k.seal([0; NONCE_BYTES], &vec![0; MAX_ENVELOPE_BYTES + 1]),
        Err(FrameError::TooLong(_))
    ));
}

#[test]
fn topics_and_namespaces_change_with_the_key_and_hide_it() {
    let (a, b) = (key(1), key(2));
    assert_ne!(a.topic(), b.topic());
    assert_ne!(a.rendezvous_namespace(), b.rendezvous_namespace());
    assert!(is_private_topic(&a.topic()));
    assert_eq!(a.topic().len(), PRIVATE_TOPIC_PREFIX.len() + 32);
    assert!(!is_private_topic("palaver/2/room/team"));
    assert!(!is_private_topic("palaver/2/private/ABCDEF"));
    // Nothing derived is the key, or the id: each label gives its own value.
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    let derived = [hex(&a.id()), a.topic(), a.rendezvous_namespace()];
    for d in &derived {
        assert!(!d.contains(&hex(&a.as_bytes()[..16])));
    }
    assert!(!a.topic().contains(&hex(&a.id())));
}

#[test]
fn derivations_match_independently_computed_hkdf_vectors() {
    // HKDF-SHA256(ikm = 32 × 0x01, no salt, info = label), computed from
    // RFC 5869 with Python's hmac module; PROTOCOL.md lists the same values.
    let k = key(1);
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    assert_eq!(hex(&k.id()), "79ef48fde3a65f26372b7c2341f69ff6");
    assert_eq!(
        k.topic(),
        "palaver/2/private/f60defd3806f81959cdda39f46775322"
    );
    assert_eq!(
        k.rendezvous_namespace(),
        "palaver/p/69d9581fa3d7c04bec384013a1e37f1a"
    );
}

#[test]
fn an_invite_comes_back_from_its_code() {
    let i = invite();
    let code = i.encode().unwrap();
    assert!(code.starts_with(INVITE_PREFIX));
    assert_eq!(Invite::decode(&code).unwrap(), i);
    assert_eq!(Invite::decode(&format!("  {code}\n")).unwrap(), i);
}

#[test]
fn malformed_invite_codes_are_refused_with_their_own_errors() {
    let code = invite().encode().unwrap();
    assert_eq!(Invite::decode("hello"), Err(InviteError::NoPrefix));
    assert_eq!(
        Invite::decode(&format!("{INVITE_PREFIX}!!!")),
        Err(InviteError::NotBase64)
    );
    assert_eq!(
        Invite::decode(&code[..code.len() - 8]),
        Err(InviteError::Truncated)
    );
    let long = format!("{INVITE_PREFIX}{}", "A".repeat(MAX_INVITE_CHARS));
    assert!(matches!(
        Invite::decode(&long),
        Err(InviteError::TooLong(_))
    ));
    let body = BASE64URL_NOPAD
        .decode(&code.as_bytes()[INVITE_PREFIX.len()..])
        .unwrap();
    let mut future = body.clone();
    future[0] = 9;
    let reencode = |b: &[u8]| format!("{INVITE_PREFIX}{}", BASE64URL_NOPAD.encode(b));
    assert_eq!(
        Invite::decode(&reencode(&future)),
        Err(InviteError::UnknownVersion(9))
    );
    let mut trailing = body.clone();
    trailing.push(0);
    assert_eq!(
        Invite::decode(&reencode(&trailing)),
        Err(InviteError::TrailingBytes(1))
    );
    // Every cut of the body is refused, none panics.
    for n in 0..body.len() {
        assert!(Invite::decode(&reencode(&body[..n])).is_err());
    }
}

#[test]
fn an_invite_names_one_to_eight_members() {
    let mut i = invite();
    i.peers.clear();
    assert_eq!(i.encode(), Err(InviteError::PeerCount(0)));
    let p = invite().peers[0].clone();
    i.peers = vec![p; MAX_INVITE_PEERS + 1];
    assert_eq!(
        i.encode(),
        Err(InviteError::PeerCount(MAX_INVITE_PEERS + 1))
    );
}

#[test]
fn a_lockbox_and_a_message_frame_are_told_apart_by_their_kind() {
    let k = key(1);
    let frame = k.seal([3; NONCE_BYTES], b"envelope").unwrap();
    assert!(matches!(
        Published::parse(&frame),
        Ok(Published::Message(_))
    ));
    let lb = lockbox(b"age ciphertext").unwrap();
    assert_eq!(
        Published::parse(&lb),
        Ok(Published::Lockbox(&b"age ciphertext"[..]))
    );
    assert_eq!(Frame::parse(&lb), Err(FrameError::NotAMessage));
    assert_eq!(
        Published::parse(&[FRAME_VERSION, 7, 0]),
        Err(FrameError::UnknownKind(7))
    );
    assert_eq!(
        Published::parse(&[FRAME_VERSION, KIND_LOCKBOX]),
        Err(FrameError::Truncated)
    );
    assert!(matches!(
        lockbox(&vec![0; MAX_LOCKBOX_BYTES]),
        Err(FrameError::TooLong(_))
    ));
}
