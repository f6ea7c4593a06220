//! The client's update workflow (TUF 1.0 spec §5.3–5.6) as a pure trusted
//! set, after python-tuf's `TrustedMetadataSet`: the caller fetches bytes,
//! this module decides what to trust. `now` is always an argument.
//!
//! Order: [`TrustedSet::new`] with the trusted root, optionally the
//! previously trusted timestamp and snapshot from the local cache
//! ([`TrustedSet::load_previous_timestamp`],
//! [`TrustedSet::load_previous_snapshot`], the references for rollback
//! checks), then [`TrustedSet::update_root`] for each newer root,
//! [`TrustedSet::update_timestamp`], [`TrustedSet::update_snapshot`],
//! [`TrustedSet::update_targets`], and [`TargetSearch`] to find a target,
//! loading delegated roles as it asks.
//!
//! Fast-forward recovery (§5.3.11): when a new root changes the keys or
//! threshold of the timestamp or snapshot role, the previously trusted
//! timestamp and snapshot are dropped, so versions inflated by an attacker
//! who held the old keys no longer block updates.

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, BTreeSet};

use time::OffsetDateTime;

use crate::tuf1::error::Error;
use crate::tuf1::metadata::{
    Delegator, Metadata, Root, Snapshot, TargetFile, Targets, Timestamp, ROOT, SNAPSHOT, TARGETS, TIMESTAMP,
};

/// Delegated roles a target search visits at most, as python-tuf's default.
pub const MAX_DELEGATIONS: usize = 32;
/// Root versions a client steps through in one update at most, as
/// python-tuf's default.
pub const MAX_ROOT_ROTATIONS: u64 = 256;
/// Largest `root.json` a client downloads (python-tuf's default).
pub const ROOT_MAX_LENGTH: usize = 512_000;
/// Largest `timestamp.json` a client downloads (python-tuf's default).
pub const TIMESTAMP_MAX_LENGTH: usize = 16_384;
/// Largest snapshot a client downloads when the timestamp gives no length
/// (python-tuf's default).
pub const SNAPSHOT_MAX_LENGTH: usize = 2_000_000;
/// Largest targets role a client downloads when the snapshot gives no
/// length (python-tuf's default).
pub const TARGETS_MAX_LENGTH: usize = 5_000_000;

/// What [`TrustedSet::update_timestamp`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimestampUpdate {
    /// The new timestamp is now trusted.
    Updated,
    /// The new timestamp has the trusted one's version: the trusted one is
    /// kept (and is now current).
    Unchanged,
}

/// The metadata a client trusts, built up one verified file at a time.
#[derive(Debug, Clone)]
pub struct TrustedSet {
    root: Metadata<Root>,
    timestamp: Option<Metadata<Timestamp>>,
    timestamp_current: bool,
    snapshot: Option<Metadata<Snapshot>>,
    snapshot_current: bool,
    targets: BTreeMap<String, Metadata<Targets>>,
    delegations: BTreeSet<(String, String)>,
}

fn check_expiry(role: &str, expires: OffsetDateTime, now: OffsetDateTime) -> Result<(), Error> {
    if now >= expires {
        return Err(Error::Expired {
            role: role.to_owned(),
            expires,
        });
    }
    Ok(())
}

impl TrustedSet {
    /// Starts from a trusted root (shipped with the client or cached),
    /// which must be signed by its own root threshold. Its expiry is not
    /// checked: a newer root may follow.
    pub fn new(root_bytes: &[u8]) -> Result<TrustedSet, Error> {
        let root: Metadata<Root> = Metadata::from_bytes(ROOT, root_bytes)?;
        root.verify_by(ROOT, ROOT, root.signed())?;
        Ok(TrustedSet {
            root,
            timestamp: None,
            timestamp_current: false,
            snapshot: None,
            snapshot_current: false,
            targets: BTreeMap::new(),
            delegations: BTreeSet::new(),
        })
    }

    /// The trusted root.
    pub fn root(&self) -> &Metadata<Root> {
        &self.root
    }

