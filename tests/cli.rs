//! The `agentca` command as an operator, an admin and an agent use it.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use agentca::client::{KeyAlgorithm, PrivateKey};
use agentca::wire::AgentInfo;
use common::{agentca_bin, fails, ok, run, serial_in, TestCa};

#[test]
fn an_admin_and_an_agent_walk_through_the_cli() {
    let ca = TestCa::start();
    let out = ok(ca.command().args([
        "register",
        "--tenant",
        "acme",
        "--env",
        "dev",
        "--agent",
        "hello",
        "--owner",
        "me@example.com",
        "--purpose",
        "trying agentca",
        "--ttl",
        "10m",
    ]));
    let info: AgentInfo = serde_json::from_str(&out).unwrap();
    assert_eq!(info.ttl_seconds, 600);

    let token = ok(ca.command().args([
        "token", "--tenant", "acme", "--env", "dev", "--agent", "hello", "--quiet",
    ]));
    let token = token.trim();
    assert!(token.starts_with("agentca-bt-"));

    // The agent knows only the URL and the root fingerprint, as openssl prints it.
    let fp = Command::new("openssl")
        .args(["x509", "-noout", "-fingerprint", "-sha256", "-in"])
        .arg(ca.bundle_path())
        .output()
        .unwrap();
    let fp = String::from_utf8(fp.stdout).unwrap();
    let out_dir = ca.root.path().join("hello");
    let out = ok(ca
        .command()
        .env_remove("AGENTCA_BUNDLE")
        .env("AGENTCA_TOKEN", token)
        .args(["enroll", "--fingerprint", fp.trim(), "--out-dir"])
        .arg(&out_dir));
    assert!(
        out.contains("spiffe://example.org/tenant/acme/env/dev/agent/hello"),
        "{out}"
    );
    for file in ["cert.pem", "key.pem", "bundle.pem"] {
        assert!(out_dir.join(file).exists(), "{file}");
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(out_dir.join("key.pem"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600);
    }
    assert_eq!(
        std::fs::read_to_string(out_dir.join("bundle.pem")).unwrap(),
        std::fs::read_to_string(ca.bundle_path()).unwrap()
    );
    let first = serial_in(&out_dir);
    let first_key = std::fs::read_to_string(out_dir.join("key.pem")).unwrap();

    ok(ca.command().arg("renew").arg("--out-dir").arg(&out_dir));
    let second = serial_in(&out_dir);
    assert_ne!(first, second);
    assert_ne!(
        first_key,
        std::fs::read_to_string(out_dir.join("key.pem")).unwrap()
    );
    assert!(!out_dir.join("..renewal.json").exists());

    let listed: Vec<AgentInfo> =
        serde_json::from_str(&ok(ca.command().args(["agents", "--tenant", "acme"]))).unwrap();
    assert_eq!(listed.len(), 1);
    ok(ca.command().args([
        "register",
        "--tenant",
        "acme",
        "--env",
        "dev",
        "--agent",
        "second",
        "--owner",
        "me",
        "--purpose",
        "paging",
    ]));
    let listed: Vec<AgentInfo> =
        serde_json::from_str(&ok(ca.command().args(["agents", "--limit", "1"]))).unwrap();
    assert_eq!(listed.len(), 1);
    let usage = run(ca.command().args(["agents", "--limit", "0"]));
    assert_eq!(usage.status.code(), Some(2), "a usage error");
    assert!(String::from_utf8_lossy(&usage.stderr).contains("--limit"));
    let shown: AgentInfo = serde_json::from_str(&ok(ca.command().args([
        "agent", "--tenant", "acme", "--env", "dev", "--agent", "hello",
    ])))
    .unwrap();
    assert_eq!(shown.live_certificates.len(), 2);

    ok(ca.command().args([
        "disable", "--tenant", "acme", "--env", "dev", "--agent", "hello",
    ]));
    let err = fails(ca.command().arg("renew").arg("--out-dir").arg(&out_dir));
    assert!(err.contains("agent_disabled"), "{err}");
    assert_eq!(
        serial_in(&out_dir),
        second,
        "a refused renewal leaves the files alone"
    );
    ok(ca.command().args([
        "enable", "--tenant", "acme", "--env", "dev", "--agent", "hello",
    ]));
    ok(ca.command().arg("renew").arg("--out-dir").arg(&out_dir));

    // The token was single use.
    let err = fails(
        ca.command()
            .env("AGENTCA_TOKEN", token)
            .args(["enroll", "--out-dir"])
            .arg(ca.root.path().join("again")),
    );
    assert!(err.contains("token_used"), "{err}");
}

/// Registers agent acme/prod/`agent` and enrolls it with `agentca enroll`
/// into a directory of that name; returns the directory.
async fn enrolled_by_cli(ca: &TestCa, agent: &str) -> std::path::PathBuf {
    ca.register("acme", "prod", agent).await;
    let out_dir = ca.root.path().join(agent);
    let token = ca.token("acme", "prod", agent, 1).await;
    ok(ca
        .command()
        .env("AGENTCA_TOKEN", &token)
        .arg("enroll")
        .arg("--out-dir")
        .arg(&out_dir));
    out_dir
}

#[tokio::test]
async fn ca_info_gives_the_fingerprint_an_agent_pins_and_the_cas_certificates() {
    let ca = TestCa::start();
    let out = ok(ca
        .command()
        .args(["ca", "info", "--format", "json", "--data-dir"])
        .arg(&ca.data_dir));
    let info: serde_json::Value = serde_json::from_str(&out).unwrap();
    let fingerprint = info["root"]["fingerprint"].as_str().unwrap().to_owned();
    assert_eq!(fingerprint, ca.root_fingerprint().to_string());
    assert_eq!(info["trust_domain"], "example.org");
    assert_eq!(info["store"], "redb");
    assert_eq!(info["intermediate"]["key"], "ECDSA P-256");
    assert!(info["root_key_present"].as_bool().unwrap());
    // The table says the same, and the fingerprint works as a pin.
    let table = ok(ca
        .command()
        .args(["ca", "info", "--data-dir"])
        .arg(&ca.data_dir));
    assert!(
        table.contains(&format!("root fingerprint:  {fingerprint}")),
        "{table}"
    );
    ca.register("acme", "prod", "pinned").await;
    let token = ca.token("acme", "prod", "pinned", 1).await;
    ok(ca
        .command()
        .env_remove("AGENTCA_BUNDLE")
        .env("AGENTCA_TOKEN", &token)
        .args(["enroll", "--fingerprint", &fingerprint, "--out-dir"])
        .arg(ca.root.path().join("pinned")));
    let err = fails(
        ca.command()
            .args(["ca", "info", "--data-dir"])
            .arg(ca.root.path().join("nothing")),
    );
    assert!(err.contains("holds no CA"), "{err}");
}

#[tokio::test]
async fn enroll_refuses_to_replace_an_identity_unless_forced_and_spends_no_token_refusing() {
    let ca = TestCa::start();
    let out_dir = enrolled_by_cli(&ca, "bot").await;
    let held = std::fs::read_to_string(out_dir.join("cert.pem")).unwrap();
    let token = ca.token("acme", "prod", "bot", 1).await;
    let err = fails(
        ca.command()
            .env("AGENTCA_TOKEN", &token)
            .arg("enroll")
            .arg("--out-dir")
            .arg(&out_dir),
    );
    assert!(
        err.contains("already holds an identity")
            && err.contains("spiffe://example.org/tenant/acme/env/prod/agent/bot")
            && err.contains("--force"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(out_dir.join("cert.pem")).unwrap(),
        held,
        "the identity is untouched"
    );
    // The token was not spent: --force uses it, and replaces the identity.
    ok(ca
        .command()
        .env("AGENTCA_TOKEN", &token)
        .args(["enroll", "--force", "--out-dir"])
        .arg(&out_dir));
    assert_ne!(
        std::fs::read_to_string(out_dir.join("cert.pem")).unwrap(),
        held
    );
}

#[tokio::test]
async fn a_renewal_whose_answer_was_lost_resumes_with_the_same_key_and_raises_no_alarm() {
    let ca = TestCa::start();
    let out_dir = enrolled_by_cli(&ca, "bot").await;
    let current_chain = std::fs::read_to_string(out_dir.join("cert.pem")).unwrap();
    let current_key =
        PrivateKey::from_pem(&std::fs::read_to_string(out_dir.join("key.pem")).unwrap()).unwrap();

    // `agentca renew` journaled its new key and CSR and sent them; the CA
    // issued, but the answer never arrived.
    let pending = PrivateKey::generate(KeyAlgorithm::P256).unwrap();
    let csr = pending.csr_pem().unwrap();
    let journal = serde_json::json!({
        "for_serial": serial_in(&out_dir),
        "key_pem": pending.to_pem(),
        "csr_pem": csr,
    });
    std::fs::write(out_dir.join("..renewal.json"), journal.to_string()).unwrap();
    let lost = ca
        .client_with(&current_chain, &current_key)
        .renew(&csr)
        .await
        .unwrap();

    let out = ok(ca.command().arg("renew").arg("--out-dir").arg(&out_dir));
    assert!(out.contains(&lost.serial.to_string()), "{out}");
    assert_eq!(serial_in(&out_dir), lost.serial.to_string());
    assert_eq!(
        std::fs::read_to_string(out_dir.join("key.pem")).unwrap(),
        pending.to_pem()
    );
    assert!(!out_dir.join("..renewal.json").exists());
    assert!(ca.show("acme", "prod", "bot").await.clone_alerts.is_empty());
}

#[tokio::test]
async fn a_renewal_interrupted_while_the_ca_is_down_retries_with_the_same_csr() {
    let mut ca = TestCa::start();
    let out_dir = enrolled_by_cli(&ca, "bot").await;
    let before = serial_in(&out_dir);

    ca.kill();
    let err = fails(ca.command().arg("renew").arg("--out-dir").arg(&out_dir));
    assert!(err.contains("run `agentca renew` again"), "{err}");
    let journal: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out_dir.join("..renewal.json")).unwrap()).unwrap();
    assert_eq!(serial_in(&out_dir), before);

    ca.restart();
    let url = ca.url.clone();
    ok(ca
        .command()
        .env("AGENTCA_URL", &url)
        .arg("renew")
        .arg("--out-dir")
        .arg(&out_dir));
    assert_eq!(
        std::fs::read_to_string(out_dir.join("key.pem")).unwrap(),
        journal["key_pem"].as_str().unwrap(),
        "the journaled key was certified"
    );
    assert_ne!(serial_in(&out_dir), before);
}

