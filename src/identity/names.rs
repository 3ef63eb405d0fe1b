//! The parts of an identity that are names: the trust domain (SPIFFE's
//! rules) and tenant, env and agent names (agentca's stricter rules).
//! Nothing here knows SPIFFE ID paths; [`super::AgentId`] puts names together.

use std::fmt;
use std::str::FromStr;

use super::*;

/// A SPIFFE trust domain, such as `example.org`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TrustDomain(pub(super) String);

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

pub(super) fn check_trust_domain(name: &str) -> Result<(), IdError> {
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
pub struct Name(pub(super) String);

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
