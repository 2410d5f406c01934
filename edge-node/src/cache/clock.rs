//! The cache's clock: milliseconds since the Unix epoch, read from the wall clock once (the
//! first time it is asked) and advanced by the monotonic clock from then on.
//!
//! Freshness records are wall-clock times (they are written to disk and must mean something
//! after a restart), but while a process runs, a step of the wall clock (a manual `date`, an
//! NTP step after a suspended VM wakes) must not change what is fresh: read from the wall
//! clock, a jump of a day forward made every stored object stale at once, every `Age` a day,
//! and every new response from an origin on the right time stale on arrival (its `Date` a day
//! old); a jump back kept objects fresh for an extra day. On this clock neither happens; a
//! step is picked up at the next start. `Date` fields are not ours: they follow the wall
//! clock.

use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The monotonic instant and the wall-clock time (ms since the epoch) read together.
static ANCHOR: OnceLock<(Instant, u64)> = OnceLock::new();

/// Now on the cache's clock, in milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> u64 {
    let (at, wall_ms) = *ANCHOR.get_or_init(|| {
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        (Instant::now(), wall)
    });
    wall_ms.saturating_add(at.elapsed().as_millis() as u64)
}

/// Now on the cache's clock, as a `SystemTime` (for the policy, which compares it with
/// `Date`, `Expires` and `Last-Modified`).
pub(crate) fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(now_ms())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn it_never_runs_backwards_and_starts_at_the_wall_clock() {
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let a = now_ms();
        let b = now_ms();
        assert!(b >= a);
        // Anchored at the first call of the process: within a minute of the wall clock in a
        // test run.
        assert!(a.abs_diff(wall) < 60_000, "{a} vs {wall}");
    }
}
