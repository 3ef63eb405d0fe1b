//! PostgreSQL: the store that several CA replicas share.
//!
//! The key-value model of [`Store`] maps onto one table,
//! `agentca_kv (tbl smallint, key bytea, value bytea)`, keyed by the
//! [`Table`]'s number and the key. PostgreSQL compares `bytea` bytewise, so
//! key order and prefix scans are those of the embedded backends.
//!
//! **Serializable writes across replicas.** Every [`Store::write`] runs in
//! one PostgreSQL transaction that first takes a transaction-scoped
//! advisory lock ([`WRITE_LOCK`]): write transactions of every replica run
//! one at a time, and each statement after the lock (READ COMMITTED) sees
//! every transaction committed before it. That is the contract's
//! serializability, whichever replica a write comes from: a token is
//! redeemed once, a sequence hands out each number once, the audit chain
//! has one head. Each replica already gathers its writes into one
//! transaction per batch (group commit), so the lock is taken once per
//! batch, not per request. A transaction's writes are kept in memory and
//! sent in two statements at commit; its reads see them first.
//!
//! **Blocking.** The [`Store`] trait is synchronous. This store drives its
//! connections on a runtime of its own and blocks the calling thread on
//! each statement: on a worker of a multi-thread tokio runtime through
//! [`tokio::task::block_in_place`], so the worker's other tasks move on.
//! Every wait is bounded ([`Timeouts`]): an unreachable database is a
//! quick [`StoreError::Backend`], which the HTTP layer answers with
//! `503 store_unavailable`, and the pool reconnects by itself when the
//! database is back.
//!
//! **Commits are announced.** Each write transaction sends
//! `NOTIFY agentca_commit` ([`COMMIT_CHANNEL`]) with its commit; a
//! replica learns of other replicas' commits from [`Store::commits`].
//!
//! Schema changes are numbered migrations ([`migrations`]), applied at
//! open under a session advisory lock, so replicas starting together do
//! not race.

mod migrations;
mod notify;
mod txn;
pub mod url;

#[cfg(test)]
#[path = "../../../../tests/support/postgres.rs"]
pub(crate) mod cluster;

use std::future::Future;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod};
use tokio::runtime::{Handle, Runtime, RuntimeFlavor};
use tokio::sync::watch;

pub use self::url::PostgresUrl;
use super::{Backend, Entry, Store, StoreError, Table, WriteTxn};

/// The advisory lock every write transaction takes first ("agentca" 01).
pub const WRITE_LOCK: i64 = 0x6167_656e_7463_6101;
/// The advisory lock schema migrations are applied under ("agentca" 02).
pub const MIGRATION_LOCK: i64 = 0x6167_656e_7463_6102;
/// The channel each write transaction notifies on commit.
pub const COMMIT_CHANNEL: &str = "agentca_commit";

/// How long the store waits for the database. Each is a bound, not a
/// delay: a healthy database answers in milliseconds.
#[derive(Clone, Copy, Debug)]
pub struct Timeouts {
    /// Opening a connection.
    pub connect: Duration,
    /// Waiting for a free connection of the pool.
    pub pool_wait: Duration,
    /// One statement, waiting for the write lock included.
    pub statement: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(2),
            pool_wait: Duration::from_secs(2),
            statement: Duration::from_secs(5),
        }
    }
}

/// Most connections one replica opens.
pub const POOL_SIZE: usize = 16;

fn err(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend {
        backend: Backend::Postgres,
        detail: e.to_string(),
    }
}

/// An error of the database or its driver, with its causes: tokio-postgres
/// says only "db error" and keeps what PostgreSQL said in the source.
fn db(e: impl std::error::Error) -> StoreError {
    err(agentca::error_chain(&e))
}

/// A [`Table`]'s number in `agentca_kv.tbl`: its place in [`Table::ALL`],
/// as in the embedded store's log.
fn tbl(table: Table) -> i16 {
    table.index() as i16
}

/// The store on a PostgreSQL database.
pub struct PostgresStore {
    /// Drives the connections; `None` only while dropping.
    runtime: Option<Runtime>,
    pool: Pool,
    timeouts: Timeouts,
    commits: watch::Receiver<u64>,
}

impl PostgresStore {
    /// Connects to the database at `url`, applies the schema migrations
    /// this build knows, and listens for other replicas' commits.
    pub fn open(url: &PostgresUrl, timeouts: Timeouts) -> Result<Self, StoreError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("agentca-postgres")
            .enable_all()
            .build()
            .map_err(|e| err(format!("cannot start the PostgreSQL runtime: {e}")))?;
        let mut config = url.config().clone();
        config.connect_timeout(timeouts.connect);
        let ms = timeouts.statement.as_millis();
        // A replica that stops in a transaction (frozen, partitioned) must
        // not hold the write lock for longer than that.
        config.options(format!(
            "-c statement_timeout={ms} -c lock_timeout={ms} \
             -c idle_in_transaction_session_timeout={}",
            2 * ms
        ));
        let tls = url.tls()?;
        let manager = Manager::from_config(
            config.clone(),
            tls.clone(),
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .wait_timeout(Some(timeouts.pool_wait))
            .create_timeout(Some(timeouts.connect))
            .recycle_timeout(Some(timeouts.statement))
            .build()
            .map_err(db)?;
        let commits = notify::listen(runtime.handle(), config, tls);
        let store = Self {
            runtime: Some(runtime),
            pool,
            timeouts,
            commits,
        };
        store.pooled(|client| async move { migrations::apply(&client).await })?;
        Ok(store)
    }

    fn runtime(&self) -> &Runtime {
        self.runtime.as_ref().expect("present until dropped")
    }

