//! The hash chain: each event carries the SHA-256 of the one before it
//! (`prev_hash`) and its own (`hash`, over all its other fields), so that a
//! changed, removed or reordered event breaks the chain; the CA's record
//! of the last event (the [`Head`]) catches a trail cut short.

use agentca::wire::{Actor, AuditEvent, Serial};
use serde::Serialize;
use time::OffsetDateTime;

use crate::store::{StoreError, Table};

/// The hash before the first event: 64 zeros.
pub fn genesis() -> String {
    "0".repeat(64)
}

/// The hash `event` should carry: SHA-256 over its JSON without the `hash`
/// field, fields in their order on the wire, times as RFC 3339; `count`,
/// `scopes` and `version` only where they are set (so that events written
/// before they existed keep their hashes).
pub fn hash(event: &AuditEvent) -> String {
    #[derive(Serialize)]
    struct Hashed<'a> {
        seq: u64,
        #[serde(with = "time::serde::rfc3339")]
        at: OffsetDateTime,
        actor: &'a Actor,
        action: &'a str,
        subject: &'a Option<String>,
        serial: &'a Option<Serial>,
        #[serde(with = "time::serde::rfc3339::option")]
        not_after: Option<OffsetDateTime>,
        outcome: &'a str,
        reason: &'a Option<String>,
        remote_addr: &'a Option<String>,
        request_id: &'a Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        count: Option<u64>,
        #[serde(skip_serializing_if = "Option::is_none")]
        scopes: &'a Option<Vec<String>>,
        #[serde(skip_serializing_if = "Option::is_none")]
        version: Option<u64>,
        prev_hash: &'a str,
    }
    let canonical = serde_json::to_vec(&Hashed {
        seq: event.seq,
        at: event.at,
        actor: &event.actor,
        action: &event.action,
        subject: &event.subject,
        serial: &event.serial,
        not_after: event.not_after,
        outcome: &event.outcome,
        reason: &event.reason,
        remote_addr: &event.remote_addr,
        request_id: &event.request_id,
        count: event.count,
        scopes: &event.scopes,
        version: event.version,
        prev_hash: &event.prev_hash,
    })
    .expect("audit events serialize");
    crate::hex(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &canonical).as_ref())
}

/// The trail's last event: its sequence number and hash (0 and
/// [`genesis`] while the trail is empty).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Head {
    /// The last event's sequence number.
    pub seq: u64,
    /// Its hash, as hex.
    pub hash: String,
}

impl Head {
    /// The head stored as `bytes` (8 bytes of sequence number, 32 of
    /// hash); the empty trail's when there are none.
    pub fn decode(bytes: Option<&[u8]>) -> Result<Self, StoreError> {
        match bytes {
            None => Ok(Self {
                seq: 0,
                hash: genesis(),
            }),
            Some(b) if b.len() == 40 => Ok(Self {
                seq: u64::from_be_bytes(b[..8].try_into().expect("8 bytes")),
                hash: crate::hex(&b[8..]),
            }),
            Some(_) => Err(StoreError::Corrupt {
                table: Table::Meta.name(),
                detail: "the audit head is not 40 bytes".into(),
            }),
        }
    }

    /// The stored form of the head.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = self.seq.to_be_bytes().to_vec();
        // Our own hashes: 64 hex digits.
        out.extend(agentca::unhex(&self.hash).unwrap_or_default());
        out
    }
}

