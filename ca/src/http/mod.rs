//! The HTTP API: thin handlers that parse, call the [`Authority`], and
//! answer.
//!
//! | method and path | who | what |
//! |---|---|---|
//! | `GET /healthz` | anyone | health |
//! | `GET /v1/bundle` | anyone | the trust bundle (PEM) |
//! | `GET /v1/intermediates` | anyone | the issuing CA certificate (PEM), to check CRL signatures |
//! | `POST /v1/enroll` | agent with a bootstrap token | first certificate |
//! | `POST /v1/renew` | agent, over mutual TLS | next certificate |
//! | `POST /v1/admin/agents` | admin | register an agent |
//! | `GET /v1/admin/agents?tenant=&env=&state=&idle_for=&limit=&after=` | admin | list agents, a page at a time |
//! | `GET /v1/admin/agents/{tenant}/{env}/{agent}` | admin | one agent |
//! | `POST /v1/admin/agents/{tenant}/{env}/{agent}/tokens` | admin | bootstrap token |
//! | `POST /v1/admin/agents/{tenant}/{env}/{agent}/enable` | admin | enable |
//! | `POST /v1/admin/agents/{tenant}/{env}/{agent}/disable` | admin | disable |
//! | `POST /v1/admin/revoke` | admin | revoke by serial, instance, agent, env or tenant |
//! | `GET /v1/revocations?since=&limit=&wait=` | anyone | the revocation feed (long poll) |
//! | `GET /v1/crl`, `GET /v1/crl/root` | anyone | CRLs (DER; `?format=pem` for PEM) |
//! | `POST /v1/ocsp`, `GET /v1/ocsp/{base64}` | anyone | OCSP |
//!
//! CRLs, OCSP and `/healthz` are also served by [`public_router`] for the
//! optional plain-HTTP listener: they are signed objects, and fetching them
//! over plain HTTP is the usual practice (it avoids a TLS check inside a
//! revocation check). The feed is not: it is not signed.

pub mod error;
pub mod server;
pub mod tls;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, FromRequest, MatchedPath, Path, Query, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use rustls_pki_types::CertificateDer;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use time::OffsetDateTime;

use agentca::wire::{
    CreateTokenRequest, EnrollRequest, RegisterAgentRequest, RenewRequest, RevokeRequest,
};

use crate::authority::{Admin, Authority, RequestContext};
pub use error::ApiError;

/// Largest request body accepted, in bytes.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// What the server knows about the connection a request came on.
#[derive(Clone, Debug)]
pub struct ConnInfo {
    /// The peer's address.
    pub remote: SocketAddr,
    /// The client certificate chain presented in the TLS handshake.
    pub peer_chain: Option<Arc<Vec<CertificateDer<'static>>>>,
}

type AppState = Arc<Authority>;

/// Longest OCSP GET path accepted, in bytes.
pub const MAX_OCSP_GET_LEN: usize = 4096;
/// Longest wait of a feed request: well inside the 30 s request timeout.
pub const MAX_FEED_WAIT: std::time::Duration = std::time::Duration::from_secs(25);

fn public_routes() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/v1/crl", get(crl))
        .route("/v1/crl/root", get(root_crl))
        .route("/v1/intermediates", get(intermediates))
        .route("/v1/ocsp", post(ocsp_post))
        .route("/v1/ocsp/{*request}", get(ocsp_get))
}

/// The routes of the plain-HTTP listener: signed revocation data and health.
pub fn public_router(authority: Arc<Authority>) -> Router {
    public_routes()
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn(tag_route))
        .with_state(authority)
}

/// Most enroll and renew requests handled at once; further ones are
/// answered 503 with `Retry-After` at once rather than queued, so that a
/// renewal storm cannot make latency grow without bound.
pub const DEFAULT_MAX_ISSUING: usize = 256;

/// Admission control for issuance: a request that finds no permit is
/// refused with [`ApiError::overloaded`].
#[derive(Clone, Debug)]
pub struct IssuanceLimit(Arc<tokio::sync::Semaphore>);

impl IssuanceLimit {
    /// At most `n` issuance requests at once.
    pub fn new(n: usize) -> Self {
        Self(Arc::new(tokio::sync::Semaphore::new(n.max(1))))
    }

    fn admit(&self) -> Result<tokio::sync::SemaphorePermit<'_>, ApiError> {
        self.0.try_acquire().map_err(|_| ApiError::overloaded())
    }
}

