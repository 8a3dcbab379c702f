//! The escape suite: hostile cells run through the real server, as a normal user, against real
//! bubblewrap sandboxes and cgroups. Each cell tries one attack and prints `CONTAINED <name>` or
//! `ESCAPED <name>` from what it could actually do; the test also checks from the outside that
//! the server and another user's kernel and files are unaffected afterwards.
//!
//! Needs root, bubblewrap, cgroups, loop devices and a Python with ipykernel. When
//! `COMMONLAB_TEST_REQUIRE` names `sandbox` (as `scripts/test.sh` sets it) a missing part is a
//! failure; otherwise the suite is skipped with a message.

mod support;

use std::net::TcpListener;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};

use support::*;

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
            "fill the disk through the socket directory",
            r#"
# The one other directory a kernel may write in: where its sockets and connection file are.
from ipykernel.connect import get_connection_file
sockets = os.path.dirname(get_connection_file())
written, n, err = 0, 0, 'no error'
chunk = b'x' * (1 << 20)
try:
    while written < 4 * @WORKSPACE_BYTES_MAX@:
        with open(os.path.join(sockets, f'fill{n}'), 'wb') as f:
            for _ in range(8):
                f.write(chunk); f.flush(); written += len(chunk)
        n += 1
except OSError as e:
    err = repr(e)
for name in os.listdir(sockets):
    if name.startswith('fill'):
        os.remove(os.path.join(sockets, name))
report('fill the disk through the socket directory', written > (4 << 20), f'{written >> 20} MiB beside the sockets in {sockets}, then {err}')
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

// Each attack's line is printed, so the run shows what contained what.
#[allow(clippy::print_stderr)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_cells_are_contained() {
    let Some(python) = prerequisites() else {
        return;
    };
    let server = start_server(&python, "", &[("alice", &[]), ("bob", &[])]);
    let data_dir = server.data_dir();
    let alice = server.api("alice");
    let bob = server.api("bob");
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
            "state = 41\nimport os\nopen('secret.txt', 'r+').close()  # saved through the API, editable by bob\nprint(os.getuid())",
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
    let all: Vec<_> = cells().into_iter().chain(syscall_cells()).collect();
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
    // A cell sent to the dead kernel is answered with why it died, not left waiting.
    let outcome = bomb_ws
        .run("print('never runs')", Duration::from_secs(60))
        .await;
    let error = outcome.error.clone().unwrap_or_default();
    assert!(
        error.contains("MemoryLimitReached") && error.contains("256 MiB"),
        "a cell sent to a kernel its memory limit killed is answered with that: {outcome:?}"
    );
    assert!(outcome.stdout.is_empty(), "{outcome:?}");

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

/// A cell the default policy refuses (a Stratum pool URL) that, were it run, would leave `marker`
/// in the workspace.
fn blocked_cell(marker: &str) -> String {
    format!("open('{marker}', 'w').close()\npool = 'stratum+tcp://pool.supportxmr.com:3333'\n")
}

/// A kernel WebSocket in the v1 framing, which carries each message part as the exact bytes the
/// client wrote, so a content no JSON library would produce reaches the server as written.
struct V1Client {
    ws: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    session: String,
}

/// One message read back: its channel and its four JSON parts.
#[derive(Debug)]
struct V1Message {
    channel: String,
    header: Value,
    parent_header: Value,
    content: Value,
}

