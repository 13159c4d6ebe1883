//! What the daily deadline evaluation has told about each trial (`A` NCT → [`Told`] JSON), so
//! each deadline event goes out once per trial, kind and due date, and the one atomic write of
//! an evaluation: the changed records together with the alerts they owe.
//!
//! The rules are `crate::deadlines`'; running them is `sync::deadlines`'.

use super::codec::to_json;
use super::keys::key;
use super::{OutboxEntry, Result, Store};
use crate::deadlines::Told;
use crate::model::NctId;

impl Store {
    /// What was told about `nct` (nothing yet: the default).
    pub fn deadlines_told(&self, nct: &NctId) -> Result<Told> {
        Ok(self.get_json(&key(b'A', nct))?.unwrap_or_default())
    }

    /// One evaluation's result in one atomic batch: the trials whose record of what was told
    /// changed, and the alerts the events owe (with their due-index keys).
    pub fn deadlines_commit(&self, told: &[(NctId, Told)], alerts: &[OutboxEntry]) -> Result<()> {
        let mut batch = sled::Batch::default();
        for (nct, t) in told {
            batch.insert(key(b'A', nct), to_json(t));
        }
        for e in alerts {
            batch.insert(e.due_key(), &[][..]);
            batch.insert(e.key(), to_json(e));
        }
        self.writing()?.apply_batch(batch)?;
        Ok(())
    }
}