/// The API's routes over `authority`, with at most `issuing` enroll and
/// renew requests in progress at once.
pub fn router(authority: Arc<Authority>, issuing: IssuanceLimit) -> Router {
    public_routes()
        .route("/v1/bundle", get(bundle))
        .route("/v1/revocations", get(feed))
        .route("/v1/admin/revoke", post(revoke))
        .route("/v1/enroll", post(enroll))
        .route("/v1/renew", post(renew))
        .route("/v1/admin/agents", post(register).get(list_agents))
        .route("/v1/admin/agents/{tenant}/{env}/{agent}", get(show_agent))
        .route(
            "/v1/admin/agents/{tenant}/{env}/{agent}/tokens",
            post(create_token),
        )
        .route(
            "/v1/admin/agents/{tenant}/{env}/{agent}/enable",
            post(enable),
        )
        .route(
            "/v1/admin/agents/{tenant}/{env}/{agent}/disable",
            post(disable),
        )
        .route("/v1/admin/audit", get(audit))
        .route("/v1/admin/admins", post(create_admin).get(list_admins))
        .route(
            "/v1/admin/admins/{name}",
            axum::routing::delete(delete_admin),
        )
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(Extension(issuing))
        .layer(axum::middleware::from_fn(tag_route))
        .with_state(authority)
}

/// Copies the matched route into the response, where the listener reads it
/// to label the request's metrics.
async fn tag_route(req: Request, next: axum::middleware::Next) -> axum::response::Response {
    let matched = req.extensions().get::<MatchedPath>().cloned();
    let mut response = next.run(req).await;
    if let Some(matched) = matched {
        response.extensions_mut().insert(matched);
    }
    response
}

/// A JSON body, with every rejection (too large, not JSON, wrong fields)
/// answered as an [`ApiError`]. An empty body reads as `{}`.
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
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

