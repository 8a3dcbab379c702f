//! Notebooks on disk: structural nbformat 4 validation, and the exact bytes nbformat writes
//! (`json.dumps(nb, sort_keys=True, indent=1, ensure_ascii=False)` plus a newline, with
//! multi-line strings split into lists of lines), so a notebook read and saved unchanged stays
//! byte-identical.

use serde_json::{Map, Value};

const OUTPUT_TYPES: [&str; 4] = ["execute_result", "display_data", "stream", "error"];
const TOP_LEVEL_KEYS: [&str; 4] = ["cells", "metadata", "nbformat", "nbformat_minor"];

/// Checks the structure nbformat 4 requires; the error names where the notebook is wrong.
pub(crate) fn validate(nb: &Value) -> Result<(), String> {
    let nb = nb.as_object().ok_or("the notebook is not a JSON object")?;
    for key in TOP_LEVEL_KEYS {
        if !nb.contains_key(key) {
            return Err(format!("'{key}' is a required property"));
        }
    }
    if let Some(key) = nb.keys().find(|k| !TOP_LEVEL_KEYS.contains(&k.as_str())) {
        return Err(format!("unexpected top-level property '{key}'"));
    }
    if nb["nbformat"].as_u64() != Some(4) {
        return Err(format!(
            "nbformat must be 4, not {} (only nbformat 4 notebooks are supported)",
            nb["nbformat"]
        ));
    }
    if nb["nbformat_minor"].as_u64().is_none() {
        return Err("nbformat_minor must be a non-negative integer".into());
    }
    if !nb["metadata"].is_object() {
        return Err("metadata must be an object".into());
    }
    let cells = nb["cells"].as_array().ok_or("cells must be an array")?;
    for (i, cell) in cells.iter().enumerate() {
        validate_cell(cell).map_err(|e| format!("cells[{i}]: {e}"))?;
    }
    Ok(())
}

