//! Persistence: a store that only stores.
//!
//! Everything the CA persists goes through one [`Store`]: a small
//! transactional key-value model (reads, writes, conditional writes and
//! sequences inside atomic, durable transactions) with two embedded
//! backends, [`redb`] (the default: a synced write-ahead log, with redb
//! written behind) and [`sled`]; and [`writer`], the single writer thread
//! that gathers concurrent jobs into one durable commit (group commit).
//!
//! The store knows nothing of agents, tokens, admins or revocations: what
//! the bytes mean and which writes are allowed is decided above it
//! ([`crate::state`]). Nothing here may depend on another module of the
//! CA.
//!
//! Reads go straight to the store and see the last committed (for redb:
//! logged) state.

pub mod frames;
pub mod layer;
pub mod postgres;
pub mod redb;
pub mod sled;
pub mod wal;
pub mod writer;

#[cfg(test)]
pub(crate) mod contract;
#[cfg(test)]
pub(crate) mod testing;

use std::fmt;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;

pub use writer::{Job, Writer};

/// A store failure: the disk, the database or a record that does not decode.
/// None of these is the caller's fault; the HTTP layer answers 500/503.
#[derive(Clone, Debug, thiserror::Error)]
pub enum StoreError {
    /// The backend failed.
    #[error("{backend} store: {detail}")]
    Backend {
        /// Which backend.
        backend: Backend,
        /// What it said.
        detail: String,
    },
    /// A stored record does not decode: the store is damaged or from an
    /// incompatible version.
    #[error("a stored {table} record does not decode: {detail}")]
    Corrupt {
        /// The table.
        table: &'static str,
        /// What failed.
        detail: String,
    },
    /// The writer task has stopped (the CA is shutting down).
    #[error("the store writer has stopped")]
    WriterStopped,
}

/// Which embedded database holds the CA's state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// redb: a real fdatasync on every commit; stable file format.
    #[default]
    Redb,
    /// sled 0.34.7: see the module docs of [`crate::store::sled`] for what
    /// it does not guarantee.
    Sled,
    /// PostgreSQL, shared by several replicas: see [`crate::store::postgres`].
    Postgres,
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Backend::Redb => "redb",
            Backend::Sled => "sled",
            Backend::Postgres => "postgres",
        })
    }
}

impl FromStr for Backend {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "redb" => Ok(Backend::Redb),
            "sled" => Ok(Backend::Sled),
            other => Err(format!("unknown store backend {other:?}; use redb or sled")),
        }
    }
}

/// The tables of the store. Keys and values are bytes; what each holds is
/// decided above the store (`state/records.rs`, `audit/record.rs`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Table {
    /// Counters and settings.
    Meta,
    /// Registered agents by `tenant/env/agent`.
    Agents,
    /// Bootstrap tokens by SHA-256 of the token.
    Tokens,
    /// Issued certificates by serial.
    Certs,
    /// Index: `tenant/env/agent` NUL serial, for an agent's certificates.
    AgentCerts,
    /// Admin tokens by SHA-256 of the token.
    Admins,
    /// Clone alerts by `tenant/env/agent` NUL sequence number.
    Alerts,
    /// Index: instance id NUL serial, for an instance's certificates.
    InstanceCerts,
    /// Index: `tenant/env/agent` NUL token hash, for an agent's tokens.
    AgentTokens,
    /// Index: notAfter (big-endian Unix seconds) then serial, for pruning.
    CertExpiry,
    /// Index: expiry (big-endian Unix seconds) then token hash, for pruning.
    TokenExpiry,
    /// The revocation feed: events by sequence number (big-endian u64).
    Revocations,
    /// The audit trail: events by sequence number (big-endian u64).
    Audit,
    /// Index: admin name to the hash of its token.
    AdminNames,
    /// Index: notAfter then serial, of expired certificates whose record
    /// was compacted (certificate bytes dropped), for pruning.
    ExpiredCerts,
    /// Versions of registrations: `tenant/env/agent` NUL version
    /// (big-endian u64).
    AgentHistory,
    /// The feed's scope events (withdrawals, blocks) by sequence number
    /// (big-endian u64), numbered with the revocations.
    ScopeEvents,
    /// Changes of registrations waiting for a second admin, by id
    /// (big-endian u64).
    PendingChanges,
    /// Versions of admins: name NUL version (big-endian u64).
    AdminHistory,
}

