//! Readable line and word diffs of long text, computed once and shown two ways.
//!
//! [`line_diff`] compares two texts line by line and returns a [`LineDiff`]: hunks of changed
//! lines with a little unchanged context, each line cut into [`Segment`]s that say which words
//! changed. Two formatters read it:
//! - [`text_diff`], for a plain terminal (`trialwatch diff`): `- `/`+ ` lines, `[-old-]` and
//!   `{+new+}` around the words that changed, `…` between hunks;
//! - [`unified_lines`], for email: unified-diff hunks (`@@ -a,b +c,d @@`, then ` `/`-`/`+`
//!   lines), without word marks.
//!
//! The only module that uses the `similar` crate. Not here: which values count as long text
//! and how a value becomes text ([`crate::diff`]; the email has its own rule), nor where a diff
//! goes in a report or a message ([`super::text`], [`crate::notify`]).

use std::ops::Range;
use std::time::Duration;

use similar::{ChangeTag, DiffTag, TextDiff};

/// Unchanged lines shown around each change, in both formatters.
pub const TEXT_DIFF_CONTEXT: usize = 2;

/// A diff gives up looking for the best alignment after this long and settles for a valid,
/// coarser one, so a pathological input cannot stall a sync or a terminal.
const DIFF_TIMEOUT: Duration = Duration::from_millis(500);

/// Below this similarity (0..=1, by words) a changed line pair is shown as plain `-`/`+`
/// lines: marking nearly every word of a rewritten line helps nobody.
const WORD_EMPHASIS_MIN_RATIO: f32 = 0.5;

/// Word-diff attempts per block of changed lines; past it the remaining lines are shown
/// unmarked, so a rewritten page costs no more than a few hundred short word diffs.
const MAX_PAIR_ATTEMPTS: usize = 256;

/// The line diff of two texts: what every formatter shows. Borrows from the texts.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LineDiff<'a> {
    /// Runs of changed lines with [`TEXT_DIFF_CONTEXT`] unchanged lines around them, in text
    /// order; empty when the texts' lines are equal.
    pub hunks: Vec<Hunk<'a>>,
}

impl LineDiff<'_> {
    /// Whether the texts have equal lines (nothing to show).
    pub fn is_empty(&self) -> bool {
        self.hunks.is_empty()
    }
}

/// One run of changes with its context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hunk<'a> {
    /// The lines of the old text the hunk covers (0-based indices of [`str::lines`]), for a
    /// unified-diff header.
    pub old_lines: Range<usize>,
    /// The lines of the new text the hunk covers, likewise.
    pub new_lines: Range<usize>,
    /// Context, removed and added lines in display order: within a block of changed lines,
    /// all removed lines come before all added ones.
    pub lines: Vec<DiffLine<'a>>,
}

/// One line of a hunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiffLine<'a> {
    /// Whether the line is unchanged context, only in the old text or only in the new one.
    pub kind: LineKind,
    /// The line's text in order. A removed line paired with a similar added line (and that
    /// added line) marks the words that differ as changed; any other line is one unchanged
    /// segment.
    pub segments: Vec<Segment<'a>>,
}

impl DiffLine<'_> {
    /// The whole line, without marks.
    pub fn text(&self) -> String {
        self.segments.iter().map(|s| s.text).collect()
    }

    fn whole(kind: LineKind, text: &str) -> DiffLine<'_> {
        DiffLine {
            kind,
            segments: vec![Segment {
                text,
                changed: false,
            }],
        }
    }
}

/// Where a [`DiffLine`] comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineKind {
    /// In both texts, shown around changes.
    Context,
    /// Only in the old text.
    Removed,
    /// Only in the new text.
    Added,
}

/// A piece of a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment<'a> {
    /// The words (and the whitespace between them) this piece covers.
    pub text: &'a str,
    /// Whether these words differ from the paired line. A changed run never starts or ends
    /// with whitespace unless it is only whitespace, and unchanged whitespace between two
    /// changed words belongs to the run, so marks read `[-or older-]`, not `[-or-] [-older-]`.
    pub changed: bool,
}

