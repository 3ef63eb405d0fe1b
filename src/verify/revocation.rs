//! The verifier's revocation cache: the set of revoked serials, and how
//! fresh it is.
//!
//! It is fed by the CA's live feed (events in order, long-polled: see
//! [`feed`](crate::verify::feed)) and by signed CRLs (start-up snapshot and
//! fallback). A lookup is one hash-set probe under a read lock, nothing a
//! handshake notices.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use rustls_pki_types::CertificateDer;
use time::{Duration, OffsetDateTime};
use x509_parser::prelude::{FromDer, X509Certificate};

use super::grants::{Grants, ScopeRefusal};
use crate::bundle::TrustBundle;
use crate::wire::{FeedSnapshot, RevocationEvent, ScopeEvent, Serial};

/// How long a serial learned from a CRL (which does not say when the
/// certificate expires) is remembered: longer than any agentca certificate
/// lives.
const CRL_ENTRY_MEMORY: Duration = Duration::hours(25);

/// Why a CRL was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CrlError {
    /// The CRL or its issuer does not parse.
    #[error("the CRL or its issuer does not parse: {0}")]
    Malformed(String),
    /// The issuer is not a CA of the trust bundle or signed by one.
    #[error("the CRL's issuer is not trusted: {0}")]
    UntrustedIssuer(String),
    /// The CRL's signature does not verify with its issuer's key.
    #[error("the CRL's signature does not verify")]
    BadSignature,
    /// The CRL is past its nextUpdate (or before its thisUpdate).
    #[error("the CRL is not current: {0}")]
    NotCurrent(String),
}

#[derive(Default)]
struct State {
    /// Revoked serials, each with the time after which it no longer matters.
    revoked: HashMap<Serial, OffsetDateTime>,
    /// When the cache last knew the CA's state.
    synced_at: Option<OffsetDateTime>,
    /// The last feed event applied.
    feed_seq: u64,
    /// Scopes withdrawn from live certificates, and blocks.
    grants: Grants,
    /// When the scope state last reflected the CA's: only the feed and
    /// its snapshot carry it (a CRL does not).
    grants_synced_at: Option<OffsetDateTime>,
}

/// The revoked serials a verifier refuses, kept current by a feed or CRLs.
///
/// ```
/// use agentca::verify::RevocationCache;
/// use agentca::wire::Serial;
/// use time::{Duration, OffsetDateTime};
///
/// let now = OffsetDateTime::now_utc();
/// let cache = RevocationCache::new();
/// assert!(cache.staleness(now, Duration::seconds(60)).is_some(), "never synchronised");
/// cache.apply_feed(&[], 0, now);
/// assert!(cache.staleness(now, Duration::seconds(60)).is_none());
///
/// let serial: Serial = "4a5b6c".parse().unwrap();
/// cache.insert(serial.clone(), now + Duration::minutes(5));
/// assert!(cache.is_revoked(&serial));
/// cache.prune(now + Duration::minutes(6));
/// assert!(!cache.is_revoked(&serial), "forgotten once its certificate expired");
/// ```
#[derive(Default)]
pub struct RevocationCache {
    state: RwLock<State>,
}

impl std::fmt::Debug for RevocationCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.read();
        f.debug_struct("RevocationCache")
            .field("revoked", &state.revoked.len())
            .field("synced_at", &state.synced_at)
            .field("feed_seq", &state.feed_seq)
            .field("blocks", &state.grants.blocks())
            .field("withdrawals", &state.grants.withdrawals())
            .finish()
    }
}

impl RevocationCache {
    /// An empty cache that has never been in sync (a verifier using it
    /// refuses everyone until it is, unless it fails open).
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether `serial` is revoked.
    pub fn is_revoked(&self, serial: &Serial) -> bool {
        self.read().revoked.contains_key(serial)
    }

    /// How many serials the cache holds.
    pub fn len(&self) -> usize {
        self.read().revoked.len()
    }

    /// Whether the cache holds no serial.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// When the cache last reflected the CA's state.
    pub fn synced_at(&self) -> Option<OffsetDateTime> {
        self.read().synced_at
    }

    /// The last feed event applied (0 before any): ask the feed for events
    /// after it.
    pub fn feed_position(&self) -> u64 {
        self.read().feed_seq
    }

