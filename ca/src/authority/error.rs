//! What the authority answers when it refuses or fails: one error type,
//! the stable code of each refusal (the API and the audit trail show the
//! same code), and the one table that turns a commit-time conflict into
//! the refusal the caller sees. HTTP statuses are not decided here
//! (`http/error.rs` maps each kind to one).

use agentca::identity::{AgentId, IdError, InstanceId};
use agentca::wire::Serial;
use time::OffsetDateTime;

use crate::issuance::csr::CsrError;
use crate::state::admin::AdminRefusal;
use crate::state::issuance_limit::LimitReached;
use crate::state::review::ReviewRefusal;
use crate::state::token::TokenRefusal;
use crate::state::Conflict;
use crate::store::StoreError;

/// Why the authority refused, or failed.
#[derive(Debug, thiserror::Error)]
pub enum AuthorityError {
    /// No admin token, or an unknown one.
    #[error("a valid admin token is required (Authorization: Bearer <token>)")]
    Unauthorized,
    /// The admin may not act on this tenant.
    #[error("this admin may act only on tenant {allowed:?}")]
    Forbidden {
        /// The admin's tenant.
        allowed: String,
    },
    /// The admin is an auditor: it reads, it changes nothing.
    #[error("this admin is an auditor: it may read, not change anything")]
    ReadOnly,
    /// A malformed request.
    #[error("{0}")]
    InvalidRequest(String),
    /// A tenant, env, agent or SPIFFE ID that breaks the identity rules.
    #[error("invalid identity: {0}")]
    InvalidIdentity(#[from] IdError),
    /// A lifetime outside the allowed range.
    #[error("{what} of {requested} s is outside the allowed range {min}–{max} s")]
    TtlOutOfRange {
        /// What lifetime.
        what: &'static str,
        /// Asked for, in seconds.
        requested: u64,
        /// Minimum, in seconds.
        min: i64,
        /// Maximum, in seconds.
        max: i64,
    },
    /// The agent is already registered.
    #[error("{0} is already registered")]
    AgentExists(AgentId),
    /// The agent is not registered.
    #[error("{0} is not registered")]
    AgentNotFound(AgentId),
    /// The agent is disabled.
    #[error("{0} is disabled; an admin must enable it first")]
    AgentDisabled(AgentId),
    /// The agent is retired.
    #[error("{0} is retired: it is never issued a certificate or a token again")]
    AgentRetired(AgentId),
    /// The update was based on another version of the registration.
    #[error("the registration of {id} is at version {current}; the update was based on another (read it again)")]
    VersionConflict {
        /// The agent.
        id: AgentId,
        /// Its current version.
        current: u64,
    },
    /// The registration changed, or a scope was blocked, while the
    /// certificate was being issued.
    #[error("the registration of {0} changed while its certificate was issued; retry")]
    RegistrationChanged(AgentId),
    /// The same scope is blocked for the same target already.
    #[error("this scope is already blocked for this target")]
    BlockExists,
    /// As many blocks as allowed are in force.
    #[error("{0} scope blocks of this kind (of every agent, or of this tenant) are in force, the most allowed; lift one first")]
    TooManyBlocks(usize),
    /// No pending change with this id (or none this admin may see).
    #[error("no change {0} waits for review")]
    PendingNotFound(u64),
    /// As many changes as allowed wait for review.
    #[error("{0} changes wait for review, the most allowed; approve or reject some first")]
    TooManyPending(usize),
    /// The admin who asked for a change may not approve it.
    #[error("a change is approved by another admin than the one who asked for it")]
    OwnChange,
    /// The pending change lapsed.
    #[error("change {0} lapsed unapproved; ask for it again")]
    PendingExpired(u64),
    /// No block with this id (or none this admin may lift).
    #[error("no scope block {0} is in force")]
    BlockNotFound(u64),
    /// The token is unknown or malformed.
    #[error("the bootstrap token is not valid")]
    TokenInvalid,
    /// The token has expired.
    #[error("the bootstrap token has expired; ask an admin for a new one")]
    TokenExpired,
    /// The token has no uses left.
    #[error("the bootstrap token has already been used; ask an admin for a new one")]
    TokenUsed,
    /// The token was voided.
    #[error("the bootstrap token was voided; ask an admin for a new one")]
    TokenVoided,
    /// The CSR was refused.
    #[error(transparent)]
    Csr(#[from] CsrError),
    /// Renewal needs the current certificate as TLS client certificate.
    #[error("renewal needs the current certificate, presented as TLS client certificate")]
    ClientCertificateRequired,
    /// The presented certificate is not one this CA issued.
    #[error("the presented certificate was not issued by this CA: {0}")]
    CertificateUnknown(String),
    /// The presented certificate has expired.
    #[error("the presented certificate expired at {0}; enroll again with a bootstrap token")]
    CertificateExpired(String),
    /// The presented certificate is not valid yet.
    #[error("the presented certificate is not valid yet")]
    CertificateNotYetValid,
    /// The presented certificate is revoked.
    #[error("the presented certificate is revoked")]
    CertificateRevoked,
    /// The renewal CSR is for the key of the presented certificate.
    #[error("the CSR reuses the current key; renew with a new key")]
    KeyReused,
    /// The certificate was already renewed with another key.
    #[error("certificate {0} was already renewed with another key; the renewal is refused and recorded as a clone alert")]
    CloneDetected(Serial),
    /// The issuing CA has expired.
    #[error("the issuing CA certificate has expired")]
    IssuerExpired,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Signing failed.
    #[error("could not sign the certificate: {0}")]
    Sign(String),
    /// A state the CA should never be in.
    #[error("internal error: {0}")]
    Internal(String),
    /// No certificate with this serial is on record.
    #[error("no certificate with serial {0} is on record")]
    CertificateNotFound(Serial),
    /// No certificate of this instance is on record.
    #[error("no certificate of instance {0} is on record")]
    InstanceNotFound(InstanceId),
    /// No registered agent matches.
    #[error("no agent is registered under {0}")]
    NoAgentMatches(String),
    /// An admin with this name exists.
    #[error("an admin named {0:?} exists")]
    AdminExists(String),
    /// No admin with this name.
    #[error("no admin is named {0:?}")]
    AdminNotFound(String),
    /// Revoking this admin, or making it an auditor, would leave nobody
    /// able to change every tenant.
    #[error(
        "{0:?} is the last global admin; create another before revoking it or making it an auditor"
    )]
    LastGlobalAdmin(String),
    /// The role change was based on another version of the admin.
    #[error("admin {name:?} is at version {current}; the change was based on another")]
    AdminVersionConflict {
        /// The admin.
        name: String,
        /// Its current version.
        current: u64,
    },
    /// The agent, or the instance's chain of renewals, was issued as many
    /// certificates as it may be in one certificate lifetime.
    #[error("issuance limit reached: {count} certificates since {since}; retry after {retry_at}", since = super::rfc3339(.0.start), count = .0.count, retry_at = super::rfc3339(.0.retry_at))]
    IssuanceLimited(LimitReached),
    /// The audit trail may not be pruned so.
    #[error("the audit trail is not pruned: {0}")]
    AuditPrune(crate::audit::PruneRefusal),
}

