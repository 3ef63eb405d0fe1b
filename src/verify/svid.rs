//! The X.509-SVID rules for a peer's leaf certificate, and the identity it
//! carries.

use rustls_pki_types::CertificateDer;
use time::OffsetDateTime;
use x509_parser::prelude::{FromDer, X509Certificate};

use super::{PeerIdentity, Usage, VerifyError};
use crate::identity::x509::{instance_id, uri_sans};
use crate::identity::{AgentId, IdError, TrustDomain};
use crate::wire::Serial;

/// Checks `leaf` against the X.509-SVID rules for a peer of `trust_domain`
/// used for `usage`, and its validity at `now`. The signature chain is
/// checked separately.
pub(super) fn check_leaf(
    leaf: &CertificateDer<'_>,
    trust_domain: &TrustDomain,
    usage: Usage,
    now: OffsetDateTime,
) -> Result<PeerIdentity, VerifyError> {
    let malformed = |e: &dyn std::fmt::Display| VerifyError::Malformed(e.to_string());
    let (rest, cert) = X509Certificate::from_der(leaf).map_err(|e| malformed(&e))?;
    if !rest.is_empty() {
        return Err(VerifyError::Malformed(
            "trailing bytes after the certificate".into(),
        ));
    }

    // Exactly one URI SAN, a SPIFFE ID of an agent of our trust domain.
    let uris = uri_sans(&cert).map_err(|e| malformed(&e))?;
    let uri = match uris[..] {
        [] => return Err(VerifyError::NoUriSan),
        [uri] => uri,
        _ => return Err(VerifyError::MultipleUriSans(uris.len())),
    };
    let rest = uri
        .strip_prefix("spiffe://")
        .ok_or_else(|| VerifyError::NotSpiffe(uri.to_owned()))?;
    let authority = rest.split('/').next().unwrap_or_default();
    if authority != trust_domain.as_str() {
        return Err(VerifyError::ForeignTrustDomain {
            expected: trust_domain.to_string(),
            found: authority.to_owned(),
        });
    }
    let id = AgentId::parse(uri).map_err(|e| match e {
        IdError::WrongScheme => VerifyError::NotSpiffe(uri.to_owned()),
        other => VerifyError::NotAnAgentId(other),
    })?;

    // A leaf, for signing handshakes only.
    if cert
        .basic_constraints()
        .map_err(|e| malformed(&e))?
        .is_some_and(|bc| bc.value.ca)
    {
        return Err(VerifyError::LeafIsCa);
    }
    match cert.key_usage().map_err(|e| malformed(&e))? {
        Some(ku) if ku.value.key_cert_sign() => {
            return Err(VerifyError::ForbiddenKeyUsage("keyCertSign"))
        }
        Some(ku) if ku.value.crl_sign() => return Err(VerifyError::ForbiddenKeyUsage("cRLSign")),
        Some(ku) if !ku.value.digital_signature() => {
            return Err(VerifyError::MissingDigitalSignature)
        }
        _ => {}
    }
    let eku = cert.extended_key_usage().map_err(|e| malformed(&e))?;
    let has_eku = eku.is_some_and(|e| match usage {
        Usage::Client => e.value.client_auth,
        Usage::Server => e.value.server_auth,
    });
    if !has_eku {
        return Err(VerifyError::MissingExtendedKeyUsage(usage));
    }

    let validity = cert.validity();
    let not_before = validity.not_before.to_datetime();
    let not_after = validity.not_after.to_datetime();
    if now < not_before {
        return Err(VerifyError::NotYetValid(not_before));
    }
    if now > not_after {
        return Err(VerifyError::Expired(not_after));
    }

    let instance_id = instance_id(&cert);
    let serial = Serial::from_bytes(cert.raw_serial()).map_err(|_| {
        VerifyError::Malformed("the serial is empty or longer than 20 bytes".into())
    })?;
    let scopes = match cert
        .extensions()
        .iter()
        .find(|e| e.oid.as_bytes() == crate::scopes::SCOPES_OID_DER)
    {
        Some(ext) => crate::scopes::decode(ext.value).map_err(|e| malformed(&e))?,
        None => Vec::new(),
    };
    Ok(PeerIdentity {
        spiffe_id: id,
        instance_id,
        serial,
        not_after,
        scopes,
    })
}
