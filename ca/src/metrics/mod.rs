//! Prometheus metrics: what `GET /metrics` serves.
//!
//! Counters and histograms live in a [`Metrics`] handle that the CA passes
//! to what records them (the state's ledger, the HTTP layer); gauges that
//! describe stored state (live certificates, the CRL, the store's size,
//! the audit head) are read when scraped and passed to [`Metrics::render`]
//! as a [`Snapshot`].
//!
//! Issuance and revocation counters come from the audit trail: the ledger
//! counts each event once it is committed, so a counter moves if and only
//! if the audit trail says the thing happened.
//!
//! This module depends on nothing of the CA but the wire types: the store
//! does not know it exists.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agentca::identity::Part;
use agentca::wire::AuditEvent;
use time::OffsetDateTime;

/// Upper bounds (seconds) of the request latency histogram's buckets.
pub const LATENCY_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Most distinct label sets of one metric; further ones are counted under
/// the tenant and env `_other`, so that a flood of made-up names cannot
/// grow the CA's memory or a scrape without bound.
pub const MAX_SERIES: usize = 4096;

#[derive(Default)]
struct Histogram {
    buckets: [u64; LATENCY_BUCKETS.len()],
    count: u64,
    sum: f64,
}

impl Histogram {
    fn observe(&mut self, secs: f64) {
        for (bucket, le) in self.buckets.iter_mut().zip(LATENCY_BUCKETS) {
            if secs <= le {
                *bucket += 1;
            }
        }
        self.count += 1;
        self.sum += secs;
    }
}

/// Labels of an audited event: what, whose, how it ended.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct EventKey {
    action: String,
    tenant: String,
    env: String,
    outcome: String,
}

/// Requests of one route.
#[derive(Default)]
struct Route {
    /// By status code.
    codes: BTreeMap<u16, u64>,
    latency: Histogram,
}

#[derive(Default)]
struct Inner {
    /// By route template (as axum matched it), or `unmatched`: one entry
    /// per route of the router at most.
    routes: HashMap<Arc<str>, Route>,
    events: HashMap<EventKey, u64>,
    /// Issued certificates not yet expired, counted by notAfter (Unix
    /// seconds).
    unexpired: BTreeMap<i64, u64>,
    /// Issuance per minute, for the console.
    history: history::History,
}

impl Inner {
    /// Counts `event` as ending in `outcome` (enrollments and renewals in
    /// the console's history too).
    fn count_event(&mut self, event: &AuditEvent, outcome: &str) {
        // Tenant and env label issuance and revocations only; a refused
        // revocation may name tenants that do not exist, so it is not
        // labelled by them.
        let labelled = match event.action.as_str() {
            "enroll" | "renew" => {
                let issued = matches!(outcome, "ok" | "retry");
                self.history
                    .note(event.at, issued, event.count.unwrap_or(1));
                true
            }
            "revoke" => outcome == "ok",
            _ => false,
        };
        let (tenant, env) = if labelled {
            tenant_env(event.subject.as_deref())
        } else {
            (String::new(), String::new())
        };
        let mut key = EventKey {
            action: event.action.chars().take(64).collect(),
            tenant,
            env,
            outcome: outcome.chars().take(32).collect(),
        };
        if !self.events.contains_key(&key) && self.events.len() >= MAX_SERIES {
            key.tenant = "_other".into();
            key.env = "_other".into();
        }
        // A summary of refusals stands for `count` of them.
        *self.events.entry(key).or_default() += event.count.unwrap_or(1);
    }
}

/// A counter of connections by the limit they met: the overall one or
/// the per-address one.
#[derive(Default)]
struct ByLimit {
    total: std::sync::atomic::AtomicU64,
    per_address: std::sync::atomic::AtomicU64,
}

