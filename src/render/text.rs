//! Terminal text for people: one-line value and change summaries, `history` lines and the
//! `diff` report. Plain text without colour codes, so it reads the same in a pipe, a log or
//! an email.
//!
//! Pure: it formats what it is given. Which changes exist is [`crate::diff`]'s job, how much
//! they matter is [`crate::severity`]'s, and the Markdown page is [`super::markdown`]'s.

use serde_json::{Map, Value};

use super::textdiff::text_diff;
use crate::diff::{is_long_text, value_text};
use crate::model::{ChangeKind, FieldChange, Source, VersionMeta};
use crate::util::text::{one_line, plural};

/// A one-line value is cut to this many characters (the last one being `…`).
pub const BRIEF_MAX_CHARS: usize = 60;

/// Changed keys of an object shown by [`change_line`] before `…`.
const MAX_OBJECT_KEYS: usize = 3;

/// A one-line rendering of a value: strings as they are (whitespace runs and newlines folded
/// to one space), numbers and bools plainly, a list of scalars as `[a, b]`, a list with
/// object or list items as a count (`3 items`), an object as `{key: value, …}`. Anything
/// longer than [`BRIEF_MAX_CHARS`] is cut with `…`.
pub fn value_brief(v: &Value) -> String {
    match v {
        Value::String(s) => cut(&one_line(s, usize::MAX), BRIEF_MAX_CHARS),
        Value::Array(items) if items.iter().any(|i| i.is_object() || i.is_array()) => {
            plural(items.len(), "item")
        }
        Value::Array(items) => {
            let inner: Vec<String> = items.iter().map(scalar).collect();
            format!("[{}]", cut(&inner.join(", "), BRIEF_MAX_CHARS - 2))
        }
        Value::Object(m) => {
            let inner: Vec<String> = m
                .iter()
                .map(|(k, v)| format!("{k}: {}", nested(v)))
                .collect();
            format!("{{{}}}", cut(&inner.join(", "), BRIEF_MAX_CHARS - 2))
        }
        other => other.to_string(),
    }
}

/// A scalar inside a list: strings unquoted and folded to one line.
fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => one_line(s, usize::MAX),
        other => other.to_string(),
    }
}

/// A value inside an object: containers become a count, so the object stays on one line.
fn nested(v: &Value) -> String {
    match v {
        Value::Array(items) => plural(items.len(), "item"),
        Value::Object(m) => plural(m.len(), "field"),
        other => scalar(other),
    }
}

/// `s` cut to at most `max` characters, ending in `…` when cut.
fn cut(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let kept: String = s.chars().take(max.saturating_sub(1)).collect();
    format!("{}…", kept.trim_end())
}

/// Whether a change is shown as a text diff: either side is long text (see
/// [`is_long_text`]).
fn is_long_change(c: &FieldChange) -> bool {
    [&c.old, &c.new]
        .into_iter()
        .flatten()
        .any(|v| is_long_text(&c.path, v))
}

/// Whether a value has no useful one-line form in a change line (a list of objects or an
/// object, such as a site).
fn is_compound(v: &Value) -> bool {
    v.is_object() || v.as_array().is_some_and(|a| a.iter().any(Value::is_object))
}

/// One line for one change:
/// - `status.overallStatus RECRUITING → COMPLETED`, `design.enrollmentCount 41 → 20`;
/// - `eligibility.criteria changed` for long text;
/// - `locations.<key> changed: status RECRUITING → COMPLETED` for an object, naming up to
///   three changed keys (`(none)` for a missing one);
/// - `status.whyStopped added: Funding ended`, `… removed (was Funding ended)` for short values,
///   and just `locations.<key> added` / `removed` for long text, lists of objects and objects.
pub fn change_line(c: &FieldChange) -> String {
    let path = &c.path;
    let long = is_long_change(c);
    match (c.kind, &c.old, &c.new) {
        (ChangeKind::Changed, Some(Value::Object(old)), Some(Value::Object(new))) if !long => {
            format!("{path} changed: {}", object_changes(old, new))
        }
        (ChangeKind::Changed, Some(old), Some(new)) if !long => {
            format!("{path} {} → {}", value_brief(old), value_brief(new))
        }
        (ChangeKind::Added, _, Some(new)) if !long && !is_compound(new) => {
            format!("{path} added: {}", value_brief(new))
        }
        (ChangeKind::Removed, Some(old), _) if !long && !is_compound(old) => {
            format!("{path} removed (was {})", value_brief(old))
        }
        (kind, _, _) => format!("{path} {kind}"),
    }
}

