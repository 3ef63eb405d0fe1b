//! The single writer: group commit.
//!
//! Request handlers send their jobs to one writer thread. It takes every
//! job waiting in its queue (up to [`MAX_BATCH`]), applies them in one
//! transaction, commits once, and only then answers each sender. Durability
//! thus costs one disk sync per batch, and the more requests arrive at once,
//! the more each sync carries.
//!
//! The writer knows nothing of what a job means: a [`Job`] applies itself
//! to a transaction and yields an outcome, and an observer sees each
//! committed batch before any sender is answered.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use super::{Store, StoreError, WriteTxn};

/// Most jobs in one commit.
pub const MAX_BATCH: usize = 512;
/// Most requests waiting for the writer; senders wait beyond that.
pub const QUEUE_DEPTH: usize = 8192;

/// Work for the writer: writes made inside a transaction. `apply` may run
/// more than once (a backend may retry a transaction, and a failed batch
/// is not applied at all), so it must depend only on the transaction.
pub trait Job: Send + 'static {
    /// What applying it says (done, or refused with nothing written).
    type Outcome: Send + 'static;
    /// Reads and writes through `txn`.
    fn apply(&self, txn: &mut dyn WriteTxn) -> Result<Self::Outcome, StoreError>;
    /// The keys `apply` will read, as far as known before reading anything:
    /// a hint ([`WriteTxn::prefetch`]) that lets a batch read them at once.
    fn reads(&self, keys: &mut Vec<(super::Table, Vec<u8>)>) {
        let _ = keys;
    }
}

/// Sees each committed batch, in commit order, before its senders are
/// answered.
pub type Observer<J> = Box<dyn FnMut(&[J], &[<J as Job>::Outcome]) + Send>;

struct Request<J: Job> {
    jobs: Vec<J>,
    reply: oneshot::Sender<Result<Vec<J::Outcome>, StoreError>>,
}

/// A handle to the writer thread. Cloning it is cheap; the thread stops
/// when the last handle is dropped.
pub struct Writer<J: Job> {
    tx: mpsc::Sender<Request<J>>,
}

impl<J: Job> Clone for Writer<J> {
    fn clone(&self) -> Self {
        Self {
            tx: self.tx.clone(),
        }
    }
}

impl<J: Job> Writer<J> {
    /// Starts the writer thread over `store`; `observer` sees every
    /// committed batch.
    pub fn start(store: Arc<dyn Store>, observer: Observer<J>) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
        std::thread::Builder::new()
            .name("agentca-store-writer".into())
            .spawn(move || run(&*store, rx, observer))?;
        Ok(Self { tx })
    }

    /// Applies one job; returns once it is durable (or refused).
    pub async fn apply(&self, job: J) -> Result<J::Outcome, StoreError> {
        let mut outcomes = self.apply_all(vec![job]).await?;
        outcomes.pop().ok_or(StoreError::WriterStopped)
    }

    /// Applies `jobs` in order, in the same commit; returns once they are
    /// durable, with one outcome per job.
    pub async fn apply_all(&self, jobs: Vec<J>) -> Result<Vec<J::Outcome>, StoreError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Request { jobs, reply })
            .await
            .map_err(|_| StoreError::WriterStopped)?;
        rx.await.map_err(|_| StoreError::WriterStopped)?
    }
}

/// Applies `jobs` in order in one durable commit, returning one outcome
/// per job. A store error fails the whole batch and writes nothing.
pub fn commit<J: Job>(store: &dyn Store, jobs: &[J]) -> Result<Vec<J::Outcome>, StoreError> {
    let mut outcomes = Vec::with_capacity(jobs.len());
    store.write(&mut |txn| {
        outcomes.clear();
        if txn.prefetches() {
            let mut reads = Vec::new();
            for job in jobs {
                job.reads(&mut reads);
            }
            txn.prefetch(&reads)?;
        }
        for job in jobs {
            outcomes.push(job.apply(txn)?);
        }
        Ok(())
    })?;
    Ok(outcomes)
}

fn run<J: Job>(store: &dyn Store, mut rx: mpsc::Receiver<Request<J>>, mut observer: Observer<J>) {
    while let Some(first) = rx.blocking_recv() {
        let mut requests = vec![first];
        let mut count = requests[0].jobs.len();
        while count < MAX_BATCH {
            match rx.try_recv() {
                Ok(request) => {
                    count += request.jobs.len();
                    requests.push(request);
                }
                Err(_) => break,
            }
        }
        let mut sizes = Vec::with_capacity(requests.len());
        let mut replies = Vec::with_capacity(requests.len());
        let mut jobs = Vec::with_capacity(count);
        for request in requests {
            sizes.push(request.jobs.len());
            replies.push(request.reply);
            jobs.extend(request.jobs);
        }
        match commit(store, &jobs) {
            Ok(outcomes) => {
                observer(&jobs, &outcomes);
                let mut outcomes = outcomes.into_iter();
                for (size, reply) in sizes.into_iter().zip(replies) {
                    // A sender that gave up (its request timed out) is not an
                    // error: its job is committed all the same.
                    let _ = reply.send(Ok(outcomes.by_ref().take(size).collect()));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, jobs = jobs.len(), "store commit failed");
                for reply in replies {
                    let _ = reply.send(Err(e.clone()));
                }
            }
        }
    }
}
