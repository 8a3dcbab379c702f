//! The kernel manager: starts kernels from kernelspecs through the runtime backend, keeps them
//! in the store, reattaches to them after a server restart, and stops them.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use commonlab_policy::Action;
use commonlab_protocol::{Channel, ConnectionInfo};
use commonlab_runtime::{
    find_kernelspecs, InterruptMode, KernelSpec, LaunchSpec, Runtime, RuntimeBackend, RuntimeRecord,
};
use commonlab_store::{KernelRecord, Store};

use crate::gate::{PolicyGate, Standing};
use crate::gpu::{Admission, GpuDevice, GpuNotice, GpuScheduler};
use crate::hub::HubLimits;
use crate::{iso_now, ErrorKind, Kernel, KernelModel, ManagerError};

/// The name of the kernelspec synthesized for one GPU when the server has GPUs.
pub const GPU_KERNEL_NAME: &str = "python3-gpu";

/// Whose GPU requests this manager makes, and where.
struct GpuAccount {
    scheduler: Arc<GpuScheduler>,
    user: String,
    tier: String,
}

/// The GPUs a kernelspec asks for: `metadata.commonlab.gpus`, 0 when absent.
pub fn gpus_wanted(spec: &KernelSpec) -> u32 {
    spec.spec
        .metadata
        .get("commonlab")
        .and_then(|c| c.get("gpus"))
        .and_then(|g| g.as_u64())
        .map(|g| g.min(u32::MAX as u64) as u32)
        .unwrap_or(0)
}

/// A kernelspec as the API shows it: name, `kernel.json` contents, resource file names.
#[derive(Debug, Clone)]
pub struct KernelSpecView {
    pub name: String,
    pub spec: serde_json::Value,
    pub resources: Vec<String>,
}

/// Settings of the kernel manager, with units in their names.
#[derive(Debug, Clone)]
pub struct KernelManagerConfig {
    /// Where kernels start (the notebook root).
    pub root_dir: PathBuf,
    /// Directories searched for `kernels/*/kernel.json`, highest priority first.
    pub kernelspec_dirs: Vec<PathBuf>,
    /// Used when a request names no kernelspec.
    pub default_kernel_name: String,
    /// A spec synthesized for `default_kernel_name` when no directory defines one.
    pub fallback_spec: Option<KernelSpec>,
    pub kernel_start_timeout: Duration,
    pub kernel_shutdown_wait: Duration,
    pub ws_send_queue_bytes_max: usize,
    pub ws_buffer_bytes_max: usize,
    pub ws_buffer_messages_max: usize,
    /// Who kernels run as and within which limits, for a sandboxing backend; `None` with the
    /// local backend.
    pub sandbox: Option<commonlab_runtime::SandboxSpec>,
}

impl KernelManagerConfig {
    fn hub_limits(&self) -> HubLimits {
        HubLimits {
            send_queue_bytes_max: self.ws_send_queue_bytes_max,
            buffer_bytes_max: self.ws_buffer_bytes_max,
            buffer_messages_max: self.ws_buffer_messages_max,
            pending_requests_max: 10_000,
        }
    }
}

/// Starts, finds and stops kernels.
pub struct KernelManager {
    config: KernelManagerConfig,
    backend: Arc<dyn RuntimeBackend>,
    store: Arc<Store>,
    kernels: RwLock<HashMap<String, Arc<Kernel>>>,
    started_at: String,
    gate: Option<Arc<PolicyGate>>,
    gpu: Option<GpuAccount>,
    /// The most kernels at once, GPU or not; [`KERNELS_UNLIMITED`] for no cap.
    kernels_max: std::sync::atomic::AtomicU32,
    /// Starts under way, each holding a place under `kernels_max` until its kernel is
    /// registered or fails.
    starting: std::sync::Mutex<usize>,
    /// Kernels that ended but whose store row could not be deleted (a full disk, a database
    /// that went away): deleted again on the next store write or supervisor tick.
    rows_to_delete: std::sync::Mutex<Vec<String>>,
}

/// `kernels_max` without a cap.
const KERNELS_UNLIMITED: u32 = u32::MAX;

/// A place under the kernel cap held by one start.
struct StartPlace<'a> {
    manager: &'a KernelManager,
    held: bool,
}

impl StartPlace<'_> {
    /// Registers the started kernel and gives the place back, at once, so the count of kernels
    /// and starts under way never drops below the truth.
    fn register(mut self, kernel: Arc<Kernel>) {
        let mut starting = self.manager.starting.lock().expect("not poisoned");
        self.manager
            .kernels
            .write()
            .expect("not poisoned")
            .insert(kernel.id.clone(), kernel);
        *starting -= 1;
        self.held = false;
    }
}

impl Drop for StartPlace<'_> {
    fn drop(&mut self) {
        if self.held {
            *self.manager.starting.lock().expect("not poisoned") -= 1;
        }
    }
}

impl KernelManager {
    pub fn new(
        config: KernelManagerConfig,
        backend: Arc<dyn RuntimeBackend>,
        store: Arc<Store>,
    ) -> KernelManager {
        KernelManager {
            config,
            backend,
            store,
            kernels: RwLock::new(HashMap::new()),
            started_at: iso_now(),
            gate: None,
            gpu: None,
            kernels_max: std::sync::atomic::AtomicU32::new(KERNELS_UNLIMITED),
            starting: std::sync::Mutex::new(0),
            rows_to_delete: std::sync::Mutex::new(Vec::new()),
        }
    }

    /// Caps the kernels this manager runs at once (GPU or not, queued GPU kernels included);
    /// `None` lifts the cap. Kernels already running over a lowered cap keep running; further
    /// starts are refused until fewer run.
    pub fn set_kernels_max(&self, max: Option<u32>) {
        self.kernels_max.store(
            max.unwrap_or(KERNELS_UNLIMITED),
            std::sync::atomic::Ordering::Relaxed,
        );
    }

