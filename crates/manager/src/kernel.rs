//! One kernel: its runtime, its ZeroMQ channels, its hub of clients, and its lifecycle
//! (readiness, interrupt, restart, shutdown, death).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use commonlab_kernel::{Incoming, KernelChannels, KernelSender};
use commonlab_protocol::{Channel, ConnectionInfo, MessageBuilder, RawMessage};
use commonlab_runtime::{InterruptMode, Runtime};
use serde::Serialize;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::gate::{GateDecision, PolicyGate};
use crate::hub::{Encoded, Hub, HubLimits};
use crate::{iso_now, ClientHandle, ErrorKind, ManagerError, Outgoing, WireProtocol};

/// The REST model of a kernel, as jupyter_server returns it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct KernelModel {
    pub id: String,
    pub name: String,
    pub last_activity: String,
    pub execution_state: String,
    pub connections: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Readiness {
    Starting,
    Ready,
    Failed(String),
}

pub(crate) struct Live {
    pub(crate) runtime: Arc<dyn Runtime>,
    channels: Option<KernelChannels>,
    sender: KernelSender,
    watcher: JoinHandle<()>,
}

struct State {
    execution_state: String,
    last_activity: String,
    /// True while a restart or shutdown is under way, so the watcher does not report a death.
    expecting_exit: bool,
    live: Option<Live>,
    hub: Hub,
    /// Whether the kernel has said anything on iopub since it started (the subscription is live).
    iopub_seen: bool,
    /// The content of the kernel's own `kernel_info_reply` to the server's poke, once received:
    /// static for the life of the kernel process, so clients' requests are answered from it.
    kernel_info: Option<Bytes>,
    /// The header of the request the kernel is busy with (the parent of its last `busy`), so a
    /// death can be explained in that cell's output.
    busy_parent: Option<Bytes>,
    /// The header of the last request the kernel went busy for, so a notice about something
    /// it started in the background lands in that cell's output.
    last_parent: Option<Bytes>,
    /// Signatures of runtime findings already acted on, so a process is reported once.
    acted_on: std::collections::HashSet<String>,
}

/// A running kernel.
pub struct Kernel {
    pub id: String,
    pub name: String,
    pub(crate) interrupt_mode: InterruptMode,
    state: Mutex<State>,
    readiness: watch::Sender<Readiness>,
    /// Serializes lifecycle operations (restart, shutdown).
    pub(crate) lifecycle: tokio::sync::Mutex<()>,
    builder: MessageBuilder,
    gate: Option<Arc<PolicyGate>>,
}

