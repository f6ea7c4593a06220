//! The RocksDB instance: opening, the Raft log API, command apply, and reads.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use rocksdb::{ColumnFamily, Direction, IteratorMode, SnapshotWithThreadMode, WriteBatch, WriteOptions, DB};
use sha2::{Digest, Sha256};

use crate::cache::{CurrentCache, CurrentFile, CACHE_BYTES};
use crate::command::{ApplyOutcome, ChangeCategory, ChangeRecord, Command, KeyEntry, MetaFile, ServerKeys};
use crate::error::{rocks, Error, Result};
use crate::keys::*;
use crate::state::{open_db, DbKind, StateDb};

/// Opaque Raft bookkeeping recorded in the same write batch as an applied command.
///
/// `seal-storage` does not know openraft's types: the Raft layer passes its
/// serialized last-applied log id and (when it changed) membership.
#[derive(Debug, Clone, Copy)]
pub struct Applied<'a> {
    /// Serialized last applied log id (the entry being applied).
    pub last_applied: &'a [u8],
    /// Serialized membership, when the entry changes it.
    pub membership: Option<&'a [u8]>,
}

/// Which Raft metadata value to read or write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RaftMetaKey {
    /// The current vote.
    Vote,
    /// The last known committed log id.
    Committed,
}

impl RaftMetaKey {
    fn key(self) -> &'static [u8] {
        match self {
            RaftMetaKey::Vote => RM_VOTE,
            RaftMetaKey::Committed => RM_COMMITTED,
        }
    }
}

pub(crate) struct Inner {
    /// The Raft database: log, Raft metadata, the node's own records.
    pub(crate) db: DB,
    pub(crate) path: PathBuf,
    /// The state machine's current generation ([`crate::state`]), replaced by an install.
    pub(crate) sm: RwLock<Arc<StateDb>>,
    /// Serialises writers to the state machine (and its replacement). Readers never take it.
    pub(crate) write_lock: Mutex<()>,
    /// Current files in memory, invalidated by every change ([`crate::cache`]).
    pub(crate) cache: CurrentCache,
}

impl Inner {
    pub(crate) fn cf(&self, name: &'static str) -> Result<&ColumnFamily> {
        self.db.cf_handle(name).ok_or(Error::MissingColumnFamily { cf: name })
    }

    /// The state machine's current generation.
    pub(crate) fn sm(&self) -> Arc<StateDb> {
        self.sm.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, ()> {
        // A poisoned lock only means another writer panicked; the database
        // itself is consistent because every write is one batch.
        self.write_lock.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn get(&self, cf: &'static str, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.db.get_cf(self.cf(cf)?, key).map_err(rocks("get"))
    }

    pub(crate) fn write(&self, batch: WriteBatch, sync: bool) -> Result<()> {
        let mut wo = WriteOptions::default();
        wo.set_sync(sync);
        #[cfg(feature = "fault-injection")]
        if sync {
            crate::faults::before_sync();
        }
        self.db.write_opt(batch, &wo).map_err(rocks("write"))
    }
}

/// Serialized last applied log id and last membership, each absent until first recorded.
pub type AppliedState = (Option<Vec<u8>>, Option<Vec<u8>>);

/// The database: one RocksDB directory with the column families listed in [`crate::keys`].
///
/// Cloning is cheap (shared handle). Writes to the state machine are serialised
/// internally; reads go through [`Store::reader`] and never wait for a RocksDB write (they take
/// the read lock of the current-file cache, which an apply holds only to drop one collection's
/// entries).
#[derive(Clone)]
pub struct Store {
    pub(crate) inner: Arc<Inner>,
}

/// Read-only access to the state machine (served by every replica): RocksDB snapshots and the
/// current-file cache, never the writers' lock.
#[derive(Clone)]
pub struct Reader {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.inner.path).finish()
    }
}

impl std::fmt::Debug for Reader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reader").field("path", &self.inner.path).finish()
    }
}

impl Store {
    /// Open (creating if needed) the database in directory `path`: the Raft database there and
    /// the state machine's current generation under `path/state` ([`crate::state`]). A database
    /// of format 1 (the state machine's column families inside the Raft database) is moved to
    /// format 2 first, crash-safely ([`Store::migrate_format_1`]).
    pub fn open(path: impl AsRef<Path>) -> Result<Store> {
        let path = path.as_ref().to_path_buf();
        let existing = if path.join("CURRENT").exists() {
            DB::list_cf(&rocksdb::Options::default(), &path).map_err(rocks("list column families"))?
        } else {
            Vec::new()
        };
        let legacy: Vec<&'static str> = SM_CFS
            .iter()
            .copied()
            .filter(|cf| existing.iter().any(|e| e == cf))
            .collect();
        let mut db = open_db(
            DbKind::Raft,
            &path,
            RAFT_CFS.iter().copied().chain(legacy.iter().copied()),
        )
        .map_err(rocks("open"))?;
        let generation = crate::local::check_format(&db, &path)?;
        let generation = match generation {
            Some(g) => g,
            None if !legacy.is_empty() => crate::local::migrate_format_1(&db, &path)?,
            None => crate::local::create_format_2(&db, &path)?,
        };
        if !legacy.is_empty() {
            // Format 2 is recorded: the old families are copies (or were just copied).
            for cf in &legacy {
                db.drop_cf(cf).map_err(rocks("drop a format-1 column family"))?;
            }
        }
        crate::state::prune_generations(&path, generation)?;
        let sm = StateDb::open(&crate::state::generation_dir(&path, generation), generation)?;
        Ok(Store {
            inner: Arc::new(Inner {
                db,
                path,
                sm: RwLock::new(Arc::new(sm)),
                write_lock: Mutex::new(()),
                cache: CurrentCache::new(CACHE_BYTES),
            }),
        })
    }

