//! Writing the export: a file is replaced only when its bytes changed, and always through a
//! temporary file in the same directory renamed into place, so a web server serving the
//! directory sees the old file or the new one, never half of either.
//!
//! There is no fsync per file: an export is derived data that the next export rewrites, and
//! 30,000 fsyncs would cost more than the whole export. The rename alone gives readers the
//! all-or-nothing view.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;

/// Counts what an export did, for its report and for tests.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct WriteStats {
    /// Files whose bytes changed (or were new) and were replaced.
    pub written: usize,
    /// Files left alone because their bytes were already right.
    pub unchanged: usize,
}

/// Puts files under one root directory, only when their content changed.
pub struct Writer {
    root: PathBuf,
    /// What it did so far.
    pub stats: WriteStats,
}

impl Writer {
    /// A writer under `root`, which is created (with its parents) when missing.
    pub fn new(root: &Path) -> anyhow::Result<Writer> {
        std::fs::create_dir_all(root)
            .with_context(|| format!("cannot create the export directory {}", root.display()))?;
        Ok(Writer {
            root: root.to_path_buf(),
            stats: WriteStats::default(),
        })
    }

    /// The export's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Make `rel` (a relative path such as `trials/NCT….md`) hold exactly `bytes`.
    /// Returns whether the file was written.
    pub fn put(&mut self, rel: &str, bytes: &[u8]) -> anyhow::Result<bool> {
        let path = self.root.join(rel);
        if let Ok(old) = std::fs::read(&path)
            && old == bytes
        {
            self.stats.unchanged += 1;
            return Ok(false);
        }
        let dir = path.parent().unwrap_or(&self.root);
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        // A dot name, so a web server's listing and `*.md` globs skip it while it is written.
        let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
        let result = (|| -> std::io::Result<()> {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(bytes)?;
            drop(f);
            std::fs::rename(&tmp, &path)
        })();
        if let Err(e) = result {
            let _ = std::fs::remove_file(&tmp);
            return Err(e).with_context(|| format!("cannot write {}", path.display()));
        }
        self.stats.written += 1;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_changed_files_are_rewritten_and_no_temporary_file_remains() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = Writer::new(&dir.path().join("out")).unwrap();
        assert!(w.put("trials/a.md", b"one").unwrap());
        assert!(!w.put("trials/a.md", b"one").unwrap());
        assert!(w.put("trials/a.md", b"two").unwrap());
        assert_eq!(
            w.stats,
            WriteStats {
                written: 2,
                unchanged: 1
            }
        );
        let names: Vec<_> = std::fs::read_dir(dir.path().join("out/trials"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("a.md")]);
        assert_eq!(
            std::fs::read(dir.path().join("out/trials/a.md")).unwrap(),
            b"two"
        );
    }
}
