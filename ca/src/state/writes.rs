//! The writes of each change: which records and index entries a change
//! reads and puts. What is allowed is asked of the state rules.

use time::OffsetDateTime;

use super::outcome::{Applied, Conflict, Outcome, RevokeSummary, RevokeTarget};
use super::records::{
    decode, encode, index_key, time_key, AgentRecord, CertRecord, CloneAlertRecord, Revocation,
    RevocationEvent, TokenHash, TokenRecord,
};
use super::{agent, certificate, retention};
use crate::store::{StoreError, Table, WriteTxn};

/// Name of the sequence of revocation events.
pub const REVOCATION_SEQ: &str = "revocation_seq";

/// The record under `key` in `table`, decoded.
pub(super) fn get<T: serde::de::DeserializeOwned>(
    txn: &mut dyn WriteTxn,
    table: Table,
    key: &[u8],
) -> Result<Option<T>, StoreError> {
    txn.get(table, key)?.map(|b| decode(table, &b)).transpose()
}

/// Puts `record` under `key` in `table`, encoded.
pub(super) fn put<T: serde::Serialize>(
    txn: &mut dyn WriteTxn,
    table: Table,
    key: &[u8],
    record: &T,
) -> Result<(), StoreError> {
    txn.put(table, key, &encode(record))
}

/// Stores a new token and its index entries.
pub(super) fn insert_token(
    txn: &mut dyn WriteTxn,
    hash: &TokenHash,
    token: &TokenRecord,
) -> Result<(), StoreError> {
    put(txn, Table::Tokens, hash, token)?;
    txn.put(Table::AgentTokens, &index_key(&token.agent_key, hash), &[])?;
    txn.put(Table::TokenExpiry, &time_key(token.expires_at, hash), &[])
}

/// Stores a new certificate, its index entries, and when its agent was
/// last issued one.
pub(super) fn insert_cert(
    txn: &mut dyn WriteTxn,
    mut agent: AgentRecord,
    cert: &CertRecord,
) -> Result<(), StoreError> {
    put(txn, Table::Certs, cert.serial.as_bytes(), cert)?;
    let serial = cert.serial.as_bytes();
    txn.put(Table::AgentCerts, &index_key(&cert.agent_key, serial), &[])?;
    txn.put(
        Table::InstanceCerts,
        &index_key(cert.instance_id.as_str(), serial),
        &[],
    )?;
    txn.put(Table::CertExpiry, &time_key(cert.not_after, serial), &[])?;
    agent.last_issued_at = Some(cert.issued_at);
    put(txn, Table::Agents, agent.key().as_bytes(), &agent)
}

/// Stores a clone alert under its agent and the next alert number.
pub(super) fn insert_alert(
    txn: &mut dyn WriteTxn,
    alert: &CloneAlertRecord,
) -> Result<(), StoreError> {
    let seq = txn.next_in_sequence("alert_seq")?;
    put(
        txn,
        Table::Alerts,
        &index_key(&alert.agent_key, &seq.to_be_bytes()),
        alert,
    )
}

/// Applies a revocation: the certificates it reaches, and for agents what
/// [`agent::revoke`] says revoking one does.
pub(super) fn revoke(
    txn: &mut dyn WriteTxn,
    target: &RevokeTarget,
    reason: u8,
    at: OffsetDateTime,
) -> Result<Outcome, StoreError> {
    let mut summary = RevokeSummary::default();
    match target {
        RevokeTarget::Serial(serial) => {
            let Some(cert) = get::<CertRecord>(txn, Table::Certs, serial.as_bytes())? else {
                return Ok(Err(Conflict::CertificateNotFound));
            };
            revoke_cert(txn, cert, reason, at, true, &mut summary)?;
        }
        RevokeTarget::Instance(instance) => {
            let serials = index_suffixes(txn, Table::InstanceCerts, instance.as_str())?;
            if serials.is_empty() {
                return Ok(Err(Conflict::InstanceNotFound));
            }
            revoke_all(txn, &serials, reason, at, &mut summary)?;
        }
        RevokeTarget::Agents { prefix, exact } => {
            let agents: Vec<AgentRecord> = if *exact {
                get::<AgentRecord>(txn, Table::Agents, prefix.as_bytes())?
                    .into_iter()
                    .collect()
            } else {
                txn.scan_prefix(Table::Agents, prefix.as_bytes(), usize::MAX)?
                    .iter()
                    .map(|(_, v)| decode(Table::Agents, v))
                    .collect::<Result<_, _>>()?
            };
            if agents.is_empty() {
                return Ok(Err(Conflict::AgentNotFound));
            }
            summary.agents_matched = agents.len();
            for mut record in agents {
                let key = record.key();
                let hashes = index_suffixes(txn, Table::AgentTokens, &key)?;
                let mut tokens = Vec::with_capacity(hashes.len());
                for hash in hashes {
                    if let Some(token) = get::<TokenRecord>(txn, Table::Tokens, &hash)? {
                        tokens.push((hash, token));
                    }
                }
                let mut records: Vec<TokenRecord> = tokens.iter().map(|(_, t)| t.clone()).collect();
                let done = agent::revoke(&mut record, &mut records, at);
                if done.disabled {
                    put(txn, Table::Agents, key.as_bytes(), &record)?;
                    summary.agents_disabled += 1;
                }
                for (((hash, _), token), voided) in tokens.iter().zip(&records).zip(done.voided) {
                    if voided {
                        put(txn, Table::Tokens, hash, token)?;
                        summary.tokens_voided += 1;
                    }
                }
                let serials = index_suffixes(txn, Table::AgentCerts, &key)?;
                revoke_all(txn, &serials, reason, at, &mut summary)?;
            }
        }
    }
    Ok(Ok(Applied::Revoked(summary)))
}

