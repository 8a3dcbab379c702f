//! Typed configuration: defaults in code, then a TOML file, then `COMMONLAB_SECTION__KEY`
//! environment variables, then command-line flags. Unknown keys are errors.

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};

/// The whole configuration file.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct Config {
    pub(crate) server: ServerConfig,
    pub(crate) kernel: KernelConfig,
    pub(crate) contents: ContentsConfig,
    /// `[policy]`: rule packs, overrides, shadow mode and the appeal link.
    pub(crate) policy: commonlab_policy::PolicyConfig,
    pub(crate) accounts: AccountsConfig,
    pub(crate) sandbox: SandboxConfig,
    pub(crate) gpu: GpuConfig,
}

/// Where the GPU list comes from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum GpuSource {
    /// The driver's GPUs (`nvidia-smi`) when it answers, else `devices`.
    #[default]
    Auto,
    /// The driver's GPUs only; the server does not start without them.
    Nvml,
    /// `devices` only: a fake inventory on a machine without GPUs, for tests and trials.
    Config,
}

/// `[gpu]`: the GPUs, and how they are shared (the allocator and its tiers).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct GpuConfig {
    pub(crate) source: GpuSource,
    /// Device nodes every GPU kernel needs besides its GPUs' own; missing ones are skipped.
    pub(crate) shared_device_nodes: Vec<PathBuf>,
    /// The configured inventory (`[[gpu.devices]]`), used when the source is `config`, or
    /// `auto` without a driver. On a machine without GPUs it is a fake inventory.
    pub(crate) devices: Vec<GpuDeviceConfig>,
    /// `[gpu.allocator]`: policy, warnings, queue bounds (see docs/allocator.md).
    #[serde(serialize_with = "serialize_allocator")]
    pub(crate) allocator: commonlab_manager::AllocatorConfig,
    /// `[gpu.tiers.<name>]`: share weight, caps, quota, lifetime and idle threshold per tier;
    /// the names are the users' tiers.
    #[serde(serialize_with = "serialize_tiers")]
    pub(crate) tiers: commonlab_manager::TiersConfig,
}

/// One configured GPU.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct GpuDeviceConfig {
    /// The driver's index (what `CUDA_VISIBLE_DEVICES` names).
    pub(crate) id: u32,
    pub(crate) name: String,
    #[serde(default)]
    pub(crate) memory_bytes: u64,
    /// Its device node, bound into a sandboxed kernel only while it holds the GPU.
    #[serde(default)]
    pub(crate) device_node: Option<PathBuf>,
}

impl Default for GpuConfig {
    fn default() -> Self {
        let pro = commonlab_manager::TierConfig {
            share_weight: 2.0,
            kernels_max: 8,
            gpus_max: 2,
            gpus_per_kernel_max: 2,
            gpu_hours_per_week_max: 100.0,
            lifetime_s_max: 24 * 3600,
            idle_reclaim_after_s: 3600,
        };
        GpuConfig {
            source: GpuSource::Auto,
            shared_device_nodes: ["/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools"]
                .map(PathBuf::from)
                .to_vec(),
            devices: Vec::new(),
            allocator: Default::default(),
            tiers: [
                ("free".to_owned(), commonlab_manager::TierConfig::default()),
                ("pro".to_owned(), pro),
            ]
            .into(),
        }
    }
}

/// The allocator's own config type reads `[gpu.allocator]`; this writes it back out.
fn serialize_allocator<S: serde::Serializer>(
    config: &commonlab_manager::AllocatorConfig,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    #[derive(Serialize)]
    struct View {
        policy: &'static str,
        usage_half_life_s: u64,
        reclaim_warning_s: u64,
        lifetime_warning_s: u64,
        queue_requests_max: u32,
        queue_positions_reported_max: u32,
        backfill_reserve_after_s: u64,
        idle_gpus_count_as_demand: bool,
    }
    View {
        policy: config.policy.name(),
        usage_half_life_s: config.usage_half_life_s,
        reclaim_warning_s: config.reclaim_warning_s,
        lifetime_warning_s: config.lifetime_warning_s,
        queue_requests_max: config.queue_requests_max,
        queue_positions_reported_max: config.queue_positions_reported_max,
        backfill_reserve_after_s: config.backfill_reserve_after_s,
        idle_gpus_count_as_demand: config.idle_gpus_count_as_demand,
    }
    .serialize(serializer)
}

