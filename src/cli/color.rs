//! Colour on a terminal: whether to paint (`--color auto|always|never`, `NO_COLOR`,
//! `CLICOLOR_FORCE`, stdout a terminal) and the one place that paints diffs, severities and
//! trial statuses. Output that is piped or redirected is never painted (unless forced), so
//! `show --format markdown > page.md` and every golden test see plain bytes.
//!
//! The decision is made once in `cli::main` and kept in a process-wide flag; a running daemon
//! never paints what it executes for a client (its stdout is not the user's terminal).

use std::sync::atomic::{AtomicBool, Ordering};

use anstyle::{AnsiColor, Effects, Style};
use clap::ValueEnum;

use crate::model::Severity;

/// `--color`: when to paint the output and the logs.
#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq, Default)]
pub enum ColorChoice {
    /// On a terminal, unless `NO_COLOR` is set (or forced with `CLICOLOR_FORCE`).
    #[default]
    Auto,
    /// Always, even when piped.
    Always,
    /// Never.
    Never,
}

static PAINT: AtomicBool = AtomicBool::new(false);

/// Whether a stream gets colour: the flag decides when given; otherwise a non-empty
/// `NO_COLOR` turns it off, a `CLICOLOR_FORCE` other than `0` turns it on, and else it is
/// whether the stream is a terminal (<https://no-color.org>, <https://bixense.com/clicolors/>).
pub(crate) fn decide(
    choice: ColorChoice,
    no_color: Option<&str>,
    force: Option<&str>,
    terminal: bool,
) -> bool {
    match choice {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto if no_color.is_some_and(|v| !v.is_empty()) => false,
        ColorChoice::Auto if force.is_some_and(|v| !v.is_empty() && v != "0") => true,
        ColorChoice::Auto => terminal,
    }
}

/// [`decide`] with this process's environment.
pub(crate) fn decide_from_env(choice: ColorChoice, terminal: bool) -> bool {
    let no_color = std::env::var("NO_COLOR").ok();
    let force = std::env::var("CLICOLOR_FORCE").ok();
    decide(choice, no_color.as_deref(), force.as_deref(), terminal)
}

/// Set once by `cli::main`: whether command output is painted.
pub(crate) fn set_paint(on: bool) {
    PAINT.store(on, Ordering::Relaxed);
}

fn paint_on() -> bool {
    PAINT.load(Ordering::Relaxed)
}

const RED: Style = AnsiColor::Red.on_default();
const GREEN: Style = AnsiColor::Green.on_default();
const YELLOW: Style = AnsiColor::Yellow.on_default();
const BOLD: Style = Style::new().effects(Effects::BOLD);
const DIM: Style = Style::new().effects(Effects::DIMMED);

fn styled(style: Style, text: &str) -> String {
    format!("{}{text}{}", style.render(), style.render_reset())
}

/// A severity word (already padded for its column): critical red and bold, notable yellow,
/// minor dim.
pub(crate) fn severity(sev: Severity, padded: &str) -> String {
    if !paint_on() {
        return padded.to_string();
    }
    let style = match sev {
        Severity::Critical => RED.effects(Effects::BOLD),
        Severity::Notable => YELLOW,
        Severity::Minor => DIM,
    };
    styled(style, padded)
}

/// Colour for an overall status: stopped trials red, running green, finished bold.
fn status_style(word: &str) -> Option<Style> {
    Some(match word {
        "TERMINATED" | "WITHDRAWN" | "SUSPENDED" => RED.effects(Effects::BOLD),
        "RECRUITING" | "NOT_YET_RECRUITING" | "ENROLLING_BY_INVITATION" => GREEN,
        "ACTIVE_NOT_RECRUITING" => YELLOW,
        "COMPLETED" => BOLD,
        _ => return None,
    })
}

/// A line with CT.gov's overall statuses (`RECRUITING → TERMINATED`) painted as whole words.
pub(crate) fn statuses(line: &str) -> String {
    if !paint_on() {
        return line.to_string();
    }
    paint_statuses(line)
}

