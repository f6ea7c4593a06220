//! The client's verification workflow, as Notary's client follows it:
//! trust on first use or pinned root keys, root rotation, then timestamp →
//! snapshot → targets → delegations, each checked for signatures by a
//! threshold of the keys above it, hashes and length, expiry (freeze) and
//! version (rollback), within size limits (endless data). Target lookup
//! walks the delegation tree and honours delegated paths.
//!
//! Pure: the caller downloads bytes (at most [`Limits`] of them) and hands
//! them in with `now`.

use std::collections::BTreeMap;

use time::OffsetDateTime;

use crate::error::Error;
use crate::keys::KeyId;
use crate::metadata::{
    parent_role, DelegatedRole, FileMeta, Root, SignedFile, Snapshot, Targets, Timestamp, ROOT, SNAPSHOT, TARGETS,
    TIMESTAMP,
};
use crate::update::{valid_root_keys, verify_root_by_previous};
use crate::verify::{check_expiry, listed_keys, verify_threshold};

/// Download size limits for files whose length nothing vouches for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// root.json (Notary: 100 MiB, `MaxDownloadSize`).
    pub root: u64,
    /// timestamp.json (Notary: 1 MiB, `MaxTimestampSize`).
    pub timestamp: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            root: 100 << 20,
            timestamp: 1 << 20,
        }
    }
}

/// How the first root is trusted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrustPin {
    /// Trust on first use: the first root seen is trusted if it is signed
    /// by a threshold of its own valid root certificates.
    Tofu,
    /// Only these root certificate key IDs (metadata ID or the canonical ID
    /// Notary's CLI prints) count as root keys (`trust_pinning.certs`).
    Keys(Vec<KeyId>),
}

/// The root key IDs `trust_pinning.certs` pins for `gun`, by Notary's
/// rules: an entry for the GUN itself, else the longest entry ending in
/// `*` whose text before that one `*` starts the GUN (`docker.io/*` pins
/// `docker.io/library/app`). `None`: nothing pinned.
pub fn pinned_keys<'a>(gun: &str, certs: &'a BTreeMap<String, Vec<KeyId>>) -> Option<&'a Vec<KeyId>> {
    if let Some(ids) = certs.get(gun) {
        return Some(ids);
    }
    certs
        .iter()
        .filter(|(pattern, _)| pattern.strip_suffix('*').is_some_and(|prefix| gun.starts_with(prefix)))
        .max_by_key(|(pattern, _)| pattern.len())
        .map(|(_, ids)| ids)
}

/// A collection's trusted metadata on the client.
#[derive(Debug, Clone)]
pub struct Repo {
    gun: String,
    pin: TrustPin,
    limits: Limits,
    root: Option<(Root, SignedFile)>,
    timestamp: Option<Timestamp>,
    snapshot: Option<Snapshot>,
    targets: BTreeMap<String, Targets>,
    floors: BTreeMap<String, u64>,
}

impl Repo {
    /// A repository with nothing trusted yet.
    pub fn new(gun: &str, pin: TrustPin, limits: Limits) -> Repo {
        Repo {
            gun: gun.to_owned(),
            pin,
            limits,
            root: None,
            timestamp: None,
            snapshot: None,
            targets: BTreeMap::new(),
            floors: BTreeMap::new(),
        }
    }

    /// Records the version of `role` trusted earlier (from the local
    /// cache): no file of a lower version is accepted afterwards.
    pub fn set_floor(&mut self, role: &str, version: u64) {
        let f = self.floors.entry(role.to_owned()).or_insert(0);
        *f = (*f).max(version);
    }

    /// The trusted root, if any.
    pub fn root(&self) -> Option<&Root> {
        self.root.as_ref().map(|(r, _)| r)
    }

    /// The verified timestamp, if any.
    pub fn timestamp(&self) -> Option<&Timestamp> {
        self.timestamp.as_ref()
    }

    /// The verified snapshot, if any.
    pub fn snapshot(&self) -> Option<&Snapshot> {
        self.snapshot.as_ref()
    }

    /// A verified targets role, if loaded.
    pub fn targets(&self, role: &str) -> Option<&Targets> {
        self.targets.get(role)
    }

    fn check_floor(&self, role: &str, version: u64) -> Result<(), Error> {
        match self.floors.get(role) {
            Some(&trusted) if version < trusted => Err(Error::Rollback {
                role: role.to_owned(),
                trusted,
                got: version,
            }),
            _ => Ok(()),
        }
    }

