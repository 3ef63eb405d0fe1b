//! The writes of governance changes: registering (with the first version
//! of the registration), updating a registration (a new version, and its
//! removed scopes withdrawn from live certificates), proposing, approving
//! and rejecting a change that waits for review, blocking and unblocking a
//! scope, retiring an agent. What is allowed is asked of
//! [`super::agent`] and [`super::scopes`]; each feed event takes the next
//! number of the feed's one sequence.

use agentca::wire::{Serial, MAX_BLOCK_SERIALS};
use time::OffsetDateTime;

use super::outcome::{Applied, Conflict, Outcome, RevokeTarget};
pub use super::records::Update;
use super::records::{
    index_key, AdminRecord, AdminVersionRecord, AgentRecord, AgentVersionRecord, BlockRecord,
    CertRecord, PendingRecord, Role, ScopeBlocks, ScopeChangeRecord, ScopeEventRecord,
    SCOPE_BLOCKS_KEY,
};
use super::writes::{self, get, put, REVOCATION_SEQ};
use super::{admin, agent, review, scopes};
use crate::store::{StoreError, Table, WriteTxn};

/// The blocks in force.
pub(super) fn blocks(txn: &mut dyn WriteTxn) -> Result<Vec<BlockRecord>, StoreError> {
    Ok(get::<ScopeBlocks>(txn, Table::Meta, SCOPE_BLOCKS_KEY)?
        .unwrap_or_default()
        .blocks)
}

fn history_key(agent_key: &str, version: u64) -> Vec<u8> {
    index_key(agent_key, &version.to_be_bytes())
}

/// Stores the version `agent` is at.
fn record_version(
    txn: &mut dyn WriteTxn,
    agent: &AgentRecord,
    by: &str,
    change: &str,
    at: OffsetDateTime,
) -> Result<(), StoreError> {
    let version = AgentVersionRecord::of(agent, by, change, at);
    put(
        txn,
        Table::AgentHistory,
        &history_key(&agent.key(), agent.version),
        &version,
    )
}

/// Who made a version not recorded: the registration (or admin) dates from
/// before agentca kept versions.
pub const NOT_RECORDED: &str = "(before versions were kept)";

/// Stores the version `agent` is at if none is stored: a registration
/// from before versions were kept gets its current state as that version
/// before a change makes the next.
fn keep_version(txn: &mut dyn WriteTxn, agent: &AgentRecord) -> Result<(), StoreError> {
    let key = history_key(&agent.key(), agent.version);
    if txn.get(Table::AgentHistory, &key)?.is_none() {
        let change = if agent.version == 1 {
            "register"
        } else {
            "unknown"
        };
        record_version(txn, agent, NOT_RECORDED, change, agent.updated_at)?;
    }
    Ok(())
}

/// Registers `agent` as its first version, or, when `reuse` and the name
/// belongs to a retired agent, as the next version of that name.
pub(super) fn register(
    txn: &mut dyn WriteTxn,
    agent: &AgentRecord,
    by: &str,
    reuse: bool,
    then_propose: Option<&PendingRecord>,
) -> Result<Outcome, StoreError> {
    let key = agent.key();
    let mut agent = agent.clone();
    if let Some(pending) = then_propose {
        if let Err(conflict) = may_store_proposal(txn, pending)? {
            return Ok(Err(conflict));
        }
    }
    let mut change = "register";
    if let Some(existing) = get::<AgentRecord>(txn, Table::Agents, key.as_bytes())? {
        match agent::may_register_over(&existing, reuse) {
            Ok(()) => {
                keep_version(txn, &existing)?;
                agent.version = existing.version + 1;
                agent.created_at = existing.created_at;
                agent.issued = existing.issued;
                change = "reuse";
            }
            Err(agent::AgentRefusal::Retired) => return Ok(Err(Conflict::AgentRetired)),
            Err(_) => return Ok(Err(Conflict::AgentExists)),
        }
    }
    put(txn, Table::Agents, key.as_bytes(), &agent)?;
    record_version(txn, &agent, by, change, agent.updated_at)?;
    let pending = then_propose
        .map(|p| store_proposal(txn, p, agent.version))
        .transpose()?;
    Ok(Ok(Applied::Versioned {
        version: agent.version,
        scope_events: Vec::new(),
        scopes: agent.scopes,
        pending,
    }))
}

