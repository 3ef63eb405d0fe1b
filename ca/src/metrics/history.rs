//! Enrollments and renewals per minute over the last hour, for the
//! console's chart: kept in memory by each replica, from its start.

use std::collections::VecDeque;

use time::OffsetDateTime;

/// Minutes kept.
pub const MINUTES: i64 = 60;

/// One minute's issuance.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Minute {
    /// The minute, in minutes since the Unix epoch.
    pub minute: i64,
    /// Certificates issued (or answered again).
    pub ok: u64,
    /// Requests refused.
    pub refused: u64,
}

/// The last [`MINUTES`] minutes that saw issuance, oldest first.
#[derive(Debug, Default)]
pub struct History(VecDeque<Minute>);

impl History {
    /// Counts `count` issuance requests at `at`, issued or refused.
    pub fn note(&mut self, at: OffsetDateTime, issued: bool, count: u64) {
        let minute = at.unix_timestamp().div_euclid(60);
        let index = match self.0.iter().rposition(|m| m.minute == minute) {
            Some(i) => i,
            None => {
                // Events come in commit order; one a little out of order
                // (written in the same second by another task) is placed.
                let at = self.0.partition_point(|m| m.minute < minute);
                self.0.insert(
                    at,
                    Minute {
                        minute,
                        ..Minute::default()
                    },
                );
                at
            }
        };
        let m = &mut self.0[index];
        if issued {
            m.ok += count;
        } else {
            m.refused += count;
        }
        let newest = self.0.back().map_or(minute, |m| m.minute);
        while self.0.front().is_some_and(|m| m.minute <= newest - MINUTES) {
            self.0.pop_front();
        }
    }

    /// The [`MINUTES`] minutes up to `now`'s, oldest first, empty minutes
    /// included.
    pub fn last_hour(&self, now: OffsetDateTime) -> Vec<Minute> {
        let current = now.unix_timestamp().div_euclid(60);
        (current - MINUTES + 1..=current)
            .map(|minute| {
                self.0
                    .iter()
                    .find(|m| m.minute == minute)
                    .copied()
                    .unwrap_or(Minute {
                        minute,
                        ..Minute::default()
                    })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(minute: i64, second: i64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(minute * 60 + second).unwrap()
    }

    #[test]
    fn an_hour_of_minutes_is_kept_and_filled() {
        let mut h = History::default();
        h.note(at(1000, 5), true, 1);
        h.note(at(1000, 59), false, 3);
        h.note(at(1002, 0), true, 2);
        h.note(at(1001, 30), true, 1); // late, placed in order
        let hour = h.last_hour(at(1002, 10));
        assert_eq!(hour.len(), 60);
        assert_eq!(
            hour[59],
            Minute {
                minute: 1002,
                ok: 2,
                refused: 0
            }
        );
        assert_eq!(
            hour[58],
            Minute {
                minute: 1001,
                ok: 1,
                refused: 0
            }
        );
        assert_eq!(
            hour[57],
            Minute {
                minute: 1000,
                ok: 1,
                refused: 3
            }
        );
        assert_eq!(hour[0].ok + hour[0].refused, 0);
        // An hour later the old minutes are gone; 1002 is still in the hour.
        h.note(at(1061, 0), true, 1);
        assert!(h.0.iter().all(|m| m.minute > 1001));
        assert_eq!(
            h.last_hour(at(1061, 0)).iter().map(|m| m.ok).sum::<u64>(),
            3
        );
    }
}
