//! The console's pages that only read: the overview, the agent list and
//! the audit trail.

use std::collections::BTreeMap;

use agentca::wire::AuditEvent;
use axum::extract::{Query, State};
use axum::response::Response;
use serde::Deserialize;

use super::{page, pages, problem, Console, MAX_AGENTS, TAIL};
use crate::authority::{AgentFilter, AuthorityError};
use crate::http::extract::now;
use crate::http::AppState;

/// Up to [`MAX_AGENTS`] agents the admin may see (of `tenant` if given):
/// the agents and whether there were more.
pub(super) async fn all_agents(
    ca: &AppState,
    c: &Console,
    tenant: Option<String>,
) -> Result<(Vec<agentca::wire::AgentInfo>, bool), AuthorityError> {
    let mut agents = Vec::new();
    let mut after = None;
    let tenant = tenant.or_else(|| c.admin.tenant().map(str::to_owned));
    loop {
        let filter = AgentFilter {
            tenant: tenant.clone(),
            env: None,
            enabled: None,
            idle_for: None,
            limit: (MAX_AGENTS - agents.len()).min(crate::authority::MAX_LIST),
            after,
        };
        let page = ca.list_agents(&c.ctx, &c.admin, &filter, now()).await?;
        agents.extend(page.agents);
        match page.next_after {
            Some(next) if agents.len() < MAX_AGENTS => after = Some(next),
            more => return Ok((agents, more.is_some())),
        }
    }
}

/// The end of the audit trail, for a global admin; `None` for others.
/// (Unverified: the audit page is where the trail is verified.)
pub(super) async fn tail(
    ca: &AppState,
    c: &Console,
    verify: bool,
) -> Option<crate::authority::AuditTail> {
    if c.admin.tenant().is_some() {
        return None;
    }
    ca.audit_tail(&c.ctx, &c.admin, TAIL, verify).await.ok()
}

pub(super) async fn overview(State(ca): State<AppState>, c: Console) -> Response {
    let now = now();
    let (list, truncated) = match all_agents(&ca, &c, None).await {
        Ok(found) => found,
        Err(e) => return problem(&c, e),
    };
    let mut groups: BTreeMap<(String, String), pages::Group> = Default::default();
    let mut expiring = Vec::new();
    let mut idle = Vec::new();
    for a in &list {
        let id = a.spiffe_id.to_string();
        let (t, e) = (
            a.spiffe_id.tenant().to_string(),
            a.spiffe_id.env().to_string(),
        );
        let g = groups
            .entry((t.clone(), e.clone()))
            .or_insert_with(|| pages::Group {
                tenant: t,
                env: e,
                ..Default::default()
            });
        match pages::state(a) {
            "retired" => g.retired += 1,
            "enabled" => g.enabled += 1,
            _ => g.disabled += 1,
        }
        g.live += a.live_certificates.len();
        for cert in &a.live_certificates {
            if cert.not_after - now < time::Duration::minutes(5) {
                expiring.push((id.clone(), cert.serial.to_string(), cert.not_after));
            }
        }
        if a.retired_at.is_none()
            && a.last_issued_at
                .is_none_or(|t| now - t > time::Duration::hours(1))
        {
            idle.push((id.clone(), a.last_issued_at));
        }
    }
    expiring.sort_by_key(|(_, _, at)| *at);
    let recent = |keep: &dyn Fn(&AuditEvent) -> bool, events: &[AuditEvent]| {
        let mut found: Vec<AuditEvent> = events.iter().filter(|e| keep(e)).cloned().collect();
        let skip = found.len().saturating_sub(20);
        found.drain(..skip);
        found
    };
    let trail = tail(&ca, &c, false).await;
    let revocations = trail.as_ref().map(|t| {
        recent(
            &|e: &AuditEvent| e.action == "revoke" && e.outcome == "ok",
            &t.events,
        )
    });
    let clones = trail
        .as_ref()
        .map(|t| recent(&|e: &AuditEvent| e.is_clone_alert(), &t.events));
    let crl = ca.revocations().crl();
    let o = pages::Overview {
        agents: list.len(),
        truncated,
        groups: groups.into_values().collect(),
        expiring,
        idle,
        revocations,
        clones,
        crl_this_update: crl.this_update,
        crl_next_update: crl.next_update,
        crl_entries: crl.entries as u64,
        chart: ca.issuance_last_hour(now),
    };
    page(pages::overview(&c.viewer(), &o, now))
}

#[derive(Deserialize)]
pub(super) struct AgentsQuery {
    #[serde(default)]
    q: String,
    tenant: Option<String>,
}

pub(super) async fn agents(
    State(ca): State<AppState>,
    c: Console,
    Query(query): Query<AgentsQuery>,
) -> Response {
    let (mut list, truncated) = match all_agents(&ca, &c, query.tenant.clone()).await {
        Ok(found) => found,
        Err(e) => return problem(&c, e),
    };
    let q = query.q.trim().to_lowercase();
    if !q.is_empty() {
        list.retain(|a| a.spiffe_id.to_string().to_lowercase().contains(&q));
    }
    page(pages::agents(
        &c.viewer(),
        &list,
        query.q.trim(),
        truncated,
        now(),
    ))
}

#[derive(Deserialize)]
pub(super) struct AuditQuery {
    #[serde(default)]
    action: String,
    #[serde(default)]
    subject: String,
    #[serde(default)]
    outcome: String,
}

pub(super) async fn audit(
    State(ca): State<AppState>,
    c: Console,
    Query(q): Query<AuditQuery>,
) -> Response {
    let tail = match ca.audit_tail(&c.ctx, &c.admin, TAIL, true).await {
        Ok(tail) => tail,
        Err(e) => return problem(&c, e),
    };
    let f = pages::AuditFilter {
        action: q.action.trim().chars().take(64).collect(),
        subject: q.subject.trim().chars().take(256).collect(),
        outcome: q.outcome.trim().chars().take(16).collect(),
    };
    let mut shown: Vec<AuditEvent> = tail
        .events
        .iter()
        .filter(|e| f.action.is_empty() || e.action == f.action)
        .filter(|e| f.outcome.is_empty() || e.outcome == f.outcome)
        .filter(|e| {
            f.subject.is_empty() || e.subject.as_deref().is_some_and(|s| s.contains(&f.subject))
        })
        .cloned()
        .collect();
    let skip = shown.len().saturating_sub(500);
    shown.drain(..skip);
    page(pages::audit(
        &c.viewer(),
        &f,
        &shown,
        tail.events.len(),
        &tail.verified,
        now(),
    ))
}
