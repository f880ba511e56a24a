//! Private rooms on the wire: what [`PrivateRooms`](crate::private::PrivateRooms)
//! decides, carried out. Creating a room and issuing invites; redeeming an
//! invite (`/palaver/invite/1`) as the joiner and as the member asked;
//! removing a member and re-keying; sealing frames and opening them;
//! publishing lockboxes (sealed by the store thread, which alone holds
//! age) and taking those that arrive; listening on each room's derived
//! topics and registering under its derived namespace.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Instant;

use libp2p::request_response::{self, OutboundRequestId, ResponseChannel};
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::{Multiaddr, PeerId, gossipsub};
use palaver_proto::private::redeem::{self, Reason};
use palaver_proto::private::rotation::Rotation;
use palaver_proto::private::{
    EpochKey, Invite, InvitePeer, MAX_INVITE_ADDRS, Published, ROOM_ID_BYTES, TOKEN_BYTES,
};
use palaver_proto::{ErrorCode, RoomName};

use super::super::behaviour;
use super::super::unix_ms;
use super::{EventLoop, Responder};
use crate::api::{Answer, Event};
use crate::private::PrivateError;
use crate::store::worker::Query;

/// Redemptions of invites under way at once.
const MAX_REDEEMING: usize = 8;
/// Lockboxes waiting for the store to try them at once; more are ignored.
const MAX_OPENING: usize = 16;

/// What a lockbox is sealed for, and what to do once it is.
#[derive(Debug)]
pub struct SealFor {
    pub(super) room: RoomName,
    /// The topics to publish it on.
    pub(super) topics: Vec<String>,
    /// Whether to keep it, to publish again for members who come back.
    pub(super) keep: Keep,
    pub(super) then: Then,
}

/// What a member keeps of a lockbox it sealed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keep {
    Nothing,
    /// A rotation's: sent again to members who come back on an older topic.
    Lockbox,
    /// A note to a removed member: sent again if it still speaks.
    Notice,
}

/// Who waits for a lockbox to go out.
#[derive(Debug)]
pub enum Then {
    Nothing,
    /// A joiner, with the rotation that admits it.
    Welcome(ResponseChannel<redeem::Response>, Vec<u8>),
    /// A command.
    Reply(Responder, Answer),
}

/// An invite being redeemed by this node.
#[derive(Debug)]
pub(super) struct Redeeming {
    invite: Invite,
    /// The next of the invite's peers to ask.
    next: usize,
    /// The peer asked now.
    asked: Option<PeerId>,
    reply: Responder,
}

/// Draws `N` random bytes from the OS.
fn random<const N: usize>() -> Result<[u8; N], Answer> {
    let mut bytes = [0u8; N];
    getrandom::getrandom(&mut bytes).map_err(|e| {
        Answer::refused(
            ErrorCode::Internal,
            format!("no randomness from the OS: {e}"),
        )
    })?;
    Ok(bytes)
}

fn refusal(e: &PrivateError) -> Answer {
    let code = match e {
        PrivateError::NotPrivate(_) => ErrorCode::NotPrivate,
        PrivateError::NotAdmin(_) => ErrorCode::NotAdmin,
        PrivateError::NotAMember { .. } | PrivateError::KickSelf(_) => ErrorCode::NotAMember,
        PrivateError::UnknownInvite => ErrorCode::InviteUnknown,
        PrivateError::HandleTaken(_) => ErrorCode::BadInvite,
        PrivateError::Keys(_) | PrivateError::Handle(_) => ErrorCode::Internal,
    };
    Answer::refused(code, e.to_string())
}

fn reason_code(reason: Reason) -> ErrorCode {
    match reason {
        Reason::Unknown => ErrorCode::InviteUnknown,
        Reason::Used => ErrorCode::InviteUsed,
        Reason::Expired => ErrorCode::InviteExpired,
        Reason::Revoked => ErrorCode::InviteRevoked,
        Reason::Full => ErrorCode::RoomFull,
        Reason::Busy => ErrorCode::Busy,
    }
}

impl EventLoop {
    // ---- commands ----

