//! The Markdown mirror page of one trial (`docs/record.md` §7), byte for byte in the format of
//! `tests/fixtures/mirror/NCT02985775.md`: YAML front matter, the study's sections, its recent
//! watched-field changes and a footer. Pure: the caller passes the clock (`now`) and the
//! configuration ([`PageOptions`]).
//!
//! Owns: the page layout, YAML scalar quoting, and which version changes count as "recent".
//! Does not own: which paths are watched (that is `model::WatchedFields`, passed in), nor writing
//! the file.
//!
//! Rules worked out from the reference page, applied to every trial:
//! - Any line or section whose value is absent is left out, heading included, except "Recent
//!   Field Changes", which always appears (with `_No watched-field changes in this period._`
//!   when there is nothing to list), so a reader can tell "nothing changed" from "not rendered".
//! - Front matter scalars are plain unless plain YAML would misread them (see [`yaml_scalar`]);
//!   `canonical_url`, `clinicaltrials_gov` and `last_seen_at` are always double-quoted, and
//!   `ct_last_update_post_date` is left to read as a YAML date, as on the page.
//! - `countries` lists the distinct site countries in record order (sites sorted by key);
//!   `primary_condition` is the record's first condition (conditions are a sorted set).
//! - Multi-line text inside a list item is indented so it stays in the item; text shown on one
//!   line (headings, labels, key facts) has its line breaks turned into spaces.
//! - The footer's lines end in two spaces (a Markdown hard break), except the last line.

use chrono::{DateTime, Duration, SecondsFormat, Utc};
use serde_json::Value;

use crate::model::{Record, VersionMeta, WatchedFields};

/// How many days of changes the page lists when the configuration says nothing (docs/record.md §7).
pub const DEFAULT_RECENT_DAYS: u32 = 30;

/// The constant `source` value of the front matter: this page adds nothing to CT.gov's data.
const SOURCE: &str = "ClinicalTrials.gov (mirrored, no enrichment)";

/// The page's configuration: what differs between one site's pages and another's.
#[derive(Debug, Clone, Copy)]
pub struct PageOptions<'a> {
    /// The site's base URL; the page's own URL is `{base}/{NCT}.md`. `None` leaves out
    /// `canonical_url` and the footer's "Canonical" line (a local mirror has no public URL).
    pub canonical_base: Option<&'a str>,
    /// The footer's last line, plain text set in italics like the other footer lines (as the
    /// reference page's disclaimer). `None` leaves it out.
    pub footer_note: Option<&'a str>,
    /// "Recent Field Changes" covers changes detected in this many days before `now`.
    pub recent_days: u32,
    /// Which paths count as watched, and their order on the page.
    pub watched: &'a WatchedFields,
}

/// The page's own URL: `{canonical_base}/{nct}.md`, without a doubled `/`.
pub fn canonical_url(canonical_base: &str, nct: &str) -> String {
    format!("{}/{nct}.md", canonical_base.trim_end_matches('/'))
}

