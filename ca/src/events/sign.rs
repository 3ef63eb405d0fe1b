//! Signing Security Event Tokens: a compact JWS (RFC 7515) with ES256.
//!
//! Each CA process makes its own P-256 key before its first token and has
//! the issuing intermediate certify it ([`profile::event_signer`]: the trust domain's
//! SPIFFE ID, for document signing only); the key never leaves the
//! process, and is replaced when half its certificate's life has passed.
//! Every token carries the certificate and the intermediate in `x5c`, so a
//! receiver that trusts the agentca root (the trust bundle it already
//! pins) verifies a token without fetching anything, whichever replica
//! signed it.

use aws_lc_rs::digest;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair as _, ECDSA_P256_SHA256_FIXED_SIGNING};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use serde_json::{json, Value};
use time::{Duration, OffsetDateTime};

use crate::issuance::issuer::IssuingCa;
use crate::issuance::profile;

/// How long a signing certificate is valid (at most the intermediate's
/// remaining life).
pub const LIFETIME: Duration = Duration::hours(24);

/// Why no signer could be made, or a token not signed.
#[derive(Debug, thiserror::Error)]
#[error("security event signing: {0}")]
pub struct SignError(String);

impl SignError {
    /// An error saying `what`.
    pub fn new(what: impl Into<String>) -> Self {
        Self(what.into())
    }
}

/// One process's signing key and its certificate.
pub struct Signer {
    key: EcdsaKeyPair,
    rng: SystemRandom,
    /// The JOSE header, base64url.
    header: String,
    /// The RFC 7638 thumbprint of the key, the header's `kid`.
    kid: String,
    serial: [u8; 16],
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
}

impl Signer {
    /// A fresh key, certified by `ca` from `now` for [`LIFETIME`].
    pub fn issue(ca: &IssuingCa, now: OffsetDateTime) -> Result<Self, SignError> {
        let err = |e: &dyn std::fmt::Display| SignError(e.to_string());
        let generated = rcgen::KeyPair::generate().map_err(|e| err(&e))?;
        let key =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &generated.serialize_der())
                .map_err(|e| err(&e))?;
        let (not_before, not_after) = profile::leaf_validity(now, LIFETIME, ca.not_after());
        if not_after <= now {
            return Err(SignError("the issuing certificate has expired".into()));
        }
        let serial = profile::random_serial();
        let params = profile::event_signer(ca.trust_domain(), &serial, not_before, not_after)
            .map_err(|e| err(&e))?;
        let cert = params
            .signed_by(&generated, ca.issuer())
            .map_err(|e| err(&e))?;
        let kid = thumbprint(key.public_key().as_ref());
        let header = json!({
            "alg": "ES256",
            "typ": "secevent+jwt",
            "kid": kid,
            "x5c": [STANDARD.encode(cert.der()), STANDARD.encode(ca.intermediate())],
        });
        Ok(Self {
            key,
            rng: SystemRandom::new(),
            header: URL_SAFE_NO_PAD.encode(header.to_string()),
            kid,
            serial,
            not_before,
            not_after,
        })
    }

    /// Whether the key is due for replacement at `now`: half its
    /// certificate's life has passed.
    pub fn renewal_due(&self, now: OffsetDateTime) -> bool {
        now >= self.not_before + (self.not_after - self.not_before) / 2
    }

    /// The key's id (`kid`).
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// Its certificate's serial number.
    pub fn serial(&self) -> &[u8] {
        &self.serial
    }

    /// When its certificate expires.
    pub fn not_after(&self) -> OffsetDateTime {
        self.not_after
    }

    /// `claims` as a signed token (JWS compact serialization).
    pub fn sign(&self, claims: &Value) -> Result<String, SignError> {
        let signing_input = format!(
            "{}.{}",
            self.header,
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let signature = self
            .key
            .sign(&self.rng, signing_input.as_bytes())
            .map_err(|e| SignError(e.to_string()))?;
        Ok(format!(
            "{signing_input}.{}",
            URL_SAFE_NO_PAD.encode(signature.as_ref())
        ))
    }
}

/// The JWK thumbprint (RFC 7638) of an uncompressed P-256 point.
fn thumbprint(point: &[u8]) -> String {
    let (x, y) = point[1..].split_at(32);
    let jwk = format!(
        r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#,
        URL_SAFE_NO_PAD.encode(x),
        URL_SAFE_NO_PAD.encode(y)
    );
    URL_SAFE_NO_PAD.encode(digest::digest(&digest::SHA256, jwk.as_bytes()))
}

#[cfg(test)]
mod tests {
    use aws_lc_rs::signature::{UnparsedPublicKey, ECDSA_P256_SHA256_FIXED};
    use x509_parser::prelude::*;

    use super::*;
    use crate::issuance::issuer::test_ca;

    #[test]
    fn a_token_verifies_with_the_key_of_its_certificate_which_chains_to_the_root() {
        let ca = test_ca(&rcgen::PKCS_ECDSA_P256_SHA256);
        let now = OffsetDateTime::now_utc();
        let signer = Signer::issue(&ca, now).unwrap();
        let token = signer.sign(&json!({ "jti": "x" })).unwrap();
        let parts: Vec<&str> = token.split('.').collect();
        assert_eq!(parts.len(), 3);
        let header: Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
        assert_eq!(header["alg"], "ES256");
        assert_eq!(header["typ"], "secevent+jwt");
        assert_eq!(header["kid"], signer.kid());
        let leaf = STANDARD.decode(header["x5c"][0].as_str().unwrap()).unwrap();
        let (_, cert) = X509Certificate::from_der(&leaf).unwrap();
        let (_, intermediate) = X509Certificate::from_der(ca.intermediate()).unwrap();
        cert.verify_signature(Some(intermediate.public_key()))
            .unwrap();
        assert_eq!(
            STANDARD.decode(header["x5c"][1].as_str().unwrap()).unwrap(),
            ca.intermediate().to_vec()
        );
        // Document signing only: no TLS purpose.
        let eku = cert.extended_key_usage().unwrap().unwrap().value;
        assert!(!eku.client_auth && !eku.server_auth && !eku.any);
        let purposes: Vec<String> = eku.other.iter().map(|o| o.to_id_string()).collect();
        assert_eq!(purposes, ["1.3.6.1.5.5.7.3.36"]);
        assert_eq!(cert.raw_serial(), signer.serial());
        let san = cert.subject_alternative_name().unwrap().unwrap().value;
        assert_eq!(
            san.general_names,
            vec![GeneralName::URI(&format!("spiffe://{}", ca.trust_domain()))]
        );
        let key = UnparsedPublicKey::new(
            &ECDSA_P256_SHA256_FIXED,
            cert.public_key().subject_public_key.data.to_vec(),
        );
        let signed = format!("{}.{}", parts[0], parts[1]);
        let signature = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
        key.verify(signed.as_bytes(), &signature).unwrap();
        assert!(key.verify(b"other", &signature).is_err());
    }

    #[test]
    fn the_key_is_replaced_at_half_life() {
        let ca = test_ca(&rcgen::PKCS_ECDSA_P256_SHA256);
        let now = profile::whole_seconds(OffsetDateTime::now_utc());
        let signer = Signer::issue(&ca, now).unwrap();
        let half = (signer.not_after - signer.not_before) / 2;
        assert!(!signer.renewal_due(signer.not_before + half - Duration::seconds(1)));
        assert!(signer.renewal_due(signer.not_before + half));
    }
}
