//! Reads on any node of a three-process cluster (signing through one seal-signer process): the
//! `X-Seal-Applied-Index` and `X-Seal-Last-Contact` headers, linearizable reads through a
//! follower right after a publish, `X-Seal-Min-Version`, the leader's
//! `seal_timestamp_min_remaining_seconds` metric, and a follower cut off from the quorum refusing
//! to serve `timestamp.json`; a follower partitioned from its peers by a proxy refusing reads
//! once past its staleness bound while the majority goes on, and catching up when healed.

mod common;

use common::cluster::*;
use common::{request, try_request, Node};
use std::time::Duration;

fn header_u64(r: &common::Response, name: &str) -> Option<u64> {
    r.header(name)?.parse().ok()
}

fn get(node: &Node, path: &str, headers: &[(&str, &str)]) -> Option<common::Response> {
    try_request(&node.addr, "GET", path, headers, &[]).ok()
}

#[test]
fn reads_on_any_node_are_bounded_linearizable_on_request_and_refused_when_cut_off() {
    let _serial = one_cluster_at_a_time();
    let mut cluster = start_cluster(0);
    let (tls, raft, nodes) = (&cluster.tls, &cluster.raft, &mut cluster.nodes);
    let leader = find_leader(tls, raft) as usize - 1;
    let followers: Vec<usize> = (0..3).filter(|i| *i != leader).collect();
    let (f1, f2) = (followers[0], followers[1]);

    // A publish through a follower; every node serves it with its applied index and last contact.
    let gun = "example.com/reads/one";
    let (repo, root) = publish_new(&nodes[f1], gun);
    // The node written through serves the write as soon as it is acknowledged.
    let r = nodes[f1].get(&tuf(gun, "root.json"));
    assert_eq!(
        (r.status, &r.body),
        (200, &root),
        "read-your-writes on {}",
        nodes[f1].addr
    );
    served_everywhere(&nodes.iter().collect::<Vec<_>>(), gun, &root);
    for &i in &followers {
        let r = nodes[i].get(&tuf(gun, "root.json"));
        assert_eq!(r.status, 200, "{}", r.text());
        let applied = header_u64(&r, "X-Seal-Applied-Index").expect("X-Seal-Applied-Index on a follower read");
        assert!(applied > 0, "applied index {applied}");
        header_u64(&r, "X-Seal-Last-Contact").expect("X-Seal-Last-Contact on a follower read");
        assert!(
            r.header("X-Seal-Forwarded-To").is_none(),
            "a fresh follower serves locally"
        );
    }
    let r = nodes[leader].get(&tuf(gun, "root.json"));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("X-Seal-Last-Contact"), Some("0"), "the leader's last contact");
    assert!(header_u64(&r, "X-Seal-Applied-Index").is_some());

    // A new version published through one follower is read linearizably through the other,
    // right after the publish is acknowledged: by header and by query parameter.
    let t3 = repo.targets_file(3, &[("v1", b"payload\n"), ("v2", b"more\n")]);
    let s3 = repo.snapshot_file(3, &[("root", &root), ("targets", &t3)]);
    let r = nodes[f1].publish(
        gun,
        &[("targets".to_owned(), t3.clone()), ("snapshot".to_owned(), s3.clone())],
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let r = request(
        &nodes[f2].addr,
        "GET",
        &tuf(gun, "targets.json"),
        &[("X-Seal-Consistency", "linearizable")],
        &[],
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.body, t3, "a linearizable read returns the version just published");
    let r = nodes[f2].get(&format!("{}?consistent", tuf(gun, "snapshot.json")));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.body, s3, "?consistent returns the version just published");

    // At least version 3 of targets: served (by this follower or through the leader), never older.
    for &i in &[f1, f2, leader] {
        let r = request(
            &nodes[i].addr,
            "GET",
            &tuf(gun, "targets.json"),
            &[("X-Seal-Min-Version", "3")],
            &[],
        );
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.body, t3);
    }
    // A version nobody has: the leader confirms it does not exist.
    let r = request(
        &nodes[f2].addr,
        "GET",
        &tuf(gun, "targets.json"),
        &[("X-Seal-Min-Version", "99")],
        &[],
    );
    assert_eq!(r.status, 404, "{}", r.text());
    assert_eq!(r.error_code(), "METADATA_NOT_FOUND");
    let r = request(
        &nodes[f2].addr,
        "GET",
        &tuf(gun, "targets.json"),
        &[("X-Seal-Min-Version", "x")],
        &[],
    );
    assert_eq!(r.status, 400, "{}", r.text());

    // Every node, followers too, exports the smallest remaining timestamp lifetime, positive.
    for (i, who) in [(leader, "leader"), (f1, "a follower"), (f2, "the other follower")] {
        // A sample of `/metrics` on node i, once it is there and finite.
        let sample = |name: &str| {
            eventually(&format!("{name} on {who}"), || {
                let r = get(&nodes[i], "/metrics", &[])?;
                let line = r
                    .text()
                    .lines()
                    .find(|l| l.starts_with(&format!("{name} ")))?
                    .to_owned();
                let v: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
                v.is_finite().then_some(v)
            })
        };
        let remaining = sample("seal_timestamp_min_remaining_seconds");
        assert!(remaining > 0.0, "remaining lifetime on {who}: {remaining}");
        // And what its storage holds in memory, by part: the collection is in its memtables.
        let memtables = sample("seal_storage_memory_bytes{part=\"memtables\"}");
        assert!(memtables > 0.0, "memtables on {who}: {memtables}");
    }

    // Cut one follower off: kill the leader and the other voter. Within a bounded wait it stops
    // serving timestamp.json (503 UNAVAILABLE) rather than serve what it cannot vouch for.
    let r = nodes[f2].get(&tuf(gun, "timestamp.json"));
    assert_eq!(r.status, 200, "{}", r.text());
    nodes[leader].kill9();
    nodes[f1].kill9();
    let refused = eventually("the cut-off follower refusing timestamp.json", || {
        let r = get(&nodes[f2], &tuf(gun, "timestamp.json"), &[])?;
        (r.status == 503).then_some(r)
    });
    assert_eq!(refused.error_code(), "UNAVAILABLE", "{}", refused.text());
    assert!(refused.header("X-Seal-Applied-Index").is_some());
    // It stays refused.
    std::thread::sleep(Duration::from_secs(1));
    let r = nodes[f2].get(&tuf(gun, "timestamp.json"));
    assert_eq!(r.status, 503, "{}", r.text());
}

