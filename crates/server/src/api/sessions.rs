//! `/api/sessions`: list, create, get, update, delete.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use commonlab_manager::{SessionModel, SessionRequest};

use super::parse_json;
use crate::{ApiError, AppState};

pub(crate) async fn list(
    State(state): State<AppState>,
) -> Result<Json<Vec<SessionModel>>, ApiError> {
    Ok(Json(state.sessions.list()?))
}

pub(crate) async fn create(
    State(state): State<AppState>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let request: SessionRequest = parse_json(&body, false)?.expect("a body is required");
    let model = state.sessions.create(request).await?;
    let location = format!(
        "{}/api/sessions/{}",
        state.base_url.trim_end_matches('/'),
        model.id
    );
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(model),
    )
        .into_response())
}

pub(crate) async fn get(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<SessionModel>, ApiError> {
    Ok(Json(state.sessions.get(&id)?))
}

pub(crate) async fn update(
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<SessionModel>, ApiError> {
    let request: SessionRequest = parse_json(&body, false)?.expect("a body is required");
    Ok(Json(state.sessions.update(&id, request).await?))
}

pub(crate) async fn delete(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.sessions.delete(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}
