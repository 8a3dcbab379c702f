//! The sandbox with real bubblewrap, cgroups and ipykernel: who the kernel runs as, what it can
//! see and reach, the limits that stop it, and that nothing is left once it has ended.

use std::path::{Path, PathBuf};

use commonlab_protocol::ConnectionInfo;
use commonlab_runtime::{
    Runtime, RuntimeBackend, RuntimeError, SandboxBackend, SandboxConfig, SandboxLimits,
};

use crate::support::{python, sandbox_host, Client, Setup, PATIENCE};

async fn start(setup: &Setup) -> (Box<dyn Runtime>, Client) {
    let runtime = setup.backend.launch(setup.spec()).await.expect("launches");
    let connection: ConnectionInfo = serde_json::from_slice(
        &std::fs::read(runtime.record().connection_file).expect("connection file"),
    )
    .expect("parses");
    let client = Client::connect(&connection).await;
    (runtime, client)
}

fn cgroup_dir(runtime: &dyn Runtime, controller: &str) -> PathBuf {
    let record = runtime.record();
    let cgroup = &record.sandbox.as_ref().expect("sandbox record").cgroup;
    cgroup
        .dirs
        .get(controller)
        .or_else(|| cgroup.dirs.get("unified"))
        .expect("controller dir")
        .clone()
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
        .trim()
        .to_owned()
}

/// Kills the runtime and checks that no process, cgroup or socket directory is left.
async fn kill_and_check_nothing_is_left(runtime: Box<dyn Runtime>) {
    let record = runtime.record();
    let sandbox = record.sandbox.clone().expect("sandbox record");
    let pids: Vec<i32> = runtime.processes().iter().map(|p| p.pid).collect();
    assert!(!pids.is_empty());
    let uid = runtime_uid(&record);
    runtime.kill().expect("kill");
    tokio::time::timeout(PATIENCE, runtime.wait())
        .await
        .expect("the runtime ends after a kill");
    for pid in pids {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let field = |key: &str| status.lines().find(|l| l.starts_with(key)).unwrap_or("");
        // A zombie has ended and holds nothing but its pid until its parent reaps it.
        let running = !field("State:").contains("Z (zombie)")
            && field("Uid:")
                .split_whitespace()
                .any(|u| u == uid.to_string());
        assert!(
            !running,
            "process {pid} of the kernel is still there: {status}"
        );
    }
    for dir in sandbox.cgroup.dirs.values() {
        assert!(!dir.exists(), "cgroup {} is left", dir.display());
    }
    assert!(!sandbox.ipc_dir.exists(), "socket directory is left");
}

fn runtime_uid(record: &commonlab_runtime::RuntimeRecord) -> u32 {
    let socket_dir = &record.sandbox.as_ref().expect("sandbox record").ipc_dir;
    std::os::unix::fs::MetadataExt::uid(&std::fs::metadata(socket_dir).expect("socket dir"))
}

