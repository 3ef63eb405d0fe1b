//! Identities verified during TLS handshakes, kept for the moment between
//! the handshake and [`serve::accept`](super::serve::accept) asking who is
//! on the other end.
//!
//! A full handshake through a [`Verifier`](super::Verifier)'s server
//! configuration has just verified the client's whole chain; verifying it
//! again in `accept` doubled the cost of each connection's verification.
//! So the handshake leaves the identity here, keyed by the leaf's bytes,
//! and `accept` takes it (once). A leaf not found here (a resumed session,
//! whose handshake verified nothing; a configuration with another
//! verifier; an entry gone stale) is verified in full, so that nothing is
//! ever accepted unverified.
//!
//! A service that never calls `accept` (its own accept loop over
//! `Verifier::server_config`) pays nothing: identities are kept only once
//! `accept` has asked for one.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::PeerIdentity;

/// Most identities waiting to be taken.
const MAX_WAITING: usize = 4096;

/// How long an identity waits to be taken: longer than a handshake takes
/// to reach `accept`'s return, shorter than anything that matters.
const FRESH_FOR: Duration = Duration::from_secs(30);

type Waiting = HashMap<Vec<u8>, (PeerIdentity, Instant)>;

/// Identities verified in handshakes, by the leaf certificate's bytes.
#[derive(Default)]
pub(super) struct Handshaken {
    /// Whether `accept` has taken (or looked for) an identity yet.
    wanted: AtomicBool,
    waiting: Mutex<Waiting>,
}

impl Handshaken {
    fn lock(&self) -> std::sync::MutexGuard<'_, Waiting> {
        self.waiting.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Keeps `peer`, verified from `leaf` at `now`, to be taken, once
    /// `accept` is in use. When too many wait (handshakes not followed by
    /// `accept`), stale ones go; if that is not enough, this one is not
    /// kept.
    pub(super) fn keep(&self, leaf: &[u8], peer: PeerIdentity, now: Instant) {
        if !self.wanted.load(Ordering::Relaxed) {
            return;
        }
        let mut waiting = self.lock();
        if waiting.len() >= MAX_WAITING {
            waiting.retain(|_, (_, at)| now.saturating_duration_since(*at) < FRESH_FOR);
            if waiting.len() >= MAX_WAITING {
                return;
            }
        }
        waiting.insert(leaf.to_vec(), (peer, now));
    }

    /// Takes the identity a handshake verified from `leaf`, if it is fresh
    /// at `now`.
    pub(super) fn take(&self, leaf: &[u8], now: Instant) -> Option<PeerIdentity> {
        self.wanted.store(true, Ordering::Relaxed);
        let (peer, at) = self.lock().remove(leaf)?;
        (now.saturating_duration_since(at) < FRESH_FOR).then_some(peer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer() -> PeerIdentity {
        PeerIdentity {
            spiffe_id: "spiffe://example.org/tenant/acme/env/prod/agent/bot"
                .parse()
                .unwrap(),
            instance_id: None,
            serial: "4a5b".parse().unwrap(),
            not_after: time::OffsetDateTime::UNIX_EPOCH,
            scopes: Vec::new(),
        }
    }

    #[test]
    fn nothing_is_kept_until_accept_asks() {
        let h = Handshaken::default();
        let t0 = Instant::now();
        h.keep(b"leaf", peer(), t0);
        assert!(h.lock().is_empty(), "no accept yet: nothing kept");
        assert!(h.take(b"leaf", t0).is_none());
        h.keep(b"leaf", peer(), t0);
        assert_eq!(h.take(b"leaf", t0), Some(peer()));
    }

    #[test]
    fn an_identity_is_taken_once_and_only_while_fresh() {
        let h = Handshaken::default();
        let t0 = Instant::now();
        h.take(b"", t0);
        h.keep(b"leaf", peer(), t0);
        assert!(h.take(b"other", t0).is_none());
        assert_eq!(h.take(b"leaf", t0), Some(peer()));
        assert!(h.take(b"leaf", t0).is_none(), "taken once");

        h.keep(b"leaf", peer(), t0);
        assert!(h.take(b"leaf", t0 + FRESH_FOR).is_none(), "stale");
    }

    #[test]
    fn the_waiting_identities_stay_bounded() {
        let h = Handshaken::default();
        let t0 = Instant::now();
        h.take(b"", t0);
        for i in 0..MAX_WAITING + 10 {
            h.keep(&i.to_be_bytes(), peer(), t0);
        }
        assert_eq!(h.lock().len(), MAX_WAITING);
        // Once they are stale, new ones take their place.
        h.keep(b"new", peer(), t0 + FRESH_FOR);
        assert_eq!(h.lock().len(), 1);
    }
}