    /// `/create NAME`: a room with this node its one admin, joined, and a
    /// first invite; answered once the room's keys are stored.
    pub(super) fn create_private(&mut self, name: RoomName, reply: Responder) {
        let made = (|| {
            let room_id = random::<ROOM_ID_BYTES>()?;
            let key = EpochKey::from_bytes(random()?);
            let genesis =
                crate::private::genesis(room_id, key, self.local(), self.recipient.clone());
            let rotation = Rotation::sign(&self.keypair, genesis)
                .map_err(|e| Answer::refused(ErrorCode::Internal, e.to_string()))?;
            self.private.add(&name, rotation).map_err(|e| refusal(&e))
        })();
        let handle = match made {
            Ok(handle) => handle,
            Err(refused) => {
                let _ = reply.send(refused);
                return;
            }
        };
        if let Err(refused) = self.join_private(&handle) {
            self.private.remove(&handle);
            let _ = reply.send(refused);
            return;
        }
        let answer = self.invite_code(&handle);
        self.save_private(&handle, Some((reply, answer)));
        self.save_state(None);
    }

    /// `/invite ROOM`: a fresh code, answered once its token is stored.
    pub(super) fn invite_private(&mut self, room: RoomName, reply: Responder) {
        if !self.private.contains(&room) {
            let _ = reply.send(refusal(&PrivateError::NotPrivate(room)));
            return;
        }
        let answer = self.invite_code(&room);
        if matches!(answer, Answer::Refused(_)) {
            let _ = reply.send(answer);
            return;
        }
        self.save_private(&room, Some((reply, answer)));
    }

    /// A new token, and the code that carries it with this node's addresses.
    fn invite_code(&mut self, handle: &RoomName) -> Answer {
        let token = match random::<TOKEN_BYTES>() {
            Ok(t) => t,
            Err(refused) => return refused,
        };
        let (name, room_id, expires_ms) = match self.private.invite(handle, token, unix_ms()) {
            Ok(issued) => issued,
            Err(e) => return refusal(&e),
        };
        let invite = Invite {
            room_id,
            token,
            expires_ms,
            name,
            peers: vec![InvitePeer {
                peer: self.local(),
                addrs: self.invite_addrs(),
            }],
        };
        match invite.encode() {
            Ok(code) => Answer::Invite {
                room: handle.clone(),
                code,
            },
            Err(e) => Answer::refused(ErrorCode::Internal, format!("cannot make the code: {e}")),
        }
    }

    /// Where a joiner can reach this node: confirmed external addresses
    /// and relay circuits first, then what it listens on.
    fn invite_addrs(&self) -> Vec<Vec<u8>> {
        let mut addrs: Vec<Multiaddr> = self.swarm.external_addresses().cloned().collect();
        let listen = self.reach.listen_addrs();
        let (circuits, direct): (Vec<Multiaddr>, Vec<Multiaddr>) =
            listen.into_iter().partition(|a| {
                a.iter()
                    .any(|p| matches!(p, libp2p::multiaddr::Protocol::P2pCircuit))
            });
        addrs.extend(circuits);
        addrs.extend(direct);
        let mut seen = HashSet::new();
        addrs
            .into_iter()
            .filter(|a| seen.insert(a.clone()))
            .take(MAX_INVITE_ADDRS)
            .map(|a| a.to_vec())
            .collect()
    }

    /// `/revoke CODE`.
    pub(super) fn revoke_invite(&mut self, invite: &Invite, reply: Responder) {
        match self.private.revoke(&invite.room_id, &invite.token) {
            Ok(handle) => self.save_private(&handle, Some((reply, Answer::Done("revoke")))),
            Err(e) => {
                let _ = reply.send(refusal(&e));
            }
        }
    }

    /// `/kick ROOM PEER`: the new key is sealed to everyone else, and a note
    /// to the removed member; answered once the key is out.
    pub(super) fn kick(&mut self, room: RoomName, peer: PeerId, reply: Responder) {
        let keys = random::<32>().and_then(|a| random::<32>().map(|b| (a, b)));
        let (key, decoy) = match keys {
            Ok((a, b)) => (EpochKey::from_bytes(a), EpochKey::from_bytes(b)),
            Err(refused) => {
                let _ = reply.send(refused);
                return;
            }
        };
        let (statement, recipient) = match self.private.kick(&room, peer, key) {
            Ok(kicked) => kicked,
            Err(e) => {
                let _ = reply.send(refusal(&e));
                return;
            }
        };
        let notice = self
            .private
            .removal_notice(&room, &statement, peer, decoy)
            .and_then(|s| Rotation::sign(&self.keypair, s).ok());
        if let (Some(notice), Some(recipient)) = (notice, recipient) {
            let topics = self.parent_topic(&room, &statement.parent);
            self.seal(
                vec![recipient],
                notice.bytes().to_vec(),
                &room,
                topics,
                Keep::Notice,
                Then::Nothing,
            );
        }
        self.rotate(&room, statement, |_| {
            Then::Reply(reply, Answer::Done("kick"))
        });
        if let Some(event) = self.rooms.remove_member(&room, &peer, Instant::now()) {
            self.emit(event);
        }
    }

