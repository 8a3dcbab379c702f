//! `/api/events`: the event bus. `POST` accepts an event (and drops it: nothing is emitted to
//! subscribers yet); `/api/events/subscribe` is a WebSocket that stays open, silent, until
//! the client leaves.

use axum::extract::ws::{Message, WebSocketUpgrade};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::Value;

use crate::ApiError;

pub(crate) async fn subscribe(ws: WebSocketUpgrade) -> Response {
    ws.on_upgrade(|mut socket| async move {
        while let Some(Ok(message)) = socket.recv().await {
            if matches!(message, Message::Close(_)) {
                break;
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
