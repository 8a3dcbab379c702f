//! House rules that are cheap to check: every Rust file opens with a `//!` doc comment, and no
//! committed text names a path on the machine it was written on.

use std::path::{Path, PathBuf};

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.')
            || name == "target"
            || name == "node_modules"
            || name == "raw"
            || name == "artifacts"
        {
            continue;
        }
        if path.is_dir() {
            files(&path, out);
        } else {
            out.push(path);
        }
    }
}

#[test]
fn every_rust_file_starts_with_a_module_doc() {
    let mut all = Vec::new();
    files(&workspace_root().join("crates"), &mut all);
    let missing: Vec<String> = all
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "rs"))
        .filter(|p| {
            !std::fs::read_to_string(p)
                .unwrap_or_default()
                .starts_with("//!")
        })
        .map(|p| p.display().to_string())
        .collect();
    assert!(
        missing.is_empty(),
        "files without a leading //! doc comment:\n{}",
        missing.join("\n")
    );
}

#[test]
fn no_committed_text_names_a_machine_path() {
    let root = workspace_root();
    let mut all = Vec::new();
    for dir in ["crates", "docs", "scripts", "tests", "bench", ".ci"] {
        files(&root.join(dir), &mut all);
    }
    for file in ["README.md", "ARCHITECTURE.md", "Cargo.toml"] {
        all.push(root.join(file));
    }
    let needles = [concat!("/wo", "rk/main"), concat!("/ro", "ot/.")];
    let offenders: Vec<String> = all
        .iter()
        .filter(|p| {
            let text = std::fs::read(p).unwrap_or_default();
            let text = String::from_utf8_lossy(&text);
            needles.iter().any(|n| text.contains(n))
        })
        .map(|p| p.display().to_string())
        .collect();
    assert!(
        offenders.is_empty(),
        "files naming a machine path:\n{}",
        offenders.join("\n")
    );
}
