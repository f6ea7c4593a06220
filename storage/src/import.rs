//! Applying [`Command::ImportCollection`](crate::Command::ImportCollection): a whole collection
//! from a Notary server, written in one batch or not at all.
//!
//! The command is accepted only for a GUN of which Seal holds nothing (no current version, no
//! changefeed record), so it never mixes with a collection published to Seal; the same command
//! applied again to the GUN it wrote is a no-op (an interrupted import is resumed by sending
//! every collection again). What the leader verified (signatures, hashes) is not re-checked here:
//! apply only enforces the storage rules (names, one file per role and version, changefeed
//! shape), deterministically.

use std::collections::{BTreeMap, BTreeSet};

use rocksdb::WriteBatch;
use sha2::{Digest, Sha256};

use crate::command::{ApplyOutcome, ChangeCategory, ChangeRecord, ImportedCollection, ServerKeys};
use crate::error::{Error, Result};
use crate::keys::*;
use crate::state::StateDb;

impl StateDb {
    pub(crate) fn apply_import(&self, batch: &mut WriteBatch, c: &ImportedCollection) -> Result<ApplyOutcome> {
        let reject = |reason: String| Ok(ApplyOutcome::Rejected { reason });
        let gun = c.gun.as_str();
        if let Err(e) = check_name("gun", gun) {
            return reject(e.to_string());
        }
        if c.files.is_empty() && c.changes.is_empty() {
            return reject(format!("import of {gun:?} carries neither files nor changes"));
        }
        // The highest version of each role becomes current.
        let mut current: BTreeMap<&str, u64> = BTreeMap::new();
        let mut seen = BTreeSet::new();
        for f in &c.files {
            if let Err(e) = check_name("role", &f.role) {
                return reject(e.to_string());
            }
            if f.version == 0 {
                return reject(format!("import of {gun:?}: {} version 0", f.role));
            }
            if !seen.insert((f.role.as_str(), f.version)) {
                return reject(format!("import of {gun:?}: {} version {} twice", f.role, f.version));
            }
            let v = current.entry(f.role.as_str()).or_insert(0);
            *v = (*v).max(f.version);
        }
        if current.contains_key("timestamp") != c.timestamp_expires_unix_nanos.is_some() {
            return reject(format!(
                "import of {gun:?}: timestamp expiry must be given exactly when a timestamp is imported"
            ));
        }
        for (role, key) in &c.server_keys {
            if role != "timestamp" && role != "snapshot" {
                return reject(format!("import of {gun:?}: server key for role {role:?}"));
            }
            if key.key_id.is_empty() {
                return reject(format!("import of {gun:?}: empty server key id for {role}"));
            }
        }
        let mut created = Vec::with_capacity(c.changes.len());
        for ch in &c.changes {
            let Some(at) = rfc3339_nanos(ch.created_at_unix_nanos) else {
                return reject(format!(
                    "import of {gun:?}: change time {} out of range",
                    ch.created_at_unix_nanos
                ));
            };
            let deletion = ch.category == ChangeCategory::Deletion;
            if deletion != (ch.version == 0 && ch.sha256.is_empty()) {
                return reject(format!(
                    "import of {gun:?}: a deletion record has version 0 and no sha256, and only it"
                ));
            }
            created.push(at);
        }

        // Already imported (the same command applied before) or holding other data?
        let prefix = gun_prefix(gun);
        let held_current = self.prefix_keys(CF_CURRENT, &prefix)?;
        let held_changes = self.prefix_keys(CF_CHANGEFEED_GUN, &prefix)?.len();
        if !held_current.is_empty() || held_changes > 0 {
            let mut same = held_changes == c.changes.len() && held_current.len() == current.len();
            for (role, version) in &current {
                same = same && self.current_version(gun, role)? == Some(*version);
            }
            return if same {
                Ok(ApplyOutcome::Applied)
            } else {
                reject(format!(
                    "{gun:?} already holds other data in Seal: not importing over it"
                ))
            };
        }

        let cf_meta = self.cf(CF_META)?;
        let cf_checksum = self.cf(CF_CHECKSUM)?;
        let cf_current = self.cf(CF_CURRENT)?;
        for f in &c.files {
            let sha = hex::encode(Sha256::digest(&f.bytes));
            batch.put_cf(cf_meta, meta_key(gun, &f.role, f.version), &f.bytes);
            batch.put_cf(cf_checksum, checksum_key(gun, &f.role, &sha), f.version.to_be_bytes());
        }
        for (role, version) in &current {
            // As a publish writes it: a timestamp with its expiry and bytes when both are known.
            let timestamp = c.timestamp_expires_unix_nanos.and_then(|expires| {
                c.files
                    .iter()
                    .find(|f| f.role == *role && f.version == *version)
                    .map(|f| (expires, &f.bytes[..]))
            });
            let entry = CurrentEntry::of(role, *version, timestamp);
            batch.put_cf(cf_current, gun_role(gun, role), entry.encode());
        }
        let first = self.next_change_id()?;
        for (i, (ch, at)) in c.changes.iter().zip(created).enumerate() {
            let id = first + i as u64;
            let record = ChangeRecord {
                id: id.to_string(),
                created_at: at,
                gun: gun.to_owned(),
                version: ch.version,
                sha256: ch.sha256.clone(),
                category: ch.category,
            };
            self.put_change(batch, &record, id)?;
        }
        if let Some(expires) = c.timestamp_expires_unix_nanos {
            self.move_expiry(batch, gun, Some(expires))?;
        }
        let cf_keys = self.cf(CF_SERVER_KEYS)?;
        for (role, key) in &c.server_keys {
            let keys = ServerKeys {
                active: Some(key.clone()),
                pending: Vec::new(),
            };
            let bytes = postcard::to_allocvec(&keys).map_err(|e| Error::Encode {
                what: "server keys",
                reason: e.to_string(),
            })?;
            batch.put_cf(cf_keys, gun_role(gun, role), bytes);
        }
        Ok(ApplyOutcome::Applied)
    }
}