#[tokio::test]
async fn sandboxed_kernel_runs_as_its_uid_and_sees_only_its_allowlist() {
    let Some(python) = python() else { return };
    if !sandbox_host() {
        return;
    }
    let limits = SandboxLimits {
        cpu_millicores_max: Some(500),
        pids_max: 77,
        tmp_bytes_max: 8 << 20,
        ..SandboxLimits::default()
    };
    let setup = Setup::sandbox(python, limits);
    let identity = setup.sandbox.as_ref().expect("spec").identity;
    // A "data directory" readable by everyone on the host, so only its absence can hide it.
    let data_dir = setup.root.path().join("data");
    std::fs::create_dir(&data_dir).expect("mkdir");
    std::fs::write(data_dir.join("commonlab.db"), "secret").expect("write");
    let host_tmp_marker = std::env::temp_dir().join(format!("commonlab-marker-{}", identity.uid));
    std::fs::write(&host_tmp_marker, "host").expect("write");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("listen");
    listener.set_nonblocking(true).expect("nonblocking");
    let port = listener.local_addr().expect("addr").port();

    let (runtime, mut client) = start(&setup).await;
    let probe = format!(
        r#"
import os, socket, errno
print("ids", os.getuid(), os.getgid(), os.getgroups())
print("root", os.path.exists("/root"), os.path.exists("/home"), os.path.exists("/var"))
print("data", os.path.exists({data:?}))
print("marker", os.path.exists({marker:?}))
open("/tmp/inside", "w").write("x")
def write(path):
    try:
        open(path, "w").write("x")
        return "ok"
    except OSError as e:
        return errno.errorcode[e.errno]
print("writes", write("/usr/x"), write("/etc/x"), write("/x"), write({ws:?} + "/ok"))
def fill(path):
    try:
        with open(path, "wb") as f:
            for _ in range(16):
                f.write(b"x" * (1 << 20))
        return "unlimited"
    except OSError as e:
        return errno.errorcode[e.errno]
print("tmp", fill("/tmp/big"), fill("/dev/shm/big"))
s = socket.socket()
s.settimeout(5)
try:
    s.connect(("127.0.0.1", {port}))
    print("tcp", "connected")
except OSError as e:
    print("tcp", type(e).__name__)
print("ifaces", sorted(n for _, n in socket.if_nameindex()))
"#,
        data = data_dir.display().to_string(),
        marker = host_tmp_marker.display().to_string(),
        ws = setup.workspace.display().to_string(),
    );
    let outcome = client.execute(&probe).await;
    let uid = identity.uid;
    assert_eq!(
        outcome.stdout,
        format!(
            "ids {uid} {uid} []\nroot False False False\ndata False\nmarker False\n\
             writes EROFS EROFS EROFS ok\ntmp ENOSPC ENOSPC\ntcp ConnectionRefusedError\nifaces ['lo']\n"
        ),
        "{outcome:?}"
    );
    assert!(listener.accept().is_err(), "the host listener was reached");
    assert!(!std::env::temp_dir().join("inside").exists());
    std::fs::remove_file(&host_tmp_marker).expect("remove marker");

    // Seen from the host: every process of the kernel runs as the uid, the kernel among them.
    let processes = runtime.processes();
    assert!(
        processes.iter().all(|p| p.uid == Some(uid)),
        "{processes:?}"
    );
    let kernel = processes
        .iter()
        .find(|p| p.cmdline.iter().any(|a| a == "ipykernel_launcher"))
        .expect("the kernel process is observed");
    assert!(kernel.rss_bytes > 0 && kernel.exe.is_some(), "{kernel:?}");

    let cpu = cgroup_dir(runtime.as_ref(), "cpu");
    if cpu.join("cpu.cfs_quota_us").exists() {
        assert_eq!(read(&cpu.join("cpu.cfs_quota_us")), "50000");
        assert_eq!(read(&cpu.join("cpu.cfs_period_us")), "100000");
    } else {
        assert_eq!(read(&cpu.join("cpu.max")), "50000 100000");
    }
    assert_eq!(
        read(&cgroup_dir(runtime.as_ref(), "pids").join("pids.max")),
        "77"
    );
    client.close().await;
    kill_and_check_nothing_is_left(runtime).await;
}

#[tokio::test]
async fn memory_limit_kills_a_memory_bomb_and_the_limit_is_reported() {
    let Some(python) = python() else { return };
    if !sandbox_host() {
        return;
    }
    let limit = 200 << 20;
    let setup = Setup::sandbox(
        python,
        SandboxLimits {
            memory_bytes_max: limit,
            ..SandboxLimits::default()
        },
    );
    let (runtime, client) = start(&setup).await;
    let sandbox = runtime.record().sandbox.expect("sandbox record");
    client
        .start_execute("hog = []\nwhile True:\n    hog.append(b'x' * (8 << 20))")
        .await;
    let exit = tokio::time::timeout(PATIENCE, runtime.wait())
        .await
        .expect("the memory bomb ends the kernel");
    let oom = exit
        .oom
        .unwrap_or_else(|| panic!("no OOM reported: {exit:?}"));
    assert_eq!(oom.limit_bytes, limit);
    assert!(
        oom.peak_bytes.is_some_and(|peak| peak >= limit * 9 / 10),
        "{oom:?}"
    );
    assert!(
        oom.explain().contains("memory limit of 200 MiB"),
        "{}",
        oom.explain()
    );
    for dir in sandbox.cgroup.dirs.values() {
        assert!(!dir.exists(), "cgroup {} is left", dir.display());
    }
    client.close().await;
}

