//! Backups: a CA in one file, and back.
//!
//! A backup is the CA's material ([`CaMaterial`]: settings, certificates,
//! encrypted keys) and a consistent snapshot of its store
//! ([`crate::store::Store::snapshot`]): every record, the audit trail with
//! its head, the sequences, the published CRLs. It is taken by a running
//! CA (`GET /v1/admin/backup`, `agentca backup`) or from a stopped one's
//! data directory (`agentca store migrate`), and restored into a new data
//! directory or an empty PostgreSQL database (`agentca restore`).
//!
//! The file is:
//!
//! ```text
//! "AGENTCA-BACKUP 1\n" | header length: u32 LE | header (JSON)
//!     | the snapshot, as frames (crate::store::frames) | SHA-256 of all before
//! ```
//!
//! The checksum finds a damaged or truncated file; it is not a signature
//! (whoever can write a backup can write its checksum). Before anything is
//! written, a restore checks the checksum, the frames, and the audit chain
//! of the snapshot against its head. The keys stay encrypted with the CA's
//! passphrase: keep backups as private as the database.

use agentca::wire::AuditEvent;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::audit::{self, Head};
use crate::store::{frames, Snapshot, Table};
use crate::stored_ca::CaMaterial;

/// The first bytes of every backup.
pub const MAGIC: &[u8] = b"AGENTCA-BACKUP 1\n";
/// Largest header read.
const MAX_HEADER_BYTES: usize = 1024 * 1024;
/// Length of the checksum.
const CHECKSUM_BYTES: usize = 32;

/// Why a backup could not be read.
#[derive(Debug, thiserror::Error)]
#[error("not a usable agentca backup: {0}")]
pub struct BackupError(String);

/// What a backup holds besides the records.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Header {
    /// When it was taken.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// The agentca that took it.
    pub version: String,
    /// The CA.
    pub ca: CaMaterial,
}

/// A backup, read.
#[derive(Debug)]
pub struct Backup {
    /// Its header.
    pub header: Header,
    /// The store's records.
    pub snapshot: Snapshot,
}

/// What a backup's audit trail says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Summary {
    /// Records of every table.
    pub records: usize,
    /// The audit trail's head.
    pub audit_head: u64,
}

impl Backup {
    /// The bytes of a backup of `snapshot` and `ca`, taken at `now`.
    pub fn encode(ca: &CaMaterial, snapshot: &Snapshot, now: OffsetDateTime) -> Vec<u8> {
        let header = Header {
            created_at: now,
            version: env!("CARGO_PKG_VERSION").into(),
            ca: ca.clone(),
        };
        let header = serde_json::to_vec(&header).expect("the header serializes");
        let size: usize = snapshot
            .iter()
            .flat_map(|(_, entries)| entries)
            .map(|(k, v)| 9 + k.len() + v.len())
            .sum();
        let mut out = Vec::with_capacity(MAGIC.len() + 4 + header.len() + size + CHECKSUM_BYTES);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&(header.len() as u32).to_le_bytes());
        out.extend_from_slice(&header);
        for (table, entries) in snapshot {
            for (key, value) in entries {
                frames::encode(&mut out, *table, key, Some(value));
            }
        }
        let checksum = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &out);
        out.extend_from_slice(checksum.as_ref());
        out
    }

    /// Reads a backup, checking its checksum, its frames and its audit
    /// chain.
    pub fn decode(bytes: &[u8]) -> Result<(Self, Summary), BackupError> {
        let bad = |detail: &str| BackupError(detail.to_owned());
        let body = bytes
            .strip_prefix(MAGIC)
            .ok_or_else(|| bad("it does not start as a backup does"))?;
        if bytes.len() < MAGIC.len() + 4 + CHECKSUM_BYTES {
            return Err(bad("it is truncated"));
        }
        let (signed, checksum) = bytes.split_at(bytes.len() - CHECKSUM_BYTES);
        let actual = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, signed);
        if actual.as_ref() != checksum {
            return Err(bad(
                "its checksum does not match: the file is damaged or truncated",
            ));
        }
        let body = &body[..body.len() - CHECKSUM_BYTES];
        let (length, rest) = body.split_at(4);
        let length = u32::from_le_bytes(length.try_into().expect("4 bytes")) as usize;
        if length > MAX_HEADER_BYTES || length > rest.len() {
            return Err(bad("its header length is out of range"));
        }
        let (header, records) = rest.split_at(length);
        let header: Header = serde_json::from_slice(header)
            .map_err(|e| BackupError(format!("its header does not decode: {e}")))?;
        let mut snapshot: Snapshot = Table::ALL.iter().map(|t| (*t, Vec::new())).collect();
        for (table, key, value) in frames::decode(records).map_err(BackupError)? {
            let value = value.ok_or_else(|| bad("it holds a deletion"))?;
            snapshot[table.index()].1.push((key, value));
        }
        let summary = check(&snapshot)?;
        Ok((Self { header, snapshot }, summary))
    }
}

