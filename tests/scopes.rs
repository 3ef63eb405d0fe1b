//! End-to-end: scopes granted at registration travel in the agent's
//! certificates, `openssl` reads them as a non-critical extension under the
//! documented OID, the verifier exposes them on `PeerIdentity`, and a route
//! guarded by `require_scope` refuses a caller without the scope.

mod common;

use std::sync::Arc;
use std::time::Duration;

use agentca::identity::TrustDomain;
use agentca::scopes::{SCOPES_OID, SCOPES_OID_DER};
use agentca::verify::serve::{require_scope, serve, Peer};
use agentca::verify::{Usage, Verifier};
use agentca::wire::{AgentInfo, IssuedCertificate, RegisterAgentRequest};
use axum::routing::get;
use axum::Router;
use common::{agent_client, chain_der, key_der, leaf_der, ok, openssl, refusal, write, TestCa};
use reqwest::Method;
use time::OffsetDateTime;

async fn register_scoped(
    ca: &TestCa,
    agent: &str,
    scopes: &[&str],
) -> Result<AgentInfo, agentca::client::ClientError> {
    let req = RegisterAgentRequest {
        tenant: "acme".into(),
        env: "prod".into(),
        agent: agent.into(),
        owner: "team-tickets".into(),
        purpose: "scopes test".into(),
        ttl_seconds: None,
        scopes: scopes.iter().map(|s| s.to_string()).collect(),
        reuse_retired: false,
    };
    ca.admin(Method::POST, "/v1/admin/agents", Some(&req)).await
}

#[tokio::test]
async fn scopes_from_the_registration_are_in_the_certificate_and_enforced_by_require_scope() {
    let ca = TestCa::start();

    // Scopes are normalised (sorted, each once) and shown on the agent.
    let info = register_scoped(
        &ca,
        "ticket-bot",
        &["tickets:read", "db.orders:write", "tickets:read"],
    )
    .await
    .unwrap();
    assert_eq!(info.scopes, ["db.orders:write", "tickets:read"]);
    assert_eq!(
        ca.show("acme", "prod", "ticket-bot").await.scopes,
        info.scopes
    );
    let (scoped, scoped_key) = ca
        .enroll(&ca.token("acme", "prod", "ticket-bot", 1).await)
        .await
        .unwrap();
    // An agent registered without scopes gets certificates without the
    // extension.
    let (plain, plain_key) = ca.enrolled("acme", "prod", "report-bot").await;

    // The extension as the world sees it.
    let der = leaf_der(&scoped.certificate_chain);
    let (_, leaf) = x509_parser::parse_x509_certificate(&der).unwrap();
    let ext = leaf
        .extensions()
        .iter()
        .find(|e| e.oid.as_bytes() == SCOPES_OID_DER)
        .expect("the scopes extension");
    assert!(!ext.critical);
    assert_eq!(
        agentca::scopes::decode(ext.value).unwrap(),
        ["db.orders:write", "tickets:read"]
    );
    let plain_der = leaf_der(&plain.certificate_chain);
    let (_, plain_leaf) = x509_parser::parse_x509_certificate(&plain_der).unwrap();
    assert!(plain_leaf
        .extensions()
        .iter()
        .all(|e| e.oid.as_bytes() != SCOPES_OID_DER));

    // openssl shows the OID in dotted form and verifies the chain: the
    // signature covers the extension as issued.
    let dir = ca.root.path();
    let leaf_pem = write(
        dir,
        "scoped.pem",
        &pem::encode(&pem::Pem::new("CERTIFICATE", der.clone())),
    );
    let (ok, text) = openssl(
        &["x509", "-noout", "-text", "-in", leaf_pem.to_str().unwrap()],
        dir,
    );
    assert!(ok && text.contains(SCOPES_OID), "{text}");
    let intermediate = write(dir, "intermediate.pem", &chain_pem_after_leaf(&scoped));
    let (ok, out) = openssl(
        &[
            "verify",
            "-purpose",
            "sslclient",
            "-CAfile",
            ca.bundle_path().to_str().unwrap(),
            "-untrusted",
            intermediate.to_str().unwrap(),
            leaf_pem.to_str().unwrap(),
        ],
        dir,
    );
    assert!(ok, "{out}");

    // The verifier exposes them.
    let td = TrustDomain::new("example.org").unwrap();
    let verifier = Verifier::builder(ca.bundle(), td)
        .allow_tenant("acme")
        .without_revocation_checks()
        .build()
        .unwrap();
    let peer = verifier
        .verify_peer(
            &chain_der(&scoped),
            Usage::Client,
            OffsetDateTime::now_utc(),
        )
        .unwrap();
    assert_eq!(peer.scopes, ["db.orders:write", "tickets:read"]);
    assert!(peer.require_scope("tickets:read").is_ok());
    let missing = peer.require_scope("tickets:write").unwrap_err();
    assert_eq!(missing.scope, "tickets:write");
    let plain_peer = verifier
        .verify_peer(&chain_der(&plain), Usage::Client, OffsetDateTime::now_utc())
        .unwrap();
    assert!(plain_peer.scopes.is_empty());

    // Renewal keeps them.
    let (renewed, new_key) = ca.renewed(&scoped, &scoped_key).await;
    let renewed_peer = verifier
        .verify_peer(
            &chain_der(&renewed),
            Usage::Client,
            OffsetDateTime::now_utc(),
        )
        .unwrap();
    assert_eq!(renewed_peer.scopes, peer.scopes);

    // A service whose /tickets route needs tickets:read and whose /admin
    // route needs tickets:admin.
    let (service_cert, service_key) = ca.enrolled("acme", "prod", "orders").await;
    let tls = Arc::new(
        verifier
            .server_config(chain_der(&service_cert), key_der(&service_key))
            .unwrap(),
    );
    async fn whoami(Peer(peer): Peer) -> String {
        peer.spiffe_id.to_string()
    }
    let app = Router::new()
        .route("/tickets", get(whoami))
        .route_layer(require_scope("tickets:read"))
        .route(
            "/admin",
            get(whoami).route_layer(require_scope("tickets:admin")),
        )
        .route("/open", get(whoami));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("https://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(listener, tls, verifier.clone(), app, async {
        let _ = stopped.await;
    }));

    let get = |client: reqwest::Client, path: &'static str| {
        let url = format!("{url}{path}");
        async move {
            let resp = client.get(url).send().await.expect("the service answers");
            (resp.status().as_u16(), resp.text().await.unwrap())
        }
    };
    let scoped_client = agent_client(&ca, &renewed, &new_key);
    let plain_client = agent_client(&ca, &plain, &plain_key);
    let (status, body) = get(scoped_client.clone(), "/tickets").await;
    assert_eq!(
        (status, body.as_str()),
        (200, scoped.spiffe_id.to_string().as_str())
    );
    let (status, body) = get(scoped_client.clone(), "/admin").await;
    assert_eq!(status, 403, "{body}");
    assert!(
        body.contains("missing_scope") && body.contains("tickets:admin"),
        "{body}"
    );
    let (status, body) = get(plain_client.clone(), "/tickets").await;
    assert_eq!(status, 403, "{body}");
    assert!(
        body.contains("missing_scope") && body.contains("tickets:read"),
        "{body}"
    );
    // Routes without the layer accept any verified agent.
    assert_eq!(get(plain_client, "/open").await.0, 200);

    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(15), server)
        .await
        .expect("the service stops")
        .unwrap();
}

