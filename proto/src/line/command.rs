//! Parsing one input line into a [`Command`].

use std::fmt;
use std::str::FromStr;

use super::{ErrorCode, LineError};
use crate::names::{NameError, Nick, RoomName, TEXT_MAX_BYTES, Text};

/// Longest input line, in bytes, newline excluded.
pub const MAX_LINE_BYTES: usize = 16 * 1024;
/// Messages `/history` returns when no count is given.
pub const DEFAULT_HISTORY: u16 = 20;
/// Most messages one `/history` returns.
pub const MAX_HISTORY: u16 = 1000;

/// One input line, parsed and validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `/nick NAME`
    Nick(Nick),
    /// `/join ROOM`
    Join(RoomName),
    /// `/join CODE`: a private room's invite code (`palaver-invite1-…`,
    /// checked by the node).
    JoinInvite(String),
    /// `/create ROOM`: a new private room named ROOM.
    Create(RoomName),
    /// `/invite ROOM`: a fresh invite code to a private room.
    Invite(RoomName),
    /// `/kick ROOM PEER_ID`: remove a member from a private room.
    Kick { room: RoomName, peer: String },
    /// `/promote ROOM PEER_ID`: make a member of a private room an admin.
    Promote { room: RoomName, peer: String },
    /// `/revoke CODE`: an invite code of this node's no longer admits anyone.
    Revoke(String),
    /// `/leave [ROOM]`
    Leave(Option<RoomName>),
    /// `/send ROOM TEXT`, or a bare `TEXT` line (room `None`: the current room).
    Send { room: Option<RoomName>, text: Text },
    /// `/rooms`
    Rooms,
    /// `/who [ROOM]`
    Who(Option<RoomName>),
    /// `/peers`
    Peers,
    /// `/history ROOM [N]`
    History { room: RoomName, limit: u16 },
    /// `/forget ROOM`: drop a room's stored history (a room not joined).
    Forget(RoomName),
    /// `/dial MULTIADDR` (checked by the node, which knows multiaddrs).
    Dial(String),
    /// `/id`
    Id,
    /// `/quit`
    Quit,
}

impl Command {
    /// The command's name as the `ok` reply's `cmd` field reports it.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Nick(_) => "nick",
            Self::Join(_) | Self::JoinInvite(_) => "join",
            Self::Create(_) => "create",
            Self::Invite(_) => "invite",
            Self::Kick { .. } => "kick",
            Self::Promote { .. } => "promote",
            Self::Revoke(_) => "revoke",
            Self::Leave(_) => "leave",
            Self::Send { .. } => "send",
            Self::Rooms => "rooms",
            Self::Who(_) => "who",
            Self::Peers => "peers",
            Self::History { .. } => "history",
            Self::Forget(_) => "forget",
            Self::Dial(_) => "dial",
            Self::Id => "id",
            Self::Quit => "quit",
        }
    }
}

/// Parses raw line bytes (without the newline): checks length, UTF-8 and NUL
/// bytes, then the command itself. A trailing `\r` is dropped.
pub fn parse_line(bytes: &[u8]) -> Result<Command, LineError> {
    let bytes = bytes.strip_suffix(b"\r").unwrap_or(bytes);
    if bytes.len() > MAX_LINE_BYTES {
        return Err(LineError::new(
            ErrorCode::LineTooLong,
            format!(
                "line is {} bytes long; the limit is {MAX_LINE_BYTES}",
                bytes.len()
            ),
        ));
    }
    if bytes.contains(&0) {
        return Err(LineError::new(
            ErrorCode::NulByte,
            "line contains a NUL byte",
        ));
    }
    let line = std::str::from_utf8(bytes).map_err(|e| {
        LineError::new(
            ErrorCode::InvalidUtf8,
            format!("line is not valid UTF-8 ({e})"),
        )
    })?;
    line.parse()
}

impl FromStr for Command {
    type Err = LineError;

