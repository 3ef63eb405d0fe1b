//! The agent commands: `agentca enroll` and `agentca renew` (one-shot), and
//! `agentca run` (a daemon keeping the files current).
//!
//! All three keep an agent directory ([`agentca::client::files`]): `cert.pem`
//! (leaf, then the issuing intermediate), `key.pem` (0600, generated here
//! and never sent), `bundle.pem`, and `identity.pem` (chain and key in one
//! file), replaced all at once by switching a symlinked directory, with the
//! journal of a renewal in progress beside them.

use std::path::PathBuf;
use std::process::Command;

use agentca::client::agent::Health;
use agentca::client::files::AgentDir;
use agentca::client::{
    check_issued, Agent, AgentConfig, AgentError, CaClient, CaTrust, KeyAlgorithm, PrivateKey,
};
use agentca::rfc3339;
use agentca::wire::IssuedCertificate;
use anyhow::Context;
use clap::Args;
use time::OffsetDateTime;

use super::{read_secret_file, CaConnection, CaUrls};

/// Exit code of `agentca run` when renewal failed for good (revoked,
/// disabled, retired, token spent): a human must act. The CLI's code for
/// a refusal ([`super::exit_code`]).
pub const EXIT_NEEDS_ACTION: u8 = super::EXIT_REFUSED;

/// Where the bootstrap token comes from.
#[derive(Args, Debug, Clone)]
pub struct TokenSource {
    /// File holding the bootstrap token. Alternatively set AGENTCA_TOKEN.
    #[arg(long, env = "AGENTCA_TOKEN_FILE")]
    token_file: Option<PathBuf>,
}

impl TokenSource {
    fn get(&self) -> anyhow::Result<Option<String>> {
        if let Some(path) = &self.token_file {
            return Ok(Some(read_secret_file(path)?));
        }
        Ok(std::env::var("AGENTCA_TOKEN")
            .ok()
            .map(|t| t.trim().to_owned()))
    }
}

/// `agentca enroll`.
#[derive(Args, Debug)]
pub struct EnrollArgs {
    #[command(flatten)]
    ca: CaConnection,
    #[command(flatten)]
    token: TokenSource,
    /// Directory to write cert.pem, key.pem, bundle.pem and identity.pem to.
    #[arg(long, default_value = ".")]
    out_dir: PathBuf,
    /// Key algorithm: p256, p384 or ed25519.
    #[arg(long, default_value = "p256")]
    key_alg: KeyAlgorithm,
    /// Replace the identity the directory holds (without it, enrolling
    /// into a directory that holds one is refused before the token is
    /// spent).
    #[arg(long)]
    force: bool,
}

pub async fn enroll(args: EnrollArgs) -> anyhow::Result<()> {
    let token = args
        .token
        .get()?
        .context("no bootstrap token: give --token-file <file> or set AGENTCA_TOKEN")?;
    let dir = AgentDir::new(&args.out_dir);
    if !args.force {
        let held = dir
            .load()
            .with_context(|| format!("reading {}", args.out_dir.display()))?;
        if let Some(held) = held {
            anyhow::bail!(
                "{} already holds an identity ({}): enrolling would replace it; give --force to replace it, or another --out-dir",
                args.out_dir.display(),
                describe_held(&held)
            );
        }
    }
    let client = CaClient::new(&args.ca.urls.list(), args.ca.trust()?, None)?;
    let bundle = client
        .bundle()
        .await
        .context("fetching the CA's trust bundle")?;
    let key = PrivateKey::generate(args.key_alg)?;
    let issued = client.enroll(&token, &key.csr_pem()?).await?;
    check_issued(&issued, &key)?;
    dir.install(
        &issued.certificate_chain,
        &key.to_pem(),
        &bundle.to_pem(),
        OffsetDateTime::now_utc(),
    )
    .with_context(|| format!("writing {}", args.out_dir.display()))?;
    dir.clear_pending()?;
    report("enrolled", &issued, &args.out_dir);
    Ok(())
}

