//! What every handler takes from a request: its JSON body, the admin
//! behind it, its audit context; every rejection answered as an [`ApiError`].

use axum::body::Bytes;
use axum::extract::rejection::PathRejection;
use axum::extract::{FromRequest, Path, Request};
use axum::http::{header, HeaderMap, StatusCode};
use serde::de::DeserializeOwned;
use time::OffsetDateTime;

use super::MAX_BODY_BYTES;
use super::{ApiError, ConnInfo};
use crate::authority::{Admin, Authority, RequestContext};

/// A JSON body, with every rejection (too large, not JSON, wrong fields)
/// answered as an [`ApiError`]. An empty body reads as `{}`.
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        // A body said to be something else is refused, not guessed at; a
        // body without a type is read as JSON.
        if let Some(kind) = req.headers().get(header::CONTENT_TYPE) {
            let mime = kind.to_str().unwrap_or_default();
            let essence = mime.split(';').next().unwrap_or_default().trim();
            let json = essence.eq_ignore_ascii_case("application/json")
                || essence.to_ascii_lowercase().ends_with("+json");
            if !json {
                return Err(ApiError::new(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "unsupported_media_type",
                    format!("the body must be application/json, not {mime:?}"),
                ));
            }
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "body_too_large",
                    format!("the request body is larger than {MAX_BODY_BYTES} bytes"),
                )
            } else {
                ApiError::bad_request(format!("could not read the request body: {rejection}"))
            }
        })?;
        let bytes: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
            b"{}"
        } else {
            &bytes
        };
        serde_json::from_slice(bytes).map(JsonBody).map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_json",
                format!("the body is not valid JSON for this request: {e}"),
            )
        })
    }
}

pub(super) fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// A request's id, set by the listener for every request.
#[derive(Clone, Debug)]
pub struct RequestId(pub String);

/// The audit context of a request: its id and the peer's address.
pub struct Ctx(pub RequestContext);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Ctx {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(Ctx(RequestContext {
            request_id: parts.extensions.get::<RequestId>().map(|r| r.0.clone()),
            remote: parts.extensions.get::<ConnInfo>().map(|c| c.remote),
        }))
    }
}

pub(super) async fn admin(
    authority: &Authority,
    ctx: &RequestContext,
    headers: &HeaderMap,
) -> Result<Admin, ApiError> {
    Ok(authority.admin(ctx, bearer(headers)).await?)
}

/// The admin behind a request that may also come from anyone: `None`
/// without a bearer token, an error for a wrong one (refused rather than
/// silently answered as anonymous).
pub(super) async fn optional_admin(
    authority: &Authority,
    ctx: &RequestContext,
    headers: &HeaderMap,
) -> Result<Option<Admin>, ApiError> {
    match bearer(headers) {
        Some(_) => Ok(Some(admin(authority, ctx, headers).await?)),
        None => Ok(None),
    }
}

/// The body, once the caller is known: a malformed body of an audited
/// request is itself an audited refusal.
pub(super) async fn body<T>(
    ca: &Authority,
    ctx: &RequestContext,
    actor: agentca::wire::Actor,
    action: &str,
    body: Result<JsonBody<T>, ApiError>,
) -> Result<T, ApiError> {
    checked(ca, ctx, actor, action, body.map(|JsonBody(t)| t)).await
}

/// `result`, with a refusal recorded as `action` by `actor`: a request
/// refused for its body, query or path is audited like any other.
pub(super) async fn checked<T>(
    ca: &Authority,
    ctx: &RequestContext,
    actor: agentca::wire::Actor,
    action: &str,
    result: Result<T, ApiError>,
) -> Result<T, ApiError> {
    if let Err(e) = &result {
        ca.audit_rejected(ctx, actor, action, e.code).await;
    }
    result
}

pub(super) fn path<T>(p: Result<Path<T>, PathRejection>) -> Result<T, ApiError> {
    p.map(|Path(t)| t)
        .map_err(|e| ApiError::bad_request(format!("invalid path: {e}")))
}

pub(super) fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}