#[tokio::test]
async fn kernels_of_one_uid_share_its_memory_total() {
    let Some(python) = python() else { return };
    if !sandbox_host() {
        return;
    }
    // Each kernel may hold 400 MiB, but the uid's kernels together only 500 MiB.
    let total = 500 << 20;
    let setup = Setup::sandbox(
        python,
        SandboxLimits {
            memory_bytes_max: 400 << 20,
            memory_bytes_max_total: Some(total),
            cpu_millicores_max: Some(1000),
            cpu_millicores_max_total: Some(1500),
            ..SandboxLimits::default()
        },
    );
    let (first, mut first_client) = start(&setup).await;
    let (second, second_client) = start(&setup).await;
    // Both sit in one group, which holds the totals.
    let memory_group = cgroup_dir(first.as_ref(), "memory")
        .parent()
        .expect("group")
        .to_owned();
    assert_eq!(
        cgroup_dir(second.as_ref(), "memory").parent(),
        Some(memory_group.as_path())
    );
    let limit_file = if memory_group.join("memory.max").exists() {
        "memory.max"
    } else {
        "memory.limit_in_bytes"
    };
    assert_eq!(read(&memory_group.join(limit_file)), total.to_string());
    let cpu_group = cgroup_dir(first.as_ref(), "cpu")
        .parent()
        .expect("group")
        .to_owned();
    if cpu_group.join("cpu.max").exists() {
        assert_eq!(read(&cpu_group.join("cpu.max")), "150000 100000");
    } else {
        assert_eq!(read(&cpu_group.join("cpu.cfs_quota_us")), "150000");
    }

    // Each holds 300 MiB, within its own limit; together they are over the total.
    let held = first_client
        .execute("hog = b'x' * (300 << 20)\nprint('held')")
        .await;
    assert_eq!(held.stdout, "held\n", "{held:?}");
    second_client
        .start_execute("hog = [b'x' * (10 << 20) for _ in range(30)]\nprint('held')")
        .await;
    let exit = tokio::time::timeout(PATIENCE, async {
        tokio::select! {
            exit = first.wait() => exit,
            exit = second.wait() => exit,
        }
    })
    .await;
    first_client.close().await;
    second_client.close().await;
    for runtime in [first, second] {
        let _ = runtime.kill();
        tokio::time::timeout(PATIENCE, runtime.wait())
            .await
            .expect("ends");
    }
    let exit = exit.expect("one kernel ends: the two cannot both hold 300 MiB in 500 MiB");
    let oom = exit
        .oom
        .unwrap_or_else(|| panic!("no OOM reported: {exit:?}"));
    assert!(oom.shared, "the shared total was reached: {oom:?}");
    assert_eq!(oom.limit_bytes, total);
    assert!(
        oom.explain().contains("memory limit of 500 MiB they share"),
        "{}",
        oom.explain()
    );
    // The group went with its last kernel.
    assert!(!memory_group.exists(), "{} is left", memory_group.display());
}

#[tokio::test]
async fn pids_limit_stops_a_fork_bomb_and_the_kernel_survives() {
    let Some(python) = python() else { return };
    if !sandbox_host() {
        return;
    }
    let setup = Setup::sandbox(
        python,
        SandboxLimits {
            pids_max: 48,
            ..SandboxLimits::default()
        },
    );
    let (runtime, mut client) = start(&setup).await;
    let bomb = r#"
import subprocess, errno
children = []
try:
    for _ in range(1000):
        children.append(subprocess.Popen(["sleep", "600"]))
    print("stopped", "never")
except OSError as e:
    print("stopped", errno.errorcode[e.errno], len(children) < 48)
for c in children:
    c.kill()
    c.wait()
"#;
    let outcome = client.execute(bomb).await;
    assert_eq!(outcome.stdout, "stopped EAGAIN True\n", "{outcome:?}");
    assert_eq!(client.execute("print('alive')").await.stdout, "alive\n");
    client.close().await;
    kill_and_check_nothing_is_left(runtime).await;
}

