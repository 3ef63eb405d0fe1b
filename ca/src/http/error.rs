//! One mapping from errors to HTTP responses.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

use agentca::wire::ErrorBody;

use crate::authority::AuthorityError;
use crate::csr::CsrError;

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

impl From<AuthorityError> for ApiError {
    fn from(e: AuthorityError) -> Self {
        use AuthorityError as E;
        let (status, code) = match &e {
            E::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized"),
            E::Forbidden { .. } => (StatusCode::FORBIDDEN, "forbidden"),
            E::InvalidRequest(_) => (StatusCode::BAD_REQUEST, "invalid_request"),
            E::InvalidIdentity(_) => (StatusCode::BAD_REQUEST, "invalid_identity"),
            E::TtlOutOfRange { .. } => (StatusCode::BAD_REQUEST, "ttl_out_of_range"),
            E::AgentExists(_) => (StatusCode::CONFLICT, "agent_exists"),
            E::AgentNotFound(_) => (StatusCode::NOT_FOUND, "agent_not_found"),
            E::AgentDisabled(_) => (StatusCode::FORBIDDEN, "agent_disabled"),
            E::TokenInvalid => (StatusCode::UNAUTHORIZED, "token_invalid"),
            E::TokenExpired => (StatusCode::UNAUTHORIZED, "token_expired"),
            E::TokenUsed => (StatusCode::UNAUTHORIZED, "token_used"),
            E::TokenVoided => (StatusCode::UNAUTHORIZED, "token_voided"),
            E::Csr(CsrError::Malformed(_)) => (StatusCode::BAD_REQUEST, "csr_malformed"),
            E::Csr(CsrError::SignatureInvalid) => {
                (StatusCode::BAD_REQUEST, "csr_signature_invalid")
            }
            E::Csr(CsrError::KeyTypeNotAllowed(_)) => {
                (StatusCode::BAD_REQUEST, "key_type_not_allowed")
            }
            E::ClientCertificateRequired => {
                (StatusCode::UNAUTHORIZED, "client_certificate_required")
            }
            E::CertificateUnknown(_) => (StatusCode::UNAUTHORIZED, "certificate_unknown"),
            E::CertificateExpired(_) => (StatusCode::UNAUTHORIZED, "certificate_expired"),
            E::CertificateNotYetValid => (StatusCode::UNAUTHORIZED, "certificate_not_yet_valid"),
            E::CertificateRevoked => (StatusCode::UNAUTHORIZED, "certificate_revoked"),
            E::KeyReused => (StatusCode::BAD_REQUEST, "key_reused"),
            E::CloneDetected(_) => (StatusCode::CONFLICT, "clone_detected"),
            E::IssuerExpired => (StatusCode::SERVICE_UNAVAILABLE, "issuer_expired"),
            E::Store(_) => (StatusCode::SERVICE_UNAVAILABLE, "store_unavailable"),
            E::CertificateNotFound(_) => (StatusCode::NOT_FOUND, "certificate_not_found"),
            E::InstanceNotFound(_) => (StatusCode::NOT_FOUND, "instance_not_found"),
            E::NoAgentMatches(_) => (StatusCode::NOT_FOUND, "agent_not_found"),
            E::Sign(_) | E::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal_error"),
        };
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
        Self::new(status, code, detail)
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
