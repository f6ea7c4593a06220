//! `seal-testkit`: what every Seal test crate, and the seal-chaos tool,
//! shares, so that each has one answer:
//!
//! * "where are the Notary fixtures?" and "may this test skip?" (below);
//! * "which port may a process take?" ([`free_port`]);
//! * "how is a process started, waited for, killed, restarted?"
//!   ([`process`]);
//! * "how does a test talk HTTP to a node?" ([`http`]);
//! * "where do certificates come from?" ([`pki`]);
//! * "how is a link between processes cut?" ([`proxy`]);
//! * "where is a Python tool from PyPI?" ([`python_venv`]).
//!
//! It depends on no Seal crate and has no feature, so the crates below
//! seal-node (seal-raft's and seal-signer's tests, seal-signer's `testing`
//! feature) and the shipping seal-chaos binary can all use it
//! (docs/architecture.md, "Test harness").
//!
//! A test whose outside part is missing (the Notary fixtures, SoftHSM2, a
//! database server) says that it skipped, on stderr, and passes; under
//! `CI=true` (set by `.ci/run`, where everything is installed and
//! `../shared` is present) the same absence is a failure, so that CI can
//! never pass on tests that did not run.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod http;
pub mod pki;
pub mod process;
pub mod proxy;
mod python;

pub use python::python_venv;

use std::path::PathBuf;

pub mod db;

/// The environment variable that overrides where the Notary fixtures are.
pub const FIXTURES_ENV: &str = "SEAL_NOTARY_FIXTURES";

/// Whether this run is CI's (`CI` set to `true` or `1`).
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Says that a test skipped because `what` is missing, or, under CI,
/// fails the test with the same words.
#[track_caller]
pub fn skip(what: &str) {
    if in_ci() {
        panic!("{what}, and CI=true requires it: the test cannot be skipped under CI");
    }
    eprintln!("skipped: {what}");
}

/// The real Notary v0.7.0 fixtures (`$SEAL_NOTARY_FIXTURES`, else
/// `../shared/fixtures/notary` beside the workspace), or `None` after
/// [`skip`] when they are not there.
#[track_caller]
pub fn notary_fixtures() -> Option<PathBuf> {
    let dir = std::env::var_os(FIXTURES_ENV).map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures/notary"),
        PathBuf::from,
    );
    if dir.join("README.md").is_file() {
        Some(dir)
    } else {
        skip(&format!(
            "Notary fixtures not found at {} (set {FIXTURES_ENV})",
            dir.display()
        ));
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fixtures_are_found_beside_the_workspace() {
        // Under CI this fails when ../shared is missing, as it must.
        if let Some(dir) = notary_fixtures() {
            assert!(
                dir.join("API.md").is_file(),
                "{} is not the Notary fixtures",
                dir.display()
            );
        }
    }
}

/// The lowest port [`free_port`] hands out.
pub const TEST_PORTS_FROM: u16 = 20_000;
/// One above the highest: Linux's ephemeral range (the source ports of
/// outgoing connections) starts at 32768 by default.
pub const TEST_PORTS_TO: u16 = 32_768;

/// A loopback port nobody listens on, for a process a test starts.
///
/// A port the kernel picks (`bind(":0")`) comes from the ephemeral range,
/// which the source ports of outgoing connections share: between picking
/// it and the server binding it, any connection the test makes may take
/// it (`Address already in use`). So the port comes from just below that
/// range instead, at random, checked free by binding it. A port is handed
/// out at most once per process: two servers of one test never draw the
/// same port, whichever threads ask.
pub fn free_port() -> u16 {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static DRAWS: AtomicU64 = AtomicU64::new(0);
    static HANDED_OUT: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let span = u64::from(TEST_PORTS_TO - TEST_PORTS_FROM);
    for _ in 0..1000 {
        // RandomState is seeded randomly per process; the counter varies
        // each draw.
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(DRAWS.fetch_add(1, Ordering::Relaxed));
        h.write_u32(std::process::id());
        let port = TEST_PORTS_FROM + u16::try_from(h.finish() % span).unwrap_or(0);
        let mut handed_out = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
        if handed_out.contains(&port) {
            continue;
        }
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            handed_out.push(port);
            return port;
        }
    }
    panic!("no free loopback port between {TEST_PORTS_FROM} and {TEST_PORTS_TO}");
}

#[cfg(test)]
mod port_tests {
    use super::{free_port, TEST_PORTS_FROM, TEST_PORTS_TO};
    use std::net::TcpListener;

    #[test]
    fn free_ports_are_in_range_distinct_and_never_a_port_in_use() {
        // A port in use is never handed out: hold a block of the range
        // (whatever of it another process does not hold already) and draw.
        let held: Vec<TcpListener> = (TEST_PORTS_FROM..TEST_PORTS_FROM + 2_000)
            .filter_map(|p| TcpListener::bind(("127.0.0.1", p)).ok())
            .collect();
        let held_ports: Vec<u16> = held.iter().map(|l| l.local_addr().unwrap().port()).collect();
        let mut drawn = Vec::new();
        for _ in 0..300 {
            let p = free_port();
            assert!((TEST_PORTS_FROM..TEST_PORTS_TO).contains(&p), "{p}");
            assert!(!held_ports.contains(&p), "{p} is held by this test");
            assert!(!drawn.contains(&p), "{p} was handed out twice");
            drawn.push(p);
        }
    }
}
