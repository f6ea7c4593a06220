//! Checking one collection read from a Notary database before it is imported, with seal-tuf,
//! as a pure function of the rows and `now`.
//!
//! * every row: a valid role name, a version ≥ 1, data whose sha256 is the row's `sha256`
//!   column (Notary's checksum URLs look files up by that column), parseable metadata of that
//!   role whose `signed.version` is the row's version;
//! * the current state as a client would verify it: the root chain from the oldest stored root
//!   (trusted on first use, each later root signed by its predecessor's and its own keys), then
//!   the current timestamp, snapshot, targets and every delegation the snapshot lists, signatures
//!   and hashes, at a moment when all of them were still valid (expiry is reported by the
//!   refresher, not here: an imported timestamp may well have expired);
//! * the snapshot/timestamp chain: every stored timestamp names a stored snapshot by its hashes,
//!   and every stored snapshot names stored versions of the roles it lists;
//! * the changefeed: `update` records carry a version and a sha256 (those after the last deletion
//!   match the stored timestamp of that version), `deletion` records version 0 and no sha256.
//!
//! Anything that fails is returned as one line per problem and the collection is not imported.

use std::collections::BTreeMap;

use sha2::{Digest as _, Sha256};
use time::OffsetDateTime;

use seal_storage::{ChangeCategory, ImportedChange, ImportedCollection, MetaFile};
use seal_tuf::history;
use seal_tuf::metadata::{is_valid_role, signed_version, TIMESTAMP};
use seal_tuf::{Root, SignedFile};

use super::source::{ChangeRow, FileRow};

/// A collection that verified, ready to import (the leader adds the server keys), and the
/// current root, from which it picks them.
#[derive(Debug, Clone)]
pub struct Verified {
    /// The command's content.
    pub collection: ImportedCollection,
    /// The current root (absent for a deleted collection).
    pub root: Option<Root>,
}

