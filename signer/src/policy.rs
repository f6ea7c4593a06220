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
//! * and nothing else: the content must be byte for byte the object
//!   re-encoded from what was parsed, so no field outside that object can
//!   ride along. Go's JSON decoder, which Notary's and Docker's clients use,
//!   matches keys case-insensitively with Unicode folding and the last match
//!   wins: a timestamp carrying `"expires"` for the signer and `"expireſ"`
//!   (U+017F folds to `s`) for Go clients would otherwise freeze them;
//! * for the key's GUN and role, when the caller states them (Seal's nodes
//!   do, in request metadata; Notary's server does not, and its requests are
//!   judged by the key's role and the version alone);
//! * with a version above the last one this signer signed with that key
//!   (the high-water mark, persisted before the signature leaves), or the
//!   same version with byte-identical content (a retry);
//! * expiring in the future but no later than the configured maximum
//!   lifetime from now;
//! * bound to the file it names: a timestamp is signed only with the bytes
//!   of the snapshot it lists, a snapshot only with the bytes of the
//!   targets it lists (Seal's nodes send them in `SignatureRequest.named`).
//!   The signer checks them against the listed length and hashes, reads
//!   their version, and refuses a version below the highest it has seen
//!   named by that key: a compromised node cannot keep clients on an old
//!   snapshot (old targets) with fresh timestamps. A request without the
//!   named file is refused unless `policy.notary_compat` is set (a real
//!   Notary server as client, which never sends it).
//!
//! A key made for a TUF 1.0 repository (its collection is `*tuf1/<name>`,
//! see `seal_tuf::tuf1::collection`) signs only that dialect's `timestamp`
//! and `snapshot` objects, in its canonical JSON, under the same rules; a
//! Notary key never signs a TUF 1.0 object, nor the other way round.
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

/// The default of `policy.max_version_jump`: the node's
/// `limits.max_version_jump` default.
pub use seal_tuf::update::DEFAULT_MAX_VERSION_JUMP;

/// Limits the policy enforces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PolicyConfig {
    /// The longest a signed timestamp may live from now.
    pub max_timestamp_lifetime: Duration,
    /// The longest a signed snapshot may live from now.
    pub max_snapshot_lifetime: Duration,
    /// Tolerated difference between the node's clock and the signer's.
    pub clock_skew: Duration,
    /// How far above the key's high-water mark (0 before its first
    /// signature) a version may go in one signature: one signature must
    /// not push a key to the largest version, after which it could sign
    /// nothing newer.
    pub max_version_jump: u64,
    /// Whether a timestamp or snapshot may be signed without the file it
    /// names (`policy.notary_compat`, off by default): on only for a real
    /// Notary server as the signer's client, which never sends that file.
    pub notary_compat: bool,
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
            max_version_jump: DEFAULT_MAX_VERSION_JUMP,
            notary_compat: false,
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
    /// The metadata files the content names, by role: the snapshot for a
    /// timestamp, the targets for a snapshot.
    pub named: std::collections::BTreeMap<String, Vec<u8>>,
}

