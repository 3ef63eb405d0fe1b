//! The redb backend, the default.
//!
//! Every acknowledged write survives a power failure. A write transaction
//! is durable once its writes are appended to the write-ahead log
//! ([`crate::store::wal`]) as one record and synced; they then join an
//! in-memory layer that every read consults before redb. redb is
//! written behind: a checkpoint, every [`CHECKPOINT_INTERVAL`] or
//! [`CHECKPOINT_BYTES`] of log, hands the layer to a flusher thread, which
//! writes it to redb in one `Durability::Immediate` transaction together
//! with the number of the last batch it covers.
//!
//! Why: redb rewrites every B-tree page a transaction touches, and
//! certificate serials are random, so committing each batch to redb cost
//! one page per table per certificate, plus the branch pages above them and
//! their checksums. One transaction per second writes each hot record (the
//! token, the agent, the audit head) once instead of once per batch, each
//! branch page once, and no certificate waits for it.
//!
//! The log has two segments (`store.wal`, `store.wal.1`): batches go to one
//! while the other's batches are being checkpointed, so a segment is reused
//! only once redb holds all of its batches durably. After a crash, redb
//! comes back at its last checkpoint and the logged batches after it are
//! applied again, in order. A record holds the writes themselves, not the
//! changes that made them, so replaying does not depend on the code that
//! decided them.
//!
//! Each [`Table`] is one redb table of byte keys and byte values.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, RwLock, RwLockReadGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ::redb::{
    Database, Durability, ReadOnlyTable, ReadTransaction, ReadableDatabase, ReadableTable,
    TableDefinition,
};

use super::wal::{Record, Wal};
use super::{Backend, Entry, Store, StoreError, Table, WriteTxn};

/// Longest time between checkpoints while batches are being logged.
pub const CHECKPOINT_INTERVAL: Duration = Duration::from_secs(1);
/// Most bytes of log between checkpoints.
pub const CHECKPOINT_BYTES: u64 = super::wal::PREALLOCATED * 3 / 4;
/// Bytes of log beyond which a write waits for the checkpoint in progress:
/// this bounds the memory of the in-memory layer when redb falls behind.
pub const MAX_LOG_BYTES: u64 = 4 * CHECKPOINT_BYTES;
/// Wait before the flusher tries a failed checkpoint again.
const RETRY: Duration = Duration::from_secs(1);
/// Meta key: the last logged batch that redb holds durably.
const WAL_APPLIED: &[u8] = b"wal_applied";

type Def = TableDefinition<'static, &'static [u8], &'static [u8]>;
type ReadTable = ReadOnlyTable<&'static [u8], &'static [u8]>;

fn def(table: Table) -> Def {
    TableDefinition::new(table.name())
}

fn err(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend {
        backend: Backend::Redb,
        detail: e.to_string(),
    }
}

/// One table's writes above redb: a value, or `None` for a deletion.
type Writes = BTreeMap<Vec<u8>, Option<Vec<u8>>>;

/// Writes that are logged but not yet in redb, one map per table.
type Layer = Vec<Writes>;

fn empty_layer() -> Layer {
    Table::ALL.iter().map(|_| BTreeMap::new()).collect()
}

/// `table`'s writes in each layer above redb, newest first: `own` (a
/// transaction's own writes), the pending layer, the flushing one.
fn above<'a>(
    own: Option<&'a Layer>,
    pending: &'a Layer,
    flushing: Option<&'a Arc<Layer>>,
    table: Table,
) -> impl Iterator<Item = &'a Writes> {
    own.into_iter()
        .chain(std::iter::once(pending))
        .chain(flushing.map(|f| &**f))
        .map(move |layer| &layer[table.index()])
}

/// The value of `key` in the first of `layers` that has it: `Some(None)`
/// when that layer deletes it, `None` when no layer knows it.
fn lookup<'a>(mut layers: impl Iterator<Item = &'a Writes>, key: &[u8]) -> Option<Option<Vec<u8>>> {
    layers.find_map(|layer| layer.get(key).cloned())
}

