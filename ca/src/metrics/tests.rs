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
        "agentca_issuance_total{kind=\"enroll\",tenant=\"acme\",env=\"prod\",outcome=\"ok\"} 1\n"
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

#[test]
fn long_polls_are_counted_but_not_timed() {
    let m = Metrics::default();
    m.observe_request(Some("/v1/revocations"), 200, Duration::from_secs(25));
    m.observe_request(Some("/v1/crl"), 200, Duration::from_millis(2));
    let text = m.render(&Snapshot::default());
    assert!(
        text.contains("agentca_http_requests_total{route=\"/v1/revocations\",code=\"200\"} 1\n")
    );
    assert!(!text.contains("duration_seconds_count{route=\"/v1/revocations\"}"));
    assert!(text.contains("agentca_http_request_duration_seconds_count{route=\"/v1/crl\"} 1\n"));
}

#[test]
fn clone_alerts_build_info_readiness_and_timestamps_are_exported() {
    let m = Metrics::default();
    let mut clone = event("renew", None, "refused");
    clone.reason = Some("clone_detected: renewed before, now asked for key 12ab".into());
    m.observe_event_own(&clone);
    let mut folded = clone.clone();
    folded.count = Some(4);
    m.observe_event_own(&folded);
    let mut other = event("renew", None, "refused");
    other.reason = Some("certificate_revoked".into());
    m.observe_event_own(&other);
    let snapshot = Snapshot {
        ready: true,
        crl_next_update: 1_700_000_300,
        root_not_after: 2_000_000_000,
        ..Snapshot::default()
    };
    let text = m.render(&snapshot);
    assert!(text.contains("agentca_clone_alerts_total 5\n"), "{text}");
    assert!(text.contains(&format!(
        "agentca_build_info{{version=\"{}\",commit=\"{}\"}} 1\n",
        env!("CARGO_PKG_VERSION"),
        env!("AGENTCA_COMMIT")
    )));
    assert!(text.contains("\nagentca_ready 1\n"));
    assert!(text.contains("agentca_crl_next_update_timestamp_seconds 1700000300\n"));
    assert!(text.contains("agentca_root_not_after_timestamp_seconds 2000000000\n"));
    // No audit head read: no gauge, rather than a made-up zero.
    assert!(!text.contains("agentca_audit_last_sequence"));
    assert!(m
        .render(&Snapshot::default())
        .contains("\nagentca_ready 0\n"));
}
