//! The store test suite, run against every backend.

use std::path::Path;
use std::sync::Arc;

use agentca::identity::InstanceId;
use agentca::wire::Serial;
use time::Duration;

use super::change::{Applied, Change, Conflict, RevokeSummary, RevokeTarget};
use super::issuance_limit::{self, IssuanceLimits};
use super::records::*;
use super::tests::{agent, cert, t0, token};
use super::Records;
use crate::store::testing::{on_every_backend, Place};
use crate::store::writer::commit;
use crate::store::{Backend, Location, Store, Table};

/// Registers `acme/prod/bot` with a token of `uses` under `hash`; returns
/// the agent's key.
fn bot_with_token(store: &dyn Store, hash: TokenHash, uses: u32) -> String {
    let a = agent("acme", "bot");
    let key = a.key();
    one(store, Change::RegisterAgent(a)).unwrap();
    one(
        store,
        Change::CreateToken {
            hash,
            token: token(&key, uses),
        },
    )
    .unwrap();
    key
}

fn one(store: &dyn Store, change: Change) -> Result<Applied, Conflict> {
    commit(store, &[change]).unwrap().pop().unwrap()
}

const DONE: Result<Applied, Conflict> = Ok(Applied::Done);

fn open(place: &Place) -> Arc<dyn Store> {
    super::open_store(place.location()).unwrap()
}

/// The embedded store of `backend` in `dir`.
fn open_dir(backend: Backend, dir: &Path) -> Arc<dyn Store> {
    super::open_store(&Location::Embedded {
        backend,
        dir: dir.to_owned(),
    })
    .unwrap()
}

on_every_backend!(
    an_agent_registers_once,
    agents_list_by_prefix_in_key_order,
    a_single_use_token_enrolls_once,
    a_pool_token_enrolls_up_to_its_uses,
    an_agent_is_issued_up_to_its_limit_in_one_batch,
    an_expired_token_enrolls_nothing,
    a_disabled_agent_gets_no_token_and_no_certificate,
    a_refused_change_in_a_batch_writes_nothing_and_the_others_commit,
    a_certificate_renews_once,
    a_revoked_certificate_does_not_renew,
    clone_alerts_are_kept_in_order,
    everything_is_there_after_reopening,
    concurrent_enrolls_through_the_writer_use_a_single_use_token_once,
    revoking_an_agent_revokes_its_live_certificates_voids_its_tokens_and_disables_it,
    revoking_is_idempotent_and_numbers_events_in_order,
    revoking_a_tenant_or_env_reaches_exactly_its_agents,
    revoking_a_serial_or_an_instance,
    pruning_removes_expired_certificates_tokens_and_their_events,
    an_expired_certificates_record_keeps_all_but_the_certificate_until_pruned,
    counters_only_grow_and_survive_reopening,
    a_second_open_waits_for_the_first_to_close_unless_the_store_is_shared,
    reads_see_the_last_write_of_every_key_in_order,
    an_event_cursor_moves_under_its_hold_and_keeps_what_it_has_not_acknowledged,
);

/// A receiver's cursor: taken at the trail's head, held by one replica,
/// moved forward only, kept across reopening; pruning stops short of it
/// (a receiver no replica sends to any more is forgotten: the unit tests
/// of `state::events::keeps`).
fn an_event_cursor_moves_under_its_hold_and_keeps_what_it_has_not_acknowledged(backend: Backend) {
    use super::events::CursorConflict;
    use agentca::wire::{Actor, AuditEvent};
    let dir = Place::new(backend);
    let store = open(&dir);
    let audit = |n: u64| {
        for _ in 0..n {
            let event = AuditEvent::new(t0(), Actor::System, "revoke", None);
            assert_eq!(one(&*store, Change::Audit(event)), DONE);
        }
    };
    let by = |replica: &str, expected: Option<u64>, to: Option<u64>| {
        Change::EventCursor(super::events::tests::by(replica, expected, to))
    };
    audit(3);
    assert_eq!(one(&*store, by("a", None, None)), Ok(Applied::Cursor(3)));
    assert!(matches!(
        one(&*store, by("b", None, None)),
        Err(Conflict::Cursor(CursorConflict::Held { .. }))
    ));
    audit(3);
    assert_eq!(
        one(&*store, by("a", Some(3), Some(4))),
        Ok(Applied::Cursor(4))
    );
    assert_eq!(
        one(&*store, by("a", Some(3), Some(5))),
        Err(Conflict::Cursor(CursorConflict::Moved {
            current: 4,
            expected: 3
        }))
    );
    let fifth = crate::audit::since(&*store, 4, 1).unwrap().remove(0);
    let prune = |at: time::OffsetDateTime| Change::PruneAudit {
        through: 5,
        hash: fifth.hash.clone(),
        at: Some(at),
    };
    assert_eq!(
        one(&*store, prune(t0())),
        Err(Conflict::AuditPrune(
            crate::audit::PruneRefusal::Undelivered {
                receiver: "siem".into(),
                delivered: 4
            }
        ))
    );
    drop(store);
    let store = open(&dir);
    assert_eq!(
        one(&*store, by("a", Some(4), Some(6))),
        Ok(Applied::Cursor(6))
    );
    assert_eq!(one(&*store, prune(t0())), Ok(Applied::AuditPruned(5)));
}

fn summary(outcome: Result<Applied, Conflict>) -> RevokeSummary {
    match outcome {
        Ok(Applied::Revoked(s)) => s,
        other => panic!("expected a revocation, got {other:?}"),
    }
}

fn agent_target(key: &str) -> RevokeTarget {
    RevokeTarget::Agents {
        prefix: key.into(),
        exact: true,
    }
}

/// Registers `tenant/prod/name`, gives it a 5-use token, and enrolls
/// `certs` certificates with serials from `first`.
fn populate(store: &dyn Store, tenant: &str, name: &str, first: u8, certs: u8) -> String {
    let a = agent(tenant, name);
    let key = a.key();
    one(store, Change::RegisterAgent(a)).unwrap();
    let hash = [first; 32];
    one(
        store,
        Change::CreateToken {
            hash,
            token: token(&key, 5),
        },
    )
    .unwrap();
    for i in 0..certs {
        one(
            store,
            Change::Enroll {
                token_hash: hash,
                at: t0(),
                cert: cert(&key, first + i),
                limits: Default::default(),
            },
        )
        .unwrap();
    }
    key
}

