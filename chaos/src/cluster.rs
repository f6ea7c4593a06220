//! The cluster under test: real `seal-node` voters and learners and one
//! `seal-signer`, on loopback, each with its own data directory, all under
//! one run directory, with certificates from a throw-away CA.
//!
//! Every connection between processes goes through a [`FaultProxy`]: each
//! node's Raft (and admin, and write-forwarding) port has one in front of
//! it, and each node reaches the signer through a proxy of its own. Node
//! `i` connects to its peers from `127.0.0.<10+i>` (`raft.source_ip`), so
//! the proxies can cut any link in either direction.
//!
//! With fault switches (a seal-node built with the `fault-injection`
//! feature), each node reads `faults.json` in its directory: clock offset,
//! fsync delay and the deliberately broken acknowledge-before-commit.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use seal_testkit::process::{Process, START_WAIT};
use seal_testkit::proxy::FaultProxy;
use serde::{Deserialize, Serialize};

use crate::history::NodeInfo;

pub use seal_testkit::proxy::source_ip;

/// The certificate name every node presents.
const NODE_NAME: &str = "seal-node";

/// The passphrase of the signer's key store (a throw-away cluster's).
const SIGNER_PASSPHRASE: &str = "seal-chaos throw-away signer passphrase";

/// What to start.
#[derive(Debug, Clone)]
pub struct ClusterSpec {
    /// Everything goes under this directory.
    pub dir: PathBuf,
    /// The `seal-node` binary (a `fault-injection` build for [`ClusterSpec::fault_switches`]).
    pub node_bin: PathBuf,
    /// The `seal-signer` binary.
    pub signer_bin: PathBuf,
    /// Voters: 3 or 5.
    pub voters: usize,
    /// Learners (read replicas).
    pub learners: usize,
    /// The nodes' `raft.max_staleness_ms`.
    pub max_staleness_ms: u64,
    /// The nodes' `timestamps.timestamp_lifetime_secs`.
    pub timestamp_lifetime_secs: u64,
    /// Start the nodes with `SEAL_FAULTS_FILE` (needs the `fault-injection` build).
    pub fault_switches: bool,
    /// Signers: 1 (software keys), or n ≥ 2 holding the keys as FROST shares, `threshold` of
    /// which sign together; every node lists them all.
    pub signers: u16,
    /// k of a threshold signer cluster (ignored with one signer).
    pub threshold: u16,
}

/// The test-only switches of a node built with `fault-injection`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeFaults {
    /// Added to the node's wall clock.
    pub clock_offset_ms: i64,
    /// Slept before every synced write.
    pub fsync_delay_ms: u64,
    /// Answer a publish before its Raft entry commits (a deliberately broken node).
    pub ack_before_commit: bool,
}

/// Voter or learner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Votes and can lead.
    Voter,
    /// Replicates and serves reads only.
    Learner,
}

/// One node of the cluster.
pub struct Member {
    /// Raft node id (1-based).
    pub id: u64,
    /// Voter or learner.
    pub role: Role,
    /// Its HTTP address.
    pub http: String,
    /// Its real Raft (and admin) address.
    pub raft: String,
    /// Where its peers reach it.
    pub raft_proxy: FaultProxy,
    /// Where it reaches each signer, in signer order.
    pub signer_proxies: Vec<FaultProxy>,
    /// The address it connects to its peers from.
    pub source_ip: IpAddr,
    /// Its directory (config, data, log, faults file).
    pub dir: PathBuf,
    process: Option<Process>,
}

/// One signer process.
struct SignerProc {
    /// Where the other signers reach it (threshold peers); nodes have proxies of their own.
    front: FaultProxy,
    config: PathBuf,
    process: Option<Process>,
}

