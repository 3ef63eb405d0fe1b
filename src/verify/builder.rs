//! Building a [`Verifier`]: secure by default, each weakening a method
//! named for what it lets through, checked whole by `build`.

use super::*;

type Predicate = Arc<dyn Fn(&PeerIdentity) -> bool + Send + Sync>;

/// The service's policy: which agents of the trust domain it accepts.
#[derive(Clone, Default)]
pub(super) struct Policy {
    pub(super) tenants: Vec<String>,
    pub(super) envs: Vec<String>,
    pub(super) agents: Vec<String>,
    pub(super) agent_prefixes: Vec<String>,
    pub(super) predicates: Vec<Predicate>,
}

impl Policy {
    pub(super) fn allows(&self, peer: &PeerIdentity) -> bool {
        let id = peer.id();
        let any = |list: &[String], value: &str| list.is_empty() || list.iter().any(|x| x == value);
        let agent_ok = (self.agents.is_empty() && self.agent_prefixes.is_empty())
            || self.agents.iter().any(|a| a == id.agent().as_str())
            || self
                .agent_prefixes
                .iter()
                .any(|p| id.agent().as_str().starts_with(p.as_str()));
        any(&self.tenants, id.tenant().as_str())
            && any(&self.envs, id.env().as_str())
            && agent_ok
            && self.predicates.iter().all(|p| p(peer))
    }
}

pub(super) enum Revocation {
    Checked {
        cache: Arc<RevocationCache>,
        max_staleness: Duration,
        fail_open: bool,
    },
    Unchecked,
}

impl Verifier {
    /// A builder trusting `bundle` for agents of `trust_domain`.
    ///
    /// ```
    /// use agentca::bundle::TrustBundle;
    /// use agentca::identity::TrustDomain;
    /// use agentca::verify::{Usage, Verifier, VerifyError};
    ///
    /// // A CA and an agent certificate, as agentca would issue them.
    /// let ca_key = rcgen::KeyPair::generate()?;
    /// let mut ca_params = rcgen::CertificateParams::default();
    /// ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    /// let ca_cert = ca_params.self_signed(&ca_key)?;
    /// let issuer = rcgen::Issuer::new(ca_params, ca_key);
    /// let mut leaf = rcgen::CertificateParams::default();
    /// leaf.subject_alt_names =
    ///     vec![rcgen::SanType::URI("spiffe://example.org/tenant/acme/env/prod/agent/bot".try_into()?)];
    /// leaf.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    /// let leaf = leaf.signed_by(&rcgen::KeyPair::generate()?, &issuer)?;
    ///
    /// let bundle = TrustBundle::from_der(vec![ca_cert.der().clone()])?;
    /// let verifier = Verifier::builder(bundle.clone(), TrustDomain::new("example.org")?)
    ///     .allow_tenant("acme")
    ///     .without_revocation_checks()
    ///     .build()?;
    /// let now = time::OffsetDateTime::now_utc();
    /// let peer = verifier.verify_peer(&[leaf.der().clone()], Usage::Client, now)?;
    /// assert_eq!(peer.spiffe_id.agent().as_str(), "bot");
    ///
    /// // Another tenant's service refuses the same agent.
    /// let elsewhere = Verifier::builder(bundle, TrustDomain::new("example.org")?)
    ///     .allow_tenant("globex")
    ///     .without_revocation_checks()
    ///     .build()?;
    /// let refused = elsewhere.verify_peer(&[leaf.der().clone()], Usage::Client, now);
    /// assert!(matches!(refused, Err(VerifyError::PolicyDenied(_))));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn builder(bundle: TrustBundle, trust_domain: TrustDomain) -> VerifierBuilder {
        VerifierBuilder {
            bundle,
            trust_domain,
            policy: Policy::default(),
            cache: None,
            unchecked: false,
            max_staleness: DEFAULT_MAX_STALENESS,
            fail_open: false,
        }
    }
}

/// Builds a [`Verifier`]: secure by default, every weakening explicit.
pub struct VerifierBuilder {
    bundle: TrustBundle,
    trust_domain: TrustDomain,
    policy: Policy,
    cache: Option<Arc<RevocationCache>>,
    unchecked: bool,
    max_staleness: Duration,
    fail_open: bool,
}

