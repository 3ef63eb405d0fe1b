//! What admins read: agents (listed a page at a time, or one with its live
//! certificates and clone alerts), the audit trail, and the stored state
//! behind `/metrics`. A refused read is audited; a granted one is not (a
//! follower of the trail would feed on its own events).

use agentca::identity::{Name, Part};
use agentca::wire::{
    AgentInfo, AuditCheckpoint, AuditPage, CertificateInfo, CloneAlert, PruneAuditRequest,
    PruneAuditResponse,
};
use time::{Duration, OffsetDateTime};

use super::error::Named;
use super::{Admin, AgentName, Authority, AuthorityError, RequestContext};
use crate::state::certificate;
use crate::state::records::AgentRecord;
use crate::state::{Applied, Change};

/// Most agents returned by one listing.
pub const MAX_LIST: usize = 10_000;
/// Most audit events in one page.
pub const MAX_AUDIT_PAGE: usize = 1000;
/// Most live certificates shown for one agent.
const MAX_CERTS_SHOWN: usize = 1_000;
/// Most certificate records read to find an agent's live ones: its index
/// also holds expired and revoked certificates until retention prunes them.
const MAX_CERTS_SCANNED: usize = 4 * MAX_CERTS_SHOWN;
/// Most clone alerts shown for one agent.
const MAX_ALERTS_SHOWN: usize = 100;

/// Which registered agents to list.
#[derive(Clone, Debug, Default)]
pub struct AgentFilter {
    /// Only this tenant.
    pub tenant: Option<String>,
    /// Only this environment (with a tenant).
    pub env: Option<String>,
    /// Only enabled (`true`) or disabled (`false`) agents.
    pub enabled: Option<bool>,
    /// Only agents issued no certificate for at least this long (or never).
    pub idle_for: Option<Duration>,
    /// At most this many.
    pub limit: usize,
    /// Only agents after this one (`tenant/env/agent`): where the previous
    /// page stopped.
    pub after: Option<String>,
}

/// One page of an agent listing.
#[derive(Debug)]
pub struct AgentPage {
    /// The agents, in `tenant/env/agent` order.
    pub agents: Vec<AgentInfo>,
    /// Where the listing stopped (`tenant/env/agent`) when more agents may
    /// match: the `after` of the next page. `None` at the end.
    pub next_after: Option<String>,
}

impl Authority {
    /// Lists registered agents, optionally of one tenant and env.
    pub async fn list_agents(
        &self,
        ctx: &RequestContext,
        admin: &Admin,
        filter: &AgentFilter,
        now: OffsetDateTime,
    ) -> Result<AgentPage, AuthorityError> {
        let subject = filter
            .tenant
            .as_ref()
            .map(|t| format!("{t}/{}", filter.env.as_deref().unwrap_or("*")));
        let event = self.event(ctx, admin.actor(), "agents.list", subject, now);
        self.audited_read(event, async |_| {
            let tenant = admin.visible_tenant(filter.tenant.as_deref())?;
            let prefix = match (tenant, filter.env.as_deref()) {
                (Some(t), Some(e)) => {
                    Name::new(Part::Tenant, t)?;
                    Name::new(Part::Env, e)?;
                    format!("{t}/{e}/")
                }
                (Some(t), None) => {
                    Name::new(Part::Tenant, t)?;
                    format!("{t}/")
                }
                (None, Some(_)) => {
                    return Err(AuthorityError::InvalidRequest(
                        "filtering by env needs a tenant".into(),
                    ))
                }
                (None, None) => String::new(),
            };
            if let Some(after) = &filter.after {
                let bad = || {
                    AuthorityError::InvalidRequest(format!(
                        "after {after:?}: expected tenant/env/agent, as the previous page's next-after gave"
                    ))
                };
                self.id_of_key(after).map_err(|_| bad())?;
            }
            if filter.limit == 0 {
                return Err(AuthorityError::InvalidRequest(
                    "limit must be at least 1".into(),
                ));
            }
            // Filters apply after the key-order scan, which reads at most
            // MAX_LIST agents per page; the next page starts where it stopped.
            let limit = filter.limit.min(MAX_LIST);
            let records = self
                .records
                .agents_after(&prefix, filter.after.as_deref(), MAX_LIST + 1)?;
            let more_unread = records.len() > MAX_LIST;
            let mut agents = Vec::new();
            let mut last_read: Option<String> = None;
            let mut full = false;
            for record in records.into_iter().take(MAX_LIST) {
                if agents.len() == limit {
                    full = true;
                    break;
                }
                let key = record.key();
                last_read = Some(key.clone());
                if filter.enabled.is_some_and(|e| e != record.enabled) {
                    continue;
                }
                if let Some(idle) = filter.idle_for {
                    if record.last_issued_at.is_some_and(|at| at > now - idle) {
                        continue;
                    }
                }
                let mut info = self.info(&record)?;
                self.add_live_certificates(&mut info, &key, now)?;
                agents.push(info);
            }
            // A page that filled up, or that stopped at the read limit, goes on
            // after the last agent it read.
            let next_after = if full || more_unread { last_read } else { None };
            Ok(AgentPage { agents, next_after })
        })
        .await
    }

