//! The authority over a real ledger and store (no HTTP): each action's
//! audit event commits with its change, each refusal is on the trail with
//! its code, and the token and renewal rules hold through the flows.

use std::sync::Arc;

use agentca::client::{KeyAlgorithm, PrivateKey};
use agentca::wire::{Actor, AuditEvent, CreateTokenRequest, EnrollRequest, RegisterAgentRequest};
use time::OffsetDateTime;

use super::*;
use crate::issuance::issuer::test_ca;
use crate::revocation::{RevocationConfig, RootCrlSource};
use crate::state::records::AdminRecord;
use crate::state::Change;
use crate::store::{Backend, Store};

struct Setup {
    authority: Authority,
    store: Arc<dyn Store>,
    admin: Admin,
    _dir: tempfile::TempDir,
}

async fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let store = crate::state::open_store(&crate::store::Location::Embedded {
        backend: Backend::Redb,
        dir: dir.path().to_owned(),
    })
    .unwrap();
    let metrics = Arc::new(Metrics::default());
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let ledger = Ledger::start(store.clone(), Some(tx), metrics.clone()).unwrap();
    let token = crate::token::generate(crate::token::ADMIN_PREFIX);
    let record = AdminRecord {
        name: "ops".into(),
        tenant: None,
        created_at: OffsetDateTime::now_utc(),
        role: Default::default(),
        version: 1,
    };
    let put = Change::PutAdmin {
        hash: crate::token::hash(&token).unwrap(),
        admin: record,
        by: String::new(),
    };
    ledger.apply(put).await.unwrap().unwrap();
    let records = Records::new(store.clone());
    let ca = Arc::new(test_ca(&rcgen::PKCS_ECDSA_P256_SHA256));
    let now = OffsetDateTime::now_utc();
    let revocations = Revocations::start(
        ca.clone(),
        records.clone(),
        ledger.clone(),
        RevocationConfig::default(),
        RootCrlSource::None,
        rx,
        now,
    )
    .await
    .unwrap();
    let authority =
        Authority::new(ca, Policy::default(), records, ledger, revocations, metrics).unwrap();
    let admin = authority
        .admin(&RequestContext::default(), Some(&token))
        .await
        .unwrap();
    Setup {
        authority,
        store,
        admin,
        _dir: dir,
    }
}

fn trail(store: &dyn Store) -> Vec<AuditEvent> {
    crate::audit::since(store, 0, 100).unwrap()
}

fn register_bot() -> RegisterAgentRequest {
    RegisterAgentRequest {
        tenant: "acme".into(),
        env: "prod".into(),
        agent: "bot".into(),
        owner: "team".into(),
        purpose: "tests".into(),
        ttl_seconds: None,
        scopes: Vec::new(),
        reuse_retired: false,
    }
}

/// Registers acme/prod/bot as the setup's admin.
async fn register(s: &Setup) {
    let now = OffsetDateTime::now_utc();
    let ctx = RequestContext::default();
    s.authority
        .register(&ctx, &s.admin, register_bot(), now)
        .await
        .unwrap();
}

fn outcomes(events: &[AuditEvent]) -> Vec<(String, String, Option<String>)> {
    events
        .iter()
        .map(|e| (e.action.clone(), e.outcome.clone(), e.reason.clone()))
        .collect()
}

fn event(action: &str, outcome: &str, reason: Option<&str>) -> (String, String, Option<String>) {
    (action.into(), outcome.into(), reason.map(Into::into))
}

#[tokio::test]
async fn a_refused_request_is_on_the_trail_with_its_code_and_a_granted_read_is_not() {
    let s = setup().await;
    let ctx = RequestContext::default();
    let refused = s.authority.admin(&ctx, Some("agentca-admin-nope")).await;
    assert_eq!(refused.unwrap_err().code(), "unauthorized");
    let none = s.authority.admin(&ctx, None).await;
    assert_eq!(none.unwrap_err().code(), "unauthorized");
    s.authority.list_admins(&ctx, &s.admin).await.unwrap();
    assert_eq!(
        outcomes(&trail(&*s.store)),
        [
            event("admin.auth", "refused", Some("unauthorized")),
            event("admin.auth", "refused", Some("unauthorized")),
        ]
    );
}

#[tokio::test]
async fn an_action_commits_with_its_event_and_a_conflict_at_commit_is_an_audited_refusal() {
    let s = setup().await;
    let ctx = RequestContext::default();
    let now = OffsetDateTime::now_utc();
    register(&s).await;
    let again = s
        .authority
        .register(&ctx, &s.admin, register_bot(), now)
        .await;
    assert_eq!(again.unwrap_err().code(), "agent_exists");
    let events = trail(&*s.store);
    assert_eq!(
        outcomes(&events),
        [
            event("register", "ok", None),
            event("register", "refused", Some("agent_exists")),
        ]
    );
    let id = "spiffe://example.org/tenant/acme/env/prod/agent/bot";
    assert!(events.iter().all(|e| e.subject.as_deref() == Some(id)));
    assert_eq!(
        crate::audit::verify_chain(&events, 1, &crate::audit::chain::genesis()),
        Ok(2)
    );
}

#[tokio::test]
async fn a_single_use_token_enrolls_once_and_the_trail_names_it() {
    let s = setup().await;
    let ctx = RequestContext::default();
    let now = OffsetDateTime::now_utc();
    register(&s).await;
    let name = AgentName {
        tenant: "acme".into(),
        env: "prod".into(),
        agent: "bot".into(),
    };
    let token = s
        .authority
        .create_token(&ctx, &s.admin, &name, CreateTokenRequest::default(), now)
        .await
        .unwrap();
    let enroll = || EnrollRequest {
        token: token.token.clone(),
        csr: PrivateKey::generate(KeyAlgorithm::P256)
            .unwrap()
            .csr_pem()
            .unwrap(),
    };
    let issued = s.authority.enroll(&ctx, enroll(), now).await.unwrap();
    let second = s.authority.enroll(&ctx, enroll(), now).await;
    assert_eq!(second.unwrap_err().code(), "token_used");
    let events = trail(&*s.store);
    assert_eq!(
        outcomes(&events)[1..],
        [
            event("token.create", "ok", events[1].reason.as_deref()),
            event("enroll", "ok", None),
            event("enroll", "refused", Some("token_used")),
        ]
    );
    let actor = Actor::Token {
        token_id: token.token_id.clone(),
    };
    assert_eq!(events[2].actor, actor);
    assert_eq!(events[2].serial, Some(issued.serial));
    assert_eq!(events[3].actor, actor);
    assert_eq!(events[3].serial, None, "a refusal names no certificate");
}
