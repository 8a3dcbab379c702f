//! Kernelspecs: `kernels/<name>/kernel.json` under the Jupyter data directories.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// How a kernel wants to be interrupted.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum InterruptMode {
    #[default]
    Signal,
    Message,
}

/// The `kernel.json` file as Jupyter defines it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct KernelSpecFile {
    pub argv: Vec<String>,
    pub display_name: String,
    #[serde(default)]
    pub language: String,
    #[serde(default)]
    pub interrupt_mode: InterruptMode,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    #[serde(default)]
    pub metadata: serde_json::Map<String, serde_json::Value>,
}

/// A discovered kernelspec: its name, directory and parsed file.
#[derive(Debug, Clone, PartialEq)]
pub struct KernelSpec {
    pub name: String,
    pub resource_dir: PathBuf,
    pub spec: KernelSpecFile,
}

impl KernelSpec {
    /// Resource files (logos, kernel.js) in the spec's directory, by file name.
    pub fn resources(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(&self.resource_dir)
            .map(|entries| {
                entries
                    .filter_map(|e| e.ok())
                    .filter(|e| e.file_type().map(|t| t.is_file()).unwrap_or(false))
                    .filter_map(|e| e.file_name().into_string().ok())
                    .filter(|name| name != "kernel.json")
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }
}

/// The Jupyter data directories in priority order: `$JUPYTER_PATH`, the user's data dir, then
/// the given environment prefixes' `share/jupyter`, then the system ones.
pub fn jupyter_data_dirs(env_prefixes: &[PathBuf]) -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(path) = std::env::var_os("JUPYTER_PATH") {
        dirs.extend(std::env::split_paths(&path).filter(|p| !p.as_os_str().is_empty()));
    }
    if let Some(data) = std::env::var_os("JUPYTER_DATA_DIR") {
        dirs.push(PathBuf::from(data));
    } else if let Some(home) = std::env::var_os("HOME") {
        dirs.push(Path::new(&home).join(".local/share/jupyter"));
    }
    for prefix in env_prefixes {
        dirs.push(prefix.join("share/jupyter"));
    }
    dirs.push(PathBuf::from("/usr/local/share/jupyter"));
    dirs.push(PathBuf::from("/usr/share/jupyter"));
    dirs
}

/// Finds kernelspecs under `<dir>/kernels/*/kernel.json` for each dir; the first dir that
/// defines a name wins. Unreadable or invalid specs are skipped with a warning.
pub fn find_kernelspecs(dirs: &[PathBuf]) -> BTreeMap<String, KernelSpec> {
    let mut specs = BTreeMap::new();
    for dir in dirs {
        let Ok(entries) = std::fs::read_dir(dir.join("kernels")) else {
            continue;
        };
        let mut entries: Vec<_> = entries.filter_map(|e| e.ok()).collect();
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            let name = name.to_lowercase();
            if specs.contains_key(&name) {
                continue;
            }
            let path = entry.path().join("kernel.json");
            let Ok(text) = std::fs::read(&path) else {
                continue;
            };
            match serde_json::from_slice::<KernelSpecFile>(&text) {
                Ok(spec) if !spec.argv.is_empty() => {
                    specs.insert(
                        name.clone(),
                        KernelSpec {
                            name,
                            resource_dir: entry.path(),
                            spec,
                        },
                    );
                }
                Ok(_) => {
                    tracing::warn!(path = %path.display(), "kernelspec has an empty argv; skipped")
                }
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "invalid kernelspec; skipped")
                }
            }
        }
    }
    specs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_directory_wins_and_invalid_specs_are_skipped() {
        let first = tempfile::tempdir().unwrap();
        let second = tempfile::tempdir().unwrap();
        let write = |root: &Path, name: &str, body: &str| {
            let dir = root.join("kernels").join(name);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("kernel.json"), body).unwrap();
        };
        write(
            first.path(),
            "python3",
            r#"{"argv":["a","-f","{connection_file}"],"display_name":"First"}"#,
        );
        write(
            second.path(),
            "python3",
            r#"{"argv":["b"],"display_name":"Second"}"#,
        );
        write(second.path(), "broken", "{not json");
        write(second.path(), "empty", r#"{"argv":[],"display_name":"E"}"#);
        write(
            second.path(),
            "Julia",
            r#"{"argv":["julia"],"display_name":"Julia","interrupt_mode":"message"}"#,
        );
        let specs = find_kernelspecs(&[first.path().to_owned(), second.path().to_owned()]);
        assert_eq!(specs.keys().collect::<Vec<_>>(), vec!["julia", "python3"]);
        assert_eq!(specs["python3"].spec.display_name, "First");
        assert_eq!(specs["julia"].spec.interrupt_mode, InterruptMode::Message);
    }
}
