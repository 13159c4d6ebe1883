//! The time zone human output is shown in: UTC unless the user asked for another
//! (`--tz ZONE` or `TZ`), and the few ways a time is written for people. Every `--json` output,
//! log line, alert and published page stays in UTC whatever is chosen; only text meant for the
//! terminal goes through here.
//!
//! The zone is set for the thread running one command ([`with_zone`]): a command forwarded to a
//! running daemon runs on a thread of its own there, so two users' commands never see each
//! other's zone, and the daemon's own texts stay UTC. Zone data comes from `chrono-tz` (the
//! IANA database compiled in), so it does not depend on the machine having `tzdata`.

use std::cell::Cell;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

/// A zone to show times in. `None` inside means UTC, written `UTC` as before zones existed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Zone(Option<Tz>);

impl Zone {
    /// UTC: what every output used before `--tz`.
    pub const UTC: Zone = Zone(None);

    /// Its IANA name (`America/New_York`, `UTC`).
    pub fn name(&self) -> &'static str {
        self.0.map(|tz| tz.name()).unwrap_or("UTC")
    }
}

/// Parse a zone as `--tz` and `TZ` give it: an IANA name (`Europe/Berlin`, case as listed),
/// optionally with `TZ`'s leading `:`, or `UTC`/`Z`. The error names the value and the fix.
pub fn parse_zone(s: &str) -> Result<Zone, String> {
    let t = s.trim().trim_start_matches(':');
    if t.eq_ignore_ascii_case("utc") || t == "Z" || t.eq_ignore_ascii_case("etc/utc") {
        return Ok(Zone::UTC);
    }
    t.parse::<Tz>().map(|tz| Zone(Some(tz))).map_err(|_| {
        format!(
            "`{s}` is not a time zone; give an IANA zone name such as America/New_York, \
             Europe/Berlin or UTC (`timedatectl list-timezones` lists them)"
        )
    })
}

thread_local! {
    static DISPLAY: Cell<Zone> = const { Cell::new(Zone::UTC) };
}

/// Run `f` with human times shown in `zone` on this thread, then restore the previous zone.
pub fn with_zone<R>(zone: Zone, f: impl FnOnce() -> R) -> R {
    /// Restores the zone even if `f` unwinds.
    struct Restore(Zone);
    impl Drop for Restore {
        fn drop(&mut self) {
            DISPLAY.with(|d| d.set(self.0));
        }
    }
    let _restore = Restore(DISPLAY.with(|d| d.replace(zone)));
    f()
}

/// The zone human times are shown in on this thread.
pub fn display_zone() -> Zone {
    DISPLAY.with(Cell::get)
}

/// `t` in the display zone with `fmt` (a chrono format; `%Z` is the zone's abbreviation, `UTC`
/// for UTC).
fn shown(t: DateTime<Utc>, fmt: &str) -> String {
    match display_zone().0 {
        None => t.format(fmt).to_string(),
        Some(tz) => t.with_timezone(&tz).format(fmt).to_string(),
    }
}

/// `2026-12-02 05:00 EST` (`2026-12-02 10:00 UTC` without a zone): a time to the minute.
pub fn minutes(t: DateTime<Utc>) -> String {
    shown(t, "%Y-%m-%d %H:%M %Z")
}

/// `2026-12-02 05:00:07 EST`: a time to the second.
pub fn seconds(t: DateTime<Utc>) -> String {
    shown(t, "%Y-%m-%d %H:%M:%S %Z")
}

/// `05:00:07 EST`: the time of day only.
pub fn clock(t: DateTime<Utc>) -> String {
    shown(t, "%H:%M:%S %Z")
}

/// `2026-12-02 10:00` in UTC, as the `changes` table always printed it; `2026-12-02 05:00
/// EST` in another zone, which must be named.
pub fn table_minutes(t: DateTime<Utc>) -> String {
    match display_zone().0 {
        None => t.format("%Y-%m-%d %H:%M").to_string(),
        Some(_) => minutes(t),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at() -> DateTime<Utc> {
        "2026-12-02T10:00:07Z".parse().unwrap()
    }

    #[test]
    fn utc_unless_a_zone_is_set_for_the_thread() {
        assert_eq!(minutes(at()), "2026-12-02 10:00 UTC");
        let ny = parse_zone("America/New_York").unwrap();
        assert_eq!(ny.name(), "America/New_York");
        with_zone(ny, || {
            assert_eq!(minutes(at()), "2026-12-02 05:00 EST");
            assert_eq!(seconds(at()), "2026-12-02 05:00:07 EST");
            assert_eq!(clock(at()), "05:00:07 EST");
            // Another thread keeps its own zone.
            std::thread::spawn(|| assert_eq!(minutes(at()), "2026-12-02 10:00 UTC"))
                .join()
                .unwrap();
        });
        assert_eq!(minutes(at()), "2026-12-02 10:00 UTC");
    }

    #[test]
    fn tz_forms_and_bad_names() {
        assert_eq!(
            parse_zone(":Europe/Berlin").unwrap().name(),
            "Europe/Berlin"
        );
        assert_eq!(parse_zone("UTC").unwrap(), Zone::UTC);
        assert_eq!(parse_zone("Etc/UTC").unwrap(), Zone::UTC);
        let err = parse_zone("Mars/Olympus").unwrap_err();
        assert!(
            err.contains("`Mars/Olympus`") && err.contains("America/New_York"),
            "{err}"
        );
    }
}
