//! A real CA for end-to-end tests: the `agentca` binary, initialised in a
//! temporary directory and serving on a free loopback port.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use agentca::bundle::{Fingerprint, TrustBundle};
use agentca::client::{CaClient, CaTrust, ClientError, Credentials, KeyAlgorithm, PrivateKey};
use agentca::wire::{
    AgentInfo, CreateTokenRequest, IssuedCertificate, RegisterAgentRequest, RevocationPage,
    RevokeRequest, RevokeResponse, TokenCreated,
};
use reqwest::Method;

pub const PASSPHRASE: &str = "correct horse battery staple";
pub const TRUST_DOMAIN: &str = "example.org";

/// The `agentca` binary under test.
pub fn agentca_bin() -> &'static str {
    env!("CARGO_BIN_EXE_agentca")
}

pub struct TestCa {
    pub root: tempfile::TempDir,
    pub data_dir: PathBuf,
    pub passphrase_file: PathBuf,
    pub url: String,
    /// The plain-HTTP listener's URL, when started with `--http-listen`.
    pub http_url: Option<String>,
    serve_args: Vec<String>,
    /// The database of a replica of a CA kept in PostgreSQL.
    pub store: Option<String>,
    child: Option<Child>,
}

impl TestCa {
    /// A CA with default settings.
    pub fn start() -> Self {
        Self::start_with(&[], &[])
    }

