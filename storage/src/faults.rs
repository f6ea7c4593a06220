//! Test-only fault switches (feature `fault-injection`, for seal-chaos): a delay before every
//! synced write, simulating a slow disk. Without the feature this module does not exist and the
//! write path has no check at all.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The delay before each synced write, in nanoseconds (0: none).
static SYNC_DELAY_NANOS: AtomicU64 = AtomicU64::new(0);

/// Make every synced write of this process (the WAL fsync of a group of Raft log appends,
/// truncations and purges, vote writes, the record of a newly installed state-machine generation:
/// every write with `sync`) sleep `delay` first.
/// `Duration::ZERO` turns it off. Process-global: it affects every open [`crate::Store`].
pub fn set_sync_delay(delay: Duration) {
    let nanos = u64::try_from(delay.as_nanos()).unwrap_or(u64::MAX);
    SYNC_DELAY_NANOS.store(nanos, Ordering::Relaxed);
}

/// The delay [`set_sync_delay`] set.
pub fn sync_delay() -> Duration {
    Duration::from_nanos(SYNC_DELAY_NANOS.load(Ordering::Relaxed))
}

/// Called by the write path just before a synced write: sleeps the configured delay.
pub(crate) fn before_sync() {
    let delay = sync_delay();
    if !delay.is_zero() {
        std::thread::sleep(delay);
    }
}
