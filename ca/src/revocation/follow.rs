//! Keeping the feed in step with the store, and pruning it.
//!
//! Revocations reach the feed two ways: this replica's commits (from its
//! writer, in commit order), and the store itself, read after the last
//! event known: when the store says another replica committed
//! ([`crate::store::Store::commits`]), when a commit of this replica skips
//! sequence numbers (another replica's events came between), and by
//! polling, for notifications that were missed. Either way the feed grows
//! in sequence order without gaps, so `latest` never runs ahead of it.

use std::sync::Arc;

use time::{Duration, OffsetDateTime};
use tokio::sync::{mpsc, watch};

use super::{Revocations, MAX_FEED_PAGE};
use crate::state::records::CrlIssuer;
use crate::state::{retention, Applied, Change, Conflict, FeedEvents};
use crate::store::StoreError;

/// How often a replica of a shared store reads the store for revocations
/// it was not told about: a bound on how late a missed notification makes
/// it.
pub const SHARED_POLL: std::time::Duration = std::time::Duration::from_millis(500);
/// The same for a store only this process writes, where it only guards
/// against a commit whose outcome was lost.
const OWN_POLL: std::time::Duration = std::time::Duration::from_secs(60);

impl Revocations {
    /// Adds revocations to the feed as they are committed, here or by
    /// other replicas.
    pub(super) async fn follow(
        self: Arc<Self>,
        mut committed: mpsc::UnboundedReceiver<FeedEvents>,
        mut commits: Option<watch::Receiver<u64>>,
    ) {
        let mut poll = tokio::time::interval(if commits.is_some() {
            SHARED_POLL
        } else {
            OWN_POLL
        });
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                batch = committed.recv() => match batch {
                    Some(batch) => self.add_committed(batch),
                    None => return,
                },
                heard = changed(&mut commits) => {
                    if !heard {
                        commits = None;
                    }
                    self.catch_up_logged();
                }
                _ = poll.tick() => self.catch_up_logged(),
            }
        }
    }

    /// Adds the feed events of one of this replica's commits.
    fn add_committed(&self, batch: FeedEvents) {
        let seqs = batch.revoked.iter().map(|e| e.seq);
        let Some(first) = seqs.chain(batch.scopes.iter().map(|e| e.seq)).min() else {
            return;
        };
        if first > self.latest.borrow().saturating_add(1) {
            // Other replicas' events came in between: they are committed,
            // so the store has them.
            self.catch_up_logged();
        }
        self.add(batch);
    }

    fn catch_up_logged(&self) {
        use std::sync::atomic::Ordering;
        match self.catch_up() {
            Ok(()) => {
                let failed = self.catch_up_failures.swap(0, Ordering::Relaxed);
                if failed > 0 {
                    tracing::info!(
                        after = failed,
                        "reading new revocations from the store again"
                    );
                }
            }
            Err(e) => {
                // Polled twice a second: say it once, then once a minute.
                let failed = self.catch_up_failures.fetch_add(1, Ordering::Relaxed) + 1;
                if failed == 1 || failed.is_multiple_of(120) {
                    tracing::warn!(error = %e, failed, "could not read new revocations from the store");
                }
            }
        }
    }

    /// Adds every revocation the store holds after the last one known, and
    /// serves a newer published CRL if there is one.
    fn catch_up(&self) -> Result<(), StoreError> {
        let began = OffsetDateTime::now_utc();
        loop {
            let after = *self.latest.borrow();
            // The sequence first: every event numbered up to it is
            // committed, so both reads below see all of them. Events a
            // commit adds between the two reads are numbered above it and
            // wait for the next pass: read alone, one kind could move
            // `latest` past an event of the other kind not read yet.
            let upto = self
                .records
                .sequence(crate::state::change::REVOCATION_SEQ)?;
            if upto <= after {
                break;
            }
            let mut revoked = self.records.revocation_events_after(after, MAX_FEED_PAGE)?;
            let mut scopes = self.records.scope_events_after(after, MAX_FEED_PAGE)?;
            // A full list may stop before events of the other kind: keep
            // only what both lists cover, so the feed has no gap.
            let full = [
                (revoked.len() == MAX_FEED_PAGE).then(|| revoked.last().map(|e| e.seq)),
                (scopes.len() == MAX_FEED_PAGE).then(|| scopes.last().map(|e| e.seq)),
            ]
            .into_iter()
            .flatten()
            .flatten()
            .min();
            let covered = full.map_or(upto, |f| f.min(upto));
            revoked.retain(|e| e.seq <= covered);
            scopes.retain(|e| e.seq <= covered);
            self.add(FeedEvents { revoked, scopes });
            if full.is_none() {
                break;
            }
        }
        if self.shared {
            if let Some(published) = self.records.published_crl(CrlIssuer::Intermediate)? {
                if published.number > self.crl.load().number {
                    if let Err(e) = self.adopt(published) {
                        tracing::error!(error = %e, "the published CRL does not parse");
                    }
                }
            }
        }
        let mut synced = self.synced.lock().unwrap_or_else(|p| p.into_inner());
        *synced = Some(synced.map_or(began, |s| s.max(began)));
        Ok(())
    }

    /// Adds `events`, which follow the feed without a gap, and moves
    /// `latest` to the last.
    fn add(&self, events: FeedEvents) {
        let seqs = events.revoked.iter().map(|e| e.seq);
        let Some(max) = seqs.chain(events.scopes.iter().map(|e| e.seq)).max() else {
            return;
        };
        {
            let mut feed = self.feed.write().unwrap_or_else(|p| p.into_inner());
            for e in events.revoked {
                feed.insert(e.seq, e);
            }
        }
        {
            use crate::state::records::ScopeChangeRecord;
            let mut scopes = self.scopes.write().unwrap_or_else(|p| p.into_inner());
            for e in events.scopes {
                // A lifting ends its block's events (see
                // `ScopeEventRecord::ends`), here as in the store.
                if let ScopeChangeRecord::Unblocked { block, .. } = e.change {
                    for (_, blocked) in scopes.range_mut(block..e.seq) {
                        blocked.lift(block, e.at);
                    }
                }
                scopes.insert(e.seq, e);
            }
        }
        let newer = self.latest.send_if_modified(|latest| {
            let newer = max > *latest;
            *latest = (*latest).max(max);
            newer
        });
        if newer {
            self.dirty.notify_one();
        }
    }

    /// Deletes the records of certificates (and tokens) that expired longer
    /// than the retention window ago, and their feed events: once per
    /// period for all replicas.
    pub(super) async fn prune_expired(self: Arc<Self>) {
        // Every minute, or more often for a short retention window.
        let period: Duration =
            (self.config.retention / 10_i32).clamp(Duration::seconds(1), Duration::minutes(1));
        let mut tick = tokio::time::interval(period.unsigned_abs());
        loop {
            tick.tick().await;
            let now = OffsetDateTime::now_utc();
            let claimed = self
                .writer
                .apply(Change::ClaimPruning { at: now, period })
                .await;
            let before = retention::cutoff(now, self.config.retention);
            match claimed {
                Ok(Ok(_)) => {
                    if let Err(e) = self.compact(now).await {
                        tracing::error!(error = %e, "compacting expired records failed");
                    }
                    if let Err(e) = self.prune(before).await {
                        tracing::error!(error = %e, "pruning expired records failed");
                    }
                }
                // Another replica's turn: only the feed in memory is ours.
                Ok(Err(Conflict::PruningNotDue)) => self.prune_feed(before),
                Ok(Err(other)) => tracing::error!(%other, "claiming a pruning pass"),
                Err(e) => tracing::warn!(error = %e, "could not claim a pruning pass"),
            }
        }
    }

    /// Compacts the records of certificates expired by `now`
    /// ([`Change::Compact`]), a batch at a time; how many.
    pub async fn compact(&self, now: OffsetDateTime) -> Result<usize, StoreError> {
        const BATCH: usize = 5_000;
        let mut total = 0;
        loop {
            let outcome = self
                .writer
                .apply(Change::Compact { now, limit: BATCH })
                .await?;
            let Ok(Applied::Compacted(n)) = outcome else {
                break;
            };
            total += n;
            if n < BATCH {
                break;
            }
        }
        Ok(total)
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
        self.prune_feed(before);
        if certs + tokens > 0 {
            tracing::info!(
                certs,
                tokens,
                "pruned records that expired before the retention window"
            );
        }
        Ok((certs, tokens))
    }

    fn prune_feed(&self, before: OffsetDateTime) {
        let mut feed = self.feed.write().unwrap_or_else(|p| p.into_inner());
        feed.retain(|_, e| !retention::prunable(e.not_after, before));
        drop(feed);
        let mut scopes = self.scopes.write().unwrap_or_else(|p| p.into_inner());
        scopes.retain(|_, e| e.ends().is_none_or(|end| !retention::prunable(end, before)));
    }
}

/// Waits for `rx` to change: true when it did, false when its sender is
/// gone; never returns without a receiver.
async fn changed(rx: &mut Option<watch::Receiver<u64>>) -> bool {
    match rx {
        Some(rx) => rx.changed().await.is_ok(),
        None => std::future::pending().await,
    }
}
