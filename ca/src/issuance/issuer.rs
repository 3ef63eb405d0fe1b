//! The issuing CA: the intermediate certificate and key that sign leaves,
//! CRLs and OCSP responses, and what verifiers need to find them.

use agentca::identity::TrustDomain;
use rcgen::{Issuer, KeyPair};
use rustls_pki_types::{CertificateDer, TrustAnchor};
use time::OffsetDateTime;
use x509_parser::prelude::{FromDer, X509Certificate};

pub use super::profile::Distribution;

/// The hashes that identify an issuer in an OCSP request (RFC 6960 CertID).
#[derive(Clone, Debug)]
pub struct OcspIssuerId {
    /// SHA-1 of the issuer's subject name DER.
    pub name_sha1: Vec<u8>,
    /// SHA-1 of the issuer's public key bits.
    pub key_sha1: Vec<u8>,
    /// SHA-256 of the issuer's subject name DER.
    pub name_sha256: Vec<u8>,
    /// SHA-256 of the issuer's public key bits.
    pub key_sha256: Vec<u8>,
}

/// Why the issuing CA could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct IssuerError(String);

/// The intermediate's key as it signs agent leaves: it signs the
/// to-be-signed bytes with the scopes OID in place of its stand-in (see
/// [`crate::issuance::profile::swap_scopes_oid`]).
pub struct LeafKey(KeyPair);

impl rcgen::PublicKeyData for LeafKey {
    fn der_bytes(&self) -> &[u8] {
        self.0.der_bytes()
    }

    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        self.0.algorithm()
    }
}

impl rcgen::SigningKey for LeafKey {
    fn sign(&self, tbs: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        match crate::issuance::profile::swap_scopes_oid(tbs).map_err(rcgen::Error::X509)? {
            Some(swapped) => self.0.sign(&swapped),
            None => self.0.sign(tbs),
        }
    }
}

/// The issuing intermediate with its key.
pub struct IssuingCa {
    trust_domain: TrustDomain,
    issuer: Issuer<'static, KeyPair>,
    leaf_issuer: Issuer<'static, LeafKey>,
    not_after: OffsetDateTime,
    root_not_after: OffsetDateTime,
    root: CertificateDer<'static>,
    anchor: TrustAnchor<'static>,
    intermediate: CertificateDer<'static>,
    intermediate_pem: String,
    bundle_pem: String,
    ocsp_id: OcspIssuerId,
    distribution: Distribution,
}

fn digest(alg: &'static aws_lc_rs::digest::Algorithm, data: &[u8]) -> Vec<u8> {
    aws_lc_rs::digest::digest(alg, data).as_ref().to_vec()
}

impl IssuingCa {
    /// The issuing CA for `trust_domain`: `intermediate` signed by `root`,
    /// with `key`; leaves point verifiers at `distribution`.
    pub fn new(
        trust_domain: TrustDomain,
        root: CertificateDer<'static>,
        intermediate: CertificateDer<'static>,
        key: KeyPair,
        distribution: Distribution,
    ) -> Result<Self, IssuerError> {
        let (_, parsed) = X509Certificate::from_der(&intermediate).map_err(|e| {
            IssuerError(format!("the intermediate certificate does not parse: {e}"))
        })?;
        let not_after = parsed.validity().not_after.to_datetime();
        let name = parsed.tbs_certificate.subject.as_raw();
        let key_bits = &parsed.tbs_certificate.subject_pki.subject_public_key.data;
        let ocsp_id = OcspIssuerId {
            name_sha1: digest(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY, name),
            key_sha1: digest(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY, key_bits),
            name_sha256: digest(&aws_lc_rs::digest::SHA256, name),
            key_sha256: digest(&aws_lc_rs::digest::SHA256, key_bits),
        };
        let root_not_after = X509Certificate::from_der(&root)
            .map_err(|e| IssuerError(format!("the root certificate does not parse: {e}")))?
            .1
            .validity()
            .not_after
            .to_datetime();
        let anchor = webpki::anchor_from_trusted_cert(&root)
            .map_err(|e| {
                IssuerError(format!(
                    "the root certificate is not a usable trust anchor: {e}"
                ))
            })?
            .to_owned();
        let leaf_key = KeyPair::try_from(key.serialize_der().as_slice())
            .map_err(|e| IssuerError(format!("the intermediate key is not usable: {e}")))?;
        let leaf_issuer = Issuer::from_ca_cert_der(&intermediate, LeafKey(leaf_key))
            .map_err(|e| IssuerError(format!("the intermediate certificate is not usable: {e}")))?;
        let issuer = Issuer::from_ca_cert_der(&intermediate, key)
            .map_err(|e| IssuerError(format!("the intermediate certificate is not usable: {e}")))?;
        Ok(Self {
            trust_domain,
            issuer,
            leaf_issuer,
            not_after,
            root_not_after,
            intermediate_pem: agentca::certs_to_pem(std::slice::from_ref(&intermediate)),
            bundle_pem: agentca::certs_to_pem(std::slice::from_ref(&root)),
            root,
            anchor,
            intermediate,
            ocsp_id,
            distribution,
        })
    }

