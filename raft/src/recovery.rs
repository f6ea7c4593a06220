//! Recovery of a stopped node's data directory: backups of the whole database, and making a
//! node with its data the single voter of a new cluster — after losing a majority of voters for
//! good (`seal-node cluster force-new --from-this-node`), or to start from a backup
//! (`seal-node restore`).
//!
//! A forced new cluster keeps everything in the node's log, applied or not: entries the node
//! holds but has not applied are committed by its new one-voter membership and applied when it
//! starts, as etcd's `--force-new-cluster` does. What it loses are entries it never received.
//! The node gets a new cluster id, so the old cluster's members, should they come back, are
//! refused rather than mixed in ([`crate::identity`]).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use openraft::{BasicNode, CommittedLeaderId, EntryPayload, ErrorSubject};
use seal_storage::{RaftMetaKey, Store};
use serde::{Deserialize, Serialize};

use crate::codec::{decode, encode};
use crate::identity::new_cluster_id;
use crate::types::{Entry, LogId, StoredMembership, Vote};

/// Name of the description a backup directory holds beside its database (`db/`).
pub const BACKUP_MANIFEST: &str = "backup.json";

/// Why a recovery step failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RecoveryError {
    /// The database could not be opened or read (still in use by a running node, for one).
    #[error("{path}: {source}")]
    Store {
        /// The database directory.
        path: PathBuf,
        /// What went wrong.
        #[source]
        source: seal_storage::Error,
    },
    /// A stored Raft value could not be decoded or encoded.
    #[error("{path}: {reason}")]
    Codec {
        /// The database directory.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// A file or directory could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The path concerned.
        path: PathBuf,
        /// What went wrong.
        #[source]
        source: std::io::Error,
    },
    /// The request cannot be carried out as asked.
    #[error("{0}")]
    Refused(String),
}

/// What a database holds, as a backup's manifest and recovery reports tell it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataSummary {
    /// The node id recorded in the database.
    pub node_id: Option<u64>,
    /// The cluster id recorded in it.
    pub cluster_id: Option<String>,
    /// The on-disk format version.
    pub format_version: u32,
    /// Index of the last applied entry.
    pub applied_index: Option<u64>,
    /// Index of the last log entry held (applied or not).
    pub last_log_index: Option<u64>,
    /// Voters of the membership last applied.
    pub voters: BTreeSet<u64>,
    /// Every member (voters and learners) of the membership last applied, with its address.
    pub members: BTreeMap<u64, String>,
}

fn store_err(path: &Path) -> impl Fn(seal_storage::Error) -> RecoveryError + '_ {
    move |source| RecoveryError::Store {
        path: path.to_path_buf(),
        source,
    }
}

fn codec_err(path: &Path) -> impl Fn(crate::types::StorageError) -> RecoveryError + '_ {
    move |e| RecoveryError::Codec {
        path: path.to_path_buf(),
        reason: e.to_string(),
    }
}

/// Summarise the database `store` (at `path`).
pub fn summarize(store: &Store, path: &Path) -> Result<DataSummary, RecoveryError> {
    let (applied, membership) = store.applied_state().map_err(store_err(path))?;
    let applied: Option<LogId> = applied
        .map(|b| decode(&b, ErrorSubject::StateMachine))
        .transpose()
        .map_err(codec_err(path))?;
    let membership: Option<StoredMembership> = membership
        .map(|b| decode(&b, ErrorSubject::StateMachine))
        .transpose()
        .map_err(codec_err(path))?;
    let last = last_log_id(store, path)?;
    let (voters, members) = match &membership {
        Some(m) => (
            m.membership().voter_ids().collect(),
            m.membership().nodes().map(|(id, n)| (*id, n.addr.clone())).collect(),
        ),
        None => Default::default(),
    };
    Ok(DataSummary {
        node_id: store.node_id().map_err(store_err(path))?,
        cluster_id: store.cluster_id().map_err(store_err(path))?,
        format_version: store.format_version().map_err(store_err(path))?,
        applied_index: applied.map(|l| l.index),
        last_log_index: last.map(|l| l.index),
        voters,
        members,
    })
}

