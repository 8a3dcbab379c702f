//! Where kernels run. A [`RuntimeBackend`] places one kernel process (a *runtime*) given a
//! [`LaunchSpec`], and hands back a [`Runtime`] handle to signal, kill and watch it.
//!
//! Backends know nothing about users, quotas, policy or HTTP. This crate also discovers
//! kernelspecs on the Jupyter data paths, since which kernels exist is a fact about the machine
//! the runtimes are placed on.

mod kernelspec;
mod local;
mod ports;

use std::collections::BTreeMap;
use std::path::PathBuf;

use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};

pub use kernelspec::{
    find_kernelspecs, jupyter_data_dirs, InterruptMode, KernelSpec, KernelSpecFile,
};
pub use local::LocalBackend;
pub use ports::free_tcp_ports;

/// Everything a backend needs to place one kernel.
#[derive(Debug, Clone)]
pub struct LaunchSpec {
    pub kernel_id: String,
    /// The kernelspec's argv with `{connection_file}` not yet substituted.
    pub argv: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub cwd: PathBuf,
    pub connection: commonlab_protocol::ConnectionInfo,
}

/// What a backend records about a runtime so a restarted server can find it again.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RuntimeRecord {
    pub backend: String,
    pub pid: i32,
    /// Process start time in clock ticks since boot (`/proc/<pid>/stat` field 22), so a reused
    /// pid is never mistaken for the kernel.
    pub start_ticks: u64,
    pub connection_file: PathBuf,
}

/// How a runtime ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExitInfo {
    pub code: Option<i32>,
    pub signal: Option<i32>,
}

impl std::fmt::Display for ExitInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.code, self.signal) {
            (Some(code), _) => write!(f, "exited with status {code}"),
            (None, Some(signal)) => write!(f, "was killed by signal {signal}"),
            (None, None) => write!(f, "ended"),
        }
    }
}

/// Why a runtime could not be placed or controlled.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("could not start `{program}`: {detail}")]
    Spawn { program: String, detail: String },
    #[error("could not write the connection file {path}: {detail}")]
    ConnectionFile { path: String, detail: String },
    #[error("the kernelspec's argv is empty")]
    EmptyArgv,
    #[error("signal failed: {0}")]
    Signal(String),
}

/// A placed kernel process.
pub trait Runtime: Send + Sync {
    fn record(&self) -> RuntimeRecord;
    /// Sends a signal to the kernel (and the processes it started).
    fn signal(&self, signal: i32) -> Result<(), RuntimeError>;
    /// Resolves when the runtime has ended. May be called once.
    fn wait(&self) -> BoxFuture<'static, ExitInfo>;
    /// Kills the kernel and everything it started.
    fn kill(&self) -> Result<(), RuntimeError> {
        self.signal(libc::SIGKILL)
    }
}

/// Places runtimes. One contract test suite runs against every implementation.
pub trait RuntimeBackend: Send + Sync {
    fn name(&self) -> &'static str;
    fn launch(&self, spec: LaunchSpec) -> BoxFuture<'_, Result<Box<dyn Runtime>, RuntimeError>>;
    /// Finds a runtime from a previous server process, if it is still running.
    fn reattach(&self, record: &RuntimeRecord) -> Option<Box<dyn Runtime>>;
}
