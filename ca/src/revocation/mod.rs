//! Revocation as the rest of the world sees it: the CRLs, the OCSP
//! responder and the live feed, all kept in memory and current.
//!
//! The store holds the truth (each certificate's revocation, and one feed
//! event per revoked certificate). This service keeps what is served from
//! memory in step with it: the feed events not yet pruned, the intermediate's
//! CRL (rebuilt after every revocation and halfway through its validity),
//! and the root's CRL covering the intermediate (re-signed while the root key
//! is available).

pub mod crl;
pub mod ocsp;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use agentca::wire::Serial;
use arc_swap::{ArcSwap, ArcSwapOption};
use rcgen::{Issuer, KeyPair};
use time::{Duration, OffsetDateTime};
use tokio::sync::{mpsc, watch, Notify};

use crate::issuance::issuer::IssuingCa;
use crate::state::records::RevocationEvent;
use crate::state::{retention, Applied, Change, Ledger, Records};
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

/// The root CA's key, when it is available to re-sign the root's CRL.
pub struct RootSigner {
    issuer: Issuer<'static, KeyPair>,
    /// Where the root's CRL is kept between runs (DER).
    path: PathBuf,
}

impl RootSigner {
    /// The root signer for the root certificate `root_der` and its key; the
    /// root CRL is written to `path`.
    pub fn new(
        root_der: &rustls_pki_types::CertificateDer<'_>,
        key: KeyPair,
        path: PathBuf,
    ) -> Result<Self, String> {
        let issuer = Issuer::from_ca_cert_der(root_der, key)
            .map_err(|e| format!("the root is not usable: {e}"))?;
        Ok(Self { issuer, path })
    }
}

/// Where the root's CRL comes from.
pub enum RootCrlSource {
    /// Signed (and re-signed before it expires) with the root key.
    Signer(Box<RootSigner>),
    /// Read from a file signed where the root key is kept offline.
    File(PathBuf),
    /// No root CRL.
    None,
}

/// One page of the feed.
#[derive(Debug)]
pub struct FeedPage {
    /// Events after the requested sequence number, in order.
    pub events: Vec<RevocationEvent>,
    /// The newest sequence number when the page was read.
    pub latest: u64,
}

/// The revocation service.
pub struct Revocations {
    ca: Arc<IssuingCa>,
    records: Records,
    writer: Ledger,
    config: RevocationConfig,
    responder: Responder,
    feed: RwLock<BTreeMap<u64, RevocationEvent>>,
    latest: watch::Sender<u64>,
    crl: ArcSwap<SignedCrl>,
    crl_covers: watch::Sender<u64>,
    root: Option<RootSigner>,
    root_crl: ArcSwapOption<SignedCrl>,
    dirty: Notify,
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
    /// Loads the feed from the store, signs a first CRL (and the root's,
    /// if its key is here), and starts the tasks that keep them current.
    pub async fn start(
        ca: Arc<IssuingCa>,
        records: Records,
        writer: Ledger,
        config: RevocationConfig,
        root: RootCrlSource,
        committed: mpsc::UnboundedReceiver<Vec<RevocationEvent>>,
        now: OffsetDateTime,
    ) -> Result<Arc<Self>, RevocationError> {
        let events = records.revocation_events()?;
        let latest = events
            .last()
            .map_or(0, |e| e.seq)
            .max(records.sequence(crate::state::change::REVOCATION_SEQ)?);
        let feed: BTreeMap<u64, RevocationEvent> = events.into_iter().map(|e| (e.seq, e)).collect();
        let responder = Responder::new(&ca, config.ocsp_validity)
            .map_err(|e| RevocationError::Sign(e.to_string()))?;
        let number = bump(&writer, CRL_NUMBER).await?;
        let first = sign_crl(&ca, &feed, number, now, config.crl_validity)?;
        let (root, root_crl) = match root {
            RootCrlSource::Signer(signer) => {
                let crl = load_or_sign_root_crl(&signer, &writer, &config, now).await?;
                (Some(*signer), Some(Arc::new(crl)))
            }
            RootCrlSource::File(path) => (None, read_root_crl(&path)?.map(Arc::new)),
            RootCrlSource::None => (None, None),
        };
        let service = Arc::new(Self {
            ca,
            records,
            writer,
            config,
            responder,
            feed: RwLock::new(feed),
            latest: watch::Sender::new(latest),
            crl: ArcSwap::from_pointee(first),
            crl_covers: watch::Sender::new(latest),
            root,
            root_crl: ArcSwapOption::new(root_crl),
            dirty: Notify::new(),
        });
        tokio::spawn(service.clone().publish_committed(committed));
        tokio::spawn(service.clone().keep_crls_current());
        tokio::spawn(service.clone().prune_expired());
        Ok(service)
    }

