//! The rules section of `docs/policy.md`, rendered from the packs so that the published
//! rules cannot drift from the ones the engine runs.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::pack::{parse_pack, PackError, PackSpec, Scope, BUILTIN_PACKS};
use crate::verdict::Action;

/// The line before the generated part of `docs/policy.md`.
pub const RULES_BEGIN: &str =
    "<!-- BEGIN GENERATED RULES: rendered from crates/policy/packs by commonlab_policy::docs::rules_markdown; do not edit by hand -->";
/// The line after the generated part of `docs/policy.md`.
pub const RULES_END: &str = "<!-- END GENERATED RULES -->";

/// Renders the shipped packs' rules as markdown.
pub fn builtin_rules_markdown() -> Result<String, PackError> {
    let packs = BUILTIN_PACKS
        .iter()
        .map(|(name, text)| parse_pack(name, text))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rules_markdown(&packs))
}

/// Renders packs as markdown: per pack its description and default actions, then a table of
/// its rules with id, description, where it counts, weights and actions per tier.
pub fn rules_markdown(packs: &[PackSpec]) -> String {
    let mut out = String::new();
    for spec in packs {
        let pack = &spec.pack;
        let _ = writeln!(out, "### `{}`: {}\n", pack.id, escape(&pack.name));
        let _ = writeln!(out, "{}\n", pack.description.trim());
        let _ = writeln!(
            out,
            "Category `{}`, default action {}, threshold {}.\n",
            pack.category,
            actions(&pack.action),
            number(pack.threshold.unwrap_or(1.0))
        );
        out.push_str("| rule | category | description | scope | weight | elsewhere | actions |\n");
        out.push_str("| --- | --- | --- | --- | ---: | ---: | --- |\n");
        for rule in &spec.rules {
            let mut merged = pack.action.clone();
            merged.extend(
                rule.action
                    .iter()
                    .map(|(tier, action)| (tier.clone(), *action)),
            );
            let mut id = format!("`{}`", rule.id);
            if rule.shadow {
                id.push_str(" (shadow)");
            }
            let _ = writeln!(
                out,
                "| {id} | `{}` | {} | {} | {} | {} | {} |",
                rule.category.as_deref().unwrap_or(&pack.category),
                escape(&rule.description),
                scopes(&rule.scope),
                number(rule.weight),
                number(rule.elsewhere_weight),
                actions(&merged)
            );
        }
        out.push('\n');
    }
    out
}

fn escape(text: &str) -> String {
    text.trim().replace('|', "\\|").replace('\n', " ")
}

fn number(value: f32) -> String {
    format!("{value:.2}")
}

fn scopes(scope: &[Scope]) -> String {
    if scope.is_empty() {
        return "any".to_owned();
    }
    scope
        .iter()
        .map(|scope| match serde_json::to_value(scope) {
            Ok(serde_json::Value::String(name)) => name,
            _ => format!("{scope:?}"),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// `free: block, other tiers: allow`; the key `default` covers tiers not named.
fn actions(actions: &BTreeMap<String, Action>) -> String {
    let named: Vec<String> = actions
        .iter()
        .filter(|(tier, _)| *tier != "default")
        .map(|(tier, action)| format!("{tier}: {action}"))
        .collect();
    let default = actions
        .get("default")
        .copied()
        .unwrap_or(Action::Block)
        .as_str();
    if named.is_empty() {
        default.to_owned()
    } else {
        format!("{}, other tiers: {default}", named.join(", "))
    }
}

/// Replaces the part of `document` between [`RULES_BEGIN`] and [`RULES_END`] with `rules`;
/// `None` when the markers are missing.
pub fn replace_rules_section(document: &str, rules: &str) -> Option<String> {
    let begin = document.find(RULES_BEGIN)? + RULES_BEGIN.len();
    let end = begin + document[begin..].find(RULES_END)?;
    Some(format!(
        "{}\n\n{}{}",
        &document[..begin],
        rules,
        &document[end..]
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `docs/policy.md` must carry the rules as the packs define them. Run the test with
    /// `UPDATE_DOCS=1` to rewrite the generated part after changing a pack.
    #[test]
    fn docs_policy_md_rules_are_current() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/policy.md");
        let document = std::fs::read_to_string(path).expect("docs/policy.md is readable");
        let rules = builtin_rules_markdown().expect("the shipped packs parse");
        let expected =
            replace_rules_section(&document, &rules).expect("docs/policy.md has the rule markers");
        if expected != document {
            if std::env::var_os("UPDATE_DOCS").is_some() {
                std::fs::write(path, &expected).expect("docs/policy.md is writable");
            } else {
                panic!(
                    "docs/policy.md is stale: run `UPDATE_DOCS=1 cargo test -p commonlab-policy docs_policy_md` and commit the result"
                );
            }
        }
    }

    #[test]
    fn every_shipped_rule_is_listed() {
        let rules = builtin_rules_markdown().expect("the shipped packs parse");
        for (name, text) in BUILTIN_PACKS {
            let pack = parse_pack(name, text).expect("pack parses");
            assert!(rules.contains(&format!("### `{}`", pack.pack.id)));
            for rule in pack.rules {
                assert!(rules.contains(&format!("| `{}`", rule.id)), "{}", rule.id);
            }
        }
    }

    #[test]
    fn replaces_only_between_markers() {
        let document = format!("intro\n\n{RULES_BEGIN}\nold\n{RULES_END}\n\nafter\n");
        let updated = replace_rules_section(&document, "new\n").expect("markers");
        assert_eq!(
            updated,
            format!("intro\n\n{RULES_BEGIN}\n\nnew\n{RULES_END}\n\nafter\n")
        );
        assert_eq!(replace_rules_section("no markers", "x"), None);
    }
}
