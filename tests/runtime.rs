//! End-to-end: the agent runtime (`agentca::client::Agent` and
//! `agentca run`) with certificates that live seconds.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use agentca::client::agent::Health;
use agentca::client::{Agent, AgentConfig, CaTrust};
use agentca::identity::TrustDomain;
use agentca::verify::{PeerIdentity, Verifier};
use agentca::wire::Serial;
use common::{https_client, serial_in, service_files, write, Service, TestCa};

/// A CA whose registrations may ask for certificates of a few seconds.
fn short_lived_ca() -> TestCa {
    TestCa::start_with(&[], &["--min-ttl", "1s"])
}

/// An HTTPS client presenting the agent's newest certificate, accepting the
/// service by its identity.
fn client_of(agent: &Agent) -> reqwest::Client {
    let verifier = Verifier::builder(agent.bundle(), TrustDomain::new("example.org").unwrap())
        .allow_agent("orders")
        .without_revocation_checks()
        .build()
        .unwrap();
    https_client(agent.client_config(verifier).unwrap())
}

async fn whoami(client: &reqwest::Client, service: &Service) -> Result<PeerIdentity, String> {
    let resp = client
        .get(format!("{}/whoami", service.url))
        .send()
        .await
        .map_err(|e| format!("{e:?}"))?;
    let status = resp.status();
    let body = resp.text().await.unwrap_or_default();
    if !status.is_success() {
        return Err(format!("{status}: {body}"));
    }
    serde_json::from_str(&body).map_err(|e| e.to_string())
}

fn agent_config(ca: &TestCa, token: String, dir: Option<PathBuf>) -> AgentConfig {
    let mut config = AgentConfig::new(ca.url.clone(), CaTrust::Pinned(ca.root_fingerprint()));
    config.token = Some(token);
    config.dir = dir;
    config
}

