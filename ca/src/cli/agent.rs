//! The one-shot agent commands: `agentca enroll` and `agentca renew`.
//!
//! Both write, in an output directory: `cert.pem` (leaf, then the issuing
//! intermediate), `key.pem` (the private key, 0600, generated here and never
//! sent) and `bundle.pem` (the CA's trust bundle).
//!
//! A renewal may happen only once per certificate, so `renew` keeps a
//! journal (`renewal.json`, 0600): the new key and CSR are written there
//! before the request is sent, and the issued certificate after it comes
//! back, before `cert.pem` and `key.pem` are replaced. A renewal interrupted
//! at any point is completed by running `renew` again, with the same key and
//! CSR, so the CA sees a retry and not a clone.

use std::path::{Path, PathBuf};

use agentca::client::{
    check_issued, CaClient, CaTrust, ClientError, Credentials, KeyAlgorithm, PrivateKey,
};
use agentca::wire::{IssuedCertificate, Serial};
use anyhow::Context;
use clap::Args;
use serde::{Deserialize, Serialize};

use super::{read_secret_file, CaConnection};
use crate::datadir::{create_private_dir, write_file};

const CERT: &str = "cert.pem";
const KEY: &str = "key.pem";
const BUNDLE: &str = "bundle.pem";
const JOURNAL: &str = "renewal.json";

/// `agentca enroll`.
#[derive(Args, Debug)]
pub struct EnrollArgs {
    #[command(flatten)]
    ca: CaConnection,
    /// File holding the bootstrap token. Alternatively set AGENTCA_TOKEN.
    #[arg(long, env = "AGENTCA_TOKEN_FILE")]
    token_file: Option<PathBuf>,
    /// Directory to write cert.pem, key.pem and bundle.pem to.
    #[arg(long, default_value = ".")]
    out_dir: PathBuf,
    /// Key algorithm: p256, p384 or ed25519.
    #[arg(long, default_value = "p256")]
    key_alg: KeyAlgorithm,
}

pub async fn enroll(args: EnrollArgs) -> anyhow::Result<()> {
    let token = match &args.token_file {
        Some(path) => read_secret_file(path)?,
        None => std::env::var("AGENTCA_TOKEN")
            .map(|t| t.trim().to_owned())
            .map_err(|_| {
                anyhow::anyhow!("no bootstrap token: give --token-file <file> or set AGENTCA_TOKEN")
            })?,
    };
    let client = CaClient::new(&args.ca.ca_url, args.ca.trust()?, None)?;
    let bundle = client
        .bundle()
        .await
        .context("fetching the CA's trust bundle")?;
    let key = PrivateKey::generate(args.key_alg)?;
    let issued = client.enroll(&token, &key.csr_pem()?).await?;
    check_issued(&issued, &key)?;

    create_private_dir(&args.out_dir)?;
    write_file(
        &args.out_dir.join(BUNDLE),
        bundle.to_pem().as_bytes(),
        false,
    )?;
    write_file(&args.out_dir.join(KEY), key.to_pem().as_bytes(), true)?;
    write_file(
        &args.out_dir.join(CERT),
        issued.certificate_chain.as_bytes(),
        false,
    )?;
    report("enrolled", &issued, &args.out_dir);
    Ok(())
}

/// `agentca renew`.
#[derive(Args, Debug)]
pub struct RenewArgs {
    /// The CA's URL.
    #[arg(long, env = "AGENTCA_URL", default_value = "https://127.0.0.1:8443")]
    ca_url: String,
    /// Directory holding cert.pem, key.pem and bundle.pem; they are replaced.
    #[arg(long, default_value = ".")]
    out_dir: PathBuf,
    /// Algorithm of the new key: p256, p384 or ed25519.
    #[arg(long, default_value = "p256")]
    key_alg: KeyAlgorithm,
}

/// A renewal in progress.
#[derive(Serialize, Deserialize)]
struct Journal {
    /// Serial of the certificate being renewed.
    for_serial: Serial,
    /// The new key (PKCS#8 PEM).
    key_pem: String,
    /// The CSR sent for it.
    csr_pem: String,
    /// The certificate the CA issued, once it answered.
    #[serde(default)]
    issued: Option<IssuedCertificate>,
}

