//! One collection (GUN) as its publisher or a consumer sees it: verified
//! downloads through seal-tuf's client workflow, staged changes, publishing
//! signed updates, key rotation, deletion.
//!
//! Every download goes through [`seal_tuf::client::Repo`]: the trust anchor
//! is the root cached from an earlier run (or, on first contact, TOFU or the
//! pinned keys), versions never go below what the cache holds, hashes and
//! lengths come from the metadata above, and expired metadata is refused.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use seal_tuf::client::{Limits, Repo, TrustPin};
use seal_tuf::generate::{next_snapshot, sign};
use seal_tuf::metadata::{parent_role, DelegatedRole, Delegations, RoleKeys, ROOT, SNAPSHOT, TARGETS, TIMESTAMP};
use seal_tuf::time::Lifetimes;
use seal_tuf::{FileMeta, KeyId, PrivateKey, PublicKey, Root, SignedFile, Snapshot, Targets, Timestamp};
use time::OffsetDateTime;

use crate::changelist::{self, Change, DelegationChange};
use crate::error::ClientError;
use crate::keystore::{KeyStore, PassphraseSource};
use crate::layout::GunDir;
use crate::remote::{Remote, RemoteConfig};

/// Everything a command needs to know about where things are.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The trust directory.
    pub trust_dir: std::path::PathBuf,
    /// The server.
    pub remote: RemoteConfig,
    /// Root key IDs pinned per GUN (`trust_pinning.certs`).
    pub pinned: BTreeMap<String, Vec<String>>,
    /// Refuse trust on first use for unpinned GUNs (`trust_pinning.disable_tofu`).
    pub disable_tofu: bool,
}

/// A target as `list` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetEntry {
    /// The target's name.
    pub name: String,
    /// Its hashes and length.
    pub meta: FileMeta,
    /// The role that signs for it.
    pub role: String,
}

/// A delegation as `delegation list` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DelegationEntry {
    /// The role.
    pub role: DelegatedRole,
    /// Its keys' canonical IDs (what the CLI prints and names files by).
    pub canonical_ids: Vec<String>,
}

/// Metadata verified from the server in this run.
pub struct Verified {
    /// The verified state.
    pub repo: Repo,
    /// The exact bytes of every verified file, by role.
    pub files: BTreeMap<String, Vec<u8>>,
}

impl Verified {
    /// Targets roles in pre-order (parents before children, delegations in
    /// their listed order), with the chain of delegations leading to each.
    fn roles_preorder(&self) -> Vec<(String, Vec<DelegatedRole>)> {
        let mut out = Vec::new();
        let mut stack = vec![(TARGETS.to_owned(), Vec::<DelegatedRole>::new())];
        while let Some((role, chain)) = stack.pop() {
            let Some(t) = self.repo.targets(&role) else { continue };
            for d in t.delegations.roles.iter().rev() {
                let mut c = chain.clone();
                c.push(d.clone());
                stack.push((d.name.clone(), c));
            }
            out.push((role, chain));
        }
        out
    }
}

/// The mutable state a publish builds: the current files, then changes.
struct Working {
    root: Root,
    root_dirty: bool,
    targets: BTreeMap<String, Targets>,
    dirty: BTreeSet<String>,
    removed: BTreeSet<String>,
    snapshot: Option<Snapshot>,
    files: BTreeMap<String, Vec<u8>>,
    published: bool,
}

impl Working {
    /// Current state, nothing changed yet.
    fn new(
        root: Root,
        targets: BTreeMap<String, Targets>,
        snapshot: Option<Snapshot>,
        files: BTreeMap<String, Vec<u8>>,
        published: bool,
    ) -> Working {
        Working {
            root,
            root_dirty: false,
            targets,
            dirty: BTreeSet::new(),
            removed: BTreeSet::new(),
            snapshot,
            files,
            published,
        }
    }
}

/// How long what the client signs lives (Notary's defaults).
fn lifetimes() -> Lifetimes {
    Lifetimes::default()
}

fn empty_targets(now: OffsetDateTime) -> Targets {
    Targets {
        version: 0,
        expires: now + lifetimes().targets,
        targets: BTreeMap::new(),
        delegations: Delegations::default(),
    }
}

fn parse_role_file(role: &str, bytes: &[u8]) -> Result<SignedFile, ClientError> {
    Ok(SignedFile::parse(role, bytes.to_vec())?)
}

/// One collection.
pub struct Repository {
    gun: String,
    dir: GunDir,
    settings: Settings,
    keys: KeyStore,
    now: OffsetDateTime,
    warnings: std::cell::RefCell<Vec<String>>,
}

