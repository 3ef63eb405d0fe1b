//! Promotions are reviewed; demotions are immediate.
//!
//! Where the operator requires review, a change of registration that
//! grants more (a scope added, a longer certificate lifetime) is split
//! ([`split`]): what it takes
//! away, and what it changes without granting (owner, purpose), applies at
//! once; what it grants waits as a [`PendingRecord`] until a second admin,
//! not its author, approves it before it lapses ([`may_approve`]).
//!
//! Pure functions of records and the time: nothing here reads or writes
//! the store.

use time::OffsetDateTime;

use super::records::{AgentRecord, PendingRecord, Update};

/// Why a pending change may not be approved.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReviewRefusal {
    /// Its author may not approve it: review needs a second admin.
    #[error("a change is approved by another admin than its author")]
    OwnChange,
    /// It lapsed.
    #[error("the change lapsed unapproved")]
    Expired,
}

/// Most changes of one tenant's agents waiting at once: one tenant's
/// admin cannot use up the room of others.
pub const MAX_PENDING_PER_TENANT: usize = 100;
/// Most changes waiting at once, over all tenants.
pub const MAX_PENDING: usize = 1000;

/// Whether `new` may wait for review beside `pending`: within
/// [`MAX_PENDING_PER_TENANT`] for its agent's tenant and [`MAX_PENDING`]
/// in all, counting only changes that have not lapsed by `new.at`.
/// Returns the limit reached otherwise.
pub fn may_propose(pending: &[PendingRecord], new: &PendingRecord) -> Result<(), usize> {
    let tenant = |p: &PendingRecord| p.agent_key.split('/').next().map(str::to_owned);
    let waiting: Vec<&PendingRecord> = pending.iter().filter(|p| p.expires_at > new.at).collect();
    if waiting.len() >= MAX_PENDING {
        return Err(MAX_PENDING);
    }
    let mine = tenant(new);
    if waiting.iter().filter(|p| tenant(p) == mine).count() >= MAX_PENDING_PER_TENANT {
        return Err(MAX_PENDING_PER_TENANT);
    }
    Ok(())
}

/// `update` of `before`, split into what applies at once and what waits
/// for review (`None` when nothing grants more). Scopes: those kept apply
/// at once (removals included), those added wait. Lifetime: a shorter one
/// applies at once, a longer one waits. Owner and purpose apply at once.
pub fn split(before: &AgentRecord, update: &Update) -> (Update, Option<Update>) {
    let mut now = Update {
        owner: update.owner.clone(),
        purpose: update.purpose.clone(),
        ..Update::default()
    };
    let mut later = Update::default();
    if let Some(scopes) = &update.scopes {
        let kept: Vec<String> = scopes
            .iter()
            .filter(|s| before.scopes.contains(s))
            .cloned()
            .collect();
        if kept.len() < scopes.len() {
            later.scopes = Some(scopes.clone());
        }
        now.scopes = Some(kept);
    }
    if let Some(ttl) = update.ttl_secs {
        if ttl > before.ttl_secs {
            later.ttl_secs = Some(ttl);
        } else {
            now.ttl_secs = Some(ttl);
        }
    }
    let later = (later != Update::default()).then_some(later);
    (now, later)
}

/// Whether `approver` may approve `pending` at `now`: not its author,
/// and before it lapses (at `expires_at` it has lapsed).
pub fn may_approve(
    pending: &PendingRecord,
    approver: &str,
    now: OffsetDateTime,
) -> Result<(), ReviewRefusal> {
    if pending.by == approver {
        return Err(ReviewRefusal::OwnChange);
    }
    if now >= pending.expires_at {
        return Err(ReviewRefusal::Expired);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use time::Duration;

    use super::*;
    use crate::state::tests::{agent, t0};

    fn scoped(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    fn before() -> AgentRecord {
        let mut a = agent("acme", "bot");
        a.scopes = scoped(&["read", "write"]);
        a
    }

    #[test]
    fn removals_apply_at_once_and_additions_wait() {
        let swap = Update {
            scopes: Some(scoped(&["admin", "read"])),
            owner: Some("team-b".into()),
            ..Default::default()
        };
        let (now, later) = split(&before(), &swap);
        assert_eq!(now.scopes, Some(scoped(&["read"])), "write goes at once");
        assert_eq!(now.owner.as_deref(), Some("team-b"));
        let later = later.expect("admin waits");
        assert_eq!(later.scopes, Some(scoped(&["admin", "read"])));
        assert_eq!(later.owner, None);
        // A pure demotion waits for nothing.
        let shrink = Update {
            scopes: Some(scoped(&["read"])),
            ttl_secs: Some(60),
            ..Default::default()
        };
        let (now, later) = split(&before(), &shrink);
        assert_eq!(later, None);
        assert_eq!(now, shrink);
    }

    #[test]
    fn a_longer_lifetime_waits_and_the_same_one_does_not() {
        let b = before();
        let longer = Update {
            ttl_secs: Some(b.ttl_secs + 1),
            ..Default::default()
        };
        let (now, later) = split(&b, &longer);
        assert_eq!(now.ttl_secs, None);
        assert_eq!(later.unwrap().ttl_secs, Some(b.ttl_secs + 1));
        let same = Update {
            ttl_secs: Some(b.ttl_secs),
            ..Default::default()
        };
        assert_eq!(split(&b, &same).1, None);
    }

    #[test]
    fn a_tenants_waiting_changes_are_bounded_and_lapsed_ones_do_not_count() {
        let change = |agent: &str, secs: i64| PendingRecord {
            id: 0,
            agent_key: agent.into(),
            based_on: 1,
            update: Update::default(),
            by: "alice".into(),
            at: t0(),
            expires_at: t0() + Duration::seconds(secs),
            description: String::new(),
        };
        let full: Vec<PendingRecord> = (0..MAX_PENDING_PER_TENANT)
            .map(|_| change("acme/prod/bot", 60))
            .collect();
        assert_eq!(
            may_propose(&full, &change("acme/dev/x", 60)),
            Err(MAX_PENDING_PER_TENANT)
        );
        assert_eq!(may_propose(&full, &change("globex/prod/y", 60)), Ok(()));
        // Lapsed exactly now: they wait no more.
        let lapsed: Vec<PendingRecord> = (0..MAX_PENDING)
            .map(|_| change("acme/prod/bot", 0))
            .collect();
        assert_eq!(may_propose(&lapsed, &change("acme/prod/bot", 60)), Ok(()));
    }

    #[test]
    fn another_admin_approves_before_it_lapses() {
        let pending = PendingRecord {
            id: 1,
            agent_key: "acme/prod/bot".into(),
            based_on: 1,
            update: Update::default(),
            by: "alice".into(),
            at: t0(),
            expires_at: t0() + Duration::hours(24),
            description: String::new(),
        };
        assert_eq!(
            may_approve(&pending, "alice", t0()),
            Err(ReviewRefusal::OwnChange)
        );
        assert_eq!(may_approve(&pending, "bob", t0()), Ok(()));
        let edge = pending.expires_at;
        assert_eq!(
            may_approve(&pending, "bob", edge - Duration::seconds(1)),
            Ok(())
        );
        assert_eq!(
            may_approve(&pending, "bob", edge),
            Err(ReviewRefusal::Expired)
        );
    }
}
