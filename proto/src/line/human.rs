//! Readable renderings of replies and events, for a person at a terminal
//! (the node without `--json`). Every value shown here was validated on the
//! way in, so none carries control characters.

use std::fmt::Write as _;

use super::{ChatMessage, Event, LeaveReason, Reply};

/// `HH:MM:SS` (UTC) of a unix-milliseconds timestamp.
fn clock(ts_ms: u64) -> String {
    let secs = (ts_ms / 1000) % 86_400;
    format!(
        "{:02}:{:02}:{:02}",
        secs / 3600,
        (secs / 60) % 60,
        secs % 60
    )
}

/// The last six characters of a peer id, enough to tell people apart.
fn short(peer_id: &str) -> &str {
    let start = peer_id.len().saturating_sub(6);
    peer_id.get(start..).unwrap_or(peer_id)
}

/// Anyone can pick any nick: the end of the author's peer id beside it shows
/// who really speaks.
fn message_line(m: &ChatMessage) -> String {
    let replay = match (m.replay, m.backdated) {
        (_, true) => " (missed, back-dated)",
        (true, false) => " (missed)",
        (false, false) => "",
    };
    let (ts, room, nick, from, text) = (clock(m.ts), &m.room, &m.nick, short(&m.from), &m.text);
    format!("{ts} [{room}] <{nick}#{from}> {text}{replay}")
}

/// One or more lines for a person, without the final newline.
pub fn reply(r: &Reply) -> String {
    match r {
        Reply::Ok { cmd } => format!("ok: {cmd}"),
        Reply::Sent { room, peers, .. } => format!("sent to {room} ({peers} peers)"),
        Reply::Rooms { rooms, .. } if rooms.is_empty() => "no rooms joined: /join ROOM".to_owned(),
        Reply::Rooms { rooms, private } => {
            let names: Vec<String> = rooms
                .iter()
                .map(|r| {
                    if private.contains(r) {
                        format!("{r} (private)")
                    } else {
                        r.to_string()
                    }
                })
                .collect();
            format!("rooms: {}", names.join(", "))
        }
        Reply::Invite { room, code } => {
            format!("invite to private room {room} (one person, one use):\n  {code}")
        }
        Reply::Who { room, members } => {
            let mut out = format!("{} in {room}:", members.len());
            for m in members {
                let _ = write!(out, "\n  {} ({})", m.nick, short(&m.peer_id));
            }
            out
        }
        Reply::Peers { peers } => {
            let mut out = format!("{} peers connected", peers.len());
            for p in peers {
                let how = if p.relayed { "relayed" } else { "direct" };
                let _ = write!(out, "\n  {} {} ({how})", p.peer_id, p.addr);
            }
            out
        }
        Reply::History {
            room,
            messages,
            corrupt,
        } => {
            let mut out = format!("history of {room}: {} messages", messages.len());
            if *corrupt > 0 {
                let _ = write!(out, " ({corrupt} damaged and left out)");
            }
            for m in messages {
                out.push('\n');
                out.push_str(&message_line(m));
            }
            out
        }
        Reply::Id {
            peer_id,
            nick,
            listen,
            external,
            nat,
            relays,
            private,
        } => {
            let mut out = format!("you are {nick}, peer id {peer_id} (NAT status: {nat})");
            for a in listen {
                let _ = write!(out, "\n  listening on {a}");
            }
            for a in external {
                let _ = write!(out, "\n  reachable at {a}");
            }
            for r in relays {
                let _ = write!(out, "\n  relay {} ({} reservation)", r.addr, r.reservation);
            }
            for r in private {
                let _ = write!(out, "\n  in private room {r}");
            }
            out
        }
        Reply::Error { code, message } => format!("error ({}): {message}", code.as_str()),
    }
}

/// One or more lines for a person, without the final newline.
pub fn event(e: &Event) -> String {
    match e {
        Event::Ready {
            peer_id,
            nick,
            listen,
            rooms,
        } => {
            let mut out = format!("you are {nick}, peer id {peer_id}");
            for a in listen {
                let _ = write!(out, "\n  listening on {a}");
            }
            for r in rooms {
                let _ = write!(out, "\n  back in {r}");
            }
            out.push_str("\ntype /join ROOM to enter a room, then type to talk; /quit to leave");
            out
        }
        Event::Message(m) => message_line(m),
        Event::Joined {
            room,
            peer_id,
            nick,
        } => {
            format!("* {nick} ({}) joined {room}", short(peer_id))
        }
        Event::Left {
            room,
            peer_id,
            nick,
            reason,
        } => {
            let how = match reason {
                LeaveReason::Left => "left",
                LeaveReason::Quit => "quit",
                LeaveReason::Timeout => "timed out of",
                LeaveReason::Removed => "was removed from",
            };
            format!("* {nick} ({}) {how} {room}", short(peer_id))
        }
        Event::PeerConnected {
            peer_id,
            addr,
            relayed,
        } => {
            let how = if *relayed { "relayed" } else { "direct" };
            format!("* connected to {} at {addr} ({how})", short(peer_id))
        }
        Event::PeerDisconnected { peer_id } => format!("* disconnected from {}", short(peer_id)),
        Event::Reservation {
            addr, active: true, ..
        } => format!("* reachable through the relay: {addr}"),
        Event::Reservation {
            relay,
            active: false,
            ..
        } => format!("* relay reservation at {} ended", short(relay)),
        Event::HolePunch {
            peer_id, ok: true, ..
        } => format!("* direct connection to {} (hole punched)", short(peer_id)),
        Event::HolePunch {
            peer_id,
            ok: false,
            error,
        } => format!(
            "* no direct connection to {}, staying relayed: {}",
            short(peer_id),
            error.as_deref().unwrap_or("unknown error")
        ),
        Event::Rekeyed { room, members } => {
            format!("* {room} has a new key, for its {members} members")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_reads_as_time_room_nick_and_text() {
        let m = ChatMessage {
            room: "lobby".parse().unwrap(),
            id: "x".into(),
            from: "12D3KooWabcdefgh".into(),
            nick: "alice".parse().unwrap(),
            text: "hello".parse().unwrap(),
            ts: 3_723_000,
            replay: false,
            backdated: false,
        };
        assert_eq!(
            event(&Event::Message(m)),
            "01:02:03 [lobby] <alice#cdefgh> hello"
        );
    }

    #[test]
    fn errors_show_their_code() {
        let r = Reply::error(super::super::ErrorCode::BadRoom, "nope");
        assert_eq!(reply(&r), "error (bad_room): nope");
    }
}
