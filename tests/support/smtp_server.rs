//! The one SMTP harness of the tests: it runs `tests/support/smtp_server.py`, a real SMTP server
//! (aiosmtpd) with STARTTLS, implicit TLS or plain SMTP and AUTH PLAIN/LOGIN, as a child process
//! on 127.0.0.1, and reads back the messages it saved.
//!
//! It owns the test CA ([`TestCerts`], made with rcgen: a CA and a server certificate for
//! `localhost` and `127.0.0.1`), starting the server on a free port or on a port chosen before
//! (so trialwatch can be configured first and find the server down), stopping and restarting it
//! on the same port, and reading back the messages it saved. It knows nothing about trialwatch.
//!
//! Needs `python3` with aiosmtpd: `bash .ci/install-test-deps.sh` installs it. Set
//! `TRIALWATCH_TEST_PYTHON` to use another interpreter.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

/// A private CA and a server certificate it signed, as PEM files in a directory.
pub struct TestCerts {
    /// What the client must trust (`SmtpConfig::extra_root_cert_pem`).
    pub ca_pem: String,
    /// The server's certificate and key files, for `--cert`/`--key`.
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
}

impl TestCerts {
    /// A fresh CA, and a server certificate for `localhost` and `127.0.0.1`, written to `dir`.
    pub fn create(dir: &Path) -> TestCerts {
        let ca_key = KeyPair::generate().expect("CA key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "trialwatch test CA");
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_cert = ca_params.self_signed(&ca_key).expect("CA certificate");

        let server_key = KeyPair::generate().expect("server key");
        let mut server_params =
            CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
                .expect("server params");
        server_params
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        server_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let issuer = Issuer::new(ca_params, ca_key);
        let server_cert = server_params
            .signed_by(&server_key, &issuer)
            .expect("server certificate");

        let cert_path = dir.join("server-cert.pem");
        let key_path = dir.join("server-key.pem");
        std::fs::write(&cert_path, server_cert.pem()).expect("write cert");
        std::fs::write(&key_path, server_key.serialize_pem()).expect("write key");
        TestCerts {
            ca_pem: ca_cert.pem(),
            cert_path,
            key_path,
        }
    }
}

/// How the server behaves.
#[derive(Clone, Debug)]
pub struct SmtpOptions {
    /// `starttls` (required), `tls` (implicit) or `none`.
    pub mode: &'static str,
    /// AUTH is required when set.
    pub login: Option<(String, String)>,
    /// Recipients refused with `550 5.1.1 … User unknown`.
    pub reject_rcpt: Vec<String>,
    /// Recipients deferred with `451 4.7.1 … greylisted, try again later`.
    pub defer_rcpt: Vec<String>,
}

impl SmtpOptions {
    /// Plain SMTP (no TLS), no AUTH, every recipient accepted.
    pub fn plain() -> SmtpOptions {
        SmtpOptions {
            mode: "none",
            login: None,
            reject_rcpt: Vec::new(),
            defer_rcpt: Vec::new(),
        }
    }
}

/// One message the server accepted.
#[derive(Debug, Clone)]
pub struct Received {
    /// The message bytes exactly as received after DATA.
    pub raw: Vec<u8>,
    /// `mail_from`, `rcpt_tos`, `tls`, `authenticated`, `login`.
    pub meta: serde_json::Value,
}

impl Received {
    /// The message as text (invalid UTF-8 replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.raw).into_owned()
    }

    /// The envelope recipients (`RCPT TO`) the server accepted.
    pub fn to(&self) -> Vec<String> {
        self.meta["rcpt_tos"]
            .as_array()
            .expect("rcpt_tos is a list")
            .iter()
            .map(|s| s.as_str().expect("a recipient").to_string())
            .collect()
    }

    /// The `Message-ID` header's value as written (angle brackets kept), `""` when absent.
    pub fn message_id(&self) -> String {
        self.text()
            .lines()
            .find(|line| line.to_lowercase().starts_with("message-id:"))
            .map(|line| line.split_once(':').unwrap().1.trim().to_string())
            .unwrap_or_default()
    }
}

