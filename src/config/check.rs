//! Checks every section shares: numbers within a range (with the message that names the key,
//! the range and the default) and paths relative to the config file. Section-specific checks
//! stay in their section's file.

use std::path::{Path, PathBuf};
use std::time::Duration;

/// An optional whole number: `default` when absent; when outside `min..=max`, a problem naming
/// `key`, the range and the default is recorded and the default is used so checking goes on.
pub(super) fn int_in_range(
    value: Option<i64>,
    key: &str,
    default: i64,
    min: i64,
    max: i64,
    problems: &mut Vec<String>,
) -> i64 {
    match value {
        None => default,
        Some(v) if (min..=max).contains(&v) => v,
        Some(v) => {
            problems.push(format!(
                "`{key}` = {v} is out of range; use a whole number from {min} to {max} (default {default})"
            ));
            default
        }
    }
}

/// An optional number of seconds, checked like [`int_in_range`] (NaN and infinities are out of
/// range too), as a `Duration`.
pub(super) fn secs_in_range(
    value: Option<f64>,
    key: &str,
    default: f64,
    min: f64,
    max: f64,
    problems: &mut Vec<String>,
) -> Duration {
    match value {
        None => Duration::from_secs_f64(default),
        Some(v) if v.is_finite() && v >= min && v <= max => Duration::from_secs_f64(v),
        Some(v) => {
            problems.push(format!(
                "`{key}` = {v} is out of range; use seconds from {min} to {max} (default {default})"
            ));
            Duration::from_secs_f64(default)
        }
    }
}

/// A path from the config, relative to the config file's directory.
pub(super) fn relative_to(file: Option<&Path>, p: &str) -> PathBuf {
    let p = PathBuf::from(p);
    match (p.is_relative(), file.and_then(Path::parent)) {
        (true, Some(dir)) if !dir.as_os_str().is_empty() => dir.join(p),
        _ => p,
    }
}