impl Table {
    /// Every table.
    pub const ALL: [Table; 19] = [
        Table::Meta,
        Table::Agents,
        Table::Tokens,
        Table::Certs,
        Table::AgentCerts,
        Table::Admins,
        Table::Alerts,
        Table::InstanceCerts,
        Table::AgentTokens,
        Table::CertExpiry,
        Table::TokenExpiry,
        Table::Revocations,
        Table::Audit,
        Table::AdminNames,
        Table::ExpiredCerts,
        Table::AgentHistory,
        Table::ScopeEvents,
        Table::PendingChanges,
        Table::AdminHistory,
    ];

    /// The table's name.
    pub fn name(self) -> &'static str {
        match self {
            Table::Meta => "meta",
            Table::Agents => "agents",
            Table::Tokens => "tokens",
            Table::Certs => "certs",
            Table::AgentCerts => "agent_certs",
            Table::Admins => "admins",
            Table::Alerts => "alerts",
            Table::InstanceCerts => "instance_certs",
            Table::AgentTokens => "agent_tokens",
            Table::CertExpiry => "cert_expiry",
            Table::TokenExpiry => "token_expiry",
            Table::Revocations => "revocations",
            Table::Audit => "audit",
            Table::AdminNames => "admin_names",
            Table::ExpiredCerts => "expired_certs",
            Table::AgentHistory => "agent_history",
            Table::ScopeEvents => "scope_events",
            Table::PendingChanges => "pending_changes",
            Table::AdminHistory => "admin_history",
        }
    }

    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

/// A key and its value.
pub type Entry = (Vec<u8>, Vec<u8>);

/// A key-value store with atomic, durable multi-table writes.
///
/// Implementations guarantee that when [`Store::write`] returns `Ok`, every
/// write made in it is on disk (as far as the backend can promise: see
/// [`crate::store::sled`]) and that a failed `write` changed nothing.
///
/// A store is shared between threads, and guarantees:
///
/// - concurrent `write` calls are serializable: each transaction sees every
///   write committed before it and none of the others', and commits as if
///   it had run alone, in one total commit order (both backends run one
///   transaction at a time). Both call `f` once per `write`; a backend
///   that retries conflicting transactions may call it again, so `f` must
///   start over on each call rather than keep what an earlier call found;
/// - each read outside a transaction (`get`, `scan_prefix`, `scan_from`)
///   sees one committed state: a scan never shows part of a write. Two
///   reads may see different states.
///
/// The contract suite (`store/contract.rs`) tests this on every backend.
pub trait Store: Send + Sync + 'static {
    /// Which backend this is.
    fn backend(&self) -> Backend;

    /// Bytes of the store's files on disk (0 if unknown).
    fn size_on_disk(&self) -> u64;

    /// The value under `key`, from the last committed state.
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;

    /// Up to `limit` entries whose key starts with `prefix`, in key order.
    fn scan_prefix(
        &self,
        table: Table,
        prefix: &[u8],
        limit: usize,
    ) -> Result<Vec<Entry>, StoreError>;

    /// Up to `limit` entries with keys at or after `start`, in key order.
    fn scan_from(&self, table: Table, start: &[u8], limit: usize)
        -> Result<Vec<Entry>, StoreError>;

    /// Runs `f` in one write transaction and commits it durably: when this
    /// returns `Ok`, every write of `f` is on disk (for redb, in its
    /// write-ahead log). If `f` fails, nothing it wrote is kept.
    fn write(
        &self,
        f: &mut dyn FnMut(&mut dyn WriteTxn) -> Result<(), StoreError>,
    ) -> Result<(), StoreError>;

    /// The last value [`WriteTxn::next_in_sequence`] handed out for `name`
    /// in a committed write, 0 if none did (format errors as there). As
    /// long as nothing else writes the key, a later read never returns
    /// less.
    fn sequence(&self, name: &str) -> Result<u64, StoreError> {
        sequence_value(name, self.get(Table::Meta, name.as_bytes())?)
    }

    /// A consistent copy of every table's entries, in key order, without
    /// the backend's own bookkeeping: what a backup holds. It is read in
    /// one write transaction, so it sees one committed state, and writes
    /// wait while it reads.
    fn snapshot(&self) -> Result<Snapshot, StoreError> {
        let mut tables = Vec::with_capacity(Table::ALL.len());
        self.write(&mut |txn| {
            tables.clear();
            for table in Table::ALL {
                tables.push((table, txn.scan_prefix(table, &[], usize::MAX)?));
            }
            Ok(())
        })?;
        Ok(tables)
    }

    /// For a store that other processes write too (other replicas): a
    /// counter that moves after they commit, and whenever their commits
    /// may have gone unheard. Whoever keeps state derived from the store
    /// reads it again when it moves. `None` for a store only this process
    /// writes.
    fn commits(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        None
    }
}

