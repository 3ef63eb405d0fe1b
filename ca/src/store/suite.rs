//! The store test suite, run against every backend.

use std::path::Path;
use std::sync::Arc;

use agentca::identity::InstanceId;
use agentca::wire::Serial;
use time::{Duration, OffsetDateTime};

use super::change::{commit, Change, Conflict};
use super::records::*;
use super::{Backend, Store, Writer};

fn t0() -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap()
}

fn agent(tenant: &str, name: &str) -> AgentRecord {
    AgentRecord {
        tenant: tenant.into(),
        env: "prod".into(),
        agent: name.into(),
        owner: "team-a".into(),
        purpose: "tests".into(),
        ttl_secs: 300,
        enabled: true,
        created_at: t0(),
        updated_at: t0(),
        last_issued_at: None,
    }
}

fn token(agent_key: &str, uses: u32) -> TokenRecord {
    TokenRecord {
        token_id: "t1".into(),
        agent_key: agent_key.into(),
        created_at: t0(),
        expires_at: t0() + Duration::minutes(10),
        max_uses: uses,
        used: 0,
        voided: false,
    }
}

fn cert(agent_key: &str, serial: u8) -> CertRecord {
    CertRecord {
        serial: Serial::from_bytes(&[0x40, serial]).unwrap(),
        agent_key: agent_key.into(),
        instance_id: InstanceId::random(),
        not_before: t0(),
        not_after: t0() + Duration::minutes(5),
        issued_at: t0(),
        key_sha256: format!("key{serial}"),
        der: vec![0x30, serial],
        origin: Origin::Enroll {
            token_id: "t1".into(),
        },
        renewed_by: None,
        revoked: None,
    }
}

fn one(store: &dyn Store, change: Change) -> Result<(), Conflict> {
    commit(store, &[change]).unwrap().pop().unwrap()
}

fn open(backend: Backend, dir: &Path) -> Arc<dyn Store> {
    super::open(backend, dir).unwrap()
}

macro_rules! suite {
    ($($name:ident),* $(,)?) => {
        mod redb {
            $( #[test] fn $name() { super::$name(super::Backend::Redb) } )*
        }
        mod sled {
            $( #[test] fn $name() { super::$name(super::Backend::Sled) } )*
        }
    };
}

suite!(
    an_agent_registers_once,
    agents_list_by_prefix_in_key_order,
    a_single_use_token_enrolls_once,
    a_pool_token_enrolls_up_to_its_uses,
    an_expired_token_enrolls_nothing,
    a_disabled_agent_gets_no_token_and_no_certificate,
    a_refused_change_in_a_batch_writes_nothing_and_the_others_commit,
    a_certificate_renews_once,
    a_revoked_certificate_does_not_renew,
    clone_alerts_are_kept_in_order,
    everything_is_there_after_reopening,
    concurrent_enrolls_through_the_writer_use_a_single_use_token_once,
);

fn an_agent_registers_once(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let store = open(backend, dir.path());
    let a = agent("acme", "bot");
    assert_eq!(one(&*store, Change::RegisterAgent(a.clone())), Ok(()));
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
    let dir = tempfile::tempdir().unwrap();
    let store = open(backend, dir.path());
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
}

fn a_single_use_token_enrolls_once(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let store = open(backend, dir.path());
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
    };
    assert_eq!(one(&*store, enroll(first.clone())), Ok(()));
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
                cert: cert(&a.key(), 3)
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
    let dir = tempfile::tempdir().unwrap();
    let store = open(backend, dir.path());
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
        })
        .collect();
    let outcomes = commit(&*store, &changes).unwrap();
    assert_eq!(
        outcomes,
        vec![
            Ok(()),
            Ok(()),
            Ok(()),
            Err(Conflict::TokenUsed),
            Err(Conflict::TokenUsed)
        ]
    );
    assert_eq!(Records::new(store).certs_of(&a.key(), 10).unwrap().len(), 3);
}

