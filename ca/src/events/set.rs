//! Which audit events become Security Event Tokens (RFC 8417), and what
//! each token says: the one place that decides it.
//!
//! An event type of CAEP or RISC (OpenID Shared Signals) is used where one
//! fits; agentca's own type URIs name the rest. A token's claims depend
//! only on its audit event, the receiver and when it is signed: a token
//! sent again after a failure differs only in `iat` (when it was signed;
//! `toe` is the event's time) and its signature, and its `jti` is the audit
//! event's hash (unique, and the link back to the trail).

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

/// The kinds of audit events that are sent, by the names a receivers file
/// uses to choose them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// A revocation: a certificate, an instance, an agent, more.
    Revocation,
    /// A renewal refused as a clone.
    Clone,
    /// An agent retired.
    Retirement,
    /// An agent disabled.
    Disabled,
    /// An agent enabled again.
    Enabled,
    /// A scope blocked.
    ScopeBlocked,
    /// A scope block lifted.
    ScopeUnblocked,
    /// A request refused at an issuance limit.
    IssuanceLimited,
}

impl Kind {
    /// Every kind.
    pub const ALL: [Kind; 8] = [
        Kind::Revocation,
        Kind::Clone,
        Kind::Retirement,
        Kind::Disabled,
        Kind::Enabled,
        Kind::ScopeBlocked,
        Kind::ScopeUnblocked,
        Kind::IssuanceLimited,
    ];

    /// Its name in a receivers file.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Revocation => "revocation",
            Kind::Clone => "clone",
            Kind::Retirement => "retirement",
            Kind::Disabled => "disabled",
            Kind::Enabled => "enabled",
            Kind::ScopeBlocked => "scope-blocked",
            Kind::ScopeUnblocked => "scope-unblocked",
            Kind::IssuanceLimited => "issuance-limited",
        }
    }

    /// The kind named `name`.
    pub fn named(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.name() == name)
    }

    /// Its event type URI.
    pub fn uri(self) -> &'static str {
        match self {
            Kind::Revocation => CREDENTIAL_CHANGE,
            Kind::Clone => CREDENTIAL_COMPROMISE,
            Kind::Retirement => ACCOUNT_PURGED,
            Kind::Disabled => ACCOUNT_DISABLED,
            Kind::Enabled => ACCOUNT_ENABLED,
            Kind::ScopeBlocked => SCOPE_BLOCKED,
            Kind::ScopeUnblocked => SCOPE_UNBLOCKED,
            Kind::IssuanceLimited => ISSUANCE_LIMITED,
        }
    }
}

/// The kind of `event`, if it is one that is sent: revocations, clone
/// alerts, retirements, agents disabled and enabled, scope blocks and
/// their lifting, and issuance limits reached. Refusals are not sent but
/// for clones and limits; nor is anything else.
pub fn kind_of(event: &AuditEvent) -> Option<Kind> {
    if event.is_clone_alert() {
        return Some(Kind::Clone);
    }
    if event.outcome == "refused" {
        let limited = event
            .reason
            .as_deref()
            .is_some_and(|r| r.starts_with("issuance_limited"));
        return limited.then_some(Kind::IssuanceLimited);
    }
    if event.outcome != "ok" {
        return None;
    }
    Some(match event.action.as_str() {
        "revoke" => Kind::Revocation,
        "retire" => Kind::Retirement,
        "disable" => Kind::Disabled,
        "enable" => Kind::Enabled,
        "scope.block" => Kind::ScopeBlocked,
        "scope.unblock" => Kind::ScopeUnblocked,
        _ => return None,
    })
}

/// The kind and the event payload for `event`, if it is sent
/// ([`kind_of`]).
pub fn event_of(event: &AuditEvent, t: &Transmitter) -> Option<(Kind, Value)> {
    let kind = kind_of(event)?;
    let mut payload = Map::new();
    payload.insert("event_timestamp".into(), json!(event.at.unix_timestamp()));
    let initiating = match (&event.actor, kind) {
        (_, Kind::IssuanceLimited) => "policy",
        (Actor::Admin { .. }, _) => "admin",
        (Actor::System, _) => "system",
        _ => "user",
    };
    if kind != Kind::Clone {
        payload.insert("initiating_entity".into(), json!(initiating));
    }
    match kind {
        Kind::Revocation => {
            payload.insert("credential_type".into(), json!("x509"));
            payload.insert("change_type".into(), json!("revoke"));
        }
        Kind::Clone => {
            payload.insert("credential_type".into(), json!("x509"));
        }
        Kind::ScopeBlocked | Kind::ScopeUnblocked => {
            if let Some(scopes) = &event.scopes {
                payload.insert("scopes".into(), json!(scopes));
            }
        }
        _ => {}
    }
    if let (Some(serial), Kind::Revocation | Kind::Clone) = (&event.serial, kind) {
        payload.insert("x509_serial".into(), json!(serial.to_string()));
        payload.insert("x509_issuer".into(), json!(t.x509_issuer));
    }
    if let Some(count) = event.count {
        payload.insert("count".into(), json!(count));
    } else if kind == Kind::IssuanceLimited {
        payload.insert("count".into(), json!(1));
    }
    if let Some(reason) = &event.reason {
        payload.insert("reason_admin".into(), json!({ "en": reason }));
    }
    Some((kind, Value::Object(payload)))
}

