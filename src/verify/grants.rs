//! Which scopes a live certificate may still be used for.
//!
//! A certificate carries the scopes its registration granted when it was
//! issued. Two things take a scope away before the certificate expires,
//! both learned from the CA's feed:
//!
//! - a **withdrawal**: the registration lost the scope after the
//!   certificate was issued (the CA lists the certificates that carry it);
//! - a **block**: an operator's kill switch for one scope, for every
//!   certificate or the listed ones, until it is lifted.
//!
//! [`Grants::usable`] is the one rule; the verifier asks it for every
//! scope check. Everything here is a pure function of the events applied.

use std::collections::{BTreeMap, HashMap};

use time::OffsetDateTime;

use crate::wire::{ScopeChange, ScopeEvent, Serial};

/// Why a certificate may not be used for a scope.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScopeRefusal {
    /// The certificate does not carry it.
    NotGranted,
    /// The registration lost it after the certificate was issued.
    Withdrawn,
    /// An operator blocked it.
    Blocked,
    /// The verifier's knowledge of withdrawals and blocks is staler than
    /// allowed (or it never had any): it cannot tell.
    Unknown,
}

impl ScopeRefusal {
    /// The stable code a service answers with.
    pub fn code(self) -> &'static str {
        match self {
            ScopeRefusal::NotGranted => "missing_scope",
            ScopeRefusal::Withdrawn => "scope_withdrawn",
            ScopeRefusal::Blocked => "scope_blocked",
            ScopeRefusal::Unknown => "revocation_stale",
        }
    }
}

impl std::fmt::Display for ScopeRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ScopeRefusal::NotGranted => "its certificate does not carry the scope",
            ScopeRefusal::Withdrawn => {
                "the scope was withdrawn from its registration after its certificate was issued"
            }
            ScopeRefusal::Blocked => "the scope is blocked by the CA's operator",
            ScopeRefusal::Unknown => {
                "this service does not know the CA's current scope withdrawals and blocks"
            }
        })
    }
}

/// A block in force.
#[derive(Clone, Debug, Default)]
struct Block {
    scope: String,
    /// `None`: every certificate.
    serials: Option<Vec<Serial>>,
}

/// What one certificate lost: scopes withdrawn, and blocks that list it.
#[derive(Clone, Debug, Default)]
struct Marks {
    withdrawn: Vec<String>,
    /// When its withdrawals stop mattering (its notAfter).
    not_after: Option<OffsetDateTime>,
    /// Blocks listing it: (block, scope).
    blocked: Vec<(u64, String)>,
}

/// The withdrawals and blocks a verifier knows of, indexed so that a check
/// is two hash lookups however many there are: the certificate's marks,
/// and the scopes blocked for every certificate.
#[derive(Clone, Debug, Default)]
pub struct Grants {
    blocks: BTreeMap<u64, Block>,
    /// Blocks of every certificate: scope → how many.
    global: HashMap<String, usize>,
    marks: HashMap<Serial, Marks>,
}

impl Grants {
    /// Whether a certificate with serial `serial` that carries `granted`
    /// may be used for `scope`.
    pub fn usable(
        &self,
        serial: &Serial,
        granted: &[String],
        scope: &str,
    ) -> Result<(), ScopeRefusal> {
        if !granted.iter().any(|s| s == scope) {
            return Err(ScopeRefusal::NotGranted);
        }
        if self.global.contains_key(scope) {
            return Err(ScopeRefusal::Blocked);
        }
        if let Some(marks) = self.marks.get(serial) {
            if marks.blocked.iter().any(|(_, s)| s == scope) {
                return Err(ScopeRefusal::Blocked);
            }
            if marks.withdrawn.iter().any(|s| s == scope) {
                return Err(ScopeRefusal::Withdrawn);
            }
        }
        Ok(())
    }

