//! Every action leaves an audit event: what the HTTP layer knows of a
//! request, who the admin is, and the one combinator that runs an action
//! and records its event (committed with its change, in the same
//! transaction) or its refusal's.

use std::net::SocketAddr;

use agentca::wire::{Actor, AuditEvent};
use time::OffsetDateTime;

use super::error::{refused, Named};
use super::{Authority, AuthorityError};
use crate::issuance::profile;
use crate::state::records::AdminRecord;
use crate::state::{admin, Applied, Change};

/// What the HTTP layer knows of a request, for the audit trail.
#[derive(Clone, Debug, Default)]
pub struct RequestContext {
    /// The request's id (also in the response's `x-request-id`).
    pub request_id: Option<String>,
    /// The peer's address.
    pub remote: Option<SocketAddr>,
}

/// The admin behind a request, once authenticated.
#[derive(Clone, Debug)]
pub struct Admin(pub(super) AdminRecord);

impl Admin {
    /// The admin's name.
    pub fn name(&self) -> &str {
        &self.0.name
    }

    /// The admin as the actor of an audited action.
    pub fn actor(&self) -> Actor {
        Actor::Admin {
            name: self.0.name.clone(),
        }
    }

    /// Whether it may act on `tenant` ([`admin::may_act_on`]).
    pub(super) fn may_act_on(&self, tenant: &str) -> Result<(), AuthorityError> {
        Ok(admin::may_act_on(&self.0, tenant)?)
    }

    /// Whether it may change `tenant`'s agents ([`admin::may_change`]).
    pub(super) fn may_change(&self, tenant: &str) -> Result<(), AuthorityError> {
        Ok(admin::may_change(&self.0, tenant)?)
    }

    /// Whether it may change what is every tenant's
    /// ([`admin::may_change_globally`]).
    pub(super) fn may_change_globally(&self) -> Result<(), AuthorityError> {
        Ok(admin::may_change_globally(&self.0)?)
    }

    /// Whether it may change anything ([`admin::may_change_anything`]).
    pub(super) fn may_change_any(&self) -> Result<(), AuthorityError> {
        Ok(admin::may_change_anything(&self.0)?)
    }

    /// Whether its role only reads (an auditor): for showing, not for
    /// deciding, which the rules do.
    pub fn reads_only(&self) -> bool {
        self.0.role == crate::state::records::Role::Auditor
    }

    /// The one tenant it may act on, if it is limited to one.
    pub fn tenant(&self) -> Option<&str> {
        self.0.tenant.as_deref()
    }

    /// Whether it may act on every tenant ([`admin::may_act_globally`]).
    pub(super) fn may_act_globally(&self) -> Result<(), AuthorityError> {
        Ok(admin::may_act_globally(&self.0)?)
    }

    /// The tenant its listing is limited to ([`admin::visible_tenant`]).
    pub(super) fn visible_tenant<'a>(
        &'a self,
        asked: Option<&'a str>,
    ) -> Result<Option<&'a str>, AuthorityError> {
        Ok(admin::visible_tenant(&self.0, asked)?)
    }
}

impl Authority {
    /// An audit event of `action` by `actor` on `subject`, outcome ok.
    pub(super) fn event(
        &self,
        ctx: &RequestContext,
        actor: Actor,
        action: &str,
        subject: Option<String>,
        now: OffsetDateTime,
    ) -> AuditEvent {
        let mut event = AuditEvent::new(profile::whole_seconds(now), actor, action, subject);
        event.remote_addr = ctx.remote.map(|a| a.to_string());
        event.request_id = ctx.request_id.clone();
        event
    }

    /// Runs `action`, which fills in `event` with what it learns (the
    /// subject, the certificate, the actor once proven) and commits it with
    /// its change ([`Authority::commit`]). When the action is refused, the
    /// event is appended as `refused` with the refusal's code. Failures of
    /// the CA itself are in its log, not the trail (a store that fails could
    /// not record them anyway), and a clone alert is audited in the same
    /// commit as the alert.
    pub(super) async fn audited<T>(
        &self,
        mut event: AuditEvent,
        action: impl AsyncFnOnce(&mut AuditEvent) -> Result<T, AuthorityError>,
    ) -> Result<T, AuthorityError> {
        let result = action(&mut event).await;
        if let Err(e) = &result {
            if !e.is_failure() && !matches!(e, AuthorityError::CloneDetected(_)) {
                self.refusal(event, e.code()).await;
            }
        }
        result
    }