#[tokio::test]
async fn an_agent_keeps_calling_a_service_across_three_rotations_without_a_failed_call() {
    let ca = short_lived_ca();
    let service = Service::start(&ca, &service_files(&ca).await, &[]);
    ca.register_with_ttl("acme", "prod", "worker", Some(5))
        .await;
    let token = ca.token("acme", "prod", "worker", 1).await;
    let agent = Agent::start(agent_config(&ca, token, None)).await.unwrap();
    let first = agent.current();
    let mut rotations = agent.rotations();
    rotations.borrow_and_update();

    let mut client = client_of(&agent);
    let mut seen: Vec<Serial> = vec![first.serial.clone()];
    let mut calls = 0;
    let deadline = Instant::now() + Duration::from_secs(30);
    while seen.len() < 4 {
        assert!(
            Instant::now() < deadline,
            "only {} rotations in 30 s",
            seen.len() - 1
        );
        if rotations.has_changed().unwrap() {
            let identity = rotations.borrow_and_update().clone();
            // Connections opened before the rotation keep the old
            // certificate: open new ones.
            client = client_of(&agent);
            let peer = whoami(&client, &service)
                .await
                .expect("a call right after the rotation");
            assert_eq!(
                peer.serial, identity.serial,
                "a new connection presents the new certificate"
            );
            assert_eq!(
                peer.instance_id,
                Some(first.instance_id.clone()),
                "the instance is kept"
            );
            assert!(!seen.contains(&identity.serial));
            seen.push(identity.serial.clone());
        }
        let peer = whoami(&client, &service)
            .await
            .unwrap_or_else(|e| panic!("call {calls} failed: {e}"));
        assert_eq!(peer.spiffe_id, first.spiffe_id);
        calls += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(*agent.health().borrow(), Health::Healthy);
    assert!(calls > 20, "{calls} calls");

    // Each rotation renewed the certificate before it, once, without a
    // clone alert: the CA's records chain the serials the agent presented.
    let shown = ca.show("acme", "prod", "worker").await;
    assert!(shown.clone_alerts.is_empty());
    let mut chained = 0;
    for pair in seen.windows(2) {
        if let Some(live) = shown.live_certificates.iter().find(|c| c.serial == pair[0]) {
            assert_eq!(live.renewed_by.as_ref(), Some(&pair[1]), "{shown:#?}");
            chained += 1;
        }
    }
    assert!(
        chained >= 1,
        "no renewed certificate still live: {shown:#?}"
    );
}

#[tokio::test]
async fn an_agent_rides_out_a_short_ca_outage_and_recovers_from_a_long_one() {
    let mut ca = short_lived_ca();
    ca.register_with_ttl("acme", "prod", "worker", Some(20))
        .await;
    // Two uses: the second re-enrolls after the certificate expired.
    let token = ca.token("acme", "prod", "worker", 2).await;
    let agent = Agent::start(agent_config(&ca, token, None)).await.unwrap();
    let first = agent.current();
    let mut rotations = agent.rotations();
    rotations.borrow_and_update();
    let mut health = agent.health();

    // Short: down across the renewal point (at most 73% of the lifetime),
    // back five seconds before the certificate expires.
    ca.kill();
    let until_back =
        (first.not_after - time::Duration::seconds(5) - time::OffsetDateTime::now_utc())
            .unsigned_abs();
    tokio::time::sleep(until_back).await;
    assert_eq!(
        agent.current().serial,
        first.serial,
        "no renewal while the CA is down"
    );
    assert_eq!(
        *health.borrow(),
        Health::Healthy,
        "still valid, still healthy"
    );
    ca.restart();
    tokio::time::timeout(Duration::from_secs(10), rotations.changed())
        .await
        .expect("renewed once the CA is back")
        .unwrap();
    let renewed = rotations.borrow_and_update().clone();
    assert_ne!(renewed.serial, first.serial);
    assert_eq!(
        renewed.instance_id, first.instance_id,
        "a renewal, not a new enrollment"
    );
    assert!(renewed.not_after > first.not_after);
    assert_eq!(*health.borrow_and_update(), Health::Healthy);

    // Long: down past the certificate's expiry.
    ca.kill();
    let unhealthy = tokio::time::timeout(
        Duration::from_secs(30),
        health.wait_for(|h| matches!(h, Health::Unhealthy(_))),
    )
    .await
    .expect("reported unhealthy once expired")
    .unwrap()
    .clone();
    assert!(
        format!("{unhealthy:?}").contains("expired"),
        "{unhealthy:?}"
    );
    ca.restart();
    tokio::time::timeout(
        Duration::from_secs(30),
        health.wait_for(|h| *h == Health::Healthy),
    )
    .await
    .expect("healthy again once the CA is back")
    .unwrap();
    let back = agent.current();
    assert!(
        back.not_after > time::OffsetDateTime::now_utc(),
        "holds a valid certificate again"
    );
    assert_ne!(
        back.instance_id, first.instance_id,
        "it enrolled again: a new instance"
    );
}

fn run_agent(ca: &TestCa, dir: &Path, token_file: &Path, extra: &[&str]) -> Child {
    ca.command()
        .env_remove("AGENTCA_BUNDLE")
        .args([
            "run",
            "--fingerprint",
            &ca.root_fingerprint().to_string(),
            "--out-dir",
        ])
        .arg(dir)
        .arg("--token-file")
        .arg(token_file)
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

#[tokio::test]
async fn agentca_run_killed_after_sending_a_renewal_recovers_with_the_same_csr_and_no_clone_alert()
{
    let ca = short_lived_ca();
    ca.register_with_ttl("acme", "prod", "worker", Some(10))
        .await;
    let token_file = write(
        ca.root.path(),
        "token",
        &ca.token("acme", "prod", "worker", 1).await,
    );
    let dir = ca.root.path().join("worker");

    // The first run aborts right after the CA answers its first renewal.
    let mut first = run_agent(&ca, &dir, &token_file, &["--abort-after-renewal-response"]);
    let status = tokio::task::spawn_blocking(move || first.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(!status.success(), "the test hook aborted it");
    let enrolled = serial_in(&dir);
    let journal: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("..renewal.json")).unwrap())
            .expect("a journal was left");
    assert_eq!(journal["for_serial"], enrolled);
    assert!(
        journal["issued"].is_null(),
        "the answer never reached the disk"
    );
    let shown = ca.show("acme", "prod", "worker").await;
    let renewal = shown
        .live_certificates
        .iter()
        .find(|c| c.serial.to_string() == enrolled)
        .and_then(|c| c.renewed_by.clone())
        .expect("the CA did issue the renewal");

    // Started again, it sends the same CSR and gets the same certificate.
    let mut second = run_agent(&ca, &dir, &token_file, &[]);
    let deadline = Instant::now() + Duration::from_secs(20);
    while serial_in(&dir) == enrolled {
        assert!(Instant::now() < deadline, "the renewal was not completed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        serial_in(&dir),
        renewal.to_string(),
        "the certificate the CA issued before the crash"
    );
    assert!(!dir.join("..renewal.json").exists());
    let _ = second.kill();
    let _ = second.wait();
    let shown = ca.show("acme", "prod", "worker").await;
    assert!(shown.clone_alerts.is_empty(), "{:?}", shown.clone_alerts);
    // The files belong together: the key is the certificate's.
    let key = agentca::client::PrivateKey::from_pem(
        &std::fs::read_to_string(dir.join("key.pem")).unwrap(),
    )
    .unwrap();
    agentca::client::Credentials::from_pem(
        &std::fs::read_to_string(dir.join("cert.pem")).unwrap(),
        key,
    )
    .expect("cert.pem and key.pem match");
}

#[tokio::test]
async fn the_example_service_keeps_presenting_a_valid_certificate_as_agentca_run_rotates_it() {
    let ca = short_lived_ca();
    // The service's own certificate lives 4 seconds.
    ca.register_with_ttl("acme", "prod", "orders", Some(4))
        .await;
    let token_file = write(
        ca.root.path(),
        "orders.token",
        &ca.token("acme", "prod", "orders", 1).await,
    );
    let svc = ca.root.path().join("orders");
    let _run = common::KillOnDrop(run_agent(&ca, &svc, &token_file, &[]));
    let deadline = Instant::now() + Duration::from_secs(20);
    while !svc.join("key.pem").exists() {
        assert!(Instant::now() < deadline, "agentca run wrote no files");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let first = serial_in(&svc);
    let service = Service::start_with_files(&ca, &svc.join("cert.pem"), &svc.join("key.pem"), &[]);
    let (caller, key) = ca.enrolled("acme", "prod", "caller").await;
    // New connections for 12 s, three lifetimes of the service's first
    // certificate: each handshake checks the certificate the service
    // presents, which must be current.
    let until = Instant::now() + Duration::from_secs(12);
    while Instant::now() < until {
        let client = common::agent_client(&ca, &caller, &key);
        let resp = client
            .get(format!("{}/whoami", service.url))
            .send()
            .await
            .unwrap_or_else(|e| panic!("the service's certificate was not kept current: {e:?}"));
        assert_eq!(resp.status(), 200);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_ne!(serial_in(&svc), first, "agentca run rotated it meanwhile");
}

#[tokio::test]
async fn agentca_run_runs_its_hook_after_the_first_enrollment_too() {
    let ca = TestCa::start();
    ca.register("acme", "prod", "worker").await;
    let token_file = write(
        ca.root.path(),
        "token",
        &ca.token("acme", "prod", "worker", 1).await,
    );
    let dir = ca.root.path().join("worker");
    let hook_log = ca.root.path().join("hook.log");
    let hook = format!("echo \"$AGENTCA_DIR\" >> {}", hook_log.display());
    let run = common::KillOnDrop(run_agent(&ca, &dir, &token_file, &["--exec", &hook]));
    let deadline = Instant::now() + Duration::from_secs(20);
    let ran = loop {
        let hooks = std::fs::read_to_string(&hook_log).unwrap_or_default();
        if !hooks.is_empty() || Instant::now() > deadline {
            break hooks;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    drop(run);
    // Five-minute certificates: no renewal came yet; this is the enrollment's.
    assert_eq!(ran.lines().collect::<Vec<_>>(), [dir.to_str().unwrap()]);
    assert!(dir.join("cert.pem").exists());
}

#[tokio::test]
async fn agentca_run_keeps_the_files_current_runs_its_hook_and_stops_on_revocation() {
    let ca = short_lived_ca();
    ca.register_with_ttl("acme", "prod", "worker", Some(5))
        .await;
    let token_file = write(
        ca.root.path(),
        "token",
        &ca.token("acme", "prod", "worker", 1).await,
    );
    let dir = ca.root.path().join("worker");
    let hook_log = ca.root.path().join("hook.log");
    let hook = format!("echo rotated >> {}", hook_log.display());
    let mut run = run_agent(&ca, &dir, &token_file, &["--exec", &hook]);

    let deadline = Instant::now() + Duration::from_secs(30);
    let mut serials = std::collections::BTreeSet::new();
    while serials.len() < 3 {
        assert!(
            Instant::now() < deadline,
            "the files were not kept current: {serials:?}"
        );
        if dir.join("cert.pem").exists() {
            serials.insert(serial_in(&dir));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let hooks = std::fs::read_to_string(&hook_log).unwrap_or_default();
    assert!(
        hooks.lines().count() >= 2,
        "the hook ran after each rotation: {hooks:?}"
    );

    ca.revoke_agent("acme", "prod", "worker", "keyCompromise")
        .await;
    let code = tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = run.try_wait().unwrap() {
                return status.code();
            }
            if Instant::now() > deadline {
                let _ = run.kill();
                return None;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    })
    .await
    .unwrap();
    assert_eq!(
        code,
        Some(4),
        "exits with the refusal code once renewal is refused for good"
    );
}