    fn from_str(line: &str) -> Result<Self, Self::Err> {
        if line.trim().is_empty() {
            return Err(LineError::new(
                ErrorCode::EmptyLine,
                "empty line: type a message, or a command such as /join ROOM",
            ));
        }
        let Some(rest) = line.strip_prefix('/') else {
            return Ok(Command::Send {
                room: None,
                text: text(line)?,
            });
        };
        if rest.starts_with('/') {
            return Ok(Command::Send {
                room: None,
                text: text(rest)?,
            });
        }
        let (name, args) = match rest.split_once(char::is_whitespace) {
            Some((name, args)) => (name, args.trim()),
            None => (rest, ""),
        };
        let args = Args {
            cmd: name,
            rest: args,
        };
        let command = match name {
            "nick" => Command::Nick(args.all("NAME", nick)?),
            "join" => {
                let word = args.one("ROOM or an invite code", |s| Ok(s.to_owned()))?;
                if word.starts_with(crate::private::INVITE_PREFIX) {
                    Command::JoinInvite(word)
                } else {
                    Command::Join(room(&word)?)
                }
            }
            "create" => Command::Create(args.one("ROOM", private_name)?),
            "invite" => Command::Invite(args.one("ROOM", room)?),
            "kick" => {
                let (room_arg, peer_arg) = args.split("ROOM")?;
                let peer = peer_arg.ok_or_else(|| args.missing("PEER_ID"))?;
                if peer.split_whitespace().nth(1).is_some() {
                    return Err(args.unexpected());
                }
                Command::Kick {
                    room: room(room_arg)?,
                    peer: peer.to_owned(),
                }
            }
            "promote" => {
                let (room_arg, peer_arg) = args.split("ROOM")?;
                let peer = peer_arg.ok_or_else(|| args.missing("PEER_ID"))?;
                if peer.split_whitespace().nth(1).is_some() {
                    return Err(args.unexpected());
                }
                Command::Promote {
                    room: room(room_arg)?,
                    peer: peer.to_owned(),
                }
            }
            "revoke" => Command::Revoke(args.one("CODE", |s| Ok(s.to_owned()))?),
            "leave" => Command::Leave(args.optional(room)?),
            "send" => {
                let (room_arg, text_arg) = args.split("ROOM")?;
                let text_arg = text_arg.ok_or_else(|| args.missing("TEXT"))?;
                Command::Send {
                    room: Some(room(room_arg)?),
                    text: text(text_arg)?,
                }
            }
            "rooms" => args.none(Command::Rooms)?,
            "who" => Command::Who(args.optional(room)?),
            "peers" => args.none(Command::Peers)?,
            "history" => {
                let (room_arg, count_arg) = args.split("ROOM")?;
                let limit = match count_arg {
                    None => DEFAULT_HISTORY,
                    Some(n) => count(n)?,
                };
                Command::History {
                    room: room(room_arg)?,
                    limit,
                }
            }
            "forget" => Command::Forget(args.one("ROOM", room)?),
            "dial" => Command::Dial(args.one("MULTIADDR", |s| Ok(s.to_owned()))?),
            "id" => args.none(Command::Id)?,
            "quit" => args.none(Command::Quit)?,
            other => {
                return Err(LineError::new(
                    ErrorCode::UnknownCommand,
                    format!(
                        "unknown command /{}; commands: /nick /join /create /invite /kick /promote /revoke /leave /send /rooms /who /peers /history /forget /dial /id /quit (start a message with // to send a leading /)",
                        truncate(other, 32)
                    ),
                ));
            }
        };
        Ok(command)
    }
}

/// The arguments of one command, with error messages naming the command.
struct Args<'a> {
    cmd: &'a str,
    rest: &'a str,
}

impl<'a> Args<'a> {
    fn missing(&self, what: &str) -> LineError {
        LineError::new(
            ErrorCode::MissingArgument,
            format!("/{} needs {what}", self.cmd),
        )
    }

    fn unexpected(&self) -> LineError {
        LineError::new(
            ErrorCode::UnexpectedArgument,
            format!("/{} takes no more arguments", self.cmd),
        )
    }

    /// No arguments at all.
    fn none(&self, command: Command) -> Result<Command, LineError> {
        if self.rest.is_empty() {
            Ok(command)
        } else {
            Err(self.unexpected())
        }
    }

