//! The sandbox backend: every kernel runs under bubblewrap in its own user, mount, pid, ipc, uts
//! and network namespaces, as an unprivileged host uid and gid of its own, inside cgroups that
//! limit its CPU, memory and process count, and reaches the server only through `ipc` sockets in
//! a per-kernel directory.
//!
//! A launch goes: [`RuntimeBackend::connection_for`] picks the socket directory; `launch` creates
//! it (owned by the kernel's uid, mode 0700) with the connection file inside, asks the launcher
//! to check that the uid can reach every bound path, creates the cgroup, and starts the launcher
//! (`exec.rs`), which joins the cgroup, drops privileges and runs bubblewrap with the command
//! line `bwrap.rs` builds and the seccomp filter `seccomp.rs` compiles. When the kernel ends,
//! whatever is left in its cgroup is killed, the memory controller is asked whether the limit
//! killed it, and the cgroup and the socket directory are removed.

mod bwrap;
mod cgroup;
mod exec;
mod observe;
mod seccomp;

use std::collections::BTreeMap;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use commonlab_protocol::{ConnectionInfo, Transport};
use futures_util::future::BoxFuture;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::local::process_start_ticks;
use crate::{ExitInfo, LaunchSpec, OomInfo, Runtime, RuntimeBackend, RuntimeError, RuntimeRecord};

pub use cgroup::{CgroupVersion, KernelCgroup};
pub use exec::sandbox_exec_main;
pub use observe::{list_processes, ProcessInfo};

use cgroup::CgroupDriver;

/// The unprivileged host identity a kernel runs as. Distinct per user, never 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SandboxIdentity {
    pub uid: u32,
    pub gid: u32,
}

/// The limits of one runtime (set per tier by the caller).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxLimits {
    /// Memory (RAM, page cache and the /tmp tmpfs), with no swap.
    pub memory_bytes_max: u64,
    /// CPU time per wall time, in thousandths of a CPU (`1500` = one and a half CPUs);
    /// `None` for no quota.
    pub cpu_millicores_max: Option<u32>,
    /// Processes and threads in the runtime, including the launcher and bubblewrap's two.
    pub pids_max: u64,
    /// The size of the private /tmp.
    pub tmp_bytes_max: u64,
    /// The largest file a kernel may write (`RLIMIT_FSIZE`).
    pub file_bytes_max: u64,
    /// Open files per process (`RLIMIT_NOFILE`).
    pub open_files_max: u64,
    /// Memory all runtimes of one identity (uid) hold together, on top of each one's own
    /// limit; `None` for no total. Their cgroups share a parent holding it.
    pub memory_bytes_max_total: Option<u64>,
    /// CPU all runtimes of one identity use together, in thousandths of a CPU; `None` for no
    /// total. A runtime's own quota is never more than this.
    pub cpu_millicores_max_total: Option<u32>,
}

impl Default for SandboxLimits {
    fn default() -> SandboxLimits {
        SandboxLimits {
            memory_bytes_max: 2 << 30,
            cpu_millicores_max: Some(1000),
            pids_max: 256,
            tmp_bytes_max: 256 << 20,
            file_bytes_max: 1 << 30,
            open_files_max: 1024,
            memory_bytes_max_total: None,
            cpu_millicores_max_total: None,
        }
    }
}

/// Who a sandboxed kernel runs as, within which limits, and which directory it may write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxSpec {
    pub identity: SandboxIdentity,
    pub limits: SandboxLimits,
    /// Bound writable at the same path, and the kernel's `HOME`. Must be writable by the
    /// identity; the launch's `cwd` must lie inside it.
    pub workspace: PathBuf,
    /// Device nodes the kernel may use (the GPUs granted to it), each bound with `--dev-bind`
    /// at `/dev/<its file name>` inside; no other host device is there.
    pub devices: Vec<PathBuf>,
}

/// How the sandbox backend is set up (once per server).
#[derive(Debug, Clone)]
pub struct SandboxConfig {
    /// Per-kernel socket directories go here. Every directory above it must be searchable by
    /// kernel uids (mode 0711 is enough); it is created with that mode when missing.
    pub runtime_dir: PathBuf,
    /// The launcher program: the server's own binary in production.
    pub launcher: PathBuf,
    /// Arguments before the launcher's own (`["sandbox-exec"]` for `commonlab sandbox-exec`).
    pub launcher_args: Vec<String>,
    /// bubblewrap.
    pub bwrap: PathBuf,
    /// Directories bound read-only besides the system ones and the kernel's Python environment.
    pub read_only_dirs: Vec<PathBuf>,
    /// Network access from inside (package installs): a user-mode network by slirp4netns, run as
    /// the kernel's uid, with the host's loopback unreachable. Off: loopback only.
    pub egress: bool,
    /// slirp4netns, for egress.
    pub slirp4netns: PathBuf,
    /// Where the cgroup hierarchies are mounted.
    pub cgroup_root: PathBuf,
}