#[cfg(test)]
mod tests {
    use crate::command::{ImportedChange, KeyEntry, MetaFile};
    use crate::keys::CurrentEntry;
    use crate::{Applied, ApplyOutcome, ChangeCategory, Command, ImportedCollection, Store};

    fn file(role: &str, version: u64) -> MetaFile {
        MetaFile {
            role: role.into(),
            version,
            bytes: format!("{role} {version}").into_bytes(),
        }
    }

    fn change(version: u64, at: i64) -> ImportedChange {
        ImportedChange {
            created_at_unix_nanos: at,
            version,
            sha256: if version == 0 { String::new() } else { "ab".repeat(32) },
            category: if version == 0 {
                ChangeCategory::Deletion
            } else {
                ChangeCategory::Update
            },
        }
    }

    fn collection(gun: &str) -> ImportedCollection {
        ImportedCollection {
            gun: gun.into(),
            files: vec![
                file("root", 1),
                file("targets", 2),
                file("timestamp", 1),
                file("timestamp", 2),
            ],
            changes: vec![change(1, 1_000_000_000), change(2, 2_000_000_000)],
            server_keys: vec![(
                "timestamp".into(),
                KeyEntry {
                    key_id: "k".into(),
                    public_key_json: b"{}".to_vec(),
                },
            )],
            timestamp_expires_unix_nanos: Some(5_000_000_000),
        }
    }

    fn apply(store: &Store, cmd: Command, index: u8) -> ApplyOutcome {
        let id = [index];
        store
            .apply(
                &cmd,
                Applied {
                    last_applied: &id,
                    membership: None,
                },
            )
            .unwrap()
    }

