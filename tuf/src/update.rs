//! The server's validation of an update (`POST /v2/<gun>/_trust/tuf/`) as
//! one pure function of the stored state, the uploaded files, `now` and the
//! keys the server holds. It follows Notary's rules (shared fixtures,
//! `VALIDATION.md`) and closes their gaps: delegated paths are enforced,
//! versions cannot reach the integer maximum, the verification algorithm
//! comes from the trusted key.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use sha2::{Digest, Sha256};

use time::OffsetDateTime;

use crate::cjson::{Json, JsonView};
use crate::error::{Error, UpdateError, UpdateErrorKind};
use crate::keys::{KeyId, PublicKey};
use crate::metadata::{
    is_targets_role, is_valid_role, parent_role, DelegatedRole, Root, SignedFile, Snapshot, Targets, Timestamp, ROOT,
    SNAPSHOT, TARGETS, TIMESTAMP,
};
use crate::verify::{check_expiry, check_signature_list, listed_keys, verify_threshold};

/// The public keys the server (its signer) holds for one GUN.
#[derive(Debug, Clone, Default)]
pub struct ServerKeys {
    /// Timestamp keys.
    pub timestamp: Vec<PublicKey>,
    /// Snapshot keys (server-managed snapshot).
    pub snapshot: Vec<PublicKey>,
}

/// What the server must do to complete an accepted update.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SnapshotPlan {
    /// The client uploaded a valid snapshot.
    Uploaded,
    /// The server generates the next snapshot and signs it with these keys.
    Generate {
        /// Server-held keys the root lists for the snapshot role.
        key_ids: Vec<KeyId>,
    },
}

/// An accepted update.
#[derive(Debug, Clone)]
pub struct UpdatePlan {
    /// The uploaded files that were accepted (an uploaded timestamp is
    /// ignored, as Notary does), shallowest role first. Empty when the
    /// update carried no role file but a timestamp, or nothing at all: see
    /// [`UpdatePlan::changes_nothing`].
    pub files: Vec<SignedFile>,
    /// The version of each accepted file, by role.
    pub versions: BTreeMap<String, u64>,
    /// How the snapshot is produced.
    pub snapshot: SnapshotPlan,
    /// Server-held keys the root lists for the timestamp role.
    pub timestamp_key_ids: Vec<KeyId>,
    /// The stored version of every role the validation relied on (None:
    /// absent). Applying the update must re-check them (compare-and-set).
    pub expected: Vec<(String, Option<u64>)>,
    /// The root that is current once the update is stored (the uploaded
    /// one, else the stored one), parsed: for [`validate_update_cached`]'s
    /// next call on this collection.
    pub root: Arc<ParsedRoot>,
}

/// A collection's root parsed once, with the digests a snapshot lists for
/// it. [`validate_update_cached`] reuses it while the stored root is these
/// exact bytes, so a later publish neither parses nor hashes the root again;
/// a cached root whose bytes differ from the stored ones is ignored, so a
/// stale cache cannot change a verdict.
#[derive(Debug)]
pub struct ParsedRoot {
    bytes: Vec<u8>,
    root: Root,
    sha256: [u8; 32],
    sha512: [u8; 64],
}

impl ParsedRoot {
    /// Parses a root file's structure (not its signatures: a stored root was
    /// verified when it was stored).
    pub fn parse(bytes: Vec<u8>) -> Result<ParsedRoot, Error> {
        ParsedRoot::parse_knowing(bytes, &[])
    }

    /// [`ParsedRoot::parse`]; a listed key equal to one of `known` is not decoded again.
    fn parse_knowing(bytes: Vec<u8>, known: &[&PublicKey]) -> Result<ParsedRoot, Error> {
        let root = SignedFile::read_signed(ROOT, &bytes, |signed| Root::from_view(signed, known))??;
        Ok(ParsedRoot::new(bytes, root))
    }

    fn new(bytes: Vec<u8>, root: Root) -> ParsedRoot {
        ParsedRoot {
            sha256: Sha256::digest(&bytes).into(),
            sha512: crate::metadata::sha512(&bytes),
            bytes,
            root,
        }
    }

