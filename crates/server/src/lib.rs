//! The HTTP and WebSocket edge: the Jupyter Server REST API (`/api/...`), kernel channels, and
//! token authentication, and the JupyterLab / Notebook 7 front ends. The only crate that knows
//! HTTP.
//!
//! Handlers parse, authorize, call one manager method, and render. Errors leave as
//! `{"message", "reason", "code"}` with the status jupyter_server would use.

#![recursion_limit = "256"]

mod api;
mod auth;
mod error;
mod hub;
mod lab;
mod listener;

use std::sync::Arc;

use axum::Router;
use commonlab_manager::{ContentsManager, KernelManager, SessionManager};

pub use error::ApiError;
pub use hub::{hub_app, Hub, HubConfig, Maintenance, UserServers, MAINTENANCE_INTERVAL};
pub use lab::{LabAssets, NotebookAssets};
pub use listener::{serve, ConnectionLimits};

/// The page where users see their policy findings and restriction and appeal them, relative
/// to the base URL; in accounts mode the policy's notices should link here.
pub const APPEAL_PATH: &str = "hub/appeal";

/// The absolute path of [`APPEAL_PATH`] under `base_url` (with or without its slashes).
pub fn appeal_url(base_url: &str) -> String {
    let base = base_url.trim_matches('/');
    if base.is_empty() {
        format!("/{APPEAL_PATH}")
    } else {
        format!("/{base}/{APPEAL_PATH}")
    }
}

/// Limits of the edge, with units in their names.
#[derive(Debug, Clone)]
pub struct EdgeLimits {
    /// Largest WebSocket message accepted from a client.
    pub ws_message_bytes_max: usize,
    /// Largest request body accepted.
    pub request_body_bytes_max: usize,
}

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub kernels: Arc<KernelManager>,
    pub sessions: Arc<SessionManager>,
    pub contents: Arc<ContentsManager>,
    pub token: Arc<String>,
    pub limits: EdgeLimits,
    /// The URL prefix the API is served under, e.g. `/` or `/user/alice/`.
    pub base_url: String,
    /// The JupyterLab and Notebook 7 front ends, when installed in the Python environment.
    pub lab: Option<Arc<LabAssets>>,
    /// In accounts mode, whose server this is; only that user's credentials are accepted and
    /// `token` is unused.
    pub accounts: Option<AccountsAuth>,
}

/// How a user's server checks its requests in accounts mode.
#[derive(Clone)]
pub struct AccountsAuth {
    pub store: Arc<commonlab_store::Store>,
    /// The one user whose credentials this server accepts.
    pub owner: String,
}

/// A body over the request limit is refused by the extractor with a plain-text 413; say it as
/// the API's other errors are said.
async fn json_payload_too_large(response: axum::response::Response) -> axum::response::Response {
    use axum::response::IntoResponse;
    let plain = response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .is_none_or(|v| v.as_bytes().starts_with(b"text/plain"));
    if response.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE && plain {
        return ApiError::new(
            axum::http::StatusCode::PAYLOAD_TOO_LARGE,
            "request_too_large",
            "The request body is larger than the server accepts (server.request_body_bytes_max); upload large files in chunks, as JupyterLab does",
        )
        .into_response();
    }
    response
}

/// Builds the router for the whole edge.
pub fn app(state: AppState) -> Router {
    let base = state.base_url.trim_end_matches('/').to_owned();
    let api = api::router(state.clone())
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require_token,
        ))
        .layer(axum::extract::DefaultBodyLimit::max(
            state.limits.request_body_bytes_max,
        ))
        .layer(axum::middleware::map_response(json_payload_too_large));
    let public = api::public_router();
    let routes = Router::new().merge(public).merge(api).with_state(state);
    if base.is_empty() {
        routes
    } else {
        Router::new().nest(&base, routes)
    }
}
