//! SealRaft end to end on a real data directory: writes, restarts, outcomes, snapshots.

use std::path::Path;
use std::time::Duration;

use openraft::storage::{RaftSnapshotBuilder, RaftStateMachine};
use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId, Membership};
use seal_raft::{RaftConfig, SealRaft, StateMachine, WriteError};
use seal_storage::{ApplyOutcome, Command, MetaFile, Store};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

const T0: i64 = 1_795_305_296_210_447_549;
const DAY: i64 = 86_400_000_000_000;
const WAIT: Duration = Duration::from_secs(10);

fn config(dir: &Path) -> RaftConfig {
    let mut c = RaftConfig::new(1, "127.0.0.1:7001", dir);
    c.snapshot_logs_since_last = None;
    c
}

fn file(role: &str, version: u64) -> MetaFile {
    MetaFile {
        role: role.into(),
        version,
        bytes: format!("{{\"signed\":{{\"_type\":\"{role}\",\"version\":{version}}},\"pad\":\"\u{0}\u{ff}\"}}")
            .into_bytes(),
    }
}

fn publish(gun: &str, v: u64, expected: Option<u64>) -> Command {
    Command::Publish {
        gun: gun.into(),
        files: vec![file("targets", v), file("timestamp", v)],
        expected: vec![("targets".into(), expected), ("timestamp".into(), expected)],
        timestamp_expires_unix_nanos: Some(T0 + v as i64 * DAY),
        at_unix_nanos: T0 + v as i64,
    }
}