/// A running cluster; every process is killed when it is dropped.
pub struct Cluster {
    /// The nodes, voters first, in id order.
    pub members: Vec<Member>,
    signers: Vec<SignerProc>,
    spec: ClusterSpec,
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

pub(crate) fn io(what: impl std::fmt::Display) -> impl FnOnce(std::io::Error) -> String {
    move |e| format!("{what}: {e}")
}

/// A free loopback port below the ephemeral range, so that no outgoing
/// connection takes it before the process meant for it binds it.
fn free_port() -> Result<u16, String> {
    Ok(seal_testkit::free_port())
}

/// `kill -9` of a process, if there is one.
fn kill(process: &mut Option<Process>) {
    if let Some(p) = process {
        p.kill();
    }
}

/// Whether a process is gone (never started, killed, or exited).
fn gone(process: &mut Option<Process>) -> bool {
    process.as_mut().is_none_or(Process::is_gone)
}

impl Cluster {
    /// Starts the signer, the voters (formed from `raft.bootstrap`) and the learners, and
    /// waits until every node serves.
    pub fn start(spec: &ClusterSpec) -> Result<Cluster, String> {
        if !(spec.voters == 3 || spec.voters == 5) {
            return Err(format!("a cluster has 3 or 5 voters, not {}", spec.voters));
        }
        for b in [&spec.node_bin, &spec.signer_bin] {
            if !b.exists() {
                return Err(format!(
                    "{} is missing (see docs/chaos.md for how to build it)",
                    b.display()
                ));
            }
        }
        std::fs::create_dir_all(&spec.dir).map_err(io(spec.dir.display()))?;
        let pki_dir = spec.dir.join("pki");
        std::fs::create_dir_all(&pki_dir).map_err(io(pki_dir.display()))?;
        let pki = seal_testkit::pki::TestPki::new(&pki_dir, "seal-chaos");
        let (cert, key) = pki.leaf(NODE_NAME);
        let ca = pki.ca_file();

        // The signers, on fixed ports so that they can be restarted.
        let count = spec.signers.max(1);
        let threshold = count > 1;
        let addrs: Vec<String> = (0..count)
            .map(|_| free_port().map(|p| format!("127.0.0.1:{p}")))
            .collect::<Result<_, _>>()?;
        let fronts: Vec<FaultProxy> = addrs
            .iter()
            .map(|a| FaultProxy::start("127.0.0.1:0", a).map_err(io("starting a proxy")))
            .collect::<Result<_, _>>()?;
        let front_ports: Vec<String> = fronts.iter().map(|f| port_of(&f.addr)).collect();
        let name = |j: u16| {
            if threshold {
                format!("signer-{j}")
            } else {
                "signer".to_owned()
            }
        };
        let mut signers = Vec::new();
        for (j, (addr, front)) in (1..=count).zip(addrs.iter().zip(fronts)) {
            let (signer_cert, signer_key) = pki.leaf(&name(j));
            let signer_dir = if threshold {
                spec.dir.join(name(j))
            } else {
                spec.dir.join("signer")
            };
            std::fs::create_dir_all(&signer_dir).map_err(io(signer_dir.display()))?;
            let signer_config = signer_dir.join("signer.json");
            let mut config = serde_json::json!({
                "server": {"grpc_addr": addr, "tls_cert_file": signer_cert, "tls_key_file": signer_key,
                           "client_ca_file": ca, "allowed_client_names": [NODE_NAME]},
                "storage": {"data_dir": signer_dir.join("data")},
            });
            if threshold {
                config["server"]["allowed_client_names"] = serde_json::json!([NODE_NAME, "signer-*"]);
                config["key_backend"] = serde_json::json!({
                    "type": "threshold", "threshold": spec.threshold, "self_id": j, "peer_timeout_ms": 1000,
                    "peers": (1..=count).filter(|p| *p != j).map(|p| serde_json::json!({
                        "id": p, "addr": format!("localhost:{}", front_ports[usize::from(p) - 1]), "name": name(p)
                    })).collect::<Vec<_>>(),
                });
            }
            std::fs::write(&signer_config, config.to_string()).map_err(io(signer_config.display()))?;
            signers.push(SignerProc {
                front,
                config: signer_config,
                process: None,
            });
        }
        for signer in &mut signers {
            signer.start(&spec.signer_bin)?;
        }

        let n = spec.voters + spec.learners;
        let mut members = Vec::with_capacity(n);
        for i in 1..=n as u64 {
            let raft = format!("127.0.0.1:{}", free_port()?);
            let http = format!("127.0.0.1:{}", free_port()?);
            let raft_proxy = FaultProxy::start("127.0.0.1:0", &raft).map_err(io("starting a proxy"))?;
            let signer_proxies: Vec<FaultProxy> = addrs
                .iter()
                .map(|a| FaultProxy::start("127.0.0.1:0", a).map_err(io("starting a proxy")))
                .collect::<Result<_, _>>()?;
            members.push(Member {
                id: i,
                role: if i as usize <= spec.voters {
                    Role::Voter
                } else {
                    Role::Learner
                },
                http,
                raft,
                raft_proxy,
                signer_proxies,
                source_ip: source_ip(i),
                dir: spec.dir.join(format!("node{i}")),
                process: None,
            });
        }
        // A proxy takes a port picked free now: one could be a node's port picked (and
        // released) before it. Refuse such a draw rather than have two listeners fight.
        let mut taken: Vec<&str> = members
            .iter()
            .flat_map(|m| [m.raft.as_str(), m.http.as_str()])
            .collect();
        taken.extend(addrs.iter().map(String::as_str));
        taken.extend(signers.iter().map(|s| s.front.addr.as_str()));
        for m in &members {
            for p in std::iter::once(&m.raft_proxy.addr).chain(m.signer_proxies.iter().map(|p| &p.addr)) {
                if taken.contains(&p.as_str()) {
                    return Err(format!("port {p} was drawn twice; start the run again"));
                }
            }
        }
        let bootstrap: Vec<serde_json::Value> = members
            .iter()
            .filter(|m| m.role == Role::Voter)
            .map(|m| serde_json::json!({"id": m.id, "raft_addr": m.raft_proxy.addr}))
            .collect();
        let mut cluster = Cluster {
            members,
            signers,
            spec: spec.clone(),
            ca,
            cert,
            key,
        };
        for i in 0..cluster.members.len() {
            let m = &cluster.members[i];
            std::fs::create_dir_all(&m.dir).map_err(io(m.dir.display()))?;
            let signer_list: Vec<serde_json::Value> = m
                .signer_proxies
                .iter()
                .map(|p| serde_json::json!({"hostname": "localhost", "port": port_of(&p.addr)}))
                .collect();
            let config = serde_json::json!({
                "insecure": true,
                "server": {"http_addr": m.http},
                "trust_service": {"type": "remote", "signers": signer_list,
                                  "tls_ca_file": cluster.ca, "tls_client_cert": cluster.cert,
                                  "tls_client_key": cluster.key, "key_algorithm": "ed25519"},
                "storage": {"backend": "rocksdb", "data_dir": m.dir.join("data")},
                "timestamps": {"timestamp_lifetime_secs": spec.timestamp_lifetime_secs},
                "raft": {"node_id": m.id, "addr": m.raft, "source_ip": m.source_ip.to_string(),
                         "max_staleness_ms": spec.max_staleness_ms,
                         "tls_ca_file": cluster.ca, "tls_cert_file": cluster.cert, "tls_key_file": cluster.key,
                         "allowed_peer_names": [NODE_NAME],
                         "bootstrap": if m.role == Role::Voter { bootstrap.clone() } else { Vec::new() }},
            });
            let mut launch = seal_testkit::process::node(&spec.node_bin, &m.dir, &config, "info")?;
            if spec.fault_switches {
                cluster.set_faults(m.id, NodeFaults::default())?;
                launch = launch.env("SEAL_FAULTS_FILE", m.dir.join("faults.json"));
            }
            cluster.members[i].process = Some(launch.start()?);
        }
        for i in 0..spec.voters {
            cluster.wait_serving(i)?;
        }
        for i in spec.voters..n {
            let (id, proxy) = (cluster.members[i].id, cluster.members[i].raft_proxy.addr.clone());
            let voter = cluster.members[0].raft.clone();
            cluster.admin(&voter, &["add-learner", "--id", &id.to_string(), "--raft-addr", &proxy])?;
            cluster.wait_serving(i)?;
        }
        Ok(cluster)
    }

