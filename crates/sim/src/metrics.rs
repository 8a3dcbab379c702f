//! What a run measures, defined once here and in `docs/allocator.md`.
//!
//! All time-integrated metrics cover the measurement window `[warmup, horizon)`; requests and
//! newcomers count when they were made inside it.
//!
//! * **GPU held / busy utilisation**: GPU-seconds held by kernels (busy: held by kernels in a
//!   busy phase) over GPU-seconds present.
//! * **Wait**: for each GPU request (a session opening, or coming back after a reclaim), the
//!   time from asking to placement, retries after refusals included. A request never served
//!   (given up after the patience, refused for quota, or still waiting when the run ends)
//!   counts as infinitely long; a percentile that falls on one is reported as `null`.
//! * **Newcomer time to first GPU**: for users whose first request falls in the window, the
//!   time from it to their first placement.
//! * **Demand-normalised Jain index**: at every instant each user's entitlement is their
//!   weighted max-min fair share of the GPUs present given every user's demand (GPUs held plus
//!   GPUs wanted by waiting or retrying sessions). Per hour, `x_u = received_u / entitled_u`
//!   over users entitled to something; `J = (sum x)^2 / (n sum x^2)`. Reported: the median
//!   and 10th percentile over hours.
//! * **Top 1 % share over entitlement**: the top 1 % of users by planned demand; their GPU
//!   time received over their GPU time entitled, summed over the window.
//! * **Wrongly reclaimed**: reclaims where the kernel was busy, or no user under their share
//!   was waiting (or the victim's user was not over theirs), or the kernel had been idle less
//!   than the grace period or was reclaimed before its warning said; as a share of sessions
//!   placed in the window.

use commonlab_allocator::{water_level, PolicyKind, ShareClaim};
use serde::Serialize;

use crate::workload::{top_count, Workload};

/// The results of one policy on one workload.
#[derive(Clone, Debug, Serialize)]
pub struct Metrics {
    /// The policy's name.
    pub policy: &'static str,
    /// The workload's name.
    pub workload: String,
    /// GPUs present.
    pub gpus: u32,
    /// Planned GPU time over GPU time present, in the window.
    pub offered_load: f64,
    /// See the module docs.
    pub gpu_held_utilisation: f64,
    /// See the module docs.
    pub gpu_busy_utilisation: f64,
    /// Requests made in the window.
    pub requests: usize,
    /// Of which never served.
    pub requests_unserved: usize,
    /// Wait percentiles in seconds; `None` when the percentile falls on an unserved request.
    pub wait_p50_s: Option<f64>,
    /// See `wait_p50_s`.
    pub wait_p95_s: Option<f64>,
    /// See `wait_p50_s`.
    pub wait_p99_s: Option<f64>,
    /// Users whose first request fell in the window.
    pub newcomers: usize,
    /// Of which never placed.
    pub newcomers_unserved: usize,
    /// Newcomers' time to first GPU, seconds.
    pub newcomer_first_gpu_p50_s: Option<f64>,
    /// See `newcomer_first_gpu_p50_s`.
    pub newcomer_first_gpu_p95_s: Option<f64>,
    /// Median over hours of the demand-normalised Jain index.
    pub jain_median: f64,
    /// 10th percentile over hours of the same.
    pub jain_p10: f64,
    /// Users in the top 1 % by planned demand.
    pub top1_users: usize,
    /// Their GPU time received over their GPU time entitled.
    pub top1_share_over_entitlement: f64,
    /// Their GPU time received, as a share of all GPU time held.
    pub top1_share_of_held: f64,
    /// Sessions placed at least once in the window.
    pub sessions_placed: usize,
    /// Reclaims in the window (idle reclaims, Colab-like idle stops).
    pub reclaims: usize,
    /// Reclaims that were wrong by any criterion.
    pub wrongly_reclaimed: usize,
    /// `wrongly_reclaimed` over `sessions_placed`, in percent.
    pub wrongly_reclaimed_pct: f64,
    /// Wrong because the kernel was busy.
    pub wrong_busy: usize,
    /// Wrong because nobody under their share waited, or the victim was not over theirs.
    pub wrong_no_waiter: usize,
    /// Wrong because the grace period or warning was not respected.
    pub wrong_grace: usize,
    /// Kernels stopped at their lifetime or quota in the window.
    pub stops: usize,
    /// Refusals in the window, quota refusals included.
    pub refusals: usize,
    /// Refusals for an exhausted weekly quota.
    pub quota_refusals: usize,
    /// With `--diagnose`: where the time went.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub diagnostics: Option<crate::diagnostics::Diagnostics>,
}

