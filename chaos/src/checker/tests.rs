use super::*;
use crate::history::{sha256_hex, Fault, Header, NodeInfo, RoleWrite, FORMAT};

const T0: i64 = 1_700_000_000_000;
const DAY_MS: i64 = 86_400_000;

fn header() -> Header {
    Header {
        format: FORMAT,
        seed: 1,
        started_unix_ms: T0,
        duration_ms: 10_000,
        nemeses: vec!["kill".into()],
        nodes: (1..=3)
            .map(|id| NodeInfo {
                id,
                http: format!("127.0.0.1:{}", 4440 + id),
                role: "voter".into(),
            })
            .collect(),
        max_staleness_ms: 1_000,
        staleness_slack_ms: 0,
        liveness_bound_ms: 5_000,
    }
}

fn sha(gun: &str, role: &str, v: u64, tag: &str) -> String {
    sha256_hex(format!("{gun}/{role}/{v}/{tag}").as_bytes())
}

fn rw(gun: &str, role: &str, v: u64) -> RoleWrite {
    RoleWrite {
        role: role.into(),
        version: v,
        sha256: sha(gun, role, v, ""),
    }
}

fn op(id: u64, node: u64, start_ms: u64, end_ms: u64, outcome: Outcome, kind: OpKind) -> Op {
    Op {
        id,
        client: 0,
        node,
        start_ms,
        end_ms,
        outcome,
        error: (outcome != Outcome::Ok).then(|| "503 UNAVAILABLE".to_string()),
        kind,
    }
}

fn publish(id: u64, start: u64, end: u64, outcome: Outcome, gun: &str, roles: &[(&str, u64)]) -> Op {
    let writes = roles.iter().map(|&(r, v)| rw(gun, r, v)).collect();
    op(
        id,
        1,
        start,
        end,
        outcome,
        OpKind::Publish {
            gun: gun.into(),
            writes,
        },
    )
}

fn delete(id: u64, start: u64, end: u64, outcome: Outcome, gun: &str) -> Op {
    op(id, 1, start, end, outcome, OpKind::Delete { gun: gun.into() })
}

fn observed(gun: &str, roles: &[(&str, u64)]) -> Observed {
    Observed {
        absent: false,
        versions: roles
            .iter()
            .map(|&(r, v)| {
                (
                    r.to_string(),
                    RoleVersion {
                        version: v,
                        sha256: sha(gun, r, v, ""),
                    },
                )
            })
            .collect(),
        timestamp_expires_unix_ms: Some(T0 + 14 * DAY_MS),
        verify_error: None,
        applied_index: Some(10),
        last_contact_ms: Some(5),
    }
}

fn absent() -> Observed {
    Observed {
        absent: true,
        versions: BTreeMap::new(),
        timestamp_expires_unix_ms: None,
        verify_error: None,
        applied_index: Some(10),
        last_contact_ms: Some(5),
    }
}

fn read(id: u64, start: u64, end: u64, gun: &str, consistency: Consistency, observed: Observed) -> Op {
    op(
        id,
        2,
        start,
        end,
        Outcome::Ok,
        OpKind::Read {
            gun: gun.into(),
            consistency,
            observed: Some(observed),
        },
    )
}

fn roles(gun: &str, roles: &[(&str, u64)]) -> Option<BTreeMap<String, RoleVersion>> {
    Some(observed(gun, roles).versions)
}

fn node(id: u64, guns: &[(&str, Option<BTreeMap<String, RoleVersion>>)]) -> NodeFinal {
    NodeFinal {
        id,
        error: None,
        applied_index: Some(20),
        state_digest: Some(sha256_hex(format!("{guns:?}").as_bytes())),
        guns: guns.iter().map(|(g, r)| (g.to_string(), r.clone())).collect(),
    }
}

fn final_state(guns: &[(&str, Option<BTreeMap<String, RoleVersion>>)]) -> FinalState {
    FinalState {
        healed_at_ms: 5_000,
        at_ms: 9_000,
        nodes: (1..=3).map(|id| node(id, guns)).collect(),
    }
}

