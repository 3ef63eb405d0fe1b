//! The typed records of the CA's state and how they are keyed.
//!
//! Records are JSON (self-describing, so a field added later reads old
//! records with its default). Times are Unix seconds; certificate DER is
//! base64.

use agentca::identity::InstanceId;
use agentca::wire::Serial;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::store::{StoreError, Table};

/// SHA-256 of a secret token: the only form in which tokens are stored.
pub type TokenHash = [u8; 32];

/// A registered agent. Key: `tenant/env/agent`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentRecord {
    /// Tenant name.
    pub tenant: String,
    /// Environment name.
    pub env: String,
    /// Agent name.
    pub agent: String,
    /// Who is responsible for it.
    pub owner: String,
    /// What it is for.
    pub purpose: String,
    /// Lifetime of its certificates, in seconds.
    pub ttl_secs: u64,
    /// Whether it may enroll and renew.
    pub enabled: bool,
    /// When it was registered.
    #[serde(with = "time::serde::timestamp")]
    pub created_at: OffsetDateTime,
    /// When the registration last changed.
    #[serde(with = "time::serde::timestamp")]
    pub updated_at: OffsetDateTime,
    /// When it was last issued a certificate.
    #[serde(with = "time::serde::timestamp::option", default)]
    pub last_issued_at: Option<OffsetDateTime>,
    /// Permissions written into its certificates, sorted, each once.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Certificates issued to it in the current window
    /// ([`super::issuance_limit`]).
    #[serde(default)]
    pub issued: Window,
    /// The registration's version: 1 at registration, one more at each
    /// change ([`AgentVersionRecord`]).
    #[serde(default = "first_version")]
    pub version: u64,
    /// When it was retired: it never gets a certificate or a token again.
    #[serde(with = "time::serde::timestamp::option", default)]
    pub retired_at: Option<OffsetDateTime>,
}

fn first_version() -> u64 {
    1
}

/// One version of a registration. Key: `tenant/env/agent` NUL version
/// (big-endian u64), in [`Table::AgentHistory`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentVersionRecord {
    /// The version.
    pub version: u64,
    /// When it took effect.
    #[serde(with = "time::serde::timestamp")]
    pub at: OffsetDateTime,
    /// The admin who made it.
    pub by: String,
    /// `register`, `update`, `retire` or `reuse`.
    pub change: String,
    /// Owner.
    pub owner: String,
    /// Purpose.
    pub purpose: String,
    /// Lifetime of its certificates, in seconds.
    pub ttl_secs: u64,
    /// Scopes.
    pub scopes: Vec<String>,
    /// Retired from this version on.
    #[serde(default)]
    pub retired: bool,
}

impl AgentVersionRecord {
    /// The version `agent` is at, made by `by` at `at` with `change`.
    pub fn of(agent: &AgentRecord, by: &str, change: &str, at: OffsetDateTime) -> Self {
        Self {
            version: agent.version,
            at,
            by: by.to_owned(),
            change: change.to_owned(),
            owner: agent.owner.clone(),
            purpose: agent.purpose.clone(),
            ttl_secs: agent.ttl_secs,
            scopes: agent.scopes.clone(),
            retired: agent.retired_at.is_some(),
        }
    }
}

/// What an update of a registration sets; `None` keeps the value.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Update {
    /// New owner.
    pub owner: Option<String>,
    /// New purpose.
    pub purpose: Option<String>,
    /// New certificate lifetime, in seconds.
    pub ttl_secs: Option<u64>,
    /// New scopes (normalized).
    pub scopes: Option<Vec<String>>,
}

impl Update {
    /// `agent` with this update applied (version and time not moved).
    pub fn applied_to(&self, agent: &AgentRecord) -> AgentRecord {
        let mut after = agent.clone();
        if let Some(o) = &self.owner {
            after.owner = o.clone();
        }
        if let Some(p) = &self.purpose {
            after.purpose = p.clone();
        }
        if let Some(t) = self.ttl_secs {
            after.ttl_secs = t;
        }
        if let Some(s) = &self.scopes {
            after.scopes = s.clone();
        }
        after
    }
}

/// A change of registration that grants more, waiting for a second
/// admin's approval ([`super::review`]). Key: its id, big-endian, in
/// [`Table::PendingChanges`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingRecord {
    /// Its id.
    pub id: u64,
    /// The agent: `tenant/env/agent`.
    pub agent_key: String,
    /// The registration version it applies to: if the registration moves
    /// on before the approval, the approval is refused.
    pub based_on: u64,
    /// What it changes.
    pub update: Update,
    /// The admin who asked.
    pub by: String,
    /// When.
    #[serde(with = "time::serde::timestamp")]
    pub at: OffsetDateTime,
    /// When it lapses unapproved.
    #[serde(with = "time::serde::timestamp")]
    pub expires_at: OffsetDateTime,
    /// What it grants, for people.
    pub description: String,
}

