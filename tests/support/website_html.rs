//! CT.gov's website rendering of a Markdown text, as the record-history endpoints serve it:
//! paragraphs in `<p>` (a text of one paragraph is left bare), `* ` and `1. ` lists as
//! `<ul>`/`<ol>` with nested lists inside their item, line breaks kept, and every text
//! HTML-escaped the way the real bodies are (`&#x2F;`, `&#39;`, `&lt;`, `&gt;`, `&amp;`),
//! optionally escaped a second time (`&amp;#x2F;`), as CT.gov sometimes does.
//!
//! Test support only: it lets a test serve real API v2 fixtures as history versions, so that
//! trialwatch's HTML reader is checked against every real text rather than a few samples.

/// One line of Markdown, classified.
enum Line<'a> {
    Blank,
    /// A list item: its indentation, whether it is numbered, the marker's width, its text.
    Item {
        indent: usize,
        ordered: bool,
        width: usize,
        text: &'a str,
    },
    Text {
        indent: usize,
        text: &'a str,
    },
}

fn classify(line: &str) -> Line<'_> {
    let trimmed = line.trim_start();
    if trimmed.is_empty() {
        return Line::Blank;
    }
    let indent = line.len() - trimmed.len();
    if let Some(rest) = trimmed.strip_prefix("* ") {
        return Line::Item {
            indent,
            ordered: false,
            width: 2,
            text: rest,
        };
    }
    let digits = trimmed.bytes().take_while(u8::is_ascii_digit).count();
    if digits > 0 && trimmed[digits..].starts_with(". ") {
        return Line::Item {
            indent,
            ordered: true,
            width: digits + 2,
            text: &trimmed[digits + 2..],
        };
    }
    Line::Text {
        indent,
        text: trimmed,
    }
}

/// Renders `lines` (all indented at least `base`) as HTML blocks.
fn render_blocks(lines: &[&str], base: usize, out: &mut Vec<String>) {
    let mut i = 0;
    while i < lines.len() {
        match classify(lines[i]) {
            Line::Blank => i += 1,
            Line::Text { .. } => {
                let mut para = Vec::new();
                while i < lines.len() {
                    match classify(lines[i]) {
                        Line::Text { text, .. } => para.push(text),
                        _ => break,
                    }
                    i += 1;
                }
                out.push(format!("<p>{}</p>", inline(&para.join("\n"))));
            }
            Line::Item {
                indent, ordered, ..
            } => {
                let tag = if ordered { "ol" } else { "ul" };
                let mut html = format!("<{tag}>");
                while i < lines.len() {
                    let (width, text) = match classify(lines[i]) {
                        Line::Item {
                            indent: ind,
                            ordered: o,
                            width,
                            text,
                        } if ind == indent && o == ordered => (width, text),
                        Line::Blank => {
                            // A blank line ends the list unless the next line continues it.
                            match lines.get(i + 1).map(|l| classify(l)) {
                                Some(Line::Item { indent: ind, .. }) if ind > indent => {
                                    i += 1;
                                    continue;
                                }
                                Some(Line::Item {
                                    indent: ind,
                                    ordered: o,
                                    ..
                                }) if ind == indent && o == ordered => {
                                    i += 1;
                                    continue;
                                }
                                _ => break,
                            }
                        }
                        _ => break,
                    };
                    i += 1;
                    // The item's own text: its first line and the plain lines right after it.
                    let mut first = vec![text];
                    while i < lines.len() {
                        match classify(lines[i]) {
                            Line::Text { indent: ind, text } if ind <= indent + width => {
                                first.push(text)
                            }
                            _ => break,
                        }
                        i += 1;
                    }
                    // What is indented under the item belongs to it.
                    let start = i;
                    while i < lines.len() {
                        match classify(lines[i]) {
                            Line::Blank => {
                                let next_inside = lines[i + 1..]
                                    .iter()
                                    .find(|l| !l.trim().is_empty())
                                    .is_some_and(|l| {
                                        l.len() - l.trim_start().len() >= indent + width
                                    });
                                if !next_inside {
                                    break;
                                }
                            }
                            Line::Item { indent: ind, .. } | Line::Text { indent: ind, .. }
                                if ind >= indent + width => {}
                            _ => break,
                        }
                        i += 1;
                    }
                    let mut inner = Vec::new();
                    render_blocks(&lines[start..i], indent + width, &mut inner);
                    if inner.is_empty() {
                        html.push_str(&format!("<li>{}</li>", inline(&first.join("\n"))));
                    } else {
                        html.push_str(&format!(
                            "<li><p>{}</p>{}</li>",
                            inline(&first.join("\n")),
                            inner.concat()
                        ));
                    }
                }
                html.push_str(&format!("</{tag}>"));
                out.push(html);
            }
        }
        let _ = base;
    }
}

