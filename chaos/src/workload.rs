//! The workload: writer threads publishing real TUF metadata (signed with
//! seal-tuf, as Notary's CLI signs it) to many collections through every
//! node, including conflicting publishes of one version through two nodes at
//! once, timestamp key rotations and deletes; reader threads reading every
//! collection from every node the way Notary's client does and verifying
//! what they get. Every operation goes into the history.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use seal_tuf::client::{Limits, Repo, TrustPin};
use seal_tuf::metadata::{Root, SignedFile, Snapshot, Targets, Timestamp, ROOT, SNAPSHOT, TARGETS, TIMESTAMP};
use seal_tuf::testing::TestRepo;
use seal_tuf::PublicKey;
use time::OffsetDateTime;

use crate::history::{
    sha256_hex, Consistency, Entry, Observed, Op, OpKind, Outcome, Recorder, RoleVersion, RoleWrite, LISTED_NOT_SERVED,
};
use seal_testkit::http::{multipart, send, HttpError, Response};

/// How long a client waits for an answer.
const TIMEOUT: Duration = Duration::from_secs(10);

/// The response header in which a node says that a write's outcome is unknown.
const OUTCOME: &str = "x-seal-outcome";

/// Client ids of the second half of a conflicting publish are offset by this.
const CONFLICT_CLIENT: u32 = 1000;

/// How much work, of which kind.
#[derive(Debug, Clone)]
pub struct WorkloadSpec {
    /// Writer threads.
    pub writers: usize,
    /// Reader threads.
    pub readers: usize,
    /// Long-lived collections the writers publish to.
    pub guns: usize,
    /// Seeds the workload's choices.
    pub seed: u64,
}

/// A node the workload talks to.
#[derive(Debug, Clone)]
pub struct Target {
    /// Raft node id.
    pub id: u64,
    /// HTTP address.
    pub http: String,
}

/// What a writer knows of a collection's current files.
#[derive(Clone)]
struct Current {
    root: Vec<u8>,
    root_version: u64,
    targets: Vec<u8>,
    targets_version: u64,
    snapshot_version: u64,
}

/// A collection the writers publish to.
struct Gun {
    name: String,
    repo: TestRepo,
    /// What the last acknowledged write left, or `None` while unknown
    /// (never published, or the last write's outcome is unknown).
    current: Option<Current>,
    /// Whether a write may have created the collection.
    maybe_created: bool,
}

struct Ctx {
    seed: u64,
    nodes: Vec<Target>,
    rec: Arc<Recorder>,
    t0: Instant,
    stop: AtomicBool,
    guns: Vec<Mutex<Gun>>,
    /// Collections readers read, with the root to trust for each.
    anchors: Mutex<Vec<(String, Vec<u8>)>>,
    deletes: AtomicU64,
    ok_writes: AtomicU64,
    /// Time of the last acknowledged write (ms of the run), +1 (0: none yet).
    last_ok_write: AtomicU64,
}

impl Ctx {
    fn ms(&self) -> u64 {
        crate::history::ms_since(self.t0)
    }

    fn record(&self, op: Op) {
        if op.outcome == Outcome::Ok && !op.kind.writes().is_empty() {
            self.ok_writes.fetch_add(1, Ordering::Relaxed);
            self.last_ok_write.fetch_max(op.end_ms + 1, Ordering::Relaxed);
        }
        if let Err(e) = self.rec.append(&Entry::Op(op)) {
            eprintln!("seal-chaos: cannot write the history: {e}");
        }
    }

    fn anchor(&self, gun: &str, root: &[u8]) {
        let mut a = self.anchors.lock().unwrap_or_else(|e| e.into_inner());
        if !a.iter().any(|(g, _)| g == gun) {
            a.push((gun.to_owned(), root.to_vec()));
        }
    }
}

/// The running workload.
pub struct Workload {
    ctx: Arc<Ctx>,
    threads: Vec<JoinHandle<()>>,
}

