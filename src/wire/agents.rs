//! Registering agents, listing them, and their bootstrap tokens: what an
//! admin sends and gets back.

use std::fmt;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::Serial;
use crate::identity::{AgentId, InstanceId};

/// `POST /v1/admin/agents`: register an agent.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegisterAgentRequest {
    /// Tenant name.
    pub tenant: String,
    /// Environment name.
    pub env: String,
    /// Agent name.
    pub agent: String,
    /// Who is responsible for this agent (a team, a person, an email).
    pub owner: String,
    /// What the agent is for, in a sentence.
    pub purpose: String,
    /// Lifetime of its certificates in seconds; the CA's default when absent.
    #[serde(default)]
    pub ttl_seconds: Option<u64>,
    /// Permissions written into its certificates, such as `tickets:read`
    /// (see [`crate::scopes`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scopes: Vec<String>,
    /// Register the name of a retired agent again (a new agent under the
    /// old name; the history stays). Without it, a retired name is
    /// refused.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub reuse_retired: bool,
}

/// `PATCH /v1/admin/agents/{tenant}/{env}/{agent}`: change a registration.
/// Absent fields keep their value; `scopes`, when present, is the new set.
/// Each change is a new version of the registration.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateAgentRequest {
    /// The new owner.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// The new purpose.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purpose: Option<String>,
    /// The new lifetime of its certificates, in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_seconds: Option<u64>,
    /// The new set of scopes (empty: none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scopes: Option<Vec<String>>,
}

/// One version of a registration (`GET …/history`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentVersion {
    /// The version, from 1.
    pub version: u64,
    /// When it took effect.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// The admin who made it.
    pub by: String,
    /// What happened: `register`, `update`, `retire`, `reuse`.
    pub change: String,
    /// Who is responsible for the agent.
    pub owner: String,
    /// What it is for.
    pub purpose: String,
    /// Lifetime of its certificates, in seconds.
    pub ttl_seconds: u64,
    /// Its scopes.
    pub scopes: Vec<String>,
    /// Whether it is retired from this version on.
    #[serde(default)]
    pub retired: bool,
}

/// Response header of `GET /v1/admin/agents` when the listing stopped
/// before its end: the `tenant/env/agent` to pass as `after=` for the next
/// page. No header, no more agents.
pub const NEXT_AFTER_HEADER: &str = "x-agentca-next-after";

/// A registered agent, as the admin API shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentInfo {
    /// The agent's identity.
    pub spiffe_id: AgentId,
    /// Who is responsible for it.
    pub owner: String,
    /// What it is for.
    pub purpose: String,
    /// Lifetime of its certificates, in seconds.
    pub ttl_seconds: u64,
    /// Permissions written into its certificates.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Whether it may enroll and renew.
    pub enabled: bool,
    /// The registration's version (send it as `If-Match` to update).
    #[serde(default)]
    pub version: u64,
    /// When it was retired, if it was: it never gets a certificate again.
    #[serde(with = "time::serde::rfc3339::option", default)]
    pub retired_at: Option<OffsetDateTime>,
    /// When it was registered.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// When its registration last changed.
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    /// When it was last issued a certificate, if ever.
    #[serde(with = "time::serde::rfc3339::option", default)]
    pub last_issued_at: Option<OffsetDateTime>,
    /// Its certificates neither expired nor revoked, at most 1000.
    #[serde(default)]
    pub live_certificates: Vec<CertificateInfo>,
    /// True when `live_certificates` stopped at a limit: the agent may have
    /// more live certificates than listed (a pool token with many
    /// instances, say). Revoking the agent still revokes every one.
    #[serde(default)]
    pub live_certificates_truncated: bool,
    /// Renewals refused because a certificate was renewed twice with
    /// different keys (only on `GET` of one agent; absent when none).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub clone_alerts: Vec<CloneAlert>,
    /// Changes of its registration waiting for a second admin's approval
    /// (on `GET` of one agent, and in the answer of an update that made
    /// one).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pending: Vec<PendingChange>,
}

/// A change of registration that grants more (a scope added, a longer
/// lifetime), waiting for a second admin where the CA requires review
/// (`GET /v1/admin/pending`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingChange {
    /// Its id, to approve or reject it by.
    pub id: u64,
    /// The agent.
    pub spiffe_id: AgentId,
    /// The registration version it applies to.
    pub based_on_version: u64,
    /// The scopes the registration would have.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scopes: Option<Vec<String>>,
    /// The lifetime its certificates would have, in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_seconds: Option<u64>,
    /// What it grants, in words.
    pub description: String,
    /// The admin who asked for it (who may not approve it).
    pub by: String,
    /// When.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// When it lapses unapproved.
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
}

/// One issued certificate, as the admin API shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertificateInfo {
    /// Serial number.
    pub serial: Serial,
    /// Instance id.
    pub instance_id: InstanceId,
    /// Start of validity.
    #[serde(with = "time::serde::rfc3339")]
    pub not_before: OffsetDateTime,
    /// End of validity.
    #[serde(with = "time::serde::rfc3339")]
    pub not_after: OffsetDateTime,
    /// Serial of the certificate that renewed this one, if it was renewed.
    #[serde(default)]
    pub renewed_by: Option<Serial>,
    /// The scopes it carries (absent for certificates issued before
    /// agentca recorded them).
    #[serde(default)]
    pub scopes: Option<Vec<String>>,
    /// Scopes it may no longer be used for (withdrawn from its
    /// registration after it was issued).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub withdrawn: Vec<String>,
    /// The registration version it was issued from (0: not recorded).
    #[serde(default)]
    pub version: u64,
}

/// A refused second renewal of one certificate with another key: somebody
/// else may hold a copy of the certificate and its key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CloneAlert {
    /// When the renewal was refused.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// The certificate presented for the second renewal.
    pub serial: Serial,
    /// Its instance id.
    pub instance_id: InstanceId,
    /// SHA-256 of the public key the second renewal asked for, as hex.
    pub requested_key_sha256: String,
    /// Address of the peer that asked, if known.
    #[serde(default)]
    pub remote_addr: Option<String>,
}

/// `POST /v1/admin/agents/{tenant}/{env}/{agent}/tokens`: create a bootstrap
/// token.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateTokenRequest {
    /// How long the token may be used, in seconds (default 600).
    #[serde(default)]
    pub ttl_seconds: Option<u64>,
    /// How many enrollments it allows (default 1).
    #[serde(default)]
    pub uses: Option<u32>,
}

/// A new bootstrap token. The token itself is shown only here: the CA keeps
/// only its hash.
#[derive(Clone, Serialize, Deserialize)]
pub struct TokenCreated {
    /// The secret to hand to the agent.
    pub token: String,
    /// A public id for the token, for logs and the audit trail.
    pub token_id: String,
    /// The identity it enrolls.
    pub spiffe_id: AgentId,
    /// When it stops working.
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
    /// How many enrollments it allows.
    pub uses: u32,
}

impl fmt::Debug for TokenCreated {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenCreated")
            .field("token", &"<redacted>")
            .field("token_id", &self.token_id)
            .field("spiffe_id", &self.spiffe_id)
            .field("expires_at", &self.expires_at)
            .field("uses", &self.uses)
            .finish()
    }
}
