//! The Jupyter Server REST API; modules mirror URL paths.

mod channels;
mod config;
mod contents;
mod events;
mod files;
mod kernels;
mod kernelspecs;
mod nbconvert;
mod sessions;
mod status;

use axum::routing::{get, post};
use axum::Router;
use serde::de::DeserializeOwned;

use crate::{ApiError, AppState};

/// Routes that need the token.
pub(crate) fn router(_state: AppState) -> Router<AppState> {
    let contents_methods = get(contents::get)
        .put(contents::put)
        .post(contents::post)
        .patch(contents::patch)
        .delete(contents::delete);
    Router::new()
        .route("/api/status", get(status::status))
        .route("/api/me", get(status::me))
        .route("/api/kernelspecs", get(kernelspecs::list))
        .route("/api/kernelspecs/{name}", get(kernelspecs::get))
        .route("/kernelspecs/{name}/{resource}", get(kernelspecs::resource))
        .route("/api/kernels", get(kernels::list).post(kernels::start))
        .route(
            "/api/kernels/{id}",
            get(kernels::get).delete(kernels::shutdown),
        )
        .route("/api/kernels/{id}/interrupt", post(kernels::interrupt))
        .route("/api/kernels/{id}/restart", post(kernels::restart))
        .route("/api/kernels/{id}/channels", get(channels::channels))
        .route("/api/contents", contents_methods.clone())
        .route("/api/contents/", contents_methods.clone())
        .route("/api/contents/{*path}", contents_methods)
        .route("/api/sessions", get(sessions::list).post(sessions::create))
        .route(
            "/api/sessions/{id}",
            get(sessions::get)
                .patch(sessions::update)
                .delete(sessions::delete),
        )
        .route(
            "/api/config/{section}",
            get(config::get).patch(config::patch).put(config::put),
        )
        .route("/api/nbconvert", get(nbconvert::formats))
        .route("/files/{*path}", get(files::get))
        .route("/api/events", post(events::emit))
        .route("/api/events/subscribe", get(events::subscribe))
        .merge(crate::lab::protected_router())
}

/// Routes open to anyone, as in jupyter_server.
pub(crate) fn public_router() -> Router<AppState> {
    Router::new()
        .route("/api", get(status::version))
        .route("/api/", get(status::version))
        .merge(crate::lab::public_router())
}

/// Parses a JSON body; an empty body is `T::default()`-like only when `allow_empty`.
pub(crate) fn parse_json<T: DeserializeOwned>(
    body: &[u8],
    allow_empty: bool,
) -> Result<Option<T>, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return if allow_empty {
            Ok(None)
        } else {
            Err(ApiError::bad_request(
                "body_missing",
                "No JSON data provided",
            ))
        };
    }
    serde_json::from_slice(body).map(Some).map_err(|e| {
        ApiError::bad_request(
            "invalid_json",
            format!("Invalid JSON in body of request: {e}"),
        )
    })
}
