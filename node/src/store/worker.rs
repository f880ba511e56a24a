//! The thread that owns the [`Store`]: the event loop hands it typed [`Job`]s
//! through a bounded queue and never waits for disk or crypto; what the loop
//! must act on comes back as typed [`Done`]s on one bounded channel. Work is
//! done in the order it was handed over, so a `/history` after a `/send` sees
//! the message; consecutive writes are batched into one RocksDB write,
//! encrypted in parallel.
//!
//! Live gossip is verified here too, in the same batches: a received message
//! goes from the event loop to this thread once, not to a verifying thread
//! and then here (measured in BENCHMARKS.md, "What was fixed"). Its verdict
//! goes back before it is stored, so forwarding never waits for the disk.
//!
//! What the caller needs back with each answer (a reply channel, the pull an
//! answer belongs to…) rides along as a ticket whose types the caller names
//! ([`Tickets`]); this thread never looks inside.

use std::thread::JoinHandle;

use palaver_proto::RoomName;
use palaver_proto::envelope::Envelope;
use palaver_proto::history::reconcile::{ReconcileError, Step};
use palaver_proto::history::{MAX_FETCH, MessageRef, Refusal, Request, Response};
use tokio::sync::mpsc;

use super::{Page, SavedState, Sessions, Store, StoreError, is_chat};
use crate::validation::{self, AuthorRates, LiveCheck, Verdict};

/// Most jobs waiting for the store; beyond this, callers are told it is busy.
pub const QUEUE: usize = 1024;
/// Most answers waiting for the event loop. A job gives at most two; when
/// the loop lags this thread waits for it (it never waits for this thread).
const ANSWERS: usize = 2 * QUEUE;
/// Most envelopes written in one batch.
const MAX_BATCH: usize = 256;

/// The types of what rides along with each kind of job.
pub trait Tickets: 'static {
    /// A live gossip message (which one, from whom).
    type Live: Send;
    /// Someone waiting for a reply.
    type Reply: Send;
    /// A catch-up pull.
    type Pull: Send;
    /// A peer's catch-up request, to be answered.
    type Serve: Send;
    /// Someone waiting to hear that the nick and rooms are saved.
    type Saved: Send;
    /// What a lockbox is sealed for.
    type Seal: Send;
    /// A received lockbox (which message, from whom, in which room).
    type Lockbox: Send;
}

/// Work for the store thread: writes, which are batched, and queries.
enum Job<T: Tickets> {
    Write(Write<T>),
    Query(Query<T>),
}

/// A write, batched with the writes queued beside it.
enum Write<T: Tickets> {
    /// A live gossip message: open it, judge it, store it if it is chat.
    Live {
        bytes: Vec<u8>,
        check: LiveCheck,
        ticket: T::Live,
    },
    /// One of this node's own messages.
    Own {
        envelope: Envelope,
        ticket: T::Reply,
    },
}

/// Work that is not a batched write.
pub enum Query<T: Tickets> {
    /// A round of a reconciliation this node asked for: its first message
    /// (`answer` is `None`), or its reading of the other side's answer.
    Reconcile {
        room: RoomName,
        answer: Option<Vec<u8>>,
        ticket: T::Pull,
    },
    /// A page fetched by catch-up: verify it, store what is genuine and not
    /// dated after `not_after` (unix ms).
    Fetched {
        room: RoomName,
        asked: Vec<MessageRef>,
        envelopes: Vec<Vec<u8>>,
        not_after: u64,
        /// A private room's authors (see [`LiveCheck::authors`]).
        authors: Option<std::sync::Arc<std::collections::HashSet<libp2p::PeerId>>>,
        ticket: T::Pull,
    },
    /// A peer's catch-up request.
    Serve { request: Request, ticket: T::Serve },
    /// The newest `limit` messages of a room dated up to `not_after` (`/history`).
    Latest {
        room: RoomName,
        limit: usize,
        not_after: u64,
        ticket: T::Reply,
    },
    /// Drop a room's stored history.
    Forget { room: RoomName, ticket: T::Reply },
    /// Remember the nick and rooms.
    SaveState {
        state: SavedState,
        ticket: Option<T::Saved>,
    },
    /// Keep that sessions up to `until` may have been used.
    SaveSessions { until: u64 },
    /// Seal a signed rotation to every member's recipient (a lockbox).
    Seal {
        recipients: Vec<String>,
        plaintext: Vec<u8>,
        ticket: T::Seal,
    },
    /// Try to open a lockbox (age ciphertext) with this node's identity.
    OpenLockbox {
        lockbox: Vec<u8>,
        ticket: T::Lockbox,
    },
    /// Keep (or with `None` forget) a private room's record.
    SavePrivate {
        handle: RoomName,
        record: Option<Vec<u8>>,
        ticket: Option<T::Saved>,
    },
}