    /// `None` while the cache is at most `bound` old at `now`; otherwise a
    /// description of how stale it is.
    pub fn staleness(&self, now: OffsetDateTime, bound: Duration) -> Option<String> {
        stale(self.read().synced_at, now, bound)
    }

    /// [`RevocationCache::staleness`] of the scope state (withdrawals and
    /// blocks), which only the CA's feed brings: a CRL does not.
    pub fn scopes_staleness(&self, now: OffsetDateTime, bound: Duration) -> Option<String> {
        stale(self.read().grants_synced_at, now, bound)
    }

    /// Whether a certificate with `serial` carrying `granted` may be used
    /// for `scope` ([`Grants::usable`]).
    pub fn scope_usable(
        &self,
        serial: &Serial,
        granted: &[String],
        scope: &str,
    ) -> Result<(), ScopeRefusal> {
        self.read().grants.usable(serial, granted, scope)
    }

    /// [`RevocationCache::scope_usable`], then, unless `fail_open`, whether
    /// the scope state is within `bound` of `now` (else
    /// [`ScopeRefusal::Unknown`]): the one look a request's scope check
    /// takes at the cache.
    pub fn scope_usable_now(
        &self,
        serial: &Serial,
        granted: &[String],
        scope: &str,
        now: OffsetDateTime,
        bound: Duration,
        fail_open: bool,
    ) -> Result<(), ScopeRefusal> {
        let state = self.read();
        state.grants.usable(serial, granted, scope)?;
        if !fail_open && stale(state.grants_synced_at, now, bound).is_some() {
            return Err(ScopeRefusal::Unknown);
        }
        Ok(())
    }

    /// Adds `serial` until `until` (tests, or a revocation learned some
    /// other way).
    pub fn insert(&self, serial: Serial, until: OffsetDateTime) {
        self.write().revoked.insert(serial, until);
    }

    /// Applies feed events (in order) and records that the cache reflects
    /// the CA as of `fresh_at` (when the request that returned them was
    /// sent) and feed position `latest`.
    pub fn apply_feed(&self, events: &[RevocationEvent], latest: u64, fresh_at: OffsetDateTime) {
        self.apply(events, None, latest, fresh_at);
    }

    /// [`RevocationCache::apply_feed`] with the page's scope events: the
    /// scope state (withdrawals and blocks) is then as fresh as the page.
    /// Only this keeps it fresh: a cache fed with `apply_feed` alone (or
    /// CRLs) refuses every scope check once the staleness bound passes.
    pub fn apply_page(
        &self,
        events: &[RevocationEvent],
        scopes: &[ScopeEvent],
        latest: u64,
        fresh_at: OffsetDateTime,
    ) {
        self.apply(events, Some(scopes), latest, fresh_at);
    }

    fn apply(
        &self,
        events: &[RevocationEvent],
        scopes: Option<&[ScopeEvent]>,
        latest: u64,
        fresh_at: OffsetDateTime,
    ) {
        let mut state = self.write();
        // A page read twice (a retry) must not replay a block lifted since.
        let applied = state.feed_seq;
        for e in events {
            state.revoked.insert(e.serial.clone(), e.not_after);
            state.feed_seq = state.feed_seq.max(e.seq);
        }
        if let Some(scopes) = scopes {
            for e in scopes.iter().filter(|e| e.seq > applied) {
                state.grants.apply(e);
            }
            if let Some(last) = scopes.iter().map(|e| e.seq).max() {
                state.feed_seq = state.feed_seq.max(last);
            }
            state.grants_synced_at =
                Some(state.grants_synced_at.map_or(fresh_at, |t| t.max(fresh_at)));
        }
        state.feed_seq = state.feed_seq.max(latest);
        state.synced_at = Some(state.synced_at.map_or(fresh_at, |t| t.max(fresh_at)));
    }

    /// Loads the CA's state at one feed position (`GET
    /// /v1/revocations/snapshot`), fetched at `fresh_at`: the revoked
    /// serials are added, the scope state is replaced, and the feed is
    /// followed from the snapshot's position.
    pub fn load_snapshot(&self, snapshot: &FeedSnapshot, fresh_at: OffsetDateTime) {
        let mut grants = Grants::default();
        for e in &snapshot.scopes {
            grants.apply(e);
        }
        let mut state = self.write();
        for r in &snapshot.revoked {
            state.revoked.insert(r.serial.clone(), r.not_after);
        }
        state.grants = grants;
        state.feed_seq = snapshot.latest;
        state.synced_at = Some(state.synced_at.map_or(fresh_at, |t| t.max(fresh_at)));
        state.grants_synced_at = Some(fresh_at);
    }

