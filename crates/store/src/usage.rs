//! The usage ledger: what each user used per UTC day. CPU-seconds, GPU-seconds held and busy and
//! kernel-seconds add up; peak memory keeps the highest value seen that day.
//!
//! The supervisor adds what kernels used at every tick and the GPU scheduler what GPUs were
//! held; the account page and the allocator read it back. A handle scoped with
//! [`Store::for_owner`] reads and writes only its owner's rows; the unscoped handle (the hub's)
//! reads and writes anyone's. Days are `YYYY-MM-DD` strings in UTC, passed in: the store reads no
//! clock.

use rusqlite::params;

use crate::{Store, StoreError};

/// The most days one [`Store::usage_days`] returns (the oldest of the range first).
pub const USAGE_DAYS_LISTED_MAX: usize = 366;

/// Amounts of usage: what one tick adds, one day's row, or a sum over days.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Usage {
    /// User plus system CPU time of the user's kernels and what they started.
    pub cpu_seconds: f64,
    /// GPU-seconds the user held (one GPU for one second is one).
    pub gpu_seconds_held: f64,
    /// GPU-seconds held while the kernel holding them was executing.
    pub gpu_seconds_busy: f64,
    /// Seconds kernels ran, each kernel counted once.
    pub kernel_seconds: f64,
    /// The most resident memory the user's kernels held at once.
    pub memory_bytes_peak: u64,
}

impl Usage {
    /// Adds `other` to these amounts: seconds add, peak memory keeps the larger.
    pub fn add(&mut self, other: &Usage) {
        self.cpu_seconds += other.cpu_seconds;
        self.gpu_seconds_held += other.gpu_seconds_held;
        self.gpu_seconds_busy += other.gpu_seconds_busy;
        self.kernel_seconds += other.kernel_seconds;
        self.memory_bytes_peak = self.memory_bytes_peak.max(other.memory_bytes_peak);
    }

    /// True when nothing was used.
    pub fn is_zero(&self) -> bool {
        *self == Usage::default()
    }

    fn check(&self) -> Result<(), StoreError> {
        let seconds = [
            self.cpu_seconds,
            self.gpu_seconds_held,
            self.gpu_seconds_busy,
            self.kernel_seconds,
        ];
        if seconds.iter().all(|s| s.is_finite() && *s >= 0.0)
            && self.memory_bytes_peak <= i64::MAX as u64
        {
            Ok(())
        } else {
            Err(StoreError::InvalidUsage(format!("{self:?}")))
        }
    }
}

/// One user's usage on one UTC day.
#[derive(Debug, Clone, PartialEq)]
pub struct UsageDay {
    /// `YYYY-MM-DD`, in UTC.
    pub day: String,
    pub usage: Usage,
}

/// Checks that `day` is a `YYYY-MM-DD` date.
fn check_day(day: &str) -> Result<(), StoreError> {
    match chrono::NaiveDate::parse_from_str(day, "%Y-%m-%d") {
        Ok(date) if date.format("%Y-%m-%d").to_string() == day => Ok(()),
        _ => Err(StoreError::InvalidDay(day.to_owned())),
    }
}

impl Store {
    /// Whether this handle may read and write `user`'s usage: the unscoped handle may touch
    /// anyone's, a scoped one only its owner's.
    fn usage_allowed(&self, user: &str) -> bool {
        self.owner.is_empty() || self.owner == user
    }

    /// Adds `delta` to `user`'s row for `day` (`YYYY-MM-DD`, UTC), creating it: seconds add up,
    /// peak memory keeps the larger. One statement, so concurrent writers never lose an update.
    pub fn usage_add(&self, user: &str, day: &str, delta: &Usage) -> Result<(), StoreError> {
        crate::validate_user_name(user)?;
        check_day(day)?;
        delta.check()?;
        if !self.usage_allowed(user) {
            return Err(StoreError::NotYourUsage {
                owner: self.owner.clone(),
                user: user.to_owned(),
            });
        }
        self.with(|c| {
            c.execute(
                "INSERT INTO usage_days (user, day, cpu_seconds, gpu_seconds_held, gpu_seconds_busy, kernel_seconds, memory_bytes_peak)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT (user, day) DO UPDATE SET
                    cpu_seconds = cpu_seconds + excluded.cpu_seconds,
                    gpu_seconds_held = gpu_seconds_held + excluded.gpu_seconds_held,
                    gpu_seconds_busy = gpu_seconds_busy + excluded.gpu_seconds_busy,
                    kernel_seconds = kernel_seconds + excluded.kernel_seconds,
                    memory_bytes_peak = max(memory_bytes_peak, excluded.memory_bytes_peak)",
                params![
                    user,
                    day,
                    delta.cpu_seconds,
                    delta.gpu_seconds_held,
                    delta.gpu_seconds_busy,
                    delta.kernel_seconds,
                    delta.memory_bytes_peak as i64,
                ],
            )
            .map(|_| ())
        })
    }

