//! The web view's pages: the trial list (filtered by status, severity and a text query), a
//! trial page (plot, history with each version's diff, the mirror page as HTML, the CT.gov
//! link), recent changes, the feeds, and the error pages. Every CT.gov text goes through
//! [`esc`] or [`markdown_html`].

use std::collections::{BTreeSet, HashMap};

use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde_json::Value;

use super::html::{change_values, esc, markdown_html};
use super::plot::{PlotPoint, timeline_svg};
use super::{ATOM, Doc, Web};
use crate::model::{NctId, Record, Severity};
use crate::publish::{PublishedVersion, atom, from_history};
use crate::severity::partial_date;

/// One row of the trial list.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct ListRow {
    nct: String,
    title: String,
    status: String,
    phase: String,
    sponsor: String,
    last_change: DateTime<Utc>,
    /// The latest version's highest severity; `None` for a first snapshot.
    severity: Option<Severity>,
    /// Lower-case text the `q` filter searches.
    haystack: String,
}

/// Rows per list page.
const PAGE_ROWS: usize = 200;
/// Entries of the all-trials feed.
const FEED_ENTRIES: usize = 200;

const STYLE: &str = "body{font:15px/1.45 system-ui,sans-serif;margin:0 auto;max-width:72rem;padding:1rem}\
nav a{margin-right:1rem}table{border-collapse:collapse;width:100%}td,th{border-bottom:1px solid #ddd;padding:.3rem;text-align:left;vertical-align:top}\
.sev-critical{color:#fff;background:#b00020;padding:0 .3rem;border-radius:3px}.sev-notable{background:#ffd54f;padding:0 .3rem;border-radius:3px}.sev-minor{background:#eee;padding:0 .3rem;border-radius:3px}\
pre.textdiff{white-space:pre-wrap;background:#fafafa;padding:.5rem}del{background:#fdd}ins{background:#dfd;text-decoration:none}.old{color:#a00}.new{color:#070}\
svg.timeline{max-width:100%;height:auto;border:1px solid #eee}section.version{border-top:1px solid #ccc;margin-top:1rem}";

fn layout(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<title>{} · trialwatch</title><style>{STYLE}</style>\
<link rel=\"alternate\" type=\"application/atom+xml\" title=\"all trials\" href=\"/feeds/all.atom\"></head>\
<body><nav><a href=\"/\">Trials</a><a href=\"/changes\">Recent changes</a><a href=\"/feeds/all.atom\">Feed</a></nav>\n{body}\n</body></html>\n",
        esc(title)
    )
}

/// A page for an error: a title and an HTML sentence (the caller escapes what it puts in).
pub(super) fn error_page(title: &str, sentence_html: &str) -> String {
    layout(
        title,
        &format!("<h1>{}</h1><p>{sentence_html}</p>", esc(title)),
    )
}

fn severity_badge(s: Option<Severity>) -> String {
    match s {
        Some(s) => format!("<span class=\"sev-{s}\">{s}</span>"),
        None => String::new(),
    }
}

/// The list's row of a trial from its kept row ([`crate::store::ListRow`]).
fn list_row(id: &NctId, r: crate::store::ListRow) -> ListRow {
    let haystack = format!("{id} {} {}", r.title, r.sponsor).to_lowercase();
    ListRow {
        nct: id.to_string(),
        title: r.title,
        status: r.status,
        phase: r.phase,
        sponsor: r.sponsor,
        last_change: r.last_change,
        severity: r.severity,
        haystack,
    }
}

