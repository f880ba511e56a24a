//! Which key each nick was first seen with in this run, so that someone who
//! takes a nick already in use is marked on screen: anyone may pick any
//! nick, and a fingerprint is easy to overlook.

use std::collections::HashMap;

use palaver_proto::Nick;
use palaver_proto::line::Event;
use palaver_proto::line::human::NickNote;

/// Most nicks remembered. Beyond it new nicks are not remembered (never
/// forgotten ones: a flood of fresh nicks must not make room for posing as
/// one seen before); each entry is a nick (at most 128 bytes) and a peer id.
pub const MAX_NICKS: usize = 4096;

#[derive(Debug, Default)]
pub struct FirstKeys {
    first: HashMap<Nick, String>,
}

impl FirstKeys {
    /// What to say of the nick an event names; remembers the nick's key if
    /// it is new. The node's own nick at start counts as seen first.
    pub fn note(&mut self, event: &Event) -> NickNote {
        let (nick, peer_id) = match event {
            Event::Ready { nick, peer_id, .. } => {
                self.seen(nick, peer_id);
                return NickNote::default();
            }
            Event::Message(m) => (&m.nick, &m.from),
            Event::Joined { nick, peer_id, .. } | Event::Left { nick, peer_id, .. } => {
                (nick, peer_id)
            }
            _ => return NickNote::default(),
        };
        NickNote {
            another_key: self.seen(nick, peer_id),
        }
    }

    /// Whether `nick` was first seen with a key other than `peer_id`.
    fn seen(&mut self, nick: &Nick, peer_id: &str) -> bool {
        match self.first.get(nick) {
            Some(first) => first != peer_id,
            None => {
                if self.first.len() < MAX_NICKS {
                    self.first.insert(nick.clone(), peer_id.to_owned());
                }
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use palaver_proto::line::{ChatMessage, LeaveReason};

    use super::*;

    fn message(nick: &str, from: &str) -> Event {
        Event::Message(ChatMessage {
            room: "lobby".parse().unwrap(),
            id: "x".into(),
            from: from.into(),
            nick: nick.parse().unwrap(),
            text: "hi".parse().unwrap(),
            ts: 0,
            replay: false,
            backdated: false,
        })
    }

    #[test]
    fn a_nick_seen_again_with_another_key_is_marked_and_its_first_key_is_not() {
        let mut keys = FirstKeys::default();
        assert!(!keys.note(&message("alice", "A")).another_key);
        assert!(!keys.note(&message("alice", "A")).another_key);
        assert!(keys.note(&message("alice", "B")).another_key);
        let left = Event::Left {
            room: "lobby".parse().unwrap(),
            peer_id: "B".into(),
            nick: "alice".parse().unwrap(),
            reason: LeaveReason::Left,
        };
        assert!(keys.note(&left).another_key);
        assert!(!keys.note(&message("bob", "B")).another_key);
    }

    #[test]
    fn the_nodes_own_nick_is_taken_as_seen_first() {
        let mut keys = FirstKeys::default();
        let ready = Event::Ready {
            peer_id: "ME".into(),
            nick: "me".parse().unwrap(),
            listen: vec![],
            rooms: vec![],
        };
        assert!(!keys.note(&ready).another_key);
        assert!(keys.note(&message("me", "OTHER")).another_key);
    }

    #[test]
    fn a_flood_of_new_nicks_does_not_push_out_one_seen_before() {
        let mut keys = FirstKeys::default();
        keys.note(&message("alice", "A"));
        for i in 0..MAX_NICKS + 100 {
            keys.note(&message(&format!("n{i}"), "S"));
        }
        assert_eq!(keys.first.len(), MAX_NICKS);
        assert!(keys.note(&message("alice", "S")).another_key);
    }
}
