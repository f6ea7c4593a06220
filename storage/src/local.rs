//! What a node records of itself beside the replicated state: the on-disk format version, its
//! node id and its cluster's id (in the Raft metadata column family, never replicated and never in
//! a snapshot), and point-in-time copies of the whole database (checkpoints, for backups).

use std::path::{Path, PathBuf};

use rocksdb::checkpoint::Checkpoint;
use rocksdb::{IteratorMode, WriteBatch, DB};

use crate::error::{rocks, Error, Result};
use crate::keys::*;
use crate::state::{generation_dir, sync_dir, StateDb};
use crate::store::{RaftMetaKey, Store};

/// The newest on-disk format this build reads and the one it writes. A database recording a
/// newer one is refused at open ([`Error::FormatTooNew`]); one recording none (made before
/// formats were recorded) is format 1.
///
/// * 1: one RocksDB, the state machine's column families beside the Raft log's.
/// * 2: the state machine in its own RocksDB, one generation directory of `state/` at a time
///   ([`crate::state`]), so that snapshots are checkpoints.
/// * 3: a timestamp's expiry and bytes kept in `current` beside its version
///   ([`crate::keys::CurrentEntry`]). Format 3 reads format 2's values as they are, so a format-2
///   database is recorded as format 3 at open with nothing rewritten; a build of format 2 refuses
///   it afterwards, and refuses a format-3 snapshot ([`crate::archive::MAGIC`]).
pub const FORMAT_VERSION: u32 = 3;

fn read_u64(db: &DB, key: &[u8]) -> Result<Option<u64>> {
    let cf = db
        .cf_handle(CF_RAFT_META)
        .ok_or(Error::MissingColumnFamily { cf: CF_RAFT_META })?;
    match db.get_cf(cf, key).map_err(rocks("get"))? {
        None => Ok(None),
        Some(b) => <[u8; 8]>::try_from(b.as_slice())
            .map(|a| Some(u64::from_be_bytes(a)))
            .map_err(|_| Error::Corrupt {
                cf: CF_RAFT_META,
                key_hex: hex::encode(key),
                reason: format!("expected 8 bytes, found {}", b.len()),
            }),
    }
}

/// Record format 2 with the state machine at generation `generation`, synced: the commit point
/// of a migration, of a new database, and (the generation alone) of an install.
pub(crate) fn record_generation(db: &DB, generation: u64) -> Result<()> {
    let cf = db
        .cf_handle(CF_RAFT_META)
        .ok_or(Error::MissingColumnFamily { cf: CF_RAFT_META })?;
    let mut batch = WriteBatch::default();
    batch.put_cf(cf, RM_SM_GENERATION, generation.to_be_bytes());
    batch.put_cf(cf, RM_FORMAT, FORMAT_VERSION.to_be_bytes());
    let mut wo = rocksdb::WriteOptions::default();
    wo.set_sync(true);
    #[cfg(feature = "fault-injection")]
    crate::faults::before_sync();
    db.write_opt(batch, &wo).map_err(rocks("write"))
}

/// Check the recorded on-disk format of the Raft database `db` at `path` (refusing a newer one)
/// and return the state machine's recorded generation: `None` for a new database or one of
/// format 1. Called by [`Store::open`].
pub(crate) fn check_format(db: &DB, path: &Path) -> Result<Option<u64>> {
    let cf = db
        .cf_handle(CF_RAFT_META)
        .ok_or(Error::MissingColumnFamily { cf: CF_RAFT_META })?;
    let mut found = None;
    if let Some(bytes) = db.get_cf(cf, RM_FORMAT).map_err(rocks("get"))? {
        let format = <[u8; 4]>::try_from(bytes.as_slice())
            .map(u32::from_be_bytes)
            .map_err(|_| Error::Corrupt {
                cf: CF_RAFT_META,
                key_hex: hex::encode(RM_FORMAT),
                reason: format!("format version of {} bytes", bytes.len()),
            })?;
        if format > FORMAT_VERSION {
            return Err(Error::FormatTooNew {
                path: path.to_path_buf(),
                found: format,
                supported: FORMAT_VERSION,
            });
        }
        found = Some(format);
    }
    let generation = read_u64(db, RM_SM_GENERATION)?;
    // Format 2 to 3 rewrites nothing (format 3 reads format 2's values): it is only recorded, so
    // that a build of format 2 no longer opens what this one writes.
    if let (Some(2), Some(g)) = (found, generation) {
        record_generation(db, g)?;
    }
    Ok(generation)
}

