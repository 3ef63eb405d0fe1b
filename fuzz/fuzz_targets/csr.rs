//! CSR handling: what `POST /v1/enroll` and `/v1/renew` do with the `csr`
//! field. The input is taken as PEM text, or (first byte odd) as DER
//! wrapped in a PEM block, so that the fuzzer reaches the DER parser and
//! the signature check without having to learn base64.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = match data.split_first() {
        Some((first, der)) if first % 2 == 1 => pem_of(der),
        _ => String::from_utf8_lossy(data).into_owned(),
    };
    if let Ok(csr) = agentca_ca::issuance::csr::check(&text) {
        // What a check accepts is a key the CA will sign for: its
        // fingerprint is 32 bytes of hex.
        assert_eq!(csr.key_sha256.len(), 64);
    }
});

/// `der` in a PEM block.
fn pem_of(der: &[u8]) -> String {
    pem::encode(&pem::Pem::new("CERTIFICATE REQUEST", der.to_vec()))
}
