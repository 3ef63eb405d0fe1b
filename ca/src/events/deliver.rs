//! Sending security events: one task per receiver.
//!
//! A task holds its receiver ([`crate::state::events`]: one replica at a
//! time), reads the audit trail after the receiver's cursor, POSTs a token
//! for each event that is sent ([`super::set`]) until the receiver answers
//! 202 ([`super::push`]), and only then moves the cursor past it. A failed attempt is
//! retried after a backoff that doubles up to [`MAX_BACKOFF`]; a token is
//! never dropped, so a receiver that refuses one holds up the ones after
//! it (the metrics and the log say so). Events that need no token (or are
//! of a kind the receiver did not choose) move the cursor with the hold's
//! renewals, or after a long run of them. A task that stops releases its
//! hold, so that another replica takes the receiver over at its next try
//! (every [`RENEW_EVERY`]) rather than once the hold lapses.
//!
//! The hold outlasts any attempt: it is renewed right before each POST,
//! which takes at most [`super::push::ATTEMPT_TIMEOUT`], and every
//! [`RENEW_EVERY`] while waiting; both are well under [`HOLD`].

use std::sync::Arc;

use agentca::wire::{Actor, AuditEvent, Serial};
use time::{Duration, OffsetDateTime};
use tokio::sync::watch;

use super::set::{self, Transmitter};
use super::sign::{SignError, Signer};
use super::Receiver;
use crate::issuance::issuer::IssuingCa;
use crate::metrics::events::Failure;
use crate::metrics::Metrics;
use crate::state::events::{CursorConflict, CursorMove};
use crate::state::{Applied, Change, Conflict, Ledger};
use crate::store::Store;

/// How long a replica's hold of a receiver lasts unless renewed; it is
/// renewed every third of it while the replica sends.
pub const HOLD: Duration = Duration::seconds(30);
/// How often a hold is renewed while the replica sends or waits.
const RENEW_EVERY: Duration = Duration::seconds(10);
// A POST started right before a renewal falls due ends before the hold
// lapses.
const _: () = assert!(
    RENEW_EVERY.whole_seconds() + (super::push::ATTEMPT_TIMEOUT.as_secs() as i64)
        < HOLD.whole_seconds()
);
/// Longest wait between two attempts at one token.
pub const MAX_BACKOFF: std::time::Duration = std::time::Duration::from_secs(300);
/// How long a task waits, once woken by a commit, for more to commit.
const GATHER: std::time::Duration = std::time::Duration::from_millis(50);
/// Audit events read at once.
const BATCH: usize = 256;

/// The wait before attempt `failures + 1` of a token, after `failures`
/// failed ones: 1 s, doubling, at most [`MAX_BACKOFF`], scaled by `jitter`
/// (0 to 1) into its upper half, so that receivers coming back are not met
/// by every replica at once (as the agents' and verifiers' retries are).
pub fn backoff(failures: u32, jitter: f64) -> std::time::Duration {
    agentca::half_jittered(
        std::time::Duration::from_secs(1),
        MAX_BACKOFF,
        failures,
        jitter,
    )
}

/// What every receiver's task shares.
pub struct Outbox {
    /// The store, for the trail.
    pub store: Arc<dyn Store>,
    /// The ledger, for the cursors.
    pub ledger: Ledger,
    /// The intermediate, which certifies the signing key.
    pub ca: Arc<IssuingCa>,
    /// Where delivery is counted.
    pub metrics: Arc<Metrics>,
    /// This replica's name in the holds.
    pub replica: String,
    /// Whether the store is this process's alone.
    pub exclusive: bool,
    /// The tokens' `iss` and `x509_issuer`.
    pub transmitter: Transmitter,
    signer: tokio::sync::Mutex<Option<Arc<Signer>>>,
}

impl Outbox {
    /// The shared part of the tasks.
    pub fn new(
        store: Arc<dyn Store>,
        ledger: Ledger,
        ca: Arc<IssuingCa>,
        metrics: Arc<Metrics>,
        replica: String,
        exclusive: bool,
    ) -> Result<Self, SignError> {
        let x509_issuer = {
            use x509_parser::prelude::FromDer;
            let (_, cert) = x509_parser::certificate::X509Certificate::from_der(ca.intermediate())
                .map_err(|e| SignError::new(format!("the intermediate does not parse: {e}")))?;
            cert.subject().to_string()
        };
        let transmitter = Transmitter {
            issuer: format!("spiffe://{}", ca.trust_domain()),
            x509_issuer,
        };
        Ok(Self {
            store,
            ledger,
            ca,
            metrics,
            replica,
            exclusive,
            transmitter,
            signer: tokio::sync::Mutex::new(None),
        })
    }

