use super::*;
use crate::checker::{check, Check};
use crate::history::{
    sha256_hex, Consistency, Fault, FinalState, Header, NodeFinal, Observed, RoleVersion, RoleWrite, FORMAT,
};
use std::collections::BTreeMap;

fn op(id: u64, start_ms: u64, end_ms: u64, outcome: Outcome, kind: OpKind) -> Op {
    Op {
        id,
        client: 0,
        node: 1,
        start_ms,
        end_ms,
        outcome,
        error: None,
        kind,
    }
}

fn publish(id: u64, start: u64, end: u64, outcome: Outcome, v: u64) -> Op {
    let writes = vec![RoleWrite {
        role: "targets".into(),
        version: v,
        sha256: sha256_hex(format!("t{v}").as_bytes()),
    }];
    op(
        id,
        start,
        end,
        outcome,
        OpKind::Publish {
            gun: "g".into(),
            writes,
        },
    )
}

fn read(id: u64, start: u64, end: u64, outcome: Outcome) -> Op {
    let observed = (outcome == Outcome::Ok).then(|| Observed {
        absent: false,
        versions: BTreeMap::new(),
        timestamp_expires_unix_ms: None,
        verify_error: None,
        applied_index: None,
        last_contact_ms: None,
    });
    op(
        id,
        start,
        end,
        outcome,
        OpKind::Read {
            gun: "g".into(),
            consistency: Consistency::Stale,
            observed,
        },
    )
}

fn history() -> History {
    let served = BTreeMap::from([(
        "targets".to_string(),
        RoleVersion {
            version: 3,
            sha256: sha256_hex(b"t3"),
        },
    )]);
    History {
        header: Header {
            format: FORMAT,
            seed: 99,
            started_unix_ms: 1_700_000_000_000,
            duration_ms: 10_000,
            nemeses: vec!["kill".into(), "partition".into()],
            nodes: vec![
                NodeInfo {
                    id: 1,
                    http: "127.0.0.1:1".into(),
                    role: "voter".into(),
                },
                NodeInfo {
                    id: 2,
                    http: "127.0.0.1:2".into(),
                    role: "learner".into(),
                },
            ],
            max_staleness_ms: 1_000,
            staleness_slack_ms: 0,
            liveness_bound_ms: 5_000,
        },
        ops: vec![
            publish(1, 100, 200, Outcome::Ok, 1),
            read(2, 300, 310, Outcome::Ok),
            // During the fault (2000-4000 ms): two writes, one acknowledged;
            // three reads, one successful.
            publish(3, 2_000, 2_500, Outcome::Ok, 2),
            publish(4, 2_600, 3_000, Outcome::Unknown, 3),
            read(5, 2_100, 2_200, Outcome::Fail),
            read(6, 3_000, 3_100, Outcome::Unknown),
            read(7, 4_000, 4_010, Outcome::Ok),
            // After it: the first acknowledged write ends at 4,700 ms.
            publish(8, 4_100, 4_900, Outcome::Fail, 4),
            publish(9, 4_200, 4_700, Outcome::Ok, 3),
            op(10, 5_000, 5_100, Outcome::Ok, OpKind::Delete { gun: "other".into() }),
        ],
        faults: vec![
            Fault {
                id: 20,
                kind: "partition".into(),
                nodes: vec![2],
                description: "isolate <node 2> & friends".into(),
                start_ms: 6_000,
                end_ms: None,
            },
            Fault {
                id: 11,
                kind: "kill".into(),
                nodes: vec![1],
                description: "kill -9 node 1".into(),
                start_ms: 2_000,
                end_ms: Some(4_000),
            },
        ],
        final_state: Some(FinalState {
            healed_at_ms: 4_000,
            at_ms: 7_500,
            nodes: [1, 2]
                .into_iter()
                .map(|id| NodeFinal {
                    id,
                    error: None,
                    applied_index: Some(9),
                    state_digest: Some("ab".repeat(32)),
                    guns: BTreeMap::from([("g".to_string(), Some(served.clone()))]),
                })
                .collect(),
        }),
    }
}

