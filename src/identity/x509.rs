//! Reading an identity out of an X.509 certificate: its URI SANs and the
//! instance id in its subject. Shared by the verifier (which checks them)
//! and the agent client (which reads back its own certificate); nothing
//! here decides whether a certificate is acceptable.

use x509_parser::extensions::GeneralName;
use x509_parser::prelude::X509Certificate;

use super::InstanceId;

/// The URIs among `cert`'s subject alternative names.
pub(crate) fn uri_sans<'a>(
    cert: &'a X509Certificate<'_>,
) -> Result<Vec<&'a str>, x509_parser::error::X509Error> {
    Ok(cert
        .subject_alternative_name()?
        .iter()
        .flat_map(|s| s.value.general_names.iter())
        .filter_map(|name| match name {
            GeneralName::URI(uri) => Some(*uri),
            _ => None,
        })
        .collect())
}

/// The instance id in `cert`'s subject serialNumber attribute, if any.
pub(crate) fn instance_id(cert: &X509Certificate<'_>) -> Option<InstanceId> {
    cert.subject()
        .iter_by_oid(&x509_parser::oid_registry::OID_X509_SERIALNUMBER)
        .next()
        .and_then(|a| a.as_str().ok())
        .and_then(|s| InstanceId::parse(s).ok())
}
