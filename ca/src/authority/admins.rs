//! Admins: authenticating the admin behind a request, and the named admin
//! tokens (created, listed and revoked by global admins; the last global
//! admin stays, see [`crate::state::admin::may_remove`]).

use agentca::identity::{Name, Part};
use agentca::wire::{
    Actor, AdminInfo, AdminVersion, CreateAdminRequest, CreateAdminResponse, SetAdminRoleRequest,
};
use time::OffsetDateTime;

use super::error::Named;
use super::{Admin, Authority, AuthorityError, RequestContext};
use crate::issuance::profile;
use crate::state::records::{AdminRecord, Role};
use crate::state::{Applied, Change};
use crate::token;

/// Longest admin name.
pub const MAX_ADMIN_NAME: usize = 64;

impl Authority {
    /// Authenticates an admin by the bearer token of the request; a refusal
    /// is audited.
    pub async fn admin(
        &self,
        ctx: &RequestContext,
        bearer: Option<&str>,
    ) -> Result<Admin, AuthorityError> {
        self.admin_by_hash(ctx, bearer.and_then(token::hash).as_ref())
            .await
    }

    /// Authenticates an admin by the hash of its token (`None`: a token
    /// that cannot be one); a refusal is audited.
    pub(super) async fn admin_by_hash(
        &self,
        ctx: &RequestContext,
        hash: Option<&crate::state::records::TokenHash>,
    ) -> Result<Admin, AuthorityError> {
        let event = self.event(
            ctx,
            Actor::Anonymous,
            "admin.auth",
            None,
            OffsetDateTime::now_utc(),
        );
        self.audited(event, async |_| {
            let hash = hash.ok_or(AuthorityError::Unauthorized)?;
            self.records
                .admin(hash)?
                .map(Admin)
                .ok_or(AuthorityError::Unauthorized)
        })
        .await
    }

    /// Creates a named admin token; global admins only.
    pub async fn create_admin(
        &self,
        ctx: &RequestContext,
        admin: &Admin,
        req: CreateAdminRequest,
        now: OffsetDateTime,
    ) -> Result<CreateAdminResponse, AuthorityError> {
        let mut event = self.event(
            ctx,
            admin.actor(),
            "admin.create",
            Some(req.name.clone()),
            now,
        );
        let scope = match &req.tenant {
            Some(t) => format!("tenant {t}"),
            None => "every tenant".into(),
        };
        event.reason = Some(match req.role.as_deref() {
            None | Some("admin") => scope,
            Some(role) => format!("{role} of {scope}"),
        });
        self.audited(event, async |event| {
            admin.may_change_globally()?;
            check_admin_name(&req.name)?;
            if let Some(t) = &req.tenant {
                Name::new(Part::Tenant, t)?;
            }
            let role = parse_role(req.role.as_deref().unwrap_or("admin"))?;
            let secret = token::generate(token::ADMIN_PREFIX);
            let hash = token::hash(&secret).expect("generated tokens are well-formed");
            let record = AdminRecord {
                name: req.name.clone(),
                tenant: req.tenant.clone(),
                created_at: profile::whole_seconds(now),
                role,
                version: 1,
            };
            let change = Change::PutAdmin {
                hash,
                admin: record.clone(),
                by: admin.name().to_owned(),
            };
            self.commit(change, event.clone(), Named::Admin(&req.name))
                .await?;
            tracing::info!(admin = admin.name(), name = %record.name, tenant = record.tenant.as_deref().unwrap_or("every tenant"), "admin created");
            Ok(CreateAdminResponse {
                admin: admin_info(&record),
                token: secret,
            })
        })
        .await
    }

    /// The named admins; global admins only.
    pub async fn list_admins(
        &self,
        ctx: &RequestContext,
        admin: &Admin,
    ) -> Result<Vec<AdminInfo>, AuthorityError> {
        let now = OffsetDateTime::now_utc();
        let event = self.event(ctx, admin.actor(), "admin.list", None, now);
        self.audited(event, async |_| {
            admin.may_act_globally()?;
            Ok(self.records.admins()?.iter().map(admin_info).collect())
        })
        .await
    }