/// The allocator's own config type reads `[gpu.tiers.<name>]`; this writes it back out.
fn serialize_tiers<S: serde::Serializer>(
    tiers: &commonlab_manager::TiersConfig,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    #[derive(Serialize)]
    struct View {
        share_weight: f64,
        kernels_max: u32,
        gpus_max: u32,
        gpus_per_kernel_max: u32,
        gpu_hours_per_week_max: f64,
        lifetime_s_max: u64,
        idle_reclaim_after_s: u64,
    }
    let views: std::collections::BTreeMap<&String, View> = tiers
        .iter()
        .map(|(name, tier)| {
            (
                name,
                View {
                    share_weight: tier.share_weight,
                    kernels_max: tier.kernels_max,
                    gpus_max: tier.gpus_max,
                    gpus_per_kernel_max: tier.gpus_per_kernel_max,
                    gpu_hours_per_week_max: tier.gpu_hours_per_week_max,
                    lifetime_s_max: tier.lifetime_s_max,
                    idle_reclaim_after_s: tier.idle_reclaim_after_s,
                },
            )
        })
        .collect();
    views.serialize(serializer)
}

/// `[sandbox]`: how each user's kernels are confined in accounts mode.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct SandboxConfig {
    /// Run every user's kernel under bubblewrap as the user's own unprivileged uid, with cgroup
    /// limits. Needs root. Off: kernels run as the server's user, unconfined (trusted users
    /// only).
    pub(crate) enabled: bool,
    /// The bubblewrap binary.
    pub(crate) bwrap: PathBuf,
    /// Directories made visible read-only inside, besides the system and the Python environment.
    pub(crate) read_only_dirs: Vec<PathBuf>,
    /// Network access from inside (for package installs), through slirp4netns with the host's
    /// loopback unreachable. Off: the kernel has loopback only.
    pub(crate) egress: bool,
    /// Limits by tier name; a user whose tier is not listed gets `free`'s.
    pub(crate) tiers: std::collections::BTreeMap<String, TierLimits>,
}

/// One tier's sandbox limits.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TierLimits {
    /// Memory, including the private /tmp, with no swap.
    pub(crate) memory_bytes_max: u64,
    /// CPU in thousandths of a CPU (`1500`: one and a half); 0 for no quota.
    pub(crate) cpu_millicores_max: u32,
    /// Processes and threads.
    pub(crate) pids_max: u64,
    /// Size of the private /tmp.
    pub(crate) tmp_bytes_max: u64,
    /// Largest single file a kernel may write.
    pub(crate) file_bytes_max: u64,
    /// Open files per process.
    pub(crate) open_files_max: u64,
    /// Size of the user's workspace: a filesystem image of this size is mounted as their
    /// workspace, so a full disk is theirs alone. 0: no separate volume (the workspace shares
    /// the data directory's filesystem).
    pub(crate) workspace_bytes_max: u64,
    /// Memory all of one user's kernels hold together; 0 for no total. Absent:
    /// `memory_bytes_max`, so the tier's memory is the user's, however many kernels they start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) memory_bytes_max_total: Option<u64>,
    /// CPU all of one user's kernels use together, in thousandths of a CPU; 0 for no quota.
    /// Absent: `cpu_millicores_max`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) cpu_millicores_max_total: Option<u32>,
}

