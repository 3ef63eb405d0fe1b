//! Security events out: how far each receiver is in the audit trail, and
//! which replica sends to it.
//!
//! The audit trail is the outbox: every event that becomes a Security
//! Event Token is in it, committed with what it records. Each receiver has
//! a cursor in the store, the last event it acknowledged (or that needed no
//! token), moved only after its acknowledgement; so an event committed is
//! sent until acknowledged, across restarts, and an acknowledged one is not
//! sent again. One replica at a time holds a receiver: the hold is part of
//! the cursor, renewed as it sends, and taken over once it lapses.
//!
//! Pure functions of a cursor and the time: [`Change::EventCursor`]
//! applies them at commit time.
//!
//! [`Change::EventCursor`]: super::Change::EventCursor

use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};

/// Meta key prefix of the receivers' cursors (then the receiver's name).
pub const CURSOR_PREFIX: &str = "event_cursor/";

/// How long after a replica last wrote a receiver's cursor the cursor
/// still keeps the audit events after it from pruning. A receiver being
/// sent to has its cursor written whenever the trail moves, and every few
/// seconds while a token waits; one no replica has sent to for this long
/// was removed from the receivers files.
pub const FORGOTTEN_AFTER: Duration = Duration::days(7);

/// The Meta key of `receiver`'s cursor.
pub fn cursor_key(receiver: &str) -> Vec<u8> {
    format!("{CURSOR_PREFIX}{receiver}").into_bytes()
}

/// Where a receiver is in the audit trail, and who sends to it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventCursor {
    /// The last audit event it acknowledged, or that needed no token.
    pub delivered: u64,
    /// The replica sending to it, while `held_until` is ahead.
    #[serde(default)]
    pub holder: Option<String>,
    /// When the hold lapses unless renewed.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub held_until: Option<OffsetDateTime>,
}

/// A replica's move of a receiver's cursor: taking or renewing the hold,
/// and advancing it past what the receiver acknowledged.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CursorMove {
    /// The receiver.
    pub receiver: String,
    /// The replica moving it.
    pub replica: String,
    /// Where the replica last saw it (none on first contact).
    pub expected: Option<u64>,
    /// Where it moves to (none to keep it: a hold only).
    pub to: Option<u64>,
    /// Now.
    pub at: OffsetDateTime,
    /// How long the hold lasts from `at`.
    pub hold: Duration,
    /// Whether the store is this replica's alone (an embedded store): a
    /// hold left by an earlier process of it has then no one behind it.
    pub exclusive: bool,
}

/// Why a cursor was not moved. Nothing was written.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CursorConflict {
    /// Another replica sends to this receiver.
    #[error("replica {holder} sends to this receiver until {until}")]
    Held {
        /// The replica.
        holder: String,
        /// Until when, unless it renews.
        until: OffsetDateTime,
    },
    /// The cursor moved since the replica read it.
    #[error("the receiver's cursor is at event {current}, not {expected}")]
    Moved {
        /// Where it is.
        current: u64,
        /// Where the replica expected it.
        expected: u64,
    },
    /// A cursor never passes the trail's last event.
    #[error("the audit trail ends at event {head}; the cursor does not move to {to}")]
    Ahead {
        /// The trail's last event.
        head: u64,
        /// Where it was asked to go.
        to: u64,
    },
    /// A cursor never goes back.
    #[error("the receiver's cursor is at event {current}; it does not go back to {to}")]
    Backwards {
        /// Where it is.
        current: u64,
        /// Where it was asked to go.
        to: u64,
    },
}

/// Whether `replica` may send to a receiver whose cursor is `cursor` at
/// `now`: nobody holds it, it holds it, or the hold lapsed (exactly at
/// `held_until` it has). In an `exclusive` store every earlier holder is a
/// process that ended.
pub fn may_hold(
    cursor: &EventCursor,
    replica: &str,
    now: OffsetDateTime,
    exclusive: bool,
) -> Result<(), CursorConflict> {
    match (&cursor.holder, cursor.held_until) {
        (Some(holder), Some(until)) if holder != replica && !exclusive && now < until => {
            Err(CursorConflict::Held {
                holder: holder.clone(),
                until,
            })
        }
        _ => Ok(()),
    }
}

/// The cursor after `m`, when it is `stored` (none for a receiver never
/// seen: it starts at the trail's `head`, so a new receiver gets the
/// events from when it was configured on).
pub fn moved(
    stored: Option<EventCursor>,
    head: u64,
    m: &CursorMove,
) -> Result<EventCursor, CursorConflict> {
    let current = stored.unwrap_or(EventCursor {
        delivered: head,
        holder: None,
        held_until: None,
    });
    may_hold(&current, &m.replica, m.at, m.exclusive)?;
    if let Some(expected) = m.expected {
        if expected != current.delivered {
            return Err(CursorConflict::Moved {
                current: current.delivered,
                expected,
            });
        }
    }
    let delivered = match m.to {
        Some(to) if to < current.delivered => {
            return Err(CursorConflict::Backwards {
                current: current.delivered,
                to,
            })
        }
        Some(to) if to > head => return Err(CursorConflict::Ahead { head, to }),
        Some(to) => to,
        None => current.delivered,
    };
    Ok(EventCursor {
        delivered,
        holder: Some(m.replica.clone()),
        held_until: Some(m.at + m.hold),
    })
}

/// Whether `cursor` still keeps the audit events after it from pruning at
/// `now`: a replica wrote it less than [`FORGOTTEN_AFTER`] ago.
pub fn keeps(cursor: &EventCursor, now: OffsetDateTime) -> bool {
    cursor
        .held_until
        .is_some_and(|until| now < until + FORGOTTEN_AFTER)
}