impl SandboxConfig {
    /// The defaults: Debian's `/usr/bin/bwrap`, cgroups under `/sys/fs/cgroup`, no egress.
    pub fn new(runtime_dir: PathBuf, launcher: PathBuf, launcher_args: Vec<String>) -> Self {
        SandboxConfig {
            runtime_dir,
            launcher,
            launcher_args,
            bwrap: PathBuf::from("/usr/bin/bwrap"),
            read_only_dirs: Vec::new(),
            egress: false,
            slirp4netns: PathBuf::from("/usr/bin/slirp4netns"),
            cgroup_root: PathBuf::from("/sys/fs/cgroup"),
        }
    }
}

/// Where a sandboxed runtime's cgroup and socket directory are, kept in its [`RuntimeRecord`].
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SandboxRecord {
    pub cgroup: KernelCgroup,
    pub ipc_dir: PathBuf,
}

/// Launches kernels in sandboxes. The server must run as root (it drops to each kernel's uid).
#[derive(Debug, Clone)]
pub struct SandboxBackend {
    config: SandboxConfig,
    cgroups: Arc<dyn CgroupDriver>,
}

impl SandboxBackend {
    /// Checks the host (root, bubblewrap, cgroups) and the config, and creates `runtime_dir`.
    pub fn new(config: SandboxConfig) -> Result<SandboxBackend, RuntimeError> {
        let fail = |m: String| Err(RuntimeError::Sandbox(m));
        if config.egress && !config.slirp4netns.is_file() {
            return fail(format!(
                "egress needs slirp4netns at {} (install Debian's slirp4netns package, or set egress = false)",
                config.slirp4netns.display()
            ));
        }
        if !nix::unistd::geteuid().is_root() {
            return fail("the sandbox backend needs the server to run as root, to start each kernel as its own unprivileged uid".into());
        }
        if !config.bwrap.is_file() {
            return fail(format!(
                "bubblewrap not found at {} (install Debian's bubblewrap package)",
                config.bwrap.display()
            ));
        }
        if !config.runtime_dir.is_absolute() {
            return fail(format!(
                "the runtime directory {} must be an absolute path",
                config.runtime_dir.display()
            ));
        }
        if !config.runtime_dir.exists() {
            std::fs::create_dir_all(&config.runtime_dir)
                .and_then(|()| {
                    std::fs::set_permissions(
                        &config.runtime_dir,
                        std::fs::Permissions::from_mode(0o711),
                    )
                })
                .map_err(|e| {
                    RuntimeError::Sandbox(format!("creating {}: {e}", config.runtime_dir.display()))
                })?;
        }
        for dir in config.runtime_dir.ancestors() {
            use std::os::unix::fs::MetadataExt;
            let mode = std::fs::metadata(dir).map(|m| m.mode()).unwrap_or(0);
            if mode & 0o001 == 0 {
                return fail(format!(
                    "kernels cannot reach their sockets under {}: {} has mode {:o}; every directory above the runtime directory must be searchable by others (o+x, e.g. 0711)",
                    config.runtime_dir.display(),
                    dir.display(),
                    mode & 0o7777
                ));
            }
        }
        let cgroups = cgroup::detect(&config.cgroup_root).map_err(RuntimeError::Sandbox)?;
        Ok(SandboxBackend {
            config,
            cgroups: Arc::from(cgroups),
        })
    }

    /// The cgroup interface in use.
    pub fn cgroup_version(&self) -> CgroupVersion {
        self.cgroups.version()
    }

    fn launcher(&self, identity: SandboxIdentity) -> tokio::process::Command {
        let mut command = tokio::process::Command::new(&self.config.launcher);
        command
            .args(&self.config.launcher_args)
            .args(["--uid", &identity.uid.to_string()])
            .args(["--gid", &identity.gid.to_string()])
            .env_clear()
            .stdin(Stdio::null());
        command
    }

