//! The thread that owns the [`Store`]: the event loop hands it work through a
//! bounded queue and never waits for disk or crypto. Work is done in the order
//! it was handed over, so a `/history` after a `/send` sees the message;
//! consecutive writes are batched into one RocksDB write, encrypted in parallel.
//! Live gossip is verified here too, in the same batches: a received message
//! goes from the event loop to this thread once, not to a verifying thread
//! and then here (measured in BENCHMARKS.md, "What was fixed").

use std::thread::JoinHandle;

use palaver_proto::envelope::{Envelope, EnvelopeError};
use tokio::sync::mpsc;

use super::{Store, StoreError};

/// Most jobs waiting for the store; beyond this, callers are told it is busy.
pub const QUEUE: usize = 1024;
/// Most envelopes written in one batch.
const MAX_BATCH: usize = 256;

pub type PutDone = Box<dyn FnOnce(Result<Vec<bool>, StoreError>) + Send>;
type Job = Box<dyn FnOnce(&Store) + Send>;
/// Judges an opened (verified) envelope: what to store, and who hears the result.
type Decide =
    Box<dyn FnOnce(Result<Envelope, EnvelopeError>) -> Option<(Envelope, PutDone)> + Send>;

/// Work for the store thread: writes, which are batched, and jobs.
enum Op {
    Write(Write),
    Job(Job),
}

/// The store's queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the history store is busy")]
pub struct Busy;

/// A cheap handle to the store thread.
#[derive(Clone)]
pub struct StoreHandle {
    tx: mpsc::Sender<Op>,
}

impl std::fmt::Debug for StoreHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreHandle").finish_non_exhaustive()
    }
}

impl StoreHandle {
    /// Whether the queue is full (the event loop is its only writer, so a
    /// `false` here means the next call succeeds).
    pub fn is_full(&self) -> bool {
        self.tx.capacity() == 0
    }

    /// Stores verified envelopes; `done` learns which were new. Never waits.
    pub fn put(
        &self,
        envelopes: Vec<Envelope>,
        done: impl FnOnce(Result<Vec<bool>, StoreError>) + Send + 'static,
    ) -> Result<(), Busy> {
        self.tx
            .try_send(Op::Write(Write::Put {
                envelopes,
                done: Box::new(done),
            }))
            .map_err(|_| Busy)
    }

    /// Opens an envelope received live (checks its signature), hands the
    /// outcome to `decide`, and stores the envelope `decide` returns, telling
    /// its `done` whether it was new. Never waits.
    pub fn open_and_put(
        &self,
        bytes: Vec<u8>,
        decide: impl FnOnce(Result<Envelope, EnvelopeError>) -> Option<(Envelope, PutDone)>
        + Send
        + 'static,
    ) -> Result<(), Busy> {
        self.tx
            .try_send(Op::Write(Write::Open {
                bytes,
                decide: Box::new(decide),
            }))
            .map_err(|_| Busy)
    }

    /// Runs `job` on the store thread, after everything handed over before. Never waits.
    pub fn run(&self, job: impl FnOnce(&Store) + Send + 'static) -> Result<(), Busy> {
        self.tx.try_send(Op::Job(Box::new(job))).map_err(|_| Busy)
    }
}

/// Starts the store thread. It ends (closing the store) once every handle is gone.
pub fn spawn(store: Store) -> std::io::Result<(StoreHandle, JoinHandle<()>)> {
    let (tx, rx) = mpsc::channel(QUEUE);
    let thread = std::thread::Builder::new()
        .name("store".into())
        .spawn(move || serve(store, rx))?;
    Ok((StoreHandle { tx }, thread))
}

fn serve(store: Store, mut rx: mpsc::Receiver<Op>) {
    let mut next = None;
    loop {
        let op = match next.take() {
            Some(op) => op,
            None => match rx.blocking_recv() {
                Some(op) => op,
                None => break,
            },
        };
        let first = match op {
            Op::Write(write) => write,
            Op::Job(job) => {
                job(&store);
                continue;
            }
        };
        // Writes and live envelopes queued together go in one batch; a job
        // waits for the batch, so work stays in the order it was handed over.
        let mut count = first.len();
        let mut writes = vec![first];
        while count < MAX_BATCH {
            let Ok(op) = rx.try_recv() else { break };
            match op {
                Op::Write(write) => {
                    count += write.len();
                    writes.push(write);
                }
                job @ Op::Job(_) => {
                    next = Some(job);
                    break;
                }
            }
        }
        put_batch(&store, open_all(writes));
    }
    tracing::debug!("store closed");
}

/// What can go into one batch.
enum Write {
    Put {
        envelopes: Vec<Envelope>,
        done: PutDone,
    },
    Open {
        bytes: Vec<u8>,
        decide: Decide,
    },
}

impl Write {
    /// Envelopes it may store.
    fn len(&self) -> usize {
        match self {
            Self::Put { envelopes, .. } => envelopes.len(),
            Self::Open { .. } => 1,
        }
    }
}

/// Verifies the live envelopes among `writes` (on every core when there are
/// many) and lets each be judged, in order; returns what is to be stored.
fn open_all(writes: Vec<Write>) -> Vec<(Vec<Envelope>, PutDone)> {
    let bytes: Vec<Option<&[u8]>> = writes
        .iter()
        .map(|w| match w {
            Write::Open { bytes, .. } => Some(bytes.as_slice()),
            Write::Put { .. } => None,
        })
        .collect();
    let opened = super::parallel::map(&bytes, |b| b.map(Envelope::open));
    let mut batch = Vec::with_capacity(writes.len());
    for (write, opened) in writes.into_iter().zip(opened) {
        match write {
            Write::Put { envelopes, done } => batch.push((envelopes, done)),
            Write::Open { bytes, decide } => {
                // Every open was verified above; `unwrap_or_else` only keeps
                // the types honest.
                let envelope = opened.unwrap_or_else(|| Envelope::open(&bytes));
                if let Some((envelope, done)) = decide(envelope) {
                    batch.push((vec![envelope], done));
                }
            }
        }
    }
    batch
}

fn put_batch(store: &Store, batch: Vec<(Vec<Envelope>, PutDone)>) {
    if batch.is_empty() {
        return;
    }
    let all: Vec<Envelope> = batch.iter().flat_map(|(e, _)| e.iter().cloned()).collect();
    match store.put_messages(&all) {
        Ok(new) => {
            let mut new = new.into_iter();
            for (envelopes, done) in batch {
                done(Ok(new.by_ref().take(envelopes.len()).collect()));
            }
        }
        Err(e) => {
            tracing::warn!("cannot store messages: {e}");
            for (_, done) in batch {
                done(Err(e.clone()));
            }
        }
    }
}