pub use super::scope_records::*;

impl AgentRecord {
    /// The record's key: `tenant/env/agent`.
    pub fn key(&self) -> String {
        format!("{}/{}/{}", self.tenant, self.env, self.agent)
    }
}

/// Issuances counted in one window of an issuance limit
/// ([`super::issuance_limit`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Window {
    /// When the window began (Unix seconds; 0: none yet).
    pub start: i64,
    /// Issuances in it.
    pub count: u32,
}

/// A bootstrap token. Key: its [`TokenHash`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    /// Public id of the token (not secret).
    pub token_id: String,
    /// The agent it enrolls: `tenant/env/agent`.
    pub agent_key: String,
    /// When it was created.
    #[serde(with = "time::serde::timestamp")]
    pub created_at: OffsetDateTime,
    /// When it stops working.
    #[serde(with = "time::serde::timestamp")]
    pub expires_at: OffsetDateTime,
    /// How many enrollments it allows.
    pub max_uses: u32,
    /// How many it has done.
    pub used: u32,
    /// Set when the token was voided before it was used up.
    #[serde(default)]
    pub voided: bool,
}

/// How a certificate came to be.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Origin {
    /// Enrolled with a bootstrap token.
    Enroll {
        /// The token's public id.
        token_id: String,
    },
    /// Renewed from another certificate.
    Renew {
        /// The certificate it renewed.
        from: Serial,
    },
}

/// The one renewal a certificate may have.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Renewal {
    /// Serial of the certificate issued by the renewal.
    pub serial: Serial,
    /// SHA-256 of the public key (SubjectPublicKeyInfo DER) it was issued for.
    pub key_sha256: String,
    /// When.
    #[serde(with = "time::serde::timestamp")]
    pub at: OffsetDateTime,
}

/// A revocation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revocation {
    /// When it was revoked.
    #[serde(with = "time::serde::timestamp")]
    pub at: OffsetDateTime,
    /// RFC 5280 reason code.
    pub reason: u8,
    /// Its event in the revocation feed.
    pub seq: u64,
}

/// One event of the revocation feed. Key: `seq`, big-endian.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevocationEvent {
    /// Position in the feed, from 1, without gaps when written.
    pub seq: u64,
    /// The revoked certificate.
    pub serial: Serial,
    /// Its agent: `tenant/env/agent`.
    pub agent_key: String,
    /// Its instance.
    pub instance_id: InstanceId,
    /// Its end of validity: after it, the event no longer matters.
    #[serde(with = "time::serde::timestamp")]
    pub not_after: OffsetDateTime,
    /// RFC 5280 reason code.
    pub reason: u8,
    /// When it was revoked.
    #[serde(with = "time::serde::timestamp")]
    pub revoked_at: OffsetDateTime,
}

/// An issued certificate. Key: its serial.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertRecord {
    /// Serial number.
    pub serial: Serial,
    /// The agent: `tenant/env/agent`.
    pub agent_key: String,
    /// Instance id in the subject.
    pub instance_id: InstanceId,
    /// Start of validity.
    #[serde(with = "time::serde::timestamp")]
    pub not_before: OffsetDateTime,
    /// End of validity.
    #[serde(with = "time::serde::timestamp")]
    pub not_after: OffsetDateTime,
    /// When it was issued.
    #[serde(with = "time::serde::timestamp")]
    pub issued_at: OffsetDateTime,
    /// SHA-256 of its SubjectPublicKeyInfo DER, as hex.
    pub key_sha256: String,
    /// The certificate.
    #[serde(with = "base64_bytes")]
    pub der: Vec<u8>,
    /// Enrollment or renewal.
    pub origin: Origin,
    /// Its renewal, once renewed.
    #[serde(default)]
    pub renewed_by: Option<Renewal>,
    /// Its revocation, if revoked.
    #[serde(default)]
    pub revoked: Option<Revocation>,
    /// Renewals along its instance's chain in the current window, this
    /// one's included ([`super::issuance_limit`]).
    #[serde(default)]
    pub renewals: Window,
    /// The scopes it carries (`None`: issued before they were recorded).
    #[serde(default)]
    pub scopes: Option<Vec<String>>,
    /// The registration version it was issued from (0: not recorded).
    #[serde(default)]
    pub version: u64,
    /// Scopes withdrawn from it since it was issued.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub withdrawn: Vec<String>,
}

