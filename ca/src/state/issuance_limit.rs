//! How many certificates an agent, and one instance's chain of renewals,
//! may be issued per certificate lifetime.
//!
//! Without a limit, one agent renewing in a tight loop holds thousands of
//! live certificates: each is one more serial in every CRL and one more
//! record to keep. Two counts bound it, each over a window as long as the
//! certificates' lifetime:
//!
//! - per agent ([`IssuanceLimits::per_agent`]): enrollments and renewals
//!   of all its instances;
//! - per instance ([`IssuanceLimits::renewals_per_instance`]): renewals
//!   along one chain (a renewal carries its chain's window on).
//!
//! A window starts with the first issuance after the previous one ended,
//! so at most twice the limit can be live at once. Pure functions of the
//! counts and the time: the authority checks before it signs, and the
//! change again inside its transaction.

use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};

pub use super::records::Window;
use super::records::{AgentRecord, CertRecord};

/// The limits an operator sets (`serve --max-certs-per-agent`,
/// `--max-renewals-per-instance`), per certificate lifetime.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IssuanceLimits {
    /// Certificates issued to one agent (all its instances).
    pub per_agent: u32,
    /// Renewals along one instance's chain.
    pub renewals_per_instance: u32,
}

impl IssuanceLimits {
    /// Defaults for minutes-lived certificates: an agent of 50 instances
    /// renewing twice a lifetime fits; a loop does not.
    pub const DEFAULT: Self = Self {
        per_agent: 100,
        renewals_per_instance: 6,
    };

    /// No limit: what changes written before limits existed replay with.
    pub const NONE: Self = Self {
        per_agent: u32::MAX,
        renewals_per_instance: u32::MAX,
    };
}

impl Default for IssuanceLimits {
    fn default() -> Self {
        Self::NONE
    }
}

/// The limit was reached: no issuance before `retry_at`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{count} certificates issued since {start}: the limit; retry at {retry_at}")]
pub struct LimitReached {
    /// Issuances in the window.
    pub count: u32,
    /// When the window began.
    pub start: OffsetDateTime,
    /// When it ends.
    pub retry_at: OffsetDateTime,
}

/// Whether one more issuance fits in `window` (of length `lifetime`) under
/// `max` at `now`: the window with it counted, or when to retry.
pub fn admit(
    window: Window,
    lifetime: Duration,
    max: u32,
    now: OffsetDateTime,
) -> Result<Window, LimitReached> {
    let start =
        OffsetDateTime::from_unix_timestamp(window.start).unwrap_or(OffsetDateTime::UNIX_EPOCH);
    let ends = start + lifetime.max(Duration::SECOND);
    if window.count == 0 || now >= ends || now < start {
        return Ok(Window {
            start: now.unix_timestamp(),
            count: 1,
        });
    }
    if window.count >= max {
        return Err(LimitReached {
            count: window.count,
            start,
            retry_at: ends,
        });
    }
    Ok(Window {
        start: window.start,
        count: window.count + 1,
    })
}

/// Whether `agent` may be issued one more certificate at `now`, by
/// enrollment (`renewing` is `None`) or by renewing `renewing`: the
/// agent's window and the new certificate's chain window with it counted.
/// Both windows are as long as the agent's certificate lifetime.
pub fn admit_issuance(
    agent: &AgentRecord,
    renewing: Option<&CertRecord>,
    limits: IssuanceLimits,
    now: OffsetDateTime,
) -> Result<(Window, Window), LimitReached> {
    let lifetime = Duration::seconds(i64::try_from(agent.ttl_secs).unwrap_or(i64::MAX));
    let chain = match renewing {
        Some(old) => admit(old.renewals, lifetime, limits.renewals_per_instance, now)?,
        None => Window::default(),
    };
    let issued = admit(agent.issued, lifetime, limits.per_agent, now)?;
    Ok((issued, chain))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::tests::t0;

    const LIFE: Duration = Duration::minutes(5);

    #[test]
    fn issuances_count_up_to_the_limit_then_wait_for_the_window_to_end() {
        let mut w = Window::default();
        for i in 0..3 {
            w = admit(w, LIFE, 3, t0() + Duration::seconds(i)).unwrap();
        }
        assert_eq!(
            w,
            Window {
                start: t0().unix_timestamp(),
                count: 3
            }
        );
        let refused = admit(w, LIFE, 3, t0() + Duration::seconds(10)).unwrap_err();
        assert_eq!(refused.retry_at, t0() + LIFE);
        assert_eq!(refused.count, 3);
        // One second before the window ends: still refused; at its end, a
        // new window.
        assert!(admit(w, LIFE, 3, t0() + LIFE - Duration::SECOND).is_err());
        let next = admit(w, LIFE, 3, t0() + LIFE).unwrap();
        assert_eq!(
            (next.start, next.count),
            ((t0() + LIFE).unix_timestamp(), 1)
        );
    }

    #[test]
    fn a_record_without_a_window_and_no_limit_always_admit() {
        assert_eq!(admit(Window::default(), LIFE, 1, t0()).unwrap().count, 1);
        let mut w = Window::default();
        for _ in 0..10_000 {
            w = admit(w, LIFE, IssuanceLimits::NONE.per_agent, t0()).unwrap();
        }
        assert_eq!(w.count, 10_000);
    }

    #[test]
    fn a_clock_gone_back_starts_a_new_window_rather_than_locking_out() {
        let w = Window {
            start: (t0() + Duration::hours(1)).unix_timestamp(),
            count: 3,
        };
        assert_eq!(admit(w, LIFE, 3, t0()).unwrap().count, 1);
    }
}

#[cfg(test)]
mod issuance_tests {
    use super::*;
    use crate::state::tests::{agent, t0};

    #[test]
    fn an_instance_renewing_in_a_loop_is_stopped_by_its_chain_then_its_agent_by_all() {
        let limits = IssuanceLimits {
            per_agent: 5,
            renewals_per_instance: 2,
        };
        let mut a = agent("acme", "bot");
        let life = Duration::seconds(a.ttl_secs as i64);
        let mut cert = crate::state::tests::cert(&a.key(), 1);
        // Two renewals along the chain, the third refused until the
        // window of the chain ends.
        for _ in 0..2 {
            let (issued, chain) = admit_issuance(&a, Some(&cert), limits, t0()).unwrap();
            a.issued = issued;
            cert.renewals = chain;
        }
        let refused = admit_issuance(&a, Some(&cert), limits, t0()).unwrap_err();
        assert_eq!(refused.retry_at, t0() + life);
        // Enrollments of new instances still fit, up to the agent's limit
        // (2 renewals + 3 enrollments = 5).
        for _ in 0..3 {
            a.issued = admit_issuance(&a, None, limits, t0()).unwrap().0;
        }
        assert!(admit_issuance(&a, None, limits, t0()).is_err());
        // A certificate lifetime later, both windows start again.
        let (issued, chain) = admit_issuance(&a, Some(&cert), limits, t0() + life).unwrap();
        assert_eq!((issued.count, chain.count), (1, 1));
    }

    #[test]
    fn an_enrollment_starts_a_chain_with_nothing_counted() {
        let a = agent("acme", "bot");
        let (issued, chain) = admit_issuance(&a, None, IssuanceLimits::DEFAULT, t0()).unwrap();
        assert_eq!(issued.count, 1);
        assert_eq!(chain, Window::default());
    }
}
