//! An HTTPS service that only agents may call.
//!
//! It requires an agentca client certificate, verifies it with
//! `agentca::verify` (chain, X.509-SVID rules, allowed tenants, revocation
//! kept current from the CA's feed), and answers `GET /whoami` with the
//! caller's identity as JSON. `GET /tickets` also needs the `tickets:read`
//! scope (`agentca register --scope tickets:read`), and `POST /tickets`
//! the `tickets:write` scope. A scope withdrawn from the agent's
//! registration (`agentca update`) or blocked (`agentca scope block`) is
//! refused within a second, from the same feed, while the agent's other
//! scopes keep working.
//!
//! ```text
//! cargo run --example service --features axum,feed -- \
//!     --cert service/cert.pem --key service/key.pem --bundle service/bundle.pem \
//!     --trust-domain agentca.local --ca-url https://127.0.0.1:8443 --allow-tenant acme
//! ```
//!
//! Its own certificate can be an agent's (`agentca enroll`): agentca
//! certificates carry both the clientAuth and serverAuth usages. It lives
//! minutes: keep the files current with `agentca run --out-dir svc` and
//! give `--cert svc/cert.pem --key svc/key.pem`; the service reads them
//! again when they change. Refused callers are logged with the reason, a
//! few a minute (`RUST_LOG` sets the level; `info` by default).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use agentca::bundle::TrustBundle;
use agentca::identity::TrustDomain;
use agentca::verify::reload::CertificateFiles;
use agentca::verify::serve::{require_scope, serve, Peer};
use agentca::verify::{feed, PeerIdentity, RevocationCache, Verifier};
use anyhow::Context;
use axum::handler::Handler;
use axum::routing::get;
use axum::{Json, Router};
use clap::Parser;

#[derive(Parser)]
#[command(about = "An HTTPS service that requires agentca client certificates")]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:9443")]
    listen: SocketAddr,
    /// The service's certificate chain (PEM).
    #[arg(long)]
    cert: PathBuf,
    /// The service's private key (PEM).
    #[arg(long)]
    key: PathBuf,
    /// The agentca trust bundle (PEM).
    #[arg(long)]
    bundle: PathBuf,
    /// The trust domain of the agents to accept.
    #[arg(long)]
    trust_domain: String,
    /// The CA's URL, for its revocation feed.
    #[arg(long)]
    ca_url: String,
    /// Accept agents of this tenant only (repeatable; all when absent).
    #[arg(long = "allow-tenant")]
    allow_tenants: Vec<String>,
    /// Refuse callers when revocation data is older than this, in seconds.
    #[arg(long, default_value_t = 60)]
    max_staleness: i64,
    /// Accept callers even when revocation data is stale.
    #[arg(long)]
    fail_open: bool,
}

async fn whoami(Peer(peer): Peer) -> Json<PeerIdentity> {
    Json(peer)
}

async fn tickets(Peer(peer): Peer) -> String {
    format!("tickets for {}\n", peer.spiffe_id)
}

async fn create_ticket(Peer(peer): Peer) -> String {
    format!("ticket created by {}\n", peer.spiffe_id)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let bundle_pem = std::fs::read(&args.bundle)
        .with_context(|| format!("reading {}", args.bundle.display()))?;
    let bundle = TrustBundle::from_pem(&bundle_pem)?;

    // The revocation cache, kept current from the CA's live feed.
    let revocations = RevocationCache::new();
    let subscription = feed::subscribe(&args.ca_url, bundle.clone(), revocations.clone())?;
    // Until the cache is in sync every caller would be refused: wait for it.
    if !subscription
        .synced(std::time::Duration::from_secs(10))
        .await
    {
        eprintln!(
            "service: the CA's revocation data is not reachable yet; refusing callers until it is"
        );
    }

    let mut builder = Verifier::builder(bundle, TrustDomain::new(&args.trust_domain)?)
        .revocation(revocations)
        .max_staleness(time::Duration::seconds(args.max_staleness));
    for tenant in &args.allow_tenants {
        builder = builder.allow_tenant(tenant);
    }
    if args.fail_open {
        builder = builder.fail_open_when_stale();
    }
    let verifier = builder.build()?;

    // This service's own certificate, read again whenever the files change.
    let files = CertificateFiles::load(&args.cert, &args.key)?;
    let _watch = files.watch(std::time::Duration::from_secs(2));
    let tls = verifier.server_config_with(files)?;

    let app = Router::new()
        .route(
            "/tickets",
            get(tickets.layer(require_scope("tickets:read")))
                .post(create_ticket.layer(require_scope("tickets:write"))),
        )
        .route("/whoami", get(whoami));
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    println!("service listening on https://{}", listener.local_addr()?);
    serve(listener, Arc::new(tls), verifier, app, async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await;
    Ok(())
}
