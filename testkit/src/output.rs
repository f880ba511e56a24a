//! A node's output lines read into `palaver_proto`'s own types: a
//! [`Reply`] (one per command) or an [`Event`], told apart by the `event`
//! field, as the line protocol defines them. Tests mostly look at lines as
//! `serde_json::Value` (so that they check the wire format itself); these
//! types check that a line is one the protocol knows, and give its fields
//! their types.

use palaver_proto::line::{Event, Reply};
use serde::Deserialize;
use serde_json::Value;

/// The `event` names of the lines that answer a command (one per command).
pub const REPLIES: &[&str] = &[
    "ok", "sent", "rooms", "invite", "who", "peers", "history", "id", "error",
];

/// Whether a line answers a command (rather than reporting an event).
pub fn is_reply(v: &Value) -> bool {
    v["event"].as_str().is_some_and(|e| REPLIES.contains(&e))
}

/// One output line of a node, typed.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    Reply(Reply),
    Event(Event),
}

impl Output {
    /// Reads a line already parsed as JSON.
    pub fn from_value(v: &Value) -> Result<Output, serde_json::Error> {
        if is_reply(v) {
            Reply::deserialize(v).map(Output::Reply)
        } else {
            Event::deserialize(v).map(Output::Event)
        }
    }

    /// Reads one line of text.
    pub fn from_line(line: &str) -> Result<Output, serde_json::Error> {
        Output::from_value(&serde_json::from_str(line)?)
    }
}

/// What a node's first line, `ready`, says about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ready {
    pub peer_id: String,
    pub nick: String,
    /// Its listen addresses, each ending in `/p2p/<peer id>`.
    pub listen: Vec<String>,
    /// The rooms it joined again from its previous run.
    pub rooms: Vec<String>,
}

impl Ready {
    /// Reads a `ready` line; any other line is an error.
    pub fn from_value(v: &Value) -> anyhow::Result<Ready> {
        match Output::from_value(v) {
            Ok(Output::Event(Event::Ready {
                peer_id,
                nick,
                listen,
                rooms,
            })) => Ok(Ready {
                peer_id,
                nick: nick.to_string(),
                listen,
                rooms: rooms.iter().map(ToString::to_string).collect(),
            }),
            Ok(_) => anyhow::bail!("the first line is not ready: {v}"),
            Err(e) => anyhow::bail!("the first line is not a ready line ({e}): {v}"),
        }
    }

    /// The listen address using `transport` (`quic-v1` or `tcp`).
    pub fn addr(&self, transport: &str) -> Option<&str> {
        let needle = format!("/{transport}");
        self.listen
            .iter()
            .find(|a| a.contains(&needle))
            .map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use palaver_proto::ErrorCode;
    use serde_json::json;

    #[test]
    fn replies_and_events_are_read_into_the_protocols_types() {
        let sent = Output::from_line(r#"{"event":"sent","room":"lobby","id":"ab","peers":2}"#);
        assert!(matches!(
            sent,
            Ok(Output::Reply(Reply::Sent { peers: 2, .. }))
        ));
        let error =
            Output::from_value(&json!({"event": "error", "code": "bad_room", "message": "no"}));
        assert!(matches!(
            error,
            Ok(Output::Reply(Reply::Error {
                code: ErrorCode::BadRoom,
                ..
            }))
        ));
        let left =
            json!({"event": "left", "room": "r", "peer_id": "p", "nick": "n", "reason": "quit"});
        assert!(matches!(
            Output::from_value(&left),
            Ok(Output::Event(Event::Left { .. }))
        ));
    }

    #[test]
    fn a_line_the_protocol_does_not_know_is_an_error() {
        assert!(Output::from_value(&json!({"event": "frobbed"})).is_err());
        assert!(Output::from_value(&json!({"event": "sent", "room": "lobby"})).is_err());
        assert!(Output::from_line("not json").is_err());
    }

    #[test]
    fn the_ready_line_gives_the_peer_id_and_addresses() {
        let line = json!({
            "event": "ready", "peer_id": "12D3KooWabc", "nick": "ann",
            "listen": ["/ip4/127.0.0.1/udp/5/quic-v1/p2p/12D3KooWabc", "/ip4/127.0.0.1/tcp/6/p2p/12D3KooWabc"],
            "rooms": ["lobby"],
        });
        let ready = Ready::from_value(&line).unwrap();
        assert_eq!(ready.peer_id, "12D3KooWabc");
        assert_eq!(ready.rooms, ["lobby"]);
        assert_eq!(
            ready.addr("tcp"),
            Some("/ip4/127.0.0.1/tcp/6/p2p/12D3KooWabc")
        );
        assert!(ready.addr("ws").is_none());
        assert!(Ready::from_value(&json!({"event": "ok", "cmd": "join"})).is_err());
    }
}