/// The last signature made with a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HighWater {
    /// Its version.
    pub version: u64,
    /// SHA-256 of the content signed.
    pub content_sha256: [u8; 32],
    /// The highest version of the named file (the snapshot a timestamp
    /// lists, the targets a snapshot lists) any signature with this key was
    /// bound to; 0 when none was.
    pub named_version: u64,
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
    /// A version too far above the last one signed.
    #[error("version {got} jumps more than {max_jump} above version {high_water} already signed with this key")]
    TooFar {
        /// The last version signed (0: none).
        high_water: u64,
        /// The version asked for.
        got: u64,
        /// The largest jump allowed.
        max_jump: u64,
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
    /// No file given for the one the content names (and `notary_compat` off).
    #[error("a {role} is signed only with the {named} it names (SignatureRequest.named)")]
    Unbound {
        /// The key's role.
        role: String,
        /// The role of the file it names.
        named: &'static str,
    },
    /// The named file given is not the one the content lists.
    #[error("the {named} given is not the one listed: {detail}")]
    NamedMismatch {
        /// Its role.
        named: &'static str,
        /// What differs.
        detail: String,
    },
    /// The named file is older than one named before (rollback or freeze).
    #[error("the {named} named has version {got}, below version {high_water} named before with this key")]
    NamedRollback {
        /// Its role.
        named: &'static str,
        /// The highest version named before.
        high_water: u64,
        /// The version named now.
        got: u64,
    },
    /// The content holds more, or other, than the object it claims to be.
    #[error("content is not exactly a {object} object: {detail}")]
    NotExactly {
        /// `Timestamp` or `Snapshot`.
        object: &'static str,
        /// The first field found that the object does not have.
        detail: String,
    },
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
            Refusal::TooFar { .. } => "too_far",
            Refusal::TooLong { .. } => "too_long",
            Refusal::Expired(_) => "expired",
            Refusal::NotExactly { .. } => "not_exactly",
            Refusal::Unbound { .. } => "unbound",
            Refusal::NamedMismatch { .. } => "named_mismatch",
            Refusal::NamedRollback { .. } => "named_rollback",
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
    if seal_tuf::tuf1::repository_of(&scope.gun).is_some() {
        let (version, expires, named_version) = check_tuf1(&scope.role, claimed, content, last, config)?;
        return approve(version, expires, named_version, content, last, now, config, max_life);
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
    let (version, expires, reproduced, meta) = if scope.role == TIMESTAMP {
        let t = Timestamp::from_signed(&v).map_err(|e| Refusal::NotMetadata(e.to_string()))?;
        if t.meta.len() != 1 {
            return Err(Refusal::BadMeta("a timestamp lists exactly the snapshot".into()));
        }
        check_entry(TIMESTAMP, &v, SNAPSHOT)?;
        let reproduced = t.to_value();
        (t.version, t.expires, reproduced, t.meta)
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
        let reproduced = s.to_value();
        (s.version, s.expires, reproduced, s.meta)
    };
    // Only what the signer can reproduce from the object it checked.
    if reproduced.to_canonical() != content {
        return Err(Refusal::NotExactly {
            object: expected_type,
            detail: first_difference(&v, &reproduced, "signed"),
        });
    }
    let named_version = check_named(&scope.role, &meta, claimed, last, config)?;
    approve(version, expires, named_version, content, last, now, config, max_life)
}

/// The checks every dialect shares: a version above the key's high-water
/// mark (or a byte-identical retry) and not too far above it, an expiry in
/// the future and within `max_life`.
#[allow(clippy::too_many_arguments)]
fn approve(
    version: u64,
    expires: OffsetDateTime,
    named_version: u64,
    content: &[u8],
    last: Option<&HighWater>,
    now: OffsetDateTime,
    config: &PolicyConfig,
    max_life: Duration,
) -> Result<Approved, Refusal> {
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
    let high_water = last.map_or(0, |hw| hw.version);
    if version > high_water && version - high_water > config.max_version_jump {
        return Err(Refusal::TooFar {
            high_water,
            got: version,
            max_jump: config.max_version_jump,
        });
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
            named_version,
        },
        expires,
    })
}

/// Checks the file the content names (`meta` lists it) against what the
/// caller sent; returns the named-version mark to record.
fn check_named(
    role: &str,
    meta: &std::collections::BTreeMap<String, seal_tuf::FileMeta>,
    claimed: &Claimed,
    last: Option<&HighWater>,
    config: &PolicyConfig,
) -> Result<u64, Refusal> {
    let before = last.map_or(0, |hw| hw.named_version);
    let Some(named) = seal_tuf::metadata::named_role(role) else {
        return Ok(before);
    };
    let Some(bytes) = claimed.named.get(named) else {
        return if config.notary_compat {
            Ok(before)
        } else {
            Err(Refusal::Unbound {
                role: role.to_owned(),
                named,
            })
        };
    };
    let mismatch = |detail: String| Refusal::NamedMismatch { named, detail };
    let listed = meta
        .get(named)
        .ok_or_else(|| mismatch(format!("the content lists no {named}")))?;
    listed.check(named, bytes).map_err(|e| mismatch(e.to_string()))?;
    let file = seal_tuf::SignedFile::parse(named, bytes.clone()).map_err(|e| mismatch(e.to_string()))?;
    let got = seal_tuf::metadata::signed_version(file.signed()).ok_or_else(|| mismatch("it has no version".into()))?;
    if got < before {
        return Err(Refusal::NamedRollback {
            named,
            high_water: before,
            got,
        });
    }
    Ok(got)
}

