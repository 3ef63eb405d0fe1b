//! Interop for revocation: the real `openssl` reads our CRLs and queries our
//! OCSP responder, and a real nginx refuses a revoked agent.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use agentca::wire::IssuedCertificate;
use common::{openssl, write, TestCa};

/// A CA with a plain-HTTP listener, two enrolled instances of one agent,
/// one of them revoked, and the files openssl needs in the CA's temporary
/// directory: root.pem, intermediate.pem, live.pem, revoked.pem,
/// crl.pem (the intermediate's CRL) and chain-crls.pem (both CRLs).
struct Fixture {
    ca: TestCa,
    live: IssuedCertificate,
    revoked: IssuedCertificate,
}

impl Fixture {
    async fn new() -> Self {
        let ca = TestCa::start_with(&[], &["--http-listen", "127.0.0.1:0"]);
        ca.register("acme", "prod", "bot").await;
        ca.register("acme", "prod", "rogue").await;
        let (live, _) = ca
            .enroll(&ca.token("acme", "prod", "bot", 1).await)
            .await
            .unwrap();
        let (revoked, _) = ca
            .enroll(&ca.token("acme", "prod", "rogue", 1).await)
            .await
            .unwrap();
        let done = ca
            .revoke_agent("acme", "prod", "rogue", "keyCompromise")
            .await;
        assert_eq!(done.revoked, 1);
        let f = Self { ca, live, revoked };
        f.write_files().await;
        f
    }

    fn dir(&self) -> &Path {
        self.ca.root.path()
    }

    fn http_url(&self) -> String {
        self.ca.http_url.clone().unwrap()
    }

    async fn write_files(&self) {
        let dir = self.dir();
        let leaf =
            |c: &IssuedCertificate| pem::encode(&pem::parse_many(&c.certificate_chain).unwrap()[0]);
        let intermediate = pem::encode(&pem::parse_many(&self.live.certificate_chain).unwrap()[1]);
        write(dir, "live.pem", &leaf(&self.live));
        write(dir, "revoked.pem", &leaf(&self.revoked));
        write(dir, "intermediate.pem", &intermediate);
        std::fs::copy(self.ca.bundle_path(), dir.join("root.pem")).unwrap();
        self.refresh_crls().await;
    }

    async fn refresh_crls(&self) {
        let dir = self.dir();
        let (status, crl) = self.ca.get("/v1/crl?format=pem").await;
        assert_eq!(status, 200);
        let (status, root_crl) = self.ca.get("/v1/crl/root?format=pem").await;
        assert_eq!(status, 200);
        let crl = String::from_utf8(crl).unwrap();
        let root_crl = String::from_utf8(root_crl).unwrap();
        write(dir, "crl.pem", &crl);
        write(dir, "chain-crls.pem", &format!("{crl}{root_crl}"));
        let (_, der) = self.ca.get("/v1/crl").await;
        std::fs::write(dir.join("crl.der"), der).unwrap();
    }
}

#[tokio::test]
async fn openssl_parses_the_crl_and_sees_the_revoked_serial() {
    let f = Fixture::new().await;
    let (ok, text) = openssl(
        &["crl", "-inform", "DER", "-in", "crl.der", "-noout", "-text"],
        f.dir(),
    );
    assert!(ok, "{text}");
    let upper = |s: &agentca::wire::Serial| s.to_string().to_uppercase();
    assert!(
        text.contains(&format!("Serial Number: {}", upper(&f.revoked.serial))),
        "{text}"
    );
    assert!(!text.contains(&upper(&f.live.serial)), "{text}");
    assert!(text.contains("Key Compromise"), "{text}");
    assert!(text.contains("X509v3 CRL Number"), "{text}");
    assert!(
        text.contains("X509v3 Issuing Distribution Point: critical"),
        "{text}"
    );
    assert!(text.contains("Only User Certificates"), "{text}");
    assert!(text.contains("Next Update"), "{text}");
    // Its signature verifies against the intermediate.
    let (ok, text) = openssl(
        &[
            "crl",
            "-in",
            "crl.pem",
            "-noout",
            "-CAfile",
            "intermediate.pem",
        ],
        f.dir(),
    );
    assert!(ok && text.contains("verify OK"), "{text}");
}

