//! The console's translations: a parsed line into the network's typed
//! [`Command`], and the network's typed answers and events into the line
//! protocol's records (`palaver_proto::line`), where peer ids and addresses
//! become strings. Nothing else builds a stdout record.

use libp2p::Multiaddr;
use palaver_proto::ErrorCode;
use palaver_proto::line::{self, ChatMessage, Member, PeerInfo, RelayInfo, Reply};

use crate::api::{
    Answer, Chat, Command, Event, NatStatus, NodeStatus, PeerStatus, RelayStatus, ReservationState,
};

/// Longest part of a bad address quoted back.
const MAX_QUOTED: usize = 200;

/// The typed command of a parsed line; an address that is not a multiaddr
/// is refused here, before the network sees it.
pub fn command(parsed: line::Command) -> Result<Command, Reply> {
    Ok(match parsed {
        line::Command::Nick(nick) => Command::Nick(nick),
        line::Command::Join(room) => Command::Join(room),
        line::Command::JoinInvite(code) => Command::JoinInvite(invite(&code)?),
        line::Command::Create(room) => Command::Create(room),
        line::Command::Invite(room) => Command::Invite(room),
        line::Command::Kick { room, peer } => Command::Kick {
            room,
            peer: peer_id(&peer)?,
        },
        line::Command::Promote { room, peer } => Command::Promote {
            room,
            peer: peer_id(&peer)?,
        },
        line::Command::Revoke(code) => Command::Revoke(invite(&code)?),
        line::Command::Leave(room) => Command::Leave(room),
        line::Command::Send { room, text } => Command::Send { room, text },
        line::Command::Rooms => Command::Rooms,
        line::Command::Who(room) => Command::Who(room),
        line::Command::Peers => Command::Peers,
        line::Command::History { room, limit } => Command::History { room, limit },
        line::Command::Forget(room) => Command::Forget(room),
        line::Command::Dial(addr) => Command::Dial(addr.parse::<Multiaddr>().map_err(|e| {
            let quoted: String = addr.chars().take(MAX_QUOTED).collect();
            Reply::error(
                ErrorCode::BadMultiaddr,
                format!("{quoted:?} is not a multiaddr: {e}"),
            )
        })?),
        line::Command::Id => Command::Id,
        line::Command::Quit => Command::Quit,
    })
}

/// A member's peer id, as `/who` lists it.
fn peer_id(peer: &str) -> Result<libp2p::PeerId, Reply> {
    peer.parse().map_err(|_| {
        let quoted: String = peer.chars().take(MAX_QUOTED).collect();
        Reply::error(
            ErrorCode::NotAMember,
            format!("{quoted:?} is not a peer id; /who ROOM lists the members' ids"),
        )
    })
}

/// An invite code, decoded; one that does not decode is refused here.
fn invite(code: &str) -> Result<crate::api::Invite, Reply> {
    crate::api::Invite::decode(code).map_err(|e| {
        Reply::error(
            ErrorCode::BadInvite,
            format!("that is not a valid invite code ({e}); ask for a new one and paste it whole"),
        )
    })
}

pub fn answer(answer: Answer) -> Reply {
    match answer {
        Answer::Done(cmd) => Reply::ok(cmd),
        Answer::Sent { room, id, peers } => Reply::Sent { room, id, peers },
        Answer::Rooms(rooms) => Reply::Rooms {
            private: rooms.iter().filter(|r| r.is_private()).cloned().collect(),
            rooms,
        },
        Answer::Invite { room, code } => Reply::Invite { room, code },
        Answer::Who { room, members } => Reply::Who {
            room,
            members: members
                .into_iter()
                .map(|(peer, nick)| Member {
                    peer_id: peer.to_string(),
                    nick,
                })
                .collect(),
        },
        Answer::Peers(peers) => Reply::Peers {
            peers: peers.into_iter().map(peer_info).collect(),
        },
        Answer::History {
            room,
            messages,
            corrupt,
        } => Reply::History {
            room,
            messages: messages.into_iter().map(chat_message).collect(),
            corrupt,
        },
        Answer::Id(status) => id(status),
        Answer::Refused(failure) => Reply::error(failure.code, failure.message),
    }
}

