//! The operator's day two, with real processes: cluster identity (a node of another cluster is
//! refused as a learner; a data directory copied to another node id is refused), a backup taken
//! while publishes run restored into a new cluster, and a new cluster forced from the survivor
//! of a lost majority (docs/operations.md).

mod common;

use std::path::Path;

use common::cluster::*;
use common::{node_binary, Node};
use seal_signer::testing::TestPki;
use seal_testkit::process::run_to_end;
use seal_tuf::client::{Limits, Repo, TrustPin};
use time::OffsetDateTime;

/// `seal-node <args>` run to the end: (success, stdout, stderr).
fn seal_node(args: &[&str]) -> (bool, String, String) {
    let (code, out, err) = run_to_end(std::process::Command::new(node_binary()).args(args));
    (code == 0, out, err)
}

/// The `cluster id:` line of `cluster status` asked of `addr`.
fn cluster_id(tls: &Tls, addr: &str) -> String {
    let (ok, out, err) = cluster_cmd(tls, addr, &["status"]);
    assert!(ok, "cluster status at {addr}: {err}");
    out.lines()
        .find_map(|l| l.strip_prefix("cluster id: "))
        .unwrap_or_else(|| panic!("no cluster id in {out}"))
        .to_owned()
}

fn write_config(path: &Path, json: &serde_json::Value) {
    std::fs::write(path, serde_json::to_vec_pretty(json).unwrap()).unwrap();
}

/// Verifies collection `gun` as served by `node` the way a client does (root whose bytes are
/// `root`, timestamp, snapshot and targets by checksum, the target `v1` and its payload).
fn verify_collection(node: &Node, gun: &str, root: &[u8]) -> Result<(), String> {
    let now = OffsetDateTime::now_utc();
    let get = |path: &str| {
        let r = node.get(&tuf(gun, path));
        if r.status == 200 {
            Ok(r.body)
        } else {
            Err(format!("{gun}/{path}: {} {}", r.status, r.text()))
        }
    };
    let served_root = get("root.json")?;
    if served_root != root {
        return Err(format!("{gun}: another root is served"));
    }
    let mut repo = Repo::new(gun, TrustPin::Tofu, Limits::default());
    let e = |e: seal_tuf::Error| format!("{gun}: {e}");
    repo.update_root(served_root, now).map_err(e)?;
    repo.update_timestamp(get("timestamp.json")?, now).map_err(e)?;
    let snap = repo.timestamp().unwrap().snapshot_meta().unwrap().sha256_hex().unwrap();
    repo.update_snapshot(get(&format!("snapshot.{snap}.json"))?, now)
        .map_err(e)?;
    let targets = repo.snapshot().unwrap().meta["targets"].sha256_hex().unwrap();
    repo.update_targets("targets", get(&format!("targets.{targets}.json"))?, now)
        .map_err(e)?;
    let (_, meta) = repo
        .lookup("v1", now)
        .map_err(e)?
        .ok_or(format!("{gun}: no target v1"))?;
    seal_tuf::client::verify_target("v1", &meta, b"payload\n").map_err(e)
}

/// A signer, the cluster's TLS files, and a directory, for tests that start their own nodes.
struct Site {
    _signer: Signer,
    tls: Tls,
    dir: tempfile::TempDir,
}

fn site() -> Site {
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::new(dir.path(), "operations");
    let (cert, key) = pki.leaf("seal-node");
    let (signer, signer_port) = start_signer(dir.path(), &pki);
    Site {
        _signer: signer,
        tls: Tls {
            ca: pki.ca_file(),
            cert,
            key,
            signer_port,
        },
        dir,
    }
}

fn started(mut node: Node) -> Node {
    let addr = node.addr.clone();
    if let Err(e) = node.process.wait_healthy(&addr, DEADLINE) {
        panic!("seal-node {addr}: {e}");
    }
    node
}

