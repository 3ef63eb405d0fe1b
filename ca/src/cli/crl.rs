//! `agentca crl`: the CA's CRLs in one PEM file for a TLS terminator
//! (nginx `ssl_crl`, HAProxy `crl-file`), kept fresh.
//!
//! Such peers check a client's whole chain against the CRLs they loaded and
//! refuse everyone once a loaded CRL passes its nextUpdate, so the file
//! must be replaced before that, and the peer told. Each refresh fetches
//! the intermediate's and the root's CRL, checks each (signed by its CA,
//! that CA in the trust bundle, current), writes them atomically (a new
//! file renamed over the old, synced) when they changed, and runs `--exec`.
//! A CRL that does not check is never written: the file keeps the last
//! good one, and the failure is logged.

use std::path::PathBuf;

use agentca::bundle::TrustBundle;
use agentca::client::CaClient;
use agentca::verify::RevocationCache;
use anyhow::Context;
use clap::Args;
use time::{Duration, OffsetDateTime};

use super::{parse_duration, CaConnection};

/// Largest CRL read.
const MAX_CRL: usize = 32 * 1024 * 1024;

/// `agentca crl`.
#[derive(Args, Debug)]
pub struct CrlArgs {
    #[command(flatten)]
    ca: CaConnection,
    /// The PEM file to keep: the intermediate's CRL, then the root's.
    #[arg(long)]
    out: PathBuf,
    /// Keep refreshing it, every --interval, until stopped.
    #[arg(long)]
    watch: bool,
    /// How often to refresh with --watch (keep it well under the CA's
    /// --crl-validity, 5 minutes by default).
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    interval: Duration,
    /// Run this command (with `sh -c`) after each write, such as
    /// `nginx -s reload`; AGENTCA_CRL names the file.
    #[arg(long)]
    exec: Option<String>,
}

pub async fn crl(args: CrlArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.interval >= Duration::seconds(1),
        "--interval must be at least 1 second"
    );
    let client = CaClient::new(&args.ca.urls.list(), args.ca.trust()?, None)?;
    let bundle = client
        .bundle()
        .await
        .context("fetching the CA's trust bundle")?;
    if !args.watch {
        refresh(&client, &bundle, &args).await?;
        return Ok(());
    }
    let mut failures = 0u32;
    loop {
        match refresh(&client, &bundle, &args).await {
            Ok(_) => failures = 0,
            Err(e) => {
                failures += 1;
                tracing::warn!(error = %format!("{e:#}"), failures, file = %args.out.display(), "could not refresh the CRLs; the file keeps the last good ones");
            }
        }
        tokio::select! {
            () = tokio::time::sleep(args.interval.unsigned_abs()) => {}
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
    }
}

/// Fetches, checks and writes the CRLs if they changed; runs `--exec`
/// after a write. Returns whether it wrote.
async fn refresh(client: &CaClient, bundle: &TrustBundle, args: &CrlArgs) -> anyhow::Result<bool> {
    let now = OffsetDateTime::now_utc();
    let intermediates = client
        .download("/v1/intermediates", None, MAX_CRL)
        .await
        .context("fetching the issuing CA's certificate")?;
    let intermediate = agentca::certs_from_pem(&intermediates)?
        .into_iter()
        .next()
        .context("the CA sent no issuing CA certificate")?;
    let crl = client
        .download("/v1/crl", None, MAX_CRL)
        .await
        .context("fetching the issuing CA's CRL")?;
    let root_crl = client
        .download("/v1/crl/root", None, MAX_CRL)
        .await
        .context("fetching the root's CRL")?;
    // Checked as a verifier would before a byte is written.
    let check = RevocationCache::new();
    check
        .load_crl(&crl, &intermediate, bundle, now)
        .context("the issuing CA's CRL does not check")?;
    let root_checked = bundle
        .roots()
        .iter()
        .any(|root| check.load_crl(&root_crl, root, bundle, now).is_ok());
    anyhow::ensure!(
        root_checked,
        "the root's CRL is not signed by a root of the trust bundle, or not current"
    );
    let text = format!(
        "{}{}",
        pem::encode(&pem::Pem::new("X509 CRL", crl)),
        pem::encode(&pem::Pem::new("X509 CRL", root_crl))
    );
    if std::fs::read_to_string(&args.out).ok().as_deref() == Some(text.as_str()) {
        return Ok(false);
    }
    // Written beside it and renamed over it: a reader sees the old file or
    // the new one, never a part.
    crate::datadir::write_file(&args.out, text.as_bytes(), false)?;
    tracing::info!(file = %args.out.display(), "CRLs written");
    if let Some(cmd) = &args.exec {
        super::run_hook(cmd, "AGENTCA_CRL", &args.out);
    }
    Ok(true)
}