/// An admin token. Key: its [`TokenHash`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminRecord {
    /// The admin's name, as the audit trail shows it.
    pub name: String,
    /// The one tenant it may act on; every tenant when `None`.
    #[serde(default)]
    pub tenant: Option<String>,
    /// When it was created.
    #[serde(with = "time::serde::timestamp")]
    pub created_at: OffsetDateTime,
    /// What it may do ([`super::admin`]): change, or only read.
    #[serde(default)]
    pub role: Role,
    /// Its version: 1 when created, one more at each change of its role
    /// ([`AdminVersionRecord`]).
    #[serde(default = "first_version")]
    pub version: u64,
}

/// One version of an admin. Key: name NUL version (big-endian u64), in
/// [`Table::AdminHistory`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminVersionRecord {
    /// The version.
    pub version: u64,
    /// When it took effect.
    #[serde(with = "time::serde::timestamp")]
    pub at: OffsetDateTime,
    /// Who made it (an admin's name; `init` for the first admin).
    pub by: String,
    /// `create` or `role`.
    pub change: String,
    /// Its role from this version on.
    pub role: Role,
    /// Its tenant.
    pub tenant: Option<String>,
}

/// What an admin may do.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Read and change (every admin before roles existed).
    #[default]
    Admin,
    /// Read only: agents, their history, the audit trail, the metrics.
    Auditor,
}

/// A refused second renewal with another key. Key: `tenant/env/agent` NUL
/// sequence number (big-endian u64).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CloneAlertRecord {
    /// When.
    #[serde(with = "time::serde::timestamp")]
    pub at: OffsetDateTime,
    /// The certificate presented.
    pub serial: Serial,
    /// Its instance.
    pub instance_id: InstanceId,
    /// The agent: `tenant/env/agent`.
    pub agent_key: String,
    /// SHA-256 of the public key the refused renewal asked for, as hex.
    pub requested_key_sha256: String,
    /// The peer's address.
    #[serde(default)]
    pub remote_addr: Option<String>,
}

/// Which issuer a published CRL is of.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CrlIssuer {
    /// The issuing (intermediate) CA: the CRL of agents' certificates.
    Intermediate,
    /// The root: the CRL covering the intermediate.
    Root,
}

impl CrlIssuer {
    /// Its key in [`Table::Meta`].
    pub fn key(self) -> &'static [u8] {
        match self {
            CrlIssuer::Intermediate => b"crl/intermediate",
            CrlIssuer::Root => b"crl/root",
        }
    }
}

/// The CRL every replica serves, as published. Key: [`CrlIssuer::key`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishedCrl {
    /// Its CRL number.
    pub number: u64,
    /// It lists every revocation up to this feed sequence number.
    pub covers: u64,
    /// The signed CRL.
    #[serde(with = "base64_bytes")]
    pub der: Vec<u8>,
}

impl PublishedCrl {
    /// What [`super::crl::supersedes`] compares.
    pub fn coverage(&self) -> super::crl::Coverage {
        super::crl::Coverage {
            number: self.number,
            covers: self.covers,
        }
    }
}

/// Meta key of when the last pruning pass began (8 bytes, big-endian Unix
/// seconds).
pub const PRUNED_AT_KEY: &[u8] = b"pruned_at";

mod base64_bytes {
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        STANDARD
            .decode(s.as_bytes())
            .map_err(serde::de::Error::custom)
    }
}

/// Encodes a record.
pub fn encode<T: Serialize>(record: &T) -> Vec<u8> {
    // Serializing these plain structs to JSON cannot fail.
    serde_json::to_vec(record).expect("records serialize to JSON")
}

/// Decodes a record read from `table`.
pub fn decode<T: DeserializeOwned>(table: Table, bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt {
        table: table.name(),
        detail: e.to_string(),
    })
}

/// Key of a time index entry: big-endian Unix seconds (negative times
/// clamp to 0), then `suffix`.
pub fn time_key(t: OffsetDateTime, suffix: &[u8]) -> Vec<u8> {
    let secs = t.unix_timestamp().max(0) as u64;
    let mut k = Vec::with_capacity(8 + suffix.len());
    k.extend_from_slice(&secs.to_be_bytes());
    k.extend_from_slice(suffix);
    k
}

/// Key of an index entry: `prefix` NUL `suffix`.
pub fn index_key(prefix: &str, suffix: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(prefix.len() + 1 + suffix.len());
    k.extend_from_slice(prefix.as_bytes());
    k.push(0);
    k.extend_from_slice(suffix);
    k
}
