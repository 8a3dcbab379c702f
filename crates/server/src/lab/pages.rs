//! The index pages of JupyterLab (`/lab`, `/lab/tree/…`, `/lab/workspaces/…`) and Notebook 7
//! (`/tree`, `/notebooks/…`, `/edit/…`, `/consoles`), rendered with the page config
//! jupyterlab_server and notebook would give them.

use axum::extract::{Path as UrlPath, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{Html, IntoResponse, Redirect, Response};
use serde_json::{json, Map, Value};

use super::{read_json, template, LabAssets};
use crate::auth;
use crate::AppState;
use commonlab_manager::GetOptions;

/// Plugins turned off: installing extensions is not offered.
const DISABLED_EXTENSIONS: &[&str] = &["@jupyterlab/extensionmanager-extension"];

pub(crate) async fn root(State(state): State<AppState>, uri: Uri) -> Response {
    let target = match uri.query() {
        Some(q) => format!("{}lab?{q}", state.base_url),
        None => format!("{}lab", state.base_url),
    };
    Redirect::to(&target).into_response()
}

fn untracked_message_types() -> Value {
    json!([
        "comm_info_request",
        "comm_info_reply",
        "kernel_info_request",
        "kernel_info_reply",
        "shutdown_request",
        "shutdown_reply",
        "interrupt_request",
        "interrupt_reply",
        "debug_request",
        "debug_reply",
        "stream",
        "display_data",
        "update_display_data",
        "execute_input",
        "execute_result",
        "error",
        "status",
        "clear_output",
        "debug_event",
        "input_request",
        "input_reply"
    ])
}

/// `jupyterlab._build` of each installed prebuilt extension, first directory winning.
fn federated_extensions(lab: &LabAssets) -> Vec<Value> {
    let mut seen = std::collections::BTreeMap::new();
    for dir in &lab.labextension_dirs {
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        let mut packages = Vec::new();
        for entry in entries.filter_map(Result::ok) {
            let path = entry.path();
            if entry.file_name().to_string_lossy().starts_with('@') {
                if let Ok(scoped) = std::fs::read_dir(&path) {
                    packages.extend(scoped.filter_map(Result::ok).map(|e| e.path()));
                }
            } else {
                packages.push(path);
            }
        }
        for pkg in packages {
            let Some(meta) = read_json(&pkg.join("package.json")) else {
                continue;
            };
            let Some(name) = meta.get("name").and_then(Value::as_str) else {
                continue;
            };
            let Some(build) = meta.pointer("/jupyterlab/_build") else {
                continue;
            };
            if seen.contains_key(name) {
                continue;
            }
            let mut ext = Map::new();
            ext.insert("name".into(), name.into());
            ext.insert("entrypoints".into(), Value::Null);
            for key in ["load", "extension", "mimeExtension", "style"] {
                if let Some(v) = build.get(key) {
                    ext.insert(key.into(), v.clone());
                }
            }
            seen.insert(name.to_owned(), Value::Object(ext));
        }
    }
    seen.into_values().collect()
}

fn page_config(
    state: &AppState,
    lab: &LabAssets,
    tree_path: &str,
    workspace: &str,
) -> Map<String, Value> {
    let base = &state.base_url;
    let root = lab.root_dir.to_string_lossy();
    let config = json!({
        "allow_hidden_files": false,
        "appName": "JupyterLab",
        "appNamespace": "lab",
        "appSettingsDir": lab.app_settings_dirs[0],
        "appUrl": "/lab",
        "appVersion": lab.lab_version,
        "baseUrl": base,
        "buildAvailable": false,
        "buildCheck": false,
        "cacheFiles": false,
        "copyAbsolutePath": false,
        "delete_to_trash": false,
        "devMode": false,
        "disabledExtensions": DISABLED_EXTENSIONS,
        "exposeAppInBrowser": false,
        "extraLabextensionsPath": [],
        "federated_extensions": federated_extensions(lab),
        "fullAppUrl": format!("{base}lab"),
        "fullLabextensionsUrl": format!("{base}lab/extensions"),
        "fullLicensesUrl": format!("{base}lab/api/licenses"),
        "fullListingsUrl": format!("{base}lab/api/listings"),
        "fullMathjaxUrl": "https://cdnjs.cloudflare.com/ajax/libs/mathjax/2.7.7/MathJax.js",
        "fullSettingsUrl": format!("{base}lab/api/settings"),
        "fullStaticUrl": format!("{base}static/lab"),
        "fullThemesUrl": format!("{base}lab/api/themes"),
        "fullTranslationsApiUrl": format!("{base}lab/api/translations"),
        "fullTreeUrl": format!("{base}lab/tree"),
        "fullWorkspacesApiUrl": format!("{base}lab/api/workspaces"),
        "ignorePlugins": [],
        "labextensionsPath": lab.labextension_dirs,
        "labextensionsUrl": "/lab/extensions",
        "licensesUrl": "/lab/api/licenses",
        "listingsUrl": "/lab/api/listings",
        "mathjaxConfig": "TeX-AMS_HTML-full,Safe",
        "mode": "multiple-document",
        "nbclassic_enabled": false,
        "news": { "disabled": true },
        "notebookStartsKernel": true,
        "notebookVersion": "[2, 17, 0]",
        "preferredPath": "/",
        "quitButton": false,
        "rootUri": format!("file://{root}"),
        "schemasDir": lab.schemas_dir,
        "serverRoot": root,
        "settingsUrl": "/lab/api/settings",
        "staticDir": lab.lab_static,
        "store_id": 0,
        "templatesDir": lab.lab_static,
        "terminalsAvailable": false,
        "themesDir": lab.themes_dir,
        "themesUrl": "/lab/api/themes",
        "token": state.token.as_str(),
        "translationsApiUrl": "/lab/api/translations",
        "treePath": tree_path,
        "treeUrl": "/lab/tree",
        "untracked_message_types": untracked_message_types(),
        "userSettingsDir": lab.state_dir.join("user-settings"),
        "virtualDocumentsUri": format!("file://{root}/.virtual_documents"),
        "workspace": workspace,
        "workspacesApiUrl": "/lab/api/workspaces",
        "workspacesDir": lab.state_dir.join("workspaces"),
        "wsUrl": "",
    });
    let mut map = match config {
        Value::Object(map) => map,
        _ => unreachable!("page config is an object"),
    };
    if let Some(accounts) = &state.accounts {
        // As JupyterHub's single-user servers say it: the front ends then offer "Log Out" and
        // "Hub Control Panel" (the account page) in the File menu.
        let hub_base = base
            .strip_suffix(&format!("user/{}/", accounts.owner))
            .unwrap_or("/");
        map.insert("hubUser".into(), json!(accounts.owner));
        map.insert("hubPrefix".into(), json!(format!("{hub_base}hub/")));
        map.insert("hubHost".into(), json!(""));
        map.insert("hubServerName".into(), json!(""));
    }
    map
}

fn forbidden_page() -> Response {
    (
        StatusCode::FORBIDDEN,
        Html("<!doctype html><title>Forbidden</title><h1>403: Forbidden</h1><p>Open this page with the server's token: <code>?token=&lt;token&gt;</code>.</p>"),
    )
        .into_response()
}

fn unavailable_page(what: &str) -> Response {
    (
        StatusCode::NOT_FOUND,
        Html(format!("<!doctype html><title>Not Found</title><h1>404: Not Found</h1><p>{what} is not installed in the server's Python environment.</p>")),
    )
        .into_response()
}

async fn render(
    state: &AppState,
    headers: &HeaderMap,
    uri: &Uri,
    template_path: std::path::PathBuf,
    config: Map<String, Value>,
) -> Response {
    let credential = auth::credential(state, headers, uri);
    let Some(credential) = credential else {
        return forbidden_page();
    };
    let text = match tokio::fs::read_to_string(&template_path).await {
        Ok(t) => t,
        Err(e) => {
            tracing::error!(path = %template_path.display(), error = %e, "could not read page template");
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                "page template unreadable",
            )
                .into_response();
        }
    };
    let html = match template::render(
        &text,
        &template::Context {
            base_url: &state.base_url,
            ws_url: "",
            page_config: &config,
        },
    ) {
        Ok(h) => h,
        Err(e) => {
            tracing::error!(path = %template_path.display(), error = %e, "could not render page template");
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                "page template unsupported",
            )
                .into_response();
        }
    };
    let mut response = Html(html).into_response();
    let h = response.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("frame-ancestors 'self'"),
    );
    for cookie in auth::page_cookies(state, headers, credential) {
        if let Ok(v) = HeaderValue::from_str(&cookie) {
            h.append(header::SET_COOKIE, v);
        }
    }
    response
}

