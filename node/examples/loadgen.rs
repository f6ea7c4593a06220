//! Load tool for the node benchmarks (docs/benchmarks.md).
//!
//! * `loadgen seed <addr> <gun>` publishes a collection (root, targets with
//!   20 targets, snapshot; the server's timestamp) and prints the paths to
//!   read: `timestamp.json`, `targets.json` and the checksum-named snapshot.
//! * `loadgen publish <addr> <guns> <threads> <seconds> [max-rate]` seeds
//!   `guns` collections, signs enough new targets+snapshot versions for
//!   `max-rate` publishes/s (default 2,500) before the clock starts, then
//!   publishes them from `threads` threads for `seconds`, and prints
//!   publishes/s and latency percentiles. Each publish is a new HTTP
//!   connection, as Notary's CLI does. Signing up front keeps the load
//!   generator's own ECDSA signing off the CPUs the cluster runs on while it
//!   is measured; a collection that runs out signs its next versions inline,
//!   and the summary says how many.
//! * `loadgen new <addr> <threads> <seconds> [max]` makes `max` (default
//!   5,000) collections' client keys before the clock starts, then from
//!   `threads` threads, each a new HTTP connection per request, creates new
//!   collections for `seconds` (the first publish of a new GUN: GET its
//!   `timestamp.key`, which makes the server's timestamp key, then POST root,
//!   targets and snapshot), and prints new collections/s and latency
//!   percentiles of the pair.

#[path = "../tests/common/http.rs"]
mod common;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use seal_tuf::testing::TestRepo;
use seal_tuf::PublicKey;
use time::OffsetDateTime;

fn seed(addr: &str, gun: &str) -> TestRepo {
    let mut repo = TestRepo::new(gun, OffsetDateTime::now_utc());
    first_publish(addr, &mut repo);
    repo
}

/// Creates `repo`'s collection on the server: its timestamp key, then its
/// first publish.
fn first_publish(addr: &str, repo: &mut TestRepo) {
    let gun = repo.gun.clone();
    let key = common::request(addr, "GET", &format!("/v2/{gun}/_trust/tuf/timestamp.key"), &[], &[]);
    assert_eq!(key.status, 200, "timestamp.key: {}", key.text());
    repo.server_timestamp = Some(PublicKey::from_json(&key.body).expect("key"));
    let contents: Vec<(String, Vec<u8>)> = (0..20)
        .map(|i| (format!("v{i}.0.0"), format!("release {i}").into_bytes()))
        .collect();
    let refs: Vec<(&str, &[u8])> = contents.iter().map(|(n, b)| (n.as_str(), b.as_slice())).collect();
    let (ct, body) = common::multipart(&repo.first_publish(&refs));
    let r = common::request(
        addr,
        "POST",
        &format!("/v2/{gun}/_trust/tuf/"),
        &[("Content-Type", &ct)],
        &body,
    );
    assert_eq!(r.status, 200, "publish: {}", r.text());
}

/// One benchmarked collection: its keys, current targets version, root bytes, and the next
/// publishes, signed ahead (multipart content type and body).
struct Collection {
    repo: TestRepo,
    version: u64,
    root: Vec<u8>,
    ready: VecDeque<(String, Vec<u8>)>,
}