    /// The signer at `now`: a new one when there is none yet or half its
    /// certificate's life has passed. The CA certifies its signing key as
    /// it certifies any other: on the audit trail, before the key is used.
    async fn signer(&self, now: OffsetDateTime) -> Result<Arc<Signer>, SignError> {
        let mut slot = self.signer.lock().await;
        if let Some(signer) = &*slot {
            if !signer.renewal_due(now) {
                return Ok(signer.clone());
            }
        }
        let signer = Arc::new(Signer::issue(&self.ca, now)?);
        let mut event = AuditEvent::new(
            crate::issuance::profile::whole_seconds(now),
            Actor::System,
            "events.signer",
            Some(self.transmitter.issuer.clone()),
        );
        event.serial = Some(
            Serial::from_bytes(signer.serial())
                .map_err(|e| SignError::new(format!("the signing certificate's serial: {e}")))?,
        );
        event.not_after = Some(signer.not_after());
        event.reason = Some(format!(
            "security event signing key {} of replica {}",
            signer.kid(),
            self.replica
        ));
        match self.ledger.apply(Change::Audit(event)).await {
            Ok(Ok(_)) => {}
            Ok(Err(conflict)) => {
                return Err(SignError::new(format!(
                    "recording the signing certificate: {conflict}"
                )))
            }
            Err(e) => {
                return Err(SignError::new(format!(
                    "recording the signing certificate: {e}"
                )))
            }
        }
        tracing::info!(kid = signer.kid(), "security event signing key made");
        *slot = Some(signer.clone());
        Ok(signer)
    }

    /// Starts one task per receiver; they stop when `stop` turns true.
    pub fn start(
        self: Arc<Self>,
        receivers: Vec<Receiver>,
        stop: watch::Receiver<bool>,
    ) -> Result<Vec<tokio::task::JoinHandle<()>>, SignError> {
        let mut tasks = Vec::new();
        for receiver in receivers {
            self.metrics.events.register(&receiver.name);
            let client = super::push::client(&receiver)?;
            let task = Task {
                outbox: self.clone(),
                receiver,
                client,
                seen: None,
                read_to: 0,
                renewed: None,
                stop: stop.clone(),
            };
            tasks.push(tokio::spawn(task.run()));
        }
        Ok(tasks)
    }
}

/// How a step of a task ended.
enum Step {
    /// It sent or skipped events: go on at once.
    Progress,
    /// Nothing after the cursor.
    CaughtUp,
    /// Another replica holds the receiver, until then.
    Held(OffsetDateTime),
    /// The store failed; try again later.
    Failed,
    /// The CA is stopping.
    Stopped,
}

struct Task {
    outbox: Arc<Outbox>,
    receiver: Receiver,
    client: reqwest::Client,
    /// The cursor as this task last saw it.
    seen: Option<u64>,
    /// The last event it handled: sent, or passed over as one that needs
    /// no token (at or after `seen`).
    read_to: u64,
    /// When this task last took or renewed its hold.
    renewed: Option<OffsetDateTime>,
    stop: watch::Receiver<bool>,
}