#[tokio::test]
async fn openssl_verify_with_crl_check_refuses_the_revoked_leaf_and_accepts_the_live_one() {
    let f = Fixture::new().await;
    for check in ["-crl_check", "-crl_check_all"] {
        let crls = if check == "-crl_check" {
            "crl.pem"
        } else {
            "chain-crls.pem"
        };
        let verify = |leaf: &str| {
            openssl(
                &[
                    "verify",
                    check,
                    "-CAfile",
                    "root.pem",
                    "-untrusted",
                    "intermediate.pem",
                    "-CRLfile",
                    crls,
                    leaf,
                ],
                f.dir(),
            )
        };
        let (ok, text) = verify("live.pem");
        assert!(ok && text.contains("live.pem: OK"), "{check}: {text}");
        let (ok, text) = verify("revoked.pem");
        assert!(
            !ok && text.contains("certificate revoked"),
            "{check}: {text}"
        );
    }
}

#[tokio::test]
async fn openssl_ocsp_verifies_our_responses_good_revoked_and_unknown() {
    let f = Fixture::new().await;
    let url = format!("{}/v1/ocsp", f.http_url());
    let ask = |extra: &[&str]| {
        let mut args = vec![
            "ocsp",
            "-issuer",
            "intermediate.pem",
            "-CAfile",
            "root.pem",
            "-url",
            &url,
        ];
        args.extend_from_slice(extra);
        openssl(&args, f.dir())
    };
    let (ok, text) = ask(&["-cert", "live.pem"]);
    assert!(ok, "{text}");
    assert!(text.contains("Response verify OK"), "{text}");
    assert!(text.contains("live.pem: good"), "{text}");
    assert!(
        !text.contains("WARNING"),
        "the nonce is echoed and the response is fresh: {text}"
    );

    let (ok, text) = ask(&["-cert", "revoked.pem"]);
    assert!(ok, "{text}");
    assert!(text.contains("Response verify OK"), "{text}");
    assert!(text.contains("revoked.pem: revoked"), "{text}");
    assert!(text.contains("Reason: keyCompromise"), "{text}");

    // A serial this CA never issued.
    let (ok, text) = ask(&["-serial", "0x4123456789abcdef0123456789abcdef"]);
    assert!(ok, "{text}");
    assert!(text.contains("Response verify OK"), "{text}");
    assert!(text.contains(": unknown"), "{text}");

    // SHA-256 CertIDs work too.
    let (ok, text) = ask(&["-sha256", "-cert", "revoked.pem"]);
    assert!(ok && text.contains("revoked.pem: revoked"), "{text}");

    // The GET form of RFC 6960 appendix A.1: openssl writes the request,
    // we GET it base64- and URL-encoded, openssl checks the answer.
    let (ok, text) = openssl(
        &[
            "ocsp",
            "-issuer",
            "intermediate.pem",
            "-cert",
            "revoked.pem",
            "-no_nonce",
            "-reqout",
            "req.der",
        ],
        f.dir(),
    );
    assert!(ok, "{text}");
    let req = std::fs::read(f.dir().join("req.der")).unwrap();
    let encoded = {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::STANDARD.encode(&req);
        b64.replace('+', "%2B")
            .replace('/', "%2F")
            .replace('=', "%3D")
    };
    let (status, body) = f.ca.get(&format!("/v1/ocsp/{encoded}")).await;
    assert_eq!(status, 200);
    std::fs::write(f.dir().join("resp.der"), body).unwrap();
    let (ok, text) = openssl(
        &[
            "ocsp",
            "-respin",
            "resp.der",
            "-issuer",
            "intermediate.pem",
            "-cert",
            "revoked.pem",
            "-CAfile",
            "root.pem",
        ],
        f.dir(),
    );
    assert!(
        ok && text.contains("Response verify OK") && text.contains("revoked.pem: revoked"),
        "{text}"
    );
}

