//! The validated names every layer shares ([`palaver_proto::names`]).

use palaver_proto::names::{
    NICK_MAX_CHARS, Nick, PRIVATE_NAME_MAX_LEN, ROOM_MAX_LEN, RoomName, TEXT_MAX_BYTES, Text,
};
use proptest::prelude::*;

use super::mutate::config;

/// Strings that come close to names: their alphabets and what is next to it.
fn candidate() -> impl Strategy<Value = String> {
    prop_oneof![
        "[A-Za-z0-9._-]{0,70}",
        "[A-Za-z0-9._~-]{0,70}",
        "[A-Za-z0-9._-]{0,60}~[0-9a-fA-F~]{0,10}",
        "\\PC{0,40}",
        ".{0,40}",
        "[\\t \u{00A0}\u{200B}-\u{200F}\u{202A}-\u{202E}\u{2066}-\u{2069}a-z]{0,10}",
    ]
}

fn check_room(s: &str) {
    if let Ok(room) = s.parse::<RoomName>() {
        assert_eq!(room.as_str(), s);
        assert_eq!(room.to_string(), s);
        assert!(s.len() <= ROOM_MAX_LEN, "{s:?}");
        assert_eq!(room.is_private(), s.contains('~'));
        let json = serde_json::to_string(&room).unwrap();
        assert_eq!(serde_json::from_str::<RoomName>(&json).unwrap(), room);
        if room.is_private() {
            assert!(room.base().len() <= PRIVATE_NAME_MAX_LEN);
            assert!(room.base().parse::<RoomName>().is_ok());
        } else {
            assert_eq!(room.base(), s);
        }
    } else {
        let json = serde_json::to_string(s).unwrap();
        assert!(serde_json::from_str::<RoomName>(&json).is_err());
    }
}

fn check_nick(s: &str) {
    if let Ok(nick) = s.parse::<Nick>() {
        assert_eq!(nick.as_str(), s);
        assert!((1..=NICK_MAX_CHARS).contains(&s.chars().count()));
        assert!(!s.chars().any(char::is_control));
        assert_eq!(s.trim(), s);
        let json = serde_json::to_string(&nick).unwrap();
        assert_eq!(serde_json::from_str::<Nick>(&json).unwrap(), nick);
    }
}

fn check_text(s: &str) {
    if let Ok(text) = s.parse::<Text>() {
        assert_eq!(text.as_str(), s);
        assert!((1..=TEXT_MAX_BYTES).contains(&s.len()));
        assert!(!s.chars().any(|c| c.is_control() && c != '\t'));
        let json = serde_json::to_string(&text).unwrap();
        assert_eq!(serde_json::from_str::<Text>(&json).unwrap(), text);
    }
}

proptest! {
    #![proptest_config(config(2048, "proptest-regressions/fuzz/names.txt"))]

    #[test]
    fn names_accept_only_what_they_document_and_survive_json(s in candidate()) {
        check_room(&s);
        check_nick(&s);
        check_text(&s);
    }

    #[test]
    fn a_private_rooms_handle_is_a_room_name_with_the_same_base(
        name in "[A-Za-z0-9._-]{1,55}",
        id in prop::collection::vec(any::<u8>(), 4..20),
    ) {
        let name: RoomName = name.parse().unwrap();
        let handle = RoomName::private(&name, &id).unwrap();
        prop_assert!(handle.is_private());
        prop_assert_eq!(handle.base(), name.as_str());
        prop_assert_eq!(handle.as_str().parse::<RoomName>(), Ok(handle.clone()));
        prop_assert_eq!(RoomName::private(&handle, &id), Ok(handle));
    }
}
