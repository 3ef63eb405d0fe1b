//! Which refusals become an audit event each, and which are counted into
//! one.
//!
//! Anyone can be refused: a bad token, a garbage CSR, a certificate of
//! another CA. If every refusal of an unauthenticated client were one
//! durable event, one client could fill the disk and drown the trail of
//! real events. So refusals are folded: in each minute, the first
//! [`RECORDED_PER_KEY`] refusals of one kind (who, what, why, from which
//! address) are events of their own, at most [`RECORDED_PER_WINDOW`] in
//! all; the rest are counted, and when the minute ends each count becomes
//! one event with `count` set ("N more refusals of this kind from this
//! address since the minute began"). At most [`MAX_KINDS`] kinds are
//! counted apart in a minute; beyond them, a refusal is counted with the
//! others of its action and reason, without its actor or address.
//!
//! Refusals of an authenticated admin are never folded: an admin's token
//! is not anyone's, and each of its refusals is an event.
//!
//! [`Fold`] is the rule: it takes the time as an argument (the event's) and
//! keeps nothing but the current minute's counts, bounded by [`MAX_KINDS`].
//!
//! Admins' reads (of registrations, their history, the audit trail) are
//! folded the same way with other limits ([`Fold::reads`]): reading is on
//! the record ("who looked at this agent's history, and when?") without
//! flooding it, nor adding to the trail while it is read. Every read is
//! counted; when its minute ends, each admin's reads of one subject become
//! one event with `count` set and the time of the first read.

use std::collections::HashMap;
use std::net::SocketAddr;

use agentca::wire::{Actor, AuditEvent};
use time::{Duration, OffsetDateTime};

/// How long a window of counting lasts.
pub const WINDOW: Duration = Duration::minutes(1);

/// Refusals of one kind recorded one by one in a window.
pub const RECORDED_PER_KEY: u64 = 10;

/// Refusals recorded one by one in a window, over all kinds.
pub const RECORDED_PER_WINDOW: usize = 100;

/// Kinds counted apart in a window (bounds the memory the counts take and
/// the events a window ends with).
pub const MAX_KINDS: usize = 256;

/// What a fold records one by one, and what it counts.
#[derive(Clone, Copy, Debug)]
struct Limits {
    /// Events of one kind recorded one by one in a window.
    per_kind: u64,
    /// Events recorded one by one in a window, over all kinds.
    per_window: usize,
    /// Whether admins' events are folded too.
    admins: bool,
    /// Whether the subject is part of the kind.
    by_subject: bool,
}

/// A kind of refusal: who (as JSON; for a token, only that it was one:
/// its id comes from what the client sent), what, why, from which address
/// (the IP, without the port), and for reads on what.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Kind {
    actor: String,
    action: String,
    reason: String,
    address: Option<String>,
    subject: Option<String>,
}

impl Kind {
    fn of(event: &AuditEvent, by_subject: bool) -> Self {
        Self {
            actor: match &event.actor {
                Actor::Token { .. } => "token".into(),
                actor => serde_json::to_string(actor).unwrap_or_default(),
            },
            action: event.action.clone(),
            reason: event.reason.clone().unwrap_or_default(),
            address: event.remote_addr.as_deref().map(ip_of),
            subject: if by_subject {
                event.subject.clone()
            } else {
                None
            },
        }
    }

    /// The kind an event is counted as once [`MAX_KINDS`] are: its action
    /// and reason only; and its actor when `reads` (an admin, who must not
    /// become anonymous by reading many subjects first).
    fn overflow(&self, reads: bool) -> Self {
        Self {
            actor: if reads {
                self.actor.clone()
            } else {
                String::new()
            },
            action: self.action.clone(),
            reason: self.reason.clone(),
            address: None,
            subject: None,
        }
    }
}

/// The IP of `addr` (`ip:port` or `[ip]:port`), or `addr` as it is.
fn ip_of(addr: &str) -> String {
    addr.parse::<SocketAddr>()
        .map(|a| a.ip().to_string())
        .unwrap_or_else(|_| addr.to_owned())
}

struct Tally {
    /// Recorded one by one so far in this window.
    recorded: u64,
    /// Counted, not yet written.
    counted: u64,
    /// Whether every refusal counted had the template's actor.
    one_actor: bool,
    /// The event the count's summary is made from.
    template: AuditEvent,
}

