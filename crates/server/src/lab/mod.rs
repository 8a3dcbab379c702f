//! The JupyterLab and Notebook 7 front ends, served from the Python environment's installed
//! packages: index pages with their page config, static files, and the `/lab/api/...`
//! endpoints the front ends call (settings, themes, workspaces, translations, listings), and
//! `/lsp/status`.

mod api;
mod files;
mod pages;
mod template;

pub(crate) use api::recursive_update;

use std::path::{Path, PathBuf};

use axum::routing::get;
use axum::Router;

use crate::AppState;

/// Where the front ends' files are, and where their per-user state is kept.
#[derive(Debug, Clone)]
pub struct LabAssets {
    /// JupyterLab's built application (`share/jupyter/lab/static`), holding `index.html`.
    pub lab_static: PathBuf,
    /// Core plugin settings schemas (`share/jupyter/lab/schemas`).
    pub schemas_dir: PathBuf,
    /// Theme CSS and assets (`share/jupyter/lab/themes`).
    pub themes_dir: PathBuf,
    /// Prebuilt extension directories, searched in order.
    pub labextension_dirs: Vec<PathBuf>,
    /// Directories with `overrides.json` / `overrides.d/*.json` settings defaults.
    pub app_settings_dirs: Vec<PathBuf>,
    /// Notebook 7's built application and templates, when the `notebook` package is installed.
    pub notebook: Option<NotebookAssets>,
    /// jupyter_server's static files (favicons), when found.
    pub server_static: Option<PathBuf>,
    /// JupyterLab's version.
    pub lab_version: String,
    /// Where user settings, workspaces and front-end config sections are written.
    pub state_dir: PathBuf,
    /// The directory notebooks live in, as the front ends show it.
    pub root_dir: PathBuf,
}

#[derive(Debug, Clone)]
pub struct NotebookAssets {
    pub static_dir: PathBuf,
    pub templates_dir: PathBuf,
    pub version: String,
}

impl LabAssets {
    /// Finds JupyterLab (and Notebook 7) under a Python environment `prefix`. `None` when
    /// JupyterLab is not installed there. State goes under `<data_dir>/lab`.
    pub fn discover(prefix: &Path, data_dir: &Path, root_dir: &Path) -> Option<LabAssets> {
        let app_dir = prefix.join("share/jupyter/lab");
        let lab_static = app_dir.join("static");
        if !lab_static.join("index.html").is_file() {
            return None;
        }
        let lab_version = read_json(&lab_static.join("package.json"))
            .and_then(|p| p.get("version")?.as_str().map(str::to_owned))
            .unwrap_or_default();
        let site_packages = site_packages(prefix);
        let notebook = site_packages.iter().find_map(|sp| {
            let pkg = sp.join("notebook");
            let templates_dir = pkg.join("templates");
            let static_dir = pkg.join("static");
            if !templates_dir.join("tree.html").is_file() {
                return None;
            }
            let version = std::fs::read_to_string(pkg.join("_version.py"))
                .ok()
                .and_then(|text| {
                    text.lines()
                        .find_map(|l| l.strip_prefix("__version__ = "))
                        .map(|v| v.trim().trim_matches('"').trim_matches('\'').to_owned())
                })
                .unwrap_or_default();
            Some(NotebookAssets {
                static_dir,
                templates_dir,
                version,
            })
        });
        let server_static = site_packages
            .iter()
            .map(|sp| sp.join("jupyter_server/static"))
            .find(|p| p.is_dir());
        let mut labextension_dirs = vec![prefix.join("share/jupyter/labextensions")];
        if let Some(home) = std::env::var_os("HOME") {
            labextension_dirs.push(PathBuf::from(home).join(".local/share/jupyter/labextensions"));
        }
        labextension_dirs.push(PathBuf::from("/usr/local/share/jupyter/labextensions"));
        labextension_dirs.push(PathBuf::from("/usr/share/jupyter/labextensions"));
        labextension_dirs.dedup();
        let state_dir = data_dir.join("lab");
        Some(LabAssets {
            schemas_dir: app_dir.join("schemas"),
            themes_dir: app_dir.join("themes"),
            app_settings_dirs: vec![app_dir.join("settings"), state_dir.clone()],
            lab_static,
            labextension_dirs,
            notebook,
            server_static,
            lab_version,
            state_dir,
            root_dir: root_dir.to_owned(),
        })
    }
}

