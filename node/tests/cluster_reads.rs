//! Reads on any node of a three-process cluster (signing through one seal-signer process): the
//! `X-Seal-Applied-Index` and `X-Seal-Last-Contact` headers, linearizable reads through a
//! follower right after a publish, `X-Seal-Min-Version`, the leader's
//! `seal_timestamp_min_remaining_seconds` metric, and a follower cut off from the quorum refusing
//! to serve `timestamp.json`.

mod common;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{request, signer_binary, try_request, Node};
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

/// The leader among `nodes` (1-based ids), asked of `raft[0]`'s node or any that answers.
fn find_leader(tls: &Tls, raft: &[String]) -> u64 {
    eventually("a leader in cluster status", || {
        raft.iter().find_map(|a| leader_of(tls, a))
    })
}

fn header_u64(r: &common::Response, name: &str) -> Option<u64> {
    r.header(name)?.parse().ok()
}

fn get(node: &Node, path: &str, headers: &[(&str, &str)]) -> Option<common::Response> {
    try_request(&node.addr, "GET", path, headers, &[]).ok()
}

#[test]
fn reads_on_any_node_are_bounded_linearizable_on_request_and_refused_when_cut_off() {
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
    let raft: Vec<String> = (0..3).map(|_| format!("127.0.0.1:{}", free_port())).collect();
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
    for n in &nodes {
        eventually(&format!("{} healthy", n.addr), || healthy(n).then_some(()));
    }
    let leader = find_leader(&tls, &raft) as usize - 1;
    let followers: Vec<usize> = (0..3).filter(|i| *i != leader).collect();
    let (f1, f2) = (followers[0], followers[1]);

    // A publish through a follower; every node serves it with its applied index and last contact.
    let gun = "example.com/reads/one";
    let (repo, root) = publish_new(&nodes[f1], gun);
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

    // The leader exports the smallest remaining timestamp lifetime, positive.
    let remaining = eventually("seal_timestamp_min_remaining_seconds on the leader", || {
        let r = get(&nodes[leader], "/metrics", &[])?;
        let line = r
            .text()
            .lines()
            .find(|l| l.starts_with("seal_timestamp_min_remaining_seconds "))?
            .to_owned();
        let v: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
        v.is_finite().then_some(v)
    });
    assert!(remaining > 0.0, "remaining lifetime {remaining}");

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
