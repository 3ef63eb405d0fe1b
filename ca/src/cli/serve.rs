//! `agentca serve`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use time::{Duration, OffsetDateTime};

use super::{default_data_dir, default_home, parse_duration};
use crate::authority::{Authority, Policy};
use crate::datadir::{self, DataDir};
use crate::http::server::Limits;
use crate::http::tls::{self, RenewalClientCert, ServerIdentity};
use crate::issuance::issuer::{Distribution, IssuingCa};
use crate::issuance::keys::Passphrase;
use crate::issuance::profile::ServerName;
use crate::metrics::Metrics;
use crate::revocation::{RevocationConfig, Revocations, RootCrlSource, RootSigner};
use crate::state::issuance_limit::IssuanceLimits;
use crate::state::{Ledger, Records};
use crate::store::{Location, Store, StoreChoice};

/// Trust domain of a CA created by `serve` for local use.
const LOCAL_TRUST_DOMAIN: &str = "agentca.local";

/// Where the passphrase comes from.
#[derive(Args, Debug, Clone)]
pub struct PassphraseSource {
    /// File holding the passphrase that encrypts the CA keys (at least 12
    /// bytes). Alternatively set AGENTCA_PASSPHRASE.
    #[arg(long, env = "AGENTCA_PASSPHRASE_FILE")]
    passphrase_file: Option<PathBuf>,
    /// Accept a passphrase file, data directory or key file that others
    /// than its owner may read (refused otherwise), for platforms that
    /// mount secrets so.
    #[arg(long, env = "AGENTCA_ALLOW_OPEN_PERMISSIONS")]
    allow_open_permissions: bool,
}

impl PassphraseSource {
    pub(super) fn explicit(&self) -> anyhow::Result<Option<Passphrase>> {
        if let Some(path) = &self.passphrase_file {
            self.check_private(path, false)?;
            return Ok(Some(Passphrase::from_file(path)?));
        }
        if let Some(value) = std::env::var_os("AGENTCA_PASSPHRASE") {
            let bytes = value.into_encoded_bytes();
            return Ok(Some(Passphrase::new(bytes)?));
        }
        Ok(None)
    }

    /// Refuses (unless allowed) a secret that others than its owner may
    /// read ([`datadir::check_private`]).
    fn check_private(&self, path: &Path, directory: bool) -> anyhow::Result<()> {
        if !self.allow_open_permissions {
            datadir::check_private(path, directory)?;
        }
        Ok(())
    }

    /// Refuses (unless allowed) a data directory, or CA key files in it,
    /// that others than its owner may read.
    pub(super) fn check_data_dir(&self, dir: &DataDir) -> anyhow::Result<()> {
        if dir.path().exists() {
            self.check_private(dir.path(), true)?;
        }
        for key in [dir.root_key(), dir.intermediate_key()] {
            if key.exists() {
                self.check_private(&key, false)?;
            }
        }
        Ok(())
    }
}

