//! The chat state of a node, free of I/O: which rooms it is in, who is present
//! in each, each author's order, and when to send presence
//! beacons. The network event loop feeds it decoded payloads and the time, and
//! turns what it returns into events and publications.

mod departed;
mod ordering;

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use libp2p::PeerId;
use palaver_proto::envelope::{Envelope, hex_id};
use palaver_proto::line::LeaveReason;
use palaver_proto::wire::{Body, Payload};
use palaver_proto::{Nick, RoomName};

use crate::api::{Chat, Event};

use departed::Departed;
use ordering::AuthorOrder;
pub use ordering::GAP_WAIT;

/// How often a node tells each of its rooms it is still there, and the
/// silence after which a member is reported gone (`left`, reason `timeout`).
pub use palaver_proto::contract::{BEACON_INTERVAL, MEMBER_TIMEOUT};
/// The soonest a beacon follows the previous one when one is hurried.
const BEACON_MIN_GAP: Duration = Duration::from_secs(1);
/// How long a hurried beacon waits, to answer several newcomers at once.
const BEACON_HURRY_DELAY: Duration = Duration::from_millis(150);
/// Most members tracked in one room; more are not shown until some leave
/// or time out (a live member is never pushed out for a newcomer).
pub const MAX_MEMBERS: usize = 2048;
/// Most payloads held back for order in one room, all authors together.
pub const MAX_HELD_PER_ROOM: usize = 1024;
/// Most rooms a node is in at once.
pub const MAX_ROOMS: usize = 256;
/// The furthest ahead of its own clock this node stamps a payload (ms), to
/// sort after a newer timestamp it has seen. Far inside the receivers'
/// allowed skew.
pub const MAX_CLOCK_LEAD_MS: u64 = 10_000;
/// Rooms left whose departures are still remembered, should they be joined
/// again soon.
const MAX_LEFT_ROOMS: usize = 16;
/// Sessions reserved on disk at a time: a join needs no write of its own
/// until half of them are used.
pub const SESSION_BLOCK: u64 = 1 << 16;

/// A decoded payload waiting for its turn in its author's order.
#[derive(Debug)]
struct Incoming {
    id: String,
    payload: Payload,
}

#[derive(Debug)]
struct MemberState {
    nick: Nick,
    last_heard: Instant,
    order: AuthorOrder<Incoming>,
}

#[derive(Debug)]
struct Room {
    members: HashMap<PeerId, MemberState>,
    /// This node's session in the room, part of every payload it sends there.
    session: u64,
    /// Sequence number of this node's next payload in the room.
    next_seq: u64,
    last_beacon: Instant,
    next_beacon: Instant,
    /// The newest timestamp seen in the room: this node stamps its next
    /// payload later than it, so a reply never sorts before what it answers.
    last_ts: u64,
    /// How far each departed member's payloads had got.
    departed: Departed,
}

/// Why a room cannot be joined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum JoinError {
    #[error("already in {MAX_ROOMS} rooms; leave one first")]
    TooManyRooms,
    /// The next session is not yet on disk (see [`Rooms::sessions_to_save`]).
    #[error("the store has not yet saved this node's session numbers; try again")]
    SessionsUnsaved,
}

/// All rooms this node is in.
#[derive(Debug)]
pub struct Rooms {
    local: PeerId,
    /// This node's display name in every room.
    nick: Nick,
    /// The session id given to the room joined last. Each join starts a new
    /// session, above every earlier one (the first is above both unix
    /// milliseconds at start and every session a previous run used, which
    /// the store keeps), so receivers never mistake a rejoin's payloads for
    /// replays.
    last_session: u64,
    /// Sessions up to this one are on disk as used: a join beyond it waits
    /// until the store has saved more ([`Rooms::sessions_saved`]).
    sessions_saved: u64,
    /// A save of sessions asked for and not yet done.
    sessions_saving: Option<u64>,
    rooms: BTreeMap<RoomName, Room>,
    /// The departures of rooms left, for when they are joined again.
    left: BTreeMap<RoomName, Departed>,
    current: Option<RoomName>,
    /// No deadline of any room comes before this (a lower bound, made exact
    /// by each [`Rooms::tick`]).
    wake: Option<Instant>,
}

