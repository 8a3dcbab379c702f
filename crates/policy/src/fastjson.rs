//! A strict byte-level reader for the usual shape of a notebook: it reads each cell's type and
//! source and skips everything else (outputs, metadata) without building values. It accepts a
//! subset of what the serde reader in `document` accepts and returns `None` for anything else
//! (invalid UTF-8, escaped surrogates in sources, escaped keys, deep nesting, duplicate keys,
//! unexpected shapes), which then goes to that reader: both give the same cells whenever this one answers.

/// The cells read: whether each is a code cell, and its source (`source`, else `input`).
pub(crate) type Cells = Vec<(bool, Option<String>)>;

const DEPTH_MAX: usize = 100;

struct Reader<'a> {
    bytes: &'a [u8],
    /// `bytes`, checked to be UTF-8 once: spans of it are taken without checking again.
    text: &'a str,
    at: usize,
}

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGH_BITS: u64 = 0x8080_8080_8080_8080;
const LOW_BITS: u64 = 0x7f7f_7f7f_7f7f_7f7f;

/// The high bit of each byte of `word` that is zero.
fn zero_bytes(word: u64) -> u64 {
    !(((word & LOW_BITS) + LOW_BITS) | word | LOW_BITS)
}

/// The high bit of each byte of `word` that ends a run of plain string content: a quote, a
/// backslash or a control character.
fn stop_bytes(word: u64) -> u64 {
    // A byte below 0x80 reaches 0x80 when 0x60 is added exactly when it is 0x20 or more.
    let control = !(((word & LOW_BITS) + 0x6060_6060_6060_6060) | word) & HIGH_BITS;
    control
        | zero_bytes(word ^ (ONES * u64::from(b'"')))
        | zero_bytes(word ^ (ONES * u64::from(b'\\')))
}

/// Bytes of a string checked eight at a time before switching to `memchr`, which is quicker
/// on long strings (outputs, images) but costs a call on short ones (most keys and lines).
const SHORT_BYTES: usize = 64;

/// The offset of the first quote, backslash or control character in `bytes`.
fn string_stop(bytes: &[u8]) -> Option<usize> {
    let short = &bytes[..bytes.len().min(SHORT_BYTES)];
    let mut chunks = short.chunks_exact(8);
    for (index, chunk) in (&mut chunks).enumerate() {
        let word = u64::from_le_bytes(chunk.try_into().expect("eight bytes"));
        let stops = stop_bytes(word);
        if stops != 0 {
            return Some(index * 8 + (stops.trailing_zeros() / 8) as usize);
        }
    }
    let is_stop = |byte: u8| byte == b'"' || byte == b'\\' || byte < 0x20;
    let checked = short.len() - chunks.remainder().len();
    if let Some(at) = chunks.remainder().iter().position(|&byte| is_stop(byte)) {
        return Some(checked + at);
    }
    let rest = &bytes[short.len()..];
    let end = memchr::memchr2(b'"', b'\\', rest)?;
    // Control characters before the end (a branch-free pass over the span).
    let controls = rest[..end]
        .iter()
        .fold(0_u8, |any, &byte| any | u8::from(byte < 0x20));
    if controls != 0 {
        return rest
            .iter()
            .position(|&byte| byte < 0x20)
            .map(|at| short.len() + at);
    }
    Some(short.len() + end)
}

