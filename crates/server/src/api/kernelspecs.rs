//! `/api/kernelspecs` and `/kernelspecs/<name>/<resource>`.

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use commonlab_manager::KernelManager;
use serde_json::{json, Map, Value};

use crate::{ApiError, AppState};

fn model(state: &AppState, spec: &commonlab_manager::KernelSpecView) -> Value {
    let base = state.base_url.trim_end_matches('/');
    let mut resources = Map::new();
    for file in &spec.resources {
        let key = match file.rsplit_once('.') {
            Some((stem, _)) if stem.starts_with("logo-") => {
                if file.ends_with(".svg") {
                    "logo-svg".to_owned()
                } else {
                    stem.to_owned()
                }
            }
            _ => file.clone(),
        };
        resources.insert(
            key,
            json!(format!("{base}/kernelspecs/{}/{file}", spec.name)),
        );
    }
    json!({ "name": spec.name, "spec": spec.spec, "resources": resources })
}

fn views(kernels: &KernelManager) -> Vec<commonlab_manager::KernelSpecView> {
    kernels.kernelspec_views()
}

pub(crate) async fn list(State(state): State<AppState>) -> Json<Value> {
    let mut specs = Map::new();
    for view in views(&state.kernels) {
        specs.insert(view.name.clone(), model(&state, &view));
    }
    Json(json!({ "default": state.kernels.default_kernel_name(), "kernelspecs": specs }))
}

pub(crate) async fn get(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let view = views(&state.kernels)
        .into_iter()
        .find(|v| v.name == name.to_lowercase())
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "kernelspec_not_found",
                format!("Kernel spec {name} not found"),
            )
        })?;
    Ok(Json(model(&state, &view)))
}

pub(crate) async fn resource(
    State(state): State<AppState>,
    Path((name, resource)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let not_found = || {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "kernelspec_resource_not_found",
            format!("Kernel spec resource {name}/{resource} not found"),
        )
    };
    let spec = state.kernels.kernelspec(&name).ok_or_else(not_found)?;
    if resource.contains('/') || resource.contains("..") {
        return Err(not_found());
    }
    if !spec.resources().contains(&resource) {
        return Err(not_found());
    }
    let bytes = tokio::fs::read(spec.resource_dir.join(&resource))
        .await
        .map_err(|_| not_found())?;
    let mime = match resource.rsplit_once('.').map(|(_, ext)| ext) {
        Some("png") => "image/png",
        Some("svg") => "image/svg+xml",
        Some("js") => "application/javascript",
        Some("css") => "text/css",
        Some("json") => "application/json",
        _ => "application/octet-stream",
    };
    Ok(([(header::CONTENT_TYPE, mime)], bytes).into_response())
}
