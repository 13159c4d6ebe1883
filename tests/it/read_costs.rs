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

/// The `(offset, first payload byte)` of every entry of a pack (`len u32 LE | crc32 | payload`).
fn pack_entries(pack: &std::path::Path) -> Vec<(u64, u8)> {
    let bytes = std::fs::read(pack).unwrap();
    let mut out = Vec::new();
    let mut at = 0usize;
    while at + 8 < bytes.len() {
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        if len == 0 || at + 8 + len > bytes.len() {
            break;
        }
        out.push((at as u64, bytes[at + 8]));
        at += 8 + len;
    }
    out
}

/// Flip the last payload byte of the entry at `offset`.
fn damage(pack: &std::path::Path, offset: u64) {
    let mut bytes = std::fs::read(pack).unwrap();
    let at = offset as usize;
    let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
    bytes[at + 8 + len - 1] ^= 0xff;
    std::fs::write(pack, bytes).unwrap();
}

/// `changes --since` judges a status change (critical, with the reason for stopping and the
/// status before) from what the store kept beside the version's metadata at commit, decoding
/// no record: with both records' blobs damaged it prints exactly what it printed before,
/// while `show`, which reads a record, reports the damage.
#[test]
fn changes_judges_severity_without_decoding_records() {
    let a = "NCT09300002";
    let env = TestEnv::new(&[a]);
    let v1 = fixture_as("NCT03418623.json", a);
    env.server.put_study(v1.clone());
    env.ok(&["sync"]);
    env.server.put_study(edit(&v1, |p| {
        p["statusModule"]["overallStatus"] = json!("TERMINATED");
        p["statusModule"]["whyStopped"] = json!("funding ended");
    }));
    env.ok(&["sync"]);
    let before = env.ok(&["changes", "--since", "1d", "--json"]);
    assert!(before.contains("why stopped: funding ended"), "{before}");
    assert!(before.contains("\"critical\""), "{before}");
    let text_before = env.ok(&["changes", "--since", "1d"]);

    // Entries: v1 metadata, record, raw JSON, commit record (tag 0xC1), then v2's the same way.
    let pack = env.data_dir().join("packs").join("000001.pack");
    let entries = pack_entries(&pack);
    let commit = entries.iter().position(|e| e.1 == 0xC1).unwrap();
    assert_eq!(commit, 3, "{entries:?}");
    damage(&pack, entries[1].0); // version 1's record
    damage(&pack, entries[commit + 2].0); // version 2's record
    let out = env.run(&["show", a]);
    assert!(!out.status.success(), "show read a damaged record");

    assert_eq!(env.ok(&["changes", "--since", "1d", "--json"]), before);
    assert_eq!(env.ok(&["changes", "--since", "1d"]), text_before);
}

/// `history`, `show`, `diff`, `changes` and `status` read the heads file a sync leaves (no sled
/// open, so their cost does not grow with the store), and say exactly what they say once it is
/// gone and the index answers; a write removes it first and writes it again as it ends.
#[test]
fn reads_from_the_heads_file_equal_reads_from_the_index() {
    let (a, b) = ("NCT09300011", "NCT09300012");
    let env = TestEnv::new(&[a, b]);
    let v1 = fixture_as("NCT03418623.json", a);
    env.server.put_study(v1.clone());
    env.server.put_study(fixture_as("NCT06171568.json", b));
    env.ok(&["sync"]);
    env.server.put_study(edit(&v1, |p| {
        p["statusModule"]["overallStatus"] = json!("TERMINATED");
    }));
    env.ok(&["sync"]);
    let heads = env.data_dir().join("heads");
    assert!(heads.exists(), "no heads file after a sync");
    let reads: [&[&str]; 6] = [
        &["history", a, "--json"],
        &["show", a, "--format", "json"],
        &["show", b],
        &["diff", a, "--json"],
        &["changes", "--since", "1d", "--json"],
        &["status", "--json"],
    ];
    let from_heads: Vec<String> = reads.iter().map(|r| env.ok(r)).collect();
    assert!(from_heads[4].contains("TERMINATED"), "{}", from_heads[4]);
    std::fs::remove_file(&heads).unwrap();
    for (r, h) in reads.iter().zip(&from_heads) {
        let from_index = env.ok(r);
        if r[0] == "status" {
            // The store's size on disk is the one figure that moves (sled writes as it opens).
            let strip = |t: &str| {
                let mut v: serde_json::Value = serde_json::from_str(t).unwrap();
                v["store"]["size_bytes"] = json!(null);
                v
            };
            assert_eq!(strip(&from_index), strip(h), "{r:?}");
        } else {
            assert_eq!(&from_index, h, "{r:?}");
        }
    }
    // The first of those reads found no file and wrote one again.
    assert!(heads.exists());
    assert!(env.ok(&["verify"]).contains("store OK"));
}