impl Collection {
    /// The publish of targets+snapshot version `version`.
    fn publish_body(&self, version: u64) -> (String, Vec<u8>) {
        let t = self
            .repo
            .targets_file(version, &[("v", format!("{version}").as_bytes())]);
        let s = self
            .repo
            .snapshot_file(version, &[("root", &self.root), ("targets", &t)]);
        common::multipart(&[("targets".into(), t), ("snapshot".into(), s)])
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("seed") => {
            let (addr, gun) = (&args[2], &args[3]);
            seed(addr, gun);
            let ts = common::request(addr, "GET", &format!("/v2/{gun}/_trust/tuf/timestamp.json"), &[], &[]);
            let f = seal_tuf::SignedFile::parse("timestamp", ts.body).expect("timestamp");
            let t = seal_tuf::Timestamp::from_signed(f.signed()).expect("timestamp");
            let sum = t.snapshot_meta().and_then(|m| m.sha256_hex()).expect("snapshot sum");
            println!("/v2/{gun}/_trust/tuf/timestamp.json");
            println!("/v2/{gun}/_trust/tuf/targets.json");
            println!("/v2/{gun}/_trust/tuf/snapshot.{sum}.json");
        }
        Some("publish") => {
            let addr = args[2].clone();
            let guns: usize = args[3].parse().expect("guns");
            let threads: usize = args[4].parse().expect("threads");
            let secs: u64 = args[5].parse().expect("seconds");
            let max_rate: u64 = args.get(6).map_or(2_500, |r| r.parse().expect("max-rate"));
            let prefix = format!("bench.example.com/{}", std::process::id());
            let repos: Vec<Arc<Mutex<Collection>>> = (0..guns)
                .map(|i| {
                    let gun = format!("{prefix}/g{i}");
                    let repo = seed(&addr, &gun);
                    let root = common::request(&addr, "GET", &format!("/v2/{gun}/_trust/tuf/root.json"), &[], &[]).body;
                    Arc::new(Mutex::new(Collection {
                        repo,
                        version: 2,
                        root,
                        ready: VecDeque::new(),
                    }))
                })
                .collect();
            let per_gun = (max_rate * secs).div_ceil(guns as u64);
            let signing = Instant::now();
            std::thread::scope(|scope| {
                for chunk in repos.chunks(guns.div_ceil(threads.max(1))) {
                    scope.spawn(move || {
                        for c in chunk {
                            let mut c = c.lock().expect("lock");
                            let ready = (c.version + 1..=c.version + per_gun)
                                .map(|v| c.publish_body(v))
                                .collect();
                            c.ready = ready;
                        }
                    });
                }
            });
            eprintln!(
                "signed {} publishes ahead in {:.1} s",
                per_gun * guns as u64,
                signing.elapsed().as_secs_f64()
            );
            let inline = Arc::new(AtomicU64::new(0));
            let repos = Arc::new(repos);
            let next = Arc::new(AtomicU64::new(0));
            let deadline = Instant::now() + Duration::from_secs(secs);
            let handles: Vec<_> = (0..threads)
                .map(|_| {
                    let (repos, next, addr, inline) = (repos.clone(), next.clone(), addr.clone(), inline.clone());
                    std::thread::spawn(move || {
                        let mut lat = Vec::new();
                        while Instant::now() < deadline {
                            let i = next.fetch_add(1, Ordering::Relaxed) as usize % repos.len();
                            // One publish at a time per GUN: versions are per collection.
                            let mut g = repos[i].lock().expect("lock");
                            let version = g.version + 1;
                            let (ct, body) = match g.ready.pop_front() {
                                Some(ready) => ready,
                                None => {
                                    inline.fetch_add(1, Ordering::Relaxed);
                                    g.publish_body(version)
                                }
                            };
                            let path = format!("/v2/{}/_trust/tuf/", g.repo.gun);
                            let start = Instant::now();
                            let r = common::request(&addr, "POST", &path, &[("Content-Type", &ct)], &body);
                            lat.push(start.elapsed());
                            assert_eq!(r.status, 200, "publish: {}", r.text());
                            g.version = version;
                        }
                        lat
                    })
                })
                .collect();
            let started = Instant::now();
            let mut all: Vec<Duration> = handles.into_iter().flat_map(|h| h.join().expect("thread")).collect();
            let elapsed = started.elapsed().as_secs_f64();
            all.sort();
            println!(
                "publishes: {} in {:.1} s = {:.1}/s; latency p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms ({} GUNs, {} threads, {} signed inline)",
                all.len(),
                elapsed,
                all.len() as f64 / elapsed,
                percentile(&all, 0.50).as_secs_f64() * 1e3,
                percentile(&all, 0.99).as_secs_f64() * 1e3,
                all.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
                guns,
                threads,
                inline.load(Ordering::Relaxed)
            );
        }
        Some("new") => {
            let addr = args[2].clone();
            let threads: usize = args[3].parse().expect("threads");
            let secs: u64 = args[4].parse().expect("seconds");
            let max: usize = args.get(5).map_or(5_000, |r| r.parse().expect("max"));
            let prefix = format!("new.example.com/{}", std::process::id());
            let now = OffsetDateTime::now_utc();
            let made = Instant::now();
            let repos: Vec<Mutex<Option<TestRepo>>> = (0..max)
                .map(|i| Mutex::new(Some(TestRepo::new(&format!("{prefix}/g{i}"), now))))
                .collect();
            eprintln!("made {max} collections' keys in {:.1} s", made.elapsed().as_secs_f64());
            let (repos, next) = (Arc::new(repos), Arc::new(AtomicU64::new(0)));
            let deadline = Instant::now() + Duration::from_secs(secs);
            let started = Instant::now();
            let handles: Vec<_> = (0..threads)
                .map(|_| {
                    let (repos, next, addr) = (repos.clone(), next.clone(), addr.clone());
                    std::thread::spawn(move || {
                        let mut lat = Vec::new();
                        while Instant::now() < deadline {
                            let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                            let Some(mut repo) = repos.get(i).and_then(|r| r.lock().expect("lock").take()) else {
                                eprintln!("ran out of the {} prepared collections: raise max", repos.len());
                                break;
                            };
                            let start = Instant::now();
                            first_publish(&addr, &mut repo);
                            lat.push(start.elapsed());
                        }
                        lat
                    })
                })
                .collect();
            let mut all: Vec<Duration> = handles.into_iter().flat_map(|h| h.join().expect("thread")).collect();
            let elapsed = started.elapsed().as_secs_f64();
            all.sort();
            println!(
                "new collections: {} in {:.1} s = {:.1}/s; latency p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms ({} threads)",
                all.len(),
                elapsed,
                all.len() as f64 / elapsed,
                percentile(&all, 0.50).as_secs_f64() * 1e3,
                percentile(&all, 0.99).as_secs_f64() * 1e3,
                all.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
                threads
            );
        }
        _ => {
            eprintln!(
                "usage: loadgen seed <addr> <gun> | loadgen publish <addr> <guns> <threads> <seconds> [max-rate] | loadgen new <addr> <threads> <seconds> [max]"
            );
            std::process::exit(2);
        }
    }
}
