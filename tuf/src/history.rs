//! A collection's stored history judged as a whole (for collections brought
//! in from elsewhere, such as a Notary server's database): the current state
//! verified as a client would verify it, and the hash chain between the
//! stored versions. Pure: the caller passes the files and `now`.

use std::collections::{BTreeMap, HashMap};

use sha2::{Digest as _, Sha256};
use time::OffsetDateTime;

use crate::client::{Limits, Repo, TrustPin};
use crate::metadata::{FileMeta, Root, SignedFile, Snapshot, Targets, Timestamp, SNAPSHOT, TARGETS, TIMESTAMP};

/// Every stored file of a collection: role → version → file.
pub type Stored = BTreeMap<String, BTreeMap<u64, SignedFile>>;

fn latest<'a>(parsed: &'a BTreeMap<String, BTreeMap<u64, SignedFile>>, role: &str) -> Option<&'a SignedFile> {
    parsed.get(role).and_then(|v| v.values().next_back())
}

/// Verifies the current state of `parsed` as a client would (trust on first
/// use of the oldest root, each later root, then the current timestamp,
/// snapshot, targets and every delegation the snapshot lists), at `now` or,
/// if something has expired since, just before the earliest expiry, since
/// expiry is not what is judged; returns the current root and the current
/// timestamp's expiry (Unix nanoseconds).
pub fn verify_current(gun: &str, parsed: &Stored, now: OffsetDateTime) -> Result<(Root, i64), String> {
    let missing = |role: &str| format!("no {role} stored");
    let roots = parsed.get("root").ok_or_else(|| missing("root"))?;
    let ts_file = latest(parsed, TIMESTAMP).ok_or_else(|| missing(TIMESTAMP))?;
    let snap_file = latest(parsed, SNAPSHOT).ok_or_else(|| missing(SNAPSHOT))?;
    let ts = Timestamp::from_signed(ts_file.signed()).map_err(|e| e.to_string())?;
    let snap = Snapshot::from_signed(snap_file.signed()).map_err(|e| e.to_string())?;
    // The earliest expiry among the current files, so that expiry is not what is judged.
    let mut earliest = ts.expires.min(snap.expires);
    for role in snap.meta.keys() {
        if let Some(f) = latest(parsed, role) {
            if role == "root" {
                earliest = earliest.min(Root::from_signed(f.signed()).map_err(|e| e.to_string())?.expires);
            } else {
                earliest = earliest.min(
                    Targets::from_signed(role, f.signed())
                        .map_err(|e| e.to_string())?
                        .expires,
                );
            }
        }
    }
    let at = now.min(earliest - time::Duration::seconds(1));
    let mut repo = Repo::new(gun, TrustPin::Tofu, Limits::default());
    for (version, f) in roots {
        repo.update_root(f.bytes().to_vec(), at)
            .map_err(|e| format!("root version {version}: {e}"))?;
    }
    repo.update_timestamp(ts_file.bytes().to_vec(), at)
        .map_err(|e| format!("timestamp: {e}"))?;
    repo.update_snapshot(snap_file.bytes().to_vec(), at)
        .map_err(|e| format!("snapshot: {e}"))?;
    // Parents before children: by depth, then name.
    let mut roles: Vec<&String> = snap.meta.keys().filter(|r| *r != "root").collect();
    roles.sort_by_key(|r| (r.matches('/').count(), (*r).clone()));
    if !roles.iter().any(|r| *r == TARGETS) {
        return Err("the snapshot does not list targets".into());
    }
    for role in roles {
        let f = latest(parsed, role).ok_or_else(|| missing(role))?;
        repo.update_targets(role, f.bytes().to_vec(), at)
            .map_err(|e| format!("{role}: {e}"))?;
    }
    let root = repo.root().cloned().ok_or_else(|| missing("root"))?;
    let expires = i64::try_from(ts.expires.unix_timestamp_nanos()).map_err(|_| "timestamp expiry out of range")?;
    Ok((root, expires))
}

/// The breaks in the hash chain between stored versions: a stored timestamp
/// naming a snapshot that is not stored, a stored snapshot naming a version
/// of a role that is not stored; one line each.
pub fn chain_problems(gun: &str, parsed: &Stored) -> Vec<String> {
    let mut problems = Vec::new();
    let by_sha: HashMap<(&str, String), &SignedFile> = parsed
        .iter()
        .flat_map(|(role, versions)| {
            versions
                .values()
                .map(move |f| ((role.as_str(), hex::encode(Sha256::digest(f.bytes()))), f))
        })
        .collect();
    let find = |role: &str, meta: &FileMeta| -> bool {
        meta.sha256_hex()
            .and_then(|sha| by_sha.get(&(role, sha)))
            .is_some_and(|f| meta.check(role, f.bytes()).is_ok())
    };
    for (version, f) in parsed.get(TIMESTAMP).into_iter().flatten() {
        match Timestamp::from_signed(f.signed()) {
            Ok(ts) => {
                if !ts.snapshot_meta().is_some_and(|m| find(SNAPSHOT, m)) {
                    problems.push(format!(
                        "{gun}: timestamp version {version} names a snapshot that is not stored"
                    ));
                }
            }
            Err(e) => problems.push(format!("{gun}: timestamp version {version}: {e}")),
        }
    }
    for (version, f) in parsed.get(SNAPSHOT).into_iter().flatten() {
        match Snapshot::from_signed(f.signed()) {
            Ok(snap) => {
                for (role, meta) in &snap.meta {
                    if !find(role, meta) {
                        problems.push(format!(
                            "{gun}: snapshot version {version} names a {role} that is not stored"
                        ));
                    }
                }
            }
            Err(e) => problems.push(format!("{gun}: snapshot version {version}: {e}")),
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::TestRepo;

    const GUN: &str = "example.com/history";

    /// [`TestRepo::two_publishes`] as stored files.
    fn stored(repo: &TestRepo) -> Stored {
        let mut out = Stored::new();
        for (role, version, bytes) in repo.two_publishes() {
            let file = SignedFile::parse(role, bytes).unwrap();
            out.entry(role.to_owned()).or_default().insert(version, file);
        }
        out
    }

    #[test]
    fn a_consistent_history_verifies_and_has_no_breaks() {
        let now = OffsetDateTime::now_utc();
        let repo = TestRepo::new(GUN, now);
        let files = stored(&repo);
        let (root, expires) = verify_current(GUN, &files, now).unwrap();
        assert_eq!(root.version, 1);
        let ts = Timestamp::from_signed(files[TIMESTAMP][&2].signed()).unwrap();
        assert_eq!(i128::from(expires), ts.expires.unix_timestamp_nanos());
        assert!(chain_problems(GUN, &files).is_empty());
        // Verified just before the earliest expiry when `now` is past it.
        verify_current(GUN, &files, now + time::Duration::days(10 * 365)).unwrap();
    }

    #[test]
    fn breaks_in_the_chain_are_named_and_a_bad_current_state_refused() {
        let now = OffsetDateTime::now_utc();
        let repo = TestRepo::new(GUN, now);
        let mut files = stored(&repo);
        files.get_mut(SNAPSHOT).unwrap().remove(&2);
        assert_eq!(
            chain_problems(GUN, &files),
            vec![format!(
                "{GUN}: timestamp version 1 names a snapshot that is not stored"
            )]
        );
        files.get_mut(TARGETS).unwrap().remove(&3);
        let problems = chain_problems(GUN, &files);
        assert!(
            problems.contains(&format!("{GUN}: snapshot version 3 names a targets that is not stored")),
            "{problems:?}"
        );
        assert!(verify_current(GUN, &files, now).is_err());
    }
}
