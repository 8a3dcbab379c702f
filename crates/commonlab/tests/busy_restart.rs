//! Busy kernels survive a crash of the server: with a cell running in each of three kernels,
//! the server is killed with SIGKILL and started again on the same data directory. It must
//! listen before the cells finish (recovery does not hold up the listener, and a busy kernel's
//! liveness is probed without queueing behind its cell), keep the kernels and their sessions,
//! and hand what the cells print after the crash, and their replies, to the clients when they
//! reconnect after the cells have finished. Run in token mode (local backend) and in accounts
//! mode (sandbox backend).

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use support::*;

const KERNELS: usize = 3;
/// How long each cell sleeps after it has started: the restart must be over well before.
const CELL_SLEEP_S: u64 = 20;
/// A guard against hanging, not a measurement.
const PATIENCE: Duration = Duration::from_secs(180);

/// The cell of kernel `i`: says it started, sleeps, prints its marker, then leaves a file in its
/// directory, so the test can tell whether it finished.
fn cell(i: usize) -> String {
    format!(
        "import time, pathlib\nprint('started-{i}', flush=True)\ntime.sleep({CELL_SLEEP_S})\nprint('marker-{i}', flush=True)\npathlib.Path('done-{i}').write_text('')"
    )
}

/// Where the test reaches one server: HTTP and WebSocket bases, its API token, and the
/// directory its kernels start in.
struct Target {
    http: String,
    ws: String,
    token: String,
    kernel_dir: PathBuf,
    client: reqwest::Client,
}

