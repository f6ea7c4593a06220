//! The signing policy: the signer checks what it signs.
//!
//! Notary's signer signs any bytes for any key (its threat model and the
//! Cure53 audit, TUF-01-003, say so). Seal's signer only signs, with a
//! timestamp or snapshot key:
//!
//! * canonical JSON of that role's `signed` object (`_type` `Timestamp` or
//!   `Snapshot`), whose `meta` is well formed (a timestamp lists exactly the
//!   snapshot, a snapshot lists at least root and targets, each entry with a
//!   length and a sha256);
//! * for the key's GUN and role, when the caller states them (Seal's nodes
//!   do, in request metadata; Notary's server does not, and its requests are
//!   judged by the key's role and the version alone);
//! * with a version above the last one this signer signed with that key
//!   (the high-water mark, persisted before the signature leaves), or the
//!   same version with byte-identical content (a retry);
//! * expiring in the future but no later than the configured maximum
//!   lifetime from now.
//!
//! A compromised server node can therefore neither get an older state
//! signed again (rollback) nor a timestamp that never expires (freeze).
//! A refusal carries the high-water mark, so an honest node whose signed
//! version never committed (it crashed after signing) can skip past it:
//! TUF requires versions to increase, not to be consecutive.

use sha2::{Digest as _, Sha256};
use time::{Duration, OffsetDateTime};

use seal_tuf::cjson::Value;
use seal_tuf::metadata::{ROOT, SNAPSHOT, TARGETS, TIMESTAMP};
use seal_tuf::{Snapshot, Timestamp};

/// Limits the policy enforces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PolicyConfig {
    /// The longest a signed timestamp may live from now.
    pub max_timestamp_lifetime: Duration,
    /// The longest a signed snapshot may live from now.
    pub max_snapshot_lifetime: Duration,
    /// Tolerated difference between the node's clock and the signer's.
    pub clock_skew: Duration,
    /// Whether refusals are enforced. Off (`policy.enforce = false`) only
    /// for tests and compromise drills: the signer then signs whatever it
    /// is sent, as Notary's does, and only logs what it would have refused.
    pub enforce: bool,
}

impl Default for PolicyConfig {
    /// Notary's lifetimes (timestamp 14 days, snapshot 3 years) with
    /// five minutes of clock skew.
    fn default() -> Self {
        let l = seal_tuf::time::Lifetimes::default();
        PolicyConfig {
            max_timestamp_lifetime: l.timestamp,
            max_snapshot_lifetime: l.snapshot,
            clock_skew: Duration::minutes(5),
            enforce: true,
        }
    }
}

/// What the signer knows about the key asked to sign.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyScope {
    /// The collection the key was made for.
    pub gun: String,
    /// The role the key was made for (`timestamp` or `snapshot`).
    pub role: String,
}

/// What the caller says the signature is for (Seal's nodes send it).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Claimed {
    /// The collection.
    pub gun: Option<String>,
    /// The role.
    pub role: Option<String>,
}

/// The last signature made with a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HighWater {
    /// Its version.
    pub version: u64,
    /// SHA-256 of the content signed.
    pub content_sha256: [u8; 32],
}

/// What the policy approved: the new high-water mark to persist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Approved {
    /// The mark.
    pub high_water: HighWater,
    /// When the signed metadata expires.
    pub expires: OffsetDateTime,
}

/// Why the signer refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// The key's role is not one the signer signs metadata for.
    #[error("key is for role {0}: this signer only signs timestamp and snapshot metadata")]
    RoleNotSigned(String),
    /// The content is not canonical JSON of a metadata object.
    #[error("content is not canonical JSON metadata: {0}")]
    NotMetadata(String),
    /// `_type` or the claimed role differs from the key's role.
    #[error("key is for role {key_role}, the request is for {found}")]
    WrongRole {
        /// The key's role.
        key_role: String,
        /// What the request carried.
        found: String,
    },
    /// The claimed GUN differs from the key's.
    #[error("key belongs to {key_gun}, the request is for {found}")]
    WrongGun {
        /// The key's GUN.
        key_gun: String,
        /// The GUN claimed.
        found: String,
    },
    /// `meta` is missing entries or malformed.
    #[error("malformed meta: {0}")]
    BadMeta(String),
    /// A version not above the last one signed (rollback or replay).
    #[error("version {got} is not above version {high_water} already signed with this key")]
    NotNewer {
        /// The last version signed.
        high_water: u64,
        /// The version asked for.
        got: u64,
    },
    /// Expires too far in the future (freeze).
    #[error("expiry {expires} is beyond the allowed maximum {max}")]
    TooLong {
        /// The requested expiry.
        expires: OffsetDateTime,
        /// The latest allowed.
        max: OffsetDateTime,
    },
    /// Already expired.
    #[error("expiry {0} is in the past")]
    Expired(OffsetDateTime),
}

