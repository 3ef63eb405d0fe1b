//! Who may act: a global admin on every tenant, a tenant admin on its own
//! tenant only; and the rule that keeps one global admin at all times.
//!
//! Pure functions of [`AdminRecord`]s: nothing here reads or writes the
//! store.

use super::records::{AdminRecord, Role};

/// Why an admin may not do what it asked.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AdminRefusal {
    /// The admin is limited to another tenant (or the action needs a
    /// global admin).
    #[error("this admin may act only on tenant {allowed:?}")]
    Forbidden {
        /// The one tenant it may act on.
        allowed: String,
    },
    /// Removing this admin would leave nobody able to act on every tenant.
    #[error("this is the last global admin")]
    LastGlobalAdmin,
    /// The admin is an auditor: it reads, it changes nothing.
    #[error("this admin is an auditor: it may read, not change")]
    ReadOnly,
}

fn forbidden(allowed: &str) -> AdminRefusal {
    AdminRefusal::Forbidden {
        allowed: allowed.to_owned(),
    }
}

/// Whether `admin` may act on `tenant`.
pub fn may_act_on(admin: &AdminRecord, tenant: &str) -> Result<(), AdminRefusal> {
    match &admin.tenant {
        Some(own) if own != tenant => Err(forbidden(own)),
        _ => Ok(()),
    }
}

/// Whether `admin` may act on every tenant at once (the audit trail, the
/// admins, anything not of one tenant).
pub fn may_act_globally(admin: &AdminRecord) -> Result<(), AdminRefusal> {
    match &admin.tenant {
        Some(own) => Err(forbidden(own)),
        None => Ok(()),
    }
}

/// Whether `admin` may change what is `tenant`'s: it may act on the
/// tenant ([`may_act_on`]) and is not an auditor.
pub fn may_change(admin: &AdminRecord, tenant: &str) -> Result<(), AdminRefusal> {
    may_act_on(admin, tenant)?;
    may_change_anything(admin)
}

/// Whether `admin` may change what is every tenant's ([`may_act_globally`],
/// not an auditor).
pub fn may_change_globally(admin: &AdminRecord) -> Result<(), AdminRefusal> {
    may_act_globally(admin)?;
    may_change_anything(admin)
}

/// Whether `admin` may change anything at all (its role).
pub fn may_change_anything(admin: &AdminRecord) -> Result<(), AdminRefusal> {
    match admin.role {
        Role::Admin => Ok(()),
        Role::Auditor => Err(AdminRefusal::ReadOnly),
    }
}

/// The tenant a listing by `admin` is limited to, when it asked for
/// `asked` (`None`: every tenant it may see). A tenant admin sees only its
/// own tenant, whether or not it names it.
pub fn visible_tenant<'a>(
    admin: &'a AdminRecord,
    asked: Option<&'a str>,
) -> Result<Option<&'a str>, AdminRefusal> {
    match (&admin.tenant, asked) {
        (Some(own), Some(asked)) if own != asked => Err(forbidden(own)),
        (Some(own), _) => Ok(Some(own)),
        (None, asked) => Ok(asked),
    }
}

/// Whether `target` may be removed while `other_global_admins` other
/// global admins remain: never the last global admin, or nobody could
/// act on every tenant (nor create admins) again.
pub fn may_remove(target: &AdminRecord, other_global_admins: usize) -> Result<(), AdminRefusal> {
    if is_global(target) && other_global_admins == 0 {
        return Err(AdminRefusal::LastGlobalAdmin);
    }
    Ok(())
}

/// Whether `target` may take `role` while `other_global_admins` other
/// global admins remain: the last global admin does not become an auditor
/// (nobody could change anything of every tenant again).
pub fn may_take_role(
    target: &AdminRecord,
    role: Role,
    other_global_admins: usize,
) -> Result<(), AdminRefusal> {
    if role == Role::Auditor && is_global(target) && other_global_admins == 0 {
        return Err(AdminRefusal::LastGlobalAdmin);
    }
    Ok(())
}

/// Whether a reader of public data (the revocation feed) sees what it
/// says of `tenant`'s agents (who, which instance, why): only an admin
/// who may act on that tenant. Anyone else (`None`: no admin token) sees
/// serials and times, what a verifier needs.
pub fn sees_details_of(reader: Option<&AdminRecord>, tenant: &str) -> bool {
    reader.is_some_and(|admin| may_act_on(admin, tenant).is_ok())
}

