//! End-to-end: a real CA on a loopback port; register, token, enroll,
//! renew, and every refusal on the way.

mod common;

use agentca::client::{CaClient, CaTrust, KeyAlgorithm, PrivateKey};
use agentca::identity::AgentId;
use agentca::wire::{AgentInfo, CreateTokenRequest, EnrollRequest, Health, RegisterAgentRequest};
use common::{csr, leaf_der, refusal, TestCa};
use reqwest::Method;

#[tokio::test]
async fn an_agent_registers_enrolls_and_renews() {
    let ca = TestCa::start();
    let info = ca.register("acme", "prod", "billing-bot").await;
    assert_eq!(
        info.spiffe_id.to_string(),
        "spiffe://example.org/tenant/acme/env/prod/agent/billing-bot"
    );
    assert!(info.enabled);
    assert_eq!(info.ttl_seconds, 300);

    let token = ca.token("acme", "prod", "billing-bot", 1).await;
    let (issued, key) = ca.enroll(&token).await.unwrap();
    assert_eq!(issued.spiffe_id, info.spiffe_id);
    let lifetime = issued.not_after - issued.not_before;
    assert_eq!(
        lifetime.whole_seconds(),
        300 + 30,
        "ttl plus 30 s of backdating"
    );
    let chain = pem::parse_many(&issued.certificate_chain).unwrap();
    assert_eq!(chain.len(), 2, "leaf and intermediate");

    let (renewed, next_key) = ca.renewed(&issued, &key).await;
    assert_eq!(renewed.spiffe_id, issued.spiffe_id);
    assert_eq!(
        renewed.instance_id, issued.instance_id,
        "renewal keeps the instance"
    );
    assert_ne!(renewed.serial, issued.serial);
    agentca::client::check_issued(&renewed, &next_key)
        .expect("the renewed certificate carries the new key");

    // The renewed certificate renews in turn.
    let third_key = PrivateKey::generate(KeyAlgorithm::Ed25519).unwrap();
    let third = ca
        .client_with(&renewed.certificate_chain, &next_key)
        .renew(&third_key.csr_pem().unwrap())
        .await
        .unwrap();
    assert_eq!(third.instance_id, issued.instance_id);

    let shown = ca.show("acme", "prod", "billing-bot").await;
    assert_eq!(shown.live_certificates.len(), 3);
    assert!(shown.last_issued_at.is_some());
    assert!(shown.clone_alerts.is_empty());
}

#[tokio::test]
async fn every_allowed_agent_key_type_enrolls() {
    let ca = TestCa::start();
    ca.register("acme", "prod", "bot").await;
    let token = ca.token("acme", "prod", "bot", 10).await;
    for alg in [
        KeyAlgorithm::P256,
        KeyAlgorithm::P384,
        KeyAlgorithm::Ed25519,
    ] {
        let key = PrivateKey::generate(alg).unwrap();
        let issued = ca
            .client()
            .enroll(&token, &key.csr_pem().unwrap())
            .await
            .unwrap();
        agentca::client::check_issued(&issued, &key).unwrap();
    }
}

#[tokio::test]
async fn the_admin_api_needs_a_valid_admin_token() {
    let ca = TestCa::start();
    let req = RegisterAgentRequest {
        tenant: "acme".into(),
        env: "prod".into(),
        agent: "bot".into(),
        owner: "me".into(),
        purpose: "x".into(),
        ttl_seconds: None,
        scopes: Vec::new(),
        reuse_retired: false,
    };
    let client = ca.client();
    for bearer in [
        None,
        Some("agentca-admin-not-a-real-token"),
        Some("garbage with spaces"),
        Some(""),
    ] {
        let result = client
            .call::<_, AgentInfo>(Method::POST, "/v1/admin/agents", bearer, Some(&req))
            .await;
        assert_eq!(refusal(result), (401, "unauthorized".into()), "{bearer:?}");
    }
    // A bootstrap token is not an admin token.
    ca.register("acme", "prod", "other").await;
    let bootstrap = ca.token("acme", "prod", "other", 1).await;
    let result = client
        .call::<_, AgentInfo>(
            Method::POST,
            "/v1/admin/agents",
            Some(&bootstrap),
            Some(&req),
        )
        .await;
    assert_eq!(refusal(result).0, 401);
    let listed: Vec<AgentInfo> = ca
        .admin::<(), _>(Method::GET, "/v1/admin/agents", None)
        .await
        .unwrap();
    assert_eq!(
        listed.len(),
        1,
        "nothing was registered by the refused calls"
    );
}