/// `agentca serve`.
#[derive(Args, Debug)]
pub struct ServeArgs {
    /// TOML file of settings: its keys are the long options below without
    /// the dashes (`max-ttl = "1h"`). The command line and environment
    /// variables override it.
    #[arg(long, env = "AGENTCA_CONFIG")]
    config: Option<PathBuf>,
    /// The CA's data directory. Without it, a local CA in the default
    /// location is used, and created on first run.
    #[arg(long, env = "AGENTCA_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// A PostgreSQL database that holds the CA (`postgres://…`, created by
    /// `agentca init --store <url>`): every replica given the same URL and
    /// passphrase serves the same CA. Without it, the CA in the data
    /// directory is served. Alternatively set AGENTCA_STORE.
    #[arg(long, env = "AGENTCA_STORE", hide_env_values = true)]
    store: Option<StoreChoice>,
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
    /// Most certificates issued to one agent (enrollments and renewals of
    /// all its instances) in one certificate lifetime; more are refused
    /// with 429 and Retry-After.
    #[arg(long, default_value_t = IssuanceLimits::DEFAULT.per_agent, value_parser = clap::value_parser!(u32).range(1..))]
    max_certs_per_agent: u32,
    /// Most renewals along one instance's chain in one certificate
    /// lifetime (an agent renewing at half-life needs 2).
    #[arg(long, default_value_t = IssuanceLimits::DEFAULT.renewals_per_instance, value_parser = clap::value_parser!(u32).range(1..))]
    max_renewals_per_instance: u32,
    /// A change of registration that grants more (a scope added, a longer
    /// lifetime) waits for a second admin's approval (`agentca approve`);
    /// what it takes away applies at once. In every tenant.
    #[arg(long)]
    review_promotions: bool,
    /// The same, in this tenant only (repeat for more).
    #[arg(long = "review-promotions-for", value_name = "TENANT")]
    review_tenants: Vec<String>,
    /// How long a change waits for approval before it lapses.
    #[arg(long, default_value = "24h", value_parser = parse_duration)]
    pending_ttl: Duration,
    /// TOML file of the receivers of security events (revocations, clone
    /// alerts, …, as signed Security Event Tokens): docs/security-events.md.
    #[arg(long, env = "AGENTCA_EVENT_RECEIVERS", value_name = "FILE")]
    event_receivers: Option<PathBuf>,
    /// Most open connections.
    #[arg(long, default_value_t = 4096)]
    max_connections: usize,
    /// Most open connections from one IP address.
    #[arg(long, default_value_t = 256)]
    max_connections_per_ip: usize,
    /// Longest wait for a request's headers, idle kept-alive time included:
    /// a connection that sends nothing for this long is closed.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    header_timeout: Duration,
    /// Longest time for one request once its headers are in, body
    /// included: a client that never finishes its body is cut off then.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    request_timeout: Duration,
    /// Most enroll and renew requests in progress at once; more are refused
    /// with 503 and Retry-After rather than queued.
    #[arg(long, default_value_t = crate::http::DEFAULT_MAX_ISSUING)]
    max_issuing: usize,
    /// Also serve CRLs and OCSP over plain HTTP on this address.
    #[arg(long, env = "AGENTCA_HTTP_LISTEN")]
    http_listen: Option<SocketAddr>,
    /// The CA's HTTPS base URL as agents and services reach it (default:
    /// https://<listen address>); leaves point at its /v1/crl and /v1/ocsp.
    #[arg(long, env = "AGENTCA_PUBLIC_URL")]
    public_url: Option<String>,
    /// The plain-HTTP base URL of CRLs and OCSP (default:
    /// http://<http-listen address>, when that is set); listed first in leaves.
    #[arg(long, env = "AGENTCA_PUBLIC_HTTP_URL")]
    public_http_url: Option<String>,
    /// Validity of each CRL (it is re-signed halfway through, and at once
    /// after each revocation).
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    crl_validity: Duration,
    /// Validity of each OCSP response.
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    ocsp_validity: Duration,
    /// How long records of expired certificates and tokens are kept (the
    /// audit trail keeps their history; an expired certificate's record
    /// keeps its serial, agent, instance, times and revocation, not the
    /// certificate).
    #[arg(long, default_value = "1h", value_parser = parse_duration)]
    retention: Duration,
    /// The embedded store's page cache, in MiB: the store's share of the
    /// CA's memory, whatever the store's size.
    #[arg(long, default_value_t = crate::store::DEFAULT_CACHE_BYTES / (1024 * 1024), value_parser = clap::value_parser!(u64).range(1..=1 << 20))]
    store_cache_mib: u64,
    #[command(flatten)]
    passphrase: PassphraseSource,
}

/// The CA `serve` serves: from its data directory, or from a shared store.
struct Opened {
    loaded: datadir::LoadedCa,
    material: crate::stored_ca::CaMaterial,
    store: Arc<dyn Store>,
    root_crl: RootCrlSource,
    /// Where, for the log.
    place: String,
    /// The new root's fingerprint, when this run created a local CA.
    created: Option<String>,
}

fn open_ca(args: &ServeArgs) -> anyhow::Result<Opened> {
    if let Some(StoreChoice::Postgres(url)) = &args.store {
        anyhow::ensure!(
            args.data_dir.is_none(),
            "--data-dir and a postgres:// --store name two different CAs: give one"
        );
        let passphrase = args.passphrase.explicit()?.context(
            "the CA keys need their passphrase: give --passphrase-file <file> or set AGENTCA_PASSPHRASE",
        )?;
        let store = crate::state::open_store(&Location::Postgres(url.clone()))
            .with_context(|| format!("cannot open the database {url}"))?;
        let material = crate::stored_ca::get(&*store)?.ok_or_else(|| {
            datadir::DataDirError::Stored(
                "it holds no CA; run `agentca init --store <url>` first".into(),
            )
        })?;
        let (loaded, root_key) = material.load(&passphrase)?;
        let root_crl = match root_key {
            Some(key) => RootCrlSource::Signer(Box::new(
                RootSigner::new(&loaded.root, key, None).map_err(anyhow::Error::msg)?,
            )),
            // The published one, if any, is served; it is re-signed where
            // the root key is kept.
            None => RootCrlSource::None,
        };
        return Ok(Opened {
            loaded,
            material,
            store,
            root_crl,
            place: url.to_string(),
            created: None,
        });
    }
    let (dir, passphrase, created) = open_or_create(args)?;
    args.passphrase.check_data_dir(&dir)?;
    let loaded = dir.load(&passphrase)?;
    let material = crate::stored_ca::CaMaterial::read_dir(&dir)?;
    if let Some(StoreChoice::Embedded(backend)) = &args.store {
        anyhow::ensure!(
            *backend == loaded.meta.store,
            "the CA in {} keeps its state in {}, not {backend}",
            dir.path().display(),
            loaded.meta.store
        );
    }
    let root_key = dir.load_root_key(&passphrase)?;
    drop(passphrase);
    let store = crate::state::open_store_with_cache(
        &Location::Embedded {
            backend: loaded.meta.store,
            dir: dir.path().to_owned(),
        },
        args.store_cache_mib.saturating_mul(1024 * 1024),
    )
    .with_context(|| format!("cannot open the store in {}", dir.path().display()))?;
    let root_crl = match root_key {
        Some(key) => RootCrlSource::Signer(Box::new(
            RootSigner::new(&loaded.root, key, Some(dir.root_crl())).map_err(anyhow::Error::msg)?,
        )),
        None => {
            tracing::warn!(
                "the root key is not in the data directory: the root CRL is served from root.crl \
                 and must be re-signed where the root key is kept"
            );
            RootCrlSource::File(dir.root_crl())
        }
    };
    Ok(Opened {
        place: format!("{} ({})", dir.path().display(), loaded.meta.store),
        loaded,
        material,
        store,
        root_crl,
        created,
    })
}