    /// The trusted timestamp (previous or current).
    pub fn timestamp(&self) -> Option<&Metadata<Timestamp>> {
        self.timestamp.as_ref()
    }

    /// The trusted snapshot (previous or current).
    pub fn snapshot(&self) -> Option<&Metadata<Snapshot>> {
        self.snapshot.as_ref()
    }

    /// The trusted targets role `role` (top-level `targets` or delegated).
    pub fn targets(&self, role: &str) -> Option<&Metadata<Targets>> {
        self.targets.get(role)
    }

    /// Whether `role` was loaded as delegated by `delegator`.
    pub fn contains(&self, role: &str, delegator: &str) -> bool {
        self.delegations.contains(&(delegator.to_owned(), role.to_owned()))
    }

    /// Loads the timestamp trusted in an earlier session, as the reference
    /// for rollback checks: signatures are checked against the current
    /// root, expiry is not. Only before [`TrustedSet::update_timestamp`].
    /// An error means the cached file is unusable: go on without it.
    pub fn load_previous_timestamp(&mut self, bytes: &[u8]) -> Result<(), Error> {
        if self.timestamp_current {
            return Err(Error::Order("previous timestamp after a new timestamp"));
        }
        let ts: Metadata<Timestamp> = Metadata::from_bytes(TIMESTAMP, bytes)?;
        ts.verify_by(TIMESTAMP, ROOT, self.root.signed())?;
        self.timestamp = Some(ts);
        Ok(())
    }

    /// Loads the snapshot trusted in an earlier session, as the reference
    /// for rollback checks of the roles it lists: signatures are checked
    /// against the current root, expiry is not. Only before
    /// [`TrustedSet::update_snapshot`]. An error means the cached file is
    /// unusable: go on without it.
    pub fn load_previous_snapshot(&mut self, bytes: &[u8]) -> Result<(), Error> {
        if self.snapshot_current {
            return Err(Error::Order("previous snapshot after a new snapshot"));
        }
        let sn: Metadata<Snapshot> = Metadata::from_bytes(SNAPSHOT, bytes)?;
        sn.verify_by(SNAPSHOT, ROOT, self.root.signed())?;
        self.snapshot = Some(sn);
        Ok(())
    }

    /// Trusts root version N+1, signed by the thresholds of both the
    /// trusted root and itself (§5.3.4–5.3.5). Expiry is not checked until
    /// the chain ends (at [`TrustedSet::update_timestamp`]).
    pub fn update_root(&mut self, bytes: &[u8]) -> Result<&Metadata<Root>, Error> {
        if self.timestamp_current {
            return Err(Error::Order("root after timestamp"));
        }
        let new: Metadata<Root> = Metadata::from_bytes(ROOT, bytes)?;
        let expected = self.root.version().saturating_add(1);
        if new.version() != expected {
            return Err(Error::WrongVersion {
                role: ROOT.to_owned(),
                expected,
                got: new.version(),
            });
        }
        new.verify_by(ROOT, ROOT, self.root.signed())?;
        new.verify_by(ROOT, ROOT, new.signed())?;
        let rotated = |role: &str| {
            self.root.signed().role(role) != new.signed().role(role)
                || self.root.signed().role_keys(role) != new.signed().role_keys(role)
        };
        if rotated(TIMESTAMP) || rotated(SNAPSHOT) {
            self.timestamp = None;
            self.snapshot = None;
        }
        self.root = new;
        Ok(&self.root)
    }

