//! Spawning an app on port 0 with its own data directory, and a small WebSocket kernel client.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use commonlab_manager::{KernelManager, KernelManagerConfig, SessionManager};
use commonlab_protocol::{
    decode_legacy_text, decode_v1, encode_v1, Channel, MessageBuilder, RawMessage,
};
use commonlab_runtime::{jupyter_data_dirs, LocalBackend};
use commonlab_server::{AppState, EdgeLimits};
use commonlab_store::Store;
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

pub(crate) const TOKEN: &str = "test-token";
/// The contents upload limit of test apps.
pub(crate) const CONTENTS_UPLOAD_BYTES_MAX: u64 = 256 * 1024;

#[allow(clippy::print_stderr)]
/// The Python with ipykernel the tests use, or `None` (with a loud skip) when it is absent and
/// not required.
pub(crate) fn python() -> Option<PathBuf> {
    let required = std::env::var("COMMONLAB_TEST_REQUIRE")
        .unwrap_or_default()
        .split(',')
        .any(|d| d == "ipykernel");
    let candidate = std::env::var_os("COMMONLAB_TEST_PYTHON")
        .map(PathBuf::from)
        .or_else(|| {
            let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/python");
            venv.exists().then_some(venv)
        });
    match candidate.and_then(|p| commonlab_manager::find_python(&[p])) {
        Some(env) => Some(env.python),
        None if required => panic!("COMMONLAB_TEST_REQUIRE names ipykernel, but no Python with ipykernel was found (set COMMONLAB_TEST_PYTHON or run scripts/python-env.sh)"),
        None => {
            eprintln!("skipped: no Python with ipykernel (set COMMONLAB_TEST_PYTHON or run scripts/python-env.sh)");
            None
        }
    }
}

pub(crate) struct TestApp {
    pub(crate) base: String,
    kernels: Arc<KernelManager>,
    pub(crate) data_dir: tempfile::TempDir,
    pub(crate) http: reqwest::Client,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.kernels.kill_all();
        self.server.abort();
    }
}

pub(crate) fn manager(python: &std::path::Path, data_dir: &std::path::Path) -> Arc<KernelManager> {
    manager_with_start_timeout(python, data_dir, Duration::from_secs(30))
}

/// A manager whose kernels may take up to `start_timeout` to become ready (many starting at
/// once on a small machine).
pub(crate) fn manager_with_start_timeout(
    python: &std::path::Path,
    data_dir: &std::path::Path,
    start_timeout: Duration,
) -> Arc<KernelManager> {
    let env = commonlab_manager::find_python(&[python.to_owned()]).expect("python has ipykernel");
    let store = Arc::new(Store::open_sqlite(&data_dir.join("state.sqlite")).unwrap());
    let root = data_dir.join("root");
    std::fs::create_dir_all(&root).unwrap();
    Arc::new(KernelManager::new(
        KernelManagerConfig {
            root_dir: root,
            kernelspec_dirs: jupyter_data_dirs(std::slice::from_ref(&env.prefix)),
            default_kernel_name: "python3".into(),
            fallback_spec: Some(env.kernelspec()),
            kernel_start_timeout: start_timeout,
            kernel_shutdown_wait: Duration::from_secs(3),
            ws_send_queue_bytes_max: 64 << 20,
            ws_buffer_bytes_max: 16 << 20,
            ws_buffer_messages_max: 1000,
            sandbox: None,
        },
        Arc::new(LocalBackend::new(data_dir.join("runtime"))),
        store,
    ))
}

pub(crate) async fn spawn_app() -> Option<TestApp> {
    spawn_app_with_policy(None).await
}

/// An app whose kernels check every cell against `policy` (for tier `free`).
pub(crate) async fn spawn_app_with_policy(
    policy: Option<commonlab_policy::PolicyConfig>,
) -> Option<TestApp> {
    spawn_app_with(policy, Duration::from_secs(30)).await
}

/// An app whose kernels may take up to `start_timeout` to start.
pub(crate) async fn spawn_app_with_start_timeout(start_timeout: Duration) -> Option<TestApp> {
    spawn_app_with(None, start_timeout).await
}