pub async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let receivers = match &args.event_receivers {
        Some(path) => crate::events::load(path)?,
        None => Vec::new(),
    };
    let Opened {
        loaded,
        material,
        store,
        root_crl,
        place,
        created,
    } = open_ca(&args)?;
    let policy = Policy {
        min_ttl: args.min_ttl,
        max_ttl: args.max_ttl,
        default_ttl: args.default_ttl,
        issuance_limits: IssuanceLimits {
            per_agent: args.max_certs_per_agent,
            renewals_per_instance: args.max_renewals_per_instance,
        },
        review: crate::authority::Review {
            all_tenants: args.review_promotions,
            tenants: args.review_tenants.clone(),
            pending_ttl: args.pending_ttl,
        },
        ..Policy::default()
    };
    policy.validate()?;
    anyhow::ensure!(
        args.crl_validity >= Duration::seconds(10),
        "--crl-validity must be at least 10s"
    );
    anyhow::ensure!(
        args.ocsp_validity >= Duration::seconds(10),
        "--ocsp-validity must be at least 10s"
    );
    anyhow::ensure!(
        args.retention >= Duration::ZERO,
        "--retention must not be negative"
    );
    anyhow::ensure!(
        args.header_timeout >= Duration::SECOND && args.request_timeout >= Duration::SECOND,
        "--header-timeout and --request-timeout must be at least 1s"
    );

    // Bind first: the URLs put in certificates name the actual ports.
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let local = listener.local_addr()?;
    let http_listener = match args.http_listen {
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen on {addr}"))?,
        ),
        None => None,
    };
    let http_local = http_listener.as_ref().map(|l| l.local_addr()).transpose()?;
    let mut bases = Vec::new();
    match (&args.public_http_url, http_local) {
        (Some(url), _) => bases.push(check_url(url, "http")?),
        (None, Some(addr)) => bases.push(format!("http://{}", host_port(addr, &args.server_names))),
        (None, None) => {}
    }
    bases.push(match &args.public_url {
        Some(url) => check_url(url, "https")?,
        None => format!("https://{}", host_port(local, &args.server_names)),
    });

    let ca = Arc::new(IssuingCa::new(
        loaded.trust_domain.clone(),
        loaded.root.clone(),
        loaded.intermediate,
        loaded.intermediate_key,
        Distribution::under(&bases),
    )?);
    let (committed_tx, committed_rx) = tokio::sync::mpsc::unbounded_channel();
    let metrics = Arc::new(Metrics::default());
    let writer = Ledger::start(store.clone(), Some(committed_tx), metrics.clone())?;
    let outbox = (store.clone(), writer.clone(), ca.clone(), metrics.clone());
    let records = Records::new(store);
    metrics.load_unexpired(records.unexpired_by_second(OffsetDateTime::now_utc())?);
    let revocations = Revocations::start(
        ca.clone(),
        records.clone(),
        writer.clone(),
        RevocationConfig {
            crl_validity: args.crl_validity,
            ocsp_validity: args.ocsp_validity,
            retention: args.retention,
            ..RevocationConfig::default()
        },
        root_crl,
        committed_rx,
        OffsetDateTime::now_utc(),
    )
    .await?;
    let authority = Arc::new(
        Authority::new(ca, policy, records, writer, revocations, metrics)?.with_material(material),
    );

    let mut names = vec![
        ServerName::Dns("localhost".into()),
        ServerName::Ip([127, 0, 0, 1].into()),
        ServerName::Ip(std::net::Ipv6Addr::LOCALHOST.into()),
    ];
    if !args.listen.ip().is_unspecified() && !names.contains(&ServerName::Ip(args.listen.ip())) {
        names.push(ServerName::Ip(args.listen.ip()));
    }
    for n in &args.server_names {
        if !names.contains(n) {
            names.push(n.clone());
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
                            tracing::info!(not_after = %agentca::rfc3339(cert.not_after), "server certificate rotated");
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

    // Summaries of refusals counted rather than recorded, once their
    // minute ends (and whatever is counted at shutdown, below).
    {
        let authority = authority.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(5));
            loop {
                tick.tick().await;
                authority
                    .write_refusal_summaries(OffsetDateTime::now_utc(), false)
                    .await;
            }
        });
    }

    let limits = Limits {
        max_connections: args.max_connections,
        max_connections_per_ip: args.max_connections_per_ip,
        header_read_timeout: args.header_timeout.unsigned_abs(),
        request_timeout: args.request_timeout.unsigned_abs(),
        ..Limits::default()
    };
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let (store, ledger, ca, metrics) = outbox;
    let sending = crate::events::start(receivers, store, ledger, ca, metrics, stop_rx.clone())?;
    let mut plain = None;
    if let Some(listener) = http_listener {
        let app = crate::http::public_router(authority.clone());
        let limits = limits.clone();
        let metrics = authority.metrics().clone();
        let mut stop = stop_rx.clone();
        plain = Some(tokio::spawn(async move {
            crate::http::server::serve(listener, None, app, limits, metrics, async move {
                let _ = stop.wait_for(|s| *s).await;
            })
            .await
        }));
    }
    tracing::info!(
        listen = %local,
        http_listen = %http_local.map_or_else(|| "none".to_owned(), |a| a.to_string()),
        trust_domain = %authority.trust_domain(),
        ca = %place,
        crl = %authority.ca().distribution().crl.join(" "),
        "agentca is serving"
    );
    if let Some(fingerprint) = &created {
        super::local::print_next_steps(local, fingerprint);
    }
    // Tests and scripts read these lines to learn the ports when listening on :0.
    if let Some(addr) = http_local {
        println!("agentca plain HTTP (CRL, OCSP) on http://{addr}");
    }
    println!("agentca listening on https://{local}");
    let metrics = authority.metrics().clone();
    crate::http::server::serve(
        listener,
        Some(Arc::new(tls_config)),
        crate::http::router(
            authority.clone(),
            crate::http::IssuanceLimit::new(args.max_issuing),
        ),
        limits,
        metrics,
        shutdown_signal(),
    )
    .await;
    let _ = stop_tx.send(true);
    if let Some(plain) = plain {
        let _ = plain.await;
    }
    sending.stopped().await;
    authority
        .write_refusal_summaries(OffsetDateTime::now_utc(), true)
        .await;
    tracing::info!("agentca stopped");
    Ok(())
}

