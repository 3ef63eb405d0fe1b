//! State changes and the checks that make each one atomic.
//!
//! A [`Change`] is applied inside one write transaction: its checks read the
//! state as it is at commit time (including earlier changes of the same
//! batch), and it writes only if they all hold. That is what makes a
//! single-use token usable once under any concurrency, and a certificate
//! renewable once.

use agentca::identity::InstanceId;
use agentca::wire::{AuditEvent, Serial};
use time::OffsetDateTime;

use super::records::{
    decode, encode, index_key, time_key, AdminRecord, AgentRecord, CertRecord, CloneAlertRecord,
    Renewal, Revocation, RevocationEvent, TokenHash, TokenRecord,
};
use super::{Store, StoreError, Table, WriteTxn};

/// One state change. Applying one depends only on the state before it.
/// (Write-ahead logs of earlier versions hold changes as JSON: replaying
/// them is why changes deserialize.)
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub enum Change {
    /// Register a new agent. Conflicts if it exists.
    RegisterAgent(AgentRecord),
    /// Enable or disable a registered agent.
    SetAgentEnabled {
        /// `tenant/env/agent`.
        key: String,
        /// The new state.
        enabled: bool,
        /// When.
        at: OffsetDateTime,
    },
    /// Store a new bootstrap token for a registered, enabled agent.
    CreateToken {
        /// SHA-256 of the token.
        hash: TokenHash,
        /// The token's record.
        token: TokenRecord,
    },
    /// Use the token once and record the certificate it enrolled.
    Enroll {
        /// SHA-256 of the presented token.
        token_hash: TokenHash,
        /// The time the token's expiry is checked against.
        at: OffsetDateTime,
        /// The new certificate.
        cert: CertRecord,
    },
    /// Record the one renewal of `from` and the certificate it issued.
    Renew {
        /// The certificate presented for renewal.
        from: Serial,
        /// When.
        at: OffsetDateTime,
        /// The new certificate.
        cert: CertRecord,
    },
    /// Record a clone alert.
    RecordCloneAlert(CloneAlertRecord),
    /// Store an admin token.
    PutAdmin {
        /// SHA-256 of the admin token.
        hash: TokenHash,
        /// The admin.
        admin: AdminRecord,
    },
    /// Revoke certificates. Revoking agents also disables them and voids
    /// their unused tokens.
    Revoke {
        /// What to revoke.
        target: RevokeTarget,
        /// RFC 5280 reason code.
        reason: u8,
        /// When; certificates that expired before it are left alone.
        at: OffsetDateTime,
    },
    /// Delete certificates that expired, and tokens that expired, before
    /// `before`: at most `limit` of each.
    Prune {
        /// The cut-off.
        before: OffsetDateTime,
        /// Most records of each kind removed by this change.
        limit: usize,
    },
    /// Add one to a counter and return its new value.
    BumpCounter(String),
    /// Append an event to the audit trail (its sequence number and hashes
    /// are set here, in commit order).
    Audit(AuditEvent),
    /// Apply `change` and, if it applies, append `audit` in the same
    /// commit: the event is durable exactly when the change is.
    Audited {
        /// The change.
        change: Box<Change>,
        /// Its audit event.
        audit: Box<AuditEvent>,
    },
    /// Remove an admin by name. Conflicts if there is none.
    DeleteAdmin(String),
}

/// What a [`Change::Revoke`] revokes.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum RevokeTarget {
    /// One certificate.
    Serial(Serial),
    /// Every live certificate of one instance.
    Instance(InstanceId),
    /// Every agent whose key starts with this prefix: `tenant/env/agent`
    /// exactly (with `exact`), or `tenant/` or `tenant/env/`.
    Agents {
        /// The key or key prefix.
        prefix: String,
        /// Whether `prefix` is one whole key.
        exact: bool,
    },
}

/// What an applied change did, when more than "done".
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Applied {
    /// Done.
    #[default]
    Done,
    /// What a revocation did.
    Revoked(RevokeSummary),
    /// What pruning removed.
    Pruned {
        /// Certificate records removed.
        certs: usize,
        /// Token records removed.
        tokens: usize,
    },
    /// A counter's new value.
    Counter(u64),
}

