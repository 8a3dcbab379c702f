//! The policy gate on the execute path: each `execute_request` is checked before it reaches the
//! kernel, and every verdict with findings is stored.

use std::sync::Arc;

use commonlab_policy::{Action, CheckContext, Policy, Verdict};
use commonlab_store::{FindingRecord, Store};

/// What the kernel does with a cell after the check.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum GateDecision {
    Run,
    /// Run it, and show this explanation next to its output.
    RunWithWarning(String),
    /// Do not run it; answer with this explanation.
    Refuse(String),
}

/// Checks cells against the policy with the tier of the kernel's owner.
pub struct PolicyGate {
    policy: Arc<Policy>,
    tier: String,
    store: Arc<Store>,
}

impl PolicyGate {
    pub fn new(policy: Arc<Policy>, tier: String, store: Arc<Store>) -> PolicyGate {
        PolicyGate {
            policy,
            tier,
            store,
        }
    }

    pub(crate) fn check(&self, kernel_id: &str, msg_id: &str, code: &str) -> GateDecision {
        let verdict = self.policy.check_cell(code, &CheckContext::new(&self.tier));
        self.record(kernel_id, msg_id, &verdict);
        match verdict.action {
            Action::Allow => GateDecision::Run,
            Action::Warn => GateDecision::RunWithWarning(self.policy.user_message(&verdict)),
            // A cell that has not run yet is refused for every stronger action; stopping a runtime
            // or restricting an account is the supervisor's, on what runs.
            _ => GateDecision::Refuse(self.policy.user_message(&verdict)),
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
        tracing::info!(kernel = kernel_id, action = %record.action, category = ?record.category, shadow = record.shadow, "policy finding");
    }
}