    /// `/promote ROOM PEER`: answered once the new key (with the new admin) is out.
    pub(super) fn promote(&mut self, room: RoomName, peer: PeerId, reply: Responder) {
        let key = match random::<32>() {
            Ok(k) => EpochKey::from_bytes(k),
            Err(refused) => {
                let _ = reply.send(refused);
                return;
            }
        };
        match self.private.promote(&room, peer, key) {
            Ok(statement) => self.rotate(&room, statement, |_| {
                Then::Reply(reply, Answer::Done("promote"))
            }),
            Err(e) => {
                let _ = reply.send(refusal(&e));
            }
        }
    }

    /// Signs a statement, takes it, listens on its topic, stores the room,
    /// and publishes its lockbox on the topic of the epoch it follows.
    /// `then` (given the signed rotation) hears once the lockbox is out.
    fn rotate(
        &mut self,
        room: &RoomName,
        statement: palaver_proto::private::rotation::Statement,
        then: impl FnOnce(&[u8]) -> Then,
    ) {
        let recipients: Vec<String> = statement
            .members
            .iter()
            .filter(|m| m.peer != self.local())
            .map(|m| m.recipient.clone())
            .collect();
        let topics = self.parent_topic(room, &statement.parent);
        let rotation = match Rotation::sign(&self.keypair, statement) {
            Ok(r) => r,
            Err(e) => return self.seal_failed(then(&[]), &format!("cannot sign it: {e}")),
        };
        if let Err(e) = self.private.take(room, rotation.clone()) {
            return self.seal_failed(then(rotation.bytes()), &format!("cannot take it: {e}"));
        }
        self.private_keys_changed(room);
        self.save_private(room, None);
        let then = then(rotation.bytes());
        if recipients.is_empty() {
            // Alone in the room: nobody to tell.
            return self.lockbox_out(then);
        }
        self.seal(
            recipients,
            rotation.bytes().to_vec(),
            room,
            topics,
            Keep::Lockbox,
            then,
        );
    }

    /// Where a rotation's lockbox goes: the topic of the epoch it follows,
    /// where every member up to date listens (after concurrent removals no
    /// epoch may be sent under, but every member listens on that one). One
    /// topic only, as gossipsub knows a message by its bytes: the same
    /// lockbox on a second topic would not go out there.
    fn parent_topic(
        &self,
        room: &RoomName,
        parent: &palaver_proto::private::EpochId,
    ) -> Vec<String> {
        self.private
            .epoch_topic(room, parent)
            .or_else(|| self.private.current(room).map(|e| e.key.topic()))
            .into_iter()
            .collect()
    }

    fn seal(
        &mut self,
        recipients: Vec<String>,
        plaintext: Vec<u8>,
        room: &RoomName,
        topics: Vec<String>,
        keep: Keep,
        then: Then,
    ) {
        let query = Query::Seal {
            recipients,
            plaintext,
            ticket: SealFor {
                room: room.clone(),
                topics,
                keep,
                then,
            },
        };
        match self.store.query(query) {
            Ok(()) => self.pending.store_replies += 1,
            Err(Query::Seal { ticket, .. }) => self.seal_failed(ticket.then, "the store is busy"),
            Err(_) => {}
        }
    }

    fn seal_failed(&mut self, then: Then, why: &str) {
        match then {
            Then::Nothing => tracing::warn!("cannot seal a lockbox: {why}"),
            Then::Welcome(channel, _) => {
                let _ = self
                    .swarm
                    .behaviour_mut()
                    .redeem
                    .send_response(channel, redeem::Response::Refused(Reason::Busy));
            }
            Then::Reply(reply, _) => {
                let _ = reply.send(Answer::refused(
                    ErrorCode::Busy,
                    format!("the new key could not be sealed ({why}); try again"),
                ));
            }
        }
    }

