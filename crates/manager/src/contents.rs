//! The Contents API behind `/api/contents`: directories, notebooks and files under one root, as
//! jupyter_server's `FileContentsManager` (with large-file uploads) serves them.
//!
//! Every path is confined to the root: `..` is refused and symlinks are resolved, so nothing
//! outside the root is read, written, renamed or deleted through one. Hidden entries (a segment
//! starting with `.`) are refused, as with jupyter_server's `allow_hidden = False`. Saves are
//! atomic (temporary file, fsync, rename); notebooks are validated as nbformat 4 before anything
//! touches the disk and written exactly as nbformat writes them. Checkpoints live in
//! `.ipynb_checkpoints/<name>-checkpoint.<ext>` beside the file, with the one id `checkpoint`.
//!
//! A user's workspace is a directory that user's kernel can write while the server works in it,
//! so a path checked here may be a symlink to anywhere by the time it is used. When the
//! workspace has an owner (accounts mode), every operation therefore runs on a thread of its own
//! whose real, effective and saved uid and gid are the owner's, with no supplementary groups and
//! no capabilities: whatever a race makes a path point to, the server can read, write or give
//! away only what the user could themselves, and what it creates is the user's. Without an
//! owner (the single-user server) file IO runs on the blocking pool.

mod fsio;
mod notebook;
mod paths;

use std::fs::{File, Metadata};

