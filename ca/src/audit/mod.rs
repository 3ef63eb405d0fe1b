//! The audit trail: one hash-chained history of everything the CA did or
//! refused.
//!
//! This module owns the chain: the stored shape of an event ([`record`]),
//! how an event is hashed and linked to the one before it, how one is
//! appended in the same transaction as what it records, how the trail is
//! read, and how a trail is verified ([`chain`]). Nothing else computes a
//! chain hash.
//!
//! It depends on the store (to append and read) and on the wire types (an
//! event as the API shows it); nothing of the authority or HTTP.

pub mod chain;
pub mod record;
pub mod refusals;

use agentca::wire::AuditEvent;

use crate::store::{Store, StoreError, Table, WriteTxn};

pub use chain::{
    ends_at_head, genesis, hash, may_prune, verify_chain, AuditBreak, Head, PruneRefusal,
};

/// Meta key of the trail's head: its last sequence number (8 bytes,
/// big-endian) and hash (32 bytes).
pub const HEAD_KEY: &str = "audit_head";

/// Meta key of the checkpoint: the last event pruned from the store (same
/// encoding as the head). The trail in the store starts after it, and
/// links to it by its hash.
pub const CHECKPOINT_KEY: &str = "audit_checkpoint";

/// Most events one pruning removes (one transaction).
pub const MAX_PRUNED: u64 = 100_000;

/// The trail's head as stored: its last event's sequence number and hash.
pub fn head(store: &dyn Store) -> Result<Head, StoreError> {
    Head::decode(store.get(Table::Meta, HEAD_KEY.as_bytes())?.as_deref())
}

/// Appends `event` to the trail inside `txn`: it gets the next sequence
/// number, the hash of the event before it, and its own hash; the head
/// moves to it. Returns its sequence number.
pub fn append(txn: &mut dyn WriteTxn, mut event: AuditEvent) -> Result<u64, StoreError> {
    let head = Head::decode(txn.get(Table::Meta, HEAD_KEY.as_bytes())?.as_deref())?;
    event.seq = head.seq + 1;
    event.prev_hash = head.hash;
    event.hash = hash(&event);
    let next = Head {
        seq: event.seq,
        hash: event.hash.clone(),
    };
    txn.put(
        Table::Audit,
        &event.seq.to_be_bytes(),
        &record::encode(&record::AuditRecord::from(event)),
    )?;
    txn.put(Table::Meta, HEAD_KEY.as_bytes(), &next.encode())?;
    Ok(next.seq)
}

/// The checkpoint: the last event pruned ([`Head::decode`]'s empty trail
/// when none was).
pub fn checkpoint(store: &dyn Store) -> Result<Head, StoreError> {
    Head::decode(
        store
            .get(Table::Meta, CHECKPOINT_KEY.as_bytes())?
            .as_deref(),
    )
}

/// Removes the events up to `through` inside `txn`, if [`may_prune`]
/// allows it (the caller exported them, and names the last one by
/// `hash`; no event receiver still waits for them, `slowest` naming the
/// one furthest behind); the checkpoint moves to it. Returns how many
/// were removed.
pub fn prune(
    txn: &mut dyn WriteTxn,
    through: u64,
    hash: &str,
    slowest: Option<(&str, u64)>,
) -> Result<Result<u64, PruneRefusal>, StoreError> {
    let checkpoint = Head::decode(txn.get(Table::Meta, CHECKPOINT_KEY.as_bytes())?.as_deref())?;
    let head = Head::decode(txn.get(Table::Meta, HEAD_KEY.as_bytes())?.as_deref())?;
    let stored = match txn.get(Table::Audit, &through.to_be_bytes())? {
        Some(bytes) => Some(AuditEvent::from(record::decode(&bytes)?).hash),
        None => None,
    };
    if let Err(refusal) = may_prune(
        &checkpoint,
        &head,
        through,
        stored.as_deref(),
        hash,
        slowest,
    ) {
        return Ok(Err(refusal));
    }
    for seq in checkpoint.seq + 1..=through {
        txn.delete(Table::Audit, &seq.to_be_bytes())?;
    }
    let next = Head {
        seq: through,
        hash: hash.to_owned(),
    };
    txn.put(Table::Meta, CHECKPOINT_KEY.as_bytes(), &next.encode())?;
    Ok(Ok(through - checkpoint.seq))
}

/// Up to `limit` events after `since`, in order.
pub fn since(store: &dyn Store, since: u64, limit: usize) -> Result<Vec<AuditEvent>, StoreError> {
    store
        .scan_from(Table::Audit, &since.saturating_add(1).to_be_bytes(), limit)?
        .iter()
        .map(|(_, v)| record::decode(v).map(AuditEvent::from))
        .collect()
}