fn history(ops: Vec<Op>, fin: Option<FinalState>) -> History {
    History {
        header: header(),
        ops,
        faults: vec![Fault {
            id: 100,
            kind: "kill".into(),
            nodes: vec![1],
            description: "kill -9 node 1".into(),
            start_ms: 2_000,
            end_ms: Some(5_000),
        }],
        final_state: fin,
    }
}

/// A write of `g` after healing, so that liveness passes.
fn after_heal(id: u64, v: u64) -> Op {
    publish(id, 5_100, 5_200, Outcome::Ok, "g", &[("targets", v), ("snapshot", v)])
}

fn base_ops() -> Vec<Op> {
    vec![
        publish(
            1,
            100,
            200,
            Outcome::Ok,
            "g",
            &[("root", 1), ("targets", 1), ("snapshot", 1)],
        ),
        publish(2, 1_000, 1_100, Outcome::Ok, "g", &[("targets", 2), ("snapshot", 2)]),
        after_heal(3, 3),
    ]
}

fn base_final() -> FinalState {
    final_state(&[("g", roles("g", &[("root", 1), ("targets", 3), ("snapshot", 3)]))])
}

fn only_failures(report: &CheckReport) -> Vec<Check> {
    report.results.iter().filter(|r| !r.passed).map(|r| r.check).collect()
}

fn messages(report: &CheckReport, c: Check) -> Vec<String> {
    report
        .result(c)
        .map(|r| r.violations.iter().map(|v| v.message.clone()).collect())
        .unwrap_or_default()
}

#[test]
fn a_clean_history_passes_everything() {
    let mut ops = base_ops();
    ops.push(read(
        10,
        1_200,
        1_250,
        "g",
        Consistency::Linearizable,
        observed("g", &[("targets", 2)]),
    ));
    let report = check(&history(ops, Some(base_final())));
    assert!(report.passed(), "{:?}", report.violations().collect::<Vec<_>>());
    assert_eq!(report.results.len(), Check::ALL.len());
    for (r, c) in report.results.iter().zip(Check::ALL) {
        assert_eq!(r.check, c);
    }
    assert_eq!(report.total_violations(), 0);
}

#[test]
fn check_names_match_serde() {
    for c in Check::ALL {
        assert_eq!(serde_json::to_string(&c).unwrap(), format!("\"{}\"", c.name()));
        assert_eq!(c as usize, Check::ALL.iter().position(|&x| x == c).unwrap());
    }
}

#[test]
fn duplicate_versions() {
    // Distinct versions, and a refused write of an existing version: fine.
    let mut ops = base_ops();
    ops.push(publish(
        4,
        1_050,
        1_150,
        Outcome::Fail,
        "g",
        &[("targets", 2), ("snapshot", 2)],
    ));
    let report = check(&history(ops, Some(base_final())));
    assert!(!report.failed(Check::DuplicateVersion));

    // Two acknowledged writes of targets v2 with other bytes.
    let mut ops = base_ops();
    let mut dup = publish(4, 1_050, 1_150, Outcome::Ok, "g", &[("targets", 2)]);
    if let OpKind::Publish { writes, .. } = &mut dup.kind {
        writes[0].sha256 = sha("g", "targets", 2, "other");
    }
    dup.node = 3;
    ops.push(dup);
    let report = check(&history(ops, Some(base_final())));
    assert_eq!(only_failures(&report), vec![Check::DuplicateVersion]);
    let v = &report.result(Check::DuplicateVersion).unwrap().violations;
    assert_eq!(v.len(), 1);
    assert_eq!(v[0].ops, vec![2, 4]);
    assert!(v[0].message.contains("g targets v2"), "{}", v[0].message);
    assert!(v[0].message.contains("different content"), "{}", v[0].message);
}

