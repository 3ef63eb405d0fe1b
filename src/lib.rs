//! Workload identity for AI agents.
//!
//! agentca gives every agent its own minutes-lived X.509 certificate, with
//! its identity as a SPIFFE ID in the certificate's single URI SAN:
//!
//! ```text
//! spiffe://<trust-domain>/tenant/<tenant>/env/<env>/agent/<agent>
//! ```
//!
//! This crate is what agents and services link against:
//!
//! - [`identity`]: the [`AgentId`](identity::AgentId) type and its parsing
//!   rules;
//! - [`bundle`]: trust bundles and root fingerprints;
//! - [`wire`]: the JSON bodies of the CA's HTTP API;
//! - [`verify`]: verifying agents' certificates in a service (rustls
//!   verifiers, revocation cache; features `feed`, `tokio` and `axum` add
//!   the CA feed subscription and server integrations);
//! - `client` (feature `client`): key generation, enrollment and renewal
//!   against an agentca CA.
//!
//! With default features it does not depend on the CA server's crates.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

// Defined before the modules, so that each of them can use it.
/// The signature checks of a rustls certificate verifier whose field
/// `$provider` is its `Arc<CryptoProvider>`: the same in every verifier of
/// this crate, so written once.
macro_rules! provider_signature_checks {
    ($provider:ident) => {
        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &rustls_pki_types::CertificateDer<'_>,
            dss: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls12_signature(
                message,
                cert,
                dss,
                &self.$provider.signature_verification_algorithms,
            )
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &rustls_pki_types::CertificateDer<'_>,
            dss: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls13_signature(
                message,
                cert,
                dss,
                &self.$provider.signature_verification_algorithms,
            )
        }

        fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
            self.$provider
                .signature_verification_algorithms
                .supported_schemes()
        }
    };
}

pub mod bundle;
#[cfg(any(feature = "client", feature = "feed"))]
mod ca_tls;
#[cfg(any(feature = "client", feature = "feed"))]
pub use ca_tls::{half_jittered, jitter, CaTrust, TlsConfigError};
#[cfg(feature = "client")]
pub mod client;
#[cfg(any(feature = "client", feature = "feed"))]
pub mod endpoints;
pub mod identity;
pub mod scopes;
pub mod verify;
pub mod wire;

use rustls_pki_types::CertificateDer;

/// `e` and its causes on one line, each said once: many errors (reqwest's,
/// tokio-postgres's) keep what went wrong (a TLS alert, what PostgreSQL
/// said) in their sources, not in their own text.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// `t` in RFC 3339 (`2026-12-06T10:00:00Z`), as the wire, the logs and
/// the console write times; the Unix time for a year RFC 3339 cannot
/// write.
pub fn rfc3339(t: time::OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.unix_timestamp().to_string())
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 0xf)] as char);
    }
    out
}

/// Bytes from hex digits of either case; `None` unless every character is
/// a hex digit and there is an even number of them.
pub fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    s.as_bytes()
        .chunks(2)
        .map(|pair| {
            let hi = (pair[0] as char).to_digit(16)?;
            let lo = (pair[1] as char).to_digit(16)?;
            Some((hi * 16 + lo) as u8)
        })
        .collect()
}

/// PEM `CERTIFICATE` blocks for `certs`, in order.
pub fn certs_to_pem(certs: &[CertificateDer<'_>]) -> String {
    let blocks: Vec<pem::Pem> = certs
        .iter()
        .map(|c| pem::Pem::new("CERTIFICATE", c.as_ref().to_vec()))
        .collect();
    pem::encode_many_config(
        &blocks,
        pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
    )
}

/// The `CERTIFICATE` blocks of `pem_text`, in order (other blocks are
/// skipped); an error if it is not PEM.
pub fn certs_from_pem(
    pem_text: impl AsRef<[u8]>,
) -> Result<Vec<CertificateDer<'static>>, pem::PemError> {
    Ok(pem::parse_many(pem_text)?
        .into_iter()
        .filter(|b| b.tag() == "CERTIFICATE")
        .map(|b| CertificateDer::from(b.into_contents()))
        .collect())
}

#[cfg(test)]
mod tests {
    /// An error saying `text`, caused by `cause`.
    #[derive(Debug)]
    struct Failed(&'static str, Option<Box<Failed>>);

    impl std::fmt::Display for Failed {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }

    impl std::error::Error for Failed {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.1.as_deref().map(|e| e as _)
        }
    }

    #[test]
    fn an_error_chain_says_each_cause_once() {
        let alert = Failed("received fatal alert: UnknownCA", None);
        let tls = Failed("tls handshake", Some(Box::new(alert)));
        let request = Failed("error sending request", Some(Box::new(tls)));
        assert_eq!(
            super::error_chain(&request),
            "error sending request: tls handshake: received fatal alert: UnknownCA"
        );
        // A cause the text already says is not said again.
        let db = Failed(
            "db error: relation missing",
            Some(Box::new(Failed("relation missing", None))),
        );
        assert_eq!(super::error_chain(&db), "db error: relation missing");
    }
}
