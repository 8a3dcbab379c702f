//! The escape suite: hostile cells run through the real server, as a normal user, against real
//! bubblewrap sandboxes and cgroups. Each cell tries one attack and prints `CONTAINED <name>` or
//! `ESCAPED <name>` from what it could actually do; the test also checks from the outside that
//! the server and another user's kernel and files are unaffected afterwards.
//!
//! Needs root, bubblewrap, cgroups, loop devices and a Python with ipykernel. When
//! `COMMONLAB_TEST_REQUIRE` names `sandbox` (as `scripts/test.sh` sets it) a missing part is a
//! failure; otherwise the suite is skipped with a message.

use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

const PASSWORD: &str = "a long enough password";
const MEMORY_BYTES_MAX: u64 = 256 << 20;
const PIDS_MAX: u64 = 64;
const TMP_BYTES_MAX: u64 = 32 << 20;
const FILE_BYTES_MAX: u64 = 16 << 20;
const OPEN_FILES_MAX: u64 = 256;
const WORKSPACE_BYTES_MAX: u64 = 64 << 20;

#[allow(clippy::print_stderr)]
fn prerequisites() -> Option<PathBuf> {
    let required = std::env::var("COMMONLAB_TEST_REQUIRE")
        .unwrap_or_default()
        .split(',')
        .any(|d| d == "sandbox");
    let python = std::env::var_os("COMMONLAB_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/python")
        });
    let mut missing = Vec::new();
    if !nix::unistd::geteuid().is_root() {
        missing.push("root".to_owned());
    }
    if !Path::new("/usr/bin/bwrap").is_file() {
        missing.push("bubblewrap (/usr/bin/bwrap)".to_owned());
    }
    if !python.exists() {
        missing.push(format!("a Python with ipykernel at {}", python.display()));
    }
    if missing.is_empty() {
        return Some(python.canonicalize().map(|_| python).unwrap());
    }
    let message = format!("the escape suite needs {}", missing.join(", "));
    if required {
        panic!("{message} (COMMONLAB_TEST_REQUIRE names sandbox)");
    }
    eprintln!("skipped: {message}");
    None
}