/// What a revocation did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RevokeSummary {
    /// One event per certificate revoked by this change (none for ones
    /// revoked before: revoking is idempotent).
    pub events: Vec<RevocationEvent>,
    /// Agents this change disabled.
    pub agents_disabled: usize,
    /// Unused tokens this change voided.
    pub tokens_voided: usize,
    /// Agents the target matched.
    pub agents_matched: usize,
}

/// Why a change was not applied. Nothing was written for it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Conflict {
    /// The agent is already registered.
    #[error("the agent is already registered")]
    AgentExists,
    /// No such agent.
    #[error("no such agent")]
    AgentNotFound,
    /// The agent is disabled.
    #[error("the agent is disabled")]
    AgentDisabled,
    /// No such token.
    #[error("no such token")]
    TokenNotFound,
    /// The token has expired.
    #[error("the token has expired")]
    TokenExpired,
    /// The token has no uses left.
    #[error("the token has no uses left")]
    TokenUsed,
    /// The token was voided.
    #[error("the token was voided")]
    TokenVoided,
    /// The token is for another agent than the certificate.
    #[error("the token is for another agent")]
    TokenAgentMismatch,
    /// No such certificate.
    #[error("no such certificate")]
    CertificateNotFound,
    /// The certificate is revoked.
    #[error("the certificate is revoked")]
    CertificateRevoked,
    /// The certificate was already renewed.
    #[error("the certificate was already renewed")]
    AlreadyRenewed(Renewal),
    /// A certificate with this serial exists.
    #[error("a certificate with this serial exists")]
    SerialExists,
    /// No certificate of this instance is on record.
    #[error("no such instance")]
    InstanceNotFound,
    /// An admin with this name exists.
    #[error("an admin with this name exists")]
    AdminExists,
    /// No admin with this name.
    #[error("no such admin")]
    AdminNotFound,
    /// Removing this admin would leave no admin of every tenant.
    #[error("this is the last global admin")]
    LastGlobalAdmin,
}

/// The result of one change.
pub type Outcome = Result<Applied, Conflict>;

fn get<T: serde::de::DeserializeOwned>(
    txn: &mut dyn WriteTxn,
    table: Table,
    key: &[u8],
) -> Result<Option<T>, StoreError> {
    txn.get(table, key)?.map(|b| decode(table, &b)).transpose()
}

fn put<T: serde::Serialize>(
    txn: &mut dyn WriteTxn,
    table: Table,
    key: &[u8],
    record: &T,
) -> Result<(), StoreError> {
    txn.put(table, key, &encode(record))
}

fn enabled_agent(
    txn: &mut dyn WriteTxn,
    key: &str,
) -> Result<Result<AgentRecord, Conflict>, StoreError> {
    Ok(
        match get::<AgentRecord>(txn, Table::Agents, key.as_bytes())? {
            None => Err(Conflict::AgentNotFound),
            Some(a) if !a.enabled => Err(Conflict::AgentDisabled),
            Some(a) => Ok(a),
        },
    )
}

fn insert_cert(
    txn: &mut dyn WriteTxn,
    mut agent: AgentRecord,
    cert: &CertRecord,
) -> Result<(), StoreError> {
    put(txn, Table::Certs, cert.serial.as_bytes(), cert)?;
    txn.put(
        Table::AgentCerts,
        &index_key(&cert.agent_key, cert.serial.as_bytes()),
        &[],
    )?;
    txn.put(
        Table::InstanceCerts,
        &index_key(cert.instance_id.as_str(), cert.serial.as_bytes()),
        &[],
    )?;
    txn.put(
        Table::CertExpiry,
        &time_key(cert.not_after, cert.serial.as_bytes()),
        &[],
    )?;
    agent.last_issued_at = Some(cert.issued_at);
    put(txn, Table::Agents, agent.key().as_bytes(), &agent)
}

