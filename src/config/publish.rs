//! `[publish]` and `[web]`: where the daemon exports the store after every sync
//! ([`PublishConfig`]) and where it serves the read-only web view ([`WebConfig`]). The export
//! and the server themselves are `crate::publish`'s, `crate::web`'s and the CLI's business.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::check::relative_to;

/// `[publish]` as the file has it.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPublish {
    pub(super) dir: Option<String>,
}

/// `[web]` as the file has it.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawWeb {
    pub(super) listen: Option<String>,
}

/// `[publish]`: the static export the daemon keeps up to date.
#[derive(Debug, Clone, Default)]
pub struct PublishConfig {
    /// Export here after every sync (as `trialwatch export DIR`); `None`: no export.
    pub dir: Option<PathBuf>,
}

/// `[web]`: the daemon's read-only web view.
#[derive(Debug, Clone, Default)]
pub struct WebConfig {
    /// Serve the web view on this address while the daemon runs; `None`: no web server.
    pub listen: Option<SocketAddr>,
}

/// The address `trialwatch serve` listens on unless told otherwise: loopback only.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";

pub(super) fn validate_publish(
    raw: &RawPublish,
    file: Option<&Path>,
    problems: &mut Vec<String>,
) -> PublishConfig {
    let dir = match raw.dir.as_deref() {
        None => None,
        Some(d) if d.trim().is_empty() => {
            problems.push(
                "`publish.dir` is empty; give the export directory, e.g. \"/var/www/trials\", or \
                 leave the key out"
                    .into(),
            );
            None
        }
        Some(d) => Some(relative_to(file, d)),
    };
    PublishConfig { dir }
}

/// Parse a listen address (`127.0.0.1:8080`, `[::1]:8080`); the message names `what`.
pub fn parse_listen(s: &str, what: &str) -> Result<SocketAddr, String> {
    s.trim().parse::<SocketAddr>().map_err(|_| {
        format!(
            "{what} = {s:?} is not an IP address and port; e.g. \"{DEFAULT_LISTEN}\" \
             (loopback only) or \"[::1]:8080\""
        )
    })
}

pub(super) fn validate_web(raw: &RawWeb, problems: &mut Vec<String>) -> WebConfig {
    let listen = raw
        .listen
        .as_deref()
        .and_then(|s| match parse_listen(s, "`web.listen`") {
            Ok(a) => Some(a),
            Err(e) => {
                problems.push(e);
                None
            }
        });
    WebConfig { listen }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    #[test]
    fn publish_and_web_sections_are_read_and_checked() {
        let c = Config::from_toml(
            "[publish]\ndir = \"site\"\n[web]\nlisten = \"127.0.0.1:9000\"\n",
            Some(std::path::Path::new("/etc/tw/c.toml")),
        )
        .unwrap();
        assert_eq!(
            c.publish.dir.as_deref(),
            Some(std::path::Path::new("/etc/tw/site"))
        );
        assert_eq!(c.web.listen.map(|a| a.port()), Some(9000));
        let e = Config::from_toml("[web]\nlisten = \"localhost\"\n", None)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("`web.listen` = \"localhost\"") && e.contains("127.0.0.1:8080"),
            "{e}"
        );
        let e = Config::from_toml("[publish]\ndir = \"\"\n", None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("`publish.dir` is empty"), "{e}");
        let d = Config::from_toml("", None).unwrap();
        assert!(d.publish.dir.is_none() && d.web.listen.is_none());
    }
}
