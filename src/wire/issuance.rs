//! Enrollment and renewal: what an agent sends and what it gets back.

use std::fmt;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::Serial;
use crate::identity::{AgentId, InstanceId};

/// `POST /v1/enroll`: a bootstrap token and a certificate signing request.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnrollRequest {
    /// The bootstrap token an admin created for this agent.
    pub token: String,
    /// A PEM PKCS#10 request for the agent's new key. Only its public key
    /// and signature are used.
    pub csr: String,
}

impl fmt::Debug for EnrollRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EnrollRequest")
            .field("token", &"<redacted>")
            .field("csr", &self.csr)
            .finish()
    }
}

/// `POST /v1/renew`, sent over mutual TLS with the current certificate: a
/// certificate signing request for a new key.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RenewRequest {
    /// A PEM PKCS#10 request for a key different from the current one.
    pub csr: String,
}

/// A certificate the CA issued, as returned by enroll and renew.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IssuedCertificate {
    /// The identity in the certificate's URI SAN.
    pub spiffe_id: AgentId,
    /// The instance id in the subject's serialNumber, kept across renewals.
    pub instance_id: InstanceId,
    /// The certificate's serial number.
    pub serial: Serial,
    /// Start of validity (backdated a little for clock skew).
    #[serde(with = "time::serde::rfc3339")]
    pub not_before: OffsetDateTime,
    /// End of validity.
    #[serde(with = "time::serde::rfc3339")]
    pub not_after: OffsetDateTime,
    /// PEM certificates: the leaf first, then the issuing intermediate.
    pub certificate_chain: String,
}
