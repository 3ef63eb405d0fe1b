//! The delivery of security events to their receivers, per receiver.

use std::collections::BTreeMap;
use std::sync::Mutex;

use super::{header, sample};

/// Why an attempt to deliver a security event failed: a small, fixed set,
/// so that a receiver's answers cannot grow the label space.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Failure {
    /// No connection (refused, reset, TLS failed, no route).
    Unreachable,
    /// No answer in time.
    Timeout,
    /// A 4xx answer: the receiver refused the token.
    Rejected,
    /// A 5xx answer, or another status than 2xx or 4xx.
    ServerError,
    /// The token could not be made (signing, or the store's events).
    Internal,
}

impl Failure {
    /// Every failure, in the order they are exported.
    pub const ALL: [Failure; 5] = [
        Failure::Unreachable,
        Failure::Timeout,
        Failure::Rejected,
        Failure::ServerError,
        Failure::Internal,
    ];

    /// The label value.
    pub fn label(self) -> &'static str {
        match self {
            Failure::Unreachable => "unreachable",
            Failure::Timeout => "timeout",
            Failure::Rejected => "rejected",
            Failure::ServerError => "server_error",
            Failure::Internal => "internal",
        }
    }
}

#[derive(Clone, Debug, Default)]
struct Receiver {
    delivered: u64,
    failures: [u64; Failure::ALL.len()],
    cursor: u64,
    waiting_since: i64,
    last_delivered: i64,
}

/// Per receiver: tokens delivered, failed attempts by kind, the audit
/// event it acknowledged last, and since when a token waits.
#[derive(Default)]
pub struct Delivery {
    receivers: Mutex<BTreeMap<String, Receiver>>,
}

impl Delivery {
    fn with(&self, receiver: &str, f: impl FnOnce(&mut Receiver)) {
        let mut receivers = self.receivers.lock().unwrap_or_else(|p| p.into_inner());
        f(receivers.entry(receiver.to_owned()).or_default());
    }

    /// Makes `receiver`'s series exist (at zero) before anything happens.
    pub fn register(&self, receiver: &str) {
        self.with(receiver, |_| ());
    }

    /// The receiver acknowledged a token, for the audit event `seq`, at
    /// `at` (Unix seconds).
    pub fn delivered(&self, receiver: &str, seq: u64, at: i64) {
        self.with(receiver, |r| {
            r.delivered += 1;
            r.cursor = r.cursor.max(seq);
            r.waiting_since = 0;
            r.last_delivered = at;
        });
    }

    /// The receiver's cursor moved to `seq` (past events that need no
    /// token, or as read from the store).
    pub fn cursor(&self, receiver: &str, seq: u64) {
        self.with(receiver, |r| r.cursor = r.cursor.max(seq));
    }

    /// An attempt failed; the token at the front has waited since `since`
    /// (Unix seconds).
    pub fn failed(&self, receiver: &str, failure: Failure, since: i64) {
        self.with(receiver, |r| {
            r.failures[failure as usize] += 1;
            r.waiting_since = since;
        });
    }

    /// Nothing waits for `receiver` on this replica (it caught up, or
    /// another replica holds it).
    pub fn idle(&self, receiver: &str) {
        self.with(receiver, |r| r.waiting_since = 0);
    }

    /// The Prometheus text of these series. Their headers are written even
    /// without a receiver, so that dashboards find the names.
    pub(super) fn render(&self, out: &mut String) {
        let receivers = self.receivers.lock().unwrap_or_else(|p| p.into_inner());
        let families = [
            (
                "agentca_security_events_delivered_total",
                "Security Event Tokens the receiver acknowledged.",
                "counter",
            ),
            (
                "agentca_security_events_failures_total",
                "Failed attempts to deliver a Security Event Token, by why.",
                "counter",
            ),
            (
                "agentca_security_events_cursor",
                "The last audit event the receiver acknowledged or needed no token for.",
                "gauge",
            ),
            (
                "agentca_security_events_waiting_since_timestamp_seconds",
                "Since when the token at the front of the receiver's queue has waited (0: none waits on this replica), Unix seconds.",
                "gauge",
            ),
            (
                "agentca_security_events_last_delivered_timestamp_seconds",
                "When the receiver last acknowledged a token (0: never, since this process started), Unix seconds.",
                "gauge",
            ),
        ];
        for (name, help, kind) in families {
            header(out, name, help, kind);
            for (receiver, r) in receivers.iter() {
                if name == "agentca_security_events_failures_total" {
                    for failure in Failure::ALL {
                        sample(
                            out,
                            name,
                            &[("receiver", receiver), ("reason", failure.label())],
                            r.failures[failure as usize] as f64,
                        );
                    }
                    continue;
                }
                let value = match name {
                    "agentca_security_events_delivered_total" => r.delivered as f64,
                    "agentca_security_events_cursor" => r.cursor as f64,
                    "agentca_security_events_waiting_since_timestamp_seconds" => {
                        r.waiting_since as f64
                    }
                    _ => r.last_delivered as f64,
                };
                sample(out, name, &[("receiver", receiver)], value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_receiver_has_its_series_and_failures_by_reason() {
        let delivery = Delivery::default();
        let mut empty = String::new();
        delivery.render(&mut empty);
        assert!(empty.contains("# TYPE agentca_security_events_delivered_total counter"));
        assert!(!empty.contains("receiver="));

        delivery.register("siem");
        delivery.failed("siem", Failure::Unreachable, 100);
        delivery.failed("siem", Failure::Unreachable, 100);
        let mut out = String::new();
        delivery.render(&mut out);
        assert!(out.contains(
            "agentca_security_events_failures_total{receiver=\"siem\",reason=\"unreachable\"} 2\n"
        ));
        assert!(out.contains(
            "agentca_security_events_waiting_since_timestamp_seconds{receiver=\"siem\"} 100\n"
        ));
        delivery.delivered("siem", 7, 130);
        let mut out = String::new();
        delivery.render(&mut out);
        assert!(out.contains("agentca_security_events_delivered_total{receiver=\"siem\"} 1\n"));
        assert!(out.contains("agentca_security_events_cursor{receiver=\"siem\"} 7\n"));
        assert!(out.contains(
            "agentca_security_events_waiting_since_timestamp_seconds{receiver=\"siem\"} 0\n"
        ));
        assert!(out.contains(
            "agentca_security_events_last_delivered_timestamp_seconds{receiver=\"siem\"} 130\n"
        ));
    }
}
