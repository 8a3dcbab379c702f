//! The matcher: one Aho-Corasick search over folded text and one over lower-cased text (run
//! side by side, see `search`), then each hit checked against its rule's scope, pattern and allow
//! list, and scored.

use std::collections::{BTreeMap, HashSet};
use std::ops::Range;

use memchr::memmem;

use crate::document::{prepare, Lang, Prepared, Unit, MARKERS};
use crate::normalize::{derive, Derived, Symbols};
use crate::pack::{fold_term, is_separator, PackError, Rule, ScopeBits, ANY_CODE, SHELL};
use crate::search::{overlapping, Automaton, Found};
use crate::verdict::{Action, CategoryScore, Finding, Location, Verdict, Via};

const FINDINGS_PER_RULE_MAX: usize = 3;
const FINDINGS_MAX: usize = 200;
const LINE_TEXT_CHARS_MAX: usize = 160;
const MATCHED_CHARS_MAX: usize = 120;

/// The compiled automata over every enabled rule's terms and literals.
#[derive(Debug, Clone)]
pub(crate) struct Matcher {
    folded: Automaton,
    folded_rules: Vec<usize>,
    literal: Automaton,
    literal_rules: Vec<usize>,
    /// Rules with a pattern and no terms or literals: the pattern runs over the whole text.
    regex_rules: Vec<usize>,
}

fn build(patterns: &[String]) -> Result<Automaton, PackError> {
    Automaton::new(patterns).map_err(|err| PackError::Rule {
        rule: "(all)".to_owned(),
        message: err.to_string(),
    })
}

impl Matcher {
    pub(crate) fn new(
        rules: &[Rule],
        specs: &[(Vec<String>, Vec<String>)],
    ) -> Result<Matcher, PackError> {
        let mut folded = Vec::new();
        let mut folded_rules = Vec::new();
        let mut literal = Vec::new();
        let mut literal_rules = Vec::new();
        let mut regex_rules = Vec::new();
        for (index, (rule, (terms, literals))) in rules.iter().zip(specs).enumerate() {
            if !rule.enabled {
                continue;
            }
            if terms.is_empty() && literals.is_empty() && rule.pattern.is_some() {
                regex_rules.push(index);
            }
            for term in terms {
                folded.push(fold_term(term));
                folded_rules.push(index);
            }
            for item in literals {
                literal.push(item.to_ascii_lowercase());
                literal_rules.push(index);
            }
        }
        // The line-context markers share the literal automaton: one pass finds both.
        literal.extend(MARKERS.iter().map(|(marker, _, _)| (*marker).to_owned()));
        Ok(Matcher {
            folded: build(&folded)?,
            folded_rules,
            literal: build(&literal)?,
            literal_rules,
            regex_rules,
        })
    }

    /// Calls `hit(rule, start, end)` for every term or literal found in `text`, word checks
    /// applied; line-context markers found in `lower` go to `markers` when it is given.
    fn find(
        &self,
        rules: &[Rule],
        text: &str,
        lower: &str,
        scratch: &mut Scratch,
        markers: Option<&mut Vec<(u16, u32, u32)>>,
        hit: &mut dyn FnMut(usize, usize, usize),
    ) {
        let bytes = text.as_bytes();
        let is_word = |byte: u8| byte.is_ascii_alphanumeric();
        let bounded = |start: usize, end: usize| {
            (start == 0 || !is_word(bytes[start - 1]))
                && (end >= bytes.len() || !is_word(bytes[end]))
        };
        fold(lower.as_bytes(), scratch);
        let lower_bytes = lower.as_bytes();
        let mut found = std::mem::take(&mut scratch.found);
        overlapping(
            [
                (&self.folded, &scratch.folded),
                (&self.literal, lower_bytes),
            ],
            &mut found,
            &mut scratch.pieces,
        );
        let [folded_found, literal_found] = &found;
        for &(pattern, end) in folded_found {
            let rule = self.folded_rules[pattern as usize];
            let folded_start = end as usize - self.folded.pattern_len(pattern);
            let start = scratch.original(lower_bytes, folded_start);
            let end = following(lower_bytes, start, end as usize - folded_start - 1) + 1;
            if !rules[rule].word || bounded(start, end) {
                hit(rule, start, end);
            }
        }
        let literals = self.literal_rules.len();
        let mut markers = markers;
        for &(pattern, end) in literal_found {
            let pattern = pattern as usize;
            let end = end as usize;
            let start = end - self.literal.pattern_len(pattern as u32);
            if pattern >= literals {
                if let Some(markers) = markers.as_deref_mut() {
                    markers.push(((pattern - literals) as u16, start as u32, end as u32));
                }
                continue;
            }
            let rule = self.literal_rules[pattern];
            let literal_edges_are_words =
                is_word(lower_bytes[start]) || is_word(lower_bytes[end - 1]);
            if !rules[rule].word || !literal_edges_are_words || bounded(start, end) {
                hit(rule, start, end);
            }
        }
        scratch.found = found;
        for rule in &self.regex_rules {
            if let Some(pattern) = &rules[*rule].pattern {
                for found in pattern.find_iter(lower) {
                    hit(*rule, found.start(), found.end());
                }
            }
        }
    }
}