    /// How many handles ([`Store`] and [`Reader`] clones) share this database.
    /// The RocksDB directory lock is released when the last one is dropped.
    pub fn handle_count(&self) -> usize {
        Arc::strong_count(&self.inner)
    }

    /// The database directory.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// A reader of the state machine, which never takes the writers' lock.
    pub fn reader(&self) -> Reader {
        Reader {
            inner: self.inner.clone(),
        }
    }

    // ---------------------------------------------------------------- Raft log

    /// Append log entries `(index, bytes)` in one batch, fsync'd before returning.
    pub fn log_append<I>(&self, entries: I) -> Result<()>
    where
        I: IntoIterator<Item = (u64, Vec<u8>)>,
    {
        self.write_log(entries, true)
    }

    /// Append log entries `(index, bytes)` in one batch, readable at once but not yet
    /// durable: [`Store::sync_wal`] makes them so. Lets the Raft layer commit a group of
    /// appends with one fsync.
    pub fn log_append_unsynced<I>(&self, entries: I) -> Result<()>
    where
        I: IntoIterator<Item = (u64, Vec<u8>)>,
    {
        self.write_log(entries, false)
    }

    fn write_log<I>(&self, entries: I, sync: bool) -> Result<()>
    where
        I: IntoIterator<Item = (u64, Vec<u8>)>,
    {
        let cf = self.inner.cf(CF_RAFT_LOG)?;
        let mut batch = WriteBatch::default();
        for (index, bytes) in entries {
            batch.put_cf(cf, index.to_be_bytes(), bytes);
        }
        self.inner.write(batch, sync)
    }

    /// Fsync the Raft database's write-ahead log: every log append and Raft metadata write made
    /// before the call is durable when it returns.
    pub fn sync_wal(&self) -> Result<()> {
        #[cfg(feature = "fault-injection")]
        crate::faults::before_sync();
        self.inner.db.flush_wal(true).map_err(rocks("sync wal"))
    }

    /// Log entries with `start <= index < end` (`end = None`: to the last), in order.
    pub fn log_entries(&self, start: u64, end: Option<u64>) -> Result<Vec<(u64, Vec<u8>)>> {
        let cf = self.inner.cf(CF_RAFT_LOG)?;
        let from = start.to_be_bytes();
        let mut out = Vec::new();
        for item in self
            .inner
            .db
            .iterator_cf(cf, IteratorMode::From(&from, Direction::Forward))
        {
            let (k, v) = item.map_err(rocks("iterate raft_log"))?;
            let index = be_u64(CF_RAFT_LOG, &k, &k)?;
            if end.is_some_and(|e| index >= e) {
                break;
            }
            out.push((index, v.into_vec()));
        }
        Ok(out)
    }

    /// The last log entry, if any.
    pub fn log_last(&self) -> Result<Option<(u64, Vec<u8>)>> {
        let cf = self.inner.cf(CF_RAFT_LOG)?;
        match self.inner.db.iterator_cf(cf, IteratorMode::End).next() {
            None => Ok(None),
            Some(item) => {
                let (k, v) = item.map_err(rocks("iterate raft_log"))?;
                Ok(Some((be_u64(CF_RAFT_LOG, &k, &k)?, v.into_vec())))
            }
        }
    }

    /// Delete log entries with index `>= from` (conflicting suffix), fsync'd.
    pub fn log_truncate(&self, from: u64) -> Result<()> {
        let cf = self.inner.cf(CF_RAFT_LOG)?;
        let mut batch = WriteBatch::default();
        batch.delete_range_cf(cf, from.to_be_bytes(), u64::MAX.to_be_bytes());
        batch.delete_cf(cf, u64::MAX.to_be_bytes());
        self.inner.write(batch, true)
    }

    /// Delete log entries with index `<= upto` and record `purged` (the serialized
    /// last purged log id) in the same batch, fsync'd.
    ///
    /// The state machine's writes are not synced, but openraft purges only entries a snapshot
    /// holds, and a snapshot is a checkpoint, which flushes the state machine to synced files
    /// first: no entry is purged while its effect could still be lost.
    pub fn log_purge(&self, upto: u64, purged: &[u8]) -> Result<()> {
        let cf = self.inner.cf(CF_RAFT_LOG)?;
        let mut batch = WriteBatch::default();
        match upto.checked_add(1) {
            Some(end) => batch.delete_range_cf(cf, 0u64.to_be_bytes(), end.to_be_bytes()),
            None => {
                batch.delete_range_cf(cf, 0u64.to_be_bytes(), u64::MAX.to_be_bytes());
                batch.delete_cf(cf, u64::MAX.to_be_bytes());
            }
        }
        batch.put_cf(self.inner.cf(CF_RAFT_META)?, RM_LAST_PURGED, purged);
        self.inner.write(batch, true)
    }

