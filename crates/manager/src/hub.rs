//! The fan-out hub of one kernel: its connected WebSocket clients, routing of replies to the
//! client that asked, and bounded buffers for sessions whose client is away.
//!
//! Every queue here is bounded in bytes: a slow client is disconnected (and its session buffered)
//! rather than growing server memory without limit.
//!
//! A kernel recovered after a server restart had clients this server never saw: a message for
//! one of their sessions (by its parent's session) is buffered for that session, kept unencoded
//! since the framing it will reconnect with is not known yet, so a cell that was running across
//! the restart still reaches its notebook.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use commonlab_protocol::{encode_legacy, encode_v1, Channel, RawMessage};
use tokio::sync::mpsc;

/// Which WebSocket framing a client negotiated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireProtocol {
    V1,
    Legacy,
}

/// A frame for the edge to write to one client's WebSocket.
#[derive(Debug, Clone)]
pub enum Outgoing {
    Frame {
        binary: bool,
        data: Bytes,
    },
    /// Close the connection with this code and reason.
    Close {
        code: u16,
        reason: String,
    },
}

impl Outgoing {
    fn len_bytes(&self) -> usize {
        match self {
            Outgoing::Frame { data, .. } => data.len(),
            Outgoing::Close { .. } => 0,
        }
    }
}

/// One message from the kernel, encoded at most once per framing however many clients get it.
pub(crate) struct Encoded {
    channel: Channel,
    msg_id: String,
    msg_type: String,
    message: RawMessage,
    v1: Option<Bytes>,
    legacy: Option<(bool, Bytes)>,
}

impl Encoded {
    pub(crate) fn new(
        channel: Channel,
        msg_id: String,
        msg_type: String,
        message: RawMessage,
    ) -> Encoded {
        Encoded {
            channel,
            msg_id,
            msg_type,
            message,
            v1: None,
            legacy: None,
        }
    }

    pub(crate) fn message(&self) -> &RawMessage {
        &self.message
    }

    /// A copy to keep (the parts and any encodings are shared, not copied).
    fn detached(&self) -> Encoded {
        Encoded {
            channel: self.channel,
            msg_id: self.msg_id.clone(),
            msg_type: self.msg_type.clone(),
            message: self.message.clone(),
            v1: self.v1.clone(),
            legacy: self.legacy.clone(),
        }
    }

    fn frame(&mut self, protocol: WireProtocol) -> Outgoing {
        match protocol {
            WireProtocol::V1 => {
                let data = self
                    .v1
                    .get_or_insert_with(|| encode_v1(self.channel, &self.message))
                    .clone();
                Outgoing::Frame { binary: true, data }
            }
            WireProtocol::Legacy => {
                let (binary, data) = self
                    .legacy
                    .get_or_insert_with(|| {
                        encode_legacy(self.channel, &self.msg_id, &self.msg_type, &self.message)
                    })
                    .clone();
                Outgoing::Frame { binary, data }
            }
        }
    }
}

pub(crate) struct Client {
    pub(crate) session_id: String,
    protocol: WireProtocol,
    tx: mpsc::UnboundedSender<Outgoing>,
    queued_bytes: Arc<AtomicUsize>,
}

/// What is kept for a session whose client is away.
struct SessionBuffer {
    /// The framing the session's client spoke; `None` for a session of a recovered kernel
    /// whose client has not reconnected since the restart.
    protocol: Option<WireProtocol>,
    frames: VecDeque<Buffered>,
    bytes: usize,
    dropped: usize,
}

/// One buffered message: encoded in the session's framing, or kept as the kernel sent it
/// until the session's client reconnects and says which framing it speaks.
enum Buffered {
    Frame(Outgoing),
    Message(Box<Encoded>),
}

impl Buffered {
    fn len_bytes(&self) -> usize {
        match self {
            Buffered::Frame(frame) => frame.len_bytes(),
            Buffered::Message(encoded) => encoded.message.len_bytes(),
        }
    }

    fn frame(self, protocol: WireProtocol) -> Outgoing {
        match self {
            Buffered::Frame(frame) => frame,
            Buffered::Message(mut encoded) => encoded.frame(protocol),
        }
    }
}

