//! Integration tests of the scan front end: the evaluation over the dev corpus, and the
//! `scan` command's output and exit codes.

mod eval;
mod scan;