    /// The serialized last purged log id, if any purge happened.
    pub fn log_last_purged(&self) -> Result<Option<Vec<u8>>> {
        self.inner.get(CF_RAFT_META, RM_LAST_PURGED)
    }

    /// Store a Raft metadata value; `sync` makes it durable before returning.
    pub fn raft_meta_put(&self, key: RaftMetaKey, value: &[u8], sync: bool) -> Result<()> {
        let mut batch = WriteBatch::default();
        batch.put_cf(self.inner.cf(CF_RAFT_META)?, key.key(), value);
        self.inner.write(batch, sync)
    }

    /// Remove a Raft metadata value.
    pub fn raft_meta_delete(&self, key: RaftMetaKey, sync: bool) -> Result<()> {
        let mut batch = WriteBatch::default();
        batch.delete_cf(self.inner.cf(CF_RAFT_META)?, key.key());
        self.inner.write(batch, sync)
    }

    /// Read a Raft metadata value.
    pub fn raft_meta_get(&self, key: RaftMetaKey) -> Result<Option<Vec<u8>>> {
        self.inner.get(CF_RAFT_META, key.key())
    }

    // ----------------------------------------------------------- state machine

    /// Serialized (last applied log id, last membership) recorded by the latest apply.
    pub fn applied_state(&self) -> Result<AppliedState> {
        let sm = self.inner.sm();
        Ok((sm.get(CF_SM_META, SM_LAST_APPLIED)?, sm.get(CF_SM_META, SM_MEMBERSHIP)?))
    }

    /// Record an entry that carries no command (blank or membership entry).
    pub fn record_applied(&self, applied: Applied<'_>) -> Result<()> {
        let _guard = self.inner.lock();
        let sm = self.inner.sm();
        let mut batch = WriteBatch::default();
        sm.put_applied(&mut batch, applied)?;
        sm.write(batch)
    }

    /// Apply one command: ONE write batch holding its effects (if any) and `applied`.
    ///
    /// Outcomes other than [`ApplyOutcome::Applied`] write only `applied`, so the
    /// apply is atomic and replaying a log entry after a crash is harmless (the
    /// entry is either fully reflected, including `last_applied`, or not at all).
    ///
    /// The batch is not fsync'd: the entry is already durable in the Raft log, and no entry is
    /// purged from the log before a snapshot (a checkpoint, which flushes) holds its effects.
    pub fn apply(&self, cmd: &Command, applied: Applied<'_>) -> Result<ApplyOutcome> {
        let _guard = self.inner.lock();
        let sm = self.inner.sm();
        let mut batch = WriteBatch::default();
        let outcome = match cmd {
            Command::Publish {
                gun,
                files,
                expected,
                timestamp_expires_unix_nanos,
                at_unix_nanos,
            } => sm.apply_files(
                &mut batch,
                gun,
                files,
                expected,
                *timestamp_expires_unix_nanos,
                *at_unix_nanos,
                false,
            )?,
            Command::RefreshTimestamp {
                gun,
                files,
                expected,
                timestamp_expires_unix_nanos,
                at_unix_nanos,
            } => sm.apply_files(
                &mut batch,
                gun,
                files,
                expected,
                Some(*timestamp_expires_unix_nanos),
                *at_unix_nanos,
                true,
            )?,
            Command::DeleteGun { gun, at_unix_nanos } => sm.apply_delete(&mut batch, gun, *at_unix_nanos)?,
            Command::SetServerKey {
                gun,
                role,
                key_id,
                public_key_json,
                pending,
            } => sm.apply_server_key(&mut batch, gun, role, key_id, public_key_json, *pending)?,
            Command::ImportCollection(c) => sm.apply_import(&mut batch, c)?,
        };
        if outcome != ApplyOutcome::Applied {
            batch = WriteBatch::default();
        }
        sm.put_applied(&mut batch, applied)?;
        sm.write(batch)?;
        if outcome == ApplyOutcome::Applied {
            self.inner.cache.invalidate(cmd.gun());
        }
        Ok(outcome)
    }
}

impl StateDb {
    pub(crate) fn put_applied(&self, batch: &mut WriteBatch, applied: Applied<'_>) -> Result<()> {
        let cf = self.cf(CF_SM_META)?;
        batch.put_cf(cf, SM_LAST_APPLIED, applied.last_applied);
        if let Some(m) = applied.membership {
            batch.put_cf(cf, SM_MEMBERSHIP, m);
        }
        Ok(())
    }

    pub(crate) fn current_version(&self, gun: &str, role: &str) -> Result<Option<u64>> {
        let key = gun_role(gun, role);
        match self.get(CF_CURRENT, &key)? {
            None => Ok(None),
            Some(v) => Ok(Some(CurrentEntry::parse(&key, &v)?.version)),
        }
    }

    pub(crate) fn next_change_id(&self) -> Result<u64> {
        let last = match self.get(CF_SM_META, SM_CHANGE_SEQ)? {
            None => 0,
            Some(v) => be_u64(CF_SM_META, SM_CHANGE_SEQ, &v)?,
        };
        Ok(last + 1)
    }

