//! The road of a message, top to bottom.
//!
//! Received: gossipsub hands over a message ([`EventLoop::on_gossip_message`]);
//! it goes to the store thread once, which opens and judges it
//! (`crate::validation::live`) and sends the verdict back at once
//! ([`EventLoop::on_judged`]: forwarded or not); chat is stored next, and
//! only once stored is it shown ([`EventLoop::on_live_stored`]), through the
//! room's order ([`EventLoop::show_live`]) to a `message` event.
//!
//! Sent: `/send` signs the payload ([`EventLoop::send`]), the store keeps it,
//! and once it is stored it is published and `sent` answered
//! ([`EventLoop::on_own_stored`]).

use std::time::Instant;

use libp2p::{PeerId, gossipsub};
use palaver_proto::envelope::Envelope;
use palaver_proto::wire::Body;
use palaver_proto::{ErrorCode, RoomName, Text};

use super::super::behaviour::{room_of, topic};
use super::super::{StoreDone, unix_ms};
use super::{EventLoop, Responder};
use crate::api::{Answer, Event};
use crate::store::worker::{Done, Query};
use crate::validation::{LiveCheck, Verdict};

/// Most gossip messages being verified at once; more are ignored. Half the
/// store's queue, so that live gossip never takes the slots `/send`,
/// `/history` and catch-up need.
pub(super) const MAX_VERIFYING: usize = crate::store::worker::QUEUE / 2;

impl EventLoop {
    /// What the store thread finished: each kind to the step that waits for it.
    pub(super) fn on_store_done(&mut self, done: StoreDone) {
        match done {
            Done::Judged { ticket, verdict } => self.on_judged(ticket, verdict),
            Done::LiveStored { envelope, new } => self.on_live_stored(&envelope, new),
            Done::OwnStored {
                envelope,
                ticket,
                result,
            } => self.on_own_stored(envelope, ticket, result),
            Done::Reconciled { ticket, step } => self.on_reconciled(ticket, step),
            Done::Fetched {
                ticket,
                asked,
                new,
                served,
                rejected,
                error,
            } => self.on_fetched(ticket, asked, new, served, rejected, error),
            Done::Served { ticket, response } => self.on_served(ticket, response),
            Done::Latest { room, ticket, page } => self.on_latest(room, ticket, page),
            Done::StateSaved { ticket, result } => self.on_state_saved(ticket, result),
            Done::SessionsSaved { until, result } => {
                if let Err(e) = &result {
                    tracing::warn!("cannot keep the sessions used: {e}");
                }
                self.rooms.sessions_saved(until, result.is_ok());
            }
            Done::Forgotten {
                room,
                ticket,
                result,
            } => self.on_forgotten(room, ticket, result),
            Done::Sealed { ticket, result } => self.on_sealed(ticket, result),
            Done::LockboxOpened { ticket, plaintext } => self.on_lockbox_opened(ticket, plaintext),
            Done::PrivateSaved { ticket, result } => self.on_private_saved(ticket, result),
        }
    }

    // ---- received ----

    /// A gossip message arrived: to the store thread, to be opened, judged
    /// and (chat) stored in one hand-over.
    pub(super) fn on_gossip_message(
        &mut self,
        from: PeerId,
        id: gossipsub::MessageId,
        message: gossipsub::Message,
    ) {
        use gossipsub::MessageAcceptance::{Ignore, Reject};
        // Gossip is anonymous (see behaviour.rs): the envelope names the
        // author, and `from` answers for whatever it forwards.
        if let Some(room) = self.private.room_of_topic(message.topic.as_str()).cloned() {
            return self.on_private_gossip(from, id, room, message.data);
        }
        let Some(room) = room_of(&message.topic) else {
            return self.judge(&id, &from, Reject);
        };
        if !self.rooms.is_joined(&room) {
            return self.judge(&id, &from, Ignore);
        }
        self.verify_live(from, id, room, message.data);
    }

