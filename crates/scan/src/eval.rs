//! The policy evaluation: scan a labelled corpus and report per-category precision and
//! recall and the false positives on hard negatives.
//!
//! The corpus is a folder with `manifest.tsv` (columns `path`, `label`, `hard_negative`, ...)
//! and the files it names. Label `allowed` is the negative class.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use commonlab_policy::Policy;

use crate::{load_policy, scan_paths, FileReport};

/// Evaluate the policy on a labelled corpus (manifest.tsv + files).
#[derive(Debug, Clone, clap::Args)]
pub struct EvalArgs {
    /// The corpus folder holding manifest.tsv.
    #[arg(default_value = "../shared/corpus/dev")]
    pub corpus: PathBuf,
    /// Also write the markdown report to this file.
    #[arg(long, short)]
    pub output: Option<PathBuf>,
    /// The tier whose actions decide verdicts.
    #[arg(long, default_value = "free")]
    pub tier: String,
    /// A configuration file with a `[policy]` table (or a bare policy configuration).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Exit with 1 unless every positive category has recall >= this and no hard negative is flagged.
    #[arg(long)]
    pub require_recall: Option<f64>,
}

/// Precision and recall of one positive category.
#[derive(Debug, Clone, PartialEq)]
pub struct CategoryResult {
    /// The category (a corpus label).
    pub category: String,
    /// Files labelled with it.
    pub files: usize,
    /// Labelled and predicted.
    pub true_positives: usize,
    /// Predicted but labelled otherwise.
    pub false_positives: usize,
    /// Labelled but predicted otherwise.
    pub false_negatives: usize,
}

impl CategoryResult {
    /// TP / (TP + FP); 1 when nothing was predicted.
    pub fn precision(&self) -> f64 {
        ratio(
            self.true_positives,
            self.true_positives + self.false_positives,
        )
    }

    /// TP / (TP + FN); 1 when nothing is labelled.
    pub fn recall(&self) -> f64 {
        ratio(
            self.true_positives,
            self.true_positives + self.false_negatives,
        )
    }
}

fn ratio(numerator: usize, denominator: usize) -> f64 {
    if denominator == 0 {
        1.0
    } else {
        numerator as f64 / denominator as f64
    }
}

/// One corpus file's label and verdict.
#[derive(Debug, Clone)]
pub struct FileResult {
    /// The path relative to the corpus folder.
    pub path: String,
    /// The label.
    pub label: String,
    /// Whether it is a hard negative.
    pub hard_negative: bool,
    /// The scan's report.
    pub report: FileReport,
}

/// The evaluation's results.
#[derive(Debug, Clone)]
pub struct Evaluation {
    /// Per positive category, sorted by name.
    pub categories: Vec<CategoryResult>,
    /// Every file.
    pub files: Vec<FileResult>,
}

impl Evaluation {
    /// Hard negatives.
    pub fn hard_negatives(&self) -> impl Iterator<Item = &FileResult> {
        self.files.iter().filter(|file| file.hard_negative)
    }

    /// Hard negatives with a verdict other than `allowed`.
    pub fn hard_negative_false_positives(&self) -> usize {
        self.hard_negatives()
            .filter(|file| file.report.verdict != "allowed")
            .count()
    }

    /// Other `allowed` files with a verdict other than `allowed`.
    pub fn other_negative_false_positives(&self) -> usize {
        self.files
            .iter()
            .filter(|file| {
                file.label == "allowed" && !file.hard_negative && file.report.verdict != "allowed"
            })
            .count()
    }

    /// The report as markdown: the table, then each misclassified file with its evidence.
    pub fn to_markdown(&self) -> String {
        let mut out = String::new();
        out.push_str("| category | files | TP | FP | FN | precision | recall |\n");
        out.push_str("| --- | ---: | ---: | ---: | ---: | ---: | ---: |\n");
        for category in &self.categories {
            out.push_str(&format!(
                "| {} | {} | {} | {} | {} | {:.2} | {:.2} |\n",
                category.category,
                category.files,
                category.true_positives,
                category.false_positives,
                category.false_negatives,
                category.precision(),
                category.recall()
            ));
        }
        let hard = self.hard_negatives().count();
        let other = self
            .files
            .iter()
            .filter(|f| f.label == "allowed" && !f.hard_negative)
            .count();
        out.push_str(&format!(
            "\nHard negatives: {} files, {} false positives.\nOther allowed files: {} files, {} false positives.\n",
            hard,
            self.hard_negative_false_positives(),
            other,
            self.other_negative_false_positives()
        ));
        let wrong: Vec<&FileResult> = self
            .files
            .iter()
            .filter(|f| f.report.verdict != f.label)
            .collect();
        if wrong.is_empty() {
            out.push_str("\nEvery file got its label.\n");
        } else {
            out.push_str("\nMisclassified files:\n\n");
            for file in wrong {
                let scores: Vec<String> = file
                    .report
                    .categories
                    .iter()
                    .map(|c| format!("{} {:.2}", c.category, c.score))
                    .collect();
                out.push_str(&format!(
                    "- `{}`: labelled {}, verdict {} (scores: {})\n",
                    file.path,
                    file.label,
                    file.report.verdict,
                    if scores.is_empty() {
                        "none".to_owned()
                    } else {
                        scores.join(", ")
                    }
                ));
            }
        }
        out
    }
}

