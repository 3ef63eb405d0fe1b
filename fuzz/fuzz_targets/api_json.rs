//! The JSON bodies of the API (enroll, renew, register, token, revoke,
//! admin, audit pruning, registration update, scope block, admin role, and
//! the feed's page and snapshot as verifiers read them) as the CA reads them: deserialized with unknown
//! fields refused, then the names, scopes and serials in them checked as
//! the authority checks them. Nothing may panic; what parses re-encodes to
//! JSON that parses to the same value.
#![no_main]

use agentca::identity::{AgentId, InstanceId, Name, Part};
use agentca::wire::{
    BlockScopeRequest, CreateAdminRequest, CreateTokenRequest, EnrollRequest, FeedSnapshot,
    PruneAuditRequest, RegisterAgentRequest, RenewRequest, RevocationPage, RevokeRequest, Serial,
    SetAdminRoleRequest, UpdateAgentRequest,
};
use libfuzzer_sys::fuzz_target;
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Parses `data` as `T`; what parses round-trips.
fn parse<T: DeserializeOwned + Serialize>(data: &[u8]) -> Option<T> {
    let value: T = serde_json::from_slice(data).ok()?;
    let encoded = serde_json::to_vec(&value).unwrap();
    let again: T = serde_json::from_slice(&encoded).unwrap();
    assert_eq!(serde_json::to_vec(&again).unwrap(), encoded);
    Some(value)
}

fn names(tenant: &str, env: &str, agent: &str) {
    let _ = Name::new(Part::Tenant, tenant);
    let _ = Name::new(Part::Env, env);
    let _ = Name::new(Part::Agent, agent);
    if let Ok(id) = AgentId::new("agentca.local", tenant, env, agent) {
        assert_eq!(AgentId::parse(&id.to_string()).as_ref(), Ok(&id));
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((which, body)) = data.split_first() else {
        return;
    };
    match which % 13 {
        0 => {
            let _ = parse::<EnrollRequest>(body);
        }
        1 => {
            let _ = parse::<RenewRequest>(body);
        }
        2 => {
            if let Some(r) = parse::<RegisterAgentRequest>(body) {
                names(&r.tenant, &r.env, &r.agent);
                let _ = agentca::scopes::normalize(&r.scopes);
            }
        }
        3 => {
            let _ = parse::<CreateTokenRequest>(body);
        }
        4 => {
            if let Some(r) = parse::<RevokeRequest>(body) {
                names(
                    r.tenant.as_deref().unwrap_or(""),
                    r.env.as_deref().unwrap_or(""),
                    r.agent.as_deref().unwrap_or(""),
                );
            }
        }
        5 => {
            let _ = parse::<CreateAdminRequest>(body);
        }
        6 => {
            let _ = parse::<PruneAuditRequest>(body);
        }
        7 => {
            if let Some(r) = parse::<UpdateAgentRequest>(body) {
                let _ = agentca::scopes::normalize(&r.scopes.unwrap_or_default());
            }
        }
        8 => {
            if let Some(r) = parse::<BlockScopeRequest>(body) {
                let _ = agentca::scopes::check_scope(&r.scope);
                names(
                    r.tenant.as_deref().unwrap_or(""),
                    r.env.as_deref().unwrap_or(""),
                    r.agent.as_deref().unwrap_or(""),
                );
            }
        }
        9 => {
            let _ = parse::<SetAdminRoleRequest>(body);
        }
        10 => {
            // What a verifier applies: nothing in it may panic the cache.
            if let Some(page) = parse::<RevocationPage>(body) {
                let cache = agentca::verify::RevocationCache::new();
                cache.apply_page(
                    &page.events,
                    &page.scopes,
                    page.latest,
                    time::OffsetDateTime::UNIX_EPOCH,
                );
            }
        }
        11 => {
            if let Some(snapshot) = parse::<FeedSnapshot>(body) {
                let cache = agentca::verify::RevocationCache::new();
                cache.load_snapshot(&snapshot, time::OffsetDateTime::UNIX_EPOCH);
                cache.prune(time::OffsetDateTime::UNIX_EPOCH);
            }
        }
        _ => {
            let text = String::from_utf8_lossy(body);
            if let Ok(serial) = text.parse::<Serial>() {
                assert_eq!(serial.to_string().parse::<Serial>().as_ref(), Ok(&serial));
            }
            let _ = InstanceId::parse(&text);
        }
    }
});