/// Every trial's row. Rows come from this server's cache, else from the rows the store keeps
/// (written by sync with each new head, read in one scan), else are made from the store and
/// kept there for the next start; each is checked against the trial's current state.
pub(super) fn rows(w: &Web) -> anyhow::Result<Vec<ListRow>> {
    let states = w.store.trials()?;
    let mut cache = w.rows.lock().unwrap_or_else(|p| p.into_inner());
    let mut kept: Option<HashMap<NctId, crate::store::ListRow>> = None;
    let mut out = Vec::with_capacity(states.len());
    for st in states.iter().filter(|s| s.latest_version > 0) {
        let key = crate::store::row_key(st);
        if let Some((k, row)) = cache.get(&st.nct_id)
            && *k == key
        {
            out.push(row.clone());
            continue;
        }
        if kept.is_none() {
            kept = Some(w.store.list_rows()?);
        }
        let stored = kept
            .as_mut()
            .and_then(|m| m.remove(&st.nct_id))
            .filter(|r| r.key == key);
        let row = match stored {
            Some(r) => r,
            None => match w.store.list_row_made(st)? {
                Some(r) => {
                    // Derived data: a store opened read-only just makes it again next time.
                    if let Err(e) = w.store.list_row_put(&st.nct_id, &r) {
                        tracing::debug!(trial.nct = %st.nct_id, error = %e, "list row not kept");
                    }
                    r
                }
                None => continue,
            },
        };
        let row = list_row(&st.nct_id, row);
        cache.insert(st.nct_id.clone(), (key, row.clone()));
        out.push(row);
    }
    Ok(out)
}

fn store_error(e: impl std::fmt::Display) -> Doc {
    Doc::html(
        StatusCode::INTERNAL_SERVER_ERROR,
        error_page(
            "Store error",
            &esc(&format!("Reading the store failed: {e}")),
        ),
    )
}

