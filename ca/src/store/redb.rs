//! The redb backend, the default.
//!
//! redb commits with a real `fdatasync` (its default `Durability::Immediate`),
//! so a write acknowledged by [`Store::write`] survives a power failure. Each
//! [`Table`] is one redb table of byte keys and byte values.

use std::path::Path;
use std::sync::Mutex;

use ::redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use super::{Backend, Entry, Store, StoreError, Table, WriteTxn};

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

/// A redb database file.
pub struct RedbStore {
    db: Database,
    // redb serializes write transactions itself; the lock only makes the
    // order of writers explicit.
    write_lock: Mutex<()>,
}

impl RedbStore {
    /// Opens the database at `path`, creating it and its tables if needed.
    /// Fails if another process has it open.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let db = Database::create(path).map_err(err)?;
        let txn = db.begin_write().map_err(err)?;
        for table in Table::ALL {
            txn.open_table(def(table)).map_err(err)?;
        }
        txn.commit().map_err(err)?;
        Ok(Self {
            db,
            write_lock: Mutex::new(()),
        })
    }
}

impl Store for RedbStore {
    fn backend(&self) -> Backend {
        Backend::Redb
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

    fn write(
        &self,
        f: &mut dyn FnMut(&mut dyn WriteTxn) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let _guard = self.write_lock.lock().unwrap_or_else(|p| p.into_inner());
        let txn = self.db.begin_write().map_err(err)?;
        {
            let mut tables = Vec::with_capacity(Table::ALL.len());
            for table in Table::ALL {
                tables.push(txn.open_table(def(table)).map_err(err)?);
            }
            let mut view = RedbTxn { tables };
            // Dropping `txn` without commit aborts it.
            f(&mut view)?;
        }
        txn.commit().map_err(err)
    }
}

struct RedbTxn<'txn> {
    tables: Vec<::redb::Table<'txn, &'static [u8], &'static [u8]>>,
}

impl WriteTxn for RedbTxn<'_> {
    fn get(&mut self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let t = &self.tables[table.index()];
        Ok(t.get(key).map_err(err)?.map(|v| v.value().to_vec()))
    }

    fn put(&mut self, table: Table, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        self.tables[table.index()].insert(key, value).map_err(err)?;
        Ok(())
    }

    fn delete(&mut self, table: Table, key: &[u8]) -> Result<(), StoreError> {
        self.tables[table.index()].remove(key).map_err(err)?;
        Ok(())
    }

    fn scan_prefix(
        &mut self,
        table: Table,
        prefix: &[u8],
        limit: usize,
    ) -> Result<Vec<Entry>, StoreError> {
        scan(&self.tables[table.index()], prefix, limit)
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
