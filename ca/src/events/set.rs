//! Which audit events become Security Event Tokens (RFC 8417), and what
//! each token says: the one place that decides it.
//!
//! An event type of CAEP or RISC (OpenID Shared Signals) is used where one
//! fits; agentca's own type URIs name the rest. A token's claims depend
//! only on its audit event and the receiver, so a token sent again after a
//! failure is the same token: its `jti` is the audit event's hash (unique,
//! and the link back to the trail), `iat` and `toe` the event's time.

use agentca::wire::{Actor, AuditEvent};
use serde_json::{json, Map, Value};

/// CAEP: a credential was created, changed or revoked.
pub const CREDENTIAL_CHANGE: &str =
    "https://schemas.openid.net/secevent/caep/event-type/credential-change";
/// RISC: a credential was found compromised.
pub const CREDENTIAL_COMPROMISE: &str =
    "https://schemas.openid.net/secevent/risc/event-type/credential-compromise";
/// RISC: the account was deleted for good.
pub const ACCOUNT_PURGED: &str =
    "https://schemas.openid.net/secevent/risc/event-type/account-purged";
/// RISC: the account was disabled.
pub const ACCOUNT_DISABLED: &str =
    "https://schemas.openid.net/secevent/risc/event-type/account-disabled";
/// RISC: the account was enabled again.
pub const ACCOUNT_ENABLED: &str =
    "https://schemas.openid.net/secevent/risc/event-type/account-enabled";
/// agentca: a scope was blocked for a tenant, an environment, an agent or
/// every agent.
pub const SCOPE_BLOCKED: &str = "https://github.com/agentca/agentca/secevent/scope-blocked";
/// agentca: a scope block was lifted.
pub const SCOPE_UNBLOCKED: &str = "https://github.com/agentca/agentca/secevent/scope-unblocked";
/// agentca: an agent or an instance reached its issuance limit.
pub const ISSUANCE_LIMITED: &str = "https://github.com/agentca/agentca/secevent/issuance-limited";

/// The media type of a Security Event Token (RFC 8417, section 2.3).
pub const MEDIA_TYPE: &str = "application/secevent+jwt";

/// What the CA says about itself in every token.
#[derive(Clone, Debug)]
pub struct Transmitter {
    /// `iss`: the trust domain's SPIFFE ID, `spiffe://<trust-domain>`
    /// (the URI SAN of the signing certificate too).
    pub issuer: String,
    /// The issuing intermediate's subject, for `x509_issuer`.
    pub x509_issuer: String,
}

/// The event type and its payload for `event`, if it is one that is sent:
/// revocations, clone alerts, retirements, agents disabled and enabled,
/// scope blocks and their lifting, and issuance limits reached.
pub fn event_of(event: &AuditEvent, t: &Transmitter) -> Option<(&'static str, Value)> {
    let ok = event.outcome == "ok";
    let mut payload = Map::new();
    payload.insert("event_timestamp".into(), json!(event.at.unix_timestamp()));
    let initiating = match &event.actor {
        Actor::Admin { .. } => "admin",
        Actor::Agent { .. } | Actor::Token { .. } | Actor::Anonymous => "user",
        Actor::System => "system",
    };
    let uri = if event.is_clone_alert() {
        payload.insert("credential_type".into(), json!("x509"));
        CREDENTIAL_COMPROMISE
    } else if event.outcome == "refused"
        && event
            .reason
            .as_deref()
            .is_some_and(|r| r.starts_with("issuance_limited"))
    {
        payload.insert("initiating_entity".into(), json!("policy"));
        payload.insert("count".into(), json!(event.count.unwrap_or(1)));
        ISSUANCE_LIMITED
    } else if !ok {
        return None;
    } else {
        payload.insert("initiating_entity".into(), json!(initiating));
        match event.action.as_str() {
            "revoke" => {
                payload.insert("credential_type".into(), json!("x509"));
                payload.insert("change_type".into(), json!("revoke"));
                CREDENTIAL_CHANGE
            }
            "retire" => ACCOUNT_PURGED,
            "disable" => ACCOUNT_DISABLED,
            "enable" => ACCOUNT_ENABLED,
            "scope.block" => SCOPE_BLOCKED,
            "scope.unblock" => SCOPE_UNBLOCKED,
            _ => return None,
        }
    };
    if let Some(serial) = &event.serial {
        if uri == CREDENTIAL_CHANGE || uri == CREDENTIAL_COMPROMISE {
            payload.insert("x509_serial".into(), json!(serial.to_string()));
            payload.insert("x509_issuer".into(), json!(t.x509_issuer));
        }
    }
    if let Some(scopes) = &event.scopes {
        if uri == SCOPE_BLOCKED || uri == SCOPE_UNBLOCKED {
            payload.insert("scopes".into(), json!(scopes));
        }
    }
    if let Some(reason) = &event.reason {
        payload.insert("reason_admin".into(), json!({ "en": reason }));
    }
    Some((uri, Value::Object(payload)))
}

/// The subject identifier (RFC 9493) of `event`: a SPIFFE ID as a `uri`,
/// anything else the trail names (a tenant, a scope's target) as `opaque`.
pub fn subject_of(event: &AuditEvent) -> Value {
    match event.subject.as_deref() {
        Some(s) if s.starts_with("spiffe://") => json!({ "format": "uri", "uri": s }),
        Some(s) => json!({ "format": "opaque", "id": s }),
        None => json!({ "format": "opaque", "id": "" }),
    }
}