pub async fn renew(args: RenewArgs) -> anyhow::Result<()> {
    let dir = &args.out_dir;
    let read = |name: &str| {
        std::fs::read_to_string(dir.join(name))
            .with_context(|| format!("cannot read {}", dir.join(name).display()))
    };
    let bundle_pem = read(BUNDLE)?;
    let bundle = agentca::bundle::TrustBundle::from_pem(bundle_pem.as_bytes())?;
    let journal_path = dir.join(JOURNAL);

    let mut journal = read_journal(&journal_path)?;
    if let Some(j) = &journal {
        if let Some(issued) = &j.issued {
            // The CA answered last time but the files were not all replaced.
            let key = PrivateKey::from_pem(&j.key_pem)?;
            install(dir, &key, issued, &journal_path)?;
            report("renewal completed", issued, dir);
            return Ok(());
        }
    }

    let current = Credentials::from_pem(&read(CERT)?, PrivateKey::from_pem(&read(KEY)?)?)
        .context("cert.pem and key.pem do not belong together")?;
    let current_serial = leaf_serial(&current.chain[0])?;
    if journal
        .as_ref()
        .is_some_and(|j| j.for_serial != current_serial)
    {
        // Left over from a renewal of an older certificate.
        journal = None;
    }
    let journal = match journal {
        Some(j) => {
            eprintln!(
                "agentca: resuming the interrupted renewal of {current_serial} with the same key"
            );
            j
        }
        None => {
            let key = PrivateKey::generate(args.key_alg)?;
            let j = Journal {
                for_serial: current_serial,
                csr_pem: key.csr_pem()?,
                key_pem: key.to_pem(),
                issued: None,
            };
            write_journal(&journal_path, &j)?;
            j
        }
    };

    let client = CaClient::new(&args.ca_url, CaTrust::Bundle(bundle), Some(current))?;
    let issued = match client.renew(&journal.csr_pem).await {
        Ok(issued) => issued,
        Err(e @ ClientError::Refused { status, .. }) if (400..500).contains(&status) => {
            // A definite no: the pending key will never be certified.
            let _ = std::fs::remove_file(&journal_path);
            return Err(e.into());
        }
        Err(e) => return Err(anyhow::Error::from(e).context(
            "the renewal did not complete; run `agentca renew` again to retry with the same key",
        )),
    };
    let key = PrivateKey::from_pem(&journal.key_pem)?;
    check_issued(&issued, &key)?;
    let done = Journal {
        issued: Some(issued.clone()),
        ..journal
    };
    write_journal(&journal_path, &done)?;
    install(dir, &key, &issued, &journal_path)?;
    report("renewed", &issued, dir);
    Ok(())
}

fn install(
    dir: &Path,
    key: &PrivateKey,
    issued: &IssuedCertificate,
    journal: &Path,
) -> anyhow::Result<()> {
    write_file(&dir.join(KEY), key.to_pem().as_bytes(), true)?;
    write_file(&dir.join(CERT), issued.certificate_chain.as_bytes(), false)?;
    std::fs::remove_file(journal)
        .with_context(|| format!("cannot remove {}", journal.display()))?;
    Ok(())
}

fn read_journal(path: &Path) -> anyhow::Result<Option<Journal>> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(Some(serde_json::from_slice(&bytes).with_context(|| {
            format!(
                "{} is damaged; remove it to start a new renewal",
                path.display()
            )
        })?)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(anyhow::anyhow!("cannot read {}: {e}", path.display())),
    }
}

fn write_journal(path: &Path, journal: &Journal) -> anyhow::Result<()> {
    write_file(path, &serde_json::to_vec(journal)?, true)?;
    Ok(())
}

fn leaf_serial(der: &[u8]) -> anyhow::Result<Serial> {
    use x509_parser::prelude::FromDer;
    let (_, cert) = x509_parser::certificate::X509Certificate::from_der(der)
        .map_err(|e| anyhow::anyhow!("cert.pem does not parse: {e}"))?;
    Ok(Serial::from_bytes(cert.raw_serial())?)
}

fn report(what: &str, issued: &IssuedCertificate, dir: &Path) {
    let until = issued
        .not_after
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    println!("{what}: {}", issued.spiffe_id);
    println!("  instance: {}", issued.instance_id);
    println!("  serial:   {}", issued.serial);
    println!("  valid to: {until}");
    println!("  files:    {}/{{{CERT},{KEY},{BUNDLE}}}", dir.display());
}
