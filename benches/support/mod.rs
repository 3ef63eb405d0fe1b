//! What the load generators share: the `agentca` binary started on a
//! temporary data directory and loopback ports, an agent registered on it,
//! and the CPU time and memory of its process read from `/proc`.

#![allow(dead_code)] // each bench uses part of it

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use agentca::bundle::TrustBundle;
use agentca::client::{CaClient, CaTrust, KeyAlgorithm, PrivateKey};
use agentca::wire::{
    CreateTokenRequest, IssuedCertificate, RegisterAgentRequest, RevokeRequest, RevokeResponse,
    TokenCreated,
};
use anyhow::{bail, ensure, Context};

pub const PASSPHRASE: &str = "correct horse battery staple";
pub const TRUST_DOMAIN: &str = "example.org";
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// The `agentca` binary built next to this bench (release).
pub fn default_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("the bench's own path");
    // target/release/deps/<bench> → target/release/agentca
    exe.parent()
        .and_then(Path::parent)
        .map(|d| d.join("agentca"))
        .expect("a target directory")
}

/// One `agentca serve` on a fresh data directory (redb), listening on free
/// loopback ports. Dropping it kills the process.
pub struct Ca {
    pub root: tempfile::TempDir,
    pub data_dir: PathBuf,
    /// `https://127.0.0.1:port`.
    pub url: String,
    /// `http://127.0.0.1:port` (CRL and OCSP), when asked for.
    pub http_url: Option<String>,
    child: Child,
    admin_token: String,
}

impl Ca {
    /// Initialises a CA with `bin` and serves it with `serve_args` (and,
    /// where `bin` has them, the issuance limits lifted: a bench issues
    /// many certificates to few agents).
    pub fn start(bin: &Path, serve_args: &[&str]) -> anyhow::Result<Self> {
        let root = tempfile::tempdir().context("cannot create a temporary directory")?;
        let data_dir = root.path().join("ca");
        let passphrase_file = root.path().join("passphrase");
        std::fs::write(&passphrase_file, PASSPHRASE)?;
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&passphrase_file, std::fs::Permissions::from_mode(0o600))?;
        }
        let out = Command::new(bin)
            .arg("init")
            .arg("--data-dir")
            .arg(&data_dir)
            .args(["--trust-domain", TRUST_DOMAIN])
            .arg("--passphrase-file")
            .arg(&passphrase_file)
            .env("HOME", root.path())
            .output()
            .with_context(|| format!("cannot run {} init", bin.display()))?;
        ensure!(
            out.status.success(),
            "agentca init failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let log = std::fs::File::create(root.path().join("serve.log"))?;
        let mut child = Command::new(bin)
            .arg("serve")
            .args(lifted_limits(bin)?)
            .arg("--data-dir")
            .arg(&data_dir)
            .arg("--passphrase-file")
            .arg(&passphrase_file)
            .args(["--listen", "127.0.0.1:0"])
            .args(serve_args)
            .env("HOME", root.path())
            .env("AGENTCA_LOG", "warn")
            .env("NO_COLOR", "1")
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .with_context(|| format!("cannot run {} serve", bin.display()))?;
        let stdout = child.stdout.take().expect("stdout is piped");
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
        let (url, http_url) = match rx.recv_timeout(START_TIMEOUT) {
            Ok(urls) => urls,
            Err(_) => {
                let _ = child.kill();
                let log =
                    std::fs::read_to_string(root.path().join("serve.log")).unwrap_or_default();
                bail!("the CA did not start:\n{log}");
            }
        };
        let admin_token = std::fs::read_to_string(data_dir.join("admin.token"))?
            .trim()
            .to_owned();
        Ok(Self {
            root,
            data_dir,
            url,
            http_url,
            child,
            admin_token,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn bundle(&self) -> anyhow::Result<TrustBundle> {
        TrustBundle::from_pem(&std::fs::read(self.data_dir.join("bundle.pem"))?)
            .context("invalid bundle.pem")
    }

    pub fn client(&self) -> anyhow::Result<CaClient> {
        Ok(CaClient::new(
            &self.url,
            CaTrust::Bundle(self.bundle()?),
            None,
        )?)
    }

    /// Registers `tenant/env/agent` with certificates of `ttl_seconds` and
    /// returns a bootstrap token of `uses` uses.
    pub async fn agent_token(
        &self,
        tenant: &str,
        env: &str,
        agent: &str,
        ttl_seconds: u64,
        uses: u32,
    ) -> anyhow::Result<String> {
        let name = [tenant, env, agent];
        let (_, token) =
            register_with_token(&self.client()?, &self.admin_token, name, ttl_seconds, uses)
                .await?;
        Ok(token)
    }

    /// Enrolls with `token` and a new P-256 key.
    pub async fn enroll(&self, token: &str) -> anyhow::Result<(IssuedCertificate, PrivateKey)> {
        let key = PrivateKey::generate(KeyAlgorithm::P256)?;
        let issued = self.client()?.enroll(token, &key.csr_pem()?).await?;
        Ok((issued, key))
    }

    /// `method path` with `body` as the admin.
    pub async fn admin<B: serde::Serialize, T: serde::de::DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&B>,
    ) -> anyhow::Result<T> {
        self.client()?
            .call(method, path, Some(&self.admin_token), body)
            .await
            .with_context(|| path.to_owned())
    }

    /// Revokes by `req` as the admin.
    pub async fn revoke(&self, req: &RevokeRequest) -> anyhow::Result<RevokeResponse> {
        Ok(self
            .client()?
            .call(
                reqwest::Method::POST,
                "/v1/admin/revoke",
                Some(&self.admin_token),
                Some(req),
            )
            .await?)
    }

    /// CPU time the CA has used so far.
    pub fn cpu(&self) -> Duration {
        process_cpu(self.pid()).unwrap_or_default()
    }

    /// The CA's resident memory now and at its peak, in bytes.
    pub fn memory(&self) -> (u64, u64) {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
                .map_or(0, |kib| kib * 1024)
        };
        (field("VmRSS:"), field("VmHWM:"))
    }

    /// Bytes the data directory's store takes on disk.
    pub fn store_bytes(&self) -> u64 {
        std::fs::read_dir(&self.data_dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("store."))
            .filter_map(|e| e.metadata().ok())
            .map(|m| m.len())
            .sum()
    }
}