impl ByLimit {
    fn add(&self, limit: &str) {
        let counter = if limit == "total" {
            &self.total
        } else {
            &self.per_address
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        header(out, name, help, "counter");
        for (limit, counter) in [("total", &self.total), ("per_address", &self.per_address)] {
            sample(
                out,
                name,
                &[("limit", limit)],
                counter.load(Ordering::Relaxed) as f64,
            );
        }
    }
}

/// Counters and histograms of one CA process.
#[derive(Default)]
pub struct Metrics {
    inner: Mutex<Inner>,
    feed_waiting: AtomicI64,
    /// New connections closed at once, by the limit they met.
    refused: ByLimit,
    /// Idle connections closed to make room for a new one, by limit.
    replaced: ByLimit,
    /// Issuances refused at an issuance limit.
    issuance_limited: std::sync::atomic::AtomicU64,
    /// Renewals refused as clones.
    clone_alerts: std::sync::atomic::AtomicU64,
    /// Security events delivered to receivers.
    pub events: events::Delivery,
}

/// Stored state, read at scrape time.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// Whether the CA is ready (`/readyz`): its store answers and its
    /// issuing certificate is valid.
    pub ready: bool,
    /// Certificates neither expired nor revoked.
    pub live_certificates: u64,
    /// Entries of the current CRL.
    pub crl_entries: u64,
    /// The current CRL's number.
    pub crl_number: u64,
    /// The current CRL's thisUpdate and nextUpdate, Unix seconds.
    pub crl_this_update: i64,
    pub crl_next_update: i64,
    /// Bytes of the store's files on disk.
    pub store_bytes: u64,
    /// Sequence number of the last audit event, when the store answered.
    pub audit_last_sequence: Option<u64>,
    /// The issuing intermediate's and the root's notAfter, Unix seconds.
    pub intermediate_not_after: i64,
    pub root_not_after: i64,
}

/// Routes whose requests wait for news (the revocation feed's long poll):
/// counted, but kept out of the latency histogram, whose buckets would
/// otherwise say nothing but how long the CA waited.
pub const LONG_POLL_ROUTES: [&str; 1] = ["/v1/revocations"];

/// The tenant and env of an audit event's subject (a SPIFFE ID or
/// `tenant/env/agent`), or empty strings.
fn tenant_env(subject: Option<&str>) -> (String, String) {
    let Some(subject) = subject else {
        return (String::new(), String::new());
    };
    // spiffe://<td>/tenant/<t>/env/<e>/agent/<a>: the CA wrote it, so a
    // split is enough.
    if let Some(rest) = subject.strip_prefix("spiffe://") {
        let parts: Vec<&str> = rest.split('/').collect();
        if let [_, "tenant", t, "env", e, "agent", _] = parts[..] {
            return (t.to_owned(), e.to_owned());
        }
        return (String::new(), String::new());
    }
    // `tenant/env` or `tenant` of a revocation of a whole env or tenant.
    let valid = |part, name: &str| agentca::identity::Name::new(part, name).is_ok();
    let mut parts = subject.split('/');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(t), Some(e), None) if valid(Part::Tenant, t) && valid(Part::Env, e) => {
            (t.to_owned(), e.to_owned())
        }
        (Some(t), None, None) if valid(Part::Tenant, t) => (t.to_owned(), String::new()),
        _ => (String::new(), String::new()),
    }
}

impl Metrics {
    /// Counts a finished request on `route`: the template of the route it
    /// matched (never the raw path, whose identifiers would make a series
    /// per agent), `None` if it matched none.
    pub fn observe_request(&self, route: Option<&str>, status: u16, elapsed: Duration) {
        let route = route.unwrap_or("unmatched");
        let mut inner = self.lock();
        if !inner.routes.contains_key(route) {
            inner.routes.insert(Arc::from(route), Route::default());
        }
        let counted = inner.routes.get_mut(route).expect("inserted above");
        *counted.codes.entry(status).or_default() += 1;
        if !LONG_POLL_ROUTES.contains(&route) {
            counted.latency.observe(elapsed.as_secs_f64());
        }
    }

    /// Counts a committed audit event as ending in `outcome` (its own, or
    /// `retry` for a renewal answered with the certificate issued before).
    pub fn observe_event(&self, event: &AuditEvent, outcome: &str) {
        if event.is_clone_alert() {
            self.clone_alerts
                .fetch_add(event.count.unwrap_or(1), Ordering::Relaxed);
        }
        self.lock().count_event(event, outcome);
    }

    /// Enrollments and renewals in each minute of the hour up to `now`.
    pub fn issuance_last_hour(&self, now: OffsetDateTime) -> Vec<history::Minute> {
        self.lock().history.last_hour(now)
    }

    /// Counts a committed certificate as unexpired until `not_after`.
    pub fn observe_issued(&self, not_after: OffsetDateTime) {
        *self
            .lock()
            .unexpired
            .entry(not_after.unix_timestamp())
            .or_default() += 1;
    }

    /// Replaces the count of unexpired certificates with `counts` (how
    /// many expire at each Unix second): called once at start-up, from the
    /// store.
    pub fn load_unexpired(&self, counts: BTreeMap<i64, u64>) {
        self.lock().unexpired = counts;
    }

    /// Issued certificates whose notAfter is after `now` (forgetting the
    /// ones that expired).
    pub fn unexpired(&self, now: OffsetDateTime) -> u64 {
        let mut inner = self.lock();
        let now = now.unix_timestamp();
        inner.unexpired = inner.unexpired.split_off(&(now + 1));
        inner.unexpired.values().sum()
    }

