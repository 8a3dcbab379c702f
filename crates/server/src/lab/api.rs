//! `/lab/api/settings`, `/lab/api/workspaces`, `/lab/api/translations`, `/lab/api/listings`,
//! `/lab/api/news`, `/lab/api/update` and `/lsp/status`, with the bodies jupyterlab_server and
//! jupyter_lsp give them.
//!
//! User settings and workspaces are JSON files under `<data_dir>/lab/`, written atomically.

use std::path::{Path, PathBuf};

use axum::body::Bytes;
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Map, Value};

use super::{confined, read_json, write_atomic, LabAssets};
use crate::{ApiError, AppState};

const SETTINGS_EXTENSION: &str = ".jupyterlab-settings";
const WORKSPACE_EXTENSION: &str = ".jupyterlab-workspace";

fn assets(state: &AppState) -> Result<&LabAssets, ApiError> {
    state.lab.as_deref().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "lab_unavailable",
            "JupyterLab is not installed in the server's Python environment",
        )
    })
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "lab_io", e.to_string())
}

/// Removes `//` and `/* */` comments and trailing commas, enough for the JSON5 the settings
/// editor writes.
pub(crate) fn parse_json5(raw: &str) -> Option<Value> {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars().peekable();
    let mut in_string = false;
    while let Some(c) = chars.next() {
        if in_string {
            out.push(c);
            if c == '\\' {
                if let Some(n) = chars.next() {
                    out.push(n);
                }
            } else if c == '"' {
                in_string = false;
            }
            continue;
        }
        match (c, chars.peek()) {
            ('"', _) => {
                in_string = true;
                out.push(c);
            }
            ('/', Some('/')) => {
                for n in chars.by_ref() {
                    if n == '\n' {
                        out.push('\n');
                        break;
                    }
                }
            }
            ('/', Some('*')) => {
                chars.next();
                let mut prev = ' ';
                for n in chars.by_ref() {
                    if prev == '*' && n == '/' {
                        break;
                    }
                    prev = n;
                }
            }
            _ => out.push(c),
        }
    }
    // Trailing commas before `}` or `]`.
    let mut cleaned = String::with_capacity(out.len());
    let bytes: Vec<char> = out.chars().collect();
    let mut in_string = false;
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        if in_string {
            cleaned.push(c);
            if c == '\\' && i + 1 < bytes.len() {
                cleaned.push(bytes[i + 1]);
                i += 1;
            } else if c == '"' {
                in_string = false;
            }
        } else if c == '"' {
            in_string = true;
            cleaned.push(c);
        } else if c == ',' {
            let next = bytes[i + 1..].iter().find(|c| !c.is_whitespace());
            if !matches!(next, Some('}') | Some(']')) {
                cleaned.push(c);
            }
        } else {
            cleaned.push(c);
        }
        i += 1;
    }
    if cleaned.trim().is_empty() {
        return Some(json!({}));
    }
    serde_json::from_str(&cleaned).ok()
}

/// Merges `overrides.d/*.json` then `overrides.json` of each app settings directory.
fn overrides(lab: &LabAssets) -> Map<String, Value> {
    let mut merged = Map::new();
    for dir in &lab.app_settings_dirs {
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir.join("overrides.d"))
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    .map(|e| e.path())
                    .filter(|p| p.extension().is_some_and(|e| e == "json" || e == "json5"))
                    .collect()
            })
            .unwrap_or_default();
        files.sort();
        files.push(dir.join("overrides.json"));
        files.push(dir.join("overrides.json5"));
        for file in files {
            let Ok(text) = std::fs::read_to_string(&file) else {
                continue;
            };
            match parse_json5(&text) {
                Some(Value::Object(map)) => {
                    for (plugin, config) in map {
                        recursive_update(
                            merged.entry(plugin).or_insert_with(|| json!({})),
                            &config,
                        );
                    }
                }
                _ => {
                    tracing::warn!(file = %file.display(), "ignoring unparseable settings overrides")
                }
            }
        }
    }
    merged
}

