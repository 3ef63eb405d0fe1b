//! The lifecycle of a registered agent: enabled at registration, disabled
//! and enabled again by an admin, disabled by a revocation of the agent.
//! Only an enabled agent is issued certificates or bootstrap tokens.
//!
//! Pure functions of an [`AgentRecord`] and the time: nothing here reads or
//! writes the store.

use time::OffsetDateTime;

use super::records::{AgentRecord, TokenRecord};
use super::token;

/// Why an agent may not be issued anything.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AgentRefusal {
    /// An admin disabled it, or revoked it.
    #[error("the agent is disabled")]
    Disabled,
    /// It was retired: nothing is issued to it again.
    #[error("the agent is retired")]
    Retired,
}

/// Whether `agent` may be issued a certificate (enrollment or renewal) or
/// a bootstrap token.
pub fn may_be_issued(agent: &AgentRecord) -> Result<(), AgentRefusal> {
    if agent.retired_at.is_some() {
        Err(AgentRefusal::Retired)
    } else if agent.enabled {
        Ok(())
    } else {
        Err(AgentRefusal::Disabled)
    }
}

/// Whether a registration may be changed (updated, enabled): not once it
/// is retired.
pub fn may_change(agent: &AgentRecord) -> Result<(), AgentRefusal> {
    match agent.retired_at {
        Some(_) => Err(AgentRefusal::Retired),
        None => Ok(()),
    }
}

/// Whether a new registration may take the name of `existing`: never
/// while it is in service; once it is retired, only when the admin asks
/// to reuse the name (`reuse`).
pub fn may_register_over(existing: &AgentRecord, reuse: bool) -> Result<(), AgentRefusal> {
    match existing.retired_at {
        Some(_) if reuse => Ok(()),
        Some(_) => Err(AgentRefusal::Retired),
        None => Err(AgentRefusal::Disabled),
    }
}

/// Retiring an agent at `at`: like revoking it ([`revoke`]: disabled, its
/// redeemable tokens voided; its live certificates are revoked by the
/// caller), and marked retired, a new version of its registration.
/// Returns what the revocation part did, or `None` if it was retired
/// already.
pub fn retire(
    agent: &mut AgentRecord,
    tokens: &mut [TokenRecord],
    at: OffsetDateTime,
) -> Option<AgentRevoked> {
    if agent.retired_at.is_some() {
        return None;
    }
    let done = revoke(agent, tokens, at);
    agent.retired_at = Some(at);
    agent.version += 1;
    agent.updated_at = at;
    Some(done)
}

/// Enables or disables `agent` at `at`; returns whether it changed (an
/// agent already in that state keeps its `updated_at`).
pub fn set_enabled(agent: &mut AgentRecord, enabled: bool, at: OffsetDateTime) -> bool {
    if agent.enabled == enabled {
        return false;
    }
    agent.enabled = enabled;
    agent.updated_at = at;
    true
}

/// What revoking an agent did to its records.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AgentRevoked {
    /// Whether the agent was enabled and is now disabled.
    pub disabled: bool,
    /// For each token given, whether this revocation voided it.
    pub voided: Vec<bool>,
}

/// Revoking an agent at `at` (by its id, or with its environment or
/// tenant): besides revoking its live certificates (see
/// [`super::certificate::revoked_by`]), it is disabled, so that it can
/// neither renew nor enroll until an admin enables it again, and each of
/// its `tokens` that could still be redeemed is voided (see
/// [`token::void`]), so that enabling it again does not bring a leaked
/// token back to life.
pub fn revoke(
    agent: &mut AgentRecord,
    tokens: &mut [TokenRecord],
    at: OffsetDateTime,
) -> AgentRevoked {
    AgentRevoked {
        disabled: set_enabled(agent, false, at),
        voided: tokens.iter_mut().map(|t| token::void(t, at)).collect(),
    }
}

#[cfg(test)]
mod tests {
    use time::Duration;

    use super::*;
    use crate::state::tests::t0;

    fn agent() -> AgentRecord {
        crate::state::tests::agent("acme", "bot")
    }

    /// A single-use token expiring `expires_in` seconds after t0, `used` times.
    fn token(expires_in: i64, used: u32) -> TokenRecord {
        let mut t = crate::state::tests::token("acme/prod/bot", 1);
        t.expires_at = t0() + Duration::seconds(expires_in);
        t.used = used;
        t
    }

    #[test]
    fn only_an_enabled_agent_is_issued_anything() {
        let mut a = agent();
        assert_eq!(may_be_issued(&a), Ok(()));
        assert!(set_enabled(&mut a, false, t0() + Duration::seconds(5)));
        assert_eq!(may_be_issued(&a), Err(AgentRefusal::Disabled));
        assert_eq!(a.updated_at, t0() + Duration::seconds(5));
    }

    #[test]
    fn a_retired_agent_is_issued_nothing_changes_nothing_and_its_name_needs_reuse() {
        let mut a = agent();
        assert_eq!(may_register_over(&a, true), Err(AgentRefusal::Disabled));
        let mut tokens = vec![token(600, 0)];
        let at = t0() + Duration::seconds(30);
        let done = retire(&mut a, &mut tokens, at).unwrap();
        assert!(done.disabled);
        assert_eq!(done.voided, vec![true]);
        assert_eq!(a.retired_at, Some(at));
        assert_eq!(a.version, 2);
        assert_eq!(may_be_issued(&a), Err(AgentRefusal::Retired));
        assert_eq!(may_change(&a), Err(AgentRefusal::Retired));
        // Enabling it does not bring it back.
        a.enabled = true;
        assert_eq!(may_be_issued(&a), Err(AgentRefusal::Retired));
        assert_eq!(may_register_over(&a, false), Err(AgentRefusal::Retired));
        assert_eq!(may_register_over(&a, true), Ok(()));
        // Retiring again does nothing.
        assert_eq!(retire(&mut a, &mut tokens, at + Duration::seconds(1)), None);
        assert_eq!(a.version, 2);
    }

    #[test]
    fn setting_the_state_it_has_changes_nothing() {
        let mut a = agent();
        assert!(!set_enabled(&mut a, true, t0() + Duration::seconds(5)));
        assert_eq!(a.updated_at, t0());
    }

    #[test]
    fn revoking_an_agent_disables_it_and_voids_its_redeemable_tokens() {
        let mut a = agent();
        let at = t0() + Duration::seconds(60);
        // Redeemable; spent; expiring exactly at the revocation; one second after.
        let mut tokens = vec![token(600, 0), token(600, 1), token(60, 0), token(61, 0)];
        let done = revoke(&mut a, &mut tokens, at);
        assert_eq!(
            done,
            AgentRevoked {
                disabled: true,
                voided: vec![true, false, false, true],
            }
        );
        assert!(!a.enabled);
        assert_eq!(a.updated_at, at);
        // Revoking it again disables and voids nothing more.
        let again = revoke(&mut a, &mut tokens, at);
        assert!(!again.disabled);
        assert_eq!(again.voided, vec![false; 4]);
    }
}
