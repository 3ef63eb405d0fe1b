//! Promotions wait for a second admin where the operator requires it
//! ([`crate::state::review`]): proposing a change, listing what waits,
//! approving (never by its author) and rejecting it.

use agentca::identity::AgentId;
use agentca::wire::{AgentInfo, PendingChange};
use time::OffsetDateTime;

use super::error::Named;
use super::{Admin, Authority, AuthorityError, RequestContext};
use crate::issuance::profile;
use crate::state::governance::Update;
use crate::state::records::{AgentRecord, PendingRecord};
use crate::state::{Applied, Change};

impl Authority {
    /// `update` of `before` (an agent of `id`) as a change waiting for
    /// another admin than `admin` (its id and version are set at commit).
    pub(super) fn pending_record(
        &self,
        admin: &Admin,
        id: &AgentId,
        before: &AgentRecord,
        update: Update,
        now: OffsetDateTime,
    ) -> PendingRecord {
        let now = profile::whole_seconds(now);
        let description = super::govern::describe_change(before, &update.applied_to(before));
        PendingRecord {
            id: 0,
            agent_key: id.path_key(),
            based_on: 0,
            update,
            by: admin.name().to_owned(),
            at: now,
            expires_at: now + self.policy.review.pending_ttl,
            description,
        }
    }

    /// The changes waiting for review that `admin` may see (its tenant's,
    /// or all).
    pub async fn pending_changes(
        &self,
        ctx: &RequestContext,
        admin: &Admin,
        now: OffsetDateTime,
    ) -> Result<Vec<PendingChange>, AuthorityError> {
        let event = self.event(ctx, admin.actor(), "pending.list", None, now);
        self.audited_read(event, async |_| {
            let tenant = admin.visible_tenant(None)?;
            self.records
                .pending_changes()?
                .iter()
                .filter(|p| tenant.is_none_or(|t| p.agent_key.split('/').next() == Some(t)))
                .map(|p| self.pending_info(p))
                .collect()
        })
        .await
    }

    /// The changes of the agent under `key` waiting for review.
    pub(super) fn pending_of(&self, key: &str) -> Result<Vec<PendingChange>, AuthorityError> {
        self.records
            .pending_changes()?
            .iter()
            .filter(|p| p.agent_key == key)
            .map(|p| self.pending_info(p))
            .collect()
    }

    /// Approves the pending change `id`: applied to the version it was
    /// based on, by an admin of its tenant who did not ask for it.
    pub async fn approve(
        &self,
        ctx: &RequestContext,
        admin: &Admin,
        id: u64,
        now: OffsetDateTime,
    ) -> Result<AgentInfo, AuthorityError> {
        let event = self.event(
            ctx,
            admin.actor(),
            "update.approve",
            Some(format!("change {id}")),
            now,
        );
        self.audited(event, async |event| {
            let (pending, agent, mut done) = self.decide_on(admin, id, event)?;
            // Set from what commits.
            done.version = Some(0);
            done.scopes = Some(Vec::new());
            let change = Change::Approve {
                id,
                by: admin.name().to_owned(),
                at: profile::whole_seconds(now),
            };
            self.commit(change, done, Named::Pending(&agent, Some(id))).await?;
            tracing::info!(admin = admin.name(), agent = %agent, pending = id, by = %pending.by, "change approved");
            self.info(&self.registered(&agent)?)
        })
        .await
    }

    /// Rejects the pending change `id`: it is dropped unapplied.
    pub async fn reject(
        &self,
        ctx: &RequestContext,
        admin: &Admin,
        id: u64,
        now: OffsetDateTime,
    ) -> Result<PendingChange, AuthorityError> {
        let event = self.event(
            ctx,
            admin.actor(),
            "update.reject",
            Some(format!("change {id}")),
            now,
        );
        self.audited(event, async |event| {
            let (_, agent, done) = self.decide_on(admin, id, event)?;
            let named = Named::Pending(&agent, Some(id));
            let applied = self.commit(Change::Reject { id }, done, named).await?;
            let Applied::Proposed(rejected) = applied else {
                return Err(AuthorityError::Internal(
                    "a rejection without its record".into(),
                ));
            };
            self.pending_info(&rejected)
        })
        .await
    }

    /// The pending change `id` that `admin` decides on (approves or
    /// rejects), its agent, and the audit event of the decision: the
    /// admin must be one that changes the agent's tenant.
    fn decide_on(
        &self,
        admin: &Admin,
        id: u64,
        event: &mut agentca::wire::AuditEvent,
    ) -> Result<(PendingRecord, AgentId, agentca::wire::AuditEvent), AuthorityError> {
        let (pending, agent) = self.pending_for(admin, id)?;
        event.subject = Some(agent.to_string());
        admin.may_change(agent.tenant().as_str())?;
        let mut done = event.clone();
        done.reason = Some(format!(
            "change {id} by {}: {}",
            pending.by, pending.description
        ));
        Ok((pending, agent, done))
    }

    /// The pending change `id` and its agent, if `admin` may see it (a
    /// change of another tenant is "not found" to a tenant's admin).
    fn pending_for(
        &self,
        admin: &Admin,
        id: u64,
    ) -> Result<(PendingRecord, AgentId), AuthorityError> {
        let pending = self
            .records
            .pending_change(id)?
            .ok_or(AuthorityError::PendingNotFound(id))?;
        let agent = self.id_of_key(&pending.agent_key)?;
        if admin.may_act_on(agent.tenant().as_str()).is_err() {
            return Err(AuthorityError::PendingNotFound(id));
        }
        Ok((pending, agent))
    }

    pub(super) fn pending_info(&self, p: &PendingRecord) -> Result<PendingChange, AuthorityError> {
        Ok(PendingChange {
            id: p.id,
            spiffe_id: self.id_of_key(&p.agent_key)?,
            based_on_version: p.based_on,
            scopes: p.update.scopes.clone(),
            ttl_seconds: p.update.ttl_secs,
            description: p.description.clone(),
            by: p.by.clone(),
            at: p.at,
            expires_at: p.expires_at,
        })
    }
}
