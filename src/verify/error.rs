//! Why a peer was refused, and why a verifier could not be built.

use super::*;

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
