//! Usage metering: what users' kernels use, written to the store's ledger, and where a user
//! stands against their tier's quota.
//!
//! Every supervisor tick ([`crate::KernelManager::supervise`]) hands each kernel's processes to
//! the meter, which adds to the owner's row for the day the CPU-seconds the kernel's processes
//! used since the previous tick, the seconds the kernel ran, and the memory the user's kernels
//! held together (the ledger keeps the day's peak). The GPU scheduler adds GPU-seconds held and
//! busy with [`record_gpu_usage`]. Usage spanning midnight UTC is split between the days in
//! proportion to the time in each.
//!
//! Only accounts are metered: a single-user server (store owner `""`) records nothing, since it
//! has no account page or quota to read it. CPU time is read from the processes present at a
//! tick, so a process that starts and ends between two ticks is not counted, and one that ends
//! is counted up to the last tick that saw it.
//!
//! Time is an argument throughout; the arithmetic ([`Meter::observe`], [`cpu_seconds_since`],
//! [`day_shares`], [`quota_left`]) is pure.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{LazyLock, Mutex};

use chrono::{DateTime, Duration, NaiveTime, Utc};
use commonlab_runtime::ProcessInfo;
use commonlab_store::{Store, StoreError, Usage, UsageDay};

/// Days in the rolling window of the weekly GPU quota: today and the six days before it.
pub const QUOTA_WINDOW_DAYS: i64 = 7;

/// Days of the ledger a [`UsageReport`] shows: today and the thirteen days before it.
pub const USAGE_REPORT_DAYS: i64 = 14;

/// The longest interval spread over days by one recording; anything older is counted on the
/// first day of this window, so a stalled clock or a long gap cannot write thousands of rows.
const SPREAD_DAYS_MAX: i64 = 31;

/// A tier's quotas, from the server's configuration.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TierQuota {
    /// GPU-hours a user may hold in the rolling week ([`QUOTA_WINDOW_DAYS`] UTC days).
    pub gpu_hours_per_week: f64,
    /// Kernels a user may have at once.
    pub kernels_max: u32,
}

/// The UTC day of `at`, as the ledger names days (`YYYY-MM-DD`).
pub fn day_of(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d").to_string()
}

/// How the interval from `since` to `now` falls on UTC days: each day it covers, oldest first,
/// with the fraction of the interval in it (the fractions add up to one). An empty or reversed
/// interval falls wholly on `now`'s day.
pub(crate) fn day_shares(since: DateTime<Utc>, now: DateTime<Utc>) -> Vec<(String, f64)> {
    let since = since.max(now - Duration::days(SPREAD_DAYS_MAX));
    if since >= now {
        return vec![(day_of(now), 1.0)];
    }
    let total = (now - since).as_seconds_f64();
    let mut shares = Vec::new();
    let mut start = since;
    while start < now {
        let next_midnight = (start.date_naive() + Duration::days(1))
            .and_time(NaiveTime::MIN)
            .and_utc();
        let end = next_midnight.min(now);
        shares.push((day_of(start), (end - start).as_seconds_f64() / total));
        start = end;
    }
    shares
}

/// CPU-seconds the processes used since `previous` (CPU-seconds by pid at the last tick): a
/// process seen before counts what it added, one that appeared counts all it used, and one that
/// ended counts nothing more. A pid whose CPU time went down was reused by a new process.
pub(crate) fn cpu_seconds_since(previous: &HashMap<i32, f64>, processes: &[ProcessInfo]) -> f64 {
    processes
        .iter()
        .map(|process| match previous.get(&process.pid) {
            Some(seen) if process.cpu_seconds >= *seen => process.cpu_seconds - seen,
            _ => process.cpu_seconds,
        })
        .sum()
}

/// GPU-hours left in the week and kernels left under `quota`, never below zero.
pub fn quota_left(quota: &TierQuota, gpu_seconds_held: f64, kernels_running: u32) -> (f64, u32) {
    let used_hours = gpu_seconds_held / 3600.0;
    (
        (quota.gpu_hours_per_week - used_hours).max(0.0),
        quota.kernels_max.saturating_sub(kernels_running),
    )
}

