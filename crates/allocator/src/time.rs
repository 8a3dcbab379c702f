//! Virtual time: the caller passes `now` in; the allocator never reads a clock.

use std::fmt;

/// Seconds in an hour.
pub const HOUR_S: u64 = 3_600;
/// Seconds in a day.
pub const DAY_S: u64 = 24 * HOUR_S;
/// Seconds in a week, the window of the GPU-hour quota.
pub const WEEK_S: u64 = 7 * DAY_S;

/// A point in time, in milliseconds since an epoch the caller chooses (Unix time for the
/// server, the start of the run for the simulator).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(u64);

impl Timestamp {
    /// The epoch itself.
    pub const ZERO: Timestamp = Timestamp(0);

    /// A timestamp from milliseconds since the epoch.
    pub const fn from_millis(millis: u64) -> Timestamp {
        Timestamp(millis)
    }

    /// A timestamp from whole seconds since the epoch.
    pub const fn from_secs(secs: u64) -> Timestamp {
        Timestamp(secs.saturating_mul(1_000))
    }

    /// A timestamp from fractional seconds; negative values clamp to the epoch.
    pub fn from_secs_f64(secs: f64) -> Timestamp {
        Timestamp((secs.max(0.0) * 1_000.0).round() as u64)
    }

    /// Milliseconds since the epoch.
    pub const fn as_millis(self) -> u64 {
        self.0
    }

    /// Seconds since the epoch, fractional.
    pub fn as_secs_f64(self) -> f64 {
        self.0 as f64 / 1_000.0
    }

    /// This time plus `secs` seconds, saturating.
    pub fn plus_secs(self, secs: u64) -> Timestamp {
        Timestamp(self.0.saturating_add(secs.saturating_mul(1_000)))
    }

    /// This time plus fractional seconds, rounded up to the next millisecond so that a
    /// deadline computed from it is never early.
    pub fn plus_secs_f64_ceil(self, secs: f64) -> Timestamp {
        let millis = (secs.max(0.0) * 1_000.0).ceil();
        Timestamp(self.0.saturating_add(millis.min(u64::MAX as f64) as u64))
    }

    /// This time minus `secs` seconds, saturating at the epoch.
    pub fn minus_secs(self, secs: u64) -> Timestamp {
        Timestamp(self.0.saturating_sub(secs.saturating_mul(1_000)))
    }

    /// Seconds from `earlier` to `self`, zero when `earlier` is later.
    pub fn secs_since(self, earlier: Timestamp) -> f64 {
        self.0.saturating_sub(earlier.0) as f64 / 1_000.0
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.0 / 1_000;
        let millis = self.0 % 1_000;
        if millis == 0 {
            write!(f, "{secs}s")
        } else {
            write!(f, "{secs}.{millis:03}s")
        }
    }
}