/// What the store thread finished, for the event loop.
pub enum Done<T: Tickets> {
    /// A live message was judged (chat is being stored next).
    Judged { ticket: T::Live, verdict: Verdict },
    /// A live chat message was stored (`Ok(true)`), was held already, or could not be stored.
    LiveStored {
        envelope: Envelope,
        new: Result<bool, StoreError>,
    },
    /// One of this node's own messages was stored: now it may go out.
    OwnStored {
        envelope: Envelope,
        ticket: T::Reply,
        result: Result<(), StoreError>,
    },
    /// A reconciliation round was computed: what to send next, what is missing.
    Reconciled {
        ticket: T::Pull,
        step: Result<Step, ReconcileError>,
    },
    /// A fetched page was verified; the new, genuine envelopes were stored.
    Fetched {
        ticket: T::Pull,
        /// What the fetch asked for.
        asked: Vec<MessageRef>,
        /// What was stored that was not held before.
        new: Vec<Envelope>,
        /// Every genuine envelope served (held before or not).
        served: Vec<MessageRef>,
        rejected: usize,
        error: Option<StoreError>,
    },
    Served {
        ticket: T::Serve,
        response: Response,
    },
    Latest {
        room: RoomName,
        ticket: T::Reply,
        page: Result<Page, StoreError>,
    },
    StateSaved {
        ticket: Option<T::Saved>,
        result: Result<(), StoreError>,
    },
    /// Sessions up to `until` are on disk as used (or not).
    SessionsSaved {
        until: u64,
        result: Result<(), StoreError>,
    },
    /// A room's history was dropped: how many messages went.
    Forgotten {
        room: RoomName,
        ticket: T::Reply,
        result: Result<usize, StoreError>,
    },
    /// A lockbox was sealed (age ciphertext).
    Sealed {
        ticket: T::Seal,
        result: Result<Vec<u8>, StoreError>,
    },
    /// A lockbox was opened (`None`: not sealed to this node).
    LockboxOpened {
        ticket: T::Lockbox,
        plaintext: Option<Vec<u8>>,
    },
    PrivateSaved {
        ticket: Option<T::Saved>,
        result: Result<(), StoreError>,
    },
}

impl<T: Tickets> std::fmt::Debug for Query<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Reconcile { .. } => "Query::Reconcile",
            Self::Fetched { .. } => "Query::Fetched",
            Self::Serve { .. } => "Query::Serve",
            Self::Latest { .. } => "Query::Latest",
            Self::SaveState { .. } => "Query::SaveState",
            Self::SaveSessions { .. } => "Query::SaveSessions",
            Self::Forget { .. } => "Query::Forget",
            Self::Seal { .. } => "Query::Seal",
            Self::OpenLockbox { .. } => "Query::OpenLockbox",
            Self::SavePrivate { .. } => "Query::SavePrivate",
        })
    }
}

