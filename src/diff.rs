//! Record × record → field changes (docs/record.md §5), the inverse [`apply`], and readable line and
//! word diffs of long text for people ([`text_diff`]).
//!
//! Pure: no I/O, no clock, no configuration. This module says *what* changed; what a change
//! means is [`crate::severity`]'s job and how it is shown is [`crate::render`]'s.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::Value;
use similar::{ChangeTag, DiffTag, TextDiff};

use crate::model::{ChangeKind, FieldChange, Record};
use crate::schema;

/// The field changes that turn `old` into `new`, one per path whose value differs (JSON value
/// equality), sorted in the canonical order of [`schema::path_order`] (table order, locations
/// by key).
///
/// `old = None` is the first snapshot of a trial: every present path is `added`. An `added`
/// change carries only `new`, a `removed` change only `old`, a `changed` change both.
/// A section that is not a JSON object holds no fields (see [`Record::fields`]) and is ignored.
pub fn diff(old: Option<&Record>, new: &Record) -> Vec<FieldChange> {
    let old_fields: HashMap<String, &Value> = old.map(|r| r.fields().collect()).unwrap_or_default();
    let new_fields: HashMap<String, &Value> = new.fields().collect();

    let mut changes = Vec::new();
    for (path, &old_value) in &old_fields {
        match new_fields.get(path) {
            None => changes.push(FieldChange {
                path: path.clone(),
                kind: ChangeKind::Removed,
                old: Some(old_value.clone()),
                new: None,
            }),
            Some(&new_value) if new_value != old_value => changes.push(FieldChange {
                path: path.clone(),
                kind: ChangeKind::Changed,
                old: Some(old_value.clone()),
                new: Some(new_value.clone()),
            }),
            Some(_) => {}
        }
    }
    for (path, &new_value) in &new_fields {
        if !old_fields.contains_key(path) {
            changes.push(FieldChange {
                path: path.clone(),
                kind: ChangeKind::Added,
                old: None,
                new: Some(new_value.clone()),
            });
        }
    }
    changes.sort_by(|a, b| order_key(&a.path).cmp(&order_key(&b.path)));
    changes
}

/// `path_order`, tie-broken by the path itself so the order is total whatever the input.
fn order_key(path: &str) -> ((usize, usize, &str), &str) {
    (schema::path_order(path), path)
}

/// `base` with `changes` applied, rebuilt in canonical order (sections and keys in
/// [`schema::path_order`]), so `apply(a, &diff(Some(a), b))` equals `b` down to its
/// `canonical_bytes` when `b` was canonical.
///
/// `added` and `changed` set the path to `new` (a change without `new` removes the path);
/// `removed` removes it. Changes are applied in the order given, so a later change to the same
/// path wins. Sections of `base` that are not JSON objects hold no fields and are dropped.
pub fn apply(base: &Record, changes: &[FieldChange]) -> Record {
    let mut fields: HashMap<String, Value> = base
        .fields()
        .map(|(path, value)| (path, value.clone()))
        .collect();
    for change in changes {
        match (change.kind, &change.new) {
            (ChangeKind::Added | ChangeKind::Changed, Some(value)) => {
                fields.insert(change.path.clone(), value.clone());
            }
            _ => {
                fields.remove(&change.path);
            }
        }
    }
    let mut ordered: Vec<(String, Value)> = fields.into_iter().collect();
    ordered.sort_by(|(a, _), (b, _)| order_key(a).cmp(&order_key(b)));
    let mut record = Record::default();
    for (path, value) in ordered {
        record.set(&path, value);
    }
    record
}

/// Paths whose value is free text (markdown) written by the sponsor. Their changes are always
/// shown as a text diff, even while the text is short, so one field reads the same way in
/// every version.
pub const FREE_TEXT_PATHS: &[&str] = &[
    "description.briefSummary",
    "description.detailedDescription",
    "eligibility.criteria",
    "eligibility.studyPopulation",
];

/// A string is long past this many characters (or with any newline).
pub const LONG_TEXT_CHARS: usize = 80;

