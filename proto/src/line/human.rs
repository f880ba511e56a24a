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

/// Characters of a peer id's end shown as its fingerprint: 16 base58
/// characters are about 93 bits, beyond any search for a key whose id ends
/// alike (six were 35 bits, a few hours of key generation).
pub const FINGERPRINT_CHARS: usize = 16;

/// The fingerprint shown beside a nick: the end of the peer id, as `/id`
/// prints it whole, so a person can check it against what a friend reads out.
pub fn fingerprint(peer_id: &str) -> &str {
    let start = peer_id.len().saturating_sub(FINGERPRINT_CHARS);
    peer_id.get(start..).unwrap_or(peer_id)
}

fn short(peer_id: &str) -> &str {
    fingerprint(peer_id)
}

/// What the console knows of a nick beyond the event itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct NickNote {
    /// This nick was first seen (in this run) with another key: someone may
    /// be posing as its first owner.
    pub another_key: bool,
}

impl NickNote {
    fn suffix(self, nick: &impl std::fmt::Display) -> String {
        if self.another_key {
            format!(" (another key than the first {nick} seen)")
        } else {
            String::new()
        }
    }
}

/// Anyone can pick any nick: the end of the author's peer id beside it shows
/// who really speaks.
fn message_line(m: &ChatMessage) -> String {
    message_line_noting(m, NickNote::default())
}

fn message_line_noting(m: &ChatMessage, note: NickNote) -> String {
    let replay = match (m.replay, m.backdated) {
        (_, true) => " (missed, back-dated)",
        (true, false) => " (missed)",
        (false, false) => "",
    };
    let (ts, room, nick, from, text) = (clock(m.ts), &m.room, &m.nick, short(&m.from), &m.text);
    let note = note.suffix(nick);
    format!("{ts} [{room}] <{nick}#{from}>{note} {text}{replay}")
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
    event_noting(e, NickNote::default())
}

/// [`event`], with what the console knows of the nick it names.
pub fn event_noting(e: &Event, note: NickNote) -> String {
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
        Event::Message(m) => message_line_noting(m, note),
        Event::Joined {
            room,
            peer_id,
            nick,
        } => {
            let note = note.suffix(nick);
            format!("* {nick} ({}) joined {room}{note}", short(peer_id))
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
            let note = note.suffix(nick);
            format!("* {nick} ({}) {how} {room}{note}", short(peer_id))
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
            from: "12D3KooWabcdefghijklmnopq".into(),
            nick: "alice".parse().unwrap(),
            text: "hello".parse().unwrap(),
            ts: 3_723_000,
            replay: false,
            backdated: false,
        };
        assert_eq!(
            event(&Event::Message(m)),
            "01:02:03 [lobby] <alice#bcdefghijklmnopq> hello"
        );
    }

    #[test]
    fn a_nick_seen_first_with_another_key_is_marked() {
        let m = ChatMessage {
            room: "lobby".parse().unwrap(),
            id: "x".into(),
            from: "12D3KooWzzzzzzzzzzzzzzzzzzzz".into(),
            nick: "alice".parse().unwrap(),
            text: "hello".parse().unwrap(),
            ts: 0,
            replay: false,
            backdated: false,
        };
        let note = NickNote { another_key: true };
        assert_eq!(
            event_noting(&Event::Message(m), note),
            "00:00:00 [lobby] <alice#zzzzzzzzzzzzzzzz> (another key than the first alice seen) hello"
        );
    }

    #[test]
    fn errors_show_their_code() {
        let r = Reply::error(super::super::ErrorCode::BadRoom, "nope");
        assert_eq!(reply(&r), "error (bad_room): nope");
    }
}
