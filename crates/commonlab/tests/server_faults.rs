//! Faults around the real `commonlab serve`: a relative data directory, a data directory that
//! fills up while kernels run, and workspace volumes left mounted after a stop.
//!
//! Needs root (a tmpfs for the full disk, loop-mounted volumes), bubblewrap and a Python with
//! ipykernel, as the escape suite does: a missing part fails when `COMMONLAB_TEST_REQUIRE` names
//! `sandbox`, and skips the test otherwise.

mod support;

use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use support::*;

/// A single-user server (token mode) started in `cwd` with `args` after `serve`.
struct TokenServer {
    child: Child,
    base: String,
    token: String,
    log: PathBuf,
    http: reqwest::Client,
}

impl TokenServer {
    async fn start(python: &Path, cwd: &Path, data_dir: &str, root_dir: &str) -> TokenServer {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let token = uuid::Uuid::new_v4().simple().to_string();
        let log = cwd.join(format!("server-{port}.log"));
        let mut command = Command::new(env!("CARGO_BIN_EXE_commonlab"));
        for (name, _) in std::env::vars() {
            if name.starts_with("COMMONLAB_") {
                command.env_remove(name);
            }
        }
        let child = command
            .current_dir(cwd)
            .args(["serve", "--ip", "127.0.0.1", "--port", &port.to_string()])
            .args([
                "--token",
                &token,
                "--data-dir",
                data_dir,
                "--root-dir",
                root_dir,
            ])
            .arg("--python")
            .arg(python)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(std::fs::File::create(cwd.join(format!("server-{port}.err"))).unwrap())
            .spawn()
            .unwrap();
        let server = TokenServer {
            child,
            base: format!("http://127.0.0.1:{port}"),
            token,
            log: cwd.join(format!("server-{port}.err")),
            http: reqwest::Client::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if server
                .call(reqwest::Method::GET, "/api/status", None)
                .await
                .0
                == 200
            {
                return server;
            }
            assert!(
                Instant::now() < deadline,
                "the server did not answer: {}",
                std::fs::read_to_string(&server.log).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .header("Authorization", format!("token {}", self.token));
        if let Some(body) = body {
            request = request.body(body.to_string());
        }
        match request.send().await {
            Ok(response) => {
                let status = response.status().as_u16();
                let text = response.text().await.unwrap_or_default();
                (
                    status,
                    serde_json::from_str(&text).unwrap_or(Value::String(text)),
                )
            }
            Err(e) => (0, Value::String(e.to_string())),
        }
    }

    /// SIGTERM, then waits for the exit.
    fn stop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let _ = self.child.wait();
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        self.stop();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relative_data_directory_starts_kernels() {
    let Some(python) = prerequisites() else {
        return;
    };
    let cwd = tempfile::tempdir().unwrap();
    std::fs::create_dir(cwd.path().join("notebooks")).unwrap();
    let server = TokenServer::start(&python, cwd.path(), "data", "notebooks").await;
    let (status, body) = server
        .call(reqwest::Method::POST, "/api/kernels", Some(json!({})))
        .await;
    assert_eq!(status, 201, "a kernel starts with --data-dir data: {body}");
    let id = body["id"].as_str().unwrap();
    let (status, body) = server
        .call(reqwest::Method::DELETE, &format!("/api/kernels/{id}"), None)
        .await;
    assert_eq!(status, 204, "{body}");
}

/// Unmounts the tmpfs when the test ends, however it ends.
struct Tmpfs(PathBuf);

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kernel_shut_down_on_a_full_data_directory_is_gone() {
    let Some(python) = prerequisites() else {
        return;
    };
    let cwd = tempfile::tempdir().unwrap();
    let data = cwd.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let status = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=16m", "tmpfs"])
        .arg(&data)
        .status()
        .unwrap();
    assert!(
        status.success(),
        "mount a 16 MiB tmpfs as the data directory"
    );
    let _tmpfs = Tmpfs(data.clone());
    std::fs::create_dir(cwd.path().join("notebooks")).unwrap();
    let mut server = TokenServer::start(
        &python,
        cwd.path(),
        data.to_str().unwrap(),
        cwd.path().join("notebooks").to_str().unwrap(),
    )
    .await;
    let (status, body) = server
        .call(reqwest::Method::POST, "/api/kernels", Some(json!({})))
        .await;
    assert_eq!(status, 201, "{body}");
    let id = body["id"].as_str().unwrap().to_owned();

    // Fill the data directory to the last byte.
    let filler = data.join("filler");
    {
        let mut file = std::fs::File::create(&filler).unwrap();
        let block = vec![0u8; 64 << 10];
        while file.write_all(&block).is_ok() {}
        let mut byte = [0u8; 1];
        while file.write_all(&byte).is_ok() {
            byte[0] = byte[0].wrapping_add(1);
        }
    }
    let (status, body) = server
        .call(reqwest::Method::DELETE, &format!("/api/kernels/{id}"), None)
        .await;
    assert_eq!(
        status, 204,
        "the kernel was shut down, so the answer says so: {body}"
    );
    let (status, body) = server
        .call(reqwest::Method::GET, "/api/kernels", None)
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!([]), "the shut-down kernel is not listed");
    let (status, _) = server
        .call(reqwest::Method::GET, &format!("/api/kernels/{id}"), None)
        .await;
    assert_eq!(status, 404);

    // With room again, the record goes at the next write, and a restart finds nothing to
    // reattach to.
    std::fs::remove_file(&filler).unwrap();
    let (status, body) = server
        .call(reqwest::Method::POST, "/api/kernels", Some(json!({})))
        .await;
    assert_eq!(status, 201, "{body}");
    let second = body["id"].as_str().unwrap().to_owned();
    let (status, _) = server
        .call(
            reqwest::Method::DELETE,
            &format!("/api/kernels/{second}"),
            None,
        )
        .await;
    assert_eq!(status, 204);
    server.stop();
    let store = commonlab_store::Store::open_sqlite(&data.join("commonlab.sqlite")).unwrap();
    let left: Vec<String> = store.kernels().unwrap().into_iter().map(|k| k.id).collect();
    assert!(left.is_empty(), "stale kernel records: {left:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_server_unmounts_workspace_volumes() {
    let Some(python) = prerequisites() else {
        return;
    };
    let mut server = start_server(&python, "", &[("alice", &[])]);
    let alice = server.api("alice");
    wait_ready(&alice).await;
    let (status, body) = alice
        .call(
            reqwest::Method::PUT,
            "/user/alice/api/contents/kept.txt",
            Some(json!({"type": "file", "format": "text", "content": "kept"})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let workspace = server.workspace("alice");
    let image = server.data_dir().join("volumes/alice.ext4");
    let on_own_device = |dir: &Path| {
        std::fs::metadata(dir).unwrap().dev()
            != std::fs::metadata(dir.parent().unwrap()).unwrap().dev()
    };
    assert!(
        on_own_device(&workspace),
        "alice's workspace is its own volume"
    );
    let loops = |image: &Path| {
        String::from_utf8(
            Command::new("losetup")
                .arg("-j")
                .arg(image)
                .output()
                .unwrap()
                .stdout,
        )
        .unwrap()
    };
    assert!(
        !loops(&image).trim().is_empty(),
        "the volume is on a loop device"
    );

    let pid = nix::unistd::Pid::from_raw(server.child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let status = server.child.wait().unwrap();
    assert!(status.success(), "the server stops cleanly: {status}");
    assert!(
        !on_own_device(&workspace),
        "the volume is unmounted when the server stops"
    );
    assert_eq!(loops(&image).trim(), "", "and its loop device released");
    // The work is in the image, and back when the server starts again.
    let mount = Command::new("mount")
        .args(["-o", "loop,ro"])
        .arg(&image)
        .arg(&workspace)
        .status()
        .unwrap();
    assert!(mount.success());
    let kept = std::fs::read_to_string(workspace.join("kept.txt"));
    let _ = Command::new("umount").arg(&workspace).status();
    assert_eq!(kept.unwrap(), "kept");
}

/// Waits for a server that should refuse to start; returns what it logged.
fn refused_start(child: &mut Child, log: &Path) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(!status.success(), "the server refused to start");
            return std::fs::read_to_string(log).unwrap();
        }
        assert!(
            Instant::now() < deadline,
            "the server started: {}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_on_one_host_never_share_uids() {
    let Some(python) = prerequisites() else {
        return;
    };
    let base = random_uid_base();
    let first = start_server_with_uids(&python, base, "", &[("alice", &[])]);
    wait_ready(&first.api("alice")).await;

    // Another server whose range overlaps the first's refuses, and says how to fix it.
    let mut second = start_server_with_uids(&python, base + 1000, "", &[("bob", &[])]);
    let log = refused_start(&mut second.child, &second.dir.path().join("server.log"));
    assert!(
        log.contains("overlap") && log.contains("accounts.uid_base"),
        "{log}"
    );

    // The first server's own database under another range: its users' uids lie outside it.
    let config = first.dir.path().join("moved.toml");
    let text = std::fs::read_to_string(&first.config).unwrap().replace(
        &format!("uid_base = {base}"),
        &format!("uid_base = {}", base + 65_536),
    );
    std::fs::write(&config, text).unwrap();
    let log_path = first.dir.path().join("moved.log");
    let mut moved = Command::new(env!("CARGO_BIN_EXE_commonlab"))
        .args(["serve", "--port", "0", "--config"])
        .arg(&config)
        .env("COMMONLAB_SERVER__DATA_DIR", first.data_dir())
        .env("COMMONLAB_KERNEL__PYTHON", &python)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .unwrap();
    let log = refused_start(&mut moved, &log_path);
    assert!(log.contains("outside its range"), "{log}");

    // One with a range of its own starts beside the first.
    let third = start_server_with_uids(&python, base + 2 * 65_536, "", &[("carol", &[])]);
    wait_ready(&third.api("carol")).await;
    let (status, body) = first
        .api("alice")
        .call(reqwest::Method::GET, "/hub/api/user", None)
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["uid"], base + 1);
}