/// Whether a value at `path` is long text, to be shown as a [`text_diff`] of [`value_text`]
/// rather than on one line. True for:
/// - any string at one of the [`FREE_TEXT_PATHS`];
/// - any string with a newline or more than [`LONG_TEXT_CHARS`] characters;
/// - a list with at least one object item that has such a long string field (outcomes and
///   arms with descriptions, references with citations).
///
/// Everything else (numbers, bools, short strings, lists of short items, a single location
/// object) is short.
pub fn is_long_text(path: &str, v: &Value) -> bool {
    match v {
        Value::String(s) => FREE_TEXT_PATHS.contains(&path) || is_long_str(s),
        Value::Array(items) => items.iter().any(|item| {
            item.as_object()
                .is_some_and(|m| m.values().any(|f| f.as_str().is_some_and(is_long_str)))
        }),
        _ => false,
    }
}

fn is_long_str(s: &str) -> bool {
    s.contains('\n') || s.chars().count() > LONG_TEXT_CHARS
}

/// The multi-line text a value is compared as by [`text_diff`]: a string as it is; an object
/// as one `key: value` line per key; a list one item per line, with object items as blocks of
/// `key: value` lines separated by a blank line. Continuation lines of a multi-line field are
/// indented two spaces so they stay with their key. Nested lists are joined with `, `.
pub fn value_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Object(m) => object_lines(m),
        Value::Array(items) => {
            let any_object = items.iter().any(Value::is_object);
            let parts: Vec<String> = items
                .iter()
                .map(|item| match item {
                    Value::Object(m) => object_lines(m),
                    other => inline_text(other),
                })
                .collect();
            parts.join(if any_object { "\n\n" } else { "\n" })
        }
        other => inline_text(other),
    }
}

fn object_lines(m: &serde_json::Map<String, Value>) -> String {
    m.iter()
        .map(|(k, v)| format!("{k}: {}", inline_text(v).replace('\n', "\n  ")))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A value as text on (mostly) one line: strings unquoted, lists joined with `, `.
fn inline_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Array(items) => items.iter().map(inline_text).collect::<Vec<_>>().join(", "),
        other => other.to_string(),
    }
}

/// Unchanged lines shown around each change in a [`text_diff`].
pub const TEXT_DIFF_CONTEXT: usize = 2;

/// A diff gives up looking for the best alignment after this long and settles for a valid,
/// coarser one, so a pathological input cannot stall a sync or a terminal.
const DIFF_TIMEOUT: Duration = Duration::from_millis(500);

/// Below this similarity (0..=1, by words) a changed line pair is shown as plain `-`/`+`
/// lines: marking nearly every word of a rewritten line helps nobody.
const WORD_EMPHASIS_MIN_RATIO: f32 = 0.5;

/// A readable line diff of two texts for a plain terminal, `""` when their lines are equal.
///
/// Each output line is `  text` (unchanged context), `- text` (only in `old`) or `+ text`
/// (only in `new`); an empty line keeps just its marker (`-`, `+`, or nothing for context).
/// Each change shows [`TEXT_DIFF_CONTEXT`] unchanged lines around it and hunks are separated
/// by a `…` line. Within a block of changed lines, each removed line is paired with the next
/// similar added line, and the words that differ are marked: `[-old-]` on the `-` line and
/// `{+new+}` on the `+` line. Lines too different to pair are shown whole.
///
/// Lines are split with [`str::lines`], so `\r\n` and a final newline are not differences.
pub fn text_diff(old: &str, new: &str) -> String {
    let old_lines: Vec<&str> = old.lines().collect();
    let new_lines: Vec<&str> = new.lines().collect();
    if old_lines == new_lines {
        return String::new();
    }
    let d = TextDiff::configure()
        .timeout(DIFF_TIMEOUT)
        .diff_slices(old_lines.as_slice(), new_lines.as_slice());

    let mut out: Vec<String> = Vec::new();
    for (i, group) in d.grouped_ops(TEXT_DIFF_CONTEXT).iter().enumerate() {
        if i > 0 {
            out.push("…".to_string());
        }
        let mut removed: Vec<&str> = Vec::new();
        let mut added: Vec<&str> = Vec::new();
        for op in group {
            let (tag, old_range, new_range) = op.as_tag_tuple();
            let old_part = old_lines.get(old_range).unwrap_or_default();
            if tag == DiffTag::Equal {
                push_block(&mut out, &mut removed, &mut added);
                out.extend(old_part.iter().map(|l| marked_line(' ', l)));
            } else {
                removed.extend_from_slice(old_part);
                added.extend_from_slice(new_lines.get(new_range).unwrap_or_default());
            }
        }
        push_block(&mut out, &mut removed, &mut added);
    }
    out.join("\n")
}

