//! End-to-end: hostile input, endpoint by endpoint. Each case gets a clear
//! 4xx (or, for a client that never finishes, a closed connection) within
//! a bounded time; other clients are served all along; and the stored
//! state is byte for byte what it was, but for the audit trail, which
//! records (or counts) the refusals.

mod common;

use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use agentca::client::client_config;
use agentca::client::CaTrust;
use agentca_ca::store::{open, Backend, Snapshot, Table};
use base64::Engine;
use common::{csr, ok, TestCa};
use rustls_pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// Longest a refusal may take.
const BOUND: Duration = Duration::from_secs(5);

/// One hostile request and the statuses it may get.
struct Case {
    name: &'static str,
    method: reqwest::Method,
    path: String,
    content_type: Option<&'static str>,
    admin: bool,
    body: Vec<u8>,
    /// Acceptable statuses.
    want: &'static [u16],
}

fn case(
    name: &'static str,
    method: reqwest::Method,
    path: &str,
    body: impl Into<Vec<u8>>,
    want: &'static [u16],
) -> Case {
    Case {
        name,
        method,
        path: path.to_owned(),
        content_type: Some("application/json"),
        admin: false,
        body: body.into(),
        want,
    }
}

fn json(value: serde_json::Value) -> Vec<u8> {
    serde_json::to_vec(&value).unwrap()
}

/// `pem`'s DER with one byte of its signature flipped, as PEM again.
fn bad_signature(pem_text: &str) -> String {
    let mut block = pem::parse(pem_text).unwrap();
    let mut der = block.contents().to_vec();
    let last = der.len() - 3;
    der[last] ^= 0x01;
    block = pem::Pem::new(block.tag().to_owned(), der);
    pem::encode(&block)
}

/// An RSA CSR (a key type the CA does not sign for), made by openssl.
fn rsa_csr(dir: &std::path::Path) -> String {
    ok(Command::new("openssl")
        .args([
            "req", "-new", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=x", "-keyout",
        ])
        .arg(dir.join("rsa.key")))
}

/// An OCSP request naming a certificate of another CA, made by openssl.
fn foreign_ocsp_request(dir: &std::path::Path) -> Vec<u8> {
    ok(Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .args(["-nodes", "-subj", "/CN=other", "-days", "1", "-keyout"])
        .arg(dir.join("other.key"))
        .arg("-out")
        .arg(dir.join("other.pem")));
    ok(Command::new("openssl")
        .args(["ocsp", "-no_nonce", "-issuer"])
        .arg(dir.join("other.pem"))
        .args(["-serial", "0x4a5b6c7d", "-reqout"])
        .arg(dir.join("req.der")));
    std::fs::read(dir.join("req.der")).unwrap()
}

/// The stored state but the audit trail (and its head), which refusals
/// are meant to reach, and the CRLs the CA publishes on its own (a restart
/// on a new plain-HTTP port re-signs them with the new URL).
fn stored(ca: &TestCa) -> Snapshot {
    let store = open(Backend::Redb, &ca.data_dir).unwrap();
    let mut snapshot = store.snapshot().unwrap();
    drop(store);
    for (table, entries) in &mut snapshot {
        match table {
            Table::Audit => entries.clear(),
            Table::Meta => entries.retain(|(k, _)| {
                !(k.as_slice() == b"audit_head"
                    || k.starts_with(b"crl")
                    || k.starts_with(b"root_crl"))
            }),
            _ => {}
        }
    }
    snapshot
}