    /// A lockbox was sealed: it goes out on its topics, then whoever waits hears.
    pub(super) fn on_sealed(
        &mut self,
        ticket: SealFor,
        result: Result<Vec<u8>, crate::store::StoreError>,
    ) {
        self.pending.store_replies = self.pending.store_replies.saturating_sub(1);
        let frame = match result
            .map_err(|e| e.to_string())
            .and_then(|ct| palaver_proto::private::lockbox(&ct).map_err(|e| e.to_string()))
        {
            Ok(frame) => frame,
            Err(e) => return self.seal_failed(ticket.then, &e),
        };
        for topic in &ticket.topics {
            let peers = self.publish_frame(topic, frame.clone());
            tracing::debug!(room = %ticket.room, %topic, peers, "a lockbox went out");
        }
        match ticket.keep {
            Keep::Nothing => {}
            Keep::Lockbox => {
                self.private.keep_lockbox(&ticket.room, frame);
                self.save_private(&ticket.room, None);
            }
            Keep::Notice => self.private.keep_notice(&ticket.room, frame),
        }
        self.lockbox_out(ticket.then);
    }

    /// A lockbox is out: whoever waited for it hears.
    fn lockbox_out(&mut self, then: Then) {
        match then {
            Then::Nothing => {}
            Then::Welcome(channel, rotation) => {
                let _ = self
                    .swarm
                    .behaviour_mut()
                    .redeem
                    .send_response(channel, redeem::Response::Welcome(rotation));
            }
            Then::Reply(reply, answer) => {
                let _ = reply.send(answer);
            }
        }
    }

    /// Publishes bytes on a private topic; how many peers listen there.
    pub(super) fn publish_frame(&mut self, topic: &str, frame: Vec<u8>) -> usize {
        let topic = gossipsub::IdentTopic::new(topic);
        let gossipsub = &mut self.swarm.behaviour_mut().gossipsub;
        let peers = gossipsub
            .all_peers()
            .filter(|(_, topics)| topics.contains(&&topic.hash()))
            .count();
        match gossipsub.publish(topic, frame) {
            Ok(_) | Err(gossipsub::PublishError::NoPeersSubscribedToTopic) => {}
            Err(gossipsub::PublishError::Duplicate) => {}
            Err(e) => tracing::debug!("cannot publish on a private topic: {e}"),
        }
        peers
    }

    /// Seals an envelope for a private room's current epoch: its topic and frame.
    pub(super) fn private_frame(
        &self,
        room: &RoomName,
        envelope: &[u8],
    ) -> Result<(gossipsub::IdentTopic, Vec<u8>), String> {
        let epoch = self.private.current(room).ok_or_else(|| {
            format!("{room} is moving to a new key after a removal; try again in a moment")
        })?;
        let nonce = random::<24>().map_err(|_| "no randomness from the OS".to_owned())?;
        let frame = epoch.key.seal(nonce, envelope).map_err(|e| e.to_string())?;
        Ok((gossipsub::IdentTopic::new(epoch.key.topic()), frame))
    }

    // ---- joining and leaving ----

    /// Enters a private room held: the room state, its topics, its namespace.
    pub(super) fn join_private(&mut self, handle: &RoomName) -> Result<(), Answer> {
        match self.rooms.join(handle.clone(), Instant::now()) {
            Err(e) => return Err(super::commands::join_refused(e)),
            Ok(false) => return Ok(()),
            Ok(true) => {}
        }
        // The key it joins under is no change to report.
        let _ = self.private.sending_changed(handle);
        self.private_keys_changed(handle);
        self.reach.room_joined(handle, Instant::now());
        if let Some(epoch) = self.private.current(handle) {
            let ns = epoch.key.rendezvous_namespace();
            self.reach.private_namespace(handle, &ns, Instant::now());
        }
        self.apply_reach_actions();
        let _ = self.publish(handle, palaver_proto::wire::Body::Join);
        self.catch_ups.joined(handle, Instant::now());
        Ok(())
    }

