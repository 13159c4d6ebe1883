//! Team-chat wire formats: one alert as a Slack, Discord, Microsoft Teams or ntfy message, in
//! each service's documented incoming-webhook format, so it reads as a message in the channel.
//!
//! - Slack: `{"text": fallback, "blocks": [header, section (mrkdwn), context]}`; a text block
//!   holds at most 3000 characters.
//! - Discord: `{"content", "embeds": [{title, description, url, color, fields, timestamp}]}`;
//!   at most 4096 characters of description, 25 fields, 256 per title/name, 1024 per value.
//! - Teams (workflows): `{"type": "message", "attachments": [{"contentType":
//!   "application/vnd.microsoft.card.adaptive", "content": {AdaptiveCard}}]}`.
//! - ntfy: the message as the plain-text body, with `Title`, `Priority` (1–5), `Tags` and
//!   `Click` headers from the alert's severity and link.
//!
//! Anything over a service's limit is cut with a note saying so: delivery never fails for
//! length. Rendering is pure ([`render`]); the HTTP `POST` and the classification of the answer
//! are the webhook poster's ([`super::webhook`]).

use serde_json::{Value, json};

use crate::model::{Alert, ChatService, Severity};
use crate::util::text::one_line;

/// Slack's limit for the text of one section block.
pub const SLACK_TEXT_LIMIT: usize = 3000;
/// Slack's limit for a header block's plain text.
const SLACK_HEADER_LIMIT: usize = 150;
/// Discord's limit for an embed's description.
pub const DISCORD_DESCRIPTION_LIMIT: usize = 4096;
/// Discord's limit for the number of fields in an embed.
pub const DISCORD_FIELDS_LIMIT: usize = 25;
/// Discord's limits for an embed title / field name and for a field value.
const DISCORD_TITLE_LIMIT: usize = 256;
const DISCORD_VALUE_LIMIT: usize = 1024;
/// Discord's limit for the plain `content` line.
const DISCORD_CONTENT_LIMIT: usize = 2000;
/// Facts shown in a Teams card (its payload is capped at about 28 KB).
const TEAMS_FACTS_LIMIT: usize = 25;
/// The text of a Teams card's body block.
const TEAMS_TEXT_LIMIT: usize = 8000;
/// ntfy turns a message over 4096 bytes into an attachment; keep it a message.
const NTFY_BODY_BYTES: usize = 4000;

/// One request to a chat service: what goes in the body and which headers go with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatRequest {
    /// `application/json` or, for ntfy, `text/plain; charset=utf-8`.
    pub content_type: &'static str,
    /// Extra headers (ntfy's `Title`, `Priority`, `Tags`, `Click`); all values are ASCII.
    pub headers: Vec<(&'static str, String)>,
    /// The body bytes.
    pub body: Vec<u8>,
}

/// What every format shows, computed once from the alert.
struct Gist {
    title: String,
    url: String,
    severity: Severity,
    /// One line per change (or the event's summary and reason), most severe first.
    lines: Vec<(Severity, String, String)>,
    footer: String,
}

fn gist(alert: &Alert) -> Gist {
    let name = alert
        .trial
        .title
        .as_deref()
        .map(|t| match &alert.nct_id {
            Some(nct) => format!("{nct}: {}", one_line(t, 200)),
            None => one_line(t, 200),
        })
        .or_else(|| alert.nct_id.as_ref().map(|n| n.to_string()))
        .unwrap_or_else(|| "trialwatch".to_string());
    let mut lines: Vec<(Severity, String, String)> = Vec::new();
    let severity;
    if let Some(event) = &alert.event {
        severity = event.severity;
        lines.push((
            event.severity,
            one_line(&event.summary, 300),
            one_line(&event.reason, 500),
        ));
    } else {
        severity = alert
            .changes
            .iter()
            .map(|c| c.severity)
            .max()
            .unwrap_or(Severity::Minor);
        let mut changes: Vec<_> = alert.changes.iter().collect();
        changes.sort_by_key(|c| std::cmp::Reverse(c.severity));
        for c in changes {
            lines.push((
                c.severity,
                one_line(&c.change.path, 200),
                one_line(&c.summary, 300),
            ));
        }
    }
    let mut footer = match alert.version {
        0 => format!(
            "detected {}",
            alert.detected_at.format("%Y-%m-%d %H:%M UTC")
        ),
        v => format!(
            "version {v}, detected {}",
            alert.detected_at.format("%Y-%m-%d %H:%M UTC")
        ),
    };
    if let Some(posted) = alert.ctgov_posted {
        footer.push_str(&format!(" (posted by CT.gov on {posted})"));
    }
    if let Some(status) = &alert.trial.overall_status {
        footer.push_str(&format!("; status {status}"));
    }
    footer.push_str(&format!("; subscription {}", alert.subscription_id));
    Gist {
        title: format!("[{}] {name}", label(severity)),
        url: alert.trial.url.clone(),
        severity,
        lines,
        footer,
    }
}