impl Workload {
    /// Starts the writers and readers against `nodes`, recording into `rec`; times are
    /// measured from `t0`.
    pub fn start(spec: &WorkloadSpec, nodes: Vec<Target>, rec: Arc<Recorder>, t0: Instant) -> Workload {
        let now = OffsetDateTime::now_utc();
        let guns = (0..spec.guns)
            .map(|i| {
                let name = format!("chaos/{}/g{i}", spec.seed);
                Mutex::new(Gun {
                    repo: TestRepo::new(&name, now),
                    name,
                    current: None,
                    maybe_created: false,
                })
            })
            .collect();
        let ctx = Arc::new(Ctx {
            seed: spec.seed,
            nodes,
            rec,
            t0,
            stop: AtomicBool::new(false),
            guns,
            anchors: Mutex::new(Vec::new()),
            deletes: AtomicU64::new(0),
            ok_writes: AtomicU64::new(0),
            last_ok_write: AtomicU64::new(0),
        });
        let mut threads = Vec::new();
        for w in 0..spec.writers {
            let ctx = ctx.clone();
            let seed = spec.seed.wrapping_mul(1_000_003).wrapping_add(w as u64);
            threads.push(std::thread::spawn(move || writer(&ctx, w as u32, seed)));
        }
        for r in 0..spec.readers {
            let ctx = ctx.clone();
            let client = (spec.writers + r) as u32;
            let seed = spec.seed.wrapping_mul(2_000_003).wrapping_add(r as u64);
            threads.push(std::thread::spawn(move || reader(&ctx, client, seed)));
        }
        Workload { ctx, threads }
    }

    /// Acknowledged writes so far.
    pub fn ok_writes(&self) -> u64 {
        self.ctx.ok_writes.load(Ordering::Relaxed)
    }

    /// When the last acknowledged write ended (ms of the run).
    pub fn last_ok_write_ms(&self) -> Option<u64> {
        self.ctx.last_ok_write.load(Ordering::Relaxed).checked_sub(1)
    }

    /// Every collection the workload touched.
    pub fn guns(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .ctx
            .guns
            .iter()
            .map(|g| g.lock().unwrap_or_else(|e| e.into_inner()).name.clone())
            .collect();
        for (g, _) in self.ctx.anchors.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            if !out.contains(g) {
                out.push(g.clone());
            }
        }
        out
    }

    /// Stops every thread once its current operation ends.
    pub fn stop(self) {
        self.ctx.stop.store(true, Ordering::SeqCst);
        for t in self.threads {
            let _ = t.join();
        }
    }
}

fn tuf_path(gun: &str, file: &str) -> String {
    format!("/v2/{gun}/_trust/tuf/{file}")
}

/// How a finished request counts, and its error text when not acknowledged.
fn outcome(r: &Result<Response, HttpError>) -> (Outcome, Option<String>) {
    match r {
        Ok(resp) if (200..300).contains(&resp.status) => (Outcome::Ok, None),
        // The node says it cannot know whether the write happened (it lost the leader after
        // handing the write over).
        Ok(resp) if resp.header(OUTCOME).is_some_and(|v| v.eq_ignore_ascii_case("unknown")) => {
            (Outcome::Unknown, Some(resp.summary()))
        }
        Ok(resp) => (Outcome::Fail, Some(resp.summary())),
        Err(e @ HttpError::NotSent(_)) => (Outcome::Fail, Some(e.to_string())),
        Err(e @ HttpError::NoAnswer(_)) => (Outcome::Unknown, Some(e.to_string())),
    }
}

fn role_write(role: &str, version: u64, bytes: &[u8]) -> RoleWrite {
    RoleWrite {
        role: role.to_owned(),
        version,
        sha256: sha256_hex(bytes),
    }
}

/// The version in a metadata file's `signed` part.
pub(crate) fn version_of(role: &str, bytes: &[u8]) -> Result<u64, String> {
    let f = SignedFile::parse(role, bytes.to_vec()).map_err(|e| format!("{role}: {e}"))?;
    f.signed()
        .get("version")
        .and_then(seal_tuf::cjson::Value::as_int)
        .and_then(|v| u64::try_from(v).ok())
        .ok_or_else(|| format!("{role} has no version"))
}

