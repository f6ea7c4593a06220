//! `seal-signer backup` and `seal-signer restore`: a copy of the signer's
//! store (key records and high-water marks) taken while the signer runs,
//! and a new signer's data directory seeded from it.
//!
//! The backup opens the live store read-only (no lock: the running signer
//! keeps it), reads every column family from one RocksDB snapshot and
//! writes a new, synced RocksDB at `<out>/db`, with `<out>/backup.json`
//! ([`Manifest`]) beside it. Keys stay exactly as stored: software keys and
//! threshold shares encrypted under their alias's passphrase, PKCS#11
//! keys as handles naming objects in the token (which only the HSM's own
//! tools back up). The high-water marks come along, so a restored signer
//! still refuses to sign a version at or below what it had signed.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::store::{Store, StoreError};

/// Name of the description a backup directory holds beside its database.
pub const MANIFEST: &str = "backup.json";
/// The database directory inside a backup.
pub const DB_DIR: &str = "db";
/// The `format` of the backups this version writes and restores.
pub const FORMAT: &str = "seal-signer-backup-v1";

/// What `backup.json` says about a backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// [`FORMAT`].
    pub format: String,
    /// When the backup was taken (RFC 3339, UTC).
    pub created_at: String,
    /// The data directory it was taken from.
    pub source: PathBuf,
    /// How many key records it holds.
    pub keys: usize,
    /// How many high-water marks it holds.
    pub high_water_marks: usize,
    /// How many keys each backend (`software`, `pkcs11`, `threshold`) holds.
    pub backends: BTreeMap<String, usize>,
    /// The aliases whose passphrases the software keys and threshold shares
    /// are encrypted under (a restored signer needs them).
    pub aliases: BTreeSet<String>,
}

/// Why a backup or a restore failed; nothing is left behind.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BackupError {
    /// The store could not be opened, read or written.
    #[error("{path}: {source}")]
    Store {
        /// The database directory.
        path: PathBuf,
        /// What went wrong.
        #[source]
        source: StoreError,
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

fn store_err(path: &Path) -> impl Fn(StoreError) -> BackupError + '_ {
    move |source| BackupError::Store {
        path: path.to_path_buf(),
        source,
    }
}

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> BackupError + '_ {
    move |source| BackupError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn holds_store(dir: &Path) -> bool {
    dir.join("CURRENT").exists()
}

/// What a store holds, counted.
struct Contents {
    keys: usize,
    marks: usize,
    backends: BTreeMap<String, usize>,
    aliases: BTreeSet<String>,
}

/// Counts what the store at `dir` holds (opened read-only).
fn summarize(dir: &Path) -> Result<Contents, BackupError> {
    let store = Store::open_read_only(dir).map_err(store_err(dir))?;
    let keys = store.keys().map_err(store_err(dir))?;
    let marks = store.high_water_count().map_err(store_err(dir))?;
    let mut backends = BTreeMap::new();
    let mut aliases = BTreeSet::new();
    for k in &keys {
        *backends.entry(k.backend.clone()).or_insert(0) += 1;
        // Software keys in either wrapped form; threshold shares as JWE.
        let alias = match k.backend.as_str() {
            "software" => crate::software::handle_alias(&k.handle).ok(),
            crate::threshold::BACKEND_NAME => crate::threshold::ThresholdHandle::decode(&k.handle)
                .ok()
                .and_then(|h| crate::software::jwe_kid(&h.share_jwe).ok()),
            _ => None,
        };
        if let Some(alias) = alias {
            aliases.insert(alias);
        }
    }
    Ok(Contents {
        keys: keys.len(),
        marks,
        backends,
        aliases,
    })
}

/// Backs up the store in `data_dir` (a running signer may hold it) to
/// `out`, which must not exist: `<out>/db` and `<out>/backup.json`. On
/// failure `out` is removed.
pub fn backup(data_dir: &Path, out: &Path) -> Result<Manifest, BackupError> {
    if !holds_store(data_dir) {
        return Err(BackupError::Refused(format!(
            "{}: no signer store here (is storage.data_dir right?)",
            data_dir.display()
        )));
    }
    if out.exists() {
        return Err(BackupError::Refused(format!(
            "{}: already exists; a backup is written to a new directory",
            out.display()
        )));
    }
    // Everything is read before anything is written. A read-only open can
    // race the running signer removing a file it has just flushed or
    // compacted; a second try sees the new set of files.
    let read = || Store::open_read_only(data_dir).and_then(|s| s.dump(data_dir));
    let dump = read()
        .or_else(|_| {
            std::thread::sleep(std::time::Duration::from_millis(200));
            read()
        })
        .map_err(store_err(data_dir))?;
    std::fs::create_dir(out).map_err(io_err(out))?;
    let written = write_backup(data_dir, out, &dump);
    if written.is_err() {
        let _ = std::fs::remove_dir_all(out);
    }
    written
}

