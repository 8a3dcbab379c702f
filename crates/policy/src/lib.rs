//! Commonlab's usage-policy engine: published rule packs, code normalisation and matching,
//! runtime-observation detectors, scoring and verdicts.
//!
//! Architecture invariant: this crate does no IO. It reads no files, opens no sockets, reads
//! no clock and knows no async runtime. Code, documents and observations come in as
//! arguments; findings and verdicts go out as values. The rule packs it ships are compiled
//! into the binary with `include_str!`; operators' packs come in as text.
//!
//! # Layout
//! - [`pack`]: the TOML rule-pack format and its validation.
//! - [`config`]: the operator's `[policy]` configuration.
//! - `document`: notebooks and scripts into units of code, comments blanked, line contexts.
//! - `normalize`: joined strings, variables, base64, hex, reversed strings.
//! - `engine`: matching and scoring.
//! - `search`: the overlapping Aho-Corasick searches, several texts side by side.
//! - [`runtime`]: observations of a running runtime and their detectors.
//! - [`verdict`]: findings, verdicts, actions and the explanation shown to users.
//!
//! # Scoring
//! Each rule has a weight. A category's score is the sum, over distinct rules of that
//! category, of each rule's strongest finding. A category is decided when its score reaches
//! its threshold (1.0 unless configured), so one weak signal never decides, and several
//! independent weak signals do.

pub mod config;
pub mod docs;
mod document;
mod engine;
mod fastjson;
mod normalize;
pub mod pack;
pub mod runtime;
mod search;
pub mod verdict;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};

pub use config::{PackOverride, PolicyConfig, RuleOverride};
pub use pack::{PackError, PackSpec, RuleSpec, Scope, BUILTIN_PACKS};
pub use runtime::{Direction, Observation, ProfileLimits};
pub use verdict::{Action, CategoryScore, Finding, Location, Verdict, Via};

use engine::{match_line, match_unit, Collector, DocState, Matcher, Scratch};
use pack::{compile_rule, parse_pack, Rule};

/// The default for [`PolicyConfig::cell_bytes_max`].
pub const CELL_BYTES_MAX_DEFAULT: usize = 1024 * 1024;
/// The default for [`PolicyConfig::scan_bytes_max`].
pub const SCAN_BYTES_MAX_DEFAULT: usize = 16 * 1024 * 1024;

/// Who is asking: the context a check is made in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckContext {
    /// The user's tier name, e.g. `free` or `pro`; rules choose their action per tier.
    pub tier: String,
}

impl CheckContext {
    /// A context for `tier`.
    pub fn new(tier: impl Into<String>) -> CheckContext {
        CheckContext { tier: tier.into() }
    }
}

/// The result of scanning one document.
#[derive(Debug, Clone, PartialEq)]
pub struct ScanReport {
    /// The verdict over the whole document.
    pub verdict: Verdict,
    /// Whether the document was longer than `scan_bytes_max` and only its start was scanned.
    pub truncated: bool,
    /// The number of code units (cells or scripts) scanned.
    pub units: usize,
}

/// A pack as loaded, for listing.
#[derive(Debug, Clone, PartialEq)]
pub struct PackSummary {
    /// The pack's id.
    pub id: String,
    /// The pack's title.
    pub name: String,
    /// What it covers.
    pub description: String,
    /// Whether any of its rules is enabled.
    pub enabled: bool,
}

/// A rule as loaded (after the operator's configuration), for listing.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleSummary {
    /// The rule's id.
    pub id: String,
    /// Its pack's id.
    pub pack: String,
    /// Its category.
    pub category: String,
    /// What it detects.
    pub description: String,
    /// Its weight in scope.
    pub weight: f32,
    /// Its weight elsewhere in code.
    pub elsewhere_weight: f32,
    /// Its actions per tier (`default` covers the rest).
    pub action: BTreeMap<String, Action>,
    /// Whether it is enabled.
    pub enabled: bool,
    /// Whether it only records.
    pub shadow: bool,
}

/// A loaded, compiled policy. Cheap to share between threads (`&Policy` is all it needs).
#[derive(Debug, Clone)]
pub struct Policy {
    packs: Vec<PackSummary>,
    rules: Vec<Rule>,
    matcher: Matcher,
    thresholds: BTreeMap<String, f32>,
    appeal_url: String,
    cell_bytes_max: usize,
    scan_bytes_max: usize,
    profile_limits: ProfileLimits,
}

impl Policy {
    /// The policy made of the packs shipped with the engine.
    pub fn builtin() -> Policy {
        Policy::configured(&PolicyConfig::default(), &[])
            .expect("the built-in packs are valid (tested)")
    }