    /// One agent, with its live certificates and clone alerts.
    pub async fn show_agent(
        &self,
        ctx: &RequestContext,
        admin: &Admin,
        name: &AgentName,
        now: OffsetDateTime,
    ) -> Result<AgentInfo, AuthorityError> {
        let event = self.event(
            ctx,
            admin.actor(),
            "agents.show",
            self.subject_of(name),
            now,
        );
        self.audited_read(event, async |_| {
            let id = self.id_of_name(name)?;
            admin.may_act_on(&name.tenant)?;
            let record = self.registered(&id)?;
            let mut info = self.info(&record)?;
            let key = id.path_key();
            self.add_live_certificates(&mut info, &key, now)?;
            info.clone_alerts = self
                .records
                .alerts_of(&key, MAX_ALERTS_SHOWN)?
                .into_iter()
                .map(|a| CloneAlert {
                    at: a.at,
                    serial: a.serial,
                    instance_id: a.instance_id,
                    requested_key_sha256: a.requested_key_sha256,
                    remote_addr: a.remote_addr,
                })
                .collect();
            info.pending = self.pending_of(&key)?;
            Ok(info)
        })
        .await
    }

    /// Up to `limit` audit events after `since`, waiting up to `wait` for
    /// one if there is none yet; global admins only. Reading the trail is
    /// audited as reads are: the first read of a minute is an event, the
    /// rest counted into one (a follower adds two events a minute, not one
    /// per page).
    pub async fn audit_page(
        &self,
        ctx: &RequestContext,
        admin: &Admin,
        since: u64,
        limit: usize,
        wait: std::time::Duration,
    ) -> Result<AuditPage, AuthorityError> {
        let now = OffsetDateTime::now_utc();
        let event = self.event(ctx, admin.actor(), "audit.read", None, now);
        self.audited_read(event, async |_| {
            admin.may_act_globally()?;
            let limit = limit.clamp(1, MAX_AUDIT_PAGE);
            let mut head = self.writer.audit_head();
            if *head.borrow_and_update() <= since && !wait.is_zero() {
                // Woken by the next commit that appends an event, or not at all.
                let _ = tokio::time::timeout(wait, head.wait_for(|seq| *seq > since)).await;
            }
            // A consistent page: the head first, then only the events up to
            // it (events committed in between wait for the next page), so
            // that the last page ends exactly at the head unless the trail
            // was cut.
            let head = self.records.audit_head()?;
            let checkpoint = self.records.audit_checkpoint()?;
            let mut events = self.records.audit_since(since, limit)?;
            events.retain(|e| e.seq <= head.seq);
            Ok(AuditPage {
                events,
                head_seq: head.seq,
                head_hash: head.hash,
                checkpoint: checkpoint.map(|c| AuditCheckpoint {
                    seq: c.seq,
                    hash: c.hash,
                }),
            })
        })
        .await
    }

    /// Removes the audit events up to `req.through` from the store, once
    /// the caller exported them (it names the last one by its hash); global
    /// admins only. The trail then starts after a checkpoint, which the
    /// next event links to, so that the export and the trail verify as one
    /// chain ([`crate::audit::may_prune`]).
    pub async fn prune_audit(
        &self,
        ctx: &RequestContext,
        admin: &Admin,
        req: PruneAuditRequest,
        now: OffsetDateTime,
    ) -> Result<PruneAuditResponse, AuthorityError> {
        let subject = format!("events through {}", req.through);
        let event = self.event(ctx, admin.actor(), "audit.prune", Some(subject), now);
        self.audited(event, async |event| {
            admin.may_change_globally()?;
            let change = Change::PruneAudit {
                through: req.through,
                hash: req.hash.clone(),
                at: Some(now),
            };
            let mut done = event.clone();
            done.reason = Some(format!("checkpoint {}", req.hash));
            let applied = self
                .commit(change, done, Named::Admin(admin.name()))
                .await?;
            let Applied::AuditPruned(pruned) = applied else {
                return Err(AuthorityError::Internal(format!(
                    "pruning the audit trail answered {applied:?}"
                )));
            };
            tracing::info!(
                admin = admin.name(),
                through = req.through,
                pruned,
                "audit events pruned after export"
            );
            Ok(PruneAuditResponse {
                pruned,
                checkpoint: AuditCheckpoint {
                    seq: req.through,
                    hash: req.hash,
                },
            })
        })
        .await
    }

