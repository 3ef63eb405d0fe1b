//! State changes and the checks that make each one atomic.
//!
//! A [`Change`] is applied inside one write transaction: its checks read the
//! state as it is at commit time (including earlier changes of the same
//! batch), and it writes only if they all hold. That is what makes a
//! single-use token usable once under any concurrency, and a certificate
//! renewable once.

use agentca::wire::Serial;
use time::OffsetDateTime;

use super::records::{
    decode, encode, index_key, AdminRecord, AgentRecord, CertRecord, CloneAlertRecord, Renewal,
    TokenHash, TokenRecord,
};
use super::{Store, StoreError, Table, WriteTxn};

/// One state change.
#[derive(Clone, Debug)]
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
}

/// The result of one change.
pub type Outcome = Result<(), Conflict>;

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
            put(txn, Table::Admins, hash, admin)?;
        }
    }
    Ok(Ok(()))
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
