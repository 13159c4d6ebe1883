//! Text for people: error chains on one line, remote text made safe for a message, plurals.

use std::error::Error as StdError;

/// An error and its causes on one line, `outer: inner: innermost`, skipping a cause whose text
/// the outer message already contains (lettre, hyper and reqwest often repeat it).
pub fn error_chain(err: &dyn StdError) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !cause_text.is_empty() && !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// Text from a remote server, made safe for a one-line error message: control characters
/// become spaces and it is cut to `max` characters.
pub fn one_line(text: &str, max: usize) -> String {
    let mut out = String::new();
    let mut last_space = true;
    for (n, c) in text.chars().enumerate() {
        if n >= max {
            out.push('…');
            break;
        }
        if c.is_whitespace() || c.is_control() {
            if !last_space {
                out.push(' ');
            }
            last_space = true;
        } else {
            out.push(c);
            last_space = false;
        }
    }
    out.trim_end().to_string()
}

/// `n noun` with an English plural: "1 trial", "2 trials", "0 trials". Nouns whose plural is
/// not `+s` ("entry" → "entries") go through [`plural_of`].
pub fn plural(n: usize, noun: &str) -> String {
    plural_of(n, noun, &format!("{noun}s"))
}

/// A duration the one way the CLI prints them: `0.4 s`, `12.5 s`, `3 min 20 s`, `2 h 5 min`
/// (tenths only under a minute, where they matter).
pub fn duration(d: std::time::Duration) -> String {
    let secs = d.as_secs_f64();
    if secs < 60.0 {
        return format!("{secs:.1} s");
    }
    let whole = d.as_secs();
    let (h, m, s) = (whole / 3600, whole / 60 % 60, whole % 60);
    match (h, s) {
        (0, 0) => format!("{m} min"),
        (0, _) => format!("{m} min {s} s"),
        (_, _) if m == 0 => format!("{h} h"),
        _ => format!("{h} h {m} min"),
    }
}

/// `n noun` with an irregular plural given in full: `plural_of(2, "entry", "entries")`.
pub fn plural_of(n: usize, singular: &str, plural: &str) -> String {
    if n == 1 {
        format!("1 {singular}")
    } else {
        format!("{n} {plural}")
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn durations_are_printed_one_way() {
        use std::time::Duration;
        assert_eq!(super::duration(Duration::from_millis(400)), "0.4 s");
        assert_eq!(super::duration(Duration::from_secs(60)), "1 min");
        assert_eq!(super::duration(Duration::from_secs(200)), "3 min 20 s");
        assert_eq!(super::duration(Duration::from_secs(7500)), "2 h 5 min");
        assert_eq!(super::duration(Duration::from_secs(7200)), "2 h");
    }

    use super::*;

    #[test]
    fn one_line_flattens_and_cuts() {
        assert_eq!(one_line("a\r\n  b\tc", 100), "a b c");
        assert_eq!(one_line("abcdef", 3), "abc…");
    }

    #[test]
    fn plurals_follow_the_count() {
        assert_eq!(plural(1, "trial"), "1 trial");
        assert_eq!(plural(0, "trial"), "0 trials");
        assert_eq!(plural(2, "request"), "2 requests");
        assert_eq!(plural_of(3, "entry", "entries"), "3 entries");
    }

    #[test]
    fn error_chains_skip_repeated_causes() {
        #[derive(Debug)]
        struct E(&'static str, Option<Box<E>>);
        impl std::fmt::Display for E {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.0)
            }
        }
        impl StdError for E {
            fn source(&self) -> Option<&(dyn StdError + 'static)> {
                self.1.as_deref().map(|e| e as _)
            }
        }
        let e = E(
            "send failed: timed out",
            Some(Box::new(E(
                "timed out",
                Some(Box::new(E("os error 110", None))),
            ))),
        );
        assert_eq!(error_chain(&e), "send failed: timed out: os error 110");
    }
}