    /// The cap set by [`KernelManager::set_kernels_max`].
    pub fn kernels_max(&self) -> Option<u32> {
        let max = self.kernels_max.load(std::sync::atomic::Ordering::Relaxed);
        (max != KERNELS_UNLIMITED).then_some(max)
    }

    /// Takes a place under the kernel cap for one start, or refuses it.
    fn take_start_place(&self) -> Result<StartPlace<'_>, ManagerError> {
        let mut starting = self.starting.lock().expect("not poisoned");
        let running = self.kernels.read().expect("not poisoned").len();
        if let Some(max) = self.kernels_max() {
            if running + *starting >= max as usize {
                let mut error = ManagerError::new(
                    ErrorKind::Forbidden,
                    "kernels_max_reached",
                    format!(
                        "No kernel was started: you have {running} kernel(s) running{}, and your tier allows {max} at once. Shut one down (Kernel > Shut Down Kernel, or the Running Terminals and Kernels panel) and try again.",
                        if *starting > 0 { format!(" and {} starting", *starting) } else { String::new() },
                    ),
                );
                error.short_message = Some("Too many kernels".into());
                return Err(error);
            }
        }
        *starting += 1;
        Ok(StartPlace {
            manager: self,
            held: true,
        })
    }

    /// Deletes the store row of a kernel that has ended. A failure does not undo the end: the
    /// row is kept to be deleted later, and the caller goes on.
    fn delete_row(&self, id: &str) {
        self.delete_pending_rows();
        if let Err(e) = self.store.delete_kernel(id) {
            tracing::warn!(kernel = %id, error = %e, "the kernel ended but its record could not be deleted; trying again later");
            self.rows_to_delete
                .lock()
                .expect("not poisoned")
                .push(id.to_owned());
        }
    }

    /// Retries the deletions [`KernelManager::delete_row`] could not do.
    fn delete_pending_rows(&self) {
        let pending = std::mem::take(&mut *self.rows_to_delete.lock().expect("not poisoned"));
        if pending.is_empty() {
            return;
        }
        let failed: Vec<String> = pending
            .into_iter()
            .filter(|id| self.store.delete_kernel(id).is_err())
            .collect();
        self.rows_to_delete
            .lock()
            .expect("not poisoned")
            .extend(failed);
    }

    /// Kernels whose kernelspec asks for GPUs (`metadata.commonlab.gpus`) get them from the
    /// server's shared `scheduler`, as `user` of `tier`; they wait in its queue when none is
    /// free. Without it such kernels are refused.
    pub fn with_gpu_scheduler(
        mut self,
        scheduler: Arc<GpuScheduler>,
        user: &str,
        tier: &str,
    ) -> KernelManager {
        self.gpu = Some(GpuAccount {
            scheduler,
            user: user.to_owned(),
            tier: tier.to_owned(),
        });
        self
    }

    /// Checks every `execute_request` against the policy before it reaches a kernel.
    pub fn with_policy_gate(mut self, gate: PolicyGate) -> KernelManager {
        self.gate = Some(Arc::new(gate));
        self
    }

    pub fn started_at(&self) -> &str {
        &self.started_at
    }

    pub fn default_kernel_name(&self) -> &str {
        &self.config.default_kernel_name
    }

    /// The kernelspecs available now (the directories are re-read on each call, as Jupyter does).
    pub fn kernelspecs(&self) -> BTreeMap<String, KernelSpec> {
        let mut specs = find_kernelspecs(&self.config.kernelspec_dirs);
        if let Some(fallback) = &self.config.fallback_spec {
            specs
                .entry(fallback.name.clone())
                .or_insert_with(|| fallback.clone());
        }
        let has_gpus = self
            .gpu
            .as_ref()
            .is_some_and(|gpu| !gpu.scheduler.devices().is_empty());
        if has_gpus && !specs.contains_key(GPU_KERNEL_NAME) {
            if let Some(python) = specs.get("python3") {
                let mut gpu_spec = python.clone();
                gpu_spec.name = GPU_KERNEL_NAME.to_owned();
                gpu_spec.spec.display_name = "Python 3 (1 GPU)".to_owned();
                gpu_spec
                    .spec
                    .metadata
                    .insert("commonlab".to_owned(), serde_json::json!({ "gpus": 1 }));
                specs.insert(GPU_KERNEL_NAME.to_owned(), gpu_spec);
            }
        }
        specs
    }

    /// The kernelspecs as the API shows them.
    pub fn kernelspec_views(&self) -> Vec<KernelSpecView> {
        self.kernelspecs()
            .into_values()
            .map(|spec| KernelSpecView {
                resources: spec.resources(),
                spec: serde_json::to_value(&spec.spec).expect("kernelspec serializes"),
                name: spec.name,
            })
            .collect()
    }

    pub fn kernelspec(&self, name: &str) -> Option<KernelSpec> {
        self.kernelspecs().remove(&name.to_lowercase())
    }

    pub fn list(&self) -> Vec<KernelModel> {
        let kernels = self.kernels.read().expect("not poisoned");
        let mut models: Vec<KernelModel> = kernels.values().map(|k| k.model()).collect();
        models.sort_by(|a, b| a.id.cmp(&b.id));
        models
    }

    pub fn get(&self, id: &str) -> Result<Arc<Kernel>, ManagerError> {
        self.kernels
            .read()
            .expect("not poisoned")
            .get(id)
            .cloned()
            .ok_or_else(|| ManagerError::kernel_not_found(id))
    }

    pub fn connection_count(&self) -> usize {
        self.kernels
            .read()
            .expect("not poisoned")
            .values()
            .map(|k| k.model().connections)
            .sum()
    }

    fn new_connection(&self, kernel_id: &str, key: &str) -> Result<ConnectionInfo, ManagerError> {
        self.backend.connection_for(kernel_id, key).map_err(|e| {
            ManagerError::internal(
                "no_kernel_channels",
                format!("Could not prepare a kernel's channels: {e}"),
            )
        })
    }

    async fn launch(
        &self,
        kernel_id: &str,
        spec: &KernelSpec,
        connection: &ConnectionInfo,
        devices: &[GpuDevice],
    ) -> Result<Arc<dyn Runtime>, ManagerError> {
        let mut env: BTreeMap<String, String> = spec.spec.env.clone();
        if let Some(gpu) = &self.gpu {
            // Only the granted GPUs are visible; a CPU kernel sees none.
            let visible = devices
                .iter()
                .map(|d| d.index.to_string())
                .collect::<Vec<_>>()
                .join(",");
            let nvidia = if devices.is_empty() {
                "void".to_owned()
            } else {
                visible.clone()
            };
            if !gpu.scheduler.devices().is_empty() {
                env.insert("CUDA_VISIBLE_DEVICES".to_owned(), visible);
                env.insert("NVIDIA_VISIBLE_DEVICES".to_owned(), nvidia);
            }
        }
        let launch = LaunchSpec {
            kernel_id: kernel_id.to_owned(),
            argv: resolve_python_argv(
                &spec.spec.argv,
                self.config
                    .fallback_spec
                    .as_ref()
                    .and_then(|spec| spec.spec.argv.first()),
            ),
            env,
            cwd: self.config.root_dir.clone(),
            connection: connection.clone(),
            sandbox: self.config.sandbox.clone().map(|mut sandbox| {
                if let Some(gpu) = &self.gpu {
                    sandbox.devices = gpu.scheduler.nodes_for(devices);
                }
                sandbox
            }),
        };
        let runtime = self.backend.launch(launch).await.map_err(|e| {
            ManagerError::new(
                ErrorKind::Unavailable,
                "kernel_launch_failed",
                format!("The kernel could not be started: {e}"),
            )
        })?;
        Ok(Arc::from(runtime))
    }

    /// Starts a kernel and returns once it has answered `kernel_info_request`. A kernel whose
    /// kernelspec asks for GPUs that are not free returns at once, waiting in the GPU queue
    /// (`execution_state` `starting`); it is launched when the GPUs are granted.
    pub async fn start(self: &Arc<Self>, name: Option<&str>) -> Result<Arc<Kernel>, ManagerError> {
        if let Some(gate) = &self.gate {
            gate.admit()?;
        }
        let place = self.take_start_place()?;
        let name = name
            .filter(|n| !n.is_empty())
            .unwrap_or(&self.config.default_kernel_name)
            .to_lowercase();
        let spec = self
            .kernelspec(&name)
            .ok_or_else(|| ManagerError::kernelspec_not_found(&name))?;
        let kernel_id = uuid::Uuid::new_v4().to_string();
        let kernel = Kernel::new(
            kernel_id.clone(),
            name.clone(),
            spec.spec.interrupt_mode,
            self.config.hub_limits(),
            self.gate.clone(),
        );
        let gpus = gpus_wanted(&spec);
        if gpus > 0 {
            let Some(devices) = self.request_gpus(&kernel, &spec, gpus)? else {
                tracing::info!(kernel = %kernel_id, %name, "kernel waits for a GPU");
                place.register(kernel.clone());
                return Ok(kernel);
            };
            if let Err(e) = self.bring_up(&kernel, &spec, &devices).await {
                if let Some(gpu) = kernel.take_gpu() {
                    gpu.scheduler.exited(gpu.request);
                }
                return Err(e);
            }
        } else {
            self.bring_up(&kernel, &spec, &[]).await?;
        }
        tracing::info!(kernel = %kernel_id, %name, "kernel started");
        self.audit_start(&kernel);
        place.register(kernel.clone());
        Ok(kernel)
    }

    fn audit_start(&self, kernel: &Kernel) {
        let gpus: Vec<u32> = kernel.gpus().iter().map(|d| d.index).collect();
        let detail = if gpus.is_empty() {
            serde_json::json!({ "name": kernel.name })
        } else {
            serde_json::json!({ "name": kernel.name, "gpus": gpus })
        };
        self.audit("kernel_start", &kernel.id, detail);
    }

    /// Asks the scheduler for `gpus` GPUs for `kernel`: the GPUs when granted at once, `None`
    /// when the kernel now waits in the queue. A task applies the scheduler's later notices.
    fn request_gpus(
        self: &Arc<Self>,
        kernel: &Arc<Kernel>,
        spec: &KernelSpec,
        gpus: u32,
    ) -> Result<Option<Vec<GpuDevice>>, ManagerError> {
        let Some(account) = &self.gpu else {
            return Err(ManagerError::new(
                ErrorKind::Unavailable,
                "no_gpu_available",
                format!(
                    "The '{}' kernel needs {gpus} GPU(s), but this server has none.",
                    spec.name
                ),
            ));
        };
        let (notices_tx, notices) = tokio::sync::mpsc::unbounded_channel();
        let (request, admission) =
            account
                .scheduler
                .request(&account.user, &account.tier, gpus, notices_tx)?;
        kernel.set_gpu(account.scheduler.clone(), request);
        kernel.set_gpu_driver(tokio::spawn(drive_gpu(
            Arc::downgrade(self),
            Arc::downgrade(kernel),
            notices,
        )));
        match admission {
            Admission::Placed(devices) => {
                kernel.gpus_granted(devices.clone());
                Ok(Some(devices))
            }
            Admission::Queued(place) => {
                kernel.wait_for_gpu(place, &spec.spec.language);
                Ok(None)
            }
        }
    }

    /// Launches the kernel's runtime (with `devices` visible), records it, connects its
    /// channels and waits until it answers; on failure nothing of it is left.
    async fn bring_up(
        &self,
        kernel: &Arc<Kernel>,
        spec: &KernelSpec,
        devices: &[GpuDevice],
    ) -> Result<(), ManagerError> {
        let kernel_id = kernel.id.clone();
        let key = uuid::Uuid::new_v4().to_string();
        let connection = self.new_connection(&kernel_id, &key)?;
        let started = std::time::Instant::now();
        let runtime = self.launch(&kernel_id, spec, &connection, devices).await?;
        let launched_ms = started.elapsed().as_millis();
        let record = KernelRecord {
            id: kernel_id.clone(),
            name: kernel.name.clone(),
            connection: serde_json::to_string(&connection).expect("serializes"),
            runtime: serde_json::to_string(&runtime.record()).expect("serializes"),
            started_at: iso_now(),
        };
        let result = async {
            self.delete_pending_rows();
            self.store.insert_kernel(&record)?;
            kernel
                .attach(
                    runtime.clone(),
                    &connection,
                    self.config.kernel_start_timeout,
                )
                .await?;
            let connected_ms = started.elapsed().as_millis();
            kernel.wait_ready(self.config.kernel_start_timeout).await?;
            tracing::debug!(kernel = %kernel_id, launched_ms, connected_ms, ready_ms = started.elapsed().as_millis(), "kernel start timings");
            Ok::<(), ManagerError>(())
        }
        .await;
        if let Err(e) = result {
            kernel.expect_exit();
            let _ = runtime.kill();
            kernel.detach().await;
            // The backend clears the kernel's socket directory once it has ended.
            let _ = tokio::time::timeout(Duration::from_secs(5), runtime.wait()).await;
            self.delete_row(&kernel_id);
            let _ = std::fs::remove_file(runtime.record().connection_file);
            return Err(e);
        }
        Ok(())
    }

    /// Applies one of the scheduler's notices to a GPU kernel.
    async fn apply_gpu_notice(&self, kernel: &Arc<Kernel>, notice: GpuNotice) {
        match notice {
            GpuNotice::Placed { devices, after } => {
                for mut released in after {
                    // The GPUs' previous kernel is being stopped; its stop is bounded by the
                    // shutdown wait, so this wait is too.
                    let wait = self.config.kernel_shutdown_wait + Duration::from_secs(10);
                    let _ = tokio::time::timeout(wait, released.wait_for(|done| *done)).await;
                }
                let Some((scheduler, request)) = kernel.gpu_request() else {
                    return;
                };
                let _guard = kernel.lifecycle.lock().await;
                if self.get(&kernel.id).is_err() {
                    scheduler.exited(request);
                    return;
                }
                kernel.gpus_granted(devices.clone());
                let launched = match self.kernelspec(&kernel.name) {
                    Some(spec) => self.bring_up(kernel, &spec, &devices).await,
                    None => Err(ManagerError::kernelspec_not_found(&kernel.name)),
                };
                match launched {
                    Ok(()) => {
                        tracing::info!(kernel = %kernel.id, gpus = ?devices.iter().map(|d| d.index).collect::<Vec<_>>(), "kernel started on its granted GPUs");
                        self.audit_start(kernel);
                        drop(_guard);
                        kernel.release_held().await;
                    }
                    Err(e) => {
                        tracing::error!(kernel = %kernel.id, error = %e, "a kernel granted a GPU failed to start");
                        kernel.abandon_wait(&e.message);
                        if let Some(gpu) = kernel.take_gpu() {
                            gpu.scheduler.exited(gpu.request);
                        }
                        kernel.set_failed(e.message.clone());
                        kernel.broadcast_status("dead");
                    }
                }
            }
            GpuNotice::Queued(place) => kernel.queue_moved(place),
            GpuNotice::Warn {
                at,
                reason,
                waiting,
            } => {
                tracing::info!(kernel = %kernel.id, reason = reason.code(), "kernel warned before losing its GPU");
                kernel.notify(&crate::gpu::warn_text(at, reason, waiting));
            }
            GpuNotice::Reclaimed { reason, released } => {
                tracing::info!(kernel = %kernel.id, reason = reason.code(), "GPU reclaimed; stopping the kernel");
                kernel.notify(&crate::gpu::reclaim_text(reason));
                self.stop_gpu_kernel(kernel, reason.code()).await;
                let _ = released.send(true);
            }
            GpuNotice::Stopped { reason } => {
                tracing::info!(kernel = %kernel.id, reason = reason.code(), "GPU kernel stopped by the scheduler");
                kernel.notify(&crate::gpu::stop_text(reason));
                self.stop_gpu_kernel(kernel, reason.code()).await;
            }
            GpuNotice::Refused { message } => {
                kernel.abandon_wait(&format!("No GPU was granted: {message}."));
                self.stop_gpu_kernel(kernel, "gpu_refused").await;
            }
        }
    }

    async fn stop_gpu_kernel(&self, kernel: &Arc<Kernel>, reason: &str) {
        if let Err(e) = self.shutdown_because(&kernel.id, reason).await {
            tracing::error!(kernel = %kernel.id, error = %e.message, "could not stop a GPU kernel");
        }
    }

    /// Interrupts per the kernelspec's `interrupt_mode`.
    pub async fn interrupt(&self, id: &str) -> Result<(), ManagerError> {
        let kernel = self.get(id)?;
        if kernel.is_waiting_for_gpu() {
            // Interrupting a kernel that waits for a GPU takes it out of the queue.
            let why = "The kernel was interrupted while it waited for a GPU, so it left the queue. Restart the kernel to wait again.";
            kernel.abandon_wait(why);
            if let Some(gpu) = kernel.take_gpu() {
                gpu.scheduler.exited(gpu.request);
            }
            kernel.set_failed(why.to_owned());
            kernel.broadcast_status("dead");
            return Ok(());
        }
        match kernel.interrupt_mode {
            InterruptMode::Message => {
                kernel
                    .send_own(Channel::Control, "interrupt_request", serde_json::json!({}))
                    .await;
            }
            InterruptMode::Signal => {
                let runtime = kernel.runtime().ok_or_else(|| {
                    ManagerError::new(
                        ErrorKind::Unavailable,
                        "kernel_dead",
                        "The kernel is not running",
                    )
                })?;
                runtime
                    .signal(nix::sys::signal::Signal::SIGINT as i32)
                    .map_err(|e| {
                        ManagerError::internal(
                            "interrupt_failed",
                            format!("Could not interrupt the kernel: {e}"),
                        )
                    })?;
            }
        }
        Ok(())
    }

    /// Adds the GPU time a kernel held to its owner's usage ledger (accounts only; a
    /// single-user server has no ledger to read).
    fn record_gpu_usage(&self, gpu: &crate::kernel::GpuRelease) {
        self.record_gpu_seconds(gpu.devices.len(), gpu.held_s, gpu.busy_s);
    }

    /// Adds `held_s` (of which `busy_s` executing) on `gpus` GPUs, ending now, to the owner's
    /// ledger.
    fn record_gpu_seconds(&self, gpus: usize, held_s: f64, busy_s: f64) {
        let owner = self.store.owner();
        if owner.is_empty() || held_s <= 0.0 {
            return;
        }
        let gpus = gpus as f64;
        let now = chrono::Utc::now();
        let since = now - chrono::Duration::milliseconds((held_s * 1000.0) as i64);
        if let Err(e) = crate::usage::record_gpu_usage(
            &self.store,
            owner,
            since,
            now,
            held_s * gpus,
            busy_s.min(held_s) * gpus,
        ) {
            tracing::error!(error = %e, "could not record GPU usage");
        }
    }

    /// Appends to the audit log with the owner as actor; a failure is logged, never shown.
    fn audit(&self, action: &str, kernel_id: &str, detail: serde_json::Value) {
        let owner = self.store.owner();
        let actor = (!owner.is_empty()).then_some(owner);
        if let Err(e) = self.store.audit_append(
            &chrono::Utc::now().to_rfc3339(),
            actor,
            action,
            Some(kernel_id),
            &detail,
        ) {
            tracing::error!(error = %e, action, "could not append to the audit log");
        }
    }

    /// One supervisor pass: what runs in each kernel goes to the policy, and its verdict is
    /// acted on — a warning in the notebook, the offending processes killed (`block`), the cell
    /// interrupted, the kernel stopped, or the kernel stopped and the account restricted. Each
    /// finding is acted on once. Returns the actions taken, as `(kernel id, action)`. First,
    /// what the kernels used since the last pass goes to the owner's usage ledger.
    pub async fn supervise(&self) -> Vec<(String, Action)> {
        self.delete_pending_rows();
        let kernels: Vec<(Arc<Kernel>, Vec<commonlab_runtime::ProcessInfo>)> = self
            .kernels
            .read()
            .expect("not poisoned")
            .values()
            .filter_map(|kernel| Some((kernel.clone(), kernel.runtime()?.processes())))
            .collect();
        crate::usage::record_kernels(
            &self.store,
            chrono::Utc::now(),
            kernels.iter().map(|(k, p)| (k.id.as_str(), p.as_slice())),
        );
        // GPU time goes to the ledger as it is used, not only when the GPU is given back, so
        // the account page shows a long-running kernel's hours while it runs.
        for (kernel, _) in &kernels {
            if let Some((gpus, held_s, busy_s)) = kernel.gpu_usage_unreported() {
                self.record_gpu_seconds(gpus, held_s, busy_s);
            }
        }
        let Some(gate) = self.gate.clone() else {
            return Vec::new();
        };
        // An account restricted or removed by someone else (another process, or while a
        // kernel was starting) keeps nothing running.
        match gate.standing() {
            Standing::Restricted(when) => {
                let notice =
                    format!("Your kernels were stopped: your account is restricted {when}");
                self.stop_all_because("account_restricted", &notice).await;
                return Vec::new();
            }
            Standing::Removed => {
                self.stop_all_because(
                    "account_removed",
                    "This account was removed, so its kernels were stopped.",
                )
                .await;
                return Vec::new();
            }
            Standing::Active | Standing::Unknown => {}
        }
        let mut taken = Vec::new();
        let mut restricted = false;
        for (kernel, processes) in kernels {
            let Some(decision) = gate.inspect_processes(&kernel.id, &processes) else {
                continue;
            };
            if !kernel.first_time(&decision.signature) {
                continue;
            }
            tracing::warn!(kernel = %kernel.id, action = %decision.action, category = ?decision.category, pids = ?decision.pids, "policy acted on a running process");
            gate.audit(
                "action",
                &kernel.id,
                serde_json::json!({"action": decision.action.as_str(), "category": decision.category, "pids": decision.pids}),
            );
            kernel.notify(&decision.message);
            match decision.action {
                Action::Allow | Action::Warn => {}
                Action::Block => {
                    for pid in &decision.pids {
                        let _ = nix::sys::signal::kill(
                            nix::unistd::Pid::from_raw(*pid),
                            nix::sys::signal::Signal::SIGKILL,
                        );
                    }
                }
                Action::Interrupt => {
                    if let Err(e) = self.interrupt(&kernel.id).await {
                        tracing::error!(kernel = %kernel.id, error = %e.message, "policy interrupt failed");
                    }
                }
                Action::Stop | Action::Restrict => {
                    if decision.action == Action::Restrict {
                        gate.restrict(&format!(
                            "usage policy: {}",
                            decision.category.as_deref().unwrap_or("a prohibited use")
                        ));
                        restricted = true;
                    }
                    if let Err(e) = self.shutdown(&kernel.id).await {
                        tracing::error!(kernel = %kernel.id, error = %e.message, "policy stop failed");
                    }
                }
            }
            taken.push((kernel.id.clone(), decision.action));
        }
        // The restriction covers the account: its other kernels stop too.
        if restricted {
            if let Standing::Restricted(when) = gate.standing() {
                let notice =
                    format!("Your kernels were stopped: your account is restricted {when}");
                self.stop_all_because("account_restricted", &notice).await;
            }
        }
        taken
    }

    /// Ends the kernel's runtime: a polite `shutdown_request`, then a kill after the wait.
    async fn stop_runtime(&self, kernel: &Arc<Kernel>, restart: bool) {
        kernel.expect_exit();
        let Some(runtime) = kernel.runtime() else {
            return;
        };
        kernel
            .send_own(
                Channel::Control,
                "shutdown_request",
                serde_json::json!({ "restart": restart }),
            )
            .await;
        if tokio::time::timeout(self.config.kernel_shutdown_wait, runtime.wait())
            .await
            .is_err()
        {
            tracing::warn!(kernel = %kernel.id, "kernel ignored shutdown_request; killing it");
            let _ = runtime.kill();
            let _ = tokio::time::timeout(Duration::from_secs(5), runtime.wait()).await;
        }
        kernel.detach().await;
        let _ = std::fs::remove_file(runtime.record().connection_file);
    }

    /// Restarts a kernel in place: same id, same clients, fresh process.
    /// A GPU kernel keeps its GPUs; one that holds none (it left the queue, or died) asks
    /// for them again and may wait in the queue.
    pub async fn restart(self: &Arc<Self>, id: &str) -> Result<Arc<Kernel>, ManagerError> {
        let kernel = self.get(id)?;
        // A restricted account's kernel does not come back.
        if let Some(gate) = &self.gate {
            gate.admit()?;
        }
        if kernel.is_waiting_for_gpu() {
            return Ok(kernel);
        }
        let _guard = kernel.lifecycle.lock().await;
        // From here until the new process is ready, clients' requests wait for it. Should the
        // restart fail or be abandoned (its HTTP request dropped), the kernel is dead, so
        // nothing waits forever and later requests are answered with why.
        let mut restarting = Restarting {
            kernel: &kernel,
            failed: Some("The kernel's restart was abandoned before it finished.".into()),
        };
        kernel.begin_restart();
        kernel.broadcast_status("restarting");
        match self.restart_locked(&kernel, id).await {
            Ok(()) => {
                restarting.failed = None;
                tracing::info!(kernel = %id, "kernel restarted");
                Ok(kernel.clone())
            }
            Err(e) => {
                tracing::error!(kernel = %id, error = %e, "kernel restart failed");
                restarting.failed =
                    Some(format!("The kernel could not be restarted: {}", e.message));
                Err(e)
            }
        }
    }

    /// The restart proper, under the kernel's lifecycle lock: the old runtime stopped, a new one
    /// launched, attached and ready (or, for a GPU kernel that must wait, queued).
    async fn restart_locked(
        self: &Arc<Self>,
        kernel: &Arc<Kernel>,
        id: &str,
    ) -> Result<(), ManagerError> {
        self.stop_runtime(kernel, true).await;
        let spec = self.kernelspec(&kernel.name).ok_or_else(|| {
            ManagerError::new(
                ErrorKind::NotFound,
                "kernelspec_not_found",
                format!("No such kernel named {}", kernel.name),
            )
        })?;
        let gpus = gpus_wanted(&spec);
        let devices = if gpus > 0 && kernel.gpu_request().is_none() {
            match self.request_gpus(kernel, &spec, gpus)? {
                Some(devices) => devices,
                None => {
                    // Queued: requests are held until a GPU is granted and the kernel runs.
                    kernel.broadcast_status("starting");
                    return Ok(());
                }
            }
        } else {
            kernel.gpus()
        };
        let key = uuid::Uuid::new_v4().to_string();
        let connection = self.new_connection(id, &key)?;
        let runtime = self.launch(id, &spec, &connection, &devices).await?;
        let result = async {
            self.store.insert_kernel(&KernelRecord {
                id: id.to_owned(),
                name: kernel.name.clone(),
                connection: serde_json::to_string(&connection).expect("serializes"),
                runtime: serde_json::to_string(&runtime.record()).expect("serializes"),
                started_at: iso_now(),
            })?;
            kernel
                .attach(
                    runtime.clone(),
                    &connection,
                    self.config.kernel_start_timeout,
                )
                .await?;
            kernel.wait_ready(self.config.kernel_start_timeout).await
        }
        .await;
        if result.is_err() {
            // A kernel that failed to restart is dead: it keeps no process.
            kernel.expect_exit();
            let _ = runtime.kill();
            kernel.detach().await;
            let _ = std::fs::remove_file(runtime.record().connection_file);
        }
        result
    }

    /// Shuts a kernel down and forgets it.
    pub async fn shutdown(&self, id: &str) -> Result<(), ManagerError> {
        self.shutdown_because(id, "").await
    }

    /// Shuts a kernel down; `reason` (a stable code, empty when the user asked) goes to the
    /// audit log with the GPUs it held.
    async fn shutdown_because(&self, id: &str, reason: &str) -> Result<(), ManagerError> {
        let kernel = self.get(id)?;
        let _guard = kernel.lifecycle.lock().await;
        self.stop_runtime(&kernel, false).await;
        // A queued kernel leaves the queue; a placed one's GPUs go to whoever waits.
        let gpu = kernel.take_gpu();
        if let Some(gpu) = &gpu {
            gpu.scheduler.exited(gpu.request);
        }
        kernel.set_failed("The kernel was shut down.".into());
        kernel.close_clients("kernel shut down");
        self.kernels.write().expect("not poisoned").remove(id);
        self.delete_row(id);
        tracing::info!(kernel = %id, "kernel shut down");
        let mut detail = serde_json::json!({});
        if !reason.is_empty() {
            detail["reason"] = reason.into();
        }
        if let Some(gpu) = gpu.filter(|gpu| !gpu.devices.is_empty()) {
            detail["gpus"] = gpu.devices.iter().map(|d| d.index).collect();
            detail["gpu_held_s"] = ((gpu.held_s * 1000.0).round() / 1000.0).into();
            self.record_gpu_usage(&gpu);
        }
        self.audit("kernel_stop", id, detail);
        Ok(())
    }

    /// Kills every kernel's runtime at once, without waiting (for tests and emergencies; a normal
    /// exit uses [`KernelManager::shutdown_all`]).
    pub fn kill_all(&self) {
        for kernel in self.kernels.read().expect("not poisoned").values() {
            kernel.expect_exit();
            if let Some(runtime) = kernel.runtime() {
                let _ = runtime.kill();
            }
        }
    }

    /// Shuts down every kernel (server exit).
    pub async fn shutdown_all(&self) {
        let ids: Vec<String> = self
            .kernels
            .read()
            .expect("not poisoned")
            .keys()
            .cloned()
            .collect();
        let stops = ids.iter().map(|id| self.shutdown(id));
        for result in futures_util::future::join_all(stops).await {
            if let Err(e) = result {
                tracing::warn!(error = %e, "kernel shutdown failed");
            }
        }
    }

    /// Stops every kernel because the account may no longer use them (`reason`, a stable code:
    /// restricted, removed): each notebook is told `notice`, its connections close with 1008,
    /// and the kernel is shut down.
    pub async fn stop_all_because(&self, reason: &str, notice: &str) {
        let kernels: Vec<Arc<Kernel>> = self
            .kernels
            .read()
            .expect("not poisoned")
            .values()
            .cloned()
            .collect();
        let stops = kernels.iter().map(|kernel| async move {
            kernel.notify(notice);
            kernel.close_clients_for_policy(reason);
            if let Err(e) = self.shutdown_because(&kernel.id, reason).await {
                tracing::warn!(kernel = %kernel.id, error = %e, reason, "could not stop a kernel");
            }
        });
        futures_util::future::join_all(stops).await;
        if !kernels.is_empty() {
            tracing::info!(
                kernels = kernels.len(),
                reason,
                "stopped an account's kernels"
            );
        }
    }

    /// Takes back the kernels a previous server process started. At once: every kernel whose
    /// process still runs is listed again (as `starting`, so its sessions are kept and clients
    /// may connect), and the records of the others are forgotten. The future returned then
    /// reattaches to the listed ones, all at the same time, and resolves to (reattached,
    /// cleaned up); the server listens meanwhile.
    ///
    /// A kernel may be busy with a cell that ran across the restart, so whether it lives is
    /// asked without queueing behind that cell: `kernel_info_request` on control, else the
    /// heartbeat. A kernel that answers neither is stopped and forgotten. What a reattached
    /// kernel sends for its clients from before is kept for their sessions until they
    /// reconnect.
    pub fn recover(
        self: &Arc<Self>,
    ) -> Result<impl std::future::Future<Output = (usize, usize)> + Send + 'static, ManagerError>
    {
        let mut cleaned = 0;
        let mut reattaching = Vec::new();
        for record in self.store.kernels()? {
            let parsed: Option<(ConnectionInfo, RuntimeRecord)> =
                serde_json::from_str(&record.connection)
                    .ok()
                    .zip(serde_json::from_str(&record.runtime).ok());
            let Some((connection, runtime_record)) = parsed else {
                self.store.delete_kernel(&record.id)?;
                cleaned += 1;
                continue;
            };
            let Some(runtime) = self.backend.reattach(&runtime_record) else {
                self.store.delete_kernel(&record.id)?;
                let _ = std::fs::remove_file(&runtime_record.connection_file);
                cleaned += 1;
                continue;
            };
            let spec_mode = self
                .kernelspec(&record.name)
                .map(|s| s.spec.interrupt_mode)
                .unwrap_or_default();
            let kernel = Kernel::new(
                record.id.clone(),
                record.name.clone(),
                spec_mode,
                self.config.hub_limits(),
                self.gate.clone(),
            );
            kernel.mark_recovered();
            self.kernels
                .write()
                .expect("not poisoned")
                .insert(record.id.clone(), kernel.clone());
            reattaching.push((kernel, Arc::<dyn Runtime>::from(runtime), connection));
        }
        let manager = self.clone();
        Ok(async move {
            let attached = reattaching
                .into_iter()
                .map(|(kernel, runtime, connection)| manager.reattach(kernel, runtime, connection));
            let attached = futures_util::future::join_all(attached).await;
            let reattached = attached.iter().filter(|ok| **ok).count();
            (reattached, cleaned + attached.len() - reattached)
        })
    }

    /// Connects to a kernel from a previous run and finds whether it lives; one that does not
    /// is stopped and forgotten. True when reattached.
    ///
    /// It is first asked on control over a connection of its own. When it answers, its
    /// sockets have let go of the killed server's connections, and the server connects as
    /// the kernel's stable identity, so replies to requests from before the restart arrive.
    /// When only its heartbeat answers, a cell's native code holds the interpreter and the
    /// old connections may still be held: a fresh identity is used instead (a second
    /// connection as an identity still held would be refused by the kernel), and replies to
    /// requests from before the restart are lost.
    async fn reattach(
        &self,
        kernel: Arc<Kernel>,
        runtime: Arc<dyn Runtime>,
        connection: ConnectionInfo,
    ) -> bool {
        let _guard = kernel.lifecycle.lock().await;
        let alive = async {
            let request = kernel.kernel_info_request();
            let answer =
                commonlab_kernel::ask_control(&connection, &request, RECOVER_CONTROL_WAIT).await;
            // Not every kernel answers on control while it runs a cell; every kernel echoes
            // its heartbeat.
            if answer.is_none() && !heartbeat_answers(&connection).await {
                return Err(unresponsive());
            }
            let identity = match &answer {
                Some(reply) => {
                    kernel.set_kernel_info(reply);
                    kernel.stable_identity()
                }
                None => {
                    tracing::info!(kernel = %kernel.id, "kernel from a previous run answers its heartbeat but not on control");
                    format!("commonlab-{}", uuid::Uuid::new_v4().simple())
                }
            };
            kernel
                .attach_as(runtime.clone(), &connection, &identity, RECOVER_CONNECT_WAIT)
                .await?;
            // Ready once it has answered over these connections and iopub has spoken; a
            // kernel that stopped answering meanwhile is kept while its heartbeat answers.
            if answer.is_some()
                && kernel
                    .wait_ready_on(Channel::Control, RECOVER_CONTROL_WAIT)
                    .await
                    .is_ok()
            {
                return Ok(());
            }
            if answer.is_some() && !heartbeat_answers(&connection).await {
                return Err(unresponsive());
            }
            kernel.set_alive();
            Ok(())
        }
        .await;
        match alive {
            Ok(()) => {
                kernel.settle_recovered().await;
                tracing::info!(kernel = %kernel.id, "reattached to a kernel from a previous run");
                true
            }
            Err(e) => {
                tracing::warn!(kernel = %kernel.id, error = %e, "kernel from a previous run is unresponsive; stopping it");
                kernel.expect_exit();
                let _ = runtime.kill();
                kernel.detach().await;
                // The backend clears what the kernel left once it has ended.
                let _ = tokio::time::timeout(Duration::from_secs(5), runtime.wait()).await;
                kernel.set_failed(format!(
                    "The kernel from before the server restarted did not answer: {}",
                    e.message
                ));
                kernel.close_clients("kernel unresponsive after a server restart");
                self.kernels
                    .write()
                    .expect("not poisoned")
                    .remove(&kernel.id);
                if let Err(e) = self.store.delete_kernel(&kernel.id) {
                    tracing::error!(kernel = %kernel.id, error = %e, "could not forget an unresponsive kernel");
                }
                let _ = std::fs::remove_file(runtime.record().connection_file);
                false
            }
        }
    }
}

