//! Publishes through Notary's API: later versions of existing collections
//! (targets + snapshot, the server's timestamp), and first publishes of new
//! collections. Each request is a new HTTP connection, as Notary's CLI
//! makes them. The metadata is signed before the clock starts, so the load
//! generator's own signing does not compete with the server for the CPUs.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use seal_testkit::http::{multipart, send};
use seal_tuf::testing::TestRepo;
use seal_tuf::PublicKey;
use time::OffsetDateTime;

use crate::stats::{micros, Run};

/// How long one request may take before it counts as unanswered.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

fn request(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<(u16, Vec<u8>), String> {
    let r = send(addr, method, path, headers, body, REQUEST_TIMEOUT).map_err(|e| format!("{method} {path}: {e}"))?;
    Ok((r.status, r.body))
}

fn expect_ok(addr: &str, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Result<Vec<u8>, String> {
    match request(addr, method, path, headers, body)? {
        (200, body) => Ok(body),
        (status, body) => Err(format!(
            "{method} {path} on {addr}: {status} {}",
            String::from_utf8_lossy(&body).chars().take(300).collect::<String>()
        )),
    }
}

/// The targets every seeded collection starts with.
fn initial_targets() -> Vec<(String, Vec<u8>)> {
    (0..20)
        .map(|i| (format!("v{i}.0.0"), format!("release {i}").into_bytes()))
        .collect()
}

/// Creates `repo`'s collection on the server: its timestamp key (which the
/// server makes on first ask), then its first publish of root, targets and
/// snapshot.
pub fn first_publish(addr: &str, repo: &mut TestRepo) -> Result<(), String> {
    let gun = repo.gun.clone();
    let key = expect_ok(addr, "GET", &format!("/v2/{gun}/_trust/tuf/timestamp.key"), &[], &[])?;
    repo.server_timestamp = Some(PublicKey::from_json(&key).map_err(|e| format!("{gun}'s timestamp key: {e}"))?);
    let contents = initial_targets();
    let refs: Vec<(&str, &[u8])> = contents.iter().map(|(n, b)| (n.as_str(), b.as_slice())).collect();
    let (ct, body) = multipart(&repo.first_publish(&refs));
    expect_ok(
        addr,
        "POST",
        &format!("/v2/{gun}/_trust/tuf/"),
        &[("Content-Type", &ct)],
        &body,
    )?;
    Ok(())
}

/// A new collection `gun` on the server at `addr`, with a first publish.
pub fn seed(addr: &str, gun: &str) -> Result<TestRepo, String> {
    let mut repo = TestRepo::new(gun, OffsetDateTime::now_utc());
    first_publish(addr, &mut repo)?;
    Ok(repo)
}

/// The paths a reader asks for in `gun`'s collection: `timestamp.json`,
/// `targets.json` and the snapshot named by the checksum the timestamp
/// gives.
pub fn read_paths(addr: &str, gun: &str) -> Result<Vec<String>, String> {
    let ts = expect_ok(addr, "GET", &format!("/v2/{gun}/_trust/tuf/timestamp.json"), &[], &[])?;
    let f = seal_tuf::SignedFile::parse("timestamp", ts).map_err(|e| format!("timestamp.json: {e}"))?;
    let t = seal_tuf::Timestamp::from_signed(f.signed()).map_err(|e| format!("timestamp.json: {e}"))?;
    let sum = t
        .snapshot_meta()
        .and_then(|m| m.sha256_hex())
        .ok_or("timestamp.json names no sha256 of the snapshot")?;
    Ok(vec![
        format!("/v2/{gun}/_trust/tuf/timestamp.json"),
        format!("/v2/{gun}/_trust/tuf/targets.json"),
        format!("/v2/{gun}/_trust/tuf/snapshot.{sum}.json"),
    ])
}

/// Fetches `path` from `addr`.
pub fn get(addr: &str, path: &str) -> Result<Vec<u8>, String> {
    expect_ok(addr, "GET", path, &[], &[])
}

/// One collection a publish load writes to: its keys, current targets
/// version, root bytes, and its next publishes, signed ahead.
struct Collection {
    repo: TestRepo,
    version: u64,
    root: Vec<u8>,
    ready: VecDeque<(String, Vec<u8>)>,
    /// A publish got no answer: whether it applied is unknown, so the
    /// collection is left alone.
    lost: bool,
}

impl Collection {
    /// The publish of targets + snapshot version `version`.
    fn publish_body(&self, version: u64) -> (String, Vec<u8>) {
        let t = self
            .repo
            .targets_file(version, &[("v", format!("{version}").as_bytes())]);
        let s = self
            .repo
            .snapshot_file(version, &[("root", &self.root), ("targets", &t)]);
        multipart(&[("targets".into(), t), ("snapshot".into(), s)])
    }
}

/// Later publishes over a set of collections of one server.
pub struct PublishLoad {
    addr: String,
    collections: Vec<Mutex<Collection>>,
}

/// Runs `work(i)` for `i` in `0..n` on `threads` threads; the first error wins.
fn parallel<T: Send>(
    n: usize,
    threads: usize,
    work: impl Fn(usize) -> Result<T, String> + Sync,
) -> Result<Vec<T>, String> {
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<T>>> = Mutex::new((0..n).map(|_| None).collect());
    let failed: Mutex<Option<String>> = Mutex::new(None);
    std::thread::scope(|s| {
        for _ in 0..threads.max(1) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n || failed.lock().expect("lock").is_some() {
                    break;
                }
                match work(i) {
                    Ok(v) => results.lock().expect("lock")[i] = Some(v),
                    Err(e) => *failed.lock().expect("lock") = Some(e),
                }
            });
        }
    });
    if let Some(e) = failed.into_inner().expect("lock") {
        return Err(e);
    }
    Ok(results.into_inner().expect("lock").into_iter().flatten().collect())
}

