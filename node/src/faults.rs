//! Test-only fault switches, compiled only with the `fault-injection` feature (seal-chaos builds
//! seal-node with it; release and normal builds do not have this module at all).
//!
//! When `SEAL_FAULTS_FILE` names a file ([`crate::config::FAULTS_FILE_ENV`]), [`watch`] reads it
//! at start-up and then every [`POLL`] on a thread of its own. The file is JSON, every field
//! optional ([`Faults`]):
//!
//! ```json
//! {"clock_offset_ms": -90000, "fsync_delay_ms": 50, "ack_before_commit": false}
//! ```
//!
//! A missing or unparsable file (unknown fields included) means no faults; each change of what
//! the file says is logged once. The switches live in process-wide atomics:
//!
//! * `clock_offset_ms`: [`OffsetClock`] (the node's [`Clock`] while a faults file is set) adds it
//!   to the system time: every expiry check, new expiry and refresher deadline moves with it;
//! * `fsync_delay_ms`: [`seal_storage::set_sync_delay`]: every synced write of the Raft log or
//!   state machine sleeps that long first (a slow disk);
//! * `ack_before_commit`: a deliberately broken node: a publish on the leader answers success as
//!   soon as its write is proposed, without waiting for it to commit (see
//!   [`crate::backend::RaftBackend`]), so that a checker can prove it notices lost writes.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use serde::Deserialize;
use time::OffsetDateTime;

use crate::clock::Clock;

/// How often the faults file is read again.
pub const POLL: Duration = Duration::from_millis(100);

/// The switches a faults file sets; an absent field is off.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Faults {
    /// Milliseconds added to the node's wall clock (negative: behind).
    #[serde(default)]
    pub clock_offset_ms: i64,
    /// Milliseconds every synced storage write sleeps before syncing.
    #[serde(default)]
    pub fsync_delay_ms: u64,
    /// Answer a publish before its write commits.
    #[serde(default)]
    pub ack_before_commit: bool,
}

impl Faults {
    /// Parse the contents of a faults file.
    pub fn parse(bytes: &[u8]) -> Result<Faults, String> {
        serde_json::from_slice(bytes).map_err(|e| e.to_string())
    }
}

static CLOCK_OFFSET_MS: AtomicI64 = AtomicI64::new(0);
static ACK_BEFORE_COMMIT: AtomicBool = AtomicBool::new(false);

/// Make `faults` the switches of this process.
pub fn set(faults: Faults) {
    CLOCK_OFFSET_MS.store(faults.clock_offset_ms, Ordering::Relaxed);
    ACK_BEFORE_COMMIT.store(faults.ack_before_commit, Ordering::Relaxed);
    seal_storage::set_sync_delay(Duration::from_millis(faults.fsync_delay_ms));
}

/// The switches in effect.
pub fn current() -> Faults {
    Faults {
        clock_offset_ms: clock_offset_ms(),
        fsync_delay_ms: u64::try_from(seal_storage::faults::sync_delay().as_millis()).unwrap_or(u64::MAX),
        ack_before_commit: ack_before_commit(),
    }
}

/// The current clock offset in milliseconds.
pub fn clock_offset_ms() -> i64 {
    CLOCK_OFFSET_MS.load(Ordering::Relaxed)
}

/// Whether a publish is acknowledged before it commits.
pub fn ack_before_commit() -> bool {
    ACK_BEFORE_COMMIT.load(Ordering::Relaxed)
}

/// A clock running `clock_offset_ms` ahead of (or behind) `C`.
#[derive(Debug, Clone, Copy, Default)]
pub struct OffsetClock<C>(pub C);

impl<C: Clock> Clock for OffsetClock<C> {
    fn now(&self) -> OffsetDateTime {
        self.0.now() + time::Duration::milliseconds(clock_offset_ms())
    }
}

/// What one read of the faults file found.
#[derive(Debug, Clone, PartialEq, Eq)]
enum FileState {
    Missing,
    Unusable(String),
    Set(Faults),
}

impl FileState {
    fn read(path: &Path) -> FileState {
        match std::fs::read(path) {
            Ok(bytes) => match Faults::parse(&bytes) {
                Ok(f) => FileState::Set(f),
                Err(e) => FileState::Unusable(e),
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => FileState::Missing,
            Err(e) => FileState::Unusable(e.to_string()),
        }
    }

    fn faults(&self) -> Faults {
        match self {
            FileState::Set(f) => *f,
            FileState::Missing | FileState::Unusable(_) => Faults::default(),
        }
    }
}

/// Follows one faults file: applies and logs what it says whenever that changes.
struct Watcher {
    path: PathBuf,
    last: Option<FileState>,
}

impl Watcher {
    fn new(path: PathBuf) -> Watcher {
        Watcher { path, last: None }
    }