fn commonlab(data_dir: &Path, config: &Path, args: &[&str], stdin: &str) -> String {
    let mut command = Command::new(env!("CARGO_BIN_EXE_commonlab"));
    for (name, _) in std::env::vars() {
        if name.starts_with("COMMONLAB_") {
            command.env_remove(name);
        }
    }
    let mut child = command
        .args(args)
        .args(["--config", config.to_str().unwrap()])
        .env("COMMONLAB_SERVER__DATA_DIR", data_dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "commonlab {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

struct Server {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
    config: PathBuf,
}

impl Server {
    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn workspace(&self, user: &str) -> PathBuf {
        self.data_dir().join("workspaces").join(user)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        for user in ["alice", "bob"] {
            let _ = Command::new("umount").arg(self.workspace(user)).status();
        }
    }
}

fn start_server(python: &Path) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let config = dir.path().join("commonlab.toml");
    std::fs::write(
        &config,
        format!(
            r#"[kernel]
python = "{python}"

[accounts]
enabled = true

[sandbox]
enabled = true

[sandbox.tiers.free]
memory_bytes_max = {MEMORY_BYTES_MAX}
cpu_millicores_max = 500
pids_max = {PIDS_MAX}
tmp_bytes_max = {TMP_BYTES_MAX}
file_bytes_max = {FILE_BYTES_MAX}
open_files_max = {OPEN_FILES_MAX}
workspace_bytes_max = {WORKSPACE_BYTES_MAX}
"#,
            python = python.display()
        ),
    )
    .unwrap();
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    for user in ["alice", "bob"] {
        commonlab(
            &data_dir,
            &config,
            &["user", "add", user],
            &format!("{PASSWORD}\n"),
        );
    }
    let log = std::fs::File::create(dir.path().join("server.log")).unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_commonlab"));
    for (name, _) in std::env::vars() {
        if name.starts_with("COMMONLAB_") {
            command.env_remove(name);
        }
    }
    let child = command
        .args([
            "serve",
            "--config",
            config.to_str().unwrap(),
            "--port",
            &port.to_string(),
        ])
        .env("COMMONLAB_SERVER__DATA_DIR", &data_dir)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    Server {
        child,
        port,
        dir,
        config,
    }
}

struct Api {
    base: String,
    token: String,
    http: reqwest::Client,
}

impl Api {
    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .header("Authorization", format!("token {}", self.token));
        if let Some(body) = body {
            request = request.body(body.to_string());
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }
}

/// What one cell did.
#[derive(Debug, Default)]
struct Outcome {
    stdout: String,
    error: Option<String>,
    /// Text the server sent when the kernel died (status `dead` and any explanation).
    death: Option<String>,
}

struct KernelClient {
    ws: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    session: String,
}

impl KernelClient {
    async fn open(port: u16, user: &str, token: &str, kernel_id: &str) -> KernelClient {
        let session = uuid::Uuid::new_v4().to_string();
        let url = format!("ws://127.0.0.1:{port}/user/{user}/api/kernels/{kernel_id}/channels?session_id={session}&token={token}");
        let (ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
        KernelClient { ws, session }
    }

    async fn run(&mut self, code: &str, timeout: Duration) -> Outcome {
        let msg_id = uuid::Uuid::new_v4().to_string();
        let message = json!({
            "channel": "shell",
            "header": {"msg_id": msg_id, "username": "escape", "session": self.session, "msg_type": "execute_request", "version": "5.3", "date": "2026-01-01T00:00:00.000000Z"},
            "parent_header": {}, "metadata": {},
            "content": {"code": code, "silent": false, "store_history": false, "user_expressions": {}, "allow_stdin": false, "stop_on_error": true},
        });
        self.ws
            .send(Message::Text(message.to_string().into()))
            .await
            .unwrap();
        let mut outcome = Outcome::default();
        let (mut idle, mut replied) = (false, false);
        let deadline = Instant::now() + timeout;
        while !(idle && replied) {
            let remaining = deadline.saturating_duration_since(Instant::now());
            let frame = match tokio::time::timeout(remaining, self.ws.next()).await {
                Ok(Some(Ok(frame))) => frame,
                Ok(_) => break,
                Err(_) => {
                    panic!("cell did not finish within {timeout:?}: {code}\nso far: {outcome:?}")
                }
            };
            let Message::Text(text) = frame else { continue };
            let message: Value = serde_json::from_str(&text).unwrap();
            let msg_type = message["header"]["msg_type"].as_str().unwrap_or_default();
            let content = &message["content"];
            if msg_type == "status" && content["execution_state"] == "dead" {
                // Collect what the server says about the death, whenever it arrives.
                let death = outcome.death.get_or_insert_with(String::new);
                let until = Instant::now() + Duration::from_secs(2);
                while let Ok(Some(Ok(Message::Text(text)))) = tokio::time::timeout(
                    until.saturating_duration_since(Instant::now()),
                    self.ws.next(),
                )
                .await
                {
                    death.push_str(&text);
                }
                break;
            }
            if message["parent_header"]["msg_id"] != msg_id.as_str() {
                // The server's own notices (a death explained) have no parent.
                if msg_type == "stream" || msg_type == "error" || msg_type == "display_data" {
                    outcome
                        .death
                        .get_or_insert_with(String::new)
                        .push_str(&message["content"].to_string());
                }
                continue;
            }
            match msg_type {
                "stream" => outcome
                    .stdout
                    .push_str(content["text"].as_str().unwrap_or_default()),
                "error" => {
                    outcome.error = Some(format!("{}: {}", content["ename"], content["evalue"]))
                }
                "status" => idle |= content["execution_state"] == "idle",
                "execute_reply" => replied = true,
                _ => {}
            }
        }
        outcome
    }
}

/// Defines `attempt` and `report` in the kernel. An attempt that returns is an escape; one that
/// raises is contained.
const PRELUDE: &str = r#"
import os, socket, subprocess, signal, ctypes, errno, sys, time, json, glob
def report(name, escaped, detail=''):
    print(('ESCAPED ' if escaped else 'CONTAINED ') + name + ' :: ' + str(detail)[:300], flush=True)
def attempt(name, fn):
    try:
        result = fn()
    except BaseException as e:
        report(name, False, repr(e))
        return
    report(name, True, result)
libc = ctypes.CDLL(None, use_errno=True)
"#;

/// The hostile cells: (name, code). `@NAME@` placeholders are filled in by the test.
fn cells() -> Vec<(&'static str, String)> {
    let cells: Vec<(&str, &str)> = vec![
        (
            "read another user's file",
            r#"attempt('read another user\'s file', lambda: open('@BOB_WS@/secret.txt').read())"#,
        ),
        (
            "list another user's workspace",
            r#"attempt('list another user\'s workspace', lambda: os.listdir('@BOB_WS@'))"#,
        ),
        (
            "list all workspaces",
            r#"
try:
    others = [d for d in os.listdir('@WORKSPACES@') if d != os.path.basename(os.getcwd())]
except OSError as e:
    others = []
report('list all workspaces', bool(others), others or 'only my own is there')
"#,
        ),
        (
            "read the server's database",
            r#"attempt('read the server\'s database', lambda: open('@DATA@/commonlab.sqlite', 'rb').read(64))"#,
        ),
        (
            "read the server's config",
            r#"attempt('read the server\'s config', lambda: open('@CONFIG@').read())"#,
        ),
        (
            "list the server's data directory",
            r#"
try:
    # bubblewrap creates the directories leading to the workspace and sockets; anything else
    # (the database, the token, other users' state) would be the server's own files.
    visible = [d for d in os.listdir('@DATA@') if d not in ('workspaces', 'sandboxes')]
except OSError as e:
    visible = []
report('list the server\'s data directory', bool(visible), visible or 'only the path to my workspace')
"#,
        ),
        (
            "find another user's files anywhere",
            r#"
found = []
for top in ['/', '/tmp', '/var', '/home', '/root', '/srv', '/mnt', '/opt', '/run']:
    try:
        for dirpath, dirnames, filenames in os.walk(top):
            dirnames[:] = [d for d in dirnames if os.path.join(dirpath, d) not in ('/proc', '/sys', '/dev', '/usr')]
            if 'secret.txt' in filenames and not dirpath.startswith(os.getcwd()):
                found.append(dirpath)
            if dirpath.count('/') > 6:
                dirnames[:] = []
    except OSError:
        pass
report('find another user\'s files anywhere', bool(found), found or 'nothing found')
"#,
        ),
        (
            "see other users' processes",
            r#"
seen = []
for pid in [p for p in os.listdir('/proc') if p.isdigit()]:
    try:
        cmd = open(f'/proc/{pid}/cmdline', 'rb').read().replace(b'\0', b' ').decode()
        uid = [l for l in open(f'/proc/{pid}/status') if l.startswith('Uid:')][0].split()[1]
    except OSError:
        continue
    if 'serve' in cmd and 'commonlab' in cmd or int(uid) != os.getuid() and int(uid) != 65534:
        seen.append((pid, uid, cmd[:80]))
report('see other users\' processes', bool(seen), seen or f'{len(os.listdir("/proc"))} entries, all ours')
"#,
        ),
        (
            "signal the server",
            r#"attempt('signal the server', lambda: os.kill(@SERVER_PID@, 0))"#,
        ),
        (
            "kill another user's kernel",
            r#"attempt('kill another user\'s kernel', lambda: os.kill(@BOB_PID@, signal.SIGKILL))"#,
        ),
        (
            "ptrace the server",
            r#"
r = libc.ptrace(16, @SERVER_PID@, None, None)
report('ptrace the server', r == 0, f'ptrace returned {r}, errno {ctypes.get_errno()}')
"#,
        ),
        (
            "ptrace another user's kernel",
            r#"
r = libc.ptrace(16, @BOB_PID@, None, None)
report('ptrace another user\'s kernel', r == 0, f'ptrace returned {r}, errno {ctypes.get_errno()}')
"#,
        ),
        (
            "become root with setuid",
            r#"attempt('become root with setuid', lambda: os.setuid(0))"#,
        ),
        (
            "gain privileges through a setuid binary",
            r#"
nnp = [l.split()[1] for l in open('/proc/self/status') if l.startswith('NoNewPrivs')][0]
out = subprocess.run(['su', '-c', 'id -u', 'root'], input='\n', capture_output=True, text=True, timeout=20)
euid_root = out.stdout.strip() == '0'
report('gain privileges through a setuid binary', nnp != '1' or euid_root, f'NoNewPrivs={nnp}, su: {out.returncode} {out.stderr.strip()[:80]}')
"#,
        ),
        (
            "write to the system",
            r#"attempt('write to the system', lambda: open('/usr/lib/commonlab-escape', 'w').write('x'))"#,
        ),
        (
            "write to /etc/passwd",
            r#"attempt('write to /etc/passwd', lambda: open('/etc/passwd', 'a').write('evil:x:0:0::/:/bin/sh\n'))"#,
        ),
        (
            "write to the filesystem root",
            r#"attempt('write to the filesystem root', lambda: open('/escape', 'w').write('x'))"#,
        ),
        (
            "read /etc/shadow",
            r#"attempt('read /etc/shadow', lambda: open('/etc/shadow').read())"#,
        ),
        (
            "read root's home",
            r#"attempt('read root\'s home', lambda: os.listdir('/root'))"#,
        ),
        (
            "leave a file in /tmp for others",
            r#"
open('/tmp/@MARKER@', 'w').write('alice was here')
report('leave a file in /tmp for others', False, 'written inside; the test checks the host and bob')
"#,
        ),
        (
            "fill /tmp beyond its limit",
            r#"
written, n, err = 0, 0, 'no error'
chunk = b'x' * (1 << 20)
os.makedirs('/tmp/fill', exist_ok=True)
try:
    while written < 4 * @TMP_BYTES_MAX@:
        with open(f'/tmp/fill/{n}', 'wb') as f:
            for _ in range(4):
                f.write(chunk); f.flush(); written += len(chunk)
        n += 1
except OSError as e:
    err = repr(e)
subprocess.run(['rm', '-rf', '/tmp/fill'])
report('fill /tmp beyond its limit', written > @TMP_BYTES_MAX@, f'{written >> 20} MiB then {err}')
"#,
        ),
        (
            "write one file beyond the file size limit",
            r#"
written = 0
chunk = b'x' * (1 << 20)
try:
    with open('big.bin', 'wb') as f:
        while written < 4 * @FILE_BYTES_MAX@:
            f.write(chunk); f.flush(); written += len(chunk)
    err = 'no error'
except OSError as e:
    err = repr(e)
os.remove('big.bin')
report('write one file beyond the file size limit', written > @FILE_BYTES_MAX@, f'{written >> 20} MiB then {err}')
"#,
        ),
        (
            "fill the disk beyond the workspace limit",
            r#"
written, n, err = 0, 0, 'no error'
chunk = b'x' * (1 << 20)
os.makedirs('fill', exist_ok=True)
try:
    while written < 4 * @WORKSPACE_BYTES_MAX@:
        with open(f'fill/{n}', 'wb') as f:
            for _ in range(8):
                f.write(chunk); f.flush(); written += len(chunk)
        n += 1
except OSError as e:
    err = repr(e)
subprocess.run(['rm', '-rf', 'fill'])
report('fill the disk beyond the workspace limit', written > @WORKSPACE_BYTES_MAX@, f'{written >> 20} MiB then {err}')
"#,
        ),
        (
            "fork bomb",
            r#"
p = subprocess.Popen([sys.executable, '-c', 'import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass'], start_new_session=True)
time.sleep(3)
count = len([x for x in os.listdir('/proc') if x.isdigit()])
os.killpg(p.pid, signal.SIGKILL)
p.wait()
time.sleep(0.5)
report('fork bomb', count > @PIDS_MAX@, f'{count} processes at most')
"#,
        ),
        (
            "memory bomb in a child",
            r#"
p = subprocess.run([sys.executable, '-c', 'b = []\nwhile True:\n    b.append(bytearray(1 << 24))'], capture_output=True)
report('memory bomb in a child', p.returncode == 0, f'child ended with {p.returncode}')
"#,
        ),
        (
            "open files beyond the limit",
            r#"
fds = []
try:
    while len(fds) < 4 * @OPEN_FILES_MAX@:
        fds.append(os.open('/dev/null', os.O_RDONLY))
    err = 'no error'
except OSError as e:
    err = repr(e)
n = len(fds)
for fd in fds: os.close(fd)
report('open files beyond the limit', n >= @OPEN_FILES_MAX@, f'{n} opened then {err}')
"#,
        ),
        (
            "connect to the server's port",
            r#"attempt('connect to the server\'s port', lambda: socket.create_connection(('127.0.0.1', @PORT@), timeout=3))"#,
        ),
        (
            "connect to the host's addresses",
            r#"
reached = []
for ip in '@HOST_IPS@'.split():
    try:
        socket.create_connection((ip, @PROBE_PORT@), timeout=3).close()
        reached.append(ip)
    except OSError as e:
        pass
report('connect to the host\'s addresses', bool(reached), reached or 'none reachable')
"#,
        ),
        (
            "connect to another user's kernel",
            r#"
def connect_unix():
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect('@BOB_SOCKET@')
    return 'connected'
attempt('connect to another user\'s kernel', connect_unix)
"#,
        ),
        (
            "reach the internet",
            r#"attempt('reach the internet', lambda: socket.create_connection(('1.1.1.1', 443), timeout=3))"#,
        ),
        (
            "read the server's environment through /proc",
            r#"attempt('read the server\'s environment through /proc', lambda: open('/proc/@SERVER_PID@/environ', 'rb').read())"#,
        ),
        (
            "read kernel memory through /proc",
            r#"attempt('read kernel memory through /proc', lambda: open('/proc/kcore', 'rb').read(16))"#,
        ),
        (
            "write kernel settings through /proc",
            r#"attempt('write kernel settings through /proc', lambda: open('/proc/sys/kernel/core_pattern', 'w').write('|/tmp/x'))"#,
        ),
        (
            "trigger sysrq",
            r#"attempt('trigger sysrq', lambda: open('/proc/sysrq-trigger', 'w').write('b'))"#,
        ),
        (
            "open host devices",
            r#"
devs = [d for d in os.listdir('/dev') if d.startswith(('sd', 'vd', 'nvme', 'mem', 'kmem', 'port', 'nvidia', 'loop'))]
report('open host devices', bool(devs), devs or sorted(os.listdir('/dev')))
"#,
        ),
        (
            "raise own cgroup limits",
            r#"
def raise_limits():
    for path in glob.glob('/sys/fs/cgroup/**/memory.limit_in_bytes', recursive=True) + glob.glob('/sys/fs/cgroup/**/memory.max', recursive=True):
        open(path, 'w').write('max')
        return path
    raise FileNotFoundError('no cgroup files visible')
attempt('raise own cgroup limits', raise_limits)
"#,
        ),
        (
            "remount the system read-write",
            r#"
p = subprocess.run(['mount', '-o', 'remount,rw', '/'], capture_output=True, text=True)
report('remount the system read-write', p.returncode == 0, p.stderr.strip()[:120])
"#,
        ),
        (
            "become root in a nested user namespace",
            r#"
p = subprocess.run(['unshare', '-Ur', 'id', '-u'], capture_output=True, text=True)
report('become root in a nested user namespace', p.stdout.strip() == '0', (p.returncode, p.stderr.strip()[:120]))
"#,
        ),
        (
            "link another user's workspace into mine",
            r#"
try:
    os.symlink('@BOB_WS@/secret.txt', 'bob-link.txt')
    os.symlink('@DATA@/commonlab.sqlite', 'db-link')
except FileExistsError:
    pass
report('link another user\'s workspace into mine', False, 'links made; the test reads them through the contents API')
"#,
        ),
    ];
    cells
        .into_iter()
        .map(|(name, code)| (name, code.to_owned()))
        .collect()
}

/// The host pid of the ipykernel process run by `uid`, and its connection file.
fn kernel_of(uid: u32) -> Option<(i32, PathBuf)> {
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(status) = std::fs::read_to_string(entry.path().join("status")) else {
            continue;
        };
        let owner = status
            .lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|l| l.split_whitespace().next())
            .and_then(|u| u.parse::<u32>().ok());
        if owner != Some(uid) {
            continue;
        }
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let args: Vec<String> = cmdline
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        if !args.iter().any(|a| a.contains("ipykernel")) {
            continue;
        }
        let file = args
            .iter()
            .position(|a| a == "-f")
            .and_then(|i| args.get(i + 1))?;
        return Some((pid, PathBuf::from(file)));
    }
    None
}