fn next_seq(txn: &mut dyn WriteTxn, name: &str) -> Result<u64, StoreError> {
    let current = match txn.get(Table::Meta, name.as_bytes())? {
        Some(b) => {
            let bytes: [u8; 8] = b.as_slice().try_into().map_err(|_| StoreError::Corrupt {
                table: Table::Meta.name(),
                detail: format!("counter {name} is not 8 bytes"),
            })?;
            u64::from_be_bytes(bytes)
        }
        None => 0,
    };
    let next = current + 1;
    txn.put(Table::Meta, name.as_bytes(), &next.to_be_bytes())?;
    Ok(next)
}

/// Applies one change inside a write transaction: checks, then writes.
pub fn apply(txn: &mut dyn WriteTxn, change: &Change) -> Result<Outcome, StoreError> {
    match change {
        Change::RegisterAgent(agent) => {
            let key = agent.key();
            if txn.get(Table::Agents, key.as_bytes())?.is_some() {
                return Ok(Err(Conflict::AgentExists));
            }
            put(txn, Table::Agents, key.as_bytes(), agent)?;
        }
        Change::SetAgentEnabled { key, enabled, at } => {
            let Some(mut agent) = get::<AgentRecord>(txn, Table::Agents, key.as_bytes())? else {
                return Ok(Err(Conflict::AgentNotFound));
            };
            if agent.enabled != *enabled {
                agent.enabled = *enabled;
                agent.updated_at = *at;
                put(txn, Table::Agents, key.as_bytes(), &agent)?;
            }
        }
        Change::CreateToken { hash, token } => {
            if let Err(c) = enabled_agent(txn, &token.agent_key)? {
                return Ok(Err(c));
            }
            put(txn, Table::Tokens, hash, token)?;
            txn.put(Table::AgentTokens, &index_key(&token.agent_key, hash), &[])?;
            txn.put(Table::TokenExpiry, &time_key(token.expires_at, hash), &[])?;
        }
        Change::Enroll {
            token_hash,
            at,
            cert,
        } => {
            let Some(mut token) = get::<TokenRecord>(txn, Table::Tokens, token_hash)? else {
                return Ok(Err(Conflict::TokenNotFound));
            };
            if token.voided {
                return Ok(Err(Conflict::TokenVoided));
            }
            if *at >= token.expires_at {
                return Ok(Err(Conflict::TokenExpired));
            }
            if token.used >= token.max_uses {
                return Ok(Err(Conflict::TokenUsed));
            }
            if token.agent_key != cert.agent_key {
                return Ok(Err(Conflict::TokenAgentMismatch));
            }
            let agent = match enabled_agent(txn, &cert.agent_key)? {
                Ok(a) => a,
                Err(c) => return Ok(Err(c)),
            };
            if txn.get(Table::Certs, cert.serial.as_bytes())?.is_some() {
                return Ok(Err(Conflict::SerialExists));
            }
            token.used += 1;
            put(txn, Table::Tokens, token_hash, &token)?;
            insert_cert(txn, agent, cert)?;
        }
        Change::Renew { from, at, cert } => {
            let Some(mut old) = get::<CertRecord>(txn, Table::Certs, from.as_bytes())? else {
                return Ok(Err(Conflict::CertificateNotFound));
            };
            if old.revoked.is_some() {
                return Ok(Err(Conflict::CertificateRevoked));
            }
            if let Some(renewal) = old.renewed_by {
                return Ok(Err(Conflict::AlreadyRenewed(renewal)));
            }
            let agent = match enabled_agent(txn, &old.agent_key)? {
                Ok(a) => a,
                Err(c) => return Ok(Err(c)),
            };
            if txn.get(Table::Certs, cert.serial.as_bytes())?.is_some() {
                return Ok(Err(Conflict::SerialExists));
            }
            old.renewed_by = Some(Renewal {
                serial: cert.serial.clone(),
                key_sha256: cert.key_sha256.clone(),
                at: *at,
            });
            put(txn, Table::Certs, from.as_bytes(), &old)?;
            insert_cert(txn, agent, cert)?;
        }
        Change::RecordCloneAlert(alert) => {
            let seq = next_seq(txn, "alert_seq")?;
            put(
                txn,
                Table::Alerts,
                &index_key(&alert.agent_key, &seq.to_be_bytes()),
                alert,
            )?;
        }
        Change::PutAdmin { hash, admin } => {
            if txn.get(Table::AdminNames, admin.name.as_bytes())?.is_some() {
                return Ok(Err(Conflict::AdminExists));
            }
            put(txn, Table::Admins, hash, admin)?;
            txn.put(Table::AdminNames, admin.name.as_bytes(), hash)?;
        }
        Change::DeleteAdmin(name) => {
            let Some(hash) = txn.get(Table::AdminNames, name.as_bytes())? else {
                return Ok(Err(Conflict::AdminNotFound));
            };
            let global = |bytes: &[u8]| -> Result<bool, StoreError> {
                Ok(decode::<AdminRecord>(Table::Admins, bytes)?
                    .tenant
                    .is_none())
            };
            if let Some(record) = txn.get(Table::Admins, &hash)? {
                if global(&record)? {
                    let mut others = 0;
                    for (key, value) in txn.scan_prefix(Table::Admins, b"", usize::MAX)? {
                        if key != hash && global(&value)? {
                            others += 1;
                        }
                    }
                    if others == 0 {
                        return Ok(Err(Conflict::LastGlobalAdmin));
                    }
                }
            }
            txn.delete(Table::Admins, &hash)?;
            txn.delete(Table::AdminNames, name.as_bytes())?;
        }
        Change::Audit(event) => append_audit(txn, event.clone())?,
        Change::Audited { change, audit } => {
            let outcome = apply(txn, change)?;
            if let Ok(applied) = &outcome {
                let mut event = (**audit).clone();
                if let Applied::Revoked(summary) = applied {
                    // What the revocation did, in the event itself.
                    let did = format!(
                        "{} certificate(s) revoked, {} agent(s) disabled, {} token(s) voided",
                        summary.events.len(),
                        summary.agents_disabled,
                        summary.tokens_voided
                    );
                    event.reason = Some(match event.reason {
                        Some(r) => format!("{r}: {did}"),
                        None => did,
                    });
                }
                append_audit(txn, event)?;
            }
            return Ok(outcome);
        }
        Change::Revoke { target, reason, at } => return revoke(txn, target, *reason, *at),
        Change::Prune { before, limit } => return prune(txn, *before, *limit),
        Change::BumpCounter(name) => return Ok(Ok(Applied::Counter(next_seq(txn, name)?))),
    }
    Ok(Ok(Applied::Done))
}

