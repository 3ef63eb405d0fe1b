//! Revocation as the rest of the world sees it: the CRLs, the OCSP
//! responder and the live feed, all kept in memory and current.
//!
//! The store holds the truth (each certificate's revocation, one feed event
//! per revoked certificate, and the CRLs every replica serves). This service
//! keeps what is served in step with it:
//!
//! - the feed ([`follow`]): the events not yet pruned, from this replica's
//!   commits and from the store (other replicas' commits, heard as
//!   notifications or found by polling), always without gaps and in
//!   sequence order;
//! - the CRLs ([`publish`]): the intermediate's, rebuilt after every
//!   revocation and halfway through its validity, and the root's covering
//!   the intermediate, re-signed while the root key is available; each
//!   published to the store, and the newest published one served.

pub mod crl;
mod follow;
pub mod ocsp;
mod publish;

pub use publish::{RootCrlSource, RootSigner};

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use agentca::wire::Serial;
use arc_swap::{ArcSwap, ArcSwapOption};
use time::{Duration, OffsetDateTime};
use tokio::sync::{mpsc, watch, Notify};

use crate::issuance::issuer::IssuingCa;
use crate::state::records::{CrlIssuer, RevocationEvent, ScopeEventRecord};
use crate::state::{FeedEvents, Ledger, Records};
use crate::store::StoreError;
use crl::SignedCrl;
use ocsp::Responder;

/// Counter of the intermediate's CRL numbers.
const CRL_NUMBER: &str = "crl_number";
/// Counter of the root's CRL numbers.
const ROOT_CRL_NUMBER: &str = "root_crl_number";
/// Most feed events in one page.
pub const MAX_FEED_PAGE: usize = 1000;

/// Settings of the revocation service.
#[derive(Clone, Debug)]
pub struct RevocationConfig {
    /// Validity of the intermediate's CRL.
    pub crl_validity: Duration,
    /// Validity of OCSP responses.
    pub ocsp_validity: Duration,
    /// Validity of the root's CRL.
    pub root_crl_validity: Duration,
    /// How long after expiry certificate records are kept.
    pub retention: Duration,
}

impl Default for RevocationConfig {
    fn default() -> Self {
        Self {
            crl_validity: Duration::minutes(5),
            ocsp_validity: Duration::minutes(5),
            root_crl_validity: Duration::days(30),
            retention: Duration::hours(24),
        }
    }
}

/// One page of the feed.
#[derive(Debug)]
pub struct FeedPage {
    /// Revocations after the requested sequence number, in order.
    pub events: Vec<RevocationEvent>,
    /// Scope events after it, in order.
    pub scopes: Vec<ScopeEventRecord>,
    /// The newest sequence number when the page was read.
    pub latest: u64,
}

/// The feed's state at one position ([`Revocations::snapshot`]).
#[derive(Debug)]
pub struct FeedState {
    /// The position.
    pub latest: u64,
    /// Revocations of certificates not expired.
    pub revoked: Vec<RevocationEvent>,
    /// Withdrawals from live certificates and blocks in force, in order.
    pub scopes: Vec<ScopeEventRecord>,
}

/// The revocation service.
pub struct Revocations {
    ca: Arc<IssuingCa>,
    records: Records,
    writer: Ledger,
    config: RevocationConfig,
    responder: Responder,
    feed: RwLock<BTreeMap<u64, RevocationEvent>>,
    /// The feed's scope events, numbered with the revocations.
    scopes: RwLock<BTreeMap<u64, ScopeEventRecord>>,
    latest: watch::Sender<u64>,
    crl: ArcSwap<SignedCrl>,
    crl_covers: watch::Sender<u64>,
    root: Option<RootSigner>,
    root_crl: ArcSwapOption<SignedCrl>,
    dirty: Notify,
    /// Whether other replicas write the store too.
    shared: bool,
    /// When the feed last caught up with a shared store.
    synced: std::sync::Mutex<Option<OffsetDateTime>>,
    /// Reads of the store for new revocations that failed in a row.
    catch_up_failures: std::sync::atomic::AtomicU32,
}

/// Why the service could not start or work.
#[derive(Debug, thiserror::Error)]
pub enum RevocationError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Signing failed.
    #[error("could not sign: {0}")]
    Sign(String),
    /// A CRL published in the store does not parse.
    #[error("the published CRL does not parse: {0}")]
    Published(String),
    /// The root CRL file could not be read or written.
    #[error("root CRL {path}: {detail}")]
    RootCrl {
        /// The file.
        path: PathBuf,
        /// What failed.
        detail: String,
    },
}