impl Drop for Ca {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `n` verifiers of `ca`, each with its own revocation cache kept by the
/// library's feed subscription, once each has synchronised. Dropping the
/// subscriptions stops them.
pub async fn subscribed_verifiers(
    ca: &Ca,
    n: usize,
) -> anyhow::Result<(
    Vec<std::sync::Arc<agentca::verify::RevocationCache>>,
    Vec<agentca::verify::feed::Subscription>,
)> {
    let bundle = ca.bundle()?;
    let mut caches = Vec::new();
    let mut subscriptions = Vec::new();
    for _ in 0..n {
        let cache = agentca::verify::RevocationCache::new();
        subscriptions.push(agentca::verify::feed::subscribe(
            &ca.url,
            bundle.clone(),
            cache.clone(),
        )?);
        caches.push(cache);
    }
    for s in &subscriptions {
        ensure!(
            s.synced(Duration::from_secs(60)).await,
            "a verifier never synchronised"
        );
    }
    // Let every subscription's long poll reach the CA.
    tokio::time::sleep(Duration::from_millis(500)).await;
    Ok((caches, subscriptions))
}

/// Revokes `serial` and times, for each of `caches`, when it refuses the
/// serial relative to the revoke call's answer: `None` for a cache that
/// knew before the answer came back.
pub async fn timed_revocation(
    ca: &Ca,
    serial: agentca::wire::Serial,
    caches: &[std::sync::Arc<agentca::verify::RevocationCache>],
) -> anyhow::Result<Vec<Option<Duration>>> {
    use std::time::Instant;
    let watchers: Vec<_> = caches
        .iter()
        .map(|cache| {
            let (cache, serial) = (cache.clone(), serial.clone());
            tokio::spawn(async move {
                let give_up = Instant::now() + Duration::from_secs(30);
                while !cache.is_revoked(&serial) {
                    if Instant::now() > give_up {
                        return None;
                    }
                    tokio::time::sleep(Duration::from_micros(200)).await;
                }
                Some(Instant::now())
            })
        })
        .collect();
    ca.revoke(&RevokeRequest {
        serial: Some(serial),
        reason: Some("keyCompromise".into()),
        ..Default::default()
    })
    .await?;
    let answered = Instant::now();
    let mut out = Vec::new();
    for w in watchers {
        let seen = w
            .await?
            .context("a verifier never learned of a revocation")?;
        out.push(seen.checked_duration_since(answered));
    }
    Ok(out)
}

/// Registers the agent `[tenant, env, agent]` through `client` as the
/// admin of `admin_token`, with certificates of `ttl_seconds`, and creates
/// a bootstrap token of `uses` uses for it, valid an hour.
pub async fn register_with_token(
    client: &CaClient,
    admin_token: &str,
    [tenant, env, agent]: [&str; 3],
    ttl_seconds: u64,
    uses: u32,
) -> anyhow::Result<(agentca::wire::AgentInfo, String)> {
    let info: agentca::wire::AgentInfo = client
        .call(
            reqwest::Method::POST,
            "/v1/admin/agents",
            Some(admin_token),
            Some(&RegisterAgentRequest {
                tenant: tenant.into(),
                env: env.into(),
                agent: agent.into(),
                owner: "benchmarks".into(),
                purpose: "load test".into(),
                ttl_seconds: Some(ttl_seconds),
                scopes: Vec::new(),
                reuse_retired: false,
            }),
        )
        .await
        .context("cannot register an agent")?;
    let token: TokenCreated = client
        .call(
            reqwest::Method::POST,
            &format!("/v1/admin/agents/{tenant}/{env}/{agent}/tokens"),
            Some(admin_token),
            Some(&CreateTokenRequest {
                ttl_seconds: Some(3600),
                uses: Some(uses),
            }),
        )
        .await
        .context("cannot create a bootstrap token")?;
    Ok((info, token.token))
}

/// The `serve` options that lift the issuance limits of `bin`, for a
/// binary that has them (earlier ones had none), so that `--binary`
/// compares builds before and after the limits alike.
pub fn lifted_limits(bin: &Path) -> anyhow::Result<Vec<&'static str>> {
    let help = Command::new(bin)
        .args(["serve", "--help"])
        .output()
        .with_context(|| format!("cannot run {} serve --help", bin.display()))?;
    let help = String::from_utf8_lossy(&help.stdout);
    Ok(if help.contains("--max-certs-per-agent") {
        vec![
            "--max-certs-per-agent",
            "4000000000",
            "--max-renewals-per-instance",
            "4000000000",
        ]
    } else {
        Vec::new()
    })
}

/// The fields of `/proc/<pid>/stat` after the command name.
pub fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may hold spaces.
    Some(
        stat.rsplit_once(')')?
            .1
            .split_whitespace()
            .map(str::to_owned)
            .collect(),
    )
}

/// CPU time process `pid` has used so far, all threads, user and system
/// (from /proc, in 10 ms ticks); `None` off Linux.
pub fn process_cpu(pid: u32) -> Option<Duration> {
    let fields = stat_fields(pid)?;
    // utime and stime are fields 14 and 15 of the line: 12 and 13 here.
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10))
}

/// The parent of process `pid`.
pub fn parent_of(pid: u32) -> Option<u32> {
    stat_fields(pid)?.get(1)?.parse().ok()
}

/// The `q` quantile (0 to 1) of sorted `values`.
pub fn quantile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Milliseconds, for tables.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// A binary's path as a table shows it: its last 40 characters.
pub fn short(bin: &Path) -> String {
    let s = bin.display().to_string();
    if s.chars().count() > 40 {
        let tail: String = s
            .chars()
            .rev()
            .take(39)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        format!("…{tail}")
    } else {
        s
    }
}
