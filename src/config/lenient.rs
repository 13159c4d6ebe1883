//! Reading the TOML into `raw::File` so that *every* type mistake is reported, not only the
//! first one serde meets (`batch_size = "100"` used to hide every other mistake in the file).
//!
//! serde stops at the first error, so this deserializes from a parsed table with
//! `serde_path_to_error` (which names the key that failed), records the problem, removes that
//! key from the table (its default then applies) and tries again, until it reads or a bound is
//! reached. The section checks then run on what is left and add their own problems.

use super::raw;

/// More type mistakes than anyone makes by hand; a bound so a pathological file cannot loop
/// for long (each round re-reads the whole table).
const MAX_ROUNDS: usize = 200;

/// `raw::File` from the parsed table, and a problem for every key of the wrong type or unknown
/// (each named by its dotted path, e.g. `ctgov.batch_size`). `None` when a mistake could not
/// be located to step past it; the problems then hold all that was found.
pub(super) fn read(mut table: toml::Table, problems: &mut Vec<String>) -> Option<raw::File> {
    for _ in 0..MAX_ROUNDS {
        let value = toml::Value::Table(table.clone());
        match serde_path_to_error::deserialize::<_, raw::File>(value) {
            Ok(file) => return Some(file),
            Err(e) => {
                let path = e.path().to_string();
                let message = e.into_inner().to_string();
                let message = message.trim_end();
                if path.is_empty() || path == "." || !remove(&mut table, &path) {
                    problems.push(message.to_string());
                    return None;
                }
                problems.push(format!("`{path}`: {message}"));
            }
        }
    }
    problems.push(format!(
        "more than {MAX_ROUNDS} keys have the wrong type; fix these first"
    ));
    None
}

/// One step of a `serde_path_to_error` path: a key or an array index.
enum Step<'a> {
    Key(&'a str),
    Index(usize),
}

/// `ctgov.batch_size` or `subscription[1].nct[0]` as steps; `None` when it does not parse.
fn steps(path: &str) -> Option<Vec<Step<'_>>> {
    let mut out = Vec::new();
    for part in path.split('.') {
        let (key, mut rest) = match part.find('[') {
            Some(i) => (&part[..i], &part[i..]),
            None => (part, ""),
        };
        if !key.is_empty() {
            out.push(Step::Key(key));
        }
        while let Some(r) = rest.strip_prefix('[') {
            let end = r.find(']')?;
            out.push(Step::Index(r[..end].parse().ok()?));
            rest = &r[end + 1..];
        }
    }
    Some(out)
}

/// Remove the value at `path` from `table`; false when there is nothing there to remove.
fn remove(table: &mut toml::Table, path: &str) -> bool {
    let Some(steps) = steps(path) else {
        return false;
    };
    let Some((last, init)) = steps.split_last() else {
        return false;
    };
    let mut here = toml::Value::Table(std::mem::take(table));
    let removed = {
        let mut cur = Some(&mut here);
        for s in init {
            cur = match (cur, s) {
                (Some(toml::Value::Table(t)), Step::Key(k)) => t.get_mut(*k),
                (Some(toml::Value::Array(a)), Step::Index(i)) => a.get_mut(*i),
                _ => None,
            };
        }
        match (cur, last) {
            (Some(toml::Value::Table(t)), Step::Key(k)) => t.remove(*k).is_some(),
            (Some(toml::Value::Array(a)), Step::Index(i)) if *i < a.len() => {
                a.remove(*i);
                true
            }
            _ => false,
        }
    };
    if let toml::Value::Table(t) = here {
        *table = t;
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_type_mistake_is_reported() {
        let table: toml::Table = toml::from_str(
            "[ctgov]\nbatch_size = \"100\"\ntimeout_secs = \"5\"\nbatchsize = 3\n\
             [watch]\nnct_ids = [\"NCT02241018\", 7]\n[[subscription]]\nemail = 5\n",
        )
        .unwrap();
        let mut problems = Vec::new();
        let file = read(table, &mut problems);
        assert!(file.is_some(), "{problems:?}");
        let all = problems.join("\n");
        assert_eq!(problems.len(), 5, "{all}");
        for key in [
            "`ctgov.batch_size`",
            "`ctgov.timeout_secs`",
            "batchsize",
            "`watch.nct_ids[1]`",
            "`subscription[0].email`",
        ] {
            assert!(all.contains(key), "{key}: {all}");
        }
    }
}