impl TierLimits {
    pub(crate) fn to_limits(&self) -> commonlab_runtime::SandboxLimits {
        let cpu_total = self
            .cpu_millicores_max_total
            .unwrap_or(self.cpu_millicores_max);
        commonlab_runtime::SandboxLimits {
            memory_bytes_max: self.memory_bytes_max,
            cpu_millicores_max: (self.cpu_millicores_max > 0).then_some(self.cpu_millicores_max),
            pids_max: self.pids_max,
            tmp_bytes_max: self.tmp_bytes_max,
            file_bytes_max: self.file_bytes_max,
            open_files_max: self.open_files_max,
            memory_bytes_max_total: match self.memory_bytes_max_total {
                Some(0) => None,
                total => Some(total.unwrap_or(self.memory_bytes_max)),
            },
            cpu_millicores_max_total: (cpu_total > 0).then_some(cpu_total),
        }
    }
}

impl Default for SandboxConfig {
    fn default() -> Self {
        let free = TierLimits {
            memory_bytes_max: 2 << 30,
            cpu_millicores_max: 1000,
            pids_max: 256,
            tmp_bytes_max: 256 << 20,
            file_bytes_max: 1 << 30,
            open_files_max: 1024,
            workspace_bytes_max: 10 << 30,
            memory_bytes_max_total: Some(4 << 30),
            cpu_millicores_max_total: Some(2000),
        };
        let pro = TierLimits {
            memory_bytes_max: 8 << 30,
            cpu_millicores_max: 4000,
            pids_max: 1024,
            tmp_bytes_max: 2 << 30,
            file_bytes_max: 8 << 30,
            open_files_max: 4096,
            workspace_bytes_max: 50 << 30,
            memory_bytes_max_total: Some(16 << 30),
            cpu_millicores_max_total: Some(8000),
        };
        SandboxConfig {
            enabled: true,
            bwrap: PathBuf::from("/usr/bin/bwrap"),
            read_only_dirs: Vec::new(),
            egress: false,
            tiers: [("free".to_owned(), free), ("pro".to_owned(), pro)].into(),
        }
    }
}

/// `[accounts]`: many users behind one server, each logging in to their own workspace and
/// kernels at `/user/<name>/`. Off, the server has one user, authenticated by its token.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct AccountsConfig {
    pub(crate) enabled: bool,
    /// Where each user's workspace is created, as `<workspaces_dir>/<name>`. Default:
    /// `<data_dir>/workspaces`.
    pub(crate) workspaces_dir: Option<PathBuf>,
    /// Mark login cookies `Secure`; set it when users reach the server over HTTPS.
    pub(crate) cookie_secure: bool,
    /// How long a browser login lasts.
    pub(crate) login_session_ttl_s: u64,
    /// Failed logins for one name, within the window, before further attempts wait.
    pub(crate) login_failures_max: u32,
    pub(crate) login_failure_window_s: u64,
    /// How long a `restrict` policy action keeps an account from starting kernels.
    pub(crate) restriction_s: u64,
    /// Users' host uids are `uid_base` + their id, below `uid_base + uid_count`. Servers sharing a
    /// host need ranges that do not overlap; a server refuses to start on a range another one
    /// holds (see `uid_claims_dir`), or when its users' uids lie outside its range.
    pub(crate) uid_base: u32,
    pub(crate) uid_count: u32,
    /// Where each running server records, and locks, the uid range it uses, so that a second
    /// server on the same host cannot take an overlapping one.
    pub(crate) uid_claims_dir: PathBuf,
}

impl AccountsConfig {
    pub(crate) fn uid_range(&self) -> commonlab_store::UidRange {
        commonlab_store::UidRange {
            base: self.uid_base,
            count: self.uid_count,
        }
    }
}

impl Default for AccountsConfig {
    fn default() -> Self {
        AccountsConfig {
            enabled: false,
            workspaces_dir: None,
            cookie_secure: false,
            login_session_ttl_s: 7 * 24 * 3600,
            login_failures_max: 10,
            login_failure_window_s: 15 * 60,
            restriction_s: 24 * 3600,
            uid_base: commonlab_store::USER_UID_BASE,
            uid_count: 65_536,
            uid_claims_dir: PathBuf::from("/run/commonlab"),
        }
    }
}

