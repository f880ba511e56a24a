//! Catch-up in the event loop (`/palaver/history/2`), both ways: pulling
//! what this node missed from a member ([`CatchUps`](super::super::catch_up::CatchUps)
//! decides what to ask, and when), and answering other members' requests
//! ([`Serving`](super::super::serving::Serving) decides whom). Reconciliation
//! rounds, disk and crypto run on the store thread; its answers come back
//! as store events.

use std::time::Instant;

use libp2p::PeerId;
use libp2p::request_response::{OutboundRequestId, ResponseChannel};
use palaver_proto::RoomName;
use palaver_proto::contract::MAX_CLOCK_SKEW_MS;
use palaver_proto::envelope::Envelope;
use palaver_proto::history::reconcile::{ReconcileError, Step};
use palaver_proto::history::{MessageRef, Refusal, Request, Response};

use super::super::catch_up::{Action, Key, Reason};
use super::super::serving;
use super::super::unix_ms;
use super::EventLoop;
use super::messages::MAX_VERIFYING;
use crate::api::Event;
use crate::store::worker::Query;
use crate::store::{StoreError, message_ref};

impl EventLoop {
    // ---- pulling ----

    /// Asks `peer` (a member of `room`) for what this node lacks.
    pub(super) fn start_catch_up(&mut self, peer: PeerId, room: &RoomName) {
        self.request_pull(peer, room, Reason::Met);
    }

    fn request_pull(&mut self, peer: PeerId, room: &RoomName, reason: Reason) {
        if peer == self.local() || self.shutdown.is_some() || !self.rooms.is_joined(room) {
            return;
        }
        self.catch_ups.request(peer, room, reason, Instant::now());
        self.apply_catch_up_actions();
    }

    /// A room member (re)connected: catch up in every room it is in.
    pub(super) fn catch_up_with_member(&mut self, peer: PeerId) {
        for room in self.rooms.rooms_of_member(&peer) {
            self.start_catch_up(peer, &room);
        }
    }

    /// What catch-up has due: requests refused as busy sent again, stalled
    /// pulls ended, anti-entropy with a random present member of each room
    /// whose period came round, and shed messages once the load has eased.
    pub(super) fn poll_catch_ups(&mut self, now: Instant) {
        for room in self.catch_ups.poll(now) {
            let members = self.connected_members(&room);
            if let Some(peer) = self.catch_ups.pick(&members) {
                tracing::debug!(%peer, %room, "anti-entropy");
                self.request_pull(peer, &room, Reason::AntiEntropy);
            }
        }
        self.recover_shed(now);
        self.apply_catch_up_actions();
    }

    /// Pulls what was shed under load, from the peers that forwarded it and
    /// from one other present member (a forwarder may withhold it), once
    /// the load has eased: few live messages waiting, and room in the
    /// store's queue.
    fn recover_shed(&mut self, now: Instant) {
        let eased = self.pending.verifying <= MAX_VERIFYING / 4 && !self.store.is_full();
        for (room, forwarders) in self.catch_ups.take_shed(now, eased) {
            let others: Vec<PeerId> = self
                .connected_members(&room)
                .into_iter()
                .filter(|p| !forwarders.contains(p))
                .collect();
            let other = self.catch_ups.pick(&others);
            for peer in forwarders.into_iter().chain(other) {
                if self.reach.is_connected(&peer) {
                    tracing::debug!(%peer, %room, "pulling what was shed under load");
                    self.request_pull(peer, &room, Reason::Shed);
                }
            }
        }
    }

    fn connected_members(&self, room: &RoomName) -> Vec<PeerId> {
        self.rooms
            .members(room)
            .into_iter()
            .filter(|p| self.reach.is_connected(p))
            .collect()
    }

    /// Does what catch-up asked for: rounds to the store, requests to peers.
    fn apply_catch_up_actions(&mut self) {
        loop {
            let actions = self.catch_ups.take_actions();
            if actions.is_empty() {
                return;
            }
            for action in actions {
                match action {
                    Action::Reconcile { key, answer } => self.ask_store_round(key, answer),
                    Action::Send { key, request } => self.send_pull_request(key, request),
                }
            }
        }
    }

    fn ask_store_round(&mut self, key: Key, answer: Option<Vec<u8>>) {
        let query = Query::Reconcile {
            room: key.1.clone(),
            answer,
            ticket: key,
        };
        if let Err(Query::Reconcile { ticket, .. }) = self.store.query(query) {
            tracing::debug!("the history store is busy; a catch-up is dropped");
            self.catch_ups.end(&ticket, false, Instant::now());
        }
    }

    fn send_pull_request(&mut self, key: Key, request: Request) {
        let id: OutboundRequestId = self
            .swarm
            .behaviour_mut()
            .catch_up
            .send_request(&key.0, request);
        self.catch_ups.sent(id, key);
    }

    /// A request of ours failed (timeout, closed stream, bytes that did not
    /// decode, a peer that does not speak the protocol).
    pub(super) fn on_pull_failed(&mut self, id: OutboundRequestId) {
        if let Some(key) = self.catch_ups.answered(&id) {
            self.catch_ups.end(&key, true, Instant::now());
            self.apply_catch_up_actions();
        }
    }

