//! Pure GPU and kernel allocator for Commonlab.
//!
//! The allocator decides, for every kernel-start request, whether to place it now (and on which
//! GPUs), queue it with a position, or refuse it with a reason; it warns and reclaims idle GPUs
//! when someone under their fair share waits, and stops kernels at their lifetime or weekly
//! GPU quota. It is a sans-IO state machine:
//! [`Allocator::handle`] takes the current time and one [`Event`] and returns the
//! [`Decision`]s the caller must apply, and [`Allocator::next_deadline`] says when the caller
//! should come back with [`Event::Tick`].
//!
//! Architecture invariant: this crate does no IO, reads no clock, spawns nothing and draws no
//! random numbers. It knows nothing about HTTP, kernels' processes, NVML or the store; the
//! supervisor in `manager` feeds it observations and applies its decisions, and the simulator
//! in `sim` drives the same code with a virtual clock.
//!
//! The model, the fair-share formula and the reclaim rules are described in
//! `docs/allocator.md`.

mod allocator;
mod config;
mod decision;
mod event;
mod inventory;
mod share;
mod time;
mod usage;

#[cfg(test)]
mod tests;

pub use crate::allocator::{Allocator, InvariantViolation, KernelView, QueueStatus};
pub use crate::config::{
    AllocatorConfig, ConfigError, PolicyKind, Settings, Tier, TierConfig, TiersConfig,
};
pub use crate::decision::{Decision, ReclaimReason, RefuseReason, StopReason, WarnReason};
pub use crate::event::{Activity, Event, RequestId, StartRequest, TierName, UsageRecord, UserId};
pub use crate::inventory::{Gpu, GpuConfig, GpuId, GpuInventoryConfig, Inventory, InventorySource};
pub use crate::share::{water_fill, water_level, ShareClaim};
pub use crate::time::{Timestamp, DAY_S, HOUR_S, WEEK_S};