impl Revocations {
    /// Loads the feed from the store, signs and publishes a first CRL (and
    /// the root's, if its key is here), and starts the tasks that keep them
    /// current. `committed` brings the revocations of this replica's
    /// commits, in order.
    pub async fn start(
        ca: Arc<IssuingCa>,
        records: Records,
        writer: Ledger,
        config: RevocationConfig,
        root: RootCrlSource,
        committed: mpsc::UnboundedReceiver<FeedEvents>,
        now: OffsetDateTime,
    ) -> Result<Arc<Self>, RevocationError> {
        // The sequence first: the events read after it include every one
        // numbered up to it (other replicas' commits in between are above
        // it, and are caught up with later).
        let latest = records.sequence(crate::state::change::REVOCATION_SEQ)?;
        let mut events = records.revocation_events()?;
        events.retain(|e| e.seq <= latest);
        let scopes: BTreeMap<u64, ScopeEventRecord> = records
            .scope_events_after(0, usize::MAX)?
            .into_iter()
            .filter(|e| e.seq <= latest)
            .map(|e| (e.seq, e))
            .collect();
        let feed: BTreeMap<u64, RevocationEvent> = events.into_iter().map(|e| (e.seq, e)).collect();
        let responder = Responder::new(&ca, config.ocsp_validity)
            .map_err(|e| RevocationError::Sign(e.to_string()))?;
        let number = publish::bump(&writer, CRL_NUMBER).await?;
        let signed = publish::sign_crl(&ca, &feed, number, now, config.crl_validity)?;
        let (first, covers) =
            publish::publish(&writer, CrlIssuer::Intermediate, signed, latest).await?;
        let (root, root_crl) = match root {
            RootCrlSource::Signer(signer) => {
                let crl = publish::load_or_sign_root_crl(&signer, &records, &writer, &config, now)
                    .await?;
                (Some(*signer), Some(Arc::new(crl)))
            }
            RootCrlSource::File(path) => (None, publish::read_root_crl(&path)?.map(Arc::new)),
            RootCrlSource::None => (None, None),
        };
        let commits = records.store().commits();
        let service = Arc::new(Self {
            ca,
            records,
            writer,
            config,
            responder,
            feed: RwLock::new(feed),
            scopes: RwLock::new(scopes),
            latest: watch::Sender::new(latest),
            crl: ArcSwap::from_pointee(first),
            crl_covers: watch::Sender::new(covers),
            root,
            root_crl: ArcSwapOption::new(root_crl),
            dirty: Notify::new(),
            shared: commits.is_some(),
            synced: std::sync::Mutex::new(Some(now)),
            catch_up_failures: std::sync::atomic::AtomicU32::new(0),
        });
        tokio::spawn(service.clone().follow(committed, commits));
        tokio::spawn(service.clone().keep_crls_current());
        tokio::spawn(service.clone().prune_expired());
        Ok(service)
    }

    /// How many revoked certificates have not expired by `now`.
    pub fn revoked_unexpired(&self, now: OffsetDateTime) -> u64 {
        let feed = self.feed.read().unwrap_or_else(|p| p.into_inner());
        feed.values().filter(|e| e.not_after > now).count() as u64
    }

    /// The root's current CRL, if there is one.
    pub fn root_crl(&self) -> Option<Arc<SignedCrl>> {
        self.root_crl.load_full()
    }

    /// Waits until the CRL lists every revocation up to `seq` (at most
    /// `wait`); returns whether it does.
    pub async fn wait_listed(&self, seq: u64, wait: std::time::Duration) -> bool {
        let mut covers = self.crl_covers.subscribe();
        tokio::time::timeout(wait, covers.wait_for(|c| *c >= seq))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Feed events after `since`, at most `limit`; when there are none,
    /// waits up to `wait` for one.
    pub async fn feed_since(
        &self,
        since: u64,
        limit: usize,
        wait: std::time::Duration,
    ) -> FeedPage {
        let mut latest = self.latest.subscribe();
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let page = self.page(since, limit.clamp(1, MAX_FEED_PAGE));
            // Events up to `latest` may have been pruned (their certificates
            // expired long ago): then there is nothing to wait for, and the
            // client moves on to `latest`.
            if !page.events.is_empty() || !page.scopes.is_empty() || page.latest > since {
                return page;
            }
            match tokio::time::timeout_at(deadline, latest.wait_for(|l| *l > since)).await {
                Ok(Ok(_)) => continue,
                // Timed out, or the service is shutting down.
                _ => return self.page(since, limit.clamp(1, MAX_FEED_PAGE)),
            }
        }
    }

