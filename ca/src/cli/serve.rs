//! `agentca init` and `agentca serve`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use agentca::client::KeyAlgorithm;
use agentca::identity::TrustDomain;
use anyhow::Context;
use clap::Args;
use time::{Duration, OffsetDateTime};

use super::{default_data_dir, default_home, parse_duration};
use crate::authority::{Authority, Policy, Signer};
use crate::datadir::{self, DataDir, InitOptions};
use crate::http::server::Limits;
use crate::keys::Passphrase;
use crate::profile::ServerName;
use crate::store::{self, Backend, Records, Writer};
use crate::tls::{self, RenewalClientCert, ServerIdentity};

/// Trust domain of a CA created by `serve` for local use.
const LOCAL_TRUST_DOMAIN: &str = "agentca.local";

/// Where the passphrase comes from.
#[derive(Args, Debug, Clone)]
pub struct PassphraseSource {
    /// File holding the passphrase that encrypts the CA keys (at least 12
    /// bytes). Alternatively set AGENTCA_PASSPHRASE.
    #[arg(long, env = "AGENTCA_PASSPHRASE_FILE")]
    passphrase_file: Option<PathBuf>,
}

impl PassphraseSource {
    fn explicit(&self) -> anyhow::Result<Option<Passphrase>> {
        if let Some(path) = &self.passphrase_file {
            return Ok(Some(Passphrase::from_file(path)?));
        }
        if let Some(value) = std::env::var_os("AGENTCA_PASSPHRASE") {
            let bytes = value.into_encoded_bytes();
            return Ok(Some(Passphrase::new(bytes)?));
        }
        Ok(None)
    }
}

/// `agentca init`.
#[derive(Args, Debug)]
pub struct InitArgs {
    /// Directory to create the CA in.
    #[arg(long, env = "AGENTCA_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// The SPIFFE trust domain, e.g. `agents.example.com`.
    #[arg(long)]
    trust_domain: String,
    /// CA key algorithm.
    #[arg(long, default_value = "p256")]
    key_alg: KeyAlgorithm,
    /// Store backend: redb (default; syncs every commit) or sled.
    #[arg(long, default_value = "redb")]
    store: Backend,
    /// Root CA lifetime.
    #[arg(long, default_value = "3650d", value_parser = parse_duration)]
    root_validity: Duration,
    /// Issuing CA lifetime.
    #[arg(long, default_value = "365d", value_parser = parse_duration)]
    intermediate_validity: Duration,
    #[command(flatten)]
    passphrase: PassphraseSource,
}

pub fn init(args: InitArgs) -> anyhow::Result<()> {
    let dir = DataDir::new(args.data_dir.unwrap_or_else(default_data_dir));
    let trust_domain = TrustDomain::new(&args.trust_domain).context("invalid --trust-domain")?;
    let passphrase = args.passphrase.explicit()?.context(
        "the CA keys need a passphrase: give --passphrase-file <file> or set AGENTCA_PASSPHRASE",
    )?;
    anyhow::ensure!(
        args.root_validity > Duration::days(1),
        "--root-validity must be longer than a day"
    );
    anyhow::ensure!(
        args.intermediate_validity > Duration::hours(1),
        "--intermediate-validity must be longer than an hour"
    );
    let report = dir.init(&InitOptions {
        dir: dir.path(),
        trust_domain: trust_domain.clone(),
        key_algorithm: args.key_alg,
        store: args.store,
        passphrase: &passphrase,
        root_validity: args.root_validity,
        intermediate_validity: args.intermediate_validity,
        now: OffsetDateTime::now_utc(),
    })?;
    println!(
        "Created a CA for trust domain {trust_domain} in {}",
        dir.path().display()
    );
    println!("  root fingerprint (SHA-256): {}", report.root_fingerprint);
    println!("  trust bundle:               {}", dir.bundle().display());
    println!(
        "  first admin token:          {} (keep it secret)",
        report.admin_token_path.display()
    );
    println!("  store:                      {}", args.store);
    Ok(())
}

