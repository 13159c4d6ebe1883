//! Reads cost what they return: `changes --since` decodes only the versions it prints, so a
//! first version's blobs (skipped by default) are never read. Shown by damaging one: `changes`
//! still answers, while `history` (which does read it) reports the damage.

use std::io::{Read, Seek, SeekFrom, Write};

use serde_json::{Value, json};

use crate::support::env::{TestEnv, edit, fixture_as, stderr};

/// Flip one payload byte of the pack entry at `offset` (entries are `len u32 LE | crc32 | payload`).
fn damage_entry(pack: &std::path::Path, offset: u64) {
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(pack)
        .unwrap();
    f.seek(SeekFrom::Start(offset)).unwrap();
    let mut len = [0u8; 4];
    f.read_exact(&mut len).unwrap();
    let len = u32::from_le_bytes(len) as u64;
    assert!(len > 0);
    let at = offset + 8 + len - 1;
    f.seek(SeekFrom::Start(at)).unwrap();
    let mut b = [0u8; 1];
    f.read_exact(&mut b).unwrap();
    f.seek(SeekFrom::Start(at)).unwrap();
    f.write_all(&[b[0] ^ 0xff]).unwrap();
}

#[test]
fn changes_never_decodes_the_first_versions_it_skips() {
    let a = "NCT09200001";
    let env = TestEnv::new(&[a]);
    let v1 = fixture_as("NCT03418623.json", a);
    env.server.put_study(v1.clone());
    env.ok(&["sync"]);
    env.server.put_study(edit(&v1, |p| {
        p["statusModule"]["overallStatus"] = json!("TERMINATED");
    }));
    env.ok(&["sync"]);

    // The first blob of the first pack is version 1's metadata (a commit appends metadata,
    // record and raw JSON, in that order).
    let pack = env.data_dir().join("packs").join("000001.pack");
    damage_entry(&pack, 0);
    let out = env.run(&["history", a]);
    assert!(!out.status.success(), "history read the damaged version 1");
    assert!(stderr(&out).contains(a), "{}", stderr(&out));

    let c: Value = env.json(&["changes", "--since", "1d", "--json"]);
    let rows = c.as_array().unwrap();
    assert!(!rows.is_empty(), "{c}");
    assert!(rows.iter().all(|r| r["version"] == json!(2)), "{c}");
    assert!(c.to_string().contains("TERMINATED"), "{c}");
    // Filtered to another trial, nothing of this one is read at all.
    let c: Value = env.json(&["changes", "--since", "1d", "--nct", "NCT09200002", "--json"]);
    assert_eq!(c, json!([]));
    // Asking for first versions does read it, and says which blob is damaged.
    let out = env.run(&["changes", "--since", "1d", "--include-first"]);
    assert!(!out.status.success());
}