#[test]
fn a_node_that_ran_on_its_own_is_refused_as_a_learner() {
    let _one = one_cluster_at_a_time();
    let site = site();
    let (raft1, raft2) = (
        format!("127.0.0.1:{}", free_port()),
        format!("127.0.0.1:{}", free_port()),
    );
    // Node 2 runs on its own first (as with a misspelled `raft` section) and takes a publish.
    let mut alone = config(2, &raft2, &site.tls, &[]);
    alone["raft"] = serde_json::json!({"node_id": 2});
    let mut node2 = started(Node::serve_unprobed(&site.dir.path().join("n2"), alone));
    publish_new(&node2, "standalone/only");
    node2.kill9();

    let node1 = started(spawn(
        site.dir.path(),
        "n1",
        config(1, &raft1, &site.tls, &[(1, raft1.clone())]),
    ));
    publish_new(&node1, "cluster/one");
    let live = cluster_id(&site.tls, &raft1);

    // Now with its cluster settings: it serves Raft, but keeps the data and id it made alone.
    let node2 = started(Node::serve_unprobed(
        &site.dir.path().join("n2"),
        config(2, &raft2, &site.tls, &[]),
    ));
    let own = cluster_id(&site.tls, &raft2);
    assert_ne!(own, live);
    assert_ne!(own, "none", "a node that ran on its own is a cluster of its own");

    let (ok, out, err) = cluster_cmd(&site.tls, &raft1, &["add-learner", "--id", "2", "--raft-addr", &raft2]);
    assert!(!ok, "a node of another cluster was added: {out}");
    assert!(
        err.contains("cannot join this cluster") && err.contains(&own) && err.contains(&live),
        "the refusal names both clusters: {err}"
    );
    let (_, status, _) = cluster_cmd(&site.tls, &raft1, &["status"]);
    assert!(!status.lines().any(|l| l.starts_with("2 ")), "{status}");
    // Nothing mixed: each still serves only its own collections.
    assert_eq!(node2.get(&tuf("cluster/one", "root.json")).status, 404);
    assert_eq!(node2.get(&tuf("standalone/only", "root.json")).status, 200);
    assert_eq!(node1.get(&tuf("standalone/only", "root.json")).status, 404);

    // A new node with no data joins, and learns the cluster's id.
    let raft3 = format!("127.0.0.1:{}", free_port());
    // (A node in no cluster yet is not healthy: it knows no leader.)
    let node3 = spawn(site.dir.path(), "n3", config(3, &raft3, &site.tls, &[]));
    let (ok, _, err) = cluster_cmd(&site.tls, &raft1, &["add-learner", "--id", "3", "--raft-addr", &raft3]);
    assert!(ok, "{err}");
    let node3 = started(node3);
    let root = node1.get(&tuf("cluster/one", "root.json")).body;
    served_everywhere(&[&node3], "cluster/one", &root);
    assert_eq!(cluster_id(&site.tls, &raft3), live);
}

#[test]
fn a_data_directory_copied_to_another_node_id_is_refused() {
    let _one = one_cluster_at_a_time();
    let site = site();
    let raft1 = format!("127.0.0.1:{}", free_port());
    let raft2 = format!("127.0.0.1:{}", free_port());
    let node1 = started(spawn(
        site.dir.path(),
        "n1",
        config(1, &raft1, &site.tls, &[(1, raft1.clone())]),
    ));
    let node2 = spawn(site.dir.path(), "n2", config(2, &raft2, &site.tls, &[]));
    let (ok, _, err) = cluster_cmd(&site.tls, &raft1, &["add-learner", "--id", "2", "--raft-addr", &raft2]);
    assert!(ok, "{err}");
    let mut node2 = started(node2);
    let (_, root) = publish_new(&node1, "copied/one");
    served_everywhere(&[&node2], "copied/one", &root);
    node2.kill9();

    // The learner's data directory copied and started as node 3.
    let copy = site.dir.path().join("n3");
    std::fs::create_dir_all(&copy).unwrap();
    let (code, _, err) = run_to_end(
        std::process::Command::new("cp")
            .arg("-a")
            .arg(site.dir.path().join("n2").join("data"))
            .arg(&copy),
    );
    assert_eq!(code, 0, "{err}");
    let raft3 = format!("127.0.0.1:{}", free_port());
    let mut node3 = spawn(site.dir.path(), "n3", config(3, &raft3, &site.tls, &[]));
    let deadline = std::time::Instant::now() + DEADLINE;
    while node3.running() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(!node3.running(), "a copy of node 2's data started as node 3");
    let log = std::fs::read_to_string(copy.join("node.log")).unwrap();
    assert!(
        log.contains("belongs to node 2, not node 3"),
        "the refusal says whose data it is: {log}"
    );
    // The original still serves as node 2.
    node2.restart();
    served_everywhere(&[&node2], "copied/one", &root);
}

