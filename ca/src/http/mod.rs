//! The HTTP API: thin handlers that parse, call the [`Authority`], and
//! answer.
//!
//! | method and path | who | what |
//! |---|---|---|
//! | `GET /healthz` | anyone | liveness: always 200, with health |
//! | `GET /readyz` | anyone | readiness: 200 while the store answers and the issuer is valid, else 503 |
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
//! | `GET /v1/admin/backup` | global admin | a backup of the CA (see `backup.rs`) |
//! | `POST /v1/admin/audit/prune` | global admin | remove exported audit events up to a checkpoint |
//! | `GET /v1/revocations?since=&limit=&wait=` | anyone (an admin token adds who and why) | the revocation feed (long poll) |
//! | `GET /v1/crl`, `GET /v1/crl/root` | anyone | CRLs (DER; `?format=pem` for PEM) |
//! | `POST /v1/ocsp`, `GET /v1/ocsp/{base64}` | anyone | OCSP |
//!
//! CRLs, OCSP, `/healthz` and `/readyz` are also served by [`public_router`] for the
//! optional plain-HTTP listener: they are signed objects, and fetching them
//! over plain HTTP is the usual practice (it avoids a TLS check inside a
//! revocation check). The feed is not: it is not signed.
//!
//! The handlers, by who calls them: `public` (anyone), `issue` (agents),
//! `admin` (admins); `extract` takes bodies, admins and audit context from
//! requests; [`error`] is the one table from errors to HTTP statuses;
//! [`server`] is the listener (connection limits, timeouts, request ids,
//! request metrics); [`tls`] the CA's own TLS. Handlers parse, call the
//! authority and answer: nothing here decides who may have what.

mod admin;
mod console;
pub mod error;
mod extract;
pub mod fairness;
mod govern;
mod issue;
mod public;
pub mod server;
pub mod tls;

use admin::*;
pub use extract::{Ctx, JsonBody, RequestId};
use issue::*;
use public::*;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Extension, Router};
use rustls_pki_types::CertificateDer;

use crate::authority::Authority;
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
        .route("/readyz", get(readyz))
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
        .route("/v1/revocations/snapshot", get(feed_snapshot))
        .route("/v1/admin/revoke", post(revoke))
        .route("/v1/enroll", post(enroll))
        .route("/v1/renew", post(renew))
        .route("/v1/admin/agents", post(register).get(list_agents))
        .route(
            "/v1/admin/agents/{tenant}/{env}/{agent}",
            get(show_agent).patch(govern::update),
        )
        .route(
            "/v1/admin/agents/{tenant}/{env}/{agent}/history",
            get(govern::history),
        )
        .route(
            "/v1/admin/agents/{tenant}/{env}/{agent}/retire",
            post(govern::retire),
        )
        .route("/v1/admin/pending", get(govern::pending))
        .route(
            "/v1/admin/pending/{id}",
            axum::routing::delete(govern::reject),
        )
        .route("/v1/admin/pending/{id}/approve", post(govern::approve))
        .route(
            "/v1/admin/scopes/blocks",
            post(govern::block).get(govern::blocks),
        )
        .route(
            "/v1/admin/scopes/blocks/{id}",
            axum::routing::delete(govern::unblock),
        )
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
        .route("/v1/admin/audit/prune", post(prune_audit))
        .route("/v1/admin/backup", get(backup))
        .route("/v1/admin/admins", post(create_admin).get(list_admins))
        .route(
            "/v1/admin/admins/{name}",
            axum::routing::delete(delete_admin).patch(govern::set_admin_role),
        )
        .route(
            "/v1/admin/admins/{name}/history",
            get(govern::admin_history),
        )
        .route("/metrics", get(metrics))
        .merge(console::routes())
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
