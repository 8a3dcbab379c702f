//! Operator configuration of the policy: extra packs, disabled packs and rules, new weights,
//! actions, thresholds and shadow mode. Embedded in the server's config under `[policy]`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::verdict::Action;

/// The `[policy]` section of the operator's configuration.
///
/// ```toml
/// [policy]
/// pack_files = ["/etc/commonlab/packs/site.toml"]
/// disable = ["denial-of-service", "p2p.torrent-word"]
/// shadow = ["remote-access.tunnel-tool"]
/// appeal_url = "https://example.org/appeal"
///
/// [policy.rules."mining.pool-port"]
/// weight = 0.2
///
/// [policy.packs.free-tier]
/// action = { free = "warn" }
///
/// [policy.thresholds]
/// deepfake = 1.5
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    /// Whether the packs shipped with the engine are loaded (default true).
    #[serde(default = "default_true")]
    pub builtin_packs: bool,
    /// Extra pack files; the caller reads them and passes their text to [`crate::Policy::configured`].
    #[serde(default)]
    pub pack_files: Vec<String>,
    /// Pack or rule ids to disable.
    #[serde(default)]
    pub disable: Vec<String>,
    /// Pack or rule ids to run in shadow mode: findings recorded, no action taken.
    #[serde(default)]
    pub shadow: Vec<String>,
    /// Overrides per rule id.
    #[serde(default)]
    pub rules: BTreeMap<String, RuleOverride>,
    /// Overrides per pack id, applied to each of the pack's rules before rule overrides.
    #[serde(default)]
    pub packs: BTreeMap<String, PackOverride>,
    /// Score thresholds per category (default 1.0).
    #[serde(default)]
    pub thresholds: BTreeMap<String, f32>,
    /// Where users appeal a decision; shown in every explanation.
    #[serde(default)]
    pub appeal_url: Option<String>,
    /// The most bytes of one cell that are checked (default 1 MiB); the rest is not read, so the
    /// server refuses longer code.
    #[serde(default)]
    pub cell_bytes_max: Option<usize>,
    /// The most bytes of one document that are scanned (default 16 MiB).
    #[serde(default)]
    pub scan_bytes_max: Option<usize>,
}

fn default_true() -> bool {
    true
}

impl Default for PolicyConfig {
    fn default() -> PolicyConfig {
        PolicyConfig {
            builtin_packs: true,
            pack_files: Vec::new(),
            disable: Vec::new(),
            shadow: Vec::new(),
            rules: BTreeMap::new(),
            packs: BTreeMap::new(),
            thresholds: BTreeMap::new(),
            appeal_url: None,
            cell_bytes_max: None,
            scan_bytes_max: None,
        }
    }
}

/// Changes to one rule.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleOverride {
    /// Enables or disables the rule.
    #[serde(default)]
    pub enabled: Option<bool>,
    /// A new weight.
    #[serde(default)]
    pub weight: Option<f32>,
    /// A new weight outside the rule's scope.
    #[serde(default)]
    pub elsewhere_weight: Option<f32>,
    /// Actions per tier, merged over the rule's.
    #[serde(default)]
    pub action: BTreeMap<String, Action>,
    /// Shadow mode on or off.
    #[serde(default)]
    pub shadow: Option<bool>,
}

/// Changes to every rule of one pack.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PackOverride {
    /// Enables or disables the pack.
    #[serde(default)]
    pub enabled: Option<bool>,
    /// Multiplies the weight of every rule of the pack.
    #[serde(default)]
    pub weight_factor: Option<f32>,
    /// Actions per tier, merged over each rule's.
    #[serde(default)]
    pub action: BTreeMap<String, Action>,
    /// Shadow mode on or off for every rule of the pack.
    #[serde(default)]
    pub shadow: Option<bool>,
}
