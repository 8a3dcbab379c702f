//! Accounts mode wiring: each user's server (workspace, kernels, sessions, contents, lab
//! state) built from the configuration when the hub first needs it.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use commonlab_manager::{
    ContentsConfig, ContentsManager, GpuScheduler, KernelManager, KernelManagerConfig, PolicyGate,
    PythonEnv, SessionManager,
};
use commonlab_runtime::{
    LocalBackend, RuntimeBackend, SandboxBackend, SandboxIdentity, SandboxLimits, SandboxSpec,
};
use commonlab_server::{AccountsAuth, AppState, EdgeLimits, LabAssets, UserServers};
use commonlab_store::{Store, UserRecord};

use crate::config::Config;

/// Everything shared by all users' servers.
pub(crate) struct UserServerFactory {
    pub(crate) config: Config,
    pub(crate) data_dir: PathBuf,
    pub(crate) workspaces_dir: PathBuf,
    pub(crate) python: PythonEnv,
    pub(crate) kernelspec_dirs: Vec<PathBuf>,
    pub(crate) store: Arc<Store>,
    pub(crate) policy: Arc<commonlab_policy::Policy>,
    /// The hub's base URL, ending in `/`.
    pub(crate) base_url: String,
    /// Where kernels are placed: one sandbox backend for everyone, or `None` for unconfined
    /// local kernels (each user gets their own runtime directory).
    pub(crate) sandbox: Option<Arc<SandboxBackend>>,
    /// The GPUs every user's GPU kernels share, when the server has any.
    pub(crate) gpu: Option<Arc<GpuScheduler>>,
}

impl UserServerFactory {
    /// The user's workspace: created on first use, owned by their sandbox identity, closed to
    /// everyone else.
    fn workspace(&self, user: &UserRecord) -> Result<PathBuf, String> {
        let dir = self.workspaces_dir.join(&user.name);
        make_private_dir(&dir, Some(user.uid))?;
        let bytes = self
            .tier_limits(user)
            .map(|t| t.workspace_bytes_max)
            .unwrap_or(0);
        if self.sandbox.is_some() && bytes > 0 {
            let image = volume_image(&self.data_dir, &user.name);
            mount_volume(&image, &dir, bytes, user.uid)?;
            make_private_dir(&dir, Some(user.uid))?;
        }
        Ok(dir)
    }

    fn tier_limits(&self, user: &UserRecord) -> Option<&crate::config::TierLimits> {
        let tiers = &self.config.sandbox.tiers;
        tiers.get(&user.tier).or_else(|| tiers.get("free"))
    }

    fn backend(&self, user: &UserRecord) -> Arc<dyn RuntimeBackend> {
        match &self.sandbox {
            Some(sandbox) => sandbox.clone(),
            None => Arc::new(LocalBackend::new(
                self.data_dir.join("users").join(&user.name).join("runtime"),
            )),
        }
    }

    /// The user's sandbox: their own uid, their tier's limits, their workspace.
    fn sandbox_spec(&self, user: &UserRecord, workspace: &Path) -> Option<SandboxSpec> {
        self.sandbox.as_ref()?;
        let limits = match self.tier_limits(user) {
            Some(limits) => limits.to_limits(),
            None => SandboxLimits::default(),
        };
        Some(SandboxSpec {
            identity: SandboxIdentity {
                uid: user.uid,
                gid: user.uid,
            },
            limits,
            workspace: workspace.to_owned(),
            devices: Vec::new(),
        })
    }
}

/// Creates `dir` (and parents) with mode 0700, owned by `uid` when given.
pub(crate) fn make_private_dir(dir: &Path, uid: Option<u32>) -> Result<(), String> {
    make_dir_with_mode(dir, 0o700, uid)
}

/// Creates `dir` (and parents) with mode 0711: others may pass through to what they own
/// inside, but not list it.
pub(crate) fn make_traversable_dir(dir: &Path) -> Result<(), String> {
    make_dir_with_mode(dir, 0o711, None)
}

fn make_dir_with_mode(dir: &Path, mode: u32, uid: Option<u32>) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir).map_err(|e| format!("could not create {}: {e}", dir.display()))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode))
        .map_err(|e| format!("could not set the mode of {}: {e}", dir.display()))?;
    if let Some(uid) = uid {
        if nix::unistd::geteuid().is_root() {
            nix::unistd::chown(
                dir,
                Some(nix::unistd::Uid::from_raw(uid)),
                Some(nix::unistd::Gid::from_raw(uid)),
            )
            .map_err(|e| format!("could not give {} to uid {uid}: {e}", dir.display()))?;
        }
    }
    Ok(())
}

