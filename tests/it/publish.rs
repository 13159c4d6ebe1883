//! `trialwatch export`: the static mirror (pages equal to `show`, JSON, index, change tables,
//! Atom feeds checked by a real feed parser) and re-exports that rewrite only changed files.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use serde_json::{Value, json};

use crate::support::env::{TestEnv, edit, fixture};

const A: &str = "NCT03418623";
const B: &str = "NCT02985775";
const T1: &str = "2026-05-10T08:00:00Z";
const T2: &str = "2026-05-11T08:00:00Z";
pub(crate) const T3: &str = "2026-05-12T08:00:00Z";

fn at(env: &TestEnv, now: &str, args: &[&str]) -> String {
    let o = env.cmd(args).env("TRIALWATCH_NOW", now).output().unwrap();
    assert!(
        o.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).unwrap()
}

/// Two trials synced, then A edited (status stopped, completion moved, a `<script>` title)
/// and synced again.
pub(crate) fn two_trials() -> TestEnv {
    let env = TestEnv::new(&[A, B]);
    let a1 = fixture("NCT03418623.json");
    env.server.put_study(a1.clone());
    env.server.put_study(fixture("NCT02985775.json"));
    at(&env, T1, &["sync"]);
    env.server.put_study(edit(&a1, |p| {
        p["statusModule"]["overallStatus"] = json!("TERMINATED");
        p["statusModule"]["whyStopped"] = json!("Sponsor decision, \"safety\", see <b>note</b>");
        p["statusModule"]["completionDateStruct"]["date"] = json!("2027-06-30");
        p["designModule"]["enrollmentInfo"]["count"] = json!(12);
        p["identificationModule"]["briefTitle"] = json!("<script>alert('x')</script> & trial");
    }));
    at(&env, T2, &["sync"]);
    env
}

fn report(env: &TestEnv, now: &str, dir: &Path) -> Value {
    let out = at(env, now, &["export", dir.to_str().unwrap(), "--json"]);
    serde_json::from_str(&out).unwrap()
}

#[test]
fn export_writes_the_mirror_whose_pages_are_what_show_prints() {
    let env = two_trials();
    let dir = env.dir.path().join("site");
    let rep = report(&env, T3, &dir);
    assert_eq!(rep["trials"], 2, "{rep}");
    for id in [A, B] {
        let page = std::fs::read_to_string(dir.join(format!("trials/{id}.md"))).unwrap();
        assert_eq!(
            page,
            at(&env, T3, &["show", id, "--format", "markdown"]),
            "{id}"
        );
        let doc: Value =
            serde_json::from_slice(&std::fs::read(dir.join(format!("trials/{id}.json"))).unwrap())
                .unwrap();
        let record: Value =
            serde_json::from_str(&at(&env, T3, &["show", id, "--format", "json"])).unwrap();
        let history: Value =
            serde_json::from_str(&at(&env, T3, &["history", id, "--json"])).unwrap();
        assert_eq!(doc["nct_id"], id);
        assert_eq!(doc["record"], record);
        assert_eq!(doc["versions"], history);
        assert!(dir.join(format!("feeds/{id}.atom")).is_file());
    }
    let index = std::fs::read_to_string(dir.join("index.md")).unwrap();
    assert!(index.contains(&format!("[{A}](trials/{A}.md)")), "{index}");
    assert!(index.contains(&format!("[{B}](trials/{B}.md)")), "{index}");
    assert!(index.contains("| TERMINATED |"), "{index}");
    assert!(index.contains("| critical |"), "{index}");

    // changes.jsonl holds exactly the rows of `changes --json` over all time.
    let cli: Vec<Value> = serde_json::from_str(&at(
        &env,
        T3,
        &[
            "changes",
            "--since",
            "0001-01-01",
            "--include-backfill",
            "--json",
        ],
    ))
    .unwrap();
    let jsonl: Vec<Value> = std::fs::read_to_string(dir.join("changes.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(!cli.is_empty());
    assert_eq!(jsonl, cli);

    // changes.csv: a header, one record per change, quoted per RFC 4180.
    let csv = std::fs::read_to_string(dir.join("changes.csv")).unwrap();
    assert!(csv.starts_with("nct_id,version,detected_at,severity,path,kind,summary\r\n"));
    let records = parse_csv(&csv);
    assert_eq!(records.len(), cli.len() + 1);
    for (r, c) in records[1..].iter().zip(&cli) {
        assert_eq!(r.len(), 7, "{r:?}");
        assert_eq!(r[0], c["nct_id"].as_str().unwrap());
        assert_eq!(r[4], c["path"].as_str().unwrap());
        assert_eq!(r[6], c["summary"].as_str().unwrap());
    }
    assert!(
        csv.contains("\"\""),
        "the quote in whyStopped is doubled: {csv}"
    );
}

/// A small RFC 4180 reader for the test (quoted fields, doubled quotes, CRLF records).
fn parse_csv(s: &str) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    let (mut row, mut field, mut quoted) = (Vec::new(), String::new(), false);
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            ('"', true) => quoted = false,
            ('"', false) if field.is_empty() => quoted = true,
            (',', false) => row.push(std::mem::take(&mut field)),
            ('\r', false) if chars.peek() == Some(&'\n') => {
                chars.next();
                row.push(std::mem::take(&mut field));
                rows.push(std::mem::take(&mut row));
            }
            (c, _) => field.push(c),
        }
    }
    rows
}

