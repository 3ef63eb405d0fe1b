//! The Prometheus alert rules and the Grafana dashboard in `deploy/`: the
//! rules pass `promtool test rules`; every expression of both parses
//! (`promtool check rules`) and names only metrics a real CA exports.
//!
//! Needs `promtool` (Debian package prometheus).

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::TestCa;

fn deploy(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy")
        .join(path)
}

fn promtool(args: &[&str], dir: &Path) -> String {
    let out = Command::new("promtool")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("promtool is installed (Debian package prometheus)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool {args:?}:\n{text}");
    text
}

/// The metric names in `text` (words starting with `agentca_` or
/// `process_`), leaving out comment lines.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in text.lines().filter(|l| !l.trim_start().starts_with('#')) {
        let mut word = String::new();
        for c in line.chars().chain(std::iter::once(' ')) {
            if c.is_ascii_alphanumeric() || c == '_' || c == ':' {
                word.push(c);
                continue;
            }
            if word.starts_with("agentca_") || word.starts_with("process_") {
                names.insert(std::mem::take(&mut word));
            }
            word.clear();
        }
    }
    names
}

/// What the CA exports: every family's name, and a histogram's series.
fn exported(ca: &TestCa) -> BTreeSet<String> {
    let text = common::ok(
        Command::new("curl")
            .args(["-sf", "--cacert"])
            .arg(ca.bundle_path())
            .arg(format!("{}/metrics", ca.url)),
    );
    let mut names = BTreeSet::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("# TYPE ") else {
            continue;
        };
        let mut words = rest.split_whitespace();
        let (Some(name), Some(kind)) = (words.next(), words.next()) else {
            continue;
        };
        names.insert(name.to_owned());
        if kind == "histogram" {
            for suffix in ["_bucket", "_sum", "_count"] {
                names.insert(format!("{name}{suffix}"));
            }
        }
    }
    names
}

#[test]
fn the_alert_rules_pass_their_unit_tests() {
    let dir = deploy("prometheus");
    let checked = promtool(&["check", "rules", "agentca-alerts.yml"], &dir);
    assert!(checked.contains("SUCCESS: 14 rules found"), "{checked}");
    let tested = promtool(&["test", "rules", "agentca-alerts.test.yml"], &dir);
    assert!(tested.contains("SUCCESS"), "{tested}");
    // Every alert has a test.
    let rules = std::fs::read_to_string(dir.join("agentca-alerts.yml")).unwrap();
    let tests = std::fs::read_to_string(dir.join("agentca-alerts.test.yml")).unwrap();
    for alert in rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert: "))
    {
        assert!(
            tests.contains(&format!("alertname: {alert}\n")),
            "{alert} has no test with a firing alert"
        );
    }
}

#[test]
fn the_dashboard_and_the_rules_use_only_metrics_the_ca_exports() {
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(deploy("grafana/agentca.json")).unwrap())
            .expect("the dashboard is JSON");
    let mut exprs = Vec::new();
    fn collect(v: &serde_json::Value, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(map) => {
                for (key, value) in map {
                    match (key.as_str(), value) {
                        ("expr", serde_json::Value::String(e)) => out.push(e.clone()),
                        _ => collect(value, out),
                    }
                }
            }
            serde_json::Value::Array(items) => items.iter().for_each(|i| collect(i, out)),
            _ => {}
        }
    }
    collect(&dashboard, &mut exprs);
    assert!(exprs.len() >= 20, "{} expressions", exprs.len());
    assert_eq!(dashboard["uid"], "agentca-overview");

    // Each expression parses: promtool checks them as recording rules,
    // with the dashboard's variable replaced by what it matches.
    let dir = tempfile::tempdir().unwrap();
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, e) in exprs.iter().enumerate() {
        let e = e.replace("$instance", ".*");
        rules += &format!(
            "      - record: dashboard:panel_{i}\n        expr: {}\n",
            serde_json::to_string(&e).unwrap()
        );
    }
    std::fs::write(dir.path().join("dashboard.yml"), rules).unwrap();
    promtool(&["check", "rules", "dashboard.yml"], dir.path());

    let ca = TestCa::start();
    let exported = exported(&ca);
    let used_by_dashboard = metric_names(&exprs.join("\n"));
    let used_by_rules =
        metric_names(&std::fs::read_to_string(deploy("prometheus/agentca-alerts.yml")).unwrap());
    for (what, used) in [
        ("the dashboard", &used_by_dashboard),
        ("the alert rules", &used_by_rules),
    ] {
        let missing: Vec<_> = used.difference(&exported).collect();
        assert!(
            missing.is_empty(),
            "{what} uses metrics the CA does not export: {missing:?}\nexported: {exported:?}"
        );
    }
    // The dashboard shows what matters at a glance.
    for name in [
        "agentca_ready",
        "agentca_live_certificates",
        "agentca_clone_alerts_total",
        "agentca_crl_this_update_timestamp_seconds",
        "agentca_intermediate_not_after_timestamp_seconds",
        "agentca_issuance_total",
        "agentca_feed_subscribers",
    ] {
        assert!(used_by_dashboard.contains(name), "{name}");
    }
}

#[test]
fn metric_names_are_words_of_expressions() {
    let names = metric_names(
        "# agentca_in_a_comment\nrate(agentca_issuance_total{kind=\"renew\"}[5m]) / process_cpu_seconds_total",
    );
    assert_eq!(
        names.into_iter().collect::<Vec<_>>(),
        ["agentca_issuance_total", "process_cpu_seconds_total"]
    );
}
