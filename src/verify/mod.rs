//! Verifying agents: which agent is calling, and may it?
//!
//! A [`Verifier`] is built from a trust bundle and a trust domain. It checks
//! a peer's certificate chain against the bundle, every X.509-SVID rule, the
//! revocation state, and the service's policy, and yields the caller's
//! [`PeerIdentity`]. It plugs into rustls as a
//! [`ClientCertVerifier`](rustls::server::danger::ClientCertVerifier) (a
//! service verifying agents) and a
//! [`ServerCertVerifier`](rustls::client::danger::ServerCertVerifier) (an
//! agent verifying another agent or a service with an agentca certificate:
//! the SPIFFE identity stands in for the DNS name).
//!
//! It is secure by default: it refuses everything outside the trust domain,
//! requires a revocation source, and refuses when that source is staler than
//! [`DEFAULT_MAX_STALENESS`]. Each weakening is a builder method named for
//! what it lets through.
//!
//! ```
//! use std::sync::Arc;
//! use rustls_pki_types::pem::PemObject;
//! use agentca::bundle::TrustBundle;
//! use agentca::identity::TrustDomain;
//! use agentca::verify::{RevocationCache, Verifier};
//!
//! # fn run(bundle_pem: &[u8]) -> Result<(), Box<dyn std::error::Error>> {
//! let bundle = TrustBundle::from_pem(bundle_pem)?;
//! let revocations = RevocationCache::new();
//! // Keep `revocations` current with agentca::verify::feed (feature "feed").
//! let verifier = Verifier::builder(bundle, TrustDomain::new("agents.example.com")?)
//!     .allow_tenant("acme")
//!     .allow_env("prod")
//!     .revocation(revocations)
//!     .build()?;
//! let tls = verifier.server_config(
//!     rustls_pki_types::CertificateDer::pem_file_iter("service.pem")?.collect::<Result<_, _>>()?,
//!     rustls_pki_types::PrivateKeyDer::from_pem_file("service.key")?,
//! )?;
//! # let _ = tls; Ok(()) }
//! ```

mod revocation;
pub(crate) mod svid;

#[cfg(feature = "feed")]
pub mod feed;
#[cfg(feature = "tokio")]
pub mod serve;

use std::fmt;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, OtherError, SignatureScheme,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, TrustAnchor, UnixTime};
use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};

use crate::bundle::TrustBundle;
use crate::identity::{AgentId, IdError, InstanceId, TrustDomain};
use crate::wire::Serial;

pub use revocation::{CrlError, RevocationCache};

/// How stale the revocation data may be before the verifier refuses, by
/// default: long enough to ride out a CA restart, short enough that a
/// revocation that did not reach this service does not stay unnoticed.
pub const DEFAULT_MAX_STALENESS: Duration = Duration::seconds(60);

/// Which extended key usage a peer certificate must carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Usage {
    /// A client (clientAuth): an agent calling a service.
    Client,
    /// A server (serverAuth): an agent or service being called.
    Server,
}

impl fmt::Display for Usage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Usage::Client => "clientAuth",
            Usage::Server => "serverAuth",
        })
    }
}

/// Who is calling, once verified.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerIdentity {
    /// The agent's identity, from the certificate's URI SAN.
    pub spiffe_id: AgentId,
    /// The running instance, from the subject's serialNumber (absent for
    /// SVIDs from other issuers in the trust domain).
    pub instance_id: Option<InstanceId>,
    /// The certificate's serial.
    pub serial: Serial,
    /// When the certificate expires.
    #[serde(with = "time::serde::rfc3339")]
    pub not_after: OffsetDateTime,
    /// The permissions its registration grants, from the certificate's
    /// scopes extension ([`crate::scopes`]); empty without one.
    #[serde(default)]
    pub scopes: Vec<String>,
}

impl PeerIdentity {
    /// The agent's identity.
    pub fn id(&self) -> &AgentId {
        &self.spiffe_id
    }