fn label(s: Severity) -> String {
    s.to_string().to_ascii_uppercase()
}

/// `s` cut to at most `max` characters, ending with a note that says how much was left out.
pub fn truncate_with_note(s: &str, max: usize) -> String {
    let total = s.chars().count();
    if total <= max {
        return s.to_string();
    }
    let note = |cut: usize| format!("\n… ({cut} more characters cut; see the trial's page)");
    // The note's own length depends on the count; two rounds settle it.
    let mut keep = max.saturating_sub(note(total).chars().count());
    keep = max.saturating_sub(note(total - keep).chars().count());
    let head: String = s.chars().take(keep).collect();
    format!("{head}{}", note(total - keep))
}

/// Characters cut to `max` with a trailing `…`, for titles and names (no room for a note).
fn clip(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
        out.push('…');
        out
    }
}

/// Slack's mrkdwn needs only `&`, `<` and `>` escaped.
fn slack_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The request that posts `alert` to `service`.
pub fn render(service: ChatService, alert: &Alert) -> ChatRequest {
    let g = gist(alert);
    match service {
        ChatService::Slack => json_request(slack(&g)),
        ChatService::Discord => json_request(discord(&g, alert)),
        ChatService::Teams => json_request(teams(&g)),
        ChatService::Ntfy => ntfy(&g, alert),
    }
}

fn json_request(v: Value) -> ChatRequest {
    ChatRequest {
        content_type: "application/json",
        headers: Vec::new(),
        // Serializing a `Value` of strings and numbers cannot fail.
        body: serde_json::to_vec(&v).unwrap_or_default(),
    }
}

fn slack(g: &Gist) -> Value {
    let body: Vec<String> = g
        .lines
        .iter()
        .map(|(sev, what, detail)| {
            format!(
                "• *{}* {}: {}",
                label(*sev),
                slack_escape(what),
                slack_escape(detail)
            )
        })
        .collect();
    let text = truncate_with_note(&body.join("\n"), SLACK_TEXT_LIMIT);
    // A health alert is about no trial: no link to a trial's page.
    let context = if g.url.is_empty() {
        slack_escape(&g.footer)
    } else {
        format!(
            "<{}|View on ClinicalTrials.gov> · {}",
            g.url,
            slack_escape(&g.footer)
        )
    };
    json!({
        "text": clip(&g.title, SLACK_TEXT_LIMIT),
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": clip(&g.title, SLACK_HEADER_LIMIT), "emoji": true}},
            {"type": "section", "text": {"type": "mrkdwn", "text": text}},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": clip(&context, SLACK_TEXT_LIMIT)}]},
        ],
    })
}

fn color(s: Severity) -> u32 {
    match s {
        Severity::Critical => 0xD32F2F,
        Severity::Notable => 0xF9A825,
        Severity::Minor => 0x607D8B,
    }
}

fn discord(g: &Gist, alert: &Alert) -> Value {
    let mut fields: Vec<Value> = Vec::new();
    let shown = if g.lines.len() > DISCORD_FIELDS_LIMIT {
        DISCORD_FIELDS_LIMIT - 1
    } else {
        g.lines.len()
    };
    for (sev, what, detail) in &g.lines[..shown] {
        fields.push(json!({
            "name": clip(&format!("{} {what}", label(*sev)), DISCORD_TITLE_LIMIT),
            "value": clip(if detail.is_empty() { "-" } else { detail }, DISCORD_VALUE_LIMIT),
            "inline": false,
        }));
    }
    if g.lines.len() > shown {
        fields.push(json!({
            "name": "more changes",
            "value": format!("{} more not shown (Discord allows {DISCORD_FIELDS_LIMIT} fields); see the trial's page", g.lines.len() - shown),
            "inline": false,
        }));
    }
    let description = truncate_with_note(
        &alert
            .event
            .as_ref()
            .map(|e| one_line(&e.reason, 4000))
            .unwrap_or_else(|| g.footer.clone()),
        DISCORD_DESCRIPTION_LIMIT,
    );
    let mut embed = json!({
        "title": clip(&g.title, DISCORD_TITLE_LIMIT),
        "description": description,
        "url": g.url,
        "color": color(g.severity),
        "fields": fields,
        "footer": {"text": clip(&g.footer, 2048)},
        "timestamp": alert.detected_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    });
    if g.url.is_empty()
        && let Some(o) = embed.as_object_mut()
    {
        // Discord refuses an embed whose `url` is no URL; a health alert has no trial page.
        o.remove("url");
    }
    json!({
        "content": clip(&g.title, DISCORD_CONTENT_LIMIT),
        "embeds": [embed],
    })
}

