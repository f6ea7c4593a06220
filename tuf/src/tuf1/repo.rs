//! The repository side, pure: validating what a repository's owners upload
//! (a new root, the top-level or a delegated targets role) against the
//! current state, and generating the next snapshot and timestamp the
//! service signs. Functions of (current state, input, `now`).
//!
//! Uploads are held to what python-tuf clients accept, so nothing the
//! service publishes makes them fail: no two signatures under one key ID
//! (python-tuf refuses the whole file), sizes within python-tuf's default
//! download limits, thresholds that the listed usable keys can meet,
//! delegated role names that are safe as file names.

use std::collections::{BTreeMap, BTreeSet};

use time::OffsetDateTime;

use crate::cjson::Value;
use crate::tuf1::cjson::{to_canonical, to_json};
use crate::tuf1::error::Error;
use crate::tuf1::keys::{Key, Signature, SigningKey};
use crate::tuf1::metadata::{
    format_expires, Delegator, MetaFile, Metadata, RoleKeys, Root, Snapshot, Targets, Timestamp, ROOT, SNAPSHOT,
    SPEC_VERSION, TARGETS, TIMESTAMP,
};

/// Largest files accepted, by role (python-tuf's default download limits,
/// so that its clients can fetch everything the service accepts).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// `root.json`.
    pub root: usize,
    /// Any targets role.
    pub targets: usize,
    /// The largest `bit_length` of succinct hash bins (each bin is a
    /// snapshot entry).
    pub max_bit_length: u32,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            root: crate::tuf1::client::ROOT_MAX_LENGTH,
            targets: crate::tuf1::client::TARGETS_MAX_LENGTH,
            max_bit_length: 14,
        }
    }
}

/// A repository's current metadata as the service holds it.
#[derive(Debug, Clone)]
pub struct RepoState {
    /// The current root.
    pub root: Metadata<Root>,
    /// The current targets roles by name (`targets` and delegated roles).
    pub targets: BTreeMap<String, Metadata<Targets>>,
    /// The current snapshot, once one was made.
    pub snapshot: Option<Metadata<Snapshot>>,
    /// The current timestamp, once one was made.
    pub timestamp: Option<Metadata<Timestamp>>,
}

fn check_size(role: &str, bytes: &[u8], max: usize) -> Result<(), Error> {
    if bytes.len() > max {
        return Err(Error::TooLarge {
            role: role.to_owned(),
            len: bytes.len(),
            max,
        });
    }
    Ok(())
}

fn check_not_expired(role: &str, expires: OffsetDateTime, now: OffsetDateTime) -> Result<(), Error> {
    if expires <= now {
        return Err(Error::Expired {
            role: role.to_owned(),
            expires,
        });
    }
    Ok(())
}

fn check_signature_ids<T: crate::tuf1::metadata::Signed>(role: &str, md: &Metadata<T>) -> Result<(), Error> {
    let mut seen = BTreeSet::new();
    for s in md.signatures() {
        if !seen.insert(s.keyid.as_str()) {
            return Err(Error::format(
                role,
                "signatures",
                format!("two signatures under key ID {}", s.keyid),
            ));
        }
    }
    Ok(())
}

/// Every listed key usable, and each role's threshold reachable with the
/// distinct usable keys it lists.
fn check_role_keys(role: &str, field: &str, keys: &BTreeMap<String, Key>, r: &RoleKeys) -> Result<(), Error> {
    let mut distinct = BTreeSet::new();
    for id in &r.keyids {
        let key = keys
            .get(id)
            .ok_or_else(|| Error::format(role, &format!("{field}.keyids"), format!("key {id} is not in keys")))?;
        key.check_usable()?;
        if let Some(identity) = key.identity() {
            distinct.insert(identity);
        }
    }
    if (distinct.len() as u64) < r.threshold {
        return Err(Error::format(
            role,
            &format!("{field}.threshold"),
            format!(
                "threshold {} exceeds the {} distinct keys listed",
                r.threshold,
                distinct.len()
            ),
        ));
    }
    Ok(())
}

