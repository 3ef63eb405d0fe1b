//! End-to-end: an agent calls the example service (examples/service.rs)
//! over mutual TLS; the service verifies it with `agentca::verify` and
//! refuses it within a second of its revocation.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use agentca::client::PrivateKey;
use agentca::verify::PeerIdentity;
use agentca::wire::IssuedCertificate;
use common::{agent_client, write, TestCa};

/// The example binary, built by `cargo test` next to this test's binary.
fn service_bin() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(Path::parent).unwrap();
    let bin = dir.join("examples").join("service");
    assert!(
        bin.exists(),
        "{} is missing: run the tests with `cargo test --workspace`",
        bin.display()
    );
    bin
}

struct Service {
    child: Child,
    url: String,
}

impl Service {
    fn start(ca: &TestCa, dir: &Path, extra: &[&str]) -> Self {
        let mut child = Command::new(service_bin())
            .args([
                "--listen",
                "127.0.0.1:0",
                "--trust-domain",
                "example.org",
                "--allow-tenant",
                "acme",
            ])
            .arg("--cert")
            .arg(dir.join("service.pem"))
            .arg("--key")
            .arg(dir.join("service.key"))
            .arg("--bundle")
            .arg(ca.bundle_path())
            .args(["--ca-url", &ca.url])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the example service");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(url) = line.strip_prefix("service listening on ") {
                    let _ = tx.send(url.to_owned());
                }
            }
        });
        let url = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("the service starts");
        Self { child, url }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Enrolls `agent` of tenant acme, env prod; returns its certificate and key.
async fn enroll(ca: &TestCa, agent: &str) -> (IssuedCertificate, PrivateKey) {
    ca.register("acme", "prod", agent).await;
    ca.enroll(&ca.token("acme", "prod", agent, 1).await)
        .await
        .unwrap()
}

async fn service_files(ca: &TestCa) -> PathBuf {
    let (issued, key) = enroll(ca, "orders").await;
    let dir = ca.root.path().to_owned();
    write(&dir, "service.pem", &issued.certificate_chain);
    write(&dir, "service.key", &key.to_pem());
    dir
}

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
    let (issued, key) = enroll(&ca, "billing-bot").await;
    let service = Service::start(&ca, &dir, &[]);
    let client = agent_client(&ca, &issued, &key);

    let (status, body) = whoami(&client, &service).await.unwrap();
    assert_eq!(status, 200, "{body}");
    let peer: PeerIdentity = serde_json::from_str(&body).unwrap();
    assert_eq!(peer.spiffe_id, issued.spiffe_id);
    assert_eq!(peer.instance_id, Some(issued.instance_id.clone()));
    assert_eq!(peer.serial, issued.serial);

    // Another tenant's agent is refused by the service's policy.
    ca.register("globex", "prod", "intruder").await;
    let (other, other_key) = ca
        .enroll(&ca.token("globex", "prod", "intruder", 1).await)
        .await
        .unwrap();
    assert!(
        whoami(&agent_client(&ca, &other, &other_key), &service)
            .await
            .is_err(),
        "refused at the handshake"
    );

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
    assert!(
        err.contains("Revoked") || err.contains("revoked") || err.contains("alert"),
        "{err}"
    );
}

#[tokio::test]
async fn the_service_fails_closed_when_revocation_data_goes_stale_and_open_when_told() {
    let mut ca = TestCa::start();
    let dir = service_files(&ca).await;
    let (issued, key) = enroll(&ca, "billing-bot").await;
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
    let (issued, key) = enroll(&ca, "billing-bot").await;
    let service = Service::start(&ca, &dir, &["--max-staleness", "60"]);
    let client = agent_client(&ca, &issued, &key);
    assert_eq!(whoami(&client, &service).await.unwrap().0, 200);
    ca.kill();
    tokio::time::sleep(Duration::from_secs(2)).await;
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
    let (issued, _) = enroll(&ca, "billing-bot").await;
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