/// The error of a store whose flusher thread died.
fn flusher_stopped() -> StoreError {
    err("the store's flusher thread stopped; restart the CA")
}

/// What reads see above redb.
struct Layers {
    /// Batches logged since the last checkpoint began.
    pending: Layer,
    /// The batches the checkpoint in progress is writing to redb.
    flushing: Option<Arc<Layer>>,
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
struct Shared {
    db: Database,
    // One writer at a time: the log's order must be the commit order. Lock
    // order: `state`, then `layers` or `flush`, never the other way.
    state: Mutex<LogState>,
    layers: RwLock<Layers>,
    flush: Mutex<FlushState>,
    /// Signalled when a job is handed over, finishes or fails, and on stop.
    flush_changed: Condvar,
}

impl Shared {
    fn layers(&self) -> RwLockReadGuard<'_, Layers> {
        self.layers.read().unwrap_or_else(|p| p.into_inner())
    }

    fn flush_state(&self) -> MutexGuard<'_, FlushState> {
        self.flush.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lock(&self) -> MutexGuard<'_, LogState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The reason no batch may be logged now, if there is one.
    fn refusal(&self, state: &LogState) -> Result<(), StoreError> {
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
    fn checkpoint_locked(&self, state: &mut LogState) -> Result<(), StoreError> {
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
    fn begin_checkpoint(&self, state: &mut LogState) -> Result<(), StoreError> {
        let other = 1 - state.active;
        state.wals[other].clear()?;
        state.active = other;
        self.start_checkpoint(state.next_seq - 1);
        state.last_checkpoint = Instant::now();
        Ok(())
    }

    /// Whether logged batches wait for a checkpoint that is due.
    fn checkpoint_due(&self, state: &LogState) -> bool {
        (state.last_checkpoint.elapsed() >= state.interval
            || state.wals[state.active].len() >= CHECKPOINT_BYTES)
            && state.checkpointed
            && state.poisoned.is_none()
            && self.layers().pending.iter().any(|t| !t.is_empty())
    }

    /// Waits until no checkpoint is in progress; fails if the one in
    /// progress has failed (the flusher keeps trying it).
    fn wait_idle(&self) -> Result<(), StoreError> {
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

    fn busy(&self) -> bool {
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
    fn flusher(&self) {
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

/// A redb database file and its write-ahead log.
pub struct RedbStore {
    shared: Arc<Shared>,
    /// The database file and the log's segments, for their size.
    files: [PathBuf; 3],
    flusher: Option<JoinHandle<()>>,
}

struct LogState {
    /// The log's two segments.
    wals: [Wal; 2],
    /// The segment batches are appended to.
    active: usize,
    /// Sequence number of the next logged batch.
    next_seq: u64,
    /// When the last checkpoint began.
    last_checkpoint: Instant,
    /// Longest time between checkpoints.
    interval: Duration,
    /// The last logged batch found at open that is applied to redb; until
    /// it reaches `replay_until`, nothing else may be written.
    replayed: u64,
    /// The last batch found in the log at open.
    replay_until: u64,
    /// Set by the first checkpoint after opening: until then the log's
    /// segments may end on batches redb already holds, after which a new
    /// record could not be read back.
    checkpointed: bool,
    /// Set when a record could not be logged: what it left in the log is
    /// unknown, so nothing more is logged until a restart.
    poisoned: Option<StoreError>,
}

impl LogState {
    /// Fails while batches found in the log at open are not replayed: a
    /// checkpoint or a new batch would otherwise mark them as applied.
    fn check_replayed(&self) -> Result<(), StoreError> {
        if self.replayed < self.replay_until {
            return Err(StoreError::Backend {
                backend: Backend::Redb,
                detail: format!(
                    "batches {} to {} of the write-ahead log are not replayed yet",
                    self.replayed + 1,
                    self.replay_until
                ),
            });
        }
        Ok(())
    }
}

/// The path of the log's second segment, beside the first.
pub(crate) fn second_segment(wal_path: &Path) -> PathBuf {
    let mut name = wal_path.as_os_str().to_owned();
    name.push(".1");
    PathBuf::from(name)
}

impl RedbStore {
    /// Opens the database at `path` and its log at `wal_path` (and
    /// `wal_path` + `.1`), creating them and the tables if needed. Fails if
    /// another process has them open. Returns the logged batches that redb
    /// does not hold durably yet: the caller replays them with
    /// [`RedbStore::replay`], then calls [`RedbStore::checkpoint`].
    pub fn open(path: &Path, wal_path: &Path) -> Result<(Self, Vec<Record>), StoreError> {
        let db = Database::create(path).map_err(err)?;
        let txn = db.begin_write().map_err(err)?;
        for table in Table::ALL {
            txn.open_table(def(table)).map_err(err)?;
        }
        txn.commit().map_err(err)?;
        let applied = {
            let txn = db.begin_read().map_err(err)?;
            let meta = txn.open_table(def(Table::Meta)).map_err(err)?;
            match meta.get(WAL_APPLIED).map_err(err)? {
                Some(v) => {
                    u64::from_be_bytes(v.value().try_into().map_err(|_| StoreError::Corrupt {
                        table: Table::Meta.name(),
                        detail: "wal_applied is not 8 bytes".into(),
                    })?)
                }
                None => 0,
            }
        };
        let second = second_segment(wal_path);
        let (first_wal, mut records) = Wal::open(wal_path)?;
        let (second_wal, more) = Wal::open(&second)?;
        records.extend(more);
        records.sort_by_key(|r| r.seq);
        let last = records.last().map_or(0, |r| r.seq).max(applied);
        let pending: Vec<Record> = records.into_iter().filter(|r| r.seq > applied).collect();
        for (expected, record) in (applied + 1..).zip(&pending) {
            if record.seq != expected {
                // Batches missing between redb's state and the log: redb was
                // restored from an older copy, or the log from another store.
                return Err(StoreError::Corrupt {
                    table: "write-ahead log",
                    detail: format!(
                        "the store holds batches up to {} but the log resumes at {}; \
                         refusing to apply it to the wrong state (restore the matching store.redb, \
                         store.wal and store.wal.1 together)",
                        expected - 1,
                        record.seq
                    ),
                });
            }
        }
        let shared = Arc::new(Shared {
            db,
            state: Mutex::new(LogState {
                wals: [first_wal, second_wal],
                active: 0,
                next_seq: last + 1,
                last_checkpoint: Instant::now(),
                interval: CHECKPOINT_INTERVAL,
                replayed: applied,
                replay_until: last,
                checkpointed: false,
                poisoned: None,
            }),
            layers: RwLock::new(Layers {
                pending: empty_layer(),
                flushing: None,
            }),
            flush: Mutex::new(FlushState::default()),
            flush_changed: Condvar::new(),
        });
        let flusher = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("agentca-store-flusher".into())
                .spawn(move || shared.flusher())
                .map_err(err)?
        };
        let store = Self {
            shared,
            files: [path.to_owned(), wal_path.to_owned(), second],
            flusher: Some(flusher),
        };
        if pending.is_empty() {
            store.checkpoint()?;
        }
        Ok((store, pending))
    }

    /// Sets the longest time between checkpoints (tests lengthen it to
    /// keep batches in the log).
    pub fn set_checkpoint_interval(&self, interval: Duration) {
        self.lock().interval = interval;
    }

    /// Waits until no checkpoint is in progress; fails if the one in
    /// progress has failed.
    pub fn wait_for_checkpoint(&self) -> Result<(), StoreError> {
        self.shared.wait_idle()
    }

    fn lock(&self) -> MutexGuard<'_, LogState> {
        self.shared.lock()
    }

    /// Applies logged batch `seq` again, after a crash (no sync: the
    /// checkpoint after replay makes it durable).
    pub fn replay(
        &self,
        seq: u64,
        f: &mut dyn FnMut(&mut dyn WriteTxn) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let mut state = self.lock();
        // Only the batches found at open, in order, straight into redb:
        // nothing is above it yet.
        if seq != state.replayed + 1 || seq > state.replay_until || state.checkpointed {
            return Err(StoreError::Backend {
                backend: Backend::Redb,
                detail: format!(
                    "batch {seq} replayed out of order (after batch {})",
                    state.replayed
                ),
            });
        }
        self.transaction(Durability::None, &mut |txn| {
            f(txn)?;
            txn.put(Table::Meta, WAL_APPLIED, &seq.to_be_bytes())
        })?;
        state.replayed = seq;
        tracing::debug!(seq, "replayed a logged batch");
        Ok(())
    }

    /// Makes redb hold every logged batch durably by itself, and empties
    /// the log.
    pub fn checkpoint(&self) -> Result<(), StoreError> {
        let mut state = self.lock();
        self.shared.checkpoint_locked(&mut state)
    }

    /// [`merged_scan`] of the layers over redb. The layers are held while
    /// redb is read: the flusher removes a layer only after redb has it.
    fn scan(
        &self,
        table: Table,
        start: &[u8],
        prefix: &[u8],
        limit: usize,
    ) -> Result<Vec<Entry>, StoreError> {
        let layers = self.shared.layers();
        let stack: Vec<&Writes> =
            above(None, &layers.pending, layers.flushing.as_ref(), table).collect();
        let txn = self.shared.db.begin_read().map_err(err)?;
        let t = txn.open_table(def(table)).map_err(err)?;
        merged_scan(&stack, &t, start, prefix, limit)
    }

    fn transaction(
        &self,
        durability: Durability,
        f: &mut dyn FnMut(&mut dyn WriteTxn) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let mut txn = self.shared.db.begin_write().map_err(err)?;
        txn.set_durability(durability).map_err(err)?;
        {
            let mut view = RedbTxn::new(&txn);
            // Dropping `txn` without commit aborts it.
            f(&mut view)?;
        }
        txn.commit().map_err(err)
    }
}

impl Drop for RedbStore {
    fn drop(&mut self) {
        // A last checkpoint, so that the next start has nothing to replay
        // (if it fails, the log still has every batch).
        if let Err(e) = self.checkpoint() {
            tracing::warn!(error = %e, "closing the store without a final checkpoint; the next start replays the log");
        }
        self.shared.flush_state().stop = true;
        self.shared.flush_changed.notify_all();
        if let Some(flusher) = self.flusher.take() {
            let _ = flusher.join();
        }
    }
}

impl Store for RedbStore {
    fn backend(&self) -> Backend {
        Backend::Redb
    }

    fn size_on_disk(&self) -> u64 {
        self.files
            .iter()
            .filter_map(|f| std::fs::metadata(f).ok())
            .map(|m| m.len())
            .sum()
    }

    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let txn = {
            // redb's snapshot is taken while the layers are held: the
            // flusher removes a layer only after redb has it, so nothing
            // falls between the two.
            let layers = self.shared.layers();
            let stack = above(None, &layers.pending, layers.flushing.as_ref(), table);
            if let Some(value) = lookup(stack, key) {
                return Ok(value);
            }
            self.shared.db.begin_read().map_err(err)?
        };
        let t = txn.open_table(def(table)).map_err(err)?;
        Ok(t.get(key).map_err(err)?.map(|v| v.value().to_vec()))
    }

    fn scan_prefix(
        &self,
        table: Table,
        prefix: &[u8],
        limit: usize,
    ) -> Result<Vec<Entry>, StoreError> {
        self.scan(table, prefix, prefix, limit)
    }

    fn scan_from(
        &self,
        table: Table,
        start: &[u8],
        limit: usize,
    ) -> Result<Vec<Entry>, StoreError> {
        self.scan(table, start, b"", limit)
    }

    fn write(
        &self,
        f: &mut dyn FnMut(&mut dyn WriteTxn) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let mut state = self.lock();
        self.shared.refusal(&state)?;
        if state.wals[state.active].len() >= MAX_LOG_BYTES {
            // redb has fallen behind: wait for it (or refuse, if it fails)
            // rather than let the log and the memory grow unbounded.
            self.shared.wait_idle()?;
            self.shared.begin_checkpoint(&mut state)?;
        }
        let mut txn = OverlayTxn::begin(&self.shared)?;
        f(&mut txn)?;
        let own = txn.finish();
        let record = encode_batch(&own);
        let seq = state.next_seq;
        let active = state.active;
        // Logged and synced before readers can see it: nobody can see a
        // change that a crash could take back.
        if let Err(e) = state.wals[active].append(seq, &record) {
            state.poisoned = Some(err(format!(
                "a batch could not be logged ({e}); restart the CA"
            )));
            return Err(e);
        }
        state.next_seq += 1;
        {
            let mut layers = self
                .shared
                .layers
                .write()
                .unwrap_or_else(|p| p.into_inner());
            for (pending, writes) in layers.pending.iter_mut().zip(own) {
                pending.extend(writes);
            }
        }
        if self.shared.checkpoint_due(&state) && !self.shared.busy() {
            if let Err(e) = self.shared.begin_checkpoint(&mut state) {
                // The batch itself is durable in the log; the next write
                // tries again.
                tracing::error!(error = %e, "cannot begin a checkpoint");
            }
        }
        Ok(())
    }
}

/// First byte of a log record that holds a batch's writes. Records written
/// before 0.1 hold the batch's changes as a JSON list, whose first byte is
/// `[`: [`crate::store::open`] replays those by applying the changes again.
pub const BATCH_OF_WRITES: u8 = 1;
/// Length that marks a deletion in a record.
const DELETED: u32 = u32::MAX;

/// A log record of `writes`: [`BATCH_OF_WRITES`], then per write
/// `table: u8 | key length: u32 LE | key | value length: u32 LE | value`,
/// with [`DELETED`] as the length of a deletion's (absent) value.
fn encode_batch(writes: &Layer) -> Vec<u8> {
    let size: usize = writes
        .iter()
        .flatten()
        .map(|(k, v)| 9 + k.len() + v.as_ref().map_or(0, Vec::len))
        .sum();
    let mut out = Vec::with_capacity(1 + size);
    out.push(BATCH_OF_WRITES);
    for (table, entries) in writes.iter().enumerate() {
        for (key, value) in entries {
            out.push(table as u8);
            // Keys and values are far below 4 GiB: records are ours.
            out.extend_from_slice(&(key.len() as u32).to_le_bytes());
            out.extend_from_slice(key);
            match value {
                Some(value) => {
                    out.extend_from_slice(&(value.len() as u32).to_le_bytes());
                    out.extend_from_slice(value);
                }
                None => out.extend_from_slice(&DELETED.to_le_bytes()),
            }
        }
    }
    out
}

/// A write read back from a log record: a value, or `None` for a deletion.
pub type LoggedWrite = (Table, Vec<u8>, Option<Vec<u8>>);

/// The writes of a record made by [`encode_batch`].
pub fn decode_batch(record: &[u8]) -> Result<Vec<LoggedWrite>, String> {
    let mut rest = match record.split_first() {
        Some((&BATCH_OF_WRITES, rest)) => rest,
        _ => return Err("not a batch of writes".into()),
    };
    fn take<'a>(rest: &mut &'a [u8], n: usize) -> Result<&'a [u8], String> {
        if rest.len() < n {
            return Err("truncated".into());
        }
        let (head, tail) = rest.split_at(n);
        *rest = tail;
        Ok(head)
    }
    fn length(rest: &mut &[u8]) -> Result<u32, String> {
        Ok(u32::from_le_bytes(
            take(rest, 4)?.try_into().expect("4 bytes"),
        ))
    }
    let mut writes = Vec::new();
    while !rest.is_empty() {
        let index = take(&mut rest, 1)?[0] as usize;
        let table = *Table::ALL
            .get(index)
            .ok_or_else(|| format!("unknown table {index}"))?;
        let key_len = length(&mut rest)? as usize;
        let key = take(&mut rest, key_len)?.to_vec();
        let value = match length(&mut rest)? {
            DELETED => None,
            n => Some(take(&mut rest, n as usize)?.to_vec()),
        };
        writes.push((table, key, value));
    }
    Ok(writes)
}

/// Up to `limit` entries with keys at or after `start` that begin with
/// `prefix`, in key order: `layers` (the first that has a key decides,
/// `None` hiding it) over redb's `base`.
fn merged_scan(
    layers: &[&Writes],
    base: &impl ReadableTable<&'static [u8], &'static [u8]>,
    start: &[u8],
    prefix: &[u8],
    limit: usize,
) -> Result<Vec<Entry>, StoreError> {
    let mut above: Vec<_> = layers
        .iter()
        .map(|layer| {
            layer
                .range::<[u8], _>((Bound::Included(start), Bound::Unbounded))
                .peekable()
        })
        .collect();
    let mut below = base.range::<&[u8]>(start..).map_err(err)?;
    let mut next_below = move || -> Result<Option<Entry>, StoreError> {
        below
            .next()
            .map(|entry| {
                let (k, v) = entry.map_err(err)?;
                Ok((k.value().to_vec(), v.value().to_vec()))
            })
            .transpose()
    };
    let mut below_head = next_below()?;
    let mut out = Vec::new();
    while out.len() < limit {
        // The smallest key at the head of any source.
        let mut smallest: Option<&[u8]> = below_head.as_ref().map(|(k, _)| k.as_slice());
        for layer in &mut above {
            if let Some((k, _)) = layer.peek() {
                if smallest.is_none_or(|s| k.as_slice() < s) {
                    smallest = Some(k.as_slice());
                }
            }
        }
        let Some(key) = smallest.map(<[u8]>::to_vec) else {
            break;
        };
        if !key.starts_with(prefix) {
            break;
        }
        // Every source at that key moves past it; the first decides.
        let mut value: Option<Option<Vec<u8>>> = None;
        for layer in &mut above {
            if layer.peek().is_some_and(|(k, _)| **k == key) {
                let (_, v) = layer.next().expect("peeked");
                value.get_or_insert_with(|| v.clone());
            }
        }
        if below_head.as_ref().is_some_and(|(k, _)| *k == key) {
            let (_, v) = below_head.take().expect("checked");
            value.get_or_insert(Some(v));
            below_head = next_below()?;
        }
        if let Some(Some(value)) = value {
            out.push((key, value));
        }
    }
    Ok(out)
}

/// A logged batch's transaction: its writes stay in memory, above the
/// pending layer, the layer being checkpointed and a redb snapshot taken
/// when it began, until the batch is logged.
struct OverlayTxn<'s> {
    shared: &'s Shared,
    own: Layer,
    flushing: Option<Arc<Layer>>,
    snapshot: ReadTransaction,
    tables: Vec<Option<ReadTable>>,
}

