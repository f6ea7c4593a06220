//! The state machine's own RocksDB instance.
//!
//! The replicated state (every column family of [`SM_CFS`]) lives in a RocksDB of its own,
//! in a generation directory `<database>/state/<generation>` (20 digits). Which generation is
//! current is recorded in the Raft database (`raft_meta`, written synced): that one write is the
//! commit point of replacing the whole state machine with a snapshot, so a snapshot is made by
//! RocksDB's checkpoint (SST files hard-linked, cost independent of the state's size) and
//! installed by opening a new generation beside the current one and then recording it
//! ([`crate::Store::install_checkpoint`]). At open, every directory of `state/` other than the
//! current generation is removed: a generation half made by an interrupted install, or one
//! retired whose removal a crash cut short.
//!
//! A generation's handle, [`StateDb`], is shared (`Arc`) by readers: a reader holding the
//! retired generation keeps reading it, consistently, until it lets go; the directory is
//! removed when the last handle drops.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use rocksdb::{
    BlockBasedOptions, Cache, ColumnFamily, ColumnFamilyDescriptor, DBCompressionType, Direction, IteratorMode,
    Options, WriteBatch, WriteOptions, DB,
};

use crate::error::{rocks, Error, Result};
use crate::keys::SM_CFS;

/// The directory of state-machine generations inside the database directory.
pub(crate) const STATE_DIR: &str = "state";

/// The write-ahead log's size past which RocksDB flushes the column families that keep its
/// oldest file alive (docs/security.md), in each of the node's two databases.
pub const MAX_TOTAL_WAL_BYTES: u64 = 64 << 20;

/// Memory for memtables, across all column families of one database: past it RocksDB flushes
/// the largest. Without it each of the state machine's nine families could hold up to two 64 MiB
/// memtables (RocksDB's default), so memory grew with how many families had been written.
pub const MEMTABLE_BUDGET_BYTES: usize = 64 << 20;

/// One column family's memtable size at which it is flushed (RocksDB's default is 64 MiB).
const WRITE_BUFFER_BYTES: usize = 32 << 20;

/// The block cache of the state machine's database (data blocks of files read by `GET`s that
/// missed the node's current-file cache); shared by its column families, bounded.
pub const STATE_BLOCK_CACHE_BYTES: usize = 64 << 20;

/// The block cache of the Raft database (the log is read back mostly from memtables).
pub const RAFT_BLOCK_CACHE_BYTES: usize = 8 << 20;

/// Bloom filter bits per key in the state machine's SST files: about 1 % false positives, so a
/// point lookup reads a data block only from the one file that holds its key, instead of one from
/// every L0 file and level whose key range covers it.
const BLOOM_BITS_PER_KEY: f64 = 10.0;

/// Which of the node's two databases [`db_options`] is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DbKind {
    /// Log, Raft metadata, the node's own records.
    Raft,
    /// The replicated state machine ([`StateDb`]).
    State,
}

/// Options of the Raft database and the state machine's.
///
/// Index and filter blocks stay outside the block cache (RocksDB's default): loaded when a file
/// is opened, kept while it is open, so a read after a restart goes to disk for its data block
/// only. They are about 1 % of the data (docs/storage.md, "Memory").
/// The table options (filters, block cache) are set with the cache `cache`, one per database,
/// shared by its column families.
pub(crate) fn db_options(kind: DbKind, cache: &Cache) -> Options {
    let mut opts = Options::default();
    opts.create_if_missing(true);
    opts.create_missing_column_families(true);
    opts.set_compression_type(DBCompressionType::Lz4);
    opts.set_keep_log_file_num(4);
    // Column families share one write-ahead log, and a log file is deleted only once every
    // family with writes in it has flushed them. Families written rarely (the vote, the server
    // keys) never fill their memtables, so by RocksDB's default bound (4 × the families' write
    // buffers, several GB here) the log grew with every publish: 170 MB of a 10,000-collection
    // node's 320 MB, all replayed at each start. Past this bound RocksDB flushes the families
    // holding the oldest log file.
    opts.set_max_total_wal_size(MAX_TOTAL_WAL_BYTES);
    opts.set_db_write_buffer_size(MEMTABLE_BUDGET_BYTES);
    opts.set_write_buffer_size(WRITE_BUFFER_BYTES);
    let mut table = BlockBasedOptions::default();
    table.set_block_cache(cache);
    if kind == DbKind::State {
        table.set_bloom_filter(BLOOM_BITS_PER_KEY, false);
        table.set_optimize_filters_for_memory(true);
    }
    opts.set_block_based_table_factory(&table);
    opts
}

/// Open the database at `path` with column families `cfs`, each with [`db_options`] of `kind`
/// (`DB::open_cf` would give the families RocksDB's defaults: no compression, no filters).
pub(crate) fn open_db<'a>(
    kind: DbKind,
    path: &Path,
    cfs: impl IntoIterator<Item = &'a str>,
) -> std::result::Result<DB, rocksdb::Error> {
    let cache = Cache::new_lru_cache(match kind {
        DbKind::Raft => RAFT_BLOCK_CACHE_BYTES,
        DbKind::State => STATE_BLOCK_CACHE_BYTES,
    });
    let opts = db_options(kind, &cache);
    let descriptors = cfs
        .into_iter()
        .map(|name| ColumnFamilyDescriptor::new(name, db_options(kind, &cache)));
    DB::open_cf_descriptors(&opts, path, descriptors)
}

/// The directory of generation `generation` under the database directory `db_path`.
pub(crate) fn generation_dir(db_path: &Path, generation: u64) -> PathBuf {
    db_path.join(STATE_DIR).join(format!("{generation:020}"))
}

