//! The time source every limit decision uses, injectable so tests control it.

use std::fmt;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Wall-clock time in microseconds since the Unix epoch.
///
/// Backends own a clock and the limiter reads it once per request; on Redis the value is passed
/// into the scripts, so all replicas must keep their clocks in sync (NTP keeps the error to
/// milliseconds, which shifts a rate window by as much and nothing more).
pub trait Clock: Send + Sync + fmt::Debug {
    /// Microseconds since 1970-01-01T00:00:00Z.
    fn now_micros(&self) -> i64;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_micros(&self) -> i64 {
        match SystemTime::now().duration_since(UNIX_EPOCH) {
            Ok(since) => i64::try_from(since.as_micros()).unwrap_or(i64::MAX),
            Err(before) => -i64::try_from(before.duration().as_micros()).unwrap_or(i64::MAX),
        }
    }
}

/// A clock that only moves when told to: for tests and simulations.
#[derive(Debug, Default)]
pub struct ManualClock {
    micros: AtomicI64,
}

impl ManualClock {
    /// A clock standing at `micros` since the epoch.
    pub fn new(micros: i64) -> Self {
        ManualClock {
            micros: AtomicI64::new(micros),
        }
    }

    /// A clock standing at the given UTC date and time.
    pub fn at_utc(year: i32, month: u8, day: u8, hour: u8, minute: u8, second: u8) -> Self {
        Self::new(crate::calendar::utc_micros(
            year, month, day, hour, minute, second,
        ))
    }

    /// Moves the clock to `micros` since the epoch.
    pub fn set(&self, micros: i64) {
        self.micros.store(micros, Ordering::SeqCst);
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        let by = i64::try_from(by.as_micros()).unwrap_or(i64::MAX);
        self.micros.fetch_add(by, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_micros(&self) -> i64 {
        self.micros.load(Ordering::SeqCst)
    }
}
