//! The files in `deploy/monitoring/`: the alert rules pass `promtool check rules` and their unit
//! tests (`promtool test rules`: the timestamp, signer-down and publish-error alerts fire when and
//! only when they should); the Grafana dashboard is a dashboard Grafana imports (schema version,
//! a templated data source every query uses). That every metric they name exists in a running
//! node's or signer's `/metrics` is checked against a real cluster in `observability.rs`.

use std::path::PathBuf;
use std::process::Command;

fn monitoring_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/monitoring")
}

/// `promtool` with `args` in `deploy/monitoring/`, or `None` after saying why it is skipped
/// (a failure under `CI=true`).
fn promtool(args: &[&str]) -> Option<std::process::Output> {
    match Command::new("promtool")
        .args(args)
        .current_dir(monitoring_dir())
        .output()
    {
        Ok(out) => Some(out),
        Err(e) => {
            seal_testkit::skip(&format!(
                "promtool cannot run ({e}; `apt-get install --no-install-recommends prometheus`)"
            ));
            None
        }
    }
}

fn assert_success(what: &str, out: &std::process::Output) {
    assert!(
        out.status.success(),
        "{what} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn alert_rules_are_valid_for_promtool() {
    let Some(out) = promtool(&["check", "rules", "prometheus-rules.yml"]) else {
        return;
    };
    assert_success("promtool check rules", &out);
    assert!(String::from_utf8_lossy(&out.stdout).contains("SUCCESS"));
}

#[test]
fn alert_rules_pass_their_unit_tests() {
    let Some(out) = promtool(&["test", "rules", "prometheus-rules.test.yml"]) else {
        return;
    };
    assert_success("promtool test rules", &out);
}

#[test]
fn the_dashboard_is_grafana_json_with_a_templated_data_source() {
    let text = std::fs::read_to_string(monitoring_dir().join("grafana-dashboard.json")).unwrap();
    let d: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert!(d["schemaVersion"].as_u64().is_some_and(|v| v >= 30), "schemaVersion");
    assert!(d["title"].is_string() && d["uid"].is_string());
    let vars = d["templating"]["list"].as_array().expect("templating.list");
    assert!(
        vars.iter()
            .any(|v| v["type"] == "datasource" && v["name"] == "datasource" && v["query"] == "prometheus"),
        "a Prometheus data source variable"
    );
    let panels = d["panels"].as_array().expect("panels");
    assert!(!panels.is_empty());
    let mut ids = std::collections::BTreeSet::new();
    for p in panels {
        let title = p["title"].as_str().unwrap_or_default();
        assert!(ids.insert(p["id"].as_u64().expect("panel id")), "duplicate id: {title}");
        assert_eq!(p["datasource"]["uid"], "${datasource}", "{title}");
        let targets = p["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{title}");
        for t in targets {
            assert_eq!(t["datasource"]["uid"], "${datasource}", "{title}");
            assert!(t["expr"].as_str().is_some_and(|e| !e.is_empty()), "{title}");
        }
        for k in ["x", "y", "w", "h"] {
            assert!(p["gridPos"][k].is_u64(), "{title}: gridPos.{k}");
        }
    }
}
