//! State-machine snapshots: a streamed file, built from a RocksDB snapshot
//! (one consistent point in time) and installed crash-safely.
//!
//! File format: the magic `SEALSNAP1`, then records
//! `[cf index u8][key len u32 BE][key][value len u32 BE][value]` for every key
//! of every state-machine column family ([`crate::keys::SM_CFS`] order, each in
//! key order), then the end byte `0xFF`, then the 32-byte sha256 of everything
//! before it. Nothing is held in memory beyond one record and one write batch.
//!
//! Install: the file is verified end to end first; then an "installing from
//! <path>" marker is written (fsync'd) to `raft_meta`; the state-machine column
//! families are cleared and refilled in bounded batches (not fsync'd); the last
//! batch removes the marker and is fsync'd, which also persists every earlier
//! batch (one shared WAL). If the process dies in between, [`Store::open`] finds
//! the marker and redoes the install from the same file before anything else
//! can read the half-installed state.
//!
//! Digest: [`Store::state_digest`] hashes the same stream (magic, records, end byte) as
//! [`Store::write_snapshot`] writes — one walk serves both — without writing a file, so a
//! store's digest equals the trailer of a snapshot taken of it at the same point.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use rocksdb::{IteratorMode, WriteBatch};
use sha2::{Digest, Sha256};

use crate::error::{rocks, Error, Result};
use crate::keys::{CF_RAFT_META, CF_SM_META, RM_INSTALLING, SM_CFS, SM_LAST_APPLIED, SM_MEMBERSHIP};
use crate::store::{Inner, Reader, Store};

const MAGIC: &[u8; 9] = b"SEALSNAP1";
const END: u8 = 0xFF;
const BATCH_BYTES: usize = 4 << 20;
const MAX_KEY: u32 = 1 << 16;
const MAX_VALUE: u32 = 1 << 30;

/// What a snapshot file holds, as found while writing or verifying it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SnapshotInfo {
    /// Serialized last applied log id stored in the snapshot (`sm_meta`).
    pub last_applied: Option<Vec<u8>>,
    /// Serialized membership stored in the snapshot (`sm_meta`).
    pub membership: Option<Vec<u8>>,
    /// Number of key/value records.
    pub records: u64,
    /// File size in bytes.
    pub bytes: u64,
    /// Hex sha256 trailer of the file.
    pub sha256: String,
}

struct HashWriter<W: Write> {
    inner: W,
    hasher: Sha256,
    bytes: u64,
}

impl<W: Write> HashWriter<W> {
    fn put(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.hasher.update(buf);
        self.bytes += buf.len() as u64;
        self.inner.write_all(buf)
    }
}

struct HashReader<R: Read> {
    inner: R,
    hasher: Sha256,
    bytes: u64,
}

impl<R: Read> HashReader<R> {
    fn take(&mut self, buf: &mut [u8]) -> std::io::Result<()> {
        self.inner.read_exact(buf)?;
        self.hasher.update(&*buf);
        self.bytes += buf.len() as u64;
        Ok(())
    }

    fn take_vec(&mut self, len: usize) -> std::io::Result<Vec<u8>> {
        let mut v = vec![0u8; len];
        self.take(&mut v)?;
        Ok(v)
    }

    fn take_u32(&mut self) -> std::io::Result<u32> {
        let mut b = [0u8; 4];
        self.take(&mut b)?;
        Ok(u32::from_be_bytes(b))
    }
}

/// A record read from a snapshot file.
enum Item {
    Record(usize, Vec<u8>, Vec<u8>),
    End,
}

/// Sequential reader of a snapshot file that checks structure and the trailer.
struct SnapReader {
    path: PathBuf,
    r: HashReader<BufReader<File>>,
}

impl SnapReader {
    fn open(path: &Path) -> Result<SnapReader> {
        let file = File::open(path).map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let mut sr = SnapReader {
            path: path.to_path_buf(),
            r: HashReader {
                inner: BufReader::with_capacity(1 << 16, file),
                hasher: Sha256::new(),
                bytes: 0,
            },
        };
        let mut magic = [0u8; 9];
        sr.r.take(&mut magic).map_err(|e| sr.io(e))?;
        if &magic != MAGIC {
            return Err(sr.invalid("bad magic"));
        }
        Ok(sr)
    }

    fn io(&self, source: std::io::Error) -> Error {
        if source.kind() == std::io::ErrorKind::UnexpectedEof {
            return self.invalid("truncated");
        }
        Error::Io {
            path: self.path.clone(),
            source,
        }
    }

    fn invalid(&self, reason: &str) -> Error {
        Error::InvalidSnapshot {
            path: self.path.clone(),
            reason: reason.to_owned(),
        }
    }