#[tokio::test]
async fn the_ocsp_responder_refuses_to_speak_for_another_issuer() {
    let f = Fixture::new().await;
    let other = TestCa::start();
    let (foreign, _) = other.enrolled("acme", "prod", "bot").await;
    let blocks = pem::parse_many(&foreign.certificate_chain).unwrap();
    write(f.dir(), "foreign.pem", &pem::encode(&blocks[0]));
    write(
        f.dir(),
        "foreign-intermediate.pem",
        &pem::encode(&blocks[1]),
    );
    let url = format!("{}/v1/ocsp", f.http_url());
    let (_, text) = openssl(
        &[
            "ocsp",
            "-issuer",
            "foreign-intermediate.pem",
            "-cert",
            "foreign.pem",
            "-url",
            &url,
            "-noverify",
        ],
        f.dir(),
    );
    assert!(text.contains("unauthorized"), "{text}");
}

/// A real nginx, configured as a service that requires agent certificates.
struct Nginx {
    child: Child,
    port: u16,
    prefix: tempfile::TempDir,
}

impl Nginx {
    fn start(dir: &Path, server_cert: &Path, server_key: &Path) -> Self {
        let inline = format!(
            "ssl_client_certificate {};\n        ssl_verify_client on;\n        ssl_verify_depth 2;\n        ssl_crl {};",
            dir.join("root.pem").display(),
            dir.join("chain-crls.pem").display()
        );
        Self::start_with(server_cert, server_key, &inline)
    }