    /// Up to `limit` events after `since`, of both kinds, in sequence
    /// order; `latest` is the last one's when the page is full.
    fn page(&self, since: u64, limit: usize) -> FeedPage {
        // `latest` moves only after its events are in the maps: read it
        // first, and the page holds every event up to it.
        let latest = *self.latest.borrow();
        let feed = self.feed.read().unwrap_or_else(|p| p.into_inner());
        let scopes = self.scopes.read().unwrap_or_else(|p| p.into_inner());
        let from = since.saturating_add(1);
        let mut revoked = feed.range(from..=latest.max(from)).peekable();
        let mut scoped = scopes.range(from..=latest.max(from)).peekable();
        let mut page = FeedPage {
            events: Vec::new(),
            scopes: Vec::new(),
            latest,
        };
        for taken in 0..limit {
            let next_is_revocation = match (revoked.peek(), scoped.peek()) {
                (Some((a, _)), Some((b, _))) => a < b,
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (None, None) => break,
            };
            let seq = if next_is_revocation {
                let (seq, e) = revoked.next().expect("peeked");
                page.events.push(e.clone());
                *seq
            } else {
                let (seq, e) = scoped.next().expect("peeked");
                page.scopes.push(e.clone());
                *seq
            };
            if taken + 1 == limit {
                page.latest = seq;
            }
        }
        page
    }

    /// The feed's state now: the position, the revocations of
    /// certificates not expired at `now`, and the scope events in force
    /// (withdrawals from live certificates, blocks not lifted).
    pub fn snapshot(&self, now: OffsetDateTime) -> FeedState {
        use crate::state::records::ScopeChangeRecord;
        let latest = *self.latest.borrow();
        let feed = self.feed.read().unwrap_or_else(|p| p.into_inner());
        let scopes = self.scopes.read().unwrap_or_else(|p| p.into_inner());
        let lifted: std::collections::HashSet<u64> = scopes
            .range(..=latest)
            .filter_map(|(_, e)| match e.change {
                ScopeChangeRecord::Unblocked { block, .. } => Some(block),
                _ => None,
            })
            .collect();
        FeedState {
            latest,
            revoked: feed
                .range(..=latest)
                .map(|(_, e)| e)
                .filter(|e| e.not_after >= now)
                .cloned()
                .collect(),
            scopes: scopes
                .range(..=latest)
                .map(|(_, e)| e)
                .filter(|e| match &e.change {
                    ScopeChangeRecord::Withdrawn { not_after, .. } => *not_after >= now,
                    ScopeChangeRecord::Blocked { block, .. } => !lifted.contains(block),
                    ScopeChangeRecord::Unblocked { .. } => false,
                })
                .cloned()
                .collect(),
        }
    }

    /// Answers an OCSP request (DER).
    pub fn ocsp(&self, request: &[u8], now: OffsetDateTime) -> ocsp::Answer {
        self.responder.respond(&self.ca, request, now, |serial| {
            self.known_status(serial, now)
        })
    }

    /// The status of `serial` and when it was known to be right: from the
    /// store, now; when the store does not answer, from the feed as it was
    /// when it last was complete (see [`Revocations::synced_at`]).
    fn known_status(
        &self,
        serial: &Serial,
        now: OffsetDateTime,
    ) -> Result<(ocsp::Status, OffsetDateTime), StoreError> {
        // While reads of the store fail, do not wait on it for every answer.
        let stored = if self.store_failing() {
            StoreError::Backend {
                backend: self.records.store().backend(),
                detail: "the store did not answer the last read".into(),
            }
        } else {
            match self.status(serial) {
                Ok(status) => return Ok((status, now)),
                Err(e) => e,
            }
        };
        let Some(synced) = self.synced_at(now) else {
            return Err(stored);
        };
        let feed = self.feed.read().unwrap_or_else(|p| p.into_inner());
        let status = match feed.values().find(|e| e.serial == *serial) {
            Some(e) => ocsp::Status::Revoked {
                at: e.revoked_at,
                reason: e.reason,
            },
            // Not revoked as far as anyone knew then.
            None => ocsp::Status::Good,
        };
        Ok((status, synced))
    }

    /// Whether the last read of a shared store for new revocations failed
    /// (it is tried twice a second): then answers come from memory at once
    /// rather than after the store's timeout.
    fn store_failing(&self) -> bool {
        self.shared
            && self
                .catch_up_failures
                .load(std::sync::atomic::Ordering::Relaxed)
                > 0
    }

    /// Until when the feed is known to hold every revocation committed: for
    /// a store only this process writes, always (every commit passes
    /// through it); for a shared store, the start of the last read that
    /// caught up with the store. While the store is unreachable nothing can
    /// be revoked anywhere, so the feed stays right as of that time.
    fn synced_at(&self, now: OffsetDateTime) -> Option<OffsetDateTime> {
        if self.shared {
            *self.synced.lock().unwrap_or_else(|p| p.into_inner())
        } else {
            Some(now)
        }
    }

    /// What the CA knows of `serial`.
    pub fn status(&self, serial: &Serial) -> Result<ocsp::Status, StoreError> {
        Ok(match self.records.cert(serial)? {
            None => ocsp::Status::Unknown,
            Some(cert) => match cert.revoked {
                Some(r) => ocsp::Status::Revoked {
                    at: r.at,
                    reason: r.reason,
                },
                None => ocsp::Status::Good,
            },
        })
    }
}
