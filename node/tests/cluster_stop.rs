//! A cluster's leader stopped with SIGTERM (not killed): it drains, stops Raft and exits 0, the
//! other voters elect a new leader and take writes, and the stopped node rejoins on restart.
//! How long the cluster is without a leader is printed (docs/cluster.md, "Stopping a node").

mod common;

use std::time::{Duration, Instant};

use common::cluster::*;

#[test]
fn a_leader_stopped_with_sigterm_exits_cleanly_and_the_others_elect_a_new_one() {
    let mut cluster = start_cluster(0);
    let leader = eventually("a leader", || leader_of(&cluster.tls, &cluster.raft[0]));
    let index = usize::try_from(leader - 1).unwrap();
    let before = &cluster.nodes[index];
    publish_new(before, "example.com/stop/before");

    let stopped_at = Instant::now();
    assert!(cluster.nodes[index].process.signal("-TERM"));
    let exit = cluster.nodes[index]
        .process
        .wait_exit(Duration::from_secs(30))
        .unwrap_or_else(|| panic!("the leader did not exit:\n{}", cluster.nodes[index].process.output()));
    assert!(exit.success(), "{exit:?}\n{}", cluster.nodes[index].process.output());
    let exited_after = stopped_at.elapsed();
    let log = cluster.nodes[index].process.output();
    assert!(!log.contains("ERROR"), "{log}");

    let others: Vec<usize> = (0..3).filter(|i| *i != index).collect();
    let new_leader = eventually("a new leader", || {
        others
            .iter()
            .find_map(|&i| leader_of(&cluster.tls, &cluster.raft[i]).filter(|l| *l != leader))
    });
    let elected_after = stopped_at.elapsed();
    eprintln!(
        "leader {leader} stopped: exited after {exited_after:?}, node {new_leader} elected after {elected_after:?}"
    );
    assert!(elected_after < Duration::from_secs(20), "{elected_after:?}");
    let (_, root) = eventually("a write through a remaining node", || {
        try_publish_new(&cluster.nodes[others[0]].addr, "example.com/stop/after").ok()
    });

    // The stopped node comes back and serves what was written while it was away.
    cluster.nodes[index].restart();
    let back = &cluster.nodes[index];
    served_everywhere(&[back], "example.com/stop/after", &root);
}