/// Renders the mirror page of `record`.
///
/// `last_seen_at` is the time of the sync that last saw the record. `versions`: the trial's
/// stored versions (any order); the page lists the watched-field changes of those detected
/// within `opts.recent_days` before `now` (and not after it), newest version first, within a
/// version by `opts.watched.rank(path)` then path.
pub fn mirror_page(
    record: &Record,
    last_seen_at: DateTime<Utc>,
    now: DateTime<Utc>,
    versions: &[VersionMeta],
    opts: &PageOptions,
) -> String {
    let nct = record.nct_id().unwrap_or_default();
    let ctgov_url = format!("https://clinicaltrials.gov/study/{nct}");
    let canonical = opts.canonical_base.map(|b| canonical_url(b, nct));
    let title = record
        .title()
        .or_else(|| record.text("identification.officialTitle"))
        .unwrap_or(nct);
    let phases = joined(record.get("design.phases"));
    let conditions = joined(record.get("conditions.conditions"));
    let primary_condition = record
        .get("conditions.conditions")
        .and_then(|v| v.as_array()?.first()?.as_str());
    let sites = sites(record);
    let countries = {
        let mut seen: Vec<&str> = Vec::new();
        for c in sites.iter().filter_map(|s| s.get("country")?.as_str()) {
            if !seen.contains(&c) {
                seen.push(c);
            }
        }
        (!seen.is_empty()).then(|| seen.join(", "))
    };

    // Front matter.
    let mut fm = vec!["---".to_string()];
    let mut kv = |key: &str, value: Option<String>| {
        if let Some(v) = value {
            fm.push(format!("{key}: {v}"));
        }
    };
    kv("title", Some(yaml_scalar(&inline(title))));
    kv("nct_id", Some(yaml_scalar(nct)).filter(|_| !nct.is_empty()));
    kv("overall_status", record.overall_status().map(yaml_scalar));
    kv("phase", phases.as_deref().map(yaml_scalar));
    kv(
        "sponsor",
        record.text("sponsor.lead").map(|s| yaml_scalar(&inline(s))),
    );
    kv(
        "study_type",
        record.text("design.studyType").map(yaml_scalar),
    );
    kv(
        "primary_condition",
        primary_condition.map(|s| yaml_scalar(&inline(s))),
    );
    kv("countries", countries.as_deref().map(yaml_scalar));
    kv("canonical_url", canonical.as_deref().map(yaml_quoted));
    kv("clinicaltrials_gov", Some(yaml_quoted(&ctgov_url)));
    kv(
        "ct_last_update_post_date",
        record.last_update_post_date().map(yaml_date),
    );
    kv(
        "last_seen_at",
        Some(yaml_quoted(
            &last_seen_at.to_rfc3339_opts(SecondsFormat::Millis, true),
        )),
    );
    kv("source", Some(yaml_scalar(SOURCE)));
    fm.push("---".to_string());

    // Body: blocks separated by one blank line.
    let mut blocks: Vec<String> = vec![format!("# {}", inline(title))];
    if let Some(t) = record.text("identification.officialTitle") {
        blocks.push(format!("**Official Title:** {}", inline(t)));
    }
    if !nct.is_empty() {
        blocks.push(format!("**NCT ID:** [{nct}]({ctgov_url})"));
    }

    let facts = [
        ("Status", record.overall_status().map(inline)),
        ("Phase", phases.clone()),
        ("Study Type", record.text("design.studyType").map(inline)),
        (
            "Target Enrollment",
            scalar(record.get("design.enrollmentCount")),
        ),
        ("Lead Sponsor", record.text("sponsor.lead").map(inline)),
        ("Conditions", conditions.map(|c| inline(&c))),
        ("Start Date", record.text("status.startDate").map(inline)),
        (
            "Completion Date",
            record.text("status.completionDate").map(inline),
        ),
        (
            "CT.gov Last Update",
            record.last_update_post_date().map(inline),
        ),
    ];
    section(&mut blocks, "Key Facts", fact_lines(&facts));

    if let Some(t) = record.text("description.briefSummary") {
        section(&mut blocks, "Brief Summary", t.to_string());
    }
    if let Some(t) = record.text("description.detailedDescription") {
        section(&mut blocks, "Detailed Description", t.to_string());
    }

    let eligibility_facts = [
        ("Minimum age", record.text("eligibility.minAge").map(inline)),
        ("Maximum age", record.text("eligibility.maxAge").map(inline)),
        ("Sex", record.text("eligibility.sex").map(inline)),
        (
            "Healthy Volunteers",
            record
                .get("eligibility.healthyVolunteers")
                .and_then(Value::as_bool)
                .map(|b| if b { "Yes" } else { "No" }.to_string()),
        ),
    ];
    let mut eligibility = Vec::new();
    let lines = fact_lines(&eligibility_facts);
    if !lines.is_empty() {
        eligibility.push(lines);
    }
    if let Some(c) = record.text("eligibility.criteria") {
        eligibility.push(fenced(c));
    }
    section(&mut blocks, "Eligibility", eligibility.join("\n\n"));

    section(
        &mut blocks,
        "Arms",
        items(record.get("armsInterventions.arms"), |o| {
            item(
                &[bold(o, "label"), paren(o, "type")],
                field(o, "description"),
            )
        }),
    );
    section(
        &mut blocks,
        "Interventions",
        items(record.get("armsInterventions.interventions"), |o| {
            item(
                &[bold(o, "name"), paren(o, "type")],
                field(o, "description"),
            )
        }),
    );
    let outcome = |o: &serde_json::Map<String, Value>| {
        let time_frame = field(o, "timeFrame").map(|t| format!("_(time frame: {})_", inline(t)));
        item(&[bold(o, "measure"), time_frame], field(o, "description"))
    };
    section(
        &mut blocks,
        "Primary Outcomes",
        items(record.get("outcomes.primary"), outcome),
    );
    section(
        &mut blocks,
        "Secondary Outcomes",
        items(record.get("outcomes.secondary"), outcome),
    );

    let site_lines: Vec<String> = sites
        .iter()
        .map(|s| {
            let parts: Vec<String> = ["facility", "city", "state", "country"]
                .iter()
                .filter_map(|k| s.get(*k)?.as_str().map(inline))
                .collect();
            format!("- {}", parts.join(", "))
        })
        .collect();
    section(
        &mut blocks,
        &format!("Locations ({})", site_lines.len()),
        site_lines.join("\n"),
    );

    let changes = recent_changes(versions, now, opts);
    let changes = if changes.is_empty() {
        "_No watched-field changes in this period._".to_string()
    } else {
        changes.join("\n")
    };
    section(
        &mut blocks,
        &format!("Recent Field Changes (last {} days)", opts.recent_days),
        changes,
    );

    blocks.push("---".to_string());
    let mut footer = Vec::new();
    if let Some(url) = &canonical {
        footer.push(format!("*Canonical: {url}*"));
    }
    footer.push(format!("*Source data (authoritative): {ctgov_url}*"));
    if let Some(note) = opts.footer_note.map(str::trim).filter(|n| !n.is_empty()) {
        footer.push(format!("*{}*", inline(note.trim_matches('*'))));
    }
    blocks.push(footer.join("  \n"));

    let mut page = fm.join("\n");
    page.push('\n');
    page.push_str(&blocks.join("\n\n"));
    page.push('\n');
    page
}

