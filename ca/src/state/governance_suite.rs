//! The governance changes (versions, withdrawals, blocks, retirement,
//! review), run against every backend.

use std::sync::Arc;

use time::Duration;

use super::change::{Applied, Change, Conflict};
use super::records::*;
use super::tests::{agent, cert, t0, token};
use super::Records;
use crate::store::testing::{on_every_backend, Place};
use crate::store::writer::commit;
use crate::store::{Backend, Store};

on_every_backend!(
    a_change_of_registration_is_a_version_and_withdraws_removed_scopes_at_once,
    a_block_reaches_live_certificates_and_new_ones_leave_its_scope_out,
    a_retired_agent_gets_nothing_and_its_name_is_taken_only_on_purpose,
    a_pending_change_applies_once_another_admin_approves_it_in_time,
    a_registration_from_before_versions_gets_its_first_version_when_it_changes,
    scope_events_are_pruned_once_they_no_longer_matter_and_blocks_in_force_stay,
);

fn one(store: &dyn Store, change: Change) -> Result<Applied, Conflict> {
    commit(store, &[change]).unwrap().pop().unwrap()
}

fn open(place: &Place) -> Arc<dyn Store> {
    super::open_store(place.location()).unwrap()
}

fn scoped(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// Registers acme/prod/bot with `scopes` (version 1) and enrolls a
/// certificate carrying them with serial `40 01`.
fn registered(store: &dyn Store, scopes: &[&str]) -> (AgentRecord, CertRecord) {
    let mut a = agent("acme", "bot");
    a.scopes = scoped(scopes);
    let register = Change::Register {
        agent: a.clone(),
        by: "alice".into(),
        reuse: false,
        then_propose: None,
    };
    assert!(matches!(
        one(store, register),
        Ok(Applied::Versioned { version: 1, .. })
    ));
    let c = issue(store, &a, 1, scopes).unwrap();
    (a, c)
}

/// Enrolls a certificate of `a` carrying `scopes` with serial `40 n`.
fn issue(
    store: &dyn Store,
    a: &AgentRecord,
    n: u8,
    scopes: &[&str],
) -> Result<CertRecord, Conflict> {
    let hash = [n; 32];
    one(
        store,
        Change::CreateToken {
            hash,
            token: token(&a.key(), 1),
        },
    )?;
    let mut c = cert(&a.key(), n);
    c.scopes = Some(scoped(scopes));
    c.version = a.version;
    one(
        store,
        Change::Enroll {
            token_hash: hash,
            at: t0(),
            cert: c.clone(),
            limits: Default::default(),
        },
    )?;
    Ok(c)
}

fn update(scopes: &[&str]) -> Update {
    Update {
        scopes: Some(scoped(scopes)),
        ..Default::default()
    }
}

fn a_change_of_registration_is_a_version_and_withdraws_removed_scopes_at_once(backend: Backend) {
    let place = Place::new(backend);
    let store = open(&place);
    let (a, c) = registered(&*store, &["read", "write"]);
    let change = |expected, scopes: &[&str]| Change::UpdateAgent {
        key: a.key(),
        expected,
        update: update(scopes),
        by: "bob".into(),
        at: t0() + Duration::seconds(10),
        then_propose: None,
    };
    // Based on a version it is not at: refused, nothing written.
    assert_eq!(
        one(&*store, change(Some(7), &["read"])),
        Err(Conflict::VersionConflict { current: 1 })
    );
    let Ok(Applied::Versioned {
        version,
        scope_events,
        ..
    }) = one(&*store, change(Some(1), &["read"]))
    else {
        panic!("the update applies");
    };
    assert_eq!(version, 2);
    assert_eq!(scope_events.len(), 1);
    assert!(matches!(
        &scope_events[0].change,
        ScopeChangeRecord::Withdrawn { serial, scopes, .. } if *serial == c.serial && *scopes == scoped(&["write"])
    ));
    let records = Records::new(store.clone());
    assert_eq!(
        records.cert(&c.serial).unwrap().unwrap().withdrawn,
        scoped(&["write"])
    );
    let history = records.agent_history(&a.key()).unwrap();
    assert_eq!(
        history
            .iter()
            .map(|v| (v.version, v.by.as_str(), v.scopes.clone()))
            .collect::<Vec<_>>(),
        [
            (1, "alice", scoped(&["read", "write"])),
            (2, "bob", scoped(&["read"]))
        ]
    );
    assert_eq!(
        records.scope_events_after(0, 10).unwrap(),
        scope_events,
        "the feed's event is stored"
    );
    // A certificate signed before the change, carrying what it removed,
    // is refused at commit; one without it is issued.
    let mut now = records.agent(&a.key()).unwrap().unwrap();
    assert_eq!(
        issue(&*store, &now, 2, &["read", "write"]),
        Err(Conflict::RegistrationChanged)
    );
    now.version = 2;
    issue(&*store, &now, 3, &["read"]).unwrap();
    // Changing nothing makes no version.
    assert!(matches!(
        one(&*store, change(None, &["read"])),
        Ok(Applied::Versioned { version: 2, .. })
    ));
}

fn a_block_reaches_live_certificates_and_new_ones_leave_its_scope_out(backend: Backend) {
    let place = Place::new(backend);
    let store = open(&place);
    let (a, c) = registered(&*store, &["pay", "read"]);
    let block = |target: Option<&str>| BlockRecord {
        id: 0,
        scope: "pay".into(),
        target: target.map(Into::into),
        reason: Some("runaway".into()),
        by: "alice".into(),
        at: t0() + Duration::seconds(5),
        certificates: None,
        set_globally: false,
    };
    let Ok(Applied::Scoped {
        block: Some(set),
        scope_events,
    }) = one(&*store, Change::BlockScope(block(Some("acme/prod/bot"))))
    else {
        panic!("the block is set");
    };
    assert_eq!(set.certificates, Some(1));
    assert_eq!(set.id, scope_events[0].seq, "its id is its first event");
    assert!(matches!(
        &scope_events[0].change,
        ScopeChangeRecord::Blocked { serials: Some(s), .. } if *s == [c.serial.clone()]
    ));
    assert_eq!(
        one(&*store, Change::BlockScope(block(Some("acme/prod/bot")))),
        Err(Conflict::BlockExists)
    );
    // The tenant's block is another one, and reaches the same certificate.
    let Ok(Applied::Scoped {
        block: Some(tenant),
        ..
    }) = one(&*store, Change::BlockScope(block(Some("acme"))))
    else {
        panic!("the tenant's block is set");
    };
    let records = Records::new(store.clone());
    assert_eq!(records.scope_blocks().unwrap().len(), 2);
    // While blocked, a certificate carrying the scope is refused at
    // commit; one without it is issued.
    assert_eq!(
        issue(&*store, &a, 2, &["pay", "read"]),
        Err(Conflict::RegistrationChanged)
    );
    issue(&*store, &a, 3, &["read"]).unwrap();
    // Lifted: the agent's block, then the tenant's; each once.
    for id in [set.id, tenant.id] {
        let unblock = Change::UnblockScope {
            id,
            tenant: None,
            at: t0() + Duration::seconds(9),
        };
        assert!(matches!(
            one(&*store, unblock.clone()),
            Ok(Applied::Scoped { scope_events, .. })
                if matches!(scope_events[0].change, ScopeChangeRecord::Unblocked { block, .. } if block == id)
        ));
        assert_eq!(one(&*store, unblock), Err(Conflict::BlockNotFound));
    }
    assert!(records.scope_blocks().unwrap().is_empty());
    issue(&*store, &a, 4, &["pay", "read"]).unwrap();
    // A global block lists no serials; another tenant's admin cannot lift it.
    let Ok(Applied::Scoped {
        block: Some(global),
        scope_events,
    }) = one(&*store, Change::BlockScope(block(None)))
    else {
        panic!("the global block is set");
    };
    assert!(matches!(
        &scope_events[0].change,
        ScopeChangeRecord::Blocked { serials: None, .. }
    ));
    let by_tenant = Change::UnblockScope {
        id: global.id,
        tenant: Some("acme".into()),
        at: t0(),
    };
    assert_eq!(one(&*store, by_tenant), Err(Conflict::BlockNotFound));
    // A block of the tenant that an admin of every tenant set is not the
    // tenant's admin's to lift.
    let mut from_above = block(Some("acme/prod"));
    from_above.set_globally = true;
    let Ok(Applied::Scoped {
        block: Some(from_above),
        ..
    }) = one(&*store, Change::BlockScope(from_above))
    else {
        panic!("blocked");
    };
    let lift = |tenant: Option<&str>| Change::UnblockScope {
        id: from_above.id,
        tenant: tenant.map(Into::into),
        at: t0(),
    };
    assert_eq!(
        one(&*store, lift(Some("acme"))),
        Err(Conflict::BlockNotFound)
    );
    assert!(one(&*store, lift(None)).is_ok());
    // Feed events are numbered with revocations, without gaps.
    let seqs: Vec<u64> = records
        .scope_events_after(0, 100)
        .unwrap()
        .iter()
        .map(|e| e.seq)
        .collect();
    assert_eq!(seqs, (1..=7).collect::<Vec<u64>>());
}

fn a_retired_agent_gets_nothing_and_its_name_is_taken_only_on_purpose(backend: Backend) {
    let place = Place::new(backend);
    let store = open(&place);
    let (a, c) = registered(&*store, &["read"]);
    one(
        &*store,
        Change::CreateToken {
            hash: [9; 32],
            token: token(&a.key(), 1),
        },
    )
    .unwrap();
    let retire = Change::Retire {
        key: a.key(),
        by: "alice".into(),
        at: t0() + Duration::seconds(1),
    };
    let Ok(Applied::Revoked(summary)) = one(&*store, retire.clone()) else {
        panic!("retired");
    };
    assert_eq!(summary.events.len(), 1);
    assert_eq!(summary.events[0].serial, c.serial);
    assert_eq!(summary.tokens_voided, 1);
    assert_eq!(one(&*store, retire), Err(Conflict::AgentRetired));
    let records = Records::new(store.clone());
    let retired = records.agent(&a.key()).unwrap().unwrap();
    assert_eq!(retired.version, 2);
    assert!(retired.retired_at.is_some());
    // Nothing is issued, enabled or changed.
    assert_eq!(
        one(
            &*store,
            Change::CreateToken {
                hash: [8; 32],
                token: token(&a.key(), 1)
            }
        ),
        Err(Conflict::AgentRetired)
    );
    let enable = Change::SetAgentEnabled {
        key: a.key(),
        enabled: true,
        at: t0(),
    };
    assert_eq!(one(&*store, enable), Err(Conflict::AgentRetired));
    let change = Change::UpdateAgent {
        key: a.key(),
        expected: None,
        update: update(&["admin"]),
        by: "bob".into(),
        at: t0(),
        then_propose: None,
    };
    assert_eq!(one(&*store, change), Err(Conflict::AgentRetired));
    // The name: refused, unless reused on purpose (the next version).
    let again = |reuse| Change::Register {
        agent: agent("acme", "bot"),
        by: "bob".into(),
        reuse,
        then_propose: None,
    };
    assert_eq!(one(&*store, again(false)), Err(Conflict::AgentRetired));
    assert!(matches!(
        one(&*store, again(true)),
        Ok(Applied::Versioned { version: 3, .. })
    ));
    let history = records.agent_history(&a.key()).unwrap();
    assert_eq!(
        history
            .iter()
            .map(|v| (v.change.as_str(), v.retired))
            .collect::<Vec<_>>(),
        [("register", false), ("retire", true), ("reuse", false)]
    );
    // A name in service is never registered over, reuse or not.
    assert_eq!(one(&*store, again(true)), Err(Conflict::AgentExists));
}

fn a_pending_change_applies_once_another_admin_approves_it_in_time(backend: Backend) {
    let place = Place::new(backend);
    let store = open(&place);
    let (a, _) = registered(&*store, &["read"]);
    let pending = PendingRecord {
        id: 0,
        agent_key: a.key(),
        based_on: 0,
        update: update(&["read", "write"]),
        by: "alice".into(),
        at: t0(),
        expires_at: t0() + Duration::hours(1),
        description: "scopes added: write".into(),
    };
    // An update that applies nothing at once, and what waits, stored in
    // the same transaction, based on the version it leaves.
    let propose = |expected| Change::UpdateAgent {
        key: a.key(),
        expected,
        update: Update::default(),
        by: "alice".into(),
        at: t0(),
        then_propose: Some(pending.clone()),
    };
    assert_eq!(
        one(&*store, propose(Some(3))),
        Err(Conflict::VersionConflict { current: 1 })
    );
    let records = Records::new(store.clone());
    assert!(
        records.pending_changes().unwrap().is_empty(),
        "nothing written"
    );
    let Ok(Applied::Versioned {
        version: 1,
        pending: Some(first),
        ..
    }) = one(&*store, propose(Some(1)))
    else {
        panic!("proposed");
    };
    assert_eq!(first.based_on, 1);
    let approve = |id, by: &str, secs| Change::Approve {
        id,
        by: by.into(),
        at: t0() + Duration::seconds(secs),
    };
    assert_eq!(
        one(&*store, approve(first.id, "alice", 1)),
        Err(Conflict::Review(super::review::ReviewRefusal::OwnChange))
    );
    assert_eq!(
        one(&*store, approve(first.id, "bob", 3600)),
        Err(Conflict::Review(super::review::ReviewRefusal::Expired))
    );
    assert!(matches!(
        one(&*store, approve(first.id, "bob", 1)),
        Ok(Applied::Versioned { version: 2, .. })
    ));
    let now = records.agent(&a.key()).unwrap().unwrap();
    assert_eq!(now.scopes, scoped(&["read", "write"]));
    assert_eq!(
        records.agent_history(&a.key()).unwrap()[1].by,
        "alice, approved by bob"
    );
    assert_eq!(
        one(&*store, approve(first.id, "bob", 1)),
        Err(Conflict::PendingNotFound)
    );
    // A change based on a version the registration left is refused, and
    // one rejected is gone.
    let Ok(Applied::Versioned {
        pending: Some(stale),
        ..
    }) = one(&*store, propose(None))
    else {
        panic!("proposed");
    };
    let demote = Change::UpdateAgent {
        key: a.key(),
        expected: None,
        update: update(&[]),
        by: "carol".into(),
        at: t0(),
        then_propose: None,
    };
    one(&*store, demote).unwrap();
    assert_eq!(
        one(&*store, approve(stale.id, "bob", 1)),
        Err(Conflict::VersionConflict { current: 3 })
    );
    assert!(matches!(
        one(&*store, Change::Reject { id: stale.id }),
        Ok(Applied::Proposed(_))
    ));
    assert!(records.pending_changes().unwrap().is_empty());
}

fn a_registration_from_before_versions_gets_its_first_version_when_it_changes(backend: Backend) {
    let place = Place::new(backend);
    let store = open(&place);
    // Registered as earlier versions did: no history.
    let mut a = agent("acme", "bot");
    a.scopes = scoped(&["read", "write"]);
    one(&*store, Change::RegisterAgent(a.clone())).unwrap();
    let records = Records::new(store.clone());
    assert!(records.agent_history(&a.key()).unwrap().is_empty());
    let change = Change::UpdateAgent {
        key: a.key(),
        expected: Some(1),
        update: update(&["read"]),
        by: "bob".into(),
        at: t0() + Duration::seconds(30),
        then_propose: None,
    };
    one(&*store, change).unwrap();
    let history = records.agent_history(&a.key()).unwrap();
    assert_eq!(
        history
            .iter()
            .map(|v| (v.version, v.by.as_str(), v.scopes.clone(), v.at))
            .collect::<Vec<_>>(),
        [
            (
                1,
                super::governance::NOT_RECORDED,
                scoped(&["read", "write"]),
                t0()
            ),
            (2, "bob", scoped(&["read"]), t0() + Duration::seconds(30)),
        ]
    );
}

fn scope_events_are_pruned_once_they_no_longer_matter_and_blocks_in_force_stay(backend: Backend) {
    let place = Place::new(backend);
    let store = open(&place);
    let (a, c) = registered(&*store, &["pay", "read"]);
    let at = t0() + Duration::seconds(1);
    let block = |scope: &str, target: Option<&str>| BlockRecord {
        id: 0,
        scope: scope.into(),
        target: target.map(Into::into),
        reason: None,
        by: "alice".into(),
        at,
        certificates: None,
        set_globally: false,
    };
    // A withdrawal (seq 1), a block of every agent (2), the agent's block
    // listing its certificate (3), one lifted (4, lifted by 5).
    let demote = Change::UpdateAgent {
        key: a.key(),
        expected: None,
        update: update(&["pay"]),
        by: "bob".into(),
        at,
        then_propose: None,
    };
    one(&*store, demote).unwrap();
    one(&*store, Change::BlockScope(block("audit", None))).unwrap();
    one(&*store, Change::BlockScope(block("pay", Some(&a.key())))).unwrap();
    let Ok(Applied::Scoped {
        block: Some(lifted),
        ..
    }) = one(&*store, Change::BlockScope(block("other", Some("acme"))))
    else {
        panic!("blocked");
    };
    let unblock = Change::UnblockScope {
        id: lifted.id,
        tenant: None,
        at: at + Duration::seconds(1),
    };
    one(&*store, unblock).unwrap();
    let records = Records::new(store.clone());
    let seqs = |records: &Records| -> Vec<u64> {
        records
            .scope_events_after(0, 100)
            .unwrap()
            .iter()
            .map(|e| e.seq)
            .collect()
    };
    assert_eq!(seqs(&records), [1, 2, 3, 4, 5]);
    // Before the certificate expired: only the lifted block's events go.
    let prune = |before| Change::Prune { before, limit: 100 };
    one(&*store, prune(at + Duration::seconds(2))).unwrap();
    assert_eq!(seqs(&records), [1, 2, 3]);
    // Once it expired: its withdrawal and the block listing it go; the
    // block of every agent stays while it stands.
    one(&*store, prune(c.not_after + Duration::seconds(1))).unwrap();
    assert_eq!(seqs(&records), [2]);
    assert_eq!(records.scope_blocks().unwrap().len(), 2, "the blocks stand");
}
