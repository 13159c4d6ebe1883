//! `[smtp]`: how email alerts leave ([`SmtpConfig`], [`SmtpSecurity`]), the [`Secret`] wrapper
//! that keeps passwords and webhook signing keys out of logs, and where the SMTP password comes
//! from (`password_file`, `password_env`, or the systemd credential
//! [`SMTP_PASSWORD_CREDENTIAL`]). Sending mail is `crate::notify`'s business.

use std::fmt;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::check::{int_in_range, relative_to, secs_in_range};
use super::raw;
use crate::util::secret::read_secret_file;

/// The systemd credential name read from `$CREDENTIALS_DIRECTORY` when neither
/// `smtp.password_file` nor `smtp.password_env` is set (`LoadCredential=smtp-password`, from
/// `/etc/credstore/smtp-password`).
pub const SMTP_PASSWORD_CREDENTIAL: &str = "smtp-password";

/// A password or signing key. `Debug` and `Display` print `[redacted]`, and it is not
/// `Serialize`, so it cannot end up in a log line, an error message or the outbox by accident.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wrap a value read from a file, the environment or a systemd credential.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret itself, for the one place that needs it (AUTH, HMAC key).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Secret(value)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// How the SMTP connection is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpSecurity {
    /// Plain connect, then a *required* STARTTLS before AUTH or any mail (usually port 587).
    /// A server that does not offer STARTTLS is refused, so a downgrade cannot leak the password.
    StartTls,
    /// TLS from the first byte (implicit TLS, "SMTPS", usually port 465).
    Tls,
    /// No encryption, for a relay on this machine or a trusted local network (port 25).
    None,
}

impl SmtpSecurity {
    /// The port this mode conventionally uses, for configs that leave the port out.
    pub fn default_port(self) -> u16 {
        match self {
            SmtpSecurity::StartTls => 587,
            SmtpSecurity::Tls => 465,
            SmtpSecurity::None => 25,
        }
    }
}

impl fmt::Display for SmtpSecurity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SmtpSecurity::StartTls => "starttls",
            SmtpSecurity::Tls => "tls",
            SmtpSecurity::None => "none",
        })
    }
}

/// Why a string is not an SMTP security mode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not an SMTP security mode: expected starttls, tls or none")]
pub struct BadSmtpSecurity(
    /// The text as written in the config.
    pub String,
);

impl FromStr for SmtpSecurity {
    type Err = BadSmtpSecurity;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "starttls" => Ok(SmtpSecurity::StartTls),
            "tls" => Ok(SmtpSecurity::Tls),
            "none" => Ok(SmtpSecurity::None),
            _ => Err(BadSmtpSecurity(s.to_string())),
        }
    }
}

/// The validated `[smtp]` settings.
#[derive(Clone, PartialEq, Eq)]
pub struct SmtpConfig {
    /// Server name: what we connect to and what its TLS certificate must name.
    pub host: String,
    /// `smtp.port`, else the conventional port of `security`.
    pub port: u16,
    /// How the connection is protected; STARTTLS (required) unless the config says otherwise.
    pub security: SmtpSecurity,
    /// AUTH user; set together with `password`, or neither for a relay that needs no login.
    pub username: Option<String>,
    /// From `password_file`, `password_env` or the systemd credential; only kept when
    /// `username` is set, so a stray credential never turns AUTH on.
    pub password: Option<Secret>,
    /// The `From:` mailbox, e.g. `trialwatch <trialwatch@example.org>`.
    pub from: String,
    /// Limit for connecting and for each SMTP reply; a whole send gets three times this.
    pub timeout: Duration,
    /// An extra trusted root certificate (PEM), for a server whose certificate comes from a
    /// private CA (a company relay, the tests' own CA). The public web roots stay trusted.
    pub extra_root_cert_pem: Option<String>,
    /// Where the password comes from when `username` is set (`None` when built in code). A
    /// password that cannot be read in this process (a shell without the service's systemd
    /// credential or environment) is no config error: only sending mail needs it.
    pub password_source: Option<PasswordSource>,
}

/// Where the SMTP password comes from, and why it is not available here if it is not; for
/// `check-config` and for the delivery error that replaces a config error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswordSource {
    /// e.g. "the systemd credential `smtp-password`" or "password_file /etc/trialwatch/pw".
    pub describe: String,
    /// Why this process could not read it (no secret in the text); `None` when it was read.
    pub unavailable: Option<String>,
}

impl fmt::Debug for SmtpConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmtpConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("security", &self.security)
            .field("username", &self.username)
            .field("password", &self.password)
            .field("from", &self.from)
            .field("timeout", &self.timeout)
            .field("password_source", &self.password_source)
            .field(
                "extra_root_cert_pem",
                &self
                    .extra_root_cert_pem
                    .as_ref()
                    .map(|pem| format!("<PEM, {} bytes>", pem.len())),
            )
            .finish()
    }
}

