//! [`StateMachine`]: openraft's state machine over the state-machine column
//! families, with snapshots streamed through files.
//!
//! Snapshot files live in `<data dir>/snapshots/<snapshot id>.snap`; the
//! metadata of the current one in `<data dir>/snapshots/current.meta`
//! (written after the file, via a temporary file, fsync and rename, so it never
//! names a missing or partial file). Older snapshot files are removed once a
//! newer one is current. Installing a received snapshot first copies it to its
//! own `.snap` file (fsync'd), then lets [`seal_storage::Store::install_snapshot`]
//! replace the state machine crash-safely from that file.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use openraft::storage::RaftStateMachine;
use openraft::{EntryPayload, ErrorSubject, ErrorVerb, RaftSnapshotBuilder};
use seal_storage::{Applied, ApplyOutcome, Store};
use tokio::io::{AsyncSeekExt, AsyncWriteExt};

use crate::codec::{decode, encode, io_err, join_err};
use crate::types::{Entry, LogId, Snapshot, SnapshotMeta, StorageError, StoredMembership, TypeConfig};

const CURRENT_META: &str = "current.meta";
const SNAP_EXT: &str = "snap";

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

impl Snapshots {
    fn file(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.{SNAP_EXT}"))
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
                // A newer snapshot won the race; drop this one's file.
                remove_quietly(&self.file(&meta.snapshot_id));
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
                // Open handles (a snapshot being sent) keep reading it on Unix.
                remove_quietly(&self.file(&prev.snapshot_id));
            }
        }
        Ok(())
    }

    /// At start-up: remove every file except the current snapshot and its metadata
    /// (older snapshots, partial builds, temporary copies).
    fn prune(&self) {
        let keep = self.current().map(|m| format!("{}.{SNAP_EXT}", m.snapshot_id));
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
    if let Err(err) = std::fs::remove_file(path) {
        if err.kind() != std::io::ErrorKind::NotFound {
            tracing::warn!(file = %path.display(), %err, "cannot remove old snapshot file");
        }
    }
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
}

impl Watermark {
    fn new(applied: u64) -> Watermark {
        Watermark {
            begun: AtomicU64::new(applied),
            done: tokio::sync::watch::Sender::new(applied),
        }
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

    /// Wait until every write up to `index` is visible to readers; whether it was within `timeout`.
    pub(crate) async fn wait_done(&self, index: u64, timeout: std::time::Duration) -> bool {
        let mut rx = self.done.subscribe();
        tokio::time::timeout(timeout, rx.wait_for(|d| *d >= index))
            .await
            .is_ok_and(|r| r.is_ok())
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
    /// Size of the current snapshot file.
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

    /// Size of the current snapshot file (0: none).
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
        snapshots.prune();
        let snapshot_bytes = snapshots
            .current()
            .and_then(|m| std::fs::metadata(snapshots.file(&m.snapshot_id)).ok())
            .map_or(0, |m| m.len());
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

/// Builds snapshots from a consistent RocksDB snapshot into a file.
#[derive(Debug)]
pub struct SnapshotBuilder {
    store: Store,
    snapshots: Arc<Snapshots>,
    sizes: Arc<SnapshotSizes>,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot, StorageError> {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        // The id is unique per build; the applied state comes from the file itself.
        let tmp_path = self.snapshots.dir.join(format!("building-{nanos}.partial"));
        let store = self.store.clone();
        let path = tmp_path.clone();
        // Taken before the build: the build covers at least what was applied by now.
        let applied_before = self.sizes.applied.load(Ordering::Relaxed);
        let started = std::time::Instant::now();
        let info = tokio::task::spawn_blocking(move || store.write_snapshot(&path))
            .await
            .map_err(|e| join_err(ErrorSubject::Snapshot(None), ErrorVerb::Write, &e))?
            .map_err(store_err(ErrorSubject::Snapshot(None), ErrorVerb::Write))?;
        tracing::info!(
            records = info.records,
            bytes = info.bytes,
            millis = started.elapsed().as_millis() as u64,
            "built a state-machine snapshot"
        );
        let last_log_id: Option<LogId> = match &info.last_applied {
            Some(b) => Some(decode(b, ErrorSubject::Snapshot(None))?),
            None => None,
        };
        let last_membership: StoredMembership = match &info.membership {
            Some(b) => decode(b, ErrorSubject::Snapshot(None))?,
            None => StoredMembership::default(),
        };
        let snapshot_id = match &last_log_id {
            Some(l) => format!("{}-{}-{}-{nanos}", l.leader_id.term, l.leader_id.node_id, l.index),
            None => format!("0-0-0-{nanos}"),
        };
        let final_path = self.snapshots.file(&snapshot_id);
        std::fs::rename(tmp_path.as_path(), final_path.as_path()).map_err(snap_err(ErrorVerb::Write))?;
        let meta = SnapshotMeta {
            last_log_id,
            last_membership,
            snapshot_id,
        };
        self.snapshots.set_current(meta.clone())?;
        self.sizes.taken(applied_before, info.bytes);
        let file = tokio::fs::File::open(final_path.as_path())
            .await
            .map_err(snap_err(ErrorVerb::Read))?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(file),
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

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<tokio::fs::File>, StorageError> {
        // An unlinked temporary file: never left behind, whatever happens.
        let f = tempfile::tempfile_in(&self.snapshots.dir).map_err(snap_err(ErrorVerb::Write))?;
        Ok(Box::new(tokio::fs::File::from_std(f)))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<tokio::fs::File>,
    ) -> Result<(), StorageError> {
        let subject = || ErrorSubject::Snapshot(Some(meta.signature()));
        let io = |verb| move |e: std::io::Error| io_err(ErrorSubject::Snapshot(Some(meta.signature())), verb, &e);
        let mut src = *snapshot;
        src.flush().await.map_err(io(ErrorVerb::Write))?;
        src.seek(std::io::SeekFrom::Start(0))
            .await
            .map_err(io(ErrorVerb::Seek))?;
        // Keep our own durable copy: it is the current snapshot afterwards and
        // the source of crash recovery while installing.
        let final_path = self.snapshots.file(&meta.snapshot_id);
        let tmp_path = self.snapshots.dir.join(format!("{}.{SNAP_EXT}.tmp", meta.snapshot_id));
        let mut dst = tokio::fs::File::create(&tmp_path).await.map_err(io(ErrorVerb::Write))?;
        tokio::io::copy(&mut src, &mut dst)
            .await
            .map_err(io(ErrorVerb::Write))?;
        dst.sync_all().await.map_err(io(ErrorVerb::Write))?;
        drop(dst);
        tokio::fs::rename(tmp_path.as_path(), final_path.as_path())
            .await
            .map_err(io(ErrorVerb::Write))?;

        let store = self.store.clone();
        let path = final_path.clone();
        if let Some(l) = &meta.last_log_id {
            self.watermark.begin(l.index);
        }
        let info = tokio::task::spawn_blocking(move || store.install_snapshot(&path))
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
        self.sizes.taken(self.sizes.applied.load(Ordering::Relaxed), info.bytes);
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, StorageError> {
        let Some(meta) = self.snapshots.current() else {
            return Ok(None);
        };
        let file = tokio::fs::File::open(self.snapshots.file(&meta.snapshot_id))
            .await
            .map_err(snap_err(ErrorVerb::Read))?;
        Ok(Some(Snapshot {
            meta,
            snapshot: Box::new(file),
        }))
    }
}
