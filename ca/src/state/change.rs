//! Decided changes, turned into writes.
//!
//! The authority decides what to change; a [`Change`] is how that decision
//! reaches the store. It is applied inside one write transaction: it reads
//! the state as it is at commit time (including earlier changes of the
//! same batch), asks the state rules ([`super::token`],
//! [`super::certificate`], [`super::agent`], [`super::admin`],
//! [`super::retention`]) whether it still holds, and writes only if it
//! does. That is what makes a single-use token usable once under any
//! concurrency, and a certificate renewable once. No rule is decided here:
//! only which records a change reads and writes.

use agentca::wire::{AuditEvent, Serial};
use time::OffsetDateTime;

use super::issuance_limit::{self, IssuanceLimits};
pub use super::outcome::{Applied, Conflict, Outcome, RevokeSummary, RevokeTarget};
use super::records::{
    AdminRecord, AgentRecord, BlockRecord, CertRecord, CloneAlertRecord, CrlIssuer, PublishedCrl,
    Renewal, TokenHash, TokenRecord, PRUNED_AT_KEY,
};
pub use super::writes::REVOCATION_SEQ;
use super::writes::{self, get, put};
use super::{admin, agent, certificate, crl, governance, retention, scopes, token};
use crate::store::{Job, StoreError, Table, WriteTxn};

