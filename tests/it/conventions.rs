//! Black-box tests of the CLI's and the service's conventions (issue #13): secrets needed only
//! where mail is sent, exit codes, pipes, config mistakes reported together, XDG defaults,
//! `--json` everywhere, plurals and time zones.

use serde_json::json;

use crate::support::env::{TestEnv, edit, fixture, stderr, stdout};
use crate::support::free_port;

const ID: &str = "NCT03418623";

/// The README's service set-up (`username` set, the password from systemd's
/// `LoadCredential=`) must not break commands run from a shell, which have no credential:
/// they load the config, `check-config` says where the password will come from, and an alert
/// due waits (pending, with the reason) instead of failing the sync.
#[test]
fn smtp_credential_only_for_the_service_does_not_break_the_cli() {
    // Nothing listens: delivery must stop before connecting, for want of the password.
    let port = free_port();
    let tail = format!(
        "[alerts]\nretry_base_secs = 0.05\nretry_cap_secs = 0.2\n\
         [smtp]\nhost = \"127.0.0.1\"\nport = {}\nsecurity = \"none\"\nusername = \"tw\"\n\
         from = \"trialwatch@example.org\"\n[[subscription]]\nemail = \"ops@example.org\"\n",
        port
    );
    let env = TestEnv::with_config(&[ID], "", &tail);
    let run = |args: &[&str]| {
        env.cmd(args)
            .env_remove("CREDENTIALS_DIRECTORY")
            .output()
            .unwrap()
    };
    let out = run(&["check-config"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("smtp password: from the systemd credential `smtp-password`"),
        "{}",
        stdout(&out)
    );
    assert!(stdout(&out).contains("CREDENTIALS_DIRECTORY is not set"));

    let v1 = fixture(&format!("{ID}.json"));
    env.server.put_study(v1.clone());
    let out = run(&["sync"]);
    assert!(out.status.success(), "{}", stderr(&out));
    for args in [&["status"][..], &["history", ID]] {
        let out = run(args);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    }
    env.server.put_study(edit(&v1, |p| {
        p["statusModule"]["overallStatus"] = json!("TERMINATED")
    }));
    let out = run(&["sync"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let outbox = env.json(&["outbox", "--json"]);
    let text = outbox.to_string();
    assert!(text.contains("smtp-password"), "{text}");
    assert!(text.contains("not available here"), "{text}");
}

/// `check-config` builds the real mailer: a login over an unencrypted connection to a remote
/// host, refused at delivery time before, is refused by `check-config` with the fix.
#[test]
fn check_config_builds_the_real_mailer() {
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let pw = dir.path().join("pw");
    std::fs::write(&pw, "secret\n").unwrap();
    let tail = format!(
        "[smtp]\nhost = \"mail.example.org\"\nport = {port}\nsecurity = \"none\"\nusername = \"tw\"\n\
         password_file = {:?}\nfrom = \"trialwatch@example.org\"\n",
        pw.display().to_string()
    );
    let env = TestEnv::with_config(&[ID], "", &tail);
    let out = env.run(&["check-config"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(
        stderr(&out).contains("would send the password unencrypted"),
        "{}",
        stderr(&out)
    );
    assert!(!stderr(&out).contains("secret"));
}

/// Usage errors exit 64 (`EX_USAGE`), not 2 ("some trials failed"); `--help` exits 0; a
/// malformed NCT ID on the command line is a usage error too.
#[test]
fn usage_errors_exit_64_and_help_exits_0() {
    let env = TestEnv::new(&[ID]);
    for args in [
        &["sync", "--no-such-flag"][..],
        &["no-such-command"],
        &["history"],
        &["history", "NCT123"],
        &["changes", "--since", "-5d"],
    ] {
        let out = env.run(args);
        assert_eq!(out.status.code(), Some(64), "{args:?}: {}", stderr(&out));
        assert!(!stderr(&out).is_empty(), "{args:?}");
    }
    let out = env.run(&["--help"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(stdout(&out).contains("Usage"), "{}", stdout(&out));
}

/// With CT.gov unreachable nothing at all is fetched: one line says so, exit 1 (not 2, and
/// not one `failed:` line per trial).
#[test]
fn unreachable_ctgov_is_one_line_and_exit_1() {
    let env = TestEnv::with_config(&[ID, "NCT00973089"], "max_attempts = 1", "");
    let text = std::fs::read_to_string(&env.config).unwrap();
    let dead = format!("http://127.0.0.1:{}", free_port());
    std::fs::write(&env.config, text.replace(&env.server.base_url(), &dead)).unwrap();
    let out = env.run(&["sync"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("nothing could be fetched: CT.gov") && err.contains("could not be reached"),
        "{err}"
    );
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(!stdout(&out).contains("failed:"), "{}", stdout(&out));
}

/// `trialwatch changes | head`: a reader that goes away ends the command quietly, exit 0.
#[test]
fn a_closed_pipe_ends_quietly_with_exit_0() {
    let env = TestEnv::new(&[ID]);
    env.server.put_study(fixture(&format!("{ID}.json")));
    env.ok(&["sync"]);
    for args in [&["changes", "--include-first"][..], &["fields"]] {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader); // the reader has gone before the first line is written
        let out = env
            .cmd(args)
            .stdout(writer)
            .stderr(std::process::Stdio::piped())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{args:?}: {}", stderr(&out));
        assert_eq!(stderr(&out), "", "{args:?}");
    }
}

/// Config mistakes are reported together, type errors included (`batch_size = "100"` used to
/// hide the rest); a five-field crontab line is accepted; a `base_url` ending in `/api/v2` is
/// refused with the fix; an email subscription without `[smtp]` is refused with the fix.
#[test]
fn config_mistakes_are_reported_together_with_their_fixes() {
    let env = TestEnv::with_config(
        &[ID],
        "",
        "[schedule]\ncron = \"30 13 * * 1-5\"\nfull_sync_days = \"7\"\n\
         [alerts]\nconcurrency = \"4\"\n[mirror]\nrecent_days = 0\n\
         [[subscription]]\nemail = \"ops@example.org\"\n",
    );
    let text = std::fs::read_to_string(&env.config).unwrap();
    std::fs::write(
        &env.config,
        text.replace("batch_size = 100", "batch_size = \"100\"")
            .replace(
                &format!("base_url = {:?}", env.server.base_url()),
                "base_url = \"https://clinicaltrials.gov/api/v2/\"",
            ),
    )
    .unwrap();
    let out = env.run(&["check-config"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    for wanted in [
        "(6 problems)",
        "`ctgov.batch_size`: invalid type: string \"100\"",
        "`schedule.full_sync_days`: invalid type",
        "`alerts.concurrency`: invalid type",
        "`mirror.recent_days` = 0 is out of range",
        "ends in /api/v2, which trialwatch adds itself; write base_url = \"https://clinicaltrials.gov\"",
        "`subscription[0].email`: email alerts need an [smtp] section",
    ] {
        assert!(err.contains(wanted), "{wanted}: {err}");
    }
    assert!(!err.contains("schedule.cron"), "{err}");

    // On the command line too.
    let env = TestEnv::new(&[ID]);
    let out = env.run(&["subscribe", "email", "ops@example.org"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("email alerts need an [smtp] section")
            && stderr(&out).contains("host ="),
        "{}",
        stderr(&out)
    );
    assert!(!env.ok(&["subscriptions"]).contains("ops@"));
}

/// An unknown `--log-level` is a usage error naming the valid levels, not silence.
#[test]
fn an_unknown_log_level_is_an_error() {
    let env = TestEnv::new(&[ID]);
    let out = env.run(&["--log-level", "warnx", "check-config"]);
    assert_eq!(out.status.code(), Some(64), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("--log-level `warnx` is not a log level: use one of error, warn"),
        "{}",
        stderr(&out)
    );
    env.ok(&["--log-level", "debug", "check-config"]);
}

/// Every `section.key` a message in the source names is a key the configuration has (a hint
/// that names a key that does not exist sends the user hunting).
#[test]
fn every_hint_names_a_key_that_exists() {
    let example = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/trialwatch.example.toml"),
    )
    .unwrap();
    let mut sources = Vec::new();
    let mut dirs = vec![std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src")];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                sources.push(p);
            }
        }
    }
    // A key named in a message: `smtp.timeout_secs`, inside a string literal.
    let mut bad = Vec::new();
    for p in &sources {
        let text = std::fs::read_to_string(p).unwrap();
        for line in text.lines().filter(|l| l.contains('"')) {
            for section in ["smtp", "ctgov", "alerts", "schedule", "mirror"] {
                let needle = format!("{section}.");
                let mut rest = line;
                while let Some(i) = rest.find(&needle) {
                    let before = rest[..i].chars().last();
                    let key: String = rest[i + needle.len()..]
                        .chars()
                        .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                        .collect();
                    rest = &rest[i + needle.len()..];
                    if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '.')
                        || key.is_empty()
                        || !line.contains(&format!("{section}.{key}`"))
                            && !line.contains(&format!("{section}.{key} "))
                    {
                        continue;
                    }
                    let in_example = example.lines().any(|l| {
                        let l = l.trim_start_matches(['#', ' ']);
                        l.starts_with(&format!("{key} =")) || l.starts_with(&format!("{key}="))
                    });
                    // The refused inline password is named to say it is refused; log fields
                    // (`ctgov.data_timestamp = %…`) are not hints.
                    let allowed = key == "password" && line.contains("is not allowed")
                        || line.contains(&format!("{section}.{key} = %"))
                        || line.contains(&format!("{section}.{key} = ?"));
                    if !in_example && !allowed {
                        bad.push(format!("{}: {section}.{key}", p.display()));
                    }
                }
            }
        }
    }
    assert!(
        bad.is_empty(),
        "keys named in messages but not in the example config: {bad:#?}"
    );
}

/// Without root and without a config, the XDG base directories are used: the config from
/// `$XDG_CONFIG_HOME/trialwatch/`, the store in `$XDG_DATA_HOME/trialwatch/`; `check-config`
/// lists where it looked. Needs root (to run the CLI as `nobody` with `setpriv`).
#[test]
fn a_user_without_root_gets_xdg_directories() {
    use std::os::unix::fs::PermissionsExt;
    let root = std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout == b"0\n");
    let setpriv = std::process::Command::new("setpriv")
        .arg("--version")
        .output()
        .is_ok();
    if !root || !setpriv {
        eprintln!("skipped: needs root and setpriv");
        return;
    }
    let env = TestEnv::new(&[ID]);
    env.server.put_study(fixture(&format!("{ID}.json")));
    let home = env.dir.path().join("home");
    let conf_dir = home.join("config/trialwatch");
    std::fs::create_dir_all(&conf_dir).unwrap();
    let text = std::fs::read_to_string(&env.config).unwrap();
    let text: String = text
        .lines()
        .filter(|l| !l.starts_with("data_dir"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(conf_dir.join("config.toml"), text).unwrap();
    for p in [env.dir.path(), &home, &home.join("config"), &conf_dir] {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o777)).unwrap();
    }
    std::fs::set_permissions(
        conf_dir.join("config.toml"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let run = |args: &[&str]| {
        std::process::Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(env!("CARGO_BIN_EXE_trialwatch"))
            .args(args)
            .current_dir(&home)
            .env_remove("RUST_LOG")
            .env_remove("TRIALWATCH_CONFIG")
            .env_remove("TRIALWATCH_DATA_DIR")
            .env("XDG_CONFIG_HOME", home.join("config"))
            .env("XDG_DATA_HOME", home.join("data"))
            .output()
            .unwrap()
    };
    let out = run(&["check-config"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let want_conf = conf_dir.join("config.toml").display().to_string();
    assert!(
        text.contains(&format!(
            "looked for: {want_conf}, /etc/trialwatch/config.toml"
        )),
        "{text}"
    );
    let data = home.join("data/trialwatch");
    assert!(
        text.contains(&format!("data_dir: {}", data.display())),
        "{text}"
    );
    // A read command on the empty data directory says what to do and creates nothing.
    let out = run(&["history", ID]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains(&format!(
            "no store at {}; run `trialwatch sync` first",
            data.display()
        )),
        "{}",
        stderr(&out)
    );
    assert!(!data.join("db").exists());
    let out = run(&["sync"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(data.join("db").is_dir());
    assert!(run(&["history", ID]).status.success());
}

/// While a CLI `sync` holds the store, another command waits for it and says who holds it
/// (never sled's raw lock error), then runs.
#[test]
fn a_command_waits_for_a_sync_holding_the_store_and_says_who() {
    use crate::support::fake_ctgov::Fault;
    let env = TestEnv::new(&[ID]);
    env.server.put_study(fixture(&format!("{ID}.json")));
    env.ok(&["sync"]);
    env.server
        .push_fault(Fault::Delay(std::time::Duration::from_millis(1500)));
    let mut sync = env
        .cmd(&["sync"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(500));
    // One trial's history, the day's changes and the status come from the heads file the
    // last sync left: no wait at all.
    for args in [
        &["history", ID][..],
        &["changes", "--since", "1d"][..],
        &["status"][..],
    ] {
        let out = env.run(args);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        assert!(
            !stderr(&out).contains("in use"),
            "{args:?}: {}",
            stderr(&out)
        );
    }
    // A command that needs the index waits, and says for whom.
    let out = env.run(&["outbox"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains(&format!(
            "it is in use by PID {} (`trialwatch sync`)",
            sync.id()
        )),
        "{err}"
    );
    assert!(!err.contains("Os {"), "{err}");
    assert!(sync.wait().unwrap().success());
}

/// A read command on a data directory with no store says so and creates none.
#[test]
fn a_read_command_without_a_store_says_run_sync_first() {
    let env = TestEnv::new(&[ID]);
    for args in [&["history", ID][..], &["changes"], &["status"]] {
        let out = env.run(args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert!(
            stderr(&out).contains("run `trialwatch sync` first"),
            "{args:?}: {}",
            stderr(&out)
        );
    }
    assert!(!env.data_dir().join("db").exists());
}

/// Every command that prints data takes `--json` and prints JSON; every argument and flag of
/// every command has help text.
#[test]
fn every_data_command_has_json_and_every_flag_has_help() {
    let env = TestEnv::new(&[ID]);
    env.server.put_study(fixture(&format!("{ID}.json")));
    env.ok(&["sync"]);
    for args in [
        &["fields", "--json"][..],
        &["check-config", "--json"],
        &["watch", "list", "--json"],
        &["status", "--json"],
        &["subscriptions", "--json"],
        &["outbox", "--json"],
        &["history", ID, "--json"],
        &["changes", "--json"],
        &["show", ID, "--format", "json"],
    ] {
        let _ = env.json(args);
    }
    let c = env.json(&["check-config", "--json"]);
    assert_eq!(c["data_dir"], env.data_dir().display().to_string());
    assert_eq!(c["watch"]["trials"][0], ID);
    assert!(
        c["schedule"]["next"][0].as_str().unwrap().ends_with('Z'),
        "{c}"
    );
    assert!(env.json(&["fields", "--json"]).as_array().unwrap().len() > 20);

    // Help: no argument or flag without a description.
    let top = env.ok(&["--help"]);
    let commands: Vec<String> = top
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .filter(|c| c != "help")
        .collect();
    assert!(commands.len() > 10, "{top}");
    for cmd in &commands {
        let help = env.ok(&[cmd, "-h"]);
        for line in help
            .lines()
            .filter(|l| l.starts_with("  -") || l.starts_with("  <"))
        {
            let described = line.trim().contains("  ");
            assert!(described, "`{cmd}`: no help for {line:?}\n{help}");
        }
    }
}

/// Counts agree with their nouns ("1 trial", "1 request", "2 trials") and durations are
/// printed one way (`0.1 s`, never Rust's `100ms` debug form).
#[test]
fn plurals_agree_and_durations_print_one_way() {
    let env = TestEnv::new(&[ID]);
    env.server.put_study(fixture(&format!("{ID}.json")));
    let out = env.ok(&["sync"]);
    assert!(out.starts_with("synced 1 trial in "), "{out}");
    assert!(
        out.contains(" s: 1 fetched, 1 new version, 0 unchanged"),
        "{out}"
    );
    assert!(out.contains("(1 request to CT.gov)"), "{out}");
    let out = env.ok(&["check-config"]);
    assert!(out.contains("timeout 5.0 s, 4 attempts"), "{out}");
    assert!(out.contains("watch: 1 trial in the configuration"), "{out}");
    assert!(out.contains("webhook timeout 10.0 s"), "{out}");
    assert!(out.contains("give up after 72 h"), "{out}");
}

/// The unit names its documentation, and a reload checks the config before signalling the
/// daemon, so `systemctl reload` with a broken config is reported as failed.
#[test]
fn the_unit_documents_itself_and_checks_the_config_before_a_reload() {
    let unit = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd/trialwatch.service"),
    )
    .unwrap();
    assert!(
        unit.lines().any(|l| l.starts_with("Documentation=")),
        "{unit}"
    );
    let reloads: Vec<&str> = unit
        .lines()
        .filter(|l| l.starts_with("ExecReload="))
        .collect();
    assert_eq!(reloads.len(), 2, "{reloads:?}");
    assert!(reloads[0].ends_with(" check-config"), "{reloads:?}");
    assert!(reloads[1].contains("kill -HUP $MAINPID"), "{reloads:?}");
    // What the first ExecReload runs fails on a broken config.
    let env = TestEnv::with_config(&[ID], "", "[schedule]\ncron = \"bad\"\n");
    assert_eq!(env.run(&["check-config"]).status.code(), Some(1));
}

/// Under journald (`$JOURNAL_STREAM`) every log line starts with its syslog priority, so
/// `journalctl -p warning` shows warnings, and no event spans two lines.
#[test]
fn journald_lines_carry_their_priority() {
    let env = TestEnv::with_config(&[ID], "max_attempts = 1", "");
    let text = std::fs::read_to_string(&env.config).unwrap();
    let dead = format!("http://127.0.0.1:{}", free_port());
    std::fs::write(&env.config, text.replace(&env.server.base_url(), &dead)).unwrap();
    let out = env
        .cmd(&["--log-level", "warn", "sync"])
        .env("JOURNAL_STREAM", "8:12345")
        .output()
        .unwrap();
    let err = stderr(&out);
    let logged: Vec<&str> = err.lines().filter(|l| !l.starts_with("error:")).collect();
    assert!(!logged.is_empty(), "{err}");
    for line in &logged {
        assert!(line.starts_with("<4> WARN "), "{line:?} in {err}");
    }
    assert!(!err.contains("Some("), "{err}");
}
