//! `commonlab scan PATH…`: walk, read, scan in parallel, print.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use commonlab_policy::{Action, CheckContext, Policy, ScanReport};
use rayon::prelude::*;
use serde::Serialize;

use crate::{load_policy, EXIT_ERROR, EXIT_FLAGGED};

/// Scan notebooks and scripts against the usage policy.
#[derive(Debug, Clone, clap::Args)]
pub struct ScanArgs {
    /// Files or directories to scan. Directories are walked for .ipynb, .py and .sh files.
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// Print one JSON array with an object per file instead of the human report.
    #[arg(long)]
    pub json: bool,
    /// The tier whose actions decide the verdict (free-tier rules only act on `free`).
    #[arg(long, default_value = "free")]
    pub tier: String,
    /// A configuration file with a `[policy]` table (or a bare policy configuration).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// In directories, scan every file, not only notebooks and scripts.
    #[arg(long)]
    pub all_files: bool,
    /// In the human report, list allowed files too.
    #[arg(long, short)]
    pub verbose: bool,
    /// Worker threads (default: one per core).
    #[arg(long)]
    pub jobs: Option<usize>,
}

/// The outcome for one path.
#[derive(Debug, Clone, Serialize)]
pub struct FileReport {
    /// The path as given or found.
    pub path: String,
    /// `allowed`, or the category that decided the verdict.
    pub verdict: String,
    /// The action for the tier.
    pub action: Action,
    /// Categories with a score, strongest first.
    pub categories: Vec<CategoryJson>,
    /// The evidence.
    pub findings: Vec<FindingJson>,
    /// Whether only the first `scan_bytes_max` bytes were scanned.
    pub truncated: bool,
    /// Why the file could not be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One category's score in JSON.
#[derive(Debug, Clone, Serialize)]
pub struct CategoryJson {
    /// The category.
    pub category: String,
    /// Its score.
    pub score: f32,
    /// The score that decides it.
    pub threshold: f32,
    /// Whether it reached the threshold.
    pub decided: bool,
}

/// One finding in JSON.
#[derive(Debug, Clone, Serialize)]
pub struct FindingJson {
    /// The rule id.
    pub rule: String,
    /// The rule's category.
    pub category: String,
    /// The finding's weight.
    pub weight: f32,
    /// `cell N, line M` or `line M`.
    pub location: String,
    /// The cell index, for notebooks.
    pub cell: Option<u32>,
    /// The line, 1-based, within the cell or file.
    pub line: u32,
    /// The matched text.
    pub matched: String,
    /// How the matched text was obtained (direct, base64, ...).
    pub via: String,
    /// The source line.
    pub line_text: String,
    /// Whether the rule is in shadow mode.
    pub shadow: bool,
}

impl FileReport {
    fn from_report(path: String, report: ScanReport) -> FileReport {
        let verdict = &report.verdict;
        let flagged = verdict.action > Action::Allow;
        FileReport {
            path,
            verdict: match (&verdict.category, flagged) {
                (Some(category), true) => category.clone(),
                _ => "allowed".to_owned(),
            },
            action: verdict.action,
            categories: verdict
                .categories
                .iter()
                .map(|c| CategoryJson {
                    category: c.category.clone(),
                    score: c.score,
                    threshold: c.threshold,
                    decided: c.decided,
                })
                .collect(),
            findings: verdict
                .findings
                .iter()
                .map(|f| FindingJson {
                    rule: f.rule.clone(),
                    category: f.category.clone(),
                    weight: f.weight,
                    location: f.location.to_string(),
                    cell: f.location.cell,
                    line: f.location.line,
                    matched: f.matched.clone(),
                    via: match &f.via {
                        commonlab_policy::Via::Alias(from) => format!("alias of {from}"),
                        other => serde_json::to_value(other)
                            .ok()
                            .and_then(|v| v.get("kind").and_then(|k| k.as_str()).map(str::to_owned))
                            .unwrap_or_default(),
                    },
                    line_text: f.line_text.clone(),
                    shadow: f.shadow,
                })
                .collect(),
            truncated: report.truncated,
            error: None,
        }
    }

    fn error(path: String, error: String) -> FileReport {
        FileReport {
            path,
            verdict: "error".to_owned(),
            action: Action::Allow,
            categories: vec![],
            findings: vec![],
            truncated: false,
            error: Some(error),
        }
    }

