//! Unit tests of the metrics: counting, labels and rendering.

use super::*;

impl Metrics {
    fn observe_event_own(&self, event: &AuditEvent) {
        self.observe_event(event, &event.outcome);
    }
}

pub(crate) fn event(action: &str, subject: Option<&str>, outcome: &str) -> AuditEvent {
    let mut event = AuditEvent::new(
        OffsetDateTime::UNIX_EPOCH,
        agentca::wire::Actor::Anonymous,
        action,
        subject.map(Into::into),
    );
    event.outcome = outcome.into();
    event
}

#[test]
fn events_are_counted_by_family() {
    let m = Metrics::default();
    m.observe_event_own(&event(
        "enroll",
        Some("spiffe://td.test/tenant/acme/env/prod/agent/a1"),
        "ok",
    ));
    m.observe_event_own(&event("enroll", None, "refused"));
    // A summary of 41 refusals counts 41.
    let mut summary = event("enroll", None, "refused");
    summary.count = Some(41);
    m.observe_event_own(&summary);
    m.observe_event_own(&event("revoke", Some("acme/prod"), "ok"));
    m.observe_event_own(&event("revoke", Some("nope/prod"), "refused"));
    m.observe_event_own(&event(
        "register",
        Some("spiffe://td.test/tenant/other/env/prod/agent/a1"),
        "ok",
    ));
    m.observe_event_own(&event("register", Some("acme/prod/a1"), "ok"));
    let text = m.render(&Snapshot::default());
    assert!(text.contains(
        "agentca_issuance_total{kind=\"enroll\",tenant=\"acme\",env=\"prod\",outcome=\"issued\"} 1\n"
    ));
    assert!(text.contains(
        "agentca_issuance_total{kind=\"enroll\",tenant=\"\",env=\"\",outcome=\"refused\"} 42\n"
    ));
    assert!(
        text.contains("agentca_revocations_total{tenant=\"acme\",env=\"prod\",outcome=\"ok\"} 1\n")
    );
    // One series per action and outcome, whatever the tenants.
    assert!(text.contains("agentca_admin_actions_total{action=\"register\",outcome=\"ok\"} 2\n"));
    assert!(
        text.contains("agentca_revocations_total{tenant=\"\",env=\"\",outcome=\"refused\"} 1\n")
    );
}

#[test]
fn series_are_capped() {
    let m = Metrics::default();
    for i in 0..MAX_SERIES + 10 {
        m.observe_event_own(&event(
            "enroll",
            Some(&format!("spiffe://td/tenant/t{i}/env/e/agent/a")),
            "ok",
        ));
    }
    assert_eq!(m.lock().events.len(), MAX_SERIES + 1);
}

#[test]
fn histogram_buckets_are_cumulative() {
    let m = Metrics::default();
    m.observe_request(Some("/v1/enroll"), 200, Duration::from_micros(700));
    m.observe_request(Some("/v1/enroll"), 200, Duration::from_secs(20));
    let text = m.render(&Snapshot::default());
    assert!(text.contains(
        "agentca_http_request_duration_seconds_bucket{route=\"/v1/enroll\",le=\"0.0005\"} 0\n"
    ));
    assert!(text.contains(
        "agentca_http_request_duration_seconds_bucket{route=\"/v1/enroll\",le=\"0.001\"} 1\n"
    ));
    assert!(text.contains(
        "agentca_http_request_duration_seconds_bucket{route=\"/v1/enroll\",le=\"+Inf\"} 2\n"
    ));
    assert!(text.contains("agentca_http_requests_total{route=\"/v1/enroll\",code=\"200\"} 2\n"));
}

#[test]
fn label_values_are_escaped_and_unmatched_requests_share_a_label() {
    assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    let m = Metrics::default();
    m.observe_request(None, 404, Duration::from_millis(1));
    m.observe_request(None, 404, Duration::from_millis(1));
    let text = m.render(&Snapshot::default());
    assert!(text.contains("agentca_http_requests_total{route=\"unmatched\",code=\"404\"} 2\n"));
}
