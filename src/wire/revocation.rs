//! Revocation: what an admin asks for, and the feed that tells verifiers.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::Serial;
use crate::identity::{AgentId, InstanceId};

/// `POST /v1/admin/revoke`: what to revoke. Exactly one target: a serial,
/// an instance, an agent (tenant, env and agent), an environment of a
/// tenant (tenant and env) or a whole tenant.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevokeRequest {
    /// One certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial: Option<Serial>,
    /// Every live certificate of one instance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_id: Option<InstanceId>,
    /// A tenant (alone: the whole tenant).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// An environment of the tenant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<String>,
    /// An agent of the tenant's environment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    /// RFC 5280 reason: a name such as `keyCompromise` or its code
    /// (default `unspecified`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Most serials a revocation's answer lists: revoking a tenant may reach
/// hundreds of thousands of certificates, and the answer stays small.
pub const MAX_SERIALS_LISTED: usize = 1000;

/// What a revocation did. Revoking is idempotent: certificates revoked
/// before are not counted again.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevokeResponse {
    /// How many certificates this call revoked.
    pub revoked: usize,
    /// Their serials: all of them, or the first [`MAX_SERIALS_LISTED`]
    /// (then `serials_truncated`; the feed and the CRL list every one).
    pub serials: Vec<Serial>,
    /// Whether `serials` lists only the first of them.
    #[serde(default)]
    pub serials_truncated: bool,
    /// How many agents this call disabled (agent and tenant targets).
    pub agents_disabled: usize,
    /// How many unused bootstrap tokens this call voided.
    pub tokens_voided: usize,
}

/// One event of the revocation feed (`GET /v1/revocations`).
///
/// Anyone may read the feed, so what it tells anyone is what a verifier
/// needs (the serial and how long it matters). The identity, instance and
/// reason are there only for an admin's token that may see the tenant: a
/// `keyCompromise` next to an agent's name tells an attacker which agent
/// was caught.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevocationEvent {
    /// Position in the feed; events come in increasing order.
    pub seq: u64,
    /// The revoked certificate.
    pub serial: Serial,
    /// Its identity (admins only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spiffe_id: Option<AgentId>,
    /// Its instance (admins only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_id: Option<InstanceId>,
    /// Its end of validity: after it, the event no longer matters.
    #[serde(with = "time::serde::rfc3339")]
    pub not_after: OffsetDateTime,
    /// RFC 5280 reason name (admins only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// When it was revoked.
    #[serde(with = "time::serde::rfc3339")]
    pub revoked_at: OffsetDateTime,
}

/// A page of the revocation feed.
///
/// Revocations and scope events share one sequence: a page holds both
/// kinds after `since`, each list in order. (A verifier of an earlier
/// version reads `events` and skips `scopes`.)
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevocationPage {
    /// Revocations after the requested `since`, in order (empty when the
    /// wait ended with nothing new).
    pub events: Vec<RevocationEvent>,
    /// Scope events after `since`, in order: withdrawals and blocks.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scopes: Vec<ScopeEvent>,
    /// The newest sequence number: ask again with `since` set to this.
    pub latest: u64,
}

/// One scope event of the feed: a scope that live certificates carry and
/// may no longer be used for, or no longer blocked.
///
/// Anyone may read the feed, so the event names serials and scopes, not
/// agents: the certificates a withdrawal or a targeted block reaches are
/// listed by serial (an admin's token that may see the tenant gets the
/// target's name too).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScopeEvent {
    /// Position in the feed (shared with revocations).
    pub seq: u64,
    /// When it happened.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// What changed.
    #[serde(flatten)]
    pub change: ScopeChange,
}

/// What a [`ScopeEvent`] changes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ScopeChange {
    /// The certificate's registration lost `scopes` after it was issued:
    /// it may no longer be used for them (its other scopes still work).
    Withdrawn {
        /// The certificate.
        serial: Serial,
        /// The scopes it may no longer be used for.
        scopes: Vec<String>,
        /// Its end of validity: after it, the event no longer matters.
        #[serde(with = "time::serde::rfc3339")]
        not_after: OffsetDateTime,
    },
    /// `scope` is blocked until the block is lifted: for every
    /// certificate when `serials` is absent; otherwise for the listed ones
    /// (the live certificates of the agents the block names; certificates
    /// issued while the block stands do not carry the scope). A block that
    /// reaches many certificates comes as several events with the same
    /// `block`.
    Blocked {
        /// The block's id (the sequence number of its first event).
        block: u64,
        /// The blocked scope.
        scope: String,
        /// The certificates it reaches; all when absent.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        serials: Option<Vec<Serial>>,
        /// What the block names: `tenant`, `tenant/env` or
        /// `tenant/env/agent` (admins only; absent for a global block).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        target: Option<String>,
    },
    /// The block `block` is lifted.
    Unblocked {
        /// The block's id.
        block: u64,
    },
}

/// `GET /v1/revocations/snapshot`: the state a verifier needs, at one
/// sequence number, to start from before it follows the feed after
/// `latest`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeedSnapshot {
    /// The feed position the state is at.
    pub latest: u64,
    /// Revoked certificates that have not expired.
    pub revoked: Vec<RevokedSerial>,
    /// The scope events still in force (withdrawals of live certificates,
    /// blocks not lifted), in order.
    pub scopes: Vec<ScopeEvent>,
}

/// A revoked certificate in a [`FeedSnapshot`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevokedSerial {
    /// The certificate.
    pub serial: Serial,
    /// Its end of validity.
    #[serde(with = "time::serde::rfc3339")]
    pub not_after: OffsetDateTime,
}

/// Most serials in one [`ScopeChange::Blocked`] event.
pub const MAX_BLOCK_SERIALS: usize = 1000;

/// `POST /v1/admin/scopes/blocks`: block a scope, for everyone or the
/// agents of a tenant, an environment or one agent.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlockScopeRequest {
    /// The scope.
    pub scope: String,
    /// A tenant (absent: every agent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// An environment of the tenant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<String>,
    /// An agent of the environment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    /// Why, for the audit trail and the list of blocks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// A scope block in force (`GET /v1/admin/scopes/blocks`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScopeBlock {
    /// Its id, to lift it by.
    pub id: u64,
    /// The blocked scope.
    pub scope: String,
    /// What it names: `tenant`, `tenant/env`, `tenant/env/agent`; every
    /// agent when absent.
    #[serde(default)]
    pub target: Option<String>,
    /// Why.
    #[serde(default)]
    pub reason: Option<String>,
    /// The admin who blocked it.
    pub by: String,
    /// When.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// Live certificates it reached when it was set (absent for a global
    /// block).
    #[serde(default)]
    pub certificates: Option<usize>,
}

/// Largest revocation snapshot a client reads (`GET
/// /v1/revocations/snapshot` lists every revoked, unexpired serial).
pub const MAX_SNAPSHOT_BYTES: usize = 64 * 1024 * 1024;