    /// Whether the verdict is something other than `allowed`.
    pub fn is_flagged(&self) -> bool {
        self.error.is_none() && self.verdict != "allowed"
    }
}

const SCANNED_EXTENSIONS: &[&str] = &["ipynb", "py", "pyw", "ipy", "sh", "bash", "zsh", "ksh"];

fn collect_files(
    path: &Path,
    all_files: bool,
    files: &mut Vec<PathBuf>,
    errors: &mut Vec<FileReport>,
) {
    let metadata = match std::fs::metadata(path) {
        Ok(metadata) => metadata,
        Err(err) => {
            errors.push(FileReport::error(
                path.display().to_string(),
                err.to_string(),
            ));
            return;
        }
    };
    if metadata.is_file() {
        files.push(path.to_owned());
        return;
    }
    let entries = match std::fs::read_dir(path) {
        Ok(entries) => entries,
        Err(err) => {
            errors.push(FileReport::error(
                path.display().to_string(),
                err.to_string(),
            ));
            return;
        }
    };
    let mut children: Vec<PathBuf> = entries
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .collect();
    children.sort();
    for child in children {
        let name = child.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.starts_with('.')
            || name == "node_modules"
            || name == "target"
            || name == "__pycache__"
        {
            continue;
        }
        let Ok(file_type) = std::fs::symlink_metadata(&child).map(|m| m.file_type()) else {
            continue;
        };
        if file_type.is_dir() {
            collect_files(&child, all_files, files, errors);
        } else if file_type.is_file() {
            let ext = child
                .extension()
                .and_then(|e| e.to_str())
                .unwrap_or("")
                .to_ascii_lowercase();
            if all_files
                || SCANNED_EXTENSIONS.contains(&ext.as_str())
                || name.eq_ignore_ascii_case("dockerfile")
            {
                files.push(child);
            }
        }
    }
}

fn read_prefix(path: &Path, bytes_max: usize) -> std::io::Result<Vec<u8>> {
    let file = std::fs::File::open(path)?;
    let mut bytes = Vec::new();
    // One byte more than the limit, so the engine can tell the file was truncated.
    file.take(bytes_max as u64 + 1).read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// Scans `paths` (files, or directories walked) and returns one report per file, sorted by path.
pub fn scan_paths(
    policy: &Policy,
    paths: &[PathBuf],
    tier: &str,
    all_files: bool,
) -> Vec<FileReport> {
    let mut files = Vec::new();
    let mut reports = Vec::new();
    for path in paths {
        collect_files(path, all_files, &mut files, &mut reports);
    }
    let ctx = CheckContext::new(tier);
    let scanned: Vec<FileReport> = files
        .par_iter()
        .map(|path| {
            let shown = path.display().to_string();
            match read_prefix(path, policy.scan_bytes_max()) {
                Ok(bytes) => FileReport::from_report(
                    shown.clone(),
                    policy.scan_document(&shown, &bytes, &ctx),
                ),
                Err(err) => FileReport::error(shown, err.to_string()),
            }
        })
        .collect();
    reports.extend(scanned);
    reports.sort_by(|a, b| a.path.cmp(&b.path));
    reports
}

/// Runs `commonlab scan`.
pub fn run_scan(args: &ScanArgs) -> anyhow::Result<ExitCode> {
    let policy = load_policy(args.config.as_deref())?;
    let reports = match args.jobs {
        Some(jobs) => rayon::ThreadPoolBuilder::new()
            .num_threads(jobs.max(1))
            .build()?
            .install(|| scan_paths(&policy, &args.paths, &args.tier, args.all_files)),
        None => scan_paths(&policy, &args.paths, &args.tier, args.all_files),
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&reports)?);
    } else {
        print!("{}", render_human(&reports, args.verbose));
    }
    let mut code = 0;
    if reports.iter().any(FileReport::is_flagged) {
        code |= EXIT_FLAGGED;
    }
    if reports.iter().any(|report| report.error.is_some()) {
        code |= EXIT_ERROR;
    }
    Ok(ExitCode::from(code))
}

/// The human report: each flagged file with its evidence, then a summary.
pub(crate) fn render_human(reports: &[FileReport], verbose: bool) -> String {
    let mut out = String::new();
    let mut flagged = 0;
    let mut errors = 0;
    for report in reports {
        if let Some(error) = &report.error {
            errors += 1;
            out.push_str(&format!("{}: error: {error}\n", report.path));
            continue;
        }
        if !report.is_flagged() {
            if verbose {
                out.push_str(&format!("{}: allowed\n", report.path));
            }
            continue;
        }
        flagged += 1;
        let score = report
            .categories
            .iter()
            .find(|c| c.category == report.verdict)
            .map_or(0.0, |c| c.score);
        out.push_str(&format!(
            "{}: {} ({}, score {score:.2})\n",
            report.path, report.verdict, report.action
        ));
        for finding in report
            .findings
            .iter()
            .filter(|f| f.category == report.verdict)
        {
            let via = if finding.via == "direct" {
                String::new()
            } else {
                format!(" [{}]", finding.via)
            };
            out.push_str(&format!(
                "  {:<18} {} (+{:.2}) `{}`{via}\n  {:<18} | {}\n",
                finding.location,
                finding.rule,
                finding.weight,
                finding.matched,
                "",
                finding.line_text
            ));
        }
        let others: Vec<String> = report
            .categories
            .iter()
            .filter(|c| c.category != report.verdict)
            .map(|c| format!("{} {:.2}", c.category, c.score))
            .collect();
        if !others.is_empty() {
            out.push_str(&format!("  other scores: {}\n", others.join(", ")));
        }
    }
    out.push_str(&format!(
        "{} files scanned, {flagged} flagged, {errors} unreadable\n",
        reports.len()
    ));
    out
}