fn teams(g: &Gist) -> Value {
    let mut facts: Vec<Value> = g
        .lines
        .iter()
        .take(TEAMS_FACTS_LIMIT)
        .map(|(sev, what, detail)| {
            json!({"title": format!("{} {what}", label(*sev)), "value": detail})
        })
        .collect();
    if g.lines.len() > TEAMS_FACTS_LIMIT {
        facts.push(json!({"title": "more changes", "value": format!(
            "{} more not shown; see the trial's page", g.lines.len() - TEAMS_FACTS_LIMIT)}));
    }
    // A health alert is about no trial: no button to a trial's page.
    let actions = if g.url.is_empty() {
        json!([])
    } else {
        json!([{"type": "Action.OpenUrl", "title": "View on ClinicalTrials.gov", "url": g.url}])
    };
    json!({
        "type": "message",
        "attachments": [{
            "contentType": "application/vnd.microsoft.card.adaptive",
            "contentUrl": null,
            "content": {
                "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                "type": "AdaptiveCard",
                "version": "1.4",
                "body": [
                    {"type": "TextBlock", "text": clip(&g.title, 500), "weight": "Bolder", "size": "Medium", "wrap": true,
                     "color": if g.severity == Severity::Critical { "Attention" } else { "Default" }},
                    {"type": "FactSet", "facts": facts},
                    {"type": "TextBlock", "text": truncate_with_note(&g.footer, TEAMS_TEXT_LIMIT), "isSubtle": true, "wrap": true},
                ],
                "actions": actions,
            },
        }],
    })
}

/// ntfy priority from severity: critical is urgent (5), notable high (4), minor default (3).
pub fn ntfy_priority(s: Severity) -> u8 {
    match s {
        Severity::Critical => 5,
        Severity::Notable => 4,
        Severity::Minor => 3,
    }
}

/// RFC 2047 encoded-word for a header value that is not plain ASCII (ntfy decodes them).
fn header_value(s: &str) -> String {
    let s = one_line(s, 250);
    if s.chars().all(|c| c.is_ascii() && !c.is_ascii_control()) {
        s
    } else {
        use base64::Engine as _;
        format!(
            "=?UTF-8?B?{}?=",
            base64::engine::general_purpose::STANDARD.encode(s.as_bytes())
        )
    }
}