fn an_expired_token_enrolls_nothing(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let store = open(backend, dir.path());
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
                cert: cert(&a.key(), 1)
            }
        ),
        Err(Conflict::TokenExpired)
    );
    assert_eq!(Records::new(store).token(&hash).unwrap().unwrap().used, 0);
}

fn a_disabled_agent_gets_no_token_and_no_certificate(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let store = open(backend, dir.path());
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
                cert: cert(&key, 1)
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
                cert: cert(&key, 1)
            }
        ),
        Ok(())
    );
}

fn a_refused_change_in_a_batch_writes_nothing_and_the_others_commit(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let store = open(backend, dir.path());
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
            },
            Change::RegisterAgent(agent("acme", "second")),
        ],
    )
    .unwrap();
    assert_eq!(outcomes, vec![Ok(()), Err(Conflict::TokenNotFound), Ok(())]);
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
        },
    )
    .unwrap();
    (a, c)
}

fn a_certificate_renews_once(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let store = open(backend, dir.path());
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
    };
    assert_eq!(one(&*store, renew(second.clone())), Ok(()));
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
                cert: cert(&a.key(), 4)
            }
        ),
        Err(Conflict::CertificateNotFound)
    );
    let records = Records::new(store);
    assert_eq!(
        records.cert(&first.serial).unwrap().unwrap().renewed_by,
        Some(expected)
    );
    assert_eq!(records.cert(&second.serial).unwrap(), Some(second));
    assert_eq!(records.certs_of(&a.key(), 10).unwrap().len(), 2);
}

fn a_revoked_certificate_does_not_renew(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let store = open(backend, dir.path());
    let (a, first) = enrolled(&*store);
    // Revocation arrives as its own change later; write the record directly.
    let mut revoked = first.clone();
    revoked.revoked = Some(Revocation {
        at: t0(),
        reason: 1,
    });
    store
        .write(&mut |txn| {
            txn.put(
                super::Table::Certs,
                first.serial.as_bytes(),
                &encode(&revoked),
            )
        })
        .unwrap();
    assert_eq!(
        one(
            &*store,
            Change::Renew {
                from: first.serial.clone(),
                at: t0(),
                cert: cert(&a.key(), 2)
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
    let dir = tempfile::tempdir().unwrap();
    let store = open(backend, dir.path());
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
    let alerts = Records::new(store).alerts_of(&a.key(), 10).unwrap();
    let keys: Vec<_> = alerts
        .iter()
        .map(|a| a.requested_key_sha256.as_str())
        .collect();
    assert_eq!(keys, ["k0", "k1", "k2"]);
}

fn everything_is_there_after_reopening(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let (a, c) = {
        let store = open(backend, dir.path());
        let out = enrolled(&*store);
        let admin = AdminRecord {
            name: "admin".into(),
            tenant: None,
            created_at: t0(),
        };
        one(
            &*store,
            Change::PutAdmin {
                hash: [6; 32],
                admin,
            },
        )
        .unwrap();
        out
    };
    let records = Records::new(open(backend, dir.path()));
    assert_eq!(
        records.agent(&a.key()).unwrap().unwrap().last_issued_at,
        Some(t0())
    );
    assert_eq!(records.token(&[5; 32]).unwrap().unwrap().used, 1);
    assert_eq!(records.cert(&c.serial).unwrap(), Some(c));
    assert_eq!(records.admin(&[6; 32]).unwrap().unwrap().name, "admin");
}

fn concurrent_enrolls_through_the_writer_use_a_single_use_token_once(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let store = open(backend, dir.path());
    let a = agent("acme", "bot");
    let key = a.key();
    one(&*store, Change::RegisterAgent(a)).unwrap();
    one(
        &*store,
        Change::CreateToken {
            hash: [5; 32],
            token: token(&key, 1),
        },
    )
    .unwrap();
    let writer = Writer::start(store.clone()).unwrap();
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
        .all(|o| matches!(o, Ok(()) | Err(Conflict::TokenUsed))));
    assert_eq!(Records::new(store).certs_of(&key, 100).unwrap().len(), 1);
}