impl Refusal {
    /// A short label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Refusal::RoleNotSigned(_) => "role_not_signed",
            Refusal::NotMetadata(_) => "not_metadata",
            Refusal::WrongRole { .. } => "wrong_role",
            Refusal::WrongGun { .. } => "wrong_gun",
            Refusal::BadMeta(_) => "bad_meta",
            Refusal::NotNewer { .. } => "not_newer",
            Refusal::TooLong { .. } => "too_long",
            Refusal::Expired(_) => "expired",
        }
    }
}

fn check_entry(role: &str, v: &Value, name: &str) -> Result<(), Refusal> {
    let m = v
        .get("meta")
        .and_then(|m| m.get(name))
        .ok_or_else(|| Refusal::BadMeta(format!("{role} does not list {name}")))?;
    let ok = m.get("length").and_then(Value::as_int).is_some_and(|l| l >= 0)
        && m.get("hashes")
            .and_then(|h| h.get("sha256"))
            .and_then(Value::as_str)
            .is_some();
    if ok {
        Ok(())
    } else {
        Err(Refusal::BadMeta(format!(
            "{role}'s entry for {name} lacks a length or a sha256"
        )))
    }
}

/// Decides whether `content` may be signed with a key of `scope` whose
/// last signature is `last`.
pub fn check(
    scope: &KeyScope,
    claimed: &Claimed,
    content: &[u8],
    last: Option<&HighWater>,
    now: OffsetDateTime,
    config: &PolicyConfig,
) -> Result<Approved, Refusal> {
    let (expected_type, max_life) = match scope.role.as_str() {
        TIMESTAMP => ("Timestamp", config.max_timestamp_lifetime),
        SNAPSHOT => ("Snapshot", config.max_snapshot_lifetime),
        other => return Err(Refusal::RoleNotSigned(other.to_owned())),
    };
    if let Some(role) = &claimed.role {
        if *role != scope.role {
            return Err(Refusal::WrongRole {
                key_role: scope.role.clone(),
                found: role.clone(),
            });
        }
    }
    if let Some(gun) = &claimed.gun {
        if *gun != scope.gun {
            return Err(Refusal::WrongGun {
                key_gun: scope.gun.clone(),
                found: gun.clone(),
            });
        }
    }
    let v = Value::parse(content).map_err(|e| Refusal::NotMetadata(e.0))?;
    if v.to_canonical() != content {
        return Err(Refusal::NotMetadata("not in canonical form".into()));
    }
    let found_type = v.get("_type").and_then(Value::as_str).unwrap_or("");
    if found_type != expected_type {
        return Err(Refusal::WrongRole {
            key_role: scope.role.clone(),
            found: if found_type.is_empty() {
                "(no _type)".into()
            } else {
                found_type.to_owned()
            },
        });
    }
    let (version, expires) = if scope.role == TIMESTAMP {
        let t = Timestamp::from_signed(&v).map_err(|e| Refusal::NotMetadata(e.to_string()))?;
        if t.meta.len() != 1 {
            return Err(Refusal::BadMeta("a timestamp lists exactly the snapshot".into()));
        }
        check_entry(TIMESTAMP, &v, SNAPSHOT)?;
        (t.version, t.expires)
    } else {
        let s = Snapshot::from_signed(&v).map_err(|e| Refusal::NotMetadata(e.to_string()))?;
        for name in [ROOT, TARGETS] {
            check_entry(SNAPSHOT, &v, name)?;
        }
        if s.meta.contains_key(TIMESTAMP) || s.meta.contains_key(SNAPSHOT) {
            return Err(Refusal::BadMeta(
                "a snapshot lists neither itself nor the timestamp".into(),
            ));
        }
        (s.version, s.expires)
    };
    let sha: [u8; 32] = Sha256::digest(content).into();
    if let Some(hw) = last {
        let retry = version == hw.version && sha == hw.content_sha256;
        if version <= hw.version && !retry {
            return Err(Refusal::NotNewer {
                high_water: hw.version,
                got: version,
            });
        }
    }
    let max = now + max_life + config.clock_skew;
    if expires > max {
        return Err(Refusal::TooLong { expires, max });
    }
    if expires <= now - config.clock_skew {
        return Err(Refusal::Expired(expires));
    }
    Ok(Approved {
        high_water: HighWater {
            version,
            content_sha256: sha,
        },
        expires,
    })
}

