//! The export's tables: the index page of all trials (`index.md`) and every field change as
//! `changes.csv` (RFC 4180) and `changes.jsonl` (one `trialwatch changes --json` row a line).
//! Pure.
//!
//! The CSV is written by hand: RFC 4180 needs only "quote a field holding a comma, quote, CR
//! or LF, doubling its quotes; end records with CRLF", a few lines here against a dependency.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

use crate::model::Severity;

/// One line of the index: a trial as it stands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrialRow {
    /// The trial's NCT ID.
    pub nct_id: String,
    /// Its brief title.
    pub title: String,
    /// `status.overallStatus`.
    pub status: Option<String>,
    /// `design.phases`, joined with ", ".
    pub phase: Option<String>,
    /// `sponsor.lead`.
    pub sponsor: Option<String>,
    /// When its latest version was detected.
    pub last_change: Option<DateTime<Utc>>,
    /// The highest severity of its latest version's changes (none for a first snapshot).
    pub severity: Option<Severity>,
}

/// One field change as a row of `changes.csv`/`changes.jsonl`: exactly a row of
/// `trialwatch changes --json` (`{nct_id, version, detected_at, path, kind, old?, new?,
/// severity, summary}`), kept as JSON so the shape is the CLI's.
pub type ChangeRow = serde_json::Value;

/// A Markdown table cell: one line, pipes escaped.
fn cell(s: &str) -> String {
    let one_line: String = s
        .chars()
        .map(|c| if c == '\n' || c == '\r' { ' ' } else { c })
        .collect();
    one_line.replace('\\', "\\\\").replace('|', "\\|")
}

/// `index.md`: every trial, by NCT ID, with links to its page and feed.
pub fn index_markdown(rows: &[TrialRow]) -> String {
    let mut s = String::from("# Trials\n\n");
    s.push_str(&format!(
        "{}. Every field change: [changes.csv](changes.csv), [changes.jsonl](changes.jsonl); feed: [feeds/all.atom](feeds/all.atom).\n\n",
        crate::util::text::plural(rows.len(), "trial")
    ));
    s.push_str("| Trial | Title | Status | Phase | Sponsor | Last change | Severity |\n");
    s.push_str("|---|---|---|---|---|---|---|\n");
    for r in rows {
        s.push_str(&format!(
            "| [{id}](trials/{id}.md) ([feed](feeds/{id}.atom)) | {} | {} | {} | {} | {} | {} |\n",
            cell(&r.title),
            cell(r.status.as_deref().unwrap_or("")),
            cell(r.phase.as_deref().unwrap_or("")),
            cell(r.sponsor.as_deref().unwrap_or("")),
            r.last_change
                .map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
                .unwrap_or_default(),
            r.severity.map(|s| s.to_string()).unwrap_or_default(),
            id = cell(&r.nct_id),
        ));
    }
    s
}

/// One RFC 4180 field.
pub fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\r', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

fn text_of(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::Null => String::new(),
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The columns of `changes.csv`, in order.
pub const CSV_COLUMNS: [&str; 7] = [
    "nct_id",
    "version",
    "detected_at",
    "severity",
    "path",
    "kind",
    "summary",
];

/// `changes.csv`: a header and one record per change, CRLF line ends.
pub fn changes_csv(rows: &[ChangeRow]) -> String {
    let mut s = CSV_COLUMNS.join(",");
    s.push_str("\r\n");
    s.push_str(&csv_records(rows));
    s
}

/// The records of `changes.csv` for `rows`, without the header: one trial's piece of the
/// table, which a re-export keeps and joins with the others'.
pub fn csv_records(rows: &[ChangeRow]) -> String {
    let mut s = String::new();
    for r in rows {
        let fields: Vec<String> = CSV_COLUMNS
            .iter()
            .map(|c| csv_field(&text_of(r.get(*c).unwrap_or(&serde_json::Value::Null))))
            .collect();
        s.push_str(&fields.join(","));
        s.push_str("\r\n");
    }
    s
}

/// `changes.jsonl`: one compact JSON row a line.
pub fn changes_jsonl(rows: &[ChangeRow]) -> String {
    let mut s = String::new();
    for r in rows {
        s.push_str(&r.to_string());
        s.push('\n');
    }
    s
}

/// A time as the rows carry it (RFC 3339, as `changes --json` prints it).
pub fn row_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quotes_per_rfc_4180() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("two\nlines"), "\"two\nlines\"");
        let rows = vec![serde_json::json!({
            "nct_id": "NCT00000102", "version": 2, "detected_at": "2026-05-12T06:28:15Z",
            "path": "status.whyStopped", "kind": "added", "new": "x",
            "severity": "critical", "summary": "stopped, \"safety\""
        })];
        assert_eq!(
            changes_csv(&rows),
            "nct_id,version,detected_at,severity,path,kind,summary\r\n\
             NCT00000102,2,2026-05-12T06:28:15Z,critical,status.whyStopped,added,\"stopped, \"\"safety\"\"\"\r\n"
        );
    }

    #[test]
    fn index_cells_stay_in_their_column() {
        let rows = vec![TrialRow {
            nct_id: "NCT00000102".into(),
            title: "A | B\nC".into(),
            status: Some("RECRUITING".into()),
            phase: None,
            sponsor: None,
            last_change: None,
            severity: None,
        }];
        let md = index_markdown(&rows);
        assert!(md.contains("| A \\| B C | RECRUITING |"), "{md}");
    }
}