    pub(super) fn on_pull_answer(
        &mut self,
        peer: PeerId,
        id: OutboundRequestId,
        response: Response,
    ) {
        let Some(key) = self.catch_ups.answered(&id) else {
            return;
        };
        let now = Instant::now();
        match response {
            Response::Reconcile(answer) => {
                if self.catch_ups.on_reconcile_answer(&key, now) {
                    self.ask_store_round(key, Some(answer));
                }
            }
            Response::Envelopes(envelopes) => {
                let Some(asked) = self.catch_ups.on_envelopes(&key, now) else {
                    tracing::debug!(%peer, "envelopes nobody asked for");
                    return self.apply_catch_up_actions();
                };
                let query = Query::Fetched {
                    room: key.1.clone(),
                    asked,
                    envelopes,
                    not_after: unix_ms().saturating_add(MAX_CLOCK_SKEW_MS),
                    authors: self.history_authors(&key.1),
                    ticket: key,
                };
                if let Err(Query::Fetched { ticket, .. }) = self.store.query(query) {
                    self.catch_ups.end(&ticket, false, now);
                }
            }
            Response::Refused(Refusal::Busy | Refusal::NotMember) => {
                tracing::debug!(%peer, "catch-up refused for now; will ask again");
                self.catch_ups.busy(&key, now);
            }
            Response::Refused(Refusal::Unavailable) => {
                tracing::debug!(%peer, "catch-up refused");
                self.catch_ups.end(&key, false, now);
            }
        }
        self.apply_catch_up_actions();
    }

    /// The store computed a round of a pull's reconciliation.
    pub(super) fn on_reconciled(&mut self, key: Key, step: Result<Step, ReconcileError>) {
        let now = Instant::now();
        match step {
            Ok(step) => self.catch_ups.on_step(&key, step, unix_ms(), now),
            Err(e) => {
                tracing::debug!(peer = %key.0, "catch-up ended: {e}");
                self.catch_ups.end(&key, true, now);
            }
        }
        self.apply_catch_up_actions();
    }

    /// A fetched page was verified and what was new in it stored: it is
    /// shown, in order, marked as replayed.
    pub(super) fn on_fetched(
        &mut self,
        key: Key,
        asked: Vec<MessageRef>,
        mut new: Vec<Envelope>,
        served: Vec<MessageRef>,
        rejected: usize,
        error: Option<StoreError>,
    ) {
        let now = Instant::now();
        new.sort_by_key(message_ref);
        let synced = self.catch_ups.synced_until(&key.1);
        for envelope in &new {
            self.rooms.observe(&key.1, envelope.payload().ts);
            if let Some(mut chat) = crate::rooms::chat_of(envelope, true) {
                chat.backdated = synced.is_some_and(|t| chat.ts < t);
                self.emit(Event::Message(chat));
            }
        }
        if rejected > 0 {
            tracing::info!(peer = %key.0, rejected, "catch-up page held envelopes that are not genuine; pull ended");
            let score = self.serving.penalise(key.0, rejected);
            self.swarm
                .behaviour_mut()
                .gossipsub
                .set_application_score(&key.0, score);
            self.catch_ups.end(&key, true, now);
        } else if let Some(e) = error {
            tracing::warn!("cannot store caught-up messages: {e}");
            self.catch_ups.end(&key, false, now);
        } else {
            self.catch_ups.on_fetched(&key, &asked, &served, now);
        }
        self.apply_catch_up_actions();
    }

    // ---- serving ----

    /// A peer's catch-up request: answered by the store thread if admitted,
    /// refused at once if not.
    pub(super) fn serve(
        &mut self,
        peer: PeerId,
        request: Request,
        channel: ResponseChannel<Response>,
    ) {
        let room = request.room();
        // A private room is served to its members only; to anyone else it
        // is answered as a room this node is not in.
        let joined = self.rooms.is_joined(room)
            && (!room.is_private() || self.private.is_member(room, &peer));
        let member = self.rooms.is_member(room, &peer);
        let cost = serving::cost(&request);
        if let Err(why) = self
            .serving
            .admit(peer, joined, member, cost, Instant::now())
        {
            return self.respond(channel, Response::Refused(why));
        }
        tracing::debug!(%peer, %room, "serving catch-up");
        let query = Query::Serve {
            request,
            ticket: (peer, channel),
        };
        if let Err(Query::Serve {
            ticket: (peer, channel),
            ..
        }) = self.store.query(query)
        {
            self.serving.answered(&peer);
            self.respond(channel, Response::Refused(Refusal::Busy));
        }
    }

    pub(super) fn on_served(
        &mut self,
        (peer, channel): (PeerId, ResponseChannel<Response>),
        response: Response,
    ) {
        self.serving.answered(&peer);
        self.respond(channel, response);
    }

    fn respond(&mut self, channel: ResponseChannel<Response>, response: Response) {
        let _ = self
            .swarm
            .behaviour_mut()
            .catch_up
            .send_response(channel, response);
    }
}