/// What the meter last saw of one kernel.
#[derive(Debug, Clone)]
struct KernelSample {
    owner: String,
    at: DateTime<Utc>,
    cpu_seconds_by_pid: HashMap<i32, f64>,
}

/// The meter's memory between ticks: per kernel, when it was last seen and its processes' CPU
/// time then.
#[derive(Debug, Default)]
pub(crate) struct Meter {
    /// The first tick this meter saw. A kernel first seen later that started before it was
    /// running before this server process metered anything (recovered after a restart): what it
    /// used until now was recorded by the previous process, so the meter starts from what it
    /// sees. A kernel that started after it is counted from its start.
    epoch: Option<DateTime<Utc>>,
    kernels: HashMap<String, KernelSample>,
}

/// What one kernel used over an interval.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct KernelUsage {
    /// Where the interval starts; it ends at the tick.
    pub(crate) since: DateTime<Utc>,
    pub(crate) cpu_seconds: f64,
    pub(crate) kernel_seconds: f64,
    /// The kernel's processes' resident memory together, now.
    pub(crate) memory_bytes: u64,
}

impl Meter {
    /// Marks a tick at `now`: the first one sets the epoch.
    pub(crate) fn tick(&mut self, now: DateTime<Utc>) {
        self.epoch.get_or_insert(now);
    }

    /// Whether the meter has seen kernel `id` before.
    pub(crate) fn knows(&self, id: &str) -> bool {
        self.kernels.contains_key(id)
    }

    /// Forgets `owner`'s kernels that are not in `live`.
    pub(crate) fn retain(&mut self, owner: &str, live: &HashSet<&str>) {
        self.kernels
            .retain(|id, sample| sample.owner != owner || live.contains(id.as_str()));
    }

    /// Takes in kernel `id`'s processes at `now` and says what it used since the last tick that
    /// saw it. `started` is when its runtime started, needed only the first time it is seen.
    pub(crate) fn observe(
        &mut self,
        owner: &str,
        id: &str,
        started: Option<DateTime<Utc>>,
        processes: &[ProcessInfo],
        now: DateTime<Utc>,
    ) -> KernelUsage {
        let epoch = *self.epoch.get_or_insert(now);
        let cpu_seconds_by_pid: HashMap<i32, f64> =
            processes.iter().map(|p| (p.pid, p.cpu_seconds)).collect();
        let memory_bytes = processes.iter().map(|p| p.rss_bytes).sum();
        let (since, cpu_seconds) = match self.kernels.get(id) {
            Some(sample) => (
                sample.at,
                cpu_seconds_since(&sample.cpu_seconds_by_pid, processes),
            ),
            None => match started {
                Some(started) if started >= epoch => (
                    started.min(now),
                    cpu_seconds_since(&HashMap::new(), processes),
                ),
                _ => (now, 0.0),
            },
        };
        self.kernels.insert(
            id.to_owned(),
            KernelSample {
                owner: owner.to_owned(),
                at: now,
                cpu_seconds_by_pid,
            },
        );
        KernelUsage {
            since,
            cpu_seconds,
            kernel_seconds: (now - since).as_seconds_f64().max(0.0),
            memory_bytes,
        }
    }
}

/// The meter of this server process, shared by every user's kernel manager (kernels are told
/// apart by id, owners by name).
static METER: LazyLock<Mutex<Meter>> = LazyLock::new(|| Mutex::new(Meter::default()));

/// Adds `usage` over `since` to `now` to `by_day`, its seconds split over the days the interval
/// covers; peak memory goes to `now`'s day.
fn spread(
    by_day: &mut BTreeMap<String, Usage>,
    since: DateTime<Utc>,
    now: DateTime<Utc>,
    usage: &Usage,
) {
    for (day, share) in day_shares(since, now) {
        by_day.entry(day).or_default().add(&Usage {
            cpu_seconds: usage.cpu_seconds * share,
            gpu_seconds_held: usage.gpu_seconds_held * share,
            gpu_seconds_busy: usage.gpu_seconds_busy * share,
            kernel_seconds: usage.kernel_seconds * share,
            memory_bytes_peak: 0,
        });
    }
    let today = by_day.entry(day_of(now)).or_default();
    today.memory_bytes_peak = today.memory_bytes_peak.max(usage.memory_bytes_peak);
}