/// `marker` and a space before `text`, without trailing whitespace for an empty line.
fn marked_line(marker: char, text: &str) -> String {
    if text.is_empty() {
        marker.to_string().trim_end().to_string()
    } else {
        format!("{marker} {text}")
    }
}

/// Word-diff attempts per block of changed lines; past it the remaining lines are shown
/// unmarked, so a rewritten page costs no more than a few hundred short word diffs.
const MAX_PAIR_ATTEMPTS: usize = 256;

/// Writes one block of changed lines (all `-` then all `+`) and empties it.
///
/// Each removed line is paired, in order, with the next added line similar enough to mark
/// (see [`word_emphasis`]); pairs never cross, so a line inserted before an edited one (or a
/// renumbered list) still pairs each edit with its own line. Empty lines are not paired.
fn push_block(out: &mut Vec<String>, removed: &mut Vec<&str>, added: &mut Vec<&str>) {
    let mut removed_text: Vec<String> = removed.iter().map(|s| s.to_string()).collect();
    let mut added_text: Vec<String> = added.iter().map(|s| s.to_string()).collect();
    let mut attempts = 0;
    let mut next = 0;
    'removed: for (i, old) in removed.iter().enumerate() {
        if old.is_empty() {
            continue;
        }
        for (j, new) in added.iter().enumerate().skip(next) {
            if new.is_empty() {
                continue;
            }
            if attempts == MAX_PAIR_ATTEMPTS {
                break 'removed;
            }
            attempts += 1;
            if let Some((old_marked, new_marked)) = word_emphasis(old, new) {
                removed_text[i] = old_marked;
                added_text[j] = new_marked;
                next = j + 1;
                break;
            }
        }
    }
    out.extend(removed_text.iter().map(|l| marked_line('-', l)));
    out.extend(added_text.iter().map(|l| marked_line('+', l)));
    removed.clear();
    added.clear();
}

/// The two lines with their differing words marked, or `None` when they are too different
/// for marking to help.
fn word_emphasis(old: &str, new: &str) -> Option<(String, String)> {
    let d = TextDiff::configure()
        .timeout(DIFF_TIMEOUT)
        .diff_words(old, new);
    if d.ratio() < WORD_EMPHASIS_MIN_RATIO {
        return None;
    }
    let mut old_tokens: Vec<(bool, &str)> = Vec::new();
    let mut new_tokens: Vec<(bool, &str)> = Vec::new();
    for change in d.iter_all_changes() {
        let token = change.value();
        match change.tag() {
            ChangeTag::Equal => {
                old_tokens.push((false, token));
                new_tokens.push((false, token));
            }
            ChangeTag::Delete => old_tokens.push((true, token)),
            ChangeTag::Insert => new_tokens.push((true, token)),
        }
    }
    Some((
        mark_runs(old_tokens, "[-", "-]"),
        mark_runs(new_tokens, "{+", "+}"),
    ))
}