impl<T: Tickets> std::fmt::Debug for Done<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Judged { .. } => "Done::Judged",
            Self::LiveStored { .. } => "Done::LiveStored",
            Self::OwnStored { .. } => "Done::OwnStored",
            Self::Reconciled { .. } => "Done::Reconciled",
            Self::Fetched { .. } => "Done::Fetched",
            Self::Served { .. } => "Done::Served",
            Self::Latest { .. } => "Done::Latest",
            Self::StateSaved { .. } => "Done::StateSaved",
            Self::SessionsSaved { .. } => "Done::SessionsSaved",
            Self::Forgotten { .. } => "Done::Forgotten",
            Self::Sealed { .. } => "Done::Sealed",
            Self::LockboxOpened { .. } => "Done::LockboxOpened",
            Self::PrivateSaved { .. } => "Done::PrivateSaved",
        })
    }
}

/// A cheap handle to the store thread.
pub struct StoreHandle<T: Tickets> {
    tx: mpsc::Sender<Job<T>>,
    sessions: Sessions,
}

impl<T: Tickets> Clone for StoreHandle<T> {
    fn clone(&self) -> Self {
        Self {
            tx: self.tx.clone(),
            sessions: self.sessions,
        }
    }
}

impl<T: Tickets> std::fmt::Debug for StoreHandle<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreHandle").finish_non_exhaustive()
    }
}

impl<T: Tickets> StoreHandle<T> {
    /// Where this run's sessions start, reserved on disk when the thread started.
    pub fn sessions(&self) -> Sessions {
        self.sessions
    }

    /// Whether the queue is full (the event loop is its only writer, so a
    /// `false` here means the next call succeeds).
    pub fn is_full(&self) -> bool {
        self.tx.capacity() == 0
    }

    /// Hands over a live gossip message, never waiting; a full queue (or a
    /// stopped thread) gives back what it was checked against and its ticket.
    pub fn live(
        &self,
        bytes: Vec<u8>,
        check: LiveCheck,
        ticket: T::Live,
    ) -> Result<(), (LiveCheck, T::Live)> {
        match self.tx.try_reserve() {
            Ok(permit) => {
                permit.send(Job::Write(Write::Live {
                    bytes,
                    check,
                    ticket,
                }));
                Ok(())
            }
            Err(_) => Err((check, ticket)),
        }
    }

    /// Hands over one of this node's own messages, never waiting; a full
    /// queue (or a stopped thread) gives back its ticket.
    pub fn own(&self, envelope: Envelope, ticket: T::Reply) -> Result<(), T::Reply> {
        match self.tx.try_reserve() {
            Ok(permit) => {
                permit.send(Job::Write(Write::Own { envelope, ticket }));
                Ok(())
            }
            Err(_) => Err(ticket),
        }
    }

    /// Hands over a query, never waiting; a full queue (or a stopped
    /// thread) gives it back.
    pub fn query(&self, query: Query<T>) -> Result<(), Query<T>> {
        match self.tx.try_reserve() {
            Ok(permit) => {
                permit.send(Job::Query(query));
                Ok(())
            }
            Err(_) => Err(query),
        }
    }
}

/// A started store thread: the handle to give it work, where its answers
/// come, and the thread itself.
pub type Spawned<T> = (StoreHandle<T>, mpsc::Receiver<Done<T>>, JoinHandle<()>);

/// Starts the store thread. It ends (closing the store) once every handle is
/// gone; its answers come on the returned receiver.
/// Live chat beyond `author_rate` messages a second from one author in one
/// room is ignored ([`AuthorRates`]).
///
/// Before anything else, the sessions of this run are reserved on disk (one
/// small write, before the event loop exists): the first payload of the run
/// is already above every session an earlier run used.
pub fn spawn<T: Tickets>(store: Store, author_rate: u32) -> std::io::Result<Spawned<T>> {
    let sessions = store.start_sessions(super::unix_ms(), crate::rooms::SESSION_BLOCK);
    let (tx, rx) = mpsc::channel(QUEUE);
    let (done_tx, done_rx) = mpsc::channel(ANSWERS);
    let thread = std::thread::Builder::new()
        .name("store".into())
        .spawn(move || serve(&store, author_rate, rx, &done_tx))?;
    Ok((StoreHandle { tx, sessions }, done_rx, thread))
}