/// `/`: every trial, filtered by `status`, `severity` (at least), `query` (a query watch's
/// current members) and `q`, `page` by page.
pub(super) fn list(w: &Web, q: &HashMap<String, String>) -> Doc {
    let all = match rows(w) {
        Ok(r) => r,
        Err(e) => return store_error(e),
    };
    let status = q.get("status").map(|s| s.trim()).filter(|s| !s.is_empty());
    let min = match q
        .get("severity")
        .map(|s| s.trim())
        .filter(|s| !s.is_empty())
    {
        None => None,
        Some(s) => match s.parse::<Severity>() {
            Ok(s) => Some(s),
            Err(e) => {
                return Doc::html(
                    StatusCode::BAD_REQUEST,
                    error_page("Bad filter", &esc(&format!("severity: {e}"))),
                );
            }
        },
    };
    let needle = q
        .get("q")
        .map(|s| s.trim().to_lowercase())
        .unwrap_or_default();
    // `query`: only the current members of that query watch (any query that ran has its
    // membership in the store, whether declared in the config or added with `query add`).
    let query = q.get("query").map(|s| s.trim()).filter(|s| !s.is_empty());
    let members: Option<BTreeSet<String>> = match query {
        None => None,
        Some(name) => match w.store.query_members(name) {
            Ok(m) => Some(
                m.into_iter()
                    .filter(|m| m.is_current())
                    .map(|m| m.nct_id.as_str().to_string())
                    .collect(),
            ),
            Err(e) => return store_error(e),
        },
    };
    let query_names: Vec<String> = match w.store.queries() {
        Ok(qs) => qs.into_iter().map(|q| q.name).collect(),
        Err(e) => return store_error(e),
    };
    let statuses: BTreeSet<&str> = all.iter().map(|r| r.status.as_str()).collect();
    let shown: Vec<&ListRow> = all
        .iter()
        .filter(|r| members.as_ref().is_none_or(|m| m.contains(&r.nct)))
        .filter(|r| status.is_none_or(|s| r.status.eq_ignore_ascii_case(s)))
        .filter(|r| min.is_none_or(|m| r.severity.is_some_and(|s| s >= m)))
        .filter(|r| needle.is_empty() || r.haystack.contains(&needle))
        .collect();
    let page: usize = q
        .get("page")
        .and_then(|p| p.parse().ok())
        .filter(|p| *p >= 1)
        .unwrap_or(1);
    let pages = shown.len().div_ceil(PAGE_ROWS).max(1);
    let mut b = String::new();
    b.push_str(&format!(
        "<h1>Trials</h1><p>{} of {}.</p>",
        shown.len(),
        crate::util::text::plural(all.len(), "trial")
    ));
    b.push_str("<form method=\"get\" action=\"/\"><label>Status <select name=\"status\"><option value=\"\">any</option>");
    for s in &statuses {
        let sel = if status.is_some_and(|x| x.eq_ignore_ascii_case(s)) {
            " selected"
        } else {
            ""
        };
        b.push_str(&format!("<option{sel}>{}</option>", esc(s)));
    }
    b.push_str("</select></label> <label>Severity <select name=\"severity\"><option value=\"\">any</option>");
    for s in Severity::ALL {
        let sel = if min == Some(s) { " selected" } else { "" };
        b.push_str(&format!("<option{sel}>{s}</option>"));
    }
    b.push_str(
        "</select></label> <label>Query <select name=\"query\"><option value=\"\">any</option>",
    );
    let mut names = query_names;
    if let Some(name) = query.filter(|n| !names.iter().any(|x| x == n)) {
        names.push(name.to_string());
    }
    for n in &names {
        let sel = if query == Some(n.as_str()) {
            " selected"
        } else {
            ""
        };
        b.push_str(&format!("<option{sel}>{}</option>", esc(n)));
    }
    b.push_str(&format!(
        "</select></label> <label>Search <input name=\"q\" value=\"{}\"></label> <button>Filter</button></form>",
        esc(&needle)
    ));
    b.push_str("<table id=\"trials\"><thead><tr><th>Trial</th><th>Title</th><th>Status</th><th>Phase</th><th>Sponsor</th><th>Last change</th><th>Severity</th></tr></thead><tbody>");
    for r in shown.iter().skip((page - 1) * PAGE_ROWS).take(PAGE_ROWS) {
        b.push_str(&format!(
            "<tr><td><a href=\"/trials/{id}\">{id}</a></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&r.title),
            esc(&r.status),
            esc(&r.phase),
            esc(&r.sponsor),
            r.last_change.format("%Y-%m-%d %H:%M"),
            severity_badge(r.severity),
            id = esc(&r.nct)
        ));
    }
    b.push_str("</tbody></table>");
    if pages > 1 {
        let mut link = q.clone();
        b.push_str("<p>Page ");
        for p in 1..=pages {
            link.insert("page".into(), p.to_string());
            let qs: Vec<String> = link
                .iter()
                .map(|(k, v)| format!("{}={}", urlenc(k), urlenc(v)))
                .collect();
            if p == page {
                b.push_str(&format!("<strong>{p}</strong> "));
            } else {
                b.push_str(&format!("<a href=\"/?{}\">{p}</a> ", esc(&qs.join("&"))));
            }
        }
        b.push_str("</p>");
    }
    Doc::html(StatusCode::OK, layout("Trials", &b))
}

/// Percent-encode a query component (unreserved characters kept).
fn urlenc(s: &str) -> String {
    s.bytes()
        .map(|c| match c {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (c as char).to_string()
            }
            _ => format!("%{c:02X}"),
        })
        .collect()
}

/// The trial, or the page that says why there is none.
fn known_trial(w: &Web, nct: &str) -> Result<(NctId, crate::store::TrialState), Doc> {
    let id: NctId = nct.parse().map_err(|e: crate::model::BadNctId| {
        Doc::html(
            StatusCode::BAD_REQUEST,
            error_page("Not a trial ID", &esc(&e.to_string())),
        )
    })?;
    match w.store.trial(&id) {
        Ok(Some(t)) if t.latest_version > 0 => Ok((id, t)),
        Ok(_) => Err(Doc::html(
            StatusCode::NOT_FOUND,
            error_page(
                "Unknown trial",
                &format!(
                    "{} is not in this store. Watch it with <code>trialwatch watch add {}</code> and run <code>trialwatch sync</code>; or go back to the <a href=\"/\">list of trials</a>.",
                    esc(id.as_str()),
                    esc(id.as_str())
                ),
            ),
        )),
        Err(e) => Err(store_error(e)),
    }
}

