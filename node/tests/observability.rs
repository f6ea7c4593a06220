//! What an operator's monitoring sees of a real three-process cluster (one seal-signer): every
//! node's `/metrics` holds real numbers (no NaN, on followers too, before and after the first
//! collection), the leader alone reports per-peer replication lag, followers report their last
//! leader contact, `GET /_seal/ready` answers 200 on a node within its staleness bound and 503
//! with the reason once a follower has lost its leader; and every metric the alert rules and the
//! dashboard in `deploy/monitoring/` use exists in a running node's or signer's `/metrics`.

mod common;

use common::cluster::*;
use common::{try_request, Node};

fn metrics_of(addr: &str) -> String {
    let r = try_request(addr, "GET", "/metrics", &[], &[]).unwrap_or_else(|e| panic!("/metrics on {addr}: {e}"));
    assert_eq!(r.status, 200, "/metrics on {addr}: {}", r.text());
    r.text().to_owned()
}

/// The value of the sample line `series` (name and labels exactly as exported).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
}

/// Every sample line's value is a number Prometheus alerts can compare: no NaN anywhere.
fn assert_no_nan(who: &str, text: &str) {
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let value = line.rsplit(' ').next().unwrap_or("");
        assert!(
            !value.eq_ignore_ascii_case("nan"),
            "{who} exports NaN: {line:?}\n{text}"
        );
    }
}

fn monitoring_dir() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/monitoring")
}

/// Every `seal_…` metric name in `text` (rules or dashboard).
fn metric_names(text: &str) -> std::collections::BTreeSet<String> {
    let mut names = std::collections::BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("seal_") {
        let before = rest[..at].chars().next_back();
        let tail = &rest[at..];
        let len = tail
            .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
            .unwrap_or(tail.len());
        if !before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
            names.insert(tail[..len].to_owned());
        }
        rest = &tail[len..];
    }
    names
}

/// Whether the exposition `text` holds a sample of `name`.
fn exports(text: &str, name: &str) -> bool {
    text.lines().any(|l| {
        l.strip_prefix(name)
            .is_some_and(|r| r.starts_with('{') || r.starts_with(' '))
    })
}

fn ready(node: &Node) -> Option<(u16, serde_json::Value)> {
    let r = try_request(&node.addr, "GET", "/_seal/ready", &[], &[]).ok()?;
    Some((r.status, serde_json::from_slice(&r.body).ok()?))
}

