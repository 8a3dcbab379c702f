//! `commonlab policy list`: the packs and rules in force.

use std::path::PathBuf;
use std::process::ExitCode;

use serde::Serialize;

use crate::load_policy;

/// List the policy's rule packs and rules as configured.
#[derive(Debug, Clone, clap::Args)]
pub struct PolicyListArgs {
    /// A configuration file with a `[policy]` table (or a bare policy configuration).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
    /// Show only packs, not their rules.
    #[arg(long)]
    pub packs_only: bool,
}

#[derive(Serialize)]
struct PackJson {
    id: String,
    name: String,
    description: String,
    enabled: bool,
    rules: Vec<RuleJson>,
}

#[derive(Serialize)]
struct RuleJson {
    id: String,
    category: String,
    description: String,
    weight: f32,
    elsewhere_weight: f32,
    action: std::collections::BTreeMap<String, commonlab_policy::Action>,
    enabled: bool,
    shadow: bool,
}

/// Runs `commonlab policy list`.
pub fn run_policy_list(args: &PolicyListArgs) -> anyhow::Result<ExitCode> {
    let policy = load_policy(args.config.as_deref())?;
    let rules = policy.rules();
    let packs: Vec<PackJson> = policy
        .packs()
        .iter()
        .map(|pack| PackJson {
            id: pack.id.clone(),
            name: pack.name.clone(),
            description: pack.description.clone(),
            enabled: pack.enabled,
            rules: rules
                .iter()
                .filter(|rule| rule.pack == pack.id)
                .map(|rule| RuleJson {
                    id: rule.id.clone(),
                    category: rule.category.clone(),
                    description: rule.description.clone(),
                    weight: rule.weight,
                    elsewhere_weight: rule.elsewhere_weight,
                    action: rule.action.clone(),
                    enabled: rule.enabled,
                    shadow: rule.shadow,
                })
                .collect(),
        })
        .collect();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&packs)?);
        return Ok(ExitCode::SUCCESS);
    }
    let mut out = String::new();
    for pack in &packs {
        let state = if pack.enabled { "" } else { " [disabled]" };
        out.push_str(&format!(
            "{} — {}{state}\n  {}\n",
            pack.id, pack.name, pack.description
        ));
        if args.packs_only {
            continue;
        }
        for rule in &pack.rules {
            let actions: Vec<String> = rule
                .action
                .iter()
                .map(|(tier, action)| format!("{tier}={action}"))
                .collect();
            let mut flags = String::new();
            if !rule.enabled {
                flags.push_str(" [disabled]");
            }
            if rule.shadow {
                flags.push_str(" [shadow]");
            }
            out.push_str(&format!(
                "  {:<44} {:<22} w={:.2}/{:.2} {}{flags}\n      {}\n",
                rule.id,
                rule.category,
                rule.weight,
                rule.elsewhere_weight,
                actions.join(","),
                rule.description
            ));
        }
        out.push('\n');
    }
    print!("{out}");
    Ok(ExitCode::SUCCESS)
}