    /// [`Authority::audited`] for a read by an admin: the read itself is
    /// on the record too, folded per admin, action, subject and minute
    /// ([`crate::audit::refusals::Fold::reads`]) so that reading does not
    /// flood the trail.
    pub(super) async fn audited_read<T>(
        &self,
        event: AuditEvent,
        action: impl AsyncFnOnce(&mut AuditEvent) -> Result<T, AuthorityError>,
    ) -> Result<T, AuthorityError> {
        let read = event.clone();
        let result = self.audited(event, action).await;
        if result.is_ok() {
            let (due, recorded) = {
                let mut fold = self.reads.lock().unwrap_or_else(|p| p.into_inner());
                let due = fold.due(read.at);
                (due, fold.note(read))
            };
            self.append_refusals(due.into_iter().chain(recorded)).await;
        }
        result
    }

    /// Appends `event` as refused with `code`, or counts it into a later
    /// summary ([`crate::audit::refusals`]): anyone can be refused, and
    /// refusals must not fill the disk.
    pub(super) async fn refusal(&self, mut event: AuditEvent, code: &str) {
        event.outcome = "refused".into();
        event.reason = Some(code.to_owned());
        let (due, recorded) = {
            let mut fold = self.refusals();
            let due = fold.due(event.at);
            (due, fold.note(event))
        };
        self.append_refusals(due.into_iter().chain(recorded)).await;
    }

    /// Appends refusals or reads (one by one, or summaries); a store that
    /// fails cannot record them, and says so in the log.
    async fn append_refusals(&self, events: impl IntoIterator<Item = AuditEvent>) {
        for event in events {
            if let Err(e) = self.writer.apply(Change::Audit(event)).await {
                tracing::error!(error = %e, "could not record a refusal in the audit trail");
            }
        }
    }

    fn refusals(&self) -> std::sync::MutexGuard<'_, crate::audit::refusals::Fold> {
        self.refusals.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Writes the summaries of refusals and reads counted in a window that
    /// ended by `now` (all of them when `closing`, at shutdown). The server
    /// calls it every few seconds.
    pub async fn write_refusal_summaries(&self, now: OffsetDateTime, closing: bool) {
        let now = profile::whole_seconds(now);
        let take = |fold: &mut crate::audit::refusals::Fold| {
            if closing {
                fold.close(now)
            } else {
                fold.due(now)
            }
        };
        let mut due = take(&mut self.refusals());
        due.extend(take(
            &mut self.reads.lock().unwrap_or_else(|p| p.into_inner()),
        ));
        self.append_refusals(due).await;
    }

    /// Commits `change` and its audit `event` in one transaction: the event
    /// is durable exactly when the change is. A conflict at commit is the
    /// refusal [`refused`] names for what the change was about.
    pub(super) async fn commit(
        &self,
        change: Change,
        event: AuditEvent,
        named: Named<'_>,
    ) -> Result<Applied, AuthorityError> {
        let audited = Change::Audited {
            change: Box::new(change),
            audit: Box::new(event),
        };
        self.writer
            .apply(audited)
            .await?
            .map_err(|conflict| refused(conflict, named))
    }

    /// Appends an event that changes nothing else.
    pub(super) async fn append(&self, event: AuditEvent) -> Result<(), AuthorityError> {
        self.writer
            .apply(Change::Audit(event))
            .await?
            .map_err(|c| AuthorityError::Internal(format!("unexpected store conflict: {c}")))?;
        Ok(())
    }

    /// Records a request refused before it reached its operation (a
    /// malformed body), as every refusal is ([`Authority::refusal`]).
    pub async fn audit_rejected(
        &self,
        ctx: &RequestContext,
        actor: Actor,
        action: &str,
        code: &str,
    ) {
        let event = self.event(ctx, actor, action, None, OffsetDateTime::now_utc());
        self.refusal(event, code).await;
    }
}
