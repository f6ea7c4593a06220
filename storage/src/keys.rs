//! Column family names and key encodings.
//!
//! Every composite key joins its parts with NUL, which is why GUNs and roles
//! may not contain NUL. Integers are big-endian so that byte order is numeric
//! order; signed expiry times are offset by 2^63 so that they sort too.

use crate::error::{Error, Result};

/// Raft log: index (u64 BE) -> serialized entry.
pub const CF_RAFT_LOG: &str = "raft_log";
/// Raft metadata: vote, committed, last purged, the state machine's current generation; and this
/// node's own records: on-disk format version, node id, cluster id (never replicated, never in
/// snapshots).
pub const CF_RAFT_META: &str = "raft_meta";
/// State-machine metadata: last applied, membership, changefeed sequence.
pub const CF_SM_META: &str = "sm_meta";
/// gun \0 role \0 version BE -> exact file bytes.
pub const CF_META: &str = "meta";
/// gun \0 role \0 sha256 hex -> version BE.
pub const CF_CHECKSUM: &str = "checksum";
/// gun \0 role -> current version BE; for the timestamp role (format 3), followed by the
/// timestamp's expiry (sortable BE) and its exact bytes: see [`CurrentEntry`].
pub const CF_CURRENT: &str = "current";
/// change id BE -> postcard(ChangeRecord).
pub const CF_CHANGEFEED: &str = "changefeed";
/// gun \0 change id BE -> empty: the per-GUN changefeed index.
pub const CF_CHANGEFEED_GUN: &str = "changefeed_gun";
/// sortable expiry BE \0 gun -> empty: the timestamp due index.
pub const CF_EXPIRY: &str = "expiry";
/// gun -> sortable expiry BE of its current timestamp (to move the index entry).
pub const CF_GUN_EXPIRY: &str = "gun_expiry";
/// gun \0 role -> postcard(ServerKeys).
pub const CF_SERVER_KEYS: &str = "server_keys";

/// The state-machine column families, in the (fixed) order used by snapshots and digests.
pub const SM_CFS: [&str; 9] = [
    CF_SM_META,
    CF_META,
    CF_CHECKSUM,
    CF_CURRENT,
    CF_CHANGEFEED,
    CF_CHANGEFEED_GUN,
    CF_EXPIRY,
    CF_GUN_EXPIRY,
    CF_SERVER_KEYS,
];

/// The Raft database's column families; [`SM_CFS`] are the state machine's own database's.
pub const RAFT_CFS: [&str; 2] = [CF_RAFT_LOG, CF_RAFT_META];

pub(crate) const SM_LAST_APPLIED: &[u8] = b"last_applied";
pub(crate) const SM_MEMBERSHIP: &[u8] = b"membership";
pub(crate) const SM_CHANGE_SEQ: &[u8] = b"changefeed_seq";

pub(crate) const RM_VOTE: &[u8] = b"vote";
pub(crate) const RM_COMMITTED: &[u8] = b"committed";
pub(crate) const RM_LAST_PURGED: &[u8] = b"last_purged";
/// Format 1 only: the snapshot file an interrupted install was reading.
pub(crate) const RM_INSTALLING: &[u8] = b"sm_installing_from";
/// The state machine's current generation (u64 BE, [`crate::state`]).
pub(crate) const RM_SM_GENERATION: &[u8] = b"sm_generation";
pub(crate) const RM_FORMAT: &[u8] = b"format_version";
pub(crate) const RM_NODE_ID: &[u8] = b"node_id";
pub(crate) const RM_CLUSTER_ID: &[u8] = b"cluster_id";

/// Check a GUN or role name: non-empty and NUL-free.
pub(crate) fn check_name(what: &'static str, name: &str) -> Result<()> {
    if name.is_empty() {
        return Err(Error::InvalidName {
            what,
            name: name.to_owned(),
            reason: "empty",
        });
    }
    if name.contains('\0') {
        return Err(Error::InvalidName {
            what,
            name: name.to_owned(),
            reason: "contains NUL",
        });
    }
    Ok(())
}

/// `gun \0`: prefix of every per-GUN key.
pub(crate) fn gun_prefix(gun: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(gun.len() + 1);
    k.extend_from_slice(gun.as_bytes());
    k.push(0);
    k
}

/// `gun \0 role`.
pub(crate) fn gun_role(gun: &str, role: &str) -> Vec<u8> {
    let mut k = gun_prefix(gun);
    k.extend_from_slice(role.as_bytes());
    k
}

/// `gun \0 role \0 version BE`.
pub(crate) fn meta_key(gun: &str, role: &str, version: u64) -> Vec<u8> {
    let mut k = gun_role(gun, role);
    k.push(0);
    k.extend_from_slice(&version.to_be_bytes());
    k
}

/// `gun \0 role \0 sha256hex`.
pub(crate) fn checksum_key(gun: &str, role: &str, sha256_hex: &str) -> Vec<u8> {
    let mut k = gun_role(gun, role);
    k.push(0);
    k.extend_from_slice(sha256_hex.as_bytes());
    k
}

/// Map an i64 to a u64 whose big-endian bytes sort like the i64.
pub(crate) fn sortable(t: i64) -> [u8; 8] {
    ((t as u64) ^ (1u64 << 63)).to_be_bytes()
}

/// Inverse of [`sortable`].
pub(crate) fn unsortable(b: [u8; 8]) -> i64 {
    (u64::from_be_bytes(b) ^ (1u64 << 63)) as i64
}

/// `sortable(expires) \0 gun`.
pub(crate) fn expiry_key(expires: i64, gun: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(9 + gun.len());
    k.extend_from_slice(&sortable(expires));
    k.push(0);
    k.extend_from_slice(gun.as_bytes());
    k
}

