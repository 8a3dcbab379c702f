//! One pass of `scan_document` over every file of a corpus folder, for instruction counts
//! (`valgrind --tool=callgrind`), which unlike timings do not depend on the machine's load:
//! `cargo run --release -p commonlab-policy --example corpus_pass -- CORPUS_DIR [PASSES]`.
//!
//! With `--dump` instead of a number of passes it prints every file's verdict for tiers `free`
//! and `pro`, each file read as itself and as `.py`, `.sh` and `.txt`, to compare two builds.

#![allow(clippy::print_stdout)]

use std::path::Path;

use commonlab_policy::{CheckContext, Policy};

fn main() {
    let mut args = std::env::args().skip(1);
    let corpus = args.next().expect("usage: corpus_pass CORPUS_DIR [PASSES]");
    let passes = args.next();
    let policy = Policy::builtin();
    let ctx = CheckContext::new("free");
    let mut files = Vec::new();
    if passes.as_deref() == Some("--dump") {
        collect_all(Path::new(&corpus), &mut files);
        dump(&policy, &files);
        return;
    }
    let passes: usize = passes.map_or(1, |n| n.parse().expect("a number of passes"));
    collect(Path::new(&corpus), &mut files);
    let documents: Vec<(String, Vec<u8>)> = files
        .into_iter()
        .filter_map(|path| std::fs::read(&path).ok().map(|bytes| (path, bytes)))
        .collect();
    let mut bytes = 0;
    let mut findings = 0;
    for _ in 0..passes {
        for (name, content) in &documents {
            let report = policy.scan_document(name, content, &ctx);
            findings += report.verdict.findings.len();
            bytes += content.len();
        }
    }
    println!(
        "{} files, {passes} passes, {bytes} bytes, {findings} findings",
        documents.len()
    );
}

fn collect(path: &Path, files: &mut Vec<String>) {
    if path.is_file() {
        let name = path.display().to_string();
        if [".ipynb", ".py", ".sh"]
            .iter()
            .any(|ext| name.ends_with(ext))
        {
            files.push(name);
        }
    } else if let Ok(entries) = std::fs::read_dir(path) {
        let mut children: Vec<_> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        children.sort();
        for child in children {
            collect(&child, files);
        }
    }
}

fn collect_all(path: &Path, files: &mut Vec<String>) {
    if path.is_file() {
        files.push(path.display().to_string());
    } else if let Ok(entries) = std::fs::read_dir(path) {
        let mut children: Vec<_> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        children.sort();
        for child in children {
            collect_all(&child, files);
        }
    }
}

fn dump(policy: &Policy, files: &[String]) {
    for path in files {
        let Ok(bytes) = std::fs::read(path) else {
            continue;
        };
        for hint in [
            path.clone(),
            format!("{path}.py"),
            format!("{path}.sh"),
            format!("{path}.txt"),
        ] {
            for tier in ["free", "pro"] {
                let report = policy.scan_document(&hint, &bytes, &CheckContext::new(tier));
                println!("{hint}\t{tier}\t{report:?}");
            }
        }
        if let Ok(text) = std::str::from_utf8(&bytes) {
            let verdict = policy.check_cell(text, &CheckContext::new("free"));
            println!("{path}\tcell\t{verdict:?}");
        }
    }
}
