//! Documents into units of code: notebooks into cells, scripts into one unit; and the
//! per-line reading of a unit: comments blanked, shell lines found, each line's contexts.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

use crate::pack::{ScopeBits, CLONE, CODE, DOWNLOAD, IMPORT, INSTALL, SHELL};

/// The language a unit of code is read as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lang {
    /// Python with IPython's `!`, `%` and `%%` extensions.
    Python,
    /// POSIX shell.
    Shell,
    /// Anything else: matched as code, without comment handling.
    Text,
}

/// The kind of a document, from its name and content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DocKind {
    Notebook,
    Script(Lang),
}

pub(crate) fn doc_kind(path_hint: &str, bytes: &[u8]) -> DocKind {
    let name = path_hint
        .rsplit(['/', '\\'])
        .next()
        .unwrap_or(path_hint)
        .to_ascii_lowercase();
    let ext = name.rsplit_once('.').map(|(_, ext)| ext).unwrap_or("");
    match ext {
        "ipynb" => DocKind::Notebook,
        "py" | "pyw" | "ipy" => DocKind::Script(Lang::Python),
        "sh" | "bash" | "zsh" | "ksh" | "command" => DocKind::Script(Lang::Shell),
        _ if name == "dockerfile" => DocKind::Script(Lang::Shell),
        _ => {
            let head = &bytes[..bytes.len().min(64)];
            if head.starts_with(b"#!") {
                let first_line = head.split(|b| *b == b'\n').next().unwrap_or(head);
                if first_line.windows(6).any(|w| w == b"python") {
                    return DocKind::Script(Lang::Python);
                }
                return DocKind::Script(Lang::Shell);
            }
            let trimmed = bytes
                .iter()
                .position(|b| !b.is_ascii_whitespace())
                .map(|i| &bytes[i..]);
            if trimmed.is_some_and(|t| t.starts_with(b"{"))
                && bytes.windows(8).take(4096).any(|w| w == b"\"cells\"")
            {
                return DocKind::Notebook;
            }
            DocKind::Script(Lang::Text)
        }
    }
}

/// One cell or script to scan.
#[derive(Debug, Clone)]
pub(crate) struct Unit<'a> {
    pub(crate) cell: Option<u32>,
    pub(crate) source: Cow<'a, str>,
    pub(crate) lang: Lang,
}

#[derive(Deserialize)]
struct Notebook {
    #[serde(default)]
    cells: Vec<NotebookCell>,
    #[serde(default)]
    worksheets: Vec<Worksheet>,
}

#[derive(Deserialize)]
struct Worksheet {
    #[serde(default)]
    cells: Vec<NotebookCell>,
}

/// A cell: only its type and source are read; outputs and metadata are skipped unparsed, and
/// so is the source of a cell already known not to be code (`cell_type` usually comes first).
#[derive(Default)]
struct NotebookCell {
    cell_type: CellType,
    source: Option<Source>,
    input: Option<Source>,
}

impl<'de> Deserialize<'de> for NotebookCell {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> Visitor<'de> for Visit {
            type Value = NotebookCell;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a notebook cell")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<NotebookCell, A::Error> {
                let mut cell = NotebookCell::default();
                let mut type_seen = false;
                let (mut source_seen, mut input_seen) = (false, false);
                while let Some(key) = map.next_key::<CellKey>()? {
                    // Duplicate keys are refused, as a derived reader would.
                    let seen = match key {
                        CellKey::CellType => &mut type_seen,
                        CellKey::Source => &mut source_seen,
                        CellKey::Input => &mut input_seen,
                        CellKey::Other => &mut false,
                    };
                    if std::mem::replace(seen, true) {
                        return Err(de::Error::custom("duplicate field in a notebook cell"));
                    }
                    match key {
                        CellKey::CellType => cell.cell_type = map.next_value()?,
                        CellKey::Source | CellKey::Input if type_seen && !cell.cell_type.0 => {
                            map.next_value::<Option<IgnoredSource>>()?;
                        }
                        CellKey::Source => cell.source = map.next_value()?,
                        CellKey::Input => cell.input = map.next_value()?,
                        CellKey::Other => {
                            map.next_value::<de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(cell)
            }
        }
        deserializer.deserialize_map(Visit)
    }
}

/// The keys of a cell that are read.
enum CellKey {
    CellType,
    Source,
    Input,
    Other,
}

