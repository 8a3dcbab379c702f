//! `commonlab serve`: load config, find Python, open the store, recover kernels, listen, and
//! shut everything down on SIGINT or SIGTERM.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use commonlab_manager::{
    find_python, GpuDevice, GpuScheduler, GpuSchedulerConfig, KernelManager, KernelManagerConfig,
    PolicyGate, PythonEnv, PythonSetup, SessionManager,
};
use commonlab_runtime::{jupyter_data_dirs, LocalBackend};
use commonlab_server::{AppState, EdgeLimits};
use commonlab_store::Store;

use crate::config::{self, Config, GpuSource};

/// Flags of `commonlab serve`; each overrides the config file and environment.
#[derive(Debug, clap::Args)]
pub(crate) struct ServeArgs {
    /// Configuration file (TOML).
    #[arg(long, env = "COMMONLAB_CONFIG")]
    config: Option<PathBuf>,
    /// Address to listen on [config: server.ip].
    #[arg(long)]
    ip: Option<String>,
    /// Port to listen on, 0 for any free port [config: server.port].
    #[arg(long)]
    port: Option<u16>,
    /// API token clients must present [config: server.token].
    #[arg(long)]
    token: Option<String>,
    /// Where the database, token and runtime files live [config: server.data_dir].
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Directory notebooks and kernels start in [config: server.root_dir].
    #[arg(long)]
    root_dir: Option<PathBuf>,
    /// URL prefix to serve under [config: server.base_url].
    #[arg(long)]
    base_url: Option<String>,
    /// Python interpreter with ipykernel [config: kernel.python].
    #[arg(long)]
    python: Option<PathBuf>,
    /// Log filter, e.g. `info` or `commonlab_manager=debug` (RUST_LOG also works).
    #[arg(long, default_value = "info")]
    log: String,
    /// Log as JSON lines instead of text.
    #[arg(long)]
    log_json: bool,
}

/// The data directory the configuration names (`server.data_dir`), else the per-user default.
/// Every command that opens the database resolves it here.
pub(crate) fn data_dir(config: &Config) -> PathBuf {
    config
        .server
        .data_dir
        .clone()
        .unwrap_or_else(default_data_dir)
}

/// The SQLite database in a data directory.
pub(crate) fn database_path(data_dir: &Path) -> PathBuf {
    data_dir.join("commonlab.sqlite")
}

fn default_data_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("XDG_DATA_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir).join("commonlab");
    }
    match std::env::var_os("HOME") {
        Some(home) => PathBuf::from(home).join(".local/share/commonlab"),
        None => PathBuf::from(".commonlab"),
    }
}

fn apply_flags(config: &mut Config, args: &ServeArgs) {
    if let Some(ip) = &args.ip {
        config.server.ip = ip.clone();
    }
    if let Some(port) = args.port {
        config.server.port = port;
    }
    if let Some(token) = &args.token {
        config.server.token = token.clone();
    }
    if let Some(dir) = &args.data_dir {
        config.server.data_dir = Some(dir.clone());
    }
    if let Some(dir) = &args.root_dir {
        config.server.root_dir = Some(dir.clone());
    }
    if let Some(base_url) = &args.base_url {
        config.server.base_url = base_url.clone();
    }
    if let Some(python) = &args.python {
        config.kernel.python = Some(python.clone());
    }
}

fn load_or_create_token(data_dir: &Path) -> anyhow::Result<String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let path = data_dir.join("token");
    if let Ok(token) = std::fs::read_to_string(&path) {
        let token = token.trim().to_owned();
        if !token.is_empty() {
            return Ok(token);
        }
    }
    let token = hex::encode(rand::random::<[u8; 24]>());
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("could not write {}", path.display()))?;
    file.write_all(token.as_bytes())?;
    Ok(token)
}

