//! End-to-end: `curl /metrics` serves the Prometheus text format, which a
//! Prometheus parser reads, and its counters and gauges follow what the CA
//! does.

mod common;

use std::process::Command;

use agentca::wire::RevokeRequest;
use common::{refusal, TestCa};
use prometheus_parse::{Sample, Scrape, Value};

/// `curl` on the CA's `/metrics` as its first admin, parsed.
fn scrape(ca: &TestCa) -> (String, Scrape) {
    scrape_as(ca, Some(&ca.admin_token()))
}

/// `curl` on the CA's `/metrics` with `token` as bearer (or none), parsed.
fn scrape_as(ca: &TestCa, token: Option<&str>) -> (String, Scrape) {
    let mut curl = Command::new("curl");
    curl.args([
        "--silent",
        "--show-error",
        "--fail",
        "--max-time",
        "10",
        "--cacert",
    ])
    .arg(ca.bundle_path());
    if let Some(token) = token {
        curl.args(["--header", &format!("Authorization: Bearer {token}")]);
    }
    let out = curl
        .arg(format!("{}/metrics", ca.url))
        .output()
        .expect("run curl");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    // Every line is a comment or a well-formed sample: the parser below
    // skips what it does not understand, so check the shape first.
    for line in text.lines() {
        if line.starts_with("# HELP ") || line.starts_with("# TYPE ") {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("{line:?}"));
        assert!(value.parse::<f64>().is_ok(), "value of {line:?}");
        let name_end = series.find('{').unwrap_or(series.len());
        assert!(
            series[..name_end]
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "{line:?}"
        );
        if name_end < series.len() {
            assert!(series.ends_with('}'), "{line:?}");
        }
    }
    let scrape = Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).expect("Prometheus text");
    (text, scrape)
}

fn find<'a>(scrape: &'a Scrape, metric: &str, labels: &[(&str, &str)]) -> Option<&'a Sample> {
    scrape
        .samples
        .iter()
        .find(|s| s.metric == metric && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
}

/// The value of a series that must be there.
#[track_caller]
fn value(scrape: &Scrape, metric: &str, labels: &[(&str, &str)]) -> f64 {
    match find(scrape, metric, labels).map(|s| &s.value) {
        Some(Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v)) => *v,
        Some(other) => panic!("{metric}: not a number: {other:?}"),
        None => panic!("no series {metric}{labels:?}"),
    }
}

/// A labelled counter: 0 until its first event creates the series.
#[track_caller]
fn counter(scrape: &Scrape, metric: &str, labels: &[(&str, &str)]) -> f64 {
    match find(scrape, metric, labels) {
        Some(_) => value(scrape, metric, labels),
        None => 0.0,
    }
}

const ENROLLED: &[(&str, &str)] = &[
    ("kind", "enroll"),
    ("tenant", "acme"),
    ("env", "prod"),
    ("outcome", "ok"),
];

