//! Query watches in the store: the queries `trialwatch query add` keeps (`Q` name), each
//! query's members with when they entered and left (`M` name `\0` NCT), its run state (`q`
//! name), and the one atomic write of a query run: membership changes together with the event
//! alerts they owe (`o`/`d` entries, written directly: a run has few events, so no fan-out
//! record is needed).
//!
//! It does not decide who entered or left (that is `sync::queries`) nor run the search
//! (`ctgov::search`).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::codec::to_json;
use super::keys::name_key;
use super::{OutboxEntry, Result, Store};
use crate::model::{NctId, QuerySpec};

/// One trial's membership of one query: its latest stay (a trial that leaves and comes back
/// starts a new stay).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Member {
    /// The trial.
    pub nct_id: NctId,
    /// When a run first found it in the query (for the baseline: the first run).
    pub entered_at: DateTime<Utc>,
    /// When a run no longer found it; `None` while it is a member.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub left_at: Option<DateTime<Utc>>,
    /// Why it entered: `baseline`, `newly registered` or `newly matches`.
    pub entered_because: String,
    /// Its title when last seen in the query, to name it after it left.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// Its overall status when last seen in the query.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
}

impl Member {
    /// Whether it is in the query now.
    pub fn is_current(&self) -> bool {
        self.left_at.is_none()
    }
}

/// What the last run of a query found, for `query list|show` and for the next run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct QueryState {
    /// When the query last ran whole (its membership then is the stored one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_run: Option<DateTime<Utc>>,
    /// How many trials matched then.
    #[serde(default)]
    pub members: usize,
    /// Set when the last attempt did not run the query: too broad, or CT.gov failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

/// `M` name `\0`: the prefix of one query's members (a name holds no NUL).
fn members_prefix(name: &str) -> Vec<u8> {
    let mut k = name_key(b'M', name);
    k.push(0);
    k
}

fn member_key(name: &str, nct: &NctId) -> Vec<u8> {
    let mut k = members_prefix(name);
    k.extend_from_slice(nct.as_str().as_bytes());
    k
}

impl Store {
    /// Store a query, replacing one of the same name.
    pub fn query_put(&self, q: &QuerySpec) -> Result<()> {
        self.writing()?
            .insert(name_key(b'Q', &q.name), to_json(q))?;
        Ok(())
    }

    /// The queries kept in the store, by name.
    pub fn queries(&self) -> Result<Vec<QuerySpec>> {
        self.scan_json(b"Q")
    }

    /// Remove a stored query with its members and state, in one batch; `false` when there
    /// was no such query. Its members' stored versions stay.
    pub fn query_remove(&self, name: &str) -> Result<bool> {
        let k = name_key(b'Q', name);
        if self.db()?.get(&k)?.is_none() {
            return Ok(false);
        }
        let mut batch = sled::Batch::default();
        batch.remove(k);
        batch.remove(name_key(b'q', name));
        for kv in self.db()?.scan_prefix(members_prefix(name)) {
            batch.remove(kv?.0);
        }
        self.writing()?.apply_batch(batch)?;
        Ok(true)
    }

    /// Every trial that ever was in the query (current and former members), by ID.
    pub fn query_members(&self, name: &str) -> Result<Vec<Member>> {
        self.scan_json(members_prefix(name))
    }

    /// The query's run state (default before its first run).
    pub fn query_state(&self, name: &str) -> Result<QueryState> {
        Ok(self.get_json(&name_key(b'q', name))?.unwrap_or_default())
    }

    /// Record a run that did not update the membership (too broad, CT.gov failed).
    pub fn query_set_state(&self, name: &str, state: &QueryState) -> Result<()> {
        self.writing()?
            .insert(name_key(b'q', name), to_json(state))?;
        Ok(())
    }

    /// One run's result in one atomic batch: the members that changed, the new state, and the
    /// alerts the entries and exits owe (with their due-index keys). A crash leaves the old
    /// membership and no alert, or the new one with all of them.
    pub fn query_commit(
        &self,
        name: &str,
        changed: &[Member],
        state: &QueryState,
        alerts: &[OutboxEntry],
    ) -> Result<()> {
        let mut batch = sled::Batch::default();
        for m in changed {
            batch.insert(member_key(name, &m.nct_id), to_json(m));
        }
        batch.insert(name_key(b'q', name), to_json(state));
        for e in alerts {
            batch.insert(e.due_key(), &[][..]);
            batch.insert(e.key(), to_json(e));
        }
        self.writing()?.apply_batch(batch)?;
        Ok(())
    }
}
