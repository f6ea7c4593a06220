//! A node that crashes at any point of installing a snapshot restarts into a consistent state and
//! catches up to the leader's: for each point of `seal_raft::state_machine::INSTALL_CRASH_POINTS`,
//! a new learner (a `seal-node` built with its test-only `fault-injection` feature, told by
//! `SEAL_CRASH_AT` to abort there) joins a cluster whose leader has purged its log behind a
//! snapshot, aborts while installing it, is started again (the shipping binary, same data), and
//! ends with the leader's state digest.

mod common;

use std::time::Duration;

use common::cluster::*;
use seal_raft::state_machine::INSTALL_CRASH_POINTS;
use seal_testkit::process::{fault_switch_node, Process};

/// The state digest and the index it covers, as `seal-node cluster status --digest` prints them
/// for the node at `raft_addr`.
fn digest(tls: &Tls, raft_addr: &str) -> Option<(String, u64)> {
    let (ok, out, _) = cluster_cmd(tls, raft_addr, &["status", "--digest"]);
    if !ok {
        return None;
    }
    let field = |name: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}: ")))
            .map(|v| v.trim().to_owned())
    };
    Some((field("state digest")?, field("state digest index")?.parse().ok()?))
}

#[test]
fn a_node_crashing_at_any_point_of_a_snapshot_install_restarts_consistent() {
    let Some(crashing_bin) = fault_switch_node() else {
        return;
    };
    let _serial = one_cluster_at_a_time();
    let raft = serde_json::json!({"snapshot_logs_since_last": 10, "snapshot_log_percent": 0,
                                  "max_in_snapshot_log_to_keep": 0});
    let cluster = start_cluster_with(
        INSTALL_CRASH_POINTS.len(),
        ClusterOptions {
            extra: serde_json::json!({ "raft": raft }),
            ..Default::default()
        },
    );
    for i in 0..30 {
        publish_new(&cluster.nodes[i % 3], &format!("example.com/install-crash/{i}"));
    }
    let leader = find_leader(&cluster.tls, &cluster.raft) as usize - 1;
    let leader_raft = cluster.raft[leader].clone();
    eventually("the leader purging its log behind a snapshot", || {
        (status_field(&cluster.tls, &leader_raft, "purged index")? > 10).then_some(())
    });
    // No publishes from here on (and the timestamps' default lifetime is far beyond the test):
    // the leader's state changes only by the membership entries each round adds.

    for (k, point) in INSTALL_CRASH_POINTS.iter().enumerate() {
        let id = 4 + k as u64;
        let raft_addr = cluster.raft[3 + k].clone();
        let dir = cluster.dir.path().join(format!("n{id}"));
        let mut json = config(id, &raft_addr, &cluster.tls, &[]);
        json["raft"]
            .as_object_mut()
            .unwrap()
            .extend(raft.as_object().unwrap().clone());
        json["server"]["http_addr"] = format!("127.0.0.1:{}", free_port()).into();
        json["storage"]["data_dir"] = dir.join("data").to_string_lossy().into_owned().into();
        json["insecure"] = true.into();
        let launch = |bin: &std::path::Path| {
            seal_testkit::process::node(bin, &dir, &json, "warn")
                .unwrap()
                .env("SEAL_SIGNER_PASSPHRASE", "integration-test-passphrase")
        };
        let mut crashing: Process = launch(&crashing_bin)
            .env("SEAL_CRASH_AT", point)
            .start()
            .expect("start the crashing node");
        let (ok, out, err) = cluster_cmd(
            &cluster.tls,
            &leader_raft,
            &["add-learner", "--id", &id.to_string(), "--raft-addr", &raft_addr],
        );
        assert!(ok, "add-learner {id}: {out}{err}");
        let status = crashing
            .wait_exit(Duration::from_secs(30))
            .unwrap_or_else(|| panic!("node {id} did not crash at {point:?}"));
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(6), "node {id} at {point:?}: {status:?}");

        // Started again on the same data with the shipping binary, it ends with the leader's state.
        let mut again = launch(&common::node_binary()).start().expect("restart");
        let http = json["server"]["http_addr"].as_str().unwrap().to_owned();
        again
            .wait_healthy(&http, DEADLINE)
            .unwrap_or_else(|e| panic!("node {id} after crashing at {point:?}: {e}"));
        let mut last = None;
        let caught_up = (0..300).any(|_| {
            let want = digest(&cluster.tls, &leader_raft);
            let got = digest(&cluster.tls, &raft_addr);
            let same = want.is_some() && got == want;
            last = Some((got, want));
            same || {
                std::thread::sleep(Duration::from_millis(100));
                false
            }
        });
        assert!(
            caught_up,
            "node {id} crashed at {point:?}: digest (node, leader) {last:?}"
        );
        // It serves what the leader serves (once its read gate has heard from the leader).
        eventually(&format!("node {id} serving after {point:?}"), || {
            let r =
                common::try_request(&http, "GET", &tuf("example.com/install-crash/7", "root.json"), &[], &[]).ok()?;
            (r.status == 200).then_some(())
        });
        drop(again);
        let (ok, out, err) = cluster_cmd(&cluster.tls, &leader_raft, &["remove", "--id", &id.to_string()]);
        assert!(ok, "remove {id}: {out}{err}");
    }
}