/// How many sessions of a recovered kernel's previous clients are buffered for at most.
const RECOVERED_SESSIONS_MAX: usize = 8;

/// Limits of the hub, with units in their names.
#[derive(Debug, Clone, Copy)]
pub(crate) struct HubLimits {
    pub(crate) send_queue_bytes_max: usize,
    pub(crate) buffer_bytes_max: usize,
    pub(crate) buffer_messages_max: usize,
    pub(crate) pending_requests_max: usize,
}

pub(crate) struct Hub {
    limits: HubLimits,
    next_client_id: u64,
    clients: HashMap<u64, Client>,
    /// Request msg_id → the client that sent it, in arrival order for bounding.
    pending: HashMap<String, u64>,
    pending_order: VecDeque<String>,
    buffers: HashMap<String, SessionBuffer>,
    /// Set for a kernel reattached after a server restart: messages for sessions of clients
    /// from before are buffered until they reconnect.
    recovered: bool,
    /// Buffers made for such sessions so far.
    recovered_sessions: usize,
}

/// What the edge holds for one connected client.
pub struct ClientHandle {
    pub(crate) kernel: Arc<crate::Kernel>,
    pub(crate) client_id: u64,
    pub(crate) session_id: String,
    queued_bytes: Arc<AtomicUsize>,
}

impl ClientHandle {
    pub(crate) fn from_parts(
        kernel: Arc<crate::Kernel>,
        client_id: u64,
        session_id: String,
        queued_bytes: Arc<AtomicUsize>,
    ) -> ClientHandle {
        ClientHandle {
            kernel,
            client_id,
            session_id,
            queued_bytes,
        }
    }

    /// The edge calls this after writing a frame, so the queue bound tracks what is in flight.
    pub fn written(&self, outgoing: &Outgoing) {
        self.queued_bytes
            .fetch_sub(outgoing.len_bytes(), Ordering::Relaxed);
    }

    /// Forwards a message from this client to the kernel.
    pub async fn send(
        &self,
        channel: Channel,
        message: RawMessage,
    ) -> Result<(), crate::ManagerError> {
        self.kernel
            .send_from_client(self.client_id, &self.session_id, channel, message)
            .await
    }

    pub fn kernel(&self) -> &Arc<crate::Kernel> {
        &self.kernel
    }
}

impl ClientHandle {
    /// Disconnects, keeping the frames this client was given but never wrote for its session.
    pub fn close(self, unsent: Vec<Outgoing>) {
        self.kernel
            .disconnect_client_with_unsent(self.client_id, unsent);
    }
}

impl Drop for ClientHandle {
    fn drop(&mut self) {
        self.kernel.disconnect_client(self.client_id);
    }
}

impl Hub {
    pub(crate) fn new(limits: HubLimits) -> Hub {
        Hub {
            limits,
            next_client_id: 1,
            clients: HashMap::new(),
            pending: HashMap::new(),
            pending_order: VecDeque::new(),
            buffers: HashMap::new(),
            recovered: false,
            recovered_sessions: 0,
        }
    }

    pub(crate) fn limits(&self) -> HubLimits {
        self.limits
    }

    /// The kernel was reattached after a server restart: its clients from before are not
    /// connected, and what it sends for them is to be kept until they are.
    pub(crate) fn set_recovered(&mut self) {
        self.recovered = true;
    }

    /// Before a message of a recovered kernel for `session` is delivered: when no client of
    /// that session is connected and nothing is buffered for it yet, a buffer is started, so
    /// the session's client gets the message when it reconnects. At most
    /// [`RECOVERED_SESSIONS_MAX`] such sessions per kernel.
    pub(crate) fn keep_for_absent_session(&mut self, session: &str) {
        if !self.recovered
            || session.is_empty()
            || self.recovered_sessions >= RECOVERED_SESSIONS_MAX
            || self.buffers.contains_key(session)
            || self.clients.values().any(|c| c.session_id == session)
        {
            return;
        }
        self.recovered_sessions += 1;
        self.buffers.insert(
            session.to_owned(),
            SessionBuffer {
                protocol: None,
                frames: VecDeque::new(),
                bytes: 0,
                dropped: 0,
            },
        );
    }

