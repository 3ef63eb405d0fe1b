//! Keeping a [`RevocationCache`] current from the CA (feature `feed`).
//!
//! [`subscribe`] starts a task that loads the CA's state at one feed
//! position (`GET /v1/revocations/snapshot`: revoked serials, scopes
//! withdrawn from live certificates, blocks), then long-polls the CA's
//! feed from there (`GET /v1/revocations?since=N`): the CA answers as soon
//! as a revocation, a withdrawal or a block happens, so the cache learns
//! of it within a round trip. When the feed fails, the task retries with
//! exponential backoff and jitter, falls back to the CRL meanwhile (which
//! carries revocations, not scopes), and loads a snapshot again once the
//! CA answers. A CA without the snapshot endpoint (an earlier version)
//! gives its CRL as the start-up state. The cache's freshness is what the verifier's
//! staleness bound is measured against, so a CA outage shorter than the
//! bound goes unnoticed by clients, and a longer one makes the verifier
//! refuse (or not, if it fails open).
//!
//! ```no_run
//! # async fn run(bundle: agentca::bundle::TrustBundle) -> Result<(), agentca::verify::feed::FeedError> {
//! use agentca::verify::{feed, RevocationCache};
//!
//! let cache = RevocationCache::new();
//! let subscription = feed::subscribe("https://ca.internal:8443", bundle, cache.clone())?;
//! // ... build the verifier with `.revocation(cache)`; keep `subscription`
//! // alive for as long as the service runs (dropping it stops the task).
//! # drop(subscription); Ok(()) }
//! ```

use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;

use super::RevocationCache;
use crate::bundle::TrustBundle;
use crate::ca_tls::{client_config, CaTrust};
use crate::endpoints::{worth_another_replica, Endpoints};
use crate::wire::RevocationPage;

/// How long each poll asks the CA to wait for news.
pub const POLL_WAIT: Duration = Duration::from_secs(20);
/// First retry delay after a failure.
pub const BACKOFF_BASE: Duration = Duration::from_millis(250);
/// Longest retry delay.
pub const BACKOFF_MAX: Duration = Duration::from_secs(10);
/// Largest answer read from the CA (a snapshot lists every revoked,
/// unexpired serial).
const MAX_BODY: usize = crate::wire::MAX_SNAPSHOT_BYTES;

