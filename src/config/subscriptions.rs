//! `[[subscription]]`: each entry checked and turned into a [`model::Subscription`]
//! (`crate::model` owns the type and the address/URL checks; this file only maps the TOML keys
//! onto them). Storing and delivering to subscriptions is `crate::outbox`'s business.
//!
//! [`model::Subscription`]: crate::model::Subscription

use std::path::Path;

use super::check::relative_to;
use super::mirror::validate_field_pattern;
use super::raw;
use crate::model::{
    ChatService, DigestMode, EventKind, NctId, Origin, Severity, Subscription, Target,
    validate_email, validate_webhook_url,
};

/// Check every `[[subscription]]` entry and build its [`Subscription`] (origin
/// [`Origin::Config`], content-derived ID); an entry with any problem, or one repeating an
/// earlier entry, is left out.
pub(super) fn validate_subscriptions(
    raw: &[raw::Subscription],
    file: Option<&Path>,
    problems: &mut Vec<String>,
) -> Vec<Subscription> {
    let mut out: Vec<Subscription> = Vec::new();
    for (i, r) in raw.iter().enumerate() {
        let key = format!("subscription[{i}]");
        let before = problems.len();
        if r.secret.is_some() {
            problems.push(format!(
                "`{key}.secret` is not allowed: a signing secret does not belong in the config file; \
                 put it in a file and set `secret_file = \"/etc/trialwatch/webhook-secret\"` \
                 (the value is not shown here)"
            ));
        }
        let chats = [
            (ChatService::Slack, &r.slack),
            (ChatService::Discord, &r.discord),
            (ChatService::Teams, &r.teams),
            (ChatService::Ntfy, &r.ntfy),
        ];
        let mut keys: Vec<&str> = Vec::new();
        if r.email.is_some() {
            keys.push("email");
        }
        if r.webhook.is_some() {
            keys.push("webhook");
        }
        keys.extend(
            chats
                .iter()
                .filter(|(_, v)| v.is_some())
                .map(|(s, _)| s.as_str()),
        );
        if r.secret_file.is_some() && r.webhook.is_none() && keys.len() == 1 {
            problems.push(format!(
                "`{key}.secret_file` is for webhooks; an {} subscription cannot use it, remove it",
                keys[0]
            ));
        }
        let target = if keys.len() > 1 {
            problems.push(format!(
                "`{key}` has {}; declare one subscription for each destination",
                keys.iter()
                    .map(|k| format!("`{k}`"))
                    .collect::<Vec<_>>()
                    .join(" and ")
            ));
            None
        } else if let Some(addr) = &r.email {
            match validate_email(addr) {
                Ok(address) => Some(Target::Email { address }),
                Err(e) => {
                    problems.push(format!("`{key}.email`: {e}"));
                    None
                }
            }
        } else if let Some(url) = &r.webhook {
            match validate_webhook_url(url) {
                Ok(url) => {
                    let secret_file = r.secret_file.as_ref().map(|f| relative_to(file, f));
                    if let Some(p) = &secret_file
                        && !p.is_file()
                    {
                        problems.push(format!(
                            "`{key}.secret_file` = {:?} is not a readable file; create it (the signing secret on one line) or remove the key",
                            p.display().to_string()
                        ));
                    }
                    Some(Target::Webhook { url, secret_file })
                }
                Err(e) => {
                    problems.push(format!("`{key}.webhook`: {e}"));
                    None
                }
            }
        } else if let Some((service, Some(url))) = chats.iter().find(|(_, v)| v.is_some()) {
            match validate_webhook_url(url) {
                Ok(url) => Some(Target::Chat {
                    service: *service,
                    url,
                }),
                Err(e) => {
                    problems.push(format!("`{key}.{}`: {e}", service.as_str()));
                    None
                }
            }
        } else {
            problems.push(format!(
                "`{key}` has no destination; add one of email = \"you@example.org\", webhook = \"https://…\", slack, discord, teams or ntfy = \"https://…\""
            ));
            None
        };
        let mut nct = Vec::new();
        for (j, s) in r.nct.iter().enumerate() {
            match s.parse::<NctId>() {
                Ok(id) => nct.push(id),
                Err(e) => problems.push(format!("`{key}.nct[{j}]`: {e}")),
            }
        }
        let mut fields = Vec::new();
        for (j, f) in r.fields.iter().enumerate() {
            match validate_field_pattern(f) {
                Ok(p) => fields.push(p),
                Err(e) => problems.push(format!("`{key}.fields[{j}]`: {e}")),
            }
        }
        let min_severity = match r.min_severity.as_deref() {
            None => Severity::Minor,
            Some(s) => s.parse().unwrap_or_else(|e| {
                problems.push(format!("`{key}.min_severity`: {e}"));
                Severity::Minor
            }),
        };
        let digest = match r.digest.as_deref() {
            None => DigestMode::Immediate,
            Some(s) => s.parse().unwrap_or_else(|e| {
                problems.push(format!("`{key}.digest`: {e}"));
                DigestMode::Immediate
            }),
        };
        let mut events = Vec::new();
        for (j, e) in r.events.iter().enumerate() {
            match e.parse::<EventKind>() {
                Ok(k) => events.push(k),
                Err(e) => problems.push(format!("`{key}.events[{j}]`: {e}")),
            }
        }
        if let (Some(target), true) = (target, problems.len() == before) {
            let sub = Subscription::new(
                Origin::Config,
                target,
                nct,
                fields,
                min_severity,
                digest,
                None,
            )
            .with_events(events, r.queries.clone());
            if out.iter().any(|s| s.id == sub.id) {
                problems.push(format!(
                    "`{key}` repeats an earlier subscription (same destination and filters); remove one"
                ));
            } else {
                out.push(sub);
            }
        }
    }
    out
}
