//! Where kernels run. A [`RuntimeBackend`] places one kernel process (a *runtime*) given a
//! [`LaunchSpec`], and hands back a [`Runtime`] handle to signal, kill and watch it.
//!
//! Backends know nothing about users, quotas, policy or HTTP: a sandboxed launch is given an
//! unprivileged identity, limits and a workspace, not an account. This crate also discovers
//! kernelspecs on the Jupyter data paths, since which kernels exist is a fact about the machine
//! the runtimes are placed on.
//!
//! Two backends: [`LocalBackend`] (a plain child process) and [`SandboxBackend`] (bubblewrap
//! namespaces, cgroup limits, an unprivileged uid). Both give each kernel `ipc` sockets in a
//! private directory of its own, which the kernel binds itself, so concurrent starts never
//! contend for ports.

mod kernelspec;
mod local;
mod sandbox;

use std::collections::BTreeMap;
use std::path::PathBuf;

use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};

pub use kernelspec::{
    find_kernelspecs, jupyter_data_dirs, InterruptMode, KernelSpec, KernelSpecFile,
};
pub use local::LocalBackend;
pub use sandbox::{
    list_processes, sandbox_exec_main, CgroupVersion, KernelCgroup, ProcessInfo, SandboxBackend,
    SandboxConfig, SandboxIdentity, SandboxLimits, SandboxRecord, SandboxSpec,
};

/// The longest `sun_path` of a Unix socket, less its terminating zero.
pub(crate) const SOCKET_PATH_MAX: usize = 107;

/// A connection over `ipc` sockets `kernel-1` … `kernel-5` in a fresh, randomly named directory
/// `k-<hex>` under `runtime_dir` (made by the backend at launch), signed with `key`.
pub(crate) fn ipc_connection(
    runtime_dir: &std::path::Path,
    key: &str,
) -> Result<commonlab_protocol::ConnectionInfo, RuntimeError> {
    let dir = runtime_dir.join(format!("k-{:016x}", rand::random::<u64>()));
    let ip = dir.join("kernel").display().to_string();
    if ip.len() + "-5".len() > SOCKET_PATH_MAX {
        return Err(RuntimeError::Connection(format!(
            "socket paths under {} are longer than {SOCKET_PATH_MAX} bytes; use a shorter data directory",
            runtime_dir.display()
        )));
    }
    Ok(commonlab_protocol::ConnectionInfo {
        transport: commonlab_protocol::Transport::Ipc,
        ip,
        shell_port: 1,
        iopub_port: 2,
        stdin_port: 3,
        control_port: 4,
        hb_port: 5,
        key: key.to_owned(),
        signature_scheme: "hmac-sha256".into(),
        kernel_name: None,
    })
}

/// Everything a backend needs to place one kernel.
#[derive(Debug, Clone)]
pub struct LaunchSpec {
    pub kernel_id: String,
    /// The kernelspec's argv with `{connection_file}` not yet substituted.
    pub argv: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub cwd: PathBuf,
    /// From [`RuntimeBackend::connection_for`].
    pub connection: commonlab_protocol::ConnectionInfo,
    /// Who the kernel runs as and within which limits; required by [`SandboxBackend`], refused
    /// by [`LocalBackend`] (which cannot honour it).
    pub sandbox: Option<SandboxSpec>,
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
    /// Where a sandboxed runtime's cgroups and socket directory are; `None` for local runtimes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<SandboxRecord>,
}

/// How a runtime ended.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ExitInfo {
    pub code: Option<i32>,
    pub signal: Option<i32>,
    /// Set when the runtime's memory cgroup hit its limit and the kernel was killed for it.
    pub oom: Option<OomInfo>,
}

/// The memory limit a runtime reached, and how much it used at most.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OomInfo {
    pub limit_bytes: u64,
    /// The highest memory use the cgroup recorded, when the kernel reports it.
    pub peak_bytes: Option<u64>,
    /// The limit reached was the total the runtime shares with the other runtimes of its
    /// identity (`memory_bytes_max_total`), not its own.
    pub shared: bool,
}

impl OomInfo {
    /// One sentence for the user: which limit, and how much was used.
    pub fn explain(&self) -> String {
        let limit = human_bytes(self.limit_bytes);
        if self.shared {
            let peak = self
                .peak_bytes
                .map(|peak| format!(" (this kernel's peak {})", human_bytes(peak)))
                .unwrap_or_default();
            return format!("The kernel was stopped because your kernels together used the whole memory limit of {limit} they share{peak}. Stop kernels you no longer need.");
        }
        match self.peak_bytes {
            Some(peak) => format!(
                "The kernel was stopped because it used its whole memory limit of {limit} (peak {}).",
                human_bytes(peak)
            ),
            None => {
                format!("The kernel was stopped because it used its whole memory limit of {limit}.")
            }
        }
    }
}

/// Bytes in binary units with at most one decimal: `512 MiB`, `1.5 GiB`.
fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 || value.fract() < 0.05 || value.fract() > 0.95 {
        format!("{} {}", value.round(), UNITS[unit])
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

impl std::fmt::Display for ExitInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.code, self.signal) {
            (Some(code), _) => write!(f, "exited with status {code}"),
            (None, Some(signal)) => write!(f, "was killed by signal {signal}"),
            (None, None) => write!(f, "ended"),
        }?;
        if let Some(oom) = &self.oom {
            write!(
                f,
                " after reaching its memory limit of {} bytes",
                oom.limit_bytes
            )?;
        }
        Ok(())
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
    #[error("could not pick the kernel's channels: {0}")]
    Connection(String),
    /// The sandbox could not be set up; the message names what must change (a path the kernel's
    /// uid cannot read, a missing cgroup controller, bubblewrap not installed).
    #[error("sandbox: {0}")]
    Sandbox(String),
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
    /// The processes of the runtime now, for the supervisor's observations; empty where the
    /// backend cannot tell.
    fn processes(&self) -> Vec<ProcessInfo> {
        Vec::new()
    }
}

/// Places runtimes. One contract test suite runs against every implementation.
pub trait RuntimeBackend: Send + Sync {
    fn name(&self) -> &'static str;
    /// The connection info a kernel launched by this backend must use, with `key` to sign
    /// messages: `ipc` sockets in a fresh per-kernel directory, which `launch` creates.
    fn connection_for(
        &self,
        kernel_id: &str,
        key: &str,
    ) -> Result<commonlab_protocol::ConnectionInfo, RuntimeError>;
    fn launch(&self, spec: LaunchSpec) -> BoxFuture<'_, Result<Box<dyn Runtime>, RuntimeError>>;
    /// Finds a runtime from a previous server process, if it is still running.
    fn reattach(&self, record: &RuntimeRecord) -> Option<Box<dyn Runtime>>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oom_explanation_names_the_limit_and_the_peak() {
        let oom = OomInfo {
            limit_bytes: 512 * 1024 * 1024,
            peak_bytes: Some(512 * 1024 * 1024),
            shared: false,
        };
        assert_eq!(
            oom.explain(),
            "The kernel was stopped because it used its whole memory limit of 512 MiB (peak 512 MiB)."
        );
        let shared = OomInfo {
            peak_bytes: Some(300 * 1024 * 1024),
            shared: true,
            ..oom
        };
        assert_eq!(
            shared.explain(),
            "The kernel was stopped because your kernels together used the whole memory limit of 512 MiB they share (this kernel's peak 300 MiB). Stop kernels you no longer need."
        );
        assert_eq!(human_bytes(1536 * 1024 * 1024), "1.5 GiB");
        assert_eq!(human_bytes(100), "100 B");
    }
}