/// Unmounts the workspace volumes `mount_volume` mounted under `workspaces_dir` (their loop
/// devices are released with them), when the server stops with no kernel left. A volume that is
/// still busy stays mounted, with a warning; the next start uses it as it is.
pub(crate) fn unmount_volumes(workspaces_dir: &Path, data_dir: &Path) {
    let Ok(entries) = std::fs::read_dir(workspaces_dir) else {
        return;
    };
    for entry in entries.flatten() {
        let dir = entry.path();
        let image = volume_image(data_dir, &entry.file_name().to_string_lossy());
        if !is_mountpoint(&dir) || !image.is_file() {
            continue;
        }
        match std::process::Command::new("umount").arg(&dir).output() {
            Ok(output) if output.status.success() => {
                tracing::debug!(workspace = %dir.display(), "workspace volume unmounted");
            }
            Ok(output) => tracing::warn!(
                workspace = %dir.display(),
                error = %String::from_utf8_lossy(&output.stderr).trim(),
                "could not unmount a workspace volume; it stays mounted"
            ),
            Err(e) => {
                tracing::warn!(workspace = %dir.display(), error = %e, "could not run umount")
            }
        }
    }
}

/// The image of `user`'s workspace volume.
fn volume_image(data_dir: &Path, user: &str) -> PathBuf {
    data_dir.join("volumes").join(format!("{user}.ext4"))
}

/// Whether `dir` is a mount point (on another device than its parent).
fn is_mountpoint(dir: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(dir), dir.parent().map(std::fs::metadata)) {
        (Ok(d), Some(Ok(p))) => d.dev() != p.dev(),
        _ => false,
    }
}