/// `[server]`: where and how the server listens.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct ServerConfig {
    /// Address to listen on.
    pub(crate) ip: String,
    /// Port to listen on; 0 picks a free one.
    pub(crate) port: u16,
    /// API token. Empty: generate one on first start and keep it in the data directory.
    pub(crate) token: String,
    /// URL prefix everything is served under.
    pub(crate) base_url: String,
    /// Where the server keeps its database, token and runtime files.
    pub(crate) data_dir: Option<PathBuf>,
    /// The directory notebooks and kernels start in.
    pub(crate) root_dir: Option<PathBuf>,
    /// Largest request body accepted.
    pub(crate) request_body_bytes_max: usize,
    /// Largest WebSocket message accepted from a client.
    pub(crate) ws_message_bytes_max: usize,
    /// The tier whose policy actions apply to this server's user (e.g. `free` or `pro`).
    pub(crate) user_tier: String,
    /// Threads serving HTTP, WebSockets and kernel channels: 0 for one per core, 1 for a single
    /// thread (everything on one event loop, as jupyter_server runs).
    pub(crate) worker_threads: usize,
    /// Time a client has to send a request's headers, counted from when the server waits for
    /// them (a new connection, or the end of the previous response on a kept-alive one);
    /// then the connection is closed.
    pub(crate) header_read_timeout_s: u64,
    /// Time a client has to send a request body, plus one second for every
    /// `body_read_rate_bytes_per_s_min` bytes received; a late body is answered 408.
    pub(crate) body_read_timeout_s: u64,
    /// The slowest body upload that is never cut: each this many bytes received add a second
    /// to `body_read_timeout_s`. 0: the body has `body_read_timeout_s` whatever its size.
    pub(crate) body_read_rate_bytes_per_s_min: u64,
    /// Connections open at once that have not yet sent a request with a valid credential; a
    /// new one beyond this closes the oldest. Authenticated connections do not count.
    pub(crate) unauthenticated_connections_max: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            ip: "127.0.0.1".into(),
            port: 8888,
            token: String::new(),
            base_url: "/".into(),
            data_dir: None,
            root_dir: None,
            request_body_bytes_max: 100 * 1024 * 1024,
            ws_message_bytes_max: 64 * 1024 * 1024,
            user_tier: "free".into(),
            worker_threads: 0,
            header_read_timeout_s: 30,
            body_read_timeout_s: 60,
            body_read_rate_bytes_per_s_min: 1024,
            unauthenticated_connections_max: 1024,
        }
    }
}

/// `[kernel]`: how kernels are found, started and relayed.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct KernelConfig {
    /// A Python interpreter with ipykernel. Empty: search, then set up a managed environment.
    pub(crate) python: Option<PathBuf>,
    /// Extra directories holding `kernels/<name>/kernel.json`, searched first.
    pub(crate) kernelspec_dirs: Vec<PathBuf>,
    /// The kernelspec used when a request names none.
    pub(crate) default_name: String,
    pub(crate) start_timeout_s: u64,
    pub(crate) shutdown_wait_s: u64,
    /// Bytes queued for one WebSocket client before it is disconnected as too slow.
    pub(crate) ws_send_queue_bytes_max: usize,
    /// Bytes kept for a session whose client is disconnected, delivered when it reconnects.
    pub(crate) ws_buffer_bytes_max: usize,
    /// Messages kept for a session whose client is disconnected.
    pub(crate) ws_buffer_messages_max: usize,
    /// How often what runs in each kernel is observed and judged by the policy.
    pub(crate) supervise_interval_s: u64,
}

impl Default for KernelConfig {
    fn default() -> Self {
        KernelConfig {
            python: None,
            kernelspec_dirs: Vec::new(),
            default_name: "python3".into(),
            start_timeout_s: 60,
            shutdown_wait_s: 5,
            ws_send_queue_bytes_max: 256 * 1024 * 1024,
            ws_buffer_bytes_max: 64 * 1024 * 1024,
            ws_buffer_messages_max: 10_000,
            supervise_interval_s: 5,
        }
    }
}

/// `[contents]`: the files and notebooks under the root directory.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct ContentsConfig {
    /// Largest file one save or one chunked upload may write.
    pub(crate) upload_bytes_max: u64,
}