/// The id of the last log entry held, or of the last purged one when none is held.
fn last_log_id(store: &Store, path: &Path) -> Result<Option<LogId>, RecoveryError> {
    if let Some((index, bytes)) = store.log_last().map_err(store_err(path))? {
        let entry: Entry = decode(&bytes, ErrorSubject::LogIndex(index)).map_err(codec_err(path))?;
        return Ok(Some(entry.log_id));
    }
    store
        .log_last_purged()
        .map_err(store_err(path))?
        .map(|b| decode(&b, ErrorSubject::Logs))
        .transpose()
        .map_err(codec_err(path))
}

/// Open the database of the stopped node whose Raft data directory is `raft_dir`, refusing when
/// there is none (a wrong `storage.data_dir` would otherwise get a new, empty one) or when a
/// running node holds it.
pub fn open_existing(raft_dir: &Path) -> Result<Store, RecoveryError> {
    let path = raft_dir.join("db");
    if !path.join("CURRENT").exists() {
        return Err(RecoveryError::Refused(format!(
            "{}: no database here (is storage.data_dir right?)",
            path.display()
        )));
    }
    Store::open(&path).map_err(|e| {
        RecoveryError::Refused(format!(
            "{}: {e} (is the node still running? stop it first, or back it up with --addr)",
            path.display()
        ))
    })
}

/// What [`force_new_cluster`] did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForcedCluster {
    /// The database before.
    pub before: DataSummary,
    /// The new cluster's id.
    pub cluster_id: String,
    /// Log index of the new one-voter membership entry.
    pub membership_index: u64,
    /// Its term.
    pub term: u64,
}

/// Make the stopped node whose Raft data directory is `raft_dir` (`<storage.data_dir>/raft`) the
/// single voter of a new cluster: node `node_id` at Raft address `raft_addr`, with a new cluster
/// id. Appends a membership entry after the last entry it holds, in a term above every term it
/// has seen, and records its vote for itself in that term; started, the node elects itself and
/// commits the entry, and everything before it. With `reassign`, the database is taken over by
/// `node_id` whatever node it belonged to (a restored backup); without, it must be `node_id`'s.
pub fn force_new_cluster(
    raft_dir: &Path,
    node_id: u64,
    raft_addr: &str,
    reassign: bool,
) -> Result<ForcedCluster, RecoveryError> {
    let path = raft_dir.join("db");
    let store = open_existing(raft_dir)?;
    if reassign {
        store.reassign_node_id(node_id).map_err(store_err(&path))?;
    } else {
        store.claim_node_id(node_id).map_err(store_err(&path))?;
    }
    let before = summarize(&store, &path)?;
    let vote: Option<Vote> = store
        .raft_meta_get(RaftMetaKey::Vote)
        .map_err(store_err(&path))?
        .map(|b| decode(&b, ErrorSubject::Vote))
        .transpose()
        .map_err(codec_err(&path))?;
    let last = last_log_id(&store, &path)?;
    let seen = vote
        .map(|v| v.leader_id().get_term())
        .max(last.map(|l| l.leader_id.term))
        .unwrap_or(0);
    let term = seen + 1;
    let index = last.map_or(0, |l| l.index + 1);
    let membership = openraft::Membership::new(
        vec![BTreeSet::from([node_id])],
        BTreeMap::from([(node_id, BasicNode::new(raft_addr))]),
    );
    let entry = Entry {
        log_id: LogId::new(CommittedLeaderId::new(term, node_id), index),
        payload: EntryPayload::Membership(membership),
    };
    let log_id = entry.log_id;
    let bytes = encode(&entry, ErrorSubject::Log(log_id)).map_err(codec_err(&path))?;
    store.log_append([(index, bytes)]).map_err(store_err(&path))?;
    let vote = Vote::new(term, node_id);
    let vote_bytes = encode(&vote, ErrorSubject::Vote).map_err(codec_err(&path))?;
    store
        .raft_meta_put(RaftMetaKey::Vote, &vote_bytes, true)
        .map_err(store_err(&path))?;
    let cluster_id = new_cluster_id();
    store.set_cluster_id(&cluster_id).map_err(store_err(&path))?;
    Ok(ForcedCluster {
        before,
        cluster_id,
        membership_index: index,
        term,
    })
}