    /// A room's keys changed: listen on the right topics, register under
    /// the current namespace.
    fn private_keys_changed(&mut self, room: &RoomName) {
        if self.rooms.is_joined(room)
            && let Some(members) = self.private.sending_changed(room)
        {
            self.emit(Event::Rekeyed {
                room: room.clone(),
                members,
            });
        }
        let (join, leave) = self.private.sync_topics(room);
        let gossipsub = &mut self.swarm.behaviour_mut().gossipsub;
        for t in join {
            let topic = gossipsub::IdentTopic::new(t);
            if let Err(e) = gossipsub.subscribe(&topic) {
                tracing::warn!(%room, "cannot listen on a private topic: {e}");
            }
            if let Err(e) = gossipsub.set_topic_params(topic, behaviour::topic_score_params()) {
                tracing::debug!("cannot score a private topic: {e}");
            }
        }
        for t in leave {
            gossipsub.unsubscribe(&gossipsub::IdentTopic::new(t));
        }
        if self.rooms.is_joined(room)
            && let Some(epoch) = self.private.current(room)
        {
            let ns = epoch.key.rendezvous_namespace();
            self.reach.private_namespace(room, &ns, Instant::now());
            self.apply_reach_actions();
        }
    }

    /// Leaves a private room for good (`/leave`, or removed): its keys and
    /// tokens are forgotten; its history stays until `/forget`.
    pub(super) fn drop_private(&mut self, room: &RoomName) {
        for t in self.private.remove(room) {
            self.swarm
                .behaviour_mut()
                .gossipsub
                .unsubscribe(&gossipsub::IdentTopic::new(t));
        }
        self.rooms.leave(room, Instant::now());
        self.reach.room_left(room);
        self.apply_reach_actions();
        self.catch_ups.left(room, Instant::now());
        self.save_private(room, None);
    }

    /// This node was removed from `room`.
    fn removed_from(&mut self, room: &RoomName) {
        tracing::info!(%room, "removed from a private room");
        // Gone before the room is: the record says nothing more.
        self.drop_private(room);
        self.save_state(None);
        let event = Event::Left {
            room: room.clone(),
            peer: self.local(),
            nick: self.rooms.nick().clone(),
            reason: palaver_proto::line::LeaveReason::Removed,
        };
        self.emit(event);
    }

    /// Keeps (or, once the room is gone, forgets) a room's record; `then`
    /// hears once it is stored.
    pub(super) fn save_private(&mut self, room: &RoomName, then: Option<(Responder, Answer)>) {
        let record = self.private.record(room);
        let query = Query::SavePrivate {
            handle: room.clone(),
            record,
            ticket: then,
        };
        match self.store.query(query) {
            Ok(()) => self.pending.store_replies += 1,
            Err(Query::SavePrivate { ticket, .. }) => {
                tracing::warn!(%room, "the store is busy; a private room's keys are not saved");
                if let Some((reply, _)) = ticket {
                    let _ = reply.send(Answer::refused(
                        ErrorCode::Busy,
                        "the history store is busy; try again",
                    ));
                }
            }
            Err(_) => {}
        }
    }

    pub(super) fn on_private_saved(
        &mut self,
        then: Option<(Responder, Answer)>,
        result: Result<(), crate::store::StoreError>,
    ) {
        self.pending.store_replies = self.pending.store_replies.saturating_sub(1);
        if let Err(e) = &result {
            tracing::warn!("cannot keep a private room's keys: {e}");
        }
        if let Some((reply, answer)) = then {
            let _ = reply.send(match result {
                Ok(()) => answer,
                Err(e) => Answer::refused(
                    ErrorCode::Storage,
                    format!("cannot keep the room's keys: {e}"),
                ),
            });
        }
    }

    // ---- redeeming, as the joiner ----

    /// `/join CODE`.
    pub(super) fn join_invite(&mut self, invite: Invite, reply: Responder) {
        if let Some(handle) = self.private.handle_of(&invite.room_id).cloned() {
            // Already a member: it becomes the current room.
            let _ = self.rooms.join(handle, Instant::now());
            let _ = reply.send(Answer::Done("join"));
            return;
        }
        if invite.expires_ms <= unix_ms() {
            let _ = reply.send(Answer::refused(
                ErrorCode::InviteExpired,
                Reason::Expired.to_string(),
            ));
            return;
        }
        if self.pending.redeems.len() >= MAX_REDEEMING {
            let _ = reply.send(Answer::refused(
                ErrorCode::Busy,
                format!("{MAX_REDEEMING} invites are being redeemed already; try again"),
            ));
            return;
        }
        self.redeem_next(Redeeming {
            invite,
            next: 0,
            asked: None,
            reply,
        });
    }

