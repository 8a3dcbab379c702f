//! What the allocator asks the caller to do.

use std::fmt;

use crate::event::RequestId;
use crate::inventory::GpuId;
use crate::time::Timestamp;

/// One action for the caller to apply, in order.
#[derive(Clone, Debug, PartialEq)]
pub enum Decision {
    /// Start the kernel now with exactly these GPUs visible to it.
    Place {
        /// The request.
        request: RequestId,
        /// The GPUs granted, empty for a CPU-only kernel.
        gpus: Vec<GpuId>,
    },
    /// The request waits; tell the user where it stands.
    Queue {
        /// The request.
        request: RequestId,
        /// One-based position in the current order.
        position: u32,
        /// The latest time the current limits guarantee a placement by, when one is known.
        estimate: Option<Timestamp>,
    },
    /// A queued request moved in the queue.
    QueuePositionChanged {
        /// The request.
        request: RequestId,
        /// One-based position in the current order.
        position: u32,
        /// As for [`Decision::Queue`].
        estimate: Option<Timestamp>,
    },
    /// The request is not accepted.
    Refuse {
        /// The request.
        request: RequestId,
        /// Why, with a stable code.
        reason: RefuseReason,
    },
    /// Tell the user that their kernel will lose its GPUs at `at` unless something changes.
    Warn {
        /// The kernel.
        request: RequestId,
        /// When the action can happen.
        at: Timestamp,
        /// Which action.
        reason: WarnReason,
    },
    /// Take the GPUs away from the kernel now; the allocator has forgotten the kernel.
    Reclaim {
        /// The kernel.
        request: RequestId,
        /// The GPUs taken.
        gpus: Vec<GpuId>,
        /// Why.
        reason: ReclaimReason,
    },
    /// Stop the kernel now; the allocator has forgotten it.
    Stop {
        /// The kernel.
        request: RequestId,
        /// Why.
        reason: StopReason,
    },
}

impl Decision {
    /// The request or kernel the decision is about.
    pub fn request(&self) -> RequestId {
        match self {
            Decision::Place { request, .. }
            | Decision::Queue { request, .. }
            | Decision::QueuePositionChanged { request, .. }
            | Decision::Refuse { request, .. }
            | Decision::Warn { request, .. }
            | Decision::Reclaim { request, .. }
            | Decision::Stop { request, .. } => *request,
        }
    }
}

/// Why a request was refused. [`RefuseReason::code`] is stable and doubles as a metric label.
#[derive(Clone, Debug, PartialEq)]
pub enum RefuseReason {
    /// The request names a tier that is not configured.
    UnknownTier,
    /// The id is already queued or placed.
    DuplicateRequest,
    /// More GPUs per kernel than the tier allows.
    GpusPerKernelExceeded {
        /// The tier's limit.
        max: u32,
    },
    /// The user already has the tier's number of kernels, placed or queued.
    KernelsMaxReached {
        /// The tier's limit.
        max: u32,
    },
    /// The user's GPUs, placed or queued, would exceed the tier's limit.
    GpusMaxReached {
        /// The tier's limit.
        max: u32,
    },
    /// The user's GPU hours in the last seven days reached the tier's quota.
    GpuQuotaExhausted {
        /// When enough usage leaves the window for one more GPU-hour, if ever.
        retry_at: Option<Timestamp>,
    },
    /// The queue holds its configured maximum.
    QueueFull {
        /// The limit.
        max: u32,
    },
    /// No GPU is free and the policy does not queue.
    NoGpuAvailable,
    /// The request wants more GPUs than exist.
    NotEnoughGpus {
        /// GPUs in the inventory.
        present: u32,
    },
}