/// The subject identifier (RFC 9493) of `event`: a SPIFFE ID as a `uri`,
/// anything else the trail names (a tenant, a scope's target) as `opaque`;
/// the trust domain itself when it names nothing.
pub fn subject_of(event: &AuditEvent, t: &Transmitter) -> Value {
    match event.subject.as_deref() {
        Some(s) if s.starts_with("spiffe://") => json!({ "format": "uri", "uri": s }),
        Some(s) if !s.is_empty() => json!({ "format": "opaque", "id": s }),
        _ => json!({ "format": "uri", "uri": t.issuer }),
    }
}

/// The claims of the token for `event`, sent to `audience` and signed at
/// `issued` (`iat`), if the event is one that is sent ([`event_of`]).
pub fn claims(
    event: &AuditEvent,
    t: &Transmitter,
    audience: &str,
    issued: time::OffsetDateTime,
) -> Option<Value> {
    let (kind, payload) = event_of(event, t)?;
    let uri = kind.uri();
    let mut claims = json!({
        "iss": t.issuer,
        "aud": audience,
        "iat": issued.unix_timestamp(),
        "toe": event.at.unix_timestamp(),
        "jti": event.hash,
        "sub_id": subject_of(event, t),
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
        event_of(e, &t()).map(|(kind, _)| kind.uri())
    }

    fn later() -> time::OffsetDateTime {
        datetime!(2026-12-06 11:00:00 UTC)
    }

    #[test]
    fn each_kind_of_event_has_its_type_and_the_rest_are_not_sent() {
        let serial: Serial = "0a0b".parse().unwrap();
        let mut revoke = event("revoke", "ok", Some("keyCompromise"));
        revoke.serial = Some(serial.clone());
        let (kind, payload) = event_of(&revoke, &t()).unwrap();
        assert_eq!(kind.uri(), CREDENTIAL_CHANGE);
        assert_eq!(payload["credential_type"], "x509");
        assert_eq!(payload["change_type"], "revoke");
        assert_eq!(payload["x509_serial"], serial.to_string());
        assert_eq!(payload["x509_issuer"], "CN=agentca intermediate");
        assert_eq!(payload["initiating_entity"], "admin");
        assert_eq!(payload["reason_admin"]["en"], "keyCompromise");

        let mut clone = event("renew", "refused", Some("clone_detected: key sha256:00"));
        clone.actor = Actor::Anonymous;
        clone.serial = Some(serial);
        let (kind, payload) = event_of(&clone, &t()).unwrap();
        assert_eq!(kind.uri(), CREDENTIAL_COMPROMISE);
        assert_eq!(payload["credential_type"], "x509");

        assert_eq!(type_of(&event("retire", "ok", None)), Some(ACCOUNT_PURGED));
        assert_eq!(
            type_of(&event("disable", "ok", None)),
            Some(ACCOUNT_DISABLED)
        );
        assert_eq!(type_of(&event("enable", "ok", None)), Some(ACCOUNT_ENABLED));
        let mut block = event("scope.block", "ok", None);
        block.scopes = Some(vec!["db:write".into()]);
        let (kind, payload) = event_of(&block, &t()).unwrap();
        assert_eq!(kind.uri(), SCOPE_BLOCKED);
        assert_eq!(payload["scopes"], json!(["db:write"]));
        assert_eq!(
            type_of(&event("scope.unblock", "ok", None)),
            Some(SCOPE_UNBLOCKED)
        );
        let mut limited = event("renew", "refused", Some("issuance_limited"));
        limited.count = Some(40);
        let (kind, payload) = event_of(&limited, &t()).unwrap();
        assert_eq!(kind.uri(), ISSUANCE_LIMITED);
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
        let c = claims(&e, &t(), "https://siem.test/events", later()).unwrap();
        assert_eq!(c["iss"], "spiffe://td.test");
        assert_eq!(c["aud"], "https://siem.test/events");
        assert_eq!(c["jti"], "ab".repeat(32));
        assert_eq!(c["iat"], 1_796_554_800, "when it was signed");
        assert_eq!(c["toe"], 1_796_551_200, "when it happened");
        assert_eq!(c["txn"], "req-1");
        assert_eq!(c["sub_id"], json!({ "format": "uri", "uri": AGENT }));
        assert_eq!(c["agentca"]["audit_seq"], 12);
        assert!(c["events"][CREDENTIAL_CHANGE].is_object());
        // The same event makes the same token.
        assert_eq!(
            claims(&e, &t(), "https://siem.test/events", later()),
            Some(c)
        );

        let mut tenant = event("revoke", "ok", None);
        tenant.subject = Some("acme/prod".into());
        assert_eq!(
            subject_of(&tenant, &t()),
            json!({ "format": "opaque", "id": "acme/prod" })
        );
        tenant.subject = None;
        assert_eq!(
            subject_of(&tenant, &t()),
            json!({ "format": "uri", "uri": "spiffe://td.test" })
        );
        assert_eq!(
            claims(&event("enroll", "ok", None), &t(), "x", later()),
            None
        );
        for kind in Kind::ALL {
            assert_eq!(Kind::named(kind.name()), Some(kind));
        }
        assert_eq!(Kind::named("revoke"), None);
    }
}