/// Where an audit trail breaks.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuditBreak {
    /// An event's hash does not match its content: it was changed.
    #[error("event {0} was changed: its hash does not match its content")]
    Changed(u64),
    /// The sequence jumps: events are missing.
    #[error("events after {after} are missing: the next one is {next}")]
    Removed {
        /// The last event before the gap.
        after: u64,
        /// The first event after it.
        next: u64,
    },
    /// The sequence goes backwards or repeats: events were reordered.
    #[error("event {0} is out of order")]
    Reordered(u64),
    /// An event does not carry the hash of the one before it: the one
    /// before was changed (its hash recomputed to hide it) or replaced.
    #[error("event {previous} was changed or replaced: event {next} does not carry its hash")]
    Unlinked {
        /// The event that was changed or replaced.
        previous: u64,
        /// The event after it.
        next: u64,
    },
    /// The trail ends on another event than the CA's record of its head:
    /// the last events were changed or removed.
    #[error("the trail ends at event {found}, but the CA's head is event {expected}")]
    Truncated {
        /// The head the CA recorded.
        expected: u64,
        /// The last event found.
        found: u64,
    },
    /// The trail's last event is the head's number but not its hash.
    #[error(
        "event {0} was changed or replaced: its hash is not the one the CA recorded as the head"
    )]
    NotHead(u64),
}

/// Why events may not be pruned.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
pub enum PruneRefusal {
    /// Events up to `checkpoint` are pruned already.
    #[error("events up to {checkpoint} are pruned already")]
    AlreadyPruned {
        /// The last event pruned.
        checkpoint: u64,
    },
    /// The trail keeps at least its last event, `head`.
    #[error("event {through} is not before the trail's last event {head}; the last event stays")]
    NotBeforeHead {
        /// The event asked for.
        through: u64,
        /// The last event.
        head: u64,
    },
    /// More events than one pruning removes.
    #[error("{asked} events at once; at most {max} are pruned per call")]
    TooMany {
        /// Events asked for.
        asked: u64,
        /// The most per call.
        max: u64,
    },
    /// The event's hash is not the one given: what was exported is not
    /// what the store holds.
    #[error("event {0} in the store does not have the hash given: export it again")]
    HashMismatch(u64),
    /// A security-event receiver has not acknowledged the events yet.
    #[error("the event receiver {receiver:?} has acknowledged events up to {delivered} only; they stay until it has them")]
    Undelivered {
        /// The receiver furthest behind.
        receiver: String,
        /// The last event it acknowledged.
        delivered: u64,
    },
}

/// Whether the events after `checkpoint` up to `through` may be pruned,
/// when the trail's head is `head`, the stored event `through` has hash
/// `stored`, and the caller names it by `asked` (the hash of the last
/// event it exported: the checkpoint the trail will link to). Events a
/// security-event receiver has not acknowledged stay: `slowest` is the
/// receiver furthest behind and the last event it acknowledged.
pub fn may_prune(
    checkpoint: &Head,
    head: &Head,
    through: u64,
    stored: Option<&str>,
    asked: &str,
    slowest: Option<(&str, u64)>,
) -> Result<(), PruneRefusal> {
    if through <= checkpoint.seq {
        return Err(PruneRefusal::AlreadyPruned {
            checkpoint: checkpoint.seq,
        });
    }
    if through >= head.seq {
        return Err(PruneRefusal::NotBeforeHead {
            through,
            head: head.seq,
        });
    }
    let asked_count = through - checkpoint.seq;
    if asked_count > super::MAX_PRUNED {
        return Err(PruneRefusal::TooMany {
            asked: asked_count,
            max: super::MAX_PRUNED,
        });
    }
    if stored != Some(asked) {
        return Err(PruneRefusal::HashMismatch(through));
    }
    if let Some((receiver, delivered)) = slowest.filter(|(_, d)| through > *d) {
        return Err(PruneRefusal::Undelivered {
            receiver: receiver.to_owned(),
            delivered,
        });
    }
    Ok(())
}

/// Walks a run of the trail (in stored order) and reports the first break;
/// the number of events checked otherwise. `after` is the hash of the
/// event before the first one given ([`genesis`] from the beginning), and
/// `first_seq` the first one's expected number.
pub fn verify_chain(events: &[AuditEvent], first_seq: u64, after: &str) -> Result<u64, AuditBreak> {
    let mut prev = after;
    for (i, (e, expected)) in events.iter().zip(first_seq..).enumerate() {
        if e.seq != expected {
            let later = events[i + 1..].iter().any(|l| l.seq == expected);
            if e.seq < expected || later {
                return Err(AuditBreak::Reordered(e.seq));
            }
            return Err(AuditBreak::Removed {
                after: expected - 1,
                next: e.seq,
            });
        }
        if hash(e) != e.hash {
            return Err(AuditBreak::Changed(e.seq));
        }
        if e.prev_hash != prev {
            return Err(AuditBreak::Unlinked {
                previous: e.seq - 1,
                next: e.seq,
            });
        }
        prev = &e.hash;
    }
    Ok(events.len() as u64)
}