/// Meta key of the audit trail's head: its last sequence number (8 bytes,
/// big-endian) and hash (32 bytes).
pub const AUDIT_HEAD: &str = "audit_head";

/// The audit trail's head: the last event's sequence number and hash (0 and
/// 64 zeros before the first event).
pub fn audit_head(bytes: Option<Vec<u8>>) -> Result<(u64, String), StoreError> {
    match bytes {
        None => Ok((0, "0".repeat(64))),
        Some(b) if b.len() == 40 => Ok((
            u64::from_be_bytes(b[..8].try_into().expect("8 bytes")),
            crate::hex(&b[8..]),
        )),
        Some(_) => Err(StoreError::Corrupt {
            table: Table::Meta.name(),
            detail: "the audit head is not 40 bytes".into(),
        }),
    }
}

fn append_audit(txn: &mut dyn WriteTxn, mut event: AuditEvent) -> Result<(), StoreError> {
    let (seq, prev) = audit_head(txn.get(Table::Meta, AUDIT_HEAD.as_bytes())?)?;
    event.seq = seq + 1;
    event.prev_hash = prev;
    event.hash = event.compute_hash();
    put(txn, Table::Audit, &event.seq.to_be_bytes(), &event)?;
    let mut head = event.seq.to_be_bytes().to_vec();
    // The hash is ours: 64 hex digits.
    head.extend(agentca::unhex(&event.hash).unwrap_or_default());
    txn.put(Table::Meta, AUDIT_HEAD.as_bytes(), &head)
}

/// Name of the counter of revocation events.
pub const REVOCATION_SEQ: &str = "revocation_seq";

