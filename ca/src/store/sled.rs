//! The sled backend (sled 0.34.7), selectable with `--store sled` at init.
//!
//! What it does not guarantee, and why redb is the default:
//!
//! - sled 0.34.7's `flush()` ends in `sync_file_range`, not `fsync`: an
//!   acknowledged write survives a crash of the CA process but can be lost
//!   on power failure or a kernel crash until sled's periodic fsync (every
//!   500 ms) has run (sled issue #1452).
//! - `flush_async()` deadlocks with many concurrent callers (sled
//!   #1308/#1357, fixed on master, never released), so this backend calls
//!   the synchronous `flush()`, from the single writer only.
//! - 0.34.7 is sled's last release (2021).
//!
//! All tables live in sled's default tree, each under a one-byte key
//! prefix, so that a multi-table write is one atomic `apply_batch`.
//!
//! Concurrency: writes run one at a time (`write_lock`), each closure once,
//! without sled's transactions (which may run it again). A `get` sees a
//! batch whole or not at all, and so does each step of an iterator, but a
//! scan takes many steps and sled's iterators copy the tree one leaf (16
//! keys) at a time: a batch applied in between would show in part. So
//! scans and batches exclude each other (`scan_lock`).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Mutex, RwLock};

use super::{Backend, Entry, Store, StoreError, Table, WriteTxn};

fn err(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend {
        backend: Backend::Sled,
        detail: e.to_string(),
    }
}

fn full_key(table: Table, key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(key.len() + 1);
    k.push(table.index() as u8);
    k.extend_from_slice(key);
    k
}

/// A sled database directory.
pub struct SledStore {
    db: ::sled::Db,
    // The read-check-write inside one `write` is atomic only if writes do
    // not interleave: sled's batch is atomic, its reads are not transactional.
    write_lock: Mutex<()>,
    // Held to read while a scan iterates, to write while a batch is
    // applied: a scan sees one committed state.
    scan_lock: RwLock<()>,
}

impl SledStore {
    /// Opens the database at `path`, creating it if needed. Fails if
    /// another process has it open.
    ///
    /// sled 0.34 releases its file lock only when its flusher thread exits,
    /// which can be after the `Db` is dropped (sled #1289): a reopen in the
    /// same process waits up to [`LOCK_WAIT`] for that, then fails.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        Self::open_with_cache(path, super::DEFAULT_CACHE_BYTES)
    }

    /// [`SledStore::open`] with a page cache of at most `cache_bytes`.
    pub fn open_with_cache(path: &Path, cache_bytes: u64) -> Result<Self, StoreError> {
        let config = ::sled::Config::new().path(path).cache_capacity(cache_bytes);
        let deadline = std::time::Instant::now() + LOCK_WAIT;
        let db = loop {
            match config.open() {
                Ok(db) => break db,
                Err(e) if is_lock_contention(&e) && std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                Err(e) => return Err(err(e)),
            }
        };
        Ok(Self {
            db,
            write_lock: Mutex::new(()),
            scan_lock: RwLock::new(()),
        })
    }
}

/// Longest wait for sled's file lock when opening.
pub const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// sled 0.34.7 reports a held lock only in the text of an `Other` I/O
/// error (its `config.rs`).
fn is_lock_contention(e: &::sled::Error) -> bool {
    matches!(e, ::sled::Error::Io(io)
        if io.kind() == std::io::ErrorKind::Other
            && io.to_string().starts_with("could not acquire lock"))
}

impl Store for SledStore {
    fn backend(&self) -> Backend {
        Backend::Sled
    }

    fn size_on_disk(&self) -> u64 {
        self.db.size_on_disk().unwrap_or(0)
    }

    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .db
            .get(full_key(table, key))
            .map_err(err)?
            .map(|v| v.to_vec()))
    }

    fn scan_prefix(
        &self,
        table: Table,
        prefix: &[u8],
        limit: usize,
    ) -> Result<Vec<Entry>, StoreError> {
        let mut out = Vec::new();
        let _batches_wait = self.scan_lock.read().unwrap_or_else(|p| p.into_inner());
        for entry in self.db.scan_prefix(full_key(table, prefix)).take(limit) {
            let (k, v) = entry.map_err(err)?;
            out.push((k[1..].to_vec(), v.to_vec()));
        }
        Ok(out)
    }

    fn scan_from(
        &self,
        table: Table,
        start: &[u8],
        limit: usize,
    ) -> Result<Vec<Entry>, StoreError> {
        let mut out = Vec::new();
        let prefix = [table.index() as u8];
        let _batches_wait = self.scan_lock.read().unwrap_or_else(|p| p.into_inner());
        for entry in self.db.range(full_key(table, start)..) {
            let (k, v) = entry.map_err(err)?;
            if !k.starts_with(&prefix) || out.len() >= limit {
                break;
            }
            out.push((k[1..].to_vec(), v.to_vec()));
        }
        Ok(out)
    }

    fn write(
        &self,
        f: &mut dyn FnMut(&mut dyn WriteTxn) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let _guard = self.write_lock.lock().unwrap_or_else(|p| p.into_inner());
        let mut view = SledTxn {
            db: &self.db,
            pending: BTreeMap::new(),
        };
        f(&mut view)?;
        if view.pending.is_empty() {
            return Ok(());
        }
        let mut batch = ::sled::Batch::default();
        for (k, v) in view.pending {
            match v {
                Some(v) => batch.insert(k, v),
                None => batch.remove(k),
            }
        }
        {
            let _scans_wait = self.scan_lock.write().unwrap_or_else(|p| p.into_inner());
            self.db.apply_batch(batch).map_err(err)?;
        }
        self.db.flush().map_err(err)?;
        Ok(())
    }
}

struct SledTxn<'a> {
    db: &'a ::sled::Db,
    pending: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
}

impl WriteTxn for SledTxn<'_> {
    fn get(&mut self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let k = full_key(table, key);
        if let Some(v) = self.pending.get(&k) {
            return Ok(v.clone());
        }
        Ok(self.db.get(k).map_err(err)?.map(|v| v.to_vec()))
    }

    fn put(&mut self, table: Table, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        self.pending
            .insert(full_key(table, key), Some(value.to_vec()));
        Ok(())
    }

    fn delete(&mut self, table: Table, key: &[u8]) -> Result<(), StoreError> {
        self.pending.insert(full_key(table, key), None);
        Ok(())
    }

    fn scan_prefix(
        &mut self,
        table: Table,
        prefix: &[u8],
        limit: usize,
    ) -> Result<Vec<Entry>, StoreError> {
        let full = full_key(table, prefix);
        // Committed entries, then this transaction's writes over them. A
        // pending delete can hide a committed entry, so read past `limit`
        // by the number of pending writes under the prefix.
        let pending: Vec<_> = self
            .pending
            .range(full.clone()..)
            .take_while(|(k, _)| k.starts_with(&full))
            .collect();
        let mut merged = BTreeMap::new();
        for entry in self
            .db
            .scan_prefix(&full)
            .take(limit.saturating_add(pending.len()))
        {
            let (k, v) = entry.map_err(err)?;
            merged.insert(k.to_vec(), v.to_vec());
        }
        for (k, v) in pending {
            match v {
                Some(v) => merged.insert(k.clone(), v.clone()),
                None => merged.remove(k),
            };
        }
        Ok(merged
            .into_iter()
            .take(limit)
            .map(|(k, v)| (k[1..].to_vec(), v))
            .collect())
    }
}
