//! Output for people: the Markdown mirror page (`markdown`) and terminal text (`text`).
//! JSON output is the serde form of the model types and needs no module of its own.

pub mod markdown;
pub mod text;