fn corpus(dir: &std::path::Path) -> Vec<Case> {
    use reqwest::Method;
    let good_csr = csr();
    let foreign_ocsp = foreign_ocsp_request(dir);
    let token = "agentca-bt-0000000000000000000000000000000000000000000";
    let enroll = |csr: &str| json(serde_json::json!({"token": token, "csr": csr}));
    // Deep, but under the body limit: the parser's depth limit refuses it.
    let mut nested = "[".repeat(20_000);
    nested.push_str(&"]".repeat(20_000));
    let mut cases = vec![
        // Enrollment: bodies of every wrong shape.
        case(
            "enroll: truncated JSON",
            Method::POST,
            "/v1/enroll",
            &enroll(&good_csr)[..40],
            &[400],
        ),
        case(
            "enroll: oversized body",
            Method::POST,
            "/v1/enroll",
            vec![b'{'; 200 * 1024],
            &[400, 413],
        ),
        case(
            "enroll: deeply nested JSON",
            Method::POST,
            "/v1/enroll",
            nested.clone(),
            &[400],
        ),
        case(
            "enroll: malformed JSON",
            Method::POST,
            "/v1/enroll",
            "{\"token\": tru}",
            &[400],
        ),
        case(
            "enroll: unknown field",
            Method::POST,
            "/v1/enroll",
            json(serde_json::json!({"token": token, "csr": good_csr, "admin": true})),
            &[400],
        ),
        case("enroll: empty body", Method::POST, "/v1/enroll", "", &[400]),
        case(
            "enroll: made-up token",
            Method::POST,
            "/v1/enroll",
            enroll(&good_csr),
            &[401],
        ),
        case(
            "enroll: oversized token",
            Method::POST,
            "/v1/enroll",
            json(serde_json::json!({"token": "a".repeat(60_000), "csr": good_csr})),
            &[400, 401, 413],
        ),
        case(
            "enroll: PEM garbage",
            Method::POST,
            "/v1/enroll",
            enroll(
                "-----BEGIN CERTIFICATE REQUEST-----\n!!!!\n-----END CERTIFICATE REQUEST-----\n",
            ),
            &[400, 401],
        ),
        case(
            "enroll: DER garbage",
            Method::POST,
            "/v1/enroll",
            enroll(&pem::encode(&pem::Pem::new(
                "CERTIFICATE REQUEST",
                vec![0x30, 0x82, 0xff, 0xff, 0x01],
            ))),
            &[400, 401],
        ),
        case(
            "enroll: bad CSR signature",
            Method::POST,
            "/v1/enroll",
            enroll(&bad_signature(&good_csr)),
            &[400, 401],
        ),
        case(
            "enroll: RSA key",
            Method::POST,
            "/v1/enroll",
            enroll(&rsa_csr(dir)),
            &[400, 401],
        ),
        case(
            "enroll: NUL and bidi text",
            Method::POST,
            "/v1/enroll",
            json(serde_json::json!({"token": "\u{0}\u{202e}", "csr": "\u{202e}"})),
            &[400, 401],
        ),
        // Renewal without a client certificate.
        case(
            "renew: no client certificate",
            Method::POST,
            "/v1/renew",
            json(serde_json::json!({"csr": good_csr})),
            &[401],
        ),
        case(
            "renew: garbage",
            Method::POST,
            "/v1/renew",
            "\u{0}\u{1}\u{2}",
            &[400, 401],
        ),
        // The revocation feed's query.
        case(
            "feed: negative since",
            Method::GET,
            "/v1/revocations?since=-1",
            "",
            &[400],
        ),
        case(
            "feed: huge limit",
            Method::GET,
            "/v1/revocations?limit=999999999999999999999999",
            "",
            &[400],
        ),
        case(
            "feed: wrong token",
            Method::GET,
            "/v1/revocations?since=0&wait=0",
            "",
            &[401],
        ),
        // CRLs and OCSP.
        case(
            "crl: unknown format",
            Method::GET,
            "/v1/crl?format=xml",
            "",
            &[400],
        ),
        case(
            "ocsp: garbage",
            Method::POST,
            "/v1/ocsp",
            vec![0x30, 0x03, 0x02, 0x01],
            &[400],
        ),
        case(
            "ocsp: truncated",
            Method::POST,
            "/v1/ocsp",
            foreign_ocsp[..20].to_vec(),
            &[400],
        ),
        case(
            "ocsp: oversized",
            Method::POST,
            "/v1/ocsp",
            vec![0x30; 100 * 1024],
            &[400, 413],
        ),
        case("ocsp: bad base64", Method::GET, "/v1/ocsp/%%%%", "", &[400]),
        case(
            "ocsp: path traversal",
            Method::GET,
            "/v1/ocsp/..%2F..%2Fetc%2Fpasswd",
            "",
            &[400],
        ),
        // Admin endpoints, without and with a token.
        case(
            "admin: no token",
            Method::GET,
            "/v1/admin/agents",
            "",
            &[401],
        ),
        case(
            "admin: path traversal",
            Method::GET,
            "/v1/admin/agents/..%2F..%2Fetc/passwd/x",
            "",
            &[400, 401],
        ),
        case(
            "admin: unknown route",
            Method::GET,
            "/v1/admin/../../etc/passwd",
            "",
            &[404],
        ),
    ];
    // The OCSP request for another CA's certificate: answered, but as
    // `unauthorized` (RFC 6960), not as anything about ours.
    let mut foreign = case(
        "ocsp: another issuer",
        Method::POST,
        "/v1/ocsp",
        foreign_ocsp.clone(),
        &[200],
    );
    foreign.content_type = Some("application/ocsp-request");
    cases.push(foreign);
    let mut garbage_get = case(
        "ocsp: GET of garbage",
        Method::GET,
        &format!(
            "/v1/ocsp/{}",
            base64::engine::general_purpose::STANDARD.encode([0xffu8; 64])
        ),
        "",
        &[400],
    );
    garbage_get.content_type = None;
    cases.push(garbage_get);
    let mut wrong_type = case(
        "enroll: wrong content type",
        Method::POST,
        "/v1/enroll",
        enroll(&good_csr),
        &[415],
    );
    wrong_type.content_type = Some("text/plain");
    cases.push(wrong_type);
    for (name, path, body, want) in [
        (
            "admin: register with traversal names",
            "/v1/admin/agents",
            json(
                serde_json::json!({"tenant": "../..", "env": "prod", "agent": "x", "owner": "o", "purpose": "p"}),
            ),
            &[400][..],
        ),
        (
            "admin: register with bidi owner",
            "/v1/admin/agents",
            json(
                serde_json::json!({"tenant": "acme", "env": "prod", "agent": "x", "owner": "a\u{202e}b", "purpose": "p"}),
            ),
            &[400],
        ),
        (
            "admin: register with NUL purpose",
            "/v1/admin/agents",
            json(
                serde_json::json!({"tenant": "acme", "env": "prod", "agent": "x", "owner": "o", "purpose": "a\u{0}b"}),
            ),
            &[400],
        ),
        (
            "admin: register with huge ttl",
            "/v1/admin/agents",
            json(
                serde_json::json!({"tenant": "acme", "env": "prod", "agent": "x", "owner": "o", "purpose": "p", "ttl_seconds": u64::MAX}),
            ),
            &[400],
        ),
        (
            "admin: register with negative ttl",
            "/v1/admin/agents",
            json(
                serde_json::json!({"tenant": "acme", "env": "prod", "agent": "x", "owner": "o", "purpose": "p", "ttl_seconds": -5}),
            ),
            &[400],
        ),
        (
            "admin: revoke a huge serial",
            "/v1/admin/revoke",
            json(serde_json::json!({"serial": "ff".repeat(40)})),
            &[400],
        ),
        (
            "admin: revoke a negative serial",
            "/v1/admin/revoke",
            json(serde_json::json!({"serial": "-1"})),
            &[400],
        ),
        (
            "admin: revoke nothing",
            "/v1/admin/revoke",
            json(serde_json::json!({})),
            &[400],
        ),
        (
            "admin: revoke with a bad reason",
            "/v1/admin/revoke",
            json(serde_json::json!({"tenant": "acme", "reason": "because"})),
            &[400],
        ),
        (
            "admin: token for a made-up agent",
            "/v1/admin/agents/acme/prod/ghost/tokens",
            json(serde_json::json!({"uses": 0})),
            &[400, 404],
        ),
        (
            "admin: prune audit far ahead",
            "/v1/admin/audit/prune",
            json(serde_json::json!({"through": u64::MAX, "hash": "00"})),
            &[409],
        ),
    ] {
        let mut c = case(name, Method::POST, path, body, want);
        c.admin = true;
        cases.push(c);
    }
    cases
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_input_gets_a_clear_refusal_in_bounded_time_and_changes_nothing_stored() {
    let mut ca = TestCa::start_with(
        &[],
        &[
            "--header-timeout",
            "2s",
            "--request-timeout",
            "2s",
            "--http-listen",
            "127.0.0.1:0",
        ],
    );
    // Something worth keeping: an agent with a certificate and a token.
    ca.enrolled("acme", "prod", "bot").await;
    ca.token("acme", "prod", "bot", 3).await;
    ca.stop();
    let before = stored(&ca);
    ca.start_again();

    // Another client, served all along.
    let stop = Arc::new(AtomicBool::new(false));
    let served = Arc::new(AtomicU64::new(0));
    let bystander = {
        let (client, stop, served) = (ca.client(), stop.clone(), served.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let started = Instant::now();
                client.health().await.expect("a bystander is served");
                assert!(
                    started.elapsed() < BOUND,
                    "a bystander waited {:?}",
                    started.elapsed()
                );
                served.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };

    let dir = tempfile::tempdir().unwrap();
    let http = ca.http();
    let mut failures = Vec::new();
    for c in corpus(dir.path()) {
        let base = if c.path.starts_with("/v1/ocsp") && c.method == reqwest::Method::GET {
            ca.http_url.clone().unwrap()
        } else {
            ca.url.clone()
        };
        let mut req = http.request(c.method.clone(), format!("{base}{}", c.path));
        if let Some(t) = c.content_type {
            req = req.header("content-type", t);
        }
        if c.admin {
            req = req.bearer_auth(ca.admin_token());
        } else if c.name == "feed: wrong token" {
            req = req.bearer_auth("agentca-admin-made-up");
        }
        if !c.body.is_empty() {
            req = req.body(c.body.clone());
        }
        let started = Instant::now();
        let result = tokio::time::timeout(BOUND, req.send()).await;
        let took = started.elapsed();
        let status = match result {
            Err(_) => {
                failures.push(format!("{}: no answer within {BOUND:?}", c.name));
                continue;
            }
            Ok(Err(e)) => {
                failures.push(format!("{}: {e}", c.name));
                continue;
            }
            Ok(Ok(resp)) => resp.status().as_u16(),
        };
        if !c.want.contains(&status) {
            failures.push(format!(
                "{}: {status}, expected one of {:?} (in {took:?})",
                c.name, c.want
            ));
        }
    }

    // Clients that never finish: silent after the handshake, and a body
    // that stops short. Each is closed within a bounded time.
    for (name, request) in [
        ("headers never finished", b"POST /v1/enroll HTTP/1.1\r\nhost: x\r\ncontent-le".to_vec()),
        ("body never finished", b"POST /v1/enroll HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n{\"tok".to_vec()),
    ] {
        let addr = ca.url.trim_start_matches("https://").to_owned();
        let tcp = TcpStream::connect(&addr).await.unwrap();
        let config = client_config(&CaTrust::Bundle(ca.bundle()), None).unwrap();
        let mut tls = TlsConnector::from(Arc::new(config))
            .connect(ServerName::try_from("127.0.0.1").unwrap(), tcp)
            .await
            .unwrap();
        tls.write_all(&request).await.unwrap();
        let started = Instant::now();
        let mut answer = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(10), tls.read_to_end(&mut answer)).await;
        match read {
            Err(_) => failures.push(format!("{name}: still open after 10 s")),
            Ok(_) => {
                let text = String::from_utf8_lossy(&answer);
                if !(answer.is_empty() || text.starts_with("HTTP/1.1 4")) {
                    failures.push(format!("{name}: answered {text}"));
                }
                if started.elapsed() > Duration::from_secs(6) {
                    failures.push(format!("{name}: closed only after {:?}", started.elapsed()));
                }
            }
        }
    }

    stop.store(true, Ordering::Relaxed);
    bystander.await.unwrap();
    assert!(served.load(Ordering::Relaxed) > 0);
    assert!(failures.is_empty(), "{failures:#?}");
    ca.stop();
    let after = stored(&ca);
    for ((table, was), (_, is)) in before.iter().zip(&after) {
        assert_eq!(was, is, "table {} changed", table.name());
    }
}
