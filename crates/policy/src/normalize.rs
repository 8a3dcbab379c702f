//! Normalisation before matching: compatibility letters folded as Python folds identifiers;
//! joined strings, substituted variables, decoded base64 and hex, reversed strings, each a
//! derived text tied to the line it came from.

use std::borrow::Cow;
use std::collections::HashMap;

use crate::document::{Lang, Prepared};
use crate::verdict::Via;

/// A text derived from a line, matched like the line itself.
#[derive(Debug, Clone)]
pub(crate) struct Derived {
    pub(crate) line: usize,
    pub(crate) text: String,
    pub(crate) via: Via,
}

/// String variables seen so far in a document, bounded.
#[derive(Debug, Default, Clone)]
pub(crate) struct Symbols {
    vars: HashMap<String, String>,
    /// A filter over the names in `vars`: a clear bit means no name of that fingerprint is
    /// known, so a line can be passed over without looking its words up.
    names: [u64; 4],
}

const SYMBOLS_MAX: usize = 512;
const SYMBOL_VALUE_BYTES_MAX: usize = 4096;
const DERIVED_BYTES_MAX: usize = 256 * 1024;
const BASE64_TOKEN_BYTES_MIN: usize = 12;
const BASE64_TOKEN_BYTES_MAX: usize = 64 * 1024;

impl Symbols {
    fn set(&mut self, name: &str, value: String) {
        if value.len() > SYMBOL_VALUE_BYTES_MAX
            || (self.vars.len() >= SYMBOLS_MAX && !self.vars.contains_key(name))
        {
            return;
        }
        let bit = name_fingerprint(name.as_bytes());
        self.names[bit / 64] |= 1 << (bit % 64);
        self.vars.insert(name.to_owned(), value);
    }

    /// Whether `name` may be known (no false negatives).
    fn may_know(&self, name: &[u8]) -> bool {
        let bit = name_fingerprint(name);
        self.names[bit / 64] & (1 << (bit % 64)) != 0
    }

    fn is_empty(&self) -> bool {
        self.vars.is_empty()
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.vars.get(name).map(String::as_str)
    }
}

fn name_fingerprint(name: &[u8]) -> usize {
    let first = usize::from(name.first().copied().unwrap_or(0));
    let last = usize::from(name.last().copied().unwrap_or(0));
    (name.len().wrapping_mul(31) ^ first.wrapping_mul(7) ^ last.wrapping_mul(131)) & 255
}

/// `source` as Python reads its names: Python folds identifiers with NFKC, so `ｐｔｙ.ｓｐａｗｎ`
/// runs `pty.spawn` and `import ｘｍｒｉｇ` imports `xmrig`. Each character whose compatibility
/// form is made only of ASCII letters, digits and `_` (full-width `ｐ`, mathematical `𝐱`,
/// `ſ`, `ﬁ`) is replaced by that form. A character whose form holds other ASCII (a
/// full-width quote, `﹟`, a no-break space) stays: Python reads it only inside a string or a
/// comment, where the plain form would move where the policy thinks the string ends. Folded
/// letters inside strings and comments are text a cell could hold plainly, so folding them
/// hides nothing.
pub(crate) fn fold_compatibility(source: &str) -> String {
    let mut out = String::with_capacity(source.len());
    let mut form = String::new();
    let mut rest = source;
    while let Some(at) = rest.bytes().position(|byte| !byte.is_ascii()) {
        out.push_str(&rest[..at]);
        let Some(ch) = rest[at..].chars().next() else {
            break;
        };
        rest = &rest[at + ch.len_utf8()..];
        // NFKD made only of ASCII letters, digits and `_` composes to itself: it is the NFKC.
        form.clear();
        let mut plain = true;
        unicode_normalization::char::decompose_compatible(ch, |part| {
            plain &= part.is_ascii_alphanumeric() || part == '_';
            form.push(part);
        });
        if plain {
            out.push_str(&form);
        } else {
            out.push(ch);
        }
    }
    out.push_str(rest);
    out
}

