//! Where the database is: a `postgres://` URL, and TLS to it through
//! rustls.
//!
//! The URL is libpq's (`postgres://user:password@host:port/db?options`),
//! read by tokio-postgres, with one addition: `sslrootcert=<file>` names
//! the PEM certificates that the database server's certificate must chain
//! to. With it, the connection is TLS (rustls, aws-lc-rs) and the server's
//! certificate and name are verified; `sslmode=require` without it is
//! refused, because TLS to a server nobody verifies protects nothing.
//! Without either, the connection is plain, which is only fit for a
//! database on the same host or a private network.
//!
//! The password never appears in what is printed or logged
//! ([`PostgresUrl`]'s `Display` hides it).

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use tokio_postgres::config::SslMode;

use super::{db, err};
use crate::store::StoreError;

/// Most bytes of a URL.
const MAX_URL_BYTES: usize = 4096;

/// A PostgreSQL connection URL.
#[derive(Clone)]
pub struct PostgresUrl {
    config: tokio_postgres::Config,
    roots: Option<PathBuf>,
    shown: String,
}

impl PostgresUrl {
    /// The connection settings.
    pub fn config(&self) -> &tokio_postgres::Config {
        &self.config
    }

    /// The TLS connector for this URL: rustls with the `sslrootcert`
    /// certificates as roots. Without them, the URL's `sslmode` is
    /// `disable` and the connector is never used.
    pub(super) fn tls(&self) -> Result<Tls, StoreError> {
        let mut roots = rustls::RootCertStore::empty();
        if let Some(path) = &self.roots {
            add_roots(&mut roots, path)?;
        }
        let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(db)?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
    }
}

/// The connector of every URL (see [`PostgresUrl::tls`]).
pub(super) type Tls = tokio_postgres_rustls::MakeRustlsConnect;

/// Adds the certificates of the PEM file `path` to `roots`.
fn add_roots(roots: &mut rustls::RootCertStore, path: &std::path::Path) -> Result<(), StoreError> {
    let pem =
        std::fs::read(path).map_err(|e| err(format!("sslrootcert {}: {e}", path.display())))?;
    for block in
        pem::parse_many(&pem).map_err(|e| err(format!("sslrootcert {}: {e}", path.display())))?
    {
        if block.tag() == "CERTIFICATE" {
            roots
                .add(block.into_contents().into())
                .map_err(|e| err(format!("sslrootcert {}: {e}", path.display())))?;
        }
    }
    if roots.is_empty() {
        return Err(err(format!(
            "sslrootcert {} holds no certificate",
            path.display()
        )));
    }
    Ok(())
}

impl fmt::Display for PostgresUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.shown)
    }
}

impl fmt::Debug for PostgresUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PostgresUrl({})", self.shown)
    }
}

impl FromStr for PostgresUrl {
    type Err = String;

    fn from_str(url: &str) -> Result<Self, String> {
        if url.len() > MAX_URL_BYTES {
            return Err(format!("a database URL is at most {MAX_URL_BYTES} bytes"));
        }
        let parsed = reqwest::Url::parse(url).map_err(|e| format!("not a URL: {e}"))?;
        if !matches!(parsed.scheme(), "postgres" | "postgresql") {
            return Err("a database URL starts with postgres://".into());
        }
        let mut shown = parsed.clone();
        if shown.password().is_some() {
            let _ = shown.set_password(Some("********"));
        }
        // `sslrootcert` is ours: tokio-postgres does not know it.
        let mut roots = None;
        let mut rest = parsed.clone();
        let kept: Vec<(String, String)> = parsed
            .query_pairs()
            .filter(|(k, v)| {
                if k == "sslrootcert" {
                    roots = Some(PathBuf::from(v.as_ref()));
                    false
                } else {
                    true
                }
            })
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        rest.set_query(None);
        if !kept.is_empty() {
            rest.query_pairs_mut().extend_pairs(kept);
        }
        let config = tokio_postgres::Config::from_str(rest.as_str()).map_err(|e| {
            // Its message may quote the URL: say what, not where.
            format!("not a PostgreSQL URL ({})", shown_error(&e.to_string()))
        })?;
        if config.get_hosts().is_empty() {
            return Err("the database URL names no host".into());
        }
        match (config.get_ssl_mode(), &roots) {
            (SslMode::Disable, Some(_)) => {
                return Err("sslmode=disable with sslrootcert: choose one".into())
            }
            (SslMode::Require, None) => {
                return Err(
                    "sslmode=require needs sslrootcert=<file>: the certificates the database \
                     server's certificate must chain to"
                        .into(),
                )
            }
            _ => {}
        }
        let mut config = config;
        if roots.is_some() {
            config.ssl_mode(SslMode::Require);
        } else {
            config.ssl_mode(SslMode::Disable);
        }
        Ok(Self {
            config,
            roots,
            shown: shown.to_string(),
        })
    }
}

/// An error message without anything that looks like a password.
fn shown_error(message: &str) -> &str {
    message.split(':').next().unwrap_or("invalid")
}
