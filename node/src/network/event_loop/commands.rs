//! Commands from the console: each becomes swarm calls and exactly one reply.

use std::time::{Duration, Instant};

use libp2p::swarm::DialError;
use libp2p::{Multiaddr, gossipsub};
use palaver_proto::envelope::Envelope;
use palaver_proto::line::{Command, Reply};
use palaver_proto::wire::Body;
use palaver_proto::{ErrorCode, Nick, RoomName, Text};

use super::super::behaviour::{self, topic};
use super::super::connections::{dial_opts, peer_of};
use super::super::unix_ms;
use super::{EventLoop, MAX_PENDING_DIALS, QUIT_GRACE, Responder, Shutdown, truncate};
use crate::rooms::JoinError;

impl EventLoop {
    pub(super) fn on_command(&mut self, command: Option<(Command, Responder)>) {
        match command {
            None => {
                self.commands_closed = true;
                self.begin_shutdown(None);
            }
            Some((Command::Quit, reply)) => self.begin_shutdown(Some(reply)),
            Some((_, reply)) if self.shutdown.is_some() => {
                // Goodbyes are out: nothing may make this node reappear now.
                let _ = reply.send(Reply::error(
                    ErrorCode::Internal,
                    "the node is shutting down",
                ));
            }
            Some((Command::Dial(addr), reply)) => self.dial(&addr, reply),
            Some((Command::Send { room, text }, reply)) => match self.joined_or_current(room) {
                Ok(room) => self.send(room, text, reply),
                Err(e) => {
                    let _ = reply.send(e);
                }
            },
            Some((Command::History { room, limit }, reply)) => self.history(room, limit, reply),
            Some((command @ (Command::Join(_) | Command::Leave(_) | Command::Nick(_)), reply)) => {
                // What changed is remembered before the reply says so.
                let r = self.handle(command);
                if matches!(r, Reply::Error { .. }) {
                    let _ = reply.send(r);
                } else {
                    self.save_state(Some((r, reply)));
                }
            }
            Some((command, reply)) => {
                let r = self.handle(command);
                let _ = reply.send(r);
            }
        }
    }

    fn handle(&mut self, command: Command) -> Reply {
        let result = match command {
            Command::Nick(nick) => Ok(self.set_nick(nick)),
            Command::Join(room) => self.join(room),
            Command::Leave(room) => self.joined_or_current(room).and_then(|r| self.leave(r)),
            Command::Rooms => Ok(Reply::Rooms {
                rooms: self.rooms.joined().cloned().collect(),
            }),
            Command::Who(room) => self.joined_or_current(room).map(|room| {
                let members = self.rooms.who(&room, &self.nick).unwrap_or_default();
                Reply::Who { room, members }
            }),
            Command::Peers => {
                let gossipsub = &self.swarm.behaviour().gossipsub;
                Ok(Reply::Peers {
                    peers: self.connections.list(|p| gossipsub.peer_score(p)),
                })
            }
            Command::Id => Ok(Reply::Id {
                peer_id: self.local.to_string(),
                nick: self.nick.clone(),
                listen: self.listen_addrs_p2p(),
                external: self
                    .swarm
                    .external_addresses()
                    .map(|a| self.with_p2p(a).to_string())
                    .collect(),
                nat: match self.swarm.behaviour().autonat.nat_status() {
                    libp2p::autonat::NatStatus::Public(_) => "public",
                    libp2p::autonat::NatStatus::Private => "private",
                    libp2p::autonat::NatStatus::Unknown => "unknown",
                }
                .to_owned(),
                relays: self.relays.info(),
            }),
            Command::Dial(_) | Command::Quit | Command::Send { .. } | Command::History { .. } => {
                Err(Reply::error(ErrorCode::Internal, "handled elsewhere"))
            }
        };
        result.unwrap_or_else(|e| e)
    }

    fn joined_or_current(&self, room: Option<RoomName>) -> Result<RoomName, Reply> {
        match room.or_else(|| self.rooms.current().cloned()) {
            Some(room) if self.rooms.is_joined(&room) => Ok(room),
            Some(room) => Err(Reply::error(
                ErrorCode::NotJoined,
                format!("not in room {room}; /join {room} first"),
            )),
            None => Err(Reply::error(
                ErrorCode::NoCurrentRoom,
                "no current room; /join ROOM first",
            )),
        }
    }

    fn set_nick(&mut self, nick: Nick) -> Reply {
        self.nick = nick;
        let rooms: Vec<RoomName> = self.rooms.joined().cloned().collect();
        for room in rooms {
            let _ = self.publish(&room, Body::Presence);
        }
        Reply::ok("nick")
    }

    pub(super) fn join(&mut self, room: RoomName) -> Result<Reply, Reply> {
        match self.rooms.join(room.clone(), Instant::now()) {
            Err(e @ JoinError::TooManyRooms) => {
                return Err(Reply::error(ErrorCode::TooManyRooms, e.to_string()));
            }
            Ok(false) => return Ok(Reply::ok("join")),
            Ok(true) => {}
        }
        let gossipsub = &mut self.swarm.behaviour_mut().gossipsub;
        let subscribed = gossipsub.subscribe(&topic(&room));
        if let Err(e) = subscribed {
            self.rooms.leave(&room);
            return Err(Reply::error(
                ErrorCode::Internal,
                format!("cannot subscribe to {room}: {e}"),
            ));
        }
        if let Err(e) = gossipsub.set_topic_params(topic(&room), behaviour::topic_score_params()) {
            tracing::warn!("cannot score room {room}: {e}");
        }
        let _ = self.publish(&room, Body::Join);
        self.nat_room_joined(&room);
        Ok(Reply::ok("join"))
    }