/// The lines of "Recent Field Changes": watched changes of the versions detected in
/// `[now - recent_days, now]`, newest version first, then by watched rank and path.
fn recent_changes(versions: &[VersionMeta], now: DateTime<Utc>, opts: &PageOptions) -> Vec<String> {
    let cutoff = now - Duration::days(i64::from(opts.recent_days));
    let mut recent: Vec<&VersionMeta> = versions
        .iter()
        // Backfilled versions are CT.gov's past, fetched now: not what trialwatch detected.
        .filter(|v| !v.provenance.backfilled && v.detected_at >= cutoff && v.detected_at <= now)
        .collect();
    recent.sort_by(|a, b| {
        b.detected_at
            .cmp(&a.detected_at)
            .then(b.version.cmp(&a.version))
    });
    let mut lines = Vec::new();
    for v in recent {
        let mut watched: Vec<(usize, &str, &str)> = v
            .changes
            .iter()
            .filter_map(|c| {
                let rank = opts.watched.rank(&c.path)?;
                Some((rank, c.path.as_str(), c.kind.as_str()))
            })
            .collect();
        watched.sort();
        let day = v.detected_at.format("%Y-%m-%d");
        for (_, path, kind) in watched {
            lines.push(format!("- {} — {kind} _({day})_", code_span(path)));
        }
    }
    lines
}