#[test]
fn lost_writes() {
    // A node one version behind an acknowledged publish.
    let mut fin = base_final();
    fin.nodes[2] = node(3, &[("g", roles("g", &[("root", 1), ("targets", 2), ("snapshot", 2)]))]);
    let report = check(&history(base_ops(), Some(fin)));
    assert!(report.failed(Check::LostWrite));
    assert!(!report.failed(Check::PhantomWrite));
    let v = &report.result(Check::LostWrite).unwrap().violations;
    assert_eq!(v.len(), 2, "{v:?}");
    assert!(v.iter().all(|v| v.ops == vec![3]));
    assert_eq!(
        v[0].message,
        "op 3 (publish g targets v3, acknowledged at 5200 ms through node 1) is lost: node 3 serves targets v2"
    );

    // The acknowledged version, but other bytes.
    let mut fin = base_final();
    let mut other = roles("g", &[("root", 1), ("targets", 3), ("snapshot", 3)]);
    if let Some(r) = &mut other {
        r.get_mut("targets").unwrap().sha256 = sha("g", "targets", 3, "other");
    }
    for n in &mut fin.nodes {
        n.guns.insert("g".into(), other.clone());
    }
    let report = check(&history(base_ops(), Some(fin)));
    let m = messages(&report, Check::LostWrite);
    assert_eq!(m.len(), 1);
    assert!(
        m[0].contains("nodes 1, 2, 3 serve targets v3 with other content"),
        "{}",
        m[0]
    );

    // A node that errored is not held to anything here (convergence reports it).
    let mut fin = base_final();
    fin.nodes[0].error = Some("connection refused".into());
    fin.nodes[0].guns.clear();
    let report = check(&history(base_ops(), Some(fin)));
    assert_eq!(only_failures(&report), vec![Check::Convergence]);
}

#[test]
fn deletes_must_stick() {
    let mut ops = base_ops();
    ops.push(publish(
        4,
        100,
        200,
        Outcome::Ok,
        "h",
        &[("root", 1), ("targets", 1), ("snapshot", 1)],
    ));
    ops.push(delete(5, 300, 400, Outcome::Ok, "h"));
    let g = roles("g", &[("root", 1), ("targets", 3), ("snapshot", 3)]);
    let gone = final_state(&[("g", g.clone()), ("h", None)]);
    assert!(check(&history(ops.clone(), Some(gone))).passed());

    let mut back = final_state(&[("g", g.clone()), ("h", None)]);
    back.nodes[1] = node(
        2,
        &[
            ("g", g.clone()),
            ("h", roles("h", &[("root", 1), ("targets", 1), ("snapshot", 1)])),
        ],
    );
    let report = check(&history(ops.clone(), Some(back)));
    assert!(report.failed(Check::LostWrite));
    let v = &report.result(Check::LostWrite).unwrap().violations;
    assert_eq!(v.len(), 1);
    assert_eq!(v[0].ops, vec![5]);
    assert!(
        v[0].message
            .contains("node 2 serves h (root v1, snapshot v1, targets v1)"),
        "{}",
        v[0].message
    );

    // A delete of unknown outcome: either state is fine.
    let last = ops.len() - 1;
    ops[last] = delete(5, 300, 400, Outcome::Unknown, "h");
    let h = roles("h", &[("root", 1), ("targets", 1), ("snapshot", 1)]);
    for state in [None, h.clone()] {
        let fin = final_state(&[("g", g.clone()), ("h", state)]);
        let report = check(&history(ops.clone(), Some(fin)));
        assert!(report.passed(), "{:?}", report.violations().collect::<Vec<_>>());
    }
    // ... but a collection still served keeps its acknowledged writes.
    let fin = final_state(&[("g", g), ("h", roles("h", &[("root", 1), ("snapshot", 1)]))]);
    let report = check(&history(ops, Some(fin)));
    assert_eq!(only_failures(&report), vec![Check::LostWrite]);
}

#[test]
fn without_a_final_state_the_final_checks_fail() {
    let report = check(&history(base_ops(), None));
    assert_eq!(
        only_failures(&report),
        vec![
            Check::LostWrite,
            Check::PhantomWrite,
            Check::Convergence,
            Check::Liveness
        ]
    );
    for c in [
        Check::LostWrite,
        Check::PhantomWrite,
        Check::Convergence,
        Check::Liveness,
    ] {
        assert_eq!(messages(&report, c), vec!["the run has no final state"]);
    }
}