/// Collects the derived texts of a prepared unit.
pub(crate) fn derive(prepared: &Prepared, symbols: &mut Symbols, out: &mut Vec<Derived>) {
    let mut budget = DERIVED_BYTES_MAX;
    let mut push = |out: &mut Vec<Derived>, line: usize, text: String, via: Via| {
        if text.len() <= budget && !text.trim().is_empty() {
            budget -= text.len();
            out.push(Derived { line, text, via });
        }
    };
    for literal in &prepared.strings {
        let content = prepared.string_content(literal);
        if literal.had_hex_escapes && is_printable(content.as_bytes()) {
            push(out, literal.line, content.to_owned(), Via::Hex);
        }
        decode_words(content, literal.line, 0, &mut |line, text, via| {
            push(out, line, text, via)
        });
    }
    let mut tokens = Vec::new();
    for (index, line) in prepared.lines.iter().enumerate() {
        let text = &prepared.text[line.start..line.end];
        if is_blank(text) {
            continue;
        }
        match line.lang {
            Lang::Python => {
                python_line(text, index, symbols, &mut tokens, &mut |line, text, via| {
                    push(out, line, text, via)
                });
            }
            Lang::Shell => shell_line(text, index, symbols, &mut |line, text, via| {
                push(out, line, text, via)
            }),
            Lang::Text => decode_words(text, index, 0, &mut |line, text, via| {
                push(out, line, text, via)
            }),
        }
    }
}

/// Whether `text` is empty once trimmed (`str::trim`), quicker on ASCII.
fn is_blank(text: &str) -> bool {
    // `str::trim` also trims `\x0b`, which `u8::is_ascii_whitespace` does not count.
    match text
        .bytes()
        .find(|&b| !b.is_ascii_whitespace() && b != 0x0b)
    {
        None => true,
        Some(byte) if byte.is_ascii() => false,
        Some(_) => text.trim().is_empty(),
    }
}

fn is_printable(bytes: &[u8]) -> bool {
    if bytes.len() < 4 {
        return false;
    }
    let printable = bytes
        .iter()
        .filter(|b| (0x20..0x7f).contains(*b) || matches!(b, b'\n' | b'\r' | b'\t'))
        .count();
    printable * 100 >= bytes.len() * 95
        && bytes.iter().filter(|b| b.is_ascii_alphabetic()).count() >= 3
}

fn base64_value(byte: u8) -> Option<u32> {
    match byte {
        b'A'..=b'Z' => Some(u32::from(byte - b'A')),
        b'a'..=b'z' => Some(u32::from(byte - b'a') + 26),
        b'0'..=b'9' => Some(u32::from(byte - b'0') + 52),
        b'+' | b'-' => Some(62),
        b'/' | b'_' => Some(63),
        _ => None,
    }
}

/// Decodes standard or URL-safe base64, padding optional.
pub(crate) fn decode_base64(token: &str) -> Option<Vec<u8>> {
    let trimmed = token.trim_end_matches('=');
    if trimmed.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(trimmed.len() * 3 / 4);
    let mut accumulator = 0u32;
    let mut bits = 0;
    for byte in trimmed.bytes() {
        accumulator = (accumulator << 6) | base64_value(byte)?;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((accumulator >> bits) as u8);
            accumulator &= (1 << bits) - 1;
        }
    }
    Some(out)
}

fn decode_hex(token: &str) -> Option<Vec<u8>> {
    let digits = token.strip_prefix("0x").unwrap_or(token);
    if !digits.len().is_multiple_of(2) || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    (0..digits.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&digits[i..i + 2], 16).ok())
        .collect()
}

const WORD: u8 = 1;
const UPPER: u8 = 2;
const LOWER: u8 = 4;
const DIGIT: u8 = 8;
/// A word byte that is not a hex digit.
const NOT_HEX: u8 = 16;

/// The classes of each byte for `decode_words`: a word is a run of base64 characters.
static WORD_CLASSES: [u8; 256] = {
    let mut table = [0; 256];
    let mut byte = 0;
    while byte < 256 {
        let b = byte as u8;
        let mut class = 0;
        if b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'=' | b'-' | b'_') {
            class |= WORD;
            if !b.is_ascii_hexdigit() {
                class |= NOT_HEX;
            }
        }
        if b.is_ascii_uppercase() {
            class |= UPPER;
        }
        if b.is_ascii_lowercase() {
            class |= LOWER;
        }
        if b.is_ascii_digit() {
            class |= DIGIT;
        }
        table[byte] = class;
        byte += 1;
    }
    table
};

