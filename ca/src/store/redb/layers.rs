//! What reads see above redb: the writes that are logged but not yet in
//! redb, kept in memory as layers; the transaction of a write, which keeps
//! its own writes in one more layer; scans that merge the layers over redb.
//!
//! Owns the layers' data and how a read goes through them. Must not depend
//! on the write-ahead log, on checkpoints or on the flusher: when a layer
//! is added, handed to redb or dropped is decided by the store
//! ([`super::RedbStore`]) and its checkpoints ([`super::checkpoint`]).

use std::sync::{Arc, RwLock, RwLockReadGuard};

use ::redb::{Database, ReadTransaction, ReadableDatabase, ReadableTable};

use super::{def, err, ReadTable};
use crate::store::{Entry, StoreError, Table, WriteTxn};

use crate::store::layer;
pub(super) use crate::store::layer::{empty_layer, Layer, Writes};

/// `table`'s writes in each layer above redb, newest first: `own` (a
/// transaction's own writes), the pending layer, the flushing one.
pub(super) fn above<'a>(
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
pub(super) fn lookup<'a>(
    mut layers: impl Iterator<Item = &'a Writes>,
    key: &[u8],
) -> Option<Option<Vec<u8>>> {
    layers.find_map(|layer| layer.get(key).cloned())
}

/// What reads see above redb.
pub(super) struct Layers {
    /// Batches logged since the last checkpoint began.
    pub(super) pending: Layer,
    /// The batches the checkpoint in progress is writing to redb.
    pub(super) flushing: Option<Arc<Layer>>,
}

/// Up to `limit` entries with keys at or after `start` that begin with
/// `prefix`, in key order: `layers` (the first that has a key decides,
/// `None` hiding it) over redb's `base`.
pub(super) fn merged_scan(
    layers: &[&Writes],
    base: &impl ReadableTable<&'static [u8], &'static [u8]>,
    start: &[u8],
    prefix: &[u8],
    limit: usize,
) -> Result<Vec<Entry>, StoreError> {
    let below = base.range::<&[u8]>(start..).map_err(err)?.map(|entry| {
        let (k, v) = entry.map_err(err)?;
        Ok((k.value().to_vec(), v.value().to_vec()))
    });
    layer::merge(layers, below, start, prefix, limit)
}

/// A logged batch's transaction: its writes stay in memory, above the
/// pending layer, the layer being checkpointed and a redb snapshot taken
/// when it began, until the batch is logged.
pub(super) struct OverlayTxn<'s> {
    layers: &'s RwLock<Layers>,
    own: Layer,
    flushing: Option<Arc<Layer>>,
    snapshot: ReadTransaction,
    tables: Vec<Option<ReadTable>>,
}

impl<'s> OverlayTxn<'s> {
    /// Begins a transaction over `layers` and `db`.
    pub(super) fn begin(layers: &'s RwLock<Layers>, db: &Database) -> Result<Self, StoreError> {
        // Taken together: the flushing layer and a redb snapshot from
        // before the flusher removes it.
        let held = read(layers);
        let flushing = held.flushing.clone();
        let snapshot = db.begin_read().map_err(err)?;
        drop(held);
        Ok(Self {
            layers,
            own: empty_layer(),
            flushing,
            snapshot,
            tables: Table::ALL.iter().map(|_| None).collect(),
        })
    }

    /// The transaction's own writes.
    pub(super) fn finish(self) -> Layer {
        self.own
    }
}

/// Reads `layers`.
pub(super) fn read(layers: &RwLock<Layers>) -> RwLockReadGuard<'_, Layers> {
    layers.read().unwrap_or_else(|p| p.into_inner())
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
            let layers = read(self.layers);
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
        let layers = read(self.layers);
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