    /// An envelope received live in `room` (opened from its frame in a
    /// private room): to the store thread, to be judged and stored.
    pub(super) fn verify_live(
        &mut self,
        from: PeerId,
        id: gossipsub::MessageId,
        room: RoomName,
        data: Vec<u8>,
    ) {
        if self.pending.verifying >= MAX_VERIFYING {
            tracing::debug!("too many messages waiting for verification; ignoring one");
            return self.shed(id, from, &room);
        }
        let check = LiveCheck {
            from,
            authors: self.live_authors(&room),
            room,
            local: self.local(),
            received_ms: unix_ms(),
        };
        match self.store.live(data, check, (id, from)) {
            Ok(()) => self.pending.verifying += 1,
            Err((check, (id, from))) => {
                tracing::debug!("the history store is busy; a live message is dropped");
                self.shed(id, from, &check.room);
            }
        }
    }

    /// A live message from `from` was not taken in (more load than this
    /// node can verify and store): `from` has it, and so may other members;
    /// the room is pulled from them once the load has eased (`recover_shed`).
    fn shed(&mut self, id: gossipsub::MessageId, from: PeerId, room: &RoomName) {
        self.judge(&id, &from, gossipsub::MessageAcceptance::Ignore);
        self.catch_ups.shed(from, room, Instant::now());
    }

    /// The verdict on a live message: gossipsub forwards it or not; presence
    /// is shown now, chat once stored.
    fn on_judged(&mut self, (id, from): (gossipsub::MessageId, PeerId), verdict: Verdict) {
        use gossipsub::MessageAcceptance::{Accept, Ignore, Reject};
        self.pending.verifying = self.pending.verifying.saturating_sub(1);
        match verdict {
            // Left while it was being verified.
            Verdict::Accept(envelope) if !self.rooms.is_joined(&envelope.payload().room) => {
                self.judge(&id, &from, Ignore);
            }
            Verdict::Accept(envelope) => {
                self.judge(&id, &from, Accept);
                if !crate::store::is_chat(&envelope) {
                    self.show_live(&envelope, true);
                }
            }
            Verdict::Ignore => self.judge(&id, &from, Ignore),
            Verdict::Reject => self.judge(&id, &from, Reject),
            Verdict::Excess => {
                self.judge(&id, &from, Ignore);
                let score = self.serving.penalise_excess(from);
                self.swarm
                    .behaviour_mut()
                    .gossipsub
                    .set_application_score(&from, score);
            }
        }
    }

    pub(super) fn judge(
        &mut self,
        id: &gossipsub::MessageId,
        from: &PeerId,
        acceptance: gossipsub::MessageAcceptance,
    ) {
        self.swarm
            .behaviour_mut()
            .gossipsub
            .report_message_validation_result(id, from, acceptance);
    }

    /// A live chat message was stored (or not): it is shown only once
    /// stored; otherwise it only counts as a sign of life, and catch-up
    /// brings it back later.
    fn on_live_stored(&mut self, envelope: &Envelope, new: Result<bool, crate::store::StoreError>) {
        let show = new.unwrap_or_else(|e| {
            tracing::warn!("cannot store a message, so it is not shown: {e}");
            false
        });
        self.show_live(envelope, show);
    }

    /// Hands a live payload to the room state. A chat message already held
    /// (it came by catch-up first) only counts as a sign of life.
    fn show_live(&mut self, envelope: &Envelope, show: bool) {
        let mut payload = envelope.payload().clone();
        if !show {
            payload.body = Body::Presence;
        }
        let events =
            self.rooms
                .on_payload(envelope.author(), envelope.id(), payload, Instant::now());
        self.emit_room_events(events);
    }

    /// Emits what the room state reported; a member who appears is asked
    /// for what this node missed.
    pub(super) fn emit_room_events(&mut self, events: Vec<Event>) {
        for event in events {
            if let Event::Joined { room, peer, .. } = &event {
                let (room, peer) = (room.clone(), *peer);
                self.start_catch_up(peer, &room);
                // Who is a member shapes reachability's deadlines (redials,
                // fresh circuits).
                self.reach_changed();
            }
            if let Event::Left {
                room,
                peer,
                reason: palaver_proto::line::LeaveReason::Left,
                ..
            } = &event
                && room.is_private()
            {
                let (room, peer) = (room.clone(), *peer);
                self.on_private_leave(&room, peer);
            }
            self.emit(event);
        }
    }

