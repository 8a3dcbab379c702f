//! The ZeroMQ side of one kernel: connects the five channels of a connection file, signs what it
//! sends, verifies what it receives, and hands every received message to its owner in order per
//! channel.
//!
//! This crate knows nothing of HTTP, users, sessions or policy; it does not start or stop kernel
//! processes (that is the runtime backend's job). Every task it spawns is owned by the
//! [`KernelChannels`] value and aborted when it is dropped.

use std::time::Duration;

use bytes::Bytes;
use commonlab_protocol::{Channel, ConnectionInfo, RawMessage, Signer};
use tokio::sync::Mutex;
use tokio::task::JoinSet;
use zeromq::util::PeerIdentity;
use zeromq::{
    DealerSendHalf, DealerSocket, ReqSocket, Socket, SocketOptions, SocketRecv, SocketSend,
    SubSocket, ZmqMessage,
};

/// Why talking to a kernel failed.
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    #[error("could not connect to the kernel's {channel} channel at {endpoint} within {waited_ms} ms: {detail}")]
    Connect {
        channel: &'static str,
        endpoint: String,
        waited_ms: u128,
        detail: String,
    },
    #[error("sending on the kernel's {channel} channel failed: {detail}")]
    Send {
        channel: &'static str,
        detail: String,
    },
    #[error("channel {0} cannot be used to send")]
    NotSendable(&'static str),
}

/// One message received from the kernel, or a frame sequence that was rejected.
#[derive(Debug)]
pub enum Incoming {
    Message {
        channel: Channel,
        message: RawMessage,
    },
    /// A message that failed signature or framing checks; it is dropped, this says why.
    Rejected { channel: Channel, reason: String },
    /// A receive loop ended (the socket closed).
    Closed { channel: Channel },
}

/// Where received messages go: called on the receiving task, in order per channel; returns
/// false to stop receiving. Handing messages over by a call rather than a channel saves a task
/// switch per message on the relay path.
pub type IncomingSink = std::sync::Arc<dyn Fn(Incoming) -> bool + Send + Sync>;

/// Sends signed messages to a kernel. Cheap to clone.
#[derive(Clone)]
pub struct KernelSender {
    signer: Signer,
    shell: std::sync::Arc<Mutex<DealerSendHalf>>,
    control: std::sync::Arc<Mutex<DealerSendHalf>>,
    stdin: std::sync::Arc<Mutex<DealerSendHalf>>,
}

impl KernelSender {
    /// Signs and sends `message` on `channel` (shell, control or stdin).
    pub async fn send(&self, channel: Channel, message: &RawMessage) -> Result<(), KernelError> {
        let socket = match channel {
            Channel::Shell => &self.shell,
            Channel::Control => &self.control,
            Channel::Stdin => &self.stdin,
            other => return Err(KernelError::NotSendable(other.as_str())),
        };
        let frames = self.signer.to_frames(&[], message);
        let zmq_message = ZmqMessage::try_from(frames).expect("a signed message always has frames");
        socket
            .lock()
            .await
            .send(zmq_message)
            .await
            .map_err(|e| KernelError::Send {
                channel: channel.as_str(),
                detail: e.to_string(),
            })
    }
}

/// The open channels of one kernel. Dropping it closes the sockets and stops its tasks.
pub struct KernelChannels {
    pub sender: KernelSender,
    tasks: JoinSet<()>,
}

impl KernelChannels {
    /// Connects to all channels, retrying until `timeout` while the kernel binds its sockets.
    /// Received messages go to `incoming`, bounded so a flood from the kernel slows the kernel
    /// rather than growing memory.
    ///
    /// Shell, control and stdin connect as `identity`. The kernel sends each reply to the
    /// identity that asked, so a client that connects again as the same identity (a restarted
    /// server) receives the replies to requests its previous connection made.
    pub async fn connect(
        info: &ConnectionInfo,
        identity: &str,
        timeout: Duration,
        incoming: IncomingSink,
    ) -> Result<KernelChannels, KernelError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let signer = Signer::new(info.key.as_bytes());
        let mut iopub = SubSocket::new();
        connect_with_retry(&mut iopub, info, Channel::Iopub, deadline).await?;
        iopub
            .subscribe("")
            .await
            .map_err(|e| KernelError::Connect {
                channel: "iopub",
                endpoint: info.endpoint(Channel::Iopub),
                waited_ms: 0,
                detail: e.to_string(),
            })?;
        let mut tasks = JoinSet::new();
        let mut dealers = Vec::new();
        // Shell and stdin must share one identity: the kernel addresses `input_request` on its
        // stdin ROUTER to the identity that sent the `execute_request` on shell.
        let identity = PeerIdentity::try_from(Bytes::from(identity.to_owned())).map_err(|e| {
            KernelError::Connect {
                channel: "shell",
                endpoint: info.endpoint(Channel::Shell),
                waited_ms: 0,
                detail: format!("the identity {identity:?} cannot be used: {e}"),
            }
        })?;
        for channel in [Channel::Shell, Channel::Control, Channel::Stdin] {
            let mut options = SocketOptions::default();
            options.peer_identity(identity.clone());
            let mut socket = DealerSocket::with_options(options);
            connect_with_retry(&mut socket, info, channel, deadline).await?;
            let (send_half, mut recv_half) = socket.split();
            let tx = incoming.clone();
            let signer = signer.clone();
            tasks.spawn(async move {
                loop {
                    let received = recv_half.recv().await;
                    if !forward(&signer, channel, received, &tx).await {
                        break;
                    }
                }
            });
            dealers.push(std::sync::Arc::new(Mutex::new(send_half)));
        }
        {
            let tx = incoming.clone();
            let signer = signer.clone();
            tasks.spawn(async move {
                loop {
                    let received = iopub.recv().await;
                    if !forward(&signer, Channel::Iopub, received, &tx).await {
                        break;
                    }
                }
            });
        }
        let stdin = dealers.pop().expect("three dealers");
        let control = dealers.pop().expect("three dealers");
        let shell = dealers.pop().expect("three dealers");
        Ok(KernelChannels {
            sender: KernelSender {
                signer,
                shell,
                control,
                stdin,
            },
            tasks,
        })
    }

    /// Stops the receive loops and closes the sockets.
    pub async fn close(mut self) {
        self.tasks.shutdown().await;
    }
}