fn inode(p: &Path) -> u64 {
    std::fs::metadata(p).unwrap().ino()
}

#[test]
fn re_export_rewrites_only_the_files_whose_content_changed() {
    let env = two_trials();
    let dir = env.dir.path().join("site");
    report(&env, T3, &dir);
    // Nothing moved: nothing is written.
    let rep = report(&env, T3, &dir);
    assert_eq!(rep["written"], 0, "{rep}");
    assert_eq!(rep["rendered"], 0, "{rep}");

    let files = [
        format!("trials/{A}.json"),
        format!("trials/{B}.json"),
        format!("feeds/{B}.atom"),
        format!("feeds/{A}.atom"),
    ];
    let before: Vec<u64> = files.iter().map(|f| inode(&dir.join(f))).collect();
    // A changes again; B is only seen again (its page's last_seen_at moves, nothing else).
    let a2 = fixture("NCT03418623.json");
    env.server.put_study(edit(&a2, |p| {
        p["statusModule"]["overallStatus"] = json!("COMPLETED");
    }));
    at(&env, T3, &["sync"]);
    let rep = report(&env, T3, &dir);
    let after: Vec<u64> = files.iter().map(|f| inode(&dir.join(f))).collect();
    assert_ne!(before[0], after[0], "A's JSON is rewritten");
    assert_eq!(before[1], after[1], "B's JSON is untouched");
    assert_eq!(before[2], after[2], "B's feed is untouched");
    assert_ne!(before[3], after[3], "A's feed is rewritten");
    assert!(rep["unchanged"].as_u64().unwrap() >= 2, "{rep}");
    // No temporary file is left behind.
    for sub in ["trials", "feeds", ""] {
        for e in std::fs::read_dir(dir.join(sub)).unwrap() {
            let name = e.unwrap().file_name().to_string_lossy().into_owned();
            assert!(!name.contains(".tmp-"), "{name}");
        }
    }
    let page = std::fs::read_to_string(dir.join(format!("trials/{A}.md"))).unwrap();
    assert_eq!(page, at(&env, T3, &["show", A, "--format", "markdown"]));
}

