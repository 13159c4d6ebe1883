//! `trialwatch check-config [--json]`: the effective configuration, checked as far as it can
//! be without the network (the real mailer is built), and where the file was looked for.

use std::io::Write;
use std::process::ExitCode;

use serde_json::{Value, json};

use super::Ctx;
use crate::config::Config;
use crate::util::text::{duration, plural};

pub(super) fn run(ctx: &Ctx, json: bool, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    let c = &ctx.cfg;
    // Build the real mailer and HTTP client, so a setting that would only fail at delivery
    // (a `from` lettre refuses, a login over plain text, an unusable root certificate) fails here.
    if let Err(e) = crate::notify::Notifier::new(c.smtp.clone(), c.alerts.webhook_timeout) {
        anyhow::bail!("the configuration loads but alerts could not be sent: {e}");
    }
    if json {
        writeln!(out, "{}", serde_json::to_string_pretty(&as_json(c))?)?;
        return Ok(ExitCode::SUCCESS);
    }
    let source = c
        .source
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "none found; built-in defaults".into());
    writeln!(out, "configuration: {source}: OK")?;
    if !c.searched.is_empty() {
        let looked: Vec<String> = c.searched.iter().map(|p| p.display().to_string()).collect();
        writeln!(out, "looked for: {}", looked.join(", "))?;
    }
    writeln!(out, "data_dir: {}", c.data_dir.display())?;
    writeln!(
        out,
        "ctgov: {}/api/v2, {} requests/min{}, batches of {}, timeout {}, {}",
        c.ctgov.base_url,
        c.ctgov.requests_per_minute,
        if c.ctgov.requests_per_minute == 0 {
            " (limiter off)"
        } else {
            ""
        },
        c.ctgov.batch_size,
        duration(c.ctgov.timeout),
        plural(c.ctgov.max_attempts as usize, "attempt")
    )?;
    let from_file = c
        .watch
        .nct_file
        .as_ref()
        .map(|p| format!(" (including {})", p.display()))
        .unwrap_or_default();
    writeln!(
        out,
        "watch: {} in the configuration{from_file}",
        plural(c.watch.ids().len(), "trial")
    )?;
    let fields: Vec<&str> = c.mirror.fields.0.iter().map(|p| p.as_str()).collect();
    writeln!(out, "watched fields: {}", fields.join(", "))?;
    // The schedule and its next fire times.
    let next = crate::daemon::schedule::upcoming(&c.schedule.cron, chrono::Utc::now(), 3);
    writeln!(
        out,
        "schedule: {:?} (UTC), full sync at least every {}; next: {}",
        c.schedule.cron.source(),
        if c.schedule.full_sync_days == 1 {
            "day".to_string()
        } else {
            crate::util::text::plural(c.schedule.full_sync_days as usize, "day")
        },
        if next.is_empty() {
            "never".to_string()
        } else {
            next.iter()
                .map(|t| crate::util::zone::seconds(*t))
                .collect::<Vec<_>>()
                .join(", ")
        }
    )?;
    match &c.smtp {
        // The password is only ever said to be set, never shown.
        Some(s) => {
            writeln!(
                out,
                "smtp: {}:{} ({}), from {}, {}",
                s.host,
                s.port,
                s.security,
                s.from,
                match (&s.username, &s.password) {
                    (Some(u), Some(_)) => format!("login as {u} with a password (hidden)"),
                    (Some(u), None) => format!("login as {u}"),
                    _ => "no login".to_string(),
                }
            )?;
            if let Some(src) = &s.password_source {
                match &src.unavailable {
                    None => writeln!(out, "smtp password: from {} (read)", src.describe)?,
                    Some(why) => writeln!(
                        out,
                        "smtp password: from {}; not readable by this command: {why}; \
                         mail is sent only where it is (the service)",
                        src.describe
                    )?,
                }
            }
        }
        None => writeln!(
            out,
            "smtp: not configured (email subscriptions cannot be delivered)"
        )?,
    }
    // Build the real mailer and HTTP client, so a setting that would only fail at delivery
    // (a `from` lettre refuses, a login over plain text, an unusable root certificate) fails here.
    if let Err(e) = crate::notify::Notifier::new(c.smtp.clone(), c.alerts.webhook_timeout) {
        anyhow::bail!("the configuration loads but alerts could not be sent: {e}");
    }
    let a = &c.alerts;
    writeln!(
        out,
        "alerts: retry after {} doubling up to {}, give up after {}, {} at once, webhook timeout {}",
        duration(a.retry_base),
        duration(a.retry_cap),
        duration(a.give_up_after),
        plural(a.concurrency, "subscriber"),
        duration(a.webhook_timeout)
    )?;
    writeln!(
        out,
        "queries in the configuration: {} (a query matching more than {} trials is reported as too broad)",
        c.queries.declared.len(),
        c.queries.max_matches
    )?;
    writeln!(
        out,
        "subscriptions in the configuration: {}",
        c.subscriptions.len()
    )?;
    for s in &c.subscriptions {
        writeln!(
            out,
            "  {} ({}, {} trials, {} field patterns, {} and above, {})",
            s.id,
            s.target.kind(),
            if s.nct.is_empty() {
                "all".to_string()
            } else {
                s.nct.len().to_string()
            },
            if s.fields.is_empty() {
                "watched".to_string()
            } else {
                s.fields.len().to_string()
            },
            s.min_severity,
            s.digest
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The effective configuration as JSON (times in UTC, durations in seconds, no secret).
fn as_json(c: &Config) -> Value {
    let next: Vec<String> =
        crate::daemon::schedule::upcoming(&c.schedule.cron, chrono::Utc::now(), 3)
            .iter()
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
            .collect();
    let smtp = c.smtp.as_ref().map(|s| {
        json!({
            "host": s.host,
            "port": s.port,
            "security": s.security.to_string(),
            "from": s.from,
            "username": s.username,
            "password_source": s.password_source.as_ref().map(|p| &p.describe),
            "password_available": s.password.is_some(),
            "password_unavailable_reason": s.password_source.as_ref().and_then(|p| p.unavailable.as_ref()),
        })
    });
    let subs: Vec<Value> = c
        .subscriptions
        .iter()
        .map(|s| {
            json!({
                "id": s.id,
                "kind": s.target.kind(),
                "trials": s.nct.len(),
                "field_patterns": s.fields.len(),
                "min_severity": s.min_severity.to_string(),
                "digest": s.digest.to_string(),
            })
        })
        .collect();
    json!({
        "configuration": c.source,
        "searched": c.searched,
        "data_dir": c.data_dir,
        "ctgov": {
            "base_url": c.ctgov.base_url,
            "requests_per_minute": c.ctgov.requests_per_minute,
            "batch_size": c.ctgov.batch_size,
            "timeout_secs": c.ctgov.timeout.as_secs_f64(),
            "max_attempts": c.ctgov.max_attempts,
        },
        "watch": {
            "trials": c.watch.ids().iter().map(String::from).collect::<Vec<_>>(),
            "nct_file": c.watch.nct_file,
        },
        "watched_fields": c.mirror.fields.0.iter().map(|p| p.as_str()).collect::<Vec<_>>(),
        "schedule": {
            "cron": c.schedule.cron.source(),
            "full_sync_days": c.schedule.full_sync_days,
            "next": next,
        },
        "smtp": smtp,
        "alerts": {
            "retry_base_secs": c.alerts.retry_base.as_secs_f64(),
            "retry_cap_secs": c.alerts.retry_cap.as_secs_f64(),
            "give_up_after_secs": c.alerts.give_up_after.as_secs_f64(),
            "concurrency": c.alerts.concurrency,
            "webhook_timeout_secs": c.alerts.webhook_timeout.as_secs_f64(),
        },
        "queries": {
            "declared": c.queries.declared.iter().map(|q| q.name.as_str()).collect::<Vec<_>>(),
            "max_matches": c.queries.max_matches,
        },
        "subscriptions": subs,
    })
}
