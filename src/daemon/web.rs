//! `[web] listen`: the daemon serves the read-only web view ([`crate::web`]) from its own open
//! store while it runs. Pages and `/api/` answers come from the CLI's read commands, run through
//! the same executor as forwarded commands; the server stops with the daemon's other loops.
//!
//! The address is bound once, at start. A SIGHUP reload that changes `[web] listen` is
//! reported as needing a restart ([`reload_notice`]); the view keeps serving where it was.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;

use super::control::Executor;
use super::state::Shared;

/// The commands the web view runs (the read-only ones).
const READ_COMMANDS: [&str; 5] = ["history", "show", "diff", "changes", "status"];

/// After a SIGHUP reload: say when `[web] listen` changed, which takes a restart.
pub(super) fn reload_notice(old: &crate::config::Config, new: &crate::config::Config) {
    if old.web.listen != new.web.listen {
        let show = |a: Option<SocketAddr>| a.map_or_else(|| "off".to_string(), |a| a.to_string());
        tracing::warn!(
            web.listen.in_use = %show(old.web.listen),
            web.listen.configured = %show(new.web.listen),
            "`[web] listen` changed, which needs a restart (`systemctl restart trialwatch`); \
             the web view stays as it was until then"
        );
    }
}

/// Bind `addr` and serve until shutdown; a bind failure stops the daemon's start with a message.
pub(super) async fn start(
    shared: &Arc<Shared>,
    executor: Arc<dyn Executor>,
    addr: SocketAddr,
) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| {
        format!("cannot serve the web view on {addr} (`[web] listen`); is the port in use?")
    })?;
    let run_shared = shared.clone();
    let runner: crate::web::Runner = Arc::new(move |args: Vec<String>| {
        if !args
            .first()
            .is_some_and(|a| READ_COMMANDS.contains(&a.as_str()))
        {
            return Err("the web view runs only read commands".into());
        }
        let job = executor.parse(&args)?;
        let mut out = Vec::new();
        let code = (job.run)(&run_shared.config(), &run_shared.store, &mut out)
            .map_err(|e| format!("{e:#}"))?;
        if code != 0 {
            return Err(format!("the command ended with exit code {code}"));
        }
        Ok(out)
    });
    let web = crate::web::Web::new(shared.store.clone(), runner);
    // The list's rows are made in the background: the daemon starts at once, and a list
    // request that comes first waits for them rather than making them twice.
    let warming = web.clone();
    shared.work.loops.spawn(async move {
        tokio::task::spawn_blocking(move || warming.warm())
            .await
            .ok();
    });
    let stop = shared.work.stop.clone();
    tracing::info!(web.listen = %listener.local_addr().unwrap_or(addr), "serving the web view");
    shared.work.loops.spawn(async move {
        if let Err(e) =
            crate::web::serve(listener, web, async move { stop.cancelled().await }).await
        {
            tracing::error!(error = %e, "the web view stopped");
        }
    });
    Ok(())
}