impl<'de> Deserialize<'de> for CellKey {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visit;
        impl Visitor<'_> for Visit {
            type Value = CellKey;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a cell key")
            }
            fn visit_str<E: de::Error>(self, value: &str) -> Result<CellKey, E> {
                Ok(match value {
                    "cell_type" => CellKey::CellType,
                    "source" => CellKey::Source,
                    "input" => CellKey::Input,
                    _ => CellKey::Other,
                })
            }
        }
        deserializer.deserialize_identifier(Visit)
    }
}

/// A source that is not read, checked to have a source's shape: a string or a list of strings.
struct IgnoredSource;

impl<'de> Deserialize<'de> for IgnoredSource {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> Visitor<'de> for Visit {
            type Value = IgnoredSource;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or a list of strings")
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<IgnoredSource, E> {
                Ok(IgnoredSource)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<IgnoredSource, A::Error> {
                while seq.next_element::<IgnoredStr>()?.is_some() {}
                Ok(IgnoredSource)
            }
        }
        deserializer.deserialize_any(Visit)
    }
}

/// A string that is not read.
struct IgnoredStr;

impl<'de> Deserialize<'de> for IgnoredStr {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visit;
        impl Visitor<'_> for Visit {
            type Value = IgnoredStr;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<IgnoredStr, E> {
                Ok(IgnoredStr)
            }
        }
        deserializer.deserialize_str(Visit)
    }
}

/// Whether a cell's type is `code`, read without allocating.
#[derive(Default)]
struct CellType(bool);

impl<'de> Deserialize<'de> for CellType {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visit;
        impl Visitor<'_> for Visit {
            type Value = CellType;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a cell type")
            }
            fn visit_str<E: de::Error>(self, value: &str) -> Result<CellType, E> {
                Ok(CellType(value == "code"))
            }
        }
        deserializer.deserialize_str(Visit)
    }
}

/// A cell's source, a string or a list of lines, joined into one string as it is read.
struct Source(String);

impl<'de> Deserialize<'de> for Source {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> Visitor<'de> for Visit {
            type Value = Source;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or a list of strings")
            }
            fn visit_str<E: de::Error>(self, value: &str) -> Result<Source, E> {
                Ok(Source(value.to_owned()))
            }
            fn visit_string<E: de::Error>(self, value: String) -> Result<Source, E> {
                Ok(Source(value))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Source, A::Error> {
                let mut text = String::new();
                while seq.next_element_seed(Append(&mut text))?.is_some() {}
                Ok(Source(text))
            }
        }
        deserializer.deserialize_any(Visit)
    }
}

/// Appends one string of a list to the text read so far.
struct Append<'t>(&'t mut String);

impl<'de> DeserializeSeed<'de> for Append<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl Visitor<'_> for Append<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }
    fn visit_str<E: de::Error>(self, value: &str) -> Result<(), E> {
        self.0.push_str(value);
        Ok(())
    }
}

/// Splits a document into units. A notebook that does not parse is read as text.
pub(crate) fn units<'a>(path_hint: &str, bytes: &'a [u8]) -> Vec<Unit<'a>> {
    let text = || String::from_utf8_lossy(bytes);
    match doc_kind(path_hint, bytes) {
        DocKind::Notebook if let Some(cells) = crate::fastjson::notebook_cells(bytes) => cells
            .into_iter()
            .enumerate()
            .filter(|(_, (code, _))| *code)
            .map(|(index, (_, source))| Unit {
                cell: Some(u32::try_from(index).unwrap_or(u32::MAX)),
                source: Cow::Owned(source.unwrap_or_default()),
                lang: Lang::Python,
            })
            .collect(),
        DocKind::Notebook => match serde_json::from_slice::<Notebook>(bytes) {
            Ok(notebook) => {
                let cells = if notebook.cells.is_empty() {
                    notebook
                        .worksheets
                        .into_iter()
                        .flat_map(|sheet| sheet.cells)
                        .collect()
                } else {
                    notebook.cells
                };
                cells
                    .into_iter()
                    .enumerate()
                    .filter(|(_, cell)| cell.cell_type.0)
                    .map(|(index, cell)| Unit {
                        cell: Some(u32::try_from(index).unwrap_or(u32::MAX)),
                        source: Cow::Owned(
                            cell.source
                                .or(cell.input)
                                .map(|source| source.0)
                                .unwrap_or_default(),
                        ),
                        lang: Lang::Python,
                    })
                    .collect()
            }
            Err(_) => vec![Unit {
                cell: None,
                source: text(),
                lang: Lang::Text,
            }],
        },
        DocKind::Script(lang) => vec![Unit {
            cell: None,
            source: text(),
            lang,
        }],
    }
}

