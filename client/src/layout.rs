//! The trust directory, laid out as Notary's CLI lays it out:
//!
//! ```text
//! <trust_dir>/config.json                  optional client config
//! <trust_dir>/private/<key id>.key         encrypted private keys
//! <trust_dir>/tuf/<gun>/metadata/<role>.json   last verified (or unpublished) metadata
//! <trust_dir>/tuf/<gun>/changelist/*.change    staged changes
//! ```

use std::path::{Path, PathBuf};

use crate::atomic::write_atomic;
use crate::changelist::Changelist;
use crate::error::ClientError;

/// A collection's local files.
#[derive(Debug, Clone)]
pub struct GunDir {
    dir: PathBuf,
}

impl GunDir {
    /// The directory of `gun` in `trust_dir`. GUNs with `..` or empty
    /// components are refused so a name can never escape the trust dir.
    pub fn new(trust_dir: &Path, gun: &str) -> Result<GunDir, ClientError> {
        if gun.is_empty()
            || gun.split('/').any(|c| c.is_empty() || c == "." || c == "..")
            || gun.contains('\\')
            || gun.chars().any(char::is_control)
        {
            return Err(ClientError::Invalid(format!(
                "{gun:?} is not a valid collection name (GUN)"
            )));
        }
        let mut dir = trust_dir.join("tuf");
        for c in gun.split('/') {
            dir.push(c);
        }
        Ok(GunDir { dir })
    }

    /// The collection's directory.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// The staged changes.
    pub fn changelist(&self) -> Changelist {
        Changelist::new(self.dir.join("changelist"))
    }

    fn meta_path(&self, role: &str) -> PathBuf {
        let mut p = self.dir.join("metadata");
        for c in role.split('/') {
            p.push(c);
        }
        p.set_extension("json");
        p
    }

    /// The cached file of `role`, if any.
    pub fn read_meta(&self, role: &str) -> Result<Option<Vec<u8>>, ClientError> {
        let p = self.meta_path(role);
        match std::fs::read(&p) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(ClientError::io(p)(e)),
        }
    }

    /// Caches `bytes` as `role`'s file.
    pub fn write_meta(&self, role: &str, bytes: &[u8]) -> Result<(), ClientError> {
        write_atomic(&self.meta_path(role), bytes)
    }

    /// Forgets `role`'s cached file.
    pub fn remove_meta(&self, role: &str) -> Result<(), ClientError> {
        let p = self.meta_path(role);
        match std::fs::remove_file(&p) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(ClientError::io(p)(e)),
            _ => Ok(()),
        }
    }

    /// Forgets all cached metadata of the collection.
    pub fn clear_meta(&self) -> Result<(), ClientError> {
        let p = self.dir.join("metadata");
        match std::fs::remove_dir_all(&p) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(ClientError::io(p)(e)),
            _ => Ok(()),
        }
    }

    /// Removes everything local of the collection (metadata, changelist).
    pub fn remove_all(&self) -> Result<(), ClientError> {
        match std::fs::remove_dir_all(&self.dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(ClientError::io(&self.dir)(e)),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guns_cannot_escape_the_trust_dir() {
        let t = Path::new("/trust");
        for bad in ["", "../x", "a/../../b", "a//b", "/abs", "a/./b", "a\\b", "a\nb"] {
            assert!(GunDir::new(t, bad).is_err(), "{bad:?}");
        }
        let g = GunDir::new(t, "example.com/interop/app").unwrap();
        assert_eq!(g.path(), Path::new("/trust/tuf/example.com/interop/app"));
        assert_eq!(
            g.meta_path("targets/releases"),
            Path::new("/trust/tuf/example.com/interop/app/metadata/targets/releases.json")
        );
    }

    #[test]
    fn metadata_cache_round_trip() {
        let d = tempfile::tempdir().unwrap();
        let g = GunDir::new(d.path(), "a/b").unwrap();
        assert_eq!(g.read_meta("root").unwrap(), None);
        g.write_meta("targets/x", b"{}").unwrap();
        assert_eq!(g.read_meta("targets/x").unwrap().unwrap(), b"{}");
        g.clear_meta().unwrap();
        assert_eq!(g.read_meta("targets/x").unwrap(), None);
    }
}