    /// A CA created with extra `init` arguments and served with extra
    /// `serve` arguments.
    pub fn start_with(init_args: &[&str], serve_args: &[&str]) -> Self {
        let root = tempfile::tempdir().expect("tempdir");
        let data_dir = root.path().join("ca");
        let passphrase_file = root.path().join("passphrase");
        write_secret(&passphrase_file, PASSPHRASE);
        let out = Command::new(agentca_bin())
            .arg("init")
            .arg("--data-dir")
            .arg(&data_dir)
            .args(["--trust-domain", TRUST_DOMAIN])
            .arg("--passphrase-file")
            .arg(&passphrase_file)
            .args(init_args)
            .env("HOME", root.path())
            .output()
            .expect("run agentca init");
        assert!(
            out.status.success(),
            "agentca init failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Self::launched(root, data_dir, None, serve_args)
    }

    /// Serves the CA already in `data_dir` (restored, migrated), with the
    /// test passphrase, extra `serve` arguments, and `admin_token` as its
    /// admin's token.
    pub fn serve_dir(data_dir: &Path, admin_token: &str, serve_args: &[&str]) -> Self {
        std::fs::write(data_dir.join("admin.token"), admin_token).unwrap();
        let root = tempfile::tempdir().expect("tempdir");
        Self::launched(root, data_dir.to_owned(), None, serve_args)
    }

    /// `n` replicas of the CA already in the PostgreSQL database `url`,
    /// with `bundle` and `admin_token` for the tests to use.
    pub fn serve_replicas(
        url: &str,
        n: usize,
        bundle: &[u8],
        admin_token: &str,
        serve_args: &[&str],
    ) -> Vec<Self> {
        (0..n)
            .map(|_| {
                let root = tempfile::tempdir().expect("tempdir");
                let data_dir = root.path().join("ca");
                std::fs::create_dir_all(&data_dir).unwrap();
                std::fs::write(data_dir.join("bundle.pem"), bundle).unwrap();
                std::fs::write(data_dir.join("admin.token"), admin_token).unwrap();
                Self::launched(root, data_dir, Some(url), serve_args)
            })
            .collect()
    }

    /// `n` replicas of one CA created in the PostgreSQL database `url`,
    /// each served with extra `serve` arguments on its own port. Each has
    /// its own directory (log, passphrase) holding copies of the bundle
    /// and first admin token that `init` wrote.
    pub fn start_replicas(url: &str, n: usize, serve_args: &[&str]) -> Vec<Self> {
        let first = tempfile::tempdir().expect("tempdir");
        let outputs = first.path().join("ca");
        let passphrase_file = first.path().join("passphrase");
        write_secret(&passphrase_file, PASSPHRASE);
        let out = Command::new(agentca_bin())
            .arg("init")
            .args(["--store", url, "--trust-domain", TRUST_DOMAIN])
            .arg("--data-dir")
            .arg(&outputs)
            .arg("--passphrase-file")
            .arg(&passphrase_file)
            .env("HOME", first.path())
            .output()
            .expect("run agentca init");
        assert!(
            out.status.success(),
            "agentca init --store failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let bundle = std::fs::read(outputs.join("bundle.pem")).unwrap();
        let admin_token = std::fs::read_to_string(outputs.join("admin.token")).unwrap();
        let mut replicas = vec![Self::launched(first, outputs, Some(url), serve_args)];
        replicas.extend(Self::serve_replicas(
            url,
            n.saturating_sub(1),
            &bundle,
            admin_token.trim(),
            serve_args,
        ));
        replicas
    }

    /// A CA served from `data_dir` (or the database `store`), with its log
    /// and the test passphrase in `root`.
    fn launched(
        root: tempfile::TempDir,
        data_dir: PathBuf,
        store: Option<&str>,
        serve_args: &[&str],
    ) -> Self {
        let passphrase_file = root.path().join("passphrase");
        write_secret(&passphrase_file, PASSPHRASE);
        let mut ca = Self {
            root,
            data_dir,
            passphrase_file,
            url: String::new(),
            http_url: None,
            serve_args: serve_args.iter().map(|s| s.to_string()).collect(),
            store: store.map(str::to_owned),
            child: None,
        };
        ca.launch();
        ca
    }

    fn launch(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .unwrap();
        // A restarted CA comes back on the same port, as agents expect.
        let listen = match self.url.rsplit_once(':') {
            Some((_, port)) => format!("127.0.0.1:{port}"),
            None => "127.0.0.1:0".to_owned(),
        };
        let mut command = Command::new(agentca_bin());
        command.arg("serve");
        match &self.store {
            Some(url) => command.args(["--store", url]),
            None => command.arg("--data-dir").arg(&self.data_dir),
        };
        let mut child = command
            .arg("--passphrase-file")
            .arg(&self.passphrase_file)
            .args(["--listen", &listen])
            .args(&self.serve_args)
            .env("HOME", self.root.path())
            .env_remove("AGENTCA_STORE")
            .env("AGENTCA_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("spawn agentca serve");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut http = None;
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(url) = line.strip_prefix("agentca plain HTTP (CRL, OCSP) on ") {
                    http = Some(url.to_owned());
                }
                if let Some(url) = line.strip_prefix("agentca listening on ") {
                    let _ = tx.send((url.to_owned(), http.take()));
                }
            }
        });
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok((url, http_url)) => {
                self.url = url;
                self.http_url = http_url;
            }
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "the CA did not start:\n{}",
                    std::fs::read_to_string(self.log_path()).unwrap_or_default()
                );
            }
        }
        self.child = Some(child);
    }

    pub fn log_path(&self) -> PathBuf {
        self.root.path().join("serve.log")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Stops the CA (SIGKILL: nothing is flushed on the way out, so what
    /// survives a restart is what was durable).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the CA as an operator would (SIGTERM) and waits for it to
    /// exit: what it writes on the way out is written.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pid = child.id().to_string();
            let _ = Command::new("kill").args(["-TERM", &pid]).status();
            let deadline = std::time::Instant::now() + Duration::from_secs(20);
            while child.try_wait().unwrap().is_none() {
                assert!(
                    std::time::Instant::now() < deadline,
                    "the CA did not stop on SIGTERM"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    /// Starts the CA again after [`TestCa::stop`] or [`TestCa::kill`].
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "the CA is running");
        self.launch();
    }

    /// Kills and starts the CA again on the same data directory and port.
    pub fn restart(&mut self) {
        self.kill();
        self.launch();
    }

    pub fn bundle_path(&self) -> PathBuf {
        self.data_dir.join("bundle.pem")
    }

    pub fn bundle(&self) -> TrustBundle {
        TrustBundle::from_pem(&std::fs::read(self.bundle_path()).unwrap()).unwrap()
    }

    pub fn root_fingerprint(&self) -> Fingerprint {
        self.bundle().fingerprints()[0]
    }

    pub fn admin_token(&self) -> String {
        std::fs::read_to_string(self.data_dir.join("admin.token"))
            .unwrap()
            .trim()
            .to_owned()
    }

    /// A client trusting the CA's bundle, without a client certificate.
    pub fn client(&self) -> CaClient {
        CaClient::new(&self.url, CaTrust::Bundle(self.bundle()), None).unwrap()
    }

    /// A client presenting `chain_pem` and `key` (for renewal).
    pub fn client_with(&self, chain_pem: &str, key: &PrivateKey) -> CaClient {
        let key = PrivateKey::from_pem(&key.to_pem()).unwrap();
        let creds = Credentials::from_pem(chain_pem, key).unwrap();
        CaClient::new(&self.url, CaTrust::Bundle(self.bundle()), Some(creds)).unwrap()
    }

    pub async fn admin<B: serde::Serialize, T: serde::de::DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<T, ClientError> {
        self.client()
            .call(method, path, Some(&self.admin_token()), body)
            .await
    }

    pub async fn register(&self, tenant: &str, env: &str, agent: &str) -> AgentInfo {
        self.register_with_ttl(tenant, env, agent, None).await
    }

    pub async fn register_with_ttl(
        &self,
        tenant: &str,
        env: &str,
        agent: &str,
        ttl: Option<u64>,
    ) -> AgentInfo {
        let req = RegisterAgentRequest {
            tenant: tenant.into(),
            env: env.into(),
            agent: agent.into(),
            owner: "team-test".into(),
            purpose: "end-to-end tests".into(),
            ttl_seconds: ttl,
            scopes: Vec::new(),
            reuse_retired: false,
        };
        self.admin(Method::POST, "/v1/admin/agents", Some(&req))
            .await
            .expect("register")
    }

    pub async fn token(&self, tenant: &str, env: &str, agent: &str, uses: u32) -> String {
        self.try_token(
            tenant,
            env,
            agent,
            CreateTokenRequest {
                ttl_seconds: None,
                uses: Some(uses),
            },
        )
        .await
        .expect("token")
        .token
    }

    pub async fn try_token(
        &self,
        tenant: &str,
        env: &str,
        agent: &str,
        req: CreateTokenRequest,
    ) -> Result<TokenCreated, ClientError> {
        let path = format!("/v1/admin/agents/{tenant}/{env}/{agent}/tokens");
        self.admin(Method::POST, &path, Some(&req)).await
    }

    pub async fn set_enabled(
        &self,
        tenant: &str,
        env: &str,
        agent: &str,
        enabled: bool,
    ) -> AgentInfo {
        let verb = if enabled { "enable" } else { "disable" };
        let path = format!("/v1/admin/agents/{tenant}/{env}/{agent}/{verb}");
        self.admin::<(), _>(Method::POST, &path, None)
            .await
            .expect("enable/disable")
    }

    pub async fn show(&self, tenant: &str, env: &str, agent: &str) -> AgentInfo {
        let path = format!("/v1/admin/agents/{tenant}/{env}/{agent}");
        self.admin::<(), _>(Method::GET, &path, None)
            .await
            .expect("show agent")
    }

    pub async fn revoke(&self, req: &RevokeRequest) -> Result<RevokeResponse, ClientError> {
        self.admin(Method::POST, "/v1/admin/revoke", Some(req))
            .await
    }

    /// `POST /v1/admin/audit/prune` through event `through`, whose hash is
    /// `hash`.
    pub async fn prune_audit(
        &self,
        through: u64,
        hash: &str,
    ) -> Result<agentca::wire::PruneAuditResponse, ClientError> {
        self.admin(
            Method::POST,
            "/v1/admin/audit/prune",
            Some(&agentca::wire::PruneAuditRequest {
                through,
                hash: hash.to_owned(),
            }),
        )
        .await
    }

    pub async fn revoke_agent(
        &self,
        tenant: &str,
        env: &str,
        agent: &str,
        reason: &str,
    ) -> RevokeResponse {
        self.revoke(&RevokeRequest {
            tenant: Some(tenant.into()),
            env: Some(env.into()),
            agent: Some(agent.into()),
            reason: Some(reason.into()),
            ..Default::default()
        })
        .await
        .expect("revoke agent")
    }

    /// A plain reqwest client trusting the CA.
    pub fn http(&self) -> reqwest::Client {
        reqwest::Client::builder()
            .use_preconfigured_tls(
                agentca::client::client_config(&CaTrust::Bundle(self.bundle()), None).unwrap(),
            )
            .build()
            .unwrap()
    }

    /// `GET <path>` on the HTTPS listener: status and body.
    pub async fn get(&self, path: &str) -> (u16, Vec<u8>) {
        let resp = self
            .http()
            .get(format!("{}{path}", self.url))
            .send()
            .await
            .unwrap();
        (resp.status().as_u16(), resp.bytes().await.unwrap().to_vec())
    }

    /// The current CRL of the intermediate, DER.
    pub async fn crl(&self) -> Vec<u8> {
        let (status, body) = self.get("/v1/crl").await;
        assert_eq!(status, 200);
        body
    }

    /// A page of the revocation feed, as the global admin sees it (with
    /// who was revoked and why).
    pub async fn feed(&self, since: u64, wait_secs: u64) -> RevocationPage {
        let resp = self
            .http()
            .get(format!(
                "{}/v1/revocations?since={since}&wait={wait_secs}",
                self.url
            ))
            .bearer_auth(self.admin_token())
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let body = resp.text().await.unwrap();
        assert_eq!(status, 200, "{body}");
        serde_json::from_str(&body).unwrap()
    }

    /// Registers `tenant/env/agent`, creates a single-use token and enrolls
    /// with it and a new P-256 key.
    pub async fn enrolled(
        &self,
        tenant: &str,
        env: &str,
        agent: &str,
    ) -> (IssuedCertificate, PrivateKey) {
        self.register(tenant, env, agent).await;
        self.enroll(&self.token(tenant, env, agent, 1).await)
            .await
            .expect("enroll")
    }

    /// Waits (up to 10 s) until the CA counts `n` waiting revocation-feed
    /// requests.
    pub async fn wait_feed_subscribers(&self, n: usize) {
        self.wait_feed_subscribers_with(&self.http(), n).await
    }

    /// [`TestCa::wait_feed_subscribers`], asking with `http` (a client
    /// bound to another address, when this one's connections are full).
    pub async fn wait_feed_subscribers_with(&self, http: &reqwest::Client, n: usize) {
        let line = format!("\nagentca_feed_subscribers {n}\n");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let resp = http
                .get(format!("{}/metrics", self.url))
                .send()
                .await
                .unwrap();
            if resp.text().await.unwrap().contains(&line) {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the CA never counted {n} feed subscriber(s)"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Renews `issued` (held with `key`) over mutual TLS with a new P-256
    /// key; the new certificate and its key.
    pub async fn renewed(
        &self,
        issued: &IssuedCertificate,
        key: &PrivateKey,
    ) -> (IssuedCertificate, PrivateKey) {
        let next = PrivateKey::generate(agentca::client::KeyAlgorithm::P256).unwrap();
        let renewed = self
            .client_with(&issued.certificate_chain, key)
            .renew(&next.csr_pem().unwrap())
            .await
            .expect("renew");
        (renewed, next)
    }

    /// Registers nothing: enrolls with `token` and a new P-256 key.
    pub async fn enroll(
        &self,
        token: &str,
    ) -> Result<(IssuedCertificate, PrivateKey), ClientError> {
        let key = PrivateKey::generate(KeyAlgorithm::P256).unwrap();
        let issued = self.client().enroll(token, &key.csr_pem().unwrap()).await?;
        Ok((issued, key))
    }

    /// `agentca <args>` with the environment pointing at this CA.
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(agentca_bin());
        cmd.env("HOME", self.root.path())
            .env("AGENTCA_URL", &self.url)
            .env("AGENTCA_BUNDLE", self.bundle_path())
            .env(
                "AGENTCA_ADMIN_TOKEN_FILE",
                self.data_dir.join("admin.token"),
            )
            .env_remove("AGENTCA_TOKEN")
            .env_remove("AGENTCA_FINGERPRINT");
        cmd
    }
}

impl Drop for TestCa {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The detail of a refusal with `status` and `code`, or a panic naming what
/// came instead.
pub fn refused_with<T: std::fmt::Debug>(
    result: Result<T, ClientError>,
    status: u16,
    code: &str,
) -> String {
    match result {
        Err(ClientError::Refused {
            status: s,
            error,
            detail,
            ..
        }) if s == status && error == code => detail,
        other => panic!("expected {status} {code}, got {other:?}"),
    }
}

/// The error code of a refusal, or a panic naming what came instead.
pub fn refusal<T: std::fmt::Debug>(result: Result<T, ClientError>) -> (u16, String) {
    match result {
        Err(ClientError::Refused { status, error, .. }) => (status, error),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// The serials a DER CRL lists, as lowercase hex, and its CRL number.
pub fn crl_serials(der: &[u8]) -> (Vec<String>, u64) {
    let (_, crl) = x509_parser::parse_x509_crl(der).expect("a valid CRL");
    let serials = crl
        .iter_revoked_certificates()
        .map(|r| r.raw_serial().iter().map(|b| format!("{b:02x}")).collect())
        .collect();
    let number = crl
        .crl_number()
        .and_then(|n| n.to_u64_digits().first().copied())
        .unwrap_or(0);
    (serials, number)
}

/// Writes the leaf of `issued` as `<name>.pem` in `dir`, and its issuer
/// as `intermediate.pem`.
pub fn write_leaf(dir: &Path, name: &str, issued: &IssuedCertificate) {
    write(dir, &format!("{name}.pem"), &issued.certificate_chain);
    let intermediate = pem::encode(&pem::parse_many(&issued.certificate_chain).unwrap()[1]);
    write(dir, "intermediate.pem", &intermediate);
}

/// What `openssl ocsp` says of `leaf` (a file in `dir`, beside
/// `intermediate.pem`) when it asks `ca`'s plain-HTTP responder.
pub fn openssl_ocsp(ca: &TestCa, dir: &Path, leaf: &str) -> String {
    let url = format!("{}/v1/ocsp", ca.http_url.as_ref().expect("--http-listen"));
    let out = Command::new("openssl")
        .args(["ocsp", "-issuer", "intermediate.pem", "-cert", leaf])
        .arg("-CAfile")
        .arg(ca.bundle_path())
        .args(["-url", &url])
        .current_dir(dir)
        .output()
        .expect("run openssl ocsp");
    String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr)
}

/// Writes a secret file, readable by its owner only (the CA refuses
/// secrets that others may read).
pub fn write_secret(path: &Path, contents: &str) {
    std::fs::write(path, contents).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
}

/// Writes `contents` to `dir/name` and returns the path.
pub fn write(dir: &Path, name: &str, contents: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, contents).unwrap();
    path
}

/// The first certificate of a PEM chain, as DER.
pub fn leaf_der(chain_pem: &str) -> Vec<u8> {
    pem::parse_many(chain_pem).unwrap()[0].contents().to_vec()
}

/// An agent's HTTPS client: it presents its certificate and accepts the
/// service by its SPIFFE identity (agent `orders` of tenant acme), not by
/// host name.
pub fn agent_client(ca: &TestCa, issued: &IssuedCertificate, key: &PrivateKey) -> reqwest::Client {
    use agentca::identity::TrustDomain;
    use agentca::verify::Verifier;
    let verifier = Verifier::builder(ca.bundle(), TrustDomain::new("example.org").unwrap())
        .allow_tenant("acme")
        .allow_agent("orders")
        // The agent checks the service's identity; revocation of services
        // is the services' side of this test.
        .without_revocation_checks()
        .build()
        .unwrap();
    https_client(
        verifier
            .client_config(chain_der(issued), key_der(key))
            .unwrap(),
    )
}

/// The certificate chain of `issued`, DER, leaf first.
pub fn chain_der(issued: &IssuedCertificate) -> Vec<rustls_pki_types::CertificateDer<'static>> {
    agentca::certs_from_pem(&issued.certificate_chain).unwrap()
}

/// `key` as PKCS#8 DER.
pub fn key_der(key: &PrivateKey) -> rustls_pki_types::PrivateKeyDer<'static> {
    rustls_pki_types::PrivateKeyDer::Pkcs8(rustls_pki_types::PrivatePkcs8KeyDer::from(
        pem::parse(key.to_pem()).unwrap().into_contents(),
    ))
}

/// A reqwest client over `tls` (HTTP/1.1), with a 5 s timeout.
pub fn https_client(mut tls: rustls::ClientConfig) -> reqwest::Client {
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap()
}

/// Runs the `openssl` binary in `dir`: whether it succeeded, and its
/// stdout then stderr.
pub fn openssl(args: &[&str], dir: &Path) -> (bool, String) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("the openssl binary is installed");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// The serial (lowercase hex) of the leaf in `dir/cert.pem`, as
/// `agentca enroll` and `agentca run` write it.
pub fn serial_in(dir: &Path) -> String {
    let chain = std::fs::read_to_string(dir.join("cert.pem")).unwrap();
    let der = leaf_der(&chain);
    let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
    agentca::hex(cert.raw_serial())
}

/// Runs `cmd` (an `agentca` command) to its end.
pub fn run(cmd: &mut Command) -> Output {
    cmd.output().expect("run agentca")
}

/// Runs `cmd` (an `agentca` command), which must succeed, and returns its stdout.
pub fn ok(cmd: &mut Command) -> String {
    let out = run(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Runs `cmd`, which must fail (any documented exit code but usage's 2),
/// and returns its stderr.
pub fn fails(cmd: &mut Command) -> String {
    let out = run(cmd);
    assert!(
        matches!(out.status.code(), Some(1 | 3 | 4 | 5 | 69 | 75)),
        "{cmd:?} should fail with one of the documented exit codes, not {:?}:\n{}{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stderr).unwrap()
}

/// Runs `cmd`, which must exit with `code`, and returns its stderr.
pub fn fails_with(cmd: &mut Command, code: i32) -> String {
    let out = run(cmd);
    assert_eq!(
        out.status.code(),
        Some(code),
        "{cmd:?}:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stderr).unwrap()
}

/// A CSR for a new P-256 key.
pub fn csr() -> String {
    PrivateKey::generate(KeyAlgorithm::P256)
        .unwrap()
        .csr_pem()
        .unwrap()
}

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

/// The example service (examples/service.rs) as a process, accepting
/// tenant acme, with the certificate [`service_files`] wrote; killed on drop.
pub struct Service {
    child: Child,
    /// Its `https://` base URL.
    pub url: String,
}

impl Service {
    /// Starts it with the files in `dir` and `extra` arguments.
    pub fn start(ca: &TestCa, dir: &Path, extra: &[&str]) -> Self {
        Self::start_with_files(
            ca,
            &dir.join("service.pem"),
            &dir.join("service.key"),
            extra,
        )
    }

    /// Starts it presenting the certificate in `cert` and `key` (read again
    /// when they change), with `extra` arguments.
    pub fn start_with_files(ca: &TestCa, cert: &Path, key: &Path, extra: &[&str]) -> Self {
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
            .arg(cert)
            .arg("--key")
            .arg(key)
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

/// Writes `service.pem` and `service.key` for the example service (agent
/// `orders` of tenant acme, certificates valid an hour) into the CA's
/// temporary directory, and returns it.
pub async fn service_files(ca: &TestCa) -> PathBuf {
    ca.register_with_ttl("acme", "prod", "orders", Some(3600))
        .await;
    let (issued, key) = ca
        .enroll(&ca.token("acme", "prod", "orders", 1).await)
        .await
        .expect("enroll the service");
    let dir = ca.root.path().to_owned();
    write(&dir, "service.pem", &issued.certificate_chain);
    write(&dir, "service.key", &key.to_pem());
    dir
}

/// Stops a server that has workers of its own (nginx, HAProxy) with
/// SIGTERM, so that its master stops them too (SIGKILL would leave them
/// running, orphaned); SIGKILL only if it does not stop within 5 s.
pub fn stop_gracefully(child: &mut Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while std::time::Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// A child process killed (and reaped) when the test ends, passing or not.
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