impl Rooms {
    /// Rooms of `local`, whose sessions start after `session`. No session
    /// is waited for: [`Rooms::with_sessions_saved`] says which are on disk.
    pub fn new(local: PeerId, nick: Nick, session: u64) -> Self {
        Self {
            local,
            nick,
            last_session: session,
            sessions_saved: u64::MAX,
            sessions_saving: None,
            rooms: BTreeMap::new(),
            left: BTreeMap::new(),
            current: None,
            wake: None,
        }
    }

    /// Sessions up to `saved` are on disk as used (the store reserved them at
    /// start); joins beyond wait for [`Rooms::sessions_saved`].
    pub fn with_sessions_saved(mut self, saved: u64) -> Self {
        self.sessions_saved = saved;
        self
    }

    /// Sessions to reserve on disk now, if half the reserved ones are used
    /// and no save is under way: save this value, then call
    /// [`Rooms::sessions_saved`]. Ask after every payload signed.
    pub fn sessions_to_save(&mut self) -> Option<u64> {
        let low = self.last_session.saturating_add(SESSION_BLOCK / 2) > self.sessions_saved;
        if !low || self.sessions_saving.is_some() {
            return None;
        }
        let until = self.last_session.saturating_add(SESSION_BLOCK);
        self.sessions_saving = Some(until);
        Some(until)
    }

    /// The save of [`Rooms::sessions_to_save`] finished (`ok`), or failed or
    /// could not be handed over (asked again later).
    pub fn sessions_saved(&mut self, until: u64, ok: bool) {
        if self.sessions_saving == Some(until) {
            self.sessions_saving = None;
        }
        if ok {
            self.sessions_saved = self.sessions_saved.max(until);
        }
    }

    /// The session the next room joined starts.
    #[cfg(test)]
    pub fn next_session(&self) -> u64 {
        self.last_session.saturating_add(1)
    }

    pub fn nick(&self) -> &Nick {
        &self.nick
    }

    pub fn set_nick(&mut self, nick: Nick) {
        self.nick = nick;
    }

    /// When [`Rooms::tick`] next has something to do (it may find nothing:
    /// this is never later than the first real deadline).
    pub fn poll_at(&self) -> Option<Instant> {
        self.wake
    }

    fn wake_by(&mut self, at: Instant) {
        wake_by(&mut self.wake, at);
    }

    pub fn is_joined(&self, room: &RoomName) -> bool {
        self.rooms.contains_key(room)
    }

    pub fn joined(&self) -> impl Iterator<Item = &RoomName> {
        self.rooms.keys()
    }

    /// Whether `peer` is present in any room this node is in.
    pub fn is_member_anywhere(&self, peer: &PeerId) -> bool {
        self.rooms.values().any(|r| r.members.contains_key(peer))
    }

    /// The room a bare text line goes to: the one joined last, or after
    /// leaving it another joined room.
    pub fn current(&self) -> Option<&RoomName> {
        self.current.as_ref()
    }

    /// Enters a room (it becomes the current one). Returns false if already in it.
    pub fn join(&mut self, room: RoomName, now: Instant) -> Result<bool, JoinError> {
        if self.rooms.contains_key(&room) {
            self.current = Some(room);
            return Ok(false);
        }
        if self.rooms.len() >= MAX_ROOMS {
            return Err(JoinError::TooManyRooms);
        }
        // A session not known to be on disk could be used again after a
        // crash, below what peers remember: they would take this node's
        // payloads for old ones.
        if self.last_session >= self.sessions_saved {
            return Err(JoinError::SessionsUnsaved);
        }
        self.current = Some(room.clone());
        self.last_session = self.last_session.saturating_add(1);
        let departed = self.left.remove(&room).unwrap_or_default();
        self.rooms.insert(
            room,
            Room {
                members: HashMap::new(),
                session: self.last_session,
                next_seq: 0,
                last_beacon: now,
                next_beacon: now + BEACON_INTERVAL,
                last_ts: 0,
                departed,
            },
        );
        self.wake_by(now + BEACON_INTERVAL);
        Ok(true)
    }

