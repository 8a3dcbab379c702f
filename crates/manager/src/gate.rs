//! The policy gate: code a client sends a kernel (`screen.rs` says which messages carry it) is
//! checked before it reaches the kernel, what runs in a kernel is judged on the supervisor's
//! tick, a restricted (or removed) account starts, restarts and runs nothing, and every verdict
//! with findings is stored (and audited) with its evidence.

use std::sync::Arc;
use std::time::Duration;

use commonlab_policy::{Action, CheckContext, Observation, Policy, Verdict};
use commonlab_runtime::ProcessInfo;
use commonlab_store::{FindingRecord, Store};

use crate::{ErrorKind, ManagerError};

/// What the supervisor must do about what runs in one kernel.
#[derive(Debug, Clone)]
pub(crate) struct RuntimeDecision {
    pub(crate) action: Action,
    /// The explanation shown to the user.
    pub(crate) message: String,
    /// The host pids of the processes the deciding findings were made on.
    pub(crate) pids: Vec<i32>,
    /// Rule ids and pids, so the same finding is acted on once.
    pub(crate) signature: String,
    pub(crate) category: Option<String>,
}

/// What the kernel does with a cell after the check.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum GateDecision {
    Run,
    /// Run it, and show this explanation next to its output.
    RunWithWarning(String),
    /// Do not run it; answer with this explanation.
    Refuse(String),
    /// Do not run it: it is longer than the policy reads, so it could not be checked whole.
    TooLarge(String),
}

/// Where an account stands, for what its kernels may do.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Standing {
    /// In good standing (or a single-user server).
    Active,
    /// Restricted: no kernel of theirs starts, restarts or runs a cell. Says until when, why and
    /// where to appeal, as the end of a sentence.
    Restricted(String),
    /// Removed while their server still ran.
    Removed,
    /// The store could not say; treated as refusing.
    Unknown,
}

/// Checks cells against the policy with the tier of the kernel's owner.
pub struct PolicyGate {
    policy: Arc<Policy>,
    tier: String,
    store: Arc<Store>,
    /// How long an account stays restricted after a `restrict` action.
    restriction: Duration,
}

impl PolicyGate {
    pub fn new(policy: Arc<Policy>, tier: String, store: Arc<Store>) -> PolicyGate {
        PolicyGate {
            policy,
            tier,
            store,
            restriction: Duration::from_secs(24 * 3600),
        }
    }

    /// How long a `restrict` action restricts the account (default a day).
    pub fn with_restriction_period(mut self, period: Duration) -> PolicyGate {
        self.restriction = period;
        self
    }

    /// Where the owner's account stands now. A single-user server's always does.
    pub(crate) fn standing(&self) -> Standing {
        let owner = self.store.owner();
        if owner.is_empty() {
            return Standing::Active;
        }
        let user = match self.store.user_get(owner) {
            Ok(Some(user)) => user,
            Ok(None) => return Standing::Removed,
            Err(e) => {
                tracing::error!(error = %e, "could not read the account's restriction");
                return Standing::Unknown;
            }
        };
        let now = chrono::Utc::now().to_rfc3339();
        // A restriction whose end cannot be read is in force.
        if !user.is_restricted_at(&now).unwrap_or(true) {
            return Standing::Active;
        }
        Standing::Restricted(format!(
            "until {} ({}). If this is a mistake, appeal at {}.",
            user.restricted_until
                .as_deref()
                .unwrap_or("an administrator lifts it"),
            user.restricted_reason
                .as_deref()
                .unwrap_or("a usage-policy decision"),
            self.policy.appeal_url()
        ))
    }

    /// Refuses a kernel start or restart unless the owner's account is in good standing: a
    /// restriction says until when, why and where to appeal; an account that cannot be read
    /// starts nothing.
    pub(crate) fn admit(&self) -> Result<(), ManagerError> {
        match self.standing() {
            Standing::Active => Ok(()),
            Standing::Restricted(when) => Err(ManagerError::new(
                ErrorKind::Forbidden,
                "account_restricted",
                format!("Your account may not start or restart kernels {when}"),
            )),
            Standing::Removed => Err(ManagerError::new(
                ErrorKind::Forbidden,
                "account_removed",
                "This account has been removed; its kernels cannot start.",
            )),
            Standing::Unknown => Err(ManagerError::new(
                ErrorKind::Unavailable,
                "account_check_failed",
                "The server could not read your account from its database, so no kernel was started; try again in a moment.",
            )),
        }
    }