    fn pinned_root_ok(&self, root: &Root, file: &SignedFile, now: OffsetDateTime) -> Result<(), Error> {
        let mut keys = valid_root_keys(root, &self.gun, Some(now));
        if let TrustPin::Keys(pins) = &self.pin {
            keys.retain(|k| pins.iter().any(|p| p == k.id() || *p == k.canonical_id()));
        }
        if keys.is_empty() {
            return Err(Error::Untrusted {
                role: ROOT.into(),
                reason: format!("no valid (or pinned) root certificate for {}", self.gun),
            });
        }
        let threshold = root.role(ROOT).map_or(1, |r| r.threshold);
        verify_threshold(file, &keys, threshold).map(|_| ())
    }

    /// Verifies a root: the first one on trust (TOFU or pins), a newer one
    /// only if signed by a threshold of the trusted root's keys and of its
    /// own. A newer root more than one version ahead is accepted when the
    /// trusted root signed it; otherwise walk the versions one by one.
    pub fn update_root(&mut self, bytes: Vec<u8>, now: OffsetDateTime) -> Result<(), Error> {
        self.check_size(ROOT, bytes.len(), self.limits.root)?;
        let file = SignedFile::parse(ROOT, bytes)?;
        let root = Root::from_signed(file.signed())?;
        self.check_floor(ROOT, root.version)?;
        match &self.root {
            None => self.pinned_root_ok(&root, &file, now)?,
            Some((trusted, trusted_file)) => {
                if root.version < trusted.version {
                    return Err(Error::Rollback {
                        role: ROOT.into(),
                        trusted: trusted.version,
                        got: root.version,
                    });
                }
                if root.version == trusted.version {
                    if file.canonical_signed() != trusted_file.canonical_signed() {
                        return Err(Error::Untrusted {
                            role: ROOT.into(),
                            reason: format!("a different root with the trusted version {}", root.version),
                        });
                    }
                } else {
                    verify_root_by_previous(&self.gun, trusted, &file)?;
                }
                self.pinned_root_ok(&root, &file, now)?;
            }
        }
        // An expired root never extends a freeze (NCC 2015).
        check_expiry(ROOT, root.expires, now)?;
        if let Some((trusted, _)) = &self.root {
            if trusted.version != root.version {
                // Keys changed: everything below must be verified afresh.
                self.timestamp = None;
                self.snapshot = None;
                self.targets.clear();
            }
        }
        self.set_floor(ROOT, root.version);
        self.root = Some((root, file));
        Ok(())
    }

    /// Installs the root this client verified on an earlier run (its local
    /// cache) as the trust anchor. It must still be signed by a threshold of
    /// its own valid (or pinned) root keys, but it may have expired: an
    /// expired cached root is only a starting point to verify the newer root
    /// the server offers, and [`Repo::lookup`] refuses to answer while the
    /// trusted root is expired.
    pub fn load_trusted_root(&mut self, bytes: Vec<u8>, now: OffsetDateTime) -> Result<(), Error> {
        self.check_size(ROOT, bytes.len(), self.limits.root)?;
        let file = SignedFile::parse(ROOT, bytes)?;
        let root = Root::from_signed(file.signed())?;
        self.check_floor(ROOT, root.version)?;
        self.pinned_root_ok(&root, &file, now)?;
        self.set_floor(ROOT, root.version);
        self.root = Some((root, file));
        self.timestamp = None;
        self.snapshot = None;
        self.targets.clear();
        Ok(())
    }

    /// The trusted root file's exact bytes, if any.
    pub fn root_bytes(&self) -> Option<&[u8]> {
        self.root.as_ref().map(|(_, f)| f.bytes())
    }

    fn trusted_root(&self) -> Result<&Root, Error> {
        self.root.as_ref().map(|(r, _)| r).ok_or_else(|| Error::Untrusted {
            role: ROOT.into(),
            reason: "no trusted root".into(),
        })
    }

    fn check_size(&self, role: &str, size: usize, limit: u64) -> Result<(), Error> {
        let size = size as u64;
        if size > limit {
            return Err(Error::TooLarge {
                role: role.to_owned(),
                size,
                limit,
            });
        }
        Ok(())
    }