/// The line diff of `old` and `new`; empty when their lines are equal.
///
/// Lines are split with [`str::lines`], so `\r\n` and a final newline are not differences.
/// Each change gets [`TEXT_DIFF_CONTEXT`] unchanged lines around it; changes closer than twice
/// that share a hunk. Within a block of changed lines, each removed line is paired with the
/// next similar added line and the words that differ are marked; lines too different to pair
/// are whole unchanged segments.
pub fn line_diff<'a>(old: &'a str, new: &'a str) -> LineDiff<'a> {
    let old_lines: Vec<&str> = old.lines().collect();
    let new_lines: Vec<&str> = new.lines().collect();
    if old_lines == new_lines {
        return LineDiff::default();
    }
    let d = TextDiff::configure()
        .timeout(DIFF_TIMEOUT)
        .diff_slices(old_lines.as_slice(), new_lines.as_slice());

    let mut hunks = Vec::new();
    for group in d.grouped_ops(TEXT_DIFF_CONTEXT) {
        let (Some(first), Some(last)) = (group.first(), group.last()) else {
            continue;
        };
        let mut lines: Vec<DiffLine<'a>> = Vec::new();
        let mut removed: Vec<&'a str> = Vec::new();
        let mut added: Vec<&'a str> = Vec::new();
        for op in &group {
            let (tag, old_range, new_range) = op.as_tag_tuple();
            let old_part = old_lines.get(old_range).unwrap_or_default();
            if tag == DiffTag::Equal {
                push_block(&mut lines, &mut removed, &mut added);
                lines.extend(
                    old_part
                        .iter()
                        .map(|l| DiffLine::whole(LineKind::Context, l)),
                );
            } else {
                removed.extend_from_slice(old_part);
                added.extend_from_slice(new_lines.get(new_range).unwrap_or_default());
            }
        }
        push_block(&mut lines, &mut removed, &mut added);
        hunks.push(Hunk {
            old_lines: first.old_range().start..last.old_range().end,
            new_lines: first.new_range().start..last.new_range().end,
            lines,
        });
    }
    LineDiff { hunks }
}

/// Writes one block of changed lines (all removed then all added) and empties it.
///
/// Each removed line is paired, in order, with the next added line similar enough to mark
/// (see [`word_emphasis`]); pairs never cross, so a line inserted before an edited one (or a
/// renumbered list) still pairs each edit with its own line. Empty lines are not paired.
fn push_block<'a>(
    out: &mut Vec<DiffLine<'a>>,
    removed: &mut Vec<&'a str>,
    added: &mut Vec<&'a str>,
) {
    let mut removed_lines: Vec<DiffLine<'a>> = removed
        .iter()
        .map(|l| DiffLine::whole(LineKind::Removed, l))
        .collect();
    let mut added_lines: Vec<DiffLine<'a>> = added
        .iter()
        .map(|l| DiffLine::whole(LineKind::Added, l))
        .collect();
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
            if let Some((old_segments, new_segments)) = word_emphasis(old, new) {
                removed_lines[i].segments = old_segments;
                added_lines[j].segments = new_segments;
                next = j + 1;
                break;
            }
        }
    }
    out.append(&mut removed_lines);
    out.append(&mut added_lines);
    removed.clear();
    added.clear();
}

/// The two lines cut into unchanged and changed words, or `None` when they are too different
/// for marking to help.
fn word_emphasis<'a>(old: &'a str, new: &'a str) -> Option<(Vec<Segment<'a>>, Vec<Segment<'a>>)> {
    let d = TextDiff::configure()
        .timeout(DIFF_TIMEOUT)
        .diff_words(old, new);
    if d.ratio() < WORD_EMPHASIS_MIN_RATIO {
        return None;
    }
    // (changed, byte length) per token; each side's tokens spell its line in order.
    let mut old_tokens: Vec<(bool, usize)> = Vec::new();
    let mut new_tokens: Vec<(bool, usize)> = Vec::new();
    for change in d.iter_all_changes() {
        let len = change.value().len();
        match change.tag() {
            ChangeTag::Equal => {
                old_tokens.push((false, len));
                new_tokens.push((false, len));
            }
            ChangeTag::Delete => old_tokens.push((true, len)),
            ChangeTag::Insert => new_tokens.push((true, len)),
        }
    }
    Some((segments(old, &old_tokens)?, segments(new, &new_tokens)?))
}