    /// The socket directory named by a connection from [`RuntimeBackend::connection_for`].
    fn ipc_dir(&self, connection: &ConnectionInfo) -> Result<PathBuf, RuntimeError> {
        let ip = Path::new(&connection.ip);
        let dir = ip.parent().filter(|dir| {
            connection.transport == Transport::Ipc
                && dir.parent() == Some(self.config.runtime_dir.as_path())
                && dir
                    .file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("k-"))
        });
        dir.map(Path::to_owned).ok_or_else(|| {
            RuntimeError::Sandbox(format!(
                "the connection {} was not made by this backend's connection_for",
                connection.ip
            ))
        })
    }

    async fn launch_sandboxed(&self, spec: LaunchSpec) -> Result<Box<dyn Runtime>, RuntimeError> {
        let sandbox = spec.sandbox.clone().ok_or_else(|| {
            RuntimeError::Sandbox(
                "the sandbox backend needs a sandbox spec for every launch".into(),
            )
        })?;
        if spec.argv.is_empty() {
            return Err(RuntimeError::EmptyArgv);
        }
        let identity = sandbox.identity;
        if identity.uid == 0 || identity.gid == 0 {
            return Err(RuntimeError::Sandbox(
                "a kernel never runs as uid or gid 0".into(),
            ));
        }
        let ipc_dir = self.ipc_dir(&spec.connection)?;
        let workspace = &sandbox.workspace;
        if !workspace.is_absolute() || !spec.cwd.starts_with(workspace) {
            return Err(RuntimeError::Sandbox(format!(
                "the kernel's directory {} must be inside its workspace {}",
                spec.cwd.display(),
                workspace.display()
            )));
        }
        let program = resolve_program(&spec.argv[0], &spec.env);
        let mut read_only = bwrap::python_dirs(&program);
        read_only.extend(self.config.read_only_dirs.iter().cloned());
        for dir in read_only.iter().chain([workspace]) {
            if self.config.runtime_dir.starts_with(dir) {
                return Err(RuntimeError::Sandbox(format!(
                    "{} would expose the runtime directory {} inside the sandbox",
                    dir.display(),
                    self.config.runtime_dir.display()
                )));
            }
        }
        let connection_file = create_ipc_dir(&ipc_dir, identity, &spec.connection)?;
        let cleanup_dir = || {
            remove_ipc_dir(&ipc_dir);
        };
        let file = connection_file.display().to_string();
        let argv: Vec<String> = spec
            .argv
            .iter()
            .map(|a| a.replace("{connection_file}", &file))
            .collect();
        let mut env = BTreeMap::from([
            ("HOME".to_owned(), workspace.display().to_string()),
            ("LANG".to_owned(), "C.UTF-8".to_owned()),
            ("TMPDIR".to_owned(), "/tmp".to_owned()),
            ("PATH".to_owned(), sandbox_path(&program)),
        ]);
        env.extend(spec.env.clone());
        // With egress, names resolve through slirp4netns's DNS (the host's resolver may be on
        // its loopback, which the sandbox cannot reach).
        let resolv_conf = if self.config.egress
            && std::fs::symlink_metadata("/etc/resolv.conf").is_ok_and(|m| m.is_file())
        {
            let path = ipc_dir.join("resolv.conf");
            if let Err(e) = std::fs::write(&path, "nameserver 10.0.2.3\n") {
                cleanup_dir();
                return Err(RuntimeError::Sandbox(format!(
                    "could not write {}: {e}",
                    path.display()
                )));
            }
            Some(path)
        } else {
            None
        };
        let plan = bwrap::Plan {
            egress: self.config.egress,
            resolv_conf,
            bwrap: self.config.bwrap.clone(),
            system: bwrap::system_entries(),
            tmp_bytes_max: sandbox.limits.tmp_bytes_max,
            read_only: read_only.clone(),
            writable: vec![workspace.clone(), ipc_dir.clone()],
            devices: sandbox.devices.clone(),
            cwd: spec.cwd.clone(),
            env,
            argv,
        };
        let mut checks: Vec<String> = Vec::new();
        for dir in read_only.iter().chain([&program, &self.config.bwrap]) {
            checks.extend(["--read".to_owned(), dir.display().to_string()]);
        }
        for dir in [workspace, &ipc_dir] {
            checks.extend(["--write".to_owned(), dir.display().to_string()]);
        }
        let checked = self
            .launcher(identity)
            .args(&checks)
            .args(["--seccomp", "--check-only"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .await;
        match checked {
            Ok(output) if output.status.success() => {}
            Ok(output) => {
                cleanup_dir();
                let stderr = String::from_utf8_lossy(&output.stderr);
                return Err(RuntimeError::Sandbox(stderr.trim().to_owned()));
            }
            Err(e) => {
                cleanup_dir();
                return Err(RuntimeError::Spawn {
                    program: self.config.launcher.display().to_string(),
                    detail: e.to_string(),
                });
            }
        }
        let cgroup_name = ipc_dir
            .file_name()
            .expect("checked by ipc_dir")
            .to_string_lossy()
            .into_owned();
        // Every runtime of one uid sits in that uid's group, which holds their totals.
        let group = cgroup::group_name(identity.uid);
        let cgroup =
            match self
                .cgroups
                .create(&group, &cgroup_name, &sandbox.limits, &sandbox.devices)
            {
                Ok(cgroup) => cgroup,
                Err(e) => {
                    cleanup_dir();
                    return Err(RuntimeError::Sandbox(e));
                }
            };
        let limits = &sandbox.limits;
        let mut command = self.launcher(identity);
        for file in self.cgroups.procs_files(&cgroup) {
            command.arg("--join").arg(file);
        }
        command
            .args(["--rlimit", &format!("fsize={}", limits.file_bytes_max)])
            .args(["--rlimit", &format!("nofile={}", limits.open_files_max)])
            .args(["--rlimit", "core=0"]);
        if self.config.egress {
            command.arg("--egress").arg(&self.config.slirp4netns);
        }
        command
            .arg("--seccomp")
            .arg("--")
            .args(plan.command())
            .process_group(0)
            .kill_on_drop(false);
        let child = match command.spawn() {
            Ok(child) => child,
            Err(e) => {
                let _ = self.cgroups.remove(&cgroup);
                cleanup_dir();
                return Err(RuntimeError::Spawn {
                    program: self.config.launcher.display().to_string(),
                    detail: e.to_string(),
                });
            }
        };
        let pid = child.id().expect("a just-spawned child has a pid") as i32;
        let record = RuntimeRecord {
            backend: "sandbox".into(),
            pid,
            start_ticks: process_start_ticks(pid).unwrap_or(0),
            connection_file,
            sandbox: Some(SandboxRecord {
                cgroup: cgroup.clone(),
                ipc_dir,
            }),
        };
        Ok(Box::new(SandboxRuntime::watch_child(
            record,
            self.cgroups.clone(),
            child,
        )))
    }
}

/// `argv[0]` as a path: a bare name is looked up on the kernelspec's `PATH`, else the server's.
fn resolve_program(program: &str, env: &BTreeMap<String, String>) -> PathBuf {
    if program.contains('/') {
        return PathBuf::from(program);
    }
    let path = env
        .get("PATH")
        .cloned()
        .or_else(|| std::env::var("PATH").ok())
        .unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| PathBuf::from(program))
}