#[test]
fn every_node_exports_real_numbers_and_a_follower_that_loses_its_leader_is_not_ready() {
    let _serial = one_cluster_at_a_time();
    let mut cluster = start_cluster(0);
    let (tls, raft, nodes) = (&cluster.tls, &cluster.raft, &mut cluster.nodes);
    let leader = find_leader(tls, raft) as usize - 1;
    let followers: Vec<usize> = (0..3).filter(|i| *i != leader).collect();
    let (f1, f2) = (followers[0], followers[1]);

    // Before any collection: no NaN on any node, the build named, nothing about timestamps.
    let build = format!(
        "seal_build_info{{component=\"node\",version=\"{}\"}}",
        env!("CARGO_PKG_VERSION")
    );
    for node in nodes.iter() {
        let text = metrics_of(&node.addr);
        assert_no_nan(&node.addr, &text);
        assert_eq!(sample(&text, &build), Some(1.0), "{text}");
        assert_eq!(sample(&text, "seal_timestamp_min_remaining_seconds"), None, "{text}");
    }
    // Every node within its bound is ready.
    for node in nodes.iter() {
        let (status, body) = eventually(&format!("{} ready", node.addr), || {
            ready(node).filter(|(s, _)| *s == 200)
        });
        assert_eq!((status, body), (200, serde_json::json!({"ready": true})));
    }

    // A collection published through the leader: the first scrape of each follower that serves
    // it already holds its remaining timestamp lifetime, computed from its own applied state.
    let gun = "example.com/observability/one";
    let (_, root) = publish_new(&nodes[leader], gun);
    served_everywhere(&nodes.iter().collect::<Vec<_>>(), gun, &root);
    let leader_text = metrics_of(&nodes[leader].addr);
    let on_leader = sample(&leader_text, "seal_timestamp_min_remaining_seconds").expect("leader's remaining lifetime");
    for &i in &followers {
        let text = metrics_of(&nodes[i].addr);
        assert_no_nan(&nodes[i].addr, &text);
        let remaining = sample(&text, "seal_timestamp_min_remaining_seconds")
            .unwrap_or_else(|| panic!("no remaining lifetime on follower {}:\n{text}", nodes[i].addr));
        assert!(remaining.is_finite() && remaining > 0.0, "{remaining}");
        // The same timestamp, read from the follower's own replica (generous bound: scrapes apart).
        assert!((remaining - on_leader).abs() < 60.0, "{remaining} vs {on_leader}");
        let contact = sample(&text, "seal_raft_last_leader_contact_seconds").expect("leader contact on a follower");
        assert!((0.0..30.0).contains(&contact), "{contact}");
        assert!(
            !text.contains("seal_raft_replication_lag_entries{"),
            "a follower reports no replication lag:\n{text}"
        );
    }
    // The leader: a lag series per peer (caught up: within a few entries), the leader known.
    assert_no_nan(&nodes[leader].addr, &leader_text);
    let leader_id = leader as u64 + 1;
    assert_eq!(sample(&leader_text, "seal_raft_leader"), Some(leader_id as f64));
    for &i in &followers {
        let series = format!("seal_raft_replication_lag_entries{{peer=\"{}\"}}", i + 1);
        let lag = eventually(&format!("{series} caught up"), || {
            sample(&metrics_of(&nodes[leader].addr), &series).filter(|lag| *lag <= 2.0)
        });
        assert!(lag >= 0.0);
    }
    assert!(
        sample(&leader_text, "seal_raft_leader_changes_total").is_some_and(|n| n >= 1.0),
        "{leader_text}"
    );

    // Every metric the alert rules and the dashboard use is exported by a node or the signer.
    let signer_config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(cluster.dir.path().join("signer.json")).unwrap()).unwrap();
    let signer_metrics = signer_config["server"]["metrics_addr"]
        .as_str()
        .expect("the signer's metrics_addr");
    let mut exported: Vec<String> = nodes.iter().map(|n| metrics_of(&n.addr)).collect();
    exported.push(metrics_of(signer_metrics));
    assert!(
        exported
            .last()
            .is_some_and(|t| t.contains("seal_build_info{component=\"signer\"")),
        "{exported:?}"
    );
    for file in ["prometheus-rules.yml", "grafana-dashboard.json"] {
        let text = std::fs::read_to_string(monitoring_dir().join(file)).unwrap();
        let names = metric_names(&text);
        assert!(names.len() >= 8, "{file}: {names:?}");
        for name in names {
            assert!(
                exported.iter().any(|t| exports(t, &name)),
                "{file} uses {name}, which no node or signer exports"
            );
        }
    }

    // Cut one follower off: kill the leader and the other voter. Within its staleness bound plus
    // a generous wait, it says it is not ready, and why.
    nodes[leader].kill9();
    nodes[f1].kill9();
    let (status, body) = eventually("the cut-off follower not ready", || {
        ready(&nodes[f2]).filter(|(s, _)| *s == 503)
    });
    assert_eq!(status, 503);
    assert_eq!(body["ready"], false, "{body}");
    let reason = body["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains(&format!("node {}", f2 + 1)) && reason.contains("leader"),
        "{reason}"
    );
    // Its metrics still hold real numbers: the lifetime left and the growing contact age.
    let text = metrics_of(&nodes[f2].addr);
    assert_no_nan(&nodes[f2].addr, &text);
    assert!(sample(&text, "seal_timestamp_min_remaining_seconds").is_some_and(f64::is_finite));
}

/// A single node with `metrics.addr` and `metrics.main_listener: false`: `/metrics` is served on
/// its own plain-HTTP listener (and nothing else there), no longer on the main one; the main
/// listener's `/_seal/ready` says the node (its own leader, store open) is ready.
#[test]
fn metrics_on_their_own_listener_and_a_single_node_is_ready() {
    let dir = tempfile::tempdir().unwrap();
    let metrics_addr = format!("127.0.0.1:{}", free_port());
    let node = Node::serve(
        dir.path(),
        serde_json::json!({
            "server": {},
            "storage": {"backend": "rocksdb"},
            "trust_service": {"type": "local", "key_algorithm": "ed25519"},
            "metrics": {"addr": metrics_addr, "main_listener": false},
        }),
    );
    let text = metrics_of(&metrics_addr);
    assert_no_nan(&metrics_addr, &text);
    assert!(text.contains("seal_build_info{component=\"node\""), "{text}");
    assert_eq!(sample(&text, "seal_raft_leader"), Some(1.0), "{text}");
    for path in ["/v2/", "/_notary_server/health", "/_seal/ready", "/metricsx"] {
        let r = try_request(&metrics_addr, "GET", path, &[], &[]).unwrap();
        assert_eq!(r.status, 404, "{path} on the metrics listener: {}", r.text());
    }
    assert_eq!(
        node.get("/metrics").status,
        404,
        "main listener with main_listener: false"
    );
    let r = node.get("/_seal/ready");
    assert_eq!((r.status, r.text().as_str()), (200, "{\"ready\":true}"));
}
