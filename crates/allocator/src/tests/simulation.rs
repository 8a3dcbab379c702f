//! Seeded random simulations, a small VOPR: random requests, exits, activity, ticks and
//! inventory changes drive the allocator under every policy; after every step the allocator's
//! invariants are checked, and a shadow model checks each decision (no GPU granted twice, busy
//! kernels never reclaimed, reclaims only after their warning, stops only at their limit).
//! A failure names its seed; `COMMONLAB_SIM_SEED=<seed>` replays one.

use std::collections::BTreeMap;

use crate::{
    Activity, Allocator, AllocatorConfig, Decision, Event, GpuId, Inventory, PolicyKind,
    ReclaimReason, RequestId, Settings, StartRequest, StopReason, TierName, Timestamp, UserId,
    WarnReason,
};

use super::{test_config, test_tiers};

/// A SplitMix64 generator: small, seeded and good enough for test workloads.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

#[derive(Debug)]
struct Shadow {
    gpus: Vec<GpuId>,
    placed_at: Timestamp,
    busy: bool,
    idle_since: Timestamp,
    warned_at: Option<Timestamp>,
}

fn simulate(policy: PolicyKind, seed: u64, steps: usize) {
    simulate_with(policy, seed, steps, true);
}

fn simulate_with(policy: PolicyKind, seed: u64, steps: usize, idle_gpus_count_as_demand: bool) {
    let fail = |what: String| -> ! {
        panic!("simulation failed (policy {}, seed {seed}; replay with COMMONLAB_SIM_SEED={seed}): {what}", policy.name())
    };
    let mut rng = Rng(seed);
    let config = AllocatorConfig {
        idle_gpus_count_as_demand,
        ..test_config(policy)
    };
    let settings = Settings::new(config, &test_tiers()).expect("test config is valid");
    let tiers = settings.tiers.clone();
    let mut allocator = Allocator::new(settings, Inventory::fake(4, "Fake"));
    let mut now = Timestamp::ZERO;
    let mut next_id = 0u64;
    let mut queued: Vec<RequestId> = Vec::new();
    let mut placed: BTreeMap<RequestId, Shadow> = BTreeMap::new();
    let mut tier_of: BTreeMap<RequestId, TierName> = BTreeMap::new();
    let mut owners: BTreeMap<GpuId, RequestId> = BTreeMap::new();
    for step in 0..steps {
        let event = match rng.below(100) {
            0..=29 => {
                next_id += 1;
                let request = RequestId(next_id);
                let user = UserId::new(&format!("u{}", rng.below(8)));
                let tier = TierName::new(if rng.below(4) == 0 { "pro" } else { "free" });
                tier_of.insert(request, tier.clone());
                Event::StartRequested(StartRequest {
                    request,
                    user,
                    tier,
                    gpus: rng.below(3) as u32,
                })
            }
            30..=44 => {
                let known: Vec<RequestId> = queued.iter().chain(placed.keys()).copied().collect();
                if known.is_empty() {
                    Event::Tick
                } else {
                    Event::Exited {
                        request: known[rng.below(known.len() as u64) as usize],
                    }
                }
            }
            45..=79 if !placed.is_empty() => {
                let ids: Vec<RequestId> = placed.keys().copied().collect();
                let request = ids[rng.below(ids.len() as u64) as usize];
                let activity = if rng.below(2) == 0 {
                    Activity::Busy
                } else {
                    Activity::Idle
                };
                Event::Activity { request, activity }
            }
            80..=81 => {
                let count = 1 + rng.below(6) as u32;
                Event::InventoryChanged {
                    gpus: Inventory::fake(count, "Fake").gpus().to_vec(),
                }
            }
            _ => Event::Tick,
        };
        let advance_ms = match rng.below(10) {
            0 => rng.below(4 * 3_600_000),
            1..=3 => rng.below(600_000),
            _ => rng.below(60_000),
        };
        let target = Timestamp::from_millis(now.as_millis() + advance_ms);
        // The driver ticks at every deadline on the way, as the supervisor and simulator do.
        let mut batches = Vec::new();
        while let Some(deadline) = allocator
            .next_deadline()
            .filter(|deadline| *deadline <= target)
        {
            if deadline <= now {
                fail(format!("deadline {deadline} is not after {now}"));
            }
            now = deadline;
            let decisions = allocator.handle(now, Event::Tick);
            batches.push((now, Event::Tick, decisions, allocator.inventory().clone()));
        }
        now = target;
        let applied = event.clone();
        let decisions = allocator.handle(now, event);
        batches.push((now, applied, decisions, allocator.inventory().clone()));
        for (at, event, decisions, inventory) in batches {
            match &event {
                Event::Exited { request } => {
                    queued.retain(|id| id != request);
                    if let Some(shadow) = placed.remove(request) {
                        for gpu in shadow.gpus {
                            owners.remove(&gpu);
                        }
                    }
                }
                Event::Activity { request, activity } => {
                    if let Some(shadow) = placed.get_mut(request) {
                        match activity {
                            Activity::Busy => {
                                shadow.busy = true;
                                shadow.warned_at = None;
                            }
                            Activity::Idle => {
                                if shadow.busy {
                                    shadow.idle_since = at;
                                    shadow.warned_at = None;
                                }
                                shadow.busy = false;
                            }
                        }
                    }
                }
                Event::StartRequested(request) => queued.push(request.request),
                _ => {}
            }
            for decision in decisions {
                let context = || format!("step {step} at {at} after {event:?}: {decision}");
                match &decision {
                    Decision::Place { request, gpus } => {
                        queued.retain(|id| id != request);
                        for gpu in gpus {
                            if let Some(other) = owners.insert(*gpu, *request) {
                                fail(format!(
                                    "GPU {} granted to {request} while {other} holds it ({})",
                                    gpu.0,
                                    context()
                                ));
                            }
                            if !inventory.contains(*gpu) {
                                fail(format!("GPU {} is not present ({})", gpu.0, context()));
                            }
                        }
                        placed.insert(
                            *request,
                            Shadow {
                                gpus: gpus.clone(),
                                placed_at: at,
                                busy: false,
                                idle_since: at,
                                warned_at: None,
                            },
                        );
                    }
                    Decision::Refuse { request, .. } => queued.retain(|id| id != request),
                    Decision::Warn {
                        request,
                        at: reclaim_at,
                        reason: WarnReason::IdleReclaim,
                    } => {
                        let Some(shadow) = placed.get_mut(request) else {
                            fail(context())
                        };
                        if shadow.busy {
                            fail(format!("busy kernel warned for idleness ({})", context()));
                        }
                        shadow.warned_at = Some(*reclaim_at);
                    }
                    Decision::Warn { .. } => {}
                    Decision::Reclaim {
                        request,
                        gpus,
                        reason,
                    } => {
                        let Some(shadow) = placed.remove(request) else {
                            fail(context())
                        };
                        if *reason != ReclaimReason::GpuRemoved && shadow.busy {
                            fail(format!("busy kernel reclaimed ({})", context()));
                        }
                        if *reason == ReclaimReason::IdleContended
                            && shadow.warned_at.is_none_or(|warned| warned > at)
                        {
                            fail(format!(
                                "reclaimed before its warning took effect ({})",
                                context()
                            ));
                        }
                        if *reason == ReclaimReason::IdleTimeout {
                            let tier = &tiers[&tier_of[request]];
                            if at < shadow.idle_since.plus_secs(tier.idle_reclaim_after_s) {
                                fail(format!("stopped for idleness too early ({})", context()));
                            }
                        }
                        if *gpus != shadow.gpus {
                            fail(format!(
                                "reclaimed GPUs differ from granted ones ({})",
                                context()
                            ));
                        }
                        for gpu in gpus {
                            owners.remove(gpu);
                        }
                    }
                    Decision::Stop { request, reason } => {
                        let Some(shadow) = placed.remove(request) else {
                            fail(context())
                        };
                        if *reason == StopReason::LifetimeReached {
                            let tier = &tiers[&tier_of[request]];
                            if at < shadow.placed_at.plus_secs(tier.lifetime_s_max) {
                                fail(format!("stopped before its lifetime ({})", context()));
                            }
                        }
                        for gpu in &shadow.gpus {
                            owners.remove(gpu);
                        }
                    }
                    Decision::Queue { .. } | Decision::QueuePositionChanged { .. } => {}
                }
            }
        }
        // Inventory shrinkage releases GPUs through Reclaim decisions; keep the shadow in step.
        owners.retain(|gpu, _| allocator.inventory().contains(*gpu));
        if let Err(violation) = allocator.check_invariants() {
            fail(format!("step {step}: {violation}"));
        }
        let held: usize = allocator
            .kernels()
            .iter()
            .map(|kernel| kernel.gpus.len())
            .sum();
        if held != owners.len() {
            fail(format!(
                "step {step}: allocator holds {held} GPUs, decisions granted {}",
                owners.len()
            ));
        }
    }
}

fn seeds() -> Vec<u64> {
    match std::env::var("COMMONLAB_SIM_SEED") {
        Ok(seed) => vec![seed.parse().expect("COMMONLAB_SIM_SEED is a number")],
        Err(_) => (1..=12).map(|n| n * 0x5DEE_CE66).collect(),
    }
}

#[test]
fn random_workloads_keep_invariants_under_commons() {
    for seed in seeds() {
        simulate(PolicyKind::Commons, seed, 2_000);
    }
}

#[test]
fn random_workloads_keep_invariants_under_fifo() {
    for seed in seeds() {
        simulate(PolicyKind::Fifo, seed, 2_000);
    }
}

#[test]
fn random_workloads_keep_invariants_under_colab_like() {
    for seed in seeds() {
        simulate(PolicyKind::ColabLike, seed, 2_000);
    }
}

#[test]
fn random_workloads_keep_invariants_under_slurm_fair_share() {
    for seed in seeds() {
        simulate(PolicyKind::SlurmFairShare, seed, 2_000);
    }
}

#[test]
fn random_workloads_keep_invariants_when_idle_gpus_are_not_demand() {
    for seed in seeds() {
        simulate_with(PolicyKind::Commons, seed, 2_000, false);
    }
}