    pub(crate) fn connection_count(&self) -> usize {
        self.clients.len()
    }

    /// Registers a client; returns its id, queue counter, receiver, after replaying whatever its
    /// session missed while away.
    pub(crate) fn connect(
        &mut self,
        session_id: String,
        protocol: WireProtocol,
    ) -> (u64, Arc<AtomicUsize>, mpsc::UnboundedReceiver<Outgoing>) {
        let client_id = self.next_client_id;
        self.next_client_id += 1;
        let (tx, rx) = mpsc::unbounded_channel();
        let queued_bytes = Arc::new(AtomicUsize::new(0));
        if let Some(buffer) = self.buffers.remove(&session_id) {
            if buffer.protocol.is_none_or(|p| p == protocol) {
                if buffer.dropped > 0 {
                    tracing::warn!(session = %session_id, dropped = buffer.dropped, "buffer overflowed while the client was away");
                }
                for buffered in buffer.frames {
                    let frame = buffered.frame(protocol);
                    queued_bytes.fetch_add(frame.len_bytes(), Ordering::Relaxed);
                    let _ = tx.send(frame);
                }
            }
        }
        self.clients.insert(
            client_id,
            Client {
                session_id,
                protocol,
                tx,
                queued_bytes: queued_bytes.clone(),
            },
        );
        (client_id, queued_bytes, rx)
    }

    /// Removes a client; its session's messages are buffered until it reconnects.
    pub(crate) fn disconnect(&mut self, client_id: u64) {
        self.disconnect_with_unsent(client_id, Vec::new());
    }

    /// Removes a client; `unsent` are frames it was given but never wrote, kept for its session
    /// ahead of anything that arrives later.
    pub(crate) fn disconnect_with_unsent(&mut self, client_id: u64, unsent: Vec<Outgoing>) {
        if let Some(client) = self.clients.remove(&client_id) {
            let successor = self
                .clients
                .values()
                .find(|c| !client.session_id.is_empty() && c.session_id == client.session_id);
            if let Some(successor) = successor {
                // The session already reconnected (the old socket's close was read late): what
                // the old one never wrote goes to the new one rather than nowhere. Frames are
                // encoded per framing, so only a successor speaking the same one can take them.
                if successor.protocol == client.protocol {
                    for frame in unsent {
                        if !matches!(frame, Outgoing::Close { .. }) {
                            let _ = push(successor, frame, self.limits.send_queue_bytes_max);
                        }
                    }
                } else if !unsent.is_empty() {
                    tracing::warn!(session = %client.session_id, dropped = unsent.len(), "the session reconnected with another framing; frames its old connection never wrote are dropped");
                }
                return;
            }
            if !client.session_id.is_empty() {
                let limits = self.limits;
                let buffer = self
                    .buffers
                    .entry(client.session_id)
                    .or_insert(SessionBuffer {
                        protocol: Some(client.protocol),
                        frames: VecDeque::new(),
                        bytes: 0,
                        dropped: 0,
                    });
                for frame in unsent.into_iter().rev() {
                    if matches!(frame, Outgoing::Close { .. }) {
                        continue;
                    }
                    let len = frame.len_bytes();
                    if buffer.frames.len() >= limits.buffer_messages_max
                        || buffer.bytes + len > limits.buffer_bytes_max
                    {
                        buffer.dropped += 1;
                        continue;
                    }
                    buffer.bytes += len;
                    buffer.frames.push_front(Buffered::Frame(frame));
                }
            }
        }
    }

    /// Closes every client (the kernel is gone) and forgets buffers.
    pub(crate) fn close_all(&mut self, code: u16, reason: &str) {
        for client in self.clients.values() {
            let _ = client.tx.send(Outgoing::Close {
                code,
                reason: reason.to_owned(),
            });
        }
        self.clients.clear();
        self.buffers.clear();
        self.pending.clear();
        self.pending_order.clear();
    }