    fn next_item(&mut self) -> Result<Item> {
        let mut tag = [0u8; 1];
        self.r.take(&mut tag).map_err(|e| self.io(e))?;
        if tag[0] == END {
            return Ok(Item::End);
        }
        let cf = usize::from(tag[0]);
        if cf >= SM_CFS.len() {
            return Err(self.invalid("unknown column family index"));
        }
        let klen = self.r.take_u32().map_err(|e| self.io(e))?;
        if klen > MAX_KEY {
            return Err(self.invalid("key too long"));
        }
        let key = self.r.take_vec(klen as usize).map_err(|e| self.io(e))?;
        let vlen = self.r.take_u32().map_err(|e| self.io(e))?;
        if vlen > MAX_VALUE {
            return Err(self.invalid("value too long"));
        }
        let value = self.r.take_vec(vlen as usize).map_err(|e| self.io(e))?;
        Ok(Item::Record(cf, key, value))
    }

    /// After [`Item::End`]: check the trailer and that nothing follows. Returns the hex digest.
    fn finish(mut self) -> Result<(String, u64)> {
        let computed = std::mem::take(&mut self.r.hasher).finalize();
        let mut trailer = [0u8; 32];
        self.r.inner.read_exact(&mut trailer).map_err(|e| self.io(e))?;
        if trailer[..] != computed[..] {
            return Err(self.invalid("checksum mismatch"));
        }
        let mut extra = [0u8; 1];
        match self.r.inner.read(&mut extra) {
            Ok(0) => {}
            Ok(_) => return Err(self.invalid("trailing bytes")),
            Err(e) => return Err(self.io(e)),
        }
        Ok((hex::encode(trailer), self.r.bytes + 32))
    }
}

/// Read a snapshot file end to end, checking its structure and checksum.
pub fn verify_snapshot(path: &Path) -> Result<SnapshotInfo> {
    let mut sr = SnapReader::open(path)?;
    let mut info = SnapshotInfo::default();
    let mut last: Option<(usize, Vec<u8>)> = None;
    while let Item::Record(cf, key, value) = sr.next_item()? {
        if let Some((lcf, lkey)) = &last {
            if (cf, &key) <= (*lcf, lkey) {
                return Err(sr.invalid("records out of order"));
            }
        }
        if SM_CFS[cf] == CF_SM_META {
            if key == SM_LAST_APPLIED {
                info.last_applied = Some(value);
            } else if key == SM_MEMBERSHIP {
                info.membership = Some(value);
            }
        }
        info.records += 1;
        last = Some((cf, key));
    }
    let (sha, bytes) = sr.finish()?;
    info.sha256 = sha;
    info.bytes = bytes;
    Ok(info)
}

fn io_at(path: &Path) -> impl Fn(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn sync_parent(path: &Path) -> Result<()> {
    if let Some(dir) = path.parent() {
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        File::open(dir).and_then(|d| d.sync_all()).map_err(io_at(dir))?;
    }
    Ok(())
}

/// A digest of the whole state machine, as [`Store::state_digest`] computes it.
///
/// `sha256` is the hash of exactly the bytes a snapshot file taken at the same point would hold
/// before its trailer (so it equals that file's [`SnapshotInfo::sha256`]): two stores whose
/// state machines hold the same keys and values (the last applied log id and membership
/// included) have the same digest, whatever their Raft logs, snapshots or compaction history.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct StateDigest {
    /// Serialized last applied log id the digest covers (`sm_meta`), as in [`SnapshotInfo`].
    pub last_applied: Option<Vec<u8>>,
    /// Hex sha256 of the state machine's snapshot stream.
    pub sha256: String,
    /// Number of key/value records covered.
    pub records: u64,
}

/// Stream the state machine, read at one consistent point (a RocksDB snapshot), into `w` in
/// the snapshot file format (magic, records, end byte; no trailer): the one walk behind both
/// [`Store::write_snapshot`] and [`Store::state_digest`]. Fills `last_applied`, `membership`
/// and `records` of the returned info; `io` maps a failure of `w`.
fn stream_state<W: Write>(
    inner: &Inner,
    w: &mut HashWriter<W>,
    io: &dyn Fn(std::io::Error) -> Error,
) -> Result<SnapshotInfo> {
    let mut info = SnapshotInfo::default();
    w.put(MAGIC).map_err(io)?;
    let snap = inner.db.snapshot();
    for (i, name) in SM_CFS.iter().enumerate() {
        let cf = inner.cf(name)?;
        let tag = u8::try_from(i).map_err(|_| Error::Encode {
            what: "snapshot",
            reason: "too many column families".into(),
        })?;
        for item in snap.iterator_cf(cf, IteratorMode::Start) {
            let (k, v) = item.map_err(rocks("iterate for snapshot"))?;
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
            w.put(&v).map_err(io)?;
            if *name == CF_SM_META {
                if &*k == SM_LAST_APPLIED {
                    info.last_applied = Some(v.to_vec());
                } else if &*k == SM_MEMBERSHIP {
                    info.membership = Some(v.to_vec());
                }
            }
            info.records += 1;
        }
    }
    drop(snap);
    w.put(&[END]).map_err(io)?;
    Ok(info)
}

