//! Atom feeds (RFC 4287) of stored versions: one entry per version, its changes with severity
//! and summary as XHTML content. Pure: the caller passes the versions.
//!
//! The XML is written by hand with [`xml_text`] escaping every piece of CT.gov text: the
//! documents are a fixed, shallow shape, and the one rule that matters (escape `<`, `&`, `>`,
//! quotes, and drop characters XML 1.0 cannot carry) is easier to check here than through a
//! writer crate's API.
//!
//! Entry ids (`urn:trialwatch:NCT…:v3`) are made from the trial and the stored version number,
//! which never change, so a reader never sees an entry twice. A feed's `updated` is its newest
//! entry's, so re-exporting an unchanged store writes the same bytes.

use std::fmt::Write as _;

use chrono::{DateTime, SecondsFormat, Utc};

use super::PublishedVersion;

/// Where the feed's links point.
pub struct FeedMeta<'a> {
    /// A stable id for the whole feed (`all`, an NCT ID, a query watch's name).
    pub key: &'a str,
    /// The feed's human title.
    pub title: &'a str,
    /// The web page this feed is about (CT.gov's page for one trial), if any.
    pub alternate: Option<&'a str>,
}

/// Escape `s` for XML text or a double-quoted attribute, dropping characters XML 1.0 forbids
/// (control characters other than tab, newline and carriage return).
pub fn xml_text(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => {}
            c => out.push(c),
        }
    }
    out
}

fn time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// The CT.gov page of a trial.
pub fn ctgov_link(nct: &str) -> String {
    format!("https://clinicaltrials.gov/study/{nct}")
}

/// The stable id of one version's entry.
pub fn entry_id(nct: &str, version: u32) -> String {
    format!("urn:trialwatch:{nct}:v{version}")
}

/// An Atom feed of `versions`, newest first as given; `updated` is the newest entry's time
/// (the Unix epoch for an empty feed, so the bytes stay the same until something happens).
pub fn feed(meta: &FeedMeta<'_>, versions: &[&PublishedVersion]) -> String {
    let updated = versions.iter().map(|v| v.detected_at).max();
    let entries: Vec<String> = versions.iter().map(|v| entry_xml(v)).collect();
    let refs: Vec<&str> = entries.iter().map(String::as_str).collect();
    feed_of_entries(meta, updated, &refs)
}

/// A feed of entries already made by [`entry_xml`] (newest first as given), `updated` being the
/// newest entry's time: what [`feed`] writes, for a caller that keeps rendered entries (a
/// re-export assembles `all.atom` from each trial's cached entries).
pub fn feed_of_entries(
    meta: &FeedMeta<'_>,
    updated: Option<DateTime<Utc>>,
    entries: &[&str],
) -> String {
    let updated = updated.unwrap_or(DateTime::<Utc>::UNIX_EPOCH);
    let mut x = String::new();
    x.push_str("<?xml version=\"1.0\" encoding=\"utf-8\"?>\n");
    x.push_str("<feed xmlns=\"http://www.w3.org/2005/Atom\">\n");
    let _ = writeln!(x, "  <id>urn:trialwatch:feed:{}</id>", xml_text(meta.key));
    let _ = writeln!(x, "  <title>{}</title>", xml_text(meta.title));
    let _ = writeln!(x, "  <updated>{}</updated>", time(updated));
    x.push_str("  <author><name>trialwatch</name></author>\n");
    x.push_str("  <generator>trialwatch</generator>\n");
    if let Some(href) = meta.alternate {
        let _ = writeln!(
            x,
            "  <link rel=\"alternate\" type=\"text/html\" href=\"{}\"/>",
            xml_text(href)
        );
    }
    for e in entries {
        x.push_str(e);
    }
    x.push_str("</feed>\n");
    x
}

/// One version's `<entry>` element, as a feed lists it.
pub fn entry_xml(v: &PublishedVersion) -> String {
    let mut x = String::new();
    entry(&mut x, v);
    x
}