    /// Gives an admin another role, as its next version; global admins
    /// only. The last global admin does not become an auditor. With
    /// `expected`, only if the admin is at that version.
    pub async fn set_admin_role(
        &self,
        ctx: &RequestContext,
        admin: &Admin,
        name: &str,
        req: SetAdminRoleRequest,
        expected: Option<u64>,
        now: OffsetDateTime,
    ) -> Result<AdminInfo, AuthorityError> {
        let event = self.event(ctx, admin.actor(), "admin.role", Some(name.to_owned()), now);
        self.audited(event, async |event| {
            admin.may_change_globally()?;
            let role = parse_role(&req.role)?;
            let mut done = event.clone();
            done.reason = Some(format!("role {}", req.role));
            let change = Change::SetAdminRole {
                name: name.to_owned(),
                role,
                expected,
                by: admin.name().to_owned(),
                at: profile::whole_seconds(now),
            };
            let applied = self.commit(change, done, Named::Admin(name)).await?;
            if let Applied::Versioned { version, .. } = applied {
                tracing::info!(admin = admin.name(), name, role = %req.role, version, "admin role changed");
            }
            self.records
                .admins()?
                .iter()
                .find(|a| a.name == name)
                .map(admin_info)
                .ok_or_else(|| AuthorityError::AdminNotFound(name.to_owned()))
        })
        .await
    }

    /// The versions of an admin, oldest first; global admins (and
    /// auditors of every tenant) only.
    pub async fn admin_history(
        &self,
        ctx: &RequestContext,
        admin: &Admin,
        name: &str,
        now: OffsetDateTime,
    ) -> Result<Vec<AdminVersion>, AuthorityError> {
        let event = self.event(
            ctx,
            admin.actor(),
            "admin.history",
            Some(name.to_owned()),
            now,
        );
        self.audited_read(event, async |_| {
            admin.may_act_globally()?;
            let history = self.records.admin_history(name)?;
            let mut versions: Vec<AdminVersion> = history
                .into_iter()
                .map(|v| AdminVersion {
                    version: v.version,
                    at: v.at,
                    by: v.by,
                    change: v.change,
                    role: role_name(v.role),
                    tenant: v.tenant,
                })
                .collect();
            if versions.is_empty() {
                // Created before versions were kept, and unchanged since.
                let record = self
                    .records
                    .admins()?
                    .into_iter()
                    .find(|a| a.name == name)
                    .ok_or_else(|| AuthorityError::AdminNotFound(name.to_owned()))?;
                versions.push(AdminVersion {
                    version: record.version,
                    at: record.created_at,
                    by: crate::state::governance::NOT_RECORDED.into(),
                    change: "create".into(),
                    role: role_name(record.role),
                    tenant: record.tenant,
                });
            }
            Ok(versions)
        })
        .await
    }

    /// Revokes a named admin's token; global admins only. The last global
    /// admin cannot be revoked.
    pub async fn delete_admin(
        &self,
        ctx: &RequestContext,
        admin: &Admin,
        name: &str,
        now: OffsetDateTime,
    ) -> Result<(), AuthorityError> {
        let event = self.event(
            ctx,
            admin.actor(),
            "admin.revoke",
            Some(name.to_owned()),
            now,
        );
        self.audited(event, async |event| {
            admin.may_change_globally()?;
            let change = Change::DeleteAdmin(name.to_owned());
            self.commit(change, event.clone(), Named::Admin(name))
                .await?;
            tracing::info!(admin = admin.name(), name, "admin revoked");
            Ok(())
        })
        .await
    }
}

fn parse_role(role: &str) -> Result<Role, AuthorityError> {
    match role {
        "admin" => Ok(Role::Admin),
        "auditor" => Ok(Role::Auditor),
        other => Err(AuthorityError::InvalidRequest(format!(
            "role {other:?} is neither \"admin\" nor \"auditor\""
        ))),
    }
}

fn role_name(role: Role) -> String {
    match role {
        Role::Admin => "admin",
        Role::Auditor => "auditor",
    }
    .into()
}

fn admin_info(record: &AdminRecord) -> AdminInfo {
    AdminInfo {
        name: record.name.clone(),
        tenant: record.tenant.clone(),
        created_at: record.created_at,
        role: role_name(record.role),
        version: record.version,
    }
}

fn check_admin_name(name: &str) -> Result<(), AuthorityError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_ADMIN_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.@".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(AuthorityError::InvalidRequest(format!(
            "admin names are 1 to {MAX_ADMIN_NAME} characters of a-z, 0-9, '-', '_', '.', '@'"
        )))
    }
}
