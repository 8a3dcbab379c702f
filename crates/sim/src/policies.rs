//! The four policies compared, each as the allocator config and tiers it runs with.

use commonlab_allocator::{
    AllocatorConfig, PolicyKind, Settings, TierConfig, TiersConfig, DAY_S, HOUR_S,
};

/// The policies in report order.
pub const POLICIES: [PolicyKind; 4] = [
    PolicyKind::Fifo,
    PolicyKind::ColabLike,
    PolicyKind::SlurmFairShare,
    PolicyKind::Commons,
];

/// Commonlab's tiers as the simulation configures them.
pub fn commons_tiers() -> TiersConfig {
    let mut tiers = TiersConfig::new();
    tiers.insert(
        "free".to_owned(),
        TierConfig {
            share_weight: 1.0,
            kernels_max: 3,
            gpus_max: 2,
            gpus_per_kernel_max: 1,
            gpu_hours_per_week_max: 120.0,
            lifetime_s_max: 12 * HOUR_S,
            // Short: a kernel is only reclaimed while someone under their share waits and its
            // user is over theirs, after the warning, so a long threshold only keeps idle GPUs
            // from waiting users (see bench/sim.md).
            idle_reclaim_after_s: 120,
        },
    );
    tiers.insert(
        "pro".to_owned(),
        TierConfig {
            share_weight: 2.0,
            kernels_max: 6,
            gpus_max: 4,
            gpus_per_kernel_max: 2,
            gpu_hours_per_week_max: 240.0,
            lifetime_s_max: 24 * HOUR_S,
            idle_reclaim_after_s: 240,
        },
    );
    tiers
}

/// Changes to the commons tiers asked for on the command line.
#[derive(Clone, Copy, Debug, Default)]
pub struct Overrides {
    /// Replaces every tier's `idle_reclaim_after_s` (pro gets twice this) under the Commons
    /// policy.
    pub idle_reclaim_after_s: Option<u64>,
    /// Sets `idle_gpus_count_as_demand` under the Commons policy.
    pub idle_gpus_count_as_demand: Option<bool>,
}

/// The settings a policy runs with in the simulation.
pub fn settings(policy: PolicyKind, overrides: Overrides) -> Settings {
    let mut tiers = commons_tiers();
    let mut config = AllocatorConfig {
        policy,
        queue_requests_max: 100_000,
        ..AllocatorConfig::default()
    };
    if let (PolicyKind::Commons, Some(counts)) = (policy, overrides.idle_gpus_count_as_demand) {
        config.idle_gpus_count_as_demand = counts;
    }
    if let (PolicyKind::Commons, Some(idle_s)) = (policy, overrides.idle_reclaim_after_s) {
        for (name, tier) in tiers.iter_mut() {
            tier.idle_reclaim_after_s = if name == "pro" { 2 * idle_s } else { idle_s };
        }
    }
    match policy {
        PolicyKind::Fifo | PolicyKind::Commons => {}
        PolicyKind::ColabLike => {
            // Colab's published shape: 12 h lifetime, 90 min idle disconnect, a weekly budget.
            for tier in tiers.values_mut() {
                tier.lifetime_s_max = 12 * HOUR_S;
                tier.idle_reclaim_after_s = 90 * 60;
                tier.gpu_hours_per_week_max = 30.0;
            }
        }
        PolicyKind::SlurmFairShare => config.usage_half_life_s = 7 * DAY_S,
    }
    Settings::new(config, &tiers).expect("simulation settings are valid")
}
