//! Log lines for journald's stdout/stderr stream (`$JOURNAL_STREAM` set): each event starts
//! with its syslog priority (`<3>` error … `<7>` trace, sd-daemon(3)), so `journalctl -p
//! warning` shows warnings, and an event's inner line breaks are escaped so a multi-line error
//! stays one journal entry. Hand-written: it is one `MakeWriter` over stderr, and the
//! `tracing-journald` crate would bypass the stderr stream the tests and `--log-format` use.

use std::io::Write;

use tracing::{Level, Metadata};
use tracing_subscriber::fmt::MakeWriter;

/// Makes a [`PrefixWriter`] carrying the event's priority.
pub(super) struct Journal;

/// Buffers one event and writes it to stderr as one prefixed line when dropped.
pub(super) struct PrefixWriter {
    priority: u8,
    buf: Vec<u8>,
}

/// The sd-daemon priority of a tracing level.
fn priority(level: &Level) -> u8 {
    match *level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 6,
        Level::DEBUG | Level::TRACE => 7,
    }
}

impl<'a> MakeWriter<'a> for Journal {
    type Writer = PrefixWriter;

    fn make_writer(&'a self) -> PrefixWriter {
        PrefixWriter {
            priority: 6,
            buf: Vec::new(),
        }
    }

    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> PrefixWriter {
        PrefixWriter {
            priority: priority(meta.level()),
            buf: Vec::new(),
        }
    }
}

impl Write for PrefixWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// `<p>` and the event as one line: inner newlines become a visible ` ⏎ `.
fn one_line(priority: u8, event: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(event);
    let body = text.trim_end_matches('\n').replace('\n', " ⏎ ");
    format!("<{priority}>{body}\n").into_bytes()
}

impl Drop for PrefixWriter {
    fn drop(&mut self) {
        if !self.buf.is_empty() {
            let _ = std::io::stderr()
                .lock()
                .write_all(&one_line(self.priority, &self.buf));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_get_their_priority_and_stay_on_one_line() {
        assert_eq!(priority(&Level::WARN), 4);
        assert_eq!(priority(&Level::ERROR), 3);
        assert_eq!(
            one_line(4, b"WARN a: first\n  second\n"),
            "<4>WARN a: first ⏎   second\n".as_bytes()
        );
    }
}