#[tokio::test]
async fn registration_refuses_bad_input_and_duplicates() {
    let ca = TestCa::start();
    ca.register("acme", "prod", "bot").await;
    let base = RegisterAgentRequest {
        tenant: "acme".into(),
        env: "prod".into(),
        agent: "bot".into(),
        owner: "me".into(),
        purpose: "x".into(),
        ttl_seconds: None,
        scopes: Vec::new(),
        reuse_retired: false,
    };
    let cases: Vec<(RegisterAgentRequest, u16, &str)> = vec![
        (base.clone(), 409, "agent_exists"),
        (
            RegisterAgentRequest {
                agent: "Bot".into(),
                ..base.clone()
            },
            400,
            "invalid_identity",
        ),
        (
            RegisterAgentRequest {
                tenant: "..".into(),
                ..base.clone()
            },
            400,
            "invalid_identity",
        ),
        (
            RegisterAgentRequest {
                env: "a/b".into(),
                ..base.clone()
            },
            400,
            "invalid_identity",
        ),
        (
            RegisterAgentRequest {
                agent: "x".repeat(64),
                ..base.clone()
            },
            400,
            "invalid_identity",
        ),
        (
            RegisterAgentRequest {
                agent: "new".into(),
                ttl_seconds: Some(59),
                ..base.clone()
            },
            400,
            "ttl_out_of_range",
        ),
        (
            RegisterAgentRequest {
                agent: "new".into(),
                ttl_seconds: Some(86_401),
                ..base.clone()
            },
            400,
            "ttl_out_of_range",
        ),
        (
            RegisterAgentRequest {
                agent: "new".into(),
                owner: " ".into(),
                ..base.clone()
            },
            400,
            "invalid_request",
        ),
        (
            RegisterAgentRequest {
                agent: "new".into(),
                purpose: "a\nb".into(),
                ..base.clone()
            },
            400,
            "invalid_request",
        ),
        (
            RegisterAgentRequest {
                agent: "new".into(),
                owner: "o".repeat(257),
                ..base.clone()
            },
            400,
            "invalid_request",
        ),
    ];
    for (req, status, code) in cases {
        let result = ca
            .admin::<_, AgentInfo>(Method::POST, "/v1/admin/agents", Some(&req))
            .await;
        assert_eq!(refusal(result), (status, code.into()), "{req:?}");
    }
    // The duplicate did not overwrite the first registration.
    assert_eq!(ca.show("acme", "prod", "bot").await.owner, "team-test");
    let listed: Vec<AgentInfo> = ca
        .admin::<(), _>(Method::GET, "/v1/admin/agents", None)
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
}