/// The refusals of the current window: how many of each kind were recorded
/// and counted.
pub struct Fold {
    limits: Limits,
    started: Option<OffsetDateTime>,
    recorded: usize,
    kinds: HashMap<Kind, Tally>,
}

impl Default for Fold {
    fn default() -> Self {
        Self::new()
    }
}

impl Fold {
    /// An empty fold of refusals.
    pub fn new() -> Self {
        Self::with(Limits {
            per_kind: RECORDED_PER_KEY,
            per_window: RECORDED_PER_WINDOW,
            admins: false,
            by_subject: false,
        })
    }

    /// An empty fold of admins' reads: every read is counted per admin,
    /// action and subject, and written as one event when its window ends.
    pub fn reads() -> Self {
        Self::with(Limits {
            per_kind: 0,
            per_window: RECORDED_PER_WINDOW,
            admins: true,
            by_subject: true,
        })
    }

    fn with(limits: Limits) -> Self {
        Self {
            limits,
            started: None,
            recorded: 0,
            kinds: HashMap::new(),
        }
    }

    /// Notes the refusal `event` (its outcome `refused`, its reason the
    /// refusal's code): returns it when it is to be appended now, `None`
    /// when it was counted into its window's summary. A window that ended
    /// before the event must have been closed with [`Fold::due`] first.
    pub fn note(&mut self, event: AuditEvent) -> Option<AuditEvent> {
        let admin = matches!(event.actor, Actor::Admin { .. });
        if matches!(event.actor, Actor::System) || (admin && !self.limits.admins) {
            return Some(event);
        }
        self.started.get_or_insert(event.at);
        let mut kind = Kind::of(&event, self.limits.by_subject);
        if !self.kinds.contains_key(&kind) && self.kinds.len() >= MAX_KINDS {
            kind = kind.overflow(self.limits.by_subject);
        }
        let recorded_in_window = self.recorded;
        let overflowed = kind.address.is_none() && kind.actor.is_empty();
        let tally = self.kinds.entry(kind).or_insert_with(|| Tally {
            recorded: 0,
            counted: 0,
            one_actor: true,
            template: event.clone(),
        });
        if !overflowed
            && tally.recorded < self.limits.per_kind
            && recorded_in_window < self.limits.per_window
        {
            tally.recorded += 1;
            self.recorded += 1;
            return Some(event);
        }
        tally.counted += 1;
        tally.one_actor &= tally.template.actor == event.actor;
        None
    }

    /// The summaries of the window, if it ended by `now`: one event per
    /// kind with refusals counted, `count` set, at `now`. A new window
    /// begins with the next refusal.
    pub fn due(&mut self, now: OffsetDateTime) -> Vec<AuditEvent> {
        match self.started {
            Some(started) if now >= started + WINDOW => self.close(now),
            _ => Vec::new(),
        }
    }

    /// The summaries of the window whether or not it ended (at shutdown).
    pub fn close(&mut self, now: OffsetDateTime) -> Vec<AuditEvent> {
        self.started = None;
        self.recorded = 0;
        let mut summaries: Vec<AuditEvent> = std::mem::take(&mut self.kinds)
            .into_iter()
            .filter(|(_, tally)| tally.counted > 0)
            .map(|(kind, tally)| summary(kind, tally, now, self.limits.by_subject))
            .collect();
        // One order for the same counts, whatever the map's.
        summaries.sort_by(|a, b| {
            (&a.action, &a.reason, &a.remote_addr).cmp(&(&b.action, &b.reason, &b.remote_addr))
        });
        summaries
    }

    /// Refusals counted and not yet written.
    pub fn pending(&self) -> u64 {
        self.kinds.values().map(|t| t.counted).sum()
    }
}