async fn lab_page(
    state: AppState,
    headers: HeaderMap,
    uri: Uri,
    tree_path: &str,
    workspace: &str,
) -> Response {
    let Some(lab) = state.lab.clone() else {
        return unavailable_page("JupyterLab");
    };
    let config = page_config(&state, &lab, tree_path, workspace);
    render(
        &state,
        &headers,
        &uri,
        lab.lab_static.join("index.html"),
        config,
    )
    .await
}

pub(crate) async fn lab(State(state): State<AppState>, headers: HeaderMap, uri: Uri) -> Response {
    lab_page(state, headers, uri, "", "default").await
}

pub(crate) async fn lab_tree(
    State(state): State<AppState>,
    UrlPath(path): UrlPath<String>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    lab_page(state, headers, uri, path.trim_matches('/'), "default").await
}

pub(crate) async fn lab_workspace(
    State(state): State<AppState>,
    UrlPath(path): UrlPath<String>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let (workspace, tree) = match path.split_once("/tree/") {
        Some((w, t)) => (w.to_owned(), t.trim_matches('/').to_owned()),
        None => (path.trim_matches('/').to_owned(), String::new()),
    };
    lab_page(state, headers, uri, &tree, &workspace).await
}

async fn notebook_page(
    state: AppState,
    headers: HeaderMap,
    uri: Uri,
    template_name: &str,
    tree_path: Option<&str>,
) -> Response {
    let Some(lab) = state.lab.clone() else {
        return unavailable_page("Jupyter Notebook");
    };
    let Some(nb) = lab.notebook.clone() else {
        return unavailable_page("Jupyter Notebook");
    };
    let base = state.base_url.clone();
    let mut config = page_config(&state, &lab, tree_path.unwrap_or(""), "default");
    let overrides = json!({
        "appName": "Jupyter Notebook",
        "appNamespace": "notebook",
        "appVersion": nb.version,
        "cacheFiles": true,
        "frontendUrl": base,
        "fullStaticUrl": format!("{base}static/notebook"),
        "staticDir": nb.static_dir,
        "templatesDir": nb.templates_dir,
    });
    if let Value::Object(o) = overrides {
        config.extend(o);
    }
    if tree_path.is_none() {
        config.remove("treePath");
    }
    render(
        &state,
        &headers,
        &uri,
        nb.templates_dir.join(template_name),
        config,
    )
    .await
}

