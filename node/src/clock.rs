//! Where the node's `now` comes from: the [`Clock`] every wall-clock decision
//! on metadata reads (expiry checks, new expiries, changefeed times, the
//! refresher's deadlines), and the [`SystemClock`]. A test build with the
//! `fault-injection` feature offsets it (`faults::OffsetClock`).

use time::OffsetDateTime;

/// Where `now` comes from: one place, so a test build can offset it.
pub trait Clock: Send + Sync + 'static {
    /// The current time.
    fn now(&self) -> OffsetDateTime;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }
}