/// `line` cut into segments from its word tokens (changed or not, and their byte lengths, in
/// order). Unchanged whitespace between two changed tokens joins the changed run, and
/// whitespace at the edges of a run stays outside it. `None` if the tokens do not spell the
/// line (never expected; the line is then shown unmarked).
fn segments<'a>(line: &'a str, tokens: &[(bool, usize)]) -> Option<Vec<Segment<'a>>> {
    let mut pieces: Vec<(bool, &str)> = Vec::with_capacity(tokens.len());
    let mut pos = 0;
    for &(changed, len) in tokens {
        pieces.push((changed, line.get(pos..pos + len)?));
        pos += len;
    }
    if pos != line.len() {
        return None;
    }
    for i in 1..pieces.len().saturating_sub(1) {
        let (changed, text) = pieces[i];
        if !changed && text.trim().is_empty() && pieces[i - 1].0 && pieces[i + 1].0 {
            pieces[i].0 = true;
        }
    }
    let mut out: Vec<Segment<'a>> = Vec::new();
    let mut push = |text: &'a str, changed: bool| {
        if !text.is_empty() {
            out.push(Segment { text, changed });
        }
    };
    let mut start = 0;
    let mut i = 0;
    while i < pieces.len() {
        let changed = pieces[i].0;
        let mut end = start;
        while i < pieces.len() && pieces[i].0 == changed {
            end += pieces[i].1.len();
            i += 1;
        }
        let run = line.get(start..end)?;
        let core = run.trim();
        if !changed || core.is_empty() {
            push(run, changed);
        } else {
            let lead = run.len() - run.trim_start().len();
            push(&run[..lead], false);
            push(core, true);
            push(&run[lead + core.len()..], false);
        }
        start = end;
    }
    Some(out)
}

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
    let mut out: Vec<String> = Vec::new();
    for (i, hunk) in line_diff(old, new).hunks.iter().enumerate() {
        if i > 0 {
            out.push("…".to_string());
        }
        for line in &hunk.lines {
            let (marker, open, close) = match line.kind {
                LineKind::Context => (' ', "", ""),
                LineKind::Removed => ('-', "[-", "-]"),
                LineKind::Added => ('+', "{+", "+}"),
            };
            let mut text = String::new();
            for s in &line.segments {
                if s.changed {
                    text.push_str(open);
                    text.push_str(s.text);
                    text.push_str(close);
                } else {
                    text.push_str(s.text);
                }
            }
            out.push(marked_line(marker, &text));
        }
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

/// A unified line diff of two texts, for email: per hunk a `@@ -a,b +c,d @@` header (1-based
/// start line and line count, as `diff -u` writes them), then each line prefixed with ` `
/// (context), `-` (only in `old`) or `+` (only in `new`), without word marks. Empty when the
/// texts' lines are equal.
pub fn unified_lines(old: &str, new: &str) -> Vec<String> {
    let mut lines = Vec::new();
    for hunk in line_diff(old, new).hunks {
        lines.push(format!(
            "@@ -{} +{} @@",
            unified_range(&hunk.old_lines),
            unified_range(&hunk.new_lines)
        ));
        for line in &hunk.lines {
            let sign = match line.kind {
                LineKind::Context => ' ',
                LineKind::Removed => '-',
                LineKind::Added => '+',
            };
            lines.push(format!("{sign}{}", line.text()));
        }
    }
    lines
}

/// A hunk's line range in a unified-diff header: `start,count` (1-based), just `start` for one
/// line, and for no lines the line before the range with count 0.
fn unified_range(lines: &Range<usize>) -> String {
    let len = lines.end.saturating_sub(lines.start);
    match len {
        1 => (lines.start + 1).to_string(),
        0 => format!("{},0", lines.start),
        _ => format!("{},{len}", lines.start + 1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diff::value_text;
    use serde_json::json;

    // The same criteria as `crate::diff`'s tests, version 1 and 2 of NCT02241018.
    const CRITERIA_V1: &str = "Inclusion Criteria:\n\n1. Age 18 to 65 years.\n2. Primary disease is leukemia or MDS.\n3. Both patients and donors are CMV seropositive.\n\nExclusion Criteria:\n\n1. Participation in another study.\n2. Other adoptive immunotherapy.";
    const CRITERIA_V2: &str = "Inclusion Criteria:\n\n1. Age 15 to 65 years.\n2. Primary disease is leukemia or MDS.\n3. Both patients and donors are CMV seropositive.\n\nExclusion Criteria:\n\n1. Participation in another study.\n2. Other adoptive immunotherapy.\n3. Active hepatitis B.";

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

    #[test]
    fn unified_headers_count_lines_like_diff_u() {
        assert_eq!(unified_lines("a", "b"), ["@@ -1 +1 @@", "-a", "+b"]);
        assert_eq!(unified_lines("", "one"), ["@@ -0,0 +1 @@", "+one"]);
        assert_eq!(
            unified_lines("a\nb\nc", "a\nc"),
            ["@@ -1,3 +1,2 @@", " a", "-b", " c"]
        );
        assert!(unified_lines("a\nb", "a\nb\n").is_empty());
    }

    #[test]
    fn segments_spell_the_line_and_mark_the_changed_words() {
        let d = line_diff(
            "Patients aged 18 years or older.",
            "Patients aged 15 years and over.",
        );
        let removed = &d.hunks[0].lines[0];
        assert_eq!(removed.kind, LineKind::Removed);
        assert_eq!(removed.text(), "Patients aged 18 years or older.");
        let changed: Vec<&str> = removed
            .segments
            .iter()
            .filter(|s| s.changed)
            .map(|s| s.text)
            .collect();
        assert_eq!(changed, ["18", "or older."]);
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        proptest! {
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

            #[test]
            fn both_formats_show_the_same_lines(
                old in "[ab \n]{0,40}",
                new in "[ab \n]{0,40}",
            ) {
                let d = line_diff(&old, &new);
                let unified: Vec<String> = unified_lines(&old, &new)
                    .into_iter()
                    .filter(|l| !l.starts_with("@@"))
                    .collect();
                let lines: Vec<String> = d
                    .hunks
                    .iter()
                    .flat_map(|h| h.lines.iter().map(|l| l.text()))
                    .collect();
                prop_assert_eq!(unified.len(), lines.len());
                for (u, l) in unified.iter().zip(&lines) {
                    prop_assert_eq!(&u[1..], l.as_str());
                }
            }
        }
    }
}