    /// `user`'s rows from `from_day` to `to_day` (both included), oldest first; days with no
    /// usage have no row. At most [`USAGE_DAYS_LISTED_MAX`]. A scoped handle asking for another
    /// user's gets none.
    pub fn usage_days(
        &self,
        user: &str,
        from_day: &str,
        to_day: &str,
    ) -> Result<Vec<UsageDay>, StoreError> {
        check_day(from_day)?;
        check_day(to_day)?;
        if !self.usage_allowed(user) {
            return Ok(Vec::new());
        }
        self.with(|c| {
            let mut stmt = c.prepare(
                "SELECT day, cpu_seconds, gpu_seconds_held, gpu_seconds_busy, kernel_seconds, memory_bytes_peak
                 FROM usage_days WHERE user = ?1 AND day >= ?2 AND day <= ?3 ORDER BY day LIMIT ?4",
            )?;
            let rows = stmt.query_map(
                params![user, from_day, to_day, USAGE_DAYS_LISTED_MAX as i64],
                |row| {
                    Ok(UsageDay {
                        day: row.get(0)?,
                        usage: Usage {
                            cpu_seconds: row.get(1)?,
                            gpu_seconds_held: row.get(2)?,
                            gpu_seconds_busy: row.get(3)?,
                            kernel_seconds: row.get(4)?,
                            memory_bytes_peak: row.get::<_, i64>(5)?.max(0) as u64,
                        },
                    })
                },
            )?;
            rows.collect()
        })
    }