/// Whether `admin` may change every tenant (counted by [`may_remove`]; an
/// auditor of every tenant does not count: it could not create admins).
pub fn is_global(admin: &AdminRecord) -> bool {
    admin.tenant.is_none() && admin.role == Role::Admin
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::tests::t0;

    fn admin(tenant: Option<&str>) -> AdminRecord {
        AdminRecord {
            name: "a".into(),
            tenant: tenant.map(Into::into),
            created_at: t0(),
            role: Role::Admin,
            version: 1,
        }
    }

    #[test]
    fn the_last_global_admin_does_not_become_an_auditor() {
        let global = admin(None);
        assert_eq!(
            may_take_role(&global, Role::Auditor, 0),
            Err(AdminRefusal::LastGlobalAdmin)
        );
        assert_eq!(may_take_role(&global, Role::Auditor, 1), Ok(()));
        assert_eq!(may_take_role(&global, Role::Admin, 0), Ok(()));
        assert_eq!(
            may_take_role(&admin(Some("acme")), Role::Auditor, 0),
            Ok(())
        );
    }

    #[test]
    fn an_auditor_reads_what_its_scope_covers_and_changes_nothing() {
        let mut acme = admin(Some("acme"));
        acme.role = Role::Auditor;
        assert_eq!(may_act_on(&acme, "acme"), Ok(()));
        assert_eq!(may_change(&acme, "acme"), Err(AdminRefusal::ReadOnly));
        assert_eq!(may_change(&acme, "other"), Err(forbidden("acme")));
        let mut all = admin(None);
        all.role = Role::Auditor;
        assert_eq!(may_act_globally(&all), Ok(()));
        assert_eq!(may_change_globally(&all), Err(AdminRefusal::ReadOnly));
        assert_eq!(may_change_anything(&all), Err(AdminRefusal::ReadOnly));
        assert_eq!(may_change(&admin(Some("acme")), "acme"), Ok(()));
        assert_eq!(may_change_globally(&admin(None)), Ok(()));
        // An auditor of every tenant is not a global admin to keep.
        assert!(!is_global(&all));
        assert_eq!(
            may_remove(&admin(None), 0),
            Err(AdminRefusal::LastGlobalAdmin)
        );
        assert_eq!(may_remove(&all, 0), Ok(()));
    }

    #[test]
    fn a_tenant_admin_acts_on_its_tenant_only() {
        let acme = admin(Some("acme"));
        assert_eq!(may_act_on(&acme, "acme"), Ok(()));
        assert_eq!(may_act_on(&acme, "other"), Err(forbidden("acme")));
        assert_eq!(may_act_globally(&acme), Err(forbidden("acme")));
        let global = admin(None);
        assert_eq!(may_act_on(&global, "other"), Ok(()));
        assert_eq!(may_act_globally(&global), Ok(()));
    }

    #[test]
    fn only_an_admin_of_the_tenant_sees_the_details_of_public_data() {
        assert!(!sees_details_of(None, "acme"));
        let acme = admin(Some("acme"));
        assert!(sees_details_of(Some(&acme), "acme"));
        assert!(!sees_details_of(Some(&acme), "other"));
        assert!(sees_details_of(Some(&admin(None)), "other"));
    }

    #[test]
    fn a_tenant_admin_lists_its_own_tenant_whatever_it_asks() {
        let acme = admin(Some("acme"));
        assert_eq!(visible_tenant(&acme, None), Ok(Some("acme")));
        assert_eq!(visible_tenant(&acme, Some("acme")), Ok(Some("acme")));
        assert_eq!(visible_tenant(&acme, Some("other")), Err(forbidden("acme")));
        let global = admin(None);
        assert_eq!(visible_tenant(&global, None), Ok(None));
        assert_eq!(visible_tenant(&global, Some("other")), Ok(Some("other")));
    }

    #[test]
    fn the_last_global_admin_stays() {
        assert_eq!(
            may_remove(&admin(None), 0),
            Err(AdminRefusal::LastGlobalAdmin)
        );
        assert_eq!(may_remove(&admin(None), 1), Ok(()));
        assert_eq!(may_remove(&admin(Some("acme")), 0), Ok(()));
    }
}