#[test]
fn a_backup_taken_while_publishing_restores_into_a_new_cluster() {
    let _one = one_cluster_at_a_time();
    // Snapshots and purges every few entries, so the restored cluster must send its new
    // members a snapshot.
    let mut cluster = start_cluster_with(
        3,
        ClusterOptions {
            extra: serde_json::json!({"raft": {"snapshot_logs_since_last": 10, "snapshot_log_percent": 0,
                                               "max_in_snapshot_log_to_keep": 0}}),
            ..Default::default()
        },
    );
    let alive = alive_of(&cluster.nodes);
    let writers = Writers::start(2, "backup", &alive);
    let at_least = |n: usize| eventually("publishes", || (writers.count() >= n).then_some(()));
    at_least(10);
    let before: Vec<(String, Vec<u8>)> = writers.so_far();
    let out = cluster.dir.path().join("backup");
    let (ok, printed, err) = seal_node(&[
        "backup",
        "--out",
        out.to_str().unwrap(),
        "--addr",
        &cluster.raft[1],
        "--ca",
        cluster.tls.ca.to_str().unwrap(),
        "--cert",
        cluster.tls.cert.to_str().unwrap(),
        "--key",
        cluster.tls.key.to_str().unwrap(),
    ]);
    assert!(ok, "backup: {err}");
    assert!(printed.contains("applied index: "), "{printed}");
    at_least(before.len() + 5);
    let after = writers.stop();
    let old_id = cluster_id(&cluster.tls, &cluster.raft[0]);
    for node in &mut cluster.nodes {
        node.kill9();
    }

    // A new cluster from the backup: node 11 restored, 12 and 13 added.
    let raft: Vec<String> = cluster.raft[3..6].to_vec();
    let dir = cluster.dir.path().join("restored");
    let mut json = config(11, &raft[0], &cluster.tls, &[]);
    json["storage"]["data_dir"] = dir.join("n11").join("data").to_string_lossy().into_owned().into();
    json["server"]["http_addr"] = "127.0.0.1:1".into();
    json["insecure"] = true.into();
    std::fs::create_dir_all(&dir).unwrap();
    write_config(&dir.join("restore.json"), &json);
    let (ok, printed, err) = seal_node(&[
        "restore",
        "--from",
        out.to_str().unwrap(),
        "--config",
        dir.join("restore.json").to_str().unwrap(),
    ]);
    assert!(ok, "restore: {err}");
    assert!(printed.contains("new cluster id: "), "{printed}");
    // Restoring twice into the same place is refused, and changes nothing.
    let (ok, _, err) = seal_node(&[
        "restore",
        "--from",
        out.to_str().unwrap(),
        "--config",
        dir.join("restore.json").to_str().unwrap(),
    ]);
    assert!(!ok && err.contains("already there"), "{err}");

    let n11 = started(spawn(&dir, "n11", config(11, &raft[0], &cluster.tls, &[])));
    let new_id = cluster_id(&cluster.tls, &raft[0]);
    assert_ne!(new_id, old_id, "a restored copy is another cluster");
    let mut nodes = vec![n11];
    for (i, id) in [(1, 12u64), (2, 13)] {
        let node = spawn(&dir, &format!("n{id}"), config(id, &raft[i], &cluster.tls, &[]));
        let (ok, _, err) = cluster_cmd(
            &cluster.tls,
            &raft[0],
            &["add-learner", "--id", &id.to_string(), "--raft-addr", &raft[i]],
        );
        assert!(ok, "{err}");
        nodes.push(started(node));
        let (ok, _, err) = cluster_cmd(&cluster.tls, &raft[0], &["promote", "--id", &id.to_string()]);
        assert!(ok, "{err}");
    }
    // Every publish acknowledged before the backup began, on every node of the new cluster.
    for node in &nodes {
        for (gun, root) in &before {
            eventually(&format!("{gun} on {}", node.addr), || {
                verify_collection(node, gun, root).ok()
            });
        }
    }
    assert!(after.len() > before.len());
    // And the new cluster takes publishes.
    let (_, root) = publish_new(&nodes[2], "backup/after-restore");
    served_everywhere(&nodes.iter().collect::<Vec<_>>(), "backup/after-restore", &root);

    // The same backup seeds a single node (no Raft port) as well.
    let single = cluster.dir.path().join("single");
    let mut json = serde_json::json!({"raft": {"node_id": 21}});
    json["trust_service"] = config(21, &raft[0], &cluster.tls, &[])["trust_service"].clone();
    let mut file_json = json.clone();
    file_json["storage"] = serde_json::json!({"data_dir": single.join("data")});
    file_json["server"] = serde_json::json!({"http_addr": "127.0.0.1:1"});
    file_json["insecure"] = true.into();
    std::fs::create_dir_all(&single).unwrap();
    write_config(&single.join("restore.json"), &file_json);
    let (ok, _, err) = seal_node(&[
        "restore",
        "--from",
        out.to_str().unwrap(),
        "--config",
        single.join("restore.json").to_str().unwrap(),
    ]);
    assert!(ok, "restore into a single node: {err}");
    let single = Node::serve(&single, json);
    let (gun, root) = &before[0];
    verify_collection(&single, gun, root).unwrap();
}