pub(crate) fn recursive_update(target: &mut Value, update: &Value) {
    match (target, update) {
        (Value::Object(t), Value::Object(u)) => {
            for (k, v) in u {
                if v.is_null() {
                    t.remove(k);
                } else if v.is_object() && t.get(k).is_some_and(Value::is_object) {
                    recursive_update(t.get_mut(k).expect("checked"), v);
                } else {
                    t.insert(k.clone(), v.clone());
                }
            }
        }
        (t, u) => *t = u.clone(),
    }
}

/// A plugin's schema file: prebuilt extensions first, then the core schemas directory. Returns
/// the schema path and the schemas root it was found under.
fn schema_path(lab: &LabAssets, id: &str) -> Option<(PathBuf, PathBuf)> {
    let (package, plugin) = id.split_once(':')?;
    if plugin.contains('/') {
        return None;
    }
    for dir in &lab.labextension_dirs {
        let root = confined(dir, package)?.join("schemas");
        let path = confined(&root, package)?.join(format!("{plugin}.json"));
        if path.is_file() {
            return Some((path, root));
        }
    }
    let path = confined(&lab.schemas_dir, package)?.join(format!("{plugin}.json"));
    path.is_file().then(|| (path, lab.schemas_dir.clone()))
}

fn user_settings_path(lab: &LabAssets, id: &str) -> Option<PathBuf> {
    let (package, plugin) = id.split_once(':')?;
    if plugin.contains('/') {
        return None;
    }
    Some(
        confined(&lab.state_dir.join("user-settings"), package)?
            .join(format!("{plugin}{SETTINGS_EXTENSION}")),
    )
}

fn iso_time(t: std::time::SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(t)
        .format("%Y-%m-%dT%H:%M:%S%.6f")
        .to_string()
}

/// Sets a schema's property defaults from its overrides, as jupyterlab_server does: an object
/// default is merged with its override, any other is replaced.
fn apply_overrides(schema: &mut Value, overrides: Option<&Value>) {
    let Some(Value::Object(defaults)) = overrides else {
        return;
    };
    let Some(Value::Object(props)) = schema.get_mut("properties") else {
        return;
    };
    for (key, value) in defaults {
        match props.get_mut(key) {
            Some(Value::Object(prop)) => match prop.get_mut("default") {
                Some(current @ Value::Object(_)) => recursive_update(current, value),
                _ => {
                    prop.insert("default".into(), value.clone());
                }
            },
            _ => {
                props.insert(key.clone(), json!({ "default": value }));
            }
        }
    }
}

fn plugin_settings(
    lab: &LabAssets,
    id: &str,
    overrides: &Map<String, Value>,
) -> Result<Value, ApiError> {
    let (path, root) = schema_path(lab, id).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "schema_not_found",
            format!("Schema not found: {id}"),
        )
    })?;
    let mut schema =
        read_json(&path).ok_or_else(|| internal(format!("Failed parsing schema ({id})")))?;
    apply_overrides(&mut schema, overrides.get(id));
    let package = id.split_once(':').map(|(p, _)| p).unwrap_or(id);
    let version = read_json(&root.join(package).join("package.json.orig"))
        .and_then(|p| p.get("version")?.as_str().map(str::to_owned))
        .unwrap_or_else(|| "N/A".into());
    let mut raw = "{}".to_owned();
    let mut settings = json!({});
    let mut warning = Value::Null;
    let (mut last_modified, mut created) = (Value::Null, Value::Null);
    if let Some(user_path) = user_settings_path(lab, id) {
        if let Ok(meta) = std::fs::metadata(&user_path) {
            last_modified = meta
                .modified()
                .map(iso_time)
                .map(Value::from)
                .unwrap_or(Value::Null);
            created = meta
                .created()
                .or_else(|_| meta.modified())
                .map(iso_time)
                .map(Value::from)
                .unwrap_or(Value::Null);
            if let Ok(text) = std::fs::read_to_string(&user_path) {
                match parse_json5(&text) {
                    Some(parsed @ Value::Object(_)) => {
                        raw = if text.trim().is_empty() {
                            "{}".into()
                        } else {
                            text
                        };
                        settings = parsed;
                    }
                    _ => warning = format!("Failed loading settings ({id})").into(),
                }
            }
        }
    }
    Ok(json!({
        "id": id,
        "schema": schema,
        "version": version,
        "raw": raw,
        "settings": settings,
        "warning": warning,
        "last_modified": last_modified,
        "created": created,
    }))
}

