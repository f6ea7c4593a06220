//! Short chaos runs against real clusters: one healthy cluster under every
//! kind of fault must pass every check; one deliberately broken cluster (its
//! nodes acknowledge publishes before they commit) must fail them.
//!
//! The runs with fault switches need a `seal-node` built with its test-only
//! `fault-injection` feature, kept apart from the seal-node every other test
//! runs (which is built with the features that ship): `scripts/test.sh`
//! builds it first and copies it to `$CARGO_TARGET_DIR/fault-injection/`
//! ([`seal_testkit::process::fault_switch_node`]). The `seal-signer` (and the shipping `seal-node`)
//! are those cargo builds beside this test (`cargo test --workspace`).

use std::path::PathBuf;
use std::time::Duration;

use seal_chaos::checker::Check;
use seal_chaos::nemesis::{Planned, Shape, SignerFault, Step, Who, ALL};
use seal_chaos::report::render_text;
use seal_chaos::run::{run, RunSpec};
use seal_testkit::process::{built_binary, fault_switch_node};

fn spec(out: PathBuf, node_bin: PathBuf, duration: Duration, seed: u64) -> RunSpec {
    RunSpec {
        out,
        node_bin,
        signer_bin: built_binary("seal-signer"),
        voters: 3,
        learners: 1,
        duration,
        nemeses: ALL.iter().map(|n| (*n).to_owned()).collect(),
        schedule: None,
        seed,
        writers: 3,
        readers: 3,
        guns: 8,
        max_staleness_ms: 2_000,
        timestamp_lifetime_secs: 30,
        liveness_bound: Duration::from_secs(15),
        fault_switches: true,
        signers: 1,
        threshold: 2,
        ack_before_commit: false,
        keep_data: false,
        verbose: true,
    }
}

/// Held by each test: two clusters at once starve each other on a small machine.
fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

#[test]
fn a_healthy_cluster_passes_every_check_under_faults() {
    let Some(node_bin) = fault_switch_node() else { return };
    let _one = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let outcome = run(&spec(out.clone(), node_bin, Duration::from_secs(100), 7)).unwrap();
    let text = render_text(&outcome.summary);
    println!("{text}");
    let failures: Vec<_> = outcome.report.violations().collect();
    assert!(failures.is_empty(), "the checker failed a healthy cluster:\n{text}");
    // The run did real work under several kinds of fault.
    let kinds: std::collections::BTreeSet<&str> = outcome.summary.faults.iter().map(|f| f.kind.as_str()).collect();
    assert!(kinds.len() >= 4, "fault kinds injected: {kinds:?}");
    let total = outcome.summary.ops.iter().find(|o| o.kind == "total").unwrap();
    assert!(total.ok > 500, "only {} operations acknowledged", total.ok);
    for file in [
        "history.jsonl",
        "summary.json",
        "summary.txt",
        "timeline.html",
        "schedule.json",
    ] {
        assert!(out.join(file).exists(), "{file} missing");
    }
}

#[test]
fn a_node_acknowledging_before_commit_fails_the_checker() {
    let Some(node_bin) = fault_switch_node() else { return };
    let _one = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let mut spec = spec(dir.path().join("run"), node_bin, Duration::from_secs(30), 11);
    spec.ack_before_commit = true;
    let isolate = Step {
        quiet_ms: 3_000,
        hold_ms: 6_000,
        fault: Planned::Partition {
            shape: Shape::Isolate(Who::Leader),
        },
    };
    spec.schedule = Some(vec![isolate.clone(), isolate.clone(), isolate]);
    let outcome = run(&spec).unwrap();
    let text = render_text(&outcome.summary);
    println!("{text}");
    assert!(!outcome.report.passed(), "the checker passed a broken cluster:\n{text}");
    assert!(
        [Check::LostWrite, Check::LinearizableRead, Check::BoundedStaleness]
            .iter()
            .any(|c| outcome.report.failed(*c)),
        "{text}"
    );
}

/// Three threshold signers (2 of 3) that every node lists: killing, pausing
/// and partitioning one signer at a time keeps publishes acknowledged, and
/// every check passes.
#[test]
fn threshold_signers_keep_publishing_through_single_signer_faults() {
    let _one = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    // Signer faults need no switch in the nodes: the shipping seal-node.
    let mut spec = spec(
        dir.path().join("run"),
        built_binary("seal-node"),
        Duration::from_secs(36),
        13,
    );
    spec.signers = 3;
    spec.threshold = 2;
    spec.fault_switches = false;
    spec.nemeses = vec!["signer".to_owned()];
    let fault = |how, node| Step {
        quiet_ms: 3_000,
        hold_ms: 7_000,
        fault: Planned::Signer {
            how,
            who: Who::Node(node),
        },
    };
    spec.schedule = Some(vec![
        fault(SignerFault::Kill, 0),
        fault(SignerFault::Pause, 1),
        fault(SignerFault::Cut, 2),
    ]);
    let outcome = run(&spec).unwrap();
    let text = render_text(&outcome.summary);
    println!("{text}");
    let failures: Vec<_> = outcome.report.violations().collect();
    assert!(failures.is_empty(), "the checker failed:\n{text}");
    let signer_faults: Vec<_> = outcome.summary.faults.iter().filter(|f| f.kind == "signer").collect();
    assert_eq!(signer_faults.len(), 3, "{text}");
    // Publishes to existing collections started during each fault: every
    // one answered (acknowledged, or refused for a newer version), none
    // waiting more than 2 s. (A new collection's
    // timestamp key is a DKG with every signer: those fail while one is
    // down, and are not counted.)
    let history = std::fs::read_to_string(&outcome.history).unwrap();
    let publishes: Vec<serde_json::Value> = history
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["entry"] == "op" && v["op"] == "publish")
        .filter(|v| !v["error"].as_str().unwrap_or("").starts_with("timestamp.key"))
        .collect();
    for f in signer_faults {
        let end = f.end_ms.expect("healed");
        let during: Vec<&serde_json::Value> = publishes
            .iter()
            .filter(|v| (f.start_ms..=end).contains(&v["start_ms"].as_u64().unwrap_or(0)))
            .collect();
        let ok = during.iter().filter(|v| v["outcome"] == "ok").count();
        assert!(ok > 0, "{}: no publish acknowledged\n{text}", f.description);
        let slowest = during
            .iter()
            .map(|v| v["end_ms"].as_u64().unwrap_or(0) - v["start_ms"].as_u64().unwrap_or(0))
            .max()
            .unwrap_or(0);
        println!(
            "{}: {ok} of {} publishes acknowledged, slowest {slowest} ms",
            f.description,
            during.len()
        );
        assert!(!during.is_empty(), "{}: no publish ran\n{text}", f.description);
        // A 4xx answer (another writer's version got there first) is an
        // answer: the cluster was available.
        let failed: Vec<&str> = during
            .iter()
            .filter(|v| v["outcome"] != "ok")
            .map(|v| v["error"].as_str().unwrap_or("(unknown outcome)"))
            .filter(|e| !e.starts_with('4'))
            .collect();
        assert!(
            failed.is_empty(),
            "{}: publishes failed: {failed:#?}\n{text}",
            f.description
        );
        assert!(slowest <= 2_000, "{}: a publish took {slowest} ms", f.description);
    }
}
