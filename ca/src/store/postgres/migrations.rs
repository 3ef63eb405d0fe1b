//! The schema, as numbered migrations applied in order, each once.
//!
//! A migration is never edited once released: a change to the schema is a
//! new entry at the end of [`MIGRATIONS`]. They are applied at open, in one
//! transaction under an advisory lock ([`MIGRATION_LOCK`]): of several
//! replicas starting together, one applies them and the others find them
//! applied. A database migrated by a newer agentca (a version this build
//! does not know) is refused rather than written with an older idea of
//! the schema.

use deadpool_postgres::Object;

use super::{db, MIGRATION_LOCK};
use crate::store::StoreError;

/// The migrations, by version: 1, 2, 3…
pub const MIGRATIONS: &[&str] = &[
    // 1: the key-value table of every store table.
    "CREATE TABLE agentca_kv (
         tbl   smallint NOT NULL,
         key   bytea    NOT NULL,
         value bytea    NOT NULL,
         PRIMARY KEY (tbl, key)
     )",
];

/// Applies the migrations `client`'s database lacks.
pub(super) async fn apply(client: &Object) -> Result<(), StoreError> {
    client
        .batch_execute(&format!(
            "BEGIN;
             SELECT pg_advisory_xact_lock({MIGRATION_LOCK});
             CREATE TABLE IF NOT EXISTS agentca_schema (
                 version    integer     PRIMARY KEY,
                 applied_at timestamptz NOT NULL DEFAULT now()
             )"
        ))
        .await
        .map_err(db)?;
    let result = apply_locked(client).await;
    let end = if result.is_ok() { "COMMIT" } else { "ROLLBACK" };
    let ended = client.batch_execute(end).await.map_err(db);
    result.and(ended)
}

async fn apply_locked(client: &Object) -> Result<(), StoreError> {
    let row = client
        .query_one("SELECT coalesce(max(version), 0) FROM agentca_schema", &[])
        .await
        .map_err(db)?;
    let current = usize::try_from(row.get::<_, i32>(0)).unwrap_or(0);
    if current > MIGRATIONS.len() {
        return Err(StoreError::Corrupt {
            table: "agentca_schema",
            detail: format!(
                "the database's schema is at version {current}, written by a newer agentca; \
                 this one knows versions up to {}",
                MIGRATIONS.len()
            ),
        });
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(current) {
        let version = i32::try_from(index + 1).expect("few migrations");
        tracing::info!(version, "applying a schema migration");
        client.batch_execute(sql).await.map_err(db)?;
        client
            .execute(
                "INSERT INTO agentca_schema (version) VALUES ($1)",
                &[&version],
            )
            .await
            .map_err(db)?;
    }
    Ok(())
}
