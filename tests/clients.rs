//! The Python and Go clients of `examples/` call the example service with
//! the files of an agent directory and take up a renewed certificate
//! without a restart; they refuse a service with another SPIFFE ID.
//!
//! Needs python3 with requests (Debian package python3-requests) and go
//! (golang-go), as the README walkthrough does.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use agentca::verify::PeerIdentity;
use common::{ok, service_files, Service, TestCa};

/// The service's identity, as `service_files` registers it.
const SERVICE_ID: &str = "spiffe://example.org/tenant/acme/env/prod/agent/orders";

fn example(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples")
        .join(path)
}

/// The Python client, `args` after the script.
fn python(args: &[&str]) -> Command {
    let mut cmd = Command::new("python3");
    cmd.arg(example("python/client.py")).args(args);
    cmd
}

/// The Go client built into `home` (`go build`, not `go run`: killing
/// `go run` would leave the program it started running).
fn build_go(home: &Path) -> PathBuf {
    let bin = home.join("client");
    let out = Command::new("go")
        .arg("build")
        .arg("-o")
        .arg(&bin)
        .arg(example("go/client.go"))
        .env("HOME", home)
        .env("GOCACHE", home.join("go-cache"))
        .output()
        .expect("go is installed (Debian package golang-go)");
    assert!(
        out.status.success(),
        "go build: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    bin
}

/// The Go client `bin`, with `args`.
fn go(bin: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(bin);
    cmd.args(args);
    cmd
}

/// A client run until it ends or the test does; its stdout lines arrive
/// on a channel.
struct Running {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Running {
    fn start(mut cmd: Command) -> Self {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the client starts (python3 with requests, and go, are installed)");
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self { child, lines }
    }

    /// The serial of the certificate the next answer names.
    fn next_serial(&self, deadline: Instant) -> String {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = self
            .lines
            .recv_timeout(left)
            .expect("the client answers before the deadline");
        let peer: PeerIdentity = serde_json::from_str(&line).expect(&line);
        peer.serial.to_string()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A CA, the example service, and an agent of tenant acme enrolled into
/// `dir/agent` by the CLI (the layout `agentca run` keeps).
async fn setup() -> (TestCa, Service, PathBuf) {
    let ca = TestCa::start();
    let files = service_files(&ca).await;
    let service = Service::start(&ca, &files, &[]);
    ca.register("acme", "prod", "caller").await;
    let token = ca.token("acme", "prod", "caller", 1).await;
    let dir = ca.root.path().join("agent");
    ok(ca
        .command()
        .env("AGENTCA_TOKEN", token)
        .args(["enroll", "--out-dir"])
        .arg(&dir));
    (ca, service, dir)
}

/// `client` calls the service every 100 ms: it names the enrolled
/// certificate, and after `agentca renew` replaced the files, the new one.
fn takes_up_the_renewed_certificate(ca: &TestCa, dir: &Path, client: Command) {
    let running = Running::start(client);
    let first = running.next_serial(Instant::now() + Duration::from_secs(20));
    let renewed = ok(ca.command().arg("renew").arg("--out-dir").arg(dir));
    let new_serial = renewed
        .lines()
        .find_map(|l| l.trim().strip_prefix("serial:"))
        .map(|s| s.trim().to_owned())
        .expect("renew prints the serial");
    assert_ne!(first, new_serial);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let serial = running.next_serial(deadline);
        if serial == new_serial {
            break;
        }
        assert_eq!(serial, first, "a certificate of neither generation");
    }
}

#[tokio::test]
async fn the_python_client_takes_up_a_renewed_certificate() {
    let (ca, service, dir) = setup().await;
    let url = format!("{}/whoami", service.url);
    let dir_arg = dir.to_str().unwrap();
    let args = [
        "--identity",
        dir_arg,
        "--server-id",
        SERVICE_ID,
        "--count",
        "0",
        "--interval",
        "0.1",
        &url,
    ];
    takes_up_the_renewed_certificate(&ca, &dir, python(&args));

    let wrong = python(&[
        "--identity",
        dir_arg,
        "--server-id",
        "spiffe://example.org/tenant/acme/env/prod/agent/impostor",
        &url,
    ])
    .output()
    .unwrap();
    let err = String::from_utf8_lossy(&wrong.stderr);
    assert_eq!(wrong.status.code(), Some(1), "{err}");
    assert!(
        err.contains("not spiffe://example.org/tenant/acme/env/prod/agent/impostor"),
        "{err}"
    );
}

#[tokio::test]
async fn the_go_client_takes_up_a_renewed_certificate() {
    let (ca, service, dir) = setup().await;
    let home = ca.root.path().join("go-home");
    std::fs::create_dir_all(&home).unwrap();
    let bin = build_go(&home);
    let url = format!("{}/whoami", service.url);
    let dir_arg = dir.to_str().unwrap();
    let args = [
        "-identity",
        dir_arg,
        "-server-id",
        SERVICE_ID,
        "-count",
        "0",
        "-interval",
        "100ms",
        &url,
    ];
    takes_up_the_renewed_certificate(&ca, &dir, go(&bin, &args));

    let wrong = go(
        &bin,
        &[
            "-identity",
            dir_arg,
            "-server-id",
            "spiffe://example.org/tenant/acme/env/prod/agent/impostor",
            &url,
        ],
    )
    .output()
    .unwrap();
    let err = String::from_utf8_lossy(&wrong.stderr);
    assert!(!wrong.status.success(), "{err}");
    assert!(
        err.contains("not spiffe://example.org/tenant/acme/env/prod/agent/impostor"),
        "{err}"
    );
}
