//! `[publish] dir`: after every scheduled sync the daemon runs `trialwatch export DIR` on its
//! own open store, through the same executor that runs forwarded CLI commands (so the export is
//! exactly the command's). A failed export is logged and retried by the next sync; it never
//! stops the daemon.

use std::sync::Arc;

use super::state::Shared;

/// Export the store into `[publish] dir`, if set; waits for the export to finish.
pub(super) async fn export_after_sync(shared: &Arc<Shared>) {
    let cfg = shared.config();
    let Some(dir) = cfg.publish.dir.clone() else {
        return;
    };
    let Some(executor) = shared.executor.get().cloned() else {
        return;
    };
    let store = shared.store.clone();
    let args = vec!["export".to_string(), dir.display().to_string()];
    let started = std::time::Instant::now();
    let result = tokio::task::spawn_blocking(move || -> anyhow::Result<String> {
        let job = executor.parse(&args).map_err(|e| anyhow::anyhow!(e))?;
        let mut out = Vec::new();
        let code = (job.run)(&cfg, &store, &mut out)?;
        anyhow::ensure!(code == 0, "the export ended with exit code {code}");
        Ok(String::from_utf8_lossy(&out).trim().to_string())
    })
    .await;
    match result {
        Ok(Ok(summary)) => tracing::info!(
            publish.dir = %dir.display(),
            publish.duration_ms = started.elapsed().as_millis() as u64,
            "{summary}"
        ),
        Ok(Err(e)) => tracing::error!(
            publish.dir = %dir.display(),
            error = format!("{e:#}"),
            "the export after the sync failed; the next sync tries again"
        ),
        Err(e) => tracing::error!(error = %e, "the export after the sync did not run"),
    }
}
