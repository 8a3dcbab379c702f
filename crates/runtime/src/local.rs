//! The local backend: the kernel runs as a child process of the server on this machine, in its
//! own process group so an interrupt or kill reaches everything it started.
//!
//! Its channels are `ipc` sockets in a directory of its own under the runtime directory (mode
//! 0700, holding the connection file too), which the kernel binds itself: no port is picked
//! ahead of the kernel, so kernels started at once never collide, and no other local user can
//! reach them. The directory is removed when the kernel ends.

use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Mutex;
use std::time::Duration;

use futures_util::future::BoxFuture;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::sync::watch;

use commonlab_protocol::{ConnectionInfo, Transport};

use crate::{ExitInfo, LaunchSpec, Runtime, RuntimeBackend, RuntimeError, RuntimeRecord};

/// Launches kernels as local processes; each kernel's sockets and connection file go to a
/// directory of its own under `runtime_dir`.
#[derive(Debug, Clone)]
pub struct LocalBackend {
    runtime_dir: PathBuf,
}

impl LocalBackend {
    /// A relative `runtime_dir` is taken from the current directory now, since kernels start
    /// elsewhere and must find their sockets by the same path.
    pub fn new(runtime_dir: PathBuf) -> LocalBackend {
        let runtime_dir = std::path::absolute(&runtime_dir).unwrap_or(runtime_dir);
        LocalBackend { runtime_dir }
    }

    /// The socket directory named by a connection from [`RuntimeBackend::connection_for`].
    fn ipc_dir(&self, connection: &ConnectionInfo) -> Result<PathBuf, RuntimeError> {
        socket_dir(&self.runtime_dir, connection).ok_or_else(|| {
            RuntimeError::Connection(format!(
                "the connection {} was not made by the local backend's connection_for",
                connection.ip
            ))
        })
    }
}

/// The per-kernel directory `connection` names, when it is an `ipc` connection in a `k-`
/// directory right under `runtime_dir`.
fn socket_dir(runtime_dir: &Path, connection: &ConnectionInfo) -> Option<PathBuf> {
    let dir = Path::new(&connection.ip).parent()?;
    let made_here = connection.transport == Transport::Ipc
        && dir.parent() == Some(runtime_dir)
        && dir
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("k-"));
    made_here.then(|| dir.to_owned())
}

/// The kernel's socket directory, from its record: the connection file's directory when that
/// is a `k-` directory (records from before kernels had one name a shared directory).
fn record_dir(record: &RuntimeRecord) -> Option<&Path> {
    let dir = record.connection_file.parent()?;
    dir.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with("k-"))
        .then_some(dir)
}

/// Removes what a kernel left in the runtime directory: its socket directory, or the
/// connection file alone for a record from before kernels had a directory.
fn remove_runtime_files(record: &RuntimeRecord) {
    match record_dir(record) {
        Some(dir) => {
            let _ = std::fs::remove_dir_all(dir);
        }
        None => {
            let _ = std::fs::remove_file(&record.connection_file);
        }
    }
}

/// Creates the kernel's socket directory (mode 0700) with the connection file (mode 0600)
/// inside; returns the connection file's path. The runtime directory itself is made 0700 when
/// it is created.
fn create_socket_dir(
    runtime_dir: &Path,
    dir: &Path,
    connection: &ConnectionInfo,
) -> Result<PathBuf, RuntimeError> {
    let path = dir.join("connection.json");
    let err = |e: std::io::Error| RuntimeError::ConnectionFile {
        path: path.display().to_string(),
        detail: e.to_string(),
    };
    if !runtime_dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(runtime_dir)
            .map_err(err)?;
    }
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(dir)
        .map_err(err)?;
    let result = (|| {
        // The mode given to mkdir is masked by the umask; this one is not.
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
        let body = serde_json::to_vec_pretty(connection).expect("connection info serializes");
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)?;
        std::io::Write::write_all(&mut file, &body)
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_dir_all(dir);
        return Err(err(e));
    }
    Ok(path)
}

struct LocalRuntime {
    record: RuntimeRecord,
    exit: watch::Receiver<Option<ExitInfo>>,
    watcher: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Drop for LocalRuntime {
    fn drop(&mut self) {
        if let Some(handle) = self.watcher.lock().expect("not poisoned").take() {
            handle.abort();
        }
    }
}

impl Runtime for LocalRuntime {
    fn record(&self) -> RuntimeRecord {
        self.record.clone()
    }