/// Whether `name` is acceptable as a delegated role's name: it becomes a
/// file name (`<name>.json`, `<version>.<name>.json`) and a URL segment.
pub fn is_safe_role_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '@' | '+' | '~'))
}

/// Validates an uploaded root: version N+1, signed by the thresholds of
/// both the current and the new root, not expired, `consistent_snapshot`
/// present, every role's keys usable and enough of them for its threshold.
pub fn validate_root(
    current: &Metadata<Root>,
    bytes: &[u8],
    now: OffsetDateTime,
    limits: &Limits,
) -> Result<Metadata<Root>, Error> {
    check_size(ROOT, bytes, limits.root)?;
    let new: Metadata<Root> = Metadata::from_bytes(ROOT, bytes)?;
    check_signature_ids(ROOT, &new)?;
    let expected = current.version().saturating_add(1);
    if new.version() != expected {
        return Err(Error::WrongVersion {
            role: ROOT.to_owned(),
            expected,
            got: new.version(),
        });
    }
    check_root_shape(&new)?;
    new.verify_by(ROOT, ROOT, current.signed())?;
    new.verify_by(ROOT, ROOT, new.signed())?;
    check_not_expired(ROOT, new.expires(), now)?;
    Ok(new)
}

/// Validates the first root of a new repository: version 1, signed by
/// the threshold of its own root role, not expired, `consistent_snapshot`
/// present, every role's keys usable and enough of them for its threshold.
pub fn validate_first_root(bytes: &[u8], now: OffsetDateTime, limits: &Limits) -> Result<Metadata<Root>, Error> {
    check_size(ROOT, bytes, limits.root)?;
    let new: Metadata<Root> = Metadata::from_bytes(ROOT, bytes)?;
    check_signature_ids(ROOT, &new)?;
    if new.version() != 1 {
        return Err(Error::WrongVersion {
            role: ROOT.to_owned(),
            expected: 1,
            got: new.version(),
        });
    }
    check_root_shape(&new)?;
    new.verify_by(ROOT, ROOT, new.signed())?;
    check_not_expired(ROOT, new.expires(), now)?;
    Ok(new)
}

/// What every uploaded root must hold besides its signatures: `consistent_snapshot` (tough
/// reads it as a required boolean), and usable keys enough for each role's threshold.
fn check_root_shape(new: &Metadata<Root>) -> Result<(), Error> {
    if new.signed().consistent_snapshot.is_none() {
        return Err(Error::format(
            ROOT,
            "signed.consistent_snapshot",
            "missing (tough requires it)",
        ));
    }
    for (name, r) in &new.signed().roles {
        check_role_keys(ROOT, &format!("signed.roles.{name}"), &new.signed().keys, r)?;
    }
    Ok(())
}

/// The roles that delegate `role` in `state` (root for `targets`).
fn delegators<'a>(state: &'a RepoState, role: &str) -> Vec<(&'a str, &'a dyn Delegator)> {
    if role == TARGETS {
        return vec![(ROOT, state.root.signed() as &dyn Delegator)];
    }
    state
        .targets
        .iter()
        .filter(|(name, t)| name.as_str() != role && t.signed().delegation(role).is_some())
        .map(|(name, t)| (name.as_str(), t.signed() as &dyn Delegator))
        .collect()
}