/// Scans the corpus in `corpus_dir` with `policy` and scores the verdicts against the labels.
pub fn evaluate(policy: &Policy, corpus_dir: &Path, tier: &str) -> anyhow::Result<Evaluation> {
    let manifest_path = corpus_dir.join("manifest.tsv");
    let manifest = std::fs::read_to_string(&manifest_path)
        .with_context(|| format!("reading the corpus manifest {}", manifest_path.display()))?;
    let mut lines = manifest.lines();
    let header: Vec<&str> = lines.next().unwrap_or("").split('\t').collect();
    let column = |name: &str| header.iter().position(|h| *h == name);
    let (Some(path_col), Some(label_col), Some(hard_col)) =
        (column("path"), column("label"), column("hard_negative"))
    else {
        bail!(
            "{} lacks a path, label or hard_negative column",
            manifest_path.display()
        );
    };
    let mut entries = Vec::new();
    for line in lines.filter(|line| !line.trim().is_empty()) {
        let fields: Vec<&str> = line.split('\t').collect();
        let field = |col: usize| fields.get(col).copied().unwrap_or("");
        entries.push((
            field(path_col).to_owned(),
            field(label_col).to_owned(),
            field(hard_col) == "yes",
        ));
    }
    let paths: Vec<PathBuf> = entries
        .iter()
        .map(|(path, _, _)| corpus_dir.join(path))
        .collect();
    let reports = scan_paths(policy, &paths, tier, true);
    let by_path: BTreeMap<String, FileReport> = reports
        .into_iter()
        .map(|report| (report.path.clone(), report))
        .collect();
    let mut files = Vec::new();
    for ((path, label, hard_negative), full) in entries.into_iter().zip(&paths) {
        let report = by_path
            .get(&full.display().to_string())
            .cloned()
            .with_context(|| format!("no report for {}", full.display()))?;
        if let Some(error) = &report.error {
            bail!("{}: {error}", full.display());
        }
        files.push(FileResult {
            path,
            label,
            hard_negative,
            report,
        });
    }
    let mut categories: BTreeMap<String, CategoryResult> = BTreeMap::new();
    for file in &files {
        if file.label != "allowed" {
            categories
                .entry(file.label.clone())
                .or_insert_with(|| CategoryResult {
                    category: file.label.clone(),
                    files: 0,
                    true_positives: 0,
                    false_positives: 0,
                    false_negatives: 0,
                });
        }
    }
    for file in &files {
        let predicted = file.report.verdict.as_str();
        if let Some(category) = categories.get_mut(&file.label) {
            category.files += 1;
            if predicted == file.label {
                category.true_positives += 1;
            } else {
                category.false_negatives += 1;
            }
        }
        if predicted != file.label {
            if let Some(category) = categories.get_mut(predicted) {
                category.false_positives += 1;
            }
        }
    }
    Ok(Evaluation {
        categories: categories.into_values().collect(),
        files,
    })
}

/// Runs the evaluation command.
pub fn run_eval(args: &EvalArgs) -> anyhow::Result<ExitCode> {
    let policy = load_policy(args.config.as_deref())?;
    let evaluation = evaluate(&policy, &args.corpus, &args.tier)?;
    let markdown = evaluation.to_markdown();
    print!("{markdown}");
    if let Some(output) = &args.output {
        std::fs::write(output, &markdown)
            .with_context(|| format!("writing {}", output.display()))?;
    }
    if let Some(recall_min) = args.require_recall {
        let recall_ok = evaluation
            .categories
            .iter()
            .all(|category| category.recall() >= recall_min);
        if !recall_ok || evaluation.hard_negative_false_positives() > 0 {
            return Ok(ExitCode::from(1));
        }
    }
    Ok(ExitCode::SUCCESS)
}