/// [`check`] as the signer applies it: a refusal is an error when the
/// policy is enforced. When it is not, a refusal is logged and the content
/// may be signed anyway (`Ok(None)`: no new high-water mark to record).
pub fn decide(
    scope: &KeyScope,
    claimed: &Claimed,
    content: &[u8],
    last: Option<&HighWater>,
    now: OffsetDateTime,
    config: &PolicyConfig,
) -> Result<Option<Approved>, Refusal> {
    match check(scope, claimed, content, last, now, config) {
        Ok(approved) => Ok(Some(approved)),
        Err(refusal) if !config.enforce => {
            tracing::warn!(gun = %scope.gun, role = %scope.role, %refusal,
                "signing policy NOT ENFORCED (policy.enforce = false): signing what the policy refuses");
            Ok(None)
        }
        Err(refusal) => Err(refusal),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use seal_tuf::FileMeta;
    use std::collections::BTreeMap;

    fn now() -> OffsetDateTime {
        seal_tuf::time::parse_rfc3339("2026-11-22T00:00:00Z").unwrap()
    }

    fn ts(version: u64, life: Duration) -> Vec<u8> {
        let mut meta = BTreeMap::new();
        meta.insert(SNAPSHOT.to_owned(), FileMeta::for_bytes(b"snapshot"));
        Timestamp {
            version,
            expires: now() + life,
            meta,
        }
        .to_value()
        .to_canonical()
    }

    fn snap(version: u64, life: Duration) -> Vec<u8> {
        let mut meta = BTreeMap::new();
        meta.insert(ROOT.to_owned(), FileMeta::for_bytes(b"root"));
        meta.insert(TARGETS.to_owned(), FileMeta::for_bytes(b"targets"));
        Snapshot {
            version,
            expires: now() + life,
            meta,
        }
        .to_value()
        .to_canonical()
    }

    fn scope(role: &str) -> KeyScope {
        KeyScope {
            gun: "example.com/app".into(),
            role: role.into(),
        }
    }

    fn run(role: &str, content: &[u8], last: Option<&HighWater>) -> Result<Approved, Refusal> {
        check(
            &scope(role),
            &Claimed::default(),
            content,
            last,
            now(),
            &PolicyConfig::default(),
        )
    }

    #[test]
    fn fresh_timestamps_and_snapshots_are_signed() {
        let a = run(TIMESTAMP, &ts(3, Duration::days(14)), None).unwrap();
        assert_eq!(a.high_water.version, 3);
        let a2 = run(TIMESTAMP, &ts(4, Duration::days(1)), Some(&a.high_water)).unwrap();
        assert_eq!(a2.high_water.version, 4);
        // A retry of exactly what was signed is fine; skipping versions too.
        run(TIMESTAMP, &ts(4, Duration::days(1)), Some(&a2.high_water)).unwrap();
        run(TIMESTAMP, &ts(9, Duration::days(1)), Some(&a2.high_water)).unwrap();
        run(SNAPSHOT, &snap(2, Duration::days(1095)), None).unwrap();
    }

    #[test]
    fn rollbacks_and_replays_are_refused() {
        let hw = run(TIMESTAMP, &ts(5, Duration::days(14)), None).unwrap().high_water;
        for (v, life) in [(4, Duration::days(14)), (5, Duration::days(13)), (1, Duration::days(1))] {
            let e = run(TIMESTAMP, &ts(v, life), Some(&hw)).unwrap_err();
            assert_eq!(e, Refusal::NotNewer { high_water: 5, got: v });
        }
    }

    #[test]
    fn an_unenforced_policy_signs_what_it_would_refuse_without_moving_the_mark() {
        let off = PolicyConfig {
            enforce: false,
            ..PolicyConfig::default()
        };
        let decide_with = |config: &PolicyConfig, content: &[u8], last: Option<&HighWater>| {
            decide(&scope(TIMESTAMP), &Claimed::default(), content, last, now(), config)
        };
        let hw = run(TIMESTAMP, &ts(5, Duration::days(14)), None).unwrap().high_water;
        // Enforced (the default): a rollback is an error.
        assert_eq!(
            decide_with(&PolicyConfig::default(), &ts(4, Duration::days(1)), Some(&hw)),
            Err(Refusal::NotNewer { high_water: 5, got: 4 })
        );
        // Not enforced: signed, and no new high-water mark to record.
        assert_eq!(decide_with(&off, &ts(4, Duration::days(1)), Some(&hw)), Ok(None));
        assert_eq!(decide_with(&off, b"sign me", Some(&hw)), Ok(None));
        // What the policy approves still moves the mark.
        let a = decide_with(&off, &ts(6, Duration::days(1)), Some(&hw))
            .unwrap()
            .unwrap();
        assert_eq!(a.high_water.version, 6);
    }

    #[test]
    fn freezes_are_refused() {
        assert!(matches!(
            run(TIMESTAMP, &ts(1, Duration::days(15)), None),
            Err(Refusal::TooLong { .. })
        ));
        assert!(matches!(
            run(SNAPSHOT, &snap(1, Duration::days(3 * 365 + 1)), None),
            Err(Refusal::TooLong { .. })
        ));
        assert!(matches!(
            run(TIMESTAMP, &ts(1, Duration::hours(-1)), None),
            Err(Refusal::Expired(_))
        ));
    }

    #[test]
    fn wrong_role_gun_and_content_are_refused() {
        // A snapshot for a timestamp key and the other way round.
        assert!(matches!(
            run(TIMESTAMP, &snap(1, Duration::days(1)), None),
            Err(Refusal::WrongRole { .. })
        ));
        assert!(matches!(
            run(SNAPSHOT, &ts(1, Duration::days(1)), None),
            Err(Refusal::WrongRole { .. })
        ));
        assert!(matches!(
            run("targets", &ts(1, Duration::days(1)), None),
            Err(Refusal::RoleNotSigned(_))
        ));
        let claimed = Claimed {
            gun: Some("example.com/other".into()),
            role: None,
        };
        let e = check(
            &scope(TIMESTAMP),
            &claimed,
            &ts(1, Duration::days(1)),
            None,
            now(),
            &PolicyConfig::default(),
        );
        assert!(matches!(e, Err(Refusal::WrongGun { .. })), "{e:?}");
        let claimed = Claimed {
            gun: None,
            role: Some(SNAPSHOT.into()),
        };
        let e = check(
            &scope(TIMESTAMP),
            &claimed,
            &ts(1, Duration::days(1)),
            None,
            now(),
            &PolicyConfig::default(),
        );
        assert!(matches!(e, Err(Refusal::WrongRole { .. })), "{e:?}");
        // Arbitrary bytes, non-canonical JSON, a root.
        assert!(matches!(run(TIMESTAMP, b"sign me", None), Err(Refusal::NotMetadata(_))));
        let mut spaced = b" ".to_vec();
        spaced.extend(ts(1, Duration::days(1)));
        assert!(matches!(run(TIMESTAMP, &spaced, None), Err(Refusal::NotMetadata(_))));
        assert!(matches!(
            run(TIMESTAMP, br#"{"_type":"Root","version":1}"#, None),
            Err(Refusal::WrongRole { .. })
        ));
    }

    #[test]
    fn malformed_meta_is_refused() {
        // A snapshot without targets.
        let mut meta = BTreeMap::new();
        meta.insert(ROOT.to_owned(), FileMeta::for_bytes(b"root"));
        let s = Snapshot {
            version: 1,
            expires: now() + Duration::days(1),
            meta,
        }
        .to_value()
        .to_canonical();
        assert!(matches!(run(SNAPSHOT, &s, None), Err(Refusal::BadMeta(_))));
        // A timestamp listing more than the snapshot.
        let mut meta = BTreeMap::new();
        meta.insert(SNAPSHOT.to_owned(), FileMeta::for_bytes(b"s"));
        meta.insert(TARGETS.to_owned(), FileMeta::for_bytes(b"t"));
        let t = Timestamp {
            version: 1,
            expires: now() + Duration::days(1),
            meta,
        }
        .to_value()
        .to_canonical();
        assert!(matches!(run(TIMESTAMP, &t, None), Err(Refusal::BadMeta(_))));
    }
}