/// `host:port` for URLs naming `addr`: a wildcard address is replaced by the
/// first configured server name, or localhost.
fn host_port(addr: SocketAddr, server_names: &[ServerName]) -> String {
    if !addr.ip().is_unspecified() {
        return addr.to_string();
    }
    let host = match server_names.first() {
        Some(ServerName::Dns(d)) => d.clone(),
        Some(ServerName::Ip(std::net::IpAddr::V6(ip))) => format!("[{ip}]"),
        Some(ServerName::Ip(ip)) => ip.to_string(),
        None => "localhost".into(),
    };
    format!("{host}:{}", addr.port())
}

fn check_url(url: &str, scheme: &str) -> anyhow::Result<String> {
    let parsed = reqwest::Url::parse(url).with_context(|| format!("{url:?} is not a URL"))?;
    anyhow::ensure!(
        parsed.scheme() == scheme && parsed.host().is_some() && parsed.query().is_none(),
        "{url:?} must be a {scheme}:// URL without a query"
    );
    Ok(url.trim_end_matches('/').to_owned())
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
/// The data directory and its passphrase; with the new root's fingerprint
/// when this call created a local CA.
fn open_or_create(args: &ServeArgs) -> anyhow::Result<(DataDir, Passphrase, Option<String>)> {
    let explicit = args.passphrase.explicit()?;
    if let Some(path) = &args.data_dir {
        let dir = DataDir::new(path);
        dir.read_meta()?;
        let passphrase = explicit.context(
            "the CA keys need their passphrase: give --passphrase-file <file> or set AGENTCA_PASSPHRASE",
        )?;
        return Ok((dir, passphrase, None));
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
        return Ok((dir, passphrase, None));
    }
    super::local::create_local(&home, &dir, explicit, &local_passphrase, &args.trust_domain)
}
