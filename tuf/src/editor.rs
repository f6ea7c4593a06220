//! Editing a collection's metadata as Notary's client does, as pure rules
//! (tough has the same room: `tough::editor`).
//!
//! An [`Editor`] holds the current metadata of one collection (the
//! server's verified files, or the unpublished ones `init` left) and the
//! edits made to it: targets added and removed, delegations created,
//! changed and removed, roles witnessed, base-role keys rotated. Signing
//! ([`Editor::sign`]) bumps the version and renews the expiry of every
//! changed role, counts the held keys against each role's threshold, and
//! makes the next snapshot when its key is held. Private keys come from the
//! caller through [`SigningKeys`]: the editor reads no file, asks for no
//! passphrase and reads no clock (`now` is given).
//!
//! * [`new_root`] builds a root from each base role's keys and threshold
//!   (the client's `init`, and the test builder in `testing`).
//! * [`Rotation`] says how a role's key may be rotated (Notary's rules).

use std::collections::{BTreeMap, BTreeSet};

use time::OffsetDateTime;

use crate::cjson::Value;
use crate::error::{EditError, EditWarning};
use crate::generate::{next_snapshot, sign};
use crate::keys::{KeyId, PrivateKey, PublicKey};
use crate::metadata::{
    next_version, parent_role, DelegatedRole, Delegations, FileMeta, RoleKeys, Root, Snapshot, Targets, ROOT, SNAPSHOT,
    TARGETS, TIMESTAMP,
};
use crate::time::Lifetimes;

/// A root at `version` expiring at `expires`, listing for each base role
/// (name, keys, threshold) its keys, in the given order, and its threshold.
pub fn new_root(version: u64, expires: OffsetDateTime, roles: &[(&str, &[PublicKey], u32)]) -> Root {
    let mut keys = BTreeMap::new();
    let mut role_keys = BTreeMap::new();
    for (role, listed, threshold) in roles {
        role_keys.insert(
            (*role).to_owned(),
            RoleKeys {
                keyids: listed.iter().map(|k| k.id().to_owned()).collect(),
                threshold: *threshold,
            },
        );
        for k in *listed {
            keys.insert(k.id().to_owned(), k.clone());
        }
    }
    Root {
        version,
        expires,
        consistent_snapshot: false,
        keys,
        roles: role_keys,
    }
}

/// A targets role with nothing in it yet, at version 0 (its first signing
/// makes it version 1), expiring at `expires`.
pub fn empty_targets(expires: OffsetDateTime) -> Targets {
    Targets {
        version: 0,
        expires,
        targets: BTreeMap::new(),
        delegations: Delegations::default(),
    }
}

/// Where the private keys that sign come from (the client's key store).
pub trait SigningKeys {
    /// The caller's error; an [`EditError`] converts into it.
    type Error: From<EditError>;
    /// The private keys held for any of `listed`, each with the key ID
    /// `listed` gives it (a root certificate's ID, not the bare key's).
    fn held(&mut self, listed: &[&PublicKey]) -> Result<Vec<(PrivateKey, KeyId)>, Self::Error>;
    /// Whether a private key is held for any of `listed`.
    fn holds_any(&mut self, listed: &[&PublicKey]) -> Result<bool, Self::Error>;
}

/// What a delegation change does (Notary's change actions).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DelegationAction {
    /// Add the role if needed, then keys and paths.
    Create,
    /// Change an existing role.
    Update,
    /// Remove the role and everything below it; with keys or paths to
    /// remove, change the role as `Update` does (as older Seal versions
    /// staged removals).
    Delete,
}

/// A change to one delegation (Notary's `TUFDelegation`), keys parsed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DelegationEdit {
    /// New threshold (0: unchanged).
    pub new_threshold: u32,
    /// Keys to add.
    pub add_keys: Vec<PublicKey>,
    /// Key IDs to remove: the listed ID or the canonical one.
    pub remove_keys: Vec<String>,
    /// Paths to add.
    pub add_paths: Vec<String>,
    /// Paths to remove.
    pub remove_paths: Vec<String>,
    /// Remove every path first.
    pub clear_all_paths: bool,
}

/// How the new key of a rotated role is made (Notary's `key rotate`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rotation {
    /// The server makes it (snapshot or timestamp, `--server-managed`).
    Server,
    /// A new local key (snapshot or targets).
    Local,
    /// A new local root key with its certificate; the new root is signed by
    /// the old root keys and the new one.
    Root,
}

