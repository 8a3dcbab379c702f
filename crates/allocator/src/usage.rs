//! Per-user usage: decayed GPU-seconds for the fair-share order, and closed intervals for the
//! rolling weekly quota.

use std::collections::VecDeque;

use crate::event::UsageRecord;
use crate::time::{Timestamp, WEEK_S};

/// A user's accounting. Running kernels' usage is not in `closed`; the allocator adds it.
#[derive(Clone, Debug, Default)]
pub(crate) struct Usage {
    /// Decayed GPU-seconds at `decayed_at`.
    decayed: f64,
    decayed_at: Timestamp,
    /// GPUs held since `decayed_at`.
    pub(crate) gpus_held: u32,
    /// Closed usage intervals, sorted by end, none older than a week before the last prune.
    closed: VecDeque<UsageRecord>,
}

impl Usage {
    /// Decayed usage at `now` without changing state. `decay_per_s` is ln 2 / half-life.
    pub(crate) fn decayed_at(&self, now: Timestamp, decay_per_s: f64) -> f64 {
        let elapsed = now.secs_since(self.decayed_at);
        if elapsed <= 0.0 {
            return self.decayed;
        }
        let factor = (-decay_per_s * elapsed).exp();
        // Usage accrues at `gpus_held` GPU-seconds per second while it decays.
        self.decayed * factor + f64::from(self.gpus_held) * (1.0 - factor) / decay_per_s
    }

    /// Brings the decayed usage up to `now`; call before `gpus_held` changes.
    pub(crate) fn accrue(&mut self, now: Timestamp, decay_per_s: f64) {
        if now > self.decayed_at {
            self.decayed = self.decayed_at(now, decay_per_s);
            self.decayed_at = now;
        }
    }

    /// Adds a closed interval (a kernel gave its GPUs back, or the ledger replayed one).
    pub(crate) fn record(&mut self, record: UsageRecord, decay_per_s: f64, now: Timestamp) {
        if record.gpus == 0 || record.end <= record.start {
            return;
        }
        if record.end < now {
            // A ledger record: fold its decayed contribution in directly.
            let gpu_s = f64::from(record.gpus);
            let from_end = now.secs_since(record.end);
            let span = record.end.secs_since(record.start);
            let contribution = gpu_s * (1.0 - (-decay_per_s * span).exp()) / decay_per_s
                * (-decay_per_s * from_end).exp();
            self.accrue(now, decay_per_s);
            self.decayed += contribution;
        }
        let idx = self
            .closed
            .partition_point(|existing| existing.end <= record.end);
        self.closed.insert(idx, record);
    }

    /// Closed GPU-seconds within the week ending at `at`.
    pub(crate) fn closed_in_week(&self, at: Timestamp) -> f64 {
        let window_start = at.minus_secs(WEEK_S);
        self.closed
            .iter()
            .rev()
            .take_while(|record| record.end > window_start)
            .map(|record| {
                let start = record.start.max(window_start);
                let end = record.end.min(at);
                end.secs_since(start) * f64::from(record.gpus)
            })
            .sum()
    }

    /// The earliest time at which the closed usage in the window falls to `target`
    /// GPU-seconds, assuming no new use.
    pub(crate) fn closed_falls_to(&self, now: Timestamp, target: f64) -> Timestamp {
        if self.closed_in_week(now) <= target {
            return now;
        }
        let (mut low, mut high) = (now.as_millis(), now.plus_secs(WEEK_S).as_millis());
        while high - low > 1 {
            let mid = low + (high - low) / 2;
            if self.closed_in_week(Timestamp::from_millis(mid)) <= target {
                high = mid;
            } else {
                low = mid;
            }
        }
        Timestamp::from_millis(high)
    }

    /// Drops intervals that ended more than a week before `now`.
    pub(crate) fn prune(&mut self, now: Timestamp) {
        let window_start = now.minus_secs(WEEK_S);
        while self
            .closed
            .front()
            .is_some_and(|record| record.end <= window_start)
        {
            self.closed.pop_front();
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.closed.is_empty() && self.gpus_held == 0 && self.decayed < 1e-3
    }
}