/// Every table's entries, in table and key order.
pub type Snapshot = Vec<(Table, Vec<Entry>)>;

/// Writes `snapshot` into `store`, which must be empty (of anything but
/// its backend's own bookkeeping), in one transaction.
pub fn load(store: &dyn Store, snapshot: &Snapshot) -> Result<(), StoreError> {
    if let Some((table, _)) = store.snapshot()?.iter().find(|(_, e)| !e.is_empty()) {
        return Err(StoreError::Backend {
            backend: store.backend(),
            detail: format!(
                "the store is not empty (table {}): restore into a new one",
                table.name()
            ),
        });
    }
    store.write(&mut |txn| {
        for (table, entries) in snapshot {
            for (key, value) in entries {
                txn.put(*table, key, value)?;
            }
        }
        Ok(())
    })
}

/// The value of sequence `name` as stored in [`Table::Meta`]: 8 bytes,
/// big-endian; 0 if absent.
fn sequence_value(name: &str, stored: Option<Vec<u8>>) -> Result<u64, StoreError> {
    let Some(bytes) = stored else {
        return Ok(0);
    };
    let bytes: [u8; 8] = bytes
        .as_slice()
        .try_into()
        .map_err(|_| StoreError::Corrupt {
            table: Table::Meta.name(),
            detail: format!("counter {name} is not 8 bytes"),
        })?;
    Ok(u64::from_be_bytes(bytes))
}

