//! `/api/kernels`: list, start, get, shut down, interrupt, restart.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use commonlab_manager::KernelModel;
use serde::Deserialize;

use super::parse_json;
use crate::{ApiError, AppState};

#[derive(Debug, Default, Deserialize)]
struct StartRequest {
    name: Option<String>,
}

pub(crate) async fn list(State(state): State<AppState>) -> Json<Vec<KernelModel>> {
    Json(state.kernels.list())
}

pub(crate) async fn start(
    State(state): State<AppState>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let request: StartRequest = parse_json(&body, true)?.unwrap_or_default();
    let kernel = state.kernels.start(request.name.as_deref()).await?;
    let location = format!(
        "{}/api/kernels/{}",
        state.base_url.trim_end_matches('/'),
        kernel.id
    );
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(kernel.model()),
    )
        .into_response())
}

pub(crate) async fn get(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<KernelModel>, ApiError> {
    Ok(Json(state.kernels.get(&id)?.model()))
}

pub(crate) async fn shutdown(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.kernels.shutdown(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(crate) async fn interrupt(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.kernels.interrupt(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(crate) async fn restart(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<KernelModel>, ApiError> {
    Ok(Json(state.kernels.restart(&id).await?.model()))
}
