//! A service's own certificate, kept current from files (feature `tokio`).
//!
//! A service with an agentca certificate holds it for minutes: `agentca
//! run` (or the agent runtime) replaces the files before it expires.
//! [`CertificateFiles`] reads them again whenever they change and hands
//! rustls the newest on every handshake, so a service never presents an
//! expired certificate and needs no restart. A change that cannot be read
//! whole (a certificate without its key, a key that does not match) is
//! skipped until the files agree: the previous certificate stays.
//!
//! ```no_run
//! # async fn run(verifier: std::sync::Arc<agentca::verify::Verifier>) -> Result<(), Box<dyn std::error::Error>> {
//! use agentca::verify::reload::CertificateFiles;
//!
//! let files = CertificateFiles::load("/run/agentca/svc/cert.pem", "/run/agentca/svc/key.pem")?;
//! let _watch = files.watch(std::time::Duration::from_secs(5));
//! let tls = verifier.server_config_with(files)?;
//! # let _ = tls; Ok(()) }
//! ```

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// Why the files could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// A file could not be read.
    #[error("{path}: {detail}")]
    Read {
        /// The file.
        path: PathBuf,
        /// What failed.
        detail: String,
    },
    /// The key is not one rustls can sign with, or not the certificate's.
    #[error("the key does not go with the certificate: {0}")]
    Mismatch(String),
}

/// A certificate and key read from files, read again when they change.
#[derive(Debug)]
pub struct CertificateFiles {
    cert: PathBuf,
    key: PathBuf,
    current: RwLock<Arc<CertifiedKey>>,
    /// The files' contents when last read (a few kilobytes: comparing
    /// them does not depend on the file system's clock resolution).
    read: Mutex<(Vec<u8>, Vec<u8>)>,
}

impl CertificateFiles {
    /// Reads the chain (leaf first) in `cert` and the key in `key` (PEM).
    pub fn load(
        cert: impl Into<PathBuf>,
        key: impl Into<PathBuf>,
    ) -> Result<Arc<Self>, ReloadError> {
        let (cert, key) = (cert.into(), key.into());
        let contents = contents(&cert, &key)?;
        let current = certified(&cert, &key, &contents)?;
        Ok(Arc::new(Self {
            cert,
            key,
            current: RwLock::new(Arc::new(current)),
            read: Mutex::new(contents),
        }))
    }

    /// Reads the files again if they changed since last read; returns
    /// whether a new certificate is in use. Files that do not agree (a
    /// rotation half written, a key of another certificate) leave the
    /// current certificate in use and are tried again next time.
    pub fn reload_if_changed(&self) -> Result<bool, ReloadError> {
        let now = contents(&self.cert, &self.key)?;
        if *self.read.lock().unwrap_or_else(|p| p.into_inner()) == now {
            return Ok(false);
        }
        let fresh = certified(&self.cert, &self.key, &now)?;
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(fresh);
        *self.read.lock().unwrap_or_else(|p| p.into_inner()) = now;
        Ok(true)
    }

    /// Checks the files every `every` in a tokio task (stopped when the
    /// returned handle is dropped), logging what it finds.
    pub fn watch(self: &Arc<Self>, every: Duration) -> Watch {
        let files = self.clone();
        Watch(tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut failing = false;
            loop {
                tick.tick().await;
                match files.reload_if_changed() {
                    Ok(true) => {
                        failing = false;
                        tracing::info!(cert = %files.cert.display(), "this service's certificate was replaced; new connections present the new one");
                    }
                    Ok(false) => {}
                    Err(e) => {
                        if !failing {
                            tracing::warn!(error = %e, "the changed certificate files cannot be used yet; the current certificate stays");
                        }
                        failing = true;
                    }
                }
            }
        }))
    }

    /// The certificate in use.
    pub fn current(&self) -> Arc<CertifiedKey> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// The task of [`CertificateFiles::watch`]; dropping it stops the task.
#[derive(Debug)]
pub struct Watch(tokio::task::JoinHandle<()>);

impl Drop for Watch {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl ResolvesServerCert for CertificateFiles {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

/// Largest certificate or key file read.
const MAX_FILE: u64 = 1024 * 1024;

fn failed(path: &Path, detail: String) -> ReloadError {
    ReloadError::Read {
        path: path.to_owned(),
        detail,
    }
}

/// The bytes of `cert` and `key`.
fn contents(cert: &Path, key: &Path) -> Result<(Vec<u8>, Vec<u8>), ReloadError> {
    let read = |path: &Path| -> Result<Vec<u8>, ReloadError> {
        let len = std::fs::metadata(path)
            .map_err(|e| failed(path, e.to_string()))?
            .len();
        if len > MAX_FILE {
            return Err(failed(
                path,
                format!("{len} bytes, more than a certificate or key"),
            ));
        }
        std::fs::read(path).map_err(|e| failed(path, e.to_string()))
    };
    Ok((read(cert)?, read(key)?))
}

/// The certificate and key in `contents` (read from `cert` and `key`),
/// if the key is the certificate's.
fn certified(
    cert: &Path,
    key: &Path,
    (cert_pem, key_pem): &(Vec<u8>, Vec<u8>),
) -> Result<CertifiedKey, ReloadError> {
    let chain = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| failed(cert, e.to_string()))?;
    if chain.is_empty() {
        return Err(failed(cert, "no certificate in it".into()));
    }
    let key_der = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| failed(key, e.to_string()))?;
    let signing = rustls::crypto::aws_lc_rs::sign::any_supported_type(&key_der)
        .map_err(|e| ReloadError::Mismatch(e.to_string()))?;
    let certified = CertifiedKey::new(chain, signing);
    certified
        .keys_match()
        .map_err(|e| ReloadError::Mismatch(e.to_string()))?;
    Ok(certified)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A self-signed certificate and its key, as PEM.
    fn pair() -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["svc.test".into()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        (cert.pem(), key.serialize_pem())
    }

    #[test]
    fn a_change_is_taken_whole_and_a_mismatched_one_keeps_the_current() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        let (c1, k1) = pair();
        std::fs::write(&cert, &c1).unwrap();
        std::fs::write(&key, &k1).unwrap();
        let files = CertificateFiles::load(&cert, &key).unwrap();
        let first = files.current();
        assert!(!files.reload_if_changed().unwrap(), "nothing changed");

        // Half a rotation: the new certificate, the old key.
        let (c2, k2) = pair();
        std::fs::write(&cert, &c2).unwrap();
        assert!(matches!(
            files.reload_if_changed(),
            Err(ReloadError::Mismatch(_))
        ));
        assert!(
            Arc::ptr_eq(&files.current(), &first),
            "the current one stays"
        );
        // The rotation completed.
        std::fs::write(&key, &k2).unwrap();
        assert!(files.reload_if_changed().unwrap());
        assert_ne!(files.current().cert, first.cert);

        // A key of another certificate is refused at load.
        let (_, k3) = pair();
        std::fs::write(&key, &k3).unwrap();
        assert!(matches!(
            CertificateFiles::load(&cert, &key),
            Err(ReloadError::Mismatch(_))
        ));
        std::fs::remove_file(&cert).unwrap();
        assert!(matches!(
            CertificateFiles::load(&cert, &key),
            Err(ReloadError::Read { .. })
        ));
    }
}