/// Whether the kernel echoes its heartbeat, asked a few times.
async fn heartbeat_answers(connection: &ConnectionInfo) -> bool {
    for _ in 0..RECOVER_HEARTBEAT_TRIES {
        if commonlab_kernel::heartbeat(connection, RECOVER_HEARTBEAT_WAIT).await {
            return true;
        }
    }
    false
}

fn unresponsive() -> ManagerError {
    ManagerError::new(
        ErrorKind::Unavailable,
        "kernel_unresponsive",
        "The kernel answered neither on its control channel nor its heartbeat.",
    )
}

/// How long a kernel from a previous run has to accept connections again.
const RECOVER_CONNECT_WAIT: Duration = Duration::from_secs(5);
/// How long it has to answer `kernel_info_request` on control.
const RECOVER_CONTROL_WAIT: Duration = Duration::from_secs(5);
/// Then, heartbeat probes of this long each, this many.
const RECOVER_HEARTBEAT_WAIT: Duration = Duration::from_secs(2);
const RECOVER_HEARTBEAT_TRIES: usize = 3;

/// Applies the scheduler's notices to one GPU kernel until the scheduler forgets it. Holds the
/// manager and kernel weakly between notices.
async fn drive_gpu(
    manager: std::sync::Weak<KernelManager>,
    kernel: std::sync::Weak<Kernel>,
    mut notices: tokio::sync::mpsc::UnboundedReceiver<GpuNotice>,
) {
    while let Some(notice) = notices.recv().await {
        let (Some(manager), Some(kernel)) = (manager.upgrade(), kernel.upgrade()) else {
            return;
        };
        manager.apply_gpu_notice(&kernel, notice).await;
    }
}

