//! What anyone may fetch: health, the trust bundle and intermediates, the
//! CRLs, OCSP, the revocation feed and the metrics.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use serde::Deserialize;

use super::extract::*;
use super::{ApiError, AppState, MAX_FEED_WAIT, MAX_OCSP_GET_LEN};

/// Liveness: the process answers. Always 200, with what is wrong, if
/// anything, in `status`: restarting a replica does not bring its database
/// back.
pub(super) async fn healthz(State(ca): State<AppState>) -> impl IntoResponse {
    Json(ca.health(now()))
}

/// Readiness, for a load balancer: 200 only while the CA can issue (its
/// store answers and its issuing certificate is valid), else 503.
pub(super) async fn readyz(State(ca): State<AppState>) -> impl IntoResponse {
    let health = ca.health(now());
    if health.status == "ok" {
        (StatusCode::OK, HeaderMap::new(), Json(health))
    } else {
        let mut headers = HeaderMap::new();
        headers.insert(header::RETRY_AFTER, header::HeaderValue::from_static("5"));
        (StatusCode::SERVICE_UNAVAILABLE, headers, Json(health))
    }
}

pub(super) async fn intermediates(State(ca): State<AppState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/pem-certificate-chain")],
        ca.ca().intermediate_pem().to_owned(),
    )
}

pub(super) async fn bundle(State(ca): State<AppState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/pem-certificate-chain")],
        ca.bundle_pem().to_owned(),
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FeedQuery {
    #[serde(default)]
    since: u64,
    limit: Option<usize>,
    /// Seconds to wait for news.
    wait: Option<u64>,
}

pub(super) async fn feed(
    State(ca): State<AppState>,
    Ctx(ctx): Ctx,
    headers: HeaderMap,
    query: Result<Query<FeedQuery>, QueryRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::bad_request(format!("invalid query: {e}")))?;
    // An admin's token shows who was revoked and why; a wrong token is
    // refused rather than silently answered as anonymous.
    let reader = optional_admin(&ca, &ctx, &headers).await?;
    let wait = std::time::Duration::from_secs(q.wait.unwrap_or(20)).min(MAX_FEED_WAIT);
    let limit = q.limit.unwrap_or(crate::revocation::MAX_FEED_PAGE);
    let _waiting = FeedWaiting::new(ca.metrics().clone());
    Ok(Json(
        ca.revocation_feed(reader.as_ref(), q.since, limit, wait)
            .await,
    ))
}

/// `GET /v1/revocations/snapshot`: the state a verifier starts from.
pub(super) async fn feed_snapshot(
    State(ca): State<AppState>,
    Ctx(ctx): Ctx,
    headers: HeaderMap,
) -> Result<impl IntoResponse, ApiError> {
    let reader = optional_admin(&ca, &ctx, &headers).await?;
    Ok(Json(ca.feed_snapshot(reader.as_ref(), now())))
}

/// Counts a feed request as a subscriber while it is open.
struct FeedWaiting(Arc<crate::metrics::Metrics>);

impl FeedWaiting {
    fn new(metrics: Arc<crate::metrics::Metrics>) -> Self {
        metrics.feed_waiting(1);
        Self(metrics)
    }
}

impl Drop for FeedWaiting {
    fn drop(&mut self) {
        self.0.feed_waiting(-1);
    }
}

/// Prometheus text format. Public on the API listener, like `/healthz`:
/// it shows counts, and tenant and env names, never agents or serials.
pub(super) async fn metrics(
    State(ca): State<AppState>,
    Ctx(ctx): Ctx,
    headers: HeaderMap,
) -> Result<impl IntoResponse, ApiError> {
    let admin = optional_admin(&ca, &ctx, &headers).await?;
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        ca.metrics_text(admin.as_ref(), now())?,
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CrlQuery {
    format: Option<String>,
}

pub(super) fn crl_response(
    crl: Option<Arc<crate::revocation::crl::SignedCrl>>,
    query: Result<Query<CrlQuery>, QueryRejection>,
    headers: &HeaderMap,
) -> Result<axum::response::Response, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::bad_request(format!("invalid query: {e}")))?;
    let crl = crl.ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "crl_unavailable",
            "no root CRL: the root key is not here and no root.crl was signed offline",
        )
    })?;
    let wants_pem = match q.format.as_deref() {
        Some("pem") => true,
        Some("der") | None => headers
            .get(header::ACCEPT)
            .and_then(|a| a.to_str().ok())
            .is_some_and(|a| a.contains("application/x-pem-file")),
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "format {other:?}: use der or pem"
            )))
        }
    };
    // Caches may keep it until it is due to be replaced, not beyond.
    let fresh_for = (crate::revocation::crl::refresh_at(&crl) - now())
        .whole_seconds()
        .max(0);
    let cache = format!("public, max-age={fresh_for}");
    Ok(if wants_pem {
        (
            [
                (header::CONTENT_TYPE, "application/x-pem-file".to_owned()),
                (header::CACHE_CONTROL, cache),
            ],
            crl.pem.clone(),
        )
            .into_response()
    } else {
        (
            [
                (header::CONTENT_TYPE, "application/pkix-crl".to_owned()),
                (header::CACHE_CONTROL, cache),
            ],
            crl.der.clone(),
        )
            .into_response()
    })
}

pub(super) async fn crl(
    State(ca): State<AppState>,
    headers: HeaderMap,
    query: Result<Query<CrlQuery>, QueryRejection>,
) -> Result<axum::response::Response, ApiError> {
    crl_response(Some(ca.revocations().crl()), query, &headers)
}

pub(super) async fn root_crl(
    State(ca): State<AppState>,
    headers: HeaderMap,
    query: Result<Query<CrlQuery>, QueryRejection>,
) -> Result<axum::response::Response, ApiError> {
    crl_response(ca.revocations().root_crl(), query, &headers)
}

pub(super) fn ocsp_response(answer: crate::revocation::ocsp::Answer) -> axum::response::Response {
    let status =
        StatusCode::from_u16(answer.http_status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (
        status,
        [(header::CONTENT_TYPE, "application/ocsp-response")],
        answer.der,
    )
        .into_response()
}

pub(super) async fn ocsp_post(
    State(ca): State<AppState>,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> axum::response::Response {
    match body {
        Ok(body) => ocsp_response(ca.revocations().ocsp(&body, now())),
        Err(rejection) => ocsp_response(crate::revocation::ocsp::Answer {
            http_status: rejection.status().as_u16(),
            der: crate::revocation::ocsp::malformed(),
        }),
    }
}

pub(super) async fn ocsp_get(
    State(ca): State<AppState>,
    Path(request): Path<String>,
) -> axum::response::Response {
    use base64::Engine;
    if request.len() > MAX_OCSP_GET_LEN {
        return ocsp_response(crate::revocation::ocsp::Answer {
            http_status: StatusCode::URI_TOO_LONG.as_u16(),
            der: crate::revocation::ocsp::malformed(),
        });
    }
    // RFC 6960 appendix A.1: base64 of the DER request, URL-encoded (the
    // path extractor has decoded it). Some clients strip the padding.
    let trimmed = request.trim_end_matches('=');
    match base64::engine::general_purpose::STANDARD_NO_PAD.decode(trimmed) {
        Ok(der) => ocsp_response(ca.revocations().ocsp(&der, now())),
        Err(_) => ocsp_response(crate::revocation::ocsp::Answer {
            http_status: StatusCode::BAD_REQUEST.as_u16(),
            der: crate::revocation::ocsp::malformed(),
        }),
    }
}
