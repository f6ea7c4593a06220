//! [`StateMachine`]: openraft's state machine over the state machine's own RocksDB, with
//! snapshots as RocksDB checkpoints.
//!
//! A snapshot is a checkpoint directory `<data dir>/snapshots/<snapshot id>/` (SST files
//! hard-linked from the state machine's database: its cost does not grow with the state); the
//! metadata of the current one is in `<data dir>/snapshots/current.meta` (written after the
//! directory, via a temporary file, fsync and rename, so it never names a missing or partial
//! one). Older snapshot directories are removed once a newer one is current. A snapshot is sent
//! and received as one stream of its files, each with its SHA-256 ([`SnapshotData`]); a received
//! one is written into `incoming-…/`, checked, renamed to its id, and installed by
//! [`seal_storage::Store::install_checkpoint`] as the state machine's next generation.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use openraft::storage::RaftStateMachine;
use openraft::{EntryPayload, ErrorSubject, ErrorVerb, RaftSnapshotBuilder};
use seal_storage::{Applied, ApplyOutcome, CheckpointInfo, Store};

use crate::codec::{decode, encode, io_err, join_err};
use crate::snapshot_data::SnapshotData;
use crate::types::{Entry, LogId, Snapshot, SnapshotMeta, StorageError, StoredMembership, TypeConfig};

const CURRENT_META: &str = "current.meta";

/// The points of a snapshot install at which a test may crash a node (`SEAL_CRASH_AT`, with the
/// `fault-injection` feature), in order: the stream received whole, its directory renamed to the
/// snapshot's id, seal-storage's [`seal_storage::INSTALL_STEPS`], the snapshot made current.
pub const INSTALL_CRASH_POINTS: [&str; 8] = [
    "received",
    "renamed",
    "checked",
    "linking",
    "linked",
    "opened",
    "committed",
    "current",
];
const INCOMING: &str = "incoming-";
const SENDING: &str = "sending-";

fn snap_err(verb: ErrorVerb) -> impl Fn(std::io::Error) -> StorageError {
    move |e| io_err(ErrorSubject::Snapshot(None), verb, &e)
}

fn store_err(subject: ErrorSubject<u64>, verb: ErrorVerb) -> impl FnOnce(seal_storage::Error) -> StorageError {
    move |e| io_err(subject, verb, &e)
}

/// The snapshot directory and the current snapshot's metadata.
#[derive(Debug)]
struct Snapshots {
    dir: PathBuf,
    current: Mutex<Option<SnapshotMeta>>,
}

/// Nanoseconds since the epoch, to make names unique.
fn nanos() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

/// A name no other call of this process returns: the time, then a counter.
fn unique() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!("{}-{}", nanos(), NEXT.fetch_add(1, Ordering::Relaxed))
}

impl Snapshots {
    /// The checkpoint directory of snapshot `id`.
    fn path(&self, id: &str) -> PathBuf {
        self.dir.join(id)
    }

    /// Snapshot `id` to send: read through a private directory of links to its files, made
    /// while no newer snapshot can remove them (under the lock [`Snapshots::set_current`] takes).
    #[allow(clippy::result_large_err)]
    fn send(&self, id: &str) -> Result<SnapshotData, StorageError> {
        let _cur = self.current.lock().unwrap_or_else(|p| p.into_inner());
        let private = self.dir.join(format!("{SENDING}{}", unique()));
        SnapshotData::send(&self.path(id), &private).map_err(snap_err(ErrorVerb::Read))
    }

    fn current(&self) -> Option<SnapshotMeta> {
        self.current.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Make `meta` current unless a newer snapshot already is; persist it and
    /// remove the previous current snapshot's file.
    #[allow(clippy::result_large_err)] // openraft's StorageError, returned by the trait methods
    fn set_current(&self, meta: SnapshotMeta) -> Result<(), StorageError> {
        let mut cur = self.current.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = cur.as_ref() {
            if c.last_log_id > meta.last_log_id {
                // A newer snapshot won the race; drop this one.
                remove_quietly(&self.path(&meta.snapshot_id));
                return Ok(());
            }
        }
        let bytes = encode(&meta, ErrorSubject::Snapshot(Some(meta.signature())))?;
        let tmp = self.dir.join(format!("{CURRENT_META}.tmp"));
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::File::create(&tmp)?;
            std::io::Write::write_all(&mut f, &bytes)?;
            f.sync_all()?;
            std::fs::rename(tmp.as_path(), self.dir.join(CURRENT_META))?;
            std::fs::File::open(&self.dir)?.sync_all()
        };
        write().map_err(snap_err(ErrorVerb::Write))?;
        let previous = cur.replace(meta);
        if let Some(prev) = previous {
            if cur.as_ref().map(|m| &m.snapshot_id) != Some(&prev.snapshot_id) {
                // Files a sender has open stay readable on Unix; a sender that must reopen one
                // fails, and replication starts again from the new snapshot.
                remove_quietly(&self.path(&prev.snapshot_id));
            }
        }
        Ok(())
    }

