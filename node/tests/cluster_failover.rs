//! Two leader kills (kill -9) in a three-process cluster while publishes run through every node
//! and a reader polls timestamps whose lifetime is ten seconds:
//!
//! * every acknowledged publish is served by every node afterwards;
//! * after each kill a new leader is elected and publishes are acknowledged again;
//! * the first killed node, restarted after the leader has purged the log past its last entry,
//!   catches up by snapshot;
//! * no node ever serves an expired timestamp, and the timestamps keep being refreshed.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::cluster::*;
use common::try_request;
use seal_tuf::{SignedFile, Timestamp};
use time::OffsetDateTime;

/// Timestamp lifetime in the test's nodes; refreshed when less than half remains.
const TS_LIFETIME_SECS: u64 = 10;

/// The timestamp of `gun` served by `addr`: `Some((version, expires))` on a 200, `None` on any
/// other answer (a 503 from a node that cannot vouch for it is allowed).
fn timestamp_if_served(addr: &str, gun: &str) -> Option<(u64, OffsetDateTime)> {
    let r = try_request(addr, "GET", &tuf(gun, "timestamp.json"), &[], &[]).ok()?;
    if r.status != 200 {
        return None;
    }
    let file = SignedFile::parse("timestamp", r.body).expect("a served timestamp parses");
    let ts = Timestamp::from_signed(file.signed()).expect("a served timestamp is a timestamp");
    Some((ts.version, ts.expires))
}

/// Kills the current leader with SIGKILL; returns its index. Publishes are already running.
fn kill_leader(cluster: &mut Cluster, alive: &Alive) -> (usize, Instant) {
    let up: Vec<usize> = (0..3).filter(|&i| alive.lock().unwrap()[i].is_some()).collect();
    let leader = eventually("a leader", || {
        up.iter().find_map(|&i| leader_of(&cluster.tls, &cluster.raft[i]))
    }) as usize
        - 1;
    alive.lock().unwrap()[leader] = None;
    cluster.nodes[leader].kill9();
    (leader, Instant::now())
}

/// Waits for a leader other than `old` and for a publish acknowledged after `since`.
fn wait_for_recovery(cluster: &Cluster, alive: &Alive, writers: &Writers, old: usize, since: Instant) {
    let up: Vec<usize> = (0..3).filter(|&i| alive.lock().unwrap()[i].is_some()).collect();
    let new = eventually("a new leader", || {
        up.iter()
            .find_map(|&i| leader_of(&cluster.tls, &cluster.raft[i]))
            .filter(|l| *l as usize - 1 != old)
    });
    assert!(up.contains(&(new as usize - 1)), "leader {new} is a survivor");
    writers.wait_for_ack_after(since);
}

