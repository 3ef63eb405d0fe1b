//! Agent identities and their SPIFFE IDs.
//!
//! One agent identity is a trust domain plus a tenant, an environment and an
//! agent id, written as one SPIFFE ID:
//!
//! ```text
//! spiffe://<trust-domain>/tenant/<tenant>/env/<env>/agent/<agent>
//! ```
//!
//! Parsing enforces the SPIFFE ID rules (scheme, trust domain characters,
//! no port, userinfo, query, fragment or percent-encoding, no empty, `.` or
//! `..` path segments) and agentca's stricter rules on top: exactly the path
//! shape above, and tenant, env and agent names of 1–63 characters of
//! `[a-z0-9._-]` that start with a letter or a digit. Lowercase only, so that
//! `Prod` and `prod` can never be two identities.
//!
//! ```
//! use agentca::identity::AgentId;
//!
//! let id: AgentId = "spiffe://example.org/tenant/acme/env/prod/agent/billing-bot"
//!     .parse()
//!     .unwrap();
//! assert_eq!(id.tenant().as_str(), "acme");
//! assert_eq!(id.env().as_str(), "prod");
//! assert_eq!(id.agent().as_str(), "billing-bot");
//! assert_eq!(id.to_string(), "spiffe://example.org/tenant/acme/env/prod/agent/billing-bot");
//!
//! assert!("spiffe://example.org/tenant/Acme/env/prod/agent/a".parse::<AgentId>().is_err());
//! ```

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Longest trust domain name the SPIFFE ID specification allows, in bytes.
pub const MAX_TRUST_DOMAIN_LEN: usize = 255;
/// Longest SPIFFE ID the SPIFFE ID specification allows, in bytes.
pub const MAX_SPIFFE_ID_LEN: usize = 2048;
/// Longest tenant, env or agent name, in bytes.
pub const MAX_NAME_LEN: usize = 63;

const SCHEME: &str = "spiffe://";

/// Which part of an identity an error is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    /// The trust domain (the SPIFFE ID's authority).
    TrustDomain,
    /// The tenant name.
    Tenant,
    /// The environment name.
    Env,
    /// The agent name.
    Agent,
}

impl fmt::Display for Part {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Part::TrustDomain => "trust domain",
            Part::Tenant => "tenant",
            Part::Env => "env",
            Part::Agent => "agent",
        })
    }
}

/// Why a SPIFFE ID, trust domain or name was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// The input is empty.
    #[error("the SPIFFE ID is empty")]
    Empty,
    /// The SPIFFE ID is longer than [`MAX_SPIFFE_ID_LEN`].
    #[error("the SPIFFE ID is {0} bytes long; the limit is {MAX_SPIFFE_ID_LEN}")]
    TooLong(usize),
    /// The SPIFFE ID does not start with `spiffe://` (the scheme is lowercase).
    #[error("a SPIFFE ID starts with \"spiffe://\"")]
    WrongScheme,
    /// The SPIFFE ID has a query (`?`).
    #[error("a SPIFFE ID has no query part")]
    Query,
    /// The SPIFFE ID has a fragment (`#`).
    #[error("a SPIFFE ID has no fragment")]
    Fragment,
    /// The SPIFFE ID has percent-encoded characters.
    #[error("a SPIFFE ID has no percent-encoded characters")]
    PercentEncoded,
    /// The authority carries userinfo (`user@`).
    #[error("a SPIFFE ID's trust domain has no userinfo")]
    Userinfo,
    /// The authority carries a port (`:8443`).
    #[error("a SPIFFE ID's trust domain has no port")]
    Port,
    /// A part is empty.
    #[error("the {0} is empty")]
    EmptyPart(Part),
    /// A part is longer than its limit.
    #[error("the {part} is {len} bytes long; the limit is {max}")]
    PartTooLong {
        /// Which part.
        part: Part,
        /// Its length in bytes.
        len: usize,
        /// The limit in bytes.
        max: usize,
    },
    /// A part has an uppercase letter: identities are lowercase only.
    #[error("the {0} has an uppercase letter; identities are lowercase")]
    Uppercase(Part),
    /// A part has a character outside its allowed set.
    #[error("the {part} has the character {ch:?}, which is not allowed")]
    InvalidChar {
        /// Which part.
        part: Part,
        /// The first offending character.
        ch: char,
    },
    /// A name does not start with a letter or a digit.
    #[error("the {0} must start with a letter or a digit")]
    BadStart(Part),
    /// The path has an empty segment (`//` or a trailing `/`).
    #[error("the SPIFFE ID's path has an empty segment")]
    EmptySegment,
    /// The path has a `.` or `..` segment.
    #[error("the SPIFFE ID's path has a \".\" or \"..\" segment")]
    DotSegment,
    /// The path is not `/tenant/<t>/env/<e>/agent/<a>`.
    #[error("the SPIFFE ID's path must be /tenant/<tenant>/env/<env>/agent/<agent>")]
    WrongShape,
}