/// A bare `python`, `python3` or `python3.N` as the program means the server's Python, as
/// jupyter_client reads it (kernelspecs installed into an environment are written that way).
fn resolve_python_argv(argv: &[String], python: Option<&String>) -> Vec<String> {
    let mut argv = argv.to_vec();
    if let (Some(program), Some(python)) = (argv.first_mut(), python) {
        let bare = program == "python"
            || program == "python3"
            || program.strip_prefix("python3.").is_some_and(|minor| {
                !minor.is_empty() && minor.bytes().all(|b| b.is_ascii_digit())
            });
        if bare {
            *program = python.clone();
        }
    }
    argv
}

/// A restart under way: unless it finished (`failed` is `None`), the kernel is marked dead with
/// `failed` as the reason when this is dropped, also when the restart's future is dropped.
struct Restarting<'a> {
    kernel: &'a Kernel,
    failed: Option<String>,
}

impl Drop for Restarting<'_> {
    fn drop(&mut self) {
        if let Some(why) = self.failed.take() {
            self.kernel.set_failed(why);
            self.kernel.broadcast_status("dead");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::resolve_python_argv;

    #[test]
    fn bare_python_in_a_kernelspec_means_the_servers_python() {
        let python = "/envs/k/bin/python".to_owned();
        let argv = |s: &str| s.split(' ').map(str::to_owned).collect::<Vec<_>>();
        for bare in ["python", "python3", "python3.11"] {
            let resolved = resolve_python_argv(
                &argv(&format!("{bare} -m ipykernel_launcher")),
                Some(&python),
            );
            assert_eq!(resolved[0], python, "{bare}");
        }
        for kept in ["/usr/bin/python3", "python3.x", "julia", "pythonista"] {
            assert_eq!(resolve_python_argv(&argv(kept), Some(&python))[0], kept);
        }
        assert_eq!(resolve_python_argv(&argv("python"), None)[0], "python");
    }
}