/// The view of the store inside [`Store::write`]: reads see the
/// transaction's own writes.
pub trait WriteTxn {
    /// The value under `key`, including this transaction's writes.
    fn get(&mut self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;
    /// Sets `key` to `value`.
    fn put(&mut self, table: Table, key: &[u8], value: &[u8]) -> Result<(), StoreError>;
    /// Removes `key`, if present.
    fn delete(&mut self, table: Table, key: &[u8]) -> Result<(), StoreError>;
    /// Up to `limit` entries whose key starts with `prefix`, in key order,
    /// including this transaction's writes.
    fn scan_prefix(
        &mut self,
        table: Table,
        prefix: &[u8],
        limit: usize,
    ) -> Result<Vec<Entry>, StoreError>;

    /// A hint that this transaction is about to read `keys`: a backend
    /// whose reads are round trips (PostgreSQL) reads them all at once, so
    /// that the reads that follow find them. It changes no result: a key
    /// left out is read when asked for, and one never asked for costs only
    /// its share of the one read. The embedded backends ignore it.
    fn prefetch(&mut self, keys: &[(Table, Vec<u8>)]) -> Result<(), StoreError> {
        let _ = keys;
        Ok(())
    }

    /// Whether [`WriteTxn::prefetch`] does anything here: when it does not,
    /// callers need not gather the keys.
    fn prefetches(&self) -> bool {
        false
    }

    // Conditional writes and sequences. They are provided, built on the
    // four methods above, so every backend has them; a backend may override
    // them with a native form (e.g. `INSERT … ON CONFLICT DO NOTHING`) that
    // keeps the same results. Their guarantee under concurrency is that of
    // `Store::write` (see [`Store`]): transactions are serializable, so
    // what one of them checks still holds when it commits. What they return
    // counts only if the write they ran in returns `Ok`.

    /// Writes `value` under `key` only if `key` is absent (this
    /// transaction's own writes included); returns whether it wrote.
    ///
    /// Of several concurrent `Store::write` calls that insert the same key,
    /// exactly one that commits gets `true`; the others get `false` and
    /// write nothing.
    fn insert_new(&mut self, table: Table, key: &[u8], value: &[u8]) -> Result<bool, StoreError> {
        if self.get(table, key)?.is_some() {
            return Ok(false);
        }
        self.put(table, key, value)?;
        Ok(true)
    }

    /// If the value under `key` is `expected` (`None`: absent), sets it to
    /// `new` (`None`: deletes it) and returns `Ok(Ok(()))`; otherwise
    /// writes nothing and returns `Ok(Err(current))` with the value found.
    ///
    /// The comparison and the write are one step of the transaction: under
    /// concurrent `Store::write` calls, no other commit comes between them,
    /// so a read-compute-swap loop that retries with the value returned by
    /// a failed swap loses no update.
    fn compare_and_swap(
        &mut self,
        table: Table,
        key: &[u8],
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
    ) -> Result<Result<(), Option<Vec<u8>>>, StoreError> {
        let current = self.get(table, key)?;
        if current.as_deref() != expected {
            return Ok(Err(current));
        }
        match new {
            Some(value) => self.put(table, key, value)?,
            None => self.delete(table, key)?,
        }
        Ok(Ok(()))
    }

    /// Appends to the sequence `name` and returns the new value: 1 for the
    /// first. The sequence is kept in [`Table::Meta`] under the key `name`,
    /// as 8 bytes big-endian; any other stored value is
    /// [`StoreError::Corrupt`], as is a sequence at `u64::MAX`.
    ///
    /// Under concurrent `Store::write` calls, the values handed out by
    /// committed writes are unique and, in commit order, 1, 2, 3… with no
    /// gap: a write that fails hands out nothing (the next one gets the
    /// same value again). Called twice in one transaction, it returns two
    /// consecutive values. Sequences share [`Table::Meta`] with other
    /// keys: their names must not collide with those.
    fn next_in_sequence(&mut self, name: &str) -> Result<u64, StoreError> {
        let current = sequence_value(name, self.get(Table::Meta, name.as_bytes())?)?;
        let next = current.checked_add(1).ok_or_else(|| StoreError::Corrupt {
            table: Table::Meta.name(),
            detail: format!("counter {name} is at its maximum"),
        })?;
        self.put(Table::Meta, name.as_bytes(), &next.to_be_bytes())?;
        Ok(next)
    }
}

/// Replays one write-ahead log record of an earlier version (whose records
/// held the layer above's changes, not writes) inside a transaction.
/// A record that does not parse is [`StoreError::Corrupt`]; the store's own
/// errors while applying it pass through unchanged.
pub type LegacyReplay<'a> = &'a dyn Fn(&[u8], &mut dyn WriteTxn) -> Result<(), StoreError>;

/// Where a store is: files in a data directory, or a database.
#[derive(Clone, Debug)]
pub enum Location {
    /// An embedded store (redb or sled) in the data directory `dir`.
    Embedded {
        /// Which backend.
        backend: Backend,
        /// The data directory.
        dir: std::path::PathBuf,
    },
    /// A PostgreSQL database that several replicas may share.
    Postgres(Box<postgres::PostgresUrl>),
}

impl Location {
    /// Which backend the store there is.
    pub fn backend(&self) -> Backend {
        match self {
            Location::Embedded { backend, .. } => *backend,
            Location::Postgres(_) => Backend::Postgres,
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Embedded { backend, dir } => write!(f, "{backend} in {}", dir.display()),
            Location::Postgres(url) => write!(f, "{url}"),
        }
    }
}

/// What `--store` names: an embedded backend, kept in the data directory,
/// or a PostgreSQL database by its URL.
#[derive(Clone, Debug)]
pub enum StoreChoice {
    /// `redb` or `sled`.
    Embedded(Backend),
    /// `postgres://…`.
    Postgres(Box<postgres::PostgresUrl>),
}

impl FromStr for StoreChoice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s.starts_with("postgres://") || s.starts_with("postgresql://") {
            return s.parse().map(|url| StoreChoice::Postgres(Box::new(url)));
        }
        match s.parse::<Backend>() {
            Ok(Backend::Postgres) | Err(_) => Err(format!(
                "unknown store {s:?}; use redb, sled or a postgres:// URL"
            )),
            Ok(backend) => Ok(StoreChoice::Embedded(backend)),
        }
    }
}