fn bearer(headers: &HeaderMap) -> Option<&str> {
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

async fn admin(
    authority: &Authority,
    ctx: &RequestContext,
    headers: &HeaderMap,
) -> Result<Admin, ApiError> {
    Ok(authority.admin(ctx, bearer(headers)).await?)
}

/// The body, once the caller is known: a malformed body of an audited
/// request is itself an audited refusal.
async fn body<T>(
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
async fn checked<T>(
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

fn path<T>(p: Result<Path<T>, PathRejection>) -> Result<T, ApiError> {
    p.map(|Path(t)| t)
        .map_err(|e| ApiError::bad_request(format!("invalid path: {e}")))
}

fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

async fn healthz(State(ca): State<AppState>) -> impl IntoResponse {
    let health = ca.health(now());
    let status = if health.status == "ok" {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(health))
}

async fn intermediates(State(ca): State<AppState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/pem-certificate-chain")],
        ca.ca().intermediate_pem().to_owned(),
    )
}

async fn bundle(State(ca): State<AppState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/pem-certificate-chain")],
        ca.bundle_pem().to_owned(),
    )
}

async fn enroll(
    State(ca): State<AppState>,
    Ctx(ctx): Ctx,
    Extension(limit): Extension<IssuanceLimit>,
    req: Result<JsonBody<EnrollRequest>, ApiError>,
) -> Result<impl IntoResponse, ApiError> {
    let _permit = limit.admit()?;
    let req = body(&ca, &ctx, agentca::wire::Actor::Anonymous, "enroll", req).await?;
    Ok(Json(ca.enroll(&ctx, req, now()).await?))
}

async fn renew(
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

async fn register(
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
struct ListQuery {
    tenant: Option<String>,
    env: Option<String>,
    state: Option<String>,
    idle_for: Option<u64>,
    limit: Option<usize>,
    after: Option<String>,
}

async fn list_agents(
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

type AgentPath = (String, String, String);

async fn show_agent(
    State(ca): State<AppState>,
    Ctx(ctx): Ctx,
    headers: HeaderMap,
    p: Result<Path<AgentPath>, PathRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let admin = admin(&ca, &ctx, &headers).await?;
    let (t, e, a) = checked(&ca, &ctx, admin.actor(), "agents.show", path(p)).await?;
    Ok(Json(ca.show_agent(&ctx, &admin, &t, &e, &a, now()).await?))
}

async fn create_token(
    State(ca): State<AppState>,
    Ctx(ctx): Ctx,
    headers: HeaderMap,
    p: Result<Path<AgentPath>, PathRejection>,
    req: Result<JsonBody<CreateTokenRequest>, ApiError>,
) -> Result<impl IntoResponse, ApiError> {
    let admin = admin(&ca, &ctx, &headers).await?;
    let req = body(&ca, &ctx, admin.actor(), "token.create", req).await?;
    let (t, e, a) = checked(&ca, &ctx, admin.actor(), "token.create", path(p)).await?;
    Ok((
        StatusCode::CREATED,
        Json(
            ca.create_token(&ctx, &admin, &t, &e, &a, req, now())
                .await?,
        ),
    ))
}

async fn set_enabled(
    ca: AppState,
    ctx: RequestContext,
    headers: HeaderMap,
    p: Result<Path<AgentPath>, PathRejection>,
    enabled: bool,
) -> Result<impl IntoResponse, ApiError> {
    let admin = admin(&ca, &ctx, &headers).await?;
    let action = if enabled { "enable" } else { "disable" };
    let (t, e, a) = checked(&ca, &ctx, admin.actor(), action, path(p)).await?;
    Ok(Json(
        ca.set_enabled(&ctx, &admin, &t, &e, &a, enabled, now())
            .await?,
    ))
}

async fn enable(
    State(ca): State<AppState>,
    Ctx(ctx): Ctx,
    headers: HeaderMap,
    p: Result<Path<AgentPath>, PathRejection>,
) -> Result<impl IntoResponse, ApiError> {
    set_enabled(ca, ctx, headers, p, true).await
}

async fn disable(
    State(ca): State<AppState>,
    Ctx(ctx): Ctx,
    headers: HeaderMap,
    p: Result<Path<AgentPath>, PathRejection>,
) -> Result<impl IntoResponse, ApiError> {
    set_enabled(ca, ctx, headers, p, false).await
}

async fn revoke(
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
struct FeedQuery {
    #[serde(default)]
    since: u64,
    limit: Option<usize>,
    /// Seconds to wait for news.
    wait: Option<u64>,
}

async fn feed(
    State(ca): State<AppState>,
    query: Result<Query<FeedQuery>, QueryRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::bad_request(format!("invalid query: {e}")))?;
    let wait = std::time::Duration::from_secs(q.wait.unwrap_or(20)).min(MAX_FEED_WAIT);
    let limit = q.limit.unwrap_or(crate::revocation::MAX_FEED_PAGE);
    let _waiting = FeedWaiting::new(ca.metrics().clone());
    Ok(Json(ca.revocation_feed(q.since, limit, wait).await))
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditQuery {
    #[serde(default)]
    since: u64,
    limit: Option<usize>,
    /// Seconds to wait for an event after `since`; 0 (the default) answers
    /// at once.
    #[serde(default)]
    wait: u64,
}

async fn audit(
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

async fn create_admin(
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

async fn list_admins(
    State(ca): State<AppState>,
    Ctx(ctx): Ctx,
    headers: HeaderMap,
) -> Result<impl IntoResponse, ApiError> {
    let admin = admin(&ca, &ctx, &headers).await?;
    Ok(Json(ca.list_admins(&ctx, &admin).await?))
}

async fn delete_admin(
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

/// Prometheus text format. Public on the API listener, like `/healthz`:
/// it shows counts, and tenant and env names, never agents or serials.
async fn metrics(State(ca): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    let snapshot = ca.metrics_snapshot(now())?;
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        ca.metrics().render(&snapshot),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CrlQuery {
    format: Option<String>,
}

fn crl_response(
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

async fn crl(
    State(ca): State<AppState>,
    headers: HeaderMap,
    query: Result<Query<CrlQuery>, QueryRejection>,
) -> Result<axum::response::Response, ApiError> {
    crl_response(Some(ca.revocations().crl()), query, &headers)
}

async fn root_crl(
    State(ca): State<AppState>,
    headers: HeaderMap,
    query: Result<Query<CrlQuery>, QueryRejection>,
) -> Result<axum::response::Response, ApiError> {
    crl_response(ca.revocations().root_crl(), query, &headers)
}

fn ocsp_response(answer: crate::revocation::ocsp::Answer) -> axum::response::Response {
    let status =
        StatusCode::from_u16(answer.http_status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (
        status,
        [(header::CONTENT_TYPE, "application/ocsp-response")],
        answer.der,
    )
        .into_response()
}

async fn ocsp_post(
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

async fn ocsp_get(
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

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this endpoint does not take that method",
    )
}
