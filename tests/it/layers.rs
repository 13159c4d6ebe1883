//! The crate's layers (`src/lib.rs`, `ARCHITECTURE.md` §2): every module imports only modules
//! below it, so no import circle can come back unnoticed. Read from the source files, like a
//! reviewer would, so a new `use crate::…` that goes up fails here with the file that has it.

use std::path::Path;

/// Bottom first; a module may use only modules before it in this list.
const LAYERS: &[&str] = &[
    "model",
    "schema",
    "util",
    "clock",
    "config",
    "ctgov",
    "normalize",
    "diff",
    "render",
    "severity",
    "deadlines",
    "store",
    "notify",
    "outbox",
    "backfill",
    "sync",
    "publish",
    "web",
    "daemon",
    "cli",
];

/// `crate::name` paths in non-test code of `src` (comments and `#[cfg(test)]` modules left out).
fn crate_paths(text: &str) -> Vec<String> {
    let code = text.split("#[cfg(test)]").next().unwrap_or("");
    let mut out = Vec::new();
    for line in code.lines() {
        let line = line.split("//").next().unwrap_or("");
        let mut rest = line;
        while let Some(i) = rest.find("crate::") {
            rest = &rest[i + "crate::".len()..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                .collect();
            out.push(name);
        }
    }
    out
}

fn visit(dir: &Path, files: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            visit(&p, files);
        } else if p.extension().is_some_and(|x| x == "rs") {
            files.push(p);
        }
    }
}

/// Guards the layer map: an upward import (a circle in waiting) names its file and module.
#[test]
fn every_module_imports_only_the_layers_below_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    visit(&src, &mut files);
    let mut wrong = Vec::new();
    let mut checked = 0;
    for f in &files {
        let rel = f.strip_prefix(&src).unwrap();
        let first = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy();
        let module = first.trim_end_matches(".rs").to_string();
        let Some(level) = LAYERS.iter().position(|m| *m == module) else {
            assert!(
                module == "lib" || module == "main",
                "{}: module `{module}` is not in the layer list; add it to LAYERS, src/lib.rs and ARCHITECTURE.md",
                rel.display()
            );
            continue;
        };
        checked += 1;
        for used in crate_paths(&std::fs::read_to_string(f).unwrap()) {
            match LAYERS.iter().position(|m| *m == used) {
                Some(l) if l > level => wrong.push(format!("{} uses crate::{used}", rel.display())),
                _ => {}
            }
        }
    }
    assert!(
        checked > 40,
        "only {checked} source files found under {}",
        src.display()
    );
    assert!(
        wrong.is_empty(),
        "imports that go up a layer:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn the_path_reader_sees_through_comments_and_tests() {
    let text = "use crate::model::X; // crate::cli\nfn f() { crate::store::Store::open(); }\n#[cfg(test)]\nuse crate::daemon;";
    assert_eq!(crate_paths(text), vec!["model", "store"]);
}