#[test]
fn phantom_writes() {
    // A write of unknown outcome that took effect: fine.
    let mut ops = base_ops();
    ops.push(publish(
        4,
        6_000,
        6_100,
        Outcome::Unknown,
        "g",
        &[("targets", 4), ("snapshot", 4)],
    ));
    let fin = final_state(&[("g", roles("g", &[("root", 1), ("targets", 4), ("snapshot", 4)]))]);
    let report = check(&history(ops.clone(), Some(fin.clone())));
    assert!(report.passed(), "{:?}", report.violations().collect::<Vec<_>>());

    // The same write refused, yet served.
    let last = ops.len() - 1;
    ops[last].outcome = Outcome::Fail;
    ops[last].error = Some("400 BAD_REQUEST: version conflict".into());
    let report = check(&history(ops, Some(fin.clone())));
    assert_eq!(only_failures(&report), vec![Check::PhantomWrite]);
    let v = &report.result(Check::PhantomWrite).unwrap().violations;
    assert_eq!(v.len(), 2, "{v:?}");
    assert_eq!(v[0].ops, vec![4]);
    assert!(v[0].message.contains("op 4 ("), "{}", v[0].message);
    assert!(
        v[0].message.contains("was refused but took effect on nodes 1, 2, 3"),
        "{}",
        v[0].message
    );

    // Served, but never written by anyone.
    let report = check(&history(base_ops(), Some(fin)));
    let m = messages(&report, Check::PhantomWrite);
    assert_eq!(m.len(), 2);
    assert!(
        m[0].starts_with("nodes 1, 2, 3 serve g targets v4 (sha256 "),
        "{}",
        m[0]
    );
    assert!(m[0].ends_with("that no client wrote"), "{}", m[0]);
}

#[test]
fn linearizable_reads() {
    let lin = || Consistency::Linearizable;
    let pass = |r: Op| {
        let mut ops = base_ops();
        ops.push(r);
        check(&history(ops, Some(base_final())))
    };
    // Sees the write acknowledged before it began.
    assert!(pass(read(10, 1_200, 1_300, "g", lin(), observed("g", &[("targets", 2)]))).passed());
    // Concurrent with the write: either version is fine.
    assert!(pass(read(10, 1_050, 1_300, "g", lin(), observed("g", &[("targets", 1)]))).passed());
    // Misses it.
    let report = pass(read(
        10,
        1_200,
        1_300,
        "g",
        lin(),
        observed("g", &[("targets", 1), ("snapshot", 2)]),
    ));
    assert_eq!(only_failures(&report), vec![Check::LinearizableRead]);
    let v = &report.result(Check::LinearizableRead).unwrap().violations;
    assert_eq!(v.len(), 1);
    assert_eq!(v[0].ops, vec![10, 2]);
    assert_eq!(
        v[0].message,
        "linearizable read op 10 of g through node 2 (1200-1300 ms) got targets v1, but op 2 (publish g targets v2 \
         snapshot v2) was acknowledged at 1100 ms, before the read began"
    );
    // 404 after the first publish.
    let report = pass(read(10, 1_200, 1_300, "g", lin(), absent()));
    assert_eq!(only_failures(&report), vec![Check::LinearizableRead]);
    assert_eq!(
        report.result(Check::LinearizableRead).unwrap().violations[0].ops,
        vec![10, 1]
    );
}

#[test]
fn reads_around_a_delete() {
    let mut ops = vec![
        publish(
            1,
            100,
            200,
            Outcome::Ok,
            "h",
            &[("root", 1), ("targets", 1), ("snapshot", 1)],
        ),
        delete(2, 1_000, 1_100, Outcome::Ok, "h"),
        after_heal(3, 1),
        read(10, 1_050, 1_090, "h", Consistency::Linearizable, absent()),
        read(11, 1_200, 1_300, "h", Consistency::Linearizable, absent()),
        read(
            12,
            1_050,
            1_090,
            "h",
            Consistency::Linearizable,
            observed("h", &[("targets", 1)]),
        ),
    ];
    let fin = final_state(&[("g", roles("g", &[("targets", 1), ("snapshot", 1)])), ("h", None)]);
    assert!(check(&history(ops.clone(), Some(fin.clone()))).passed());
    ops.push(read(
        13,
        1_200,
        1_300,
        "h",
        Consistency::Linearizable,
        observed("h", &[("targets", 1)]),
    ));
    let report = check(&history(ops, Some(fin)));
    assert_eq!(only_failures(&report), vec![Check::LinearizableRead]);
    let v = &report.result(Check::LinearizableRead).unwrap().violations;
    assert_eq!(v.len(), 1);
    assert_eq!(v[0].ops, vec![13, 2]);
    assert!(
        v[0].message
            .contains("although op 2 deleting h was acknowledged at 1100 ms"),
        "{}",
        v[0].message
    );
}