pub fn event(event: Event) -> line::Event {
    match event {
        Event::Ready {
            peer,
            nick,
            listen,
            rooms,
        } => line::Event::Ready {
            peer_id: peer.to_string(),
            nick,
            listen: strings(&listen),
            rooms,
        },
        Event::Message(chat) => line::Event::Message(chat_message(chat)),
        Event::Joined { room, peer, nick } => line::Event::Joined {
            room,
            peer_id: peer.to_string(),
            nick,
        },
        Event::Left {
            room,
            peer,
            nick,
            reason,
        } => line::Event::Left {
            room,
            peer_id: peer.to_string(),
            nick,
            reason,
        },
        Event::PeerConnected {
            peer,
            addr,
            relayed,
        } => line::Event::PeerConnected {
            peer_id: peer.to_string(),
            addr: addr.to_string(),
            relayed,
        },
        Event::PeerDisconnected { peer } => line::Event::PeerDisconnected {
            peer_id: peer.to_string(),
        },
        Event::Reservation {
            relay,
            addr,
            active,
        } => line::Event::Reservation {
            relay: relay.to_string(),
            addr: addr.map(|a| a.to_string()).unwrap_or_default(),
            active,
        },
        Event::HolePunch { peer, result } => line::Event::HolePunch {
            peer_id: peer.to_string(),
            ok: result.is_ok(),
            error: result.err(),
        },
        Event::Rekeyed { room, members } => line::Event::Rekeyed { room, members },
    }
}

fn chat_message(chat: Chat) -> ChatMessage {
    ChatMessage {
        room: chat.room,
        id: chat.id,
        from: chat.author.to_string(),
        nick: chat.nick,
        text: chat.text,
        ts: chat.ts,
        replay: chat.replay,
        backdated: chat.backdated,
    }
}

fn peer_info(p: PeerStatus) -> PeerInfo {
    PeerInfo {
        peer_id: p.peer.to_string(),
        addr: p.addr.to_string(),
        relayed: p.relayed,
        score: p.score,
    }
}

fn id(status: NodeStatus) -> Reply {
    Reply::Id {
        peer_id: status.peer.to_string(),
        nick: status.nick,
        listen: strings(&status.listen),
        external: strings(&status.external),
        nat: match status.nat {
            NatStatus::Public => "public",
            NatStatus::Private => "private",
            NatStatus::Unknown => "unknown",
        }
        .to_owned(),
        relays: status.relays.into_iter().map(relay_info).collect(),
        private: status.private,
    }
}

fn relay_info(r: RelayStatus) -> RelayInfo {
    RelayInfo {
        peer_id: r.peer.to_string(),
        addr: r.addr.to_string(),
        reservation: match r.reservation {
            ReservationState::None => "none",
            ReservationState::Pending => "pending",
            ReservationState::Active => "active",
        }
        .to_owned(),
    }
}

fn strings(addrs: &[Multiaddr]) -> Vec<String> {
    addrs.iter().map(ToString::to_string).collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

    use super::*;

    #[test]
    fn a_dial_of_something_that_is_no_multiaddr_is_refused_with_its_code() {
        let Err(Reply::Error { code, message }) =
            command(line::Command::Dial("not an address".into()))
        else {
            panic!("expected a refusal");
        };
        assert_eq!(code, ErrorCode::BadMultiaddr);
        assert!(message.contains("not an address"));
        let addr = "/ip4/127.0.0.1/tcp/4001";
        assert_eq!(
            command(line::Command::Dial(addr.into())).unwrap(),
            Command::Dial(addr.parse().unwrap())
        );
    }

    #[test]
    fn a_hole_punch_renders_its_outcome_as_ok_and_error() {
        let peer = libp2p::PeerId::random();
        let failed = event(Event::HolePunch {
            peer,
            result: Err("no".into()),
        });
        assert_eq!(
            failed,
            line::Event::HolePunch {
                peer_id: peer.to_string(),
                ok: false,
                error: Some("no".into())
            }
        );
    }
}
