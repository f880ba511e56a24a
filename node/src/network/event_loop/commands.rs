//! The console's commands: one dispatch, and exactly one answer each. A
//! command that changes what is remembered across runs (rooms, nick) is
//! answered once that is stored.

use std::time::{Duration, Instant};

use libp2p::Multiaddr;
use libp2p::swarm::DialError;
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use palaver_proto::wire::Body;
use palaver_proto::{ErrorCode, Nick, RoomName};

use super::super::behaviour::{self, topic};
use super::super::reachability::peer_of;
use super::{EventLoop, QUIT_GRACE, Responder, SAVE_RETRY, Shutdown};
use crate::api::{Answer, Command, NodeStatus};
use crate::rooms::JoinError;
use crate::store::worker::Query;
use crate::store::{Page, SavedState, StoreError};

/// Most `/dial`s waiting for their outcome at once.
const MAX_PENDING_DIALS: usize = 64;

impl EventLoop {
    pub(super) fn on_command(&mut self, command: Option<(Command, Responder)>) {
        let Some((command, reply)) = command else {
            self.commands = None;
            return self.begin_shutdown(None);
        };
        if self.shutdown.is_some() && command != Command::Quit {
            // Goodbyes are out: nothing may make this node reappear now.
            let _ = reply.send(Answer::refused(
                ErrorCode::Internal,
                "the node is shutting down",
            ));
            return;
        }
        let answer = match command {
            Command::Quit => return self.begin_shutdown(Some(reply)),
            Command::Send { room, text } => match self.joined_or_current(room) {
                Ok(room) => return self.send(room, text, reply),
                Err(refused) => refused,
            },
            Command::History { room, limit } => return self.history(room, limit, reply),
            Command::Forget(room) if self.rooms.is_joined(&room) => Answer::refused(
                ErrorCode::StillJoined,
                format!(
                    "still in room {room} (its members would send it back); /leave {room} first"
                ),
            ),
            Command::Forget(room) => return self.forget(room, reply),
            Command::Dial(addr) => return self.dial(addr, reply),
            Command::Join(room) if room.is_private() => {
                if self.private.contains(&room) {
                    let _ = self.rooms.join(room, Instant::now());
                    Answer::Done("join")
                } else {
                    Answer::refused(
                        ErrorCode::NeedsInvite,
                        format!(
                            "{room} is a private room; join it with an invite code (/join palaver-invite1-…) from one of its members"
                        ),
                    )
                }
            }
            Command::Join(room) => match self.join(room) {
                Ok(()) => return self.save_state(Some((reply, Answer::Done("join")))),
                Err(refused) => refused,
            },
            Command::JoinInvite(invite) => return self.join_invite(invite, reply),
            Command::Create(name) => return self.create_private(name, reply),
            Command::Invite(room) => return self.invite_private(room, reply),
            Command::Kick { room, peer } => return self.kick(room, peer, reply),
            Command::Promote { room, peer } => return self.promote(room, peer, reply),
            Command::Revoke(invite) => return self.revoke_invite(&invite, reply),
            Command::Leave(room) => match self.joined_or_current(room) {
                Ok(room) => {
                    self.leave(&room);
                    return self.save_state(Some((reply, Answer::Done("leave"))));
                }
                Err(refused) => refused,
            },
            Command::Nick(nick) => {
                self.set_nick(nick);
                return self.save_state(Some((reply, Answer::Done("nick"))));
            }
            Command::Rooms => Answer::Rooms(self.rooms.joined().cloned().collect()),
            Command::Who(room) => match self.joined_or_current(room) {
                Ok(room) => Answer::Who {
                    members: self.rooms.who(&room).unwrap_or_default(),
                    room,
                },
                Err(refused) => refused,
            },
            Command::Peers => {
                let gossipsub = &self.swarm.behaviour().gossipsub;
                Answer::Peers(self.reach.peers(|p| gossipsub.peer_score(p)))
            }
            Command::Id => Answer::Id(self.status()),
        };
        let _ = reply.send(answer);
    }

    fn status(&self) -> NodeStatus {
        NodeStatus {
            peer: self.local(),
            nick: self.rooms.nick().clone(),
            listen: self.reach.listen_addrs(),
            external: self
                .swarm
                .external_addresses()
                .map(|a| self.reach.with_p2p(a))
                .collect(),
            nat: self.reach.nat(),
            relays: self.reach.relays(),
            private: self.private.handles().cloned().collect(),
        }
    }

