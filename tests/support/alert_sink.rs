//! A scriptable webhook receiver and a real SMTP server (aiosmtpd) for the alert tests and the
//! alert benchmark. Both listen on 127.0.0.1; the webhook receiver on port 0.
//!
//! The webhook receiver records every request *when it arrives* (before answering), answers
//! from a script (`500, 500, then 200`), and can hold a request open forever, so a test can kill
//! trialwatch between send and acknowledgement. Include with
//! `#[path = "support/alert_sink.rs"] mod alert_sink;`.
#![allow(dead_code)]

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use serde_json::Value;

/// How the receiver answers one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    Status(u16),
    /// Never answer (the connection stays open until the client goes away).
    Hold,
}

/// One request as the receiver saw it.
#[derive(Debug, Clone)]
pub struct Hit {
    pub path: String,
    /// `X-Trialwatch-Event-Id`: the idempotency key.
    pub event_id: String,
    pub signature: Option<String>,
    pub body: Value,
    pub reply: Reply,
}

#[derive(Default)]
struct SinkState {
    script: VecDeque<Reply>,
    default: Option<Reply>,
    hits: Vec<Hit>,
    /// Skip body parsing and keep only counts (benchmarks).
    light: bool,
    count: usize,
}

pub struct WebhookSink {
    pub addr: SocketAddr,
    state: Arc<Mutex<SinkState>>,
}

async fn hook(
    State(state): State<Arc<Mutex<SinkState>>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let reply = {
        let mut s = state.lock().unwrap();
        let reply = s
            .script
            .pop_front()
            .or(s.default)
            .unwrap_or(Reply::Status(200));
        s.count += 1;
        if !s.light {
            let header = |n: &str| {
                headers
                    .get(n)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string)
            };
            s.hits.push(Hit {
                path: uri.path().to_string(),
                event_id: header("x-trialwatch-event-id").unwrap_or_default(),
                signature: header("x-trialwatch-signature"),
                body: serde_json::from_slice(&body).unwrap_or(Value::Null),
                reply,
            });
        }
        reply
    };
    match reply {
        Reply::Status(code) => StatusCode::from_u16(code).unwrap(),
        Reply::Hold => {
            std::future::pending::<()>().await;
            unreachable!()
        }
    }
}

impl WebhookSink {
    pub fn start() -> WebhookSink {
        let state = Arc::new(Mutex::new(SinkState::default()));
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        std_listener.set_nonblocking(true).unwrap();
        let addr = std_listener.local_addr().unwrap();
        let st = state.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(std_listener).unwrap();
                let app = Router::new()
                    .fallback(axum::routing::post(hook))
                    .with_state(st);
                axum::serve(listener, app).await.unwrap();
            });
        });
        WebhookSink { addr, state }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Answers for the next requests, in order; then the default.
    pub fn script(&self, replies: &[Reply]) {
        self.state
            .lock()
            .unwrap()
            .script
            .extend(replies.iter().copied());
    }

    pub fn set_default(&self, reply: Reply) {
        self.state.lock().unwrap().default = Some(reply);
    }

    pub fn set_light(&self, light: bool) {
        self.state.lock().unwrap().light = light;
    }

    pub fn hits(&self) -> Vec<Hit> {
        self.state.lock().unwrap().hits.clone()
    }

    pub fn count(&self) -> usize {
        self.state.lock().unwrap().count
    }

    /// Wait until at least `n` requests arrived (or panic after `timeout`).
    pub fn wait_for(&self, n: usize, timeout: Duration) {
        let t0 = Instant::now();
        while self.count() < n {
            assert!(
                t0.elapsed() < timeout,
                "only {} of {n} requests arrived",
                self.count()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// A free TCP port on 127.0.0.1 (bound, then released), for a server that must start later.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

const SMTP_SERVER_PY: &str = r#"
import json, sys, time
from aiosmtpd.controller import Controller

port, out = int(sys.argv[1]), sys.argv[2]

class Handler:
    async def handle_DATA(self, server, session, envelope):
        text = envelope.content.decode("utf8", errors="replace")
        mid = ""
        for line in text.splitlines():
            if line.lower().startswith("message-id:"):
                mid = line.split(":", 1)[1].strip()
                break
        with open(out, "a") as f:
            f.write(json.dumps({"from": envelope.mail_from, "to": envelope.rcpt_tos,
                                "message_id": mid, "data": text}) + "\n")
        return "250 OK"

c = Controller(Handler(), hostname="127.0.0.1", port=port)
c.start()
print("ready", flush=True)
while True:
    time.sleep(3600)
"#;

/// A real SMTP server (aiosmtpd) that appends every accepted message to a JSON-lines file.
pub struct SmtpSink {
    child: Child,
    pub port: u16,
    out: PathBuf,
}

/// One accepted email.
#[derive(Debug, Clone)]
pub struct Mail {
    pub to: Vec<String>,
    pub message_id: String,
    pub data: String,
}

impl SmtpSink {
    /// Start on `port`, writing messages to `dir/mail.jsonl`; waits until it accepts connections.
    pub fn start(port: u16, dir: &Path) -> SmtpSink {
        let out = dir.join("mail.jsonl");
        let mut child = Command::new("python3")
            .arg("-c")
            .arg(SMTP_SERVER_PY)
            .arg(port.to_string())
            .arg(&out)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3 with aiosmtpd (run .ci/install-test-deps.sh)");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "ready", "aiosmtpd did not start");
        SmtpSink { child, port, out }
    }

    pub fn mails(&self) -> Vec<Mail> {
        let text = std::fs::read_to_string(&self.out).unwrap_or_default();
        text.lines()
            .map(|l| {
                let v: Value = serde_json::from_str(l).unwrap();
                Mail {
                    to: v["to"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|s| s.as_str().unwrap().to_string())
                        .collect(),
                    message_id: v["message_id"].as_str().unwrap().to_string(),
                    data: v["data"].as_str().unwrap().to_string(),
                }
            })
            .collect()
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