fn revoking_an_agent_revokes_its_live_certificates_voids_its_tokens_and_disables_it(
    backend: Backend,
) {
    let dir = Place::new(backend);
    let store = open(&dir);
    let key = populate(&*store, "acme", "bot", 10, 3);
    let other = populate(&*store, "acme", "other", 20, 1);
    // One certificate of the agent has already expired at revocation time.
    let mut expired = cert(&key, 15);
    expired.not_after = t0() - Duration::minutes(1);
    one(
        &*store,
        Change::Enroll {
            token_hash: [10; 32],
            at: t0(),
            cert: expired.clone(),
            limits: Default::default(),
        },
    )
    .unwrap();

    let at = t0() + Duration::seconds(10);
    let s = summary(one(
        &*store,
        Change::Revoke {
            target: agent_target(&key),
            reason: 1,
            at,
        },
    ));
    assert_eq!(s.events.len(), 3, "the live certificates only");
    assert_eq!(
        (s.agents_disabled, s.tokens_voided, s.agents_matched),
        (1, 1, 1)
    );
    let records = Records::new(store.clone());
    for e in &s.events {
        let c = records.cert(&e.serial).unwrap().unwrap();
        assert_eq!(
            c.revoked,
            Some(Revocation {
                at,
                reason: 1,
                seq: e.seq
            })
        );
        assert_eq!(e.agent_key, key);
    }
    assert_eq!(
        records.cert(&expired.serial).unwrap().unwrap().revoked,
        None
    );
    assert!(!records.agent(&key).unwrap().unwrap().enabled);
    assert!(records.token(&[10; 32]).unwrap().unwrap().voided);
    assert_eq!(records.revocation_events().unwrap(), s.events);
    // The other agent is untouched.
    assert!(records.agent(&other).unwrap().unwrap().enabled);
    assert!(!records.token(&[20; 32]).unwrap().unwrap().voided);
    assert_eq!(
        records
            .cert(&cert(&other, 20).serial)
            .unwrap()
            .unwrap()
            .revoked,
        None
    );
    // A voided token enrolls nothing, even once the agent is enabled again.
    one(
        &*store,
        Change::SetAgentEnabled {
            key: key.clone(),
            enabled: true,
            at,
        },
    )
    .unwrap();
    assert_eq!(
        one(
            &*store,
            Change::Enroll {
                token_hash: [10; 32],
                at,
                cert: cert(&key, 30),
                limits: Default::default()
            }
        ),
        Err(Conflict::TokenVoided)
    );
}

fn revoking_is_idempotent_and_numbers_events_in_order(backend: Backend) {
    let dir = Place::new(backend);
    let store = open(&dir);
    let a = populate(&*store, "acme", "a", 10, 2);
    let b = populate(&*store, "acme", "b", 20, 1);
    let first = summary(one(
        &*store,
        Change::Revoke {
            target: agent_target(&a),
            reason: 0,
            at: t0(),
        },
    ));
    let again = summary(one(
        &*store,
        Change::Revoke {
            target: agent_target(&a),
            reason: 0,
            at: t0(),
        },
    ));
    assert!(again.events.is_empty());
    assert_eq!(
        (
            again.agents_disabled,
            again.tokens_voided,
            again.agents_matched
        ),
        (0, 0, 1)
    );
    let second = summary(one(
        &*store,
        Change::Revoke {
            target: agent_target(&b),
            reason: 0,
            at: t0(),
        },
    ));
    let seqs: Vec<u64> = first
        .events
        .iter()
        .chain(&second.events)
        .map(|e| e.seq)
        .collect();
    assert_eq!(seqs, [1, 2, 3]);
}

fn revoking_a_tenant_or_env_reaches_exactly_its_agents(backend: Backend) {
    let dir = Place::new(backend);
    let store = open(&dir);
    populate(&*store, "acme", "a", 10, 1);
    populate(&*store, "acme", "b", 20, 1);
    let other = populate(&*store, "acme2", "c", 30, 1);
    let s = summary(one(
        &*store,
        Change::Revoke {
            target: RevokeTarget::Agents {
                prefix: "acme/".into(),
                exact: false,
            },
            reason: 0,
            at: t0(),
        },
    ));
    assert_eq!(
        (s.events.len(), s.agents_matched, s.agents_disabled),
        (2, 2, 2)
    );
    assert!(
        Records::new(store.clone())
            .agent(&other)
            .unwrap()
            .unwrap()
            .enabled
    );
    assert_eq!(
        one(
            &*store,
            Change::Revoke {
                target: RevokeTarget::Agents {
                    prefix: "acme/dev/".into(),
                    exact: false
                },
                reason: 0,
                at: t0()
            }
        ),
        Err(Conflict::AgentNotFound)
    );
    assert_eq!(
        one(
            &*store,
            Change::Revoke {
                target: agent_target("nobody/prod/x"),
                reason: 0,
                at: t0()
            }
        ),
        Err(Conflict::AgentNotFound)
    );
}

fn revoking_a_serial_or_an_instance(backend: Backend) {
    let dir = Place::new(backend);
    let store = open(&dir);
    let key = populate(&*store, "acme", "bot", 10, 2);
    let records = Records::new(store.clone());
    let c1 = cert(&key, 10);
    let s = summary(one(
        &*store,
        Change::Revoke {
            target: RevokeTarget::Serial(c1.serial.clone()),
            reason: 4,
            at: t0(),
        },
    ));
    assert_eq!(s.events.len(), 1);
    assert_eq!(
        s.agents_disabled, 0,
        "revoking one certificate leaves the agent enabled"
    );
    assert!(records.agent(&key).unwrap().unwrap().enabled);
    let c2 = records.cert(&cert(&key, 11).serial).unwrap().unwrap();
    assert_eq!(c2.revoked, None);
    let s = summary(one(
        &*store,
        Change::Revoke {
            target: RevokeTarget::Instance(c2.instance_id.clone()),
            reason: 1,
            at: t0(),
        },
    ));
    assert_eq!(s.events.len(), 1);
    assert_eq!(s.events[0].serial, c2.serial);
    assert_eq!(
        one(
            &*store,
            Change::Revoke {
                target: RevokeTarget::Serial(Serial::from_bytes(&[9, 9]).unwrap()),
                reason: 0,
                at: t0()
            }
        ),
        Err(Conflict::CertificateNotFound)
    );
    assert_eq!(
        one(
            &*store,
            Change::Revoke {
                target: RevokeTarget::Instance(InstanceId::random()),
                reason: 0,
                at: t0()
            }
        ),
        Err(Conflict::InstanceNotFound)
    );
}

