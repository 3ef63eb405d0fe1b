//! Interop with a real HAProxy: the configuration the project ships,
//! `deploy/haproxy/agentca-mtls.cfg`, lets a live agent in, refuses a
//! certificate of another CA, a client without one and, once its CRLs say
//! so, a revoked agent; with `agentca crl --watch` reloading it, it keeps
//! letting agents in past a CRL's nextUpdate.

mod common;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use agentca::wire::IssuedCertificate;
use common::{write, TestCa};

/// What the test's frontend answers instead of passing requests to the
/// shipped backend: the identity headers the shipped file sets.
const ANSWER: &str = r#"    http-request return status 200 content-type text/plain lf-string "hello %[req.fhdr(X-Agent-Subject)] %[req.fhdr(X-Agent-Serial)]\n""#;

/// A real HAProxy in master-worker mode, configured with the shipped file.
struct HaProxy {
    /// The master: reloads go to it, and it stops its workers.
    master: Child,
    port: u16,
    /// The configuration, the pid file and HAProxy's stderr (its log).
    run: tempfile::TempDir,
}

impl HaProxy {
    /// HAProxy with `deploy/haproxy/agentca-mtls.cfg` as shipped, but for
    /// these exact changes, each checked: /etc/agentca/ is `files`
    /// (bundle.pem, crls.pem, service.pem), it listens on a free loopback
    /// port, without the user, group and chroot lines (which need root;
    /// the tests need not run as root), and with the frontend answering by
    /// itself instead of passing requests to the backend.
    fn start_shipped(files: &Path) -> Self {
        let shipped = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/haproxy/agentca-mtls.cfg"),
        )
        .unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let config = replace_once(
            &shipped,
            "    bind :8443 ",
            &format!("    bind 127.0.0.1:{port} "),
        );
        let config = replace_once(
            &config,
            "    user haproxy\n    group haproxy\n    chroot /var/lib/haproxy\n",
            "",
        );
        let config = replace_once(&config, "    default_backend app\n", &format!("{ANSWER}\n"));
        let f = files.display();
        let config = config.replace("/etc/agentca/", &format!("{f}/"));
        let bind = format!(
            "\n    bind 127.0.0.1:{port} ssl crt {f}/service.pem ca-file {f}/bundle.pem crl-file {f}/crls.pem verify required\n"
        );
        assert!(
            config.contains(&bind),
            "the shipped bind line changed:\n{config}"
        );
        let run = tempfile::tempdir().unwrap();
        let cfg = write(run.path(), "haproxy.cfg", &config);
        let log = File::create(run.path().join("stderr")).unwrap();
        let master = Command::new(haproxy_bin())
            .arg("-W")
            .arg("-db")
            .arg("-f")
            .arg(&cfg)
            .arg("-p")
            .arg(run.path().join("haproxy.pid"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("haproxy starts");
        let mut haproxy = Self { master, port, run };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = haproxy.master.try_wait() {
                panic!("haproxy exited ({status}):\n{}", haproxy.log());
            }
            assert!(
                Instant::now() < deadline,
                "haproxy did not start:\n{}",
                haproxy.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        // The pid file names the master, the process to reload.
        let pid = std::fs::read_to_string(haproxy.run.path().join("haproxy.pid")).unwrap();
        assert_eq!(pid.trim(), haproxy.master.id().to_string());
        haproxy
    }

    /// HAProxy's stderr: its notices, then a line per request and per
    /// refused handshake.
    fn log(&self) -> String {
        std::fs::read_to_string(self.run.path().join("stderr")).unwrap_or_default()
    }

    /// Waits (up to 5 s) until the log holds `line`.
    fn wait_log(&self, line: &str) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !self.log().contains(line) {
            assert!(
                Instant::now() < deadline,
                "haproxy never logged {line:?}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `systemctl reload haproxy`'s signal: the master reads the
    /// configuration and its files again and starts new workers.
    fn reload(&self) {
        let status = Command::new("kill")
            .args(["-USR2", &self.master.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// `curl --cert` as `name` (`name.crt`, `name.key` in `dir`).
    fn curl_as(&self, dir: &Path, name: &str) -> (u32, String) {
        self.curl(
            dir,
            &[
                "--cert",
                &format!("{name}.crt"),
                "--key",
                &format!("{name}.key"),
            ],
        )
    }

    /// curl with `args` in `dir`: the HTTP status, or 0 when the TLS
    /// handshake was refused, and what curl printed (its error included).
    fn curl(&self, dir: &Path, args: &[&str]) -> (u32, String) {
        let out = Command::new("curl")
            .current_dir(dir)
            // The service's own certificate is an agentca SVID with a URI
            // SAN only; what this test checks is the client side.
            .args(["-sSk", "--max-time", "5", "-o", "-", "-w", "\n%{http_code}"])
            .args(args)
            .arg(format!("https://127.0.0.1:{}/", self.port))
            .output()
            .expect("curl is installed");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let code = stdout
            .lines()
            .last()
            .and_then(|l| l.trim().parse().ok())
            .unwrap_or(0);
        let text = format!("{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
        (code, text)
    }

    /// Waits (up to 10 s) until HAProxy refuses `name`'s handshake, and
    /// returns what curl printed then.
    fn wait_refused(&self, dir: &Path, name: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let (code, text) = self.curl_as(dir, name);
            if code != 200 {
                assert_eq!(code, 0, "refused in the handshake: {text}");
                return text;
            }
            assert!(
                Instant::now() < deadline,
                "haproxy still lets {name} in:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for HaProxy {
    fn drop(&mut self) {
        common::stop_gracefully(&mut self.master);
    }
}

/// The haproxy binary: on the PATH, or where Debian installs it (/usr/sbin
/// is not on every user's PATH).
fn haproxy_bin() -> PathBuf {
    std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .chain([PathBuf::from("/usr/sbin")])
        .map(|dir| dir.join("haproxy"))
        .find(|bin| bin.is_file())
        .expect("haproxy is installed (Debian package haproxy)")
}

/// `text` with `from`, which must occur exactly once, replaced by `to`.
fn replace_once(text: &str, from: &str, to: &str) -> String {
    assert_eq!(
        text.matches(from).count(),
        1,
        "the shipped configuration should hold {from:?} once:\n{text}"
    );
    text.replacen(from, to, 1)
}

/// Enrolls `agent` of acme/prod and writes `name.crt` (its chain) and
/// `name.key` in `dir`.
async fn enroll_files(ca: &TestCa, dir: &Path, agent: &str, name: &str) -> IssuedCertificate {
    let (issued, key) = ca.enrolled("acme", "prod", agent).await;
    write(dir, &format!("{name}.crt"), &issued.certificate_chain);
    write(dir, &format!("{name}.key"), &key.to_pem());
    issued
}

/// Writes in the CA's temporary directory what the shipped configuration
/// reads from /etc/agentca: bundle.pem (the CA's bundle), service.pem (an
/// enrolled agent's chain and key in one file, as `agentca run` writes
/// identity.pem) and crls.pem (`agentca crl`'s output); and the files of
/// agents alice and mallory. Returns the directory and alice's certificate.
async fn write_files(ca: &TestCa) -> (PathBuf, IssuedCertificate) {
    let dir = ca.root.path().to_owned();
    let (service, key) = ca.enrolled("acme", "prod", "service").await;
    write(
        &dir,
        "service.pem",
        &format!("{}{}", service.certificate_chain, key.to_pem()),
    );
    std::fs::copy(ca.bundle_path(), dir.join("bundle.pem")).unwrap();
    let alice = enroll_files(ca, &dir, "alice", "alice").await;
    enroll_files(ca, &dir, "mallory", "mallory").await;
    write_crls(ca, &dir);
    (dir, alice)
}

/// `agentca crl --out crls.pem`: the issuing CA's CRL and the root's.
fn write_crls(ca: &TestCa, dir: &Path) -> String {
    let crls = dir.join("crls.pem");
    common::ok(ca.command().args(["crl", "--out"]).arg(&crls));
    let text = std::fs::read_to_string(&crls).unwrap();
    assert_eq!(text.matches("-----BEGIN X509 CRL-----").count(), 2);
    text
}

#[tokio::test]
async fn haproxy_lets_a_live_agent_in_refuses_others_and_a_revoked_one_after_a_reload() {
    let ca = TestCa::start();
    let (dir, alice) = write_files(&ca).await;
    let haproxy = HaProxy::start_shipped(&dir);

    // The agent's identity reaches the application, whatever the client
    // claims in the same headers.
    let (code, body) = haproxy.curl(
        &dir,
        &[
            "--cert",
            "alice.crt",
            "--key",
            "alice.key",
            "-H",
            "X-Agent-Subject: /CN=admin",
            "-H",
            "X-Agent-Serial: 01",
        ],
    );
    assert_eq!(code, 200, "{body}\n{}", haproxy.log());
    let serial = alice.serial.to_string().to_uppercase();
    assert!(
        body.starts_with(&format!(
            "hello /O=acme/OU=prod/CN=alice/serialNumber={} {serial}\n",
            alice.instance_id
        )),
        "{body}"
    );
    let (code, body) = haproxy.curl_as(&dir, "mallory");
    assert_eq!(code, 200, "{body}\n{}", haproxy.log());

    // An agent of another CA, and a client without a certificate.
    let other = TestCa::start();
    enroll_files(&other, &dir, "alice", "stranger").await;
    let (code, text) = haproxy.curl_as(&dir, "stranger");
    assert_eq!(code, 0, "{text}\n{}", haproxy.log());
    assert!(text.contains("alert unknown ca"), "{text}");
    haproxy.wait_log("SSL client CA chain cannot be verified");
    let (code, text) = haproxy.curl(&dir, &[]);
    assert_eq!(code, 0, "{text}\n{}", haproxy.log());
    assert!(text.contains("alert certificate required"), "{text}");
    haproxy.wait_log("SSL handshake failure");

    // A revocation, fresh CRLs, a reload: the reload takes effect within
    // moments; wait for it, bounded.
    ca.revoke_agent("acme", "prod", "mallory", "keyCompromise")
        .await;
    write_crls(&ca, &dir);
    haproxy.reload();
    let text = haproxy.wait_refused(&dir, "mallory");
    assert!(text.contains("alert certificate revoked"), "{text}");
    haproxy.wait_log("SSL client certificate not trusted");
    let (code, body) = haproxy.curl_as(&dir, "alice");
    assert_eq!(
        code,
        200,
        "the live agent still gets in: {body}\n{}",
        haproxy.log()
    );
}

#[tokio::test]
async fn haproxy_keeps_a_live_agent_in_past_the_crls_next_update_with_agentca_crl_watching() {
    // CRLs valid 10 s: without a refresher, HAProxy would refuse everyone
    // once the CRL it loaded expired.
    let ca = TestCa::start_with(&[], &["--crl-validity", "10s"]);
    let (dir, _) = write_files(&ca).await;
    let crls = dir.join("crls.pem");
    let first = std::fs::read_to_string(&crls).unwrap();
    let haproxy = HaProxy::start_shipped(&dir);
    let _refresher = common::KillOnDrop(
        ca.command()
            .args(["crl", "--watch", "--interval", "1s", "--out"])
            .arg(&crls)
            .args(["--exec", &format!("kill -USR2 {}", haproxy.master.id())])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    // Past the first CRL's nextUpdate, the live agent still gets in.
    let until = Instant::now() + Duration::from_secs(14);
    while Instant::now() < until {
        let (code, body) = haproxy.curl_as(&dir, "alice");
        assert_eq!(code, 200, "{body}\n{}", haproxy.log());
        std::thread::sleep(Duration::from_millis(500));
    }
    assert_ne!(std::fs::read_to_string(&crls).unwrap(), first, "refreshed");
    assert!(
        haproxy.log().contains("Reloading HAProxy"),
        "{}",
        haproxy.log()
    );
    // A revocation reaches HAProxy through the refresher.
    ca.revoke_agent("acme", "prod", "mallory", "keyCompromise")
        .await;
    let text = haproxy.wait_refused(&dir, "mallory");
    assert!(text.contains("alert certificate revoked"), "{text}");
    let (code, body) = haproxy.curl_as(&dir, "alice");
    assert_eq!(code, 200, "{body}\n{}", haproxy.log());
}
