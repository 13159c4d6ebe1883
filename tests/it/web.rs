//! `trialwatch serve`: every route over real HTTP (shapes equal to the CLI's `--json`, escaping,
//! caching headers, unknown trials, read-only), the daemon's `[web] listen`, and the pages in
//! headless Chromium (no console errors; the plot has one point group per version).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::publish::{T3, two_trials};
use crate::support::env::TestEnv;

const A: &str = "NCT03418623";
const B: &str = "NCT02985775";

/// A running `trialwatch serve`, killed on drop.
struct Server {
    child: Child,
    addr: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(env: &TestEnv) -> Server {
    let mut child = env
        .cmd(&["serve", "--listen", "127.0.0.1:0"])
        .env("TRIALWATCH_NOW", T3)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let addr = crate::support::publish_tools::served_addr(&mut child);
    Server { child, addr }
}

struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// One HTTP/1.1 request with `Connection: close` (the server sends a Content-Length).
fn request(addr: &str, method: &str, path: &str, extra: &[(&str, &str)]) -> Resp {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in extra {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("Content-Length: 0\r\n\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a header block");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    Resp {
        status,
        headers,
        body: raw[split + 4..].to_vec(),
    }
}

fn get(addr: &str, path: &str) -> Resp {
    request(addr, "GET", path, &[])
}

fn cli(env: &TestEnv, args: &[&str]) -> Vec<u8> {
    let o = env.cmd(args).env("TRIALWATCH_NOW", T3).output().unwrap();
    assert!(
        o.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    o.stdout
}

#[test]
fn every_route_answers_and_api_json_is_the_clis() {
    let env = two_trials();
    // The CLI's answers first: while `serve` runs, it holds the store.
    let pairs: Vec<(String, Vec<&str>)> = vec![
        (format!("/api/history/{A}"), vec!["history", A, "--json"]),
        (
            format!("/api/show/{A}"),
            vec!["show", A, "--format", "json"],
        ),
        (
            format!("/api/show/{A}?version=1"),
            vec!["show", A, "--format", "json", "--version", "1"],
        ),
        (format!("/api/diff/{A}"), vec!["diff", A, "--json"]),
        (
            format!("/api/diff/{A}?from=0&to=1"),
            vec!["diff", A, "0", "1", "--json"],
        ),
        (
            "/api/changes?since=0001-01-01&include_backfill=1".into(),
            vec![
                "changes",
                "--since",
                "0001-01-01",
                "--include-backfill",
                "--json",
            ],
        ),
        (
            "/api/changes?min_severity=critical&since=0001-01-01".into(),
            vec![
                "changes",
                "--since",
                "0001-01-01",
                "--min-severity",
                "critical",
                "--json",
            ],
        ),
    ];
    let expected: Vec<(String, String)> = pairs
        .into_iter()
        .map(|(p, args)| (p, String::from_utf8(cli(&env, &args)).unwrap()))
        .collect();
    let srv = serve(&env);
    let a = &srv.addr;

    // The list, with its filters.
    let list = get(a, "/");
    assert_eq!(list.status, 200);
    assert_eq!(
        list.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    let html = list.text();
    assert!(html.contains(&format!("/trials/{A}")) && html.contains(&format!("/trials/{B}")));
    let only_a = get(a, "/?status=TERMINATED").text();
    assert!(only_a.contains(&format!("/trials/{A}")) && !only_a.contains(&format!("/trials/{B}")));
    let crit = get(a, "/?severity=critical").text();
    assert!(crit.contains(&format!("/trials/{A}")) && !crit.contains(&format!("/trials/{B}")));
    let q = get(a, "/?q=nct02985775").text();
    assert!(q.contains(&format!("/trials/{B}")) && !q.contains(&format!("/trials/{A}\"")));
    assert_eq!(get(a, "/?severity=huge").status, 400);

    // A trial page: CT.gov link, plot, history diffs, the mirror page.
    let page = get(a, &format!("/trials/{A}"));
    assert_eq!(page.status, 200);
    let html = page.text();
    assert!(html.contains(&format!("href=\"https://clinicaltrials.gov/study/{A}\"")));
    assert_eq!(
        html.matches("<g class=\"version\"").count(),
        2,
        "one per version"
    );
    assert!(html.contains("<svg class=\"timeline\""));
    assert!(html.contains("id=\"v2\"") && html.contains("sev-critical"));
    assert!(html.contains("<article class=\"mirror\">"));

    // Unknown and malformed trials get a clear page.
    let unknown = get(a, "/trials/NCT09999999");
    assert_eq!(unknown.status, 404);
    assert!(
        unknown.text().contains("NCT09999999 is not in this store"),
        "{}",
        unknown.text()
    );
    assert_eq!(get(a, "/trials/not-a-trial").status, 400);
    assert_eq!(get(a, "/no/such/page").status, 404);

    // Recent changes.
    let ch = get(a, "/changes?since=0001-01-01");
    assert_eq!(ch.status, 200);
    assert!(ch.text().contains(&format!("/trials/{A}#v2")));
    assert_eq!(get(a, "/changes?since=yesterday-ish").status, 400);

    // Feeds.
    for path in ["/feeds/all.atom".to_string(), format!("/feeds/{A}.atom")] {
        let f = get(a, &path);
        assert_eq!(f.status, 200, "{path}");
        assert_eq!(
            f.header("content-type"),
            Some("application/atom+xml; charset=utf-8")
        );
        assert!(
            f.text()
                .contains("<feed xmlns=\"http://www.w3.org/2005/Atom\">")
        );
    }
    assert_eq!(get(a, "/feeds/NCT09999999.atom").status, 404);

    // /api/: byte for byte what the CLI prints.
    for (path, want) in expected {
        let r = get(a, &path);
        assert_eq!(r.status, 200, "{path}: {}", r.text());
        assert_eq!(r.header("content-type"), Some("application/json"));
        assert_eq!(r.text(), want, "{path}");
    }
    let st: Value = serde_json::from_slice(&get(a, "/api/status").body).unwrap();
    assert!(st["last_sync"].is_object(), "{st}");
    let missing = get(a, "/api/history/NCT09999999");
    assert_eq!(missing.status, 404);
    let e: Value = serde_json::from_slice(&missing.body).unwrap();
    assert!(
        e["error"].as_str().unwrap().contains("not in the store"),
        "{e}"
    );
}

#[test]
fn ct_gov_text_is_escaped_and_the_server_is_read_only_with_caching_headers() {
    let env = two_trials();
    let srv = serve(&env);
    let a = &srv.addr;
    for path in [
        "/".to_string(),
        format!("/trials/{A}"),
        "/changes?since=0001-01-01".into(),
    ] {
        let r = get(a, &path);
        let html = r.text();
        assert!(!html.contains("<script"), "{path}: a <script> got through");
        assert!(
            !html.contains("<b>note</b>"),
            "{path}: raw HTML got through"
        );
        if path != "/changes?since=0001-01-01" {
            assert!(
                html.contains("&lt;script&gt;alert"),
                "{path}: the title is shown as text"
            );
        }
        assert_eq!(r.header("cache-control"), Some("no-cache"), "{path}");
        assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
        assert!(
            r.header("content-security-policy")
                .unwrap()
                .contains("default-src 'none'")
        );
        // Revalidation: the same ETag answers 304 with no body.
        let etag = r.header("etag").unwrap().to_string();
        let again = request(a, "GET", &path, &[("If-None-Match", &etag)]);
        assert_eq!(again.status, 304, "{path}");
        assert!(again.body.is_empty());
    }
    for method in ["POST", "PUT", "DELETE"] {
        assert_eq!(request(a, method, "/", &[]).status, 405, "{method}");
        assert_eq!(
            request(a, method, &format!("/api/history/{A}"), &[]).status,
            405
        );
    }
    // Still exactly what was there.
    let h: Value = serde_json::from_slice(&get(a, &format!("/api/history/{A}")).body).unwrap();
    assert_eq!(h.as_array().unwrap().len(), 2);
}

#[test]
fn serve_refuses_a_bad_listen_address() {
    let env = two_trials();
    let o = env.run(&["serve", "--listen", "localhost"]);
    assert_eq!(o.status.code(), Some(1));
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        e.contains("--listen = \"localhost\"") && e.contains("127.0.0.1:8080"),
        "{e}"
    );
}

/// A running daemon (every-second schedule) watching one trial, with `[web] listen` on
/// `port`; its environment, the daemon and the address it serves.
fn daemon_serving(port: u16) -> (TestEnv, crate::support::daemon::Daemon, String) {
    use crate::support::daemon::{Daemon, EVERY_SECOND, wait_running};
    let tail = format!("{EVERY_SECOND}[web]\nlisten = \"127.0.0.1:{port}\"\n");
    let env = TestEnv::with_config(&[A], "", &tail);
    env.server
        .put_study(crate::support::env::fixture("NCT03418623.json"));
    let d = Daemon::start(&env);
    wait_running(&env, &d);
    (env, d, format!("127.0.0.1:{port}"))
}

/// `[web] listen`: the daemon serves the same pages from its open store.
#[test]
fn the_daemon_serves_the_web_view() {
    use crate::support::daemon::wait_for;
    let port = crate::support::free_port();
    let (env, mut d, addr) = daemon_serving(port);
    let page = wait_for(Duration::from_secs(20), "the trial page", || {
        TcpStream::connect(&addr).ok()?;
        let r = get(&addr, &format!("/trials/{A}"));
        (r.status == 200).then_some(r)
    });
    assert!(page.text().contains("<svg class=\"timeline\""));
    let api = get(&addr, &format!("/api/history/{A}"));
    assert_eq!(api.status, 200, "{}", d.log());
    assert_eq!(
        api.text(),
        String::from_utf8(env.run(&["history", A, "--json"]).stdout).unwrap()
    );
    d.terminate();
}

/// Headless Chromium: the page's DOM after loading, and every console message.
fn browse(chromium: &str, url: &str) -> (String, String) {
    let profile = tempfile::tempdir().unwrap();
    let o = std::process::Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--enable-logging=stderr",
            "--v=1",
            "--virtual-time-budget=2000",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg("--dump-dom")
        .arg(url)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// The lines of Chromium's log that are console messages or script and policy errors.
fn console_lines(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|l| {
            l.contains(":CONSOLE")
                || l.contains("Content Security Policy")
                || l.contains("Uncaught")
        })
        .collect()
}

#[test]
fn pages_load_in_headless_chromium_without_console_errors() {
    let Some(chromium) = crate::support::publish_tools::chromium() else {
        return;
    };
    // The check can fail: a page that logs an error is caught.
    let canary = tempfile::tempdir().unwrap();
    let bad = canary.path().join("bad.html");
    std::fs::write(&bad, "<p>x</p><script>console.error('boom')</script>").unwrap();
    let (_, log) = browse(&chromium, &format!("file://{}", bad.display()));
    assert!(
        console_lines(&log).iter().any(|l| l.contains("boom")),
        "console messages are not seen:\n{log}"
    );

    let env = two_trials();
    let srv = serve(&env);
    let base = format!("http://{}", srv.addr);
    for (path, must) in [
        ("/".to_string(), format!("/trials/{A}")),
        (
            format!("/trials/{A}"),
            "<svg class=\"timeline\"".to_string(),
        ),
        (
            "/changes?since=0001-01-01".to_string(),
            format!("/trials/{A}#v2"),
        ),
    ] {
        let (dom, log) = browse(&chromium, &format!("{base}{path}"));
        assert!(
            dom.contains(&must),
            "{path}: {must} missing from the DOM:\n{dom}"
        );
        let console = console_lines(&log);
        assert!(console.is_empty(), "{path}: console messages: {console:#?}");
        if path.starts_with("/trials/") {
            assert_eq!(
                dom.matches("class=\"version\" data-version=").count(),
                2,
                "one point group per version"
            );
            assert!(dom.contains("data-version=\"1\"") && dom.contains("data-version=\"2\""));
            assert!(!dom.contains("<script"), "no script in the DOM");
        }
    }
}

/// The list filters by query watch: `?query=NAME` shows only that query's current members,
/// and the form offers the stored query watches.
#[test]
fn the_list_filters_by_query_watch() {
    let env = TestEnv::with_config(&[], "", "");
    env.server
        .put_study(crate::support::env::fixture("NCT02985775.json"));
    env.server
        .put_study(crate::support::env::fixture("NCT03418623.json"));
    env.ok(&[
        "query", "add", "cmv", "--cond", "cmv", "--locn", "china", "--watch",
    ]);
    env.ok(&["watch", "add", A]);
    cli(&env, &["sync"]);
    let s = serve(&env);
    let all = get(&s.addr, "/");
    assert_eq!(all.status, 200);
    assert!(
        all.text().contains(A) && all.text().contains(B),
        "{}",
        all.text()
    );
    assert!(
        all.text().contains("<option>cmv</option>"),
        "{}",
        all.text()
    );
    let members = get(&s.addr, "/?query=cmv");
    assert_eq!(members.status, 200);
    let body = members.text();
    assert!(body.contains(&format!("/trials/{B}")), "{body}");
    assert!(!body.contains(&format!("/trials/{A}")), "{body}");
    assert!(body.contains("<option selected>cmv</option>"), "{body}");
    // An unknown query has no members: an empty list, not an error.
    let none = get(&s.addr, "/?query=nope");
    assert_eq!(none.status, 200);
    assert!(!none.text().contains("/trials/NCT"), "{}", none.text());
}

/// A SIGHUP that changes `[web] listen` is reported as needing a restart, and the view keeps
/// serving on the address it has.
#[test]
fn a_reload_that_moves_web_listen_says_it_needs_a_restart() {
    use crate::support::daemon::wait_for;
    let (port, other) = (crate::support::free_port(), crate::support::free_port());
    let (env, mut d, addr) = daemon_serving(port);
    wait_for(Duration::from_secs(20), "the list page", || {
        TcpStream::connect(&addr).ok()?;
        (get(&addr, "/").status == 200).then_some(())
    });
    let cfg = std::fs::read_to_string(&env.config).unwrap();
    std::fs::write(
        &env.config,
        cfg.replace(&format!("127.0.0.1:{port}"), &format!("127.0.0.1:{other}")),
    )
    .unwrap();
    d.signal("HUP");
    wait_for(Duration::from_secs(10), "the restart notice", || {
        d.log().contains("needs a restart").then_some(())
    });
    let log = d.log();
    assert!(log.contains(&format!("127.0.0.1:{other}")), "{log}");
    assert_eq!(get(&addr, "/").status, 200, "still serving where it was");
    d.terminate();
}