#[test]
fn bounded_staleness() {
    let run = |r: Op| {
        let mut ops = base_ops();
        ops.push(r);
        check(&history(ops, Some(base_final())))
    };
    // Op 2 ended at 1100 ms and the bound is 1000 ms: a read starting at
    // 2100 ms may still miss it, one starting at 2101 ms may not.
    let stale = || Consistency::Stale;
    assert!(run(read(10, 2_100, 2_150, "g", stale(), observed("g", &[("targets", 1)]))).passed());
    let report = run(read(10, 2_101, 2_150, "g", stale(), observed("g", &[("targets", 1)])));
    assert_eq!(only_failures(&report), vec![Check::BoundedStaleness]);
    let v = &report.result(Check::BoundedStaleness).unwrap().violations;
    assert_eq!(v[0].ops, vec![10, 2]);
    assert!(
        v[0].message.contains("more than 1000 ms (the staleness bound)"),
        "{}",
        v[0].message
    );
    // Min-version reads are held to the same bound.
    let mv = Consistency::MinVersion { version: 1 };
    let report = run(read(
        10,
        2_101,
        2_150,
        "g",
        mv,
        observed("g", &[("targets", 1), ("timestamp", 1)]),
    ));
    assert_eq!(only_failures(&report), vec![Check::BoundedStaleness]);
    // Right after a write, a stale read may miss it.
    let report = run(read(10, 1_150, 1_200, "g", stale(), observed("g", &[("targets", 1)])));
    assert!(report.passed());
}

#[test]
fn min_version_reads() {
    let run = |r: Op| {
        let mut ops = base_ops();
        ops.push(r);
        check(&history(ops, Some(base_final())))
    };
    let mv = || Consistency::MinVersion { version: 2 };
    assert!(run(read(
        10,
        1_200,
        1_300,
        "g",
        mv(),
        observed("g", &[("timestamp", 2), ("targets", 2)])
    ))
    .passed());
    assert!(run(read(
        10,
        1_200,
        1_300,
        "g",
        mv(),
        observed("g", &[("timestamp", 3), ("targets", 2)])
    ))
    .passed());
    let report = run(read(
        10,
        1_200,
        1_300,
        "g",
        mv(),
        observed("g", &[("timestamp", 1), ("targets", 2)]),
    ));
    assert_eq!(only_failures(&report), vec![Check::MinVersion]);
    assert_eq!(
        messages(&report, Check::MinVersion),
        vec!["min-version read op 10 of g through node 2 (1200-1300 ms) asked for timestamp v2 or later and got v1"]
    );
    let report = run(read(10, 1_200, 1_300, "g", mv(), observed("g", &[("targets", 2)])));
    assert_eq!(only_failures(&report), vec![Check::MinVersion]);
    let report = run(read(10, 1_200, 1_300, "g", mv(), absent()));
    assert!(report.failed(Check::MinVersion));
}

#[test]
fn expired_timestamps() {
    let run = |expires: i64| {
        let mut o = observed("g", &[("targets", 2)]);
        o.timestamp_expires_unix_ms = Some(expires);
        let mut ops = base_ops();
        ops.push(read(10, 1_200, 1_300, "g", Consistency::Stale, o));
        check(&history(ops, Some(base_final())))
    };
    assert!(run(T0 + 1_301).passed());
    let report = run(T0 + 1_000);
    assert_eq!(only_failures(&report), vec![Check::ExpiredTimestamp]);
    let v = &report.result(Check::ExpiredTimestamp).unwrap().violations;
    assert_eq!(v[0].ops, vec![10]);
    assert!(
        v[0].message.contains("expired 300 ms before the read ended"),
        "{}",
        v[0].message
    );
    assert!(run(T0 + 1_300).failed(Check::ExpiredTimestamp));
}