/// Hands an answer to the event loop; nobody to hand it to means the node is
/// stopping, and it is dropped.
fn answer<T: Tickets>(done: &mpsc::Sender<Done<T>>, d: Done<T>) {
    let _ = done.blocking_send(d);
}

fn serve<T: Tickets>(
    store: &Store,
    author_rate: u32,
    mut rx: mpsc::Receiver<Job<T>>,
    done: &mpsc::Sender<Done<T>>,
) {
    let mut next = None;
    let mut rates = AuthorRates::new(author_rate);
    loop {
        let job = match next.take() {
            Some(job) => job,
            None => match rx.blocking_recv() {
                Some(job) => job,
                None => break,
            },
        };
        let first = match job {
            Job::Write(write) => write,
            Job::Query(query) => {
                answer(done, run(store, query));
                continue;
            }
        };
        // Writes queued together go in one batch; a query waits for the
        // batch, so work stays in the order it was handed over.
        let mut writes = vec![first];
        while writes.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(Job::Write(write)) => writes.push(write),
                Ok(query) => {
                    next = Some(query);
                    break;
                }
                Err(_) => break,
            }
        }
        write_batch(store, judge_live(writes, &mut rates, done), done);
    }
    tracing::debug!("store closed");
}

/// An envelope to write, and whom to tell.
enum Stored<T: Tickets> {
    Live(Envelope),
    Own(Envelope, T::Reply),
}

/// Opens and judges the live messages among `writes` (on every core when
/// there are many), sending each verdict at once; returns what is to be
/// stored, in order.
fn judge_live<T: Tickets>(
    writes: Vec<Write<T>>,
    rates: &mut AuthorRates,
    done: &mpsc::Sender<Done<T>>,
) -> Vec<Stored<T>> {
    let bytes: Vec<Option<&[u8]>> = writes
        .iter()
        .map(|w| match w {
            Write::Live { bytes, .. } => Some(bytes.as_slice()),
            Write::Own { .. } => None,
        })
        .collect();
    let opened = super::parallel::map(&bytes, |b| b.map(Envelope::open));
    let mut batch = Vec::with_capacity(writes.len());
    for (write, opened) in writes.into_iter().zip(opened) {
        match (write, opened) {
            (Write::Own { envelope, ticket }, _) => batch.push(Stored::Own(envelope, ticket)),
            (
                Write::Live {
                    bytes,
                    check,
                    ticket,
                },
                opened,
            ) => {
                // Every live write was opened above; `unwrap_or_else` only
                // keeps the types honest.
                let opened = opened.unwrap_or_else(|| Envelope::open(&bytes));
                let mut verdict = validation::live(&check, opened);
                if let Verdict::Accept(envelope) = &verdict
                    && is_chat(envelope)
                    && !rates.allow(envelope.author(), &check.room, check.received_ms)
                {
                    verdict = Verdict::Excess;
                }
                if let Verdict::Accept(envelope) = &verdict
                    && is_chat(envelope)
                {
                    batch.push(Stored::Live(envelope.clone()));
                }
                answer(done, Done::Judged { ticket, verdict });
            }
        }
    }
    batch
}

fn write_batch<T: Tickets>(store: &Store, batch: Vec<Stored<T>>, done: &mpsc::Sender<Done<T>>) {
    if batch.is_empty() {
        return;
    }
    let all: Vec<Envelope> = batch
        .iter()
        .map(|s| match s {
            Stored::Live(e) | Stored::Own(e, _) => e.clone(),
        })
        .collect();
    let result = store.put_messages(&all);
    if let Err(e) = &result {
        tracing::warn!("cannot store messages: {e}");
    }
    for (i, stored) in batch.into_iter().enumerate() {
        let new = match &result {
            Ok(flags) => Ok(flags.get(i).copied().unwrap_or(false)),
            Err(e) => Err(e.clone()),
        };
        answer(
            done,
            match stored {
                Stored::Live(envelope) => Done::LiveStored { envelope, new },
                Stored::Own(envelope, ticket) => Done::OwnStored {
                    envelope,
                    ticket,
                    result: new.map(|_| ()),
                },
            },
        );
    }
}

