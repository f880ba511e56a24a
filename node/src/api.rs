//! The typed boundary between the console and the network. The console parses
//! a line into a [`Command`] (peer ids and addresses included), the network
//! answers each with one [`Answer`] and reports [`Event`]s; only the console
//! turns these into stdout records (`palaver_proto::line`). No network code
//! turns a peer id or an address into a record's field, nor parses one back
//! (an error's sentence may quote them, as libp2p words its errors).

use libp2p::{Multiaddr, PeerId};
use palaver_proto::line::LeaveReason;
pub use palaver_proto::private::Invite;
use palaver_proto::{ErrorCode, Nick, RoomName, Text};

/// What the console asks of the network: one command line, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Nick(Nick),
    Join(RoomName),
    /// Join a private room by its invite.
    JoinInvite(Invite),
    /// Create a private room with this name (no tag).
    Create(RoomName),
    /// A fresh invite code to a private room.
    Invite(RoomName),
    /// Remove a member from a private room.
    Kick {
        room: RoomName,
        peer: PeerId,
    },
    /// Make a member of a private room an admin.
    Promote {
        room: RoomName,
        peer: PeerId,
    },
    /// Revoke one of this node's invites.
    Revoke(Invite),
    /// The current room when `None`.
    Leave(Option<RoomName>),
    /// To the current room when `room` is `None`.
    Send {
        room: Option<RoomName>,
        text: Text,
    },
    Rooms,
    Who(Option<RoomName>),
    Peers,
    History {
        room: RoomName,
        limit: u16,
    },
    /// Drop a room's stored history.
    Forget(RoomName),
    Dial(Multiaddr),
    Id,
    Quit,
}

/// The one answer to one [`Command`].
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// The command (named as the `ok` record names it) took effect.
    Done(&'static str),
    Sent {
        room: RoomName,
        /// The message id, hex.
        id: String,
        /// Connected peers in the room it was published to.
        peers: usize,
    },
    Rooms(Vec<RoomName>),
    /// An invite code to a private room.
    Invite {
        room: RoomName,
        code: String,
    },
    Who {
        room: RoomName,
        members: Vec<(PeerId, Nick)>,
    },
    Peers(Vec<PeerStatus>),
    History {
        room: RoomName,
        messages: Vec<Chat>,
        /// Stored values in the page's range that failed their checks.
        corrupt: usize,
    },
    Id(NodeStatus),
    Refused(Failure),
}

impl Answer {
    pub fn refused(code: ErrorCode, message: impl Into<String>) -> Self {
        Self::Refused(Failure {
            code,
            message: message.into(),
        })
    }
}

/// Why a command did not take effect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub code: ErrorCode,
    pub message: String,
}

/// A connected peer, as `/peers` lists them.
#[derive(Debug, Clone, PartialEq)]
pub struct PeerStatus {
    pub peer: PeerId,
    pub addr: Multiaddr,
    pub relayed: bool,
    /// This node's gossipsub score of the peer; `None` when it speaks no gossipsub.
    pub score: Option<f64>,
}

/// What `/id` tells about this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeStatus {
    pub peer: PeerId,
    pub nick: Nick,
    /// Listen addresses, each ending in this node's `/p2p/…`.
    pub listen: Vec<Multiaddr>,
    /// Confirmed external addresses, likewise.
    pub external: Vec<Multiaddr>,
    pub nat: NatStatus,
    pub relays: Vec<RelayStatus>,
    /// The private rooms this node is in.
    pub private: Vec<RoomName>,
}

/// What AutoNAT found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NatStatus {
    Unknown,
    Public,
    Private,
}

/// A relay this node uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayStatus {
    pub peer: PeerId,
    pub addr: Multiaddr,
    pub reservation: ReservationState,
}

/// Where this node's reservation at a relay stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReservationState {
    None,
    Pending,
    Active,
}

/// A chat message as shown: live, from the history, or caught up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chat {
    pub room: RoomName,
    /// The message id, hex.
    pub id: String,
    pub author: PeerId,
    /// The author's nick when they sent it.
    pub nick: Nick,
    pub text: Text,
    /// The author's clock, unix milliseconds.
    pub ts: u64,
    /// Reached this node by catch-up rather than live.
    pub replay: bool,
    /// Came by catch-up dated before what this node had reconciled the room up to.
    pub backdated: bool,
}

/// Something that happened, reported between answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The first event: the node is up.
    Ready {
        peer: PeerId,
        nick: Nick,
        listen: Vec<Multiaddr>,
        /// Rooms joined again from the previous run.
        rooms: Vec<RoomName>,
    },
    Message(Chat),
    Joined {
        room: RoomName,
        peer: PeerId,
        nick: Nick,
    },
    Left {
        room: RoomName,
        peer: PeerId,
        nick: Nick,
        reason: LeaveReason,
    },
    PeerConnected {
        peer: PeerId,
        addr: Multiaddr,
        relayed: bool,
    },
    PeerDisconnected {
        peer: PeerId,
    },
    /// A reservation at `relay` became active (others reach this node at
    /// `addr`) or ended.
    Reservation {
        relay: PeerId,
        addr: Option<Multiaddr>,
        active: bool,
    },
    /// The outcome of one attempt to turn a relayed connection into a direct one.
    HolePunch {
        peer: PeerId,
        result: Result<(), String>,
    },
    /// A private room's sending key changed.
    Rekeyed {
        room: RoomName,
        members: usize,
    },
}