fn entry(x: &mut String, v: &PublishedVersion) {
    let what = if v.first {
        "first snapshot".to_string()
    } else {
        let n = v.changes.len();
        format!(
            "{n} change{} ({})",
            if n == 1 { "" } else { "s" },
            v.severity()
        )
    };
    let title = format!("{} v{}: {} — {}", v.nct_id, v.version, what, v.title);
    x.push_str("  <entry>\n");
    let _ = writeln!(x, "    <id>{}</id>", entry_id(&v.nct_id, v.version));
    let _ = writeln!(x, "    <title>{}</title>", xml_text(&title));
    let _ = writeln!(x, "    <updated>{}</updated>", time(v.detected_at));
    let _ = writeln!(
        x,
        "    <link rel=\"alternate\" type=\"text/html\" href=\"{}\"/>",
        xml_text(&ctgov_link(&v.nct_id))
    );
    let _ = writeln!(
        x,
        "    <category term=\"{}\" label=\"severity\"/>",
        v.severity()
    );
    x.push_str("    <content type=\"xhtml\">\n");
    x.push_str("      <div xmlns=\"http://www.w3.org/1999/xhtml\">\n");
    let _ = writeln!(
        x,
        "        <p><a href=\"{}\">{}</a> version {}{}</p>",
        xml_text(&ctgov_link(&v.nct_id)),
        xml_text(&v.nct_id),
        v.version,
        if v.backfilled {
            " (from CT.gov's record history)"
        } else {
            ""
        }
    );
    if v.first {
        x.push_str("        <p>The first snapshot trialwatch stored of this trial.</p>\n");
    } else {
        x.push_str("        <ul>\n");
        for c in &v.changes {
            let _ = writeln!(
                x,
                "          <li><strong>{}</strong> <code>{}</code>: {}</li>",
                c.severity,
                xml_text(&c.path),
                xml_text(&c.summary)
            );
        }
        x.push_str("        </ul>\n");
    }
    x.push_str("      </div>\n    </content>\n  </entry>\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Severity;
    use crate::publish::PublishedChange;

    fn version(title: &str, summary: &str) -> PublishedVersion {
        PublishedVersion {
            nct_id: "NCT00000102".into(),
            title: title.into(),
            version: 3,
            detected_at: "2026-05-12T06:28:15Z".parse().unwrap(),
            first: false,
            backfilled: false,
            changes: vec![PublishedChange {
                path: "status.overallStatus".into(),
                kind: "changed".into(),
                severity: Severity::Critical,
                summary: summary.into(),
            }],
        }
    }

    #[test]
    fn ct_gov_text_is_escaped_and_control_characters_dropped() {
        let v = version("<script>alert(1)</script> & co", "a \u{1} \"b\" <i>");
        let meta = FeedMeta {
            key: "all",
            title: "all",
            alternate: None,
        };
        let x = feed(&meta, &[&v]);
        assert!(!x.contains("<script>"), "{x}");
        assert!(
            x.contains("&lt;script&gt;alert(1)&lt;/script&gt; &amp; co"),
            "{x}"
        );
        assert!(x.contains("a  &quot;b&quot; &lt;i&gt;"), "{x}");
        assert!(!x.contains('\u{1}'));
        assert!(x.contains("<id>urn:trialwatch:NCT00000102:v3</id>"));
        assert!(x.contains("<updated>2026-05-12T06:28:15Z</updated>"));
        assert!(x.contains("1 change (critical)"));
    }

    #[test]
    fn an_empty_feed_has_a_fixed_updated_time() {
        let meta = FeedMeta {
            key: "k",
            title: "t",
            alternate: None,
        };
        assert_eq!(feed(&meta, &[]), feed(&meta, &[]));
        assert!(feed(&meta, &[]).contains("<updated>1970-01-01T00:00:00Z</updated>"));
    }
}