impl V1Client {
    async fn open(port: u16, user: &str, token: &str, kernel_id: &str) -> V1Client {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let session = uuid::Uuid::new_v4().to_string();
        let mut request = format!("ws://127.0.0.1:{port}/user/{user}/api/kernels/{kernel_id}/channels?session_id={session}&token={token}")
            .into_client_request()
            .unwrap();
        request.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            "v1.kernel.websocket.jupyter.org".parse().unwrap(),
        );
        let (ws, response) = tokio_tungstenite::connect_async(request).await.unwrap();
        assert_eq!(
            response.headers()["sec-websocket-protocol"],
            "v1.kernel.websocket.jupyter.org"
        );
        V1Client { ws, session }
    }

    /// Sends `content`, exactly these bytes, as a `msg_type` request on `channel`; returns its
    /// `msg_id`.
    async fn send_raw(&mut self, channel: &str, msg_type: &str, content: &str) -> String {
        use futures_util::SinkExt;
        let msg_id = uuid::Uuid::new_v4().to_string();
        let header = json!({"msg_id": msg_id, "username": "gate", "session": self.session, "msg_type": msg_type, "version": "5.3", "date": "2026-01-01T00:00:00.000000Z"}).to_string();
        let parts: [&[u8]; 5] = [
            channel.as_bytes(),
            header.as_bytes(),
            b"{}",
            b"{}",
            content.as_bytes(),
        ];
        let mut offsets = vec![8 * (parts.len() as u64 + 2)];
        for part in parts {
            offsets.push(offsets.last().unwrap() + part.len() as u64);
        }
        let mut frame = (offsets.len() as u64).to_le_bytes().to_vec();
        for offset in &offsets {
            frame.extend_from_slice(&offset.to_le_bytes());
        }
        for part in parts {
            frame.extend_from_slice(part);
        }
        self.ws
            .send(tokio_tungstenite::tungstenite::Message::Binary(
                frame.into(),
            ))
            .await
            .unwrap();
        msg_id
    }

    /// Reads until the reply of type `reply_type` to `msg_id`; panics when the connection ends or
    /// nothing comes within `timeout`.
    async fn reply(&mut self, msg_id: &str, reply_type: &str, timeout: Duration) -> V1Message {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let message = self
                .next(deadline)
                .await
                .unwrap_or_else(|| panic!("no {reply_type} to {msg_id} within {timeout:?}"));
            if message.parent_header["msg_id"] == msg_id && message.header["msg_type"] == reply_type
            {
                return message;
            }
        }
    }

    /// Reads until a message of type `msg_type` whose content names `comm_id`.
    async fn comm_message(
        &mut self,
        msg_type: &str,
        comm_id: &str,
        timeout: Duration,
    ) -> V1Message {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let message = self
                .next(deadline)
                .await
                .unwrap_or_else(|| panic!("no {msg_type} for comm {comm_id} within {timeout:?}"));
            if message.header["msg_type"] == msg_type && message.content["comm_id"] == comm_id {
                return message;
            }
        }
    }

    async fn next(&mut self, deadline: std::time::Instant) -> Option<V1Message> {
        use futures_util::StreamExt;
        use tokio_tungstenite::tungstenite::Message;
        loop {
            let remaining = deadline.saturating_duration_since(std::time::Instant::now());
            let frame = match tokio::time::timeout(remaining, self.ws.next()).await {
                Ok(Some(Ok(Message::Binary(frame)))) => frame,
                Ok(Some(Ok(_))) => continue,
                _ => return None,
            };
            let word =
                |i: usize| u64::from_le_bytes(frame[8 * i..8 * i + 8].try_into().unwrap()) as usize;
            let offsets: Vec<usize> = (1..=word(0)).map(word).collect();
            let part = |i: usize| &frame[offsets[i]..offsets[i + 1]];
            let json = |i: usize| serde_json::from_slice::<Value>(part(i)).unwrap_or_default();
            return Some(V1Message {
                channel: String::from_utf8_lossy(part(0)).into_owned(),
                header: json(1),
                parent_header: json(2),
                content: json(4),
            });
        }
    }

    /// Runs `code` and returns its reply's content.
    async fn run(&mut self, code: &str) -> Value {
        let content = json!({"code": code, "silent": false, "store_history": false, "user_expressions": {}, "allow_stdin": false, "stop_on_error": true});
        let msg_id = self
            .send_raw("shell", "execute_request", &content.to_string())
            .await;
        self.reply(&msg_id, "execute_reply", Duration::from_secs(60))
            .await
            .content
    }
}

