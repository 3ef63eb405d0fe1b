//! OCSP request parsing and answering (`POST /v1/ocsp`, `GET
//! /v1/ocsp/{base64}`): whatever arrives, the responder answers with a
//! DER OCSP response and an HTTP status, and never panics.
//!
//! The CA is made afresh in each process, so a request cannot carry its
//! issuer hashes in advance: runs of 20 bytes 0xAA / 0xBB and of 32 bytes
//! 0xCC / 0xDD in the input are replaced by its name and key hashes (SHA-1,
//! SHA-256). The seeds carry those markers, so that the fuzzer starts from
//! requests the responder speaks for.
#![no_main]

use std::sync::OnceLock;

use agentca_ca::issuance::issuer::{test_ca, IssuingCa};
use agentca_ca::revocation::ocsp::{Responder, Status};
use libfuzzer_sys::fuzz_target;
use time::{Duration, OffsetDateTime};

fn ca() -> &'static (IssuingCa, Responder) {
    static CA: OnceLock<(IssuingCa, Responder)> = OnceLock::new();
    CA.get_or_init(|| {
        let ca = test_ca(&rcgen::PKCS_ECDSA_P256_SHA256);
        let responder = Responder::new(&ca, Duration::minutes(5)).expect("a responder");
        (ca, responder)
    })
}

/// `data` with the issuer-hash markers replaced by `ca`'s hashes.
fn with_issuer(data: &[u8], ca: &IssuingCa) -> Vec<u8> {
    let id = ca.ocsp_id();
    let mut out = data.to_vec();
    for (byte, len, hash) in [
        (0xaa, 20, &id.name_sha1),
        (0xbb, 20, &id.key_sha1),
        (0xcc, 32, &id.name_sha256),
        (0xdd, 32, &id.key_sha256),
    ] {
        let marker = vec![byte; len];
        let mut at = 0;
        while let Some(pos) = out[at..].windows(len).position(|w| w == marker.as_slice()) {
            out[at + pos..at + pos + len].copy_from_slice(hash);
            at += pos + len;
        }
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let (ca, responder) = ca();
    let data = &with_issuer(data, ca);
    let now = OffsetDateTime::now_utc();
    // Serials ending in an odd byte are revoked, so that both answers are
    // encoded.
    let answer = responder.respond(ca, data, now, |serial| {
        let revoked = serial.as_bytes().last().is_some_and(|b| b % 2 == 1);
        Ok(if revoked {
            (
                Status::Revoked {
                    at: now - Duration::minutes(1),
                    reason: 1,
                },
                now,
            )
        } else {
            (Status::Good, now)
        })
    });
    assert!(matches!(answer.http_status, 200 | 400 | 503), "{}", answer.http_status);
    assert!(!answer.der.is_empty());
});