    /// Asks the invite's next member; when none is left, the join fails.
    fn redeem_next(&mut self, mut r: Redeeming) {
        while let Some(member) = r.invite.peers.get(r.next).cloned() {
            r.next += 1;
            if member.peer == self.local() {
                continue;
            }
            let addrs: Vec<Multiaddr> = member
                .addrs
                .iter()
                .filter_map(|a| Multiaddr::try_from(a.clone()).ok())
                .collect();
            for addr in &addrs {
                self.swarm.add_peer_address(member.peer, addr.clone());
            }
            let dial = DialOpts::peer_id(member.peer)
                .addresses(addrs)
                .condition(PeerCondition::DisconnectedAndNotDialing)
                .build();
            if let Err(e) = self.swarm.dial(dial) {
                tracing::debug!(peer = %member.peer, "dial for an invite: {e}");
            }
            let request = redeem::Request {
                room_id: r.invite.room_id,
                token: r.invite.token,
                recipient: self.recipient.clone(),
            };
            let id = self
                .swarm
                .behaviour_mut()
                .redeem
                .send_request(&member.peer, request);
            r.asked = Some(member.peer);
            self.pending.redeems.insert(id, r);
            return;
        }
        let _ = r.reply.send(Answer::refused(
            ErrorCode::InviteUnreachable,
            "no member this invite names could be reached; they may be offline: try again later, or ask for a new code",
        ));
    }

    /// The member answered.
    fn on_redeemed(&mut self, peer: PeerId, id: OutboundRequestId, response: redeem::Response) {
        let Some(r) = self.pending.redeems.remove(&id) else {
            return;
        };
        let bytes = match response {
            redeem::Response::Refused(reason) => {
                let _ = r
                    .reply
                    .send(Answer::refused(reason_code(reason), reason.to_string()));
                return;
            }
            redeem::Response::Welcome(bytes) => bytes,
        };
        let welcome = Rotation::open(&bytes).ok().filter(|w| {
            let s = w.statement();
            s.room_id == r.invite.room_id
                && w.author() == peer
                && s.members.iter().any(|m| m.peer == self.local())
        });
        let Some(welcome) = welcome else {
            tracing::info!(%peer, "an invite was answered with a rotation that does not admit this node");
            return self.redeem_next(r);
        };
        let handle = match self.private.add(&r.invite.name, welcome) {
            Ok(handle) => handle,
            Err(e) => {
                let _ = r.reply.send(refusal(&e));
                return;
            }
        };
        if let Err(refused) = self.join_private(&handle) {
            self.private.remove(&handle);
            let _ = r.reply.send(refused);
            return;
        }
        self.save_private(&handle, Some((r.reply, Answer::Done("join"))));
        self.save_state(None);
    }

    fn on_redeem_failed(&mut self, id: OutboundRequestId) {
        if let Some(r) = self.pending.redeems.remove(&id) {
            self.redeem_next(r);
        }
    }

    // ---- redeeming, as the member asked ----

    fn on_redeem_request(
        &mut self,
        peer: PeerId,
        request: redeem::Request,
        channel: ResponseChannel<redeem::Response>,
    ) {
        let refuse = |el: &mut Self, channel, reason| {
            let _ = el
                .swarm
                .behaviour_mut()
                .redeem
                .send_response(channel, redeem::Response::Refused(reason));
        };
        if !crate::store::Store::is_recipient(&request.recipient) {
            return refuse(self, channel, Reason::Unknown);
        }
        let Ok(key) = random::<32>() else {
            return refuse(self, channel, Reason::Busy);
        };
        let redeemed = self.private.redeem(
            peer,
            &request.room_id,
            &request.token,
            request.recipient,
            EpochKey::from_bytes(key),
            unix_ms(),
        );
        match redeemed {
            Err(reason) => refuse(self, channel, reason),
            Ok((room, statement)) => {
                tracing::info!(%room, %peer, "an invite was redeemed");
                // The welcome answers once the others have the new key too.
                self.rotate(&room, statement, |bytes| {
                    Then::Welcome(channel, bytes.to_vec())
                });
            }
        }
    }

