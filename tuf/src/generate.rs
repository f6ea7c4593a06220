//! Generation of the metadata the server signs: the next snapshot (when
//! the snapshot key is server-managed) and the next timestamp.
//!
//! Generation returns the `signed` value; the caller gets signatures over
//! its canonical bytes (from an in-process key, a signer service or an HSM)
//! and assembles the file with [`SignedFile::assemble`], or uses [`sign`]
//! with local keys.

use std::collections::BTreeMap;

use time::{Duration, OffsetDateTime};

use crate::error::Error;
use crate::keys::PrivateKey;
use crate::metadata::{next_version, FileMeta, SignedFile, Snapshot, Timestamp, SNAPSHOT, TIMESTAMP};

/// The next snapshot: the previous one's meta (if any) with the entries of
/// `changed` (role name and exact file bytes) replaced, version + 1, and
/// expiry `now + lifetime`. Timestamp and snapshot entries in `changed` are
/// ignored.
pub fn next_snapshot(
    prev: Option<&Snapshot>,
    changed: &[(&str, &[u8])],
    now: OffsetDateTime,
    lifetime: Duration,
) -> Result<Snapshot, Error> {
    let mut meta = prev.map(|p| p.meta.clone()).unwrap_or_default();
    for (role, bytes) in changed {
        if *role == SNAPSHOT || *role == TIMESTAMP {
            continue;
        }
        meta.insert((*role).to_owned(), FileMeta::for_bytes(bytes));
    }
    Ok(Snapshot {
        version: next_version(SNAPSHOT, prev.map(|p| p.version))?,
        expires: now + lifetime,
        meta,
    })
}

/// The next timestamp, pointing at `snapshot_bytes`: version + 1, expiry
/// `now + lifetime`.
pub fn next_timestamp(
    prev: Option<&Timestamp>,
    snapshot_bytes: &[u8],
    now: OffsetDateTime,
    lifetime: Duration,
) -> Result<Timestamp, Error> {
    let mut meta = BTreeMap::new();
    meta.insert(SNAPSHOT.to_owned(), FileMeta::for_bytes(snapshot_bytes));
    Ok(Timestamp {
        version: next_version(TIMESTAMP, prev.map(|p| p.version))?,
        expires: now + lifetime,
        meta,
    })
}

/// Signs a `signed` value with local keys, each under the key ID the root
/// lists for it, and assembles the file.
pub fn sign(role: &str, signed: crate::cjson::Value, keys: &[(&PrivateKey, &str)]) -> SignedFile {
    let canonical = signed.to_canonical();
    let sigs = keys.iter().map(|(k, id)| k.sign_as(id, &canonical)).collect();
    SignedFile::assemble(role, signed, sigs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::MAX_VERSION;
    use crate::time::parse_rfc3339;

    #[test]
    fn versions_increase_and_never_overflow() {
        let now = parse_rfc3339("2026-11-22T00:00:00Z").unwrap();
        let ts = next_timestamp(None, b"snap", now, Duration::days(14)).unwrap();
        assert_eq!(ts.version, 1);
        let ts2 = next_timestamp(Some(&ts), b"snap2", now, Duration::days(14)).unwrap();
        assert_eq!(ts2.version, 2);
        assert_eq!(ts2.expires, now + Duration::days(14));
        let max = Timestamp {
            version: MAX_VERSION,
            ..ts2
        };
        assert!(matches!(
            next_timestamp(Some(&max), b"s", now, Duration::days(1)),
            Err(Error::VersionTooLarge { .. })
        ));
    }

    #[test]
    fn snapshot_replaces_changed_entries_only() {
        let now = parse_rfc3339("2026-11-22T00:00:00Z").unwrap();
        let s1 = next_snapshot(None, &[("root", b"r"), ("targets", b"t")], now, Duration::days(1)).unwrap();
        let s2 = next_snapshot(
            Some(&s1),
            &[("targets", b"t2"), ("timestamp", b"x")],
            now,
            Duration::days(1),
        )
        .unwrap();
        assert_eq!(s2.version, 2);
        assert_eq!(s2.meta["root"], s1.meta["root"]);
        assert_eq!(s2.meta["targets"], FileMeta::for_bytes(b"t2"));
        assert!(!s2.meta.contains_key("timestamp"));
    }
}
