//! Governing an agent over its life: changes of its registration (each a
//! new version, scopes removed withdrawn at once from live certificates),
//! its history, scope blocks (the kill switch per tool), retirement. The
//! rules are [`crate::state::scopes`] and [`crate::state::agent`]'s.

use agentca::identity::AgentId;
use agentca::wire::{AgentInfo, AgentVersion, BlockScopeRequest, ScopeBlock, UpdateAgentRequest};
use time::OffsetDateTime;

use super::error::Named;
use super::register::check_text;
use super::{
    Admin, AgentName, Authority, AuthorityError, RequestContext, MAX_OWNER_LEN, MAX_PURPOSE_LEN,
};
use crate::issuance::profile;
use crate::state::governance::Update;
use crate::state::records::{AgentVersionRecord, BlockRecord};
use crate::state::{agent, review, scopes, Applied, Change};

/// Longest reason of a block, in bytes.
pub const MAX_REASON_LEN: usize = 512;

impl Authority {
    /// The refusal of an issuance to `id` that [`agent::may_be_issued`]
    /// refused.
    pub(super) fn not_issuable(
        &self,
        id: &AgentId,
        refusal: agent::AgentRefusal,
    ) -> AuthorityError {
        match refusal {
            agent::AgentRefusal::Disabled => AuthorityError::AgentDisabled(id.clone()),
            agent::AgentRefusal::Retired => AuthorityError::AgentRetired(id.clone()),
        }
    }

    /// Changes a registration: a new version. Scopes it removes stop
    /// being honoured at once by the agent's live certificates (the feed
    /// tells verifiers by serial); its next certificate carries the new
    /// set. With `expected`, the update applies only to that version.
    pub async fn update_agent(
        &self,
        ctx: &RequestContext,
        admin: &Admin,
        name: &AgentName,
        req: UpdateAgentRequest,
        expected: Option<u64>,
        now: OffsetDateTime,
    ) -> Result<AgentInfo, AuthorityError> {
        let event = self.event(ctx, admin.actor(), "update", self.subject_of(name), now);
        self.audited(event, async |event| {
            let id = self.id_of_name(name)?;
            admin.may_change(&name.tenant)?;
            if let Some(owner) = &req.owner {
                check_text("owner", owner, MAX_OWNER_LEN)?;
            }
            if let Some(purpose) = &req.purpose {
                check_text("purpose", purpose, MAX_PURPOSE_LEN)?;
            }
            let scopes = req
                .scopes
                .as_ref()
                .map(|s| agentca::scopes::normalize(s))
                .transpose()
                .map_err(|e| AuthorityError::InvalidRequest(e.to_string()))?;
            let ttl_secs = req
                .ttl_seconds
                .map(|t| self.policy.certificate_ttl(Some(t)))
                .transpose()?
                .map(|t| t.whole_seconds() as u64);
            let update = Update {
                owner: req.owner.clone(),
                purpose: req.purpose.clone(),
                ttl_secs,
                scopes,
            };
            let before = self.registered(&id)?;
            // Where promotions are reviewed, what grants more waits and what
            // takes away applies now; both as split from this version, so
            // the update applies to it alone (a change committed in between
            // must not turn a promotion into something kept).
            let reviewed = self.policy.review.required_for(&name.tenant);
            let (update, later) = if reviewed {
                review::split(&before, &update)
            } else {
                (update, None)
            };
            let expected = if reviewed {
                Some(expected.unwrap_or(before.version))
            } else {
                expected
            };
            let after = update.applied_to(&before);
            let then_propose = later.map(|later| self.pending_record(admin, &id, &before, later, now));
            let mut done = event.clone();
            let mut said = describe_change(&before, &after);
            if let Some(p) = &then_propose {
                if after == before {
                    done.action = "update.propose".into();
                    said = format!("waits for review: {}", p.description);
                } else {
                    said = format!("{said}; waits for review: {}", p.description);
                }
            }
            done.reason = Some(said);
            done.scopes = Some(after.scopes.clone());
            done.version = Some(before.version);
            let change = Change::UpdateAgent {
                key: id.path_key(),
                expected,
                update,
                by: admin.name().to_owned(),
                at: profile::whole_seconds(now),
                then_propose,
            };
            let applied = self.commit(change, done, Named::Agent(&id)).await?;
            let withdrawn = applied.scope_events().len();
            tracing::info!(admin = admin.name(), agent = %id, withdrawn_from = withdrawn, "registration updated");
            let mut info = self.info(&self.registered(&id)?)?;
            if let Applied::Versioned {
                pending: Some(pending),
                ..
            } = &applied
            {
                tracing::info!(admin = admin.name(), agent = %id, pending = pending.id, "change waits for review");
                info.pending.push(self.pending_info(pending)?);
            }
            Ok(info)
        })
        .await
    }