/// `PATH` inside: the program's own directory (a venv's `bin`) first, then the system's.
fn sandbox_path(program: &Path) -> String {
    let mut dirs: Vec<String> = Vec::new();
    if let Some(bin) = program.parent().filter(|p| !p.as_os_str().is_empty()) {
        dirs.push(bin.display().to_string());
    }
    dirs.extend(["/usr/local/bin", "/usr/bin", "/bin"].map(String::from));
    dirs.dedup();
    dirs.join(":")
}

/// Creates the socket directory (mode 0700, owned by the kernel's uid) and the connection file.
fn create_ipc_dir(
    dir: &Path,
    identity: SandboxIdentity,
    connection: &ConnectionInfo,
) -> Result<PathBuf, RuntimeError> {
    let path = dir.join("connection.json");
    let err = |e: std::io::Error| RuntimeError::ConnectionFile {
        path: path.display().to_string(),
        detail: e.to_string(),
    };
    let owner = (
        Some(nix::unistd::Uid::from_raw(identity.uid)),
        Some(nix::unistd::Gid::from_raw(identity.gid)),
    );
    std::fs::create_dir(dir).map_err(err)?;
    let result = (|| {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
        // The kernel may write here, so it is a small file system of its own: nothing it
        // writes beside its sockets can fill the disk that holds the server's database.
        nix::mount::mount(
            Some("tmpfs"),
            dir,
            Some("tmpfs"),
            nix::mount::MsFlags::MS_NOSUID
                | nix::mount::MsFlags::MS_NODEV
                | nix::mount::MsFlags::MS_NOEXEC,
            Some(
                format!(
                    "size={IPC_DIR_BYTES_MAX},nr_inodes={IPC_DIR_INODES_MAX},mode=0700,uid={},gid={}",
                    identity.uid, identity.gid
                )
                .as_str(),
            ),
        )?;
        let body = serde_json::to_vec_pretty(connection).expect("connection info serializes");
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)?;
        std::io::Write::write_all(&mut file, &body)?;
        nix::unistd::chown(&path, owner.0, owner.1)?;
        Ok::<(), std::io::Error>(())
    })();
    if let Err(e) = result {
        remove_ipc_dir(dir);
        return Err(err(e));
    }
    Ok(path)
}