fn paint_statuses(line: &str) -> String {
    let mut out = String::with_capacity(line.len() + 16);
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String| {
        match status_style(word) {
            Some(style) => out.push_str(&styled(style, word)),
            None => out.push_str(word),
        }
        word.clear();
    };
    for ch in line.chars() {
        if ch.is_ascii_uppercase() || ch == '_' {
            word.push(ch);
        } else {
            flush(&mut word, &mut out);
            out.push(ch);
        }
    }
    flush(&mut word, &mut out);
    out
}

/// `trialwatch diff`'s report: the heading and each field's line bold, removed lines and
/// `[-words-]` red, added lines and `{+words+}` green, statuses as [`statuses`].
pub(crate) fn diff_report(report: &str) -> String {
    if !paint_on() {
        return report.to_string();
    }
    paint_diff(report)
}

fn paint_diff(report: &str) -> String {
    let mut out = String::with_capacity(report.len() * 2);
    for line in report.split_inclusive('\n') {
        let (body, nl) = match line.strip_suffix('\n') {
            Some(b) => (b, "\n"),
            None => (line, ""),
        };
        let trimmed = body.trim_start();
        let painted = if body.is_empty() {
            String::new()
        } else if !body.starts_with(' ') {
            styled(BOLD, body)
        } else if trimmed.starts_with("- ") {
            styled(RED, body)
        } else if trimmed.starts_with("+ ") {
            styled(GREEN, body)
        } else {
            paint_statuses(&word_marks(body))
        };
        out.push_str(&painted);
        out.push_str(nl);
    }
    out
}

/// `[-removed-]` red and `{+added+}` green inside a line.
fn word_marks(line: &str) -> String {
    let (r, g, end) = (
        RED.render().to_string(),
        GREEN.render().to_string(),
        RED.render_reset().to_string(),
    );
    line.replace("[-", &format!("{r}[-"))
        .replace("-]", &format!("-]{end}"))
        .replace("{+", &format!("{g}{{+"))
        .replace("+}", &format!("+}}{end}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_flag_wins_then_no_color_then_force_then_the_terminal() {
        use ColorChoice::*;
        assert!(decide(Always, Some("1"), None, false));
        assert!(!decide(Never, None, Some("1"), true));
        assert!(!decide(Auto, Some("1"), Some("1"), true));
        assert!(
            decide(Auto, Some(""), None, true),
            "an empty NO_COLOR is unset"
        );
        assert!(decide(Auto, None, Some("1"), false));
        assert!(!decide(Auto, None, Some("0"), false));
        assert!(decide(Auto, None, None, true));
        assert!(!decide(Auto, None, None, false));
    }

    #[test]
    fn statuses_are_painted_as_whole_words_only() {
        let s = paint_statuses("status.overallStatus NOT_YET_RECRUITING → TERMINATED");
        assert!(s.contains(&styled(GREEN, "NOT_YET_RECRUITING")), "{s:?}");
        assert!(!s.contains(&styled(GREEN, "RECRUITING")), "{s:?}");
        assert!(s.contains(&styled(RED.effects(Effects::BOLD), "TERMINATED")));
        assert_eq!(paint_statuses("no CT.gov status"), "no CT.gov status");
    }

    #[test]
    fn diff_lines_get_colour_and_keep_their_text() {
        let report =
            "NCT1  v1 → v2  (1 change)\n\nx  changed\n    - old\n    + new\n    a [-b-] {+c+}\n";
        let painted = paint_diff(report);
        assert!(painted.contains(&styled(RED, "    - old")));
        assert!(painted.contains(&styled(GREEN, "    + new")));
        assert!(painted.contains("\u{1b}[31m[-b-]"));
        // Without the escapes it is the plain report.
        let plain: String = strip(&painted);
        assert_eq!(plain, report);
    }

    fn strip(s: &str) -> String {
        let mut out = String::new();
        let mut esc = false;
        for c in s.chars() {
            match (esc, c) {
                (false, '\u{1b}') => esc = true,
                (true, 'm') => esc = false,
                (true, _) => {}
                (false, c) => out.push(c),
            }
        }
        out
    }
}