/// A string literal found in Python code, with escapes applied.
#[derive(Debug, Clone)]
pub(crate) struct StrLit {
    pub(crate) line: usize,
    /// The content when escapes make it differ from the source; otherwise it is the source
    /// text at `span` (read with `Prepared::string_content`).
    escaped: Option<String>,
    span: (usize, usize),
    /// Whether the literal used `\x` or `\u` escapes.
    pub(crate) had_hex_escapes: bool,
}

/// One line of a prepared unit.
#[derive(Debug, Clone)]
pub(crate) struct LineInfo {
    pub(crate) start: usize,
    pub(crate) end: usize,
    pub(crate) ctx: ScopeBits,
    pub(crate) lang: Lang,
}

/// A unit read line by line: comments and docstrings blanked out (byte offsets kept).
#[derive(Debug)]
pub(crate) struct Prepared {
    pub(crate) text: String,
    /// `text` in ASCII lower case.
    pub(crate) lower: String,
    pub(crate) lines: Vec<LineInfo>,
    pub(crate) strings: Vec<StrLit>,
}

impl Prepared {
    pub(crate) fn line_of(&self, offset: usize) -> usize {
        self.lines
            .partition_point(|line| line.end < offset)
            .min(self.lines.len().saturating_sub(1))
    }

    pub(crate) fn line_text(&self, index: usize) -> &str {
        let line = &self.lines[index];
        &self.text[line.start..line.end]
    }

    /// The content of a string literal of this unit.
    pub(crate) fn string_content<'s>(&'s self, literal: &'s StrLit) -> &'s str {
        match &literal.escaped {
            Some(content) => content,
            None => &self.text[literal.span.0..literal.span.1],
        }
    }
}

const M_SHELL_CALL: u16 = 1;
const M_PY_DOWNLOAD: u16 = 2;
const M_PY_INSTALL: u16 = 4;
const M_INSTALL_WORD: u16 = 8;
const M_PKG_TOOL: u16 = 16;
const M_DPKG: u16 = 32;
const M_CLONE: u16 = 64;
const M_DOWNLOAD: u16 = 128;
const M_IMPORT: u16 = 256;

/// Substrings that give a line a context: `(lower-case text, mark, whole word only)`.
pub(crate) const MARKERS: &[(&str, u16, bool)] = &[
    ("os.system(", M_SHELL_CALL, false),
    ("subprocess.", M_SHELL_CALL, false),
    ("system_raw(", M_SHELL_CALL, false),
    ("getoutput(", M_SHELL_CALL, false),
    ("popen(", M_SHELL_CALL, false),
    ("check_output(", M_SHELL_CALL, false),
    ("check_call(", M_SHELL_CALL, false),
    ("get_ipython().system(", M_SHELL_CALL, false),
    ("pexpect.spawn(", M_SHELL_CALL, false),
    ("getstatusoutput(", M_SHELL_CALL, false),
    ("run_command(", M_SHELL_CALL, false),
    ("urlretrieve(", M_PY_DOWNLOAD, false),
    ("requests.get(", M_PY_DOWNLOAD, false),
    ("hf_hub_download(", M_PY_DOWNLOAD, false),
    ("gdown.download(", M_PY_DOWNLOAD, false),
    ("wget.download(", M_PY_DOWNLOAD, false),
    ("urlopen(", M_PY_DOWNLOAD, false),
    ("load_file_from_url(", M_PY_DOWNLOAD, false),
    ("download_url(", M_PY_DOWNLOAD, false),
    ("snapshot_download(", M_PY_DOWNLOAD, false),
    ("pip.main(", M_PY_INSTALL, false),
    ("pipmain(", M_PY_INSTALL, false),
    ("install", M_INSTALL_WORD, false),
    ("pip", M_PKG_TOOL, true),
    ("pip3", M_PKG_TOOL, true),
    ("apt", M_PKG_TOOL, true),
    ("apt-get", M_PKG_TOOL, true),
    ("conda", M_PKG_TOOL, true),
    ("mamba", M_PKG_TOOL, true),
    ("npm", M_PKG_TOOL, true),
    ("snap", M_PKG_TOOL, true),
    ("brew", M_PKG_TOOL, true),
    ("yum", M_PKG_TOOL, true),
    ("dnf", M_PKG_TOOL, true),
    ("apk", M_PKG_TOOL, true),
    ("uv", M_PKG_TOOL, true),
    ("dpkg -i", M_DPKG, false),
    ("dpkg --install", M_DPKG, false),
    ("git clone", M_CLONE, false),
    ("git submodule", M_CLONE, false),
    ("/archive/", M_CLONE, false),
    ("wget", M_DOWNLOAD, true),
    ("curl", M_DOWNLOAD, true),
    ("aria2c", M_DOWNLOAD, true),
    ("gdown", M_DOWNLOAD, true),
    ("axel", M_DOWNLOAD, true),
    ("git lfs", M_DOWNLOAD, false),
    (" import ", M_IMPORT, false),
];