    /// The versions of a registration, oldest first; with `at`, only the
    /// one in force then ([`scopes::version_at`]).
    pub async fn agent_history(
        &self,
        ctx: &RequestContext,
        admin: &Admin,
        name: &AgentName,
        at: Option<OffsetDateTime>,
        now: OffsetDateTime,
    ) -> Result<Vec<AgentVersion>, AuthorityError> {
        let event = self.event(
            ctx,
            admin.actor(),
            "agents.history",
            self.subject_of(name),
            now,
        );
        self.audited_read(event, async |_| {
            let id = self.id_of_name(name)?;
            admin.may_act_on(&name.tenant)?;
            let mut history = self.records.agent_history(&id.path_key())?;
            if history.is_empty() {
                // Registered before versions were kept, and unchanged since.
                let record = self.registered(&id)?;
                let by = crate::state::governance::NOT_RECORDED;
                history.push(AgentVersionRecord::of(
                    &record,
                    by,
                    "register",
                    record.created_at,
                ));
            }
            let versions: Vec<&AgentVersionRecord> = match at {
                Some(at) => scopes::version_at(&history, at).into_iter().collect(),
                None => history.iter().collect(),
            };
            Ok(versions.into_iter().map(version_info).collect())
        })
        .await
    }

    /// Blocks a scope for every agent (global admins only), or the agents
    /// of a tenant, an environment or one agent. Verifiers that follow the
    /// feed refuse it at once for the certificates it reaches; new
    /// certificates leave it out while the block stands.
    pub async fn block_scope(
        &self,
        ctx: &RequestContext,
        admin: &Admin,
        req: BlockScopeRequest,
        now: OffsetDateTime,
    ) -> Result<ScopeBlock, AuthorityError> {
        let target = block_target(&req);
        let subject = Some(match &target {
            Some(t) => format!("{} for {t}", req.scope),
            None => format!("{} for every agent", req.scope),
        });
        let event = self.event(ctx, admin.actor(), "scope.block", subject, now);
        self.audited(event, async |event| {
            agentca::scopes::check_scope(&req.scope)
                .map_err(|e| AuthorityError::InvalidRequest(e.to_string()))?;
            match (&req.tenant, &req.env, &req.agent) {
                (None, None, None) => admin.may_change_globally()?,
                (Some(t), None, None) => {
                    agentca::identity::Name::new(agentca::identity::Part::Tenant, t)?;
                    admin.may_change(t)?;
                }
                (Some(t), Some(e), None) => {
                    agentca::identity::Name::new(agentca::identity::Part::Tenant, t)?;
                    agentca::identity::Name::new(agentca::identity::Part::Env, e)?;
                    admin.may_change(t)?;
                }
                (Some(t), Some(e), Some(a)) => {
                    self.agent_id(t, e, a)?;
                    admin.may_change(t)?;
                }
                _ => {
                    return Err(AuthorityError::InvalidRequest(
                        "a block names a tenant, a tenant and an environment, all three with an agent, or none (every agent)".into(),
                    ))
                }
            }
            if let Some(reason) = &req.reason {
                check_text("reason", reason, MAX_REASON_LEN)?;
            }
            let block = BlockRecord {
                id: 0,
                scope: req.scope.clone(),
                target: target.clone(),
                reason: req.reason.clone(),
                by: admin.name().to_owned(),
                at: profile::whole_seconds(now),
                certificates: None,
                set_globally: admin.tenant().is_none(),
            };
            let mut done = event.clone();
            done.reason = req.reason.clone();
            done.scopes = Some(vec![req.scope.clone()]);
            let applied = self
                .commit(Change::BlockScope(block), done, Named::Block(None))
                .await?;
            let Applied::Scoped { block: Some(block), .. } = applied else {
                return Err(AuthorityError::Internal("a block committed without its record".into()));
            };
            tracing::warn!(admin = admin.name(), scope = %block.scope, target = block.target.as_deref().unwrap_or("every agent"), id = block.id, certificates = block.certificates.unwrap_or(0), "scope blocked");
            Ok(block_info(&block))
        })
        .await
    }

