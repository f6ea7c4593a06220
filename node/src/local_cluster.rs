//! `seal-node local-cluster`: a Seal cluster on loopback for people trying
//! it out — three voters and one learner signing through one seal-signer
//! (or, with `--signers n --threshold k`, a k-of-n FROST threshold signer
//! cluster that every node lists, so any signer may fail), with
//! certificates generated on the spot, everything under one directory. It prints each node's addresses and role, runs until SIGINT
//! or SIGTERM, then stops every process with SIGTERM.
//!
//! Running it again with the same directory restarts the same cluster (same
//! certificates, passphrase, data and ports). Not for production: the
//! certificates come from a throw-away CA and the signer passphrase is
//! kept in a file next to the data.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use seal_raft::{AdminClient, ClusterTls};

/// How long processes get to start, and to stop.
const WAIT: Duration = Duration::from_secs(30);

/// The certificate name every node presents (and the allow-lists accept).
const NODE_NAME: &str = "seal-node";

/// Where the cluster lives and which ports it uses.
#[derive(Debug, Clone)]
pub struct LocalClusterOptions {
    /// Everything goes under this directory.
    pub dir: PathBuf,
    /// The (first) signer listens on this port, node `i` on `base + i`
    /// (HTTP) and `base + 10 + i` (Raft), threshold signer `j ≥ 2` on
    /// `base + 20 + j`. 0 picks free ports.
    pub base_port: u16,
    /// How many signers: 1 (a software signer), or n ≥ 2 holding keys as
    /// FROST shares, `threshold` of which sign together.
    pub signers: u16,
    /// k for n ≥ 2 signers (2 ≤ k ≤ n); `None` with one signer.
    pub threshold: Option<u16>,
}

impl LocalClusterOptions {
    /// Checks the signer counts: one software signer, or k-of-n with 2 ≤ k ≤ n ≤ 9.
    pub fn check(&self) -> Result<(), String> {
        match (self.signers, self.threshold) {
            (1, None) => Ok(()),
            (1, Some(_)) => Err("--threshold needs --signers 2 or more".into()),
            (0, _) => Err("--signers must be at least 1".into()),
            (n, _) if n > 9 => Err("--signers: at most 9 on one machine".into()),
            (n, None) => Err(format!("--signers {n} needs --threshold k (2 <= k <= {n})")),
            (n, Some(k)) if !(2..=n).contains(&k) => Err(format!("--threshold {k}: must be between 2 and {n}")),
            _ => Ok(()),
        }
    }
}

/// One process of the cluster; SIGTERM then SIGKILL when dropped.
struct Proc {
    name: String,
    child: Child,
}

impl Proc {
    fn stop(&mut self) {
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            return;
        }
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + WAIT;
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        eprintln!("{} did not stop within {WAIT:?}: killing it", self.name);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop();
    }
}

fn io(what: impl std::fmt::Display) -> impl FnOnce(std::io::Error) -> String {
    move |e| format!("{what}: {e}")
}

/// A listener on a free loopback port; the port is free again once it is dropped.
fn free_port() -> Result<TcpListener, String> {
    TcpListener::bind("127.0.0.1:0").map_err(io("picking a free port"))
}

/// `GET /_notary_server/health` answered 200.
fn healthy(http: &str) -> bool {
    let Ok(mut s) = TcpStream::connect(http) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let req = format!("GET /_notary_server/health HTTP/1.1\r\nHost: {http}\r\nConnection: close\r\n\r\n");
    if s.write_all(req.as_bytes()).is_err() {
        return false;
    }
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out.starts_with("HTTP/1.1 200")
}