/// `key old → new` for each key whose value differs, up to [`MAX_OBJECT_KEYS`].
fn object_changes(old: &Map<String, Value>, new: &Map<String, Value>) -> String {
    let mut keys: Vec<&String> = old.keys().collect();
    keys.extend(new.keys().filter(|k| !old.contains_key(*k)));
    let differing: Vec<String> = keys
        .into_iter()
        .filter(|k| old.get(*k) != new.get(*k))
        .map(|k| {
            let side = |v: Option<&Value>| v.map_or_else(|| "(none)".to_string(), nested);
            format!("{k} {} → {}", side(old.get(k)), side(new.get(k)))
        })
        .collect();
    let mut shown = differing
        .iter()
        .take(MAX_OBJECT_KEYS)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if differing.len() > MAX_OBJECT_KEYS {
        shown.push_str(", …");
    }
    shown
}

/// One line per stored version, e.g.
/// `v3  2026-05-12 06:28 UTC  ct.gov 2020-03-10  status.overallStatus RECRUITING → COMPLETED; design.enrollmentCount 41 → 20 (+4 more)`.
///
/// Lists up to `max_changes` [`change_line`]s in the order stored (table order) and counts the
/// rest; with `max_changes == 0` it only counts. Version 1 reads `first snapshot (N fields)`.
/// A version without a CT.gov update date shows `ct.gov ?`.
///
/// `first`: whether this is the first version of the trial's timeline. A version from CT.gov's
/// record history reads `v7  CT.gov v6 posted 2019-03-12 · backfilled` (or `· gap repaired`),
/// an observed one that CT.gov's index names adds `· CT.gov v6`.
pub fn history_line(v: &VersionMeta, max_changes: usize, first: bool) -> String {
    let posted = v.last_update_post_date.as_deref().unwrap_or("?");
    let p = &v.provenance;
    let head = match (p.source, p.ctgov_version) {
        (Source::Ctgov, ctgov) => format!(
            "{:<3} CT.gov v{} posted {} · {}",
            format!("v{}", v.version),
            ctgov.map_or("?".to_string(), |n| n.to_string()),
            p.ctgov_posted.map_or("?".to_string(), |d| d.to_string()),
            if p.backfilled {
                "backfilled"
            } else {
                "gap repaired"
            },
        ),
        (Source::Observed, Some(n)) => format!(
            "{:<3} {}  ct.gov {posted} · CT.gov v{n}",
            format!("v{}", v.version),
            crate::util::zone::minutes(v.detected_at),
        ),
        (Source::Observed, None) => format!(
            "{:<3} {}  ct.gov {posted}",
            format!("v{}", v.version),
            crate::util::zone::minutes(v.detected_at),
        ),
    };
    let n = v.changes.len();
    let body = if first {
        format!("first snapshot ({})", plural(n, "field"))
    } else if n == 0 {
        "no field changes".to_string()
    } else if max_changes == 0 {
        plural(n, "change")
    } else {
        let shown: Vec<String> = v
            .changes
            .iter()
            .take(max_changes)
            .map(change_line)
            .collect();
        let mut body = shown.join("; ");
        if n > max_changes {
            body.push_str(&format!(" (+{} more)", n - max_changes));
        }
        body
    };
    format!("{head}  {body}")
}

/// Indentation of values and text diffs under a change's path in [`diff_report`].
const INDENT: &str = "    ";

