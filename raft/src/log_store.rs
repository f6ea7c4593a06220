//! [`LogStore`]: openraft's log storage over the `raft_log` / `raft_meta` column families.

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{ErrorSubject, ErrorVerb, OptionalSend, RaftLogReader};
use seal_storage::{RaftMetaKey, Store};

use crate::codec::{decode, encode, io_err, join_err};
use crate::types::{Entry, LogId, StorageError, TypeConfig, Vote};

/// The Raft log and vote, stored in Seal's RocksDB instance.
///
/// `append` and `save_vote` are fsync'd before they report completion;
/// `truncate` and `purge` are fsync'd too.
#[derive(Debug, Clone)]
pub struct LogStore {
    store: Store,
}

impl LogStore {
    /// Wrap an open store.
    pub fn new(store: Store) -> LogStore {
        LogStore { store }
    }
}

fn rerr(subject: ErrorSubject<u64>, verb: ErrorVerb) -> impl FnOnce(seal_storage::Error) -> StorageError {
    move |e| io_err(subject, verb, &e)
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let start = match range.start_bound() {
            Bound::Included(s) => *s,
            Bound::Excluded(s) => match s.checked_add(1) {
                Some(s) => s,
                None => return Ok(Vec::new()),
            },
            Bound::Unbounded => 0,
        };
        let end = match range.end_bound() {
            Bound::Included(e) => e.checked_add(1),
            Bound::Excluded(e) => Some(*e),
            Bound::Unbounded => None,
        };
        let raw = self
            .store
            .log_entries(start, end)
            .map_err(rerr(ErrorSubject::Logs, ErrorVerb::Read))?;
        raw.iter()
            .map(|(i, bytes)| decode(bytes, ErrorSubject::LogIndex(*i)))
            .collect()
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let last_purged_log_id: Option<LogId> = match self
            .store
            .log_last_purged()
            .map_err(rerr(ErrorSubject::Logs, ErrorVerb::Read))?
        {
            Some(b) => Some(decode(&b, ErrorSubject::Logs)?),
            None => None,
        };
        let last_log_id = match self
            .store
            .log_last()
            .map_err(rerr(ErrorSubject::Logs, ErrorVerb::Read))?
        {
            Some((i, b)) => Some(decode::<Entry>(&b, ErrorSubject::LogIndex(i))?.log_id),
            None => last_purged_log_id,
        };
        Ok(LogState {
            last_purged_log_id,
            last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        let bytes = encode(vote, ErrorSubject::Vote)?;
        self.store
            .raft_meta_put(RaftMetaKey::Vote, &bytes, true)
            .map_err(rerr(ErrorSubject::Vote, ErrorVerb::Write))
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        match self
            .store
            .raft_meta_get(RaftMetaKey::Vote)
            .map_err(rerr(ErrorSubject::Vote, ErrorVerb::Read))?
        {
            Some(b) => Ok(Some(decode(&b, ErrorSubject::Vote)?)),
            None => Ok(None),
        }
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        // Not synced: losing it only means re-deriving the commit index from a quorum.
        match committed {
            Some(c) => {
                let bytes = encode(&c, ErrorSubject::Store)?;
                self.store
                    .raft_meta_put(RaftMetaKey::Committed, &bytes, false)
                    .map_err(rerr(ErrorSubject::Store, ErrorVerb::Write))
            }
            None => self
                .store
                .raft_meta_delete(RaftMetaKey::Committed, false)
                .map_err(rerr(ErrorSubject::Store, ErrorVerb::Delete)),
        }
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        match self
            .store
            .raft_meta_get(RaftMetaKey::Committed)
            .map_err(rerr(ErrorSubject::Store, ErrorVerb::Read))?
        {
            Some(b) => Ok(Some(decode(&b, ErrorSubject::Store)?)),
            None => Ok(None),
        }
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut rows = Vec::new();
        for entry in entries {
            rows.push((entry.log_id.index, encode(&entry, ErrorSubject::Log(entry.log_id))?));
        }
        let store = self.store.clone();
        // One batch, written with sync (fsync'd WAL), off the async workers.
        let res = tokio::task::spawn_blocking(move || store.log_append(rows)).await;
        let res = match res {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(io_err(ErrorSubject::Logs, ErrorVerb::Write, &e)),
            Err(e) => Err(join_err(ErrorSubject::Logs, ErrorVerb::Write, &e)),
        };
        // Report durability only after the sync write returned.
        match &res {
            Ok(()) => callback.log_io_completed(Ok(())),
            Err(e) => callback.log_io_completed(Err(std::io::Error::other(e.to_string()))),
        }
        res
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.store
            .log_truncate(log_id.index)
            .map_err(rerr(ErrorSubject::Logs, ErrorVerb::Delete))
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let bytes = encode(&log_id, ErrorSubject::Logs)?;
        self.store
            .log_purge(log_id.index, &bytes)
            .map_err(rerr(ErrorSubject::Logs, ErrorVerb::Delete))
    }
}
