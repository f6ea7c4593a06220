use std::collections::BTreeMap;

use time::macros::datetime;

use super::*;
use crate::metadata::{FileMeta, RoleKeys};
use crate::testing::TestRepo;

const NOW: OffsetDateTime = datetime!(2026-12-01 12:00 UTC);

fn lifetimes() -> ServerLifetimes {
    ServerLifetimes {
        timestamp: Duration::days(14),
        snapshot: Duration::days(1095),
        refresh_margin: Duration::days(7),
    }
}

fn snapshot(version: u64, expires: OffsetDateTime) -> Snapshot {
    let mut meta = BTreeMap::new();
    meta.insert("targets".to_owned(), FileMeta::for_bytes(b"targets"));
    Snapshot { version, expires, meta }
}

fn timestamp(version: u64, expires: OffsetDateTime) -> Timestamp {
    let mut meta = BTreeMap::new();
    meta.insert(SNAPSHOT.to_owned(), FileMeta::for_bytes(b"old snapshot"));
    Timestamp { version, expires, meta }
}

/// A collection whose root lists the server's timestamp key and, with
/// `server_snapshot`, its snapshot key.
fn repo(server_snapshot: bool) -> (Root, ServerKeys) {
    let mut repo = TestRepo::new("docker.io/library/x", NOW);
    repo.server_timestamp = Some(repo.timestamp.public_key());
    if server_snapshot {
        repo.server_snapshot = Some(repo.snapshot.public_key());
    }
    let keys = repo.server_keys(server_snapshot);
    (repo.root(1), keys)
}

#[test]
fn due_once_no_more_than_the_margin_is_left() {
    let l = lifetimes();
    assert!(!l.is_due(NOW + Duration::days(7) + Duration::seconds(1), NOW));
    assert!(l.is_due(NOW + Duration::days(7), NOW));
    assert!(l.is_due(NOW - Duration::days(1), NOW), "expired is due");
    assert_eq!(l.due_before(NOW), NOW + Duration::days(7));
    assert_eq!(l.due_at(NOW + Duration::days(14)), NOW + Duration::days(7));
}

#[test]
fn default_lifetimes_are_notarys_refreshed_at_half() {
    let l = ServerLifetimes::default();
    assert_eq!(l.timestamp, Duration::days(14));
    assert_eq!(l.snapshot, Duration::days(3 * 365));
    assert_eq!(l.refresh_margin, Duration::days(7));
}

#[test]
fn refresh_makes_the_next_timestamp_only_when_the_snapshot_is_the_clients() {
    let (root, keys) = repo(false);
    let ts = timestamp(4, NOW + Duration::days(1));
    let snap = snapshot(3, NOW + Duration::days(1));
    let plan = plan_refresh(&root, &ts, &snap, &keys, NOW, &lifetimes()).unwrap();
    assert_eq!(plan.snapshot, None, "the client's snapshot key signs snapshots");
    assert_eq!(plan.timestamp_key_ids, vec![keys.timestamp[0].id().to_owned()]);
    assert_eq!(
        plan.expected,
        vec![("timestamp".to_owned(), Some(4)), ("snapshot".to_owned(), Some(3))]
    );
    let next = plan.next_timestamp(b"new snapshot").unwrap();
    assert_eq!(next.version, 5);
    assert_eq!(next.expires, NOW + Duration::days(14));
    assert_eq!(next.snapshot_meta(), Some(&FileMeta::for_bytes(b"new snapshot")));
}

#[test]
fn refresh_renews_a_server_snapshot_only_within_the_margin() {
    let (root, keys) = repo(true);
    let ts = timestamp(4, NOW + Duration::days(1));

    let far = snapshot(3, NOW + Duration::days(8));
    let plan = plan_refresh(&root, &ts, &far, &keys, NOW, &lifetimes()).unwrap();
    assert_eq!(plan.snapshot, None, "8 days left, margin 7");

    let near = snapshot(3, NOW + Duration::days(7));
    let plan = plan_refresh(&root, &ts, &near, &keys, NOW, &lifetimes()).unwrap();
    let (next, key_ids) = plan.snapshot.expect("a new snapshot");
    assert_eq!(key_ids, vec![keys.snapshot[0].id().to_owned()]);
    assert_eq!(next.version, 4);
    assert_eq!(next.expires, NOW + Duration::days(1095));
    assert_eq!(next.meta, near.meta, "the same files, re-signed");
}