async fn open(dir: &Path) -> SealRaft {
    let node = SealRaft::open(config(dir)).await.expect("open");
    node.wait_until_leader(WAIT).await.expect("leader");
    node
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_survive_shutdown_and_reopen_byte_identical() {
    let dir = tempfile::tempdir().unwrap();
    let node = open(dir.path()).await;
    for v in 1..=3 {
        let expected = if v == 1 { None } else { Some(v - 1) };
        assert_eq!(node.write(publish("g/a", v, expected)).await, Ok(ApplyOutcome::Applied));
    }
    assert_eq!(
        node.write(Command::SetServerKey {
            gun: "g/a".into(),
            role: "timestamp".into(),
            key_id: "k".into(),
            public_key_json: b"{\"keytype\":\"ed25519\"}".to_vec(),
            pending: false,
        })
        .await,
        Ok(ApplyOutcome::Applied)
    );
    let digest = node.read().state_digest().unwrap();
    let before = node.metrics();
    assert!(before.is_leader);
    assert_eq!(before.leader, Some(1));
    let applied = before.applied_index.expect("applied");
    node.shutdown().await.expect("shutdown");

    // The database alone, reopened after shutdown, holds exactly the same state.
    {
        let store = Store::open(dir.path().join("db")).unwrap();
        assert_eq!(store.reader().state_digest().unwrap(), digest);
    }

    let node = open(dir.path()).await;
    let r = node.read();
    assert_eq!(
        r.current("g/a", "targets").unwrap(),
        Some((3, file("targets", 3).bytes))
    );
    assert_eq!(
        r.by_version("g/a", "timestamp", 1).unwrap(),
        Some(file("timestamp", 1).bytes)
    );
    assert_eq!(r.changefeed(None, 0, 0).unwrap().len(), 3);
    assert!(r.server_key("g/a", "timestamp").unwrap().is_some());
    // Nothing was re-initialized or lost; a blank leader entry may follow.
    assert!(node.metrics().applied_index.unwrap() >= applied);
    assert!(node.metrics().term >= before.term);
    let m = node.raft().metrics().borrow().membership_config.clone();
    assert_eq!(m.membership().voter_ids().collect::<Vec<_>>(), vec![1]);
    assert_eq!(node.write(publish("g/a", 4, Some(3))).await, Ok(ApplyOutcome::Applied));
    drop(r); // a Reader keeps the database open
    node.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conflict_and_old_version_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let node = open(dir.path()).await;
    assert_eq!(node.write(publish("g", 1, None)).await, Ok(ApplyOutcome::Applied));
    let versions = node.read().current_versions("g").unwrap();
    let r = node.read();
    let feed = r.changefeed(None, 0, 0).unwrap();
    let due = r.due_timestamps(i64::MAX, 10).unwrap();

    assert_eq!(
        node.write(publish("g", 2, None)).await,
        Ok(ApplyOutcome::Conflict {
            gun: "g".into(),
            role: "targets".into(),
            expected: None,
            actual: Some(1)
        })
    );
    assert_eq!(
        node.write(publish("g", 1, Some(1))).await,
        Ok(ApplyOutcome::OldVersion {
            gun: "g".into(),
            role: "targets".into(),
            version: 1,
            current: 1
        })
    );
    assert_eq!(r.current_versions("g").unwrap(), versions);
    assert_eq!(r.changefeed(None, 0, 0).unwrap(), feed);
    assert_eq!(r.due_timestamps(i64::MAX, 10).unwrap(), due);
    assert_eq!(r.current("g", "targets").unwrap(), Some((1, file("targets", 1).bytes)));
    drop(r);
    node.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_then_reopen_recovers_from_snapshot_and_log() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.max_in_snapshot_log_to_keep = 0;
    let node = SealRaft::open(cfg.clone()).await.unwrap();
    node.wait_until_leader(WAIT).await.unwrap();
    for v in 1..=5 {
        let expected = if v == 1 { None } else { Some(v - 1) };
        assert_eq!(node.write(publish("s", v, expected)).await, Ok(ApplyOutcome::Applied));
    }
    let snap_index = node.snapshot(WAIT).await.unwrap();
    assert_eq!(snap_index, node.metrics().applied_index);
    node.raft()
        .wait(Some(WAIT))
        .metrics(|m| m.purged.is_some(), "log purged after snapshot")
        .await
        .unwrap();
    assert_eq!(node.write(publish("s", 6, Some(5))).await, Ok(ApplyOutcome::Applied));
    let digest = node.read().state_digest().unwrap();
    node.shutdown().await.unwrap();
    {
        let store = Store::open(dir.path().join("db")).unwrap();
        assert_eq!(store.reader().state_digest().unwrap(), digest);
        // Entries up to the snapshot were purged.
        assert!(store.log_last_purged().unwrap().is_some());
    }

    let node = SealRaft::open(cfg).await.unwrap();
    node.wait_until_leader(WAIT).await.unwrap();
    assert_eq!(node.read().current("s", "timestamp").unwrap().map(|c| c.0), Some(6));
    assert_eq!(node.read().changefeed(Some("s"), -1, 2).unwrap().len(), 2);
    node.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_can_only_be_opened_once_and_errors_are_typed() {
    let dir = tempfile::tempdir().unwrap();
    let node = open(dir.path()).await;
    // The RocksDB directory lock refuses a second opener.
    assert!(SealRaft::open(config(dir.path())).await.is_err());
    node.raft().shutdown().await.unwrap();
    match node.write(publish("x", 1, None)).await {
        Err(e @ WriteError::Fatal { .. }) => assert!(!e.is_retryable()),
        other => panic!("expected fatal, got {other:?}"),
    }
    assert!(WriteError::ForwardToLeader {
        leader_id: None,
        leader_addr: None
    }
    .is_retryable());
}

fn log_id(index: u64) -> LogId<u64> {
    LogId::new(CommittedLeaderId::new(1, 1), index)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_installed_into_a_fresh_store_has_the_same_digest() {
    let dir = tempfile::tempdir().unwrap();
    let src_store = Store::open(dir.path().join("a/db")).unwrap();
    let mut src = StateMachine::new(src_store.clone(), &dir.path().join("a/snapshots")).unwrap();
    let mut entries = vec![Entry {
        log_id: log_id(1),
        payload: EntryPayload::Membership(Membership::new(vec![[1u64].into_iter().collect()], ())),
    }];
    for (i, v) in (1..=20u64).enumerate() {
        let expected = if v == 1 { None } else { Some(v - 1) };
        entries.push(Entry {
            log_id: log_id(i as u64 + 2),
            payload: EntryPayload::Normal(publish("big", v, expected)),
        });
    }
    let outcomes = src.apply(entries).await.unwrap();
    assert!(outcomes.iter().all(|o| *o == ApplyOutcome::Applied));
    let built = src.get_snapshot_builder().await.build_snapshot().await.unwrap();
    assert_eq!(built.meta.last_log_id, Some(log_id(21)));

    // Ship it as openraft would: read the leader's stream, write it into the receiver's.
    let mut current = src.get_current_snapshot().await.unwrap().expect("current snapshot");
    let want = src_store.reader().state_digest().unwrap();
    // A newer snapshot replaces it (its directory removed) while it is being sent: the sender
    // reads through links of its own and finishes.
    let mut first = vec![0u8; 100];
    current.snapshot.read_exact(&mut first).await.unwrap();
    src.apply([Entry {
        log_id: log_id(22),
        payload: EntryPayload::Normal(publish("later", 1, None)),
    }])
    .await
    .unwrap();
    let newer = src.get_snapshot_builder().await.build_snapshot().await.unwrap();
    assert!(!dir.path().join("a/snapshots").join(&current.meta.snapshot_id).exists());
    let mut bytes = first;
    current.snapshot.read_to_end(&mut bytes).await.unwrap();
    current.snapshot.seek(std::io::SeekFrom::Start(0)).await.unwrap();
    let mut again = Vec::new();
    current.snapshot.read_to_end(&mut again).await.unwrap();
    assert_eq!(again, bytes);
    drop(newer);

    let dst_store = Store::open(dir.path().join("b/db")).unwrap();
    let mut dst = StateMachine::new(dst_store.clone(), &dir.path().join("b/snapshots")).unwrap();
    let mut recv = dst.begin_receiving_snapshot().await.unwrap();
    for chunk in bytes.chunks(1000) {
        recv.write_all(chunk).await.unwrap();
    }
    dst.install_snapshot(&current.meta, recv).await.unwrap();

    assert_eq!(dst_store.reader().state_digest().unwrap(), want);
    let (applied, membership) = dst.applied_state().await.unwrap();
    assert_eq!(applied, Some(log_id(21)));
    assert_eq!(membership.log_id(), &Some(log_id(1)));
    assert_eq!(dst.get_current_snapshot().await.unwrap().unwrap().meta, current.meta);
    // Only the current snapshot (and its metadata) remain.
    let mut left: Vec<String> = std::fs::read_dir(dir.path().join("b/snapshots"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, vec![current.meta.snapshot_id.clone(), "current.meta".to_owned()]);
}

/// `len` hex digits that do not compress (snapshots are compressed SST files).
fn noise(seed: u64, len: usize) -> String {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            char::from_digit((x % 16) as u32, 16).unwrap_or('0')
        })
        .collect()
}

/// A publish of `gun` version `v` whose two files hold about `bytes` bytes together.
fn padded_publish(gun: &str, v: u64, bytes: usize) -> Command {
    let file = |role: &str| MetaFile {
        role: role.into(),
        version: v,
        bytes: format!(
            "{{\"signed\":{{\"version\":{v}}},\"pad\":\"{}\"}}",
            noise(v * 2 + u64::from(role == "targets"), bytes / 2)
        )
        .into_bytes(),
    };
    let expected = if v == 1 { None } else { Some(v - 1) };
    Command::Publish {
        gun: gun.into(),
        files: vec![file("targets"), file("timestamp")],
        expected: vec![("targets".into(), expected), ("timestamp".into(), expected)],
        timestamp_expires_unix_nanos: Some(T0 + v as i64 * DAY),
        at_unix_nanos: T0 + v as i64,
    }
}

/// Size of the largest snapshot (a checkpoint directory) under `dir/snapshots`.
fn snapshot_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir.join("snapshots"))
        .unwrap()
        .flatten()
        .filter(|e| e.path().is_dir())
        .map(|e| seal_storage::dir_size(&e.path()).unwrap().1)
        .max()
        .expect("a snapshot")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_waits_for_commands_as_large_as_the_last_one() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    c.snapshot_logs_since_last = Some(2);
    c.snapshot_log_percent = 100;
    let node = SealRaft::open(c).await.expect("open");
    node.wait_until_leader(WAIT).await.expect("leader");
    let snapshot_index = || node.metrics().snapshot_index;
    let mut v = 0;
    let mut publish = |bytes: usize| {
        v += 1;
        padded_publish("g/sized", v, bytes)
    };

    // No snapshot yet: two entries are enough for the first.
    for _ in 0..2 {
        assert_eq!(node.write(publish(20_000)).await, Ok(ApplyOutcome::Applied));
    }
    let deadline = std::time::Instant::now() + WAIT;
    while snapshot_index().is_none() {
        assert!(std::time::Instant::now() < deadline, "no first snapshot");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let first = snapshot_index();
    let size = snapshot_bytes(dir.path());
    assert!(size > 40_000, "the snapshot holds both publishes ({size} bytes)");

    // Many more entries than the minimum, but far fewer bytes than the snapshot: none is built.
    for _ in 0..10 {
        assert_eq!(node.write(publish(1_000)).await, Ok(ApplyOutcome::Applied));
    }
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(snapshot_index(), first, "a snapshot was built after ~10 KB of commands");

    // Once the commands since the snapshot outweigh it, the next one is built.
    for _ in 0..(size / 10_000 + 1) {
        assert_eq!(node.write(publish(10_000)).await, Ok(ApplyOutcome::Applied));
    }
    let deadline = std::time::Instant::now() + WAIT;
    while snapshot_index() == first {
        assert!(
            std::time::Instant::now() < deadline,
            "no snapshot after commands as large as the last one"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(snapshot_index() > first);
    node.shutdown().await.expect("shutdown");
}
