//! What applying a change says: done (and what it did), or the conflict
//! that refused it with nothing written.

use agentca::identity::InstanceId;
use agentca::wire::Serial;

use super::records::{Renewal, RevocationEvent};

/// What a [`super::Change::Revoke`] revokes.
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
    /// Audit events removed.
    AuditPruned(u64),
    /// Records of expired certificates compacted.
    Compacted(usize),
    /// The published CRL of an issuer, after the change: the one it
    /// published, or a newer one that another replica published first.
    Crl(Option<super::records::PublishedCrl>),
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
    /// The certificate expired before the change committed.
    #[error("the certificate has expired")]
    CertificateExpired,
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
    /// The renewal asks for the key the certificate already has.
    #[error("the renewal reuses the certificate's key")]
    KeyReused,
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
    /// A pruning pass began less than a period ago (on any replica).
    #[error("a pruning pass is not due")]
    PruningNotDue,
    /// The audit trail may not be pruned so.
    #[error("{0}")]
    AuditPrune(#[from] crate::audit::PruneRefusal),
    /// The agent or the instance reached its issuance limit.
    #[error("{0}")]
    LimitReached(#[from] super::issuance_limit::LimitReached),
}

/// The result of one change.
pub type Outcome = Result<Applied, Conflict>;