async fn wait_ready(api: &Api) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(response) = api.http.get(format!("{}/hub/login", api.base)).send().await {
            if response.status().is_success() {
                return;
            }
        }
        assert!(Instant::now() < deadline, "server did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

// Each attack's line is printed, so the run shows what contained what.
#[allow(clippy::print_stderr)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_cells_are_contained() {
    let Some(python) = prerequisites() else {
        return;
    };
    let server = start_server(&python);
    let data_dir = server.data_dir();
    let token = |user: &str| {
        commonlab(&data_dir, &server.config, &["user", "token", user], "")
            .split_whitespace()
            .find(|w| w.starts_with("clt_"))
            .expect("a token is printed")
            .to_owned()
    };
    let base = format!("http://127.0.0.1:{}", server.port);
    let http = reqwest::Client::new();
    let alice = Api {
        base: base.clone(),
        token: token("alice"),
        http: http.clone(),
    };
    let bob = Api {
        base: base.clone(),
        token: token("bob"),
        http,
    };
    wait_ready(&alice).await;

    // Bob's work: a secret file and a running kernel holding state.
    let (status, body) = bob
        .call(
            reqwest::Method::PUT,
            "/user/bob/api/contents/secret.txt",
            Some(json!({"type": "file", "format": "text", "content": "bob's secret"})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = bob
        .call(
            reqwest::Method::POST,
            "/user/bob/api/kernels",
            Some(json!({})),
        )
        .await;
    assert_eq!(status, 201, "bob's kernel starts in its sandbox: {body}");
    let bob_kernel = body["id"].as_str().unwrap().to_owned();
    let mut bob_ws = KernelClient::open(server.port, "bob", &bob.token, &bob_kernel).await;
    let outcome = bob_ws
        .run(
            "state = 41\nimport os\nprint(os.getuid())",
            Duration::from_secs(60),
        )
        .await;
    let bob_uid: u32 = outcome
        .stdout
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("{outcome:?}"));
    assert!(
        bob_uid >= 200_000,
        "bob's kernel runs as his own unprivileged uid, not {bob_uid}"
    );
    let (bob_pid, bob_connection) =
        kernel_of(bob_uid).expect("bob's kernel is visible from the host");
    let connection: Value =
        serde_json::from_slice(&std::fs::read(&bob_connection).unwrap()).unwrap();
    let bob_socket = match connection["transport"].as_str() {
        Some("ipc") => format!(
            "{}-{}",
            connection["ip"].as_str().unwrap(),
            connection["shell_port"]
        ),
        _ => panic!("sandboxed kernels talk over ipc sockets: {connection}"),
    };

    // Alice's kernel, and a listener on every host address that nothing inside should reach.
    let (status, body) = alice
        .call(
            reqwest::Method::POST,
            "/user/alice/api/kernels",
            Some(json!({})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let alice_kernel = body["id"].as_str().unwrap().to_owned();
    let mut alice_ws = KernelClient::open(server.port, "alice", &alice.token, &alice_kernel).await;
    let probe = TcpListener::bind("0.0.0.0:0").unwrap();
    let probe_port = probe.local_addr().unwrap().port();
    let host_ips =
        String::from_utf8(Command::new("hostname").arg("-I").output().unwrap().stdout).unwrap();
    let marker = format!("alice-marker-{}", uuid::Uuid::new_v4());

    let outcome = alice_ws.run(PRELUDE, Duration::from_secs(60)).await;
    assert!(outcome.error.is_none(), "{outcome:?}");
    let fill = |code: &str| {
        code.replace("@BOB_WS@", &server.workspace("bob").display().to_string())
            .replace(
                "@WORKSPACES@",
                &data_dir.join("workspaces").display().to_string(),
            )
            .replace("@DATA@", &data_dir.display().to_string())
            .replace("@CONFIG@", &server.config.display().to_string())
            .replace("@SERVER_PID@", &server.child.id().to_string())
            .replace("@BOB_PID@", &bob_pid.to_string())
            .replace("@BOB_SOCKET@", &bob_socket)
            .replace("@PORT@", &server.port.to_string())
            .replace("@PROBE_PORT@", &probe_port.to_string())
            .replace("@HOST_IPS@", host_ips.trim())
            .replace("@MARKER@", &marker)
            .replace("@TMP_BYTES_MAX@", &TMP_BYTES_MAX.to_string())
            .replace("@FILE_BYTES_MAX@", &FILE_BYTES_MAX.to_string())
            .replace("@WORKSPACE_BYTES_MAX@", &WORKSPACE_BYTES_MAX.to_string())
            .replace("@PIDS_MAX@", &PIDS_MAX.to_string())
            .replace("@OPEN_FILES_MAX@", &OPEN_FILES_MAX.to_string())
    };
    let mut escaped = Vec::new();
    let all = cells();
    assert!(all.len() >= 30, "the suite has {} attacks", all.len());
    for (name, code) in &all {
        let outcome = alice_ws.run(&fill(code), Duration::from_secs(120)).await;
        let line = outcome
            .stdout
            .lines()
            .find(|l| {
                l.starts_with(&format!("CONTAINED {name} ::"))
                    || l.starts_with(&format!("ESCAPED {name} ::"))
            })
            .unwrap_or_else(|| panic!("`{name}` reported nothing: {outcome:?}"))
            .to_owned();
        eprintln!("{line}");
        if line.starts_with("ESCAPED") {
            escaped.push(line);
        }
        assert!(
            outcome.death.is_none(),
            "`{name}` killed alice's kernel: {outcome:?}"
        );
    }

    // Checked from outside: nothing of alice's in the host's /tmp or bob's; links to bob's file
    // and the database do not open through the contents API; bob's kernel kept its state.
    assert!(
        !Path::new("/tmp").join(&marker).exists(),
        "alice's /tmp is the host's"
    );
    let outcome = bob_ws
        .run(
            &format!("import os\nprint(os.path.exists('/tmp/{marker}'), state + 1)"),
            Duration::from_secs(60),
        )
        .await;
    assert_eq!(
        outcome.stdout.trim(),
        "False 42",
        "bob's kernel is untouched: {outcome:?}"
    );
    for link in ["bob-link.txt", "db-link"] {
        let (status, body) = alice
            .call(
                reqwest::Method::GET,
                &format!("/user/alice/api/contents/{link}?content=1"),
                None,
            )
            .await;
        assert!(
            status >= 400,
            "{link} through the contents API: {status} {body}"
        );
    }

    // The last attacks take alice's own kernel down; the server and bob must not notice.
    let outcome = alice_ws
        .run(
            "import os, signal\nos.kill(-1, signal.SIGKILL)",
            Duration::from_secs(60),
        )
        .await;
    eprintln!("kill(-1) from alice's kernel: {outcome:?}");
    let (status, body) = alice
        .call(
            reqwest::Method::POST,
            "/user/alice/api/kernels",
            Some(json!({})),
        )
        .await;
    assert_eq!(status, 201, "alice can start another kernel: {body}");
    let bomb_kernel = body["id"].as_str().unwrap().to_owned();
    let mut bomb_ws = KernelClient::open(server.port, "alice", &alice.token, &bomb_kernel).await;
    let outcome = bomb_ws
        .run(
            "b = []\nwhile True:\n    b.append(bytearray(1 << 24))",
            Duration::from_secs(120),
        )
        .await;
    let death = outcome.death.clone().unwrap_or_default()
        + &outcome.stdout
        + &outcome.error.clone().unwrap_or_default();
    assert!(
        death.contains("memory limit") && death.contains("256 MiB"),
        "a kernel killed by its memory limit says so, with the limit: {outcome:?}"
    );

    let (status, _) = bob
        .call(reqwest::Method::GET, "/user/bob/api/status", None)
        .await;
    assert_eq!(status, 200, "the server is healthy");
    let outcome = bob_ws
        .run("print(state + 1)", Duration::from_secs(60))
        .await;
    assert_eq!(
        outcome.stdout.trim(),
        "42",
        "bob's kernel survived everything: {outcome:?}"
    );
    assert_eq!(
        std::fs::read_to_string(server.workspace("bob").join("secret.txt")).unwrap(),
        "bob's secret"
    );
    drop(probe);
    assert!(
        escaped.is_empty(),
        "attacks that escaped:\n{}",
        escaped.join("\n")
    );
}
