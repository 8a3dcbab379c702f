//! README's first command on a fresh machine: `commonlab serve` with no Python that has
//! ipykernel on the path sets up a managed environment in its data directory (from PyPI),
//! says so while it works, and then serves JupyterLab and real kernels from it.
//!
//! Needs the network to PyPI; it runs when `COMMONLAB_TEST_REQUIRE` names `first-run` (as
//! `scripts/test.sh` sets it), and is skipped with a message otherwise.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[allow(clippy::print_stderr)]
#[test]
fn serve_sets_up_a_managed_python_environment_when_none_is_found() {
    let required = std::env::var("COMMONLAB_TEST_REQUIRE")
        .unwrap_or_default()
        .split(',')
        .any(|d| d == "first-run");
    if !required {
        eprintln!("skipped: set COMMONLAB_TEST_REQUIRE=first-run to install a managed environment from PyPI");
        return;
    }
    let system_has_ipykernel = Command::new("/usr/bin/python3")
        .args(["-c", "import ipykernel"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        !system_has_ipykernel,
        "this test needs a machine whose /usr/bin/python3 lacks ipykernel, as a fresh Debian has"
    );
    let home = tempfile::tempdir().unwrap();
    let data_dir = home.path().join("data");
    let root_dir = home.path().join("notebooks");
    std::fs::create_dir_all(&root_dir).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut command = Command::new(env!("CARGO_BIN_EXE_commonlab"));
    for (name, _) in std::env::vars() {
        if name.starts_with("COMMONLAB_") || name.starts_with("JUPYTER") || name == "VIRTUAL_ENV" {
            command.env_remove(name);
        }
    }
    let mut server = command
        .args(["serve", "--port", &port.to_string()])
        .arg("--data-dir")
        .arg(&data_dir)
        .arg("--root-dir")
        .arg(&root_dir)
        // A fresh machine: the system's Python only, no user site, no other environment.
        .env("PATH", "/usr/bin:/bin")
        .env("HOME", home.path())
        // Downloads are cached where the machine keeps pip's cache, so reruns are quicker.
        .env(
            "PIP_CACHE_DIR",
            std::env::var_os("PIP_CACHE_DIR").unwrap_or_else(|| {
                let real_home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
                std::path::Path::new(&real_home)
                    .join(".cache/pip")
                    .into_os_string()
            }),
        )
        .env_remove("XDG_DATA_HOME")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Read the server's log on a thread for as long as it runs, so it never blocks on a full pipe.
    let (lines, received) = std::sync::mpsc::channel::<String>();
    let stderr = BufReader::new(server.stderr.take().unwrap());
    std::thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            let _ = lines.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(900);
    let mut said = String::new();
    let mut url = None;
    while let Ok(line) = received.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
        said.push_str(&line);
        said.push('\n');
        if let Some(at) = line.find("http://127.0.0.1:") {
            url = Some(line[at..].trim().to_owned());
            break;
        }
    }
    let url = url.unwrap_or_else(|| panic!("the server ended without a URL:\n{said}"));
    assert!(
        said.contains("creating a managed environment") && said.contains("installing packages"),
        "the server says what it is doing while it sets up Python:\n{said}"
    );
    assert!(data_dir.join("python-env/bin/python").exists());

    let token = url
        .split("token=")
        .nth(1)
        .expect("the URL carries the token");
    let base = format!("http://127.0.0.1:{port}");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let http = reqwest::Client::new();
        let get = |path: &str| {
            http.get(format!("{base}{path}"))
                .header("Authorization", format!("token {token}"))
                .send()
        };
        let specs: serde_json::Value = get("/api/kernelspecs").await.unwrap().json().await.unwrap();
        assert!(specs["kernelspecs"]["python3"].is_object(), "{specs}");
        assert_eq!(
            get("/lab").await.unwrap().status(),
            200,
            "JupyterLab is served"
        );
        let kernel: serde_json::Value = http
            .post(format!("{base}/api/kernels"))
            .header("Authorization", format!("token {token}"))
            .body("{}")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert!(kernel["execution_state"].is_string(), "{kernel}");
        let id = kernel["id"].as_str().unwrap();
        let status = http
            .delete(format!("{base}/api/kernels/{id}"))
            .header("Authorization", format!("token {token}"))
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, 204);
    });
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(server.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let _ = server.wait();
}