    /// Judges the processes running in a kernel; `None` when nothing is to be done.
    pub(crate) fn inspect_processes(
        &self,
        kernel_id: &str,
        processes: &[ProcessInfo],
    ) -> Option<RuntimeDecision> {
        let observed: Vec<&ProcessInfo> =
            processes.iter().filter(|p| !is_infrastructure(p)).collect();
        let observations: Vec<Observation> = observed
            .iter()
            .map(|p| Observation::Process {
                pid: u32::try_from(p.pid).ok(),
                exe: p
                    .exe
                    .as_ref()
                    .map(|e| e.display().to_string())
                    .or_else(|| p.cmdline.first().cloned())
                    .unwrap_or_default(),
                cmdline: p.cmdline.clone(),
                sha256: None,
            })
            .collect();
        let verdict = self
            .policy
            .inspect_runtime(&observations, &CheckContext::new(&self.tier));
        if verdict.findings.is_empty() {
            return None;
        }
        let mut rules: Vec<&str> = verdict
            .deciding_findings()
            .map(|f| f.rule.as_str())
            .collect();
        rules.sort_unstable();
        rules.dedup();
        let mut pids: Vec<i32> = verdict
            .deciding_findings()
            .filter_map(|f| observed.get((f.location.line as usize).checked_sub(1)?))
            .map(|p| p.pid)
            .collect();
        pids.sort_unstable();
        pids.dedup();
        let signature = format!("{}|{:?}", rules.join(","), pids);
        self.record(kernel_id, "runtime", &verdict);
        if verdict.action == Action::Allow {
            return None;
        }
        let message = format!(
            "Usage policy: a process running in this kernel was examined.\n{}",
            self.policy.user_message(&verdict)
        )
        .replace("This code ", "It ");
        Some(RuntimeDecision {
            action: verdict.action,
            message,
            pids,
            signature,
            category: verdict.category.clone(),
        })
    }

    /// Restricts the owner's account for the configured period, recorded in the audit log.
    pub(crate) fn restrict(&self, reason: &str) {
        let owner = self.store.owner();
        if owner.is_empty() {
            return;
        }
        let until = chrono::Utc::now()
            + chrono::Duration::from_std(self.restriction).unwrap_or(chrono::Duration::days(1));
        let until = until.to_rfc3339();
        match self.store.user_restrict(owner, Some(&until), Some(reason)) {
            Ok(_) => self.audit(
                "restriction",
                owner,
                serde_json::json!({"until": until, "reason": reason, "by": "policy"}),
            ),
            Err(e) => tracing::error!(error = %e, user = owner, "could not restrict an account"),
        }
    }

    /// Appends to the audit log as the policy; a failure is logged, never shown.
    pub(crate) fn audit(&self, action: &str, subject: &str, detail: serde_json::Value) {
        let now = chrono::Utc::now().to_rfc3339();
        if let Err(e) =
            self.store
                .audit_append(&now, Some("policy"), action, Some(subject), &detail)
        {
            tracing::error!(error = %e, action, "could not append to the audit log");
        }
    }

    /// Checks code a client asked a kernel to run (a cell, a debugger expression, a comm's
    /// data); a verdict with findings is recorded.
    pub(crate) fn check(&self, kernel_id: &str, msg_id: &str, code: &str) -> GateDecision {
        if let Some(refused) = self.refused_for_standing() {
            return refused;
        }
        if let Some(too_large) = self.too_large(code) {
            return too_large;
        }
        let verdict = self.policy.check_cell(code, &CheckContext::new(&self.tier));
        self.record(kernel_id, msg_id, &verdict);
        self.decide(&verdict)
    }

    /// A restricted or removed account runs nothing, whichever kernel the code reached; nor
    /// does one the store cannot read.
    fn refused_for_standing(&self) -> Option<GateDecision> {
        match self.standing() {
            Standing::Active => None,
            Standing::Restricted(when) => Some(GateDecision::Refuse(format!(
                "This code was not run: your account is restricted {when}"
            ))),
            Standing::Removed => Some(GateDecision::Refuse(
                "This code was not run: this account has been removed.".into(),
            )),
            Standing::Unknown => Some(GateDecision::Refuse(
                "This code was not run: the server could not read your account from its database. Try again in a moment.".into(),
            )),
        }
    }

    /// Checks text being typed (a completion or inspection request, which the kernel may
    /// evaluate): the decision only, as nothing was asked to run, so no finding is recorded.
    pub(crate) fn check_unrecorded(&self, code: &str) -> GateDecision {
        if let Some(refused) = self.refused_for_standing() {
            return refused;
        }
        if let Some(too_large) = self.too_large(code) {
            return too_large;
        }
        let verdict = self.policy.check_cell(code, &CheckContext::new(&self.tier));
        self.decide(&verdict)
    }

