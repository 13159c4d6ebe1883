//! What CT.gov's record-history index says of a trial beyond its list of versions
//! (`docs/ctgov-api.md` §9): kept with the trial so `show` and `history` can tell whether the
//! primary outcomes changed since registration without fetching any version.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Whether the primary outcomes are as first registered. From the index's `originalData`
/// (`primaryOutcomesSame: true`) and `lastUpdateVersions.primaryOutcomes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum OutcomeSwitch {
    /// The primary outcomes are as registered.
    Unchanged,
    /// Changed since registration.
    Changed {
        /// CT.gov's version number of their last change.
        last_ctgov_version: u32,
    },
}

/// The history index of a trial as trialwatch last read it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistorySummary {
    /// When trialwatch read the index.
    pub checked_at: DateTime<Utc>,
    /// CT.gov's newest version number then (`None`: CT.gov lists no version).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latest_ctgov_version: Option<u32>,
    /// What the index says of the primary outcomes, when it says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome_switch: Option<OutcomeSwitch>,
}

impl OutcomeSwitch {
    /// The sentence `show` and `history` print.
    pub fn sentence(&self) -> String {
        match self {
            OutcomeSwitch::Unchanged => "primary outcomes unchanged since registration".into(),
            OutcomeSwitch::Changed { last_ctgov_version } => format!(
                "primary outcomes changed since registration, last in CT.gov v{last_ctgov_version}"
            ),
        }
    }
}
