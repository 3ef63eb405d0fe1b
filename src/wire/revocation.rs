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
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevocationPage {
    /// Events after the requested `since`, in order (empty when the wait
    /// ended with nothing new).
    pub events: Vec<RevocationEvent>,
    /// The newest sequence number: ask again with `since` set to the last
    /// event's `seq`, or to this when `events` is empty.
    pub latest: u64,
}
