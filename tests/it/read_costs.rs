//! Issue #14: a read command costs what it returns, not what the rest of the configuration
//! holds. The read commands (`history`, `show`, `diff`, `changes`, `status`, `verify`) never
//! read the `[watch] nct_file` list, so a broken or missing watch file does not stop them,
//! while the commands that use the list (`sync`, `watch list`, `check-config`) still refuse it
//! with the message that names the file and its bad line.

use serde_json::json;

use crate::support::env::{TestEnv, edit, fixture_as, stderr};

#[test]
fn read_commands_do_not_read_the_watch_file() {
    let a = "NCT09300001";
    let list = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(list.path(), format!("{a}\n")).unwrap();
    let env = TestEnv::with_options(
        &[],
        "",
        &format!(
            "backfill = false\nnct_file = {:?}",
            list.path().display().to_string()
        ),
        "",
    );
    let v1 = fixture_as("NCT03418623.json", a);
    env.server.put_study(v1.clone());
    env.ok(&["sync"]);
    env.server.put_study(edit(&v1, |p| {
        p["statusModule"]["overallStatus"] = json!("TERMINATED");
    }));
    env.ok(&["sync"]);

    // Now the watch file goes bad: line 2 is no NCT ID.
    std::fs::write(list.path(), format!("{a}\nNCT-oops\n")).unwrap();
    for args in [
        &["history", a][..],
        &["show", a][..],
        &["diff", a][..],
        &["changes", "--since", "1d"][..],
        &["status"][..],
        &["verify"][..],
    ] {
        let out = env.ok(args);
        assert!(!out.is_empty(), "{args:?}");
    }
    let changes = env.ok(&["changes", "--since", "1d"]);
    assert!(changes.contains("TERMINATED"), "{changes}");

    // The commands that use the list still refuse it, naming the file and the line.
    let where_ = format!("{}:2", list.path().display());
    for args in [&["sync"][..], &["watch", "list"][..], &["check-config"][..]] {
        let out = env.run(args);
        assert!(
            !out.status.success(),
            "{args:?} accepted a broken watch file"
        );
        let err = stderr(&out);
        assert!(err.contains(&where_), "{args:?}: {err}");
        assert!(
            err.contains("`NCT-oops` is not an NCT ID"),
            "{args:?}: {err}"
        );
    }

    // And a watch file that is gone entirely: reads still answer.
    drop(list);
    env.ok(&["history", a]);
    let out = env.run(&["sync"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("cannot be read"), "{}", stderr(&out));
}
