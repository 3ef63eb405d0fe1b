//! An agent's identity: trust domain, tenant, environment and agent,
//! written and parsed as one SPIFFE ID.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::names::check_trust_domain;
use super::*;

/// One agent identity: trust domain, tenant, environment and agent.
///
/// It parses from and formats to its SPIFFE ID, and serializes as that
/// string.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AgentId {
    trust_domain: TrustDomain,
    tenant: Name,
    env: Name,
    agent: Name,
}

impl AgentId {
    /// Builds an identity from its parts, checking each.
    ///
    /// ```
    /// use agentca::identity::AgentId;
    /// let id = AgentId::new("example.org", "acme", "prod", "billing-bot").unwrap();
    /// assert_eq!(id.to_string(), "spiffe://example.org/tenant/acme/env/prod/agent/billing-bot");
    /// ```
    pub fn new(trust_domain: &str, tenant: &str, env: &str, agent: &str) -> Result<Self, IdError> {
        Ok(Self::from_parts(
            TrustDomain::new(trust_domain)?,
            Name::new(Part::Tenant, tenant)?,
            Name::new(Part::Env, env)?,
            Name::new(Part::Agent, agent)?,
        ))
    }

    /// Builds an identity from parts that are already checked.
    pub fn from_parts(trust_domain: TrustDomain, tenant: Name, env: Name, agent: Name) -> Self {
        Self {
            trust_domain,
            tenant,
            env,
            agent,
        }
    }

    /// Parses a SPIFFE ID of the form
    /// `spiffe://<trust-domain>/tenant/<t>/env/<e>/agent/<a>`.
    pub fn parse(id: &str) -> Result<Self, IdError> {
        if id.is_empty() {
            return Err(IdError::Empty);
        }
        if id.len() > MAX_SPIFFE_ID_LEN {
            return Err(IdError::TooLong(id.len()));
        }
        let rest = id.strip_prefix(SCHEME).ok_or(IdError::WrongScheme)?;
        // Query, fragment and percent-encoding are refused wherever they
        // appear, before the authority and path are split.
        if rest.contains('?') {
            return Err(IdError::Query);
        }
        if rest.contains('#') {
            return Err(IdError::Fragment);
        }
        if rest.contains('%') {
            return Err(IdError::PercentEncoded);
        }
        let (authority, path) = match rest.find('/') {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        check_trust_domain(authority)?;

        let segments: Vec<&str> = match path.strip_prefix('/') {
            Some(p) => p.split('/').collect(),
            None => return Err(IdError::WrongShape),
        };
        for segment in &segments {
            if segment.is_empty() {
                return Err(IdError::EmptySegment);
            }
            if *segment == "." || *segment == ".." {
                return Err(IdError::DotSegment);
            }
        }
        let [kt, tenant, ke, env, ka, agent] = segments[..] else {
            return Err(IdError::WrongShape);
        };
        if (kt, ke, ka) != ("tenant", "env", "agent") {
            return Err(IdError::WrongShape);
        }
        Ok(Self {
            trust_domain: TrustDomain(authority.to_owned()),
            tenant: Name::new(Part::Tenant, tenant)?,
            env: Name::new(Part::Env, env)?,
            agent: Name::new(Part::Agent, agent)?,
        })
    }

    /// The trust domain.
    pub fn trust_domain(&self) -> &TrustDomain {
        &self.trust_domain
    }

    /// The tenant.
    pub fn tenant(&self) -> &Name {
        &self.tenant
    }

    /// The environment.
    pub fn env(&self) -> &Name {
        &self.env
    }

    /// The agent name: the class of agent, shared by all its instances.
    pub fn agent(&self) -> &Name {
        &self.agent
    }

    /// `tenant/env/agent`: the identity within its trust domain, as used in
    /// admin API paths and store keys.
    pub fn path_key(&self) -> String {
        format!("{}/{}/{}", self.tenant, self.env, self.agent)
    }
}

impl fmt::Display for AgentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{SCHEME}{}/tenant/{}/env/{}/agent/{}",
            self.trust_domain, self.tenant, self.env, self.agent
        )
    }
}

impl FromStr for AgentId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        Self::parse(s)
    }
}

impl Serialize for AgentId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for AgentId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}
