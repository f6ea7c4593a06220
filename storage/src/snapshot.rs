//! State-machine snapshots as RocksDB checkpoints, and the state digest.
//!
//! Build ([`Store::checkpoint_state`]): a checkpoint of the state machine's database, its SST
//! files hard-linked, so the cost does not grow with the state (a memtable flush and a link per
//! file); the writers wait only for the second of two flushes, which finds the memtables nearly
//! empty, and for the links.
//!
//! Install ([`Store::install_checkpoint`]): the checkpoint becomes the next generation of the
//! state machine beside the current one (SST files linked, the others copied, all fsync'd), is
//! opened, and is then recorded as current in the Raft database with one synced write: the
//! commit point. A crash before it leaves the old generation current (the new directory is
//! removed at the next open); after it, the new one. Readers holding the old generation finish
//! on it; its directory goes when they let go.
//!
//! Digest: [`Store::state_digest`] hashes one stream over every state-machine column family at
//! one consistent point (the magic `SEALSNAP1`, then records `[cf index u8][key len u32 BE][key]
//! [value len u32 BE][value]` in [`crate::keys::SM_CFS`] order, each in key order, then the end
//! byte `0xFF`): two stores whose state machines hold the same keys and values have the same
//! digest, whatever their files, logs or compaction history. A value of `current` counts as its
//! version alone: the timestamp's expiry and bytes that format 3 keeps beside it are copies of
//! `gun_expiry` and `meta` (both hashed), so a node of format 2 and one of format 3 holding the
//! same state agree ([`crate::keys::CurrentEntry`]).

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use rocksdb::checkpoint::Checkpoint;
use rocksdb::IteratorMode;
use sha2::{Digest, Sha256};

use crate::error::{rocks, Error, Result};
use crate::keys::{CurrentEntry, CF_CURRENT, CF_SM_META, SM_CFS, SM_LAST_APPLIED, SM_MEMBERSHIP};
use crate::local::record_generation;
use crate::state::{generation_dir, link_or_copy_dir, StateDb};
use crate::store::{Inner, Reader, Store};

const MAGIC: &[u8; 9] = b"SEALSNAP1";
const END: u8 = 0xFF;
const MAX_KEY: u32 = 1 << 16;
const MAX_VALUE: u32 = 1 << 30;

/// What a state-machine checkpoint holds.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CheckpointInfo {
    /// Serialized last applied log id stored in it (`sm_meta`).
    pub last_applied: Option<Vec<u8>>,
    /// Serialized membership stored in it (`sm_meta`).
    pub membership: Option<Vec<u8>>,
    /// Number of files in the checkpoint directory.
    pub files: u64,
    /// Their total size in bytes.
    pub bytes: u64,
    /// How long the state machine's writers waited for it (building only).
    pub writers_waited: std::time::Duration,
}

struct HashWriter<W: Write> {
    inner: W,
    hasher: Sha256,
}

impl<W: Write> HashWriter<W> {
    fn put(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.hasher.update(buf);
        self.inner.write_all(buf)
    }
}

/// The steps of [`Store::install_checkpoint`] after which a test may crash the process, in
/// order: the checkpoint checked, its first file placed, all placed, the new generation opened,
/// the new generation recorded (the commit point).
pub const INSTALL_STEPS: [&str; 5] = ["checked", "linking", "linked", "opened", "committed"];

/// In this crate's tests and with the `fault-injection` feature (tests only): abort the process
/// at `step` when the environment variable `SEAL_CRASH_AT` names it, as a crash there would.
/// Otherwise nothing: shipping builds have no check.
#[cfg(any(test, feature = "fault-injection"))]
pub fn crash_point(step: &str) {
    if std::env::var_os("SEAL_CRASH_AT").is_some_and(|v| v == step) {
        std::process::abort();
    }
}

/// In this crate's tests and with the `fault-injection` feature (tests only): abort the process
/// at `step` when the environment variable `SEAL_CRASH_AT` names it, as a crash there would.
/// Otherwise nothing: shipping builds have no check.
#[cfg(not(any(test, feature = "fault-injection")))]
#[inline(always)]
pub fn crash_point(_step: &str) {}

