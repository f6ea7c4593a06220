//! Writes in a three-process cluster: conflicting publishes of one collection sent at the same
//! moment through two different nodes (exactly one wins each version), and a learner that joins
//! and is promoted while publishes run, serving reads and forwarding writes of its own.

mod common;

use std::sync::Barrier;

use common::cluster::*;
use common::{multipart, try_request, Node};

/// Sends `files` as a publish of `gun` through `node`; the status, error code and body.
fn publish_status(node: &Node, gun: &str, files: &[(String, Vec<u8>)]) -> (u16, String, String) {
    let (ct, body) = multipart(files);
    let r = try_request(&node.addr, "POST", &tuf(gun, ""), &[("Content-Type", &ct)], &body).expect("publish");
    let code = if r.status == 200 { String::new() } else { r.error_code() };
    (r.status, code, r.text())
}

#[test]
fn conflicting_publishes_through_two_nodes_have_exactly_one_winner_per_version() {
    let _serial = one_cluster_at_a_time();
    let cluster = start_cluster(0);
    let nodes = &cluster.nodes;
    let gun = "example.com/writes/contended";
    let (repo, root) = publish_new(&nodes[0], gun);
    served_everywhere(&nodes.iter().collect::<Vec<_>>(), gun, &root);

    // Ten rounds; in each, nodes 2 and 3 get a different version-n targets file at once.
    for version in 3..13u64 {
        let candidates: Vec<Vec<(String, Vec<u8>)>> = (0..2)
            .map(|side| {
                let content = format!("side {side} of version {version}\n");
                let t = repo.targets_file(version, &[("v1", content.as_bytes())]);
                let s = repo.snapshot_file(version, &[("root", &root), ("targets", &t)]);
                vec![("targets".to_owned(), t), ("snapshot".to_owned(), s)]
            })
            .collect();
        let barrier = Barrier::new(2);
        let outcomes: Vec<(u16, String, String)> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..2)
                .map(|side| {
                    let (barrier, files, node) = (&barrier, &candidates[side], &nodes[side + 1]);
                    s.spawn(move || {
                        barrier.wait();
                        publish_status(node, gun, files)
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let winners: Vec<usize> = (0..2).filter(|&i| outcomes[i].0 == 200).collect();
        assert_eq!(winners.len(), 1, "version {version}: outcomes {outcomes:?}");
        let loser = 1 - winners[0];
        assert_eq!(
            (outcomes[loser].0, outcomes[loser].1.as_str()),
            (400, "VERSION"),
            "version {version}: the loser is told a newer version exists: {}",
            outcomes[loser].2
        );
        // Every node serves the winner's targets, and only it.
        let won = &candidates[winners[0]][0].1;
        for node in nodes {
            eventually(&format!("targets v{version} on {}", node.addr), || {
                let r = try_request(&node.addr, "GET", &tuf(gun, "targets.json"), &[], &[]).ok()?;
                (r.status == 200 && &r.body == won).then_some(())
            });
        }
    }
}

#[test]
fn a_learner_joins_under_load_then_serves_reads_and_forwards_writes() {
    let _serial = one_cluster_at_a_time();
    let cluster = start_cluster(1);
    let alive = alive_of(&cluster.nodes);
    let writers = Writers::start(2, "example.com/writes/membership", &alive);
    eventually("publishes before the membership change", || {
        (writers.count() >= 5).then_some(())
    });

    // Node 4 joins as a learner while the writers run, then becomes a voter.
    let learner = spawn(cluster.dir.path(), "n4", config(4, &cluster.raft[3], &cluster.tls, &[]));
    let (ok, out, err) = cluster_cmd(
        &cluster.tls,
        &cluster.raft[1],
        &["add-learner", "--id", "4", "--raft-addr", &cluster.raft[3]],
    );
    assert!(ok, "add-learner failed: {out}{err}");
    eventually("learner healthy", || healthy(&learner).then_some(()));
    // Healthy means it knows the leader; under load it may still be catching up, and until then
    // it answers reads (the write's key request included) 503. Wait until it serves them.
    eventually("learner caught up", || {
        let r = try_request(
            &learner.addr,
            "GET",
            &tuf("example.com/writes/absent", "root.json"),
            &[],
            &[],
        )
        .ok()?;
        (r.status == 404).then_some(())
    });

    // The learner forwards a write of its own to the leader and serves it.
    let gun = "example.com/writes/through-learner";
    let (repo, root) = publish_new(&learner, gun);
    let mut all: Vec<&Node> = cluster.nodes.iter().collect();
    all.push(&learner);
    served_everywhere(&all, gun, &root);
    let t3 = repo.targets_file(3, &[("v1", b"payload\n"), ("v2", b"through the learner\n")]);
    let s3 = repo.snapshot_file(3, &[("root", &root), ("targets", &t3)]);
    let r = learner.publish(gun, &[("targets".to_owned(), t3.clone()), ("snapshot".to_owned(), s3)]);
    assert_eq!(r.status, 200, "{}", r.text());
    for node in &all {
        eventually(&format!("targets v3 on {}", node.addr), || {
            let r = try_request(&node.addr, "GET", &tuf(gun, "targets.json"), &[], &[]).ok()?;
            (r.body == t3).then_some(())
        });
    }

    // Promoted to voter, still under load.
    let before = std::time::Instant::now();
    let (ok, out, err) = cluster_cmd(&cluster.tls, &cluster.raft[2], &["promote", "--id", "4"]);
    assert!(ok, "promote failed: {out}{err}");
    let (ok, status, err) = cluster_cmd(&cluster.tls, &cluster.raft[3], &["status"]);
    assert!(ok, "status failed: {err}");
    let row = status.lines().find(|l| l.starts_with("4 ")).expect("row for node 4");
    assert!(row.contains("voter"), "{row}");
    writers.wait_for_ack_after(before);

    // Nothing acknowledged during the changes is lost, on any of the four nodes.
    let acked = writers.stop();
    for a in &acked {
        served_everywhere(&all, &a.gun, &a.root);
    }
}
