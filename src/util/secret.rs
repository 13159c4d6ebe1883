//! Reading a secret (SMTP password, webhook signing key) from a file, the one way every caller
//! does it: the whole file, less its trailing line break, and never an empty one.

use std::path::Path;

/// Why a secret file gave no secret; the message gives the fix, never the content. Callers put
/// the file's name (and the key or flag that named it) in front.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretFileError {
    /// The file could not be read.
    #[error("cannot be read ({reason}); fix its path or permissions")]
    Unreadable {
        /// The file, as given.
        path: String,
        /// The operating system's reason.
        reason: String,
    },
    /// The file holds nothing but white space.
    #[error("is empty; put the secret in it, on one line")]
    Empty {
        /// The file, as given.
        path: String,
    },
}

/// The secret held in `path`: its content without the trailing `\r`/`\n`.
pub fn read_secret_file(path: &Path) -> Result<String, SecretFileError> {
    let text = std::fs::read_to_string(path).map_err(|e| SecretFileError::Unreadable {
        path: path.display().to_string(),
        reason: e.to_string(),
    })?;
    if text.trim().is_empty() {
        return Err(SecretFileError::Empty {
            path: path.display().to_string(),
        });
    }
    Ok(text.trim_end_matches(['\r', '\n']).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_lose_their_line_break_and_empty_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s");
        std::fs::write(&p, "hunter2\r\n").unwrap();
        assert_eq!(read_secret_file(&p).unwrap(), "hunter2");
        std::fs::write(&p, " \n").unwrap();
        assert!(matches!(
            read_secret_file(&p),
            Err(SecretFileError::Empty { .. })
        ));
        let e = read_secret_file(&dir.path().join("missing")).unwrap_err();
        assert!(e.to_string().contains("cannot be read"), "{e}");
    }
}
