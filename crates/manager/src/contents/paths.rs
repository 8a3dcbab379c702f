//! API paths and their confinement to the root: `..` is refused outright, and every existing
//! component is resolved through symlinks and must stay inside the (canonical) root.

use std::fs::{self, Metadata};
use std::io;
use std::path::{Path, PathBuf};

use crate::ManagerError;

/// Normalises an API path: no leading or trailing `/`, no empty or `.` segments. `..` and NUL
/// are refused, so an absolute-looking path (`/etc/passwd`) is just a path under the root.
pub(crate) fn api_path(raw: &str) -> Result<String, ManagerError> {
    let mut parts = Vec::new();
    for segment in raw.split('/') {
        match segment {
            "" | "." => {}
            ".." => return Err(ManagerError::path_outside_root(raw)),
            s if s.contains('\0') => {
                return Err(ManagerError::contents_not_found(format!(
                    "{} is not a valid path",
                    raw.replace('\0', "\\0")
                )))
            }
            s => parts.push(s),
        }
    }
    Ok(parts.join("/"))
}

/// Whether any segment of the API path is hidden (starts with a dot).
pub(crate) fn is_hidden(api: &str) -> bool {
    api.split('/').any(|s| s.starts_with('.'))
}

/// The parent API path and the last segment.
pub(crate) fn split_parent(api: &str) -> (&str, &str) {
    api.rsplit_once('/').unwrap_or(("", api))
}

/// An API path resolved to the file system.
#[derive(Debug)]
pub(crate) struct Target {
    pub(crate) api: String,
    /// The entry itself: the resolved parent joined with the last segment (a link is not followed).
    pub(crate) os: PathBuf,
    /// Where reads and writes go: `os`, or the file a symlink at `os` points to (inside the root).
    pub(crate) real: PathBuf,
    /// Metadata of `real` (symlinks followed), if it exists.
    pub(crate) meta: Option<Metadata>,
}

impl Target {
    pub(crate) fn name(&self) -> &str {
        split_parent(&self.api).1
    }

    pub(crate) fn is_dir(&self) -> bool {
        self.meta.as_ref().is_some_and(Metadata::is_dir)
    }

    pub(crate) fn is_file(&self) -> bool {
        self.meta.as_ref().is_some_and(Metadata::is_file)
    }
}

/// Resolves `api` (already normalised) under `root` (canonical), refusing any escape.
pub(crate) fn resolve(root: &Path, api: &str) -> Result<Target, ManagerError> {
    if api.is_empty() {
        return Ok(Target {
            api: String::new(),
            os: root.to_owned(),
            real: root.to_owned(),
            meta: Some(fs::metadata(root).map_err(|e| io_error(api, e))?),
        });
    }
    let outside = || ManagerError::path_outside_root(api);
    let (parent, name) = split_parent(api);
    let mut dir = root.to_owned();
    let mut missing = false;
    for segment in parent.split('/').filter(|s| !s.is_empty()) {
        dir.push(segment);
        if missing {
            continue;
        }
        match fs::symlink_metadata(&dir) {
            Ok(m) if m.file_type().is_symlink() => {
                let target = fs::canonicalize(&dir).map_err(|_| outside())?;
                if !target.starts_with(root) {
                    return Err(outside());
                }
                dir = target;
            }
            Ok(_) => {}
            Err(_) => missing = true,
        }
    }
    let os = dir.join(name);
    let real = match fs::symlink_metadata(&os) {
        Ok(m) if m.file_type().is_symlink() => {
            let target = fs::canonicalize(&os).map_err(|_| outside())?;
            if !target.starts_with(root) {
                return Err(outside());
            }
            target
        }
        _ => os.clone(),
    };
    let meta = super::fsio::metadata_beneath(root, &real).ok();
    Ok(Target {
        api: api.to_owned(),
        os,
        real,
        meta,
    })
}

/// Maps an IO error on `api` to what the user should see.
pub(crate) fn io_error(api: &str, e: io::Error) -> ManagerError {
    if e.raw_os_error() == Some(rustix::io::Errno::XDEV.raw_os_error()) {
        // Resolved beneath the root, the path led out of it (a symlink swapped in meanwhile).
        return ManagerError::path_outside_root(api);
    }
    match e.kind() {
        io::ErrorKind::PermissionDenied => ManagerError::permission_denied(api),
        io::ErrorKind::NotFound => {
            ManagerError::contents_not_found(format!("File or directory does not exist: {api}"))
        }
        _ => ManagerError::internal(
            "contents_io_failed",
            format!("Unexpected error while saving file: {api} {e}"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    #[test]
    fn dot_dot_is_refused_and_slashes_are_normalised() {
        assert_eq!(api_path("/a//b/./c/").unwrap(), "a/b/c");
        assert_eq!(api_path("/etc/passwd").unwrap(), "etc/passwd");
        assert_eq!(api_path("").unwrap(), "");
        for bad in ["..", "../x", "a/../../x", "a/..", "/.."] {
            let e = api_path(bad).unwrap_err();
            assert_eq!(e.code, "path_outside_root", "{bad}");
        }
        assert_eq!(api_path("a\0b").unwrap_err().kind, ErrorKind::NotFound);
        assert!(is_hidden(".x") && is_hidden("a/.b/c") && !is_hidden("a/b.c"));
    }

    #[test]
    fn symlinks_out_of_the_root_are_refused() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), "s").unwrap();
        let root_dir = tempfile::tempdir().unwrap();
        let root = root_dir.path().canonicalize().unwrap();
        std::fs::create_dir(root.join("inside")).unwrap();
        std::fs::write(root.join("inside/f"), "f").unwrap();
        std::os::unix::fs::symlink(outside.path(), root.join("out")).unwrap();
        std::os::unix::fs::symlink(outside.path().join("secret"), root.join("secret")).unwrap();
        std::os::unix::fs::symlink(outside.path().join("nothing"), root.join("dangling")).unwrap();
        std::os::unix::fs::symlink(root.join("inside"), root.join("in")).unwrap();
        for api in [
            "out",
            "out/secret",
            "out/new",
            "out/a/b",
            "secret",
            "dangling",
        ] {
            let e = resolve(&root, api).unwrap_err();
            assert_eq!(e.code, "path_outside_root", "{api}");
        }
        let t = resolve(&root, "in/f").unwrap();
        assert_eq!(t.real, root.join("inside/f"));
        assert!(t.is_file());
        let t = resolve(&root, "in").unwrap();
        assert!(t.is_dir() && t.os == root.join("in"));
        let t = resolve(&root, "new/deeper/x").unwrap();
        assert!(t.meta.is_none());
        assert!(t.real.starts_with(&root));
    }
}