fn validate_cell(cell: &Value) -> Result<(), String> {
    let cell = cell.as_object().ok_or("a cell must be an object")?;
    let cell_type = cell
        .get("cell_type")
        .and_then(Value::as_str)
        .ok_or("'cell_type' is a required string")?;
    if !matches!(cell_type, "code" | "markdown" | "raw") {
        return Err(format!(
            "cell_type '{cell_type}' is not one of code, markdown, raw"
        ));
    }
    if !cell.get("metadata").is_some_and(Value::is_object) {
        return Err("'metadata' is a required object".into());
    }
    if !cell.get("source").is_some_and(is_multiline_string) {
        return Err("'source' must be a string or an array of strings".into());
    }
    if let Some(id) = cell.get("id") {
        let ok = id.as_str().is_some_and(|s| {
            (1..=64).contains(&s.len())
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
        if !ok {
            return Err("'id' must be 1 to 64 characters of letters, digits, '-' and '_'".into());
        }
    }
    if let Some(attachments) = cell.get("attachments") {
        if !attachments.is_object() {
            return Err("'attachments' must be an object".into());
        }
    }
    if cell_type == "code" {
        match cell.get("execution_count") {
            Some(Value::Null) => {}
            Some(n) if n.as_u64().is_some() => {}
            _ => return Err("'execution_count' must be an integer or null".into()),
        }
        let outputs = cell
            .get("outputs")
            .and_then(Value::as_array)
            .ok_or("'outputs' is a required array for code cells")?;
        for (j, output) in outputs.iter().enumerate() {
            validate_output(output).map_err(|e| format!("outputs[{j}]: {e}"))?;
        }
    }
    Ok(())
}

fn validate_output(output: &Value) -> Result<(), String> {
    let output = output.as_object().ok_or("an output must be an object")?;
    let output_type = output
        .get("output_type")
        .and_then(Value::as_str)
        .ok_or("'output_type' is a required string")?;
    let object = |key: &str| {
        if output.get(key).is_some_and(Value::is_object) {
            Ok(())
        } else {
            Err(format!("'{key}' is a required object for {output_type}"))
        }
    };
    match output_type {
        "stream" => {
            if !output.get("name").is_some_and(Value::is_string) {
                return Err("'name' is a required string for stream".into());
            }
            if !output.get("text").is_some_and(is_multiline_string) {
                return Err("'text' must be a string or an array of strings".into());
            }
        }
        "display_data" | "execute_result" => {
            object("data")?;
            object("metadata")?;
            if output_type == "execute_result" {
                match output.get("execution_count") {
                    Some(Value::Null) => {}
                    Some(n) if n.as_u64().is_some() => {}
                    _ => return Err("'execution_count' must be an integer or null".into()),
                }
            }
        }
        "error" => {
            for key in ["ename", "evalue"] {
                if !output.get(key).is_some_and(Value::is_string) {
                    return Err(format!("'{key}' is a required string for error"));
                }
            }
            let traceback_ok = output
                .get("traceback")
                .and_then(Value::as_array)
                .is_some_and(|t| t.iter().all(Value::is_string));
            if !traceback_ok {
                return Err("'traceback' must be an array of strings".into());
            }
        }
        other => {
            return Err(format!(
                "output_type '{other}' is not one of {}",
                OUTPUT_TYPES.join(", ")
            ))
        }
    }
    Ok(())
}

fn is_multiline_string(v: &Value) -> bool {
    match v {
        Value::String(_) => true,
        Value::Array(a) => a.iter().all(Value::is_string),
        _ => false,
    }
}

fn cells_mut(nb: &mut Value) -> impl Iterator<Item = &mut Map<String, Value>> {
    nb.get_mut("cells")
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
        .filter_map(Value::as_object_mut)
}

fn is_json_mime(mime: &str) -> bool {
    mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json"))
}

/// Where a multi-line text field of a notebook sits, for the two line conversions below.
enum TextField<'a> {
    Source,
    /// A value in a MIME bundle (attachments, `execute_result` or `display_data` data).
    Mime(&'a str),
    /// The `text` of an output of any other `output_type`.
    OutputText(&'a str),
}

/// Calls `visit` on every text field that nbformat stores as a string or a list of lines.
fn for_each_text_field(nb: &mut Value, mut visit: impl FnMut(TextField<'_>, &mut Value)) {
    fn visit_bundle(bundle: &mut Value, visit: &mut impl FnMut(TextField<'_>, &mut Value)) {
        if let Some(bundle) = bundle.as_object_mut() {
            for (mime, value) in bundle.iter_mut() {
                visit(TextField::Mime(mime), value);
            }
        }
    }
    for cell in cells_mut(nb) {
        if let Some(source) = cell.get_mut("source") {
            visit(TextField::Source, source);
        }
        if let Some(Value::Object(attachments)) = cell.get_mut("attachments") {
            for bundle in attachments.values_mut() {
                visit_bundle(bundle, &mut visit);
            }
        }
        if cell.get("cell_type").and_then(Value::as_str) != Some("code") {
            continue;
        }
        let Some(Value::Array(outputs)) = cell.get_mut("outputs") else {
            continue;
        };
        for output in outputs.iter_mut().filter_map(Value::as_object_mut) {
            let Some(output_type) = output.get("output_type").and_then(Value::as_str) else {
                continue;
            };
            if matches!(output_type, "execute_result" | "display_data") {
                if let Some(data) = output.get_mut("data") {
                    visit_bundle(data, &mut visit);
                }
            } else {
                let output_type = output_type.to_owned();
                if let Some(text) = output.get_mut("text") {
                    visit(TextField::OutputText(&output_type), text);
                }
            }
        }
    }
}

/// As nbformat reads: lists of lines become strings (sources, output text, non-JSON mime data).
pub(crate) fn rejoin_lines(nb: &mut Value) {
    for_each_text_field(nb, |field, value| {
        if matches!(field, TextField::Mime(mime) if is_json_mime(mime)) {
            return;
        }
        if let Value::Array(lines) = value {
            if lines.iter().all(Value::is_string) {
                let joined: String = lines.iter().filter_map(Value::as_str).collect();
                *value = Value::String(joined);
            }
        }
    });
}

/// As nbformat writes: multi-line strings become lists of lines (sources, stream text, and
/// text, JavaScript and SVG mime data).
pub(crate) fn split_lines(nb: &mut Value) {
    for_each_text_field(nb, |field, value| {
        let wanted = match field {
            TextField::Source => true,
            TextField::Mime(mime) => {
                mime.starts_with("text/")
                    || mime == "application/javascript"
                    || mime == "image/svg+xml"
            }
            TextField::OutputText(output_type) => output_type == "stream",
        };
        if let (true, Value::String(text)) = (wanted, &*value) {
            let lines = py_splitlines_keepends(text)
                .into_iter()
                .map(|line| Value::String(line.to_owned()))
                .collect();
            *value = Value::Array(lines);
        }
    });
}

/// Drops what nbformat never writes: `metadata.orig_nbformat*` and each cell's `trusted` mark.
pub(crate) fn strip_transient(nb: &mut Value) {
    if let Some(Value::Object(metadata)) = nb.get_mut("metadata") {
        metadata.remove("orig_nbformat");
        metadata.remove("orig_nbformat_minor");
    }
    for cell in cells_mut(nb) {
        if let Some(Value::Object(metadata)) = cell.get_mut("metadata") {
            metadata.remove("trusted");
        }
    }
}

/// Marks every code cell untrusted, as jupyter_server does for a notebook without a signature.
pub(crate) fn mark_untrusted(nb: &mut Value) {
    for cell in cells_mut(nb) {
        if cell.get("cell_type").and_then(Value::as_str) != Some("code") {
            continue;
        }
        if let Some(Value::Object(metadata)) = cell.get_mut("metadata") {
            metadata.insert("trusted".into(), Value::Bool(false));
        }
    }
}

/// The bytes nbformat writes for `nb` (a validated notebook as a client sends it).
pub(crate) fn to_disk_bytes(nb: &Value) -> Vec<u8> {
    let mut nb = nb.clone();
    strip_transient(&mut nb);
    split_lines(&mut nb);
    let mut out = String::with_capacity(4096);
    write_py_json(&mut out, &nb, 0);
    out.push('\n');
    out.into_bytes()
}

/// Python's `str.splitlines(keepends=True)`.
pub(crate) fn py_splitlines_keepends(s: &str) -> Vec<&str> {
    let mut lines = Vec::new();
    let mut start = 0;
    let mut chars = s.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        let end = match c {
            '\r' => match chars.peek() {
                Some(&(j, '\n')) => {
                    chars.next();
                    j + 1
                }
                _ => i + 1,
            },
            '\n' | '\x0b' | '\x0c' | '\x1c' | '\x1d' | '\x1e' | '\u{85}' | '\u{2028}'
            | '\u{2029}' => i + c.len_utf8(),
            _ => continue,
        };
        lines.push(&s[start..end]);
        start = end;
    }
    if start < s.len() {
        lines.push(&s[start..]);
    }
    lines
}

/// `json.dumps(v, sort_keys=True, indent=1, ensure_ascii=False)` at nesting `depth`.
fn write_py_json(out: &mut String, v: &Value, depth: usize) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                out.push_str(&i.to_string());
            } else if let Some(u) = n.as_u64() {
                out.push_str(&u.to_string());
            } else {
                out.push_str(&py_float_repr(n.as_f64().unwrap_or(0.0)));
            }
        }
        Value::String(s) => write_py_str(out, s),
        Value::Array(items) => {
            if items.is_empty() {
                out.push_str("[]");
                return;
            }
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                newline_indent(out, depth + 1);
                write_py_json(out, item, depth + 1);
            }
            newline_indent(out, depth);
            out.push(']');
        }
        Value::Object(map) => {
            if map.is_empty() {
                out.push_str("{}");
                return;
            }
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort_unstable();
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                newline_indent(out, depth + 1);
                write_py_str(out, key);
                out.push_str(": ");
                write_py_json(out, &map[key], depth + 1);
            }
            newline_indent(out, depth);
            out.push('}');
        }
    }
}

