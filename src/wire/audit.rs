//! The audit trail as the API shows it (`GET /v1/admin/audit`), and the
//! admins who act in it. How events are chained and verified is the CA's
//! (`agentca-ca`'s `audit` module); these are plain data.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::Serial;
use crate::identity::{AgentId, InstanceId};

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
    /// For a summary of refusals: how many refusals of this kind (actor,
    /// action, reason, address) it stands for, counted in the minute
    /// before `at` beyond those recorded one by one. Absent on every other
    /// event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
    /// For an issuance: the scopes the certificate carries. For a change
    /// of registration: its scopes after the change. Absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scopes: Option<Vec<String>>,
    /// For an issuance: the registration version its scopes came from.
    /// For a change of registration: the version it made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
    /// SHA-256 of the previous event, hex (64 zeros for the first).
    pub prev_hash: String,
    /// SHA-256 of this event, hex.
    pub hash: String,
}

/// The reason code of a renewal refused as a clone (a certificate renewed a
/// second time with another key); the audit event's reason starts with it.
pub const CLONE_DETECTED: &str = "clone_detected";

impl AuditEvent {
    /// Whether this event is a clone alert: a renewal refused with
    /// [`CLONE_DETECTED`] (the reason goes on to name the key asked for).
    pub fn is_clone_alert(&self) -> bool {
        self.action == "renew"
            && self.outcome == "refused"
            && self
                .reason
                .as_deref()
                .and_then(|r| r.strip_prefix(CLONE_DETECTED))
                .is_some_and(|rest| rest.is_empty() || rest.starts_with(':'))
    }

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
            count: None,
            scopes: None,
            version: None,
            prev_hash: String::new(),
            hash: String::new(),
        }
    }
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
    /// The last event pruned from the CA's store (after an export), when
    /// events were: the trail the CA serves starts after it and links to
    /// it by `prev_hash`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<AuditCheckpoint>,
}

/// An event of the trail named by its sequence number and hash.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditCheckpoint {
    /// Its sequence number.
    pub seq: u64,
    /// Its hash, hex.
    pub hash: String,
}

/// `POST /v1/admin/audit/prune`: remove the events up to `through`, which
/// the caller has exported (it names the last one by its hash).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PruneAuditRequest {
    /// The last event to remove.
    pub through: u64,
    /// Its hash, as exported.
    pub hash: String,
}

/// What a pruning of the audit trail did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PruneAuditResponse {
    /// Events removed.
    pub pruned: u64,
    /// The new checkpoint: the last event removed.
    pub checkpoint: AuditCheckpoint,
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
    /// `admin` (the default: reads and changes) or `auditor` (reads
    /// agents, their history, the audit trail and the metrics of its
    /// scope; changes nothing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
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
    /// `admin` or `auditor`.
    #[serde(default = "admin_role")]
    pub role: String,
    /// Its version: 1 when created, one more at each change of its role
    /// (send it as `If-Match` to change it).
    #[serde(default)]
    pub version: u64,
}

/// `PATCH /v1/admin/admins/{name}`: give an admin another role (a new
/// version of it).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetAdminRoleRequest {
    /// `admin` or `auditor`.
    pub role: String,
}

/// One version of an admin (`GET /v1/admin/admins/{name}/history`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminVersion {
    /// The version, from 1.
    pub version: u64,
    /// When it took effect.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// The admin who made it (`init` for the first admin).
    pub by: String,
    /// `create` or `role`.
    pub change: String,
    /// Its role from this version on.
    pub role: String,
    /// The one tenant it may act on; every tenant when absent.
    #[serde(default)]
    pub tenant: Option<String>,
}

fn admin_role() -> String {
    "admin".into()
}

/// The answer to [`CreateAdminRequest`]: the token, shown this once.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateAdminResponse {
    /// The admin.
    pub admin: AdminInfo,
    /// Its bearer token. The CA keeps only its hash.
    pub token: String,
}
