//! Refused logins, within bounds. Failures are counted per name so that a name is locked for a
//! while after too many; the map holding the counts never grows past
//! [`LOGIN_FAILURE_NAMES_MAX`] names however many different names are tried. Refusals reach the
//! audit log one record each only up to [`LOGIN_REFUSALS_RECORDED_PER_INTERVAL`] per
//! [`LOGIN_REFUSAL_INTERVAL`]; the rest of the interval's are counted and written as one
//! `login_failed_summary` record when it ends, so a flood cannot grow the log without bound.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// The most names whose failures are counted at once.
pub(crate) const LOGIN_FAILURE_NAMES_MAX: usize = 4096;

/// Refused logins written to the audit log one by one in each interval.
pub(crate) const LOGIN_REFUSALS_RECORDED_PER_INTERVAL: u32 = 20;

/// The interval over which refused logins beyond the first few are summed into one record.
pub(crate) const LOGIN_REFUSAL_INTERVAL: Duration = Duration::from_secs(60);

/// Names in a summary record, as a sample of what was tried.
const SUMMARY_NAMES_MAX: usize = 10;

/// The most bytes of a tried name kept (in the map and the log); real names are far shorter.
const NAME_BYTES_KEPT: usize = 64;

/// One record for the audit log: action, subject, detail.
pub(crate) type AuditEntry = (&'static str, Option<String>, Value);

struct NameFailures {
    count: u32,
    first: Instant,
}

/// Failed logins by name, and the refusals not yet written to the audit log one by one.
pub(crate) struct LoginFailures {
    window: Duration,
    failures_max: u32,
    names: HashMap<String, NameFailures>,
    /// When the current audit interval began (monotonic, and as written in records).
    interval_start: Instant,
    interval_start_utc: String,
    recorded: u32,
    unrecorded: u64,
    unrecorded_by_reason: BTreeMap<&'static str, u64>,
    unrecorded_names: Vec<String>,
}

/// `name` cut to [`NAME_BYTES_KEPT`] bytes, on a character boundary.
fn kept(name: &str) -> &str {
    if name.len() <= NAME_BYTES_KEPT {
        return name;
    }
    let mut end = NAME_BYTES_KEPT;
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    &name[..end]
}

impl LoginFailures {
    /// `failures_max` failures for one name within `window` lock it until the window passes.
    pub(crate) fn new(failures_max: u32, window: Duration, now: Instant) -> LoginFailures {
        LoginFailures {
            window,
            failures_max,
            names: HashMap::new(),
            interval_start: now,
            interval_start_utc: chrono::Utc::now().to_rfc3339(),
            recorded: 0,
            unrecorded: 0,
            unrecorded_by_reason: BTreeMap::new(),
            unrecorded_names: Vec::new(),
        }
    }

    /// Whether `name` may try to log in at `now`.
    pub(crate) fn allowed(&self, name: &str, now: Instant) -> bool {
        match self.names.get(kept(name)) {
            Some(failures) => {
                now.duration_since(failures.first) >= self.window
                    || failures.count < self.failures_max
            }
            None => true,
        }
    }

    /// Counts a failed login for `name`. When the map is full, expired counts go first, then
    /// the name with the fewest failures (the oldest of those), so the names nearest to being
    /// locked, or locked, are the last forgotten.
    pub(crate) fn failed(&mut self, name: &str, now: Instant) {
        let name = kept(name);
        if !self.names.contains_key(name) && self.names.len() >= LOGIN_FAILURE_NAMES_MAX {
            self.sweep(now);
            if self.names.len() >= LOGIN_FAILURE_NAMES_MAX {
                let fewest = self
                    .names
                    .iter()
                    .min_by_key(|(_, f)| (f.count, f.first))
                    .map(|(name, _)| name.clone());
                if let Some(fewest) = fewest {
                    self.names.remove(&fewest);
                }
            }
        }
        let entry = self.names.entry(name.to_owned()).or_insert(NameFailures {
            count: 0,
            first: now,
        });
        if now.duration_since(entry.first) >= self.window {
            *entry = NameFailures {
                count: 0,
                first: now,
            };
        }
        entry.count += 1;
    }

    pub(crate) fn succeeded(&mut self, name: &str) {
        self.names.remove(kept(name));
    }

    /// How many names' failures are counted now.
    #[cfg(test)]
    pub(crate) fn names_counted(&self) -> usize {
        self.names.len()
    }

    /// Forgets counts whose window has passed.
    fn sweep(&mut self, now: Instant) {
        let window = self.window;
        self.names
            .retain(|_, failures| now.duration_since(failures.first) < window);
    }

    /// A refused login (`reason`, a stable code) at `now`: what to write to the audit log for it,
    /// which is nothing once this interval's records are spent (it is counted for the summary).
    pub(crate) fn refused(
        &mut self,
        name: &str,
        reason: &'static str,
        now: Instant,
        now_utc: &str,
    ) -> Vec<AuditEntry> {
        let mut entries: Vec<AuditEntry> = self.end_interval(now, now_utc).into_iter().collect();
        if self.recorded < LOGIN_REFUSALS_RECORDED_PER_INTERVAL {
            self.recorded += 1;
            entries.push((
                "login_failed",
                Some(kept(name).to_owned()),
                json!({ "reason": reason }),
            ));
        } else {
            self.unrecorded += 1;
            *self.unrecorded_by_reason.entry(reason).or_default() += 1;
            let name = kept(name);
            if self.unrecorded_names.len() < SUMMARY_NAMES_MAX
                && !self.unrecorded_names.iter().any(|n| n == name)
            {
                self.unrecorded_names.push(name.to_owned());
            }
        }
        entries
    }

    /// The periodic upkeep: forgets expired counts, and ends the audit interval if it is over.
    /// Returns the summary record to write, if any.
    pub(crate) fn maintain(&mut self, now: Instant, now_utc: &str) -> Option<AuditEntry> {
        self.sweep(now);
        self.end_interval(now, now_utc)
    }

    /// Starts a new audit interval when the current one is over, returning the summary of the
    /// refusals it did not record one by one.
    fn end_interval(&mut self, now: Instant, now_utc: &str) -> Option<AuditEntry> {
        if now.duration_since(self.interval_start) < LOGIN_REFUSAL_INTERVAL {
            return None;
        }
        let summary = (self.unrecorded > 0).then(|| {
            (
                "login_failed_summary",
                None,
                json!({
                    "count": self.unrecorded,
                    "by_reason": self.unrecorded_by_reason,
                    "names_sample": self.unrecorded_names,
                    "from": self.interval_start_utc,
                    "to": now_utc,
                }),
            )
        });
        self.interval_start = now;
        self.interval_start_utc = now_utc.to_owned();
        self.recorded = 0;
        self.unrecorded = 0;
        self.unrecorded_by_reason.clear();
        self.unrecorded_names.clear();
        summary
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_of_names_keeps_the_map_bounded_and_locked_names_counted() {
        let start = Instant::now();
        let mut failures = LoginFailures::new(3, Duration::from_secs(900), start);
        for _ in 0..3 {
            failures.failed("bob", start);
        }
        assert!(!failures.allowed("bob", start));
        for i in 0..10_000 {
            failures.failed(&format!("name{i}"), start);
        }
        assert!(failures.names_counted() <= LOGIN_FAILURE_NAMES_MAX);
        assert!(!failures.allowed("bob", start), "bob stays locked");
        // A name of a megabyte is kept as its first bytes.
        let huge = "é".repeat(1 << 19);
        failures.failed(&huge, start);
        assert!(failures.names.keys().all(|k| k.len() <= NAME_BYTES_KEPT));
        // Once the window has passed, upkeep forgets everything.
        let later = start + Duration::from_secs(901);
        failures.maintain(later, "2026-01-01T00:15:01+00:00");
        assert_eq!(failures.names_counted(), 0);
        assert!(failures.allowed("bob", later));
    }

    #[test]
    fn refusals_beyond_the_intervals_records_are_summed_into_one() {
        let start = Instant::now();
        let mut failures = LoginFailures::new(3, Duration::from_secs(900), start);
        let mut entries = Vec::new();
        for i in 0..10_000 {
            let reason = if i % 2 == 0 {
                "bad_credentials"
            } else {
                "too_many_failures"
            };
            entries.extend(failures.refused(
                &format!("name{i}"),
                reason,
                start,
                "2026-01-01T00:00:00+00:00",
            ));
        }
        assert_eq!(entries.len(), LOGIN_REFUSALS_RECORDED_PER_INTERVAL as usize);
        assert!(entries
            .iter()
            .all(|(action, _, _)| *action == "login_failed"));
        assert!(failures
            .maintain(start + Duration::from_secs(59), "x")
            .is_none());
        let (action, subject, detail) = failures
            .maintain(start + LOGIN_REFUSAL_INTERVAL, "2026-01-01T00:01:00+00:00")
            .expect("a summary once the interval ends");
        assert_eq!(action, "login_failed_summary");
        assert_eq!(subject, None);
        let unrecorded = 10_000 - u64::from(LOGIN_REFUSALS_RECORDED_PER_INTERVAL);
        assert_eq!(detail["count"], unrecorded);
        assert_eq!(
            detail["by_reason"]["bad_credentials"].as_u64().unwrap()
                + detail["by_reason"]["too_many_failures"].as_u64().unwrap(),
            unrecorded
        );
        assert_eq!(detail["names_sample"].as_array().unwrap().len(), 10);
        assert!(detail["from"].is_string(), "{detail}");
        assert_eq!(detail["to"], "2026-01-01T00:01:00+00:00");
        // The next interval records one by one again.
        let next = start + LOGIN_REFUSAL_INTERVAL + Duration::from_secs(1);
        let entries = failures.refused("ada", "bad_credentials", next, "t");
        assert_eq!(entries.len(), 1);
    }
}
