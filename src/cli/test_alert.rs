//! `trialwatch test-alert ID`: sends one sample alert straight to one subscription (not through
//! the outbox: nothing is stored or retried), so a subscriber can check that email, a webhook or
//! a chat channel is wired up before a real change comes.

use std::io::Write;
use std::process::ExitCode;

use anyhow::{Context, bail};

use super::Ctx;
use crate::model::{
    Alert, AlertChange, ChangeKind, FieldChange, NctId, Severity, Subscription, TrialInfo,
};
use crate::notify::Notifier;
use crate::outbox::{Subscriptions, destination, redact_addresses};

/// The sample: a status change of the subscription's first trial (or a placeholder trial),
/// with an ID of its own so receivers never take it for a real alert.
fn sample_alert(sub: &Subscription, now: chrono::DateTime<chrono::Utc>) -> anyhow::Result<Alert> {
    let nct: NctId = match sub.nct.first() {
        Some(n) => n.clone(),
        None => "NCT00000001".parse()?,
    };
    Ok(Alert {
        id: format!("test-{}-{}", sub.id, now.timestamp()),
        subscription_id: sub.id.clone(),
        trial: TrialInfo {
            title: Some("trialwatch test alert (no trial changed)".into()),
            overall_status: Some("COMPLETED".into()),
            url: format!("https://clinicaltrials.gov/study/{nct}"),
        },
        nct_id: Some(nct),
        version: 1,
        detected_at: now,
        changes: vec![AlertChange {
            change: FieldChange {
                path: "status.overallStatus".into(),
                kind: ChangeKind::Changed,
                old: Some("RECRUITING".into()),
                new: Some("COMPLETED".into()),
            },
            severity: Severity::Notable,
            summary: "test alert: status RECRUITING → COMPLETED".into(),
        }],
        ctgov_posted: None,
        event: None,
    })
}

pub(crate) fn run(ctx: &Ctx, id: &str, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    let id = id.trim();
    let store = ctx.open_store()?;
    let subs = Subscriptions::load(&ctx.cfg, &store)?;
    let Some(sub) = subs.get(id) else {
        bail!(super::output::UsageError(format!(
            "there is no subscription {id}; `trialwatch subscriptions` lists them"
        )));
    };
    let dest = destination(sub).map_err(|e| anyhow::anyhow!("{}", redact_addresses(&e.message)))?;
    let notifier = Notifier::new(ctx.cfg.smtp.clone(), ctx.cfg.alerts.webhook_timeout)
        .context("cannot set up alert delivery")?;
    let alert = sample_alert(sub, crate::clock::now())?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match rt.block_on(notifier.deliver(&dest, std::slice::from_ref(&alert))) {
        Ok(()) => {
            writeln!(
                out,
                "sent a test alert to {} ({})",
                sub.id,
                sub.target.kind()
            )?;
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => bail!(
            "the test alert to {} failed{}: {}",
            sub.id,
            if e.transient {
                " (the receiver may accept later)"
            } else {
                ""
            },
            redact_addresses(&e.message)
        ),
    }
}