impl RefuseReason {
    /// The stable snake_case code.
    pub fn code(&self) -> &'static str {
        match self {
            RefuseReason::UnknownTier => "unknown_tier",
            RefuseReason::DuplicateRequest => "duplicate_request",
            RefuseReason::GpusPerKernelExceeded { .. } => "gpus_per_kernel_exceeded",
            RefuseReason::KernelsMaxReached { .. } => "kernels_max_reached",
            RefuseReason::GpusMaxReached { .. } => "gpus_max_reached",
            RefuseReason::GpuQuotaExhausted { .. } => "gpu_quota_exhausted",
            RefuseReason::QueueFull { .. } => "queue_full",
            RefuseReason::NoGpuAvailable => "no_gpu_available",
            RefuseReason::NotEnoughGpus { .. } => "not_enough_gpus",
        }
    }

    /// A sentence for the user.
    pub fn message(&self) -> String {
        match self {
            RefuseReason::UnknownTier => "your account's tier is not configured".to_owned(),
            RefuseReason::DuplicateRequest => "this kernel was already requested".to_owned(),
            RefuseReason::GpusPerKernelExceeded { max } => {
                format!("your tier allows at most {max} GPUs per kernel")
            }
            RefuseReason::KernelsMaxReached { max } => {
                format!("your tier allows at most {max} kernels at once")
            }
            RefuseReason::GpusMaxReached { max } => {
                format!("your tier allows at most {max} GPUs at once")
            }
            RefuseReason::GpuQuotaExhausted { retry_at: Some(at) } => {
                format!("you used your weekly GPU hours; more become available at {at}")
            }
            RefuseReason::GpuQuotaExhausted { retry_at: None } => {
                "you used your weekly GPU hours".to_owned()
            }
            RefuseReason::QueueFull { max } => {
                format!("the GPU queue is full ({max} requests); try again later")
            }
            RefuseReason::NoGpuAvailable => "no GPU is available now".to_owned(),
            RefuseReason::NotEnoughGpus { present } => {
                format!("this server has only {present} GPUs")
            }
        }
    }
}

/// What a warning announces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WarnReason {
    /// The idle kernel's GPUs may be reclaimed from `at` on if someone under their share waits.
    IdleReclaim,
    /// The kernel reaches its tier's lifetime at `at`.
    Lifetime,
}

impl WarnReason {
    /// The stable snake_case code.
    pub fn code(self) -> &'static str {
        match self {
            WarnReason::IdleReclaim => "idle_reclaim",
            WarnReason::Lifetime => "lifetime",
        }
    }
}

/// Why GPUs were reclaimed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReclaimReason {
    /// Idle past its threshold and warning, while someone under their share waited.
    IdleContended,
    /// Idle past the tier's threshold; the policy reclaims whether or not anyone waits.
    IdleTimeout,
    /// A granted GPU left the inventory.
    GpuRemoved,
}

impl ReclaimReason {
    /// The stable snake_case code.
    pub fn code(self) -> &'static str {
        match self {
            ReclaimReason::IdleContended => "idle_contended",
            ReclaimReason::IdleTimeout => "idle_timeout",
            ReclaimReason::GpuRemoved => "gpu_removed",
        }
    }
}

/// Why a kernel was stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopReason {
    /// The kernel reached its tier's `lifetime_s_max`.
    LifetimeReached,
    /// The user's GPU hours in the last seven days reached the tier's quota.
    GpuQuotaExhausted,
}

impl StopReason {
    /// The stable snake_case code.
    pub fn code(self) -> &'static str {
        match self {
            StopReason::LifetimeReached => "lifetime_reached",
            StopReason::GpuQuotaExhausted => "gpu_quota_exhausted",
        }
    }
}

fn write_gpus(f: &mut fmt::Formatter<'_>, gpus: &[GpuId]) -> fmt::Result {
    f.write_str("[")?;
    for (idx, gpu) in gpus.iter().enumerate() {
        if idx > 0 {
            f.write_str(",")?;
        }
        write!(f, "{}", gpu.0)?;
    }
    f.write_str("]")
}

fn write_estimate(f: &mut fmt::Formatter<'_>, estimate: Option<Timestamp>) -> fmt::Result {
    match estimate {
        Some(at) => write!(f, " by {at}"),
        None => Ok(()),
    }
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Decision::Place { request, gpus } => {
                write!(f, "place {request} gpus=")?;
                write_gpus(f, gpus)
            }
            Decision::Queue {
                request,
                position,
                estimate,
            } => {
                write!(f, "queue {request} #{position}")?;
                write_estimate(f, *estimate)
            }
            Decision::QueuePositionChanged {
                request,
                position,
                estimate,
            } => {
                write!(f, "moved {request} #{position}")?;
                write_estimate(f, *estimate)
            }
            Decision::Refuse { request, reason } => {
                write!(f, "refuse {request} {}", reason.code())?;
                if let RefuseReason::GpuQuotaExhausted { retry_at: Some(at) } = reason {
                    write!(f, " retry_at={at}")?;
                }
                Ok(())
            }
            Decision::Warn {
                request,
                at,
                reason,
            } => {
                write!(f, "warn {request} {} at={at}", reason.code())
            }
            Decision::Reclaim {
                request,
                gpus,
                reason,
            } => {
                write!(f, "reclaim {request} {} gpus=", reason.code())?;
                write_gpus(f, gpus)
            }
            Decision::Stop { request, reason } => write!(f, "stop {request} {}", reason.code()),
        }
    }
}
