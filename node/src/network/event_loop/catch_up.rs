//! Catch-up in the event loop (`/palaver/history/1`), both ways: pulling
//! what this node missed from a member ([`CatchUps`](super::super::catch_up::CatchUps)
//! decides what to ask), and answering other members' requests
//! ([`Serving`](super::super::serving::Serving) decides whom). Disk and
//! crypto run on the store thread; its answers come back as store events.

use std::time::Instant;

use libp2p::PeerId;
use libp2p::request_response::{OutboundRequestId, ResponseChannel};
use palaver_proto::RoomName;
use palaver_proto::envelope::Envelope;
use palaver_proto::history::{MessageRef, Refusal, Request, Response};

use super::super::unix_ms;
use super::EventLoop;
use super::messages::MAX_VERIFYING;
use crate::api::Event;
use crate::store::worker::Query;
use crate::store::{StoreError, message_ref};

type Key = (PeerId, RoomName);

impl EventLoop {
    // ---- pulling ----

    /// Asks `peer` (a member of `room`) for what this node lacks, unless a
    /// pull is under way or was made just now.
    pub(super) fn start_catch_up(&mut self, peer: PeerId, room: &RoomName) {
        if peer == self.local() || self.shutdown.is_some() || !self.rooms.is_joined(room) {
            return;
        }
        if let Some(request) = self.catch_ups.start(peer, room, Instant::now()) {
            tracing::debug!(%peer, %room, "catching up");
            self.send_pull_request(peer, request);
        }
    }

    /// A room member (re)connected: catch up in every room it is in.
    pub(super) fn catch_up_with_member(&mut self, peer: PeerId) {
        for room in self.rooms.rooms_of_member(&peer) {
            self.start_catch_up(peer, &room);
        }
    }

    /// Pulls refused as busy earlier whose time has come.
    pub(super) fn retry_catch_ups(&mut self, now: Instant) {
        for (peer, room) in self.catch_ups.due_retries(now) {
            if self.reach.is_connected(&peer) {
                self.start_catch_up(peer, &room);
            }
        }
    }

    /// Pulls what was shed under load from the peers that sent it, once the
    /// load has eased: few live messages waiting, and room in the store's queue.
    pub(super) fn recover_shed(&mut self, now: Instant) {
        let eased = self.pending.verifying <= MAX_VERIFYING / 4 && !self.store.is_full();
        let (reach, rooms) = (&self.reach, &self.rooms);
        let started = self.catch_ups.start_shed(now, eased, |(peer, room)| {
            reach.is_connected(peer) && rooms.is_joined(room)
        });
        for (peer, request) in started {
            tracing::debug!(%peer, room = %request.room(), "pulling what was shed under load");
            self.send_pull_request(peer, request);
        }
    }

    fn send_pull_request(&mut self, peer: PeerId, request: Request) {
        let room = request.room().clone();
        let id: OutboundRequestId = self
            .swarm
            .behaviour_mut()
            .catch_up
            .send_request(&peer, request);
        self.catch_ups.sent(id, peer, room);
    }

    fn continue_pull(&mut self, key: &Key, next: Option<Request>) {
        match next {
            Some(request) => self.send_pull_request(key.0, request),
            None => tracing::debug!(peer = %key.0, room = %key.1, "caught up"),
        }
    }

    /// A request of ours failed (timeout, closed stream, bytes that did not decode).
    pub(super) fn on_pull_failed(&mut self, id: OutboundRequestId) {
        if let Some(key) = self.catch_ups.answered(&id) {
            self.catch_ups.end(&key);
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
        match response {
            Response::Inventory { refs, more } => {
                if !self.catch_ups.on_inventory(&key, &refs, more) {
                    tracing::debug!(%peer, "catch-up inventory out of order; pull ended");
                    return;
                }
                let query = Query::Missing {
                    room: key.1.clone(),
                    refs,
                    ticket: key,
                };
                if let Err(Query::Missing { ticket, .. }) = self.store.query(query) {
                    self.catch_ups.end(&ticket);
                }
            }
            Response::Envelopes(envelopes) => {
                let Some(asked) = self.catch_ups.on_envelopes(&key) else {
                    tracing::debug!(%peer, "envelopes nobody asked for");
                    return;
                };
                let query = Query::Fetched {
                    room: key.1.clone(),
                    asked,
                    envelopes,
                    ticket: key,
                };
                if let Err(Query::Fetched { ticket, .. }) = self.store.query(query) {
                    self.catch_ups.end(&ticket);
                }
            }
            Response::Refused(Refusal::Busy) => {
                tracing::debug!(%peer, "catch-up refused as busy; will ask again");
                let jitter = unix_ms() ^ u64::from(self.local().to_bytes()[4]);
                self.catch_ups.busy(&key, Instant::now(), jitter);
            }
            Response::Refused(why) => {
                tracing::debug!(%peer, ?why, "catch-up refused");
                self.catch_ups.end(&key);
            }
        }
    }

    /// The store said which references of an inventory page it lacks.
    pub(super) fn on_missing(&mut self, key: Key, missing: Result<Vec<MessageRef>, StoreError>) {
        match missing {
            Ok(missing) => {
                let next = self.catch_ups.on_missing(&key, missing);
                self.continue_pull(&key, next);
            }
            Err(e) => {
                tracing::warn!("catch-up stopped: {e}");
                self.catch_ups.end(&key);
            }
        }
    }

    /// A fetched page was verified and what was new in it stored: it is
    /// shown, in order, marked as replayed.
    pub(super) fn on_fetched(
        &mut self,
        key: Key,
        mut new: Vec<Envelope>,
        rejected: usize,
        error: Option<StoreError>,
    ) {
        new.sort_by_key(message_ref);
        for envelope in &new {
            self.rooms.observe(&key.1, envelope.payload().ts);
            if let Some(chat) = crate::rooms::chat_of(envelope, true) {
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
            self.catch_ups.end(&key);
            return;
        }
        if let Some(e) = error {
            tracing::warn!("cannot store caught-up messages: {e}");
            self.catch_ups.end(&key);
            return;
        }
        let next = self.catch_ups.on_stored(&key);
        self.continue_pull(&key, next);
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
        let joined = self.rooms.is_joined(request.room());
        if let Err(why) = self.serving.admit(peer, joined) {
            return self.respond(channel, Response::Refused(why));
        }
        tracing::debug!(%peer, room = %request.room(), "serving catch-up");
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
