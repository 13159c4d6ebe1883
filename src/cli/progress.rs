//! The progress bar of `sync` and `backfill` on a terminal: trials done of all, the rate, the
//! time left, and what CT.gov is doing when it is slow ("waiting for CT.gov: attempt 2 of 4 in
//! 1.5 s (HTTP 503), 30 s timeout") so nobody stares at a blank screen. Nothing is drawn when
//! stderr is not a terminal (pipes, cron, the daemon's journal).
//!
//! A sync handed to a running daemon draws the same bar in the user's terminal: inside the
//! daemon the bar becomes a stream of [`ProgressEvent`]s to the CLI (`p` frames of the control
//! socket), and the CLI feeds them to a bar of its own ([`Progress::forwarded`]); nothing of
//! it reaches the daemon's log.

use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::ctgov::client::{CtGovClient, RetryNotice};
use crate::daemon::control::{ProgressEvent, ProgressSink, progress_sink};

/// A bar on stderr, or (inside the daemon) the events of the CLI's bar; cheap to clone (clones
/// draw the same bar).
#[derive(Clone)]
pub(crate) struct Progress {
    draw: Draw,
}

#[derive(Clone)]
enum Draw {
    Bar(ProgressBar),
    /// A forwarded command: events to the CLI that handed it over.
    Remote(ProgressSink),
}

impl Progress {
    /// A bar for `verb` ("syncing", "backfilling") when stderr is a terminal, told about the
    /// client's retries; for a command forwarded by a CLI that draws progress, the events of
    /// that CLI's bar; `None` otherwise.
    pub(crate) fn start(verb: &str, client: &CtGovClient) -> Option<Progress> {
        let progress = match progress_sink() {
            Some(sink) => Progress {
                draw: Draw::Remote(sink),
            },
            None => Self::bar(verb, client.config().timeout)?,
        };
        let notice = progress.clone();
        client.on_retry(move |n| notice.retrying(n));
        Some(progress)
    }

    /// The CLI's bar for a sync the daemon runs, fed with [`Progress::show`]; `None` when
    /// stderr is not a terminal.
    pub(crate) fn forwarded(verb: &str, timeout: Duration) -> Option<Progress> {
        Self::bar(verb, timeout)
    }

    /// One event from the daemon.
    pub(crate) fn show(&self, ev: ProgressEvent) {
        match (&self.draw, ev) {
            (Draw::Bar(_), ProgressEvent::Done { done, total }) => self.update(done, total),
            (Draw::Bar(bar), ProgressEvent::Retry { message }) => bar.set_message(message),
            (Draw::Remote(sink), ev) => sink(&ev),
        }
    }

    fn bar(verb: &str, timeout: Duration) -> Option<Progress> {
        if !std::io::stderr().is_terminal() {
            return None;
        }
        let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
        let template = format!(
            "{verb}: {{pos}}/{{len}} trials [{{bar:24}}] {{per_sec}}, {{eta}} left  {{msg}}"
        );
        let style = ProgressStyle::with_template(&template)
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
        bar.set_style(style);
        bar.set_message(format!(
            "waiting for CT.gov ({} timeout)",
            crate::util::text::duration(timeout)
        ));
        bar.enable_steady_tick(Duration::from_millis(250));
        Some(Progress {
            draw: Draw::Bar(bar),
        })
    }

    /// `done` of `total` trials finished.
    pub(crate) fn update(&self, done: usize, total: usize) {
        match &self.draw {
            Draw::Bar(bar) => {
                bar.set_length(total as u64);
                bar.set_position(done as u64);
                bar.set_message("");
            }
            Draw::Remote(sink) => sink(&ProgressEvent::Done { done, total }),
        }
    }

    fn retrying(&self, n: &RetryNotice) {
        match &self.draw {
            Draw::Bar(bar) => bar.set_message(retry_message(n)),
            Draw::Remote(sink) => sink(&ProgressEvent::Retry {
                message: retry_message(n),
            }),
        }
    }

    /// As a `(done, total)` callback for `sync::run`.
    pub(crate) fn callback(&self) -> Arc<dyn Fn(usize, usize) + Send + Sync> {
        let me = self.clone();
        Arc::new(move |done, total| me.update(done, total))
    }

    /// Leave the final state on screen and end the line.
    pub(crate) fn finish(&self) {
        if let Draw::Bar(bar) = &self.draw {
            bar.set_message("");
            bar.finish();
        }
    }
}

fn retry_message(n: &RetryNotice) -> String {
    format!(
        "waiting for CT.gov: attempt {} of {} in {} ({}), {} timeout",
        n.attempt,
        n.max_attempts,
        crate::util::text::duration(n.delay),
        n.reason,
        crate::util::text::duration(n.timeout)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_retry_says_which_attempt_of_how_many_and_the_timeout() {
        let msg = retry_message(&RetryNotice {
            attempt: 2,
            max_attempts: 5,
            delay: Duration::from_millis(1500),
            timeout: Duration::from_secs(30),
            reason: "HTTP 503".into(),
        });
        assert_eq!(
            msg,
            "waiting for CT.gov: attempt 2 of 5 in 1.5 s (HTTP 503), 30.0 s timeout"
        );
    }
}