/// Blanks comments and docstrings and gives each line its contexts.
pub(crate) fn prepare(unit: &Unit) -> Prepared {
    let mut text = match unit.lang {
        // Python reads identifiers in NFKC form; plain ASCII has nothing to fold.
        Lang::Python if !unit.source.is_ascii() => {
            crate::normalize::fold_compatibility(&unit.source).into_bytes()
        }
        _ => unit.source.as_bytes().to_vec(),
    };
    let mut strings = Vec::new();
    let mut line_spans = Vec::new();
    let mut start = 0;
    for index in memchr::memchr_iter(b'\n', &text) {
        line_spans.push((start, index));
        start = index + 1;
    }
    line_spans.push((start, text.len()));

    let mut unit_lang = unit.lang;
    let mut first_code_line = 0;
    if unit.lang == Lang::Python {
        // Cell magics on the first lines decide how the rest of the cell is read.
        for (index, (start, end)) in line_spans.iter().enumerate() {
            let line = String::from_utf8_lossy(&text[*start..*end]);
            let line = line.trim();
            if !line.starts_with("%%") {
                if line.is_empty() && index == first_code_line {
                    first_code_line += 1;
                    continue;
                }
                break;
            }
            let line = line.to_ascii_lowercase();
            first_code_line = index + 1;
            let magic = line.trim_start_matches("%%");
            let name = magic.split_whitespace().next().unwrap_or("");
            unit_lang = match name {
                "bash" | "sh" | "shell" | "system" => Lang::Shell,
                "script" => {
                    if magic.contains("python") {
                        Lang::Python
                    } else {
                        Lang::Shell
                    }
                }
                "writefile" | "file" => {
                    let target = magic.split_whitespace().last().unwrap_or("");
                    if target.ends_with(".py") {
                        Lang::Python
                    } else if target.ends_with(".sh") || target.ends_with(".bash") {
                        Lang::Shell
                    } else {
                        Lang::Text
                    }
                }
                "html" | "javascript" | "js" | "markdown" | "latex" | "svg" => {
                    // Not code that runs in the kernel; nothing to scan.
                    return Prepared {
                        text: String::new(),
                        lower: String::new(),
                        lines: vec![LineInfo {
                            start: 0,
                            end: 0,
                            ctx: 0,
                            lang: Lang::Text,
                        }],
                        strings,
                    };
                }
                _ => continue,
            };
            break;
        }
        for (start, end) in &line_spans[..first_code_line.min(line_spans.len())] {
            blank(&mut text, *start, *end);
        }
    }

    let mut lines = Vec::with_capacity(line_spans.len());
    let mut lexer = PyLexer::default();
    for (index, (start, end)) in line_spans.iter().copied().enumerate() {
        if index < first_code_line {
            lines.push(LineInfo {
                start,
                end,
                ctx: 0,
                lang: Lang::Text,
            });
            continue;
        }
        let raw = &text[start..end];
        let first = raw
            .iter()
            .position(|b| !b.is_ascii_whitespace())
            .unwrap_or(raw.len());
        let rest = &raw[first..];
        let (lang, ctx) = match unit_lang {
            Lang::Shell => {
                blank_shell_comment(&mut text, start, end);
                (Lang::Shell, SHELL)
            }
            Lang::Text => (Lang::Text, CODE),
            Lang::Python if lexer.in_string() => {
                lexer.line(&mut text, start, end, index, &mut strings);
                (Lang::Python, CODE)
            }
            Lang::Python if rest.starts_with(b"!") || is_line_magic(rest) => {
                blank_shell_comment(&mut text, start, end);
                (Lang::Shell, SHELL)
            }
            Lang::Python if is_bare_shell(rest) => {
                blank_shell_comment(&mut text, start, end);
                (Lang::Shell, SHELL)
            }
            Lang::Python => {
                lexer.line(&mut text, start, end, index, &mut strings);
                (Lang::Python, CODE)
            }
        };
        lines.push(LineInfo {
            start,
            end,
            ctx,
            lang,
        });
    }

    let text = String::from_utf8(text)
        .unwrap_or_else(|err| String::from_utf8_lossy(err.as_bytes()).into_owned());
    let lower = text.to_ascii_lowercase();
    Prepared {
        text,
        lower,
        lines,
        strings,
    }
}