#[test]
fn init_refuses_an_existing_ca_a_short_passphrase_and_a_bad_trust_domain() {
    let ca = TestCa::start();
    let err = fails(
        Command::new(agentca_bin())
            .args(["init", "--trust-domain", "example.org", "--data-dir"])
            .arg(&ca.data_dir)
            .arg("--passphrase-file")
            .arg(&ca.passphrase_file),
    );
    assert!(err.contains("already holds a CA"), "{err}");

    let dir = tempfile::tempdir().unwrap();
    let short = dir.path().join("short");
    common::write_secret(&short, "abc");
    let err = fails(
        Command::new(agentca_bin())
            .args(["init", "--trust-domain", "example.org", "--data-dir"])
            .arg(dir.path().join("ca"))
            .arg("--passphrase-file")
            .arg(&short),
    );
    assert!(err.contains("at least 12"), "{err}");

    let err = fails(
        Command::new(agentca_bin())
            .args(["init", "--trust-domain", "Example.org", "--data-dir"])
            .arg(dir.path().join("ca"))
            .arg("--passphrase-file")
            .arg(&ca.passphrase_file),
    );
    assert!(err.contains("trust domain"), "{err}");
    assert!(!dir.path().join("ca").exists());
}

#[test]
#[cfg(unix)]
fn init_and_serve_refuse_secrets_others_may_read_unless_told_to_allow_them() {
    use std::os::unix::fs::PermissionsExt;
    let set = |path: &std::path::Path, mode| {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap()
    };
    let dir = tempfile::tempdir().unwrap();
    let passphrase = dir.path().join("passphrase");
    common::write_secret(&passphrase, common::PASSPHRASE);
    set(&passphrase, 0o644);
    let init = |extra: &[&str]| {
        let mut cmd = Command::new(agentca_bin());
        cmd.args(["init", "--trust-domain", "example.org", "--data-dir"])
            .arg(dir.path().join("ca"))
            .arg("--passphrase-file")
            .arg(&passphrase)
            .args(extra);
        cmd
    };
    let err = fails(&mut init(&[]));
    assert!(err.contains("chmod 600") && err.contains("0644"), "{err}");
    assert!(!dir.path().join("ca").exists(), "nothing was created");
    // A data directory made by hand, open to all.
    std::fs::create_dir(dir.path().join("ca")).unwrap();
    set(&dir.path().join("ca"), 0o755);
    set(&passphrase, 0o600);
    let err = fails(&mut init(&[]));
    assert!(err.contains("chmod 700"), "{err}");
    // Told to allow it, as a platform that mounts secrets so needs.
    set(&passphrase, 0o644);
    let out = init(&["--allow-open-permissions"]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // serve: the same, and a key file made readable afterwards.
    set(&dir.path().join("ca"), 0o700);
    set(&passphrase, 0o600);
    set(&dir.path().join("ca/intermediate.key.pem"), 0o644);
    let err = fails(
        Command::new(agentca_bin())
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir.path().join("ca"))
            .arg("--passphrase-file")
            .arg(&passphrase),
    );
    assert!(
        err.contains("intermediate.key.pem") && err.contains("chmod 600"),
        "{err}"
    );
}

