//! Revocation: by serial, by instance, by agent, environment or tenant;
//! and the feed that tells verifiers. What revoking an agent also does is
//! [`crate::state::agent::revoke`]; which certificates a revocation reaches
//! is [`crate::state::certificate::revoked_by`].

use agentca::identity::{Name, Part};
use agentca::wire::{
    FeedSnapshot, RevocationEvent as WireRevocationEvent, RevocationPage, RevokeRequest,
    RevokeResponse, RevokedSerial, ScopeChange, ScopeEvent, Serial,
};
use time::OffsetDateTime;

use super::error::Named;
use super::{Admin, Authority, AuthorityError, RequestContext};
use crate::issuance::profile;
use crate::revocation::crl;
use crate::state::records::{AdminRecord, ScopeChangeRecord, ScopeEventRecord};
use crate::state::{admin, Applied, Change, RevokeTarget};

impl Authority {
    /// Waits (at most 5 s) until the CRL lists the revocations of
    /// `summary`, which `what` (a revocation, a retirement) committed;
    /// answering after that means a verifier reading the CRL sees them.
    pub(super) async fn wait_crl_lists(&self, summary: &crate::state::RevokeSummary, what: &str) {
        let Some(max) = summary.events.iter().map(|e| e.seq).max() else {
            return;
        };
        let listed = self
            .revocations
            .wait_listed(max, std::time::Duration::from_secs(5))
            .await;
        if !listed {
            tracing::warn!(
                seq = max,
                what,
                "the CRL did not list the revoked certificates within 5 s"
            );
        }
    }

    /// Revokes certificates: one by serial, every live one of an instance,
    /// or every live one of an agent, an environment or a tenant. Revoking
    /// agents also disables them and voids their unused tokens, so that they
    /// can neither renew nor enroll until an admin enables them again.
    /// Returns once the revocations are durable and listed in the CRL.
    pub async fn revoke(
        &self,
        ctx: &RequestContext,
        admin: &Admin,
        req: RevokeRequest,
        now: OffsetDateTime,
    ) -> Result<RevokeResponse, AuthorityError> {
        let subject = match (&req.tenant, &req.env, &req.agent) {
            (Some(t), Some(e), Some(a)) => self.subject(t, e, a),
            _ => describe_target(&req),
        };
        let mut event = self.event(ctx, admin.actor(), "revoke", Some(subject), now);
        event.serial = req.serial.clone();
        // The action fills in what it learns (the agent of a serial), for
        // the refusal too.
        self.audited(event, async |event| {
            let reason = match &req.reason {
                Some(r) => crl::parse_reason(r).map_err(AuthorityError::InvalidRequest)?,
                None => 0,
            };
            // The audit event's subject is the agent's SPIFFE ID when the
            // target is one agent's certificate or instance.
            let (target, what) = match (&req.serial, &req.instance_id, &req.tenant) {
                (Some(serial), None, None) if req.env.is_none() && req.agent.is_none() => {
                    let cert = self
                        .records
                        .cert(serial)?
                        .ok_or_else(|| AuthorityError::CertificateNotFound(serial.clone()))?;
                    let id = self.id_of_key(&cert.agent_key)?;
                    event.subject = Some(id.to_string());
                    event.not_after = Some(cert.not_after);
                    admin.may_change(id.tenant().as_str())?;
                    (
                        RevokeTarget::Serial(serial.clone()),
                        format!("certificate {serial}"),
                    )
                }
                (None, Some(instance), None) if req.env.is_none() && req.agent.is_none() => {
                    let certs = self.records.instance_certs(instance, 1)?;
                    let cert = certs
                        .first()
                        .ok_or_else(|| AuthorityError::InstanceNotFound(instance.clone()))?;
                    let id = self.id_of_key(&cert.agent_key)?;
                    event.subject = Some(id.to_string());
                    admin.may_change(id.tenant().as_str())?;
                    (
                        RevokeTarget::Instance(instance.clone()),
                        format!("instance {instance}"),
                    )
                }
                (None, None, Some(tenant)) => {
                    Name::new(Part::Tenant, tenant)?;
                    admin.may_change(tenant)?;
                    let (prefix, exact) = match (&req.env, &req.agent) {
                        (Some(env), Some(agent)) => {
                            (self.agent_id(tenant, env, agent)?.path_key(), true)
                        }
                        (Some(env), None) => {
                            Name::new(Part::Env, env)?;
                            (format!("{tenant}/{env}/"), false)
                        }
                        (None, None) => (format!("{tenant}/"), false),
                        (None, Some(_)) => {
                            return Err(AuthorityError::InvalidRequest(
                                "revoking an agent needs its tenant, env and agent".into(),
                            ))
                        }
                    };
                    let what = prefix.trim_end_matches('/').to_owned();
                    (RevokeTarget::Agents { prefix, exact }, what)
                }
                _ => {
                    return Err(AuthorityError::InvalidRequest(
                        "give exactly one target: serial, instance_id, or tenant with optional env and agent".into(),
                    ))
                }
            };
            event.reason = Some(match event.serial {
                Some(_) => crl::reason_name(reason).to_owned(),
                None => format!("{what}: {}", crl::reason_name(reason)),
            });
            let change = Change::Revoke {
                target,
                reason,
                at: profile::whole_seconds(now),
            };
            let named = Named::Revocation {
                what: &what,
                serial: req.serial.as_ref(),
                instance: req.instance_id.as_ref(),
            };
            let summary = match self.commit(change, event.clone(), named).await? {
                Applied::Revoked(summary) => summary,
                other => {
                    return Err(AuthorityError::Internal(format!(
                        "revocation applied as {other:?}"
                    )))
                }
            };
            let revoked = summary.events.len();
            let serials: Vec<Serial> = summary
                .events
                .iter()
                .take(agentca::wire::MAX_SERIALS_LISTED)
                .map(|e| e.serial.clone())
                .collect();
            tracing::info!(
                admin = admin.name(),
                target = %what,
                reason = crl::reason_name(reason),
                revoked,
                agents_disabled = summary.agents_disabled,
                tokens_voided = summary.tokens_voided,
                "revoked"
            );
            // The ledger publishes committed revocations itself, in order,
            // even if this request is gone; here we only wait for the CRL to
            // list them.
            self.wait_crl_lists(&summary, "revocation").await;
            Ok(RevokeResponse {
                serials_truncated: revoked > serials.len(),
                revoked,
                serials,
                agents_disabled: summary.agents_disabled,
                tokens_voided: summary.tokens_voided,
            })
        })
        .await
    }