impl Repository {
    /// The collection `gun` under `settings`, with `now` as the time every
    /// expiry is judged against.
    pub fn new(settings: &Settings, gun: &str, now: OffsetDateTime) -> Result<Repository, ClientError> {
        let dir = GunDir::new(&settings.trust_dir, gun)?;
        let keys = KeyStore::open(&settings.trust_dir)?;
        Ok(Repository {
            gun: gun.to_owned(),
            dir,
            settings: settings.clone(),
            keys,
            now,
            warnings: std::cell::RefCell::new(Vec::new()),
        })
    }

    /// What the operations so far warned about and carried on (a server
    /// unreachable and the cache used instead, a delegation skipped), in
    /// order; each is one line. Taking them empties the list.
    pub fn take_warnings(&self) -> Vec<String> {
        std::mem::take(&mut *self.warnings.borrow_mut())
    }

    fn warn(&self, message: String) {
        self.warnings.borrow_mut().push(message);
    }

    /// The GUN.
    pub fn gun(&self) -> &str {
        &self.gun
    }

    /// The key store.
    pub fn keys(&self) -> &KeyStore {
        &self.keys
    }

    /// The local files of the collection.
    pub fn dir(&self) -> &GunDir {
        &self.dir
    }

    fn remote(&self) -> Result<Remote, ClientError> {
        let r = Remote::new(&self.settings.remote)?;
        r.ping()?;
        Ok(r)
    }

    /// How the first root is trusted: the keys `trust_pinning.certs` pins
    /// (the GUN's own entry, else the longest matching `prefix*` entry),
    /// else trust on first use, which `disable_tofu` refuses only when no
    /// root of the collection is cached yet (as in Notary).
    fn pin(&self) -> Result<TrustPin, ClientError> {
        if let Some(ids) = seal_tuf::client::pinned_keys(&self.gun, &self.settings.pinned) {
            return Ok(TrustPin::Keys(ids.clone()));
        }
        if self.settings.disable_tofu && self.dir.read_meta(ROOT)?.is_none() {
            return Err(ClientError::Invalid(format!(
                "trust on first use is disabled and no root key is pinned for {}",
                self.gun
            )));
        }
        Ok(TrustPin::Tofu)
    }

    fn not_found(&self, remote: &Remote) -> ClientError {
        ClientError::NotFound {
            server: remote.url().to_owned(),
            gun: self.gun.clone(),
        }
    }

    /// Downloads `role` by the hash `meta` vouches for (falling back to its
    /// current name), or reuses the cached copy if its hash matches.
    fn fetch_by_meta(&self, remote: &Remote, role: &str, meta: &FileMeta) -> Result<Vec<u8>, ClientError> {
        if let Some(cached) = self.dir.read_meta(role)? {
            if meta.check(role, &cached).is_ok() {
                return Ok(cached);
            }
        }
        let limit = u64::try_from(meta.length).unwrap_or(0);
        if let Some(sha) = meta.sha256_hex() {
            if let Some(b) = remote.get_meta(&self.gun, &format!("{role}.{sha}.json"), limit)? {
                return Ok(b);
            }
        }
        remote
            .get_meta(&self.gun, &format!("{role}.json"), limit)?
            .ok_or_else(|| {
                ClientError::Tuf(seal_tuf::Error::Untrusted {
                    role: role.to_owned(),
                    reason: "the server does not have the version the snapshot lists".into(),
                })
            })
    }

    /// Brings the trusted root up to the server's, walking versions one by
    /// one when the server's root is not signed by the trusted one directly.
    fn refresh_root(
        &self,
        remote: &Remote,
        repo: &mut Repo,
        files: &mut BTreeMap<String, Vec<u8>>,
    ) -> Result<(), ClientError> {
        let limits = Limits::default();
        let latest = remote
            .get_meta(&self.gun, "root.json", limits.root)?
            .ok_or_else(|| self.not_found(remote))?;
        let first = repo.root().is_none();
        if let Err(e) = repo.update_root(latest.clone(), self.now) {
            let (Some(trusted), false) = (repo.root().map(|r| r.version), first) else {
                return Err(e.into());
            };
            let target = Root::from_signed(parse_role_file(ROOT, &latest)?.signed())?.version;
            if target <= trusted + 1 {
                return Err(e.into());
            }
            for v in trusted + 1..target {
                let b = remote
                    .get_meta(&self.gun, &format!("{v}.root.json"), limits.root)?
                    .ok_or_else(|| ClientError::Tuf(e.clone()))?;
                repo.update_root(b, self.now)?;
            }
            repo.update_root(latest.clone(), self.now)?;
        }
        files.insert(ROOT.to_owned(), latest);
        Ok(())
    }

    fn floor_of<T>(&self, role: &str, version: impl Fn(&SignedFile) -> Option<T>) -> Option<T> {
        let bytes = self.dir.read_meta(role).ok().flatten()?;
        let f = SignedFile::parse(role, bytes).ok()?;
        version(&f)
    }