fn resolve_python(config: &Config, data_dir: &Path) -> anyhow::Result<PythonEnv> {
    if let Some(python) = &config.kernel.python {
        return find_python(std::slice::from_ref(python)).with_context(|| {
            format!("kernel.python is {}, but it cannot import ipykernel: install it with `{} -m pip install ipykernel`", python.display(), python.display())
        });
    }
    let setup = PythonSetup {
        env_dir: data_dir.join("python-env"),
        base_pythons: vec![PathBuf::from("/usr/bin/python3"), PathBuf::from("python3")],
        packages: vec!["ipykernel".into(), "jupyterlab".into(), "notebook".into()],
    };
    if let Some(env) = setup.existing() {
        return Ok(env);
    }
    if let Some(env) = find_python(&[PathBuf::from("python3"), PathBuf::from("/usr/bin/python3")]) {
        return Ok(env);
    }
    Ok(setup.create()?)
}

/// Builds the policy from the built-in packs, the operator's pack files and overrides.
pub(crate) fn load_policy(config: &Config) -> anyhow::Result<commonlab_policy::Policy> {
    let mut extra_packs = Vec::new();
    for file in &config.policy.pack_files {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("could not read policy pack {file}"))?;
        extra_packs.push((file.clone(), text));
    }
    commonlab_policy::Policy::configured(&config.policy, &extra_packs)
        .map_err(|e| anyhow::anyhow!("invalid policy configuration: {e}"))
}

/// The GPUs the driver reports, read with `nvidia-smi`; `None` when there is no driver.
fn nvidia_smi_gpus() -> Option<Vec<GpuDevice>> {
    let output = std::process::Command::new("nvidia-smi")
        .args([
            "--query-gpu=index,name,memory.total",
            "--format=csv,noheader,nounits",
        ])
        .output()
        .ok()?;
    if !output.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&output.stdout);
    let gpus: Vec<GpuDevice> = text
        .lines()
        .filter_map(|line| {
            let mut fields = line.split(',').map(str::trim);
            let index: u32 = fields.next()?.parse().ok()?;
            let name = fields.next()?.to_owned();
            let memory_mib: u64 = fields.next()?.parse().unwrap_or(0);
            Some(GpuDevice {
                index,
                name,
                memory_bytes: memory_mib << 20,
                node: Some(PathBuf::from(format!("/dev/nvidia{index}"))),
            })
        })
        .collect();
    (!gpus.is_empty()).then_some(gpus)
}

/// The GPU scheduler every user's kernels share, when the server has GPUs (from the driver,
/// else the configured inventory); `None` without GPUs.
fn gpu_scheduler(config: &Config) -> anyhow::Result<Option<Arc<GpuScheduler>>> {
    let configured = || -> Vec<GpuDevice> {
        config
            .gpu
            .devices
            .iter()
            .map(|device| GpuDevice {
                index: device.id,
                name: device.name.clone(),
                memory_bytes: device.memory_bytes,
                node: device.device_node.clone(),
            })
            .collect()
    };
    let devices = match config.gpu.source {
        GpuSource::Config => configured(),
        GpuSource::Nvml => nvidia_smi_gpus().context(
            "gpu.source is nvml, but nvidia-smi reports no GPU (is the NVIDIA driver installed?)",
        )?,
        GpuSource::Auto => nvidia_smi_gpus().unwrap_or_else(configured),
    };
    if devices.is_empty() {
        return Ok(None);
    }
    let scheduler = GpuScheduler::new(GpuSchedulerConfig {
        allocator: config.gpu.allocator.clone(),
        tiers: config.gpu.tiers.clone(),
        devices,
        shared_nodes: config.gpu.shared_device_nodes.clone(),
    })
    .map_err(|e| anyhow::anyhow!("invalid GPU configuration: {e}"))?;
    let users_tiers: Vec<&String> = if config.accounts.enabled {
        config.sandbox.tiers.keys().collect()
    } else {
        vec![&config.server.user_tier]
    };
    for tier in users_tiers {
        anyhow::ensure!(
            scheduler.knows_tier(tier),
            "tier `{tier}` has no [gpu.tiers.{tier}] section: every users' tier needs GPU limits"
        );
    }
    let names: Vec<String> = scheduler
        .devices()
        .iter()
        .map(|d| format!("{}: {}", d.index, d.name))
        .collect();
    tracing::info!(gpus = ?names, policy = config.gpu.allocator.policy.name(), "GPUs are shared by the allocator");
    scheduler.spawn_ticker();
    Ok(Some(scheduler))
}

fn init_logging(args: &ServeArgs) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&args.log));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if args.log_json {
        builder.json().init();
    } else {
        builder.init();
    }
}

