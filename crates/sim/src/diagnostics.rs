//! Diagnostics behind `--diagnose`: where GPU time goes while someone waits, why requests go
//! unserved, and what newcomers who waited found when they arrived. They explain the metrics;
//! they are not metrics and no target is judged on them.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

/// What a waiting session is doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum WaitKind {
    /// In the allocator's queue.
    Queued,
    /// Refused with this code; asks again after the retry delay.
    Refused(&'static str),
}

/// The findings of one run.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Diagnostics {
    /// Busy GPU-seconds the workload plans in the window (sessions arriving in it, chains over
    /// it), over GPU-seconds present: no policy can have a higher busy utilisation except by
    /// serving work planned before the window.
    pub busy_planned_fraction: f64,
    /// GPU-seconds free while at least one session waited, over GPU-seconds present, by what
    /// the waiting sessions were doing (the first applicable of: a queued request that fits,
    /// a queued request that needs more GPUs than are free, a refusal by code).
    pub free_while_waiting: BTreeMap<String, f64>,
    /// GPU-seconds free while nobody waited, over GPU-seconds present.
    pub free_while_nobody_waits: f64,
    /// Refusals in the window by code.
    pub refusals: BTreeMap<String, usize>,
    /// Requests in the window never served, by what they were doing last.
    pub unserved: BTreeMap<String, usize>,
    /// Planned GPU-seconds left undone by sessions stopped at their lifetime or quota, over
    /// GPU-seconds present (in the window).
    pub dropped_by_stops: f64,
    /// Newcomers who waited more than a minute for their first GPU (or never got one), by
    /// what they found when they first asked.
    pub slow_newcomers: BTreeMap<String, usize>,
}

impl Diagnostics {
    pub(crate) fn free_while_waiting(&mut self, category: String, gpu_s: f64) {
        *self.free_while_waiting.entry(category).or_default() += gpu_s;
    }

    pub(crate) fn refused(&mut self, code: &str) {
        *self.refusals.entry(code.to_owned()).or_default() += 1;
    }

    pub(crate) fn unserved(&mut self, cause: String) {
        *self.unserved.entry(cause).or_default() += 1;
    }

    pub(crate) fn slow_newcomer(&mut self, cause: &str) {
        *self.slow_newcomers.entry(cause.to_owned()).or_default() += 1;
    }

    /// Turns GPU-seconds into fractions of `capacity_gpu_s`.
    pub(crate) fn normalise(&mut self, capacity_gpu_s: f64) {
        for value in self.free_while_waiting.values_mut() {
            *value /= capacity_gpu_s;
        }
        self.free_while_nobody_waits /= capacity_gpu_s;
        self.dropped_by_stops /= capacity_gpu_s;
    }

    /// The human rendering, one line per finding.
    pub fn render(&self, policy: &str) -> String {
        let mut out = format!(
            "diagnostics ({policy}): planned busy GPU time {:.1} % of capacity; free while nobody waits {:.1} %; planned time dropped by lifetime and quota stops {:.1} %\n",
            100.0 * self.busy_planned_fraction,
            100.0 * self.free_while_nobody_waits,
            100.0 * self.dropped_by_stops
        );
        let mut line = |label: &str, map: &dyn Fn(&mut String)| {
            let mut text = format!("  {label}:");
            map(&mut text);
            out.push_str(&text);
            out.push('\n');
        };
        line("free while someone waits (% of capacity)", &|text| {
            for (category, value) in &self.free_while_waiting {
                write!(text, " {category} {:.2} %;", 100.0 * value).expect("writing to a string");
            }
        });
        line("refusals", &|text| {
            for (code, count) in &self.refusals {
                write!(text, " {code} {count};").expect("writing to a string");
            }
        });
        line("never served", &|text| {
            for (cause, count) in &self.unserved {
                write!(text, " {cause} {count};").expect("writing to a string");
            }
        });
        line("newcomers waiting over 60 s, at arrival", &|text| {
            for (cause, count) in &self.slow_newcomers {
                write!(text, " {cause} {count};").expect("writing to a string");
            }
        });
        out
    }
}
