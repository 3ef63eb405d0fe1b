//! The OCSP responder (RFC 6960).
//!
//! Responses are signed by the issuing CA itself, on request (about 16 µs
//! with a P-256 key through aws-lc), with status good, revoked (with time
//! and reason) or unknown (a serial this CA never issued or no longer
//! tracks), the request's nonce echoed, and a short nextUpdate. The
//! responder is identified by its key hash and includes its certificate, so
//! `openssl ocsp -issuer … -CAfile root.pem` verifies the signature.

use agentca::wire::Serial;
use der::asn1::{BitString, GeneralizedTime, OctetString};
use der::{Decode, Encode};
use time::{Duration, OffsetDateTime};
use x509_cert::ext::pkix::crl::CrlReason;
use x509_ocsp::{
    BasicOcspResponse, CertStatus, OcspGeneralizedTime, OcspRequest, OcspResponse, ResponderId,
    ResponseData, RevokedInfo, SingleResponse, Version,
};

use crate::issuance::issuer::IssuingCa;

/// Largest OCSP request accepted, in bytes of DER.
pub const MAX_REQUEST_BYTES: usize = 8 * 1024;
/// Most certificates asked about in one request.
pub const MAX_SINGLE_REQUESTS: usize = 16;
/// Longest nonce echoed (RFC 8954 allows 1 to 32 bytes).
const MAX_NONCE_BYTES: usize = 128;

const OID_SHA1: &str = "1.3.14.3.2.26";
const OID_SHA256: &str = "2.16.840.1.101.3.4.2.1";
const OID_NONCE: &str = "1.3.6.1.5.5.7.48.1.2";

/// What the CA knows of one serial.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// Issued here and not revoked.
    Good,
    /// Revoked.
    Revoked {
        /// When.
        at: OffsetDateTime,
        /// RFC 5280 reason code.
        reason: u8,
    },
    /// Never issued here, or no longer tracked.
    Unknown,
}

/// An OCSP answer: the HTTP status to send it with, and the DER body
/// (`application/ocsp-response`).
#[derive(Debug)]
pub struct Answer {
    /// 200 for a signed response or `unauthorized`, 400 for a malformed
    /// request, 500 when the CA failed.
    pub http_status: u16,
    /// An OCSPResponse.
    pub der: Vec<u8>,
}

/// The responder of one issuing CA.
pub struct Responder {
    responder_id: ResponderId,
    certs: Vec<x509_cert::Certificate>,
    validity: Duration,
}

/// Why the responder could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("OCSP responder: {0}")]
pub struct ResponderError(String);

impl Responder {
    /// A responder for `ca`, whose answers are valid for `validity`.
    pub fn new(ca: &IssuingCa, validity: Duration) -> Result<Self, ResponderError> {
        let key_hash = OctetString::new(ca.ocsp_id().key_sha1.clone())
            .map_err(|e| ResponderError(e.to_string()))?;
        let cert = x509_cert::Certificate::from_der(ca.intermediate())
            .map_err(|e| ResponderError(e.to_string()))?;
        Ok(Self {
            responder_id: ResponderId::ByKey(key_hash),
            certs: vec![cert],
            validity,
        })
    }