    /// The root file's bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The parsed root.
    pub fn root(&self) -> &Root {
        &self.root
    }

    /// Checks `meta` (a snapshot's entry for the root) against the cached digests.
    fn check_meta(&self, meta: &crate::metadata::FileMeta) -> Result<(), Error> {
        meta.check_digests(ROOT, self.bytes.len(), |alg| match alg {
            "sha256" => Some(self.sha256.to_vec()),
            "sha512" => Some(self.sha512.to_vec()),
            _ => None,
        })
    }
}

/// How far above a role's current version (0 for a new role) one upload,
/// or one signature by the signer, may take it by default.
pub const DEFAULT_MAX_VERSION_JUMP: u64 = 1_000_000;

/// Bounds on what one upload may hold, beyond the upload's byte sizes.
/// The defaults are far above what real collections hold (docs/node-http.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpdateLimits {
    /// Keys in a root's `keys` or a targets role's `delegations.keys`.
    pub max_keys: usize,
    /// Roles in a targets role's `delegations.roles`.
    pub max_delegations: usize,
    /// Entries in a targets role's `targets`.
    pub max_targets: usize,
    /// How far above the current version (0 for a new role) a version may
    /// go in one upload, so that no key holder can push a role to the
    /// largest version and lock it.
    pub max_version_jump: u64,
}

impl Default for UpdateLimits {
    fn default() -> Self {
        UpdateLimits {
            max_keys: 1_000,
            max_delegations: 1_000,
            max_targets: 100_000,
            max_version_jump: DEFAULT_MAX_VERSION_JUMP,
        }
    }
}

/// The stored files of one GUN: the current file of each role.
pub type StoredFiles = BTreeMap<String, Vec<u8>>;

/// Whether a root certificate's CN names `gun`, by Notary's
/// `MatchCNToGun`: a CN ending in `*` is a prefix of the GUN once every
/// trailing `*` is trimmed (`docker/*` covers `docker/app`; `*` covers
/// every GUN), any other CN must equal the GUN.
pub fn cn_matches(cn: &str, gun: &str) -> bool {
    if cn.ends_with('*') {
        gun.starts_with(cn.trim_end_matches('*'))
    } else {
        cn == gun
    }
}

/// The root-role keys of `root` that count for `gun`: x509 leaf
/// certificates whose CN names the GUN, not SHA-1 signed, RSA keys of at
/// least 2048 bits and, when `now` is given, valid at `now`.
pub fn valid_root_keys<'a>(root: &'a Root, gun: &str, now: Option<OffsetDateTime>) -> Vec<&'a PublicKey> {
    root.role_key_list(ROOT)
        .into_iter()
        .filter(|k| root_key_problem(k, gun, now).is_none())
        .collect()
}

/// Why `key` does not count as a root key for `gun`, if it does not.
pub fn root_key_problem(key: &PublicKey, gun: &str, now: Option<OffsetDateTime>) -> Option<String> {
    let Some(cert) = key.cert() else {
        return Some("root keys must be x509 certificates".into());
    };
    match &cert.common_name {
        Some(cn) if cn_matches(cn, gun) => {}
        Some(cn) => return Some(format!("certificate CN {cn:?} does not match {gun:?}")),
        None => return Some("certificate has no CN".into()),
    }
    // Notary's ValidateCertificate, in its order.
    if cert.not_before > cert.not_after {
        return Some("certificate validity window is invalid".into());
    }
    if cert.sha1_signed {
        return Some("certificate is signed with SHA-1".into());
    }
    if cert.rsa_bits.is_some_and(|b| b < crate::keys::MIN_RSA_BITS) {
        return Some("certificate's RSA key is shorter than 2048 bits".into());
    }
    if let Some(now) = now {
        // A day's leeway for a certificate made on a clock ahead of ours;
        // valid up to and including its notAfter instant.
        if now + time::Duration::days(1) < cert.not_before {
            return Some("certificate is not valid yet".into());
        }
        if now > cert.not_after {
            return Some("certificate has expired".into());
        }
    }
    None
}

