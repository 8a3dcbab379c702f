//! Static files with their MIME types and caching headers: content-hashed or versioned (`?v=`)
//! files are immutable for a year; others are revalidated by `Last-Modified`.

use std::path::{Path, PathBuf};

use axum::extract::{Path as UrlPath, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};

use super::{confined, LabAssets};
use crate::AppState;

fn mime_type(path: &Path) -> &'static str {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or_default()
        .to_ascii_lowercase();
    match ext.as_str() {
        "js" | "mjs" => "application/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "html" | "htm" => "text/html; charset=utf-8",
        "json" | "map" => "application/json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "ico" => "image/x-icon",
        "woff" => "font/woff",
        "woff2" => "font/woff2",
        "ttf" => "font/ttf",
        "otf" => "font/otf",
        "eot" => "application/vnd.ms-fontobject",
        "wasm" => "application/wasm",
        "txt" | "md" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

/// Whether a file name carries a content hash (`1014.073326ef5d98db5e.js`, `0031b1860ea4ad75.woff`).
fn is_content_hashed(path: &Path) -> bool {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    name.split('.')
        .any(|part| part.len() >= 16 && part.bytes().all(|b| b.is_ascii_hexdigit()))
}

fn not_found() -> Response {
    (StatusCode::NOT_FOUND, "404: Not Found").into_response()
}

/// Serves `rel` from the first of `bases` that has it.
pub(crate) async fn serve_from(
    bases: &[PathBuf],
    rel: &str,
    uri: &Uri,
    headers: &HeaderMap,
) -> Response {
    for base in bases {
        let Some(path) = confined(base, rel) else {
            return not_found();
        };
        let Ok(meta) = tokio::fs::metadata(&path).await else {
            continue;
        };
        if !meta.is_file() {
            continue;
        }
        let last_modified = meta.modified().ok().map(|t| {
            chrono::DateTime::<chrono::Utc>::from(t)
                .format("%a, %d %b %Y %H:%M:%S GMT")
                .to_string()
        });
        let versioned = uri
            .query()
            .is_some_and(|q| q.split('&').any(|p| p.starts_with("v=")));
        let cache = if versioned || is_content_hashed(&path) {
            "public, max-age=31536000, immutable"
        } else {
            "no-cache"
        };
        let mut response_headers = HeaderMap::new();
        response_headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(mime_type(&path)),
        );
        response_headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
        response_headers.insert(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        );
        if let Some(lm) = &last_modified {
            if let Ok(v) = HeaderValue::from_str(lm) {
                response_headers.insert(header::LAST_MODIFIED, v);
            }
            let unchanged = headers
                .get(header::IF_MODIFIED_SINCE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|since| since == lm);
            if unchanged {
                return (StatusCode::NOT_MODIFIED, response_headers).into_response();
            }
        }
        return match tokio::fs::read(&path).await {
            Ok(bytes) => (response_headers, bytes).into_response(),
            Err(_) => not_found(),
        };
    }
    not_found()
}

fn lab(state: &AppState) -> Option<&LabAssets> {
    state.lab.as_deref()
}

pub(crate) async fn lab_static(
    State(state): State<AppState>,
    UrlPath(path): UrlPath<String>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let Some(lab) = lab(&state) else {
        return not_found();
    };
    serve_from(std::slice::from_ref(&lab.lab_static), &path, &uri, &headers).await
}

pub(crate) async fn notebook_static(
    State(state): State<AppState>,
    UrlPath(path): UrlPath<String>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let Some(nb) = lab(&state).and_then(|l| l.notebook.as_ref()) else {
        return not_found();
    };
    serve_from(std::slice::from_ref(&nb.static_dir), &path, &uri, &headers).await
}

pub(crate) async fn favicons(
    State(state): State<AppState>,
    UrlPath(path): UrlPath<String>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let Some(dir) = lab(&state).and_then(|l| l.server_static.as_ref()) else {
        return not_found();
    };
    serve_from(&[dir.join("favicons")], &path, &uri, &headers).await
}

pub(crate) async fn labextension(
    State(state): State<AppState>,
    UrlPath(path): UrlPath<String>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let Some(lab) = lab(&state) else {
        return not_found();
    };
    serve_from(&lab.labextension_dirs, &path, &uri, &headers).await
}

pub(crate) async fn theme(
    State(state): State<AppState>,
    UrlPath(path): UrlPath<String>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let Some(lab) = lab(&state) else {
        return not_found();
    };
    let mut bases = vec![lab.themes_dir.clone()];
    // Themes of prebuilt extensions live in `<ext>/themes/<ext>/...`.
    let ext_name = match path.split('/').collect::<Vec<_>>().as_slice() {
        [scope, name, ..] if scope.starts_with('@') => format!("{scope}/{name}"),
        [name, ..] => (*name).to_owned(),
        [] => String::new(),
    };
    for dir in &lab.labextension_dirs {
        if let Some(d) = confined(dir, &ext_name) {
            bases.push(d.join("themes"));
        }
    }
    serve_from(&bases, &path, &uri, &headers).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashed_names_are_recognised() {
        assert!(is_content_hashed(Path::new("1014.073326ef5d98db5e.js")));
        assert!(is_content_hashed(Path::new("0031b1860ea4ad75.woff")));
        assert!(!is_content_hashed(Path::new("index.css")));
        assert_eq!(mime_type(Path::new("a.woff2")), "font/woff2");
    }
}
