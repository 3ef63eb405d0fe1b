//! What applying a change says: done (and what it did), or the conflict
//! that refused it with nothing written.

use agentca::identity::InstanceId;
use agentca::wire::Serial;

use super::records::{BlockRecord, Renewal, RevocationEvent, ScopeEventRecord};

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
    /// An event receiver's cursor after the change: the last event it
    /// acknowledged.
    Cursor(u64),
    /// Records of expired certificates compacted.
    Compacted(usize),
    /// The published CRL of an issuer, after the change: the one it
    /// published, or a newer one that another replica published first.
    Crl(Option<super::records::PublishedCrl>),
    /// A registration at a new version (or unchanged at its version),
    /// and the scopes it withdrew from live certificates.
    Versioned {
        /// The registration's version after the change.
        version: u64,
        /// The feed's events of the withdrawals.
        scope_events: Vec<ScopeEventRecord>,
        /// The registration's scopes after the change (none for an admin).
        scopes: Vec<String>,
        /// The change stored to wait for review with it, if any.
        pending: Option<super::records::PendingRecord>,
    },
    /// A change waiting for review, stored (or removed).
    Proposed(super::records::PendingRecord),
    /// A block set or lifted, and its feed events.
    Scoped {
        /// The block.
        block: Option<BlockRecord>,
        /// The feed's events.
        scope_events: Vec<ScopeEventRecord>,
    },
}

impl Applied {
    /// The feed's scope events of this change.
    pub fn scope_events(&self) -> &[ScopeEventRecord] {
        match self {
            Applied::Versioned { scope_events, .. } | Applied::Scoped { scope_events, .. } => {
                scope_events
            }
            _ => &[],
        }
    }
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
    /// For a retirement, the registration's version it made.
    pub version: Option<u64>,
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
    /// The agent is retired.
    #[error("the agent is retired")]
    AgentRetired,
    /// The registration is at another version than the update expected.
    #[error("the registration is at version {current}")]
    VersionConflict {
        /// Its version.
        current: u64,
    },
    /// The registration changed (or a block was set) after the
    /// certificate was signed: it carries a scope no longer granted.
    #[error("the registration changed while the certificate was issued")]
    RegistrationChanged,
    /// The same scope is blocked for the same target already.
    #[error("this scope is blocked for this target already")]
    BlockExists,
    /// As many blocks of its kind as allowed are in force (the limit).
    #[error("{0} scope blocks of this kind are in force, the most allowed")]
    TooManyBlocks(usize),
    /// No such block.
    #[error("no such block")]
    BlockNotFound,
    /// No such pending change.
    #[error("no such pending change")]
    PendingNotFound,
    /// As many changes as allowed wait for review (the limit).
    #[error("{0} changes wait for review, the most allowed")]
    TooManyPending(usize),
    /// The pending change may not be approved.
    #[error("{0}")]
    Review(#[from] super::review::ReviewRefusal),
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
    /// An event receiver's cursor may not move so.
    #[error("{0}")]
    Cursor(#[from] super::events::CursorConflict),
    /// The agent or the instance reached its issuance limit.
    #[error("{0}")]
    LimitReached(#[from] super::issuance_limit::LimitReached),
}

/// The result of one change.
pub type Outcome = Result<Applied, Conflict>;