    /// Starts member `index` again (same config, data and log) if it is not running.
    fn respawn(&mut self, index: usize) -> Result<(), String> {
        let m = &mut self.members[index];
        let id = m.id;
        let p = m
            .process
            .as_mut()
            .ok_or_else(|| format!("node {id} was never started"))?;
        if p.is_gone() {
            p.restart()?;
        }
        Ok(())
    }

    /// Waits until member `index` answers its health check (it knows a leader and the signer).
    fn wait_serving(&mut self, index: usize) -> Result<(), String> {
        let m = &mut self.members[index];
        let (id, http) = (m.id, m.http.clone());
        let p = m.process.as_mut().ok_or_else(|| format!("node {id} is not running"))?;
        p.wait_healthy(&http, START_WAIT).map_err(|e| format!("node {id}: {e}"))
    }

    fn index(&self, id: u64) -> Result<usize, String> {
        self.members
            .iter()
            .position(|m| m.id == id)
            .ok_or_else(|| format!("no node {id}"))
    }

    /// The nodes as a history records them.
    pub fn node_infos(&self) -> Vec<NodeInfo> {
        self.members
            .iter()
            .map(|m| NodeInfo {
                id: m.id,
                http: m.http.clone(),
                role: match m.role {
                    Role::Voter => "voter".into(),
                    Role::Learner => "learner".into(),
                },
            })
            .collect()
    }