    /// At start-up: remove everything except the current snapshot and its metadata (older
    /// snapshots, partial builds and receptions, files of on-disk format 1).
    fn prune(&self) {
        let keep = self.current().map(|m| m.snapshot_id);
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name != CURRENT_META && Some(&name) != keep.as_ref() {
                remove_quietly(&e.path());
            }
        }
    }
}

fn remove_quietly(path: &Path) {
    let removed = if path.is_dir() {
        std::fs::remove_dir_all(path)
    } else {
        std::fs::remove_file(path)
    };
    if let Err(err) = removed {
        if err.kind() != std::io::ErrorKind::NotFound {
            tracing::warn!(path = %path.display(), %err, "cannot remove an old snapshot");
        }
    }
}

/// The snapshot metadata of a checkpoint.
#[allow(clippy::result_large_err)] // openraft's StorageError, returned by the trait methods
fn meta_of(info: &CheckpointInfo, snapshot_id: String) -> Result<SnapshotMeta, StorageError> {
    let last_log_id: Option<LogId> = match &info.last_applied {
        Some(b) => Some(decode(b, ErrorSubject::Snapshot(None))?),
        None => None,
    };
    let last_membership: StoredMembership = match &info.membership {
        Some(b) => decode(b, ErrorSubject::Snapshot(None))?,
        None => StoredMembership::default(),
    };
    Ok(SnapshotMeta {
        last_log_id,
        last_membership,
        snapshot_id,
    })
}

/// A new snapshot id for a checkpoint of `info`: its last log id, then a unique suffix.
#[allow(clippy::result_large_err)]
fn snapshot_id(info: &CheckpointInfo) -> Result<String, StorageError> {
    let nanos = nanos();
    let last: Option<LogId> = match &info.last_applied {
        Some(b) => Some(decode(b, ErrorSubject::Snapshot(None))?),
        None => None,
    };
    Ok(match last {
        Some(l) => format!("{}-{}-{}-{nanos}", l.leader_id.term, l.leader_id.node_id, l.index),
        None => format!("0-0-0-{nanos}"),
    })
}

/// Build a snapshot of `store` as a checkpoint in `snapshots`: the directory is made under a
/// temporary name and renamed to the snapshot's id. Blocking.
#[allow(clippy::result_large_err)]
fn build_checkpoint(store: &Store, snapshots: &Snapshots) -> Result<(SnapshotMeta, CheckpointInfo), StorageError> {
    let tmp = snapshots.dir.join(format!("building-{}", unique()));
    let info = store
        .checkpoint_state(&tmp)
        .map_err(store_err(ErrorSubject::Snapshot(None), ErrorVerb::Write))?;
    let id = snapshot_id(&info)?;
    let path = snapshots.path(&id);
    std::fs::rename(&tmp, &path).map_err(snap_err(ErrorVerb::Write))?;
    std::fs::File::open(&snapshots.dir)
        .and_then(|d| d.sync_all())
        .map_err(snap_err(ErrorVerb::Write))?;
    Ok((meta_of(&info, id)?, info))
}

/// How far readers of the store may see the applied log. openraft publishes its applied index
/// (in its metrics) only after a batch of entries is applied, while each entry's writes are
/// visible to readers as soon as they commit to RocksDB; a read that reports the metrics' index
/// could show data of a later entry. The two marks bracket what a reader can see:
///
/// * [`Watermark::begun`]: set to an entry's index before its writes, so a response stamped
///   with it (read after the response was built) covers everything the response showed;
/// * [`Watermark::done`]: set after the writes, so once it reaches an index, every write up to
///   that index is visible here.
///
/// A node that waits until its `done` reaches another node's stamped `begun` therefore serves
/// everything that node's response named. Index 0: nothing applied.
#[derive(Debug)]
pub(crate) struct Watermark {
    begun: AtomicU64,
    done: tokio::sync::watch::Sender<u64>,
    /// Set when a snapshot install failed: nothing will be applied past it.
    failed: std::sync::atomic::AtomicBool,
}