#[tokio::test]
async fn metrics_parse_and_move_with_issuance_revocation_and_refusals() {
    let ca = TestCa::start();
    let (text, before) = scrape(&ca);
    for family in [
        "agentca_issuance_total",
        "agentca_revocations_total",
        "agentca_http_requests_total",
        "agentca_http_request_duration_seconds",
        "agentca_live_certificates",
        "agentca_crl_entries",
        "agentca_crl_this_update_timestamp_seconds",
        "agentca_crl_next_update_timestamp_seconds",
        "agentca_feed_subscribers",
        "agentca_store_bytes",
        "agentca_audit_last_sequence",
        "agentca_ready",
        "agentca_build_info",
        "agentca_clone_alerts_total",
        "agentca_intermediate_not_after_timestamp_seconds",
        "agentca_root_not_after_timestamp_seconds",
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_open_fds",
        "process_start_time_seconds",
    ] {
        assert!(
            text.contains(&format!("# TYPE {family} ")),
            "{family} missing:\n{text}"
        );
    }
    assert_eq!(counter(&before, "agentca_issuance_total", ENROLLED), 0.0);
    assert_eq!(value(&before, "agentca_live_certificates", &[]), 0.0);
    assert!(value(&before, "agentca_store_bytes", &[]) > 0.0);

    ca.register("acme", "prod", "a1").await;
    let token = ca.token("acme", "prod", "a1", 2).await;
    let (first, _) = ca.enroll(&token).await.unwrap();
    let (second, _) = ca.enroll(&token).await.unwrap();
    // A third use of a two-use token is refused.
    refusal(ca.enroll(&token).await);

    let (_, after) = scrape(&ca);
    assert_eq!(value(&after, "agentca_issuance_total", ENROLLED), 2.0);
    assert_eq!(
        value(
            &after,
            "agentca_issuance_total",
            &[("kind", "enroll"), ("outcome", "refused")]
        ),
        1.0
    );
    assert_eq!(value(&after, "agentca_live_certificates", &[]), 2.0);
    match &find(
        &after,
        "agentca_http_request_duration_seconds",
        &[("route", "/v1/enroll")],
    )
    .expect("an enroll latency histogram")
    .value
    {
        Value::Histogram(buckets) => {
            let total = buckets.iter().map(|b| b.count).fold(0.0, f64::max);
            assert_eq!(total, 3.0, "{buckets:?}");
        }
        other => panic!("not a histogram: {other:?}"),
    }
    assert_eq!(
        value(
            &after,
            "agentca_http_requests_total",
            &[("route", "/v1/enroll"), ("code", "200")]
        ),
        2.0
    );
    assert!(
        value(&after, "agentca_audit_last_sequence", &[])
            > value(&before, "agentca_audit_last_sequence", &[])
    );

    // A revocation: counted, listed in the CRL, no longer live.
    ca.revoke(&RevokeRequest {
        serial: Some(first.serial.clone()),
        ..Default::default()
    })
    .await
    .unwrap();
    let (_, revoked) = scrape(&ca);
    assert_eq!(
        value(
            &revoked,
            "agentca_revocations_total",
            &[("tenant", "acme"), ("env", "prod"), ("outcome", "ok")]
        ),
        1.0
    );
    assert_eq!(value(&revoked, "agentca_crl_entries", &[]), 1.0);
    assert_eq!(value(&revoked, "agentca_live_certificates", &[]), 1.0);
    // Re-signed for the revocation, seconds ago.
    let now = time::OffsetDateTime::now_utc().unix_timestamp() as f64;
    let this_update = value(&revoked, "agentca_crl_this_update_timestamp_seconds", &[]);
    assert!(
        (now - 60.0..=now + 1.0).contains(&this_update),
        "CRL thisUpdate {this_update}, now {now}"
    );
    assert_eq!(value(&revoked, "agentca_ready", &[]), 1.0);

    // A waiting feed request is a subscriber until news ends its wait.
    let waiting = {
        let http = ca.http();
        let url = format!("{}/v1/revocations?since=1&wait=20", ca.url);
        tokio::spawn(async move { http.get(url).send().await.map(|r| r.status().as_u16()) })
    };
    ca.wait_feed_subscribers(1).await;
    assert_eq!(value(&scrape(&ca).1, "agentca_feed_subscribers", &[]), 1.0);
    ca.revoke(&RevokeRequest {
        serial: Some(second.serial.clone()),
        ..Default::default()
    })
    .await
    .unwrap();
    assert_eq!(waiting.await.unwrap().unwrap(), 200);
    let (text, after_wait) = scrape(&ca);
    assert_eq!(value(&after_wait, "agentca_feed_subscribers", &[]), 0.0);
    // The long poll is counted, and kept out of the latency histogram.
    assert!(
        counter(
            &after_wait,
            "agentca_http_requests_total",
            &[("route", "/v1/revocations"), ("code", "200")]
        ) >= 1.0
    );
    assert!(
        !text.contains("agentca_http_request_duration_seconds_count{route=\"/v1/revocations\"}"),
        "{text}"
    );

    // Anyone may scrape, and sees the same counts without a tenant's or an
    // environment's name.
    let (text, anonymous) = scrape_as(&ca, None);
    assert!(
        !text.contains("acme") && !text.contains("\"prod\""),
        "{text}"
    );
    assert_eq!(
        value(
            &anonymous,
            "agentca_issuance_total",
            &[("kind", "enroll"), ("outcome", "ok")]
        ),
        2.0
    );
    assert_eq!(
        value(
            &anonymous,
            "agentca_revocations_total",
            &[("outcome", "ok")]
        ),
        2.0
    );
    // A wrong token is refused, not shown less.
    let out = Command::new("curl")
        .args([
            "--silent",
            "--output",
            "/dev/null",
            "--write-out",
            "%{http_code}",
        ])
        .arg("--cacert")
        .arg(ca.bundle_path())
        .args(["--header", "Authorization: Bearer not-a-token"])
        .arg(format!("{}/metrics", ca.url))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "401");
    // A clone: the same certificate renewed again with another key.
    assert_eq!(value(&before, "agentca_clone_alerts_total", &[]), 0.0);
    let (issued, key) = ca.enrolled("acme", "prod", "cloned").await;
    let holder = ca.client_with(&issued.certificate_chain, &key);
    holder.renew(&common::csr()).await.unwrap();
    assert_eq!(
        refusal(holder.renew(&common::csr()).await).1,
        "clone_detected"
    );
    let (_, cloned) = scrape(&ca);
    assert_eq!(value(&cloned, "agentca_clone_alerts_total", &[]), 1.0);
}

#[tokio::test]
async fn live_certificates_survive_a_restart() {
    let mut ca = TestCa::start();
    ca.register("acme", "prod", "a1").await;
    let token = ca.token("acme", "prod", "a1", 3).await;
    for _ in 0..3 {
        ca.enroll(&token).await.unwrap();
    }
    ca.restart();
    let (_, after) = scrape(&ca);
    assert_eq!(value(&after, "agentca_live_certificates", &[]), 3.0);
    // Counters start again from zero in a new process, as Prometheus
    // expects of counters.
    assert_eq!(counter(&after, "agentca_issuance_total", ENROLLED), 0.0);
}
