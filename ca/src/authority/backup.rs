//! Backups of a running CA: a global admin takes one, and it is audited.

use time::OffsetDateTime;

use super::{Admin, Authority, AuthorityError, RequestContext};
use crate::backup::Backup;

impl Authority {
    /// A backup of this CA ([`crate::backup`]): its material and a
    /// consistent snapshot of its store. Only an admin of every tenant may
    /// take one: it holds every tenant's records.
    pub async fn backup(
        &self,
        ctx: &RequestContext,
        admin: &Admin,
        now: OffsetDateTime,
    ) -> Result<Vec<u8>, AuthorityError> {
        let event = self.event(ctx, admin.actor(), "backup", None, now);
        self.audited(event, async |event| {
            admin.may_change_globally()?;
            let material = self.material.as_ref().ok_or_else(|| {
                AuthorityError::Internal("this CA was started without its material".into())
            })?;
            let snapshot = self.records.store().snapshot()?;
            let records: usize = snapshot.iter().map(|(_, e)| e.len()).sum();
            event.reason = Some(format!("{records} record(s)"));
            Ok(Backup::encode(material, &snapshot, now))
        })
        .await
    }
}
