//! The IO front end of the policy engine: `commonlab scan`, `commonlab policy list` and the
//! policy evaluation over a labelled corpus.
//!
//! This crate reads files and prints; `commonlab-policy` decides. The binary wires each
//! command in one line: parse the `Args` struct with clap and call its `run_*` function,
//! which returns the process exit code.
//!
//! # Exit codes of `scan`
//! The exit code is a bit set, so scripts can test each condition:
//! - `0`: every file was read and every verdict is `allowed`.
//! - `1` (bit 0): at least one file has a verdict other than `allowed`.
//! - `2` (bit 1): at least one path could not be read (or the configuration is invalid; then
//!   nothing is scanned).
//! - `3`: both.

#![allow(clippy::print_stdout)]

mod config;
mod eval;
mod list;
mod scan;

pub use config::load_policy;
pub use eval::{evaluate, run_eval, CategoryResult, EvalArgs, Evaluation, FileResult};
pub use list::{run_policy_list, PolicyListArgs};
pub use scan::{run_scan, scan_paths, FileReport, ScanArgs};

/// Exit code bit: a file's verdict is not `allowed`.
pub const EXIT_FLAGGED: u8 = 1;
/// Exit code bit: a path could not be read, or the configuration is invalid.
pub const EXIT_ERROR: u8 = 2;
