//! Certificate signing requests: what the CA takes from them.
//!
//! A CSR proves possession of a key (its signature is checked) and supplies
//! the public key. Nothing else in it is used: its subject, SANs and
//! requested extensions are ignored, since the identity comes from the
//! token or the presented certificate.

use x509_parser::oid_registry::{
    OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY, OID_NIST_EC_P384, OID_SIG_ED25519,
};
use x509_parser::prelude::{FromDer, X509CertificationRequest};

/// Largest CSR accepted, in bytes of PEM.
pub const MAX_CSR_PEM_LEN: usize = 16 * 1024;

/// Why a CSR was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CsrError {
    /// Not PEM, or not a `CERTIFICATE REQUEST` block, or too large.
    #[error("the CSR is not a PEM certificate request: {0}")]
    Malformed(String),
    /// The signature does not verify with the request's own key.
    #[error("the CSR's signature does not verify with its public key")]
    SignatureInvalid,
    /// The key is of a type the CA does not issue for.
    #[error("the CSR's key is {0}; allowed are ECDSA P-256, ECDSA P-384 and Ed25519")]
    KeyTypeNotAllowed(String),
}

/// The parts of a verified CSR the CA uses.
#[derive(Debug)]
pub struct CheckedCsr {
    /// The SubjectPublicKeyInfo DER.
    pub spki_der: Vec<u8>,
    /// SHA-256 of the SubjectPublicKeyInfo DER, as hex.
    pub key_sha256: String,
}

/// Parses a PEM CSR, checks its key type and its signature.
pub fn check(pem_text: &str) -> Result<CheckedCsr, CsrError> {
    if pem_text.len() > MAX_CSR_PEM_LEN {
        return Err(CsrError::Malformed(format!(
            "it is {} bytes; the limit is {MAX_CSR_PEM_LEN}",
            pem_text.len()
        )));
    }
    let block = pem::parse(pem_text).map_err(|e| CsrError::Malformed(e.to_string()))?;
    if block.tag() != "CERTIFICATE REQUEST" && block.tag() != "NEW CERTIFICATE REQUEST" {
        return Err(CsrError::Malformed(format!(
            "the PEM block is {:?}, not \"CERTIFICATE REQUEST\"",
            block.tag()
        )));
    }
    let (rest, csr) = X509CertificationRequest::from_der(block.contents())
        .map_err(|e| CsrError::Malformed(format!("invalid DER: {e}")))?;
    if !rest.is_empty() {
        return Err(CsrError::Malformed(
            "trailing bytes after the request".into(),
        ));
    }
    let spki = &csr.certification_request_info.subject_pki;
    check_key_type(spki)?;
    csr.verify_signature()
        .map_err(|_| CsrError::SignatureInvalid)?;
    let spki_der = spki.raw.to_vec();
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &spki_der);
    Ok(CheckedCsr {
        key_sha256: crate::hex(digest.as_ref()),
        spki_der,
    })
}

/// What kind of key `spki` is, for people: `Ed25519`, `ECDSA P-256`,
/// `ECDSA P-384`, `ECDSA on curve …`, `RSA-2048`, `the algorithm …`.
pub fn key_name(spki: &x509_parser::x509::SubjectPublicKeyInfo<'_>) -> String {
    let alg = &spki.algorithm;
    if alg.algorithm == OID_SIG_ED25519 {
        return "Ed25519".into();
    }
    if alg.algorithm == OID_KEY_TYPE_EC_PUBLIC_KEY {
        return match alg.parameters.as_ref().and_then(|p| p.as_oid().ok()) {
            Some(c) if c == OID_EC_P256 => "ECDSA P-256".into(),
            Some(c) if c == OID_NIST_EC_P384 => "ECDSA P-384".into(),
            Some(c) => format!("ECDSA on curve {c}"),
            None => "ECDSA without a named curve".into(),
        };
    }
    match alg.algorithm.to_id_string().as_str() {
        "1.2.840.113549.1.1.1" => {
            let bits = match spki.parsed() {
                Ok(x509_parser::public_key::PublicKey::RSA(rsa)) => rsa.key_size(),
                _ => 0,
            };
            format!("RSA-{bits}")
        }
        other => format!("the algorithm {other}"),
    }
}

/// Whether agents may have a key of this kind: ECDSA P-256, P-384, Ed25519.
fn check_key_type(spki: &x509_parser::x509::SubjectPublicKeyInfo<'_>) -> Result<(), CsrError> {
    match key_name(spki).as_str() {
        "Ed25519" | "ECDSA P-256" | "ECDSA P-384" => Ok(()),
        other => Err(CsrError::KeyTypeNotAllowed(other.to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use agentca::client::{KeyAlgorithm, PrivateKey};

    #[test]
    fn csrs_of_allowed_key_types_pass() {
        for alg in [
            KeyAlgorithm::P256,
            KeyAlgorithm::P384,
            KeyAlgorithm::Ed25519,
        ] {
            let key = PrivateKey::generate(alg).unwrap();
            let checked = check(&key.csr_pem().unwrap()).unwrap();
            assert_eq!(checked.spki_der, key.public_key_der());
            assert_eq!(checked.key_sha256.len(), 64);
        }
    }

    #[test]
    fn a_csr_with_a_broken_signature_is_refused() {
        let key = PrivateKey::generate(KeyAlgorithm::P256).unwrap();
        let pem_text = key.csr_pem().unwrap();
        let mut der = pem::parse(&pem_text).unwrap().into_contents();
        let last = der.len() - 1;
        der[last] ^= 0x01;
        let tampered = pem::encode(&pem::Pem::new("CERTIFICATE REQUEST", der));
        assert_eq!(check(&tampered).unwrap_err(), CsrError::SignatureInvalid);
    }

    #[test]
    fn malformed_csrs_are_refused() {
        assert!(matches!(check("not pem"), Err(CsrError::Malformed(_))));
        assert!(matches!(
            check("-----BEGIN CERTIFICATE-----\nMAA=\n-----END CERTIFICATE-----\n"),
            Err(CsrError::Malformed(_))
        ));
        assert!(matches!(
            check("-----BEGIN CERTIFICATE REQUEST-----\nMAA=\n-----END CERTIFICATE REQUEST-----\n"),
            Err(CsrError::Malformed(_))
        ));
        assert!(matches!(
            check(&"a".repeat(MAX_CSR_PEM_LEN + 1)),
            Err(CsrError::Malformed(_))
        ));
    }
}