use rustix::fs::{Mode, OFlags};
use std::io::{self, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::ManagerError;
use paths::{api_path, io_error, is_hidden, resolve, split_parent, Target};

const CHECKPOINT_DIR: &str = ".ipynb_checkpoints";
const CHECKPOINT_ID: &str = "checkpoint";
/// Listed never, as jupyter_server's default `hide_globs`.
const HIDDEN_SUFFIXES: [&str; 5] = [".pyc", ".pyo", ".so", ".dylib", "~"];
const HIDDEN_NAMES: [&str; 2] = ["__pycache__", ".DS_Store"];

/// Where contents live and how much may be written.
#[derive(Debug, Clone)]
pub struct ContentsConfig {
    pub root_dir: PathBuf,
    /// Largest file one save or one chunked upload may write.
    pub upload_bytes_max: u64,
    /// The uid and gid every file operation here runs as (the user's sandbox identity, so the
    /// server can do no more than the user could, and their kernel can edit what they saved);
    /// `None` runs them as the server.
    pub owner: Option<(u32, u32)>,
}

/// The contents model, with jupyter_server's keys in its order.
#[derive(Debug, Clone, Serialize)]
pub struct ContentsModel {
    pub name: String,
    pub path: String,
    pub last_modified: String,
    pub created: String,
    pub content: Option<Value>,
    pub format: Option<&'static str>,
    pub mimetype: Option<&'static str>,
    pub size: Option<u64>,
    pub writable: bool,
    pub hash: Option<String>,
    pub hash_algorithm: Option<&'static str>,
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// Why a notebook failed validation, when it was read or saved anyway.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// One checkpoint of a file.
#[derive(Debug, Clone, Serialize)]
pub struct CheckpointModel {
    pub id: String,
    pub last_modified: String,
}

/// What a GET asks for.
#[derive(Debug, Clone)]
pub struct GetOptions {
    pub content: bool,
    /// `file`, `notebook` or `directory`: what the client expects.
    pub kind: Option<String>,
    /// `text` or `base64`, for files.
    pub format: Option<String>,
    pub hash: bool,
}

impl Default for GetOptions {
    fn default() -> Self {
        GetOptions {
            content: true,
            kind: None,
            format: None,
            hash: false,
        }
    }
}

/// The body of a PUT, POST or PATCH.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ContentsRequest {
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub format: Option<String>,
    pub content: Option<Value>,
    /// Large-file upload: 1, 2, … for each chunk, -1 for the last.
    pub chunk: Option<i64>,
    /// PATCH: the new path.
    pub path: Option<String>,
    /// POST: copy this file.
    pub copy_from: Option<String>,
    /// POST: extension of the new untitled file.
    pub ext: Option<String>,
}

/// Contents under one root directory.
pub struct ContentsManager {
    fs: Arc<Fs>,
}

impl ContentsManager {
    pub fn new(config: ContentsConfig) -> ContentsManager {
        let root = config
            .root_dir
            .canonicalize()
            .unwrap_or(config.root_dir.clone());
        ContentsManager {
            fs: Arc::new(Fs {
                root,
                upload_bytes_max: config.upload_bytes_max,
                owner: config.owner,
            }),
        }
    }

    /// The canonical root directory.
    pub fn root(&self) -> &Path {
        &self.fs.root
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Fs) -> Result<T, ManagerError> + Send + 'static,
    ) -> Result<T, ManagerError> {
        let fs = self.fs.clone();
        let Some((uid, gid)) = fs.owner else {
            return tokio::task::spawn_blocking(move || f(&fs))
                .await
                .map_err(|e| ManagerError::internal("contents_task_failed", e.to_string()))?;
        };
        // A thread of its own, never returned to a pool: its credentials are dropped for good.
        let (tx, rx) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name("contents-as-owner".into())
            .spawn(move || {
                let _ = tx.send(become_owner(uid, gid).and_then(|()| f(&fs)));
            })
            .map_err(|e| ManagerError::internal("contents_task_failed", e.to_string()))?;
        rx.await.map_err(|_| {
            ManagerError::internal(
                "contents_task_failed",
                "the file operation ended without an answer",
            )
        })?
    }

    /// Removes the hidden temporary files (`.~<name>.<n>.save`, `.~<name>.upload`) that saves and
    /// uploads interrupted by a crash left anywhere in the tree, when they were last written
    /// before `older_than` (so a save in flight is never touched). Symlinks are not followed.
    /// Returns how many were removed.
    pub async fn remove_stale_temporaries(
        &self,
        older_than: SystemTime,
    ) -> Result<usize, ManagerError> {
        self.blocking(move |fs| Ok(fs.remove_stale_temporaries(older_than)))
            .await
    }

    /// [`ContentsManager::remove_stale_temporaries`] of everything written before now, on a
    /// task of its own; what it removed is logged.
    pub fn remove_stale_temporaries_in_background(self: &Arc<Self>) {
        let contents = self.clone();
        let started = SystemTime::now();
        tokio::spawn(async move {
            match contents.remove_stale_temporaries(started).await {
                Ok(0) => {}
                Ok(removed) => tracing::info!(
                    root = %contents.root().display(),
                    removed,
                    "removed temporary files that interrupted saves left behind"
                ),
                Err(e) => {
                    tracing::warn!(root = %contents.root().display(), error = %e, "could not look for temporary files interrupted saves left behind")
                }
            }
        });
    }

    /// The model of a file, notebook or directory (a directory lists its entries).
    pub async fn get(
        &self,
        path: &str,
        options: GetOptions,
    ) -> Result<ContentsModel, ManagerError> {
        let api = api_path(path)?;
        if is_hidden(&api) {
            return Err(not_served(&api));
        }
        self.blocking(move |fs| fs.get(&api, &options)).await
    }

    /// The bytes of a file and its guessed mimetype, for `/files/<path>` (downloads, images in
    /// Markdown): the same confinement and hidden-file rule as [`ContentsManager::get`].
    pub async fn read_file(
        &self,
        path: &str,
    ) -> Result<(Vec<u8>, Option<&'static str>), ManagerError> {
        let api = api_path(path)?;
        if is_hidden(&api) {
            return Err(not_served(&api));
        }
        self.blocking(move |fs| {
            let target = fs.resolve(&api)?;
            match &target.meta {
                Some(meta) if meta.is_file() => {}
                _ => {
                    return Err(ManagerError::new(
                        crate::ErrorKind::NotFound,
                        "file_not_found",
                        format!("File not found: {api}"),
                    ))
                }
            }
            let bytes =
                fsio::read_all_beneath(&fs.root, &target.real).map_err(|e| io_error(&api, e))?;
            Ok((bytes, fsio::guess_mimetype(target.name())))
        })
        .await
    }

    /// PUT: saves `request` at `path`; `None` (an empty body) creates an untitled file in the
    /// directory `path`. Returns the model and whether something new was created.
    pub async fn put(
        &self,
        path: &str,
        request: Option<ContentsRequest>,
    ) -> Result<(ContentsModel, bool), ManagerError> {
        let api = api_path(path)?;
        let Some(mut request) = request else {
            return self
                .blocking(move |fs| fs.new_untitled(&api, None, ""))
                .await
                .map(|m| (m, true));
        };
        if request.copy_from.is_some() {
            return Err(ManagerError::bad_request(
                "copy_with_put",
                "Cannot copy with PUT, only POST",
            ));
        }
        let other_hidden = request
            .path
            .as_deref()
            .is_some_and(|p| api_path(p).map(|p| is_hidden(&p)).unwrap_or(true));
        if is_hidden(&api) || other_hidden {
            return Err(ManagerError::bad_request(
                "hidden_path",
                format!("Cannot create file or directory '{api}'"),
            ));
        }
        normalise_kind(&mut request.kind);
        self.blocking(move |fs| {
            if resolve(&fs.root, &api)?.is_file() {
                fs.save(&api, request).map(|m| (m, false))
            } else {
                fs.create(&api, request).map(|m| (m, true))
            }
        })
        .await
    }

    /// POST: a new untitled file, notebook or directory in the directory `path`, or a copy of
    /// `copy_from` there.
    pub async fn post(
        &self,
        path: &str,
        request: Option<ContentsRequest>,
    ) -> Result<ContentsModel, ManagerError> {
        let api = api_path(path)?;
        let mut request = request.unwrap_or_default();
        let copy_from = match request.copy_from.take().filter(|c| !c.is_empty()) {
            Some(from) => {
                let from = api_path(&from)?;
                if is_hidden(&api) || is_hidden(&from) {
                    return Err(ManagerError::bad_request(
                        "hidden_path",
                        format!("Cannot copy file or directory '{api}'"),
                    ));
                }
                Some(from)
            }
            None => None,
        };
        normalise_kind(&mut request.kind);
        self.blocking(move |fs| {
            if resolve(&fs.root, &api)?.is_file() {
                return Err(ManagerError::bad_request(
                    "post_to_file",
                    "Cannot POST to files, use PUT instead.",
                ));
            }
            match copy_from {
                Some(from) => fs.copy(&from, &api),
                None => fs.new_untitled(
                    &api,
                    request.kind.as_deref(),
                    request.ext.as_deref().unwrap_or(""),
                ),
            }
        })
        .await
    }

    /// PATCH: renames `path` to `request.path`.
    pub async fn rename(
        &self,
        path: &str,
        request: ContentsRequest,
    ) -> Result<ContentsModel, ManagerError> {
        let api = api_path(path)?;
        let new_api = match request.path.as_deref() {
            Some(p) => api_path(p)?,
            None => api.clone(),
        };
        if is_hidden(&api) || is_hidden(&new_api) {
            return Err(ManagerError::bad_request(
                "hidden_path",
                format!("Cannot rename file or directory '{api}'"),
            ));
        }
        self.blocking(move |fs| fs.rename(&api, &new_api)).await
    }

    /// DELETE: a file, or an empty directory (checkpoints left in it do not count).
    pub async fn delete(&self, path: &str) -> Result<(), ManagerError> {
        let api = api_path(path)?;
        if api.is_empty() {
            return Err(ManagerError::bad_request(
                "delete_root",
                "Can't delete root",
            ));
        }
        if is_hidden(&api) {
            return Err(ManagerError::bad_request(
                "hidden_path",
                format!("Cannot delete file or directory '{api}'"),
            ));
        }
        self.blocking(move |fs| fs.delete(&api)).await
    }

    pub async fn create_checkpoint(&self, path: &str) -> Result<CheckpointModel, ManagerError> {
        let api = api_path(path)?;
        self.blocking(move |fs| fs.create_checkpoint(&api)).await
    }

    pub async fn list_checkpoints(&self, path: &str) -> Result<Vec<CheckpointModel>, ManagerError> {
        let api = api_path(path)?;
        self.blocking(move |fs| fs.list_checkpoints(&api)).await
    }

    pub async fn restore_checkpoint(&self, path: &str, id: &str) -> Result<(), ManagerError> {
        let api = api_path(path)?;
        let id = id.to_owned();
        self.blocking(move |fs| fs.restore_checkpoint(&api, &id))
            .await
    }

    pub async fn delete_checkpoint(&self, path: &str, id: &str) -> Result<(), ManagerError> {
        let api = api_path(path)?;
        let id = id.to_owned();
        self.blocking(move |fs| fs.delete_checkpoint(&api, &id))
            .await
    }
}

