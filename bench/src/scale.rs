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

/// `reads` distinct collections among `0..count`, in a random order drawn from `seed` (all of
/// them when `reads` ≥ `count`).
pub fn distinct_sample(count: usize, reads: usize, seed: u64) -> Vec<usize> {
    let mut order: Vec<usize> = (0..count).collect();
    // splitmix64 of the seed: distinct seeds, distinct (and never zero) xorshift states.
    let mut state = {
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        (z ^ (z >> 31)) | 1
    };
    let reads = reads.min(count);
    // The first `reads` steps of a Fisher-Yates shuffle.
    for i in 0..reads {
        let j = i + crate::read::next_index(&mut state, count - i);
        order.swap(i, j);
    }
    order.truncate(reads);
    order
}

/// The first GET of `timestamp.json` of each collection in `indices`, one at a time on one
/// keep-alive connection: each read's latency without queueing, and, right after a restart with
/// the page cache dropped, a read of data no earlier request brought into memory. Any answer
/// other than 200 is an error.
pub fn first_reads(addr: &str, prefix: &str, indices: &[usize]) -> Result<Run, String> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).map_err(|e| format!("connect to {addr}: {e}"))?;
    stream.set_nodelay(true).map_err(|e| format!("nodelay: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| format!("timeout: {e}"))?;
    let started = Instant::now();
    let mut latencies = Vec::with_capacity(indices.len());
    let mut buf = Vec::with_capacity(16 * 1024);
    for &i in indices {
        let path = timestamp_path(prefix, i);
        let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: seal-bench\r\n\r\n");
        let sent = Instant::now();
        stream
            .write_all(request.as_bytes())
            .map_err(|e| format!("{path}: send: {e}"))?;
        buf.clear();
        let status = loop {
            match crate::read::parse_response(&buf).map_err(|e| format!("{path}: {e}"))? {
                crate::read::Parsed::Done { status, close: false } => break status,
                crate::read::Parsed::Done { close: true, .. } => return Err(format!("{path}: the server closed")),
                crate::read::Parsed::Incomplete => {}
            }
            let mut chunk = [0u8; 8192];
            let n = stream.read(&mut chunk).map_err(|e| format!("{path}: read: {e}"))?;
            if n == 0 {
                return Err(format!("{path}: the server closed"));
            }
            buf.extend_from_slice(&chunk[..n]);
        };
        if status != 200 {
            return Err(format!("{path}: status {status}"));
        }
        latencies.push(micros(sent.elapsed()));
    }
    Ok(Run::merge(started.elapsed(), [(0, latencies)]))
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
    fn a_distinct_sample_has_no_repeat_and_stays_in_range() {
        let sample = distinct_sample(1_000, 300, 42);
        assert_eq!(sample.len(), 300);
        let set: std::collections::BTreeSet<_> = sample.iter().copied().collect();
        assert_eq!(set.len(), 300, "no collection read twice");
        assert!(set.iter().all(|i| *i < 1_000));
        assert_ne!(sample, distinct_sample(1_000, 300, 43), "another seed, another order");
        assert_eq!(distinct_sample(5, 10, 1).len(), 5, "at most every collection");
    }

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