/// Bytes of the unfolded text per checkpoint of the fold.
const FOLD_CHUNK: usize = 64;

/// For each byte, 1 when folding keeps it (a table, so the fold loop has no branch).
static KEPT: [u8; 256] = {
    let mut table = [1; 256];
    let mut byte = 0;
    while byte < 256 {
        if is_separator(byte as u8) {
            table[byte] = 0;
        }
        byte += 1;
    }
    table
};

/// Folds `lower` into `scratch`: separators removed. Offsets are not kept per byte: the number
/// of bytes kept before each chunk of `FOLD_CHUNK` bytes is, and a match's offsets are
/// recovered from it (`Scratch::original`) only when a term is found.
fn fold(lower: &[u8], scratch: &mut Scratch) {
    scratch.folded.clear();
    scratch.checkpoints.clear();
    scratch.folded.resize(lower.len(), 0);
    let folded = &mut scratch.folded[..];
    let mut kept = 0;
    for chunk in lower.chunks(FOLD_CHUNK) {
        scratch.checkpoints.push(kept as u32);
        for &byte in chunk {
            folded[kept] = byte;
            kept += usize::from(KEPT[usize::from(byte)]);
        }
    }
    scratch.folded.truncate(kept);
}

/// Reusable buffers for folding.
#[derive(Default)]
pub(crate) struct Scratch {
    folded: Vec<u8>,
    /// For each chunk of `FOLD_CHUNK` unfolded bytes, how many bytes were kept before it.
    checkpoints: Vec<u32>,
    /// The matches of the folded and of the lower-cased text.
    found: [Vec<Found>; 2],
    pieces: Vec<Vec<Found>>,
}

/// The offset of the kept byte `count` kept bytes after the kept byte at `from`.
fn following(lower: &[u8], from: usize, count: usize) -> usize {
    let mut remaining = count;
    let mut at = from;
    while remaining > 0 {
        at += 1;
        remaining -= usize::from(!is_separator(lower[at]));
    }
    at
}

impl Scratch {
    /// The offset in `lower` (the text last folded) of the folded byte at `position`.
    fn original(&self, lower: &[u8], position: usize) -> usize {
        // The last chunk that starts at or before the kept byte holds it.
        let chunk = self
            .checkpoints
            .partition_point(|&kept| kept as usize <= position)
            - 1;
        let mut remaining = position - self.checkpoints[chunk] as usize;
        let start = chunk * FOLD_CHUNK;
        for (index, &byte) in lower[start..].iter().enumerate() {
            if !is_separator(byte) {
                if remaining == 0 {
                    return start + index;
                }
                remaining -= 1;
            }
        }
        unreachable!("a folded position maps to a kept byte")
    }
}

/// Findings gathered over one document, cell or set of observations.
pub(crate) struct Collector<'p> {
    rules: &'p [Rule],
    findings: Vec<Finding>,
    /// Per rule, its strongest finding's weight, once it has a finding.
    best: Vec<Option<f32>>,
    /// Per rule, how many findings were kept.
    counts: Vec<usize>,
    seen: HashSet<(usize, Option<u32>, u32)>,
    aliases: Vec<Alias>,
}