/// Why the subscription could not start.
#[derive(Debug, thiserror::Error)]
pub enum FeedError {
    /// A CA URL is not a valid `https://` URL.
    #[error("the CA URL {0:?} is not a valid https:// URL")]
    InvalidUrl(String),
    /// The TLS configuration could not be built.
    #[error(transparent)]
    Tls(#[from] crate::ca_tls::TlsConfigError),
    /// The HTTP client could not be built.
    #[error("HTTP client: {0}")]
    Http(String),
}

/// The delay before retry number `attempt` (from 1): exponential from
/// [`BACKOFF_BASE`] up to [`BACKOFF_MAX`], scaled by `jitter` (0 to 1) into
/// its upper half, so that services that lost the CA together do not all
/// come back at once.
pub fn backoff(attempt: u32, jitter: f64) -> Duration {
    crate::ca_tls::half_jittered(BACKOFF_BASE, BACKOFF_MAX, attempt, jitter)
}

/// A running subscription. Dropping it stops the task.
#[derive(Debug)]
pub struct Subscription {
    task: tokio::task::JoinHandle<()>,
    synced: tokio::sync::watch::Receiver<bool>,
}

impl Subscription {
    /// Waits until the cache has been in sync with the CA once (a snapshot,
    /// a feed answer, or a CRL from a CA without snapshots), at most
    /// `timeout`; returns whether it has. A service
    /// that starts listening before then refuses every caller, its
    /// revocation data being stale.
    pub async fn synced(&self, timeout: Duration) -> bool {
        let mut rx = self.synced.clone();
        tokio::time::timeout(timeout, rx.wait_for(|s| *s))
            .await
            .is_ok_and(|r| r.is_ok())
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts keeping `cache` current from the CA at `ca_url`, trusting it by
/// `bundle`. Needs a tokio runtime.
///
/// `ca_url` may list several replicas of the CA, separated by commas: when
/// one cannot be reached or answers a 5xx, the subscription moves to the
/// next and resumes from the last sequence number it has, so that it
/// misses nothing and sees nothing twice (every replica numbers the feed
/// the same).
pub fn subscribe(
    ca_url: &str,
    bundle: TrustBundle,
    cache: Arc<RevocationCache>,
) -> Result<Subscription, FeedError> {
    let endpoints = Endpoints::parse(ca_url).map_err(FeedError::InvalidUrl)?;
    let tls = client_config(&CaTrust::Bundle(bundle.clone()), None)?;
    let http = reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .https_only(true)
        .connect_timeout(Duration::from_secs(5))
        .timeout(POLL_WAIT + Duration::from_secs(10))
        .build()
        .map_err(|e| FeedError::Http(e.to_string()))?;
    let (synced_tx, synced) = tokio::sync::watch::channel(false);
    let feed = Feed {
        endpoints,
        http,
        bundle,
        cache,
        synced: synced_tx,
    };
    Ok(Subscription {
        task: tokio::spawn(feed.run()),
        synced,
    })
}

struct Feed {
    endpoints: Endpoints,
    http: reqwest::Client,
    bundle: TrustBundle,
    cache: Arc<RevocationCache>,
    synced: tokio::sync::watch::Sender<bool>,
}

impl Feed {
    async fn run(self) {
        match self.load_state().await {
            Ok(()) => {
                self.synced.send_replace(true);
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not load the CA's state at start-up; relying on the feed")
            }
        }
        let mut failures: u32 = 0;
        loop {
            if failures > 0 {
                // Back after a gap: start again from the CA's state rather
                // than replay what was missed.
                if let Err(e) = self.load_snapshot().await {
                    tracing::debug!(error = %e, "no snapshot after the gap; following the feed");
                }
            }
            let since = self.cache.feed_position();
            let sent_at = OffsetDateTime::now_utc();
            match self.poll(since).await {
                Ok(page) => {
                    if failures > 0 {
                        tracing::info!(after = failures, "revocation feed reachable again");
                    }
                    failures = 0;
                    if !page.events.is_empty() || !page.scopes.is_empty() {
                        tracing::info!(
                            revocations = page.events.len(),
                            scope_events = page.scopes.len(),
                            latest = page.latest,
                            "feed events received"
                        );
                    }
                    self.cache
                        .apply_page(&page.events, &page.scopes, page.latest, sent_at);
                    self.cache.prune(OffsetDateTime::now_utc());
                    self.synced.send_replace(true);
                }
                Err(e) => {
                    failures += 1;
                    if failures == 1 || failures.is_multiple_of(10) {
                        tracing::warn!(error = %e, failures, "revocation feed unreachable; retrying");
                    }
                    // The CRL may be reachable when the feed is not (another
                    // listener, a cache in between).
                    if failures % 3 == 1 {
                        match self.load_crl().await {
                            Ok(_) => {
                                self.synced.send_replace(true);
                            }
                            Err(e) => tracing::debug!(error = %e, "CRL fallback failed too"),
                        }
                    }
                    tokio::time::sleep(backoff(failures, crate::ca_tls::jitter())).await;
                }
            }
        }
    }

    /// `GET path` from the first replica that answers it.
    async fn get(&self, path: &str) -> Result<Vec<u8>, String> {
        let mut failure = String::new();
        for (index, base) in self.endpoints.in_order() {
            let outcome = self.http.get(format!("{base}{path}")).send().await;
            if !worth_another_replica(&outcome.as_ref().map(|r| r.status())) {
                let resp = outcome.map_err(|e| format!("{base}: {e}"))?;
                self.endpoints.answered(index);
                return Self::read(path, resp).await;
            }
            failure = match outcome {
                Ok(resp) => format!("{base}{path}: HTTP {}", resp.status()),
                Err(e) => format!("{base}: {e}"),
            };
            tracing::debug!(%failure, "trying another CA replica");
        }
        Err(failure)
    }

    async fn read(path: &str, mut resp: reqwest::Response) -> Result<Vec<u8>, String> {
        if !resp.status().is_success() {
            return Err(format!("{path}: HTTP {}", resp.status()));
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| e.to_string())? {
            if body.len() + chunk.len() > MAX_BODY {
                return Err(format!("{path}: answer larger than {MAX_BODY} bytes"));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }

    async fn poll(&self, since: u64) -> Result<RevocationPage, String> {
        let body = self
            .get(&format!(
                "/v1/revocations?since={since}&wait={}",
                POLL_WAIT.as_secs()
            ))
            .await?;
        serde_json::from_slice(&body).map_err(|e| format!("invalid feed page: {e}"))
    }

    /// The CA's state at start-up: its snapshot, or its CRL when it has
    /// none (an earlier version).
    async fn load_state(&self) -> Result<(), String> {
        match self.load_snapshot().await {
            Ok(()) => Ok(()),
            Err(snapshot) => {
                tracing::debug!(error = %snapshot, "no snapshot; loading the CRL");
                self.load_crl()
                    .await
                    .map(|_| ())
                    .map_err(|crl| format!("snapshot: {snapshot}; CRL: {crl}"))
            }
        }
    }

    async fn load_snapshot(&self) -> Result<(), String> {
        let sent_at = OffsetDateTime::now_utc();
        let body = self.get("/v1/revocations/snapshot").await?;
        let snapshot: crate::wire::FeedSnapshot =
            serde_json::from_slice(&body).map_err(|e| format!("invalid snapshot: {e}"))?;
        tracing::debug!(
            latest = snapshot.latest,
            revoked = snapshot.revoked.len(),
            scope_events = snapshot.scopes.len(),
            "snapshot loaded"
        );
        self.cache.load_snapshot(&snapshot, sent_at);
        Ok(())
    }

    async fn load_crl(&self) -> Result<usize, String> {
        let chain = self.get("/v1/intermediates").await?;
        let issuer = crate::certs_from_pem(&chain)
            .map_err(|e| e.to_string())?
            .into_iter()
            .next()
            .ok_or("no intermediate certificate")?;
        let crl = self.get("/v1/crl").await?;
        let count = self
            .cache
            .load_crl(&crl, &issuer, &self.bundle, OffsetDateTime::now_utc())
            .map_err(|e| e.to_string())?;
        tracing::debug!(count, "CRL loaded");
        Ok(count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_cap_within_the_jitter_band() {
        assert_eq!(backoff(1, 0.0), Duration::from_millis(125));
        assert_eq!(backoff(1, 1.0), Duration::from_millis(250));
        assert_eq!(backoff(2, 1.0), Duration::from_millis(500));
        assert_eq!(backoff(3, 0.5), Duration::from_millis(750));
        assert_eq!(backoff(10, 1.0), BACKOFF_MAX);
        assert_eq!(backoff(10, 0.0), BACKOFF_MAX / 2);
        assert_eq!(backoff(u32::MAX, 1.0), BACKOFF_MAX);
        assert_eq!(backoff(0, 1.0), BACKOFF_BASE);
    }
}
