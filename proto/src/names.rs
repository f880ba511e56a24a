//! Validated newtypes for the strings users choose: room names, nicks and
//! message texts. Everything that crosses a boundary (a command line, a gossip
//! payload) is parsed into these, so the rest of the code never re-checks.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Longest room name, in bytes (room names are ASCII).
pub const ROOM_MAX_LEN: usize = 64;
/// Longest nick, in characters.
pub const NICK_MAX_CHARS: usize = 32;
/// Longest message text, in bytes of UTF-8.
pub const TEXT_MAX_BYTES: usize = 4096;

/// Why a name or a text was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("must not be empty")]
    Empty,
    #[error("is {len} long, the limit is {max}")]
    TooLong { len: usize, max: usize },
    #[error("contains {0:?}, which is not allowed here")]
    BadChar(char),
    #[error("must not start or end with white space")]
    OuterSpace,
    #[error("has a private room's tag that is not 8 lowercase hex digits")]
    BadTag,
}

/// Longest name of a private room (its handle adds `~` and a tag).
pub const PRIVATE_NAME_MAX_LEN: usize = ROOM_MAX_LEN - 1 - PRIVATE_TAG_CHARS;
/// Hex digits of the tag that tells private rooms of one name apart.
pub const PRIVATE_TAG_CHARS: usize = 8;

/// A room: 1-64 of `A-Z a-z 0-9 . _ -` (a public room), or a private
/// room's handle `NAME~TAG`: its name (at most [`PRIVATE_NAME_MAX_LEN`]) and
/// eight lowercase hex digits of its room id. No public room's name holds a
/// `~`, so a handle never names a public room.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RoomName(String);

impl RoomName {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The handle of the private room `name` whose room id begins with
    /// `room_id`'s first four bytes.
    pub fn private(name: &RoomName, room_id: &[u8]) -> Result<Self, NameError> {
        let tag: String = room_id
            .iter()
            .take(PRIVATE_TAG_CHARS / 2)
            .map(|b| format!("{b:02x}"))
            .collect();
        format!("{}~{tag}", name.base()).parse()
    }

    /// Whether this is a private room's handle.
    pub fn is_private(&self) -> bool {
        self.0.contains('~')
    }

    /// The name without a private room's tag.
    pub fn base(&self) -> &str {
        self.0.split_once('~').map_or(&self.0, |(name, _)| name)
    }
}

impl FromStr for RoomName {
    type Err = NameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some((name, tag)) = s.split_once('~') {
            let name: RoomName = name.parse()?;
            if name.0.len() > PRIVATE_NAME_MAX_LEN {
                return Err(NameError::TooLong {
                    len: name.0.len(),
                    max: PRIVATE_NAME_MAX_LEN,
                });
            }
            if let Some(c) = tag.chars().find(|c| !matches!(c, '0'..='9' | 'a'..='f')) {
                return Err(NameError::BadChar(c));
            }
            if tag.len() != PRIVATE_TAG_CHARS {
                return Err(NameError::BadTag);
            }
            return Ok(Self(s.to_owned()));
        }
        if s.is_empty() {
            return Err(NameError::Empty);
        }
        if let Some(c) = s
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
        {
            return Err(NameError::BadChar(c));
        }
        if s.len() > ROOM_MAX_LEN {
            return Err(NameError::TooLong {
                len: s.len(),
                max: ROOM_MAX_LEN,
            });
        }
        Ok(Self(s.to_owned()))
    }
}

/// A display name: 1-32 characters, no control, invisible, bidirectional
/// control or line-separator characters, none of the characters the readable
/// mode sets around a nick ([`is_nick_delimiter`]), no outer white space.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Nick(String);

impl Nick {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for Nick {
    type Err = NameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() {
            return Err(NameError::Empty);
        }
        if let Some(c) = s.chars().find(|&c| {
            c.is_control()
                || is_invisible(c)
                || is_bidi_control(c)
                || is_line_separator(c)
                || is_nick_delimiter(c)
        }) {
            return Err(NameError::BadChar(c));
        }
        if s.trim() != s {
            return Err(NameError::OuterSpace);
        }
        let len = s.chars().count();
        if len > NICK_MAX_CHARS {
            return Err(NameError::TooLong {
                len,
                max: NICK_MAX_CHARS,
            });
        }
        Ok(Self(s.to_owned()))
    }
}

