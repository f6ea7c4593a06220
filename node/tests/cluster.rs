//! Three real `seal-node` processes forming a Raft cluster on loopback (mutual TLS from
//! `TestPki`, own data directories) and signing through one seal-signer process: formation from
//! `raft.bootstrap`, a publish through a follower served by every node, `cluster status`, kill -9
//! of the leader, a new version of the same collection published and timestamped by the new
//! leader, and a learner added with `cluster add-learner` catching up.

mod common;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{signer_binary, try_request, Node};
use seal_signer::testing::{spawn_signer, TestPki};
use seal_tuf::testing::TestRepo;
use seal_tuf::PublicKey;
use time::OffsetDateTime;

const DEADLINE: Duration = Duration::from_secs(30);

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

struct Tls {
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
    signer_port: u16,
}

/// The signer every node uses, killed when dropped.
struct Signer(std::process::Child);

impl Drop for Signer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_signer(dir: &Path, pki: &TestPki) -> (Signer, u16) {
    let (cert, key) = pki.leaf("signer");
    let config = dir.join("signer.json");
    std::fs::write(
        &config,
        serde_json::json!({
            "server": {"grpc_addr": "127.0.0.1:0", "tls_cert_file": cert, "tls_key_file": key,
                       "client_ca_file": pki.ca_file(), "allowed_client_names": ["seal-node"]},
            "storage": {"data_dir": dir.join("signer-data")},
        })
        .to_string(),
    )
    .unwrap();
    let (child, port) = spawn_signer(&signer_binary(), &config, "cluster test passphrase");
    (Signer(child), port)
}

fn config(id: u64, raft_addr: &str, tls: &Tls, bootstrap: &[(u64, String)]) -> serde_json::Value {
    serde_json::json!({
        "server": {},
        "trust_service": {"type": "remote", "hostname": "localhost", "port": tls.signer_port.to_string(),
                          "tls_ca_file": tls.ca, "tls_client_cert": tls.cert, "tls_client_key": tls.key,
                          "key_algorithm": "ed25519"},
        "storage": {"backend": "rocksdb"},
        "raft": {
            "node_id": id,
            "addr": raft_addr,
            "heartbeat_ms": 100,
            "election_timeout_min_ms": 500,
            "election_timeout_max_ms": 1000,
            "tls_ca_file": tls.ca,
            "tls_cert_file": tls.cert,
            "tls_key_file": tls.key,
            "allowed_peer_names": ["seal-node"],
            "bootstrap": bootstrap.iter().map(|(id, a)| serde_json::json!({"id": id, "raft_addr": a})).collect::<Vec<_>>(),
        },
    })
}

/// Polls `f` until it returns `Some`, or panics with `what` after the deadline.
fn eventually<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn healthy(node: &Node) -> bool {
    try_request(&node.addr, "GET", "/_notary_server/health", &[], &[]).is_ok_and(|r| r.status == 200)
}