/// Applies `update` to the registration under `key`, if it is at
/// `expected` (when given): a new version, and the scopes it removes
/// withdrawn from the live certificates that carry them. With
/// `then_propose`, the change that waits for review is stored in the same
/// transaction, based on the version the update leaves.
pub(super) fn update(
    txn: &mut dyn WriteTxn,
    key: &str,
    expected: Option<u64>,
    update: &Update,
    by: &str,
    at: OffsetDateTime,
    then_propose: Option<&PendingRecord>,
) -> Result<Outcome, StoreError> {
    let Some(before) = get::<AgentRecord>(txn, Table::Agents, key.as_bytes())? else {
        return Ok(Err(Conflict::AgentNotFound));
    };
    if agent::may_change(&before).is_err() {
        return Ok(Err(Conflict::AgentRetired));
    }
    if let Some(expected) = expected {
        if expected != before.version {
            return Ok(Err(Conflict::VersionConflict {
                current: before.version,
            }));
        }
    }
    if let Some(pending) = then_propose {
        if let Err(conflict) = may_store_proposal(txn, pending)? {
            return Ok(Err(conflict));
        }
    }
    let mut after = update.applied_to(&before);
    if after == before {
        // Nothing changes: no new version.
        let pending = then_propose
            .map(|p| store_proposal(txn, p, before.version))
            .transpose()?;
        return Ok(Ok(Applied::Versioned {
            version: before.version,
            scope_events: Vec::new(),
            scopes: before.scopes,
            pending,
        }));
    }
    keep_version(txn, &before)?;
    after.version = before.version + 1;
    after.updated_at = at;
    let removed = scopes::removed(&before.scopes, &after.scopes);
    let mut events = Vec::new();
    if !removed.is_empty() {
        for serial in writes::index_suffixes(txn, Table::AgentCerts, key)? {
            let Some(mut cert) = get::<CertRecord>(txn, Table::Certs, &serial)? else {
                continue;
            };
            let lost = scopes::withdrawn_from(&cert, &removed, at);
            if lost.is_empty() {
                continue;
            }
            cert.withdrawn.extend(lost.iter().cloned());
            put(txn, Table::Certs, &serial, &cert)?;
            let change = ScopeChangeRecord::Withdrawn {
                serial: cert.serial.clone(),
                agent_key: key.to_owned(),
                scopes: lost,
                not_after: cert.not_after,
            };
            events.push(scope_event(txn, at, change)?);
        }
    }
    put(txn, Table::Agents, key.as_bytes(), &after)?;
    record_version(txn, &after, by, "update", at)?;
    let pending = then_propose
        .map(|p| store_proposal(txn, p, after.version))
        .transpose()?;
    Ok(Ok(Applied::Versioned {
        version: after.version,
        scope_events: events,
        scopes: after.scopes,
        pending,
    }))
}

/// Stores the next scope event of the feed.
fn scope_event(
    txn: &mut dyn WriteTxn,
    at: OffsetDateTime,
    change: ScopeChangeRecord,
) -> Result<ScopeEventRecord, StoreError> {
    let seq = txn.next_in_sequence(REVOCATION_SEQ)?;
    let event = ScopeEventRecord { seq, at, change };
    put(txn, Table::ScopeEvents, &seq.to_be_bytes(), &event)?;
    Ok(event)
}