    pub(super) fn on_redeem_event(
        &mut self,
        event: request_response::Event<redeem::Request, redeem::Response>,
    ) {
        use request_response::{Event as E, Message};
        match event {
            E::Message {
                peer,
                message:
                    Message::Request {
                        request, channel, ..
                    },
                ..
            } => self.on_redeem_request(peer, request, channel),
            E::Message {
                peer,
                message:
                    Message::Response {
                        request_id,
                        response,
                    },
                ..
            } => self.on_redeemed(peer, request_id, response),
            E::OutboundFailure {
                peer,
                request_id,
                error,
                ..
            } => {
                tracing::info!(%peer, "redeeming an invite failed: {error}");
                self.on_redeem_failed(request_id);
            }
            E::InboundFailure { peer, error, .. } => {
                tracing::debug!(%peer, "an invite request failed: {error}");
            }
            E::ResponseSent { .. } => {}
        }
    }

    // ---- received on a private topic ----

    /// Who may be writing in a private room live: its members now.
    pub(super) fn live_authors(&self, room: &RoomName) -> Option<Arc<HashSet<PeerId>>> {
        room.is_private().then(|| {
            Arc::new(
                self.private
                    .roster(room)
                    .into_iter()
                    .map(|m| m.peer)
                    .collect(),
            )
        })
    }

    /// Who may have written a private room's history.
    pub(super) fn history_authors(&self, room: &RoomName) -> Option<Arc<HashSet<PeerId>>> {
        room.is_private()
            .then(|| Arc::new(self.private.authors(room)))
    }

    /// A message on a private topic: a frame to open here (it goes on as
    /// any envelope), or a lockbox for the store to try.
    pub(super) fn on_private_gossip(
        &mut self,
        from: PeerId,
        id: gossipsub::MessageId,
        room: RoomName,
        data: Vec<u8>,
    ) {
        use gossipsub::MessageAcceptance::{Ignore, Reject};
        match Published::parse(&data) {
            Err(e) => {
                tracing::debug!(%from, "not a private frame: {e}");
                self.judge(&id, &from, Reject);
            }
            Ok(Published::Message(frame)) => {
                let Some(key) = self.private.key(&room, &frame.epoch) else {
                    return self.judge(&id, &from, Ignore);
                };
                match key.open(&frame) {
                    Ok(envelope) => {
                        let epoch = frame.epoch;
                        self.verify_live(from, id, room.clone(), envelope);
                        self.nudge(&room, &epoch);
                    }
                    Err(e) => {
                        tracing::debug!(%from, "a private frame does not open: {e}");
                        self.judge(&id, &from, Reject);
                    }
                }
            }
            Ok(Published::Lockbox(sealed)) => {
                tracing::debug!(%room, %from, bytes = sealed.len(), "a lockbox arrived");
                if self.pending.opening >= MAX_OPENING {
                    return self.judge(&id, &from, Ignore);
                }
                let query = Query::OpenLockbox {
                    lockbox: sealed.to_vec(),
                    ticket: (id, from, room, data.clone()),
                };
                match self.store.query(query) {
                    Ok(()) => self.pending.opening += 1,
                    Err(Query::OpenLockbox {
                        ticket: (id, from, ..),
                        ..
                    }) => self.judge(&id, &from, Ignore),
                    Err(_) => {}
                }
            }
        }
    }