    /// Whether the certificate grants `scope` (exact match).
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }

    /// `Ok` if the certificate grants `scope`, else a [`MissingScope`]
    /// naming the agent and the scope, for a 403.
    ///
    /// ```
    /// # use agentca::verify::PeerIdentity;
    /// fn delete_ticket(peer: &PeerIdentity) -> Result<(), agentca::verify::MissingScope> {
    ///     peer.require_scope("tickets:write")?;
    ///     // …
    ///     Ok(())
    /// }
    /// # let mut peer = PeerIdentity {
    /// #     spiffe_id: "spiffe://example.org/tenant/acme/env/prod/agent/bot".parse().unwrap(),
    /// #     instance_id: None,
    /// #     serial: agentca::wire::Serial::from_bytes(&[0x40, 1]).unwrap(),
    /// #     not_after: time::OffsetDateTime::now_utc(),
    /// #     scopes: vec!["tickets:read".into()],
    /// # };
    /// let refused = delete_ticket(&peer).unwrap_err();
    /// assert_eq!(refused.scope, "tickets:write");
    /// peer.scopes.push("tickets:write".into());
    /// assert!(delete_ticket(&peer).is_ok());
    /// ```
    pub fn require_scope(&self, scope: &str) -> Result<(), MissingScope> {
        if self.has_scope(scope) {
            Ok(())
        } else {
            Err(MissingScope {
                agent: self.spiffe_id.clone(),
                scope: scope.to_owned(),
            })
        }
    }
}

/// A peer lacks a scope that the action requires.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{agent} lacks the scope {scope:?}")]
pub struct MissingScope {
    /// The agent.
    pub agent: AgentId,
    /// The scope it lacks.
    pub scope: String,
}

/// Why a peer was refused. Each rule has its own variant.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// The peer presented no certificate.
    #[error("no certificate was presented")]
    NoCertificate,
    /// The leaf certificate does not parse.
    #[error("the certificate does not parse: {0}")]
    Malformed(String),
    /// The leaf has no URI SAN.
    #[error("the certificate has no URI SAN; an X.509-SVID has exactly one")]
    NoUriSan,
    /// The leaf has more than one URI SAN.
    #[error("the certificate has {0} URI SANs; an X.509-SVID has exactly one")]
    MultipleUriSans(usize),
    /// The URI SAN is not a `spiffe://` URI.
    #[error("the URI SAN {0:?} is not a SPIFFE ID")]
    NotSpiffe(String),
    /// The SPIFFE ID is in another trust domain.
    #[error("the SPIFFE ID is in trust domain {found:?}, not {expected:?}")]
    ForeignTrustDomain {
        /// The trust domain this verifier accepts.
        expected: String,
        /// The certificate's.
        found: String,
    },
    /// The SPIFFE ID breaks the agent identity rules (path shape, names).
    #[error("the SPIFFE ID is not an agent identity: {0}")]
    NotAnAgentId(IdError),
    /// The leaf is a CA certificate.
    #[error("the certificate is a CA certificate (basicConstraints cA=true)")]
    LeafIsCa,
    /// The leaf may sign certificates or CRLs.
    #[error("the certificate's key usage includes {0}, which a leaf must not have")]
    ForbiddenKeyUsage(&'static str),
    /// The leaf's key usage lacks digitalSignature.
    #[error("the certificate's key usage lacks digitalSignature")]
    MissingDigitalSignature,
    /// The leaf lacks the required extended key usage.
    #[error("the certificate lacks the {0} extended key usage")]
    MissingExtendedKeyUsage(Usage),
    /// The certificate has expired.
    #[error("the certificate expired at {0}")]
    Expired(OffsetDateTime),
    /// The certificate is not valid yet.
    #[error("the certificate is not valid before {0}")]
    NotYetValid(OffsetDateTime),
    /// The chain does not lead to the trust bundle.
    #[error("the certificate does not chain to the trust bundle: {0}")]
    UntrustedChain(String),
    /// The certificate is revoked.
    #[error("certificate {0} is revoked")]
    Revoked(Serial),
    /// The revocation data is staler than allowed.
    #[error("the revocation data is stale ({0}); refusing until it is current again")]
    RevocationStale(String),
    /// The service's policy refuses this peer.
    #[error("{0} is not allowed by this service's policy")]
    PolicyDenied(AgentId),
}

/// Why a verifier could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The bundle's roots are not usable trust anchors.
    #[error("the trust bundle is not usable: {0}")]
    Bundle(String),
    /// Neither a revocation source nor an explicit opt-out was given.
    #[error("no revocation source: call .revocation(cache), or .without_revocation_checks() to accept revoked certificates")]
    NoRevocationSource,
    /// A policy name is not a valid tenant, env or agent name.
    #[error("invalid policy: {0}")]
    Policy(#[from] IdError),
    /// The maximum staleness is not positive.
    #[error("the maximum staleness must be positive")]
    Staleness,
}

