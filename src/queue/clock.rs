//! The one place the queue layer gets the time from.
//!
//! Every persisted time (push time, lease and delay deadlines, expiry) is
//! milliseconds since the Unix epoch, so a lease taken before a restart still runs
//! to its deadline after it. But the server does not *read* the wall clock as it
//! runs: [`SystemClock`] reads it once, at start, and from then on counts with the
//! monotonic clock (`now = wall clock at start + monotonic time elapsed`), and the
//! actors arm their timers on that same monotonic clock.
//!
//! # What a wall-clock step does
//! - **While the server runs**, nothing: if NTP (or an operator) steps the wall
//!   clock forward an hour, no lease fires early, and stepping it back stalls none.
//!   Server time keeps counting at the monotonic rate (which NTP slews, but never
//!   steps), so it stays within the step of the wall clock; times the server
//!   reports (`pushed_at_ms`, `reserved_until_ms`) are off from the wall clock by the
//!   size of the step until the next restart.
//! - **At the next restart**, server time is the wall clock again, and deadlines
//!   read from disk are measured against it: after a step forward of an hour while
//!   the server was running, leases with less than an hour left expire at once
//!   on restart (correct, in wall-clock terms); after a step back, they last longer
//!   by the step.
//! - Time spent suspended (a paused VM) does not count on Linux's monotonic clock:
//!   leases are extended by the pause, as if the server had not been running.
//!
//! The state machine itself (`state.rs`) never sees a clock: it takes `now` as an
//! argument. [`ManualClock`] is the clock of tests that drive a real actor or
//! server: time moves only when the test says so, and a request observes it.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

/// How far ahead a timer is armed when its deadline cannot be expressed as an
/// `Instant` (a far deadline, or a manual clock): waking early just re-arms.
const FAR: Duration = Duration::from_secs(24 * 3600);

/// Where server time comes from.
pub trait Clock: Send + Sync + fmt::Debug + 'static {
    /// Now, in milliseconds since the Unix epoch, as this server counts them.
    fn now_ms(&self) -> u64;
    /// When, on tokio's monotonic clock, a timer for server time `at_ms` should
    /// fire. A timer firing early is harmless (the actor re-arms); late is not.
    fn instant_at(&self, at_ms: u64) -> Instant;
}

/// The production clock: the wall clock read at start, then monotonic time.
#[derive(Debug, Clone, Copy)]
pub struct SystemClock {
    epoch_ms: u64,
    start: Instant,
}

impl SystemClock {
    /// A clock anchored at the wall clock now.
    pub fn new() -> Self {
        let epoch_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0);
        SystemClock {
            epoch_ms,
            start: Instant::now(),
        }
    }
}

impl Default for SystemClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        let elapsed = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.epoch_ms.saturating_add(elapsed)
    }

    fn instant_at(&self, at_ms: u64) -> Instant {
        // +1 ms: tokio's timer rounds to milliseconds, and waking before the
        // deadline would only loop once more.
        let after = Duration::from_millis(at_ms.saturating_sub(self.epoch_ms).saturating_add(1));
        let now = Instant::now();
        self.start
            .checked_add(after)
            .map_or(now + FAR, |at| at.min(now + FAR))
    }
}

/// A clock that moves only when told to ([`ManualClock::advance`]). An actor on
/// this clock sees the new time at its next request; its own timers never fire.
#[derive(Debug)]
pub struct ManualClock {
    now_ms: AtomicU64,
}

impl ManualClock {
    /// A clock reading `start_ms`.
    pub fn new(start_ms: u64) -> Self {
        ManualClock {
            now_ms: AtomicU64::new(start_ms),
        }
    }

    /// Moves the clock forward by `ms`.
    pub fn advance(&self, ms: u64) {
        self.now_ms.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> u64 {
        self.now_ms.load(Ordering::SeqCst)
    }

    fn instant_at(&self, _at_ms: u64) -> Instant {
        Instant::now() + FAR
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn should_count_server_time_on_the_monotonic_clock() {
        let clock = SystemClock::new();
        let first = clock.now_ms();
        let second = clock.now_ms();
        assert!(second >= first);
        // A deadline 5 s away is armed about 5 s from the anchor, whatever the wall
        // clock does meanwhile.
        let at = clock.instant_at(clock.epoch_ms + 5_000);
        let expected = clock.start + Duration::from_millis(5_001);
        assert_eq!(at, expected);
        // A deadline in the past fires now; one absurdly far away is capped.
        assert!(clock.instant_at(0) <= Instant::now() + Duration::from_millis(1));
        assert!(clock.instant_at(u64::MAX) <= Instant::now() + FAR);
    }

    #[test]
    fn should_move_a_manual_clock_only_when_told() {
        let clock = ManualClock::new(1_000);
        assert_eq!(clock.now_ms(), 1_000);
        clock.advance(250);
        assert_eq!(clock.now_ms(), 1_250);
    }
}
