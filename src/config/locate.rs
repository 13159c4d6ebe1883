//! Where the configuration is looked for and where the store goes when nothing says: the
//! system paths for root (a service), the XDG base directories for anyone else, so a user
//! without root gets a working set-up with no flags at all.

use std::path::{Path, PathBuf};

use super::{DEFAULT_CONFIG_PATHS, DEFAULT_DATA_DIR};

/// Whether this process runs as root. `/proc/self` belongs to the process's effective user;
/// read from there rather than calling `geteuid` (which would need `unsafe` or another crate).
pub(super) fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// `$XDG_CONFIG_HOME` or `~/.config`, `$XDG_DATA_HOME` or `~/.local/share` (the XDG Base
/// Directory spec: a relative value is ignored).
fn xdg(var: &str, fallback: &str) -> Option<PathBuf> {
    std::env::var_os(var)
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| {
            std::env::var_os("HOME")
                .map(PathBuf::from)
                .filter(|p| p.is_absolute())
                .map(|h| h.join(fallback))
        })
}

/// The config files looked for without `--config`, in order: for a user other than root,
/// `$XDG_CONFIG_HOME/trialwatch/config.toml` first, then the system's paths.
pub fn config_candidates() -> Vec<PathBuf> {
    let mut out = Vec::new();
    if !is_root()
        && let Some(dir) = xdg("XDG_CONFIG_HOME", ".config")
    {
        out.push(dir.join("trialwatch").join("config.toml"));
    }
    out.extend(DEFAULT_CONFIG_PATHS.iter().map(PathBuf::from));
    out
}

/// The store's directory when the config sets no `data_dir`: `/var/lib/trialwatch` for root
/// or with the system's config (so a user's commands reach the service's store), else
/// `$XDG_DATA_HOME/trialwatch`.
pub(super) fn default_data_dir(config: Option<&Path>) -> PathBuf {
    let system_config = config.is_some_and(|p| p.starts_with("/etc"));
    if is_root() || system_config {
        return PathBuf::from(DEFAULT_DATA_DIR);
    }
    xdg("XDG_DATA_HOME", ".local/share")
        .map(|d| d.join("trialwatch"))
        .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR))
}