    /// Verifies the collection's current metadata from the server, all
    /// targets roles included, and caches what verified.
    ///
    /// When the server cannot answer (unreachable, or a 5xx), the cached
    /// metadata stands in, as in Notary's client: verified afresh from the
    /// cached root down, against `now`, so expired metadata is still
    /// refused, with a warning that it may not be the latest.
    pub fn fetch_verified(&self) -> Result<Verified, ClientError> {
        match self.remote().and_then(|remote| self.fetch_verified_from(&remote)) {
            Err(e) if unavailable(&e) => self.verified_from_cache(e),
            other => other,
        }
    }

    /// The cached metadata, verified, in place of a server that failed
    /// with `unavailable`. With nothing cached from a server, that failure
    /// is the answer.
    fn verified_from_cache(&self, unavailable: ClientError) -> Result<Verified, ClientError> {
        if self.dir.read_meta(TIMESTAMP)?.is_none() {
            return Err(unavailable);
        }
        match self.verify_cache() {
            Ok(v) => {
                self.warn(format!(
                    "{unavailable}; using the cached trust data of {}, which might not be the latest",
                    self.gun
                ));
                Ok(v)
            }
            Err(cached) => Err(ClientError::CacheUnusable {
                gun: self.gun.clone(),
                unavailable: Box::new(unavailable),
                cached: Box::new(cached),
            }),
        }
    }

    fn verify_cache(&self) -> Result<Verified, ClientError> {
        let read = |role: &str| -> Result<Vec<u8>, ClientError> {
            self.dir.read_meta(role)?.ok_or_else(|| {
                ClientError::Tuf(seal_tuf::Error::Untrusted {
                    role: role.to_owned(),
                    reason: "not in the cache".into(),
                })
            })
        };
        let mut repo = Repo::new(&self.gun, self.pin()?, Limits::default());
        let mut files = BTreeMap::new();
        let root = read(ROOT)?;
        repo.load_trusted_root(root.clone(), self.now)?;
        // A cached root is only a starting point online; offline it is the
        // root, and must not have expired.
        if let Some(r) = repo.root().filter(|r| r.expires <= self.now) {
            return Err(ClientError::Tuf(seal_tuf::Error::Expired {
                role: ROOT.into(),
                expires: r.expires,
            }));
        }
        files.insert(ROOT.to_owned(), root);
        let ts = read(TIMESTAMP)?;
        repo.update_timestamp(ts.clone(), self.now)?;
        files.insert(TIMESTAMP.to_owned(), ts);
        let snap = read(SNAPSHOT)?;
        repo.update_snapshot(snap.clone(), self.now)?;
        files.insert(SNAPSHOT.to_owned(), snap);
        self.verify_targets_tree(&mut repo, &mut files, |role, _| read(role))?;
        Ok(Verified { repo, files })
    }

    /// Verifies `targets` and every delegation below it, shallowest first
    /// as they are found, with the bytes `fetch` gives for a role the
    /// snapshot lists. A delegation that does not verify because its
    /// signatures no longer meet its threshold (its keys were removed) or
    /// it expired is skipped with a warning, as Notary's client skips it:
    /// its targets and what it delegates are not trusted. Any other
    /// failure, and any failure of `targets` itself, is an error.
    fn verify_targets_tree(
        &self,
        repo: &mut Repo,
        files: &mut BTreeMap<String, Vec<u8>>,
        mut fetch: impl FnMut(&str, &FileMeta) -> Result<Vec<u8>, ClientError>,
    ) -> Result<(), ClientError> {
        let listed: BTreeMap<String, FileMeta> = repo.snapshot().map(|s| s.meta.clone()).unwrap_or_default();
        let mut queue = std::collections::VecDeque::from([TARGETS.to_owned()]);
        while let Some(role) = queue.pop_front() {
            let Some(meta) = listed.get(&role) else { continue };
            let bytes = fetch(&role, meta)?;
            match repo.update_targets(&role, bytes.clone(), self.now) {
                Ok(()) => {}
                Err(e @ (seal_tuf::Error::Threshold { .. } | seal_tuf::Error::Expired { .. })) if role != TARGETS => {
                    self.warn(format!(
                        "skipping delegation {role} of {}: {e}; its targets are not trusted",
                        self.gun
                    ));
                    continue;
                }
                Err(e) => return Err(e.into()),
            }
            files.insert(role.clone(), bytes);
            if let Some(t) = repo.targets(&role) {
                queue.extend(t.delegations.roles.iter().map(|d| d.name.clone()));
            }
        }
        Ok(())
    }