    /// The trust domain.
    pub fn trust_domain(&self) -> &TrustDomain {
        &self.trust_domain
    }

    /// The rcgen issuer, for signing CRLs and the CA's own certificates.
    pub fn issuer(&self) -> &Issuer<'static, KeyPair> {
        &self.issuer
    }

    /// Signs the agent leaf `params` for `key`, with the scopes OID in
    /// place of its stand-in; the certificate's DER. Leaves without scopes
    /// are signed as they are.
    pub fn sign_leaf(
        &self,
        params: &rcgen::CertificateParams,
        key: &impl rcgen::PublicKeyData,
    ) -> Result<Vec<u8>, rcgen::Error> {
        if !crate::issuance::profile::has_scopes(params) {
            return Ok(params.signed_by(key, &self.issuer)?.der().to_vec());
        }
        let cert = params.signed_by(key, &self.leaf_issuer)?;
        // The signature covers the swapped bytes; make the certificate
        // say what was signed.
        Ok(crate::issuance::profile::swap_scopes_oid(cert.der())
            .map_err(rcgen::Error::X509)?
            .unwrap_or_else(|| cert.der().to_vec()))
    }

    /// End of the intermediate's validity.
    pub fn not_after(&self) -> OffsetDateTime {
        self.not_after
    }

    /// End of the root's validity.
    pub fn root_not_after(&self) -> OffsetDateTime {
        self.root_not_after
    }

    /// The root certificate.
    pub fn root(&self) -> &CertificateDer<'static> {
        &self.root
    }

    /// The root as a trust anchor.
    pub fn anchor(&self) -> &TrustAnchor<'static> {
        &self.anchor
    }

    /// The intermediate certificate.
    pub fn intermediate(&self) -> &CertificateDer<'static> {
        &self.intermediate
    }

    /// The intermediate as PEM.
    pub fn intermediate_pem(&self) -> &str {
        &self.intermediate_pem
    }

    /// The trust bundle (the root) as PEM.
    pub fn bundle_pem(&self) -> &str {
        &self.bundle_pem
    }

    /// What identifies this issuer in OCSP requests.
    pub fn ocsp_id(&self) -> &OcspIssuerId {
        &self.ocsp_id
    }

    /// The revocation URLs leaves carry.
    pub fn distribution(&self) -> &Distribution {
        &self.distribution
    }

    /// Signs `message` with the intermediate's key; also returns the DER
    /// of the signature AlgorithmIdentifier, for OCSP responses.
    pub fn sign_raw(
        &self,
        message: &[u8],
    ) -> Result<(Vec<u8>, spki::AlgorithmIdentifierOwned), IssuerError> {
        let key = self.issuer.key();
        let oid = signature_oid(key.algorithm()).ok_or_else(|| {
            IssuerError("the CA key's algorithm has no OCSP signature identifier".into())
        })?;
        let signature =
            rcgen::SigningKey::sign(key, message).map_err(|e| IssuerError(e.to_string()))?;
        Ok((
            signature,
            spki::AlgorithmIdentifierOwned {
                oid,
                parameters: None,
            },
        ))
    }
}

