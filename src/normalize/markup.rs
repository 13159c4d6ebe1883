//! CT.gov's two markups of the same text: API v2 gives Markdown (`* item`, `1. item`, `\<`
//! escapes), the record-history endpoints give the website's HTML (`<p>`, `<ol><li>`, `&#x2F;`,
//! sometimes escaped twice). This file turns a history body's HTML into the Markdown form API v2
//! uses, and gives a markup-blind key for comparing two texts across the sources.
//!
//! Pure. It does not decide which fields hold markup (the history reader does) nor how a text
//! change is shown (`crate::render`).
//!
//! Written by hand rather than with an HTML-to-Markdown crate: those produce their own Markdown
//! dialect (`-` bullets, other escapes, other list indentation), while a backfilled version must
//! read exactly like CT.gov's API v2 text so that an unchanged field compares equal. The HTML
//! CT.gov emits here is a handful of block tags without attributes that matter, so a small
//! tokenizer covers it; entities are decoded by the `html-escape` crate.

use std::borrow::Cow;

/// How many rounds of entity decoding a text gets: CT.gov sometimes escapes twice
/// (`&amp;#x2F;`), never (as far as seen) three times; the bound keeps a hostile body cheap.
const MAX_DECODE_ROUNDS: usize = 3;

/// Nesting deeper than this is flattened: real criteria nest two or three levels, and the bound
/// keeps recursion (and the output's indentation) finite for any input.
const MAX_DEPTH: usize = 16;

/// HTML entities decoded, repeatedly while a round still changes something (double escaping).
pub fn decode_entities(s: &str) -> Cow<'_, str> {
    if !s.contains('&') {
        return Cow::Borrowed(s);
    }
    let mut cur = s.to_string();
    for _ in 0..MAX_DECODE_ROUNDS {
        let next = html_escape::decode_html_entities(&cur).into_owned();
        if next == cur {
            break;
        }
        cur = next;
    }
    Cow::Owned(cur)
}

/// One piece of the HTML: a tag (name lower-cased, closing or not) or text between tags.
#[derive(Debug, Clone, PartialEq)]
enum Token<'a> {
    Open(String),
    Close(String),
    Text(&'a str),
}

/// Splits HTML into tags and text. A `<` that does not start a tag (`a < b`) stays text.
fn tokenize(html: &str) -> Vec<Token<'_>> {
    let mut out = Vec::new();
    let bytes = html.as_bytes();
    let mut text_start = 0;
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'<' {
            let rest = &html[i + 1..];
            let closing = rest.starts_with('/');
            let name_start = if closing { 1 } else { 0 };
            let name: String = rest[name_start..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric())
                .collect();
            if let (false, Some(end)) = (name.is_empty(), rest.find('>')) {
                if text_start < i {
                    out.push(Token::Text(&html[text_start..i]));
                }
                let name = name.to_ascii_lowercase();
                let self_closing = rest[..end].ends_with('/');
                if closing {
                    out.push(Token::Close(name));
                } else {
                    out.push(Token::Open(name.clone()));
                    if self_closing && name != "br" {
                        out.push(Token::Close(name));
                    }
                }
                i += 1 + end + 1;
                text_start = i;
                continue;
            }
        }
        i += 1;
    }
    if text_start < bytes.len() {
        out.push(Token::Text(&html[text_start..]));
    }
    out
}

/// A block of the text: a paragraph, or a list whose items hold blocks.
#[derive(Debug, Clone, PartialEq)]
enum Block {
    Para(String),
    List {
        ordered: bool,
        items: Vec<Vec<Block>>,
    },
}