fn cluster_cmd(tls: &Tls, addr: &str, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_seal-node"))
        .arg("cluster")
        .args(args)
        .args(["--addr", addr])
        .arg("--ca")
        .arg(&tls.ca)
        .arg("--cert")
        .arg(&tls.cert)
        .arg("--key")
        .arg(&tls.key)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The leader's id, from `cluster status` asked of `addr`.
fn leader_of(tls: &Tls, addr: &str) -> Option<u64> {
    let (ok, out, _) = cluster_cmd(tls, addr, &["status"]);
    if !ok {
        return None;
    }
    out.lines()
        .find_map(|l| l.strip_prefix("leader: node "))
        .and_then(|l| l.trim().parse().ok())
}

fn tuf(gun: &str, path: &str) -> String {
    format!("/v2/{gun}/_trust/tuf/{path}")
}

/// Publishes a new collection `gun` through `node`; returns it and its first root's bytes.
fn publish_new(node: &Node, gun: &str) -> (TestRepo, Vec<u8>) {
    let now = OffsetDateTime::now_utc();
    let key = node.get(&tuf(gun, "timestamp.key"));
    assert_eq!(key.status, 200, "timestamp.key: {}", key.text());
    let mut repo = TestRepo::new(gun, now);
    repo.server_timestamp = Some(PublicKey::from_json(&key.body).unwrap());
    let first = repo.first_publish(&[("v1", b"payload\n")]);
    let r = node.publish(gun, &first);
    assert_eq!(r.status, 200, "publish {gun} through {}: {}", node.addr, r.text());
    let root = first[0].1.clone();
    (repo, root)
}

fn served_everywhere(nodes: &[&Node], gun: &str, root: &[u8]) {
    for node in nodes {
        eventually(&format!("{gun} root on {}", node.addr), || {
            let r = try_request(&node.addr, "GET", &tuf(gun, "root.json"), &[], &[]).ok()?;
            (r.status == 200 && r.body == root).then_some(())
        });
    }
}

fn spawn(dir: &Path, name: &str, json: serde_json::Value) -> Node {
    Node::serve_unprobed(&dir.join(name), json)
}

#[test]
fn three_nodes_form_forward_fail_over_and_add_a_learner() {
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::new(dir.path(), "cluster");
    let (cert, key) = pki.leaf("seal-node");
    let (_signer, signer_port) = start_signer(dir.path(), &pki);
    let tls = Tls {
        ca: pki.ca_file(),
        cert,
        key,
        signer_port,
    };
    let raft: Vec<String> = (0..4).map(|_| format!("127.0.0.1:{}", free_port())).collect();
    let bootstrap: Vec<(u64, String)> = (1..=3).map(|i| (i, raft[i as usize - 1].clone())).collect();
    let mut nodes: Vec<Node> = (1..=3u64)
        .map(|i| {
            spawn(
                dir.path(),
                &format!("n{i}"),
                config(i, &raft[i as usize - 1], &tls, &bootstrap),
            )
        })
        .collect();

    // The cluster forms from raft.bootstrap: every node healthy (it knows a leader).
    for n in &nodes {
        eventually(&format!("{} healthy", n.addr), || healthy(n).then_some(()));
    }
    let leader = eventually("a leader in cluster status", || leader_of(&tls, &raft[0]));
    assert!((1..=3).contains(&leader));

    // `cluster status` lists the three voters and marks the leader.
    let (ok, status, err) = cluster_cmd(&tls, &raft[0], &["status"]);
    assert!(ok, "status failed: {err}");
    for (id, addr) in &bootstrap {
        let row = status
            .lines()
            .find(|l| l.starts_with(&format!("{id} ")))
            .unwrap_or_else(|| panic!("no row for node {id}:\n{status}"));
        assert!(row.contains(addr.as_str()) && row.contains("voter"), "{row}");
        assert_eq!(row.contains('*'), *id == leader, "{row}");
    }

    // A publish through a follower is forwarded to the leader and served by every node.
    let follower = (0..3).find(|i| *i as u64 + 1 != leader).unwrap();
    let (repo, root) = publish_new(&nodes[follower], "example.com/cluster/one");
    served_everywhere(&nodes.iter().collect::<Vec<_>>(), "example.com/cluster/one", &root);

    // kill -9 the leader: a new leader is elected among the survivors, publishes through them
    // work, and the earlier publish is still served.
    nodes[leader as usize - 1].kill9();
    let survivors: Vec<usize> = (0..3).filter(|i| *i as u64 + 1 != leader).collect();
    let new_leader = eventually("a new leader", || {
        let l = leader_of(&tls, &raft[survivors[0]])?;
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
    let learner = spawn(dir.path(), "n4", config(4, &raft[3], &tls, &[]));
    let (ok, out, err) = cluster_cmd(
        &tls,
        &raft[survivors[0]],
        &["add-learner", "--id", "4", "--raft-addr", &raft[3]],
    );
    assert!(ok, "add-learner failed: {out}{err}");
    served_everywhere(&[&learner], "example.com/cluster/one", &root);
    let (ok, status, err) = cluster_cmd(&tls, &raft[survivors[1]], &["status"]);
    assert!(ok, "status failed: {err}");
    let row = status.lines().find(|l| l.starts_with("4 ")).expect("learner row");
    assert!(row.contains("learner"), "{row}");
    eventually("learner healthy", || healthy(&learner).then_some(()));
}