#[test]
fn serve_refuses_a_wrong_passphrase() {
    let ca = TestCa::start();
    let wrong = ca.root.path().join("wrong");
    common::write_secret(&wrong, "this is not the passphrase");
    let err = fails(
        Command::new(agentca_bin())
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(&ca.data_dir)
            .arg("--passphrase-file")
            .arg(&wrong),
    );
    assert!(err.contains("wrong passphrase"), "{err}");
}

#[test]
fn serve_without_a_data_directory_creates_a_local_ca_and_the_cli_finds_it() {
    let home = tempfile::tempdir().unwrap();
    let mut child = Command::new(agentca_bin())
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("HOME", home.path())
        .env_remove("AGENTCA_HOME")
        .env_remove("XDG_DATA_HOME")
        .env_remove("AGENTCA_DATA_DIR")
        .env_remove("AGENTCA_PASSPHRASE")
        .env_remove("AGENTCA_PASSPHRASE_FILE")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut banner = String::new();
    let url = loop {
        let line = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("the CA starts");
        banner.push_str(&line);
        banner.push('\n');
        if let Some(url) = line.strip_prefix("agentca listening on ") {
            break url.to_owned();
        }
    };
    let base = home.path().join(".local/share/agentca");
    assert!(
        banner.contains("Created a new CA for local use"),
        "{banner}"
    );
    assert!(banner.contains("WARNING"), "{banner}");
    assert!(banner.contains("agentca register"), "{banner}");
    assert!(
        banner.contains(&format!("agentca enroll --ca-url {url} ")),
        "the next steps name the port it listens on: {banner}"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(base.join("passphrase"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600);
    }
    assert!(base.join("ca/ca.json").exists());

    // The admin CLI finds the local CA's bundle and admin token by itself.
    let out = ok(Command::new(agentca_bin())
        .args([
            "register",
            "--tenant",
            "acme",
            "--env",
            "dev",
            "--agent",
            "hello",
            "--owner",
            "me",
            "--purpose",
            "x",
        ])
        .env("HOME", home.path())
        .env("AGENTCA_URL", &url)
        .env_remove("AGENTCA_HOME")
        .env_remove("XDG_DATA_HOME")
        .env_remove("AGENTCA_BUNDLE")
        .env_remove("AGENTCA_ADMIN_TOKEN_FILE")
        .env_remove("AGENTCA_ADMIN_TOKEN"));
    assert!(
        out.contains("spiffe://agentca.local/tenant/acme/env/dev/agent/hello"),
        "{out}"
    );
    let _ = child.kill();
    let _ = child.wait();
}

#[tokio::test]
async fn serve_reads_a_toml_configuration_that_the_command_line_overrides() {
    let dir = tempfile::tempdir().unwrap();
    let config = common::write(
        dir.path(),
        "agentca.toml",
        r#"
# Settings of `agentca serve`: the long options without their dashes.
min-ttl = "2m"
max-ttl = "1h"
default-ttl = "3m"
retention = "1h"
server-name = ["ca.test", "10.1.2.3"]
log-format = "json"
"#,
    );
    let config = config.to_str().unwrap();
    let ca = TestCa::start_with(&[], &["--config", config, "--max-ttl", "2h"]);
    let register = |agent: &'static str, ttl: u64| {
        let req = agentca::wire::RegisterAgentRequest {
            tenant: "acme".into(),
            env: "prod".into(),
            agent: agent.into(),
            owner: "o".into(),
            purpose: "p".into(),
            ttl_seconds: Some(ttl),
            scopes: Vec::new(),
            reuse_retired: false,
        };
        let ca = &ca;
        async move {
            ca.admin::<_, AgentInfo>(reqwest::Method::POST, "/v1/admin/agents", Some(&req))
                .await
        }
    };
    // min-ttl comes from the file…
    let (status, code) = common::refusal(register("short", 90).await);
    assert_eq!((status, code.as_str()), (400, "ttl_out_of_range"));
    // …max-ttl from the command line, over the file's 1h.
    assert_eq!(register("long", 90 * 60).await.unwrap().ttl_seconds, 5400);
    let (_, code) = common::refusal(register("longer", 3 * 3600).await);
    assert_eq!(code, "ttl_out_of_range");
    assert_eq!(
        ca.register("acme", "prod", "default").await.ttl_seconds,
        180
    );
    let (status, body) = ca.get("/healthz").await;
    assert_eq!(status, 200);
    assert!(String::from_utf8_lossy(&body).contains("ok"));
    // server-name from the file: the CA's certificate is valid for it.
    let addr: std::net::SocketAddr = ca.url.trim_start_matches("https://").parse().unwrap();
    let mut tls =
        agentca::client::client_config(&agentca::client::CaTrust::Bundle(ca.bundle()), None)
            .unwrap();
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    let by_name = reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .resolve("ca.test", addr)
        .timeout(std::time::Duration::from_secs(5))
        .build()
        .unwrap();
    let status = by_name
        .get(format!("https://ca.test:{}/healthz", addr.port()))
        .send()
        .await
        .expect("the certificate names ca.test")
        .status();
    assert_eq!(status, 200);
    // Logs are JSON lines, one per request with its request id.
    let log = ca.log();
    let request_line = log
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["target"] == "agentca::request" && v["path"] == "/healthz")
        .unwrap_or_else(|| panic!("no JSON request line in:\n{log}"));
    assert_eq!(request_line["request_id"].as_str().unwrap().len(), 16);
    assert_eq!(request_line["status"], 200);
}