    pub(crate) fn put_change(&self, batch: &mut WriteBatch, record: &ChangeRecord, id: u64) -> Result<()> {
        let bytes = postcard::to_allocvec(record).map_err(|e| Error::Encode {
            what: "changefeed record",
            reason: e.to_string(),
        })?;
        batch.put_cf(self.cf(CF_CHANGEFEED)?, id.to_be_bytes(), bytes);
        batch.put_cf(self.cf(CF_CHANGEFEED_GUN)?, change_gun_key(&record.gun, id), b"");
        batch.put_cf(self.cf(CF_SM_META)?, SM_CHANGE_SEQ, id.to_be_bytes());
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn apply_files(
        &self,
        batch: &mut WriteBatch,
        gun: &str,
        files: &[MetaFile],
        expected: &[(String, Option<u64>)],
        ts_expires: Option<i64>,
        at: i64,
        refresh: bool,
    ) -> Result<ApplyOutcome> {
        let reject = |reason: String| Ok(ApplyOutcome::Rejected { reason });
        if let Err(e) = check_name("gun", gun) {
            return reject(e.to_string());
        }
        if files.is_empty() {
            return reject(format!("no files for gun {gun:?}"));
        }
        let mut roles = BTreeSet::new();
        for f in files {
            if let Err(e) = check_name("role", &f.role) {
                return reject(e.to_string());
            }
            if !roles.insert(f.role.as_str()) {
                return reject(format!("role {:?} appears twice for gun {gun:?}", f.role));
            }
        }
        let mut expected_roles = BTreeSet::new();
        for (role, _) in expected {
            if let Err(e) = check_name("role", role) {
                return reject(e.to_string());
            }
            if !expected_roles.insert(role.as_str()) {
                return reject(format!("expected version for role {role:?} given twice"));
            }
        }
        let has_ts = roles.contains("timestamp");
        if has_ts != ts_expires.is_some() {
            return reject(format!(
                "timestamp expiry must be given exactly when a timestamp is written (gun {gun:?})"
            ));
        }
        if refresh && (!has_ts || roles.iter().any(|r| *r != "timestamp" && *r != "snapshot")) {
            return reject(format!(
                "a timestamp refresh writes a timestamp and optionally a snapshot only (gun {gun:?})"
            ));
        }
        let created_at = match rfc3339_nanos(at) {
            Some(s) => s,
            None => return reject(format!("time {at} out of range")),
        };

        for (role, exp) in expected {
            let actual = self.current_version(gun, role)?;
            if actual != *exp {
                return Ok(ApplyOutcome::Conflict {
                    gun: gun.to_owned(),
                    role: role.clone(),
                    expected: *exp,
                    actual,
                });
            }
        }
        for f in files {
            let current = self.current_version(gun, &f.role)?.unwrap_or(0);
            if f.version <= current {
                return Ok(ApplyOutcome::OldVersion {
                    gun: gun.to_owned(),
                    role: f.role.clone(),
                    version: f.version,
                    current,
                });
            }
        }

        let cf_meta = self.cf(CF_META)?;
        let cf_checksum = self.cf(CF_CHECKSUM)?;
        let cf_current = self.cf(CF_CURRENT)?;
        for f in files {
            let sha = hex::encode(Sha256::digest(&f.bytes));
            let version = f.version.to_be_bytes();
            batch.put_cf(cf_meta, meta_key(gun, &f.role, f.version), &f.bytes);
            batch.put_cf(cf_checksum, checksum_key(gun, &f.role, &sha), version);
            // A timestamp always comes with its expiry (checked above): both go in `current` too.
            let current = CurrentEntry::of(&f.role, f.version, ts_expires.map(|e| (e, &f.bytes[..])));
            batch.put_cf(cf_current, gun_role(gun, &f.role), current.encode());
            // Notary's changefeed lists Notary collections only, not TUF 1.0 repositories.
            if f.role == "timestamp" && seal_tuf::tuf1::repository_of(gun).is_none() {
                let id = self.next_change_id()?;
                let record = ChangeRecord {
                    id: id.to_string(),
                    created_at: created_at.clone(),
                    gun: gun.to_owned(),
                    version: f.version,
                    sha256: sha,
                    category: ChangeCategory::Update,
                };
                self.put_change(batch, &record, id)?;
            }
            if f.role == "timestamp" {
                if let Some(expires) = ts_expires {
                    self.move_expiry(batch, gun, Some(expires))?;
                }
            }
        }
        Ok(ApplyOutcome::Applied)
    }

    /// Replace the GUN's entry in the expiry index (remove it when `expires` is None).
    pub(crate) fn move_expiry(&self, batch: &mut WriteBatch, gun: &str, expires: Option<i64>) -> Result<()> {
        let cf_expiry = self.cf(CF_EXPIRY)?;
        let cf_gun_expiry = self.cf(CF_GUN_EXPIRY)?;
        if let Some(old) = self.get(CF_GUN_EXPIRY, gun.as_bytes())? {
            let old: [u8; 8] = old.as_slice().try_into().map_err(|_| Error::Corrupt {
                cf: CF_GUN_EXPIRY,
                key_hex: hex::encode(gun),
                reason: "expected 8 bytes".into(),
            })?;
            batch.delete_cf(cf_expiry, expiry_key(unsortable(old), gun));
        }
        match expires {
            Some(t) => {
                batch.put_cf(cf_expiry, expiry_key(t, gun), b"");
                batch.put_cf(cf_gun_expiry, gun.as_bytes(), sortable(t));
            }
            None => batch.delete_cf(cf_gun_expiry, gun.as_bytes()),
        }
        Ok(())
    }

    /// DeleteGun: removes meta, checksum, current, expiry and server keys of the GUN.
    ///
    /// Like Notary, a `deletion` changefeed record is written only if the GUN had
    /// metadata (a current version of some role); deleting an unknown GUN is a
    /// successful no-op apart from removing any server keys minted for it.
    fn apply_delete(&self, batch: &mut WriteBatch, gun: &str, at: i64) -> Result<ApplyOutcome> {
        if let Err(e) = check_name("gun", gun) {
            return Ok(ApplyOutcome::Rejected { reason: e.to_string() });
        }
        let Some(created_at) = rfc3339_nanos(at) else {
            return Ok(ApplyOutcome::Rejected {
                reason: format!("time {at} out of range"),
            });
        };
        let prefix = gun_prefix(gun);
        let current_keys = self.prefix_keys(CF_CURRENT, &prefix)?;
        let existed = !current_keys.is_empty();
        for cf_name in [CF_META, CF_CHECKSUM, CF_CURRENT, CF_SERVER_KEYS] {
            let cf = self.cf(cf_name)?;
            for k in self.prefix_keys(cf_name, &prefix)? {
                batch.delete_cf(cf, k);
            }
        }
        self.move_expiry(batch, gun, None)?;
        if existed {
            let id = self.next_change_id()?;
            let record = ChangeRecord {
                id: id.to_string(),
                created_at,
                gun: gun.to_owned(),
                version: 0,
                sha256: String::new(),
                category: ChangeCategory::Deletion,
            };
            self.put_change(batch, &record, id)?;
        }
        Ok(ApplyOutcome::Applied)
    }

    fn apply_server_key(
        &self,
        batch: &mut WriteBatch,
        gun: &str,
        role: &str,
        key_id: &str,
        public_key_json: &[u8],
        pending: bool,
    ) -> Result<ApplyOutcome> {
        if let Err(e) = check_name("gun", gun).and_then(|()| check_name("role", role)) {
            return Ok(ApplyOutcome::Rejected { reason: e.to_string() });
        }
        if key_id.is_empty() {
            return Ok(ApplyOutcome::Rejected {
                reason: format!("empty key id for gun {gun:?} role {role:?}"),
            });
        }
        let mut keys = self.server_key(gun, role)?.unwrap_or_default();
        let entry = KeyEntry {
            key_id: key_id.to_owned(),
            public_key_json: public_key_json.to_vec(),
        };
        if pending {
            let known = keys.active.as_ref().is_some_and(|a| a.key_id == key_id)
                || keys.pending.iter().any(|p| p.key_id == key_id);
            if !known {
                keys.pending.push(entry);
            }
        } else {
            keys.pending.retain(|p| p.key_id != key_id);
            keys.active = Some(entry);
        }
        let bytes = postcard::to_allocvec(&keys).map_err(|e| Error::Encode {
            what: "server keys",
            reason: e.to_string(),
        })?;
        batch.put_cf(self.cf(CF_SERVER_KEYS)?, gun_role(gun, role), bytes);
        Ok(ApplyOutcome::Applied)
    }

    /// Keys the server holds for (gun, role): active and pending.
    pub(crate) fn server_key(&self, gun: &str, role: &str) -> Result<Option<ServerKeys>> {
        check_name("gun", gun)?;
        check_name("role", role)?;
        let key = gun_role(gun, role);
        match self.get(CF_SERVER_KEYS, &key)? {
            None => Ok(None),
            Some(v) => postcard::from_bytes(&v).map(Some).map_err(|e| Error::Corrupt {
                cf: CF_SERVER_KEYS,
                key_hex: hex::encode(key.as_slice()),
                reason: e.to_string(),
            }),
        }
    }
}

/// A current file as [`Reader::current_at`] read it.
struct Found {
    version: u64,
    bytes: Vec<u8>,
    /// The timestamp's expiry, when `current` held it (format 3).
    inline_expiry: Option<i64>,
}

/// A collection's timestamp expiry as [`CF_GUN_EXPIRY`] stores it.
fn expiry_from(gun: &str, v: &[u8]) -> Result<i64> {
    let arr: [u8; 8] = v.try_into().map_err(|_| Error::Corrupt {
        cf: CF_GUN_EXPIRY,
        key_hex: hex::encode(gun),
        reason: "expected 8 bytes".into(),
    })?;
    Ok(unsortable(arr))
}

/// What the node's storage holds in memory, by part (RocksDB's own estimates, both databases).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemoryUsage {
    /// Memtables, mutable and being flushed (bounded by [`crate::MEMTABLE_BUDGET_BYTES`] per
    /// database).
    pub memtables: u64,
    /// Index and filter blocks of the open SST files: grows with the data (about 1 % of it).
    pub table_readers: u64,
    /// Block caches (bounded by [`crate::STATE_BLOCK_CACHE_BYTES`] and
    /// [`crate::RAFT_BLOCK_CACHE_BYTES`]).
    pub block_cache: u64,
    /// The current-file cache of the read path (bounded by [`crate::CACHE_BYTES`]).
    pub current_files: u64,
}

