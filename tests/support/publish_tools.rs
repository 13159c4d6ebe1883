//! Outside programs the publishing tests drive: Python's `feedparser` (a real feed parser) and
//! Debian's headless `chromium`. `bash .ci/install-test-deps.sh` installs both. When one is
//! missing, the test that needs it is skipped with a loud message, except in CI (`CI` set),
//! where a missing tool is a failure.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command};

/// The `ADDR` of the `serving the web view on http://ADDR/ …` line a `trialwatch serve`
/// started with piped stdout prints first (the tests and the publish benchmark listen on port
/// 0, so this is how they learn the port).
pub fn served_addr(child: &mut Child) -> String {
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("serve's stdout is piped"))
        .read_line(&mut line)
        .unwrap();
    line.split("http://")
        .nth(1)
        .and_then(|r| r.split('/').next())
        .unwrap_or_else(|| panic!("no address in {line:?}"))
        .to_string()
}

fn missing(what: &str) -> Option<String> {
    if std::env::var_os("CI").is_some() {
        panic!("{what} is missing in CI; run `bash .ci/install-test-deps.sh`");
    }
    eprintln!(
        "\n!!!!!!!! SKIPPED: {what} is not installed; run `bash .ci/install-test-deps.sh` !!!!!!!!\n"
    );
    None
}

/// A Python interpreter that can `import feedparser` (`TRIALWATCH_TEST_PYTHON` or `python3`).
pub fn feedparser_python() -> Option<String> {
    let py = std::env::var("TRIALWATCH_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let ok = Command::new(&py)
        .args(["-c", "import feedparser"])
        .output()
        .is_ok_and(|o| o.status.success());
    if ok {
        Some(py)
    } else {
        missing("Python's feedparser")
    }
}

/// The headless browser: `TRIALWATCH_TEST_CHROMIUM`, or `chromium` on the PATH.
pub fn chromium() -> Option<String> {
    let candidates = std::env::var("TRIALWATCH_TEST_CHROMIUM")
        .map(|c| vec![c])
        .unwrap_or_else(|_| vec!["chromium".into(), "chromium-browser".into()]);
    for c in candidates {
        if Command::new(&c)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
        {
            return Some(c);
        }
    }
    missing("chromium")
}