    /// The whole rest of the line as one argument.
    fn all<T>(
        &self,
        what: &str,
        parse: impl Fn(&str) -> Result<T, LineError>,
    ) -> Result<T, LineError> {
        if self.rest.is_empty() {
            Err(self.missing(what))
        } else {
            parse(self.rest)
        }
    }

    /// Exactly one word.
    fn one<T>(
        &self,
        what: &str,
        parse: impl Fn(&str) -> Result<T, LineError>,
    ) -> Result<T, LineError> {
        match self.split(what)? {
            (word, None) => parse(word),
            (_, Some(_)) => Err(self.unexpected()),
        }
    }

    /// Zero or one word.
    fn optional<T>(
        &self,
        parse: impl Fn(&str) -> Result<T, LineError>,
    ) -> Result<Option<T>, LineError> {
        if self.rest.is_empty() {
            return Ok(None);
        }
        self.one("", parse).map(Some)
    }

    /// A first word, and the rest of the line if there is any.
    fn split(&self, what: &str) -> Result<(&'a str, Option<&'a str>), LineError> {
        if self.rest.is_empty() {
            return Err(self.missing(what));
        }
        Ok(match self.rest.split_once(char::is_whitespace) {
            Some((first, rest)) => (first, Some(rest.trim_start()).filter(|r| !r.is_empty())),
            None => (self.rest, None),
        })
    }
}

fn room(s: &str) -> Result<RoomName, LineError> {
    s.parse().map_err(|e: NameError| {
        LineError::new(
            ErrorCode::BadRoom,
            format!(
                "room name {:?} {e}; use 1-64 of A-Z a-z 0-9 . _ -",
                truncate(s, 80)
            ),
        )
    })
}

/// A new private room's name: a public room's alphabet, short enough for its tag.
fn private_name(s: &str) -> Result<RoomName, LineError> {
    let name = room(s)?;
    if name.is_private() || name.as_str().len() > crate::names::PRIVATE_NAME_MAX_LEN {
        return Err(LineError::new(
            ErrorCode::BadRoom,
            format!(
                "a private room's name is 1-{} of A-Z a-z 0-9 . _ - (its tag is added)",
                crate::names::PRIVATE_NAME_MAX_LEN
            ),
        ));
    }
    Ok(name)
}

fn nick(s: &str) -> Result<Nick, LineError> {
    s.parse().map_err(|e: NameError| {
        LineError::new(
            ErrorCode::BadNick,
            format!(
                "nick {:?} {e}; use 1-32 characters without control characters",
                truncate(s, 80)
            ),
        )
    })
}

fn text(s: &str) -> Result<Text, LineError> {
    s.parse().map_err(|e: NameError| match e {
        NameError::TooLong { len, .. } => LineError::new(
            ErrorCode::TextTooLong,
            format!("message is {len} bytes long; the limit is {TEXT_MAX_BYTES}"),
        ),
        e => LineError::new(ErrorCode::BadText, format!("message {e}")),
    })
}

fn count(s: &str) -> Result<u16, LineError> {
    if s.split_whitespace().nth(1).is_some() {
        return Err(LineError::new(
            ErrorCode::UnexpectedArgument,
            "/history takes ROOM and N only",
        ));
    }
    let digits = !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    match s.parse::<u16>().ok().filter(|_| digits) {
        Some(n) if (1..=MAX_HISTORY).contains(&n) => Ok(n),
        _ => Err(LineError::new(
            ErrorCode::BadCount,
            format!(
                "count {:?} is not a number from 1 to {MAX_HISTORY}",
                truncate(s, 32)
            ),
        )),
    }
}

/// At most `max` characters of `s`, for quoting user input in error messages.
fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