/// Tries base64 and hex on every long word of `text`.
fn decode_words(text: &str, line: usize, depth: u8, emit: &mut dyn FnMut(usize, String, Via)) {
    let bytes = text.as_bytes();
    let mut index = 0;
    while index < bytes.len() {
        if WORD_CLASSES[usize::from(bytes[index])] & WORD == 0 {
            index += 1;
            continue;
        }
        let start = index;
        let mut classes = 0;
        while let Some(&byte) = bytes.get(index) {
            let class = WORD_CLASSES[usize::from(byte)];
            if class & WORD == 0 {
                break;
            }
            classes |= class;
            index += 1;
        }
        let word = &text[start..index];
        if word.len() < BASE64_TOKEN_BYTES_MIN || word.len() > BASE64_TOKEN_BYTES_MAX {
            continue;
        }
        let has_upper = classes & UPPER != 0;
        let has_lower = classes & LOWER != 0;
        let has_digit = classes & DIGIT != 0;
        let may_be_hex = classes & NOT_HEX == 0 || word.starts_with("0x");
        if let Some(decoded) = may_be_hex
            .then(|| decode_hex(word))
            .flatten()
            .filter(|d| is_printable(d))
        {
            let decoded = String::from_utf8_lossy(&decoded).into_owned();
            if depth == 0 {
                decode_words(&decoded, line, depth + 1, emit);
            }
            emit(line, decoded, Via::Hex);
            continue;
        }
        // Words, paths and identifiers rarely mix case and digits the way base64 does.
        if !(has_upper && has_lower || has_digit && (has_upper || has_lower))
            || word.as_bytes().windows(2).any(|pair| pair == b"//")
        {
            continue;
        }
        if let Some(decoded) = decode_base64(word).filter(|d| is_printable(d)) {
            let decoded = String::from_utf8_lossy(&decoded).into_owned();
            if depth == 0 {
                decode_words(&decoded, line, depth + 1, emit);
            }
            emit(line, decoded, Via::Base64);
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Token<'a> {
    Str { content: Cow<'a, str>, format: bool },
    Ident(&'a str),
    Number(&'a str),
    Punct(u8),
}

/// Reads `line` into `tokens` (cleared first); an unclosed string ends the line.
fn tokenize<'a>(line: &'a str, tokens: &mut Vec<Token<'a>>) {
    let bytes = line.as_bytes();
    tokens.clear();
    let mut index = 0;
    while index < bytes.len() {
        let byte = bytes[index];
        if byte.is_ascii_whitespace() {
            index += 1;
        } else if byte == b'\'' || byte == b'"' {
            let mut prefix: &str = "";
            if let Some(Token::Ident(name)) = tokens.last() {
                let ends_here = index > 0 && bytes[index - 1].is_ascii_alphabetic();
                if ends_here && name.len() <= 2 && name.bytes().all(|b| b"rRbBfFuU".contains(&b)) {
                    prefix = name;
                    tokens.pop();
                }
            }
            let raw_prefix = prefix.bytes().any(|b| b.eq_ignore_ascii_case(&b'r'));
            let format_prefix = prefix.bytes().any(|b| b.eq_ignore_ascii_case(&b'f'));
            let triple =
                index + 2 < bytes.len() && bytes[index + 1] == byte && bytes[index + 2] == byte;
            let quote_len = if triple { 3 } else { 1 };
            let body = index + quote_len;
            let mut end = body;
            let mut closed = false;
            while end < bytes.len() {
                if bytes[end] == b'\\' && end + 1 < bytes.len() && !raw_prefix {
                    end += 2;
                    continue;
                }
                if bytes[end] == byte && (!triple || bytes[end..].starts_with(&[byte, byte, byte]))
                {
                    closed = true;
                    break;
                }
                end += 1;
            }
            if !closed {
                return;
            }
            // Escapes are handled by the lexer; here only joins matter, so take the text as written.
            let raw = &line[body..end];
            let content = if raw.contains('\\') {
                Cow::Owned(content_from_escapes(raw))
            } else {
                Cow::Borrowed(raw)
            };
            tokens.push(Token::Str {
                content,
                format: format_prefix,
            });
            index = end + quote_len;
        } else if byte.is_ascii_alphabetic() || byte == b'_' {
            let start = index;
            while index < bytes.len()
                && (bytes[index].is_ascii_alphanumeric() || bytes[index] == b'_')
            {
                index += 1;
            }
            tokens.push(Token::Ident(&line[start..index]));
        } else if byte.is_ascii_digit() {
            let start = index;
            while index < bytes.len() && bytes[index].is_ascii_alphanumeric() {
                index += 1;
            }
            tokens.push(Token::Number(&line[start..index]));
        } else {
            tokens.push(Token::Punct(byte));
            index += 1;
            // Skip the rest of a multi-byte character.
            while index < bytes.len() && !line.is_char_boundary(index) {
                index += 1;
            }
        }
    }
}

fn content_from_escapes(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(ch) = chars.next() {
        if ch == '\\' {
            if let Some(next) = chars.next() {
                out.push(next);
            }
        } else {
            out.push(ch);
        }
    }
    out
}

/// Replaces `{name}` fields whose names are known; returns whether any was replaced.
fn substitute_braces(text: &str, symbols: &Symbols) -> Option<String> {
    if !text.contains('{') {
        return None;
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    let mut replaced = false;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        match after.find('}') {
            Some(close) if symbols.get(after[..close].trim()).is_some() => {
                out.push_str(symbols.get(after[..close].trim()).unwrap_or_default());
                replaced = true;
                rest = &after[close + 1..];
            }
            _ => {
                out.push('{');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    replaced.then_some(out)
}

/// Replaces `$name` and `${name}` whose names are known.
fn substitute_dollars(text: &str, symbols: &Symbols) -> Option<String> {
    if !text.contains('$') {
        return None;
    }
    let mut out = String::with_capacity(text.len());
    let bytes = text.as_bytes();
    let mut index = 0;
    let mut replaced = false;
    while index < bytes.len() {
        if bytes[index] == b'$' {
            let braced = bytes.get(index + 1) == Some(&b'{');
            let start = index + 1 + usize::from(braced);
            let mut end = start;
            while end < bytes.len() && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_') {
                end += 1;
            }
            if let Some(value) = symbols.get(&text[start..end]) {
                out.push_str(value);
                replaced = true;
                index = if braced && bytes.get(end) == Some(&b'}') {
                    end + 1
                } else {
                    end
                };
                continue;
            }
        }
        let ch_len = text[index..].chars().next().map_or(1, char::len_utf8);
        out.push_str(&text[index..index + ch_len]);
        index += ch_len;
    }
    replaced.then_some(out)
}

fn strip_shell_quotes(text: &str) -> Option<String> {
    let quote = |b: u8| matches!(b, b'\'' | b'"' | b'\\');
    let bytes = text.as_bytes();
    // A quote between two word characters (`wg'e't`), or a quote pair before one (`''wget`).
    let joins = memchr::memchr3_iter(b'\'', b'"', b'\\', bytes).any(|at| {
        let before = at.checked_sub(1).map(|before| bytes[before]);
        let after = bytes.get(at + 1).copied();
        (before.is_some_and(|b| b.is_ascii_alphanumeric())
            && after.is_some_and(|b| b.is_ascii_alphanumeric() || quote(b)))
            || (after.is_some_and(quote)
                && bytes.get(at + 2).is_some_and(|b| b.is_ascii_alphanumeric()))
    });
    joins.then(|| {
        text.chars()
            .filter(|c| !matches!(c, '\'' | '"' | '\\'))
            .collect()
    })
}

fn shell_line(
    text: &str,
    line: usize,
    symbols: &mut Symbols,
    emit: &mut dyn FnMut(usize, String, Via),
) {
    let command = text.trim_start().trim_start_matches('!').trim_start();
    let command = command.strip_prefix("export ").unwrap_or(command);
    if let Some((name, value)) = command.split_once('=') {
        if !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            let value = value
                .split_whitespace()
                .next()
                .unwrap_or("")
                .trim_matches(['"', '\'']);
            let value = substitute_dollars(value, symbols).unwrap_or_else(|| value.to_owned());
            symbols.set(name, value);
        }
    }
    let mut current = Cow::Borrowed(text);
    let mut via = None;
    if let Some(joined) = strip_shell_quotes(&current) {
        current = Cow::Owned(joined);
        via = Some(Via::Concatenation);
    }
    if let Some(substituted) = substitute_dollars(&current, symbols) {
        current = Cow::Owned(substituted);
        via = Some(Via::Variable);
    }
    if let Some(substituted) = substitute_braces(&current, symbols) {
        current = Cow::Owned(substituted);
        via = Some(Via::Variable);
    }
    decode_words(text, line, 0, emit);
    if let Some(via) = via {
        emit(line, current.into_owned(), via);
    }
}

/// Whether a Python line can join strings, name one, or use a known name: only such lines are
/// tokenised. It errs towards yes; a line it passes over gives nothing in `python_line`.
fn python_line_matters(bytes: &[u8], symbols: &Symbols) -> bool {
    let is_quote = |b: u8| b == b'\'' || b == b'"';
    if memchr::memchr(b'+', bytes).is_some() {
        return true;
    }
    // Without a quote or `+`, only `chr(` can give a text.
    if memchr::memchr2(b'\'', b'"', bytes).is_none() {
        return contains(bytes, b"chr(");
    }
    if contains(bytes, b"chr") {
        return true;
    }
    // `"sep".join(...)` and `"..."[::-1]`.
    if contains(bytes, b"join")
        || memchr::memchr(b'[', bytes).is_some()
            && memchr::memchr(b':', bytes).is_some()
            && memchr::memchr(b'-', bytes).is_some()
    {
        return true;
    }
    let is_word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let is_prefix = |b: u8| b"rRbBfFuU".contains(&b);
    // `name = "..."`: a string named.
    let mut index = 0;
    while index < bytes.len() && bytes[index].is_ascii_whitespace() {
        index += 1;
    }
    if index < bytes.len() && (bytes[index].is_ascii_alphabetic() || bytes[index] == b'_') {
        while index < bytes.len() && is_word(bytes[index]) {
            index += 1;
        }
        while index < bytes.len() && bytes[index].is_ascii_whitespace() {
            index += 1;
        }
        if bytes.get(index) == Some(&b'=') {
            index += 1;
            while index < bytes.len() && bytes[index].is_ascii_whitespace() {
                index += 1;
            }
            let mut prefix = 0;
            while prefix < 2 && index + prefix < bytes.len() && is_prefix(bytes[index + prefix]) {
                prefix += 1;
            }
            if bytes.get(index + prefix).is_some_and(|&b| is_quote(b)) {
                return true;
            }
        }
    }
    // Strings side by side: a quote, spaces, a prefix of at most two letters, a quote.
    for index in memchr::memchr2_iter(b'\'', b'"', bytes) {
        let mut next = index + 1;
        while next < bytes.len() && bytes[next].is_ascii_whitespace() {
            next += 1;
        }
        let mut prefix = 0;
        while prefix < 2 && next + prefix < bytes.len() && is_prefix(bytes[next + prefix]) {
            prefix += 1;
        }
        if bytes.get(next + prefix).is_some_and(|&b| is_quote(b)) {
            return true;
        }
    }
    // A known name, as a word or inside a format string's braces.
    if symbols.is_empty() {
        return false;
    }
    let mut index = 0;
    while index < bytes.len() {
        if !is_word(bytes[index]) {
            index += 1;
            continue;
        }
        let start = index;
        while index < bytes.len() && is_word(bytes[index]) {
            index += 1;
        }
        let word = &bytes[start..index];
        if symbols.may_know(word) {
            return true;
        }
        // After a number, a name starts at the first underscore (`1a_b` reads `1a`, `_b`).
        if word[0].is_ascii_digit() {
            if let Some(underscore) = memchr::memchr(b'_', word) {
                if symbols.may_know(&word[underscore..]) {
                    return true;
                }
            }
        }
    }
    false
}

/// Whether `needle` (not empty) occurs in `bytes`; quicker than a searcher for short lines.
fn contains(bytes: &[u8], needle: &[u8]) -> bool {
    memchr::memchr_iter(needle[0], bytes).any(|at| bytes[at..].starts_with(needle))
}

fn python_line<'a>(
    text: &'a str,
    line: usize,
    symbols: &mut Symbols,
    tokens: &mut Vec<Token<'a>>,
    emit: &mut dyn FnMut(usize, String, Via),
) {
    if !python_line_matters(text.as_bytes(), symbols) {
        return;
    }
    tokenize(text, tokens);
    let tokens: &[Token<'a>] = tokens;
    /// The text of a string or known name, and whether it came from a name.
    fn value_of<'t>(token: &'t Token<'_>, symbols: &'t Symbols) -> Option<(Cow<'t, str>, bool)> {
        match token {
            Token::Str {
                content,
                format: true,
            } => Some(substitute_braces(content, symbols).map_or_else(
                || (Cow::Borrowed(content.as_ref()), false),
                |text| (Cow::Owned(text), true),
            )),
            Token::Str { content, .. } => Some((Cow::Borrowed(content.as_ref()), false)),
            Token::Ident(name) => symbols.get(name).map(|value| (Cow::Borrowed(value), true)),
            _ => None,
        }
    }
    // `name = expr` where expr joins strings and known names.
    if let [Token::Ident(name), Token::Punct(b'='), expr @ ..] = tokens {
        if !expr.is_empty() && expr.len() % 2 == 1 {
            let mut value = String::new();
            let mut substituted = false;
            let mut ok = true;
            for (position, token) in expr.iter().enumerate() {
                if position % 2 == 1 {
                    ok &= *token == Token::Punct(b'+');
                    continue;
                }
                match value_of(token, symbols) {
                    Some((piece, from_symbol)) => {
                        value.push_str(&piece);
                        substituted |= from_symbol;
                    }
                    None => ok = false,
                }
            }
            if ok {
                if expr.len() > 1 || substituted {
                    let via = if substituted {
                        Via::Variable
                    } else {
                        Via::Concatenation
                    };
                    emit(line, value.clone(), via);
                }
                symbols.set(name, value);
                return;
            }
        }
    }
    let mut index = 0;
    while index < tokens.len() {
        // Runs of strings and known names joined by `+` or written side by side.
        if let Some((first, mut substituted)) = value_of(&tokens[index], symbols) {
            let mut value = first;
            let mut parts = 1;
            let mut next = index + 1;
            loop {
                let step = match tokens.get(next) {
                    Some(Token::Punct(b'+')) => 1,
                    Some(Token::Str { .. }) if matches!(tokens[next - 1], Token::Str { .. }) => 0,
                    _ => break,
                };
                match tokens
                    .get(next + step)
                    .and_then(|token| value_of(token, symbols))
                {
                    Some((piece, from_symbol)) => {
                        value.to_mut().push_str(&piece);
                        substituted |= from_symbol;
                        parts += 1;
                        next += step + 1;
                    }
                    None => break,
                }
            }
            if parts > 1 || substituted {
                let via = if substituted {
                    Via::Variable
                } else {
                    Via::Concatenation
                };
                emit(line, value.clone().into_owned(), via);
            }
            // `"sep".join([...])` and `"..."[::-1]`.
            if let Token::Str {
                content: separator, ..
            } = &tokens[index]
            {
                if let (Some(Token::Punct(b'.')), Some(Token::Ident(method))) =
                    (tokens.get(index + 1), tokens.get(index + 2))
                {
                    if *method == "join" {
                        let pieces: Vec<&str> = tokens[index + 3..]
                            .iter()
                            .take_while(|t| !matches!(t, Token::Punct(b')')))
                            .filter_map(|t| match t {
                                Token::Str { content, .. } => Some(content.as_ref()),
                                _ => None,
                            })
                            .collect();
                        if pieces.len() > 1 {
                            emit(line, pieces.join(separator), Via::Concatenation);
                        }
                    }
                }
                let reversed = [
                    Token::Punct(b'['),
                    Token::Punct(b':'),
                    Token::Punct(b':'),
                    Token::Punct(b'-'),
                ];
                if tokens.get(next..next + 4) == Some(&reversed[..])
                    && tokens.get(next + 4) == Some(&Token::Number("1"))
                {
                    emit(line, value.chars().rev().collect(), Via::Reversed);
                }
            }
            index = next.max(index + 1);
            continue;
        }
        // `chr(120) + chr(109) + ...`.
        if tokens[index] == Token::Ident("chr") {
            let mut value = String::new();
            let mut next = index;
            while let (
                Some(Token::Ident(name)),
                Some(Token::Punct(b'(')),
                Some(Token::Number(n)),
                Some(Token::Punct(b')')),
            ) = (
                tokens.get(next),
                tokens.get(next + 1),
                tokens.get(next + 2),
                tokens.get(next + 3),
            ) {
                if *name != "chr" {
                    break;
                }
                match n.parse::<u32>().ok().and_then(char::from_u32) {
                    Some(ch) => value.push(ch),
                    None => break,
                }
                next += 4;
                if tokens.get(next) == Some(&Token::Punct(b'+'))
                    || tokens.get(next) == Some(&Token::Punct(b','))
                {
                    next += 1;
                }
            }
            if value.chars().count() >= 3 {
                emit(line, value, Via::Concatenation);
            }
            index = next.max(index + 1);
            continue;
        }
        index += 1;
    }
}
