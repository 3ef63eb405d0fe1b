//! Several replicas of one CA on one PostgreSQL database: the real
//! `agentca` binary, three times on loopback ports, against a throwaway
//! cluster. Whatever replica a request reaches, a token is redeemed as
//! often as it allows, a certificate renews once, a revocation reaches
//! every replica's OCSP, CRL and feed, and the audit trail is one chain.

mod common;
#[path = "support/postgres.rs"]
mod postgres;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use agentca::client::{ClientError, KeyAlgorithm, PrivateKey};
use agentca::wire::{AgentInfo, RevokeRequest};
use common::*;
use reqwest::Method;

/// Table number of the audit trail in `agentca_kv` (its place in the
/// store's table list).
const AUDIT_TABLE: u32 = 12;

fn replicas(n: usize) -> (Vec<TestCa>, String) {
    let url = postgres::fresh_database();
    let replicas = TestCa::start_replicas(&url, n, &["--http-listen", "127.0.0.1:0"]);
    (replicas, url)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_single_use_token_enrolls_once_whichever_replicas_the_attempts_reach() {
    let (cas, _) = replicas(3);
    cas[0].register("acme", "prod", "bot").await;
    let token = cas[1].token("acme", "prod", "bot", 1).await;
    let attempts = (0..64).map(|i| {
        let ca = &cas[i % 3];
        let token = token.clone();
        async move { ca.enroll(&token).await }
    });
    let results = futures_join_all(attempts).await;
    let issued: Vec<_> = results.iter().filter(|r| r.is_ok()).collect();
    assert_eq!(issued.len(), 1, "exactly one enrollment: {results:?}");
    for refused in results.into_iter().filter(|r| r.is_err()) {
        let (status, code) = refusal(refused);
        assert_eq!((status, code.as_str()), (401, "token_used"));
    }
    let agent: AgentInfo = cas[2].show("acme", "prod", "bot").await;
    assert_eq!(
        agent.live_certificates.len(),
        1,
        "one certificate on record"
    );

    // An N-use token: N enrollments, spread over the replicas.
    let token = cas[2].token("acme", "prod", "bot", 5).await;
    let attempts = (0..30).map(|i| {
        let ca = &cas[i % 3];
        let token = token.clone();
        async move { ca.enroll(&token).await }
    });
    let results = futures_join_all(attempts).await;
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 5);
    let serials: BTreeSet<String> = results
        .iter()
        .flatten()
        .map(|(issued, _)| issued.serial.to_string())
        .collect();
    assert_eq!(serials.len(), 5, "serials are unique");
}