    /// How many revoked certificates have not expired by `now`.
    pub fn revoked_unexpired(&self, now: OffsetDateTime) -> u64 {
        let feed = self.feed.read().unwrap_or_else(|p| p.into_inner());
        feed.values().filter(|e| e.not_after > now).count() as u64
    }

    /// The intermediate's current CRL.
    pub fn crl(&self) -> Arc<SignedCrl> {
        self.crl.load_full()
    }

    /// The root's current CRL, if there is one.
    pub fn root_crl(&self) -> Option<Arc<SignedCrl>> {
        self.root_crl.load_full()
    }

    /// Publishes the revocations of each commit, in commit order: into the
    /// feed, then the CRL. The store writer is the only sender, so events
    /// arrive in sequence order and `latest` never runs ahead of the feed.
    async fn publish_committed(
        self: Arc<Self>,
        mut events: mpsc::UnboundedReceiver<Vec<RevocationEvent>>,
    ) {
        while let Some(batch) = events.recv().await {
            let Some(max) = batch.iter().map(|e| e.seq).max() else {
                continue;
            };
            {
                let mut feed = self.feed.write().unwrap_or_else(|p| p.into_inner());
                for e in batch {
                    feed.insert(e.seq, e);
                }
            }
            self.latest.send_if_modified(|latest| {
                let newer = max > *latest;
                *latest = (*latest).max(max);
                newer
            });
            self.dirty.notify_one();
        }
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
            if !page.events.is_empty() || page.latest > since {
                return page;
            }
            match tokio::time::timeout_at(deadline, latest.wait_for(|l| *l > since)).await {
                Ok(Ok(_)) => continue,
                // Timed out, or the service is shutting down.
                _ => return self.page(since, limit.clamp(1, MAX_FEED_PAGE)),
            }
        }
    }

    fn page(&self, since: u64, limit: usize) -> FeedPage {
        let feed = self.feed.read().unwrap_or_else(|p| p.into_inner());
        FeedPage {
            events: feed
                .range(since.saturating_add(1)..)
                .take(limit)
                .map(|(_, e)| e.clone())
                .collect(),
            latest: *self.latest.borrow(),
        }
    }

    /// Answers an OCSP request (DER).
    pub fn ocsp(&self, request: &[u8], now: OffsetDateTime) -> ocsp::Answer {
        self.responder
            .respond(&self.ca, request, now, |serial| self.status(serial))
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

    async fn rebuild_crl(&self, now: OffsetDateTime) -> Result<(), RevocationError> {
        let covers = *self.latest.borrow();
        let number = bump(&self.writer, CRL_NUMBER).await?;
        let crl = {
            let feed = self.feed.read().unwrap_or_else(|p| p.into_inner());
            sign_crl(&self.ca, &feed, number, now, self.config.crl_validity)?
        };
        tracing::debug!(number, entries = crl.entries, "CRL rebuilt");
        self.crl.store(Arc::new(crl));
        self.crl_covers.send_if_modified(|c| {
            let newer = covers > *c;
            *c = (*c).max(covers);
            newer
        });
        Ok(())
    }

    /// Rebuilds the CRL after revocations and before it gets old; re-signs
    /// the root CRL before it expires.
    async fn keep_crls_current(self: Arc<Self>) {
        loop {
            let now = OffsetDateTime::now_utc();
            let mut next = crl::refresh_at(&self.crl());
            if self.root.is_some() {
                if let Some(root_crl) = self.root_crl() {
                    next = next.min(crl::refresh_at(&root_crl));
                }
            }
            let wait = (next - now).max(Duration::ZERO).unsigned_abs();
            tokio::select! {
                () = self.dirty.notified() => {}
                () = tokio::time::sleep(wait) => {}
            }
            let now = OffsetDateTime::now_utc();
            if let Err(e) = self.rebuild_crl(now).await {
                tracing::error!(error = %e, "could not rebuild the CRL; retrying in a second");
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                self.dirty.notify_one();
                continue;
            }
            if let (Some(signer), Some(root_crl)) = (&self.root, self.root_crl()) {
                if now >= crl::refresh_at(&root_crl) {
                    match sign_root_crl(signer, &self.writer, &self.config, now).await {
                        Ok(fresh) => self.root_crl.store(Some(Arc::new(fresh))),
                        Err(e) => tracing::error!(error = %e, "could not re-sign the root CRL"),
                    }
                }
            }
        }
    }

    /// Deletes the records of certificates (and tokens) that expired longer
    /// than the retention window ago, and their feed events.
    async fn prune_expired(self: Arc<Self>) {
        // Every minute, or more often for a short retention window.
        let period: Duration =
            (self.config.retention / 10_i32).clamp(Duration::seconds(1), Duration::minutes(1));
        let mut tick = tokio::time::interval(period.unsigned_abs());
        loop {
            tick.tick().await;
            let before = retention::cutoff(OffsetDateTime::now_utc(), self.config.retention);
            if let Err(e) = self.prune(before).await {
                tracing::error!(error = %e, "pruning expired records failed");
            }
            if let Err(e) = self.reconcile() {
                tracing::error!(error = %e, "reconciling the feed with the store failed");
            }
        }
    }

    /// Adds to the feed any revocation the store holds and the feed lacks: a
    /// safety net for a commit whose outcome was lost (a store error after
    /// the data was written), so that the CRL never stays behind the store.
    fn reconcile(&self) -> Result<(), StoreError> {
        // Committed events are a contiguous run of sequence numbers (less
        // the pruned ones), so adding them all keeps the feed in order.
        let stored = self.records.revocation_events()?;
        let now = OffsetDateTime::now_utc();
        let mut missing = Vec::new();
        {
            let feed = self.feed.read().unwrap_or_else(|p| p.into_inner());
            for e in stored {
                if !feed.contains_key(&e.seq) && e.not_after > now {
                    missing.push(e);
                }
            }
        }
        let Some(max) = missing.iter().map(|e| e.seq).max() else {
            return Ok(());
        };
        {
            let mut feed = self.feed.write().unwrap_or_else(|p| p.into_inner());
            for e in missing {
                feed.insert(e.seq, e);
            }
        }
        self.latest.send_if_modified(|latest| {
            let newer = max > *latest;
            *latest = (*latest).max(max);
            newer
        });
        self.dirty.notify_one();
        Ok(())
    }

    /// Prunes what [`retention::prunable`] lets go at the cut-off `before`.
    pub async fn prune(&self, before: OffsetDateTime) -> Result<(usize, usize), StoreError> {
        const BATCH: usize = 5_000;
        let (mut certs, mut tokens) = (0, 0);
        loop {
            let outcome = self
                .writer
                .apply(Change::Prune {
                    before,
                    limit: BATCH,
                })
                .await?;
            let Ok(Applied::Pruned {
                certs: c,
                tokens: t,
            }) = outcome
            else {
                break;
            };
            certs += c;
            tokens += t;
            if c < BATCH && t < BATCH {
                break;
            }
        }
        {
            let mut feed = self.feed.write().unwrap_or_else(|p| p.into_inner());
            feed.retain(|_, e| !retention::prunable(e.not_after, before));
        }
        if certs + tokens > 0 {
            tracing::info!(
                certs,
                tokens,
                "pruned records that expired before the retention window"
            );
        }
        Ok((certs, tokens))
    }
}