/// `agentca renew`.
#[derive(Args, Debug)]
pub struct RenewArgs {
    #[command(flatten)]
    ca: CaUrls,
    /// Directory holding the certificate; its files are replaced.
    #[arg(long, default_value = ".")]
    out_dir: PathBuf,
    /// Algorithm of the new key: p256, p384 or ed25519.
    #[arg(long, default_value = "p256")]
    key_alg: KeyAlgorithm,
}

pub async fn renew(args: RenewArgs) -> anyhow::Result<()> {
    let dir = AgentDir::new(&args.out_dir);
    if dir.pending()?.is_some() {
        eprintln!("agentca: resuming an interrupted renewal with the same key");
    }
    let bundle_pem = std::fs::read(args.out_dir.join("bundle.pem"))
        .with_context(|| format!("cannot read {}/bundle.pem", args.out_dir.display()))?;
    let bundle = agentca::bundle::TrustBundle::from_pem(&bundle_pem)?;
    let mut config = AgentConfig::new(args.ca.list(), CaTrust::Bundle(bundle));
    config.dir = Some(args.out_dir.clone());
    config.key_algorithm = args.key_alg;
    match Agent::renew_now(config).await {
        Ok(identity) => {
            println!("renewed: {}", identity.spiffe_id);
            println!("  instance: {}", identity.instance_id);
            println!("  serial:   {}", identity.serial);
            println!("  valid to: {}", rfc3339(identity.not_after));
            Ok(())
        }
        Err(AgentError::Retry(reason)) => Err(anyhow::anyhow!(
            "{reason}; the renewal did not complete: run `agentca renew` again to retry with the same key"
        )),
        Err(e) => Err(e.into()),
    }
}

/// `agentca run`.
#[derive(Args, Debug)]
pub struct RunArgs {
    #[command(flatten)]
    ca: CaConnection,
    #[command(flatten)]
    token: TokenSource,
    /// Directory to keep cert.pem, key.pem, bundle.pem and identity.pem
    /// current in (an existing certificate there is picked up).
    #[arg(long)]
    out_dir: PathBuf,
    /// Key algorithm of each new key: p256, p384 or ed25519.
    #[arg(long, default_value = "p256")]
    key_alg: KeyAlgorithm,
    /// Run this command (with `sh -c`) after each rotation.
    #[arg(long)]
    exec: Option<String>,
    /// Send this signal (e.g. HUP) to a process after each rotation.
    #[arg(long, requires = "pid_file")]
    signal: Option<String>,
    /// File holding the pid of the process to signal.
    #[arg(long)]
    pid_file: Option<PathBuf>,
    /// Follow the CA's feed and renew at once when a scope is withdrawn
    /// from this agent's certificate (one long-poll connection to the CA).
    #[arg(long)]
    follow_withdrawals: bool,
    /// Test hook: abort right after the CA answers a renewal, before any
    /// file is written.
    #[arg(long, hide = true)]
    abort_after_renewal_response: bool,
}

pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    if let Some(signal) = &args.signal {
        anyhow::ensure!(
            !signal.is_empty() && signal.chars().all(|c| c.is_ascii_alphanumeric()),
            "--signal takes a signal name or number, such as HUP"
        );
    }
    let mut config = AgentConfig::new(args.ca.urls.list(), args.ca.trust()?);
    config.token = args.token.get()?;
    config.dir = Some(args.out_dir.clone());
    config.key_algorithm = args.key_alg;
    config.abort_after_renewal_response = args.abort_after_renewal_response;
    config.follow_withdrawals = args.follow_withdrawals;
    // What the directory held before: if starting writes a new identity,
    // the hook runs for it as after every rotation.
    let held = AgentDir::new(&args.out_dir)
        .load()
        .ok()
        .flatten()
        .map(|s| s.chain_pem);
    let agent = Agent::start(config).await.map_err(|e| match e {
        AgentError::NoToken => anyhow::anyhow!(
            "{} holds no valid certificate and there is no bootstrap token: give --token-file or set AGENTCA_TOKEN",
            args.out_dir.display()
        ),
        other => other.into(),
    })?;
    let current = agent.current();
    tracing::info!(id = %current.spiffe_id, serial = %current.serial, not_after = %rfc3339(current.not_after), dir = %args.out_dir.display(), "identity ready");
    if held.as_deref() != Some(current.chain_pem.as_str()) {
        after_rotation(&args);
    }
    let mut rotations = agent.rotations();
    let mut health = agent.health();
    let mut terminate = terminate_signal();
    loop {
        tokio::select! {
            changed = rotations.changed() => {
                if changed.is_err() {
                    anyhow::bail!("the renewal task stopped");
                }
                let identity = rotations.borrow_and_update().clone();
                tracing::info!(id = %identity.spiffe_id, serial = %identity.serial, not_after = %rfc3339(identity.not_after), "files replaced");
                after_rotation(&args);
            }
            changed = health.changed() => {
                if changed.is_err() {
                    anyhow::bail!("the renewal task stopped");
                }
                let state = health.borrow_and_update().clone();
                match state {
                    Health::Healthy => tracing::info!("healthy"),
                    Health::Unhealthy(why) => tracing::warn!(reason = %why, "unhealthy"),
                    Health::Failed(why) => {
                        tracing::error!(reason = %why, "renewal refused for good; stopping");
                        eprintln!("agentca: error: {why}");
                        std::process::exit(i32::from(EXIT_NEEDS_ACTION));
                    }
                }
            }
            () = &mut terminate => {
                tracing::info!("stopping");
                return Ok(());
            }
        }
    }
}

fn after_rotation(args: &RunArgs) {
    if let Some(cmd) = &args.exec {
        super::run_hook(cmd, "AGENTCA_DIR", &args.out_dir);
    }
    if let (Some(signal), Some(pid_file)) = (&args.signal, &args.pid_file) {
        let pid = std::fs::read_to_string(pid_file)
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok());
        match pid {
            Some(pid) => match Command::new("kill")
                .arg(format!("-{signal}"))
                .arg(pid.to_string())
                .status()
            {
                Ok(status) if status.success() => {}
                Ok(status) => tracing::warn!(signal = %signal, pid, %status, "kill failed"),
                Err(e) => {
                    tracing::warn!(signal = %signal, pid, error = %e, "cannot signal the process")
                }
            },
            None => tracing::warn!(file = %pid_file.display(), "the pid file holds no pid"),
        }
    }
}

/// Completes on SIGTERM or Ctrl-C.
fn terminate_signal() -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> {
    Box::pin(async {
        #[cfg(unix)]
        if let Ok(mut term) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            return;
        }
        let _ = tokio::signal::ctrl_c().await;
    })
}

/// The identity a directory holds and its end of validity, for people.
fn describe_held(held: &agentca::client::files::Stored) -> String {
    match agentca::client::agent::Identity::from_pem(&held.chain_pem, &held.key_pem) {
        Ok(identity) => {
            let state = if identity.not_after < OffsetDateTime::now_utc() {
                "expired"
            } else {
                "valid to"
            };
            format!(
                "{}, {state} {}",
                identity.spiffe_id,
                rfc3339(identity.not_after)
            )
        }
        Err(e) => format!("files that do not make an identity: {e}"),
    }
}

fn report(what: &str, issued: &IssuedCertificate, dir: &std::path::Path) {
    println!("{what}: {}", issued.spiffe_id);
    println!("  instance: {}", issued.instance_id);
    println!("  serial:   {}", issued.serial);
    println!("  valid to: {}", rfc3339(issued.not_after));
    println!(
        "  files:    {}/{{cert.pem,key.pem,bundle.pem,identity.pem}}",
        dir.display()
    );
}