fn write(store: &Store, user: &str, by_day: &BTreeMap<String, Usage>) -> Result<(), StoreError> {
    for (day, usage) in by_day {
        if !usage.is_zero() {
            store.usage_add(user, day, usage)?;
        }
    }
    Ok(())
}

/// Records GPU use in `user`'s ledger: `gpu_seconds_held` GPU-seconds held between `since` and
/// `now`, of which `gpu_seconds_busy` while the kernel was executing (split over the UTC days
/// the interval covers). The GPU scheduler calls it as it goes (at each of its ticks, and when
/// GPUs are given back), with the hub's store or one scoped to `user`.
pub fn record_gpu_usage(
    store: &Store,
    user: &str,
    since: DateTime<Utc>,
    now: DateTime<Utc>,
    gpu_seconds_held: f64,
    gpu_seconds_busy: f64,
) -> Result<(), StoreError> {
    let usage = Usage {
        gpu_seconds_held,
        gpu_seconds_busy,
        ..Usage::default()
    };
    let mut by_day = BTreeMap::new();
    spread(&mut by_day, since, now, &usage);
    write(store, user, &by_day)
}

/// The supervisor's hook: meters the kernels of `store`'s owner at `now`, given each kernel's
/// id and processes (kernels whose backend reports no processes are kept but not metered), and
/// writes what they used to the ledger in one row per day. Failures are logged, never raised:
/// metering must not stop supervision.
pub(crate) fn record_kernels<'a>(
    store: &Store,
    now: DateTime<Utc>,
    kernels: impl Iterator<Item = (&'a str, &'a [ProcessInfo])>,
) {
    let mut meter = METER.lock().expect("not poisoned");
    meter.tick(now);
    let owner = store.owner();
    if owner.is_empty() {
        return;
    }
    let kernels: Vec<(&str, &[ProcessInfo])> = kernels.collect();
    meter.retain(owner, &kernels.iter().map(|(id, _)| *id).collect());
    let mut started: Option<HashMap<String, DateTime<Utc>>> = None;
    let mut by_day = BTreeMap::new();
    let mut memory_bytes = 0;
    for (id, processes) in kernels {
        if processes.is_empty() {
            continue;
        }
        let started_at = if meter.knows(id) {
            None
        } else {
            started
                .get_or_insert_with(|| kernels_started(store))
                .get(id)
                .copied()
        };
        let usage = meter.observe(owner, id, started_at, processes, now);
        memory_bytes += usage.memory_bytes;
        let seconds = Usage {
            cpu_seconds: usage.cpu_seconds,
            kernel_seconds: usage.kernel_seconds,
            ..Usage::default()
        };
        spread(&mut by_day, usage.since, now, &seconds);
    }
    drop(meter);
    if by_day.is_empty() {
        return;
    }
    by_day.entry(day_of(now)).or_default().memory_bytes_peak = memory_bytes;
    if let Err(e) = write(store, owner, &by_day) {
        tracing::warn!(owner, error = %e, "could not record kernel usage");
    }
}

/// When each of the owner's kernels started, from the store.
fn kernels_started(store: &Store) -> HashMap<String, DateTime<Utc>> {
    match store.kernels() {
        Ok(records) => records
            .into_iter()
            .filter_map(|record| {
                let started = DateTime::parse_from_rfc3339(&record.started_at).ok()?;
                Some((record.id, started.with_timezone(&Utc)))
            })
            .collect(),
        Err(e) => {
            tracing::warn!(error = %e, "could not read when kernels started");
            HashMap::new()
        }
    }
}

/// Where a user stands: the weekly GPU quota and kernels against their tier's, and their recent
/// usage.
#[derive(Debug, Clone, PartialEq)]
pub struct UsageReport {
    /// Today (UTC), `YYYY-MM-DD`.
    pub today: String,
    /// The first day of the rolling week the GPU quota counts.
    pub week_since: String,
    /// GPU-seconds held in the rolling week.
    pub gpu_seconds_held_week: f64,
    pub kernels_running: u32,
    /// The tier's quota, if the server configures one.
    pub quota: Option<TierQuota>,
    /// GPU-hours left in the rolling week under the quota, if there is one.
    pub gpu_hours_left: Option<f64>,
    /// Kernels that may still be started under the quota, if there is one.
    pub kernels_left: Option<u32>,
    /// The ledger's rows of the last [`USAGE_REPORT_DAYS`] days, oldest first; days without
    /// usage have none.
    pub days: Vec<UsageDay>,
}