/// Validates an uploaded targets role (`targets` or a delegated role):
/// signed by the threshold of the keys every current delegator gives it,
/// a version above the current one, not expired, within the size limit,
/// and its own delegations sound (usable keys, reachable thresholds, safe
/// role names, bounded hash bins).
pub fn validate_targets(
    state: &RepoState,
    role: &str,
    bytes: &[u8],
    now: OffsetDateTime,
    limits: &Limits,
) -> Result<Metadata<Targets>, Error> {
    check_size(role, bytes, limits.targets)?;
    let new: Metadata<Targets> = Metadata::from_bytes(role, bytes)?;
    check_signature_ids(role, &new)?;
    let parents = delegators(state, role);
    if parents.is_empty() {
        return Err(Error::NotDelegated {
            role: role.to_owned(),
            delegator: TARGETS.to_owned(),
        });
    }
    for (name, parent) in &parents {
        new.verify_by(role, name, *parent)?;
    }
    let expected = state.targets.get(role).map_or(1, |t| t.version().saturating_add(1));
    if new.version() < expected {
        return Err(Error::WrongVersion {
            role: role.to_owned(),
            expected,
            got: new.version(),
        });
    }
    check_not_expired(role, new.expires(), now)?;
    if let Some(d) = &new.signed().delegations {
        match &d.roles {
            crate::tuf1::metadata::DelegatedRoles::Roles(roles) => {
                for r in roles {
                    if !is_safe_role_name(&r.name) {
                        return Err(Error::format(
                            role,
                            "signed.delegations.roles",
                            format!("unsafe role name {:?}", r.name),
                        ));
                    }
                    check_role_keys(role, &format!("signed.delegations.roles.{}", r.name), &d.keys, &r.keys)?;
                }
            }
            crate::tuf1::metadata::DelegatedRoles::Succinct(s) => {
                if s.bit_length > limits.max_bit_length {
                    return Err(Error::format(
                        role,
                        "signed.delegations.succinct_roles.bit_length",
                        format!("{} exceeds the limit of {}", s.bit_length, limits.max_bit_length),
                    ));
                }
                if !is_safe_role_name(&s.name_prefix) {
                    return Err(Error::format(
                        role,
                        "signed.delegations.succinct_roles.name_prefix",
                        format!("unsafe name prefix {:?}", s.name_prefix),
                    ));
                }
                check_role_keys(role, "signed.delegations.succinct_roles", &d.keys, &s.keys)?;
            }
        }
    }
    Ok(new)
}

/// Validates the files of one publish (role name → bytes) as a whole and
/// returns the state they lead to (snapshot and timestamp unchanged: make
/// them with [`next_snapshot`] and [`next_timestamp`]). `root` goes first,
/// then `targets`, then delegated roles with each role after the roles
/// that delegate it, so a role is checked against its delegator's new
/// version when both are uploaded. A role not uploaded must still verify
/// if the upload changed the keys or threshold its delegator gives it.
/// Uploading a snapshot or timestamp is refused: the service makes those.
pub fn validate_upload(
    state: &RepoState,
    files: &BTreeMap<String, Vec<u8>>,
    now: OffsetDateTime,
    limits: &Limits,
) -> Result<RepoState, Error> {
    let mut next = state.clone();
    let mut remaining: BTreeSet<&str> = files.keys().map(String::as_str).collect();
    for role in [SNAPSHOT, TIMESTAMP] {
        if remaining.contains(role) {
            return Err(Error::format(
                role,
                "",
                "the service makes this role; it cannot be uploaded",
            ));
        }
    }
    if let Some(bytes) = files.get(ROOT) {
        next.root = validate_root(&state.root, bytes, now, limits)?;
        remaining.remove(ROOT);
    }
    while !remaining.is_empty() {
        // A role is ready when something delegates it and none of its
        // delegators is still waiting to be validated.
        let ready: Vec<&str> = remaining
            .iter()
            .copied()
            .filter(|role| {
                *role == TARGETS
                    || (!remaining.contains(TARGETS) && {
                        let parents = delegators(&next, role);
                        !parents.is_empty() && parents.iter().all(|(p, _)| !remaining.contains(p))
                    })
            })
            .collect();
        let Some(first) = ready.first().copied() else {
            let role = remaining.iter().next().copied().unwrap_or_default();
            return Err(Error::NotDelegated {
                role: role.to_owned(),
                delegator: TARGETS.to_owned(),
            });
        };
        let bytes = files.get(first).map(Vec::as_slice).unwrap_or_default();
        let md = validate_targets(&next, first, bytes, now, limits)?;
        next.targets.insert(first.to_owned(), md);
        remaining.remove(first);
    }
    check_children_still_verify(state, &next, files)?;
    Ok(next)
}