fn writer(ctx: &Ctx, client: u32, seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    while !ctx.stop.load(Ordering::SeqCst) {
        let node = &ctx.nodes[rng.gen_range(0..ctx.nodes.len())];
        let roll: u32 = rng.gen_range(0..100);
        if roll < 3 {
            delete_lifecycle(ctx, client, node, &mut rng);
            continue;
        }
        let g = rng.gen_range(0..ctx.guns.len());
        let Ok(mut gun) = ctx.guns[g].try_lock() else {
            continue;
        };
        if gun.current.is_none() && !resync(ctx, &mut gun, node) {
            drop(gun);
            std::thread::sleep(Duration::from_millis(50));
            continue;
        }
        match gun.current.clone() {
            None => first_publish(ctx, client, &mut gun, node, rng.gen()),
            Some(cur) if roll < 8 => rotate(ctx, client, &mut gun, &cur, node),
            Some(cur) if roll < 20 && ctx.nodes.len() > 1 => {
                let mut other = &ctx.nodes[rng.gen_range(0..ctx.nodes.len())];
                while other.id == node.id {
                    other = &ctx.nodes[rng.gen_range(0..ctx.nodes.len())];
                }
                conflicting_publish(ctx, client, &mut gun, &cur, [node, other], rng.gen());
            }
            Some(cur) => publish(ctx, client, &mut gun, &cur, node, rng.gen()),
        }
    }
}

/// Learns a collection's current files with linearizable reads after a write whose outcome
/// is unknown (or before the first one). Returns whether the collection's state is known now.
fn resync(ctx: &Ctx, gun: &mut Gun, node: &Target) -> bool {
    if !gun.maybe_created {
        return true;
    }
    let get = |file: &str| {
        send(
            &node.http,
            "GET",
            &tuf_path(&gun.name, &format!("{file}.json?consistent")),
            &[],
            &[],
            TIMEOUT,
        )
    };
    let Ok(root) = get(ROOT) else { return false };
    if root.status == 404 {
        gun.maybe_created = false;
        return true;
    }
    let (Ok(targets), Ok(snapshot)) = (get(TARGETS), get(SNAPSHOT)) else {
        return false;
    };
    if root.status != 200 || targets.status != 200 || snapshot.status != 200 {
        return false;
    }
    let (Ok(rv), Ok(tv), Ok(sv)) = (
        version_of(ROOT, &root.body),
        version_of(TARGETS, &targets.body),
        version_of(SNAPSHOT, &snapshot.body),
    ) else {
        return false;
    };
    // The server's timestamp key is the one the current root lists.
    let key = SignedFile::parse(ROOT, root.body.clone())
        .ok()
        .and_then(|f| Root::from_signed(f.signed()).ok())
        .and_then(|r| r.role_key_list(TIMESTAMP).first().map(|k| (*k).clone()));
    let Some(key) = key else { return false };
    gun.repo.server_timestamp = Some(key);
    if rv == 1 {
        ctx.anchor(&gun.name, &root.body);
    }
    gun.current = Some(Current {
        root: root.body,
        root_version: rv,
        targets: targets.body,
        targets_version: tv,
        snapshot_version: sv,
    });
    true
}

/// `GET <gun>/timestamp.key` (the server makes the key on first use) or, with `rotate`,
/// `POST` (a new key).
fn server_key(node: &Target, gun: &str, rotate: bool) -> Result<PublicKey, (Outcome, String)> {
    let method = if rotate { "POST" } else { "GET" };
    let r = send(&node.http, method, &tuf_path(gun, "timestamp.key"), &[], &[], TIMEOUT);
    match outcome(&r) {
        (Outcome::Ok, _) => {
            let body = r.map(|r| r.body).unwrap_or_default();
            PublicKey::from_json(&body).map_err(|e| (Outcome::Fail, format!("timestamp.key: {e}")))
        }
        (o, e) => Err((o, format!("timestamp.key: {}", e.unwrap_or_default()))),
    }
}

fn upload(node: &Target, gun: &str, files: &[(String, Vec<u8>)]) -> (Outcome, Option<String>) {
    let (ct, body) = multipart(files);
    let r = send(
        &node.http,
        "POST",
        &tuf_path(gun, ""),
        &[("Content-Type", &ct)],
        &body,
        TIMEOUT,
    );
    outcome(&r)
}