type Predicate = Arc<dyn Fn(&PeerIdentity) -> bool + Send + Sync>;

/// The service's policy: which agents of the trust domain it accepts.
#[derive(Clone, Default)]
struct Policy {
    tenants: Vec<String>,
    envs: Vec<String>,
    agents: Vec<String>,
    agent_prefixes: Vec<String>,
    predicates: Vec<Predicate>,
}

impl Policy {
    fn allows(&self, peer: &PeerIdentity) -> bool {
        let id = peer.id();
        let any = |list: &[String], value: &str| list.is_empty() || list.iter().any(|x| x == value);
        let agent_ok = (self.agents.is_empty() && self.agent_prefixes.is_empty())
            || self.agents.iter().any(|a| a == id.agent().as_str())
            || self
                .agent_prefixes
                .iter()
                .any(|p| id.agent().as_str().starts_with(p.as_str()));
        any(&self.tenants, id.tenant().as_str())
            && any(&self.envs, id.env().as_str())
            && agent_ok
            && self.predicates.iter().all(|p| p(peer))
    }
}

enum Revocation {
    Checked {
        cache: Arc<RevocationCache>,
        max_staleness: Duration,
        fail_open: bool,
    },
    Unchecked,
}

/// Builds a [`Verifier`]: secure by default, every weakening explicit.
pub struct VerifierBuilder {
    bundle: TrustBundle,
    trust_domain: TrustDomain,
    policy: Policy,
    cache: Option<Arc<RevocationCache>>,
    unchecked: bool,
    max_staleness: Duration,
    fail_open: bool,
}

impl VerifierBuilder {
    /// Accept agents of this tenant (repeatable; all tenants when never
    /// called).
    pub fn allow_tenant(mut self, tenant: &str) -> Self {
        self.policy.tenants.push(tenant.to_owned());
        self
    }

    /// Accept agents of this environment (repeatable; all environments when
    /// never called).
    pub fn allow_env(mut self, env: &str) -> Self {
        self.policy.envs.push(env.to_owned());
        self
    }

    /// Accept the agent with this name (repeatable; with
    /// [`allow_agent_prefix`](Self::allow_agent_prefix), all agents when
    /// neither is called).
    pub fn allow_agent(mut self, agent: &str) -> Self {
        self.policy.agents.push(agent.to_owned());
        self
    }

    /// Accept agents whose name starts with `prefix` (repeatable).
    pub fn allow_agent_prefix(mut self, prefix: &str) -> Self {
        self.policy.agent_prefixes.push(prefix.to_owned());
        self
    }

    /// Accept only peers for which `predicate` returns true, in addition to
    /// the rules above (repeatable: all predicates must agree).
    pub fn require(
        mut self,
        predicate: impl Fn(&PeerIdentity) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.policy.predicates.push(Arc::new(predicate));
        self
    }

    /// Check revocation against `cache` (keep it current with
    /// [`feed`](crate::verify) or CRLs).
    pub fn revocation(mut self, cache: Arc<RevocationCache>) -> Self {
        self.cache = Some(cache);
        self
    }

    /// Refuse when the revocation data is older than `bound` (default
    /// [`DEFAULT_MAX_STALENESS`]).
    pub fn max_staleness(mut self, bound: Duration) -> Self {
        self.max_staleness = bound;
        self
    }

    /// **Weakening.** Accept peers when the revocation data is stale, instead
    /// of refusing everyone. A revoked agent stays accepted for as long as
    /// this service cannot reach the CA; use it only where availability
    /// matters more than cutting agents off.
    pub fn fail_open_when_stale(mut self) -> Self {
        self.fail_open = true;
        self
    }

    /// **Weakening.** Do not check revocation at all: a revoked certificate
    /// is accepted until it expires (minutes, with agentca). For tests and
    /// for services that check revocation some other way.
    pub fn without_revocation_checks(mut self) -> Self {
        self.unchecked = true;
        self
    }