/// Does a query.
fn run<T: Tickets>(store: &Store, query: Query<T>) -> Done<T> {
    match query {
        Query::Reconcile {
            room,
            answer,
            ticket,
        } => Done::Reconciled {
            ticket,
            step: match answer {
                None => store.reconcile_start(&room),
                Some(answer) => store.reconcile_step(&room, &answer),
            },
        },
        Query::Fetched {
            room,
            asked,
            envelopes,
            not_after,
            authors,
            ticket,
        } => {
            let (genuine, rejected) =
                validation::fetched_page(&room, &asked, &envelopes, authors.as_deref());
            let served: Vec<MessageRef> = genuine.iter().map(super::message_ref).collect();
            // Dated too far ahead: not the server's fault (its author signed
            // it), but not kept either, so that no one can bury history
            // under the future or push this node's clock.
            let genuine: Vec<Envelope> = genuine
                .into_iter()
                .filter(|e| e.payload().ts <= not_after)
                .collect();
            let (new, error) = match store.put_messages(&genuine) {
                Ok(flags) => (
                    genuine
                        .into_iter()
                        .zip(flags)
                        .filter_map(|(e, new)| new.then_some(e))
                        .collect(),
                    None,
                ),
                Err(e) => (Vec::new(), Some(e)),
            };
            Done::Fetched {
                ticket,
                asked,
                new,
                served,
                rejected,
                error,
            }
        }
        Query::Serve { request, ticket } => Done::Served {
            ticket,
            response: answer_request(store, request),
        },
        Query::Latest {
            room,
            limit,
            not_after,
            ticket,
        } => Done::Latest {
            page: store.latest(&room, limit, not_after),
            room,
            ticket,
        },
        Query::Forget { room, ticket } => Done::Forgotten {
            result: store.forget(&room),
            room,
            ticket,
        },
        Query::SaveState { state, ticket } => Done::StateSaved {
            ticket,
            result: store.save_state(&state),
        },
        Query::SaveSessions { until } => Done::SessionsSaved {
            until,
            result: store.save_sessions(until),
        },
        Query::Seal {
            recipients,
            plaintext,
            ticket,
        } => Done::Sealed {
            ticket,
            result: Store::seal_lockbox(&recipients, &plaintext),
        },
        Query::OpenLockbox { lockbox, ticket } => Done::LockboxOpened {
            ticket,
            plaintext: store.open_lockbox(&lockbox),
        },
        Query::SavePrivate {
            handle,
            record,
            ticket,
        } => Done::PrivateSaved {
            ticket,
            result: store.save_private(&handle, record.as_deref()),
        },
    }
}

/// The answer to a peer's catch-up request, within the protocol's limits.
fn answer_request(store: &Store, request: Request) -> Response {
    match request {
        Request::Reconcile { room, message } => match store.reconcile_answer(&room, &message) {
            Ok(answer) => Response::Reconcile(answer),
            Err(e) => {
                tracing::debug!(%room, "cannot answer a reconciliation message: {e}");
                Response::Refused(Refusal::Unavailable)
            }
        },
        Request::Fetch { room, refs } => {
            let refs = &refs[..refs.len().min(MAX_FETCH)];
            match store.fetch(&room, refs) {
                Ok(envelopes) => {
                    Response::Envelopes(envelopes.iter().map(|e| e.as_bytes().to_vec()).collect())
                }
                Err(_) => Response::Refused(Refusal::Unavailable),
            }
        }
    }
}
