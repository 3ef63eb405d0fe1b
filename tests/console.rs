//! The admin console in a real browser (tests/support/console.py: Debian's
//! chromium driven by Playwright): log in, find an agent, revoke it from
//! its page, see the example service refuse it and the audit page show it;
//! forged forms refused; logging out ends the session; a tenant admin sees
//! its tenant only. Screenshots of each page are left in
//! `target/console-screenshots/`.
//!
//! Needs chromium (Debian package chromium) and a Python with playwright
//! (`pip install playwright`; never `playwright install`): the one in
//! `AGENTCA_PLAYWRIGHT_PYTHON`, else `python3`.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use agentca::wire::{CreateAdminRequest, CreateAdminResponse};
use common::{agent_client, service_files, Service, TestCa, TRUST_DOMAIN};
use reqwest::Method;

#[tokio::test]
async fn an_admin_revokes_an_agent_from_the_console_and_the_service_refuses_it() {
    let ca = TestCa::start();
    let files = service_files(&ca).await;
    let service = Service::start(&ca, &files, &[]);
    let (issued, key) = ca.enrolled("acme", "prod", "billing").await;
    ca.register("acme", "prod", "support").await;
    ca.enrolled("globex", "prod", "intruder").await;
    let client = agent_client(&ca, &issued, &key);
    let whoami = format!("{}/whoami", service.url);
    assert_eq!(client.get(&whoami).send().await.unwrap().status(), 200);
    let tenant_admin: CreateAdminResponse = ca
        .admin(
            Method::POST,
            "/v1/admin/admins",
            Some(&CreateAdminRequest {
                name: "acme-ops".into(),
                tenant: Some("acme".into()),
                role: None,
            }),
        )
        .await
        .unwrap();
    let admin_token = std::fs::read_to_string(ca.data_dir.join("admin.token")).unwrap();

    let shots = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .join("console-screenshots");
    let _ = std::fs::remove_dir_all(&shots);
    std::fs::create_dir_all(&shots).unwrap();
    let python =
        std::env::var("AGENTCA_PLAYWRIGHT_PYTHON").unwrap_or_else(|_| "python3".to_owned());
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/support/console.py");
    let out = tokio::task::spawn_blocking({
        let (url, shots) = (ca.url.clone(), shots.clone());
        let tenant_token = tenant_admin.token.clone();
        move || {
            Command::new(&python)
                .arg(&script)
                .env("CA_URL", url)
                .env("ADMIN_TOKEN", admin_token.trim())
                .env("TENANT_ADMIN_TOKEN", tenant_token)
                .env("SCREENSHOTS", shots)
                .env("TARGET_AGENT", "acme/prod/billing")
                .env("BYSTANDER_AGENT", "acme/prod/support")
                .env("OTHER_TENANT_AGENT", "globex/prod/intruder")
                .env("TRUST_DOMAIN", TRUST_DOMAIN)
                .output()
                .unwrap_or_else(|e| {
                    panic!(
                        "{python} runs (a Python with playwright, AGENTCA_PLAYWRIGHT_PYTHON): {e}"
                    )
                })
        }
    })
    .await
    .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "the browser test failed:\n{said}");
    assert!(said.contains("console: every check passed"), "{said}");

    // The revocation made on the page reaches the example service: the
    // agent's open connection is refused within moments.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match client.get(&whoami).send().await {
            Ok(r) if r.status() == 200 => {}
            // The open connection: refused as revoked.
            Ok(r) => {
                let (status, body) = (r.status(), r.text().await.unwrap_or_default());
                assert_eq!(status, 401, "{body}");
                assert!(body.contains("certificate_revoked"), "{body}");
                break;
            }
            Err(e) => {
                let e = format!("{e:?}");
                assert!(e.contains("CertificateRevoked"), "{e}");
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the service still accepts the agent"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Logging in and out are events of their own, by the admin.
    let trail: agentca::wire::AuditPage = ca
        .admin(
            Method::GET,
            "/v1/admin/audit?since=0&limit=1000",
            None::<&()>,
        )
        .await
        .unwrap();
    for action in ["console.login", "console.logout"] {
        assert!(
            trail.events.iter().any(|e| e.action == action
                && e.outcome == "ok"
                && matches!(&e.actor, agentca::wire::Actor::Admin { name } if name == "admin")),
            "no {action} event by admin"
        );
    }
    for page in [
        "login",
        "overview",
        "agents",
        "agent",
        "agent-revoked",
        "audit",
        "overview-phone",
        "agent-phone",
        "tenant-admin-agents",
    ] {
        let file = shots.join(format!("{page}.png"));
        assert!(
            std::fs::metadata(&file).is_ok_and(|m| m.len() > 1000),
            "{}",
            file.display()
        );
    }
}
