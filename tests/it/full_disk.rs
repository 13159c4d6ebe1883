//! A full disk and a read-only store: a sync that hits a full disk fails naming the data
//! directory and its free space and changes nothing stored; read commands work meanwhile and
//! on a read-only mount; once space comes back every command works again (no leftover sled
//! snapshot breaks the open).
//!
//! The small file system is a tmpfs mounted over the test's data directory, which needs root
//! (CI runs as root); elsewhere these tests say so and skip.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::json;

use crate::support::env::{TestEnv, edit, fixture_as, stderr, stdout};

/// A tmpfs of `size` mounted on `dir`, unmounted on drop.
struct Mount(PathBuf);

impl Mount {
    fn tmpfs(dir: &Path, size: &str) -> Option<Mount> {
        std::fs::create_dir_all(dir).unwrap();
        let ok = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(dir)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            eprintln!(
                "SKIPPED: cannot mount a tmpfs at {} (needs root, as in CI)",
                dir.display()
            );
            return None;
        }
        Some(Mount(dir.to_path_buf()))
    }

    fn remount(&self, opts: &str) {
        let s = Command::new("mount")
            .args(["-o", &format!("remount,{opts}")])
            .arg(&self.0)
            .status()
            .unwrap();
        assert!(s.success(), "remount {opts}");
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

const IDS: [&str; 3] = ["NCT82000001", "NCT82000002", "NCT82000003"];
const SOURCES: [&str; 3] = ["NCT02552212.json", "NCT03418623.json", "NCT00763412.json"];

fn put_round(env: &TestEnv, round: u32) {
    let mut rng = fastrand::Rng::with_seed(u64::from(round));
    for (id, src) in IDS.iter().zip(SOURCES) {
        // Text that does not compress, so a sync has much to write.
        let text: String = (0..300_000).map(|_| rng.alphanumeric()).collect();
        env.server.put_study(edit(&fixture_as(src, id), |p| {
            p["designModule"]["enrollmentInfo"]["count"] = json!(700 + round);
            p["descriptionModule"]["detailedDescription"] = json!(text);
        }));
    }
}

/// Fill the file system holding `dir` until a write fails; the filler file is returned.
fn fill(dir: &Path) -> PathBuf {
    use std::io::Write;
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).unwrap();
    let block = vec![0x5au8; 64 * 1024];
    while f.write_all(&block).is_ok() {}
    // The last few bytes, one at a time.
    while f.write_all(&[1]).is_ok() {}
    let _ = f.sync_all();
    path
}

fn histories(env: &TestEnv) -> Vec<serde_json::Value> {
    IDS.iter()
        .map(|id| env.json(&["history", id, "--json"]))
        .collect()
}

fn read_commands_work(env: &TestEnv) {
    for id in IDS {
        env.ok(&["history", id]);
        env.ok(&["show", id]);
        env.ok(&["diff", id]);
    }
    env.ok(&["changes", "--since", "30d"]);
    env.ok(&["status"]);
    let v = env.ok(&["verify"]);
    assert!(v.contains("store OK"), "{v}");
}

#[test]
fn a_full_disk_fails_the_sync_clearly_and_every_command_works_once_space_returns() {
    let env = TestEnv::new(&IDS);
    let Some(_mount) = Mount::tmpfs(&env.data_dir(), "8m") else {
        return;
    };
    put_round(&env, 0);
    env.ok(&["sync"]);
    let before = histories(&env);

    let filler = fill(&env.data_dir());
    put_round(&env, 1);
    let out = env.run(&["sync"]);
    let text = format!("{}{}", stdout(&out), stderr(&out));
    assert_ne!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("is full"), "{text}");
    assert!(
        text.contains(&env.data_dir().display().to_string()) && text.contains(" free"),
        "the message names the data directory and its free space: {text}"
    );
    // Read commands work while the disk is full, and nothing stored changed.
    read_commands_work(&env);
    assert_eq!(histories(&env), before);

    // Some space, enough to open the store but not for the new versions: the commit fails.
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&filler)
        .unwrap();
    f.set_len(f.metadata().unwrap().len() - 400 * 1024).unwrap();
    drop(f);
    let out = env.run(&["sync"]);
    let text = format!("{}{}", stdout(&out), stderr(&out));
    assert_ne!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains("is full") && text.contains(&env.data_dir().display().to_string()),
        "{text}"
    );
    // The heads file the failed sync could not write again left no half-written copy.
    assert!(!env.data_dir().join("heads.tmp").exists());
    fill(&env.data_dir());
    read_commands_work(&env);
    assert_eq!(histories(&env), before);

    // What a full disk used to leave behind: an unfinished sled snapshot.
    std::fs::remove_file(filler).unwrap();
    let snap = env
        .data_dir()
        .join("db")
        .join("snap.00000000000FFFFF.generating");
    std::fs::write(&snap, b"").unwrap();
    let out = env.ok(&["sync"]);
    assert!(!snap.exists());
    assert!(out.contains(" 0 failed"), "{out}");
    assert!(
        env.data_dir().join("heads").exists(),
        "space is back: the sync wrote the heads file"
    );
    read_commands_work(&env);
    let after = histories(&env);
    for (a, b) in after.iter().zip(&before) {
        assert_eq!(a.as_array().unwrap().len(), b.as_array().unwrap().len() + 1);
    }
}

#[test]
fn read_commands_work_on_a_read_only_store_and_writes_fail_clearly() {
    let env = TestEnv::new(&IDS);
    let Some(mount) = Mount::tmpfs(&env.data_dir(), "16m") else {
        return;
    };
    put_round(&env, 0);
    env.ok(&["sync"]);
    put_round(&env, 1);
    env.ok(&["sync"]);
    let before = histories(&env);
    mount.remount("ro");
    read_commands_work(&env);
    assert_eq!(histories(&env), before);
    put_round(&env, 2);
    let out = env.run(&["sync"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(
        stderr(&out).contains("cannot open the store"),
        "{}",
        stderr(&out)
    );
    mount.remount("rw");
    env.ok(&["sync"]);
}