struct Window {
    received: Vec<f64>,
    entitled: Vec<f64>,
}

/// Accumulates measurements while the driver runs.
pub(crate) struct Recorder {
    warmup_s: f64,
    horizon_s: f64,
    gpus: f64,
    weights: Vec<f64>,
    held: Vec<i64>,
    wanted: Vec<i64>,
    busy: Vec<i64>,
    active: std::collections::BTreeSet<usize>,
    held_total: i64,
    busy_total: i64,
    held_gpu_s: f64,
    busy_gpu_s: f64,
    received: Vec<f64>,
    entitled: Vec<f64>,
    window: Window,
    window_end_s: f64,
    jain: Vec<f64>,
    waits: Vec<f64>,
    first_ask: Vec<Option<f64>>,
    first_gpu: Vec<Option<f64>>,
    sessions_placed: usize,
    reclaims: usize,
    wrong: usize,
    wrong_busy: usize,
    wrong_no_waiter: usize,
    wrong_grace: usize,
    stops: usize,
    refusals: usize,
    quota_refusals: usize,
}

impl Recorder {
    pub(crate) fn new(workload: &Workload, weights: Vec<f64>) -> Recorder {
        let users = workload.users.len();
        Recorder {
            warmup_s: workload.warmup_s,
            horizon_s: workload.horizon_s,
            gpus: f64::from(workload.gpus),
            weights,
            held: vec![0; users],
            wanted: vec![0; users],
            busy: vec![0; users],
            active: std::collections::BTreeSet::new(),
            held_total: 0,
            busy_total: 0,
            held_gpu_s: 0.0,
            busy_gpu_s: 0.0,
            received: vec![0.0; users],
            entitled: vec![0.0; users],
            window: Window {
                received: vec![0.0; users],
                entitled: vec![0.0; users],
            },
            window_end_s: workload.warmup_s + 3_600.0,
            jain: Vec::new(),
            waits: Vec::new(),
            first_ask: vec![None; users],
            first_gpu: vec![None; users],
            sessions_placed: 0,
            reclaims: 0,
            wrong: 0,
            wrong_busy: 0,
            wrong_no_waiter: 0,
            wrong_grace: 0,
            stops: 0,
            refusals: 0,
            quota_refusals: 0,
        }
    }

    fn in_window(&self, at_s: f64) -> bool {
        at_s >= self.warmup_s && at_s < self.horizon_s
    }

    fn touch(&mut self, user: usize) {
        if self.held[user] > 0 || self.wanted[user] > 0 {
            self.active.insert(user);
        } else {
            self.active.remove(&user);
        }
    }

    pub(crate) fn want(&mut self, user: usize, delta: i64, now_s: f64) {
        self.wanted[user] += delta;
        assert!(self.wanted[user] >= 0, "negative demand for user {user}");
        if delta > 0 && self.first_ask[user].is_none() {
            self.first_ask[user] = Some(now_s);
        }
        self.touch(user);
    }

    pub(crate) fn hold(&mut self, user: usize, delta: i64) {
        self.held[user] += delta;
        self.held_total += delta;
        assert!(self.held[user] >= 0, "negative GPUs held by user {user}");
        self.touch(user);
    }

    pub(crate) fn busy(&mut self, user: usize, delta: i64) {
        self.busy[user] += delta;
        self.busy_total += delta;
    }

