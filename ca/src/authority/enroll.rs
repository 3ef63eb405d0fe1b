//! Enrollment: a bootstrap token and a CSR give an agent its first
//! certificate and a new instance id.

use agentca::identity::InstanceId;
use agentca::wire::{Actor, EnrollRequest, IssuedCertificate};
use time::OffsetDateTime;

use super::error::Named;
use super::{Authority, AuthorityError, RequestContext};
use crate::issuance::csr;
use crate::state::records::Origin;
use crate::state::{agent, issuance_limit, token as token_rules, Change};
use crate::token;

impl Authority {
    /// Enrolls an agent: a bootstrap token and a CSR give a first
    /// certificate and a new instance id.
    pub async fn enroll(
        &self,
        ctx: &RequestContext,
        req: EnrollRequest,
        now: OffsetDateTime,
    ) -> Result<IssuedCertificate, AuthorityError> {
        // The token's hash names the actor (by the token's public id) and
        // finds the token; garbage names no actor.
        let hash = token::hash(&req.token);
        let actor = hash.map_or(Actor::Anonymous, |h| Actor::Token {
            token_id: token::id(&h),
        });
        let event = self.event(ctx, actor, "enroll", None, now);
        self.audited(event, async |event| {
            // The token is checked before the CSR, so that requests without
            // a valid token cost no signature verification.
            let hash = hash.ok_or(AuthorityError::TokenInvalid)?;
            let token = self
                .records
                .token(&hash)?
                .ok_or(AuthorityError::TokenInvalid)?;
            token_rules::redeemable(&token, now)?;
            let record = self
                .records
                .agent(&token.agent_key)?
                .ok_or(AuthorityError::TokenInvalid)?;
            let id = self.id_of(&record)?;
            event.subject = Some(id.to_string());
            agent::may_be_issued(&record).map_err(|r| self.not_issuable(&id, r))?;
            let limits = self.policy.issuance_limits;
            issuance_limit::admit_issuance(&record, None, limits, now)
                .map_err(|limit| self.limited(&id, limit))?;
            let csr = csr::check(&req.csr)?;
            let instance = InstanceId::random();
            let origin = Origin::Enroll {
                token_id: token.token_id.clone(),
            };
            let (cert, issued) = self.sign(&id, &instance, &csr, &record, now, origin)?;
            let change = Change::Enroll {
                token_hash: hash,
                at: now,
                cert,
                limits,
            };
            // The issuance's own event: a refusal at commit is audited
            // without the serial of a certificate it never issued.
            let mut done = event.clone();
            done.serial = Some(issued.serial.clone());
            done.not_after = Some(issued.not_after);
            if let Change::Enroll { cert, .. } = &change {
                Self::granted(&mut done, cert);
            }
            self.commit(change, done, Named::Agent(&id)).await?;
            tracing::info!(agent = %id, instance = %instance, serial = %issued.serial, token_id = %token.token_id, "enrolled");
            Ok(issued)
        })
        .await
    }
}