#[test]
fn a_bad_configuration_is_refused_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    for (contents, expected) in [
        ("max-tll = \"1h\"\n", "unknown key \"max-tll\""),
        ("max-ttl = \"forever\"\n", "--max-ttl"),
        ("max-ttl = 1h\n", "not valid TOML"),
        ("[listen]\nport = 1\n", "takes a string or a number"),
    ] {
        let path = common::write(dir.path(), "bad.toml", contents);
        let out = Command::new(agentca_bin())
            .args(["serve", "--config"])
            .arg(&path)
            .env("HOME", dir.path())
            .env_remove("AGENTCA_HOME")
            .env_remove("XDG_DATA_HOME")
            .env_remove("AGENTCA_DATA_DIR")
            .env_remove("AGENTCA_PASSPHRASE")
            .env_remove("AGENTCA_PASSPHRASE_FILE")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{contents}: {stderr}");
        assert!(stderr.contains(expected), "{contents}: {stderr}");
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "nothing but bad.toml: no local CA for a bad configuration"
        );
    }
}

#[test]
fn version_completions_and_manual_pages_come_from_the_binary() {
    let bin = common::agentca_bin();
    let version = ok(std::process::Command::new(bin).arg("--version"));
    // `agentca 0.1.0 (commit 0123456789ab)`, or `unknown` outside git.
    let commit = version
        .trim()
        .strip_suffix(')')
        .and_then(|v| v.split("(commit ").nth(1))
        .unwrap_or_else(|| panic!("{version:?}"));
    assert!(
        commit == "unknown"
            || (commit.len() == 12 && commit.chars().all(|c| c.is_ascii_hexdigit())),
        "{version:?}"
    );
    for shell in ["bash", "zsh", "fish"] {
        let script = ok(std::process::Command::new(bin).args(["completions", shell]));
        for command in ["scope", "retire", "enroll"] {
            assert!(script.contains(command), "{shell}: {command}");
        }
    }
    let dir = tempfile::tempdir().unwrap();
    ok(std::process::Command::new(bin)
        .args(["man", "--out-dir"])
        .arg(dir.path()));
    for page in ["agentca.1", "agentca-scope-block.1", "agentca-ca-info.1"] {
        let text = std::fs::read_to_string(dir.path().join(page)).unwrap();
        assert!(text.contains(".TH"), "{page} is a manual page");
    }
    assert!(!dir.path().join("agentca-help.1").exists());
}