fn cpus() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

impl PublishLoad {
    /// Seeds `guns` collections named `<prefix>/g<i>` on the server at `addr`, one after the
    /// other: notary-server v0.7.0's local trust service dies under concurrent key creation
    /// ("concurrent map read and map write").
    pub fn prepare(addr: &str, prefix: &str, guns: usize) -> Result<PublishLoad, String> {
        let collections = parallel(guns, 1, |i| {
            let gun = format!("{prefix}/g{i}");
            let repo = seed(addr, &gun)?;
            let root = get(addr, &format!("/v2/{gun}/_trust/tuf/root.json"))?;
            Ok(Mutex::new(Collection {
                repo,
                version: 2,
                root,
                ready: VecDeque::new(),
                lost: false,
            }))
        })?;
        Ok(PublishLoad {
            addr: addr.to_owned(),
            collections,
        })
    }

    /// Signs enough publishes for `max_rate` publishes/s over `duration`,
    /// then publishes them from `threads` threads for `duration`. A
    /// collection that runs out signs its next version inline (the count is
    /// returned beside the run).
    pub fn run(&self, threads: usize, duration: Duration, max_rate: u64) -> Result<(Run, u64), String> {
        let per = (max_rate * duration.as_secs().max(1)).div_ceil(self.collections.len() as u64);
        let signing = Instant::now();
        parallel(self.collections.len(), cpus(), |i| {
            let mut c = self.collections[i].lock().expect("lock");
            let from = c.version + 1 + c.ready.len() as u64;
            let more: Vec<_> = (from..from + per.saturating_sub(c.ready.len() as u64))
                .map(|v| c.publish_body(v))
                .collect();
            c.ready.extend(more);
            Ok(())
        })?;
        // Scripts wait for this line to know the clock is about to start.
        eprintln!(
            "signed {} publishes ahead in {:.1} s",
            per * self.collections.len() as u64,
            signing.elapsed().as_secs_f64()
        );
        let next = AtomicUsize::new(0);
        let inline = AtomicUsize::new(0);
        let stop = AtomicBool::new(false);
        let started = Instant::now();
        let deadline = started + duration;
        let parts: Vec<(u64, Vec<u32>)> = std::thread::scope(|s| {
            let workers: Vec<_> = (0..threads.max(1))
                .map(|_| {
                    s.spawn(|| {
                        let (mut errors, mut lat) = (0u64, Vec::new());
                        while Instant::now() < deadline && !stop.load(Ordering::Relaxed) {
                            let i = next.fetch_add(1, Ordering::Relaxed) % self.collections.len();
                            // One publish at a time per collection: versions are per collection.
                            let mut c = self.collections[i].lock().expect("lock");
                            if c.lost {
                                continue;
                            }
                            let version = c.version + 1;
                            let (ct, body) = c.ready.pop_front().unwrap_or_else(|| {
                                inline.fetch_add(1, Ordering::Relaxed);
                                c.publish_body(version)
                            });
                            let path = format!("/v2/{}/_trust/tuf/", c.repo.gun);
                            let sent = Instant::now();
                            match request(&self.addr, "POST", &path, &[("Content-Type", &ct)], &body) {
                                Ok((200, _)) => {
                                    let done = Instant::now();
                                    if done <= deadline {
                                        lat.push(micros(done - sent));
                                    }
                                    c.version = version;
                                }
                                Ok((status, answer)) => {
                                    errors += 1;
                                    c.ready.push_front((ct, body));
                                    if errors == 1 {
                                        eprintln!(
                                            "publish to {} refused: {status} {}",
                                            c.repo.gun,
                                            String::from_utf8_lossy(&answer).chars().take(300).collect::<String>()
                                        );
                                    }
                                }
                                Err(e) => {
                                    errors += 1;
                                    c.lost = true;
                                    eprintln!("{e}");
                                }
                            }
                        }
                        (errors, lat)
                    })
                })
                .collect();
            workers.into_iter().map(|w| w.join().expect("publish thread")).collect()
        });
        let run = Run::merge(duration, parts);
        if run.ok == 0 {
            return Err(format!("no publish to {} succeeded ({} errors)", self.addr, run.errors));
        }
        Ok((run, inline.into_inner() as u64))
    }
}