/// Whether a marker found at `start..end` of `lower` counts: word markers must stand alone.
pub(crate) fn marker_counts(lower: &[u8], marker: usize, start: usize, end: usize) -> bool {
    if !MARKERS[marker].2 {
        return true;
    }
    let before = start.checked_sub(1).map(|i| lower[i]);
    let after = lower.get(end).copied();
    let is_word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    !(before.is_some_and(is_word) || after.is_some_and(is_word))
}

impl Prepared {
    /// Gives each line its contexts from what it does, from the markers found in the lower-cased
    /// text: `(marker index, start, end)` in the order the matcher reports them.
    pub(crate) fn set_contexts(&mut self, found: &[(u16, u32, u32)]) {
        let lower = self.lower.as_bytes();
        let lines = &mut self.lines;
        let mut marks = vec![0u16; lines.len()];
        let mut line_index = 0;
        for &(marker, start, end) in found {
            let (marker, start, end) = (usize::from(marker), start as usize, end as usize);
            if !marker_counts(lower, marker, start, end) {
                continue;
            }
            let bit = MARKERS[marker].1;
            while line_index + 1 < lines.len() && lines[line_index].end < start {
                line_index += 1;
            }
            marks[line_index] |= bit;
        }
        let mut shell_call_depth: i32 = 0;
        for (line, mark) in lines.iter_mut().zip(marks) {
            if line.ctx == 0 {
                continue;
            }
            let line_lower = &lower[line.start..line.end];
            if line.lang == Lang::Python {
                let first = line_lower
                    .iter()
                    .position(|b| !b.is_ascii_whitespace())
                    .unwrap_or(line_lower.len());
                let trimmed = &line_lower[first..];
                if trimmed.starts_with(b"import ")
                    || (trimmed.starts_with(b"from ") && mark & M_IMPORT != 0)
                {
                    line.ctx |= IMPORT;
                }
                let opens_shell_call = mark & M_SHELL_CALL != 0;
                if opens_shell_call || shell_call_depth > 0 {
                    line.ctx |= SHELL;
                    shell_call_depth += paren_balance(line_lower);
                    if shell_call_depth < 0 || !opens_shell_call && shell_call_depth == 0 {
                        shell_call_depth = 0;
                    }
                }
                if mark & M_PY_DOWNLOAD != 0 {
                    line.ctx |= DOWNLOAD;
                }
                if mark & M_PY_INSTALL != 0 {
                    line.ctx |= INSTALL;
                }
            }
            if line.ctx & SHELL != 0 {
                if mark & M_INSTALL_WORD != 0 && mark & M_PKG_TOOL != 0 || mark & M_DPKG != 0 {
                    line.ctx |= INSTALL;
                }
                if mark & M_CLONE != 0 {
                    line.ctx |= CLONE;
                }
                if mark & M_DOWNLOAD != 0 {
                    line.ctx |= DOWNLOAD;
                }
            }
        }
    }
}

fn is_line_magic(rest: &[u8]) -> bool {
    if !rest.starts_with(b"%") || rest.starts_with(b"%%") {
        return false;
    }
    let length = rest[1..]
        .iter()
        .take_while(|b| b.is_ascii_alphanumeric() || **b == b'_')
        .count();
    matches!(
        &rest[1..=length],
        b"cd"
            | b"pip"
            | b"conda"
            | b"env"
            | b"sx"
            | b"system"
            | b"run"
            | b"bash"
            | b"sh"
            | b"mkdir"
            | b"cp"
            | b"mv"
            | b"rm"
            | b"ls"
            | b"cat"
            | b"pushd"
            | b"popd"
            | b"set_env"
            | b"shell"
    )
}

