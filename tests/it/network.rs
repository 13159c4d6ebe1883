//! The networks trialwatch runs on: an HTTP proxy from `HTTP_PROXY`/`HTTPS_PROXY` (and
//! `NO_PROXY` bypassing it), a TLS-inspecting proxy's untrusted certificate refused at once with
//! the fix named, and the system's trust (here `SSL_CERT_FILE`) making that certificate work.

use std::process::Output;

use crate::support::env::{TestEnv, fixture, stderr, stdout};
use crate::support::net::{Proxy, UntrustedTls};

const ID: &str = "NCT03418623";

/// `sync` with only the given proxy variables set (none inherited from the machine).
fn sync_with(env: &TestEnv, vars: &[(&str, &str)]) -> Output {
    let mut cmd = env.cmd(&["sync"]);
    for v in [
        "HTTP_PROXY",
        "http_proxy",
        "HTTPS_PROXY",
        "https_proxy",
        "ALL_PROXY",
        "all_proxy",
        "NO_PROXY",
        "no_proxy",
        "SSL_CERT_FILE",
        "SSL_CERT_DIR",
    ] {
        cmd.env_remove(v);
    }
    cmd.envs(vars.iter().copied());
    cmd.output().unwrap()
}

/// An env whose CT.gov is the untrusted HTTPS server instead of the fake one.
fn env_behind_tls(tls: &UntrustedTls) -> TestEnv {
    let env = TestEnv::new(&[ID]);
    let text = std::fs::read_to_string(&env.config).unwrap();
    let text = text.replace(
        &format!("base_url = {:?}", env.server.base_url()),
        &format!("base_url = \"https://127.0.0.1:{}\"", tls.port),
    );
    std::fs::write(&env.config, text).unwrap();
    env
}

#[test]
fn http_proxy_carries_the_requests_and_no_proxy_bypasses_it() {
    let env = TestEnv::new(&[ID]);
    env.server.put_study(fixture("NCT03418623.json"));
    let proxy = Proxy::start();
    let url = format!("http://{}", proxy.addr);
    let out = sync_with(&env, &[("HTTP_PROXY", &url)]);
    assert!(out.status.success(), "{}", stderr(&out));
    let seen = proxy.requests();
    let base = env.server.base_url();
    assert!(
        seen.iter()
            .any(|r| r.starts_with(&format!("GET {base}/api/v2/studies"))),
        "the proxy saw {seen:?}"
    );
    assert!(!env.server.requests().is_empty());

    let before = seen.len();
    let out = sync_with(&env, &[("HTTP_PROXY", &url), ("NO_PROXY", "127.0.0.1")]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        proxy.requests().len(),
        before,
        "NO_PROXY went around the proxy"
    );
}

#[test]
fn an_untrusted_certificate_fails_once_in_one_line_naming_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let tls = UntrustedTls::start(dir.path());
    let env = env_behind_tls(&tls);
    let proxy = Proxy::start();
    let out = sync_with(&env, &[("HTTPS_PROXY", &format!("http://{}", proxy.addr))]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    for words in [
        "certificate",
        "UnknownIssuer",
        "SSL_CERT_FILE",
        "not retried",
    ] {
        assert!(err.contains(words), "`{words}` missing: {err}");
    }
    // max_attempts is 4: a certificate is not retried as if it were a passing fault.
    assert_eq!(tls.connections(), 1, "{err}");
    // HTTPS went through the proxy as a CONNECT tunnel.
    let seen = proxy.requests();
    assert_eq!(
        seen,
        vec![format!("CONNECT 127.0.0.1:{} HTTP/1.1", tls.port)],
        "{seen:?}"
    );
}

#[test]
fn a_ca_the_system_trusts_makes_the_certificate_work() {
    let dir = tempfile::tempdir().unwrap();
    let tls = UntrustedTls::start(dir.path());
    let env = env_behind_tls(&tls);
    let ca = tls.ca_file.to_str().unwrap().to_string();
    let out = sync_with(&env, &[("SSL_CERT_FILE", &ca)]);
    let err = format!("{}{}", stdout(&out), stderr(&out));
    // The handshake now succeeds: the server's 503 is what fails, and is retried.
    assert!(!err.contains("certificate"), "{err}");
    assert!(err.contains("HTTP 503"), "{err}");
    assert!(err.contains("after 4 attempts"), "{err}");
    assert_eq!(tls.connections(), 4, "retried up to max_attempts: {err}");
}

/// A webhook receiver whose certificate is not trusted: the alert fails at once (not retried),
/// in a message naming the CA file in force (`SSL_CERT_FILE`) and how to trust the receiver's CA.
#[test]
fn an_untrusted_webhook_certificate_names_the_ca_file_and_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let tls = UntrustedTls::start(dir.path());
    let env = TestEnv::new(&[ID]);
    let url = format!("https://127.0.0.1:{}/hook", tls.port);
    let out = env.ok(&["subscribe", "webhook", &url]);
    let id = out
        .split_whitespace()
        .find(|w| w.starts_with("sub-"))
        .unwrap()
        .trim_end_matches([':', ',', '.'])
        .to_string();
    // Another CA than the receiver's: the file trialwatch trusts, named in the message.
    let other = tempfile::tempdir().unwrap();
    let other_tls = UntrustedTls::start(other.path());
    let other_ca = other_tls.ca_file.clone();
    let mut cmd = env.cmd(&["test-alert", &id]);
    cmd.env("SSL_CERT_FILE", &other_ca)
        .env_remove("SSL_CERT_DIR");
    let out = cmd.output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    for words in [
        "TLS certificate was refused",
        "invalid peer certificate",
        other_ca.to_str().unwrap(),
        "update-ca-certificates",
        "not retried",
    ] {
        assert!(err.contains(words), "`{words}` missing: {err}");
    }
    assert!(!err.contains("(the receiver may accept later)"), "{err}");
    assert_eq!(tls.connections(), 1, "{err}");
}
