//! One mapping from errors to HTTP responses.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

use agentca::wire::ErrorBody;

use crate::authority::{AuthorityError, ErrorKind};

/// An HTTP refusal: a status, a stable code, and a sentence.
#[derive(Debug)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable machine-readable code.
    pub code: &'static str,
    /// For the human.
    pub detail: String,
    /// Seconds the client should wait before retrying (`Retry-After`).
    pub retry_after: Option<u64>,
}

impl ApiError {
    /// A refusal.
    pub fn new(status: StatusCode, code: &'static str, detail: impl Into<String>) -> Self {
        let retry_after = (status == StatusCode::SERVICE_UNAVAILABLE).then_some(5);
        Self {
            status,
            code,
            detail: detail.into(),
            retry_after,
        }
    }

    /// 503 `overloaded`: more issuance requests than the CA serves at once.
    /// `Retry-After` is spread over 1–5 seconds so that the agents refused
    /// together do not come back together.
    pub fn overloaded() -> Self {
        let mut b = [0u8; 1];
        let _ = aws_lc_rs::rand::fill(&mut b);
        Self {
            status: StatusCode::SERVICE_UNAVAILABLE,
            code: "overloaded",
            detail: "the CA is issuing at capacity; retry after the Retry-After delay".into(),
            retry_after: Some(1 + u64::from(b[0] % 5)),
        }
    }

    /// 400 with code `invalid_request`.
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", detail)
    }
}

/// The HTTP status of each kind of the authority's errors.
fn status_of(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::Invalid => StatusCode::BAD_REQUEST,
        ErrorKind::Unauthenticated => StatusCode::UNAUTHORIZED,
        ErrorKind::Forbidden => StatusCode::FORBIDDEN,
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::Conflict => StatusCode::CONFLICT,
        ErrorKind::Limited => StatusCode::TOO_MANY_REQUESTS,
        ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl From<AuthorityError> for ApiError {
    fn from(e: AuthorityError) -> Self {
        let (code, kind) = e.classify();
        let status = status_of(kind);
        let detail = if status.is_server_error() {
            // The cause goes to the log, not to the client.
            tracing::error!(error = %e, code, "request failed");
            match code {
                "store_unavailable" => "the CA's store is unavailable; retry later".to_owned(),
                "issuer_expired" => e.to_string(),
                _ => "the CA failed to handle the request; see its log".to_owned(),
            }
        } else {
            e.to_string()
        };
        let mut error = Self::new(status, code, detail);
        if let AuthorityError::IssuanceLimited(limit) = &e {
            let wait = limit.retry_at - time::OffsetDateTime::now_utc();
            error.retry_after = Some(wait.whole_seconds().max(1).unsigned_abs());
        }
        error
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: self.code.to_owned(),
            detail: self.detail,
        };
        let mut response = (self.status, Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED && self.code == "unauthorized" {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if let Some(secs) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}