/// Everything after the leaf in an issued chain, as PEM.
fn chain_pem_after_leaf(issued: &IssuedCertificate) -> String {
    let blocks = pem::parse_many(&issued.certificate_chain).unwrap();
    pem::encode_many(&blocks[1..])
}

#[tokio::test]
async fn malformed_scopes_are_refused_and_nothing_is_registered() {
    let ca = TestCa::start();
    let too_many: Vec<String> = (0..33).map(|i| format!("s{i}:read")).collect();
    let too_many: Vec<&str> = too_many.iter().map(String::as_str).collect();
    for scopes in [
        &["Tickets:read"][..],
        &[":read"],
        &["tickets read"],
        &[""],
        &[&*"a".repeat(65)],
        &too_many,
    ] {
        let (status, code) = refusal(register_scoped(&ca, "bad-bot", scopes).await);
        assert_eq!(
            (status, code.as_str()),
            (400, "invalid_request"),
            "{scopes:?}"
        );
    }
    let shown: Result<AgentInfo, _> = ca
        .admin::<(), _>(Method::GET, "/v1/admin/agents/acme/prod/bad-bot", None)
        .await;
    assert_eq!(refusal(shown).0, 404);

    // The CLI takes --scope, repeated.
    let out = ok(ca.command().args([
        "register",
        "--tenant",
        "acme",
        "--env",
        "prod",
        "--agent",
        "cli-bot",
        "--owner",
        "me",
        "--purpose",
        "test",
        "--scope",
        "tickets:read",
        "--scope",
        "kb:search",
    ]));
    let info: AgentInfo = serde_json::from_str(&out).unwrap();
    assert_eq!(info.scopes, ["kb:search", "tickets:read"]);
}