struct Started<'a> {
    ctx: &'a Ctx,
    id: u64,
    client: u32,
    node: u64,
    start_ms: u64,
}

impl<'a> Started<'a> {
    fn new(ctx: &'a Ctx, client: u32, node: &Target) -> Started<'a> {
        Started {
            ctx,
            id: ctx.rec.next_id(),
            client,
            node: node.id,
            start_ms: ctx.ms(),
        }
    }

    fn end(self, outcome: Outcome, error: Option<String>, kind: OpKind) {
        let op = Op {
            id: self.id,
            client: self.client,
            node: self.node,
            start_ms: self.start_ms,
            end_ms: self.ctx.ms(),
            outcome,
            error,
            kind,
        };
        self.ctx.record(op);
    }
}

fn first_publish(ctx: &Ctx, client: u32, gun: &mut Gun, node: &Target, tag: u64) {
    let op = Started::new(ctx, client, node);
    let key = match server_key(node, &gun.name, false) {
        Ok(k) => k,
        Err((o, e)) => {
            let kind = OpKind::Publish {
                gun: gun.name.clone(),
                writes: Vec::new(),
            };
            return op.end(o, Some(e), kind);
        }
    };
    gun.repo.server_timestamp = Some(key);
    let payload = format!("first publish {tag:016x}\n");
    let files = gun.repo.first_publish(&[("first", payload.as_bytes())]);
    let writes = files
        .iter()
        .map(|(r, b)| role_write(r, version_of(r, b).unwrap_or(0), b))
        .collect();
    gun.maybe_created = true;
    let (o, e) = upload(node, &gun.name, &files);
    if o == Outcome::Ok {
        let (root, targets) = (files[0].1.clone(), files[1].1.clone());
        ctx.anchor(&gun.name, &root);
        gun.current = Some(Current {
            root,
            root_version: 1,
            targets,
            targets_version: 2,
            snapshot_version: 2,
        });
    }
    op.end(
        o,
        e,
        OpKind::Publish {
            gun: gun.name.clone(),
            writes,
        },
    );
}

/// Targets and snapshot one version on from `cur`, listing a target named after `tag`.
fn next_files(gun: &Gun, cur: &Current, tag: u64) -> Vec<(String, Vec<u8>)> {
    let payload = format!("{} {tag:016x}\n", gun.name);
    let name = format!("t{tag:016x}");
    let targets = gun
        .repo
        .targets_file(cur.targets_version + 1, &[(name.as_str(), payload.as_bytes())]);
    let snapshot = gun
        .repo
        .snapshot_file(cur.snapshot_version + 1, &[(ROOT, &cur.root), (TARGETS, &targets)]);
    vec![(TARGETS.to_owned(), targets), (SNAPSHOT.to_owned(), snapshot)]
}

fn writes_of(files: &[(String, Vec<u8>)], cur: &Current) -> Vec<RoleWrite> {
    files
        .iter()
        .map(|(role, bytes)| {
            let v = match role.as_str() {
                TARGETS => cur.targets_version + 1,
                SNAPSHOT => cur.snapshot_version + 1,
                _ => cur.root_version + 1,
            };
            role_write(role, v, bytes)
        })
        .collect()
}

/// What an acknowledged write of `files` on top of `cur` leaves.
fn after(cur: &Current, files: &[(String, Vec<u8>)]) -> Current {
    let mut next = cur.clone();
    next.snapshot_version += 1;
    for (role, bytes) in files {
        match role.as_str() {
            TARGETS => {
                next.targets = bytes.clone();
                next.targets_version += 1;
            }
            ROOT => {
                next.root = bytes.clone();
                next.root_version += 1;
            }
            _ => {}
        }
    }
    next
}

fn publish(ctx: &Ctx, client: u32, gun: &mut Gun, cur: &Current, node: &Target, tag: u64) {
    let files = next_files(gun, cur, tag);
    let op = Started::new(ctx, client, node);
    let (o, e) = upload(node, &gun.name, &files);
    gun.current = match o {
        Outcome::Ok => Some(after(cur, &files)),
        // Refused: most likely nothing changed, but resync to be sure.
        Outcome::Fail | Outcome::Unknown => None,
    };
    op.end(
        o,
        e,
        OpKind::Publish {
            gun: gun.name.clone(),
            writes: writes_of(&files, cur),
        },
    );
}

/// Two different uploads of the same versions through two nodes at the same moment: at most
/// one may be acknowledged.
fn conflicting_publish(ctx: &Ctx, client: u32, gun: &mut Gun, cur: &Current, nodes: [&Target; 2], tag: u64) {
    let files = [next_files(gun, cur, tag), next_files(gun, cur, tag ^ 0x5555_5555)];
    let name = gun.name.clone();
    let results: Vec<(Outcome, Option<String>, Started<'_>)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..2)
            .map(|i| {
                let (files, node, name) = (&files[i], nodes[i], &name);
                let c = if i == 0 { client } else { client + CONFLICT_CLIENT };
                s.spawn(move || {
                    let op = Started::new(ctx, c, node);
                    let (o, e) = upload(node, name, files);
                    (o, e, op)
                })
            })
            .collect();
        handles.into_iter().filter_map(|h| h.join().ok()).collect()
    });
    let oks: Vec<usize> = results
        .iter()
        .enumerate()
        .filter(|(_, r)| r.0 == Outcome::Ok)
        .map(|(i, _)| i)
        .collect();
    let unknown = results.iter().any(|r| r.0 == Outcome::Unknown);
    gun.current = match (oks.as_slice(), unknown) {
        ([i], false) => Some(after(cur, &files[*i])),
        _ => None,
    };
    for (i, (o, e, op)) in results.into_iter().enumerate() {
        let kind = OpKind::Publish {
            gun: name.clone(),
            writes: writes_of(&files[i], cur),
        };
        op.end(o, e, kind);
    }
}

