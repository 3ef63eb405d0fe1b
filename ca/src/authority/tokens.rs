//! Bootstrap tokens: created by an admin for one registered, enabled agent,
//! shown once, stored only as a hash. When one may be redeemed is
//! [`crate::state::token::redeemable`].

use agentca::wire::{CreateTokenRequest, TokenCreated};
use time::OffsetDateTime;

use super::error::Named;
use super::{rfc3339, Admin, AgentName, Authority, AuthorityError, RequestContext};
use crate::issuance::profile;
use crate::state::records::TokenRecord;
use crate::state::Change;
use crate::token;

impl Authority {
    /// Creates a bootstrap token for a registered, enabled agent. The token
    /// is in the answer only; the store keeps its hash.
    pub async fn create_token(
        &self,
        ctx: &RequestContext,
        admin: &Admin,
        name: &AgentName,
        req: CreateTokenRequest,
        now: OffsetDateTime,
    ) -> Result<TokenCreated, AuthorityError> {
        let subject = self.subject_of(name);
        let event = self.event(ctx, admin.actor(), "token.create", subject, now);
        self.audited(event, async |event| {
            let id = self.id_of_name(name)?;
            admin.may_change(&name.tenant)?;
            let ttl = self.policy.token_ttl(req.ttl_seconds)?;
            let uses = self.policy.token_uses(req.uses)?;
            let secret = token::generate(token::BOOTSTRAP_PREFIX);
            let hash = token::hash(&secret).expect("generated tokens are well-formed");
            let now = profile::whole_seconds(now);
            let record = TokenRecord {
                token_id: token::id(&hash),
                agent_key: id.path_key(),
                created_at: now,
                expires_at: now + ttl,
                max_uses: uses,
                used: 0,
                voided: false,
            };
            let mut done = event.clone();
            done.reason = Some(format!(
                "token {} for {} use(s), valid until {}",
                record.token_id,
                uses,
                rfc3339(record.expires_at)
            ));
            let change = Change::CreateToken {
                hash,
                token: record.clone(),
            };
            self.commit(change, done, Named::Agent(&id)).await?;
            tracing::info!(admin = admin.name(), agent = %id, token_id = %record.token_id, uses, "bootstrap token created");
            Ok(TokenCreated {
                token: secret,
                token_id: record.token_id,
                spiffe_id: id,
                expires_at: record.expires_at,
                uses,
            })
        })
        .await
    }
}
