//! A three-process cluster for the node's cluster tests: certificates from
//! `TestPki`, one seal-signer every node signs through, node configs with
//! `raft.bootstrap`, the `seal-node cluster` command, and polling helpers.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::{multipart, node_binary, signer_binary, try_request, Node};
use seal_signer::testing::{spawn_signer, TestPki};
use seal_testkit::process::Process;
use seal_testkit::proxy::FaultProxy;
use seal_tuf::testing::TestRepo;
use seal_tuf::PublicKey;
use time::OffsetDateTime;

pub const DEADLINE: Duration = Duration::from_secs(30);

pub use seal_testkit::free_port;

pub struct Tls {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub signer_port: u16,
}

/// The signer every node uses, killed when dropped.
pub struct Signer(pub Process);

pub fn start_signer(dir: &Path, pki: &TestPki) -> (Signer, u16) {
    let (cert, key) = pki.leaf("signer");
    let config = dir.join("signer.json");
    std::fs::write(
        &config,
        serde_json::json!({
            "server": {"grpc_addr": "127.0.0.1:0", "tls_cert_file": cert, "tls_key_file": key,
                       "client_ca_file": pki.ca_file(), "allowed_client_names": ["seal-node"],
                       "metrics_addr": format!("127.0.0.1:{}", free_port())},
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
    seal_testkit::http::healthy(&node.addr)
}

pub fn cluster_cmd(tls: &Tls, addr: &str, args: &[&str]) -> (bool, String, String) {
    let tls = (tls.ca.as_path(), tls.cert.as_path(), tls.key.as_path());
    let out = seal_testkit::process::cluster_admin(&node_binary(), addr, tls, args).unwrap();
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

/// The leader's id (1-based), asked of every node at `raft` until one answers with a leader.
pub fn find_leader(tls: &Tls, raft: &[String]) -> u64 {
    eventually("a leader in cluster status", || {
        raft.iter().find_map(|a| leader_of(tls, a))
    })
}

pub fn tuf(gun: &str, path: &str) -> String {
    format!("/v2/{gun}/_trust/tuf/{path}")
}

/// Publishes a new collection `gun` through `node`; returns it and its first root's bytes.
pub fn publish_new(node: &Node, gun: &str) -> (TestRepo, Vec<u8>) {
    try_publish_new(&node.addr, gun).unwrap_or_else(|e| panic!("publish {gun} through {}: {e}", node.addr))
}

/// [`publish_new`] through the node at `addr`, with any failure (a refused connection, a status
/// other than 200) as an error instead of a panic.
pub fn try_publish_new(addr: &str, gun: &str) -> Result<(TestRepo, Vec<u8>), String> {
    let now = OffsetDateTime::now_utc();
    let key = try_request(addr, "GET", &tuf(gun, "timestamp.key"), &[], &[]).map_err(|e| e.to_string())?;
    if key.status != 200 {
        return Err(format!("timestamp.key: {} {}", key.status, key.text()));
    }
    let mut repo = TestRepo::new(gun, now);
    repo.server_timestamp = Some(PublicKey::from_json(&key.body).map_err(|e| e.to_string())?);
    let first = repo.first_publish(&[("v1", b"payload\n")]);
    let (ct, body) = multipart(&first);
    let r = try_request(addr, "POST", &tuf(gun, ""), &[("Content-Type", &ct)], &body).map_err(|e| e.to_string())?;
    if r.status != 200 {
        return Err(format!("{} {}", r.status, r.text()));
    }
    let root = first[0].1.clone();
    Ok((repo, root))
}

/// One line of `cluster status` asked of `addr` (`"term"`, `"purged index"`, …) as a number.
pub fn status_field(tls: &Tls, addr: &str, field: &str) -> Option<u64> {
    let (ok, out, _) = cluster_cmd(tls, addr, &["status"]);
    if !ok {
        return None;
    }
    out.lines()
        .find_map(|l| l.strip_prefix(&format!("{field}: ")))
        .and_then(|v| v.trim().parse().ok())
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
    /// The Raft (and admin) addresses the nodes listen on.
    pub raft: Vec<String>,
    /// The voters' ids and the addresses their peers reach them at: `raft`, or the proxies'.
    pub bootstrap: Vec<(u64, String)>,
    /// With [`ClusterOptions::proxied`], the proxy in front of each voter's Raft address.
    pub proxies: Vec<FaultProxy>,
    pub dir: tempfile::TempDir,
}

/// How [`start_cluster_with`] differs from [`start_cluster`].
#[derive(Default)]
pub struct ClusterOptions {
    /// Peers reach each voter through a [`FaultProxy`], and node `i` connects to its peers from
    /// [`source_ip`]`(i)`, so a test can partition any of them.
    pub proxied: bool,
    /// Merged into every node's config (objects key by key).
    pub extra: serde_json::Value,
}

fn merge(into: &mut serde_json::Value, from: &serde_json::Value) {
    match (into, from) {
        (_, serde_json::Value::Null) => {}
        (serde_json::Value::Object(a), serde_json::Value::Object(b)) => {
            for (k, v) in b {
                merge(a.entry(k.clone()).or_insert(serde_json::Value::Null), v);
            }
        }
        (into, from) => *into = from.clone(),
    }
}

/// The source address of node `id`'s connections to its peers in a proxied cluster.
pub use seal_testkit::proxy::source_ip;

pub fn start_cluster(spare: usize) -> Cluster {
    start_cluster_with(spare, ClusterOptions::default())
}

pub fn start_cluster_with(spare: usize, options: ClusterOptions) -> Cluster {
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
    let proxies: Vec<FaultProxy> = match options.proxied {
        // A proxy listens on a port picked free now, which could be one of the Raft ports
        // picked (and released) above before its node binds it: pick again in that case.
        true => raft[..3]
            .iter()
            .map(|a| loop {
                let p = FaultProxy::start("127.0.0.1:0", a).unwrap();
                if !raft.contains(&p.addr) {
                    break p;
                }
            })
            .collect(),
        false => Vec::new(),
    };
    let bootstrap: Vec<(u64, String)> = (1..=3)
        .map(|i| {
            let reached_at = proxies.get(i - 1).map_or(&raft[i - 1], |p| &p.addr);
            (i as u64, reached_at.clone())
        })
        .collect();
    let mut nodes: Vec<Node> = (1..=3u64)
        .map(|i| {
            let mut json = config(i, &raft[i as usize - 1], &tls, &bootstrap);
            if options.proxied {
                json["raft"]["source_ip"] = source_ip(i).to_string().into();
            }
            merge(&mut json, &options.extra);
            spawn(dir.path(), &format!("n{i}"), json)
        })
        .collect();
    for n in &mut nodes {
        let addr = n.addr.clone();
        if let Err(e) = n.process.wait_healthy(&addr, DEADLINE) {
            panic!("seal-node {addr} while starting: {e}");
        }
    }
    Cluster {
        nodes,
        _signer: signer,
        tls,
        raft,
        bootstrap,
        proxies,
        dir,
    }
}

impl Cluster {
    /// Cuts node `index` off from its peers both ways (a proxied cluster only).
    pub fn partition(&self, index: usize) {
        self.proxies[index].block_all();
        for (i, p) in self.proxies.iter().enumerate() {
            if i != index {
                p.block_from(source_ip(index as u64 + 1));
            }
        }
    }

    /// Undoes every partition.
    pub fn heal(&self) {
        for p in &self.proxies {
            p.heal();
        }
    }
}

/// HTTP addresses of a cluster's nodes by index, `None` while one is down.
pub type Alive = std::sync::Arc<std::sync::Mutex<Vec<Option<String>>>>;

pub fn alive_of(nodes: &[Node]) -> Alive {
    std::sync::Arc::new(std::sync::Mutex::new(
        nodes.iter().map(|n| Some(n.addr.clone())).collect(),
    ))
}

pub fn alive_addrs(alive: &Alive) -> Vec<String> {
    alive.lock().unwrap().iter().flatten().cloned().collect()
}

/// A publish acknowledged with 200.
pub struct Acked {
    pub gun: String,
    pub root: Vec<u8>,
    pub at: Instant,
}

/// Threads publishing new collections `<prefix>/w<writer>-<n>` through every live node in turn,
/// recording each acknowledged publish.
pub struct Writers {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
    acked: std::sync::Arc<std::sync::Mutex<Vec<Acked>>>,
}

impl Writers {
    pub fn start(count: usize, prefix: &str, alive: &Alive) -> Writers {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let acked: std::sync::Arc<std::sync::Mutex<Vec<Acked>>> = Default::default();
        let threads = (0..count)
            .map(|w| {
                let (alive, acked, stop) = (alive.clone(), acked.clone(), stop.clone());
                let prefix = prefix.to_owned();
                std::thread::spawn(move || {
                    let mut i = 0usize;
                    while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                        let addrs = alive_addrs(&alive);
                        let addr = &addrs[(w + i) % addrs.len()];
                        let gun = format!("{prefix}/w{w}-{i}");
                        match try_publish_new(addr, &gun) {
                            Ok((_, root)) => acked.lock().unwrap().push(Acked {
                                gun,
                                root,
                                at: Instant::now(),
                            }),
                            Err(_) => std::thread::sleep(Duration::from_millis(50)),
                        }
                        i += 1;
                    }
                })
            })
            .collect();
        Writers { stop, threads, acked }
    }

    pub fn count(&self) -> usize {
        self.acked.lock().unwrap().len()
    }

    /// Waits until a publish is acknowledged after `since`.
    pub fn wait_for_ack_after(&self, since: Instant) {
        eventually("a publish acknowledged", || {
            self.acked.lock().unwrap().iter().any(|a| a.at > since).then_some(())
        });
    }

    /// The publishes acknowledged so far: collection and root.
    pub fn so_far(&self) -> Vec<(String, Vec<u8>)> {
        self.acked
            .lock()
            .unwrap()
            .iter()
            .map(|a| (a.gun.clone(), a.root.clone()))
            .collect()
    }

    /// Stops the writers; returns every acknowledged publish.
    pub fn stop(self) -> Vec<Acked> {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        for t in self.threads {
            t.join().unwrap();
        }
        std::mem::take(&mut *self.acked.lock().unwrap())
    }
}

/// Held by each cluster test of a test binary, so that its clusters run one at a time: several
/// at once on a small machine starve their elections and heartbeats.
pub fn one_cluster_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}