    /// The built-in packs parsed.
    pub fn builtin_specs() -> Vec<PackSpec> {
        BUILTIN_PACKS
            .iter()
            .map(|(name, text)| {
                parse_pack(name, text).expect("the built-in packs are valid (tested)")
            })
            .collect()
    }

    /// A policy from the given packs, with no operator configuration.
    pub fn from_packs(packs: Vec<PackSpec>) -> Result<Policy, PackError> {
        Policy::build(packs, &PolicyConfig::default())
    }

    /// The policy an operator configured: the built-in packs (unless turned off), then the
    /// extra packs given as `(name, TOML text)`, then the overrides of `config`.
    pub fn configured(
        config: &PolicyConfig,
        extra_packs: &[(String, String)],
    ) -> Result<Policy, PackError> {
        let mut packs = if config.builtin_packs {
            Policy::builtin_specs()
        } else {
            Vec::new()
        };
        for (name, text) in extra_packs {
            packs.push(parse_pack(name, text)?);
        }
        Policy::build(packs, config)
    }

    fn build(packs: Vec<PackSpec>, config: &PolicyConfig) -> Result<Policy, PackError> {
        let mut ids = BTreeSet::new();
        let mut rules = Vec::new();
        let mut patterns = Vec::new();
        let mut summaries = Vec::new();
        let mut thresholds = BTreeMap::new();
        for pack in &packs {
            if !ids.insert(pack.pack.id.clone()) {
                return Err(PackError::Duplicate {
                    id: pack.pack.id.clone(),
                });
            }
            if let Some(threshold) = pack.pack.threshold {
                thresholds.insert(pack.pack.category.clone(), threshold);
            }
            let pack_override = config.packs.get(&pack.pack.id);
            let pack_enabled = !config.disable.contains(&pack.pack.id)
                && pack_override.and_then(|o| o.enabled).unwrap_or(true);
            for spec in &pack.rules {
                if !ids.insert(spec.id.clone()) {
                    return Err(PackError::Duplicate {
                        id: spec.id.clone(),
                    });
                }
                let mut rule = compile_rule(&pack.pack, spec)?;
                rule.enabled = pack_enabled && !config.disable.contains(&rule.id);
                rule.shadow |=
                    config.shadow.contains(&pack.pack.id) || config.shadow.contains(&rule.id);
                if let Some(pack_override) = pack_override {
                    let factor = pack_override.weight_factor.unwrap_or(1.0);
                    rule.weight *= factor;
                    rule.elsewhere_weight *= factor;
                    rule.action.extend(
                        pack_override
                            .action
                            .iter()
                            .map(|(tier, action)| (tier.clone(), *action)),
                    );
                    if let Some(shadow) = pack_override.shadow {
                        rule.shadow = shadow;
                    }
                }
                if let Some(rule_override) = config.rules.get(&rule.id) {
                    if let Some(enabled) = rule_override.enabled {
                        rule.enabled = enabled && pack_enabled;
                    }
                    if let Some(weight) = rule_override.weight {
                        rule.weight = weight;
                    }
                    if let Some(weight) = rule_override.elsewhere_weight {
                        rule.elsewhere_weight = weight;
                    }
                    rule.action.extend(
                        rule_override
                            .action
                            .iter()
                            .map(|(tier, action)| (tier.clone(), *action)),
                    );
                    if let Some(shadow) = rule_override.shadow {
                        rule.shadow = shadow;
                    }
                }
                rules.push(rule);
                patterns.push((spec.terms.clone(), spec.literals.clone()));
            }
            summaries.push(PackSummary {
                id: pack.pack.id.clone(),
                name: pack.pack.name.clone(),
                description: pack.pack.description.clone(),
                enabled: pack_enabled,
            });
        }
        let named = config
            .disable
            .iter()
            .chain(&config.shadow)
            .chain(config.rules.keys())
            .chain(config.packs.keys());
        for id in named {
            if !ids.contains(id) {
                return Err(PackError::Unknown { id: id.clone() });
            }
        }
        thresholds.extend(
            config
                .thresholds
                .iter()
                .map(|(category, threshold)| (category.clone(), *threshold)),
        );
        let matcher = Matcher::new(&rules, &patterns)?;
        Ok(Policy {
            packs: summaries,
            rules,
            matcher,
            thresholds,
            appeal_url: config
                .appeal_url
                .clone()
                .unwrap_or_else(|| "/hub/appeals".to_owned()),
            cell_bytes_max: config.cell_bytes_max.unwrap_or(CELL_BYTES_MAX_DEFAULT),
            scan_bytes_max: config.scan_bytes_max.unwrap_or(SCAN_BYTES_MAX_DEFAULT),
            profile_limits: ProfileLimits::default(),
        })
    }