    fn leave(&mut self, room: RoomName) -> Result<Reply, Reply> {
        let _ = self.publish(&room, Body::Leave);
        self.swarm
            .behaviour_mut()
            .gossipsub
            .unsubscribe(&topic(&room));
        self.rooms.leave(&room);
        self.nat_room_left(&room);
        Ok(Reply::ok("leave"))
    }

    /// Seals a chat message; it goes out once it is stored ([`Self::store_own`]).
    fn send(&mut self, room: RoomName, text: Text, reply: Responder) {
        match self.seal(&room, Body::Chat(text)) {
            Ok(envelope) => {
                // Its sequence number is taken now: later messages follow it.
                self.rooms.published(&room, Instant::now());
                self.rooms.observe(&room, envelope.payload().ts);
                self.store_own(envelope, reply);
            }
            Err(e) => {
                let _ = reply.send(Reply::error(
                    ErrorCode::Internal,
                    format!("cannot send: {e}"),
                ));
            }
        }
    }

    /// Signs this node's next payload in `room`.
    fn seal(&mut self, room: &RoomName, body: Body) -> Result<Envelope, String> {
        let Some(payload) = self.rooms.outgoing(room, &self.nick, body, unix_ms()) else {
            return Err(format!("not in room {room}"));
        };
        Envelope::seal(&self.keypair, payload).map_err(|e| {
            tracing::warn!(%room, "cannot sign: {e}");
            e.to_string()
        })
    }

    /// Publishes this node's next payload in `room`. Returns how many
    /// connected peers are in the room. Nobody to send to is not an error:
    /// the payload simply reaches no one (peers 0).
    pub(super) fn publish(&mut self, room: &RoomName, body: Body) -> Result<usize, String> {
        let envelope = self.seal(room, body)?;
        let peers = self.gossip(room, &envelope)?;
        if peers > 0 {
            self.rooms.published(room, Instant::now());
        }
        Ok(peers)
    }

    /// Gossips a sealed envelope in `room`; returns how many connected peers are in it.
    pub(super) fn gossip(&mut self, room: &RoomName, envelope: &Envelope) -> Result<usize, String> {
        let data = envelope.as_bytes().to_vec();
        let topic = topic(room);
        let gossipsub = &mut self.swarm.behaviour_mut().gossipsub;
        let peers = gossipsub
            .all_peers()
            .filter(|(_, topics)| topics.contains(&&topic.hash()))
            .count();
        match gossipsub.publish(topic, data) {
            Ok(_) => Ok(peers),
            Err(gossipsub::PublishError::NoPeersSubscribedToTopic) => Ok(0),
            Err(gossipsub::PublishError::AllQueuesFull(_)) => {
                // Kept in gossipsub's cache, it still spreads by gossip: it is
                // published, only late.
                tracing::warn!(%room, "every peer's send queue is full; the message goes out by gossip");
                Ok(peers)
            }
            Err(e) => {
                tracing::warn!(%room, "publish failed: {e}");
                Err(e.to_string())
            }
        }
    }

    fn dial(&mut self, addr: &str, reply: Responder) {
        let addr = match self.check_dial(addr) {
            Ok(addr) => addr,
            Err((code, message)) => {
                let _ = reply.send(Reply::error(code, message));
                return;
            }
        };
        let opts = dial_opts(&addr);
        let id = opts.connection_id();
        match self.swarm.dial(opts) {
            Ok(()) => {
                self.pending_dials.insert(id, reply);
            }
            Err(DialError::DialPeerConditionFalse(_)) => {
                let _ = reply.send(Reply::ok("dial"));
            }
            Err(e) => {
                let message = truncate(&format!("cannot dial {addr}: {e}"), 600).to_owned();
                let _ = reply.send(Reply::error(ErrorCode::DialFailed, message));
            }
        }
    }

    fn check_dial(&self, addr: &str) -> Result<Multiaddr, (ErrorCode, String)> {
        let addr: Multiaddr = addr.parse().map_err(|e| {
            (
                ErrorCode::BadMultiaddr,
                format!("{:?} is not a multiaddr: {e}", truncate(addr, 200)),
            )
        })?;
        if peer_of(&addr) == Some(self.local) {
            return Err((
                ErrorCode::BadMultiaddr,
                "that is this node's own address".to_owned(),
            ));
        }
        if self.pending_dials.len() >= MAX_PENDING_DIALS {
            return Err((
                ErrorCode::DialFailed,
                format!("{MAX_PENDING_DIALS} dials are already under way"),
            ));
        }
        Ok(addr)
    }

    pub(super) fn begin_shutdown(&mut self, reply: Option<Responder>) {
        if let Some(s) = &mut self.shutdown {
            s.replies.extend(reply);
            return;
        }
        if self.state_unsaved {
            self.save_state(None);
        }
        let rooms: Vec<RoomName> = self.rooms.joined().cloned().collect();
        let mut announced = false;
        for room in &rooms {
            announced |= self.publish(room, Body::Quit).is_ok_and(|peers| peers > 0);
        }
        let grace = if announced {
            QUIT_GRACE
        } else {
            Duration::ZERO
        };
        self.shutdown = Some(Shutdown {
            at: Instant::now() + grace,
            replies: reply.into_iter().collect(),
        });
    }
}
