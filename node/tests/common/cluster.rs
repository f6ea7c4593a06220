//! A three-process cluster for the node's cluster tests: certificates from
//! `TestPki`, one seal-signer every node signs through, node configs with
//! `raft.bootstrap`, the `seal-node cluster` command, and polling helpers.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use super::{signer_binary, try_request, Node};
use seal_signer::testing::{spawn_signer, TestPki};
use seal_tuf::testing::TestRepo;
use seal_tuf::PublicKey;
use time::OffsetDateTime;

pub const DEADLINE: Duration = Duration::from_secs(30);

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

pub struct Tls {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub signer_port: u16,
}

/// The signer every node uses, killed when dropped.
pub struct Signer(pub std::process::Child);

impl Drop for Signer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn start_signer(dir: &Path, pki: &TestPki) -> (Signer, u16) {
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

pub fn config(id: u64, raft_addr: &str, tls: &Tls, bootstrap: &[(u64, String)]) -> serde_json::Value {
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
pub fn eventually<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub fn healthy(node: &Node) -> bool {
    try_request(&node.addr, "GET", "/_notary_server/health", &[], &[]).is_ok_and(|r| r.status == 200)
}

pub fn cluster_cmd(tls: &Tls, addr: &str, args: &[&str]) -> (bool, String, String) {
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
pub fn leader_of(tls: &Tls, addr: &str) -> Option<u64> {
    let (ok, out, _) = cluster_cmd(tls, addr, &["status"]);
    if !ok {
        return None;
    }
    out.lines()
        .find_map(|l| l.strip_prefix("leader: node "))
        .and_then(|l| l.trim().parse().ok())
}

pub fn tuf(gun: &str, path: &str) -> String {
    format!("/v2/{gun}/_trust/tuf/{path}")
}

/// Publishes a new collection `gun` through `node`; returns it and its first root's bytes.
pub fn publish_new(node: &Node, gun: &str) -> (TestRepo, Vec<u8>) {
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

pub fn served_everywhere(nodes: &[&Node], gun: &str, root: &[u8]) {
    for node in nodes {
        eventually(&format!("{gun} root on {}", node.addr), || {
            let r = try_request(&node.addr, "GET", &tuf(gun, "root.json"), &[], &[]).ok()?;
            (r.status == 200 && r.body == root).then_some(())
        });
    }
}

pub fn spawn(dir: &Path, name: &str, json: serde_json::Value) -> Node {
    Node::serve_unprobed(&dir.join(name), json)
}

/// Three voters formed from `raft.bootstrap` and healthy (each knows a
/// leader), signing through one seal-signer; `spare` more Raft addresses
/// are reserved for nodes a test adds. Fields drop in order: the nodes,
/// then the signer, then the directory.
pub struct Cluster {
    pub nodes: Vec<Node>,
    _signer: Signer,
    pub tls: Tls,
    pub raft: Vec<String>,
    pub bootstrap: Vec<(u64, String)>,
    pub dir: tempfile::TempDir,
}

pub fn start_cluster(spare: usize) -> Cluster {
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::new(dir.path(), "cluster");
    let (cert, key) = pki.leaf("seal-node");
    let (signer, signer_port) = start_signer(dir.path(), &pki);
    let tls = Tls {
        ca: pki.ca_file(),
        cert,
        key,
        signer_port,
    };
    let raft: Vec<String> = (0..3 + spare).map(|_| format!("127.0.0.1:{}", free_port())).collect();
    let bootstrap: Vec<(u64, String)> = (1..=3).map(|i| (i, raft[i as usize - 1].clone())).collect();
    let nodes: Vec<Node> = (1..=3u64)
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
    Cluster {
        nodes,
        _signer: signer,
        tls,
        raft,
        bootstrap,
        dir,
    }
}
