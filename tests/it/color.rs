//! Colour: `--color always|never|auto`, `NO_COLOR` and `CLICOLOR_FORCE` decide; piped output in
//! auto is plain bytes (the golden tests compare exactly that), and painting only adds escapes.

use serde_json::json;

use crate::support::env::{TestEnv, edit, fixture, stdout};

const ESC: &str = "\u{1b}[";

/// A trial synced twice with its status changed to TERMINATED.
fn env_with_a_change() -> TestEnv {
    let env = TestEnv::new(&["NCT03418623"]);
    let v1 = fixture("NCT03418623.json");
    env.server.put_study(v1.clone());
    env.ok(&["sync"]);
    env.server.put_study(edit(&v1, |p| {
        p["statusModule"]["overallStatus"] = json!("TERMINATED");
        p["designModule"]["enrollmentInfo"]["count"] = json!(12);
    }));
    env.ok(&["sync"]);
    env
}

fn run(env: &TestEnv, args: &[&str], vars: &[(&str, &str)]) -> String {
    let mut cmd = env.cmd(args);
    cmd.env_remove("NO_COLOR").env_remove("CLICOLOR_FORCE");
    cmd.envs(vars.iter().copied());
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{args:?} {vars:?}");
    stdout(&out)
}

fn strip(s: &str) -> String {
    let mut out = String::new();
    let mut esc = false;
    for c in s.chars() {
        match (esc, c) {
            (false, '\u{1b}') => esc = true,
            (true, 'm') => esc = false,
            (true, _) => {}
            (false, c) => out.push(c),
        }
    }
    out
}

#[test]
fn color_follows_the_flag_then_no_color_then_clicolor_force_and_is_off_when_piped() {
    let env = env_with_a_change();
    let plain = run(&env, &["diff", "NCT03418623"], &[]);
    assert!(!plain.contains(ESC), "piped output is plain: {plain:?}");
    assert!(plain.contains("TERMINATED"), "{plain}");

    let always = run(&env, &["diff", "NCT03418623", "--color", "always"], &[]);
    assert!(
        always.contains(&format!("{ESC}1m{ESC}31mTERMINATED")),
        "{always:?}"
    );
    assert_eq!(strip(&always), plain, "colour only adds escapes");

    let forced = run(&env, &["diff", "NCT03418623"], &[("CLICOLOR_FORCE", "1")]);
    assert_eq!(forced, always);
    let no_color = run(
        &env,
        &["diff", "NCT03418623"],
        &[("CLICOLOR_FORCE", "1"), ("NO_COLOR", "1")],
    );
    assert_eq!(no_color, plain, "NO_COLOR wins over CLICOLOR_FORCE");
    let never = run(
        &env,
        &["diff", "NCT03418623", "--color", "never"],
        &[("CLICOLOR_FORCE", "1")],
    );
    assert_eq!(never, plain, "--color never wins");

    // Severities in `changes`: critical is red and bold; the text is unchanged.
    let changes = run(&env, &["changes", "--color", "always"], &[]);
    assert!(
        changes.contains(&format!("{ESC}1m{ESC}31mcritical")),
        "{changes:?}"
    );
    assert_eq!(strip(&changes), run(&env, &["changes"], &[]));
    // JSON is never painted.
    let json = run(&env, &["changes", "--json", "--color", "always"], &[]);
    assert!(!json.contains(ESC));
    // The mirror page stays the page.
    let page = run(&env, &["show", "NCT03418623", "--color", "always"], &[]);
    assert_eq!(page, run(&env, &["show", "NCT03418623"], &[]));
}
