//! Trust bundles and root fingerprints.
//!
//! A trust bundle is the set of root certificates a verifier trusts for one
//! trust domain: for agentca, the CA's root (`GET /v1/bundle`, or
//! `bundle.pem` in the CA's data directory). A [`Fingerprint`] is the SHA-256
//! of a root's DER, the value an agent pins on first contact with the CA.
//!
//! ```
//! use agentca::bundle::Fingerprint;
//!
//! let pin: Fingerprint = "sha256:AB:cd:00:11:22:33:44:55:66:77:88:99:aa:bb:cc:dd:ee:ff:00:11:22:33:44:55:66:77:88:99:aa:bb:cc:dd"
//!     .parse()
//!     .unwrap();
//! assert!(pin.to_string().starts_with("abcd0011"));
//! ```

use std::fmt;
use std::str::FromStr;

use rustls_pki_types::CertificateDer;
use x509_parser::prelude::{FromDer, X509Certificate};

/// Largest PEM trust bundle accepted, in bytes.
pub const MAX_BUNDLE_BYTES: usize = 1024 * 1024;
/// Most certificates accepted in one trust bundle.
pub const MAX_BUNDLE_CERTS: usize = 64;

/// Why a trust bundle or fingerprint was refused.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    /// The bundle is larger than [`MAX_BUNDLE_BYTES`].
    #[error("the trust bundle is {0} bytes; the limit is {MAX_BUNDLE_BYTES}")]
    TooLarge(usize),
    /// The bundle has more than [`MAX_BUNDLE_CERTS`] certificates.
    #[error("the trust bundle has more than {MAX_BUNDLE_CERTS} certificates")]
    TooManyCertificates,
    /// The PEM could not be parsed.
    #[error("the trust bundle is not valid PEM: {0}")]
    Pem(String),
    /// The bundle holds no certificate.
    #[error("the trust bundle holds no certificate")]
    Empty,
    /// A PEM block is not a certificate.
    #[error("the trust bundle has a {0:?} block; only CERTIFICATE blocks are allowed")]
    NotACertificate(String),
    /// A certificate could not be parsed.
    #[error("certificate {index} of the trust bundle is not valid X.509: {reason}")]
    InvalidCertificate {
        /// Position in the bundle, from 0.
        index: usize,
        /// What the parser said.
        reason: String,
    },
    /// A certificate is not a CA certificate.
    #[error("certificate {0} of the trust bundle is not a CA certificate")]
    NotACa(usize),
    /// A fingerprint is not 32 bytes of hex.
    #[error(
        "a SHA-256 fingerprint is 64 hex digits (colons and a \"sha256:\" prefix are allowed)"
    )]
    InvalidFingerprint,
}

/// The SHA-256 fingerprint of a certificate's DER.
///
/// It prints as 64 lowercase hex digits and parses from that, with or
/// without a `sha256:` prefix, colons, and in either case, so the output of
/// `openssl x509 -fingerprint -sha256` is accepted as it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Fingerprint([u8; 32]);

impl Fingerprint {
    /// The fingerprint of a DER-encoded certificate.
    pub fn of(der: &[u8]) -> Self {
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, der);
        let mut out = [0u8; 32];
        out.copy_from_slice(digest.as_ref());
        Self(out)
    }

    /// The 32 bytes of the digest.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&crate::hex(&self.0))
    }
}

impl FromStr for Fingerprint {
    type Err = BundleError;
    fn from_str(s: &str) -> Result<Self, BundleError> {
        let s = s.trim();
        let s = s
            .strip_prefix("sha256:")
            .or_else(|| s.strip_prefix("SHA256:"))
            .or_else(|| s.strip_prefix("sha256 Fingerprint="))
            .or_else(|| s.strip_prefix("SHA256 Fingerprint="))
            .unwrap_or(s);
        let digits: String = s.chars().filter(|c| *c != ':').collect();
        let bytes = crate::unhex(&digits).ok_or(BundleError::InvalidFingerprint)?;
        let bytes: [u8; 32] = bytes
            .try_into()
            .map_err(|_| BundleError::InvalidFingerprint)?;
        Ok(Self(bytes))
    }
}

/// The root certificates trusted for one trust domain.
#[derive(Clone, Debug)]
pub struct TrustBundle {
    roots: Vec<CertificateDer<'static>>,
}