/// The suffixes of the index entries `prefix` NUL `suffix`.
pub(super) fn index_suffixes(
    txn: &mut dyn WriteTxn,
    table: Table,
    prefix: &str,
) -> Result<Vec<Vec<u8>>, StoreError> {
    let start = index_key(prefix, &[]);
    Ok(txn
        .scan_prefix(table, &start, usize::MAX)?
        .into_iter()
        .map(|(k, _)| k[start.len()..].to_vec())
        .collect())
}

/// Revokes those of `serials` that a revocation of their instance or agent
/// reaches.
fn revoke_all(
    txn: &mut dyn WriteTxn,
    serials: &[Vec<u8>],
    reason: u8,
    at: OffsetDateTime,
    summary: &mut RevokeSummary,
) -> Result<(), StoreError> {
    for serial in serials {
        if let Some(cert) = get::<CertRecord>(txn, Table::Certs, serial)? {
            revoke_cert(txn, cert, reason, at, false, summary)?;
        }
    }
    Ok(())
}

/// Revokes `cert` if [`certificate::revoked_by`] says the revocation
/// reaches it, with the next feed event.
fn revoke_cert(
    txn: &mut dyn WriteTxn,
    mut cert: CertRecord,
    reason: u8,
    at: OffsetDateTime,
    named_by_serial: bool,
    summary: &mut RevokeSummary,
) -> Result<(), StoreError> {
    if !certificate::revoked_by(&cert, at, named_by_serial) {
        return Ok(());
    }
    let seq = txn.next_in_sequence(REVOCATION_SEQ)?;
    let event = RevocationEvent {
        seq,
        serial: cert.serial.clone(),
        agent_key: cert.agent_key.clone(),
        instance_id: cert.instance_id.clone(),
        not_after: cert.not_after,
        reason,
        revoked_at: at,
    };
    cert.revoked = Some(Revocation { at, reason, seq });
    put(txn, Table::Certs, cert.serial.as_bytes(), &cert)?;
    put(txn, Table::Revocations, &seq.to_be_bytes(), &event)?;
    summary.events.push(event);
    Ok(())
}

/// Removes, at most `limit` of each, the certificates and tokens that
/// [`retention::prunable`] lets go at the cut-off `before`, with their
/// index entries and feed events, and the clone alerts raised before it.
/// Compacts the records of up to `limit` certificates that expired before
/// `now`: what outlives a certificate is its serial, agent, instance,
/// times and revocation, not the certificate itself (most of the record),
/// which nothing needs once it expired. Their expiry index entries move
/// to [`Table::ExpiredCerts`], so that each is compacted once.
pub(super) fn compact(
    txn: &mut dyn WriteTxn,
    now: OffsetDateTime,
    limit: usize,
) -> Result<Outcome, StoreError> {
    let mut compacted = 0;
    for (key, _) in txn.scan_prefix(Table::CertExpiry, &[], limit)? {
        if !retention::prunable(time_of_key(Table::CertExpiry, &key)?, now) {
            break;
        }
        txn.delete(Table::CertExpiry, &key)?;
        txn.put(Table::ExpiredCerts, &key, &[])?;
        let serial = &key[8..];
        if let Some(mut cert) = get::<CertRecord>(txn, Table::Certs, serial)? {
            if !cert.der.is_empty() {
                cert.der = Vec::new();
                put(txn, Table::Certs, serial, &cert)?;
            }
        }
        compacted += 1;
    }
    Ok(Ok(Applied::Compacted(compacted)))
}