/// Verifies that `file` (a root) is signed by a threshold of its own valid
/// root certificates for `gun` at `now`.
pub fn verify_root_self(gun: &str, root: &Root, file: &SignedFile, now: OffsetDateTime) -> Result<(), Error> {
    let keys = valid_root_keys(root, gun, Some(now));
    let threshold = root.role(ROOT).map_or(1, |r| r.threshold);
    if keys.is_empty() {
        let reason = root
            .role_key_list(ROOT)
            .first()
            .and_then(|k| root_key_problem(k, gun, Some(now)))
            .unwrap_or_else(|| "no valid root certificates".into());
        return Err(Error::BadCertificate {
            role: ROOT.into(),
            keyid: root
                .role(ROOT)
                .and_then(|r| r.keyids.first().cloned())
                .unwrap_or_default(),
            reason,
        });
    }
    verify_threshold(file, &keys, threshold).map(|_| ())
}

/// Verifies that `file` (a new root) is signed by a threshold of the
/// previous root's root certificates. Their expiry is not checked, so a
/// collection can rotate away from an expired root certificate.
pub fn verify_root_by_previous(gun: &str, prev: &Root, file: &SignedFile) -> Result<(), Error> {
    let keys = valid_root_keys(prev, gun, None);
    let threshold = prev.role(ROOT).map_or(1, |r| r.threshold);
    verify_threshold(file, &keys, threshold).map(|_| ())
}

/// Checks that every target of delegated role `role` lies within the paths
/// delegated to it and to every ancestor between it and `targets`.
pub fn check_delegated_paths(role: &str, targets: &Targets, chain: &[&DelegatedRole]) -> Result<(), Error> {
    for name in targets.targets.keys() {
        if let Some(_d) = chain.iter().find(|d| !d.covers(name)) {
            return Err(Error::PathNotDelegated {
                role: role.to_owned(),
                target: name.clone(),
            });
        }
    }
    Ok(())
}

/// Stored versions, each file parsed at most once per validation.
struct VersionCache<'a> {
    stored: &'a StoredFiles,
    seen: BTreeMap<String, Option<u64>>,
}

impl VersionCache<'_> {
    fn get(&mut self, role: &str) -> Result<Option<u64>, UpdateError> {
        if let Some(v) = self.seen.get(role) {
            return Ok(*v);
        }
        let v = stored_version(self.stored, role)?;
        self.seen.insert(role.to_owned(), v);
        Ok(v)
    }
}

/// The `signed.version` of a stored file. Stored files were validated when they were stored, so
/// this reads the one field without building the file's value tree or its canonical form (a
/// later publish looks up the versions of every role it relies on).
fn stored_version(stored: &StoredFiles, role: &str) -> Result<Option<u64>, UpdateError> {
    #[derive(serde::Deserialize)]
    struct Envelope {
        signed: Versioned,
    }
    #[derive(serde::Deserialize)]
    struct Versioned {
        version: u64,
    }
    let Some(bytes) = stored.get(role) else {
        return Ok(None);
    };
    let envelope: Envelope = serde_json::from_slice(bytes).map_err(|e| {
        UpdateError::invalid(
            UpdateErrorKind::Validation,
            Some(role),
            format!("stored metadata has no readable version: {e}"),
        )
    })?;
    Ok(Some(envelope.signed.version))
}

fn parse_stored(stored: &StoredFiles, role: &str) -> Result<Option<SignedFile>, UpdateError> {
    stored
        .get(role)
        .map(|b| {
            SignedFile::parse(role, b.clone()).map_err(|e| UpdateError::from_error(UpdateErrorKind::Validation, &e))
        })
        .transpose()
}

fn depth(role: &str) -> usize {
    role.matches('/').count()
}