    /// Forgets serials whose certificates expired before `now`: they are
    /// refused as expired anyway.
    pub fn prune(&self, now: OffsetDateTime) {
        let mut state = self.write();
        state.revoked.retain(|_, until| *until >= now);
        state.grants.prune(now);
    }

    /// Loads a DER CRL signed by `issuer` (the CA's issuing intermediate, or
    /// a root of `bundle`), after checking that `issuer` is a root of
    /// `bundle` or signed by one, that the CRL's signature verifies with
    /// its key, and that it is current at `now`. Returns how many serials
    /// it listed. The cache is then as fresh as the CRL's thisUpdate.
    pub fn load_crl(
        &self,
        crl_der: &[u8],
        issuer: &CertificateDer<'_>,
        bundle: &TrustBundle,
        now: OffsetDateTime,
    ) -> Result<usize, CrlError> {
        let (_, crl) =
            x509_parser::parse_x509_crl(crl_der).map_err(|e| CrlError::Malformed(e.to_string()))?;
        let (_, issuer) =
            X509Certificate::from_der(issuer).map_err(|e| CrlError::Malformed(e.to_string()))?;
        check_issuer(&issuer, bundle, now)?;
        if crl.issuer() != issuer.subject() {
            return Err(CrlError::UntrustedIssuer(
                "the CRL names another issuer".into(),
            ));
        }
        crl.verify_signature(issuer.public_key())
            .map_err(|_| CrlError::BadSignature)?;
        let this_update = crl.last_update().to_datetime();
        let next_update = crl
            .next_update()
            .map(|t| t.to_datetime())
            .ok_or_else(|| CrlError::NotCurrent("it has no nextUpdate".into()))?;
        if now >= next_update {
            return Err(CrlError::NotCurrent(format!(
                "its nextUpdate {next_update} has passed"
            )));
        }
        if now + Duration::minutes(5) < this_update {
            return Err(CrlError::NotCurrent(format!(
                "its thisUpdate {this_update} is in the future"
            )));
        }
        let until = now + CRL_ENTRY_MEMORY;
        let serials: Vec<Serial> = crl
            .iter_revoked_certificates()
            .filter_map(|r| Serial::from_bytes(r.raw_serial()).ok())
            .collect();
        let mut state = self.write();
        let count = serials.len();
        for serial in serials {
            state.revoked.entry(serial).or_insert(until);
        }
        state.synced_at = Some(state.synced_at.map_or(this_update, |t| t.max(this_update)));
        Ok(count)
    }
}

/// `None` when `synced_at` is at most `bound` before `now`; otherwise how
/// stale it is.
fn stale(
    synced_at: Option<OffsetDateTime>,
    now: OffsetDateTime,
    bound: Duration,
) -> Option<String> {
    match synced_at {
        None => Some("never synchronised with the CA".into()),
        Some(at) if now - at > bound => Some(format!(
            "last synchronised {} s ago, more than the {} s allowed",
            (now - at).whole_seconds(),
            bound.whole_seconds()
        )),
        Some(_) => None,
    }
}

/// Checks that `issuer` is a CA of `bundle`, or a CA certificate signed by
/// one and valid at `now`.
fn check_issuer(
    issuer: &X509Certificate<'_>,
    bundle: &TrustBundle,
    now: OffsetDateTime,
) -> Result<(), CrlError> {
    if !issuer.is_ca() {
        return Err(CrlError::UntrustedIssuer(
            "it is not a CA certificate".into(),
        ));
    }
    let validity = issuer.validity();
    if now < validity.not_before.to_datetime() || now > validity.not_after.to_datetime() {
        return Err(CrlError::UntrustedIssuer("it is not valid now".into()));
    }
    for root in bundle.roots() {
        let Ok((_, root)) = X509Certificate::from_der(root) else {
            continue;
        };
        if root.tbs_certificate.as_ref() == issuer.tbs_certificate.as_ref() {
            return Ok(());
        }
        if root.subject() == issuer.issuer()
            && issuer.verify_signature(Some(root.public_key())).is_ok()
        {
            return Ok(());
        }
    }
    Err(CrlError::UntrustedIssuer(
        "it does not chain to the trust bundle".into(),
    ))
}
