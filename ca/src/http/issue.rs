//! Issuance: enrollment with a bootstrap token, renewal over mutual TLS,
//! both behind the issuance admission limit.

use axum::extract::State;
use axum::response::IntoResponse;
use axum::{Extension, Json};

use agentca::wire::{EnrollRequest, RenewRequest};

use super::extract::*;
use super::{ApiError, AppState, ConnInfo, IssuanceLimit};

pub(super) async fn enroll(
    State(ca): State<AppState>,
    Ctx(ctx): Ctx,
    Extension(limit): Extension<IssuanceLimit>,
    req: Result<JsonBody<EnrollRequest>, ApiError>,
) -> Result<impl IntoResponse, ApiError> {
    let _permit = limit.admit()?;
    let req = body(&ca, &ctx, agentca::wire::Actor::Anonymous, "enroll", req).await?;
    Ok(Json(ca.enroll(&ctx, req, now()).await?))
}

pub(super) async fn renew(
    State(ca): State<AppState>,
    Ctx(ctx): Ctx,
    Extension(limit): Extension<IssuanceLimit>,
    conn: Option<Extension<ConnInfo>>,
    req: Result<JsonBody<RenewRequest>, ApiError>,
) -> Result<impl IntoResponse, ApiError> {
    let _permit = limit.admit()?;
    let req = body(&ca, &ctx, agentca::wire::Actor::Anonymous, "renew", req).await?;
    let conn = conn.map(|Extension(c)| c);
    let chain = conn
        .as_ref()
        .and_then(|c| c.peer_chain.as_deref())
        .map(Vec::as_slice);
    Ok(Json(ca.renew(&ctx, chain, req, now()).await?))
}