/// The event that says `tally.counted` refusals (or `reads`) of `kind`
/// happened.
fn summary(kind: Kind, tally: Tally, now: OffsetDateTime, reads: bool) -> AuditEvent {
    let template = tally.template;
    // Refusals of several actors (overflow, or several tokens) are
    // anyone's.
    let actor = if tally.one_actor && !kind.actor.is_empty() {
        template.actor
    } else {
        Actor::Anonymous
    };
    let mut event = AuditEvent::new(now, actor, &kind.action, kind.subject);
    event.outcome = template.outcome;
    event.reason = if reads {
        let first = agentca::rfc3339(template.at);
        Some(format!("first read at {first}"))
    } else {
        template.reason
    };
    event.remote_addr = kind.address;
    event.count = Some(tally.counted);
    event
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t0() -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap()
    }

    fn refusal(at: OffsetDateTime, actor: Actor, reason: &str, remote: &str) -> AuditEvent {
        let mut e = AuditEvent::new(at, actor, "enroll", None);
        e.outcome = "refused".into();
        e.reason = Some(reason.into());
        e.remote_addr = Some(remote.into());
        e
    }

    fn anonymous(at: OffsetDateTime, remote: &str) -> AuditEvent {
        refusal(at, Actor::Anonymous, "invalid_token", remote)
    }

    #[test]
    fn the_first_refusals_of_a_kind_are_recorded_and_the_rest_counted_into_one_event() {
        let mut fold = Fold::new();
        let recorded = (0..1000)
            .filter_map(|i| {
                fold.note(anonymous(
                    t0() + Duration::milliseconds(i),
                    "192.0.2.1:4000",
                ))
            })
            .count();
        assert_eq!(recorded as u64, RECORDED_PER_KEY);
        assert_eq!(fold.pending(), 1000 - RECORDED_PER_KEY);

        // One second before the window ends: nothing yet.
        assert!(fold.due(t0() + WINDOW - Duration::seconds(1)).is_empty());
        let summaries = fold.due(t0() + WINDOW);
        assert_eq!(summaries.len(), 1);
        let s = &summaries[0];
        assert_eq!(s.count, Some(1000 - RECORDED_PER_KEY));
        assert_eq!(
            (s.action.as_str(), s.outcome.as_str(), s.reason.as_deref()),
            ("enroll", "refused", Some("invalid_token"))
        );
        assert_eq!(
            s.remote_addr.as_deref(),
            Some("192.0.2.1"),
            "the address without the port"
        );
        assert_eq!(s.at, t0() + WINDOW);
        assert_eq!(fold.pending(), 0);

        // The next window records again.
        assert!(fold
            .note(anonymous(t0() + WINDOW, "192.0.2.1:4001"))
            .is_some());
        assert!(
            fold.due(t0() + WINDOW * 2).is_empty(),
            "nothing was counted"
        );
    }

    #[test]
    fn kinds_are_apart_by_address_actor_and_reason() {
        let mut fold = Fold::new();
        for i in 0..RECORDED_PER_KEY {
            assert!(fold
                .note(anonymous(t0(), &format!("192.0.2.1:{i}")))
                .is_some());
        }
        assert!(fold.note(anonymous(t0(), "192.0.2.1:1")).is_none());
        assert!(
            fold.note(anonymous(t0(), "192.0.2.2:1")).is_some(),
            "another address"
        );
        let token = Actor::Token {
            token_id: "t1".into(),
        };
        assert!(fold
            .note(refusal(t0(), token, "invalid_token", "192.0.2.1:1"))
            .is_some());
        assert!(
            fold.note(refusal(
                t0(),
                Actor::Anonymous,
                "invalid_csr",
                "192.0.2.1:1"
            ))
            .is_some(),
            "another reason"
        );
    }

    #[test]
    fn made_up_token_ids_are_one_kind_and_their_summary_names_nobody() {
        let mut fold = Fold::new();
        let token = |i: u64| Actor::Token {
            token_id: format!("t{i}"),
        };
        let recorded = (0..50)
            .filter_map(|i| fold.note(refusal(t0(), token(i), "invalid_token", "192.0.2.1:1")))
            .count();
        assert_eq!(recorded as u64, RECORDED_PER_KEY);
        let summaries = fold.due(t0() + WINDOW);
        assert_eq!(summaries.len(), 1);
        assert_eq!(summaries[0].actor, Actor::Anonymous);
        assert_eq!(summaries[0].count, Some(50 - RECORDED_PER_KEY));

        // One token refused again and again keeps its name.
        for _ in 0..20 {
            fold.note(refusal(t0(), token(7), "token_used_up", "192.0.2.1:1"));
        }
        assert_eq!(fold.due(t0() + WINDOW)[0].actor, token(7));
    }

    #[test]
    fn an_admins_reads_are_counted_per_subject_and_written_when_the_minute_ends() {
        let mut fold = Fold::reads();
        let read = |at, subject: &str| {
            let admin = Actor::Admin { name: "ops".into() };
            let mut e = AuditEvent::new(at, admin, "agents.history", Some(subject.into()));
            e.remote_addr = Some("192.0.2.1:1".into());
            e
        };
        assert!(fold
            .note(read(t0() + Duration::seconds(3), "other"))
            .is_none());
        for _ in 0..5 {
            assert!(fold
                .note(read(t0() + Duration::seconds(1), "bot"))
                .is_none());
        }
        assert!(
            fold.due(t0() + Duration::seconds(62)).is_empty(),
            "the window began with the first read"
        );
        let summaries = fold.due(t0() + Duration::seconds(63));
        assert_eq!(summaries.len(), 2, "one per subject");
        let s = summaries
            .iter()
            .find(|s| s.subject.as_deref() == Some("bot"))
            .unwrap();
        assert_eq!((s.outcome.as_str(), s.count), ("ok", Some(5)));
        assert_eq!(s.actor, Actor::Admin { name: "ops".into() });
        assert_eq!(s.action, "agents.history");
        assert_eq!(
            s.reason.as_deref(),
            Some("first read at 2027-01-15T08:00:01Z")
        );
        assert_eq!(fold.pending(), 0);
    }

    #[test]
    fn reads_beyond_the_kinds_counted_apart_keep_their_admin() {
        let mut fold = Fold::reads();
        let read = |admin: &str, subject: String| {
            let actor = Actor::Admin { name: admin.into() };
            AuditEvent::new(t0(), actor, "agents.show", Some(subject))
        };
        for i in 0..MAX_KINDS {
            fold.note(read("noisy", format!("agent-{i}")));
        }
        // The read that mattered, after the kinds ran out.
        fold.note(read("sneaky", "payments-bot".into()));
        let summaries = fold.close(t0() + WINDOW);
        let sneaky: Vec<&AuditEvent> = summaries
            .iter()
            .filter(|e| {
                e.actor
                    == Actor::Admin {
                        name: "sneaky".into(),
                    }
            })
            .collect();
        assert_eq!(sneaky.len(), 1, "{summaries:#?}");
        assert_eq!(sneaky[0].count, Some(1));
        assert!(summaries.iter().all(|e| e.actor != Actor::Anonymous));
    }

    #[test]
    fn an_admins_refusals_are_never_folded() {
        let mut fold = Fold::new();
        for _ in 0..1000 {
            let admin = Actor::Admin { name: "ops".into() };
            assert!(fold
                .note(refusal(t0(), admin, "forbidden", "192.0.2.1:1"))
                .is_some());
        }
        assert_eq!(fold.pending(), 0);
    }

    #[test]
    fn a_window_records_a_bounded_number_of_events_however_many_addresses() {
        let mut fold = Fold::new();
        let mut events = 0;
        for i in 0..100_000u32 {
            let remote = format!("[2001:db8::{:x}]:443", i);
            events += usize::from(fold.note(anonymous(t0(), &remote)).is_some());
        }
        assert_eq!(events, RECORDED_PER_WINDOW);
        assert!(fold.kinds.len() <= MAX_KINDS + 1, "{}", fold.kinds.len());
        let summaries = fold.due(t0() + WINDOW);
        assert!(summaries.len() <= MAX_KINDS + 1);
        let counted: u64 = summaries.iter().map(|s| s.count.unwrap()).sum();
        assert_eq!(
            counted as usize + events,
            100_000,
            "every refusal is accounted for"
        );
        // The overflow is counted without actor or address.
        assert!(summaries
            .iter()
            .any(|s| s.remote_addr.is_none() && s.actor == Actor::Anonymous));
    }

    #[test]
    fn closing_writes_what_is_counted_before_the_window_ends() {
        let mut fold = Fold::new();
        for _ in 0..=RECORDED_PER_KEY {
            fold.note(anonymous(t0(), "192.0.2.1:1"));
        }
        let summaries = fold.close(t0() + Duration::seconds(5));
        assert_eq!(summaries.len(), 1);
        assert_eq!(summaries[0].count, Some(1));
        assert!(fold.close(t0() + Duration::seconds(6)).is_empty());
    }
}
