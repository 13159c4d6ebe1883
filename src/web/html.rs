//! HTML building blocks of the web view: escaping, the mirror page's Markdown as HTML (with any
//! HTML inside it shown as text), a field value, and the word-marked diff of long texts (from
//! the one line-and-word diff, [`crate::render::textdiff`]). Pure.

use pulldown_cmark::{Event, Options, Parser};
use serde_json::Value;

use crate::render::textdiff::{LineKind, line_diff};

/// Escape text for HTML content and double-quoted attributes.
pub fn esc(s: &str) -> String {
    html_escape::encode_double_quoted_attribute(s)
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('\'', "&#39;")
}

/// Markdown to HTML. Raw HTML blocks and inline HTML (CT.gov texts may hold `<script>`) become
/// escaped text, so nothing in a record can run in the page.
pub fn markdown_html(md: &str) -> String {
    // The front matter is data for static-site tools, not for the page.
    let body = md
        .strip_prefix("---\n")
        .and_then(|rest| rest.split_once("\n---\n").map(|(_, b)| b))
        .unwrap_or(md);
    let parser = Parser::new_ext(body, Options::ENABLE_TABLES).map(|e| match e {
        Event::Html(h) | Event::InlineHtml(h) => Event::Text(h),
        other => other,
    });
    let mut out = String::new();
    pulldown_cmark::html::push_html(&mut out, parser);
    out
}

/// A field value as one escaped line (strings as they are, the rest as JSON).
pub fn value_text(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => "—".into(),
        Some(Value::String(s)) => esc(s),
        Some(other) => esc(&other.to_string()),
    }
}

/// Texts this long (or spanning lines) get a word-marked diff instead of old → new.
const LONG_TEXT: usize = 80;

/// One change's old and new values: a word-marked line diff for long texts, else both values.
pub fn change_values(old: Option<&Value>, new: Option<&Value>) -> String {
    if let (Some(Value::String(o)), Some(Value::String(n))) = (old, new)
        && (o.len() > LONG_TEXT || n.len() > LONG_TEXT || o.contains('\n') || n.contains('\n'))
    {
        let d = line_diff(o, n);
        let mut s = String::from("<pre class=\"textdiff\">");
        for (i, h) in d.hunks.iter().enumerate() {
            if i > 0 {
                s.push_str("<span class=\"gap\">…</span>\n");
            }
            for l in &h.lines {
                let (class, sign, mark) = match l.kind {
                    LineKind::Context => ("ctx", "  ", "span"),
                    LineKind::Removed => ("del", "- ", "del"),
                    LineKind::Added => ("ins", "+ ", "ins"),
                };
                s.push_str(&format!("<span class=\"{class}\">{sign}"));
                for seg in &l.segments {
                    if seg.changed {
                        s.push_str(&format!("<{mark}>{}</{mark}>", esc(seg.text)));
                    } else {
                        s.push_str(&esc(seg.text));
                    }
                }
                s.push_str("</span>\n");
            }
        }
        s.push_str("</pre>");
        return s;
    }
    format!(
        "<span class=\"old\">{}</span> → <span class=\"new\">{}</span>",
        value_text(old),
        value_text(new)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn html_in_markdown_is_shown_as_text() {
        let h =
            markdown_html("---\ntitle: x\n---\n# <script>alert(1)</script>\n\n<b>bold</b> text\n");
        assert!(!h.contains("<script>") && !h.contains("<b>"), "{h}");
        assert!(h.contains("&lt;script&gt;"), "{h}");
        assert!(!h.contains("title: x"), "{h}");
    }

    #[test]
    fn long_texts_get_word_marks() {
        let old = json!(
            "Adults aged 18 or older with confirmed diagnosis of the disease and no prior therapy at all"
        );
        let new = json!(
            "Adults aged 21 or older with confirmed diagnosis of the disease and no prior therapy at all"
        );
        let h = change_values(Some(&old), Some(&new));
        assert!(
            h.contains("<del>18</del>") && h.contains("<ins>21</ins>"),
            "{h}"
        );
        let short = change_values(Some(&json!("<i>a")), Some(&json!("b")));
        assert_eq!(
            short,
            "<span class=\"old\">&lt;i&gt;a</span> → <span class=\"new\">b</span>"
        );
    }
}
