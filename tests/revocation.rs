//! End-to-end: revocation by agent, instance, serial and tenant; the CRL,
//! the OCSP responder and the live feed.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use agentca::client::{KeyAlgorithm, PrivateKey};
use agentca::wire::{IssuedCertificate, RevokeRequest};
use common::{crl_serials, csr, refusal, TestCa};

fn serials<'a>(certs: impl IntoIterator<Item = &'a IssuedCertificate>) -> BTreeSet<String> {
    certs.into_iter().map(|c| c.serial.to_string()).collect()
}

#[tokio::test]
async fn revoking_an_agent_revokes_every_live_certificate_and_cuts_it_off() {
    let ca = TestCa::start();
    ca.register("acme", "prod", "bot").await;
    ca.register("acme", "prod", "bystander").await;

    // Three running instances of the agent, one of which renewed.
    let pool = ca.token("acme", "prod", "bot", 3).await;
    let mut certs = Vec::new();
    let mut first = None;
    for _ in 0..3 {
        let (issued, key) = ca.enroll(&pool).await.unwrap();
        first.get_or_insert((issued.clone(), key));
        certs.push(issued);
    }
    let (old, old_key) = first.unwrap();
    let renewed_key = PrivateKey::generate(KeyAlgorithm::P256).unwrap();
    let renewed = ca
        .client_with(&old.certificate_chain, &old_key)
        .renew(&renewed_key.csr_pem().unwrap())
        .await
        .unwrap();
    certs.push(renewed.clone());
    let unused = ca.token("acme", "prod", "bot", 1).await;
    let (other, other_key) = ca
        .enroll(&ca.token("acme", "prod", "bystander", 1).await)
        .await
        .unwrap();
    let (_, crl_number_before) = crl_serials(&ca.crl().await);

    let done = ca
        .revoke_agent("acme", "prod", "bot", "keyCompromise")
        .await;
    assert_eq!(
        done.revoked, 4,
        "every live certificate, the renewed one included"
    );
    assert_eq!(done.agents_disabled, 1);
    assert_eq!(
        done.tokens_voided, 1,
        "the unused token; the spent pool token is not counted"
    );
    assert_eq!(
        done.serials
            .iter()
            .map(|s| s.to_string())
            .collect::<BTreeSet<_>>(),
        serials(&certs)
    );

    // The CRL already lists them, under a higher CRL number; nobody else.
    let (listed, number) = crl_serials(&ca.crl().await);
    assert_eq!(listed.into_iter().collect::<BTreeSet<_>>(), serials(&certs));
    assert!(number > crl_number_before);

    // The feed says the same, with the identity.
    let page = ca.feed(0, 0).await;
    assert_eq!(page.events.len(), 4);
    assert!(page
        .events
        .iter()
        .all(|e| e.spiffe_id.as_ref().unwrap().agent().as_str() == "bot"
            && e.reason.as_deref() == Some("keyCompromise")));
    assert_eq!(page.latest, page.events.last().unwrap().seq);

    // The agent can neither renew nor enroll.
    let result = ca
        .client_with(&renewed.certificate_chain, &renewed_key)
        .renew(&csr())
        .await;
    assert_eq!(refusal(result), (401, "certificate_revoked".into()));
    assert_eq!(
        refusal(ca.enroll(&unused).await),
        (401, "token_voided".into())
    );
    let fresh = ca
        .try_token("acme", "prod", "bot", Default::default())
        .await;
    assert_eq!(refusal(fresh), (403, "agent_disabled".into()));

    // The other agent is untouched.
    let shown = ca.show("acme", "prod", "bystander").await;
    assert!(shown.enabled);
    ca.client_with(&other.certificate_chain, &other_key)
        .renew(&csr())
        .await
        .expect("the bystander renews");

    // Revoking again changes nothing.
    let again = ca
        .revoke_agent("acme", "prod", "bot", "keyCompromise")
        .await;
    assert_eq!(
        (again.revoked, again.agents_disabled, again.tokens_voided),
        (0, 0, 0)
    );

    // Re-enabled, the agent enrolls again with a new token.
    ca.set_enabled("acme", "prod", "bot", true).await;
    assert_eq!(
        refusal(ca.enroll(&unused).await),
        (401, "token_voided".into()),
        "voided tokens stay void"
    );
    let (back, back_key) = ca
        .enroll(&ca.token("acme", "prod", "bot", 1).await)
        .await
        .unwrap();
    ca.client_with(&back.certificate_chain, &back_key)
        .renew(&csr())
        .await
        .expect("it renews again");
}