/// What kind of refusal (or failure) an [`AuthorityError`] is: the API
/// answers each kind with one HTTP status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// The request is malformed or asks for what the policy does not allow.
    Invalid,
    /// The caller is not authenticated (admin token, bootstrap token, or
    /// client certificate).
    Unauthenticated,
    /// The caller may not do this.
    Forbidden,
    /// What the request names does not exist.
    NotFound,
    /// The request conflicts with the current state.
    Conflict,
    /// The caller asks too often: retry later.
    Limited,
    /// The CA cannot serve now (store down, issuer expired).
    Unavailable,
    /// The CA failed.
    Internal,
}

impl AuthorityError {
    /// The stable code of this refusal, as the API and the audit trail
    /// show it, and its kind.
    pub fn classify(&self) -> (&'static str, ErrorKind) {
        use AuthorityError as E;
        use ErrorKind as K;
        match self {
            E::Unauthorized => ("unauthorized", K::Unauthenticated),
            E::Forbidden { .. } | E::ReadOnly => ("forbidden", K::Forbidden),
            E::InvalidRequest(_) => ("invalid_request", K::Invalid),
            E::InvalidIdentity(_) => ("invalid_identity", K::Invalid),
            E::TtlOutOfRange { .. } => ("ttl_out_of_range", K::Invalid),
            E::AgentExists(_) => ("agent_exists", K::Conflict),
            E::AgentNotFound(_) | E::NoAgentMatches(_) => ("agent_not_found", K::NotFound),
            E::AgentDisabled(_) => ("agent_disabled", K::Forbidden),
            E::AgentRetired(_) => ("agent_retired", K::Forbidden),
            E::VersionConflict { .. } | E::AdminVersionConflict { .. } => {
                ("version_conflict", K::Conflict)
            }
            E::RegistrationChanged(_) => ("registration_changed", K::Conflict),
            E::BlockExists => ("block_exists", K::Conflict),
            E::TooManyBlocks(_) => ("too_many_blocks", K::Conflict),
            E::BlockNotFound(_) => ("block_not_found", K::NotFound),
            E::PendingNotFound(_) => ("pending_not_found", K::NotFound),
            E::TooManyPending(_) => ("too_many_pending", K::Conflict),
            E::OwnChange => ("own_change", K::Forbidden),
            E::PendingExpired(_) => ("pending_expired", K::Conflict),
            E::TokenInvalid => ("token_invalid", K::Unauthenticated),
            E::TokenExpired => ("token_expired", K::Unauthenticated),
            E::TokenUsed => ("token_used", K::Unauthenticated),
            E::TokenVoided => ("token_voided", K::Unauthenticated),
            E::Csr(CsrError::Malformed(_)) => ("csr_malformed", K::Invalid),
            E::Csr(CsrError::SignatureInvalid) => ("csr_signature_invalid", K::Invalid),
            E::Csr(CsrError::KeyTypeNotAllowed(_)) => ("key_type_not_allowed", K::Invalid),
            E::ClientCertificateRequired => ("client_certificate_required", K::Unauthenticated),
            E::CertificateUnknown(_) => ("certificate_unknown", K::Unauthenticated),
            E::CertificateExpired(_) => ("certificate_expired", K::Unauthenticated),
            E::CertificateNotYetValid => ("certificate_not_yet_valid", K::Unauthenticated),
            E::CertificateRevoked => ("certificate_revoked", K::Unauthenticated),
            E::KeyReused => ("key_reused", K::Invalid),
            E::CloneDetected(_) => (agentca::wire::CLONE_DETECTED, K::Conflict),
            E::IssuerExpired => ("issuer_expired", K::Unavailable),
            E::Store(_) => ("store_unavailable", K::Unavailable),
            E::CertificateNotFound(_) => ("certificate_not_found", K::NotFound),
            E::InstanceNotFound(_) => ("instance_not_found", K::NotFound),
            E::AdminExists(_) => ("admin_exists", K::Conflict),
            E::AdminNotFound(_) => ("admin_not_found", K::NotFound),
            E::LastGlobalAdmin(_) => ("last_global_admin", K::Conflict),
            E::IssuanceLimited(_) => ("issuance_limited", K::Limited),
            E::AuditPrune(_) => ("audit_prune_refused", K::Conflict),
            E::Sign(_) | E::Internal(_) => ("internal_error", K::Internal),
        }
    }

