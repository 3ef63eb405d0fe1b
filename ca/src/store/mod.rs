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

pub mod redb;
pub mod sled;
pub mod wal;
pub mod writer;

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
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Backend::Redb => "redb",
            Backend::Sled => "sled",
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
}

impl Table {
    /// Every table.
    pub const ALL: [Table; 14] = [
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
        }
    }

    fn index(self) -> usize {
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

    /// Writes `value` under `key` only if the key is absent; returns
    /// whether it wrote.
    fn insert_new(&mut self, table: Table, key: &[u8], value: &[u8]) -> Result<bool, StoreError> {
        if self.get(table, key)?.is_some() {
            return Ok(false);
        }
        self.put(table, key, value)?;
        Ok(true)
    }

    /// Appends to the sequence `name` (8 big-endian bytes in
    /// [`Table::Meta`]): returns its new last number, 1 for the first.
    fn next_in_sequence(&mut self, name: &str) -> Result<u64, StoreError> {
        let next = sequence_value(self.get(Table::Meta, name.as_bytes())?.as_deref(), name)? + 1;
        self.put(Table::Meta, name.as_bytes(), &next.to_be_bytes())?;
        Ok(next)
    }
}

/// The last number of the sequence `name` stored as `bytes` (0 if none).
pub fn sequence_value(bytes: Option<&[u8]>, name: &str) -> Result<u64, StoreError> {
    match bytes {
        None => Ok(0),
        Some(b) => {
            <[u8; 8]>::try_from(b)
                .map(u64::from_be_bytes)
                .map_err(|_| StoreError::Corrupt {
                    table: Table::Meta.name(),
                    detail: format!("sequence {name} is not 8 bytes"),
                })
        }
    }
}

/// Replays one write-ahead log record of an earlier version (whose records
/// held the layer above's changes, not writes) inside a transaction.
pub type LegacyReplay<'a> = &'a dyn Fn(&[u8], &mut dyn WriteTxn) -> Result<(), String>;

/// Opens (creating if needed) the store of `backend` under the data
/// directory `dir`. A log of an earlier version cannot be replayed here:
/// see [`open_with`].
pub fn open(backend: Backend, dir: &Path) -> Result<Arc<dyn Store>, StoreError> {
    open_with(backend, dir, None)
}

/// Opens (creating if needed) the store of `backend` under the data
/// directory `dir`, replaying the records of an earlier version's log with
/// `legacy`.
pub fn open_with(
    backend: Backend,
    dir: &Path,
    legacy: Option<LegacyReplay<'_>>,
) -> Result<Arc<dyn Store>, StoreError> {
    Ok(match backend {
        Backend::Redb => {
            let (store, pending) =
                self::redb::RedbStore::open(&dir.join("store.redb"), &dir.join("store.wal"))?;
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
                store.replay(record.seq, &mut |txn| {
                    replay(&record.payload, txn).map_err(|e| corrupt(record.seq, &e))
                })?;
            }
            store.checkpoint()?;
            Arc::new(store)
        }
        Backend::Sled => Arc::new(self::sled::SledStore::open(&dir.join("store.sled"))?),
    })
}
