//! STUB
use crate::model::{FieldChange, VersionMeta};
pub fn history_line(v: &VersionMeta, max_changes: usize) -> String {
    format!("{} {max_changes}", v.version)
}
pub fn change_line(c: &FieldChange) -> String {
    c.path.clone()
}
pub fn diff_report(nct: &str, from: u32, to: u32, changes: &[FieldChange]) -> String {
    format!("{nct} {from} {to} {}", changes.len())
}
