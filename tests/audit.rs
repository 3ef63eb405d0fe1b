//! End-to-end: the audit trail. Every action and every refusal leaves
//! exactly one event, chained by hashes; `agentca audit verify` finds an
//! event changed, removed, reordered or cut off in the store, and with an
//! anchor a trail rewritten from the start; tenant admins stay in their
//! tenant; `audit export` and `audit follow` print JSON lines.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::Stdio;
use std::sync::mpsc;
use std::time::Duration;

use agentca::wire::{
    Actor, AdminInfo, AgentInfo, AuditEvent, AuditPage, CreateAdminRequest, CreateAdminResponse,
    CreateTokenRequest, RevokeRequest, TokenCreated,
};
use agentca_ca::audit::{self as chain, Head, HEAD_KEY};
use agentca_ca::store::{open, Backend, Table};
use common::{csr, fails, ok, refusal, refused_with, run, TestCa};
use reqwest::Method;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// The hash before the first event.
fn zeros() -> String {
    "0".repeat(64)
}

fn admin(name: &str) -> Actor {
    Actor::Admin { name: name.into() }
}

/// The whole trail as the API serves it, checked: hashes chained from the
/// first event, numbered 1, 2, … without gaps, ending at the CA's head.
async fn whole_trail(ca: &TestCa) -> Vec<AuditEvent> {
    whole_trail_as(ca, &ca.admin_token()).await
}

/// [`whole_trail`], read with the admin token `token`.
async fn whole_trail_as(ca: &TestCa, token: &str) -> Vec<AuditEvent> {
    let page: AuditPage = ca
        .client()
        .call::<(), _>(
            Method::GET,
            "/v1/admin/audit?since=0&limit=1000",
            Some(token),
            None,
        )
        .await
        .expect("read the audit trail");
    let n = page.events.len() as u64;
    assert_eq!(
        chain::verify_chain(&page.events, 1, &zeros()),
        Ok(n),
        "the trail is intact: {:#?}",
        page.events
    );
    assert_eq!(page.head_seq, n, "the head is the last event");
    assert_eq!(
        page.head_hash,
        page.events.last().map_or_else(zeros, |e| e.hash.clone())
    );
    page.events
}

/// Follows the trail through a test: each action must add exactly the
/// events expected of it, and nothing else.
struct Trail<'a> {
    ca: &'a TestCa,
    seen: u64,
    /// The global admin token it reads with.
    token: String,
}

impl<'a> Trail<'a> {
    async fn new(ca: &'a TestCa) -> Trail<'a> {
        let seen = whole_trail(ca).await.len() as u64;
        Trail {
            ca,
            seen,
            token: ca.admin_token(),
        }
    }

    /// The events added since the last call: exactly `n`, numbered on
    /// from the last one seen.
    async fn next_n(&mut self, n: usize) -> Vec<AuditEvent> {
        let new: Vec<AuditEvent> = whole_trail_as(self.ca, &self.token)
            .await
            .into_iter()
            .filter(|e| e.seq > self.seen)
            .collect();
        assert_eq!(
            new.len(),
            n,
            "expected {n} new event(s) after {}, got {new:#?}",
            self.seen
        );
        for (e, seq) in new.iter().zip(self.seen + 1..) {
            assert_eq!(e.seq, seq);
        }
        self.seen += n as u64;
        new
    }

    /// The one event the last action added.
    async fn next(&mut self) -> AuditEvent {
        self.next_n(1).await.remove(0)
    }

    /// Nothing was added.
    async fn none(&mut self) {
        self.next_n(0).await;
    }
}

/// What an event must say.
struct Want<'a> {
    action: &'a str,
    actor: Actor,
    subject: Option<&'a str>,
    outcome: &'a str,
    reason: Option<&'a str>,
}

impl<'a> Want<'a> {
    fn ok(action: &'a str, actor: Actor, subject: Option<&'a str>) -> Self {
        Want {
            action,
            actor,
            subject,
            outcome: "ok",
            reason: None,
        }
    }

    fn refused(action: &'a str, actor: Actor, subject: Option<&'a str>, code: &'a str) -> Self {
        Want {
            action,
            actor,
            subject,
            outcome: "refused",
            reason: Some(code),
        }
    }

    fn reason(mut self, reason: &'a str) -> Self {
        self.reason = Some(reason);
        self
    }

    /// Checks `e`, which concerns no certificate.
    #[track_caller]
    fn check(&self, e: &AuditEvent) {
        self.check_cert(e, None);
    }

    /// Checks `e`, and that it names the certificate `cert` (serial, notAfter).
    #[track_caller]
    fn check_cert(&self, e: &AuditEvent, cert: Option<(&agentca::wire::Serial, OffsetDateTime)>) {
        assert_eq!(e.action, self.action, "{e:#?}");
        assert_eq!(e.actor, self.actor, "{e:#?}");
        assert_eq!(e.subject.as_deref(), self.subject, "{e:#?}");
        assert_eq!(e.outcome, self.outcome, "{e:#?}");
        assert_eq!(e.reason.as_deref(), self.reason, "{e:#?}");
        assert_eq!(e.serial.as_ref(), cert.map(|c| c.0), "{e:#?}");
        assert_eq!(e.not_after, cert.map(|c| c.1), "{e:#?}");
        let remote = e.remote_addr.as_deref().expect("a remote address");
        let port = remote
            .strip_prefix("127.0.0.1:")
            .unwrap_or_else(|| panic!("a loopback peer, not {remote}"));
        assert!(port.parse::<u16>().is_ok_and(|p| p > 0), "{remote}");
        let id = e.request_id.as_deref().expect("a request id");
        assert!(
            id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit()),
            "request id {id:?}"
        );
        let now = OffsetDateTime::now_utc();
        assert!(
            e.at <= now && e.at > now - time::Duration::minutes(2),
            "event time {} (now {now})",
            e.at
        );
    }
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap()
}