impl VerifierBuilder {
    /// Accept agents of this tenant (repeatable; all tenants when never
    /// called).
    pub fn allow_tenant(mut self, tenant: &str) -> Self {
        self.policy.tenants.push(tenant.to_owned());
        self
    }

    /// Accept agents of this environment (repeatable; all environments when
    /// never called).
    pub fn allow_env(mut self, env: &str) -> Self {
        self.policy.envs.push(env.to_owned());
        self
    }

    /// Accept the agent with this name (repeatable; with
    /// [`allow_agent_prefix`](Self::allow_agent_prefix), all agents when
    /// neither is called).
    pub fn allow_agent(mut self, agent: &str) -> Self {
        self.policy.agents.push(agent.to_owned());
        self
    }

    /// Accept agents whose name starts with `prefix` (repeatable).
    pub fn allow_agent_prefix(mut self, prefix: &str) -> Self {
        self.policy.agent_prefixes.push(prefix.to_owned());
        self
    }

    /// Accept only peers for which `predicate` returns true, in addition to
    /// the rules above (repeatable: all predicates must agree).
    pub fn require(
        mut self,
        predicate: impl Fn(&PeerIdentity) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.policy.predicates.push(Arc::new(predicate));
        self
    }

    /// Check revocation against `cache` (keep it current with
    /// [`feed`](crate::verify) or CRLs).
    pub fn revocation(mut self, cache: Arc<RevocationCache>) -> Self {
        self.cache = Some(cache);
        self
    }

    /// Refuse when the revocation data is older than `bound` (default
    /// [`DEFAULT_MAX_STALENESS`]).
    pub fn max_staleness(mut self, bound: Duration) -> Self {
        self.max_staleness = bound;
        self
    }

    /// **Weakening.** Accept peers when the revocation data is stale, instead
    /// of refusing everyone. A revoked agent stays accepted for as long as
    /// this service cannot reach the CA; use it only where availability
    /// matters more than cutting agents off.
    pub fn fail_open_when_stale(mut self) -> Self {
        self.fail_open = true;
        self
    }

    /// **Weakening.** Do not check revocation at all: a revoked certificate
    /// is accepted until it expires (minutes, with agentca). For tests and
    /// for services that check revocation some other way.
    pub fn without_revocation_checks(mut self) -> Self {
        self.unchecked = true;
        self
    }

    /// Checks the whole and builds the verifier.
    pub fn build(self) -> Result<Arc<Verifier>, BuildError> {
        use crate::identity::{Name, Part};
        for t in &self.policy.tenants {
            Name::new(Part::Tenant, t)?;
        }
        for e in &self.policy.envs {
            Name::new(Part::Env, e)?;
        }
        for a in &self.policy.agents {
            Name::new(Part::Agent, a)?;
        }
        if self.max_staleness <= Duration::ZERO {
            return Err(BuildError::Staleness);
        }
        let revocation = match (self.cache, self.unchecked) {
            (Some(cache), _) => Revocation::Checked {
                cache,
                max_staleness: self.max_staleness,
                fail_open: self.fail_open,
            },
            (None, true) => Revocation::Unchecked,
            (None, false) => return Err(BuildError::NoRevocationSource),
        };
        let anchors = self
            .bundle
            .roots()
            .iter()
            .map(|root| {
                webpki::anchor_from_trusted_cert(root)
                    .map(|a| a.to_owned())
                    .map_err(|e| BuildError::Bundle(e.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let hints = self
            .bundle
            .roots()
            .iter()
            .filter_map(|root| {
                use x509_parser::prelude::FromDer;
                let (_, cert) = x509_parser::certificate::X509Certificate::from_der(root).ok()?;
                Some(DistinguishedName::from(cert.subject().as_raw().to_vec()))
            })
            .collect();
        Ok(Arc::new(Verifier {
            trust_domain: self.trust_domain,
            anchors,
            hints,
            bundle: self.bundle,
            policy: self.policy,
            revocation,
            provider: Arc::new(rustls::crypto::aws_lc_rs::default_provider()),
            handshaken: Default::default(),
        }))
    }
}