    /// nginx with the client-certificate part of `deploy/nginx/agentca-mtls.conf`,
    /// its paths pointed at `dir`'s root.pem and chain-crls.pem: the
    /// configuration the project ships, as shipped.
    fn start_shipped(dir: &Path, server_cert: &Path, server_key: &Path) -> Self {
        let shipped = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/nginx/agentca-mtls.conf"),
        )
        .unwrap();
        let snippet = shipped
            .replace(
                "/etc/agentca/bundle.pem",
                dir.join("root.pem").to_str().unwrap(),
            )
            .replace(
                "/etc/agentca/crls.pem",
                dir.join("chain-crls.pem").to_str().unwrap(),
            );
        let path = dir.join("agentca-mtls.conf");
        std::fs::write(&path, snippet).unwrap();
        Self::start_with(
            server_cert,
            server_key,
            &format!("include {};", path.display()),
        )
    }

    fn start_with(server_cert: &Path, server_key: &Path, client_auth: &str) -> Self {
        let prefix = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let p = prefix.path().display();
        let conf = format!(
            r#"
worker_processes 1;
daemon off;
master_process on;
pid {p}/nginx.pid;
error_log {p}/error.log info;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {p}/body;
    proxy_temp_path {p}/proxy;
    fastcgi_temp_path {p}/fastcgi;
    uwsgi_temp_path {p}/uwsgi;
    scgi_temp_path {p}/scgi;
    server {{
        listen 127.0.0.1:{port} ssl;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        {client_auth}
        location / {{ return 200 "hello $ssl_client_s_dn\n"; }}
    }}
}}
"#,
            cert = server_cert.display(),
            key = server_key.display(),
        );
        std::fs::write(prefix.path().join("nginx.conf"), conf).unwrap();
        let child = Command::new("nginx")
            .arg("-p")
            .arg(prefix.path())
            .arg("-c")
            .arg(prefix.path().join("nginx.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nginx is installed (Debian package nginx-light)");
        let nginx = Self {
            child,
            port,
            prefix,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "nginx did not start: {}",
                nginx.error_log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        nginx
    }

    fn error_log(&self) -> String {
        std::fs::read_to_string(self.prefix.path().join("error.log")).unwrap_or_default()
    }

    fn reload(&self) {
        let status = Command::new("kill")
            .args(["-HUP", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// `curl --cert` as the agent; the HTTP status, or 0 when the TLS
    /// handshake was refused.
    fn curl(&self, dir: &Path, cert: &str, key: &str) -> (u32, String) {
        let out = Command::new("curl")
            .current_dir(dir)
            // The service's own certificate is an agentca SVID with a URI
            // SAN only; what this test checks is the client side.
            .args([
                "-sk",
                "--max-time",
                "5",
                "-o",
                "-",
                "-w",
                "\n%{http_code}",
                "--cert",
                cert,
                "--key",
                key,
            ])
            .arg(format!("https://127.0.0.1:{}/", self.port))
            .output()
            .expect("curl is installed");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let code = text
            .lines()
            .last()
            .and_then(|l| l.trim().parse().ok())
            .unwrap_or(0);
        (code, text)
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        common::stop_gracefully(&mut self.child);
    }
}

async fn enroll_files(ca: &TestCa, dir: &Path, agent: &str, name: &str) -> IssuedCertificate {
    let (issued, key) = ca.enrolled("acme", "prod", agent).await;
    write(dir, &format!("{name}.crt"), &issued.certificate_chain);
    write(dir, &format!("{name}.key"), &key.to_pem());
    issued
}

#[tokio::test]
async fn nginx_lets_a_live_agent_in_and_refuses_a_revoked_one_after_a_crl_refresh() {
    let f = Fixture::new().await;
    let dir = f.dir();
    enroll_files(&f.ca, dir, "service", "service").await;
    enroll_files(&f.ca, dir, "alice", "alice").await;
    enroll_files(&f.ca, dir, "mallory", "mallory").await;
    f.refresh_crls().await;
    let nginx = Nginx::start(dir, &dir.join("service.crt"), &dir.join("service.key"));

    let (code, body) = nginx.curl(dir, "alice.crt", "alice.key");
    assert_eq!(code, 200, "{body}\n{}", nginx.error_log());
    assert!(body.contains("CN=alice"), "{body}");
    let (code, _) = nginx.curl(dir, "mallory.crt", "mallory.key");
    assert_eq!(code, 200);

    f.ca.revoke_agent("acme", "prod", "mallory", "keyCompromise")
        .await;
    f.refresh_crls().await;
    nginx.reload();

    // The reload takes effect within moments; wait for it, bounded.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (code, _) = nginx.curl(dir, "mallory.crt", "mallory.key");
        if code != 200 {
            assert_eq!(
                code, 400,
                "nginx answers a revoked client certificate with 400"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "nginx still lets the revoked agent in:\n{}",
            nginx.error_log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        nginx.error_log().contains("certificate revoked"),
        "{}",
        nginx.error_log()
    );
    let (code, _) = nginx.curl(dir, "alice.crt", "alice.key");
    assert_eq!(code, 200, "the live agent still gets through");
}

#[tokio::test]
async fn nginx_keeps_a_live_agent_in_past_the_crls_next_update_with_agentca_crl_watching() {
    // CRLs valid 10 s: without a refresher, nginx would refuse everyone
    // once the CRL it loaded expired.
    let ca = TestCa::start_with(&[], &["--crl-validity", "10s"]);
    let dir = ca.root.path().to_owned();
    enroll_files(&ca, &dir, "service", "service").await;
    enroll_files(&ca, &dir, "alice", "alice").await;
    enroll_files(&ca, &dir, "mallory", "mallory").await;
    std::fs::copy(ca.bundle_path(), dir.join("root.pem")).unwrap();
    let crls = dir.join("chain-crls.pem");
    common::ok(ca.command().args(["crl", "--out"]).arg(&crls));
    let first = std::fs::read_to_string(&crls).unwrap();
    assert_eq!(first.matches("-----BEGIN X509 CRL-----").count(), 2);
    let nginx = Nginx::start_shipped(&dir, &dir.join("service.crt"), &dir.join("service.key"));
    let _refresher = common::KillOnDrop(
        ca.command()
            .args(["crl", "--watch", "--interval", "1s", "--out"])
            .arg(&crls)
            .args(["--exec", &format!("kill -HUP {}", nginx.child.id())])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    // Past the first CRL's nextUpdate, the live agent still gets in.
    let until = Instant::now() + Duration::from_secs(14);
    while Instant::now() < until {
        let (code, body) = nginx.curl(&dir, "alice.crt", "alice.key");
        assert_eq!(code, 200, "{body}\n{}", nginx.error_log());
        std::thread::sleep(Duration::from_millis(500));
    }
    assert_ne!(std::fs::read_to_string(&crls).unwrap(), first, "refreshed");
    // A revocation reaches nginx through the refresher.
    ca.revoke_agent("acme", "prod", "mallory", "keyCompromise")
        .await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (code, _) = nginx.curl(&dir, "mallory.crt", "mallory.key");
        if code == 400 {
            // Refused for its revocation, not for a stale CRL.
            assert!(
                nginx.error_log().contains("certificate revoked"),
                "{}",
                nginx.error_log()
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "nginx still lets the revoked agent in:\n{}",
            nginx.error_log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(nginx.curl(&dir, "alice.crt", "alice.key").0, 200);
}