/// Every site's value, in record order (sorted by key); a merged key gives each of its sites.
fn sites(record: &Record) -> Vec<&serde_json::Map<String, Value>> {
    let Some(locations) = record.0.get("locations").and_then(Value::as_object) else {
        return Vec::new();
    };
    locations
        .values()
        .flat_map(|v| match v {
            Value::Array(list) => list.iter().filter_map(Value::as_object).collect(),
            Value::Object(o) => vec![o],
            _ => Vec::new(),
        })
        .collect()
}

/// Appends `## heading` and its body as two blocks; nothing when the body is empty.
fn section(blocks: &mut Vec<String>, heading: &str, body: String) {
    if !body.is_empty() {
        blocks.push(format!("## {heading}"));
        blocks.push(body);
    }
}

/// `- **Label:** value` lines for the present values.
fn fact_lines(facts: &[(&str, Option<String>)]) -> String {
    facts
        .iter()
        .filter_map(|(label, v)| Some(format!("- **{label}:** {}", v.as_deref()?)))
        .collect::<Vec<_>>()
        .join("\n")
}

/// One bullet per object of a list value.
fn items(list: Option<&Value>, f: impl Fn(&serde_json::Map<String, Value>) -> String) -> String {
    list.and_then(Value::as_array)
        .map(|l| {
            l.iter()
                .filter_map(Value::as_object)
                .map(f)
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default()
}

/// `- head — description`, the head's present pieces joined by spaces; multi-line
/// descriptions are indented so they stay inside the list item.
fn item(head: &[Option<String>], description: Option<&str>) -> String {
    let head: Vec<&str> = head.iter().filter_map(|p| p.as_deref()).collect();
    let mut line = format!("- {}", head.join(" "));
    if let Some(d) = description {
        if !head.is_empty() {
            line.push_str(" — ");
        }
        line.push_str(&indent_continuation(d));
    }
    line
}

fn field<'v>(o: &'v serde_json::Map<String, Value>, key: &str) -> Option<&'v str> {
    o.get(key)?.as_str()
}

fn bold(o: &serde_json::Map<String, Value>, key: &str) -> Option<String> {
    field(o, key).map(|s| format!("**{}**", inline(s)))
}

fn paren(o: &serde_json::Map<String, Value>, key: &str) -> Option<String> {
    field(o, key).map(|s| format!("({})", inline(s)))
}

/// A list of text joined with `, `; a scalar as itself.
fn joined(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::Array(items) => {
            let parts: Vec<String> = items.iter().filter_map(|i| scalar(Some(i))).collect();
            (!parts.is_empty()).then(|| parts.join(", "))
        }
        other => scalar(Some(other)),
    }
}

