//! A three-node cluster whose nodes list three seal-signer processes holding
//! the timestamp keys as 2-of-3 FROST shares (`trust_service.signers`).
//! The signer the nodes use is killed (SIGKILL), later another one is
//! paused (SIGSTOP): each time the first publish after the fault is
//! acknowledged within 2 s and timestamps keep being refreshed. With two
//! signers down, a publish answers 503 fast and reads go on. The nodes'
//! metrics and `seal-node cluster status` show each signer's state.

mod common;

use std::time::{Duration, Instant};

use common::cluster::{
    cluster_cmd, eventually, leader_of, one_cluster_at_a_time, publish_new, start_cluster_with, tuf, ClusterOptions,
};
use common::metadata::{refreshed_timestamp, served_timestamp, update};
use common::{signer_binary, Node};
use seal_signer::testing::{metric, TestPki, ThresholdCluster};
use seal_tuf::PublicKey;

/// Publishes version `version` of `repo`'s targets through `node`; returns the
/// status and how long the answer took.
fn timed_publish(node: &Node, gun: &str, repo: &seal_tuf::testing::TestRepo, version: u64) -> (u16, Duration) {
    let started = Instant::now();
    let r = node.publish(gun, &update(repo, version));
    let took = started.elapsed();
    eprintln!("publish of version {version}: {} in {took:?}", r.status);
    if r.status != 200 {
        eprintln!("{}", r.text());
    }
    (r.status, took)
}

fn node_metrics(node: &Node) -> String {
    let r = node.get("/metrics");
    assert_eq!(r.status, 200, "{}", r.text());
    r.text()
}

#[test]
fn publishing_survives_the_loss_of_any_one_threshold_signer() {
    const GUN: &str = "example.com/signer-failover";
    let _one = one_cluster_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::new(dir.path(), "signers");
    let (node_cert, node_key) = pki.leaf("seal-node");
    let mut signers = ThresholdCluster::start(&signer_binary(), &pki, dir.path(), (2, 3), &["seal-node"], |_, _| {});
    let list: Vec<serde_json::Value> = signers
        .signers
        .iter()
        .map(|s| serde_json::json!({"hostname": "localhost", "port": s.port}))
        .collect();
    let name = |id: u16| format!("localhost:{}", signers.signers[usize::from(id) - 1].port);
    let names: Vec<String> = (1..=3).map(name).collect();
    // Notary's single hostname/port emptied: the list alone names the signers.
    let cluster = start_cluster_with(
        0,
        ClusterOptions {
            extra: serde_json::json!({
                "trust_service": {"hostname": "", "port": "", "signers": list, "tls_ca_file": pki.ca_file(),
                                  "tls_client_cert": node_cert, "tls_client_key": node_key,
                                  "key_algorithm": "ed25519"},
                "timestamps": {"timestamp_lifetime_secs": 8, "refresh_margin_fraction": 0.5},
            }),
            ..ClusterOptions::default()
        },
    );
    let node = &cluster.nodes[0];
    let (repo, _) = publish_new(node, GUN);
    let key = PublicKey::from_json(&node.get(&tuf(GUN, "timestamp.key")).body).unwrap();
    let mut latest = served_timestamp(node, GUN, &key);
    let leader = || {
        let id = eventually("a leader", || leader_of(&cluster.tls, &cluster.raft[0]));
        &cluster.nodes[usize::try_from(id).unwrap() - 1]
    };
    let mut version = 3;
    let (status, _) = timed_publish(node, GUN, &repo, version);
    assert_eq!(status, 200);

    // Every node starts with the first signer of its list: kill it.
    signers.signer(1).kill();
    version += 1;
    let (status, took) = timed_publish(node, GUN, &repo, version);
    assert_eq!(status, 200, "the first publish after signer 1 was killed");
    assert!(took < Duration::from_secs(2), "it took {took:?}");
    // Timestamps keep being refreshed.
    let published = served_timestamp(node, GUN, &key);
    assert!(published.version > latest.version);
    latest = refreshed_timestamp(node, GUN, &key, &published);
    let m = node_metrics(leader());
    assert!(metric(&m, "seal_signer_failovers_total") >= 1.0, "{m}");
    assert_eq!(
        metric(&m, &format!("seal_signer_up{{signer=\"{}\"}}", names[0])),
        0.0,
        "{m}"
    );
    let (ok, out, err) = cluster_cmd(&cluster.tls, &cluster.raft[0], &["status"]);
    assert!(ok, "{err}");
    let row = |out: &str, n: &str| out.lines().find(|l| l.starts_with(n)).map(str::to_owned);
    assert!(out.contains("signers as node"), "{out}");
    assert!(row(&out, &names[0]).is_some_and(|r| r.contains("down")), "{out}");
    assert!(row(&out, &names[1]).is_some_and(|r| r.contains(" up")), "{out}");

    // Signer 1 back; the nodes now use signer 2: pause it (a hung machine,
    // its connections open and silent).
    signers.signer(1).start();
    eventually("signer 1 up again on the leader", || {
        let m = node_metrics(leader());
        (metric(&m, &format!("seal_signer_up{{signer=\"{}\"}}", names[0])) == 1.0).then_some(())
    });
    signers.signer(2).pause();
    version += 1;
    let (status, took) = timed_publish(node, GUN, &repo, version);
    signers.signer(2).resume();
    assert_eq!(status, 200, "the first publish after signer 2 was paused");
    assert!(took < Duration::from_secs(2), "it took {took:?}");
    signers.signer(2).pause();
    latest = refreshed_timestamp(node, GUN, &key, &latest);
    version += 1;
    let (status, took) = timed_publish(node, GUN, &repo, version);
    assert_eq!(status, 200);
    assert!(took < Duration::from_secs(2), "it took {took:?}");
    signers.signer(2).resume();

    // Two signers down: no two of three can sign. A publish answers 503
    // fast, with Notary's error body; reads go on.
    signers.signer(1).kill();
    signers.signer(3).kill();
    let started = Instant::now();
    let r = node.publish(GUN, &update(&repo, version + 1));
    let took = started.elapsed();
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.error_code(), "UNAVAILABLE", "{}", r.text());
    assert!(
        took < Duration::from_secs(1),
        "a publish with two signers down took {took:?}"
    );
    for n in &cluster.nodes {
        let ts = served_timestamp(n, GUN, &key);
        assert!(ts.version >= latest.version);
    }
    // And once they are back, publishing resumes.
    signers.signer(1).start();
    signers.signer(3).start();
    eventually("publishing to resume", || {
        (node.publish(GUN, &update(&repo, version + 1)).status == 200).then_some(())
    });
}
