//! What the tests that run the real server in accounts mode share: starting it with a config,
//! users and tokens through the CLI, the HTTP API, and a small kernel WebSocket client.

#![allow(dead_code, unreachable_pub)]

use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

pub const PASSWORD: &str = "a long enough password";
pub const MEMORY_BYTES_MAX: u64 = 256 << 20;
/// What all of one user's kernels hold together: room for a few.
pub const MEMORY_BYTES_MAX_TOTAL: u64 = 1 << 30;
pub const PIDS_MAX: u64 = 64;
pub const TMP_BYTES_MAX: u64 = 32 << 20;
pub const FILE_BYTES_MAX: u64 = 16 << 20;
pub const OPEN_FILES_MAX: u64 = 256;
pub const WORKSPACE_BYTES_MAX: u64 = 64 << 20;

/// The Python with ipykernel the tests use: `COMMONLAB_TEST_PYTHON`, else the repository's venv.
pub fn python_for_tests() -> PathBuf {
    std::env::var_os("COMMONLAB_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/python"))
}

#[allow(clippy::print_stderr)]
pub fn prerequisites() -> Option<PathBuf> {
    let required = std::env::var("COMMONLAB_TEST_REQUIRE")
        .unwrap_or_default()
        .split(',')
        .any(|d| d == "sandbox");
    let python = python_for_tests();
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

pub fn commonlab(data_dir: &Path, config: &Path, args: &[&str], stdin: &str) -> String {
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
        .env("COMMONLAB_KERNEL__PYTHON", python_for_tests())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // A command that refuses its arguments exits without reading its input; that is not a
    // failure of the test.
    match child.stdin.take().unwrap().write_all(stdin.as_bytes()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
        other => other.unwrap(),
    }
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "commonlab {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

pub struct Server {
    pub child: Child,
    pub port: u16,
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
}

impl Server {
    /// A new API token for `user`, made with the CLI.
    pub fn token(&self, user: &str) -> String {
        commonlab(&self.data_dir(), &self.config, &["user", "token", user], "")
            .split_whitespace()
            .find(|w| w.starts_with("clt_"))
            .expect("a token is printed")
            .to_owned()
    }

    pub fn api(&self, user: &str) -> Api {
        Api {
            base: format!("http://127.0.0.1:{}", self.port),
            token: self.token(user),
            http: reqwest::Client::new(),
        }
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn workspace(&self, user: &str) -> PathBuf {
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
        if let Ok(entries) = std::fs::read_dir(self.data_dir().join("workspaces")) {
            for entry in entries.flatten() {
                let _ = Command::new("umount")
                    .arg(entry.path())
                    .stderr(Stdio::null())
                    .status();
            }
        }
    }
}

/// Starts `commonlab serve` in accounts mode with sandboxes and small limits, `extra_config`
/// appended to its config, and the users given as (name, extra `user add` flags).
pub fn start_server(python: &Path, extra_config: &str, users: &[(&str, &[&str])]) -> Server {
    start_server_with_uids(python, random_uid_base(), extra_config, users)
}

/// A uid range of its own for each test server, so servers of tests running at once on one
/// host never claim the same uids.
pub fn random_uid_base() -> u32 {
    1_000_000 + (rand::random::<u32>() % 30_000) * 65_536
}

/// [`start_server`] with users' uids from `uid_base`.
pub fn start_server_with_uids(
    python: &Path,
    uid_base: u32,
    extra_config: &str,
    users: &[(&str, &[&str])],
) -> Server {
    start_server_under(&[], python, uid_base, extra_config, users)
}

/// [`start_server_with_uids`], with the server run by `launcher` (a program and its arguments
/// that executes the command after them in its own place, such as `prlimit --nofile=…`).
pub fn start_server_under(
    launcher: &[&str],
    python: &Path,
    uid_base: u32,
    extra_config: &str,
    users: &[(&str, &[&str])],
) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let config = dir.path().join("commonlab.toml");
    std::fs::write(
        &config,
        format!(
            r#"[accounts]
enabled = true
uid_base = {uid_base}

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
memory_bytes_max_total = {MEMORY_BYTES_MAX_TOTAL}
cpu_millicores_max_total = 2000

{extra_config}
"#,
        ),
    )
    .unwrap();
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    for (user, flags) in users {
        let mut args = vec!["user", "add", user];
        args.extend_from_slice(flags);
        commonlab(&data_dir, &config, &args, &format!("{PASSWORD}\n"));
    }
    let launcher: Vec<String> = launcher.iter().map(|a| (*a).to_owned()).collect();
    let child = serve(&launcher, python, dir.path(), &config, port);
    Server {
        child,
        port,
        dir,
        config,
    }
}

/// Runs `commonlab serve` with the config and data directory under `dir` on `port`, its output
/// appended to `dir/server.log`, run by `launcher` (a program and its arguments) when not empty.
fn serve(launcher: &[String], python: &Path, dir: &Path, config: &Path, port: u16) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("server.log"))
        .unwrap();
    let mut command = match launcher.split_first() {
        Some((program, args)) => {
            let mut command = Command::new(program);
            command.args(args).arg(env!("CARGO_BIN_EXE_commonlab"));
            command
        }
        None => Command::new(env!("CARGO_BIN_EXE_commonlab")),
    };
    for (name, _) in std::env::vars() {
        if name.starts_with("COMMONLAB_") {
            command.env_remove(name);
        }
    }
    command
        .args([
            "serve",
            "--config",
            config.to_str().unwrap(),
            "--port",
            &port.to_string(),
        ])
        .env("COMMONLAB_SERVER__DATA_DIR", dir.join("data"))
        .env("COMMONLAB_KERNEL__PYTHON", python)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap()
}

