//! Configuration: the `[allocator]` and `[tiers.<name>]` sections as the server's TOML embeds
//! them, and the validated [`Settings`] the allocator runs on.

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;

use crate::event::TierName;
use crate::time::{DAY_S, HOUR_S};

/// Which allocation policy runs. Only [`PolicyKind::Commons`] is meant for production; the
/// others exist so the simulator can compare against them through the same machinery.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PolicyKind {
    /// First come, first served; no limits, no reclaim; the head of the queue blocks.
    Fifo,
    /// Colab-like: no queue (deny when no GPU is free or the quota is out), idle kernels are
    /// stopped after the tier's idle threshold whether or not anyone waits, lifetime enforced.
    ColabLike,
    /// Slurm-style fair share: queue ordered by decayed usage, backfill, lifetime enforced,
    /// no idle reclaim and no quota.
    SlurmFairShare,
    /// Commonlab's policy: fair-share queue, weekly quota, lifetime, and idle reclaim with a
    /// warning only when someone under their share waits.
    #[default]
    Commons,
}

/// How the queue is ordered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum QueueOrder {
    Arrival,
    DecayedUsage,
}

/// What happens to idle kernels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum IdleRule {
    Keep,
    StopAfterThreshold,
    ReclaimWhenContended,
}

/// The behaviours a policy switches on, so one state machine serves all of them.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PolicyTraits {
    pub(crate) order: QueueOrder,
    pub(crate) backfill: bool,
    pub(crate) queue_when_full: bool,
    pub(crate) enforce_caps: bool,
    pub(crate) enforce_quota: bool,
    pub(crate) enforce_lifetime: bool,
    pub(crate) idle: IdleRule,
}

impl PolicyKind {
    pub(crate) fn traits(self) -> PolicyTraits {
        match self {
            PolicyKind::Fifo => PolicyTraits {
                order: QueueOrder::Arrival,
                backfill: false,
                queue_when_full: true,
                enforce_caps: false,
                enforce_quota: false,
                enforce_lifetime: false,
                idle: IdleRule::Keep,
            },
            PolicyKind::ColabLike => PolicyTraits {
                order: QueueOrder::Arrival,
                backfill: true,
                queue_when_full: false,
                enforce_caps: true,
                enforce_quota: true,
                enforce_lifetime: true,
                idle: IdleRule::StopAfterThreshold,
            },
            PolicyKind::SlurmFairShare => PolicyTraits {
                order: QueueOrder::DecayedUsage,
                backfill: true,
                queue_when_full: true,
                enforce_caps: true,
                enforce_quota: false,
                enforce_lifetime: true,
                idle: IdleRule::Keep,
            },
            PolicyKind::Commons => PolicyTraits {
                order: QueueOrder::DecayedUsage,
                backfill: true,
                queue_when_full: true,
                enforce_caps: true,
                enforce_quota: true,
                enforce_lifetime: true,
                idle: IdleRule::ReclaimWhenContended,
            },
        }
    }

    /// The stable snake_case name.
    pub fn name(self) -> &'static str {
        match self {
            PolicyKind::Fifo => "fifo",
            PolicyKind::ColabLike => "colab_like",
            PolicyKind::SlurmFairShare => "slurm_fair_share",
            PolicyKind::Commons => "commons",
        }
    }
}

/// The `[allocator]` section.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AllocatorConfig {
    /// Which policy runs.
    pub policy: PolicyKind,
    /// Half-life of the decayed GPU usage that orders the queue, in seconds.
    pub usage_half_life_s: u64,
    /// Seconds between an idle-reclaim warning and the earliest reclaim.
    pub reclaim_warning_s: u64,
    /// Seconds before a kernel's lifetime ends that its user is warned.
    pub lifetime_warning_s: u64,
    /// The most requests the queue holds; more are refused with `queue_full`.
    pub queue_requests_max: u32,
    /// Position changes are announced only for requests within this many places of the head;
    /// the rest can be asked with `Allocator::queue_status`.
    pub queue_positions_reported_max: u32,
    /// Once the first request in order has waited this many seconds without fitting, smaller
    /// requests behind it are no longer placed ahead of it.
    pub backfill_reserve_after_s: u64,
    /// Whether GPUs of kernels idle past their tier's `idle_reclaim_after_s` count as their
    /// user's demand when fair shares are computed. When `false`, such GPUs are leftovers:
    /// their holder is over their share by them, so they can be reclaimed (after the warning)
    /// for anyone under their share, even from a user holding a single GPU.
    pub idle_gpus_count_as_demand: bool,
}

impl Default for AllocatorConfig {
    fn default() -> AllocatorConfig {
        AllocatorConfig {
            policy: PolicyKind::Commons,
            usage_half_life_s: DAY_S,
            reclaim_warning_s: 60,
            lifetime_warning_s: 600,
            queue_requests_max: 20_000,
            queue_positions_reported_max: 100,
            backfill_reserve_after_s: 900,
            idle_gpus_count_as_demand: true,
        }
    }
}