    /// Trusts a new timestamp (§5.4): the final root must not have expired;
    /// signed by root's timestamp threshold; its version and the snapshot
    /// version it names not lower than the trusted timestamp's; not
    /// expired. A timestamp of the trusted version leaves the trusted one.
    pub fn update_timestamp(&mut self, bytes: &[u8], now: OffsetDateTime) -> Result<TimestampUpdate, Error> {
        if self.snapshot_current {
            return Err(Error::Order("timestamp after snapshot"));
        }
        check_expiry(ROOT, self.root.expires(), now)?;
        let new: Metadata<Timestamp> = Metadata::from_bytes(TIMESTAMP, bytes)?;
        new.verify_by(TIMESTAMP, ROOT, self.root.signed())?;
        if let Some(old) = &self.timestamp {
            if new.version() < old.version() {
                return Err(Error::Rollback {
                    role: TIMESTAMP.to_owned(),
                    trusted: old.version(),
                    got: new.version(),
                });
            }
            if new.version() == old.version() {
                check_expiry(TIMESTAMP, old.expires(), now)?;
                self.timestamp_current = true;
                return Ok(TimestampUpdate::Unchanged);
            }
            let (old_sn, new_sn) = (old.signed().snapshot_meta.version, new.signed().snapshot_meta.version);
            if new_sn < old_sn {
                return Err(Error::Rollback {
                    role: SNAPSHOT.to_owned(),
                    trusted: old_sn,
                    got: new_sn,
                });
            }
        }
        check_expiry(TIMESTAMP, new.expires(), now)?;
        self.timestamp = Some(new);
        self.timestamp_current = true;
        Ok(TimestampUpdate::Updated)
    }

    fn current_timestamp(&self, now: OffsetDateTime) -> Result<&Metadata<Timestamp>, Error> {
        match &self.timestamp {
            Some(ts) if self.timestamp_current => {
                check_expiry(TIMESTAMP, ts.expires(), now)?;
                Ok(ts)
            }
            _ => Err(Error::Order("snapshot before timestamp")),
        }
    }

    /// Trusts a new snapshot (§5.5): length and hashes as the timestamp
    /// lists them (when it does); signed by root's snapshot threshold; no
    /// role the trusted snapshot lists is missing or has a lower version;
    /// not expired; its version the one the timestamp names.
    pub fn update_snapshot(&mut self, bytes: &[u8], now: OffsetDateTime) -> Result<&Metadata<Snapshot>, Error> {
        if !self.targets.is_empty() {
            return Err(Error::Order("snapshot after targets"));
        }
        let meta = self.current_timestamp(now)?.signed().snapshot_meta.clone();
        meta.verify(SNAPSHOT, bytes)?;
        let new: Metadata<Snapshot> = Metadata::from_bytes(SNAPSHOT, bytes)?;
        new.verify_by(SNAPSHOT, ROOT, self.root.signed())?;
        if let Some(old) = &self.snapshot {
            for (file, old_meta) in &old.signed().meta {
                let new_meta = new.signed().meta.get(file).ok_or_else(|| Error::MissingMeta {
                    referrer: SNAPSHOT.to_owned(),
                    file: file.clone(),
                })?;
                if new_meta.version < old_meta.version {
                    return Err(Error::Rollback {
                        role: file.clone(),
                        trusted: old_meta.version,
                        got: new_meta.version,
                    });
                }
            }
        }
        check_expiry(SNAPSHOT, new.expires(), now)?;
        if new.version() != meta.version {
            return Err(Error::WrongVersion {
                role: SNAPSHOT.to_owned(),
                expected: meta.version,
                got: new.version(),
            });
        }
        self.snapshot_current = true;
        Ok(self.snapshot.insert(new))
    }

    /// Trusts a new top-level targets role (§5.6).
    pub fn update_targets(&mut self, bytes: &[u8], now: OffsetDateTime) -> Result<&Metadata<Targets>, Error> {
        self.update_delegated_targets(TARGETS, ROOT, bytes, now)
    }

