//! Renders the front ends' index templates. They use a handful of Jinja constructs: comments,
//! `{% set _ = page_config_full.update(k=v) %}`, `{% block %}`, `{% if custom_css %}`, and
//! `{{ expr }}` for the base URL, the page config and its fields. Anything else is an error,
//! so a changed template is noticed rather than half-rendered.

use serde_json::{Map, Value};

pub(crate) struct Context<'a> {
    pub base_url: &'a str,
    pub ws_url: &'a str,
    pub page_config: &'a Map<String, Value>,
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&#34;")
        .replace('\'', "&#39;")
}

/// JSON safe to embed in a `<script>` element, as Jinja's `tojson` writes it.
fn script_json(value: &Value) -> String {
    value
        .to_string()
        .replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
        .replace('\'', "\\u0027")
}

pub(crate) fn render(template: &str, ctx: &Context<'_>) -> Result<String, String> {
    let mut out = String::with_capacity(template.len() + 4096);
    let mut full = ctx.page_config.clone();
    let mut rest = template;
    let mut skipping = false;
    while let Some(start) = rest.find(['{']) {
        let (before, tail) = rest.split_at(start);
        if !skipping {
            out.push_str(before);
        }
        let close = match tail.get(..2) {
            Some("{#") => "#}",
            Some("{%") => "%}",
            Some("{{") => "}}",
            _ => {
                if !skipping {
                    out.push('{');
                }
                rest = &tail[1..];
                continue;
            }
        };
        let end = tail
            .find(close)
            .ok_or_else(|| format!("unclosed {close} in template"))?;
        let inner = tail[2..end].trim();
        rest = &tail[end + 2..];
        match close {
            "#}" => {}
            "%}" => {
                let words: Vec<&str> = inner.split_whitespace().collect();
                match words.as_slice() {
                    ["if", "custom_css"] => skipping = true,
                    ["endif"] => skipping = false,
                    ["block", ..] | ["endblock", ..] => {}
                    ["set", "page_config_full", "=", "page_config.copy()"] => {}
                    _ if inner.starts_with("set _ = page_config_full.update(") => {
                        let args = inner
                            .trim_start_matches("set _ = page_config_full.update(")
                            .trim_end_matches(')');
                        for arg in args.split(',') {
                            let (k, v) = arg
                                .split_once('=')
                                .ok_or_else(|| format!("unsupported update argument {arg}"))?;
                            let v = v.trim();
                            let value = match v {
                                "base_url" => ctx.base_url.to_owned(),
                                "ws_url" => ctx.ws_url.to_owned(),
                                _ if v.len() >= 2
                                    && (v.starts_with('\'') || v.starts_with('"')) =>
                                {
                                    v[1..v.len() - 1].to_owned()
                                }
                                _ => return Err(format!("unsupported value {v}")),
                            };
                            full.insert(k.trim().to_owned(), Value::String(value));
                        }
                    }
                    _ => return Err(format!("unsupported tag {{% {inner} %}}")),
                }
            }
            _ => {
                if skipping {
                    continue;
                }
                let (expr, filter) = match inner.split_once('|') {
                    Some((e, f)) => (e.trim(), f.trim()),
                    None => (inner, ""),
                };
                let text = match expr {
                    "page_config_full" if filter == "tojson" => {
                        script_json(&Value::Object(full.clone()))
                    }
                    "base_url" => html_escape(ctx.base_url),
                    _ => {
                        let key = expr
                            .strip_prefix("page_config.")
                            .or_else(|| {
                                expr.strip_prefix("page_config['")
                                    .and_then(|k| k.strip_suffix("']"))
                            })
                            .ok_or_else(|| format!("unsupported expression {{{{ {inner} }}}}"))?;
                        let value = match ctx.page_config.get(key) {
                            Some(Value::String(s)) => s.clone(),
                            Some(v) => v.to_string(),
                            None => String::new(),
                        };
                        html_escape(&value)
                    }
                };
                out.push_str(&text);
            }
        }
    }
    if !skipping {
        out.push_str(rest);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_the_constructs_the_templates_use() {
        let mut config = Map::new();
        config.insert("fullStaticUrl".into(), "/static/lab".into());
        config.insert("appName".into(), "A<b>".into());
        let tpl = "{# c #}{% set page_config_full = page_config.copy() %} {% set _ = page_config_full.update(baseUrl=base_url, wsUrl=ws_url) %}{% set _ = page_config_full.update(notebookPage='tree') %}<s>{{ page_config_full | tojson }}</s>{% block favicon %}<l href=\"{{ base_url | escape }}x\">{% endblock %}{% if custom_css %}CSS{% endif %}<m src=\"{{page_config.fullStaticUrl}}/m.js\"><t>{{page_config['appName'] | e}}</t>function(){}";
        let out = render(
            tpl,
            &Context {
                base_url: "/b/",
                ws_url: "",
                page_config: &config,
            },
        )
        .unwrap();
        assert!(out.contains("\"notebookPage\":\"tree\""), "{out}");
        assert!(out.contains("\"baseUrl\":\"/b/\""));
        assert!(out.contains("A\\u003cb\\u003e"));
        assert!(out.contains("<l href=\"/b/x\">"));
        assert!(!out.contains("CSS"));
        assert!(out.contains("<m src=\"/static/lab/m.js\">"));
        assert!(out.contains("<t>A&lt;b&gt;</t>"));
        assert!(out.ends_with("function(){}"));
    }
}