/// One `[tiers.<name>]` section.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TierConfig {
    /// Fair-share weight: a user's share of contended GPUs is proportional to it.
    pub share_weight: f64,
    /// Kernels a user may have placed or queued at once, CPU-only ones included.
    pub kernels_max: u32,
    /// GPUs a user may hold or have queued at once.
    pub gpus_max: u32,
    /// GPUs one kernel may ask for.
    pub gpus_per_kernel_max: u32,
    /// GPU hours a user may use in any rolling seven days.
    pub gpu_hours_per_week_max: f64,
    /// Seconds a kernel may hold GPUs before it is stopped.
    pub lifetime_s_max: u64,
    /// Seconds a kernel must be idle before its GPUs can be reclaimed (or, for the Colab-like
    /// policy, before it is stopped).
    pub idle_reclaim_after_s: u64,
}

impl Default for TierConfig {
    fn default() -> TierConfig {
        TierConfig {
            share_weight: 1.0,
            kernels_max: 4,
            gpus_max: 1,
            gpus_per_kernel_max: 1,
            gpu_hours_per_week_max: 40.0,
            lifetime_s_max: 12 * HOUR_S,
            idle_reclaim_after_s: 1_800,
        }
    }
}

/// The `[tiers]` table: tier name to its limits.
pub type TiersConfig = BTreeMap<String, TierConfig>;

/// A validated tier.
#[derive(Clone, Debug, PartialEq)]
pub struct Tier {
    /// Its name.
    pub name: TierName,
    /// Fair-share weight, positive and finite.
    pub share_weight: f64,
    /// See [`TierConfig::kernels_max`].
    pub kernels_max: u32,
    /// See [`TierConfig::gpus_max`].
    pub gpus_max: u32,
    /// See [`TierConfig::gpus_per_kernel_max`].
    pub gpus_per_kernel_max: u32,
    /// The weekly quota in GPU-seconds.
    pub gpu_seconds_per_week_max: f64,
    /// See [`TierConfig::lifetime_s_max`].
    pub lifetime_s_max: u64,
    /// See [`TierConfig::idle_reclaim_after_s`].
    pub idle_reclaim_after_s: u64,
}

/// Validated settings: what [`crate::Allocator::new`] takes.
#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    /// The allocator section as configured.
    pub allocator: AllocatorConfig,
    /// Tiers by name.
    pub tiers: BTreeMap<TierName, Tier>,
}

impl Settings {
    /// Checks the config and turns it into settings.
    pub fn new(allocator: AllocatorConfig, tiers: &TiersConfig) -> Result<Settings, ConfigError> {
        if allocator.usage_half_life_s == 0 {
            return Err(ConfigError::Invalid {
                key: "allocator.usage_half_life_s".to_owned(),
                why: "must be positive",
            });
        }
        if allocator.queue_requests_max == 0 {
            return Err(ConfigError::Invalid {
                key: "allocator.queue_requests_max".to_owned(),
                why: "must be positive",
            });
        }
        if tiers.is_empty() {
            return Err(ConfigError::NoTiers);
        }
        let mut validated = BTreeMap::new();
        for (name, tier) in tiers {
            let key = |field: &str| format!("tiers.{name}.{field}");
            if !(tier.share_weight.is_finite() && tier.share_weight > 0.0) {
                return Err(ConfigError::Invalid {
                    key: key("share_weight"),
                    why: "must be a positive number",
                });
            }
            if tier.gpu_hours_per_week_max.is_nan() || tier.gpu_hours_per_week_max < 0.0 {
                return Err(ConfigError::Invalid {
                    key: key("gpu_hours_per_week_max"),
                    why: "must not be negative",
                });
            }
            if tier.kernels_max == 0 {
                return Err(ConfigError::Invalid {
                    key: key("kernels_max"),
                    why: "must be positive",
                });
            }
            if tier.lifetime_s_max == 0 {
                return Err(ConfigError::Invalid {
                    key: key("lifetime_s_max"),
                    why: "must be positive",
                });
            }
            let tier_name = TierName::new(name);
            validated.insert(
                tier_name.clone(),
                Tier {
                    name: tier_name,
                    share_weight: tier.share_weight,
                    kernels_max: tier.kernels_max,
                    gpus_max: tier.gpus_max,
                    gpus_per_kernel_max: tier.gpus_per_kernel_max,
                    gpu_seconds_per_week_max: tier.gpu_hours_per_week_max * HOUR_S as f64,
                    lifetime_s_max: tier.lifetime_s_max,
                    idle_reclaim_after_s: tier.idle_reclaim_after_s,
                },
            );
        }
        Ok(Settings {
            allocator,
            tiers: validated,
        })
    }
}

/// A configuration that cannot run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConfigError {
    /// A value is out of range.
    Invalid {
        /// The dotted key.
        key: String,
        /// What is wrong.
        why: &'static str,
    },
    /// No tier is configured.
    NoTiers,
    /// Two GPUs share an index.
    DuplicateGpuIndex {
        /// The index.
        index: u32,
    },
    /// Two GPUs share a UUID.
    DuplicateGpuUuid {
        /// The UUID.
        uuid: String,
    },
    /// A GPU has no UUID.
    EmptyGpuUuid {
        /// Its index.
        index: u32,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Invalid { key, why } => write!(f, "{key} {why}"),
            ConfigError::NoTiers => f.write_str("no tier is configured under [tiers]"),
            ConfigError::DuplicateGpuIndex { index } => {
                write!(f, "two GPUs have index {index}")
            }
            ConfigError::DuplicateGpuUuid { uuid } => write!(f, "two GPUs have uuid {uuid}"),
            ConfigError::EmptyGpuUuid { index } => write!(f, "GPU {index} has an empty uuid"),
        }
    }
}

impl std::error::Error for ConfigError {}