#[tokio::test]
async fn agents_list_by_tenant_and_env() {
    let ca = TestCa::start();
    for (t, e, a) in [
        ("acme", "prod", "a"),
        ("acme", "dev", "b"),
        ("acme2", "prod", "c"),
        ("zeta", "prod", "d"),
    ] {
        ca.register(t, e, a).await;
    }
    let names = |agents: Vec<AgentInfo>| -> Vec<String> {
        agents
            .iter()
            .map(|a| a.spiffe_id.agent().to_string())
            .collect()
    };
    let all: Vec<AgentInfo> = ca
        .admin::<(), _>(Method::GET, "/v1/admin/agents", None)
        .await
        .unwrap();
    assert_eq!(names(all), ["b", "a", "c", "d"]);
    let acme: Vec<AgentInfo> = ca
        .admin::<(), _>(Method::GET, "/v1/admin/agents?tenant=acme", None)
        .await
        .unwrap();
    assert_eq!(names(acme), ["b", "a"]);
    let prod: Vec<AgentInfo> = ca
        .admin::<(), _>(Method::GET, "/v1/admin/agents?tenant=acme&env=prod", None)
        .await
        .unwrap();
    assert_eq!(names(prod), ["a"]);
    let bad = ca
        .admin::<(), Vec<AgentInfo>>(Method::GET, "/v1/admin/agents?tenant=ACME", None)
        .await;
    assert_eq!(refusal(bad), (400, "invalid_identity".into()));
    let bad = ca
        .admin::<(), Vec<AgentInfo>>(Method::GET, "/v1/admin/agents?colour=red", None)
        .await;
    assert_eq!(refusal(bad), (400, "invalid_request".into()));
    let missing = ca
        .admin::<(), AgentInfo>(Method::GET, "/v1/admin/agents/acme/prod/nobody", None)
        .await;
    assert_eq!(refusal(missing), (404, "agent_not_found".into()));

    // A page at a time: each page says where the next one starts, the last
    // says nothing.
    let (client, token) = (ca.client(), ca.admin_token());
    let mut seen = Vec::new();
    let mut cursors = Vec::new();
    let mut query = "limit=1".to_owned();
    loop {
        let (page, next) = client.list_agents(&token, &query).await.unwrap();
        seen.extend(names(page));
        let Some(next) = next else { break };
        cursors.push(next.clone());
        query = format!("limit=1&after={next}");
    }
    assert_eq!(seen, ["b", "a", "c", "d"]);
    assert_eq!(cursors, ["acme/dev/b", "acme/prod/a", "acme2/prod/c"]);
    let (page, next) = client
        .list_agents(&token, "tenant=acme&limit=1&after=acme/dev/b")
        .await
        .unwrap();
    assert_eq!((names(page), next), (vec!["a".to_owned()], None));
    // Filters hold across pages.
    ca.set_enabled("acme2", "prod", "c", false).await;
    let (page, next) = client
        .list_agents(&token, "state=disabled&limit=1")
        .await
        .unwrap();
    assert_eq!(names(page), ["c"]);
    let (page, next) = client
        .list_agents(
            &token,
            &format!("state=disabled&limit=1&after={}", next.unwrap()),
        )
        .await
        .unwrap();
    assert_eq!((names(page), next), (vec![], None));
    for bad in ["after=acme", "after=ACME/prod/a", "limit=0"] {
        let refused = client.list_agents(&token, bad).await;
        assert_eq!(refusal(refused), (400, "invalid_request".into()), "{bad}");
    }
}