/// Whether a trail read (and chained) up to `last`, its last event's
/// number and hash, ends at the CA's recorded `head`. When the read found
/// no event, `last` is the event it started after.
pub fn ends_at_head(last: (u64, &str), head: &Head) -> Result<(), AuditBreak> {
    let (found, hash) = last;
    if found != head.seq {
        return Err(AuditBreak::Truncated {
            expected: head.seq,
            found,
        });
    }
    if hash != head.hash {
        return Err(AuditBreak::NotHead(found));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(n: u64) -> Vec<AuditEvent> {
        let mut prev = genesis();
        (1..=n)
            .map(|seq| {
                let mut e =
                    AuditEvent::new(OffsetDateTime::UNIX_EPOCH, Actor::Anonymous, "enroll", None);
                e.seq = seq;
                e.prev_hash = prev.clone();
                e.hash = hash(&e);
                prev = e.hash.clone();
                e
            })
            .collect()
    }

    #[test]
    fn a_read_ends_at_the_head_only_on_its_number_and_hash() {
        let events = chain(3);
        let head = Head {
            seq: 3,
            hash: events[2].hash.clone(),
        };
        assert_eq!(ends_at_head((3, &events[2].hash), &head), Ok(()));
        assert_eq!(
            ends_at_head((2, &events[1].hash), &head),
            Err(AuditBreak::Truncated {
                expected: 3,
                found: 2
            })
        );
        assert_eq!(
            ends_at_head((3, &events[1].hash), &head),
            Err(AuditBreak::NotHead(3))
        );
        let empty = Head {
            seq: 0,
            hash: genesis(),
        };
        assert_eq!(ends_at_head((0, &genesis()), &empty), Ok(()));
    }

    #[test]
    fn an_intact_chain_verifies() {
        assert_eq!(verify_chain(&[], 1, &genesis()), Ok(0));
        let c = chain(3);
        assert_eq!(verify_chain(&c, 1, &genesis()), Ok(3));
        assert_eq!(verify_chain(&c[1..], 2, &c[0].hash), Ok(2));
    }

    #[test]
    fn each_kind_of_tampering_is_named() {
        let mut changed = chain(3);
        changed[1].action = "renew".into();
        assert_eq!(
            verify_chain(&changed, 1, &genesis()),
            Err(AuditBreak::Changed(2))
        );

        let c = chain(3);
        let removed = vec![c[0].clone(), c[2].clone()];
        assert_eq!(
            verify_chain(&removed, 1, &genesis()),
            Err(AuditBreak::Removed { after: 1, next: 3 })
        );
        let reordered = vec![c[1].clone(), c[0].clone()];
        assert_eq!(
            verify_chain(&reordered, 1, &genesis()),
            Err(AuditBreak::Reordered(2))
        );

        let mut rehashed = chain(3);
        rehashed[1].action = "renew".into();
        rehashed[1].hash = hash(&rehashed[1]);
        assert_eq!(
            verify_chain(&rehashed, 1, &genesis()),
            Err(AuditBreak::Unlinked {
                previous: 2,
                next: 3
            })
        );
    }

    #[test]
    fn a_count_is_hashed_where_set_and_absent_otherwise() {
        let c = chain(1);
        // The hash of an event without a count is what it was before
        // counts existed: SHA-256 of these exact bytes.
        let before = br#"{"seq":1,"at":"1970-01-01T00:00:00Z","actor":{"kind":"anonymous"},"action":"enroll","subject":null,"serial":null,"not_after":null,"outcome":"ok","reason":null,"remote_addr":null,"request_id":null,"prev_hash":"0000000000000000000000000000000000000000000000000000000000000000"}"#;
        assert_eq!(
            c[0].hash,
            crate::hex(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, before).as_ref())
        );
        let mut counted = c[0].clone();
        counted.count = Some(5);
        assert_ne!(
            hash(&counted),
            c[0].hash,
            "the count is covered by the hash"
        );
        assert_eq!(
            verify_chain(&[counted], 1, &genesis()),
            Err(AuditBreak::Changed(1))
        );
        // So are the scopes and version an issuance records.
        let mut granted = c[0].clone();
        granted.scopes = Some(vec!["tickets:read".into()]);
        let scoped = hash(&granted);
        assert_ne!(scoped, c[0].hash);
        granted.version = Some(2);
        assert_ne!(hash(&granted), scoped);
        granted.scopes = Some(vec!["tickets:write".into()]);
        granted.hash = hash(&granted);
        let mut widened = granted.clone();
        widened.scopes = Some(vec!["tickets:read".into()]);
        assert_eq!(
            verify_chain(&[widened], 1, &genesis()),
            Err(AuditBreak::Changed(1))
        );
    }

    #[test]
    fn only_exported_events_before_the_last_are_pruned_a_bounded_number_at_a_time() {
        let c = chain(5);
        let none = Head::decode(None).unwrap();
        let head = Head {
            seq: 5,
            hash: c[4].hash.clone(),
        };
        let h3 = c[2].hash.as_str();
        assert_eq!(may_prune(&none, &head, 3, Some(h3), h3, None), Ok(()));
        assert_eq!(
            may_prune(&none, &head, 3, Some(h3), &c[1].hash, None),
            Err(PruneRefusal::HashMismatch(3))
        );
        assert_eq!(
            may_prune(&none, &head, 5, Some(&c[4].hash), &c[4].hash, None),
            Err(PruneRefusal::NotBeforeHead {
                through: 5,
                head: 5
            })
        );
        let at3 = Head {
            seq: 3,
            hash: h3.to_owned(),
        };
        assert_eq!(
            may_prune(&at3, &head, 3, Some(h3), h3, None),
            Err(PruneRefusal::AlreadyPruned { checkpoint: 3 })
        );
        assert_eq!(
            may_prune(&at3, &head, 4, Some(&c[3].hash), &c[3].hash, None),
            Ok(())
        );
        let far = Head {
            seq: super::super::MAX_PRUNED + 10,
            hash: genesis(),
        };
        assert_eq!(
            may_prune(
                &none,
                &far,
                super::super::MAX_PRUNED + 1,
                Some("x"),
                "x",
                None
            ),
            Err(PruneRefusal::TooMany {
                asked: super::super::MAX_PRUNED + 1,
                max: super::super::MAX_PRUNED
            })
        );
        assert_eq!(
            may_prune(&none, &far, super::super::MAX_PRUNED, None, "x", None),
            Err(PruneRefusal::HashMismatch(super::super::MAX_PRUNED)),
            "an event missing from the store is not pruned"
        );
        // A receiver that acknowledged up to 3 keeps 4 and later.
        let h4 = c[3].hash.as_str();
        assert_eq!(
            may_prune(&none, &head, 3, Some(h3), h3, Some(("siem", 3))),
            Ok(())
        );
        assert_eq!(
            may_prune(&none, &head, 4, Some(h4), h4, Some(("siem", 3))),
            Err(PruneRefusal::Undelivered {
                receiver: "siem".into(),
                delivered: 3
            })
        );
    }

    #[test]
    fn the_head_round_trips_and_a_damaged_one_is_corrupt() {
        let c = chain(2);
        let head = Head {
            seq: 2,
            hash: c[1].hash.clone(),
        };
        assert_eq!(Head::decode(Some(&head.encode())).unwrap(), head);
        assert_eq!(Head::decode(None).unwrap().seq, 0);
        assert!(matches!(
            Head::decode(Some(&[0; 39])),
            Err(StoreError::Corrupt { .. })
        ));
    }
}
