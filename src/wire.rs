//! The JSON bodies of the agentca HTTP API, shared by the CA and its clients.
//!
//! Every refusal from the CA is an HTTP status with an [`ErrorBody`]; every
//! time is RFC 3339 in UTC.
//!
//! ```
//! use agentca::wire::ErrorBody;
//!
//! let body: ErrorBody =
//!     serde_json::from_str(r#"{"error":"token_used","detail":"the token has no uses left"}"#).unwrap();
//! assert_eq!(body.error, "token_used");
//! ```

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use time::OffsetDateTime;

use crate::identity::{AgentId, InstanceId};

/// Longest certificate serial accepted (RFC 5280 §4.1.2.2), in bytes.
pub const MAX_SERIAL_LEN: usize = 20;

/// A certificate serial number: its big-endian bytes, shown as lowercase hex.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Serial(Vec<u8>);

/// Why a serial was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("a serial is 1 to 20 bytes written as hex digits (colons allowed)")]
pub struct InvalidSerial;

impl Serial {
    /// A serial from its big-endian bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, InvalidSerial> {
        if bytes.is_empty() || bytes.len() > MAX_SERIAL_LEN {
            return Err(InvalidSerial);
        }
        Ok(Self(bytes.to_vec()))
    }

    /// The big-endian bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Display for Serial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&crate::hex(&self.0))
    }
}

impl fmt::Debug for Serial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Serial({self})")
    }
}

impl FromStr for Serial {
    type Err = InvalidSerial;
    fn from_str(s: &str) -> Result<Self, InvalidSerial> {
        let digits: String = s.trim().chars().filter(|c| *c != ':').collect();
        let bytes = crate::unhex(&digits).ok_or(InvalidSerial)?;
        Self::from_bytes(&bytes)
    }
}

impl Serialize for Serial {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Serial {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// The body of every error response: a stable machine-readable code and a
/// sentence for a human.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// A stable code, such as `token_used` or `csr_signature_invalid`.
    pub error: String,
    /// What went wrong and, where it helps, what to do about it.
    pub detail: String,
}

/// `POST /v1/enroll`: a bootstrap token and a certificate signing request.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnrollRequest {
    /// The bootstrap token an admin created for this agent.
    pub token: String,
    /// A PEM PKCS#10 request for the agent's new key. Only its public key
    /// and signature are used.
    pub csr: String,
}

impl fmt::Debug for EnrollRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EnrollRequest")
            .field("token", &"<redacted>")
            .field("csr", &self.csr)
            .finish()
    }
}

/// `POST /v1/renew`, sent over mutual TLS with the current certificate: a
/// certificate signing request for a new key.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RenewRequest {
    /// A PEM PKCS#10 request for a key different from the current one.
    pub csr: String,
}

/// A certificate the CA issued, as returned by enroll and renew.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IssuedCertificate {
    /// The identity in the certificate's URI SAN.
    pub spiffe_id: AgentId,
    /// The instance id in the subject's serialNumber, kept across renewals.
    pub instance_id: InstanceId,
    /// The certificate's serial number.
    pub serial: Serial,
    /// Start of validity (backdated a little for clock skew).
    #[serde(with = "time::serde::rfc3339")]
    pub not_before: OffsetDateTime,
    /// End of validity.
    #[serde(with = "time::serde::rfc3339")]
    pub not_after: OffsetDateTime,
    /// PEM certificates: the leaf first, then the issuing intermediate.
    pub certificate_chain: String,
}

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
}

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
    /// Its certificates that have not expired (only on `GET` of one agent).
    #[serde(default)]
    pub live_certificates: Vec<CertificateInfo>,
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

/// `GET /healthz`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    /// `ok` when the CA can issue.
    pub status: String,
    /// The CA's trust domain.
    pub trust_domain: String,
    /// The server's version.
    pub version: String,
    /// End of validity of the issuing intermediate.
    #[serde(with = "time::serde::rfc3339")]
    pub intermediate_not_after: OffsetDateTime,
}

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

/// What a revocation did. Revoking is idempotent: certificates revoked
/// before are not counted again.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevokeResponse {
    /// How many certificates this call revoked.
    pub revoked: usize,
    /// Their serials.
    pub serials: Vec<Serial>,
    /// How many agents this call disabled (agent and tenant targets).
    pub agents_disabled: usize,
    /// How many unused bootstrap tokens this call voided.
    pub tokens_voided: usize,
}

/// One event of the revocation feed (`GET /v1/revocations`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevocationEvent {
    /// Position in the feed; events come in increasing order.
    pub seq: u64,
    /// The revoked certificate.
    pub serial: Serial,
    /// Its identity.
    pub spiffe_id: AgentId,
    /// Its instance.
    pub instance_id: InstanceId,
    /// Its end of validity: after it, the event no longer matters.
    #[serde(with = "time::serde::rfc3339")]
    pub not_after: OffsetDateTime,
    /// RFC 5280 reason name.
    pub reason: String,
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
