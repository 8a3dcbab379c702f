//! Loading the policy with an operator's configuration file and its extra packs.

use std::path::Path;

use anyhow::Context;
use commonlab_policy::{Policy, PolicyConfig};

/// Builds the policy: the built-in packs, or those configured in `config_path`.
///
/// The file is either the server's configuration (the `[policy]` table is used) or a bare
/// policy configuration. `pack_files` are read relative to the file's folder.
pub fn load_policy(config_path: Option<&Path>) -> anyhow::Result<Policy> {
    let Some(config_path) = config_path else {
        return Ok(Policy::builtin());
    };
    let text = std::fs::read_to_string(config_path)
        .with_context(|| format!("reading policy configuration {}", config_path.display()))?;
    let value: toml::Table =
        toml::from_str(&text).with_context(|| format!("parsing {}", config_path.display()))?;
    let section = match value.get("policy") {
        Some(toml::Value::Table(policy)) => policy.clone(),
        _ => value,
    };
    let config: PolicyConfig = toml::Value::Table(section)
        .try_into()
        .with_context(|| format!("the [policy] configuration in {}", config_path.display()))?;
    let base = config_path.parent().unwrap_or(Path::new("."));
    let mut extra_packs = Vec::new();
    for pack_file in &config.pack_files {
        let path = base.join(pack_file);
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading rule pack {}", path.display()))?;
        extra_packs.push((path.display().to_string(), text));
    }
    Ok(Policy::configured(&config, &extra_packs)?)
}