#[tokio::test]
async fn each_kind_of_failure_has_its_documented_exit_code() {
    use common::fails_with;
    let ca = TestCa::start();
    let show = [
        "agent", "--tenant", "acme", "--env", "prod", "--agent", "ghost",
    ];
    fails_with(ca.command().args(show), 3);
    let wrong = common::write(ca.root.path(), "wrong.token", "agentca-at-wrong");
    fails_with(
        ca.command()
            .env("AGENTCA_ADMIN_TOKEN_FILE", &wrong)
            .args(["agents"]),
        4,
    );
    let register = [
        "register",
        "--tenant",
        "acme",
        "--env",
        "prod",
        "--agent",
        "twice",
        "--owner",
        "o",
        "--purpose",
        "p",
    ];
    ok(ca.command().args(register));
    let err = fails_with(ca.command().args(register), 5);
    assert!(err.contains("agent_exists"), "{err}");
    // Nothing listens there.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("https://{}", closed.local_addr().unwrap());
    drop(closed);
    fails_with(ca.command().env("AGENTCA_URL", &url).args(["agents"]), 69);
}

#[tokio::test]
async fn records_print_as_json_by_default_and_as_a_table_when_asked() {
    let ca = TestCa::start();
    ca.register("acme", "prod", "alpha").await;
    ca.register("acme", "prod", "beta").await;
    let json = ok(ca.command().args(["agents", "--tenant", "acme"]));
    let agents: Vec<AgentInfo> = serde_json::from_str(&json).unwrap();
    assert_eq!(agents.len(), 2);
    let table = ok(ca
        .command()
        .args(["agents", "--tenant", "acme", "--format", "table"]));
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 3, "{table}");
    assert!(
        lines[0].contains("SPIFFE_ID") && lines[0].contains("VERSION"),
        "{table}"
    );
    assert!(
        lines[1].contains("/agent/alpha") && lines[2].contains("/agent/beta"),
        "{table}"
    );
    let one = ok(ca.command().args([
        "agent", "--tenant", "acme", "--env", "prod", "--agent", "alpha", "--format", "table",
    ]));
    assert!(
        one.lines()
            .any(|l| l.starts_with("owner:") && l.contains("team-test")),
        "{one}"
    );
    let none = ok(ca.command().args(["scope", "blocks", "--format", "table"]));
    assert_eq!(none, "(none)\n");
}