/// A new database: generation 1, empty.
pub(crate) fn create_format_2(db: &DB, path: &Path) -> Result<u64> {
    let dir = generation_dir(path, 1);
    start_generation_dir(&dir)?;
    drop(StateDb::open(&dir, 1)?);
    sync_dir(&dir)?;
    record_generation(db, 1)?;
    Ok(1)
}

/// Remove what an interrupted attempt left in `dir` and make sure its parent exists.
fn start_generation_dir(dir: &Path) -> Result<()> {
    let io = |source| Error::Io {
        path: dir.to_path_buf(),
        source,
    };
    if dir.exists() {
        std::fs::remove_dir_all(dir).map_err(io)?;
    }
    if let Some(parent) = dir.parent() {
        std::fs::create_dir_all(parent).map_err(|source| Error::Io {
            path: parent.to_path_buf(),
            source,
        })?;
    }
    Ok(())
}

/// Move a format-1 database's state machine (its column families in the Raft database `db`)
/// into generation 1 of its own database: copied in bounded batches, made durable, then format 2
/// and the generation recorded in one synced write. A crash before that write leaves format 1
/// (the copy is redone at the next open); after it, the old families are only dropped
/// ([`Store::open`]). Refused while a format-1 snapshot install is unfinished: the release that
/// began it must finish it first.
pub(crate) fn migrate_format_1(db: &DB, path: &Path) -> Result<u64> {
    let meta = db
        .cf_handle(CF_RAFT_META)
        .ok_or(Error::MissingColumnFamily { cf: CF_RAFT_META })?;
    if let Some(from) = db.get_cf(meta, RM_INSTALLING).map_err(rocks("get"))? {
        return Err(Error::InstallUnrecoverable {
            path: PathBuf::from(String::from_utf8_lossy(&from).into_owned()),
        });
    }
    let dir = generation_dir(path, 1);
    start_generation_dir(&dir)?;
    let sm = StateDb::open(&dir, 1)?;
    const BATCH_BYTES: usize = 4 << 20;
    for name in SM_CFS {
        let from = db.cf_handle(name).ok_or(Error::MissingColumnFamily { cf: name })?;
        let to = sm.cf(name)?;
        let mut batch = WriteBatch::default();
        for item in db.iterator_cf(from, IteratorMode::Start) {
            let (k, v) = item.map_err(rocks("iterate for migration"))?;
            batch.put_cf(to, k, v);
            if batch.size_in_bytes() >= BATCH_BYTES {
                sm.write(std::mem::take(&mut batch))?;
            }
        }
        sm.write(batch)?;
    }
    sm.db().flush_wal(true).map_err(rocks("sync the state machine's log"))?;
    drop(sm);
    sync_dir(&dir)?;
    record_generation(db, 1)?;
    Ok(1)
}

impl Store {
    /// The on-disk format version recorded in this database.
    pub fn format_version(&self) -> Result<u32> {
        Ok(self
            .inner
            .get(CF_RAFT_META, RM_FORMAT)?
            .and_then(|b| <[u8; 4]>::try_from(b.as_slice()).ok())
            .map_or(1, u32::from_be_bytes))
    }

    pub(crate) fn put_local(&self, key: &[u8], value: &[u8]) -> Result<()> {
        let mut batch = WriteBatch::default();
        batch.put_cf(self.inner.cf(CF_RAFT_META)?, key, value);
        self.inner.write(batch, true)
    }

    /// The node id this database belongs to, if one was recorded.
    pub fn node_id(&self) -> Result<Option<u64>> {
        read_u64(&self.inner.db, RM_NODE_ID)
    }

    /// Open this database as node `node_id`: record it the first time, refuse
    /// ([`Error::NodeIdMismatch`]) when another id was recorded (a data directory copied from
    /// another node would otherwise join its cluster under a second identity).
    pub fn claim_node_id(&self, node_id: u64) -> Result<()> {
        match self.node_id()? {
            Some(recorded) if recorded == node_id => Ok(()),
            Some(recorded) => Err(Error::NodeIdMismatch {
                path: self.inner.path.clone(),
                recorded,
                configured: node_id,
            }),
            None => self.put_local(RM_NODE_ID, &node_id.to_be_bytes()),
        }
    }

    /// Record `node_id` as this database's node, whatever was recorded before (a restored
    /// backup becoming a new node).
    pub fn reassign_node_id(&self, node_id: u64) -> Result<()> {
        self.put_local(RM_NODE_ID, &node_id.to_be_bytes())
    }

