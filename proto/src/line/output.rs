//! What a node writes on stdout: replies to commands and asynchronous events.
//! Each serializes to one JSON object with an `event` field naming it.

use serde::{Deserialize, Serialize};

use super::ErrorCode;
use crate::names::{Nick, RoomName, Text};

/// A chat message as shown to the user and kept in history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    pub room: RoomName,
    /// Content hash of the message, hex.
    pub id: String,
    /// The author's peer id.
    pub from: String,
    /// The author's nick when they sent it.
    pub nick: Nick,
    pub text: Text,
    /// The author's clock, unix milliseconds.
    pub ts: u64,
    /// True when the message reached this node by catch-up rather than live.
    pub replay: bool,
    /// True when it came by catch-up dated before a point up to which this
    /// node had already reconciled the room with a member (that member did
    /// not hold it then): it was withheld, or signed with an old date.
    #[serde(default)]
    pub backdated: bool,
}

/// A room member, as `/who` lists them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub peer_id: String,
    pub nick: Nick,
}

/// A connected peer, as `/peers` lists them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PeerInfo {
    pub peer_id: String,
    pub addr: String,
    pub relayed: bool,
    /// This node's gossipsub score of the peer (below -80 its messages are
    /// ignored); null when the peer speaks no gossipsub.
    pub score: Option<f64>,
}

/// A relay this node uses, as `/id` lists them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelayInfo {
    pub peer_id: String,
    pub addr: String,
    /// The relay reservation: `none`, `pending` or `active`.
    pub reservation: String,
}

/// Why a member is no longer in a room.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LeaveReason {
    /// They left the room (`/leave`).
    Left,
    /// They quit the node (`/quit` or end of input).
    Quit,
    /// Nothing was heard from them for too long.
    Timeout,
    /// An admin removed them from a private room (for this node's own
    /// peer id: this node was removed, and the room is gone for it).
    Removed,
}

/// The one response to one command line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Reply {
    Ok {
        cmd: String,
    },
    Sent {
        room: RoomName,
        id: String,
        peers: usize,
    },
    Rooms {
        rooms: Vec<RoomName>,
        /// Those of `rooms` that are private (each named by its handle).
        #[serde(default)]
        private: Vec<RoomName>,
    },
    /// An invite code to a private room (`/create`, `/invite`).
    Invite {
        room: RoomName,
        code: String,
    },
    Who {
        room: RoomName,
        members: Vec<Member>,
    },
    Peers {
        peers: Vec<PeerInfo>,
    },
    History {
        room: RoomName,
        messages: Vec<ChatMessage>,
        /// Stored messages in the page's range that failed their checks
        /// (decryption, key or signature) and are left out.
        #[serde(default)]
        corrupt: usize,
    },
    Id {
        peer_id: String,
        nick: Nick,
        listen: Vec<String>,
        external: Vec<String>,
        /// What AutoNAT found: `unknown`, `public` or `private`.
        nat: String,
        relays: Vec<RelayInfo>,
        /// The private rooms this node is in.
        #[serde(default)]
        private: Vec<RoomName>,
    },
    Error {
        code: ErrorCode,
        message: String,
    },
}

impl Reply {
    pub fn ok(cmd: &str) -> Self {
        Self::Ok {
            cmd: cmd.to_owned(),
        }
    }

    pub fn error(code: ErrorCode, message: impl Into<String>) -> Self {
        Self::Error {
            code,
            message: message.into(),
        }
    }
}

/// Something that happened, reported between replies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// The first line a node prints.
    Ready {
        peer_id: String,
        nick: Nick,
        listen: Vec<String>,
        /// Rooms joined again from the previous run.
        #[serde(default)]
        rooms: Vec<RoomName>,
    },
    Message(ChatMessage),
    Joined {
        room: RoomName,
        peer_id: String,
        nick: Nick,
    },
    Left {
        room: RoomName,
        peer_id: String,
        nick: Nick,
        reason: LeaveReason,
    },
    PeerConnected {
        peer_id: String,
        addr: String,
        relayed: bool,
    },
    PeerDisconnected {
        peer_id: String,
    },
    /// A relay reservation began (`active`: others can reach this node through
    /// `addr`) or ended.
    Reservation {
        relay: String,
        addr: String,
        active: bool,
    },
    /// The outcome of one attempt to turn a relayed connection into a direct one.
    HolePunch {
        peer_id: String,
        ok: bool,
        error: Option<String>,
    },
    /// A private room moved to a new key (a member joined, was removed or
    /// made an admin): what is sent from now on is readable by `members`
    /// peers, this node included.
    Rekeyed {
        room: RoomName,
        members: usize,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    #[test]
    fn replies_and_events_serialize_with_an_event_tag() {
        let sent = Reply::Sent {
            room: "lobby".parse().unwrap(),
            id: "ab".into(),
            peers: 2,
        };
        assert_eq!(
            serde_json::to_value(&sent).unwrap(),
            json!({"event": "sent", "room": "lobby", "id": "ab", "peers": 2})
        );
        let err = Reply::error(ErrorCode::BadRoom, "no");
        assert_eq!(
            serde_json::to_value(&err).unwrap(),
            json!({"event": "error", "code": "bad_room", "message": "no"})
        );
        let msg = Event::Message(ChatMessage {
            room: "lobby".parse().unwrap(),
            id: "x".into(),
            from: "p".into(),
            nick: "n".parse().unwrap(),
            text: "t".parse().unwrap(),
            ts: 5,
            replay: false,
            backdated: false,
        });
        let v: Value = serde_json::to_value(&msg).unwrap();
        assert_eq!(v["event"], "message");
        assert_eq!(v["text"], "t");
        assert_eq!(v["replay"], false);
        let left = Event::Left {
            room: "r".parse().unwrap(),
            peer_id: "p".into(),
            nick: "n".parse().unwrap(),
            reason: LeaveReason::Timeout,
        };
        assert_eq!(serde_json::to_value(&left).unwrap()["reason"], "timeout");
    }

    #[test]
    fn outputs_read_back_from_json() {
        let line = r#"{"event":"joined","room":"lobby","peer_id":"p","nick":"bob"}"#;
        let e: Event = serde_json::from_str(line).unwrap();
        assert!(matches!(e, Event::Joined { .. }));
    }
}