#[tokio::test]
async fn kill_leaves_nothing_even_when_the_kernel_started_detached_processes() {
    let Some(python) = python() else { return };
    if !sandbox_host() {
        return;
    }
    let setup = Setup::sandbox(python, SandboxLimits::default());
    let (runtime, mut client) = start(&setup).await;
    let outcome = client
        .execute(
            "import subprocess\nfor _ in range(3):\n    subprocess.Popen(['sleep', '600'], start_new_session=True)\nprint('spawned')",
        )
        .await;
    assert_eq!(outcome.stdout, "spawned\n");
    let sleepers = runtime
        .processes()
        .iter()
        .filter(|p| p.cmdline.first().map(String::as_str) == Some("sleep"))
        .count();
    assert_eq!(sleepers, 3);
    client.close().await;
    kill_and_check_nothing_is_left(runtime).await;
}

#[tokio::test]
async fn a_new_backend_reattaches_to_a_running_sandboxed_kernel() {
    let Some(python) = python() else { return };
    if !sandbox_host() {
        return;
    }
    let setup = Setup::sandbox(python, SandboxLimits::default());
    let (runtime, client) = start(&setup).await;
    let record = runtime.record();
    client.close().await;
    // The server goes away without stopping the kernel.
    drop(runtime);
    let config = SandboxConfig::new(
        setup.runtime_dir.clone(),
        PathBuf::from(env!("CARGO_BIN_EXE_commonlab-sandbox-exec")),
        Vec::new(),
    );
    let restarted = SandboxBackend::new(config).expect("backend");
    let reattached = restarted
        .reattach(&record)
        .expect("the kernel is still running");
    let connection: ConnectionInfo =
        serde_json::from_slice(&std::fs::read(&record.connection_file).expect("file"))
            .expect("parses");
    let mut client = Client::connect(&connection).await;
    assert_eq!(client.execute("print('back')").await.stdout, "back\n");
    client.close().await;
    kill_and_check_nothing_is_left(reattached).await;
    assert!(restarted.reattach(&record).is_none());
}

/// A server that reattaches to a kernel, finds it unresponsive, kills it and lets go of it at
/// once (as recovery after a restart does) still leaves no cgroup or socket directory behind.
#[tokio::test]
async fn a_kernel_killed_and_let_go_of_at_once_leaves_nothing() {
    let Some(python) = python() else { return };
    if !sandbox_host() {
        return;
    }
    let setup = Setup::sandbox(python, SandboxLimits::default());
    let (runtime, client) = start(&setup).await;
    let record = runtime.record();
    let sandbox = record.sandbox.clone().expect("sandbox record");
    client.close().await;
    drop(runtime);
    let config = SandboxConfig::new(
        setup.runtime_dir.clone(),
        PathBuf::from(env!("CARGO_BIN_EXE_commonlab-sandbox-exec")),
        Vec::new(),
    );
    let restarted = SandboxBackend::new(config).expect("backend");
    let reattached = restarted
        .reattach(&record)
        .expect("the kernel is still running");
    reattached.kill().expect("kill");
    drop(reattached);
    let deadline = std::time::Instant::now() + PATIENCE;
    let left = || {
        sandbox
            .cgroup
            .dirs
            .values()
            .filter(|d| d.exists())
            .chain(std::iter::once(&sandbox.ipc_dir).filter(|d| d.exists()))
            .map(|d| d.display().to_string())
            .collect::<Vec<_>>()
    };
    while !left().is_empty() && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(left(), Vec::<String>::new(), "left behind");
    assert!(restarted.reattach(&record).is_none());
}

