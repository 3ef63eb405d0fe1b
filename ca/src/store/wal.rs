//! The write-ahead log of the redb backend.
//!
//! A redb commit with `Durability::Immediate` writes every B-tree page the
//! transaction touched and syncs them. Certificate serials are random, so a
//! batch of N issuances touches about N scattered leaves of each table: the
//! cost of a durable commit grows with the batch, and it capped issuance at
//! about 4,500 certificates/s here. Instead, each batch of changes is
//! appended to this log and synced (one sequential write); redb is written
//! behind by checkpoints (see [`crate::store::redb`]), each an `Immediate`
//! commit that records the last batch it covers, after which the log
//! segment holding those batches is reused. After a crash, redb comes back
//! at its last checkpoint and the batches logged after it are applied
//! again, in order: a change's effect depends only on the state before it,
//! so replaying gives the same state.
//!
//! File layout: an 8-byte magic, then records of
//! `len: u32 LE | crc32(seq ‖ payload): u32 LE | seq: u64 LE | payload`,
//! then zeros or the stale records of earlier rounds. Reading stops at the
//! first record that is not intact or whose sequence number does not follow
//! the one before: a torn record (a crash in mid-append, before its sync,
//! so never acknowledged) ends the log, as does the first stale one, whose
//! number is lower.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::{Backend, StoreError};

const MAGIC: &[u8; 8] = b"AGCAWAL1";
/// The log file is allocated (written with zeros) to this size up front and
/// reused after each checkpoint, so that appending a record changes neither
/// the file's size nor its block allocation, and syncing it flushes data
/// only: a sync that also had to write the inode cost several times more.
pub const PREALLOCATED: u64 = 16 * 1024 * 1024;
const HEADER: usize = 4 + 4 + 8;
/// Largest record accepted when reading the log back.
const MAX_RECORD: usize = 256 * 1024 * 1024;

fn err(path: &Path, e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend {
        backend: Backend::Redb,
        detail: format!("write-ahead log {}: {e}", path.display()),
    }
}

/// An open log.
pub struct Wal {
    file: File,
    path: PathBuf,
    len: u64,
}

/// A record read back from the log.
pub struct Record {
    /// The batch's sequence number.
    pub seq: u64,
    /// The serialized batch.
    pub payload: Vec<u8>,
}

impl Wal {
    /// Opens (creating if needed) the log at `path` and returns it with the
    /// records it holds, in order. A torn or corrupt tail is cut off.
    pub fn open(path: &Path) -> Result<(Self, Vec<Record>), StoreError> {
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(|e| err(path, e))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(|e| err(path, e))?;
        let mut records: Vec<Record> = Vec::new();
        let end = if bytes.is_empty() {
            file.write_all(MAGIC).map_err(|e| err(path, e))?;
            MAGIC.len()
        } else {
            if bytes.len() < MAGIC.len() || &bytes[..MAGIC.len()] != MAGIC {
                return Err(err(path, "not an agentca write-ahead log"));
            }
            let mut at = MAGIC.len();
            while let Some((record, next)) = parse(&bytes, at) {
                if records
                    .last()
                    .is_some_and(|last| record.seq != last.seq + 1)
                {
                    break;
                }
                records.push(record);
                at = next;
            }
            at
        };
        if (bytes.len() as u64) < PREALLOCATED {
            file.seek(SeekFrom::Start(bytes.len().max(MAGIC.len()) as u64))
                .map_err(|e| err(path, e))?;
            let zeros = vec![0u8; 1024 * 1024];
            let mut len = bytes.len().max(MAGIC.len()) as u64;
            while len < PREALLOCATED {
                let n = (PREALLOCATED - len).min(zeros.len() as u64) as usize;
                file.write_all(&zeros[..n]).map_err(|e| err(path, e))?;
                len += n as u64;
            }
        }
        // Zero the rest of the record the log ends on, if torn, so that it
        // cannot be mistaken for part of a later one.
        if let Some(torn) = bytes.get(end..(end + HEADER).min(bytes.len())) {
            if torn.iter().any(|b| *b != 0) {
                // Normal: the segment is reused after each checkpoint, and
                // a torn record was never acknowledged.
                tracing::debug!(path = %path.display(), "the write-ahead log ends on a stale or torn record");
            }
        }
        file.seek(SeekFrom::Start(end as u64))
            .map_err(|e| err(path, e))?;
        file.write_all(&[0u8; HEADER]).map_err(|e| err(path, e))?;
        file.sync_all().map_err(|e| err(path, e))?;
        if let Some(dir) = path.parent() {
            File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| err(path, e))?;
        }
        file.seek(SeekFrom::Start(end as u64))
            .map_err(|e| err(path, e))?;
        Ok((
            Self {
                file,
                path: path.to_owned(),
                len: end as u64,
            },
            records,
        ))
    }

    /// Appends a record and syncs it: when this returns, the record survives
    /// a crash or a power failure.
    pub fn append(&mut self, seq: u64, payload: &[u8]) -> Result<(), StoreError> {
        let len = u32::try_from(payload.len()).map_err(|_| err(&self.path, "record too large"))?;
        let mut hasher = crc32fast::Hasher::new();
        hasher.update(&seq.to_le_bytes());
        hasher.update(payload);
        let mut buf = Vec::with_capacity(HEADER + payload.len());
        buf.extend_from_slice(&len.to_le_bytes());
        buf.extend_from_slice(&hasher.finalize().to_le_bytes());
        buf.extend_from_slice(&seq.to_le_bytes());
        buf.extend_from_slice(payload);
        let result = self
            .file
            .write_all(&buf)
            .and_then(|()| self.file.sync_data());
        if let Err(e) = result {
            // Some or all of the record may be in the file (a failed sync
            // does not take back the write): zero its header so that it can
            // never be read back, since its batch was refused.
            let _ = self
                .file
                .seek(SeekFrom::Start(self.len))
                .and_then(|_| self.file.write_all(&[0u8; HEADER]))
                .and_then(|()| self.file.sync_data());
            let _ = self.file.seek(SeekFrom::Start(self.len));
            return Err(err(&self.path, e));
        }
        self.len += buf.len() as u64;
        Ok(())
    }

    /// Bytes in the log, header included.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the log holds no record.
    pub fn is_empty(&self) -> bool {
        self.len <= MAGIC.len() as u64
    }

    /// Starts the log over from its beginning (after a checkpoint made its
    /// records redundant). The old records stay until overwritten: their
    /// sequence numbers are at most the checkpoint's, so reading skips them.
    pub fn clear(&mut self) -> Result<(), StoreError> {
        self.file
            .seek(SeekFrom::Start(MAGIC.len() as u64))
            .map_err(|e| err(&self.path, e))?;
        self.len = MAGIC.len() as u64;
        Ok(())
    }
}

