//! STUB
use crate::model::{Record, VersionMeta, WatchedFields};
use chrono::{DateTime, Utc};
pub struct PageOptions<'a> {
    pub canonical_base: Option<&'a str>,
    pub footer_note: Option<&'a str>,
    pub recent_days: u32,
    pub watched: &'a WatchedFields,
}
pub fn mirror_page(
    record: &Record,
    last_seen_at: DateTime<Utc>,
    now: DateTime<Utc>,
    versions: &[VersionMeta],
    opts: &PageOptions,
) -> String {
    let _ = (record, last_seen_at, now, versions, opts.recent_days);
    String::new()
}
