//! The policy evaluation over the labelled dev corpus, with the project's targets.

#![allow(clippy::print_stdout)]

use std::path::PathBuf;

use commonlab_policy::Policy;

fn corpus_dev() -> PathBuf {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/corpus/dev");
    assert!(
        path.join("manifest.tsv").is_file(),
        "the labelled corpus is missing: expected {} (shared/corpus beside the repository)",
        path.display()
    );
    path
}

#[test]
fn dev_corpus_meets_recall_and_hard_negative_targets() {
    let evaluation = commonlab_scan::evaluate(&Policy::builtin(), &corpus_dev(), "free")
        .expect("evaluation runs");
    let table = evaluation.to_markdown();
    println!("{table}");
    assert!(
        evaluation.categories.len() >= 6,
        "every positive label is evaluated:\n{table}"
    );
    for category in &evaluation.categories {
        assert!(
            category.recall() >= 0.95,
            "recall of {} is {:.2}:\n{table}",
            category.category,
            category.recall()
        );
    }
    assert_eq!(
        evaluation.hard_negative_false_positives(),
        0,
        "hard negatives flagged:\n{table}"
    );
    assert!(evaluation.hard_negatives().count() >= 10);
}