#[derive(Debug, Clone)]
struct Alias {
    name: String,
    original: String,
    rule: usize,
    cell: Option<u32>,
    line: u32,
}

fn shorten(text: &str, chars_max: usize) -> String {
    let trimmed = text.trim();
    if trimmed.chars().count() <= chars_max {
        return trimmed.to_owned();
    }
    let mut out: String = trimmed.chars().take(chars_max).collect();
    out.push('…');
    out
}

impl<'p> Collector<'p> {
    pub(crate) fn new(rules: &'p [Rule]) -> Collector<'p> {
        Collector {
            rules,
            findings: Vec::new(),
            best: vec![None; rules.len()],
            counts: vec![0; rules.len()],
            seen: HashSet::new(),
            aliases: Vec::new(),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn record(
        &mut self,
        rule_index: usize,
        weight: f32,
        location: Location,
        matched: &str,
        line_text: &str,
        via: Via,
    ) {
        let rule = &self.rules[rule_index];
        let best = self.best[rule_index].get_or_insert(0.0);
        let improves = weight > *best;
        *best = best.max(weight);
        if !self.seen.insert((rule_index, location.cell, location.line)) && !improves {
            // Same rule on the same line: keep the longest match as the evidence.
            let longer = self.findings.iter_mut().find(|finding| {
                finding.rule == rule.id && finding.location == location && finding.via == via
            });
            if let Some(finding) =
                longer.filter(|finding| matched.trim().len() > finding.matched.len())
            {
                finding.matched = shorten(matched, MATCHED_CHARS_MAX);
            }
            return;
        }
        let count = &mut self.counts[rule_index];
        if (*count >= FINDINGS_PER_RULE_MAX && !improves) || self.findings.len() >= FINDINGS_MAX {
            return;
        }
        *count += 1;
        self.findings.push(Finding {
            rule: rule.id.clone(),
            category: rule.category.clone(),
            description: rule.description.clone(),
            weight,
            location,
            matched: shorten(matched, MATCHED_CHARS_MAX),
            line_text: shorten(line_text, LINE_TEXT_CHARS_MAX),
            via,
            shadow: rule.shadow,
        });
    }

    /// Records a finding made outside text matching (digests, profiles).
    pub(crate) fn record_direct(
        &mut self,
        rule_index: usize,
        location: Location,
        matched: &str,
        via: Via,
    ) {
        let weight = self.rules[rule_index].weight;
        self.record(rule_index, weight, location, matched, matched, via);
    }

    /// Turns the findings into a verdict for `tier`.
    pub(crate) fn verdict(mut self, tier: &str, thresholds: &BTreeMap<String, f32>) -> Verdict {
        let mut scores: BTreeMap<&str, (f32, f32, Action, Action)> = BTreeMap::new();
        let best = self
            .best
            .iter()
            .enumerate()
            .filter_map(|(rule_index, best)| best.map(|weight| (rule_index, weight)));
        for (rule_index, weight) in best {
            let rule = &self.rules[rule_index];
            let entry = scores.entry(rule.category.as_str()).or_insert((
                0.0,
                0.0,
                Action::Allow,
                Action::Allow,
            ));
            let action = rule.action_for(tier);
            if rule.shadow {
                entry.1 += weight;
                entry.3 = entry.3.max(action);
            } else {
                entry.0 += weight;
                entry.1 += weight;
                if weight > 0.0 {
                    entry.2 = entry.2.max(action);
                    entry.3 = entry.3.max(action);
                }
            }
        }
        let mut categories = Vec::new();
        let mut decided: Option<(Action, f32, String)> = None;
        let mut shadow_action = Action::Allow;
        for (category, (score, with_shadow, action, shadow_rule_action)) in scores {
            let threshold = thresholds.get(category).copied().unwrap_or(1.0);
            let is_decided = score >= threshold - 1e-4;
            if with_shadow >= threshold - 1e-4 {
                shadow_action = shadow_action.max(shadow_rule_action);
            }
            let category_action = if is_decided { action } else { Action::Allow };
            if is_decided {
                let better = decided.as_ref().is_none_or(|(best_action, best_score, _)| {
                    (category_action, score) > (*best_action, *best_score)
                });
                if better {
                    decided = Some((category_action, score, category.to_owned()));
                }
            }
            categories.push(CategoryScore {
                category: category.to_owned(),
                score: (score * 1000.0).round() / 1000.0,
                threshold,
                decided: is_decided,
                action: category_action,
            });
        }
        categories.sort_by(|a, b| {
            b.score
                .total_cmp(&a.score)
                .then_with(|| a.category.cmp(&b.category))
        });
        categories.retain(|category| category.score > 0.0 || shadow_action > Action::Allow);
        self.findings.sort_by(|a, b| {
            (a.location.cell, a.location.line, &a.rule).cmp(&(
                b.location.cell,
                b.location.line,
                &b.rule,
            ))
        });
        let (action, category) = match decided {
            Some((action, _, category)) => (action, Some(category)),
            None => (Action::Allow, None),
        };
        Verdict {
            action,
            category,
            categories,
            findings: self.findings,
            shadow_action: (shadow_action > action).then_some(shadow_action),
        }
    }
}

/// Per-document state carried from cell to cell.
#[derive(Default)]
pub(crate) struct DocState {
    pub(crate) symbols: Symbols,
    pub(crate) scratch: Scratch,
    derived: Vec<Derived>,
    hits: Vec<(usize, usize, usize)>,
    markers: Vec<(u16, u32, u32)>,
    derived_lower: String,
    derived_hits: Vec<(usize, usize, usize)>,
}

/// Matches one text whose every byte has the contexts `ctx`, e.g. a command line or a path.
#[allow(clippy::too_many_arguments)]
pub(crate) fn match_line(
    matcher: &Matcher,
    rules: &[Rule],
    collector: &mut Collector<'_>,
    scratch: &mut Scratch,
    text: &str,
    line_text: &str,
    ctx: ScopeBits,
    location: Location,
    via: Via,
) {
    let lower = text.to_ascii_lowercase();
    let mut hits = Vec::new();
    matcher.find(
        rules,
        text,
        &lower,
        scratch,
        None,
        &mut |rule, start, end| hits.push((rule, start, end)),
    );
    for (rule_index, start, end) in hits {
        let rule = &rules[rule_index];
        let Some(weight) = weight_in(rule, ctx) else {
            continue;
        };
        let Some(found) = passes(rule, &lower) else {
            continue;
        };
        let matched = evidence(text, found, start, end);
        collector.record(
            rule_index,
            weight,
            location.clone(),
            matched,
            line_text,
            via.clone(),
        );
    }
}

fn weight_in(rule: &Rule, ctx: ScopeBits) -> Option<f32> {
    let weight = if ctx & rule.scope != 0 {
        rule.weight
    } else if ctx & ANY_CODE != 0 {
        rule.elsewhere_weight
    } else {
        0.0
    };
    (weight > 0.0).then_some(weight)
}

/// The evidence for a hit at `start..end` of `line`: the pattern's match `found` on the line
/// when the rule has a pattern.
fn evidence(line: &str, found: Option<Range<usize>>, start: usize, end: usize) -> &str {
    if let Some(found) = found {
        if line.is_char_boundary(found.start) && line.is_char_boundary(found.end) {
            return &line[found];
        }
    }
    &line[start..end]
}

/// What `passes` says: `None` when a hit does not count; else the pattern's match, if the
/// rule has a pattern.
type Passed = Option<Option<Range<usize>>>;

/// Whether a hit of `rule` on `lower_line` counts: the rule's pattern, if it has one, matches
/// the line (its match is returned, for the evidence) and none of its allow patterns does.
fn passes(rule: &Rule, lower_line: &str) -> Passed {
    let found = match &rule.pattern {
        Some(pattern) => Some(pattern.find(lower_line)?.range()),
        None => None,
    };
    if rule.allow.iter().any(|allow| allow.is_match(lower_line)) {
        return None;
    }
    Some(found)
}

/// `passes` for the hits of one unit, remembered per rule and line: a word found several
/// times on a line runs the rule's patterns once.
#[derive(Default)]
struct PassMemo {
    /// `(rule, line, passed)`, the latest last.
    recent: Vec<(usize, usize, Passed)>,
}

impl PassMemo {
    const ENTRIES_MAX: usize = 16;

    fn passes(
        &mut self,
        rule_index: usize,
        rule: &Rule,
        line_index: usize,
        lower_line: &str,
    ) -> Passed {
        if rule.pattern.is_none() && rule.allow.is_empty() {
            return Some(None);
        }
        if let Some((_, _, known)) = self
            .recent
            .iter()
            .find(|(rule, line, _)| *rule == rule_index && *line == line_index)
        {
            return known.clone();
        }
        let result = passes(rule, lower_line);
        if self.recent.len() == Self::ENTRIES_MAX {
            self.recent.remove(0);
        }
        self.recent.push((rule_index, line_index, result.clone()));
        result
    }
}

/// Matches one unit of code, with its derived texts and renamed copies.
pub(crate) fn match_unit(
    matcher: &Matcher,
    rules: &[Rule],
    collector: &mut Collector<'_>,
    state: &mut DocState,
    unit: &Unit,
) {
    let mut prepared = prepare(unit);
    let location = |line: usize| Location {
        cell: unit.cell,
        line: line as u32 + 1,
    };
    let mut hits = std::mem::take(&mut state.hits);
    hits.clear();
    let mut markers = std::mem::take(&mut state.markers);
    markers.clear();
    matcher.find(
        rules,
        &prepared.text,
        &prepared.lower,
        &mut state.scratch,
        Some(&mut markers),
        &mut |rule, start, end| hits.push((rule, start, end)),
    );
    prepared.set_contexts(&markers);
    state.markers = markers;
    let lower = &prepared.lower;
    let mut matched_lines: Vec<(usize, usize, f32, &str)> = Vec::new();
    let mut memo = PassMemo::default();
    for &(rule_index, start, end) in &hits {
        let rule = &rules[rule_index];
        let line_index = prepared.line_of(start);
        let line = &prepared.lines[line_index];
        let Some(weight) = weight_in(rule, line.ctx) else {
            continue;
        };
        let lower_line = &lower[line.start..line.end];
        let Some(found) = memo.passes(rule_index, rule, line_index, lower_line) else {
            continue;
        };
        let line_text = prepared.line_text(line_index);
        let matched = evidence(line_text, found, start - line.start, end - line.start);
        collector.record(
            rule_index,
            weight,
            location(line_index),
            matched,
            line_text,
            Via::Direct,
        );
        if line.ctx & SHELL != 0 && rule.pattern.is_none() {
            matched_lines.push((line_index, rule_index, weight, matched));
        }
    }

    state.hits = hits;
    state.derived.clear();
    derive(&prepared, &mut state.symbols, &mut state.derived);
    let derived = std::mem::take(&mut state.derived);
    let mut derived_lower = std::mem::take(&mut state.derived_lower);
    let mut derived_hits = std::mem::take(&mut state.derived_hits);
    for item in &derived {
        let line = &prepared.lines[item.line];
        let extra = if matches!(item.via, Via::Base64 | Via::Hex | Via::Reversed) {
            SHELL
        } else {
            0
        };
        let ctx = line.ctx | extra;
        derived_lower.clear();
        derived_lower.push_str(&item.text);
        derived_lower.make_ascii_lowercase();
        derived_hits.clear();
        matcher.find(
            rules,
            &item.text,
            &derived_lower,
            &mut state.scratch,
            None,
            &mut |rule, start, end| derived_hits.push((rule, start, end)),
        );
        for &(rule_index, start, end) in &derived_hits {
            let rule = &rules[rule_index];
            let Some(weight) = weight_in(rule, ctx) else {
                continue;
            };
            let Some(found) = passes(rule, &derived_lower) else {
                continue;
            };
            collector.record(
                rule_index,
                weight,
                location(item.line),
                evidence(&item.text, found, start, end),
                prepared.line_text(item.line),
                item.via.clone(),
            );
        }
    }
    state.derived = derived;
    state.derived_lower = derived_lower;
    state.derived_hits = derived_hits;

    follow_renames(rules, collector, &prepared, unit.cell, &matched_lines);
}

/// Records renamed copies (`mv`, `cp`, `git clone URL DIR`, `wget -O`, `curl -o`) of matched
/// things, and finds where the new names are used.
fn follow_renames(
    rules: &[Rule],
    collector: &mut Collector<'_>,
    prepared: &Prepared,
    cell: Option<u32>,
    matched_lines: &[(usize, usize, f32, &str)],
) {
    // Only the strongest finding of a line is carried to the new name.
    let mut strongest: Vec<&(usize, usize, f32, &str)> = Vec::new();
    for item in matched_lines {
        match strongest.iter_mut().find(|kept| kept.0 == item.0) {
            Some(kept) if kept.2 < item.2 || (kept.2 == item.2 && kept.3.len() < item.3.len()) => {
                *kept = item
            }
            Some(_) => {}
            None => strongest.push(item),
        }
    }
    for (line_index, rule_index, _, matched) in strongest {
        let text = prepared
            .line_text(*line_index)
            .trim()
            .trim_start_matches('!');
        if let Some(name) = rename_target(text) {
            if name.len() >= 3
                && !name.eq_ignore_ascii_case(matched)
                && !name
                    .to_ascii_lowercase()
                    .contains(&matched.to_ascii_lowercase())
            {
                collector.aliases.push(Alias {
                    name,
                    original: (*matched).to_owned(),
                    rule: *rule_index,
                    cell,
                    line: *line_index as u32 + 1,
                });
            }
        }
    }
    if collector.aliases.is_empty() {
        return;
    }
    // Taken out while the findings are recorded (recording does not read them).
    let aliases = std::mem::take(&mut collector.aliases);
    let finders: Vec<memmem::Finder<'_>> = aliases
        .iter()
        .map(|alias| memmem::Finder::new(alias.name.as_bytes()))
        .collect();
    for (line_index, line) in prepared.lines.iter().enumerate() {
        if line.ctx & SHELL == 0 || line.lang == Lang::Text {
            continue;
        }
        let text = prepared.line_text(line_index);
        for (alias, finder) in aliases.iter().zip(&finders) {
            if alias.cell == cell && alias.line == line_index as u32 + 1 {
                continue;
            }
            if finder.find(text.as_bytes()).is_none() {
                continue;
            }
            let uses = text.match_indices(alias.name.as_str()).any(|(at, _)| {
                let before = text[..at].bytes().next_back();
                let after = text[at + alias.name.len()..].bytes().next();
                let edge = |b: u8| b.is_ascii_whitespace() || b"/!;\"'(),&|".contains(&b);
                before.is_none_or(edge) && after.is_none_or(edge)
            });
            if uses {
                let weight = rules[alias.rule].weight;
                collector.record(
                    alias.rule,
                    weight,
                    Location {
                        cell,
                        line: line_index as u32 + 1,
                    },
                    &alias.name,
                    text,
                    Via::Alias(alias.original.clone()),
                );
            }
        }
    }
    drop(finders);
    collector.aliases = aliases;
}

/// The new name a shell command gives to something, if it renames or copies.
fn rename_target(command: &str) -> Option<String> {
    let words: Vec<&str> = command
        .split_whitespace()
        .map(|w| w.trim_matches(['"', '\'']))
        .collect();
    let basename = |path: &str| {
        path.trim_end_matches('/')
            .rsplit('/')
            .next()
            .unwrap_or(path)
            .to_owned()
    };
    let position = |name: &str| words.iter().position(|w| *w == name);
    if let Some(at) = position("clone") {
        let rest: Vec<&&str> = words[at + 1..]
            .iter()
            .filter(|w| !w.starts_with('-'))
            .collect();
        if rest.len() >= 2 {
            return Some(basename(rest[1]));
        }
        return None;
    }
    for flag in ["-O", "-o", "--output", "--output-document"] {
        if let Some(at) = words.iter().position(|w| *w == flag) {
            return words.get(at + 1).map(|w| basename(w));
        }
        if !flag.starts_with("--") {
            continue;
        }
        let value = words
            .iter()
            .find_map(|w| w.strip_prefix(flag).and_then(|rest| rest.strip_prefix('=')));
        if let Some(value) = value {
            return Some(basename(value));
        }
    }
    let command_word = words
        .iter()
        .position(|w| matches!(*w, "mv" | "cp" | "ln"))?;
    let args: Vec<&&str> = words[command_word + 1..]
        .iter()
        .filter(|w| !w.starts_with('-'))
        .collect();
    if args.len() == 2 {
        return Some(basename(args[1]));
    }
    None
}