/// The metadata of a collection as an edit starts from it.
#[derive(Debug, Clone)]
pub struct Collection {
    /// The current root.
    pub root: Root,
    /// Every targets role with metadata, by name.
    pub targets: BTreeMap<String, Targets>,
    /// The current snapshot, if one was made.
    pub snapshot: Option<Snapshot>,
    /// The exact bytes of the current files, by role.
    pub files: BTreeMap<String, Vec<u8>>,
    /// Whether the server holds the collection (else it is `init`'s
    /// local state, published as a whole the first time).
    pub published: bool,
}

/// One collection's metadata being edited: see the module documentation.
#[derive(Debug, Clone)]
pub struct Editor {
    gun: String,
    now: OffsetDateTime,
    lifetimes: Lifetimes,
    root: Root,
    root_dirty: bool,
    targets: BTreeMap<String, Targets>,
    dirty: BTreeSet<String>,
    removed: BTreeSet<String>,
    snapshot: Option<Snapshot>,
    files: BTreeMap<String, Vec<u8>>,
    published: bool,
}

impl Editor {
    /// Edits `current` of `gun`; what is signed expires `now` plus Notary's
    /// default lifetimes.
    pub fn new(gun: &str, now: OffsetDateTime, current: Collection) -> Editor {
        Editor {
            gun: gun.to_owned(),
            now,
            lifetimes: Lifetimes::default(),
            root: current.root,
            root_dirty: false,
            targets: current.targets,
            dirty: BTreeSet::new(),
            removed: BTreeSet::new(),
            snapshot: current.snapshot,
            files: current.files,
            published: current.published,
        }
    }

    /// A new collection: `root` and an empty `targets`, both to be signed
    /// (and a first snapshot when its key is held).
    pub fn init(gun: &str, now: OffsetDateTime, root: Root) -> Editor {
        let lifetimes = Lifetimes::default();
        let mut e = Editor::new(
            gun,
            now,
            Collection {
                root,
                targets: BTreeMap::from([(TARGETS.to_owned(), empty_targets(now + lifetimes.targets))]),
                snapshot: None,
                files: BTreeMap::new(),
                published: false,
            },
        );
        e.root_dirty = true;
        e.dirty.insert(TARGETS.to_owned());
        e
    }

    /// The root as edited.
    pub fn root(&self) -> &Root {
        &self.root
    }

    /// Whether the server holds the collection.
    pub fn published(&self) -> bool {
        self.published
    }

    /// The current file of every role, signed ones included.
    pub fn files(&self) -> &BTreeMap<String, Vec<u8>> {
        &self.files
    }

    /// The roles removed with a delegation (their files are gone).
    pub fn removed(&self) -> &BTreeSet<String> {
        &self.removed
    }

    /// The files to upload after [`Editor::sign`] returned `changed`: those
    /// roles, or on the first publish every file but the timestamp (the
    /// server makes it).
    pub fn upload(&self, changed: &[String]) -> Vec<(String, Vec<u8>)> {
        let roles: Vec<&String> = if self.published {
            changed.iter().collect()
        } else {
            self.files.keys().filter(|r| *r != TIMESTAMP).collect()
        };
        roles.into_iter().map(|r| (r.clone(), self.files[r].clone())).collect()
    }

    /// Adds (or replaces) target `name` in `role`. A delegated role must be
    /// delegated all the way from `targets`, with `name` inside the paths
    /// of every delegation on the way; its metadata is made if it has none.
    pub fn add_target(&mut self, role: &str, name: &str, meta: FileMeta) -> Result<(), EditError> {
        self.target_role(role, name, true)?
            .targets
            .insert(name.to_owned(), meta);
        self.dirty.insert(role.to_owned());
        Ok(())
    }

    /// Removes target `name` from `role` (nothing to remove is no error).
    pub fn remove_target(&mut self, role: &str, name: &str) -> Result<(), EditError> {
        self.target_role(role, name, false)?.targets.remove(name);
        self.dirty.insert(role.to_owned());
        Ok(())
    }