    /// The voters' ids.
    pub fn voter_ids(&self) -> Vec<u64> {
        self.members
            .iter()
            .filter(|m| m.role == Role::Voter)
            .map(|m| m.id)
            .collect()
    }

    /// Every node's id.
    pub fn ids(&self) -> Vec<u64> {
        self.members.iter().map(|m| m.id).collect()
    }

    /// `kill -9` node `id`.
    pub fn kill(&mut self, id: u64) -> Result<(), String> {
        let i = self.index(id)?;
        kill(&mut self.members[i].process);
        Ok(())
    }

    /// Starts node `id` again (same config and data) if it is not running.
    pub fn restart(&mut self, id: u64) -> Result<(), String> {
        let i = self.index(id)?;
        self.respawn(i)
    }

    /// SIGSTOP node `id`.
    pub fn pause(&mut self, id: u64) -> Result<(), String> {
        let i = self.index(id)?;
        if let Some(p) = &mut self.members[i].process {
            p.pause();
        }
        Ok(())
    }

    /// SIGCONT node `id`.
    pub fn resume(&mut self, id: u64) -> Result<(), String> {
        let i = self.index(id)?;
        if let Some(p) = &mut self.members[i].process {
            p.resume();
        }
        Ok(())
    }

    /// How many signers the cluster has.
    pub fn signer_count(&self) -> u16 {
        u16::try_from(self.signers.len()).unwrap_or(u16::MAX)
    }

    fn signer_proc(&mut self, j: u16) -> Option<&mut SignerProc> {
        self.signers.get_mut(usize::from(j).checked_sub(1)?)
    }

    /// `kill -9` signer `j` (1-based).
    pub fn kill_signer(&mut self, j: u16) {
        if let Some(s) = self.signer_proc(j) {
            kill(&mut s.process);
        }
    }

    /// Starts every signer that is not running.
    pub fn restart_signers(&mut self) -> Result<(), String> {
        for s in &mut self.signers {
            if gone(&mut s.process) {
                s.start(&self.spec.signer_bin)?;
            }
        }
        Ok(())
    }

    /// SIGSTOP signer `j`.
    pub fn pause_signer(&mut self, j: u16) {
        if let Some(p) = self.signer_proc(j).and_then(|s| s.process.as_mut()) {
            p.pause();
        }
    }

    /// SIGCONT every paused signer.
    pub fn resume_signers(&mut self) {
        for p in self.signers.iter_mut().filter_map(|s| s.process.as_mut()) {
            p.resume();
        }
    }

    /// Cuts signer `j` off from every node and every other signer.
    pub fn partition_signer(&self, j: u16) {
        let Some(i) = usize::from(j).checked_sub(1) else { return };
        if let Some(s) = self.signers.get(i) {
            s.front.block_all();
        }
        for m in &self.members {
            if let Some(p) = m.signer_proxies.get(i) {
                p.block_all();
            }
        }
    }

    fn member(&self, id: u64) -> Result<&Member, String> {
        self.index(id).map(|i| &self.members[i])
    }

    /// Stops traffic from node `from` to node `to` (`to` no longer hears `from`'s calls).
    pub fn cut_one_way(&self, from: u64, to: u64) -> Result<(), String> {
        let ip = self.member(from)?.source_ip;
        self.member(to)?.raft_proxy.block_from(ip);
        Ok(())
    }