/// The `diff` command's report: a header line (`NCT02985775  v1 → v3  (2 changes)`), then per
/// change a `path  kind` line followed, indented, by the value(s): `old → new` on one line for
/// short values, `+ new` or `- old` for additions and removals, and the [`text_diff`] of the
/// two [`value_text`]s for long text, objects and lists of objects (so an added site or a
/// long addition is shown in full as `+` lines, one `key: value` per line).
/// Ends with a newline.
pub fn diff_report(nct: &str, from: u32, to: u32, changes: &[FieldChange]) -> String {
    let mut out = format!(
        "{nct}  v{from} → v{to}  ({})\n",
        plural(changes.len(), "change")
    );
    if changes.is_empty() {
        out.push_str("no field changes\n");
        return out;
    }
    for c in changes {
        out.push('\n');
        out.push_str(&format!("{}  {}\n", c.path, c.kind));
        let body = if is_long_change(c) || [&c.old, &c.new].into_iter().flatten().any(is_compound) {
            let text = |v: &Option<Value>| v.as_ref().map(value_text).unwrap_or_default();
            text_diff(&text(&c.old), &text(&c.new))
        } else {
            match (&c.old, &c.new) {
                (Some(old), Some(new)) => format!("{} → {}", value_brief(old), value_brief(new)),
                (None, Some(new)) => format!("+ {}", value_brief(new)),
                (Some(old), None) => format!("- {}", value_brief(old)),
                (None, None) => String::new(),
            }
        };
        for line in body.lines() {
            if !line.is_empty() {
                out.push_str(INDENT);
                out.push_str(line);
            }
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};
    use serde_json::json;

    fn change(path: &str, kind: ChangeKind, old: Option<Value>, new: Option<Value>) -> FieldChange {
        FieldChange {
            path: path.into(),
            kind,
            old,
            new,
        }
    }

    fn changed(path: &str, old: Value, new: Value) -> FieldChange {
        change(path, ChangeKind::Changed, Some(old), Some(new))
    }

    const SITE: &str =
        "locations.peking university people's hospital|beijing|beijing municipality|china";

    fn site(status: &str) -> Value {
        json!({"facility": "Peking University People's Hospital", "city": "Beijing",
               "state": "Beijing Municipality", "country": "China", "status": status})
    }

    #[test]
    fn values_in_brief() {
        assert_eq!(value_brief(&json!("RECRUITING")), "RECRUITING");
        assert_eq!(value_brief(&json!(41)), "41");
        assert_eq!(value_brief(&json!(true)), "true");
        assert_eq!(
            value_brief(&json!(["PHASE1", "PHASE2"])),
            "[PHASE1, PHASE2]"
        );
        assert_eq!(value_brief(&json!("two\n  lines")), "two lines");
        let long = "Evaluate the Safety and Efficacy of Preemptive Adoptive CMV-specific T Cells";
        let cut = value_brief(&json!(long));
        assert_eq!(
            cut,
            "Evaluate the Safety and Efficacy of Preemptive Adoptive CMV…"
        );
        assert_eq!(cut.chars().count(), BRIEF_MAX_CHARS);
        let outcomes = json!([{"measure": "a"}, {"measure": "b"}, {"measure": "c"}]);
        assert_eq!(value_brief(&outcomes), "3 items");
        assert_eq!(value_brief(&json!([{"measure": "a"}])), "1 item");
        assert_eq!(value_brief(&json!({"type": "SPONSOR"})), "{type: SPONSOR}");
        assert_eq!(
            value_brief(&json!({"name": "x", "armGroupLabels": ["a", "b"]})),
            "{name: x, armGroupLabels: 2 items}"
        );
        assert_eq!(
            value_brief(&site("RECRUITING")),
            "{facility: Peking University People's Hospital, city: Beij…}"
        );
    }

    #[test]
    fn change_lines() {
        let cases = [
            (
                changed(
                    "status.overallStatus",
                    json!("RECRUITING"),
                    json!("COMPLETED"),
                ),
                "status.overallStatus RECRUITING → COMPLETED",
            ),
            (
                changed("design.enrollmentCount", json!(41), json!(20)),
                "design.enrollmentCount 41 → 20",
            ),
            (
                changed(
                    "design.phases",
                    json!(["PHASE1"]),
                    json!(["PHASE1", "PHASE2"]),
                ),
                "design.phases [PHASE1] → [PHASE1, PHASE2]",
            ),
            (
                changed(
                    "eligibility.criteria",
                    json!("Adults."),
                    json!("Adults\nand children."),
                ),
                "eligibility.criteria changed",
            ),
            (
                change(
                    "locations.x|y||z",
                    ChangeKind::Added,
                    None,
                    Some(json!({"facility": "X"})),
                ),
                "locations.x|y||z added",
            ),
            (
                change(SITE, ChangeKind::Removed, Some(site("COMPLETED")), None),
                &format!("{SITE} removed"),
            ),
            (
                changed(SITE, site("RECRUITING"), site("COMPLETED")),
                &format!("{SITE} changed: status RECRUITING → COMPLETED"),
            ),
            (
                change(
                    "status.whyStopped",
                    ChangeKind::Added,
                    None,
                    Some(json!("Funding ended")),
                ),
                "status.whyStopped added: Funding ended",
            ),
            (
                change(
                    "results.hasResults",
                    ChangeKind::Removed,
                    Some(json!(true)),
                    None,
                ),
                "results.hasResults removed (was true)",
            ),
            (
                change(
                    "outcomes.primary",
                    ChangeKind::Added,
                    None,
                    Some(json!([{"measure": "m"}])),
                ),
                "outcomes.primary added",
            ),
        ];
        for (c, want) in cases {
            assert_eq!(change_line(&c), want);
        }
    }

    #[test]
    fn object_change_names_at_most_three_keys() {
        let c = changed(
            "sponsor.responsibleParty",
            json!({"a": 1, "b": 1, "c": 1, "d": 1}),
            json!({"a": 2, "b": 2, "c": 2, "e": 2}),
        );
        assert_eq!(
            change_line(&c),
            "sponsor.responsibleParty changed: a 1 → 2, b 1 → 2, c 1 → 2, …"
        );
        let c = changed("sponsor.responsibleParty", json!({"a": 1}), json!({"b": 1}));
        assert_eq!(
            change_line(&c),
            "sponsor.responsibleParty changed: a 1 → (none), b (none) → 1"
        );
    }

    fn meta(version: u32, changes: Vec<FieldChange>) -> VersionMeta {
        VersionMeta {
            version,
            detected_at: Utc.with_ymd_and_hms(2026, 5, 12, 6, 28, 15).unwrap(),
            last_update_post_date: Some("2020-03-10".into()),
            changes,
            provenance: Default::default(),
        }
    }

    #[test]
    fn history_lines() {
        let mut changes = vec![
            changed(
                "status.overallStatus",
                json!("RECRUITING"),
                json!("COMPLETED"),
            ),
            changed("design.enrollmentCount", json!(41), json!(20)),
        ];
        for i in 0..4 {
            changes.push(changed("status.lastUpdatePostDate", json!(i), json!(i + 1)));
        }
        assert_eq!(
            history_line(&meta(3, changes.clone()), 2, false),
            "v3  2026-05-12 06:28 UTC  ct.gov 2020-03-10  status.overallStatus RECRUITING → COMPLETED; design.enrollmentCount 41 → 20 (+4 more)"
        );
        assert_eq!(
            history_line(&meta(12, changes[..1].to_vec()), 3, false),
            "v12 2026-05-12 06:28 UTC  ct.gov 2020-03-10  status.overallStatus RECRUITING → COMPLETED"
        );
        assert_eq!(
            history_line(&meta(3, changes), 0, false),
            "v3  2026-05-12 06:28 UTC  ct.gov 2020-03-10  6 changes"
        );
        let first: Vec<FieldChange> = ["identification.nctId", "status.overallStatus"]
            .iter()
            .map(|p| change(p, ChangeKind::Added, None, Some(json!("x"))))
            .collect();
        let mut v1 = meta(1, first);
        v1.last_update_post_date = None;
        assert_eq!(
            history_line(&v1, 5, true),
            "v1  2026-05-12 06:28 UTC  ct.gov ?  first snapshot (2 fields)"
        );
        assert_eq!(
            history_line(&meta(2, vec![]), 5, false),
            "v2  2026-05-12 06:28 UTC  ct.gov 2020-03-10  no field changes"
        );
    }

    #[test]
    fn diff_report_shows_values_and_indented_text_diffs() {
        let changes = vec![
            changed(
                "status.overallStatus",
                json!("RECRUITING"),
                json!("COMPLETED"),
            ),
            changed(
                "eligibility.criteria",
                json!("Inclusion Criteria:\n\n1. Age 18 to 65 years."),
                json!("Inclusion Criteria:\n\n1. Age 15 to 65 years."),
            ),
            change(SITE, ChangeKind::Added, None, Some(site("RECRUITING"))),
            change(
                "status.whyStopped",
                ChangeKind::Removed,
                Some(json!("Funding")),
                None,
            ),
        ];
        let got = diff_report("NCT02985775", 1, 3, &changes);
        let want = format!(
            "\
NCT02985775  v1 → v3  (4 changes)

status.overallStatus  changed
    RECRUITING → COMPLETED

eligibility.criteria  changed
      Inclusion Criteria:

    - 1. Age [-18-] to 65 years.
    + 1. Age {{+15+}} to 65 years.

{SITE}  added
    + facility: Peking University People's Hospital
    + city: Beijing
    + state: Beijing Municipality
    + country: China
    + status: RECRUITING

status.whyStopped  removed
    - Funding
"
        );
        assert_eq!(got, want, "\n{got}");
        assert_eq!(
            diff_report("NCT02985775", 3, 3, &[]),
            "NCT02985775  v3 → v3  (0 changes)\nno field changes\n"
        );
    }
}
