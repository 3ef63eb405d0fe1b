//! Checkpoints: the state the store's handle shares with its flusher
//! thread, when a checkpoint begins, and the flusher thread, which writes
//! the layer of each checkpoint to redb in one durable transaction.
//!
//! Owns the checkpoint's state ([`FlushState`]) and the order of its locks.
//! Must not depend on the store's handle ([`super::RedbStore`]), on the
//! format of logged batches ([`super::batch`]) or on what the CA stores: a
//! checkpoint moves layers of bytes.

use std::sync::{Arc, Condvar, Mutex, MutexGuard, RwLock, RwLockReadGuard};
use std::time::{Duration, Instant};

use ::redb::{Database, Durability};

use super::layers::{self, empty_layer, Layer, Layers};
use super::{def, err, LogState, CHECKPOINT_BYTES, CHECKPOINT_INTERVAL, WAL_APPLIED};
use crate::store::{StoreError, Table};

/// Wait before the flusher tries a failed checkpoint again.
const RETRY: Duration = Duration::from_secs(1);

/// The error of a store whose flusher thread died.
fn flusher_stopped() -> StoreError {
    err("the store's flusher thread stopped; restart the CA")
}

/// A checkpoint: `layer` into redb, which then holds every batch up to
/// `covers`.
#[derive(Clone)]
struct Job {
    layer: Arc<Layer>,
    covers: u64,
}

#[derive(Default)]
struct FlushState {
    /// The checkpoint in progress; cleared when it is durable in redb.
    job: Option<Job>,
    /// Why its last attempt failed. While set, no batch is logged: redb
    /// latches I/O errors, so a failing checkpoint usually needs a restart.
    error: Option<StoreError>,
    /// Set if the flusher thread died: nothing is checkpointed any more.
    dead: bool,
    /// Set when the store closes.
    stop: bool,
}

/// What the store's handle and its flusher thread share.
pub(super) struct Shared {
    pub(super) db: Database,
    // One writer at a time: the log's order must be the commit order. Lock
    // order: `state`, then `layers` or `flush`, never the other way.
    state: Mutex<LogState>,
    pub(super) layers: RwLock<Layers>,
    flush: Mutex<FlushState>,
    /// Signalled when a job is handed over, finishes or fails, and on stop.
    flush_changed: Condvar,
}

impl Shared {
    /// The state of `db` and its log `state`, with no layer and no
    /// checkpoint in progress.
    pub(super) fn new(db: Database, state: LogState) -> Self {
        Self {
            db,
            state: Mutex::new(state),
            layers: RwLock::new(Layers {
                pending: empty_layer(),
                flushing: None,
            }),
            flush: Mutex::new(FlushState::default()),
            flush_changed: Condvar::new(),
        }
    }

