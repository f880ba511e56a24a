//! History in the event loop: showing live chat once it is stored (it is
//! verified and stored on the store thread, see `on_gossip_message`),
//! catch-up with other members (`/palaver/history/1`) both ways, and
//! answering `/history`. Disk and crypto run on the store thread; what the
//! loop needs back comes as a [`Done`].

use std::collections::HashSet;
use std::time::Instant;

use libp2p::PeerId;
use libp2p::request_response::{self, OutboundRequestId, ResponseChannel};
use palaver_proto::envelope::{Envelope, hex_id};
use palaver_proto::history::{MAX_FETCH, MAX_INVENTORY, MessageRef, Refusal, Request, Response};
use palaver_proto::line::{ChatMessage, Event, Reply};
use palaver_proto::wire::Body;
use palaver_proto::{ErrorCode, RoomName};

use super::{EventLoop, Responder};
use crate::store::{SavedState, is_history, message_ref, parallel};

/// Most catch-up requests answered at once; more are refused as busy.
pub(super) const MAX_SERVING: usize = 8;
/// Most catch-up requests from one peer answered at once, so one peer cannot
/// take every slot (nor keep the store thread from live messages).
const MAX_SERVING_PER_PEER: usize = 2;
/// Application-score cost of one envelope that failed verification in catch-up.
const BAD_ENVELOPE_PENALTY: f64 = 1.0;
/// Most peers whose catch-up penalties are remembered.
const MAX_PENALISED: usize = 4096;

/// Work the store thread finished that the loop must act on.
pub(super) enum Done {
    /// A live chat message was stored (`Ok(true)`), was already held, or could not be stored.
    Stored {
        envelope: Envelope,
        new: Result<bool, String>,
    },
    /// One of this node's own messages was stored: now it may go out.
    OwnStored {
        envelope: Envelope,
        reply: Responder,
        result: Result<(), String>,
    },
    /// Which references of an inventory page this node lacks.
    Missing {
        key: (PeerId, RoomName),
        missing: Result<Vec<MessageRef>, String>,
    },
    /// A fetched page was verified; the new, genuine envelopes were stored.
    Fetched {
        key: (PeerId, RoomName),
        new: Vec<Envelope>,
        rejected: usize,
        error: Option<String>,
    },
    /// The answer to a peer's catch-up request.
    Serve {
        peer: PeerId,
        channel: ResponseChannel<Response>,
        response: Response,
    },
}

impl EventLoop {
    pub(super) fn on_done(&mut self, done: Done) {
        match done {
            Done::Stored { envelope, new } => self.on_stored(envelope, new),
            Done::OwnStored {
                envelope,
                reply,
                result,
            } => self.on_own_stored(envelope, reply, result),
            Done::Missing { key, missing } => self.on_missing(key, missing),
            Done::Fetched {
                key,
                new,
                rejected,
                error,
            } => self.on_fetched(key, new, rejected, error),
            Done::Serve {
                peer,
                channel,
                response,
            } => {
                self.serving = self.serving.saturating_sub(1);
                if let Some(n) = self.serving_by_peer.get_mut(&peer) {
                    *n = n.saturating_sub(1);
                    if *n == 0 {
                        self.serving_by_peer.remove(&peer);
                    }
                }
                let _ = self
                    .swarm
                    .behaviour_mut()
                    .history
                    .send_response(channel, response);
            }
        }
    }

    // ---- live messages ----

    /// A live chat message was verified and stored (or not): it is shown
    /// only once stored.
    fn on_stored(&mut self, envelope: Envelope, new: Result<bool, String>) {
        match new {
            Ok(new) => self.show_live(&envelope, new),
            Err(e) => {
                // Never shown unless stored; catch-up brings it back later.
                tracing::warn!("cannot store a message, so it is not shown: {e}");
                self.show_live(&envelope, false);
            }
        }
    }