/// Sets `block` (its id is set here: the sequence number of its first
/// event), reaching every certificate, or the live certificates that
/// carry the scope of the agents it names.
pub(super) fn block(txn: &mut dyn WriteTxn, block: &BlockRecord) -> Result<Outcome, StoreError> {
    let mut all = blocks(txn)?;
    match scopes::may_add_block(&all, block) {
        Ok(()) => {}
        Err(scopes::BlockRefusal::Exists) => return Ok(Err(Conflict::BlockExists)),
        Err(scopes::BlockRefusal::TooMany(limit)) => {
            return Ok(Err(Conflict::TooManyBlocks(limit)))
        }
    }
    let serials = match &block.target {
        None => None,
        Some(target) => {
            let agents: Vec<String> = if target.matches('/').count() == 2 {
                vec![target.clone()]
            } else {
                txn.scan_prefix(Table::Agents, format!("{target}/").as_bytes(), usize::MAX)?
                    .into_iter()
                    .map(|(k, _)| String::from_utf8_lossy(&k).into_owned())
                    .collect()
            };
            let mut reached: Vec<(Serial, OffsetDateTime)> = Vec::new();
            for key in agents {
                for serial in writes::index_suffixes(txn, Table::AgentCerts, &key)? {
                    if let Some(cert) = get::<CertRecord>(txn, Table::Certs, &serial)? {
                        if scopes::block_reaches_cert(&cert, &block.scope, block.at) {
                            reached.push((cert.serial, cert.not_after));
                        }
                    }
                }
            }
            Some(reached)
        }
    };
    let mut block = block.clone();
    block.certificates = serials.as_ref().map(Vec::len);
    // Each event lists at most MAX_BLOCK_SERIALS, with the last end of
    // validity among them.
    let chunks: Vec<(Option<Vec<Serial>>, Option<OffsetDateTime>)> = match serials {
        None => vec![(None, None)],
        Some(s) if s.is_empty() => vec![(Some(Vec::new()), None)],
        Some(s) => s
            .chunks(MAX_BLOCK_SERIALS)
            .map(|c| {
                let ends = c.iter().map(|(_, t)| *t).max();
                (Some(c.iter().map(|(s, _)| s.clone()).collect()), ends)
            })
            .collect(),
    };
    let mut events: Vec<ScopeEventRecord> = Vec::with_capacity(chunks.len());
    for (serials, not_after) in chunks {
        let seq = txn.next_in_sequence(REVOCATION_SEQ)?;
        let event = ScopeEventRecord {
            seq,
            at: block.at,
            change: ScopeChangeRecord::Blocked {
                block: events.first().map_or(seq, |e| e.seq),
                scope: block.scope.clone(),
                serials,
                target: block.target.clone(),
                not_after,
                lifted_at: None,
            },
        };
        put(txn, Table::ScopeEvents, &seq.to_be_bytes(), &event)?;
        events.push(event);
    }
    block.id = events[0].seq;
    all.push(block.clone());
    put_blocks(txn, all)?;
    Ok(Ok(Applied::Scoped {
        block: Some(block),
        scope_events: events,
    }))
}

/// Stores the blocks in force.
fn put_blocks(txn: &mut dyn WriteTxn, blocks: Vec<BlockRecord>) -> Result<(), StoreError> {
    put(txn, Table::Meta, SCOPE_BLOCKS_KEY, &ScopeBlocks { blocks })
}

/// Lifts the block `id`.
pub(super) fn unblock(
    txn: &mut dyn WriteTxn,
    id: u64,
    tenant: Option<&str>,
    at: OffsetDateTime,
) -> Result<Outcome, StoreError> {
    let mut all = blocks(txn)?;
    let Some(index) = all.iter().position(|b| b.id == id) else {
        return Ok(Err(Conflict::BlockNotFound));
    };
    if !scopes::may_lift(&all[index], tenant) {
        return Ok(Err(Conflict::BlockNotFound));
    }
    let lifted = all.remove(index);
    put_blocks(txn, all)?;
    // Its events end now: they are numbered one after another from its id
    // (written in one transaction).
    let chunks = lifted
        .certificates
        .map_or(1, |n| n.div_ceil(MAX_BLOCK_SERIALS).max(1)) as u64;
    for seq in id..id.saturating_add(chunks) {
        let key = seq.to_be_bytes();
        if let Some(mut event) = get::<ScopeEventRecord>(txn, Table::ScopeEvents, &key)? {
            event.lift(id, at);
            put(txn, Table::ScopeEvents, &key, &event)?;
        }
    }
    let change = ScopeChangeRecord::Unblocked {
        block: id,
        target: lifted.target.clone(),
    };
    let event = scope_event(txn, at, change)?;
    Ok(Ok(Applied::Scoped {
        block: Some(lifted),
        scope_events: vec![event],
    }))
}

