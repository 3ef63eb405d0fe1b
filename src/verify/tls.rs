//! The verifier as rustls sees it: a client certificate verifier (a
//! service accepting agents) and a server certificate verifier (an agent
//! calling another agent or a service).

use super::*;

impl ClientCertVerifier for Verifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &self.hints
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let peer = self
            .verify_parts(end_entity, intermediates, Usage::Client, now_of(now))
            .map_err(to_rustls)?;
        // For `serve::accept`, which asks who it was just after.
        self.handshaken
            .keep(end_entity, peer, std::time::Instant::now());
        Ok(ClientCertVerified::assertion())
    }

    provider_signature_checks!(provider);
}

/// As a server verifier, the peer's SPIFFE identity and this verifier's
/// policy decide; the server name the client asked for is not checked
/// (SPIFFE authenticates identities, not host names).
impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.verify_parts(end_entity, intermediates, Usage::Server, now_of(now))
            .map(|_| ServerCertVerified::assertion())
            .map_err(to_rustls)
    }

    provider_signature_checks!(provider);
}

fn to_rustls(e: VerifyError) -> rustls::Error {
    let certificate_error = match e {
        VerifyError::Expired(_) => CertificateError::Expired,
        VerifyError::NotYetValid(_) => CertificateError::NotValidYet,
        VerifyError::Revoked(_) => CertificateError::Revoked,
        VerifyError::UntrustedChain(_) => CertificateError::UnknownIssuer,
        other => CertificateError::Other(OtherError(Arc::new(other))),
    };
    rustls::Error::InvalidCertificate(certificate_error)
}

fn now_of(t: UnixTime) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(t.as_secs() as i64).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}