    fn signal(&self, signal: i32) -> Result<(), RuntimeError> {
        if self.exit.borrow().is_some() {
            return Ok(());
        }
        let signal = Signal::try_from(signal).map_err(|e| RuntimeError::Signal(e.to_string()))?;
        killpg(Pid::from_raw(self.record.pid), signal)
            .map_err(|e| RuntimeError::Signal(e.to_string()))
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
}

impl RuntimeBackend for LocalBackend {
    fn name(&self) -> &'static str {
        "local"
    }

    fn launch(&self, spec: LaunchSpec) -> BoxFuture<'_, Result<Box<dyn Runtime>, RuntimeError>> {
        Box::pin(async move {
            if spec.argv.is_empty() {
                return Err(RuntimeError::EmptyArgv);
            }
            if spec.sandbox.is_some() {
                return Err(RuntimeError::Sandbox(
                    "the local backend cannot run a kernel in a sandbox; configure the sandbox backend".into(),
                ));
            }
            let dir = self.ipc_dir(&spec.connection)?;
            let connection_file = create_socket_dir(&self.runtime_dir, &dir, &spec.connection)?;
            let file = connection_file.display().to_string();
            let argv: Vec<String> = spec
                .argv
                .iter()
                .map(|a| a.replace("{connection_file}", &file))
                .collect();
            let mut command = tokio::process::Command::new(&argv[0]);
            command
                .args(&argv[1..])
                .envs(&spec.env)
                .current_dir(&spec.cwd)
                .stdin(Stdio::null())
                .process_group(0)
                .kill_on_drop(false);
            let mut child = match command.spawn() {
                Ok(child) => child,
                Err(e) => {
                    let _ = std::fs::remove_dir_all(&dir);
                    return Err(RuntimeError::Spawn {
                        program: argv[0].clone(),
                        detail: e.to_string(),
                    });
                }
            };
            let pid = child.id().expect("a just-spawned child has a pid") as i32;
            let start_ticks = process_start_ticks(pid).unwrap_or(0);
            let record = RuntimeRecord {
                backend: "local".into(),
                pid,
                start_ticks,
                connection_file,
                sandbox: None,
            };
            let (tx, rx) = watch::channel(None);
            let ended = record.clone();
            let watcher = tokio::spawn(async move {
                let info = match child.wait().await {
                    Ok(status) => {
                        use std::os::unix::process::ExitStatusExt;
                        ExitInfo {
                            code: status.code(),
                            signal: status.signal(),
                            oom: None,
                        }
                    }
                    Err(_) => ExitInfo::default(),
                };
                remove_runtime_files(&ended);
                let _ = tx.send(Some(info));
            });
            Ok(Box::new(LocalRuntime {
                record,
                exit: rx,
                watcher: Mutex::new(Some(watcher)),
            }) as Box<dyn Runtime>)
        })
    }

    /// `ipc` sockets `kernel-1` … `kernel-5` in a fresh directory under the runtime directory.
    fn connection_for(&self, _kernel_id: &str, key: &str) -> Result<ConnectionInfo, RuntimeError> {
        crate::ipc_connection(&self.runtime_dir, key)
    }

    fn reattach(&self, record: &RuntimeRecord) -> Option<Box<dyn Runtime>> {
        if record.backend != "local" {
            return None;
        }
        if process_start_ticks(record.pid) != Some(record.start_ticks) {
            // Gone while no server watched: clear what it left.
            remove_runtime_files(record);
            return None;
        }
        let (tx, rx) = watch::channel(None);
        let pid = record.pid;
        let start_ticks = record.start_ticks;
        let ended = record.clone();
        let watcher = tokio::spawn(async move {
            while process_start_ticks(pid) == Some(start_ticks) {
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            remove_runtime_files(&ended);
            let _ = tx.send(Some(ExitInfo::default()));
        });
        Some(Box::new(LocalRuntime {
            record: record.clone(),
            exit: rx,
            watcher: Mutex::new(Some(watcher)),
        }))
    }
}

/// Field 22 of `/proc/<pid>/stat`, or `None` when the process is gone (or a zombie).
pub(crate) fn process_start_ticks(pid: i32) -> Option<u64> {
    let stat =
        std::fs::read_to_string(Path::new("/proc").join(pid.to_string()).join("stat")).ok()?;
    let after_comm = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = after_comm.split_whitespace().collect();
    if fields.first() == Some(&"Z") {
        return None;
    }
    fields.get(19)?.parse().ok()
}
