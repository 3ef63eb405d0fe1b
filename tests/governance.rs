//! End-to-end: governing an agent over its life, against the real binary
//! and the example service. A scope blocked (per agent, tenant, or for
//! everyone) or withdrawn by an update is refused within a second while
//! the agent's other scopes keep working with the same certificate; a
//! verifier started after a block refuses it before its first request; a
//! retired agent gets nothing again and its name is not silently reused;
//! an auditor reads and changes nothing; issuance events say what each
//! certificate granted.

mod common;

use std::time::{Duration, Instant};

use agentca::client::PrivateKey;
use agentca::wire::{
    AgentInfo, AgentVersion, AuditEvent, AuditPage, BlockScopeRequest, CreateAdminRequest,
    CreateAdminResponse, IssuedCertificate, RegisterAgentRequest, ScopeBlock, UpdateAgentRequest,
};
use common::{agent_client, fails_with, ok, refusal, service_files, Service, TestCa};
use reqwest::Method;

async fn register_scoped(ca: &TestCa, agent: &str, scopes: &[&str]) -> AgentInfo {
    let req = RegisterAgentRequest {
        tenant: "acme".into(),
        env: "prod".into(),
        agent: agent.into(),
        owner: "team-tickets".into(),
        purpose: "governance test".into(),
        ttl_seconds: None,
        scopes: scopes.iter().map(|s| s.to_string()).collect(),
        reuse_retired: false,
    };
    ca.admin(Method::POST, "/v1/admin/agents", Some(&req))
        .await
        .unwrap()
}

/// `GET /tickets` (tickets:read) or `POST /tickets` (tickets:write) at the
/// example service: the status and the body.
async fn call(client: &reqwest::Client, service: &Service, write: bool) -> (u16, String) {
    let url = format!("{}/tickets", service.url);
    let req = if write {
        client.post(url)
    } else {
        client.get(url)
    };
    let resp = req.send().await.expect("the service answers");
    (resp.status().as_u16(), resp.text().await.unwrap())
}