    fn fetch_verified_from(&self, remote: &Remote) -> Result<Verified, ClientError> {
        let mut repo = Repo::new(&self.gun, self.pin()?, Limits::default());
        let mut files = BTreeMap::new();
        let cached_root = self.dir.read_meta(ROOT)?;
        let from_cache = cached_root.is_some();
        if let Some(b) = cached_root {
            repo.load_trusted_root(b.clone(), self.now)
                .map_err(|e| ClientError::Invalid(format!("the cached root of {} is not usable: {e}", self.gun)))?;
            files.insert(ROOT.to_owned(), b);
            // Versions seen before are floors: no rollback across runs.
            if let Some(v) = self.floor_of(TIMESTAMP, |f| {
                Timestamp::from_signed(f.signed()).ok().map(|t| t.version)
            }) {
                repo.set_floor(TIMESTAMP, v);
            }
            if let Some(v) = self.floor_of(SNAPSHOT, |f| Snapshot::from_signed(f.signed()).ok().map(|s| s.version)) {
                repo.set_floor(SNAPSHOT, v);
            }
        } else {
            self.refresh_root(remote, &mut repo, &mut files)?;
        }

        let mut root_refreshed = !from_cache;
        loop {
            let ts = remote
                .get_meta(&self.gun, "timestamp.json", Limits::default().timestamp)?
                .ok_or_else(|| self.not_found(remote))?;
            if let Err(e) = repo.update_timestamp(ts.clone(), self.now) {
                if root_refreshed {
                    return Err(e.into());
                }
                // The keys may have changed in a newer root.
                self.refresh_root(remote, &mut repo, &mut files)?;
                root_refreshed = true;
                continue;
            }
            files.insert(TIMESTAMP.to_owned(), ts);
            let meta = repo
                .timestamp()
                .and_then(Timestamp::snapshot_meta)
                .cloned()
                .ok_or_else(|| seal_tuf::Error::Untrusted {
                    role: TIMESTAMP.into(),
                    reason: "the timestamp lists no snapshot".into(),
                })?;
            let snap = self.fetch_by_meta(remote, SNAPSHOT, &meta)?;
            match repo.update_snapshot(snap.clone(), self.now) {
                Ok(()) => {
                    files.insert(SNAPSHOT.to_owned(), snap);
                    break;
                }
                Err(e) => {
                    // A snapshot signed by a rotated key, or listing a newer
                    // root: verify the server's root first, then retry once.
                    if root_refreshed {
                        return Err(e.into());
                    }
                    self.refresh_root(remote, &mut repo, &mut files)?;
                    root_refreshed = true;
                }
            }
        }

        self.verify_targets_tree(&mut repo, &mut files, |role, meta| {
            self.fetch_by_meta(remote, role, meta)
        })?;

        self.cache(&files)?;
        Ok(Verified { repo, files })
    }

    fn cache(&self, files: &BTreeMap<String, Vec<u8>>) -> Result<(), ClientError> {
        for (role, bytes) in files {
            self.dir.write_meta(role, bytes)?;
        }
        Ok(())
    }

    /// Every target, each under the first role (pre-order) that signs for
    /// it within its delegated paths. `roles` restricts the listing to
    /// those roles (and what they delegate).
    pub fn list_targets(&self, roles: &[String]) -> Result<Vec<TargetEntry>, ClientError> {
        let v = self.fetch_verified()?;
        let mut seen = BTreeMap::new();
        for (role, chain) in v.roles_preorder() {
            if !roles.is_empty() && !roles.iter().any(|r| role == *r || role.starts_with(&format!("{r}/"))) {
                continue;
            }
            let Some(t) = v.repo.targets(&role) else { continue };
            for (name, meta) in &t.targets {
                if seen.contains_key(name) || !chain.iter().all(|d| d.covers(name)) {
                    continue;
                }
                seen.insert(
                    name.clone(),
                    TargetEntry {
                        name: name.clone(),
                        meta: meta.clone(),
                        role: role.clone(),
                    },
                );
            }
        }
        // Freeze protection applies to listings too.
        v.repo.lookup("", self.now)?;
        Ok(seen.into_values().collect())
    }

    /// The target `name` as the delegation tree resolves it.
    pub fn lookup(&self, name: &str) -> Result<TargetEntry, ClientError> {
        let v = self.fetch_verified()?;
        match v.repo.lookup(name, self.now)? {
            Some((role, meta)) => Ok(TargetEntry {
                name: name.to_owned(),
                meta,
                role,
            }),
            None => Err(ClientError::Invalid(format!(
                "no trust data for target {name} in {}",
                self.gun
            ))),
        }
    }