/// A page reads at most `MAX_LIST` agents: a filter that matches none of them
/// still says where the next page starts, and the last page says nothing.
#[tokio::test]
async fn a_sparse_filter_over_more_agents_than_a_page_reads_goes_on() {
    const READ_PER_PAGE: usize = agentca_ca::authority::MAX_LIST;
    let ca = TestCa::start();
    let workers: Vec<_> = (0..16)
        .map(|w| {
            let ca_url = ca.url.clone();
            let (bundle, token) = (ca.bundle(), ca.admin_token());
            tokio::spawn(async move {
                let client = CaClient::new(&ca_url, CaTrust::Bundle(bundle), None).unwrap();
                for n in (w..=READ_PER_PAGE).step_by(16) {
                    let req = RegisterAgentRequest {
                        tenant: "acme".into(),
                        env: "prod".into(),
                        agent: format!("a{n:05}"),
                        owner: "team-test".into(),
                        purpose: "paging".into(),
                        ttl_seconds: None,
                        scopes: Vec::new(),
                        reuse_retired: false,
                    };
                    let _: AgentInfo = client
                        .call(Method::POST, "/v1/admin/agents", Some(&token), Some(&req))
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for w in workers {
        w.await.unwrap();
    }
    let (client, token) = (ca.client(), ca.admin_token());
    let (page, next) = client
        .list_agents(&token, "state=disabled&limit=10")
        .await
        .unwrap();
    assert!(page.is_empty());
    assert_eq!(next.as_deref(), Some("acme/prod/a09999"));
    let (page, next) = client
        .list_agents(&token, "state=disabled&limit=10&after=acme/prod/a09999")
        .await
        .unwrap();
    assert!(page.is_empty());
    assert_eq!(next, None);
    // And a full page of matches stops where it is full.
    let (page, next) = client
        .list_agents(&token, "limit=10&after=acme/prod/a09990")
        .await
        .unwrap();
    assert_eq!(page.len(), 10);
    assert_eq!(next, None, "a10000 was the last");
}

#[tokio::test]
async fn unregistered_or_disabled_agents_get_no_token() {
    let ca = TestCa::start();
    let result = ca
        .try_token("acme", "prod", "ghost", CreateTokenRequest::default())
        .await;
    assert_eq!(refusal(result), (404, "agent_not_found".into()));
    ca.register("acme", "prod", "bot").await;
    ca.set_enabled("acme", "prod", "bot", false).await;
    let result = ca
        .try_token("acme", "prod", "bot", CreateTokenRequest::default())
        .await;
    assert_eq!(refusal(result), (403, "agent_disabled".into()));
    for (ttl, uses) in [
        (Some(0), None),
        (Some(8 * 86_400), None),
        (None, Some(0)),
        (None, Some(2_000_000)),
    ] {
        ca.set_enabled("acme", "prod", "bot", true).await;
        let result = ca
            .try_token(
                "acme",
                "prod",
                "bot",
                CreateTokenRequest {
                    ttl_seconds: ttl,
                    uses,
                },
            )
            .await;
        assert_eq!(refusal(result).0, 400, "ttl {ttl:?} uses {uses:?}");
    }
}

/// Every malformed enrollment is refused with a clear error and leaves the
/// token unused: the last, well-formed enrollment with the same
/// single-use token still succeeds.
#[tokio::test]
async fn bad_enrollments_are_refused_and_leave_the_token_unused() {
    let ca = TestCa::start();
    ca.register("acme", "prod", "bot").await;
    let token = ca.token("acme", "prod", "bot", 1).await;
    let good_csr = csr();
    let http = reqwest::Client::builder()
        .use_preconfigured_tls(
            agentca::client::client_config(&CaTrust::Bundle(ca.bundle()), None).unwrap(),
        )
        .build()
        .unwrap();
    let url = format!("{}/v1/enroll", ca.url);
    let post = |body: Vec<u8>| {
        let http = http.clone();
        let url = url.clone();
        async move {
            let resp = http.post(url).body(body).send().await.unwrap();
            let status = resp.status().as_u16();
            let body: agentca::wire::ErrorBody = resp.json().await.expect("a JSON error body");
            (status, body.error)
        }
    };
    let json = |token: &str, csr: &str| {
        serde_json::to_vec(&EnrollRequest {
            token: token.into(),
            csr: csr.into(),
        })
        .unwrap()
    };

    let mut tampered = pem::parse(&good_csr).unwrap().into_contents();
    let n = tampered.len();
    tampered[n - 3] ^= 0x55;
    let tampered = pem::encode(&pem::Pem::new("CERTIFICATE REQUEST", tampered));
    let cases: Vec<(Vec<u8>, u16, &str)> = vec![
        (b"{not json".to_vec(), 400, "invalid_json"),
        (b"[]".to_vec(), 400, "invalid_json"),
        (br#"{"token":"x"}"#.to_vec(), 400, "invalid_json"),
        (
            format!(r#"{{"token":"{token}","csr":"x","extra":1}}"#).into_bytes(),
            400,
            "invalid_json",
        ),
        (vec![b' '; 70_000], 413, "body_too_large"),
        (json(&token, "not a pem"), 400, "csr_malformed"),
        (
            json(
                &token,
                "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n",
            ),
            400,
            "csr_malformed",
        ),
        (json(&token, &tampered), 400, "csr_signature_invalid"),
        (json(&token, &ca.bundle().to_pem()), 400, "csr_malformed"),
        (json("agentca-bt-unknown", &good_csr), 401, "token_invalid"),
        (json("", &good_csr), 401, "token_invalid"),
        (json(&"x".repeat(10_000), &good_csr), 401, "token_invalid"),
        (json(&ca.admin_token(), &good_csr), 401, "token_invalid"),
    ];
    for (body, status, code) in cases {
        let shown = String::from_utf8_lossy(&body[..body.len().min(80)]).into_owned();
        assert_eq!(post(body).await, (status, code.to_owned()), "{shown}");
    }
    ca.enroll(&token).await.expect("the token is still unused");
    assert_eq!(refusal(ca.enroll(&token).await), (401, "token_used".into()));
}

#[tokio::test]
async fn expired_tokens_and_disabled_agents_do_not_enroll() {
    let ca = TestCa::start();
    ca.register("acme", "prod", "bot").await;
    let short = ca
        .try_token(
            "acme",
            "prod",
            "bot",
            CreateTokenRequest {
                ttl_seconds: Some(1),
                uses: Some(1),
            },
        )
        .await
        .unwrap();
    let token = ca.token("acme", "prod", "bot", 1).await;
    ca.set_enabled("acme", "prod", "bot", false).await;
    assert_eq!(
        refusal(ca.enroll(&token).await),
        (403, "agent_disabled".into())
    );
    ca.set_enabled("acme", "prod", "bot", true).await;
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    assert_eq!(
        refusal(ca.enroll(&short.token).await),
        (401, "token_expired".into())
    );
    ca.enroll(&token)
        .await
        .expect("the token refused while the agent was disabled is still unused");
}

#[tokio::test]
async fn sixty_four_concurrent_enrollments_with_one_single_use_token_issue_one_certificate() {
    let mut ca = TestCa::start();
    ca.register("acme", "prod", "bot").await;
    let token = ca.token("acme", "prod", "bot", 1).await;
    let client = ca.client();
    let csrs: Vec<String> = (0..64).map(|_| csr()).collect();
    let tasks: Vec<_> = csrs
        .into_iter()
        .map(|csr| {
            let client = client.clone();
            let token = token.clone();
            tokio::spawn(async move { client.enroll(&token, &csr).await })
        })
        .collect();
    let mut issued = Vec::new();
    for task in tasks {
        match task.await.unwrap() {
            Ok(cert) => issued.push(cert.serial),
            Err(e) => assert_eq!(refusal::<()>(Err(e)), (401, "token_used".into())),
        }
    }
    assert_eq!(issued.len(), 1);
    assert_eq!(
        ca.show("acme", "prod", "bot").await.live_certificates.len(),
        1
    );
    // The trail names the one certificate, and no refusal names one: those
    // refused when the token was found used at commit were signed, never
    // issued. Beyond the first few, the refusals are counted into one
    // event, written when the CA stops at the latest.
    ca.stop();
    ca.start_again();
    let trail: agentca::wire::AuditPage = ca
        .admin(
            Method::GET,
            "/v1/admin/audit?since=0&limit=1000",
            None::<&()>,
        )
        .await
        .unwrap();
    let enrolls: Vec<_> = trail
        .events
        .iter()
        .filter(|e| e.action == "enroll")
        .collect();
    let refusals: u64 = enrolls
        .iter()
        .filter(|e| e.outcome == "refused")
        .map(|e| e.count.unwrap_or(1))
        .sum();
    assert_eq!(refusals, 63, "{enrolls:#?}");
    for event in enrolls {
        match event.outcome.as_str() {
            "ok" => assert_eq!(event.serial.as_ref(), Some(&issued[0])),
            _ => assert_eq!(event.serial, None, "{event:?}"),
        }
    }
}

#[tokio::test]
async fn a_pool_token_enrolls_exactly_its_uses() {
    let ca = TestCa::start();
    ca.register("acme", "prod", "pool").await;
    let token = ca.token("acme", "prod", "pool", 3).await;
    let mut instances = std::collections::HashSet::new();
    for _ in 0..3 {
        instances.insert(ca.enroll(&token).await.unwrap().0.instance_id);
    }
    assert_eq!(instances.len(), 3, "each enrollment is its own instance");
    assert_eq!(refusal(ca.enroll(&token).await), (401, "token_used".into()));
}

#[tokio::test]
async fn a_certificate_renews_once_and_a_second_key_is_a_clone() {
    let ca = TestCa::start();
    let (issued, key) = ca.enrolled("acme", "prod", "bot").await;
    let client = ca.client_with(&issued.certificate_chain, &key);

    let first_csr = csr();
    let first = client.renew(&first_csr).await.unwrap();
    // A retry with the same CSR (a lost response) gets the same certificate.
    let retry = client.renew(&first_csr).await.unwrap();
    assert_eq!(retry, first);

    // Another key for the same certificate: someone else holds a copy.
    let other_csr = csr();
    assert_eq!(
        refusal(client.renew(&other_csr).await),
        (409, "clone_detected".into())
    );
    let shown = ca.show("acme", "prod", "bot").await;
    assert_eq!(shown.clone_alerts.len(), 1);
    assert_eq!(shown.clone_alerts[0].serial, issued.serial);
    assert_eq!(shown.clone_alerts[0].instance_id, issued.instance_id);
    assert_eq!(shown.live_certificates.len(), 2, "the clone got nothing");
}

#[tokio::test]
async fn concurrent_renewals_of_one_certificate_with_different_keys_issue_once() {
    let ca = TestCa::start();
    let (issued, key) = ca.enrolled("acme", "prod", "bot").await;
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let client = ca.client_with(&issued.certificate_chain, &key);
            let csr = csr();
            tokio::spawn(async move { client.renew(&csr).await })
        })
        .collect();
    let mut ok = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(_) => ok += 1,
            Err(e) => assert_eq!(refusal::<()>(Err(e)), (409, "clone_detected".into())),
        }
    }
    assert_eq!(ok, 1);
    assert_eq!(ca.show("acme", "prod", "bot").await.clone_alerts.len(), 15);
}

#[tokio::test]
async fn renewal_refuses_what_it_must() {
    let ca = TestCa::start();
    let (issued, key) = ca.enrolled("acme", "prod", "bot").await;
    let fresh_csr = || csr();

    // No client certificate.
    assert_eq!(
        refusal(ca.client().renew(&fresh_csr()).await),
        (401, "client_certificate_required".into())
    );

    // A CSR for the current key.
    let client = ca.client_with(&issued.certificate_chain, &key);
    assert_eq!(
        refusal(client.renew(&key.csr_pem().unwrap()).await),
        (400, "key_reused".into())
    );

    // A malformed CSR.
    assert_eq!(
        refusal(client.renew("garbage").await),
        (400, "csr_malformed".into())
    );

    // A certificate of another CA with the same trust domain and identity.
    let other = TestCa::start();
    let (foreign, foreign_key) = other.enrolled("acme", "prod", "bot").await;
    let result = ca
        .client_with(&foreign.certificate_chain, &foreign_key)
        .renew(&fresh_csr())
        .await;
    assert_eq!(refusal(result), (401, "certificate_unknown".into()));

    // A disabled agent.
    ca.set_enabled("acme", "prod", "bot", false).await;
    assert_eq!(
        refusal(client.renew(&fresh_csr()).await),
        (403, "agent_disabled".into())
    );
    ca.set_enabled("acme", "prod", "bot", true).await;

    // None of that used up the one renewal.
    client
        .renew(&fresh_csr())
        .await
        .expect("the certificate still renews");
}

#[tokio::test]
async fn an_expired_certificate_does_not_renew() {
    let ca = TestCa::start_with(&[], &["--min-ttl", "1s"]);
    ca.register_with_ttl("acme", "prod", "short", Some(1)).await;
    let (issued, key) = ca
        .enroll(&ca.token("acme", "prod", "short", 1).await)
        .await
        .unwrap();
    assert_eq!((issued.not_after - issued.not_before).whole_seconds(), 31);
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let csr = csr();
    let result = ca
        .client_with(&issued.certificate_chain, &key)
        .renew(&csr)
        .await;
    assert_eq!(refusal(result), (401, "certificate_expired".into()));
}

#[tokio::test]
async fn registrations_tokens_and_certificates_survive_a_crash() {
    for store in ["redb", "sled"] {
        let mut ca = TestCa::start_with(&["--store", store], &[]);
        ca.register("acme", "prod", "bot").await;
        let unused = ca.token("acme", "prod", "bot", 1).await;
        let used = ca.token("acme", "prod", "bot", 1).await;
        let (issued, key) = ca.enroll(&used).await.unwrap();

        ca.restart();

        let shown = ca.show("acme", "prod", "bot").await;
        assert_eq!(shown.live_certificates.len(), 1, "{store}");
        assert_eq!(shown.live_certificates[0].serial, issued.serial, "{store}");
        assert_eq!(
            refusal(ca.enroll(&used).await),
            (401, "token_used".into()),
            "{store}"
        );
        ca.enroll(&unused)
            .await
            .unwrap_or_else(|e| panic!("{store}: the unused token works: {e}"));
        let csr = csr();
        ca.client_with(&issued.certificate_chain, &key)
            .renew(&csr)
            .await
            .unwrap_or_else(|e| panic!("{store}: the issuance record survived: {e}"));
    }
}

#[tokio::test]
async fn health_and_bundle_are_public() {
    let ca = TestCa::start();
    let health = ca.client().health().await.unwrap();
    let intermediate = std::fs::read_to_string(ca.data_dir.join("intermediate.pem")).unwrap();
    let der = leaf_der(&intermediate);
    let (_, intermediate) = x509_parser::parse_x509_certificate(&der).unwrap();
    assert_eq!(
        health,
        Health {
            status: "ok".into(),
            trust_domain: "example.org".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            intermediate_not_after: intermediate.validity().not_after.to_datetime(),
        }
    );
    let pinned = CaClient::new(&ca.url, CaTrust::Pinned(ca.root_fingerprint()), None).unwrap();
    let bundle = pinned.bundle().await.unwrap();
    assert_eq!(bundle.to_pem(), ca.bundle().to_pem());
}

#[tokio::test]
async fn a_wrong_pin_refuses_the_ca() {
    let ca = TestCa::start();
    let other = TestCa::start();
    let client = CaClient::new(&ca.url, CaTrust::Pinned(other.root_fingerprint()), None).unwrap();
    let err = client.bundle().await.unwrap_err();
    assert!(
        matches!(err, agentca::client::ClientError::Transport(ref m) if m.contains("pinned root")),
        "{err}"
    );
}

#[tokio::test]
async fn the_issued_certificate_carries_the_identity_and_the_instance() {
    let ca = TestCa::start();
    let (issued, _) = ca.enrolled("acme", "prod", "bot").await;
    let der = leaf_der(&issued.certificate_chain);
    let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
    let sans: Vec<String> = cert
        .subject_alternative_name()
        .unwrap()
        .unwrap()
        .value
        .general_names
        .iter()
        .map(|n| format!("{n:?}"))
        .collect();
    assert_eq!(sans, [format!("URI({:?})", issued.spiffe_id.to_string())]);
    let serial_attr: Vec<_> = cert
        .subject()
        .iter_attributes()
        .filter(|a| a.attr_type().to_id_string() == "2.5.4.5")
        .map(|a| a.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(serial_attr, [issued.instance_id.to_string()]);
    assert_eq!(cert.raw_serial(), issued.serial.as_bytes());
    assert_eq!(cert.raw_serial().len(), 16);
    let id: AgentId = issued.spiffe_id.to_string().parse().unwrap();
    assert_eq!(id.tenant().as_str(), "acme");
}

#[tokio::test]
async fn every_acknowledged_enrollment_survives_a_kill_under_load() {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Arc;
    // The CA is killed once this many enrollments are acknowledged (or
    // after 1.5 s on a slow machine): well under the 1000 certificates one
    // `show` lists, so every acknowledged one can be looked for.
    const KILL_AFTER: usize = 400;
    let mut ca = TestCa::start();
    ca.register("acme", "prod", "pool").await;
    let token = ca.token("acme", "prod", "pool", 100_000).await;
    let client = ca.client();
    let stop = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicUsize::new(0));
    let workers: Vec<_> = (0..16)
        .map(|_| {
            let (client, token) = (client.clone(), token.clone());
            let (stop, count) = (stop.clone(), count.clone());
            tokio::spawn(async move {
                let mut acknowledged = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let csr = csr();
                    match client.enroll(&token, &csr).await {
                        Ok(issued) => {
                            acknowledged.push(issued.serial);
                            count.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(_) => break,
                    }
                }
                acknowledged
            })
        })
        .collect();
    let deadline = std::time::Instant::now() + std::time::Duration::from_millis(1500);
    while count.load(Ordering::Relaxed) < KILL_AFTER && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    ca.kill();
    stop.store(true, Ordering::Relaxed);
    let mut acknowledged = Vec::new();
    for w in workers {
        acknowledged.extend(w.await.unwrap());
    }
    assert!(
        acknowledged.len() > 20,
        "the load ran: {}",
        acknowledged.len()
    );

    ca.restart();
    let shown = ca.show("acme", "prod", "pool").await;
    assert!(!shown.live_certificates_truncated, "{}", acknowledged.len());
    let on_record: std::collections::HashSet<_> = shown
        .live_certificates
        .iter()
        .map(|c| c.serial.clone())
        .collect();
    let lost: Vec<_> = acknowledged
        .iter()
        .filter(|s| !on_record.contains(s))
        .collect();
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged certificates lost",
        lost.len(),
        acknowledged.len()
    );
}

#[tokio::test]
async fn an_agent_with_more_live_certificates_than_a_listing_shows_says_so() {
    const SHOWN: usize = 1000;
    // One agent of many instances: more than the default issuance limit.
    let ca = TestCa::start_with(&[], &["--max-certs-per-agent", "100000"]);
    ca.register("acme", "prod", "pool").await;
    let token = ca.token("acme", "prod", "pool", 10_000).await;
    let client = ca.client();
    let enroll = |n: usize| {
        let workers: Vec<_> = (0..8)
            .map(|w| {
                let (client, token) = (client.clone(), token.clone());
                tokio::spawn(async move {
                    for _ in (w..n).step_by(8) {
                        client.enroll(&token, &csr()).await.unwrap();
                    }
                })
            })
            .collect();
        async move {
            for w in workers {
                w.await.unwrap();
            }
        }
    };
    enroll(SHOWN).await;
    let shown = ca.show("acme", "prod", "pool").await;
    assert_eq!(shown.live_certificates.len(), SHOWN);
    assert!(!shown.live_certificates_truncated);

    enroll(1).await;
    let shown = ca.show("acme", "prod", "pool").await;
    assert_eq!(shown.live_certificates.len(), SHOWN);
    assert!(shown.live_certificates_truncated);
    let listed: Vec<AgentInfo> = ca
        .admin::<(), _>(Method::GET, "/v1/admin/agents?tenant=acme", None)
        .await
        .unwrap();
    assert!(listed[0].live_certificates_truncated);

    // Revoking the agent reaches every certificate, listed or not.
    let revoked = ca
        .revoke_agent("acme", "prod", "pool", "keyCompromise")
        .await;
    assert_eq!(revoked.revoked, SHOWN + 1);
}