/// All plugin ids: `<package>:<plugin>` for each `<root>/<package>/<plugin>.json`.
fn all_ids(lab: &LabAssets) -> Vec<String> {
    fn collect(root: &Path, dir: &Path, ids: &mut Vec<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.filter_map(Result::ok) {
            let path = entry.path();
            if path.is_dir() {
                collect(root, &path, ids);
            } else if path.extension().is_some_and(|e| e == "json") {
                let Ok(rel) = path.strip_prefix(root) else {
                    continue;
                };
                let (Some(parent), Some(stem)) = (rel.parent(), path.file_stem()) else {
                    continue;
                };
                if parent.as_os_str().is_empty() {
                    continue;
                }
                ids.push(format!(
                    "{}:{}",
                    parent.to_string_lossy(),
                    stem.to_string_lossy()
                ));
            }
        }
    }
    let mut ids = Vec::new();
    collect(&lab.schemas_dir, &lab.schemas_dir, &mut ids);
    for dir in &lab.labextension_dirs {
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        let mut packages = Vec::new();
        for entry in entries.filter_map(Result::ok) {
            if entry.file_name().to_string_lossy().starts_with('@') {
                if let Ok(scoped) = std::fs::read_dir(entry.path()) {
                    packages.extend(scoped.filter_map(Result::ok).map(|e| e.path()));
                }
            } else {
                packages.push(entry.path());
            }
        }
        for pkg in packages {
            let root = pkg.join("schemas");
            collect(&root, &root, &mut ids);
        }
    }
    ids.sort();
    ids.dedup();
    ids.reverse();
    ids
}

#[derive(serde::Deserialize)]
pub(crate) struct ListQuery {
    #[serde(default)]
    ids_only: Option<String>,
}

pub(crate) async fn settings_list(
    State(state): State<AppState>,
    Query(query): Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let lab = state
        .lab
        .clone()
        .ok_or_else(|| assets(&state).unwrap_err())?;
    let ids_only = query
        .ids_only
        .as_deref()
        .is_some_and(|v| v == "true" || v == "1");
    tokio::task::spawn_blocking(move || {
        let ids = all_ids(&lab);
        if ids_only {
            let list: Vec<Value> = ids.iter().map(|id| json!({ "id": id })).collect();
            return Ok(Json(json!({ "settings": list })));
        }
        let overrides = overrides(&lab);
        let mut list = Vec::with_capacity(ids.len());
        for id in &ids {
            match plugin_settings(&lab, id, &overrides) {
                Ok(s) => list.push(s),
                Err(e) => tracing::warn!(id, error = %e.message, "skipping plugin settings"),
            }
        }
        Ok(Json(json!({ "settings": list })))
    })
    .await
    .map_err(internal)?
}

pub(crate) async fn settings_get(
    State(state): State<AppState>,
    UrlPath(id): UrlPath<String>,
) -> Result<Json<Value>, ApiError> {
    let lab = state
        .lab
        .clone()
        .ok_or_else(|| assets(&state).unwrap_err())?;
    tokio::task::spawn_blocking(move || {
        let overrides = overrides(&lab);
        plugin_settings(&lab, &id, &overrides).map(Json)
    })
    .await
    .map_err(internal)?
}

