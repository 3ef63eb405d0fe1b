//! `agentca ca info`: what a CA is, from its data directory: the trust
//! domain, the root's fingerprint (what a new agent pins), each CA
//! certificate's key type and validity, and the store.

use std::path::{Path, PathBuf};

use agentca::bundle::Fingerprint;
use anyhow::Context;
use clap::{Args, Subcommand};
use serde::Serialize;
use time::OffsetDateTime;

use super::default_data_dir;
use crate::datadir::DataDir;

/// `agentca ca`.
#[derive(Args, Debug)]
pub struct CaArgs {
    #[command(subcommand)]
    command: CaCommand,
}

#[derive(Subcommand, Debug)]
enum CaCommand {
    /// Show the trust domain, the root's fingerprint (what agents pin with
    /// --fingerprint), the CA certificates' key types and validity, and
    /// the store, read from the data directory.
    Info {
        /// The CA's data directory (default: the local CA).
        #[arg(long, env = "AGENTCA_DATA_DIR")]
        data_dir: Option<PathBuf>,
        /// `table` (for people) or `json` (for scripts).
        #[arg(long, default_value = "table", value_parser = ["table", "json"])]
        format: String,
    },
}

/// One CA certificate, as `ca info` shows it.
#[derive(Debug, Serialize)]
struct CertInfo {
    subject: String,
    /// SHA-256 of the certificate (DER), as `--fingerprint` takes it.
    fingerprint: String,
    key: String,
    #[serde(with = "time::serde::rfc3339")]
    not_before: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    not_after: OffsetDateTime,
}

/// What `ca info` shows.
#[derive(Debug, Serialize)]
struct Info {
    data_dir: PathBuf,
    trust_domain: String,
    store: String,
    #[serde(with = "time::serde::rfc3339")]
    created_at: OffsetDateTime,
    root: CertInfo,
    intermediate: CertInfo,
    /// Whether the root's key is in the data directory (it signs the
    /// root's CRL; it may be moved offline).
    root_key_present: bool,
}

pub fn ca(args: CaArgs) -> anyhow::Result<()> {
    match args.command {
        CaCommand::Info { data_dir, format } => {
            let dir = DataDir::new(data_dir.unwrap_or_else(default_data_dir));
            let info = read(&dir)?;
            if format == "json" {
                println!("{}", serde_json::to_string_pretty(&info)?);
            } else {
                print_table(&info);
            }
            Ok(())
        }
    }
}

fn read(dir: &DataDir) -> anyhow::Result<Info> {
    anyhow::ensure!(
        dir.exists(),
        "{} holds no CA: give --data-dir (or AGENTCA_DATA_DIR), or create one with `agentca init` or `agentca serve`",
        dir.path().display()
    );
    let meta = dir
        .read_meta()
        .with_context(|| format!("reading {}", dir.meta().display()))?;
    Ok(Info {
        data_dir: dir.path().to_owned(),
        trust_domain: meta.trust_domain,
        store: format!("{:?}", meta.store).to_lowercase(),
        created_at: meta.created_at,
        root: cert_info(&dir.root_cert())?,
        intermediate: cert_info(&dir.intermediate_cert())?,
        root_key_present: dir.root_key().exists(),
    })
}

fn cert_info(path: &Path) -> anyhow::Result<CertInfo> {
    let pem_text =
        std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let der = agentca::certs_from_pem(&pem_text)
        .with_context(|| format!("{} is not a PEM certificate", path.display()))?
        .into_iter()
        .next()
        .with_context(|| format!("{} holds no certificate", path.display()))?;
    let (_, cert) = x509_parser::parse_x509_certificate(&der)
        .map_err(|e| anyhow::anyhow!("{} does not parse: {e}", path.display()))?;
    let key = crate::issuance::csr::key_name(cert.public_key());
    Ok(CertInfo {
        subject: cert.subject().to_string(),
        fingerprint: Fingerprint::of(&der).to_string(),
        key,
        not_before: cert.validity().not_before.to_datetime(),
        not_after: cert.validity().not_after.to_datetime(),
    })
}

fn print_table(info: &Info) {
    let when = agentca::rfc3339;
    println!("data directory:    {}", info.data_dir.display());
    println!("trust domain:      {}", info.trust_domain);
    println!("store:             {}", info.store);
    println!("created:           {}", when(info.created_at));
    println!("root fingerprint:  {}", info.root.fingerprint);
    for (name, c) in [("root", &info.root), ("intermediate", &info.intermediate)] {
        println!("{name}:");
        println!("  subject:         {}", c.subject);
        println!("  key:             {}", c.key);
        println!(
            "  valid:           {} to {}",
            when(c.not_before),
            when(c.not_after)
        );
        println!("  fingerprint:     {}", c.fingerprint);
    }
    println!(
        "root key:          {}",
        if info.root_key_present {
            "in the data directory"
        } else {
            "not here (offline)"
        }
    );
    println!();
    println!(
        "An agent pins this CA with: agentca enroll --ca-url https://<ca>:8443 --fingerprint {}",
        info.root.fingerprint
    );
}