/// `agentca serve`.
#[derive(Args, Debug)]
pub struct ServeArgs {
    /// The CA's data directory. Without it, a local CA in the default
    /// location is used, and created on first run.
    #[arg(long, env = "AGENTCA_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Address to listen on.
    #[arg(long, env = "AGENTCA_LISTEN", default_value = "127.0.0.1:8443")]
    listen: SocketAddr,
    /// Names (DNS or IP) the CA's server certificate is valid for, in
    /// addition to localhost, 127.0.0.1 and ::1. Repeatable.
    #[arg(long = "server-name")]
    server_names: Vec<ServerName>,
    /// Trust domain of a local CA created on first run.
    #[arg(long, default_value = LOCAL_TRUST_DOMAIN)]
    trust_domain: String,
    /// Shortest certificate lifetime a registration may ask for.
    #[arg(long, default_value = "1m", value_parser = parse_duration)]
    min_ttl: Duration,
    /// Longest certificate lifetime a registration may ask for.
    #[arg(long, default_value = "24h", value_parser = parse_duration)]
    max_ttl: Duration,
    /// Certificate lifetime of registrations that do not ask.
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    default_ttl: Duration,
    /// Most open connections.
    #[arg(long, default_value_t = 4096)]
    max_connections: usize,
    #[command(flatten)]
    passphrase: PassphraseSource,
}

pub async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let (dir, passphrase) = open_or_create(&args)?;
    let loaded = dir.load(&passphrase)?;
    drop(passphrase);
    let policy = Policy {
        min_ttl: args.min_ttl,
        max_ttl: args.max_ttl,
        default_ttl: args.default_ttl,
        ..Policy::default()
    };
    policy.validate().map_err(anyhow::Error::msg)?;

    let store = store::open(loaded.meta.store, dir.path())
        .with_context(|| format!("cannot open the store in {}", dir.path().display()))?;
    let writer = Writer::start(store.clone())?;
    let authority = Arc::new(
        Authority::new(
            loaded.trust_domain.clone(),
            Signer {
                root: loaded.root.clone(),
                intermediate: loaded.intermediate,
                key: loaded.intermediate_key,
            },
            policy,
            Records::new(store),
            writer,
        )
        .map_err(anyhow::Error::msg)?,
    );

    let mut names = vec![
        ServerName::Dns("localhost".into()),
        ServerName::Ip([127, 0, 0, 1].into()),
        ServerName::Ip(std::net::Ipv6Addr::LOCALHOST.into()),
    ];
    if !args.listen.ip().is_unspecified() && !names.contains(&ServerName::Ip(args.listen.ip())) {
        names.push(ServerName::Ip(args.listen.ip()));
    }
    for n in args.server_names {
        if !names.contains(&n) {
            names.push(n);
        }
    }
    let server_cert = authority.server_certificate(
        &names,
        OffsetDateTime::now_utc(),
        tls::SERVER_CERT_LIFETIME,
    )?;
    let mut refresh_at = tls::server_refresh_at(server_cert.not_before, server_cert.not_after);
    let identity = Arc::new(ServerIdentity::new(server_cert.chain, server_cert.key)?);
    let root_subject = {
        use x509_parser::prelude::FromDer;
        let (_, root) = x509_parser::certificate::X509Certificate::from_der(&loaded.root)
            .map_err(|e| anyhow::anyhow!("the root does not parse: {e}"))?;
        root.tbs_certificate.subject.as_raw().to_vec()
    };
    let tls_config = tls::server_config(
        identity.clone(),
        Arc::new(RenewalClientCert::new(vec![root_subject])),
    )?;

    // Rotate the server certificate before it expires.
    {
        let authority = authority.clone();
        tokio::spawn(async move {
            loop {
                let wait = (refresh_at - OffsetDateTime::now_utc()).max(Duration::seconds(1));
                tokio::time::sleep(wait.unsigned_abs()).await;
                match authority.server_certificate(
                    &names,
                    OffsetDateTime::now_utc(),
                    tls::SERVER_CERT_LIFETIME,
                ) {
                    Ok(cert) => {
                        refresh_at = tls::server_refresh_at(cert.not_before, cert.not_after);
                        if let Err(e) = identity.replace(cert.chain, cert.key) {
                            tracing::error!(error = %e, "could not install the new server certificate");
                        } else {
                            tracing::info!(not_after = %cert.not_after, "server certificate rotated");
                        }
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "could not issue a new server certificate; retrying in a minute");
                        refresh_at = OffsetDateTime::now_utc() + Duration::minutes(1);
                    }
                }
            }
        });
    }

    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let local = listener.local_addr()?;
    tracing::info!(
        listen = %local,
        trust_domain = %authority.trust_domain(),
        data_dir = %dir.path().display(),
        store = %loaded.meta.store,
        "agentca is serving"
    );
    // Tests and scripts read this line to learn the port when listening on :0.
    println!("agentca listening on https://{local}");
    let limits = Limits {
        max_connections: args.max_connections,
        ..Limits::default()
    };
    crate::http::server::serve(
        listener,
        Arc::new(tls_config),
        crate::http::router(authority),
        limits,
        shutdown_signal(),
    )
    .await;
    tracing::info!("agentca stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutting down");
}