    /// Verifies timestamp.json: signed by the root's timestamp keys, not
    /// expired, not older than the trusted one.
    pub fn update_timestamp(&mut self, bytes: Vec<u8>, now: OffsetDateTime) -> Result<(), Error> {
        self.check_size(TIMESTAMP, bytes.len(), self.limits.timestamp)?;
        let root = self.trusted_root()?;
        let file = SignedFile::parse(TIMESTAMP, bytes)?;
        let rk = root.role(TIMESTAMP).ok_or_else(|| Error::Untrusted {
            role: TIMESTAMP.into(),
            reason: "root lists no timestamp role".into(),
        })?;
        verify_threshold(&file, &listed_keys(&root.keys, rk), rk.threshold)?;
        let ts = Timestamp::from_signed(file.signed())?;
        self.check_floor(TIMESTAMP, ts.version)?;
        check_expiry(TIMESTAMP, ts.expires, now)?;
        self.set_floor(TIMESTAMP, ts.version);
        self.timestamp = Some(ts);
        Ok(())
    }

    /// The most bytes to download for `role`: the length the metadata above
    /// vouches for, else the limit.
    pub fn max_size(&self, role: &str) -> u64 {
        match role {
            ROOT => self.limits.root,
            TIMESTAMP => self.limits.timestamp,
            SNAPSHOT => self
                .timestamp
                .as_ref()
                .and_then(|t| t.snapshot_meta())
                .map_or(0, |m| m.length as u64),
            _ => self
                .snapshot
                .as_ref()
                .and_then(|s| s.meta.get(role))
                .map_or(0, |m| m.length as u64),
        }
    }

    /// Verifies snapshot.json against the timestamp's hashes and length,
    /// the root's snapshot keys, expiry and rollback.
    pub fn update_snapshot(&mut self, bytes: Vec<u8>, now: OffsetDateTime) -> Result<(), Error> {
        let meta = self
            .timestamp
            .as_ref()
            .and_then(|t| t.snapshot_meta())
            .cloned()
            .ok_or_else(|| Error::Untrusted {
                role: SNAPSHOT.into(),
                reason: "no verified timestamp vouches for it".into(),
            })?;
        self.check_size(SNAPSHOT, bytes.len(), meta.length as u64)?;
        meta.check(SNAPSHOT, &bytes)?;
        let root = self.trusted_root()?;
        let file = SignedFile::parse(SNAPSHOT, bytes)?;
        let rk = root.role(SNAPSHOT).ok_or_else(|| Error::Untrusted {
            role: SNAPSHOT.into(),
            reason: "root lists no snapshot role".into(),
        })?;
        verify_threshold(&file, &listed_keys(&root.keys, rk), rk.threshold)?;
        let snap = Snapshot::from_signed(file.signed())?;
        self.check_floor(SNAPSHOT, snap.version)?;
        check_expiry(SNAPSHOT, snap.expires, now)?;
        // The root in use must be the one the snapshot lists (mix-and-match).
        if let (Some(m), Some((_, root_file))) = (snap.meta.get(ROOT), &self.root) {
            m.check(ROOT, root_file.bytes()).map_err(|_| Error::Untrusted {
                role: SNAPSHOT.into(),
                reason: "snapshot lists a different root than the trusted one".into(),
            })?;
        }
        self.set_floor(SNAPSHOT, snap.version);
        self.snapshot = Some(snap);
        self.targets.clear();
        Ok(())
    }

    /// Verifies `targets` or a delegated role against the snapshot's hashes
    /// and length, its parent's keys and threshold, expiry and rollback.
    /// The parent must have been verified first.
    pub fn update_targets(&mut self, role: &str, bytes: Vec<u8>, now: OffsetDateTime) -> Result<(), Error> {
        let meta = self
            .snapshot
            .as_ref()
            .and_then(|s| s.meta.get(role))
            .cloned()
            .ok_or_else(|| Error::Untrusted {
                role: role.to_owned(),
                reason: "the snapshot does not list it".into(),
            })?;
        self.check_size(role, bytes.len(), meta.length as u64)?;
        meta.check(role, &bytes)?;
        let file = SignedFile::parse(role, bytes)?;
        if role == TARGETS {
            let root = self.trusted_root()?;
            let rk = root.role(TARGETS).ok_or_else(|| Error::Untrusted {
                role: role.to_owned(),
                reason: "root lists no targets role".into(),
            })?;
            verify_threshold(&file, &listed_keys(&root.keys, rk), rk.threshold)?;
        } else {
            let parent = parent_role(role).ok_or_else(|| Error::InvalidRole(role.to_owned()))?;
            let ptargets = self.targets.get(parent).ok_or_else(|| Error::Untrusted {
                role: role.to_owned(),
                reason: format!("parent {parent} is not verified"),
            })?;
            let d = ptargets.delegation(role).ok_or_else(|| Error::Untrusted {
                role: role.to_owned(),
                reason: format!("{parent} does not delegate to it"),
            })?;
            verify_threshold(
                &file,
                &d.keyids
                    .iter()
                    .filter_map(|id| ptargets.delegations.keys.get(id))
                    .collect::<Vec<_>>(),
                d.threshold,
            )?;
        }
        let targets = Targets::from_signed(role, file.signed())?;
        self.check_floor(role, targets.version)?;
        check_expiry(role, targets.expires, now)?;
        self.set_floor(role, targets.version);
        self.targets.insert(role.to_owned(), targets);
        Ok(())
    }

