//! [`LogStore`]: openraft's log storage over the `raft_log` / `raft_meta` column families.

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::{mpsc, Arc};

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{ErrorSubject, ErrorVerb, OptionalSend, RaftLogReader};
use seal_storage::{RaftMetaKey, Store};

use crate::codec::{decode, encode, io_err};
use crate::state_machine::Watermark;
use crate::types::{Entry, LogId, StorageError, TypeConfig, Vote};

/// The Raft log and vote, stored in Seal's RocksDB instance.
///
/// `append` writes its entries at once (readable, not yet durable) and hands openraft's
/// callback to the [`WalSyncer`], which reports them persisted after an fsync of the WAL:
/// appends that arrive while one fsync runs share the next (group commit), and Raft goes on
/// with its work in the meantime. `save_vote`, `truncate` and `purge` are fsync'd before they
/// return.
#[derive(Debug, Clone)]
pub struct LogStore {
    store: Store,
    syncer: Arc<WalSyncer>,
    /// The state machine's applied mark: a purge waits until what it removes is applied.
    applied: Option<Arc<Watermark>>,
}

/// How long a purge waits for the state machine to apply (install) what it removes.
const PURGE_WAIT: std::time::Duration = std::time::Duration::from_secs(600);

impl LogStore {
    /// Wrap an open store.
    pub fn new(store: Store) -> LogStore {
        let syncer = Arc::new(WalSyncer::start(store.clone()));
        LogStore {
            store,
            syncer,
            applied: None,
        }
    }

    /// Make every purge wait until the state machine whose mark this is holds what it removes.
    ///
    /// openraft 0.9 has a follower that accepts a snapshot purge its log up to it in the same
    /// step as it hands the snapshot to the state machine, and the two run apart: a crash
    /// between them left a log purged beyond anything applied, and openraft's start-up then
    /// panics (`purge_upto <= committed`). Waiting here orders the purge after the install.
    pub(crate) fn wait_for_applied(mut self, applied: Arc<Watermark>) -> LogStore {
        self.applied = Some(applied);
        self
    }
}

/// The thread that fsyncs the WAL for appends and then tells openraft they are durable, in
/// the order they were appended. Dropping the last [`LogStore`] clone ends it and waits for it
/// (at most one fsync): its handle on the database is released before the drop returns, so a
/// process that ends right after Raft stops never closes RocksDB on this thread while the
/// process's own teardown runs.
pub struct WalSyncer {
    waiting: Option<mpsc::Sender<LogFlushed<TypeConfig>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for WalSyncer {
    fn drop(&mut self) {
        // Closing the channel ends the thread's loop once it has reported what it holds.
        drop(self.waiting.take());
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                tracing::error!("the WAL sync thread panicked");
            }
        }
    }
}

impl Debug for WalSyncer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WalSyncer").finish_non_exhaustive()
    }
}

impl WalSyncer {
    fn start(store: Store) -> WalSyncer {
        let (tx, rx) = mpsc::channel::<LogFlushed<TypeConfig>>();
        let spawned = std::thread::Builder::new().name("seal-wal-sync".into()).spawn(move || {
            while let Ok(first) = rx.recv() {
                // Everything appended so far rides on this one fsync.
                let group: Vec<_> = std::iter::once(first).chain(rx.try_iter()).collect();
                let synced = store.sync_wal();
                for callback in group {
                    callback.log_io_completed(match &synced {
                        Ok(()) => Ok(()),
                        Err(e) => Err(std::io::Error::other(e.to_string())),
                    });
                }
            }
        });
        let thread = match spawned {
            Ok(thread) => Some(thread),
            Err(e) => {
                // Without the thread, `wait_durable` syncs inline (see there).
                tracing::error!(error = %e, "cannot start the WAL sync thread; appends sync one by one");
                None
            }
        };
        WalSyncer {
            waiting: Some(tx),
            thread,
        }
    }

    /// Report `callback` once everything written so far is durable.
    fn wait_durable(&self, store: &Store, callback: LogFlushed<TypeConfig>) {
        let unsent = match &self.waiting {
            Some(waiting) => waiting.send(callback).err().map(|mpsc::SendError(c)| c),
            None => Some(callback),
        };
        if let Some(callback) = unsent {
            // The thread is gone (it could not start): sync here.
            callback.log_io_completed(store.sync_wal().map_err(|e| std::io::Error::other(e.to_string())));
        }
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
        let saved: LogId = match self
            .store
            .raft_meta_get(RaftMetaKey::Committed)
            .map_err(rerr(ErrorSubject::Store, ErrorVerb::Read))?
        {
            Some(b) => decode(&b, ErrorSubject::Store)?,
            None => return Ok(None),
        };
        // openraft records a follower's commit index as soon as it accepts a snapshot, before the
        // state machine has installed it. After a crash in between, the entries up to that index
        // are in no log here, and openraft's start-up would fail re-applying them. A commit
        // index is a hint (the leader tells it again): never report one past the log.
        let last = self.get_log_state().await?.last_log_id;
        Ok(std::cmp::min(Some(saved), last))
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
        // One batch, not synced: readable when this returns, as openraft requires. An unsynced
        // write only copies into RocksDB's memtable and WAL buffer, so it stays on this task.
        if let Err(e) = self.store.log_append_unsynced(rows) {
            let e = io_err(ErrorSubject::Logs, ErrorVerb::Write, &e);
            callback.log_io_completed(Err(std::io::Error::other(e.to_string())));
            return Err(e);
        }
        // Durable (and reported so) after the syncer's next fsync.
        self.syncer.wait_durable(&self.store, callback);
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.store
            .log_truncate(log_id.index)
            .map_err(rerr(ErrorSubject::Logs, ErrorVerb::Delete))
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        if let Some(applied) = &self.applied {
            if !applied.wait_done(log_id.index, PURGE_WAIT).await {
                let e = std::io::Error::other(format!(
                    "the state machine did not apply up to {} (a failed snapshot install?): not purging",
                    log_id.index
                ));
                return Err(io_err(ErrorSubject::Logs, ErrorVerb::Delete, &e));
            }
        }
        let bytes = encode(&log_id, ErrorSubject::Logs)?;
        self.store
            .log_purge(log_id.index, &bytes)
            .map_err(rerr(ErrorSubject::Logs, ErrorVerb::Delete))
    }
}
