//! Findings, verdicts and actions: what the engine hands back.

use std::fmt;

use serde::{Deserialize, Serialize};

/// What the caller should do about a verdict, from mildest to strongest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    /// Let it run.
    Allow,
    /// Let it run and show the explanation next to its output.
    Warn,
    /// Do not run the cell; answer with the explanation instead.
    Block,
    /// Interrupt the kernel's running cell.
    Interrupt,
    /// Stop the runtime.
    Stop,
    /// Stop the runtime and restrict the account until an operator reviews it.
    Restrict,
}

impl Action {
    /// The lower-case name used in TOML, JSON and messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Allow => "allow",
            Action::Warn => "warn",
            Action::Block => "block",
            Action::Interrupt => "interrupt",
            Action::Stop => "stop",
            Action::Restrict => "restrict",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a finding was made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Location {
    /// The notebook cell index (0-based, counting every cell), when the document is a notebook.
    pub cell: Option<u32>,
    /// The line (1-based) within the cell, or within the file when there are no cells.
    pub line: u32,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.cell {
            Some(cell) => write!(f, "cell {cell}, line {}", self.line),
            None => write!(f, "line {}", self.line),
        }
    }
}

/// How the matched text was obtained from the source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind", content = "from")]
pub enum Via {
    /// Matched in the text as written.
    Direct,
    /// Matched after joining string pieces (`"a" + "b"`, `"".join`, shell quotes, `chr()` chains).
    Concatenation,
    /// Matched after substituting a variable's string value.
    Variable,
    /// Matched after decoding a base64 literal.
    Base64,
    /// Matched after decoding hex escapes or a hex literal.
    Hex,
    /// Matched after reversing a string (`[::-1]`).
    Reversed,
    /// A renamed copy of something matched earlier (the original name).
    Alias(String),
    /// Matched a known SHA-256 digest.
    Digest,
    /// Derived from a resource-usage profile.
    Profile,
}

/// One rule that matched, with its evidence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    /// The rule's id.
    pub rule: String,
    /// The rule's category.
    pub category: String,
    /// What the rule detects, as written in its pack.
    pub description: String,
    /// The contribution of this finding to its category's score.
    pub weight: f32,
    /// Where it was found.
    pub location: Location,
    /// The text that matched (decoded or joined text when `via` says so).
    pub matched: String,
    /// The source line, trimmed and shortened.
    pub line_text: String,
    /// How the matched text was obtained.
    pub via: Via,
    /// Whether the rule is in shadow mode: recorded, not acted on.
    pub shadow: bool,
}

/// The score of one category.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CategoryScore {
    /// The category, e.g. `mining`.
    pub category: String,
    /// The sum, over distinct rules, of each rule's strongest finding.
    pub score: f32,
    /// The score at which the category is decided.
    pub threshold: f32,
    /// Whether the score reached the threshold counting only rules that are not in shadow mode.
    pub decided: bool,
    /// The action for the caller's tier when decided.
    pub action: Action,
}

/// What the policy decides about one piece of code or one set of observations.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    /// The action to take.
    pub action: Action,
    /// The category that decided the action, if any.
    pub category: Option<String>,
    /// Every category with a non-zero score, strongest first.
    pub categories: Vec<CategoryScore>,
    /// The evidence, in source order.
    pub findings: Vec<Finding>,
    /// The action shadow-mode rules would have added, when stronger than `action`.
    pub shadow_action: Option<Action>,
}

impl Verdict {
    /// A verdict with nothing found.
    pub fn allow() -> Verdict {
        Verdict {
            action: Action::Allow,
            category: None,
            categories: vec![],
            findings: vec![],
            shadow_action: None,
        }
    }

    /// True when the only reason to act comes from shadow-mode rules, which record without acting.
    pub fn is_shadow_only(&self) -> bool {
        self.action == Action::Allow && self.shadow_action.is_some()
    }

    /// The findings of the deciding category (all findings when none decided).
    pub fn deciding_findings(&self) -> impl Iterator<Item = &Finding> {
        self.findings.iter().filter(move |finding| {
            !finding.shadow
                && self
                    .category
                    .as_deref()
                    .is_none_or(|category| category == finding.category)
        })
    }

    /// A clear explanation for the user: the rules, the matched text, and how to appeal.
    pub fn user_message(&self, appeal_url: &str) -> String {
        let Some(category) = &self.category else {
            return "This code is allowed by the usage policy.".to_owned();
        };
        let verb = match self.action {
            Action::Allow => "is allowed but was noted",
            Action::Warn => "ran, but it matches",
            Action::Block => "was not run because it matches",
            Action::Interrupt => "was interrupted because it matches",
            Action::Stop => "was stopped because it matches",
            Action::Restrict => "was stopped and the account restricted because it matches",
        };
        let mut message = format!("This code {verb} the usage policy's \"{category}\" rules.\n");
        let mut seen = Vec::new();
        for finding in self.deciding_findings() {
            if seen.contains(&finding.rule) || seen.len() >= 5 {
                continue;
            }
            seen.push(finding.rule.clone());
            let via = match &finding.via {
                Via::Direct | Via::Profile => String::new(),
                Via::Concatenation => " (after joining strings)".to_owned(),
                Via::Variable => " (after substituting variables)".to_owned(),
                Via::Base64 => " (decoded from base64)".to_owned(),
                Via::Hex => " (decoded from hex)".to_owned(),
                Via::Reversed => " (reversed string)".to_owned(),
                Via::Alias(from) => format!(" (renamed from `{from}`)"),
                Via::Digest => " (known file digest)".to_owned(),
            };
            message.push_str(&format!(
                "- rule {}: {}\n  matched `{}`{via} at {}: {}\n",
                finding.rule,
                finding.description,
                finding.matched,
                finding.location,
                finding.line_text
            ));
        }
        message.push_str(&format!(
            "The rules are published; if this is a mistake, appeal at {appeal_url} and quote the rule ids above."
        ));
        message
    }
}
