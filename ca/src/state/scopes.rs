//! What an agent's certificates may carry and be used for, as its
//! registration changes and operators block scopes.
//!
//! - A new certificate carries the registration's scopes less those a
//!   block reaching the agent names ([`grantable`]); at commit time a
//!   certificate signed before a change must still fit ([`fits`]).
//! - A change of registration that removes scopes withdraws them from the
//!   live certificates that carry them ([`withdrawn_from`]); a block
//!   reaches the live certificates of the agents it names that carry the
//!   scope ([`block_reaches_cert`]). Verifiers learn both from the feed,
//!   by serial ([`agentca::verify::Grants`] applies them).
//! - Adding a scope or lengthening the lifetime is a promotion
//!   ([`super::review::split`]): the tenant may require a second admin's
//!   review.
//!
//! Pure functions of records and the time: nothing here reads or writes
//! the store.

use time::OffsetDateTime;

use super::records::{AgentRecord, AgentVersionRecord, BlockRecord, CertRecord};

/// Most blocks of every agent in force at once.
pub const MAX_GLOBAL_BLOCKS: usize = 100;
/// Most blocks in force at once naming agents of one tenant: a tenant's
/// admin cannot use up the room others' blocks need.
pub const MAX_TENANT_BLOCKS: usize = 100;
/// Most blocks naming agents in force at once, over all tenants.
pub const MAX_TARGETED_BLOCKS: usize = 1000;

/// Why a block may not be set.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BlockRefusal {
    /// The same scope is blocked for the same target.
    #[error("this scope is blocked for this target already")]
    Exists,
    /// As many blocks of its kind as allowed are in force.
    #[error("{0} blocks of this kind are in force, the most allowed")]
    TooMany(usize),
}

/// The tenant a block's target names (`None`: every agent).
pub fn block_tenant(target: Option<&str>) -> Option<&str> {
    target.map(|t| t.split('/').next().unwrap_or(t))
}

/// Whether `new` may be set while `blocks` are in force: not twice, and
/// within [`MAX_GLOBAL_BLOCKS`], [`MAX_TENANT_BLOCKS`] for its tenant and
/// [`MAX_TARGETED_BLOCKS`] in all, so that one tenant's blocks never
/// leave no room for a block of every agent or another tenant's.
pub fn may_add_block(blocks: &[BlockRecord], new: &BlockRecord) -> Result<(), BlockRefusal> {
    if blocks
        .iter()
        .any(|b| b.scope == new.scope && b.target == new.target)
    {
        return Err(BlockRefusal::Exists);
    }
    let tenant = block_tenant(new.target.as_deref());
    let (limit, count) = match tenant {
        None => (
            MAX_GLOBAL_BLOCKS,
            blocks.iter().filter(|b| b.target.is_none()).count(),
        ),
        Some(t) => {
            let targeted = blocks.iter().filter(|b| b.target.is_some()).count();
            if targeted >= MAX_TARGETED_BLOCKS {
                return Err(BlockRefusal::TooMany(MAX_TARGETED_BLOCKS));
            }
            let of_tenant = blocks
                .iter()
                .filter(|b| block_tenant(b.target.as_deref()) == Some(t))
                .count();
            (MAX_TENANT_BLOCKS, of_tenant)
        }
    };
    if count >= limit {
        return Err(BlockRefusal::TooMany(limit));
    }
    Ok(())
}

/// Whether an admin limited to `tenant` (`None`: every tenant) may lift
/// `block`: a tenant's admin only its own tenant's blocks, and not one an
/// admin of every tenant set.
pub fn may_lift(block: &BlockRecord, tenant: Option<&str>) -> bool {
    match tenant {
        None => true,
        Some(t) => !block.set_globally && block_tenant(block.target.as_deref()) == Some(t),
    }
}

/// Whether a verifier may still accept `cert` at `at`: not revoked, and
/// `at` no later than its notAfter (a validity period includes its end,
/// RFC 5280 §4.1.2.5, and verifiers accept the certificate through that
/// second). Issuance counts a certificate as live only strictly before
/// its notAfter ([`super::certificate::is_live`]); what takes a scope
/// away must reach it through its last second too.
fn usable_at(cert: &CertRecord, at: OffsetDateTime) -> bool {
    cert.revoked.is_none() && at <= cert.not_after
}

/// Whether `block` reaches the agent stored under `agent_key`
/// (`tenant/env/agent`): a global block every agent; a tenant's, an
/// environment's or an agent's block the agents under that name.
pub fn block_reaches(block: &BlockRecord, agent_key: &str) -> bool {
    match &block.target {
        None => true,
        Some(target) => {
            agent_key == target
                || agent_key
                    .strip_prefix(target.as_str())
                    .is_some_and(|rest| rest.starts_with('/'))
        }
    }
}

/// The scopes a certificate issued now to `agent` carries: its
/// registration's, less those blocked for it.
pub fn grantable(agent: &AgentRecord, blocks: &[BlockRecord]) -> Vec<String> {
    let key = agent.key();
    agent
        .scopes
        .iter()
        .filter(|s| {
            !blocks
                .iter()
                .any(|b| &b.scope == *s && block_reaches(b, &key))
        })
        .cloned()
        .collect()
}