fn site_packages(prefix: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for lib in ["lib", "lib64"] {
        let Ok(entries) = std::fs::read_dir(prefix.join(lib)) else {
            continue;
        };
        let mut dirs: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().starts_with("python"))
            .map(|e| e.path().join("site-packages"))
            .filter(|p| p.is_dir())
            .collect();
        dirs.sort();
        found.extend(dirs);
    }
    found
}

pub(crate) fn read_json(path: &Path) -> Option<serde_json::Value> {
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

/// Writes `bytes` to `path` through a temporary file and a rename.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        path.file_name().unwrap_or_default().to_string_lossy(),
        std::process::id()
    ));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

/// Joins a URL path under `base`, refusing anything that could leave it.
pub(crate) fn confined(base: &Path, rel: &str) -> Option<PathBuf> {
    let mut out = base.to_owned();
    for part in rel.split('/') {
        match part {
            "" | "." => {}
            ".." => return None,
            p if p.contains('\\') || p.contains('\0') => return None,
            p => out.push(p),
        }
    }
    Some(out)
}

/// Lab API routes; they need the token (or the cookie the pages set).
pub(crate) fn protected_router() -> Router<AppState> {
    Router::new()
        .route("/lab/api/settings", get(api::settings_list))
        .route("/lab/api/settings/", get(api::settings_list))
        .route(
            "/lab/api/settings/{*id}",
            get(api::settings_get).put(api::settings_put),
        )
        .route("/lab/api/workspaces", get(api::workspaces_list))
        .route("/lab/api/workspaces/", get(api::workspaces_list))
        .route(
            "/lab/api/workspaces/{*id}",
            get(api::workspace_get)
                .put(api::workspace_put)
                .delete(api::workspace_delete),
        )
        .route("/lab/api/translations", get(api::translations_list))
        .route("/lab/api/translations/", get(api::translations_list))
        .route("/lab/api/translations/{locale}", get(api::translation_get))
        .route("/lab/api/listings/{*path}", get(api::listings))
        .route("/lab/api/news", get(api::news))
        .route("/lab/api/update", get(api::update))
        .route("/lsp/status", get(api::lsp_status))
}

/// Pages (which check the token themselves, to set the cookie) and static files (public, as in
/// jupyter_server).
pub(crate) fn public_router() -> Router<AppState> {
    Router::new()
        .route("/", get(pages::root))
        .route("/lab", get(pages::lab))
        .route("/lab/", get(pages::lab))
        .route("/lab/tree/{*path}", get(pages::lab_tree))
        .route("/lab/workspaces/{*path}", get(pages::lab_workspace))
        .route("/tree", get(pages::notebook_tree))
        .route("/tree/", get(pages::notebook_tree))
        .route("/tree/{*path}", get(pages::notebook_tree_path))
        .route("/notebooks/{*path}", get(pages::notebook_notebooks))
        .route("/edit/{*path}", get(pages::notebook_edit))
        .route("/consoles", get(pages::notebook_consoles))
        .route("/consoles/{*path}", get(pages::notebook_consoles))
        .route("/static/lab/{*path}", get(files::lab_static))
        .route("/static/notebook/{*path}", get(files::notebook_static))
        .route("/static/favicons/{*path}", get(files::favicons))
        .route("/lab/extensions/{*path}", get(files::labextension))
        .route("/lab/api/themes/{*path}", get(files::theme))
}