    /// Read the file; if what it says changed, apply it and log it. Returns whether it changed.
    fn poll(&mut self) -> bool {
        let state = FileState::read(&self.path);
        if self.last.as_ref() == Some(&state) {
            return false;
        }
        let path = self.path.display();
        match &state {
            FileState::Missing => tracing::warn!(file = %path, "fault injection: faults file absent; no faults"),
            FileState::Unusable(error) => {
                tracing::warn!(file = %path, %error, "fault injection: faults file unusable; no faults")
            }
            FileState::Set(f) => tracing::warn!(
                file = %path,
                clock_offset_ms = f.clock_offset_ms,
                fsync_delay_ms = f.fsync_delay_ms,
                ack_before_commit = f.ack_before_commit,
                "fault injection: switches changed"
            ),
        }
        set(state.faults());
        self.last = Some(state);
        true
    }
}

static WATCHED: OnceLock<PathBuf> = OnceLock::new();

/// Turn fault injection on for this process: read `path` now, then every [`POLL`] on the
/// `seal-faults` thread, for the life of the process. Calling it again with the same path does
/// nothing; with another path it fails (the switches are process-wide).
pub fn watch(path: PathBuf) -> Result<(), String> {
    let first = WATCHED.get_or_init(|| path.clone());
    if *first != path {
        return Err(format!(
            "fault injection already follows {}, not {}",
            first.display(),
            path.display()
        ));
    }
    static STARTED: OnceLock<Result<(), String>> = OnceLock::new();
    STARTED
        .get_or_init(|| {
            tracing::warn!(
                file = %path.display(),
                "FAULT INJECTION IS ON: this test build lets the faults file skew the clock, slow the \
                 disk and acknowledge writes before they commit; never serve anyone with it"
            );
            let mut watcher = Watcher::new(path.clone());
            watcher.poll();
            std::thread::Builder::new()
                .name("seal-faults".into())
                .spawn(move || loop {
                    std::thread::sleep(POLL);
                    watcher.poll();
                })
                .map(|_| ())
                .map_err(|e| format!("cannot start the fault injection thread: {e}"))
        })
        .clone()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// Serialises the tests that change the process-wide switches.
    static GLOBALS: Mutex<()> = Mutex::new(());

    #[test]
    fn faults_files_parse_with_every_field_optional() {
        assert_eq!(Faults::parse(b"{}").unwrap(), Faults::default());
        assert_eq!(
            Faults::parse(br#"{"clock_offset_ms": -90000, "fsync_delay_ms": 50, "ack_before_commit": true}"#).unwrap(),
            Faults {
                clock_offset_ms: -90_000,
                fsync_delay_ms: 50,
                ack_before_commit: true,
            }
        );
        assert_eq!(
            Faults::parse(br#"{"fsync_delay_ms": 7}"#).unwrap(),
            Faults {
                fsync_delay_ms: 7,
                ..Faults::default()
            }
        );
        // A misspelt switch, a wrong type, a negative delay, or no JSON at all: refused.
        for bad in [
            &br#"{"clock_ofset_ms": 5}"#[..],
            br#"{"ack_before_commit": "yes"}"#,
            br#"{"fsync_delay_ms": -1}"#,
            b"",
            b"clock_offset_ms=5",
        ] {
            assert!(Faults::parse(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
    }

    struct Fixed(OffsetDateTime);

    impl Clock for Fixed {
        fn now(&self) -> OffsetDateTime {
            self.0
        }
    }

    #[test]
    fn offset_clock_follows_the_current_offset() {
        let _g = GLOBALS.lock().unwrap_or_else(|p| p.into_inner());
        let t0 = time::macros::datetime!(2026-11-21 23:54:56 UTC);
        let clock = OffsetClock(Fixed(t0));
        set(Faults::default());
        assert_eq!(clock.now(), t0);
        set(Faults {
            clock_offset_ms: 90_500,
            ..Faults::default()
        });
        assert_eq!(clock.now(), t0 + time::Duration::milliseconds(90_500));
        set(Faults {
            clock_offset_ms: -3_600_000,
            ..Faults::default()
        });
        assert_eq!(clock.now(), t0 - time::Duration::hours(1));
        set(Faults::default());
        assert_eq!(clock.now(), t0);
    }

    #[test]
    fn the_watcher_applies_each_change_of_the_file_and_no_faults_when_unusable() {
        let _g = GLOBALS.lock().unwrap_or_else(|p| p.into_inner());
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("faults.json");
        let mut w = Watcher::new(path.clone());
        assert!(w.poll(), "the first read is a change");
        assert_eq!(current(), Faults::default());
        assert!(!w.poll(), "still missing: nothing to log");

        std::fs::write(&path, br#"{"clock_offset_ms": 1500, "ack_before_commit": true}"#).unwrap();
        assert!(w.poll());
        assert_eq!((clock_offset_ms(), ack_before_commit()), (1500, true));
        assert!(!w.poll());

        std::fs::write(&path, b"{not json").unwrap();
        assert!(w.poll());
        assert_eq!(current(), Faults::default());
        assert!(!w.poll());

        std::fs::write(&path, br#"{"fsync_delay_ms": 3}"#).unwrap();
        assert!(w.poll());
        assert_eq!(current().fsync_delay_ms, 3);
        std::fs::remove_file(&path).unwrap();
        assert!(w.poll());
        assert_eq!(current(), Faults::default());
    }
}
