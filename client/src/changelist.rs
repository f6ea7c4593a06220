//! Staged changes of a collection, applied on `publish`: one file per
//! change in `<trust_dir>/tuf/<gun>/changelist/`, named so that they sort
//! in the order they were made, holding Notary's change JSON
//! (`{"action","role","type","path","data"}`, `data` base64 as Go writes
//! `[]byte`). A failed publish leaves them in place.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use seal_tuf::editor::DelegationEdit;
use seal_tuf::PublicKey;
use serde::{Deserialize, Serialize};

use crate::atomic::write_atomic;
use crate::error::ClientError;

/// Change type: a target file.
pub const TYPE_TARGET: &str = "target";
/// Change type: a delegation (keys, paths, threshold).
pub const TYPE_DELEGATION: &str = "delegation";
/// Change type: re-sign a role unchanged.
pub const TYPE_WITNESS: &str = "witness";

/// Action: add or replace.
pub const ACTION_CREATE: &str = "create";
/// Action: change in place.
pub const ACTION_UPDATE: &str = "update";
/// Action: remove.
pub const ACTION_DELETE: &str = "delete";

/// One staged change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    /// `create`, `update` or `delete`.
    pub action: String,
    /// The role the change applies to (`targets`, `targets/releases`…).
    pub role: String,
    /// `target`, `delegation` or `witness`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The target name or delegation role the change is about.
    pub path: String,
    /// Type-specific payload (JSON), base64 in the file as Go writes bytes.
    #[serde(with = "b64", default)]
    pub data: Vec<u8>,
}

mod b64 {
    use base64::Engine as _;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        if v.is_empty() {
            return s.serialize_none();
        }
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(v))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s: Option<String> = Option::deserialize(d)?;
        match s {
            None => Ok(Vec::new()),
            Some(s) => base64::engine::general_purpose::STANDARD
                .decode(s)
                .map_err(serde::de::Error::custom),
        }
    }
}

/// The changelist directory of one collection.
#[derive(Debug, Clone)]
pub struct Changelist {
    dir: PathBuf,
}

impl Changelist {
    /// The changelist kept in `dir`.
    pub fn new(dir: PathBuf) -> Changelist {
        Changelist { dir }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn files(&self) -> Result<Vec<PathBuf>, ClientError> {
        let rd = match std::fs::read_dir(&self.dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(ClientError::io(&self.dir)(e)),
        };
        let mut out = Vec::new();
        for entry in rd {
            let p = entry.map_err(ClientError::io(&self.dir))?.path();
            if p.extension().is_some_and(|e| e == "change") {
                out.push(p);
            }
        }
        out.sort();
        Ok(out)
    }

    /// The staged changes, oldest first.
    pub fn list(&self) -> Result<Vec<Change>, ClientError> {
        self.files()?
            .iter()
            .map(|p| {
                let b = std::fs::read(p).map_err(ClientError::io(p))?;
                serde_json::from_slice(&b)
                    .map_err(|e| ClientError::Invalid(format!("{}: not a change file: {e}", p.display())))
            })
            .collect()
    }

    /// Stages `change` (written atomically).
    pub fn add(&self, change: &Change) -> Result<(), ClientError> {
        std::fs::create_dir_all(&self.dir).map_err(ClientError::io(&self.dir))?;
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let name = format!("{nanos:024}_{}.change", hex::encode(rand::random::<[u8; 8]>()));
        let path = self.dir.join(name);
        let body = serde_json::to_vec(change).map_err(|e| ClientError::Invalid(e.to_string()))?;
        write_atomic(&path, &body)
    }

    /// Drops every staged change.
    pub fn clear(&self) -> Result<(), ClientError> {
        for p in self.files()? {
            std::fs::remove_file(&p).map_err(ClientError::io(&p))?;
        }
        Ok(())
    }

    /// Drops the changes at the given positions (as `status` numbers them).
    pub fn remove(&self, positions: &[usize]) -> Result<(), ClientError> {
        let files = self.files()?;
        for &i in positions {
            if i >= files.len() {
                return Err(ClientError::Invalid(format!(
                    "there is no change number {i} ({} staged)",
                    files.len()
                )));
            }
        }
        for &i in positions {
            std::fs::remove_file(&files[i]).map_err(ClientError::io(&files[i]))?;
        }
        Ok(())
    }
}

/// The payload of a delegation change (Notary's `TUFDelegation`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DelegationChange {
    /// New threshold (0: unchanged, 1 for a new role).
    #[serde(rename = "NewThreshold", default)]
    pub new_threshold: u32,
    /// Keys to add, each Notary's key JSON.
    #[serde(rename = "AddKeys", default)]
    pub add_keys: Vec<serde_json::Value>,
    /// Key IDs to remove.
    #[serde(rename = "RemoveKeys", default)]
    pub remove_keys: Vec<String>,
    /// Paths to add.
    #[serde(rename = "AddPaths", default)]
    pub add_paths: Vec<String>,
    /// Paths to remove.
    #[serde(rename = "RemovePaths", default)]
    pub remove_paths: Vec<String>,
    /// Remove every path first.
    #[serde(rename = "ClearAllPaths", default)]
    pub clear_all_paths: bool,
}