    /// The delegations of every verified targets role.
    pub fn list_delegations(&self) -> Result<Vec<DelegationEntry>, ClientError> {
        let v = self.fetch_verified()?;
        let mut out = Vec::new();
        for (role, _) in v.roles_preorder() {
            let Some(t) = v.repo.targets(&role) else { continue };
            for d in &t.delegations.roles {
                let canonical_ids = d
                    .keyids
                    .iter()
                    .map(|id| {
                        t.delegations
                            .keys
                            .get(id)
                            .map_or_else(|| id.clone(), |k| k.canonical_id())
                    })
                    .collect();
                out.push(DelegationEntry {
                    role: d.clone(),
                    canonical_ids,
                });
            }
        }
        Ok(out)
    }

    // ---- initialisation ------------------------------------------------

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
                let cert = PublicKey::new(seal_tuf::KeyType::EcdsaX509, pem.clone())
                    .or_else(|_| PublicKey::new(seal_tuf::KeyType::RsaX509, pem))
                    .map_err(|e| {
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

        let mut keys = BTreeMap::new();
        let mut roles = BTreeMap::new();
        for (role, key) in [
            (ROOT, root_public),
            (TARGETS, targets_key.public_key()),
            (SNAPSHOT, snapshot_key.public_key()),
            (TIMESTAMP, timestamp_key),
        ] {
            roles.insert(
                role.to_owned(),
                RoleKeys {
                    keyids: vec![key.id().to_owned()],
                    threshold: 1,
                },
            );
            keys.insert(key.id().to_owned(), key);
        }
        let root = Root {
            version: 1,
            expires: self.now + lifetimes().root,
            consistent_snapshot: false,
            keys,
            roles,
        };
        let targets = BTreeMap::from([(TARGETS.to_owned(), empty_targets(self.now))]);
        let mut w = Working::new(root, targets, None, BTreeMap::new(), false);
        w.root_dirty = true;
        w.dirty.insert(TARGETS.to_owned());
        self.sign_working(&mut w, pass)?;
        self.dir.clear_meta()?;
        self.cache(&w.files)
    }

    fn root_certificate(&self, key: &PrivateKey) -> Result<PublicKey, ClientError> {
        let pem = seal_tuf::certs::self_signed_cert(key, &self.gun, self.now, self.now + lifetimes().root)?;
        Ok(PublicKey::new(seal_tuf::KeyType::EcdsaX509, pem)?)
    }

    // ---- staging ------------------------------------------------------

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
        if !seal_tuf::metadata::is_delegation(role) {
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

    // ---- publishing ---------------------------------------------------

    /// The state to build on: the server's verified metadata, or the
    /// unpublished local state `init` left if the server has none.
    fn working(&self, remote: &Remote) -> Result<Working, ClientError> {
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
                Ok(Working::new(root, targets, v.repo.snapshot().cloned(), v.files, true))
            }
            Err(ClientError::NotFound { .. }) => self.local_working(),
            Err(e) => Err(e),
        }
    }

