//! The authority: who may have a certificate, and what it contains.
//!
//! Every decision of the CA lives here. The HTTP layer turns requests into
//! calls on [`Authority`] and its results into responses; the store only
//! stores. Each operation takes the current time as an argument, so the
//! rules about expiry can be tested without a clock.

use std::net::SocketAddr;

use agentca::identity::{AgentId, IdError, InstanceId, Name, Part, TrustDomain};
use agentca::wire::{
    Actor, AdminInfo, AgentInfo, AuditEvent, AuditPage, CertificateInfo, CloneAlert,
    CreateAdminRequest, CreateAdminResponse, CreateTokenRequest, EnrollRequest, Health,
    IssuedCertificate, RegisterAgentRequest, RenewRequest, RevocationEvent as WireRevocationEvent,
    RevocationPage, RevokeRequest, RevokeResponse, Serial, TokenCreated,
};
use std::sync::Arc;

use rcgen::KeyPair;
use rustls_pki_types::{CertificateDer, UnixTime};
use time::{Duration, OffsetDateTime};

use crate::crl;
use crate::csr::{self, CheckedCsr, CsrError};
use crate::issuer::IssuingCa;
use crate::metrics::Metrics;
use crate::profile;
use crate::revocation::Revocations;
use crate::state::records::{
    AdminRecord, AgentRecord, CertRecord, CloneAlertRecord, Origin, Renewal, TokenRecord,
};
use crate::state::{Applied, Change, Conflict, Ledger, Records, RevokeTarget};
use crate::store::StoreError;
use crate::token;

/// Longest owner field accepted, in bytes.
pub const MAX_OWNER_LEN: usize = 256;
/// Longest purpose field accepted, in bytes.
pub const MAX_PURPOSE_LEN: usize = 1024;
/// Most agents returned by one listing.
pub const MAX_LIST: usize = 10_000;
/// Most audit events in one page.
pub const MAX_AUDIT_PAGE: usize = 1000;
/// Most live certificates shown for one agent.
const MAX_CERTS_SHOWN: usize = 1_000;
/// Most certificate records read to find an agent's live ones: its index
/// also holds expired and revoked certificates until retention prunes them.
const MAX_CERTS_SCANNED: usize = 4 * MAX_CERTS_SHOWN;
/// Most clone alerts shown for one agent.
const MAX_ALERTS_SHOWN: usize = 100;

/// Signature algorithms this CA's keys produce (P-256, P-384, Ed25519): the
/// only ones accepted on a certificate presented for renewal.
static CA_SIGNATURE_ALGS: &[&dyn rustls_pki_types::SignatureVerificationAlgorithm] = &[
    webpki::aws_lc_rs::ECDSA_P256_SHA256,
    webpki::aws_lc_rs::ECDSA_P384_SHA384,
    webpki::aws_lc_rs::ED25519,
];

/// The issuance rules an operator sets when starting the CA.
#[derive(Clone, Debug)]
pub struct Policy {
    /// Shortest certificate lifetime a registration may ask for.
    pub min_ttl: Duration,
    /// Longest certificate lifetime a registration may ask for.
    pub max_ttl: Duration,
    /// Lifetime for registrations that do not ask.
    pub default_ttl: Duration,
    /// Lifetime of a bootstrap token when not asked.
    pub default_token_ttl: Duration,
    /// Longest bootstrap token lifetime.
    pub max_token_ttl: Duration,
    /// Most uses of one bootstrap token.
    pub max_token_uses: u32,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            min_ttl: Duration::minutes(1),
            max_ttl: Duration::hours(24),
            default_ttl: Duration::minutes(5),
            default_token_ttl: Duration::minutes(10),
            max_token_ttl: Duration::days(7),
            max_token_uses: 1_000_000,
        }
    }
}

impl Policy {
    /// Checks that the policy is coherent.
    pub fn validate(&self) -> Result<(), String> {
        if self.min_ttl < Duration::seconds(1) {
            return Err("the minimum certificate lifetime must be at least 1 second".into());
        }
        if self.min_ttl > self.max_ttl {
            return Err("the minimum certificate lifetime is longer than the maximum".into());
        }
        if self.default_ttl < self.min_ttl || self.default_ttl > self.max_ttl {
            return Err("the default certificate lifetime is outside the allowed range".into());
        }
        Ok(())
    }
}