    /// Leaves a room. Returns false if not in it. Its departures, and how
    /// far each present member's payloads had got, are kept for a while, so
    /// that what this node saw before is not taken as new if it comes back.
    pub fn leave(&mut self, room: &RoomName, now: Instant) -> bool {
        let left = self.rooms.remove(room);
        let was_in = left.is_some();
        if let Some(mut left) = left {
            for (peer, m) in left.members.drain() {
                left.departed.remember(peer, m.order.high_water(), now);
            }
            left.departed.expire(now);
            self.left.insert(room.clone(), left.departed);
            self.left.retain(|_, d| !d.is_empty());
            while self.left.len() > MAX_LEFT_ROOMS {
                let oldest = self
                    .left
                    .iter()
                    .min_by_key(|(_, d)| d.oldest())
                    .map(|(r, _)| r.clone());
                match oldest {
                    Some(r) => self.left.remove(&r),
                    None => break,
                };
            }
        }
        if self.current.as_ref() == Some(room) {
            self.current = self.rooms.keys().next_back().cloned();
        }
        was_in
    }

    /// The payload this node publishes next in `room`, stamped `now` (unix
    /// ms) or just after the newest timestamp seen in the room, so that a
    /// reply sorts after what it answers, but never more than
    /// [`MAX_CLOCK_LEAD_MS`] ahead of `now`: no timestamp a peer sends can
    /// push this node's clock (nor can its own, from before its clock was
    /// set back). Call [`Rooms::published`] once it went out, so a payload
    /// nobody received leaves no gap.
    pub fn outgoing(&self, room: &RoomName, body: Body, now: u64) -> Option<Payload> {
        let r = self.rooms.get(room)?;
        let after_newest = r
            .last_ts
            .saturating_add(1)
            .min(now.saturating_add(MAX_CLOCK_LEAD_MS));
        Some(Payload {
            room: room.clone(),
            nick: self.nick.clone(),
            ts: now.max(after_newest),
            session: r.session,
            seq: r.next_seq,
            body,
        })
    }

    /// Notes a timestamp seen in `room` (a payload received or sent).
    pub fn observe(&mut self, room: &RoomName, ts: u64) {
        if let Some(r) = self.rooms.get_mut(room) {
            r.last_ts = r.last_ts.max(ts);
        }
    }

    /// Records that a payload from [`Rooms::outgoing`] was published.
    pub fn published(&mut self, room: &RoomName, now: Instant) {
        if let Some(r) = self.rooms.get_mut(room) {
            r.next_seq += 1;
            r.last_beacon = now;
            r.next_beacon = now + BEACON_INTERVAL;
        }
    }

    /// Takes a payload `author` published in its room (already checked to
    /// be one of ours). Returns the events to report, in order.
    pub fn on_payload(
        &mut self,
        author: PeerId,
        id: String,
        payload: Payload,
        now: Instant,
    ) -> Vec<Event> {
        let room_name = payload.room.clone();
        let Some(room) = self.rooms.get_mut(&room_name) else {
            return Vec::new();
        };
        if author == self.local {
            return Vec::new();
        }
        room.last_ts = room.last_ts.max(payload.ts);
        let held_in_room: usize = room.members.values().map(|m| m.order.held()).sum();
        let released = match room.members.get_mut(&author) {
            Some(m) => {
                // A replay (nothing above what was taken) is no sign of life.
                if m.order.is_new(payload.session, payload.seq) {
                    m.last_heard = now;
                }
                let mut released =
                    m.order
                        .push(payload.session, payload.seq, Incoming { id, payload }, now);
                if held_in_room >= MAX_HELD_PER_ROOM {
                    // Many authors with gaps at once: stop waiting rather than hoard.
                    released.extend(m.order.release_all());
                }
                if m.order.held() > 0 {
                    wake_by(&mut self.wake, now + GAP_WAIT);
                }
                released
            }
            None => {
                if matches!(payload.body, Body::Leave | Body::Quit) {
                    // Saying goodbye is no way to arrive.
                    return Vec::new();
                }
                if room
                    .departed
                    .is_old(&author, payload.session, payload.seq, now)
                {
                    // From before it left: replayed (or very late), no return.
                    // A smaller session is refused here too, even though the
                    // old one timed out: that is exactly what a replay of an
                    // older session looks like, and an honest node never goes
                    // back in sessions (they start above every one its store
                    // says it used). Only a node that lost its store but kept
                    // its key is refused wrongly, until DEPARTED_MEMORY after
                    // its timeout (its chat still reaches the history).
                    return Vec::new();
                }
                let mut events = Vec::new();
                if room.members.len() >= MAX_MEMBERS {
                    // Full (perhaps of made-up peers): only a member already
                    // past its timeout makes room; a live one is never pushed
                    // out, and the newcomer is not shown until there is room.
                    let gone = room
                        .members
                        .iter()
                        .filter(|(_, m)| {
                            now.saturating_duration_since(m.last_heard) >= MEMBER_TIMEOUT
                        })
                        .min_by_key(|(_, m)| m.last_heard)
                        .map(|(p, _)| *p);
                    let Some(gone) = gone else {
                        return Vec::new();
                    };
                    if let Some(m) = depart(room, &gone, now) {
                        events.push(Event::Left {
                            room: room_name.clone(),
                            peer: gone,
                            nick: m.nick,
                            reason: LeaveReason::Timeout,
                        });
                    }
                }
                room.departed.forget(&author);
                let mut order = AuthorOrder::new(payload.session, payload.seq);
                let released = order.push(
                    payload.session,
                    payload.seq,
                    Incoming {
                        id,
                        payload: payload.clone(),
                    },
                    now,
                );
                room.members.insert(
                    author,
                    MemberState {
                        nick: payload.nick.clone(),
                        last_heard: now,
                        order,
                    },
                );
                events.push(Event::Joined {
                    room: room_name.clone(),
                    peer: author,
                    nick: payload.nick,
                });
                // A newcomer should learn of us soon, not at our next regular beacon.
                wake_by(&mut self.wake, hurry_beacon(room, now));
                wake_by(&mut self.wake, now + MEMBER_TIMEOUT);
                if room
                    .members
                    .get(&author)
                    .is_some_and(|m| m.order.held() > 0)
                {
                    wake_by(&mut self.wake, now + GAP_WAIT);
                }
                for incoming in released {
                    events.extend(apply(room, &room_name, author, incoming, now));
                }
                return events;
            }
        };
        released
            .into_iter()
            .flat_map(|i| apply(room, &room_name, author, i, now))
            .collect()
    }

