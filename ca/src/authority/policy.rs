//! The issuance policy an operator sets when starting the CA: the
//! lifetimes a registration and a token may ask for, and how many uses a
//! token may have.

use time::Duration;

use super::AuthorityError;
use crate::state::issuance_limit::IssuanceLimits;

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
    /// Most certificates per agent and renewals per instance in one
    /// certificate lifetime.
    pub issuance_limits: IssuanceLimits,
    /// Which changes of registration wait for a second admin.
    pub review: Review,
}

/// Where promotions (a scope added, a longer lifetime) wait for a second
/// admin's approval ([`crate::state::review`]).
#[derive(Clone, Debug)]
pub struct Review {
    /// In every tenant.
    pub all_tenants: bool,
    /// In these tenants.
    pub tenants: Vec<String>,
    /// How long a change waits before it lapses.
    pub pending_ttl: Duration,
}

impl Default for Review {
    fn default() -> Self {
        Self {
            all_tenants: false,
            tenants: Vec::new(),
            pending_ttl: Duration::hours(24),
        }
    }
}

impl Review {
    /// Whether promotions of `tenant`'s agents wait for review.
    pub fn required_for(&self, tenant: &str) -> bool {
        self.all_tenants || self.tenants.iter().any(|t| t == tenant)
    }
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
            issuance_limits: IssuanceLimits::DEFAULT,
            review: Review::default(),
        }
    }
}

/// Why a policy is incoherent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// Certificates would live less than a second.
    #[error("the minimum certificate lifetime must be at least 1 second")]
    MinimumTooShort,
    /// The range is empty.
    #[error("the minimum certificate lifetime is longer than the maximum")]
    MinimumAboveMaximum,
    /// The default is outside the range.
    #[error("the default certificate lifetime is outside the allowed range")]
    DefaultOutOfRange,
}

impl Policy {
    /// Checks that the policy is coherent.
    pub fn validate(&self) -> Result<(), PolicyError> {
        if self.min_ttl < Duration::seconds(1) {
            return Err(PolicyError::MinimumTooShort);
        }
        if self.min_ttl > self.max_ttl {
            return Err(PolicyError::MinimumAboveMaximum);
        }
        if self.default_ttl < self.min_ttl || self.default_ttl > self.max_ttl {
            return Err(PolicyError::DefaultOutOfRange);
        }
        Ok(())
    }

    /// `secs` as a lifetime, if it is within `min`–`max`.
    pub(super) fn check_ttl(
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

    /// The lifetime of certificates for a registration asking for `secs`
    /// (the default when it does not ask).
    pub(super) fn certificate_ttl(&self, secs: Option<u64>) -> Result<Duration, AuthorityError> {
        match secs {
            Some(secs) => {
                Self::check_ttl("the certificate lifetime", secs, self.min_ttl, self.max_ttl)
            }
            None => Ok(self.default_ttl),
        }
    }

    /// The lifetime of a bootstrap token asking for `secs` (the default when
    /// it does not ask).
    pub(super) fn token_ttl(&self, secs: Option<u64>) -> Result<Duration, AuthorityError> {
        match secs {
            Some(secs) => Self::check_ttl(
                "the token lifetime",
                secs,
                Duration::seconds(1),
                self.max_token_ttl,
            ),
            None => Ok(self.default_token_ttl),
        }
    }

    /// The number of uses of a bootstrap token asking for `uses` (one when
    /// it does not ask).
    pub(super) fn token_uses(&self, uses: Option<u32>) -> Result<u32, AuthorityError> {
        let uses = uses.unwrap_or(1);
        if uses == 0 || uses > self.max_token_uses {
            return Err(AuthorityError::InvalidRequest(format!(
                "uses must be between 1 and {}",
                self.max_token_uses
            )));
        }
        Ok(uses)
    }
}
