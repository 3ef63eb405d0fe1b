//! Security events out: the real `agentca` binary pushes revocations,
//! clone alerts, scope blocks, retirements, agents disabled and enabled,
//! and issuance limits reached as signed Security Event Tokens (RFC 8417,
//! RFC 8935 push) to a TLS receiver on 127.0.0.1, which checks each
//! token's signature against the agentca root; a Python receiver's checks
//! (PyJWT and cryptography: Debian's python3-jwt and python3-cryptography,
//! in `/usr/bin/python3` or `AGENTCA_TEST_PYTHON`) take them too. A
//! receiver that was down gets everything after it comes back, once,
//! across `kill -9` of the CA.

mod common;
#[path = "support/postgres.rs"]
mod postgres;
#[path = "support/receiver.rs"]
mod receiver;

use std::collections::BTreeSet;
use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use agentca::wire::AuditPage;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use common::*;
use receiver::Receiver;
use reqwest::Method;

const CHANGE: &str = "https://schemas.openid.net/secevent/caep/event-type/credential-change";
const COMPROMISE: &str =
    "https://schemas.openid.net/secevent/risc/event-type/credential-compromise";
const PURGED: &str = "https://schemas.openid.net/secevent/risc/event-type/account-purged";
const DISABLED: &str = "https://schemas.openid.net/secevent/risc/event-type/account-disabled";
const ENABLED: &str = "https://schemas.openid.net/secevent/risc/event-type/account-enabled";
const BLOCKED: &str = "https://github.com/agentca/agentca/secevent/scope-blocked";
const LIMITED: &str = "https://github.com/agentca/agentca/secevent/issuance-limited";

/// A CA sending to `receiver` as `soc` the kinds of events `events` names
/// (every kind when empty), with `serve_args`.
fn ca_sending_to(receiver: &Receiver, events: &[&str], serve_args: &[&str]) -> TestCa {
    let file = receiver.receivers_file("soc", events);
    let mut args = vec!["--event-receivers", file.to_str().unwrap()];
    args.extend_from_slice(serve_args);
    let ca = TestCa::start_with(&[], &args);
    receiver.trust(&ca.bundle_path());
    ca
}

/// The value of the sample `name{receiver="soc"[,reason=…]}` in the CA's
/// metrics.
async fn metric(ca: &TestCa, name: &str, reason: Option<&str>) -> f64 {
    let (status, body) = ca.get("/metrics").await;
    assert_eq!(status, 200);
    let text = String::from_utf8(body).unwrap();
    let labels = match reason {
        Some(r) => format!("{{receiver=\"soc\",reason=\"{r}\"}}"),
        None => "{receiver=\"soc\"}".to_owned(),
    };
    let prefix = format!("{name}{labels} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no {prefix} in\n{text}"))
        .parse()
        .unwrap()
}

