//! Runtime detectors: pure functions over what the supervisor observed in a runtime.
//!
//! Every observation is turned into text with a context and matched by the same rules as
//! code: a process command line is read as a shell command, a file as a path, a connection as
//! `connect tcp HOST:PORT` or `listen tcp :PORT` plus the first bytes it carried, and a
//! resource profile as labels such as `profile:gpu-saturated-unattended`.

use serde::{Deserialize, Serialize};

/// One thing the supervisor observed in a runtime.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Observation {
    /// A running process.
    Process {
        /// The process id, for the record.
        #[serde(default)]
        pid: Option<u32>,
        /// The executable path or name.
        exe: String,
        /// The command line, one argument per item.
        #[serde(default)]
        cmdline: Vec<String>,
        /// The SHA-256 digest of the executable (hex), when known.
        #[serde(default)]
        sha256: Option<String>,
    },
    /// A file present in the workspace.
    File {
        /// The path relative to the workspace root.
        path: String,
        /// The size, when known.
        #[serde(default)]
        size_bytes: Option<u64>,
        /// The SHA-256 digest (hex), when known.
        #[serde(default)]
        sha256: Option<String>,
    },
    /// A network connection or listening socket.
    Connection {
        /// Outbound connection or a listening socket.
        direction: Direction,
        /// `tcp` or `udp`.
        #[serde(default = "default_protocol")]
        protocol: String,
        /// The remote host name, when known (outbound).
        #[serde(default)]
        host: Option<String>,
        /// The remote address (outbound) or the bound address (listen).
        #[serde(default)]
        ip: Option<String>,
        /// The remote port (outbound) or the local port (listen).
        port: u16,
        /// The first bytes sent on the connection, as lossy text, when captured.
        #[serde(default)]
        payload_prefix: Option<String>,
    },
    /// Resource use over a window.
    Resources {
        /// The length of the window.
        window_s: u32,
        /// Mean CPU use over the window, as a percentage of the runtime's CPU limit.
        cpu_percent_mean: f32,
        /// Mean GPU utilisation over the window, when the runtime has a GPU.
        #[serde(default)]
        gpu_percent_mean: Option<f32>,
        /// Seconds since the last `execute_request` at the end of the window.
        since_execute_s: u32,
        /// Whether a kernel reported `busy` at the end of the window.
        #[serde(default)]
        kernel_busy: bool,
    },
}

fn default_protocol() -> String {
    "tcp".to_owned()
}

/// The direction of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Direction {
    /// The runtime connected out.
    Outbound,
    /// The runtime listens for connections from outside.
    Listen,
}

/// Thresholds of the resource-profile detector.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProfileLimits {
    /// Mean use at or above which a resource counts as saturated.
    pub saturated_percent_min: f32,
    /// The shortest window that counts.
    pub window_s_min: u32,
    /// How long without an `execute_request` counts as unattended.
    pub unattended_s_min: u32,
}

impl Default for ProfileLimits {
    fn default() -> ProfileLimits {
        ProfileLimits {
            saturated_percent_min: 90.0,
            window_s_min: 900,
            unattended_s_min: 1800,
        }
    }
}

/// The profile labels of a resource observation.
pub(crate) fn profile_labels(
    window_s: u32,
    cpu: f32,
    gpu: Option<f32>,
    since_execute_s: u32,
    limits: &ProfileLimits,
) -> Vec<&'static str> {
    let mut labels = Vec::new();
    if window_s < limits.window_s_min {
        return labels;
    }
    let unattended = since_execute_s >= limits.unattended_s_min;
    let cpu_saturated = cpu >= limits.saturated_percent_min;
    let gpu_saturated = gpu.is_some_and(|gpu| gpu >= limits.saturated_percent_min);
    if cpu_saturated && unattended {
        labels.push("profile:cpu-saturated-unattended");
    }
    if gpu_saturated && unattended {
        labels.push("profile:gpu-saturated-unattended");
    }
    if gpu_saturated && cpu_saturated && unattended {
        labels.push("profile:all-saturated-unattended");
    }
    labels
}

/// The texts an observation is matched as, each with its scope bits.
pub(crate) fn observation_texts(
    observation: &Observation,
    limits: &ProfileLimits,
) -> Vec<(String, crate::pack::ScopeBits)> {
    use crate::pack::{FILE, NETWORK, PROCESS, PROFILE, SHELL};
    match observation {
        Observation::Process { exe, cmdline, .. } => {
            let mut texts = vec![(exe.clone(), PROCESS | SHELL)];
            if !cmdline.is_empty() {
                texts.push((cmdline.join(" "), PROCESS | SHELL));
            }
            texts
        }
        Observation::File { path, .. } => vec![(path.clone(), FILE)],
        Observation::Connection {
            direction,
            protocol,
            host,
            ip,
            port,
            payload_prefix,
        } => {
            let address = host.as_deref().or(ip.as_deref()).unwrap_or("");
            let mut texts = vec![match direction {
                Direction::Outbound => (format!("connect {protocol} {address}:{port}"), NETWORK),
                Direction::Listen => (format!("listen {protocol} :{port}"), NETWORK),
            }];
            if let Some(payload) = payload_prefix {
                texts.push((payload.clone(), NETWORK));
            }
            texts
        }
        Observation::Resources {
            window_s,
            cpu_percent_mean,
            gpu_percent_mean,
            since_execute_s,
            ..
        } => profile_labels(
            *window_s,
            *cpu_percent_mean,
            *gpu_percent_mean,
            *since_execute_s,
            limits,
        )
        .into_iter()
        .map(|label| (label.to_owned(), PROFILE))
        .collect(),
    }
}

/// A short description of an observation for evidence.
pub(crate) fn describe(observation: &Observation) -> String {
    match observation {
        Observation::Process { pid, exe, .. } => match pid {
            Some(pid) => format!("process {pid} ({exe})"),
            None => format!("process ({exe})"),
        },
        Observation::File { path, .. } => format!("file {path}"),
        Observation::Connection {
            direction: Direction::Outbound,
            port,
            host,
            ip,
            ..
        } => {
            format!(
                "connection to {}:{port}",
                host.as_deref().or(ip.as_deref()).unwrap_or("?")
            )
        }
        Observation::Connection {
            direction: Direction::Listen,
            port,
            ..
        } => format!("listening on port {port}"),
        Observation::Resources { window_s, .. } => format!("resource profile over {window_s} s"),
    }
}