    /// Counts a connection closed at once at `limit`: `total` or
    /// `per_address`.
    pub fn observe_refused_connection(&self, limit: &str) {
        self.refused.add(limit);
    }

    /// Counts an idle connection closed to make room at `limit`: `total`
    /// or `per_address`.
    pub fn observe_replaced_connection(&self, limit: &str) {
        self.replaced.add(limit);
    }

    /// Counts an issuance refused at an agent's or instance's limit.
    pub fn observe_issuance_limited(&self) {
        self.issuance_limited.fetch_add(1, Ordering::Relaxed);
    }

    /// A feed request starts (`+1`) or ends (`-1`) waiting.
    pub fn feed_waiting(&self, delta: i64) {
        self.feed_waiting.fetch_add(delta, Ordering::Relaxed);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // Counters stay meaningful after a panic elsewhere.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The Prometheus text exposition (format 0.0.4) of everything, with
    /// the tenant and env of each series.
    pub fn render(&self, snapshot: &Snapshot) -> String {
        self.render_for(snapshot, true)
    }

    /// The exposition; without `by_tenant`, the series that would name a
    /// tenant or an environment are summed over them and carry neither
    /// label (what anonymous scrapers see).
    pub fn render_for(&self, snapshot: &Snapshot, by_tenant: bool) -> String {
        let inner = self.lock();
        let mut out = String::with_capacity(8192);

        let mut summed: BTreeMap<EventKey, u64> = BTreeMap::new();
        for (key, count) in &inner.events {
            let mut key = key.clone();
            if !by_tenant {
                key.tenant.clear();
                key.env.clear();
            }
            *summed.entry(key).or_default() += count;
        }
        let events: Vec<_> = summed.iter().collect();
        let families: [(&str, &str, &[&str]); 3] = [
            (
                "agentca_issuance_total",
                "Enrollments and renewals, by tenant, env and outcome (ok, refused, or retry: a renewal answered again with the certificate it issued before).",
                &["enroll", "renew"],
            ),
            (
                "agentca_revocations_total",
                "Revocation requests, by tenant, env and outcome.",
                &["revoke"],
            ),
            (
                "agentca_admin_actions_total",
                "Other audited actions, by action and outcome.",
                &[],
            ),
        ];
        for (name, help, actions) in families {
            header(&mut out, name, help, "counter");
            for (key, count) in &events {
                let issuance = matches!(key.action.as_str(), "enroll" | "renew");
                let matches = if actions.is_empty() {
                    !issuance && key.action != "revoke"
                } else {
                    actions.contains(&key.action.as_str())
                };
                if !matches {
                    continue;
                }
                let outcome = key.outcome.as_str();
                let mut labels: Vec<(&str, &str)> = if issuance {
                    vec![
                        ("kind", &key.action),
                        ("tenant", &key.tenant),
                        ("env", &key.env),
                        ("outcome", outcome),
                    ]
                } else if actions.is_empty() {
                    vec![("action", &key.action), ("outcome", outcome)]
                } else {
                    vec![
                        ("tenant", &key.tenant),
                        ("env", &key.env),
                        ("outcome", outcome),
                    ]
                };
                if !by_tenant {
                    labels.retain(|(name, _)| !matches!(*name, "tenant" | "env"));
                }
                sample(&mut out, name, &labels, **count as f64);
            }
        }

        self.replaced.render(
            &mut out,
            "agentca_connections_replaced_total",
            "Idle connections closed to make room for a new one at a full limit: total (--max-connections) or per_address (--max-connections-per-ip).",
        );

        header(
            &mut out,
            "agentca_issuance_limited_total",
            "Enrollments and renewals refused (429) because the agent or the instance reached its issuance limit per certificate lifetime.",
            "counter",
        );
        sample(
            &mut out,
            "agentca_issuance_limited_total",
            &[],
            self.issuance_limited.load(Ordering::Relaxed) as f64,
        );

        self.refused.render(
            &mut out,
            "agentca_connections_refused_total",
            "New connections closed at once because every connection at their limit was busy: total (--max-connections) or per_address (--max-connections-per-ip).",
        );

        header(
            &mut out,
            "agentca_http_requests_total",
            "HTTP requests, by route and status code.",
            "counter",
        );
        let mut routes: Vec<(&str, &Route)> = inner.routes.iter().map(|(r, c)| (&**r, c)).collect();
        routes.sort_by_key(|(route, _)| *route);
        for (route, counted) in &routes {
            for (status, count) in &counted.codes {
                let code = status.to_string();
                sample(
                    &mut out,
                    "agentca_http_requests_total",
                    &[("route", route), ("code", &code)],
                    *count as f64,
                );
            }
        }

        let name = "agentca_http_request_duration_seconds";
        header(
            &mut out,
            name,
            "Time from a request's headers to its response, by route (not the revocation feed's long polls).",
            "histogram",
        );
        for (route, counted) in &routes {
            let h = &counted.latency;
            if LONG_POLL_ROUTES.contains(route) {
                continue;
            }
            for (le, count) in LATENCY_BUCKETS.iter().zip(h.buckets) {
                let le = le.to_string();
                sample(
                    &mut out,
                    &format!("{name}_bucket"),
                    &[("route", route), ("le", &le)],
                    count as f64,
                );
            }
            sample(
                &mut out,
                &format!("{name}_bucket"),
                &[("route", route), ("le", "+Inf")],
                h.count as f64,
            );
            sample(&mut out, &format!("{name}_sum"), &[("route", route)], h.sum);
            sample(
                &mut out,
                &format!("{name}_count"),
                &[("route", route)],
                h.count as f64,
            );
        }
        drop(inner);

        header(
            &mut out,
            "agentca_clone_alerts_total",
            "Renewals refused as clones (clone_detected): a certificate renewed a second time with another key.",
            "counter",
        );
        sample(
            &mut out,
            "agentca_clone_alerts_total",
            &[],
            self.clone_alerts.load(Ordering::Relaxed) as f64,
        );
        header(
            &mut out,
            "agentca_build_info",
            "The agentca version and the commit it was built from; always 1.",
            "gauge",
        );
        sample(
            &mut out,
            "agentca_build_info",
            &[
                ("version", env!("CARGO_PKG_VERSION")),
                ("commit", env!("AGENTCA_COMMIT")),
            ],
            1.0,
        );

        let ts = |t: i64| t as f64;
        let mut gauges: Vec<(&str, &str, f64)> = vec![
            (
                "agentca_ready",
                "1 while the CA is ready (its store answers, its issuing certificate is valid), else 0: what /readyz says.",
                if snapshot.ready { 1.0 } else { 0.0 },
            ),
            (
                "agentca_live_certificates",
                "Issued certificates neither expired nor revoked.",
                snapshot.live_certificates as f64,
            ),
            (
                "agentca_crl_entries",
                "Certificates listed in the current CRL.",
                snapshot.crl_entries as f64,
            ),
            (
                "agentca_crl_number",
                "The current CRL's number.",
                snapshot.crl_number as f64,
            ),
            (
                "agentca_crl_this_update_timestamp_seconds",
                "The current CRL's thisUpdate, in seconds since the Unix epoch.",
                ts(snapshot.crl_this_update),
            ),
            (
                "agentca_crl_next_update_timestamp_seconds",
                "The current CRL's nextUpdate, in seconds since the Unix epoch.",
                ts(snapshot.crl_next_update),
            ),
            (
                "agentca_feed_subscribers",
                "Revocation feed requests waiting for news.",
                self.feed_waiting.load(Ordering::Relaxed).max(0) as f64,
            ),
            (
                "agentca_store_bytes",
                "Bytes of the store's files on disk.",
                snapshot.store_bytes as f64,
            ),
            (
                "agentca_intermediate_not_after_timestamp_seconds",
                "When the issuing intermediate certificate expires, in seconds since the Unix epoch.",
                ts(snapshot.intermediate_not_after),
            ),
            (
                "agentca_root_not_after_timestamp_seconds",
                "When the root certificate expires, in seconds since the Unix epoch.",
                ts(snapshot.root_not_after),
            ),
        ];
        if let Some(seq) = snapshot.audit_last_sequence {
            gauges.push((
                "agentca_audit_last_sequence",
                "Sequence number of the last audit event.",
                seq as f64,
            ));
        }
        for (name, help, value) in gauges {
            header(&mut out, name, help, "gauge");
            sample(&mut out, name, &[], value);
        }
        process::Process::read().render(&mut out);
        self.events.render(&mut out);
        out
    }
}

fn header(out: &mut String, name: &str, help: &str, kind: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn sample(out: &mut String, name: &str, labels: &[(&str, &str)], value: f64) {
    out.push_str(name);
    if !labels.is_empty() {
        out.push('{');
        for (i, (k, v)) in labels.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let _ = write!(out, "{k}=\"{}\"", escape(v));
        }
        out.push('}');
    }
    let _ = writeln!(out, " {value}");
}

/// A label value as the text format wants it: `\`, `"` and newline escaped.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

pub mod events;
pub mod history;
mod process;

#[cfg(test)]
pub(crate) mod tests;