#[test]
fn refresh_needs_a_timestamp_key_the_root_lists() {
    let (root, mut keys) = repo(true);
    keys.timestamp.clear();
    let ts = timestamp(4, NOW);
    let snap = snapshot(3, NOW);
    assert_eq!(
        plan_refresh(&root, &ts, &snap, &keys, NOW, &lifetimes()),
        Err(Error::NoServerKey {
            role: "timestamp".into()
        })
    );
}

#[test]
fn refresh_refuses_a_version_past_the_largest() {
    let (root, keys) = repo(true);
    let ts = timestamp(crate::metadata::MAX_VERSION, NOW);
    let snap = snapshot(3, NOW + Duration::days(100));
    let plan = plan_refresh(&root, &ts, &snap, &keys, NOW, &lifetimes()).unwrap();
    assert!(matches!(
        plan.next_timestamp(b"s"),
        Err(Error::VersionTooLarge { ref role, .. }) if role == "timestamp"
    ));
}

#[test]
fn regenerates_just_above_the_signers_mark() {
    assert_eq!(
        version_above_mark("timestamp", 5, 4),
        Ok(None),
        "mark below: not a rollback refusal"
    );
    assert_eq!(version_above_mark("timestamp", 5, 5), Ok(Some(6)));
    assert_eq!(version_above_mark("snapshot", 5, 9), Ok(Some(10)));
    assert_eq!(
        version_above_mark("timestamp", 5, u64::MAX),
        Err(Error::VersionTooLarge {
            role: "timestamp".into(),
            version: u128::from(u64::MAX) + 1
        })
    );
}

fn root_listing(role: &str, ids: &[&str]) -> Root {
    let mut roles = BTreeMap::new();
    roles.insert(
        role.to_owned(),
        RoleKeys {
            keyids: ids.iter().map(|s| (*s).to_owned()).collect(),
            threshold: 1,
        },
    );
    Root {
        version: 1,
        expires: NOW + Duration::days(3650),
        consistent_snapshot: false,
        keys: BTreeMap::new(),
        roles,
    }
}

#[test]
fn a_published_root_activates_the_pending_key_it_lists() {
    let pending = ["p1", "p2"];
    let held = HeldKeys {
        active: Some("a"),
        pending: &pending,
    };
    assert_eq!(held.to_activate(&root_listing("timestamp", &["a"]), "timestamp"), None);
    assert_eq!(
        held.to_activate(&root_listing("timestamp", &["p2"]), "timestamp"),
        Some("p2")
    );
    assert_eq!(
        held.to_activate(&root_listing("timestamp", &["p2", "p1"]), "timestamp"),
        Some("p1"),
        "the oldest pending key listed"
    );
    assert_eq!(held.to_activate(&root_listing("timestamp", &["x"]), "timestamp"), None);
    assert_eq!(
        held.to_activate(&root_listing("snapshot", &["p1"]), "timestamp"),
        None,
        "role absent"
    );
    let none_active = HeldKeys {
        active: None,
        pending: &pending,
    };
    assert_eq!(
        none_active.to_activate(&root_listing("timestamp", &["p1"]), "timestamp"),
        Some("p1")
    );
}

#[test]
fn the_key_handed_out_is_the_one_the_root_lists() {
    let pending = ["p1", "p2"];
    let held = HeldKeys {
        active: Some("a"),
        pending: &pending,
    };
    let root = |ids: &[&str]| root_listing("snapshot", ids);
    assert_eq!(held.to_hand_out(Some(&root(&["a", "p2"])), "snapshot"), Some("a"));
    assert_eq!(
        held.to_hand_out(Some(&root(&["p1", "p2"])), "snapshot"),
        Some("p2"),
        "the newest listed"
    );
    assert_eq!(held.to_hand_out(Some(&root(&["x"])), "snapshot"), None, "mint one");
    // Before any root: the key handed out before.
    assert_eq!(held.to_hand_out(None, "snapshot"), Some("a"));
    let none_active = HeldKeys {
        active: None,
        pending: &pending,
    };
    assert_eq!(none_active.to_hand_out(None, "snapshot"), Some("p2"));
    let nothing = HeldKeys {
        active: None,
        pending: &[],
    };
    assert_eq!(nothing.to_hand_out(None, "snapshot"), None);
}