/// Joins tokens, wrapping each run of changed tokens in `open`…`close`. Unchanged whitespace
/// between two changed tokens joins the run (`[-old words-]`, not `[-old-] [-words-]`), and
/// whitespace at the edges of a run stays outside the markers.
fn mark_runs(mut tokens: Vec<(bool, &str)>, open: &str, close: &str) -> String {
    for i in 1..tokens.len().saturating_sub(1) {
        let (changed, text) = tokens[i];
        if !changed && text.trim().is_empty() && tokens[i - 1].0 && tokens[i + 1].0 {
            tokens[i].0 = true;
        }
    }
    let mut out = String::new();
    let mut run = String::new();
    let flush = |run: &mut String, out: &mut String| {
        if run.is_empty() {
            return;
        }
        let core = run.trim();
        if core.is_empty() {
            out.push_str(open);
            out.push_str(run);
            out.push_str(close);
        } else {
            let lead = &run[..run.len() - run.trim_start().len()];
            let trail = &run[run.trim_end().len()..];
            out.push_str(lead);
            out.push_str(open);
            out.push_str(core);
            out.push_str(close);
            out.push_str(trail);
        }
        run.clear();
    };
    for (changed, text) in tokens {
        if changed {
            run.push_str(text);
        } else {
            flush(&mut run, &mut out);
            out.push_str(text);
        }
    }
    flush(&mut run, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A record from `(path, value)` pairs, built in canonical order like the normalizer does.
    fn record(fields: &[(&str, Value)]) -> Record {
        let mut sorted: Vec<&(&str, Value)> = fields.iter().collect();
        sorted.sort_by(|a, b| order_key(a.0).cmp(&order_key(b.0)));
        let mut r = Record::default();
        for (path, value) in sorted {
            r.set(path, value.clone());
        }
        r
    }

    const SITE_PEKING: &str =
        "locations.peking university people's hospital|beijing|beijing municipality|china";
    const SITE_MUNICH: &str = "locations.klinikum der universität münchen|munich||germany";

    fn site(facility: &str, city: &str, country: &str) -> Value {
        json!({"facility": facility, "city": city, "country": country, "status": "RECRUITING"})
    }

    const CRITERIA_V1: &str = "Inclusion Criteria:\n\n1. Age 18 to 65 years.\n2. Primary disease is leukemia or MDS.\n3. Both patients and donors are CMV seropositive.\n\nExclusion Criteria:\n\n1. Participation in another study.\n2. Other adoptive immunotherapy.";
    const CRITERIA_V2: &str = "Inclusion Criteria:\n\n1. Age 15 to 65 years.\n2. Primary disease is leukemia or MDS.\n3. Both patients and donors are CMV seropositive.\n\nExclusion Criteria:\n\n1. Participation in another study.\n2. Other adoptive immunotherapy.\n3. Active hepatitis B.";

    fn v1() -> Record {
        record(&[
            ("identification.nctId", json!("NCT02985775")),
            ("status.overallStatus", json!("RECRUITING")),
            ("status.completionDate", json!("2019-03")),
            ("status.lastUpdatePostDate", json!("2018-01-10")),
            ("design.phases", json!(["PHASE1", "PHASE2"])),
            ("design.enrollmentCount", json!(41)),
            ("eligibility.criteria", json!(CRITERIA_V1)),
            (
                SITE_PEKING,
                site("Peking University People's Hospital", "Beijing", "China"),
            ),
        ])
    }

    fn v2() -> Record {
        record(&[
            ("identification.nctId", json!("NCT02985775")),
            ("status.overallStatus", json!("COMPLETED")),
            ("status.completionDate", json!("2019-09")),
            ("status.lastUpdatePostDate", json!("2020-03-10")),
            ("design.phases", json!(["PHASE1", "PHASE2"])),
            ("design.enrollmentCount", json!(20)),
            ("eligibility.criteria", json!(CRITERIA_V2)),
            (
                SITE_MUNICH,
                site("Klinikum der Universität München", "Munich", "Germany"),
            ),
            (
                SITE_PEKING,
                site("Peking University People's Hospital", "Beijing", "China"),
            ),
        ])
    }

    fn changed(path: &str, old: Value, new: Value) -> FieldChange {
        FieldChange {
            path: path.into(),
            kind: ChangeKind::Changed,
            old: Some(old),
            new: Some(new),
        }
    }

    #[test]
    fn concrete_changes_between_two_versions_in_table_order() {
        let got = diff(Some(&v1()), &v2());
        let want = vec![
            changed(
                "status.overallStatus",
                json!("RECRUITING"),
                json!("COMPLETED"),
            ),
            changed("status.completionDate", json!("2019-03"), json!("2019-09")),
            changed(
                "status.lastUpdatePostDate",
                json!("2018-01-10"),
                json!("2020-03-10"),
            ),
            changed("design.enrollmentCount", json!(41), json!(20)),
            changed(
                "eligibility.criteria",
                json!(CRITERIA_V1),
                json!(CRITERIA_V2),
            ),
            FieldChange {
                path: SITE_MUNICH.into(),
                kind: ChangeKind::Added,
                old: None,
                new: Some(site(
                    "Klinikum der Universität München",
                    "Munich",
                    "Germany",
                )),
            },
        ];
        assert_eq!(got, want);
    }

    #[test]
    fn a_removed_site_carries_only_its_old_value() {
        let got = diff(Some(&v2()), &v1());
        let site_change = got.iter().find(|c| c.path == SITE_MUNICH).unwrap();
        assert_eq!(site_change.kind, ChangeKind::Removed);
        assert!(site_change.old.is_some() && site_change.new.is_none());
    }

    #[test]
    fn first_snapshot_adds_every_present_path() {
        let got = diff(None, &v1());
        let paths: Vec<&str> = got.iter().map(|c| c.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "identification.nctId",
                "status.overallStatus",
                "status.completionDate",
                "status.lastUpdatePostDate",
                "design.phases",
                "design.enrollmentCount",
                "eligibility.criteria",
                SITE_PEKING,
            ]
        );
        assert!(
            got.iter()
                .all(|c| c.kind == ChangeKind::Added && c.old.is_none())
        );
    }

    #[test]
    fn json_value_equality_decides_a_change() {
        let a = record(&[("design.enrollmentCount", json!(20))]);
        let b = record(&[("design.enrollmentCount", json!("20"))]);
        assert_eq!(diff(Some(&a), &b).len(), 1);
        let c = record(&[(
            "sponsor.responsibleParty",
            json!({"type": "SPONSOR", "x": 1}),
        )]);
        let d = record(&[(
            "sponsor.responsibleParty",
            json!({"x": 1, "type": "SPONSOR"}),
        )]);
        assert!(
            diff(Some(&c), &d).is_empty(),
            "object key order is not a change"
        );
    }

    #[test]
    fn apply_rebuilds_the_newer_record_in_canonical_order() {
        let (a, b) = (v1(), v2());
        let got = apply(&a, &diff(Some(&a), &b));
        assert_eq!(got, b);
        assert_eq!(got.canonical_bytes(), b.canonical_bytes());
        // Munich sorts before Peking although it was added after it.
        let keys: Vec<String> = got.fields().map(|(p, _)| p).collect();
        let munich = keys.iter().position(|p| p == SITE_MUNICH).unwrap();
        let peking = keys.iter().position(|p| p == SITE_PEKING).unwrap();
        assert!(munich < peking);
    }

    #[test]
    fn criteria_edit_reads_as_a_word_marked_line_diff() {
        let got = text_diff(CRITERIA_V1, CRITERIA_V2);
        let want = [
            "  Inclusion Criteria:",
            "",
            "- 1. Age [-18-] to 65 years.",
            "+ 1. Age {+15+} to 65 years.",
            "  2. Primary disease is leukemia or MDS.",
            "  3. Both patients and donors are CMV seropositive.",
            "…",
            "  1. Participation in another study.",
            "  2. Other adoptive immunotherapy.",
            "+ 3. Active hepatitis B.",
        ]
        .join("\n");
        assert_eq!(got, want, "\n{got}");
    }

    #[test]
    fn adjacent_changed_words_form_one_marked_run() {
        let got = text_diff(
            "Patients aged 18 years or older with leukemia.",
            "Patients aged 15 years and over with leukemia.",
        );
        assert_eq!(
            got,
            "- Patients aged [-18-] years [-or older-] with leukemia.\n\
             + Patients aged {+15+} years {+and over+} with leukemia."
        );
    }

    #[test]
    fn an_inserted_item_does_not_misalign_the_marked_pairs() {
        let old = "1. Leukemia or MDS.\n2. Age 18 to 65 years.\n3. Written consent.";
        let new = "1. Leukemia or MDS.\n2. Haploidentical donor available.\n3. Age 16 to 65 years.\n4. Written consent.";
        let want = [
            "  1. Leukemia or MDS.",
            "- [-2.-] Age [-18-] to 65 years.",
            "- [-3.-] Written consent.",
            "+ 2. Haploidentical donor available.",
            "+ {+3.+} Age {+16+} to 65 years.",
            "+ {+4.+} Written consent.",
        ]
        .join("\n");
        assert_eq!(text_diff(old, new), want);
    }

    #[test]
    fn rewritten_lines_are_not_word_marked() {
        let got = text_diff(
            "Adults with leukemia.",
            "Children under twelve years of age.",
        );
        assert_eq!(
            got,
            "- Adults with leukemia.\n+ Children under twelve years of age."
        );
    }

    #[test]
    fn equal_texts_have_an_empty_diff_and_a_final_newline_is_no_change() {
        assert_eq!(text_diff(CRITERIA_V1, CRITERIA_V1), "");
        assert_eq!(text_diff("a\nb", "a\nb\n"), "");
        assert_eq!(text_diff("", "one"), "+ one");
        assert_eq!(text_diff("one", ""), "- one");
    }

    #[test]
    fn distant_changes_are_separate_hunks() {
        let old: Vec<String> = (1..=12).map(|i| format!("line {i}")).collect();
        let mut new = old.clone();
        new[0] = "first".into();
        new[11] = "last".into();
        let got = text_diff(&old.join("\n"), &new.join("\n"));
        let want = "\
- line 1
+ first
  line 2
  line 3
…
  line 10
  line 11
- line 12
+ last";
        assert_eq!(got, want);
    }

    #[test]
    fn long_text_rule() {
        assert!(is_long_text("eligibility.criteria", &json!("short")));
        assert!(is_long_text(
            "identification.officialTitle",
            &json!("x".repeat(81))
        ));
        assert!(!is_long_text(
            "identification.officialTitle",
            &json!("x".repeat(80))
        ));
        assert!(is_long_text("identification.briefTitle", &json!("a\nb")));
        assert!(!is_long_text("design.enrollmentCount", &json!(41)));
        assert!(!is_long_text("design.phases", &json!(["PHASE1", "PHASE2"])));
        let outcomes = json!([{"measure": "Survival", "timeFrame": "6 months", "description": "d".repeat(90)}]);
        assert!(is_long_text("outcomes.primary", &outcomes));
        let contacts = json!([{"name": "Dr. Wang", "role": "CONTACT"}]);
        assert!(!is_long_text("contacts.central", &contacts));
        assert!(!is_long_text(
            SITE_PEKING,
            &site("Peking University People's Hospital", "Beijing", "China")
        ));
    }

    #[test]
    fn list_of_objects_diffs_as_key_value_blocks() {
        let old = json!([{"measure": "Survival", "timeFrame": "6 months"}]);
        let new = json!([{"measure": "Survival", "timeFrame": "12 months"},
                         {"measure": "Relapse", "timeFrame": "12 months", "description": "two\nlines"}]);
        assert_eq!(
            value_text(&new),
            "measure: Survival\ntimeFrame: 12 months\n\nmeasure: Relapse\ntimeFrame: 12 months\ndescription: two\n  lines"
        );
        let got = text_diff(&value_text(&old), &value_text(&new));
        assert!(
            got.contains("- timeFrame: [-6-] months\n+ timeFrame: {+12+} months"),
            "{got}"
        );
        assert!(got.ends_with("+ description: two\n+   lines"), "{got}");
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;
        use std::collections::{BTreeMap, BTreeSet};

        /// Real paths of every section plus a few site keys (some with `.` and unicode), so
        /// generated pairs share sites often enough to exercise `changed` locations.
        fn path() -> impl Strategy<Value = String> {
            let mut paths: Vec<String> = schema::all_paths()
                .filter(|p| !p.starts_with("locations."))
                .collect();
            paths.extend(
                [
                    "st. mary's|london||united kingdom",
                    "peking university people's hospital|beijing|beijing municipality|china",
                    "klinikum der universität münchen|munich||germany",
                    "||",
                    "mayo clinic|rochester|minnesota|united states",
                ]
                .iter()
                .map(|k| format!("locations.{k}")),
            );
            prop::sample::select(paths)
        }

        fn value() -> impl Strategy<Value = Value> {
            let leaf = prop_oneof![
                prop::sample::select(vec!["RECRUITING", "COMPLETED", "2019-03", "2019-09", "x"])
                    .prop_map(Value::from),
                "[a-zé \n]{0,12}".prop_map(Value::from),
                (0i64..50).prop_map(Value::from),
                any::<i64>().prop_map(Value::from),
                any::<bool>().prop_map(Value::from),
            ];
            leaf.prop_recursive(2, 12, 4, |inner| {
                prop_oneof![
                    prop::collection::vec(inner.clone(), 1..4).prop_map(Value::Array),
                    prop::collection::btree_map("[a-z]{1,6}", inner, 1..4)
                        .prop_map(|m| Value::Object(m.into_iter().collect())),
                ]
            })
        }

        fn fields() -> impl Strategy<Value = BTreeMap<String, Value>> {
            prop::collection::btree_map(path(), value(), 0..10)
        }

        fn build(fields: &BTreeMap<String, Value>) -> Record {
            let pairs: Vec<(&str, Value)> = fields
                .iter()
                .map(|(p, v)| (p.as_str(), v.clone()))
                .collect();
            record(&pairs)
        }

        /// Two related records: shared fields, each side's own overrides, and paths dropped
        /// from one side only.
        fn pair() -> impl Strategy<Value = (Record, Record)> {
            (
                fields(),
                fields(),
                fields(),
                prop::collection::btree_set(path(), 0..4),
                prop::collection::btree_set(path(), 0..4),
            )
                .prop_map(|(common, only_a, only_b, drop_a, drop_b)| {
                    let side = |own: BTreeMap<String, Value>, drop: BTreeSet<String>| {
                        let mut m = common.clone();
                        m.extend(own);
                        m.retain(|p, _| !drop.contains(p));
                        build(&m)
                    };
                    (side(only_a, drop_a), side(only_b, drop_b))
                })
        }

        fn mirrored(c: &FieldChange) -> FieldChange {
            FieldChange {
                path: c.path.clone(),
                kind: match c.kind {
                    ChangeKind::Added => ChangeKind::Removed,
                    ChangeKind::Removed => ChangeKind::Added,
                    ChangeKind::Changed => ChangeKind::Changed,
                },
                old: c.new.clone(),
                new: c.old.clone(),
            }
        }

        proptest! {
            #[test]
            fn a_record_has_no_changes_against_itself((a, _) in pair()) {
                prop_assert!(diff(Some(&a), &a).is_empty());
            }

            #[test]
            fn applying_the_diff_gives_the_newer_record((a, b) in pair()) {
                let got = apply(&a, &diff(Some(&a), &b));
                prop_assert_eq!(&got, &b);
                prop_assert_eq!(got.canonical_bytes(), b.canonical_bytes());
            }

            #[test]
            fn first_snapshot_is_every_path_added((_, b) in pair()) {
                let changes = diff(None, &b);
                let paths: Vec<String> = changes.iter().map(|c| c.path.clone()).collect();
                let want: Vec<String> = b.fields().map(|(p, _)| p).collect();
                prop_assert_eq!(paths, want);
                for c in &changes {
                    prop_assert_eq!(c.kind, ChangeKind::Added);
                    prop_assert!(c.old.is_none());
                    prop_assert_eq!(c.new.as_ref(), b.get(&c.path));
                }
                prop_assert_eq!(apply(&Record::default(), &changes), b);
            }

            #[test]
            fn changes_are_unique_ordered_and_well_formed((a, b) in pair()) {
                let changes = diff(Some(&a), &b);
                for w in changes.windows(2) {
                    prop_assert!(order_key(&w[0].path) < order_key(&w[1].path),
                        "{} before {}", w[0].path, w[1].path);
                }
                for c in &changes {
                    match c.kind {
                        ChangeKind::Added => prop_assert!(c.old.is_none() && c.new.is_some()),
                        ChangeKind::Removed => prop_assert!(c.old.is_some() && c.new.is_none()),
                        ChangeKind::Changed => prop_assert!(c.old.is_some() && c.new.is_some() && c.old != c.new),
                    }
                    prop_assert_eq!(c.old.as_ref(), a.get(&c.path));
                    prop_assert_eq!(c.new.as_ref(), b.get(&c.path));
                }
            }

            #[test]
            fn diffs_in_both_directions_mirror_each_other((a, b) in pair()) {
                let forward: Vec<FieldChange> = diff(Some(&a), &b).iter().map(mirrored).collect();
                prop_assert_eq!(forward, diff(Some(&b), &a));
            }

            #[test]
            fn text_diff_lines_are_always_marked(
                old in "[ab \n]{0,40}",
                new in "[ab \n]{0,40}",
            ) {
                let out = text_diff(&old, &new);
                prop_assert_eq!(out.is_empty(), old.lines().eq(new.lines()));
                for line in out.lines() {
                    prop_assert!(
                        line.is_empty() || line == "…" || line == "-" || line == "+"
                            || line.starts_with("- ") || line.starts_with("+ ") || line.starts_with("  "),
                        "{:?}", line
                    );
                }
            }
        }
    }
}