/// The claims of the token for `event`, sent to `audience`, if the event
/// is one that is sent ([`event_of`]).
pub fn claims(event: &AuditEvent, t: &Transmitter, audience: &str) -> Option<Value> {
    let (uri, payload) = event_of(event, t)?;
    let mut claims = json!({
        "iss": t.issuer,
        "aud": audience,
        "iat": event.at.unix_timestamp(),
        "toe": event.at.unix_timestamp(),
        "jti": event.hash,
        "sub_id": subject_of(event),
        "events": { uri: payload },
        "agentca": {
            "audit_seq": event.seq,
            "action": event.action,
            "outcome": event.outcome,
            "actor": event.actor,
        },
    });
    if let Some(request) = &event.request_id {
        claims["txn"] = json!(request);
    }
    Some(claims)
}

#[cfg(test)]
mod tests {
    use super::*;
    use agentca::wire::Serial;
    use time::macros::datetime;

    const AGENT: &str = "spiffe://td.test/tenant/acme/env/prod/agent/bot";

    fn t() -> Transmitter {
        Transmitter {
            issuer: "spiffe://td.test".into(),
            x509_issuer: "CN=agentca intermediate".into(),
        }
    }

    fn event(action: &str, outcome: &str, reason: Option<&str>) -> AuditEvent {
        let mut e = AuditEvent::new(
            datetime!(2026-12-06 10:00:00 UTC),
            Actor::Admin {
                name: "alice".into(),
            },
            action,
            Some(AGENT.into()),
        );
        e.seq = 12;
        e.hash = "ab".repeat(32);
        e.outcome = outcome.into();
        e.reason = reason.map(str::to_owned);
        e
    }

    fn type_of(e: &AuditEvent) -> Option<&'static str> {
        event_of(e, &t()).map(|(uri, _)| uri)
    }

    #[test]
    fn each_kind_of_event_has_its_type_and_the_rest_are_not_sent() {
        let serial: Serial = "0a0b".parse().unwrap();
        let mut revoke = event("revoke", "ok", Some("keyCompromise"));
        revoke.serial = Some(serial.clone());
        let (uri, payload) = event_of(&revoke, &t()).unwrap();
        assert_eq!(uri, CREDENTIAL_CHANGE);
        assert_eq!(payload["credential_type"], "x509");
        assert_eq!(payload["change_type"], "revoke");
        assert_eq!(payload["x509_serial"], serial.to_string());
        assert_eq!(payload["x509_issuer"], "CN=agentca intermediate");
        assert_eq!(payload["initiating_entity"], "admin");
        assert_eq!(payload["reason_admin"]["en"], "keyCompromise");

        let mut clone = event("renew", "refused", Some("clone_detected: key sha256:00"));
        clone.actor = Actor::Anonymous;
        clone.serial = Some(serial);
        let (uri, payload) = event_of(&clone, &t()).unwrap();
        assert_eq!(uri, CREDENTIAL_COMPROMISE);
        assert_eq!(payload["credential_type"], "x509");

        assert_eq!(type_of(&event("retire", "ok", None)), Some(ACCOUNT_PURGED));
        assert_eq!(
            type_of(&event("disable", "ok", None)),
            Some(ACCOUNT_DISABLED)
        );
        assert_eq!(type_of(&event("enable", "ok", None)), Some(ACCOUNT_ENABLED));
        let mut block = event("scope.block", "ok", None);
        block.scopes = Some(vec!["db:write".into()]);
        let (uri, payload) = event_of(&block, &t()).unwrap();
        assert_eq!(uri, SCOPE_BLOCKED);
        assert_eq!(payload["scopes"], json!(["db:write"]));
        assert_eq!(
            type_of(&event("scope.unblock", "ok", None)),
            Some(SCOPE_UNBLOCKED)
        );
        let mut limited = event("renew", "refused", Some("issuance_limited"));
        limited.count = Some(40);
        let (uri, payload) = event_of(&limited, &t()).unwrap();
        assert_eq!(uri, ISSUANCE_LIMITED);
        assert_eq!(payload["count"], 40);
        assert_eq!(payload["initiating_entity"], "policy");

        // Issuance, refusals of other kinds, reads and failed actions are
        // not security events.
        for quiet in [
            event("enroll", "ok", None),
            event("renew", "ok", None),
            event("register", "ok", None),
            event("revoke", "refused", Some("forbidden")),
            event("retire", "refused", Some("agent_not_found")),
            event("renew", "refused", Some("certificate_revoked")),
            event("renew", "refused", Some("clone_detectedness")),
            event("agents.list", "ok", None),
        ] {
            assert_eq!(type_of(&quiet), None, "{quiet:?}");
        }
    }

    #[test]
    fn a_token_names_its_event_and_its_subject() {
        let mut e = event("revoke", "ok", None);
        e.request_id = Some("req-1".into());
        let c = claims(&e, &t(), "https://siem.test/events").unwrap();
        assert_eq!(c["iss"], "spiffe://td.test");
        assert_eq!(c["aud"], "https://siem.test/events");
        assert_eq!(c["jti"], "ab".repeat(32));
        assert_eq!(c["iat"], 1_796_551_200);
        assert_eq!(c["toe"], 1_796_551_200);
        assert_eq!(c["txn"], "req-1");
        assert_eq!(c["sub_id"], json!({ "format": "uri", "uri": AGENT }));
        assert_eq!(c["agentca"]["audit_seq"], 12);
        assert!(c["events"][CREDENTIAL_CHANGE].is_object());
        // The same event makes the same token.
        assert_eq!(claims(&e, &t(), "https://siem.test/events"), Some(c));

        let mut tenant = event("revoke", "ok", None);
        tenant.subject = Some("acme/prod".into());
        assert_eq!(
            subject_of(&tenant),
            json!({ "format": "opaque", "id": "acme/prod" })
        );
        assert_eq!(claims(&event("enroll", "ok", None), &t(), "x"), None);
    }
}
