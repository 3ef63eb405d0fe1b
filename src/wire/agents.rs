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
    /// different keys (only on `GET` of one agent).
    #[serde(default)]
    pub clone_alerts: Vec<CloneAlert>,
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
