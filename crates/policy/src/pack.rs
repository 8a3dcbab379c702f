//! Rule packs: the declarative TOML format, its validation, and the compiled rules.
//!
//! A pack is one TOML file with a `[pack]` table and any number of `[[rule]]` tables.
//! See `docs/policy.md` for the format with examples.

use std::collections::BTreeMap;
use std::fmt;

use regex::Regex;
use serde::{Deserialize, Serialize};

use crate::verdict::Action;

/// The packs shipped with the engine, as `(file name, TOML text)`.
pub const BUILTIN_PACKS: &[(&str, &str)] = &[
    ("deepfake.toml", include_str!("../packs/deepfake.toml")),
    ("mining.toml", include_str!("../packs/mining.toml")),
    (
        "password-cracking.toml",
        include_str!("../packs/password-cracking.toml"),
    ),
    ("p2p.toml", include_str!("../packs/p2p.toml")),
    (
        "remote-access.toml",
        include_str!("../packs/remote-access.toml"),
    ),
    (
        "denial-of-service.toml",
        include_str!("../packs/denial-of-service.toml"),
    ),
    ("free-tier.toml", include_str!("../packs/free-tier.toml")),
];

/// One rule pack as written in TOML.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PackSpec {
    /// The pack header.
    pub pack: PackHeader,
    /// The rules of the pack.
    #[serde(default, rename = "rule")]
    pub rules: Vec<RuleSpec>,
}

/// The `[pack]` table.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PackHeader {
    /// Stable identifier, e.g. `mining`.
    pub id: String,
    /// A title a user can read.
    pub name: String,
    /// What the pack covers, for users and operators.
    pub description: String,
    /// The default category of the pack's rules, e.g. `mining`.
    pub category: String,
    /// The default action per tier for the pack's rules; the key `default` covers tiers not named.
    #[serde(default)]
    pub action: BTreeMap<String, Action>,
    /// The score at which a category of this pack is decided (default 1.0).
    #[serde(default)]
    pub threshold: Option<f32>,
}

/// One `[[rule]]` table.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    /// Stable identifier, unique across all packs, e.g. `mining.miner-binary`.
    pub id: String,
    /// Overrides the pack's category.
    #[serde(default)]
    pub category: Option<String>,
    /// What the rule detects, in words a user can read.
    pub description: String,
    /// Terms matched with case and separators (`-`, `_`, `.`, spaces) folded away.
    #[serde(default)]
    pub terms: Vec<String>,
    /// Literals matched on the lower-cased text as written.
    #[serde(default)]
    pub literals: Vec<String>,
    /// Whether a term or literal must stand alone as a word (default true).
    #[serde(default = "default_true")]
    pub word: bool,
    /// An optional regular expression that the lower-cased line must also match.
    #[serde(default)]
    pub pattern: Option<String>,
    /// Where a match counts at full weight (default `["any"]`).
    #[serde(default)]
    pub scope: Vec<Scope>,
    /// The rule's contribution to its category's score.
    pub weight: f32,
    /// The contribution when matched in code outside the scope (default 0: ignored).
    #[serde(default)]
    pub elsewhere_weight: f32,
    /// Regular expressions: a match on the same lower-cased line suppresses the finding.
    #[serde(default)]
    pub allow: Vec<String>,
    /// Overrides the pack's action per tier.
    #[serde(default)]
    pub action: BTreeMap<String, Action>,
    /// Record findings without acting on them.
    #[serde(default)]
    pub shadow: bool,
    /// Executable or file SHA-256 digests (hex) that match this rule in runtime observations.
    #[serde(default)]
    pub sha256: Vec<String>,
}

fn default_true() -> bool {
    true
}

/// Where in code or in an observation a match was found.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(rename_all = "kebab-case")]
pub enum Scope {
    /// Any code or command line (not file paths or network destinations).
    Any,
    /// A shell command: `!` lines, `%%bash` cells, `.sh` files, `os.system` and `subprocess` calls.
    Shell,
    /// A package installation: `pip`, `apt`, `conda`, `dpkg`, `npm`.
    Install,
    /// A repository clone or archive download.
    Clone,
    /// A download with `wget`, `curl`, `aria2c`, `gdown` or a Python download call.
    Download,
    /// A Python `import` statement.
    Import,
    /// Python code other than the above.
    Code,
    /// A process command line or executable name observed at run time.
    Process,
    /// A file path observed in the workspace at run time.
    File,
    /// A network connection observed at run time: `connect tcp HOST:PORT`, `listen tcp :PORT`,
    /// or the first bytes a connection carried.
    Network,
    /// A resource-usage profile label, e.g. `profile:gpu-saturated-unattended`.
    Profile,
}

/// Bit set of [`Scope`]s.
pub(crate) type ScopeBits = u16;

pub(crate) const SHELL: ScopeBits = 1;
pub(crate) const INSTALL: ScopeBits = 2;
pub(crate) const CLONE: ScopeBits = 4;
pub(crate) const DOWNLOAD: ScopeBits = 8;
pub(crate) const IMPORT: ScopeBits = 16;
pub(crate) const CODE: ScopeBits = 32;
pub(crate) const PROCESS: ScopeBits = 64;
pub(crate) const FILE: ScopeBits = 128;
pub(crate) const NETWORK: ScopeBits = 256;
pub(crate) const PROFILE: ScopeBits = 512;
/// Contexts where `elsewhere_weight` applies.
pub(crate) const ANY_CODE: ScopeBits = SHELL | INSTALL | CLONE | DOWNLOAD | IMPORT | CODE | PROCESS;