/// The X.509 signature algorithm OID of a CA key's algorithm.
fn signature_oid(alg: &'static rcgen::SignatureAlgorithm) -> Option<spki::ObjectIdentifier> {
    let oid = if alg == &rcgen::PKCS_ECDSA_P256_SHA256 {
        "1.2.840.10045.4.3.2"
    } else if alg == &rcgen::PKCS_ECDSA_P384_SHA384 {
        "1.2.840.10045.4.3.3"
    } else if alg == &rcgen::PKCS_ED25519 {
        "1.3.101.112"
    } else {
        return None;
    };
    spki::ObjectIdentifier::new(oid).ok()
}

/// An issuing CA made in memory, for `alg`, valid for a day from now:
/// for tests, benchmarks and fuzzing (never for issuing in earnest: its
/// keys live only in this process).
pub fn test_ca(alg: &'static rcgen::SignatureAlgorithm) -> IssuingCa {
    let td: TrustDomain = "example.org".parse().unwrap();
    let now = OffsetDateTime::now_utc();
    let root_key = KeyPair::generate_for(alg).unwrap();
    let root_params = super::profile::root(&td, now, now + time::Duration::days(1));
    let root = root_params.self_signed(&root_key).unwrap();
    let root_issuer = Issuer::new(root_params, &root_key);
    let int_key = KeyPair::generate_for(alg).unwrap();
    let int = super::profile::intermediate(&td, now, now + time::Duration::days(1))
        .signed_by(&int_key, &root_issuer)
        .unwrap();
    IssuingCa::new(
        td,
        root.der().clone(),
        int.der().clone(),
        int_key,
        Distribution::default(),
    )
    .unwrap()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn issuing_ca(alg: &'static rcgen::SignatureAlgorithm) -> IssuingCa {
        test_ca(alg)
    }

    /// A five-minute leaf of agent acme/prod/a1 with `scopes`, signed by
    /// `ca`, as DER.
    fn signed_leaf(ca: &IssuingCa, scopes: &[String]) -> Vec<u8> {
        let id: agentca::identity::AgentId = "spiffe://example.org/tenant/acme/env/prod/agent/a1"
            .parse()
            .unwrap();
        let now = OffsetDateTime::now_utc();
        let params = crate::issuance::profile::agent_leaf(
            &id,
            &agentca::identity::InstanceId::random(),
            &crate::issuance::profile::random_serial(),
            now,
            now + time::Duration::minutes(5),
            &Distribution::default(),
            scopes,
        )
        .unwrap();
        let agent_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        ca.sign_leaf(&params, &agent_key).unwrap()
    }

    #[test]
    fn scoped_leaves_carry_the_scopes_oid_under_a_valid_signature() {
        for alg in [
            &rcgen::PKCS_ECDSA_P256_SHA256,
            &rcgen::PKCS_ECDSA_P384_SHA384,
            &rcgen::PKCS_ED25519,
        ] {
            let ca = issuing_ca(alg);
            let scopes = vec!["db.orders:write".to_owned(), "tickets:read".to_owned()];
            let der = signed_leaf(&ca, &scopes);

            let (_, leaf) = X509Certificate::from_der(&der).unwrap();
            let (_, int) = X509Certificate::from_der(&ca.intermediate).unwrap();
            leaf.verify_signature(Some(int.public_key()))
                .expect("the signature covers the certificate as it is");
            let ext = leaf
                .extensions()
                .iter()
                .find(|e| e.oid.as_bytes() == agentca::scopes::SCOPES_OID_DER)
                .expect("the scopes extension, under its real OID");
            assert!(!ext.critical);
            assert_eq!(agentca::scopes::decode(ext.value).unwrap(), scopes);
            assert!(
                crate::issuance::profile::swap_scopes_oid(&der)
                    .unwrap()
                    .is_none(),
                "no stand-in left"
            );
        }
    }

    #[test]
    fn leaves_without_scopes_have_no_scopes_extension() {
        let ca = issuing_ca(&rcgen::PKCS_ECDSA_P256_SHA256);
        let der = signed_leaf(&ca, &[]);
        let (_, leaf) = X509Certificate::from_der(&der).unwrap();
        let (_, int) = X509Certificate::from_der(&ca.intermediate).unwrap();
        leaf.verify_signature(Some(int.public_key())).unwrap();
        assert_eq!(leaf.extensions().len(), 6, "SAN, BC, KU, EKU, AKI, SKI");
        assert!(leaf
            .extensions()
            .iter()
            .all(|e| e.oid.as_bytes() != agentca::scopes::SCOPES_OID_DER));
    }
}
