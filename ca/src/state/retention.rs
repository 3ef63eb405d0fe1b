//! How long records outlive what they describe: certificates and tokens
//! are pruned once they expired longer than the retention window ago (the
//! audit trail keeps their history), and so are their feed events and
//! clone alerts.
//!
//! Pure functions of times: nothing here reads or writes the store.

use time::{Duration, OffsetDateTime};

/// The cut-off of a pruning pass at `now` with the `retention` window:
/// what ended before it may go.
pub fn cutoff(now: OffsetDateTime, retention: Duration) -> OffsetDateTime {
    now - retention
}

/// Whether a record that ended (expired, or was raised, for a clone alert)
/// at `ended` may be pruned at `cutoff`. Stored times are whole seconds,
/// so the comparison is of whole seconds: a record that ended in the
/// cut-off's own second is kept until the next pass.
pub fn prunable(ended: OffsetDateTime, cutoff: OffsetDateTime) -> bool {
    ended.unix_timestamp() < cutoff.unix_timestamp()
}

/// Whether a pruning pass is due at `now`, when the last one (by any
/// replica) began at `last`: once every `period`, whichever replica asks.
pub fn pruning_due(last: Option<OffsetDateTime>, now: OffsetDateTime, period: Duration) -> bool {
    last.is_none_or(|last| now - last >= period || last > now + period)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::tests::t0;

    #[test]
    fn pruning_is_due_once_per_period_whoever_asks() {
        let minute = Duration::minutes(1);
        assert!(pruning_due(None, t0(), minute));
        assert!(!pruning_due(Some(t0()), t0(), minute));
        assert!(!pruning_due(
            Some(t0()),
            t0() + Duration::seconds(59),
            minute
        ));
        assert!(pruning_due(Some(t0()), t0() + minute, minute));
        // A turn taken far in the future (a clock that was wrong) does not
        // stop pruning forever.
        assert!(!pruning_due(
            Some(t0() + Duration::seconds(30)),
            t0(),
            minute
        ));
        assert!(pruning_due(Some(t0() + Duration::hours(1)), t0(), minute));
    }

    #[test]
    fn records_go_once_they_ended_before_the_cutoffs_second() {
        let cut = cutoff(t0() + Duration::hours(24), Duration::hours(24));
        assert_eq!(cut, t0());
        assert!(prunable(t0() - Duration::seconds(1), cut));
        assert!(!prunable(t0(), cut));
        assert!(!prunable(t0() + Duration::seconds(1), cut));
        // Within the cut-off's second, whatever its fraction.
        assert!(!prunable(t0(), cut + Duration::milliseconds(999)));
        assert!(prunable(t0(), cut + Duration::seconds(1)));
    }
}
