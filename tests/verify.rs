//! End-to-end: an agent calls the example service (examples/service.rs)
//! over mutual TLS; the service verifies it with `agentca::verify` and
//! refuses it within a second of its revocation.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use agentca::verify::PeerIdentity;
use common::{agent_client, service_files, write, Service, TestCa};

async fn whoami(client: &reqwest::Client, service: &Service) -> Result<(u16, String), String> {
    match client.get(format!("{}/whoami", service.url)).send().await {
        Ok(resp) => {
            let status = resp.status().as_u16();
            Ok((status, resp.text().await.unwrap_or_default()))
        }
        Err(e) => Err(format!("{e:?}")),
    }
}

#[tokio::test]
async fn the_service_knows_which_agent_calls_and_refuses_it_within_a_second_of_its_revocation() {
    let ca = TestCa::start();
    let dir = service_files(&ca).await;
    let (issued, key) = ca.enrolled("acme", "prod", "billing-bot").await;
    let service = Service::start(&ca, &dir, &[]);
    let client = agent_client(&ca, &issued, &key);

    let (status, body) = whoami(&client, &service).await.unwrap();
    assert_eq!(status, 200, "{body}");
    let peer: PeerIdentity = serde_json::from_str(&body).unwrap();
    assert_eq!(peer.spiffe_id, issued.spiffe_id);
    assert_eq!(peer.instance_id, Some(issued.instance_id.clone()));
    assert_eq!(peer.serial, issued.serial);

    // Another tenant's agent is refused by the service's policy.
    let (other, other_key) = ca.enrolled("globex", "prod", "intruder").await;
    let err = whoami(&agent_client(&ca, &other, &other_key), &service)
        .await
        .unwrap_err();
    // The service's verifier refused it: the client receives the alert.
    assert!(err.contains("AlertReceived(CertificateUnknown)"), "{err}");

    ca.revoke_agent("acme", "prod", "billing-bot", "keyCompromise")
        .await;
    let revoked_at = Instant::now();
    // The already-open connection: its next request is refused.
    let refused = loop {
        let (status, body) = whoami(&client, &service)
            .await
            .expect("the open connection answers");
        if status != 200 {
            break (status, body, revoked_at.elapsed());
        }
        assert!(
            revoked_at.elapsed() < Duration::from_secs(1),
            "still accepted after a second"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(refused.0, 401, "{}", refused.1);
    assert!(refused.1.contains("certificate_revoked"), "{}", refused.1);
    assert!(refused.2 < Duration::from_secs(1), "{:?}", refused.2);

    // A new connection: refused at the handshake.
    let fresh = agent_client(&ca, &issued, &key);
    let err = whoami(&fresh, &service).await.unwrap_err();
    assert!(err.contains("AlertReceived(CertificateRevoked)"), "{err}");
}

#[tokio::test]
async fn the_service_fails_closed_when_revocation_data_goes_stale_and_open_when_told() {
    let mut ca = TestCa::start();
    let dir = service_files(&ca).await;
    let (issued, key) = ca.enrolled("acme", "prod", "billing-bot").await;
    let closed = Service::start(&ca, &dir, &["--max-staleness", "2"]);
    let open = Service::start(&ca, &dir, &["--max-staleness", "2", "--fail-open"]);
    let client = agent_client(&ca, &issued, &key);
    assert_eq!(whoami(&client, &closed).await.unwrap().0, 200);
    assert_eq!(whoami(&client, &open).await.unwrap().0, 200);

    // The CA goes away: neither its feed nor its CRL can be reached.
    ca.kill();
    let deadline = Instant::now() + Duration::from_secs(30);
    let refused = loop {
        let (status, body) = whoami(&client, &closed)
            .await
            .expect("the open connection answers");
        if status != 200 {
            break (status, body);
        }
        assert!(
            Instant::now() < deadline,
            "the fail-closed service kept accepting"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(refused.0, 503, "{}", refused.1);
    assert!(refused.1.contains("revocation_stale"), "{}", refused.1);
    // The fail-open service keeps serving, on an open and on a new connection.
    assert_eq!(whoami(&client, &open).await.unwrap().0, 200);
    assert_eq!(
        whoami(&agent_client(&ca, &issued, &key), &open)
            .await
            .unwrap()
            .0,
        200
    );
}

#[tokio::test]
async fn a_verifier_keeps_accepting_through_a_ca_outage_shorter_than_the_bound() {
    let mut ca = TestCa::start();
    let dir = service_files(&ca).await;
    let (issued, key) = ca.enrolled("acme", "prod", "billing-bot").await;
    let service = Service::start(&ca, &dir, &["--max-staleness", "60"]);
    // The same outage against a 2 s bound shows the staleness is checked.
    let strict = Service::start(&ca, &dir, &["--max-staleness", "2"]);
    let client = agent_client(&ca, &issued, &key);
    let strict_client = agent_client(&ca, &issued, &key);
    assert_eq!(whoami(&client, &service).await.unwrap().0, 200);
    assert_eq!(whoami(&strict_client, &strict).await.unwrap().0, 200);
    ca.kill();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (status, body) = whoami(&strict_client, &strict).await.unwrap();
        if status == 503 {
            assert!(body.contains("revocation_stale"), "{body}");
            break;
        }
        assert!(Instant::now() < deadline, "the 2 s bound was never reached");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(whoami(&client, &service).await.unwrap().0, 200);
    assert_eq!(
        whoami(&agent_client(&ca, &issued, &key), &service)
            .await
            .unwrap()
            .0,
        200
    );
}

#[tokio::test]
async fn the_verify_command_checks_a_chain_offline() {
    let ca = TestCa::start();
    let (issued, _) = ca.enrolled("acme", "prod", "billing-bot").await;
    let dir = ca.root.path();
    write(dir, "chain.pem", &issued.certificate_chain);
    let verify = |extra: &[&str]| {
        Command::new(common::agentca_bin())
            .args(["verify", "--trust-domain", "example.org", "--bundle"])
            .arg(ca.bundle_path())
            .args(extra)
            .arg(dir.join("chain.pem"))
            .output()
            .unwrap()
    };
    let out = verify(&[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let peer: PeerIdentity = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(peer.spiffe_id, issued.spiffe_id);

    let out = verify(&["--allow-tenant", "globex"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not allowed"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let out = Command::new(common::agentca_bin())
        .args(["verify", "--trust-domain", "other.org", "--bundle"])
        .arg(ca.bundle_path())
        .arg(dir.join("chain.pem"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("trust domain"));

    // With the CRL: refused once revoked.
    ca.revoke_agent("acme", "prod", "billing-bot", "keyCompromise")
        .await;
    std::fs::write(dir.join("crl.der"), ca.crl().await).unwrap();
    let crl = dir.join("crl.der");
    let out = verify(&["--crl", crl.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("revoked"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn a_refused_caller_reads_why_even_when_it_writes_on() {
    // In TLS 1.3 a client finishes its handshake before the server has
    // checked its certificate, and writes its request at once. A server
    // that closes at once answers the client's next bytes with a reset,
    // and the client's following write fails (curl: "send failure") before
    // it reads the alert that says why. The service lingers instead.
    use agentca::identity::TrustDomain;
    use agentca::verify::Verifier;
    use std::io::{Read, Write};

    let ca = TestCa::start();
    let dir = service_files(&ca).await;
    let (issued, key) = ca.enrolled("acme", "prod", "billing-bot").await;
    let service = Service::start(&ca, &dir, &[]);
    ca.revoke_agent("acme", "prod", "billing-bot", "keyCompromise")
        .await;
    let client = agent_client(&ca, &issued, &key);
    let deadline = Instant::now() + Duration::from_secs(5);
    while whoami(&client, &service).await.is_ok() {
        assert!(
            Instant::now() < deadline,
            "the service learns of the revocation"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let verifier = Verifier::builder(ca.bundle(), TrustDomain::new("example.org").unwrap())
        .without_revocation_checks()
        .build()
        .unwrap();
    let config = std::sync::Arc::new(
        verifier
            .client_config(common::chain_der(&issued), common::key_der(&key))
            .unwrap(),
    );
    let addr = service.url.trim_start_matches("https://").to_owned();
    for attempt in 0..5 {
        let tcp = std::net::TcpStream::connect(&addr).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let name = rustls_pki_types::ServerName::try_from("service.example").unwrap();
        let conn = rustls::ClientConnection::new(config.clone(), name).unwrap();
        let mut tls = rustls::StreamOwned::new(conn, tcp);
        while tls.conn.is_handshaking() {
            tls.conn.complete_io(&mut tls.sock).unwrap();
        }
        // The server's answer (the alert) has arrived: it has refused us.
        tls.sock.peek(&mut [0u8; 1]).unwrap();
        // Write on, as a client that has not read yet; a reset needs a
        // round trip on loopback to come back.
        let _ = tls.write_all(b"GET /whoami HTTP/1.1\r\nhost: service\r\n\r\n");
        std::thread::sleep(Duration::from_millis(50));
        let wrote_on = tls.write_all(b"more").and_then(|()| tls.flush());
        let read = tls.read(&mut [0u8; 64]);
        let err = format!("{wrote_on:?} {read:?}");
        assert!(
            wrote_on.is_ok() && err.contains("AlertReceived(CertificateRevoked)"),
            "attempt {attempt}: {err}"
        );
    }
}