/// Sum of an integer property over column families `cfs` of `db`.
fn sum_property(db: &DB, cfs: &[&'static str], property: &'static str) -> Result<u64> {
    let mut total = 0u64;
    for name in cfs {
        let cf = db.cf_handle(name).ok_or(Error::MissingColumnFamily { cf: name })?;
        let v = db
            .property_int_value_cf(cf, property)
            .map_err(rocks("read a property"))?;
        total = total.saturating_add(v.unwrap_or(0));
    }
    Ok(total)
}

impl Reader {
    /// What the storage holds in memory now, by part.
    pub fn memory_usage(&self) -> Result<MemoryUsage> {
        let sm = self.inner.sm();
        let raft = &self.inner.db;
        let mut usage = MemoryUsage {
            current_files: self.inner.cache.bytes() as u64,
            ..MemoryUsage::default()
        };
        for (db, cfs) in [(raft, &RAFT_CFS[..]), (sm.db(), &SM_CFS[..])] {
            usage.memtables += sum_property(db, cfs, "rocksdb.cur-size-all-mem-tables")?;
            usage.table_readers += sum_property(db, cfs, "rocksdb.estimate-table-readers-mem")?;
            // One cache per database, shared by its families.
            usage.block_cache += db
                .property_int_value("rocksdb.block-cache-usage")
                .map_err(rocks("read a property"))?
                .unwrap_or(0);
        }
        Ok(usage)
    }
}

impl Reader {
    /// The current file of (gun, role) as the read path serves it: from memory when this node
    /// served it since the collection last changed, else from RocksDB (and then kept). For
    /// `timestamp`, with the collection's timestamp expiry read at the same point.
    pub fn current_file(&self, gun: &str, role: &str) -> Result<Option<CurrentFile>> {
        if let Some(hit) = self.inner.cache.get(gun, role) {
            return Ok(Some(hit));
        }
        // The ticket before the generation: an install swaps generations, then clears the cache.
        let ticket = self.inner.cache.ticket();
        let sm = self.inner.sm();
        let snap = sm.db().snapshot();
        let Some(found) = self.current_at(&sm, &snap, gun, role)? else {
            return Ok(None);
        };
        let timestamp_expiry = match found.inline_expiry {
            Some(expiry) => Some(expiry),
            // A timestamp written before format 3: its expiry is read beside it.
            None if role == "timestamp" => snap
                .get_cf(sm.cf(CF_GUN_EXPIRY)?, gun.as_bytes())
                .map_err(rocks("get expiry"))?
                .map(|v| expiry_from(gun, &v))
                .transpose()?,
            None => None,
        };
        let file = CurrentFile {
            version: found.version,
            bytes: found.bytes.into(),
            timestamp_expiry,
        };
        self.inner.cache.insert(ticket, gun, role, file.clone());
        Ok(Some(file))
    }

    /// The (gun, role) file whose sha256 is `sha256_hex`, as the read path serves it: from
    /// memory when this node served it since the collection last changed, else from RocksDB
    /// (and then kept). Such files never change, but a deletion of the collection removes them,
    /// so they are kept and dropped with the collection's current files.
    pub fn file_by_checksum(&self, gun: &str, role: &str, sha256_hex: &str) -> Result<Option<CurrentFile>> {
        // Role names hold no NUL (`check_name`), so this key is no role's.
        let key = format!("\0{role}\0{sha256_hex}");
        if let Some(hit) = self.inner.cache.get(gun, &key) {
            return Ok(Some(hit));
        }
        let ticket = self.inner.cache.ticket();
        let Some((version, bytes)) = self.by_checksum(gun, role, sha256_hex)? else {
            return Ok(None);
        };
        let file = CurrentFile {
            version,
            bytes: bytes.into(),
            timestamp_expiry: None,
        };
        self.inner.cache.insert(ticket, gun, &key, file.clone());
        Ok(Some(file))
    }

    /// Current version and bytes of (gun, role), read at one consistent point.
    pub fn current(&self, gun: &str, role: &str) -> Result<Option<(u64, Vec<u8>)>> {
        let sm = self.inner.sm();
        let snap = sm.db().snapshot();
        Ok(self
            .current_at(&sm, &snap, gun, role)?
            .map(|found| (found.version, found.bytes)))
    }

    /// The current file of (gun, role) at `snap`: one read of `current` for a timestamp written
    /// since format 3 (which holds its bytes and expiry), else that and one of `meta`.
    fn current_at(
        &self,
        sm: &StateDb,
        snap: &SnapshotWithThreadMode<'_, DB>,
        gun: &str,
        role: &str,
    ) -> Result<Option<Found>> {
        check_name("gun", gun)?;
        check_name("role", role)?;
        let key = gun_role(gun, role);
        let Some(v) = snap.get_cf(sm.cf(CF_CURRENT)?, &key).map_err(rocks("get current"))? else {
            return Ok(None);
        };
        let entry = CurrentEntry::parse(&key, &v)?;
        if let Some((expiry, bytes)) = entry.inline {
            return Ok(Some(Found {
                version: entry.version,
                bytes: bytes.to_vec(),
                inline_expiry: Some(expiry),
            }));
        }
        let version = entry.version;
        let mkey = meta_key(gun, role, version);
        match snap.get_cf(sm.cf(CF_META)?, &mkey).map_err(rocks("get meta"))? {
            Some(bytes) => Ok(Some(Found {
                version,
                bytes,
                inline_expiry: None,
            })),
            None => Err(Error::Corrupt {
                cf: CF_META,
                key_hex: hex::encode(mkey.as_slice()),
                reason: "current version has no stored file".into(),
            }),
        }
    }

    /// Version and bytes of the (gun, role) file whose sha256 is `sha256_hex` (lower-case hex).
    pub fn by_checksum(&self, gun: &str, role: &str, sha256_hex: &str) -> Result<Option<(u64, Vec<u8>)>> {
        let sm = self.inner.sm();
        check_name("gun", gun)?;
        check_name("role", role)?;
        let snap = sm.db().snapshot();
        let key = checksum_key(gun, role, sha256_hex);
        let Some(v) = snap.get_cf(sm.cf(CF_CHECKSUM)?, &key).map_err(rocks("get checksum"))? else {
            return Ok(None);
        };
        let version = be_u64(CF_CHECKSUM, &key, &v)?;
        Ok(snap
            .get_cf(sm.cf(CF_META)?, meta_key(gun, role, version))
            .map_err(rocks("get meta"))?
            .map(|bytes| (version, bytes)))
    }

    /// Bytes of (gun, role) at `version`.
    pub fn by_version(&self, gun: &str, role: &str, version: u64) -> Result<Option<Vec<u8>>> {
        let sm = self.inner.sm();
        check_name("gun", gun)?;
        check_name("role", role)?;
        sm.get(CF_META, &meta_key(gun, role, version))
    }

    /// Every role of the GUN with its current version, ordered by role name.
    /// The collections whose names start with `prefix` and hold a current file, in name order,
    /// at most `limit` of them, starting after `after` (exclusive) when given.
    pub fn collections_with_prefix(&self, prefix: &str, after: Option<&str>, limit: usize) -> Result<Vec<String>> {
        let sm = self.inner.sm();
        let cf = sm.cf(CF_CURRENT)?;
        let mut out: Vec<String> = Vec::new();
        // Keys are `gun \0 role`: past every key of `gun` is `gun \x01`.
        let past = |gun: &str| {
            let mut k = gun.as_bytes().to_vec();
            k.push(1);
            k
        };
        let mut from = after.map_or_else(|| prefix.as_bytes().to_vec(), past);
        while out.len() < limit {
            let Some(item) = sm
                .db()
                .iterator_cf(cf, IteratorMode::From(&from, Direction::Forward))
                .next()
            else {
                break;
            };
            let (k, _) = item.map_err(rocks("iterate current"))?;
            if !k.starts_with(prefix.as_bytes()) {
                break;
            }
            let end = k.iter().position(|b| *b == 0).unwrap_or(k.len());
            let gun = String::from_utf8(k[..end].to_vec()).map_err(|e| Error::Corrupt {
                cf: CF_CURRENT,
                key_hex: hex::encode(&k[..]),
                reason: e.to_string(),
            })?;
            from = past(&gun);
            out.push(gun);
        }
        Ok(out)
    }

    /// Every role of `gun` with its current version.
    pub fn current_versions(&self, gun: &str) -> Result<Vec<(String, u64)>> {
        let sm = self.inner.sm();
        check_name("gun", gun)?;
        let prefix = gun_prefix(gun);
        let mut out = Vec::new();
        let it = sm
            .db()
            .iterator_cf(sm.cf(CF_CURRENT)?, IteratorMode::From(&prefix, Direction::Forward));
        for item in it {
            let (k, v) = item.map_err(rocks("iterate current"))?;
            if !k.starts_with(&prefix) {
                break;
            }
            let role = String::from_utf8(k[prefix.len()..].to_vec()).map_err(|e| Error::Corrupt {
                cf: CF_CURRENT,
                key_hex: hex::encode(&k[..]),
                reason: e.to_string(),
            })?;
            out.push((role, CurrentEntry::parse(&k, &v)?.version));
        }
        Ok(out)
    }

    /// Expiry (unix nanos) of the GUN's current timestamp, if it has one.
    pub fn timestamp_expiry(&self, gun: &str) -> Result<Option<i64>> {
        let sm = self.inner.sm();
        check_name("gun", gun)?;
        match sm.get(CF_GUN_EXPIRY, gun.as_bytes())? {
            None => Ok(None),
            Some(v) => Ok(Some(expiry_from(gun, &v)?)),
        }
    }

    /// Changefeed with Notary's semantics.
    ///
    /// `records == 0` means 100. Forward (`change_id >= 0` and `records > 0`):
    /// records with ID > `change_id`, oldest first. Backward (`change_id < 0` or
    /// `records < 0`): the `|records|` newest records with ID < `change_id`
    /// (no bound when `change_id <= 0`, so `-1` means "from the end"); like
    /// Notary, this page is then returned in ascending ID order. `gun` filters
    /// by collection through a per-GUN index.
    pub fn changefeed(&self, gun: Option<&str>, change_id: i64, records: i64) -> Result<Vec<ChangeRecord>> {
        let sm = self.inner.sm();
        if let Some(g) = gun {
            check_name("gun", g)?;
        }
        let mut reversed = change_id < 0;
        let mut limit = records;
        if limit < 0 {
            reversed = true;
            limit = limit.saturating_neg();
        }
        if limit == 0 {
            limit = 100;
        }
        let limit = usize::try_from(limit).unwrap_or(usize::MAX);
        let snap = sm.db().snapshot();
        let cf_feed = sm.cf(CF_CHANGEFEED)?;

        // Collect the ids first, through the per-GUN index when filtering.
        let mut ids = Vec::new();
        let (index_cf, prefix) = match gun {
            Some(g) => (sm.cf(CF_CHANGEFEED_GUN)?, gun_prefix(g)),
            None => (cf_feed, Vec::new()),
        };
        let with_prefix = |id: u64| {
            let mut k = prefix.clone();
            k.extend_from_slice(&id.to_be_bytes());
            k
        };
        if reversed {
            let start = if change_id > 0 {
                // ids strictly below change_id
                with_prefix((change_id as u64).saturating_sub(1))
            } else {
                let mut k = prefix.clone();
                k.extend_from_slice(&u64::MAX.to_be_bytes());
                k
            };
            if change_id != 1 {
                for item in snap.iterator_cf(index_cf, IteratorMode::From(&start, Direction::Reverse)) {
                    let (k, _) = item.map_err(rocks("iterate changefeed"))?;
                    if !k.starts_with(&prefix) || ids.len() >= limit {
                        break;
                    }
                    ids.push(be_u64(CF_CHANGEFEED, &k, &k[prefix.len()..])?);
                }
            }
            ids.reverse();
        } else {
            let first = (change_id as u64).saturating_add(1);
            let start = with_prefix(first);
            for item in snap.iterator_cf(index_cf, IteratorMode::From(&start, Direction::Forward)) {
                let (k, _) = item.map_err(rocks("iterate changefeed"))?;
                if !k.starts_with(&prefix) || ids.len() >= limit {
                    break;
                }
                ids.push(be_u64(CF_CHANGEFEED, &k, &k[prefix.len()..])?);
            }
        }
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            let key = id.to_be_bytes();
            let v = snap
                .get_cf(cf_feed, key)
                .map_err(rocks("get changefeed"))?
                .ok_or_else(|| Error::Corrupt {
                    cf: CF_CHANGEFEED,
                    key_hex: hex::encode(key),
                    reason: "indexed change record missing".into(),
                })?;
            out.push(postcard::from_bytes(&v).map_err(|e| Error::Corrupt {
                cf: CF_CHANGEFEED,
                key_hex: hex::encode(key),
                reason: e.to_string(),
            })?);
        }
        Ok(out)
    }

    /// GUNs whose current timestamp expires at or before `before_unix_nanos`,
    /// soonest first, at most `limit`. Cost is proportional to the result, not to
    /// the number of GUNs (index scan).
    pub fn due_timestamps(&self, before_unix_nanos: i64, limit: usize) -> Result<Vec<(String, i64)>> {
        let sm = self.inner.sm();
        let mut out = Vec::new();
        if limit == 0 {
            return Ok(out);
        }
        for item in sm.db().iterator_cf(sm.cf(CF_EXPIRY)?, IteratorMode::Start) {
            let (k, _) = item.map_err(rocks("iterate expiry"))?;
            let corrupt = |reason: &str| Error::Corrupt {
                cf: CF_EXPIRY,
                key_hex: hex::encode(&k[..]),
                reason: reason.to_owned(),
            };
            if k.len() < 9 || k[8] != 0 {
                return Err(corrupt("malformed expiry key"));
            }
            let mut arr = [0u8; 8];
            arr.copy_from_slice(&k[..8]);
            let expires = unsortable(arr);
            if expires > before_unix_nanos {
                break;
            }
            let gun = String::from_utf8(k[9..].to_vec()).map_err(|_| corrupt("gun not UTF-8"))?;
            out.push((gun, expires));
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    /// Keys the server holds for (gun, role): active and pending.
    pub fn server_key(&self, gun: &str, role: &str) -> Result<Option<ServerKeys>> {
        self.inner.sm().server_key(gun, role)
    }
}

#[cfg(test)]
impl Store {
    /// The raw `current` value of (gun, role), for tests of its on-disk form.
    pub(crate) fn raw_current(&self, gun: &str, role: &str) -> Vec<u8> {
        self.inner
            .sm()
            .get(crate::keys::CF_CURRENT, &crate::keys::gun_role(gun, role))
            .unwrap()
            .unwrap()
    }
}

#[cfg(test)]
#[path = "store_tests.rs"]
mod tests;