/// Unknown types are saved as files, as jupyter_server does; an empty type is no type.
fn normalise_kind(kind: &mut Option<String>) {
    match kind.as_deref() {
        Some("") => *kind = None,
        Some("file" | "notebook" | "directory") | None => {}
        Some(_) => *kind = Some("file".into()),
    }
}

/// Makes the calling thread (only it: these are the raw per-thread system calls) the user `uid`
/// with group `gid` and no supplementary groups, for good: real, effective and saved ids, so it
/// holds no capability and cannot become root again. Refuses when the switch did not happen.
fn become_owner(uid: u32, gid: u32) -> Result<(), ManagerError> {
    use rustix::process::{Gid, Uid};
    let failed = |e: &dyn std::fmt::Display| {
        ManagerError::internal(
            "contents_identity_failed",
            format!(
                "The server could not act on this workspace as its owner (uid {uid}): {e}. In accounts mode with sandboxes the server must run as root."
            ),
        )
    };
    let (uid_, gid_) = (Uid::from_raw(uid), Gid::from_raw(gid));
    rustix::thread::set_thread_groups(&[]).map_err(|e| failed(&e))?;
    rustix::thread::set_thread_res_gid(gid_, gid_, gid_).map_err(|e| failed(&e))?;
    rustix::thread::set_thread_res_uid(uid_, uid_, uid_).map_err(|e| failed(&e))?;
    if rustix::process::geteuid() != uid_ || rustix::process::getegid() != gid_ {
        return Err(failed(&"the thread's ids did not change"));
    }
    Ok(())
}

fn not_served(api: &str) -> ManagerError {
    ManagerError::contents_not_found(format!("file or directory '{api}' does not exist"))
}

fn is_listed(name: &str) -> bool {
    !name.starts_with('.')
        && !HIDDEN_NAMES.contains(&name)
        && !HIDDEN_SUFFIXES.iter().any(|s| name.ends_with(s))
}

fn join_api(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_owned()
    } else {
        format!("{dir}/{name}")
    }
}

fn created_time(meta: &Metadata) -> SystemTime {
    meta.created().unwrap_or_else(|_| {
        SystemTime::UNIX_EPOCH
            + Duration::new(
                u64::try_from(meta.ctime()).unwrap_or(0),
                u32::try_from(meta.ctime_nsec()).unwrap_or(0),
            )
    })
}

