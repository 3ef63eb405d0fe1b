//! Certificate revocation lists (RFC 5280 §5).
//!
//! Certificates live minutes, so a CRL lists only the revoked certificates
//! that have not yet expired: it stays small however many agents there are.
//! Each CRL carries a number that only grows (persisted in the store), a
//! short validity window, and an issuing distribution point naming the URLs
//! that the leaves' CRL distribution points name, as RFC 5280 and webpki
//! require for a CRL to be authoritative for those leaves.

use agentca::wire::Serial;
use rcgen::{
    CertificateRevocationListParams, CrlDistributionPoint, CrlIssuingDistributionPoint, CrlScope,
    Issuer, KeyIdMethod, KeyPair, RevocationReason, RevokedCertParams, SerialNumber,
};
use time::{Duration, OffsetDateTime};

/// One revoked certificate on a CRL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Its serial.
    pub serial: Serial,
    /// When it was revoked.
    pub revoked_at: OffsetDateTime,
    /// RFC 5280 reason code.
    pub reason: u8,
}

/// A signed CRL, ready to serve.
#[derive(Clone, Debug)]
pub struct SignedCrl {
    /// DER.
    pub der: Vec<u8>,
    /// PEM (`X509 CRL`).
    pub pem: String,
    /// The CRL number.
    pub number: u64,
    /// thisUpdate.
    pub this_update: OffsetDateTime,
    /// nextUpdate.
    pub next_update: OffsetDateTime,
    /// How many certificates it lists.
    pub entries: usize,
}

/// The reasons an admin may give, with their RFC 5280 codes. CA compromise,
/// AA compromise and certificate hold do not apply to agent leaves (there
/// is no un-revoking), and removeFromCRL is for delta CRLs.
pub const REASONS: &[(&str, u8)] = &[
    ("unspecified", 0),
    ("keyCompromise", 1),
    ("affiliationChanged", 3),
    ("superseded", 4),
    ("cessationOfOperation", 5),
    ("privilegeWithdrawn", 9),
];

/// Parses a reason given by name (`keyCompromise`, case-insensitive) or by
/// its RFC 5280 code.
pub fn parse_reason(s: &str) -> Result<u8, String> {
    let found = REASONS
        .iter()
        .find(|(name, code)| name.eq_ignore_ascii_case(s) || code.to_string() == s);
    found.map(|(_, code)| *code).ok_or_else(|| {
        let names: Vec<&str> = REASONS.iter().map(|(n, _)| *n).collect();
        format!(
            "unknown revocation reason {s:?}; use one of {}",
            names.join(", ")
        )
    })
}

/// The name of a reason code.
pub fn reason_name(code: u8) -> &'static str {
    REASONS
        .iter()
        .find(|(_, c)| *c == code)
        .map(|(n, _)| *n)
        .unwrap_or("unspecified")
}

fn rcgen_reason(code: u8) -> Option<RevocationReason> {
    // RFC 5280 §5.3.1: the reasonCode extension is omitted for unspecified.
    Some(match code {
        1 => RevocationReason::KeyCompromise,
        3 => RevocationReason::AffiliationChanged,
        4 => RevocationReason::Superseded,
        5 => RevocationReason::CessationOfOperation,
        9 => RevocationReason::PrivilegeWithdrawn,
        _ => return None,
    })
}

/// When to replace a CRL: halfway through its validity, so that a fresh one
/// is out long before verifiers see the old one expire.
pub fn refresh_at(crl: &SignedCrl) -> OffsetDateTime {
    crl.this_update + (crl.next_update - crl.this_update) / 2
}

impl SignedCrl {
    /// A CRL signed earlier (by another replica, an earlier run, or the
    /// root's keeper), read back from its DER.
    pub fn from_der(der: Vec<u8>) -> Result<Self, String> {
        let (_, parsed) = x509_parser::parse_x509_crl(&der).map_err(|e| e.to_string())?;
        let next_update = parsed
            .next_update()
            .map(|t| t.to_datetime())
            .ok_or("it has no nextUpdate")?;
        let number = match parsed.crl_number().map(|n| n.to_u64_digits()) {
            Some(digits) if digits.len() <= 1 => digits.first().copied().unwrap_or(0),
            Some(_) => return Err("its CRL number is larger than 64 bits".into()),
            None => 0,
        };
        Ok(Self {
            entries: parsed.iter_revoked_certificates().count(),
            this_update: parsed.last_update().to_datetime(),
            next_update,
            number,
            pem: pem_of(&der),
            der,
        })
    }
}

