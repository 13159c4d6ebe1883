//! `trialwatch subscribe email|webhook|slack|discord|teams|ntfy`, `subscriptions`, `unsubscribe`: the subscriptions kept
//! in the store, listed together with the configuration's `[[subscription]]` entries (which
//! these commands cannot change: they say so instead).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::Subcommand;
use serde::Serialize;

use super::{Ctx, parse_nct};
use crate::config::validate_field_pattern;
use crate::model::FieldPattern;
use crate::model::Severity;
use crate::model::{
    ChatService, DigestMode, Origin, Subscription, Target, validate_email, validate_webhook_url,
};
use crate::outbox::Subscriptions;

/// Where `trialwatch subscribe` sends the alerts.
#[derive(Subcommand, Debug)]
pub enum SubscribeTarget {
    /// Email alerts to ADDRESS (needs an [smtp] section in the configuration)
    Email {
        /// The mailbox that receives the alerts
        address: String,
        /// Which changes it hears about
        #[command(flatten)]
        filter: Filter,
        /// Group alerts into one message a day (daily) or a week (weekly) instead of one per change
        #[arg(long, value_name = "daily|weekly")]
        digest: Option<String>,
    },
    /// POST alerts as signed JSON to URL
    Webhook {
        /// The http(s) endpoint that receives the alerts
        url: String,
        /// File holding the signing secret (read at each delivery; only the path is stored)
        #[arg(long, value_name = "FILE")]
        secret_file: Option<PathBuf>,
        /// Which changes it hears about
        #[command(flatten)]
        filter: Filter,
    },
    /// Post alerts to a Slack channel through its incoming-webhook URL (blocks)
    Slack {
        /// The Slack incoming-webhook URL (https://hooks.slack.com/services/…)
        url: String,
        /// Which changes it hears about
        #[command(flatten)]
        filter: Filter,
    },
    /// Post alerts to a Discord channel through its webhook URL (embeds)
    Discord {
        /// The Discord webhook URL (https://discord.com/api/webhooks/…)
        url: String,
        /// Which changes it hears about
        #[command(flatten)]
        filter: Filter,
    },
    /// Post alerts to Microsoft Teams through a workflow's webhook URL (Adaptive Card)
    Teams {
        /// The Teams workflow ("When a Teams webhook request is received") URL
        url: String,
        /// Which changes it hears about
        #[command(flatten)]
        filter: Filter,
    },
    /// Publish alerts to an ntfy topic (title, priority and tags from the severity)
    Ntfy {
        /// The topic URL (https://ntfy.sh/your-topic or your own server's)
        url: String,
        /// Which changes it hears about
        #[command(flatten)]
        filter: Filter,
    },
}

/// What a subscription hears about.
#[derive(clap::Args, Debug)]
pub struct Filter {
    /// Only these trials (default: every watched trial)
    #[arg(long, num_args = 1.., value_name = "NCT")]
    nct: Vec<String>,
    /// Only changes at these paths; `*` is a wildcard (default: the watched fields)
    #[arg(long, num_args = 1.., value_name = "PATTERN")]
    field: Vec<String>,
    /// Leave out changes below this severity: minor, notable or critical (default: minor)
    #[arg(long, value_name = "LEVEL")]
    min_severity: Option<String>,
    /// What it hears about: changes (field changes, the default), query-entered, query-left,
    /// results-due, results-overdue, results-no-longer-overdue, verification-lapsing,
    /// stale-status, health (the daemon's scheduled syncs failing, and recovering)
    #[arg(long = "event", num_args = 1.., value_name = "KIND")]
    events: Vec<String>,
    /// Hear about trials entering and leaving these watched queries (`trialwatch query list`)
    #[arg(long = "query", num_args = 1.., value_name = "NAME")]
    queries: Vec<String>,
}