pub(crate) fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let mut config = config::load(args.config.as_deref(), std::env::vars())?;
    apply_flags(&mut config, &args);
    init_logging(&args);
    let runtime = match config.server.worker_threads {
        0 => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?,
        1 => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?,
        n => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(n)
            .enable_all()
            .build()?,
    };
    runtime.block_on(serve(config))?;
    Ok(ExitCode::SUCCESS)
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let open_files = raise_open_files_limit();
    let data_dir = data_dir(&config);
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("could not create data directory {}", data_dir.display()))?;
    // Kernels start in other directories than the server's, so every path under it is absolute.
    let data_dir = data_dir
        .canonicalize()
        .with_context(|| format!("could not resolve data directory {}", data_dir.display()))?;
    let root_dir = match &config.server.root_dir {
        Some(dir) => dir.clone(),
        None => std::env::current_dir()?,
    };
    let root_dir = root_dir
        .canonicalize()
        .with_context(|| format!("root directory {} does not exist", root_dir.display()))?;
    let python = {
        let config = config.clone();
        let data_dir = data_dir.clone();
        tokio::task::spawn_blocking(move || resolve_python(&config, &data_dir)).await??
    };
    tracing::info!(python = %python.python.display(), "using Python for kernels");
    let mut kernelspec_dirs = config.kernel.kernelspec_dirs.clone();
    kernelspec_dirs.extend(jupyter_data_dirs(std::slice::from_ref(&python.prefix)));

    let store = Arc::new(
        Store::open_sqlite(&database_path(&data_dir))?.with_uid_range(config.accounts.uid_range()),
    );
    let mut config = config;
    if config.accounts.enabled && config.policy.appeal_url.is_none() {
        // Notices link to the server's own appeal page.
        config.policy.appeal_url = Some(commonlab_server::appeal_url(&config.server.base_url));
    }
    let policy = Arc::new(load_policy(&config)?);
    let mut base_url = config.server.base_url.clone();
    if !base_url.starts_with('/') {
        base_url.insert(0, '/');
    }
    if !base_url.ends_with('/') {
        base_url.push('/');
    }
    let listener = tokio::net::TcpListener::bind((config.server.ip.as_str(), config.server.port))
        .await
        .with_context(|| {
            format!(
                "could not listen on {}:{}",
                config.server.ip, config.server.port
            )
        })?;
    let addr = listener.local_addr()?;
    let host = if addr.ip().is_unspecified() {
        "127.0.0.1".to_owned()
    } else {
        addr.ip().to_string()
    };
    let gpu = gpu_scheduler(&config)?;
    let connection_limits = connection_limits(&config.server, open_files)?;

    if config.accounts.enabled {
        // Each tier's kernel cap (and GPU quota) is what the account page shows and what is
        // enforced; a tier without one would be neither.
        for tier in config.sandbox.tiers.keys() {
            anyhow::ensure!(
                config.gpu.tiers.contains_key(tier),
                "tier `{tier}` has no [gpu.tiers.{tier}] section: every users' tier needs one, for its kernel cap (kernels_max) and GPU quota"
            );
        }
        if let Some(gpu) = &gpu {
            // Fair share and weekly quotas count what each user held before this start.
            let today = chrono::Utc::now().date_naive();
            let from = (today - chrono::Days::new(30)).to_string();
            for user in store.user_list()? {
                let days: Vec<(String, f64)> = store
                    .usage_days(&user.name, &from, &today.to_string())?
                    .into_iter()
                    .map(|d| (d.day, d.usage.gpu_seconds_held))
                    .collect();
                gpu.load_usage(&user.name, &user.tier, &days);
            }
        }
        let workspaces_dir = config
            .accounts
            .workspaces_dir
            .clone()
            .map(|dir| std::path::absolute(&dir).unwrap_or(dir))
            .unwrap_or_else(|| data_dir.join("workspaces"));
        // Kernels run as their users' uids and must pass through these to their own
        // workspace and socket directory, but may list nothing; the database is the server's.
        // Users' uids are this server's alone on the host, as long as it runs.
        let uids = config.accounts.uid_range();
        if let Some((low, high)) = store.user_uid_bounds()? {
            if !uids.contains(low) || !uids.contains(high) {
                anyhow::bail!(
                    "this server's users have uids {low}..={high}, outside its range {}..={} (accounts.uid_base, accounts.uid_count): set the range its users were made with",
                    uids.base,
                    uids.last()
                );
            }
        }
        let _uid_claim = if nix::unistd::geteuid().is_root() {
            Some(
                crate::accounts::claim_uid_range(&config.accounts.uid_claims_dir, uids, &data_dir)
                    .map_err(|e| anyhow::anyhow!(e))?,
            )
        } else {
            None
        };
        crate::accounts::make_traversable_dir(&data_dir).map_err(|e| anyhow::anyhow!(e))?;
        crate::accounts::make_traversable_dir(&workspaces_dir).map_err(|e| anyhow::anyhow!(e))?;
        restrict_to_owner(&database_path(&data_dir))?;
        let sandbox = if config.sandbox.enabled {
            let launcher = std::env::current_exe()
                .context("could not find the server's own binary to launch sandboxes with")?;
            let mut sandbox_config = commonlab_runtime::SandboxConfig::new(
                data_dir.join("sandboxes"),
                launcher,
                vec!["sandbox-exec".into()],
            );
            sandbox_config.bwrap = config.sandbox.bwrap.clone();
            sandbox_config.read_only_dirs = config.sandbox.read_only_dirs.clone();
            sandbox_config.egress = config.sandbox.egress;
            let backend = commonlab_runtime::SandboxBackend::new(sandbox_config).map_err(|e| {
                anyhow::anyhow!("{e}\n(set sandbox.enabled = false to run users' kernels unconfined, for users who trust each other)")
            })?;
            tracing::info!(cgroups = ?backend.cgroup_version(), "kernels run sandboxed");
            Some(Arc::new(backend))
        } else {
            tracing::warn!("sandbox.enabled = false: users' kernels run as the server's user, unconfined; they can read each other's files");
            None
        };
        let hub = Arc::new(commonlab_server::Hub::new(
            store.clone(),
            Arc::new(crate::accounts::UserServerFactory {
                config: config.clone(),
                data_dir: data_dir.clone(),
                workspaces_dir: workspaces_dir.clone(),
                python,
                kernelspec_dirs,
                store: store.clone(),
                policy,
                base_url: base_url.clone(),
                sandbox,
                gpu: gpu.clone(),
            }),
            commonlab_server::HubConfig {
                base_url: base_url.clone(),
                cookie_secure: config.accounts.cookie_secure,
                login_session_ttl: Duration::from_secs(config.accounts.login_session_ttl_s),
                tiers: config.sandbox.tiers.keys().cloned().collect(),
                login_failures_max: config.accounts.login_failures_max,
                login_failure_window: Duration::from_secs(config.accounts.login_failure_window_s),
                // Password checks at once: the available parallelism.
                ..commonlab_server::HubConfig::default()
            },
        ));
        // The account page shows each tier's GPU quota used and left.
        hub.set_tier_quotas(
            config
                .gpu
                .tiers
                .iter()
                .map(|(name, tier)| {
                    (
                        name.clone(),
                        commonlab_manager::TierQuota {
                            gpu_hours_per_week: tier.gpu_hours_per_week_max,
                            kernels_max: tier.kernels_max,
                        },
                    )
                })
                .collect(),
        );
        // Kernels from a previous run are listed again at once and reattached while the
        // server listens.
        let mut recovery = tokio::task::JoinSet::new();
        for state in hub.open_all().map_err(|e| anyhow::anyhow!(e))? {
            let recovering = state.kernels.recover()?;
            let base_url = state.base_url.clone();
            recovery.spawn(async move {
                let (reattached, cleaned) = recovering.await;
                if reattached + cleaned > 0 {
                    tracing::info!(%base_url, reattached, cleaned, "recovered kernels from the previous run");
                }
            });
        }
        let users = store.user_list()?.len();
        tracing::info!(users, workspaces = %workspaces_dir.display(), data = %data_dir.display(), "Commonlab is running with accounts");
        #[allow(clippy::print_stderr)]
        {
            eprintln!("\n    Commonlab is serving {users} user account(s). Log in at:\n        http://{host}:{}{base_url}hub/login\n", addr.port());
            if users == 0 {
                eprintln!("    There are no accounts yet: add an administrator with\n        commonlab user add NAME --admin\n    (it reads the password from standard input).\n");
            }
        }
        let supervisor = {
            let hub = hub.clone();
            let interval = Duration::from_secs(config.kernel.supervise_interval_s.max(1));
            tokio::spawn(async move {
                let mut ticks = tokio::time::interval(interval);
                ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    ticks.tick().await;
                    for state in hub.running() {
                        state.kernels.supervise().await;
                    }
                }
            })
        };
        // Expired login sessions, old failed-login counts, and summaries of refused logins.
        let upkeep = hub.spawn_maintenance();
        commonlab_server::serve(
            listener,
            commonlab_server::hub_app(hub.clone()),
            connection_limits,
            shutdown_signal(),
        )
        .await?;
        supervisor.abort();
        upkeep.abort();
        recovery.abort_all();
        tracing::info!("shutting down: stopping kernels");
        hub.shutdown_all().await;
        crate::accounts::unmount_volumes(&workspaces_dir, &data_dir);
        if let Some(gpu) = &gpu {
            gpu.shutdown();
        }
        tracing::info!("stopped");
        return Ok(());
    }

    if nix::unistd::geteuid().is_root() {
        tracing::warn!("running as root with one user: kernels run as root, unconfined; run as a normal user, or set [accounts] enabled = true so each user's kernels run sandboxed as their own uid");
    }
    let token = if config.server.token.is_empty() {
        load_or_create_token(&data_dir)?
    } else {
        config.server.token.clone()
    };
    let backend = Arc::new(LocalBackend::new(data_dir.join("runtime")));
    let mut kernels = KernelManager::new(
        KernelManagerConfig {
            root_dir: root_dir.clone(),
            kernelspec_dirs,
            default_kernel_name: config.kernel.default_name.clone(),
            fallback_spec: Some(python.kernelspec()),
            kernel_start_timeout: Duration::from_secs(config.kernel.start_timeout_s),
            kernel_shutdown_wait: Duration::from_secs(config.kernel.shutdown_wait_s),
            ws_send_queue_bytes_max: config.kernel.ws_send_queue_bytes_max,
            ws_buffer_bytes_max: config.kernel.ws_buffer_bytes_max,
            ws_buffer_messages_max: config.kernel.ws_buffer_messages_max,
            sandbox: None,
        },
        backend,
        store.clone(),
    )
    .with_policy_gate(PolicyGate::new(
        policy,
        config.server.user_tier.clone(),
        store.clone(),
    ));
    if let Some(gpu) = &gpu {
        kernels = kernels.with_gpu_scheduler(gpu.clone(), "local", &config.server.user_tier);
    }
    let kernels = Arc::new(kernels);
    // Kernels from a previous run are listed again at once and reattached while the server
    // listens.
    let recovering = kernels.recover()?;
    let recovery = tokio::spawn(async move {
        let (reattached, cleaned) = recovering.await;
        if reattached + cleaned > 0 {
            tracing::info!(
                reattached,
                cleaned,
                "recovered kernels from the previous run"
            );
        }
    });
    let sessions = Arc::new(SessionManager::new(kernels.clone(), store));
    let contents = Arc::new(commonlab_manager::ContentsManager::new(
        commonlab_manager::ContentsConfig {
            root_dir: root_dir.clone(),
            upload_bytes_max: config.contents.upload_bytes_max,
            owner: None,
        },
    ));
    contents.remove_stale_temporaries_in_background();
    let state = AppState {
        kernels: kernels.clone(),
        sessions,
        contents,
        token: Arc::new(token.clone()),
        limits: EdgeLimits {
            ws_message_bytes_max: config.server.ws_message_bytes_max,
            request_body_bytes_max: config.server.request_body_bytes_max,
        },
        base_url: base_url.clone(),
        lab: commonlab_server::LabAssets::discover(&python.prefix, &data_dir, &root_dir).map(|lab| {
            tracing::info!(static_dir = %lab.lab_static.display(), notebook = lab.notebook.is_some(), "serving JupyterLab");
            Arc::new(lab)
        }),
        accounts: None,
    };
    let app = commonlab_server::app(state);
    tracing::info!(root = %root_dir.display(), data = %data_dir.display(), "Commonlab is running");
    #[allow(clippy::print_stderr)]
    {
        eprintln!("\n    To use Commonlab, connect Jupyter clients to:\n        http://{host}:{}{base_url}?token={token}\n", addr.port());
    }
    commonlab_server::serve(listener, app, connection_limits, shutdown_signal()).await?;
    recovery.abort();
    tracing::info!("shutting down: stopping kernels");
    kernels.shutdown_all().await;
    if let Some(gpu) = &gpu {
        gpu.shutdown();
    }
    tracing::info!("stopped");
    Ok(())
}