/// A DER CRL as PEM (`X509 CRL`, LF line endings).
pub fn pem_of(der: &[u8]) -> String {
    pem::encode_config(
        &pem::Pem::new("X509 CRL", der.to_vec()),
        pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
    )
}

/// Signs a CRL listing `entries`, valid from `now` for `validity`. With
/// `idp_urls`, it carries an issuing distribution point for end-entity
/// certificates at those URLs.
pub fn sign(
    issuer: &Issuer<'_, KeyPair>,
    entries: &[Entry],
    number: u64,
    now: OffsetDateTime,
    validity: Duration,
    idp_urls: Option<&[String]>,
) -> Result<SignedCrl, rcgen::Error> {
    let this_update = crate::issuance::profile::whole_seconds(now);
    let next_update = this_update + validity;
    let params = CertificateRevocationListParams {
        this_update,
        next_update,
        crl_number: SerialNumber::from_slice(&number.to_be_bytes()),
        issuing_distribution_point: idp_urls.filter(|u| !u.is_empty()).map(|uris| {
            CrlIssuingDistributionPoint {
                distribution_point: CrlDistributionPoint {
                    uris: uris.to_vec(),
                },
                scope: Some(CrlScope::UserCertsOnly),
            }
        }),
        revoked_certs: entries
            .iter()
            .map(|e| RevokedCertParams {
                serial_number: SerialNumber::from_slice(e.serial.as_bytes()),
                revocation_time: e.revoked_at,
                reason_code: rcgen_reason(e.reason),
                invalidity_date: None,
            })
            .collect(),
        key_identifier_method: KeyIdMethod::Sha256,
    };
    let crl = params.signed_by(issuer)?;
    let der = crl.der().to_vec();
    let pem = pem_of(&der);
    Ok(SignedCrl {
        der,
        pem,
        number,
        this_update,
        next_update,
        entries: entries.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_parse_by_name_or_code() {
        assert_eq!(parse_reason("keyCompromise"), Ok(1));
        assert_eq!(parse_reason("KEYCOMPROMISE"), Ok(1));
        assert_eq!(parse_reason("9"), Ok(9));
        assert_eq!(reason_name(4), "superseded");
        for bad in ["caCompromise", "2", "6", "certificateHold", "", "11"] {
            assert!(parse_reason(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_crl_is_refreshed_halfway_through_its_validity() {
        let t = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        let crl = SignedCrl {
            der: vec![],
            pem: String::new(),
            number: 1,
            this_update: t,
            next_update: t + Duration::minutes(5),
            entries: 0,
        };
        assert_eq!(refresh_at(&crl), t + Duration::seconds(150));
    }

    #[test]
    fn a_signed_crl_lists_its_entries_and_number() {
        let key = crate::issuance::keys::generate(agentca::client::KeyAlgorithm::P256).unwrap();
        let td = agentca::identity::TrustDomain::new("example.org").unwrap();
        let now = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        let params = crate::issuance::profile::intermediate(&td, now, now + Duration::days(1));
        let issuer = Issuer::new(params, key);
        let serial = Serial::from_bytes(&[0x41, 2, 3]).unwrap();
        let entries = [Entry {
            serial: serial.clone(),
            revoked_at: now,
            reason: 1,
        }];
        let urls = vec!["http://ca/v1/crl".to_owned()];
        let crl = sign(
            &issuer,
            &entries,
            42,
            now,
            Duration::minutes(5),
            Some(&urls),
        )
        .unwrap();
        let (_, parsed) = x509_parser::parse_x509_crl(&crl.der).unwrap();
        assert_eq!(
            parsed.crl_number().map(|n| n.to_u64_digits()),
            Some(vec![42])
        );
        let revoked: Vec<_> = parsed
            .iter_revoked_certificates()
            .map(|r| r.raw_serial().to_vec())
            .collect();
        assert_eq!(revoked, vec![serial.as_bytes().to_vec()]);
        assert_eq!(
            parsed.next_update().map(|t| t.timestamp()),
            Some(1_800_000_300)
        );
        assert!(crl.pem.starts_with("-----BEGIN X509 CRL-----"));
        let back = SignedCrl::from_der(crl.der.clone()).unwrap();
        assert_eq!(
            (
                back.number,
                back.entries,
                back.this_update,
                back.next_update
            ),
            (42, 1, crl.this_update, crl.next_update)
        );
        assert_eq!(back.pem, crl.pem);
        assert!(SignedCrl::from_der(vec![0x30, 0]).is_err());
    }
}
