//! How an event that is no field change (a trial entering or leaving a watched query) reads in
//! an email: one block per event with what happened, why, and the trial's status, phase and
//! sponsor. The webhook carries the same [`AlertEvent`] as JSON (`event` in the payload).

use std::fmt::Write as _;

use super::email::escape_html;
use crate::model::{Alert, AlertEvent};
use crate::util::text::one_line;

/// The subject's headline for one event alert.
pub(super) fn headline(event: &AlertEvent) -> String {
    one_line(&event.summary, 160)
}

/// One event's block, in the plain-text and the HTML part.
pub(super) fn render_event(
    alert: &Alert,
    event: &AlertEvent,
    text: &mut String,
    html: &mut String,
) {
    let severity = event.severity.to_string().to_ascii_uppercase();
    let when = alert.detected_at.format("%Y-%m-%d %H:%M UTC");
    let summary = one_line(&event.summary, 300);
    let _ = writeln!(text, "\n[{severity}] {summary}, {when}");
    let _ = writeln!(text, "  Why: {}", one_line(&event.reason, 500));
    let _ = writeln!(
        html,
        "<h3 style=\"margin-bottom: 0.2em\">{severity}: {}, {when}</h3>\n<ul>\n<li>Why: {}</li>",
        escape_html(&summary),
        escape_html(&one_line(&event.reason, 500))
    );
    let facts = [
        ("Status", event.trial.overall_status.as_deref()),
        ("Phase", event.phase.as_deref()),
        ("Sponsor", event.sponsor.as_deref()),
    ];
    for (label, value) in facts {
        if let Some(v) = value {
            let v = one_line(v, 300);
            let _ = writeln!(text, "  {label}: {v}");
            let _ = writeln!(html, "<li>{label}: {}</li>", escape_html(&v));
        }
    }
    html.push_str("</ul>\n");
}