#[test]
fn a_dead_voter_is_replaced_by_a_new_node() {
    let _one = one_cluster_at_a_time();
    let mut cluster = start_cluster(1);
    let (_, root) = publish_new(&cluster.nodes[0], "replace/before");
    // Node 3 is lost with its disk.
    cluster.nodes[2].kill9();
    let config3 = cluster.nodes[2].data_dir.join("config.json");
    let config3_text = std::fs::read(&config3).unwrap();
    std::fs::remove_dir_all(&cluster.nodes[2].data_dir).unwrap();
    // Forcing a cluster out of a node with no data is refused, and creates nothing.
    std::fs::create_dir_all(&cluster.nodes[2].data_dir).unwrap();
    std::fs::write(&config3, config3_text).unwrap();
    let (ok, _, err) = seal_node(&[
        "cluster",
        "force-new",
        "--from-this-node",
        "--config",
        config3.to_str().unwrap(),
    ]);
    assert!(!ok && err.contains("no database here"), "{err}");
    assert!(!cluster.nodes[2].data_dir.join("data").exists());
    // The runbook: remove it, start a new node with a new id and an empty data directory, add it
    // as a learner, promote it once it has caught up.
    let (ok, _, err) = cluster_cmd(&cluster.tls, &cluster.raft[0], &["remove", "--id", "3"]);
    assert!(ok, "remove: {err}");
    let node4 = spawn(cluster.dir.path(), "n4", config(4, &cluster.raft[3], &cluster.tls, &[]));
    let (ok, _, err) = cluster_cmd(
        &cluster.tls,
        &cluster.raft[0],
        &["add-learner", "--id", "4", "--raft-addr", &cluster.raft[3]],
    );
    assert!(ok, "add-learner: {err}");
    let node4 = started(node4);
    served_everywhere(&[&node4], "replace/before", &root);
    let (ok, _, err) = cluster_cmd(&cluster.tls, &cluster.raft[0], &["promote", "--id", "4"]);
    assert!(ok, "promote: {err}");
    let (ok, status, _) = cluster_cmd(&cluster.tls, &cluster.raft[1], &["status"]);
    assert!(ok);
    let voters: Vec<&str> = status
        .lines()
        .filter(|l| l.contains(" voter "))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(voters, ["1", "2", "4"], "{status}");
    let (_, root) = publish_new(&node4, "replace/after");
    served_everywhere(&[&cluster.nodes[0], &cluster.nodes[1], &node4], "replace/after", &root);
}