/// The keys and threshold `delegator` gives `role`, comparable across
/// versions.
fn delegation_of<'a>(delegator: &'a dyn Delegator, role: &str) -> Option<(&'a RoleKeys, Vec<(&'a str, &'a Key)>)> {
    delegator.delegation(role).map(|(keys, r)| {
        let listed = r
            .keyids
            .iter()
            .filter_map(|id| keys.get(id).map(|k| (id.as_str(), k)))
            .collect();
        (r, listed)
    })
}

/// A role left as it is must still verify when the upload changed the
/// keys or threshold its delegator gives it: otherwise every client would
/// refuse it after this publish.
fn check_children_still_verify(
    before: &RepoState,
    after: &RepoState,
    files: &BTreeMap<String, Vec<u8>>,
) -> Result<(), Error> {
    let changed_delegators: Vec<(&str, &dyn Delegator, Option<&dyn Delegator>)> = files
        .keys()
        .filter_map(|name| {
            if name == ROOT {
                Some((
                    ROOT,
                    after.root.signed() as &dyn Delegator,
                    Some(before.root.signed() as &dyn Delegator),
                ))
            } else {
                after.targets.get(name).map(|t| {
                    (
                        name.as_str(),
                        t.signed() as &dyn Delegator,
                        before.targets.get(name).map(|b| b.signed() as &dyn Delegator),
                    )
                })
            }
        })
        .collect();
    for (child, md) in &after.targets {
        if files.contains_key(child) {
            continue;
        }
        for (name, new_parent, old_parent) in &changed_delegators {
            let Some(new) = delegation_of(*new_parent, child) else {
                continue;
            };
            let unchanged = old_parent
                .and_then(|p| delegation_of(p, child))
                .is_some_and(|old| old == new);
            if !unchanged {
                md.verify_by(child, name, *new_parent)?;
            }
        }
    }
    Ok(())
}

fn common(kind: &str, version: u64, expires: OffsetDateTime) -> BTreeMap<String, Value> {
    BTreeMap::from([
        ("_type".to_owned(), Value::str(kind)),
        ("spec_version".to_owned(), Value::str(SPEC_VERSION)),
        ("version".to_owned(), Value::Int(version.into())),
        ("expires".to_owned(), Value::str(format_expires(expires))),
    ])
}

/// The `signed` object of the next snapshot, to be signed (by
/// [`next_snapshot`] with local keys, or by a signer service and then
/// [`assemble`]): version one above the current, `meta` listing every
/// targets role of `targets` with version, length and sha256. Refuses to
/// drop an entry the current snapshot lists or lower its version (clients
/// would refuse that snapshot).
pub fn snapshot_to_sign(
    current: Option<&Metadata<Snapshot>>,
    targets: &BTreeMap<String, Metadata<Targets>>,
    expires: OffsetDateTime,
) -> Result<Value, Error> {
    if !targets.contains_key(TARGETS) {
        return Err(Error::MissingMeta {
            referrer: SNAPSHOT.to_owned(),
            file: "targets.json".to_owned(),
        });
    }
    let meta: BTreeMap<String, MetaFile> = targets
        .iter()
        .map(|(name, md)| (format!("{name}.json"), MetaFile::from_data(md.version(), md.bytes())))
        .collect();
    if let Some(cur) = current {
        for (file, old) in &cur.signed().meta {
            let new = meta.get(file).ok_or_else(|| Error::MissingMeta {
                referrer: SNAPSHOT.to_owned(),
                file: file.clone(),
            })?;
            if new.version < old.version {
                return Err(Error::Rollback {
                    role: file.clone(),
                    trusted: old.version,
                    got: new.version,
                });
            }
        }
    }
    let version = current.map_or(1, |c| c.version().saturating_add(1));
    let mut signed = common(SNAPSHOT, version, expires);
    signed.insert(
        "meta".into(),
        Value::Object(meta.iter().map(|(k, m)| (k.clone(), m.to_value())).collect()),
    );
    Ok(Value::Object(signed))
}