/// The record at `at`, and where the next one starts; `None` if the bytes
/// there are not a whole, intact record.
fn parse(bytes: &[u8], at: usize) -> Option<(Record, usize)> {
    let header = bytes.get(at..at + HEADER)?;
    let len = u32::from_le_bytes(header[0..4].try_into().ok()?) as usize;
    let crc = u32::from_le_bytes(header[4..8].try_into().ok()?);
    let seq = u64::from_le_bytes(header[8..16].try_into().ok()?);
    if len > MAX_RECORD {
        return None;
    }
    let payload = bytes.get(at + HEADER..at + HEADER + len)?;
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&seq.to_le_bytes());
    hasher.update(payload);
    if hasher.finalize() != crc {
        return None;
    }
    Some((
        Record {
            seq,
            payload: payload.to_vec(),
        },
        at + HEADER + len,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_come_back_in_order_and_a_torn_tail_is_cut() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.wal");
        {
            let (mut wal, records) = Wal::open(&path).unwrap();
            assert!(records.is_empty());
            wal.append(1, b"first").unwrap();
            wal.append(2, b"second").unwrap();
        }
        // A crash in mid-append leaves half a record after the second.
        let end = (MAGIC.len() + 2 * HEADER + 5 + 6) as u64;
        {
            let mut f = OpenOptions::new().write(true).open(&path).unwrap();
            f.seek(SeekFrom::Start(end)).unwrap();
            f.write_all(&[9, 0, 0, 0, 1, 2]).unwrap();
        }
        let (mut wal, records) = Wal::open(&path).unwrap();
        let got: Vec<(u64, &[u8])> = records
            .iter()
            .map(|r| (r.seq, r.payload.as_slice()))
            .collect();
        assert_eq!(got, vec![(1, &b"first"[..]), (2, &b"second"[..])]);
        assert_eq!(
            std::fs::metadata(&path).unwrap().len(),
            PREALLOCATED,
            "the file keeps its size"
        );
        wal.append(3, b"third").unwrap();
        drop(wal);
        let (mut wal, records) = Wal::open(&path).unwrap();
        assert_eq!(records.len(), 3);
        // After a checkpoint the log starts over; the next round's first
        // record ends the log before the stale ones.
        wal.clear().unwrap();
        assert!(wal.is_empty());
        wal.append(4, b"fourth").unwrap();
        drop(wal);
        let (_, records) = Wal::open(&path).unwrap();
        let got: Vec<u64> = records.iter().map(|r| r.seq).collect();
        assert_eq!(got, vec![4]);
    }

    #[test]
    fn a_corrupt_record_ends_the_log_there() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.wal");
        {
            let (mut wal, _) = Wal::open(&path).unwrap();
            wal.append(1, b"good").unwrap();
            wal.append(2, b"flipped").unwrap();
            wal.append(3, b"after").unwrap();
        }
        let mut bytes = std::fs::read(&path).unwrap();
        let second = MAGIC.len() + HEADER + 4 + HEADER;
        bytes[second] ^= 0xff;
        std::fs::write(&path, &bytes).unwrap();
        let (_, records) = Wal::open(&path).unwrap();
        assert_eq!(records.len(), 1);
    }

    #[test]
    fn a_file_that_is_not_a_log_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.wal");
        std::fs::write(&path, b"something else entirely").unwrap();
        assert!(Wal::open(&path).is_err());
    }
}
