//! What goes into each certificate the CA signs.
//!
//! The agent leaf profile (DESIGN.md, "Certificates"):
//!
//! | field | value |
//! |---|---|
//! | serial | 16 random bytes, positive |
//! | validity | notBefore = now − 30 s; notAfter = now + ttl, capped at the issuer's notAfter |
//! | subject | O=tenant, OU=env, CN=agent, serialNumber=instance id |
//! | SAN | exactly one URI: the SPIFFE ID |
//! | basicConstraints | critical, cA=false |
//! | keyUsage | critical, digitalSignature |
//! | extKeyUsage | serverAuth and clientAuth |
//! | AKI / SKI | present |
//! | CRL distribution point | the CA's CRL URLs |
//! | Authority Information Access | the CA's OCSP URLs |
//! | agentca scopes (non-critical) | the registration's scopes, when it has any ([`agentca::scopes`]) |
//!
//! rcgen writes OIDs from 64-bit arcs, and the scopes OID (under 2.25) has
//! a 128-bit arc. The leaf is therefore built with a stand-in OID whose DER
//! is exactly as long ([`SCOPES_STAND_IN`]); the issuing key swaps it for
//! the real OID in the to-be-signed bytes before signing
//! ([`super::issuer::LeafKey`]), and [`swap_scopes_oid`] does the same in
//! the finished certificate. Lengths do not change, so the DER stays valid
//! and the signature covers the real OID.

use std::net::IpAddr;

use agentca::identity::{AgentId, InstanceId, TrustDomain};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, DnValue,
    ExtendedKeyUsagePurpose, IsCa, KeyUsagePurpose, SanType, SerialNumber,
};
use time::{Duration, OffsetDateTime};

/// How far notBefore is set in the past, for clocks that run behind.
pub const BACKDATE: Duration = Duration::seconds(30);

/// OID of the X.520 serialNumber attribute, which carries the instance id.
const OID_SERIAL_NUMBER: &[u64] = &[2, 5, 4, 5];
/// OID of the Authority Information Access extension.
const OID_AUTHORITY_INFO_ACCESS: &[u64] = &[1, 3, 6, 1, 5, 5, 7, 1, 1];

/// The stand-in for the scopes OID while rcgen builds a leaf: 2.25 then
/// two arcs of 57–63 bits ("agentca1", "Scopes_1") and 1, so that its DER
/// is as long as the real OID's (20 content octets).
pub const SCOPES_STAND_IN: &[u64] = &[2, 25, 0x6167_656e_7463_6131, 0x5363_6f70_6573_5f31, 1];

/// The DER (tag, length, content) of the OID with `arcs` (ours: valid,
/// and shorter than 128 content octets).
fn oid_der(arcs: &[u64]) -> Vec<u8> {
    let oid = x509_parser::asn1_rs::Oid::from(arcs).expect("a valid OID");
    let content = oid.as_bytes();
    let mut der = vec![0x06, content.len() as u8];
    der.extend_from_slice(content);
    der
}

/// Swaps the stand-in OID for the scopes OID in `der` (a certificate or
/// its to-be-signed part): `None` when the stand-in is absent, an error
/// when it occurs more than once (which an honest leaf never does).
pub fn swap_scopes_oid(der: &[u8]) -> Result<Option<Vec<u8>>, String> {
    static STAND_IN: std::sync::LazyLock<Vec<u8>> =
        std::sync::LazyLock::new(|| oid_der(SCOPES_STAND_IN));
    let real = &agentca::scopes::SCOPES_OID_DER;
    // Tag and length are the same; only the content octets change.
    let (header, content) = STAND_IN.split_at(2);
    let mut found = der
        .windows(STAND_IN.len())
        .enumerate()
        .filter(|(_, w)| *w == STAND_IN.as_slice())
        .map(|(i, _)| i + header.len());
    let Some(at) = found.next() else {
        return Ok(None);
    };
    if found.next().is_some() {
        return Err("the scopes stand-in OID occurs more than once".into());
    }
    debug_assert_eq!(content.len(), real.len());
    let mut out = der.to_vec();
    out[at..at + real.len()].copy_from_slice(real);
    Ok(Some(out))
}