async fn bump(writer: &Ledger, name: &'static str) -> Result<u64, StoreError> {
    match writer.apply(Change::BumpCounter(name.to_owned())).await? {
        Ok(Applied::Counter(n)) => Ok(n),
        other => Err(StoreError::Corrupt {
            table: "meta",
            detail: format!("bumping {name} gave {other:?}"),
        }),
    }
}

/// The CRL of the feed's events whose certificates have not expired at `now`.
fn sign_crl(
    ca: &IssuingCa,
    feed: &BTreeMap<u64, RevocationEvent>,
    number: u64,
    now: OffsetDateTime,
    validity: Duration,
) -> Result<SignedCrl, RevocationError> {
    let entries: Vec<crl::Entry> = feed
        .values()
        .filter(|e| e.not_after > now)
        .map(|e| crl::Entry {
            serial: e.serial.clone(),
            revoked_at: e.revoked_at,
            reason: e.reason,
        })
        .collect();
    let urls = &ca.distribution().crl;
    crl::sign(ca.issuer(), &entries, number, now, validity, Some(urls))
        .map_err(|e| RevocationError::Sign(e.to_string()))
}

/// The root CRL: no entries, since agentca does not revoke its intermediate
/// while running (rotating it means a new `init`).
async fn sign_root_crl(
    signer: &RootSigner,
    writer: &Ledger,
    config: &RevocationConfig,
    now: OffsetDateTime,
) -> Result<SignedCrl, RevocationError> {
    let number = bump(writer, ROOT_CRL_NUMBER).await?;
    let crl = crl::sign(
        &signer.issuer,
        &[],
        number,
        now,
        config.root_crl_validity,
        None,
    )
    .map_err(|e| RevocationError::Sign(e.to_string()))?;
    crate::datadir::write_file(&signer.path, &crl.der, false).map_err(|e| {
        RevocationError::RootCrl {
            path: signer.path.clone(),
            detail: e.to_string(),
        }
    })?;
    tracing::info!(number, next_update = %crl.next_update, "root CRL signed");
    Ok(crl)
}

