//! What the admin console reads beyond the API's queries: the tail of the
//! audit trail with how far it verifies, the issuance of the last hour,
//! and the console's own sessions on the trail.

use agentca::wire::AuditEvent;
use time::OffsetDateTime;

use super::{Admin, Authority, AuthorityError, RequestContext, MAX_AUDIT_PAGE};
use crate::metrics::history::Minute;

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
    /// The last `max` events of the audit trail (global admins), and
    /// whether they verify: each event's hash, the links between them,
    /// and the last one against the CA's recorded head. The whole trail
    /// is `agentca audit verify`'s to check.
    pub async fn audit_tail(
        &self,
        ctx: &RequestContext,
        admin: &Admin,
        max: usize,
    ) -> Result<AuditTail, AuthorityError> {
        let first = self
            .audit_page(ctx, admin, u64::MAX - 1, 1, std::time::Duration::ZERO)
            .await?;
        let start = first.head_seq.saturating_sub(max as u64);
        let start = match &first.checkpoint {
            Some(c) => start.max(c.seq),
            None => start,
        };
        let mut events = Vec::new();
        let mut since = start;
        let mut page = first;
        while since < page.head_seq && events.len() < max {
            page = self
                .audit_page(ctx, admin, since, MAX_AUDIT_PAGE, std::time::Duration::ZERO)
                .await?;
            let Some(last) = page.events.last() else {
                break;
            };
            since = last.seq;
            events.append(&mut page.events);
        }
        let verified = match events.first() {
            None => Ok(0),
            Some(first) => crate::audit::verify_chain(&events, first.seq, &first.prev_hash)
                .map_err(|b| b.to_string())
                .and_then(|n| {
                    let last = events.last().expect("not empty");
                    if last.seq == page.head_seq && last.hash == page.head_hash {
                        Ok(n)
                    } else {
                        Err(format!(
                            "the trail ends at event {}, but the CA recorded {} as its last",
                            last.seq, page.head_seq
                        ))
                    }
                }),
        };
        Ok(AuditTail {
            events,
            head_seq: page.head_seq,
            verified,
        })
    }

    /// Enrollments and renewals per minute over the hour up to `now`, as
    /// this replica counted them.
    pub fn issuance_last_hour(&self, now: OffsetDateTime) -> Vec<Minute> {
        self.metrics.issuance_last_hour(now)
    }

    /// Records that `admin` opened (`console.login`) or closed
    /// (`console.logout`) a console session, as reads are recorded.
    pub async fn console_session(&self, ctx: &RequestContext, admin: &Admin, action: &str) {
        let event = self.event(ctx, admin.actor(), action, None, OffsetDateTime::now_utc());
        let _ = self.audited_read(event, async |_| Ok(())).await;
    }
}