/// Text, number or bool as one line of text.
fn scalar(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => Some(inline(s)),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Text on one line: line breaks become spaces.
fn inline(s: &str) -> String {
    if s.contains('\n') {
        s.split('\n')
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join(" ")
    } else {
        s.to_string()
    }
}

/// Continuation lines of a list item's text, indented two spaces (blank lines stay blank).
fn indent_continuation(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for (i, line) in s.split('\n').enumerate() {
        if i > 0 {
            out.push('\n');
            if !line.is_empty() {
                out.push_str("  ");
            }
        }
        out.push_str(line);
    }
    out
}

/// A fenced code block whose fence is longer than any backtick run inside the text.
fn fenced(s: &str) -> String {
    let fence = "`".repeat(longest_run(s, '`').max(2) + 1);
    format!("{fence}\n{s}\n{fence}")
}

/// An inline code span that survives backticks in the text.
fn code_span(s: &str) -> String {
    let ticks = "`".repeat(longest_run(s, '`') + 1);
    if s.starts_with('`') || s.ends_with('`') {
        format!("{ticks} {s} {ticks}")
    } else {
        format!("{ticks}{s}{ticks}")
    }
}

fn longest_run(s: &str, c: char) -> usize {
    let (mut best, mut run) = (0, 0);
    for ch in s.chars() {
        run = if ch == c { run + 1 } else { 0 };
        best = best.max(run);
    }
    best
}

/// A YAML scalar for a front matter value: plain when plain YAML reads it back as the same
/// string, double-quoted otherwise. Quoted when it:
/// - is empty, has leading/trailing spaces, or holds a control character or line break;
/// - contains `'`, `"`, `\`, `: ` or ` #`, or ends with `:`;
/// - starts with a YAML indicator (`-?:,[]{}#&*!|>%@` and backtick);
/// - would read as a bool or null (YAML 1.1 and 1.2 spellings), or as a number, date or time.
pub fn yaml_scalar(s: &str) -> String {
    if needs_quotes(s, true) {
        yaml_quoted(s)
    } else {
        s.to_string()
    }
}

/// A date value that is meant to read as a YAML date (`ct_last_update_post_date: 2020-03-10`),
/// quoted only when it could not be a plain scalar at all.
fn yaml_date(s: &str) -> String {
    if needs_quotes(s, false) {
        yaml_quoted(s)
    } else {
        s.to_string()
    }
}

/// A double-quoted YAML scalar.
pub fn yaml_quoted(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() || matches!(c, '\u{2028}' | '\u{2029}' | '\u{feff}') => {
                out.push_str(&format!("\\u{:04X}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn needs_quotes(s: &str, check_types: bool) -> bool {
    let Some(first) = s.chars().next() else {
        return true;
    };
    if s.trim() != s
        || s.chars()
            .any(|c| c.is_control() || matches!(c, '\u{2028}' | '\u{2029}' | '\u{feff}'))
        || s.contains(['\'', '"', '\\'])
        || s.contains(": ")
        || s.contains(" #")
        || s.ends_with(':')
        || "-?:,[]{}#&*!|>%@`".contains(first)
    {
        return true;
    }
    check_types && reads_as_non_string(s)
}

/// Whether plain YAML (1.1 or 1.2) would read `s` as a bool, null, number, date or time.
/// Errs on the side of "yes": an unneeded quote is still valid YAML.
fn reads_as_non_string(s: &str) -> bool {
    const WORDS: &[&str] = &[
        "true", "false", "yes", "no", "y", "n", "on", "off", "null", "~", ".inf", "+.inf", "-.inf",
        ".nan",
    ];
    let lower = s.to_ascii_lowercase();
    if WORDS.contains(&lower.as_str()) {
        return true;
    }
    // Numbers (decimal, hex, octal, binary, floats, YAML 1.1 `1_000` and `1:30`), dates and
    // timestamps all start with a digit (after an optional sign or dot) and use few characters.
    let body = s.strip_prefix(['+', '-']).unwrap_or(s);
    let body = body.strip_prefix('.').unwrap_or(body);
    body.starts_with(|c: char| c.is_ascii_digit())
        && s.chars()
            .all(|c| c.is_ascii_hexdigit() || "xXoObB._:+-tTzZ ".contains(c))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ChangeKind, FieldChange, WatchedFields};
    use chrono::TimeZone;
    use serde_json::json;

    fn at(y: i32, m: u32, d: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, m, d, 12, 0, 0).unwrap()
    }

    fn change(path: &str, kind: ChangeKind) -> FieldChange {
        FieldChange {
            path: path.into(),
            kind,
            old: None,
            new: None,
        }
    }

    fn version(n: u32, detected_at: DateTime<Utc>, changes: Vec<FieldChange>) -> VersionMeta {
        VersionMeta {
            version: n,
            detected_at,
            last_update_post_date: None,
            changes,
            provenance: Default::default(),
        }
    }

    fn record() -> Record {
        let mut r = Record::default();
        r.set("identification.nctId", json!("NCT00000001"));
        r.set("identification.briefTitle", json!("A trial"));
        r
    }

    fn page(
        r: &Record,
        now: DateTime<Utc>,
        versions: &[VersionMeta],
        watched: &WatchedFields,
    ) -> String {
        let opts = PageOptions {
            canonical_base: None,
            footer_note: None,
            recent_days: 30,
            watched,
        };
        mirror_page(r, now, now, versions, &opts)
    }

    fn recent_section(page: &str) -> Vec<&str> {
        let start = page.find("## Recent Field Changes").unwrap();
        page[start..]
            .lines()
            .skip(2)
            .take_while(|l| !l.is_empty())
            .collect()
    }

    #[test]
    fn yaml_quoting_follows_the_reference_page() {
        assert_eq!(
            yaml_scalar("Peking University People's Hospital"),
            "\"Peking University People's Hospital\""
        );
        assert_eq!(yaml_scalar("PHASE1, PHASE2"), "PHASE1, PHASE2");
        assert_eq!(
            yaml_scalar("ClinicalTrials.gov (mirrored, no enrichment)"),
            "ClinicalTrials.gov (mirrored, no enrichment)"
        );
        assert_eq!(yaml_scalar("CMV Infection"), "CMV Infection");
        assert_eq!(yaml_date("2020-03-10"), "2020-03-10");
        for s in [
            "yes",
            "No",
            "null",
            "~",
            "41",
            "-1.5",
            "0x1F",
            "1_000",
            "2020-03-10",
            "12:30",
            ".5",
            ".NaN",
            "",
            " x",
            "a: b",
            "a #b",
            "x:",
            "- x",
            "[x",
            "*x",
            "&x",
            "!x",
            "|x",
            ">x",
            "%x",
            "@x",
            "`x",
            "#x",
            "a\"b",
            "a\\b",
            "a\nb",
        ] {
            assert!(yaml_scalar(s).starts_with('"'), "{s:?} should be quoted");
        }
        for s in [
            "15 Years",
            "PHASE1",
            "COVID-19",
            "Type 2 Diabetes",
            "a:b",
            "a#b",
            "C++ study",
        ] {
            assert_eq!(yaml_scalar(s), s, "{s:?} should stay plain");
        }
        assert_eq!(yaml_quoted("a\"b\\c\nd\u{1}"), r#""a\"b\\c\nd\u0001""#);
    }

    #[test]
    fn canonical_url_drops_a_trailing_slash() {
        assert_eq!(
            canonical_url("https://x.org/t/", "NCT1"),
            "https://x.org/t/NCT1.md"
        );
        assert_eq!(
            canonical_url("https://x.org/t", "NCT1"),
            "https://x.org/t/NCT1.md"
        );
    }

    #[test]
    fn absent_values_leave_out_their_lines_and_sections() {
        let watched = WatchedFields::default();
        let p = page(&record(), at(2026, 5, 12), &[], &watched);
        for absent in [
            "overall_status",
            "phase:",
            "sponsor:",
            "countries:",
            "canonical_url",
            "ct_last_update",
            "Official Title",
            "## Key Facts",
            "## Brief Summary",
            "## Detailed Description",
            "## Eligibility",
            "## Arms",
            "## Interventions",
            "## Primary Outcomes",
            "## Locations",
            "*Canonical",
        ] {
            assert!(!p.contains(absent), "{absent} in\n{p}");
        }
        assert!(p.contains("## Recent Field Changes (last 30 days)\n\n_No watched-field changes in this period._\n\n---\n"));
        assert!(
            p.ends_with(
                "*Source data (authoritative): https://clinicaltrials.gov/study/NCT00000001*\n"
            ),
            "{p}"
        );
    }

    #[test]
    fn changes_older_than_the_window_are_not_listed() {
        let watched = WatchedFields::default();
        let now = at(2026, 5, 12);
        let versions = [
            version(
                1,
                now - Duration::days(31),
                vec![change("status.overallStatus", ChangeKind::Added)],
            ),
            version(
                2,
                now - Duration::days(30),
                vec![change("design.phases", ChangeKind::Changed)],
            ),
            version(
                3,
                now + Duration::seconds(1),
                vec![change("sponsor.lead", ChangeKind::Changed)],
            ),
        ];
        let p = page(&record(), now, &versions, &watched);
        assert_eq!(
            recent_section(&p),
            ["- `design.phases` — changed _(2026-04-12)_"]
        );
    }

    #[test]
    fn changes_are_listed_newest_version_first_then_by_watched_rank() {
        let watched = WatchedFields::default();
        let now = at(2026, 5, 12);
        let versions = [
            version(
                1,
                now - Duration::days(10),
                vec![
                    change("locations.b|x||y", ChangeKind::Added),
                    change("identification.briefTitle", ChangeKind::Added),
                    change("status.overallStatus", ChangeKind::Added),
                ],
            ),
            version(
                2,
                now - Duration::days(2),
                vec![
                    change("sponsor.lead", ChangeKind::Changed),
                    change("locations.a|x||y", ChangeKind::Removed),
                    change("status.completionDate", ChangeKind::Changed),
                    change("design.phases", ChangeKind::Changed),
                ],
            ),
        ];
        let p = page(&record(), now, &versions, &watched);
        assert_eq!(
            recent_section(&p),
            [
                "- `status.completionDate` — changed _(2026-05-10)_",
                "- `design.phases` — changed _(2026-05-10)_",
                "- `sponsor.lead` — changed _(2026-05-10)_",
                "- `locations.a|x||y` — removed _(2026-05-10)_",
                "- `status.overallStatus` — added _(2026-05-02)_",
                "- `locations.b|x||y` — added _(2026-05-02)_",
            ]
        );
        // A custom watch list decides both what is listed and its order.
        let custom = WatchedFields(vec![
            crate::model::FieldPattern::new("locations.*"),
            crate::model::FieldPattern::new("identification.*"),
        ]);
        let p = page(&record(), now, &versions, &custom);
        assert_eq!(
            recent_section(&p),
            [
                "- `locations.a|x||y` — removed _(2026-05-10)_",
                "- `locations.b|x||y` — added _(2026-05-02)_",
                "- `identification.briefTitle` — added _(2026-05-02)_",
            ]
        );
    }

    #[test]
    fn list_items_keep_multi_line_text_inside_the_item() {
        let mut r = record();
        r.set(
            "armsInterventions.arms",
            json!([
                {"label": "A", "description": "line one\n\nline two"},
                {"type": "OTHER"},
            ]),
        );
        r.set("eligibility.criteria", json!("uses ``` inside"));
        let p = page(&r, at(2026, 5, 12), &[], &WatchedFields::default());
        assert!(
            p.contains("## Arms\n\n- **A** — line one\n\n  line two\n- (OTHER)\n"),
            "{p}"
        );
        assert!(p.contains("````\nuses ``` inside\n````"), "{p}");
        assert_eq!(code_span("a`b"), "``a`b``");
    }

    #[test]
    fn merged_sites_are_each_listed_and_counted() {
        let mut r = record();
        r.set(
            "locations.f|c||x",
            json!([{"facility": "F", "city": "C", "country": "X"},
            {"facility": "f", "city": "c", "country": "X"}]),
        );
        r.set(
            "locations.g|d|s|y",
            json!({"facility": "G", "city": "D", "state": "S", "zip": "1", "country": "Y"}),
        );
        let p = page(&r, at(2026, 5, 12), &[], &WatchedFields::default());
        assert!(
            p.contains("## Locations (3)\n\n- F, C, X\n- f, c, X\n- G, D, S, Y\n"),
            "{p}"
        );
        assert!(p.contains("\ncountries: X, Y\n"), "{p}");
    }
}