impl Nick {
    /// A nick as a payload carries it. Nicks written before the delimiters
    /// and line separators were refused (protocol 2.0 nodes) are still read:
    /// each such character becomes U+FFFD, so the nick cannot pose as another
    /// with its fingerprint, and the message it names is not lost. Every other
    /// rule of [`Nick::from_str`] still holds.
    pub fn from_wire(s: &str) -> Result<Self, NameError> {
        s.replace(
            |c: char| is_nick_delimiter(c) || is_line_separator(c),
            "\u{FFFD}",
        )
        .parse()
    }
}

/// Characters the readable mode puts around a nick (`<alice#fingerprint>`)
/// and their look-alikes: a nick holding one could end early on screen and
/// show another's nick and fingerprint.
pub fn is_nick_delimiter(c: char) -> bool {
    matches!(
        c,
        '#' | '<'
            | '>'
            | '\u{FF03}' // fullwidth number sign
            | '\u{FE5F}' // small number sign
            | '\u{FF1C}' // fullwidth less-than
            | '\u{FF1E}' // fullwidth greater-than
            | '\u{FE64}' // small less-than
            | '\u{FE65}' // small greater-than
            | '\u{2039}' // single angle quotation marks
            | '\u{203A}'
            | '\u{2329}' // angle brackets
            | '\u{232A}'
            | '\u{3008}'
            | '\u{3009}'
            | '\u{27E8}'
            | '\u{27E9}'
            | '\u{276C}'
            ..='\u{276F}' // ornamental angle brackets
            | '\u{02C2}' // modifier letter arrowheads
            | '\u{02C3}'
    )
}

/// Line and paragraph separators: a terminal may start a new line at one,
/// so a message could fake a line of its own (U+0085 is a control character,
/// refused already).
pub fn is_line_separator(c: char) -> bool {
    matches!(c, '\u{2028}' | '\u{2029}')
}

/// Characters that change the direction of the text around them: in a nick or
/// a message they could make one person's words look like another's.
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// Characters that show as nothing: in a nick they make look-alikes.
fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}' | '\u{180E}' | '\u{200B}'..='\u{200D}' | '\u{2060}'..='\u{2064}' | '\u{206A}'..='\u{206F}' | '\u{FEFF}'
    )
}

/// A chat message text: 1-4096 bytes of UTF-8, no control characters but
/// tab, no bidirectional overrides.
///
/// Control characters are refused rather than escaped so that no peer can send
/// terminal escape sequences to another user's screen.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Text(String);

impl Text {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for Text {
    type Err = NameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() {
            return Err(NameError::Empty);
        }
        if s.len() > TEXT_MAX_BYTES {
            return Err(NameError::TooLong {
                len: s.len(),
                max: TEXT_MAX_BYTES,
            });
        }
        if let Some(c) = s
            .chars()
            .find(|&c| (c.is_control() && c != '\t') || is_bidi_control(c) || is_line_separator(c))
        {
            return Err(NameError::BadChar(c));
        }
        Ok(Self(s.to_owned()))
    }
}

impl Text {
    /// A text as a payload carries it: a line separator written by a
    /// protocol 2.0 node, which allowed them, becomes U+FFFD (of the same
    /// length in UTF-8). Every other rule of [`Text::from_str`] still holds.
    pub fn from_wire(s: &str) -> Result<Self, NameError> {
        s.replace(is_line_separator, "\u{FFFD}").parse()
    }
}