/// The size of a kernel's socket directory, a tmpfs of its own: sockets take no space, the
/// connection file and resolv.conf a few hundred bytes.
const IPC_DIR_BYTES_MAX: u64 = 1 << 20;
const IPC_DIR_INODES_MAX: u64 = 64;

/// Unmounts a kernel's socket directory (see [`create_ipc_dir`]) and removes it.
fn remove_ipc_dir(dir: &Path) {
    // Not mounted (made by an older server, or the mount failed) is fine: it is removed below.
    let _ = nix::mount::umount2(dir, nix::mount::MntFlags::MNT_DETACH);
    let _ = std::fs::remove_dir_all(dir);
}

impl RuntimeBackend for SandboxBackend {
    fn name(&self) -> &'static str {
        "sandbox"
    }

    /// `ipc` sockets `kernel-1` … `kernel-5` in a fresh directory under the runtime directory.
    fn connection_for(&self, _kernel_id: &str, key: &str) -> Result<ConnectionInfo, RuntimeError> {
        crate::ipc_connection(&self.config.runtime_dir, key)
    }

    fn launch(&self, spec: LaunchSpec) -> BoxFuture<'_, Result<Box<dyn Runtime>, RuntimeError>> {
        Box::pin(self.launch_sandboxed(spec))
    }

    fn reattach(&self, record: &RuntimeRecord) -> Option<Box<dyn Runtime>> {
        if record.backend != "sandbox" {
            return None;
        }
        let sandbox = record.sandbox.as_ref()?;
        let driver: Arc<dyn CgroupDriver> = Arc::from(cgroup::driver_for(
            sandbox.cgroup.version,
            &self.config.cgroup_root,
        ));
        if process_start_ticks(record.pid) != Some(record.start_ticks) {
            // Gone while no server watched: clear what it left.
            kill_cgroup(driver.as_ref(), &sandbox.cgroup);
            let _ = driver.remove(&sandbox.cgroup);
            remove_ipc_dir(&sandbox.ipc_dir);
            return None;
        }
        Some(Box::new(SandboxRuntime::watch_pid(record.clone(), driver)))
    }
}

struct SandboxRuntime {
    record: RuntimeRecord,
    driver: Arc<dyn CgroupDriver>,
    exit: watch::Receiver<Option<ExitInfo>>,
    watcher: Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// Set by a kill: the watcher then outlives this handle, so the cgroup and the socket
    /// directory are removed even when the handle is let go of at once.
    killed: std::sync::atomic::AtomicBool,
}

impl SandboxRuntime {
    fn sandbox(&self) -> &SandboxRecord {
        self.record
            .sandbox
            .as_ref()
            .expect("sandbox runtimes have one")
    }

    fn watch_child(
        record: RuntimeRecord,
        driver: Arc<dyn CgroupDriver>,
        mut child: tokio::process::Child,
    ) -> SandboxRuntime {
        let sandbox = record.sandbox.clone().expect("sandbox runtimes have one");
        let (tx, rx) = watch::channel(None);
        let finish_driver = driver.clone();
        let watcher = tokio::spawn(async move {
            let (code, signal) = match child.wait().await {
                Ok(status) => {
                    use std::os::unix::process::ExitStatusExt;
                    (status.code(), status.signal())
                }
                Err(_) => (None, None),
            };
            let info = finish(finish_driver, sandbox, code, signal).await;
            let _ = tx.send(Some(info));
        });
        SandboxRuntime {
            record,
            driver,
            exit: rx,
            watcher: Mutex::new(Some(watcher)),
            killed: std::sync::atomic::AtomicBool::new(false),
        }
    }