    /// Trusts targets role `role` as delegated by `delegator` (`root` for
    /// the top-level targets; otherwise a trusted targets role): length and
    /// hashes as the snapshot lists them (when it does); signed by the keys
    /// and threshold the delegator gives it; its version the one the
    /// snapshot names; not expired.
    pub fn update_delegated_targets(
        &mut self,
        role: &str,
        delegator: &str,
        bytes: &[u8],
        now: OffsetDateTime,
    ) -> Result<&Metadata<Targets>, Error> {
        let snapshot = match &self.snapshot {
            Some(s) if self.snapshot_current => s,
            _ => return Err(Error::Order("targets before snapshot")),
        };
        check_expiry(SNAPSHOT, snapshot.expires(), now)?;
        let delegator_md: &dyn Delegator = if delegator == ROOT {
            self.root.signed()
        } else {
            match self.targets.get(delegator) {
                Some(t) => t.signed(),
                None => return Err(Error::Order("delegated targets before their delegator")),
            }
        };
        let file = format!("{role}.json");
        let meta = snapshot.signed().meta.get(&file).ok_or_else(|| Error::MissingMeta {
            referrer: SNAPSHOT.to_owned(),
            file: file.clone(),
        })?;
        meta.verify(role, bytes)?;
        let new: Metadata<Targets> = Metadata::from_bytes(role, bytes)?;
        new.verify_by(role, delegator, delegator_md)?;
        if new.version() != meta.version {
            return Err(Error::WrongVersion {
                role: role.to_owned(),
                expected: meta.version,
                got: new.version(),
            });
        }
        check_expiry(role, new.expires(), now)?;
        self.delegations.insert((delegator.to_owned(), role.to_owned()));
        Ok(match self.targets.entry(role.to_owned()) {
            Entry::Occupied(mut o) => {
                o.insert(new);
                o.into_mut()
            }
            Entry::Vacant(v) => v.insert(new),
        })
    }
}

/// What a [`TargetSearch`] needs or found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SearchStep<'a> {
    /// Load `role` as delegated by `delegator` (fetch `<role>.json` and call
    /// [`TrustedSet::update_delegated_targets`]), then call `next` again.
    Load {
        /// The role to load.
        role: String,
        /// The role that delegates it.
        delegator: String,
    },
    /// The target, as the most trusted role listing it describes it.
    Found {
        /// The role whose entry this is.
        role: String,
        /// The entry.
        target: &'a TargetFile,
    },
    /// No role trusted for the path lists it (or the search limit was hit).
    NotFound,
}

/// A pre-order depth-first search of the delegation tree for one target
/// path (§5.6.7), as python-tuf walks it: roles in listed order, a
/// terminating role cuts off the roles not yet visited, each role name
/// visited once, at most [`MAX_DELEGATIONS`] roles by default.
#[derive(Debug, Clone)]
pub struct TargetSearch {
    path: String,
    stack: Vec<(String, String)>,
    visited: BTreeSet<String>,
    max: usize,
}

impl TargetSearch {
    /// A search for `path`, starting at the top-level targets role.
    pub fn new(path: &str) -> TargetSearch {
        TargetSearch::with_max_delegations(path, MAX_DELEGATIONS)
    }

    /// A search visiting at most `max` roles.
    pub fn with_max_delegations(path: &str, max: usize) -> TargetSearch {
        TargetSearch {
            path: path.to_owned(),
            stack: vec![(TARGETS.to_owned(), ROOT.to_owned())],
            visited: BTreeSet::new(),
            max,
        }
    }

    /// The next step, given what `set` trusts now.
    pub fn next<'a>(&mut self, set: &'a TrustedSet) -> SearchStep<'a> {
        while self.visited.len() <= self.max {
            let Some((role, delegator)) = self.stack.last().cloned() else {
                break;
            };
            if self.visited.contains(&role) {
                self.stack.pop();
                continue;
            }
            if !set.contains(&role, &delegator) {
                return SearchStep::Load { role, delegator };
            }
            self.stack.pop();
            let Some(targets) = set.targets(&role) else {
                return SearchStep::Load { role, delegator };
            };
            if let Some(target) = targets.signed().targets.get(&self.path) {
                return SearchStep::Found { role, target };
            }
            self.visited.insert(role.clone());
            if let Some(d) = &targets.signed().delegations {
                let children = d.roles_for_target(&self.path);
                if children.last().is_some_and(|(_, terminating)| *terminating) {
                    self.stack.clear();
                }
                self.stack
                    .extend(children.into_iter().rev().map(|(child, _)| (child, role.clone())));
            }
        }
        SearchStep::NotFound
    }
}