/// A SPIFFE trust domain, such as `example.org`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TrustDomain(String);

impl TrustDomain {
    /// Checks `name` against the SPIFFE trust domain rules: 1–255 bytes of
    /// lowercase letters, digits, `.`, `-` and `_`.
    ///
    /// ```
    /// use agentca::identity::TrustDomain;
    /// assert!(TrustDomain::new("agents.example.org").is_ok());
    /// assert!(TrustDomain::new("Example.org").is_err());
    /// ```
    pub fn new(name: &str) -> Result<Self, IdError> {
        check_trust_domain(name)?;
        Ok(Self(name.to_owned()))
    }

    /// The trust domain name.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The `spiffe://<trust-domain>` prefix of every ID in this trust domain.
    pub fn id_prefix(&self) -> String {
        format!("{SCHEME}{}", self.0)
    }
}

impl fmt::Display for TrustDomain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for TrustDomain {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        Self::new(s)
    }
}

fn check_trust_domain(name: &str) -> Result<(), IdError> {
    let part = Part::TrustDomain;
    if name.is_empty() {
        return Err(IdError::EmptyPart(part));
    }
    if name.len() > MAX_TRUST_DOMAIN_LEN {
        return Err(IdError::PartTooLong {
            part,
            len: name.len(),
            max: MAX_TRUST_DOMAIN_LEN,
        });
    }
    if name.contains('@') {
        return Err(IdError::Userinfo);
    }
    for ch in name.chars() {
        match ch {
            'a'..='z' | '0'..='9' | '.' | '-' | '_' => {}
            'A'..='Z' => return Err(IdError::Uppercase(part)),
            ':' => return Err(IdError::Port),
            '%' => return Err(IdError::PercentEncoded),
            ch => return Err(IdError::InvalidChar { part, ch }),
        }
    }
    Ok(())
}

/// A tenant, env or agent name: 1–63 bytes of `[a-z0-9._-]`, starting with
/// a letter or a digit.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Name(String);

impl Name {
    /// Checks `name` as the given part of an identity.
    ///
    /// ```
    /// use agentca::identity::{Name, Part};
    /// assert!(Name::new(Part::Agent, "billing-bot.v2").is_ok());
    /// assert!(Name::new(Part::Agent, "..").is_err());
    /// ```
    pub fn new(part: Part, name: &str) -> Result<Self, IdError> {
        check_name(part, name)?;
        Ok(Self(name.to_owned()))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn check_name(part: Part, name: &str) -> Result<(), IdError> {
    if name.is_empty() {
        return Err(IdError::EmptyPart(part));
    }
    if name == "." || name == ".." {
        return Err(IdError::DotSegment);
    }
    if name.len() > MAX_NAME_LEN {
        return Err(IdError::PartTooLong {
            part,
            len: name.len(),
            max: MAX_NAME_LEN,
        });
    }
    for ch in name.chars() {
        match ch {
            'a'..='z' | '0'..='9' | '.' | '-' | '_' => {}
            'A'..='Z' => return Err(IdError::Uppercase(part)),
            '%' => return Err(IdError::PercentEncoded),
            ch => return Err(IdError::InvalidChar { part, ch }),
        }
    }
    if !name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit()) {
        return Err(IdError::BadStart(part));
    }
    Ok(())
}

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

/// Identifies one running copy of an agent: chosen at random on enrollment
/// and kept across renewals. It is carried in the certificate subject's
/// serialNumber attribute as 32 lowercase hex digits.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct InstanceId(String);

/// Why an instance id was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("an instance id is 32 lowercase hex digits")]
pub struct InvalidInstanceId;

impl InstanceId {
    /// A new random instance id from the operating system's RNG.
    pub fn random() -> Self {
        let mut bytes = [0u8; 16];
        // The OS RNG failing is not something a caller can handle.
        aws_lc_rs::rand::fill(&mut bytes).expect("the operating system RNG failed");
        Self(crate::hex(&bytes))
    }