/// Whether a Python line is a shell command written without `!`: `./program`, or a common
/// command's name and a space, not followed by what would make it Python (`cd = 1`, `tar(x)`).
fn is_bare_shell(rest: &[u8]) -> bool {
    if rest.starts_with(b"./") {
        return true;
    }
    let Some(space) = memchr::memchr(b' ', rest) else {
        return false;
    };
    let is_command = matches!(
        &rest[..space],
        b"sudo"
            | b"apt"
            | b"apt-get"
            | b"wget"
            | b"curl"
            | b"git"
            | b"chmod"
            | b"nohup"
            | b"bash"
            | b"cd"
            | b"pip"
            | b"pip3"
            | b"tar"
            | b"unzip"
            | b"mkdir"
            | b"aria2c"
            | b"screen"
            | b"tmux"
            | b"systemctl"
            | b"service"
    );
    is_command && {
        let after = rest[space + 1..].iter().find(|b| !b.is_ascii_whitespace());
        after.is_some_and(|b| !matches!(b, b'=' | b'(' | b'.' | b',' | b')' | b'['))
    }
}

fn paren_balance(line: &[u8]) -> i32 {
    line.iter().fold(0, |depth, byte| match *byte {
        b'(' | b'[' => depth + 1,
        b')' | b']' => depth - 1,
        _ => depth,
    })
}

fn blank(text: &mut [u8], start: usize, end: usize) {
    for byte in &mut text[start..end] {
        *byte = b' ';
    }
}

/// Blanks a shell comment: `#` at the start of a word, outside quotes.
fn blank_shell_comment(text: &mut [u8], start: usize, end: usize) {
    let mut quote = None;
    let mut previous = b' ';
    for index in start..end {
        let byte = text[index];
        match quote {
            Some(q) if byte == q => quote = None,
            Some(_) => {}
            None if byte == b'\'' || byte == b'"' => quote = Some(byte),
            None if byte == b'#' && (previous.is_ascii_whitespace() || index == start) => {
                blank(text, index, end);
                return;
            }
            None => {}
        }
        previous = byte;
    }
}

/// A small Python lexer that knows strings and comments, carried across lines.
#[derive(Default)]
struct PyLexer {
    /// The open triple-quoted string.
    open: Option<OpenString>,
    /// The content of the string being read, escapes applied.
    content: Vec<u8>,
}

struct OpenString {
    quote: u8,
    raw: bool,
    docstring: bool,
    /// Whether an escape was applied: the content is no longer the source text.
    escaped: bool,
    hex: bool,
    line: usize,
    /// The offset of the content's first byte in the unit.
    body_start: usize,
}

/// A literal read whole: its content is in `content`, or is the source at `span`.
fn string_literal(
    line: usize,
    content: &[u8],
    span: (usize, usize),
    escaped: bool,
    hex: bool,
) -> StrLit {
    StrLit {
        line,
        escaped: escaped.then(|| string_from(content.to_vec())),
        span,
        had_hex_escapes: hex,
    }
}

impl PyLexer {
    fn in_string(&self) -> bool {
        self.open.is_some()
    }

