//! The admin API: agents, tokens, revocation, the audit trail and the
//! admins themselves; every handler authenticates the admin first.

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use serde::Deserialize;

use agentca::wire::{CreateTokenRequest, PruneAuditRequest, RegisterAgentRequest, RevokeRequest};

use super::extract::*;
use super::{ApiError, AppState, MAX_FEED_WAIT};
use crate::authority::{AgentName, RequestContext};

pub(super) async fn register(
    State(ca): State<AppState>,
    Ctx(ctx): Ctx,
    headers: HeaderMap,
    req: Result<JsonBody<RegisterAgentRequest>, ApiError>,
) -> Result<impl IntoResponse, ApiError> {
    let admin = admin(&ca, &ctx, &headers).await?;
    let req = body(&ca, &ctx, admin.actor(), "register", req).await?;
    Ok((
        StatusCode::CREATED,
        Json(ca.register(&ctx, &admin, req, now()).await?),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ListQuery {
    tenant: Option<String>,
    env: Option<String>,
    state: Option<String>,
    idle_for: Option<u64>,
    limit: Option<usize>,
    after: Option<String>,
}

pub(super) async fn list_agents(
    State(ca): State<AppState>,
    Ctx(ctx): Ctx,
    headers: HeaderMap,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let admin = admin(&ca, &ctx, &headers).await?;
    let q = query
        .map_err(|e| ApiError::bad_request(format!("invalid query: {e}")))
        .and_then(|Query(q)| {
            let enabled = match q.state.as_deref() {
                None => None,
                Some("enabled") => Some(true),
                Some("disabled") => Some(false),
                Some(other) => {
                    return Err(ApiError::bad_request(format!(
                        "state {other:?}: use enabled or disabled"
                    )))
                }
            };
            Ok((q, enabled))
        });
    let (q, enabled) = checked(&ca, &ctx, admin.actor(), "agents.list", q).await?;
    let filter = crate::authority::AgentFilter {
        tenant: q.tenant,
        env: q.env,
        enabled,
        idle_for: q
            .idle_for
            .map(|s| time::Duration::seconds(s.min(i64::MAX as u64) as i64)),
        limit: q.limit.unwrap_or(1000),
        after: q.after,
    };
    let page = ca.list_agents(&ctx, &admin, &filter, now()).await?;
    // The body stays a plain array; where to go on is a header, as with
    // HTTP's own Link header. Agent keys are ASCII names and slashes; were
    // one not, a listing cut short must not look complete.
    let next = page
        .next_after
        .map(|key| {
            header::HeaderValue::try_from(&key).map_err(|_| {
                crate::authority::AuthorityError::Internal(format!(
                    "agent key {key:?} is not a header value"
                ))
            })
        })
        .transpose()?;
    let mut response = Json(page.agents).into_response();
    if let Some(next) = next {
        response
            .headers_mut()
            .insert(agentca::wire::NEXT_AFTER_HEADER, next);
    }
    Ok(response)
}

pub(super) type AgentPath = (String, String, String);

/// The agent named by a `{tenant}/{env}/{agent}` path.
pub(super) fn agent_name((tenant, env, agent): AgentPath) -> AgentName {
    AgentName { tenant, env, agent }
}

pub(super) async fn show_agent(
    State(ca): State<AppState>,
    Ctx(ctx): Ctx,
    headers: HeaderMap,
    p: Result<Path<AgentPath>, PathRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let admin = admin(&ca, &ctx, &headers).await?;
    let name = agent_name(checked(&ca, &ctx, admin.actor(), "agents.show", path(p)).await?);
    Ok(Json(ca.show_agent(&ctx, &admin, &name, now()).await?))
}

pub(super) async fn create_token(
    State(ca): State<AppState>,
    Ctx(ctx): Ctx,
    headers: HeaderMap,
    p: Result<Path<AgentPath>, PathRejection>,
    req: Result<JsonBody<CreateTokenRequest>, ApiError>,
) -> Result<impl IntoResponse, ApiError> {
    let admin = admin(&ca, &ctx, &headers).await?;
    let req = body(&ca, &ctx, admin.actor(), "token.create", req).await?;
    let name = agent_name(checked(&ca, &ctx, admin.actor(), "token.create", path(p)).await?);
    let created = ca.create_token(&ctx, &admin, &name, req, now()).await?;
    Ok((StatusCode::CREATED, Json(created)))
}

pub(super) async fn set_enabled(
    ca: AppState,
    ctx: RequestContext,
    headers: HeaderMap,
    p: Result<Path<AgentPath>, PathRejection>,
    enabled: bool,
) -> Result<impl IntoResponse, ApiError> {
    let admin = admin(&ca, &ctx, &headers).await?;
    let action = if enabled { "enable" } else { "disable" };
    let name = agent_name(checked(&ca, &ctx, admin.actor(), action, path(p)).await?);
    Ok(Json(
        ca.set_enabled(&ctx, &admin, &name, enabled, now()).await?,
    ))
}

pub(super) async fn enable(
    State(ca): State<AppState>,
    Ctx(ctx): Ctx,
    headers: HeaderMap,
    p: Result<Path<AgentPath>, PathRejection>,
) -> Result<impl IntoResponse, ApiError> {
    set_enabled(ca, ctx, headers, p, true).await
}

pub(super) async fn disable(
    State(ca): State<AppState>,
    Ctx(ctx): Ctx,
    headers: HeaderMap,
    p: Result<Path<AgentPath>, PathRejection>,
) -> Result<impl IntoResponse, ApiError> {
    set_enabled(ca, ctx, headers, p, false).await
}

pub(super) async fn revoke(
    State(ca): State<AppState>,
    Ctx(ctx): Ctx,
    headers: HeaderMap,
    req: Result<JsonBody<RevokeRequest>, ApiError>,
) -> Result<impl IntoResponse, ApiError> {
    let admin = admin(&ca, &ctx, &headers).await?;
    let req = body(&ca, &ctx, admin.actor(), "revoke", req).await?;
    Ok(Json(ca.revoke(&ctx, &admin, req, now()).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AuditQuery {
    #[serde(default)]
    since: u64,
    limit: Option<usize>,
    /// Seconds to wait for an event after `since`; 0 (the default) answers
    /// at once.
    #[serde(default)]
    wait: u64,
}

pub(super) async fn audit(
    State(ca): State<AppState>,
    Ctx(ctx): Ctx,
    headers: HeaderMap,
    query: Result<Query<AuditQuery>, QueryRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let admin = admin(&ca, &ctx, &headers).await?;
    let query = query.map_err(|e| ApiError::bad_request(format!("invalid query: {e}")));
    let Query(q) = checked(&ca, &ctx, admin.actor(), "audit.read", query).await?;
    let wait = std::time::Duration::from_secs(q.wait).min(MAX_FEED_WAIT);
    let limit = q.limit.unwrap_or(crate::authority::MAX_AUDIT_PAGE);
    Ok(Json(
        ca.audit_page(&ctx, &admin, q.since, limit, wait).await?,
    ))
}

/// `POST /v1/admin/audit/prune`: remove exported audit events.
pub(super) async fn prune_audit(
    State(ca): State<AppState>,
    Ctx(ctx): Ctx,
    headers: HeaderMap,
    req: Result<JsonBody<PruneAuditRequest>, ApiError>,
) -> Result<impl IntoResponse, ApiError> {
    let admin = admin(&ca, &ctx, &headers).await?;
    let req = body(&ca, &ctx, admin.actor(), "audit.prune", req).await?;
    Ok(Json(ca.prune_audit(&ctx, &admin, req, now()).await?))
}

/// `GET /v1/admin/backup`: a backup of the running CA.
pub(super) async fn backup(
    State(ca): State<AppState>,
    Ctx(ctx): Ctx,
    headers: HeaderMap,
) -> Result<impl IntoResponse, ApiError> {
    let admin = admin(&ca, &ctx, &headers).await?;
    let bytes = ca.backup(&ctx, &admin, now()).await?;
    Ok((
        [(
            axum::http::header::CONTENT_TYPE,
            "application/vnd.agentca.backup",
        )],
        bytes,
    ))
}

pub(super) async fn create_admin(
    State(ca): State<AppState>,
    Ctx(ctx): Ctx,
    headers: HeaderMap,
    req: Result<JsonBody<agentca::wire::CreateAdminRequest>, ApiError>,
) -> Result<impl IntoResponse, ApiError> {
    let admin = admin(&ca, &ctx, &headers).await?;
    let req = body(&ca, &ctx, admin.actor(), "admin.create", req).await?;
    Ok((
        StatusCode::CREATED,
        Json(ca.create_admin(&ctx, &admin, req, now()).await?),
    ))
}

pub(super) async fn list_admins(
    State(ca): State<AppState>,
    Ctx(ctx): Ctx,
    headers: HeaderMap,
) -> Result<impl IntoResponse, ApiError> {
    let admin = admin(&ca, &ctx, &headers).await?;
    Ok(Json(ca.list_admins(&ctx, &admin).await?))
}

pub(super) async fn delete_admin(
    State(ca): State<AppState>,
    Ctx(ctx): Ctx,
    headers: HeaderMap,
    p: Result<Path<String>, PathRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let admin = admin(&ca, &ctx, &headers).await?;
    let name = checked(&ca, &ctx, admin.actor(), "admin.revoke", path(p)).await?;
    ca.delete_admin(&ctx, &admin, &name, now()).await?;
    Ok(Json(serde_json::json!({ "revoked": name })))
}