    /// Applies one event (events come in feed order).
    pub fn apply(&mut self, event: &ScopeEvent) {
        match &event.change {
            ScopeChange::Withdrawn {
                serial,
                scopes,
                not_after,
            } => {
                let marks = self.marks.entry(serial.clone()).or_default();
                for s in scopes {
                    if !marks.withdrawn.contains(s) {
                        marks.withdrawn.push(s.clone());
                    }
                }
                marks.not_after = Some(marks.not_after.map_or(*not_after, |t| t.max(*not_after)));
            }
            ScopeChange::Blocked {
                block,
                scope,
                serials,
                ..
            } => {
                let known = self.blocks.contains_key(block);
                let entry = self.blocks.entry(*block).or_insert_with(|| Block {
                    scope: scope.clone(),
                    serials: serials.as_ref().map(|_| Vec::new()),
                });
                match (&mut entry.serials, serials) {
                    (Some(all), Some(more)) => {
                        for serial in more {
                            let marks = self.marks.entry(serial.clone()).or_default();
                            if !marks.blocked.iter().any(|(b, _)| b == block) {
                                marks.blocked.push((*block, scope.clone()));
                                all.push(serial.clone());
                            }
                        }
                    }
                    (None, _) if !known => *self.global.entry(scope.clone()).or_default() += 1,
                    _ => {}
                }
            }
            ScopeChange::Unblocked { block } => {
                let Some(lifted) = self.blocks.remove(block) else {
                    return;
                };
                match lifted.serials {
                    None => {
                        if let Some(n) = self.global.get_mut(&lifted.scope) {
                            *n -= 1;
                            if *n == 0 {
                                self.global.remove(&lifted.scope);
                            }
                        }
                    }
                    Some(serials) => {
                        for serial in serials {
                            if let Some(marks) = self.marks.get_mut(&serial) {
                                marks.blocked.retain(|(b, _)| b != block);
                                if marks.blocked.is_empty() && marks.withdrawn.is_empty() {
                                    self.marks.remove(&serial);
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    /// Forgets withdrawals of certificates that expired before `now`
    /// (they are refused as expired anyway); what blocks list stays until
    /// they are lifted.
    pub fn prune(&mut self, now: OffsetDateTime) {
        self.marks.retain(|_, m| {
            if m.not_after.is_some_and(|t| t < now) {
                m.withdrawn.clear();
                m.not_after = None;
            }
            !m.withdrawn.is_empty() || !m.blocked.is_empty()
        });
    }

    /// Blocks in force.
    pub fn blocks(&self) -> usize {
        self.blocks.len()
    }

    /// Certificates with withdrawn scopes.
    pub fn withdrawals(&self) -> usize {
        self.marks
            .values()
            .filter(|m| !m.withdrawn.is_empty())
            .count()
    }
}

#[cfg(test)]
mod tests {
    use time::Duration;

    use super::*;

    fn t0() -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap()
    }

    fn serial(n: u8) -> Serial {
        Serial::from_bytes(&[0x40, n]).unwrap()
    }

    fn event(seq: u64, change: ScopeChange) -> ScopeEvent {
        ScopeEvent {
            seq,
            at: t0(),
            change,
        }
    }

    fn scopes(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    fn blocked(block: u64, scope: &str, serials: Option<&[u8]>) -> ScopeChange {
        ScopeChange::Blocked {
            block,
            scope: scope.into(),
            serials: serials.map(|s| s.iter().map(|n| serial(*n)).collect()),
            target: None,
        }
    }

    #[test]
    fn a_scope_must_be_carried_by_the_certificate() {
        let g = Grants::default();
        let carried = scopes(&["tickets:read"]);
        assert_eq!(g.usable(&serial(1), &carried, "tickets:read"), Ok(()));
        assert_eq!(
            g.usable(&serial(1), &carried, "tickets:write"),
            Err(ScopeRefusal::NotGranted)
        );
        // Exact match only.
        assert_eq!(
            g.usable(&serial(1), &carried, "tickets"),
            Err(ScopeRefusal::NotGranted)
        );
    }

    #[test]
    fn a_withdrawal_takes_one_scope_from_one_certificate() {
        let mut g = Grants::default();
        let carried = scopes(&["tickets:read", "tickets:write"]);
        g.apply(&event(
            1,
            ScopeChange::Withdrawn {
                serial: serial(1),
                scopes: scopes(&["tickets:read"]),
                not_after: t0() + Duration::minutes(5),
            },
        ));
        assert_eq!(
            g.usable(&serial(1), &carried, "tickets:read"),
            Err(ScopeRefusal::Withdrawn)
        );
        // Its other scope still works, and other certificates are untouched.
        assert_eq!(g.usable(&serial(1), &carried, "tickets:write"), Ok(()));
        assert_eq!(g.usable(&serial(2), &carried, "tickets:read"), Ok(()));
    }

    #[test]
    fn a_withdrawal_is_forgotten_only_once_its_certificate_expired() {
        let mut g = Grants::default();
        let until = t0() + Duration::minutes(5);
        g.apply(&event(
            1,
            ScopeChange::Withdrawn {
                serial: serial(1),
                scopes: scopes(&["a"]),
                not_after: until,
            },
        ));
        // At its notAfter the certificate is still valid: kept.
        g.prune(until);
        assert_eq!(g.withdrawals(), 1);
        g.prune(until + Duration::seconds(1));
        assert_eq!(g.withdrawals(), 0);
    }

    #[test]
    fn a_targeted_block_reaches_the_listed_certificates_until_lifted() {
        let mut g = Grants::default();
        let carried = scopes(&["pay", "read"]);
        g.apply(&event(5, blocked(5, "pay", Some(&[1, 2]))));
        // A block that reached many certificates comes in several events.
        g.apply(&event(6, blocked(5, "pay", Some(&[3]))));
        for n in [1, 2, 3] {
            assert_eq!(
                g.usable(&serial(n), &carried, "pay"),
                Err(ScopeRefusal::Blocked)
            );
            assert_eq!(g.usable(&serial(n), &carried, "read"), Ok(()));
        }
        assert_eq!(g.usable(&serial(4), &carried, "pay"), Ok(()));
        g.apply(&event(7, ScopeChange::Unblocked { block: 5 }));
        assert_eq!(g.usable(&serial(1), &carried, "pay"), Ok(()));
        assert_eq!(g.blocks(), 0);
    }

    #[test]
    fn a_global_block_reaches_every_certificate_and_lifting_another_keeps_it() {
        let mut g = Grants::default();
        let carried = scopes(&["pay"]);
        g.apply(&event(1, blocked(1, "pay", None)));
        g.apply(&event(2, blocked(2, "pay", Some(&[9]))));
        g.apply(&event(3, ScopeChange::Unblocked { block: 2 }));
        assert_eq!(
            g.usable(&serial(42), &carried, "pay"),
            Err(ScopeRefusal::Blocked)
        );
        // Lifting an unknown block changes nothing.
        g.apply(&event(4, ScopeChange::Unblocked { block: 77 }));
        assert_eq!(g.blocks(), 1);
        g.apply(&event(5, ScopeChange::Unblocked { block: 1 }));
        assert_eq!(g.usable(&serial(42), &carried, "pay"), Ok(()));
    }

    #[test]
    fn expiry_forgets_withdrawals_and_keeps_what_blocks_list_until_lifted() {
        let mut g = Grants::default();
        let carried = scopes(&["pay", "read"]);
        let until = t0() + Duration::minutes(5);
        g.apply(&event(
            1,
            ScopeChange::Withdrawn {
                serial: serial(1),
                scopes: scopes(&["read"]),
                not_after: until,
            },
        ));
        g.apply(&event(2, blocked(2, "pay", Some(&[1]))));
        // Two global blocks of one scope: lifting one leaves the other.
        g.apply(&event(3, blocked(3, "audit", None)));
        g.apply(&event(4, blocked(4, "audit", None)));
        g.prune(until + Duration::seconds(1));
        assert_eq!(g.withdrawals(), 0);
        assert_eq!(g.usable(&serial(1), &carried, "read"), Ok(()));
        assert_eq!(
            g.usable(&serial(1), &carried, "pay"),
            Err(ScopeRefusal::Blocked)
        );
        g.apply(&event(5, ScopeChange::Unblocked { block: 2 }));
        assert_eq!(g.usable(&serial(1), &carried, "pay"), Ok(()));
        assert!(g.marks.is_empty(), "nothing left to remember");
        let audit = scopes(&["audit"]);
        g.apply(&event(6, ScopeChange::Unblocked { block: 3 }));
        assert_eq!(
            g.usable(&serial(9), &audit, "audit"),
            Err(ScopeRefusal::Blocked)
        );
        g.apply(&event(7, ScopeChange::Unblocked { block: 4 }));
        assert_eq!(g.usable(&serial(9), &audit, "audit"), Ok(()));
    }

    #[test]
    fn a_block_applies_even_to_a_certificate_whose_scope_was_withdrawn() {
        let mut g = Grants::default();
        let carried = scopes(&["pay"]);
        g.apply(&event(1, blocked(1, "pay", None)));
        g.apply(&event(
            2,
            ScopeChange::Withdrawn {
                serial: serial(1),
                scopes: scopes(&["pay"]),
                not_after: t0(),
            },
        ));
        // Both stand: the block is what refuses it.
        assert_eq!(
            g.usable(&serial(1), &carried, "pay"),
            Err(ScopeRefusal::Blocked)
        );
        // Lifting the block does not restore the withdrawn scope.
        g.apply(&event(3, ScopeChange::Unblocked { block: 1 }));
        assert_eq!(
            g.usable(&serial(1), &carried, "pay"),
            Err(ScopeRefusal::Withdrawn)
        );
    }
}