    fn joined_or_current(&self, room: Option<RoomName>) -> Result<RoomName, Answer> {
        match room.or_else(|| self.rooms.current().cloned()) {
            Some(room) if self.rooms.is_joined(&room) => Ok(room),
            Some(room) => Err(Answer::refused(
                ErrorCode::NotJoined,
                format!("not in room {room}; /join {room} first"),
            )),
            None => Err(Answer::refused(
                ErrorCode::NoCurrentRoom,
                "no current room; /join ROOM first",
            )),
        }
    }

    fn set_nick(&mut self, nick: Nick) {
        self.rooms.set_nick(nick);
        let rooms: Vec<RoomName> = self.rooms.joined().cloned().collect();
        for room in rooms {
            let _ = self.publish(&room, Body::Presence);
        }
    }

    pub(super) fn join(&mut self, room: RoomName) -> Result<(), Answer> {
        match self.rooms.join(room.clone(), Instant::now()) {
            Err(e) => {
                self.save_sessions();
                return Err(join_refused(e));
            }
            Ok(false) => return Ok(()),
            Ok(true) => {}
        }
        let gossipsub = &mut self.swarm.behaviour_mut().gossipsub;
        if let Err(e) = gossipsub.subscribe(&topic(&room)) {
            self.rooms.leave(&room, Instant::now());
            return Err(Answer::refused(
                ErrorCode::Internal,
                format!("cannot subscribe to {room}: {e}"),
            ));
        }
        if let Err(e) = gossipsub.set_topic_params(topic(&room), behaviour::topic_score_params()) {
            tracing::warn!("cannot score room {room}: {e}");
        }
        let _ = self.publish(&room, Body::Join);
        self.reach.room_joined(&room, Instant::now());
        self.apply_reach_actions();
        self.catch_ups.joined(&room, Instant::now());
        Ok(())
    }

    fn leave(&mut self, room: &RoomName) {
        let _ = self.publish(room, Body::Leave);
        if room.is_private() {
            // For good: its keys go; an admin re-keys without this node.
            return self.drop_private(room);
        }
        self.swarm
            .behaviour_mut()
            .gossipsub
            .unsubscribe(&topic(room));
        self.rooms.leave(room, Instant::now());
        self.reach.room_left(room);
        self.apply_reach_actions();
        self.catch_ups.left(room, Instant::now());
    }

    // ---- /history ----

    fn history(&mut self, room: RoomName, limit: u16, reply: Responder) {
        // Nothing dated beyond the allowed skew is listed as newest (a store
        // written before such messages were refused may hold some).
        let query = Query::Latest {
            room,
            limit: usize::from(limit),
            not_after: super::super::unix_ms()
                .saturating_add(palaver_proto::contract::MAX_CLOCK_SKEW_MS),
            ticket: reply,
        };
        match self.store.query(query) {
            Ok(()) => self.pending.store_replies += 1,
            Err(Query::Latest { ticket, .. }) => {
                let _ = ticket.send(Answer::refused(
                    ErrorCode::Busy,
                    "the history store is busy; try again",
                ));
            }
            Err(_) => {}
        }
    }

    pub(super) fn on_latest(
        &mut self,
        room: RoomName,
        reply: Responder,
        page: Result<Page, StoreError>,
    ) {
        self.pending.store_replies = self.pending.store_replies.saturating_sub(1);
        let answer = match page {
            Ok(page) => Answer::History {
                messages: page
                    .messages
                    .iter()
                    .filter_map(|e| crate::rooms::chat_of(e, false))
                    .collect(),
                room,
                corrupt: page.corrupt,
            },
            Err(e) => Answer::refused(ErrorCode::Storage, format!("cannot read history: {e}")),
        };
        let _ = reply.send(answer);
    }

    // ---- what is remembered across runs ----