    fn target_role(&mut self, role: &str, name: &str, adding: bool) -> Result<&mut Targets, EditError> {
        if role != TARGETS {
            let chain = self.delegation_chain(role).ok_or_else(|| EditError::NoSuchDelegation {
                gun: self.gun.clone(),
                role: role.to_owned(),
                target: name.to_owned(),
            })?;
            if adding && !chain.iter().all(|d| d.covers(name)) {
                return Err(EditError::PathNotDelegated {
                    role: role.to_owned(),
                    target: name.to_owned(),
                });
            }
            let expires = self.now + self.lifetimes.targets;
            self.targets
                .entry(role.to_owned())
                .or_insert_with(|| empty_targets(expires));
        }
        self.targets
            .get_mut(role)
            .ok_or_else(|| EditError::NotInitialized(self.gun.clone()))
    }

    /// Marks `role` to be signed again unchanged (Notary's witness).
    pub fn witness(&mut self, role: &str) -> Result<(), EditError> {
        if !self.targets.contains_key(role) {
            return Err(EditError::CannotWitness {
                gun: self.gun.clone(),
                role: role.to_owned(),
            });
        }
        self.dirty.insert(role.to_owned());
        Ok(())
    }

    /// The delegations from `targets` down to `role`, if every link exists.
    fn delegation_chain(&self, role: &str) -> Option<Vec<DelegatedRole>> {
        let parent = parent_role(role)?;
        let d = self.targets.get(parent)?.delegation(role)?.clone();
        let mut chain = if parent == TARGETS {
            Vec::new()
        } else {
            self.delegation_chain(parent)?
        };
        chain.push(d);
        Some(chain)
    }

    /// Applies a delegation change as Notary's client does. `Delete` with
    /// no keys or paths to remove (Notary's only kind) removes the role and
    /// everything below it; `Create` adds the role if needed, then keys and
    /// paths; `Update` (and `Delete` with keys or paths) changes an
    /// existing role. A role left with fewer keys than its threshold is
    /// allowed, with a warning, as in Notary: it signs nothing until keys
    /// are added, and readers skip its file.
    pub fn edit_delegation(
        &mut self,
        role: &str,
        action: DelegationAction,
        edit: &DelegationEdit,
    ) -> Result<Option<EditWarning>, EditError> {
        let parent_name = parent_role(role)
            .ok_or_else(|| EditError::NotDelegationRole(role.to_owned()))?
            .to_owned();
        let parent = self
            .targets
            .get_mut(&parent_name)
            .ok_or_else(|| EditError::ParentMissing {
                role: role.to_owned(),
                parent: parent_name.clone(),
            })?;
        let pos = parent.delegations.roles.iter().position(|r| r.name == role);
        let wipe = action == DelegationAction::Delete
            && edit.remove_keys.is_empty()
            && edit.remove_paths.is_empty()
            && !edit.clear_all_paths;
        if wipe {
            if let Some(i) = pos {
                parent.delegations.roles.remove(i);
            }
            prune_keys(&mut parent.delegations);
            self.dirty.insert(parent_name);
            // The role and everything below it go.
            let below = format!("{role}/");
            let gone: Vec<String> = self
                .targets
                .keys()
                .filter(|r| *r == role || r.starts_with(&below))
                .cloned()
                .collect();
            for r in gone {
                self.targets.remove(&r);
                self.files.remove(&r);
                self.dirty.remove(&r);
                self.removed.insert(r);
            }
            return Ok(None);
        }
        let i = match pos {
            Some(i) => i,
            None => {
                if action != DelegationAction::Create {
                    return Err(EditError::NotDelegated {
                        role: role.to_owned(),
                        parent: parent_name,
                    });
                }
                parent.delegations.roles.push(DelegatedRole {
                    name: role.to_owned(),
                    keyids: Vec::new(),
                    threshold: 1,
                    paths: Vec::new(),
                    path_hash_prefixes: Vec::new(),
                });
                parent.delegations.roles.len() - 1
            }
        };
        for key in &edit.add_keys {
            let id = key.id().to_owned();
            parent.delegations.keys.insert(id.clone(), key.clone());
            let r = &mut parent.delegations.roles[i];
            if !r.keyids.contains(&id) {
                r.keyids.push(id);
            }
        }
        let keys = parent.delegations.keys.clone();
        let r = &mut parent.delegations.roles[i];
        for id in &edit.remove_keys {
            // Either the listed ID or the canonical one the CLI prints.
            r.keyids
                .retain(|k| k != id && keys.get(k).is_none_or(|pk| pk.canonical_id() != *id));
        }
        if edit.clear_all_paths {
            r.paths.clear();
        }
        r.paths.retain(|p| !edit.remove_paths.contains(p));
        for p in &edit.add_paths {
            if !r.paths.contains(p) {
                r.paths.push(p.clone());
            }
        }
        if edit.new_threshold > 0 {
            r.threshold = edit.new_threshold;
        }
        let warning = (r.keyids.len() < r.threshold as usize).then(|| EditWarning::BelowThreshold {
            role: role.to_owned(),
            threshold: r.threshold,
        });
        prune_keys(&mut parent.delegations);
        self.dirty.insert(parent_name);
        Ok(warning)
    }

