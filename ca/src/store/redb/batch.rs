//! The format of a logged batch: the writes of one [`Store::write`] as one
//! record of the write-ahead log, and back.
//!
//! Owns the record's encoding only. Must not depend on redb, on the log's
//! files or on the store's state: a record decodes the same whatever reads
//! it, and replaying one does not depend on the code that decided its
//! writes.
//!
//! [`Store::write`]: crate::store::Store::write

use super::layers::Layer;
use crate::store::{frames, Table};

/// First byte of a log record that holds a batch's writes. Records written
/// before 0.1 hold the batch's changes as a JSON list, whose first byte is
/// `[`: [`crate::store::open`] replays those by applying the changes again.
pub const BATCH_OF_WRITES: u8 = 1;
/// A log record of `writes`: [`BATCH_OF_WRITES`], then each write as a
/// frame ([`crate::store::frames`]).
pub(super) fn encode_batch(writes: &Layer) -> Vec<u8> {
    let size: usize = writes
        .iter()
        .flatten()
        .map(|(k, v)| 9 + k.len() + v.as_ref().map_or(0, Vec::len))
        .sum();
    let mut out = Vec::with_capacity(1 + size);
    out.push(BATCH_OF_WRITES);
    for (table, entries) in Table::ALL.iter().zip(writes) {
        for (key, value) in entries {
            frames::encode(&mut out, *table, key, value.as_deref());
        }
    }
    out
}

/// A write read back from a log record: a value, or `None` for a deletion.
pub type LoggedWrite = frames::Frame;

/// The writes of a record made by [`encode_batch`].
pub fn decode_batch(record: &[u8]) -> Result<Vec<LoggedWrite>, String> {
    match record.split_first() {
        Some((&BATCH_OF_WRITES, rest)) => frames::decode(rest),
        _ => Err("not a batch of writes".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::redb::layers::empty_layer;

    #[test]
    fn a_batch_of_writes_reads_back_and_a_damaged_one_is_refused() {
        let mut writes = empty_layer();
        writes[Table::Certs.index()].insert(b"serial".to_vec(), Some(b"{}".to_vec()));
        writes[Table::Certs.index()].insert(b"gone".to_vec(), None);
        writes[Table::Audit.index()].insert(vec![0; 8], Some(Vec::new()));
        let record = encode_batch(&writes);
        let back = decode_batch(&record).unwrap();
        assert_eq!(
            back,
            vec![
                (Table::Certs, b"gone".to_vec(), None),
                (Table::Certs, b"serial".to_vec(), Some(b"{}".to_vec())),
                (Table::Audit, vec![0; 8], Some(Vec::new())),
            ]
        );
        assert_eq!(decode_batch(&encode_batch(&empty_layer())).unwrap(), vec![]);
        for cut in 2..record.len() {
            if let Ok(partial) = decode_batch(&record[..cut]) {
                // Only a cut between two writes reads as fewer writes.
                assert!(partial.len() < back.len(), "cut at {cut}");
            }
        }
        let mut unknown = record.clone();
        unknown[1] = Table::ALL.len() as u8;
        assert!(decode_batch(&unknown)
            .unwrap_err()
            .contains("unknown table"));
        assert!(
            decode_batch(b"[]").is_err(),
            "a list of changes is not a batch of writes"
        );
    }
}
