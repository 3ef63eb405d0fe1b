//! The CA's own TLS: its server certificate, rotated before it expires, and
//! the optional client certificate that renewal presents.

use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::crypto::CryptoProvider;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, DistinguishedName, ServerConfig, SignatureScheme};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use time::{Duration, OffsetDateTime};

/// The crypto provider used everywhere in the CA.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Lifetime of the CA's TLS server certificate.
pub const SERVER_CERT_LIFETIME: Duration = Duration::days(7);

/// When to replace a server certificate: at two thirds of its lifetime.
pub fn server_refresh_at(not_before: OffsetDateTime, not_after: OffsetDateTime) -> OffsetDateTime {
    not_before + (not_after - not_before) * 2 / 3
}

/// The server certificate currently presented, swapped atomically when a
/// new one is issued.
#[derive(Debug)]
pub struct ServerIdentity {
    current: ArcSwap<CertifiedKey>,
}

impl ServerIdentity {
    /// Starts with `chain` (leaf first) and its key.
    pub fn new(
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    ) -> Result<Self, rustls::Error> {
        Ok(Self {
            current: ArcSwap::from_pointee(certified(chain, key)?),
        })
    }

    /// Presents `chain` from the next handshake on.
    pub fn replace(
        &self,
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    ) -> Result<(), rustls::Error> {
        self.current.store(Arc::new(certified(chain, key)?));
        Ok(())
    }
}

fn certified(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<CertifiedKey, rustls::Error> {
    let signing_key = provider().key_provider.load_private_key(key)?;
    Ok(CertifiedKey::new(chain, signing_key))
}

impl ResolvesServerCert for ServerIdentity {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

/// Asks for a client certificate without requiring one, and accepts any
/// certificate whose handshake signature verifies (proof that the peer
/// holds its key).
///
/// Only `POST /v1/renew` uses client certificates, and there the authority
/// verifies the chain against this CA's root, the validity at the time of
/// the request, and the exact DER against its issuance record. Deferring
/// those checks to the request turns an expired or revoked certificate into
/// a clear JSON refusal instead of a bare TLS alert, and lets agents without
/// a certificate (enrollment, admin calls) use the same listener.
#[derive(Debug)]
pub struct RenewalClientCert {
    provider: Arc<CryptoProvider>,
    hints: Vec<DistinguishedName>,
}

impl RenewalClientCert {
    /// Hints `root_subjects` (DER subjects) to clients as acceptable issuers.
    pub fn new(root_subjects: Vec<Vec<u8>>) -> Self {
        Self {
            provider: provider(),
            hints: root_subjects
                .into_iter()
                .map(DistinguishedName::from)
                .collect(),
        }
    }
}

impl ClientCertVerifier for RenewalClientCert {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &self.hints
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// The listener's TLS configuration: TLS 1.2 and 1.3, ALPN http/1.1 (the
/// listener speaks HTTP/1.1 only), the rotating server certificate, optional
/// client certificates.
pub fn server_config(
    identity: Arc<ServerIdentity>,
    client: Arc<RenewalClientCert>,
) -> Result<ServerConfig, rustls::Error> {
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(client)
        .with_cert_resolver(identity);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_certificates_refresh_at_two_thirds_of_their_life() {
        let nb = OffsetDateTime::from_unix_timestamp(0).unwrap();
        let na = nb + Duration::days(3);
        assert_eq!(server_refresh_at(nb, na), nb + Duration::days(2));
    }
}