/// The `signed` object of the next timestamp, to be signed: version one
/// above the current, naming `snapshot` (its version, length and sha256),
/// which may not be older than the one the current timestamp names.
pub fn timestamp_to_sign(
    current: Option<&Metadata<Timestamp>>,
    snapshot: &Metadata<Snapshot>,
    expires: OffsetDateTime,
) -> Result<Value, Error> {
    if let Some(cur) = current {
        let trusted = cur.signed().snapshot_meta.version;
        if snapshot.version() < trusted {
            return Err(Error::Rollback {
                role: SNAPSHOT.to_owned(),
                trusted,
                got: snapshot.version(),
            });
        }
    }
    let version = current.map_or(1, |c| c.version().saturating_add(1));
    let mut signed = common(TIMESTAMP, version, expires);
    signed.insert(
        "meta".into(),
        Value::object([(
            "snapshot.json",
            MetaFile::from_data(snapshot.version(), snapshot.bytes()).to_value(),
        )]),
    );
    Ok(Value::Object(signed))
}

/// The file of top-level role `role` (`snapshot` or `timestamp`) from its
/// `signed` object and signatures made elsewhere (a signer service),
/// refused unless the signatures meet root's threshold for the role.
pub fn assemble(root: &Metadata<Root>, role: &str, signed: &Value, signatures: &[Signature]) -> Result<Vec<u8>, Error> {
    let bytes = to_json(&Value::object([
        (
            "signatures",
            Value::Array(signatures.iter().map(Signature::to_value).collect()),
        ),
        ("signed", signed.clone()),
    ]));
    let check = |r: Result<usize, Error>| {
        r.map(|_| ())
            .map_err(|e| Error::Signing(format!("{role} signatures do not meet root's threshold: {e}")))
    };
    match role {
        SNAPSHOT => check(Metadata::<Snapshot>::from_bytes(role, &bytes)?.verify_by(role, ROOT, root.signed()))?,
        TIMESTAMP => check(Metadata::<Timestamp>::from_bytes(role, &bytes)?.verify_by(role, ROOT, root.signed()))?,
        _ => return Err(Error::Order("assemble makes snapshot and timestamp files only")),
    }
    Ok(bytes)
}

fn sign_with(signed: &Value, keys: &[&SigningKey]) -> Vec<Signature> {
    let canonical = to_canonical(signed);
    keys.iter().map(|k| k.sign(&canonical)).collect()
}

/// The next snapshot ([`snapshot_to_sign`]) signed with local `keys`,
/// which must meet root's snapshot threshold.
pub fn next_snapshot(
    root: &Metadata<Root>,
    current: Option<&Metadata<Snapshot>>,
    targets: &BTreeMap<String, Metadata<Targets>>,
    expires: OffsetDateTime,
    keys: &[&SigningKey],
) -> Result<Vec<u8>, Error> {
    let signed = snapshot_to_sign(current, targets, expires)?;
    assemble(root, SNAPSHOT, &signed, &sign_with(&signed, keys))
}

/// The next timestamp ([`timestamp_to_sign`]) signed with local `keys`,
/// which must meet root's timestamp threshold.
pub fn next_timestamp(
    root: &Metadata<Root>,
    current: Option<&Metadata<Timestamp>>,
    snapshot: &Metadata<Snapshot>,
    expires: OffsetDateTime,
    keys: &[&SigningKey],
) -> Result<Vec<u8>, Error> {
    let signed = timestamp_to_sign(current, snapshot, expires)?;
    assemble(root, TIMESTAMP, &signed, &sign_with(&signed, keys))
}