impl fmt::Display for StoreChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreChoice::Embedded(backend) => write!(f, "{backend}"),
            StoreChoice::Postgres(url) => write!(f, "{url}"),
        }
    }
}

/// The embedded stores' page cache when not configured (`serve
/// --store-cache`): the store's memory is bounded by it, whatever the
/// store's size (redb's own default is 1 GiB).
pub const DEFAULT_CACHE_BYTES: u64 = 64 * 1024 * 1024;

/// Opens (creating if needed) the store at `location`, replaying the
/// records of an earlier version's log with `legacy` (embedded stores),
/// with a page cache of `cache_bytes` (embedded stores).
pub fn open_location(
    location: &Location,
    legacy: Option<LegacyReplay<'_>>,
    cache_bytes: u64,
) -> Result<Arc<dyn Store>, StoreError> {
    match location {
        Location::Embedded { backend, dir } => open_with(*backend, dir, legacy, cache_bytes),
        Location::Postgres(url) => Ok(Arc::new(postgres::PostgresStore::open(
            url,
            postgres::Timeouts::default(),
        )?)),
    }
}

/// Opens (creating if needed) the store of `backend` under the data
/// directory `dir`. A log of an earlier version cannot be replayed here:
/// see [`open_with`].
pub fn open(backend: Backend, dir: &Path) -> Result<Arc<dyn Store>, StoreError> {
    open_with(backend, dir, None, DEFAULT_CACHE_BYTES)
}

/// Opens (creating if needed) the store of `backend` under the data
/// directory `dir`, replaying the records of an earlier version's log with
/// `legacy`, with a page cache of `cache_bytes`.
pub fn open_with(
    backend: Backend,
    dir: &Path,
    legacy: Option<LegacyReplay<'_>>,
    cache_bytes: u64,
) -> Result<Arc<dyn Store>, StoreError> {
    Ok(match backend {
        Backend::Redb => {
            let (store, pending) = self::redb::RedbStore::open_with_cache(
                &dir.join("store.redb"),
                &dir.join("store.wal"),
                cache_bytes,
            )?;
            if !pending.is_empty() {
                tracing::info!(batches = pending.len(), "replaying the write-ahead log");
            }
            let corrupt = |seq: u64, e: &dyn std::fmt::Display| StoreError::Corrupt {
                table: "write-ahead log",
                detail: format!("batch {seq}: {e}"),
            };
            for record in pending {
                if record.payload.first() == Some(&self::redb::BATCH_OF_WRITES) {
                    let writes = self::redb::decode_batch(&record.payload)
                        .map_err(|e| corrupt(record.seq, &e))?;
                    store.replay(record.seq, &mut |txn| {
                        for (table, key, value) in &writes {
                            match value {
                                Some(value) => txn.put(*table, key, value)?,
                                None => txn.delete(*table, key)?,
                            }
                        }
                        Ok(())
                    })?;
                    continue;
                }
                // A log of an earlier version: its records are changes, which
                // only the layer above understands.
                let Some(replay) = legacy else {
                    return Err(corrupt(
                        record.seq,
                        &"a log record of an earlier version, and no way to replay it",
                    ));
                };
                store.replay(record.seq, &mut |txn| replay(&record.payload, txn))?;
            }
            store.checkpoint()?;
            Arc::new(store)
        }
        Backend::Sled => Arc::new(self::sled::SledStore::open_with_cache(
            &dir.join("store.sled"),
            cache_bytes,
        )?),
        Backend::Postgres => {
            return Err(StoreError::Backend {
                backend,
                detail: "a PostgreSQL store is opened from its URL, not a directory".into(),
            })
        }
    })
}
