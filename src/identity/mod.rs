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

mod agent_id;
mod instance;
mod names;
#[cfg(test)]
mod tests;
pub(crate) mod x509;

pub use agent_id::AgentId;
pub use instance::{InstanceId, InvalidInstanceId};
pub use names::{Name, TrustDomain};