/// Write a backup of the database `store` (at `db_path`) to `out`, which must not exist: a
/// checkpoint of the whole database in `out/db` and its summary in `out/backup.json`. The node
/// keeps running.
pub fn backup(store: &Store, out: &Path) -> Result<DataSummary, RecoveryError> {
    if out.exists() {
        return Err(RecoveryError::Refused(format!(
            "{}: already exists; a backup is written to a new directory",
            out.display()
        )));
    }
    std::fs::create_dir_all(out).map_err(|source| RecoveryError::Io {
        path: out.to_path_buf(),
        source,
    })?;
    let db = out.join("db");
    store.checkpoint(&db).map_err(store_err(&db))?;
    // Summarise the copy, not the live database: it is the copy that is restored.
    let copy = Store::open(&db).map_err(store_err(&db))?;
    let summary = summarize(&copy, &db)?;
    drop(copy);
    let manifest = out.join(BACKUP_MANIFEST);
    let json = serde_json::to_vec_pretty(&summary).map_err(|e| RecoveryError::Refused(e.to_string()))?;
    std::fs::write(&manifest, json).map_err(|source| RecoveryError::Io { path: manifest, source })?;
    Ok(summary)
}

/// Seed the Raft data directory `raft_dir` of a new node from the backup in `from` (made by
/// [`backup`]): copy its database, then make the node the single voter of a new cluster
/// ([`force_new_cluster`], the database taken over by `node_id`). `raft_dir` must hold no
/// database yet.
pub fn restore(from: &Path, raft_dir: &Path, node_id: u64, raft_addr: &str) -> Result<ForcedCluster, RecoveryError> {
    let source = from.join("db");
    if !source.join("CURRENT").exists() || !from.join(BACKUP_MANIFEST).exists() {
        return Err(RecoveryError::Refused(format!(
            "{}: not a backup (no {BACKUP_MANIFEST} and db/)",
            from.display()
        )));
    }
    let target = raft_dir.join("db");
    if target.exists() {
        return Err(RecoveryError::Refused(format!(
            "{}: a database is already there; restore into an empty data directory",
            target.display()
        )));
    }
    std::fs::create_dir_all(raft_dir).map_err(|source| RecoveryError::Io {
        path: raft_dir.to_path_buf(),
        source,
    })?;
    // Copy into a temporary name and rename, so an interrupted restore leaves no half database.
    let partial = raft_dir.join("db.restoring");
    if partial.exists() {
        std::fs::remove_dir_all(&partial).map_err(|source| RecoveryError::Io {
            path: partial.clone(),
            source,
        })?;
    }
    copy_dir(&source, &partial)?;
    std::fs::rename(&partial, &target).map_err(|source| RecoveryError::Io {
        path: target.clone(),
        source,
    })?;
    force_new_cluster(raft_dir, node_id, raft_addr, true)
}

fn copy_dir(from: &Path, to: &Path) -> Result<(), RecoveryError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| RecoveryError::Io { path, source }
    };
    std::fs::create_dir_all(to).map_err(io(to))?;
    for entry in std::fs::read_dir(from).map_err(io(from))? {
        let entry = entry.map_err(io(from))?;
        let dest = to.join(entry.file_name());
        if entry.file_type().map_err(io(&entry.path()))?.is_dir() {
            copy_dir(&entry.path(), &dest)?;
        } else {
            std::fs::copy(entry.path(), &dest).map_err(io(&dest))?;
            std::fs::File::open(&dest)
                .and_then(|f| f.sync_all())
                .map_err(io(&dest))?;
        }
    }
    let dir = std::fs::File::open(to).map_err(io(to))?;
    dir.sync_all().map_err(io(to))
}
