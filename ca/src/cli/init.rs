//! `agentca init`: a new CA, in a data directory or a shared database.

use std::path::PathBuf;

use agentca::client::KeyAlgorithm;
use agentca::identity::TrustDomain;
use anyhow::Context;
use clap::Args;
use time::{Duration, OffsetDateTime};

use super::serve::PassphraseSource;
use super::{default_data_dir, parse_duration};
use crate::datadir::{self, DataDir, InitOptions};
use crate::store::{Backend, Location, StoreChoice};

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
    /// Where the CA's state is kept: redb (default; syncs every commit) or
    /// sled, in the data directory; or a PostgreSQL database that several
    /// replicas share, `postgres://user:password@host/db` (see
    /// docs/high-availability.md). Alternatively set AGENTCA_STORE.
    #[arg(
        long,
        env = "AGENTCA_STORE",
        hide_env_values = true,
        default_value = "redb"
    )]
    store: StoreChoice,
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
    args.passphrase.check_data_dir(&dir)?;
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
    let opts = InitOptions {
        dir: dir.path(),
        trust_domain: trust_domain.clone(),
        key_algorithm: args.key_alg,
        store: match &args.store {
            StoreChoice::Embedded(backend) => *backend,
            StoreChoice::Postgres(_) => Backend::Postgres,
        },
        passphrase: &passphrase,
        root_validity: args.root_validity,
        intermediate_validity: args.intermediate_validity,
        now: OffsetDateTime::now_utc(),
    };
    let (fingerprint, admin_token) = match &args.store {
        StoreChoice::Embedded(_) => {
            let report = dir.init(&opts)?;
            println!(
                "Created a CA for trust domain {trust_domain} in {}",
                dir.path().display()
            );
            (report.root_fingerprint, report.admin_token_path)
        }
        StoreChoice::Postgres(url) => {
            // The operator's copies go to the data directory: check it
            // before creating anything.
            anyhow::ensure!(
                !dir.exists() && !dir.admin_token().exists(),
                "{} already holds a CA or an admin token; give another --data-dir for this \
                 CA's trust bundle and first admin token",
                dir.path().display()
            );
            let store = crate::state::open_store(&Location::Postgres(url.clone()))
                .with_context(|| format!("cannot open the database {url}"))?;
            let created = datadir::Created::new(&opts)?;
            crate::stored_ca::init(&*store, &created, &opts)?;
            dir.write_outputs(&created)?;
            println!("Created a CA for trust domain {trust_domain} in the database {url}");
            (created.root_fingerprint(), dir.admin_token())
        }
    };
    println!("  root fingerprint (SHA-256): {fingerprint}");
    println!("  trust bundle:               {}", dir.bundle().display());
    println!(
        "  first admin token:          {} (keep it secret)",
        admin_token.display()
    );
    println!("  store:                      {}", args.store);
    Ok(())
}