    fn local_working(&self) -> Result<Working, ClientError> {
        let read = |role: &str| -> Result<Option<(SignedFile, Vec<u8>)>, ClientError> {
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
        Ok(Working::new(root, targets, snapshot, files, false))
    }

    fn apply(&self, w: &mut Working, change: &Change) -> Result<(), ClientError> {
        match change.kind.as_str() {
            changelist::TYPE_TARGET => self.apply_target(w, change),
            changelist::TYPE_DELEGATION => apply_delegation(w, change, &mut |m| self.warn(m)),
            changelist::TYPE_WITNESS => {
                if !w.targets.contains_key(&change.role) {
                    return Err(ClientError::Invalid(format!(
                        "cannot witness {}: it has no metadata in {}",
                        change.role, self.gun
                    )));
                }
                w.dirty.insert(change.role.clone());
                Ok(())
            }
            other => Err(ClientError::Invalid(format!(
                "unknown change type {other:?} in the changelist"
            ))),
        }
    }

    fn apply_target(&self, w: &mut Working, change: &Change) -> Result<(), ClientError> {
        let role = change.role.as_str();
        if role != TARGETS {
            let chain = delegation_chain(w, role).ok_or_else(|| {
                ClientError::Invalid(format!(
                    "cannot add or remove {} in {role}: {} has no such delegation",
                    change.path, self.gun
                ))
            })?;
            if change.action != changelist::ACTION_DELETE && !chain.iter().all(|d| d.covers(&change.path)) {
                return Err(ClientError::Invalid(format!(
                    "target {} is outside the paths delegated to {role}",
                    change.path
                )));
            }
            w.targets
                .entry(role.to_owned())
                .or_insert_with(|| empty_targets(self.now));
        }
        let t = w
            .targets
            .get_mut(role)
            .ok_or_else(|| ClientError::NotInitialized(self.gun.clone()))?;
        if change.action == changelist::ACTION_DELETE {
            t.targets.remove(&change.path);
        } else {
            let v = seal_tuf::cjson::Value::parse(&change.data)
                .map_err(|e| ClientError::Invalid(format!("staged target {}: {}", change.path, e.0)))?;
            let meta = FileMeta::parse(role, &format!("targets.{}", change.path), &v)?;
            t.targets.insert(change.path.clone(), meta);
        }
        w.dirty.insert(role.to_owned());
        Ok(())
    }

    /// Private keys held locally for the listed public keys, each with the
    /// key ID the metadata lists it under.
    fn held(
        &self,
        listed: &[&PublicKey],
        pass: &mut dyn PassphraseSource,
    ) -> Result<Vec<(PrivateKey, KeyId)>, ClientError> {
        let mut out = Vec::new();
        for k in listed {
            if self.keys.find(&k.canonical_id())?.is_some() {
                let (private, _) = self.keys.load(&k.canonical_id(), pass)?;
                out.push((private, k.id().to_owned()));
            }
        }
        Ok(out)
    }

    fn holds_any(&self, listed: &[&PublicKey]) -> Result<bool, ClientError> {
        for k in listed {
            if self.keys.find(&k.canonical_id())?.is_some() {
                return Ok(true);
            }
        }
        Ok(false)
    }

    fn sign_role(
        &self,
        role: &str,
        signed: seal_tuf::cjson::Value,
        listed: &[&PublicKey],
        threshold: u32,
        extra: &[(PrivateKey, KeyId)],
        pass: &mut dyn PassphraseSource,
    ) -> Result<Vec<u8>, ClientError> {
        let held = self.held(listed, pass)?;
        let mut refs: Vec<(&PrivateKey, &str)> = held.iter().map(|(k, id)| (k, id.as_str())).collect();
        for (k, id) in extra {
            if !refs.iter().any(|(_, i)| *i == id) {
                refs.push((k, id.as_str()));
            }
        }
        if refs.is_empty() {
            return Err(ClientError::MissingKey {
                role: role.to_owned(),
                gun: self.gun.clone(),
            });
        }
        let listed_ids: BTreeSet<&str> = listed.iter().map(|k| k.id()).collect();
        let counted = refs.iter().filter(|(_, id)| listed_ids.contains(id)).count();
        if counted < threshold as usize {
            return Err(ClientError::Invalid(format!(
                "{role} needs signatures from {threshold} keys; this trust directory holds {counted}"
            )));
        }
        Ok(sign(role, signed, &refs).into_bytes())
    }

    /// Signs every dirty role (bumping versions), then the snapshot when
    /// its key is held here. `old_root_keys` also sign a changed root
    /// (rotation: signed by the previous root's keys and the new ones).
    fn sign_working_with(
        &self,
        w: &mut Working,
        old_root_signers: &[(PrivateKey, KeyId)],
        pass: &mut dyn PassphraseSource,
    ) -> Result<Vec<String>, ClientError> {
        let lt = lifetimes();
        let mut changed: Vec<String> = Vec::new();
        if w.root_dirty {
            let listed = w.root.role_key_list(ROOT);
            let threshold = w.root.role(ROOT).map_or(1, |r| r.threshold);
            let bytes = self.sign_role(ROOT, w.root.to_value(), &listed, threshold, old_root_signers, pass)?;
            w.files.insert(ROOT.to_owned(), bytes);
            changed.push(ROOT.to_owned());
        }
        let dirty: Vec<String> = w.dirty.iter().cloned().collect();
        for role in &dirty {
            let (listed, threshold): (Vec<PublicKey>, u32) = if role == TARGETS {
                (
                    w.root.role_key_list(TARGETS).into_iter().cloned().collect(),
                    w.root.role(TARGETS).map_or(1, |r| r.threshold),
                )
            } else {
                let parent = parent_role(role)
                    .and_then(|p| w.targets.get(p))
                    .ok_or_else(|| ClientError::Invalid(format!("{role}: its parent role has no metadata")))?;
                let d = parent
                    .delegation(role)
                    .ok_or_else(|| ClientError::Invalid(format!("{role} is no longer delegated; cannot sign it")))?;
                (
                    d.keyids
                        .iter()
                        .filter_map(|id| parent.delegations.keys.get(id))
                        .cloned()
                        .collect(),
                    d.threshold,
                )
            };
            let t = w
                .targets
                .get_mut(role)
                .ok_or_else(|| ClientError::Invalid(format!("{role}: no metadata")))?;
            t.version = t
                .version
                .checked_add(1)
                .filter(|v| *v <= seal_tuf::metadata::MAX_VERSION)
                .ok_or_else(|| ClientError::Invalid(format!("{role}: version would overflow")))?;
            t.expires = self.now + lt.targets;
            let value = t.to_value();
            let refs: Vec<&PublicKey> = listed.iter().collect();
            let bytes = self.sign_role(role, value, &refs, threshold, &[], pass)?;
            w.files.insert(role.clone(), bytes);
            changed.push(role.clone());
        }
        let snapshot_keys = w.root.role_key_list(SNAPSHOT);
        let local_snapshot = self.holds_any(&snapshot_keys)?;
        if local_snapshot && (!changed.is_empty() || !w.removed.is_empty() || w.snapshot.is_none()) {
            let inputs: Vec<(&str, &[u8])> = if w.snapshot.is_none() {
                w.files
                    .iter()
                    .filter(|(r, _)| *r != SNAPSHOT && *r != TIMESTAMP)
                    .map(|(r, b)| (r.as_str(), b.as_slice()))
                    .collect()
            } else {
                changed.iter().map(|r| (r.as_str(), w.files[r].as_slice())).collect()
            };
            let mut snap = next_snapshot(w.snapshot.as_ref(), &inputs, self.now, lt.snapshot)?;
            for r in &w.removed {
                snap.meta.remove(r);
            }
            let threshold = w.root.role(SNAPSHOT).map_or(1, |r| r.threshold);
            let bytes = self.sign_role(SNAPSHOT, snap.to_value(), &snapshot_keys, threshold, &[], pass)?;
            w.files.insert(SNAPSHOT.to_owned(), bytes);
            w.snapshot = Some(snap);
            changed.push(SNAPSHOT.to_owned());
        }
        Ok(changed)
    }

    fn sign_working(&self, w: &mut Working, pass: &mut dyn PassphraseSource) -> Result<Vec<String>, ClientError> {
        self.sign_working_with(w, &[], pass)
    }

    /// Uploads what changed (everything on the first publish), then caches
    /// it.
    fn upload(&self, remote: &Remote, w: &Working, changed: &[String]) -> Result<(), ClientError> {
        let roles: Vec<&String> = if w.published {
            changed.iter().collect()
        } else {
            w.files.keys().filter(|r| *r != TIMESTAMP).collect()
        };
        let files: Vec<(String, Vec<u8>)> = roles.iter().map(|r| ((*r).clone(), w.files[*r].clone())).collect();
        remote.publish(&self.gun, &files)?;
        for (role, bytes) in &files {
            self.dir.write_meta(role, bytes)?;
        }
        for role in &w.removed {
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
        let mut w = self.working(&remote)?;
        let cl = self.dir.changelist();
        let changes = cl.list()?;
        if changes.is_empty() && w.published {
            return Ok(false);
        }
        for c in &changes {
            self.apply(&mut w, c)?;
        }
        let changed = self.sign_working(&mut w, pass)?;
        self.upload(&remote, &w, &changed)?;
        cl.clear()?;
        Ok(true)
    }

    // ---- keys ---------------------------------------------------------

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
        let mut w = self.working(&remote)?;
        if !w.published {
            return Err(ClientError::Invalid(format!(
                "{} has not been published yet: publish it before rotating keys",
                self.gun
            )));
        }
        let mut old_root_signers = Vec::new();
        let new_key = match (role, server_managed) {
            (TIMESTAMP, false) => {
                return Err(ClientError::Invalid(
                    "the timestamp key is always held by the server: use --server-managed (-r)".into(),
                ))
            }
            (ROOT | TARGETS, true) => {
                return Err(ClientError::Invalid(format!(
                    "only snapshot and timestamp keys can be server-managed, not {role}"
                )))
            }
            (TIMESTAMP | SNAPSHOT, true) => remote.rotate_key(&self.gun, role)?,
            (SNAPSHOT | TARGETS, false) => {
                let k = PrivateKey::generate_ecdsa(&mut rand::rngs::OsRng);
                self.keys.add(&k, role, Some(&self.gun), pass)?;
                k.public_key()
            }
            (ROOT, false) => {
                old_root_signers = self.held(&w.root.role_key_list(ROOT), pass)?;
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
            _ => {
                return Err(ClientError::Invalid(format!(
                    "{role:?} is not a role whose key can be rotated (root, targets, snapshot, timestamp)"
                )))
            }
        };
        let old_ids = w.root.role(role).map(|r| r.keyids.clone()).unwrap_or_default();
        w.root.roles.insert(
            role.to_owned(),
            RoleKeys {
                keyids: vec![new_key.id().to_owned()],
                threshold: 1,
            },
        );
        for id in &old_ids {
            if !w.root.roles.values().any(|r| r.keyids.contains(id)) {
                w.root.keys.remove(id);
            }
        }
        w.root.keys.insert(new_key.id().to_owned(), new_key.clone());
        w.root.version += 1;
        w.root.expires = self.now + lifetimes().root;
        w.root_dirty = true;
        if role == TARGETS {
            w.dirty.insert(TARGETS.to_owned());
        }
        let changed = self.sign_working_with(&mut w, &old_root_signers, pass)?;
        self.upload(&remote, &w, &changed)?;
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

/// Whether `e` says the server cannot answer now (unreachable, TLS or
/// token service failure, or a 5xx answer), so that a read may use the
/// cache. A 4xx answer (no such collection, refused) is an answer.
fn unavailable(e: &ClientError) -> bool {
    match e {
        ClientError::Offline { .. } => true,
        ClientError::Server { status, .. } => *status >= 500,
        _ => false,
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
    if role == TARGETS || seal_tuf::metadata::is_delegation(role) {
        Ok(())
    } else {
        Err(ClientError::Invalid(format!(
            "{role:?} is not a targets role (targets or targets/<name>)"
        )))
    }
}

/// The delegations from `targets` down to `role`, if every link exists.
fn delegation_chain(w: &Working, role: &str) -> Option<Vec<DelegatedRole>> {
    let parent = parent_role(role)?;
    let d = w.targets.get(parent)?.delegation(role)?.clone();
    let mut chain = if parent == TARGETS {
        Vec::new()
    } else {
        delegation_chain(w, parent)?
    };
    chain.push(d);
    Some(chain)
}

/// Applies a delegation change as Notary's client does. `delete` with no
/// keys or paths (Notary's only kind) removes the role and everything
/// below it; `create` adds the role if needed, then keys and paths;
/// `update` (and `delete` with keys or paths, as older Seal versions
/// staged removals) changes an existing role. A role left with fewer keys
/// than its threshold is allowed, with a warning, as in Notary: it signs
/// nothing until keys are added, and readers skip its file.
fn apply_delegation(w: &mut Working, change: &Change, warn: &mut dyn FnMut(String)) -> Result<(), ClientError> {
    let role = change.role.as_str();
    let parent_name = parent_role(role)
        .ok_or_else(|| ClientError::Invalid(format!("{role:?} is not a delegation role")))?
        .to_owned();
    let d: DelegationChange = changelist::data(change)?;
    let parent = w.targets.get_mut(&parent_name).ok_or_else(|| {
        ClientError::Invalid(format!(
            "cannot delegate {role}: its parent {parent_name} has no metadata yet"
        ))
    })?;
    let pos = parent.delegations.roles.iter().position(|r| r.name == role);
    let wipe = change.action == changelist::ACTION_DELETE
        && d.remove_keys.is_empty()
        && d.remove_paths.is_empty()
        && !d.clear_all_paths;
    if wipe {
        if let Some(i) = pos {
            parent.delegations.roles.remove(i);
        }
        prune_keys(&mut parent.delegations);
        w.dirty.insert(parent_name);
        // The role and everything below it go.
        let gone: Vec<String> = w
            .targets
            .keys()
            .filter(|r| *r == role || r.starts_with(&format!("{role}/")))
            .cloned()
            .collect();
        for r in gone {
            w.targets.remove(&r);
            w.files.remove(&r);
            w.dirty.remove(&r);
            w.removed.insert(r);
        }
        return Ok(());
    }
    let i = match pos {
        Some(i) => i,
        None => {
            if change.action != changelist::ACTION_CREATE {
                return Err(ClientError::Invalid(format!(
                    "{role} is not delegated in {parent_name}"
                )));
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
    for k in &d.add_keys {
        let key = PublicKey::from_json(k.to_string().as_bytes())?;
        let id = key.id().to_owned();
        parent.delegations.keys.insert(id.clone(), key);
        let r = &mut parent.delegations.roles[i];
        if !r.keyids.contains(&id) {
            r.keyids.push(id);
        }
    }
    let keys = parent.delegations.keys.clone();
    let r = &mut parent.delegations.roles[i];
    for id in &d.remove_keys {
        // Either the listed ID or the canonical one the CLI prints.
        r.keyids
            .retain(|k| k != id && keys.get(k).is_none_or(|pk| pk.canonical_id() != *id));
    }
    if d.clear_all_paths {
        r.paths.clear();
    }
    r.paths.retain(|p| !d.remove_paths.contains(p));
    for p in &d.add_paths {
        if !r.paths.contains(p) {
            r.paths.push(p.clone());
        }
    }
    if d.new_threshold > 0 {
        r.threshold = d.new_threshold;
    }
    if r.keyids.len() < r.threshold as usize {
        warn(format!(
            "role {role} has fewer keys than its threshold of {}; it will not be usable until keys are added to it",
            r.threshold
        ));
    }
    prune_keys(&mut parent.delegations);
    w.dirty.insert(parent_name);
    Ok(())
}

/// Drops delegation keys no role lists any more.
fn prune_keys(d: &mut Delegations) {
    let used: BTreeSet<KeyId> = d.roles.iter().flat_map(|r| r.keyids.iter().cloned()).collect();
    d.keys.retain(|id, _| used.contains(id));
}
