//! SPIFFE IDs and the names in them (`AgentId`, `TrustDomain`, `Name`):
//! parsing never panics, and what parses prints back to itself.
#![no_main]

use agentca::identity::{AgentId, TrustDomain};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(id) = AgentId::parse(&text) {
        assert_eq!(id.to_string(), text, "a parsed ID prints as it was given");
        let again = AgentId::parse(&id.to_string()).expect("prints to what parses");
        assert_eq!(again, id);
        assert_eq!(again.path_key().split('/').count(), 3);
    }
    if let Ok(td) = TrustDomain::new(&text) {
        assert_eq!(TrustDomain::new(&td.to_string()).as_ref(), Ok(&td));
    }
});