    fn line(
        &mut self,
        text: &mut [u8],
        start: usize,
        end: usize,
        line_index: usize,
        strings: &mut Vec<StrLit>,
    ) {
        let mut index = start;
        if let Some(open) = &mut self.open {
            match scan_string_body(
                text,
                index,
                end,
                open.quote,
                true,
                open.raw,
                &mut self.content,
                &mut open.hex,
                &mut open.escaped,
            ) {
                Some(close) => {
                    if open.docstring {
                        blank(text, index, close);
                    }
                    let open = self.open.take().expect("open string");
                    if !open.docstring {
                        strings.push(string_literal(
                            open.line,
                            &self.content,
                            (open.body_start, close - 3),
                            open.escaped,
                            open.hex,
                        ));
                    }
                    index = close;
                }
                None => {
                    if open.docstring {
                        blank(text, index, end);
                    }
                    self.content.push(b'\n');
                    return;
                }
            }
        }
        let mut statement_start = text[start..index].iter().all(|b| b.is_ascii_whitespace());
        while index < end {
            // Only comments and strings matter: jump to the next `#` or quote.
            let next =
                memchr::memchr3(b'#', b'\'', b'"', &text[index..end]).map_or(end, |p| index + p);
            if statement_start && text[index..next].iter().any(|b| !b.is_ascii_whitespace()) {
                statement_start = false;
            }
            index = next;
            if index == end {
                break;
            }
            let byte = text[index];
            if byte == b'#' {
                blank(text, index, end);
                return;
            }
            if byte == b'\'' || byte == b'"' {
                let mut prefix_start = index;
                while prefix_start > start
                    && text[prefix_start - 1].is_ascii_alphabetic()
                    && index - prefix_start < 2
                {
                    prefix_start -= 1;
                }
                let raw = text[prefix_start..index]
                    .iter()
                    .any(|b| b.eq_ignore_ascii_case(&b'r'));
                let triple = index + 2 < end && text[index + 1] == byte && text[index + 2] == byte;
                let docstring = triple && statement_start;
                let quote_len = if triple { 3 } else { 1 };
                let body_start = index + quote_len;
                let mut hex = false;
                let mut escaped = false;
                self.content.clear();
                match scan_string_body(
                    text,
                    body_start,
                    end,
                    byte,
                    triple,
                    raw,
                    &mut self.content,
                    &mut hex,
                    &mut escaped,
                ) {
                    Some(close) => {
                        if docstring {
                            blank(text, index, close);
                        } else {
                            strings.push(string_literal(
                                line_index,
                                &self.content,
                                (body_start, close - quote_len),
                                escaped,
                                hex,
                            ));
                        }
                        index = close;
                    }
                    None if triple => {
                        if docstring {
                            blank(text, index, end);
                        }
                        self.content.push(b'\n');
                        self.open = Some(OpenString {
                            quote: byte,
                            raw,
                            docstring,
                            escaped,
                            hex,
                            line: line_index,
                            body_start,
                        });
                        return;
                    }
                    None => return,
                }
                statement_start = false;
                continue;
            }
        }
    }
}

fn string_from(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes)
        .unwrap_or_else(|err| String::from_utf8_lossy(err.as_bytes()).into_owned())
}

/// Scans a string body from `index`, appending its content to `content`; returns the offset
/// after the closing quote. `escaped` is set when an escape is applied.
#[allow(clippy::too_many_arguments)]
fn scan_string_body(
    text: &[u8],
    mut index: usize,
    end: usize,
    quote: u8,
    triple: bool,
    raw: bool,
    content: &mut Vec<u8>,
    hex: &mut bool,
    escaped: &mut bool,
) -> Option<usize> {
    while index < end {
        // Copy the run up to the next escape or quote at once.
        let run = memchr::memchr2(b'\\', quote, &text[index..end]).unwrap_or(end - index);
        content.extend_from_slice(&text[index..index + run]);
        index += run;
        if index == end {
            break;
        }
        let byte = text[index];
        if byte == b'\\' && index + 1 < end {
            let next = text[index + 1];
            if raw {
                content.extend_from_slice(&[byte, next]);
                index += 2;
                continue;
            }
            *escaped = true;
            match next {
                b'x' if index + 3 < end + 1 && index + 4 <= end => {
                    let digits = std::str::from_utf8(&text[index + 2..index + 4]).ok();
                    if let Some(value) = digits.and_then(|d| u8::from_str_radix(d, 16).ok()) {
                        content.push(value);
                        *hex = true;
                        index += 4;
                        continue;
                    }
                    content.push(next);
                }
                b'u' if index + 6 <= end => {
                    let digits = std::str::from_utf8(&text[index + 2..index + 6]).ok();
                    if let Some(ch) = digits
                        .and_then(|d| u32::from_str_radix(d, 16).ok())
                        .and_then(char::from_u32)
                    {
                        let mut buf = [0; 4];
                        content.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                        *hex = true;
                        index += 6;
                        continue;
                    }
                    content.push(next);
                }
                b'n' => content.push(b'\n'),
                b't' => content.push(b'\t'),
                _ => content.push(next),
            }
            index += 2;
            continue;
        }
        if byte == quote {
            if !triple {
                return Some(index + 1);
            }
            if index + 2 < end && text[index + 1] == quote && text[index + 2] == quote {
                return Some(index + 3);
            }
        }
        content.push(byte);
        index += 1;
    }
    None
}