/// Waits (at most 30 s) until `name` reaches `at_least`.
async fn metric_reaches(ca: &TestCa, name: &str, reason: Option<&str>, at_least: f64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let value = metric(ca, name, reason).await;
        if value >= at_least {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{name} {reason:?} is {value}, not {at_least}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The jti of each of `tokens` as a receiver in Python checks them
/// (`tests/support/verify_set.py`), or why it refused one.
fn verified_in_python(tokens: &[&str], bundle: &Path, audience: &str) -> Vec<String> {
    let python =
        std::env::var("AGENTCA_TEST_PYTHON").unwrap_or_else(|_| "/usr/bin/python3".to_owned());
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/support/verify_set.py");
    let mut child = Command::new(&python)
        .arg(&script)
        .arg(bundle)
        .arg(TRUST_DOMAIN)
        .arg(audience)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{python} runs (python3-jwt, python3-cryptography): {e}"));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(tokens.join("\n").as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{python} refused a token: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

async fn trail(ca: &TestCa) -> AuditPage {
    ca.admin::<(), _>(Method::GET, "/v1/admin/audit?since=0", None)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_security_event_reaches_the_receiver_signed_once_and_in_order() {
    let receiver = Receiver::start(TRUST_DOMAIN).await;
    let ca = ca_sending_to(&receiver, &[], &["--max-certs-per-agent", "3"]);

    // A clone: the same certificate renewed a second time with another key.
    let (cert, key) = ca.enrolled("acme", "prod", "bot").await;
    let client = ca.client_with(&cert.certificate_chain, &key);
    client.renew(&csr()).await.unwrap();
    assert_eq!(
        refusal(client.renew(&csr()).await),
        (409, "clone_detected".into())
    );
    // An agent enrolling past its limit.
    ca.register("acme", "prod", "busy").await;
    let token = ca.token("acme", "prod", "busy", 5).await;
    for _ in 0..3 {
        ca.enroll(&token).await.unwrap();
    }
    assert_eq!(refusal(ca.enroll(&token).await).0, 429);
    ok(ca.command().args([
        "scope",
        "block",
        "tickets:write",
        "--tenant",
        "acme",
        "--reason",
        "runaway writes",
    ]));
    ca.set_enabled("acme", "prod", "bot", false).await;
    ca.set_enabled("acme", "prod", "bot", true).await;
    ca.revoke_agent("acme", "prod", "bot", "keyCompromise")
        .await;
    ok(ca.command().args([
        "retire", "--tenant", "acme", "--env", "prod", "--agent", "busy",
    ]));

    let got = receiver.wait_for(7).await;
    let types: Vec<String> = got.iter().map(|r| r.event_type()).collect();
    assert_eq!(
        types,
        [COMPROMISE, LIMITED, BLOCKED, DISABLED, ENABLED, CHANGE, PURGED],
        "{got:#?}"
    );
    receiver.assert_each_taken_once();

    // Each token is its audit event: `jti` is the event's hash, in the
    // trail's order, and nothing else of the trail was sent.
    let events = trail(&ca).await.events;
    let mut last_seq = 0;
    for r in &got {
        let seq = r.claims["agentca"]["audit_seq"].as_u64().unwrap();
        assert!(seq > last_seq);
        last_seq = seq;
        let event = events.iter().find(|e| e.seq == seq).unwrap();
        assert_eq!(r.claims["jti"], event.hash.as_str());
        // When it happened, and when it was signed (after).
        assert_eq!(r.claims["toe"], event.at.unix_timestamp());
        assert!(r.claims["iat"].as_i64().unwrap() >= event.at.unix_timestamp());
        assert_eq!(r.claims["aud"], "urn:test:soc");
        assert_eq!(r.claims["iss"], format!("spiffe://{TRUST_DOMAIN}"));
        assert_eq!(r.header["kid"], got[0].header["kid"]);
    }
    let bot = format!("spiffe://{TRUST_DOMAIN}/tenant/acme/env/prod/agent/bot");
    let compromise = &got[0];
    assert_eq!(compromise.claims["sub_id"]["uri"], bot.as_str());
    assert_eq!(compromise.payload()["credential_type"], "x509");
    assert_eq!(compromise.payload()["x509_serial"], cert.serial.to_string());
    assert_eq!(got[1].payload()["initiating_entity"], "policy");
    assert_eq!(got[2].payload()["reason_admin"]["en"], "runaway writes");
    assert_eq!(got[2].payload()["scopes"][0], "tickets:write");
    let revoked = &got[5];
    assert_eq!(revoked.claims["sub_id"]["format"], "uri");
    assert_eq!(revoked.claims["sub_id"]["uri"], bot.as_str());
    assert_eq!(revoked.payload()["change_type"], "revoke");
    assert_eq!(revoked.payload()["initiating_entity"], "admin");
    assert!(revoked.payload()["reason_admin"]["en"]
        .as_str()
        .unwrap()
        .contains("keyCompromise"));
    assert!(revoked.claims["txn"].is_string(), "the request's id");
    assert_eq!(
        got[6].claims["sub_id"]["uri"],
        format!("spiffe://{TRUST_DOMAIN}/tenant/acme/env/prod/agent/busy")
    );

    // OpenSSL agrees: the signing certificate chains to the root, and no
    // TLS peer that checks purposes with it (nginx, HAProxy) takes it for
    // a client or a server.
    let dir = tempfile::tempdir().unwrap();
    for (i, name) in [(0, "signer.pem"), (1, "intermediate.pem")] {
        let der = STANDARD
            .decode(got[0].header["x5c"][i].as_str().unwrap())
            .unwrap();
        let pem = agentca::certs_to_pem(&[rustls_pki_types::CertificateDer::from(der)]);
        write(dir.path(), name, &pem);
    }
    let bundle = ca.bundle_path();
    let bundle = bundle.to_str().unwrap();
    let verify = [
        "verify",
        "-CAfile",
        bundle,
        "-untrusted",
        "intermediate.pem",
    ];
    let (verified, text) = openssl(&[&verify[..], &["signer.pem"]].concat(), dir.path());
    assert!(verified, "{text}");
    for purpose in ["sslclient", "sslserver"] {
        let (verified, text) = openssl(
            &[&verify[..], &["-purpose", purpose, "signer.pem"]].concat(),
            dir.path(),
        );
        assert!(!verified, "{purpose}: {text}");
        assert!(text.contains("certificate purpose"), "{text}");
    }

    metric_reaches(&ca, "agentca_security_events_delivered_total", None, 7.0).await;
    for reason in [
        "unreachable",
        "timeout",
        "rejected",
        "server_error",
        "internal",
    ] {
        assert_eq!(
            metric(&ca, "agentca_security_events_failures_total", Some(reason)).await,
            0.0
        );
    }
    let jtis: BTreeSet<_> = receiver
        .accepted()
        .iter()
        .map(|r| r.claims["jti"].to_string())
        .collect();
    assert_eq!(jtis.len(), 7, "nothing was sent twice");

    // A receiver in Python takes every token too.
    let tokens: Vec<&str> = got.iter().map(|r| r.token.as_str()).collect();
    let jtis = verified_in_python(&tokens, &ca.bundle_path(), "urn:test:soc");
    let expected: Vec<String> = got
        .iter()
        .map(|r| r.claims["jti"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(jtis, expected);

    // The CA certified its signing key on the record.
    let signers: Vec<_> = events
        .iter()
        .filter(|e| e.action == "events.signer")
        .collect();
    assert_eq!(signers.len(), 1, "{signers:#?}");
    let signer_der = STANDARD
        .decode(got[0].header["x5c"][0].as_str().unwrap())
        .unwrap();
    let signer_cert = agentca::wire::Serial::from_bytes(
        x509_parser::parse_x509_certificate(&signer_der)
            .unwrap()
            .1
            .raw_serial(),
    )
    .unwrap();
    assert_eq!(signers[0].serial.as_ref(), Some(&signer_cert));
    assert_eq!(
        signers[0].subject.as_deref(),
        Some(format!("spiffe://{TRUST_DOMAIN}").as_str())
    );

    // Events that need no token move the cursor too, once the receiver
    // is idle: the trail behind it may be pruned.
    ca.register("acme", "prod", "quiet").await;
    let registered = trail(&ca)
        .await
        .events
        .into_iter()
        .rfind(|e| e.action == "register")
        .unwrap();
    metric_reaches(
        &ca,
        "agentca_security_events_cursor",
        None,
        registered.seq as f64,
    )
    .await;
    receiver.assert_each_taken_once();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_that_was_down_gets_every_event_once_across_kill_9() {
    let mut receiver = Receiver::start(TRUST_DOMAIN).await;
    receiver.stop().await;
    let mut ca = ca_sending_to(&receiver, &["revocation"], &[]);
    for agent in ["one", "two"] {
        ca.register("acme", "prod", agent).await;
    }
    // A kind of event this receiver did not choose: never sent.
    ca.set_enabled("acme", "prod", "two", false).await;
    ca.set_enabled("acme", "prod", "two", true).await;

    // The receiver is down: the revocation waits, retried.
    ca.revoke_agent("acme", "prod", "one", "keyCompromise")
        .await;
    metric_reaches(
        &ca,
        "agentca_security_events_failures_total",
        Some("unreachable"),
        1.0,
    )
    .await;
    assert!(
        metric(
            &ca,
            "agentca_security_events_waiting_since_timestamp_seconds",
            None
        )
        .await
            > 0.0
    );
    assert!(ca
        .log()
        .contains("a security event was not delivered; retrying"));
    ca.register("acme", "prod", "three").await;

    // The trail keeps what the receiver has not acknowledged.
    let events = trail(&ca).await.events;
    let revocation = events.iter().find(|e| e.action == "revoke").unwrap();
    let detail = refused_with(
        ca.prune_audit(revocation.seq, &revocation.hash).await,
        409,
        "audit_prune_refused",
    );
    assert!(detail.contains("\"soc\""), "{detail}");

    // Killed with the token unsent, started again: the outbox is the
    // trail, so it is still there.
    ca.kill();
    ca.start_again();
    ca.revoke_agent("acme", "prod", "two", "superseded").await;
    receiver.resume().await;
    let got = receiver.wait_for(2).await;
    let subjects: Vec<String> = got
        .iter()
        .map(|r| r.claims["sub_id"]["uri"].as_str().unwrap().to_owned())
        .collect();
    let id = |a: &str| format!("spiffe://{TRUST_DOMAIN}/tenant/acme/env/prod/agent/{a}");
    assert_eq!(subjects, [id("one"), id("two")]);

    // Both acknowledged and the cursor moved (the metric follows the
    // commit), then killed again: neither is sent a second time. Tokens go
    // in the trail's order, so a second copy would arrive before the next.
    metric_reaches(&ca, "agentca_security_events_delivered_total", None, 2.0).await;
    ca.kill();
    ca.start_again();
    ca.revoke_agent("acme", "prod", "three", "superseded").await;
    let got = receiver.wait_for(3).await;
    assert_eq!(got.len(), 3, "nothing sent twice: {got:#?}");
    assert_eq!(got[2].claims["sub_id"]["uri"], id("three").as_str());
    receiver.assert_each_taken_once();
    assert!(got.iter().all(|r| r.event_type() == CHANGE), "{got:#?}");

    // Delivered everywhere it had to go: the trail may be pruned now.
    metric_reaches(&ca, "agentca_security_events_delivered_total", None, 1.0).await;
    let pruned = ca
        .prune_audit(revocation.seq, &revocation.hash)
        .await
        .unwrap();
    assert_eq!(pruned.pruned, revocation.seq);

    // Stopped as an operator stops it (the delivery task ends with the
    // server, well within the test's 20 s), then started: nothing is sent
    // again (a later token comes, and nothing before it). Releasing the
    // hold matters with replicas: the next test.
    ca.stop();
    ca.start_again();
    ca.register("acme", "prod", "four").await;
    ca.revoke_agent("acme", "prod", "four", "superseded").await;
    let got = receiver.wait_for(4).await;
    assert_eq!(got.len(), 4, "{got:#?}");
    assert_eq!(got[3].claims["sub_id"]["uri"], id("four").as_str());
    receiver.assert_each_taken_once();
}

/// Replicas on one PostgreSQL database: one at a time sends to a
/// receiver, so each event arrives once whichever replica recorded it;
/// when the one sending is killed, another takes over once its hold
/// lapses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_send_each_event_once_and_take_over_from_one_killed() {
    let receiver = Receiver::start(TRUST_DOMAIN).await;
    let file = receiver.receivers_file("soc", &[]);
    let url = postgres::fresh_database();
    let mut cas = TestCa::start_replicas(&url, 2, &["--event-receivers", file.to_str().unwrap()]);
    receiver.trust(&cas[0].bundle_path());
    for (i, agent) in ["a0", "a1", "a2", "a3"].into_iter().enumerate() {
        let ca = &cas[i % 2];
        ca.register("acme", "prod", agent).await;
        ca.revoke_agent("acme", "prod", agent, "superseded").await;
    }
    let got = receiver.wait_for(4).await;
    let id = |a: &str| format!("spiffe://{TRUST_DOMAIN}/tenant/acme/env/prod/agent/{a}");
    let subjects: Vec<_> = got
        .iter()
        .map(|r| r.claims["sub_id"]["uri"].clone())
        .collect();
    assert_eq!(subjects, [id("a0"), id("a1"), id("a2"), id("a3")]);

    // Which replica sends? The one whose delivery count moved.
    let mut sender = None;
    for (i, ca) in cas.iter().enumerate() {
        if metric(ca, "agentca_security_events_delivered_total", None).await > 0.0 {
            assert!(sender.is_none(), "both replicas sent");
            sender = Some(i);
        }
    }
    let sender = sender.expect("one replica sent");
    cas[sender].kill();
    let other = &cas[1 - sender];
    other.register("acme", "prod", "a4").await;
    other.revoke_agent("acme", "prod", "a4", "superseded").await;
    // Within the hold (30 s) and a backoff.
    let deadline = Instant::now() + Duration::from_secs(45);
    while receiver.accepted().len() < 5 {
        assert!(
            Instant::now() < deadline,
            "no replica took over: {}",
            other.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let got = receiver.accepted();
    assert_eq!(got.len(), 5, "{got:#?}");
    assert_eq!(got[4].claims["sub_id"]["uri"], id("a4").as_str());

    // Stopped as an operator stops it, the replica sending now lets go of
    // the receiver: the one started again takes over at its next try
    // (every 10 s), not once the hold renewed when a4 went out (30 s)
    // lapses.
    let other = 1 - sender;
    cas[sender].start_again();
    cas[other].stop();
    let stopped = Instant::now();
    let back = &cas[sender];
    back.register("acme", "prod", "a5").await;
    back.revoke_agent("acme", "prod", "a5", "superseded").await;
    while receiver.accepted().len() < 6 {
        assert!(
            stopped.elapsed() < Duration::from_secs(20),
            "the stopped replica did not let go of the receiver: {}",
            back.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let got = receiver.accepted();
    assert_eq!(got.len(), 6, "{got:#?}");
    assert_eq!(got[5].claims["sub_id"]["uri"], id("a5").as_str());
    receiver.assert_each_taken_once();
}

#[test]
fn a_bad_receivers_file_stops_the_ca_before_it_serves() {
    let dir = tempfile::tempdir().unwrap();
    for (text, says) in [
        (
            "[[receiver]]\nname = \"soc\"\nurl = \"http://127.0.0.1:9/\"\n",
            "must be https://",
        ),
        ("[[receiver]]\nname = \"soc\"\n", "missing field `url`"),
        (
            "[[receiver]]\nname = \"soc\"\nurl = \"https://127.0.0.1:9/\"\nca-file = \"nope.pem\"\n",
            "cannot read",
        ),
    ] {
        let file = write(dir.path(), "receivers.toml", text);
        let err = fails(
            std::process::Command::new(agentca_bin())
                .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
                .arg(dir.path().join("ca"))
                .arg("--event-receivers")
                .arg(&file)
                .env("HOME", dir.path()),
        );
        assert!(err.contains(says), "{text}: {err}");
        assert!(
            !dir.path().join("ca").exists(),
            "nothing was created: {err}"
        );
    }
}