    /// The store tried a lockbox: a rotation for this node, or nothing.
    pub(super) fn on_lockbox_opened(
        &mut self,
        (id, from, room, frame): (gossipsub::MessageId, PeerId, RoomName, Vec<u8>),
        plaintext: Option<Vec<u8>>,
    ) {
        use gossipsub::MessageAcceptance::{Accept, Ignore, Reject};
        self.pending.opening = self.pending.opening.saturating_sub(1);
        tracing::debug!(%room, opened = plaintext.is_some(), "a lockbox was tried");
        let Some(plaintext) = plaintext else {
            // Not sealed to this node (a note to a removed member, a key
            // sealed before this node joined): passed on if a member sent
            // it (members need not all be connected to each other), not if
            // anyone else did (it could be junk made to be forwarded).
            let from_member = self.private.is_member(&room, &from);
            return self.judge(&id, &from, if from_member { Accept } else { Ignore });
        };
        let Ok(rotation) = Rotation::open(&plaintext) else {
            return self.judge(&id, &from, Reject);
        };
        if self.private.room_id(&room) != Some(rotation.statement().room_id) {
            return self.judge(&id, &from, Reject);
        }
        let before: Vec<PeerId> = self
            .private
            .roster(&room)
            .into_iter()
            .map(|m| m.peer)
            .collect();
        match self.private.take(&room, rotation) {
            Ok(taken) if taken.removed_self => {
                self.judge(&id, &from, Ignore);
                self.removed_from(&room);
            }
            Ok(taken) => {
                self.judge(&id, &from, Accept);
                if taken.new {
                    self.private.keep_lockbox(&room, frame);
                    self.private_keys_changed(&room);
                    self.save_private(&room, None);
                    let after: HashSet<PeerId> = self
                        .private
                        .roster(&room)
                        .into_iter()
                        .map(|m| m.peer)
                        .collect();
                    for gone in before.iter().filter(|p| !after.contains(p)) {
                        if let Some(event) = self.rooms.remove_member(&room, gone, Instant::now()) {
                            self.emit(event);
                        }
                    }
                    self.plan_private_rekey(&room);
                }
            }
            Err(PrivateError::Keys(e)) => {
                tracing::debug!(%room, "a rotation is not taken (yet): {e}");
                self.judge(&id, &from, Ignore);
            }
            Err(e) => {
                tracing::debug!(%room, "a rotation is refused: {e}");
                self.judge(&id, &from, Reject);
            }
        }
    }

    /// A peer came to a private topic: a member back on an older epoch's
    /// topic gets the lockboxes it missed.
    pub(super) fn on_private_subscribed(&mut self, topic: &str) {
        let Some(room) = self.private.room_of_topic(topic).cloned() else {
            return;
        };
        self.rooms.on_peer_subscribed(&room, Instant::now());
        for frame in self.private.lockboxes_for(topic) {
            self.publish_frame(topic, frame);
        }
    }

    /// A frame under `epoch` opened: a member that speaks under an older
    /// epoch missed a rotation, and gets the current key again (fresh
    /// ciphertext, so gossipsub takes it as a new message), and removed
    /// members their notes.
    fn nudge(&mut self, room: &RoomName, epoch: &palaver_proto::private::EpochId) {
        let Some(nudge) = self.private.heard_on(room, epoch, Instant::now()) else {
            return;
        };
        let Some(topic) = self.private.epoch_topic(room, epoch) else {
            return;
        };
        tracing::debug!(%room, "a member speaks under an older key; sending it the current one");
        for notice in nudge.notices {
            self.publish_frame(&topic, notice);
        }
        if !nudge.recipients.is_empty() {
            self.seal(
                nudge.recipients,
                nudge.rotation,
                room,
                vec![topic],
                Keep::Nothing,
                Then::Nothing,
            );
        }
    }

    // ---- re-keying ----

    fn plan_private_rekey(&mut self, room: &RoomName) {
        let present: Vec<PeerId> = self
            .rooms
            .who(room)
            .unwrap_or_default()
            .into_iter()
            .map(|(p, _)| p)
            .collect();
        self.private.plan_rekey(room, &present, Instant::now());
    }

    /// A member left a private room by itself: an admin re-keys without it.
    pub(super) fn on_private_leave(&mut self, room: &RoomName, peer: PeerId) {
        let Ok(key) = random::<32>() else {
            return;
        };
        if let Ok((statement, _)) = self.private.kick(room, peer, EpochKey::from_bytes(key)) {
            tracing::info!(%room, %peer, "a member left; re-keying without it");
            self.rotate(room, statement, |_| Then::Nothing);
        }
    }

    /// Re-keys that fell due.
    pub(super) fn poll_private(&mut self, now: Instant) {
        let due = self
            .private
            .due_rekeys(now, || random::<32>().ok().map(EpochKey::from_bytes));
        for (room, statement) in due {
            tracing::info!(%room, "re-keying a private room");
            self.rotate(&room, statement, |_| Then::Nothing);
        }
    }
}