/// Reads blocks until the closing tag `until` (or the end), from `tokens[*pos..]`.
fn blocks(tokens: &[Token<'_>], pos: &mut usize, until: Option<&str>, depth: usize) -> Vec<Block> {
    let mut out = Vec::new();
    let mut para = String::new();
    let flush = |para: &mut String, out: &mut Vec<Block>| {
        let t = para.trim_matches(|c: char| c == ' ' || c == '\n' || c == '\t');
        if !t.is_empty() {
            out.push(Block::Para(t.to_string()));
        }
        para.clear();
    };
    while *pos < tokens.len() {
        let tok = &tokens[*pos];
        *pos += 1;
        match tok {
            Token::Text(t) => para.push_str(&escape_markdown(&decode_entities(t))),
            Token::Open(name) => match name.as_str() {
                "br" => para.push('\n'),
                "p" | "div" | "h1" | "h2" | "h3" | "h4" | "h5" | "h6" => flush(&mut para, &mut out),
                // Past the depth bound a list's items read as paragraphs (no recursion).
                "ul" | "ol" if depth >= MAX_DEPTH => flush(&mut para, &mut out),
                "ul" | "ol" => {
                    flush(&mut para, &mut out);
                    let ordered = name == "ol";
                    let items = list_items(tokens, pos, name, depth + 1);
                    if !items.is_empty() {
                        out.push(Block::List { ordered, items });
                    }
                }
                // A stray item outside a list reads as a paragraph of its own.
                "li" => flush(&mut para, &mut out),
                _ => {}
            },
            Token::Close(name) => {
                if until == Some(name.as_str()) {
                    break;
                }
                match name.as_str() {
                    "p" | "div" | "li" | "h1" | "h2" | "h3" | "h4" | "h5" | "h6" => {
                        flush(&mut para, &mut out)
                    }
                    _ => {}
                }
            }
        }
    }
    flush(&mut para, &mut out);
    out
}

/// The items of a list opened by `<ul>` or `<ol>` (`list` names which), up to its closing tag.
fn list_items(tokens: &[Token<'_>], pos: &mut usize, list: &str, depth: usize) -> Vec<Vec<Block>> {
    let mut items = Vec::new();
    while *pos < tokens.len() {
        match &tokens[*pos] {
            Token::Open(n) if n == "li" => {
                *pos += 1;
                let item = blocks(tokens, pos, Some("li"), depth);
                if !item.is_empty() {
                    items.push(item);
                }
            }
            Token::Close(n) if n == list => {
                *pos += 1;
                break;
            }
            // Text or tags between items (white space, mostly): read as an item of their own.
            _ => {
                let item = blocks(tokens, pos, Some("li"), depth);
                if !item.is_empty() {
                    items.push(item);
                }
            }
        }
    }
    items
}

/// The characters CT.gov's Markdown escapes in running text.
fn escape_markdown(s: &str) -> Cow<'_, str> {
    if !s.contains(['<', '>', '[', ']', '&', '*']) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if matches!(c, '<' | '>' | '[' | ']' | '&' | '*') {
            out.push('\\');
        }
        out.push(c);
    }
    Cow::Owned(out)
}

/// Writes blocks as CT.gov's Markdown: blocks apart by a blank line; list items one a line,
/// `* ` or `1. `; an item's later blocks after a blank line, indented by its marker's width.
fn write_blocks(blocks: &[Block], indent: usize, out: &mut String) {
    for (n, block) in blocks.iter().enumerate() {
        if n > 0 {
            out.push_str("\n\n");
            push_indent(out, indent);
        }
        match block {
            Block::Para(text) => out.push_str(text),
            Block::List { ordered, items } => {
                for (k, item) in items.iter().enumerate() {
                    if k > 0 {
                        out.push('\n');
                        push_indent(out, indent);
                    }
                    let marker = if *ordered {
                        format!("{}. ", k + 1)
                    } else {
                        "* ".to_string()
                    };
                    out.push_str(&marker);
                    write_blocks(item, indent + marker.len(), out);
                }
            }
        }
    }
}

fn push_indent(out: &mut String, n: usize) {
    out.extend(std::iter::repeat_n(' ', n));
}

/// A history body's HTML text as API v2 would give it in Markdown. Text without tags only has
/// its entities decoded and its Markdown specials escaped.
pub fn html_to_markdown(html: &str) -> String {
    let tokens = tokenize(html);
    let mut pos = 0;
    let blocks = blocks(&tokens, &mut pos, None, 0);
    let mut out = String::new();
    write_blocks(&blocks, 0, &mut out);
    out
}

/// A key that two renderings of the same text share whatever their markup: entities decoded,
/// tags dropped, Markdown escapes, list markers and emphasis removed, white space collapsed.
/// Two texts with equal keys say the same thing.
pub fn markup_key(s: &str) -> String {
    let decoded = decode_entities(s);
    let mut plain = String::with_capacity(decoded.len());
    for tok in tokenize(&decoded) {
        match tok {
            Token::Text(t) => plain.push_str(t),
            _ => plain.push(' '),
        }
    }
    let mut out = String::with_capacity(plain.len());
    for line in plain.lines() {
        let mut l = line.trim_start();
        // List markers: `* `, `- `, `+ `, `12. `
        if let Some(rest) = l
            .strip_prefix(['*', '-', '+'])
            .filter(|r| r.starts_with(' '))
        {
            l = rest;
        } else {
            let digits = l.chars().take_while(|c| c.is_ascii_digit()).count();
            if digits > 0 && l[digits..].starts_with(". ") {
                l = &l[digits + 2..];
            }
        }
        let mut chars = l.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '\\' if chars.peek().is_some_and(|n| n.is_ascii_punctuation()) => {}
                '*' | '_' if chars.peek() == Some(&c) => {
                    chars.next();
                }
                c if c.is_whitespace() => {
                    if !out.ends_with(' ') && !out.is_empty() {
                        out.push(' ');
                    }
                }
                c => out.push(c),
            }
        }
        if !out.ends_with(' ') && !out.is_empty() {
            out.push(' ');
        }
    }
    out.trim_end().to_string()
}