/// One generation of the state machine's database.
pub(crate) struct StateDb {
    /// `Some` until dropped.
    db: Option<DB>,
    dir: PathBuf,
    generation: u64,
    /// Remove the directory once the database is closed (a generation replaced by an install).
    retired: AtomicBool,
}

impl StateDb {
    /// Open (creating if needed) generation `generation` in `dir`.
    pub(crate) fn open(dir: &Path, generation: u64) -> Result<StateDb> {
        let db = open_db(DbKind::State, dir, SM_CFS).map_err(rocks("open state machine"))?;
        Ok(StateDb {
            db: Some(db),
            dir: dir.to_path_buf(),
            generation,
            retired: AtomicBool::new(false),
        })
    }

    pub(crate) fn db(&self) -> &DB {
        // Taken only by `drop`.
        self.db.as_ref().expect("a state database is open until dropped")
    }

    pub(crate) fn generation(&self) -> u64 {
        self.generation
    }

    /// Remove this generation's directory when its last handle drops.
    pub(crate) fn retire(&self) {
        self.retired.store(true, Ordering::SeqCst);
    }

    pub(crate) fn cf(&self, name: &'static str) -> Result<&ColumnFamily> {
        self.db().cf_handle(name).ok_or(Error::MissingColumnFamily { cf: name })
    }

    pub(crate) fn get(&self, cf: &'static str, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.db().get_cf(self.cf(cf)?, key).map_err(rocks("get"))
    }

    /// Write a batch, not synced: the entry it applies is durable in the Raft log, and a
    /// snapshot (a checkpoint, which flushes) is taken before any of the log is purged.
    pub(crate) fn write(&self, batch: WriteBatch) -> Result<()> {
        let mut wo = WriteOptions::default();
        wo.set_sync(false);
        self.db().write_opt(batch, &wo).map_err(rocks("write"))
    }

    /// Keys of `cf` starting with `prefix`, in order.
    pub(crate) fn prefix_keys(&self, cf: &'static str, prefix: &[u8]) -> Result<Vec<Vec<u8>>> {
        let mut out = Vec::new();
        let it = self
            .db()
            .iterator_cf(self.cf(cf)?, IteratorMode::From(prefix, Direction::Forward));
        for item in it {
            let (k, _) = item.map_err(rocks("iterate"))?;
            if !k.starts_with(prefix) {
                break;
            }
            out.push(k.into_vec());
        }
        Ok(out)
    }
}

impl Drop for StateDb {
    fn drop(&mut self) {
        drop(self.db.take());
        if self.retired.load(Ordering::SeqCst) {
            // Best effort: a directory left behind is removed at the next open.
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Remove every entry of `<db_path>/state` except generation `keep`.
pub(crate) fn prune_generations(db_path: &Path, keep: u64) -> Result<()> {
    let root = db_path.join(STATE_DIR);
    let keep_dir = generation_dir(db_path, keep);
    let entries = match std::fs::read_dir(&root) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(source) => return Err(Error::Io { path: root, source }),
    };
    for entry in entries {
        let entry = entry.map_err(|source| Error::Io {
            path: root.clone(),
            source,
        })?;
        let path = entry.path();
        if path == keep_dir {
            continue;
        }
        let removed = if entry.file_type().is_ok_and(|t| t.is_dir()) {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        removed.map_err(|source| Error::Io { path, source })?;
    }
    Ok(())
}

/// Make `to` (which must not exist) a durable copy of the checkpoint directory `from`: SST
/// files hard-linked (RocksDB never changes one; copied when linking fails, as across file
/// systems), every other file (MANIFEST, OPTIONS, CURRENT, write-ahead logs, which RocksDB may
/// rewrite or replace) copied; every file, `to` and its parent fsync'd. `after_first` runs once
/// the first file is in place (a crash point for tests).
pub(crate) fn link_or_copy_dir(from: &Path, to: &Path, after_first: &mut dyn FnMut()) -> Result<()> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| Error::Io { path, source }
    };
    std::fs::create_dir(to).map_err(io(to))?;
    let mut names = Vec::new();
    for entry in std::fs::read_dir(from).map_err(io(from))? {
        let entry = entry.map_err(io(from))?;
        if !entry.file_type().map_err(io(&entry.path()))?.is_file() {
            return Err(Error::InvalidSnapshot {
                path: entry.path(),
                reason: "a checkpoint holds regular files only".into(),
            });
        }
        names.push(entry.file_name());
    }
    names.sort();
    for (i, name) in names.iter().enumerate() {
        let src = from.join(name);
        let dst = to.join(name);
        let is_sst = Path::new(name).extension().is_some_and(|e| e == "sst");
        if !(is_sst && std::fs::hard_link(&src, &dst).is_ok()) {
            std::fs::copy(&src, &dst).map_err(io(&dst))?;
        }
        std::fs::File::open(&dst).and_then(|f| f.sync_all()).map_err(io(&dst))?;
        if i == 0 {
            after_first();
        }
    }
    sync_dir(to)?;
    if let Some(parent) = to.parent() {
        sync_dir(parent)?;
    }
    Ok(())
}

/// Make `to` (which must not exist) a durable copy of the checkpoint directory `from`, as an
/// install places it ([`link_or_copy_dir`]): SST files hard-linked, the others copied.
pub fn copy_checkpoint(from: &Path, to: &Path) -> Result<()> {
    link_or_copy_dir(from, to, &mut || {})
}

/// Fsync a directory (its entries).
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|source| Error::Io {
            path: dir.to_path_buf(),
            source,
        })
}
