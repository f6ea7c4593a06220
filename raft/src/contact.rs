//! [`LeaderContact`]: when a follower or learner last heard from its leader, and how fresh its
//! applied state is.
//!
//! The Raft gRPC service records every `AppendEntries` (heartbeats included) that the node
//! accepted from a leader: the time it arrived and the leader's commit index it carried. A node
//! whose applied index has reached the commit index of a contact at time `T` held, at `T`,
//! everything the leader had committed when it sent that request: its state is at most
//! `now - T` old (plus one network delay). [`LeaderContact::in_sync_since`] finds the latest
//! such `T`. The logic is pure: callers pass the time in.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Instant;

/// How many distinct (leader commit) contacts are remembered. Contacts carrying the same commit
/// index are merged, so this covers bursts of writes far longer than any staleness bound.
const MAX_CONTACTS: usize = 4096;

/// Contacts from the leader, oldest first.
#[derive(Debug, Default)]
pub struct LeaderContact {
    contacts: Mutex<VecDeque<Contact>>,
}

#[derive(Debug, Clone, Copy)]
struct Contact {
    /// When the request arrived (the latest arrival carrying `commit`).
    at: Instant,
    /// The leader's commit index it carried (`None`: nothing committed yet).
    commit: Option<u64>,
}

impl LeaderContact {
    /// Nothing heard yet.
    pub fn new() -> LeaderContact {
        LeaderContact::default()
    }

    /// Record an accepted `AppendEntries` that arrived `at`, carrying the leader's commit index.
    pub fn record(&self, at: Instant, leader_commit: Option<u64>) {
        let mut contacts = self.contacts.lock().unwrap_or_else(|e| e.into_inner());
        match contacts.back_mut() {
            Some(last) if last.commit == leader_commit => last.at = last.at.max(at),
            _ => contacts.push_back(Contact {
                at,
                commit: leader_commit,
            }),
        }
        while contacts.len() > MAX_CONTACTS {
            contacts.pop_front();
        }
    }

    /// When the leader was last heard from.
    pub fn last(&self) -> Option<Instant> {
        let contacts = self.contacts.lock().unwrap_or_else(|e| e.into_inner());
        contacts.back().map(|c| c.at)
    }

    /// The latest contact whose leader commit index `applied` covers: at that time this node held
    /// everything the leader had committed. `None` if no remembered contact qualifies. Contacts
    /// older than the one found are forgotten (they can never be the answer again while `applied`
    /// only grows).
    pub fn in_sync_since(&self, applied: Option<u64>) -> Option<Instant> {
        let mut contacts = self.contacts.lock().unwrap_or_else(|e| e.into_inner());
        let pos = contacts.iter().rposition(|c| c.commit <= applied)?;
        let at = contacts[pos].at;
        contacts.drain(..pos);
        Some(at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn nothing_heard_is_never_in_sync() {
        let c = LeaderContact::new();
        assert_eq!(c.last(), None);
        assert_eq!(c.in_sync_since(Some(10)), None);
    }

    #[test]
    fn in_sync_since_the_latest_contact_whose_commit_is_applied() {
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        let c = LeaderContact::new();
        c.record(at(0), Some(5));
        c.record(at(100), Some(5));
        c.record(at(200), Some(7));
        c.record(at(300), Some(9));
        assert_eq!(c.last(), Some(at(300)));
        // Applied 4: behind every contact.
        assert_eq!(c.in_sync_since(Some(4)), None);
        assert_eq!(c.in_sync_since(None), None);
        // Applied 5: in sync as of the latest contact carrying 5 (merged).
        assert_eq!(c.in_sync_since(Some(5)), Some(at(100)));
        // Applied 8: as of the contact carrying 7, not the one carrying 9.
        assert_eq!(c.in_sync_since(Some(8)), Some(at(200)));
        assert_eq!(c.in_sync_since(Some(9)), Some(at(300)));
        // Older contacts were dropped; the answer for the latest stays.
        assert_eq!(c.in_sync_since(Some(9)), Some(at(300)));
    }

    #[test]
    fn nothing_committed_yet_is_in_sync_with_an_empty_state() {
        let t0 = Instant::now();
        let c = LeaderContact::new();
        c.record(t0, None);
        assert_eq!(c.in_sync_since(None), Some(t0));
    }

    #[test]
    fn memory_is_bounded() {
        let t0 = Instant::now();
        let c = LeaderContact::new();
        for i in 0..(MAX_CONTACTS as u64 + 10) {
            c.record(t0 + Duration::from_millis(i), Some(i));
        }
        assert_eq!(c.contacts.lock().unwrap().len(), MAX_CONTACTS);
        assert_eq!(c.in_sync_since(Some(5)), None);
    }
}