fn write_backup(data_dir: &Path, out: &Path, dump: &crate::store::StoreDump) -> Result<Manifest, BackupError> {
    let db = out.join(DB_DIR);
    Store::create_from(&db, dump).map_err(store_err(&db))?;
    // Describe the copy, not the live store: it is the copy that is restored.
    let Contents {
        keys,
        marks: high_water_marks,
        backends,
        aliases,
    } = summarize(&db)?;
    let manifest = Manifest {
        format: FORMAT.to_owned(),
        created_at: seal_tuf::time::format_rfc3339_nano(time::OffsetDateTime::now_utc()),
        source: std::fs::canonicalize(data_dir).unwrap_or_else(|_| data_dir.to_path_buf()),
        keys,
        high_water_marks,
        backends,
        aliases,
    };
    let path = out.join(MANIFEST);
    let json = serde_json::to_vec_pretty(&manifest).map_err(|e| BackupError::Refused(e.to_string()))?;
    std::fs::write(&path, json).map_err(io_err(&path))?;
    sync_tree(out)?;
    Ok(manifest)
}

/// Reads and checks the manifest of the backup in `from`.
pub fn read_manifest(from: &Path) -> Result<Manifest, BackupError> {
    let path = from.join(MANIFEST);
    let not_a_backup =
        |why: &str| BackupError::Refused(format!("{}: not a seal-signer backup ({why})", from.display()));
    if !from.is_dir() {
        return Err(not_a_backup("not a directory"));
    }
    if !path.exists() || !holds_store(&from.join(DB_DIR)) {
        return Err(not_a_backup(&format!("no {MANIFEST} and {DB_DIR}/")));
    }
    let bytes = std::fs::read(&path).map_err(io_err(&path))?;
    let manifest: Manifest = serde_json::from_slice(&bytes).map_err(|e| not_a_backup(&format!("{MANIFEST}: {e}")))?;
    if manifest.format != FORMAT {
        return Err(not_a_backup(&format!(
            "{MANIFEST}: format {:?}, this version reads {FORMAT:?}",
            manifest.format
        )));
    }
    Ok(manifest)
}

/// Seeds `data_dir` (absent or empty) from the backup in `from`: its
/// database is copied to a temporary name beside `data_dir`, synced,
/// checked against the manifest and renamed into place.
pub fn restore(from: &Path, data_dir: &Path) -> Result<Manifest, BackupError> {
    let manifest = read_manifest(from)?;
    if holds_store(data_dir) {
        return Err(BackupError::Refused(format!(
            "{}: a signer store is already there; restore into an empty data directory",
            data_dir.display()
        )));
    }
    if data_dir.exists() {
        let mut entries = std::fs::read_dir(data_dir).map_err(io_err(data_dir))?;
        if entries.next().is_some() {
            return Err(BackupError::Refused(format!(
                "{}: not empty; restore into an empty data directory",
                data_dir.display()
            )));
        }
    }
    let name = data_dir
        .file_name()
        .ok_or_else(|| BackupError::Refused(format!("{}: not a directory name", data_dir.display())))?;
    let parent = match data_dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut partial_name = name.to_os_string();
    partial_name.push(".restoring");
    let partial = parent.join(partial_name);
    if partial.exists() {
        return Err(BackupError::Refused(format!(
            "{}: already exists (left by an interrupted restore?); remove it first",
            partial.display()
        )));
    }
    std::fs::create_dir_all(&parent).map_err(io_err(&parent))?;
    let placed = copy_dir(&from.join(DB_DIR), &partial)
        .and_then(|()| check_copy(&partial, &manifest))
        .and_then(|()| std::fs::rename(&partial, data_dir).map_err(io_err(data_dir)))
        .and_then(|()| sync_dir(&parent));
    if placed.is_err() {
        let _ = std::fs::remove_dir_all(&partial);
    }
    placed.map(|()| manifest)
}

/// Checks that the copy at `dir` holds what `manifest` says.
fn check_copy(dir: &Path, manifest: &Manifest) -> Result<(), BackupError> {
    let Contents {
        keys, marks, backends, ..
    } = summarize(dir)?;
    if (keys, marks, &backends) != (manifest.keys, manifest.high_water_marks, &manifest.backends) {
        return Err(BackupError::Refused(format!(
            "the backup's database holds {keys} keys and {marks} high-water marks, {MANIFEST} says {} and {}",
            manifest.keys, manifest.high_water_marks
        )));
    }
    Ok(())
}

