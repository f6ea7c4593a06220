//! The server's own decisions, outside an upload (which [`crate::update`]
//! validates): when a timestamp (and a server-managed snapshot) must be
//! refreshed and what the refresh writes, the version to regenerate
//! server-made metadata at when a signer has already signed past it, and
//! which of the keys the server holds for a role is the one in use.
//!
//! Pure functions of the stored metadata, the server's keys and `now`; the
//! node reads its clock and its store, signs, and proposes what they decide.

use time::{Duration, OffsetDateTime};

use crate::error::Error;
use crate::keys::KeyId;
use crate::metadata::{Root, Snapshot, Timestamp, SNAPSHOT, TIMESTAMP};
use crate::update::{server_held, ServerKeys};

/// Lifetimes of the metadata the server generates, and when it refreshes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerLifetimes {
    /// Timestamp lifetime (Notary: 14 days).
    pub timestamp: Duration,
    /// Server-managed snapshot lifetime (Notary: 3 years).
    pub snapshot: Duration,
    /// Refresh a timestamp (or a server-managed snapshot) when less than
    /// this remains before it expires.
    pub refresh_margin: Duration,
}

impl Default for ServerLifetimes {
    /// Notary's lifetimes; a timestamp is refreshed at half its lifetime.
    fn default() -> Self {
        let l = crate::time::Lifetimes::default();
        ServerLifetimes {
            timestamp: l.timestamp,
            snapshot: l.snapshot,
            refresh_margin: l.timestamp / 2,
        }
    }
}

impl ServerLifetimes {
    /// Whether metadata expiring at `expires` is due for refresh at `now`:
    /// no more than the refresh margin is left of it.
    pub fn is_due(&self, expires: OffsetDateTime, now: OffsetDateTime) -> bool {
        expires - now <= self.refresh_margin
    }

    /// Timestamps expiring before this instant are due at `now` (the bound
    /// of a scan of the expiry index).
    pub fn due_before(&self, now: OffsetDateTime) -> OffsetDateTime {
        now + self.refresh_margin
    }

    /// When a timestamp expiring at `expires` falls due for refresh.
    pub fn due_at(&self, expires: OffsetDateTime) -> OffsetDateTime {
        expires - self.refresh_margin
    }
}

/// What refreshing a collection's timestamp writes: made by [`plan_refresh`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshPlan {
    /// The next snapshot and the server-held keys that sign it, when the
    /// server manages the snapshot and it is due as well.
    pub snapshot: Option<(Snapshot, Vec<KeyId>)>,
    /// The server-held keys the root lists for the timestamp (never empty).
    pub timestamp_key_ids: Vec<KeyId>,
    /// The stored versions the refresh builds on (timestamp, then
    /// snapshot): applying it must re-check them (compare-and-set).
    pub expected: Vec<(String, Option<u64>)>,
    previous_timestamp: Timestamp,
    now: OffsetDateTime,
    lifetime: Duration,
}

impl RefreshPlan {
    /// The next timestamp, pointing at `snapshot_bytes`: the snapshot just
    /// signed for [`RefreshPlan::snapshot`], or the stored one.
    pub fn next_timestamp(&self, snapshot_bytes: &[u8]) -> Result<Timestamp, Error> {
        crate::generate::next_timestamp(Some(&self.previous_timestamp), snapshot_bytes, self.now, self.lifetime)
    }
}

