//! The listener: accepts TCP connections and serves HTTP/1.1 on them (with WebSocket upgrades)
//! under limits that keep slow, idle or half-open connections from exhausting the server.
//!
//! - **Headers** must arrive within [`ConnectionLimits::header_read_timeout`], counted from
//!   the moment the server waits for a request: on a new connection and between requests on a
//!   kept-alive one. A connection that does not finish its headers in time is closed.
//! - **A request body** must arrive within [`ConnectionLimits::body_read_timeout`], extended
//!   by one second for every [`ConnectionLimits::body_read_rate_bytes_per_s_min`] bytes
//!   received, so large uploads at a reasonable pace are never cut while a trickled body is.
//!   A request whose body is late is answered `408` (`request_body_timeout`) and its
//!   connection closed.
//! - **Unauthenticated connections** are capped: a connection counts as unauthenticated until
//!   one of its requests carries a valid credential (see [`authenticated`]). When a new
//!   connection would exceed [`ConnectionLimits::unauthenticated_connections_max`], the
//!   oldest unauthenticated one is closed. A flood of connections that never authenticate so
//!   only ever evicts itself; authenticated connections are never counted or evicted.
//! - **Closing** a connection the client may still be sending on (a body left unread, a
//!   WebSocket closed by the server) shuts down the server's side first and discards what
//!   still arrives for a moment, so the client reads the server's last response or close
//!   frame instead of a TCP reset.
//!
//! Per request this costs an atomic load and, for a request with a body, one small
//! allocation; the rest happens once per connection.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{header, HeaderValue, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use bytes::Bytes;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tower::ServiceExt;

use crate::ApiError;

/// How long a connection the server closes while the client may still be sending is drained
/// before it is dropped.
const LINGER: Duration = Duration::from_secs(5);

/// Limits on connections, with units in their names.
#[derive(Debug, Clone)]
pub struct ConnectionLimits {
    /// Time a client has to send a request's headers, from when the server starts waiting
    /// for them (a new connection, or the end of the previous response).
    pub header_read_timeout: Duration,
    /// Time a client has to send a request body, before the allowance for its size.
    pub body_read_timeout: Duration,
    /// Every this many bytes of body received add one second to the body's time; 0 adds none.
    pub body_read_rate_bytes_per_s_min: u64,
    /// Connections open at once that have not yet sent a request with a valid credential.
    pub unauthenticated_connections_max: usize,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            header_read_timeout: Duration::from_secs(30),
            body_read_timeout: Duration::from_secs(60),
            body_read_rate_bytes_per_s_min: 1024,
            unauthenticated_connections_max: 1024,
        }
    }
}

/// Serves `app` on `listener` until `shutdown` completes, then lets the requests in flight
/// finish (WebSockets already handed to their handlers live on) and returns.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()> + Send,
) -> io::Result<()> {
    let unauthenticated = Arc::new(Unauthenticated::new(limits.unauthenticated_connections_max));
    let limits = Arc::new(limits);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        let (stream, _peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    accept_failed(e, &unauthenticated).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(error = %e, "could not set TCP_NODELAY");
        }
        let admission = unauthenticated.admit();
        tokio::spawn(serve_connection(
            stream,
            app.clone(),
            limits.clone(),
            admission,
            stop_rx.clone(),
        ));
    }
    drop(listener);
    let _ = stop_tx.send(true);
    drop(stop_rx);
    // Every connection task holds a receiver; all are gone once the last connection ends.
    stop_tx.closed().await;
    Ok(())
}

/// An accept that failed: a connection that died in the backlog is skipped; running out of
/// descriptors (or memory) closes the oldest unauthenticated connection to make room, then
/// waits a moment so the loop does not spin.
async fn accept_failed(error: io::Error, unauthenticated: &Unauthenticated) {
    use io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(
        error.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    ) {
        return;
    }
    let evicted = unauthenticated.evict_oldest();
    if unauthenticated.accept_error_due() {
        tracing::error!(error = %error, closed_unauthenticated = evicted, "could not accept a connection (raise the open files limit, or lower server.unauthenticated_connections_max)");
    }
    let pause = if evicted {
        Duration::from_millis(10)
    } else {
        Duration::from_secs(1)
    };
    tokio::time::sleep(pause).await;
}

async fn serve_connection(
    stream: TcpStream,
    app: Router,
    limits: Arc<ConnectionLimits>,
    admission: Admission,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let slot = admission.slot.clone();
    let io = TokioIo::new(Lingering {
        stream: Some(stream),
        slot: slot.clone(),
    });
    let service = {
        let limits = limits.clone();
        hyper::service::service_fn(move |request| {
            handle(app.clone(), limits.clone(), slot.clone(), request)
        })
    };
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .serve_connection(io, service)
        .with_upgrades();
    tokio::pin!(connection);
    let mut stopping = false;
    loop {
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "connection ended");
                }
                break;
            }
            () = admission.slot.evict.notified() => {
                // Dropping the connection closes it; evicted, it does not linger.
                break;
            }
            changed = stop.changed(), if !stopping => {
                stopping = true;
                if changed.is_ok() {
                    connection.as_mut().graceful_shutdown();
                }
            }
        }
    }
}

