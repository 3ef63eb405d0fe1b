//! `agentca verify`: check a certificate chain offline, as a service would.

use std::path::PathBuf;

use agentca::bundle::TrustBundle;
use agentca::identity::TrustDomain;
use agentca::verify::{RevocationCache, Usage, Verifier};
use anyhow::Context;
use clap::Args;
use time::OffsetDateTime;

/// `agentca verify`.
#[derive(Args, Debug)]
pub struct VerifyArgs {
    /// PEM chain to check: the leaf first, then intermediates.
    chain: PathBuf,
    /// The trust bundle (PEM roots).
    #[arg(long)]
    bundle: PathBuf,
    /// The trust domain the identity must be in.
    #[arg(long)]
    trust_domain: String,
    /// A CRL (DER or PEM) of the chain's issuer: refuse a revoked leaf.
    /// Without it, revocation is not checked.
    #[arg(long)]
    crl: Option<PathBuf>,
    /// Accept only these tenants (repeatable).
    #[arg(long = "allow-tenant")]
    tenants: Vec<String>,
    /// Accept only these environments (repeatable).
    #[arg(long = "allow-env")]
    envs: Vec<String>,
    /// Accept only these agent names (repeatable).
    #[arg(long = "allow-agent")]
    agents: Vec<String>,
    /// Check the certificate for server use instead of client use.
    #[arg(long)]
    server: bool,
}

fn read(path: &PathBuf) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
}

pub fn verify(args: VerifyArgs) -> anyhow::Result<()> {
    let now = OffsetDateTime::now_utc();
    let bundle = TrustBundle::from_pem(&read(&args.bundle)?)?;
    let chain = agentca::certs_from_pem(read(&args.chain)?).context("the chain is not PEM")?;
    anyhow::ensure!(
        !chain.is_empty(),
        "{} holds no certificate",
        args.chain.display()
    );

    let mut builder = Verifier::builder(bundle.clone(), TrustDomain::new(&args.trust_domain)?);
    match &args.crl {
        Some(path) => {
            let bytes = read(path)?;
            let der = match pem::parse(&bytes) {
                Ok(block) if block.tag() == "X509 CRL" => block.into_contents(),
                _ => bytes,
            };
            let cache = RevocationCache::new();
            let issuers = chain[1..].iter().chain(bundle.roots());
            let mut last_error = None;
            for issuer in issuers {
                match cache.load_crl(&der, issuer, &bundle, now) {
                    Ok(_) => {
                        last_error = None;
                        break;
                    }
                    Err(e) => last_error = Some(e),
                }
            }
            if let Some(e) = last_error {
                anyhow::bail!("the CRL cannot be used: {e}");
            }
            builder = builder.revocation(cache);
        }
        None => {
            eprintln!("agentca: revocation not checked (no --crl)");
            builder = builder.without_revocation_checks();
        }
    }
    for t in &args.tenants {
        builder = builder.allow_tenant(t);
    }
    for e in &args.envs {
        builder = builder.allow_env(e);
    }
    for a in &args.agents {
        builder = builder.allow_agent(a);
    }
    let verifier = builder.build()?;
    let usage = if args.server {
        Usage::Server
    } else {
        Usage::Client
    };
    let peer = verifier
        .verify_peer(&chain, usage, now)
        .map_err(|e| anyhow::anyhow!("refused: {e}"))?;
    println!("{}", serde_json::to_string_pretty(&peer)?);
    Ok(())
}