    /// Cuts every link between the two groups, both ways.
    pub fn split(&self, a: &[u64], b: &[u64]) -> Result<(), String> {
        for &x in a {
            for &y in b {
                self.cut_one_way(x, y)?;
                self.cut_one_way(y, x)?;
            }
        }
        Ok(())
    }

    /// Cuts node `id` off from the signer.
    pub fn cut_signer(&self, id: u64) -> Result<(), String> {
        for p in &self.member(id)?.signer_proxies {
            p.block_all();
        }
        Ok(())
    }

    /// Delays (and, with `loss`, cuts at random) everything arriving at node `id` from its peers.
    pub fn degrade_link(&self, id: u64, delay: Duration, loss: f64) -> Result<(), String> {
        let p = &self.member(id)?.raft_proxy;
        p.set_delay(delay);
        p.set_loss(loss);
        Ok(())
    }

    /// Undoes every network fault.
    pub fn heal_network(&self) {
        for s in &self.signers {
            s.front.heal();
        }
        for m in &self.members {
            m.raft_proxy.heal();
            for p in &m.signer_proxies {
                p.heal();
            }
        }
    }

    /// Writes node `id`'s fault switches.
    pub fn set_faults(&self, id: u64, faults: NodeFaults) -> Result<(), String> {
        let m = self.member(id)?;
        let path = m.dir.join("faults.json");
        let tmp = m.dir.join("faults.json.tmp");
        let json = serde_json::to_vec(&faults).map_err(|e| e.to_string())?;
        std::fs::write(&tmp, json).map_err(io(tmp.display()))?;
        std::fs::rename(&tmp, &path).map_err(io(path.display()))
    }

    /// Resumes every paused process and restarts every stopped one: the end of every fault.
    pub fn heal_processes(&mut self) -> Result<(), String> {
        for i in 0..self.members.len() {
            if let Some(p) = &mut self.members[i].process {
                p.resume();
            }
            self.respawn(i)?;
        }
        self.resume_signers();
        self.restart_signers()
    }

    /// Runs `seal-node cluster <args>` against the admin service at `raft_addr`.
    pub fn admin(&self, raft_addr: &str, args: &[&str]) -> Result<String, String> {
        let tls = (self.ca.as_path(), self.cert.as_path(), self.key.as_path());
        let out = seal_testkit::process::cluster_admin(&self.spec.node_bin, raft_addr, tls, args)
            .map_err(io("running seal-node cluster"))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
        }
    }

    /// `cluster status` of node `id` (asked directly, not through its proxy) as
    /// `field: value` pairs; `digest` adds the state digest.
    pub fn status(&self, id: u64, digest: bool) -> Result<BTreeMap<String, String>, String> {
        let m = self.member(id)?;
        let args: &[&str] = if digest { &["status", "--digest"] } else { &["status"] };
        let out = self.admin(&m.raft, args)?;
        Ok(out
            .lines()
            .filter_map(|l| l.split_once(": "))
            .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
            .collect())
    }

    /// The leader's id, as the first node that answers knows it.
    pub fn leader(&self) -> Option<u64> {
        self.members.iter().find_map(|m| {
            let s = self.status(m.id, false).ok()?;
            s.get("leader")?.strip_prefix("node ")?.parse().ok()
        })
    }

    /// Kills every process, nodes first.
    pub fn stop(&mut self) {
        for m in &mut self.members {
            kill(&mut m.process);
        }
        for s in &mut self.signers {
            kill(&mut s.process);
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop();
    }
}

impl SignerProc {
    /// Starts (or restarts) it and waits until it listens.
    fn start(&mut self, bin: &Path) -> Result<(), String> {
        let process = match &mut self.process {
            Some(p) => {
                p.restart()?;
                p
            }
            None => self
                .process
                .insert(seal_testkit::process::signer(bin, &self.config, SIGNER_PASSPHRASE).start()?),
        };
        if let Err(e) = process.wait_listening(START_WAIT) {
            process.kill();
            return Err(format!("seal-signer did not start: {e}"));
        }
        Ok(())
    }
}

/// The port of a `host:port` address.
fn port_of(addr: &str) -> String {
    addr.rsplit(':').next().unwrap_or_default().to_owned()
}