/// First publishes of new collections: each is `GET timestamp.key` (the
/// server makes the collection's timestamp key) then the POST of root,
/// targets and snapshot, timed together.
pub struct NewLoad {
    addr: String,
    repos: Vec<Mutex<Option<TestRepo>>>,
    next: AtomicUsize,
}

impl NewLoad {
    /// Makes `count` collections' client keys, named `<prefix>/n<i>`.
    pub fn prepare(addr: &str, prefix: &str, count: usize) -> Result<NewLoad, String> {
        let now = OffsetDateTime::now_utc();
        let repos = parallel(count, cpus(), |i| {
            Ok(Mutex::new(Some(TestRepo::new(&format!("{prefix}/n{i}"), now))))
        })?;
        Ok(NewLoad {
            addr: addr.to_owned(),
            repos,
            next: AtomicUsize::new(0),
        })
    }

    /// Creates collections from `threads` threads for `duration`.
    pub fn run(&self, threads: usize, duration: Duration) -> Result<Run, String> {
        let deadline = Instant::now() + duration;
        let ran_out = AtomicBool::new(false);
        let parts: Vec<(u64, Vec<u32>)> = std::thread::scope(|s| {
            let workers: Vec<_> = (0..threads.max(1))
                .map(|_| {
                    s.spawn(|| {
                        let (mut errors, mut lat) = (0u64, Vec::new());
                        while Instant::now() < deadline {
                            let i = self.next.fetch_add(1, Ordering::Relaxed);
                            let Some(mut repo) = self.repos.get(i).and_then(|r| r.lock().expect("lock").take()) else {
                                ran_out.store(true, Ordering::Relaxed);
                                break;
                            };
                            let sent = Instant::now();
                            match first_publish(&self.addr, &mut repo) {
                                Ok(()) => {
                                    let done = Instant::now();
                                    if done <= deadline {
                                        lat.push(micros(done - sent));
                                    }
                                }
                                Err(e) => {
                                    errors += 1;
                                    if errors == 1 {
                                        eprintln!("{e}");
                                    }
                                }
                            }
                        }
                        (errors, lat)
                    })
                })
                .collect();
            workers
                .into_iter()
                .map(|w| w.join().expect("new-collection thread"))
                .collect()
        });
        if ran_out.into_inner() {
            return Err(format!(
                "ran out of the {} prepared collections before the time was up: prepare more",
                self.repos.len()
            ));
        }
        let run = Run::merge(duration, parts);
        if run.ok == 0 {
            return Err(format!(
                "no collection was created on {} ({} errors)",
                self.addr, run.errors
            ));
        }
        Ok(run)
    }
}