async fn spawn_app_with(
    policy: Option<commonlab_policy::PolicyConfig>,
    start_timeout: Duration,
) -> Option<TestApp> {
    let python = python()?;
    let data_dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open_sqlite(&data_dir.path().join("state.sqlite")).unwrap());
    let mut kernels = manager_with_start_timeout(&python, data_dir.path(), start_timeout);
    if let Some(config) = policy {
        let policy = commonlab_policy::Policy::configured(&config, &[]).unwrap();
        let gate =
            commonlab_manager::PolicyGate::new(Arc::new(policy), "free".into(), store.clone());
        kernels = Arc::new(Arc::into_inner(kernels).unwrap().with_policy_gate(gate));
    }
    let state = AppState {
        kernels: kernels.clone(),
        sessions: Arc::new(SessionManager::new(kernels.clone(), store)),
        contents: Arc::new(commonlab_manager::ContentsManager::new(
            commonlab_manager::ContentsConfig {
                root_dir: data_dir.path().join("root"),
                upload_bytes_max: CONTENTS_UPLOAD_BYTES_MAX,
                owner: None,
            },
        )),
        token: Arc::new(TOKEN.into()),
        limits: EdgeLimits {
            ws_message_bytes_max: 1 << 20,
            request_body_bytes_max: 1 << 20,
        },
        base_url: "/".into(),
        lab: commonlab_server::LabAssets::discover(
            &commonlab_manager::find_python(std::slice::from_ref(&python))?.prefix,
            data_dir.path(),
            &data_dir.path().join("root"),
        )
        .map(Arc::new),
        accounts: None,
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = commonlab_server::app(state);
    let server = tokio::spawn(async move {
        commonlab_server::serve(
            listener,
            app,
            commonlab_server::ConnectionLimits::default(),
            std::future::pending(),
        )
        .await
        .unwrap();
    });
    Some(TestApp {
        base: format!("http://{addr}"),
        kernels,
        data_dir,
        http: reqwest::Client::new(),
        server,
    })
}

impl TestApp {
    pub(crate) async fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&str>,
    ) -> (u16, serde_json::Value) {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .header("Authorization", format!("token {TOKEN}"));
        if let Some(body) = body {
            request = request.body(body.to_owned());
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(serde_json::Value::Null),
        )
    }

    pub(crate) async fn start_kernel(&self) -> String {
        let (status, body) = self
            .request(reqwest::Method::POST, "/api/kernels", Some("{}"))
            .await;
        assert_eq!(status, 201, "{body}");
        body["id"].as_str().unwrap().to_owned()
    }

    pub(crate) async fn connect(&self, kernel_id: &str, session: &str, v1: bool) -> WsClient {
        let url = format!(
            "{}/api/kernels/{kernel_id}/channels?session_id={session}&token={TOKEN}",
            self.base.replace("http", "ws")
        );
        connect_ws(&url, session, v1)
            .await
            .expect("the channels WebSocket opens")
    }
}

/// Opens a kernel channels WebSocket at `url` (`ws://…/channels?…`); the HTTP status when the
/// server refuses the upgrade.
pub(crate) async fn connect_ws(url: &str, session: &str, v1: bool) -> Result<WsClient, u16> {
    connect_ws_with_cookie(url, session, v1, None).await
}

/// [`connect_ws`], sending `cookie` as the `Cookie` header (a browser's login).
pub(crate) async fn connect_ws_with_cookie(
    url: &str,
    session: &str,
    v1: bool,
    cookie: Option<&str>,
) -> Result<WsClient, u16> {
    {
        let mut request = url.into_client_request().unwrap();
        if let Some(cookie) = cookie {
            request
                .headers_mut()
                .insert("Cookie", cookie.parse().unwrap());
        }
        if v1 {
            request.headers_mut().insert(
                "Sec-WebSocket-Protocol",
                "v1.kernel.websocket.jupyter.org".parse().unwrap(),
            );
        }
        // Large outputs arrive as one frame, as from jupyter_server; lift the client's default caps.
        let config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
            .max_message_size(Some(256 << 20))
            .max_frame_size(Some(256 << 20));
        let (ws, response) = match tokio_tungstenite::connect_async_with_config(
            request,
            Some(config),
            false,
        )
        .await
        {
            Ok(opened) => opened,
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                return Err(response.status().as_u16())
            }
            Err(e) => panic!("WebSocket connect failed: {e}"),
        };
        let negotiated = response
            .headers()
            .get("Sec-WebSocket-Protocol")
            .map(|v| v.to_str().unwrap().to_owned());
        assert_eq!(negotiated.is_some(), v1, "subprotocol negotiation");
        Ok(WsClient {
            ws,
            v1,
            builder: MessageBuilder {
                session: session.into(),
                username: "test".into(),
            },
        })
    }
}