impl Scope {
    pub(crate) fn bits(self) -> ScopeBits {
        match self {
            Scope::Any => ANY_CODE,
            Scope::Shell => SHELL,
            Scope::Install => INSTALL,
            Scope::Clone => CLONE,
            Scope::Download => DOWNLOAD,
            Scope::Import => IMPORT,
            Scope::Code => CODE,
            Scope::Process => PROCESS,
            Scope::File => FILE,
            Scope::Network => NETWORK,
            Scope::Profile => PROFILE,
        }
    }
}

/// A pack or rule that could not be loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PackError {
    /// The TOML did not parse or did not fit the format.
    Parse { pack: String, message: String },
    /// A rule is invalid.
    Rule { rule: String, message: String },
    /// Two rules or packs share an id.
    Duplicate { id: String },
    /// The operator's configuration names a pack or rule that does not exist.
    Unknown { id: String },
}

impl fmt::Display for PackError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PackError::Parse { pack, message } => write!(f, "rule pack {pack}: {message}"),
            PackError::Rule { rule, message } => write!(f, "rule {rule}: {message}"),
            PackError::Duplicate { id } => write!(f, "duplicate pack or rule id {id}"),
            PackError::Unknown { id } => write!(f, "no pack or rule named {id}"),
        }
    }
}

impl std::error::Error for PackError {}

/// Parses one pack from TOML text; `name` is used in error messages.
pub fn parse_pack(name: &str, toml_text: &str) -> Result<PackSpec, PackError> {
    toml::from_str(toml_text).map_err(|err| PackError::Parse {
        pack: name.to_owned(),
        message: err.to_string(),
    })
}

/// A rule ready for matching.
#[derive(Debug, Clone)]
pub(crate) struct Rule {
    pub(crate) id: String,
    pub(crate) pack: String,
    pub(crate) category: String,
    pub(crate) description: String,
    pub(crate) word: bool,
    pub(crate) pattern: Option<Regex>,
    pub(crate) scope: ScopeBits,
    pub(crate) weight: f32,
    pub(crate) elsewhere_weight: f32,
    pub(crate) allow: Vec<Regex>,
    pub(crate) action: BTreeMap<String, Action>,
    pub(crate) shadow: bool,
    pub(crate) enabled: bool,
    pub(crate) sha256: Vec<String>,
}

impl Rule {
    /// The rule's action for `tier`.
    pub(crate) fn action_for(&self, tier: &str) -> Action {
        self.action
            .get(tier)
            .or_else(|| self.action.get("default"))
            .copied()
            .unwrap_or(Action::Block)
    }
}

/// Folds a term the way the text is folded: ASCII lower case, separators removed.
pub(crate) fn fold_term(term: &str) -> String {
    term.bytes()
        .filter(|b| !is_separator(*b))
        .map(|b| b.to_ascii_lowercase() as char)
        .collect()
}

/// Bytes removed by folding.
pub(crate) const fn is_separator(byte: u8) -> bool {
    matches!(byte, b'-' | b'_' | b'.' | b' ' | b'\t')
}

fn compile_regex(rule: &str, pattern: &str) -> Result<Regex, PackError> {
    Regex::new(pattern).map_err(|err| PackError::Rule {
        rule: rule.to_owned(),
        message: err.to_string(),
    })
}

/// Compiles one rule of `pack`.
pub(crate) fn compile_rule(pack: &PackHeader, spec: &RuleSpec) -> Result<Rule, PackError> {
    let bad = |message: &str| PackError::Rule {
        rule: spec.id.clone(),
        message: message.to_owned(),
    };
    if spec.id.is_empty() {
        return Err(bad("empty id"));
    }
    if spec.terms.is_empty()
        && spec.literals.is_empty()
        && spec.sha256.is_empty()
        && spec.pattern.is_none()
    {
        return Err(bad(
            "a rule needs at least one of terms, literals, pattern or sha256",
        ));
    }
    if spec.terms.iter().any(|term| fold_term(term).is_empty())
        || spec.literals.iter().any(|literal| literal.is_empty())
    {
        return Err(bad("empty term or literal"));
    }
    if !(0.0..=10.0).contains(&spec.weight) || !(0.0..=10.0).contains(&spec.elsewhere_weight) {
        return Err(bad("weights must lie in 0..=10"));
    }
    if spec
        .sha256
        .iter()
        .any(|digest| digest.len() != 64 || !digest.bytes().all(|b| b.is_ascii_hexdigit()))
    {
        return Err(bad("sha256 digests must be 64 hex digits"));
    }
    let mut action = pack.action.clone();
    action.extend(
        spec.action
            .iter()
            .map(|(tier, action)| (tier.clone(), *action)),
    );
    let scope = if spec.scope.is_empty() {
        ANY_CODE
    } else {
        spec.scope.iter().fold(0, |bits, scope| bits | scope.bits())
    };
    Ok(Rule {
        id: spec.id.clone(),
        pack: pack.id.clone(),
        category: spec
            .category
            .clone()
            .unwrap_or_else(|| pack.category.clone()),
        description: spec.description.clone(),
        word: spec.word,
        pattern: spec
            .pattern
            .as_deref()
            .map(|p| compile_regex(&spec.id, p))
            .transpose()?,
        scope,
        weight: spec.weight,
        elsewhere_weight: spec.elsewhere_weight,
        allow: spec
            .allow
            .iter()
            .map(|p| compile_regex(&spec.id, p))
            .collect::<Result<_, _>>()?,
        action,
        shadow: spec.shadow,
        enabled: true,
        sha256: spec
            .sha256
            .iter()
            .map(|digest| digest.to_ascii_lowercase())
            .collect(),
    })
}