/// Check `[smtp]` and read the password and extra root certificate it points to; `None` when
/// anything is wrong (the problems say what).
pub(super) fn validate_smtp(
    raw: &raw::Smtp,
    file: Option<&Path>,
    problems: &mut Vec<String>,
) -> Option<SmtpConfig> {
    let before = problems.len();
    if raw.password.is_some() {
        problems.push(
            "`smtp.password` is not allowed: a password does not belong in the config file; \
             put the password in a file and set `password_file = \"/etc/trialwatch/smtp-password\"`, \
             or set `password_env = \"SMTP_PASSWORD\"` (the value is not shown here)"
                .into(),
        );
    }
    let host = match raw.host.as_deref().map(str::trim) {
        Some(h) if !h.is_empty() && !h.contains(char::is_whitespace) => h.to_string(),
        Some(h) => {
            problems.push(format!(
                "`smtp.host` = {h:?} is not a host name; e.g. \"smtp.example.org\" or \"localhost\""
            ));
            String::new()
        }
        None => {
            problems.push(
                "`smtp.host` is missing; name the SMTP server, e.g. host = \"localhost\"".into(),
            );
            String::new()
        }
    };
    let security = match raw.security.as_deref() {
        None => SmtpSecurity::StartTls,
        Some(s) => match s.parse::<SmtpSecurity>() {
            Ok(m) => m,
            Err(e) => {
                problems.push(format!("`smtp.security`: {e}"));
                SmtpSecurity::StartTls
            }
        },
    };
    let port = int_in_range(
        raw.port,
        "smtp.port",
        i64::from(security.default_port()),
        1,
        65535,
        problems,
    ) as u16;
    let from = match raw.from.as_deref().map(str::trim) {
        Some(f) if f.contains('@') => f.to_string(),
        Some(f) => {
            problems.push(format!(
                "`smtp.from` = {f:?} is not a mailbox; write it as \"trialwatch <trialwatch@example.org>\""
            ));
            String::new()
        }
        None => {
            problems.push(
                "`smtp.from` is missing; e.g. from = \"trialwatch <trialwatch@example.org>\""
                    .into(),
            );
            String::new()
        }
    };
    // A password that cannot be read here is not a mistake in the file: the CLI run from a
    // shell has neither the service's credential nor its environment. It is recorded and only
    // delivery (which needs it) fails; `check-config` says where it will come from.
    let (password, source) = match (&raw.password_file, &raw.password_env) {
        (Some(_), Some(_)) => {
            problems
                .push("`smtp.password_file` and `smtp.password_env` are both set; keep one".into());
            (None, None)
        }
        (Some(f), None) => {
            let path = relative_to(file, f);
            let describe = format!("password_file {}", path.display());
            match read_secret_file(&path) {
                Ok(text) => (Some(Secret::new(text)), Some((describe, None))),
                Err(e) => (
                    None,
                    Some((
                        describe,
                        Some(format!(
                            "it {e} (the password on one line, mode 0600, readable by the user that sends mail)"
                        )),
                    )),
                ),
            }
        }
        (None, Some(var)) => {
            let describe = format!("the environment variable {var}");
            match std::env::var(var) {
                Ok(v) if !v.is_empty() => (Some(Secret::new(v)), Some((describe, None))),
                _ => (
                    None,
                    Some((
                        describe,
                        Some(format!(
                            "{var} is not set in this environment; set it in the service's environment or use password_file"
                        )),
                    )),
                ),
            }
        }
        (None, None) => {
            let describe = format!("the systemd credential `{SMTP_PASSWORD_CREDENTIAL}`");
            match credentials_dir_password() {
                Ok(pw) => (Some(pw), Some((describe, None))),
                Err(why) => (None, Some((describe, Some(why)))),
            }
        }
    };
    let password_source = raw
        .username
        .as_ref()
        .and(source)
        .map(|(describe, unavailable)| PasswordSource {
            describe,
            unavailable,
        });
    let timeout = secs_in_range(
        raw.timeout_secs,
        "smtp.timeout_secs",
        30.0,
        0.1,
        600.0,
        problems,
    );
    let extra_root_cert_pem = raw.root_cert_file.as_ref().and_then(|f| {
        let path = relative_to(file, f);
        match std::fs::read_to_string(&path) {
            Ok(pem) => Some(pem),
            Err(e) => {
                problems.push(format!(
                    "`smtp.root_cert_file` = {:?} cannot be read: {e}; give a PEM certificate file or remove the key",
                    path.display().to_string()
                ));
                None
            }
        }
    });
    // Only pair a password with a user name; a credential file alone must not turn AUTH on.
    let password = raw.username.as_ref().and(password);
    (problems.len() == before).then(|| SmtpConfig {
        host,
        port,
        security,
        username: raw.username.clone(),
        password,
        from,
        timeout,
        extra_root_cert_pem,
        password_source,
    })
}

/// `$CREDENTIALS_DIRECTORY/smtp-password`, when systemd handed one over; else why not.
fn credentials_dir_password() -> Result<Secret, String> {
    let dir = std::env::var_os("CREDENTIALS_DIRECTORY").ok_or_else(|| {
        format!(
            "CREDENTIALS_DIRECTORY is not set (only the service started by systemd with \
             LoadCredential={SMTP_PASSWORD_CREDENTIAL} has it); set password_file or \
             password_env to send mail from elsewhere"
        )
    })?;
    read_secret_file(&Path::new(&dir).join(SMTP_PASSWORD_CREDENTIAL))
        .map(Secret::new)
        .map_err(|e| {
            format!(
                "the credential {e} (systemd hands it over only when \
                 /etc/credstore/{SMTP_PASSWORD_CREDENTIAL} exists: create it, root-owned, mode \
                 0600, and restart the service)"
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smtp_security_parses_and_prints() {
        for mode in [
            SmtpSecurity::StartTls,
            SmtpSecurity::Tls,
            SmtpSecurity::None,
        ] {
            assert_eq!(mode.to_string().parse::<SmtpSecurity>(), Ok(mode));
        }
        assert!("ssl".parse::<SmtpSecurity>().is_err());
    }
}