    pub(crate) fn remember_request(&mut self, msg_id: String, client_id: u64) {
        if self.pending.len() >= self.limits.pending_requests_max {
            while let Some(oldest) = self.pending_order.pop_front() {
                if self.pending.remove(&oldest).is_some() {
                    break;
                }
            }
        }
        self.pending_order.push_back(msg_id.clone());
        self.pending.insert(msg_id, client_id);
    }

    /// Sends to every client and every away session's buffer.
    pub(crate) fn broadcast(&mut self, encoded: &mut Encoded) {
        let mut too_slow = Vec::new();
        for (&client_id, client) in &self.clients {
            let frame = encoded.frame(client.protocol);
            if !push(client, frame, self.limits.send_queue_bytes_max) {
                too_slow.push(client_id);
            }
        }
        for (_, buffer) in self.buffers.iter_mut() {
            buffer_push(buffer, encoded, self.limits);
        }
        for client_id in too_slow {
            self.drop_slow(client_id);
        }
    }

    /// Sends a reply to the client that made the request (or its session's buffer).
    /// `consume` removes the routing entry (final replies); stdin requests keep it.
    pub(crate) fn reply(
        &mut self,
        parent_msg_id: Option<&str>,
        parent_session: Option<&str>,
        consume: bool,
        encoded: &mut Encoded,
    ) {
        let client_id = parent_msg_id.and_then(|id| {
            if consume {
                self.pending.remove(id)
            } else {
                self.pending.get(id).copied()
            }
        });
        if let Some(client) = client_id.and_then(|id| self.clients.get(&id)) {
            let frame = encoded.frame(client.protocol);
            if !push(client, frame, self.limits.send_queue_bytes_max) {
                let id = client_id.expect("client found by id");
                self.drop_slow(id);
            }
            return;
        }
        let Some(session) = parent_session else {
            return;
        };
        if let Some(client) = self.clients.values().find(|c| c.session_id == session) {
            let frame = encoded.frame(client.protocol);
            let _ = push(client, frame, self.limits.send_queue_bytes_max);
        } else if let Some(buffer) = self.buffers.get_mut(session) {
            buffer_push(buffer, encoded, self.limits);
        }
    }

    /// Sends to one client only.
    pub(crate) fn send_to(&mut self, client_id: u64, encoded: &mut Encoded) {
        if let Some(client) = self.clients.get(&client_id) {
            let frame = encoded.frame(client.protocol);
            if !push(client, frame, self.limits.send_queue_bytes_max) {
                self.drop_slow(client_id);
            }
        }
    }

    fn drop_slow(&mut self, client_id: u64) {
        if let Some(client) = self.clients.get(&client_id) {
            tracing::warn!(session = %client.session_id, "client is not reading its messages; disconnecting it");
            let _ = client.tx.send(Outgoing::Close {
                code: 1008,
                reason: "client too slow: send queue limit reached; reconnect to resume".into(),
            });
        }
        self.disconnect(client_id);
    }
}

fn push(client: &Client, frame: Outgoing, limit: usize) -> bool {
    let len = frame.len_bytes();
    let queued = client.queued_bytes.load(Ordering::Relaxed);
    // One message larger than the limit is still delivered to an otherwise idle client.
    if queued > 0 && queued + len > limit {
        return false;
    }
    client.queued_bytes.fetch_add(len, Ordering::Relaxed);
    client.tx.send(frame).is_ok()
}