    /// A peer subscribed to a room: answer with a beacon soon so it learns of us.
    pub fn on_peer_subscribed(&mut self, room: &RoomName, now: Instant) {
        if let Some(r) = self.rooms.get_mut(room) {
            let at = hurry_beacon(r, now);
            self.wake_by(at);
        }
    }

    /// Advances time: releases payloads whose gap expired, times out silent
    /// members. Returns the events, and the rooms whose beacon is due.
    pub fn tick(&mut self, now: Instant) -> (Vec<Event>, Vec<RoomName>) {
        let mut events = Vec::new();
        let mut beacons = Vec::new();
        for (name, room) in &mut self.rooms {
            let authors: Vec<PeerId> = room
                .members
                .iter()
                .filter(|(_, m)| m.order.held() > 0)
                .map(|(p, _)| *p)
                .collect();
            for author in authors {
                let released = match room.members.get_mut(&author) {
                    Some(m) if m.order.held() > 0 => m.order.expire(now),
                    _ => continue,
                };
                for incoming in released {
                    events.extend(apply(room, name, author, incoming, now));
                }
            }
            let silent: Vec<PeerId> = room
                .members
                .iter()
                .filter(|(_, m)| now.saturating_duration_since(m.last_heard) >= MEMBER_TIMEOUT)
                .map(|(p, _)| *p)
                .collect();
            for peer in silent {
                if let Some(m) = depart(room, &peer, now) {
                    events.push(Event::Left {
                        room: name.clone(),
                        peer,
                        nick: m.nick,
                        reason: LeaveReason::Timeout,
                    });
                }
            }
            room.departed.expire(now);
            if room.next_beacon <= now {
                beacons.push(name.clone());
                room.last_beacon = now;
                room.next_beacon = now + BEACON_INTERVAL;
            }
        }
        self.wake = self.rooms.values().filter_map(Room::next_deadline).min();
        (events, beacons)
    }

    /// Members present in `room`, this node included, by nick.
    /// Takes `peer` off a room's members (removed from a private room):
    /// the `left` event, reason `removed`, if it was present.
    pub fn remove_member(&mut self, room: &RoomName, peer: &PeerId, now: Instant) -> Option<Event> {
        let m = depart(self.rooms.get_mut(room)?, peer, now)?;
        Some(Event::Left {
            room: room.clone(),
            peer: *peer,
            nick: m.nick,
            reason: LeaveReason::Removed,
        })
    }

