//! Writing a collection: `init`, staging changes, publishing them and
//! rotating keys. What the edits do to the metadata (versions, expiries,
//! delegations, thresholds) is [`seal_tuf::editor`]'s; this side brings
//! the server's verified state, the changelist and the key store.

use std::collections::BTreeMap;
use std::path::Path;

use seal_tuf::editor::{new_root, Collection, DelegationAction, Editor, Rotation, SigningKeys};
use seal_tuf::metadata::{is_delegation, is_targets_role, ROOT, SNAPSHOT, TARGETS, TIMESTAMP};
use seal_tuf::time::Lifetimes;
use seal_tuf::{FileMeta, KeyId, PrivateKey, PublicKey, Root, Snapshot, Targets};

use super::{parse_role_file, Repository};
use crate::changelist::{self, Change, DelegationChange};
use crate::error::ClientError;
use crate::keystore::{KeyStore, PassphraseSource};
use crate::remote::Remote;

/// The key store as the editor's source of private keys: a key is held
/// when the store has the key of a listed key's canonical ID.
struct StoreKeys<'a> {
    keys: &'a KeyStore,
    pass: &'a mut dyn PassphraseSource,
}

impl<'a> StoreKeys<'a> {
    fn new(keys: &'a KeyStore, pass: &'a mut dyn PassphraseSource) -> StoreKeys<'a> {
        StoreKeys { keys, pass }
    }
}