    /// Answers the DER `request`, asking `status` about each serial: its
    /// status, and the time it is known to have been correct (now, or
    /// earlier when the store is unreachable and the responder answers
    /// from what it last knew). That time is the response's thisUpdate; a
    /// status known so long ago that the response would already be stale
    /// is `tryLater`.
    pub fn respond(
        &self,
        ca: &IssuingCa,
        request: &[u8],
        now: OffsetDateTime,
        status: impl Fn(&Serial) -> Result<(Status, OffsetDateTime), crate::store::StoreError>,
    ) -> Answer {
        let malformed = || Answer {
            http_status: 400,
            der: encode(OcspResponse::malformed_request()),
        };
        if request.is_empty() || request.len() > MAX_REQUEST_BYTES {
            return malformed();
        }
        let Ok(req) = OcspRequest::from_der(request) else {
            return malformed();
        };
        let list = &req.tbs_request.request_list;
        if list.is_empty() || list.len() > MAX_SINGLE_REQUESTS {
            return malformed();
        }
        let Some(produced_at) = generalized(now) else {
            return internal_error();
        };
        let try_later = || Answer {
            http_status: 503,
            der: encode(OcspResponse::try_later()),
        };
        let mut responses = Vec::with_capacity(list.len());
        for single in list {
            let id = &single.req_cert;
            if !issued_by(ca, id) {
                // RFC 6960 §2.3: not a certificate this responder can speak for.
                return Answer {
                    http_status: 200,
                    der: encode(OcspResponse::unauthorized()),
                };
            }
            let (cert_status, known_at) = match Serial::from_bytes(id.serial_number.as_bytes()) {
                Err(_) => (CertStatus::unknown(), now),
                Ok(serial) => match status(&serial) {
                    Ok((Status::Good, at)) => (CertStatus::good(), at),
                    Ok((Status::Unknown, at)) => (CertStatus::unknown(), at),
                    Ok((Status::Revoked { at, reason }, known_at)) => match generalized(at) {
                        Some(t) => (
                            CertStatus::revoked(RevokedInfo {
                                revocation_time: t,
                                revocation_reason: crl_reason(reason),
                            }),
                            known_at,
                        ),
                        None => return internal_error(),
                    },
                    Err(e) => {
                        tracing::error!(error = %e, "OCSP status lookup failed");
                        return try_later();
                    }
                },
            };
            if known_at + self.validity <= now {
                return try_later();
            }
            let (Some(this_update), Some(next_update)) =
                (generalized(known_at), generalized(known_at + self.validity))
            else {
                return internal_error();
            };
            responses.push(SingleResponse {
                cert_id: id.clone(),
                cert_status,
                this_update,
                next_update: Some(next_update),
                single_extensions: None,
            });
        }
        let nonce = req
            .tbs_request
            .request_extensions
            .as_ref()
            .and_then(|exts| exts.iter().find(|e| e.extn_id.to_string() == OID_NONCE));
        if nonce.is_some_and(|n| n.extn_value.as_bytes().len() > MAX_NONCE_BYTES) {
            return malformed();
        }
        let tbs = ResponseData {
            version: Version::default(),
            responder_id: self.responder_id.clone(),
            produced_at,
            responses,
            response_extensions: nonce.map(|n| {
                vec![x509_cert::ext::Extension {
                    extn_id: n.extn_id,
                    critical: false,
                    extn_value: n.extn_value.clone(),
                }]
            }),
        };
        match self.sign(ca, tbs) {
            Ok(der) => Answer {
                http_status: 200,
                der,
            },
            Err(e) => {
                tracing::error!(error = %e, "could not sign an OCSP response");
                internal_error()
            }
        }
    }

    fn sign(&self, ca: &IssuingCa, tbs: ResponseData) -> Result<Vec<u8>, String> {
        let tbs_der = tbs.to_der().map_err(|e| e.to_string())?;
        let (signature, signature_algorithm) = ca.sign_raw(&tbs_der).map_err(|e| e.to_string())?;
        let basic = BasicOcspResponse {
            tbs_response_data: tbs,
            signature_algorithm,
            signature: BitString::from_bytes(&signature).map_err(|e| e.to_string())?,
            certs: Some(self.certs.clone()),
        };
        OcspResponse::successful(basic)
            .and_then(|r| r.to_der())
            .map_err(|e| e.to_string())
    }
}

fn issued_by(ca: &IssuingCa, id: &x509_ocsp::CertId) -> bool {
    let ours = ca.ocsp_id();
    let (name, key) = match id.hash_algorithm.oid.to_string().as_str() {
        OID_SHA1 => (&ours.name_sha1, &ours.key_sha1),
        OID_SHA256 => (&ours.name_sha256, &ours.key_sha256),
        _ => return false,
    };
    id.issuer_name_hash.as_bytes() == name.as_slice()
        && id.issuer_key_hash.as_bytes() == key.as_slice()
}

fn crl_reason(code: u8) -> Option<CrlReason> {
    Some(match code {
        1 => CrlReason::KeyCompromise,
        3 => CrlReason::AffiliationChanged,
        4 => CrlReason::Superseded,
        5 => CrlReason::CessationOfOperation,
        9 => CrlReason::PrivilegeWithdrawn,
        _ => return None,
    })
}

fn generalized(t: OffsetDateTime) -> Option<OcspGeneralizedTime> {
    let secs = u64::try_from(t.unix_timestamp()).ok()?;
    GeneralizedTime::from_unix_duration(std::time::Duration::from_secs(secs))
        .ok()
        .map(OcspGeneralizedTime)
}

/// A DER `malformedRequest` OCSP response.
pub fn malformed() -> Vec<u8> {
    encode(OcspResponse::malformed_request())
}

fn encode(response: OcspResponse) -> Vec<u8> {
    // Encoding a status-only response cannot fail.
    response.to_der().unwrap_or_default()
}

fn internal_error() -> Answer {
    Answer {
        http_status: 500,
        der: encode(OcspResponse::internal_error()),
    }
}