/// Validates an update to `gun` against the stored files, at `now`, given
/// the keys the server holds, within the default [`UpdateLimits`]. On
/// success the plan says what to store, what to generate and which stored
/// versions it relied on.
pub fn validate_update(
    gun: &str,
    stored: &StoredFiles,
    uploaded: Vec<(String, Vec<u8>)>,
    now: OffsetDateTime,
    server_keys: &ServerKeys,
) -> Result<UpdatePlan, UpdateError> {
    validate_update_with(gun, stored, uploaded, now, server_keys, &UpdateLimits::default())
}

fn check_count(role: &str, what: &'static str, count: usize, max: usize) -> Result<(), Error> {
    if count > max {
        return Err(Error::TooMany {
            role: role.to_owned(),
            what,
            count,
            max,
        });
    }
    Ok(())
}

/// [`validate_update`] within `limits`.
pub fn validate_update_with(
    gun: &str,
    stored: &StoredFiles,
    uploaded: Vec<(String, Vec<u8>)>,
    now: OffsetDateTime,
    server_keys: &ServerKeys,
    limits: &UpdateLimits,
) -> Result<UpdatePlan, UpdateError> {
    validate_update_cached(gun, stored, uploaded, now, server_keys, limits, None)
}

/// [`validate_update_with`], given the collection's root as an earlier
/// validation parsed it ([`UpdatePlan::root`]). It is used only if its bytes
/// are the stored root's; otherwise the stored root is parsed as usual.
pub fn validate_update_cached(
    gun: &str,
    stored: &StoredFiles,
    uploaded: Vec<(String, Vec<u8>)>,
    now: OffsetDateTime,
    server_keys: &ServerKeys,
    limits: &UpdateLimits,
    cached_root: Option<Arc<ParsedRoot>>,
) -> Result<UpdatePlan, UpdateError> {
    use UpdateErrorKind::*;

    // 1. Role names and JSON. Each file is parsed once: its role's structure is read from
    // the parse, but a structure error is reported at the step that checks it below.
    let known: Vec<&PublicKey> = server_keys.timestamp.iter().chain(&server_keys.snapshot).collect();
    let mut files: BTreeMap<String, SignedFile> = BTreeMap::new();
    let mut reads: BTreeMap<String, Read> = BTreeMap::new();
    for (role, bytes) in uploaded {
        if !is_valid_role(&role) {
            return Err(UpdateError::InvalidRole(role));
        }
        if role == TIMESTAMP {
            continue; // always generated by the server
        }
        let (file, read) =
            SignedFile::parse_with(&role, bytes, |signed| Read::new(&role, signed, &known)).map_err(|e| {
                UpdateError::MalformedJson {
                    role: role.clone(),
                    reason: e.to_string(),
                }
            })?;
        if files.insert(role.clone(), file).is_some() {
            return Err(UpdateError::invalid(
                Validation,
                Some(&role),
                format!("{role} uploaded twice"),
            ));
        }
        reads.insert(role, read);
    }

    // 2. The stored root, loaded without checking its expiry.
    let stored_root: Option<Arc<ParsedRoot>> = match stored.get(ROOT) {
        None => None,
        Some(bytes) => match cached_root {
            Some(cached) if cached.bytes() == bytes.as_slice() => Some(cached),
            _ => Some(Arc::new(
                ParsedRoot::parse_knowing(bytes.clone(), &known)
                    .map_err(|e| UpdateError::from_error(Validation, &e))?,
            )),
        },
    };

    // 3. An uploaded root.
    let uploaded_root = match files.get(ROOT) {
        Some(file) => {
            let new_root = match reads.get_mut(ROOT).map(Read::take) {
                Some(Typed::Root(r)) => r,
                _ => Root::from_signed(file.signed()),
            }
            .map_err(|e| UpdateError::from_error(BadRoot, &e))?;
            check_count(ROOT, "keys", new_root.keys.len(), limits.max_keys)
                .map_err(|e| UpdateError::from_error(BadRoot, &e))?;
            let root_keys = |r: &Root| r.role(ROOT).map_or(0, |k| k.keyids.len());
            let could_count = root_keys(&new_root) + stored_root.as_ref().map_or(0, |r| root_keys(r.root()));
            check_signature_list(file, could_count).map_err(|e| UpdateError::from_error(BadRoot, &e))?;
            if let Some(prev) = stored_root.as_ref().map(|r| r.root()) {
                if new_root.version != prev.version && Some(new_root.version) != prev.version.checked_add(1) {
                    return Err(UpdateError::invalid(
                        BadRoot,
                        Some(ROOT),
                        format!(
                            "root version {} must be the current version {} or the next",
                            new_root.version, prev.version
                        ),
                    ));
                }
                verify_root_by_previous(gun, prev, file).map_err(|e| UpdateError::from_error(BadRoot, &e))?;
            } else if new_root.version > 2 {
                // Notary measures a first root against version 1, as if one
                // were loaded: the first root is version 1 or 2.
                return Err(UpdateError::invalid(
                    BadRoot,
                    Some(ROOT),
                    format!("the first root's version must be 1 or 2, not {}", new_root.version),
                ));
            }
            verify_root_self(gun, &new_root, file, now).map_err(|e| UpdateError::from_error(BadRoot, &e))?;
            check_expiry(ROOT, new_root.expires, now).map_err(|e| UpdateError::from_error(BadRoot, &e))?;
            Some(Arc::new(ParsedRoot::new(file.bytes().to_vec(), new_root)))
        }
        None => None,
    };
    let current_root = uploaded_root.clone().or_else(|| stored_root.clone()).ok_or_else(|| {
        UpdateError::invalid(Validation, None, "no pre-existing root and no root provided in update.")
    })?;
    let root = current_root.root();

    // 4. Targets and delegations, shallowest first, each against its parent.
    let mut targets_roles: Vec<&String> = files.keys().filter(|r| is_targets_role(r)).collect();
    targets_roles.sort_by_key(|r| (depth(r), (*r).clone()));
    let mut loaded: BTreeMap<String, Targets> = BTreeMap::new();
    let mut loaded_parents: BTreeMap<String, SignedFile> = BTreeMap::new();
    let mut chains: BTreeMap<String, Vec<DelegatedRole>> = BTreeMap::new();
    for role in targets_roles {
        let file = &files[role];
        let bad = |e: &Error| UpdateError::from_error(BadTargets, e);
        let (keys, role_keys, chain) = if role == TARGETS {
            let rk = root
                .role(TARGETS)
                .cloned()
                .ok_or_else(|| UpdateError::invalid(BadTargets, Some(role), "root lists no targets role"))?;
            (&root.keys, rk, Vec::new())
        } else {
            let parent = parent_role(role).unwrap_or(TARGETS).to_owned();
            if !loaded.contains_key(&parent) {
                let Some(pfile) = parse_stored(stored, &parent)? else {
                    return Err(UpdateError::invalid(
                        BadTargets,
                        Some(role),
                        format!("{role}: parent role {parent} does not exist"),
                    ));
                };
                let parsed = Targets::from_signed(&parent, pfile.signed()).map_err(|e| bad(&e))?;
                loaded.insert(parent.clone(), parsed);
                loaded_parents.insert(parent.clone(), pfile);
                if parent != TARGETS {
                    // The stored parent's own path restrictions are not
                    // known here without its ancestors: load the chain.
                    let mut chain = Vec::new();
                    let mut child = parent.clone();
                    while let Some(p) = parent_role(&child).map(str::to_owned) {
                        let pf = match loaded.get(&p) {
                            Some(t) => t.clone(),
                            None => {
                                let f = parse_stored(stored, &p)?.ok_or_else(|| {
                                    UpdateError::invalid(
                                        BadTargets,
                                        Some(role),
                                        format!("{role}: ancestor {p} does not exist"),
                                    )
                                })?;
                                Targets::from_signed(&p, f.signed()).map_err(|e| bad(&e))?
                            }
                        };
                        let d = pf.delegation(&child).cloned().ok_or_else(|| {
                            UpdateError::invalid(BadTargets, Some(role), format!("{child} is not delegated by {p}"))
                        })?;
                        chain.push(d);
                        child = p;
                    }
                    chains.insert(parent.clone(), chain);
                }
            }
            let ptargets = &loaded[&parent];
            let d = ptargets.delegation(role).cloned().ok_or_else(|| {
                UpdateError::invalid(BadTargets, Some(role), format!("{role} is not delegated by {parent}"))
            })?;
            let mut chain = chains.get(&parent).cloned().unwrap_or_default();
            chain.push(d.clone());
            let rk = crate::metadata::RoleKeys {
                keyids: d.keyids.clone(),
                threshold: d.threshold,
            };
            (&ptargets.delegations.keys, rk, chain)
        };
        let (targets, listed) = match reads.get_mut(role.as_str()).map(Read::take) {
            Some(Typed::Targets(t)) => t,
            _ => Targets::from_signed(role, file.signed()).map(|t| {
                let listed = t.targets.len();
                (t, listed)
            }),
        }
        .map_err(|e| bad(&e))?;
        check_count(role, "keys", targets.delegations.keys.len(), limits.max_keys).map_err(|e| bad(&e))?;
        check_count(
            role,
            "delegations",
            targets.delegations.roles.len(),
            limits.max_delegations,
        )
        .map_err(|e| bad(&e))?;
        check_count(role, "targets", listed, limits.max_targets).map_err(|e| bad(&e))?;
        check_signature_list(file, role_keys.keyids.len()).map_err(|e| bad(&e))?;
        verify_threshold(file, &listed_keys(keys, &role_keys), role_keys.threshold).map_err(|e| bad(&e))?;
        check_expiry(role, targets.expires, now).map_err(|e| bad(&e))?;
        // The top-level role's chain is empty: its targets (not kept) need no path check.
        debug_assert!(role != TARGETS || chain.is_empty());
        let chain_refs: Vec<&DelegatedRole> = chain.iter().collect();
        check_delegated_paths(role, &targets, &chain_refs).map_err(|e| bad(&e))?;
        chains.insert(role.clone(), chain);
        loaded.insert(role.clone(), targets);
    }

    // 5 and 6. The snapshot: uploaded and checked, or generated by the server.
    let snapshot_plan = match files.get(SNAPSHOT) {
        Some(file) => {
            let bad = |e: &Error| UpdateError::from_error(BadSnapshot, e);
            let snap = match reads.get_mut(SNAPSHOT).map(Read::take) {
                Some(Typed::Snapshot(s)) => s,
                _ => Snapshot::from_signed(file.signed()),
            }
            .map_err(|e| bad(&e))?;
            let rk = root
                .role(SNAPSHOT)
                .ok_or_else(|| UpdateError::invalid(BadSnapshot, Some(SNAPSHOT), "root lists no snapshot role"))?;
            check_signature_list(file, rk.keyids.len()).map_err(|e| bad(&e))?;
            verify_threshold(file, &listed_keys(&root.keys, rk), rk.threshold).map_err(|e| bad(&e))?;
            check_expiry(SNAPSHOT, snap.expires, now).map_err(|e| bad(&e))?;
            if let Some(parsed) = uploaded_root.as_ref().or(stored_root.as_ref()) {
                let meta = snap
                    .meta
                    .get(ROOT)
                    .ok_or_else(|| UpdateError::invalid(BadSnapshot, Some(SNAPSHOT), "snapshot does not list root"))?;
                parsed.check_meta(meta).map_err(|e| {
                    UpdateError::invalid(BadSnapshot, Some(SNAPSHOT), format!("snapshot entry for {e}"))
                })?;
            }
            let involved = files
                .values()
                .filter(|f| is_targets_role(f.role()))
                .chain(loaded_parents.values());
            for f in involved {
                let meta = snap.meta.get(f.role()).ok_or_else(|| {
                    UpdateError::invalid(
                        BadSnapshot,
                        Some(SNAPSHOT),
                        format!("snapshot does not list {}", f.role()),
                    )
                })?;
                meta.check(f.role(), f.bytes()).map_err(|e| {
                    UpdateError::invalid(BadSnapshot, Some(SNAPSHOT), format!("snapshot entry for {e}"))
                })?;
            }
            SnapshotPlan::Uploaded
        }
        None => {
            let key_ids = server_held(root, SNAPSHOT, &server_keys.snapshot);
            if key_ids.is_empty() {
                return Err(UpdateError::invalid(
                    BadHierarchy,
                    Some(SNAPSHOT),
                    "no snapshot was included in update and server does not hold current snapshot key for repository",
                ));
            }
            SnapshotPlan::Generate { key_ids }
        }
    };

    // 7. The timestamp is the server's.
    let timestamp_key_ids = server_held(root, TIMESTAMP, &server_keys.timestamp);
    if timestamp_key_ids.is_empty() {
        return Err(UpdateError::invalid(
            BadRoot,
            Some(TIMESTAMP),
            "root does not list enough timestamp keys held by the server",
        ));
    }

    // 8. Every role's version above the stored one.
    let mut cache = VersionCache {
        stored,
        seen: BTreeMap::new(),
    };
    if let Some(r) = &stored_root {
        cache.seen.insert(ROOT.to_owned(), Some(r.root().version));
    }
    let mut versions = BTreeMap::new();
    for (role, file) in &files {
        let version = match reads.get(role) {
            Some(read) => read.version,
            None => signed_version(file.signed()),
        }
        .ok_or_else(|| UpdateError::invalid(UpdateErrorKind::Validation, Some(role), "no version"))?;
        let current = cache.get(role)?;
        if let Some(current) = current {
            if version <= current {
                return Err(UpdateError::OldVersion {
                    role: role.clone(),
                    version,
                    current,
                });
            }
        }
        let current = current.unwrap_or(0);
        if version - current > limits.max_version_jump {
            let e = Error::VersionJump {
                role: role.clone(),
                version,
                current,
                max_jump: limits.max_version_jump,
            };
            return Err(UpdateError::from_error(Validation, &e));
        }
        versions.insert(role.clone(), version);
    }

    let mut relied: BTreeSet<String> = files.keys().cloned().collect();
    relied.extend([ROOT.to_owned(), SNAPSHOT.to_owned(), TIMESTAMP.to_owned()]);
    relied.extend(loaded_parents.keys().cloned());
    for chain in chains.values() {
        for d in chain {
            if let Some(p) = parent_role(&d.name) {
                relied.insert(p.to_owned());
            }
        }
    }
    let expected = relied
        .into_iter()
        .map(|r| Ok((r.clone(), cache.get(&r)?)))
        .collect::<Result<Vec<_>, UpdateError>>()?;

    let mut ordered: Vec<SignedFile> = files.into_values().collect();
    ordered.sort_by_key(|f| (role_order(f.role()), depth(f.role()), f.role().to_owned()));
    Ok(UpdatePlan {
        files: ordered,
        versions,
        snapshot: snapshot_plan,
        timestamp_key_ids,
        expected,
        root: current_root,
    })
}

