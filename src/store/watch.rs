//! The watch list kept in the store (`trialwatch watch add/remove/list`) and small named meta
//! values of whole-store bookkeeping (e.g. the last sync's summary).
//!
//! It does not decide which trials a sync fetches (that is `sync::watched_ids`, which merges this
//! list with the config's).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::codec::to_json;
use super::keys::{key, name_key};
use super::{Result, Store};
use crate::model::NctId;

/// An entry of the watch list that `trialwatch watch add` keeps in the store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WatchEntry {
    /// The watched trial.
    pub nct_id: NctId,
    /// When it was added, for `trialwatch watch list`.
    pub added_at: DateTime<Utc>,
}

impl Store {
    /// Add `nct` to the watch list; `false` when it was already there (its entry is kept).
    pub fn watch_add(&self, nct: &NctId, at: DateTime<Utc>) -> Result<bool> {
        let k = key(b'W', nct);
        let entry = WatchEntry {
            nct_id: nct.clone(),
            added_at: at,
        };
        let previous =
            self.writing()?
                .compare_and_swap(&k, None as Option<&[u8]>, Some(to_json(&entry)))?;
        Ok(previous.is_ok())
    }

    /// Remove `nct` from the watch list; `false` when it was not there.
    pub fn watch_remove(&self, nct: &NctId) -> Result<bool> {
        Ok(self.writing()?.remove(key(b'W', nct))?.is_some())
    }

    /// The watch list, by ID.
    pub fn watch_list(&self) -> Result<Vec<WatchEntry>> {
        self.scan_json(b"W")
    }

    /// A small named bookkeeping value (e.g. the last sync's summary).
    pub fn get_meta<T: for<'de> Deserialize<'de>>(&self, name: &str) -> Result<Option<T>> {
        let k = name_key(b'm', name);
        if let Some(facts) = self.heads_facts() {
            return facts
                .meta
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| super::codec::from_json(&k, v.as_bytes()))
                .transpose();
        }
        self.get_json(&k)
    }

    /// Store a small named bookkeeping value, replacing the previous one.
    pub fn set_meta<T: Serialize>(&self, name: &str, value: &T) -> Result<()> {
        self.writing()?
            .insert(name_key(b'm', name), to_json(value))?;
        Ok(())
    }
}