impl DelegationChange {
    /// The change as [`seal_tuf::editor`] applies it, its keys parsed.
    pub fn to_edit(&self) -> Result<DelegationEdit, ClientError> {
        let add_keys = self
            .add_keys
            .iter()
            .map(|k| PublicKey::from_json(k.to_string().as_bytes()))
            .collect::<Result<_, _>>()?;
        Ok(DelegationEdit {
            new_threshold: self.new_threshold,
            add_keys,
            remove_keys: self.remove_keys.clone(),
            add_paths: self.add_paths.clone(),
            remove_paths: self.remove_paths.clone(),
            clear_all_paths: self.clear_all_paths,
        })
    }
}

/// Reads a change's data as `T`.
pub fn data<T: serde::de::DeserializeOwned>(change: &Change) -> Result<T, ClientError> {
    serde_json::from_slice(&change.data)
        .map_err(|e| ClientError::Invalid(format!("change to {} has malformed data: {e}", change.path)))
}

/// base64 of `b`, as a target's hashes are written in change data.
pub fn b64(b: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_keep_their_order_and_survive_a_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let cl = Changelist::new(dir.path().join("changelist"));
        assert!(cl.list().unwrap().is_empty());
        for name in ["a", "b", "c"] {
            cl.add(&Change {
                action: ACTION_CREATE.into(),
                role: "targets".into(),
                kind: TYPE_TARGET.into(),
                path: name.into(),
                data: br#"{"length":1}"#.to_vec(),
            })
            .unwrap();
        }
        let names: Vec<_> = cl.list().unwrap().into_iter().map(|c| c.path).collect();
        assert_eq!(names, ["a", "b", "c"]);
        cl.remove(&[1]).unwrap();
        let names: Vec<_> = cl.list().unwrap().into_iter().map(|c| c.path).collect();
        assert_eq!(names, ["a", "c"]);
        assert!(cl.remove(&[5]).is_err());
        cl.clear().unwrap();
        assert!(cl.list().unwrap().is_empty());
    }

    #[test]
    fn reads_notarys_change_json() {
        // The shape Notary's TUFChange marshals to.
        let json = br#"{"action":"create","role":"targets","type":"target","path":"v1","data":"eyJsZW5ndGgiOjE3fQ=="}"#;
        let c: Change = serde_json::from_slice(json).unwrap();
        assert_eq!(c.data, br#"{"length":17}"#);
        let w: Change =
            serde_json::from_slice(br#"{"action":"create","role":"targets","type":"witness","path":"","data":null}"#)
                .unwrap();
        assert!(w.data.is_empty());
    }
}