    /// How the key of `role` may be rotated, `server_managed` or not: only
    /// once the collection is published; the timestamp key only by the
    /// server, root and targets keys only locally.
    pub fn rotation(&self, role: &str, server_managed: bool) -> Result<Rotation, EditError> {
        if !self.published {
            return Err(EditError::NotPublished(self.gun.clone()));
        }
        match (role, server_managed) {
            (TIMESTAMP, false) => Err(EditError::TimestampKeyIsServers),
            (ROOT | TARGETS, true) => Err(EditError::NotServerManageable(role.to_owned())),
            (TIMESTAMP | SNAPSHOT, true) => Ok(Rotation::Server),
            (SNAPSHOT | TARGETS, false) => Ok(Rotation::Local),
            (ROOT, false) => Ok(Rotation::Root),
            _ => Err(EditError::NotRotatable(role.to_owned())),
        }
    }

    /// Makes `new_key` the only key of base role `role` in a new root
    /// version (keys no role lists any more leave the root); a new targets
    /// key also re-signs `targets`. Returns the role's previous key IDs.
    pub fn rotate_key(&mut self, role: &str, new_key: PublicKey) -> Result<Vec<KeyId>, EditError> {
        let version = next_version(ROOT, Some(self.root.version))?;
        let old_ids = self.root.role(role).map(|r| r.keyids.clone()).unwrap_or_default();
        self.root.roles.insert(
            role.to_owned(),
            RoleKeys {
                keyids: vec![new_key.id().to_owned()],
                threshold: 1,
            },
        );
        for id in &old_ids {
            if !self.root.roles.values().any(|r| r.keyids.contains(id)) {
                self.root.keys.remove(id);
            }
        }
        self.root.keys.insert(new_key.id().to_owned(), new_key);
        self.root.version = version;
        self.root.expires = self.now + self.lifetimes.root;
        self.root_dirty = true;
        if role == TARGETS {
            self.dirty.insert(TARGETS.to_owned());
        }
        Ok(old_ids)
    }

    /// Signs the root if it changed (also with `old_root_signers`: a
    /// rotation is signed by the previous root's keys and the new ones),
    /// then every changed targets role at its next version with a renewed
    /// expiry, then the next snapshot when its key is held and something
    /// changed (or there is none yet). Returns the roles signed, in order.
    pub fn sign<K: SigningKeys>(
        &mut self,
        keys: &mut K,
        old_root_signers: &[(PrivateKey, KeyId)],
    ) -> Result<Vec<String>, K::Error> {
        let mut changed: Vec<String> = Vec::new();
        if self.root_dirty {
            let listed = self.root.role_key_list(ROOT);
            let threshold = self.root.role(ROOT).map_or(1, |r| r.threshold);
            let file = self.sign_role(keys, ROOT, self.root.to_value(), &listed, threshold, old_root_signers)?;
            self.files.insert(ROOT.to_owned(), file);
            changed.push(ROOT.to_owned());
        }
        let dirty: Vec<String> = self.dirty.iter().cloned().collect();
        for role in &dirty {
            let (listed, threshold) = self.signers_of(role)?;
            let t = self
                .targets
                .get_mut(role)
                .ok_or_else(|| EditError::NoMetadata(role.clone()))?;
            t.version = next_version(role, Some(t.version)).map_err(|_| EditError::VersionOverflow(role.clone()))?;
            t.expires = self.now + self.lifetimes.targets;
            let value = t.to_value();
            let refs: Vec<&PublicKey> = listed.iter().collect();
            let file = self.sign_role(keys, role, value, &refs, threshold, &[])?;
            self.files.insert(role.clone(), file);
            changed.push(role.clone());
        }
        let snapshot_keys = self.root.role_key_list(SNAPSHOT);
        let local_snapshot = keys.holds_any(&snapshot_keys)?;
        if local_snapshot && (!changed.is_empty() || !self.removed.is_empty() || self.snapshot.is_none()) {
            let inputs: Vec<(&str, &[u8])> = if self.snapshot.is_none() {
                self.files
                    .iter()
                    .filter(|(r, _)| *r != SNAPSHOT && *r != TIMESTAMP)
                    .map(|(r, b)| (r.as_str(), b.as_slice()))
                    .collect()
            } else {
                changed.iter().map(|r| (r.as_str(), self.files[r].as_slice())).collect()
            };
            let mut snap = next_snapshot(self.snapshot.as_ref(), &inputs, self.now, self.lifetimes.snapshot)
                .map_err(EditError::from)?;
            for r in &self.removed {
                snap.meta.remove(r);
            }
            let threshold = self.root.role(SNAPSHOT).map_or(1, |r| r.threshold);
            let file = self.sign_role(keys, SNAPSHOT, snap.to_value(), &snapshot_keys, threshold, &[])?;
            self.files.insert(SNAPSHOT.to_owned(), file);
            self.snapshot = Some(snap);
            changed.push(SNAPSHOT.to_owned());
        }
        Ok(changed)
    }

