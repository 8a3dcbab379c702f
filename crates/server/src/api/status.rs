//! `/api`, `/api/status`, `/api/me`.

use axum::extract::State;
use axum::Json;
use serde_json::{json, Value};

use crate::AppState;

/// The jupyter_server API version this server is compatible with.
pub(crate) const API_VERSION: &str = "2.17.0";

pub(crate) async fn version() -> Json<Value> {
    Json(json!({ "version": API_VERSION }))
}

pub(crate) async fn status(State(state): State<AppState>) -> Json<Value> {
    let kernels = state.kernels.list();
    let last_activity = kernels
        .iter()
        .map(|k| k.last_activity.clone())
        .max()
        .unwrap_or_else(|| state.kernels.started_at().to_owned());
    Json(json!({
        "started": state.kernels.started_at(),
        "last_activity": last_activity,
        "kernels": kernels.len(),
        "connections": state.kernels.connection_count(),
    }))
}

pub(crate) async fn me() -> Json<Value> {
    Json(json!({
        "identity": {
            "username": "commonlab",
            "name": "commonlab",
            "display_name": "commonlab",
            "initials": "C",
            "avatar_url": null,
            "color": null,
        },
        "permissions": {},
    }))
}