/// One state change. Applying one depends only on the state before it.
/// (Write-ahead logs of earlier versions hold changes as JSON: replaying
/// them is why changes deserialize.)
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub enum Change {
    /// Register a new agent (from the logs of earlier versions: see
    /// [`Change::Register`]). Conflicts if it exists.
    RegisterAgent(AgentRecord),
    /// Register an agent as the first version of its registration, or
    /// (with `reuse`) the name of a retired agent as its next version.
    Register {
        /// The registration.
        agent: AgentRecord,
        /// The admin.
        by: String,
        /// Whether a retired agent's name may be taken.
        reuse: bool,
        /// What of it waits for review, stored in the same transaction.
        #[serde(default)]
        then_propose: Option<super::records::PendingRecord>,
    },
    /// Change a registration: a new version; scopes it removes are
    /// withdrawn from live certificates.
    UpdateAgent {
        /// `tenant/env/agent`.
        key: String,
        /// The version the update was based on, if the admin said.
        expected: Option<u64>,
        /// What changes.
        update: super::governance::Update,
        /// The admin.
        by: String,
        /// When.
        at: OffsetDateTime,
        /// What waits for review, stored in the same transaction.
        #[serde(default)]
        then_propose: Option<super::records::PendingRecord>,
    },
    /// Apply a pending change, approved by `by`.
    Approve {
        /// The pending change.
        id: u64,
        /// The approving admin.
        by: String,
        /// When.
        at: OffsetDateTime,
    },
    /// Drop a pending change unapplied.
    Reject {
        /// The pending change.
        id: u64,
    },
    /// Block a scope (the block's id is set at commit).
    BlockScope(BlockRecord),
    /// Lift a block; a tenant's admin names its tenant.
    UnblockScope {
        /// The block.
        id: u64,
        /// The tenant whose blocks the admin may lift; all when `None`.
        tenant: Option<String>,
        /// When.
        at: OffsetDateTime,
    },
    /// Retire an agent: its certificates revoked, its tokens voided, never
    /// issued anything again.
    Retire {
        /// `tenant/env/agent`.
        key: String,
        /// The admin.
        by: String,
        /// When.
        at: OffsetDateTime,
    },
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
        /// The issuance limits it must fit in.
        #[serde(default)]
        limits: IssuanceLimits,
    },
    /// Record the one renewal of `from` and the certificate it issued.
    Renew {
        /// The certificate presented for renewal.
        from: Serial,
        /// When.
        at: OffsetDateTime,
        /// The new certificate.
        cert: CertRecord,
        /// The issuance limits it must fit in.
        #[serde(default)]
        limits: IssuanceLimits,
    },
    /// Record a clone alert.
    RecordCloneAlert(CloneAlertRecord),
    /// Store an admin token.
    PutAdmin {
        /// SHA-256 of the admin token.
        hash: TokenHash,
        /// The admin.
        admin: AdminRecord,
        /// Who creates it (an admin's name, `init` for the first).
        #[serde(default)]
        by: String,
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
    /// Drop the certificate bytes from the records of certificates that
    /// expired before `now`: at most `limit` of them.
    Compact {
        /// Now.
        now: OffsetDateTime,
        /// Most records compacted by this change.
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
    /// Give an admin another role: its next version.
    SetAdminRole {
        /// The admin.
        name: String,
        /// Its new role.
        role: super::records::Role,
        /// The version the change was based on, if the caller said.
        expected: Option<u64>,
        /// The admin making the change.
        by: String,
        /// When.
        at: OffsetDateTime,
    },
    /// Remove an admin by name. Conflicts if there is none.
    DeleteAdmin(String),
    /// Publish a signed CRL for every replica to serve, if it supersedes
    /// the published one ([`crl::supersedes`]); either way, the outcome is
    /// the one published after the change.
    PublishCrl {
        /// Whose CRL.
        issuer: CrlIssuer,
        /// The CRL.
        crl: PublishedCrl,
    },
    /// Remove the audit events up to `through`, exported by the caller who
    /// names the last by `hash` ([`crate::audit::may_prune`]).
    PruneAudit {
        /// The last event removed.
        through: u64,
        /// Its hash.
        hash: String,
        /// Now: the receivers' cursors written since
        /// [`super::events::FORGOTTEN_AFTER`] keep what follows them.
        #[serde(default)]
        at: Option<OffsetDateTime>,
    },
    /// Take or renew the hold of an event receiver, and move its cursor
    /// past what it acknowledged ([`super::events::moved`]).
    EventCursor(super::events::CursorMove),
    /// Take the turn of pruning at `at`: refused unless a pass is due
    /// ([`retention::pruning_due`]), so that of several replicas one
    /// prunes per `period`.
    ClaimPruning {
        /// Now.
        at: OffsetDateTime,
        /// How often a pass runs.
        period: time::Duration,
    },
}

impl From<token::TokenRefusal> for Conflict {
    fn from(r: token::TokenRefusal) -> Self {
        match r {
            token::TokenRefusal::Voided => Conflict::TokenVoided,
            token::TokenRefusal::Expired => Conflict::TokenExpired,
            token::TokenRefusal::UsedUp => Conflict::TokenUsed,
        }
    }
}

impl From<agent::AgentRefusal> for Conflict {
    fn from(r: agent::AgentRefusal) -> Self {
        match r {
            agent::AgentRefusal::Disabled => Conflict::AgentDisabled,
            agent::AgentRefusal::Retired => Conflict::AgentRetired,
        }
    }
}

/// Returns the conflict from the enclosing apply when `$check` refuses.
macro_rules! refuse_unless {
    ($check:expr) => {
        match $check {
            Ok(admitted) => admitted,
            Err(refusal) => return Ok(Err(refusal.into())),
        }
    };
}

/// Whether `cert`, signed a moment ago for `agent`, carries only scopes
/// still granted ([`scopes::fits`]).
fn still_fits(
    txn: &mut dyn WriteTxn,
    cert: &CertRecord,
    agent: &AgentRecord,
) -> Result<bool, StoreError> {
    let Some(carried) = carried_scopes(cert) else {
        return Ok(true);
    };
    Ok(scopes::fits(carried, agent, &governance::blocks(txn)?))
}

/// The scopes `cert` carries, if any (only then do the scope blocks matter
/// to its issuance).
fn carried_scopes(cert: &CertRecord) -> Option<&[String]> {
    cert.scopes.as_deref().filter(|s| !s.is_empty())
}

/// The agent under `key`, if it may be issued certificates and tokens.
fn issuable_agent(
    txn: &mut dyn WriteTxn,
    key: &str,
) -> Result<Result<AgentRecord, Conflict>, StoreError> {
    let Some(agent) = get::<AgentRecord>(txn, Table::Agents, key.as_bytes())? else {
        return Ok(Err(Conflict::AgentNotFound));
    };
    Ok(agent::may_be_issued(&agent)
        .map(|()| agent)
        .map_err(Conflict::from))
}

impl Job for Change {
    type Outcome = Outcome;
    fn apply(&self, txn: &mut dyn WriteTxn) -> Result<Outcome, StoreError> {
        apply(txn, self)
    }

    fn reads(&self, keys: &mut Vec<(Table, Vec<u8>)>) {
        let mut read = |table, key: &[u8]| keys.push((table, key.to_vec()));
        match self {
            Change::RegisterAgent(agent) | Change::Register { agent, .. } => {
                read(Table::Agents, agent.key().as_bytes())
            }
            Change::UpdateAgent { key, .. } | Change::Retire { key, .. } => {
                read(Table::Agents, key.as_bytes())
            }
            Change::SetAgentEnabled { key, .. } => read(Table::Agents, key.as_bytes()),
            Change::CreateToken { token, .. } => read(Table::Agents, token.agent_key.as_bytes()),
            Change::Enroll {
                token_hash, cert, ..
            } => {
                read(Table::Tokens, token_hash);
                read(Table::Agents, cert.agent_key.as_bytes());
                read(Table::Certs, cert.serial.as_bytes());
                if carried_scopes(cert).is_some() {
                    read(Table::Meta, super::records::SCOPE_BLOCKS_KEY);
                }
            }
            Change::Renew { from, cert, .. } => {
                read(Table::Certs, from.as_bytes());
                read(Table::Agents, cert.agent_key.as_bytes());
                read(Table::Certs, cert.serial.as_bytes());
                if carried_scopes(cert).is_some() {
                    read(Table::Meta, super::records::SCOPE_BLOCKS_KEY);
                }
            }
            Change::BumpCounter(name) => read(Table::Meta, name.as_bytes()),
            Change::Audit(_) => read(Table::Meta, crate::audit::HEAD_KEY.as_bytes()),
            Change::Audited { change, .. } => {
                change.reads(keys);
                keys.push((Table::Meta, crate::audit::HEAD_KEY.as_bytes().to_vec()));
            }
            _ => {}
        }
    }
}

/// Applies one change inside a write transaction: checks, then writes.
pub fn apply(txn: &mut dyn WriteTxn, change: &Change) -> Result<Outcome, StoreError> {
    match change {
        Change::RegisterAgent(agent) => {
            let key = agent.key();
            if !txn.insert_new(
                Table::Agents,
                key.as_bytes(),
                &super::records::encode(agent),
            )? {
                return Ok(Err(Conflict::AgentExists));
            }
        }
        Change::Register {
            agent,
            by,
            reuse,
            then_propose,
        } => return governance::register(txn, agent, by, *reuse, then_propose.as_ref()),
        Change::UpdateAgent {
            key,
            expected,
            update,
            by,
            at,
            then_propose,
        } => {
            return governance::update(txn, key, *expected, update, by, *at, then_propose.as_ref())
        }
        Change::BlockScope(block) => return governance::block(txn, block),
        Change::Approve { id, by, at } => return governance::approve(txn, *id, by, *at),
        Change::Reject { id } => return governance::reject(txn, *id),
        Change::UnblockScope { id, tenant, at } => {
            return governance::unblock(txn, *id, tenant.as_deref(), *at)
        }
        Change::Retire { key, by, at } => return governance::retire(txn, key, by, *at),
        Change::SetAgentEnabled { key, enabled, at } => {
            let Some(mut record) = get::<AgentRecord>(txn, Table::Agents, key.as_bytes())? else {
                return Ok(Err(Conflict::AgentNotFound));
            };
            refuse_unless!(agent::may_change(&record));
            if agent::set_enabled(&mut record, *enabled, *at) {
                put(txn, Table::Agents, key.as_bytes(), &record)?;
            }
        }
        Change::CreateToken { hash, token } => {
            refuse_unless!(issuable_agent(txn, &token.agent_key)?);
            writes::insert_token(txn, hash, token)?;
        }
        Change::Enroll {
            token_hash,
            at,
            cert,
            limits,
        } => {
            let Some(mut record) = get::<TokenRecord>(txn, Table::Tokens, token_hash)? else {
                return Ok(Err(Conflict::TokenNotFound));
            };
            refuse_unless!(token::redeem(&mut record, *at));
            if record.agent_key != cert.agent_key {
                return Ok(Err(Conflict::TokenAgentMismatch));
            }
            let mut agent = match issuable_agent(txn, &cert.agent_key)? {
                Ok(a) => a,
                Err(c) => return Ok(Err(c)),
            };
            let (issued, _) =
                refuse_unless!(issuance_limit::admit_issuance(&agent, None, *limits, *at));
            agent.issued = issued;
            if !still_fits(txn, cert, &agent)? {
                return Ok(Err(Conflict::RegistrationChanged));
            }
            if txn.get(Table::Certs, cert.serial.as_bytes())?.is_some() {
                return Ok(Err(Conflict::SerialExists));
            }
            put(txn, Table::Tokens, token_hash, &record)?;
            writes::insert_cert(txn, agent, cert)?;
        }
        Change::Renew {
            from,
            at,
            cert,
            limits,
        } => {
            let Some(mut old) = get::<CertRecord>(txn, Table::Certs, from.as_bytes())? else {
                return Ok(Err(Conflict::CertificateNotFound));
            };
            match certificate::renewable(&old, *at) {
                Err(certificate::CertRefusal::Revoked) => {
                    return Ok(Err(Conflict::CertificateRevoked))
                }
                Err(_) => return Ok(Err(Conflict::CertificateExpired)),
                Ok(()) => {}
            }
            match certificate::renewal(&old, &cert.key_sha256) {
                Ok(certificate::RenewalVerdict::First) => {}
                Ok(
                    certificate::RenewalVerdict::Retry(renewal)
                    | certificate::RenewalVerdict::Clone(renewal),
                ) => return Ok(Err(Conflict::AlreadyRenewed(renewal.clone()))),
                Err(_) => return Ok(Err(Conflict::KeyReused)),
            }
            let mut agent = match issuable_agent(txn, &old.agent_key)? {
                Ok(a) => a,
                Err(c) => return Ok(Err(c)),
            };
            let (issued, chain) = refuse_unless!(issuance_limit::admit_issuance(
                &agent,
                Some(&old),
                *limits,
                *at
            ));
            agent.issued = issued;
            if !still_fits(txn, cert, &agent)? {
                return Ok(Err(Conflict::RegistrationChanged));
            }
            let mut cert = cert.clone();
            cert.renewals = chain;
            let cert = &cert;
            if txn.get(Table::Certs, cert.serial.as_bytes())?.is_some() {
                return Ok(Err(Conflict::SerialExists));
            }
            old.renewed_by = Some(Renewal {
                serial: cert.serial.clone(),
                key_sha256: cert.key_sha256.clone(),
                at: *at,
            });
            put(txn, Table::Certs, from.as_bytes(), &old)?;
            writes::insert_cert(txn, agent, cert)?;
        }
        Change::RecordCloneAlert(alert) => writes::insert_alert(txn, alert)?,
        Change::PutAdmin { hash, admin, by } => {
            if !txn.insert_new(Table::AdminNames, admin.name.as_bytes(), hash)? {
                return Ok(Err(Conflict::AdminExists));
            }
            put(txn, Table::Admins, hash, admin)?;
            governance::record_admin_version(txn, admin, by, "create", admin.created_at)?;
        }
        Change::SetAdminRole {
            name,
            role,
            expected,
            by,
            at,
        } => return governance::set_admin_role(txn, name, *role, *expected, by, *at),
        Change::DeleteAdmin(name) => {
            let Some(hash) = txn.get(Table::AdminNames, name.as_bytes())? else {
                return Ok(Err(Conflict::AdminNotFound));
            };
            if let Some(target) = get::<AdminRecord>(txn, Table::Admins, &hash)? {
                let others = governance::other_global_admins(txn, &hash)?;
                if admin::may_remove(&target, others).is_err() {
                    return Ok(Err(Conflict::LastGlobalAdmin));
                }
            }
            txn.delete(Table::Admins, &hash)?;
            txn.delete(Table::AdminNames, name.as_bytes())?;
            // A new admin of the same name starts its own versions (the
            // audit trail keeps this one's).
            governance::forget_admin_versions(txn, name)?;
        }
        Change::Audit(event) => {
            crate::audit::append(txn, event.clone())?;
        }
        Change::Audited { change, audit } => {
            let outcome = apply(txn, change)?;
            if let Ok(applied) = &outcome {
                let mut event = (**audit).clone();
                if let Applied::Versioned {
                    version, scopes, ..
                } = applied
                {
                    // What committed, not what was read before.
                    if event.version.is_some() {
                        event.version = Some(*version);
                    }
                    if event.scopes.is_some() {
                        event.scopes = Some(scopes.clone());
                    }
                }
                if let Applied::Revoked(summary) = applied {
                    if summary.version.is_some() && event.version.is_some() {
                        event.version = summary.version;
                    }
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
                crate::audit::append(txn, event)?;
            }
            return Ok(outcome);
        }
        Change::Revoke { target, reason, at } => return writes::revoke(txn, target, *reason, *at),
        Change::Prune { before, limit } => return writes::prune(txn, *before, *limit),
        Change::Compact { now, limit } => return writes::compact(txn, *now, *limit),
        Change::BumpCounter(name) => return Ok(Ok(Applied::Counter(txn.next_in_sequence(name)?))),
        Change::PublishCrl { issuer, crl } => {
            let published = get::<PublishedCrl>(txn, Table::Meta, issuer.key())?;
            if crl::supersedes(crl.coverage(), published.as_ref().map(|p| p.coverage())) {
                put(txn, Table::Meta, issuer.key(), crl)?;
                return Ok(Ok(Applied::Crl(Some(crl.clone()))));
            }
            return Ok(Ok(Applied::Crl(published)));
        }
        Change::EventCursor(m) => return writes::move_cursor(txn, m),
        Change::PruneAudit { through, hash, at } => {
            // The cursors count only with a time to judge them by.
            let cursors = match at {
                Some(_) => writes::cursors(txn)?,
                None => Vec::new(),
            };
            let slowest = at.and_then(|at| {
                super::events::slowest(cursors.iter().map(|(r, c)| (r.as_str(), c)), at)
            });
            return Ok(crate::audit::prune(txn, *through, hash, slowest)?
                .map(Applied::AuditPruned)
                .map_err(Conflict::from));
        }
        Change::ClaimPruning { at, period } => {
            let last = match txn.get(Table::Meta, PRUNED_AT_KEY)? {
                None => None,
                Some(bytes) => Some(writes::time_of(Table::Meta, &bytes)?),
            };
            if !retention::pruning_due(last, *at, *period) {
                return Ok(Err(Conflict::PruningNotDue));
            }
            txn.put(
                Table::Meta,
                PRUNED_AT_KEY,
                &super::records::time_key(*at, &[]),
            )?;
        }
    }
    Ok(Ok(Applied::Done))
}
