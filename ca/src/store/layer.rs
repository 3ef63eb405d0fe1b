//! Writes kept in memory above what a backend has stored: one map per
//! table, a value or `None` for a deletion; and scans that merge such
//! layers over the stored entries. The redb backend keeps its logged but
//! unflushed batches so, and every backend's transaction its own writes.

use std::collections::BTreeMap;
use std::ops::Bound;

use super::{Entry, StoreError, Table};

/// One table's writes: a value, or `None` for a deletion.
pub type Writes = BTreeMap<Vec<u8>, Option<Vec<u8>>>;

/// Writes to every table, one map per table, in [`Table::ALL`]'s order.
pub type Layer = Vec<Writes>;

/// A layer without writes.
pub fn empty_layer() -> Layer {
    Table::ALL.iter().map(|_| BTreeMap::new()).collect()
}

/// Up to `limit` entries with keys at or after `start` that begin with
/// `prefix`, in key order: `layers` (the first that has a key decides,
/// `None` hiding it) over the stored entries `below`, which come in key
/// order from `start` on.
pub fn merge(
    layers: &[&Writes],
    mut below: impl Iterator<Item = Result<Entry, StoreError>>,
    start: &[u8],
    prefix: &[u8],
    limit: usize,
) -> Result<Vec<Entry>, StoreError> {
    let mut above: Vec<_> = layers
        .iter()
        .map(|layer| {
            layer
                .range::<[u8], _>((Bound::Included(start), Bound::Unbounded))
                .peekable()
        })
        .collect();
    let mut below_head = below.next().transpose()?;
    let mut out = Vec::new();
    while out.len() < limit {
        // The smallest key at the head of any source.
        let mut smallest: Option<&[u8]> = below_head.as_ref().map(|(k, _)| k.as_slice());
        for layer in &mut above {
            if let Some((k, _)) = layer.peek() {
                if smallest.is_none_or(|s| k.as_slice() < s) {
                    smallest = Some(k.as_slice());
                }
            }
        }
        let Some(key) = smallest.map(<[u8]>::to_vec) else {
            break;
        };
        if !key.starts_with(prefix) {
            break;
        }
        // Every source at that key moves past it; the first decides.
        let mut value: Option<Option<Vec<u8>>> = None;
        for layer in &mut above {
            if layer.peek().is_some_and(|(k, _)| **k == key) {
                let (_, v) = layer.next().expect("peeked");
                value.get_or_insert_with(|| v.clone());
            }
        }
        if below_head.as_ref().is_some_and(|(k, _)| *k == key) {
            let (_, v) = below_head.take().expect("checked");
            value.get_or_insert(Some(v));
            below_head = below.next().transpose()?;
        }
        if let Some(Some(value)) = value {
            out.push((key, value));
        }
    }
    Ok(out)
}