    /// A page of the revocation feed after `since`; waits up to `wait` for
    /// news when there is none. What an event says beyond its serial and
    /// times is for `reader` only where [`admin::sees_details_of`] lets it.
    pub async fn revocation_feed(
        &self,
        reader: Option<&Admin>,
        since: u64,
        limit: usize,
        wait: std::time::Duration,
    ) -> RevocationPage {
        let page = self.revocations.feed_since(since, limit, wait).await;
        let reader = reader.map(|a| &a.0);
        let events = page
            .events
            .into_iter()
            .map(|e| {
                let tenant = e.agent_key.split('/').next().unwrap_or_default();
                let details = admin::sees_details_of(reader, tenant);
                WireRevocationEvent {
                    spiffe_id: details.then(|| self.id_of_key(&e.agent_key).ok()).flatten(),
                    instance_id: details.then_some(e.instance_id),
                    reason: details.then(|| crl::reason_name(e.reason).to_owned()),
                    seq: e.seq,
                    serial: e.serial,
                    not_after: e.not_after,
                    revoked_at: e.revoked_at,
                }
            })
            .collect();
        let scopes = page
            .scopes
            .into_iter()
            .map(|e| self.scope_event(reader, e))
            .collect();
        RevocationPage {
            events,
            scopes,
            latest: page.latest,
        }
    }
}

impl Authority {
    /// A scope event as `reader` sees it: a block's target only for an
    /// admin of its tenant ([`admin::sees_details_of`]).
    fn scope_event(&self, reader: Option<&AdminRecord>, e: ScopeEventRecord) -> ScopeEvent {
        let shown = |target: Option<String>| {
            target
                .filter(|t| admin::sees_details_of(reader, t.split('/').next().unwrap_or_default()))
        };
        let change = match e.change {
            ScopeChangeRecord::Withdrawn {
                serial,
                scopes,
                not_after,
                ..
            } => ScopeChange::Withdrawn {
                serial,
                scopes,
                not_after,
            },
            ScopeChangeRecord::Blocked {
                block,
                scope,
                serials,
                target,
                ..
            } => ScopeChange::Blocked {
                block,
                scope,
                serials,
                target: shown(target),
            },
            ScopeChangeRecord::Unblocked { block, .. } => ScopeChange::Unblocked { block },
        };
        ScopeEvent {
            seq: e.seq,
            at: e.at,
            change,
        }
    }

    /// The state a verifier starts from (`GET /v1/revocations/snapshot`):
    /// revoked serials not expired, withdrawals and blocks in force, at
    /// one feed position. What it names beyond serials and scopes is for
    /// `reader` only, as in the feed.
    pub fn feed_snapshot(&self, reader: Option<&Admin>, now: OffsetDateTime) -> FeedSnapshot {
        let state = self.revocations.snapshot(now);
        let reader = reader.map(|a| &a.0);
        FeedSnapshot {
            latest: state.latest,
            revoked: state
                .revoked
                .into_iter()
                .map(|e| RevokedSerial {
                    serial: e.serial,
                    not_after: e.not_after,
                })
                .collect(),
            scopes: state
                .scopes
                .into_iter()
                .map(|e| self.scope_event(reader, e))
                .collect(),
        }
    }
}

/// What a revocation request names, for the audit trail.
fn describe_target(req: &RevokeRequest) -> String {
    if let Some(serial) = &req.serial {
        return format!("serial {serial}");
    }
    if let Some(instance) = &req.instance_id {
        return format!("instance {instance}");
    }
    [
        req.tenant.as_deref(),
        req.env.as_deref(),
        req.agent.as_deref(),
    ]
    .iter()
    .flatten()
    .copied()
    .collect::<Vec<_>>()
    .join("/")
}