fn an_expired_certificates_record_keeps_all_but_the_certificate_until_pruned(backend: Backend) {
    let dir = Place::new(backend);
    let store = open(&dir);
    // Three certificates ending at t0 + 5 min, one at t0 + 2 h.
    let key = populate(&*store, "acme", "bot", 10, 3);
    let records = Records::new(store.clone());
    let mut live = cert(&key, 40);
    live.not_after = t0() + Duration::hours(2);
    one(
        &*store,
        Change::Enroll {
            token_hash: [10; 32],
            at: t0(),
            cert: live.clone(),
            limits: Default::default(),
        },
    )
    .unwrap();
    let before = records.cert(&cert(&key, 10).serial).unwrap().unwrap();
    assert!(!before.der.is_empty());

    // Exactly at their notAfter they are not expired yet; a second later
    // they are, and each is compacted once.
    let expiry = t0() + Duration::minutes(5);
    let compact = |now, limit| one(&*store, Change::Compact { now, limit });
    assert_eq!(compact(expiry, 10), Ok(Applied::Compacted(0)));
    assert_eq!(
        compact(expiry + Duration::seconds(1), 2),
        Ok(Applied::Compacted(2))
    );
    assert_eq!(
        compact(expiry + Duration::seconds(1), 10),
        Ok(Applied::Compacted(1))
    );
    assert_eq!(
        compact(expiry + Duration::seconds(1), 10),
        Ok(Applied::Compacted(0))
    );
    let after = records.cert(&before.serial).unwrap().unwrap();
    assert_eq!(
        after,
        CertRecord {
            der: Vec::new(),
            ..before
        },
        "everything but the certificate is kept"
    );
    assert!(!records.cert(&live.serial).unwrap().unwrap().der.is_empty());

    // Pruned at the end of retention, from the compacted index.
    let pruned = one(
        &*store,
        Change::Prune {
            before: expiry + Duration::seconds(1),
            limit: 10,
        },
    );
    assert_eq!(
        pruned,
        Ok(Applied::Pruned {
            certs: 3,
            tokens: 0
        })
    );
    assert_eq!(
        records.certs_of(&key, 10).unwrap(),
        vec![records.cert(&live.serial).unwrap().unwrap()]
    );
    assert!(store
        .scan_prefix(Table::ExpiredCerts, &[], 10)
        .unwrap()
        .is_empty());
}

fn pruning_removes_expired_certificates_tokens_and_their_events(backend: Backend) {
    let dir = Place::new(backend);
    let store = open(&dir);
    let key = populate(&*store, "acme", "bot", 10, 3);
    let records = Records::new(store.clone());
    let live = {
        let mut c = cert(&key, 40);
        c.not_after = t0() + Duration::hours(2);
        one(
            &*store,
            Change::Enroll {
                token_hash: [10; 32],
                at: t0(),
                cert: c.clone(),
                limits: Default::default(),
            },
        )
        .unwrap();
        c
    };
    summary(one(
        &*store,
        Change::Revoke {
            target: RevokeTarget::Serial(cert(&key, 10).serial),
            reason: 0,
            at: t0(),
        },
    ));
    summary(one(
        &*store,
        Change::Revoke {
            target: RevokeTarget::Serial(live.serial.clone()),
            reason: 0,
            at: t0(),
        },
    ));
    assert_eq!(records.revocation_events().unwrap().len(), 2);

    // Certificates of the fixture end at t0 + 5 min, the token at t0 + 10 min.
    let before = t0() + Duration::minutes(6);
    let first = one(&*store, Change::Prune { before, limit: 2 });
    assert_eq!(
        first,
        Ok(Applied::Pruned {
            certs: 2,
            tokens: 0
        })
    );
    let second = one(&*store, Change::Prune { before, limit: 2 });
    assert_eq!(
        second,
        Ok(Applied::Pruned {
            certs: 1,
            tokens: 0
        })
    );
    let certs = records.certs_of(&key, 10).unwrap();
    assert_eq!(
        certs.iter().map(|c| c.serial.clone()).collect::<Vec<_>>(),
        vec![live.serial.clone()]
    );
    let events = records.revocation_events().unwrap();
    assert_eq!(
        events.len(),
        1,
        "the expired certificate's event went with it"
    );
    assert_eq!(events[0].serial, live.serial);
    assert_eq!(
        one(
            &*store,
            Change::Revoke {
                target: RevokeTarget::Instance(cert(&key, 11).instance_id),
                reason: 0,
                at: t0()
            }
        ),
        Err(Conflict::InstanceNotFound),
        "the instance index was pruned too"
    );
    let later = one(
        &*store,
        Change::Prune {
            before: t0() + Duration::minutes(11),
            limit: 100,
        },
    );
    assert_eq!(
        later,
        Ok(Applied::Pruned {
            certs: 0,
            tokens: 1
        })
    );
    assert_eq!(records.token(&[10; 32]).unwrap(), None);
}

fn counters_only_grow_and_survive_reopening(backend: Backend) {
    let dir = Place::new(backend);
    {
        let store = open(&dir);
        assert_eq!(
            one(&*store, Change::BumpCounter("crl_number".into())),
            Ok(Applied::Counter(1))
        );
        assert_eq!(
            one(&*store, Change::BumpCounter("crl_number".into())),
            Ok(Applied::Counter(2))
        );
    }
    let store = open(&dir);
    assert_eq!(
        Records::new(store.clone()).sequence("crl_number").unwrap(),
        2
    );
    assert_eq!(
        one(&*store, Change::BumpCounter("crl_number".into())),
        Ok(Applied::Counter(3))
    );
}