/// Checks the audit chain of `snapshot` against its head: what a restore
/// checks before it writes anything.
pub fn check(snapshot: &Snapshot) -> Result<Summary, BackupError> {
    for (table, entries) in snapshot {
        if !entries.windows(2).all(|w| w[0].0 < w[1].0) {
            return Err(BackupError(format!(
                "table {} is not in key order",
                table.name()
            )));
        }
    }
    let table = |t: Table| &snapshot[t.index()].1;
    let head = table(Table::Meta)
        .iter()
        .find(|(k, _)| k == audit::HEAD_KEY.as_bytes())
        .map(|(_, v)| v.as_slice());
    let head = Head::decode(head).map_err(|e| BackupError(e.to_string()))?;
    let events = table(Table::Audit)
        .iter()
        .map(|(_, v)| audit::record::decode(v).map(AuditEvent::from))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| BackupError(e.to_string()))?;
    let (first, after) = events.first().map_or((1, audit::chain::genesis()), |e| {
        (e.seq, e.prev_hash.clone())
    });
    audit::verify_chain(&events, first, &after)
        .map_err(|e| BackupError(format!("its audit trail is broken: {e}")))?;
    let last = events
        .last()
        .map_or((first - 1, after.as_str()), |e| (e.seq, e.hash.as_str()));
    audit::ends_at_head(last, &head)
        .map_err(|e| BackupError(format!("its audit trail is broken: {e}")))?;
    Ok(Summary {
        records: snapshot.iter().map(|(_, e)| e.len()).sum(),
        audit_head: head.seq,
    })
}

#[cfg(test)]
mod tests {
    use agentca::wire::Actor;

    use super::*;
    use crate::state::tests::t0;
    use crate::state::Change;
    use crate::store::{Backend, Location};

    /// A store with a short audit trail, its snapshot, and a CA's material.
    fn snapshot() -> (Snapshot, CaMaterial) {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::state::open_store(&Location::Embedded {
            backend: Backend::Redb,
            dir: dir.path().to_owned(),
        })
        .unwrap();
        let events: Vec<Change> = ["a", "b", "c"]
            .iter()
            .map(|action| Change::Audit(AuditEvent::new(t0(), Actor::System, action, None)))
            .collect();
        crate::store::writer::commit(&*store, &events).unwrap();
        let material = CaMaterial {
            meta: crate::datadir::CaMeta {
                version: 1,
                trust_domain: "td.test".into(),
                key_algorithm: "p256".into(),
                store: Backend::Redb,
                created_at: t0(),
            },
            root_pem: "root".into(),
            intermediate_pem: "int".into(),
            root_key_pem: None,
            intermediate_key_pem: "key".into(),
        };
        (store.snapshot().unwrap(), material)
    }

    #[test]
    fn a_backup_reads_back_whole_and_a_damaged_one_is_refused() {
        let (snapshot, material) = snapshot();
        let bytes = Backup::encode(&material, &snapshot, t0());
        let (backup, summary) = Backup::decode(&bytes).unwrap();
        assert_eq!(backup.snapshot, snapshot);
        assert_eq!(backup.header.ca.meta.trust_domain, "td.test");
        assert_eq!(summary.audit_head, 3);
        for cut in [0, MAGIC.len(), bytes.len() / 2, bytes.len() - 1] {
            assert!(Backup::decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut flipped = bytes.clone();
        flipped[bytes.len() / 2] ^= 0x10;
        let e = Backup::decode(&flipped).unwrap_err().to_string();
        assert!(e.contains("checksum"), "{e}");
    }

    #[test]
    fn a_backup_whose_audit_trail_was_changed_is_refused_even_with_a_good_checksum() {
        let (mut snapshot, material) = snapshot();
        let audit = &mut snapshot[Table::Audit.index()].1;
        let text = String::from_utf8(audit[1].1.clone()).unwrap();
        audit[1].1 = text.replace("\"b\"", "\"x\"").into_bytes();
        let e = Backup::decode(&Backup::encode(&material, &snapshot, t0()))
            .unwrap_err()
            .to_string();
        assert!(e.contains("audit trail is broken"), "{e}");
        // An event dropped from the end: the head gives it away.
        let (mut snapshot, material) = self::snapshot();
        snapshot[Table::Audit.index()].1.pop();
        let e = Backup::decode(&Backup::encode(&material, &snapshot, t0()))
            .unwrap_err()
            .to_string();
        assert!(e.contains("the CA's head is event 3"), "{e}");
    }
}
