//! Connections cannot exhaust the server: half-open connections (headers never finished) and
//! slow bodies are timed out, unauthenticated connections are capped without starving
//! authenticated users, the open files limit is raised at start, and an oversize WebSocket
//! message gets close code 1009. Each test runs the real `commonlab serve` in accounts mode
//! with short timeouts from its config, and opens raw TCP connections to it.
//!
//! The server is started with the usual default soft limit of 1,024 open files (as a login
//! shell gives it), so that a flood of 1,100 connections would exhaust a server that neither
//! raised its limit nor closed them (`prlimit` starts it so).

mod support;

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use nix::sys::resource::{getrlimit, setrlimit, Resource};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite;

use support::*;

/// One test at a time: each opens more connections than the default limit allows.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A login shell's default soft limit, which the server starts with.
const DEFAULT_OPEN_FILES: u64 = 1024;
/// Enough for the test's own side of every connection it opens.
const TEST_OPEN_FILES: u64 = 8192;

/// Starts the server (through `prlimit`) with the soft open files limit at
/// [`DEFAULT_OPEN_FILES`], and the hard one too when `hard_too` (so that the server cannot
/// raise it); gives the test process room for its own connections.
fn start_with_default_open_files(python: &std::path::Path, config: &str, hard_too: bool) -> Server {
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    let wanted = TEST_OPEN_FILES.max(soft).min(hard);
    setrlimit(Resource::RLIMIT_NOFILE, wanted, hard).unwrap();
    assert!(
        wanted >= 2 * HALF_OPEN as u64 + 256,
        "the test needs a hard open files limit of at least {} (it is {hard})",
        2 * HALF_OPEN + 256
    );
    let server_hard = if hard_too { DEFAULT_OPEN_FILES } else { hard };
    let nofile = format!("--nofile={DEFAULT_OPEN_FILES}:{server_hard}");
    assert!(
        std::path::Path::new("/usr/bin/prlimit").is_file(),
        "the test starts the server with /usr/bin/prlimit (Debian's util-linux)"
    );
    start_server_under(
        &["/usr/bin/prlimit", &nofile, "--"],
        python,
        random_uid_base(),
        config,
        &[("alice", &[])],
    )
}

/// A connection that sends nothing, or the start of a request whose headers never end.
async fn half_open(port: u16, partial_headers: bool) -> TcpStream {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    if partial_headers {
        stream
            .write_all(b"GET /hub/login HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/html\r\n")
            .await
            .unwrap();
    }
    stream
}

/// Everything the server sends until it closes the connection, or `None` when it keeps it
/// open past `bound`.
async fn until_closed(stream: &mut TcpStream, bound: Duration) -> Option<Vec<u8>> {
    let mut received = Vec::new();
    let deadline = tokio::time::Instant::now() + bound;
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(received),
            Ok(Ok(n)) => received.extend_from_slice(&buf[..n]),
        }
    }
}

/// Whether the server has neither sent anything on nor closed the connection so far (asked of
/// the socket itself, not of the runtime's idea of its readiness).
fn still_open(stream: TcpStream) -> bool {
    let stream = stream.into_std().unwrap();
    stream.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 1];
    matches!(stream.peek(&mut buf), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
}

/// Reads one response (headers and a `Content-Length` body) from a kept-alive connection.
async fn read_response(stream: &mut TcpStream) -> (u16, String) {
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = received.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = tokio::time::timeout(Duration::from_secs(30), stream.read(&mut buf))
            .await
            .expect("a response within 30 s")
            .unwrap();
        assert!(n > 0, "connection closed before a response");
        received.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&received[..head_end]).to_string();
    let status: u16 = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    let length: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().parse().unwrap())
        })
        .unwrap_or(0);
    while received.len() < head_end + length {
        let n = stream.read(&mut buf).await.unwrap();
        assert!(n > 0, "connection closed inside a response");
        received.extend_from_slice(&buf[..n]);
    }
    let body = String::from_utf8_lossy(&received[head_end..head_end + length]).to_string();
    (status, body)
}

