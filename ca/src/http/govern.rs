//! The admin API of governance: updating a registration (`PATCH`, with
//! `If-Match`), its history, retiring an agent, scope blocks.

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use serde::Deserialize;

use agentca::wire::{BlockScopeRequest, SetAdminRoleRequest, UpdateAgentRequest};

use super::extract::*;
use super::{ApiError, AppState};

use super::admin::{agent_name, AgentPath};

/// The version an `If-Match` header names: `"3"`, `3` or `W/"3"`; absent
/// or `*`, none.
fn if_match(headers: &HeaderMap) -> Result<Option<u64>, ApiError> {
    let Some(value) = headers.get(header::IF_MATCH) else {
        return Ok(None);
    };
    let text = value
        .to_str()
        .map_err(|_| ApiError::bad_request("If-Match is not text"))?
        .trim();
    if text == "*" {
        return Ok(None);
    }
    let bare = text.trim_start_matches("W/").trim_matches('"');
    bare.parse().map(Some).map_err(|_| {
        ApiError::bad_request(format!(
            "If-Match {text:?} is not a registration version such as \"3\""
        ))
    })
}

pub(super) async fn update(
    State(ca): State<AppState>,
    Ctx(ctx): Ctx,
    headers: HeaderMap,
    p: Result<Path<AgentPath>, PathRejection>,
    req: Result<JsonBody<UpdateAgentRequest>, ApiError>,
) -> Result<impl IntoResponse, ApiError> {
    let admin = admin(&ca, &ctx, &headers).await?;
    let req = body(&ca, &ctx, admin.actor(), "update", req).await?;
    let expected = checked(&ca, &ctx, admin.actor(), "update", if_match(&headers)).await?;
    let name = agent_name(checked(&ca, &ctx, admin.actor(), "update", path(p)).await?);
    let info = ca
        .update_agent(&ctx, &admin, &name, req, expected, now())
        .await?;
    let etag = format!("\"{}\"", info.version);
    // What waits for review is accepted, not done.
    let status = if info.pending.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    };
    Ok((status, [(header::ETAG, etag)], Json(info)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct HistoryQuery {
    /// Only the version in force then: Unix seconds or RFC 3339.
    at: Option<String>,
}

fn parse_at(at: &str) -> Result<time::OffsetDateTime, ApiError> {
    if let Ok(secs) = at.parse::<i64>() {
        return time::OffsetDateTime::from_unix_timestamp(secs)
            .map_err(|_| ApiError::bad_request(format!("at={at} is out of range")));
    }
    time::OffsetDateTime::parse(at, &time::format_description::well_known::Rfc3339).map_err(|_| {
        ApiError::bad_request(format!(
            "at={at:?} is neither Unix seconds nor an RFC 3339 time"
        ))
    })
}

pub(super) async fn history(
    State(ca): State<AppState>,
    Ctx(ctx): Ctx,
    headers: HeaderMap,
    p: Result<Path<AgentPath>, PathRejection>,
    query: Result<Query<HistoryQuery>, QueryRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let admin = admin(&ca, &ctx, &headers).await?;
    let query = query
        .map_err(|e| ApiError::bad_request(format!("invalid query: {e}")))
        .and_then(|Query(q)| q.at.as_deref().map(parse_at).transpose());
    let at = checked(&ca, &ctx, admin.actor(), "agents.history", query).await?;
    let name = agent_name(checked(&ca, &ctx, admin.actor(), "agents.history", path(p)).await?);
    Ok(Json(
        ca.agent_history(&ctx, &admin, &name, at, now()).await?,
    ))
}

pub(super) async fn retire(
    State(ca): State<AppState>,
    Ctx(ctx): Ctx,
    headers: HeaderMap,
    p: Result<Path<AgentPath>, PathRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let admin = admin(&ca, &ctx, &headers).await?;
    let name = agent_name(checked(&ca, &ctx, admin.actor(), "retire", path(p)).await?);
    Ok(Json(ca.retire(&ctx, &admin, &name, now()).await?))
}

pub(super) async fn block(
    State(ca): State<AppState>,
    Ctx(ctx): Ctx,
    headers: HeaderMap,
    req: Result<JsonBody<BlockScopeRequest>, ApiError>,
) -> Result<impl IntoResponse, ApiError> {
    let admin = admin(&ca, &ctx, &headers).await?;
    let req = body(&ca, &ctx, admin.actor(), "scope.block", req).await?;
    let block = ca.block_scope(&ctx, &admin, req, now()).await?;
    Ok((StatusCode::CREATED, Json(block)))
}

pub(super) async fn unblock(
    State(ca): State<AppState>,
    Ctx(ctx): Ctx,
    headers: HeaderMap,
    p: Result<Path<u64>, PathRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let admin = admin(&ca, &ctx, &headers).await?;
    let id = checked(&ca, &ctx, admin.actor(), "scope.unblock", path(p)).await?;
    Ok(Json(ca.unblock_scope(&ctx, &admin, id, now()).await?))
}

pub(super) async fn blocks(
    State(ca): State<AppState>,
    Ctx(ctx): Ctx,
    headers: HeaderMap,
) -> Result<impl IntoResponse, ApiError> {
    let admin = admin(&ca, &ctx, &headers).await?;
    Ok(Json(ca.scope_blocks(&ctx, &admin, now()).await?))
}

pub(super) async fn pending(
    State(ca): State<AppState>,
    Ctx(ctx): Ctx,
    headers: HeaderMap,
) -> Result<impl IntoResponse, ApiError> {
    let admin = admin(&ca, &ctx, &headers).await?;
    Ok(Json(ca.pending_changes(&ctx, &admin, now()).await?))
}

pub(super) async fn approve(
    State(ca): State<AppState>,
    Ctx(ctx): Ctx,
    headers: HeaderMap,
    p: Result<Path<u64>, PathRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let admin = admin(&ca, &ctx, &headers).await?;
    let id = checked(&ca, &ctx, admin.actor(), "update.approve", path(p)).await?;
    Ok(Json(ca.approve(&ctx, &admin, id, now()).await?))
}

pub(super) async fn reject(
    State(ca): State<AppState>,
    Ctx(ctx): Ctx,
    headers: HeaderMap,
    p: Result<Path<u64>, PathRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let admin = admin(&ca, &ctx, &headers).await?;
    let id = checked(&ca, &ctx, admin.actor(), "update.reject", path(p)).await?;
    Ok(Json(ca.reject(&ctx, &admin, id, now()).await?))
}

pub(super) async fn set_admin_role(
    State(ca): State<AppState>,
    Ctx(ctx): Ctx,
    headers: HeaderMap,
    p: Result<Path<String>, PathRejection>,
    req: Result<JsonBody<SetAdminRoleRequest>, ApiError>,
) -> Result<impl IntoResponse, ApiError> {
    let admin = admin(&ca, &ctx, &headers).await?;
    let req = body(&ca, &ctx, admin.actor(), "admin.role", req).await?;
    let expected = checked(&ca, &ctx, admin.actor(), "admin.role", if_match(&headers)).await?;
    let name = checked(&ca, &ctx, admin.actor(), "admin.role", path(p)).await?;
    Ok(Json(
        ca.set_admin_role(&ctx, &admin, &name, req, expected, now())
            .await?,
    ))
}

pub(super) async fn admin_history(
    State(ca): State<AppState>,
    Ctx(ctx): Ctx,
    headers: HeaderMap,
    p: Result<Path<String>, PathRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let admin = admin(&ca, &ctx, &headers).await?;
    let name = checked(&ca, &ctx, admin.actor(), "admin.history", path(p)).await?;
    Ok(Json(ca.admin_history(&ctx, &admin, &name, now()).await?))
}
