//! `commonlab audit`: verify the audit log's hash chain and list its records.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::process::ExitCode;

use commonlab_store::AuditRecord;
use serde_json::json;

use crate::users::StoreArgs;

/// Flags of `commonlab audit`.
#[derive(Debug, clap::Args)]
pub(crate) struct AuditArgs {
    #[command(flatten)]
    store: StoreArgs,
    #[command(subcommand)]
    command: AuditCommand,
}

#[derive(Debug, clap::Subcommand)]
enum AuditCommand {
    /// Walk the hash chain; exits 1 naming the first broken link.
    Verify,
    /// Show records, oldest first: the last N, or N after --after.
    List {
        /// How many records to show.
        #[arg(long, default_value_t = 20)]
        limit: usize,
        /// Show records after this seq instead of the last ones.
        #[arg(long)]
        after: Option<i64>,
        /// Print JSON lines (with hashes) instead of a table.
        #[arg(long)]
        json: bool,
    },
}

/// Rows as columns padded to their widest cell, two spaces apart; the last column is not padded.
pub(crate) fn table<const N: usize>(rows: &[[String; N]]) -> String {
    let mut widths = [0; N];
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (idx, cell) in row.iter().enumerate() {
            if idx + 1 < N {
                line.push_str(&format!("{cell:<width$}  ", width = widths[idx]));
            } else {
                line.push_str(cell);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn record_json(record: &AuditRecord) -> serde_json::Value {
    json!({
        "seq": record.seq,
        "at": record.at,
        "actor": record.actor,
        "action": record.action,
        "subject": record.subject,
        "detail": record.detail,
        "prev_hash": record.prev_hash,
        "hash": record.hash,
    })
}

pub(crate) fn run(args: AuditArgs) -> anyhow::Result<ExitCode> {
    let store = args.store.open(false)?.store;
    match args.command {
        AuditCommand::Verify => {
            let verify = store.audit_verify()?;
            match verify.first_bad {
                None => {
                    println!(
                        "audit log OK: {} records checked; head seq {} hash {}",
                        verify.records, verify.head_seq, verify.head_hash
                    );
                    Ok(ExitCode::SUCCESS)
                }
                Some(first_bad) => {
                    println!(
                        "audit log BROKEN at seq {}: {} ({} records checked, the last good one is seq {})",
                        first_bad.seq, first_bad.reason, verify.records, verify.head_seq
                    );
                    Ok(ExitCode::from(1))
                }
            }
        }
        AuditCommand::List { limit, after, json } => {
            let after = match after {
                Some(after) => after,
                None => (store.audit_last_seq()? - i64::try_from(limit)?).max(0),
            };
            let records = store.audit_list(after, limit)?;
            if json {
                for record in &records {
                    println!("{}", record_json(record));
                }
            } else {
                let mut rows = vec![[
                    "SEQ".to_owned(),
                    "AT".into(),
                    "ACTOR".into(),
                    "ACTION".into(),
                    "SUBJECT".into(),
                    "DETAIL".into(),
                ]];
                rows.extend(records.iter().map(|record| {
                    [
                        record.seq.to_string(),
                        record.at.clone(),
                        record.actor.clone().unwrap_or_else(|| "-".into()),
                        record.action.clone(),
                        record.subject.clone().unwrap_or_else(|| "-".into()),
                        record.detail.to_string(),
                    ]
                }));
                print!("{}", table(&rows));
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
