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
//!
//! This file owns the store's handle ([`RedbStore`]): opening and
//! replaying, reads, the write path, and the log's state. Beside it:
//! `layers.rs` (what reads see above redb, a write's transaction, merged
//! scans), `batch.rs` (a logged batch's format) and `checkpoint.rs`
//! (checkpoints and the flusher thread). None of them may depend on what
//! the CA stores (the records and changes built on the store).

mod batch;
mod checkpoint;
mod layers;

use std::path::{Path, PathBuf};
use std::sync::{Arc, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ::redb::{Durability, ReadOnlyTable, ReadableDatabase, ReadableTable, TableDefinition};

use self::batch::encode_batch;
pub use self::batch::{decode_batch, LoggedWrite, BATCH_OF_WRITES};
use self::checkpoint::Shared;
use self::layers::{above, lookup, merged_scan, OverlayTxn, Writes};
use super::wal::{Record, Wal};
use super::{Backend, Entry, Store, StoreError, Table, WriteTxn};

/// Longest time between checkpoints while batches are being logged.
pub const CHECKPOINT_INTERVAL: Duration = Duration::from_secs(1);
/// Most bytes of log between checkpoints.
pub const CHECKPOINT_BYTES: u64 = super::wal::PREALLOCATED * 3 / 4;
/// Bytes of log beyond which a write waits for the checkpoint in progress:
/// this bounds the memory of the in-memory layer when redb falls behind.
pub const MAX_LOG_BYTES: u64 = 4 * CHECKPOINT_BYTES;
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

/// A redb database file and its write-ahead log.
pub struct RedbStore {
    shared: Arc<Shared>,
    /// The database file and the log's segments, for their size.
    files: [PathBuf; 3],
    flusher: Option<JoinHandle<()>>,
}

/// The write-ahead log's state. Whoever holds it is the one writer
/// (`Shared::lock`).
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
        Self::open_with_cache(path, wal_path, super::DEFAULT_CACHE_BYTES)
    }

    /// [`RedbStore::open`] with a page cache of at most `cache_bytes`.
    pub fn open_with_cache(
        path: &Path,
        wal_path: &Path,
        cache_bytes: u64,
    ) -> Result<(Self, Vec<Record>), StoreError> {
        let db = ::redb::Builder::new()
            .set_cache_size(usize::try_from(cache_bytes).unwrap_or(usize::MAX))
            .create(path)
            .map_err(err)?;
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
        let shared = Arc::new(Shared::new(
            db,
            LogState {
                wals: [first_wal, second_wal],
                active: 0,
                next_seq: last + 1,
                last_checkpoint: Instant::now(),
                interval: CHECKPOINT_INTERVAL,
                replayed: applied,
                replay_until: last,
                checkpointed: false,
                poisoned: None,
            },
        ));
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
        self.shared.stop_flusher();
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

    fn snapshot(&self) -> Result<crate::store::Snapshot, StoreError> {
        let mut tables = Vec::with_capacity(Table::ALL.len());
        self.write(&mut |txn| {
            tables.clear();
            for table in Table::ALL {
                let mut entries = txn.scan_prefix(table, &[], usize::MAX)?;
                if table == Table::Meta {
                    // The log's bookkeeping, not the CA's state.
                    entries.retain(|(key, _)| key != WAL_APPLIED);
                }
                tables.push((table, entries));
            }
            Ok(())
        })?;
        Ok(tables)
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
        let mut txn = OverlayTxn::begin(&self.shared.layers, &self.shared.db)?;
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
