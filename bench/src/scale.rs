//! Many collections: seeding them quickly through the normal API, and
//! reading random ones. `scripts/bench-scale.sh` drives a node through
//! growing collection counts with these and records disk use, memory,
//! read latency, restart time and snapshot builds at each size
//! (docs/benchmarks.md, "A million collections").
//!
//! Seeding is each collection's first publish as Notary's CLI makes it
//! (`GET timestamp.key`, which makes the collection's timestamp key in the
//! signer, then root, targets and snapshot). To keep the load generator off
//! the CPUs the server needs, the collections of one run share their client
//! keys: one root certificate whose CN ends in `*` (Notary's wildcard, valid
//! for every GUN under the prefix) and one targets and snapshot key. The
//! server stores and signs for each collection what it would for any other:
//! its own timestamp key, root, targets, snapshot and timestamp.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use seal_tuf::testing::{RootKey, TestRepo};
use time::OffsetDateTime;

use crate::publish::first_publish;
use crate::stats::{micros, Run};

/// The GUN of collection `i` under `prefix`.
pub fn gun(prefix: &str, i: usize) -> String {
    format!("{prefix}/c{i}")
}

/// The path of collection `i`'s `timestamp.json`.
pub fn timestamp_path(prefix: &str, i: usize) -> String {
    format!("/v2/{}/_trust/tuf/timestamp.json", gun(prefix, i))
}

/// Client keys shared by the collections under `prefix`.
fn shared_repo(prefix: &str) -> TestRepo {
    let now = OffsetDateTime::now_utc();
    let mut repo = TestRepo::new(&gun(prefix, 0), now);
    repo.root_keys = vec![RootKey::new(
        &format!("{prefix}/*"),
        now - time::Duration::hours(1),
        now + time::Duration::days(3650),
    )];
    repo
}

/// Creates collections `from..to` under `prefix` on `addr` from `threads`
/// threads. Returns the run (each first publish's latency) and how long it took.
pub fn seed(addr: &str, prefix: &str, from: usize, to: usize, threads: usize) -> Result<Run, String> {
    let next = AtomicUsize::new(from);
    let started = Instant::now();
    let parts: Vec<Result<(u64, Vec<u32>), String>> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads.max(1))
            .map(|_| {
                s.spawn(|| {
                    let mut repo = shared_repo(prefix);
                    let mut lat = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= to {
                            return Ok((0, lat));
                        }
                        repo.gun = gun(prefix, i);
                        let sent = Instant::now();
                        first_publish(addr, &mut repo).map_err(|e| format!("collection {i}: {e}"))?;
                        lat.push(micros(sent.elapsed()));
                    }
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().unwrap_or_else(|_| Err("a seeding thread panicked".into())))
            .collect()
    });
    let parts = parts.into_iter().collect::<Result<Vec<_>, String>>()?;
    Ok(Run::merge(started.elapsed(), parts))
}

/// The `timestamp.json` paths of collections `0..count` under `prefix`, or
/// of `hot` of them spread evenly over that range when `hot` is given.
pub fn read_paths(prefix: &str, count: usize, hot: Option<usize>) -> Vec<String> {
    match hot {
        Some(h) if h > 0 && h < count => (0..h).map(|k| timestamp_path(prefix, k * count / h)).collect(),
        _ => (0..count).map(|i| timestamp_path(prefix, i)).collect(),
    }
}

/// How long `timeout` allows for a collection's timestamp to answer 200:
/// the time from now until it does (a restarted node's readiness, as a
/// client sees it).
pub fn wait_ready(addr: &str, path: &str, timeout: Duration) -> Result<Duration, String> {
    let started = Instant::now();
    loop {
        if let Ok(r) = seal_testkit::http::send(addr, "GET", path, &[], &[], Duration::from_secs(2)) {
            if r.status == 200 {
                return Ok(started.elapsed());
            }
        }
        if started.elapsed() > timeout {
            return Err(format!("{path} on {addr} not served within {timeout:?}"));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hot_paths_spread_over_the_range() {
        let all = read_paths("p", 10, None);
        assert_eq!(all.len(), 10);
        assert_eq!(all[3], "/v2/p/c3/_trust/tuf/timestamp.json");
        let hot = read_paths("p", 1_000, Some(4));
        assert_eq!(
            hot,
            [0, 250, 500, 750].map(|i| timestamp_path("p", i)).to_vec(),
            "every hot collection exists and they are spread"
        );
        assert_eq!(read_paths("p", 3, Some(5)).len(), 3, "more hot than there are: all");
    }
}