/// Whether `params` carry the scopes extension (under its stand-in OID).
pub fn has_scopes(params: &CertificateParams) -> bool {
    params
        .custom_extensions
        .iter()
        .any(|e| e.oid_components().eq(SCOPES_STAND_IN.iter().copied()))
}

/// 16 random bytes from the OS RNG, as a positive serial that always
/// encodes in 16 bytes (the top bit clear, the next one set).
pub fn random_serial() -> [u8; 16] {
    let mut bytes = [0u8; 16];
    aws_lc_rs::rand::fill(&mut bytes).expect("the operating system RNG failed");
    bytes[0] = (bytes[0] & 0x7f) | 0x40;
    bytes
}

/// The time truncated to whole seconds, as X.509 validity stores it.
pub fn whole_seconds(t: OffsetDateTime) -> OffsetDateTime {
    t.replace_nanosecond(0).unwrap_or(t)
}

/// The validity of a leaf issued at `now` for `ttl`: backdated by
/// [`BACKDATE`], and ending no later than the issuer does.
pub fn leaf_validity(
    now: OffsetDateTime,
    ttl: Duration,
    issuer_not_after: OffsetDateTime,
) -> (OffsetDateTime, OffsetDateTime) {
    let now = whole_seconds(now);
    (now - BACKDATE, (now + ttl).min(issuer_not_after))
}

/// The parameters of an agent certificate.
pub fn agent_leaf(
    id: &AgentId,
    instance: &InstanceId,
    serial: &[u8; 16],
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
    distribution: &Distribution,
    scopes: &[String],
) -> Result<CertificateParams, rcgen::Error> {
    let mut params = CertificateParams::default();
    params.serial_number = Some(SerialNumber::from_slice(serial));
    params.not_before = not_before;
    params.not_after = not_after;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, id.tenant().as_str());
    dn.push(DnType::OrganizationalUnitName, id.env().as_str());
    dn.push(DnType::CommonName, id.agent().as_str());
    dn.push(
        DnType::CustomDnType(OID_SERIAL_NUMBER.to_vec()),
        DnValue::PrintableString(instance.as_str().try_into()?),
    );
    params.distinguished_name = dn;
    params.subject_alt_names = vec![SanType::URI(id.to_string().try_into()?)];
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.use_authority_key_identifier_extension = true;
    if !distribution.crl.is_empty() {
        params.crl_distribution_points = vec![rcgen::CrlDistributionPoint {
            uris: distribution.crl.clone(),
        }];
    }
    if !distribution.ocsp.is_empty() {
        params
            .custom_extensions
            .push(rcgen::CustomExtension::from_oid_content(
                OID_AUTHORITY_INFO_ACCESS,
                aia_ocsp_der(&distribution.ocsp),
            ));
    }
    if !scopes.is_empty() {
        params
            .custom_extensions
            .push(rcgen::CustomExtension::from_oid_content(
                SCOPES_STAND_IN,
                agentca::scopes::encode(scopes),
            ));
    }
    Ok(params)
}

/// The parameters of the root CA: may sign one level of intermediates.
pub fn root(
    trust_domain: &TrustDomain,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
) -> CertificateParams {
    let mut params = ca_params(not_before, not_after, BasicConstraints::Constrained(1));
    params.distinguished_name = ca_name(trust_domain, "root CA");
    params
}

/// The parameters of the issuing intermediate: signs leaves only.
pub fn intermediate(
    trust_domain: &TrustDomain,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
) -> CertificateParams {
    let mut params = ca_params(not_before, not_after, BasicConstraints::Constrained(0));
    params.distinguished_name = ca_name(trust_domain, "issuing CA");
    params.use_authority_key_identifier_extension = true;
    params
}

fn ca_name(trust_domain: &TrustDomain, role: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "agentca");
    dn.push(
        DnType::CommonName,
        format!("agentca {role} for {trust_domain}"),
    );
    dn
}

fn ca_params(
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
    constraints: BasicConstraints,
) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.serial_number = Some(SerialNumber::from_slice(&random_serial()));
    params.not_before = whole_seconds(not_before);
    params.not_after = whole_seconds(not_after);
    params.is_ca = IsCa::Ca(constraints);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params
}