/// A new server timestamp key, a new root listing it and a snapshot listing that root.
fn rotate(ctx: &Ctx, client: u32, gun: &mut Gun, cur: &Current, node: &Target) {
    let op = Started::new(ctx, client, node);
    let kind = |writes| OpKind::Rotate {
        gun: gun.name.clone(),
        role: TIMESTAMP.to_owned(),
        writes,
    };
    let key = match server_key(node, &gun.name, true) {
        Ok(k) => k,
        Err((o, e)) => {
            let k = kind(Vec::new());
            return op.end(o, Some(e), k);
        }
    };
    let previous = gun.repo.server_timestamp.replace(key);
    let root = gun.repo.root_file(cur.root_version + 1);
    let snapshot = gun
        .repo
        .snapshot_file(cur.snapshot_version + 1, &[(ROOT, &root), (TARGETS, &cur.targets)]);
    let files = vec![(ROOT.to_owned(), root), (SNAPSHOT.to_owned(), snapshot)];
    let writes = writes_of(&files, cur);
    let (o, e) = upload(node, &gun.name, &files);
    gun.current = match o {
        Outcome::Ok => Some(after(cur, &files)),
        _ => {
            gun.repo.server_timestamp = previous;
            None
        }
    };
    let k = kind(writes);
    op.end(o, e, k);
}

/// A short-lived collection: published, then deleted. It is never written again.
fn delete_lifecycle(ctx: &Ctx, client: u32, node: &Target, rng: &mut StdRng) {
    let n = ctx.deletes.fetch_add(1, Ordering::Relaxed);
    let name = format!("chaos/{}/d{client}-{n}", ctx.seed);
    let mut gun = Gun {
        repo: TestRepo::new(&name, OffsetDateTime::now_utc()),
        name,
        current: None,
        maybe_created: false,
    };
    first_publish(ctx, client, &mut gun, node, rng.gen());
    if !gun.maybe_created {
        return;
    }
    let node = &ctx.nodes[rng.gen_range(0..ctx.nodes.len())];
    let op = Started::new(ctx, client, node);
    let r = send(&node.http, "DELETE", &tuf_path(&gun.name, ""), &[], &[], TIMEOUT);
    let (o, e) = outcome(&r);
    op.end(o, e, OpKind::Delete { gun: gun.name.clone() });
}

