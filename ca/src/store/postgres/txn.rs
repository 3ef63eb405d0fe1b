//! One write transaction on PostgreSQL: the write lock, reads that see the
//! transaction's own writes first, and the writes sent in two statements
//! at commit.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;

use deadpool_postgres::Object;

use super::{db, err, get_on, scan_on, tbl, PostgresStore, COMMIT_CHANNEL, WRITE_LOCK};
use crate::store::layer::{self, empty_layer, Layer};
use crate::store::{Entry, StoreError, Table, WriteTxn};

/// Longest wait for a `ROLLBACK` after a failure; the connection is
/// dropped when it takes longer.
const ROLLBACK_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// Runs `f` in one transaction under the write lock and commits it.
pub(super) fn write(
    store: &PostgresStore,
    f: &mut dyn FnMut(&mut dyn WriteTxn) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    let client = store.run(store.connection())?;
    let begin = format!("BEGIN; SELECT pg_advisory_xact_lock({WRITE_LOCK})");
    let result = store
        .run(async { client.batch_execute(&begin).await.map_err(db) })
        .and_then(|()| {
            let mut txn = PgTxn {
                store,
                client: &client,
                writes: empty_layer(),
                read: empty_layer(),
            };
            f(&mut txn).and_then(|()| txn.commit())
        });
    if result.is_err() {
        // Whatever failed (a statement, the lock's wait, a timeout with a
        // statement still in flight), the transaction must not outlive it.
        // Briefly: after a timeout the database may not answer this either.
        let rolled_back = store.run_within(ROLLBACK_WAIT, async {
            client.batch_execute("ROLLBACK").await.map_err(db)
        });
        if rolled_back.is_err() {
            // Never hand a connection in an unknown state back to the pool.
            let _ = Object::take(client);
        }
    }
    result
}

struct PgTxn<'a> {
    store: &'a PostgresStore,
    client: &'a Object,
    /// This transaction's writes.
    writes: Layer,
    /// What it read from the database (`None`: absent). Under the write
    /// lock nothing else changes it, so each key is read at most once.
    read: Layer,
}

impl PgTxn<'_> {
    fn commit(&mut self) -> Result<(), StoreError> {
        let (mut put_tbl, mut put_key, mut put_value) = (Vec::new(), Vec::new(), Vec::new());
        let (mut del_tbl, mut del_key) = (Vec::new(), Vec::new());
        for (table, writes) in Table::ALL.iter().zip(&self.writes) {
            for (key, value) in writes {
                match value {
                    Some(value) => {
                        put_tbl.push(tbl(*table));
                        put_key.push(key.as_slice());
                        put_value.push(value.as_slice());
                    }
                    None => {
                        del_tbl.push(tbl(*table));
                        del_key.push(key.as_slice());
                    }
                }
            }
        }
        let client = self.client;
        self.store.run(async {
            if !put_key.is_empty() {
                let upsert = client
                    .prepare_cached(
                        "INSERT INTO agentca_kv (tbl, key, value) \
                         SELECT * FROM unnest($1::smallint[], $2::bytea[], $3::bytea[]) \
                         ON CONFLICT (tbl, key) DO UPDATE SET value = EXCLUDED.value",
                    )
                    .await
                    .map_err(db)?;
                client
                    .execute(&upsert, &[&put_tbl, &put_key, &put_value])
                    .await
                    .map_err(db)?;
            }
            if !del_key.is_empty() {
                let delete = client
                    .prepare_cached(
                        "DELETE FROM agentca_kv WHERE (tbl, key) IN \
                         (SELECT * FROM unnest($1::smallint[], $2::bytea[]))",
                    )
                    .await
                    .map_err(db)?;
                client
                    .execute(&delete, &[&del_tbl, &del_key])
                    .await
                    .map_err(db)?;
            }
            client
                .batch_execute(&format!("NOTIFY {COMMIT_CHANNEL}; COMMIT"))
                .await
                .map_err(|e| err(format!("the commit failed: {e}")))
        })
    }

    fn fetch(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.store.run(get_on(self.client, table, key))
    }
}

impl WriteTxn for PgTxn<'_> {
    fn prefetches(&self) -> bool {
        true
    }

    fn prefetch(&mut self, keys: &[(Table, Vec<u8>)]) -> Result<(), StoreError> {
        let mut wanted = BTreeSet::new();
        for (table, key) in keys {
            let i = table.index();
            if !self.writes[i].contains_key(key) && !self.read[i].contains_key(key) {
                wanted.insert((tbl(*table), key.as_slice()));
            }
        }
        if wanted.is_empty() {
            return Ok(());
        }
        let (tbls, keys): (Vec<i16>, Vec<&[u8]>) = wanted.iter().copied().unzip();
        let client = self.client;
        let rows = self.store.run(async {
            let statement = client
                .prepare_cached(
                    "SELECT tbl, key, value FROM agentca_kv WHERE (tbl, key) IN \
                     (SELECT * FROM unnest($1::smallint[], $2::bytea[]))",
                )
                .await
                .map_err(db)?;
            client.query(&statement, &[&tbls, &keys]).await.map_err(db)
        })?;
        let mut found = BTreeMap::new();
        for row in rows {
            found.insert(
                (row.get::<_, i16>(0), row.get::<_, Vec<u8>>(1)),
                row.get::<_, Vec<u8>>(2),
            );
        }
        for (t, key) in wanted {
            let value = found.remove(&(t, key.to_vec()));
            self.read[t as usize].insert(key.to_vec(), value);
        }
        Ok(())
    }

    fn get(&mut self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let i = table.index();
        if let Some(known) = self.writes[i].get(key).or_else(|| self.read[i].get(key)) {
            return Ok(known.clone());
        }
        let value = self.fetch(table, key)?;
        self.read[i].insert(key.to_vec(), value.clone());
        Ok(value)
    }

    fn put(&mut self, table: Table, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        self.writes[table.index()].insert(key.to_vec(), Some(value.to_vec()));
        Ok(())
    }

    fn delete(&mut self, table: Table, key: &[u8]) -> Result<(), StoreError> {
        self.writes[table.index()].insert(key.to_vec(), None);
        Ok(())
    }

    fn scan_prefix(
        &mut self,
        table: Table,
        prefix: &[u8],
        limit: usize,
    ) -> Result<Vec<Entry>, StoreError> {
        let own = &self.writes[table.index()];
        // Each of this transaction's writes hides at most one stored entry:
        // reading that many more makes the first `limit` of the merge exact.
        let hidden = own
            .range::<[u8], _>((Bound::Included(prefix), Bound::Unbounded))
            .take_while(|(k, _)| k.starts_with(prefix))
            .count();
        let wanted = limit.saturating_add(hidden);
        let stored = (self.store).run(scan_on(self.client, table, prefix, prefix, wanted))?;
        layer::merge(&[own], stored.into_iter().map(Ok), prefix, prefix, limit)
    }
}
