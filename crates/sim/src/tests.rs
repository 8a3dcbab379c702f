//! Simulator tests: the trace loads, every policy runs a seeded workload with the allocator's
//! invariants checked after every step, runs are deterministic, and the metrics behave.

use commonlab_allocator::PolicyKind;

use crate::driver::{self, RunOptions};
use crate::metrics::percentile;
use crate::workload::{self, SyntheticParams, TraceParams};
use crate::{policies, trace};

fn trace_path() -> std::path::PathBuf {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/traces/openb_pod_list_default.csv");
    assert!(
        path.exists(),
        "the pod trace is missing at {}; it ships in shared/traces beside the repository",
        path.display()
    );
    path
}

fn small_synthetic(seed: u64) -> workload::Workload {
    let params = SyntheticParams {
        gpus: 6,
        regular_users: 60,
        heavy_users: 1,
        days: 1.5,
        warmup_days: 0.25,
        drain_hours: 2.0,
        ..SyntheticParams::default()
    };
    workload::synthetic(&params, seed)
}

#[test]
fn trace_loads_every_scheduled_gpu_pod() {
    let pods = trace::load(&trace_path()).expect("trace parses");
    assert_eq!(pods.len(), 6_203);
    assert_eq!(pods.iter().filter(|pod| pod.gpus > 1).count(), 74);
    assert!(pods.iter().all(|pod| pod.held_s >= 0.0 && pod.gpus >= 1));
}

#[test]
fn trace_parse_rejects_a_ragged_line() {
    let text =
        "name,num_gpu,gpu_milli,qos,creation_time,scheduled_time,deletion_time\np,1,1000,LS,0,1\n";
    let error = trace::parse(text).expect_err("a short line fails");
    assert_eq!(error.to_string(), "line 2: 6 fields, expected 7");
}

#[test]
fn every_policy_keeps_the_allocator_invariants_on_seeded_workloads() {
    for seed in [1, 2, 3] {
        let workload = small_synthetic(seed);
        for policy in policies::POLICIES {
            let metrics = driver::run(
                &workload,
                policy,
                RunOptions {
                    check_invariants: true,
                    diagnose: false,
                    resume_after_lifetime: false,
                    overrides: Default::default(),
                },
            )
            .unwrap_or_else(|error| panic!("policy {} seed {seed}: {error}", policy.name()));
            assert_eq!(
                metrics.wrong_busy,
                0,
                "policy {} seed {seed} reclaimed a busy kernel",
                policy.name()
            );
            assert!(
                metrics.gpu_busy_utilisation <= metrics.gpu_held_utilisation + 1e-9,
                "seed {seed}"
            );
            assert!(metrics.gpu_held_utilisation <= 1.0 + 1e-9, "seed {seed}");
        }
    }
}

#[test]
fn commons_reclaims_only_idle_gpus_for_waiters_under_their_share() {
    for seed in [4, 5] {
        let workload = small_synthetic(seed);
        let metrics = driver::run(
            &workload,
            PolicyKind::Commons,
            RunOptions {
                check_invariants: true,
                diagnose: false,
                resume_after_lifetime: false,
                overrides: Default::default(),
            },
        )
        .unwrap_or_else(|error| panic!("seed {seed}: {error}"));
        assert!(
            metrics.reclaims > 0,
            "seed {seed}: the workload should contend for GPUs"
        );
        assert_eq!(metrics.wrongly_reclaimed, 0, "seed {seed}: {metrics:?}");
    }
}

#[test]
fn trace_replay_keeps_the_invariants() {
    let pods = trace::load(&trace_path()).expect("trace parses");
    let params = TraceParams {
        days: 2.0,
        warmup_days: 0.5,
        drain_hours: 2.0,
        users: 60,
        ..TraceParams::default()
    };
    let workload = workload::from_trace(&pods, &params, 7);
    assert!(workload.users.iter().filter(|user| user.heavy).count() == 1);
    for policy in [PolicyKind::Fifo, PolicyKind::Commons] {
        driver::run(
            &workload,
            policy,
            RunOptions {
                check_invariants: true,
                diagnose: false,
                resume_after_lifetime: false,
                overrides: Default::default(),
            },
        )
        .unwrap_or_else(|error| panic!("policy {} seed 7: {error}", policy.name()));
    }
}

#[test]
fn runs_are_deterministic_for_a_seed() {
    let first = serde_json::to_string(
        &driver::run(
            &small_synthetic(9),
            PolicyKind::Commons,
            RunOptions {
                check_invariants: false,
                diagnose: false,
                resume_after_lifetime: false,
                overrides: Default::default(),
            },
        )
        .expect("runs"),
    )
    .expect("json");
    let second = serde_json::to_string(
        &driver::run(
            &small_synthetic(9),
            PolicyKind::Commons,
            RunOptions {
                check_invariants: false,
                diagnose: false,
                resume_after_lifetime: false,
                overrides: Default::default(),
            },
        )
        .expect("runs"),
    )
    .expect("json");
    assert_eq!(first, second);
    let other = serde_json::to_string(
        &driver::run(
            &small_synthetic(10),
            PolicyKind::Commons,
            RunOptions {
                check_invariants: false,
                diagnose: false,
                resume_after_lifetime: false,
                overrides: Default::default(),
            },
        )
        .expect("runs"),
    )
    .expect("json");
    assert_ne!(first, other);
}

#[test]
fn synthetic_generator_hits_the_target_load() {
    let workload = workload::synthetic(&SyntheticParams::default(), 1);
    let load = workload.offered_load();
    assert!((1.1..1.5).contains(&load), "offered load {load}");
    assert_eq!(workload.users.iter().filter(|user| user.heavy).count(), 3);
}

#[test]
fn percentiles_report_unserved_as_none() {
    let values = [1.0, 2.0, 3.0, f64::INFINITY];
    assert_eq!(percentile(&values, 0.5), Some(2.0));
    assert_eq!(percentile(&values, 0.75), Some(3.0));
    assert_eq!(percentile(&values, 0.99), None);
    assert_eq!(percentile(&[], 0.5), None);
}