impl fmt::Display for Command {
    /// The canonical input line for this command; parsing it gives it back.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Nick(n) => write!(f, "/nick {n}"),
            Self::Join(r) => write!(f, "/join {r}"),
            Self::JoinInvite(code) => write!(f, "/join {code}"),
            Self::Create(r) => write!(f, "/create {r}"),
            Self::Invite(r) => write!(f, "/invite {r}"),
            Self::Kick { room, peer } => write!(f, "/kick {room} {peer}"),
            Self::Promote { room, peer } => write!(f, "/promote {room} {peer}"),
            Self::Revoke(code) => write!(f, "/revoke {code}"),
            Self::Leave(None) => write!(f, "/leave"),
            Self::Leave(Some(r)) => write!(f, "/leave {r}"),
            Self::Send {
                room: Some(r),
                text,
            } => write!(f, "/send {r} {text}"),
            Self::Send { room: None, text } if text.as_str().starts_with('/') => {
                write!(f, "/{text}")
            }
            Self::Send { room: None, text } => write!(f, "{text}"),
            Self::Rooms => write!(f, "/rooms"),
            Self::Who(None) => write!(f, "/who"),
            Self::Who(Some(r)) => write!(f, "/who {r}"),
            Self::Peers => write!(f, "/peers"),
            Self::History { room, limit } => write!(f, "/history {room} {limit}"),
            Self::Forget(r) => write!(f, "/forget {r}"),
            Self::Dial(a) => write!(f, "/dial {a}"),
            Self::Id => write!(f, "/id"),
            Self::Quit => write!(f, "/quit"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(line: &str) -> ErrorCode {
        match line.parse::<Command>() {
            Err(e) => e.code,
            Ok(c) => panic!("{line:?} parsed as {c:?}"),
        }
    }

    #[test]
    fn every_documented_command_parses() {
        let r = |s: &str| s.parse::<RoomName>().ok();
        assert_eq!(
            "/join lobby".parse(),
            Ok(Command::Join("lobby".parse().unwrap()))
        );
        assert_eq!("/leave".parse(), Ok(Command::Leave(None)));
        assert_eq!("/leave x".parse(), Ok(Command::Leave(r("x"))));
        assert_eq!("/forget x".parse(), Ok(Command::Forget(r("x").unwrap())));
        assert!("/forget".parse::<Command>().is_err());
        assert_eq!("/who".parse(), Ok(Command::Who(None)));
        assert_eq!("/rooms".parse::<Command>().unwrap(), Command::Rooms);
        assert_eq!("/peers".parse::<Command>().unwrap(), Command::Peers);
        assert_eq!("/id".parse::<Command>().unwrap(), Command::Id);
        assert_eq!("/quit".parse::<Command>().unwrap(), Command::Quit);
        assert_eq!(
            "/nick Alice Smith".parse::<Command>().unwrap(),
            Command::Nick("Alice Smith".parse().unwrap())
        );
        assert_eq!(
            "/history lobby".parse::<Command>().unwrap(),
            Command::History {
                room: "lobby".parse().unwrap(),
                limit: DEFAULT_HISTORY
            }
        );
        assert_eq!(
            "/history lobby 1000".parse::<Command>().unwrap(),
            Command::History {
                room: "lobby".parse().unwrap(),
                limit: 1000
            }
        );
        assert_eq!(
            "/dial /ip4/127.0.0.1/tcp/1".parse::<Command>().unwrap(),
            Command::Dial("/ip4/127.0.0.1/tcp/1".into())
        );
    }

    #[test]
    fn private_room_commands_parse_and_print_back() {
        let invite = "palaver-invite1-AQID";
        let lines = [
            (
                "/join palaver-invite1-AQID",
                Command::JoinInvite(invite.into()),
            ),
            ("/create team", Command::Create("team".parse().unwrap())),
            (
                "/invite team~0a1b2c3d",
                Command::Invite("team~0a1b2c3d".parse().unwrap()),
            ),
            (
                "/kick team~0a1b2c3d 12D3KooW",
                Command::Kick {
                    room: "team~0a1b2c3d".parse().unwrap(),
                    peer: "12D3KooW".into(),
                },
            ),
            (
                "/revoke palaver-invite1-AQID",
                Command::Revoke(invite.into()),
            ),
        ];
        for (line, command) in lines {
            assert_eq!(line.parse::<Command>(), Ok(command.clone()), "{line}");
            assert_eq!(command.to_string(), line);
        }
        assert_eq!(code("/create team~0a1b2c3d"), ErrorCode::BadRoom);
        assert_eq!(
            code(&format!("/create {}", "x".repeat(56))),
            ErrorCode::BadRoom
        );
        assert_eq!(code("/kick team~0a1b2c3d"), ErrorCode::MissingArgument);
        assert_eq!(
            code("/kick team~0a1b2c3d a b"),
            ErrorCode::UnexpectedArgument
        );
        assert_eq!(code("/join team~0a1b2c3"), ErrorCode::BadRoom);
    }

    #[test]
    fn send_keeps_the_text_after_the_room_intact() {
        assert_eq!(
            "/send lobby  hello   world ".parse::<Command>().unwrap(),
            Command::Send {
                room: "lobby".parse().ok(),
                text: "hello   world".parse().unwrap()
            }
        );
    }

    #[test]
    fn plain_text_goes_to_the_current_room_and_a_double_slash_escapes() {
        assert_eq!(
            "hi there".parse::<Command>().unwrap(),
            Command::Send {
                room: None,
                text: "hi there".parse().unwrap()
            }
        );
        assert_eq!(
            "//join is a command".parse::<Command>().unwrap(),
            Command::Send {
                room: None,
                text: "/join is a command".parse().unwrap()
            }
        );
    }

    #[test]
    fn malformed_lines_get_stable_codes() {
        assert_eq!(code(""), ErrorCode::EmptyLine);
        assert_eq!(code("   "), ErrorCode::EmptyLine);
        assert_eq!(code("/frobnicate"), ErrorCode::UnknownCommand);
        assert_eq!(code("/join"), ErrorCode::MissingArgument);
        assert_eq!(code("/join a b"), ErrorCode::UnexpectedArgument);
        assert_eq!(code("/join bad/room"), ErrorCode::BadRoom);
        assert_eq!(code("/nick"), ErrorCode::MissingArgument);
        assert_eq!(
            code(&format!("/nick {}", "n".repeat(33))),
            ErrorCode::BadNick
        );
        assert_eq!(code("/send lobby"), ErrorCode::MissingArgument);
        assert_eq!(code(&"x".repeat(4097)), ErrorCode::TextTooLong);
        assert_eq!(code("a\u{7}b"), ErrorCode::BadText);
        assert_eq!(code("/history lobby 0"), ErrorCode::BadCount);
        assert_eq!(code("/history lobby 1001"), ErrorCode::BadCount);
        assert_eq!(code("/history lobby x"), ErrorCode::BadCount);
        assert_eq!(code("/history lobby +5"), ErrorCode::BadCount);
        assert_eq!(code("/history lobby 5 6"), ErrorCode::UnexpectedArgument);
        assert_eq!(code("/rooms now"), ErrorCode::UnexpectedArgument);
        assert_eq!(code("/"), ErrorCode::UnknownCommand);
    }

    #[test]
    fn raw_lines_are_checked_for_length_encoding_and_nul() {
        let err = |b: &[u8]| parse_line(b).unwrap_err().code;
        assert_eq!(err(&[b'a'; MAX_LINE_BYTES + 1]), ErrorCode::LineTooLong);
        assert_eq!(err(b"caf\xc3"), ErrorCode::InvalidUtf8);
        assert_eq!(err(b"a\0b"), ErrorCode::NulByte);
        assert_eq!(parse_line(b"/rooms\r"), Ok(Command::Rooms));
    }

    #[test]
    fn error_messages_do_not_echo_huge_input() {
        let e = format!("/join {}", "é".repeat(5000))
            .parse::<Command>()
            .unwrap_err();
        assert!(e.message.len() < 400, "{}", e.message);
    }

    #[test]
    fn display_gives_back_a_line_that_parses_to_the_same_command() {
        for line in [
            "/join a",
            "/leave",
            "/send a b c",
            "hello",
            "//slash",
            "/history a 5",
            "/who b",
            "/nick Bo B",
        ] {
            let c: Command = line.parse().unwrap();
            assert_eq!(c.to_string().parse::<Command>().unwrap(), c, "{line}");
        }
    }
}