/// Retires the agent under `key`: [`agent::retire`], its live
/// certificates revoked (reason `cessationOfOperation`), a new version.
pub(super) fn retire(
    txn: &mut dyn WriteTxn,
    key: &str,
    by: &str,
    at: OffsetDateTime,
) -> Result<Outcome, StoreError> {
    let Some(record) = get::<AgentRecord>(txn, Table::Agents, key.as_bytes())? else {
        return Ok(Err(Conflict::AgentNotFound));
    };
    if record.retired_at.is_some() {
        return Ok(Err(Conflict::AgentRetired));
    }
    // Revoking the agent disables it and voids its tokens (the rules of
    // [`agent::revoke`]), and revokes its live certificates.
    const CESSATION_OF_OPERATION: u8 = 5;
    let target = RevokeTarget::Agents {
        prefix: key.to_owned(),
        exact: true,
    };
    let outcome = writes::revoke(txn, &target, CESSATION_OF_OPERATION, at)?;
    let Ok(Applied::Revoked(mut summary)) = outcome else {
        return Ok(outcome);
    };
    let Some(mut record) = get::<AgentRecord>(txn, Table::Agents, key.as_bytes())? else {
        return Ok(Err(Conflict::AgentNotFound));
    };
    keep_version(txn, &record)?;
    // Its tokens were voided above: nothing more to void.
    agent::retire(&mut record, &mut [], at);
    put(txn, Table::Agents, key.as_bytes(), &record)?;
    record_version(txn, &record, by, "retire", at)?;
    summary.version = Some(record.version);
    Ok(Ok(Applied::Revoked(summary)))
}

/// Most changes read when counting those that wait (lapsed ones are
/// pruned after the retention window).
pub const MAX_PENDING_SCAN: usize = 10_000;

/// Whether `pending` may be stored: within the limits of changes waiting
/// ([`review::may_propose`]).
fn may_store_proposal(
    txn: &mut dyn WriteTxn,
    pending: &PendingRecord,
) -> Result<Result<(), Conflict>, StoreError> {
    let waiting: Vec<PendingRecord> = txn
        .scan_prefix(Table::PendingChanges, &[], MAX_PENDING_SCAN)?
        .iter()
        .map(|(_, v)| super::records::decode(Table::PendingChanges, v))
        .collect::<Result<_, _>>()?;
    Ok(review::may_propose(&waiting, pending).map_err(Conflict::TooManyPending))
}

/// Stores `pending` based on `version`, under the next id.
fn store_proposal(
    txn: &mut dyn WriteTxn,
    pending: &PendingRecord,
    version: u64,
) -> Result<PendingRecord, StoreError> {
    let mut pending = pending.clone();
    pending.based_on = version;
    pending.id = txn.next_in_sequence("pending_seq")?;
    put(
        txn,
        Table::PendingChanges,
        &pending.id.to_be_bytes(),
        &pending,
    )?;
    Ok(pending)
}

/// Applies the pending change `id` as approved by `by` at `at`
/// ([`review::may_approve`]), to the version it was based on, and
/// removes it.
pub(super) fn approve(
    txn: &mut dyn WriteTxn,
    id: u64,
    by: &str,
    at: OffsetDateTime,
) -> Result<Outcome, StoreError> {
    let key = id.to_be_bytes();
    let Some(pending) = get::<PendingRecord>(txn, Table::PendingChanges, &key)? else {
        return Ok(Err(Conflict::PendingNotFound));
    };
    if let Err(refusal) = review::may_approve(&pending, by, at) {
        return Ok(Err(Conflict::Review(refusal)));
    }
    let who = format!("{}, approved by {by}", pending.by);
    let outcome = update(
        txn,
        &pending.agent_key,
        Some(pending.based_on),
        &pending.update,
        &who,
        at,
        None,
    )?;
    if outcome.is_ok() {
        txn.delete(Table::PendingChanges, &key)?;
    }
    Ok(outcome)
}