impl Server {
    /// Kills the server with SIGKILL, as a crash would, leaving its kernels running, and starts
    /// it again on the same port, config and data directory.
    pub fn kill_and_restart(&mut self, python: &Path) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        self.child = serve(&[], python, self.dir.path(), &self.config, self.port);
    }

    /// The server's log so far (both runs, after a restart).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }
}

pub struct Api {
    pub base: String,
    pub token: String,
    pub http: reqwest::Client,
}

impl Api {
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
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
pub struct Outcome {
    pub stdout: String,
    pub error: Option<String>,
    /// Text the server sent when the kernel died (status `dead` and any explanation).
    pub death: Option<String>,
}

pub struct KernelClient {
    ws: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    session: String,
}

impl KernelClient {
    pub async fn open(port: u16, user: &str, token: &str, kernel_id: &str) -> KernelClient {
        let session = uuid::Uuid::new_v4().to_string();
        KernelClient::open_session(
            &format!("ws://127.0.0.1:{port}/user/{user}"),
            token,
            kernel_id,
            &session,
        )
        .await
    }

    /// Connects to the kernel's channels under `base` (`ws://host:port` and any prefix) as the
    /// client session `session`: a client that reconnects uses its session again.
    pub async fn open_session(
        base: &str,
        token: &str,
        kernel_id: &str,
        session: &str,
    ) -> KernelClient {
        let url =
            format!("{base}/api/kernels/{kernel_id}/channels?session_id={session}&token={token}");
        let (ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
        KernelClient {
            ws,
            session: session.to_owned(),
        }
    }

    /// Reads whatever arrives, without sending anything, until a message containing `needle`
    /// (or `timeout`); returns all the text read.
    pub async fn notices(&mut self, timeout: Duration, needle: &str) -> String {
        let mut seen = String::new();
        let deadline = Instant::now() + timeout;
        while !seen.contains(needle) {
            let remaining = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(remaining, self.ws.next()).await {
                Ok(Some(Ok(Message::Text(text)))) => {
                    let message: Value = serde_json::from_str(&text).unwrap_or_default();
                    let content = &message["content"];
                    seen.push_str(
                        content["text"]
                            .as_str()
                            .or_else(|| content["evalue"].as_str())
                            .unwrap_or(""),
                    );
                    if content["execution_state"] == "dead" {
                        seen.push_str("\n[status: dead]\n");
                    }
                }
                Ok(Some(Ok(_))) => {}
                _ => break,
            }
        }
        seen
    }

    pub async fn run(&mut self, code: &str, timeout: Duration) -> Outcome {
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

/// The host pid of the ipykernel process run by `uid`, and its connection file.
pub fn kernel_of(uid: u32) -> Option<(i32, PathBuf)> {
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

pub async fn wait_ready(api: &Api) {
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

impl KernelClient {
    /// Sends a request on `channel` without waiting for anything; returns its `msg_id`.
    pub async fn send(&mut self, channel: &str, msg_type: &str, content: Value) -> String {
        let msg_id = uuid::Uuid::new_v4().to_string();
        let message = json!({
            "channel": channel,
            "header": {"msg_id": msg_id, "username": "test", "session": self.session, "msg_type": msg_type, "version": "5.3", "date": "2026-01-01T00:00:00.000000Z"},
            "parent_header": {}, "metadata": {},
            "content": content,
        });
        self.ws
            .send(Message::Text(message.to_string().into()))
            .await
            .unwrap();
        msg_id
    }

    /// Sends an `execute_request` for `code` without waiting; returns its `msg_id`.
    pub async fn execute(&mut self, code: &str) -> String {
        self.send(
            "shell",
            "execute_request",
            json!({"code": code, "silent": false, "store_history": false, "user_expressions": {}, "allow_stdin": false, "stop_on_error": true}),
        )
        .await
    }

    /// The next message from the server, or `None` at `timeout` or when the connection ends.
    pub async fn recv(&mut self, timeout: Duration) -> Option<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(remaining, self.ws.next()).await {
                Ok(Some(Ok(Message::Text(text)))) => {
                    return Some(serde_json::from_str(&text).unwrap_or_default())
                }
                Ok(Some(Ok(_))) => continue,
                _ => return None,
            }
        }
    }
}