    fn watch_pid(record: RuntimeRecord, driver: Arc<dyn CgroupDriver>) -> SandboxRuntime {
        let sandbox = record.sandbox.clone().expect("sandbox runtimes have one");
        let (tx, rx) = watch::channel(None);
        let (pid, start_ticks) = (record.pid, record.start_ticks);
        let finish_driver = driver.clone();
        let watcher = tokio::spawn(async move {
            while process_start_ticks(pid) == Some(start_ticks) {
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            let info = finish(finish_driver, sandbox, None, None).await;
            let _ = tx.send(Some(info));
        });
        SandboxRuntime {
            record,
            driver,
            exit: rx,
            watcher: Mutex::new(Some(watcher)),
            killed: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// The processes a signal is for: those in the sandbox's pid namespace except its pid 1
    /// (bubblewrap's reaper), so the launcher and bubblewrap itself are left alone.
    fn signal_targets(&self) -> Vec<i32> {
        self.driver
            .pids(&self.sandbox().cgroup)
            .into_iter()
            .filter(|pid| {
                let status =
                    std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
                let nspids: Vec<&str> = status
                    .lines()
                    .find_map(|l| l.strip_prefix("NSpid:"))
                    .map(|rest| rest.split_whitespace().collect())
                    .unwrap_or_default();
                nspids.len() >= 2 && nspids.last() != Some(&"1")
            })
            .collect()
    }
}

impl Drop for SandboxRuntime {
    /// A kernel left running (the server stops, a later one reattaches) keeps its cgroup and
    /// socket directory, so the watcher is stopped; a killed one is left to its watcher to clear.
    fn drop(&mut self) {
        let handle = self.watcher.lock().expect("not poisoned").take();
        if let Some(handle) = handle {
            if !self.killed.load(std::sync::atomic::Ordering::Acquire) {
                handle.abort();
            }
        }
    }
}

impl Runtime for SandboxRuntime {
    fn record(&self) -> RuntimeRecord {
        self.record.clone()
    }

    fn signal(&self, signal: i32) -> Result<(), RuntimeError> {
        if self.exit.borrow().is_some() {
            return Ok(());
        }
        let signal = Signal::try_from(signal).map_err(|e| RuntimeError::Signal(e.to_string()))?;
        if signal == Signal::SIGKILL {
            self.killed
                .store(true, std::sync::atomic::Ordering::Release);
            kill_cgroup(self.driver.as_ref(), &self.sandbox().cgroup);
            return Ok(());
        }
        for pid in self.signal_targets() {
            // A process that ended meanwhile is fine.
            let _ = kill(Pid::from_raw(pid), signal);
        }
        Ok(())
    }

    fn wait(&self) -> BoxFuture<'static, ExitInfo> {
        let mut exit = self.exit.clone();
        Box::pin(async move {
            loop {
                if let Some(info) = exit.borrow().clone() {
                    return info;
                }
                if exit.changed().await.is_err() {
                    return exit.borrow().clone().unwrap_or_default();
                }
            }
        })
    }

    fn processes(&self) -> Vec<ProcessInfo> {
        list_processes(&self.sandbox().cgroup)
    }
}

/// Sends SIGKILL to every process in the cgroup, once.
fn kill_cgroup(driver: &dyn CgroupDriver, cgroup: &KernelCgroup) {
    for pid in driver.pids(cgroup) {
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
    }
}

/// After the launcher ended: kills what is left, reads whether the memory limit killed the
/// kernel, removes the cgroup and the socket directory.
async fn finish(
    driver: Arc<dyn CgroupDriver>,
    sandbox: SandboxRecord,
    code: Option<i32>,
    signal: Option<i32>,
) -> ExitInfo {
    // Bounded: processes leave a cgroup within moments of SIGKILL.
    for _ in 0..500 {
        if driver.pids(&sandbox.cgroup).is_empty() {
            break;
        }
        kill_cgroup(driver.as_ref(), &sandbox.cgroup);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let memory = driver.memory(&sandbox.cgroup);
    let killed = signal == Some(libc::SIGKILL) || code == Some(128 + libc::SIGKILL);
    let oom_killed = match memory.oom_kills {
        Some(kills) => kills > 0,
        None => killed && memory.limit_hits > 0,
    };
    // The runtime's own limit was not reached, its group's was: the total it shares.
    let shared = memory.limit_hits == 0 && memory.group_limit_hits > 0;
    let oom = oom_killed.then(|| OomInfo {
        limit_bytes: if shared {
            memory.group_limit_bytes.unwrap_or(0)
        } else {
            memory.limit_bytes.unwrap_or(0)
        },
        peak_bytes: memory.peak_bytes,
        shared,
    });
    for _ in 0..500 {
        match driver.remove(&sandbox.cgroup) {
            Ok(()) => break,
            Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
    remove_ipc_dir(&sandbox.ipc_dir);
    ExitInfo { code, signal, oom }
}