/// Keeps `encoded` for an away session: in its framing, or as it is when that is not known.
fn buffer_push(buffer: &mut SessionBuffer, encoded: &mut Encoded, limits: HubLimits) {
    let buffered = match buffer.protocol {
        Some(protocol) => Buffered::Frame(encoded.frame(protocol)),
        None => Buffered::Message(Box::new(encoded.detached())),
    };
    let len = buffered.len_bytes();
    if buffer.frames.len() >= limits.buffer_messages_max
        || buffer.bytes + len > limits.buffer_bytes_max
    {
        buffer.dropped += 1;
        return;
    }
    buffer.bytes += len;
    buffer.frames.push_back(buffered);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hub() -> Hub {
        Hub::new(HubLimits {
            send_queue_bytes_max: 1 << 20,
            buffer_bytes_max: 1 << 20,
            buffer_messages_max: 100,
            pending_requests_max: 100,
        })
    }

    fn frame(text: &'static str) -> Outgoing {
        Outgoing::Frame {
            binary: false,
            data: Bytes::from_static(text.as_bytes()),
        }
    }

    fn kernel_message(session: &str, text: &str) -> Encoded {
        let message = RawMessage {
            header: Bytes::from(format!(
                r#"{{"msg_id":"m-{text}","msg_type":"stream","session":"k","username":"k","date":"","version":"5.3"}}"#
            )),
            parent_header: Bytes::from(format!(
                r#"{{"msg_id":"cell","msg_type":"execute_request","session":"{session}"}}"#
            )),
            metadata: Bytes::from_static(b"{}"),
            content: Bytes::from(format!(r#"{{"name":"stdout","text":"{text}"}}"#)),
            buffers: Vec::new(),
        };
        Encoded::new(
            Channel::Iopub,
            format!("m-{text}"),
            "stream".into(),
            message,
        )
    }

    fn texts(rx: &mut mpsc::UnboundedReceiver<Outgoing>) -> Vec<String> {
        let mut texts = Vec::new();
        while let Ok(Outgoing::Frame { data, .. }) = rx.try_recv() {
            let (_, message) = commonlab_protocol::decode_v1(data).unwrap();
            let content: serde_json::Value = serde_json::from_slice(&message.content).unwrap();
            texts.push(content["text"].as_str().unwrap().to_owned());
        }
        texts
    }

    #[test]
    fn a_recovered_kernel_keeps_messages_for_clients_from_before_the_restart() {
        let mut hub = hub();
        hub.set_recovered();
        // A client that connected after the restart gets what is sent live.
        let (_, _, mut live) = hub.connect("new".into(), WireProtocol::V1);
        for text in ["a", "b"] {
            hub.keep_for_absent_session("old");
            hub.broadcast(&mut kernel_message("old", text));
        }
        assert_eq!(texts(&mut live), ["a", "b"]);
        // The session from before gets them when it comes back, in the framing it speaks now.
        let (_, _, mut back) = hub.connect("old".into(), WireProtocol::V1);
        assert_eq!(texts(&mut back), ["a", "b"]);
        // Without the restart, a session never seen here is not buffered for.
        let mut hub = self::hub();
        hub.keep_for_absent_session("old");
        hub.broadcast(&mut kernel_message("old", "c"));
        let (_, _, mut back) = hub.connect("old".into(), WireProtocol::V1);
        assert!(texts(&mut back).is_empty());
    }

    #[test]
    fn a_recovered_kernel_buffers_for_a_bounded_number_of_sessions() {
        let mut hub = hub();
        hub.set_recovered();
        for i in 0..RECOVERED_SESSIONS_MAX + 5 {
            hub.keep_for_absent_session(&format!("s{i}"));
        }
        assert_eq!(hub.buffers.len(), RECOVERED_SESSIONS_MAX);
    }

    #[test]
    fn what_a_closing_client_never_wrote_goes_to_its_session_wherever_it_is() {
        // Away: buffered, and replayed when the session comes back.
        let mut hub = hub();
        let (old, _, _rx) = hub.connect("s".into(), WireProtocol::Legacy);
        hub.disconnect_with_unsent(old, vec![frame("a"), frame("b")]);
        let (_, _, mut rx) = hub.connect("s".into(), WireProtocol::Legacy);
        for expected in ["a", "b"] {
            match rx.try_recv() {
                Ok(Outgoing::Frame { data, .. }) => assert_eq!(data, expected),
                other => panic!("expected {expected}, got {other:?}"),
            }
        }
        // Already back (the old socket's close was read after the new one connected): handed
        // to the new connection, not dropped.
        let mut hub = self::hub();
        let (old, _, _old_rx) = hub.connect("s".into(), WireProtocol::Legacy);
        let (_, _, mut rx) = hub.connect("s".into(), WireProtocol::Legacy);
        hub.disconnect_with_unsent(old, vec![frame("late")]);
        match rx.try_recv() {
            Ok(Outgoing::Frame { data, .. }) => assert_eq!(data, "late"),
            other => panic!("expected the late frame, got {other:?}"),
        }
    }
}