    // ---- sent ----

    /// Seals a chat message; it goes out once it is stored.
    pub(super) fn send(&mut self, room: RoomName, text: Text, reply: Responder) {
        if self.store.is_full() {
            let _ = reply.send(Answer::refused(
                ErrorCode::Busy,
                "not sent: the history store is busy; try again",
            ));
            return;
        }
        let envelope = match self.sign(&room, Body::Chat(text)) {
            Ok(envelope) => envelope,
            Err(e) => {
                let _ = reply.send(Answer::refused(
                    ErrorCode::Internal,
                    format!("cannot send: {e}"),
                ));
                return;
            }
        };
        // Its sequence number is taken now: later messages follow it.
        self.rooms.published(&room, Instant::now());
        self.rooms.observe(&room, envelope.payload().ts);
        match self.store.own(envelope, reply) {
            Ok(()) => self.pending.store_replies += 1,
            Err(reply) => {
                let _ = reply.send(Answer::refused(
                    ErrorCode::Busy,
                    "not sent: the history store is busy; try again",
                ));
            }
        }
    }

    fn on_own_stored(
        &mut self,
        envelope: Envelope,
        reply: Responder,
        result: Result<(), crate::store::StoreError>,
    ) {
        self.pending.store_replies = self.pending.store_replies.saturating_sub(1);
        let room = envelope.payload().room.clone();
        if let Err(e) = result {
            let _ = reply.send(Answer::refused(
                ErrorCode::Storage,
                format!("not sent: cannot store it: {e}"),
            ));
            return;
        }
        // After goodbyes a message would look like a return: it stays stored
        // and reaches the room by catch-up.
        let peers = if self.shutdown.is_some() || !self.rooms.is_joined(&room) {
            0
        } else {
            self.gossip(&room, &envelope).unwrap_or(0)
        };
        let id = envelope.id();
        let _ = reply.send(Answer::Sent { room, id, peers });
    }

    /// Signs this node's next payload in `room`.
    fn sign(&mut self, room: &RoomName, body: Body) -> Result<Envelope, String> {
        let Some(payload) = self.rooms.outgoing(room, body, unix_ms()) else {
            return Err(format!("not in room {room}"));
        };
        self.save_sessions();
        Envelope::seal(&self.keypair, payload).map_err(|e| {
            tracing::warn!(%room, "cannot sign: {e}");
            e.to_string()
        })
    }

    /// Reserves more sessions on disk once half of those reserved are used
    /// (never waiting: a join waits only if they run out first).
    pub(super) fn save_sessions(&mut self) {
        if let Some(until) = self.rooms.sessions_to_save()
            && self.store.query(Query::SaveSessions { until }).is_err()
        {
            self.rooms.sessions_saved(until, false);
        }
    }

    /// Publishes this node's next payload (presence, join, leave, quit) in
    /// `room`. Returns how many connected peers are in the room. Nobody to
    /// send to is not an error: the payload simply reaches no one (peers 0).
    pub(super) fn publish(&mut self, room: &RoomName, body: Body) -> Result<usize, String> {
        let envelope = self.sign(room, body)?;
        let peers = self.gossip(room, &envelope)?;
        if peers > 0 {
            self.rooms.published(room, Instant::now());
        }
        Ok(peers)
    }

    /// Gossips a signed envelope in `room`; returns how many connected peers are in it.
    fn gossip(&mut self, room: &RoomName, envelope: &Envelope) -> Result<usize, String> {
        let (topic, data) = if room.is_private() {
            self.private_frame(room, envelope.as_bytes())?
        } else {
            (topic(room), envelope.as_bytes().to_vec())
        };
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
}