fn reader(ctx: &Ctx, client: u32, seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    // The highest timestamp version this client has seen per collection.
    let mut seen: HashMap<String, u64> = HashMap::new();
    while !ctx.stop.load(Ordering::SeqCst) {
        let pick = {
            let a = ctx.anchors.lock().unwrap_or_else(|e| e.into_inner());
            (!a.is_empty()).then(|| a[rng.gen_range(0..a.len())].clone())
        };
        let Some((gun, anchor)) = pick else {
            std::thread::sleep(Duration::from_millis(50));
            continue;
        };
        let node = &ctx.nodes[rng.gen_range(0..ctx.nodes.len())];
        let consistency = match (rng.gen_range(0..4u32), seen.get(&gun)) {
            (0, _) => Consistency::Linearizable,
            (1, Some(&v)) => Consistency::MinVersion { version: v },
            _ => Consistency::Stale,
        };
        let op = Started::new(ctx, client, node);
        let (outcome, error, observed) = read(node, &gun, &consistency, &anchor);
        if outcome != Outcome::Ok {
            // A node that is down refuses at once: do not spin on it.
            std::thread::sleep(Duration::from_millis(20));
        }
        if let Some(ts) = observed.as_ref().and_then(|o| o.versions.get(TIMESTAMP)) {
            let v = seen.entry(gun.clone()).or_insert(0);
            *v = (*v).max(ts.version);
        }
        op.end(
            outcome,
            error,
            OpKind::Read {
                gun,
                consistency,
                observed,
            },
        );
    }
}

fn header_u64(r: &Response, name: &str) -> Option<u64> {
    r.header(name).and_then(|v| v.trim().parse().ok())
}

/// Reads a collection as Notary's client does: the timestamp, then the snapshot, targets and
/// root it names by hash; verifies them with seal-tuf against the collection's first root.
fn read(
    node: &Target,
    gun: &str,
    consistency: &Consistency,
    anchor: &[u8],
) -> (Outcome, Option<String>, Option<Observed>) {
    let (path, headers): (String, Vec<(&str, String)>) = match consistency {
        Consistency::Stale => (tuf_path(gun, "timestamp.json"), Vec::new()),
        Consistency::Linearizable => (tuf_path(gun, "timestamp.json?consistent"), Vec::new()),
        Consistency::MinVersion { version } => (
            tuf_path(gun, "timestamp.json"),
            vec![("X-Seal-Min-Version", version.to_string())],
        ),
    };
    let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let r = send(&node.http, "GET", &path, &headers, &[], TIMEOUT);
    let ts = match r {
        Ok(r) if r.status == 200 => r,
        Ok(r) if r.status == 404 => {
            let observed = Observed {
                absent: true,
                versions: BTreeMap::new(),
                timestamp_expires_unix_ms: None,
                verify_error: None,
                applied_index: header_u64(&r, "x-seal-applied-index"),
                last_contact_ms: header_u64(&r, "x-seal-last-contact"),
            };
            return (Outcome::Ok, None, Some(observed));
        }
        other => {
            let (o, e) = outcome(&other);
            let o = if o == Outcome::Ok { Outcome::Fail } else { o };
            return (o, e, None);
        }
    };
    let mut observed = Observed {
        absent: false,
        versions: BTreeMap::new(),
        timestamp_expires_unix_ms: None,
        verify_error: None,
        applied_index: header_u64(&ts, "x-seal-applied-index"),
        last_contact_ms: header_u64(&ts, "x-seal-last-contact"),
    };
    let from = ts.header("x-seal-forwarded-to").map(str::to_owned);
    match fetch_and_verify(node, gun, (ts.body, from), anchor, &mut observed) {
        Ok(()) => (Outcome::Ok, None, Some(observed)),
        Err(Fetch::Failed(o, e)) => (o, Some(e), None),
        Err(Fetch::Invalid(e)) => {
            observed.verify_error = Some(e);
            (Outcome::Ok, None, Some(observed))
        }
    }
}

enum Fetch {
    /// A later request failed: the read failed.
    Failed(Outcome, String),
    /// What was served does not verify.
    Invalid(String),
}

