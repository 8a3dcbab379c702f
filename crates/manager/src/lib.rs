//! The application: kernels, sessions, and the relay between each kernel and its WebSocket
//! clients. Handlers at the edge call one method here and render the result.
//!
//! The manager knows nothing of HTTP. It owns every task it starts (per-kernel routers and
//! watchers) and stops them on shutdown. Durable facts go to the store first; memory is a cache
//! rebuilt from it when the server starts.

mod contents;
mod error;
mod gate;
mod gpu;
mod hub;
mod kernel;
mod kernels;
mod python;
mod screen;
mod sessions;
mod usage;

pub use commonlab_runtime::KernelSpec;
pub use contents::{
    CheckpointModel, ContentsConfig, ContentsManager, ContentsModel, ContentsRequest, GetOptions,
};
pub use error::{ErrorKind, ManagerError};
pub use gate::PolicyGate;
pub use gpu::{
    AllocatorConfig, GpuDevice, GpuScheduler, GpuSchedulerConfig, PolicyKind, TierConfig,
    TiersConfig,
};
pub use hub::{ClientHandle, Outgoing, WireProtocol};
pub use kernel::{Kernel, KernelModel};
pub use kernels::{
    gpus_wanted, KernelManager, KernelManagerConfig, KernelSpecView, GPU_KERNEL_NAME,
};
pub use python::{find_python, PythonEnv, PythonSetup};
pub use sessions::{SessionManager, SessionModel, SessionRequest};
pub use usage::{
    day_of, quota_left, record_gpu_usage, usage_report, TierQuota, UsageReport, QUOTA_WINDOW_DAYS,
    USAGE_REPORT_DAYS,
};

/// The current time as Jupyter writes it: ISO 8601 in UTC with microseconds and `Z`.
pub fn iso_now() -> String {
    chrono::Utc::now()
        .format("%Y-%m-%dT%H:%M:%S%.6fZ")
        .to_string()
}
