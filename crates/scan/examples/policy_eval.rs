//! Runs the policy evaluation, `scan` or `policy list` from the command line without the
//! `commonlab` binary: `cargo run -p commonlab-scan --example policy_eval -- eval CORPUS`.

use std::process::ExitCode;

use clap::Parser;

#[derive(Parser)]
enum Command {
    /// Evaluate on a labelled corpus.
    Eval(commonlab_scan::EvalArgs),
    /// Scan files and directories.
    Scan(commonlab_scan::ScanArgs),
    /// List packs and rules.
    List(commonlab_scan::PolicyListArgs),
}

fn main() -> anyhow::Result<ExitCode> {
    match Command::parse() {
        Command::Eval(args) => commonlab_scan::run_eval(&args),
        Command::Scan(args) => commonlab_scan::run_scan(&args),
        Command::List(args) => commonlab_scan::run_policy_list(&args),
    }
}
