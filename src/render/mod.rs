//! Output for people: the Markdown mirror page (`markdown`), terminal text (`text`), and the
//! line and word diffs of long text that the terminal and the email share (`textdiff`).
//! JSON output is the serde form of the model types and needs no module of its own.

pub mod markdown;
pub mod text;
pub mod textdiff;
