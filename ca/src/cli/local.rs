//! The CA `agentca serve` creates on its first run without a data
//! directory: a local one in the default location, for trying agentca.

use std::net::SocketAddr;
use std::path::Path;

use agentca::client::KeyAlgorithm;
use agentca::identity::TrustDomain;
use anyhow::Context;
use time::{Duration, OffsetDateTime};

use crate::datadir::{self, DataDir, InitOptions};
use crate::issuance::keys::Passphrase;
use crate::store::Backend;

/// Creates the local CA of `agentca serve`'s first run in `dir`, with a
/// passphrase generated into `passphrase_path` unless one is `explicit`.
/// The data directory, its passphrase and the new root's fingerprint.
pub(super) fn create_local(
    home: &Path,
    dir: &DataDir,
    explicit: Option<Passphrase>,
    passphrase_path: &Path,
    trust_domain: &str,
) -> anyhow::Result<(DataDir, Passphrase, Option<String>)> {
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
    println!("  trust domain:      {trust_domain}");
    println!("  root fingerprint:  {}", report.root_fingerprint);
    println!("  admin token:       {}", report.admin_token_path.display());
    println!();
    Ok((
        DataDir::new(dir.path()),
        passphrase,
        Some(report.root_fingerprint.to_string()),
    ))
}

/// What to do with a CA just created for local use, once it listens on
/// `local`.
pub(super) fn print_next_steps(local: SocketAddr, root_fingerprint: &str) {
    println!("Next, in another terminal:");
    println!("  agentca register --tenant acme --env dev --agent hello --owner you@example.com --purpose \"trying agentca\"");
    println!(
        "  export AGENTCA_TOKEN=$(agentca token --tenant acme --env dev --agent hello --quiet)"
    );
    println!(
        "  agentca enroll --ca-url https://{local} --fingerprint {root_fingerprint} --out-dir ./hello"
    );
    println!("  openssl x509 -in ./hello/cert.pem -noout -text");
    println!();
}