fn is_writable(path: &Path) -> bool {
    nix::unistd::access(path, nix::unistd::AccessFlags::W_OK).is_ok()
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn new_notebook() -> Value {
    serde_json::json!({"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5})
}

/// Python's `os.path.splitext` on a file name.
fn split_ext(name: &str) -> (&str, &str) {
    let stem_start = name.len() - name.trim_start_matches('.').len();
    match name[stem_start..].rfind('.') {
        Some(i) => name.split_at(stem_start + i),
        None => (name, ""),
    }
}

/// jupyter_server's `copy_pat.sub(".", name)`: drops `-Copy<digits>` before a dot.
fn strip_copy_suffix(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut rest = name;
    while let Some(i) = rest.find("-Copy") {
        let after = &rest[i + 5..];
        let digits = after.len() - after.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        if after[digits..].starts_with('.') {
            out.push_str(&rest[..i]);
            rest = &after[digits..];
        } else {
            out.push_str(&rest[..i + 5]);
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// The synchronous core; runs on the blocking pool.
struct Fs {
    root: PathBuf,
    upload_bytes_max: u64,
    owner: Option<(u32, u32)>,
}

impl Fs {
    fn remove_stale_temporaries(&self, older_than: SystemTime) -> usize {
        /// Deep enough for any real project; a deeper tree is left as it is.
        const DEPTH_MAX: usize = 64;
        /// A root with more directories is swept in part (a home directory served in token mode).
        const DIRS_MAX: usize = 20_000;
        let mut removed = 0;
        let mut visited = 0;
        let mut pending = vec![(self.root.clone(), 0)];
        while let Some((dir, depth)) = pending.pop() {
            visited += 1;
            if visited > DIRS_MAX {
                break;
            }
            let Ok(names) = fsio::list_beneath(&self.root, &dir) else {
                continue;
            };
            for name in names {
                let path = dir.join(&name);
                let Ok(meta) = fsio::symlink_metadata_beneath(&self.root, &path) else {
                    continue;
                };
                if meta.is_dir() && depth < DEPTH_MAX {
                    pending.push((path, depth + 1));
                } else if meta.is_file()
                    && name.starts_with(fsio::TEMP_PREFIX)
                    && (name.ends_with(".save") || name.ends_with(".upload"))
                    && meta.modified().is_ok_and(|m| m < older_than)
                    && fsio::remove_file_beneath(&self.root, &path).is_ok()
                {
                    removed += 1;
                }
            }
        }
        removed
    }

    fn resolve(&self, api: &str) -> Result<Target, ManagerError> {
        resolve(&self.root, api)
    }

    fn base_model(
        &self,
        api: &str,
        real: &Path,
        meta: &Metadata,
        kind: &'static str,
    ) -> ContentsModel {
        ContentsModel {
            name: split_parent(api).1.to_owned(),
            path: api.to_owned(),
            last_modified: fsio::iso_time(meta.modified().unwrap_or(SystemTime::UNIX_EPOCH)),
            created: fsio::iso_time(created_time(meta)),
            content: None,
            format: None,
            mimetype: None,
            size: (kind != "directory").then_some(meta.len()),
            writable: is_writable(real),
            hash: None,
            hash_algorithm: None,
            kind,
            message: None,
        }
    }

    fn get(&self, api: &str, options: &GetOptions) -> Result<ContentsModel, ManagerError> {
        let target = self.resolve(api)?;
        let Some(meta) = &target.meta else {
            return Err(not_served(api));
        };
        let kind = options.kind.as_deref();
        if meta.is_dir() {
            if !matches!(kind, None | Some("directory")) {
                return Err(ManagerError::bad_request(
                    "bad_type",
                    format!("{api} is a directory, not a {}", kind.unwrap_or_default()),
                ));
            }
            return self.dir_model(&target, meta, options.content);
        }
        if kind == Some("directory") {
            return Err(ManagerError::bad_request(
                "bad_type",
                format!("{api} is not a directory"),
            ));
        }
        if kind == Some("notebook") || (kind.is_none() && api.ends_with(".ipynb")) {
            self.notebook_model(&target, meta, options)
        } else {
            self.file_model(&target, meta, options)
        }
    }

    fn dir_model(
        &self,
        target: &Target,
        meta: &Metadata,
        content: bool,
    ) -> Result<ContentsModel, ManagerError> {
        let api = target.api.as_str();
        let mut model = self.base_model(api, &target.real, meta, "directory");
        if !content {
            return Ok(model);
        }
        let names = fsio::list_beneath(&self.root, &target.real).map_err(|e| io_error(api, e))?;
        let mut listing = Vec::new();
        for name in names {
            if !is_listed(&name) {
                continue;
            }
            let path = target.real.join(&name);
            // A link that leads out of the root (or nowhere) is not listed.
            let Ok(entry_meta) = fsio::metadata_beneath(&self.root, &path) else {
                continue;
            };
            let entry_api = join_api(api, &name);
            let item = if entry_meta.is_dir() {
                self.base_model(&entry_api, &path, &entry_meta, "directory")
            } else if !entry_meta.is_file() {
                continue;
            } else if name.ends_with(".ipynb") {
                self.base_model(&entry_api, &path, &entry_meta, "notebook")
            } else {
                let mut m = self.base_model(&entry_api, &path, &entry_meta, "file");
                m.mimetype = fsio::guess_mimetype(&name);
                m
            };
            listing
                .push(serde_json::to_value(item).map_err(|e| {
                    ManagerError::internal("contents_encode_failed", e.to_string())
                })?);
        }
        model.content = Some(Value::Array(listing));
        model.format = Some("json");
        Ok(model)
    }

    fn read(&self, target: &Target) -> Result<Vec<u8>, ManagerError> {
        if !target.is_file() {
            return Err(ManagerError::bad_request(
                "not_a_file",
                format!("Cannot read non-file {}", target.api),
            ));
        }
        fsio::read_all_beneath(&self.root, &target.real).map_err(|e| io_error(&target.api, e))
    }

    fn file_model(
        &self,
        target: &Target,
        meta: &Metadata,
        options: &GetOptions,
    ) -> Result<ContentsModel, ManagerError> {
        let mut model = self.base_model(&target.api, &target.real, meta, "file");
        model.mimetype = fsio::guess_mimetype(target.name());
        if !options.content && !options.hash {
            return Ok(model);
        }
        let bytes = self.read(target)?;
        if options.content {
            let (content, format) = match options.format.as_deref() {
                Some("base64") => (fsio::base64_encode_lines(&bytes), "base64"),
                format => match std::str::from_utf8(&bytes) {
                    Ok(text) => (text.to_owned(), "text"),
                    Err(_) if format == Some("text") => {
                        return Err(ManagerError::bad_request(
                            "bad_format",
                            format!("{} is not UTF-8 encoded", target.api),
                        ))
                    }
                    Err(_) => (fsio::base64_encode_lines(&bytes), "base64"),
                },
            };
            model.mimetype = model.mimetype.or(Some(if format == "text" {
                "text/plain"
            } else {
                "application/octet-stream"
            }));
            model.content = Some(Value::String(content));
            model.format = Some(format);
        }
        if options.hash {
            model.hash = Some(sha256_hex(&bytes));
            model.hash_algorithm = Some("sha256");
        }
        Ok(model)
    }

    fn notebook_model(
        &self,
        target: &Target,
        meta: &Metadata,
        options: &GetOptions,
    ) -> Result<ContentsModel, ManagerError> {
        let mut model = self.base_model(&target.api, &target.real, meta, "notebook");
        if !options.content && !options.hash {
            return Ok(model);
        }
        let bytes = self.read(target)?;
        if options.content {
            let unreadable = |e: &dyn std::fmt::Display| {
                ManagerError::bad_request(
                    "unreadable_notebook",
                    format!("Unreadable Notebook: {} {e}", target.api),
                )
            };
            let mut nb: Value = serde_json::from_slice(&bytes).map_err(|e| unreadable(&e))?;
            if nb.get("nbformat").and_then(Value::as_u64) != Some(4) {
                return Err(unreadable(&"only nbformat 4 notebooks are supported"));
            }
            if let Err(e) = notebook::validate(&nb) {
                model.message = Some(format!("Notebook validation failed: {e}"));
            }
            notebook::rejoin_lines(&mut nb);
            notebook::mark_untrusted(&mut nb);
            model.content = Some(nb);
            model.format = Some("json");
        }
        if options.hash {
            model.hash = Some(sha256_hex(&bytes));
            model.hash_algorithm = Some("sha256");
        }
        Ok(model)
    }

    fn check_size(&self, len: u64) -> Result<(), ManagerError> {
        if len > self.upload_bytes_max {
            return Err(ManagerError::upload_too_large(len, self.upload_bytes_max));
        }
        Ok(())
    }

    /// The parent of `target` must be an existing directory.
    fn check_parent(&self, target: &Target) -> Result<(), ManagerError> {
        let parent = target.os.parent().unwrap_or(&self.root);
        if !parent.is_dir() {
            return Err(ManagerError::contents_not_found(format!(
                "No such parent directory: {}",
                split_parent(&target.api).0
            )));
        }
        Ok(())
    }

    fn decode_file_content(
        &self,
        api: &str,
        request: &ContentsRequest,
    ) -> Result<Vec<u8>, ManagerError> {
        let Some(Value::String(content)) = &request.content else {
            return Err(ManagerError::bad_request(
                "bad_content",
                format!("Encoding error saving {api}: file content must be a string"),
            ));
        };
        match request.format.as_deref() {
            Some("text") => Ok(content.as_bytes().to_vec()),
            Some("base64") => fsio::base64_decode(content).map_err(|e| {
                ManagerError::bad_request(
                    "bad_content",
                    format!("Encoding error saving {api}: {e}"),
                )
            }),
            _ => Err(ManagerError::bad_request(
                "bad_format",
                "Must specify format of file contents as 'text' or 'base64'",
            )),
        }
    }

    /// Saves an existing or new entry and returns its model without content.
    fn save(&self, api: &str, request: ContentsRequest) -> Result<ContentsModel, ManagerError> {
        if let Some(chunk) = request.chunk {
            return self.save_chunk(api, request, chunk);
        }
        let Some(kind) = request.kind.clone() else {
            return Err(ManagerError::bad_request(
                "type_missing",
                "No file type provided",
            ));
        };
        if request.content.is_none() && kind != "directory" {
            return Err(ManagerError::bad_request(
                "content_missing",
                "No file content provided",
            ));
        }
        if api.is_empty() && kind != "directory" {
            return Err(ManagerError::bad_request(
                "is_a_directory",
                "Cannot save a file over the root directory",
            ));
        }
        let target = self.resolve(api)?;
        let over_directory = || {
            ManagerError::bad_request(
                "is_a_directory",
                format!("Cannot save {api}: it is a directory"),
            )
        };
        match kind.as_str() {
            "notebook" => {
                let nb = request.content.as_ref().unwrap_or(&Value::Null);
                notebook::validate(nb)
                    .map_err(|e: String| ManagerError::invalid_notebook(api, &e))?;
                if target.is_dir() {
                    return Err(over_directory());
                }
                self.check_parent(&target)?;
                let bytes = notebook::to_disk_bytes(nb);
                self.check_size(bytes.len() as u64)?;
                fsio::atomic_write(&self.root, &target.real, &bytes)
                    .map_err(|e| io_error(api, e))?;
                if self.list_checkpoints(api)?.is_empty() {
                    self.create_checkpoint(api)?;
                }
            }
            "file" => {
                let bytes = self.decode_file_content(api, &request)?;
                self.check_size(bytes.len() as u64)?;
                if target.is_dir() {
                    return Err(over_directory());
                }
                self.check_parent(&target)?;
                fsio::atomic_write(&self.root, &target.real, &bytes)
                    .map_err(|e| io_error(api, e))?;
            }
            "directory" => {
                if target.meta.is_some() && !target.is_dir() {
                    return Err(ManagerError::bad_request(
                        "not_a_directory",
                        format!("Not a directory: {api}"),
                    ));
                }
                if target.meta.is_none() {
                    self.check_parent(&target)?;
                    fsio::create_dir_beneath(&self.root, &target.real)
                        .map_err(|e| io_error(api, e))?;
                }
            }
            other => {
                return Err(ManagerError::bad_request(
                    "bad_type",
                    format!("Unhandled contents type: {other}"),
                ))
            }
        }
        self.get(
            api,
            &GetOptions {
                content: false,
                ..GetOptions::default()
            },
        )
    }

    /// One chunk of a large-file upload. Chunks are assembled in a hidden file beside the
    /// target, which replaces the target atomically when the last chunk (-1) arrives, so an
    /// abandoned or refused upload leaves the target as it was.
    fn save_chunk(
        &self,
        api: &str,
        request: ContentsRequest,
        chunk: i64,
    ) -> Result<ContentsModel, ManagerError> {
        match request.kind.as_deref() {
            Some("file") => {}
            None => {
                return Err(ManagerError::bad_request(
                    "type_missing",
                    "No file type provided",
                ))
            }
            Some(other) => {
                return Err(ManagerError::bad_request(
                    "bad_type",
                    format!("File type \"{other}\" is not supported for large file transfer"),
                ))
            }
        }
        if chunk == 0 || chunk < -1 {
            return Err(ManagerError::bad_request(
                "bad_chunk",
                format!("Invalid chunk number {chunk}: chunks count from 1, and the last is -1"),
            ));
        }
        if request.content.is_none() {
            return Err(ManagerError::bad_request(
                "content_missing",
                "No file content provided",
            ));
        }
        let bytes = self.decode_file_content(api, &request)?;
        let target = self.resolve(api)?;
        if api.is_empty() || target.is_dir() {
            return Err(ManagerError::bad_request(
                "is_a_directory",
                format!("Cannot save {api}: it is a directory"),
            ));
        }
        self.check_parent(&target)?;
        let dir = target.real.parent().unwrap_or(&self.root).to_owned();
        let name = target
            .real
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let staging = dir.join(format!("{}{name}.upload", fsio::TEMP_PREFIX));
        let io = |e| io_error(api, e);
        let flags = if chunk == 1 {
            OFlags::WRONLY | OFlags::CREATE | OFlags::TRUNC
        } else {
            OFlags::WRONLY | OFlags::APPEND
        };
        let mut file = match fsio::open_beneath(
            &self.root,
            &staging,
            flags | OFlags::NOFOLLOW,
            Mode::from_raw_mode(0o644),
        ) {
            Ok(fd) => File::from(fd),
            Err(e) if chunk == 1 => return Err(io(e)),
            Err(e) => {
                return Err(match e.kind() {
                    io::ErrorKind::NotFound => ManagerError::bad_request(
                        "upload_not_started",
                        format!("The upload of {api} has not started: send chunk 1 first"),
                    ),
                    _ => io_error(api, e),
                })
            }
        };
        let written = file.metadata().map_err(io)?.len();
        if let Err(e) = self.check_size(written + bytes.len() as u64) {
            drop(file);
            let _ = fsio::remove_file_beneath(&self.root, &staging);
            return Err(e);
        }
        let result = (|| {
            file.write_all(&bytes)?;
            if chunk == -1 {
                file.sync_all()?;
                if let Ok(existing) = fsio::metadata_beneath(&self.root, &target.real) {
                    file.set_permissions(existing.permissions())?;
                }
                drop(file);
                fsio::rename_beneath(&self.root, &staging, &target.real)?;
            }
            Ok(())
        })();
        if let Err(e) = result {
            let _ = fsio::remove_file_beneath(&self.root, &staging);
            return Err(io_error(api, e));
        }
        if chunk == -1 {
            return self.get(
                api,
                &GetOptions {
                    content: false,
                    ..GetOptions::default()
                },
            );
        }
        let meta = fsio::metadata_beneath(&self.root, &staging).map_err(io)?;
        let mut model = self.base_model(api, &staging, &meta, "file");
        model.mimetype = fsio::guess_mimetype(&name);
        Ok(model)
    }

    /// A new entry at `api`, empty unless the request carries content.
    fn create(
        &self,
        api: &str,
        mut request: ContentsRequest,
    ) -> Result<ContentsModel, ManagerError> {
        if request.kind.is_none() {
            request.kind = Some(
                if api.ends_with(".ipynb") {
                    "notebook"
                } else {
                    "file"
                }
                .into(),
            );
        }
        if request.content.is_none() && request.kind.as_deref() != Some("directory") {
            if request.kind.as_deref() == Some("notebook") {
                request.content = Some(new_notebook());
                request.format = Some("json".into());
            } else {
                request.content = Some(Value::String(String::new()));
                request.kind = Some("file".into());
                request.format = Some("text".into());
            }
        }
        self.save(api, request)
    }

    fn exists(&self, api: &str) -> bool {
        match self.resolve(api) {
            Ok(t) => fsio::symlink_metadata_beneath(&self.root, &t.os).is_ok(),
            Err(_) => true,
        }
    }

    /// jupyter_server's `increment_filename`: `Untitled.ipynb`, `Untitled1.ipynb`, ….
    fn increment_filename(&self, filename: &str, dir: &str, insert: &str) -> String {
        let (base, suffix) = match filename.rsplit_once('.') {
            Some((_, "ipynb")) => filename.split_at(filename.len() - ".ipynb".len()),
            _ => match filename.find('.') {
                Some(i) => filename.split_at(i),
                None => (filename, ""),
            },
        };
        (0u64..)
            .map(|i| {
                if i == 0 {
                    format!("{base}{suffix}")
                } else {
                    format!("{base}{insert}{i}{suffix}")
                }
            })
            .find(|name| !self.exists(&join_api(dir, name)))
            .unwrap_or_default()
    }

    fn new_untitled(
        &self,
        dir: &str,
        kind: Option<&str>,
        ext: &str,
    ) -> Result<ContentsModel, ManagerError> {
        if !self.resolve(dir)?.is_dir() {
            return Err(ManagerError::contents_not_found(format!(
                "No such directory: {dir}"
            )));
        }
        let kind = kind.unwrap_or(if ext == ".ipynb" { "notebook" } else { "file" });
        let (untitled, ext, insert) = match kind {
            "directory" => ("Untitled Folder", ext, " "),
            "notebook" => ("Untitled", ".ipynb", ""),
            _ => ("untitled", ext, ""),
        };
        let name = self.increment_filename(&format!("{untitled}{ext}"), dir, insert);
        let request = ContentsRequest {
            kind: Some(kind.to_owned()),
            ..ContentsRequest::default()
        };
        self.create(&join_api(dir, &name), request)
    }

    /// Copies a file into the directory `to` (as `<name>-Copy<n>.<ext>`) or to the path `to`.
    fn copy(&self, from: &str, to: &str) -> Result<ContentsModel, ManagerError> {
        let source = self.resolve(from)?;
        if source.meta.is_none() {
            return Err(not_served(from));
        }
        if source.is_dir() {
            return Err(ManagerError::bad_request(
                "copy_directory",
                "Can't copy directories",
            ));
        }
        let to_path = if self.resolve(to)?.is_dir() {
            let name = strip_copy_suffix(split_parent(from).1);
            join_api(to, &self.increment_filename(&name, to, "-Copy"))
        } else {
            let (to_dir, _) = split_parent(to);
            if !self.resolve(to_dir)?.is_dir() {
                return Err(ManagerError::contents_not_found(format!(
                    "No such parent directory: {to_dir} to copy file in"
                )));
            }
            to.to_owned()
        };
        let target = self.resolve(&to_path)?;
        if target.is_dir() {
            return Err(ManagerError::bad_request(
                "is_a_directory",
                format!("Cannot save {to_path}: it is a directory"),
            ));
        }
        let mut reader =
            fsio::read_beneath(&self.root, &source.real).map_err(|e| io_error(from, e))?;
        fsio::atomic_write_with(&self.root, &target.real, |file| {
            io::copy(&mut reader, file).map(|_| ())
        })
        .map_err(|e| io_error(&to_path, e))?;
        if to_path.ends_with(".ipynb") && self.list_checkpoints(&to_path)?.is_empty() {
            self.create_checkpoint(&to_path)?;
        }
        self.get(
            &to_path,
            &GetOptions {
                content: false,
                ..GetOptions::default()
            },
        )
    }

    fn rename(&self, old: &str, new: &str) -> Result<ContentsModel, ManagerError> {
        if old != new {
            if old.is_empty() || new.is_empty() {
                return Err(ManagerError::bad_request(
                    "rename_root",
                    "Cannot rename the root directory",
                ));
            }
            let source = self.resolve(old)?;
            if fsio::symlink_metadata_beneath(&self.root, &source.os).is_err() {
                return Err(ManagerError::contents_not_found(format!(
                    "File or directory does not exist: {old}"
                )));
            }
            let dest = self.resolve(new)?;
            if let Ok(existing) = fsio::symlink_metadata_beneath(&self.root, &dest.os) {
                let source_meta = fsio::symlink_metadata_beneath(&self.root, &source.os)
                    .map_err(|e| io_error(old, e))?;
                let same =
                    existing.dev() == source_meta.dev() && existing.ino() == source_meta.ino();
                if !same {
                    return Err(ManagerError::conflict(
                        "file_exists",
                        format!("File already exists: {new}"),
                    ));
                }
            }
            self.check_parent(&dest)?;
            fsio::rename_beneath(&self.root, &source.os, &dest.os).map_err(|e| io_error(old, e))?;
            // Checkpoints follow their file.
            if let (Ok(old_cp), Ok(new_cp)) = (self.checkpoint_path(old), self.checkpoint_path(new))
            {
                if self.is_file(&old_cp) {
                    if let Some(dir) = new_cp.parent() {
                        let _ = fsio::create_dir_beneath(&self.root, dir);
                    }
                    let _ = fsio::rename_beneath(&self.root, &old_cp, &new_cp);
                }
            }
        }
        self.get(
            new,
            &GetOptions {
                content: false,
                ..GetOptions::default()
            },
        )
    }

    fn delete(&self, api: &str) -> Result<(), ManagerError> {
        let target = self.resolve(api)?;
        let Ok(meta) = fsio::symlink_metadata_beneath(&self.root, &target.os) else {
            return Err(ManagerError::contents_not_found(format!(
                "File or directory does not exist: {api}"
            )));
        };
        if meta.is_dir() {
            let non_empty = fsio::list_beneath(&self.root, &target.os)
                .map_err(|e| io_error(api, e))?
                .iter()
                .any(|name| name != CHECKPOINT_DIR);
            if non_empty {
                return Err(ManagerError::bad_request(
                    "directory_not_empty",
                    format!("Directory {api} not empty"),
                ));
            }
            fsio::remove_dir_all_beneath(&self.root, &target.os).map_err(|e| io_error(api, e))?;
        } else {
            fsio::remove_file_beneath(&self.root, &target.os).map_err(|e| io_error(api, e))?;
            if let Ok(cp) = self.checkpoint_path(api) {
                let _ = fsio::remove_file_beneath(&self.root, &cp);
            }
        }
        Ok(())
    }

    /// `<dir>/.ipynb_checkpoints/<stem>-checkpoint<ext>` for the file `api`.
    fn checkpoint_path(&self, api: &str) -> Result<PathBuf, ManagerError> {
        let (parent, name) = split_parent(api);
        let dir = self.resolve(parent)?;
        let (stem, ext) = split_ext(name);
        Ok(dir
            .real
            .join(CHECKPOINT_DIR)
            .join(format!("{stem}-{CHECKPOINT_ID}{ext}")))
    }

    /// Whether `path` (under the root) is a file, resolved beneath the root.
    fn is_file(&self, path: &Path) -> bool {
        fsio::metadata_beneath(&self.root, path).is_ok_and(|m| m.is_file())
    }

    fn checkpoint_model(&self, path: &Path) -> Option<CheckpointModel> {
        let meta = fsio::metadata_beneath(&self.root, path)
            .ok()
            .filter(Metadata::is_file)?;
        Some(CheckpointModel {
            id: CHECKPOINT_ID.into(),
            last_modified: fsio::iso_time(meta.modified().unwrap_or(SystemTime::UNIX_EPOCH)),
        })
    }

    fn no_such_checkpoint(api: &str, id: &str) -> ManagerError {
        ManagerError::new(
            crate::ErrorKind::NotFound,
            "checkpoint_not_found",
            format!("Checkpoint does not exist: {api}@{id}"),
        )
    }

    /// Copies `from` to `to` atomically, keeping the modification time.
    fn copy_file(&self, api: &str, from: &Path, to: &Path) -> Result<(), ManagerError> {
        let mut reader = fsio::read_beneath(&self.root, from).map_err(|e| io_error(api, e))?;
        let modified = reader.metadata().and_then(|m| m.modified()).ok();
        fsio::atomic_write_with(&self.root, to, |file| {
            io::copy(&mut reader, file)?;
            if let Some(modified) = modified {
                file.set_modified(modified)?;
            }
            Ok(())
        })
        .map_err(|e| io_error(api, e))
    }

    fn create_checkpoint(&self, api: &str) -> Result<CheckpointModel, ManagerError> {
        let target = self.resolve(api)?;
        if target.meta.is_none() {
            return Err(ManagerError::contents_not_found(format!(
                "File or directory does not exist: {api}"
            )));
        }
        if target.is_dir() {
            return Err(ManagerError::bad_request(
                "checkpoint_directory",
                format!("Cannot create a checkpoint of the directory {api}"),
            ));
        }
        let cp = self.checkpoint_path(api)?;
        if let Some(dir) = cp.parent() {
            match fsio::create_dir_beneath(&self.root, dir) {
                Err(e) if e.kind() != io::ErrorKind::AlreadyExists => return Err(io_error(api, e)),
                _ => {}
            }
        }
        self.copy_file(api, &target.real, &cp)?;
        self.checkpoint_model(&cp)
            .ok_or_else(|| Fs::no_such_checkpoint(api, CHECKPOINT_ID))
    }

    fn list_checkpoints(&self, api: &str) -> Result<Vec<CheckpointModel>, ManagerError> {
        let cp = self.checkpoint_path(api)?;
        Ok(self.checkpoint_model(&cp).into_iter().collect())
    }

    fn restore_checkpoint(&self, api: &str, id: &str) -> Result<(), ManagerError> {
        let cp = self.checkpoint_path(api)?;
        if id != CHECKPOINT_ID || !self.is_file(&cp) {
            return Err(Fs::no_such_checkpoint(api, id));
        }
        let target = self.resolve(api)?;
        if target.is_dir() {
            return Err(ManagerError::bad_request(
                "is_a_directory",
                format!("Cannot restore {api}: it is a directory"),
            ));
        }
        self.check_parent(&target)?;
        self.copy_file(api, &cp, &target.real)
    }

    fn delete_checkpoint(&self, api: &str, id: &str) -> Result<(), ManagerError> {
        let cp = self.checkpoint_path(api)?;
        if id != CHECKPOINT_ID || !self.is_file(&cp) {
            return Err(Fs::no_such_checkpoint(api, id));
        }
        fsio::remove_file_beneath(&self.root, &cp).map_err(|e| io_error(api, e))
    }
}

#[cfg(test)]
mod tests;