/// See [`Store::state_digest`]; shared with [`crate::Reader::state_digest`].
pub(crate) fn digest_state(inner: &Inner) -> Result<StateDigest> {
    let mut w = HashWriter {
        inner: std::io::sink(),
        hasher: Sha256::new(),
        bytes: 0,
    };
    let path = inner.path.clone();
    let info = stream_state(inner, &mut w, &|source| Error::Io {
        path: path.clone(),
        source,
    })?;
    Ok(StateDigest {
        last_applied: info.last_applied,
        sha256: hex::encode(w.hasher.finalize()),
        records: info.records,
    })
}

impl Store {
    /// Write a snapshot of the state machine, taken at one consistent point, to
    /// `path` (via `path.tmp`, fsync'd and renamed, so `path` is complete or absent).
    pub fn write_snapshot(&self, path: &Path) -> Result<SnapshotInfo> {
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        let file = File::create(&tmp).map_err(io_at(&tmp))?;
        let mut w = HashWriter {
            inner: BufWriter::with_capacity(1 << 16, file),
            hasher: Sha256::new(),
            bytes: 0,
        };
        let mut info = stream_state(&self.inner, &mut w, &io_at(&tmp))?;
        let digest = std::mem::take(&mut w.hasher).finalize();
        w.inner.write_all(&digest).map_err(io_at(&tmp))?;
        info.bytes = w.bytes + 32;
        info.sha256 = hex::encode(digest);
        let file = w.inner.into_inner().map_err(|e| Error::Io {
            path: tmp.clone(),
            source: e.into_error(),
        })?;
        file.sync_all().map_err(io_at(&tmp))?;
        drop(file);
        std::fs::rename(tmp.as_path(), path).map_err(io_at(path))?;
        sync_parent(path)?;
        Ok(info)
    }

    /// A digest of the state machine read at one consistent point: the sha256 of the bytes a
    /// snapshot taken now would hold (see [`StateDigest`]), computed without writing any file.
    /// Reads the whole state machine: call it from a blocking context.
    pub fn state_digest(&self) -> Result<StateDigest> {
        digest_state(&self.inner)
    }

    /// Replace the whole state machine with the contents of the snapshot file at
    /// `path`, crash-safely (see the module documentation). `path` must stay in
    /// place until a later snapshot replaces it: recovery after a crash reads it.
    pub fn install_snapshot(&self, path: &Path) -> Result<SnapshotInfo> {
        let info = verify_snapshot(path)?;
        let path_str = path.to_str().ok_or_else(|| Error::InvalidSnapshot {
            path: path.to_path_buf(),
            reason: "snapshot path is not UTF-8".into(),
        })?;
        let _guard = self.inner.lock();
        let mut marker = WriteBatch::default();
        marker.put_cf(self.inner.cf(CF_RAFT_META)?, RM_INSTALLING, path_str.as_bytes());
        self.inner.write(marker, true)?;
        self.refill_from(path)?;
        Ok(info)
    }

    /// Called by [`Store::open`]: finish an install a crash interrupted.
    pub(crate) fn recover_interrupted_install(&self) -> Result<()> {
        let Some(marker) = self.inner.get(CF_RAFT_META, RM_INSTALLING)? else {
            return Ok(());
        };
        let path = PathBuf::from(String::from_utf8_lossy(&marker).into_owned());
        if !path.exists() {
            return Err(Error::InstallUnrecoverable { path });
        }
        verify_snapshot(&path)?;
        let _guard = self.inner.lock();
        self.refill_from(&path)
    }

    /// Clear the state-machine column families and load `path` into them; the
    /// final, fsync'd batch removes the install marker. Caller holds the write lock.
    fn refill_from(&self, path: &Path) -> Result<()> {
        // Readers see the state change under them during the refill (as without a cache); the
        // cache must not keep any of it, nor anything from before.
        self.inner.cache.clear();
        for name in SM_CFS {
            let cf = self.inner.cf(name)?;
            let mut batch = WriteBatch::default();
            for item in self.inner.db.iterator_cf(cf, IteratorMode::Start) {
                let (k, _) = item.map_err(rocks("iterate for clear"))?;
                batch.delete_cf(cf, k);
                if batch.size_in_bytes() >= BATCH_BYTES {
                    self.inner.write(std::mem::take(&mut batch), false)?;
                }
            }
            self.inner.write(batch, false)?;
        }
        let mut sr = SnapReader::open(path)?;
        let mut batch = WriteBatch::default();
        while let Item::Record(cf, key, value) = sr.next_item()? {
            batch.put_cf(self.inner.cf(SM_CFS[cf])?, key, value);
            if batch.size_in_bytes() >= BATCH_BYTES {
                self.inner.write(std::mem::take(&mut batch), false)?;
            }
        }
        // A file that changed since verification leaves the marker in place.
        sr.finish()?;
        batch.delete_cf(self.inner.cf(CF_RAFT_META)?, RM_INSTALLING);
        self.inner.write(batch, true)?;
        self.inner.cache.clear();
        Ok(())
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
