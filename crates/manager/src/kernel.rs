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
use crate::gpu::{GpuDevice, GpuScheduler, QueuePlace};
use crate::hub::{Encoded, Hub, HubLimits};
use crate::screen::{self, Carrier, Screened};
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
    /// Starting or restarting: clients' requests wait for the process.
    Starting,
    Ready,
    /// Not running, and will not be until a restart: requests are answered with why.
    Failed(Failure),
}

/// Why a kernel is not running, as the requests sent to it are answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Failure {
    /// The `ename` of the errors that answer requests: `KernelDied`, `MemoryLimitReached`, ...
    ename: &'static str,
    /// What happened, one sentence: the `evalue`.
    why: String,
}

/// What to do about a request answered because the kernel is not running.
const NOT_RUNNING_ADVICE: &str =
    "Nothing was run. Restart the kernel to run code again; what it held in memory is lost.";

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
    /// Set on a recovered kernel until something tells whether it is busy: its own status, or
    /// the answer to the server's `kernel_info_request` on shell (which waits behind a running
    /// cell). Meanwhile it counts as busy.
    busy_unknown: bool,
    /// Signatures of runtime findings already acted on, so a process is reported once.
    acted_on: std::collections::HashSet<String>,
    /// A GPU kernel's request with the scheduler; `None` for CPU-only kernels.
    gpu: Option<GpuState>,
}

/// A GPU kernel's standing with the scheduler.
struct GpuState {
    scheduler: Arc<GpuScheduler>,
    request: commonlab_allocator::RequestId,
    /// The GPUs granted; empty while queued.
    devices: Vec<GpuDevice>,
    /// Set while the kernel waits for a GPU: clients' requests are held until it runs.
    waiting: Option<Waiting>,
    /// The last activity reported to the scheduler.
    busy: bool,
    /// When the GPUs were granted.
    granted_at: Option<std::time::Instant>,
    /// Seconds the kernel executed while holding them, up to `busy_since`.
    busy_s: f64,
    /// When the kernel last went busy, while it is.
    busy_since: Option<std::time::Instant>,
    /// Seconds held and busy already written to the usage ledger.
    reported_held_s: f64,
    reported_busy_s: f64,
}

impl GpuState {
    /// Seconds held and busy since the grant, up to now.
    fn held_and_busy_s(&self) -> (f64, f64) {
        let held = self
            .granted_at
            .map(|at| at.elapsed().as_secs_f64())
            .unwrap_or(0.0);
        let busy = self.busy_s
            + self
                .busy_since
                .map(|at| at.elapsed().as_secs_f64())
                .unwrap_or(0.0);
        (held, busy.min(held))
    }
}

/// What a GPU kernel held, when it lets go of its request.
pub(crate) struct GpuRelease {
    pub(crate) scheduler: Arc<GpuScheduler>,
    pub(crate) request: commonlab_allocator::RequestId,
    pub(crate) devices: Vec<GpuDevice>,
    pub(crate) held_s: f64,
    /// Of `held_s`, the seconds the kernel was executing.
    pub(crate) busy_s: f64,
}

/// A queued kernel's held requests and the notice shown in the cells that wait.
struct Waiting {
    place: QueuePlace,
    language: String,
    /// At most the hub's `buffer_messages_max` messages of `buffer_bytes_max` bytes in all (the
    /// bounds of what is kept for a disconnected session); past them a message is refused.
    held: Vec<Held>,
    held_bytes: usize,
    /// The first held cell; updates of the queue notice are parented to it (clients route
    /// `update_display_data` by `display_id` to every cell that shows it).
    display_parent: Option<Bytes>,
}

/// A client's message that waits for the kernel's runtime.
pub(crate) struct Held {
    client_id: u64,
    channel: Channel,
    message: RawMessage,
}