    /// The policy reads a cell only up to `cell_bytes_max`; anything longer is refused rather
    /// than run with its end unchecked.
    fn too_large(&self, code: &str) -> Option<GateDecision> {
        let bytes_max = self.policy.cell_bytes_max();
        (code.len() > bytes_max).then(|| {
            GateDecision::TooLarge(format!(
                "This code was not run: it is {} bytes, and the usage policy checks code up to {} bytes. \
                 Split it into smaller cells, or load large data from a file instead of writing it into the code.",
                code.len(),
                bytes_max
            ))
        })
    }

    fn decide(&self, verdict: &Verdict) -> GateDecision {
        match verdict.action {
            Action::Allow => GateDecision::Run,
            Action::Warn => GateDecision::RunWithWarning(self.policy.user_message(verdict)),
            // A cell that has not run yet is refused for every stronger action; stopping a runtime
            // or restricting an account is the supervisor's, on what runs.
            _ => GateDecision::Refuse(self.policy.user_message(verdict)),
        }
    }

    fn record(&self, kernel_id: &str, msg_id: &str, verdict: &Verdict) {
        if verdict.findings.is_empty() {
            return;
        }
        let record = FindingRecord {
            at: crate::iso_now(),
            kernel_id: kernel_id.to_owned(),
            msg_id: msg_id.to_owned(),
            action: format!("{:?}", verdict.action).to_lowercase(),
            category: verdict.category.clone(),
            shadow: verdict.is_shadow_only(),
            verdict: serde_json::to_string(verdict).expect("verdicts serialize"),
        };
        if let Err(e) = self.store.insert_finding(&record) {
            tracing::error!(error = %e, kernel = kernel_id, "could not store a policy finding");
        }
        let rules: Vec<&str> = verdict.findings.iter().map(|f| f.rule.as_str()).collect();
        self.audit(
            "finding",
            kernel_id,
            serde_json::json!({
                "owner": self.store.owner(),
                "source": if msg_id == "runtime" { "runtime" } else { "cell" },
                "action": record.action,
                "category": record.category,
                "shadow": record.shadow,
                "rules": rules,
            }),
        );
        tracing::info!(kernel = kernel_id, action = %record.action, category = ?record.category, shadow = record.shadow, "policy finding");
    }
}

/// The sandbox's own processes (the launcher, bubblewrap and, with egress, slirp4netns), whose
/// command lines hold paths
/// rather than the user's code.
fn is_infrastructure(process: &ProcessInfo) -> bool {
    let name = |s: &str| s.rsplit('/').next().unwrap_or(s).to_owned();
    let exe = process
        .exe
        .as_ref()
        .map(|e| name(&e.display().to_string()))
        .unwrap_or_default();
    let argv0 = process.cmdline.first().map(|a| name(a)).unwrap_or_default();
    ["bwrap", "slirp4netns", "unshare"]
        .iter()
        .any(|tool| exe == *tool || argv0 == *tool)
        || process.cmdline.iter().any(|a| a == "sandbox-exec")
}

#[cfg(test)]
mod tests {
    use super::*;
    use commonlab_policy::PolicyConfig;

    const BLOCKED: &str = "pool = 'stratum+tcp://pool.supportxmr.com:3333'";

    fn gate(cell_bytes_max: Option<usize>) -> (PolicyGate, Arc<Store>) {
        let config = PolicyConfig {
            cell_bytes_max,
            ..PolicyConfig::default()
        };
        let policy = Policy::configured(&config, &[]).expect("valid config");
        let store = Arc::new(Store::open_in_memory().unwrap());
        (
            PolicyGate::new(Arc::new(policy), "free".into(), store.clone()),
            store,
        )
    }

    #[test]
    fn code_is_refused_and_recorded_and_typing_is_refused_unrecorded() {
        let (gate, store) = gate(None);
        assert!(matches!(
            gate.check("k", "m1", BLOCKED),
            GateDecision::Refuse(_)
        ));
        assert_eq!(store.findings_for_kernel("k").unwrap().len(), 1);
        assert!(matches!(
            gate.check_unrecorded(BLOCKED),
            GateDecision::Refuse(_)
        ));
        assert_eq!(store.findings_for_kernel("k").unwrap().len(), 1);
        assert_eq!(gate.check("k", "m2", "print(1)"), GateDecision::Run);
    }

    #[test]
    fn code_longer_than_the_policy_reads_is_refused() {
        let (gate, _) = gate(Some(64));
        // The policy alone would read only the padding and allow it.
        let code = format!("{}\n{BLOCKED}", "x = 1\n".repeat(20));
        for decision in [gate.check("k", "m", &code), gate.check_unrecorded(&code)] {
            let GateDecision::TooLarge(text) = decision else {
                panic!("not refused as too large: {decision:?}");
            };
            assert!(text.contains("up to 64 bytes"), "{text}");
        }
        assert_eq!(gate.check("k", "m", "x = 1"), GateDecision::Run);
    }
}
