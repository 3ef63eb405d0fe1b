//! The redb backend, the default.
//!
//! A write acknowledged by [`Store::write`] or [`Store::write_logged`]
//! survives a power failure: `write` commits with redb's
//! `Durability::Immediate` (a real `fdatasync`); `write_logged` syncs its
//! record to the write-ahead log ([`crate::store::wal`]) before committing
//! to redb without a sync, and a checkpoint makes redb durable by itself
//! every [`CHECKPOINT_INTERVAL`] or [`CHECKPOINT_BYTES`] of log. Each
//! [`Table`] is one redb table of byte keys and byte values.

use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ::redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};

use super::wal::{Record, Wal};
use super::{Backend, Entry, Store, StoreError, Table, WriteTxn};

/// Longest time between checkpoints while batches are being logged.
pub const CHECKPOINT_INTERVAL: Duration = Duration::from_secs(1);
/// Most bytes of log between checkpoints.
pub const CHECKPOINT_BYTES: u64 = super::wal::PREALLOCATED * 3 / 4;
/// Meta key: the last logged batch that redb holds durably.
const WAL_APPLIED: &[u8] = b"wal_applied";

type Def = TableDefinition<'static, &'static [u8], &'static [u8]>;

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
    db: Database,
    /// The database file and the log, for their size.
    files: [std::path::PathBuf; 2],
    // One writer at a time: the log's order must be the commit order.
    state: Mutex<LogState>,
}

struct LogState {
    wal: Wal,
    /// Sequence number of the next logged batch.
    next_seq: u64,
    /// When redb was last made durable by itself.
    last_checkpoint: Instant,
    /// Set when a logged batch could not be committed to redb: the log and
    /// redb disagree until a restart replays the log, so no more writes.
    poisoned: bool,
    /// Longest time between checkpoints.
    interval: Duration,
}