fn copy_dir(from: &Path, to: &Path) -> Result<(), BackupError> {
    std::fs::create_dir(to).map_err(io_err(to))?;
    for entry in std::fs::read_dir(from).map_err(io_err(from))? {
        let entry = entry.map_err(io_err(from))?;
        let dest = to.join(entry.file_name());
        if entry.file_type().map_err(io_err(&entry.path()))?.is_dir() {
            copy_dir(&entry.path(), &dest)?;
        } else {
            std::fs::copy(entry.path(), &dest).map_err(io_err(&dest))?;
            std::fs::File::open(&dest)
                .and_then(|f| f.sync_all())
                .map_err(io_err(&dest))?;
        }
    }
    sync_dir(to)
}

/// fsyncs every file and directory under `dir`, and `dir`.
fn sync_tree(dir: &Path) -> Result<(), BackupError> {
    for entry in std::fs::read_dir(dir).map_err(io_err(dir))? {
        let entry = entry.map_err(io_err(dir))?;
        let path = entry.path();
        if entry.file_type().map_err(io_err(&path))?.is_dir() {
            sync_tree(&path)?;
        } else {
            std::fs::File::open(&path)
                .and_then(|f| f.sync_all())
                .map_err(io_err(&path))?;
        }
    }
    sync_dir(dir)
}

fn sync_dir(dir: &Path) -> Result<(), BackupError> {
    std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(io_err(dir))
}

/// What a backup holds and does not hold, as one paragraph for the operator.
pub fn describe(manifest: &Manifest) -> String {
    let per_backend: Vec<String> = manifest.backends.iter().map(|(b, n)| format!("{n} {b}")).collect();
    let mut s = format!(
        "{} keys ({}) and {} high-water marks, taken {}.",
        manifest.keys,
        if per_backend.is_empty() {
            "none".to_owned()
        } else {
            per_backend.join(", ")
        },
        manifest.high_water_marks,
        manifest.created_at
    );
    if !manifest.aliases.is_empty() {
        let aliases: Vec<&str> = manifest.aliases.iter().map(String::as_str).collect();
        s.push_str(&format!(
            " Software keys and threshold shares stay encrypted as stored, under the passphrases of aliases {}: a restored signer needs those passphrases, which are not in the backup.",
            aliases.join(", ")
        ));
    }
    if manifest.backends.contains_key("pkcs11") {
        s.push_str(
            " PKCS#11 keys are only referenced (their handles in the token): the keys themselves stay in the HSM; back up the token with the HSM's own tools.",
        );
    }
    if manifest.backends.contains_key(crate::threshold::BACKEND_NAME) {
        s.push_str(
            " Threshold keys: the backup holds this signer's share (encrypted) and its marks, not the other signers' shares; after a refresh-shares the share in an older backup no longer combines with the others' (use repair-share instead).",
        );
    }
    s.push_str(
        " The high-water marks are in it: a signer started on the restored store refuses versions at or below them.",
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::KeyRecord;

    fn record(id: &str, backend: &str) -> KeyRecord {
        KeyRecord {
            key_id: id.repeat(32),
            gun: "g".into(),
            role: "timestamp".into(),
            algorithm: "ecdsa".into(),
            public: vec![1],
            backend: backend.into(),
            handle: vec![2],
        }
    }

    #[test]
    fn a_backup_says_what_it_does_not_hold() {
        let d = tempfile::tempdir().unwrap();
        let data = d.path().join("data");
        {
            let s = Store::open(&data).unwrap();
            s.put_key(&record("ab", "pkcs11")).unwrap();
            s.put_key(&record("cd", crate::threshold::BACKEND_NAME)).unwrap();
        }
        let m = backup(&data, &d.path().join("b")).unwrap();
        assert_eq!((m.keys, m.high_water_marks), (2, 0));
        let text = describe(&m);
        assert!(text.contains("HSM's own tools"), "{text}");
        assert!(text.contains("not the other signers' shares"), "{text}");
    }

    #[test]
    fn a_copy_that_disagrees_with_its_manifest_is_not_restored() {
        let d = tempfile::tempdir().unwrap();
        let data = d.path().join("data");
        Store::open(&data).unwrap().put_key(&record("ab", "software")).unwrap();
        let b = d.path().join("b");
        let mut m = backup(&data, &b).unwrap();
        m.keys = 5;
        std::fs::write(b.join(MANIFEST), serde_json::to_vec(&m).unwrap()).unwrap();
        let target = d.path().join("restored");
        let e = restore(&b, &target).unwrap_err().to_string();
        assert!(e.contains("holds 1 keys") && e.contains("says 5"), "{e}");
        assert!(!target.exists() && !d.path().join("restored.restoring").exists());
        // An empty directory is restored into.
        m.keys = 1;
        std::fs::write(b.join(MANIFEST), serde_json::to_vec(&m).unwrap()).unwrap();
        std::fs::create_dir(&target).unwrap();
        restore(&b, &target).unwrap();
        assert_eq!(
            Store::open(&target).unwrap().keys().unwrap(),
            vec![record("ab", "software")]
        );
    }
}