/// A name the CA's own TLS server certificate is valid for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServerName {
    /// A DNS name.
    Dns(String),
    /// An IP address.
    Ip(IpAddr),
}

impl std::str::FromStr for ServerName {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if let Ok(ip) = s.parse::<IpAddr>() {
            return Ok(ServerName::Ip(ip));
        }
        rustls_pki_types::DnsName::try_from(s)
            .map(|_| ServerName::Dns(s.to_ascii_lowercase()))
            .map_err(|_| format!("{s:?} is neither a DNS name nor an IP address"))
    }
}

/// The parameters of the CA's TLS server certificate.
pub fn server(
    trust_domain: &TrustDomain,
    names: &[ServerName],
    serial: &[u8; 16],
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
) -> Result<CertificateParams, rcgen::Error> {
    let names = names
        .iter()
        .map(|n| match n {
            ServerName::Dns(d) => Ok(SanType::DnsName(d.clone().try_into()?)),
            ServerName::Ip(ip) => Ok(SanType::IpAddress(*ip)),
        })
        .collect::<Result<_, rcgen::Error>>()?;
    Ok(own_certificate(
        ca_name(trust_domain, "server"),
        names,
        ExtendedKeyUsagePurpose::ServerAuth,
        serial,
        not_before,
        not_after,
    ))
}

/// The parameters of a certificate the CA issues for itself (its TLS
/// server, its event signer): named `name`, with the SANs `names`, not a
/// CA, for digital signatures with the one `purpose`.
fn own_certificate(
    name: DistinguishedName,
    names: Vec<SanType>,
    purpose: ExtendedKeyUsagePurpose,
    serial: &[u8; 16],
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.serial_number = Some(SerialNumber::from_slice(serial));
    params.not_before = whole_seconds(not_before);
    params.not_after = whole_seconds(not_after);
    params.distinguished_name = name;
    params.subject_alt_names = names;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![purpose];
    params.use_authority_key_identifier_extension = true;
    params
}

/// id-kp-documentSigning (RFC 9336): the only purpose of the security
/// events' signing certificate, so that no TLS peer takes it for a client
/// or a server.
pub const DOCUMENT_SIGNING: &[u64] = &[1, 3, 6, 1, 5, 5, 7, 3, 36];

/// The parameters of the certificate that signs the CA's Security Event
/// Tokens: its URI SAN is the trust domain's own SPIFFE ID (no path, so no
/// verifier takes it for an agent), the tokens' `iss`.
pub fn event_signer(
    trust_domain: &TrustDomain,
    serial: &[u8; 16],
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
) -> Result<CertificateParams, rcgen::Error> {
    Ok(own_certificate(
        ca_name(trust_domain, "security events"),
        vec![SanType::URI(format!("spiffe://{trust_domain}").try_into()?)],
        ExtendedKeyUsagePurpose::Other(DOCUMENT_SIGNING.to_vec()),
        serial,
        not_before,
        not_after,
    ))
}

/// Where verifiers fetch revocation data: the URLs put in every leaf's CRL
/// distribution point and Authority Information Access extensions.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Distribution {
    /// URLs of the issuing CA's CRL (`…/v1/crl`).
    pub crl: Vec<String>,
    /// URLs of the OCSP responder (`…/v1/ocsp`).
    pub ocsp: Vec<String>,
}

impl Distribution {
    /// The URLs under each base URL (`http://host:port`), in order.
    pub fn under(bases: &[String]) -> Self {
        let base = |b: &String| b.trim_end_matches('/').to_owned();
        Self {
            crl: bases
                .iter()
                .map(|b| format!("{}/v1/crl", base(b)))
                .collect(),
            ocsp: bases
                .iter()
                .map(|b| format!("{}/v1/ocsp", base(b)))
                .collect(),
        }
    }
}

/// The DER of an Authority Information Access extension value listing
/// OCSP responders (RFC 5280 §4.2.2.1).
pub fn aia_ocsp_der(urls: &[String]) -> Vec<u8> {
    // id-ad-ocsp, 1.3.6.1.5.5.7.48.1
    const OCSP_OID: [u8; 10] = [0x06, 0x08, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x30, 0x01];
    let mut descriptions = Vec::new();
    for url in urls {
        let mut description = OCSP_OID.to_vec();
        // accessLocation: GeneralName uniformResourceIdentifier, [6] IMPLICIT IA5String
        description.extend(tlv(0x86, url.as_bytes()));
        descriptions.extend(tlv(0x30, &description));
    }
    tlv(0x30, &descriptions)
}

fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(content);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stand_in_is_as_long_as_the_scopes_oid() {
        let stand_in = oid_der(SCOPES_STAND_IN);
        assert_eq!(stand_in.len(), 2 + agentca::scopes::SCOPES_OID_DER.len());
        assert_eq!(stand_in[1] as usize, agentca::scopes::SCOPES_OID_DER.len());
        // The same bytes as rcgen writes for it.
        let mut params = CertificateParams::default();
        params
            .custom_extensions
            .push(rcgen::CustomExtension::from_oid_content(
                SCOPES_STAND_IN,
                vec![0x05, 0x00],
            ));
        let key = rcgen::KeyPair::generate().unwrap();
        let der = params.self_signed(&key).unwrap().der().to_vec();
        assert!(der
            .windows(stand_in.len())
            .any(|w| w == stand_in.as_slice()));
        assert!(has_scopes(&params));
        assert!(!has_scopes(&CertificateParams::default()));
    }

    #[test]
    fn the_stand_in_is_swapped_once_or_refused() {
        let stand_in = oid_der(SCOPES_STAND_IN);
        assert_eq!(swap_scopes_oid(b"no oid here").unwrap(), None);
        let mut one = b"abc".to_vec();
        one.extend(&stand_in);
        one.extend(b"xyz");
        let swapped = swap_scopes_oid(&one).unwrap().unwrap();
        assert_eq!(swapped.len(), one.len());
        assert_eq!(&swapped[5..25], agentca::scopes::SCOPES_OID_DER);
        assert_eq!(&swapped[25..], b"xyz");
        let mut two = one.clone();
        two.extend(&stand_in);
        assert!(swap_scopes_oid(&two).is_err());
    }

    #[test]
    fn serials_are_random_positive_and_sixteen_bytes() {
        let a = random_serial();
        let b = random_serial();
        assert_ne!(a, b);
        for s in [a, b] {
            assert_eq!(s[0] & 0x80, 0);
            assert_ne!(s[0], 0);
        }
    }

    #[test]
    fn validity_is_backdated_and_capped_at_the_issuer() {
        let now = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap()
            + Duration::milliseconds(700);
        let issuer_end = OffsetDateTime::from_unix_timestamp(1_800_000_100).unwrap();
        let (nb, na) = leaf_validity(now, Duration::minutes(5), issuer_end);
        assert_eq!(nb.unix_timestamp(), 1_800_000_000 - 30);
        assert_eq!(nb.nanosecond(), 0);
        assert_eq!(na, issuer_end);
        let (_, na) = leaf_validity(now, Duration::seconds(60), issuer_end);
        assert_eq!(na.unix_timestamp(), 1_800_000_060);
    }

    #[test]
    fn the_aia_extension_parses_back_to_its_urls() {
        use x509_parser::prelude::FromDer;
        let urls = vec![
            "http://127.0.0.1:8080/v1/ocsp".to_owned(),
            format!("https://{}/v1/ocsp", "a".repeat(200)),
        ];
        let der = aia_ocsp_der(&urls);
        let (rest, aia) = x509_parser::extensions::AuthorityInfoAccess::from_der(&der)
            .expect("valid AuthorityInfoAccess");
        assert!(rest.is_empty());
        let parsed: Vec<String> = aia
            .accessdescs
            .iter()
            .map(|d| match &d.access_location {
                x509_parser::extensions::GeneralName::URI(u) => u.to_string(),
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        assert_eq!(parsed, urls);
    }

    #[test]
    fn distribution_urls_sit_under_each_base() {
        let d = Distribution::under(&["http://a:1/".into(), "https://b:2".into()]);
        assert_eq!(d.crl, ["http://a:1/v1/crl", "https://b:2/v1/crl"]);
        assert_eq!(d.ocsp, ["http://a:1/v1/ocsp", "https://b:2/v1/ocsp"]);
    }
}