impl Task {
    async fn run(mut self) {
        let mut head = self.outbox.ledger.audit_head();
        let mut store_failures = 0;
        loop {
            let step = self.step().await;
            let name = &self.receiver.name;
            let wait = match step {
                Step::Progress => {
                    store_failures = 0;
                    continue;
                }
                Step::Stopped => break,
                Step::CaughtUp => {
                    store_failures = 0;
                    self.outbox.metrics.events.idle(name);
                    // New events wake it; so does the time to record
                    // where it is ([`Task::step`]).
                    RENEW_EVERY.unsigned_abs()
                }
                Step::Held(until) => {
                    self.seen = None;
                    self.read_to = 0;
                    self.renewed = None;
                    self.outbox.metrics.events.idle(name);
                    // Try again when the hold lapses, or sooner: a replica
                    // that stops releases it.
                    (until - OffsetDateTime::now_utc())
                        .clamp(Duration::seconds(1), RENEW_EVERY)
                        .unsigned_abs()
                }
                Step::Failed => {
                    store_failures += 1;
                    backoff(store_failures, agentca::jitter())
                }
            };
            // A commit wakes a task that caught up (unless the ledger is
            // gone: then only the time does).
            let woken = tokio::select! {
                changed = head.changed(), if matches!(step, Step::CaughtUp) => Some(changed.is_ok()),
                _ = tokio::time::sleep(wait) => None,
                _ = self.stop.wait_for(|s| *s) => break,
            };
            let pause = match woken {
                // Gather what commits in the next moments: one read of the
                // trail for many events under load.
                Some(true) => GATHER,
                Some(false) => wait,
                None => continue,
            };
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = self.stop.wait_for(|s| *s) => break,
            }
        }
        self.release().await;
    }

    /// Records where the receiver is and lets go of it, so that another
    /// replica takes it over at its next try rather than once the hold
    /// lapses.
    async fn release(&mut self) {
        let Some(seen) = self.seen else {
            return;
        };
        let to = (self.read_to > seen).then_some(self.read_to);
        let m = self.cursor_move(to, OffsetDateTime::now_utc(), Duration::ZERO);
        match self.outbox.ledger.apply(Change::EventCursor(m)).await {
            Ok(Ok(_)) => {
                tracing::debug!(receiver = %self.receiver.name, "released the receiver");
            }
            // Taken over already, or the store is going: the hold lapses.
            Ok(Err(conflict)) => {
                tracing::debug!(receiver = %self.receiver.name, %conflict, "the receiver was not released");
            }
            Err(e) => {
                tracing::warn!(receiver = %self.receiver.name, error = %e, "cannot release the receiver; its hold lapses");
            }
        }
        self.seen = None;
    }

    /// Sends what follows the cursor, under the hold. An idle receiver
    /// costs no write once its cursor caught up: the hold is taken (or
    /// renewed) only when there is something to send or pass over, and
    /// lapses while there is not.
    async fn step(&mut self) -> Step {
        let seen = match self.seen {
            Some(seen) => seen,
            None => {
                if let Err(step) = self.hold(None, OffsetDateTime::now_utc()).await {
                    return step;
                }
                let Some(seen) = self.seen else {
                    return Step::Failed;
                };
                seen
            }
        };
        let from = self.read_to.max(seen);
        let events = match crate::audit::since(&*self.outbox.store, from, BATCH) {
            Ok(events) => events,
            Err(e) => {
                tracing::error!(receiver = %self.receiver.name, error = %e, "cannot read the audit trail for security events");
                return Step::Failed;
            }
        };
        let Some(first) = events.first() else {
            // Where events that need no token brought it is recorded once
            // the hold is due for renewal: an idle receiver's cursor
            // catches up with the trail (pruning and the cursor metric
            // wait for it) at the cost of one write.
            if self.read_to > seen {
                if let Err(step) = self.renew_if_due(OffsetDateTime::now_utc()).await {
                    return step;
                }
            }
            return Step::CaughtUp;
        };
        // Whoever held it while this task was idle may have moved it: the
        // renewal says so (and this task reads from there) before anything
        // is sent.
        if let Err(step) = self.renew_if_due(OffsetDateTime::now_utc()).await {
            return step;
        }
        if first.seq > from + 1 {
            tracing::error!(receiver = %self.receiver.name, after = from, next = first.seq, "audit events were pruned before this receiver had them: they are not sent");
        }
        for event in &events {
            let chosen = set::kind_of(event).is_some_and(|k| self.receiver.kinds.contains(&k));
            let claims = chosen
                .then(|| {
                    set::claims(
                        event,
                        &self.outbox.transmitter,
                        &self.receiver.audience,
                        OffsetDateTime::now_utc(),
                    )
                })
                .flatten();
            match claims {
                Some(claims) => {
                    if let Err(step) = self.send(event, claims).await {
                        return step;
                    }
                }
                None => self.read_to = event.seq,
            }
        }
        // Events that need no token move the stored cursor with the
        // hold's renewals, or after a long run of them.
        if self.read_to >= seen + 4 * BATCH as u64 {
            if let Err(step) = self
                .hold(Some(self.read_to), OffsetDateTime::now_utc())
                .await
            {
                return step;
            }
        }
        if events.len() < BATCH {
            Step::CaughtUp
        } else {
            Step::Progress
        }
    }

    /// Sends one token until the receiver acknowledges it, then moves the
    /// cursor to its event. Each attempt is signed anew (its `iat` is
    /// when).
    async fn send(
        &mut self,
        event: &AuditEvent,
        mut claims: serde_json::Value,
    ) -> Result<(), Step> {
        let name = self.receiver.name.clone();
        let since = OffsetDateTime::now_utc().unix_timestamp();
        let mut failures = 0;
        loop {
            let now = OffsetDateTime::now_utc();
            claims["iat"] = serde_json::json!(now.unix_timestamp());
            // The signer may wait on the store (a new key is recorded
            // first): the hold is renewed after it, right before the POST.
            let token = match self.outbox.signer(now).await {
                Ok(signer) => signer.sign(&claims),
                Err(e) => Err(e),
            };
            self.renew_if_due(OffsetDateTime::now_utc()).await?;
            let attempt = match token {
                Ok(token) => super::push::post(&self.client, &self.receiver, token).await,
                Err(e) => Err((Failure::Internal, e.to_string())),
            };
            match attempt {
                Ok(()) => break,
                Err((failure, detail)) => {
                    failures += 1;
                    self.outbox.metrics.events.failed(&name, failure, since);
                    let wait = backoff(failures, agentca::jitter());
                    tracing::warn!(receiver = %name, audit_seq = event.seq, attempt = failures, failure = failure.label(), detail = ?detail, retry_in_ms = wait.as_millis() as u64, "a security event was not delivered; retrying");
                    self.sleep_holding(wait).await?;
                }
            }
        }
        self.hold(Some(event.seq), OffsetDateTime::now_utc())
            .await?;
        self.outbox.metrics.events.delivered(
            &name,
            event.seq,
            OffsetDateTime::now_utc().unix_timestamp(),
        );
        tracing::info!(receiver = %name, audit_seq = event.seq, action = %event.action, "security event delivered");
        Ok(())
    }

    /// Sleeps `wait`, renewing the hold on the way; stops early when the
    /// CA stops.
    async fn sleep_holding(&mut self, wait: std::time::Duration) -> Result<(), Step> {
        let end = tokio::time::Instant::now() + wait;
        loop {
            let now = tokio::time::Instant::now();
            if now >= end {
                return Ok(());
            }
            // Wake when the hold is next due for renewal, not a whole
            // RENEW_EVERY from now.
            let due = self.renewed.map_or(std::time::Duration::ZERO, |at| {
                (at + RENEW_EVERY - OffsetDateTime::now_utc())
                    .max(Duration::ZERO)
                    .unsigned_abs()
            });
            let slice = (end - now).min(due.max(std::time::Duration::from_millis(100)));
            tokio::select! {
                _ = tokio::time::sleep(slice) => {}
                _ = self.stop.wait_for(|s| *s) => return Err(Step::Stopped),
            }
            self.renew_if_due(OffsetDateTime::now_utc()).await?;
        }
    }

    async fn renew_if_due(&mut self, now: OffsetDateTime) -> Result<(), Step> {
        if *self.stop.borrow() {
            return Err(Step::Stopped);
        }
        match self.renewed {
            Some(at) if now - at < RENEW_EVERY => Ok(()),
            _ => {
                let to = self
                    .seen
                    .filter(|s| self.read_to > *s)
                    .map(|_| self.read_to);
                self.hold(to, now).await
            }
        }
    }

    /// This replica's move of the cursor from where it saw it to `to` (if
    /// given) at `at`, holding the receiver for `hold` after.
    fn cursor_move(&self, to: Option<u64>, at: OffsetDateTime, hold: Duration) -> CursorMove {
        CursorMove {
            receiver: self.receiver.name.clone(),
            replica: self.outbox.replica.clone(),
            expected: self.seen,
            to,
            at,
            hold,
            exclusive: self.outbox.exclusive,
        }
    }

    /// Takes or renews the hold, moving the cursor to `to` if given.
    async fn hold(&mut self, to: Option<u64>, now: OffsetDateTime) -> Result<(), Step> {
        let m = self.cursor_move(to, now, HOLD);
        match self.outbox.ledger.apply(Change::EventCursor(m)).await {
            Ok(Ok(Applied::Cursor(delivered))) => {
                self.seen = Some(delivered);
                self.read_to = self.read_to.max(delivered);
                self.renewed = Some(now);
                self.outbox
                    .metrics
                    .events
                    .cursor(&self.receiver.name, delivered);
                Ok(())
            }
            Ok(Err(Conflict::Cursor(CursorConflict::Held { holder, until }))) => {
                tracing::debug!(receiver = %self.receiver.name, holder = %holder, "another replica sends to this receiver");
                Err(Step::Held(until))
            }
            Ok(Ok(other)) => {
                tracing::error!(receiver = %self.receiver.name, "moving the receiver's cursor answered {other:?}");
                Err(Step::Failed)
            }
            Ok(Err(conflict)) => {
                // Moved under it: another replica sent while this one's
                // hold had lapsed. Read it again.
                tracing::warn!(receiver = %self.receiver.name, %conflict, "the receiver's cursor moved elsewhere; reading it again");
                self.seen = None;
                self.read_to = 0;
                self.renewed = None;
                Err(Step::Progress)
            }
            Err(e) => {
                tracing::error!(receiver = %self.receiver.name, error = %e, "cannot record the receiver's cursor");
                Err(Step::Failed)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_ceiling_and_jitter_takes_at_most_half() {
        let s = std::time::Duration::from_secs;
        assert_eq!(backoff(1, 1.0), s(1));
        assert_eq!(backoff(2, 1.0), s(2));
        assert_eq!(backoff(3, 1.0), s(4));
        assert_eq!(backoff(9, 1.0), s(256));
        assert_eq!(backoff(10, 1.0), MAX_BACKOFF);
        assert_eq!(backoff(u32::MAX, 1.0), MAX_BACKOFF);
        assert_eq!(backoff(3, 0.5), s(3));
        assert_eq!(backoff(3, 0.0), s(2));
        assert_eq!(backoff(0, 1.0), s(1));
    }
}
