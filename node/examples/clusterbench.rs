//! Cluster benchmarks (docs/benchmarks.md), each on a fresh `seal-node local-cluster` (three
//! voters and a learner on loopback, one seal-signer, default Raft timing) started from the
//! release binaries next to this example.
//!
//! * `clusterbench failover <runs>`: per run, publishes a collection, then kill -9 the leader
//!   and publishes its next version through a surviving follower, retrying until it is
//!   acknowledged; prints the time from the kill to that acknowledgement, then the median.

#[path = "../tests/common/http.rs"]
mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use seal_raft::{AdminClient, ClusterTls};
use seal_tuf::testing::TestRepo;
use seal_tuf::PublicKey;
use time::OffsetDateTime;

/// A running `seal-node local-cluster`.
struct LocalCluster {
    child: Child,
    /// Its standard output, kept open so that what it prints on stopping does not hit a closed
    /// pipe.
    _out: std::io::Lines<BufReader<std::process::ChildStdout>>,
    dir: PathBuf,
    /// HTTP address of node `i + 1`.
    http: Vec<String>,
    /// Raft address of node `i + 1`.
    raft: Vec<String>,
    tls: ClusterTls,
}

fn release_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    exe.parent()
        .and_then(Path::parent)
        .expect("target/release")
        .to_path_buf()
}

impl LocalCluster {
    fn start(dir: &Path) -> LocalCluster {
        let bin = release_dir().join("seal-node");
        let mut child = Command::new(&bin)
            .args(["local-cluster", "--dir"])
            .arg(dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("{}: {e} (cargo build --release --bins)", bin.display()));
        let mut out = BufReader::new(child.stdout.take().unwrap()).lines();
        let (mut http, mut raft, mut tls) = (Vec::new(), Vec::new(), None);
        for line in out.by_ref() {
            let line = line.expect("local-cluster output");
            let words: Vec<&str> = line.split_whitespace().collect();
            if words.len() >= 4 && words[0].parse::<u64>().is_ok() {
                http.push(words[2].trim_start_matches("http://").to_owned());
                raft.push(words[3].to_owned());
            }
            if let Some(cmd) = line.strip_prefix("cluster status: ") {
                let arg = |flag: &str| {
                    let words: Vec<&str> = cmd.split_whitespace().collect();
                    let i = words.iter().position(|w| *w == flag).expect(flag);
                    PathBuf::from(words[i + 1])
                };
                tls = Some(ClusterTls {
                    ca_file: arg("--ca"),
                    cert_file: arg("--cert"),
                    key_file: arg("--key"),
                });
            }
            if line.starts_with("ready") {
                break;
            }
        }
        assert_eq!(http.len(), 4, "local-cluster did not start");
        LocalCluster {
            child,
            _out: out,
            dir: dir.to_owned(),
            http,
            raft,
            tls: tls.expect("status line"),
        }
    }

    /// The leader's id, asked of node `ask`.
    fn leader(&self, ask: usize) -> Option<u64> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let admin = AdminClient::new(&self.raft[ask], &self.tls).ok()?;
            admin.status().await.ok()?.leader_id
        })
    }

    /// The process id of node `id`, found by its config path.
    fn pid_of(&self, id: u64) -> u32 {
        let config = self.dir.join(format!("node{id}/config.json"));
        let needle = config.to_string_lossy().into_owned();
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
                continue;
            };
            if String::from_utf8_lossy(&cmdline).split('\0').any(|a| a == needle) {
                return pid;
            }
        }
        panic!("no process for node {id}");
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A collection published through `addr`, and its next targets version.
fn seed(addr: &str, gun: &str) -> (TestRepo, Vec<u8>, u64) {
    let key = common::request(addr, "GET", &format!("/v2/{gun}/_trust/tuf/timestamp.key"), &[], &[]);
    assert_eq!(key.status, 200, "timestamp.key: {}", key.text());
    let mut repo = TestRepo::new(gun, OffsetDateTime::now_utc());
    repo.server_timestamp = Some(PublicKey::from_json(&key.body).expect("key"));
    let first = repo.first_publish(&[("v1", b"release 1\n")]);
    let root = first[0].1.clone();
    let r = publish(addr, gun, &first).expect("seed publish");
    assert_eq!(r.status, 200, "publish: {}", r.text());
    (repo, root, 3)
}

fn publish(addr: &str, gun: &str, files: &[(String, Vec<u8>)]) -> Result<common::Response, common::HttpError> {
    let (ct, body) = common::multipart(files);
    common::try_request(
        addr,
        "POST",
        &format!("/v2/{gun}/_trust/tuf/"),
        &[("Content-Type", &ct)],
        &body,
    )
}

/// One failover: kill -9 the leader, then the time until a publish through a survivor is
/// acknowledged.
fn failover_once(run: usize) -> Duration {
    let dir = tempfile::tempdir().unwrap();
    let cluster = LocalCluster::start(dir.path());
    let leader = wait_for("a leader", || cluster.leader(0)) as usize;
    let survivors: Vec<usize> = (1..=3).filter(|i| *i != leader).collect();
    let via = &cluster.http[survivors[0] - 1];
    let gun = format!("bench.example.com/failover/{run}");
    let (repo, root, mut version) = seed(via, &gun);
    // Let the cluster settle: the seed's entries replicated, heartbeats flowing.
    std::thread::sleep(Duration::from_secs(1));

    let pid = cluster.pid_of(leader as u64);
    let killed = Instant::now();
    let status = Command::new("kill").args(["-KILL", &pid.to_string()]).status().unwrap();
    assert!(status.success(), "kill -9 {pid}");
    let mut attempts = 0;
    let elapsed = loop {
        attempts += 1;
        let content = format!("release {version}\n");
        let t = repo.targets_file(version, &[("v1", content.as_bytes())]);
        let s = repo.snapshot_file(version, &[("root", &root), ("targets", &t)]);
        let addr = &cluster.http[survivors[attempts % 2] - 1];
        match publish(addr, &gun, &[("targets".to_owned(), t), ("snapshot".to_owned(), s)]) {
            Ok(r) if r.status == 200 => break killed.elapsed(),
            // An earlier attempt whose answer was lost landed after all.
            Ok(r) if r.status == 400 && r.error_code() == "VERSION" => version += 1,
            _ => std::thread::sleep(Duration::from_millis(5)),
        }
        assert!(
            killed.elapsed() < Duration::from_secs(30),
            "no publish acknowledged after the kill"
        );
    };
    println!(
        "run {run}: leader node {leader} killed, publish acknowledged after {:.0} ms ({attempts} attempts)",
        elapsed.as_secs_f64() * 1000.0
    );
    elapsed
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("failover") => {
            let runs: usize = args.get(2).and_then(|r| r.parse().ok()).unwrap_or(10);
            let mut times: Vec<Duration> = (1..=runs).map(failover_once).collect();
            times.sort();
            let ms = |d: Duration| d.as_secs_f64() * 1000.0;
            let median = (ms(times[(runs - 1) / 2]) + ms(times[runs / 2])) / 2.0;
            println!(
                "failover over {runs} runs: median {median:.0} ms, min {:.0} ms, max {:.0} ms",
                ms(times[0]),
                ms(times[times.len() - 1])
            );
        }
        _ => {
            eprintln!("usage: clusterbench failover <runs>");
            std::process::exit(2);
        }
    }
}