/// An embedded store is one process's: a second open fails until the first
/// closes. A PostgreSQL store is shared: a second replica opens it at once
/// and sees what the first committed.
fn a_second_open_waits_for_the_first_to_close_unless_the_store_is_shared(backend: Backend) {
    let dir = Place::new(backend);
    let first = open(&dir);
    one(&*first, Change::BumpCounter("c".into())).unwrap();
    let second = super::open_store(dir.location());
    if backend == Backend::Postgres {
        let second = second.unwrap();
        assert_eq!(Records::new(second.clone()).sequence("c").unwrap(), 1);
        one(&*second, Change::BumpCounter("c".into())).unwrap();
        assert_eq!(Records::new(first.clone()).sequence("c").unwrap(), 2);
    } else {
        assert!(second.is_err());
    }
    drop(first);
    // Straight after closing, as a restart in the same process would.
    let again = open(&dir);
    let expected = if backend == Backend::Postgres { 2 } else { 1 };
    assert_eq!(Records::new(again).sequence("c").unwrap(), expected);
}

fn an_agent_registers_once(backend: Backend) {
    let dir = Place::new(backend);
    let store = open(&dir);
    let a = agent("acme", "bot");
    assert_eq!(one(&*store, Change::RegisterAgent(a.clone())), DONE);
    let mut changed = a.clone();
    changed.owner = "someone-else".into();
    assert_eq!(
        one(&*store, Change::RegisterAgent(changed)),
        Err(Conflict::AgentExists)
    );
    let records = Records::new(store);
    assert_eq!(records.agent("acme/prod/bot").unwrap(), Some(a));
    assert_eq!(records.agent("acme/prod/other").unwrap(), None);
}

fn agents_list_by_prefix_in_key_order(backend: Backend) {
    let dir = Place::new(backend);
    let store = open(&dir);
    for (t, n) in [("acme2", "a"), ("acme", "z"), ("acme", "b"), ("other", "c")] {
        one(&*store, Change::RegisterAgent(agent(t, n))).unwrap();
    }
    let records = Records::new(store);
    let keys = |prefix: &str, limit| -> Vec<String> {
        records
            .agents(prefix, limit)
            .unwrap()
            .iter()
            .map(|a| a.key())
            .collect()
    };
    assert_eq!(keys("acme/", 10), ["acme/prod/b", "acme/prod/z"]);
    assert_eq!(keys("", 10).len(), 4);
    assert_eq!(keys("", 2), ["acme/prod/b", "acme/prod/z"]);
    assert!(keys("nobody/", 10).is_empty());

    // Pages: strictly after the cursor, within the prefix.
    let after = |prefix: &str, after: &str, limit| -> Vec<String> {
        records
            .agents_after(prefix, Some(after), limit)
            .unwrap()
            .iter()
            .map(|a| a.key())
            .collect()
    };
    assert_eq!(after("", "acme/prod/b", 2), ["acme/prod/z", "acme2/prod/a"]);
    assert_eq!(after("acme/", "acme/prod/b", 10), ["acme/prod/z"]);
    assert!(
        after("acme/", "acme/prod/z", 10).is_empty(),
        "not into acme2"
    );
    assert_eq!(
        after("other/", "acme/prod/b", 10),
        ["other/prod/c"],
        "a cursor before the prefix"
    );
    assert!(
        after("acme/", "other/prod/c", 10).is_empty(),
        "a cursor past the prefix"
    );
}

fn a_single_use_token_enrolls_once(backend: Backend) {
    let dir = Place::new(backend);
    let store = open(&dir);
    let a = agent("acme", "bot");
    one(&*store, Change::RegisterAgent(a.clone())).unwrap();
    let hash = [7u8; 32];
    one(
        &*store,
        Change::CreateToken {
            hash,
            token: token(&a.key(), 1),
        },
    )
    .unwrap();
    let first = cert(&a.key(), 1);
    let enroll = |c: CertRecord| Change::Enroll {
        token_hash: hash,
        at: t0(),
        cert: c,
        limits: Default::default(),
    };
    assert_eq!(one(&*store, enroll(first.clone())), DONE);
    assert_eq!(
        one(&*store, enroll(cert(&a.key(), 2))),
        Err(Conflict::TokenUsed)
    );
    assert_eq!(
        one(
            &*store,
            Change::Enroll {
                token_hash: [8; 32],
                at: t0(),
                cert: cert(&a.key(), 3),
                limits: Default::default()
            }
        ),
        Err(Conflict::TokenNotFound)
    );
    let records = Records::new(store);
    assert_eq!(records.token(&hash).unwrap().unwrap().used, 1);
    assert_eq!(records.cert(&first.serial).unwrap(), Some(first.clone()));
    assert_eq!(records.cert(&cert(&a.key(), 2).serial).unwrap(), None);
    assert_eq!(records.certs_of(&a.key(), 10).unwrap(), vec![first]);
    assert_eq!(
        records.agent(&a.key()).unwrap().unwrap().last_issued_at,
        Some(t0())
    );
}

fn a_pool_token_enrolls_up_to_its_uses(backend: Backend) {
    let dir = Place::new(backend);
    let store = open(&dir);
    let a = agent("acme", "pool");
    one(&*store, Change::RegisterAgent(a.clone())).unwrap();
    let hash = [1u8; 32];
    one(
        &*store,
        Change::CreateToken {
            hash,
            token: token(&a.key(), 3),
        },
    )
    .unwrap();
    let changes: Vec<Change> = (1..=5)
        .map(|i| Change::Enroll {
            token_hash: hash,
            at: t0(),
            cert: cert(&a.key(), i),
            limits: Default::default(),
        })
        .collect();
    let outcomes = commit(&*store, &changes).unwrap();
    assert_eq!(
        outcomes,
        vec![
            DONE,
            DONE,
            DONE,
            Err(Conflict::TokenUsed),
            Err(Conflict::TokenUsed)
        ]
    );
    assert_eq!(Records::new(store).certs_of(&a.key(), 10).unwrap().len(), 3);
}