async fn forward(
    signer: &Signer,
    channel: Channel,
    received: zeromq::ZmqResult<ZmqMessage>,
    tx: &IncomingSink,
) -> bool {
    let item = match received {
        Ok(zmq_message) => match signer.from_frames(zmq_message.into_vec()) {
            Ok((_identities, message)) => Incoming::Message { channel, message },
            Err(e) => Incoming::Rejected {
                channel,
                reason: e.to_string(),
            },
        },
        Err(e) => {
            tracing::debug!(channel = channel.as_str(), error = %e, "kernel channel closed");
            tx(Incoming::Closed { channel });
            return false;
        }
    };
    tx(item)
}

async fn connect_with_retry<S: Socket>(
    socket: &mut S,
    info: &ConnectionInfo,
    channel: Channel,
    deadline: tokio::time::Instant,
) -> Result<(), KernelError> {
    let endpoint = info.endpoint(channel);
    let started = tokio::time::Instant::now();
    let fail = |detail: String| KernelError::Connect {
        channel: channel.as_str(),
        endpoint: endpoint.clone(),
        waited_ms: started.elapsed().as_millis(),
        detail,
    };
    // The ZeroMQ connect retries a refused port with a backoff that starts at 50 ms and doubles,
    // which adds up to a few hundred milliseconds while a kernel is still importing. Waiting for
    // the port to listen first, in short steps, lets the connect succeed at once.
    while !listening(&endpoint).await {
        if tokio::time::Instant::now() >= deadline {
            return Err(fail("the kernel never started listening".into()));
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
    match tokio::time::timeout(remaining, socket.connect(&endpoint)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(fail(e.to_string())),
        Err(_) => Err(fail("timed out".into())),
    }
}

/// Whether something accepts connections at a `tcp://` or `ipc://` endpoint.
async fn listening(endpoint: &str) -> bool {
    if let Some(address) = endpoint.strip_prefix("tcp://") {
        tokio::net::TcpStream::connect(address).await.is_ok()
    } else if let Some(path) = endpoint.strip_prefix("ipc://") {
        tokio::net::UnixStream::connect(path).await.is_ok()
    } else {
        true
    }
}

/// Sends `request` on the kernel's control channel over a connection of its own (not the
/// identity of any [`KernelChannels`]) and waits up to `timeout` for the reply to it.
///
/// ipykernel answers on control while a cell runs; it does not while the cell's native code
/// holds the interpreter lock, and then its sockets do not take up new connections or let go
/// of closed ones either. An answer therefore also says that a connection closed before (by a
/// server that was killed) has been let go of.
pub async fn ask_control(
    info: &ConnectionInfo,
    request: &RawMessage,
    timeout: Duration,
) -> Option<RawMessage> {
    let signer = Signer::new(info.key.as_bytes());
    let msg_id = request.parse_header().ok()?.msg_id;
    let ask = async {
        let mut socket = DealerSocket::new();
        socket
            .connect(&info.endpoint(Channel::Control))
            .await
            .ok()?;
        let frames = signer.to_frames(&[], request);
        socket.send(ZmqMessage::try_from(frames).ok()?).await.ok()?;
        loop {
            let received = socket.recv().await.ok()?;
            let Ok((_, reply)) = signer.from_frames(received.into_vec()) else {
                continue;
            };
            if reply.parent_ids().0.as_deref() == Some(msg_id.as_str()) {
                return Some(reply);
            }
        }
    };
    tokio::time::timeout(timeout, ask).await.ok().flatten()
}

/// Sends one heartbeat ping and waits up to `timeout` for the echo. A fresh REQ socket per
/// probe keeps a lost reply from wedging the REQ state machine. The kernel echoes on a thread
/// of its own, so a kernel busy running a cell still answers.
pub async fn heartbeat(info: &ConnectionInfo, timeout: Duration) -> bool {
    let probe = async {
        let mut socket = ReqSocket::new();
        socket
            .connect(&info.endpoint(Channel::Heartbeat))
            .await
            .ok()?;
        socket
            .send(ZmqMessage::from(Bytes::from_static(b"ping")))
            .await
            .ok()?;
        socket.recv().await.ok()
    };
    matches!(tokio::time::timeout(timeout, probe).await, Ok(Some(_)))
}
