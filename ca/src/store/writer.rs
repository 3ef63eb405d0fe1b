//! The single writer: group commit.
//!
//! Request handlers send their changes to one writer thread. It takes every
//! change waiting in its queue (up to [`MAX_BATCH`]), applies them in one
//! transaction, commits once, and only then answers each sender. Durability
//! thus costs one disk sync per batch, and the more requests arrive at once,
//! the more each sync carries.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, watch};

use super::change::{audit_head, commit, Applied, Change, Outcome, AUDIT_HEAD};
use super::records::RevocationEvent;
use super::{Store, StoreError, Table};

/// Receives the revocation events of each commit, in commit (and so
/// sequence) order, before the changes' senders are answered.
pub type EventSink = mpsc::UnboundedSender<Vec<RevocationEvent>>;

/// Most changes in one commit.
pub const MAX_BATCH: usize = 512;
/// Most jobs waiting for the writer; senders wait beyond that.
pub const QUEUE_DEPTH: usize = 8192;

struct Job {
    changes: Vec<Change>,
    reply: oneshot::Sender<Result<Vec<Outcome>, StoreError>>,
}

/// A handle to the writer thread. Cloning it is cheap; the thread stops
/// when the last handle is dropped.
#[derive(Clone)]
pub struct Writer {
    tx: mpsc::Sender<Job>,
    audit: Arc<watch::Sender<u64>>,
}

impl Writer {
    /// Starts the writer thread over `store`. Revocation events of each
    /// commit go to `events`, in order: whether or not the request that
    /// caused them is still waiting, every committed revocation is published.
    pub fn start(store: Arc<dyn Store>, events: Option<EventSink>) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
        let head = audit_head(
            store
                .get(Table::Meta, AUDIT_HEAD.as_bytes())
                .map_err(std::io::Error::other)?,
        )
        .map_err(std::io::Error::other)?
        .0;
        let audit = Arc::new(watch::Sender::new(head));
        let sender = audit.clone();
        std::thread::Builder::new()
            .name("agentca-store-writer".into())
            .spawn(move || run(&*store, rx, events, &sender))?;
        Ok(Self { tx, audit })
    }

    /// The sequence number of the last committed audit event, updated after
    /// each commit that appends one.
    pub fn audit_head(&self) -> watch::Receiver<u64> {
        self.audit.subscribe()
    }

    /// Applies one change; returns once it is durable (or refused).
    pub async fn apply(&self, change: Change) -> Result<Outcome, StoreError> {
        let mut outcomes = self.apply_all(vec![change]).await?;
        Ok(outcomes.pop().unwrap_or(Ok(super::change::Applied::Done)))
    }

    /// Applies `changes` in order, in the same commit; returns once they are
    /// durable, with one outcome per change.
    pub async fn apply_all(&self, changes: Vec<Change>) -> Result<Vec<Outcome>, StoreError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Job { changes, reply })
            .await
            .map_err(|_| StoreError::WriterStopped)?;
        rx.await.map_err(|_| StoreError::WriterStopped)?
    }
}

fn run(
    store: &dyn Store,
    mut rx: mpsc::Receiver<Job>,
    events: Option<EventSink>,
    audit: &watch::Sender<u64>,
) {
    while let Some(first) = rx.blocking_recv() {
        let mut jobs = vec![first];
        let mut count = jobs[0].changes.len();
        while count < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => {
                    count += job.changes.len();
                    jobs.push(job);
                }
                Err(_) => break,
            }
        }
        let mut sizes = Vec::with_capacity(jobs.len());
        let mut replies = Vec::with_capacity(jobs.len());
        let mut changes = Vec::with_capacity(count);
        for job in jobs {
            sizes.push(job.changes.len());
            replies.push(job.reply);
            changes.extend(job.changes);
        }
        match commit(store, &changes) {
            Ok(outcomes) => {
                crate::metrics::global().observe_committed(&changes, &outcomes);
                // This thread appends every audit event, so it can count
                // them: an Audit change always appends one, an Audited one
                // when its change applied.
                let appended = changes
                    .iter()
                    .zip(&outcomes)
                    .filter(|(c, o)| match c {
                        Change::Audit(_) => true,
                        Change::Audited { .. } => o.is_ok(),
                        _ => false,
                    })
                    .count() as u64;
                if appended > 0 {
                    audit.send_modify(|head| *head += appended);
                }
                if let Some(sink) = &events {
                    let revoked: Vec<RevocationEvent> = outcomes
                        .iter()
                        .filter_map(|o| match o {
                            Ok(Applied::Revoked(summary)) => Some(summary.events.iter().cloned()),
                            _ => None,
                        })
                        .flatten()
                        .collect();
                    if !revoked.is_empty() {
                        // Nobody listening means the CA is shutting down.
                        let _ = sink.send(revoked);
                    }
                }
                let mut outcomes = outcomes.into_iter();
                for (size, reply) in sizes.into_iter().zip(replies) {
                    // A sender that gave up (its request timed out) is not an
                    // error: its change is committed all the same.
                    let _ = reply.send(Ok(outcomes.by_ref().take(size).collect()));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, changes = changes.len(), "store commit failed");
                for reply in replies {
                    let _ = reply.send(Err(e.clone()));
                }
            }
        }
    }
}