fn an_agent_is_issued_up_to_its_limit_in_one_batch(backend: Backend) {
    let dir = Place::new(backend);
    let store = open(&dir);
    let a = agent("acme", "pool");
    one(&*store, Change::RegisterAgent(a.clone())).unwrap();
    let hash = [1u8; 32];
    one(
        &*store,
        Change::CreateToken {
            hash,
            token: token(&a.key(), 10),
        },
    )
    .unwrap();
    let limits = IssuanceLimits {
        per_agent: 3,
        renewals_per_instance: 1,
    };
    // Five enrollments in one batch: each sees the count of the ones
    // before it, so that concurrent requests cannot pass the limit.
    let changes: Vec<Change> = (1..=5)
        .map(|i| Change::Enroll {
            token_hash: hash,
            at: t0(),
            cert: cert(&a.key(), i),
            limits,
        })
        .collect();
    let outcomes = commit(&*store, &changes).unwrap();
    let limit = issuance_limit::LimitReached {
        count: 3,
        start: t0(),
        retry_at: t0() + Duration::seconds(a.ttl_secs as i64),
    };
    assert_eq!(
        outcomes,
        vec![
            DONE,
            DONE,
            DONE,
            Err(Conflict::LimitReached(limit)),
            Err(Conflict::LimitReached(limit))
        ]
    );
    let records = Records::new(store.clone());
    assert_eq!(records.certs_of(&a.key(), 10).unwrap().len(), 3);
    assert_eq!(
        records.token(&hash).unwrap().unwrap().used,
        3,
        "refusals spend no use"
    );

    // One renewal along a chain, then the chain's limit.
    let first = cert(&a.key(), 1);
    let renew = |from: &CertRecord, serial: u8| Change::Renew {
        from: from.serial.clone(),
        at: t0(),
        cert: CertRecord {
            instance_id: from.instance_id.clone(),
            ..cert(&a.key(), serial)
        },
        limits: IssuanceLimits {
            per_agent: 10,
            renewals_per_instance: 1,
        },
    };
    assert_eq!(one(&*store, renew(&first, 11)), DONE);
    let second = records.cert(&cert(&a.key(), 11).serial).unwrap().unwrap();
    assert_eq!(second.renewals.count, 1);
    assert!(matches!(
        one(&*store, renew(&second, 12)),
        Err(Conflict::LimitReached(_))
    ));
}

fn an_expired_token_enrolls_nothing(backend: Backend) {
    let dir = Place::new(backend);
    let store = open(&dir);
    let a = agent("acme", "bot");
    one(&*store, Change::RegisterAgent(a.clone())).unwrap();
    let hash = [2u8; 32];
    let tok = token(&a.key(), 1);
    let expiry = tok.expires_at;
    one(&*store, Change::CreateToken { hash, token: tok }).unwrap();
    assert_eq!(
        one(
            &*store,
            Change::Enroll {
                token_hash: hash,
                at: expiry,
                cert: cert(&a.key(), 1),
                limits: Default::default()
            }
        ),
        Err(Conflict::TokenExpired)
    );
    assert_eq!(Records::new(store).token(&hash).unwrap().unwrap().used, 0);
}

fn a_disabled_agent_gets_no_token_and_no_certificate(backend: Backend) {
    let dir = Place::new(backend);
    let store = open(&dir);
    let a = agent("acme", "bot");
    let key = a.key();
    one(&*store, Change::RegisterAgent(a)).unwrap();
    let hash = [3u8; 32];
    one(
        &*store,
        Change::CreateToken {
            hash,
            token: token(&key, 1),
        },
    )
    .unwrap();
    let later = t0() + Duration::seconds(5);
    one(
        &*store,
        Change::SetAgentEnabled {
            key: key.clone(),
            enabled: false,
            at: later,
        },
    )
    .unwrap();
    assert_eq!(
        one(
            &*store,
            Change::CreateToken {
                hash: [4; 32],
                token: token(&key, 1)
            }
        ),
        Err(Conflict::AgentDisabled)
    );
    assert_eq!(
        one(
            &*store,
            Change::Enroll {
                token_hash: hash,
                at: t0(),
                cert: cert(&key, 1),
                limits: Default::default()
            }
        ),
        Err(Conflict::AgentDisabled)
    );
    assert_eq!(
        one(
            &*store,
            Change::SetAgentEnabled {
                key: "acme/prod/nobody".into(),
                enabled: true,
                at: later
            }
        ),
        Err(Conflict::AgentNotFound)
    );
    let records = Records::new(store.clone());
    let stored = records.agent(&key).unwrap().unwrap();
    assert!(!stored.enabled);
    assert_eq!(stored.updated_at, later);
    assert_eq!(records.token(&[4; 32]).unwrap(), None);
    assert_eq!(records.token(&hash).unwrap().unwrap().used, 0);
    one(
        &*store,
        Change::SetAgentEnabled {
            key: key.clone(),
            enabled: true,
            at: later,
        },
    )
    .unwrap();
    assert_eq!(
        one(
            &*store,
            Change::Enroll {
                token_hash: hash,
                at: t0(),
                cert: cert(&key, 1),
                limits: Default::default()
            }
        ),
        DONE
    );
}

fn a_refused_change_in_a_batch_writes_nothing_and_the_others_commit(backend: Backend) {
    let dir = Place::new(backend);
    let store = open(&dir);
    let a = agent("acme", "bot");
    let key = a.key();
    let outcomes = commit(
        &*store,
        &[
            Change::RegisterAgent(a.clone()),
            Change::Enroll {
                token_hash: [9; 32],
                at: t0(),
                cert: cert(&key, 1),
                limits: Default::default(),
            },
            Change::RegisterAgent(agent("acme", "second")),
        ],
    )
    .unwrap();
    assert_eq!(outcomes, vec![DONE, Err(Conflict::TokenNotFound), DONE]);
    let records = Records::new(store);
    assert!(records.agent("acme/prod/second").unwrap().is_some());
    assert_eq!(records.cert(&cert(&key, 1).serial).unwrap(), None);
    assert!(records.certs_of(&key, 10).unwrap().is_empty());
    assert_eq!(records.agent(&key).unwrap().unwrap().last_issued_at, None);
}

fn enrolled(store: &dyn Store) -> (AgentRecord, CertRecord) {
    let a = agent("acme", "bot");
    one(store, Change::RegisterAgent(a.clone())).unwrap();
    one(
        store,
        Change::CreateToken {
            hash: [5; 32],
            token: token(&a.key(), 1),
        },
    )
    .unwrap();
    let c = cert(&a.key(), 1);
    one(
        store,
        Change::Enroll {
            token_hash: [5; 32],
            at: t0(),
            cert: c.clone(),
            limits: Default::default(),
        },
    )
    .unwrap();
    (a, c)
}

