//! `/api/kernels/<id>/channels`: the kernel WebSocket, in the v1 binary framing when the client
//! offers `v1.kernel.websocket.jupyter.org`, else the legacy JSON one. A message (or frame)
//! over `server.ws_message_bytes_max` is refused as soon as its header says so: the connection
//! is closed with code 1009 and the rest of the message is discarded unread.

use std::collections::HashMap;

use axum::extract::ws::{close_code, CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::Extension;
use commonlab_manager::{ClientHandle, Kernel, Outgoing, WireProtocol};
use commonlab_protocol::{decode_legacy_binary, decode_legacy_text, decode_v1, V1_SUBPROTOCOL};
use futures_util::{SinkExt, StreamExt};
use std::sync::Arc;
use tokio::sync::mpsc;

use crate::hub::CredentialWatch;
use crate::{ApiError, AppState};

/// The WebSocket close code for a message larger than the endpoint accepts (RFC 6455, 7.4.1).
const CLOSE_MESSAGE_TOO_BIG: u16 = 1009;

/// The close frame to send when reading failed because a message (or one frame of it) was
/// larger than `server.ws_message_bytes_max`: code 1009, naming the limit. Other failures are
/// logged and get none.
pub(super) fn close_for_read_error(error: axum::Error) -> Option<Message> {
    use tungstenite::error::{CapacityError, Error};
    let error = error.into_inner();
    match error.downcast_ref::<Error>() {
        Some(Error::Capacity(CapacityError::MessageTooLong { max_size, .. })) => {
            let reason =
                format!("message larger than {max_size} bytes (server.ws_message_bytes_max)");
            Some(Message::Close(Some(CloseFrame {
                code: CLOSE_MESSAGE_TOO_BIG,
                reason: Utf8Bytes::from(reason),
            })))
        }
        _ => {
            tracing::debug!(error = %error, "websocket read failed");
            None
        }
    }
}

pub(crate) async fn channels(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    watch: Option<Extension<CredentialWatch>>,
    upgrade: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    // In accounts mode the hub hands every upgrade over with its credential to watch; without
    // one the connection could outlive a revocation, so it is not opened.
    let watch = watch.map(|Extension(watch)| watch);
    if state.accounts.is_some() && watch.is_none() {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "not_authenticated",
            "Forbidden: kernel connections are opened through the hub, with one of your API tokens or your login",
        ));
    }
    let kernel = state.kernels.get(&id)?;
    let session_id = query.get("session_id").cloned().unwrap_or_default();
    let upgrade = upgrade
        .protocols([V1_SUBPROTOCOL])
        .max_message_size(state.limits.ws_message_bytes_max)
        .max_frame_size(state.limits.ws_message_bytes_max)
        .read_buffer_size(4096)
        .write_buffer_size(0);
    let protocol = if upgrade.selected_protocol().is_some() {
        WireProtocol::V1
    } else {
        WireProtocol::Legacy
    };
    Ok(upgrade.on_upgrade(move |socket| serve(socket, kernel, session_id, protocol, watch)))
}

async fn serve(
    socket: WebSocket,
    kernel: Arc<Kernel>,
    session_id: String,
    protocol: WireProtocol,
    watch: Option<CredentialWatch>,
) {
    let (handle, rx) = kernel.connect_client(session_id, protocol);
    relay(socket, handle, rx, protocol, watch).await;
}

/// Returns once the connection's credential is revoked (never, without one to watch).
async fn revoked(watch: &mut Option<CredentialWatch>) -> &'static str {
    match watch {
        Some(watch) => watch.revoked().await,
        None => std::future::pending().await,
    }
}

async fn relay(
    socket: WebSocket,
    handle: ClientHandle,
    mut rx: mpsc::UnboundedReceiver<Outgoing>,
    protocol: WireProtocol,
    mut watch: Option<CredentialWatch>,
) {
    let (mut ws_tx, mut ws_rx) = socket.split();
    let mut unsent = Vec::new();
    loop {
        tokio::select! {
            reason = revoked(&mut watch) => {
                tracing::info!(kernel = %handle.kernel().id, reason, "closing a kernel connection whose credential was revoked");
                let close = CloseFrame { code: close_code::POLICY, reason: Utf8Bytes::from_static(reason) };
                let _ = ws_tx.send(Message::Close(Some(close))).await;
                break;
            }
            incoming = ws_rx.next() => {
                let frame = match incoming {
                    Some(Ok(frame)) => frame,
                    Some(Err(e)) => {
                        // Say why, rather than drop the connection under the client.
                        if let Some(close) = close_for_read_error(e) {
                            let _ = ws_tx.send(close).await;
                        }
                        break;
                    }
                    None => break,
                };
                let decoded = match (frame, protocol) {
                    (Message::Binary(data), WireProtocol::V1) => decode_v1(data),
                    (Message::Binary(data), WireProtocol::Legacy) => decode_legacy_binary(data),
                    (Message::Text(text), _) => decode_legacy_text(text.as_bytes()),
                    (Message::Close(_), _) => break,
                    _ => continue,
                };
                match decoded {
                    Ok((channel, message)) => {
                        if let Err(e) = handle.send(channel, message).await {
                            tracing::warn!(kernel = %handle.kernel().id, code = e.code, error = %e, "message from client not delivered");
                        }
                    }
                    Err(e) => tracing::warn!(kernel = %handle.kernel().id, error = %e, "malformed websocket message from client; ignored"),
                }
            }
            outgoing = rx.recv() => {
                let Some(outgoing) = outgoing else { break };
                // Write everything already queued, then flush once: one syscall for a burst.
                let mut next = Some(outgoing);
                let mut closing = false;
                while let Some(outgoing) = next.take() {
                    let message = match &outgoing {
                        Outgoing::Frame { binary: true, data } => Message::Binary(data.clone()),
                        Outgoing::Frame { binary: false, data } => match Utf8Bytes::try_from(data.clone()) {
                            Ok(text) => Message::Text(text),
                            Err(_) => Message::Binary(data.clone()),
                        },
                        Outgoing::Close { code, reason } => {
                            let _ = ws_tx.send(Message::Close(Some(CloseFrame { code: *code, reason: Utf8Bytes::from(reason.as_str()) }))).await;
                            closing = true;
                            break;
                        }
                    };
                    let fed = ws_tx.feed(message).await;
                    handle.written(&outgoing);
                    if fed.is_err() {
                        unsent.push(outgoing);
                        closing = true;
                        break;
                    }
                    next = rx.try_recv().ok();
                }
                if closing || ws_tx.flush().await.is_err() {
                    break;
                }
            }
        }
    }
    // Whatever was queued for this client but not written waits for its session to reconnect.
    while let Ok(outgoing) = rx.try_recv() {
        unsent.push(outgoing);
    }
    handle.close(unsent);
}
