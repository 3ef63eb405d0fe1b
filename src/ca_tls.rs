//! TLS client configuration that trusts only the CA: for agents (feature
//! `client`) and for the revocation feed of services (feature `feed`).

use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::{ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};

use crate::bundle::{BundleError, Fingerprint, TrustBundle};

/// How a client decides that it is talking to the right CA.
#[derive(Clone, Debug)]
pub enum CaTrust {
    /// Accept a server whose chain includes a root with this SHA-256
    /// fingerprint, and verify the chain and host name against that root.
    Pinned(Fingerprint),
    /// Verify the server's chain and host name against these roots.
    Bundle(TrustBundle),
}

/// Why a TLS client configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsConfigError {
    /// The trust bundle is not usable.
    #[error(transparent)]
    Bundle(#[from] BundleError),
    /// rustls refused the configuration.
    #[error("TLS: {0}")]
    Tls(#[from] rustls::Error),
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

fn roots(bundle: &TrustBundle) -> Result<RootCertStore, TlsConfigError> {
    let mut roots = RootCertStore::empty();
    for root in bundle.roots() {
        roots.add(root.clone())?;
    }
    Ok(roots)
}

/// A rustls client configuration that verifies the CA's server certificate
/// as `trust` says and, when `identity` is given, presents it as client
/// certificate.
pub fn client_config(
    trust: &CaTrust,
    identity: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
) -> Result<ClientConfig, TlsConfigError> {
    let provider = provider();
    let verifier: Arc<dyn ServerCertVerifier> = match trust {
        CaTrust::Bundle(bundle) => {
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots(bundle)?), provider.clone())
                .build()
                .map_err(|e| TlsConfigError::Tls(rustls::Error::General(e.to_string())))?
        }
        CaTrust::Pinned(pin) => Arc::new(PinnedRoot {
            pin: *pin,
            provider: provider.clone(),
        }),
    };
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let mut config = match identity {
        Some((chain, key)) => builder.with_client_auth_cert(chain, key)?,
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// Accepts a server whose presented chain includes the pinned root, after
/// verifying the chain and host name against that root as the only trust
/// anchor. A server that does not send the pinned root is refused.
#[derive(Debug)]
struct PinnedRoot {
    pin: Fingerprint,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for PinnedRoot {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let root = intermediates
            .iter()
            .find(|c| Fingerprint::of(c) == self.pin)
            .ok_or_else(|| {
                rustls::Error::General(format!(
                    "the server did not present the pinned root {}",
                    self.pin
                ))
            })?;
        let mut roots = RootCertStore::empty();
        roots.add(root.clone().into_owned())?;
        let verifier =
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), self.provider.clone())
                .build()
                .map_err(|e| rustls::Error::General(e.to_string()))?;
        verifier.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
    }

    provider_signature_checks!(provider);
}

/// Exponential backoff for retry number `attempt` (from 1): `base`
/// doubled per attempt up to `max`, scaled by `jitter` (0 to 1) into its
/// upper half, so that clients that failed together do not retry together.
pub fn half_jittered(base: Duration, max: Duration, attempt: u32, jitter: f64) -> Duration {
    let exp = attempt.saturating_sub(1).min(16);
    let full = base.saturating_mul(1 << exp).min(max);
    full / 2 + full.mul_f64(jitter.clamp(0.0, 1.0) / 2.0)
}

/// A random number in 0..=1 from the operating system's RNG. (It lives
/// here, like [`half_jittered`], because this module is built for both the
/// agent side and the revocation feed.)
pub fn jitter() -> f64 {
    let mut b = [0u8; 4];
    if aws_lc_rs::rand::fill(&mut b).is_err() {
        return 0.5;
    }
    f64::from(u32::from_le_bytes(b)) / f64::from(u32::MAX)
}
