//! `/api/config/<section>`: front-end configuration sections, stored as JSON files under
//! `<data_dir>/lab/config/` (an empty object until something is written).

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};

use crate::lab::{recursive_update, write_atomic};
use crate::{ApiError, AppState};

fn section_path(state: &AppState, section: &str) -> Result<Option<std::path::PathBuf>, ApiError> {
    if section.is_empty()
        || !section
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')
        || section.starts_with('.')
    {
        return Err(ApiError::bad_request(
            "invalid_section",
            "invalid config section name",
        ));
    }
    Ok(state
        .lab
        .as_ref()
        .map(|lab| lab.state_dir.join("config").join(format!("{section}.json"))))
}

fn read_section(path: Option<&std::path::Path>) -> Value {
    path.and_then(crate::lab::read_json)
        .filter(Value::is_object)
        .unwrap_or_else(|| json!({}))
}

pub(crate) async fn get(
    State(state): State<AppState>,
    Path(section): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let path = section_path(&state, &section)?;
    Ok(Json(read_section(path.as_deref())))
}

/// Merges the body into the section (a `null` value deletes a key) and returns the result.
pub(crate) async fn patch(
    State(state): State<AppState>,
    Path(section): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let path = section_path(&state, &section)?.ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "config_unavailable",
            "no data directory for config sections",
        )
    })?;
    let update: Value = super::parse_json(&body, false)?.expect("not empty");
    if !update.is_object() {
        return Err(ApiError::bad_request(
            "invalid_config",
            "a config section is a JSON object",
        ));
    }
    let mut current = read_section(Some(&path));
    recursive_update(&mut current, &update);
    let bytes = serde_json::to_vec_pretty(&current).map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "config_io",
            e.to_string(),
        )
    })?;
    write_atomic(&path, &bytes).map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "config_io",
            e.to_string(),
        )
    })?;
    Ok(Json(current))
}

/// `PUT` replaces the section.
pub(crate) async fn put(
    State(state): State<AppState>,
    Path(section): Path<String>,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    let path = section_path(&state, &section)?.ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "config_unavailable",
            "no data directory for config sections",
        )
    })?;
    let value: Value = super::parse_json(&body, false)?.expect("not empty");
    if !value.is_object() {
        return Err(ApiError::bad_request(
            "invalid_config",
            "a config section is a JSON object",
        ));
    }
    let bytes = serde_json::to_vec_pretty(&value).expect("JSON serializes");
    write_atomic(&path, &bytes).map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "config_io",
            e.to_string(),
        )
    })?;
    Ok(StatusCode::NO_CONTENT)
}