async fn load_or_sign_root_crl(
    signer: &RootSigner,
    writer: &Ledger,
    config: &RevocationConfig,
    now: OffsetDateTime,
) -> Result<SignedCrl, RevocationError> {
    if let Some(existing) = read_root_crl(&signer.path)? {
        if now < crl::refresh_at(&existing) {
            return Ok(existing);
        }
    }
    sign_root_crl(signer, writer, config, now).await
}

/// Reads a root CRL written by an earlier run (or signed offline).
fn read_root_crl(path: &PathBuf) -> Result<Option<SignedCrl>, RevocationError> {
    let der = match std::fs::read(path) {
        Ok(der) => der,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(RevocationError::RootCrl {
                path: path.clone(),
                detail: e.to_string(),
            })
        }
    };
    let bad = |detail: String| RevocationError::RootCrl {
        path: path.clone(),
        detail,
    };
    let (_, parsed) = x509_parser::parse_x509_crl(&der).map_err(|e| bad(e.to_string()))?;
    let next_update = parsed
        .next_update()
        .map(|t| t.to_datetime())
        .ok_or_else(|| bad("it has no nextUpdate".into()))?;
    let number = parsed
        .crl_number()
        .and_then(|n| n.to_u64_digits().first().copied())
        .unwrap_or(0);
    let pem = crl::pem_of(&der);
    Ok(Some(SignedCrl {
        entries: parsed.iter_revoked_certificates().count(),
        this_update: parsed.last_update().to_datetime(),
        next_update,
        number,
        pem,
        der,
    }))
}