/// Why the authority refused, or failed.
#[derive(Debug, thiserror::Error)]
pub enum AuthorityError {
    /// No admin token, or an unknown one.
    #[error("a valid admin token is required (Authorization: Bearer <token>)")]
    Unauthorized,
    /// The admin may not act on this tenant.
    #[error("this admin may act only on tenant {allowed:?}")]
    Forbidden {
        /// The admin's tenant.
        allowed: String,
    },
    /// A malformed request.
    #[error("{0}")]
    InvalidRequest(String),
    /// A tenant, env, agent or SPIFFE ID that breaks the identity rules.
    #[error("invalid identity: {0}")]
    InvalidIdentity(#[from] IdError),
    /// A lifetime outside the allowed range.
    #[error("{what} of {requested} s is outside the allowed range {min}–{max} s")]
    TtlOutOfRange {
        /// What lifetime.
        what: &'static str,
        /// Asked for, in seconds.
        requested: u64,
        /// Minimum, in seconds.
        min: i64,
        /// Maximum, in seconds.
        max: i64,
    },
    /// The agent is already registered.
    #[error("{0} is already registered")]
    AgentExists(AgentId),
    /// The agent is not registered.
    #[error("{0} is not registered")]
    AgentNotFound(AgentId),
    /// The agent is disabled.
    #[error("{0} is disabled; an admin must enable it first")]
    AgentDisabled(AgentId),
    /// The token is unknown or malformed.
    #[error("the bootstrap token is not valid")]
    TokenInvalid,
    /// The token has expired.
    #[error("the bootstrap token has expired; ask an admin for a new one")]
    TokenExpired,
    /// The token has no uses left.
    #[error("the bootstrap token has already been used; ask an admin for a new one")]
    TokenUsed,
    /// The token was voided.
    #[error("the bootstrap token was voided; ask an admin for a new one")]
    TokenVoided,
    /// The CSR was refused.
    #[error(transparent)]
    Csr(#[from] CsrError),
    /// Renewal needs the current certificate as TLS client certificate.
    #[error("renewal needs the current certificate, presented as TLS client certificate")]
    ClientCertificateRequired,
    /// The presented certificate is not one this CA issued.
    #[error("the presented certificate was not issued by this CA: {0}")]
    CertificateUnknown(String),
    /// The presented certificate has expired.
    #[error("the presented certificate expired at {0}; enroll again with a bootstrap token")]
    CertificateExpired(String),
    /// The presented certificate is not valid yet.
    #[error("the presented certificate is not valid yet")]
    CertificateNotYetValid,
    /// The presented certificate is revoked.
    #[error("the presented certificate is revoked")]
    CertificateRevoked,
    /// The renewal CSR is for the key of the presented certificate.
    #[error("the CSR reuses the current key; renew with a new key")]
    KeyReused,
    /// The certificate was already renewed with another key.
    #[error("certificate {0} was already renewed with another key; the renewal is refused and recorded as a clone alert")]
    CloneDetected(Serial),
    /// The issuing CA has expired.
    #[error("the issuing CA certificate has expired")]
    IssuerExpired,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Signing failed.
    #[error("could not sign the certificate: {0}")]
    Sign(String),
    /// A state the CA should never be in.
    #[error("internal error: {0}")]
    Internal(String),
    /// No certificate with this serial is on record.
    #[error("no certificate with serial {0} is on record")]
    CertificateNotFound(Serial),
    /// No certificate of this instance is on record.
    #[error("no certificate of instance {0} is on record")]
    InstanceNotFound(InstanceId),
    /// No registered agent matches.
    #[error("no agent is registered under {0}")]
    NoAgentMatches(String),
    /// An admin with this name exists.
    #[error("an admin named {0:?} exists")]
    AdminExists(String),
    /// No admin with this name.
    #[error("no admin is named {0:?}")]
    AdminNotFound(String),
    /// Revoking this admin would leave nobody able to act on every tenant.
    #[error("{0:?} is the last global admin; create another before revoking it")]
    LastGlobalAdmin(String),
}

/// What kind of refusal (or failure) an [`AuthorityError`] is: the API
/// answers each kind with one HTTP status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// The request is malformed or asks for what the policy does not allow.
    Invalid,
    /// The caller is not authenticated (admin token, bootstrap token, or
    /// client certificate).
    Unauthenticated,
    /// The caller may not do this.
    Forbidden,
    /// What the request names does not exist.
    NotFound,
    /// The request conflicts with the current state.
    Conflict,
    /// The CA cannot serve now (store down, issuer expired).
    Unavailable,
    /// The CA failed.
    Internal,
}

impl AuthorityError {
    /// The stable code of this refusal, as the API and the audit trail
    /// show it, and its kind.
    pub fn classify(&self) -> (&'static str, ErrorKind) {
        use AuthorityError as E;
        use ErrorKind as K;
        match self {
            E::Unauthorized => ("unauthorized", K::Unauthenticated),
            E::Forbidden { .. } => ("forbidden", K::Forbidden),
            E::InvalidRequest(_) => ("invalid_request", K::Invalid),
            E::InvalidIdentity(_) => ("invalid_identity", K::Invalid),
            E::TtlOutOfRange { .. } => ("ttl_out_of_range", K::Invalid),
            E::AgentExists(_) => ("agent_exists", K::Conflict),
            E::AgentNotFound(_) | E::NoAgentMatches(_) => ("agent_not_found", K::NotFound),
            E::AgentDisabled(_) => ("agent_disabled", K::Forbidden),
            E::TokenInvalid => ("token_invalid", K::Unauthenticated),
            E::TokenExpired => ("token_expired", K::Unauthenticated),
            E::TokenUsed => ("token_used", K::Unauthenticated),
            E::TokenVoided => ("token_voided", K::Unauthenticated),
            E::Csr(CsrError::Malformed(_)) => ("csr_malformed", K::Invalid),
            E::Csr(CsrError::SignatureInvalid) => ("csr_signature_invalid", K::Invalid),
            E::Csr(CsrError::KeyTypeNotAllowed(_)) => ("key_type_not_allowed", K::Invalid),
            E::ClientCertificateRequired => ("client_certificate_required", K::Unauthenticated),
            E::CertificateUnknown(_) => ("certificate_unknown", K::Unauthenticated),
            E::CertificateExpired(_) => ("certificate_expired", K::Unauthenticated),
            E::CertificateNotYetValid => ("certificate_not_yet_valid", K::Unauthenticated),
            E::CertificateRevoked => ("certificate_revoked", K::Unauthenticated),
            E::KeyReused => ("key_reused", K::Invalid),
            E::CloneDetected(_) => ("clone_detected", K::Conflict),
            E::IssuerExpired => ("issuer_expired", K::Unavailable),
            E::Store(_) => ("store_unavailable", K::Unavailable),
            E::CertificateNotFound(_) => ("certificate_not_found", K::NotFound),
            E::InstanceNotFound(_) => ("instance_not_found", K::NotFound),
            E::AdminExists(_) => ("admin_exists", K::Conflict),
            E::AdminNotFound(_) => ("admin_not_found", K::NotFound),
            E::LastGlobalAdmin(_) => ("last_global_admin", K::Conflict),
            E::Sign(_) | E::Internal(_) => ("internal_error", K::Internal),
        }
    }

    /// The stable code of this refusal.
    pub fn code(&self) -> &'static str {
        self.classify().0
    }

    /// Whether the CA failed, rather than refused.
    pub fn is_failure(&self) -> bool {
        matches!(
            self.classify().1,
            ErrorKind::Unavailable | ErrorKind::Internal
        )
    }
}

/// Which registered agents to list.
#[derive(Clone, Debug, Default)]
pub struct AgentFilter {
    /// Only this tenant.
    pub tenant: Option<String>,
    /// Only this environment (with a tenant).
    pub env: Option<String>,
    /// Only enabled (`true`) or disabled (`false`) agents.
    pub enabled: Option<bool>,
    /// Only agents issued no certificate for at least this long (or never).
    pub idle_for: Option<Duration>,
    /// At most this many.
    pub limit: usize,
    /// Only agents after this one (`tenant/env/agent`): where the previous
    /// page stopped.
    pub after: Option<String>,
}

/// One page of an agent listing.
#[derive(Debug)]
pub struct AgentPage {
    /// The agents, in `tenant/env/agent` order.
    pub agents: Vec<AgentInfo>,
    /// Where the listing stopped (`tenant/env/agent`) when more agents may
    /// match: the `after` of the next page. `None` at the end.
    pub next_after: Option<String>,
}

/// What the HTTP layer knows of a request, for the audit trail.
#[derive(Clone, Debug, Default)]
pub struct RequestContext {
    /// The request's id (also in the response's `x-request-id`).
    pub request_id: Option<String>,
    /// The peer's address.
    pub remote: Option<SocketAddr>,
}

/// The admin behind a request, once authenticated.
#[derive(Clone, Debug)]
pub struct Admin(AdminRecord);

impl Admin {
    /// The admin's name.
    pub fn name(&self) -> &str {
        &self.0.name
    }

    /// The admin as the actor of an audited action.
    pub fn actor(&self) -> Actor {
        Actor::Admin {
            name: self.0.name.clone(),
        }
    }

    /// Refuses an admin limited to one tenant.
    fn check_global(&self) -> Result<(), AuthorityError> {
        match &self.0.tenant {
            Some(t) => Err(AuthorityError::Forbidden { allowed: t.clone() }),
            None => Ok(()),
        }
    }