fn io_at(path: &Path) -> impl Fn(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Number and total size of the files in `dir` (a checkpoint: a flat directory).
pub fn dir_size(dir: &Path) -> Result<(u64, u64)> {
    let (mut files, mut bytes) = (0, 0);
    for entry in std::fs::read_dir(dir).map_err(io_at(dir))? {
        let entry = entry.map_err(io_at(dir))?;
        files += 1;
        bytes += entry.metadata().map_err(io_at(&entry.path()))?.len();
    }
    Ok((files, bytes))
}

/// A digest of the whole state machine, as [`Store::state_digest`] computes it.
///
/// `sha256` is the hash of the stream described in the module documentation: two stores whose
/// state machines hold the same keys and values (the last applied log id and membership
/// included) have the same digest, whatever their Raft logs, snapshots or compaction history.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct StateDigest {
    /// Serialized last applied log id the digest covers (`sm_meta`).
    pub last_applied: Option<Vec<u8>>,
    /// Hex sha256 of the state machine's stream.
    pub sha256: String,
    /// Number of key/value records covered.
    pub records: u64,
}

/// Stream the state machine, read at one consistent point (a RocksDB snapshot), into `w` (magic,
/// records, end byte). Fills `last_applied` and `records` of the returned digest; `io` maps a
/// failure of `w`.
fn stream_state<W: Write>(
    inner: &Inner,
    w: &mut HashWriter<W>,
    io: &dyn Fn(std::io::Error) -> Error,
) -> Result<StateDigest> {
    let mut digest = StateDigest::default();
    w.put(MAGIC).map_err(io)?;
    let sm = inner.sm();
    let snap = sm.db().snapshot();
    for (i, name) in SM_CFS.iter().enumerate() {
        let cf = sm.cf(name)?;
        let tag = u8::try_from(i).map_err(|_| Error::Encode {
            what: "snapshot",
            reason: "too many column families".into(),
        })?;
        for item in snap.iterator_cf(cf, IteratorMode::Start) {
            let (k, v) = item.map_err(rocks("iterate for snapshot"))?;
            // The version alone (see the module documentation), once the value is known well formed.
            let v = if *name == CF_CURRENT {
                CurrentEntry::parse(&k, &v)?;
                &v[..8]
            } else {
                &v[..]
            };
            let too_long = |what: &str| Error::Encode {
                what: "snapshot",
                reason: format!("{what} too long in {name}"),
            };
            let klen = u32::try_from(k.len())
                .ok()
                .filter(|l| *l <= MAX_KEY)
                .ok_or_else(|| too_long("key"))?;
            let vlen = u32::try_from(v.len())
                .ok()
                .filter(|l| *l <= MAX_VALUE)
                .ok_or_else(|| too_long("value"))?;
            w.put(&[tag]).map_err(io)?;
            w.put(&klen.to_be_bytes()).map_err(io)?;
            w.put(&k).map_err(io)?;
            w.put(&vlen.to_be_bytes()).map_err(io)?;
            w.put(v).map_err(io)?;
            if *name == CF_SM_META && &*k == SM_LAST_APPLIED {
                digest.last_applied = Some(v.to_vec());
            }
            digest.records += 1;
        }
    }
    drop(snap);
    w.put(&[END]).map_err(io)?;
    Ok(digest)
}

/// See [`Store::state_digest`]; shared with [`crate::Reader::state_digest`].
pub(crate) fn digest_state(inner: &Inner) -> Result<StateDigest> {
    let mut w = HashWriter {
        inner: std::io::sink(),
        hasher: Sha256::new(),
    };
    let path = inner.path.clone();
    let mut digest = stream_state(inner, &mut w, &|source| Error::Io {
        path: path.clone(),
        source,
    })?;
    digest.sha256 = hex::encode(w.hasher.finalize());
    Ok(digest)
}