/// `gun \0 id BE`.
pub(crate) fn change_gun_key(gun: &str, id: u64) -> Vec<u8> {
    let mut k = gun_prefix(gun);
    k.extend_from_slice(&id.to_be_bytes());
    k
}

/// Decode an 8-byte big-endian u64 value.
pub(crate) fn be_u64(cf: &'static str, key: &[u8], v: &[u8]) -> Result<u64> {
    let arr: [u8; 8] = v.try_into().map_err(|_| Error::Corrupt {
        cf,
        key_hex: hex::encode(key),
        reason: format!("expected 8 bytes, found {}", v.len()),
    })?;
    Ok(u64::from_be_bytes(arr))
}

/// A value of [`CF_CURRENT`], decoded.
///
/// Every role's value starts with its current version (8 bytes BE). Since on-disk format 3, the
/// timestamp role's value also holds the collection's timestamp expiry (8 bytes, [`sortable`])
/// and the current timestamp's exact bytes, copies of what `meta` and `gun_expiry` hold, written
/// in the same batch: a node answers a `timestamp.json` that is not in memory with one RocksDB
/// read instead of three. A value of 8 bytes (any role, and timestamps written before format 3)
/// holds the version alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CurrentEntry<'a> {
    pub(crate) version: u64,
    /// For a timestamp written since format 3: its expiry (Unix nanoseconds) and bytes.
    pub(crate) inline: Option<(i64, &'a [u8])>,
}

impl<'a> CurrentEntry<'a> {
    /// Decode `v`, the value of `key` in [`CF_CURRENT`].
    pub(crate) fn parse(key: &[u8], v: &'a [u8]) -> Result<CurrentEntry<'a>> {
        let corrupt = || Error::Corrupt {
            cf: CF_CURRENT,
            key_hex: hex::encode(key),
            reason: format!("expected 8 bytes, or at least 16, found {}", v.len()),
        };
        let (version, rest) = v.split_first_chunk::<8>().ok_or_else(corrupt)?;
        let version = u64::from_be_bytes(*version);
        if rest.is_empty() {
            return Ok(CurrentEntry { version, inline: None });
        }
        let (expiry, bytes) = rest.split_first_chunk::<8>().ok_or_else(corrupt)?;
        Ok(CurrentEntry {
            version,
            inline: Some((unsortable(*expiry), bytes)),
        })
    }

    /// What `current` holds for `role` at `version`: for the timestamp role, its expiry and bytes
    /// when `timestamp` gives them; for any other role, the version alone.
    pub(crate) fn of(role: &str, version: u64, timestamp: Option<(i64, &'a [u8])>) -> CurrentEntry<'a> {
        CurrentEntry {
            version,
            inline: timestamp.filter(|_| role == "timestamp"),
        }
    }

    /// Encode: the version, then (a timestamp's) expiry and bytes.
    pub(crate) fn encode(self) -> Vec<u8> {
        let extra = self.inline.map_or(0, |(_, bytes)| 8 + bytes.len());
        let mut v = Vec::with_capacity(8 + extra);
        v.extend_from_slice(&self.version.to_be_bytes());
        if let Some((expiry, bytes)) = self.inline {
            v.extend_from_slice(&sortable(expiry));
            v.extend_from_slice(bytes);
        }
        v
    }
}

/// Format unix nanoseconds like Go's `time.RFC3339Nano` in UTC
/// (`2026-11-21T23:54:56.210447549Z`, trailing fractional zeros trimmed).
pub fn rfc3339_nanos(unix_nanos: i64) -> Option<String> {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(unix_nanos)).ok()?;
    if !(0..=9999).contains(&t.year()) {
        return None;
    }
    Some(seal_tuf::time::format_rfc3339_nano(t))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sortable_orders_like_i64() {
        let xs = [i64::MIN, -5, -1, 0, 1, 7, i64::MAX];
        for w in xs.windows(2) {
            assert!(sortable(w[0]) < sortable(w[1]));
            assert_eq!(unsortable(sortable(w[0])), w[0]);
        }
    }

    #[test]
    fn rfc3339_like_go() {
        assert_eq!(
            rfc3339_nanos(1_795_305_296_210_447_549).as_deref(),
            Some("2026-11-21T23:54:56.210447549Z")
        );
        assert_eq!(rfc3339_nanos(0).as_deref(), Some("1970-01-01T00:00:00Z"));
        assert_eq!(rfc3339_nanos(1_500_000_000).as_deref(), Some("1970-01-01T00:00:01.5Z"));
    }

    #[test]
    fn current_entries_round_trip_and_refuse_odd_lengths() {
        let key = gun_role("g", "timestamp");
        let plain = CurrentEntry {
            version: 7,
            inline: None,
        };
        assert_eq!(plain.encode(), 7u64.to_be_bytes());
        assert_eq!(CurrentEntry::parse(&key, &plain.encode()).unwrap(), plain);
        for inline in [(-5, &b""[..]), (1_795_305_296_210_447_549, &b"{\"signed\":{}}"[..])] {
            let entry = CurrentEntry {
                version: u64::MAX,
                inline: Some(inline),
            };
            let encoded = entry.encode();
            assert_eq!(encoded.len(), 16 + inline.1.len());
            assert_eq!(CurrentEntry::parse(&key, &encoded).unwrap(), entry);
        }
        for len in [0, 1, 7, 9, 15] {
            let err = CurrentEntry::parse(&key, &vec![0; len]).unwrap_err();
            assert!(err.to_string().contains(&format!("found {len}")), "{err}");
        }
    }

    #[test]
    fn names_refuse_nul_and_empty() {
        assert!(check_name("gun", "a\0b").is_err());
        assert!(check_name("gun", "").is_err());
        assert!(check_name("role", "targets/releases").is_ok());
    }
}
