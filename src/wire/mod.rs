//! The JSON bodies of the agentca HTTP API, shared by the CA and its clients.
//!
//! Every refusal from the CA is an HTTP status with an [`ErrorBody`]; every
//! time is RFC 3339 in UTC.
//!
//! ```
//! use agentca::wire::ErrorBody;
//!
//! let body: ErrorBody =
//!     serde_json::from_str(r#"{"error":"token_used","detail":"the token has no uses left"}"#).unwrap();
//! assert_eq!(body.error, "token_used");
//! ```

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

mod agents;
mod audit;
mod issuance;
mod revocation;
mod serial;

pub use agents::*;
pub use audit::*;
pub use issuance::*;
pub use revocation::*;
pub use serial::*;

/// The body of every error response: a stable machine-readable code and a
/// sentence for a human.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// A stable code, such as `token_used` or `csr_signature_invalid`.
    pub error: String,
    /// What went wrong and, where it helps, what to do about it.
    pub detail: String,
}

/// `GET /healthz`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    /// `ok` when the CA can issue.
    pub status: String,
    /// The CA's trust domain.
    pub trust_domain: String,
    /// The server's version.
    pub version: String,
    /// End of validity of the issuing intermediate.
    #[serde(with = "time::serde::rfc3339")]
    pub intermediate_not_after: OffsetDateTime,
}
