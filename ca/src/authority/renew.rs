//! Renewal: the presented certificate (the TLS client certificate) and a
//! CSR for a new key give the next certificate of the same identity and
//! instance. Each certificate renews once: a retry with the same key gets
//! the same certificate, another key is a clone (see
//! [`crate::state::certificate::renewal`]).

use std::net::SocketAddr;

use agentca::wire::{Actor, AuditEvent, IssuedCertificate, RenewRequest, Serial};
use rustls_pki_types::CertificateDer;
use time::OffsetDateTime;

use super::error::{refused, Named};
use super::{rfc3339, Authority, AuthorityError, RequestContext};
use crate::issuance::csr::{self, CheckedCsr};
use crate::issuance::profile;
use crate::state::certificate::{self, CertRefusal, RenewalVerdict};
use crate::state::records::{CertRecord, CloneAlertRecord, Origin, Renewal};
use crate::state::{agent, issuance_limit, Change, Conflict};

impl Authority {
    /// Renews a certificate: the presented certificate (TLS client
    /// certificate, `peer_chain[0]`) and a CSR for a new key give a new
    /// certificate with the same identity and instance.
    ///
    /// Each certificate renews once. A retry with the same key gets the
    /// same certificate; a second renewal with another key is refused and
    /// recorded as a clone alert.
    pub async fn renew(
        &self,
        ctx: &RequestContext,
        peer_chain: Option<&[CertificateDer<'static>]>,
        req: RenewRequest,
        now: OffsetDateTime,
    ) -> Result<IssuedCertificate, AuthorityError> {
        // Anonymous until the presented certificate proves to be one this
        // CA issued: then the agent, its identity and that certificate.
        // What an unverified certificate claims is never recorded as fact.
        let event = self.event(ctx, Actor::Anonymous, "renew", None, now);
        let remote = ctx.remote;
        self.audited(event, async |event| {
            let leaf = peer_chain
                .and_then(|c| c.first())
                .ok_or(AuthorityError::ClientCertificateRequired)?;
            let serial = self.verify_own_leaf(leaf, now)?;
            // Only a certificate on record, byte for byte, is one this CA
            // issued and still tracks.
            let current = match self.records.cert(&serial)? {
                Some(c) if c.der == leaf.as_ref() => c,
                _ => {
                    return Err(AuthorityError::CertificateUnknown(
                        "no issuance record matches it".into(),
                    ))
                }
            };
            let id = self.id_of_key(&current.agent_key)?;
            event.actor = Actor::Agent {
                spiffe_id: id.clone(),
                instance_id: current.instance_id.clone(),
            };
            event.subject = Some(id.to_string());
            // A refusal names the certificate presented; a renewal, the one
            // issued (with the presented one in its reason).
            event.serial = Some(current.serial.clone());
            event.not_after = Some(current.not_after);
            certificate::renewable(&current, now).map_err(|r| match r {
                CertRefusal::Expired => AuthorityError::CertificateExpired(rfc3339(current.not_after)),
                CertRefusal::Revoked => AuthorityError::CertificateRevoked,
                CertRefusal::KeyReused => AuthorityError::KeyReused,
            })?;
            let record = self.records.agent(&current.agent_key)?.ok_or_else(|| {
                AuthorityError::CertificateUnknown("its agent is no longer registered".into())
            })?;
            agent::may_be_issued(&record).map_err(|r| self.not_issuable(&id, r))?;
            let csr = csr::check(&req.csr)?;
            match certificate::renewal(&current, &csr.key_sha256) {
                Err(_) => return Err(AuthorityError::KeyReused),
                Ok(RenewalVerdict::First) => {}
                Ok(RenewalVerdict::Retry(done) | RenewalVerdict::Clone(done)) => {
                    return self
                        .renewed_already(event.clone(), &current, done, &csr, remote, now)
                        .await
                }
            }
            // A retry above is answered whatever the limit: it issues nothing.
            let limits = self.policy.issuance_limits;
            issuance_limit::admit_issuance(&record, Some(&current), limits, now)
                .map_err(|limit| self.limited(&id, limit))?;
            let origin = Origin::Renew {
                from: serial.clone(),
            };
            let (cert, issued) =
                self.sign(&id, &current.instance_id, &csr, &record, now, origin)?;
            let mut done = event.clone();
            Self::granted(&mut done, &cert);
            let change = Change::Renew {
                from: serial.clone(),
                at: profile::whole_seconds(now),
                cert,
                limits,
            };
            done.serial = Some(issued.serial.clone());
            done.not_after = Some(issued.not_after);
            done.reason = Some(format!("from {serial}"));
            let named = Named::Presented {
                id: &id,
                not_after: current.not_after,
            };
            let audited = Change::Audited {
                change: Box::new(change),
                audit: Box::new(done),
            };
            match self.writer.apply(audited).await? {
                Ok(_) => {
                    tracing::info!(agent = %id, instance = %current.instance_id, from = %serial, serial = %issued.serial, "renewed");
                    Ok(issued)
                }
                // Another renewal of the same certificate committed first.
                Err(Conflict::AlreadyRenewed(done)) => {
                    self.renewed_already(event.clone(), &current, &done, &csr, remote, now)
                        .await
                }
                Err(conflict) => Err(refused(conflict, named)),
            }
        })
        .await
    }

    /// The answer to a renewal of a certificate that was already renewed
    /// (by `done`): the same certificate for the same key, a clone alert
    /// otherwise.
    async fn renewed_already(
        &self,
        mut event: AuditEvent,
        current: &CertRecord,
        done: &Renewal,
        csr: &CheckedCsr,
        remote: Option<SocketAddr>,
        now: OffsetDateTime,
    ) -> Result<IssuedCertificate, AuthorityError> {
        if let RenewalVerdict::Retry(done) = certificate::again(done, &csr.key_sha256) {
            let issued = self.records.cert(&done.serial)?.ok_or_else(|| {
                AuthorityError::CertificateUnknown("its renewal record is gone".into())
            })?;
            event.serial = Some(issued.serial.clone());
            event.not_after = Some(issued.not_after);
            event.reason = Some(format!(
                "retry: the renewal of {} issued before",
                current.serial
            ));
            self.append(event).await?;
            return self.issued_from_record(&issued);
        }
        let alert = CloneAlertRecord {
            at: profile::whole_seconds(now),
            serial: current.serial.clone(),
            instance_id: current.instance_id.clone(),
            agent_key: current.agent_key.clone(),
            requested_key_sha256: csr.key_sha256.clone(),
            remote_addr: remote.map(|a| a.to_string()),
        };
        event.outcome = "refused".into();
        event.reason = Some(format!(
            "{}: renewed before, now asked for key {}",
            agentca::wire::CLONE_DETECTED,
            csr.key_sha256
        ));
        let id = self.id_of_key(&current.agent_key)?;
        let named = Named::Presented {
            id: &id,
            not_after: current.not_after,
        };
        self.commit(Change::RecordCloneAlert(alert), event, named)
            .await?;
        tracing::warn!(
            agent = %current.agent_key,
            instance = %current.instance_id,
            serial = %current.serial,
            remote = %remote.map_or_else(|| "unknown".to_owned(), |a| a.to_string()),
            "clone alert: a certificate was renewed a second time with another key"
        );
        Err(AuthorityError::CloneDetected(current.serial.clone()))
    }

    /// The serial of `leaf`, once it is valid at `now`. Whether it is one
    /// this CA issued is decided by the caller, which holds it to the
    /// issuance record byte for byte: a stronger proof than a signature
    /// check (the record was written when the CA signed it), so the chain
    /// is not verified again here (two ECDSA verifications, a sixth of a
    /// renewal's CPU). The TLS handshake proved the key.
    fn verify_own_leaf(
        &self,
        leaf: &CertificateDer<'static>,
        now: OffsetDateTime,
    ) -> Result<Serial, AuthorityError> {
        use x509_parser::prelude::{FromDer, X509Certificate};
        let (_, cert) = X509Certificate::from_der(leaf)
            .map_err(|e| AuthorityError::CertificateUnknown(format!("it does not parse: {e}")))?;
        let validity = cert.validity();
        let (not_before, not_after) = (
            validity.not_before.to_datetime(),
            validity.not_after.to_datetime(),
        );
        if now > not_after {
            return Err(AuthorityError::CertificateExpired(rfc3339(not_after)));
        }
        if now < not_before {
            return Err(AuthorityError::CertificateNotYetValid);
        }
        Serial::from_bytes(cert.raw_serial())
            .map_err(|_| AuthorityError::CertificateUnknown("its serial is not one of ours".into()))
    }
}