/// Whether a certificate carrying `scopes`, signed for `agent` a moment
/// ago, may still be issued: every scope it carries is still
/// [`grantable`] (a change or a block committed in between is not
/// bypassed).
pub fn fits(scopes: &[String], agent: &AgentRecord, blocks: &[BlockRecord]) -> bool {
    let now = grantable(agent, blocks);
    scopes.iter().all(|s| now.contains(s))
}

/// The scopes of `removed` that a change of registration at `at` takes
/// from `cert`: those it carries (all of them for a certificate issued
/// before scopes were recorded) and has not lost already, if it is live
/// at `at`.
pub fn withdrawn_from(cert: &CertRecord, removed: &[String], at: OffsetDateTime) -> Vec<String> {
    if !usable_at(cert, at) {
        return Vec::new();
    }
    removed
        .iter()
        .filter(|s| {
            cert.scopes
                .as_ref()
                .is_none_or(|carried| carried.contains(s))
        })
        .filter(|s| !cert.withdrawn.contains(s))
        .cloned()
        .collect()
}

/// Whether a block of `scope` set at `at` reaches `cert` (of an agent the
/// block names): it is live at `at` and carries the scope (or was issued
/// before scopes were recorded).
pub fn block_reaches_cert(cert: &CertRecord, scope: &str, at: OffsetDateTime) -> bool {
    usable_at(cert, at)
        && cert
            .scopes
            .as_ref()
            .is_none_or(|carried| carried.iter().any(|s| s == scope))
}

/// The scopes `before` had and `after` has not.
pub fn removed(before: &[String], after: &[String]) -> Vec<String> {
    before
        .iter()
        .filter(|s| !after.contains(s))
        .cloned()
        .collect()
}

/// The version of a registration in force at `at`, from its `history`
/// (oldest first): the last one made at or before `at`.
pub fn version_at(
    history: &[AgentVersionRecord],
    at: OffsetDateTime,
) -> Option<&AgentVersionRecord> {
    history.iter().rev().find(|v| v.at <= at)
}

#[cfg(test)]
mod tests {
    use time::Duration;

    use super::*;
    use crate::state::records::Revocation;
    use crate::state::tests::{agent, cert, t0};

    #[test]
    fn a_tenants_admin_lifts_its_tenants_blocks_only() {
        for target in ["acme", "acme/prod", "acme/prod/bot"] {
            assert!(
                may_lift(&block("s", Some(target)), Some("acme")),
                "{target}"
            );
            assert!(may_lift(&block("s", Some(target)), None), "{target}");
        }
        assert!(!may_lift(&block("s", Some("acme2/prod")), Some("acme")));
        assert!(!may_lift(&block("s", None), Some("acme")));
        let mut from_above = block("s", Some("acme"));
        from_above.set_globally = true;
        assert!(!may_lift(&from_above, Some("acme")));
        assert!(may_lift(&from_above, None));
    }

    fn block(scope: &str, target: Option<&str>) -> BlockRecord {
        BlockRecord {
            id: 1,
            scope: scope.into(),
            target: target.map(Into::into),
            reason: None,
            by: "root".into(),
            at: t0(),
            certificates: None,
            set_globally: false,
        }
    }