/// Whether two values of a record say the same whatever markup their texts carry: texts
/// compare by [`markup_key`], lists and objects item by item. Used where one side came from
/// CT.gov's history (HTML) and the other from API v2 (Markdown).
pub fn same_ignoring_markup(a: &serde_json::Value, b: &serde_json::Value) -> bool {
    use serde_json::Value;
    match (a, b) {
        (Value::String(x), Value::String(y)) => x == y || markup_key(x) == markup_key(y),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| same_ignoring_markup(p, q))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| same_ignoring_markup(v, w)))
        }
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entities_are_decoded_even_when_escaped_twice() {
        assert_eq!(decode_entities("a &#x2F; b &amp;#x2F; c"), "a / b / c");
        assert_eq!(decode_entities("&lt;&gt;&amp;&#39;"), "<>&'");
        assert_eq!(decode_entities("no entities"), "no entities");
    }

    #[test]
    fn the_real_history_markup_becomes_ctgov_markdown() {
        let html = "<p>Inclusion Criteria:</p><ol><li>Adult &gt;&#x2F;=18 years.</li><li><p>Illness, and one of:</p><ul><li>Infiltrates, OR</li><li>SpO2 &lt;&#x2F;= 94%</li></ul></li><li>Consent.</li></ol><p>Exclusion Criteria:</p><ol><li>ALT&#x2F;AST &gt; 5 times.</li></ol>";
        assert_eq!(
            html_to_markdown(html),
            "Inclusion Criteria:\n\n1. Adult \\>/=18 years.\n2. Illness, and one of:\n\n   * Infiltrates, OR\n   * SpO2 \\</= 94%\n3. Consent.\n\nExclusion Criteria:\n\n1. ALT/AST \\> 5 times."
        );
    }

    #[test]
    fn plain_text_keeps_its_line_breaks() {
        assert_eq!(
            html_to_markdown("First line.\nSecond &#39;quoted&#39; line."),
            "First line.\nSecond 'quoted' line."
        );
        assert_eq!(html_to_markdown("a<br>b<br/>c"), "a\nb\nc");
        assert_eq!(html_to_markdown("x < y and [ref]"), "x \\< y and \\[ref\\]");
    }

    #[test]
    fn markup_keys_ignore_how_a_text_is_marked_up() {
        let md = "Inclusion Criteria:\n\n* Age \\>18\n* Consent";
        let html = "<p>Inclusion Criteria:</p><ul><li>Age &gt;18</li><li>Consent</li></ul>";
        assert_eq!(markup_key(md), markup_key(html));
        assert_eq!(markup_key(md), "Inclusion Criteria: Age >18 Consent");
        assert_ne!(
            markup_key(md),
            markup_key("Inclusion Criteria:\n\n* Age \\>21\n* Consent")
        );
    }

    #[test]
    fn values_compare_across_markups() {
        use serde_json::json;
        let md = json!({"a": "x \\> y", "b": [{"d": "* one"}]});
        let html = json!({"a": "x &gt; y", "b": [{"d": "<ul><li>one</li></ul>"}]});
        assert!(same_ignoring_markup(&md, &html));
        assert!(!same_ignoring_markup(
            &md,
            &json!({"a": "x > z", "b": [{"d": "one"}]})
        ));
        assert!(!same_ignoring_markup(&json!([1, 2]), &json!([1])));
    }

    #[test]
    fn hostile_markup_is_bounded() {
        let deep = "<ul><li>".repeat(10_000) + "x";
        let md = html_to_markdown(&deep);
        assert!(md.ends_with('x'));
        assert!(md.len() < 10_000);
        assert_eq!(html_to_markdown("<<<>>>&&;;"), "\\<\\<\\<\\>\\>\\>\\&\\&;;");
    }
}