#[test]
fn a_partitioned_follower_refuses_reads_past_its_bound_and_catches_up_when_healed() {
    let _serial = one_cluster_at_a_time();
    let extra = serde_json::json!({"raft": {"max_staleness_ms": 1500}});
    let cluster = start_cluster_with(0, ClusterOptions { proxied: true, extra });
    let (tls, raft, nodes) = (&cluster.tls, &cluster.raft, &cluster.nodes);
    let leader = find_leader(tls, raft) as usize - 1;
    let followers: Vec<usize> = (0..3).filter(|i| *i != leader).collect();
    let (cut, other) = (followers[0], followers[1]);

    let before = "example.com/partition/before";
    let (_, before_root) = publish_new(&nodes[leader], before);
    served_everywhere(&nodes.iter().collect::<Vec<_>>(), before, &before_root);

    // Cut the follower off both ways: the leader's appends and heartbeats no longer reach it, nor
    // its vote requests its peers. Past its 1.5 s bound it answers 503 to every read instead of
    // its last state.
    cluster.partition(cut);
    let refused = eventually("the partitioned follower refusing reads", || {
        let r = get(&nodes[cut], &tuf(before, "root.json"), &[])?;
        (r.status == 503).then_some(r)
    });
    assert_eq!(refused.error_code(), "UNAVAILABLE", "{}", refused.text());
    let r = nodes[cut].get(&tuf(before, "timestamp.json"));
    assert_eq!(r.status, 503, "{}", r.text());

    // The majority goes on: a publish through the other follower, served by the leader and it.
    let during = "example.com/partition/during";
    let (_, during_root) = publish_new(&nodes[other], during);
    served_everywhere(&[&nodes[leader], &nodes[other]], during, &during_root);
    // The partitioned follower still refuses, and never serves what it may not have.
    for path in [tuf(during, "root.json"), tuf(before, "targets.json")] {
        let r = nodes[cut].get(&path);
        assert_eq!(r.status, 503, "{path}: {}", r.text());
    }

    // A write reaching the cut-off node cannot be forwarded: after its bounded wait, 503 with
    // Notary's error body, and nothing written.
    let r = nodes[cut].get(&tuf("example.com/partition/cut", "timestamp.key"));
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (503, "UNAVAILABLE"),
        "{}",
        r.text()
    );
    let r = nodes[leader].get(&tuf("example.com/partition/cut", "root.json"));
    assert_eq!(r.status, 404, "{}", r.text());

    // Healed, it catches up and serves both collections again.
    cluster.heal();
    served_everywhere(&[&nodes[cut]], during, &during_root);
    served_everywhere(&[&nodes[cut]], before, &before_root);
}