#[test]
fn acknowledged_publishes_survive_two_leader_kills_and_timestamps_stay_fresh() {
    let extra = serde_json::json!({
        "timestamps": {"timestamp_lifetime_secs": TS_LIFETIME_SECS, "refresh_margin_fraction": 0.5},
        "raft": {"snapshot_logs_since_last": 20, "snapshot_log_percent": 0, "max_in_snapshot_log_to_keep": 5,
                 "max_staleness_ms": 2000},
    });
    let mut cluster = start_cluster_with(
        0,
        ClusterOptions {
            extra,
            ..Default::default()
        },
    );
    let started = Instant::now();

    // Collections published before any fault, whose timestamps the reader watches.
    let watched: Vec<String> = (0..3)
        .map(|i| {
            let gun = format!("example.com/failover/watched-{i}");
            publish_new(&cluster.nodes[i], &gun);
            gun
        })
        .collect();

    let alive = alive_of(&cluster.nodes);
    let writers = Writers::start(2, "example.com/failover", &alive);
    let stop = Arc::new(AtomicBool::new(false));

    // A reader of the watched timestamps on every live node: none may be expired.
    let reader = {
        let (alive, stop, watched) = (alive.clone(), stop.clone(), watched.clone());
        std::thread::spawn(move || {
            let mut violations = Vec::new();
            let mut reads = 0u64;
            let mut newest = 0u64;
            while !stop.load(Ordering::SeqCst) {
                for addr in alive_addrs(&alive) {
                    for gun in &watched {
                        if let Some((version, expires)) = timestamp_if_served(&addr, gun) {
                            reads += 1;
                            newest = newest.max(version);
                            let now = OffsetDateTime::now_utc();
                            if expires <= now {
                                violations
                                    .push(format!("{addr} served {gun} timestamp v{version} expired at {expires}"));
                            }
                        }
                    }
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            (violations, reads, newest)
        })
    };

    eventually("publishes acknowledged before the first kill", || {
        (writers.count() >= 10).then_some(())
    });

    // First kill.
    let (first, killed_at) = kill_leader(&mut cluster, &alive);
    wait_for_recovery(&cluster, &alive, &writers, first, killed_at);

    // The killed node's log ends at most a few in-flight entries past what the new leader held
    // when elected. Once the leader has purged well beyond that, the killed node can only catch
    // up by snapshot.
    let leader = eventually("the new leader", || {
        (0..3)
            .filter(|&i| i != first)
            .find_map(|i| leader_of(&cluster.tls, &cluster.raft[i]))
    }) as usize
        - 1;
    let at_election = eventually("the new leader's last log index", || {
        status_field(&cluster.tls, &cluster.raft[leader], "last log index")
    });
    let purged = eventually("the new leader purging its log past the killed node's", || {
        let p = status_field(&cluster.tls, &cluster.raft[leader], "purged index")?;
        (p > at_election + 64).then_some(p)
    });
    cluster.nodes[first].restart();
    alive.lock().unwrap()[first] = Some(cluster.nodes[first].addr.clone());
    for (gun, root) in &writers.so_far() {
        served_everywhere(&[&cluster.nodes[first]], gun, root);
    }
    let snapshot = eventually("the restarted node's snapshot index", || {
        status_field(&cluster.tls, &cluster.raft[first], "snapshot index")
    });
    assert!(
        snapshot >= purged,
        "the restarted node holds a snapshot at {snapshot}, not past the leader's purged log ({purged})"
    );

    // Second kill, of whichever node leads now; it comes back too.
    let (second, killed_at) = kill_leader(&mut cluster, &alive);
    wait_for_recovery(&cluster, &alive, &writers, second, killed_at);
    cluster.nodes[second].restart();
    alive.lock().unwrap()[second] = Some(cluster.nodes[second].addr.clone());

    // Keep going until the watched timestamps had to be refreshed at least twice.
    let until = started + Duration::from_secs(2 * TS_LIFETIME_SECS + 2);
    while Instant::now() < until {
        std::thread::sleep(Duration::from_millis(200));
    }
    let acked = writers.stop();
    stop.store(true, Ordering::SeqCst);
    let (violations, reads, newest) = reader.join().unwrap();
    assert!(
        violations.is_empty(),
        "expired timestamps served:\n{}",
        violations.join("\n")
    );
    assert!(reads > 0, "the reader read timestamps");
    assert!(newest >= 3, "watched timestamps refreshed (newest version {newest})");

    // Every acknowledged publish is served by every node, with a fresh timestamp.
    assert!(acked.len() >= 20, "only {} publishes acknowledged", acked.len());
    let nodes: Vec<&common::Node> = cluster.nodes.iter().collect();
    for a in &acked {
        served_everywhere(&nodes, &a.gun, &a.root);
    }
    for node in &nodes {
        for a in &acked {
            let (_, expires) = eventually(&format!("{} timestamp on {}", a.gun, node.addr), || {
                timestamp_if_served(&node.addr, &a.gun)
            });
            assert!(
                expires > OffsetDateTime::now_utc(),
                "{} on {}: expired timestamp",
                a.gun,
                node.addr
            );
        }
    }
}