impl Store {
    /// Make a checkpoint of the state machine in `dir`, which must not exist (its parent must):
    /// see the module documentation. Returns what it holds, read at the point it was taken.
    pub fn checkpoint_state(&self, dir: &Path) -> Result<CheckpointInfo> {
        if dir.exists() {
            return Err(Error::Io {
                path: dir.to_path_buf(),
                source: std::io::Error::new(std::io::ErrorKind::AlreadyExists, "already exists"),
            });
        }
        // Most of the memtables go to disk without stopping the writers (`DB::flush` would flush
        // only the default column family, which holds nothing).
        {
            let sm = self.inner.sm();
            let cfs = SM_CFS.iter().map(|name| sm.cf(name)).collect::<Result<Vec<_>>>()?;
            sm.db()
                .flush_cfs_opt(&cfs, &rocksdb::FlushOptions::default())
                .map_err(rocks("flush for a checkpoint"))?;
        }
        let (last_applied, membership, writers_waited) = {
            let _guard = self.inner.lock();
            let locked = std::time::Instant::now();
            let sm = self.inner.sm();
            let applied = (sm.get(CF_SM_META, SM_LAST_APPLIED)?, sm.get(CF_SM_META, SM_MEMBERSHIP)?);
            Checkpoint::new(sm.db())
                .and_then(|c| c.create_checkpoint(dir))
                .map_err(rocks("checkpoint"))?;
            (applied.0, applied.1, locked.elapsed())
        };
        let (files, bytes) = dir_size(dir)?;
        Ok(CheckpointInfo {
            last_applied,
            membership,
            files,
            bytes,
            writers_waited,
        })
    }

    /// Replace the whole state machine with the checkpoint in `src` (made by
    /// [`Store::checkpoint_state`], here or on another node), crash-safely: see the module
    /// documentation. `src` is left as it is. Returns what the installed state holds.
    pub fn install_checkpoint(&self, src: &Path) -> Result<CheckpointInfo> {
        let (files, bytes) = dir_size(src)?;
        if !src.join("CURRENT").is_file() {
            return Err(Error::InvalidSnapshot {
                path: src.to_path_buf(),
                reason: "not a RocksDB checkpoint (no CURRENT)".into(),
            });
        }
        crash_point("checked");
        let _guard = self.inner.lock();
        let old = self.inner.sm();
        let generation = old.generation() + 1;
        let dir = generation_dir(&self.inner.path, generation);
        if dir.exists() {
            std::fs::remove_dir_all(&dir).map_err(io_at(&dir))?;
        }
        let new = link_or_copy_dir(src, &dir, &mut || crash_point("linking"))
            .and_then(|()| {
                crash_point("linked");
                StateDb::open(&dir, generation)
            })
            .and_then(|new| {
                let info = CheckpointInfo {
                    last_applied: new.get(CF_SM_META, SM_LAST_APPLIED)?,
                    membership: new.get(CF_SM_META, SM_MEMBERSHIP)?,
                    files,
                    bytes,
                    writers_waited: std::time::Duration::ZERO,
                };
                Ok((new, info))
            });
        let (new, info) = match new {
            Ok(n) => n,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                return Err(e);
            }
        };
        crash_point("opened");
        if let Err(e) = record_generation(&self.inner.db, generation) {
            new.retire();
            return Err(e);
        }
        crash_point("committed");
        self.inner.cache.clear();
        *self.inner.sm.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(new);
        old.retire();
        drop(old);
        // Reads that began on the old generation may have filled the cache since the first clear.
        self.inner.cache.clear();
        Ok(info)
    }

    /// A digest of the state machine read at one consistent point (see [`StateDigest`]),
    /// computed without writing any file. Reads the whole state machine: call it from a
    /// blocking context.
    pub fn state_digest(&self) -> Result<StateDigest> {
        digest_state(&self.inner)
    }
}

impl Reader {
    /// Hex sha256 over every state-machine column family in key order, read at one
    /// consistent point: equal digests mean equal replicated state (including the last applied
    /// log id and membership). The same value as [`Store::state_digest`]'s `sha256`.
    pub fn state_digest(&self) -> Result<String> {
        digest_state(&self.inner).map(|d| d.sha256)
    }
}