    /// Checks the code of one `execute_request`.
    pub fn check_cell(&self, code: &str, ctx: &CheckContext) -> Verdict {
        let code = truncate_at_char(code, self.cell_bytes_max);
        let unit = document::Unit {
            cell: None,
            source: std::borrow::Cow::Borrowed(code),
            lang: document::Lang::Python,
        };
        let mut collector = Collector::new(&self.rules);
        let mut state = DocState::default();
        match_unit(
            &self.matcher,
            &self.rules,
            &mut collector,
            &mut state,
            &unit,
        );
        collector.verdict(&ctx.tier, &self.thresholds)
    }

    /// Scans one document (`.ipynb`, `.py`, `.sh`, or anything else as text); `path_hint`
    /// picks the format by its extension.
    pub fn scan_document(&self, path_hint: &str, bytes: &[u8], ctx: &CheckContext) -> ScanReport {
        let truncated = bytes.len() > self.scan_bytes_max;
        let bytes = &bytes[..bytes.len().min(self.scan_bytes_max)];
        let units = document::units(path_hint, bytes);
        let mut collector = Collector::new(&self.rules);
        let mut state = DocState::default();
        for unit in &units {
            match_unit(&self.matcher, &self.rules, &mut collector, &mut state, unit);
        }
        ScanReport {
            verdict: collector.verdict(&ctx.tier, &self.thresholds),
            truncated,
            units: units.len(),
        }
    }

    /// The findings of one observation.
    pub fn inspect_observation(&self, observation: &Observation) -> Vec<Finding> {
        self.inspect_runtime(
            std::slice::from_ref(observation),
            &CheckContext::new("default"),
        )
        .findings
    }

    /// The verdict over a set of observations of one runtime; weak signals from several
    /// observations combine as they do in code.
    pub fn inspect_runtime(&self, observations: &[Observation], ctx: &CheckContext) -> Verdict {
        let mut collector = Collector::new(&self.rules);
        let mut scratch = Scratch::default();
        for (index, observation) in observations.iter().enumerate() {
            let location = Location {
                cell: None,
                line: index as u32 + 1,
            };
            let description = runtime::describe(observation);
            for (text, ctx_bits) in runtime::observation_texts(observation, &self.profile_limits) {
                let line_text = format!("{description}: {text}");
                match_line(
                    &self.matcher,
                    &self.rules,
                    &mut collector,
                    &mut scratch,
                    &text,
                    &line_text,
                    ctx_bits,
                    location.clone(),
                    Via::Direct,
                );
            }
            let digest = match observation {
                Observation::Process { sha256, .. } | Observation::File { sha256, .. } => {
                    sha256.as_deref()
                }
                _ => None,
            };
            if let Some(digest) = digest.map(str::to_ascii_lowercase) {
                for (rule_index, rule) in self.rules.iter().enumerate() {
                    if rule.enabled && rule.sha256.contains(&digest) {
                        collector.record_direct(
                            rule_index,
                            location.clone(),
                            &format!("sha256:{digest}"),
                            Via::Digest,
                        );
                    }
                }
            }
        }
        collector.verdict(&ctx.tier, &self.thresholds)
    }

    /// Where users appeal a decision.
    pub fn appeal_url(&self) -> &str {
        &self.appeal_url
    }

    /// The explanation of `verdict` for the user, with this policy's appeal address.
    pub fn user_message(&self, verdict: &Verdict) -> String {
        verdict.user_message(&self.appeal_url)
    }

    /// The loaded packs.
    pub fn packs(&self) -> &[PackSummary] {
        &self.packs
    }

    /// The loaded rules, after the operator's configuration.
    pub fn rules(&self) -> Vec<RuleSummary> {
        self.rules
            .iter()
            .map(|rule| RuleSummary {
                id: rule.id.clone(),
                pack: rule.pack.clone(),
                category: rule.category.clone(),
                description: rule.description.clone(),
                weight: rule.weight,
                elsewhere_weight: rule.elsewhere_weight,
                action: rule.action.clone(),
                enabled: rule.enabled,
                shadow: rule.shadow,
            })
            .collect()
    }

    /// The score thresholds per category that differ from 1.0.
    pub fn thresholds(&self) -> &BTreeMap<String, f32> {
        &self.thresholds
    }

    /// The most bytes of a cell that [`Policy::check_cell`] reads; the rest is not checked.
    pub fn cell_bytes_max(&self) -> usize {
        self.cell_bytes_max
    }

    /// The most bytes of a document that [`Policy::scan_document`] reads.
    pub fn scan_bytes_max(&self) -> usize {
        self.scan_bytes_max
    }

    /// Replaces the resource-profile thresholds.
    pub fn with_profile_limits(mut self, limits: ProfileLimits) -> Policy {
        self.profile_limits = limits;
        self
    }
}

fn truncate_at_char(text: &str, bytes_max: usize) -> &str {
    if text.len() <= bytes_max {
        return text;
    }
    let mut end = bytes_max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}