    pub(crate) fn request_served(&mut self, user: usize, asked_s: f64, now_s: f64) {
        if self.first_gpu[user].is_none() {
            self.first_gpu[user] = Some(now_s);
        }
        if self.in_window(asked_s) {
            self.waits.push(now_s - asked_s);
        }
    }

    pub(crate) fn request_unserved(&mut self, _user: usize, asked_s: f64) {
        if self.in_window(asked_s) {
            self.waits.push(f64::INFINITY);
        }
    }

    pub(crate) fn session_placed(&mut self, now_s: f64) {
        if self.in_window(now_s) {
            self.sessions_placed += 1;
        }
    }

    pub(crate) fn refused(&mut self, _user: usize, quota: bool) {
        self.refusals += 1;
        if quota {
            self.quota_refusals += 1;
        }
    }

    pub(crate) fn stopped(&mut self, now_s: f64) {
        if self.in_window(now_s) {
            self.stops += 1;
        }
    }

    pub(crate) fn reclaimed(
        &mut self,
        now_s: f64,
        wrong_busy: bool,
        wrong_no_waiter: bool,
        wrong_grace: bool,
    ) {
        if !self.in_window(now_s) {
            return;
        }
        self.reclaims += 1;
        self.wrong_busy += usize::from(wrong_busy);
        self.wrong_no_waiter += usize::from(wrong_no_waiter);
        self.wrong_grace += usize::from(wrong_grace);
        self.wrong += usize::from(wrong_busy || wrong_no_waiter || wrong_grace);
    }

    fn level(&self) -> f64 {
        let claims: Vec<ShareClaim> = self
            .active
            .iter()
            .map(|&user| ShareClaim {
                weight: self.weights[user],
                demand: (self.held[user] + self.wanted[user]) as f64,
            })
            .collect();
        water_level(&claims, self.gpus)
    }

    /// Whether `user` holds more than their fair share now.
    pub(crate) fn over_share(&self, user: usize) -> bool {
        let level = self.level();
        let share = ((self.held[user] + self.wanted[user]) as f64).min(self.weights[user] * level);
        self.held[user] as f64 > share + 1e-9
    }

    /// Whether reclaiming from `victim` is justified now: someone with waiting demand holds
    /// less than their fair share, and the victim holds more than theirs.
    pub(crate) fn reclaim_justified(&self, victim: usize) -> bool {
        let level = self.level();
        let share = |user: usize| {
            ((self.held[user] + self.wanted[user]) as f64).min(self.weights[user] * level)
        };
        let victim_over = self.held[victim] as f64 > share(victim) + 1e-9;
        let waiter_under = self
            .active
            .iter()
            .any(|&user| self.wanted[user] > 0 && (self.held[user] as f64) < share(user) - 1e-9);
        victim_over && waiter_under
    }

    /// Integrates the current state over `[from_s, to_s)`.
    pub(crate) fn advance(&mut self, from_s: f64, to_s: f64) {
        let mut at = from_s.max(self.warmup_s);
        let end = to_s.min(self.horizon_s);
        if at >= end {
            return;
        }
        let level = self.level();
        while at < end {
            let segment_end = end.min(self.window_end_s);
            let dt = segment_end - at;
            self.held_gpu_s += self.held_total as f64 * dt;
            self.busy_gpu_s += self.busy_total as f64 * dt;
            for &user in &self.active {
                let demand = (self.held[user] + self.wanted[user]) as f64;
                let entitled = demand.min(self.weights[user] * level) * dt;
                let received = self.held[user] as f64 * dt;
                self.received[user] += received;
                self.entitled[user] += entitled;
                self.window.received[user] += received;
                self.window.entitled[user] += entitled;
            }
            at = segment_end;
            if at >= self.window_end_s {
                self.close_window();
            }
        }
    }