#[test]
fn a_survivor_of_a_lost_majority_becomes_a_new_cluster() {
    let _one = one_cluster_at_a_time();
    let mut cluster = start_cluster(2);
    let alive = alive_of(&cluster.nodes);
    let writers = Writers::start(2, "disaster", &alive);
    eventually("publishes", || (writers.count() >= 10).then_some(()));
    let acked = writers.stop();
    // What the survivor (node 1) has applied of them; with the writers stopped, all of them.
    for a in &acked {
        eventually(&format!("{} on node 1", a.gun), || {
            verify_collection(&cluster.nodes[0], &a.gun, &a.root).ok()
        });
    }
    let old_id = cluster_id(&cluster.tls, &cluster.raft[0]);
    // Two voters of three lost for good, their data too.
    for i in [1, 2] {
        cluster.nodes[i].kill9();
        std::fs::remove_dir_all(&cluster.nodes[i].data_dir).unwrap();
    }
    cluster.nodes[0].kill9();
    let config_file = cluster.nodes[0].data_dir.join("config.json");
    // First a copy of what it holds, read from its stopped data directory.
    let copy = cluster.dir.path().join("survivor-copy");
    let (ok, printed, err) = seal_node(&[
        "backup",
        "--config",
        config_file.to_str().unwrap(),
        "--out",
        copy.to_str().unwrap(),
    ]);
    assert!(ok, "backup of a stopped node: {err}");
    assert!(printed.contains(&format!("cluster id: {old_id}")), "{printed}");
    let (ok, printed, err) = seal_node(&[
        "cluster",
        "force-new",
        "--from-this-node",
        "--config",
        config_file.to_str().unwrap(),
    ]);
    assert!(ok, "force-new: {err}");
    assert!(printed.contains("is now its only voter"), "{printed}");
    cluster.nodes[0].restart();
    let survivor = &cluster.nodes[0];
    assert_ne!(cluster_id(&cluster.tls, &cluster.raft[0]), old_id);
    eventually("the survivor leads", || {
        (leader_of(&cluster.tls, &cluster.raft[0]) == Some(1)).then_some(())
    });

    // Two new nodes join, and publishing goes on.
    let mut new_nodes = Vec::new();
    for (i, id) in [(3usize, 4u64), (4, 5)] {
        let node = spawn(
            cluster.dir.path(),
            &format!("n{id}"),
            config(id, &cluster.raft[i], &cluster.tls, &[]),
        );
        let (ok, _, err) = cluster_cmd(
            &cluster.tls,
            &cluster.raft[0],
            &["add-learner", "--id", &id.to_string(), "--raft-addr", &cluster.raft[i]],
        );
        assert!(ok, "{err}");
        new_nodes.push(started(node));
        let (ok, _, err) = cluster_cmd(&cluster.tls, &cluster.raft[0], &["promote", "--id", &id.to_string()]);
        assert!(ok, "{err}");
    }
    let (_, root) = publish_new(&new_nodes[0], "disaster/after");
    served_everywhere(&[survivor, &new_nodes[0], &new_nodes[1]], "disaster/after", &root);
    for node in [survivor, &new_nodes[0], &new_nodes[1]] {
        for a in &acked {
            eventually(&format!("{} on {}", a.gun, node.addr), || {
                verify_collection(node, &a.gun, &a.root).ok()
            });
        }
    }
}