/// Gives `dir` its own ext4 filesystem of `bytes`, from a sparse image (created on first use,
/// grown when the limit grows), loop-mounted `nosuid,nodev`. A `dir` that already holds files
/// and is not yet a volume is left alone, with a warning, so no one's work is hidden.
fn mount_volume(image: &Path, dir: &Path, bytes: u64, uid: u32) -> Result<(), String> {
    let run = |program: &str, args: &[&std::ffi::OsStr]| -> Result<(), String> {
        let output = std::process::Command::new(program)
            .args(args)
            .output()
            .map_err(|e| format!("could not run {program}: {e}"))?;
        if output.status.success() {
            Ok(())
        } else {
            Err(format!(
                "{program} failed: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            ))
        }
    };
    if is_mountpoint(dir) {
        return Ok(());
    }
    let has_files = std::fs::read_dir(dir)
        .map_err(|e| format!("could not read {}: {e}", dir.display()))?
        .next()
        .is_some();
    if has_files {
        tracing::warn!(workspace = %dir.display(), "this workspace already holds files, so it is not given its own size-limited volume; move its files out and back in to limit it");
        return Ok(());
    }
    if let Some(parent) = image.parent() {
        make_private_dir(parent, None)?;
    }
    let fresh = !image.exists();
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(image)
        .map_err(|e| format!("could not create {}: {e}", image.display()))?;
    let current = file.metadata().map(|m| m.len()).unwrap_or(0);
    if current < bytes {
        file.set_len(bytes)
            .map_err(|e| format!("could not size {}: {e}", image.display()))?;
    }
    drop(file);
    if fresh {
        let owner = format!("root_owner={uid}:{uid}");
        run(
            "mkfs.ext4",
            &[
                "-q".as_ref(),
                "-F".as_ref(),
                "-m".as_ref(),
                "0".as_ref(),
                "-E".as_ref(),
                owner.as_ref(),
                image.as_os_str(),
            ],
        )?;
    } else if current < bytes {
        run("e2fsck", &["-f".as_ref(), "-p".as_ref(), image.as_os_str()])?;
        run("resize2fs", &[image.as_os_str()])?;
    }
    run(
        "mount",
        &[
            "-o".as_ref(),
            "loop,nosuid,nodev".as_ref(),
            image.as_os_str(),
            dir.as_os_str(),
        ],
    )?;
    // A fresh ext4 has lost+found; it is the user's to see, but keep it out of their way.
    let _ = std::fs::remove_dir(dir.join("lost+found"));
    Ok(())
}

impl UserServers for UserServerFactory {
    fn build(&self, user: &UserRecord) -> Result<AppState, String> {
        let config = &self.config;
        let workspace = self.workspace(user)?;
        let state_dir = self.data_dir.join("users").join(&user.name);
        make_private_dir(&state_dir, None)?;
        // Every kernel, session and finding this server records is stamped with the user's
        // name, and it reads back only those.
        let store = Arc::new(self.store.for_owner(&user.name));
        let mut kernels = KernelManager::new(
            KernelManagerConfig {
                root_dir: workspace.clone(),
                kernelspec_dirs: self.kernelspec_dirs.clone(),
                default_kernel_name: config.kernel.default_name.clone(),
                fallback_spec: Some(self.python.kernelspec()),
                kernel_start_timeout: Duration::from_secs(config.kernel.start_timeout_s),
                kernel_shutdown_wait: Duration::from_secs(config.kernel.shutdown_wait_s),
                ws_send_queue_bytes_max: config.kernel.ws_send_queue_bytes_max,
                ws_buffer_bytes_max: config.kernel.ws_buffer_bytes_max,
                ws_buffer_messages_max: config.kernel.ws_buffer_messages_max,
                sandbox: self.sandbox_spec(user, &workspace),
            },
            self.backend(user),
            store.clone(),
        )
        .with_policy_gate(
            PolicyGate::new(self.policy.clone(), user.tier.clone(), store.clone())
                .with_restriction_period(Duration::from_secs(config.accounts.restriction_s)),
        );
        if let Some(gpu) = &self.gpu {
            kernels = kernels.with_gpu_scheduler(gpu.clone(), &user.name, &user.tier);
        }
        let kernels = Arc::new(kernels);
        let sessions = Arc::new(SessionManager::new(kernels.clone(), store));
        let contents = Arc::new(ContentsManager::new(ContentsConfig {
            root_dir: workspace.clone(),
            upload_bytes_max: config.contents.upload_bytes_max,
            owner: self.sandbox.as_ref().map(|_| (user.uid, user.uid)),
        }));
        contents.remove_stale_temporaries_in_background();
        let lab = LabAssets::discover(&self.python.prefix, &state_dir, &workspace).map(Arc::new);
        Ok(AppState {
            kernels,
            sessions,
            contents,
            token: Arc::new(String::new()),
            limits: EdgeLimits {
                ws_message_bytes_max: config.server.ws_message_bytes_max,
                request_body_bytes_max: config.server.request_body_bytes_max,
            },
            base_url: format!("{}user/{}/", self.base_url, user.name),
            lab,
            accounts: Some(AccountsAuth {
                store: self.store.clone(),
                owner: user.name.clone(),
            }),
        })
    }
}

/// The uid range this server holds on its host, for as long as it lives: a locked claim file in
/// the claims directory. Dropping it releases the lock and removes the file.
pub(crate) struct UidClaim {
    path: PathBuf,
    _lock: nix::fcntl::Flock<std::fs::File>,
}

impl Drop for UidClaim {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Claims `range` for the server with `data_dir`: refuses when a running server holds a claim
/// on an overlapping range (its lock is still held), and clears claims their servers left when
/// they died. The whole check runs under one lock of the directory, so two servers starting at
/// once cannot both pass it.
pub(crate) fn claim_uid_range(
    claims_dir: &Path,
    range: commonlab_store::UidRange,
    data_dir: &Path,
) -> Result<UidClaim, String> {
    use nix::fcntl::{Flock, FlockArg};
    std::fs::create_dir_all(claims_dir)
        .map_err(|e| format!("could not create {}: {e}", claims_dir.display()))?;
    let open = |path: &Path| {
        std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(path)
            .map_err(|e| format!("could not open {}: {e}", path.display()))
    };
    let dir_lock = Flock::lock(
        open(&claims_dir.join("claims.lock"))?,
        FlockArg::LockExclusive,
    )
    .map_err(|(_, e)| format!("could not lock {}: {e}", claims_dir.display()))?;
    let own_name = format!("uids-{}-{}.claim", range.base, range.count);
    let entries = std::fs::read_dir(claims_dir)
        .map_err(|e| format!("could not read {}: {e}", claims_dir.display()))?;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(other) = name
            .strip_prefix("uids-")
            .and_then(|n| n.strip_suffix(".claim"))
            .and_then(|n| n.split_once('-'))
            .and_then(|(b, c)| {
                Some(commonlab_store::UidRange {
                    base: b.parse().ok()?,
                    count: c.parse().ok()?,
                })
            })
        else {
            continue;
        };
        if !other.overlaps(&range) {
            continue;
        }
        let path = entry.path();
        match Flock::lock(open(&path)?, FlockArg::LockExclusiveNonblock) {
            // Its server is gone; the claim is stale (ours is made again below).
            Ok(_stale) => {
                let _ = std::fs::remove_file(&path);
            }
            Err((_, _)) => {
                let holder = std::fs::read_to_string(&path).unwrap_or_default();
                return Err(format!(
                    "the uids {}..={} overlap the uids {}..={} that another Commonlab server on this host uses ({}); users of two servers must never share a uid: give this one its own range with accounts.uid_base and accounts.uid_count",
                    range.base,
                    range.last(),
                    other.base,
                    other.last(),
                    holder.trim()
                ));
            }
        }
    }
    let path = claims_dir.join(own_name);
    let file = open(&path)?;
    let mut lock = Flock::lock(file, FlockArg::LockExclusiveNonblock)
        .map_err(|(_, e)| format!("could not lock {}: {e}", path.display()))?;
    {
        use std::io::Write;
        let file: &mut std::fs::File = &mut lock;
        file.set_len(0)
            .and_then(|()| {
                writeln!(
                    file,
                    "data directory {}, pid {}",
                    data_dir.display(),
                    std::process::id()
                )
            })
            .map_err(|e| format!("could not write {}: {e}", path.display()))?;
    }
    drop(dir_lock);
    Ok(UidClaim { path, _lock: lock })
}