    pub fn who(&self, room: &RoomName) -> Option<Vec<(PeerId, Nick)>> {
        let r = self.rooms.get(room)?;
        let mut members: Vec<(PeerId, Nick)> = r
            .members
            .iter()
            .map(|(p, m)| (*p, m.nick.clone()))
            .chain(std::iter::once((self.local, self.nick.clone())))
            .collect();
        members.sort_by_cached_key(|(p, n)| (n.as_str().to_owned(), p.to_string()));
        Some(members)
    }

    /// Whether `peer` is a present member of `room`.
    pub fn is_member(&self, room: &RoomName, peer: &PeerId) -> bool {
        self.rooms
            .get(room)
            .is_some_and(|r| r.members.contains_key(peer))
    }

    /// The present members of `room` (this node aside).
    pub fn members(&self, room: &RoomName) -> Vec<PeerId> {
        self.rooms
            .get(room)
            .map(|r| r.members.keys().copied().collect())
            .unwrap_or_default()
    }

    /// The joined rooms `peer` is present in.
    pub fn rooms_of_member(&self, peer: &PeerId) -> Vec<RoomName> {
        self.rooms
            .iter()
            .filter(|(_, r)| r.members.contains_key(peer))
            .map(|(name, _)| name.clone())
            .collect()
    }
}

/// Lowers `wake` to `at` if that is sooner.
fn wake_by(wake: &mut Option<Instant>, at: Instant) {
    *wake = Some(wake.map_or(at, |w| w.min(at)));
}

impl Room {
    /// The first of: the next beacon, a member's timeout, a held payload's gap.
    fn next_deadline(&self) -> Option<Instant> {
        let members = self.members.values().map(|m| {
            let timeout = m.last_heard + MEMBER_TIMEOUT;
            m.order.next_expiry().map_or(timeout, |e| e.min(timeout))
        });
        std::iter::once(self.next_beacon).chain(members).min()
    }
}

/// A stored or fetched chat envelope as it is shown.
pub fn chat_of(envelope: &Envelope, replay: bool) -> Option<Chat> {
    let p = envelope.payload();
    let Body::Chat(text) = &p.body else {
        return None;
    };
    Some(Chat {
        room: p.room.clone(),
        id: hex_id(&envelope.id_bytes()),
        author: envelope.author(),
        nick: p.nick.clone(),
        text: text.clone(),
        ts: p.ts,
        replay,
        backdated: false,
    })
}

/// Brings the room's next beacon forward; returns when it is now due.
fn hurry_beacon(room: &mut Room, now: Instant) -> Instant {
    let soon = (now + BEACON_HURRY_DELAY).max(room.last_beacon + BEACON_MIN_GAP);
    room.next_beacon = room.next_beacon.min(soon);
    room.next_beacon
}

/// Takes `peer` off the room's members, remembering how far its payloads
/// had got (so that a replay of one brings no `joined`).
fn depart(room: &mut Room, peer: &PeerId, now: Instant) -> Option<MemberState> {
    let m = room.members.remove(peer)?;
    room.departed.remember(*peer, m.order.high_water(), now);
    Some(m)
}

/// Processes one payload in its author's order.
fn apply(
    room: &mut Room,
    name: &RoomName,
    author: PeerId,
    incoming: Incoming,
    now: Instant,
) -> Vec<Event> {
    let Incoming { id, payload } = incoming;
    let reason = match payload.body {
        Body::Leave => LeaveReason::Left,
        Body::Quit => LeaveReason::Quit,
        Body::Join | Body::Presence => {
            if let Some(m) = room.members.get_mut(&author) {
                m.nick = payload.nick;
            }
            return Vec::new();
        }
        Body::Chat(text) => {
            if let Some(m) = room.members.get_mut(&author) {
                m.nick = payload.nick.clone();
            }
            let message = Chat {
                room: name.clone(),
                id,
                author,
                nick: payload.nick,
                text,
                ts: payload.ts,
                replay: false,
                backdated: false,
            };
            return vec![Event::Message(message)];
        }
    };
    match depart(room, &author, now) {
        Some(m) => vec![Event::Left {
            room: name.clone(),
            peer: author,
            nick: m.nick,
            reason,
        }],
        None => Vec::new(),
    }
}

#[cfg(test)]
mod tests;
