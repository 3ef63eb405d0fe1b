//! When to renew and when to retry: pure functions of the time and the
//! certificate, tested without a clock.
//!
//! Renewal starts at about two thirds of a certificate's lifetime (SPIRE
//! renews at half-life, `step ca renew --daemon` at two thirds,
//! linkerd2-proxy at 70%), moved by a jitter so that a fleet started
//! together does not renew together. Failed attempts back off
//! exponentially with jitter, never sooner than the CA's `Retry-After`, and
//! never later than the certificate's expiry would make sensible.

use std::time::Duration as StdDuration;

use time::{Duration, OffsetDateTime};

/// Fraction of the lifetime after which renewal starts, before jitter.
pub const RENEW_AT: f64 = 2.0 / 3.0;
/// How far jitter moves the renewal point, as a fraction of the lifetime:
/// renewal starts between 60% and 73% of the lifetime.
pub const RENEW_JITTER: f64 = 0.067;
/// First retry delay.
pub const RETRY_BASE: StdDuration = StdDuration::from_millis(500);
/// Longest retry delay.
pub const RETRY_MAX: StdDuration = StdDuration::from_secs(10);

/// When to start renewing a certificate valid from `not_before` to
/// `not_after`, with `jitter` in 0..=1 (drawn once per certificate).
///
/// ```
/// use agentca::client::schedule::renew_at;
/// use time::{Duration, OffsetDateTime};
///
/// let start = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
/// let end = start + Duration::minutes(30);
/// let at = renew_at(start, end, 0.5);
/// assert_eq!(at, start + Duration::minutes(20));
/// ```
pub fn renew_at(
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
    jitter: f64,
) -> OffsetDateTime {
    let lifetime = (not_after - not_before).max(Duration::ZERO);
    let fraction = RENEW_AT + RENEW_JITTER * (2.0 * jitter.clamp(0.0, 1.0) - 1.0);
    not_before + lifetime * fraction
}

/// The delay before retry number `attempt` (from 1): exponential from
/// [`RETRY_BASE`] to [`RETRY_MAX`], scaled into its upper half by `jitter`
/// (0..=1), and at least the CA's `Retry-After` when it sent one.
///
/// ```
/// use std::time::Duration;
/// use agentca::client::schedule::retry_delay;
///
/// assert_eq!(retry_delay(1, 1.0, None), Duration::from_millis(500));
/// assert_eq!(retry_delay(1, 0.0, Some(5)), Duration::from_secs(5));
/// ```
pub fn retry_delay(attempt: u32, jitter: f64, retry_after_secs: Option<u64>) -> StdDuration {
    let delay = crate::ca_tls::half_jittered(RETRY_BASE, RETRY_MAX, attempt, jitter);
    match retry_after_secs {
        // A CA that asks for more than RETRY_MAX is obeyed, up to ten minutes.
        Some(secs) => delay.max(StdDuration::from_secs(secs.min(600))),
        None => delay,
    }
}

pub use crate::ca_tls::jitter;

#[cfg(test)]
mod tests {
    use super::*;

    fn t(secs: i64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_800_000_000 + secs).unwrap()
    }

    #[test]
    fn renewal_starts_around_two_thirds_of_the_lifetime() {
        let (start, end) = (t(0), t(300));
        assert_eq!(renew_at(start, end, 0.5), t(200));
        let earliest = renew_at(start, end, 0.0);
        let latest = renew_at(start, end, 1.0);
        assert!(earliest >= t(179) && earliest <= t(181), "{earliest}");
        assert!(latest >= t(219) && latest <= t(221), "{latest}");
        assert!(latest < end);
        // Out-of-range jitter is clamped; a backwards validity renews at once.
        assert_eq!(renew_at(start, end, 7.0), latest);
        assert_eq!(renew_at(end, start, 0.5), end);
    }

    #[test]
    fn a_fleet_started_together_spreads_its_renewals() {
        let (start, end) = (t(0), t(3600));
        let times: std::collections::BTreeSet<_> = (0..100)
            .map(|i| renew_at(start, end, f64::from(i) / 99.0))
            .collect();
        let spread = *times.iter().next_back().unwrap() - *times.iter().next().unwrap();
        assert!(spread >= Duration::minutes(8), "{spread}");
    }

    #[test]
    fn retries_back_off_exponentially_up_to_a_cap() {
        assert_eq!(retry_delay(1, 0.0, None), StdDuration::from_millis(250));
        assert_eq!(retry_delay(2, 1.0, None), StdDuration::from_secs(1));
        assert_eq!(retry_delay(3, 1.0, None), StdDuration::from_secs(2));
        assert_eq!(retry_delay(20, 1.0, None), RETRY_MAX);
        assert_eq!(retry_delay(20, 0.0, None), RETRY_MAX / 2);
        assert_eq!(retry_delay(u32::MAX, 0.5, None), RETRY_MAX.mul_f64(0.75));
    }

    #[test]
    fn retry_after_is_honoured_and_bounded() {
        assert_eq!(retry_delay(1, 0.5, Some(3)), StdDuration::from_secs(3));
        assert_eq!(
            retry_delay(10, 1.0, Some(3)),
            RETRY_MAX,
            "never sooner than the backoff"
        );
        assert_eq!(
            retry_delay(1, 0.0, Some(100_000)),
            StdDuration::from_secs(600)
        );
    }
}