fn role_order(role: &str) -> u8 {
    match role {
        ROOT => 0,
        SNAPSHOT => 2,
        _ => 1,
    }
}

/// What validation reads of an uploaded file's `signed` object while the file is parsed.
struct Read {
    /// Its role's structure, until a step takes it.
    typed: Typed,
    /// `signed.version`, when it is a non-negative integer.
    version: Option<u64>,
}

enum Typed {
    Root(Result<Root, Error>),
    /// With the number of targets it lists: the top-level role's are checked but not kept
    /// ([`Targets::from_view_unlisted`]), since no delegation restricts them and nothing
    /// after validation reads them.
    Targets(Result<(Targets, usize), Error>),
    Snapshot(Result<Snapshot, Error>),
    None,
}

impl Read {
    /// Reads `signed` as `role`'s structure; a root's keys equal to `known` ones are not
    /// decoded again.
    fn new(role: &str, signed: &Json<'_>, known: &[&PublicKey]) -> Read {
        let typed = match role {
            ROOT => Typed::Root(Root::from_view(signed, known)),
            SNAPSHOT => Typed::Snapshot(Snapshot::from_view(signed)),
            TARGETS => Typed::Targets(Targets::from_view_unlisted(TARGETS, signed)),
            r if is_targets_role(r) => Typed::Targets(Targets::from_view(r, signed).map(|t| {
                let listed = t.targets.len();
                (t, listed)
            })),
            _ => Typed::None,
        };
        let version = signed
            .get("version")
            .and_then(JsonView::as_int)
            .and_then(|v| u64::try_from(v).ok());
        Read { typed, version }
    }