fn ntfy(g: &Gist, alert: &Alert) -> ChatRequest {
    let mut body: Vec<String> = g
        .lines
        .iter()
        .map(|(sev, what, detail)| format!("[{}] {what}: {detail}", label(*sev)))
        .collect();
    body.push(g.footer.clone());
    let mut text = body.join("\n");
    if text.len() > NTFY_BODY_BYTES {
        // Cut by characters well under the byte limit (a char is at most 4 bytes).
        text = truncate_with_note(&text, NTFY_BODY_BYTES / 4);
    }
    let tag = match g.severity {
        Severity::Critical => "rotating_light",
        Severity::Notable => "warning",
        Severity::Minor => "information_source",
    };
    let mut headers = vec![
        ("Title", header_value(&g.title)),
        ("Priority", ntfy_priority(g.severity).to_string()),
        (
            "Tags",
            match &alert.nct_id {
                Some(nct) => format!(
                    "{tag},{},{nct}",
                    g.severity.to_string().to_ascii_lowercase()
                ),
                None => format!("{tag},{}", g.severity.to_string().to_ascii_lowercase()),
            },
        ),
    ];
    // A health alert is about no trial: nothing to open on a click.
    if !g.url.is_empty() {
        headers.push(("Click", header_value(&g.url)));
    }
    ChatRequest {
        content_type: "text/plain; charset=utf-8",
        headers,
        body: text.into_bytes(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncation_keeps_the_limit_and_says_so() {
        let long = "x".repeat(10_000);
        let t = truncate_with_note(&long, SLACK_TEXT_LIMIT);
        assert!(
            t.chars().count() <= SLACK_TEXT_LIMIT,
            "{}",
            t.chars().count()
        );
        assert!(t.contains("more characters cut"), "{t}");
        assert_eq!(truncate_with_note("short", 10), "short");
    }

    fn huge_alert() -> Alert {
        use crate::model::{AlertChange, ChangeKind, FieldChange, TrialInfo};
        Alert {
            id: "a1".into(),
            subscription_id: "sub-x".into(),
            nct_id: Some("NCT02241018".parse().unwrap()),
            version: 3,
            detected_at: "2024-05-01T06:00:00Z".parse().unwrap(),
            trial: TrialInfo {
                title: Some("T".repeat(400)),
                overall_status: Some("RECRUITING".into()),
                url: "https://clinicaltrials.gov/study/NCT02241018".into(),
            },
            changes: (0..100)
                .map(|i| AlertChange {
                    change: FieldChange {
                        path: format!("arms[{i}].description"),
                        kind: ChangeKind::Changed,
                        old: None,
                        new: None,
                    },
                    severity: if i == 7 {
                        Severity::Critical
                    } else {
                        Severity::Minor
                    },
                    summary: format!("arm {i} rewritten: {}", "word ".repeat(60)),
                })
                .collect(),
            ctgov_posted: None,
            event: None,
        }
    }

    fn json_of(service: ChatService, a: &Alert) -> Value {
        serde_json::from_slice(&render(service, a).body).unwrap()
    }

    #[test]
    fn a_health_alert_names_no_trial_and_links_nowhere_in_every_chat() {
        use crate::model::{AlertEvent, TrialInfo};
        let a = Alert {
            id: "sub-x.health-unhealthy-20261202T100000Z".into(),
            subscription_id: "sub-x".into(),
            nct_id: None,
            version: 0,
            detected_at: "2026-12-02T10:00:00Z".parse().unwrap(),
            trial: TrialInfo {
                title: None,
                overall_status: None,
                url: String::new(),
            },
            changes: Vec::new(),
            ctgov_posted: None,
            event: Some(AlertEvent::health(
                "trialwatch could not sync: 3 scheduled syncs in a row failed".into(),
                "CT.gov answered 503".into(),
                "health-unhealthy-20261202T100000Z".into(),
            )),
        };
        let slack = json_of(ChatService::Slack, &a).to_string();
        assert!(
            slack.contains("could not sync") && !slack.contains("<|"),
            "{slack}"
        );
        let discord = json_of(ChatService::Discord, &a);
        assert!(discord["embeds"][0].get("url").is_none(), "{discord}");
        let teams = json_of(ChatService::Teams, &a);
        assert_eq!(
            teams["attachments"][0]["content"]["actions"],
            serde_json::json!([])
        );
        let ntfy = render(ChatService::Ntfy, &a);
        assert!(ntfy.headers.iter().all(|(h, _)| *h != "Click"));
        assert!(String::from_utf8_lossy(&ntfy.body).contains("could not sync"));
    }

    #[test]
    fn over_long_alerts_fit_slack_and_discord_with_a_note() {
        let a = huge_alert();
        let slack = json_of(ChatService::Slack, &a);
        let text = slack["blocks"][1]["text"]["text"].as_str().unwrap();
        assert!(text.chars().count() <= SLACK_TEXT_LIMIT);
        assert!(text.contains("more characters cut"), "{text}");
        assert!(
            text.starts_with("• *CRITICAL* arms[7]"),
            "most severe first: {text}"
        );
        let header = slack["blocks"][0]["text"]["text"].as_str().unwrap();
        assert!(header.chars().count() <= 150);

        let discord = json_of(ChatService::Discord, &a);
        let fields = discord["embeds"][0]["fields"].as_array().unwrap();
        assert_eq!(fields.len(), DISCORD_FIELDS_LIMIT);
        assert!(
            fields[24]["value"]
                .as_str()
                .unwrap()
                .starts_with("76 more not shown"),
            "{}",
            fields[24]
        );
        assert_eq!(discord["embeds"][0]["color"], 0xD32F2F);

        let ntfy = render(ChatService::Ntfy, &a);
        assert!(ntfy.body.len() <= 4096);
        assert!(ntfy.headers.contains(&("Priority", "5".to_string())));
        assert!(ntfy.headers.iter().all(|(_, v)| v.is_ascii()));
        let teams = render(ChatService::Teams, &a);
        assert!(teams.body.len() <= 28 * 1024, "{}", teams.body.len());
    }

    #[test]
    fn non_ascii_header_values_are_encoded_words() {
        assert_eq!(header_value("plain"), "plain");
        let v = header_value("status A → B");
        assert!(v.starts_with("=?UTF-8?B?") && v.is_ascii(), "{v}");
    }
}