impl TrustBundle {
    /// Parses a PEM bundle of one or more CA certificates.
    ///
    /// Every block must be a `CERTIFICATE` that parses as X.509 and is a CA
    /// (basicConstraints cA=true); the bundle is refused as a whole
    /// otherwise.
    pub fn from_pem(pem_text: &[u8]) -> Result<Self, BundleError> {
        if pem_text.len() > MAX_BUNDLE_BYTES {
            return Err(BundleError::TooLarge(pem_text.len()));
        }
        let blocks = pem::parse_many(pem_text).map_err(|e| BundleError::Pem(e.to_string()))?;
        if blocks.len() > MAX_BUNDLE_CERTS {
            return Err(BundleError::TooManyCertificates);
        }
        let mut ders = Vec::with_capacity(blocks.len());
        for block in blocks {
            if block.tag() != "CERTIFICATE" {
                return Err(BundleError::NotACertificate(block.tag().to_owned()));
            }
            ders.push(CertificateDer::from(block.into_contents()));
        }
        Self::from_der(ders)
    }

    /// Builds a bundle from DER certificates, with the same checks as
    /// [`TrustBundle::from_pem`].
    pub fn from_der(roots: Vec<CertificateDer<'static>>) -> Result<Self, BundleError> {
        if roots.is_empty() {
            return Err(BundleError::Empty);
        }
        if roots.len() > MAX_BUNDLE_CERTS {
            return Err(BundleError::TooManyCertificates);
        }
        for (index, der) in roots.iter().enumerate() {
            let (rest, cert) =
                X509Certificate::from_der(der).map_err(|e| BundleError::InvalidCertificate {
                    index,
                    reason: e.to_string(),
                })?;
            if !rest.is_empty() {
                return Err(BundleError::InvalidCertificate {
                    index,
                    reason: "trailing bytes after the certificate".into(),
                });
            }
            if !cert.is_ca() {
                return Err(BundleError::NotACa(index));
            }
        }
        Ok(Self { roots })
    }

    /// The root certificates, in bundle order.
    pub fn roots(&self) -> &[CertificateDer<'static>] {
        &self.roots
    }

    /// The fingerprints of the roots, in bundle order.
    pub fn fingerprints(&self) -> Vec<Fingerprint> {
        self.roots.iter().map(|c| Fingerprint::of(c)).collect()
    }

    /// Whether a root with this fingerprint is in the bundle.
    pub fn contains(&self, fingerprint: &Fingerprint) -> bool {
        self.roots
            .iter()
            .any(|c| Fingerprint::of(c) == *fingerprint)
    }

    /// The bundle as PEM, one `CERTIFICATE` block per root.
    pub fn to_pem(&self) -> String {
        crate::certs_to_pem(&self.roots)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_parse_in_the_usual_spellings() {
        let hex = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
        let plain: Fingerprint = hex.parse().unwrap();
        assert_eq!(plain.to_string(), hex);
        let openssl = format!(
            "SHA256 Fingerprint={}",
            hex.to_uppercase()
                .as_bytes()
                .chunks(2)
                .map(|c| std::str::from_utf8(c).unwrap())
                .collect::<Vec<_>>()
                .join(":")
        );
        assert_eq!(openssl.parse::<Fingerprint>().unwrap(), plain);
        assert_eq!(
            format!("sha256:{hex}").parse::<Fingerprint>().unwrap(),
            plain
        );
    }

    #[test]
    fn malformed_fingerprints_are_refused() {
        for bad in ["", "abc", &"0".repeat(63), &"0".repeat(66), &"g".repeat(64)] {
            assert!(bad.parse::<Fingerprint>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn malformed_bundles_are_refused() {
        assert!(matches!(
            TrustBundle::from_pem(b""),
            Err(BundleError::Empty)
        ));
        assert!(matches!(
            TrustBundle::from_pem(
                b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"
            ),
            Err(BundleError::NotACertificate(_))
        ));
        assert!(matches!(
            TrustBundle::from_pem(
                b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
            ),
            Err(BundleError::InvalidCertificate { index: 0, .. })
        ));
        let huge = vec![b'a'; MAX_BUNDLE_BYTES + 1];
        assert!(matches!(
            TrustBundle::from_pem(&huge),
            Err(BundleError::TooLarge(_))
        ));
    }
}