fn history_of(w: &Web, id: &NctId) -> Result<Vec<Value>, Doc> {
    let out = w
        .run(&["history", id.as_str(), "--json"])
        .map_err(|e| store_error(esc(&e)))?;
    serde_json::from_slice(&out).map_err(store_error)
}

fn plot_points(
    w: &Web,
    id: &NctId,
    state: &crate::store::TrialState,
    history: &[Value],
) -> Vec<PlotPoint> {
    let labels: HashMap<u64, String> = history
        .iter()
        .filter_map(|h| {
            Some((
                h.get("version")?.as_u64()?,
                h.get("detected_at")?.as_str()?.chars().take(10).collect(),
            ))
        })
        .collect();
    let date = |r: &Record, p: &str| r.text(p).and_then(partial_date);
    state
        .order()
        .into_iter()
        .filter_map(|v| {
            let r = w.store.record(id, v).ok().flatten()?;
            Some(PlotPoint {
                version: v,
                label: labels.get(&u64::from(v)).cloned().unwrap_or_default(),
                start: date(&r, "status.startDate"),
                primary_completion: date(&r, "status.primaryCompletionDate"),
                completion: date(&r, "status.completionDate"),
                enrollment: r.get("design.enrollmentCount").and_then(Value::as_f64),
            })
        })
        .collect()
}

/// `/trials/NCT…`: the plot, the history with each version's diff, the mirror page.
pub(super) fn trial(w: &Web, nct: &str) -> Doc {
    let (id, state) = match known_trial(w, nct) {
        Ok(t) => t,
        Err(d) => return d,
    };
    let md = match w.run(&["show", id.as_str(), "--format", "markdown"]) {
        Ok(b) => String::from_utf8_lossy(&b).into_owned(),
        Err(e) => return store_error(esc(&e)),
    };
    let history = match history_of(w, &id) {
        Ok(h) => h,
        Err(d) => return d,
    };
    let title = w
        .store
        .latest_record(&id)
        .ok()
        .flatten()
        .and_then(|r| r.title().map(str::to_string))
        .unwrap_or_else(|| id.to_string());
    let ctgov = atom::ctgov_link(id.as_str());
    let mut b = format!(
        "<h1>{} <small>{}</small></h1><p><a class=\"ctgov\" href=\"{}\">{} on ClinicalTrials.gov</a> · <a href=\"/feeds/{}.atom\">Atom feed</a> · <a href=\"/api/history/{}\">history JSON</a></p>",
        esc(&title),
        esc(id.as_str()),
        esc(&ctgov),
        esc(id.as_str()),
        esc(id.as_str()),
        esc(id.as_str())
    );
    b.push_str("<h2>Timeline</h2>");
    b.push_str(&timeline_svg(&plot_points(w, &id, &state, &history)));
    b.push_str("<h2>History</h2>");
    for (i, h) in history.iter().enumerate().rev() {
        let version = h.get("version").and_then(Value::as_u64).unwrap_or(0);
        let detected = h.get("detected_at").and_then(Value::as_str).unwrap_or("");
        let changes = h
            .get("changes")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let sev = changes
            .iter()
            .filter_map(|c| c.get("severity")?.as_str()?.parse::<Severity>().ok())
            .max();
        b.push_str(&format!(
            "<section class=\"version\" id=\"v{version}\"><h3>v{version} <small>detected {}</small> {}</h3>",
            esc(detected),
            if i == 0 { String::new() } else { severity_badge(sev) }
        ));
        if i == 0 {
            b.push_str(&format!(
                "<p>First snapshot ({} fields).</p></section>",
                changes.len()
            ));
            continue;
        }
        b.push_str("<ul>");
        for c in &changes {
            let s = c.get("severity").and_then(Value::as_str).unwrap_or("");
            b.push_str(&format!(
                "<li><span class=\"sev-{}\">{}</span> {} <code>{}</code><div>{}</div></li>",
                esc(s),
                esc(s),
                esc(c.get("summary").and_then(Value::as_str).unwrap_or("")),
                esc(c.get("path").and_then(Value::as_str).unwrap_or("")),
                change_values(c.get("old"), c.get("new"))
            ));
        }
        b.push_str("</ul></section>");
    }
    b.push_str("<h2>Mirror page</h2><article class=\"mirror\">");
    b.push_str(&markdown_html(&md));
    b.push_str("</article>");
    Doc::html(StatusCode::OK, layout(&format!("{id}: {title}"), &b))
}