/// The event kinds and queries of `--event`/`--query`, checked: every query must exist.
fn parse_events(
    ctx: &Ctx,
    store: &crate::store::Store,
    f: &Filter,
) -> anyhow::Result<(Vec<crate::model::EventKind>, Vec<String>)> {
    let events = f
        .events
        .iter()
        .map(|s| s.parse().map_err(|e| anyhow::anyhow!("--event {e}")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    if !f.queries.is_empty() {
        let known = crate::sync::queries::all_queries(&ctx.cfg, store)?;
        for q in &f.queries {
            if !known.iter().any(|k| &k.name == q) {
                bail!(
                    "--query {q}: there is no such query; add it with `trialwatch query add {q} …` \
                     (`trialwatch query list` shows the existing ones)"
                );
            }
        }
    }
    Ok((events, f.queries.clone()))
}

fn parse_filter(
    f: &Filter,
) -> anyhow::Result<(Vec<crate::model::NctId>, Vec<FieldPattern>, Severity)> {
    let nct = f
        .nct
        .iter()
        .map(|s| parse_nct(s).context("--nct"))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let fields = f
        .field
        .iter()
        .map(|s| validate_field_pattern(s).map_err(|e| anyhow::anyhow!("--field {e}")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let min = match &f.min_severity {
        None => Severity::Minor,
        Some(s) => s
            .parse::<Severity>()
            .map_err(|e| anyhow::anyhow!("--min-severity {e}"))?,
    };
    Ok((nct, fields, min))
}

/// One line saying what a subscription hears about.
pub(crate) fn describe(s: &Subscription) -> String {
    let trials = if s.nct.is_empty() {
        "every watched trial".to_string()
    } else {
        s.nct
            .iter()
            .map(|n| n.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let fields = if s.fields.is_empty() {
        "the watched fields".to_string()
    } else {
        s.fields
            .iter()
            .map(|f| f.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut line = format!(
        "{} {}; {trials}; {fields}; {} and above; {}",
        s.target.kind(),
        s.target.address(),
        s.min_severity,
        s.digest
    );
    if !s.events.is_empty() {
        let kinds: Vec<&str> = s.events.iter().map(|k| k.as_str()).collect();
        line.push_str(&format!("; events: {}", kinds.join(", ")));
    }
    if !s.queries.is_empty() {
        line.push_str(&format!("; queries: {}", s.queries.join(", ")));
    }
    line
}

/// A team-chat target from its URL, checked like a webhook's.
fn chat(
    service: ChatService,
    url: &str,
    filter: Filter,
) -> anyhow::Result<(Target, Filter, DigestMode)> {
    let url = validate_webhook_url(url).map_err(|e| anyhow::anyhow!("URL {e}"))?;
    Ok((Target::Chat { service, url }, filter, DigestMode::Immediate))
}

pub(crate) fn subscribe(
    ctx: &Ctx,
    target: SubscribeTarget,
    out: &mut dyn Write,
) -> anyhow::Result<ExitCode> {
    let (target, filter, digest) = match target {
        SubscribeTarget::Email {
            address,
            filter,
            digest,
        } => {
            let address = validate_email(&address).map_err(|e| anyhow::anyhow!("ADDRESS {e}"))?;
            let digest = match digest {
                None => DigestMode::Immediate,
                Some(d) => d
                    .parse::<DigestMode>()
                    .map_err(|e| anyhow::anyhow!("--digest {e}"))?,
            };
            (Target::Email { address }, filter, digest)
        }
        SubscribeTarget::Webhook {
            url,
            secret_file,
            filter,
        } => {
            let url = validate_webhook_url(&url).map_err(|e| anyhow::anyhow!("URL {e}"))?;
            let secret_file = match secret_file {
                None => None,
                Some(p) => {
                    if let Err(e) = crate::util::secret::read_secret_file(&p) {
                        bail!("--secret-file {} {e}", p.display());
                    }
                    // Delivery may run from another directory (the daemon): keep an absolute path.
                    Some(std::fs::canonicalize(&p).unwrap_or(p))
                }
            };
            (
                Target::Webhook { url, secret_file },
                filter,
                DigestMode::Immediate,
            )
        }
        SubscribeTarget::Slack { url, filter } => chat(ChatService::Slack, &url, filter)?,
        SubscribeTarget::Discord { url, filter } => chat(ChatService::Discord, &url, filter)?,
        SubscribeTarget::Teams { url, filter } => chat(ChatService::Teams, &url, filter)?,
        SubscribeTarget::Ntfy { url, filter } => chat(ChatService::Ntfy, &url, filter)?,
    };
    let (nct, fields, min) = parse_filter(&filter)?;
    // Refused now, not found out at the first alert as a dead letter.
    if matches!(target, Target::Email { .. }) && ctx.cfg.smtp.is_none() {
        bail!("{}", crate::config::NO_SMTP_FOR_EMAIL);
    }
    let store = ctx.open_store()?;
    let (events, queries) = parse_events(ctx, &store, &filter)?;
    let as_config = Subscription::new(
        Origin::Config,
        target.clone(),
        nct.clone(),
        fields.clone(),
        min,
        digest,
        None,
    )
    .with_events(events.clone(), queries.clone());
    if ctx.cfg.subscriptions.iter().any(|s| s.id == as_config.id) {
        writeln!(
            out,
            "already subscribed in the configuration as {}; nothing added",
            as_config.id
        )?;
        return Ok(ExitCode::SUCCESS);
    }
    let sub = Subscription::new(
        Origin::Store,
        target,
        nct,
        fields,
        min,
        digest,
        Some(crate::clock::now()),
    )
    .with_events(events, queries);
    if let Some(existing) = store.subscription(&sub.id)?
        && existing.target == sub.target
    {
        writeln!(out, "already subscribed as {}", sub.id)?;
        return Ok(ExitCode::SUCCESS);
    }
    store.subscription_put(&sub)?;
    store.flush()?;
    writeln!(out, "subscribed {}: {}", sub.id, describe(&sub))?;
    Ok(ExitCode::SUCCESS)
}

#[derive(Serialize)]
struct Listed<'a> {
    #[serde(flatten)]
    sub: &'a Subscription,
    /// Alerts waiting for delivery and dead letters, so a stuck subscriber stands out.
    pending: usize,
    dead: usize,
}

pub(crate) fn list(ctx: &Ctx, json: bool, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    let store = ctx.open_store()?;
    let subs = Subscriptions::load(&ctx.cfg, &store)?;
    let mut rows = Vec::new();
    for s in &subs.list {
        let entries = store.outbox_of(&s.id)?;
        let dead = entries.iter().filter(|e| e.is_dead()).count();
        rows.push(Listed {
            sub: s,
            pending: entries.len() - dead,
            dead,
        });
    }
    if json {
        writeln!(out, "{}", serde_json::to_string_pretty(&rows)?)?;
    } else if rows.is_empty() {
        writeln!(
            out,
            "no subscriptions; add one with `trialwatch subscribe email ADDRESS` or `[[subscription]]` in the configuration"
        )?;
    } else {
        for r in &rows {
            let origin = match r.sub.origin {
                Origin::Config => "config",
                Origin::Store => "store",
            };
            writeln!(
                out,
                "{}  ({origin})  {}  [{} pending, {} dead]",
                r.sub.id,
                describe(r.sub),
                r.pending,
                r.dead
            )?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn unsubscribe(ctx: &Ctx, id: &str, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    let id = id.trim();
    if ctx.cfg.subscriptions.iter().any(|s| s.id == id) {
        bail!(
            "{id} is declared in the configuration ({}); remove its [[subscription]] entry there",
            ctx.cfg
                .source
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default()
        );
    }
    let store = ctx.open_store()?;
    match store.subscription_remove(id)? {
        Some(dropped) => {
            store.flush()?;
            writeln!(
                out,
                "unsubscribed {id}{}",
                if dropped > 0 {
                    format!(" ({dropped} undelivered alerts dropped)")
                } else {
                    String::new()
                }
            )?;
            Ok(ExitCode::SUCCESS)
        }
        None => bail!("there is no subscription {id}; `trialwatch subscriptions` lists them"),
    }
}