/// Verifies `gun`'s rows; `Err` lists every problem found.
pub fn verify_collection(
    gun: &str,
    files: Vec<FileRow>,
    changes: &[ChangeRow],
    now: OffsetDateTime,
) -> Result<Verified, Vec<String>> {
    let mut problems = Vec::new();
    let mut parsed: history::Stored = BTreeMap::new();
    let mut meta_files = Vec::with_capacity(files.len());
    for row in files {
        let at = format!("{gun}: tuf_files row {} ({} version {})", row.id, row.role, row.version);
        if !is_valid_role(&row.role) {
            problems.push(format!("{at}: not a TUF role name"));
            continue;
        }
        let Some(version) = u64::try_from(row.version).ok().filter(|v| *v >= 1) else {
            problems.push(format!("{at}: version below 1"));
            continue;
        };
        let sha = hex::encode(Sha256::digest(&row.data));
        match &row.sha256 {
            Some(s) if s.trim().eq_ignore_ascii_case(&sha) => {}
            Some(s) => {
                problems.push(format!(
                    "{at}: data does not match its sha256 (column {}, data {sha})",
                    s.trim()
                ));
                continue;
            }
            None => {
                problems.push(format!("{at}: no sha256 (checksum URLs could not find it)"));
                continue;
            }
        }
        let file = match SignedFile::parse(&row.role, row.data.clone()) {
            Ok(f) => f,
            Err(e) => {
                problems.push(format!("{at}: {e}"));
                continue;
            }
        };
        if signed_version(file.signed()) != Some(version) {
            problems.push(format!("{at}: signed.version is not the row's version"));
            continue;
        }
        meta_files.push(MetaFile {
            role: row.role.clone(),
            version,
            bytes: row.data,
        });
        parsed.entry(row.role).or_default().insert(version, file);
    }

    let imported_changes = check_changes(gun, changes, parsed.get(TIMESTAMP), &mut problems);
    let mut root = None;
    let mut ts_expires = None;
    if problems.is_empty() && !parsed.is_empty() {
        match history::verify_current(gun, &parsed, now) {
            Ok((r, expires)) => {
                root = Some(r);
                ts_expires = Some(expires);
            }
            Err(e) => problems.push(format!("{gun}: current metadata does not verify: {e}")),
        }
        problems.extend(history::chain_problems(gun, &parsed));
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(Verified {
        collection: ImportedCollection {
            gun: gun.to_owned(),
            files: meta_files,
            changes: imported_changes,
            server_keys: Vec::new(),
            timestamp_expires_unix_nanos: ts_expires,
        },
        root,
    })
}

fn check_changes(
    gun: &str,
    changes: &[ChangeRow],
    timestamps: Option<&BTreeMap<u64, SignedFile>>,
    problems: &mut Vec<String>,
) -> Vec<ImportedChange> {
    let last_deletion = changes.iter().rposition(|c| c.category == "deletion");
    let mut out = Vec::with_capacity(changes.len());
    for (i, c) in changes.iter().enumerate() {
        let at = format!("{gun}: changefeed row {}", c.id);
        let sha = c
            .sha256
            .as_deref()
            .map(str::trim)
            .unwrap_or_default()
            .to_ascii_lowercase();
        let category = match c.category.as_str() {
            "update" => ChangeCategory::Update,
            "deletion" => ChangeCategory::Deletion,
            other => {
                problems.push(format!("{at}: unknown category {other:?}"));
                continue;
            }
        };
        let version = u64::try_from(c.version).unwrap_or(u64::MAX);
        match category {
            ChangeCategory::Deletion if version != 0 || !sha.is_empty() => {
                problems.push(format!("{at}: a deletion with a version or sha256"));
                continue;
            }
            ChangeCategory::Update if version == 0 || version == u64::MAX || sha.len() != 64 => {
                problems.push(format!("{at}: an update without a version or sha256"));
                continue;
            }
            _ => {}
        }
        // Records after the last deletion describe timestamps that are still stored.
        if category == ChangeCategory::Update && last_deletion.is_none_or(|d| i > d) {
            let stored = timestamps.and_then(|t| t.get(&version));
            match stored {
                Some(f) if hex::encode(Sha256::digest(f.bytes())) == sha => {}
                Some(_) => problems.push(format!("{at}: sha256 is not that of timestamp version {version}")),
                None => problems.push(format!("{at}: timestamp version {version} is not stored")),
            }
        }
        out.push(ImportedChange {
            created_at_unix_nanos: c.created_at_micros.unwrap_or(0).saturating_mul(1000),
            version,
            sha256: sha,
            category,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use seal_tuf::testing::TestRepo;
    use seal_tuf::PrivateKey;

    use super::*;

    const GUN: &str = "example.com/verify";

    fn now() -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }

    fn row(id: i64, role: &str, version: i64, data: &[u8]) -> FileRow {
        FileRow {
            id,
            role: role.into(),
            version,
            data: data.to_vec(),
            sha256: Some(hex::encode(Sha256::digest(data))),
        }
    }

    fn update(id: i64, version: i64, data: &[u8]) -> ChangeRow {
        ChangeRow {
            id,
            created_at_micros: Some(1_000_000),
            version,
            sha256: Some(hex::encode(Sha256::digest(data))),
            category: "update".into(),
        }
    }

    /// A first publish and its timestamp, then a second publish: (rows, changes).
    fn collection(repo: &TestRepo) -> (Vec<FileRow>, Vec<ChangeRow>) {
        let files = repo.two_publishes();
        let rows: Vec<FileRow> = files
            .iter()
            .zip(1..)
            .map(|((role, version, bytes), id)| row(id, role, *version as i64, bytes))
            .collect();
        // The timestamps (rows 4 and 7), in order.
        let changes = vec![update(1, 1, &files[3].2), update(2, 2, &files[6].2)];
        (rows, changes)
    }

    fn problems(rows: Vec<FileRow>, changes: &[ChangeRow]) -> Vec<String> {
        verify_collection(GUN, rows, changes, now()).expect_err("must not verify")
    }

    #[test]
    fn a_consistent_collection_verifies_with_its_history() {
        let repo = TestRepo::new(GUN, now());
        let (rows, changes) = collection(&repo);
        let v = verify_collection(GUN, rows, &changes, now()).unwrap();
        assert_eq!(v.collection.files.len(), 7);
        assert_eq!(v.collection.changes.len(), 2);
        assert!(v.collection.timestamp_expires_unix_nanos.is_some());
        assert_eq!(v.root.unwrap().version, 1);
    }

    #[test]
    fn a_row_whose_version_is_not_its_files_is_named() {
        let repo = TestRepo::new(GUN, now());
        let (mut rows, changes) = collection(&repo);
        rows[4].version = 4;
        let p = problems(rows, &changes);
        assert!(
            p.iter()
                .any(|p| p.contains("row 5 (targets version 4): signed.version")),
            "{p:?}"
        );
    }

    #[test]
    fn a_timestamp_by_another_key_does_not_verify() {
        let mut repo = TestRepo::new(GUN, now());
        let (mut rows, changes) = collection(&repo);
        repo.timestamp = PrivateKey::generate_ed25519(&mut rand::rngs::OsRng);
        let forged = repo.timestamp_file(2, &rows[5].data);
        rows[6] = row(7, "timestamp", 2, &forged);
        let p = problems(rows, &[changes[0].clone(), update(2, 2, &forged)]);
        assert!(
            p.iter()
                .any(|p| p.contains("current metadata does not verify: timestamp")),
            "{p:?}"
        );
    }

    #[test]
    fn a_timestamp_naming_a_snapshot_that_is_not_stored_is_named() {
        let repo = TestRepo::new(GUN, now());
        let (mut rows, changes) = collection(&repo);
        // Snapshot version 2 is gone: timestamp version 1 names nothing stored.
        rows.remove(2);
        let p = problems(rows, &changes);
        assert!(
            p.iter()
                .any(|p| p.contains("timestamp version 1 names a snapshot that is not stored")),
            "{p:?}"
        );
    }

    #[test]
    fn changefeed_records_must_match_what_is_stored() {
        let repo = TestRepo::new(GUN, now());
        let (rows, mut changes) = collection(&repo);
        changes[1].sha256 = Some("00".repeat(32));
        let p = problems(rows.clone(), &changes);
        assert!(
            p.iter()
                .any(|p| p.contains("changefeed row 2: sha256 is not that of timestamp version 2")),
            "{p:?}"
        );
        let deletion_with_version = ChangeRow {
            category: "deletion".into(),
            ..changes[0].clone()
        };
        let p = problems(rows, &[deletion_with_version]);
        assert!(
            p.iter().any(|p| p.contains("a deletion with a version or sha256")),
            "{p:?}"
        );
    }

    #[test]
    fn a_recreated_collection_keeps_the_records_of_its_first_life() {
        let repo = TestRepo::new(GUN, now());
        let (rows, changes) = collection(&repo);
        let earlier = update(1, 1, b"a timestamp of the deleted first life");
        let deletion = ChangeRow {
            id: 2,
            created_at_micros: Some(2_000_000),
            version: 0,
            sha256: None,
            category: "deletion".into(),
        };
        let mut all = vec![earlier, deletion];
        all.extend(changes);
        let v = verify_collection(GUN, rows, &all, now()).unwrap();
        assert_eq!(v.collection.changes.len(), 4);
        assert_eq!(v.collection.changes[1].category, ChangeCategory::Deletion);
    }
}