fn a_certificate_renews_once(backend: Backend) {
    let dir = Place::new(backend);
    let store = open(&dir);
    let (a, first) = enrolled(&*store);
    let mut second = cert(&a.key(), 2);
    second.origin = Origin::Renew {
        from: first.serial.clone(),
    };
    let at = t0() + Duration::minutes(3);
    let renew = |c: CertRecord| Change::Renew {
        from: first.serial.clone(),
        at,
        cert: c,
        limits: Default::default(),
    };
    assert_eq!(one(&*store, renew(second.clone())), DONE);
    let expected = Renewal {
        serial: second.serial.clone(),
        key_sha256: "key2".into(),
        at,
    };
    assert_eq!(
        one(&*store, renew(cert(&a.key(), 3))),
        Err(Conflict::AlreadyRenewed(expected.clone()))
    );
    assert_eq!(
        one(
            &*store,
            Change::Renew {
                from: Serial::from_bytes(&[1]).unwrap(),
                at,
                cert: cert(&a.key(), 4),
                limits: Default::default()
            }
        ),
        Err(Conflict::CertificateNotFound)
    );
    let records = Records::new(store);
    assert_eq!(
        records.cert(&first.serial).unwrap().unwrap().renewed_by,
        Some(expected)
    );
    // Stored as given, with the first renewal of its chain counted.
    let stored = records.cert(&second.serial).unwrap().unwrap();
    assert_eq!(
        stored.renewals,
        issuance_limit::Window {
            start: at.unix_timestamp(),
            count: 1
        }
    );
    assert_eq!(
        CertRecord {
            renewals: Default::default(),
            ..stored
        },
        second
    );
    assert_eq!(records.certs_of(&a.key(), 10).unwrap().len(), 2);
}

fn a_revoked_certificate_does_not_renew(backend: Backend) {
    let dir = Place::new(backend);
    let store = open(&dir);
    let (a, first) = enrolled(&*store);
    summary(one(
        &*store,
        Change::Revoke {
            target: RevokeTarget::Serial(first.serial.clone()),
            reason: 1,
            at: t0(),
        },
    ));
    assert_eq!(
        one(
            &*store,
            Change::Renew {
                from: first.serial.clone(),
                at: t0(),
                cert: cert(&a.key(), 2),
                limits: Default::default()
            }
        ),
        Err(Conflict::CertificateRevoked)
    );
    assert_eq!(
        Records::new(store).cert(&cert(&a.key(), 2).serial).unwrap(),
        None
    );
}

fn clone_alerts_are_kept_in_order(backend: Backend) {
    let dir = Place::new(backend);
    let store = open(&dir);
    let (a, first) = enrolled(&*store);
    for i in 0..3 {
        let alert = CloneAlertRecord {
            at: t0() + Duration::seconds(i),
            serial: first.serial.clone(),
            instance_id: first.instance_id.clone(),
            agent_key: a.key(),
            requested_key_sha256: format!("k{i}"),
            remote_addr: Some("127.0.0.1:5000".into()),
        };
        one(&*store, Change::RecordCloneAlert(alert)).unwrap();
    }
    let records = Records::new(store.clone());
    let keys = |limit| -> Vec<String> {
        records
            .alerts_of(&a.key(), limit)
            .unwrap()
            .iter()
            .map(|a| a.requested_key_sha256.clone())
            .collect()
    };
    assert_eq!(keys(10), ["k2", "k1", "k0"], "newest first");
    assert_eq!(keys(2), ["k2", "k1"]);
    // Pruning takes the ones older than the cut-off.
    one(
        &*store,
        Change::Prune {
            before: t0() + Duration::seconds(1),
            limit: 100,
        },
    )
    .unwrap();
    assert_eq!(keys(10), ["k2", "k1"]);
}

fn everything_is_there_after_reopening(backend: Backend) {
    let dir = Place::new(backend);
    let (a, c) = {
        let store = open(&dir);
        let out = enrolled(&*store);
        let admin = AdminRecord {
            name: "admin".into(),
            tenant: None,
            created_at: t0(),
            role: Default::default(),
            version: 1,
        };
        one(
            &*store,
            Change::PutAdmin {
                hash: [6; 32],
                admin,
                by: String::new(),
            },
        )
        .unwrap();
        out
    };
    let records = Records::new(open(&dir));
    assert_eq!(
        records.agent(&a.key()).unwrap().unwrap().last_issued_at,
        Some(t0())
    );
    assert_eq!(records.token(&[5; 32]).unwrap().unwrap().used, 1);
    assert_eq!(records.cert(&c.serial).unwrap(), Some(c));
    assert_eq!(records.admin(&[6; 32]).unwrap().unwrap().name, "admin");
}

fn concurrent_enrolls_through_the_writer_use_a_single_use_token_once(backend: Backend) {
    let dir = Place::new(backend);
    let store = open(&dir);
    let key = bot_with_token(&*store, [5; 32], 1);
    let writer = super::Ledger::start(store.clone(), None, Default::default()).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    let outcomes: Vec<_> = rt.block_on(async {
        let tasks: Vec<_> = (0..64u8)
            .map(|i| {
                let writer = writer.clone();
                let c = cert(&key, i);
                tokio::spawn(async move {
                    writer
                        .apply(Change::Enroll {
                            token_hash: [5; 32],
                            at: t0(),
                            cert: c,
                            limits: Default::default(),
                        })
                        .await
                })
            })
            .collect();
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.unwrap().unwrap());
        }
        out
    });
    assert_eq!(outcomes.iter().filter(|o| o.is_ok()).count(), 1);
    assert!(outcomes
        .iter()
        .all(|o| matches!(o, Ok(Applied::Done) | Err(Conflict::TokenUsed))));
    assert_eq!(Records::new(store).certs_of(&key, 100).unwrap().len(), 1);
}