impl Reader<'_> {
    fn space(&mut self) {
        while let Some(b' ' | b'\n' | b'\t' | b'\r') = self.bytes.get(self.at) {
            self.at += 1;
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.space();
        self.bytes.get(self.at).copied()
    }

    fn eat(&mut self, byte: u8) -> Option<()> {
        (self.peek()? == byte).then(|| self.at += 1)
    }

    /// Reads a string at the cursor; appends its content to `out` when given. A string that
    /// is decoded (`decoded`) may not hold a `\u` escape of a surrogate: those go to serde.
    fn string(&mut self, mut out: Option<&mut String>, decoded: bool) -> Option<()> {
        self.eat(b'"')?;
        loop {
            let start = self.at;
            let span = string_stop(&self.bytes[start..])?;
            // Control characters are refused inside strings.
            if self.bytes[start + span] < 0x20 {
                return None;
            }
            self.at = start + span;
            if let Some(out) = out.as_deref_mut() {
                // The span starts and ends at ASCII bytes, so at character boundaries.
                out.push_str(self.text.get(start..self.at)?);
            }
            match self.bytes.get(self.at)? {
                b'"' => {
                    self.at += 1;
                    return Some(());
                }
                b'\\' => {
                    let decoded = match self.bytes.get(self.at + 1)? {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'u' => {
                            let hex = self.bytes.get(self.at + 2..self.at + 6)?;
                            let hex = std::str::from_utf8(hex).ok()?;
                            if !hex.bytes().all(|byte| byte.is_ascii_hexdigit()) {
                                return None;
                            }
                            let code = u32::from_str_radix(hex, 16).ok()?;
                            self.at += 4;
                            match char::from_u32(code) {
                                Some(ch) => ch,
                                None if decoded => return None,
                                None => '?',
                            }
                        }
                        _ => return None,
                    };
                    if let Some(out) = out.as_deref_mut() {
                        out.push(decoded);
                    }
                    self.at += 2;
                }
                _ => return None,
            }
        }
    }

    /// Reads a string without escapes (a key, a cell type) and returns its bytes.
    fn key(&mut self) -> Option<&[u8]> {
        self.eat(b'"')?;
        let start = self.at;
        while let Some(&byte) = self.bytes.get(self.at) {
            if byte == b'"' {
                let key = &self.bytes[start..self.at];
                self.at += 1;
                return Some(key);
            }
            if byte == b'\\' || byte < 0x20 {
                return None;
            }
            self.at += 1;
        }
        None
    }

    /// Skips a number with the grammar serde's skipping reader checks.
    fn number(&mut self) -> Option<()> {
        let digits = |reader: &mut Self| {
            let start = reader.at;
            while reader.bytes.get(reader.at).is_some_and(u8::is_ascii_digit) {
                reader.at += 1;
            }
            reader.at - start
        };
        if self.bytes.get(self.at) == Some(&b'-') {
            self.at += 1;
        }
        let first = *self.bytes.get(self.at)?;
        let count = digits(self);
        if count == 0 || (first == b'0' && count > 1) {
            return None;
        }
        if self.bytes.get(self.at) == Some(&b'.') {
            self.at += 1;
            if digits(self) == 0 {
                return None;
            }
        }
        if let Some(b'e' | b'E') = self.bytes.get(self.at) {
            self.at += 1;
            if let Some(b'+' | b'-') = self.bytes.get(self.at) {
                self.at += 1;
            }
            if digits(self) == 0 {
                return None;
            }
        }
        Some(())
    }

    fn word(&mut self, word: &[u8]) -> Option<()> {
        self.bytes[self.at..]
            .starts_with(word)
            .then(|| self.at += word.len())
    }

    /// Skips any value.
    fn skip(&mut self, depth: usize) -> Option<()> {
        if depth > DEPTH_MAX {
            return None;
        }
        match self.peek()? {
            b'"' => self.string(None, false),
            b'{' => {
                self.at += 1;
                if self.eat(b'}').is_some() {
                    return Some(());
                }
                loop {
                    self.space();
                    self.key()?;
                    self.eat(b':')?;
                    self.skip(depth + 1)?;
                    match self.peek()? {
                        b',' => self.at += 1,
                        b'}' => {
                            self.at += 1;
                            return Some(());
                        }
                        _ => return None,
                    }
                }
            }
            b'[' => {
                self.at += 1;
                if self.eat(b']').is_some() {
                    return Some(());
                }
                loop {
                    self.skip(depth + 1)?;
                    match self.peek()? {
                        b',' => self.at += 1,
                        b']' => {
                            self.at += 1;
                            return Some(());
                        }
                        _ => return None,
                    }
                }
            }
            b't' => self.word(b"true"),
            b'f' => self.word(b"false"),
            b'n' => self.word(b"null"),
            b'-' | b'0'..=b'9' => self.number(),
            _ => None,
        }
    }

    /// Calls `item` for each element of an array at the cursor.
    fn array(&mut self, item: &mut dyn FnMut(&mut Self) -> Option<()>) -> Option<()> {
        self.eat(b'[')?;
        if self.eat(b']').is_some() {
            return Some(());
        }
        loop {
            item(self)?;
            match self.peek()? {
                b',' => self.at += 1,
                b']' => {
                    self.at += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    /// Calls `field` for each key of an object at the cursor, with the cursor on its value.
    fn object(&mut self, field: &mut dyn FnMut(&mut Self, &[u8]) -> Option<()>) -> Option<()> {
        self.eat(b'{')?;
        if self.eat(b'}').is_some() {
            return Some(());
        }
        loop {
            self.space();
            let start = self.at;
            self.key()?;
            let key = &self.bytes[start + 1..self.at - 1];
            self.eat(b':')?;
            field(self, key)?;
            match self.peek()? {
                b',' => self.at += 1,
                b'}' => {
                    self.at += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    /// A source: a string or a list of strings, joined; `null` is none.
    fn source(&mut self, read: bool) -> Option<Option<String>> {
        let mut text = read.then(String::new);
        match self.peek()? {
            b'"' => self.string(text.as_mut(), true)?,
            b'[' => self.array(&mut |reader| reader.string(text.as_mut(), true))?,
            b'n' => {
                self.word(b"null")?;
                return Some(None);
            }
            _ => return None,
        }
        Some(Some(text.unwrap_or_default()))
    }

    fn cell(&mut self) -> Option<(bool, Option<String>)> {
        let mut code = None;
        let (mut source, mut input) = (None, None);
        let (mut source_seen, mut input_seen) = (false, false);
        self.object(&mut |reader, key| {
            match key {
                b"cell_type" => {
                    if code.is_some() || reader.peek()? != b'"' {
                        return None;
                    }
                    let start = reader.at;
                    reader.key()?;
                    code = Some(&reader.bytes[start + 1..reader.at - 1] == b"code");
                }
                b"source" | b"input" => {
                    let seen = if key == b"source" {
                        &mut source_seen
                    } else {
                        &mut input_seen
                    };
                    if std::mem::replace(seen, true) {
                        return None;
                    }
                    let value = reader.source(code != Some(false))?;
                    if code != Some(false) {
                        *(if key == b"source" {
                            &mut source
                        } else {
                            &mut input
                        }) = value;
                    }
                }
                _ => reader.skip(2)?,
            }
            Some(())
        })?;
        Some((code.unwrap_or(false), source.or(input)))
    }

    fn cells(&mut self) -> Option<Cells> {
        let mut cells = Vec::new();
        self.array(&mut |reader| {
            cells.push(reader.cell()?);
            Some(())
        })?;
        Some(cells)
    }
}

/// Reads a notebook's cells, or `None` when the document is not of the shape read here.
pub(crate) fn notebook_cells(bytes: &[u8]) -> Option<Cells> {
    let text = std::str::from_utf8(bytes).ok()?;
    let mut reader = Reader { bytes, text, at: 0 };
    let (mut cells, mut worksheets): (Option<Cells>, Option<Vec<Cells>>) = (None, None);
    reader.object(&mut |reader, key| {
        match key {
            b"cells" if cells.is_none() => cells = Some(reader.cells()?),
            b"worksheets" if worksheets.is_none() => {
                let mut sheets = Vec::new();
                reader.array(&mut |reader| {
                    let mut sheet = None;
                    reader.object(&mut |reader, key| {
                        match key {
                            b"cells" if sheet.is_none() => sheet = Some(reader.cells()?),
                            b"cells" => return None,
                            _ => reader.skip(3)?,
                        }
                        Some(())
                    })?;
                    sheets.push(sheet.unwrap_or_default());
                    Some(())
                })?;
                worksheets = Some(sheets);
            }
            b"cells" | b"worksheets" => return None,
            _ => reader.skip(1)?,
        }
        Some(())
    })?;
    if reader.peek().is_some() {
        return None;
    }
    let cells = cells.unwrap_or_default();
    Some(if cells.is_empty() {
        worksheets
            .unwrap_or_default()
            .into_iter()
            .flatten()
            .collect()
    } else {
        cells
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive_stop(bytes: &[u8]) -> Option<usize> {
        bytes
            .iter()
            .position(|&byte| byte == b'"' || byte == b'\\' || byte < 0x20)
    }

    #[test]
    fn string_stop_finds_the_first_quote_backslash_or_control() {
        // Plain bytes of every kind (ASCII, UTF-8 continuation and lead bytes) before a stop at
        // every offset, across the eight-byte words, their remainder and the `memchr` tail.
        let plain: Vec<u8> = (0x20..=0xff_u8)
            .filter(|&byte| byte != b'"' && byte != b'\\')
            .collect();
        let stops: Vec<u8> = (0..0x20).chain([b'"', b'\\']).collect();
        for length in [0, 1, 7, 8, 9, 63, 64, 65, 100, 300] {
            for offset in 0..=length {
                for &stop in &stops {
                    let mut bytes: Vec<u8> = (0..length)
                        .map(|index| plain[(index * 7 + offset) % plain.len()])
                        .collect();
                    if offset < length {
                        bytes[offset] = stop;
                    }
                    // A later quote, so a string of any length ends.
                    bytes.extend_from_slice(b"xx\"");
                    assert_eq!(
                        string_stop(&bytes),
                        naive_stop(&bytes),
                        "length {length}, stop {stop:#x} at {offset}"
                    );
                }
            }
        }
        assert_eq!(string_stop(&[b'a'; 200]), None);
    }

    #[test]
    fn control_characters_in_long_and_short_strings_are_refused() {
        for length in [3, 200] {
            let text = "x".repeat(length);
            let good = format!(
                r#"{{"cells": [{{"cell_type": "code", "source": ["{text}\n"], "outputs": [{{"text": "{text}"}}]}}]}}"#
            );
            let cells = notebook_cells(good.as_bytes()).expect("read");
            assert_eq!(cells, vec![(true, Some(format!("{text}\n")))]);
            // A tab in the skipped output.
            let at = good.rfind(&text).expect("output") + length - 1;
            let bad = format!("{}\t{}", &good[..at], &good[at + 1..]);
            assert_eq!(notebook_cells(bad.as_bytes()), None, "{length}");
        }
    }
}