#[tokio::test]
async fn launch_names_the_path_the_kernel_uid_cannot_read() {
    let Some(python) = python() else { return };
    if !sandbox_host() {
        return;
    }
    let setup = Setup::sandbox(python, SandboxLimits::default());
    // A Python environment below a directory only root may enter.
    let private = setup.root.path().join("private");
    let venv = private.join("env");
    std::fs::create_dir_all(venv.join("bin")).expect("mkdir");
    std::fs::write(venv.join("pyvenv.cfg"), "home = /usr/bin\n").expect("write");
    std::os::unix::fs::symlink("/usr/bin/python3", venv.join("bin/python")).expect("link");
    std::fs::set_permissions(
        &private,
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .expect("chmod");
    let mut spec = setup.spec();
    spec.argv[0] = venv.join("bin/python").display().to_string();
    let error = match setup.backend.launch(spec).await {
        Ok(_) => panic!("a kernel started from an unreadable environment"),
        Err(e) => e,
    };
    let RuntimeError::Sandbox(message) = &error else {
        panic!("unexpected error {error:?}")
    };
    assert!(
        message.contains(&format!("cannot search {}", private.display())),
        "{message}"
    );
    let left: Vec<_> = std::fs::read_dir(&setup.runtime_dir)
        .expect("runtime dir")
        .collect();
    assert!(left.is_empty(), "a socket directory is left");
}

#[test]
fn backend_refuses_egress_and_a_runtime_dir_kernels_cannot_reach() {
    if !sandbox_host() {
        return;
    }
    let launcher = PathBuf::from(env!("CARGO_BIN_EXE_commonlab-sandbox-exec"));
    // As a private data directory would be.
    let private = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(
        private.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .expect("chmod");
    let config = SandboxConfig::new(private.path().join("run"), launcher.clone(), Vec::new());
    let message = match SandboxBackend::new(config) {
        Err(RuntimeError::Sandbox(message)) => message,
        other => panic!("unexpected {other:?}"),
    };
    assert!(
        message.contains(&format!("{} has mode 700", private.path().display())),
        "{message}"
    );
    let mut config = SandboxConfig::new(PathBuf::from("/tmp/unused"), launcher, Vec::new());
    config.egress = true;
    config.slirp4netns = PathBuf::from("/nonexistent/slirp4netns");
    let message = match SandboxBackend::new(config) {
        Err(RuntimeError::Sandbox(message)) => message,
        other => panic!("unexpected {other:?}"),
    };
    assert!(
        message.contains("egress needs slirp4netns at /nonexistent/slirp4netns"),
        "{message}"
    );
}

/// With egress, a kernel reaches the outside (the package index, which this machine's network
/// allows) but still not the host's loopback services; without it, nothing outside.
#[tokio::test]
async fn egress_reaches_the_outside_but_never_the_hosts_loopback() {
    let Some(python) = python() else { return };
    if !sandbox_host() {
        return;
    }
    assert!(
        PathBuf::from("/usr/bin/slirp4netns").is_file(),
        "slirp4netns is installed with the test dependencies (scripts/test.sh)"
    );
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("listen");
    let port = listener.local_addr().expect("addr").port();
    let probe = format!(
        r#"
import socket
def reach(host, port):
    try:
        socket.create_connection((host, port), timeout=10).close()
        return "reached"
    except OSError as e:
        return type(e).__name__
print("outside", reach("pypi.org", 443))
print("loopback", reach("127.0.0.1", {port}))
print("host-via-gateway", reach("10.0.2.2", {port}))
print("ifaces", sorted(n for _, n in socket.if_nameindex()))
print("seccomp", [l.split()[1] for l in open("/proc/self/status") if l.startswith("Seccomp:")])
"#
    );
    for egress in [true, false] {
        let setup = Setup::sandbox_with(python.clone(), SandboxLimits::default(), |config| {
            config.egress = egress
        });
        let (runtime, mut client) = start(&setup).await;
        let outcome = client.execute(&probe).await;
        let out = outcome.stdout;
        if egress {
            assert!(out.contains("outside reached"), "egress on: {out}");
            assert!(out.contains("ifaces ['lo', 'tap0']"), "{out}");
        } else {
            assert!(!out.contains("outside reached"), "egress off: {out}");
            assert!(out.contains("ifaces ['lo']"), "{out}");
        }
        assert!(out.contains("loopback ConnectionRefusedError"), "{out}");
        assert!(!out.contains("host-via-gateway reached"), "{out}");
        assert!(
            out.contains("seccomp ['2']"),
            "filtered with egress {egress}: {out}"
        );
        kill_and_check_nothing_is_left(runtime).await;
    }
    drop(listener);
}

/// Under the seccomp filter, what notebooks commonly do still works: numpy (with BLAS threads),
/// pandas, matplotlib, multiprocessing (fork and spawn), threads, subprocesses, fork, /tmp, FIFOs, signals, pip, sqlite, /proc;
/// and a refused call is a clean `OSError` the kernel survives.
#[tokio::test]
async fn the_usual_stack_works_under_the_seccomp_filter() {
    let Some(python) = python() else { return };
    if !sandbox_host() {
        return;
    }
    let setup = Setup::sandbox(python, SandboxLimits::default());
    let (runtime, mut client) = start(&setup).await;
    let stack = r#"
import math, multiprocessing, os, signal, socket, sqlite3, subprocess, sys, tempfile, threading
import numpy as np
a = np.arange(512 * 512, dtype=np.float64).reshape(512, 512)  # big enough for BLAS threads
print("numpy", bool(np.allclose(a @ np.eye(512), a)), int(np.linalg.matrix_rank(np.eye(50))))
import pandas as pd
print("pandas", int(pd.DataFrame({"x": range(10)}).x.sum()))
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
plt.plot([1, 2, 3]); plt.savefig("/tmp/plot.png")
print("matplotlib", os.path.getsize("/tmp/plot.png") > 0)
def square(x):
    return x * x
with multiprocessing.get_context("fork").Pool(2) as pool:
    print("pool fork", pool.map(square, range(6)))
with multiprocessing.get_context("spawn").Pool(2) as pool:
    print("pool spawn", pool.map(math.factorial, [3, 4, 5]))
counts, lock = [], threading.Lock()
def work():
    with lock:
        counts.append(1)
threads = [threading.Thread(target=work) for _ in range(8)]
for t in threads: t.start()
for t in threads: t.join()
print("threads", len(counts))
print("subprocess", subprocess.run(["sh", "-c", "echo $((6 * 7))"], capture_output=True, text=True).stdout.strip())
pid = os.fork()
if pid == 0:
    os._exit(3)
print("fork", os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
with tempfile.NamedTemporaryFile(dir="/tmp") as f:
    f.write(b"kept"); f.flush()
    print("tmp", open(f.name, "rb").read().decode())
fifo = tempfile.mktemp(dir="/tmp")
os.mkfifo(fifo)
print("fifo", os.path.exists(fifo))
got = []
signal.signal(signal.SIGUSR1, lambda signum, frame: got.append(signum))
os.kill(os.getpid(), signal.SIGUSR1)
print("signal", got == [signal.SIGUSR1])
pip = subprocess.run([sys.executable, "-m", "pip", "--version"], capture_output=True, text=True)
print("pip", pip.returncode, pip.stdout.startswith("pip "))
show = subprocess.run([sys.executable, "-m", "pip", "show", "numpy"], capture_output=True, text=True)
print("pip show", show.returncode, "Name: numpy" in show.stdout)
db = sqlite3.connect(":memory:")
print("sqlite", db.execute("select 6 * 7").fetchone()[0])
status = dict(l.split(":", 1) for l in open("/proc/self/status"))
print("seccomp", status["Seccomp"].strip(), status["Seccomp_filters"].strip())
try:
    socket.socket(socket.AF_VSOCK, socket.SOCK_STREAM)
    print("vsock", "opened")
except OSError as e:
    print("vsock", type(e).__name__)
"#;
    let outcome = client.execute(stack).await;
    assert_eq!(outcome.error, None, "{outcome:?}");
    assert_eq!(
        outcome.stdout,
        "numpy True 50\npandas 45\nmatplotlib True\npool fork [0, 1, 4, 9, 16, 25]\npool spawn [6, 24, 120]\nthreads 8\n\
         subprocess 42\nfork 3\ntmp kept\nfifo True\nsignal True\npip 0 True\npip show 0 True\n\
         sqlite 42\nseccomp 2 3\nvsock PermissionError\n",
        "{outcome:?}"
    );
    let after = client.execute("print('still here')").await;
    assert_eq!(after.stdout, "still here\n");
    client.close().await;
    kill_and_check_nothing_is_left(runtime).await;
}
