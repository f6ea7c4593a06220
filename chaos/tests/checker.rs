//! The checker on recorded histories (`tests/histories/*.jsonl`): a clean run
//! passes every check, and each broken run fails exactly the check it breaks,
//! naming the operations involved.

use std::path::PathBuf;

use seal_chaos::checker::{check, Check, CheckReport};
use seal_chaos::history::History;
use seal_chaos::report::{render_html, render_text, summarize};

fn load(name: &str) -> History {
    // The directory cargo runs the test from (a build reused from another checkout must not
    // read that checkout's files).
    let dir =
        std::env::var_os("CARGO_MANIFEST_DIR").map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from);
    let path = dir.join("tests/histories").join(name);
    History::read(&path).unwrap_or_else(|e| panic!("{e}"))
}

fn failures(report: &CheckReport) -> Vec<Check> {
    report.results.iter().filter(|r| !r.passed).map(|r| r.check).collect()
}

/// Checks `name`, asserts it fails exactly `expected`, and returns the op ids
/// each violation of it names.
fn fails_only(name: &str, expected: Check) -> (CheckReport, Vec<Vec<u64>>) {
    let history = load(name);
    let report = check(&history);
    assert_eq!(
        failures(&report),
        vec![expected],
        "{name}: {:#?}",
        report.violations().collect::<Vec<_>>()
    );
    let ops = report
        .result(expected)
        .map(|r| r.violations.iter().map(|v| v.ops.clone()).collect())
        .unwrap_or_default();
    (report, ops)
}

#[test]
fn checker_passes_a_clean_run() {
    let history = load("clean.jsonl");
    assert_eq!(history.header.nodes.len(), 4);
    assert!(history.final_state.is_some());
    let report = check(&history);
    assert!(report.passed(), "{:#?}", report.violations().collect::<Vec<_>>());
    assert_eq!(report.results.iter().map(|r| r.check).collect::<Vec<_>>(), Check::ALL);

    let summary = summarize(&history, &report);
    assert!(summary.passed);
    assert_eq!(summary.faults.len(), 1);
    assert_eq!(summary.faults[0].recovery_ms, Some(381));
    let text = render_text(&summary);
    assert!(text.ends_with("verdict: PASS\n"), "{text}");
    let html = render_html(&history, &summary);
    assert!(html.starts_with("<!DOCTYPE html>"));
}

#[test]
fn checker_finds_a_lost_write() {
    let (report, ops) = fails_only("lost-write.jsonl", Check::LostWrite);
    // Publish 19 (app-1 targets v4, snapshot v5) was acknowledged, yet every
    // node ended on targets v3 and snapshot v4.
    assert_eq!(ops, vec![vec![19], vec![19]]);
    let messages: Vec<&str> = report.violations().map(|v| v.message.as_str()).collect();
    assert_eq!(
        messages,
        vec![
            "op 19 (publish chaos.test/app-1 targets v4, acknowledged at 6381 ms through node 1) is lost: nodes 1, 2, \
             3, 4 serve targets v3",
            "op 19 (publish chaos.test/app-1 snapshot v5, acknowledged at 6381 ms through node 1) is lost: nodes 1, \
             2, 3, 4 serve snapshot v4",
        ]
    );
    let text = render_text(&summarize(&load("lost-write.jsonl"), &report));
    assert!(text.ends_with("verdict: FAIL (2 violations)\n"), "{text}");
}

#[test]
fn checker_finds_a_stale_linearizable_read() {
    let (report, ops) = fails_only("stale-read.jsonl", Check::LinearizableRead);
    // Read 6 began at 1200 ms and saw targets (and snapshot) v1; publish 5
    // of v2 was acknowledged at 1093 ms.
    assert_eq!(ops, vec![vec![6, 5], vec![6, 5]]);
    let first = report
        .violations()
        .next()
        .map(|v| v.message.clone())
        .unwrap_or_default();
    assert!(
        first.starts_with(
            "linearizable read op 6 of chaos.test/app-1 through node 3 (1200-1262 ms) got targets v1, but op 5"
        ),
        "{first}"
    );
}

#[test]
fn checker_finds_a_duplicate_version() {
    let (report, ops) = fails_only("duplicate-version.jsonl", Check::DuplicateVersion);
    // Publishes 16 (through node 3) and 17 (through node 4) both had app-2
    // targets v3 and snapshot v3 acknowledged, with different bytes.
    assert_eq!(ops, vec![vec![16, 17], vec![16, 17]]);
    for v in report.violations() {
        assert!(v.message.contains("different content"), "{}", v.message);
        assert!(v.message.contains("op 16 through node 3"), "{}", v.message);
        assert!(v.message.contains("op 17 through node 4"), "{}", v.message);
    }
}

#[test]
fn recorded_history_files_round_trip() {
    for name in [
        "clean.jsonl",
        "lost-write.jsonl",
        "stale-read.jsonl",
        "duplicate-version.jsonl",
    ] {
        let history = load(name);
        let mut bytes = Vec::new();
        history.write_to(&mut bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        let back = History::from_reader(&bytes[..]).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(back, history, "{name}");
    }
}