impl Kernel {
    pub(crate) fn new(
        id: String,
        name: String,
        interrupt_mode: InterruptMode,
        limits: HubLimits,
        gate: Option<Arc<PolicyGate>>,
    ) -> Arc<Kernel> {
        let (readiness, _) = watch::channel(Readiness::Starting);
        Arc::new(Kernel {
            builder: MessageBuilder {
                session: uuid::Uuid::new_v4().simple().to_string(),
                username: "commonlab".into(),
            },
            id,
            name,
            interrupt_mode,
            state: Mutex::new(State {
                execution_state: "starting".into(),
                last_activity: iso_now(),
                expecting_exit: false,
                live: None,
                hub: Hub::new(limits),
                iopub_seen: false,
                kernel_info: None,
                busy_parent: None,
                last_parent: None,
                acted_on: Default::default(),
            }),
            readiness,
            lifecycle: tokio::sync::Mutex::new(()),
            gate,
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .expect("kernel state lock is never poisoned")
    }

    pub fn model(&self) -> KernelModel {
        let state = self.state();
        KernelModel {
            id: self.id.clone(),
            name: self.name.clone(),
            last_activity: state.last_activity.clone(),
            execution_state: state.execution_state.clone(),
            connections: state.hub.connection_count(),
        }
    }

    pub fn execution_state(&self) -> String {
        self.state().execution_state.clone()
    }

    pub(crate) fn runtime(&self) -> Option<Arc<dyn Runtime>> {
        self.state().live.as_ref().map(|live| live.runtime.clone())
    }

    /// Connects the channels to a launched runtime and starts its watcher task.
    pub(crate) async fn attach(
        self: &Arc<Self>,
        runtime: Arc<dyn Runtime>,
        connection: &ConnectionInfo,
        timeout: Duration,
    ) -> Result<(), ManagerError> {
        let _ = self.readiness.send(Readiness::Starting);
        let weak = Arc::downgrade(self);
        let sink: commonlab_kernel::IncomingSink = Arc::new(move |incoming| match weak.upgrade() {
            Some(kernel) => {
                kernel.on_incoming(incoming);
                true
            }
            None => false,
        });
        let channels = KernelChannels::connect(connection, timeout, sink)
            .await
            .map_err(|e| {
                ManagerError::new(
                    ErrorKind::Unavailable,
                    "kernel_connect_failed",
                    format!("The kernel started but could not be reached: {e}"),
                )
            })?;
        let sender = channels.sender.clone();
        let watcher = tokio::spawn(watch_exit(Arc::downgrade(self), runtime.wait()));
        let mut state = self.state();
        state.expecting_exit = false;
        state.execution_state = "starting".into();
        state.iopub_seen = false;
        state.kernel_info = None;
        state.live = Some(Live {
            runtime,
            channels: Some(channels),
            sender,
            watcher,
        });
        Ok(())
    }

    /// Pokes the kernel with `kernel_info_request` until it has answered on shell and said
    /// anything on iopub (the slow-joiner problem), or until `timeout`.
    pub(crate) async fn wait_ready(
        self: &Arc<Self>,
        timeout: Duration,
    ) -> Result<(), ManagerError> {
        let mut readiness = self.readiness.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        let mut interval = Duration::from_millis(20);
        loop {
            match readiness.borrow_and_update().clone() {
                Readiness::Ready => return Ok(()),
                Readiness::Failed(why) => {
                    return Err(ManagerError::new(
                        ErrorKind::Unavailable,
                        "kernel_died",
                        why,
                    ))
                }
                Readiness::Starting => {}
            }
            let sender = self.state().live.as_ref().map(|l| l.sender.clone());
            if let Some(sender) = sender {
                let request = self.builder.message(
                    "kernel_info_request",
                    iso_now(),
                    Bytes::from_static(b"{}"),
                    &serde_json::json!({}),
                );
                let _ = sender.send(Channel::Shell, &request).await;
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Err(ManagerError::new(
                    ErrorKind::Unavailable,
                    "kernel_start_timeout",
                    format!("The kernel did not become ready within {} s. Check that its kernelspec runs, or raise kernel_start_timeout_s.", timeout.as_secs()),
                ));
            }
            let _ = tokio::time::timeout(interval.min(deadline - now), readiness.changed()).await;
            interval = (interval * 2).min(Duration::from_millis(100));
        }
    }

    /// Registers a WebSocket client of this kernel.
    pub fn connect_client(
        self: &Arc<Self>,
        session_id: String,
        protocol: WireProtocol,
    ) -> (ClientHandle, mpsc::UnboundedReceiver<Outgoing>) {
        let (client_id, queued_bytes, rx) = self.state().hub.connect(session_id.clone(), protocol);
        (
            ClientHandle::from_parts(self.clone(), client_id, session_id, queued_bytes),
            rx,
        )
    }

    pub(crate) fn disconnect_client(&self, client_id: u64) {
        self.state().hub.disconnect(client_id);
    }

    pub(crate) fn disconnect_client_with_unsent(&self, client_id: u64, unsent: Vec<Outgoing>) {
        self.state().hub.disconnect_with_unsent(client_id, unsent);
    }

    pub(crate) async fn send_from_client(
        &self,
        client_id: u64,
        _session_id: &str,
        channel: Channel,
        message: RawMessage,
    ) -> Result<(), ManagerError> {
        let header = message.parse_header().map_err(|e| {
            ManagerError::new(
                ErrorKind::BadRequest,
                "bad_message",
                format!("Message rejected: {e}"),
            )
        })?;
        if !matches!(channel, Channel::Shell | Channel::Control | Channel::Stdin) {
            return Err(ManagerError::new(
                ErrorKind::BadRequest,
                "bad_channel",
                format!("Clients cannot send on the {} channel", channel.as_str()),
            ));
        }
        // Wait for readiness so nothing sent during start is lost to the slow joiner.
        let mut readiness = self.readiness.subscribe();
        loop {
            let current = readiness.borrow_and_update().clone();
            match current {
                Readiness::Ready => break,
                Readiness::Failed(why) => {
                    return Err(ManagerError::new(
                        ErrorKind::Unavailable,
                        "kernel_dead",
                        why,
                    ))
                }
                Readiness::Starting => {
                    if readiness.changed().await.is_err() {
                        return Err(ManagerError::new(
                            ErrorKind::Unavailable,
                            "kernel_dead",
                            "The kernel is gone",
                        ));
                    }
                }
            }
        }
        if channel == Channel::Shell
            && header.msg_type == "kernel_info_request"
            && self.answer_kernel_info(client_id, &message.header)
        {
            return Ok(());
        }
        if channel == Channel::Shell && header.msg_type == "execute_request" {
            if let Some(gate) = &self.gate {
                #[derive(serde::Deserialize)]
                struct Execute {
                    #[serde(default)]
                    code: String,
                }
                let code = serde_json::from_slice::<Execute>(&message.content)
                    .map(|e| e.code)
                    .unwrap_or_default();
                match gate.check(&self.id, &header.msg_id, &code) {
                    GateDecision::Run => {}
                    GateDecision::RunWithWarning(text) => {
                        self.emit(
                            Channel::Iopub,
                            "stream",
                            &message.header,
                            serde_json::json!({ "name": "stderr", "text": format!("{text}\n") }),
                        );
                    }
                    GateDecision::Refuse(text) => {
                        self.refuse(client_id, &header.msg_id, &message.header, &text);
                        return Ok(());
                    }
                }
            }
        }
        let sender = {
            let mut state = self.state();
            if !header.msg_id.is_empty() && channel != Channel::Stdin {
                state.hub.remember_request(header.msg_id.clone(), client_id);
            }
            state.last_activity = iso_now();
            state.live.as_ref().map(|l| l.sender.clone())
        };
        let sender = sender.ok_or_else(|| {
            ManagerError::new(
                ErrorKind::Unavailable,
                "kernel_dead",
                "The kernel is not running",
            )
        })?;
        sender.send(channel, &message).await.map_err(|e| {
            ManagerError::new(ErrorKind::Unavailable, "kernel_send_failed", e.to_string())
        })
    }

    /// Sends a message the server wrote itself to the kernel (interrupt or shutdown requests).
    pub(crate) async fn send_own(
        &self,
        channel: Channel,
        msg_type: &str,
        content: serde_json::Value,
    ) -> bool {
        let sender = self.state().live.as_ref().map(|l| l.sender.clone());
        let Some(sender) = sender else { return false };
        let message =
            self.builder
                .message(msg_type, iso_now(), Bytes::from_static(b"{}"), &content);
        sender.send(channel, &message).await.is_ok()
    }

    /// A message the server writes itself, ready to send.
    fn own_message(
        &self,
        channel: Channel,
        msg_type: &str,
        parent_header: &Bytes,
        content: Bytes,
    ) -> Encoded {
        let (header, message) =
            self.builder
                .build(msg_type, iso_now(), parent_header.clone(), content);
        Encoded::new(channel, header.msg_id, header.msg_type, message)
    }

    /// Sends a message the server wrote, parented to a client's request: iopub to every client,
    /// replies to the client that asked.
    fn emit(
        &self,
        channel: Channel,
        msg_type: &str,
        parent_header: &Bytes,
        content: serde_json::Value,
    ) {
        let content = Bytes::from(serde_json::to_vec(&content).expect("json value serializes"));
        let mut encoded = self.own_message(channel, msg_type, parent_header, content);
        let (parent_msg_id, parent_session) = encoded.message().parent_ids();
        let mut state = self.state();
        match channel {
            Channel::Iopub => state.hub.broadcast(&mut encoded),
            _ => state.hub.reply(
                parent_msg_id.as_deref(),
                parent_session.as_deref(),
                true,
                &mut encoded,
            ),
        }
    }

    /// Answers an `execute_request` the policy refused, as a kernel would answer a failing cell,
    /// so every Jupyter client shows the explanation.
    fn refuse(&self, client_id: u64, msg_id: &str, parent_header: &Bytes, text: &str) {
        self.state()
            .hub
            .remember_request(msg_id.to_owned(), client_id);
        let evalue = text.lines().next().unwrap_or(text).to_owned();
        let traceback: Vec<&str> = text.lines().collect();
        let error = serde_json::json!({ "ename": "PolicyViolation", "evalue": evalue, "traceback": traceback });
        self.emit(
            Channel::Iopub,
            "status",
            parent_header,
            serde_json::json!({ "execution_state": "busy" }),
        );
        self.emit(Channel::Iopub, "error", parent_header, error.clone());
        let mut reply = error;
        reply["status"] = "error".into();
        reply["execution_count"] = serde_json::Value::Null;
        self.emit(Channel::Shell, "execute_reply", parent_header, reply);
        self.emit(
            Channel::Iopub,
            "status",
            parent_header,
            serde_json::json!({ "execution_state": "idle" }),
        );
    }

    /// Shows a notice from the server in the notebook: on stderr of the running cell, or of the
    /// last cell that ran when the kernel is idle (its output area still listens).
    pub(crate) fn notify(&self, text: &str) {
        let parent = {
            let state = self.state();
            state
                .busy_parent
                .clone()
                .or_else(|| state.last_parent.clone())
                .unwrap_or_else(|| Bytes::from_static(b"{}"))
        };
        self.emit(
            Channel::Iopub,
            "stream",
            &parent,
            serde_json::json!({ "name": "stderr", "text": format!("{text}\n") }),
        );
    }

    /// Records that a runtime finding was acted on; false when it already was.
    pub(crate) fn first_time(&self, signature: &str) -> bool {
        self.state().acted_on.insert(signature.to_owned())
    }

    /// Broadcasts a status the server decided (e.g. `restarting`, `dead`) to every client.
    pub(crate) fn broadcast_status(&self, execution_state: &str) {
        let content = serde_json::json!({ "execution_state": execution_state }).to_string();
        let mut encoded = self.own_message(
            Channel::Iopub,
            "status",
            &Bytes::from_static(b"{}"),
            Bytes::from(content),
        );
        let mut state = self.state();
        state.execution_state = execution_state.to_owned();
        state.hub.broadcast(&mut encoded);
    }

    /// Marks that the runtime is about to end on purpose.
    pub(crate) fn expect_exit(&self) {
        self.state().expecting_exit = true;
    }

    /// Stops the channels and tasks of the current runtime; returns the runtime.
    pub(crate) async fn detach(&self) -> Option<Arc<dyn Runtime>> {
        let live = self.state().live.take()?;
        live.watcher.abort();
        if let Some(channels) = live.channels {
            channels.close().await;
        }
        Some(live.runtime)
    }

    /// Tells every client the kernel is gone and closes their connections.
    pub(crate) fn close_clients(&self, reason: &str) {
        self.state().hub.close_all(1000, reason);
    }

    pub(crate) fn set_failed(&self, why: String) {
        let _ = self.readiness.send(Readiness::Failed(why));
    }

    fn on_incoming(&self, incoming: Incoming) {
        match incoming {
            Incoming::Message { channel, message } => self.on_message(channel, message),
            Incoming::Rejected { channel, reason } => {
                tracing::warn!(kernel = %self.id, channel = channel.as_str(), %reason, "dropped a message from the kernel");
            }
            Incoming::Closed { .. } => {}
        }
    }

    fn on_message(&self, channel: Channel, message: RawMessage) {
        let Ok(header) = message.parse_header() else {
            tracing::warn!(kernel = %self.id, "kernel sent a message with an unreadable header; dropped");
            return;
        };
        let (parent_msg_id, parent_session) = message.parent_ids();
        let mut state = self.state();
        if parent_session.as_deref() == Some(self.builder.session.as_str())
            && channel == Channel::Shell
        {
            if header.msg_type == "kernel_info_reply" && state.kernel_info.is_none() {
                state.kernel_info = Some(message.content.clone());
            }
            self.update_readiness(&state);
            return;
        }
        if channel == Channel::Iopub {
            if !state.iopub_seen {
                state.iopub_seen = true;
                self.update_readiness(&state);
            }
            if state.execution_state == "starting" {
                state.execution_state = "idle".into();
            }
            if header.msg_type == "status" {
                #[derive(serde::Deserialize)]
                struct Status {
                    execution_state: String,
                }
                if let Ok(status) = serde_json::from_slice::<Status>(&message.content) {
                    state.busy_parent =
                        (status.execution_state == "busy").then(|| message.parent_header.clone());
                    if let Some(parent) = &state.busy_parent {
                        state.last_parent = Some(parent.clone());
                    }
                    state.execution_state = status.execution_state;
                }
                state.last_activity = iso_now();
            }
        }
        let mut encoded = Encoded::new(channel, header.msg_id, header.msg_type, message);
        match channel {
            Channel::Iopub => state.hub.broadcast(&mut encoded),
            Channel::Stdin => state.hub.reply(
                parent_msg_id.as_deref(),
                parent_session.as_deref(),
                false,
                &mut encoded,
            ),
            _ => state.hub.reply(
                parent_msg_id.as_deref(),
                parent_session.as_deref(),
                true,
                &mut encoded,
            ),
        }
    }

    /// Ready once the kernel has answered a poke on shell and spoken on iopub, in either order.
    fn update_readiness(&self, state: &State) {
        if state.iopub_seen
            && state.kernel_info.is_some()
            && *self.readiness.borrow() == Readiness::Starting
        {
            let _ = self.readiness.send(Readiness::Ready);
        }
    }

    /// Answers a client's `kernel_info_request` from the kernel's own reply, to that client only:
    /// connecting clients then cost the kernel and the other clients nothing.
    fn answer_kernel_info(&self, client_id: u64, parent_header: &Bytes) -> bool {
        let Some(content) = self.state().kernel_info.clone() else {
            return false;
        };
        for (channel, msg_type, content) in [
            (
                Channel::Iopub,
                "status",
                Bytes::from_static(br#"{"execution_state":"busy"}"#),
            ),
            (Channel::Shell, "kernel_info_reply", content),
            (
                Channel::Iopub,
                "status",
                Bytes::from_static(br#"{"execution_state":"idle"}"#),
            ),
        ] {
            let mut encoded = self.own_message(channel, msg_type, parent_header, content);
            self.state().hub.send_to(client_id, &mut encoded);
        }
        true
    }

    fn on_exit(&self, exit: commonlab_runtime::ExitInfo) {
        let expected = self.state().expecting_exit;
        if expected {
            return;
        }
        tracing::warn!(kernel = %self.id, %exit, "kernel died");
        let why = match &exit.oom {
            Some(oom) => oom.explain(),
            None => format!("The kernel {exit}."),
        };
        // The cell that was running gets the explanation as its error, so the notebook shows
        // why rather than a bare "kernel died".
        let busy_parent = self.state().busy_parent.take();
        if let Some(parent) = busy_parent {
            let ename = if exit.oom.is_some() {
                "MemoryLimitReached"
            } else {
                "KernelDied"
            };
            let error = serde_json::json!({ "ename": ename, "evalue": why, "traceback": [why] });
            self.emit(Channel::Iopub, "error", &parent, error.clone());
            let mut reply = error;
            reply["status"] = "error".into();
            reply["execution_count"] = serde_json::Value::Null;
            self.emit(Channel::Shell, "execute_reply", &parent, reply);
        }
        let _ = self.readiness.send(Readiness::Failed(why));
        self.broadcast_status("dead");
    }
}

async fn watch_exit(
    kernel: std::sync::Weak<Kernel>,
    exit: futures_util::future::BoxFuture<'static, commonlab_runtime::ExitInfo>,
) {
    let info = exit.await;
    if let Some(kernel) = kernel.upgrade() {
        kernel.on_exit(info);
    }
}