    /// `user`'s usage summed over `since_day` and every day after it (peak memory: the highest
    /// day's). A scoped handle asking for another user's gets zeros.
    pub fn usage_totals_since(&self, user: &str, since_day: &str) -> Result<Usage, StoreError> {
        check_day(since_day)?;
        if !self.usage_allowed(user) {
            return Ok(Usage::default());
        }
        self.with(|c| {
            c.query_row(
                "SELECT coalesce(sum(cpu_seconds), 0.0), coalesce(sum(gpu_seconds_held), 0.0),
                        coalesce(sum(gpu_seconds_busy), 0.0), coalesce(sum(kernel_seconds), 0.0),
                        coalesce(max(memory_bytes_peak), 0)
                 FROM usage_days WHERE user = ?1 AND day >= ?2",
                params![user, since_day],
                |row| {
                    Ok(Usage {
                        cpu_seconds: row.get(0)?,
                        gpu_seconds_held: row.get(1)?,
                        gpu_seconds_busy: row.get(2)?,
                        kernel_seconds: row.get(3)?,
                        memory_bytes_peak: row.get::<_, i64>(4)?.max(0) as u64,
                    })
                },
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(cpu: f64, held: f64, busy: f64, kernel: f64, memory: u64) -> Usage {
        Usage {
            cpu_seconds: cpu,
            gpu_seconds_held: held,
            gpu_seconds_busy: busy,
            kernel_seconds: kernel,
            memory_bytes_peak: memory,
        }
    }

    #[test]
    fn additions_to_a_day_sum_seconds_and_keep_the_peak_memory() {
        let store = Store::open_in_memory().unwrap();
        store
            .usage_add("alice", "2026-03-01", &usage(1.5, 10.0, 4.0, 5.0, 100))
            .unwrap();
        store
            .usage_add("alice", "2026-03-01", &usage(0.5, 2.0, 1.0, 5.0, 50))
            .unwrap();
        store
            .usage_add("alice", "2026-03-01", &usage(0.0, 0.0, 0.0, 0.0, 300))
            .unwrap();
        let days = store
            .usage_days("alice", "2026-03-01", "2026-03-01")
            .unwrap();
        assert_eq!(
            days,
            vec![UsageDay {
                day: "2026-03-01".into(),
                usage: usage(2.0, 12.0, 5.0, 10.0, 300),
            }]
        );
    }

    #[test]
    fn days_are_listed_in_range_oldest_first_and_totals_sum_from_a_day() {
        let store = Store::open_in_memory().unwrap();
        for (day, cpu, memory) in [
            ("2026-02-27", 1.0, 10),
            ("2026-03-02", 4.0, 40),
            ("2026-02-28", 2.0, 30),
            ("2026-03-01", 3.0, 20),
        ] {
            store
                .usage_add("alice", day, &usage(cpu, cpu * 10.0, cpu, cpu, memory))
                .unwrap();
        }
        store
            .usage_add("bob", "2026-03-01", &usage(100.0, 0.0, 0.0, 0.0, 1 << 40))
            .unwrap();
        let days: Vec<String> = store
            .usage_days("alice", "2026-02-28", "2026-03-01")
            .unwrap()
            .into_iter()
            .map(|d| d.day)
            .collect();
        assert_eq!(days, ["2026-02-28", "2026-03-01"]);
        assert_eq!(
            store.usage_totals_since("alice", "2026-02-28").unwrap(),
            usage(9.0, 90.0, 9.0, 9.0, 40)
        );
        assert_eq!(
            store.usage_totals_since("carol", "2026-02-28").unwrap(),
            Usage::default(),
            "no rows: zeros"
        );
    }

    #[test]
    fn a_scoped_handle_reads_and_writes_only_its_owners_usage() {
        let store = Store::open_in_memory().unwrap();
        let (alice, bob) = (store.for_owner("alice"), store.for_owner("bob"));
        alice
            .usage_add("alice", "2026-03-01", &usage(1.0, 0.0, 0.0, 1.0, 1))
            .unwrap();
        let err = bob
            .usage_add("alice", "2026-03-01", &usage(1.0, 0.0, 0.0, 1.0, 1))
            .unwrap_err();
        assert!(matches!(err, StoreError::NotYourUsage { .. }), "{err}");
        assert!(bob
            .usage_days("alice", "2026-01-01", "2026-12-31")
            .unwrap()
            .is_empty());
        assert_eq!(
            bob.usage_totals_since("alice", "2026-01-01").unwrap(),
            Usage::default()
        );
        assert_eq!(
            store
                .usage_totals_since("alice", "2026-01-01")
                .unwrap()
                .cpu_seconds,
            1.0,
            "the hub's handle reads anyone's; bob's write did not land"
        );
    }

    #[test]
    fn bad_days_amounts_and_names_are_refused() {
        let store = Store::open_in_memory().unwrap();
        for day in [
            "2026-3-01",
            "2026-02-30",
            "yesterday",
            "2026-03-01T00:00:00Z",
            "",
        ] {
            let err = store
                .usage_add("alice", day, &Usage::default())
                .unwrap_err();
            assert!(matches!(err, StoreError::InvalidDay(_)), "{day}: {err}");
        }
        for bad in [
            usage(-1.0, 0.0, 0.0, 0.0, 0),
            usage(0.0, f64::NAN, 0.0, 0.0, 0),
            usage(0.0, 0.0, f64::INFINITY, 0.0, 0),
            usage(0.0, 0.0, 0.0, 0.0, u64::MAX),
        ] {
            let err = store.usage_add("alice", "2026-03-01", &bad).unwrap_err();
            assert!(matches!(err, StoreError::InvalidUsage(_)), "{err}");
        }
        let err = store
            .usage_add("", "2026-03-01", &Usage::default())
            .unwrap_err();
        assert!(matches!(err, StoreError::InvalidName(_)), "{err}");
        assert!(store
            .usage_days("alice", "2026-01-01", "2026-12-31")
            .unwrap()
            .is_empty());
    }

    #[test]
    fn the_ledger_survives_reopening_the_database() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.sqlite");
        Store::open_sqlite(&path)
            .unwrap()
            .usage_add("alice", "2026-03-01", &usage(1.0, 2.0, 3.0, 4.0, 5))
            .unwrap();
        let store = Store::open_sqlite(&path).unwrap();
        assert_eq!(
            store.usage_totals_since("alice", "2026-03-01").unwrap(),
            usage(1.0, 2.0, 3.0, 4.0, 5)
        );
    }
}