#[test]
fn verification() {
    let run = |err: Option<&str>, absent: bool| {
        let mut o = observed("g", &[("targets", 2)]);
        o.verify_error = err.map(str::to_string);
        o.absent = absent;
        if absent {
            o.versions.clear();
        }
        let mut ops = base_ops();
        ops.push(read(10, 500, 600, "g", Consistency::Stale, o));
        check(&history(ops, Some(base_final())))
    };
    assert!(run(None, false).passed());
    let report = run(Some("bad signature on targets\nthreshold 1, got 0"), false);
    assert_eq!(only_failures(&report), vec![Check::Verification]);
    let m = messages(&report, Check::Verification);
    assert_eq!(
        m,
        vec!["stale read op 10 of g through node 2 (500-600 ms) failed verification: bad signature on targets threshold 1, got 0"]
    );
    // An answer of 404 carries nothing to verify.
    assert!(!run(Some("nothing"), true).failed(Check::Verification));
}

#[test]
fn a_file_taken_away_by_a_delete_during_the_read_is_no_verification_failure() {
    let run = |delete_start: Option<u64>| {
        let mut o = observed("g", &[("targets", 2)]);
        o.verify_error = Some(format!("snapshot abc {}", crate::history::LISTED_NOT_SERVED));
        let mut ops = base_ops();
        ops.push(read(10, 500, 600, "g", Consistency::Stale, o));
        if let Some(start) = delete_start {
            ops.push(delete(11, start, start + 50, Outcome::Ok, "g"));
        }
        check(&history(ops, Some(base_final())))
    };
    assert!(run(None).failed(Check::Verification));
    assert!(!run(Some(550)).failed(Check::Verification));
    assert!(
        run(Some(700)).failed(Check::Verification),
        "a delete after the read excuses nothing"
    );
}

#[test]
fn convergence() {
    // Digests differ.
    let mut fin = base_final();
    fin.nodes[1].state_digest = Some("ff".repeat(32));
    let report = check(&history(base_ops(), Some(fin)));
    assert_eq!(only_failures(&report), vec![Check::Convergence]);
    let m = messages(&report, Check::Convergence);
    assert_eq!(m.len(), 1);
    assert!(m[0].starts_with("state digests differ: nodes 1, 3 have "), "{}", m[0]);
    assert!(
        m[0].contains("node 2 has ffffffffffff... at applied index 20"),
        "{}",
        m[0]
    );

    // A node that could not be read, and collections that differ.
    let mut fin = base_final();
    fin.nodes[0].error = Some("timed out".into());
    fin.nodes[2]
        .guns
        .insert("g".into(), roles("g", &[("root", 1), ("targets", 4), ("snapshot", 3)]));
    let report = check(&history(base_ops(), Some(fin)));
    let m = messages(&report, Check::Convergence);
    assert_eq!(m[0], "node 1 could not be read at the end: timed out");
    assert!(
        m.iter().any(|m| m
            == "node 3 and node 2 ended with different collections, first on g: node 2 serves targets v3, node 3 serves targets v4"),
        "{m:?}"
    );

    // A node missing altogether, and one without a digest.
    let mut fin = base_final();
    fin.nodes.pop();
    fin.nodes[0].state_digest = None;
    let m = messages(&check(&history(base_ops(), Some(fin))), Check::Convergence);
    assert_eq!(
        m,
        vec![
            "node 3 is missing from the final state",
            "node 1 reported no state digest"
        ]
    );
}

#[test]
fn liveness() {
    assert!(!check(&history(base_ops(), Some(base_final()))).failed(Check::Liveness));

    // The first write after healing took too long.
    let mut ops = base_ops();
    ops[2] = publish(3, 5_100, 10_500, Outcome::Ok, "g", &[("targets", 3), ("snapshot", 3)]);
    let report = check(&history(ops, Some(base_final())));
    assert_eq!(only_failures(&report), vec![Check::Liveness]);
    let v = &report.result(Check::Liveness).unwrap().violations;
    assert_eq!(v[0].ops, vec![3]);
    assert!(
        v[0].message
            .contains("5500 ms after healing, more than the bound of 5000 ms"),
        "{}",
        v[0].message
    );

    // None succeeded.
    let mut ops = base_ops();
    ops[2].outcome = Outcome::Unknown;
    let fin = final_state(&[("g", roles("g", &[("root", 1), ("targets", 2), ("snapshot", 2)]))]);
    let report = check(&history(ops, Some(fin)));
    assert_eq!(only_failures(&report), vec![Check::Liveness]);
    assert_eq!(
        messages(&report, Check::Liveness),
        vec![
            "no write succeeded after the faults were healed at 5000 ms (of those started after it, 0 were refused and 1 \
             got no answer)"
        ]
    );
}

