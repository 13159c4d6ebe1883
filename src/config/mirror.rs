//! `[mirror]`: the Markdown page's settings ([`MirrorConfig`]) and the check that a watched-field
//! pattern names a real schema path ([`validate_field_pattern`], also used by the CLI's `--field`).
//! Rendering the page is `crate::render`'s business.

use super::check::int_in_range;
use super::raw;
use crate::model::{FieldPattern, WatchedFields, validate_http_url};
use crate::schema;

/// `[mirror]`: how the Markdown mirror page is written, and the watched fields that both the
/// page's change list and the subscriptions without their own `fields` filter use.
#[derive(Debug, Clone)]
pub struct MirrorConfig {
    /// Base of the page's `canonical_url` (`{canonical_base}/{NCT}.md`), without trailing slash.
    pub canonical_base: Option<String>,
    /// Last line of the page's footer.
    pub footer_note: Option<String>,
    /// Window of the page's "Recent Field Changes".
    pub recent_days: u32,
    /// Watched fields: the page's change list and the default subscription filter.
    pub fields: WatchedFields,
}

/// Check `[mirror]`: the canonical base must be an http(s) URL, every field pattern must name
/// a real path.
pub(super) fn validate_mirror(raw: &raw::Mirror, problems: &mut Vec<String>) -> MirrorConfig {
    let canonical_base = raw.canonical_base.as_deref().and_then(|b| {
        match validate_http_url(b) {
            Ok(_) => Some(b.trim_end_matches('/').to_string()),
            Err(_) => {
                problems.push(format!(
                    "`mirror.canonical_base` = {b:?} is not an http(s) URL; e.g. \"https://example.org/trials\""
                ));
                None
            }
        }
    });
    let fields = match &raw.fields {
        None => WatchedFields::default(),
        Some(list) => {
            let mut pats = Vec::new();
            for (i, f) in list.iter().enumerate() {
                match validate_field_pattern(f) {
                    Ok(p) => pats.push(p),
                    Err(e) => problems.push(format!("`mirror.fields[{i}]`: {e}")),
                }
            }
            WatchedFields(pats)
        }
    };
    MirrorConfig {
        canonical_base,
        footer_note: raw.footer_note.clone().filter(|s| !s.trim().is_empty()),
        recent_days: int_in_range(raw.recent_days, "mirror.recent_days", 30, 1, 3650, problems)
            as u32,
        fields,
    }
}

/// A field pattern is valid when it matches at least one path of the schema, so a typo such as
/// `status.overalStatus` is caught instead of silently watching nothing.
pub fn validate_field_pattern(s: &str) -> Result<FieldPattern, String> {
    let p = FieldPattern::new(s.trim());
    let sample_location = format!("{}.x|y||z", schema::LOCATIONS);
    if !s.trim().is_empty()
        && (schema::all_paths().any(|path| p.matches(&path)) || p.matches(&sample_location))
    {
        Ok(p)
    } else {
        Err(format!(
            "{s:?} matches no field path; use `section.key` from the schema (e.g. \
             \"status.overallStatus\", \"locations.*\"; `*` is a wildcard); `trialwatch fields` lists them"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_patterns_must_name_real_paths() {
        assert!(validate_field_pattern("status.*").is_ok());
        assert!(validate_field_pattern("locations.*").is_ok());
        assert!(validate_field_pattern("results.hasResults").is_ok());
        assert!(validate_field_pattern("nope.*").is_err());
        assert!(validate_field_pattern("").is_err());
    }
}
