//! The in-memory cache of current files, in front of RocksDB on the read path.
//!
//! Clients poll `timestamp.json` (and fetch `targets.json`, `root.json`) far more often than
//! anyone publishes, so every node keeps the current file of each recently read (gun, role),
//! with the collection's timestamp expiry beside the timestamp, and answers from memory. The
//! checksum-named files clients fetch next (`snapshot.<sha256>.json`) are kept the same way,
//! under the collection, keyed by role and checksum.
//!
//! Correctness rests on two rules:
//! * Every change to the state machine invalidates: [`Store::apply`](crate::Store::apply) drops
//!   the entries of the collection its command names once its batch is written, and a snapshot
//!   install drops everything, before and after refilling.
//! * A reader fills the cache only with what it read from RocksDB *after* the last invalidation:
//!   it notes the generation before reading and inserts only if no invalidation happened since
//!   (checked under the cache's lock). Without this, a read that began before an apply could put
//!   the old file back after the apply dropped it, and serve it until the next publish.
//!
//! The cache holds at most [`CACHE_BYTES`] of file bytes (plus a small per-entry overhead); when
//! an insert would pass that, arbitrary entries are dropped until a quarter of the budget is free.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// Bytes of current files a node keeps in memory (64 MiB: about 100,000 timestamps of the size
/// Notary writes, 495 bytes, with 128 bytes of overhead each and their names).
pub const CACHE_BYTES: usize = 64 << 20;

/// Bytes counted for an entry beyond its file: the keys and the map's bookkeeping.
const ENTRY_OVERHEAD: usize = 128;

/// A current file as the read path serves it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CurrentFile {
    /// Its version.
    pub version: u64,
    /// Its exact bytes, shared with the cache.
    pub bytes: Arc<[u8]>,
    /// For `timestamp`: when the collection's timestamp expires (Unix nanoseconds), if recorded.
    pub timestamp_expiry: Option<i64>,
}

impl CurrentFile {
    fn cost(&self, gun: &str, role: &str) -> usize {
        self.bytes.len() + gun.len() + role.len() + ENTRY_OVERHEAD
    }
}

#[derive(Default)]
struct Entries {
    /// gun → role → file: looked up with `&str`s, no key built per request.
    by_gun: HashMap<String, HashMap<String, CurrentFile>>,
    bytes: usize,
}

/// See the module documentation.
pub(crate) struct CurrentCache {
    entries: RwLock<Entries>,
    /// Bumped (under the write lock) by every invalidation.
    generation: AtomicU64,
    budget: usize,
}

/// What a reader notes before reading RocksDB, to fill the cache afterwards.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ticket(u64);

impl CurrentCache {
    pub(crate) fn new(budget: usize) -> CurrentCache {
        CurrentCache {
            entries: RwLock::new(Entries::default()),
            generation: AtomicU64::new(0),
            budget,
        }
    }

    fn read(&self) -> RwLockReadGuard<'_, Entries> {
        // A panic while holding the lock leaves the map consistent (each change is one call).
        self.entries.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Entries> {
        self.entries.write().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn get(&self, gun: &str, role: &str) -> Option<CurrentFile> {
        self.read().by_gun.get(gun)?.get(role).cloned()
    }

    /// Taken before reading RocksDB for a miss.
    pub(crate) fn ticket(&self) -> Ticket {
        Ticket(self.generation.load(Ordering::Acquire))
    }

    /// Keeps `file`, read after `ticket` was taken, unless the state changed since.
    pub(crate) fn insert(&self, ticket: Ticket, gun: &str, role: &str, file: CurrentFile) {
        let cost = file.cost(gun, role);
        if cost > self.budget / 4 {
            return;
        }
        let mut e = self.write();
        if self.generation.load(Ordering::Acquire) != ticket.0 {
            return;
        }
        if e.bytes + cost > self.budget {
            evict(&mut e, self.budget - self.budget / 4);
        }
        let old = e
            .by_gun
            .entry(gun.to_owned())
            .or_default()
            .insert(role.to_owned(), file)
            .map(|f| f.cost(gun, role));
        e.bytes = e.bytes + cost - old.unwrap_or(0);
    }

    /// Drops `gun`'s entries: called after a change to that collection is written.
    pub(crate) fn invalidate(&self, gun: &str) {
        let mut e = self.write();
        self.generation.fetch_add(1, Ordering::AcqRel);
        if let Some(roles) = e.by_gun.remove(gun) {
            let freed: usize = roles.iter().map(|(role, f)| f.cost(gun, role)).sum();
            e.bytes -= freed;
        }
    }

    /// Drops everything: a snapshot install replaces the whole state.
    pub(crate) fn clear(&self) {
        let mut e = self.write();
        self.generation.fetch_add(1, Ordering::AcqRel);
        *e = Entries::default();
    }

    /// What the entries cost now (at most the budget).
    pub(crate) fn bytes(&self) -> usize {
        self.read().bytes
    }
}

/// Drops arbitrary collections until at most `target` bytes remain.
fn evict(e: &mut Entries, target: usize) {
    let mut over = e.bytes.saturating_sub(target);
    let mut drop = Vec::new();
    for (gun, roles) in &e.by_gun {
        if over == 0 {
            break;
        }
        let cost: usize = roles.iter().map(|(role, f)| f.cost(gun, role)).sum();
        over = over.saturating_sub(cost);
        drop.push((gun.clone(), cost));
    }
    for (gun, cost) in drop {
        e.by_gun.remove(&gun);
        e.bytes -= cost;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(n: usize) -> CurrentFile {
        CurrentFile {
            version: n as u64,
            bytes: vec![b'x'; n].into(),
            timestamp_expiry: None,
        }
    }

    #[test]
    fn an_invalidation_between_ticket_and_insert_keeps_the_old_read_out() {
        let c = CurrentCache::new(1 << 20);
        let t = c.ticket();
        c.invalidate("g");
        c.insert(t, "g", "timestamp", file(10));
        assert_eq!(c.get("g", "timestamp"), None);
        let t = c.ticket();
        c.insert(t, "g", "timestamp", file(10));
        assert_eq!(c.get("g", "timestamp"), Some(file(10)));
        c.invalidate("other");
        assert_eq!(c.get("g", "timestamp"), Some(file(10)), "another collection's change");
        c.invalidate("g");
        assert_eq!(c.get("g", "timestamp"), None);
        assert_eq!(c.bytes(), 0);
    }

    #[test]
    fn the_cache_stays_within_its_budget() {
        let budget = 64 * 1024;
        let c = CurrentCache::new(budget);
        for i in 0..1000 {
            let t = c.ticket();
            c.insert(t, &format!("g{i}"), "targets", file(1000));
            assert!(c.bytes() <= budget, "{} > {budget}", c.bytes());
        }
        assert!(c.get("g999", "targets").is_some(), "the newest entry is kept");
        // Replacing an entry counts its old size out.
        let t = c.ticket();
        c.insert(t, "g999", "targets", file(10));
        let t = c.ticket();
        c.insert(t, "g999", "targets", file(10));
        assert!(c.bytes() <= budget);
        // Files larger than a quarter of the budget are served, not kept.
        let t = c.ticket();
        c.insert(t, "big", "targets", file(budget / 2));
        assert_eq!(c.get("big", "targets"), None);
        c.clear();
        assert_eq!(c.bytes(), 0);
        assert_eq!(c.get("g999", "targets"), None);
    }
}
