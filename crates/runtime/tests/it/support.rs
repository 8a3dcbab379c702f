//! What the runtime tests share: the gates on real dependencies, the two backends set up in
//! temporary directories, and a small kernel client over the kernel crate.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use commonlab_kernel::{Incoming, KernelChannels};
use commonlab_protocol::{Channel, ConnectionInfo, MessageBuilder, RawMessage};
use commonlab_runtime::{
    LaunchSpec, LocalBackend, RuntimeBackend, SandboxBackend, SandboxConfig, SandboxIdentity,
    SandboxLimits, SandboxSpec,
};
use tokio::sync::mpsc;

/// Long enough for a kernel on a loaded machine; a guard against hanging, not a measurement.
pub(crate) const PATIENCE: Duration = Duration::from_secs(120);

/// Whether `COMMONLAB_TEST_REQUIRE` names the dependency (`bwrap` and `sandbox` both name the
/// sandbox's).
fn required(dependency: &str) -> bool {
    std::env::var("COMMONLAB_TEST_REQUIRE")
        .unwrap_or_default()
        .split(',')
        .any(|d| d == dependency || (dependency == "bwrap" && d == "sandbox"))
}

#[allow(clippy::print_stderr)]
fn skip(dependency: &str, why: &str) {
    if required(dependency) {
        panic!("COMMONLAB_TEST_REQUIRE names {dependency}, but {why}");
    }
    eprintln!("skipped: {why}");
}

/// The Python with ipykernel: `COMMONLAB_TEST_PYTHON`, else the repository's `.venv` (made by
/// scripts/python-env.sh). `None`, loudly, when there is none.
pub(crate) fn python() -> Option<PathBuf> {
    let candidate = std::env::var_os("COMMONLAB_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/python")
        });
    let has_ipykernel = std::process::Command::new(&candidate)
        .args(["-c", "import ipykernel"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if has_ipykernel {
        // Absolute and without `..`, as a kernelspec's argv is.
        let parent = candidate.parent().and_then(|p| p.canonicalize().ok())?;
        Some(parent.join(candidate.file_name()?))
    } else {
        skip(
            "ipykernel",
            "no Python with ipykernel (set COMMONLAB_TEST_PYTHON or run scripts/python-env.sh)",
        );
        None
    }
}

/// Whether this host can run sandboxed kernels (root, bubblewrap, cgroups); loud when not.
pub(crate) fn sandbox_host() -> bool {
    let why = if !nix::unistd::geteuid().is_root() {
        "the sandbox tests need root (they start kernels as other uids)"
    } else if !Path::new("/usr/bin/bwrap").is_file() {
        "bubblewrap is not installed (apt-get install bubblewrap)"
    } else {
        return true;
    };
    skip("bwrap", why);
    false
}

/// A distinct unprivileged uid per test in this process.
pub(crate) fn next_identity() -> SandboxIdentity {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let id = 230_000 + (std::process::id() % 1000) * 50 + NEXT.fetch_add(1, Ordering::Relaxed);
    SandboxIdentity { uid: id, gid: id }
}

/// Which backend a test runs against, with the directories it uses.
pub(crate) struct Setup {
    pub(crate) backend: Arc<dyn RuntimeBackend>,
    pub(crate) sandbox: Option<SandboxSpec>,
    pub(crate) workspace: PathBuf,
    pub(crate) runtime_dir: PathBuf,
    pub(crate) root: tempfile::TempDir,
    pub(crate) python: PathBuf,
}

impl Setup {
    pub(crate) fn local(python: PathBuf) -> Setup {
        let root = tempfile::tempdir().expect("tempdir");
        let workspace = root.path().join("ws");
        std::fs::create_dir(&workspace).expect("mkdir");
        let runtime_dir = root.path().join("run");
        Setup {
            backend: Arc::new(LocalBackend::new(runtime_dir.clone())),
            sandbox: None,
            workspace,
            runtime_dir,
            root,
            python,
        }
    }

    /// A sandbox backend whose launcher is this crate's `commonlab-sandbox-exec`, with a
    /// workspace owned by a fresh uid.
    pub(crate) fn sandbox(python: PathBuf, limits: SandboxLimits) -> Setup {
        Setup::sandbox_with(python, limits, |_| {})
    }

    /// As [`Setup::sandbox`], with the backend's config adjusted by `adjust`.
    pub(crate) fn sandbox_with(
        python: PathBuf,
        limits: SandboxLimits,
        adjust: impl FnOnce(&mut SandboxConfig),
    ) -> Setup {
        let root = tempfile::tempdir().expect("tempdir");
        // The kernel's uid must get through to its workspace and socket directory.
        std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o711))
            .expect("chmod");
        let identity = next_identity();
        let workspace = root.path().join("ws");
        std::fs::create_dir(&workspace).expect("mkdir");
        std::fs::set_permissions(&workspace, std::fs::Permissions::from_mode(0o700))
            .expect("chmod");
        nix::unistd::chown(
            &workspace,
            Some(nix::unistd::Uid::from_raw(identity.uid)),
            Some(nix::unistd::Gid::from_raw(identity.gid)),
        )
        .expect("chown");
        let runtime_dir = root.path().join("run");
        let mut config = SandboxConfig::new(
            runtime_dir.clone(),
            PathBuf::from(env!("CARGO_BIN_EXE_commonlab-sandbox-exec")),
            Vec::new(),
        );
        adjust(&mut config);
        let backend = SandboxBackend::new(config).expect("the sandbox backend starts");
        Setup {
            backend: Arc::new(backend),
            sandbox: Some(SandboxSpec {
                identity,
                limits,
                workspace: workspace.clone(),
                devices: Vec::new(),
            }),
            workspace,
            runtime_dir,
            root,
            python,
        }
    }

    /// An ipykernel launch with its connection from the backend.
    pub(crate) fn spec(&self) -> LaunchSpec {
        let kernel_id = uuid_like();
        let connection = self
            .backend
            .connection_for(&kernel_id, &uuid_like())
            .expect("connection");
        LaunchSpec {
            kernel_id,
            argv: vec![
                self.python.display().to_string(),
                "-m".into(),
                "ipykernel_launcher".into(),
                "-f".into(),
                "{connection_file}".into(),
            ],
            env: BTreeMap::new(),
            cwd: self.workspace.clone(),
            connection,
            sandbox: self.sandbox.clone(),
        }
    }
}

