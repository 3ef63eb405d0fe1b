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
use crate::store::Table;

/// First byte of a log record that holds a batch's writes. Records written
/// before 0.1 hold the batch's changes as a JSON list, whose first byte is
/// `[`: [`crate::store::open`] replays those by applying the changes again.
pub const BATCH_OF_WRITES: u8 = 1;
/// Length that marks a deletion in a record.
const DELETED: u32 = u32::MAX;

/// A log record of `writes`: [`BATCH_OF_WRITES`], then per write
/// `table: u8 | key length: u32 LE | key | value length: u32 LE | value`,
/// with [`DELETED`] as the length of a deletion's (absent) value.
pub(super) fn encode_batch(writes: &Layer) -> Vec<u8> {
    let size: usize = writes
        .iter()
        .flatten()
        .map(|(k, v)| 9 + k.len() + v.as_ref().map_or(0, Vec::len))
        .sum();
    let mut out = Vec::with_capacity(1 + size);
    out.push(BATCH_OF_WRITES);
    for (table, entries) in writes.iter().enumerate() {
        for (key, value) in entries {
            out.push(table as u8);
            // Keys and values are far below 4 GiB: records are ours.
            out.extend_from_slice(&(key.len() as u32).to_le_bytes());
            out.extend_from_slice(key);
            match value {
                Some(value) => {
                    out.extend_from_slice(&(value.len() as u32).to_le_bytes());
                    out.extend_from_slice(value);
                }
                None => out.extend_from_slice(&DELETED.to_le_bytes()),
            }
        }
    }
    out
}

/// A write read back from a log record: a value, or `None` for a deletion.
pub type LoggedWrite = (Table, Vec<u8>, Option<Vec<u8>>);

/// The writes of a record made by [`encode_batch`].
pub fn decode_batch(record: &[u8]) -> Result<Vec<LoggedWrite>, String> {
    let mut rest = match record.split_first() {
        Some((&BATCH_OF_WRITES, rest)) => rest,
        _ => return Err("not a batch of writes".into()),
    };
    fn take<'a>(rest: &mut &'a [u8], n: usize) -> Result<&'a [u8], String> {
        if rest.len() < n {
            return Err("truncated".into());
        }
        let (head, tail) = rest.split_at(n);
        *rest = tail;
        Ok(head)
    }
    fn length(rest: &mut &[u8]) -> Result<u32, String> {
        Ok(u32::from_le_bytes(
            take(rest, 4)?.try_into().expect("4 bytes"),
        ))
    }
    let mut writes = Vec::new();
    while !rest.is_empty() {
        let index = take(&mut rest, 1)?[0] as usize;
        let table = *Table::ALL
            .get(index)
            .ok_or_else(|| format!("unknown table {index}"))?;
        let key_len = length(&mut rest)? as usize;
        let key = take(&mut rest, key_len)?.to_vec();
        let value = match length(&mut rest)? {
            DELETED => None,
            n => Some(take(&mut rest, n as usize)?.to_vec()),
        };
        writes.push((table, key, value));
    }
    Ok(writes)
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