    /// Runs `fut` on this store's runtime and waits for it, from any thread.
    fn block_on<F>(&self, fut: F) -> F::Output
    where
        F: Future + Send,
        F::Output: Send,
    {
        let runtime = self.runtime();
        match Handle::try_current().map(|h| h.runtime_flavor()) {
            // A plain thread (the writer thread, a command).
            Err(_) => runtime.block_on(fut),
            // A tokio worker: hand its other tasks to another worker meanwhile.
            Ok(RuntimeFlavor::MultiThread) => tokio::task::block_in_place(|| runtime.block_on(fut)),
            // A single-threaded runtime cannot lend its thread: wait on
            // another one (tests and one-shot commands only).
            Ok(_) => std::thread::scope(|s| {
                s.spawn(|| runtime.block_on(fut))
                    .join()
                    .unwrap_or_else(|p| std::panic::resume_unwind(p))
            }),
        }
    }

    /// Runs `fut` as [`Self::block_on`] does, bounded by the timeouts: a
    /// database that does not answer is an error, not a hang.
    fn run<T: Send>(
        &self,
        fut: impl Future<Output = Result<T, StoreError>> + Send,
    ) -> Result<T, StoreError> {
        self.run_within(self.timeouts.statement + self.timeouts.pool_wait, fut)
    }

    /// Runs `fut` as [`Self::block_on`] does, for at most `bound`.
    fn run_within<T: Send>(
        &self,
        bound: Duration,
        fut: impl Future<Output = Result<T, StoreError>> + Send,
    ) -> Result<T, StoreError> {
        self.block_on(async {
            tokio::time::timeout(bound, fut)
                .await
                .map_err(|_| err("the database did not answer in time"))?
        })
    }

    /// A connection from the pool.
    async fn connection(&self) -> Result<Object, StoreError> {
        self.pool.get().await.map_err(|e| {
            err(format!(
                "no connection to the database: {}",
                agentca::error_chain(&e)
            ))
        })
    }

    /// `work` on a pooled connection, bounded by the timeouts.
    fn pooled<T, F>(&self, work: impl FnOnce(Object) -> F + Send) -> Result<T, StoreError>
    where
        T: Send,
        F: Future<Output = Result<T, StoreError>> + Send,
    {
        self.run(async { work(self.connection().await?).await })
    }
}

/// The value under `key`, read on `client`.
async fn get_on(client: &Object, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
    let statement = client
        .prepare_cached("SELECT value FROM agentca_kv WHERE tbl = $1 AND key = $2")
        .await
        .map_err(db)?;
    let rows = client
        .query(&statement, &[&tbl(table), &key])
        .await
        .map_err(db)?;
    Ok(rows.first().map(|row| row.get(0)))
}

/// Up to `limit` entries at or after `start` that begin with `prefix`, in
/// key order, read on `client`.
async fn scan_on(
    client: &Object,
    table: Table,
    start: &[u8],
    prefix: &[u8],
    limit: usize,
) -> Result<Vec<Entry>, StoreError> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let rows = match successor(prefix) {
        Some(end) => {
            let statement = client
                .prepare_cached(
                    "SELECT key, value FROM agentca_kv \
                     WHERE tbl = $1 AND key >= $2 AND key < $3 ORDER BY key LIMIT $4",
                )
                .await
                .map_err(db)?;
            client
                .query(&statement, &[&tbl(table), &start, &end, &limit])
                .await
        }
        None => {
            let statement = client
                .prepare_cached(
                    "SELECT key, value FROM agentca_kv \
                     WHERE tbl = $1 AND key >= $2 ORDER BY key LIMIT $3",
                )
                .await
                .map_err(db)?;
            client
                .query(&statement, &[&tbl(table), &start, &limit])
                .await
        }
    }
    .map_err(db)?;
    Ok(rows
        .into_iter()
        .map(|row| (row.get(0), row.get(1)))
        .filter(|(k, _): &Entry| k.starts_with(prefix))
        .collect())
}

/// The smallest key greater than every key that starts with `prefix`;
/// `None` when there is none (an empty prefix, or all 0xFF bytes).
fn successor(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

impl Drop for PostgresStore {
    fn drop(&mut self) {
        // Dropping a runtime blocks; this may run on a tokio worker.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl Store for PostgresStore {
    fn backend(&self) -> Backend {
        Backend::Postgres
    }

    fn size_on_disk(&self) -> u64 {
        let size = self.pooled(|client| async move {
            let row = client
                .query_one("SELECT pg_total_relation_size('agentca_kv')::bigint", &[])
                .await
                .map_err(db)?;
            Ok(row.get::<_, i64>(0))
        });
        size.ok().and_then(|n| u64::try_from(n).ok()).unwrap_or(0)
    }

    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.pooled(|client| async move { get_on(&client, table, key).await })
    }

    fn scan_prefix(
        &self,
        table: Table,
        prefix: &[u8],
        limit: usize,
    ) -> Result<Vec<Entry>, StoreError> {
        self.pooled(|client| async move { scan_on(&client, table, prefix, prefix, limit).await })
    }

    fn scan_from(
        &self,
        table: Table,
        start: &[u8],
        limit: usize,
    ) -> Result<Vec<Entry>, StoreError> {
        self.pooled(|client| async move { scan_on(&client, table, start, &[], limit).await })
    }

    fn write(
        &self,
        f: &mut dyn FnMut(&mut dyn WriteTxn) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        txn::write(self, f)
    }

    fn commits(&self) -> Option<watch::Receiver<u64>> {
        Some(self.commits.clone())
    }
}

#[cfg(test)]
mod tests;