    /// What `GET /metrics` shows `admin` (`None`: an anonymous scraper).
    /// Series by tenant and env name them, so only an admin of every tenant
    /// sees them; anyone else sees the same counts summed over tenants. A
    /// scoped admin is refused rather than shown less than it asked for.
    pub fn metrics_text(
        &self,
        admin: Option<&Admin>,
        now: OffsetDateTime,
    ) -> Result<String, AuthorityError> {
        let by_tenant = match admin {
            Some(admin) => {
                admin.may_act_globally()?;
                true
            }
            None => false,
        };
        let snapshot = self.metrics_snapshot(now)?;
        Ok(self.metrics.render_for(&snapshot, by_tenant))
    }

    /// The stored state that `GET /metrics` reports.
    pub fn metrics_snapshot(
        &self,
        now: OffsetDateTime,
    ) -> Result<crate::metrics::Snapshot, AuthorityError> {
        let crl = self.revocations.crl();
        let revoked_unexpired = self.revocations.revoked_unexpired(now);
        Ok(crate::metrics::Snapshot {
            ready: self.health(now).status == "ok",
            live_certificates: self
                .metrics
                .unexpired(now)
                .saturating_sub(revoked_unexpired),
            crl_entries: crl.entries as u64,
            crl_number: crl.number,
            crl_this_update: crl.this_update.unix_timestamp(),
            crl_next_update: crl.next_update.unix_timestamp(),
            store_bytes: self.records.store().size_on_disk(),
            // A store that does not answer makes the CA not ready; the
            // scrape still says so.
            audit_last_sequence: self.records.audit_head().ok().map(|head| head.seq),
            intermediate_not_after: self.ca.not_after().unix_timestamp(),
            root_not_after: self.ca.root_not_after().unix_timestamp(),
        })
    }

    /// An agent as the API shows it, without its certificates.
    pub(super) fn info(&self, record: &AgentRecord) -> Result<AgentInfo, AuthorityError> {
        Ok(AgentInfo {
            spiffe_id: self.id_of(record)?,
            owner: record.owner.clone(),
            purpose: record.purpose.clone(),
            ttl_seconds: record.ttl_secs,
            scopes: record.scopes.clone(),
            enabled: record.enabled,
            version: record.version,
            retired_at: record.retired_at,
            created_at: record.created_at,
            updated_at: record.updated_at,
            last_issued_at: record.last_issued_at,
            live_certificates: Vec::new(),
            live_certificates_truncated: false,
            clone_alerts: Vec::new(),
            pending: Vec::new(),
        })
    }

    /// Fills in the certificates of `agent_key` that are live at `now`
    /// ([`certificate::is_live`]), and says whether the list stops at a
    /// limit.
    fn add_live_certificates(
        &self,
        info: &mut AgentInfo,
        agent_key: &str,
        now: OffsetDateTime,
    ) -> Result<(), AuthorityError> {
        let mut scanned = self.records.certs_of(agent_key, MAX_CERTS_SCANNED + 1)?;
        let mut truncated = scanned.len() > MAX_CERTS_SCANNED;
        scanned.truncate(MAX_CERTS_SCANNED);
        let mut live = Vec::new();
        for c in scanned {
            if !certificate::is_live(&c, now) {
                continue;
            }
            if live.len() == MAX_CERTS_SHOWN {
                truncated = true;
                break;
            }
            live.push(CertificateInfo {
                serial: c.serial,
                instance_id: c.instance_id,
                not_before: c.not_before,
                not_after: c.not_after,
                renewed_by: c.renewed_by.map(|r| r.serial),
                scopes: c.scopes,
                withdrawn: c.withdrawn,
                version: c.version,
            });
        }
        info.live_certificates = live;
        info.live_certificates_truncated = truncated;
        Ok(())
    }
}
