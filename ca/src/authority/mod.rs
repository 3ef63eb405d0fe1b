//! The authority: who may have a certificate, and what it contains.
//!
//! Every decision of the CA is made here, one file per flow: `register`
//! (registering agents, enabling and disabling them), `tokens`
//! (bootstrap tokens), `enroll`, `renew`, `revoke`, `admins`, and
//! `queries` (what admins read); `issue` signs what they decided to
//! issue. The rules of each thing's life are asked of [`crate::state`],
//! never decided again here; `audited` runs each action and records its
//! audit event or its refusal's; `error` says what each refusal is.
//!
//! The HTTP layer turns requests into calls on [`Authority`] and its
//! results into answers; the authority knows nothing of HTTP (nor axum, nor
//! the command line). Each operation takes the current time as an
//! argument, so the rules about expiry can be tested without a clock.

mod admins;
mod audited;
mod backup;
mod console;
mod enroll;
mod error;
mod govern;
mod issue;
mod policy;
mod queries;
mod register;
mod renew;
mod review;
mod revoke;
#[cfg(test)]
mod tests;
mod tokens;

use std::sync::Arc;

use agentca::identity::{AgentId, Name, Part, TrustDomain};
pub(crate) use agentca::rfc3339;
use agentca::wire::Health;
use time::OffsetDateTime;

use crate::issuance::issuer::IssuingCa;
use crate::metrics::Metrics;
use crate::revocation::Revocations;
use crate::state::records::AgentRecord;
use crate::state::{Ledger, Records};

pub use admins::MAX_ADMIN_NAME;
pub use audited::{Admin, RequestContext};
pub use console::{AdminKey, AuditTail};
pub use error::{AuthorityError, ErrorKind};
pub use issue::ServerCertificate;
pub use policy::{Policy, PolicyError, Review};
pub use queries::{AgentFilter, AgentPage, MAX_AUDIT_PAGE, MAX_LIST};
pub use register::{AgentName, MAX_OWNER_LEN, MAX_PURPOSE_LEN};

/// The certificate authority's decisions.
pub struct Authority {
    ca: Arc<IssuingCa>,
    policy: Policy,
    records: Records,
    writer: Ledger,
    revocations: Arc<Revocations>,
    metrics: Arc<Metrics>,
    /// The CA's settings, certificates and encrypted keys, for backups.
    material: Option<crate::stored_ca::CaMaterial>,
    /// Refusals counted rather than recorded one by one
    /// ([`crate::audit::refusals`]).
    refusals: std::sync::Mutex<crate::audit::refusals::Fold>,
    /// Admins' reads, recorded once per subject and minute and counted
    /// beyond.
    reads: std::sync::Mutex<crate::audit::refusals::Fold>,
    /// Warnings of issuance limits reached, a few a minute.
    limited_log: std::sync::Mutex<crate::quiet::Quiet>,
}

impl Authority {
    /// An authority issuing with `ca`, keeping its state in `records`
    /// (reads) and `writer` (changes).
    pub fn new(
        ca: Arc<IssuingCa>,
        policy: Policy,
        records: Records,
        writer: Ledger,
        revocations: Arc<Revocations>,
        metrics: Arc<Metrics>,
    ) -> Result<Self, PolicyError> {
        policy.validate()?;
        Ok(Self {
            ca,
            policy,
            records,
            writer,
            revocations,
            metrics,
            material: None,
            refusals: Default::default(),
            reads: std::sync::Mutex::new(crate::audit::refusals::Fold::reads()),
            limited_log: std::sync::Mutex::new(crate::quiet::Quiet::new(std::time::Instant::now())),
        })
    }

    /// This authority, with the CA's material that backups carry.
    pub fn with_material(mut self, material: crate::stored_ca::CaMaterial) -> Self {
        self.material = Some(material);
        self
    }

    /// The CA's metrics.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The revocation service: CRLs, OCSP, feed.
    pub fn revocations(&self) -> &Arc<Revocations> {
        &self.revocations
    }

    /// The issuing CA.
    pub fn ca(&self) -> &Arc<IssuingCa> {
        &self.ca
    }

    /// The trust domain.
    pub fn trust_domain(&self) -> &TrustDomain {
        self.ca.trust_domain()
    }

    /// The issuance policy.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// The trust bundle as PEM.
    pub fn bundle_pem(&self) -> &str {
        self.ca.bundle_pem()
    }

    /// The CA's health: `ok` while the intermediate is valid and the store
    /// answers.
    pub fn health(&self, now: OffsetDateTime) -> Health {
        let store_ok = self.records.agent("").is_ok();
        let status = if !store_ok {
            "store_unavailable"
        } else if now >= self.ca.not_after() {
            "issuer_expired"
        } else {
            "ok"
        };
        Health {
            status: status.into(),
            trust_domain: self.ca.trust_domain().to_string(),
            version: env!("CARGO_PKG_VERSION").into(),
            intermediate_not_after: self.ca.not_after(),
        }
    }

    fn agent_id(&self, tenant: &str, env: &str, agent: &str) -> Result<AgentId, AuthorityError> {
        Ok(AgentId::from_parts(
            self.ca.trust_domain().clone(),
            Name::new(Part::Tenant, tenant)?,
            Name::new(Part::Env, env)?,
            Name::new(Part::Agent, agent)?,
        ))
    }

    /// An agent as the subject of an audit event: its SPIFFE ID, or the
    /// names as given when they break the identity rules.
    fn subject(&self, tenant: &str, env: &str, agent: &str) -> String {
        match self.agent_id(tenant, env, agent) {
            Ok(id) => id.to_string(),
            Err(_) => format!("{tenant}/{env}/{agent}"),
        }
    }

    /// The identity of the agent stored under `key` (`tenant/env/agent`).
    fn id_of_key(&self, key: &str) -> Result<AgentId, AuthorityError> {
        let mut parts = key.splitn(3, '/');
        match (parts.next(), parts.next(), parts.next()) {
            (Some(t), Some(e), Some(a)) => self.agent_id(t, e, a),
            _ => Err(AuthorityError::Internal(format!(
                "stored agent key {key:?} is not tenant/env/agent"
            ))),
        }
    }

    fn id_of(&self, record: &AgentRecord) -> Result<AgentId, AuthorityError> {
        self.agent_id(&record.tenant, &record.env, &record.agent)
    }

    fn registered(&self, id: &AgentId) -> Result<AgentRecord, AuthorityError> {
        self.records
            .agent(&id.path_key())?
            .ok_or_else(|| AuthorityError::AgentNotFound(id.clone()))
    }
}
