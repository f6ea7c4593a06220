//! Reading a collection: verified downloads (root rotation, floors, the
//! delegation tree), the cached metadata standing in for a server that
//! cannot answer, and the listings and lookups built on them.

use std::collections::BTreeMap;

use seal_tuf::client::{Limits, Repo};
use seal_tuf::metadata::{ROOT, SNAPSHOT, TARGETS, TIMESTAMP};
use seal_tuf::verify::check_expiry;
use seal_tuf::{FileMeta, Root, SignedFile, Snapshot, Timestamp};

use super::{parse_role_file, DelegationEntry, Repository, TargetEntry, Verified};
use crate::error::ClientError;
use crate::remote::Remote;

impl Repository {
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
        if let Some(r) = repo.root() {
            check_expiry(ROOT, r.expires, self.now)?;
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

    pub(super) fn fetch_verified_from(&self, remote: &Remote) -> Result<Verified, ClientError> {
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

    pub(super) fn cache(&self, files: &BTreeMap<String, Vec<u8>>) -> Result<(), ClientError> {
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
        let listed = v.repo.list_targets(roles);
        // Freeze protection applies to listings too.
        v.repo.lookup("", self.now)?;
        Ok(listed
            .into_iter()
            .map(|(name, (role, meta))| TargetEntry { name, meta, role })
            .collect())
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
        for (role, _) in v.repo.roles_preorder() {
            let Some(t) = v.repo.targets(role) else { continue };
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