/// The content check for a key of a TUF 1.0 repository (its collection is
/// `*tuf1/<name>`): the canonical JSON (TUF 1.0's escaping) of exactly the
/// `timestamp` or `snapshot` object the service makes, every `meta` entry
/// with a length and a sha256, a snapshot listing `targets.json`, and the
/// file it names (the snapshot a timestamp lists, the targets a snapshot
/// lists) given and matching. Returns (version, expires, named version).
fn check_tuf1(
    role: &str,
    claimed: &Claimed,
    content: &[u8],
    last: Option<&HighWater>,
    config: &PolicyConfig,
) -> Result<(u64, OffsetDateTime, u64), Refusal> {
    use seal_tuf::tuf1::metadata::{format_expires, MetaFile, Signed};
    let v = Value::parse(content).map_err(|e| Refusal::NotMetadata(e.0))?;
    if seal_tuf::tuf1::cjson::to_canonical(&v) != content {
        return Err(Refusal::NotMetadata("not in canonical form".into()));
    }
    let found_type = v.get("_type").and_then(Value::as_str).unwrap_or("");
    if found_type != role {
        return Err(Refusal::WrongRole {
            key_role: role.to_owned(),
            found: if found_type.is_empty() {
                "(no _type)".into()
            } else {
                found_type.to_owned()
            },
        });
    }
    let (object, named, named_file, common, meta) = if role == TIMESTAMP {
        let t = seal_tuf::tuf1::Timestamp::from_signed(role, &v).map_err(|e| Refusal::NotMetadata(e.to_string()))?;
        let meta = std::collections::BTreeMap::from([("snapshot.json".to_owned(), t.snapshot_meta)]);
        (TIMESTAMP, SNAPSHOT, "snapshot.json", t.common, meta)
    } else {
        let s = seal_tuf::tuf1::Snapshot::from_signed(role, &v).map_err(|e| Refusal::NotMetadata(e.to_string()))?;
        (SNAPSHOT, TARGETS, "targets.json", s.common, s.meta)
    };
    for (name, entry) in &meta {
        let has_sha256 = entry.hashes.as_ref().is_some_and(|h| h.contains_key("sha256"));
        if entry.length.is_none() || !has_sha256 {
            return Err(Refusal::BadMeta(format!(
                "{role}'s entry for {name} lacks a length or a sha256"
            )));
        }
    }
    let reproduced = Value::object([
        ("_type", Value::str(role)),
        ("spec_version", Value::str(&common.spec_version)),
        ("version", Value::Int(common.version.into())),
        ("expires", Value::str(format_expires(common.expires))),
        (
            "meta",
            Value::Object(meta.iter().map(|(k, m)| (k.clone(), m.to_value())).collect()),
        ),
    ]);
    if seal_tuf::tuf1::cjson::to_canonical(&reproduced) != content {
        return Err(Refusal::NotExactly {
            object,
            detail: first_difference(&v, &reproduced, "signed"),
        });
    }
    let before = last.map_or(0, |hw| hw.named_version);
    let Some(bytes) = claimed.named.get(named) else {
        return if config.notary_compat {
            Ok((common.version, common.expires, before))
        } else {
            Err(Refusal::Unbound {
                role: role.to_owned(),
                named,
            })
        };
    };
    let mismatch = |detail: String| Refusal::NamedMismatch { named, detail };
    let listed: &MetaFile = meta
        .get(named_file)
        .ok_or_else(|| mismatch(format!("the content lists no {named_file}")))?;
    listed.verify(named, bytes).map_err(|e| mismatch(e.to_string()))?;
    let got = Value::parse(bytes)
        .ok()
        .and_then(|f| f.get("signed")?.get("version")?.as_int())
        .and_then(|n| u64::try_from(n).ok())
        .ok_or_else(|| mismatch("it has no version".into()))?;
    if got != listed.version {
        return Err(mismatch(format!(
            "it is version {got}, the content lists version {}",
            listed.version
        )));
    }
    if got < before {
        return Err(Refusal::NamedRollback {
            named,
            high_water: before,
            got,
        });
    }
    Ok((common.version, common.expires, got))
}