fn reads_see_the_last_write_of_every_key_in_order(backend: Backend) {
    use super::Table;
    let dir = Place::new(backend);
    let store = open(&dir);
    let t = Table::Alerts;
    let pairs = |entries: Vec<crate::store::Entry>| -> Vec<(String, String)> {
        entries
            .into_iter()
            .map(|(k, v)| (String::from_utf8(k).unwrap(), String::from_utf8(v).unwrap()))
            .collect()
    };
    let expect = |p: &[(&str, &str)]| -> Vec<(String, String)> {
        p.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    // Writes over earlier writes.
    store
        .write(&mut |txn| {
            for k in ["k/a", "k/b", "k/c", "k/d"] {
                txn.put(t, k.as_bytes(), b"1")?;
            }
            Ok(())
        })
        .unwrap();
    store
        .write(&mut |txn| {
            txn.put(t, b"k/b", b"2")?;
            txn.delete(t, b"k/c")?;
            txn.put(t, b"k/e", b"2")?;
            // A transaction reads its own writes.
            assert_eq!(txn.get(t, b"k/b")?, Some(b"2".to_vec()));
            assert_eq!(txn.get(t, b"k/c")?, None);
            let seen: Vec<Vec<u8>> = txn
                .scan_prefix(t, b"k/", 10)?
                .into_iter()
                .map(|(k, _)| k)
                .collect();
            assert_eq!(
                seen,
                vec![
                    b"k/a".to_vec(),
                    b"k/b".to_vec(),
                    b"k/d".to_vec(),
                    b"k/e".to_vec()
                ]
            );
            Ok(())
        })
        .unwrap();
    // A failed transaction leaves nothing behind.
    let failed = store.write(&mut |txn| {
        txn.put(t, b"k/f", b"3")?;
        txn.delete(t, b"k/a")?;
        Err(super::StoreError::WriterStopped)
    });
    assert!(failed.is_err());
    let check = |store: &dyn Store| {
        assert_eq!(store.get(t, b"k/a").unwrap(), Some(b"1".to_vec()));
        assert_eq!(store.get(t, b"k/b").unwrap(), Some(b"2".to_vec()));
        assert_eq!(store.get(t, b"k/c").unwrap(), None);
        assert_eq!(store.get(t, b"k/f").unwrap(), None);
        assert_eq!(
            pairs(store.scan_prefix(t, b"k/", 10).unwrap()),
            expect(&[("k/a", "1"), ("k/b", "2"), ("k/d", "1"), ("k/e", "2")])
        );
        assert_eq!(
            pairs(store.scan_prefix(t, b"k/", 2).unwrap()),
            expect(&[("k/a", "1"), ("k/b", "2")])
        );
        assert_eq!(
            pairs(store.scan_from(t, b"k/c", 10).unwrap()),
            expect(&[("k/d", "1"), ("k/e", "2")])
        );
    };
    check(&*store);
    drop(store);
    check(&*open(&dir));
}

/// Checkpoints run in the background, alternating the log's two segments:
/// whatever a crash leaves, after any number of them, replays to the
/// acknowledged state.
#[test]
fn redb_background_checkpoints_alternate_segments_and_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (redb, _) = crate::store::redb::RedbStore::open(
        &dir.path().join("store.redb"),
        &dir.path().join("store.wal"),
    )
    .unwrap();
    let redb = Arc::new(redb);
    let store: Arc<dyn Store> = redb.clone();
    let key = bot_with_token(&*store, [6; 32], 100);
    // Every batch begins a checkpoint unless one is in progress.
    redb.set_checkpoint_interval(std::time::Duration::ZERO);
    let enroll = |i: u8| {
        one(
            &*store,
            Change::Enroll {
                token_hash: [6; 32],
                at: t0(),
                cert: cert(&key, i),
                limits: Default::default(),
            },
        )
        .unwrap();
    };
    for i in 0..30 {
        enroll(i);
        if i % 3 == 0 {
            redb.wait_for_checkpoint().unwrap();
        }
    }
    redb.wait_for_checkpoint().unwrap();
    for segment in ["store.wal", "store.wal.1"] {
        let bytes = std::fs::read(dir.path().join(segment)).unwrap();
        assert!(
            bytes[8..12] != [0; 4],
            "{segment} has held batches (its first record's length)"
        );
    }
    // The next batches stay in the log.
    redb.set_checkpoint_interval(std::time::Duration::from_secs(3600));
    for i in 30..35 {
        enroll(i);
    }
    let crashed = crash_copy(dir.path());
    assert!(
        pending_batches(crashed.path()) >= 5,
        "the last batches are in the log only"
    );
    let records = Records::new(open_dir(Backend::Redb, crashed.path()));
    assert_eq!(records.certs_of(&key, 100).unwrap().len(), 35);
    assert_eq!(records.token(&[6; 32]).unwrap().unwrap().used, 35);
    // Reads of the running store saw every batch all along.
    assert_eq!(Records::new(store).certs_of(&key, 100).unwrap().len(), 35);
}

/// Segments keep the bytes of batches redb already holds. A store opened
/// again writes after them only once a checkpoint has started the log over
/// (else its next batch could not be read back after a crash), and one
/// opened with batches to replay writes nothing before they are replayed.
#[test]
fn redb_a_reopened_store_logs_where_its_batches_can_be_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let paths = |d: &Path| (d.join("store.redb"), d.join("store.wal"));
    let (db, wal) = paths(dir.path());
    {
        let (redb, _) = crate::store::redb::RedbStore::open(&db, &wal).unwrap();
        redb.set_checkpoint_interval(std::time::Duration::ZERO);
        for name in ["a", "b", "c", "d", "e"] {
            commit(&redb, &[Change::RegisterAgent(agent("acme", name))]).unwrap();
            redb.wait_for_checkpoint().unwrap();
        }
    }
    let (redb, pending) = crate::store::redb::RedbStore::open(&db, &wal).unwrap();
    assert!(pending.is_empty());
    redb.set_checkpoint_interval(std::time::Duration::from_secs(3600));
    commit(&redb, &[Change::RegisterAgent(agent("acme", "f"))]).unwrap();
    let crashed = crash_copy(dir.path());
    drop(redb);
    {
        let (db, wal) = paths(crashed.path());
        let (copy, pending) = crate::store::redb::RedbStore::open(&db, &wal).unwrap();
        assert_eq!(
            pending.len(),
            1,
            "the batch after the reopening is read back"
        );
        let refused = commit(&copy, &[Change::RegisterAgent(agent("acme", "g"))]);
        assert!(
            refused.unwrap_err().to_string().contains("not replayed"),
            "nothing is written before the log is replayed"
        );
    }
    let records = Records::new(open_dir(Backend::Redb, crashed.path()));
    assert!(records.agent("acme/prod/f").unwrap().is_some());
    assert!(records.agent("acme/prod/g").unwrap().is_none());
    assert_eq!(records.agents("", 100).unwrap().len(), 6);
}

/// The redb store's files in `dir`, copied as a crash would leave them.
fn crash_copy(dir: &Path) -> tempfile::TempDir {
    let crashed = tempfile::tempdir().unwrap();
    for file in ["store.redb", "store.wal", "store.wal.1"] {
        std::fs::copy(dir.join(file), crashed.path().join(file)).unwrap();
    }
    crashed
}