impl<'s> OverlayTxn<'s> {
    fn begin(shared: &'s Shared) -> Result<Self, StoreError> {
        // Taken together: the flushing layer and a redb snapshot from
        // before the flusher removes it.
        let layers = shared.layers();
        let flushing = layers.flushing.clone();
        let snapshot = shared.db.begin_read().map_err(err)?;
        drop(layers);
        Ok(Self {
            shared,
            own: empty_layer(),
            flushing,
            snapshot,
            tables: Table::ALL.iter().map(|_| None).collect(),
        })
    }

    fn finish(self) -> Layer {
        self.own
    }
}

/// `table` of `snapshot`, opened when first used.
fn snapshot_table<'t>(
    tables: &'t mut [Option<ReadTable>],
    snapshot: &ReadTransaction,
    table: Table,
) -> Result<&'t ReadTable, StoreError> {
    let slot = &mut tables[table.index()];
    if slot.is_none() {
        *slot = Some(snapshot.open_table(def(table)).map_err(err)?);
    }
    Ok(slot.as_ref().expect("opened above"))
}

impl WriteTxn for OverlayTxn<'_> {
    fn get(&mut self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        {
            // Only this thread (the writer) changes the pending layer.
            let layers = self.shared.layers();
            let stack = above(
                Some(&self.own),
                &layers.pending,
                self.flushing.as_ref(),
                table,
            );
            if let Some(value) = lookup(stack, key) {
                return Ok(value);
            }
        }
        let t = snapshot_table(&mut self.tables, &self.snapshot, table)?;
        Ok(t.get(key).map_err(err)?.map(|v| v.value().to_vec()))
    }

    fn put(&mut self, table: Table, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        self.own[table.index()].insert(key.to_vec(), Some(value.to_vec()));
        Ok(())
    }

    fn delete(&mut self, table: Table, key: &[u8]) -> Result<(), StoreError> {
        self.own[table.index()].insert(key.to_vec(), None);
        Ok(())
    }

    fn scan_prefix(
        &mut self,
        table: Table,
        prefix: &[u8],
        limit: usize,
    ) -> Result<Vec<Entry>, StoreError> {
        let t = snapshot_table(&mut self.tables, &self.snapshot, table)?;
        let layers = self.shared.layers();
        let stack: Vec<&Writes> = above(
            Some(&self.own),
            &layers.pending,
            self.flushing.as_ref(),
            table,
        )
        .collect();
        merged_scan(&stack, t, prefix, prefix, limit)
    }
}