    fn check_tenant(&self, tenant: &str) -> Result<(), AuthorityError> {
        match &self.0.tenant {
            Some(t) if t != tenant => Err(AuthorityError::Forbidden { allowed: t.clone() }),
            _ => Ok(()),
        }
    }
}

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

/// The certificate authority's decisions.
pub struct Authority {
    ca: Arc<IssuingCa>,
    policy: Policy,
    records: Records,
    writer: Ledger,
    revocations: Arc<Revocations>,
    metrics: Arc<Metrics>,
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
    ) -> Result<Self, String> {
        policy.validate()?;
        Ok(Self {
            ca,
            policy,
            records,
            writer,
            revocations,
            metrics,
        })
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

    /// Authenticates an admin by the bearer token of the request; a refusal
    /// is audited.
    pub async fn admin(
        &self,
        ctx: &RequestContext,
        bearer: Option<&str>,
    ) -> Result<Admin, AuthorityError> {
        let result = match bearer.and_then(token::hash) {
            None => Err(AuthorityError::Unauthorized),
            Some(hash) => self
                .records
                .admin(&hash)
                .map_err(AuthorityError::from)
                .and_then(|a| a.map(Admin).ok_or(AuthorityError::Unauthorized)),
        };
        let event = self.event(
            ctx,
            Actor::Anonymous,
            "admin.auth",
            None,
            OffsetDateTime::now_utc(),
        );
        self.audit_refusal(event, &result).await;
        result
    }

    /// An audit event of `action` by `actor` on `subject`, outcome ok.
    fn event(
        &self,
        ctx: &RequestContext,
        actor: Actor,
        action: &str,
        subject: Option<String>,
        now: OffsetDateTime,
    ) -> AuditEvent {
        let mut event = AuditEvent::new(profile::whole_seconds(now), actor, action, subject);
        event.remote_addr = ctx.remote.map(|a| a.to_string());
        event.request_id = ctx.request_id.clone();
        event
    }

    /// `change` with its audit event, committed together.
    fn audited(change: Change, event: AuditEvent) -> Change {
        Change::Audited {
            change: Box::new(change),
            audit: Box::new(event),
        }
    }

    /// Appends `event` as refused with the error's code when `result` is a
    /// refusal (failures of the CA itself are in its log, and a store that
    /// fails could not record them anyway).
    async fn audit_refusal<T>(&self, mut event: AuditEvent, result: &Result<T, AuthorityError>) {
        let Err(e) = result else { return };
        if e.is_failure() || matches!(e, AuthorityError::CloneDetected(_)) {
            // A clone alert is audited in the same commit as the alert.
            return;
        }
        event.outcome = "refused".into();
        event.reason = Some(e.code().into());
        match self.writer.apply(Change::Audit(event)).await {
            Ok(_) => {}
            Err(err) => {
                tracing::error!(error = %err, "could not record a refusal in the audit trail")
            }
        }
    }

    /// Appends an event that changes nothing else.
    async fn audit(&self, event: AuditEvent) -> Result<(), AuthorityError> {
        self.writer
            .apply(Change::Audit(event))
            .await?
            .map_err(unexpected)?;
        Ok(())
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
        let (t, e, a) = split_key(key)?;
        self.agent_id(t, e, a)
    }

    fn id_of(&self, record: &AgentRecord) -> Result<AgentId, AuthorityError> {
        self.agent_id(&record.tenant, &record.env, &record.agent)
    }

    fn info(&self, record: &AgentRecord) -> Result<AgentInfo, AuthorityError> {
        Ok(AgentInfo {
            spiffe_id: self.id_of(record)?,
            owner: record.owner.clone(),
            purpose: record.purpose.clone(),
            ttl_seconds: record.ttl_secs,
            scopes: record.scopes.clone(),
            enabled: record.enabled,
            created_at: record.created_at,
            updated_at: record.updated_at,
            last_issued_at: record.last_issued_at,
            live_certificates: Vec::new(),
            live_certificates_truncated: false,
            clone_alerts: Vec::new(),
        })
    }

    /// Fills in the certificates of `agent_key` neither expired nor
    /// revoked, and says whether the list stops at a limit.
    fn add_live_certificates(
        &self,
        info: &mut AgentInfo,
        agent_key: &str,
        now: OffsetDateTime,
    ) -> Result<(), AuthorityError> {
        let mut scanned = self.records.certs_of(agent_key, MAX_CERTS_SCANNED + 1)?;
        let mut truncated = scanned.len() > MAX_CERTS_SCANNED;
        scanned.truncate(MAX_CERTS_SCANNED);
        let mut live = Vec::new();
        for c in scanned {
            if c.not_after <= now || c.revoked.is_some() {
                continue;
            }
            if live.len() == MAX_CERTS_SHOWN {
                truncated = true;
                break;
            }
            live.push(CertificateInfo {
                serial: c.serial,
                instance_id: c.instance_id,
                not_before: c.not_before,
                not_after: c.not_after,
                renewed_by: c.renewed_by.map(|r| r.serial),
            });
        }
        info.live_certificates = live;
        info.live_certificates_truncated = truncated;
        Ok(())
    }

    fn check_ttl(
        &self,
        what: &'static str,
        secs: u64,
        min: Duration,
        max: Duration,
    ) -> Result<Duration, AuthorityError> {
        let out_of_range = || AuthorityError::TtlOutOfRange {
            what,
            requested: secs,
            min: min.whole_seconds(),
            max: max.whole_seconds(),
        };
        let ttl = i64::try_from(secs)
            .map(Duration::seconds)
            .map_err(|_| out_of_range())?;
        if ttl < min || ttl > max {
            return Err(out_of_range());
        }
        Ok(ttl)
    }

    /// Registers an agent. Nothing unregistered can get a certificate.
    pub async fn register(
        &self,
        ctx: &RequestContext,
        admin: &Admin,
        req: RegisterAgentRequest,
        now: OffsetDateTime,
    ) -> Result<AgentInfo, AuthorityError> {
        let subject = Some(self.subject(&req.tenant, &req.env, &req.agent));
        let event = self.event(ctx, admin.actor(), "register", subject, now);
        let result = self.register_inner(event.clone(), admin, req, now).await;
        self.audit_refusal(event, &result).await;
        result
    }

    async fn register_inner(
        &self,
        mut event: AuditEvent,
        admin: &Admin,
        req: RegisterAgentRequest,
        now: OffsetDateTime,
    ) -> Result<AgentInfo, AuthorityError> {
        let id = self.agent_id(&req.tenant, &req.env, &req.agent)?;
        admin.check_tenant(&req.tenant)?;
        check_text("owner", &req.owner, MAX_OWNER_LEN)?;
        check_text("purpose", &req.purpose, MAX_PURPOSE_LEN)?;
        let scopes = agentca::scopes::normalize(&req.scopes)
            .map_err(|e| AuthorityError::InvalidRequest(e.to_string()))?;
        let ttl = match req.ttl_seconds {
            Some(secs) => self.check_ttl(
                "the certificate lifetime",
                secs,
                self.policy.min_ttl,
                self.policy.max_ttl,
            )?,
            None => self.policy.default_ttl,
        };
        let now = profile::whole_seconds(now);
        let record = AgentRecord {
            tenant: req.tenant,
            env: req.env,
            agent: req.agent,
            owner: req.owner,
            purpose: req.purpose,
            ttl_secs: ttl.whole_seconds() as u64,
            enabled: true,
            created_at: now,
            updated_at: now,
            last_issued_at: None,
            scopes,
        };
        if !record.scopes.is_empty() {
            event.reason = Some(format!("scopes {}", record.scopes.join(" ")));
        }
        match self
            .writer
            .apply(Self::audited(Change::RegisterAgent(record.clone()), event))
            .await?
        {
            Ok(_) => {
                tracing::info!(admin = admin.name(), agent = %id, "agent registered");
                self.info(&record)
            }
            Err(Conflict::AgentExists) => Err(AuthorityError::AgentExists(id)),
            Err(other) => Err(unexpected(other)),
        }
    }

    /// Lists registered agents, optionally of one tenant and env.
    pub async fn list_agents(
        &self,
        ctx: &RequestContext,
        admin: &Admin,
        filter: &AgentFilter,
        now: OffsetDateTime,
    ) -> Result<AgentPage, AuthorityError> {
        let result = self.list_agents_inner(admin, filter, now);
        let subject = filter
            .tenant
            .as_ref()
            .map(|t| format!("{t}/{}", filter.env.as_deref().unwrap_or("*")));
        let event = self.event(ctx, admin.actor(), "agents.list", subject, now);
        self.audit_refusal(event, &result).await;
        result
    }

    fn list_agents_inner(
        &self,
        admin: &Admin,
        filter: &AgentFilter,
        now: OffsetDateTime,
    ) -> Result<AgentPage, AuthorityError> {
        let tenant = match (&admin.0.tenant, filter.tenant.as_deref()) {
            (Some(own), Some(asked)) if own != asked => {
                return Err(AuthorityError::Forbidden {
                    allowed: own.clone(),
                })
            }
            (Some(own), _) => Some(own.as_str()),
            (None, asked) => asked,
        };
        let prefix = match (tenant, filter.env.as_deref()) {
            (Some(t), Some(e)) => {
                Name::new(Part::Tenant, t)?;
                Name::new(Part::Env, e)?;
                format!("{t}/{e}/")
            }
            (Some(t), None) => {
                Name::new(Part::Tenant, t)?;
                format!("{t}/")
            }
            (None, Some(_)) => {
                return Err(AuthorityError::InvalidRequest(
                    "filtering by env needs a tenant".into(),
                ))
            }
            (None, None) => String::new(),
        };
        if let Some(after) = &filter.after {
            let bad = || {
                AuthorityError::InvalidRequest(format!(
                    "after {after:?}: expected tenant/env/agent, as the previous page's next-after gave"
                ))
            };
            self.id_of_key(after).map_err(|_| bad())?;
        }
        if filter.limit == 0 {
            return Err(AuthorityError::InvalidRequest(
                "limit must be at least 1".into(),
            ));
        }
        // Filters apply after the key-order scan, which reads at most
        // MAX_LIST agents per page; the next page starts where it stopped.
        let limit = filter.limit.min(MAX_LIST);
        let records = self
            .records
            .agents_after(&prefix, filter.after.as_deref(), MAX_LIST + 1)?;
        let more_unread = records.len() > MAX_LIST;
        let mut agents = Vec::new();
        let mut last_read: Option<String> = None;
        let mut full = false;
        for record in records.into_iter().take(MAX_LIST) {
            if agents.len() == limit {
                full = true;
                break;
            }
            let key = record.key();
            last_read = Some(key.clone());
            if filter.enabled.is_some_and(|e| e != record.enabled) {
                continue;
            }
            if let Some(idle) = filter.idle_for {
                if record.last_issued_at.is_some_and(|at| at > now - idle) {
                    continue;
                }
            }
            let mut info = self.info(&record)?;
            self.add_live_certificates(&mut info, &key, now)?;
            agents.push(info);
        }
        // A page that filled up, or that stopped at the read limit, goes on
        // after the last agent it read.
        let next_after = if full || more_unread { last_read } else { None };
        Ok(AgentPage { agents, next_after })
    }

    /// Up to `limit` audit events after `since`, waiting up to `wait` for
    /// one if there is none yet; global admins only. Reading the trail is
    /// not itself audited (a follower would feed on its own events), but a
    /// refused read is.
    pub async fn audit_page(
        &self,
        ctx: &RequestContext,
        admin: &Admin,
        since: u64,
        limit: usize,
        wait: std::time::Duration,
    ) -> Result<AuditPage, AuthorityError> {
        let event = self.event(
            ctx,
            admin.actor(),
            "audit.read",
            None,
            OffsetDateTime::now_utc(),
        );
        let result = self.audit_page_inner(admin, since, limit, wait).await;
        self.audit_refusal(event, &result).await;
        result
    }

    async fn audit_page_inner(
        &self,
        admin: &Admin,
        since: u64,
        limit: usize,
        wait: std::time::Duration,
    ) -> Result<AuditPage, AuthorityError> {
        admin.check_global()?;
        let limit = limit.clamp(1, MAX_AUDIT_PAGE);
        let mut head = self.writer.audit_head();
        if *head.borrow_and_update() <= since && !wait.is_zero() {
            // Woken by the next commit that appends an event, or not at all.
            let _ = tokio::time::timeout(wait, head.wait_for(|seq| *seq > since)).await;
        }
        // A consistent page: the head first, then only the events up to it
        // (events committed in between wait for the next page), so that the
        // last page ends exactly at the head unless the trail was cut.
        let crate::audit::Head {
            seq: head_seq,
            hash: head_hash,
        } = self.records.audit_head()?;
        let mut events = self.records.audit_since(since, limit)?;
        events.retain(|e| e.seq <= head_seq);
        Ok(AuditPage {
            events,
            head_seq,
            head_hash,
        })
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
        event.reason = Some(match &req.tenant {
            Some(t) => format!("tenant {t}"),
            None => "every tenant".into(),
        });
        let result = self
            .create_admin_inner(event.clone(), admin, req, now)
            .await;
        self.audit_refusal(event, &result).await;
        result
    }

    async fn create_admin_inner(
        &self,
        event: AuditEvent,
        admin: &Admin,
        req: CreateAdminRequest,
        now: OffsetDateTime,
    ) -> Result<CreateAdminResponse, AuthorityError> {
        admin.check_global()?;
        check_admin_name(&req.name)?;
        if let Some(t) = &req.tenant {
            Name::new(Part::Tenant, t)?;
        }
        let secret = token::generate(token::ADMIN_PREFIX);
        let hash = token::hash(&secret).expect("generated tokens are well-formed");
        let record = AdminRecord {
            name: req.name.clone(),
            tenant: req.tenant.clone(),
            created_at: profile::whole_seconds(now),
        };
        let change = Change::PutAdmin {
            hash,
            admin: record.clone(),
        };
        match self.writer.apply(Self::audited(change, event)).await? {
            Ok(_) => {
                tracing::info!(admin = admin.name(), name = %record.name, tenant = ?record.tenant, "admin created");
                Ok(CreateAdminResponse {
                    admin: admin_info(&record),
                    token: secret,
                })
            }
            Err(Conflict::AdminExists) => Err(AuthorityError::AdminExists(req.name)),
            Err(other) => Err(unexpected(other)),
        }
    }

    /// The named admins; global admins only.
    pub async fn list_admins(
        &self,
        ctx: &RequestContext,
        admin: &Admin,
    ) -> Result<Vec<AdminInfo>, AuthorityError> {
        let result = admin
            .check_global()
            .and_then(|()| Ok(self.records.admins()?.iter().map(admin_info).collect()));
        let event = self.event(
            ctx,
            admin.actor(),
            "admin.list",
            None,
            OffsetDateTime::now_utc(),
        );
        self.audit_refusal(event, &result).await;
        result
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
        let result = match admin.check_global() {
            Err(e) => Err(e),
            Ok(()) => match self
                .writer
                .apply(Self::audited(
                    Change::DeleteAdmin(name.to_owned()),
                    event.clone(),
                ))
                .await
            {
                Err(e) => Err(e.into()),
                Ok(Ok(_)) => {
                    tracing::info!(admin = admin.name(), name, "admin revoked");
                    Ok(())
                }
                Ok(Err(Conflict::AdminNotFound)) => {
                    Err(AuthorityError::AdminNotFound(name.to_owned()))
                }
                Ok(Err(Conflict::LastGlobalAdmin)) => {
                    Err(AuthorityError::LastGlobalAdmin(name.to_owned()))
                }
                Ok(Err(other)) => Err(unexpected(other)),
            },
        };
        self.audit_refusal(event, &result).await;
        result
    }

    /// The stored state that `GET /metrics` reports.
    pub fn metrics_snapshot(
        &self,
        now: OffsetDateTime,
    ) -> Result<crate::metrics::Snapshot, AuthorityError> {
        let crl = self.revocations.crl();
        let revoked_unexpired = self.revocations.revoked_unexpired(now);
        Ok(crate::metrics::Snapshot {
            live_certificates: self
                .metrics
                .unexpired(now)
                .saturating_sub(revoked_unexpired),
            crl_entries: crl.entries as u64,
            crl_number: crl.number,
            crl_age_seconds: (now - crl.this_update).whole_seconds(),
            crl_next_update_seconds: (crl.next_update - now).whole_seconds(),
            store_bytes: self.records.store().size_on_disk(),
            audit_last_sequence: self.records.audit_head()?.seq,
            intermediate_expiry_seconds: (self.ca.not_after() - now).whole_seconds(),
        })
    }

    /// Records a request refused before it reached its operation (a
    /// malformed body): the audit trail shows every refusal.
    pub async fn audit_rejected(
        &self,
        ctx: &RequestContext,
        actor: Actor,
        action: &str,
        code: &str,
    ) {
        let mut event = self.event(ctx, actor, action, None, OffsetDateTime::now_utc());
        event.outcome = "refused".into();
        event.reason = Some(code.to_owned());
        if let Err(e) = self.writer.apply(Change::Audit(event)).await {
            tracing::error!(error = %e, "could not record a refusal in the audit trail");
        }
    }

    fn registered(&self, id: &AgentId) -> Result<AgentRecord, AuthorityError> {
        self.records
            .agent(&id.path_key())?
            .ok_or_else(|| AuthorityError::AgentNotFound(id.clone()))
    }

    /// One agent, with its live certificates and clone alerts.
    pub async fn show_agent(
        &self,
        ctx: &RequestContext,
        admin: &Admin,
        tenant: &str,
        env: &str,
        agent: &str,
        now: OffsetDateTime,
    ) -> Result<AgentInfo, AuthorityError> {
        let result = self.show_agent_inner(admin, tenant, env, agent, now);
        let event = self.event(
            ctx,
            admin.actor(),
            "agents.show",
            Some(self.subject(tenant, env, agent)),
            now,
        );
        self.audit_refusal(event, &result).await;
        result
    }

    fn show_agent_inner(
        &self,
        admin: &Admin,
        tenant: &str,
        env: &str,
        agent: &str,
        now: OffsetDateTime,
    ) -> Result<AgentInfo, AuthorityError> {
        let id = self.agent_id(tenant, env, agent)?;
        admin.check_tenant(tenant)?;
        let record = self.registered(&id)?;
        let mut info = self.info(&record)?;
        let key = id.path_key();
        self.add_live_certificates(&mut info, &key, now)?;
        info.clone_alerts = self
            .records
            .alerts_of(&key, MAX_ALERTS_SHOWN)?
            .into_iter()
            .map(|a| CloneAlert {
                at: a.at,
                serial: a.serial,
                instance_id: a.instance_id,
                requested_key_sha256: a.requested_key_sha256,
                remote_addr: a.remote_addr,
            })
            .collect();
        Ok(info)
    }

    /// Enables or disables an agent. A disabled agent can neither enroll
    /// nor renew, and gets no new tokens.
    #[allow(clippy::too_many_arguments)]
    pub async fn set_enabled(
        &self,
        ctx: &RequestContext,
        admin: &Admin,
        tenant: &str,
        env: &str,
        agent: &str,
        enabled: bool,
        now: OffsetDateTime,
    ) -> Result<AgentInfo, AuthorityError> {
        let action = if enabled { "enable" } else { "disable" };
        let event = self.event(
            ctx,
            admin.actor(),
            action,
            Some(self.subject(tenant, env, agent)),
            now,
        );
        let result = self
            .set_enabled_inner(event.clone(), admin, tenant, env, agent, enabled, now)
            .await;
        self.audit_refusal(event, &result).await;
        result
    }

    #[allow(clippy::too_many_arguments)]
    async fn set_enabled_inner(
        &self,
        event: AuditEvent,
        admin: &Admin,
        tenant: &str,
        env: &str,
        agent: &str,
        enabled: bool,
        now: OffsetDateTime,
    ) -> Result<AgentInfo, AuthorityError> {
        let id = self.agent_id(tenant, env, agent)?;
        admin.check_tenant(tenant)?;
        let change = Change::SetAgentEnabled {
            key: id.path_key(),
            enabled,
            at: profile::whole_seconds(now),
        };
        match self.writer.apply(Self::audited(change, event)).await? {
            Ok(_) => {
                tracing::info!(admin = admin.name(), agent = %id, enabled, "agent state changed");
                self.info(&self.registered(&id)?)
            }
            Err(Conflict::AgentNotFound) => Err(AuthorityError::AgentNotFound(id)),
            Err(other) => Err(unexpected(other)),
        }
    }

    /// Creates a bootstrap token for a registered, enabled agent. The token
    /// is in the answer only; the store keeps its hash.
    #[allow(clippy::too_many_arguments)]
    pub async fn create_token(
        &self,
        ctx: &RequestContext,
        admin: &Admin,
        tenant: &str,
        env: &str,
        agent: &str,
        req: CreateTokenRequest,
        now: OffsetDateTime,
    ) -> Result<TokenCreated, AuthorityError> {
        let event = self.event(
            ctx,
            admin.actor(),
            "token.create",
            Some(self.subject(tenant, env, agent)),
            now,
        );
        let result = self
            .create_token_inner(event.clone(), admin, tenant, env, agent, req, now)
            .await;
        self.audit_refusal(event, &result).await;
        result
    }

    #[allow(clippy::too_many_arguments)]
    async fn create_token_inner(
        &self,
        mut event: AuditEvent,
        admin: &Admin,
        tenant: &str,
        env: &str,
        agent: &str,
        req: CreateTokenRequest,
        now: OffsetDateTime,
    ) -> Result<TokenCreated, AuthorityError> {
        let id = self.agent_id(tenant, env, agent)?;
        admin.check_tenant(tenant)?;
        let ttl = match req.ttl_seconds {
            Some(secs) => self.check_ttl(
                "the token lifetime",
                secs,
                Duration::seconds(1),
                self.policy.max_token_ttl,
            )?,
            None => self.policy.default_token_ttl,
        };
        let uses = req.uses.unwrap_or(1);
        if uses == 0 || uses > self.policy.max_token_uses {
            return Err(AuthorityError::InvalidRequest(format!(
                "uses must be between 1 and {}",
                self.policy.max_token_uses
            )));
        }
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
        event.reason = Some(format!(
            "token {} for {} use(s), valid until {}",
            record.token_id,
            uses,
            rfc3339(record.expires_at)
        ));
        let change = Change::CreateToken {
            hash,
            token: record.clone(),
        };
        match self.writer.apply(Self::audited(change, event)).await? {
            Ok(_) => {
                tracing::info!(admin = admin.name(), agent = %id, token_id = %record.token_id, uses, "bootstrap token created");
                Ok(TokenCreated {
                    token: secret,
                    token_id: record.token_id,
                    spiffe_id: id,
                    expires_at: record.expires_at,
                    uses,
                })
            }
            Err(Conflict::AgentNotFound) => Err(AuthorityError::AgentNotFound(id)),
            Err(Conflict::AgentDisabled) => Err(AuthorityError::AgentDisabled(id)),
            Err(other) => Err(unexpected(other)),
        }
    }

    /// Enrolls an agent: a bootstrap token and a CSR give a first
    /// certificate and a new instance id.
    pub async fn enroll(
        &self,
        ctx: &RequestContext,
        req: EnrollRequest,
        now: OffsetDateTime,
    ) -> Result<IssuedCertificate, AuthorityError> {
        // The actor is the token, by its public id; garbage gets none.
        let actor = token::hash(&req.token).map_or(Actor::Anonymous, |h| Actor::Token {
            token_id: token::id(&h),
        });
        let mut event = self.event(ctx, actor, "enroll", None, now);
        let result = self.enroll_inner(&mut event, req, now).await;
        self.audit_refusal(event, &result).await;
        result
    }

    async fn enroll_inner(
        &self,
        event: &mut AuditEvent,
        req: EnrollRequest,
        now: OffsetDateTime,
    ) -> Result<IssuedCertificate, AuthorityError> {
        // The token is checked before the CSR, so that requests without a
        // valid token cost no signature verification.
        let hash = token::hash(&req.token).ok_or(AuthorityError::TokenInvalid)?;
        let token = self
            .records
            .token(&hash)?
            .ok_or(AuthorityError::TokenInvalid)?;
        token_usable(&token, now)?;
        let record = self
            .records
            .agent(&token.agent_key)?
            .ok_or(AuthorityError::TokenInvalid)?;
        let id = self.id_of(&record)?;
        event.subject = Some(id.to_string());
        if !record.enabled {
            return Err(AuthorityError::AgentDisabled(id));
        }
        let csr = csr::check(&req.csr)?;
        let instance = InstanceId::random();
        let (cert, issued) = self.sign(
            &id,
            &instance,
            &csr,
            &record,
            now,
            Origin::Enroll {
                token_id: token.token_id.clone(),
            },
        )?;
        let change = Change::Enroll {
            token_hash: hash,
            at: now,
            cert,
        };
        // The issuance's own event: a refusal at commit is audited by the
        // caller without the serial of a certificate it never issued.
        let mut done = event.clone();
        done.serial = Some(issued.serial.clone());
        done.not_after = Some(issued.not_after);
        match self.writer.apply(Self::audited(change, done)).await? {
            Ok(_) => {
                tracing::info!(agent = %id, instance = %instance, serial = %issued.serial, token_id = %token.token_id, "enrolled");
                Ok(issued)
            }
            Err(Conflict::TokenNotFound) => Err(AuthorityError::TokenInvalid),
            Err(Conflict::TokenExpired) => Err(AuthorityError::TokenExpired),
            Err(Conflict::TokenUsed) => Err(AuthorityError::TokenUsed),
            Err(Conflict::TokenVoided) => Err(AuthorityError::TokenVoided),
            Err(Conflict::AgentNotFound) => Err(AuthorityError::AgentNotFound(id)),
            Err(Conflict::AgentDisabled) => Err(AuthorityError::AgentDisabled(id)),
            Err(other) => Err(unexpected(other)),
        }
    }

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
        let mut event = self.event(ctx, Actor::Anonymous, "renew", None, now);
        let result = self
            .renew_inner(&mut event, peer_chain, req, ctx.remote, now)
            .await;
        self.audit_refusal(event, &result).await;
        result
    }

    async fn renew_inner(
        &self,
        event: &mut AuditEvent,
        peer_chain: Option<&[CertificateDer<'static>]>,
        req: RenewRequest,
        remote: Option<SocketAddr>,
        now: OffsetDateTime,
    ) -> Result<IssuedCertificate, AuthorityError> {
        let leaf = peer_chain
            .and_then(|c| c.first())
            .ok_or(AuthorityError::ClientCertificateRequired)?;
        let serial = self.verify_own_leaf(leaf, now)?;
        // The chain verified, but only a certificate on record, byte for
        // byte, is one this CA issued and still tracks.
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
        if now >= current.not_after {
            return Err(AuthorityError::CertificateExpired(rfc3339(
                current.not_after,
            )));
        }
        if current.revoked.is_some() {
            return Err(AuthorityError::CertificateRevoked);
        }
        let record = self.records.agent(&current.agent_key)?.ok_or_else(|| {
            AuthorityError::CertificateUnknown("its agent is no longer registered".into())
        })?;
        if !record.enabled {
            return Err(AuthorityError::AgentDisabled(id));
        }
        let csr = csr::check(&req.csr)?;
        if csr.key_sha256 == current.key_sha256 {
            return Err(AuthorityError::KeyReused);
        }
        if let Some(renewal) = &current.renewed_by {
            return self
                .renewed_already(event.clone(), &current, renewal, &csr, remote, now)
                .await;
        }
        let (cert, issued) = self.sign(
            &id,
            &current.instance_id,
            &csr,
            &record,
            now,
            Origin::Renew {
                from: serial.clone(),
            },
        )?;
        let change = Change::Renew {
            from: serial.clone(),
            at: profile::whole_seconds(now),
            cert,
        };
        let mut done = event.clone();
        done.serial = Some(issued.serial.clone());
        done.not_after = Some(issued.not_after);
        done.reason = Some(format!("from {serial}"));
        match self.writer.apply(Self::audited(change, done)).await? {
            Ok(_) => {
                tracing::info!(agent = %id, instance = %current.instance_id, from = %serial, serial = %issued.serial, "renewed");
                Ok(issued)
            }
            // Another renewal of the same certificate committed first.
            Err(Conflict::AlreadyRenewed(renewal)) => {
                self.renewed_already(event.clone(), &current, &renewal, &csr, remote, now)
                    .await
            }
            Err(Conflict::CertificateRevoked) => Err(AuthorityError::CertificateRevoked),
            Err(Conflict::AgentDisabled) => Err(AuthorityError::AgentDisabled(id)),
            Err(Conflict::AgentNotFound) | Err(Conflict::CertificateNotFound) => Err(
                AuthorityError::CertificateUnknown("its record is gone".into()),
            ),
            Err(other) => Err(unexpected(other)),
        }
    }

    /// The answer to a renewal of a certificate that was already renewed:
    /// the same certificate for the same key, a clone alert otherwise.
    async fn renewed_already(
        &self,
        mut event: AuditEvent,
        current: &CertRecord,
        renewal: &Renewal,
        csr: &CheckedCsr,
        remote: Option<SocketAddr>,
        now: OffsetDateTime,
    ) -> Result<IssuedCertificate, AuthorityError> {
        if renewal.key_sha256 == csr.key_sha256 {
            let issued = self.records.cert(&renewal.serial)?.ok_or_else(|| {
                AuthorityError::CertificateUnknown("its renewal record is gone".into())
            })?;
            event.serial = Some(issued.serial.clone());
            event.not_after = Some(issued.not_after);
            event.reason = Some(format!(
                "retry: the renewal of {} issued before",
                current.serial
            ));
            self.audit(event).await?;
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
            "clone_detected: renewed before, now asked for key {}",
            csr.key_sha256
        ));
        self.writer
            .apply(Self::audited(Change::RecordCloneAlert(alert), event))
            .await?
            .map_err(unexpected)?;
        tracing::warn!(
            agent = %current.agent_key,
            instance = %current.instance_id,
            serial = %current.serial,
            remote = ?remote,
            "clone alert: a certificate was renewed a second time with another key"
        );
        Err(AuthorityError::CloneDetected(current.serial.clone()))
    }

    /// Checks that `leaf` chains to this CA's intermediate and is valid at
    /// `now`, for client authentication; its serial.
    fn verify_own_leaf(
        &self,
        leaf: &CertificateDer<'static>,
        now: OffsetDateTime,
    ) -> Result<Serial, AuthorityError> {
        let cert = webpki::EndEntityCert::try_from(leaf)
            .map_err(|e| AuthorityError::CertificateUnknown(format!("it does not parse: {e}")))?;
        let time = UnixTime::since_unix_epoch(std::time::Duration::from_secs(
            now.unix_timestamp().max(0) as u64,
        ));
        let result = cert.verify_for_usage(
            CA_SIGNATURE_ALGS,
            std::slice::from_ref(self.ca.anchor()),
            std::slice::from_ref(self.ca.intermediate()),
            time,
            webpki::KeyUsage::client_auth(),
            None,
            None,
        );
        match result {
            Ok(_) => Serial::from_bytes(cert.serial()).map_err(|_| {
                AuthorityError::CertificateUnknown("its serial is not one of ours".into())
            }),
            Err(webpki::Error::CertExpired { not_after, .. }) => {
                Err(AuthorityError::CertificateExpired(
                    OffsetDateTime::from_unix_timestamp(not_after.as_secs() as i64)
                        .map(rfc3339)
                        .unwrap_or_default(),
                ))
            }
            Err(webpki::Error::CertNotValidYet { .. }) => {
                Err(AuthorityError::CertificateNotYetValid)
            }
            Err(e) => Err(AuthorityError::CertificateUnknown(format!("{e:?}"))),
        }
    }

    /// Signs a leaf for `id` and the key of `csr`, returning its store
    /// record and the API answer.
    fn sign(
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
        let params = profile::agent_leaf(
            id,
            instance,
            &serial_bytes,
            not_before,
            not_after,
            self.ca.distribution(),
            &registration.scopes,
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

    /// Revokes certificates: one by serial, every live one of an instance,
    /// or every live one of an agent, an environment or a tenant. Revoking
    /// agents also disables them and voids their unused tokens, so that they
    /// can neither renew nor enroll until an admin enables them again.
    /// Returns once the revocations are durable and listed in the CRL.
    pub async fn revoke(
        &self,
        ctx: &RequestContext,
        admin: &Admin,
        req: RevokeRequest,
        now: OffsetDateTime,
    ) -> Result<RevokeResponse, AuthorityError> {
        let subject = match (&req.tenant, &req.env, &req.agent) {
            (Some(t), Some(e), Some(a)) => self.subject(t, e, a),
            _ => describe_target(&req),
        };
        let mut event = self.event(ctx, admin.actor(), "revoke", Some(subject), now);
        event.serial = req.serial.clone();
        // The inner call fills in what it learns (the agent of a serial),
        // for the refusal too.
        let result = self.revoke_inner(&mut event, admin, req, now).await;
        self.audit_refusal(event, &result).await;
        result
    }

    async fn revoke_inner(
        &self,
        event: &mut AuditEvent,
        admin: &Admin,
        req: RevokeRequest,
        now: OffsetDateTime,
    ) -> Result<RevokeResponse, AuthorityError> {
        let reason = match &req.reason {
            Some(r) => crl::parse_reason(r).map_err(AuthorityError::InvalidRequest)?,
            None => 0,
        };
        let instance = req.instance_id.clone();
        // The audit event's subject is the agent's SPIFFE ID when the
        // target is one agent's certificate or instance.
        let (target, what) = match (req.serial, req.instance_id, req.tenant, req.env, req.agent) {
            (Some(serial), None, None, None, None) => {
                let cert = self
                    .records
                    .cert(&serial)?
                    .ok_or_else(|| AuthorityError::CertificateNotFound(serial.clone()))?;
                let id = self.id_of_key(&cert.agent_key)?;
                event.subject = Some(id.to_string());
                event.not_after = Some(cert.not_after);
                admin.check_tenant(id.tenant().as_str())?;
                (RevokeTarget::Serial(serial.clone()), format!("certificate {serial}"))
            }
            (None, Some(instance), None, None, None) => {
                let certs = self.records.instance_certs(&instance, 1)?;
                let cert = certs
                    .first()
                    .ok_or_else(|| AuthorityError::InstanceNotFound(instance.clone()))?;
                let id = self.id_of_key(&cert.agent_key)?;
                event.subject = Some(id.to_string());
                admin.check_tenant(id.tenant().as_str())?;
                (RevokeTarget::Instance(instance.clone()), format!("instance {instance}"))
            }
            (None, None, Some(tenant), env, agent) => {
                Name::new(Part::Tenant, &tenant)?;
                admin.check_tenant(&tenant)?;
                let (prefix, exact) = match (env, agent) {
                    (Some(env), Some(agent)) => {
                        let id = self.agent_id(&tenant, &env, &agent)?;
                        (id.path_key(), true)
                    }
                    (Some(env), None) => {
                        Name::new(Part::Env, &env)?;
                        (format!("{tenant}/{env}/"), false)
                    }
                    (None, None) => (format!("{tenant}/"), false),
                    (None, Some(_)) => {
                        return Err(AuthorityError::InvalidRequest(
                            "revoking an agent needs its tenant, env and agent".into(),
                        ))
                    }
                };
                let what = prefix.trim_end_matches('/').to_owned();
                (RevokeTarget::Agents { prefix, exact }, what)
            }
            _ => {
                return Err(AuthorityError::InvalidRequest(
                    "give exactly one target: serial, instance_id, or tenant with optional env and agent".into(),
                ))
            }
        };
        let at = profile::whole_seconds(now);
        event.reason = Some(match event.serial {
            Some(_) => crl::reason_name(reason).to_owned(),
            None => format!("{what}: {}", crl::reason_name(reason)),
        });
        let change = Self::audited(Change::Revoke { target, reason, at }, event.clone());
        let summary = match self.writer.apply(change).await? {
            Ok(Applied::Revoked(summary)) => summary,
            Ok(other) => {
                return Err(AuthorityError::Internal(format!(
                    "revocation applied as {other:?}"
                )))
            }
            Err(Conflict::AgentNotFound) => return Err(AuthorityError::NoAgentMatches(what)),
            // Pruned between the check above and the commit.
            Err(conflict @ Conflict::CertificateNotFound) => {
                return Err(event
                    .serial
                    .clone()
                    .map_or_else(|| unexpected(conflict), AuthorityError::CertificateNotFound))
            }
            Err(conflict @ Conflict::InstanceNotFound) => {
                return Err(
                    instance.map_or_else(|| unexpected(conflict), AuthorityError::InstanceNotFound)
                )
            }
            Err(other) => return Err(unexpected(other)),
        };
        let serials: Vec<Serial> = summary.events.iter().map(|e| e.serial.clone()).collect();
        tracing::info!(
            admin = admin.name(),
            target = %what,
            reason = crl::reason_name(reason),
            revoked = serials.len(),
            agents_disabled = summary.agents_disabled,
            tokens_voided = summary.tokens_voided,
            "revoked"
        );
        // The writer publishes committed revocations itself, in order, even if
        // this request is gone; here we only wait for the CRL to list them.
        if let Some(max) = summary.events.iter().map(|e| e.seq).max() {
            if !self
                .revocations
                .wait_listed(max, std::time::Duration::from_secs(5))
                .await
            {
                tracing::warn!(seq = max, "the CRL did not list the revocation within 5 s");
            }
        }
        Ok(RevokeResponse {
            revoked: serials.len(),
            serials,
            agents_disabled: summary.agents_disabled,
            tokens_voided: summary.tokens_voided,
        })
    }

    /// A page of the revocation feed after `since`; waits up to `wait` for
    /// news when there is none.
    pub async fn revocation_feed(
        &self,
        since: u64,
        limit: usize,
        wait: std::time::Duration,
    ) -> RevocationPage {
        let page = self.revocations.feed_since(since, limit, wait).await;
        let events = page
            .events
            .into_iter()
            .filter_map(|e| {
                Some(WireRevocationEvent {
                    spiffe_id: self.id_of_key(&e.agent_key).ok()?,
                    seq: e.seq,
                    serial: e.serial,
                    instance_id: e.instance_id,
                    not_after: e.not_after,
                    reason: crl::reason_name(e.reason).to_owned(),
                    revoked_at: e.revoked_at,
                })
            })
            .collect();
        RevocationPage {
            events,
            latest: page.latest,
        }
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

    fn issued_from_record(&self, record: &CertRecord) -> Result<IssuedCertificate, AuthorityError> {
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

/// What a revocation request names, for the audit trail.
fn describe_target(req: &RevokeRequest) -> String {
    if let Some(serial) = &req.serial {
        return format!("serial {serial}");
    }
    if let Some(instance) = &req.instance_id {
        return format!("instance {instance}");
    }
    [
        req.tenant.as_deref(),
        req.env.as_deref(),
        req.agent.as_deref(),
    ]
    .iter()
    .flatten()
    .copied()
    .collect::<Vec<_>>()
    .join("/")
}

fn split_key(key: &str) -> Result<(&str, &str, &str), AuthorityError> {
    let mut parts = key.splitn(3, '/');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(t), Some(e), Some(a)) => Ok((t, e, a)),
        _ => Err(AuthorityError::Internal(format!(
            "stored agent key {key:?} is not tenant/env/agent"
        ))),
    }
}

fn token_usable(token: &TokenRecord, now: OffsetDateTime) -> Result<(), AuthorityError> {
    if token.voided {
        return Err(AuthorityError::TokenVoided);
    }
    if now >= token.expires_at {
        return Err(AuthorityError::TokenExpired);
    }
    if token.used >= token.max_uses {
        return Err(AuthorityError::TokenUsed);
    }
    Ok(())
}

fn check_text(field: &str, value: &str, max: usize) -> Result<(), AuthorityError> {
    if value.trim().is_empty() {
        return Err(AuthorityError::InvalidRequest(format!(
            "{field} must not be empty"
        )));
    }
    if value.len() > max {
        return Err(AuthorityError::InvalidRequest(format!(
            "{field} is {} bytes; the limit is {max}",
            value.len()
        )));
    }
    if value.chars().any(char::is_control) {
        return Err(AuthorityError::InvalidRequest(format!(
            "{field} must not contain control characters"
        )));
    }
    Ok(())
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.unix_timestamp().to_string())
}

fn admin_info(record: &AdminRecord) -> AdminInfo {
    AdminInfo {
        name: record.name.clone(),
        tenant: record.tenant.clone(),
        created_at: record.created_at,
    }
}

/// Longest admin name.
pub const MAX_ADMIN_NAME: usize = 64;

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

fn unexpected(conflict: Conflict) -> AuthorityError {
    AuthorityError::Internal(format!("unexpected store conflict: {conflict}"))
}
