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

/// Who performed an audited action.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Actor {
    /// An admin, by name (never by token).
    Admin {
        /// The admin's name.
        name: String,
    },
    /// An agent, by the certificate it presented.
    Agent {
        /// Its identity.
        spiffe_id: AgentId,
        /// Its instance.
        instance_id: InstanceId,
    },
    /// The holder of a bootstrap token, by the token's public id.
    Token {
        /// The token's id (not the token).
        token_id: String,
    },
    /// Nobody authenticated.
    Anonymous,
    /// The CA itself.
    System,
}

/// One event of the audit trail (`GET /v1/admin/audit`, `agentca audit`).
///
/// Each event carries the SHA-256 of the one before it (`prev_hash`) and
/// its own (`hash`, over all the other fields as serialized, in order), so
/// that a changed, removed or reordered event breaks the chain.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEvent {
    /// Position in the trail, from 1, without gaps.
    pub seq: u64,
    /// When.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// Who.
    pub actor: Actor,
    /// What: `enroll`, `renew`, `revoke`, `register`, `enable`, `disable`,
    /// `token.create`, `admin.create`, `admin.revoke`, `admin.auth`, ….
    pub action: String,
    /// On what: a SPIFFE ID, a tenant or environment, an admin name.
    #[serde(default)]
    pub subject: Option<String>,
    /// The certificate concerned.
    #[serde(default)]
    pub serial: Option<Serial>,
    /// Its end of validity.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub not_after: Option<OffsetDateTime>,
    /// `ok` or `refused`.
    pub outcome: String,
    /// Why it was refused (the API's error code), or what it did.
    #[serde(default)]
    pub reason: Option<String>,
    /// The peer's address.
    #[serde(default)]
    pub remote_addr: Option<String>,
    /// The request's id (also in the `x-request-id` response header and the
    /// CA's log).
    #[serde(default)]
    pub request_id: Option<String>,
    /// SHA-256 of the previous event, hex (64 zeros for the first).
    pub prev_hash: String,
    /// SHA-256 of this event, hex.
    pub hash: String,
}

impl AuditEvent {
    /// An event of `action` by `actor` on `subject` at `at`, outcome `ok`;
    /// the store sets its sequence number and hashes.
    pub fn new(at: OffsetDateTime, actor: Actor, action: &str, subject: Option<String>) -> Self {
        Self {
            seq: 0,
            at,
            actor,
            action: action.to_owned(),
            subject,
            serial: None,
            not_after: None,
            outcome: "ok".into(),
            reason: None,
            remote_addr: None,
            request_id: None,
            prev_hash: String::new(),
            hash: String::new(),
        }
    }

    /// The hash this event should carry: SHA-256 over its JSON without the
    /// `hash` field.
    pub fn compute_hash(&self) -> String {
        #[derive(Serialize)]
        struct Hashed<'a> {
            seq: u64,
            #[serde(with = "time::serde::rfc3339")]
            at: OffsetDateTime,
            actor: &'a Actor,
            action: &'a str,
            subject: &'a Option<String>,
            serial: &'a Option<Serial>,
            #[serde(with = "time::serde::rfc3339::option")]
            not_after: Option<OffsetDateTime>,
            outcome: &'a str,
            reason: &'a Option<String>,
            remote_addr: &'a Option<String>,
            request_id: &'a Option<String>,
            prev_hash: &'a str,
        }
        let canonical = serde_json::to_vec(&Hashed {
            seq: self.seq,
            at: self.at,
            actor: &self.actor,
            action: &self.action,
            subject: &self.subject,
            serial: &self.serial,
            not_after: self.not_after,
            outcome: &self.outcome,
            reason: &self.reason,
            remote_addr: &self.remote_addr,
            request_id: &self.request_id,
            prev_hash: &self.prev_hash,
        })
        .expect("audit events serialize");
        crate::hex(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &canonical).as_ref())
    }
}

/// Where an audit trail breaks.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuditBreak {
    /// An event's hash does not match its content: it was changed.
    #[error("event {0} was changed: its hash does not match its content")]
    Changed(u64),
    /// The sequence jumps: events are missing.
    #[error("events after {after} are missing: the next one is {next}")]
    Removed {
        /// The last event before the gap.
        after: u64,
        /// The first event after it.
        next: u64,
    },
    /// The sequence goes backwards or repeats: events were reordered.
    #[error("event {0} is out of order")]
    Reordered(u64),
    /// An event does not carry the hash of the one before it: the one
    /// before was changed (its hash recomputed to hide it) or replaced.
    #[error("event {previous} was changed or replaced: event {next} does not carry its hash")]
    Unlinked {
        /// The event that was changed or replaced.
        previous: u64,
        /// The event after it.
        next: u64,
    },
    /// The trail ends on another event than the CA's record of its head:
    /// the last events were changed or removed.
    #[error("the trail ends at event {found}, but the CA's head is event {expected}")]
    Truncated {
        /// The head the CA recorded.
        expected: u64,
        /// The last event found.
        found: u64,
    },
}

/// Walks an audit trail (in stored order) and reports the first break.
/// `after` is the hash of the event before the first one given (64 zeros
/// when starting from the beginning), and `first_seq` its expected number.
///
/// ```
/// use agentca::wire::verify_audit_chain;
/// assert_eq!(verify_audit_chain(&[], 1, &"0".repeat(64)), Ok(0));
/// ```
pub fn verify_audit_chain(
    events: &[AuditEvent],
    first_seq: u64,
    after: &str,
) -> Result<u64, AuditBreak> {
    let mut prev = after.to_owned();
    for (i, (e, expected)) in events.iter().zip(first_seq..).enumerate() {
        if e.seq != expected {
            let later = events[i + 1..].iter().any(|l| l.seq == expected);
            if e.seq < expected || later {
                return Err(AuditBreak::Reordered(e.seq));
            }
            return Err(AuditBreak::Removed {
                after: expected - 1,
                next: e.seq,
            });
        }
        if e.compute_hash() != e.hash {
            return Err(AuditBreak::Changed(e.seq));
        }
        if e.prev_hash != prev {
            return Err(AuditBreak::Unlinked {
                previous: e.seq - 1,
                next: e.seq,
            });
        }
        prev = e.hash.clone();
    }
    Ok(events.len() as u64)
}

/// One page of the audit trail (`GET /v1/admin/audit`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditPage {
    /// Events after the requested sequence number, in order.
    pub events: Vec<AuditEvent>,
    /// The CA's record of the trail's last event: its sequence number…
    pub head_seq: u64,
    /// …and hash (64 zeros while the trail is empty).
    pub head_hash: String,
}

/// `POST /v1/admin/admins`: a named admin token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateAdminRequest {
    /// Its name, as the audit trail will show it: 1 to 64 characters of
    /// `a-z`, `0-9`, `-`, `_`, `.`, `@`.
    pub name: String,
    /// The one tenant it may act on; every tenant when absent.
    #[serde(default)]
    pub tenant: Option<String>,
}

/// A named admin, as listed (never with its token).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminInfo {
    /// Its name.
    pub name: String,
    /// The one tenant it may act on; every tenant when absent.
    #[serde(default)]
    pub tenant: Option<String>,
    /// When it was created.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

/// The answer to [`CreateAdminRequest`]: the token, shown this once.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateAdminResponse {
    /// The admin.
    pub admin: AdminInfo,
    /// Its bearer token. The CA keeps only its hash.
    pub token: String,
}