    /// Checks an instance id: 32 lowercase hex digits.
    ///
    /// ```
    /// use agentca::identity::InstanceId;
    /// assert!(InstanceId::parse("0123456789abcdef0123456789abcdef").is_ok());
    /// assert!(InstanceId::parse("not-an-instance").is_err());
    /// ```
    pub fn parse(s: &str) -> Result<Self, InvalidInstanceId> {
        if s.len() == 32 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            Ok(Self(s.to_owned()))
        } else {
            Err(InvalidInstanceId)
        }
    }

    /// The instance id.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for InstanceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for InstanceId {
    type Err = InvalidInstanceId;
    fn from_str(s: &str) -> Result<Self, InvalidInstanceId> {
        Self::parse(s)
    }
}

impl Serialize for InstanceId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for InstanceId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "spiffe://example.org/tenant/acme/env/prod/agent/billing-bot";

    fn err(id: &str) -> IdError {
        AgentId::parse(id).expect_err(id)
    }

    #[test]
    fn a_well_formed_id_round_trips() {
        let id = AgentId::parse(GOOD).unwrap();
        assert_eq!(id.trust_domain().as_str(), "example.org");
        assert_eq!(id.tenant().as_str(), "acme");
        assert_eq!(id.env().as_str(), "prod");
        assert_eq!(id.agent().as_str(), "billing-bot");
        assert_eq!(id.to_string(), GOOD);
        assert_eq!(id.path_key(), "acme/prod/billing-bot");
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, format!("\"{GOOD}\""));
        assert_eq!(serde_json::from_str::<AgentId>(&json).unwrap(), id);
    }

    #[test]
    fn names_may_use_dots_dashes_underscores_and_digits() {
        let id = AgentId::parse("spiffe://a_b-c.d/tenant/0t/env/e.v_1/agent/a-b.c_d9").unwrap();
        assert_eq!(id.env().as_str(), "e.v_1");
        assert!(AgentId::new("td", "t", "e", &"a".repeat(63)).is_ok());
    }

    #[test]
    fn empty_input_is_refused() {
        assert_eq!(err(""), IdError::Empty);
    }

    #[test]
    fn empty_parts_are_refused() {
        assert_eq!(
            err("spiffe:///tenant/t/env/e/agent/a"),
            IdError::EmptyPart(Part::TrustDomain)
        );
        assert_eq!(
            err("spiffe://td/tenant//env/e/agent/a"),
            IdError::EmptySegment
        );
        assert_eq!(
            err("spiffe://td/tenant/t/env/e/agent/"),
            IdError::EmptySegment
        );
        assert_eq!(
            AgentId::new("td", "", "e", "a").unwrap_err(),
            IdError::EmptyPart(Part::Tenant)
        );
        assert_eq!(
            AgentId::new("td", "t", "", "a").unwrap_err(),
            IdError::EmptyPart(Part::Env)
        );
        assert_eq!(
            AgentId::new("td", "t", "e", "").unwrap_err(),
            IdError::EmptyPart(Part::Agent)
        );
        assert_eq!(
            AgentId::new("", "t", "e", "a").unwrap_err(),
            IdError::EmptyPart(Part::TrustDomain)
        );
    }

    #[test]
    fn uppercase_is_refused_everywhere() {
        assert_eq!(
            err("SPIFFE://td/tenant/t/env/e/agent/a"),
            IdError::WrongScheme
        );
        assert_eq!(
            err("spiffe://TD/tenant/t/env/e/agent/a"),
            IdError::Uppercase(Part::TrustDomain)
        );
        assert_eq!(
            err("spiffe://td/tenant/T/env/e/agent/a"),
            IdError::Uppercase(Part::Tenant)
        );
        assert_eq!(
            err("spiffe://td/tenant/t/env/Prod/agent/a"),
            IdError::Uppercase(Part::Env)
        );
        assert_eq!(
            err("spiffe://td/tenant/t/env/e/agent/Bot"),
            IdError::Uppercase(Part::Agent)
        );
        assert_eq!(
            err("spiffe://td/Tenant/t/env/e/agent/a"),
            IdError::WrongShape
        );
    }

    #[test]
    fn dot_segments_are_refused() {
        assert_eq!(
            err("spiffe://td/tenant/./env/e/agent/a"),
            IdError::DotSegment
        );
        assert_eq!(
            err("spiffe://td/tenant/t/env/../agent/a"),
            IdError::DotSegment
        );
        assert_eq!(
            err("spiffe://td/./tenant/t/env/e/agent/a"),
            IdError::DotSegment
        );
        assert_eq!(
            AgentId::new("td", "t", "e", "..").unwrap_err(),
            IdError::DotSegment
        );
        // A name may contain dots, but may not start with one.
        assert_eq!(
            err("spiffe://td/tenant/.t/env/e/agent/a"),
            IdError::BadStart(Part::Tenant)
        );
        assert_eq!(
            err("spiffe://td/tenant/t/env/e/agent/-a"),
            IdError::BadStart(Part::Agent)
        );
        assert_eq!(
            err("spiffe://td/tenant/t/env/_e/agent/a"),
            IdError::BadStart(Part::Env)
        );
    }

    #[test]
    fn percent_encoding_is_refused() {
        assert_eq!(
            err("spiffe://td/tenant/t%41/env/e/agent/a"),
            IdError::PercentEncoded
        );
        assert_eq!(
            err("spiffe://t%64/tenant/t/env/e/agent/a"),
            IdError::PercentEncoded
        );
        assert_eq!(
            err("spiffe://td/tenant/t/env/e/agent/a%2Fb"),
            IdError::PercentEncoded
        );
    }

    #[test]
    fn port_userinfo_query_and_fragment_are_refused() {
        assert_eq!(
            err("spiffe://td:8443/tenant/t/env/e/agent/a"),
            IdError::Port
        );
        assert_eq!(
            err("spiffe://user@td/tenant/t/env/e/agent/a"),
            IdError::Userinfo
        );
        assert_eq!(
            err("spiffe://user:pw@td/tenant/t/env/e/agent/a"),
            IdError::Userinfo
        );
        assert_eq!(
            err("spiffe://td/tenant/t/env/e/agent/a?x=1"),
            IdError::Query
        );
        assert_eq!(
            err("spiffe://td/tenant/t/env/e/agent/a#frag"),
            IdError::Fragment
        );
        assert_eq!(err("spiffe://td?/tenant/t/env/e/agent/a"), IdError::Query);
    }

    #[test]
    fn other_schemes_are_refused() {
        assert_eq!(
            err("https://td/tenant/t/env/e/agent/a"),
            IdError::WrongScheme
        );
        assert_eq!(
            err("spiffe:/td/tenant/t/env/e/agent/a"),
            IdError::WrongScheme
        );
        assert_eq!(
            err("spiffe:td/tenant/t/env/e/agent/a"),
            IdError::WrongScheme
        );
        assert_eq!(err("td/tenant/t/env/e/agent/a"), IdError::WrongScheme);
        assert_eq!(
            err(" spiffe://td/tenant/t/env/e/agent/a"),
            IdError::WrongScheme
        );
    }

    #[test]
    fn wrong_number_or_names_of_segments_are_refused() {
        for id in [
            "spiffe://td",
            "spiffe://td/tenant/t",
            "spiffe://td/tenant/t/env/e",
            "spiffe://td/tenant/t/env/e/agent",
            "spiffe://td/tenant/t/env/e/agent/a/extra",
            "spiffe://td/tenant/t/env/e/agent/a/x/y",
            "spiffe://td/tenants/t/env/e/agent/a",
            "spiffe://td/tenant/t/environment/e/agent/a",
            "spiffe://td/tenant/t/env/e/workload/a",
            "spiffe://td/env/e/tenant/t/agent/a",
        ] {
            assert_eq!(err(id), IdError::WrongShape, "{id}");
        }
        assert_eq!(err("spiffe://td/"), IdError::EmptySegment);
        assert_eq!(
            err("spiffe://td/tenant/t/env/e/agent/a/"),
            IdError::EmptySegment
        );
    }

    #[test]
    fn characters_outside_the_allowed_set_are_refused() {
        assert_eq!(
            err("spiffe://td/tenant/t/env/e/agent/a b"),
            IdError::InvalidChar {
                part: Part::Agent,
                ch: ' '
            }
        );
        assert_eq!(
            err("spiffe://td/tenant/t+1/env/e/agent/a"),
            IdError::InvalidChar {
                part: Part::Tenant,
                ch: '+'
            }
        );
        assert_eq!(
            err("spiffe://tö/tenant/t/env/e/agent/a"),
            IdError::InvalidChar {
                part: Part::TrustDomain,
                ch: 'ö'
            }
        );
        assert_eq!(
            err("spiffe://td/tenant/t/env/é/agent/a"),
            IdError::InvalidChar {
                part: Part::Env,
                ch: 'é'
            }
        );
    }

    #[test]
    fn over_long_parts_and_ids_are_refused() {
        let long = "a".repeat(64);
        assert_eq!(
            AgentId::new("td", &long, "e", "a").unwrap_err(),
            IdError::PartTooLong {
                part: Part::Tenant,
                len: 64,
                max: 63
            }
        );
        assert_eq!(
            err(&format!("spiffe://td/tenant/t/env/{long}/agent/a")),
            IdError::PartTooLong {
                part: Part::Env,
                len: 64,
                max: 63
            }
        );
        assert_eq!(
            err(&format!("spiffe://td/tenant/t/env/e/agent/{long}")),
            IdError::PartTooLong {
                part: Part::Agent,
                len: 64,
                max: 63
            }
        );
        let long_td = "d".repeat(256);
        assert_eq!(
            err(&format!("spiffe://{long_td}/tenant/t/env/e/agent/a")),
            IdError::PartTooLong {
                part: Part::TrustDomain,
                len: 256,
                max: 255
            }
        );
        assert!(AgentId::new(&"d".repeat(255), "t", "e", "a").is_ok());
        let huge = format!("spiffe://td/tenant/t/env/e/agent/{}", "a".repeat(2048));
        assert_eq!(err(&huge), IdError::TooLong(huge.len()));
    }

    #[test]
    fn deserializing_checks_the_id() {
        let bad = "\"spiffe://td/tenant/T/env/e/agent/a\"";
        assert!(serde_json::from_str::<AgentId>(bad).is_err());
    }

    #[test]
    fn instance_ids_are_random_lowercase_hex() {
        let a = InstanceId::random();
        let b = InstanceId::random();
        assert_ne!(a, b);
        assert_eq!(InstanceId::parse(a.as_str()).unwrap(), a);
        assert!(InstanceId::parse("0123456789ABCDEF0123456789ABCDEF").is_err());
        assert!(InstanceId::parse("0123").is_err());
        assert!(serde_json::from_str::<InstanceId>("\"xyz\"").is_err());
    }
}
