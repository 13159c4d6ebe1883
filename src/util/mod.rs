//! Small helpers that several layers need and that belong to none of them: text for messages,
//! HTTP conventions, backoff, re-executing this program, secret files, the zone human times are shown in. Imports nothing else of the crate.

pub mod backoff;
pub mod exec;
pub mod http;
pub mod secret;
pub mod text;
pub mod zone;