#[test]
fn summarize_counts_operations_and_faults() {
    let h = history();
    let report = check(&h);
    let s = summarize(&h, &report);
    assert_eq!(s.seed, 99);
    assert_eq!(s.duration_ms, 10_000);
    assert_eq!(s.run_ms, 7_500);
    assert_eq!(s.nodes.len(), 2);
    let row = |kind: &str| s.ops.iter().find(|o| o.kind == kind).cloned();
    assert_eq!(
        s.ops.iter().map(|o| o.kind.as_str()).collect::<Vec<_>>(),
        ["publish", "delete", "read", "total"]
    );
    assert_eq!(
        row("publish"),
        Some(OpCount {
            kind: "publish".into(),
            ok: 3,
            fail: 1,
            unknown: 1
        })
    );
    assert_eq!(
        row("total"),
        Some(OpCount {
            kind: "total".into(),
            ok: 6,
            fail: 2,
            unknown: 2
        })
    );

    assert_eq!(s.faults.iter().map(|f| f.id).collect::<Vec<_>>(), [11, 20]);
    let kill = &s.faults[0];
    assert_eq!(kill.ops, 5);
    assert_eq!(kill.writes_ok_ratio, Some(0.5));
    assert_eq!(kill.reads_ok_ratio, Some(1.0 / 3.0));
    assert_eq!(kill.recovery_ms, Some(700));
    let partition = &s.faults[1];
    assert_eq!(partition.ops, 0);
    assert_eq!(partition.writes_ok_ratio, None);
    assert_eq!(partition.reads_ok_ratio, None);
    assert_eq!(partition.recovery_ms, None);

    assert_eq!(s.checks.len(), Check::ALL.len());
    assert!(s.passed, "{:?}", report.violations().collect::<Vec<_>>());
    assert!(s
        .checks
        .iter()
        .all(|c| c.passed && c.violations == 0 && c.examples.is_empty()));

    // And it serializes.
    let json = serde_json::to_string(&s).unwrap();
    let back: Summary = serde_json::from_str(&json).unwrap();
    assert_eq!(back.faults, s.faults);
}

#[test]
fn render_text_has_the_tables_and_the_verdict() {
    let h = history();
    let s = summarize(&h, &check(&h));
    let text = render_text(&s);
    assert!(
        text.starts_with("run: seed 99, planned 10.0 s, ran 7.5 s, 2 nodes: 1 (voter), 2 (learner)"),
        "{text}"
    );
    assert!(
        text.contains("\noperations\nkind     ok  fail  unknown\npublish   3     1        1\n"),
        "{text}"
    );
    assert!(text.contains("\ntotal     6     2        2\n"), "{text}");
    assert!(
        text.contains(
            "id  kind       description                 at s     for s  ops  writes ok %  reads ok %  recovery ms"
        ),
        "{text}"
    );
    assert!(
        text.contains(
            "11  kill       kill -9 node 1               2.0       2.0    5         50.0        33.3          700"
        ),
        "{text}"
    );
    assert!(
        text.contains(
            "20  partition  isolate <node 2> & friends   6.0  unhealed    0            -           -            -"
        ),
        "{text}"
    );
    assert!(
        text.contains("check              result  violations\nduplicate-version  PASS             0\n"),
        "{text}"
    );
    assert!(text.ends_with("\nverdict: PASS\n"), "{text}");

    // A failing run lists examples and counts violations.
    let mut h = history();
    if let Some(fin) = &mut h.final_state {
        fin.nodes[1].state_digest = Some("cd".repeat(32));
        fin.nodes[1].error = Some("connection refused\nafter 3 tries".into());
    }
    let report = check(&h);
    let s = summarize(&h, &report);
    assert!(!s.passed);
    let text = render_text(&s);
    assert!(text.contains("\nconvergence        FAIL             1\n"), "{text}");
    assert!(
        text.contains(
            "convergence (1 violation):\n  - node 2 could not be read at the end: connection refused after 3 tries\n"
        ),
        "{text}"
    );
    assert!(text.ends_with("\nverdict: FAIL (1 violation)\n"), "{text}");
}

#[test]
fn render_html_is_self_contained_and_escaped() {
    let h = history();
    let s = summarize(&h, &check(&h));
    let html = render_html(&h, &s);
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert!(html.contains("<svg"));
    assert!(html.contains("</svg>"));
    assert!(html.trim_end().ends_with("</html>"));
    assert!(html.contains("isolate &lt;node 2&gt; &amp; friends"));
    assert!(!html.contains("<node 2>"));
    assert!(!html.contains("<script"));
    for external in ["src=", "href=", "<link", "url("] {
        assert!(!html.contains(external), "{external}");
    }
    assert!(html.contains("<th>kind</th>"));
    assert!(html.contains(">verdict: <span class=\"pass\">PASS</span>"));
    // One lane per fault, coloured by kind.
    assert!(html.contains("fill=\"#9467bd\""));
    assert!(html.contains("fill=\"#1f77b4\""));
    // Tags balance (roughly): every opened element is closed.
    for tag in ["svg", "table", "tr", "g", "title", "text", "html", "body", "head"] {
        let open = html.matches(&format!("<{tag}>")).count() + html.matches(&format!("<{tag} ")).count();
        let close = html.matches(&format!("</{tag}>")).count();
        assert_eq!(open, close, "<{tag}>");
    }
}

#[test]
fn empty_histories_render() {
    let mut h = history();
    h.ops.clear();
    h.faults.clear();
    h.final_state = None;
    let s = summarize(&h, &check(&h));
    assert_eq!(s.run_ms, 0);
    assert_eq!(s.ops.len(), 1);
    let text = render_text(&s);
    assert!(
        text.contains(
            "faults\nid  kind  description  at s  for s  ops  writes ok %  reads ok %  recovery ms\n(none)\n"
        ),
        "{text}"
    );
    let html = render_html(&h, &s);
    assert!(html.contains("<svg"));
    assert!(!html.contains("NaN") && !html.contains("inf"));
}
