//! The trace-replay simulator behind `commonlab sim`.
//!
//! It replays a workload (the Alibaba GPU pod trace with seeded synthetic users, or a seeded
//! synthetic generator) through the allocator's own code with a virtual clock, under four
//! policies (FIFO, Colab-like limits, Slurm-style fair share, and Commonlab's), and reports
//! utilisation, waits, newcomers' time to first GPU, fairness and wrong reclaims, as a table
//! or as JSON. Metric definitions are in [`metrics`] and `docs/allocator.md`.
//!
//! Architecture invariant: the simulator drives `commonlab_allocator::Allocator` exactly as
//! the supervisor does (events in, decisions out, ticks at `next_deadline`); it has no policy
//! logic of its own. It reads only the trace file it is given, and all randomness is seeded.

#![allow(clippy::print_stdout)]

pub mod diagnostics;
pub mod driver;
pub mod metrics;
pub mod policies;
pub mod report;
pub mod rng;
pub mod trace;
pub mod workload;

#[cfg(test)]
mod tests;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use commonlab_allocator::PolicyKind;

use crate::driver::RunOptions;
use crate::metrics::Metrics;
use crate::workload::{SyntheticParams, TraceParams, Workload};

/// Which workload to replay.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum WorkloadKind {
    /// The seeded synthetic generator.
    Synthetic,
    /// The pod trace with seeded synthetic users.
    Trace,
}

/// A policy name on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum PolicyArg {
    /// First come, first served.
    Fifo,
    /// Colab-like limits.
    ColabLike,
    /// Slurm-style fair share.
    SlurmFairShare,
    /// Commonlab's policy.
    Commons,
}

impl PolicyArg {
    fn kind(self) -> PolicyKind {
        match self {
            PolicyArg::Fifo => PolicyKind::Fifo,
            PolicyArg::ColabLike => PolicyKind::ColabLike,
            PolicyArg::SlurmFairShare => PolicyKind::SlurmFairShare,
            PolicyArg::Commons => PolicyKind::Commons,
        }
    }
}

/// `commonlab sim`: replay a workload under each policy and compare.
#[derive(Clone, Debug, clap::Args)]
pub struct SimArgs {
    /// The workload to replay.
    #[arg(long, value_enum, default_value = "synthetic")]
    pub workload: WorkloadKind,
    /// The pod trace, for `--workload trace`.
    #[arg(long, default_value = "../shared/traces/openb_pod_list_default.csv")]
    pub trace: PathBuf,
    /// Seed of every random choice (users, sessions, phases).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Target offered load (planned GPU time over GPU time present).
    #[arg(long, default_value_t = 1.3)]
    pub load: f64,
    /// GPUs present (synthetic workload; the trace workload sizes itself to the load).
    #[arg(long)]
    pub gpus: Option<u32>,
    /// Days simulated, warm-up included.
    #[arg(long)]
    pub days: Option<f64>,
    /// Policies to run, comma-separated; all by default.
    #[arg(long, value_enum, value_delimiter = ',')]
    pub policies: Vec<PolicyArg>,
    /// Print the metrics per policy as JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Check the allocator's invariants after every step (slower).
    #[arg(long)]
    pub check_invariants: bool,
    /// Idle seconds before a free-tier GPU can be reclaimed under the Commons policy (pro:
    /// twice this); the default is the configured tiers' (120 s).
    #[arg(long)]
    pub idle_reclaim_after_s: Option<u64>,
    /// Also print diagnostics per policy: free GPU time while someone waits and why, refusals,
    /// why requests went unserved, what slow newcomers found (slower).
    #[arg(long)]
    pub diagnose: bool,
    /// Sessions stopped at their lifetime ask again for the rest of their work at their next
    /// busy phase, as after a reclaim, instead of ending.
    #[arg(long)]
    pub resume_after_lifetime: bool,
    /// Under the Commons policy, treat GPUs of kernels idle past their threshold as leftovers
    /// rather than as their user's demand (`idle_gpus_count_as_demand = false`).
    #[arg(long)]
    pub idle_gpus_are_not_demand: bool,
}

impl SimArgs {
    /// The workload these arguments describe.
    pub fn build_workload(&self) -> anyhow::Result<Workload> {
        match self.workload {
            WorkloadKind::Synthetic => {
                let mut params = SyntheticParams {
                    load: self.load,
                    ..SyntheticParams::default()
                };
                if let Some(gpus) = self.gpus {
                    params.gpus = gpus;
                }
                if let Some(days) = self.days {
                    params.days = days;
                    params.warmup_days = params.warmup_days.min(days / 4.0);
                }
                Ok(workload::synthetic(&params, self.seed))
            }
            WorkloadKind::Trace => {
                let pods = trace::load(&self.trace)?;
                let mut params = TraceParams {
                    load: self.load,
                    ..TraceParams::default()
                };
                if let Some(days) = self.days {
                    params.days = days;
                    params.warmup_days = params.warmup_days.min(days / 4.0);
                }
                Ok(workload::from_trace(&pods, &params, self.seed))
            }
        }
    }
}

/// Runs every requested policy on one workload.
pub fn simulate(
    workload: &Workload,
    policies: &[PolicyKind],
    options: RunOptions,
) -> anyhow::Result<Vec<Metrics>> {
    policies
        .iter()
        .map(|policy| {
            driver::run(workload, *policy, options)
                .map_err(anyhow::Error::msg)
                .with_context(|| format!("simulating {} on {}", policy.name(), workload.name))
        })
        .collect()
}

/// `commonlab sim`.
pub fn run_sim(args: &SimArgs) -> anyhow::Result<ExitCode> {
    let workload = args.build_workload()?;
    let policies: Vec<PolicyKind> = if args.policies.is_empty() {
        policies::POLICIES.to_vec()
    } else {
        args.policies.iter().map(|policy| policy.kind()).collect()
    };
    let options = RunOptions {
        check_invariants: args.check_invariants,
        diagnose: args.diagnose,
        resume_after_lifetime: args.resume_after_lifetime,
        overrides: policies::Overrides {
            idle_reclaim_after_s: args.idle_reclaim_after_s,
            idle_gpus_count_as_demand: args.idle_gpus_are_not_demand.then_some(false),
        },
    };
    let results = simulate(&workload, &policies, options)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&results)?);
    } else {
        print!("{}", report::table(&workload, &results));
        for metrics in &results {
            if let Some(diagnostics) = &metrics.diagnostics {
                print!("{}", diagnostics.render(metrics.policy));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