#[test]
fn only_exports_the_named_trials_and_refuses_unknown_ones() {
    let env = two_trials();
    let dir = env.dir.path().join("site");
    let out = at(
        &env,
        T3,
        &["export", dir.to_str().unwrap(), "--only", B, "--json"],
    );
    let rep: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(rep["trials"], 1, "{rep}");
    assert!(dir.join(format!("trials/{B}.md")).is_file());
    assert!(!dir.join(format!("trials/{A}.md")).exists());
    let index = std::fs::read_to_string(dir.join("index.md")).unwrap();
    assert!(index.contains(B) && !index.contains(A), "{index}");
    let o = env
        .cmd(&["export", dir.to_str().unwrap(), "--only", "NCT09999999"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        e.contains("--only NCT09999999") && e.contains("watch add"),
        "{e}"
    );
}

#[test]
fn feeds_are_valid_atom_for_a_real_feed_parser() {
    let env = two_trials();
    let dir = env.dir.path().join("site");
    report(&env, T3, &dir);
    let feed = std::fs::read_to_string(dir.join(format!("feeds/{A}.atom"))).unwrap();
    assert!(!feed.contains("<script>"), "CT.gov text is escaped: {feed}");
    assert!(
        feed.contains("<id>urn:trialwatch:NCT03418623:v2</id>"),
        "{feed}"
    );
    assert!(feed.contains("https://clinicaltrials.gov/study/NCT03418623"));
    let Some(py) = crate::support::publish_tools::feedparser_python() else {
        return;
    };
    let script = r#"
import json, sys, feedparser
out = {}
for path in sys.argv[1:]:
    d = feedparser.parse(path)
    out[path] = {
        "bozo": int(bool(d.bozo)),
        "error": str(d.get("bozo_exception", "")),
        "version": d.version,
        "entries": [{"id": e.id, "updated": e.get("updated", ""), "link": e.get("link", ""),
                      "content": e.content[0].value if e.get("content") else ""} for e in d.entries],
    }
print(json.dumps(out))
"#;
    let feeds: Vec<String> = std::fs::read_dir(dir.join("feeds"))
        .unwrap()
        .map(|e| e.unwrap().path().display().to_string())
        .collect();
    assert_eq!(feeds.len(), 3, "{feeds:?}");
    let o = std::process::Command::new(py)
        .arg("-c")
        .arg(script)
        .args(&feeds)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let parsed: Value = serde_json::from_slice(&o.stdout).unwrap();
    for (path, f) in parsed.as_object().unwrap() {
        assert_eq!(f["bozo"], 0, "{path}: {}", f["error"]);
        assert_eq!(f["version"], "atom10", "{path}");
        for e in f["entries"].as_array().unwrap() {
            assert!(e["id"].as_str().unwrap().starts_with("urn:trialwatch:NCT"));
            assert!(!e["updated"].as_str().unwrap().is_empty());
            assert!(
                e["link"]
                    .as_str()
                    .unwrap()
                    .starts_with("https://clinicaltrials.gov/study/")
            );
        }
    }
    let a = &parsed[dir.join(format!("feeds/{A}.atom")).display().to_string()];
    let entries = a["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 2, "one entry per version");
    assert_eq!(entries[0]["id"], "urn:trialwatch:NCT03418623:v2");
    let content = entries[0]["content"].as_str().unwrap();
    assert!(content.contains("critical"), "{content}");
    let all = &parsed[dir.join("feeds/all.atom").display().to_string()];
    assert_eq!(all["entries"].as_array().unwrap().len(), 3);
}

/// `[publish] dir`: the daemon exports after each scheduled sync; a new version shows up in
/// the export without anyone running `export`.
#[test]
fn the_daemon_exports_after_every_sync() {
    use crate::support::daemon::{Daemon, EVERY_SECOND, wait_for};
    let tmp = tempfile::tempdir().unwrap();
    let site = tmp.path().join("site");
    let tail = format!(
        "{EVERY_SECOND}[publish]\ndir = {:?}\n",
        site.display().to_string()
    );
    let env = TestEnv::with_config(&[A], "", &tail);
    let a1 = fixture("NCT03418623.json");
    env.server.put_study(a1.clone());
    let mut d = Daemon::start(&env);
    let feed = site.join(format!("feeds/{A}.atom"));
    let waited = std::time::Instant::now();
    while !feed.is_file() {
        assert!(
            waited.elapsed() < std::time::Duration::from_secs(20),
            "no export after 20 s:\n{}",
            d.log()
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let today = chrono::Utc::now().format("%Y-%m-%d").to_string();
    env.server.put_study(edit(&a1, |p| {
        p["statusModule"]["overallStatus"] = json!("TERMINATED");
        p["statusModule"]["lastUpdatePostDateStruct"]["date"] = json!(today);
    }));
    env.server.set_data_timestamp("2026-09-05T09:00:05");
    wait_for(
        std::time::Duration::from_secs(20),
        "the export of version 2",
        || {
            // The index is written after the trials' files: then the export is whole.
            let index = std::fs::read_to_string(site.join("index.md")).ok()?;
            index.contains("| TERMINATED |").then_some(())
        },
    );
    let f = std::fs::read_to_string(&feed).unwrap();
    assert!(
        f.contains("urn:trialwatch:NCT03418623:v2"),
        "{f}\n{}",
        d.log()
    );
    d.terminate();
}

/// A query watch gets its own feed, `feeds/query-NAME.atom`, holding the versions of its
/// current members only, and a real feed parser reads it without error.
#[test]
fn each_query_watch_gets_a_feed_of_its_members() {
    let env = TestEnv::with_config(&[], "", "");
    env.server.put_study(fixture("NCT02985775.json")); // CMV, China: matches
    env.server.put_study(fixture("NCT03418623.json")); // does not match
    env.ok(&[
        "query", "add", "cmv", "--cond", "cmv", "--locn", "china", "--watch",
    ]);
    env.ok(&["watch", "add", A]);
    at(&env, T1, &["sync"]);
    let dir = env.dir.path().join("site");
    report(&env, T3, &dir);
    let path = dir.join("feeds/query-cmv.atom");
    let feed = std::fs::read_to_string(&path).unwrap();
    assert!(
        feed.contains(&format!("<id>urn:trialwatch:{B}:v1</id>")),
        "{feed}"
    );
    assert!(!feed.contains(A), "only the query's members: {feed}");
    assert!(
        dir.join(format!("feeds/{A}.atom")).is_file(),
        "the non-member still has its own feed"
    );
    let Some(py) = crate::support::publish_tools::feedparser_python() else {
        return;
    };
    let o = std::process::Command::new(py)
        .args([
            "-c",
            "import sys, feedparser; d = feedparser.parse(sys.argv[1]); \
             print(int(bool(d.bozo)), d.version, len(d.entries))",
        ])
        .arg(&path)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "0 atom10 1");
}

/// Every file of an export, by path relative to `dir`, with its bytes (the cache left out).
fn files_of(dir: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    let mut out = std::collections::BTreeMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let rel = p.strip_prefix(dir).unwrap().display().to_string();
            if rel.starts_with(".trialwatch-export") {
                continue;
            }
            if p.is_dir() {
                todo.push(p);
            } else {
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

/// The trial JSON is, byte for byte, `{nct_id, record: show --format json, versions: history
/// --json}` pretty-printed, and a cache that is damaged, stale or missing gives the same files
/// as a fresh export (never wrong output), and the old single manifest is removed.
#[test]
fn exported_json_is_the_clis_byte_for_byte_and_a_damaged_cache_changes_nothing() {
    let env = two_trials();
    let dir = env.dir.path().join("site");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(".trialwatch-export.json"), b"{\"format\":1}").unwrap();
    report(&env, T3, &dir);
    assert!(!dir.join(".trialwatch-export.json").exists());
    for id in [A, B] {
        let record: Value =
            serde_json::from_str(&at(&env, T3, &["show", id, "--format", "json"])).unwrap();
        let history: Value =
            serde_json::from_str(&at(&env, T3, &["history", id, "--json"])).unwrap();
        let mut expected = serde_json::to_vec_pretty(
            &json!({ "nct_id": id, "record": record, "versions": history }),
        )
        .unwrap();
        expected.push(b'\n');
        let got = std::fs::read(dir.join(format!("trials/{id}.json"))).unwrap();
        assert!(got == expected, "{id}: {}", String::from_utf8_lossy(&got));
    }
    let whole = files_of(&dir);
    assert_eq!(whole.len(), 2 * 3 + 4, "{:?}", whole.keys());

    // A fresh export elsewhere at the same time gives the same bytes.
    let fresh = env.dir.path().join("fresh");
    report(&env, T3, &fresh);
    assert!(files_of(&fresh) == whole);

    // One piece torn, the other replaced by the first's: both trials are rendered again.
    let cache = dir.join(".trialwatch-export");
    let a = cache.join(format!("{A}.json"));
    let b = cache.join(format!("{B}.json"));
    let bytes = std::fs::read(&a).unwrap();
    std::fs::copy(&a, &b).unwrap();
    std::fs::write(&a, &bytes[..bytes.len() / 3]).unwrap();
    let rep = report(&env, T3, &dir);
    assert_eq!(rep["rendered"], 2, "{rep}");
    assert_eq!(
        rep["written"], 0,
        "the same bytes: nothing rewritten: {rep}"
    );
    assert!(files_of(&dir) == whole);

    // The cache gone entirely: a full export, same files.
    std::fs::remove_dir_all(&cache).unwrap();
    let rep = report(&env, T3, &dir);
    assert_eq!(rep["rendered"], 2, "{rep}");
    assert!(files_of(&dir) == whole);
    // And with the cache back, nothing is rendered.
    let rep = report(&env, T3, &dir);
    assert_eq!(rep["rendered"], 0, "{rep}");
}