    /// Hands a live payload to the room state. A chat message already held
    /// (it came by catch-up first) only counts as a sign of life.
    pub(super) fn show_live(&mut self, envelope: &Envelope, show: bool) {
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
            if let Event::Joined { room, peer_id, .. } = &event
                && let Ok(peer) = peer_id.parse::<PeerId>()
            {
                self.start_catch_up(peer, &room.clone());
            }
            self.emit(event);
        }
    }

    // ---- own messages ----

    /// Stores one of this node's own chat messages; it is published, and
    /// `sent` replied, once it is stored.
    pub(super) fn store_own(&mut self, envelope: Envelope, reply: Responder) {
        if self.store.is_full() {
            let _ = reply.send(Reply::error(
                ErrorCode::Busy,
                "not sent: the history store is busy; try again",
            ));
            return;
        }
        let done = self.done_tx.clone();
        let stored = envelope.clone();
        let queued = self.store.put(vec![stored], move |result| {
            let result = result.map(|_| ()).map_err(|e| e.to_string());
            let _ = done.send(Done::OwnStored {
                envelope,
                reply,
                result,
            });
        });
        match queued {
            Ok(()) => self.storing_own += 1,
            Err(busy) => tracing::warn!("cannot send: {busy}"),
        }
    }

    fn on_own_stored(&mut self, envelope: Envelope, reply: Responder, result: Result<(), String>) {
        self.storing_own = self.storing_own.saturating_sub(1);
        let room = envelope.payload().room.clone();
        let id = envelope.id();
        if let Err(e) = result {
            let _ = reply.send(Reply::error(
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
        let _ = reply.send(Reply::Sent { room, id, peers });
    }

    // ---- /history ----

    pub(super) fn history(&mut self, room: RoomName, limit: u16, reply: Responder) {
        let (tx, rx) = tokio::sync::oneshot::channel::<Reply>();
        let job = move |store: &crate::store::Store| {
            let r = match store.latest(&room, usize::from(limit)) {
                Ok(page) => Reply::History {
                    messages: page
                        .messages
                        .iter()
                        .filter_map(|e| chat_message(e, false))
                        .collect(),
                    room,
                    corrupt: page.corrupt,
                },
                Err(e) => Reply::error(ErrorCode::Storage, format!("cannot read history: {e}")),
            };
            let _ = tx.send(r);
        };
        if self.store.run(job).is_err() {
            let _ = reply.send(Reply::error(
                ErrorCode::Busy,
                "the history store is busy; try again",
            ));
            return;
        }
        tokio::spawn(async move {
            let r = rx
                .await
                .unwrap_or_else(|_| Reply::error(ErrorCode::Internal, "the history store stopped"));
            let _ = reply.send(r);
        });
    }

    /// Remembers the nick and rooms for the next start, then sends `then`
    /// (the reply to the command that changed them) once they are stored.
    /// If the store is busy the reply goes now and the save is retried on
    /// the next tick (and at shutdown).
    pub(super) fn save_state(&mut self, then: Option<(Reply, Responder)>) {
        let state = SavedState {
            nick: Some(self.nick.clone()),
            rooms: self.rooms.joined().cloned().collect(),
        };
        if self.store.is_full() {
            tracing::warn!("the history store is busy; the rooms and nick will be saved later");
            self.state_unsaved = true;
            if let Some((reply, responder)) = then {
                let _ = responder.send(reply);
            }
            return;
        }
        self.state_unsaved = false;
        let _ = self.store.run(move |store| {
            if let Err(e) = store.save_state(&state) {
                tracing::warn!("cannot remember the rooms and nick: {e}");
            }
            if let Some((reply, responder)) = then {
                let _ = responder.send(reply);
            }
        });
    }

    // ---- catch-up: pulling ----

    /// Asks `peer` (a member of `room`) for what this node lacks, unless a
    /// pull is under way or was made just now.
    pub(super) fn start_catch_up(&mut self, peer: PeerId, room: &RoomName) {
        if peer == self.local || self.shutdown.is_some() || !self.rooms.is_joined(room) {
            return;
        }
        if let Some(request) = self.catch_ups.start(peer, room, Instant::now()) {
            tracing::debug!(%peer, %room, "catching up");
            self.send_history_request(peer, request);
        }
    }

    /// Pulls refused as busy earlier whose time has come.
    pub(super) fn retry_catch_ups(&mut self, now: Instant) {
        for (peer, room) in self.catch_ups.due_retries(now) {
            if self.swarm.is_connected(&peer) {
                self.start_catch_up(peer, &room);
            }
        }
    }

    /// Pulls what was shed under load from the peers that sent it, once the
    /// load has eased: few live messages waiting, and room in the store's queue.
    pub(super) fn recover_shed(&mut self, now: Instant) {
        if self.verifying > super::MAX_VERIFYING / 4 || self.store.is_full() {
            return;
        }
        let (swarm, rooms) = (&self.swarm, &self.rooms);
        let started = self.catch_ups.start_shed(now, |(peer, room)| {
            swarm.is_connected(peer) && rooms.is_joined(room)
        });
        for (peer, request) in started {
            tracing::debug!(%peer, room = %request.room(), "pulling what was shed under load");
            self.send_history_request(peer, request);
        }
    }

    /// A room member (re)connected: catch up in every room it is in.
    pub(super) fn catch_up_with_member(&mut self, peer: PeerId) {
        for room in self.rooms.rooms_of_member(&peer) {
            self.start_catch_up(peer, &room);
        }
    }

    fn send_history_request(&mut self, peer: PeerId, request: Request) {
        let room = request.room().clone();
        let id: OutboundRequestId = self
            .swarm
            .behaviour_mut()
            .history
            .send_request(&peer, request);
        self.catch_ups.sent(id, peer, room);
    }

    fn continue_pull(&mut self, key: &(PeerId, RoomName), next: Option<Request>) {
        match next {
            Some(request) => self.send_history_request(key.0, request),
            None => tracing::debug!(peer = %key.0, room = %key.1, "caught up"),
        }
    }

    pub(super) fn on_history(&mut self, event: request_response::Event<Request, Response>) {
        use request_response::{Event as E, Message};
        match event {
            E::Message {
                peer,
                message:
                    Message::Request {
                        request, channel, ..
                    },
                ..
            } => self.serve(peer, request, channel),
            E::Message {
                peer,
                message:
                    Message::Response {
                        request_id,
                        response,
                    },
                ..
            } => self.on_history_response(peer, request_id, response),
            E::OutboundFailure {
                peer,
                request_id,
                error,
                ..
            } => {
                tracing::debug!(%peer, "catch-up request failed: {error}");
                if let Some(key) = self.catch_ups.answered(&request_id) {
                    self.catch_ups.end(&key);
                }
            }
            E::InboundFailure { peer, error, .. } => {
                tracing::debug!(%peer, "catch-up request from a peer failed: {error}");
            }
            E::ResponseSent { .. } => {}
        }
    }

    fn on_history_response(&mut self, peer: PeerId, id: OutboundRequestId, response: Response) {
        let Some(key) = self.catch_ups.answered(&id) else {
            return;
        };
        match response {
            Response::Inventory { refs, more } => {
                if !self.catch_ups.on_inventory(&key, &refs, more) {
                    tracing::debug!(%peer, "catch-up inventory out of order; pull ended");
                    return;
                }
                let done = self.done_tx.clone();
                let room = key.1.clone();
                let job_key = key.clone();
                let queued = self.store.run(move |store| {
                    let missing = store.missing(&room, &refs).map_err(|e| e.to_string());
                    let _ = done.send(Done::Missing {
                        key: job_key,
                        missing,
                    });
                });
                if queued.is_err() {
                    self.catch_ups.end(&key);
                }
            }
            Response::Envelopes(envelopes) => {
                let Some(asked) = self.catch_ups.on_envelopes(&key) else {
                    tracing::debug!(%peer, "envelopes nobody asked for");
                    return;
                };
                let done = self.done_tx.clone();
                let job_key = key.clone();
                let queued = self.store.run(move |store| {
                    let (genuine, rejected) = verify_page(&job_key.1, &asked, &envelopes);
                    let (new, error) = match store.put_messages(&genuine) {
                        Ok(flags) => (
                            genuine
                                .into_iter()
                                .zip(flags)
                                .filter_map(|(e, new)| new.then_some(e))
                                .collect(),
                            None,
                        ),
                        Err(e) => (Vec::new(), Some(e.to_string())),
                    };
                    let _ = done.send(Done::Fetched {
                        key: job_key,
                        new,
                        rejected,
                        error,
                    });
                });
                if queued.is_err() {
                    self.catch_ups.end(&key);
                }
            }
            Response::Refused(Refusal::Busy) => {
                tracing::debug!(%peer, "catch-up refused as busy; will ask again");
                let jitter = super::super::unix_ms() ^ u64::from(self.local.to_bytes()[4]);
                self.catch_ups.busy(&key, Instant::now(), jitter);
            }
            Response::Refused(why) => {
                tracing::debug!(%peer, ?why, "catch-up refused");
                self.catch_ups.end(&key);
            }
        }
    }

    fn on_missing(&mut self, key: (PeerId, RoomName), missing: Result<Vec<MessageRef>, String>) {
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

    fn on_fetched(
        &mut self,
        key: (PeerId, RoomName),
        mut new: Vec<Envelope>,
        rejected: usize,
        error: Option<String>,
    ) {
        new.sort_by_key(message_ref);
        for envelope in &new {
            self.rooms.observe(&key.1, envelope.payload().ts);
            if let Some(m) = chat_message(envelope, true) {
                self.emit(Event::Message(m));
            }
        }
        if rejected > 0 {
            tracing::info!(peer = %key.0, rejected, "catch-up page held envelopes that are not genuine; pull ended");
            self.penalise(key.0, rejected as f64 * BAD_ENVELOPE_PENALTY);
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

    /// Lowers a peer's gossipsub application score (weight 10 per point).
    fn penalise(&mut self, peer: PeerId, points: f64) {
        if self.penalties.len() >= MAX_PENALISED && !self.penalties.contains_key(&peer) {
            self.penalties.clear();
        }
        let score = self.penalties.entry(peer).or_insert(0.0);
        *score -= points;
        let score = *score;
        self.swarm
            .behaviour_mut()
            .gossipsub
            .set_application_score(&peer, score);
    }

    // ---- catch-up: serving ----

    fn serve(&mut self, peer: PeerId, request: Request, channel: ResponseChannel<Response>) {
        let refuse = |this: &mut Self, channel, why| {
            let _ = this
                .swarm
                .behaviour_mut()
                .history
                .send_response(channel, Response::Refused(why));
        };
        // Only rooms this node is in: having left a room, it does not say
        // what it kept of it.
        if !self.rooms.is_joined(request.room()) {
            return refuse(self, channel, Refusal::Unavailable);
        }
        let by_peer = self.serving_by_peer.get(&peer).copied().unwrap_or(0);
        if self.serving >= MAX_SERVING || by_peer >= MAX_SERVING_PER_PEER {
            return refuse(self, channel, Refusal::Busy);
        }
        tracing::debug!(%peer, room = %request.room(), "serving catch-up");
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job = move |store: &crate::store::Store| {
            let response = match request {
                Request::Inventory {
                    room,
                    before,
                    limit,
                } => {
                    let limit = usize::from(limit).min(MAX_INVENTORY);
                    match store.inventory(&room, before.as_ref(), limit) {
                        Ok((refs, more)) => Response::Inventory { refs, more },
                        Err(_) => Response::Refused(Refusal::Unavailable),
                    }
                }
                Request::Fetch { room, refs } => {
                    let refs = &refs[..refs.len().min(MAX_FETCH)];
                    match store.fetch(&room, refs) {
                        Ok(envelopes) => Response::Envelopes(
                            envelopes.iter().map(|e| e.as_bytes().to_vec()).collect(),
                        ),
                        Err(_) => Response::Refused(Refusal::Unavailable),
                    }
                }
            };
            let _ = tx.send(response);
        };
        if self.store.run(job).is_err() {
            return refuse(self, channel, Refusal::Busy);
        }
        self.serving += 1;
        *self.serving_by_peer.entry(peer).or_insert(0) += 1;
        let done = self.done_tx.clone();
        tokio::spawn(async move {
            let response = rx.await.unwrap_or(Response::Refused(Refusal::Unavailable));
            let _ = done.send(Done::Serve {
                peer,
                channel,
                response,
            });
        });
    }
}

/// Checks a fetched page off the event loop (signatures on every core):
/// each envelope must be genuine, chat, of `room`, and one that was asked
/// for. Returns the genuine ones and how many were not.
fn verify_page(
    room: &RoomName,
    asked: &[MessageRef],
    envelopes: &[Vec<u8>],
) -> (Vec<Envelope>, usize) {
    let asked: HashSet<&MessageRef> = asked.iter().collect();
    let checked = parallel::map(envelopes, |bytes| {
        let envelope = Envelope::open(bytes).ok()?;
        let genuine = envelope.payload().room == *room
            && is_history(&envelope)
            && asked.contains(&message_ref(&envelope));
        genuine.then_some(envelope)
    });
    let total = checked.len();
    let mut seen = HashSet::new();
    let genuine: Vec<Envelope> = checked
        .into_iter()
        .flatten()
        .filter(|e| seen.insert(e.id_bytes()))
        .collect();
    let rejected = total - genuine.len();
    (genuine, rejected)
}

/// A stored or fetched chat envelope as the line protocol shows it.
pub(super) fn chat_message(envelope: &Envelope, replay: bool) -> Option<ChatMessage> {
    let p = envelope.payload();
    let Body::Chat(text) = &p.body else {
        return None;
    };
    Some(ChatMessage {
        room: p.room.clone(),
        id: hex_id(&envelope.id_bytes()),
        from: envelope.author().to_string(),
        nick: p.nick.clone(),
        text: text.clone(),
        ts: p.ts,
        replay,
    })
}