    /// The stable code of this refusal.
    pub fn code(&self) -> &'static str {
        self.classify().0
    }

    /// Whether the CA failed, rather than refused.
    pub fn is_failure(&self) -> bool {
        matches!(
            self.classify().1,
            ErrorKind::Unavailable | ErrorKind::Internal
        )
    }
}

impl From<TokenRefusal> for AuthorityError {
    fn from(r: TokenRefusal) -> Self {
        match r {
            TokenRefusal::Voided => AuthorityError::TokenVoided,
            TokenRefusal::Expired => AuthorityError::TokenExpired,
            TokenRefusal::UsedUp => AuthorityError::TokenUsed,
        }
    }
}

impl From<AdminRefusal> for AuthorityError {
    fn from(r: AdminRefusal) -> Self {
        match r {
            AdminRefusal::Forbidden { allowed } => AuthorityError::Forbidden { allowed },
            AdminRefusal::ReadOnly => AuthorityError::ReadOnly,
            // Only the commit of a removal meets it, and names the admin.
            AdminRefusal::LastGlobalAdmin => {
                AuthorityError::Internal("the last global admin rule out of place".into())
            }
        }
    }
}

/// What a change was about, to name it in the refusal of a conflict.
#[derive(Clone, Copy, Debug)]
pub(super) enum Named<'a> {
    /// A registered agent (registration, enabling, a token, enrollment).
    Agent(&'a AgentId),
    /// The certificate an agent presented for renewal: its agent and end.
    Presented {
        /// Its agent.
        id: &'a AgentId,
        /// Its notAfter.
        not_after: OffsetDateTime,
    },
    /// What a revocation targets, as the admin named it.
    Revocation {
        /// The target, as said in the refusal (`acme/prod`, `certificate …`).
        what: &'a str,
        /// The serial, when one was named.
        serial: Option<&'a Serial>,
        /// The instance, when one was named.
        instance: Option<&'a InstanceId>,
    },
    /// An admin, by name.
    Admin(&'a str),
    /// A scope block, by id once it has one.
    Block(Option<u64>),
    /// A change waiting for review, of an agent, by id once it has one.
    Pending(&'a AgentId, Option<u64>),
}

/// The refusal a commit-time `conflict` of a change about `named` is: the
/// one table from the state's conflicts to the authority's errors. A
/// conflict that cannot arise for what was named is the CA's failure.
pub(super) fn refused(conflict: Conflict, named: Named<'_>) -> AuthorityError {
    use AuthorityError as E;
    use Conflict as C;
    match (conflict, named) {
        (C::AgentExists, Named::Agent(id)) => E::AgentExists(id.clone()),
        (C::AgentNotFound, Named::Agent(id)) => E::AgentNotFound(id.clone()),
        (C::AgentDisabled, Named::Agent(id) | Named::Presented { id, .. }) => {
            E::AgentDisabled(id.clone())
        }
        (C::AgentRetired, Named::Agent(id) | Named::Presented { id, .. }) => {
            E::AgentRetired(id.clone())
        }
        (C::VersionConflict { current }, Named::Agent(id)) => E::VersionConflict {
            id: id.clone(),
            current,
        },
        (C::RegistrationChanged, Named::Agent(id) | Named::Presented { id, .. }) => {
            E::RegistrationChanged(id.clone())
        }
        (C::BlockExists, Named::Block(_)) => E::BlockExists,
        (C::TooManyBlocks(limit), Named::Block(_)) => E::TooManyBlocks(limit),
        (C::BlockNotFound, Named::Block(Some(id))) => E::BlockNotFound(id),
        (C::PendingNotFound, Named::Pending(_, Some(id))) => E::PendingNotFound(id),
        (C::TooManyPending(limit), Named::Pending(..)) => E::TooManyPending(limit),
        (C::Review(ReviewRefusal::OwnChange), Named::Pending(..)) => E::OwnChange,
        (C::Review(ReviewRefusal::Expired), Named::Pending(_, Some(id))) => E::PendingExpired(id),
        (C::VersionConflict { current }, Named::Pending(id, _)) => E::VersionConflict {
            id: id.clone(),
            current,
        },
        (C::AgentRetired, Named::Pending(id, _)) => E::AgentRetired(id.clone()),
        (C::AgentNotFound, Named::Pending(id, _)) => E::AgentNotFound(id.clone()),
        (C::TokenNotFound, Named::Agent(_)) => E::TokenInvalid,
        (C::TokenExpired, Named::Agent(_)) => E::TokenExpired,
        (C::TokenUsed, Named::Agent(_)) => E::TokenUsed,
        (C::TokenVoided, Named::Agent(_)) => E::TokenVoided,
        (C::CertificateRevoked, Named::Presented { .. }) => E::CertificateRevoked,
        (C::CertificateExpired, Named::Presented { not_after, .. }) => {
            E::CertificateExpired(super::rfc3339(not_after))
        }
        (C::KeyReused, Named::Presented { .. }) => E::KeyReused,
        (C::AgentNotFound | C::CertificateNotFound, Named::Presented { .. }) => {
            E::CertificateUnknown("its record is gone".into())
        }
        (C::AgentNotFound, Named::Revocation { what, .. }) => E::NoAgentMatches(what.to_owned()),
        // Pruned between the authority's check and the commit.
        (
            C::CertificateNotFound,
            Named::Revocation {
                serial: Some(s), ..
            },
        ) => E::CertificateNotFound(s.clone()),
        (
            C::InstanceNotFound,
            Named::Revocation {
                instance: Some(i), ..
            },
        ) => E::InstanceNotFound(i.clone()),
        (C::AdminExists, Named::Admin(name)) => E::AdminExists(name.to_owned()),
        (C::AdminNotFound, Named::Admin(name)) => E::AdminNotFound(name.to_owned()),
        (C::LastGlobalAdmin, Named::Admin(name)) => E::LastGlobalAdmin(name.to_owned()),
        (C::VersionConflict { current }, Named::Admin(name)) => E::AdminVersionConflict {
            name: name.to_owned(),
            current,
        },
        (C::AuditPrune(refusal), _) => E::AuditPrune(refusal),
        (C::LimitReached(limit), Named::Agent(_) | Named::Presented { .. }) => {
            E::IssuanceLimited(limit)
        }
        (other, _) => E::Internal(format!("unexpected store conflict: {other}")),
    }
}

#[cfg(test)]
mod tests {
    use agentca::identity::{Name, Part, TrustDomain};

    use super::*;

    fn id() -> AgentId {
        AgentId::from_parts(
            TrustDomain::new("td.test").unwrap(),
            Name::new(Part::Tenant, "acme").unwrap(),
            Name::new(Part::Env, "prod").unwrap(),
            Name::new(Part::Agent, "bot").unwrap(),
        )
    }

    #[test]
    fn each_conflict_is_the_refusal_its_flow_expects() {
        let id = id();
        let agent = Named::Agent(&id);
        let presented = Named::Presented {
            id: &id,
            not_after: OffsetDateTime::UNIX_EPOCH,
        };
        let serial = Serial::from_bytes(&[0x40, 1]).unwrap();
        let by_serial = Named::Revocation {
            what: "certificate 4001",
            serial: Some(&serial),
            instance: None,
        };
        let by_agent = Named::Revocation {
            what: "acme/prod",
            serial: None,
            instance: None,
        };
        let admin = Named::Admin("ops");
        let limit = LimitReached {
            count: 3,
            start: OffsetDateTime::UNIX_EPOCH,
            retry_at: OffsetDateTime::UNIX_EPOCH,
        };
        let cases = [
            (C::AgentExists, agent, "agent_exists"),
            (C::AgentNotFound, agent, "agent_not_found"),
            (C::AgentDisabled, agent, "agent_disabled"),
            (C::TokenNotFound, agent, "token_invalid"),
            (C::TokenExpired, agent, "token_expired"),
            (C::TokenUsed, agent, "token_used"),
            (C::TokenVoided, agent, "token_voided"),
            (C::TokenAgentMismatch, agent, "internal_error"),
            (C::SerialExists, agent, "internal_error"),
            (C::AgentDisabled, presented, "agent_disabled"),
            (C::CertificateRevoked, presented, "certificate_revoked"),
            (C::CertificateExpired, presented, "certificate_expired"),
            (C::KeyReused, presented, "key_reused"),
            (C::AgentNotFound, presented, "certificate_unknown"),
            (C::CertificateNotFound, presented, "certificate_unknown"),
            (C::CertificateNotFound, by_serial, "certificate_not_found"),
            (C::AgentNotFound, by_agent, "agent_not_found"),
            (C::InstanceNotFound, by_agent, "internal_error"),
            (C::AdminExists, admin, "admin_exists"),
            (C::AdminNotFound, admin, "admin_not_found"),
            (C::LastGlobalAdmin, admin, "last_global_admin"),
            (C::LimitReached(limit), agent, "issuance_limited"),
            (C::LimitReached(limit), presented, "issuance_limited"),
            (C::AdminExists, agent, "internal_error"),
            (C::AgentRetired, agent, "agent_retired"),
            (C::AgentRetired, presented, "agent_retired"),
            (C::VersionConflict { current: 4 }, agent, "version_conflict"),
            (C::RegistrationChanged, agent, "registration_changed"),
            (C::RegistrationChanged, presented, "registration_changed"),
            (C::BlockExists, Named::Block(None), "block_exists"),
            (C::TooManyBlocks(100), Named::Block(None), "too_many_blocks"),
            (C::BlockNotFound, Named::Block(Some(7)), "block_not_found"),
            (C::BlockNotFound, agent, "internal_error"),
            (
                C::PendingNotFound,
                Named::Pending(&id, Some(3)),
                "pending_not_found",
            ),
            (
                C::TooManyPending(100),
                Named::Pending(&id, None),
                "too_many_pending",
            ),
            (
                C::Review(ReviewRefusal::OwnChange),
                Named::Pending(&id, Some(3)),
                "own_change",
            ),
            (
                C::Review(ReviewRefusal::Expired),
                Named::Pending(&id, Some(3)),
                "pending_expired",
            ),
            (
                C::VersionConflict { current: 2 },
                Named::Pending(&id, Some(3)),
                "version_conflict",
            ),
            (C::AgentRetired, Named::Pending(&id, None), "agent_retired"),
            (C::VersionConflict { current: 2 }, admin, "version_conflict"),
        ];
        for (conflict, named, code) in cases {
            let shown = format!("{conflict:?} about {named:?}");
            assert_eq!(refused(conflict, named).code(), code, "{shown}");
        }
        assert!(matches!(
            refused(C::AgentNotFound, by_agent),
            E::NoAgentMatches(what) if what == "acme/prod"
        ));
    }

    use AuthorityError as E;
    use Conflict as C;
}