/// Waits up to a second after `since` for the call to answer `status`
/// with `code` in the body; panics with what it answered instead.
async fn within_a_second(
    client: &reqwest::Client,
    service: &Service,
    write: bool,
    status: u16,
    code: &str,
    since: Instant,
) {
    loop {
        let (got, body) = call(client, service, write).await;
        if got == status && body.contains(code) {
            assert!(
                since.elapsed() < Duration::from_secs(1),
                "{status} {code} only after {:?}",
                since.elapsed()
            );
            return;
        }
        assert!(
            since.elapsed() < Duration::from_secs(1),
            "after {:?}, {} /tickets answers {got} {body}, not {status} {code}",
            since.elapsed(),
            if write { "POST" } else { "GET" },
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn serial_hex(issued: &IssuedCertificate) -> String {
    issued.serial.to_string()
}

#[tokio::test]
async fn blocks_and_demotions_take_scopes_away_at_once_and_leave_the_rest() {
    let mut ca = TestCa::start();
    let dir = service_files(&ca).await;
    register_scoped(&ca, "bot", &["tickets:read", "tickets:write"]).await;
    let (cert, key) = ca
        .enroll(&ca.token("acme", "prod", "bot", 1).await)
        .await
        .unwrap();
    let service = Service::start(&ca, &dir, &[]);
    ca.wait_feed_subscribers(1).await;
    let bot = agent_client(&ca, &cert, &key);
    assert_eq!(call(&bot, &service, false).await.0, 200);
    assert_eq!(call(&bot, &service, true).await.0, 200);

    // The kill switch for one agent's write tool.
    let out = ok(ca.command().args([
        "scope",
        "block",
        "tickets:write",
        "--tenant",
        "acme",
        "--env",
        "prod",
        "--agent",
        "bot",
        "--reason",
        "runaway writes",
    ]));
    let returned = Instant::now();
    let block: ScopeBlock = serde_json::from_str(&out).unwrap();
    assert_eq!(block.target.as_deref(), Some("acme/prod/bot"));
    assert_eq!(block.certificates, Some(1), "the bot's live certificate");
    within_a_second(&bot, &service, true, 403, "scope_blocked", returned).await;
    // Reading still works with the same certificate; the agent stays enrolled.
    assert_eq!(call(&bot, &service, false).await.0, 200);
    let info = ca.show("acme", "prod", "bot").await;
    assert!(info.enabled && info.retired_at.is_none());
    assert_eq!(info.live_certificates.len(), 1);
    // Listed, and kept across a restart of the CA.
    ca.restart();
    ca.wait_feed_subscribers(1).await;
    let blocks = ok(ca.command().args(["scope", "blocks"]));
    assert!(blocks.contains("runaway writes"), "{blocks}");
    assert_eq!(call(&bot, &service, true).await.0, 403);
    // While it stands, a new certificate leaves the scope out.
    let (blocked_cert, blocked_key) = ca.renewed(&cert, &key).await;
    let renewed_leaf = common::leaf_der(&blocked_cert.certificate_chain);
    assert_eq!(scopes_of(&renewed_leaf), ["tickets:read"]);

    // Lifted: the same first certificate may write again.
    ok(ca
        .command()
        .args(["scope", "unblock", &block.id.to_string()]));
    let returned = Instant::now();
    within_a_second(&bot, &service, true, 200, "ticket created", returned).await;

    // A tenant's block and a global one behave the same.
    for (tenant, env) in [(Some("acme"), None), (None, None)] {
        let req = BlockScopeRequest {
            scope: "tickets:write".into(),
            tenant: tenant.map(Into::into),
            env,
            agent: None,
            reason: None,
        };
        let block: ScopeBlock = ca
            .admin(Method::POST, "/v1/admin/scopes/blocks", Some(&req))
            .await
            .unwrap();
        let returned = Instant::now();
        within_a_second(&bot, &service, true, 403, "scope_blocked", returned).await;
        assert_eq!(call(&bot, &service, false).await.0, 200);
        let _: ScopeBlock = ca
            .admin::<(), _>(
                Method::DELETE,
                &format!("/v1/admin/scopes/blocks/{}", block.id),
                None,
            )
            .await
            .unwrap();
        let returned = Instant::now();
        within_a_second(&bot, &service, true, 200, "ticket created", returned).await;
    }

    // A verifier that starts after a block refuses it from its first
    // request: it loads the CA's state before it listens.
    let global = BlockScopeRequest {
        scope: "tickets:write".into(),
        ..Default::default()
    };
    let block: ScopeBlock = ca
        .admin(Method::POST, "/v1/admin/scopes/blocks", Some(&global))
        .await
        .unwrap();
    drop(service);
    let service = Service::start(&ca, &dir, &[]);
    let (status, body) = call(&bot, &service, true).await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("scope_blocked"), "{body}");
    assert_eq!(call(&bot, &service, false).await.0, 200);
    let _: ScopeBlock = ca
        .admin::<(), _>(
            Method::DELETE,
            &format!("/v1/admin/scopes/blocks/{}", block.id),
            None,
        )
        .await
        .unwrap();

    // A demotion: the update removes tickets:read; the same certificate
    // may no longer read, and may still write.
    ca.wait_feed_subscribers(1).await;
    let out = ok(ca.command().args([
        "update",
        "--tenant",
        "acme",
        "--env",
        "prod",
        "--agent",
        "bot",
        "--scope",
        "tickets:write",
    ]));
    let returned = Instant::now();
    let updated: AgentInfo = serde_json::from_str(&out).unwrap();
    assert_eq!(updated.version, 2);
    assert_eq!(updated.scopes, ["tickets:write"]);
    within_a_second(&bot, &service, false, 403, "scope_withdrawn", returned).await;
    within_a_second(&bot, &service, true, 200, "ticket created", returned).await;
    // The agent's next certificate lacks it.
    let (next, next_key) = ca.renewed(&blocked_cert, &blocked_key).await;
    assert_eq!(
        scopes_of(&common::leaf_der(&next.certificate_chain)),
        ["tickets:write"]
    );
    let fresh = agent_client(&ca, &next, &next_key);
    let (status, body) = call(&fresh, &service, false).await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("missing_scope"), "{body}");
    assert_eq!(call(&fresh, &service, true).await.0, 200);

    // The audit trail says which scopes each certificate carried, and the
    // registration version they came from, from issuance events alone.
    let issued = issuance_events(&ca).await;
    let carried = |serial: &str| {
        issued
            .iter()
            .find(|e| e.serial.as_ref().map(|s| s.to_string()).as_deref() == Some(serial))
            .map(|e| (e.scopes.clone().unwrap_or_default(), e.version))
            .unwrap_or_else(|| panic!("no issuance event of {serial}"))
    };
    assert_eq!(
        carried(&serial_hex(&cert)),
        (vec!["tickets:read".into(), "tickets:write".into()], Some(1))
    );
    assert_eq!(
        carried(&serial_hex(&blocked_cert)),
        (vec!["tickets:read".into()], Some(1))
    );
    assert_eq!(
        carried(&serial_hex(&next)),
        (vec!["tickets:write".into()], Some(2))
    );
    // And the history what the registration allowed when.
    let history: Vec<AgentVersion> = serde_json::from_str(&ok(ca.command().args([
        "history", "--tenant", "acme", "--env", "prod", "--agent", "bot",
    ])))
    .unwrap();
    let versions: Vec<(u64, &str, Vec<String>)> = history
        .iter()
        .map(|v| (v.version, v.change.as_str(), v.scopes.clone()))
        .collect();
    assert_eq!(
        versions,
        [
            (
                1,
                "register",
                vec!["tickets:read".into(), "tickets:write".into()]
            ),
            (2, "update", vec!["tickets:write".into()]),
        ]
    );
    assert_eq!(history[1].by, "admin");
}

fn scopes_of(der: &[u8]) -> Vec<String> {
    let (_, leaf) = x509_parser::parse_x509_certificate(der).unwrap();
    leaf.extensions()
        .iter()
        .find(|e| e.oid.as_bytes() == agentca::scopes::SCOPES_OID_DER)
        .map(|e| agentca::scopes::decode(e.value).unwrap())
        .unwrap_or_default()
}

async fn issuance_events(ca: &TestCa) -> Vec<AuditEvent> {
    whole_trail(ca)
        .await
        .into_iter()
        .filter(|e| (e.action == "enroll" || e.action == "renew") && e.outcome == "ok")
        .collect()
}

#[tokio::test]
async fn a_retired_agent_gets_nothing_again_and_its_name_is_reused_only_on_purpose() {
    let ca = TestCa::start();
    register_scoped(&ca, "old-bot", &["tickets:read"]).await;
    let (cert, key) = ca
        .enroll(&ca.token("acme", "prod", "old-bot", 1).await)
        .await
        .unwrap();
    let spare = ca.token("acme", "prod", "old-bot", 1).await;

    let out = ok(ca.command().args([
        "retire", "--tenant", "acme", "--env", "prod", "--agent", "old-bot",
    ]));
    let retired: AgentInfo = serde_json::from_str(&out).unwrap();
    assert!(retired.retired_at.is_some() && !retired.enabled);
    assert_eq!(retired.version, 2);
    assert!(
        retired.live_certificates.is_empty(),
        "its certificate is revoked"
    );

    // Its unused token, its renewal, a new token: all refused.
    assert_eq!(refusal(ca.enroll(&spare).await).1, "token_voided");
    let next = PrivateKey::generate(agentca::client::KeyAlgorithm::P256).unwrap();
    let renewal = ca
        .client_with(&cert.certificate_chain, &key)
        .renew(&next.csr_pem().unwrap())
        .await;
    assert_eq!(refusal(renewal).1, "certificate_revoked");
    assert_eq!(
        refusal(
            ca.try_token("acme", "prod", "old-bot", Default::default())
                .await
        ),
        (403, "agent_retired".into())
    );
    // It cannot be enabled or changed either.
    let enabled: Result<AgentInfo, _> = ca
        .admin::<(), _>(
            Method::POST,
            "/v1/admin/agents/acme/prod/old-bot/enable",
            None,
        )
        .await;
    assert_eq!(refusal(enabled), (403, "agent_retired".into()));
    let update = UpdateAgentRequest {
        owner: Some("someone else".into()),
        ..Default::default()
    };
    let changed: Result<AgentInfo, _> = ca
        .admin(
            Method::PATCH,
            "/v1/admin/agents/acme/prod/old-bot",
            Some(&update),
        )
        .await;
    assert_eq!(refusal(changed), (403, "agent_retired".into()));
    // Retiring twice is refused, not repeated.
    let err = fails_with(
        ca.command().args([
            "retire", "--tenant", "acme", "--env", "prod", "--agent", "old-bot",
        ]),
        4,
    );
    assert!(err.contains("agent_retired"), "{err}");

    // The name is not silently reused...
    let again = RegisterAgentRequest {
        tenant: "acme".into(),
        env: "prod".into(),
        agent: "old-bot".into(),
        owner: "team-new".into(),
        purpose: "a new agent under an old name".into(),
        ttl_seconds: None,
        scopes: Vec::new(),
        reuse_retired: false,
    };
    let refused: Result<AgentInfo, _> = ca
        .admin(Method::POST, "/v1/admin/agents", Some(&again))
        .await;
    assert_eq!(refusal(refused), (403, "agent_retired".into()));
    // ...only on purpose, and on the record.
    let out = ok(ca.command().args([
        "register",
        "--tenant",
        "acme",
        "--env",
        "prod",
        "--agent",
        "old-bot",
        "--owner",
        "team-new",
        "--purpose",
        "a new agent under an old name",
        "--reuse-retired",
    ]));
    let reused: AgentInfo = serde_json::from_str(&out).unwrap();
    assert_eq!(reused.version, 3);
    assert!(reused.enabled && reused.retired_at.is_none());
    assert!(reused.scopes.is_empty());
    ca.enroll(&ca.token("acme", "prod", "old-bot", 1).await)
        .await
        .unwrap();
    // The history stays whole.
    let history: Vec<AgentVersion> = ca
        .admin::<(), _>(
            Method::GET,
            "/v1/admin/agents/acme/prod/old-bot/history",
            None,
        )
        .await
        .unwrap();
    let changes: Vec<(&str, bool)> = history
        .iter()
        .map(|v| (v.change.as_str(), v.retired))
        .collect();
    assert_eq!(
        changes,
        [("register", false), ("retire", true), ("reuse", false)]
    );
    let trail = ca
        .admin::<(), AuditPage>(Method::GET, "/v1/admin/audit?limit=1000", None)
        .await
        .unwrap();
    let retirement = trail
        .events
        .iter()
        .find(|e| e.action == "retire" && e.outcome == "ok")
        .expect("the retirement is audited");
    assert_eq!(retirement.version, Some(2));
    assert!(trail.events.iter().any(|e| e.action == "register"
        && e.reason
            .as_deref()
            .is_some_and(|r| r.contains("reusing a retired name"))));
}

#[tokio::test]
async fn updates_are_versioned_checked_against_the_version_read_and_answer_for_a_time() {
    let ca = TestCa::start();
    let first = register_scoped(&ca, "bot", &["tickets:read"]).await;
    assert_eq!(first.version, 1);
    let registered_at = first.updated_at;
    let client = ca.client();
    let token = ca.admin_token();
    let grow = UpdateAgentRequest {
        scopes: Some(vec!["tickets:read".into(), "tickets:write".into()]),
        ..Default::default()
    };
    let path = "/v1/admin/agents/acme/prod/bot";
    let v2: AgentInfo = client
        .call_if_match(Method::PATCH, path, Some(&token), Some(&grow), 1)
        .await
        .unwrap();
    assert_eq!(v2.version, 2);
    // An update based on version 1 again is stale.
    let shrink = UpdateAgentRequest {
        ttl_seconds: Some(120),
        ..Default::default()
    };
    let stale: Result<AgentInfo, _> = client
        .call_if_match(Method::PATCH, path, Some(&token), Some(&shrink), 1)
        .await;
    assert_eq!(refusal(stale), (409, "version_conflict".into()));
    let err = fails_with(
        ca.command().args([
            "update",
            "--tenant",
            "acme",
            "--env",
            "prod",
            "--agent",
            "bot",
            "--ttl",
            "2m",
            "--if-version",
            "1",
        ]),
        5,
    );
    assert!(err.contains("version_conflict"), "{err}");
    // Bad input leaves it untouched.
    for (body, code) in [
        (r#"{"scopes":["Not A Scope"]}"#, "invalid_request"),
        (r#"{"ttl_seconds":1}"#, "ttl_out_of_range"),
        (r#"{"owner":""}"#, "invalid_request"),
        (r#"{"colour":"blue"}"#, "invalid_json"),
    ] {
        let resp = ca
            .http()
            .patch(format!("{}{path}", ca.url))
            .bearer_auth(&token)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 400, "{body}");
        let text = resp.text().await.unwrap();
        assert!(text.contains(code), "{body}: {text}");
    }
    let resp = ca
        .http()
        .patch(format!("{}{path}", ca.url))
        .bearer_auth(&token)
        .header("if-match", "\"two\"")
        .json(&shrink)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    assert_eq!(ca.show("acme", "prod", "bot").await.version, 2);

    // The version in force at a time: the last one made by then (times
    // are whole seconds, so a version made in the same second as another
    // is the one in force at that second).
    let history: Vec<AgentVersion> = ca
        .admin::<(), _>(Method::GET, &format!("{path}/history"), None)
        .await
        .unwrap();
    assert_eq!(
        history.iter().map(|v| v.version).collect::<Vec<_>>(),
        [1, 2]
    );
    let at = |t: time::OffsetDateTime| format!("{path}/history?at={}", t.unix_timestamp());
    for t in [
        registered_at - time::Duration::days(1),
        registered_at,
        history[1].at - time::Duration::seconds(1),
        history[1].at,
        time::OffsetDateTime::now_utc() + time::Duration::minutes(1),
    ] {
        let expected: Vec<&AgentVersion> =
            history.iter().rfind(|v| v.at <= t).into_iter().collect();
        let answered: Vec<AgentVersion> =
            ca.admin::<(), _>(Method::GET, &at(t), None).await.unwrap();
        assert_eq!(answered.iter().collect::<Vec<_>>(), expected, "at {t}");
    }
    // Before the registration there is none; after the update, version 2.
    let before: Vec<AgentVersion> = ca
        .admin::<(), _>(
            Method::GET,
            &at(registered_at - time::Duration::days(1)),
            None,
        )
        .await
        .unwrap();
    assert!(before.is_empty(), "not registered yet then");
    let now: Vec<AgentVersion> = ca
        .admin::<(), _>(
            Method::GET,
            &at(time::OffsetDateTime::now_utc() + time::Duration::minutes(1)),
            None,
        )
        .await
        .unwrap();
    assert_eq!(now[0].version, 2);
    assert_eq!(now[0].scopes, ["tickets:read", "tickets:write"]);
    assert_eq!(history[0].scopes, ["tickets:read"]);
}

#[tokio::test]
async fn an_auditor_reads_its_tenant_and_changes_nothing() {
    let ca = TestCa::start();
    register_scoped(&ca, "bot", &["tickets:read"]).await;
    ca.register("globex", "prod", "spy").await;
    let created = create_admin(&ca, "acme-auditor", Some("acme"), Some("auditor")).await;
    assert_eq!(created.admin.role, "auditor");
    let auditor = created.token;
    let client = ca.client();
    // `method path` with the auditor's token and `body` (JSON), if any.
    let as_auditor_with = |method: Method, path: &'static str, body: Option<serde_json::Value>| {
        let client = client.clone();
        let auditor = auditor.clone();
        async move {
            client
                .call::<_, serde_json::Value>(method, path, Some(&auditor), body.as_ref())
                .await
        }
    };
    let as_auditor = |method: Method, path: &'static str| as_auditor_with(method, path, None);
    // Reads of its tenant.
    let listed = as_auditor(Method::GET, "/v1/admin/agents").await.unwrap();
    let listed = listed.as_array().expect("a list of agents").clone();
    assert!(!listed.is_empty());
    assert!(
        listed.iter().all(|a| a["spiffe_id"]
            .as_str()
            .is_some_and(|id| id.contains("/tenant/acme/"))),
        "{listed:?}"
    );
    as_auditor(Method::GET, "/v1/admin/agents/acme/prod/bot")
        .await
        .unwrap();
    as_auditor(Method::GET, "/v1/admin/agents/acme/prod/bot/history")
        .await
        .unwrap();
    as_auditor(Method::GET, "/v1/admin/scopes/blocks")
        .await
        .unwrap();
    // Not another tenant's.
    assert_eq!(
        refusal(as_auditor(Method::GET, "/v1/admin/agents/globex/prod/spy").await).1,
        "forbidden"
    );
    // No change at all.
    let register = RegisterAgentRequest {
        tenant: "acme".into(),
        env: "prod".into(),
        agent: "sneaky".into(),
        owner: "x".into(),
        purpose: "x".into(),
        ttl_seconds: None,
        scopes: Vec::new(),
        reuse_retired: false,
    };
    let block = BlockScopeRequest {
        scope: "tickets:read".into(),
        tenant: Some("acme".into()),
        ..Default::default()
    };
    let grow = UpdateAgentRequest {
        scopes: Some(vec!["tickets:admin".into()]),
        ..Default::default()
    };
    let revoke = agentca::wire::RevokeRequest {
        tenant: Some("acme".into()),
        ..Default::default()
    };
    let writes = [
        (
            Method::POST,
            "/v1/admin/agents",
            serde_json::to_value(&register).ok(),
        ),
        (
            Method::PATCH,
            "/v1/admin/agents/acme/prod/bot",
            serde_json::to_value(&grow).ok(),
        ),
        (
            Method::POST,
            "/v1/admin/scopes/blocks",
            serde_json::to_value(&block).ok(),
        ),
        (
            Method::POST,
            "/v1/admin/revoke",
            serde_json::to_value(&revoke).ok(),
        ),
        (Method::POST, "/v1/admin/agents/acme/prod/bot/tokens", None),
        (Method::POST, "/v1/admin/agents/acme/prod/bot/disable", None),
        (Method::POST, "/v1/admin/agents/acme/prod/bot/retire", None),
    ];
    let attempts = writes.len();
    for (method, path, body) in writes {
        let refused = refusal(as_auditor_with(method, path, body).await);
        assert_eq!(refused, (403, "forbidden".to_string()), "{path}");
    }
    // Nothing changed, and every attempt is on the record under its name.
    let bot = ca.show("acme", "prod", "bot").await;
    assert!(bot.enabled && bot.version == 1 && bot.scopes == ["tickets:read"]);
    let trail = ca
        .admin::<(), AuditPage>(Method::GET, "/v1/admin/audit?limit=1000", None)
        .await
        .unwrap();
    let refused_writes = trail
        .events
        .iter()
        .filter(|e| {
            matches!(&e.actor, agentca::wire::Actor::Admin { name } if name == "acme-auditor")
                && e.outcome == "refused"
                && e.reason.as_deref() == Some("forbidden")
        })
        .count();
    // The writes and the other tenant's read.
    assert_eq!(refused_writes, attempts + 1);
}

#[tokio::test]
async fn an_admins_reads_are_on_the_record_counted_per_agent_and_minute() {
    let mut ca = TestCa::start();
    register_scoped(&ca, "bot", &["tickets:read"]).await;
    ca.register("acme", "prod", "other").await;
    for _ in 0..3 {
        ca.show("acme", "prod", "bot").await;
        ok(ca.command().args([
            "history", "--tenant", "acme", "--env", "prod", "--agent", "bot",
        ]));
    }
    ca.show("acme", "prod", "other").await;
    // Reads are counted and written when their minute ends, or when the
    // CA stops: reading adds nothing to the trail while it is read.
    let before = whole_trail(&ca).await;
    assert!(before.iter().all(|e| e.action != "agents.history"));
    ca.stop();
    ca.start_again();
    let trail = whole_trail(&ca).await;
    let reads = |action: &str, subject: &str| {
        trail
            .iter()
            .filter(|e| {
                e.action == action && e.subject.as_deref().is_some_and(|s| s.ends_with(subject))
            })
            .map(|e| (e.count, e.actor.clone()))
            .collect::<Vec<_>>()
    };
    let admin = agentca::wire::Actor::Admin {
        name: "admin".into(),
    };
    assert_eq!(
        reads("agents.history", "/agent/bot"),
        [(Some(3), admin.clone())]
    );
    assert_eq!(
        reads("agents.show", "/agent/bot"),
        [(Some(3), admin.clone())]
    );
    assert_eq!(
        reads("agents.show", "/agent/other"),
        [(Some(1), admin.clone())]
    );
    let history = trail.iter().find(|e| e.action == "agents.history").unwrap();
    assert!(
        history
            .reason
            .as_deref()
            .is_some_and(|r| r.starts_with("first read at ")),
        "{history:?}"
    );
}

/// The audit trail (the first 1000 events).
async fn whole_trail(ca: &TestCa) -> Vec<AuditEvent> {
    let page: AuditPage = ca
        .admin::<(), _>(Method::GET, "/v1/admin/audit?limit=1000", None)
        .await
        .unwrap();
    page.events
}

#[tokio::test]
async fn with_review_on_a_promotion_waits_for_a_second_admin_and_a_demotion_does_not() {
    let ca = TestCa::start_with(&[], &["--review-promotions-for", "acme"]);
    register_scoped(&ca, "bot", &["tickets:read"]).await;
    let second = create_admin(&ca, "second", Some("acme"), None).await;

    // The registration's scopes are a promotion too: registered without
    // them, they wait.
    let info = ca.show("acme", "prod", "bot").await;
    assert!(info.scopes.is_empty(), "{info:?}");
    assert_eq!(info.pending.len(), 1);
    let first = info.pending[0].clone();
    assert_eq!(
        first.scopes.as_deref(),
        Some(&["tickets:read".to_string()][..])
    );
    assert_eq!(first.by, "admin");

    // Its author cannot approve it; the second admin can.
    let err = fails_with(ca.command().args(["approve", &first.id.to_string()]), 4);
    assert!(err.contains("own_change"), "{err}");
    let approved: AgentInfo = ca
        .client()
        .call::<(), _>(
            Method::POST,
            &format!("/v1/admin/pending/{}/approve", first.id),
            Some(&second.token),
            None,
        )
        .await
        .unwrap();
    assert_eq!(approved.scopes, ["tickets:read"]);
    assert!(approved.pending.is_empty());

    // A scope added by one admin is not in the next certificate until
    // another approves it; a scope removed in the same change goes at once.
    let (cert, key) = ca
        .enroll(&ca.token("acme", "prod", "bot", 1).await)
        .await
        .unwrap();
    let swap = UpdateAgentRequest {
        scopes: Some(vec!["tickets:write".into()]),
        ..Default::default()
    };
    let resp = ca
        .http()
        .patch(format!("{}/v1/admin/agents/acme/prod/bot", ca.url))
        .bearer_auth(ca.admin_token())
        .json(&swap)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 202, "accepted, not done");
    let info: AgentInfo = resp.json().await.unwrap();
    assert!(info.scopes.is_empty(), "tickets:read removed at once");
    assert_eq!(info.pending.len(), 1);
    let waiting = info.pending[0].clone();
    let (next, next_key) = ca.renewed(&cert, &key).await;
    assert!(scopes_of(&common::leaf_der(&next.certificate_chain)).is_empty());
    let listed: Vec<agentca::wire::PendingChange> =
        serde_json::from_str(&ok(ca.command().arg("pending"))).unwrap();
    assert_eq!(listed, std::slice::from_ref(&waiting));

    let approved: AgentInfo = ca
        .client()
        .call::<(), _>(
            Method::POST,
            &format!("/v1/admin/pending/{}/approve", waiting.id),
            Some(&second.token),
            None,
        )
        .await
        .unwrap();
    assert_eq!(approved.scopes, ["tickets:write"]);
    let (after, _) = ca.renewed(&next, &next_key).await;
    assert_eq!(
        scopes_of(&common::leaf_der(&after.certificate_chain)),
        ["tickets:write"]
    );
    // Approved once: gone.
    let again = ca
        .client()
        .call::<(), AgentInfo>(
            Method::POST,
            &format!("/v1/admin/pending/{}/approve", waiting.id),
            Some(&second.token),
            None,
        )
        .await;
    assert_eq!(refusal(again), (404, "pending_not_found".into()));

    // A rejected change is dropped; the history says who asked and who
    // approved.
    let grow = UpdateAgentRequest {
        ttl_seconds: Some(600),
        ..Default::default()
    };
    let info: AgentInfo = ca
        .admin(Method::PATCH, "/v1/admin/agents/acme/prod/bot", Some(&grow))
        .await
        .unwrap();
    let id = info.pending[0].id;
    ok(ca.command().args(["reject", &id.to_string()]));
    assert!(ca.show("acme", "prod", "bot").await.pending.is_empty());
    assert_eq!(ca.show("acme", "prod", "bot").await.ttl_seconds, 300);
    let history: Vec<AgentVersion> = ca
        .admin::<(), _>(Method::GET, "/v1/admin/agents/acme/prod/bot/history", None)
        .await
        .unwrap();
    let who: Vec<&str> = history.iter().map(|v| v.by.as_str()).collect();
    assert_eq!(
        who,
        [
            "admin",
            "admin, approved by second",
            "admin",
            "admin, approved by second"
        ]
    );
    let trail = whole_trail(&ca).await;
    for action in ["update.propose", "update.approve", "update.reject"] {
        assert!(trail.iter().any(|e| e.action == action), "{action}");
    }
}

#[tokio::test]
async fn an_agent_following_withdrawals_renews_at_once_when_a_scope_of_its_certificate_goes() {
    use agentca::client::{Agent, AgentConfig, CaTrust};
    let ca = TestCa::start();
    let req = RegisterAgentRequest {
        tenant: "acme".into(),
        env: "prod".into(),
        agent: "bot".into(),
        owner: "team".into(),
        purpose: "renews early".into(),
        // An hour: its scheduled renewal is far away.
        ttl_seconds: Some(3600),
        scopes: vec!["tickets:read".into(), "tickets:write".into()],
        reuse_retired: false,
    };
    let _: AgentInfo = ca
        .admin(Method::POST, "/v1/admin/agents", Some(&req))
        .await
        .unwrap();
    let mut config = AgentConfig::new(ca.url.clone(), CaTrust::Pinned(ca.root_fingerprint()));
    config.token = Some(ca.token("acme", "prod", "bot", 1).await);
    config.follow_withdrawals = true;
    let agent = Agent::start(config).await.unwrap();
    let first = agent.current();
    let mut rotations = agent.rotations();
    ca.wait_feed_subscribers(1).await;

    // A change that removes nothing puts nothing on the feed for it to
    // follow, and leaves its certificate as it is...
    let owner = UpdateAgentRequest {
        owner: Some("team-b".into()),
        ..Default::default()
    };
    let _: AgentInfo = ca
        .admin(
            Method::PATCH,
            "/v1/admin/agents/acme/prod/bot",
            Some(&owner),
        )
        .await
        .unwrap();
    assert!(ca.feed(0, 0).await.scopes.is_empty());
    // ...one that withdraws a scope renews it, within seconds.
    let demote = UpdateAgentRequest {
        scopes: Some(vec!["tickets:read".into()]),
        ..Default::default()
    };
    let _: AgentInfo = ca
        .admin(
            Method::PATCH,
            "/v1/admin/agents/acme/prod/bot",
            Some(&demote),
        )
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(10), rotations.changed())
        .await
        .expect("the agent renews within seconds")
        .unwrap();
    let next = agent.current();
    assert_ne!(next.serial, first.serial);
    assert_eq!(scopes_of(next.chain[0].as_ref()), ["tickets:read"]);
    let trail = whole_trail(&ca).await;
    let renewals: Vec<&AuditEvent> = trail.iter().filter(|e| e.action == "renew").collect();
    assert_eq!(renewals.len(), 1, "one renewal, after the withdrawal only");
}

#[tokio::test]
async fn an_admins_role_changes_as_versions_and_the_last_global_admin_stays_one() {
    let ca = TestCa::start();
    let ops = create_admin(&ca, "ops", None, None).await;
    assert_eq!((ops.admin.role.as_str(), ops.admin.version), ("admin", 1));
    let register_as_ops = || {
        let token = ops.token.clone();
        let client = ca.client();
        async move {
            let req = RegisterAgentRequest {
                tenant: "acme".into(),
                env: "prod".into(),
                agent: "by-ops".into(),
                owner: "ops".into(),
                purpose: "role test".into(),
                ttl_seconds: None,
                scopes: Vec::new(),
                reuse_retired: false,
            };
            client
                .call::<_, AgentInfo>(Method::POST, "/v1/admin/agents", Some(&token), Some(&req))
                .await
        }
    };
    let out = ok(ca.command().args([
        "admin",
        "role",
        "--name",
        "ops",
        "--role",
        "auditor",
        "--if-version",
        "1",
    ]));
    let changed: agentca::wire::AdminInfo = serde_json::from_str(&out).unwrap();
    assert_eq!((changed.role.as_str(), changed.version), ("auditor", 2));
    // At once: its token changes nothing any more.
    assert_eq!(refusal(register_as_ops().await), (403, "forbidden".into()));
    // A change based on the old version is stale.
    let err = fails_with(
        ca.command().args([
            "admin",
            "role",
            "--name",
            "ops",
            "--role",
            "admin",
            "--if-version",
            "1",
        ]),
        5,
    );
    assert!(err.contains("version_conflict"), "{err}");
    // The last global admin does not become an auditor.
    let err = fails_with(
        ca.command()
            .args(["admin", "role", "--name", "admin", "--role", "auditor"]),
        5,
    );
    assert!(err.contains("last_global_admin"), "{err}");
    ok(ca
        .command()
        .args(["admin", "role", "--name", "ops", "--role", "admin"]));
    register_as_ops().await.unwrap();
    let history: Vec<agentca::wire::AdminVersion> = serde_json::from_str(&ok(ca
        .command()
        .args(["admin", "history", "--name", "ops"])))
    .unwrap();
    let versions: Vec<(u64, &str, &str, &str)> = history
        .iter()
        .map(|v| (v.version, v.change.as_str(), v.role.as_str(), v.by.as_str()))
        .collect();
    assert_eq!(
        versions,
        [
            (1, "create", "admin", "admin"),
            (2, "role", "auditor", "admin"),
            (3, "role", "admin", "admin")
        ]
    );
    let first: Vec<agentca::wire::AdminVersion> = serde_json::from_str(&ok(ca
        .command()
        .args(["admin", "history", "--name", "admin"])))
    .unwrap();
    assert_eq!(
        (first[0].change.as_str(), first[0].by.as_str()),
        ("create", "init")
    );
    let trail = whole_trail(&ca).await;
    assert_eq!(
        trail
            .iter()
            .filter(|e| e.action == "admin.role" && e.outcome == "ok")
            .count(),
        2
    );
}

/// Creates the admin `name` (of `tenant`, every tenant when `None`) with
/// `role` (`admin` when `None`); its token is in the answer.
async fn create_admin(
    ca: &TestCa,
    name: &str,
    tenant: Option<&str>,
    role: Option<&str>,
) -> CreateAdminResponse {
    let req = CreateAdminRequest {
        name: name.into(),
        tenant: tenant.map(Into::into),
        role: role.map(Into::into),
    };
    ca.admin(Method::POST, "/v1/admin/admins", Some(&req))
        .await
        .unwrap()
}