#[tokio::test]
async fn a_revoked_certificate_does_not_renew_but_its_agent_stays_enabled() {
    let ca = TestCa::start();
    ca.register("acme", "prod", "bot").await;
    let pool = ca.token("acme", "prod", "bot", 2).await;
    let (a, a_key) = ca.enroll(&pool).await.unwrap();
    let (b, b_key) = ca.enroll(&pool).await.unwrap();

    let done = ca
        .revoke(&RevokeRequest {
            serial: Some(a.serial.clone()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!((done.revoked, done.agents_disabled), (1, 0));
    let result = ca
        .client_with(&a.certificate_chain, &a_key)
        .renew(&csr())
        .await;
    assert_eq!(refusal(result), (401, "certificate_revoked".into()));
    ca.client_with(&b.certificate_chain, &b_key)
        .renew(&csr())
        .await
        .expect("the other instance renews");

    // By instance: the instance's certificate and its renewal.
    let done = ca
        .revoke(&RevokeRequest {
            instance_id: Some(b.instance_id.clone()),
            reason: Some("superseded".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(done.revoked, 2);
    assert!(ca.show("acme", "prod", "bot").await.enabled);
    assert!(ca
        .show("acme", "prod", "bot")
        .await
        .live_certificates
        .is_empty());
}

#[tokio::test]
async fn revoking_a_tenant_or_one_env_of_it_reaches_exactly_those_agents() {
    let ca = TestCa::start();
    let mut issued = std::collections::HashMap::new();
    for (t, e, a) in [
        ("acme", "prod", "a"),
        ("acme", "dev", "b"),
        ("acme2", "prod", "c"),
    ] {
        ca.register(t, e, a).await;
        let (cert, _) = ca.enroll(&ca.token(t, e, a, 1).await).await.unwrap();
        issued.insert(a, cert);
    }
    let env = ca
        .revoke(&RevokeRequest {
            tenant: Some("acme".into()),
            env: Some("dev".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(env.serials, vec![issued["b"].serial.clone()]);
    let tenant = ca
        .revoke(&RevokeRequest {
            tenant: Some("acme".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(tenant.serials, vec![issued["a"].serial.clone()]);
    assert_eq!(tenant.agents_disabled, 1, "b was disabled already");
    assert!(
        ca.show("acme2", "prod", "c").await.enabled,
        "acme2 is another tenant"
    );
    let (listed, _) = crl_serials(&ca.crl().await);
    assert_eq!(listed.len(), 2);
}

#[tokio::test]
async fn bad_revocations_are_refused_and_change_nothing() {
    let ca = TestCa::start();
    let (cert, _) = ca.enrolled("acme", "prod", "bot").await;
    let crl_before = ca.crl().await;
    let r = |f: fn(&mut RevokeRequest)| {
        let mut req = RevokeRequest::default();
        f(&mut req);
        req
    };
    let cases: Vec<(RevokeRequest, u16, &str)> = vec![
        (r(|_| {}), 400, "invalid_request"),
        (
            r(|q| q.serial = Some("00aa".parse().unwrap())),
            404,
            "certificate_not_found",
        ),
        (
            r(|q| q.instance_id = Some(agentca::identity::InstanceId::random())),
            404,
            "instance_not_found",
        ),
        (
            r(|q| {
                q.tenant = Some("acme".into());
                q.env = Some("prod".into());
                q.agent = Some("ghost".into())
            }),
            404,
            "agent_not_found",
        ),
        (
            r(|q| q.tenant = Some("nobody".into())),
            404,
            "agent_not_found",
        ),
        (
            r(|q| {
                q.tenant = Some("acme".into());
                q.env = Some("staging".into())
            }),
            404,
            "agent_not_found",
        ),
        (
            r(|q| {
                q.tenant = Some("acme".into());
                q.agent = Some("bot".into())
            }),
            400,
            "invalid_request",
        ),
        (
            r(|q| q.tenant = Some("Acme".into())),
            400,
            "invalid_identity",
        ),
        (
            r(|q| {
                q.tenant = Some("acme".into());
                q.reason = Some("caCompromise".into())
            }),
            400,
            "invalid_request",
        ),
        (
            r(|q| {
                q.tenant = Some("acme".into());
                q.reason = Some("because".into())
            }),
            400,
            "invalid_request",
        ),
    ];
    for (req, status, code) in cases {
        assert_eq!(
            refusal(ca.revoke(&req).await),
            (status, code.into()),
            "{req:?}"
        );
    }
    // Two targets at once.
    let both = RevokeRequest {
        serial: Some(cert.serial.clone()),
        tenant: Some("acme".into()),
        ..Default::default()
    };
    assert_eq!(
        refusal(ca.revoke(&both).await),
        (400, "invalid_request".into())
    );
    // Without an admin token.
    let anonymous = ca
        .client()
        .call::<_, agentca::wire::RevokeResponse>(
            reqwest::Method::POST,
            "/v1/admin/revoke",
            None,
            Some(&both),
        )
        .await;
    assert_eq!(refusal(anonymous), (401, "unauthorized".into()));

    assert!(ca.show("acme", "prod", "bot").await.enabled);
    assert_eq!(
        ca.show("acme", "prod", "bot").await.live_certificates.len(),
        1
    );
    assert_eq!(crl_serials(&ca.crl().await).0, crl_serials(&crl_before).0);
    assert!(ca.feed(0, 0).await.events.is_empty());
}

#[tokio::test]
async fn the_feed_long_polls_until_a_revocation_arrives() {
    let ca = TestCa::start();
    let (cert, _) = ca.enrolled("acme", "prod", "bot").await;

    // Nothing new: the poll ends at its wait with no events.
    let started = Instant::now();
    let empty = ca.feed(0, 1).await;
    assert!(empty.events.is_empty());
    assert_eq!(empty.latest, 0);
    assert!(started.elapsed() >= Duration::from_millis(900));

    let url = format!("{}/v1/revocations?since=0&wait=20", ca.url);
    let http = ca.http();
    let poll = tokio::spawn(async move {
        let started = Instant::now();
        let page: agentca::wire::RevocationPage =
            http.get(url).send().await.unwrap().json().await.unwrap();
        (page, started.elapsed())
    });
    // Revoke once the poll is waiting (the CA counts it as a subscriber).
    ca.wait_feed_subscribers(1).await;
    ca.revoke_agent("acme", "prod", "bot", "keyCompromise")
        .await;
    let (page, waited) = poll.await.unwrap();
    assert_eq!(page.events.len(), 1);
    assert_eq!(page.events[0].serial, cert.serial);
    assert_eq!(page.events[0].not_after, cert.not_after);
    assert!(
        waited < Duration::from_secs(10),
        "the poll returned on the revocation, not at its wait"
    );
    // Anyone learns the serial, not who was caught or why.
    let anonymous = &page.events[0];
    assert_eq!(
        (
            &anonymous.spiffe_id,
            &anonymous.instance_id,
            &anonymous.reason
        ),
        (&None, &None, &None),
        "{anonymous:?}"
    );
    let raw = String::from_utf8(ca.get("/v1/revocations?since=0&wait=0").await.1).unwrap();
    for secret in ["acme", "bot", "keyCompromise", cert.instance_id.as_str()] {
        assert!(!raw.contains(secret), "{secret} in {raw}");
    }

    // An admin of the tenant sees everything; one of another tenant and
    // a wrong token do not.
    let feed_as = |token: String| {
        let http = ca.http();
        let url = format!("{}/v1/revocations?since=0&wait=0", ca.url);
        async move {
            let response = http.get(url).bearer_auth(token).send().await.unwrap();
            let status = response.status().as_u16();
            (status, response.text().await.unwrap())
        }
    };
    let (status, body) = feed_as(ca.admin_token()).await;
    assert_eq!(status, 200, "{body}");
    let page: agentca::wire::RevocationPage = serde_json::from_str(&body).unwrap();
    let detailed = &page.events[0];
    assert_eq!(detailed.spiffe_id, Some(cert.spiffe_id.clone()));
    assert_eq!(detailed.instance_id, Some(cert.instance_id.clone()));
    assert_eq!(detailed.reason.as_deref(), Some("keyCompromise"));
    let other: agentca::wire::CreateAdminResponse = ca
        .admin(
            reqwest::Method::POST,
            "/v1/admin/admins",
            Some(&agentca::wire::CreateAdminRequest {
                name: "other-ops".into(),
                tenant: Some("other".into()),
                role: None,
            }),
        )
        .await
        .unwrap();
    let (status, body) = feed_as(other.token.clone()).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        !body.contains("keyCompromise") && !body.contains("acme"),
        "{body}"
    );
    let (status, body) = feed_as("not-a-token".into()).await;
    assert_eq!(status, 401, "{body}");

    let (status, _) = ca.get("/v1/revocations?since=abc").await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn crl_numbers_only_grow_across_restarts() {
    let mut ca = TestCa::start();
    ca.register("acme", "prod", "bot").await;
    ca.enroll(&ca.token("acme", "prod", "bot", 1).await)
        .await
        .unwrap();
    let (_, first) = crl_serials(&ca.crl().await);
    ca.revoke_agent("acme", "prod", "bot", "unspecified").await;
    let (listed, second) = crl_serials(&ca.crl().await);
    assert!(second > first);
    ca.restart();
    let (relisted, third) = crl_serials(&ca.crl().await);
    assert!(third > second, "{third} > {second}");
    assert_eq!(relisted, listed, "the revocations survive a restart");
}

#[tokio::test]
async fn expired_certificates_drop_out_of_the_crl_and_are_pruned() {
    // Long enough to be listed before it expires on a loaded machine.
    const SHORT_TTL: u64 = 4;
    let ca = TestCa::start_with(&[], &["--min-ttl", "1s", "--retention", "0s"]);
    ca.register_with_ttl("acme", "prod", "short", Some(SHORT_TTL))
        .await;
    ca.register("acme", "prod", "long").await;
    let (short, _) = ca
        .enroll(&ca.token("acme", "prod", "short", 1).await)
        .await
        .unwrap();
    let (long, _) = ca
        .enroll(&ca.token("acme", "prod", "long", 1).await)
        .await
        .unwrap();
    ca.revoke(&RevokeRequest {
        serial: Some(short.serial.clone()),
        ..Default::default()
    })
    .await
    .unwrap();
    assert_eq!(
        crl_serials(&ca.crl().await).0,
        vec![short.serial.to_string()]
    );

    // Once the short certificate has expired, the next CRL no longer lists it.
    let expired_in = short.not_after - time::OffsetDateTime::now_utc();
    tokio::time::sleep(
        Duration::try_from(expired_in).unwrap_or_default() + Duration::from_millis(1100),
    )
    .await;
    ca.revoke(&RevokeRequest {
        serial: Some(long.serial.clone()),
        ..Default::default()
    })
    .await
    .unwrap();
    assert_eq!(
        crl_serials(&ca.crl().await).0,
        vec![long.serial.to_string()]
    );

    // With no retention, its records go at the next pruning pass (every
    // second for so short a window).
    // The feed (served from memory) and the store are pruned by separate
    // passes: wait for both.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let events = ca.feed(0, 0).await.events;
        let record = ca
            .revoke(&RevokeRequest {
                serial: Some(short.serial.clone()),
                ..Default::default()
            })
            .await;
        let record_gone = matches!(
            &record,
            Err(agentca::client::ClientError::Refused { status: 404, error, .. })
                if error == "certificate_not_found"
        );
        if events.len() == 1 && record_gone {
            assert_eq!(events[0].serial, long.serial);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the expired record was not pruned: {events:?}, {record:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn the_plain_http_listener_serves_signed_revocation_data_only() {
    let ca = TestCa::start_with(&[], &["--http-listen", "127.0.0.1:0"]);
    let http_url = ca.http_url.clone().expect("the plain HTTP listener is up");
    let (cert, _) = ca.enrolled("acme", "prod", "bot").await;
    ca.revoke_agent("acme", "prod", "bot", "keyCompromise")
        .await;

    // Any HTTP client will do; this one also trusts the CA, unused here.
    let plain = ca.http();
    let resp = plain
        .get(format!("{http_url}/v1/crl"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/pkix-crl");
    let (listed, _) = crl_serials(&resp.bytes().await.unwrap());
    assert_eq!(listed, vec![cert.serial.to_string()]);
    let pem = plain
        .get(format!("{http_url}/v1/crl?format=pem"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(pem.starts_with("-----BEGIN X509 CRL-----"));
    let root = plain
        .get(format!("{http_url}/v1/crl/root"))
        .send()
        .await
        .unwrap();
    assert_eq!(root.status(), 200);
    let (root_listed, _) = crl_serials(&root.bytes().await.unwrap());
    assert!(root_listed.is_empty());
    for path in [
        "/v1/revocations",
        "/v1/enroll",
        "/v1/bundle",
        "/v1/admin/agents",
    ] {
        let status = plain
            .get(format!("{http_url}{path}"))
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, 404, "{path} is not served over plain HTTP");
    }

    // Leaves name the plain-HTTP URLs first, then the HTTPS ones.
    let der = common::leaf_der(&cert.certificate_chain);
    let (_, parsed) = x509_parser::parse_x509_certificate(&der).unwrap();
    let cdp = parsed
        .extensions()
        .iter()
        .find_map(|e| match e.parsed_extension() {
            x509_parser::extensions::ParsedExtension::CRLDistributionPoints(p) => {
                Some(format!("{p:?}"))
            }
            _ => None,
        })
        .unwrap();
    let plain_at = cdp
        .find(&format!("{http_url}/v1/crl"))
        .expect("the plain URL");
    let tls_at = cdp
        .find(&format!("{}/v1/crl", ca.url))
        .expect("the HTTPS URL");
    assert!(plain_at < tls_at);
}

#[tokio::test]
async fn malformed_ocsp_requests_get_ocsp_errors() {
    let ca = TestCa::start();
    let http = ca.http();
    let post = |body: Vec<u8>| {
        let http = http.clone();
        let url = format!("{}/v1/ocsp", ca.url);
        async move {
            let resp = http
                .post(url)
                .header("content-type", "application/ocsp-request")
                .body(body)
                .send()
                .await
                .unwrap();
            let status = resp.status().as_u16();
            (status, resp.bytes().await.unwrap().to_vec())
        }
    };
    // OCSPResponse { responseStatus malformedRequest (1) }
    const MALFORMED: [u8; 5] = [0x30, 0x03, 0x0a, 0x01, 0x01];
    assert_eq!(post(b"not der".to_vec()).await, (400, MALFORMED.to_vec()));
    assert_eq!(post(Vec::new()).await, (400, MALFORMED.to_vec()));
    assert_eq!(post(vec![0x30; 9000]).await, (400, MALFORMED.to_vec()));
    let (status, body) = ca.get(&format!("/v1/ocsp/{}", "A".repeat(5000))).await;
    assert_eq!((status, body), (414, MALFORMED.to_vec()));
    let (status, body) = ca.get("/v1/ocsp/not*base64").await;
    assert_eq!((status, body), (400, MALFORMED.to_vec()));
}

/// Revocations whose requests were cancelled still reach the feed and the
/// CRL, and a follower of the feed sees every one, in order.
#[tokio::test]
async fn every_committed_revocation_is_published_in_order_even_if_its_request_was_abandoned() {
    let ca = TestCa::start();
    const AGENTS: usize = 30;
    for i in 0..AGENTS {
        let name = format!("a{i}");
        ca.register("acme", "prod", &name).await;
        ca.enroll(&ca.token("acme", "prod", &name, 1).await)
            .await
            .unwrap();
    }
    // A follower, as a verifier's cache would be; told to stop, it polls
    // once more to catch up, then reports what it saw.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let follower = {
        let http = ca.http();
        let url = ca.url.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut since = 0;
            let mut seen = Vec::new();
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                let stopping = stop.load(std::sync::atomic::Ordering::SeqCst);
                let resp = http
                    .get(format!("{url}/v1/revocations?since={since}&wait=1"))
                    .send()
                    .await
                    .expect("the feed answers");
                let page: agentca::wire::RevocationPage = resp.json().await.unwrap();
                seen.extend(page.events.iter().map(|e| e.seq));
                since = page.events.last().map_or(page.latest, |e| e.seq);
                if stopping || Instant::now() > deadline {
                    return seen;
                }
            }
        })
    };
    // Revoke every agent at once; half the requests are abandoned after a
    // few milliseconds, some before the CA sees them, some while it works.
    let token = ca.admin_token();
    let tasks: Vec<_> = (0..AGENTS)
        .map(|i| {
            let http = ca.http();
            let url = format!("{}/v1/admin/revoke", ca.url);
            let token = token.clone();
            tokio::spawn(async move {
                let body = RevokeRequest {
                    tenant: Some("acme".into()),
                    env: Some("prod".into()),
                    agent: Some(format!("a{i}")),
                    ..Default::default()
                };
                let mut req = http.post(url).bearer_auth(token).json(&body);
                if i % 2 == 1 {
                    req = req.timeout(Duration::from_millis(5 + i as u64));
                }
                let _ = req.send().await;
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let mut revoked = 0;
    for i in 0..AGENTS {
        if !ca.show("acme", "prod", &format!("a{i}")).await.enabled {
            revoked += 1;
        }
    }
    assert!(revoked > 0);
    // The CRL lists every committed revocation, promptly.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let listed = crl_serials(&ca.crl().await).0.len();
        if listed == revoked {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the CRL lists {listed} of {revoked} revocations"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let seen = follower.await.unwrap();
    let expected: Vec<u64> = (1..=revoked as u64).collect();
    assert_eq!(
        seen, expected,
        "the follower saw every revocation, once, in order"
    );
}

/// Once every event after `since` has been pruned, the feed answers at
/// once with the newest sequence number instead of waiting (or spinning).
#[tokio::test]
async fn the_feed_moves_a_client_past_pruned_events_at_once() {
    // Long enough to be listed before it expires on a loaded machine.
    const SHORT_TTL: u64 = 4;
    let ca = TestCa::start_with(&[], &["--min-ttl", "1s", "--retention", "0s"]);
    ca.register_with_ttl("acme", "prod", "short", Some(SHORT_TTL))
        .await;
    let (short, _) = ca
        .enroll(&ca.token("acme", "prod", "short", 1).await)
        .await
        .unwrap();
    ca.revoke(&RevokeRequest {
        serial: Some(short.serial.clone()),
        ..Default::default()
    })
    .await
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !ca.feed(0, 0).await.events.is_empty() {
        assert!(
            Instant::now() < deadline,
            "the expired revocation was not pruned"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let started = Instant::now();
    let page = ca.feed(0, 10).await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "waited {:?}",
        started.elapsed()
    );
    assert!(page.events.is_empty());
    assert_eq!(page.latest, 1);
    // From `latest`, it waits as usual.
    let started = Instant::now();
    let page = ca.feed(page.latest, 1).await;
    assert!(page.events.is_empty() && started.elapsed() >= Duration::from_millis(900));
}

#[tokio::test(flavor = "multi_thread")]
async fn revoking_more_certificates_than_an_answer_lists_says_how_many_and_lists_the_first() {
    const ISSUED: usize = agentca::wire::MAX_SERIALS_LISTED + 20;
    // One agent of many instances: more than the default issuance limit.
    let ca = TestCa::start_with(&[], &["--max-certs-per-agent", "100000"]);
    ca.register("acme", "prod", "fleet").await;
    let token = ca.token("acme", "prod", "fleet", ISSUED as u32).await;
    let workers: Vec<_> = (0..8)
        .map(|w| {
            let (client, token) = (ca.client(), token.clone());
            tokio::spawn(async move {
                for _ in (w..ISSUED).step_by(8) {
                    client.enroll(&token, &csr()).await.unwrap();
                }
            })
        })
        .collect();
    for w in workers {
        w.await.unwrap();
    }
    // Through the command, whose answers are read up to 1 MiB.
    let out = ca
        .command()
        .args([
            "revoke",
            "--tenant",
            "acme",
            "--reason",
            "cessationOfOperation",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let answer: agentca::wire::RevokeResponse = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(answer.revoked, ISSUED);
    assert_eq!(answer.serials.len(), agentca::wire::MAX_SERIALS_LISTED);
    assert!(answer.serials_truncated);
    // The CRL lists every one.
    let (serials, _) = crl_serials(&ca.crl().await);
    assert_eq!(serials.len(), ISSUED);
}