#[derive(serde::Deserialize)]
struct SettingsBody {
    raw: String,
}

pub(crate) async fn settings_put(
    State(state): State<AppState>,
    UrlPath(id): UrlPath<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let lab = assets(&state)?;
    schema_path(lab, &id).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "schema_not_found",
            format!("Schema not found: {id}"),
        )
    })?;
    let body: SettingsBody = crate::api::parse_json(&body, false)?.expect("not empty");
    if !matches!(parse_json5(&body.raw), Some(Value::Object(_))) {
        return Err(ApiError::bad_request(
            "invalid_settings",
            format!("Failed loading settings ({id}): not a JSON object"),
        ));
    }
    let path = user_settings_path(lab, &id)
        .ok_or_else(|| ApiError::bad_request("invalid_id", format!("invalid plugin id {id}")))?;
    write_atomic(&path, body.raw.as_bytes()).map_err(internal)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

fn workspace_slug(id: &str) -> Option<String> {
    let id = id.trim_matches('/');
    if id.is_empty() || id.len() > 200 {
        return None;
    }
    Some(
        id.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '-'
                }
            })
            .collect(),
    )
}

fn workspaces_dir(lab: &LabAssets) -> PathBuf {
    lab.state_dir.join("workspaces")
}

pub(crate) async fn workspaces_list(
    State(state): State<AppState>,
) -> Result<Json<Value>, ApiError> {
    let lab = assets(&state)?;
    let mut found: Vec<(String, Value)> = Vec::new();
    if let Ok(entries) = std::fs::read_dir(workspaces_dir(lab)) {
        for entry in entries.filter_map(Result::ok) {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !name.ends_with(WORKSPACE_EXTENSION) {
                continue;
            }
            if let Some(ws) = read_json(&entry.path()) {
                let id = ws
                    .pointer("/metadata/id")
                    .and_then(Value::as_str)
                    .unwrap_or(name.trim_end_matches(WORKSPACE_EXTENSION))
                    .to_owned();
                found.push((id, ws));
            }
        }
    }
    found.sort_by(|a, b| a.0.cmp(&b.0));
    let (ids, values): (Vec<_>, Vec<_>) = found.into_iter().unzip();
    Ok(Json(
        json!({ "workspaces": { "ids": ids, "values": values } }),
    ))
}

pub(crate) async fn workspace_get(
    State(state): State<AppState>,
    UrlPath(id): UrlPath<String>,
) -> Result<Json<Value>, ApiError> {
    let lab = assets(&state)?;
    let slug = workspace_slug(&id)
        .ok_or_else(|| ApiError::bad_request("invalid_id", "invalid workspace id"))?;
    let path = workspaces_dir(lab).join(format!("{slug}{WORKSPACE_EXTENSION}"));
    Ok(Json(read_json(&path).unwrap_or_else(
        || json!({ "data": {}, "metadata": { "id": id.trim_matches('/') } }),
    )))
}