fn status_request(token: &str) -> String {
    format!("GET /user/alice/api/status HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: token {token}\r\n\r\n")
}

/// A normal authenticated API call on a fresh connection, bounded so that a server that no
/// longer accepts connections fails the test rather than hanging it.
async fn authenticated_status(port: u16, token: &str) -> u16 {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    match http
        .get(format!("http://127.0.0.1:{port}/user/alice/api/status"))
        .header("Authorization", format!("token {token}"))
        .send()
        .await
    {
        Ok(response) => response.status().as_u16(),
        Err(e) => panic!("the server did not answer an authenticated request: {e}"),
    }
}

/// The server process's soft and hard open files limits.
fn open_files_limits(pid: u32) -> (String, String) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    let fields: Vec<&str> = line.split_whitespace().collect();
    (fields[3].to_owned(), fields[4].to_owned())
}

const HALF_OPEN: usize = 1_100;
const SLOW_BODIES: usize = 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_open_and_slow_connections_neither_exhaust_the_server_nor_stay_open() {
    let _serial = SERIAL.lock().await;
    let Some(python) = prerequisites() else {
        return;
    };
    let server = start_with_default_open_files(
        &python,
        "[server]\nheader_read_timeout_s = 2\nbody_read_timeout_s = 3\nunauthenticated_connections_max = 256\n",
        false,
    );
    let alice = server.api("alice");
    wait_ready(&alice).await;
    let port = server.port;

    // Authenticated uploads that stall: the server has accepted the credential (it asks for
    // the body with `100 Continue`) when part of the body has been sent and the rest never is.
    let mut stalled_uploads = Vec::new();
    for i in 0..SLOW_BODIES {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let head = format!(
            "PUT /user/alice/api/contents/slow-{i}.txt HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: token {}\r\nContent-Type: application/json\r\nContent-Length: 100000\r\nExpect: 100-continue\r\n\r\n",
            alice.token
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        let mut seen = Vec::new();
        let mut buf = [0u8; 256];
        while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = tokio::time::timeout(Duration::from_secs(30), stream.read(&mut buf))
                .await
                .expect("100 Continue within 30 s")
                .unwrap();
            assert!(n > 0, "closed before 100 Continue");
            seen.extend_from_slice(&buf[..n]);
        }
        assert!(
            String::from_utf8_lossy(&seen).contains(" 100 "),
            "{}",
            String::from_utf8_lossy(&seen)
        );
        stream
            .write_all(br#"{"type": "file", "format": "text", "content": "abc"#)
            .await
            .unwrap();
        stalled_uploads.push(stream);
    }

    // The flood: more half-open connections than the default open files limit.
    let mut flood = Vec::with_capacity(HALF_OPEN);
    for i in 0..HALF_OPEN {
        flood.push(half_open(port, i % 2 == 1).await);
    }

    // Unauthenticated requests whose bodies stall (a login form never finished).
    let mut stalled_logins = Vec::new();
    for _ in 0..SLOW_BODIES {
        let mut stream = TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("the server still accepts connections");
        stream
            .write_all(b"POST /hub/login HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 1000\r\n\r\nusername=al")
            .await
            .unwrap();
        stalled_logins.push(stream);
    }

    // A user is still served.
    assert_eq!(authenticated_status(port, &alice.token).await, 200);

    // An upload sent at a steady pace is not cut, though it takes longer than
    // body_read_timeout_s: each KiB received adds a second.
    let steady = {
        let token = alice.token.clone();
        tokio::spawn(async move {
            let content = "x".repeat(8000);
            let body = format!(r#"{{"type": "file", "format": "text", "content": "{content}"}}"#);
            let mut stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
            let head = format!("PUT /user/alice/api/contents/steady.txt HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: token {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n", body.len());
            stream.write_all(head.as_bytes()).await.unwrap();
            // Six parts a second apart: the last arrives about 5 s in.
            for (i, part) in body.as_bytes().chunks(1400).enumerate() {
                if i > 0 {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                stream.write_all(part).await.unwrap();
            }
            read_response(&mut stream).await
        })
    };

    // Every stalled body is answered 408 and its connection closed; every half-open
    // connection is closed. The bound is generous: the timeouts are 2 and 3 s.
    let bound = Duration::from_secs(60);
    let bodies = futures_util::future::join_all(
        stalled_uploads
            .iter_mut()
            .chain(stalled_logins.iter_mut())
            .map(|stream| until_closed(stream, bound)),
    )
    .await;
    for (i, received) in bodies.into_iter().enumerate() {
        let received = received.unwrap_or_else(|| panic!("stalled body {i} was never answered"));
        let text = String::from_utf8_lossy(&received);
        assert!(
            text.contains("408 Request Timeout") && text.contains("request_body_timeout"),
            "stalled body {i} got: {text}"
        );
    }
    let closed =
        futures_util::future::join_all(flood.iter_mut().map(|s| until_closed(s, bound))).await;
    let still_open = closed.iter().filter(|c| c.is_none()).count();
    assert_eq!(
        still_open, 0,
        "{still_open} of {HALF_OPEN} half-open connections were not closed"
    );
    assert!(
        closed
            .iter()
            .all(|c| c.as_ref().is_some_and(|r| r.is_empty())),
        "a half-open connection got a response"
    );

    let (status, body) = steady.await.unwrap();
    assert_eq!(status, 201, "the steady upload: {body}");

    // Still serving, and the limit was raised and said so.
    assert_eq!(authenticated_status(port, &alice.token).await, 200);
    let (soft, hard) = open_files_limits(server.child.id());
    assert_eq!(
        soft, hard,
        "the soft open files limit is raised to the hard one"
    );
    let log = std::fs::read_to_string(server.dir.path().join("server.log")).unwrap();
    assert!(
        log.contains(&format!(
            "raised the open files limit from {DEFAULT_OPEN_FILES} to {hard}"
        )),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthenticated_connections_beyond_the_cap_close_oldest_first_and_users_stay_connected() {
    let _serial = SERIAL.lock().await;
    let Some(python) = prerequisites() else {
        return;
    };
    // Timeouts long enough that only the cap closes anything during the test, and an open
    // files limit the server cannot raise: the cap alone must keep it serving.
    let server = start_with_default_open_files(
        &python,
        "[server]\nheader_read_timeout_s = 600\nbody_read_timeout_s = 600\nunauthenticated_connections_max = 50\n",
        true,
    );
    let alice = server.api("alice");
    wait_ready(&alice).await;
    let port = server.port;

    // A user's kept-alive connection, authenticated by its first request.
    let mut user = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    user.write_all(status_request(&alice.token).as_bytes())
        .await
        .unwrap();
    assert_eq!(read_response(&mut user).await.0, 200);

    let mut flood = Vec::with_capacity(HALF_OPEN);
    for i in 0..HALF_OPEN {
        flood.push(half_open(port, i % 2 == 0).await);
    }
    // All but the 50 newest are closed; closing the last of them is what admitting the
    // newest does, so the 50 newest must then be open.
    let oldest = HALF_OPEN - 50;
    let started = Instant::now();
    let closed = futures_util::future::join_all(
        flood[..oldest]
            .iter_mut()
            .map(|s| until_closed(s, Duration::from_secs(60))),
    )
    .await;
    let not_closed = closed.iter().filter(|c| c.is_none()).count();
    assert_eq!(
        not_closed,
        0,
        "{not_closed} of the {oldest} oldest unauthenticated connections were still open after {:?}",
        started.elapsed()
    );
    let newest_open = flood
        .split_off(oldest)
        .into_iter()
        .map(still_open)
        .filter(|open| *open)
        .count();
    assert_eq!(newest_open, 50, "the 50 newest stay open");
    let (soft, hard) = open_files_limits(server.child.id());
    assert_eq!(
        (soft.as_str(), hard.as_str()),
        ("1024", "1024"),
        "the server ran with 1,024 open files"
    );

    // The user's connection was not counted, nor closed.
    user.write_all(status_request(&alice.token).as_bytes())
        .await
        .unwrap();
    assert_eq!(read_response(&mut user).await.0, 200);
    // A new user connection, and a new anonymous one, are admitted (each closing the oldest).
    assert_eq!(authenticated_status(port, &alice.token).await, 200);
    let mut anonymous = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    anonymous
        .write_all(b"GET /hub/login HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(read_response(&mut anonymous).await.0, 200);
    let log = std::fs::read_to_string(server.dir.path().join("server.log")).unwrap();
    assert!(
        log.contains("server.unauthenticated_connections_max"),
        "evictions are logged: {log}"
    );
}

/// Reads what the server sends after an oversize message: it must be a close frame with
/// code 1009, then the end of the stream without a reset.
async fn expect_close_1009(
    ws: &mut tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
) {
    use tungstenite::protocol::frame::coding::CloseCode;
    let mut close = None;
    loop {
        match tokio::time::timeout(Duration::from_secs(30), ws.next())
            .await
            .expect("the server answers within 30 s")
        {
            Some(Ok(tungstenite::Message::Close(frame))) => close = Some(frame),
            Some(Ok(_)) => {}
            None | Some(Err(tungstenite::Error::ConnectionClosed)) => break,
            Some(Err(e)) => {
                panic!("the connection failed instead of closing (close so far: {close:?}): {e}")
            }
        }
    }
    let frame = close
        .expect("a close frame")
        .expect("the close frame has a code");
    assert_eq!(frame.code, CloseCode::Size, "{frame:?}");
    assert!(
        frame.reason.contains("server.ws_message_bytes_max"),
        "{frame:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversize_websocket_message_gets_close_1009() {
    use tungstenite::protocol::frame::coding::{Data, OpCode};
    use tungstenite::protocol::frame::Frame;
    let _serial = SERIAL.lock().await;
    let Some(python) = prerequisites() else {
        return;
    };
    let server =
        start_with_default_open_files(&python, "[server]\nws_message_bytes_max = 1048576\n", false);
    let alice = server.api("alice");
    wait_ready(&alice).await;
    let (status, kernel) = alice
        .call(
            reqwest::Method::POST,
            "/user/alice/api/kernels",
            Some(serde_json::json!({})),
        )
        .await;
    assert_eq!(status, 201, "{kernel}");
    let kernel = kernel["id"].as_str().unwrap().to_owned();
    let url = format!(
        "ws://127.0.0.1:{}/user/alice/api/kernels/{kernel}/channels?session_id=s&token={}",
        server.port, alice.token
    );

    // One frame over the limit.
    let (mut ws, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    ws.send(tungstenite::Message::Binary(vec![7u8; 2 << 20].into()))
        .await
        .unwrap();
    expect_close_1009(&mut ws).await;

    // A message over the limit in frames under it.
    let (mut ws, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    let fragment = tungstenite::Bytes::from(vec![7u8; 512 << 10]);
    for i in 0..4 {
        let opcode = OpCode::Data(if i == 0 { Data::Binary } else { Data::Continue });
        ws.feed(tungstenite::Message::Frame(Frame::message(
            fragment.clone(),
            opcode,
            i == 3,
        )))
        .await
        .unwrap();
    }
    ws.flush().await.unwrap();
    expect_close_1009(&mut ws).await;

    // The kernel still runs cells for a well-behaved client.
    let mut client = KernelClient::open(server.port, "alice", &alice.token, &kernel).await;
    let outcome = client.run("print(6 * 7)", Duration::from_secs(60)).await;
    assert_eq!(outcome.stdout.trim(), "42", "{outcome:?}");
}
