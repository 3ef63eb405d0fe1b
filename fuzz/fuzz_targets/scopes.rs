//! The scope extension (`AgentScopes`, DER) as a verifier reads it from a
//! peer's certificate: decoding never panics, and what decodes is what the
//! CA would encode for those scopes, byte for byte (one encoding per
//! value: no alternative form slips through).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(scopes) = agentca::scopes::decode(data) {
        assert_eq!(agentca::scopes::normalize(&scopes).as_ref(), Ok(&scopes));
        assert_eq!(agentca::scopes::encode(&scopes), data);
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = agentca::scopes::check_scope(text);
    }
});