impl Watermark {
    fn new(applied: u64) -> Watermark {
        Watermark {
            begun: AtomicU64::new(applied),
            done: tokio::sync::watch::Sender::new(applied),
            failed: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// A snapshot install failed (openraft stops the node): wake every waiter, for good.
    fn fail(&self) {
        self.failed.store(true, Ordering::SeqCst);
        self.done.send_modify(|_| {});
    }

    fn begin(&self, index: u64) {
        self.begun.fetch_max(index, Ordering::SeqCst);
    }

    fn finish(&self, index: u64) {
        self.done.send_if_modified(|d| {
            let raised = index > *d;
            if raised {
                *d = index;
            }
            raised
        });
    }

    /// An upper bound of the entries whose writes a reader may have seen so far.
    pub(crate) fn begun(&self) -> u64 {
        self.begun.load(Ordering::SeqCst)
    }

    /// Wait until every write up to `index` is visible to readers; whether it was within
    /// `timeout` (false at once after a failed install).
    pub(crate) async fn wait_done(&self, index: u64, timeout: std::time::Duration) -> bool {
        let mut rx = self.done.subscribe();
        let failed = || self.failed.load(Ordering::SeqCst);
        tokio::time::timeout(timeout, rx.wait_for(|d| *d >= index || failed()))
            .await
            .is_ok_and(|r| r.is_ok())
            && *self.done.borrow() >= index
    }
}

/// What the size-aware snapshot policy weighs ([`crate::node`]): the bytes of commands applied
/// since the current snapshot was taken, against that snapshot's size. Both are estimates kept
/// in memory: after a restart, the bytes applied before it are not counted, so the first
/// snapshot after a restart comes later rather than sooner.
#[derive(Debug, Default)]
pub(crate) struct SnapshotSizes {
    /// Bytes of commands applied since this process started.
    applied: AtomicU64,
    /// `applied` when the current snapshot was taken.
    at_snapshot: AtomicU64,
    /// Size of the current snapshot's files.
    snapshot: AtomicU64,
}

impl SnapshotSizes {
    fn new(snapshot_bytes: u64) -> SnapshotSizes {
        SnapshotSizes {
            snapshot: AtomicU64::new(snapshot_bytes),
            ..SnapshotSizes::default()
        }
    }

    fn applied(&self, bytes: u64) {
        self.applied.fetch_add(bytes, Ordering::Relaxed);
    }

    /// A snapshot of `bytes` was taken when `applied` was `at`.
    fn taken(&self, at: u64, bytes: u64) {
        self.at_snapshot.store(at, Ordering::Relaxed);
        self.snapshot.store(bytes, Ordering::Relaxed);
    }

    /// Bytes of commands applied since the current snapshot was taken.
    pub(crate) fn since_snapshot(&self) -> u64 {
        self.applied
            .load(Ordering::Relaxed)
            .saturating_sub(self.at_snapshot.load(Ordering::Relaxed))
    }

    /// Size of the current snapshot's files (0: none).
    pub(crate) fn snapshot_bytes(&self) -> u64 {
        self.snapshot.load(Ordering::Relaxed)
    }
}

/// The replicated state machine: applies [`seal_storage::Command`]s, builds and installs snapshots.
#[derive(Debug, Clone)]
pub struct StateMachine {
    store: Store,
    snapshots: Arc<Snapshots>,
    watermark: Arc<Watermark>,
    sizes: Arc<SnapshotSizes>,
    /// When the snapshot being received began arriving (for the install's log line).
    receiving_since: Option<std::time::Instant>,
}

impl StateMachine {
    /// Wrap an open store; snapshots go to `snapshot_dir` (created if missing).
    pub fn new(store: Store, snapshot_dir: &Path) -> Result<StateMachine, std::io::Error> {
        std::fs::create_dir_all(snapshot_dir)?;
        let current = match std::fs::read(snapshot_dir.join(CURRENT_META)) {
            Ok(bytes) => Some(postcard::from_bytes::<SnapshotMeta>(&bytes).map_err(std::io::Error::other)?),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        let snapshots = Snapshots {
            dir: snapshot_dir.to_path_buf(),
            current: Mutex::new(current),
        };
        let mut snapshot_bytes = snapshots.current().map_or(0, |m| {
            seal_storage::dir_size(&snapshots.path(&m.snapshot_id)).map_or(0, |(_, bytes)| bytes)
        });
        if snapshots
            .current()
            .is_some_and(|m| !snapshots.path(&m.snapshot_id).is_dir())
        {
            // A snapshot file of on-disk format 1: the log may be purged up to it, so a
            // checkpoint of the state (which holds at least as much) takes its place.
            let (meta, info) = build_checkpoint(&store, &snapshots).map_err(std::io::Error::other)?;
            snapshots.set_current(meta).map_err(std::io::Error::other)?;
            snapshot_bytes = info.bytes;
        }
        snapshots.prune();
        let (applied, _) = store.applied_state().map_err(std::io::Error::other)?;
        let applied = match applied {
            Some(b) => {
                decode::<LogId>(&b, ErrorSubject::StateMachine)
                    .map_err(std::io::Error::other)?
                    .index
            }
            None => 0,
        };
        Ok(StateMachine {
            store,
            snapshots: Arc::new(snapshots),
            watermark: Arc::new(Watermark::new(applied)),
            sizes: Arc::new(SnapshotSizes::new(snapshot_bytes)),
            receiving_since: None,
        })
    }

    /// The sizes the snapshot policy weighs.
    pub(crate) fn sizes(&self) -> Arc<SnapshotSizes> {
        self.sizes.clone()
    }

    /// What readers of the store may see of the applied log.
    pub(crate) fn watermark(&self) -> Arc<Watermark> {
        self.watermark.clone()
    }

    /// The underlying store.
    pub fn store(&self) -> &Store {
        &self.store
    }
}

/// Builds snapshots as checkpoints of the state machine's database.
#[derive(Debug)]
pub struct SnapshotBuilder {
    store: Store,
    snapshots: Arc<Snapshots>,
    sizes: Arc<SnapshotSizes>,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot, StorageError> {
        let store = self.store.clone();
        let snapshots = self.snapshots.clone();
        // Taken before the build: the build covers at least what was applied by now.
        let applied_before = self.sizes.applied.load(Ordering::Relaxed);
        let started = std::time::Instant::now();
        let (meta, info) = tokio::task::spawn_blocking(move || build_checkpoint(&store, &snapshots))
            .await
            .map_err(|e| join_err(ErrorSubject::Snapshot(None), ErrorVerb::Write, &e))??;
        tracing::info!(
            files = info.files,
            bytes = info.bytes,
            millis = started.elapsed().as_millis() as u64,
            writers_waited_millis = info.writers_waited.as_millis() as u64,
            "built a state-machine snapshot (checkpoint)"
        );
        self.snapshots.set_current(meta.clone())?;
        self.sizes.taken(applied_before, info.bytes);
        let data = self.snapshots.send(&meta.snapshot_id)?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(data),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        let (applied, membership) = self
            .store
            .applied_state()
            .map_err(store_err(ErrorSubject::StateMachine, ErrorVerb::Read))?;
        let applied = match applied {
            Some(b) => Some(decode(&b, ErrorSubject::StateMachine)?),
            None => None,
        };
        let membership = match membership {
            Some(b) => decode(&b, ErrorSubject::StateMachine)?,
            None => StoredMembership::default(),
        };
        Ok((applied, membership))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<ApplyOutcome>, StorageError>
    where
        I: IntoIterator<Item = Entry> + openraft::OptionalSend,
        I::IntoIter: openraft::OptionalSend,
    {
        let mut out = Vec::new();
        for entry in entries {
            let log_id = entry.log_id;
            let subject = || ErrorSubject::Apply(log_id);
            let last_applied = encode(&log_id, subject())?;
            self.watermark.begin(log_id.index);
            match entry.payload {
                EntryPayload::Blank => {
                    self.store
                        .record_applied(Applied {
                            last_applied: &last_applied,
                            membership: None,
                        })
                        .map_err(store_err(subject(), ErrorVerb::Write))?;
                    out.push(ApplyOutcome::Applied);
                }
                EntryPayload::Membership(m) => {
                    let stored = StoredMembership::new(Some(log_id), m);
                    let membership = encode(&stored, subject())?;
                    self.store
                        .record_applied(Applied {
                            last_applied: &last_applied,
                            membership: Some(&membership),
                        })
                        .map_err(store_err(subject(), ErrorVerb::Write))?;
                    out.push(ApplyOutcome::Applied);
                }
                EntryPayload::Normal(cmd) => {
                    self.sizes.applied(cmd.approx_bytes());
                    let outcome = self
                        .store
                        .apply(
                            &cmd,
                            Applied {
                                last_applied: &last_applied,
                                membership: None,
                            },
                        )
                        .map_err(store_err(subject(), ErrorVerb::Write))?;
                    out.push(outcome);
                }
            }
            self.watermark.finish(log_id.index);
        }
        Ok(out)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        SnapshotBuilder {
            store: self.store.clone(),
            snapshots: self.snapshots.clone(),
            sizes: self.sizes.clone(),
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<SnapshotData>, StorageError> {
        // Removed at the next start if never installed.
        let dir = self.snapshots.dir.join(format!("{INCOMING}{}", unique()));
        let data = SnapshotData::receive(&dir).map_err(snap_err(ErrorVerb::Write))?;
        self.receiving_since = Some(std::time::Instant::now());
        Ok(Box::new(data))
    }

    async fn install_snapshot(&mut self, meta: &SnapshotMeta, snapshot: Box<SnapshotData>) -> Result<(), StorageError> {
        let result = self.install(meta, snapshot).await;
        if result.is_err() {
            self.watermark.fail();
        }
        result
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, StorageError> {
        let Some(meta) = self.snapshots.current() else {
            return Ok(None);
        };
        let data = self.snapshots.send(&meta.snapshot_id)?;
        Ok(Some(Snapshot {
            meta,
            snapshot: Box::new(data),
        }))
    }
}

impl StateMachine {
    /// [`RaftStateMachine::install_snapshot`], without marking the watermark failed.
    async fn install(&mut self, meta: &SnapshotMeta, snapshot: Box<SnapshotData>) -> Result<(), StorageError> {
        let subject = || ErrorSubject::Snapshot(Some(meta.signature()));
        let io = |verb| move |e: std::io::Error| io_err(ErrorSubject::Snapshot(Some(meta.signature())), verb, &e);
        let data = *snapshot;
        let received_at = std::time::Instant::now();
        let receiving_millis = self
            .receiving_since
            .take()
            .map(|since| received_at.duration_since(since).as_millis() as u64);
        // Every file arrived whole and matches its checksum (or this fails, changing nothing).
        let copy_to = self.snapshots.dir.join(format!("{INCOMING}{}", unique()));
        let partial = data.receiving_dir().unwrap_or(&copy_to).to_path_buf();
        let to = copy_to.clone();
        let received = tokio::task::spawn_blocking(move || data.into_dir(&to))
            .await
            .map_err(|e| join_err(subject(), ErrorVerb::Read, &e))?;
        let received = match received {
            Ok(dir) => dir,
            Err(e) => {
                remove_quietly(&partial);
                return Err(io(ErrorVerb::Read)(e));
            }
        };
        seal_storage::crash_point("received");
        let path = self.snapshots.path(&meta.snapshot_id);
        if path.exists() && path != received {
            remove_quietly(&path);
        }
        std::fs::rename(&received, &path).map_err(io(ErrorVerb::Write))?;
        std::fs::File::open(&self.snapshots.dir)
            .and_then(|d| d.sync_all())
            .map_err(io(ErrorVerb::Write))?;
        seal_storage::crash_point("renamed");

        let store = self.store.clone();
        let src = path.clone();
        if let Some(l) = &meta.last_log_id {
            self.watermark.begin(l.index);
        }
        let info = tokio::task::spawn_blocking(move || store.install_checkpoint(&src))
            .await
            .map_err(|e| join_err(subject(), ErrorVerb::Write, &e))?
            .map_err(store_err(subject(), ErrorVerb::Write))?;
        let installed: Option<LogId> = match &info.last_applied {
            Some(b) => Some(decode(b, subject())?),
            None => None,
        };
        if installed != meta.last_log_id {
            tracing::warn!(
                ?installed,
                expected = ?meta.last_log_id,
                "snapshot content's last applied differs from its metadata"
            );
        }
        if let Some(l) = installed {
            self.watermark.finish(l.index);
        }
        self.snapshots.set_current(meta.clone())?;
        seal_storage::crash_point("current");
        self.sizes.taken(self.sizes.applied.load(Ordering::Relaxed), info.bytes);
        tracing::info!(
            files = info.files,
            bytes = info.bytes,
            receiving_millis,
            install_millis = received_at.elapsed().as_millis() as u64,
            "installed a state-machine snapshot (checkpoint)"
        );
        Ok(())
    }
}