/// Plans the refresh of a collection whose stored `root`, `timestamp` and
/// `snapshot` are given, at `now`: a new timestamp always, and a new
/// snapshot too when the server holds enough snapshot keys and the stored
/// snapshot is within the refresh margin of expiring.
///
/// Fails with [`Error::NoServerKey`] when the server holds no timestamp key
/// the root lists (enough to reach its threshold), and when a new version
/// would be too large.
pub fn plan_refresh(
    root: &Root,
    timestamp: &Timestamp,
    snapshot: &Snapshot,
    keys: &ServerKeys,
    now: OffsetDateTime,
    lifetimes: &ServerLifetimes,
) -> Result<RefreshPlan, Error> {
    let timestamp_key_ids = server_held(root, TIMESTAMP, &keys.timestamp);
    if timestamp_key_ids.is_empty() {
        return Err(Error::NoServerKey { role: TIMESTAMP.into() });
    }
    let snapshot_key_ids = server_held(root, SNAPSHOT, &keys.snapshot);
    let next_snapshot = if !snapshot_key_ids.is_empty() && lifetimes.is_due(snapshot.expires, now) {
        let next = crate::generate::next_snapshot(Some(snapshot), &[], now, lifetimes.snapshot)?;
        Some((next, snapshot_key_ids))
    } else {
        None
    };
    Ok(RefreshPlan {
        snapshot: next_snapshot,
        timestamp_key_ids,
        expected: vec![
            (TIMESTAMP.to_owned(), Some(timestamp.version)),
            (SNAPSHOT.to_owned(), Some(snapshot.version)),
        ],
        previous_timestamp: timestamp.clone(),
        now,
        lifetime: lifetimes.timestamp,
    })
}

/// A signer refused to sign `version` of server-made `role` metadata because
/// it already signed up to `high_water` with the key (its high-water mark):
/// the version to regenerate the metadata at, just above the mark, so that
/// a version signed but never committed is skipped rather than blocking the
/// collection. `Ok(None)` when the mark is below `version` (the refusal is
/// about something else); [`Error::VersionTooLarge`] when nothing is above
/// the mark.
pub fn version_above_mark(role: &str, version: u64, high_water: u64) -> Result<Option<u64>, Error> {
    if high_water < version {
        return Ok(None);
    }
    match high_water.checked_add(1) {
        Some(next) => Ok(Some(next)),
        None => Err(Error::VersionTooLarge {
            role: role.to_owned(),
            version: u128::from(high_water) + 1,
        }),
    }
}

/// The IDs of the keys the server holds for one role of one collection: the
/// active one, and the pending ones (made by a rotation, not yet listed by a
/// published root) oldest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeldKeys<'a> {
    /// The active key.
    pub active: Option<&'a str>,
    /// The pending keys, oldest first.
    pub pending: &'a [&'a str],
}

impl<'a> HeldKeys<'a> {
    /// The key that becomes active once `root` is published: the first
    /// pending key the root lists for `role`, unless the active key is
    /// listed (then nothing changes, `None`), or none is.
    pub fn to_activate(&self, root: &Root, role: &str) -> Option<&'a str> {
        let listed = listed(root, role);
        if self.active.is_some_and(|a| listed.iter().any(|id| id == a)) {
            return None;
        }
        self.pending.iter().copied().find(|p| listed.iter().any(|id| id == p))
    }

    /// The key handed out for `role` (`GET <role>.key`): with a published
    /// `root`, the active key if the root lists it, else the newest pending
    /// key it lists; before any root, the key handed out before (the active
    /// one, else the newest pending one). `None`: a key must be made.
    pub fn to_hand_out(&self, root: Option<&Root>, role: &str) -> Option<&'a str> {
        match root {
            Some(root) => {
                let listed = listed(root, role);
                self.active
                    .into_iter()
                    .chain(self.pending.iter().rev().copied())
                    .find(|k| listed.iter().any(|id| id == k))
            }
            // Notary mints a new key on every GET before a root; handing out
            // the same one keeps the key store bounded.
            None => self.active.or(self.pending.last().copied()),
        }
    }
}

/// The key IDs `root` lists for `role` (none when the role is absent).
fn listed<'r>(root: &'r Root, role: &str) -> &'r [KeyId] {
    root.role(role).map(|r| r.keyids.as_slice()).unwrap_or_default()
}

#[cfg(test)]
mod tests;