pub(super) fn prune(
    txn: &mut dyn WriteTxn,
    before: OffsetDateTime,
    limit: usize,
) -> Result<Outcome, StoreError> {
    let mut certs = 0;
    // Compacted records, and any not compacted yet (written before
    // compaction existed, or a compaction behind).
    let mut keys: Vec<(Table, Vec<u8>)> = txn
        .scan_prefix(Table::ExpiredCerts, &[], limit)?
        .into_iter()
        .map(|(k, _)| (Table::ExpiredCerts, k))
        .collect();
    keys.extend(
        txn.scan_prefix(Table::CertExpiry, &[], limit)?
            .into_iter()
            .map(|(k, _)| (Table::CertExpiry, k)),
    );
    for (table, key) in keys {
        if !retention::prunable(time_of_key(table, &key)?, before) {
            continue;
        }
        txn.delete(table, &key)?;
        let serial = &key[8..];
        if let Some(cert) = get::<CertRecord>(txn, Table::Certs, serial)? {
            txn.delete(Table::AgentCerts, &index_key(&cert.agent_key, serial))?;
            txn.delete(
                Table::InstanceCerts,
                &index_key(cert.instance_id.as_str(), serial),
            )?;
            if let Some(r) = &cert.revoked {
                txn.delete(Table::Revocations, &r.seq.to_be_bytes())?;
            }
            txn.delete(Table::Certs, serial)?;
            certs += 1;
        }
    }
    let mut tokens = 0;
    for (key, _) in txn.scan_prefix(Table::TokenExpiry, &[], limit)? {
        if !retention::prunable(time_of_key(Table::TokenExpiry, &key)?, before) {
            break;
        }
        txn.delete(Table::TokenExpiry, &key)?;
        let hash = &key[8..];
        if let Some(token) = get::<TokenRecord>(txn, Table::Tokens, hash)? {
            txn.delete(Table::AgentTokens, &index_key(&token.agent_key, hash))?;
            txn.delete(Table::Tokens, hash)?;
            tokens += 1;
        }
    }
    // Scope events are rare: withdrawals go with their certificates
    // (blocks stay; see `ScopeEventRecord::ends`).
    for (key, value) in txn.scan_prefix(Table::ScopeEvents, &[], limit)? {
        let event: super::records::ScopeEventRecord = decode(Table::ScopeEvents, &value)?;
        if event
            .ends()
            .is_some_and(|end| retention::prunable(end, before))
        {
            txn.delete(Table::ScopeEvents, &key)?;
        }
    }
    // Changes that waited for review past their lapse and the retention.
    for (key, value) in txn.scan_prefix(Table::PendingChanges, &[], limit)? {
        let pending: super::records::PendingRecord = decode(Table::PendingChanges, &value)?;
        if retention::prunable(pending.expires_at, before) {
            txn.delete(Table::PendingChanges, &key)?;
        }
    }
    // Clone alerts are rare and not keyed by time: look at a bounded number
    // per pass.
    for (key, value) in txn.scan_prefix(Table::Alerts, &[], limit)? {
        let alert: CloneAlertRecord = decode(Table::Alerts, &value)?;
        if retention::prunable(alert.at, before) {
            txn.delete(Table::Alerts, &key)?;
        }
    }
    Ok(Ok(Applied::Pruned { certs, tokens }))
}

/// The time at the front of a time index key (see [`time_key`]).
fn time_of_key(table: Table, key: &[u8]) -> Result<OffsetDateTime, StoreError> {
    if key.len() <= 8 {
        return Err(StoreError::Corrupt {
            table: table.name(),
            detail: "index key shorter than its time prefix".into(),
        });
    }
    time_of(table, &key[..8])
}

/// A time stored as [`time_key`] without a suffix: 8 bytes, big-endian
/// Unix seconds.
pub(super) fn time_of(table: Table, bytes: &[u8]) -> Result<OffsetDateTime, StoreError> {
    let corrupt = |detail: &str| StoreError::Corrupt {
        table: table.name(),
        detail: detail.into(),
    };
    let secs: [u8; 8] = bytes
        .try_into()
        .map_err(|_| corrupt("a stored time is not 8 bytes"))?;
    let secs =
        i64::try_from(u64::from_be_bytes(secs)).map_err(|_| corrupt("index time out of range"))?;
    OffsetDateTime::from_unix_timestamp(secs).map_err(|_| corrupt("index time out of range"))
}

/// Moves an event receiver's cursor as `m` asks, if the rules allow
/// ([`super::events::moved`]); a receiver never seen starts at the audit
/// trail's head.
pub(super) fn move_cursor(
    txn: &mut dyn WriteTxn,
    m: &super::events::CursorMove,
) -> Result<Outcome, StoreError> {
    let key = super::events::cursor_key(&m.receiver);
    let stored = get::<super::events::EventCursor>(txn, Table::Meta, &key)?;
    let head = crate::audit::Head::decode(
        txn.get(Table::Meta, crate::audit::HEAD_KEY.as_bytes())?
            .as_deref(),
    )?;
    match super::events::moved(stored, head.seq, m) {
        Ok(cursor) => {
            put(txn, Table::Meta, &key, &cursor)?;
            Ok(Ok(Applied::Cursor(cursor.delivered)))
        }
        Err(conflict) => Ok(Err(conflict.into())),
    }
}

/// Every receiver's stored cursor, by name.
pub(super) fn cursors(
    txn: &mut dyn WriteTxn,
) -> Result<Vec<(String, super::events::EventCursor)>, StoreError> {
    let prefix = super::events::CURSOR_PREFIX.as_bytes();
    txn.scan_prefix(Table::Meta, prefix, usize::MAX)?
        .into_iter()
        .map(|(key, value)| {
            let name = String::from_utf8_lossy(&key[prefix.len()..]).into_owned();
            Ok((name, decode(Table::Meta, &value)?))
        })
        .collect()
}