/// `file`, `notebook` or `directory` for a path under the root, through the contents API so the
/// same confinement (symlinks resolved, hidden files refused) decides; `None` when not served.
async fn content_kind(state: &AppState, path: &str) -> Option<&'static str> {
    let options = GetOptions {
        content: false,
        ..GetOptions::default()
    };
    state
        .contents
        .get(path, options)
        .await
        .ok()
        .map(|model| model.kind)
}

pub(crate) async fn notebook_tree(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    notebook_page(state, headers, uri, "tree.html", Some("")).await
}

pub(crate) async fn notebook_tree_path(
    State(state): State<AppState>,
    UrlPath(path): UrlPath<String>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let path = path.trim_matches('/').to_owned();
    // A file under /tree opens in its own page, as notebook does.
    if matches!(content_kind(&state, &path).await, Some("file" | "notebook")) {
        let page = if path.ends_with(".ipynb") {
            "notebooks"
        } else {
            "edit"
        };
        return Redirect::to(&format!("{}{page}/{path}", state.base_url)).into_response();
    }
    notebook_page(state, headers, uri, "tree.html", Some(&path)).await
}

pub(crate) async fn notebook_notebooks(
    State(state): State<AppState>,
    UrlPath(path): UrlPath<String>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let path = path.trim_matches('/').to_owned();
    if content_kind(&state, &path).await == Some("directory") {
        return Redirect::to(&format!("{}tree/{path}", state.base_url)).into_response();
    }
    notebook_page(state, headers, uri, "notebooks.html", None).await
}

pub(crate) async fn notebook_edit(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    notebook_page(state, headers, uri, "edit.html", None).await
}

pub(crate) async fn notebook_consoles(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    notebook_page(state, headers, uri, "consoles.html", None).await
}