    fn take(&mut self) -> Typed {
        std::mem::replace(&mut self.typed, Typed::None)
    }
}

/// `signed.version`, when it is a non-negative integer.
fn signed_version(signed: &crate::cjson::Value) -> Option<u64> {
    signed
        .get("version")
        .and_then(crate::cjson::Value::as_int)
        .and_then(|v| u64::try_from(v).ok())
}

/// The IDs of server-held keys the root lists for `role`, provided they
/// reach the role's threshold; empty otherwise.
pub fn server_held(root: &Root, role: &str, held: &[PublicKey]) -> Vec<KeyId> {
    let Some(rk) = root.role(role) else {
        return Vec::new();
    };
    let ids: Vec<KeyId> = rk
        .keyids
        .iter()
        .filter(|id| held.iter().any(|k| k.id() == id.as_str()))
        .cloned()
        .collect();
    if ids.len() < rk.threshold as usize {
        return Vec::new();
    }
    ids
}

impl UpdatePlan {
    /// Whether the update carries nothing to store: no role file, or only a
    /// timestamp (which the server always makes itself). The Notary client
    /// sends such updates (an empty changelist once the server holds the
    /// snapshot key). They are accepted as Notary accepts them, after the
    /// same checks of the stored root and the server's keys, and nothing is
    /// stored or signed for them: the metadata served stays byte for byte
    /// what it was.
    pub fn changes_nothing(&self) -> bool {
        self.files.is_empty()
    }

