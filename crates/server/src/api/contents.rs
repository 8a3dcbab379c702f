//! `/api/contents`: files, notebooks and directories under the root, and their checkpoints
//! (`…/checkpoints`, `…/checkpoints/<id>`), answered as jupyter_server answers them.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use commonlab_manager::{ContentsModel, ContentsRequest, GetOptions};
use serde_json::Value;

use super::parse_json;
use crate::{ApiError, AppState};

/// What a path under `/api/contents` names: contents, or the checkpoints of a file.
enum Target {
    Contents(String),
    Checkpoints(String),
    Checkpoint(String, String),
}

fn is_checkpoint_id(id: &str) -> bool {
    !id.is_empty()
        && id
            .chars()
            .all(|c| c.is_alphanumeric() || c == '_' || c == '-')
}

/// Routes as jupyter_server's URL patterns do: `<path>/checkpoints` and
/// `<path>/checkpoints/<id>` win over a file of that name.
fn target(path: Option<Path<String>>) -> Target {
    let path = path.map(|Path(p)| p).unwrap_or_default();
    let trimmed = path.trim_start_matches('/');
    if trimmed == "checkpoints" {
        return Target::Checkpoints(String::new());
    }
    if let Some(file) = trimmed.strip_suffix("/checkpoints") {
        return Target::Checkpoints(file.to_owned());
    }
    if let Some((rest, id)) = trimmed.rsplit_once('/') {
        if is_checkpoint_id(id) {
            if rest == "checkpoints" {
                return Target::Checkpoint(String::new(), id.to_owned());
            }
            if let Some(file) = rest.strip_suffix("/checkpoints") {
                return Target::Checkpoint(file.to_owned(), id.to_owned());
            }
        }
    }
    Target::Contents(path)
}

fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "Method Not Allowed",
    )
}

/// Python's `quote(segment)` for each segment: letters, digits and `_.-~` stay.
fn url_escape(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for b in path.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-' | b'~' | b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn location(state: &AppState, path: &str) -> String {
    format!(
        "{}/api/contents/{}",
        state.base_url.trim_end_matches('/'),
        url_escape(path)
    )
}

fn model_response(
    state: &AppState,
    status: StatusCode,
    model: ContentsModel,
    with_location: bool,
) -> Response {
    let mut headers = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_str(&model.last_modified) {
        headers.insert(header::LAST_MODIFIED, v);
    }
    if with_location {
        if let Ok(v) = HeaderValue::from_str(&location(state, &model.path)) {
            headers.insert(header::LOCATION, v);
        }
    }
    (status, headers, Json(model)).into_response()
}

/// A body as a request; an absent body or `{}` is `None`, as jupyter_server treats it.
fn parse_request(body: &[u8]) -> Result<Option<ContentsRequest>, ApiError> {
    let Some(value) = parse_json::<Value>(body, true)? else {
        return Ok(None);
    };
    if value.as_object().is_some_and(|o| o.is_empty()) || value.is_null() {
        return Ok(None);
    }
    serde_json::from_value(value).map(Some).map_err(|e| {
        ApiError::bad_request(
            "invalid_json",
            format!("Invalid JSON in body of request: {e}"),
        )
    })
}

fn flag(query: &HashMap<String, String>, key: &str, default: bool) -> Result<bool, ApiError> {
    match query.get(key).map(String::as_str) {
        None => Ok(default),
        Some("1") => Ok(true),
        Some("0") => Ok(false),
        Some(other) => Err(ApiError::bad_request(
            "bad_argument",
            if key == "hash" {
                format!("Hash argument '{other}' is invalid. It must be '0' or '1'.")
            } else {
                format!("Content '{other}' is invalid")
            },
        )),
    }
}

pub(crate) async fn get(
    State(state): State<AppState>,
    path: Option<Path<String>>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let path = match target(path) {
        Target::Contents(path) => path,
        Target::Checkpoints(path) => {
            return Ok(Json(state.contents.list_checkpoints(&path).await?).into_response())
        }
        Target::Checkpoint(..) => return Err(method_not_allowed()),
    };
    let kind = query.get("type").map(|t| match t.as_str() {
        "directory" | "file" | "notebook" => t.clone(),
        _ => "file".to_owned(),
    });
    let format = query.get("format").cloned();
    if let Some(f) = format.as_deref() {
        if f != "text" && f != "base64" {
            return Err(ApiError::bad_request(
                "bad_format",
                format!("Format '{f}' is invalid"),
            ));
        }
    }
    let options = GetOptions {
        content: flag(&query, "content", true)?,
        kind,
        format,
        hash: flag(&query, "hash", false)?,
    };
    let model = state.contents.get(&path, options).await?;
    Ok(model_response(&state, StatusCode::OK, model, false))
}

pub(crate) async fn put(
    State(state): State<AppState>,
    path: Option<Path<String>>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let Target::Contents(path) = target(path) else {
        return Err(method_not_allowed());
    };
    let (model, created) = state.contents.put(&path, parse_request(&body)?).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(model_response(&state, status, model, true))
}

pub(crate) async fn post(
    State(state): State<AppState>,
    path: Option<Path<String>>,
    body: Bytes,
) -> Result<Response, ApiError> {
    match target(path) {
        Target::Contents(path) => {
            let model = state.contents.post(&path, parse_request(&body)?).await?;
            Ok(model_response(&state, StatusCode::CREATED, model, true))
        }
        Target::Checkpoints(path) => {
            let checkpoint = state.contents.create_checkpoint(&path).await?;
            let location = format!(
                "{}/checkpoints/{}",
                location(&state, path.trim_matches('/')),
                url_escape(&checkpoint.id)
            );
            Ok((
                StatusCode::CREATED,
                [(header::LOCATION, location)],
                Json(checkpoint),
            )
                .into_response())
        }
        Target::Checkpoint(path, id) => {
            state.contents.restore_checkpoint(&path, &id).await?;
            Ok(StatusCode::NO_CONTENT.into_response())
        }
    }
}

pub(crate) async fn patch(
    State(state): State<AppState>,
    path: Option<Path<String>>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let Target::Contents(path) = target(path) else {
        return Err(method_not_allowed());
    };
    let Some(request) = parse_json::<ContentsRequest>(&body, true)? else {
        return Err(ApiError::bad_request("body_missing", "JSON body missing"));
    };
    let model = state.contents.rename(&path, request).await?;
    Ok(model_response(&state, StatusCode::OK, model, true))
}

pub(crate) async fn delete(
    State(state): State<AppState>,
    path: Option<Path<String>>,
) -> Result<Response, ApiError> {
    match target(path) {
        Target::Contents(path) => state.contents.delete(&path).await?,
        Target::Checkpoint(path, id) => state.contents.delete_checkpoint(&path, &id).await?,
        Target::Checkpoints(_) => return Err(method_not_allowed()),
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}