#[test]
fn violations_are_capped() {
    let mut ops = base_ops();
    for i in 0..60 {
        ops.push(read(
            100 + i,
            2_000 + i,
            2_010 + i,
            "g",
            Consistency::Linearizable,
            observed("g", &[("targets", 1)]),
        ));
    }
    let report = check(&history(ops, Some(base_final())));
    let r = report.result(Check::LinearizableRead).unwrap();
    assert!(!r.passed);
    assert_eq!(r.total, 60);
    assert_eq!(r.violations.len(), MAX_VIOLATIONS + 1);
    let last = r.violations.last().unwrap();
    assert!(last.ops.is_empty());
    assert_eq!(
        last.message,
        "... and 10 more linearizable-read violations (60 in all; only the first 50 are listed)"
    );
    assert_eq!(report.total_violations(), 60);
}

#[test]
fn odd_histories_do_not_panic() {
    let mut ops = base_ops();
    // Ends before it starts, reads of unknown collections, empty writes.
    ops.push(publish(4, 9_000, 10, Outcome::Ok, "g", &[]));
    ops.push(read(
        5,
        0,
        0,
        "nowhere",
        Consistency::MinVersion { version: 0 },
        absent(),
    ));
    ops.push(read(
        6,
        u64::MAX,
        u64::MAX,
        "g",
        Consistency::Stale,
        observed("g", &[("targets", 9)]),
    ));
    let mut fin = base_final();
    fin.healed_at_ms = u64::MAX;
    fin.nodes.clear();
    let report = check(&history(ops, Some(fin)));
    assert!(report.failed(Check::Liveness));
    let empty = History {
        header: header(),
        ops: Vec::new(),
        faults: Vec::new(),
        final_state: None,
    };
    assert_eq!(check(&empty).results.len(), Check::ALL.len());
}

#[test]
fn large_histories_are_checked_quickly() {
    // 200,000 ops: writes of several collections interleaved with reads.
    let mut ops = Vec::new();
    let mut id = 0;
    let mut versions = [0u64; 10];
    for step in 0..100_000u64 {
        let g = (step % 10) as usize;
        let gun = format!("g{g}");
        let t = step * 10;
        versions[g] += 1;
        let v = versions[g];
        id += 1;
        let roles: &[(&str, u64)] = if v == 1 {
            &[("root", 1), ("targets", 1), ("snapshot", 1)]
        } else {
            &[("targets", v), ("snapshot", v)]
        };
        ops.push(publish(id, t, t + 5, Outcome::Ok, &gun, roles));
        id += 1;
        ops.push(read(
            id,
            t + 6,
            t + 8,
            &gun,
            Consistency::Linearizable,
            observed(&gun, &[("targets", v)]),
        ));
    }
    let guns: Vec<(String, Option<BTreeMap<String, RoleVersion>>)> = (0..10)
        .map(|g| {
            let gun = format!("g{g}");
            let r = roles(
                &gun,
                &[("root", 1), ("targets", versions[g]), ("snapshot", versions[g])],
            );
            (gun, r)
        })
        .collect();
    let guns: Vec<(&str, Option<BTreeMap<String, RoleVersion>>)> =
        guns.iter().map(|(g, r)| (g.as_str(), r.clone())).collect();
    let mut fin = final_state(&guns);
    fin.healed_at_ms = 0;
    let started = std::time::Instant::now();
    let report = check(&history(ops, Some(fin)));
    assert!(report.passed(), "{:?}", report.violations().take(3).collect::<Vec<_>>());
    eprintln!("checked 200000 ops in {:?}", started.elapsed());
}