/// The data directory and passphrase to serve with: the given directory,
/// or the local CA in the default location, created on first run.
fn open_or_create(args: &ServeArgs) -> anyhow::Result<(DataDir, Passphrase)> {
    let explicit = args.passphrase.explicit()?;
    if let Some(path) = &args.data_dir {
        let dir = DataDir::new(path);
        dir.read_meta()?;
        let passphrase = explicit.context(
            "the CA keys need their passphrase: give --passphrase-file <file> or set AGENTCA_PASSPHRASE",
        )?;
        return Ok((dir, passphrase));
    }
    let home = default_home();
    let dir = DataDir::new(default_data_dir());
    let local_passphrase = home.join("passphrase");
    if dir.exists() {
        let passphrase = match explicit {
            Some(p) => p,
            None => Passphrase::from_file(&local_passphrase).with_context(|| {
                format!(
                    "the CA in {} needs its passphrase: give --passphrase-file or set AGENTCA_PASSPHRASE",
                    dir.path().display()
                )
            })?,
        };
        return Ok((dir, passphrase));
    }
    create_local(
        &home,
        &dir,
        explicit,
        &local_passphrase,
        &args.trust_domain,
        args.listen,
    )
}

fn create_local(
    home: &Path,
    dir: &DataDir,
    explicit: Option<Passphrase>,
    passphrase_path: &Path,
    trust_domain: &str,
    listen: SocketAddr,
) -> anyhow::Result<(DataDir, Passphrase)> {
    let trust_domain = TrustDomain::new(trust_domain).context("invalid --trust-domain")?;
    datadir::create_private_dir(home)?;
    let generated = explicit.is_none();
    let passphrase = match explicit {
        Some(p) => p,
        None => {
            let p = Passphrase::generate();
            datadir::write_file(passphrase_path, p.as_bytes(), true)?;
            p
        }
    };
    let report = dir.init(&InitOptions {
        dir: dir.path(),
        trust_domain: trust_domain.clone(),
        key_algorithm: KeyAlgorithm::P256,
        store: Backend::Redb,
        passphrase: &passphrase,
        root_validity: Duration::days(3650),
        intermediate_validity: Duration::days(365),
        now: OffsetDateTime::now_utc(),
    })?;
    println!("Created a new CA for local use in {}", dir.path().display());
    if generated {
        println!(
            "  WARNING: its key passphrase was generated into {}, beside the keys.\n  \
             That is fine on a laptop, not in production: there, run `agentca init` with a \
             passphrase kept elsewhere.",
            passphrase_path.display()
        );
    }
    let url = format!("https://{listen}");
    println!("  trust domain:      {trust_domain}");
    println!("  root fingerprint:  {}", report.root_fingerprint);
    println!("  admin token:       {}", report.admin_token_path.display());
    println!();
    println!("Next, in another terminal:");
    println!("  agentca register --tenant acme --env dev --agent hello --owner you@example.com --purpose \"trying agentca\"");
    println!(
        "  export AGENTCA_TOKEN=$(agentca token --tenant acme --env dev --agent hello --quiet)"
    );
    println!(
        "  agentca enroll --ca-url {url} --fingerprint {} --out-dir ./hello",
        report.root_fingerprint
    );
    println!("  openssl x509 -in ./hello/cert.pem -noout -text");
    println!();
    Ok((DataDir::new(dir.path()), passphrase))
}
