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

mod builder;
mod error;
pub mod grants;
mod handshaken;
mod peer;
mod revocation;
mod svid;
mod tls;
mod verifier;

#[cfg(feature = "feed")]
pub mod feed;
#[cfg(feature = "tokio")]
pub mod reload;
#[cfg(feature = "tokio")]
pub mod serve;

use std::fmt;
use std::sync::Arc;

use rustls::client::danger::{ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DistinguishedName, OtherError};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, TrustAnchor, UnixTime};
use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};

use crate::bundle::TrustBundle;
use crate::identity::{AgentId, IdError, InstanceId, TrustDomain};
use crate::wire::Serial;

pub use builder::VerifierBuilder;
use builder::{Policy, Revocation};
pub use error::{BuildError, VerifyError};
pub use grants::{Grants, ScopeRefusal};
pub use peer::{MissingScope, PeerIdentity, Usage};
pub use revocation::{CrlError, RevocationCache};
pub use verifier::Verifier;

/// How stale the revocation data may be before the verifier refuses, by
/// default: long enough to ride out a CA restart, short enough that a
/// revocation that did not reach this service does not stay unnoticed.
pub const DEFAULT_MAX_STALENESS: Duration = Duration::seconds(60);

#[cfg(test)]
mod tests;