    /// Checks the whole and builds the verifier.
    pub fn build(self) -> Result<Arc<Verifier>, BuildError> {
        use crate::identity::{Name, Part};
        for t in &self.policy.tenants {
            Name::new(Part::Tenant, t)?;
        }
        for e in &self.policy.envs {
            Name::new(Part::Env, e)?;
        }
        for a in &self.policy.agents {
            Name::new(Part::Agent, a)?;
        }
        if self.max_staleness <= Duration::ZERO {
            return Err(BuildError::Staleness);
        }
        let revocation = match (self.cache, self.unchecked) {
            (Some(cache), _) => Revocation::Checked {
                cache,
                max_staleness: self.max_staleness,
                fail_open: self.fail_open,
            },
            (None, true) => Revocation::Unchecked,
            (None, false) => return Err(BuildError::NoRevocationSource),
        };
        let anchors = self
            .bundle
            .roots()
            .iter()
            .map(|root| {
                webpki::anchor_from_trusted_cert(root)
                    .map(|a| a.to_owned())
                    .map_err(|e| BuildError::Bundle(e.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let hints = self
            .bundle
            .roots()
            .iter()
            .filter_map(|root| {
                use x509_parser::prelude::FromDer;
                let (_, cert) = x509_parser::certificate::X509Certificate::from_der(root).ok()?;
                Some(DistinguishedName::from(cert.subject().as_raw().to_vec()))
            })
            .collect();
        Ok(Arc::new(Verifier {
            trust_domain: self.trust_domain,
            anchors,
            hints,
            bundle: self.bundle,
            policy: self.policy,
            revocation,
            provider: Arc::new(rustls::crypto::aws_lc_rs::default_provider()),
        }))
    }
}

/// Verifies agents' certificates for one trust domain.
pub struct Verifier {
    trust_domain: TrustDomain,
    bundle: TrustBundle,
    anchors: Vec<TrustAnchor<'static>>,
    hints: Vec<DistinguishedName>,
    policy: Policy,
    revocation: Revocation,
    provider: Arc<CryptoProvider>,
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verifier")
            .field("trust_domain", &self.trust_domain)
            .finish_non_exhaustive()
    }
}

impl Verifier {
    /// A builder trusting `bundle` for agents of `trust_domain`.
    ///
    /// ```
    /// use agentca::bundle::TrustBundle;
    /// use agentca::identity::TrustDomain;
    /// use agentca::verify::{Usage, Verifier, VerifyError};
    ///
    /// // A CA and an agent certificate, as agentca would issue them.
    /// let ca_key = rcgen::KeyPair::generate()?;
    /// let mut ca_params = rcgen::CertificateParams::default();
    /// ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    /// let ca_cert = ca_params.self_signed(&ca_key)?;
    /// let issuer = rcgen::Issuer::new(ca_params, ca_key);
    /// let mut leaf = rcgen::CertificateParams::default();
    /// leaf.subject_alt_names =
    ///     vec![rcgen::SanType::URI("spiffe://example.org/tenant/acme/env/prod/agent/bot".try_into()?)];
    /// leaf.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    /// let leaf = leaf.signed_by(&rcgen::KeyPair::generate()?, &issuer)?;
    ///
    /// let bundle = TrustBundle::from_der(vec![ca_cert.der().clone()])?;
    /// let verifier = Verifier::builder(bundle.clone(), TrustDomain::new("example.org")?)
    ///     .allow_tenant("acme")
    ///     .without_revocation_checks()
    ///     .build()?;
    /// let now = time::OffsetDateTime::now_utc();
    /// let peer = verifier.verify_peer(&[leaf.der().clone()], Usage::Client, now)?;
    /// assert_eq!(peer.spiffe_id.agent().as_str(), "bot");
    ///
    /// // Another tenant's service refuses the same agent.
    /// let elsewhere = Verifier::builder(bundle, TrustDomain::new("example.org")?)
    ///     .allow_tenant("globex")
    ///     .without_revocation_checks()
    ///     .build()?;
    /// let refused = elsewhere.verify_peer(&[leaf.der().clone()], Usage::Client, now);
    /// assert!(matches!(refused, Err(VerifyError::PolicyDenied(_))));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn builder(bundle: TrustBundle, trust_domain: TrustDomain) -> VerifierBuilder {
        VerifierBuilder {
            bundle,
            trust_domain,
            policy: Policy::default(),
            cache: None,
            unchecked: false,
            max_staleness: DEFAULT_MAX_STALENESS,
            fail_open: false,
        }
    }

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
    fn verify_parts(
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
        self.verify_parts(end_entity, intermediates, Usage::Client, now_of(now))
            .map(|_| ClientCertVerified::assertion())
            .map_err(to_rustls)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
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
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
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

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
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
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
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

#[cfg(test)]
mod tests;