/// `/changes`: recent field changes across all trials (`since`, `min_severity`), as
/// `trialwatch changes` lists them.
pub(super) fn changes(w: &Web, q: &HashMap<String, String>) -> Doc {
    let since = q
        .get("since")
        .map(|s| s.trim())
        .filter(|s| !s.is_empty())
        .unwrap_or("30d");
    let mut args = vec![
        "changes".to_string(),
        "--json".into(),
        format!("--since={since}"),
    ];
    if let Some(m) = q.get("min_severity").filter(|s| !s.trim().is_empty()) {
        args.push(format!("--min-severity={m}"));
    }
    let rows: Vec<Value> = match (w.run)(args) {
        Ok(out) => match serde_json::from_slice(&out) {
            Ok(r) => r,
            Err(e) => return store_error(e),
        },
        Err(e) => {
            return Doc::html(StatusCode::BAD_REQUEST, error_page("Bad filter", &esc(&e)));
        }
    };
    let mut b = format!(
        "<h1>Recent changes</h1><form method=\"get\" action=\"/changes\"><label>Since <input name=\"since\" value=\"{}\"></label> <button>Show</button></form><p>{}.</p>",
        esc(since),
        crate::util::text::plural(rows.len(), "change")
    );
    b.push_str("<table id=\"changes\"><thead><tr><th>Detected</th><th>Trial</th><th>Severity</th><th>Change</th></tr></thead><tbody>");
    for r in &rows {
        let text = |k: &str| r.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        let nct = text("nct_id");
        let version = r.get("version").and_then(Value::as_u64).unwrap_or(0);
        b.push_str(&format!(
            "<tr><td>{}</td><td><a href=\"/trials/{nct}#v{version}\">{nct} v{version}</a></td><td><span class=\"sev-{sev}\">{sev}</span></td><td>{}</td></tr>",
            esc(&text("detected_at")),
            esc(&text("summary")),
            nct = esc(&nct),
            sev = esc(&text("severity")),
        ));
    }
    b.push_str("</tbody></table>");
    Doc::html(StatusCode::OK, layout("Recent changes", &b))
}

fn versions_of(
    w: &Web,
    id: &NctId,
    state: &crate::store::TrialState,
) -> Result<Vec<PublishedVersion>, Doc> {
    let history = history_of(w, id)?;
    let title = w
        .store
        .latest_record(id)
        .ok()
        .flatten()
        .and_then(|r| r.title().map(str::to_string))
        .unwrap_or_else(|| id.to_string());
    Ok(from_history(id.as_str(), &title, &history, state.first_observed).0)
}