fn json_lines(out: &str) -> Vec<AuditEvent> {
    out.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn each_kind_of_action_and_common_refusals_leave_exactly_their_event() {
    let ca = TestCa::start();
    let mut trail = Trail::new(&ca).await;
    let root = admin("admin");
    // A new CA's trail begins with init creating the first admin.
    let first = whole_trail(&ca).await;
    assert_eq!(first.len(), 1, "{first:#?}");
    assert_eq!(first[0].actor, Actor::System);
    assert_eq!(
        (
            first[0].action.as_str(),
            first[0].subject.as_deref(),
            first[0].outcome.as_str()
        ),
        ("admin.create", Some("admin"), "ok")
    );
    let http = ca.http();

    // Register, over plain HTTP to see the response's request id.
    let resp = http
        .post(format!("{}/v1/admin/agents", ca.url))
        .bearer_auth(ca.admin_token())
        .json(&serde_json::json!({
            "tenant": "acme", "env": "prod", "agent": "bot",
            "owner": "team-audit", "purpose": "audit tests",
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let request_id = resp.headers()["x-request-id"].to_str().unwrap().to_owned();
    let info: AgentInfo = resp.json().await.unwrap();
    let id = info.spiffe_id.to_string();
    assert_eq!(id, "spiffe://example.org/tenant/acme/env/prod/agent/bot");
    let e = trail.next().await;
    Want::ok("register", root.clone(), Some(&id)).check(&e);
    assert_eq!(e.request_id.as_deref(), Some(request_id.as_str()));

    // A wrong admin token: refused, and audited with the same request id.
    let resp = http
        .get(format!("{}/v1/admin/agents", ca.url))
        .bearer_auth("agentca-admin-not-the-right-one")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let request_id = resp.headers()["x-request-id"].to_str().unwrap().to_owned();
    let e = trail.next().await;
    Want::refused("admin.auth", Actor::Anonymous, None, "unauthorized").check(&e);
    assert_eq!(e.request_id.as_deref(), Some(request_id.as_str()));

    // No token at all.
    let result = ca
        .client()
        .call::<(), Vec<AgentInfo>>(Method::GET, "/v1/admin/agents", None, None)
        .await;
    assert_eq!(refusal(result), (401, "unauthorized".into()));
    Want::refused("admin.auth", Actor::Anonymous, None, "unauthorized").check(&trail.next().await);

    // A malformed body, from a real admin.
    let resp = http
        .post(format!("{}/v1/admin/agents", ca.url))
        .bearer_auth(ca.admin_token())
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    Want::refused("register", root.clone(), None, "invalid_json").check(&trail.next().await);

    // Registering twice is a refusal too.
    let result = ca
        .admin::<_, AgentInfo>(
            Method::POST,
            "/v1/admin/agents",
            Some(&serde_json::json!({
                "tenant": "acme", "env": "prod", "agent": "bot",
                "owner": "x", "purpose": "y",
            })),
        )
        .await;
    assert_eq!(refusal(result), (409, "agent_exists".into()));
    let e = trail.next().await;
    assert_eq!(e.subject, Some(spiffe("acme", "prod", "bot")), "{e:#?}");
    Want::refused(
        "register",
        root.clone(),
        e.subject.as_deref(),
        "agent_exists",
    )
    .check(&e);

    // Successful reads are not audited.
    ca.show("acme", "prod", "bot").await;
    let _: Vec<AgentInfo> = ca
        .admin::<(), _>(Method::GET, "/v1/admin/agents?tenant=acme", None)
        .await
        .unwrap();
    let _: Vec<AdminInfo> = ca
        .admin::<(), _>(Method::GET, "/v1/admin/admins", None)
        .await
        .unwrap();
    trail.none().await;

    // Refused for its query or path: audited like any refusal.
    let result = ca
        .admin::<(), Vec<AgentInfo>>(Method::GET, "/v1/admin/agents?state=bogus", None)
        .await;
    assert_eq!(refusal(result), (400, "invalid_request".into()));
    Want::refused("agents.list", root.clone(), None, "invalid_request").check(&trail.next().await);
    let result = ca
        .admin::<(), AuditPage>(Method::GET, "/v1/admin/audit?since=abc", None)
        .await;
    assert_eq!(refusal(result), (400, "invalid_request".into()));
    Want::refused("audit.read", root.clone(), None, "invalid_request").check(&trail.next().await);

    // A bootstrap token.
    let created = ca
        .try_token(
            "acme",
            "prod",
            "bot",
            CreateTokenRequest {
                ttl_seconds: Some(600),
                uses: Some(1),
            },
        )
        .await
        .unwrap();
    let reason = format!(
        "token {} for 1 use(s), valid until {}",
        created.token_id,
        rfc3339(created.expires_at)
    );
    Want::ok("token.create", root.clone(), Some(&id))
        .reason(&reason)
        .check(&trail.next().await);

    // Enrollment: the actor is the token, by its public id.
    let token_actor = Actor::Token {
        token_id: created.token_id.clone(),
    };
    let (issued, key) = ca.enroll(&created.token).await.unwrap();
    Want::ok("enroll", token_actor.clone(), Some(&id)).check_cert(
        &trail.next().await,
        Some((&issued.serial, issued.not_after)),
    );

    // The spent token, replayed.
    assert_eq!(
        refusal(ca.enroll(&created.token).await),
        (401, "token_used".into())
    );
    Want::refused("enroll", token_actor, None, "token_used").check(&trail.next().await);

    // Garbage as a token: nobody.
    assert_eq!(
        refusal(ca.enroll("not a token!").await),
        (401, "token_invalid".into())
    );
    Want::refused("enroll", Actor::Anonymous, None, "token_invalid").check(&trail.next().await);

    // Renewal: the actor is the agent instance of the presented certificate.
    let agent_actor = Actor::Agent {
        spiffe_id: issued.spiffe_id.clone(),
        instance_id: issued.instance_id.clone(),
    };
    let (renewed, next_key) = ca.renewed(&issued, &key).await;
    let from = format!("from {}", issued.serial);
    Want::ok("renew", agent_actor.clone(), Some(&id))
        .reason(&from)
        .check_cert(
            &trail.next().await,
            Some((&renewed.serial, renewed.not_after)),
        );

    // Disable, enable.
    ca.set_enabled("acme", "prod", "bot", false).await;
    Want::ok("disable", root.clone(), Some(&id)).check(&trail.next().await);
    ca.set_enabled("acme", "prod", "bot", true).await;
    Want::ok("enable", root.clone(), Some(&id)).check(&trail.next().await);

    // Revoking the agent: both live certificates; the event says so.
    let done = ca
        .revoke_agent("acme", "prod", "bot", "keyCompromise")
        .await;
    assert_eq!(
        (done.revoked, done.agents_disabled, done.tokens_voided),
        (2, 1, 0)
    );
    let e = trail.next().await;
    assert_eq!(e.subject, Some(spiffe("acme", "prod", "bot")), "{e:#?}");
    let reason = e.reason.as_deref().unwrap_or_default();
    assert!(
        reason.contains("keyCompromise")
            && reason.ends_with("2 certificate(s) revoked, 1 agent(s) disabled, 0 token(s) voided"),
        "{e:#?}"
    );
    Want::ok("revoke", root.clone(), e.subject.as_deref())
        .reason(reason)
        .check(&e);

    // Renewing with the revoked certificate.
    let result = ca
        .client_with(&renewed.certificate_chain, &next_key)
        .renew(&csr())
        .await;
    assert_eq!(refusal(result), (401, "certificate_revoked".into()));
    // The refusal names the certificate presented.
    Want::refused("renew", agent_actor, Some(&id), "certificate_revoked").check_cert(
        &trail.next().await,
        Some((&renewed.serial, renewed.not_after)),
    );

    // Revoking something unknown.
    let result = ca
        .revoke(&RevokeRequest {
            tenant: Some("acme".into()),
            env: Some("prod".into()),
            agent: Some("ghost".into()),
            ..Default::default()
        })
        .await;
    assert_eq!(refusal(result), (404, "agent_not_found".into()));
    let e = trail.next().await;
    assert_eq!(e.subject, Some(spiffe("acme", "prod", "ghost")), "{e:#?}");
    Want::refused(
        "revoke",
        root.clone(),
        e.subject.as_deref(),
        "agent_not_found",
    )
    .check(&e);

    // A named admin: created, acting under its name, revoked, locked out.
    let ops: CreateAdminResponse = ca
        .admin(
            Method::POST,
            "/v1/admin/admins",
            Some(&CreateAdminRequest {
                name: "ops".into(),
                tenant: None,
                role: None,
            }),
        )
        .await
        .unwrap();
    assert_eq!(ops.admin.name, "ops");
    Want::ok("admin.create", root.clone(), Some("ops"))
        .reason("every tenant")
        .check(&trail.next().await);
    let as_ops: AgentInfo = ca
        .client()
        .call::<(), _>(
            Method::POST,
            "/v1/admin/agents/acme/prod/bot/enable",
            Some(&ops.token),
            None,
        )
        .await
        .unwrap();
    assert!(as_ops.enabled);
    let e = trail.next().await;
    Want::ok("enable", admin("ops"), Some(&id)).check(&e);
    assert!(
        !serde_json::to_string(&e).unwrap().contains(&ops.token),
        "the trail never holds a token"
    );

    let _: serde_json::Value = ca
        .admin::<(), _>(Method::DELETE, "/v1/admin/admins/ops", None)
        .await
        .unwrap();
    Want::ok("admin.revoke", root.clone(), Some("ops")).check(&trail.next().await);
    let result = ca
        .admin::<(), serde_json::Value>(Method::DELETE, "/v1/admin/admins/ops", None)
        .await;
    assert_eq!(refusal(result), (404, "admin_not_found".into()));
    Want::refused("admin.revoke", root.clone(), Some("ops"), "admin_not_found")
        .check(&trail.next().await);
    let result = ca
        .client()
        .call::<(), AgentInfo>(
            Method::GET,
            "/v1/admin/agents/acme/prod/bot",
            Some(&ops.token),
            None,
        )
        .await;
    assert_eq!(refusal(result), (401, "unauthorized".into()));
    Want::refused("admin.auth", Actor::Anonymous, None, "unauthorized").check(&trail.next().await);

    // One event per action, no more: init and 22 actions, 23 events, one
    // chain.
    let all = whole_trail(&ca).await;
    assert_eq!(all.len(), 23);
    assert_eq!(trail.seen, 23);
    let request_ids: std::collections::BTreeSet<_> =
        all.iter().map(|e| e.request_id.clone()).collect();
    assert_eq!(request_ids.len(), all.len(), "one request, one event");
    let out = ok(ca.command().args(["audit", "verify"]));
    assert!(
        out.starts_with("audit trail intact: 23 event(s), last hash "),
        "{out}"
    );
    assert!(out.contains(&all[22].hash), "{out}");
}

/// The subject of every event about the agent `t/e/a`, refusals included:
/// its SPIFFE ID.
fn spiffe(t: &str, e: &str, a: &str) -> String {
    format!("spiffe://example.org/tenant/{t}/env/{e}/agent/{a}")
}

// ---------------------------------------------------------------------------
// Tampering with the stored trail.

/// The audit table and head, as the store holds them.
#[derive(Clone)]
struct Stored {
    /// Events by the sequence number of their key.
    events: BTreeMap<u64, AuditEvent>,
    /// The head: last sequence number and hash.
    head: (u64, String),
}

/// Reads the stored trail; the CA must be stopped.
fn read_stored(data_dir: &Path) -> Stored {
    let store = open(Backend::Redb, data_dir).expect("open the stopped CA's store");
    let events = store
        .scan_prefix(Table::Audit, b"", usize::MAX)
        .unwrap()
        .into_iter()
        .map(|(k, v)| {
            let seq = u64::from_be_bytes(k.as_slice().try_into().expect("8-byte keys"));
            (seq, serde_json::from_slice(&v).expect("an audit event"))
        })
        .collect();
    let Head { seq, hash } = Head::decode(
        store
            .get(Table::Meta, HEAD_KEY.as_bytes())
            .unwrap()
            .as_deref(),
    )
    .unwrap();
    Stored {
        events,
        head: (seq, hash),
    }
}

/// Replaces the stored trail and head with `trail`; the CA must be stopped.
fn write_stored(data_dir: &Path, trail: &Stored) {
    let store = open(Backend::Redb, data_dir).expect("open the stopped CA's store");
    let old: Vec<Vec<u8>> = store
        .scan_prefix(Table::Audit, b"", usize::MAX)
        .unwrap()
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    store
        .write(&mut |txn| {
            for key in &old {
                txn.delete(Table::Audit, key)?;
            }
            for (seq, event) in &trail.events {
                txn.put(
                    Table::Audit,
                    &seq.to_be_bytes(),
                    &serde_json::to_vec(event).expect("events serialize"),
                )?;
            }
            let head = Head {
                seq: trail.head.0,
                hash: trail.head.1.clone(),
            };
            txn.put(Table::Meta, HEAD_KEY.as_bytes(), &head.encode())
        })
        .expect("write the store");
}

/// Recomputes the hashes of every event from `from` on, and the head, as a
/// forger with write access to the store would.
fn rechain(trail: &mut Stored, from: u64) {
    let mut prev = match trail.events.get(&(from - 1)) {
        Some(e) => e.hash.clone(),
        None => zeros(),
    };
    for (_, e) in trail.events.range_mut(from..) {
        e.prev_hash = prev;
        e.hash = chain::hash(e);
        prev = e.hash.clone();
    }
    let (&last, e) = trail.events.last_key_value().unwrap();
    trail.head = (last, e.hash.clone());
}

/// A CA with ten events in its trail: init's creation of the first admin,
/// then nine actions.
async fn ca_with_a_trail() -> TestCa {
    let ca = TestCa::start();
    for agent in ["a", "c"] {
        ca.register("acme", "prod", agent).await;
    }
    let (issued, key) = ca
        .enroll(&ca.token("acme", "prod", "a", 1).await)
        .await
        .unwrap();
    ca.client_with(&issued.certificate_chain, &key)
        .renew(&csr())
        .await
        .unwrap();
    let wrong = ca
        .client()
        .call::<(), Vec<AgentInfo>>(Method::GET, "/v1/admin/agents", Some("wrong"), None)
        .await;
    assert_eq!(refusal(wrong).1, "unauthorized");
    ca.set_enabled("acme", "prod", "a", false).await;
    ca.set_enabled("acme", "prod", "a", true).await;
    ca.revoke_agent("acme", "prod", "c", "superseded").await;
    assert_eq!(whole_trail(&ca).await.len(), 10);
    ca
}

/// `agentca audit verify`: Ok(stdout) or Err(stderr) when it exits with 1.
fn verify(ca: &TestCa, anchor: Option<&Path>) -> Result<String, String> {
    let mut cmd = ca.command();
    cmd.args(["audit", "verify"]);
    if let Some(anchor) = anchor {
        cmd.arg("--anchor").arg(anchor);
    }
    let out = run(&mut cmd);
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    match out.status.code() {
        Some(0) => Ok(stdout),
        Some(1) => Err(stderr),
        other => panic!("audit verify exited with {other:?}: {stdout}{stderr}"),
    }
}

/// Stops the CA, stores `original` edited by `edit`, and starts it again.
fn tamper(ca: &mut TestCa, original: &Stored, edit: impl FnOnce(&mut Stored)) {
    ca.kill();
    let mut trail = original.clone();
    edit(&mut trail);
    write_stored(&ca.data_dir, &trail);
    ca.restart();
}

#[track_caller]
fn assert_broken(result: Result<String, String>, message: &str) {
    match result {
        Ok(out) => panic!("verify passed on a broken trail, expecting {message:?}: {out}"),
        Err(err) => assert!(
            err.contains(&format!("audit trail broken: {message}")),
            "expected {message:?} in:\n{err}"
        ),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn verify_finds_a_changed_event() {
    let mut ca = ca_with_a_trail().await;
    let out = verify(&ca, None).unwrap();
    assert!(out.starts_with("audit trail intact: 10 event(s)"), "{out}");
    ca.kill();
    let original = read_stored(&ca.data_dir);
    assert_eq!(original.events.len(), 10);
    assert_eq!(original.head.0, 10);

    // Event 7 is the refused admin login; someone makes it look fine.
    assert_eq!(original.events[&7].action, "admin.auth");
    assert_eq!(original.events[&7].outcome, "refused");
    tamper(&mut ca, &original, |t| {
        t.events.get_mut(&7).unwrap().outcome = "ok".into();
    });
    assert_broken(
        verify(&ca, None),
        "event 7 was changed: its hash does not match its content",
    );

    // Changed with its own hash recomputed: the next event gives it away.
    tamper(&mut ca, &original, |t| {
        let e = t.events.get_mut(&7).unwrap();
        e.outcome = "ok".into();
        e.hash = chain::hash(e);
    });
    assert_broken(
        verify(&ca, None),
        "event 7 was changed or replaced: event 8 does not carry its hash",
    );

    // The last event changed, its hash recomputed: the CA's head gives it
    // away.
    tamper(&mut ca, &original, |t| {
        let e = t.events.get_mut(&10).unwrap();
        e.reason = Some("unspecified".into());
        e.hash = chain::hash(e);
    });
    assert_broken(
        verify(&ca, None),
        "event 10 was changed or replaced: its hash is not the one the CA recorded as the head",
    );

    // Put back, the trail verifies again.
    tamper(&mut ca, &original, |_| {});
    verify(&ca, None).expect("the restored trail is intact");
}

#[tokio::test(flavor = "multi_thread")]
async fn verify_finds_removed_and_reordered_events() {
    let mut ca = ca_with_a_trail().await;
    ca.kill();
    let original = read_stored(&ca.data_dir);

    // One event removed from the middle.
    tamper(&mut ca, &original, |t| {
        t.events.remove(&5);
    });
    assert_broken(
        verify(&ca, None),
        "events after 4 are missing: the next one is 6",
    );

    // The first one.
    tamper(&mut ca, &original, |t| {
        t.events.remove(&1);
    });
    assert_broken(
        verify(&ca, None),
        "events after 0 are missing: the next one is 2",
    );

    // Two events swapped.
    tamper(&mut ca, &original, |t| {
        let four = t.events[&4].clone();
        let five = t.events.insert(5, four).unwrap();
        t.events.insert(4, five);
    });
    assert_broken(verify(&ca, None), "event 5 is out of order");

    // The last event removed.
    tamper(&mut ca, &original, |t| {
        t.events.remove(&10);
    });
    assert_broken(
        verify(&ca, None),
        "the trail ends at event 9, but the CA's head is event 10",
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_anchor_catches_a_trail_rewritten_with_its_hashes() {
    let mut ca = ca_with_a_trail().await;
    let anchor = ca.root.path().join("audit.anchor");
    let out = verify(&ca, Some(&anchor)).unwrap();
    assert!(out.starts_with("audit trail intact: 10 event(s)"), "{out}");
    let anchored: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&anchor).unwrap()).unwrap();
    assert_eq!(anchored["seq"], 10);
    ca.kill();
    let original = read_stored(&ca.data_dir);

    // Event 5 (an enrollment) rewritten, and every hash after it: the
    // chain alone cannot tell, the anchor can.
    tamper(&mut ca, &original, |t| {
        assert_eq!(t.events[&5].action, "enroll");
        t.events.get_mut(&5).unwrap().remote_addr = Some("192.0.2.1:4242".into());
        rechain(t, 5);
    });
    let out = verify(&ca, None).expect("a consistent rewrite passes the plain check");
    assert!(out.starts_with("audit trail intact: 10 event(s)"), "{out}");
    let err = verify(&ca, Some(&anchor)).unwrap_err();
    assert!(
        err.contains(
            "audit trail rewritten: event 10 no longer has the hash anchored at the last verification"
        ),
        "{err}"
    );

    // The last events cut off, with the head moved back to match.
    tamper(&mut ca, &original, |t| {
        t.events.remove(&10);
        t.events.remove(&9);
        let e = &t.events[&8];
        t.head = (8, e.hash.clone());
    });
    let out = verify(&ca, None).expect("a consistent truncation passes the plain check");
    assert!(out.starts_with("audit trail intact: 8 event(s)"), "{out}");
    let err = verify(&ca, Some(&anchor)).unwrap_err();
    assert!(
        err.contains("audit trail rewritten: event 10 of the last verification is gone"),
        "{err}"
    );

    // Restored, the anchor still matches; new events move it on.
    tamper(&mut ca, &original, |_| {});
    verify(&ca, Some(&anchor)).expect("the original trail matches its anchor");
    ca.register("acme", "prod", "d").await;
    let out = verify(&ca, Some(&anchor)).unwrap();
    assert!(out.starts_with("audit trail intact: 11 event(s)"), "{out}");
    let anchored: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&anchor).unwrap()).unwrap();
    assert_eq!(anchored["seq"], 11);
}

// ---------------------------------------------------------------------------
// Admins.

#[tokio::test(flavor = "multi_thread")]
async fn a_tenant_admin_acts_in_its_tenant_only_and_every_attempt_is_audited() {
    let ca = TestCa::start();
    let (theirs, _) = ca.enrolled("other", "prod", "bot").await;
    let mut trail = Trail::new(&ca).await;
    assert_eq!(trail.seen, 4);

    let out = run(ca
        .command()
        .args(["admin", "create", "--name", "acme-ops", "--tenant", "acme"]));
    assert!(out.status.success(), "{out:?}");
    let token = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert!(token.starts_with("agentca-admin-"), "{token}");
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains("tenant acme only"), "{stderr}");
    Want::ok("admin.create", admin("admin"), Some("acme-ops"))
        .reason("tenant acme")
        .check(&trail.next().await);
    let token_file = common::write(ca.root.path(), "acme-ops.token", &token);
    let tenant = || {
        let mut cmd = ca.command();
        cmd.env("AGENTCA_ADMIN_TOKEN_FILE", &token_file);
        cmd
    };
    let ops = admin("acme-ops");
    let acme_bot = "spiffe://example.org/tenant/acme/env/prod/agent/bot";

    // In its own tenant it registers, hands out tokens, lists and shows.
    ok(tenant().args([
        "register",
        "--tenant",
        "acme",
        "--env",
        "prod",
        "--agent",
        "bot",
        "--owner",
        "acme",
        "--purpose",
        "tenant admin test",
    ]));
    Want::ok("register", ops.clone(), Some(acme_bot)).check(&trail.next().await);
    let bootstrap = ok(tenant().args([
        "token", "--tenant", "acme", "--env", "prod", "--agent", "bot", "--quiet",
    ]));
    let bootstrap = bootstrap.trim();
    let token_id = agentca_ca::token::id(&agentca_ca::token::hash(bootstrap).unwrap());
    let e = trail.next().await;
    let reason = e.reason.clone().unwrap_or_default();
    assert!(
        reason.starts_with(&format!("token {token_id} for 1 use(s), valid until ")),
        "{e:#?}"
    );
    Want::ok("token.create", ops.clone(), Some(acme_bot))
        .reason(&reason)
        .check(&e);
    let (issued, _) = ca.enroll(bootstrap).await.expect("the token works");
    Want::ok("enroll", Actor::Token { token_id }, Some(acme_bot)).check_cert(
        &trail.next().await,
        Some((&issued.serial, issued.not_after)),
    );
    ok(tenant().args([
        "disable", "--tenant", "acme", "--env", "prod", "--agent", "bot",
    ]));
    Want::ok("disable", ops.clone(), Some(acme_bot)).check(&trail.next().await);
    ok(tenant().args([
        "enable", "--tenant", "acme", "--env", "prod", "--agent", "bot",
    ]));
    Want::ok("enable", ops.clone(), Some(acme_bot)).check(&trail.next().await);
    let listed: Vec<AgentInfo> = serde_json::from_str(&ok(tenant().arg("agents"))).unwrap();
    assert_eq!(
        listed
            .iter()
            .map(|a| a.spiffe_id.to_string())
            .collect::<Vec<_>>(),
        [acme_bot],
        "without --tenant, a tenant admin sees its own tenant"
    );
    ok(tenant().args([
        "agent", "--tenant", "acme", "--env", "prod", "--agent", "bot",
    ]));
    trail.none().await;

    // On tenant other: every attempt refused with 403 and audited under
    // its name.
    let attempts = [
        (
            "register --tenant other --env prod --agent x --owner o --purpose p",
            "register",
            "other/prod/x",
        ),
        (
            "token --tenant other --env prod --agent bot",
            "token.create",
            "other/prod/bot",
        ),
        (
            "agent --tenant other --env prod --agent bot",
            "agents.show",
            "other/prod/bot",
        ),
        (
            "disable --tenant other --env prod --agent bot",
            "disable",
            "other/prod/bot",
        ),
        (
            "revoke --tenant other --env prod --agent bot",
            "revoke",
            "other/prod/bot",
        ),
        ("revoke --tenant other", "revoke", "other"),
        ("agents --tenant other", "agents.list", "other/*"),
    ];
    for (args, action, subject) in attempts {
        let err = fails(tenant().args(args.split_whitespace()));
        assert!(err.contains("(403 forbidden)"), "{args}: {err}");
        let e = trail.next().await;
        let named = match subject.split('/').collect::<Vec<_>>()[..] {
            [t, env, agent] => e.subject == Some(spiffe(t, env, agent)),
            _ => e.subject.as_deref() == Some(subject),
        };
        assert!(named, "{args}: the event names {subject}: {e:#?}");
        Want::refused(action, ops.clone(), e.subject.as_deref(), "forbidden").check(&e);
    }
    let serial = theirs.serial.to_string();
    let err = fails(tenant().args(["revoke", "--serial", &serial]));
    assert!(err.contains("(403 forbidden)"), "{err}");
    let e = trail.next().await;
    assert_eq!(
        e.subject,
        Some(spiffe("other", "prod", "bot")),
        "the event names the certificate's agent: {e:#?}"
    );
    Want::refused("revoke", ops.clone(), e.subject.as_deref(), "forbidden")
        .check_cert(&e, Some((&theirs.serial, theirs.not_after)));

    // The same over the API: 403 forbidden.
    let result = ca
        .client()
        .call::<_, TokenCreated>(
            Method::POST,
            "/v1/admin/agents/other/prod/bot/tokens",
            Some(&token),
            Some(&CreateTokenRequest::default()),
        )
        .await;
    assert_eq!(refusal(result), (403, "forbidden".into()));
    Want::refused(
        "token.create",
        ops.clone(),
        Some(&spiffe("other", "prod", "bot")),
        "forbidden",
    )
    .check(&trail.next().await);

    // What only global admins may do.
    let err = fails(tenant().args(["audit", "export"]));
    assert!(err.contains("(403 forbidden)"), "{err}");
    Want::refused("audit.read", ops.clone(), None, "forbidden").check(&trail.next().await);
    let err = fails(tenant().args(["admin", "create", "--name", "sneaky"]));
    assert!(err.contains("(403 forbidden)"), "{err}");
    Want::refused("admin.create", ops.clone(), Some("sneaky"), "forbidden")
        .check(&trail.next().await);
    let err = fails(tenant().args(["admin", "list"]));
    assert!(err.contains("(403 forbidden)"), "{err}");
    Want::refused("admin.list", ops.clone(), None, "forbidden").check(&trail.next().await);
    let err = fails(tenant().args(["admin", "revoke", "--name", "admin"]));
    assert!(err.contains("(403 forbidden)"), "{err}");
    Want::refused("admin.revoke", ops.clone(), Some("admin"), "forbidden")
        .check(&trail.next().await);
    let result = ca
        .client()
        .call::<(), AuditPage>(Method::GET, "/v1/admin/audit", Some(&token), None)
        .await;
    assert_eq!(refusal(result), (403, "forbidden".into()));
    Want::refused("audit.read", ops.clone(), None, "forbidden").check(&trail.next().await);

    // Tenant other is untouched.
    let shown = ca.show("other", "prod", "bot").await;
    assert!(shown.enabled);
    assert_eq!(shown.live_certificates.len(), 1);
    let result = ca
        .admin::<(), AgentInfo>(Method::GET, "/v1/admin/agents/other/prod/x", None)
        .await;
    assert_eq!(refusal(result), (404, "agent_not_found".into()));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_last_global_admin_stays_and_a_revoked_admin_token_is_refused() {
    let ca = TestCa::start();
    let mut trail = Trail::new(&ca).await;
    let root = admin("admin");
    let revoke_admin =
        || ca.admin::<(), serde_json::Value>(Method::DELETE, "/v1/admin/admins/admin", None);
    // Revoking the only global admin is refused, and the refusal recorded.
    let last_stays = |refused| {
        assert_eq!(refusal(refused), (409, "last_global_admin".into()));
        Want::refused(
            "admin.revoke",
            root.clone(),
            Some("admin"),
            "last_global_admin",
        )
    };

    last_stays(revoke_admin().await).check(&trail.next().await);

    // A tenant admin is no replacement.
    ok(ca
        .command()
        .args(["admin", "create", "--name", "acme-ops", "--tenant", "acme"]));
    Want::ok("admin.create", root.clone(), Some("acme-ops"))
        .reason("tenant acme")
        .check(&trail.next().await);
    last_stays(revoke_admin().await).check(&trail.next().await);

    // A second global admin is.
    let second = ok(ca.command().args(["admin", "create", "--name", "second"]))
        .trim()
        .to_owned();
    Want::ok("admin.create", root.clone(), Some("second"))
        .reason("every tenant")
        .check(&trail.next().await);
    let listed: Vec<AdminInfo> =
        serde_json::from_str(&ok(ca.command().args(["admin", "list"]))).unwrap();
    let names: Vec<(&str, Option<&str>)> = listed
        .iter()
        .map(|a| (a.name.as_str(), a.tenant.as_deref()))
        .collect();
    assert_eq!(
        names,
        [
            ("acme-ops", Some("acme")),
            ("admin", None),
            ("second", None)
        ]
    );
    trail.none().await;

    let second_file = common::write(ca.root.path(), "second.token", &second);
    let as_second = || {
        let mut cmd = ca.command();
        cmd.env("AGENTCA_ADMIN_TOKEN_FILE", &second_file);
        cmd
    };
    ok(as_second().args(["admin", "revoke", "--name", "admin"]));
    trail.token = second.clone();
    Want::ok("admin.revoke", admin("second"), Some("admin")).check(&trail.next().await);

    // The revoked token no longer works, over the API or the CLI.
    let result = ca
        .admin::<(), Vec<AgentInfo>>(Method::GET, "/v1/admin/agents", None)
        .await;
    assert_eq!(refusal(result), (401, "unauthorized".into()));
    Want::refused("admin.auth", Actor::Anonymous, None, "unauthorized").check(&trail.next().await);
    let err = fails(ca.command().args(["admin", "list"]));
    assert!(err.contains("(401 unauthorized)"), "{err}");
    Want::refused("admin.auth", Actor::Anonymous, None, "unauthorized").check(&trail.next().await);

    // Now "second" is the last global admin.
    let err = fails(as_second().args(["admin", "revoke", "--name", "second"]));
    assert!(err.contains("(409 last_global_admin)"), "{err}");
    Want::refused(
        "admin.revoke",
        admin("second"),
        Some("second"),
        "last_global_admin",
    )
    .check(&trail.next().await);
    let listed: Vec<AdminInfo> =
        serde_json::from_str(&ok(as_second().args(["admin", "list"]))).unwrap();
    assert_eq!(
        listed.iter().map(|a| a.name.as_str()).collect::<Vec<_>>(),
        ["acme-ops", "second"]
    );
    ok(as_second().args(["audit", "verify"]));
    trail.none().await;
}

// ---------------------------------------------------------------------------
// Export and follow.

#[tokio::test(flavor = "multi_thread")]
async fn export_prints_the_events_after_since_and_follow_prints_new_ones() {
    let ca = TestCa::start();
    // init's event only.
    assert_eq!(
        ok(ca.command().args(["audit", "export"])).lines().count(),
        1
    );
    for agent in ["a", "b"] {
        ca.register("acme", "prod", agent).await;
    }
    ca.token("acme", "prod", "a", 1).await;
    let wrong = ca
        .client()
        .call::<(), Vec<AgentInfo>>(Method::GET, "/v1/admin/agents", Some("wrong"), None)
        .await;
    assert_eq!(refusal(wrong).1, "unauthorized");
    let all = whole_trail(&ca).await;
    assert_eq!(all.len(), 5);

    let everything = ok(ca.command().args(["audit", "export"]));
    assert_eq!(json_lines(&everything), all);
    let after_two = ok(ca.command().args(["audit", "export", "--since", "2"]));
    assert_eq!(json_lines(&after_two), &all[2..]);
    assert_eq!(after_two.lines().count(), 3);
    assert_eq!(
        ok(ca.command().args(["audit", "export", "--since", "5"])),
        ""
    );
    assert_eq!(
        ok(ca.command().args(["audit", "export", "--since", "99"])),
        ""
    );

    // Follow: started at the current end, it prints what happens next.
    let mut child = common::KillOnDrop(
        ca.command()
            .args(["audit", "follow"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn audit follow"),
    );
    let stdout = child.0.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    // Until it has read the end, an action may come before it: act until
    // it prints something.
    let mut first = None;
    for i in 0..40 {
        ca.register("acme", "follow", &format!("f{i}")).await;
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(250)) {
            first = Some(line);
            break;
        }
    }
    let first: AuditEvent =
        serde_json::from_str(&first.expect("audit follow printed an event")).unwrap();
    assert!(first.seq > 5, "only events after it started: {first:#?}");
    let trail = whole_trail(&ca).await;
    assert_eq!(first, trail[first.seq as usize - 1]);
    // Whatever else it already printed, in order.
    let mut last = first.seq;
    while let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) {
        let e: AuditEvent = serde_json::from_str(&line).unwrap();
        assert_eq!(e.seq, last + 1);
        last = e.seq;
    }
    assert_eq!(last, trail.len() as u64, "it caught up");
    // Now surely following: the next event arrives at once.
    ca.register("acme", "follow", "late").await;
    let line = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("audit follow printed the new event");
    let e: AuditEvent = serde_json::from_str(&line).unwrap();
    assert_eq!(e.seq, last + 1);
    assert_eq!(e.action, "register");
    assert_eq!(
        e.subject.as_deref(),
        Some("spiffe://example.org/tenant/acme/env/follow/agent/late")
    );
    assert_eq!(e, *whole_trail(&ca).await.last().unwrap());
    assert!(
        child.0.try_wait().unwrap().is_none(),
        "follow runs until stopped"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_renewal_with_a_foreign_certificate_is_recorded_as_anonymous() {
    // Another CA of the same trust domain issues a certificate with the
    // same identity as a real agent of this one: what it claims must not
    // be recorded as fact.
    let ca = TestCa::start();
    ca.register("acme", "prod", "bot").await;
    let impostor_ca = TestCa::start();
    let (forged, key) = impostor_ca.enrolled("acme", "prod", "bot").await;
    let mut trail = Trail::new(&ca).await;
    let result = ca
        .client_with(&forged.certificate_chain, &key)
        .renew(&csr())
        .await;
    assert_eq!(refusal(result), (401, "certificate_unknown".into()));
    Want::refused("renew", Actor::Anonymous, None, "certificate_unknown")
        .check(&trail.next().await);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_flood_of_anonymous_refusals_is_a_few_events_and_a_count_not_one_event_each() {
    let mut ca = TestCa::start();
    let before = whole_trail(&ca).await.len();

    // 400 enrollments with made-up tokens from one address.
    let flood = 400;
    for i in 0..flood {
        let result = ca.enroll(&format!("agentca-bt-{i:032}")).await;
        assert_eq!(refusal(result).0, 401);
    }
    // What a shutdown writes: the summary of the minute so far.
    ca.stop();
    ca.start_again();

    let trail = whole_trail(&ca).await;
    let new = &trail[before..];
    let one_by_one: Vec<_> = new
        .iter()
        .filter(|e| e.count.is_none() && e.action == "enroll")
        .collect();
    // (A shutdown also writes the admin's reads of the trail, counted.)
    let summaries: Vec<_> = new
        .iter()
        .filter(|e| e.count.is_some() && e.action == "enroll")
        .collect();
    assert_eq!(
        one_by_one.len(),
        agentca_ca::audit::refusals::RECORDED_PER_KEY as usize,
        "{one_by_one:#?}"
    );
    for e in &one_by_one {
        assert_eq!(
            (e.action.as_str(), e.outcome.as_str()),
            ("enroll", "refused"),
            "{e:?}"
        );
    }
    assert_eq!(summaries.len(), 1, "{summaries:#?}");
    let summary = summaries[0];
    assert_eq!(summary.count, Some(flood - one_by_one.len() as u64));
    assert_eq!(
        (
            summary.action.as_str(),
            summary.outcome.as_str(),
            summary.reason.as_deref()
        ),
        ("enroll", "refused", one_by_one[0].reason.as_deref())
    );
    assert_eq!(summary.remote_addr.as_deref(), Some("127.0.0.1"));
    // The chain holds across the summary, and `verify` says so.
    ok(ca.command().args(["audit", "verify"]));
}

#[tokio::test(flavor = "multi_thread")]
async fn exported_events_are_pruned_and_the_export_and_the_trail_verify_as_one_chain() {
    let ca = ca_with_a_trail().await;
    let dir = tempfile::tempdir().unwrap();
    let anchor = dir.path().join("anchor");
    verify(&ca, Some(&anchor)).unwrap(); // anchored at event 10
    let first = dir.path().join("audit-1.jsonl");
    let out = ok(ca
        .command()
        .args(["audit", "prune", "--through", "4", "--export"])
        .arg(&first));
    assert!(out.contains("pruned 4 event(s), 1..=4"), "{out}");
    let exported = std::fs::read_to_string(&first).unwrap();
    assert_eq!(exported.lines().count(), 4);

    // The CA's trail starts after its checkpoint, which the export ends on;
    // the pruning is itself an event.
    let page: AuditPage = ca
        .admin::<(), _>(Method::GET, "/v1/admin/audit?since=0", None)
        .await
        .unwrap();
    let checkpoint = page.checkpoint.clone().expect("a checkpoint");
    let last_exported: AuditEvent = serde_json::from_str(exported.lines().last().unwrap()).unwrap();
    assert_eq!((checkpoint.seq, &checkpoint.hash), (4, &last_exported.hash));
    assert_eq!(page.events.first().unwrap().seq, 5);
    assert_eq!(page.events.first().unwrap().prev_hash, checkpoint.hash);
    let pruning = page.events.last().unwrap();
    assert_eq!((pruning.action.as_str(), pruning.seq), ("audit.prune", 11));

    let out = verify(&ca, None).unwrap();
    assert!(
        out.contains("events 5..=11 (events up to 4 were pruned"),
        "{out}"
    );
    let with_export = |files: &[&Path]| {
        let mut cmd = ca.command();
        cmd.args(["audit", "verify"]);
        for f in files {
            cmd.arg("--export").arg(f);
        }
        cmd
    };
    let out = ok(&mut with_export(&[&first]));
    assert!(out.starts_with("audit trail intact: 11 event(s)"), "{out}");

    // A second pruning; both exports verify in order, one alone does not.
    let second = dir.path().join("audit-2.jsonl");
    ok(ca
        .command()
        .args(["audit", "prune", "--through", "9", "--export"])
        .arg(&second));
    ok(&mut with_export(&[&first, &second]));
    let err = fails(&mut with_export(&[&second]));
    assert!(
        err.contains("audit export") && err.contains("broken"),
        "{err}"
    );
    let err = fails(&mut with_export(&[&first]));
    assert!(err.contains("the exports end at event 4"), "{err}");
    // The anchored event 10 is still in the CA's trail; once pruned, it is
    // found in the exports.
    let third = dir.path().join("audit-3.jsonl");
    ok(ca
        .command()
        .args(["audit", "prune", "--through", "10", "--export"])
        .arg(&third));
    let err = verify(&ca, Some(&anchor)).unwrap_err();
    assert!(err.contains("pass the export that holds it"), "{err}");
    ok(with_export(&[&first, &second, &third])
        .arg("--anchor")
        .arg(&anchor));

    // A changed export is caught.
    let tampered = dir.path().join("tampered.jsonl");
    std::fs::write(&tampered, exported.replacen("\"ok\"", "\"refused\"", 1)).unwrap();
    let err = fails(&mut with_export(&[&tampered, &second, &third]));
    assert!(err.contains("was changed"), "{err}");

    // A pruning that names another hash than the stored event's, or
    // events already gone, is refused and changes nothing.
    let before: AuditPage = ca
        .admin::<(), _>(Method::GET, "/v1/admin/audit?since=0", None)
        .await
        .unwrap();
    for (through, hash, why) in [
        // (Each refusal is an event: the head case goes first.)
        (
            before.head_seq,
            before.head_hash.clone(),
            "the last event stays",
        ),
        (11, "0".repeat(64), "does not have the hash given"),
        (3, checkpoint.hash.clone(), "pruned already"),
    ] {
        let detail = refused_with(
            ca.prune_audit(through, &hash).await,
            409,
            "audit_prune_refused",
        );
        assert!(detail.contains(why), "{detail}");
    }
    let after: AuditPage = ca
        .admin::<(), _>(Method::GET, "/v1/admin/audit?since=0", None)
        .await
        .unwrap();
    assert_eq!(after.checkpoint, before.checkpoint);
    assert_eq!(after.events.first().unwrap().seq, 11);
    // An export file that exists is never overwritten; nothing old enough.
    let err = fails(
        ca.command()
            .args(["audit", "prune", "--older-than", "1h", "--export"])
            .arg(&first),
    );
    assert!(err.contains("must not exist"), "{err}");
    let out = ok(ca
        .command()
        .args(["audit", "prune", "--older-than", "1h", "--export"])
        .arg(dir.path().join("none.jsonl")));
    assert!(out.contains("nothing to prune"), "{out}");
}

/// The banner of the console's audit page, seen by the CA's first admin
/// after logging in as a browser would (login form, its cookie, the
/// session cookie).
async fn console_audit_banner(ca: &TestCa) -> String {
    let http = reqwest::Client::builder()
        .use_preconfigured_tls(
            agentca::client::client_config(&agentca::client::CaTrust::Bundle(ca.bundle()), None)
                .unwrap(),
        )
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let cookie = |resp: &reqwest::Response| {
        resp.headers()
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok()?.split(';').next().map(str::to_owned))
            .find(|c| !c.ends_with('='))
            .unwrap()
    };
    let form = http
        .get(format!("{}/ui/login", ca.url))
        .send()
        .await
        .unwrap();
    let login_cookie = cookie(&form);
    let page = form.text().await.unwrap();
    let csrf = page
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap()
        .to_owned();
    let token = std::fs::read_to_string(ca.data_dir.join("admin.token")).unwrap();
    let logged_in = http
        .post(format!("{}/ui/login", ca.url))
        .header("cookie", login_cookie)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("token={}&csrf={csrf}", token.trim()))
        .send()
        .await
        .unwrap();
    assert_eq!(logged_in.status(), 303);
    let session = cookie(&logged_in);
    let page = http
        .get(format!("{}/ui/audit", ca.url))
        .header("cookie", session)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let banner = page
        .split("<p class=\"")
        .nth(1)
        .and_then(|p| p.split("</p>").next())
        .unwrap_or_default();
    banner.to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_console_says_when_the_end_of_the_trail_does_not_verify() {
    let mut ca = ca_with_a_trail().await;
    let banner = console_audit_banner(&ca).await;
    assert!(
        banner.starts_with("done\" role=\"status\">The last "),
        "{banner}"
    );
    ca.kill();
    let original = read_stored(&ca.data_dir);
    // An event changed with its hash recomputed: the next one gives it away.
    tamper(&mut ca, &original, |t| {
        let e = t.events.get_mut(&7).unwrap();
        e.outcome = "ok".into();
        e.hash = chain::hash(e);
    });
    let banner = console_audit_banner(&ca).await;
    assert!(
        banner
            .contains("role=\"alert\">The trail does not verify: event 7 was changed or replaced"),
        "{banner}"
    );
    // The first event of the trail removed: its successor's number says so.
    tamper(&mut ca, &original, |t| {
        t.events.remove(&1);
    });
    let banner = console_audit_banner(&ca).await;
    assert!(
        banner.contains("role=\"alert\">The trail does not verify: events after 0 are missing"),
        "{banner}"
    );
}
