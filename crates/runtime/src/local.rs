//! The local backend: the kernel runs as a child process of the server on this machine, in its
//! own process group so an interrupt or kill reaches everything it started.

use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Mutex;
use std::time::Duration;

use futures_util::future::BoxFuture;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::sync::watch;

use crate::{ExitInfo, LaunchSpec, Runtime, RuntimeBackend, RuntimeError, RuntimeRecord};

/// Launches kernels as local processes; connection files go to `runtime_dir`.
#[derive(Debug, Clone)]
pub struct LocalBackend {
    runtime_dir: PathBuf,
}

impl LocalBackend {
    pub fn new(runtime_dir: PathBuf) -> LocalBackend {
        LocalBackend { runtime_dir }
    }

    fn write_connection_file(&self, spec: &LaunchSpec) -> Result<PathBuf, RuntimeError> {
        let path = self
            .runtime_dir
            .join(format!("kernel-{}.json", spec.kernel_id));
        let err = |e: std::io::Error| RuntimeError::ConnectionFile {
            path: path.display().to_string(),
            detail: e.to_string(),
        };
        std::fs::create_dir_all(&self.runtime_dir).map_err(err)?;
        let body = serde_json::to_vec_pretty(&spec.connection).expect("connection info serializes");
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&path)
            .map_err(err)?;
        std::io::Write::write_all(&mut file, &body).map_err(err)?;
        Ok(path)
    }
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
            let connection_file = self.write_connection_file(&spec)?;
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
            let mut child = command.spawn().map_err(|e| RuntimeError::Spawn {
                program: argv[0].clone(),
                detail: e.to_string(),
            })?;
            let pid = child.id().expect("a just-spawned child has a pid") as i32;
            let start_ticks = process_start_ticks(pid).unwrap_or(0);
            let (tx, rx) = watch::channel(None);
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
                let _ = tx.send(Some(info));
            });
            let record = RuntimeRecord {
                backend: "local".into(),
                pid,
                start_ticks,
                connection_file,
                sandbox: None,
            };
            Ok(Box::new(LocalRuntime {
                record,
                exit: rx,
                watcher: Mutex::new(Some(watcher)),
            }) as Box<dyn Runtime>)
        })
    }

    fn reattach(&self, record: &RuntimeRecord) -> Option<Box<dyn Runtime>> {
        if record.backend != "local" || process_start_ticks(record.pid)? != record.start_ticks {
            return None;
        }
        let (tx, rx) = watch::channel(None);
        let pid = record.pid;
        let start_ticks = record.start_ticks;
        let watcher = tokio::spawn(async move {
            while process_start_ticks(pid) == Some(start_ticks) {
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
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
