//! The CA's state on its store: changes go through one group-commit
//! writer, and each commit tells the rest of the CA what it did (the
//! revocations to publish, the audit trail's new head, what to count).

use std::sync::Arc;

use tokio::sync::{mpsc, watch};

use super::change::{Applied, Change, Outcome};
use super::records::{RevocationEvent, ScopeEventRecord};
use crate::metrics::Metrics;
use crate::store::{Store, StoreError, Writer};

/// The feed's events of one commit.
#[derive(Clone, Debug, Default)]
pub struct FeedEvents {
    /// Revocations.
    pub revoked: Vec<RevocationEvent>,
    /// Withdrawals and blocks.
    pub scopes: Vec<ScopeEventRecord>,
}

/// Receives the feed's events of each commit, in commit (and so
/// sequence) order, before the changes' senders are answered.
pub type EventSink = mpsc::UnboundedSender<FeedEvents>;

/// The writer of the CA's state. Cloning it is cheap.
#[derive(Clone)]
pub struct Ledger {
    writer: Writer<Change>,
    audit: Arc<watch::Sender<u64>>,
}

impl Ledger {
    /// Starts the writer over `store`. Revocations of each commit go to
    /// `revocations`, in order: whether or not the request that caused
    /// them is still waiting, every committed revocation is published.
    /// What commits is counted in `metrics`.
    pub fn start(
        store: Arc<dyn Store>,
        revocations: Option<EventSink>,
        metrics: Arc<Metrics>,
    ) -> Result<Self, StoreError> {
        let head = crate::audit::head(&*store)?.seq;
        let backend = store.backend();
        let audit = Arc::new(watch::Sender::new(head));
        follow_audit_head(&store, &audit);
        let sender = audit.clone();
        let observer = Box::new(move |changes: &[Change], outcomes: &[Outcome]| {
            observe(changes, outcomes, &sender, revocations.as_ref(), &metrics)
        });
        let writer = Writer::start(store, observer).map_err(|e| StoreError::Backend {
            backend,
            detail: format!("cannot start the writer thread: {e}"),
        })?;
        Ok(Self { writer, audit })
    }

    /// The sequence number of the last committed audit event, updated after
    /// each commit that appends one.
    pub fn audit_head(&self) -> watch::Receiver<u64> {
        self.audit.subscribe()
    }

    /// Applies one change; returns once it is durable (or refused).
    pub async fn apply(&self, change: Change) -> Result<Outcome, StoreError> {
        self.writer.apply(change).await
    }
}

/// On a store other replicas write too, moves `audit` when they append to
/// the trail (as soon as the store says they committed).
fn follow_audit_head(store: &Arc<dyn Store>, audit: &Arc<watch::Sender<u64>>) {
    let (Some(mut commits), Ok(runtime)) = (store.commits(), tokio::runtime::Handle::try_current())
    else {
        return;
    };
    let store = Arc::downgrade(store);
    let audit = audit.clone();
    runtime.spawn(async move {
        while commits.changed().await.is_ok() {
            let Some(store) = store.upgrade() else { return };
            match crate::audit::head(&*store) {
                Ok(head) => {
                    audit.send_if_modified(|seq| {
                        let newer = head.seq > *seq;
                        *seq = (*seq).max(head.seq);
                        newer
                    });
                }
                Err(e) => tracing::debug!(error = %e, "could not read the audit head"),
            }
        }
    });
}

/// What one commit tells the rest of the CA. The writer thread appends
/// every audit event, so it can count them: an `Audit` change always
/// appends one, an `Audited` one when its change applied.
fn observe(
    changes: &[Change],
    outcomes: &[Outcome],
    audit: &watch::Sender<u64>,
    revocations: Option<&EventSink>,
    metrics: &Metrics,
) {
    let mut appended = 0;
    let mut feed = FeedEvents::default();
    for (change, outcome) in changes.iter().zip(outcomes) {
        let Ok(applied) = outcome else { continue };
        match change {
            Change::Audit(e) => {
                appended += 1;
                // A renewal answered without a new certificate is a retry
                // answered with the certificate issued before.
                let retry = e.outcome == "ok" && e.action == "renew";
                metrics.observe_event(e, if retry { "retry" } else { &e.outcome });
            }
            Change::Audited { change, audit } => {
                appended += 1;
                metrics.observe_event(audit, &audit.outcome);
                if let Change::Enroll { cert, .. } | Change::Renew { cert, .. } = &**change {
                    metrics.observe_issued(cert.not_after);
                }
            }
            _ => {}
        }
        if let Applied::Revoked(summary) = applied {
            feed.revoked.extend(summary.events.iter().cloned());
        }
        feed.scopes.extend(applied.scope_events().iter().cloned());
    }
    if appended > 0 {
        audit.send_modify(|head| *head += appended);
    }
    if let Some(sink) = revocations {
        if !feed.revoked.is_empty() || !feed.scopes.is_empty() {
            // Nobody listening means the CA is shutting down.
            let _ = sink.send(feed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::tests::event;
    use crate::metrics::Snapshot;
    use crate::state::tests::{cert, t0};
    use crate::state::Conflict;
    use crate::token::{generate, hash, BOOTSTRAP_PREFIX};

    #[test]
    fn commits_count_issued_certificates_retried_renewals_and_audit_events() {
        let metrics = Metrics::default();
        let id = "spiffe://td.test/tenant/acme/env/prod/agent/a1";
        let enroll = |serial| Change::Audited {
            change: Box::new(Change::Enroll {
                token_hash: hash(&generate(BOOTSTRAP_PREFIX)).unwrap(),
                at: t0(),
                cert: cert("acme/prod/a1", serial),
                limits: Default::default(),
            }),
            audit: Box::new(event("enroll", Some(id), "ok")),
        };
        let (issued, refused) = (enroll(1), enroll(2));
        let retried = Change::Audit(event("renew", Some(id), "ok"));
        let head = watch::Sender::new(7);
        observe(
            &[issued, refused, retried],
            &[
                Ok(Applied::Done),
                Err(Conflict::TokenUsed),
                Ok(Applied::Done),
            ],
            &head,
            None,
            &metrics,
        );
        let text = metrics.render(&Snapshot::default());
        let series = |kind: &str, outcome: &str| {
            format!("agentca_issuance_total{{kind=\"{kind}\",tenant=\"acme\",env=\"prod\",outcome=\"{outcome}\"}} 1\n")
        };
        // The enrollment whose commit conflicted is not counted.
        assert!(text.contains(&series("enroll", "ok")), "{text}");
        assert!(text.contains(&series("renew", "retry")), "{text}");
        // Two events were appended: the head moves by two.
        assert_eq!(*head.borrow(), 9);
        // Only the committed certificate is live, until its notAfter.
        assert_eq!(metrics.unexpired(t0()), 1);
        assert_eq!(metrics.unexpired(t0() + time::Duration::minutes(5)), 0);
    }
}