/// Markdown escapes undone, then HTML-escaped as the website does.
fn inline(md: &str) -> String {
    let mut plain = String::with_capacity(md.len());
    let mut chars = md.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\\' && chars.peek().is_some_and(|n| n.is_ascii_punctuation()) {
            continue;
        }
        plain.push(c);
    }
    let mut out = String::with_capacity(plain.len() + 16);
    for c in plain.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\'' => out.push_str("&#39;"),
            '"' => out.push_str("&quot;"),
            '/' => out.push_str("&#x2F;"),
            c => out.push(c),
        }
    }
    out
}

/// The website's HTML for a Markdown text; `double` escapes every entity a second time.
pub fn website_html(md: &str, double: bool) -> String {
    let lines: Vec<&str> = md.lines().collect();
    let mut blocks = Vec::new();
    render_blocks(&lines, 0, &mut blocks);
    let html = match blocks.as_slice() {
        [one] if one.starts_with("<p>") && !one[3..].contains("<p>") => one
            .trim_start_matches("<p>")
            .trim_end_matches("</p>")
            .to_string(),
        _ => blocks.concat(),
    };
    if double {
        html.replace('&', "&amp;")
    } else {
        html
    }
}

/// Keys whose value is CT.gov markup wherever they appear (CT.gov's field metadata marks them
/// `MARKUP`). Kept here independently of trialwatch's own list, so that a key trialwatch misses
/// shows up as a difference in the round-trip test.
const MARKUP_KEYS: &[&str] = &[
    "whyStopped",
    "briefSummary",
    "detailedDescription",
    "interventionModelDescription",
    "maskingDescription",
    "eligibilityCriteria",
    "genderDescription",
    "studyPopulation",
    "accessCriteria",
];

/// Keys that are markup only inside one parent (an arm's `description`, not a `timeFrame`).
const MARKUP_IN: &[(&str, &str)] = &[
    ("bioSpec", "description"),
    ("armGroups", "description"),
    ("interventions", "description"),
    ("primaryOutcomes", "description"),
    ("secondaryOutcomes", "description"),
    ("otherOutcomes", "description"),
    ("seeAlsoLinks", "label"),
    ("availIpds", "comment"),
    ("ipdSharingStatementModule", "description"),
    ("ipdSharingStatementModule", "timeFrame"),
];

/// A plain (non-markup) text as the history endpoints escape it.
pub fn escape_text(s: &str, double: bool) -> String {
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\'' => out.push_str("&#39;"),
            '/' => out.push_str("&#x2F;"),
            c => out.push(c),
        }
    }
    if double {
        out.replace('&', "&amp;")
    } else {
        out
    }
}

fn to_website(v: &mut serde_json::Value, parent: &str, key: &str, double: bool) {
    use serde_json::Value;
    match v {
        Value::String(s) => {
            let markup = MARKUP_KEYS.contains(&key) || MARKUP_IN.contains(&(parent, key));
            *s = if markup {
                website_html(s, double)
            } else {
                escape_text(s, double)
            };
        }
        Value::Array(items) => {
            for item in items {
                to_website(item, key, key, double);
            }
        }
        Value::Object(map) => {
            for (k, item) in map.iter_mut() {
                to_website(item, key, k, double);
            }
        }
        _ => {}
    }
}

/// A real API v2 study (JSON text) as the record history serves it: every markup field rendered
/// as the website's HTML, every other text HTML-escaped, `derivedSection` dropped. `double`
/// escapes every entity twice, as CT.gov sometimes does.
pub fn history_study(api_v2: &str, double: bool) -> String {
    let mut v: serde_json::Value = serde_json::from_str(api_v2).expect("history_study: not JSON");
    let map = v
        .as_object_mut()
        .expect("history_study: not a study object");
    map.remove("derivedSection");
    to_website(&mut v, "", "", double);
    serde_json::to_string(&v).unwrap()
}

/// [`history_study`] wrapped as a history version body: `{"studyVersion":v,"study":{…}}`.
pub fn history_body(version: u32, api_v2: &str, double: bool) -> String {
    format!(
        "{{\"studyVersion\":{version},\"study\":{}}}",
        history_study(api_v2, double)
    )
}
