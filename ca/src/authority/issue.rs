//! Signing what the flows decided to issue: an agent's leaf (with its
//! store record and the API's answer), and the CA's own TLS server
//! certificate. What goes into each is [`crate::issuance::profile`]'s.

use agentca::identity::{AgentId, InstanceId};
use agentca::wire::{IssuedCertificate, Serial};
use rcgen::KeyPair;
use rustls_pki_types::CertificateDer;
use time::{Duration, OffsetDateTime};

use super::{Authority, AuthorityError};
use crate::issuance::csr::{CheckedCsr, CsrError};
use crate::issuance::profile;
use crate::state::issuance_limit::LimitReached;
use crate::state::records::{AgentRecord, CertRecord, Origin};
use crate::state::scopes;

/// The CA's own TLS server certificate.
pub struct ServerCertificate {
    /// Leaf, intermediate, root.
    pub chain: Vec<CertificateDer<'static>>,
    /// The leaf's key.
    pub key: rustls_pki_types::PrivateKeyDer<'static>,
    /// Start of validity.
    pub not_before: OffsetDateTime,
    /// End of validity.
    pub not_after: OffsetDateTime,
}

impl Authority {
    /// The refusal of an issuance to `id` at its limit: counted, and
    /// logged as a security event a few times a minute (a loop would
    /// otherwise flood the log); the audit trail has the refusal itself.
    pub(super) fn limited(&self, id: &AgentId, limit: LimitReached) -> AuthorityError {
        self.metrics.observe_issuance_limited();
        let said = self
            .limited_log
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .say(std::time::Instant::now());
        if let Some(unsaid) = said {
            tracing::warn!(agent = %id, issued = limit.count, retry_at = %super::rfc3339(limit.retry_at), unsaid, "issuance limit reached: the agent or one instance asks for certificates far more often than its lifetime needs");
        }
        AuthorityError::IssuanceLimited(limit)
    }

    /// Signs a leaf for `id` and the key of `csr`, returning its store
    /// record and the API answer.
    ///
    /// The answer's audit event should name what the certificate grants:
    /// see [`granted`].
    pub(super) fn sign(
        &self,
        id: &AgentId,
        instance: &InstanceId,
        csr: &CheckedCsr,
        registration: &AgentRecord,
        now: OffsetDateTime,
        origin: Origin,
    ) -> Result<(CertRecord, IssuedCertificate), AuthorityError> {
        if now >= self.ca.not_after() {
            return Err(AuthorityError::IssuerExpired);
        }
        // The registration's lifetime, held to the current policy in case the
        // operator narrowed it since the agent was registered.
        let ttl = Duration::seconds(registration.ttl_secs.min(i64::MAX as u64) as i64)
            .clamp(self.policy.min_ttl, self.policy.max_ttl);
        let (not_before, not_after) = profile::leaf_validity(now, ttl, self.ca.not_after());
        let serial_bytes = profile::random_serial();
        // The registration's scopes less those blocked for the agent; the
        // commit checks again that they still are. An agent without scopes
        // (most) costs no read of the blocks.
        let scopes = if registration.scopes.is_empty() {
            Vec::new()
        } else {
            scopes::grantable(registration, &self.records.scope_blocks()?)
        };
        let params = profile::agent_leaf(
            id,
            instance,
            &serial_bytes,
            not_before,
            not_after,
            self.ca.distribution(),
            &scopes,
        )
        .map_err(|e| AuthorityError::Sign(e.to_string()))?;
        let spki = rcgen::SubjectPublicKeyInfo::from_der(&csr.spki_der)
            .map_err(|e| AuthorityError::Csr(CsrError::KeyTypeNotAllowed(e.to_string())))?;
        let der = self
            .ca
            .sign_leaf(&params, &spki)
            .map_err(|e| AuthorityError::Sign(e.to_string()))?;
        let serial = Serial::from_bytes(&serial_bytes).expect("16 bytes is a valid serial");
        let record = CertRecord {
            serial: serial.clone(),
            agent_key: id.path_key(),
            instance_id: instance.clone(),
            not_before,
            not_after,
            issued_at: profile::whole_seconds(now),
            key_sha256: csr.key_sha256.clone(),
            der: der.clone(),
            origin,
            renewed_by: None,
            revoked: None,
            renewals: Default::default(),
            scopes: Some(scopes),
            version: registration.version,
            withdrawn: Vec::new(),
        };
        let issued = IssuedCertificate {
            spiffe_id: id.clone(),
            instance_id: instance.clone(),
            serial,
            not_before,
            not_after,
            certificate_chain: format!(
                "{}{}",
                agentca::certs_to_pem(&[CertificateDer::from(der)]),
                self.ca.intermediate_pem()
            ),
        };
        Ok((record, issued))
    }

    /// A TLS server certificate for the CA's own listener, valid for
    /// `names` from `now` for `lifetime` (capped at the intermediate's end),
    /// with a fresh P-256 key. Returns the chain (leaf, intermediate, root:
    /// the root lets agents pin it on first contact), the key, and the
    /// validity.
    pub fn server_certificate(
        &self,
        names: &[profile::ServerName],
        now: OffsetDateTime,
        lifetime: Duration,
    ) -> Result<ServerCertificate, AuthorityError> {
        let key = KeyPair::generate().map_err(|e| AuthorityError::Sign(e.to_string()))?;
        let (not_before, not_after) = profile::leaf_validity(now, lifetime, self.ca.not_after());
        let params = profile::server(
            self.ca.trust_domain(),
            names,
            &profile::random_serial(),
            not_before,
            not_after,
        )
        .map_err(|e| AuthorityError::Sign(e.to_string()))?;
        let cert = params
            .signed_by(&key, self.ca.issuer())
            .map_err(|e| AuthorityError::Sign(e.to_string()))?;
        Ok(ServerCertificate {
            chain: vec![
                cert.der().clone(),
                self.ca.intermediate().clone(),
                self.ca.root().clone(),
            ],
            key: rustls_pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
            not_before,
            not_after,
        })
    }

    /// Records in `event` what `cert` grants: its scopes and the
    /// registration version they came from.
    pub(super) fn granted(event: &mut agentca::wire::AuditEvent, cert: &CertRecord) {
        event.scopes = cert.scopes.clone();
        event.version = Some(cert.version);
    }

    pub(super) fn issued_from_record(
        &self,
        record: &CertRecord,
    ) -> Result<IssuedCertificate, AuthorityError> {
        let leaf = CertificateDer::from(record.der.clone());
        Ok(IssuedCertificate {
            spiffe_id: self.id_of_key(&record.agent_key)?,
            instance_id: record.instance_id.clone(),
            serial: record.serial.clone(),
            not_before: record.not_before,
            not_after: record.not_after,
            certificate_chain: format!(
                "{}{}",
                agentca::certs_to_pem(std::slice::from_ref(&leaf)),
                self.ca.intermediate_pem()
            ),
        })
    }
}