impl RedbStore {
    /// Opens the database at `path` and its log at `wal_path`, creating them
    /// and the tables if needed. Fails if another process has them open.
    /// Returns the logged batches that redb does not hold durably yet: the
    /// caller replays them with [`RedbStore::replay`], then calls
    /// [`RedbStore::checkpoint`].
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
        let (wal, records) = Wal::open(wal_path)?;
        let last = records.last().map_or(0, |r| r.seq).max(applied);
        let pending: Vec<Record> = records.into_iter().filter(|r| r.seq > applied).collect();
        if let Some(first) = pending.first() {
            if first.seq != applied + 1 {
                // Batches missing between redb's state and the log: redb was
                // restored from an older copy, or the log from another store.
                return Err(StoreError::Corrupt {
                    table: "write-ahead log",
                    detail: format!(
                        "the store holds batches up to {applied} but the log resumes at {}; \
                         refusing to apply it to the wrong state (restore the matching store.redb \
                         and store.wal together)",
                        first.seq
                    ),
                });
            }
        }
        Ok((
            Self {
                db,
                files: [path.to_owned(), wal_path.to_owned()],
                state: Mutex::new(LogState {
                    wal,
                    next_seq: last + 1,
                    last_checkpoint: Instant::now(),
                    poisoned: false,
                    interval: CHECKPOINT_INTERVAL,
                }),
            },
            pending,
        ))
    }

    /// Sets the longest time between checkpoints (tests lengthen it to
    /// keep batches in the log).
    pub fn set_checkpoint_interval(&self, interval: Duration) {
        self.lock().interval = interval;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LogState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Applies logged batch `seq` again, after a crash (no sync: the
    /// checkpoint after replay makes it durable).
    pub fn replay(
        &self,
        seq: u64,
        f: &mut dyn FnMut(&mut dyn WriteTxn) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let _state = self.lock();
        self.transaction(Durability::None, &mut |txn| {
            f(txn)?;
            txn.put(Table::Meta, WAL_APPLIED, &seq.to_be_bytes())
        })?;
        tracing::debug!(seq, "replayed a logged batch");
        Ok(())
    }

    /// Makes redb durable by itself and empties the log.
    pub fn checkpoint(&self) -> Result<(), StoreError> {
        let mut state = self.lock();
        self.checkpoint_locked(&mut state)
    }

    fn checkpoint_locked(&self, state: &mut LogState) -> Result<(), StoreError> {
        let applied = state.next_seq - 1;
        self.transaction(Durability::Immediate, &mut |txn| {
            txn.put(Table::Meta, WAL_APPLIED, &applied.to_be_bytes())
        })?;
        // Every logged batch is now in redb's durable state: the log may go.
        // A crash before it is cleared is harmless: replay skips batches up
        // to `wal_applied`.
        state.wal.clear()?;
        state.last_checkpoint = Instant::now();
        Ok(())
    }

    fn transaction(
        &self,
        durability: Durability,
        f: &mut dyn FnMut(&mut dyn WriteTxn) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let mut txn = self.db.begin_write().map_err(err)?;
        txn.set_durability(durability).map_err(err)?;
        {
            let mut view = RedbTxn::new(&txn);
            // Dropping `txn` without commit aborts it.
            f(&mut view)?;
        }
        txn.commit().map_err(err)
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
        let txn = self.db.begin_read().map_err(err)?;
        let t = txn.open_table(def(table)).map_err(err)?;
        Ok(t.get(key).map_err(err)?.map(|v| v.value().to_vec()))
    }

    fn scan_prefix(
        &self,
        table: Table,
        prefix: &[u8],
        limit: usize,
    ) -> Result<Vec<Entry>, StoreError> {
        let txn = self.db.begin_read().map_err(err)?;
        let t = txn.open_table(def(table)).map_err(err)?;
        scan(&t, prefix, limit)
    }

    fn scan_from(
        &self,
        table: Table,
        start: &[u8],
        limit: usize,
    ) -> Result<Vec<Entry>, StoreError> {
        let txn = self.db.begin_read().map_err(err)?;
        let t = txn.open_table(def(table)).map_err(err)?;
        let mut out = Vec::new();
        for entry in t.range::<&[u8]>(start..).map_err(err)?.take(limit) {
            let (k, v) = entry.map_err(err)?;
            out.push((k.value().to_vec(), v.value().to_vec()));
        }
        Ok(out)
    }

    fn write(
        &self,
        f: &mut dyn FnMut(&mut dyn WriteTxn) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let mut state = self.lock();
        if state.poisoned {
            return Err(poisoned());
        }
        self.transaction(Durability::Immediate, f)?;
        // The durable commit also made every earlier logged batch durable.
        self.checkpoint_locked(&mut state)
    }

    fn write_logged(
        &self,
        record: &[u8],
        f: &mut dyn FnMut(&mut dyn WriteTxn) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let mut state = self.lock();
        if state.poisoned {
            return Err(poisoned());
        }
        let seq = state.next_seq;
        let mut txn = self.db.begin_write().map_err(err)?;
        txn.set_durability(Durability::None).map_err(err)?;
        {
            let mut view = RedbTxn::new(&txn);
            f(&mut view)?;
            // In the same transaction: whichever way redb's state becomes
            // durable (a checkpoint, or redb itself promoting non-durable
            // commits when the database closes), it says which batches it
            // holds, so that none is ever applied twice.
            view.put(Table::Meta, WAL_APPLIED, &seq.to_be_bytes())?;
        }
        // Logged and synced before the commit makes it visible to readers:
        // nobody can see a change that a crash could take back.
        state.wal.append(seq, record)?;
        state.next_seq += 1;
        if let Err(e) = txn.commit() {
            state.poisoned = true;
            tracing::error!(error = %e, seq, "a logged batch could not be committed; restart to replay the log");
            return Err(err(e));
        }
        if state.last_checkpoint.elapsed() >= state.interval || state.wal.len() >= CHECKPOINT_BYTES
        {
            if let Err(e) = self.checkpoint_locked(&mut state) {
                // The batch itself is durable in the log; the next write tries again.
                tracing::error!(error = %e, "checkpoint failed");
            }
        }
        Ok(())
    }
}

fn poisoned() -> StoreError {
    StoreError::Backend {
        backend: Backend::Redb,
        detail: "an earlier commit failed after it was logged; restart the CA to replay the log"
            .into(),
    }
}

fn scan(
    table: &impl ReadableTable<&'static [u8], &'static [u8]>,
    prefix: &[u8],
    limit: usize,
) -> Result<Vec<Entry>, StoreError> {
    let mut out = Vec::new();
    for entry in table.range::<&[u8]>(prefix..).map_err(err)? {
        let (k, v) = entry.map_err(err)?;
        if !k.value().starts_with(prefix) || out.len() >= limit {
            break;
        }
        out.push((k.value().to_vec(), v.value().to_vec()));
    }
    Ok(out)
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
        scan(self.table(table)?, prefix, limit)
    }
}