    /// The id of the cluster this database belongs to, if one was recorded.
    pub fn cluster_id(&self) -> Result<Option<String>> {
        match self.inner.get(CF_RAFT_META, RM_CLUSTER_ID)? {
            None => Ok(None),
            Some(b) => String::from_utf8(b).map(Some).map_err(|e| Error::Corrupt {
                cf: CF_RAFT_META,
                key_hex: hex::encode(RM_CLUSTER_ID),
                reason: e.to_string(),
            }),
        }
    }

    /// Record `id` as this database's cluster id (durably).
    pub fn set_cluster_id(&self, id: &str) -> Result<()> {
        self.put_local(RM_CLUSTER_ID, id.as_bytes())
    }

    /// Whether this database holds nothing of any cluster: no log entry (kept or purged), no
    /// vote, nothing applied. Only such a node may join a cluster it has no id of.
    pub fn is_pristine(&self) -> Result<bool> {
        Ok(self.log_last()?.is_none()
            && self.log_last_purged()?.is_none()
            && self.raft_meta_get(RaftMetaKey::Vote)?.is_none()
            && self.applied_state()?.0.is_none())
    }

    /// Write a consistent point-in-time copy of the whole database (the Raft database, the
    /// node's own records included, and the state machine's current generation under
    /// `dir/state`) to `dir`, which must not exist: RocksDB checkpoints (SST files hard-linked
    /// when `dir` is on the same file system, copied otherwise; memtables flushed first). Log
    /// appends go on; the state machine's writers wait while its copy and the log's are made, so
    /// the copy's log holds every entry its state machine has not applied.
    pub fn checkpoint(&self, dir: &Path) -> Result<()> {
        if dir.exists() {
            return Err(Error::Io {
                path: dir.to_path_buf(),
                source: std::io::Error::new(std::io::ErrorKind::AlreadyExists, "already exists"),
            });
        }
        let _guard = self.inner.lock();
        let sm = self.inner.sm();
        let checkpoint = Checkpoint::new(&self.inner.db).map_err(rocks("checkpoint"))?;
        checkpoint.create_checkpoint(dir).map_err(rocks("checkpoint"))?;
        let sm_dir = generation_dir(dir, sm.generation());
        if let Some(parent) = sm_dir.parent() {
            std::fs::create_dir_all(parent).map_err(|source| Error::Io {
                path: parent.to_path_buf(),
                source,
            })?;
        }
        let checkpoint = Checkpoint::new(sm.db()).map_err(rocks("checkpoint"))?;
        checkpoint.create_checkpoint(&sm_dir).map_err(rocks("checkpoint"))?;
        sync_dir(dir)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_format_is_recorded_and_a_newer_one_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        {
            let store = Store::open(&path).unwrap();
            assert_eq!(store.format_version().unwrap(), FORMAT_VERSION);
            store.put_local(RM_FORMAT, &(FORMAT_VERSION + 1).to_be_bytes()).unwrap();
        }
        let err = Store::open(&path).unwrap_err();
        assert!(matches!(err, Error::FormatTooNew { found, .. } if found == FORMAT_VERSION + 1));
        assert!(err.to_string().contains("is newer than this Seal reads"), "{err}");
    }

    #[test]
    fn a_node_id_is_claimed_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("db")).unwrap();
        assert_eq!(store.node_id().unwrap(), None);
        store.claim_node_id(2).unwrap();
        store.claim_node_id(2).unwrap();
        let err = store.claim_node_id(4).unwrap_err();
        assert!(matches!(
            err,
            Error::NodeIdMismatch {
                recorded: 2,
                configured: 4,
                ..
            }
        ));
        store.reassign_node_id(4).unwrap();
        assert_eq!(store.node_id().unwrap(), Some(4));
    }

    #[test]
    fn a_checkpoint_holds_everything_and_refuses_to_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("db")).unwrap();
        assert!(store.is_pristine().unwrap());
        store.set_cluster_id("c1").unwrap();
        store.log_append([(1, b"entry".to_vec())]).unwrap();
        assert!(!store.is_pristine().unwrap());
        let copy = dir.path().join("copy");
        store.checkpoint(&copy).unwrap();
        assert!(matches!(store.checkpoint(&copy), Err(Error::Io { .. })));
        drop(store);
        let restored = Store::open(&copy).unwrap();
        assert_eq!(restored.cluster_id().unwrap().as_deref(), Some("c1"));
        assert_eq!(restored.log_last().unwrap(), Some((1, b"entry".to_vec())));
    }
}