/// Of the receivers' cursors, the one furthest behind among those that
/// still keep events ([`keeps`]): the audit events after it are not pruned
/// ([`crate::audit::may_prune`]).
pub fn slowest<'a>(
    cursors: impl IntoIterator<Item = (&'a str, &'a EventCursor)>,
    now: OffsetDateTime,
) -> Option<(&'a str, u64)> {
    cursors
        .into_iter()
        .filter(|(_, c)| keeps(c, now))
        .map(|(name, c)| (name, c.delivered))
        .min_by_key(|(_, delivered)| *delivered)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::state::tests::t0;

    fn held_by(holder: &str, until: OffsetDateTime) -> EventCursor {
        EventCursor {
            delivered: 7,
            holder: Some(holder.into()),
            held_until: Some(until),
        }
    }

    /// `replica`'s move of receiver `siem` from `expected` to `to` at
    /// `t0()`, holding it for 30 s (the backends' suite uses it too).
    pub(crate) fn by(replica: &str, expected: Option<u64>, to: Option<u64>) -> CursorMove {
        CursorMove {
            receiver: "siem".into(),
            replica: replica.into(),
            expected,
            to,
            at: t0(),
            hold: Duration::seconds(30),
            exclusive: false,
        }
    }

    #[test]
    fn a_hold_keeps_other_replicas_out_until_it_lapses() {
        let cursor = held_by("a", t0() + Duration::seconds(10));
        assert_eq!(may_hold(&cursor, "a", t0(), false), Ok(()));
        assert!(matches!(
            may_hold(&cursor, "b", t0(), false),
            Err(CursorConflict::Held { holder, .. }) if holder == "a"
        ));
        assert!(may_hold(&cursor, "b", t0() + Duration::seconds(9), false).is_err());
        assert_eq!(
            may_hold(&cursor, "b", t0() + Duration::seconds(10), false),
            Ok(())
        );
        assert_eq!(
            may_hold(&cursor, "b", t0() + Duration::seconds(11), false),
            Ok(())
        );
        // An embedded store has one process: the holder before it is gone.
        assert_eq!(may_hold(&cursor, "b", t0(), true), Ok(()));
        let free = EventCursor {
            delivered: 0,
            holder: None,
            held_until: None,
        };
        assert_eq!(may_hold(&free, "b", t0(), false), Ok(()));
    }

    #[test]
    fn a_released_hold_is_taken_over_at_once() {
        let stored = held_by("a", t0() + Duration::seconds(30));
        let release = CursorMove {
            hold: Duration::ZERO,
            ..by("a", Some(7), Some(8))
        };
        let released = moved(Some(stored), 99, &release).unwrap();
        assert_eq!(released.delivered, 8, "where it got to is kept");
        assert_eq!(released.held_until, Some(t0()));
        let taken = moved(Some(released), 99, &by("b", Some(8), None)).unwrap();
        assert_eq!(taken.holder.as_deref(), Some("b"));
    }

    #[test]
    fn a_new_receiver_starts_at_the_head() {
        let cursor = moved(None, 42, &by("a", None, None)).unwrap();
        assert_eq!(cursor.delivered, 42);
        assert_eq!(cursor.holder.as_deref(), Some("a"));
        assert_eq!(cursor.held_until, Some(t0() + Duration::seconds(30)));
    }

    #[test]
    fn a_cursor_moves_forward_from_where_it_was_seen() {
        let stored = held_by("a", t0() + Duration::seconds(1));
        let next = moved(Some(stored.clone()), 99, &by("a", Some(7), Some(9))).unwrap();
        assert_eq!(next.delivered, 9);
        assert_eq!(
            moved(Some(stored.clone()), 99, &by("a", Some(6), Some(9))),
            Err(CursorConflict::Moved {
                current: 7,
                expected: 6
            })
        );
        assert_eq!(
            moved(Some(stored.clone()), 99, &by("a", None, Some(6))),
            Err(CursorConflict::Backwards { current: 7, to: 6 })
        );
        assert_eq!(
            moved(Some(stored.clone()), 99, &by("a", Some(7), Some(100))),
            Err(CursorConflict::Ahead { head: 99, to: 100 })
        );
        // Staying put renews the hold.
        let renewed = moved(Some(stored.clone()), 99, &by("a", Some(7), None)).unwrap();
        assert_eq!(renewed.delivered, 7);
        assert_eq!(renewed.held_until, Some(t0() + Duration::seconds(30)));
        // Another replica can't move it while the hold stands.
        assert!(matches!(
            moved(Some(stored), 99, &by("b", Some(7), Some(9))),
            Err(CursorConflict::Held { .. })
        ));
    }

    #[test]
    fn the_slowest_receiver_still_sent_to_bounds_pruning() {
        let at = |delivered, until| EventCursor {
            delivered,
            holder: Some("r".into()),
            held_until: Some(until),
        };
        let a = at(9, t0());
        let b = at(3, t0());
        let forgotten = at(1, t0() - FORGOTTEN_AFTER);
        assert_eq!(slowest([], t0()), None);
        assert_eq!(
            slowest([("a", &a), ("b", &b), ("gone", &forgotten)], t0()),
            Some(("b", 3))
        );
        // Exactly FORGOTTEN_AFTER after its last write, a cursor keeps
        // nothing; a second before, it does.
        assert!(!keeps(&forgotten, t0()));
        assert!(keeps(&forgotten, t0() - Duration::seconds(1)));
        let never = EventCursor {
            delivered: 0,
            holder: None,
            held_until: None,
        };
        assert!(!keeps(&never, t0()));
    }
}
