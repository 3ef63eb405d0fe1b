//! The verifier itself: chain, SPIFFE rules, revocation and policy, in
//! that order, for a client or a server certificate.

use super::*;

/// Verifies agents' certificates for one trust domain.
pub struct Verifier {
    pub(super) trust_domain: TrustDomain,
    pub(super) bundle: TrustBundle,
    pub(super) anchors: Vec<TrustAnchor<'static>>,
    pub(super) hints: Vec<DistinguishedName>,
    pub(super) policy: Policy,
    pub(super) revocation: Revocation,
    pub(super) provider: Arc<CryptoProvider>,
    /// Identities verified in full handshakes, for `serve::accept`.
    pub(super) handshaken: super::handshaken::Handshaken,
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verifier")
            .field("trust_domain", &self.trust_domain)
            .finish_non_exhaustive()
    }
}

impl Verifier {
    /// The trust domain this verifier accepts.
    pub fn trust_domain(&self) -> &TrustDomain {
        &self.trust_domain
    }

    /// The trust bundle.
    pub fn bundle(&self) -> &TrustBundle {
        &self.bundle
    }

    /// Verifies a peer's chain (leaf first) for `usage` at `now`: every
    /// rule, revocation and policy: the checks the rustls integrations
    /// run. Call it yourself on a connection's peer certificates.
    pub fn verify_peer(
        &self,
        chain: &[CertificateDer<'_>],
        usage: Usage,
        now: OffsetDateTime,
    ) -> Result<PeerIdentity, VerifyError> {
        let (leaf, intermediates) = chain.split_first().ok_or(VerifyError::NoCertificate)?;
        self.verify_parts(leaf, intermediates, usage, now)
    }

    /// [`Verifier::verify_peer`] with the leaf apart, as rustls hands it.
    pub(super) fn verify_parts(
        &self,
        leaf: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        usage: Usage,
        now: OffsetDateTime,
    ) -> Result<PeerIdentity, VerifyError> {
        let peer = svid::check_leaf(leaf, &self.trust_domain, usage, now)?;
        self.check_chain(leaf, intermediates, usage, now)?;
        self.check_current(&peer, now)?;
        Ok(peer)
    }

    /// The identity of a connection's peer whose handshake this verifier
    /// just verified in full (its server configuration's client
    /// verifier), re-checked now ([`Verifier::check_current`]); the whole
    /// verification of `chain` otherwise (a resumed session, whose
    /// handshake verified nothing, or a configuration with another
    /// verifier).
    pub(crate) fn peer_of_handshake(
        &self,
        chain: &[CertificateDer<'_>],
        now: OffsetDateTime,
    ) -> Result<PeerIdentity, VerifyError> {
        let leaf = chain.first().ok_or(VerifyError::NoCertificate)?;
        match self.handshaken.take(leaf, std::time::Instant::now()) {
            Some(peer) => {
                self.check_current(&peer, now)?;
                Ok(peer)
            }
            None => self.verify_peer(chain, Usage::Client, now),
        }
    }

    /// Re-checks an identity verified earlier, as time passes on a long
    /// connection: expiry, revocation (and its staleness) and policy. Cheap
    /// enough for every request.
    pub fn check_current(
        &self,
        peer: &PeerIdentity,
        now: OffsetDateTime,
    ) -> Result<(), VerifyError> {
        if now > peer.not_after {
            return Err(VerifyError::Expired(peer.not_after));
        }
        if let Revocation::Checked {
            cache,
            max_staleness,
            fail_open,
        } = &self.revocation
        {
            if cache.is_revoked(&peer.serial) {
                return Err(VerifyError::Revoked(peer.serial.clone()));
            }
            if let Some(stale) = cache.staleness(now, *max_staleness) {
                if !fail_open {
                    return Err(VerifyError::RevocationStale(stale));
                }
            }
        }
        if !self.policy.allows(peer) {
            return Err(VerifyError::PolicyDenied(peer.spiffe_id.clone()));
        }
        Ok(())
    }

    /// Whether `peer` may be used for `scope` at `now`: its certificate
    /// carries the scope, its registration has not lost it since, and no
    /// block stands ([`Grants::usable`](super::Grants::usable)). With
    /// revocation checks, the verifier must know the CA's withdrawals and
    /// blocks as of at most the staleness bound ago, or it refuses
    /// (`ScopeRefusal::Unknown`) unless it fails open. Call it after
    /// [`Verifier::check_current`].
    // The refusal names the agent for the 403's text; refusals are the
    // rare path, so it is not boxed.
    #[allow(clippy::result_large_err)]
    pub fn require_scope(
        &self,
        peer: &PeerIdentity,
        scope: &str,
        now: OffsetDateTime,
    ) -> Result<(), MissingScope> {
        let Revocation::Checked {
            cache,
            max_staleness,
            fail_open,
        } = &self.revocation
        else {
            return peer.require_scope(scope);
        };
        // Not granted, then blocked or withdrawn, then unknown (stale).
        cache
            .scope_usable_now(
                &peer.serial,
                &peer.scopes,
                scope,
                now,
                *max_staleness,
                *fail_open,
            )
            .map_err(|reason| MissingScope {
                agent: peer.spiffe_id.clone(),
                scope: scope.to_owned(),
                reason,
            })
    }

    fn check_chain(
        &self,
        leaf: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        usage: Usage,
        now: OffsetDateTime,
    ) -> Result<(), VerifyError> {
        let cert = webpki::EndEntityCert::try_from(leaf)
            .map_err(|e| VerifyError::Malformed(format!("{e:?}")))?;
        let eku = match usage {
            Usage::Client => webpki::KeyUsage::client_auth(),
            Usage::Server => webpki::KeyUsage::server_auth(),
        };
        let time = UnixTime::since_unix_epoch(std::time::Duration::from_secs(
            now.unix_timestamp().max(0) as u64,
        ));
        cert.verify_for_usage(
            self.provider.signature_verification_algorithms.all,
            &self.anchors,
            intermediates,
            time,
            eku,
            None,
            None,
        )
        .map(|_| ())
        .map_err(|e| VerifyError::UntrustedChain(format!("{e:?}")))
    }

    /// A rustls server configuration for a service that requires agents'
    /// client certificates, verified by this verifier, presenting
    /// `chain`/`key` (for example the files `agentca enroll` writes).
    pub fn server_config(
        self: &Arc<Self>,
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    ) -> Result<rustls::ServerConfig, rustls::Error> {
        let mut config = rustls::ServerConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()?
            .with_client_cert_verifier(self.clone())
            .with_single_cert(chain, key)?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(config)
    }

    /// [`Verifier::server_config`] with the service's certificate from
    /// `certificate` on every handshake: for one that changes, such as
    /// [`reload::CertificateFiles`](super::reload::CertificateFiles) over
    /// the files `agentca run` keeps current.
    pub fn server_config_with(
        self: &Arc<Self>,
        certificate: Arc<dyn rustls::server::ResolvesServerCert>,
    ) -> Result<rustls::ServerConfig, rustls::Error> {
        let mut config = rustls::ServerConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()?
            .with_client_cert_verifier(self.clone())
            .with_cert_resolver(certificate);
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(config)
    }

    /// A rustls client configuration for an agent calling a peer that
    /// presents an agentca certificate, verified by this verifier (the
    /// SPIFFE identity, not the DNS name), presenting `chain`/`key`.
    pub fn client_config(
        self: &Arc<Self>,
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    ) -> Result<rustls::ClientConfig, rustls::Error> {
        let mut config = rustls::ClientConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()?
            .dangerous()
            .with_custom_certificate_verifier(self.clone())
            .with_client_auth_cert(chain, key)?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(config)
    }
}