#[tokio::test(flavor = "multi_thread")]
async fn two_renewals_on_two_replicas_give_one_certificate_and_one_clone_alert() {
    let (cas, _) = replicas(3);
    let (issued, key) = cas[0].enrolled("acme", "prod", "bot").await;
    let renew = |ca: &TestCa| {
        let next = PrivateKey::generate(KeyAlgorithm::P256).unwrap();
        let client = ca.client_with(&issued.certificate_chain, &key);
        async move { client.renew(&next.csr_pem().unwrap()).await }
    };
    let (a, b) = tokio::join!(renew(&cas[1]), renew(&cas[2]));
    let (renewed, refused): (Vec<_>, Vec<_>) = [a, b].into_iter().partition(|r| r.is_ok());
    assert_eq!(renewed.len(), 1, "one renewal: {renewed:?} {refused:?}");
    let (status, code) = refusal(refused.into_iter().next().unwrap());
    assert_eq!((status, code.as_str()), (409, "clone_detected"));
    let agent = cas[0].show("acme", "prod", "bot").await;
    assert_eq!(
        agent.live_certificates.len(),
        2,
        "the first and its one renewal"
    );
    assert_eq!(agent.clone_alerts.len(), 1, "{agent:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_revocation_on_one_replica_reaches_the_others_ocsp_crl_and_feed_within_a_second() {
    let (cas, _) = replicas(3);
    let (issued, _) = cas[0].enrolled("acme", "prod", "bot").await;
    let serial = issued.serial.to_string();
    // A subscriber of replica 2 waits for the next event.
    let since = cas[2].feed(0, 0).await.latest;
    let subscriber = next_page(&cas[2], since);
    cas[2].wait_feed_subscribers(1).await;
    let crl_before = crl_serials(&cas[1].crl().await).1;

    let revoked_at = Instant::now();
    cas[0]
        .revoke(&RevokeRequest {
            serial: Some(issued.serial.clone()),
            reason: Some("keyCompromise".into()),
            ..Default::default()
        })
        .await
        .unwrap();

    let (page, heard_at) = subscriber.await.unwrap();
    assert_eq!(page.events.len(), 1, "{page:?}");
    assert_eq!(page.events[0].serial.to_string(), serial);
    assert!(
        heard_at - revoked_at < Duration::from_secs(1),
        "replica 2's subscriber heard it after {:?}",
        heard_at - revoked_at
    );

    // One numbering for all: a subscriber moving between replicas with its
    // `since=` sees the same events, once.
    let pages: Vec<_> = futures_join_all(cas.iter().map(|ca| ca.feed(since, 2))).await;
    for page in &pages {
        assert_eq!(page.events, pages[2].events);
        assert_eq!(page.latest, pages[2].latest);
    }
    assert!(cas[0].feed(pages[0].latest, 0).await.events.is_empty());

    let dir = tempfile::tempdir().unwrap();
    write_leaf(dir.path(), "leaf", &issued);
    for ca in &cas[1..] {
        // The CRL lists it, with a number above the one before.
        let deadline = Instant::now() + Duration::from_secs(1);
        loop {
            let (serials, number) = crl_serials(&ca.crl().await);
            if serials.contains(&serial) {
                assert!(number > crl_before, "{number} after {crl_before}");
                break;
            }
            assert!(
                Instant::now() < deadline,
                "not in {}'s CRL within 1 s",
                ca.url
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // OCSP says revoked, checked by openssl.
        let text = openssl_ocsp(ca, dir.path(), "leaf.pem");
        assert!(
            text.contains("Response verify OK") && text.contains("leaf.pem: revoked"),
            "{text}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_scope_block_on_one_replica_reaches_the_others_feed_and_snapshot_within_a_second() {
    use agentca::wire::{BlockScopeRequest, FeedSnapshot, ScopeBlock, ScopeChange};
    let (cas, _) = replicas(2);
    let since = cas[1].feed(0, 0).await.latest;
    let subscriber = next_page(&cas[1], since);
    cas[1].wait_feed_subscribers(1).await;
    let blocked_at = Instant::now();
    let block: ScopeBlock = cas[0]
        .admin(
            Method::POST,
            "/v1/admin/scopes/blocks",
            Some(&BlockScopeRequest {
                scope: "payments:write".into(),
                ..Default::default()
            }),
        )
        .await
        .unwrap();
    let (page, heard_at) = subscriber.await.unwrap();
    assert!(
        heard_at - blocked_at < Duration::from_secs(1),
        "replica 1's subscriber heard it after {:?}",
        heard_at - blocked_at
    );
    assert_eq!(page.scopes.len(), 1, "{page:?}");
    assert!(matches!(
        &page.scopes[0].change,
        ScopeChange::Blocked { block: id, serials: None, .. } if *id == block.id
    ));
    // The other replica's snapshot has it, and its list of blocks too.
    let snapshot: FeedSnapshot = cas[1]
        .http()
        .get(format!("{}/v1/revocations/snapshot", cas[1].url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(snapshot.scopes, page.scopes);
    let listed: Vec<ScopeBlock> = cas[1]
        .admin::<(), _>(Method::GET, "/v1/admin/scopes/blocks", None)
        .await
        .unwrap();
    assert_eq!(listed, std::slice::from_ref(&block));
    // Lifted on replica 1: both replicas' snapshots drop it.
    let _: ScopeBlock = cas[1]
        .admin::<(), _>(
            Method::DELETE,
            &format!("/v1/admin/scopes/blocks/{}", block.id),
            None,
        )
        .await
        .unwrap();
    // Every replica within the same second of the unblock.
    let deadline = Instant::now() + Duration::from_secs(1);
    for ca in &cas {
        loop {
            let snapshot: FeedSnapshot = ca
                .http()
                .get(format!("{}/v1/revocations/snapshot", ca.url))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            if snapshot.scopes.is_empty() {
                break;
            }
            assert!(Instant::now() < deadline, "{} still blocks", ca.url);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn crl_numbers_only_grow_whichever_replica_is_asked() {
    let (cas, _) = replicas(3);
    let mut last = 0;
    for round in 0..6 {
        let (issued, _) = cas[round % 3]
            .enrolled("acme", "prod", &format!("bot{round}"))
            .await;
        cas[(round + 1) % 3]
            .revoke(&RevokeRequest {
                serial: Some(issued.serial.clone()),
                ..Default::default()
            })
            .await
            .unwrap();
        for ca in &cas {
            let (_, number) = crl_serials(&ca.crl().await);
            assert!(number >= last, "CRL {number} after {last} (round {round})");
            last = number;
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_audit_trail_of_every_replica_is_one_chain_and_a_changed_event_is_found() {
    let (cas, url) = replicas(3);
    for (i, ca) in cas.iter().enumerate() {
        ca.enrolled("acme", "prod", &format!("bot{i}")).await;
    }
    let wrong = cas[1]
        .client()
        .call::<(), Vec<AgentInfo>>(Method::GET, "/v1/admin/agents", Some("wrong"), None)
        .await;
    assert!(matches!(
        wrong,
        Err(ClientError::Refused { status: 401, .. })
    ));
    for ca in &cas {
        let out = ok(ca.command().args(["audit", "verify"]));
        assert!(out.starts_with("audit trail intact"), "{out}");
    }
    // Someone with the database's password makes the refusal look fine.
    let db = url.rsplit('/').next().unwrap();
    let cluster = postgres::cluster();
    let changed = cluster.psql(
        db,
        &format!(
            "UPDATE agentca_kv SET value = convert_to(replace(convert_from(value, 'UTF8'), \
             '\"outcome\":\"refused\"', '\"outcome\":\"ok\"'), 'UTF8') \
             WHERE tbl = {AUDIT_TABLE} AND convert_from(value, 'UTF8') LIKE '%\"outcome\":\"refused\"%' \
             RETURNING 1"
        ),
    );
    assert_eq!(changed, "1");
    let err = fails(cas[2].command().args(["audit", "verify"]));
    assert!(err.contains("was changed"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_replica_refuses_a_database_without_a_ca_and_init_refuses_one_with() {
    let url = postgres::fresh_database();
    let root = tempfile::tempdir().unwrap();
    let passphrase = root.path().join("passphrase");
    write_secret(&passphrase, PASSPHRASE);
    let serve = |passphrase: &std::path::Path| {
        let mut cmd = std::process::Command::new(agentca_bin());
        cmd.args(["serve", "--store", &url, "--listen", "127.0.0.1:0"])
            .arg("--passphrase-file")
            .arg(passphrase)
            .env("HOME", root.path());
        cmd
    };
    let err = fails(&mut serve(&passphrase));
    assert!(err.contains("holds no CA"), "{err}");

    let cas = TestCa::start_replicas(&url, 1, &[]);
    let err = fails(
        std::process::Command::new(agentca_bin())
            .args(["init", "--store", &url, "--trust-domain", "other.org"])
            .arg("--data-dir")
            .arg(root.path().join("other"))
            .arg("--passphrase-file")
            .arg(&passphrase)
            .env("HOME", root.path()),
    );
    assert!(err.contains("already holds a CA"), "{err}");
    // The CA is untouched: still serving its trust domain.
    let (issued, _) = cas[0].enrolled("acme", "prod", "bot").await;
    assert!(issued
        .spiffe_id
        .to_string()
        .starts_with("spiffe://example.org/"));

    // A wrong passphrase opens nothing.
    let wrong = root.path().join("wrong");
    write_secret(&wrong, "not the passphrase at all");
    let err = fails(&mut serve(&wrong));
    assert!(err.contains("wrong passphrase"), "{err}");
}

/// Runs `futures` concurrently on this task; their outputs in order.
/// A feed subscriber of `ca` waiting (up to 20 s) for the next page after
/// `since`: the page and when it arrived.
fn next_page(
    ca: &TestCa,
    since: u64,
) -> tokio::task::JoinHandle<(agentca::wire::RevocationPage, Instant)> {
    let http = ca.http();
    let url = format!("{}/v1/revocations?since={since}&wait=20", ca.url);
    tokio::spawn(async move {
        let page: agentca::wire::RevocationPage =
            http.get(url).send().await.unwrap().json().await.unwrap();
        (page, Instant::now())
    })
}

async fn futures_join_all<F: std::future::Future>(
    futures: impl Iterator<Item = F>,
) -> Vec<F::Output> {
    let mut pending: Vec<_> = futures.map(Box::pin).collect();
    let mut results: Vec<Option<F::Output>> = pending.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut waiting = false;
        for (f, result) in pending.iter_mut().zip(results.iter_mut()) {
            if result.is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => *result = Some(v),
                    std::task::Poll::Pending => waiting = true,
                }
            }
        }
        if waiting {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    results.into_iter().map(|r| r.expect("ready")).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_database_going_away_is_a_quick_503_and_its_return_needs_no_restart() {
    // A cluster of this test's own: it stops the database.
    let cluster = postgres::own_cluster();
    let url = cluster.database();
    let cas = TestCa::start_replicas(&url, 2, &["--http-listen", "127.0.0.1:0"]);
    // A live certificate and a revoked one, both known to replica 1.
    let dir = tempfile::tempdir().unwrap();
    let (live, _) = cas[0].enrolled("acme", "prod", "live").await;
    let (gone, _) = cas[0].enrolled("acme", "prod", "gone").await;
    write_leaf(dir.path(), "live", &live);
    write_leaf(dir.path(), "gone", &gone);
    cas[0]
        .revoke_agent("acme", "prod", "gone", "keyCompromise")
        .await;
    let deadline = Instant::now() + Duration::from_secs(2);
    while cas[1].feed(0, 0).await.events.is_empty() {
        assert!(
            Instant::now() < deadline,
            "replica 1 never heard of the revocation"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cas[0].register("acme", "prod", "bot").await;
    let token = cas[0].token("acme", "prod", "bot", 1000).await;
    let crl_before = cas[1].crl().await;

    // Enrollments keep coming, on both replicas, through the outage.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = {
        let stop = stop.clone();
        let clients: Vec<_> = cas.iter().map(|ca| ca.client()).collect();
        let token = token.clone();
        tokio::spawn(async move {
            let (mut acknowledged, mut unavailable) = (Vec::new(), 0);
            let mut i = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let key = PrivateKey::generate(KeyAlgorithm::P256).unwrap();
                match clients[i % 2].enroll(&token, &key.csr_pem().unwrap()).await {
                    Ok(issued) => acknowledged.push(issued.serial),
                    Err(ClientError::Refused {
                        status: 503, error, ..
                    }) => {
                        assert_eq!(error, "store_unavailable");
                        unavailable += 1;
                    }
                    // The connection to the CA itself is fine; anything else
                    // is a failure of this test.
                    Err(other) => panic!("unexpected: {other:?}"),
                }
                i += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            (acknowledged, unavailable)
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;

    cluster.stop();
    for ca in &cas {
        let began = Instant::now();
        let (status, _) = ca.get("/readyz").await;
        assert_eq!(status, 503, "{} is not ready without its database", ca.url);
        assert!(
            began.elapsed() < Duration::from_secs(8),
            "{:?}",
            began.elapsed()
        );
        assert_eq!(ca.get("/healthz").await.0, 200, "it is alive all the same");
        // A refused enrollment is quick and says why.
        let began = Instant::now();
        let (status, code) = refusal(ca.enroll(&token).await);
        assert_eq!((status, code.as_str()), (503, "store_unavailable"));
        assert!(
            began.elapsed() < Duration::from_secs(8),
            "{:?}",
            began.elapsed()
        );
        // What was signed before is still served, and OCSP answers from
        // what the replica last knew.
        assert_eq!(ca.get("/v1/crl").await.0, 200);
        let text = openssl_ocsp(ca, dir.path(), "live.pem");
        assert!(
            text.contains("Response verify OK") && text.contains("live.pem: good"),
            "{text}"
        );
        let text = openssl_ocsp(ca, dir.path(), "gone.pem");
        assert!(
            text.contains("Response verify OK") && text.contains("gone.pem: revoked"),
            "{text}"
        );
    }
    assert!(crl_serials(&crl_before).1 > 0);
    tokio::time::sleep(Duration::from_secs(1)).await;

    cluster.start();
    for ca in &cas {
        let deadline = Instant::now() + Duration::from_secs(30);
        while ca.get("/readyz").await.0 != 200 {
            assert!(Instant::now() < deadline, "{} did not come back", ca.url);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (acknowledged, unavailable) = load.await.unwrap();
    eprintln!(
        "database loss: {} enrollments acknowledged, {unavailable} refused with 503 during the outage",
        acknowledged.len()
    );
    assert!(unavailable > 0, "the load saw the outage");
    assert!(acknowledged.len() > 5, "{acknowledged:?}");
    // Every certificate a client was given is on record.
    let agent = cas[1].show("acme", "prod", "bot").await;
    let on_record: BTreeSet<_> = agent
        .live_certificates
        .iter()
        .map(|c| c.serial.clone())
        .collect();
    for serial in &acknowledged {
        assert!(
            on_record.contains(serial),
            "{serial} was acknowledged but is not on record"
        );
    }
    ok(cas[0].command().args(["audit", "verify"]));
}

/// What the load of the replica-loss test saw acknowledged.
#[derive(Default)]
struct Acknowledged {
    issued: Vec<String>,
    revoked: Vec<String>,
    failures: Vec<String>,
}

#[tokio::test(flavor = "multi_thread")]
async fn killing_replicas_under_load_loses_nothing_acknowledged_and_clients_fail_over() {
    const CYCLES: usize = 20;
    // Thousands of certificates for one agent: beyond the default limit.
    let url = postgres::fresh_database();
    let mut cas = TestCa::start_replicas(
        &url,
        3,
        &[
            "--http-listen",
            "127.0.0.1:0",
            "--max-certs-per-agent",
            "1000000",
        ],
    );
    let all = cas
        .iter()
        .map(|ca| ca.url.clone())
        .collect::<Vec<_>>()
        .join(",");
    let bundle = cas[0].bundle();
    let admin_token = cas[0].admin_token();
    cas[0].register("acme", "prod", "bot").await;
    let token = cas[0].token("acme", "prod", "bot", 100_000).await;

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Acknowledged::default()));
    let mut workers = Vec::new();
    for worker in 0..4 {
        let (stop, seen, all, bundle, token, admin_token) = (
            stop.clone(),
            seen.clone(),
            all.clone(),
            bundle.clone(),
            token.clone(),
            admin_token.clone(),
        );
        workers.push(tokio::spawn(async move {
            use agentca::client::{CaClient, CaTrust, Credentials};
            let client = CaClient::new(&all, CaTrust::Bundle(bundle.clone()), None).unwrap();
            let mut round = 0usize;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                round += 1;
                let key = PrivateKey::generate(KeyAlgorithm::P256).unwrap();
                let issued = match client.enroll(&token, &key.csr_pem().unwrap()).await {
                    Ok(issued) => issued,
                    Err(e) => {
                        seen.lock().unwrap().failures.push(format!("enroll: {e}"));
                        continue;
                    }
                };
                seen.lock().unwrap().issued.push(issued.serial.to_string());
                if round.is_multiple_of(3) {
                    // A renewal, over mutual TLS, through the list.
                    let creds = Credentials::from_pem(&issued.certificate_chain, key).unwrap();
                    let renewing =
                        CaClient::new(&all, CaTrust::Bundle(bundle.clone()), Some(creds)).unwrap();
                    let next = PrivateKey::generate(KeyAlgorithm::P256).unwrap();
                    match renewing.renew(&next.csr_pem().unwrap()).await {
                        Ok(renewed) => seen.lock().unwrap().issued.push(renewed.serial.to_string()),
                        Err(e) => seen.lock().unwrap().failures.push(format!("renew: {e}")),
                    }
                } else if (round + worker).is_multiple_of(4) {
                    let revoked = client
                        .call::<_, agentca::wire::RevokeResponse>(
                            Method::POST,
                            "/v1/admin/revoke",
                            Some(&admin_token),
                            Some(&RevokeRequest {
                                serial: Some(issued.serial.clone()),
                                ..Default::default()
                            }),
                        )
                        .await;
                    match revoked {
                        Ok(_) => seen.lock().unwrap().revoked.push(issued.serial.to_string()),
                        Err(e) => seen.lock().unwrap().failures.push(format!("revoke: {e}")),
                    }
                }
            }
        }));
    }

    // Kill -9 a replica, bring it back, twenty times.
    let mut state = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    eprintln!("replica-loss seed {state}");
    let mut kills = Vec::new();
    for _ in 0..CYCLES {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let victim = (state >> 33) as usize % 3;
        tokio::time::sleep(Duration::from_millis(300)).await;
        cas[victim].kill();
        kills.push(victim);
        tokio::time::sleep(Duration::from_millis(200)).await;
        cas[victim].restart();
        let deadline = Instant::now() + Duration::from_secs(20);
        while cas[victim].get("/readyz").await.0 != 200 {
            assert!(
                Instant::now() < deadline,
                "replica {victim} did not come back"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for worker in workers {
        worker.await.unwrap();
    }
    let seen = std::mem::take(&mut *seen.lock().unwrap());
    eprintln!(
        "replica loss: {CYCLES} kills {kills:?}; {} certificates and {} revocations acknowledged; \
         {} failures",
        seen.issued.len(),
        seen.revoked.len(),
        seen.failures.len()
    );
    assert!(
        seen.failures.is_empty(),
        "clients saw failures: {:?}",
        seen.failures
    );
    assert!(seen.issued.len() > 50 && !seen.revoked.is_empty());

    // Everything acknowledged is in the database.
    let db = url.rsplit('/').next().unwrap();
    let cluster = postgres::cluster();
    let stored: BTreeSet<String> = cluster
        .psql(
            db,
            "SELECT encode(key, 'hex') FROM agentca_kv WHERE tbl = 3",
        )
        .lines()
        .map(str::to_owned)
        .collect();
    let revoked: BTreeSet<String> = cluster
        .psql(
            db,
            "SELECT encode(key, 'hex') FROM agentca_kv WHERE tbl = 3 \
             AND convert_from(value, 'UTF8') LIKE '%\"revoked\":{%'",
        )
        .lines()
        .map(str::to_owned)
        .collect();
    let lost: Vec<_> = seen
        .issued
        .iter()
        .filter(|s| !stored.contains(*s))
        .collect();
    assert!(lost.is_empty(), "acknowledged but not stored: {lost:?}");
    let lost: Vec<_> = seen
        .revoked
        .iter()
        .filter(|s| !revoked.contains(*s))
        .collect();
    assert!(
        lost.is_empty(),
        "revocations acknowledged but not stored: {lost:?}"
    );
    // One audit chain, verified through the list of replicas.
    ok(cas[0]
        .command()
        .env("AGENTCA_URL", &all)
        .args(["audit", "verify"]));
    // No renewal was taken for a clone.
    let agent = cas[1].show("acme", "prod", "bot").await;
    assert!(agent.clone_alerts.is_empty(), "{:?}", agent.clone_alerts);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_commands_take_several_ca_urls_and_move_past_one_that_is_down() {
    let (cas, _) = replicas(2);
    cas[0].register("acme", "prod", "bot").await;
    let token = cas[0].token("acme", "prod", "bot", 2).await;
    // Nothing listens on the first URL.
    let dead = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("https://{}", listener.local_addr().unwrap())
    };
    let out_dir = cas[0].root.path().join("agent");
    ok(cas[0]
        .command()
        .env("AGENTCA_TOKEN", &token)
        .args(["enroll", "--ca-url", &dead, "--ca-url", &cas[1].url])
        .arg("--out-dir")
        .arg(&out_dir));
    // A comma-separated list in AGENTCA_URL, the live replica last.
    ok(cas[0]
        .command()
        .env("AGENTCA_URL", format!("{dead},{}", cas[0].url))
        .arg("renew")
        .arg("--out-dir")
        .arg(&out_dir));
    // Every replica down: the failure says so.
    let err = fails(
        cas[0]
            .command()
            .env("AGENTCA_TOKEN", &token)
            .env("AGENTCA_URL", &dead)
            .args(["enroll", "--out-dir"])
            .arg(cas[0].root.path().join("other")),
    );
    assert!(err.contains("could not talk to the CA"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_verifiers_feed_moves_to_another_replica_and_resumes_where_it_was() {
    use agentca::verify::{feed, RevocationCache};
    let (mut cas, _) = replicas(2);
    let list = format!("{},{}", cas[0].url, cas[1].url);
    let cache = RevocationCache::new();
    let subscription = feed::subscribe(&list, cas[0].bundle(), cache.clone()).unwrap();
    assert!(subscription.synced(Duration::from_secs(10)).await);
    let wait_for = |serial: agentca::wire::Serial| {
        let cache = cache.clone();
        async move {
            let deadline = Instant::now() + Duration::from_secs(15);
            while !cache.is_revoked(&serial) {
                assert!(
                    Instant::now() < deadline,
                    "the verifier never heard of {serial}"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    let (first, _) = cas[1].enrolled("acme", "prod", "first").await;
    cas[1]
        .revoke_agent("acme", "prod", "first", "keyCompromise")
        .await;
    wait_for(first.serial.clone()).await;
    let position = cache.feed_position();

    // The replica it listens to goes away; the next revocation reaches it
    // through the other one.
    cas[0].kill();
    let (second, _) = cas[1].enrolled("acme", "prod", "second").await;
    cas[1]
        .revoke_agent("acme", "prod", "second", "keyCompromise")
        .await;
    wait_for(second.serial.clone()).await;
    assert_eq!(
        cache.feed_position(),
        position + 1,
        "resumed, nothing twice"
    );
    assert!(cache.is_revoked(&first.serial));
    drop(subscription);
}

/// Lets a frozen cluster go on, however the test ends.
struct Thaw<'a>(&'a postgres::Cluster);

impl Drop for Thaw<'_> {
    fn drop(&mut self) {
        self.0.thaw();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_database_that_hangs_gets_a_bounded_503_and_answers_from_memory() {
    let cluster = postgres::own_cluster();
    let url = cluster.database();
    let cas = TestCa::start_replicas(&url, 1, &["--http-listen", "127.0.0.1:0"]);
    let ca = &cas[0];
    let (live, _) = ca.enrolled("acme", "prod", "live").await;
    let dir = tempfile::tempdir().unwrap();
    write_leaf(dir.path(), "live", &live);
    let token = ca.token("acme", "prod", "live", 5).await;

    // Every process of the database stops answering; connections stay open.
    cluster.freeze();
    let thaw = Thaw(&cluster);
    let bound = Duration::from_secs(10);
    let began = Instant::now();
    let (status, code) = refusal(ca.enroll(&token).await);
    assert_eq!((status, code.as_str()), (503, "store_unavailable"));
    assert!(began.elapsed() < bound, "enroll took {:?}", began.elapsed());
    let began = Instant::now();
    assert_eq!(ca.get("/readyz").await.0, 503);
    assert!(began.elapsed() < bound, "readyz took {:?}", began.elapsed());
    // Once the replica knows its store is not answering, OCSP and the CRL
    // answer from memory without waiting on it.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let began = Instant::now();
    let text = openssl_ocsp(ca, dir.path(), "live.pem");
    assert!(
        text.contains("Response verify OK") && text.contains("live.pem: good"),
        "{text}"
    );
    assert_eq!(ca.get("/v1/crl").await.0, 200);
    assert!(
        began.elapsed() < Duration::from_secs(3),
        "took {:?}",
        began.elapsed()
    );

    drop(thaw);
    let deadline = Instant::now() + Duration::from_secs(30);
    while ca.get("/readyz").await.0 != 200 {
        assert!(Instant::now() < deadline, "the replica did not recover");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    ca.enroll(&token).await.expect("enrolls again");
}