/// The tables of one write transaction, opened when first used: opening
/// all of them for every commit was a measurable part of its fixed cost.
struct RedbTxn<'txn> {
    txn: &'txn ::redb::WriteTransaction,
    tables: Vec<Option<::redb::Table<'txn, &'static [u8], &'static [u8]>>>,
}

impl<'txn> RedbTxn<'txn> {
    fn new(txn: &'txn ::redb::WriteTransaction) -> Self {
        Self {
            txn,
            tables: (0..Table::ALL.len()).map(|_| None).collect(),
        }
    }

    fn table(
        &mut self,
        table: Table,
    ) -> Result<&mut ::redb::Table<'txn, &'static [u8], &'static [u8]>, StoreError> {
        let slot = &mut self.tables[table.index()];
        if slot.is_none() {
            *slot = Some(self.txn.open_table(def(table)).map_err(err)?);
        }
        Ok(slot.as_mut().expect("opened above"))
    }
}

impl WriteTxn for RedbTxn<'_> {
    fn get(&mut self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .table(table)?
            .get(key)
            .map_err(err)?
            .map(|v| v.value().to_vec()))
    }

    fn put(&mut self, table: Table, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        self.table(table)?.insert(key, value).map_err(err)?;
        Ok(())
    }

    fn delete(&mut self, table: Table, key: &[u8]) -> Result<(), StoreError> {
        self.table(table)?.remove(key).map_err(err)?;
        Ok(())
    }

    fn scan_prefix(
        &mut self,
        table: Table,
        prefix: &[u8],
        limit: usize,
    ) -> Result<Vec<Entry>, StoreError> {
        merged_scan(&[], &*self.table(table)?, prefix, prefix, limit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(entries: &[(&str, Option<&str>)]) -> Writes {
        entries
            .iter()
            .map(|(k, v)| (k.as_bytes().to_vec(), v.map(|v| v.as_bytes().to_vec())))
            .collect()
    }

    fn shown(entries: Vec<Entry>) -> Vec<(String, String)> {
        entries
            .into_iter()
            .map(|(k, v)| (String::from_utf8(k).unwrap(), String::from_utf8(v).unwrap()))
            .collect()
    }

    #[test]
    fn a_batch_of_writes_reads_back_and_a_damaged_one_is_refused() {
        let mut writes = empty_layer();
        writes[Table::Certs.index()].insert(b"serial".to_vec(), Some(b"{}".to_vec()));
        writes[Table::Certs.index()].insert(b"gone".to_vec(), None);
        writes[Table::Audit.index()].insert(vec![0; 8], Some(Vec::new()));
        let record = encode_batch(&writes);
        let back = decode_batch(&record).unwrap();
        assert_eq!(
            back,
            vec![
                (Table::Certs, b"gone".to_vec(), None),
                (Table::Certs, b"serial".to_vec(), Some(b"{}".to_vec())),
                (Table::Audit, vec![0; 8], Some(Vec::new())),
            ]
        );
        assert_eq!(decode_batch(&encode_batch(&empty_layer())).unwrap(), vec![]);
        for cut in 2..record.len() {
            if let Ok(partial) = decode_batch(&record[..cut]) {
                // Only a cut between two writes reads as fewer writes.
                assert!(partial.len() < back.len(), "cut at {cut}");
            }
        }
        let mut unknown = record.clone();
        unknown[1] = Table::ALL.len() as u8;
        assert!(decode_batch(&unknown)
            .unwrap_err()
            .contains("unknown table"));
        assert!(
            decode_batch(b"[]").is_err(),
            "a list of changes is not a batch of writes"
        );
    }

    #[test]
    fn scans_merge_the_layers_over_redb_the_first_layer_deciding() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::create(dir.path().join("t.redb")).unwrap();
        let def = def(Table::Meta);
        let txn = db.begin_write().unwrap();
        {
            let mut t = txn.open_table(def).unwrap();
            for k in ["a/1", "a/2", "a/3", "a/5", "b/1"] {
                t.insert(k.as_bytes(), b"redb".as_slice()).unwrap();
            }
        }
        txn.commit().unwrap();
        // Newest first: a transaction's own writes, the pending layer, the
        // layer being checkpointed.
        let own = layer(&[("a/4", Some("own")), ("a/2", None)]);
        let pending = layer(&[
            ("a/2", Some("pending")),
            ("a/3", None),
            ("a/6", Some("pending")),
        ]);
        let flushing = layer(&[
            ("a/1", Some("flushing")),
            ("a/3", Some("flushing")),
            ("a/0", None),
        ]);
        let read = db.begin_read().unwrap();
        let t = read.open_table(def).unwrap();
        let layers = [&own, &pending, &flushing];
        let all = |start: &str, prefix: &str, limit| {
            shown(merged_scan(&layers, &t, start.as_bytes(), prefix.as_bytes(), limit).unwrap())
        };
        let expect = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        assert_eq!(
            all("a/", "a/", 100),
            expect(&[
                ("a/1", "flushing"),
                ("a/4", "own"),
                ("a/5", "redb"),
                ("a/6", "pending"),
            ]),
            "a deletion above hides what is below; a value above replaces it"
        );
        assert_eq!(
            all("a/", "a/", 2),
            expect(&[("a/1", "flushing"), ("a/4", "own")]),
            "deleted keys do not count against the limit"
        );
        assert_eq!(
            all("a/5", "", 100),
            expect(&[("a/5", "redb"), ("a/6", "pending"), ("b/1", "redb")])
        );
        assert!(all("c", "", 100).is_empty());
        assert_eq!(all("", "b", 100), Vec::new(), "the prefix ends the scan");
        // With no layer, redb as it is.
        assert_eq!(
            shown(merged_scan(&[], &t, b"a/", b"a/", 2).unwrap()).len(),
            2
        );
    }
}
