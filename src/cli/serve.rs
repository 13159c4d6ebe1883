//! `trialwatch serve [--listen ADDR]`: the read-only web view ([`crate::web`]) on this store,
//! until SIGTERM or Ctrl-C. Bound to loopback unless told otherwise. The pages' data and every
//! `/api/` answer come from the CLI's own read commands ([`runner`]).

use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;

use super::{Cli, Command, Ctx, execute};
use crate::config::Config;
use crate::store::Store;

/// The commands the web view may run: the read-only ones.
pub(crate) const WEB_COMMANDS: [&str; 5] = ["history", "show", "diff", "changes", "status"];

/// A [`crate::web::Runner`] that parses the arguments as the CLI does and executes the read
/// command on `store`.
pub(crate) fn runner(cfg: Config, store: Store) -> crate::web::Runner {
    Arc::new(move |args: Vec<String>| {
        if !args
            .first()
            .is_some_and(|a| WEB_COMMANDS.contains(&a.as_str()))
        {
            return Err("the web view runs only read commands".into());
        }
        let argv = std::iter::once("trialwatch".to_string()).chain(args);
        let cli = Cli::try_parse_from(argv).map_err(|e| e.to_string().trim_end().to_string())?;
        if matches!(cli.command, Command::Serve { .. } | Command::Daemon) {
            return Err("the web view runs only read commands".into());
        }
        let ctx = Ctx::new(cfg.clone(), Some(store.clone()));
        let mut out = Vec::new();
        execute(cli.command, &ctx, &mut out).map_err(|e| format!("{e:#}"))?;
        Ok(out)
    })
}

pub(crate) fn run(ctx: &Ctx, listen: &str, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    let addr = crate::config::parse_listen(listen, "--listen").map_err(anyhow::Error::msg)?;
    if crate::daemon::lock::holder(&ctx.cfg.data_dir).is_some() {
        anyhow::bail!(
            "a trialwatch daemon holds the data directory {}; let it serve the web view instead: \
             set `[web] listen = \"{addr}\"` in its configuration and reload it (SIGHUP restarts \
             nothing; restart the daemon)",
            ctx.cfg.data_dir.display()
        );
    }
    let store = ctx.open_store()?;
    let web = crate::web::Web::new(store.clone(), runner(ctx.cfg.clone(), store));
    web.warm();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| {
            format!(
                "cannot listen on {addr}; is another server using it? pick another with --listen"
            )
        })?;
        let bound = listener.local_addr().unwrap_or(addr);
        writeln!(
            out,
            "serving the web view on http://{bound}/ (read-only; stop with Ctrl-C)"
        )?;
        out.flush()?;
        let shutdown = async {
            use tokio::signal::unix::{SignalKind, signal};
            match (
                signal(SignalKind::terminate()),
                signal(SignalKind::interrupt()),
            ) {
                (Ok(mut t), Ok(mut i)) => {
                    tokio::select! {
                        _ = t.recv() => {}
                        _ = i.recv() => {}
                    }
                }
                _ => std::future::pending::<()>().await,
            }
        };
        crate::web::serve(listener, web, shutdown)
            .await
            .context("the web server failed")
    })?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_runner_refuses_anything_but_read_commands() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let cfg = Config::from_toml("", None).unwrap();
        let run = runner(cfg, store);
        for bad in [
            vec!["sync"],
            vec!["watch", "add", "NCT00000102"],
            vec!["serve"],
        ] {
            let e = run(bad.iter().map(|s| s.to_string()).collect()).unwrap_err();
            assert!(e.contains("only read commands"), "{bad:?}: {e}");
        }
        let e = run(vec![
            "history".into(),
            "NCT00000102".into(),
            "--json".into(),
        ])
        .unwrap_err();
        assert!(e.contains("is not in the store"), "{e}");
    }
}