/// How many logged batches the redb store in `dir` has to replay (it is
/// opened without replaying them, which leaves them in the log).
fn pending_batches(dir: &Path) -> usize {
    crate::store::redb::RedbStore::open(&dir.join("store.redb"), &dir.join("store.wal"))
        .unwrap()
        .1
        .len()
}

/// Logs written before the log held writes hold each batch's changes as
/// JSON: they replay by applying the changes again.
#[test]
fn redb_replays_a_log_of_changes_from_an_earlier_version() {
    let dir = tempfile::tempdir().unwrap();
    drop(crate::store::redb::RedbStore::open(
        &dir.path().join("store.redb"),
        &dir.path().join("store.wal"),
    ));
    let a = agent("acme", "bot");
    let key = a.key();
    {
        let (mut wal, records) =
            crate::store::wal::Wal::open(&dir.path().join("store.wal")).unwrap();
        assert!(records.is_empty());
        let batch = |changes: Vec<Change>| serde_json::to_vec(&changes).unwrap();
        wal.append(1, &batch(vec![Change::RegisterAgent(a)]))
            .unwrap();
        wal.append(
            2,
            &batch(vec![Change::CreateToken {
                hash: [7; 32],
                token: token(&key, 2),
            }]),
        )
        .unwrap();
    }
    let records = Records::new(open_dir(Backend::Redb, dir.path()));
    assert!(records.agent(&key).unwrap().is_some());
    assert_eq!(records.token(&[7; 32]).unwrap().unwrap().max_uses, 2);
}

/// What is on disk while the CA runs is what a crash leaves: copy it, open
/// the copy, and every acknowledged batch must be there exactly once.
#[test]
fn redb_a_crash_loses_no_logged_batch_and_replays_none_twice() {
    let dir = tempfile::tempdir().unwrap();
    let (redb, pending) = crate::store::redb::RedbStore::open(
        &dir.path().join("store.redb"),
        &dir.path().join("store.wal"),
    )
    .unwrap();
    assert!(pending.is_empty());
    redb.set_checkpoint_interval(std::time::Duration::from_secs(3600));
    let store: Arc<dyn Store> = Arc::new(redb);
    let key = bot_with_token(&*store, [5; 32], 10);
    for i in 0..3u8 {
        one(
            &*store,
            Change::Enroll {
                token_hash: [5; 32],
                at: t0(),
                cert: cert(&key, i),
                limits: Default::default(),
            },
        )
        .unwrap();
    }
    summary(one(
        &*store,
        Change::Revoke {
            target: RevokeTarget::Serial(cert(&key, 0).serial),
            reason: 1,
            at: t0(),
        },
    ));

    let crashed = crash_copy(dir.path());
    assert_eq!(
        pending_batches(crashed.path()),
        6,
        "every batch is in the log, none in redb's durable state"
    );
    let records = Records::new(open_dir(Backend::Redb, crashed.path()));
    assert_eq!(
        records.token(&[5; 32]).unwrap().unwrap().used,
        3,
        "each enrollment counted once"
    );
    assert_eq!(records.certs_of(&key, 10).unwrap().len(), 3);
    assert_eq!(records.revocation_events().unwrap().len(), 1);
    assert!(records
        .cert(&cert(&key, 0).serial)
        .unwrap()
        .unwrap()
        .revoked
        .is_some());

    // The original, closed normally, reopens with the same state.
    drop(store);
    let records = Records::new(open_dir(Backend::Redb, dir.path()));
    assert_eq!(records.token(&[5; 32]).unwrap().unwrap().used, 3);
    assert_eq!(records.revocation_events().unwrap().len(), 1);
}

#[test]
fn redb_checkpoints_empty_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let paths = |d: &Path| (d.join("store.redb"), d.join("store.wal"));
    let (db, wal) = paths(dir.path());
    let (store, pending) = crate::store::redb::RedbStore::open(&db, &wal).unwrap();
    assert!(pending.is_empty());
    store.set_checkpoint_interval(std::time::Duration::from_secs(3600));
    commit(&store, &[Change::RegisterAgent(agent("acme", "bot"))]).unwrap();
    // The files as a crash would leave them (closing the database would
    // make redb durable by itself and hide what the checkpoint does).
    let snapshot = |name: &str| {
        let copy = dir.path().join(name);
        std::fs::create_dir(&copy).unwrap();
        let (db2, wal2) = paths(&copy);
        std::fs::copy(&db, &db2).unwrap();
        std::fs::copy(&wal, &wal2).unwrap();
        std::fs::copy(
            crate::store::redb::second_segment(&wal),
            crate::store::redb::second_segment(&wal2),
        )
        .unwrap();
        crate::store::redb::RedbStore::open(&db2, &wal2).unwrap()
    };
    let (_, before) = snapshot("before");
    assert_eq!(
        before.len(),
        1,
        "the batch is in the log until a checkpoint"
    );
    store.checkpoint().unwrap();
    let (after, pending) = snapshot("after");
    assert!(pending.is_empty(), "a checkpointed batch is not replayed");
    assert!(Records::new(std::sync::Arc::new(after))
        .agent("acme/prod/bot")
        .unwrap()
        .is_some());
}

#[test]
fn redb_refuses_a_log_that_does_not_follow_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let paths = |d: &Path| (d.join("store.redb"), d.join("store.wal"));
    let (db, wal) = paths(dir.path());
    let (store, _) = crate::store::redb::RedbStore::open(&db, &wal).unwrap();
    store.set_checkpoint_interval(std::time::Duration::from_secs(3600));
    commit(&store, &[Change::RegisterAgent(agent("acme", "a"))]).unwrap();
    store.checkpoint().unwrap();
    let backup = tempfile::tempdir().unwrap();
    std::fs::copy(&db, backup.path().join("store.redb")).unwrap();
    commit(&store, &[Change::RegisterAgent(agent("acme", "b"))]).unwrap();
    store.checkpoint().unwrap();
    commit(&store, &[Change::RegisterAgent(agent("acme", "c"))]).unwrap();
    std::fs::copy(&wal, backup.path().join("store.wal")).unwrap();
    drop(store);
    // An older store with a newer log: batch 2 is in neither.
    let (db, wal) = paths(backup.path());
    let err = crate::store::redb::RedbStore::open(&db, &wal)
        .err()
        .expect("refused");
    assert!(err.to_string().contains("resumes at 3"), "{err}");
}