macro_rules! string_newtype_impls {
    ($($ty:ident),*) => {$(
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl TryFrom<String> for $ty {
            type Error = NameError;
            fn try_from(s: String) -> Result<Self, Self::Error> {
                s.parse()
            }
        }
        impl From<$ty> for String {
            fn from(v: $ty) -> String {
                v.0
            }
        }
        impl AsRef<str> for $ty {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    )*};
}
string_newtype_impls!(RoomName, Nick, Text);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_names_accept_the_documented_alphabet() {
        for ok in ["lobby", "a", "A.b_c-9", &"x".repeat(64)] {
            assert!(ok.parse::<RoomName>().is_ok(), "{ok}");
        }
    }

    #[test]
    fn room_names_refuse_empty_long_and_foreign_characters() {
        assert_eq!("".parse::<RoomName>(), Err(NameError::Empty));
        assert!(matches!(
            "x".repeat(65).parse::<RoomName>(),
            Err(NameError::TooLong { .. })
        ));
        for bad in ["a b", "a/b", "é", "lobby\n", "#x"] {
            assert!(
                matches!(bad.parse::<RoomName>(), Err(NameError::BadChar(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_private_rooms_handle_is_its_name_and_a_tag_of_its_id() {
        let name: RoomName = "team".parse().unwrap();
        let handle = RoomName::private(&name, &[0xab, 0xcd, 0x01, 0x02, 0xff]).unwrap();
        assert_eq!(handle.as_str(), "team~abcd0102");
        assert!(handle.is_private() && !name.is_private());
        assert_eq!(handle.base(), "team");
        assert_eq!("team~abcd0102".parse::<RoomName>(), Ok(handle));
        for bad in [
            "team~",
            "team~abc",
            "team~ABCD0102",
            "team~abcd01023",
            "~abcd0102",
            "a~b~abcd0102",
        ] {
            assert!(bad.parse::<RoomName>().is_err(), "{bad}");
        }
        assert!(
            format!("{}~abcd0102", "x".repeat(56))
                .parse::<RoomName>()
                .is_err()
        );
        assert!(
            format!("{}~abcd0102", "x".repeat(55))
                .parse::<RoomName>()
                .is_ok()
        );
    }

    #[test]
    fn nicks_count_characters_not_bytes() {
        assert!("é".repeat(32).parse::<Nick>().is_ok());
        assert!("é".repeat(33).parse::<Nick>().is_err());
        assert!("alice smith".parse::<Nick>().is_ok());
    }

    #[test]
    fn nicks_refuse_control_characters_and_outer_space() {
        assert_eq!(
            "a\u{1b}[2J".parse::<Nick>(),
            Err(NameError::BadChar('\u{1b}'))
        );
        assert_eq!(" alice".parse::<Nick>(), Err(NameError::OuterSpace));
    }

    #[test]
    fn nicks_and_texts_refuse_characters_that_disguise_who_speaks() {
        assert!("ali\u{200B}ce".parse::<Nick>().is_err());
        assert!("\u{202E}ecila".parse::<Nick>().is_err());
        assert!("see \u{202E}this".parse::<Text>().is_err());
        // Joiners inside emoji are fine in a message.
        assert!("👩\u{200D}💻 ok".parse::<Text>().is_ok());
    }

    #[test]
    fn nicks_refuse_the_characters_set_around_a_nick_and_their_look_alikes() {
        for nick in [
            "alice#Ab3dEf",
            "<alice",
            "bob>",
            "al\u{FF03}ce",
            "\u{FF1C}bob\u{FF1E}",
            "a\u{2039}b",
        ] {
            assert!(nick.parse::<Nick>().is_err(), "{nick} was taken");
        }
        // Other punctuation is fine.
        assert!("bob (work) [x] @home: ok".parse::<Nick>().is_ok());
    }

    #[test]
    fn nicks_and_texts_refuse_line_separators() {
        assert_eq!(
            "a\u{2028}b".parse::<Nick>(),
            Err(NameError::BadChar('\u{2028}'))
        );
        assert_eq!(
            "a\u{2029}b".parse::<Text>(),
            Err(NameError::BadChar('\u{2029}'))
        );
        assert_eq!(
            "a\u{0085}b".parse::<Text>(),
            Err(NameError::BadChar('\u{0085}'))
        );
    }

    #[test]
    fn a_nick_or_text_an_older_node_wrote_is_read_with_the_refused_characters_replaced() {
        assert_eq!(
            Nick::from_wire("alice#Ab3dEf").unwrap().as_str(),
            "alice\u{FFFD}Ab3dEf"
        );
        assert_eq!(
            Nick::from_wire("<bob>").unwrap().as_str(),
            "\u{FFFD}bob\u{FFFD}"
        );
        assert_eq!(
            Text::from_wire("one\u{2028}two").unwrap().as_str(),
            "one\u{FFFD}two"
        );
        // Every other rule holds on the wire.
        assert!(Nick::from_wire("a\u{1b}[2J").is_err());
        assert!(Nick::from_wire(&"#".repeat(33)).is_err());
        assert!(Text::from_wire("a\rb").is_err());
        assert_eq!(
            Text::from_wire(&"\u{2028}".repeat(1365))
                .unwrap()
                .as_str()
                .len(),
            4095
        );
    }

    #[test]
    fn texts_allow_tabs_but_not_other_control_characters() {
        assert!("a\tb".parse::<Text>().is_ok());
        assert!("a\rb".parse::<Text>().is_err());
        assert!("y".repeat(4096).parse::<Text>().is_ok());
        assert!("y".repeat(4097).parse::<Text>().is_err());
    }

    #[test]
    fn names_refuse_invalid_values_when_deserialized() {
        assert!(serde_json::from_str::<RoomName>("\"bad room\"").is_err());
        assert!(serde_json::from_str::<RoomName>("\"good\"").is_ok());
    }
}