    pub(super) fn layers(&self) -> RwLockReadGuard<'_, Layers> {
        layers::read(&self.layers)
    }

    fn flush_state(&self) -> MutexGuard<'_, FlushState> {
        self.flush.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, LogState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The reason no batch may be logged now, if there is one.
    pub(super) fn refusal(&self, state: &LogState) -> Result<(), StoreError> {
        state.check_replayed()?;
        if !state.checkpointed {
            return Err(err(
                "the store must be checkpointed after opening, before anything is written",
            ));
        }
        if let Some(e) = &state.poisoned {
            return Err(e.clone());
        }
        let flush = self.flush_state();
        if flush.dead {
            return Err(flusher_stopped());
        }
        if let Some(e) = &flush.error {
            return Err(err(format!(
                "redb cannot be checkpointed ({e}); the log holds every acknowledged change: restart the CA once the cause is fixed"
            )));
        }
        Ok(())
    }

    /// Makes redb hold every logged batch durably by itself, and empties
    /// the log.
    pub(super) fn checkpoint_locked(&self, state: &mut LogState) -> Result<(), StoreError> {
        state.check_replayed()?;
        self.wait_idle()?;
        self.start_checkpoint(state.next_seq - 1);
        self.wait_idle()?;
        // Every logged batch is now in redb's durable state: the log may go.
        // A crash before it is cleared is harmless: replay skips batches up
        // to `wal_applied`.
        for wal in &mut state.wals {
            wal.clear()?;
        }
        state.active = 0;
        state.last_checkpoint = Instant::now();
        state.checkpointed = true;
        Ok(())
    }

    /// Begins a checkpoint in the background. None may be in progress:
    /// the other segment, whose batches the last checkpoint made durable,
    /// takes the next batches.
    pub(super) fn begin_checkpoint(&self, state: &mut LogState) -> Result<(), StoreError> {
        let other = 1 - state.active;
        state.wals[other].clear()?;
        state.active = other;
        self.start_checkpoint(state.next_seq - 1);
        state.last_checkpoint = Instant::now();
        Ok(())
    }

    /// Whether logged batches wait for a checkpoint that is due.
    pub(super) fn checkpoint_due(&self, state: &LogState) -> bool {
        (state.last_checkpoint.elapsed() >= state.interval
            || state.wals[state.active].len() >= CHECKPOINT_BYTES)
            && state.checkpointed
            && state.poisoned.is_none()
            && self.layers().pending.iter().any(|t| !t.is_empty())
    }

    /// Waits until no checkpoint is in progress; fails if the one in
    /// progress has failed (the flusher keeps trying it).
    pub(super) fn wait_idle(&self) -> Result<(), StoreError> {
        let mut state = self.flush_state();
        loop {
            if state.job.is_none() {
                return Ok(());
            }
            if let Some(e) = &state.error {
                return Err(e.clone());
            }
            if state.dead {
                return Err(flusher_stopped());
            }
            state = self
                .flush_changed
                .wait(state)
                .unwrap_or_else(|p| p.into_inner());
        }
    }

    /// Tells the flusher thread to stop, after the checkpoint in progress
    /// if there is one.
    pub(super) fn stop_flusher(&self) {
        self.flush_state().stop = true;
        self.flush_changed.notify_all();
    }

    pub(super) fn busy(&self) -> bool {
        self.flush_state().job.is_some()
    }

    /// Moves the pending layer to the flusher, as a checkpoint covering
    /// batches up to `covers`. No checkpoint may be in progress.
    fn start_checkpoint(&self, covers: u64) {
        let layer = {
            let mut layers = self.layers.write().unwrap_or_else(|p| p.into_inner());
            let layer = Arc::new(std::mem::replace(&mut layers.pending, empty_layer()));
            layers.flushing = Some(layer.clone());
            layer
        };
        let mut state = self.flush_state();
        debug_assert!(state.job.is_none(), "one checkpoint at a time");
        state.job = Some(Job { layer, covers });
        self.flush_changed.notify_all();
    }

    /// The flusher thread: writes each checkpoint to redb, trying a failed
    /// one again every [`RETRY`] until it succeeds or the store closes.
    pub(super) fn flusher(&self) {
        // Should the thread die, whoever waits for it learns so.
        struct Died<'a>(&'a Shared);
        impl Drop for Died<'_> {
            fn drop(&mut self) {
                if std::thread::panicking() {
                    let mut state = self.0.flush_state();
                    state.dead = true;
                    self.0.flush_changed.notify_all();
                }
            }
        }
        let _died = Died(self);
        let mut state = self.flush_state();
        loop {
            let Some(job) = state.job.clone() else {
                if state.stop {
                    return;
                }
                let (next, waited) = self
                    .flush_changed
                    .wait_timeout(state, CHECKPOINT_INTERVAL)
                    .unwrap_or_else(|p| p.into_inner());
                state = next;
                if waited.timed_out() && state.job.is_none() && !state.stop {
                    // Idle: the writer begins checkpoints only when it
                    // writes, so the last batches of a burst would wait for
                    // the next one. Never wait for the writer here.
                    drop(state);
                    if let Ok(mut log) = self.state.try_lock() {
                        if self.checkpoint_due(&log) && !self.busy() {
                            if let Err(e) = self.begin_checkpoint(&mut log) {
                                tracing::error!(error = %e, "cannot begin a checkpoint");
                            }
                        }
                    }
                    state = self.flush_state();
                }
                continue;
            };
            drop(state);
            let result = write_layer(&self.db, &job.layer, job.covers);
            if result.is_ok() {
                // redb has it now: reads may go there.
                let mut layers = self.layers.write().unwrap_or_else(|p| p.into_inner());
                if layers
                    .flushing
                    .as_ref()
                    .is_some_and(|f| Arc::ptr_eq(f, &job.layer))
                {
                    layers.flushing = None;
                }
            }
            state = self.flush_state();
            match result {
                Ok(()) => {
                    state.job = None;
                    state.error = None;
                    self.flush_changed.notify_all();
                }
                Err(e) => {
                    tracing::error!(error = %e, covers = job.covers, "checkpoint failed; the batches are safe in the log; trying again");
                    state.error = Some(e);
                    self.flush_changed.notify_all();
                    if state.stop {
                        return;
                    }
                    state = self
                        .flush_changed
                        .wait_timeout(state, RETRY)
                        .unwrap_or_else(|p| p.into_inner())
                        .0;
                }
            }
        }
    }
}

/// Writes `layer` to redb in one durable transaction that also records
/// `covers` as the last batch redb holds.
fn write_layer(db: &Database, layer: &Layer, covers: u64) -> Result<(), StoreError> {
    let mut txn = db.begin_write().map_err(err)?;
    txn.set_durability(Durability::Immediate).map_err(err)?;
    for table in Table::ALL {
        let entries = &layer[table.index()];
        if entries.is_empty() && table != Table::Meta {
            continue;
        }
        let mut t = txn.open_table(def(table)).map_err(err)?;
        // In key order: neighbouring keys share their pages.
        for (key, value) in entries {
            match value {
                Some(value) => {
                    t.insert(key.as_slice(), value.as_slice()).map_err(err)?;
                }
                None => {
                    t.remove(key.as_slice()).map_err(err)?;
                }
            }
        }
        if table == Table::Meta {
            t.insert(WAL_APPLIED, covers.to_be_bytes().as_slice())
                .map_err(err)?;
        }
    }
    txn.commit().map_err(err)
}