pub(crate) async fn workspace_put(
    State(state): State<AppState>,
    UrlPath(id): UrlPath<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let lab = assets(&state)?;
    let slug = workspace_slug(&id)
        .ok_or_else(|| ApiError::bad_request("invalid_id", "invalid workspace id"))?;
    let mut ws: Value = crate::api::parse_json(&body, false)?.expect("not empty");
    let Some(obj) = ws.as_object_mut() else {
        return Err(ApiError::bad_request(
            "invalid_workspace",
            "a workspace is a JSON object",
        ));
    };
    if !obj.get("data").is_some_and(Value::is_object) {
        return Err(ApiError::bad_request(
            "invalid_workspace",
            "a workspace needs a `data` object",
        ));
    }
    let now = chrono::Utc::now()
        .format("%Y-%m-%dT%H:%M:%S%.6f+00:00")
        .to_string();
    let meta = obj.entry("metadata").or_insert_with(|| json!({}));
    if let Some(meta) = meta.as_object_mut() {
        meta.insert("id".into(), id.trim_matches('/').into());
        meta.entry("created").or_insert_with(|| now.clone().into());
        meta.insert("last_modified".into(), now.into());
    }
    let path = workspaces_dir(lab).join(format!("{slug}{WORKSPACE_EXTENSION}"));
    let bytes = serde_json::to_vec(&ws).map_err(internal)?;
    write_atomic(&path, &bytes).map_err(internal)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub(crate) async fn workspace_delete(
    State(state): State<AppState>,
    UrlPath(id): UrlPath<String>,
) -> Result<Response, ApiError> {
    let lab = assets(&state)?;
    let slug = workspace_slug(&id)
        .ok_or_else(|| ApiError::bad_request("invalid_id", "invalid workspace id"))?;
    let path = workspaces_dir(lab).join(format!("{slug}{WORKSPACE_EXTENSION}"));
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(StatusCode::NO_CONTENT.into_response()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "workspace_not_found",
            format!("Workspace {id:?} does not exist"),
        )),
        Err(e) => Err(internal(e)),
    }
}

/// Only English is available: no language packs are read yet.
pub(crate) async fn translations_list() -> Json<Value> {
    Json(json!({
        "data": { "en": { "displayName": "English", "nativeName": "English" } },
        "message": "",
    }))
}

pub(crate) async fn translation_get(UrlPath(locale): UrlPath<String>) -> Json<Value> {
    Json(json!({ "data": {}, "message": format!("Language pack '{locale}' not installed!") }))
}

/// Extension listings: nothing blocked or allowed (the extension manager is off).
pub(crate) async fn listings(UrlPath(path): UrlPath<String>) -> Result<Json<Value>, ApiError> {
    if path.trim_matches('/') != "@jupyterlab/extensionmanager-extension/listings.json" {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "no such listing",
        ));
    }
    Ok(Json(json!({
        "blocked_extensions_uris": [],
        "allowed_extensions_uris": [],
        "blocked_extensions": [],
        "allowed_extensions": [],
    })))
}

/// No news is fetched from outside.
pub(crate) async fn news() -> Json<Value> {
    Json(json!({ "news": [] }))
}

pub(crate) async fn update() -> Json<Value> {
    Json(json!({ "notification": null }))
}

/// jupyter_lsp's status with no language servers: the front ends' LSP features stay idle
/// instead of logging a failed request on every page.
pub(crate) async fn lsp_status() -> Json<Value> {
    Json(json!({ "version": 2, "sessions": {}, "specs": {} }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json5_comments_and_trailing_commas() {
        let v = parse_json5("{\n // c\n \"a\": \"x // y\", /* b */ \"b\": [1,2,],\n}").unwrap();
        assert_eq!(v, json!({"a": "x // y", "b": [1, 2]}));
        assert_eq!(parse_json5("  "), Some(json!({})));
        assert_eq!(parse_json5("{"), None);
    }

    #[test]
    fn overrides_merge_into_object_defaults_and_replace_others() {
        let mut schema = json!({"properties": {
            "theme": {"type": "string", "default": "light"},
            "shortcuts": {"type": "object", "default": {"a": 1, "b": 2}},
        }});
        let overrides = json!({"theme": "dark", "shortcuts": {"b": 3}, "extra": true});
        apply_overrides(&mut schema, Some(&overrides));
        assert_eq!(
            schema["properties"],
            json!({
                "theme": {"type": "string", "default": "dark"},
                "shortcuts": {"type": "object", "default": {"a": 1, "b": 3}},
                "extra": {"default": true},
            })
        );
    }

    #[test]
    fn recursive_update_merges_and_deletes() {
        let mut t = json!({"a": {"b": 1, "c": 2}, "d": 3});
        recursive_update(&mut t, &json!({"a": {"b": 5, "c": null}, "e": 1}));
        assert_eq!(t, json!({"a": {"b": 5}, "d": 3, "e": 1}));
    }
}
