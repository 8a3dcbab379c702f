//! `/api/events`: the event bus. `POST` accepts an event (and drops it: nothing is emitted to
//! subscribers yet); `/api/events/subscribe` is a WebSocket that stays open, silent, until
//! the client leaves (a message over `server.ws_message_bytes_max` closes it with 1009).

use axum::extract::ws::{Message, WebSocketUpgrade};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::Value;

use crate::{ApiError, AppState};

pub(crate) async fn subscribe(State(state): State<AppState>, ws: WebSocketUpgrade) -> Response {
    ws.max_message_size(state.limits.ws_message_bytes_max)
        .max_frame_size(state.limits.ws_message_bytes_max)
        .on_upgrade(|mut socket| async move {
            loop {
                match socket.recv().await {
                    None | Some(Ok(Message::Close(_))) => break,
                    Some(Ok(_)) => {}
                    Some(Err(e)) => {
                        if let Some(close) = super::channels::close_for_read_error(e) {
                            let _ = socket.send(close).await;
                        }
                        break;
                    }
                }
            }
        })
}

pub(crate) async fn emit(body: axum::body::Bytes) -> Result<StatusCode, ApiError> {
    let event: Value = super::parse_json(&body, false)?.expect("not empty");
    for key in ["schema_id", "version", "data"] {
        if event.get(key).is_none() {
            return Err(ApiError::bad_request(
                "invalid_event",
                format!("'{key}' is a required field of an event"),
            ));
        }
    }
    Ok(StatusCode::NO_CONTENT)
}
