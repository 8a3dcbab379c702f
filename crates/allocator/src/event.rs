//! What the caller tells the allocator: requests, exits, activity, ticks and capacity changes.

use std::fmt;
use std::sync::Arc;

use crate::inventory::Gpu;
use crate::time::Timestamp;

/// Identifies one kernel-start request and, once placed, the kernel it became.
///
/// The caller chooses the ids; they must be unique for the allocator's lifetime.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RequestId(pub u64);

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "r{}", self.0)
    }
}

/// A user's name, as the store knows it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UserId(Arc<str>);

impl UserId {
    /// A user id from its name.
    pub fn new(name: &str) -> UserId {
        UserId(Arc::from(name))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A tier's name as configured under `[tiers.<name>]`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TierName(Arc<str>);

impl TierName {
    /// A tier name.
    pub fn new(name: &str) -> TierName {
        TierName(Arc::from(name))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TierName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A request to start a kernel.
#[derive(Clone, Debug, PartialEq)]
pub struct StartRequest {
    /// The caller's id for this request and the kernel it becomes.
    pub request: RequestId,
    /// Who asks.
    pub user: UserId,
    /// The user's tier now; limits are those of this tier.
    pub tier: TierName,
    /// Whole GPUs wanted; zero for a CPU-only kernel.
    pub gpus: u32,
}

/// Whether a placed kernel is executing or waiting for its user.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activity {
    /// The kernel is executing (its status is `busy`, or its GPU is in use).
    Busy,
    /// The kernel is idle.
    Idle,
}

/// GPU time a user consumed before the allocator started, read from the usage ledger.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct UsageRecord {
    /// When the GPUs were granted.
    pub start: Timestamp,
    /// When they were given back.
    pub end: Timestamp,
    /// How many GPUs were held.
    pub gpus: u32,
}

/// One observation or request handed to [`crate::Allocator::handle`].
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// A user asks for a kernel.
    StartRequested(StartRequest),
    /// The kernel ended, or the user withdrew a queued request. Unknown ids are ignored.
    Exited {
        /// The request or kernel.
        request: RequestId,
    },
    /// A placed kernel became busy or idle.
    Activity {
        /// The kernel.
        request: RequestId,
        /// Its new state.
        activity: Activity,
    },
    /// Nothing happened; time passed. Send one at [`crate::Allocator::next_deadline`].
    Tick,
    /// The GPUs present changed (a device failed, was added, or NVML was re-read).
    InventoryChanged {
        /// The complete new list.
        gpus: Vec<Gpu>,
    },
    /// Usage from the ledger, replayed at start so that quotas and fair share survive
    /// restarts.
    UsageLoaded {
        /// Whose usage.
        user: UserId,
        /// The user's tier, for the share weight.
        tier: TierName,
        /// Closed intervals of GPU use.
        records: Vec<UsageRecord>,
    },
}