fn revoke(
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
            revoke_cert(txn, cert, reason, at, &mut summary)?;
        }
        RevokeTarget::Instance(instance) => {
            let serials = index_suffixes(txn, Table::InstanceCerts, instance.as_str())?;
            if serials.is_empty() {
                return Ok(Err(Conflict::InstanceNotFound));
            }
            revoke_live(txn, &serials, reason, at, &mut summary)?;
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
            for mut agent in agents {
                let key = agent.key();
                if agent.enabled {
                    agent.enabled = false;
                    agent.updated_at = at;
                    put(txn, Table::Agents, key.as_bytes(), &agent)?;
                    summary.agents_disabled += 1;
                }
                for hash in index_suffixes(txn, Table::AgentTokens, &key)? {
                    let Some(mut token) = get::<TokenRecord>(txn, Table::Tokens, &hash)? else {
                        continue;
                    };
                    if !token.voided && token.used < token.max_uses && at < token.expires_at {
                        token.voided = true;
                        put(txn, Table::Tokens, &hash, &token)?;
                        summary.tokens_voided += 1;
                    }
                }
                let serials = index_suffixes(txn, Table::AgentCerts, &key)?;
                revoke_live(txn, &serials, reason, at, &mut summary)?;
            }
        }
    }
    Ok(Ok(Applied::Revoked(summary)))
}

/// The suffixes of the index entries `prefix` NUL `suffix`.
fn index_suffixes(
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

/// Revokes the certificates among `serials` that have not expired at `at`.
fn revoke_live(
    txn: &mut dyn WriteTxn,
    serials: &[Vec<u8>],
    reason: u8,
    at: OffsetDateTime,
    summary: &mut RevokeSummary,
) -> Result<(), StoreError> {
    for serial in serials {
        if let Some(cert) = get::<CertRecord>(txn, Table::Certs, serial)? {
            if cert.not_after > at {
                revoke_cert(txn, cert, reason, at, summary)?;
            }
        }
    }
    Ok(())
}

fn revoke_cert(
    txn: &mut dyn WriteTxn,
    mut cert: CertRecord,
    reason: u8,
    at: OffsetDateTime,
    summary: &mut RevokeSummary,
) -> Result<(), StoreError> {
    if cert.revoked.is_some() {
        return Ok(());
    }
    let seq = next_seq(txn, REVOCATION_SEQ)?;
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

fn prune(
    txn: &mut dyn WriteTxn,
    before: OffsetDateTime,
    limit: usize,
) -> Result<Outcome, StoreError> {
    let cutoff = time_key(before, &[]);
    let mut certs = 0;
    for (key, _) in txn.scan_prefix(Table::CertExpiry, &[], limit)? {
        check_time_key(Table::CertExpiry, &key)?;
        if key[..8] >= cutoff[..] {
            break;
        }
        txn.delete(Table::CertExpiry, &key)?;
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
        check_time_key(Table::TokenExpiry, &key)?;
        if key[..8] >= cutoff[..] {
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
    // Clone alerts are rare and not keyed by time: look at a bounded number
    // per pass.
    for (key, value) in txn.scan_prefix(Table::Alerts, &[], limit)? {
        let alert: CloneAlertRecord = decode(Table::Alerts, &value)?;
        if alert.at < before {
            txn.delete(Table::Alerts, &key)?;
        }
    }
    Ok(Ok(Applied::Pruned { certs, tokens }))
}

fn check_time_key(table: Table, key: &[u8]) -> Result<(), StoreError> {
    if key.len() <= 8 {
        return Err(StoreError::Corrupt {
            table: table.name(),
            detail: "index key shorter than its time prefix".into(),
        });
    }
    Ok(())
}

/// Applies `changes` in order in one durable commit, returning one outcome
/// per change. A store error fails the whole batch and writes nothing.
pub fn commit(store: &dyn Store, changes: &[Change]) -> Result<Vec<Outcome>, StoreError> {
    let mut outcomes = Vec::with_capacity(changes.len());
    store.write(&mut |txn| {
        outcomes.clear();
        for change in changes {
            outcomes.push(apply(txn, change)?);
        }
        Ok(())
    })?;
    Ok(outcomes)
}