/// `/feeds/all.atom` (the newest entries of the last 90 days) and `/feeds/NCT….atom`.
pub(super) fn feed(w: &Web, name: &str) -> Doc {
    let atom_doc = |body: String| Doc {
        status: StatusCode::OK,
        content_type: ATOM,
        body: body.into_bytes(),
    };
    if name == "all.atom" {
        let since = crate::clock::now() - chrono::Duration::days(90);
        let recent = match w.store.versions_since(since) {
            Ok(v) => v,
            Err(e) => return store_error(e),
        };
        let ids: BTreeSet<NctId> = recent.into_iter().map(|(id, _)| id).collect();
        let mut all = Vec::new();
        for id in ids {
            let Ok(Some(state)) = w.store.trial(&id) else {
                continue;
            };
            match versions_of(w, &id, &state) {
                Ok(v) => all.extend(v.into_iter().filter(|v| v.detected_at >= since)),
                Err(d) => return d,
            }
        }
        all.sort_by(|a, b| {
            b.detected_at
                .cmp(&a.detected_at)
                .then(a.nct_id.cmp(&b.nct_id))
        });
        all.truncate(FEED_ENTRIES);
        let refs: Vec<&PublishedVersion> = all.iter().collect();
        return atom_doc(atom::feed(
            &atom::FeedMeta {
                key: "all",
                title: "trialwatch: all trials",
                alternate: None,
            },
            &refs,
        ));
    }
    let Some(nct) = name.strip_suffix(".atom") else {
        return Doc::html(
            StatusCode::NOT_FOUND,
            error_page(
                "Not found",
                "Feeds are <code>/feeds/all.atom</code> and <code>/feeds/NCT….atom</code>.",
            ),
        );
    };
    let (id, state) = match known_trial(w, nct) {
        Ok(t) => t,
        Err(d) => return d,
    };
    let versions = match versions_of(w, &id, &state) {
        Ok(v) => v,
        Err(d) => return d,
    };
    let title = format!(
        "{}: {}",
        id,
        versions.first().map(|v| v.title.as_str()).unwrap_or("")
    );
    let link = atom::ctgov_link(id.as_str());
    let refs: Vec<&PublishedVersion> = versions.iter().collect();
    atom_doc(atom::feed(
        &atom::FeedMeta {
            key: id.as_str(),
            title: &title,
            alternate: Some(&link),
        },
        &refs,
    ))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use chrono::{TimeZone, Utc};
    use serde_json::json;

    use super::*;
    use crate::store::{NewVersion, Store};

    #[test]
    fn list_rows_kept_stale_or_missing_in_the_store_are_made_again_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let nct: NctId = "NCT00000102".parse().unwrap();
        let mut prev: Option<Record> = None;
        for (day, status) in [(1, "RECRUITING"), (2, "TERMINATED")] {
            let mut r = Record::default();
            r.set("identification.briefTitle", json!("A trial"));
            r.set("status.overallStatus", json!(status));
            let canonical = r.canonical_bytes();
            store
                .commit_version(NewVersion {
                    provenance: Default::default(),
                    nct: &nct,
                    record: &r,
                    canonical: &canonical,
                    raw: b"{}",
                    changes: crate::diff::diff(prev.as_ref(), &r),
                    detected_at: Utc.timestamp_opt(1_700_000_000 + day * 86_400, 0).unwrap(),
                    resolved_id: None,
                    source_fingerprint: None,
                    alerts: vec![],
                })
                .unwrap();
            prev = Some(r);
        }
        let runner: super::super::Runner = Arc::new(|_| Err("no commands here".into()));
        let web = Web::new(store.clone(), runner.clone());
        let from_commit = rows(&web).unwrap();
        assert_eq!(from_commit.len(), 1);
        assert_eq!(from_commit[0].status, "TERMINATED");
        assert_eq!(from_commit[0].severity, Some(Severity::Critical));

        // A row kept for another state (an older store, a backfill) is not believed.
        let state = store.trial(&nct).unwrap().unwrap();
        let mut stale = store.list_row(&nct).unwrap().unwrap();
        stale.key = "1/1/None".into();
        stale.status = "RECRUITING".into();
        store.list_row_put(&nct, &stale).unwrap();
        let fresh_web = Web::new(store.clone(), runner);
        assert_eq!(rows(&fresh_web).unwrap(), from_commit);
        let kept = store.list_row(&nct).unwrap().unwrap();
        assert_eq!(
            kept.key,
            crate::store::row_key(&state),
            "made again and kept"
        );
        assert_eq!(kept.status, "TERMINATED");
    }
}