/// One request: its body gets a deadline, and while the connection is unauthenticated the
/// request carries the handle that lets the authentication mark it.
async fn handle(
    app: Router,
    limits: Arc<ConnectionLimits>,
    slot: Arc<Slot>,
    request: Request<Incoming>,
) -> Result<Response, Infallible> {
    let (mut parts, body) = request.into_parts();
    if !slot.authenticated.load(Ordering::Relaxed) {
        parts.extensions.insert(Unproven(slot));
    }
    let late = if hyper::body::Body::is_end_stream(&body) {
        None
    } else {
        Some(Arc::new(AtomicBool::new(false)))
    };
    let body = match &late {
        None => Body::new(body),
        Some(late) => Body::new(DeadlineBody {
            inner: body,
            start: tokio::time::Instant::now(),
            grace: limits.body_read_timeout,
            rate: limits.body_read_rate_bytes_per_s_min,
            received: 0,
            sleep: None,
            late: late.clone(),
        }),
    };
    let response = match app.oneshot(Request::from_parts(parts, body)).await {
        Ok(response) => response,
        Err(never) => match never {},
    };
    if late.is_some_and(|late| late.load(Ordering::Relaxed)) {
        let mut response = ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "request_body_timeout",
            format!(
                "The request body did not arrive in time: the server waits {} s for a body, plus 1 s for every {} bytes received (server.body_read_timeout_s, server.body_read_rate_bytes_per_s_min). Send the body without pausing, or upload large files in chunks",
                limits.body_read_timeout.as_secs(),
                limits.body_read_rate_bytes_per_s_min
            ),
        )
        .into_response();
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        return Ok(response);
    }
    Ok(response)
}

/// Marks the request's connection authenticated: it stops counting against
/// [`ConnectionLimits::unauthenticated_connections_max`] and is never evicted. Called by
/// whatever accepted the request's credential.
pub(crate) fn authenticated(extensions: &axum::http::Extensions) {
    if let Some(Unproven(slot)) = extensions.get::<Unproven>() {
        slot.authenticate();
    }
}

/// In a request's extensions while its connection is unauthenticated.
#[derive(Clone)]
struct Unproven(Arc<Slot>);

/// The unauthenticated connections, oldest first.
struct Unauthenticated {
    connections: Mutex<BTreeMap<u64, Arc<Slot>>>,
    next_id: AtomicU64,
    max: usize,
    /// Connections closed by the server and still draining (see [`Lingering`]).
    lingering: AtomicUsize,
    /// Evictions not yet logged, and when they last were.
    evictions: Mutex<(u64, Option<Instant>)>,
    /// When a failed accept was last logged (at most every 10 s).
    accept_error_logged: Mutex<Option<Instant>>,
}

impl Unauthenticated {
    fn new(max: usize) -> Unauthenticated {
        Unauthenticated {
            connections: Mutex::new(BTreeMap::new()),
            next_id: AtomicU64::new(0),
            max: max.max(1),
            lingering: AtomicUsize::new(0),
            evictions: Mutex::new((0, None)),
            accept_error_logged: Mutex::new(None),
        }
    }

    /// Counts a new connection in, closing the oldest unauthenticated one when it would
    /// exceed the cap.
    fn admit(self: &Arc<Self>) -> Admission {
        let slot = Arc::new(Slot {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            set: self.clone(),
            authenticated: AtomicBool::new(false),
            evicted: AtomicBool::new(false),
            evict: tokio::sync::Notify::new(),
        });
        let evicted = {
            let mut connections = self.connections.lock().expect("not poisoned");
            let mut evicted = 0;
            while connections.len() >= self.max {
                let Some((_, oldest)) = connections.pop_first() else {
                    break;
                };
                oldest.evicted.store(true, Ordering::Relaxed);
                oldest.evict.notify_one();
                evicted += 1;
            }
            connections.insert(slot.id, slot.clone());
            evicted
        };
        if evicted > 0 {
            self.evicted(evicted);
        }
        Admission { slot }
    }

    /// Closes the oldest unauthenticated connection; whether there was one.
    fn evict_oldest(&self) -> bool {
        let oldest = self.connections.lock().expect("not poisoned").pop_first();
        let Some((_, oldest)) = oldest else {
            return false;
        };
        oldest.evicted.store(true, Ordering::Relaxed);
        oldest.evict.notify_one();
        self.evicted(1);
        true
    }

