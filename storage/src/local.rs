//! What a node records of itself beside the replicated state: the on-disk format version, its
//! node id and its cluster's id (in the Raft metadata column family, never replicated and never in
//! a snapshot), and point-in-time copies of the whole database (checkpoints, for backups).

use std::path::Path;

use rocksdb::checkpoint::Checkpoint;
use rocksdb::WriteBatch;

use crate::error::{rocks, Error, Result};
use crate::keys::*;
use crate::store::{RaftMetaKey, Store};

/// The newest on-disk format this build reads and the one it writes. A database recording a
/// newer one is refused at open ([`Error::FormatTooNew`]); one recording none (made before
/// formats were recorded) is format 1.
pub const FORMAT_VERSION: u32 = 1;

impl Store {
    /// Check the recorded on-disk format (refusing a newer one) and record this build's when none
    /// is; called by [`Store::open`].
    pub(crate) fn check_format(&self) -> Result<()> {
        match self.inner.get(CF_RAFT_META, RM_FORMAT)? {
            Some(bytes) => {
                let found = <[u8; 4]>::try_from(bytes.as_slice())
                    .map(u32::from_be_bytes)
                    .map_err(|_| Error::Corrupt {
                        cf: CF_RAFT_META,
                        key_hex: hex::encode(RM_FORMAT),
                        reason: format!("format version of {} bytes", bytes.len()),
                    })?;
                if found > FORMAT_VERSION {
                    return Err(Error::FormatTooNew {
                        path: self.inner.path.clone(),
                        found,
                        supported: FORMAT_VERSION,
                    });
                }
                Ok(())
            }
            None => self.put_local(RM_FORMAT, &FORMAT_VERSION.to_be_bytes()),
        }
    }

    /// The on-disk format version recorded in this database.
    pub fn format_version(&self) -> Result<u32> {
        Ok(self
            .inner
            .get(CF_RAFT_META, RM_FORMAT)?
            .and_then(|b| <[u8; 4]>::try_from(b.as_slice()).ok())
            .map_or(1, u32::from_be_bytes))
    }

    fn put_local(&self, key: &[u8], value: &[u8]) -> Result<()> {
        let mut batch = WriteBatch::default();
        batch.put_cf(self.inner.cf(CF_RAFT_META)?, key, value);
        self.inner.write(batch, true)
    }

    /// The node id this database belongs to, if one was recorded.
    pub fn node_id(&self) -> Result<Option<u64>> {
        match self.inner.get(CF_RAFT_META, RM_NODE_ID)? {
            None => Ok(None),
            Some(b) => <[u8; 8]>::try_from(b.as_slice())
                .map(|a| Some(u64::from_be_bytes(a)))
                .map_err(|_| Error::Corrupt {
                    cf: CF_RAFT_META,
                    key_hex: hex::encode(RM_NODE_ID),
                    reason: format!("node id of {} bytes", b.len()),
                }),
        }
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

    /// Write a consistent point-in-time copy of the whole database (every column family, the
    /// node's own records included) to `dir`, which must not exist: a RocksDB checkpoint (SST
    /// files hard-linked when `dir` is on the same file system, copied otherwise; memtables
    /// flushed first). Writers are not stopped.
    pub fn checkpoint(&self, dir: &Path) -> Result<()> {
        if dir.exists() {
            return Err(Error::Io {
                path: dir.to_path_buf(),
                source: std::io::Error::new(std::io::ErrorKind::AlreadyExists, "already exists"),
            });
        }
        let checkpoint = Checkpoint::new(&self.inner.db).map_err(rocks("checkpoint"))?;
        checkpoint.create_checkpoint(dir).map_err(rocks("checkpoint"))
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