/// Removes the pending change `id` unapplied.
pub(super) fn reject(txn: &mut dyn WriteTxn, id: u64) -> Result<Outcome, StoreError> {
    let key = id.to_be_bytes();
    let Some(pending) = get::<PendingRecord>(txn, Table::PendingChanges, &key)? else {
        return Ok(Err(Conflict::PendingNotFound));
    };
    txn.delete(Table::PendingChanges, &key)?;
    Ok(Ok(Applied::Proposed(pending)))
}

/// Stores the version `admin` is at, made by `by` with `change`.
pub(super) fn record_admin_version(
    txn: &mut dyn WriteTxn,
    admin: &AdminRecord,
    by: &str,
    change: &str,
    at: OffsetDateTime,
) -> Result<(), StoreError> {
    let version = AdminVersionRecord {
        version: admin.version,
        at,
        by: by.to_owned(),
        change: change.to_owned(),
        role: admin.role,
        tenant: admin.tenant.clone(),
    };
    put(
        txn,
        Table::AdminHistory,
        &index_key(&admin.name, &admin.version.to_be_bytes()),
        &version,
    )
}

/// Deletes the versions of the admin `name` (removed).
pub(super) fn forget_admin_versions(txn: &mut dyn WriteTxn, name: &str) -> Result<(), StoreError> {
    let prefix = index_key(name, &[]);
    for (key, _) in txn.scan_prefix(Table::AdminHistory, &prefix, usize::MAX)? {
        txn.delete(Table::AdminHistory, &key)?;
    }
    Ok(())
}

/// How many global admins there are besides the one whose token hashes to
/// `hash` ([`admin::is_global`]).
pub(super) fn other_global_admins(
    txn: &mut dyn WriteTxn,
    hash: &[u8],
) -> Result<usize, StoreError> {
    let mut others = 0;
    for (key, value) in txn.scan_prefix(Table::Admins, b"", usize::MAX)? {
        let other: AdminRecord = super::records::decode(Table::Admins, &value)?;
        if key != hash && admin::is_global(&other) {
            others += 1;
        }
    }
    Ok(others)
}

/// Gives the admin `name` the role `role`, if it is at `expected` (when
/// given) and [`admin::may_take_role`] allows: its next version.
pub(super) fn set_admin_role(
    txn: &mut dyn WriteTxn,
    name: &str,
    role: Role,
    expected: Option<u64>,
    by: &str,
    at: OffsetDateTime,
) -> Result<Outcome, StoreError> {
    let Some(hash) = txn.get(Table::AdminNames, name.as_bytes())? else {
        return Ok(Err(Conflict::AdminNotFound));
    };
    let Some(mut record) = get::<AdminRecord>(txn, Table::Admins, &hash)? else {
        return Ok(Err(Conflict::AdminNotFound));
    };
    if let Some(expected) = expected {
        if expected != record.version {
            return Ok(Err(Conflict::VersionConflict {
                current: record.version,
            }));
        }
    }
    if record.role == role {
        return Ok(Ok(Applied::Versioned {
            version: record.version,
            scope_events: Vec::new(),
            scopes: Vec::new(),
            pending: None,
        }));
    }
    let others = other_global_admins(txn, &hash)?;
    if admin::may_take_role(&record, role, others).is_err() {
        return Ok(Err(Conflict::LastGlobalAdmin));
    }
    let first = index_key(&record.name, &record.version.to_be_bytes());
    if txn.get(Table::AdminHistory, &first)?.is_none() {
        record_admin_version(txn, &record, NOT_RECORDED, "create", record.created_at)?;
    }
    record.role = role;
    record.version += 1;
    put(txn, Table::Admins, &hash, &record)?;
    record_admin_version(txn, &record, by, "role", at)?;
    Ok(Ok(Applied::Versioned {
        version: record.version,
        scope_events: Vec::new(),
        scopes: Vec::new(),
        pending: None,
    }))
}
