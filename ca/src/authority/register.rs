//! Registering agents (nothing unregistered can get a certificate), and
//! enabling and disabling them.

use agentca::identity::AgentId;
use agentca::wire::{AgentInfo, RegisterAgentRequest};
use time::OffsetDateTime;

use super::error::Named;
use super::{Admin, Authority, AuthorityError, RequestContext};
use crate::issuance::profile;
use crate::state::records::AgentRecord;
use crate::state::{Applied, Change};

/// Longest owner field accepted, in bytes.
pub const MAX_OWNER_LEN: usize = 256;
/// Longest purpose field accepted, in bytes.
pub const MAX_PURPOSE_LEN: usize = 1024;

/// An agent as a request names it: its tenant, environment and name, not
/// yet checked against the identity rules.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentName {
    /// The tenant.
    pub tenant: String,
    /// The environment.
    pub env: String,
    /// The agent.
    pub agent: String,
}

impl Authority {
    /// The identity `name` stands for, if it keeps the identity rules.
    pub(super) fn id_of_name(&self, name: &AgentName) -> Result<AgentId, AuthorityError> {
        self.agent_id(&name.tenant, &name.env, &name.agent)
    }

    /// `name` as the subject of an audit event.
    pub(super) fn subject_of(&self, name: &AgentName) -> Option<String> {
        Some(self.subject(&name.tenant, &name.env, &name.agent))
    }

    /// Registers an agent. Nothing unregistered can get a certificate.
    pub async fn register(
        &self,
        ctx: &RequestContext,
        admin: &Admin,
        req: RegisterAgentRequest,
        now: OffsetDateTime,
    ) -> Result<AgentInfo, AuthorityError> {
        let subject = Some(self.subject(&req.tenant, &req.env, &req.agent));
        let event = self.event(ctx, admin.actor(), "register", subject, now);
        self.audited(event, async |event| {
            let id = self.agent_id(&req.tenant, &req.env, &req.agent)?;
            admin.may_change(&req.tenant)?;
            check_text("owner", &req.owner, MAX_OWNER_LEN)?;
            check_text("purpose", &req.purpose, MAX_PURPOSE_LEN)?;
            let mut scopes = agentca::scopes::normalize(&req.scopes)
                .map_err(|e| AuthorityError::InvalidRequest(e.to_string()))?;
            // Where promotions are reviewed, a new agent's scopes are one:
            // it is registered without them, and they wait for approval.
            let reviewed = (self.policy.review.required_for(&req.tenant) && !scopes.is_empty())
                .then(|| std::mem::take(&mut scopes));
            let ttl = self.policy.certificate_ttl(req.ttl_seconds)?;
            let now = profile::whole_seconds(now);
            let record = AgentRecord {
                tenant: req.tenant.clone(),
                env: req.env.clone(),
                agent: req.agent.clone(),
                owner: req.owner.clone(),
                purpose: req.purpose.clone(),
                ttl_secs: ttl.whole_seconds() as u64,
                enabled: true,
                created_at: now,
                updated_at: now,
                last_issued_at: None,
                issued: Default::default(),
                scopes,
                version: 1,
                retired_at: None,
            };
            let mut done = event.clone();
            if !record.scopes.is_empty() {
                done.reason = Some(format!("scopes {}", record.scopes.join(" ")));
            }
            // Set from what commits.
            done.scopes = Some(Vec::new());
            done.version = Some(0);
            let then_propose = reviewed.map(|scopes| {
                let update = crate::state::governance::Update {
                    scopes: Some(scopes),
                    ..Default::default()
                };
                self.pending_record(admin, &id, &record, update, now)
            });
            if let Some(p) = &then_propose {
                done.reason = Some(format!("waits for review: {}", p.description));
            }
            if req.reuse_retired {
                done.reason = Some(match done.reason {
                    Some(r) => format!("reusing a retired name; {r}"),
                    None => "reusing a retired name".into(),
                });
            }
            let change = Change::Register {
                agent: record.clone(),
                by: admin.name().to_owned(),
                reuse: req.reuse_retired,
                then_propose,
            };
            let applied = self.commit(change, done, Named::Agent(&id)).await?;
            let mut info = self.info(&self.registered(&id)?)?;
            if let Applied::Versioned {
                version, pending, ..
            } = &applied
            {
                tracing::info!(admin = admin.name(), agent = %id, version, "agent registered");
                if let Some(pending) = pending {
                    info.pending.push(self.pending_info(pending)?);
                }
            }
            Ok(info)
        })
        .await
    }

    /// Enables or disables an agent. A disabled agent can neither enroll
    /// nor renew, and gets no new tokens.
    pub async fn set_enabled(
        &self,
        ctx: &RequestContext,
        admin: &Admin,
        name: &AgentName,
        enabled: bool,
        now: OffsetDateTime,
    ) -> Result<AgentInfo, AuthorityError> {
        let action = if enabled { "enable" } else { "disable" };
        let event = self.event(ctx, admin.actor(), action, self.subject_of(name), now);
        self.audited(event, async |event| {
            let id = self.id_of_name(name)?;
            admin.may_change(&name.tenant)?;
            let change = Change::SetAgentEnabled {
                key: id.path_key(),
                enabled,
                at: profile::whole_seconds(now),
            };
            self.commit(change, event.clone(), Named::Agent(&id))
                .await?;
            tracing::info!(admin = admin.name(), agent = %id, enabled, "agent state changed");
            self.info(&self.registered(&id)?)
        })
        .await
    }
}

pub(super) fn check_text(field: &str, value: &str, max: usize) -> Result<(), AuthorityError> {
    if value.trim().is_empty() {
        return Err(AuthorityError::InvalidRequest(format!(
            "{field} must not be empty"
        )));
    }
    if value.len() > max {
        return Err(AuthorityError::InvalidRequest(format!(
            "{field} is {} bytes; the limit is {max}",
            value.len()
        )));
    }
    if value.chars().any(char::is_control) {
        return Err(AuthorityError::InvalidRequest(format!(
            "{field} must not contain control characters"
        )));
    }
    if let Some(c) = value.chars().find(|c| is_bidi_format(*c)) {
        return Err(AuthorityError::InvalidRequest(format!(
            "{field} must not contain bidirectional formatting characters (found U+{:04X}): \
             they make text print differently from what it is",
            c as u32
        )));
    }
    Ok(())
}

/// The characters that change the direction text is shown in (Unicode's
/// bidirectional formatting characters: marks, embeddings, overrides,
/// isolates). Stored in an owner or a purpose, they make an audit export
/// or a listing print something else than what is there.
fn is_bidi_format(c: char) -> bool {
    matches!(
        c,
        '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}'
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_text_refuses_control_and_bidirectional_characters() {
        assert!(check_text("owner", "team-a@example.com", 64).is_ok());
        assert!(check_text("purpose", "résumé triage — 日本語 ok", 64).is_ok());
        for bad in [
            "",
            "   ",
            "nul\u{0}",
            "bell\u{7}",
            "line\nbreak",
            "esc\u{1b}[31m",
            "evil\u{202E}gpj.exe",
            "isolate\u{2066}x\u{2069}",
            "mark\u{200F}",
            "arabic mark\u{061C}",
        ] {
            assert!(check_text("owner", bad, 64).is_err(), "{bad:?}");
        }
        assert!(check_text("owner", &"x".repeat(65), 64).is_err());
    }
}