    /// The verified targets roles in pre-order (parents before children,
    /// delegations in their listed order), each with the delegations that
    /// lead to it from `targets`.
    pub fn roles_preorder(&self) -> Vec<(&str, Vec<&DelegatedRole>)> {
        let mut out = Vec::new();
        let mut stack: Vec<(&str, Vec<&DelegatedRole>)> = vec![(TARGETS, Vec::new())];
        while let Some((role, chain)) = stack.pop() {
            let Some((name, t)) = self.targets.get_key_value(role) else {
                continue;
            };
            for d in t.delegations.roles.iter().rev() {
                let mut c = chain.clone();
                c.push(d);
                stack.push((d.name.as_str(), c));
            }
            out.push((name.as_str(), chain));
        }
        out
    }

    /// Every target of the verified roles, by name, with the role that
    /// signs for it: the first role in pre-order that lists it inside the
    /// paths of every delegation leading to it, which is the role
    /// [`Repo::lookup`] resolves it to. With `roles` given, only those roles
    /// and the roles below them are listed. Expiry is not checked here.
    pub fn list_targets(&self, roles: &[String]) -> BTreeMap<String, (String, FileMeta)> {
        let mut seen = BTreeMap::new();
        for (role, chain) in self.roles_preorder() {
            if !roles.is_empty() && !roles.iter().any(|r| role == r || role.starts_with(&format!("{r}/"))) {
                continue;
            }
            let Some(t) = self.targets.get(role) else { continue };
            for (name, meta) in &t.targets {
                if seen.contains_key(name) || !chain.iter().all(|d| d.covers(name)) {
                    continue;
                }
                seen.insert(name.clone(), (role.to_owned(), meta.clone()));
            }
        }
        seen
    }

    /// Delegated roles that a lookup of `name` would need and that are not
    /// verified yet, in the order to fetch them.
    pub fn roles_to_fetch(&self, name: &str) -> Vec<String> {
        let mut out = Vec::new();
        let mut stack = vec![TARGETS.to_owned()];
        while let Some(role) = stack.pop() {
            let Some(t) = self.targets.get(&role) else {
                if self.snapshot.as_ref().is_some_and(|s| s.meta.contains_key(&role)) {
                    out.push(role);
                }
                continue;
            };
            for d in t.delegations.roles.iter().rev() {
                if d.covers(name) {
                    stack.push(d.name.clone());
                }
            }
        }
        out
    }

    /// Looks `name` up through the delegation tree (pre-order, delegations
    /// in listed order), honouring delegated paths at every level. Fails if
    /// any verified metadata has expired since (freeze protection).
    pub fn lookup(&self, name: &str, now: OffsetDateTime) -> Result<Option<(String, FileMeta)>, Error> {
        if let Some(ts) = &self.timestamp {
            check_expiry(TIMESTAMP, ts.expires, now)?;
        }
        if let Some(s) = &self.snapshot {
            check_expiry(SNAPSHOT, s.expires, now)?;
        }
        if let Some((r, _)) = &self.root {
            check_expiry(ROOT, r.expires, now)?;
        }
        self.walk(TARGETS, name, &mut Vec::new(), now)
    }

    fn walk<'a>(
        &'a self,
        role: &str,
        name: &str,
        chain: &mut Vec<&'a DelegatedRole>,
        now: OffsetDateTime,
    ) -> Result<Option<(String, FileMeta)>, Error> {
        let Some(t) = self.targets.get(role) else {
            return Ok(None);
        };
        check_expiry(role, t.expires, now)?;
        if chain.iter().all(|d| d.covers(name)) {
            if let Some(meta) = t.targets.get(name) {
                return Ok(Some((role.to_owned(), meta.clone())));
            }
        }
        for d in &t.delegations.roles {
            if !d.covers(name) {
                continue;
            }
            chain.push(d);
            let found = self.walk(&d.name, name, chain, now)?;
            chain.pop();
            if found.is_some() {
                return Ok(found);
            }
        }
        Ok(None)
    }
}

/// Checks downloaded target content against its metadata.
pub fn verify_target(name: &str, meta: &FileMeta, bytes: &[u8]) -> Result<(), Error> {
    meta.check(name, bytes)
}