/// A running (or stopped) SMTP server child process.
pub struct SmtpServer {
    child: Option<Child>,
    /// Fixed after the first start, so a restart comes back where the client expects it.
    pub port: u16,
    maildir: PathBuf,
    options: SmtpOptions,
    cert_path: Option<PathBuf>,
    key_path: Option<PathBuf>,
}

impl SmtpServer {
    /// Starts a server on a free port; messages go to `dir/mail`.
    pub fn start(dir: &Path, certs: Option<&TestCerts>, options: SmtpOptions) -> SmtpServer {
        Self::start_on(0, dir, certs, options)
    }

    /// Starts a server on `port` (0: a free one), e.g. one from [`free_port`](super::free_port)
    /// that trialwatch was configured with while nothing listened; messages go to `dir/mail`.
    pub fn start_on(
        port: u16,
        dir: &Path,
        certs: Option<&TestCerts>,
        options: SmtpOptions,
    ) -> SmtpServer {
        let maildir = dir.join("mail");
        std::fs::create_dir_all(&maildir).expect("create maildir");
        let mut server = SmtpServer {
            child: None,
            port,
            maildir,
            options,
            cert_path: certs.map(|c| c.cert_path.clone()),
            key_path: certs.map(|c| c.key_path.clone()),
        };
        server.spawn();
        server
    }

    fn spawn(&mut self) {
        let python = std::env::var("TRIALWATCH_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/smtp_server.py");
        let mut cmd = Command::new(&python);
        cmd.arg(&script)
            .args(["--host", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--mode", self.options.mode])
            .arg("--maildir")
            .arg(&self.maildir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if let (Some(cert), Some(key)) = (&self.cert_path, &self.key_path) {
            cmd.arg("--cert").arg(cert).arg("--key").arg(key);
        }
        if let Some((user, password)) = &self.options.login {
            cmd.args(["--user", user, "--password", password]);
        }
        for rcpt in &self.options.reject_rcpt {
            cmd.args(["--reject-rcpt", rcpt]);
        }
        for rcpt in &self.options.defer_rcpt {
            cmd.args(["--defer-rcpt", rcpt]);
        }
        let mut child = cmd.spawn().unwrap_or_else(|e| {
            panic!("could not run `{python}` for the SMTP test server ({e}); run `bash .ci/install-test-deps.sh`")
        });
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx.recv_timeout(Duration::from_secs(20)).unwrap_or_default();
        let port = line
            .strip_prefix("READY ")
            .and_then(|p| p.trim().parse::<u16>().ok());
        let Some(port) = port else {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "the SMTP test server did not start (said {line:?}; see its stderr above): is aiosmtpd installed? run `bash .ci/install-test-deps.sh`"
            );
        };
        self.port = port;
        self.child = Some(child);
    }

    /// Kills the server; connections to its port are refused until [`restart`](Self::restart).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port, with the same options and maildir.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// The messages received so far, oldest first.
    pub fn messages(&self) -> Vec<Received> {
        let mut metas: Vec<PathBuf> = std::fs::read_dir(&self.maildir)
            .map(|rd| {
                rd.filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.extension().is_some_and(|x| x == "json"))
                    .collect()
            })
            .unwrap_or_default();
        metas.sort();
        metas
            .into_iter()
            .map(|meta_path| {
                let meta = std::fs::read(&meta_path).expect("read meta");
                let raw = std::fs::read(meta_path.with_extension("eml")).expect("read eml");
                Received {
                    raw,
                    meta: serde_json::from_slice(&meta).expect("meta is JSON"),
                }
            })
            .collect()
    }

    /// Waits up to 5 s for at least `n` messages.
    pub fn wait_for(&self, n: usize) -> Vec<Received> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let got = self.messages();
            if got.len() >= n || Instant::now() > deadline {
                return got;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        self.stop();
    }
}