/// Raises the soft limit on open files to the hard one: every connection and kernel channel
/// is a descriptor, and the usual soft default (1,024) is soon reached. Returns the soft limit
/// in force; `None` when it cannot be read.
fn raise_open_files_limit() -> Option<u64> {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (soft, hard) = match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok(limits) => limits,
        Err(e) => {
            tracing::warn!(error = %e, "could not read the open files limit (RLIMIT_NOFILE)");
            return None;
        }
    };
    if soft >= hard {
        tracing::info!(open_files_max = soft, "open files limit");
        return Some(soft);
    }
    match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
        Ok(()) => {
            tracing::info!("raised the open files limit from {soft} to {hard}");
            Some(hard)
        }
        Err(e) => {
            tracing::warn!(error = %e, "could not raise the open files limit from {soft} to {hard}");
            Some(soft)
        }
    }
}

/// The listener's limits from `[server]`. A zero timeout or cap is refused, since it would
/// either disable the protection or refuse every client; a cap on unauthenticated
/// connections that could use up more than half the open files limit is lowered to that half,
/// so a flood of them cannot keep the server from accepting anyone.
fn connection_limits(
    server: &config::ServerConfig,
    open_files_max: Option<u64>,
) -> anyhow::Result<commonlab_server::ConnectionLimits> {
    let defaults = config::ServerConfig::default();
    for (key, value, default) in [
        (
            "header_read_timeout_s",
            server.header_read_timeout_s,
            defaults.header_read_timeout_s,
        ),
        (
            "body_read_timeout_s",
            server.body_read_timeout_s,
            defaults.body_read_timeout_s,
        ),
        (
            "unauthenticated_connections_max",
            server.unauthenticated_connections_max as u64,
            defaults.unauthenticated_connections_max as u64,
        ),
    ] {
        anyhow::ensure!(
            value > 0,
            "server.{key} is 0: it must be at least 1 (the default is {default})"
        );
    }
    let mut unauthenticated_connections_max = server.unauthenticated_connections_max;
    if let Some(open_files_max) = open_files_max {
        let half = usize::try_from(open_files_max / 2)
            .unwrap_or(usize::MAX)
            .max(1);
        if unauthenticated_connections_max > half {
            tracing::warn!(
                configured = unauthenticated_connections_max,
                used = half,
                open_files_max,
                "server.unauthenticated_connections_max is more than half the open files limit; using half (raise the hard limit, e.g. LimitNOFILE= in a systemd unit, to allow more)"
            );
            unauthenticated_connections_max = half;
        }
    }
    Ok(commonlab_server::ConnectionLimits {
        header_read_timeout: Duration::from_secs(server.header_read_timeout_s),
        body_read_timeout: Duration::from_secs(server.body_read_timeout_s),
        body_read_rate_bytes_per_s_min: server.body_read_rate_bytes_per_s_min,
        unauthenticated_connections_max,
    })
}

/// Makes the database file (and its WAL companions) readable by the server's user only.
fn restrict_to_owner(database: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    for suffix in ["", "-wal", "-shm"] {
        let mut path = database.as_os_str().to_owned();
        path.push(suffix);
        let path = PathBuf::from(path);
        if path.exists() {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
                .with_context(|| format!("could not restrict {}", path.display()))?;
        }
    }
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut interrupt = signal(SignalKind::interrupt()).expect("SIGINT handler installs");
    let mut terminate = signal(SignalKind::terminate()).expect("SIGTERM handler installs");
    tokio::select! {
        _ = interrupt.recv() => {}
        _ = terminate.recv() => {}
    }
}