pub(crate) struct AbortOnDrop(pub(crate) JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
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
    /// A GPU kernel's task applying the scheduler's notices; it holds the kernel weakly and
    /// ends when the scheduler forgets the request, or is aborted with the kernel.
    gpu_driver: Mutex<Option<AbortOnDrop>>,
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
                busy_unknown: false,
                acted_on: Default::default(),
                gpu: None,
            }),
            readiness,
            lifecycle: tokio::sync::Mutex::new(()),
            gate,
            gpu_driver: Mutex::new(None),
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

    /// The identity the server's shell, control and stdin connections to this kernel have:
    /// one per kernel id, so after a server restart the kernel's replies to requests sent
    /// before it (the running cell's `execute_reply`) reach the new server.
    pub(crate) fn stable_identity(&self) -> String {
        format!("commonlab-{}", self.id)
    }

    /// Connects the channels to a launched runtime, as [`Kernel::stable_identity`], and
    /// starts its watcher task.
    pub(crate) async fn attach(
        self: &Arc<Self>,
        runtime: Arc<dyn Runtime>,
        connection: &ConnectionInfo,
        timeout: Duration,
    ) -> Result<(), ManagerError> {
        let identity = self.stable_identity();
        self.attach_as(runtime, connection, &identity, timeout)
            .await
    }

    /// As [`Kernel::attach`], connecting as `identity`.
    pub(crate) async fn attach_as(
        self: &Arc<Self>,
        runtime: Arc<dyn Runtime>,
        connection: &ConnectionInfo,
        identity: &str,
        timeout: Duration,
    ) -> Result<(), ManagerError> {
        self.readiness.send_replace(Readiness::Starting);
        let weak = Arc::downgrade(self);
        let sink: commonlab_kernel::IncomingSink = Arc::new(move |incoming| match weak.upgrade() {
            Some(kernel) => {
                kernel.on_incoming(incoming);
                true
            }
            None => false,
        });
        let channels = KernelChannels::connect(connection, identity, timeout, sink)
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
        self.wait_ready_on(Channel::Shell, timeout).await
    }

    /// As [`Kernel::wait_ready`], poking on `channel`: control for a kernel that may be busy
    /// running a cell (ipykernel answers on control meanwhile; on shell the request would wait
    /// behind the cell).
    pub(crate) async fn wait_ready_on(
        self: &Arc<Self>,
        channel: Channel,
        timeout: Duration,
    ) -> Result<(), ManagerError> {
        let mut readiness = self.readiness.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        let mut interval = Duration::from_millis(20);
        loop {
            match readiness.borrow_and_update().clone() {
                Readiness::Ready => return Ok(()),
                Readiness::Failed(failure) => {
                    return Err(ManagerError::new(
                        ErrorKind::Unavailable,
                        "kernel_died",
                        failure.why,
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
                let _ = sender.send(channel, &request).await;
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

    /// A `kernel_info_request` of the server's own, to send.
    pub(crate) fn kernel_info_request(&self) -> RawMessage {
        self.builder.message(
            "kernel_info_request",
            iso_now(),
            Bytes::from_static(b"{}"),
            &serde_json::json!({}),
        )
    }

    /// Keeps the content of the kernel's `kernel_info_reply` (got over another connection).
    pub(crate) fn set_kernel_info(&self, reply: &RawMessage) {
        let mut state = self.state();
        if state.kernel_info.is_none() {
            state.kernel_info = Some(reply.content.clone());
        }
    }

    /// Marks a kernel reattached after a server restart, before it is attached: what it sends
    /// for clients from before the restart is kept for their sessions until they reconnect.
    pub(crate) fn mark_recovered(&self) {
        self.state().hub.set_recovered();
    }

    /// A recovered kernel whose heartbeat answers but whose control channel does not: it is
    /// alive, so clients' requests go to it (and wait there, as on any busy kernel).
    pub(crate) fn set_alive(&self) {
        if *self.readiness.borrow() == Readiness::Starting {
            // Stored even when nobody waits yet (`send` would drop it then).
            self.readiness.send_replace(Readiness::Ready);
        }
    }

    /// After a recovered kernel has proved alive: it counts as busy (a cell may have been
    /// running across the restart) until a status of its own says otherwise or it answers a
    /// `kernel_info_request` on shell, which it does only once no cell runs.
    pub(crate) async fn settle_recovered(&self) {
        {
            let mut state = self.state();
            state.execution_state = "busy".into();
            state.busy_unknown = true;
        }
        self.send_own(Channel::Shell, "kernel_info_request", serde_json::json!({}))
            .await;
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
        let Some(message) = self.hold_while_waiting(client_id, channel, &header, message) else {
            return Ok(());
        };
        self.forward(client_id, channel, header, message).await
    }

    /// Sends a client's message on: the policy on the code it carries, then the kernel.
    async fn forward(
        &self,
        client_id: u64,
        channel: Channel,
        header: commonlab_protocol::Header,
        message: RawMessage,
    ) -> Result<(), ManagerError> {
        // Wait for readiness so nothing sent during a start or restart is lost (to the slow
        // joiner, or to the process being replaced).
        let mut readiness = self.readiness.subscribe();
        loop {
            let current = readiness.borrow_and_update().clone();
            match current {
                Readiness::Ready => break,
                Readiness::Failed(failure) => {
                    // Sending would leave the client waiting forever: answer for the kernel.
                    self.answer_dead(client_id, channel, &header, &message, &failure);
                    return Ok(());
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
        let message = match &self.gate {
            Some(gate) => match self.screen(gate, client_id, channel, &header, message) {
                Some(message) => message,
                None => return Ok(()),
            },
            None => message,
        };
        let sender = {
            let mut state = self.state();
            if !header.msg_id.is_empty() && channel != Channel::Stdin {
                state.hub.remember_request(header.msg_id.clone(), client_id);
            }
            state.last_activity = iso_now();
            state.live.as_ref().map(|l| l.sender.clone())
        };
        let Some(sender) = sender else {
            let failure = Failure {
                ename: "KernelNotRunning",
                why: "The kernel is not running.".into(),
            };
            self.answer_dead(client_id, channel, &header, &message, &failure);
            return Ok(());
        };
        if let Err(e) = sender.send(channel, &message).await {
            tracing::warn!(kernel = %self.id, channel = channel.as_str(), error = %e, "a client's message could not be sent to the kernel");
            let text = format!("The request could not be sent to the kernel: {e}.\nNothing was run. If the kernel has died, restart it.");
            self.answer_unsent(
                client_id,
                channel,
                &header,
                &message,
                ("KernelUnreachable", "kernel_send_failed"),
                &text,
            );
        }
        Ok(())
    }

    /// Sorts a client's message (`screen.rs`) and checks the code it carries with the policy;
    /// returns what to send the kernel, or `None` when it was refused and answered.
    fn screen(
        &self,
        gate: &PolicyGate,
        client_id: u64,
        channel: Channel,
        header: &commonlab_protocol::Header,
        message: RawMessage,
    ) -> Option<RawMessage> {
        let (carrier, code, content, metadata) =
            match screen::screen(channel, &header.msg_type, &message) {
                Screened::Pass => return Some(message),
                Screened::Refuse(refusal) => {
                    self.refuse_message(
                        client_id,
                        channel,
                        header,
                        &message,
                        ("MessageRefused", refusal.code),
                        &refusal.message,
                    );
                    return None;
                }
                Screened::Check {
                    carrier,
                    code,
                    content,
                    metadata,
                } => (carrier, code, content, metadata),
            };
        let decision = match carrier {
            Carrier::Typing => gate.check_unrecorded(&code),
            _ => gate.check(&self.id, &header.msg_id, &code),
        };
        match decision {
            GateDecision::Run => {}
            GateDecision::RunWithWarning(text) => {
                if carrier == Carrier::Execute {
                    self.emit(
                        Channel::Iopub,
                        "stream",
                        &message.header,
                        serde_json::json!({ "name": "stderr", "text": format!("{text}\n") }),
                    );
                }
            }
            GateDecision::Refuse(text) => {
                self.refuse_message(
                    client_id,
                    channel,
                    header,
                    &message,
                    ("PolicyViolation", "policy_refused"),
                    &text,
                );
                return None;
            }
            GateDecision::TooLarge(text) => {
                self.refuse_message(
                    client_id,
                    channel,
                    header,
                    &message,
                    ("CodeTooLarge", "code_too_large"),
                    &text,
                );
                return None;
            }
        }
        // The kernel gets the content that was checked, not the bytes the client wrote.
        Some(RawMessage {
            content,
            metadata: metadata.unwrap_or(message.metadata),
            ..message
        })
    }

    /// Refuses a message the kernel will not get: answers it (`answer_unsent`), and shows why
    /// in the notebook for comm messages, which have no reply of their own. `error` is the
    /// `ename` and the stable code the answer carries.
    fn refuse_message(
        &self,
        client_id: u64,
        channel: Channel,
        header: &commonlab_protocol::Header,
        message: &RawMessage,
        error: (&str, &str),
        text: &str,
    ) {
        tracing::warn!(kernel = %self.id, channel = channel.as_str(), msg_type = %header.msg_type, code = error.1, "refused a client's message");
        self.answer_unsent(client_id, channel, header, message, error, text);
        if matches!(
            header.msg_type.as_str(),
            "comm_open" | "comm_msg" | "comm_close"
        ) {
            self.notify(text);
        }
    }

    /// Answers a request sent to a kernel that is not running as a failed request of its type,
    /// naming why and what to do, then tells the clients again that the kernel is dead (one that
    /// connected after the death was never told, and the answer's `idle` is not the kernel's).
    fn answer_dead(
        &self,
        client_id: u64,
        channel: Channel,
        header: &commonlab_protocol::Header,
        message: &RawMessage,
        failure: &Failure,
    ) {
        tracing::info!(kernel = %self.id, channel = channel.as_str(), msg_type = %header.msg_type, "answered a request to a kernel that is not running");
        let text = format!("{}\n{NOT_RUNNING_ADVICE}", failure.why);
        if self.answer_unsent(
            client_id,
            channel,
            header,
            message,
            (failure.ename, "kernel_dead"),
            &text,
        ) {
            self.broadcast_status("dead");
        }
    }

    /// Answers a message the kernel did not get as the kernel would answer a failed request of
    /// its type: a cell's error, an error reply, a debugger's failed response, a closed comm.
    /// `error` is the `ename` and the stable code the answer carries; the first line of `text`
    /// is the `evalue`. Returns whether anything was answered (a message that is not a request
    /// has nothing to answer).
    fn answer_unsent(
        &self,
        client_id: u64,
        channel: Channel,
        header: &commonlab_protocol::Header,
        message: &RawMessage,
        error: (&str, &str),
        text: &str,
    ) -> bool {
        let (ename, code) = error;
        // Read leniently: only to echo what the request named.
        let request: serde_json::Value =
            serde_json::from_slice(&message.content).unwrap_or_default();
        let msg_type = header.msg_type.as_str();
        match msg_type {
            "execute_request" => {
                self.answer_error(
                    client_id,
                    channel,
                    &header.msg_id,
                    &message.header,
                    error,
                    text,
                );
                true
            }
            "comm_open" | "comm_msg" | "comm_close" => {
                let Some(comm_id) = request["comm_id"]
                    .as_str()
                    .filter(|_| msg_type == "comm_open")
                else {
                    return false;
                };
                let content = serde_json::json!({
                    "comm_id": comm_id,
                    "data": { "code": code, "message": text },
                });
                let mut encoded = self.own_message(
                    Channel::Iopub,
                    "comm_close",
                    &message.header,
                    Bytes::from(content.to_string()),
                );
                self.state().hub.send_to(client_id, &mut encoded);
                true
            }
            _ if channel != Channel::Stdin && msg_type.ends_with("_request") => {
                let evalue = text.lines().next().unwrap_or(text);
                let mut reply = serde_json::json!({
                    "status": "error",
                    "ename": ename,
                    "evalue": evalue,
                    "traceback": text.lines().collect::<Vec<_>>(),
                    "code": code,
                });
                match msg_type {
                    "complete_request" => {
                        let cursor = request["cursor_pos"].as_u64().unwrap_or(0);
                        reply["matches"] = serde_json::json!([]);
                        reply["cursor_start"] = cursor.into();
                        reply["cursor_end"] = cursor.into();
                        reply["metadata"] = serde_json::json!({});
                    }
                    "inspect_request" => {
                        reply["found"] = false.into();
                        reply["data"] = serde_json::json!({});
                        reply["metadata"] = serde_json::json!({});
                    }
                    "debug_request" => {
                        reply = serde_json::json!({
                            "type": "response",
                            "seq": 0,
                            "request_seq": request["seq"].as_u64().unwrap_or(0),
                            "command": request["command"].as_str().unwrap_or_default(),
                            "success": false,
                            "message": text,
                            "body": {},
                            "code": code,
                        });
                    }
                    _ => {}
                }
                let reply_type = format!("{}_reply", msg_type.trim_end_matches("_request"));
                self.answer_request(
                    client_id,
                    channel,
                    &header.msg_id,
                    &message.header,
                    &reply_type,
                    reply,
                );
                true
            }
            // Not a request: there is nothing to answer; the log says what was dropped.
            _ => false,
        }
    }

    /// Answers a request with `reply`, between `busy` and `idle` as a kernel does.
    fn answer_request(
        &self,
        client_id: u64,
        channel: Channel,
        msg_id: &str,
        parent_header: &Bytes,
        reply_type: &str,
        reply: serde_json::Value,
    ) {
        self.state()
            .hub
            .remember_request(msg_id.to_owned(), client_id);
        self.emit(
            Channel::Iopub,
            "status",
            parent_header,
            serde_json::json!({ "execution_state": "busy" }),
        );
        self.emit(channel, reply_type, parent_header, reply);
        self.emit(
            Channel::Iopub,
            "status",
            parent_header,
            serde_json::json!({ "execution_state": "idle" }),
        );
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

    /// Answers an `execute_request` with an error the server wrote, as a failing cell would be
    /// answered, so every Jupyter client shows the explanation. `error` is the `ename` and the
    /// stable code the error carries.
    fn answer_error(
        &self,
        client_id: u64,
        channel: Channel,
        msg_id: &str,
        parent_header: &Bytes,
        error: (&str, &str),
        text: &str,
    ) {
        let (ename, code) = error;
        self.state()
            .hub
            .remember_request(msg_id.to_owned(), client_id);
        let evalue = text.lines().next().unwrap_or(text).to_owned();
        let traceback: Vec<&str> = text.lines().collect();
        let error = serde_json::json!({ "ename": ename, "evalue": evalue, "traceback": traceback, "code": code });
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
        self.emit(channel, "execute_reply", parent_header, reply);
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

    /// Makes this a GPU kernel with a request at `scheduler`.
    pub(crate) fn set_gpu(
        &self,
        scheduler: Arc<GpuScheduler>,
        request: commonlab_allocator::RequestId,
    ) {
        self.state().gpu = Some(GpuState {
            scheduler,
            request,
            devices: Vec::new(),
            waiting: None,
            busy: false,
            granted_at: None,
            busy_s: 0.0,
            busy_since: None,
            reported_held_s: 0.0,
            reported_busy_s: 0.0,
        });
    }

    /// Gives the kernel the task that applies its scheduler's notices.
    pub(crate) fn set_gpu_driver(&self, driver: JoinHandle<()>) {
        *self
            .gpu_driver
            .lock()
            .expect("driver lock is never poisoned") = Some(AbortOnDrop(driver));
    }

    /// GPUs held, and the seconds held and busy since the last call, for the supervisor to
    /// write to the usage ledger while the kernel runs (so the account page is current).
    pub(crate) fn gpu_usage_unreported(&self) -> Option<(usize, f64, f64)> {
        let mut state = self.state();
        let gpu = state.gpu.as_mut()?;
        if gpu.devices.is_empty() || gpu.granted_at.is_none() {
            return None;
        }
        let (held, busy) = gpu.held_and_busy_s();
        let new = (
            gpu.devices.len(),
            (held - gpu.reported_held_s).max(0.0),
            (busy - gpu.reported_busy_s).max(0.0),
        );
        gpu.reported_held_s = held;
        gpu.reported_busy_s = busy;
        Some(new)
    }

    /// Lets go of the GPU request (the caller tells the scheduler); what was held.
    /// `held_s` and `busy_s` are what was not yet written to the usage ledger.
    pub(crate) fn take_gpu(&self) -> Option<GpuRelease> {
        let gpu = self.state().gpu.take()?;
        let (held, busy) = gpu.held_and_busy_s();
        Some(GpuRelease {
            held_s: (held - gpu.reported_held_s).max(0.0),
            busy_s: (busy - gpu.reported_busy_s).max(0.0),
            scheduler: gpu.scheduler,
            request: gpu.request,
            devices: gpu.devices,
        })
    }

    /// The scheduler and request of a GPU kernel.
    pub(crate) fn gpu_request(
        &self,
    ) -> Option<(Arc<GpuScheduler>, commonlab_allocator::RequestId)> {
        self.state()
            .gpu
            .as_ref()
            .map(|gpu| (gpu.scheduler.clone(), gpu.request))
    }

    /// The GPUs this kernel holds.
    pub fn gpus(&self) -> Vec<GpuDevice> {
        self.state()
            .gpu
            .as_ref()
            .map(|gpu| gpu.devices.clone())
            .unwrap_or_default()
    }

    /// Whether the kernel waits in the GPU queue.
    pub fn is_waiting_for_gpu(&self) -> bool {
        self.state()
            .gpu
            .as_ref()
            .is_some_and(|gpu| gpu.waiting.is_some())
    }

    /// The kernel waits for a GPU: clients' requests are held from now on.
    pub(crate) fn wait_for_gpu(&self, place: QueuePlace, language: &str) {
        if let Some(gpu) = self.state().gpu.as_mut() {
            gpu.waiting = Some(Waiting {
                place,
                language: language.to_owned(),
                held: Vec::new(),
                held_bytes: 0,
                display_parent: None,
            });
        }
    }

    /// The queue moved: the cells that wait show the new place.
    pub(crate) fn queue_moved(&self, place: QueuePlace) {
        let parent = {
            let mut state = self.state();
            let Some(waiting) = state.gpu.as_mut().and_then(|gpu| gpu.waiting.as_mut()) else {
                return;
            };
            waiting.place = place;
            waiting.display_parent.clone()
        };
        if let Some(parent) = parent {
            self.queue_display(
                "update_display_data",
                &parent,
                &crate::gpu::queue_text(place),
            );
        }
    }

    /// GPUs were granted: the runtime is about to be launched with them.
    pub(crate) fn gpus_granted(&self, devices: Vec<GpuDevice>) {
        let names: Vec<String> = devices
            .iter()
            .map(|d| format!("GPU {} ({})", d.index, d.name))
            .collect();
        let parent = {
            let mut state = self.state();
            let Some(gpu) = state.gpu.as_mut() else {
                return;
            };
            gpu.devices = devices;
            gpu.busy = false;
            gpu.granted_at = Some(std::time::Instant::now());
            gpu.waiting.as_ref().and_then(|w| w.display_parent.clone())
        };
        if let Some(parent) = parent {
            let text = format!(
                "A GPU was granted: {}. Starting the kernel; this cell runs next.",
                names.join(", ")
            );
            self.queue_display("update_display_data", &parent, &text);
        }
    }

    /// Sends the requests held while the kernel waited, in order, then stops holding.
    pub(crate) async fn release_held(&self) {
        loop {
            let held = {
                let mut state = self.state();
                let Some(waiting) = state.gpu.as_mut().and_then(|gpu| gpu.waiting.as_mut()) else {
                    return;
                };
                if waiting.held.is_empty() {
                    if let Some(gpu) = state.gpu.as_mut() {
                        gpu.waiting = None;
                    }
                    return;
                }
                waiting.held_bytes = 0;
                std::mem::take(&mut waiting.held)
            };
            for Held {
                client_id,
                channel,
                message,
            } in held
            {
                let Ok(header) = message.parse_header() else {
                    continue;
                };
                if let Err(e) = self.forward(client_id, channel, header, message).await {
                    tracing::warn!(kernel = %self.id, error = %e, "a held request could not be sent");
                }
            }
        }
    }

    /// The kernel will not get a GPU (it left the queue, was refused, or its launch failed):
    /// every held cell is answered with `text` as its error, and nothing more is held.
    pub(crate) fn abandon_wait(&self, text: &str) {
        let held = {
            let mut state = self.state();
            match state.gpu.as_mut().and_then(|gpu| gpu.waiting.take()) {
                Some(waiting) => waiting.held,
                None => return,
            }
        };
        for Held {
            client_id,
            channel,
            message,
        } in held
        {
            let Ok(header) = message.parse_header() else {
                continue;
            };
            if channel != Channel::Stdin && header.msg_type == "execute_request" {
                self.answer_error(
                    client_id,
                    channel,
                    &header.msg_id,
                    &message.header,
                    ("NoGpu", "gpu_unavailable"),
                    text,
                );
            }
        }
    }

    /// While the kernel waits for a GPU, answers `kernel_info_request` itself and holds
    /// everything else (showing the queue in each cell that waits), within the bounds of a
    /// disconnected session's buffer: a message past them is refused (`queue_full`) and the
    /// held ones keep their places. Returns the message when the kernel is not waiting.
    fn hold_while_waiting(
        &self,
        client_id: u64,
        channel: Channel,
        header: &commonlab_protocol::Header,
        message: RawMessage,
    ) -> Option<RawMessage> {
        let msg_type = header.msg_type.as_str();
        let mut state = self.state();
        let limits = state.hub.limits();
        let Some(waiting) = state.gpu.as_mut().and_then(|gpu| gpu.waiting.as_mut()) else {
            return Some(message);
        };
        if channel == Channel::Shell && msg_type == "kernel_info_request" {
            let language = waiting.language.clone();
            drop(state);
            self.answer_kernel_info_waiting(client_id, &message.header, &language);
            return None;
        }
        if channel == Channel::Stdin {
            // Nothing runs, so nothing asked for input.
            return None;
        }
        let bytes = message.len_bytes();
        if waiting.held.len() >= limits.buffer_messages_max
            || waiting.held_bytes.saturating_add(bytes) > limits.buffer_bytes_max
        {
            let (count, held_bytes) = (waiting.held.len(), waiting.held_bytes);
            drop(state);
            let text = format!(
                "Not held: the kernel waits for a GPU and already holds {count} messages \
                 ({held_bytes} bytes) to run once it gets one, and this one ({bytes} bytes) \
                 would pass the bound of {} messages or {} bytes (kernel.ws_buffer_messages_max, \
                 kernel.ws_buffer_bytes_max).\nNothing was run. Send it again once the kernel has \
                 its GPU (the cells already waiting run first).",
                limits.buffer_messages_max, limits.buffer_bytes_max,
            );
            self.refuse_message(
                client_id,
                channel,
                header,
                &message,
                ("QueueFull", "queue_full"),
                &text,
            );
            return None;
        }
        waiting.held_bytes += bytes;
        let cell = channel == Channel::Shell && msg_type == "execute_request";
        let place = waiting.place;
        let parent = message.header.clone();
        if cell && waiting.display_parent.is_none() {
            waiting.display_parent = Some(parent.clone());
        }
        waiting.held.push(Held {
            client_id,
            channel,
            message,
        });
        drop(state);
        if cell {
            self.queue_display("display_data", &parent, &crate::gpu::queue_text(place));
        }
        None
    }

    /// Shows (or updates) the queue notice, under one `display_id` per kernel.
    fn queue_display(&self, msg_type: &str, parent: &Bytes, text: &str) {
        let display_id = format!("commonlab-gpu-queue-{}", self.id);
        self.emit(
            Channel::Iopub,
            msg_type,
            parent,
            serde_json::json!({
                "data": { "text/plain": text },
                "metadata": {},
                "transient": { "display_id": display_id },
            }),
        );
    }

    /// The server's own `kernel_info_reply` while the kernel waits for a GPU, so clients
    /// consider the kernel connected.
    fn answer_kernel_info_waiting(&self, client_id: u64, parent_header: &Bytes, language: &str) {
        let language_info = match language {
            "python" => serde_json::json!({
                "name": "python",
                "mimetype": "text/x-python",
                "file_extension": ".py",
                "codemirror_mode": { "name": "ipython", "version": 3 },
                "pygments_lexer": "ipython3",
                "nbconvert_exporter": "python",
            }),
            other => serde_json::json!({ "name": other }),
        };
        let content = serde_json::json!({
            "status": "ok",
            "protocol_version": commonlab_protocol::PROTOCOL_VERSION,
            "implementation": "commonlab",
            "implementation_version": env!("CARGO_PKG_VERSION"),
            "language_info": language_info,
            "banner": "Waiting for a GPU",
            "help_links": [],
        });
        for (channel, msg_type, content) in [
            (
                Channel::Iopub,
                "status",
                Bytes::from_static(br#"{"execution_state":"busy"}"#),
            ),
            (
                Channel::Shell,
                "kernel_info_reply",
                Bytes::from(content.to_string()),
            ),
            (
                Channel::Iopub,
                "status",
                Bytes::from_static(br#"{"execution_state":"idle"}"#),
            ),
        ] {
            let mut encoded = self.own_message(channel, msg_type, parent_header, content);
            self.state().hub.send_to(client_id, &mut encoded);
        }
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

    /// Closes every client's connection with 1008 (policy): their account may no longer use
    /// this kernel. `reason` is a stable code (a close reason holds at most 123 bytes).
    pub(crate) fn close_clients_for_policy(&self, reason: &str) {
        self.state().hub.close_all(1008, reason);
    }

    /// The kernel is not running and will not be until a restart: `why` answers every
    /// request sent to it from now on.
    pub(crate) fn set_failed(&self, why: String) {
        self.readiness.send_replace(Readiness::Failed(Failure {
            ename: "KernelNotRunning",
            why,
        }));
    }

    /// A restart begins: requests sent from now on wait for the new process rather than go to
    /// the old one or be answered as dead (the restart ends in `Ready`, or in `set_failed`).
    pub(crate) fn begin_restart(&self) {
        {
            // What the old process said must not make the kernel ready again before the new
            // one has (`update_readiness`).
            let mut state = self.state();
            state.iopub_seen = false;
            state.kernel_info = None;
        }
        self.readiness.send_replace(Readiness::Starting);
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
        // A GPU kernel's change between busy and idle, told to the scheduler after the lock.
        let mut activity = None;
        let own = parent_session.as_deref() == Some(self.builder.session.as_str());
        let mut state = self.state();
        if own && matches!(channel, Channel::Shell | Channel::Control) {
            if header.msg_type == "kernel_info_reply" {
                if state.kernel_info.is_none() {
                    state.kernel_info = Some(message.content.clone());
                }
                if channel == Channel::Shell && state.busy_unknown {
                    // Shell answered, so no cell was running before it.
                    state.busy_unknown = false;
                    state.execution_state = "idle".into();
                }
            }
            self.update_readiness(&state);
            return;
        }
        if !own {
            if let Some(session) = parent_session.as_deref() {
                state.hub.keep_for_absent_session(session);
            }
        }
        if channel == Channel::Iopub {
            if !state.iopub_seen {
                state.iopub_seen = true;
                self.update_readiness(&state);
            }
            if state.execution_state == "starting" {
                state.execution_state = "idle".into();
            }
            // The statuses of the server's own requests (readiness pokes, control requests)
            // say nothing of whether a cell runs: ipykernel reports its control thread busy
            // and idle while a cell runs on shell.
            if header.msg_type == "status" && !own {
                state.busy_unknown = false;
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
                    let busy = status.execution_state == "busy";
                    if let Some(gpu) = state.gpu.as_mut() {
                        if !gpu.devices.is_empty() && gpu.busy != busy {
                            gpu.busy = busy;
                            if busy {
                                gpu.busy_since = Some(std::time::Instant::now());
                            } else if let Some(at) = gpu.busy_since.take() {
                                gpu.busy_s += at.elapsed().as_secs_f64();
                            }
                            activity = Some((gpu.scheduler.clone(), gpu.request, busy));
                        }
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
        drop(state);
        if let Some((scheduler, request, busy)) = activity {
            let activity = if busy {
                commonlab_allocator::Activity::Busy
            } else {
                commonlab_allocator::Activity::Idle
            };
            scheduler.activity(request, activity);
        }
    }

    /// Ready once the kernel has answered a poke on shell and spoken on iopub, in either order.
    fn update_readiness(&self, state: &State) {
        if state.iopub_seen
            && state.kernel_info.is_some()
            && *self.readiness.borrow() == Readiness::Starting
        {
            self.readiness.send_replace(Readiness::Ready);
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
        let (ename, why) = match &exit.oom {
            Some(oom) => ("MemoryLimitReached", oom.explain()),
            None => ("KernelDied", format!("The kernel {exit}.")),
        };
        // The cell that was running gets the explanation as its error, so the notebook shows
        // why rather than a bare "kernel died".
        let busy_parent = self.state().busy_parent.take();
        if let Some(parent) = busy_parent {
            let error = serde_json::json!({ "ename": ename, "evalue": why, "traceback": [why] });
            self.emit(Channel::Iopub, "error", &parent, error.clone());
            let mut reply = error;
            reply["status"] = "error".into();
            reply["execution_count"] = serde_json::Value::Null;
            self.emit(Channel::Shell, "execute_reply", &parent, reply);
        }
        // Requests sent from now on are answered with the same explanation.
        self.readiness
            .send_replace(Readiness::Failed(Failure { ename, why }));
        self.broadcast_status("dead");
        // A dead kernel holds no GPU.
        if let Some(gpu) = self.take_gpu() {
            gpu.scheduler.exited(gpu.request);
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gpu::{AllocatorConfig, GpuSchedulerConfig, TierConfig, TiersConfig};

    /// A kernel queued for a GPU (no runtime: it never gets one here) that holds at most three
    /// messages or 1 MiB for a session, and a client of it.
    fn queued_kernel() -> (Arc<Kernel>, ClientHandle, mpsc::UnboundedReceiver<Outgoing>) {
        let kernel = Kernel::new(
            "k".into(),
            "python3".into(),
            InterruptMode::Signal,
            HubLimits {
                send_queue_bytes_max: 64 << 20,
                buffer_bytes_max: 1 << 20,
                buffer_messages_max: 3,
                pending_requests_max: 100,
            },
            None,
        );
        let mut tiers = TiersConfig::new();
        tiers.insert("free".into(), TierConfig::default());
        let scheduler = GpuScheduler::new(GpuSchedulerConfig {
            allocator: AllocatorConfig::default(),
            tiers,
            devices: vec![GpuDevice {
                index: 0,
                name: "Fake GPU".into(),
                memory_bytes: 1 << 30,
                node: None,
            }],
            shared_nodes: Vec::new(),
        })
        .unwrap();
        kernel.set_gpu(scheduler, commonlab_allocator::RequestId(0));
        kernel.wait_for_gpu(
            QueuePlace {
                position: 1,
                estimate: None,
            },
            "python",
        );
        let (client, rx) = kernel.connect_client("s".into(), WireProtocol::Legacy);
        (kernel, client, rx)
    }

    fn cell(code: &str) -> RawMessage {
        let builder = MessageBuilder {
            session: "s".into(),
            username: "u".into(),
        };
        builder.message(
            "execute_request",
            iso_now(),
            Bytes::from_static(b"{}"),
            &serde_json::json!({ "code": code, "silent": false }),
        )
    }

    fn msg_id(message: &RawMessage) -> String {
        message.parse_header().unwrap().msg_id
    }

    /// Every message the client was sent so far, as the JSON of the legacy framing.
    fn received(rx: &mut mpsc::UnboundedReceiver<Outgoing>) -> Vec<serde_json::Value> {
        let mut out = Vec::new();
        while let Ok(outgoing) = rx.try_recv() {
            if let Outgoing::Frame { data, .. } = outgoing {
                out.push(serde_json::from_slice(&data).unwrap());
            }
        }
        out
    }

    /// The `execute_reply` to `msg_id` among `messages`, if any.
    fn reply_to<'a>(
        messages: &'a [serde_json::Value],
        msg_id: &str,
    ) -> Option<&'a serde_json::Value> {
        messages.iter().find(|m| {
            m["header"]["msg_type"] == "execute_reply" && m["parent_header"]["msg_id"] == msg_id
        })
    }

    #[tokio::test]
    async fn messages_held_for_a_gpu_are_bounded_and_those_past_the_bound_are_refused() {
        let (kernel, client, mut rx) = queued_kernel();
        // Held: a cell of 600 KiB. Refused: another, since both would pass 1 MiB.
        let big = "x".repeat(600 << 10);
        let first = cell(&big);
        let first_id = msg_id(&first);
        client.send(Channel::Shell, first).await.unwrap();
        let too_big = cell(&big);
        let too_big_id = msg_id(&too_big);
        client.send(Channel::Shell, too_big).await.unwrap();
        // Held: two small cells (three in all). Refused: a fourth, past three messages.
        let mut kept = vec![first_id];
        for _ in 0..2 {
            let small = cell("1");
            kept.push(msg_id(&small));
            client.send(Channel::Shell, small).await.unwrap();
        }
        let fourth = cell("2");
        let fourth_id = msg_id(&fourth);
        client.send(Channel::Shell, fourth).await.unwrap();

        let messages = received(&mut rx);
        for refused in [&too_big_id, &fourth_id] {
            let reply = reply_to(&messages, refused)
                .unwrap_or_else(|| panic!("no reply to a message past the bound: {messages:?}"));
            assert_eq!(reply["content"]["status"], "error");
            assert_eq!(reply["content"]["code"], "queue_full");
            let evalue = reply["content"]["evalue"].as_str().unwrap();
            assert!(evalue.contains("ws_buffer"), "{evalue}");
            // The cell's output ends: busy, then idle, parented to it.
            for state in ["busy", "idle"] {
                assert!(messages.iter().any(|m| m["header"]["msg_type"] == "status"
                    && m["parent_header"]["msg_id"] == refused.as_str()
                    && m["content"]["execution_state"] == state));
            }
        }
        for held in &kept {
            assert!(
                reply_to(&messages, held).is_none(),
                "a held cell was answered"
            );
        }
        // The held ones wait, in order, to run once the GPU is granted.
        let state = kernel.state();
        let waiting = state.gpu.as_ref().unwrap().waiting.as_ref().unwrap();
        let held: Vec<String> = waiting.held.iter().map(|h| msg_id(&h.message)).collect();
        assert_eq!(held, kept);
    }
}