/// The policy gate checks exactly what the kernel would run, on every channel and message type
/// that can run code: a content the gate and the kernel could read differently is refused, and
/// each way of carrying a blocked cell past the check is refused. Each blocked cell would leave
/// a marker file; none may exist afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gate_checks_what_the_kernel_runs() {
    let Some(python) = prerequisites() else {
        return;
    };
    let server = start_server(&python, "", &[("alice", &[])]);
    let alice = server.api("alice");
    wait_ready(&alice).await;
    let (status, body) = alice
        .call(
            reqwest::Method::POST,
            "/user/alice/api/kernels",
            Some(json!({})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let kernel = body["id"].as_str().unwrap().to_owned();
    let mut ws = V1Client::open(server.port, "alice", &alice.token, &kernel).await;
    let workspace = server.workspace("alice");
    let wait = Duration::from_secs(60);

    // What a user may do in a cell the policy lets through: a comm target that runs what it is
    // sent, and a completer that evaluates what it completes.
    let reply = ws
        .run(
            "get_ipython().kernel.comm_manager.register_target('gate_exec', lambda comm, msg: exec(msg['content']['data']['code']))\n\
             get_ipython().Completer.use_jedi = False\n\
             get_ipython().Completer.evaluation = 'unsafe'\n",
        )
        .await;
    assert_eq!(reply["status"], "ok", "{reply}");

    // The key "code" twice: a benign cell first, the blocked one second (Python keeps the last).
    let content = format!(
        r#"{{"code": "print('benign')", "silent": false, "store_history": false, "user_expressions": {{}}, "allow_stdin": false, "stop_on_error": true, "code": {}}}"#,
        serde_json::to_string(&blocked_cell("gate-duplicate-code")).unwrap()
    );
    let msg_id = ws.send_raw("shell", "execute_request", &content).await;
    let reply = ws.reply(&msg_id, "execute_reply", wait).await;
    assert_eq!(reply.content["status"], "error", "{reply:?}");
    assert_eq!(reply.content["code"], "duplicate_key", "{reply:?}");
    assert!(
        reply.content["evalue"]
            .as_str()
            .unwrap_or_default()
            .contains("\"code\""),
        "the refusal names the key: {reply:?}"
    );

    // The same with the duplicate one level down, in user_expressions.
    let content = format!(
        r#"{{"code": "1", "user_expressions": {{"x": "1", "x": {}}}}}"#,
        serde_json::to_string(
            "__import__('os').system('touch gate-duplicate-expression # stratum+tcp://pool.supportxmr.com:3333')"
        )
        .unwrap()
    );
    let msg_id = ws.send_raw("shell", "execute_request", &content).await;
    let reply = ws.reply(&msg_id, "execute_reply", wait).await;
    assert_eq!(reply.content["code"], "duplicate_key", "{reply:?}");

    // The same in the legacy JSON framing.
    let msg_id = uuid::Uuid::new_v4().to_string();
    let frame = format!(
        r#"{{"channel": "shell", "header": {}, "parent_header": {{}}, "metadata": {{}}, "content": {{"code": "print('benign')", "code": {}}}}}"#,
        json!({"msg_id": msg_id, "username": "gate", "session": ws.session, "msg_type": "execute_request", "version": "5.3", "date": "2026-01-01T00:00:00.000000Z"}),
        serde_json::to_string(&blocked_cell("gate-duplicate-legacy")).unwrap()
    );
    futures_util::SinkExt::send(
        &mut ws.ws,
        tokio_tungstenite::tungstenite::Message::Text(frame.into()),
    )
    .await
    .unwrap();
    let reply = ws.reply(&msg_id, "execute_reply", wait).await;
    assert_eq!(reply.content["code"], "duplicate_key", "{reply:?}");

    // Not JSON at all, and "code" that is not text.
    for (content, code) in [
        (r#"{"code": "1""#, "invalid_json"),
        (r#"{"code": ["1"]}"#, "bad_field"),
    ] {
        let msg_id = ws.send_raw("shell", "execute_request", content).await;
        let reply = ws.reply(&msg_id, "execute_reply", wait).await;
        assert_eq!(reply.content["status"], "error", "{content}: {reply:?}");
        assert_eq!(reply.content["code"], code, "{content}: {reply:?}");
    }

    // A cell on the control channel, which ipykernel runs like one on shell.
    let content = json!({"code": blocked_cell("gate-control"), "silent": false, "store_history": false, "user_expressions": {}, "allow_stdin": false, "stop_on_error": true});
    let msg_id = ws
        .send_raw("control", "execute_request", &content.to_string())
        .await;
    let reply = ws.reply(&msg_id, "execute_reply", wait).await;
    assert_eq!(
        reply.channel, "control",
        "answered where it was asked: {reply:?}"
    );
    assert_eq!(reply.content["status"], "error", "{reply:?}");
    assert_eq!(reply.content["ename"], "PolicyViolation", "{reply:?}");

    // A benign cell whose user_expressions, evaluated after it, hold the blocked code.
    let content = json!({"code": "1", "silent": false, "store_history": false, "allow_stdin": false, "stop_on_error": true,
        "user_expressions": {"x": "__import__('os').system('touch gate-user-expressions # stratum+tcp://pool.supportxmr.com:3333')"}});
    let msg_id = ws
        .send_raw("shell", "execute_request", &content.to_string())
        .await;
    let reply = ws.reply(&msg_id, "execute_reply", wait).await;
    assert_eq!(reply.content["status"], "error", "{reply:?}");
    assert_eq!(reply.content["ename"], "PolicyViolation", "{reply:?}");

    // A completion the completer evaluates.
    let code = "__import__('os').system('touch gate-complete # stratum+tcp://pool.supportxmr.com:3333').real.";
    let content = json!({"code": code, "cursor_pos": code.chars().count()});
    let msg_id = ws
        .send_raw("shell", "complete_request", &content.to_string())
        .await;
    let reply = ws.reply(&msg_id, "complete_reply", wait).await;
    assert_eq!(reply.content["status"], "error", "{reply:?}");
    assert_eq!(reply.content["ename"], "PolicyViolation", "{reply:?}");

    // The debugger's evaluate, and a debugger command that would start a program.
    let content = json!({"type": "request", "seq": 1, "command": "evaluate",
        "arguments": {"expression": "__import__('os').system('touch gate-debug # stratum+tcp://pool.supportxmr.com:3333')", "context": "repl"}});
    let msg_id = ws
        .send_raw("control", "debug_request", &content.to_string())
        .await;
    let reply = ws.reply(&msg_id, "debug_reply", wait).await;
    assert_eq!(reply.content["success"], false, "{reply:?}");
    assert!(
        reply.content["message"]
            .as_str()
            .unwrap_or_default()
            .contains("mining"),
        "the refusal explains the policy: {reply:?}"
    );
    let content = json!({"type": "request", "seq": 2, "command": "launch",
        "arguments": {"code": "print(1)"}});
    let msg_id = ws
        .send_raw("control", "debug_request", &content.to_string())
        .await;
    let reply = ws.reply(&msg_id, "debug_reply", wait).await;
    assert_eq!(reply.content["success"], false, "{reply:?}");
    assert_eq!(reply.content["code"], "debug_command_refused", "{reply:?}");

    // A comm the kernel's handler runs the data of.
    let comm_id = uuid::Uuid::new_v4().simple().to_string();
    let content = json!({"comm_id": comm_id, "target_name": "gate_exec",
        "data": {"code": blocked_cell("gate-comm")}});
    ws.send_raw("shell", "comm_open", &content.to_string())
        .await;
    let closed = ws.comm_message("comm_close", &comm_id, wait).await;
    assert_eq!(
        closed.content["data"]["code"], "policy_refused",
        "{closed:?}"
    );

    // A cell spelt in full-width letters, which Python reads as the plain ones (NFKC): the
    // kernel runs `ｏｐｅｎ` as `open`, so `ｐｔｙ.ｓｐａｗｎ` is `pty.spawn` and is refused as such.
    let reply = ws
        .run("\u{ff4f}\u{ff50}\u{ff45}\u{ff4e}('nfkc-probe', 'w').close()")
        .await;
    assert_eq!(reply["status"], "ok", "{reply}");
    assert!(
        workspace.join("nfkc-probe").exists(),
        "the kernel reads full-width names as plain ones"
    );
    let reply = ws
        .run(
            "open('gate-fullwidth', 'w').close()\n\
             import \u{ff50}\u{ff54}\u{ff59}\n\
             if False:\n    \u{ff50}\u{ff54}\u{ff59}.\u{ff53}\u{ff50}\u{ff41}\u{ff57}\u{ff4e}('/bin/sh')\n",
        )
        .await;
    assert_eq!(reply["status"], "error", "{reply}");
    assert_eq!(reply["ename"], "PolicyViolation", "{reply}");

    // A cell longer than the policy reads, the blocked code past its end.
    let code = format!(
        "#{}\n{}",
        "x".repeat(1 << 20),
        blocked_cell("gate-too-large")
    );
    let reply = ws.run(&code).await;
    assert_eq!(reply["status"], "error", "{}", reply["evalue"]);
    assert_eq!(reply["code"], "code_too_large", "{}", reply["evalue"]);

    // A message type the kernel might act on in ways nobody checked.
    let msg_id = ws.send_raw("shell", "apply_request", "{}").await;
    let reply = ws.reply(&msg_id, "apply_reply", wait).await;
    assert_eq!(reply.content["status"], "error", "{reply:?}");
    assert_eq!(reply.content["code"], "message_type_refused", "{reply:?}");

    // Shell runs in order, so by now every request above was handled; nothing ran.
    let reply = ws.run("print('still here')").await;
    assert_eq!(reply["status"], "ok", "{reply}");
    let ran: Vec<String> = std::fs::read_dir(&workspace)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with("gate-"))
        .collect();
    assert!(ran.is_empty(), "blocked code ran: {ran:?}");
}

/// The kernel swaps workspace entries with symlinks to root-only host paths in a tight loop
/// (`renameat2(RENAME_EXCHANGE)`) while the user calls the contents and files APIs. Whatever
/// the race, the server reads, writes and gives away nothing outside the workspace: it acts on
/// the workspace as the user's own uid.
#[allow(clippy::print_stderr)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workspace_symlink_races_reach_nothing_outside() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let Some(python) = prerequisites() else {
        return;
    };
    let server = start_server(&python, "", &[("alice", &[])]);
    let data_dir = server.data_dir();
    let alice = server.api("alice");
    wait_ready(&alice).await;

    // Root-only things on the host: a secret, a root file to keep, a directory to keep empty.
    let secret = format!("ROOT-ONLY-{}", uuid::Uuid::new_v4());
    let host = data_dir.join("host-only");
    std::fs::create_dir_all(&host).unwrap();
    std::fs::set_permissions(&host, std::fs::Permissions::from_mode(0o700)).unwrap();
    let secret_file = host.join("secret");
    std::fs::write(&secret_file, &secret).unwrap();
    std::fs::set_permissions(&secret_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let kept_file = host.join("kept");
    std::fs::write(&kept_file, "root's own").unwrap();
    let kept_dir = host.join("kept-dir");
    std::fs::create_dir(&kept_dir).unwrap();
    // A directory on the host that anyone may write in, as /tmp is: the user's own uid could
    // create there, so only resolving beneath the workspace keeps saves out of it.
    let open_dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(open_dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();

    let (status, body) = alice
        .call(
            reqwest::Method::POST,
            "/user/alice/api/kernels",
            Some(json!({})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let kernel = body["id"].as_str().unwrap().to_owned();
    let mut ws = KernelClient::open(server.port, "alice", &alice.token, &kernel).await;
    // One swapper process per pair, each exchanging a real entry with a symlink out.
    let swappers = r#"
import os, subprocess, sys
SWAP = '''
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
a, b, target = sys.argv[1].encode(), sys.argv[2].encode(), sys.argv[3]
n = 0
while True:
    libc.renameat2(-100, a, -100, b, 2)
    n += 1
    # A save renames a new file over whichever name the link had: make the link again.
    if n % 16 == 0 and not os.path.islink(a) and not os.path.islink(b) and os.path.isfile(b):
        os.unlink(b)
        os.symlink(target, b)
    if n % 2000 == 0 and os.path.exists('stop-race'):
        break
'''
open('race.txt', 'w').write('benign')
os.symlink('@SECRET@', 'race.link')
open('chown.txt', 'w').write('benign')
os.symlink('@KEPT_FILE@', 'chown.link')
os.mkdir('race-dir')
os.symlink('@KEPT_DIR@', 'race-dir.link')
os.mkdir('ls-dir')
os.symlink('/etc', 'ls-dir.link')
os.mkdir('open-dir')
os.symlink('@OPEN_DIR@', 'open-dir.link')
procs = [subprocess.Popen([sys.executable, '-c', SWAP, a, b, os.readlink(b)])
         for a, b in [('race.txt', 'race.link'), ('chown.txt', 'chown.link'), ('race-dir', 'race-dir.link'), ('ls-dir', 'ls-dir.link'), ('open-dir', 'open-dir.link')]]
print('swapping', [p.pid for p in procs])
"#
    .replace("@SECRET@", &secret_file.display().to_string())
    .replace("@KEPT_FILE@", &kept_file.display().to_string())
    .replace("@KEPT_DIR@", &kept_dir.display().to_string())
    .replace("@OPEN_DIR@", &open_dir.path().display().to_string());
    let outcome = ws.run(&swappers, Duration::from_secs(60)).await;
    assert!(outcome.stdout.contains("swapping"), "{outcome:?}");

    let mut leaks = Vec::new();
    for i in 0..300 {
        for path in [
            "/user/alice/api/contents/race.txt?content=1".to_owned(),
            "/user/alice/api/contents/race.txt?content=1&format=base64".to_owned(),
            "/user/alice/files/race.txt".to_owned(),
        ] {
            let (_, body) = alice.call(reqwest::Method::GET, &path, None).await;
            let text = body.to_string();
            if text.contains(&secret) || text.contains("Uk9PVC1PTkxZ") {
                leaks.push(format!("GET {path} (request {i}) read the root-only file"));
            }
        }
        // /etc is readable by anyone, the user's uid included: only resolving beneath the
        // workspace keeps the listing inside.
        let (_, body) = alice
            .call(
                reqwest::Method::GET,
                "/user/alice/api/contents/ls-dir?content=1",
                None,
            )
            .await;
        if body.to_string().contains("passwd") {
            leaks.push(format!("GET ls-dir (request {i}) listed the host's /etc"));
        }
        let _ = alice
            .call(
                reqwest::Method::PUT,
                "/user/alice/api/contents/chown.txt",
                Some(json!({"type": "file", "format": "text", "content": format!("save {i}")})),
            )
            .await;
        for body in [
            json!({"type": "directory"}),
            json!({"type": "file", "format": "text", "content": "x"}),
        ] {
            let kind = body["type"].as_str().unwrap().to_owned();
            let _ = alice
                .call(
                    reqwest::Method::PUT,
                    &format!("/user/alice/api/contents/open-dir/{kind}{i}"),
                    Some(body),
                )
                .await;
        }
        let _ = alice
            .call(
                reqwest::Method::PUT,
                &format!("/user/alice/api/contents/race-dir/x{i}.txt"),
                Some(json!({"type": "file", "format": "text", "content": "x"})),
            )
            .await;
    }
    let outcome = ws
        .run(
            "open('stop-race', 'w').close()\nimport time; time.sleep(1)\nprint('stopped')",
            Duration::from_secs(60),
        )
        .await;
    assert!(outcome.stdout.contains("stopped"), "{outcome:?}");

    let kept = std::fs::symlink_metadata(&kept_file).unwrap();
    if kept.uid() != 0 || kept.gid() != 0 {
        leaks.push(format!(
            "the root file {} was given to {}:{}",
            kept_file.display(),
            kept.uid(),
            kept.gid()
        ));
    }
    if std::fs::read_to_string(&kept_file).unwrap() != "root's own" {
        leaks.push(format!(
            "the root file {} was overwritten",
            kept_file.display()
        ));
    }
    let created: Vec<_> = std::fs::read_dir(&kept_dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    if !created.is_empty() {
        leaks.push(format!(
            "files were created in the root-only directory {}: {created:?}",
            kept_dir.display()
        ));
    }
    let created: Vec<_> = std::fs::read_dir(open_dir.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    if !created.is_empty() {
        leaks.push(format!(
            "entries were created in a host directory outside the workspace: {created:?}"
        ));
    }
    for line in &leaks {
        eprintln!("ESCAPED {line}");
    }
    assert!(
        leaks.is_empty(),
        "the server acted outside the workspace:\n{}",
        leaks.join("\n")
    );
    // The API still works for the user's own files afterwards.
    let (status, body) = alice
        .call(
            reqwest::Method::PUT,
            "/user/alice/api/contents/after.txt",
            Some(json!({"type": "file", "format": "text", "content": "fine"})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let saved = std::fs::symlink_metadata(server.workspace("alice").join("after.txt")).unwrap();
    assert!(
        saved.uid() >= 200_000,
        "a saved file belongs to the user, uid {}",
        saved.uid()
    );
}

/// Defines `refused(name, calls)` for the cells of [`syscall_cells`]: each call is
/// `(label, x86_64 number, aarch64 number, args, kind)`, made with `libc.syscall`; the attack is
/// contained when every call fails with `EPERM` or `ENOSYS` before the kernel acts on it. Each
/// call's arguments are chosen so that, if the call got through, the kernel would answer
/// something else (success, `EINVAL`, `EFAULT`, ...) wherever it can. A call that succeeds is
/// undone (`kind`: an fd is closed, a child leaves at once, a personality is restored).
const SYSCALL_PRELUDE: &str = r#"
import ctypes, errno, os, platform
_sys = ctypes.CDLL(None, use_errno=True)
_sys.syscall.restype = ctypes.c_long
_x86 = platform.machine() == 'x86_64'
def _arg(a):
    return ctypes.c_long(a) if isinstance(a, int) else a
def refused(name, calls):
    seen, reached = [], False
    for label, x86, arm, args, kind in calls:
        number = x86 if _x86 else arm
        if number is None:
            seen.append(label + '=absent on ' + platform.machine())
            continue
        ctypes.set_errno(0)
        r = _sys.syscall(ctypes.c_long(number), *[_arg(a) for a in args])
        e = ctypes.get_errno()
        if r >= 0 and kind == 'child' and r == 0:
            os._exit(0)
        if r >= 0 and kind == 'child':
            os.waitpid(r, 0)
        if r >= 0 and kind == 'fd':
            os.close(r)
        if r >= 0 and kind == 'persona':
            _sys.syscall(ctypes.c_long(number), ctypes.c_long(r))
        seen.append(label + '=' + (f'ok({r})' if r >= 0 else errno.errorcode.get(e, str(e))))
        reached |= r >= 0 or e not in (errno.EPERM, errno.ENOSYS)
    report(name, reached, ', '.join(seen))
def perf_attr():
    # PERF_TYPE_SOFTWARE, TASK_CLOCK, disabled, user space only: allowed to anyone at
    # perf_event_paranoid <= 2.
    attr = (ctypes.c_uint64 * 16)()
    attr[0] = 1 | (128 << 32)
    attr[1] = 1
    attr[5] = 1 | (1 << 5) | (1 << 6)
    return attr
"#;

/// The system calls the seccomp filter refuses, a cell per family (see
/// `crates/runtime/src/sandbox/seccomp.rs`). Most are already refused for lack of privilege;
/// these cells pass arguments the kernel rejects before it looks at privileges, so only a filter
/// in front of the kernel answers `EPERM`/`ENOSYS` to them.
fn syscall_cells() -> Vec<(&'static str, String)> {
    let cells: Vec<(&str, &str)> = vec![
        (
            "run without a seccomp filter",
            r#"
status = dict(l.split(':', 1) for l in open('/proc/self/status'))
mode = status.get('Seccomp', '?').strip()
report('run without a seccomp filter', mode != '2', f"Seccomp {mode}, filters {status.get('Seccomp_filters', '?').strip()}")
"#,
        ),
        (
            "reach io_uring",
            r#"refused('reach io_uring', [
    ('io_uring_setup', 425, 425, [1, ctypes.create_string_buffer(120)], 'fd'),
    ('io_uring_enter', 426, 426, [-1, 0, 0, 0, None, 0], None),
    ('io_uring_register', 427, 427, [-1, 0, None, 0], None)])"#,
        ),
        (
            "reach userfaultfd",
            r#"refused('reach userfaultfd', [
    ('userfaultfd', 323, 282, [1 | os.O_CLOEXEC], 'fd')])"#,
        ),
        (
            "reach perf_event_open",
            r#"refused('reach perf_event_open', [
    ('perf_event_open', 298, 241, [perf_attr(), 0, -1, -1, 0], 'fd'),
    ('perf_event_open bad flags', 298, 241, [None, 0, -1, -1, -1], None)])"#,
        ),
        (
            "reach the kernel keyrings",
            r#"refused('reach the kernel keyrings', [
    ('keyctl', 250, 219, [0, -3, 0], None),
    ('add_key', 248, 217, [b'user', b'commonlab-escape', b'x', 1, -2], None),
    ('request_key', 249, 218, [b'user', b'commonlab-none', None, 0], None)])"#,
        ),
        (
            "load a kernel with kexec",
            r#"refused('load a kernel with kexec', [
    ('kexec_load', 246, 104, [0, 0, None, 0], None),
    ('kexec_file_load', 320, 294, [-1, -1, 0, None, 0], None)])"#,
        ),
        (
            "reach bpf",
            r#"refused('reach bpf', [
    ('bpf unknown command', 321, 280, [9999, ctypes.create_string_buffer(128), 128], None)])"#,
        ),
        (
            "load a kernel module",
            r#"refused('load a kernel module', [
    ('init_module', 175, 105, [None, 0, b''], None),
    ('finit_module', 313, 273, [-1, b'', -1], None),
    ('delete_module', 176, 106, [b'commonlab-none', 0], None)])"#,
        ),
        (
            "mount, pivot_root or chroot",
            r#"refused('mount, pivot_root or chroot', [
    ('mount bad type', 165, 40, [None, b'/', ctypes.c_void_p(1), 0, None], None),
    ('umount2 bad flags', 166, 39, [b'/', -1], None),
    ('pivot_root', 155, 41, [b'/', b'/'], None),
    ('open_tree bad flags', 428, 428, [-1, b'', -1], None),
    ('fsopen', 430, 430, [b'tmpfs', 0], None),
    ('chroot missing', 161, 51, [b'/commonlab-none'], None)])"#,
        ),
        (
            "swap or reboot",
            r#"refused('swap or reboot', [
    ('swapon bad flags', 167, 224, [None, -1], None),
    ('swapoff', 168, 225, [b'/commonlab-none'], None),
    ('reboot', 169, 142, [0, 0, 0, None], None)])"#,
        ),
        (
            "open a file by handle",
            r#"refused('open a file by handle', [
    ('open_by_handle_at', 304, 265, [-1, None, 0], None)])"#,
        ),
        (
            "reach other processes' files and memory",
            r#"refused('reach other processes\' files and memory', [
    ('kcmp', 312, 272, [os.getpid(), os.getpid(), 0, 0, 0], None),
    ('pidfd_getfd', 438, 438, [-1, 0, 0], None),
    ('process_madvise', 440, 440, [-1, None, 0, 0, 0], None)])"#,
        ),
        (
            "set the clock",
            r#"refused('set the clock', [
    ('clock_settime bad pointer', 227, 112, [0, ctypes.c_void_p(1)], None),
    ('settimeofday bad pointer', 164, 170, [ctypes.c_void_p(1), None], None)])"#,
        ),
        (
            "switch accounting or quotas",
            r#"refused('switch accounting or quotas', [
    ('acct', 163, 89, [None], None),
    ('quotactl bad type', 179, 60, [-1, None, 0, None], None)])"#,
        ),
        (
            "make or join namespaces",
            r#"refused('make or join namespaces', [
    ('unshare user', 272, 97, [0x10000000], None),
    ('clone user', 56, 220, [0x10000000 | 17, 0, 0, 0, 0], 'child'),
    ('setns', 308, 268, [-1, 0], None)])"#,
        ),
        (
            "change the personality",
            r#"refused('change the personality', [
    ('personality ADDR_NO_RANDOMIZE', 135, 92, [0x0040000], 'persona')])"#,
        ),
        (
            "open a vsock socket to the host",
            r#"refused('open a vsock socket to the host', [
    ('socket AF_VSOCK', 41, 198, [40, 1, 0], 'fd')])"#,
        ),
        (
            "read the kernel log or rename the host",
            r#"refused('read the kernel log or rename the host', [
    ('syslog', 103, 116, [10, None, 0], None),
    ('sethostname', 170, 161, [b'x', 1], None),
    ('vhangup', 153, 58, [], None),
    ('lookup_dcookie', 212, 18, [0, None, 0], None),
    ('nfsservctl', 180, 42, [0, None, None], None)])"#,
        ),
        (
            "set NUMA memory policy",
            r#"refused('set NUMA memory policy', [
    ('get_mempolicy', 239, 236, [None, None, 0, None, 0], None),
    ('mbind unaligned', 237, 235, [1, 0, 0, None, 0, 0], None)])"#,
        ),
        (
            "reach I/O ports",
            r#"refused('reach I/O ports', [
    ('iopl', 172, None, [3], None),
    ('ioperm out of range', 173, None, [0, 0x100000, 1], None)])"#,
        ),
    ];
    cells
        .into_iter()
        .map(|(name, code)| (name, format!("{SYSCALL_PRELUDE}\n{code}")))
        .collect()
}
