//! An audit event as the store keeps it. The API's [`AuditEvent`] is
//! converted at the edge, so that the wire format and the stored format
//! can change apart. Events are JSON: the store's first format, which the
//! trails of earlier versions are in.

use agentca::wire::{Actor, AuditEvent, Serial};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::store::{StoreError, Table};

/// One stored event. Key: its sequence number, big-endian.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    seq: u64,
    #[serde(with = "time::serde::rfc3339")]
    at: OffsetDateTime,
    actor: Actor,
    action: String,
    #[serde(default)]
    subject: Option<String>,
    #[serde(default)]
    serial: Option<Serial>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    not_after: Option<OffsetDateTime>,
    outcome: String,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    remote_addr: Option<String>,
    #[serde(default)]
    request_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    count: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    scopes: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    version: Option<u64>,
    prev_hash: String,
    hash: String,
}

impl From<AuditEvent> for AuditRecord {
    fn from(e: AuditEvent) -> Self {
        Self {
            seq: e.seq,
            at: e.at,
            actor: e.actor,
            action: e.action,
            subject: e.subject,
            serial: e.serial,
            not_after: e.not_after,
            outcome: e.outcome,
            reason: e.reason,
            remote_addr: e.remote_addr,
            request_id: e.request_id,
            count: e.count,
            scopes: e.scopes,
            version: e.version,
            prev_hash: e.prev_hash,
            hash: e.hash,
        }
    }
}

impl From<AuditRecord> for AuditEvent {
    fn from(r: AuditRecord) -> Self {
        let mut e = AuditEvent::new(r.at, r.actor, &r.action, r.subject);
        e.seq = r.seq;
        e.serial = r.serial;
        e.not_after = r.not_after;
        e.outcome = r.outcome;
        e.reason = r.reason;
        e.remote_addr = r.remote_addr;
        e.request_id = r.request_id;
        e.count = r.count;
        e.scopes = r.scopes;
        e.version = r.version;
        e.prev_hash = r.prev_hash;
        e.hash = r.hash;
        e
    }
}

/// The stored bytes of `record`.
pub fn encode(record: &AuditRecord) -> Vec<u8> {
    // A plain struct of strings and numbers always serializes.
    serde_json::to_vec(record).expect("audit records serialize to JSON")
}

/// The record stored as `bytes`.
pub fn decode(bytes: &[u8]) -> Result<AuditRecord, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt {
        table: Table::Audit.name(),
        detail: e.to_string(),
    })
}