/// A client WebSocket connection.
pub(crate) type WsStream =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

pub(crate) struct WsClient {
    pub(crate) ws: WsStream,
    v1: bool,
    builder: MessageBuilder,
}

/// A received message with its parts parsed.
#[derive(Debug)]
pub(crate) struct Received {
    pub(crate) channel: Channel,
    pub(crate) msg_type: String,
    pub(crate) parent_msg_id: String,
    pub(crate) content: serde_json::Value,
}

impl WsClient {
    pub(crate) async fn send(
        &mut self,
        channel: Channel,
        msg_type: &str,
        content: serde_json::Value,
    ) -> String {
        let message = self.builder.message(
            msg_type,
            "2026-01-01T00:00:00.000000Z".into(),
            Bytes::from_static(b"{}"),
            &content,
        );
        let msg_id = message.parse_header().unwrap().msg_id;
        self.send_raw(channel, &message).await;
        msg_id
    }

    pub(crate) async fn send_raw(&mut self, channel: Channel, message: &RawMessage) {
        let frame = if self.v1 {
            Message::Binary(encode_v1(channel, message))
        } else {
            let header: serde_json::Value = serde_json::from_slice(&message.header).unwrap();
            let value = serde_json::json!({
                "channel": channel.as_str(),
                "header": header,
                "parent_header": {},
                "metadata": {},
                "content": serde_json::from_slice::<serde_json::Value>(&message.content).unwrap(),
            });
            Message::Text(value.to_string().into())
        };
        self.ws.send(frame).await.unwrap();
    }

    pub(crate) async fn execute(&mut self, code: &str) -> String {
        self.send(Channel::Shell, "execute_request", serde_json::json!({
            "code": code, "silent": false, "store_history": true, "user_expressions": {}, "allow_stdin": true, "stop_on_error": true,
        })).await
    }

    /// The next kernel message, within `timeout`; `None` when the socket closed or time ran out.
    pub(crate) async fn recv(&mut self, timeout: Duration) -> Option<Received> {
        loop {
            let frame = tokio::time::timeout(timeout, self.ws.next())
                .await
                .ok()??
                .ok()?;
            let decoded = match frame {
                Message::Binary(data) if self.v1 => decode_v1(data).unwrap(),
                Message::Text(text) => decode_legacy_text(text.as_bytes()).unwrap(),
                Message::Close(_) => return None,
                _ => continue,
            };
            let (channel, message) = decoded;
            let header = message.parse_header().unwrap();
            let (parent_msg_id, _) = message.parent_ids();
            return Some(Received {
                channel,
                msg_type: header.msg_type,
                parent_msg_id: parent_msg_id.unwrap_or_default(),
                content: serde_json::from_slice(&message.content).unwrap(),
            });
        }
    }

    /// Collects messages caused by `msg_id` until both its iopub `status: idle` and its reply
    /// (on shell or control) have arrived, returning them.
    pub(crate) async fn until_idle(&mut self, msg_id: &str) -> Vec<Received> {
        let mut seen = Vec::new();
        let (mut idle, mut replied) = (false, false);
        while let Some(received) = self.recv(Duration::from_secs(30)).await {
            if received.parent_msg_id == msg_id {
                idle |=
                    received.msg_type == "status" && received.content["execution_state"] == "idle";
                replied |= matches!(received.channel, Channel::Shell | Channel::Control);
                seen.push(received);
            }
            if idle && replied {
                return seen;
            }
        }
        panic!("connection ended before {msg_id} went idle; saw {seen:?}");
    }
}

/// The concatenated stdout text among `messages`.
pub(crate) fn stdout(messages: &[Received]) -> String {
    messages
        .iter()
        .filter(|m| m.msg_type == "stream" && m.content["name"] == "stdout")
        .map(|m| m.content["text"].as_str().unwrap_or_default())
        .collect()
}