    /// Logs evictions, at most once a minute.
    fn evicted(&self, count: u64) {
        let mut evictions = self.evictions.lock().expect("not poisoned");
        evictions.0 += count;
        let now = Instant::now();
        if evictions
            .1
            .is_none_or(|last| now.duration_since(last) >= Duration::from_secs(60))
        {
            tracing::warn!(
                closed = evictions.0,
                max = self.max,
                "closed the oldest unauthenticated connections: more were open than server.unauthenticated_connections_max"
            );
            *evictions = (0, Some(now));
        }
    }

    /// Whether a failed accept should be logged now (at most every 10 s).
    fn accept_error_due(&self) -> bool {
        let now = Instant::now();
        let mut last = self.accept_error_logged.lock().expect("not poisoned");
        let due = last.is_none_or(|last| now.duration_since(last) >= Duration::from_secs(10));
        if due {
            *last = Some(now);
        }
        due
    }

    fn remove(&self, id: u64) {
        self.connections.lock().expect("not poisoned").remove(&id);
    }
}

/// One connection's standing.
struct Slot {
    id: u64,
    set: Arc<Unauthenticated>,
    authenticated: AtomicBool,
    evicted: AtomicBool,
    evict: tokio::sync::Notify,
}

impl Slot {
    fn authenticate(&self) {
        if !self.authenticated.swap(true, Ordering::Relaxed) {
            self.set.remove(self.id);
        }
    }
}

/// Held by the connection's task; the connection stops counting when it ends.
struct Admission {
    slot: Arc<Slot>,
}

impl Drop for Admission {
    fn drop(&mut self) {
        if !self.slot.authenticated.load(Ordering::Relaxed) {
            self.slot.set.remove(self.slot.id);
        }
    }
}

/// A request body that fails once it is late (see [`ConnectionLimits::body_read_timeout`]);
/// `late` tells the request's handler so it can answer 408.
struct DeadlineBody {
    inner: Incoming,
    start: tokio::time::Instant,
    grace: Duration,
    rate: u64,
    received: u64,
    /// Armed the first time the body has to be waited for.
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
    late: Arc<AtomicBool>,
}

/// The error a late body ends with.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive in time")]
struct BodyTimeout;

impl DeadlineBody {
    fn deadline(&self) -> tokio::time::Instant {
        let allowance = match self.rate {
            0 => Duration::ZERO,
            rate => Duration::from_secs(self.received / rate),
        };
        self.start + self.grace + allowance
    }
}

impl hyper::body::Body for DeadlineBody {
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        if this.late.load(Ordering::Relaxed) {
            return Poll::Ready(Some(Err(BodyTimeout.into())));
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.received += data.len() as u64;
                }
                return Poll::Ready(Some(Ok(frame)));
            }
            Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => return Poll::Ready(None),
            Poll::Pending => {}
        }
        let deadline = this.deadline();
        let sleep = this
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if sleep.deadline() != deadline {
            sleep.as_mut().reset(deadline);
        }
        if sleep.as_mut().poll(cx).is_ready() {
            this.late.store(true, Ordering::Relaxed);
            return Poll::Ready(Some(Err(BodyTimeout.into())));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The connection's socket. When hyper (or a WebSocket handler) drops it while the client may
/// still be sending, it is shut down for writing and drained for up to [`LINGER`] on its own
/// task, so what the server sent last reaches the client ahead of a reset. An evicted
/// connection, or one dropped while too many already linger, is closed at once.
struct Lingering {
    stream: Option<TcpStream>,
    slot: Arc<Slot>,
}

impl Lingering {
    fn stream(&mut self) -> &mut TcpStream {
        self.stream.as_mut().expect("present until dropped")
    }
}

impl AsyncRead for Lingering {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(self.stream()).poll_read(cx, buf)
    }
}

impl AsyncWrite for Lingering {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(self.stream()).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(self.stream()).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.as_ref().is_some_and(|s| s.is_write_vectored())
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(self.stream()).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(self.stream()).poll_shutdown(cx)
    }
}

impl Drop for Lingering {
    fn drop(&mut self) {
        let Some(stream) = self.stream.take() else {
            return;
        };
        if self.slot.evicted.load(Ordering::Relaxed) {
            return;
        }
        // The client closed its side, or the socket failed: nothing can be lost.
        let mut probe = [0u8; 1];
        match stream.try_read(&mut probe) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(_) => return,
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let set = self.slot.set.clone();
        if set.lingering.fetch_add(1, Ordering::Relaxed) >= set.max {
            set.lingering.fetch_sub(1, Ordering::Relaxed);
            return;
        }
        runtime.spawn(async move {
            linger(stream).await;
            set.lingering.fetch_sub(1, Ordering::Relaxed);
        });
    }
}

/// Ends the server's side and discards what the client still sends, until it closes its own
/// side or [`LINGER`] passes.
async fn linger(mut stream: TcpStream) {
    let _ = tokio::time::timeout(LINGER, async {
        if stream.shutdown().await.is_err() {
            return;
        }
        let mut discard = [0u8; 8192];
        while let Ok(n) = stream.read(&mut discard).await {
            if n == 0 {
                break;
            }
        }
    })
    .await;
}
