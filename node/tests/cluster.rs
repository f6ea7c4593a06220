//! Three real `seal-node` processes forming a Raft cluster on loopback (mutual TLS from
//! `TestPki`, own data directories) and signing through one seal-signer process: formation from
//! `raft.bootstrap`, a publish through a follower served by every node, `cluster status` (and
//! `--digest`: every node converges to the same state digest at the same index), kill -9
//! of the leader, a new version of the same collection published and timestamped by the new
//! leader, and a learner added with `cluster add-learner` catching up.

mod common;

use common::cluster::*;
use common::{try_request, Node};

#[test]
fn three_nodes_form_forward_fail_over_and_add_a_learner() {
    let mut cluster = start_cluster(1);
    let (dir, tls, raft, bootstrap, nodes) = (
        &cluster.dir,
        &cluster.tls,
        &cluster.raft,
        &cluster.bootstrap,
        &mut cluster.nodes,
    );
    let leader = eventually("a leader in cluster status", || leader_of(tls, &raft[0]));
    assert!((1..=3).contains(&leader));

    // `cluster status` lists the three voters and marks the leader.
    let (ok, status, err) = cluster_cmd(tls, &raft[0], &["status"]);
    assert!(ok, "status failed: {err}");
    for (id, addr) in bootstrap {
        let row = status
            .lines()
            .find(|l| l.starts_with(&format!("{id} ")))
            .unwrap_or_else(|| panic!("no row for node {id}:\n{status}"));
        assert!(row.contains(addr.as_str()) && row.contains("voter"), "{row}");
        assert_eq!(row.contains('*'), *id == leader, "{row}");
    }
    assert!(!status.contains("digest"), "plain status prints no digest:\n{status}");
    // `--json`: the same, machine-readable; it answers with the leader's view (lag per member).
    let (ok, json, err) = cluster_cmd(tls, &raft[0], &["status", "--json"]);
    assert!(ok, "status --json failed: {err}");
    let json: serde_json::Value = serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}: {json}"));
    assert_eq!(json["leader_id"], leader, "{json}");
    assert!(json["term"].as_u64().is_some_and(|t| t >= 1), "{json}");
    assert!(json["state_digest"].is_null(), "{json}");
    let members = json["members"].as_array().expect("members");
    assert_eq!(members.len(), 3, "{json}");
    for ((id, addr), m) in bootstrap.iter().zip(members) {
        assert_eq!(
            (&m["id"], &m["raft_addr"], &m["role"]),
            (&(*id).into(), &addr.as_str().into(), &"voter".into())
        );
        assert_eq!(m["leader"], *id == leader, "{m}");
    }
    let signers = json["signers"].as_array().expect("signers");
    assert_eq!(signers.len(), 1, "{json}");

    // A publish through a follower is forwarded to the leader and served by every node.
    let follower = (0..3).find(|i| *i as u64 + 1 != leader).unwrap();
    let (repo, root) = publish_new(&nodes[follower], "example.com/cluster/one");
    served_everywhere(&nodes.iter().collect::<Vec<_>>(), "example.com/cluster/one", &root);

    // `cluster status --digest` is answered by the node asked, with the digest of its own state
    // machine: once every node has applied everything, the three agree, at the same log index.
    let digests = eventually("the same state digest at the same index on every node", || {
        let mut seen = std::collections::BTreeSet::new();
        for (i, addr) in raft.iter().take(3).enumerate() {
            let (ok, out, err) = cluster_cmd(tls, addr, &["status", "--digest"]);
            assert!(ok, "status --digest failed: {err}");
            let field = |name: &str| out.lines().find_map(|l| l.strip_prefix(name)).map(str::to_owned);
            assert_eq!(field("answered by: "), Some(format!("node {}", i + 1)), "{out}");
            let digest = field("state digest: ").expect("a digest line");
            assert!(
                digest.len() == 64 && digest.bytes().all(|b| b.is_ascii_hexdigit()),
                "{out}"
            );
            let index: u64 = field("state digest index: ")
                .and_then(|v| v.parse().ok())
                .expect("a numeric digest index");
            seen.insert((digest, index));
        }
        (seen.len() == 1).then_some(seen)
    });
    assert_eq!(digests.len(), 1);

    // kill -9 the leader: a new leader is elected among the survivors, publishes through them
    // work, and the earlier publish is still served.
    nodes[leader as usize - 1].kill9();
    let survivors: Vec<usize> = (0..3).filter(|i| *i as u64 + 1 != leader).collect();
    let new_leader = eventually("a new leader", || {
        let l = leader_of(tls, &raft[survivors[0]])?;
        (l != leader).then_some(l)
    });
    assert_ne!(new_leader, leader);
    for (k, &i) in survivors.iter().enumerate() {
        let gun = format!("example.com/cluster/after-{k}");
        let (_, root) = publish_new(&nodes[i], &gun);
        let alive: Vec<&Node> = survivors.iter().map(|&j| &nodes[j]).collect();
        served_everywhere(&alive, &gun, &root);
    }
    let alive: Vec<&Node> = survivors.iter().map(|&j| &nodes[j]).collect();
    served_everywhere(&alive, "example.com/cluster/one", &root);

    // The collection published before the failover takes a new version through a survivor: the
    // new leader signs its snapshot-referencing timestamp with the shared signer's key.
    let gun = "example.com/cluster/one";
    let t3 = repo.targets_file(3, &[("v1", b"payload\n"), ("v2", b"more\n")]);
    let s3 = repo.snapshot_file(3, &[("root", &root), ("targets", &t3)]);
    let r = nodes[survivors[1]].publish(gun, &[("targets".to_owned(), t3), ("snapshot".to_owned(), s3)]);
    assert_eq!(r.status, 200, "{}", r.text());
    let ts_key = repo.server_timestamp.clone().unwrap();
    for node in &alive {
        eventually(&format!("{gun} timestamp v>1 on {}", node.addr), || {
            let r = try_request(&node.addr, "GET", &tuf(gun, "timestamp.json"), &[], &[]).ok()?;
            let file = seal_tuf::SignedFile::parse("timestamp", r.body).ok()?;
            seal_tuf::verify::verify_threshold(&file, &[&ts_key], 1).ok()?;
            let ts = seal_tuf::Timestamp::from_signed(file.signed()).ok()?;
            (ts.version > 1).then_some(())
        });
    }

    // A fourth node joins as a learner through `cluster add-learner` (asked of a survivor, which
    // forwards to the leader if needed) and catches up.
    let learner = spawn(dir.path(), "n4", config(4, &raft[3], tls, &[]));
    let (ok, out, err) = cluster_cmd(
        tls,
        &raft[survivors[0]],
        &["add-learner", "--id", "4", "--raft-addr", &raft[3]],
    );
    assert!(ok, "add-learner failed: {out}{err}");
    served_everywhere(&[&learner], "example.com/cluster/one", &root);
    let (ok, status, err) = cluster_cmd(tls, &raft[survivors[1]], &["status"]);
    assert!(ok, "status failed: {err}");
    let row = status.lines().find(|l| l.starts_with("4 ")).expect("learner row");
    assert!(row.contains("learner"), "{row}");
    eventually("learner healthy", || healthy(&learner).then_some(()));
}