    /// The next snapshot the server must sign, when it generates one:
    /// the stored snapshot updated with the accepted files (for a first
    /// snapshot, every stored role as well).
    pub fn next_snapshot(
        &self,
        stored: &StoredFiles,
        now: OffsetDateTime,
        lifetime: time::Duration,
    ) -> Result<Option<Snapshot>, Error> {
        if self.snapshot == SnapshotPlan::Uploaded {
            return Ok(None);
        }
        let prev = match stored.get(SNAPSHOT) {
            Some(b) => Some(Snapshot::from_signed(SignedFile::parse(SNAPSHOT, b.clone())?.signed())?),
            None => None,
        };
        let mut changed: Vec<(&str, &[u8])> = Vec::new();
        if prev.is_none() {
            for (role, bytes) in stored {
                if role != SNAPSHOT && role != TIMESTAMP {
                    changed.push((role, bytes));
                }
            }
        }
        for f in &self.files {
            changed.push((f.role(), f.bytes()));
        }
        crate::generate::next_snapshot(prev.as_ref(), &changed, now, lifetime).map(Some)
    }

    /// The next timestamp, pointing at `snapshot_bytes`.
    pub fn next_timestamp(
        &self,
        stored: &StoredFiles,
        snapshot_bytes: &[u8],
        now: OffsetDateTime,
        lifetime: time::Duration,
    ) -> Result<Timestamp, Error> {
        next_timestamp_for(stored, snapshot_bytes, now, lifetime)
    }
}

/// The next timestamp of a GUN whose stored files are `stored`.
pub fn next_timestamp_for(
    stored: &StoredFiles,
    snapshot_bytes: &[u8],
    now: OffsetDateTime,
    lifetime: time::Duration,
) -> Result<Timestamp, Error> {
    let prev = match stored.get(TIMESTAMP) {
        Some(b) => Some(Timestamp::from_signed(
            SignedFile::parse(TIMESTAMP, b.clone())?.signed(),
        )?),
        None => None,
    };
    crate::generate::next_timestamp(prev.as_ref(), snapshot_bytes, now, lifetime)
}