fn fetch_and_verify(
    node: &Target,
    gun: &str,
    (ts, ts_from): (Vec<u8>, Option<String>),
    anchor: &[u8],
    observed: &mut Observed,
) -> Result<(), Fetch> {
    let ts_index = observed.applied_index;
    let invalid = |e: &dyn std::fmt::Display| Fetch::Invalid(e.to_string());
    let parsed = |role: &str, bytes: &[u8]| SignedFile::parse(role, bytes.to_vec()).map_err(|e| invalid(&e));
    let tsv = Timestamp::from_signed(parsed(TIMESTAMP, &ts)?.signed()).map_err(|e| invalid(&e))?;
    observed.versions.insert(
        TIMESTAMP.into(),
        RoleVersion {
            version: tsv.version,
            sha256: sha256_hex(&ts),
        },
    );
    observed.timestamp_expires_unix_ms = i64::try_from(tsv.expires.unix_timestamp_nanos() / 1_000_000).ok();
    let by_hash = |role: &str, meta: Option<&seal_tuf::FileMeta>| -> Result<Vec<u8>, Fetch> {
        let sha = meta
            .and_then(seal_tuf::FileMeta::sha256_hex)
            .ok_or_else(|| Fetch::Invalid(format!("no sha256 of {role} listed")))?;
        let r = send(
            &node.http,
            "GET",
            &tuf_path(gun, &format!("{role}.{sha}.json")),
            &[],
            &[],
            TIMEOUT,
        );
        match r {
            Ok(r) if r.status == 200 => Ok(r.body),
            Ok(r) if r.status == 404 => Err(Fetch::Invalid(format!(
                "{role} {sha} {LISTED_NOT_SERVED} (the timestamp came {} at applied index {}; the 404 at {})",
                ts_from
                    .as_deref()
                    .map_or("from this node".to_owned(), |l| format!("from leader {l}")),
                ts_index.map_or("?".to_owned(), |i| i.to_string()),
                r.header("x-seal-applied-index").unwrap_or("?"),
            ))),
            other => {
                let (o, e) = outcome(&other);
                let o = if o == Outcome::Ok { Outcome::Fail } else { o };
                Err(Fetch::Failed(
                    o,
                    format!("{role}.{sha}.json: {}", e.unwrap_or_default()),
                ))
            }
        }
    };
    let snapshot = by_hash(SNAPSHOT, tsv.snapshot_meta())?;
    let snap = Snapshot::from_signed(parsed(SNAPSHOT, &snapshot)?.signed()).map_err(|e| invalid(&e))?;
    let targets = by_hash(TARGETS, snap.meta.get(TARGETS))?;
    let root = by_hash(ROOT, snap.meta.get(ROOT))?;
    for (role, bytes) in [(SNAPSHOT, &snapshot), (TARGETS, &targets), (ROOT, &root)] {
        let version = match role {
            SNAPSHOT => snap.version,
            TARGETS => {
                Targets::from_signed(TARGETS, parsed(TARGETS, bytes)?.signed())
                    .map_err(|e| invalid(&e))?
                    .version
            }
            _ => {
                Root::from_signed(parsed(ROOT, bytes)?.signed())
                    .map_err(|e| invalid(&e))?
                    .version
            }
        };
        observed.versions.insert(
            role.into(),
            RoleVersion {
                version,
                sha256: sha256_hex(bytes),
            },
        );
    }
    let now = OffsetDateTime::now_utc();
    let mut repo = Repo::new(gun, TrustPin::Tofu, Limits::default());
    repo.load_trusted_root(anchor.to_vec(), now)
        .map_err(|e| invalid(&format!("trusted root: {e}")))?;
    repo.update_root(root, now)
        .map_err(|e| invalid(&format!("root: {e}")))?;
    repo.update_timestamp(ts, now)
        .map_err(|e| invalid(&format!("timestamp: {e}")))?;
    repo.update_snapshot(snapshot, now)
        .map_err(|e| invalid(&format!("snapshot: {e}")))?;
    repo.update_targets(TARGETS, targets, now)
        .map_err(|e| invalid(&format!("targets: {e}")))?;
    Ok(())
}