    #[test]
    fn a_collection_is_written_whole_and_again_is_a_no_op() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let cmd = Command::ImportCollection(Box::new(collection("a/b")));
        assert_eq!(apply(&store, cmd.clone(), 1), ApplyOutcome::Applied);
        let r = store.reader();
        assert_eq!(r.current("a/b", "timestamp").unwrap().unwrap().0, 2);
        assert_eq!(r.by_version("a/b", "timestamp", 1).unwrap().unwrap(), b"timestamp 1");
        let feed = r.changefeed(Some("a/b"), 0, 100).unwrap();
        assert_eq!(feed.len(), 2);
        assert_eq!(feed[0].created_at, "1970-01-01T00:00:01Z");
        assert_eq!(
            r.server_key("a/b", "timestamp")
                .unwrap()
                .unwrap()
                .active
                .unwrap()
                .key_id,
            "k"
        );
        assert_eq!(r.timestamp_expiry("a/b").unwrap(), Some(5_000_000_000));
        // The current timestamp is kept in `current` with its expiry, as a publish keeps it.
        let held = store.raw_current("a/b", "timestamp");
        let entry = CurrentEntry::parse(b"a/b\0timestamp", &held).unwrap();
        assert_eq!(entry.inline, Some((5_000_000_000, &b"timestamp 2"[..])));
        assert_eq!(
            store.raw_current("a/b", "targets").len(),
            8,
            "other roles: the version alone"
        );
        let digest = store.state_digest().unwrap();
        // Resumed: the same command again changes nothing but the applied index.
        assert_eq!(apply(&store, cmd, 1), ApplyOutcome::Applied);
        assert_eq!(store.state_digest().unwrap(), digest);
        assert_eq!(r.changefeed(Some("a/b"), 0, 100).unwrap().len(), 2);
    }

    #[test]
    fn a_collection_seal_already_holds_differently_is_refused_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut c = collection("a/b");
        assert_eq!(
            apply(&store, Command::ImportCollection(Box::new(c.clone())), 1),
            ApplyOutcome::Applied
        );
        let digest = store.state_digest().unwrap();
        c.files.push(file("timestamp", 3));
        c.changes.push(change(3, 3_000_000_000));
        assert!(matches!(
            apply(&store, Command::ImportCollection(Box::new(c)), 1),
            ApplyOutcome::Rejected { reason } if reason.contains("already holds other data")
        ));
        assert_eq!(store.state_digest().unwrap(), digest);
    }

    #[test]
    fn a_deleted_collection_is_only_its_changefeed() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let c = ImportedCollection {
            gun: "gone".into(),
            files: vec![],
            changes: vec![change(1, 1_000_000_000), change(0, 2_000_000_000)],
            server_keys: vec![],
            timestamp_expires_unix_nanos: None,
        };
        assert_eq!(
            apply(&store, Command::ImportCollection(Box::new(c.clone())), 1),
            ApplyOutcome::Applied
        );
        let r = store.reader();
        assert!(r.current_versions("gone").unwrap().is_empty());
        let feed = r.changefeed(Some("gone"), 0, 100).unwrap();
        assert_eq!(feed[1].category, ChangeCategory::Deletion);
        assert_eq!((feed[1].version, feed[1].sha256.as_str()), (0, ""));
        assert_eq!(
            apply(&store, Command::ImportCollection(Box::new(c)), 1),
            ApplyOutcome::Applied
        );
        assert_eq!(r.changefeed(Some("gone"), 0, 100).unwrap().len(), 2);
    }

    #[test]
    fn malformed_imports_are_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut twice = collection("a");
        twice.files.push(file("root", 1));
        let mut no_expiry = collection("a");
        no_expiry.timestamp_expires_unix_nanos = None;
        let mut bad_deletion = collection("a");
        bad_deletion.changes.push(ImportedChange {
            category: ChangeCategory::Deletion,
            ..change(3, 1)
        });
        for c in [twice, no_expiry, bad_deletion] {
            assert!(matches!(
                apply(&store, Command::ImportCollection(Box::new(c)), 1),
                ApplyOutcome::Rejected { .. }
            ));
        }
        assert!(store.reader().current_versions("a").unwrap().is_empty());
    }
}