/// Where `got` (the request) holds something `model` (its re-encoding)
/// does not, or holds it otherwise, named by its path.
fn first_difference(got: &Value, model: &Value, path: &str) -> String {
    match (got, model) {
        (Value::Object(g), Value::Object(m)) => {
            for (k, gv) in g {
                let at = format!("{path}.{k}");
                match m.get(k) {
                    None => return format!("unknown field {at:?}"),
                    Some(mv) if mv != gv => return first_difference(gv, mv, &at),
                    Some(_) => {}
                }
            }
            match m.keys().find(|k| !g.contains_key(*k)) {
                Some(k) => format!("missing field \"{path}.{k}\""),
                None => format!("{path} is written otherwise"),
            }
        }
        _ => format!("{path} is written otherwise"),
    }
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

    /// The policy as a real Notary server's signer runs it: no named files
    /// needed (the tests of every other rule use it).
    fn compat() -> PolicyConfig {
        PolicyConfig {
            notary_compat: true,
            ..PolicyConfig::default()
        }
    }

    /// A signed file of `role` (no signatures needed by the policy).
    fn file(role: &str, version: u64) -> Vec<u8> {
        let signed = Value::object([
            ("_type", Value::str(role)),
            ("version", Value::Int(i128::from(version))),
        ]);
        seal_tuf::SignedFile::assemble(role, signed, Vec::new()).into_bytes()
    }

    /// A timestamp of `version` listing `snapshot`.
    fn ts_over(version: u64, snapshot: &[u8]) -> Vec<u8> {
        let mut meta = BTreeMap::new();
        meta.insert(SNAPSHOT.to_owned(), FileMeta::for_bytes(snapshot));
        Timestamp {
            version,
            expires: now() + Duration::days(1),
            meta,
        }
        .to_value()
        .to_canonical()
    }

    fn bound(role: &str, content: &[u8], named: Option<&[u8]>, last: Option<&HighWater>) -> Result<Approved, Refusal> {
        let claimed = Claimed {
            named: named
                .map(|b| (seal_tuf::metadata::named_role(role).unwrap().to_owned(), b.to_vec()))
                .into_iter()
                .collect(),
            ..Claimed::default()
        };
        check(&scope(role), &claimed, content, last, now(), &PolicyConfig::default())
    }

    /// A TUF 1.0 `signed` of `role` (`timestamp` or `snapshot`) at `version`, listing `named` (its
    /// file name and bytes), in TUF 1.0 canonical form.
    fn tuf1_signed(role: &str, version: u64, named: (&str, &[u8]), named_version: u64) -> Vec<u8> {
        let meta = seal_tuf::tuf1::MetaFile::from_data(named_version, named.1).to_value();
        let v = Value::object([
            ("_type", Value::str(role)),
            ("spec_version", Value::str(seal_tuf::tuf1::metadata::SPEC_VERSION)),
            ("version", Value::Int(i128::from(version))),
            (
                "expires",
                Value::str(seal_tuf::tuf1::metadata::format_expires(now() + Duration::days(1))),
            ),
            ("meta", Value::object([(named.0, meta)])),
        ]);
        seal_tuf::tuf1::cjson::to_canonical(&v)
    }

    fn tuf1_file(role: &str, version: u64) -> Vec<u8> {
        let v = Value::object([(
            "signed",
            Value::object([
                ("_type", Value::str(role)),
                ("version", Value::Int(i128::from(version))),
            ]),
        )]);
        seal_tuf::tuf1::cjson::to_json(&v)
    }

    #[test]
    fn a_tuf1_repository_key_signs_tuf1_objects_only_and_bound_to_the_file_they_name() {
        let tuf1 = |role: &str| KeyScope {
            gun: seal_tuf::tuf1::collection("pypi"),
            role: role.into(),
        };
        let named = |role: &str, bytes: &[u8]| Claimed {
            named: [(role.to_owned(), bytes.to_vec())].into(),
            ..Claimed::default()
        };
        let cfg = PolicyConfig::default();
        let s3 = tuf1_file(SNAPSHOT, 3);
        let ts = tuf1_signed(TIMESTAMP, 4, ("snapshot.json", &s3), 3);
        let a = check(&tuf1(TIMESTAMP), &named(SNAPSHOT, &s3), &ts, None, now(), &cfg).unwrap();
        assert_eq!((a.high_water.version, a.high_water.named_version), (4, 3));
        let t2 = tuf1_file(TARGETS, 2);
        let sn = tuf1_signed(SNAPSHOT, 3, ("targets.json", &t2), 2);
        assert!(check(&tuf1(SNAPSHOT), &named(TARGETS, &t2), &sn, None, now(), &cfg).is_ok());
        // Not bound to the file it names, or to another one.
        let e = check(&tuf1(TIMESTAMP), &Claimed::default(), &ts, None, now(), &cfg).unwrap_err();
        assert_eq!(e.reason(), "unbound");
        let e = check(&tuf1(TIMESTAMP), &named(SNAPSHOT, &t2), &ts, None, now(), &cfg).unwrap_err();
        assert_eq!(e.reason(), "named_mismatch");
        // A field the service never writes rides along.
        let mut extra = Value::parse(&ts).unwrap();
        if let Value::Object(o) = &mut extra {
            o.insert("x".into(), Value::str("y"));
        }
        let extra = seal_tuf::tuf1::cjson::to_canonical(&extra);
        let e = check(&tuf1(TIMESTAMP), &named(SNAPSHOT, &s3), &extra, None, now(), &cfg).unwrap_err();
        assert_eq!(e.reason(), "not_exactly", "{e}");
        // Rollback of the version, as for Notary keys.
        let e = check(
            &tuf1(TIMESTAMP),
            &named(SNAPSHOT, &s3),
            &ts,
            Some(&HighWater {
                version: 9,
                ..a.high_water
            }),
            now(),
            &cfg,
        )
        .unwrap_err();
        assert_eq!(e.reason(), "not_newer");
        // Dialects do not cross: a Notary timestamp for a TUF 1.0 key, and the other way round.
        let notary = ts_over(5, &file("Snapshot", 7));
        let e = check(&tuf1(TIMESTAMP), &named(SNAPSHOT, &s3), &notary, None, now(), &cfg).unwrap_err();
        assert_eq!(e.reason(), "wrong_role", "{e}");
        let e = check(&scope(TIMESTAMP), &named(SNAPSHOT, &s3), &ts, None, now(), &cfg).unwrap_err();
        assert_eq!(e.reason(), "wrong_role", "{e}");
    }

    #[test]
    fn a_timestamp_is_signed_only_with_the_snapshot_it_names_and_never_an_older_one() {
        let (s6, s7) = (file("Snapshot", 6), file("Snapshot", 7));
        // Without the snapshot: refused (Notary's server as client needs notary_compat).
        let e = bound(TIMESTAMP, &ts_over(5, &s7), None, None).unwrap_err();
        assert_eq!(e.reason(), "unbound", "{e}");
        // With it: signed, and the snapshot's version is the new mark.
        let hw = bound(TIMESTAMP, &ts_over(5, &s7), Some(&s7), None).unwrap().high_water;
        assert_eq!((hw.version, hw.named_version), (5, 7));
        // Bytes other than the ones listed.
        let e = bound(TIMESTAMP, &ts_over(6, &s7), Some(&s6), Some(&hw)).unwrap_err();
        assert!(matches!(e, Refusal::NamedMismatch { named: SNAPSHOT, .. }), "{e}");
        // A fresh timestamp over an older snapshot: the rollback a
        // compromised node would need to keep clients on old targets.
        let e = bound(TIMESTAMP, &ts_over(6, &s6), Some(&s6), Some(&hw)).unwrap_err();
        assert_eq!(
            e,
            Refusal::NamedRollback {
                named: SNAPSHOT,
                high_water: 7,
                got: 6
            }
        );
        // A refresh over the same snapshot, and a newer one, are fine.
        let hw = bound(TIMESTAMP, &ts_over(6, &s7), Some(&s7), Some(&hw))
            .unwrap()
            .high_water;
        assert_eq!(hw.named_version, 7);
        let s8 = file("Snapshot", 8);
        assert_eq!(
            bound(TIMESTAMP, &ts_over(7, &s8), Some(&s8), Some(&hw))
                .unwrap()
                .high_water
                .named_version,
            8
        );
        // notary_compat signs without the snapshot and keeps the mark.
        let a = check(
            &scope(TIMESTAMP),
            &Claimed::default(),
            &ts_over(7, &s6),
            Some(&hw),
            now(),
            &compat(),
        )
        .unwrap();
        assert_eq!(a.high_water.named_version, 7);
    }

    #[test]
    fn a_server_managed_snapshot_is_bound_to_the_targets_it_names() {
        let snap_over = |version: u64, targets: &[u8]| {
            let mut meta = BTreeMap::new();
            meta.insert(ROOT.to_owned(), FileMeta::for_bytes(b"root"));
            meta.insert(TARGETS.to_owned(), FileMeta::for_bytes(targets));
            Snapshot {
                version,
                expires: now() + Duration::days(30),
                meta,
            }
            .to_value()
            .to_canonical()
        };
        let (t2, t3) = (file("Targets", 2), file("Targets", 3));
        let hw = bound(SNAPSHOT, &snap_over(4, &t3), Some(&t3), None).unwrap().high_water;
        assert_eq!(hw.named_version, 3);
        let e = bound(SNAPSHOT, &snap_over(5, &t2), Some(&t2), Some(&hw)).unwrap_err();
        assert_eq!(e.reason(), "named_rollback", "{e}");
        assert!(bound(SNAPSHOT, &snap_over(5, &t3), None, Some(&hw)).is_err());
    }

    fn run(role: &str, content: &[u8], last: Option<&HighWater>) -> Result<Approved, Refusal> {
        check(&scope(role), &Claimed::default(), content, last, now(), &compat())
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

    /// `v` (canonical JSON of an object) with `key` set to `value` at `path`.
    fn with_field(content: &[u8], path: &[&str], key: &str, value: Value) -> Vec<u8> {
        let mut v = Value::parse(content).unwrap();
        let mut at = &mut v;
        for p in path {
            let Value::Object(m) = at else { panic!("not an object") };
            at = m.get_mut(*p).unwrap();
        }
        let Value::Object(m) = at else { panic!("not an object") };
        m.insert(key.to_owned(), value);
        v.to_canonical()
    }

    /// Go's `encoding/json` key matching (`foldName`/`equalFold`), for the
    /// characters the attack uses: a key matches a field name case-
    /// insensitively with Unicode simple folding, so `ſ` (U+017F) reads as
    /// `s` and `K` (U+212A, the Kelvin sign) as `k`.
    fn go_reads_as(key: &str, field: &str) -> bool {
        let fold = |c: char| match c {
            '\u{17f}' => 's',
            '\u{212a}' => 'k',
            c => c.to_ascii_lowercase(),
        };
        key.chars().map(fold).eq(field.chars().map(fold))
    }

    #[test]
    fn a_field_a_go_client_would_read_as_a_known_one_is_refused() {
        // A compromised node asks for a 7-day timestamp that Go clients read
        // as expiring in 2125: Go's decoder takes the last matching key.
        let fresh = ts(7, Duration::days(7));
        for key in ["expire\u{17f}", "Expires", "EXPIRES"] {
            assert!(go_reads_as(key, "expires"), "{key}");
            let frozen = with_field(&fresh, &[], key, Value::str("2125-01-01T00:00:00Z"));
            let e = run(TIMESTAMP, &frozen, None).unwrap_err();
            assert_eq!(
                e,
                Refusal::NotExactly {
                    object: "Timestamp",
                    detail: format!("unknown field \"signed.{key}\""),
                },
                "{key}"
            );
        }
        // Unknown fields anywhere, meta entries included, and a version read
        // by Go from a folded key.
        let e = run(
            TIMESTAMP,
            &with_field(&fresh, &["meta", "snapshot"], "\u{212a}ind", Value::Int(1)),
            None,
        )
        .unwrap_err();
        assert!(
            matches!(&e, Refusal::NotExactly { detail, .. } if detail.contains("signed.meta.snapshot")),
            "{e:?}"
        );
        let e = run(
            TIMESTAMP,
            &with_field(&fresh, &[], "versio\u{17f}", Value::Int(1)),
            None,
        )
        .unwrap_err();
        assert!(matches!(e, Refusal::NotExactly { .. }), "{e:?}");
        let e = run(
            SNAPSHOT,
            &with_field(&snap(2, Duration::days(30)), &[], "custom", Value::Null),
            None,
        )
        .unwrap_err();
        assert!(matches!(e, Refusal::NotExactly { object: "Snapshot", .. }), "{e:?}");
        // The same timestamp without the extra key is signed.
        run(TIMESTAMP, &fresh, None).unwrap();
    }

    #[test]
    fn notarys_own_timestamps_and_snapshot_are_exactly_what_they_claim() {
        // What the real Notary server signs, as a Notary server using
        // seal-signer would send it.
        let Some(dir) = seal_testkit::notary_fixtures() else {
            return;
        };
        let state = dir.join("metadata/example.com_interop_app");
        for (role, path) in [
            (TIMESTAMP, "1-after-first-publish/timestamp.json"),
            (TIMESTAMP, "2-final/timestamp.json"),
            // Generated and signed by the Notary server itself.
            (SNAPSHOT, "2-final/snapshot.json"),
        ] {
            let file = seal_tuf::SignedFile::parse(role, std::fs::read(state.join(path)).unwrap()).unwrap();
            run(role, file.canonical_signed(), None).unwrap_or_else(|e| panic!("{path}: {e}"));
        }
    }

    #[test]
    fn one_signature_cannot_push_a_key_to_the_largest_version() {
        let jump = PolicyConfig::default().max_version_jump;
        let hw = run(TIMESTAMP, &ts(5, Duration::days(14)), None).unwrap().high_water;
        run(TIMESTAMP, &ts(5 + jump, Duration::days(1)), Some(&hw)).unwrap();
        let max = i64::MAX as u64 - 1;
        for (last, got) in [(Some(&hw), 6 + jump), (Some(&hw), max), (None, jump + 1)] {
            let e = run(TIMESTAMP, &ts(got, Duration::days(1)), last).unwrap_err();
            assert_eq!(
                e,
                Refusal::TooFar {
                    high_water: last.map_or(0, |h| h.version),
                    got,
                    max_jump: jump
                }
            );
        }
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
            ..compat()
        };
        let decide_with = |config: &PolicyConfig, content: &[u8], last: Option<&HighWater>| {
            decide(&scope(TIMESTAMP), &Claimed::default(), content, last, now(), config)
        };
        let hw = run(TIMESTAMP, &ts(5, Duration::days(14)), None).unwrap().high_water;
        // Enforced (the default): a rollback is an error.
        assert_eq!(
            decide_with(&compat(), &ts(4, Duration::days(1)), Some(&hw)),
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
            named: Default::default(),
        };
        let e = check(
            &scope(TIMESTAMP),
            &claimed,
            &ts(1, Duration::days(1)),
            None,
            now(),
            &compat(),
        );
        assert!(matches!(e, Err(Refusal::WrongGun { .. })), "{e:?}");
        let claimed = Claimed {
            gun: None,
            role: Some(SNAPSHOT.into()),
            named: Default::default(),
        };
        let e = check(
            &scope(TIMESTAMP),
            &claimed,
            &ts(1, Duration::days(1)),
            None,
            now(),
            &compat(),
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
