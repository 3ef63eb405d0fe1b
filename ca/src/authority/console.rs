//! What the admin console reads beyond the API's queries: the tail of the
//! audit trail with how far it verifies, the issuance of the last hour,
//! and the console's own sessions on the trail.

use agentca::wire::AuditEvent;
use time::OffsetDateTime;

use super::{Admin, Authority, AuthorityError, RequestContext, MAX_AUDIT_PAGE};
use crate::metrics::history::Minute;

/// What a console session keeps of an admin's token: its hash, as the
/// store keeps it; never the token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdminKey(crate::state::records::TokenHash);

#[cfg(test)]
impl AdminKey {
    /// A key from bytes, for tests of what keeps keys.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }
}

/// The newest audit events and what checking their chain found.
#[derive(Debug)]
pub struct AuditTail {
    /// Oldest first.
    pub events: Vec<AuditEvent>,
    /// The CA's record of the trail's last event.
    pub head_seq: u64,
    /// `Ok(n)`: the `n` events link to each other, each hash is right, and
    /// the last is the recorded head. `Err`: the first break, in words.
    pub verified: Result<u64, String>,
}

impl Authority {
    /// Authenticates an admin by its token (audited as [`Authority::admin`]),
    /// and the key a session keeps to authenticate it again.
    pub async fn admin_key(
        &self,
        ctx: &RequestContext,
        token: &str,
    ) -> Result<(Admin, AdminKey), AuthorityError> {
        let hash = crate::token::hash(token);
        let admin = self.admin_by_hash(ctx, hash.as_ref()).await?;
        let hash = hash.ok_or(AuthorityError::Unauthorized)?;
        Ok((admin, AdminKey(hash)))
    }

    /// Authenticates again the admin of a session's key.
    pub async fn admin_by_key(
        &self,
        ctx: &RequestContext,
        key: &AdminKey,
    ) -> Result<Admin, AuthorityError> {
        self.admin_by_hash(ctx, Some(&key.0)).await
    }

    /// The last `max` events of the audit trail as it stood when asked
    /// (global admins), and, with `verify`, whether they verify: each
    /// event's number and hash, each link to the event before (the first
    /// one's too: to the event before the window, the checkpoint, or the
    /// trail's start), and the last one against the CA's recorded head.
    /// Events appended while reading are left for the next look. The whole
    /// trail is `agentca audit verify`'s to check.
    pub async fn audit_tail(
        &self,
        ctx: &RequestContext,
        admin: &Admin,
        max: usize,
        verify: bool,
    ) -> Result<AuditTail, AuthorityError> {
        let now = OffsetDateTime::now_utc();
        let event = self.event(ctx, admin.actor(), "audit.read", None, now);
        self.audited_read(event, async |_| {
            admin.may_act_globally()?;
            let head = self.records.audit_head()?;
            let checkpoint = self.records.audit_checkpoint()?;
            let mut start = head.seq.saturating_sub(max as u64);
            if let Some(c) = &checkpoint {
                start = start.max(c.seq);
            }
            let mut events = Vec::new();
            let mut since = start;
            while since < head.seq {
                let page = self.records.audit_since(since, MAX_AUDIT_PAGE)?;
                let Some(last) = page.last() else {
                    break;
                };
                since = last.seq;
                events.extend(page.into_iter().filter(|e| e.seq <= head.seq));
            }
            let verified = if verify {
                // What the window's first event links to: the checkpoint,
                // the trail's start, or the stored event before it.
                let anchor = match &checkpoint {
                    Some(c) if c.seq == start => Ok(c.hash.clone()),
                    _ if start == 0 => Ok(crate::audit::genesis()),
                    _ => match self.records.audit_since(start - 1, 1)?.pop() {
                        Some(b) if b.seq == start && crate::audit::hash(&b) == b.hash => Ok(b.hash),
                        _ => Err(format!(
                            "event {start}, before the window, is missing or changed"
                        )),
                    },
                };
                anchor.and_then(|anchor| {
                    let n = crate::audit::verify_chain(&events, start + 1, &anchor)
                        .map_err(|b| b.to_string())?;
                    let last = events
                        .last()
                        .map_or((start, anchor.as_str()), |e| (e.seq, e.hash.as_str()));
                    crate::audit::ends_at_head(last, &head).map_err(|b| b.to_string())?;
                    Ok(n)
                })
            } else {
                Ok(events.len() as u64)
            };
            Ok(AuditTail {
                events,
                head_seq: head.seq,
                verified,
            })
        })
        .await
    }

    /// Enrollments and renewals per minute over the hour up to `now`, as
    /// this replica counted them.
    pub fn issuance_last_hour(&self, now: OffsetDateTime) -> Vec<Minute> {
        self.metrics.issuance_last_hour(now)
    }

    /// Records that `admin` opened (`console.login`) or closed
    /// (`console.logout`) a console session: an event of its own each.
    pub async fn console_session(&self, ctx: &RequestContext, admin: &Admin, action: &str) {
        let event = self.event(ctx, admin.actor(), action, None, OffsetDateTime::now_utc());
        if let Err(e) = self.writer.apply(crate::state::Change::Audit(event)).await {
            tracing::error!(error = %e, "could not record a console session in the audit trail");
        }
    }
}
