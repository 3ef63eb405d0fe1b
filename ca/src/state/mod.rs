//! The CA's state: what it keeps, and the rules of each thing's life.
//!
//! - The rules, pure functions of a record and the time, with their unit
//!   tests: [`token`] (may it be redeemed, how many uses remain),
//!   [`certificate`] (is it live, may it renew, is a second renewal a
//!   clone), [`agent`] (enabled or disabled, what revoking it implies),
//!   [`admin`] (who may act on which tenant, the last global admin),
//!   [`retention`] (what may be pruned when, and when a pass is due),
//!   [`crl`] (which published CRL replicas serve), [`scopes`] (what a
//!   certificate carries and may still be used for as the registration
//!   changes and scopes are blocked), [`review`] (which changes wait for
//!   a second admin, and who may approve them), [`issuance_limit`] and
//!   [`events`] (how far each security-event receiver is, and which
//!   replica sends to it).
//! - The records ([`records`]), read with [`Records`] and changed with
//!   [`Change`]s through the [`Ledger`]: a change turns a decision of the
//!   authority into conditional writes, asking the rules again at commit
//!   time.
//!
//! This module depends on the store (below it) and the audit trail; it
//! must not depend on the authority, HTTP or the command line.

pub mod admin;
pub mod agent;
pub mod certificate;
pub mod change;
pub mod crl;
pub mod events;
pub mod governance;
pub mod issuance_limit;
pub mod ledger;
mod outcome;
pub mod reads;
pub mod records;
pub mod retention;
pub mod review;
mod scope_records;
pub mod scopes;
pub mod token;
mod writes;

#[cfg(test)]
mod governance_suite;
#[cfg(test)]
pub(crate) mod suite;

pub use change::{Applied, Change, Conflict, Outcome, RevokeSummary, RevokeTarget};
pub use ledger::{EventSink, FeedEvents, Ledger};
pub use reads::Records;

use std::sync::Arc;

use crate::store::{Location, Store, StoreError, Table, WriteTxn};

/// Opens the CA's store at `location` and checks its format
/// ([`check_schema`]). A write-ahead log left by an earlier version, whose
/// records are changes rather than writes, is replayed by applying them.
pub fn open_store(location: &Location) -> Result<Arc<dyn Store>, StoreError> {
    open_store_with_cache(location, crate::store::DEFAULT_CACHE_BYTES)
}

/// [`open_store`] with an embedded store's page cache of `cache_bytes`.
pub fn open_store_with_cache(
    location: &Location,
    cache_bytes: u64,
) -> Result<Arc<dyn Store>, StoreError> {
    let store = crate::store::open_location(location, Some(&replay_changes), cache_bytes)?;
    check_schema(&*store)?;
    Ok(store)
}

fn replay_changes(payload: &[u8], txn: &mut dyn WriteTxn) -> Result<(), StoreError> {
    let changes: Vec<Change> =
        serde_json::from_slice(payload).map_err(|e| StoreError::Corrupt {
            table: "write-ahead log",
            detail: format!("a record of an earlier version: {e}"),
        })?;
    for change in &changes {
        // A change refused the first time is refused again (same state,
        // same change): its outcome was already answered.
        let _outcome = change::apply(txn, change)?;
    }
    Ok(())
}

/// The version of the records' format this build reads and writes.
/// Bumped with a migration when a record changes incompatibly.
pub const SCHEMA_VERSION: u64 = 1;

/// Meta key of the records' format version.
const SCHEMA_KEY: &[u8] = b"schema_version";

/// Checks that `store` holds records of a format this build reads, and
/// records the format in a store that has none yet (new, or written before
/// versions were recorded, which is version 1).
pub fn check_schema(store: &dyn Store) -> Result<(), StoreError> {
    let corrupt = |detail: String| StoreError::Corrupt {
        table: Table::Meta.name(),
        detail,
    };
    match store.get(Table::Meta, SCHEMA_KEY)? {
        None => store.write(&mut |txn| {
            txn.insert_new(Table::Meta, SCHEMA_KEY, &SCHEMA_VERSION.to_be_bytes())?;
            Ok(())
        }),
        Some(bytes) => {
            let version = <[u8; 8]>::try_from(bytes.as_slice())
                .map(u64::from_be_bytes)
                .map_err(|_| corrupt("the schema version is not 8 bytes".into()))?;
            if version > SCHEMA_VERSION {
                return Err(corrupt(format!(
                    "the store holds records of format {version}, written by a newer agentca; \
                     this one reads format {SCHEMA_VERSION} and older"
                )));
            }
            Ok(())
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    //! Fixtures shared by the rules' tests and the store suite.

    use agentca::identity::InstanceId;
    use agentca::wire::Serial;
    use time::{Duration, OffsetDateTime};

    use super::records::{AgentRecord, CertRecord, Origin, TokenRecord};

    /// A fixed time.
    pub(crate) fn t0() -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap()
    }

    /// `tenant/prod/name`, enabled, registered at [`t0`].
    pub(crate) fn agent(tenant: &str, name: &str) -> AgentRecord {
        AgentRecord {
            tenant: tenant.into(),
            env: "prod".into(),
            agent: name.into(),
            owner: "team-a".into(),
            purpose: "tests".into(),
            ttl_secs: 300,
            enabled: true,
            created_at: t0(),
            updated_at: t0(),
            last_issued_at: None,
            scopes: Vec::new(),
            issued: Default::default(),
            version: 1,
            retired_at: None,
        }
    }

    /// A token of `uses` uses for `agent_key`, expiring 10 minutes after [`t0`].
    pub(crate) fn token(agent_key: &str, uses: u32) -> TokenRecord {
        TokenRecord {
            token_id: "t1".into(),
            agent_key: agent_key.into(),
            created_at: t0(),
            expires_at: t0() + Duration::minutes(10),
            max_uses: uses,
            used: 0,
            voided: false,
        }
    }

    /// A 5-minute certificate of `agent_key` with serial `40 serial`, key `key{serial}`.
    pub(crate) fn cert(agent_key: &str, serial: u8) -> CertRecord {
        CertRecord {
            serial: Serial::from_bytes(&[0x40, serial]).unwrap(),
            agent_key: agent_key.into(),
            instance_id: InstanceId::random(),
            not_before: t0(),
            not_after: t0() + Duration::minutes(5),
            issued_at: t0(),
            key_sha256: format!("key{serial}"),
            der: vec![0x30, serial],
            origin: Origin::Enroll {
                token_id: "t1".into(),
            },
            renewed_by: None,
            revoked: None,
            renewals: Default::default(),
            scopes: None,
            version: 0,
            withdrawn: Vec::new(),
        }
    }

    #[test]
    fn a_store_records_its_format_and_a_newer_one_is_refused() {
        use super::*;
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::open(crate::store::Backend::Redb, dir.path()).unwrap();
        check_schema(&*store).unwrap();
        assert_eq!(
            store.get(Table::Meta, SCHEMA_KEY).unwrap(),
            Some(SCHEMA_VERSION.to_be_bytes().to_vec())
        );
        check_schema(&*store).unwrap();
        store
            .write(&mut |txn| txn.put(Table::Meta, SCHEMA_KEY, &(SCHEMA_VERSION + 1).to_be_bytes()))
            .unwrap();
        let err = check_schema(&*store).unwrap_err().to_string();
        assert!(err.contains("newer agentca"), "{err}");
    }
}