    /// Remembers the nick and rooms for the next start, then answers `then`
    /// (the command that changed them) once they are stored. If the store
    /// is busy the answer goes now and the save is tried again shortly (and
    /// at shutdown).
    pub(super) fn save_state(&mut self, then: Option<(Responder, Answer)>) {
        let state = SavedState {
            nick: Some(self.rooms.nick().clone()),
            rooms: self.rooms.joined().cloned().collect(),
        };
        let replies = usize::from(then.is_some());
        let query = Query::SaveState {
            state,
            ticket: then,
        };
        match self.store.query(query) {
            Ok(()) => {
                self.pending.save_retry = None;
                self.pending.store_replies += replies;
            }
            Err(Query::SaveState { ticket, .. }) => {
                tracing::warn!("the history store is busy; the rooms and nick will be saved later");
                self.pending.save_retry = Some(Instant::now() + SAVE_RETRY);
                if let Some((reply, answer)) = ticket {
                    let _ = reply.send(answer);
                }
            }
            Err(_) => {}
        }
    }

    pub(super) fn on_state_saved(
        &mut self,
        then: Option<(Responder, Answer)>,
        result: Result<(), StoreError>,
    ) {
        if let Err(e) = &result {
            tracing::warn!("cannot remember the rooms and nick: {e}");
        }
        // The command took effect either way; only remembering it failed.
        if let Some((reply, answer)) = then {
            self.pending.store_replies = self.pending.store_replies.saturating_sub(1);
            let _ = reply.send(answer);
        }
    }

    // ---- /forget ----

    fn forget(&mut self, room: RoomName, reply: Responder) {
        match self.store.query(Query::Forget {
            room,
            ticket: reply,
        }) {
            Ok(()) => self.pending.store_replies += 1,
            Err(Query::Forget { ticket, .. }) => {
                let _ = ticket.send(Answer::refused(
                    ErrorCode::Busy,
                    "the history store is busy; try again",
                ));
            }
            Err(_) => {}
        }
    }

    pub(super) fn on_forgotten(
        &mut self,
        room: RoomName,
        reply: Responder,
        result: Result<usize, StoreError>,
    ) {
        self.pending.store_replies = self.pending.store_replies.saturating_sub(1);
        let _ = reply.send(match result {
            Ok(n) => {
                tracing::info!(%room, forgotten = n, "history forgotten");
                Answer::Done("forget")
            }
            Err(e) => Answer::refused(ErrorCode::Storage, format!("cannot forget {room}: {e}")),
        });
    }

    // ---- /dial ----

    fn dial(&mut self, addr: Multiaddr, reply: Responder) {
        if peer_of(&addr) == Some(self.local()) {
            let _ = reply.send(Answer::refused(
                ErrorCode::BadMultiaddr,
                "that is this node's own address",
            ));
            return;
        }
        if self.pending.dials.len() >= MAX_PENDING_DIALS {
            let _ = reply.send(Answer::refused(
                ErrorCode::DialFailed,
                format!("{MAX_PENDING_DIALS} dials are already under way"),
            ));
            return;
        }
        let opts = match peer_of(&addr) {
            Some(peer) => DialOpts::peer_id(peer)
                .addresses(vec![addr.clone()])
                .condition(PeerCondition::DisconnectedAndNotDialing)
                .build(),
            None => DialOpts::unknown_peer_id().address(addr.clone()).build(),
        };
        let id = opts.connection_id();
        match self.swarm.dial(opts) {
            Ok(()) => {
                self.pending.dials.insert(id, reply);
            }
            Err(DialError::DialPeerConditionFalse(_)) => {
                let _ = reply.send(Answer::Done("dial"));
            }
            Err(e) => {
                let message = truncate(&format!("cannot dial {addr}: {e}"), 600).to_owned();
                let _ = reply.send(Answer::refused(ErrorCode::DialFailed, message));
            }
        }
    }

    // ---- /quit ----

    pub(super) fn begin_shutdown(&mut self, reply: Option<Responder>) {
        if let Some(s) = &mut self.shutdown {
            s.replies.extend(reply);
            return;
        }
        if self.pending.save_retry.is_some() {
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

/// The answer to a join the room state refused.
pub(super) fn join_refused(e: JoinError) -> Answer {
    let code = match e {
        JoinError::TooManyRooms => ErrorCode::TooManyRooms,
        JoinError::SessionsUnsaved => ErrorCode::Busy,
    };
    Answer::refused(code, e.to_string())
}

/// At most `max` characters of `s`.
pub(super) fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}