impl Default for ContentsConfig {
    fn default() -> Self {
        ContentsConfig {
            upload_bytes_max: 512 * 1024 * 1024,
        }
    }
}

/// Reads the file (if any) and the environment into a validated [`Config`].
pub(crate) fn load(
    file: Option<&Path>,
    env: impl Iterator<Item = (String, String)>,
) -> anyhow::Result<Config> {
    let mut table = match file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("could not read config file {}", path.display()))?;
            text.parse::<toml::Table>()
                .with_context(|| format!("config file {} is not valid TOML", path.display()))?
        }
        None => toml::Table::new(),
    };
    for (name, value) in env {
        let Some(rest) = name.strip_prefix("COMMONLAB_") else {
            continue;
        };
        let Some((section, key)) = rest.split_once("__") else {
            continue;
        };
        let section = section.to_lowercase();
        let key = key.to_lowercase();
        let parsed = format!("v = {value}")
            .parse::<toml::Table>()
            .ok()
            .and_then(|mut t| t.remove("v"))
            .unwrap_or(toml::Value::String(value));
        let entry = table
            .entry(section.clone())
            .or_insert_with(|| toml::Value::Table(Default::default()));
        let toml::Value::Table(section_table) = entry else {
            anyhow::bail!(
                "environment variable {name} sets a key in `{section}`, which is not a section"
            );
        };
        section_table.insert(key, parsed);
    }
    let source = file
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "environment".into());
    let config: Config = toml::Value::Table(table)
        .try_into()
        .map_err(|e: toml::de::Error| {
            anyhow::anyhow!("invalid configuration ({source}): {}", e.message())
        })?;
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> impl Iterator<Item = (String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<Vec<_>>()
            .into_iter()
    }

    #[test]
    fn environment_overrides_file_and_is_typed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "[server]\nport = 9000\nip = \"0.0.0.0\"\n").unwrap();
        let config = load(
            Some(&path),
            env(&[
                ("COMMONLAB_SERVER__PORT", "9100"),
                ("COMMONLAB_TEST_REQUIRE", "x"),
            ]),
        )
        .unwrap();
        assert_eq!(config.server.port, 9100);
        assert_eq!(config.server.ip, "0.0.0.0");
        assert_eq!(config.kernel.default_name, "python3");
    }

    #[test]
    fn unknown_keys_are_rejected_with_their_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "[server]\nprot = 9000\n").unwrap();
        let err = load(Some(&path), env(&[])).unwrap_err().to_string();
        assert!(err.contains("unknown field `prot`"), "{err}");
        let err = load(None, env(&[("COMMONLAB_KERNEL__NOPE", "1")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field `nope`"), "{err}");
    }

    #[test]
    fn docs_config_md_shows_the_current_defaults() {
        let defaults = toml::to_string_pretty(&Config::default()).unwrap();
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/config.md");
        let doc = std::fs::read_to_string(path).unwrap();
        assert!(
            doc.contains(&defaults),
            "docs/config.md is stale: its defaults block must read\n{defaults}"
        );
    }

    #[test]
    fn the_gpu_section_reads_back_what_it_writes() {
        let mut config = Config::default();
        config.gpu.allocator.reclaim_warning_s = 7;
        config
            .gpu
            .tiers
            .get_mut("free")
            .unwrap()
            .idle_reclaim_after_s = 11;
        config.gpu.devices.push(GpuDeviceConfig {
            id: 0,
            name: "Fake GPU".into(),
            memory_bytes: 1 << 30,
            device_node: Some("/dev/nvidia0".into()),
        });
        let text = toml::to_string_pretty(&config).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, &text).unwrap();
        let read = load(Some(&path), env(&[])).unwrap();
        assert_eq!(read.gpu.allocator, config.gpu.allocator);
        assert_eq!(read.gpu.tiers, config.gpu.tiers);
        assert_eq!(read.gpu.devices, config.gpu.devices);
    }

    #[test]
    fn wrong_types_are_rejected() {
        let err = load(None, env(&[("COMMONLAB_SERVER__PORT", "many")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("invalid"), "{err}");
    }
}