    fn close_window(&mut self) {
        let xs: Vec<f64> = self
            .window
            .entitled
            .iter()
            .zip(&self.window.received)
            .filter(|(entitled, _)| **entitled > 1e-9)
            .map(|(entitled, received)| received / entitled)
            .collect();
        if !xs.is_empty() {
            let sum: f64 = xs.iter().sum();
            let squares: f64 = xs.iter().map(|x| x * x).sum();
            self.jain.push(if squares > 0.0 {
                sum * sum / (xs.len() as f64 * squares)
            } else {
                1.0
            });
        }
        self.window
            .received
            .iter_mut()
            .for_each(|value| *value = 0.0);
        self.window
            .entitled
            .iter_mut()
            .for_each(|value| *value = 0.0);
        self.window_end_s += 3_600.0;
    }

    pub(crate) fn finish(mut self, workload: &Workload, policy: PolicyKind) -> Metrics {
        let window_s = self.horizon_s - self.warmup_s;
        let capacity = self.gpus * window_s;
        self.waits.sort_by(f64::total_cmp);
        let mut first_gpu_times: Vec<f64> = (0..workload.users.len())
            .filter(|&user| self.first_ask[user].is_some_and(|at| self.in_window(at)))
            .map(|user| match (self.first_ask[user], self.first_gpu[user]) {
                (Some(asked), Some(got)) => got - asked,
                _ => f64::INFINITY,
            })
            .collect();
        first_gpu_times.sort_by(f64::total_cmp);
        let mut jain = self.jain.clone();
        jain.sort_by(f64::total_cmp);
        let demand = workload.planned_demand();
        let mut ranked: Vec<usize> = (0..workload.users.len()).collect();
        ranked.sort_by(|a, b| demand[*b].total_cmp(&demand[*a]).then(a.cmp(b)));
        let top = &ranked[..top_count(workload.users.len())];
        let top_received: f64 = top.iter().map(|&user| self.received[user]).sum();
        let top_entitled: f64 = top.iter().map(|&user| self.entitled[user]).sum();
        Metrics {
            policy: policy.name(),
            workload: workload.name.clone(),
            gpus: workload.gpus,
            offered_load: workload.offered_load(),
            gpu_held_utilisation: self.held_gpu_s / capacity,
            gpu_busy_utilisation: self.busy_gpu_s / capacity,
            requests: self.waits.len(),
            requests_unserved: self.waits.iter().filter(|wait| wait.is_infinite()).count(),
            wait_p50_s: percentile(&self.waits, 0.50),
            wait_p95_s: percentile(&self.waits, 0.95),
            wait_p99_s: percentile(&self.waits, 0.99),
            newcomers: first_gpu_times.len(),
            newcomers_unserved: first_gpu_times
                .iter()
                .filter(|wait| wait.is_infinite())
                .count(),
            newcomer_first_gpu_p50_s: percentile(&first_gpu_times, 0.50),
            newcomer_first_gpu_p95_s: percentile(&first_gpu_times, 0.95),
            jain_median: percentile(&jain, 0.50).unwrap_or(1.0),
            jain_p10: percentile(&jain, 0.10).unwrap_or(1.0),
            top1_users: top.len(),
            top1_share_over_entitlement: if top_entitled > 0.0 {
                top_received / top_entitled
            } else {
                0.0
            },
            top1_share_of_held: if self.held_gpu_s > 0.0 {
                top_received / self.held_gpu_s
            } else {
                0.0
            },
            sessions_placed: self.sessions_placed,
            reclaims: self.reclaims,
            wrongly_reclaimed: self.wrong,
            wrongly_reclaimed_pct: if self.sessions_placed > 0 {
                100.0 * self.wrong as f64 / self.sessions_placed as f64
            } else {
                0.0
            },
            wrong_busy: self.wrong_busy,
            wrong_no_waiter: self.wrong_no_waiter,
            wrong_grace: self.wrong_grace,
            stops: self.stops,
            refusals: self.refusals,
            quota_refusals: self.quota_refusals,
            diagnostics: None,
        }
    }
}

/// The nearest-rank percentile of sorted values; `None` when it is infinite or there are none.
pub fn percentile(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    let value = sorted[rank - 1];
    value.is_finite().then_some(value)
}