fn uuid_like() -> String {
    format!("{:032x}", rand_u128())
}

fn rand_u128() -> u128 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u32(std::process::id());
    let a = hasher.finish();
    hasher.write_u64(a);
    (u128::from(a) << 64) | u128::from(hasher.finish())
}

/// What one `execute_request` produced.
#[derive(Debug, Default)]
pub(crate) struct Outcome {
    pub(crate) stdout: String,
    /// `ename: evalue` of an error, if any.
    pub(crate) error: Option<String>,
}

/// A kernel client over the kernel crate's channels.
pub(crate) struct Client {
    channels: Option<KernelChannels>,
    rx: mpsc::UnboundedReceiver<(Channel, RawMessage)>,
    builder: MessageBuilder,
}

fn header_field(bytes: &Bytes, field: &str) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    value.get(field)?.as_str().map(str::to_owned)
}

impl Client {
    /// Connects and waits until the kernel answers on shell and speaks on iopub.
    pub(crate) async fn connect(connection: &ConnectionInfo) -> Client {
        let (tx, rx) = mpsc::unbounded_channel();
        let sink: commonlab_kernel::IncomingSink = Arc::new(move |incoming| {
            if let Incoming::Message { channel, message } = incoming {
                let _ = tx.send((channel, message));
            }
            true
        });
        let identity = format!("runtime-tests-{}", uuid_like());
        let channels = KernelChannels::connect(connection, &identity, PATIENCE, sink)
            .await
            .expect("the kernel's channels connect");
        let mut client = Client {
            channels: Some(channels),
            rx,
            builder: MessageBuilder {
                session: "runtime-tests".into(),
                username: "test".into(),
            },
        };
        let (mut replied, mut iopub) = (false, false);
        let deadline = tokio::time::Instant::now() + PATIENCE;
        while !(replied && iopub) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the kernel never became ready"
            );
            client
                .send(Channel::Shell, "kernel_info_request", serde_json::json!({}))
                .await;
            let pause = tokio::time::sleep(Duration::from_millis(200));
            tokio::pin!(pause);
            loop {
                tokio::select! {
                    _ = &mut pause => break,
                    Some((channel, message)) = client.rx.recv() => {
                        match channel {
                            Channel::Iopub => iopub = true,
                            Channel::Shell => replied = true,
                            _ => {}
                        }
                        let _ = message;
                    }
                }
            }
        }
        client
    }

    /// Sends a request; returns its `msg_id`.
    pub(crate) async fn send(
        &self,
        channel: Channel,
        msg_type: &str,
        content: serde_json::Value,
    ) -> String {
        let message = self.builder.message(
            msg_type,
            "2024-01-01T00:00:00Z".into(),
            Bytes::from_static(b"{}"),
            &content,
        );
        let msg_id = header_field(&message.header, "msg_id").expect("msg_id");
        self.channels
            .as_ref()
            .expect("connected")
            .sender
            .send(channel, &message)
            .await
            .expect("send");
        msg_id
    }

    pub(crate) async fn start_execute(&self, code: &str) -> String {
        self.send(
            Channel::Shell,
            "execute_request",
            serde_json::json!({
                "code": code, "silent": false, "store_history": true,
                "user_expressions": {}, "allow_stdin": false, "stop_on_error": true,
            }),
        )
        .await
    }

    /// Waits until the request `msg_id` has printed something.
    pub(crate) async fn wait_for_output(&mut self, msg_id: &str) {
        loop {
            let (channel, message) = tokio::time::timeout(PATIENCE, self.rx.recv())
                .await
                .expect("the kernel answers")
                .expect("channels open");
            if channel == Channel::Iopub
                && header_field(&message.parent_header, "msg_id").as_deref() == Some(msg_id)
                && header_field(&message.header, "msg_type").as_deref() == Some("stream")
            {
                return;
            }
        }
    }

    /// Collects what the request `msg_id` produced until its reply and `idle`.
    pub(crate) async fn finish_execute(&mut self, msg_id: &str) -> Outcome {
        let mut outcome = Outcome::default();
        let (mut replied, mut idle) = (false, false);
        while !(replied && idle) {
            let (channel, message) = tokio::time::timeout(PATIENCE, self.rx.recv())
                .await
                .expect("the kernel answers")
                .expect("channels open");
            if header_field(&message.parent_header, "msg_id").as_deref() != Some(msg_id) {
                continue;
            }
            let msg_type = header_field(&message.header, "msg_type").unwrap_or_default();
            let content: serde_json::Value =
                serde_json::from_slice(&message.content).unwrap_or_default();
            match (channel, msg_type.as_str()) {
                (Channel::Iopub, "stream") => {
                    outcome.stdout += content["text"].as_str().unwrap_or_default();
                }
                (Channel::Iopub, "error") => {
                    outcome.error = Some(format!(
                        "{}: {}",
                        content["ename"].as_str().unwrap_or_default(),
                        content["evalue"].as_str().unwrap_or_default()
                    ));
                }
                (Channel::Iopub, "status") => {
                    idle = content["execution_state"] == "idle";
                }
                (Channel::Shell, "execute_reply") => replied = true,
                _ => {}
            }
        }
        outcome
    }

    pub(crate) async fn execute(&mut self, code: &str) -> Outcome {
        let msg_id = self.start_execute(code).await;
        self.finish_execute(&msg_id).await
    }

    pub(crate) async fn close(mut self) {
        if let Some(channels) = self.channels.take() {
            channels.close().await;
        }
    }
}