/// Reads `user`'s report at `now` from the ledger; `kernels_running` is how many kernels they
/// have.
pub fn usage_report(
    store: &Store,
    user: &str,
    quota: Option<TierQuota>,
    kernels_running: u32,
    now: DateTime<Utc>,
) -> Result<UsageReport, StoreError> {
    let today = day_of(now);
    let week_since = day_of(now - Duration::days(QUOTA_WINDOW_DAYS - 1));
    let gpu_seconds_held_week = store
        .usage_totals_since(user, &week_since)?
        .gpu_seconds_held;
    let days = store.usage_days(
        user,
        &day_of(now - Duration::days(USAGE_REPORT_DAYS - 1)),
        &today,
    )?;
    let left = quota.map(|q| quota_left(&q, gpu_seconds_held_week, kernels_running));
    Ok(UsageReport {
        gpu_hours_left: left.map(|(hours, _)| hours),
        kernels_left: left.map(|(_, kernels)| kernels),
        today,
        week_since,
        gpu_seconds_held_week,
        kernels_running,
        quota,
        days,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn process(pid: i32, cpu_seconds: f64, rss_bytes: u64) -> ProcessInfo {
        ProcessInfo {
            pid,
            exe: None,
            cmdline: Vec::new(),
            cpu_seconds,
            rss_bytes,
            uid: None,
        }
    }

    #[test]
    fn cpu_since_the_last_tick_counts_growth_newcomers_in_full_and_nothing_for_the_departed() {
        let previous = HashMap::from([(1, 10.0), (2, 5.0), (3, 7.0), (4, 9.0)]);
        let now = [
            process(1, 12.5, 0), // grew by 2.5
            process(2, 5.0, 0),  // idle
            // 3 ended: nothing more.
            process(4, 1.0, 0),  // pid reused by a new process: all of it
            process(5, 0.75, 0), // appeared
        ];
        assert_eq!(cpu_seconds_since(&previous, &now), 2.5 + 0.0 + 1.0 + 0.75);
        assert_eq!(
            cpu_seconds_since(&HashMap::new(), &now),
            12.5 + 5.0 + 1.0 + 0.75
        );
        assert_eq!(cpu_seconds_since(&previous, &[]), 0.0);
    }

    #[test]
    fn intervals_are_split_at_utc_midnight() {
        assert_eq!(
            day_shares(at("2026-03-01T10:00:00Z"), at("2026-03-01T10:00:05Z")),
            vec![("2026-03-01".to_owned(), 1.0)]
        );
        assert_eq!(
            day_shares(at("2026-03-01T23:59:30Z"), at("2026-03-02T00:01:00Z")),
            vec![
                ("2026-03-01".to_owned(), 30.0 / 90.0),
                ("2026-03-02".to_owned(), 60.0 / 90.0)
            ]
        );
        let days: Vec<String> = day_shares(at("2026-02-27T12:00:00Z"), at("2026-03-01T12:00:00Z"))
            .into_iter()
            .map(|(day, _)| day)
            .collect();
        assert_eq!(days, ["2026-02-27", "2026-02-28", "2026-03-01"]);
        assert_eq!(
            day_shares(at("2026-03-02T00:00:00Z"), at("2026-03-01T00:00:00Z")),
            vec![("2026-03-01".to_owned(), 1.0)],
            "a reversed interval falls on now's day"
        );
        assert_eq!(
            day_shares(at("2020-01-01T00:00:00Z"), at("2026-03-01T00:00:00Z")).len(),
            SPREAD_DAYS_MAX as usize
        );
    }

    #[test]
    fn the_meter_counts_new_kernels_from_their_start_and_recovered_ones_from_first_sight() {
        let mut meter = Meter::default();
        meter.tick(at("2026-03-01T10:00:00Z"));
        // Recovered: started before the first tick; its past was recorded by the last process.
        let recovered = meter.observe(
            "alice",
            "k1",
            Some(at("2026-03-01T09:00:00Z")),
            &[process(10, 500.0, 100)],
            at("2026-03-01T10:00:01Z"),
        );
        assert_eq!(
            (recovered.cpu_seconds, recovered.kernel_seconds),
            (0.0, 0.0)
        );
        assert_eq!(recovered.memory_bytes, 100);
        // New: started after the first tick; everything since its start counts.
        let new = meter.observe(
            "alice",
            "k2",
            Some(at("2026-03-01T10:00:02Z")),
            &[process(20, 1.5, 200), process(21, 0.5, 50)],
            at("2026-03-01T10:00:05Z"),
        );
        assert_eq!(
            (new.cpu_seconds, new.kernel_seconds, new.memory_bytes),
            (2.0, 3.0, 250)
        );
        // Next tick: deltas.
        let next = meter.observe(
            "alice",
            "k1",
            None,
            &[process(10, 503.0, 120), process(11, 1.0, 10)],
            at("2026-03-01T10:00:06Z"),
        );
        assert_eq!(
            (next.cpu_seconds, next.kernel_seconds, next.memory_bytes),
            (4.0, 5.0, 130)
        );
        assert_eq!(next.since, at("2026-03-01T10:00:01Z"));
        // Forgetting a kernel that is gone.
        meter.retain("alice", &HashSet::from(["k1"]));
        assert!(meter.knows("k1") && !meter.knows("k2"));
        meter.retain("bob", &HashSet::new());
        assert!(
            meter.knows("k1"),
            "another owner's retain keeps alice's kernels"
        );
    }

    #[test]
    fn quota_left_never_goes_below_zero() {
        let quota = TierQuota {
            gpu_hours_per_week: 10.0,
            kernels_max: 2,
        };
        assert_eq!(quota_left(&quota, 3600.0 * 2.5, 1), (7.5, 1));
        assert_eq!(quota_left(&quota, 3600.0 * 12.0, 3), (0.0, 0));
    }

    #[test]
    fn gpu_usage_is_recorded_on_the_days_it_spans_and_reported_against_the_quota() {
        let store = Store::open_in_memory().unwrap();
        record_gpu_usage(
            &store,
            "alice",
            at("2026-03-01T23:00:00Z"),
            at("2026-03-02T01:00:00Z"),
            7200.0,
            3600.0,
        )
        .unwrap();
        // Outside the rolling week of 2026-03-08 (2026-03-02 .. 2026-03-08).
        record_gpu_usage(
            &store,
            "alice",
            at("2026-02-20T10:00:00Z"),
            at("2026-02-20T11:00:00Z"),
            3600.0,
            0.0,
        )
        .unwrap();
        let quota = TierQuota {
            gpu_hours_per_week: 4.0,
            kernels_max: 3,
        };
        let report =
            usage_report(&store, "alice", Some(quota), 1, at("2026-03-08T12:00:00Z")).unwrap();
        assert_eq!(report.week_since, "2026-03-02");
        assert_eq!(report.gpu_seconds_held_week, 3600.0);
        assert_eq!(
            (report.gpu_hours_left, report.kernels_left),
            (Some(3.0), Some(2))
        );
        let days: Vec<(&str, f64, f64)> = report
            .days
            .iter()
            .map(|d| {
                (
                    d.day.as_str(),
                    d.usage.gpu_seconds_held,
                    d.usage.gpu_seconds_busy,
                )
            })
            .collect();
        assert_eq!(
            days,
            [
                ("2026-03-01", 3600.0, 1800.0),
                ("2026-03-02", 3600.0, 1800.0)
            ]
        );
        let no_quota = usage_report(&store, "alice", None, 0, at("2026-03-08T12:00:00Z")).unwrap();
        assert_eq!(
            (no_quota.gpu_hours_left, no_quota.kernels_left),
            (None, None)
        );
    }

    #[test]
    fn kernels_of_the_single_user_server_are_not_metered() {
        let store = Store::open_in_memory().unwrap();
        let processes = [process(1, 3.0, 10)];
        record_kernels(
            &store,
            at("2026-03-01T10:00:00Z"),
            [("single-user-kernel", &processes[..])].into_iter(),
        );
        assert!(!METER.lock().unwrap().knows("single-user-kernel"));
    }
}