impl SigningKeys for StoreKeys<'_> {
    type Error = ClientError;

    fn held(&mut self, listed: &[&PublicKey]) -> Result<Vec<(PrivateKey, KeyId)>, ClientError> {
        let mut out = Vec::new();
        for k in listed {
            if self.keys.find(&k.canonical_id())?.is_some() {
                let (private, _) = self.keys.load(&k.canonical_id(), self.pass)?;
                out.push((private, k.id().to_owned()));
            }
        }
        Ok(out)
    }

    fn holds_any(&mut self, listed: &[&PublicKey]) -> Result<bool, ClientError> {
        for k in listed {
            if self.keys.find(&k.canonical_id())?.is_some() {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

impl Repository {
    /// Creates the collection locally: a root key (the one given, else the
    /// first root key in the store, else a new one) with a self-signed
    /// certificate for the GUN (or the given certificate), new targets and
    /// snapshot keys, and the server's timestamp key; root, targets and
    /// snapshot version 1 are signed and kept for the first publish.
    pub fn init(
        &self,
        root_key: Option<&Path>,
        root_cert: Option<&Path>,
        pass: &mut dyn PassphraseSource,
    ) -> Result<(), ClientError> {
        let remote = self.remote()?;
        let timestamp_key = remote.get_key(&self.gun, TIMESTAMP)?;

        let root_private = match root_key {
            Some(p) => {
                let pem = std::fs::read(p).map_err(ClientError::io(p))?;
                let stored = self.keys.import_pem(&pem, Some(ROOT), None, pass)?;
                self.keys.load(&stored.id, pass)?.0
            }
            None => match self.keys.keys_for(ROOT, None)?.first() {
                Some(k) => {
                    eprintln!("Root key found, using: {}", k.id);
                    self.keys.load(&k.id, pass)?.0
                }
                None => {
                    let k = PrivateKey::generate_ecdsa(&mut rand::rngs::OsRng);
                    self.keys.add(&k, ROOT, None, pass)?;
                    k
                }
            },
        };
        let root_public = match root_cert {
            Some(p) => {
                let pem = std::fs::read(p).map_err(ClientError::io(p))?;
                let cert = PublicKey::from_certificate_pem(pem).map_err(|e| {
                    ClientError::Invalid(format!("{}: not a usable root certificate: {e}", p.display()))
                })?;
                if cert.canonical_id() != root_private.public_key().id() {
                    return Err(ClientError::Invalid(format!(
                        "{}: the certificate does not belong to the root key {}",
                        p.display(),
                        root_private.public_key().id()
                    )));
                }
                cert
            }
            None => self.root_certificate(&root_private)?,
        };
        let targets_key = PrivateKey::generate_ecdsa(&mut rand::rngs::OsRng);
        self.keys.add(&targets_key, TARGETS, Some(&self.gun), pass)?;
        let snapshot_key = PrivateKey::generate_ecdsa(&mut rand::rngs::OsRng);
        self.keys.add(&snapshot_key, SNAPSHOT, Some(&self.gun), pass)?;

        let root = new_root(
            1,
            self.now + Lifetimes::default().root,
            &[
                (ROOT, &[root_public], 1),
                (TARGETS, &[targets_key.public_key()], 1),
                (SNAPSHOT, &[snapshot_key.public_key()], 1),
                (TIMESTAMP, &[timestamp_key], 1),
            ],
        );
        let mut e = Editor::init(&self.gun, self.now, root);
        e.sign(&mut StoreKeys::new(&self.keys, pass), &[])?;
        self.dir.clear_meta()?;
        self.cache(e.files())
    }

    fn root_certificate(&self, key: &PrivateKey) -> Result<PublicKey, ClientError> {
        let expires = self.now + Lifetimes::default().root;
        Ok(seal_tuf::certs::root_key(key, &self.gun, self.now, expires)?)
    }

    /// Stages `change`.
    pub fn stage(&self, change: &Change) -> Result<(), ClientError> {
        self.dir.changelist().add(change)
    }

    /// Stages adding target `name` with `meta` to each of `roles`
    /// (`targets` when empty).
    pub fn stage_target(&self, name: &str, meta: &FileMeta, roles: &[String]) -> Result<(), ClientError> {
        let data = meta.to_value().to_canonical();
        for role in default_roles(roles) {
            check_targets_role(&role)?;
            self.stage(&Change {
                action: changelist::ACTION_CREATE.into(),
                role,
                kind: changelist::TYPE_TARGET.into(),
                path: name.to_owned(),
                data: data.clone(),
            })?;
        }
        Ok(())
    }

    /// Stages removing target `name` from each of `roles`.
    pub fn stage_remove_target(&self, name: &str, roles: &[String]) -> Result<(), ClientError> {
        for role in default_roles(roles) {
            check_targets_role(&role)?;
            self.stage(&Change {
                action: changelist::ACTION_DELETE.into(),
                role,
                kind: changelist::TYPE_TARGET.into(),
                path: name.to_owned(),
                data: Vec::new(),
            })?;
        }
        Ok(())
    }

    /// Stages a delegation change of `role`.
    pub fn stage_delegation(&self, role: &str, action: &str, d: &DelegationChange) -> Result<(), ClientError> {
        if !is_delegation(role) {
            return Err(ClientError::Invalid(format!(
                "{role:?} is not a delegation role name (targets/<name>)"
            )));
        }
        self.stage(&Change {
            action: action.to_owned(),
            role: role.to_owned(),
            kind: changelist::TYPE_DELEGATION.into(),
            path: String::new(),
            data: serde_json::to_vec(d).map_err(|e| ClientError::Invalid(e.to_string()))?,
        })
    }

    /// Stages re-signing `role` unchanged (witness).
    pub fn stage_witness(&self, role: &str) -> Result<(), ClientError> {
        check_targets_role(role)?;
        self.stage(&Change {
            action: changelist::ACTION_CREATE.into(),
            role: role.to_owned(),
            kind: changelist::TYPE_WITNESS.into(),
            path: String::new(),
            data: Vec::new(),
        })
    }

    /// The state to build on: the server's verified metadata, or the
    /// unpublished local state `init` left if the server has none.
    fn editor(&self, remote: &Remote) -> Result<Editor, ClientError> {
        match self.fetch_verified_from(remote) {
            Ok(v) => {
                let root = v
                    .repo
                    .root()
                    .cloned()
                    .ok_or_else(|| ClientError::NotInitialized(self.gun.clone()))?;
                let targets = v
                    .files
                    .keys()
                    .filter_map(|r| v.repo.targets(r).map(|t| (r.clone(), t.clone())))
                    .collect();
                let current = Collection {
                    root,
                    targets,
                    snapshot: v.repo.snapshot().cloned(),
                    files: v.files,
                    published: true,
                };
                Ok(Editor::new(&self.gun, self.now, current))
            }
            Err(ClientError::NotFound { .. }) => self.local_editor(),
            Err(e) => Err(e),
        }
    }

    fn local_editor(&self) -> Result<Editor, ClientError> {
        let read = |role: &str| -> Result<Option<(seal_tuf::SignedFile, Vec<u8>)>, ClientError> {
            match self.dir.read_meta(role)? {
                None => Ok(None),
                Some(b) => Ok(Some((parse_role_file(role, &b)?, b))),
            }
        };
        let (Some((rf, rb)), Some((tf, tb))) = (read(ROOT)?, read(TARGETS)?) else {
            return Err(ClientError::NotInitialized(self.gun.clone()));
        };
        let root = Root::from_signed(rf.signed())?;
        let mut files = BTreeMap::from([(ROOT.to_owned(), rb), (TARGETS.to_owned(), tb)]);
        let targets = BTreeMap::from([(TARGETS.to_owned(), Targets::from_signed(TARGETS, tf.signed())?)]);
        let snapshot = match read(SNAPSHOT)? {
            Some((sf, sb)) => {
                files.insert(SNAPSHOT.to_owned(), sb);
                Some(Snapshot::from_signed(sf.signed())?)
            }
            None => None,
        };
        let current = Collection {
            root,
            targets,
            snapshot,
            files,
            published: false,
        };
        Ok(Editor::new(&self.gun, self.now, current))
    }

    /// Applies one staged change (Notary's change JSON) to `e`.
    fn apply(&self, e: &mut Editor, change: &Change) -> Result<(), ClientError> {
        let role = change.role.as_str();
        match change.kind.as_str() {
            changelist::TYPE_TARGET if change.action == changelist::ACTION_DELETE => {
                e.remove_target(role, &change.path)?;
            }
            changelist::TYPE_TARGET => {
                let v = seal_tuf::cjson::Value::parse(&change.data)
                    .map_err(|err| ClientError::Invalid(format!("staged target {}: {}", change.path, err.0)))?;
                let meta = FileMeta::parse(role, &format!("targets.{}", change.path), &v)?;
                e.add_target(role, &change.path, meta)?;
            }
            changelist::TYPE_DELEGATION => {
                let d: DelegationChange = changelist::data(change)?;
                let action = match change.action.as_str() {
                    changelist::ACTION_CREATE => DelegationAction::Create,
                    changelist::ACTION_DELETE => DelegationAction::Delete,
                    _ => DelegationAction::Update,
                };
                if let Some(w) = e.edit_delegation(role, action, &d.to_edit()?)? {
                    self.warn(w.to_string());
                }
            }
            changelist::TYPE_WITNESS => e.witness(role)?,
            other => {
                return Err(ClientError::Invalid(format!(
                    "unknown change type {other:?} in the changelist"
                )))
            }
        }
        Ok(())
    }

    /// Uploads what changed (everything on the first publish), then caches
    /// it.
    fn upload(&self, remote: &Remote, e: &Editor, changed: &[String]) -> Result<(), ClientError> {
        let files = e.upload(changed);
        remote.publish(&self.gun, &files)?;
        for (role, bytes) in &files {
            self.dir.write_meta(role, bytes)?;
        }
        for role in e.removed() {
            self.dir.remove_meta(role)?;
        }
        Ok(())
    }

    /// Applies the staged changes to the server's current metadata (or to
    /// the unpublished local state), signs and uploads them. The changelist
    /// is cleared only once the server has accepted the update. Returns
    /// false when there was nothing to publish.
    pub fn publish(&self, pass: &mut dyn PassphraseSource) -> Result<bool, ClientError> {
        let remote = self.remote()?;
        let mut e = self.editor(&remote)?;
        let cl = self.dir.changelist();
        let changes = cl.list()?;
        if changes.is_empty() && e.published() {
            return Ok(false);
        }
        for c in &changes {
            self.apply(&mut e, c)?;
        }
        let changed = e.sign(&mut StoreKeys::new(&self.keys, pass), &[])?;
        self.upload(&remote, &e, &changed)?;
        cl.clear()?;
        Ok(true)
    }

    /// Rotates the key of `role` and publishes a new root at once.
    /// `server_managed` asks the server for a new snapshot or timestamp
    /// key; otherwise a new local key is made. Root rotation signs the new
    /// root with the old and the new root keys.
    pub fn rotate_key(
        &self,
        role: &str,
        server_managed: bool,
        pass: &mut dyn PassphraseSource,
    ) -> Result<PublicKey, ClientError> {
        let remote = self.remote()?;
        let mut e = self.editor(&remote)?;
        let mut old_root_signers = Vec::new();
        let new_key = match e.rotation(role, server_managed)? {
            Rotation::Server => remote.rotate_key(&self.gun, role)?,
            Rotation::Local => {
                let k = PrivateKey::generate_ecdsa(&mut rand::rngs::OsRng);
                self.keys.add(&k, role, Some(&self.gun), pass)?;
                k.public_key()
            }
            Rotation::Root => {
                old_root_signers = StoreKeys::new(&self.keys, pass).held(&e.root().role_key_list(ROOT))?;
                if old_root_signers.is_empty() {
                    return Err(ClientError::MissingKey {
                        role: ROOT.into(),
                        gun: self.gun.clone(),
                    });
                }
                let k = PrivateKey::generate_ecdsa(&mut rand::rngs::OsRng);
                self.keys.add(&k, ROOT, None, pass)?;
                self.root_certificate(&k)?
            }
        };
        let old_ids = e.rotate_key(role, new_key.clone())?;
        let changed = e.sign(&mut StoreKeys::new(&self.keys, pass), &old_root_signers)?;
        self.upload(&remote, &e, &changed)?;
        if role == SNAPSHOT && server_managed {
            // The old local snapshot key signs nothing any more.
            for k in self.keys.keys_for(SNAPSHOT, Some(&self.gun))? {
                if old_ids.contains(&k.id) {
                    self.keys.remove(&k.id)?;
                }
            }
        }
        Ok(new_key)
    }

    /// Deletes the local trust data of the collection (metadata and
    /// changelist; keys stay), and the server's when `remote` is set.
    pub fn delete(&self, remote: bool) -> Result<(), ClientError> {
        if remote {
            self.remote()?.delete(&self.gun)?;
        }
        self.dir.remove_all()
    }
}

fn default_roles(roles: &[String]) -> Vec<String> {
    if roles.is_empty() {
        vec![TARGETS.to_owned()]
    } else {
        roles.to_vec()
    }
}

fn check_targets_role(role: &str) -> Result<(), ClientError> {
    if is_targets_role(role) {
        Ok(())
    } else {
        Err(ClientError::Invalid(format!(
            "{role:?} is not a targets role (targets or targets/<name>)"
        )))
    }
}
