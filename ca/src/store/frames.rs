//! Writes as bytes: one frame per write, in the order given.
//!
//! A frame is `table: u8 | key length: u32 LE | key | value length: u32 LE
//! | value`, with [`DELETED`] as the length of a deletion's (absent) value;
//! the table is its place in [`Table::ALL`]. The write-ahead log's batches
//! and backups are sequences of frames.

use super::Table;

/// Length that marks a deletion.
const DELETED: u32 = u32::MAX;

/// A write: a value, or `None` for a deletion.
pub type Frame = (Table, Vec<u8>, Option<Vec<u8>>);

/// Appends the frame of one write to `out`.
pub fn encode(out: &mut Vec<u8>, table: Table, key: &[u8], value: Option<&[u8]>) {
    out.push(table.index() as u8);
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

/// The writes of `bytes`, a sequence of whole frames.
pub fn decode(mut rest: &[u8]) -> Result<Vec<Frame>, String> {
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
    let mut frames = Vec::new();
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
        frames.push((table, key, value));
    }
    Ok(frames)
}