    /// The keys listed for targets role `role` and its threshold: the
    /// root's for `targets`, the parent's delegation for a delegated role.
    fn signers_of(&self, role: &str) -> Result<(Vec<PublicKey>, u32), EditError> {
        if role == TARGETS {
            return Ok((
                self.root.role_key_list(TARGETS).into_iter().cloned().collect(),
                self.root.role(TARGETS).map_or(1, |r| r.threshold),
            ));
        }
        let parent = parent_role(role)
            .and_then(|p| self.targets.get(p))
            .ok_or_else(|| EditError::ParentGone(role.to_owned()))?;
        let d = parent
            .delegation(role)
            .ok_or_else(|| EditError::NoLongerDelegated(role.to_owned()))?;
        let listed = d
            .keyids
            .iter()
            .filter_map(|id| parent.delegations.keys.get(id))
            .cloned()
            .collect();
        Ok((listed, d.threshold))
    }

    /// Signs `signed` as `role` with the held keys among `listed` (and
    /// `extra`), refusing when they cannot meet `threshold`.
    fn sign_role<K: SigningKeys>(
        &self,
        keys: &mut K,
        role: &str,
        signed: Value,
        listed: &[&PublicKey],
        threshold: u32,
        extra: &[(PrivateKey, KeyId)],
    ) -> Result<Vec<u8>, K::Error> {
        let held = keys.held(listed)?;
        let signers = signers(&self.gun, role, &held, extra, listed, threshold)?;
        Ok(sign(role, signed, &signers).into_bytes())
    }
}

/// The keys that sign `role`: every `held` key, then each of `extra` not
/// already among them, each under its listed key ID. Refused when there is
/// none, or when fewer than `threshold` of them are `listed` for the role.
fn signers<'a>(
    gun: &str,
    role: &str,
    held: &'a [(PrivateKey, KeyId)],
    extra: &'a [(PrivateKey, KeyId)],
    listed: &[&PublicKey],
    threshold: u32,
) -> Result<Vec<(&'a PrivateKey, &'a str)>, EditError> {
    let mut refs: Vec<(&PrivateKey, &str)> = held.iter().map(|(k, id)| (k, id.as_str())).collect();
    for (k, id) in extra {
        if !refs.iter().any(|(_, i)| *i == id) {
            refs.push((k, id.as_str()));
        }
    }
    if refs.is_empty() {
        return Err(EditError::MissingKey {
            role: role.to_owned(),
            gun: gun.to_owned(),
        });
    }
    let listed_ids: BTreeSet<&str> = listed.iter().map(|k| k.id()).collect();
    let counted = refs.iter().filter(|(_, id)| listed_ids.contains(id)).count();
    if counted < threshold as usize {
        return Err(EditError::BelowThreshold {
            role: role.to_owned(),
            threshold,
            held: counted,
        });
    }
    Ok(refs)
}

/// Drops delegation keys no role lists any more.
fn prune_keys(d: &mut Delegations) {
    let used: BTreeSet<KeyId> = d.roles.iter().flat_map(|r| r.keyids.iter().cloned()).collect();
    d.keys.retain(|id, _| used.contains(id));
}

#[cfg(test)]
mod tests;