    fn scoped(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_block_reaches_the_agents_under_its_name_and_no_namesake() {
        let b = |t| block("pay", t);
        assert!(block_reaches(&b(None), "acme/prod/bot"));
        assert!(block_reaches(&b(Some("acme")), "acme/prod/bot"));
        assert!(block_reaches(&b(Some("acme/prod")), "acme/prod/bot"));
        assert!(block_reaches(&b(Some("acme/prod/bot")), "acme/prod/bot"));
        // A name that merely starts the same is another tenant or agent.
        assert!(!block_reaches(&b(Some("acme")), "acme2/prod/bot"));
        assert!(!block_reaches(&b(Some("acme/prod/bot")), "acme/prod/bot2"));
        assert!(!block_reaches(&b(Some("acme/dev")), "acme/prod/bot"));
    }

    #[test]
    fn a_tenants_blocks_never_use_up_the_room_of_others() {
        let blocks: Vec<BlockRecord> = (0..MAX_TENANT_BLOCKS)
            .map(|i| block(&format!("s{i}"), Some("acme")))
            .collect();
        assert_eq!(
            may_add_block(&blocks, &block("s0", Some("acme"))),
            Err(BlockRefusal::Exists)
        );
        assert_eq!(
            may_add_block(&blocks, &block("more", Some("acme/prod/bot"))),
            Err(BlockRefusal::TooMany(MAX_TENANT_BLOCKS))
        );
        // Another tenant, and every agent, still have room.
        assert_eq!(
            may_add_block(&blocks, &block("more", Some("globex"))),
            Ok(())
        );
        assert_eq!(may_add_block(&blocks, &block("more", None)), Ok(()));
        let globals: Vec<BlockRecord> = (0..MAX_GLOBAL_BLOCKS)
            .map(|i| block(&format!("g{i}"), None))
            .collect();
        assert_eq!(
            may_add_block(&globals, &block("more", None)),
            Err(BlockRefusal::TooMany(MAX_GLOBAL_BLOCKS))
        );
        assert_eq!(
            may_add_block(&globals, &block("more", Some("acme"))),
            Ok(())
        );
        let targeted: Vec<BlockRecord> = (0..MAX_TARGETED_BLOCKS)
            .map(|i| block("s", Some(&format!("t{i}"))))
            .collect();
        assert_eq!(
            may_add_block(&targeted, &block("s", Some("new"))),
            Err(BlockRefusal::TooMany(MAX_TARGETED_BLOCKS))
        );
        assert_eq!(block_tenant(Some("acme/prod/bot")), Some("acme"));
        assert_eq!(block_tenant(None), None);
    }

    #[test]
    fn new_certificates_leave_out_blocked_scopes_and_a_signed_one_must_still_fit() {
        let mut a = agent("acme", "bot");
        a.scopes = scoped(&["pay", "read"]);
        let blocks = [
            block("pay", Some("acme/prod/bot")),
            block("read", Some("globex")),
        ];
        assert_eq!(grantable(&a, &blocks), scoped(&["read"]));
        assert_eq!(grantable(&a, &[]), scoped(&["pay", "read"]));
        // Signed before the block committed: refused at commit.
        assert!(!fits(&scoped(&["pay", "read"]), &a, &blocks));
        assert!(fits(&scoped(&["read"]), &a, &blocks));
        // Signed before a scope was removed.
        let mut demoted = a.clone();
        demoted.scopes = scoped(&["read"]);
        assert!(!fits(&scoped(&["pay", "read"]), &demoted, &[]));
        // Fewer scopes than allowed is fine (a promotion in between).
        assert!(fits(&[], &a, &[]));
    }

    #[test]
    fn a_withdrawal_reaches_live_certificates_that_carry_the_scope() {
        let removed = scoped(&["pay"]);
        let mut c = cert("acme/prod/bot", 1);
        c.scopes = Some(scoped(&["pay", "read"]));
        let expiry = c.not_after;
        // Live up to and including its notAfter.
        assert_eq!(withdrawn_from(&c, &removed, t0()), removed);
        assert_eq!(withdrawn_from(&c, &removed, expiry), removed);
        assert!(withdrawn_from(&c, &removed, expiry + Duration::seconds(1)).is_empty());
        // Not a certificate without the scope, nor one that lost it already.
        let mut without = c.clone();
        without.scopes = Some(scoped(&["read"]));
        assert!(withdrawn_from(&without, &removed, t0()).is_empty());
        let mut lost = c.clone();
        lost.withdrawn = removed.clone();
        assert!(withdrawn_from(&lost, &removed, t0()).is_empty());
        // Not a revoked one.
        let mut revoked = c.clone();
        revoked.revoked = Some(Revocation {
            at: t0(),
            reason: 0,
            seq: 1,
        });
        assert!(withdrawn_from(&revoked, &removed, t0()).is_empty());
        // A certificate issued before scopes were recorded may carry it.
        let mut legacy = c.clone();
        legacy.scopes = None;
        assert_eq!(withdrawn_from(&legacy, &removed, t0()), removed);
    }

    #[test]
    fn a_block_reaches_a_live_certificate_carrying_the_scope() {
        let mut c = cert("acme/prod/bot", 1);
        c.scopes = Some(scoped(&["pay"]));
        assert!(block_reaches_cert(&c, "pay", c.not_after));
        assert!(!block_reaches_cert(
            &c,
            "pay",
            c.not_after + Duration::seconds(1)
        ));
        assert!(!block_reaches_cert(&c, "read", t0()));
    }

    #[test]
    fn the_scopes_an_update_removes() {
        let mut before = agent("acme", "bot");
        before.scopes = scoped(&["read", "write"]);
        assert_eq!(
            removed(&before.scopes, &scoped(&["write"])),
            scoped(&["read"])
        );
    }

    #[test]
    fn the_version_in_force_at_a_time_is_the_last_made_by_then() {
        let a = agent("acme", "bot");
        let v = |n: u64, secs: i64| {
            let mut r =
                AgentVersionRecord::of(&a, "root", "update", t0() + Duration::seconds(secs));
            r.version = n;
            r
        };
        let history = [v(1, 0), v(2, 60), v(3, 120)];
        assert_eq!(version_at(&history, t0() - Duration::seconds(1)), None);
        assert_eq!(version_at(&history, t0()).map(|v| v.version), Some(1));
        assert_eq!(
            version_at(&history, t0() + Duration::seconds(59)).map(|v| v.version),
            Some(1)
        );
        assert_eq!(
            version_at(&history, t0() + Duration::seconds(60)).map(|v| v.version),
            Some(2)
        );
        assert_eq!(
            version_at(&history, t0() + Duration::days(1)).map(|v| v.version),
            Some(3)
        );
    }
}