    /// Lifts a block.
    pub async fn unblock_scope(
        &self,
        ctx: &RequestContext,
        admin: &Admin,
        id: u64,
        now: OffsetDateTime,
    ) -> Result<ScopeBlock, AuthorityError> {
        let event = self.event(
            ctx,
            admin.actor(),
            "scope.unblock",
            Some(format!("block {id}")),
            now,
        );
        self.audited(event, async |event| {
            admin.may_change_any()?;
            let change = Change::UnblockScope {
                id,
                tenant: admin.tenant().map(str::to_owned),
                at: profile::whole_seconds(now),
            };
            let applied = self
                .commit(change, event.clone(), Named::Block(Some(id)))
                .await?;
            let Applied::Scoped {
                block: Some(block), ..
            } = applied
            else {
                return Err(AuthorityError::Internal(
                    "a lifted block without its record".into(),
                ));
            };
            tracing::warn!(admin = admin.name(), scope = %block.scope, id, "scope unblocked");
            Ok(block_info(&block))
        })
        .await
    }

    /// The blocks in force that `admin` may see: every one for a global
    /// admin; the global ones and its tenant's for a tenant's.
    pub async fn scope_blocks(
        &self,
        ctx: &RequestContext,
        admin: &Admin,
        now: OffsetDateTime,
    ) -> Result<Vec<ScopeBlock>, AuthorityError> {
        let event = self.event(ctx, admin.actor(), "scopes.blocks", None, now);
        self.audited_read(event, async |_| {
            let tenant = admin.visible_tenant(None)?;
            Ok(self
                .records
                .scope_blocks()?
                .iter()
                .filter(|b| match (tenant, &b.target) {
                    (None, _) | (_, None) => true,
                    (Some(t), Some(target)) => target.split('/').next() == Some(t),
                })
                .map(block_info)
                .collect())
        })
        .await
    }

    /// Retires an agent: its live certificates revoked, its tokens voided,
    /// never issued anything again; its name is not registered again
    /// unless an admin reuses it explicitly. Its history stays.
    pub async fn retire(
        &self,
        ctx: &RequestContext,
        admin: &Admin,
        name: &AgentName,
        now: OffsetDateTime,
    ) -> Result<AgentInfo, AuthorityError> {
        let event = self.event(ctx, admin.actor(), "retire", self.subject_of(name), now);
        self.audited(event, async |event| {
            let id = self.id_of_name(name)?;
            admin.may_change(&name.tenant)?;
            let mut done = event.clone();
            // Set from what commits.
            done.version = Some(0);
            let change = Change::Retire {
                key: id.path_key(),
                by: admin.name().to_owned(),
                at: profile::whole_seconds(now),
            };
            let applied = self.commit(change, done, Named::Agent(&id)).await?;
            // As a revocation does: answered once the CRL lists them.
            if let Applied::Revoked(summary) = &applied {
                self.wait_crl_lists(summary, "retirement").await;
            }
            tracing::warn!(admin = admin.name(), agent = %id, "agent retired");
            self.info(&self.registered(&id)?)
        })
        .await
    }
}

/// What a block names, as `tenant[/env[/agent]]`.
fn block_target(req: &BlockScopeRequest) -> Option<String> {
    let parts: Vec<&str> = [&req.tenant, &req.env, &req.agent]
        .into_iter()
        .map_while(|p| p.as_deref())
        .collect();
    (!parts.is_empty()).then(|| parts.join("/"))
}

fn block_info(b: &BlockRecord) -> ScopeBlock {
    ScopeBlock {
        id: b.id,
        scope: b.scope.clone(),
        target: b.target.clone(),
        reason: b.reason.clone(),
        by: b.by.clone(),
        at: b.at,
        certificates: b.certificates,
    }
}

fn version_info(v: &AgentVersionRecord) -> AgentVersion {
    AgentVersion {
        version: v.version,
        at: v.at,
        by: v.by.clone(),
        change: v.change.clone(),
        owner: v.owner.clone(),
        purpose: v.purpose.clone(),
        ttl_seconds: v.ttl_secs,
        scopes: v.scopes.clone(),
        retired: v.retired,
    }
}

/// What changes from `before` to `after`, for the audit trail.
pub(super) fn describe_change(
    before: &crate::state::records::AgentRecord,
    after: &crate::state::records::AgentRecord,
) -> String {
    let mut said = Vec::new();
    if before.scopes != after.scopes {
        let removed = scopes::removed(&before.scopes, &after.scopes);
        let added = scopes::removed(&after.scopes, &before.scopes);
        if !added.is_empty() {
            said.push(format!("scopes added: {}", added.join(" ")));
        }
        if !removed.is_empty() {
            said.push(format!("scopes removed: {}", removed.join(" ")));
        }
    }
    if before.ttl_secs != after.ttl_secs {
        said.push(format!("ttl {} s -> {} s", before.ttl_secs, after.ttl_secs));
    }
    if before.owner != after.owner {
        said.push(format!("owner {:?} -> {:?}", before.owner, after.owner));
    }
    if before.purpose != after.purpose {
        said.push("purpose changed".into());
    }
    if said.is_empty() {
        "no change".into()
    } else {
        said.join("; ")
    }
}
