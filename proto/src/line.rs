//! The stdin/stdout line protocol: one command per input line, exactly one
//! [`Reply`] per command (in command order), and asynchronous [`Event`]s in
//! between. With `--json` every output line is one JSON object whose `event`
//! field names it; without, [`human`] renders the same outputs for a person.

mod command;
pub mod human;
mod output;

pub use command::{Command, DEFAULT_HISTORY, MAX_HISTORY, MAX_LINE_BYTES, parse_line};
pub use output::{ChatMessage, Event, LeaveReason, Member, PeerInfo, RelayInfo, Reply};

use serde::{Deserialize, Serialize};

/// The stable, machine-readable reason of an `error` reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The line is longer than [`MAX_LINE_BYTES`].
    LineTooLong,
    /// The line is not valid UTF-8.
    InvalidUtf8,
    /// The line contains a NUL byte.
    NulByte,
    /// The line is empty.
    EmptyLine,
    /// `/something` that is not a command.
    UnknownCommand,
    /// A command is missing an argument it needs.
    MissingArgument,
    /// A command got an argument it does not take.
    UnexpectedArgument,
    /// A room name outside the documented alphabet or length.
    BadRoom,
    /// A nick that is empty, too long or has control characters.
    BadNick,
    /// A message text with control characters.
    BadText,
    /// A message text longer than 4 KiB.
    TextTooLong,
    /// A count that is not a number in range.
    BadCount,
    /// An address that is not a multiaddr the node can dial.
    BadMultiaddr,
    /// Text without a room while no room is current.
    NoCurrentRoom,
    /// A room the node has not joined.
    NotJoined,
    /// The node is in as many rooms as it allows.
    TooManyRooms,
    /// A dial did not produce a connection.
    DialFailed,
    /// The node is shutting down or hit an internal fault.
    Internal,
    /// The history store failed (a full disk, say); nothing was sent.
    Storage,
    /// The node has too much work queued; try again shortly.
    Busy,
    /// `/forget` of a room the node is in (leave it first).
    StillJoined,
    /// Not an invite code (cut, altered, or not one at all).
    BadInvite,
    /// The inviter knows no such invite (or no such room).
    InviteUnknown,
    /// The invite code was used already (each admits one person).
    InviteUsed,
    /// The invite code expired.
    InviteExpired,
    /// The inviter revoked the invite code.
    InviteRevoked,
    /// The private room has as many members as it allows.
    RoomFull,
    /// No member the invite names could be reached, or none answered.
    InviteUnreachable,
    /// A private room's command (`/invite`, `/kick`) on a public room.
    NotPrivate,
    /// `/kick` by a member who is not an admin of the room.
    NotAdmin,
    /// `/kick` of a peer who is not a member of the room.
    NotAMember,
    /// `/join` of a private room's handle: private rooms are joined by invite.
    NeedsInvite,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::LineTooLong => "line_too_long",
            Self::InvalidUtf8 => "invalid_utf8",
            Self::NulByte => "nul_byte",
            Self::EmptyLine => "empty_line",
            Self::UnknownCommand => "unknown_command",
            Self::MissingArgument => "missing_argument",
            Self::UnexpectedArgument => "unexpected_argument",
            Self::BadRoom => "bad_room",
            Self::BadNick => "bad_nick",
            Self::BadText => "bad_text",
            Self::TextTooLong => "text_too_long",
            Self::BadCount => "bad_count",
            Self::BadMultiaddr => "bad_multiaddr",
            Self::NoCurrentRoom => "no_current_room",
            Self::NotJoined => "not_joined",
            Self::TooManyRooms => "too_many_rooms",
            Self::DialFailed => "dial_failed",
            Self::Internal => "internal",
            Self::Storage => "storage",
            Self::Busy => "busy",
            Self::StillJoined => "still_joined",
            Self::BadInvite => "bad_invite",
            Self::InviteUnknown => "invite_unknown",
            Self::InviteUsed => "invite_used",
            Self::InviteExpired => "invite_expired",
            Self::InviteRevoked => "invite_revoked",
            Self::RoomFull => "room_full",
            Self::InviteUnreachable => "invite_unreachable",
            Self::NotPrivate => "not_private",
            Self::NotAdmin => "not_admin",
            Self::NotAMember => "not_a_member",
            Self::NeedsInvite => "needs_invite",
        }
    }
}

/// A refused command: a stable code and a sentence for a person.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct LineError {
    pub code: ErrorCode,
    pub message: String,
}

impl LineError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

impl From<LineError> for Reply {
    fn from(e: LineError) -> Self {
        Reply::Error {
            code: e.code,
            message: e.message,
        }
    }
}
