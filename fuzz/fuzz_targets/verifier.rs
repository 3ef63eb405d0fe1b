//! The verifier's certificate path: a peer's chain (leaf, then
//! intermediates) as a service's TLS handshake hands it to
//! `Verifier::verify_peer`. The input is split into certificates at
//! 0xff 0x00 0xff 0x00 markers. Nothing may panic, and nothing the fuzzer
//! makes may verify (it cannot sign for the CA made here).
#![no_main]

use std::sync::{Arc, OnceLock};

use agentca::bundle::TrustBundle;
use agentca::identity::TrustDomain;
use agentca::verify::{Usage, Verifier};
use libfuzzer_sys::fuzz_target;
use rustls_pki_types::CertificateDer;
use time::OffsetDateTime;

fn verifier() -> &'static Arc<Verifier> {
    static VERIFIER: OnceLock<Arc<Verifier>> = OnceLock::new();
    VERIFIER.get_or_init(|| {
        let ca = agentca_ca::issuance::issuer::test_ca(&rcgen::PKCS_ECDSA_P256_SHA256);
        let bundle = TrustBundle::from_pem(ca.bundle_pem().as_bytes()).expect("the bundle");
        let td = TrustDomain::new("example.org").unwrap();
        Verifier::builder(bundle, td)
            .without_revocation_checks()
            .build()
            .expect("a verifier")
    })
}

fuzz_target!(|data: &[u8]| {
    let chain: Vec<CertificateDer<'_>> = split(data)
        .into_iter()
        .map(CertificateDer::from)
        .collect();
    let result = verifier().verify_peer(&chain, Usage::Client, OffsetDateTime::now_utc());
    assert!(result.is_err(), "a certificate the fuzzer made verified: {result:?}");
});

fn split(data: &[u8]) -> Vec<&[u8]> {
    const MARK: &[u8] = &[0xff, 0x00, 0xff, 0x00];
    let mut out = Vec::new();
    let mut rest = data;
    while let Some(at) = rest.windows(MARK.len()).position(|w| w == MARK) {
        out.push(&rest[..at]);
        rest = &rest[at + MARK.len()..];
    }
    out.push(rest);
    out
}