fn wait_until(what: &str, procs: &mut [Proc], mut ready: impl FnMut() -> bool) -> Result<(), String> {
    let deadline = Instant::now() + WAIT;
    while !ready() {
        for p in procs.iter_mut() {
            if let Ok(Some(status)) = p.child.try_wait() {
                return Err(format!("{} exited ({status}) while waiting for {what}", p.name));
            }
        }
        if Instant::now() > deadline {
            return Err(format!("timed out after {WAIT:?} waiting for {what}"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

/// The cluster's certificate files.
struct Pki {
    ca: PathBuf,
    node: (PathBuf, PathBuf),
    /// One certificate per signer: `signer` alone, `signer-<j>` for threshold signers.
    signers: Vec<(PathBuf, PathBuf)>,
}

fn signer_name(options: &LocalClusterOptions, j: u16) -> String {
    if options.threshold.is_some() {
        format!("signer-{j}")
    } else {
        "signer".to_owned()
    }
}

/// The certificates: generated once, reused when the directory is reused.
fn pki(dir: &Path, options: &LocalClusterOptions) -> Result<Pki, String> {
    let pki_dir = dir.join("pki");
    let ca = pki_dir.join("seal-local-ca.crt");
    let pair = |name: &str| (pki_dir.join(format!("{name}.crt")), pki_dir.join(format!("{name}.key")));
    let names: Vec<String> = (1..=options.signers).map(|j| signer_name(options, j)).collect();
    if !ca.exists() {
        std::fs::create_dir_all(&pki_dir).map_err(io(pki_dir.display()))?;
        let pki = seal_signer::testing::TestPki::new(&pki_dir, "seal-local");
        pki.leaf(NODE_NAME);
        for name in &names {
            pki.leaf(name);
        }
    }
    let signers: Vec<(PathBuf, PathBuf)> = names.iter().map(|n| pair(n)).collect();
    if let Some((missing, _)) = signers.iter().find(|(c, _)| !c.exists()) {
        return Err(format!(
            "{} holds a cluster made with other signers ({} is missing): use another --dir",
            dir.display(),
            missing.display()
        ));
    }
    Ok(Pki {
        ca,
        node: pair(NODE_NAME),
        signers,
    })
}

/// The signer passphrase: generated once, kept in a file only its owner reads.
fn passphrase(dir: &Path) -> Result<String, String> {
    let path = dir.join("signer-passphrase");
    if let Ok(p) = std::fs::read_to_string(&path) {
        return Ok(p.trim().to_owned());
    }
    let p = hex::encode(rand::random::<[u8; 24]>());
    let mut f = std::fs::OpenOptions::new();
    f.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut f, 0o600);
    f.open(&path)
        .and_then(|mut file| file.write_all(p.as_bytes()))
        .map_err(io(path.display()))?;
    Ok(p)
}

/// The ports — the signers', then the nodes' HTTP, then their Raft —
/// fixed from `base`, or remembered from the first run with 0.
fn ports(dir: &Path, base: u16, signers: u16) -> Result<Vec<u16>, String> {
    let count = usize::from(signers) + 8;
    let path = dir.join("ports");
    if let Ok(text) = std::fs::read_to_string(&path) {
        let ports: Vec<u16> = text.split_whitespace().filter_map(|p| p.parse().ok()).collect();
        if ports.len() == count {
            return Ok(ports);
        }
        return Err(format!(
            "{} holds a cluster with {} ports, not {count}: use another --dir",
            dir.display(),
            ports.len()
        ));
    }
    let ports: Vec<u16> = if base == 0 {
        // Every listener is held until all ports are drawn: a port let go at once could be drawn
        // again for another of this cluster's listeners.
        let held = (0..count).map(|_| free_port()).collect::<Result<Vec<_>, _>>()?;
        held.iter()
            .map(|l| l.local_addr().map(|a| a.port()).map_err(io("picking a free port")))
            .collect::<Result<_, _>>()?
    } else {
        let at = |off: u16| {
            base.checked_add(off)
                .ok_or_else(|| format!("--base-port {base} leaves no room for the cluster's ports"))
        };
        let mut v = vec![at(0)?];
        for j in 2..=signers {
            v.push(at(20 + j)?);
        }
        for i in 1..=4 {
            v.push(at(i)?);
        }
        for i in 1..=4 {
            v.push(at(10 + i)?);
        }
        v
    };
    let text: Vec<String> = ports.iter().map(u16::to_string).collect();
    std::fs::write(&path, text.join(" ")).map_err(io(path.display()))?;
    Ok(ports)
}

fn log_file(path: &Path) -> Result<std::fs::File, String> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(io(path.display()))
}

/// Starts the cluster, prints it, and runs until SIGINT or SIGTERM.
pub fn run(options: &LocalClusterOptions) -> Result<(), String> {
    let dir = &options.dir;
    std::fs::create_dir_all(dir).map_err(io(dir.display()))?;
    let dir = dir.canonicalize().map_err(io(dir.display()))?;
    let exe = std::env::current_exe().map_err(io("locating seal-node"))?;
    let signer_bin = exe.with_file_name("seal-signer");
    if !signer_bin.exists() {
        return Err(format!(
            "{} is missing: build both binaries (cargo build --release --bins)",
            signer_bin.display()
        ));
    }
    let Pki {
        ca,
        node: (node_cert, node_key),
        signers: signer_certs,
    } = pki(&dir, options)?;
    let pass = passphrase(&dir)?;
    let n = usize::from(options.signers);
    let ports = ports(&dir, options.base_port, options.signers)?;
    let (signer_ports, http, raft) = (&ports[..n], &ports[n..n + 4], &ports[n + 4..n + 8]);
    let raft_addr = |i: usize| format!("127.0.0.1:{}", raft[i - 1]);
    let http_addr = |i: usize| format!("127.0.0.1:{}", http[i - 1]);
    let mut procs: Vec<Proc> = Vec::new();

    // The signers.
    let mut signer_logs = Vec::new();
    for (j, ((cert, key), port)) in (1..=options.signers).zip(signer_certs.iter().zip(signer_ports)) {
        let name = signer_name(options, j);
        let signer_dir = if options.threshold.is_some() {
            dir.join(&name)
        } else {
            dir.join("signer")
        };
        std::fs::create_dir_all(&signer_dir).map_err(io(signer_dir.display()))?;
        let mut config = serde_json::json!({
            "server": {"grpc_addr": format!("127.0.0.1:{port}"), "tls_cert_file": cert,
                       "tls_key_file": key, "client_ca_file": ca, "allowed_client_names": [NODE_NAME]},
            "storage": {"data_dir": signer_dir.join("data")},
        });
        if let Some(k) = options.threshold {
            let peers: Vec<serde_json::Value> = (1..=options.signers)
                .zip(signer_ports)
                .filter(|(p, _)| *p != j)
                .map(|(p, port)| {
                    serde_json::json!({"id": p, "addr": format!("localhost:{port}"), "name": signer_name(options, p)})
                })
                .collect();
            config["server"]["allowed_client_names"] = serde_json::json!([NODE_NAME, "signer-*"]);
            config["key_backend"] = serde_json::json!({"type": "threshold", "threshold": k, "self_id": j,
                                                       "peers": peers});
        }
        let path = signer_dir.join("signer.json");
        std::fs::write(&path, config.to_string()).map_err(io(path.display()))?;
        let log = signer_dir.join("signer.log");
        let mut child = Command::new(&signer_bin)
            .args(["serve", "--config"])
            .arg(&path)
            .env("SEAL_SIGNER_MAIN", &pass)
            .stdout(Stdio::piped())
            .stderr(log_file(&log)?)
            .spawn()
            .map_err(io(signer_bin.display()))?;
        let mut line = String::new();
        if let Some(out) = child.stdout.take() {
            let _ = BufReader::new(out).read_line(&mut line);
        }
        procs.push(Proc {
            name: format!("seal-signer {name}"),
            child,
        });
        if !line.contains("listening") {
            return Err(format!("seal-signer {name} did not start; see {}", log.display()));
        }
        signer_logs.push((name, *port, log));
    }
    let signer_list: Vec<serde_json::Value> = signer_ports
        .iter()
        .map(|port| serde_json::json!({"hostname": "localhost", "port": port}))
        .collect();
    // Threshold signers make Ed25519 keys only.
    let key_algorithm = if options.threshold.is_some() {
        "ed25519"
    } else {
        "ecdsa"
    };

    // Three voters and a learner.
    let bootstrap: Vec<serde_json::Value> = (1..=3)
        .map(|i| serde_json::json!({"id": i, "raft_addr": raft_addr(i)}))
        .collect();
    for i in 1..=4usize {
        let node_dir = dir.join(format!("node{i}"));
        std::fs::create_dir_all(&node_dir).map_err(io(node_dir.display()))?;
        let config = serde_json::json!({
            // A cluster to try Seal out on loopback: plain HTTP, no auth.
            "insecure": true,
            "server": {"http_addr": http_addr(i)},
            "trust_service": {"type": "remote", "signers": signer_list,
                              "tls_ca_file": ca, "tls_client_cert": node_cert, "tls_client_key": node_key,
                              "key_algorithm": key_algorithm},
            "storage": {"backend": "rocksdb", "data_dir": node_dir.join("data")},
            "raft": {"node_id": i, "addr": raft_addr(i), "tls_ca_file": ca, "tls_cert_file": node_cert,
                     "tls_key_file": node_key, "allowed_peer_names": [NODE_NAME],
                     "bootstrap": if i <= 3 { bootstrap.clone() } else { Vec::new() }},
        });
        let path = node_dir.join("config.json");
        std::fs::write(&path, config.to_string()).map_err(io(path.display()))?;
        let log = node_dir.join("node.log");
        let child = Command::new(&exe)
            .args(["serve", "--config"])
            .arg(&path)
            .stdout(log_file(&log)?)
            .stderr(log_file(&log)?)
            .spawn()
            .map_err(io(exe.display()))?;
        procs.push(Proc {
            name: format!("node {i}"),
            child,
        });
    }
    for i in 1..=3 {
        wait_until(&format!("node {i} to know a leader"), &mut procs, || {
            healthy(&http_addr(i))
        })?;
    }

    let tls = ClusterTls {
        ca_file: ca.clone(),
        cert_file: node_cert.clone(),
        key_file: node_key.clone(),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(io("starting the runtime"))?;
    let status = runtime.block_on(async {
        let admin = AdminClient::new(&raft_addr(1), &tls).map_err(|e| e.to_string())?;
        let status = admin.status().await.map_err(|e| e.to_string())?;
        if !status.members.iter().any(|m| m.id == 4) {
            admin.add_learner(4, &raft_addr(4)).await.map_err(|e| e.to_string())?;
        }
        Ok::<_, String>(())
    });
    status?;
    wait_until("the learner to catch up", &mut procs, || healthy(&http_addr(4)))?;

    println!("Seal local cluster in {}", dir.display());
    println!("{:<6} {:<8} {:<24} {:<22} log", "node", "role", "http", "raft");
    for i in 1..=4 {
        let role = if i <= 3 { "voter" } else { "learner" };
        println!(
            "{:<6} {:<8} {:<24} {:<22} {}",
            i,
            role,
            format!("http://{}", http_addr(i)),
            raft_addr(i),
            dir.join(format!("node{i}/node.log")).display()
        );
    }
    if let Some(k) = options.threshold {
        println!("signers: {k} of {} sign together (FROST threshold)", options.signers);
    }
    for (name, port, log) in &signer_logs {
        println!("{name} 127.0.0.1:{port} ({})", log.display());
    }
    println!(
        "cluster status: seal-node cluster status --addr {} --ca {} --cert {} --key {}",
        raft_addr(1),
        ca.display(),
        node_cert.display(),
        node_key.display()
    );
    println!("ready; Ctrl-C stops the cluster");
    let _ = std::io::stdout().flush();

    runtime
        .block_on(seal_signer::server::shutdown_signal())
        .map_err(io("waiting for a signal"))?;
    println!("stopping");
    // The learner, the voters, then the signers.
    while let Some(mut p) = procs.pop() {
        p.stop();
    }
    println!("stopped");
    Ok(())
}