fn newline_indent(out: &mut String, depth: usize) {
    out.push('\n');
    out.extend(std::iter::repeat_n(' ', depth));
}

fn write_py_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\x08' => out.push_str("\\b"),
            '\x0c' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Python's `repr(float)`: the shortest round-trip digits, fixed notation for exponents -4..16.
pub(crate) fn py_float_repr(f: f64) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "Infinity" } else { "-Infinity" }.into();
    }
    let sci = format!("{f:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let (sign, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => ("-", m),
        None => ("", mantissa),
    };
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let mut out = String::from(sign);
    if !(-4..16).contains(&exp) {
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        out.push_str(&format!(
            "e{}{:02}",
            if exp < 0 { '-' } else { '+' },
            exp.abs()
        ));
    } else if exp >= 0 {
        let int_len = exp as usize + 1;
        if digits.len() <= int_len {
            out.push_str(&digits);
            out.extend(std::iter::repeat_n('0', int_len - digits.len()));
            out.push_str(".0");
        } else {
            out.push_str(&digits[..int_len]);
            out.push('.');
            out.push_str(&digits[int_len..]);
        }
    } else {
        out.push_str("0.");
        out.extend(std::iter::repeat_n('0', (-exp - 1) as usize));
        out.push_str(&digits);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOLDEN_INPUT: &str = r##"{"cells":[{"cell_type":"code","execution_count":1,"id":"a1","metadata":{"trusted":true,"z":1,"a":[]},"outputs":[{"name":"stdout","output_type":"stream","text":"hi\nthere\r\nx\u000by\u2028z"},{"data":{"text/plain":"1\n2","image/png":"QUJD\nREVG\n","application/json":{"b":1,"a":[1.5,1e-05,1e16,123456789012345678,0.1,-0.0,1e22,2.5e-300]},"image/svg+xml":"<svg>\n</svg>","application/javascript":"a\nb"},"execution_count":1,"metadata":{},"output_type":"execute_result"}],"source":"print(\"hi\")\n\u00e9\u4e2d\t\u0001\n"},{"cell_type":"markdown","id":"b2","metadata":{},"source":"# T\n","attachments":{"x.png":{"image/png":"AAA\nBBB","text/plain":"a\nb"}}}],"metadata":{"orig_nbformat":3,"kernelspec":{"name":"python3"}},"nbformat":4,"nbformat_minor":5}"##;

    /// Written by `nbformat.write(nbformat.from_dict(GOLDEN_INPUT), version=NO_CONVERT)`.
    const GOLDEN_OUTPUT: &str = include_str!("golden.ipynb");

    #[test]
    fn writes_what_nbformat_writes() {
        let nb: Value = serde_json::from_str(GOLDEN_INPUT).unwrap();
        validate(&nb).unwrap();
        let bytes = to_disk_bytes(&nb);
        assert_eq!(String::from_utf8(bytes).unwrap(), GOLDEN_OUTPUT);
    }

    #[test]
    fn canonical_file_round_trips_byte_exact() {
        let mut nb: Value = serde_json::from_str(GOLDEN_OUTPUT).unwrap();
        rejoin_lines(&mut nb);
        mark_untrusted(&mut nb);
        assert_eq!(
            nb["cells"][0]["source"],
            "print(\"hi\")\n\u{e9}\u{4e2d}\t\u{1}\n"
        );
        assert_eq!(nb["cells"][0]["metadata"]["trusted"], false);
        // The JSON mime bundle stays an object, the PNG stays one string.
        assert!(nb["cells"][0]["outputs"][1]["data"]["application/json"].is_object());
        assert_eq!(
            String::from_utf8(to_disk_bytes(&nb)).unwrap(),
            GOLDEN_OUTPUT
        );
    }

    #[test]
    fn floats_print_as_python_repr() {
        for (f, s) in [
            (1.0, "1.0"),
            (1.5, "1.5"),
            (1e-4, "0.0001"),
            (1e-5, "1e-05"),
            (1e15, "1000000000000000.0"),
            (1e16, "1e+16"),
            (0.1, "0.1"),
            (-0.0, "-0.0"),
            (123.456, "123.456"),
            (2.5e-300, "2.5e-300"),
            (1.2345678901234567e20, "1.2345678901234567e+20"),
        ] {
            assert_eq!(py_float_repr(f), s, "{f}");
        }
    }

    #[test]
    fn splitlines_matches_python() {
        assert_eq!(py_splitlines_keepends(""), Vec::<&str>::new());
        assert_eq!(
            py_splitlines_keepends("a\r\nb\rc\n"),
            vec!["a\r\n", "b\r", "c\n"]
        );
        assert_eq!(py_splitlines_keepends("a\u{2028}b"), vec!["a\u{2028}", "b"]);
    }

    fn nb(cells: Value) -> Value {
        serde_json::json!({"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5})
    }

    #[test]
    fn validation_names_the_problem() {
        let cases = [
            (serde_json::json!([]), "not a JSON object"),
            (
                serde_json::json!({"cells": [], "metadata": {}, "nbformat": 3, "nbformat_minor": 0}),
                "nbformat must be 4",
            ),
            (
                serde_json::json!({"cells": [], "metadata": {}, "nbformat": 4}),
                "'nbformat_minor' is a required property",
            ),
            (
                serde_json::json!({"cells": {}, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}),
                "cells must be an array",
            ),
            (
                serde_json::json!({"cells": [], "metadata": [], "nbformat": 4, "nbformat_minor": 5}),
                "metadata must be an object",
            ),
            (
                nb(serde_json::json!([{"cell_type": "heading", "metadata": {}, "source": ""}])),
                "cells[0]: cell_type 'heading'",
            ),
            (
                nb(serde_json::json!([{"cell_type": "markdown", "metadata": {}}])),
                "cells[0]: 'source'",
            ),
            (
                nb(serde_json::json!([{"cell_type": "raw", "source": ""}])),
                "cells[0]: 'metadata'",
            ),
            (
                nb(
                    serde_json::json!([{"cell_type": "code", "metadata": {}, "source": "", "execution_count": null}]),
                ),
                "cells[0]: 'outputs'",
            ),
            (
                nb(
                    serde_json::json!([{"cell_type": "code", "metadata": {}, "source": "", "execution_count": null,
                    "outputs": [{"output_type": "bogus"}]}]),
                ),
                "cells[0]: outputs[0]: output_type 'bogus'",
            ),
            (
                nb(
                    serde_json::json!([{"cell_type": "code", "metadata": {}, "source": "", "execution_count": null,
                    "outputs": [{"output_type": "stream", "name": "stdout", "text": 5}]}]),
                ),
                "outputs[0]: 'text'",
            ),
        ];
        for (notebook, expected) in cases {
            let err = validate(&notebook).unwrap_err();
            assert!(err.contains(expected), "{err} should contain {expected}");
        }
        let good = nb(serde_json::json!([
            {"cell_type": "code", "metadata": {}, "source": ["a\n", "b"], "execution_count": 3, "outputs": [
                {"output_type": "error", "ename": "E", "evalue": "v", "traceback": []},
                {"output_type": "display_data", "data": {}, "metadata": {}}
            ]},
            {"cell_type": "markdown", "metadata": {}, "source": "", "id": "x-1"}
        ]));
        validate(&good).unwrap();
    }
}
