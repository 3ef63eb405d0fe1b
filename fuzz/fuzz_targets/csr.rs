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

/// `der` in a PEM block (base64 written out here: the fuzz crate needs no
/// more dependencies).
fn pem_of(der: &[u8]) -> String {
    const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::from("-----BEGIN CERTIFICATE REQUEST-----\n");
    for (i, chunk) in der.chunks(3).enumerate() {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for j in 0..4 {
            if j <= chunk.len() {
                out.push(B64[((n >> (18 - 6 * j)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
        if i % 16 == 15 {
            out.push('\n');
        }
    }
    out.push_str("\n-----END CERTIFICATE REQUEST-----\n");
    out
}