impl Target {
    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.http))
            .header("Authorization", format!("token {}", self.token));
        if let Some(body) = body {
            request = request.body(body.to_string());
        }
        match request.send().await {
            Ok(response) => {
                let status = response.status().as_u16();
                let text = response.text().await.unwrap_or_default();
                (status, serde_json::from_str(&text).unwrap_or(Value::Null))
            }
            Err(_) => (0, Value::Null),
        }
    }

    /// Whether `/api/status` answers now.
    async fn answers(&self) -> bool {
        self.call(reqwest::Method::GET, "/api/status", None).await.0 == 200
    }

    async fn wait_answering(&self) {
        let deadline = Instant::now() + PATIENCE;
        while !self.answers().await {
            assert!(Instant::now() < deadline, "the server never answered");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn done(&self, i: usize) -> bool {
        self.kernel_dir.join(format!("done-{i}")).exists()
    }
}

/// What the test started before the crash: per kernel, its session, id, client session and the
/// `msg_id` of its running cell.
struct Started {
    session_id: String,
    kernel_id: String,
    client_session: String,
    cell_msg_id: String,
}

/// Three sessions, each with its kernel running `cell(i)`, every cell past its first line.
/// The kernels are started first and the cells together, so they finish at about one time.
async fn start_busy_kernels(target: &Target) -> Vec<Started> {
    let mut sessions = Vec::new();
    for i in 0..KERNELS {
        let (status, body) = target
            .call(
                reqwest::Method::POST,
                "/api/sessions",
                Some(json!({"path": format!("busy-{i}.ipynb"), "type": "notebook", "name": "", "kernel": {"name": "python3"}})),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        sessions.push((
            body["id"].as_str().unwrap().to_owned(),
            body["kernel"]["id"].as_str().unwrap().to_owned(),
        ));
    }
    let mut clients = Vec::new();
    let mut started = Vec::new();
    for (i, (session_id, kernel_id)) in sessions.into_iter().enumerate() {
        let client_session = uuid::Uuid::new_v4().to_string();
        let mut client =
            KernelClient::open_session(&target.ws, &target.token, &kernel_id, &client_session)
                .await;
        let cell_msg_id = client.execute(&cell(i)).await;
        clients.push(client);
        started.push(Started {
            session_id,
            kernel_id,
            client_session,
            cell_msg_id,
        });
    }
    for (i, client) in clients.iter_mut().enumerate() {
        let seen = client.notices(PATIENCE, &format!("started-{i}")).await;
        assert!(seen.contains(&format!("started-{i}")), "{seen}");
    }
    // The clients go away with the server.
    started
}

/// After the restart: the server answered before any cell finished, still has every kernel and
/// session, and each client, reconnecting with its session, gets its cell's marker and reply.
async fn check_after_restart(target: &Target, started: &[Started], log: impl Fn() -> String) {
    target.wait_answering().await;
    let finished: Vec<usize> = (0..KERNELS).filter(|&i| target.done(i)).collect();
    assert!(
        finished.is_empty(),
        "the restarted server answered only after cells {finished:?} had finished\n{}",
        log()
    );

    let (status, kernels) = target
        .call(reqwest::Method::GET, "/api/kernels", None)
        .await;
    assert_eq!(status, 200);
    let mut ids: Vec<&str> = kernels
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["id"].as_str().unwrap())
        .collect();
    ids.sort_unstable();
    let mut expected: Vec<&str> = started.iter().map(|s| s.kernel_id.as_str()).collect();
    expected.sort_unstable();
    assert_eq!(ids, expected, "every kernel is still there\n{}", log());

    // The clients reconnect only once every cell has finished: what the cells printed after
    // the crash, and their replies, must have been kept for them.
    let deadline = Instant::now() + PATIENCE;
    while !(0..KERNELS).all(|i| target.done(i)) {
        assert!(
            Instant::now() < deadline,
            "the cells never finished\n{}",
            log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for (i, s) in started.iter().enumerate() {
        let mut client =
            KernelClient::open_session(&target.ws, &target.token, &s.kernel_id, &s.client_session)
                .await;
        let (mut marker, mut reply) = (false, None);
        let deadline = Instant::now() + PATIENCE;
        while !(marker && reply.is_some()) {
            let Some(message) = client
                .recv(deadline.saturating_duration_since(Instant::now()))
                .await
            else {
                panic!(
                    "kernel {i} after the restart: marker {marker}, reply {reply:?}\n{}",
                    log()
                );
            };
            if message["parent_header"]["msg_id"] != s.cell_msg_id.as_str() {
                continue;
            }
            match message["header"]["msg_type"].as_str() {
                Some("stream") => {
                    marker |= message["content"]["text"]
                        .as_str()
                        .is_some_and(|t| t.contains(&format!("marker-{i}")));
                }
                Some("execute_reply") => reply = Some(message["content"]["status"].clone()),
                _ => {}
            }
        }
        assert_eq!(reply, Some(json!("ok")), "kernel {i}'s cell replied");
        let outcome = client.run("print('after', 6 * 7)", PATIENCE).await;
        assert_eq!(outcome.stdout, "after 42\n", "kernel {i} still runs cells");
    }

    // Sessions are listed only while their kernel exists: asked last, after every kernel had
    // its chance to be dropped.
    let (status, sessions) = target
        .call(reqwest::Method::GET, "/api/sessions", None)
        .await;
    assert_eq!(status, 200);
    for s in started {
        assert!(
            sessions
                .as_array()
                .unwrap()
                .iter()
                .any(|m| m["id"] == s.session_id.as_str()
                    && m["kernel"]["id"] == s.kernel_id.as_str()),
            "session {} is kept with its kernel: {sessions}",
            s.session_id
        );
    }
}

/// A token-mode server (`commonlab serve` with the local backend) in a temporary directory.
struct TokenServer {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

const TOKEN: &str = "busy-restart-token";

impl TokenServer {
    fn start(python: &Path) -> TokenServer {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("root")).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = TokenServer::spawn(python, dir.path(), port);
        TokenServer { child, port, dir }
    }

    fn spawn(python: &Path, dir: &Path, port: u16) -> Child {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("server.log"))
            .unwrap();
        let mut command = Command::new(env!("CARGO_BIN_EXE_commonlab"));
        for (name, _) in std::env::vars() {
            if name.starts_with("COMMONLAB_") {
                command.env_remove(name);
            }
        }
        command
            .args(["serve", "--ip", "127.0.0.1", "--port", &port.to_string()])
            .args(["--token", TOKEN])
            .arg("--data-dir")
            .arg(dir.join("data"))
            .arg("--root-dir")
            .arg(dir.join("root"))
            .arg("--python")
            .arg(python)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap()
    }

    fn kill_and_restart(&mut self, python: &Path) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        self.child = TokenServer::spawn(python, self.dir.path(), self.port);
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    fn target(&self) -> Target {
        Target {
            http: format!("http://127.0.0.1:{}", self.port),
            ws: format!("ws://127.0.0.1:{}", self.port),
            token: TOKEN.into(),
            kernel_dir: self.dir.path().join("root"),
            client: reqwest::Client::new(),
        }
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        // A clean stop ends the kernels; any a failed test left behind are killed by pid.
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let data = self.dir.path().join("data").display().to_string();
        for pid in processes_mentioning(&data) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

/// Pids of processes whose command line mentions `needle`.
fn processes_mentioning(needle: &str) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| {
            let pid = entry.file_name().to_string_lossy().parse::<i32>().ok()?;
            let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
            String::from_utf8_lossy(&cmdline)
                .contains(needle)
                .then_some(pid)
        })
        .collect()
}

#[allow(clippy::print_stderr)]
fn python_with_ipykernel() -> Option<PathBuf> {
    let python = python_for_tests();
    let required = std::env::var("COMMONLAB_TEST_REQUIRE")
        .unwrap_or_default()
        .split(',')
        .any(|d| d == "ipykernel" || d == "sandbox");
    if python.exists() {
        return Some(python);
    }
    assert!(
        !required,
        "COMMONLAB_TEST_REQUIRE names ipykernel, but there is no Python at {}",
        python.display()
    );
    eprintln!("skipped: no Python with ipykernel at {}", python.display());
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busy_kernels_survive_a_server_crash_in_token_mode() {
    let Some(python) = python_with_ipykernel() else {
        return;
    };
    let mut server = TokenServer::start(&python);
    let target = server.target();
    target.wait_answering().await;
    let started = start_busy_kernels(&target).await;
    server.kill_and_restart(&python);
    check_after_restart(&target, &started, || server.log()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busy_kernels_survive_a_server_crash_in_accounts_mode() {
    let Some(python) = prerequisites() else {
        return;
    };
    let mut server = start_server(&python, "", &[("alice", &[])]);
    let api = server.api("alice");
    wait_ready(&api).await;
    let target = Target {
        http: format!("http://127.0.0.1:{}/user/alice", server.port),
        ws: format!("ws://127.0.0.1:{}/user/alice", server.port),
        token: api.token.clone(),
        kernel_dir: server.workspace("alice"),
        client: reqwest::Client::new(),
    };
    let started = start_busy_kernels(&target).await;
    server.kill_and_restart(&python);
    check_after_restart(&target, &started, || server.log()).await;
}
