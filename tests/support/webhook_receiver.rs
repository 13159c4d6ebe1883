//! The one webhook receiver of the tests and benchmarks: a real axum server on `127.0.0.1:0`
//! that records every request *when it arrives*, before answering (method, path and query,
//! headers, body), checks the `X-Trialwatch-Signature` with its own secret and its own HMAC code
//! (not trialwatch's), and answers from a script of replies (e.g. 500, 500, then 200), each
//! optionally delayed, with extra headers and a body, or held open forever, so a test can kill
//! trialwatch between send and acknowledgement.
//!
//! [`WebhookReceiver::start`] is synchronous: the server runs its own tokio runtime on its own
//! thread, so plain `#[test]`s that spawn the `trialwatch` binary can use it as well as
//! `#[tokio::test]`s and benches. Dropping it stops it (held requests are cut off).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// How the receiver answers one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    /// Wait this long before answering (to test the sender's timeout).
    pub delay: Duration,
    /// Never answer: the connection stays open until the client goes away.
    pub hold: bool,
    /// Extra response headers, e.g. `Retry-After`.
    pub headers: Vec<(&'static str, String)>,
    pub body: String,
}

impl Reply {
    pub fn status(status: u16) -> Reply {
        Reply {
            status,
            delay: Duration::ZERO,
            hold: false,
            headers: Vec::new(),
            body: String::new(),
        }
    }

    pub fn delayed(status: u16, delay: Duration) -> Reply {
        Reply {
            delay,
            ..Reply::status(status)
        }
    }

    /// Never answer (the connection stays open until the client goes away).
    pub fn hold() -> Reply {
        Reply {
            hold: true,
            ..Reply::status(200)
        }
    }

    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Reply {
        self.headers.push((name, value.into()));
        self
    }

    pub fn body(mut self, body: impl Into<String>) -> Reply {
        self.body = body.into();
        self
    }
}

/// One request as the receiver saw it.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub method: String,
    /// Path and query.
    pub uri: String,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
    /// Whether the signature header verified with the receiver's secret; `None` when the
    /// receiver has no secret or the request carried no signature.
    pub signature_ok: Option<bool>,
    /// How the receiver answered it.
    pub reply: Reply,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The path, without the query.
    pub fn path(&self) -> &str {
        self.uri.split('?').next().unwrap_or_default()
    }

    /// `X-Trialwatch-Event-Id`, the idempotency key (`""` when absent).
    pub fn event_id(&self) -> &str {
        self.header("x-trialwatch-event-id").unwrap_or_default()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("the webhook body is JSON")
    }
}

struct Inner {
    secret: Option<Vec<u8>>,
    script: VecDeque<Reply>,
    /// Answer once the script is used up.
    fallback: Reply,
    requests: Vec<Recorded>,
    /// Record nothing, only count (benchmarks).
    light: bool,
    count: usize,
}

/// A running receiver; stops when dropped.
pub struct WebhookReceiver {
    pub addr: SocketAddr,
    inner: Arc<Mutex<Inner>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl WebhookReceiver {
    /// Starts a receiver without a secret that answers 200 unless scripted otherwise.
    pub fn start() -> WebhookReceiver {
        Self::start_inner(None)
    }

    /// Starts a receiver that checks signatures with `secret` (see [`Recorded::signature_ok`]).
    pub fn with_secret(secret: &[u8]) -> WebhookReceiver {
        Self::start_inner(Some(secret))
    }

    fn start_inner(secret: Option<&[u8]>) -> WebhookReceiver {
        let inner = Arc::new(Mutex::new(Inner {
            secret: secret.map(<[u8]>::to_vec),
            script: VecDeque::new(),
            fallback: Reply::status(200),
            requests: Vec::new(),
            light: false,
            count: 0,
        }));
        let std_listener =
            std::net::TcpListener::bind("127.0.0.1:0").expect("bind webhook receiver");
        std_listener
            .set_nonblocking(true)
            .expect("webhook receiver: set_nonblocking");
        let addr = std_listener.local_addr().expect("local addr");
        let app = Router::new()
            .fallback(handle)
            .with_state(Arc::clone(&inner));
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(format!("webhook-receiver-{}", addr.port()))
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .expect("webhook receiver: tokio runtime");
                rt.block_on(async move {
                    let listener = tokio::net::TcpListener::from_std(std_listener)
                        .expect("webhook receiver: tokio listener");
                    // Not a graceful shutdown: a held request must not hold up the test.
                    // Dropping the runtime below cancels the connection tasks.
                    tokio::select! {
                        res = axum::serve(listener, app) => {
                            if let Err(err) = res {
                                eprintln!("webhook receiver stopped: {err}");
                            }
                        }
                        _ = stop_rx => {}
                    }
                });
            })
            .expect("webhook receiver: thread");
        WebhookReceiver {
            addr,
            inner,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        lock(&self.inner)
    }

    /// `http://127.0.0.1:<port><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Answers the next requests with `replies`, in order, then with the fallback (200 unless
    /// [`set_default`](Self::set_default) changed it).
    pub fn script(&self, replies: impl IntoIterator<Item = Reply>) {
        self.lock().script.extend(replies);
    }

    /// The answer once the script is used up.
    pub fn set_default(&self, reply: Reply) {
        self.lock().fallback = reply;
    }

    /// Record nothing, only count requests (for benchmarks with many thousands of them).
    pub fn set_light(&self, light: bool) {
        self.lock().light = light;
    }

    /// The requests received so far, oldest first (none in light mode).
    pub fn requests(&self) -> Vec<Recorded> {
        self.lock().requests.clone()
    }

    /// How many requests arrived, light mode included.
    pub fn count(&self) -> usize {
        self.lock().count
    }

    /// Waits until at least `n` requests arrived (or panics after `timeout`).
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

    /// The receiver's own signature check: `sha256=` + hex HMAC-SHA256(secret, "{ts}.{body}"),
    /// compared in constant time.
    pub fn verify_with(secret: &[u8], timestamp: &str, body: &[u8], signature: &str) -> bool {
        let Some(hex_sig) = signature.strip_prefix("sha256=") else {
            return false;
        };
        let Ok(sig) = hex::decode(hex_sig) else {
            return false;
        };
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else {
            return false;
        };
        mac.update(timestamp.as_bytes());
        mac.update(b".");
        mac.update(body);
        mac.verify_slice(&sig).is_ok()
    }
}

impl Drop for WebhookReceiver {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A panic while holding the lock (in a test thread) must not cascade into every later request.
fn lock(inner: &Mutex<Inner>) -> MutexGuard<'_, Inner> {
    inner.lock().unwrap_or_else(|e| e.into_inner())
}

async fn handle(
    State(inner): State<Arc<Mutex<Inner>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let reply = {
        let mut inner = lock(&inner);
        let fallback = inner.fallback.clone();
        let reply = inner.script.pop_front().unwrap_or(fallback);
        inner.count += 1;
        if !inner.light {
            let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
            let signature_ok = match (
                &inner.secret,
                header("x-trialwatch-signature"),
                header("x-trialwatch-timestamp"),
            ) {
                (Some(secret), Some(sig), Some(ts)) => {
                    Some(WebhookReceiver::verify_with(secret, ts, &body, sig))
                }
                (Some(_), Some(_), None) => Some(false),
                _ => None,
            };
            inner.requests.push(Recorded {
                method: method.to_string(),
                uri: uri.to_string(),
                headers: headers.clone(),
                body: body.to_vec(),
                signature_ok,
                reply: reply.clone(),
            });
        }
        reply
    };
    if reply.hold {
        std::future::pending::<()>().await;
    }
    if !reply.delay.is_zero() {
        tokio::time::sleep(reply.delay).await;
    }
    let status = StatusCode::from_u16(reply.status).expect("scripted status is valid");
    let mut response = (status, reply.body).into_response();
    for (name, value) in reply.headers {
        if let Ok(value) = value.parse() {
            response.headers_mut().insert(name, value);
        }
    }
    response
}

// ---------------------------------------------------------------------------------------------
// Team-chat formats: what each service documents for its incoming webhooks, checked the way the
// service would (shape and limits), written from the services' docs rather than trialwatch's
// code. Each returns what is wrong, or the message's title.

/// Checks a Slack incoming-webhook body: `text` fallback, blocks with a plain-text header
/// (≤ 150 chars) and mrkdwn sections (≤ 3000 chars each).
pub fn check_slack(r: &Recorded) -> Result<String, String> {
    json_type(r)?;
    let v = r.json();
    let text = v["text"].as_str().ok_or("slack: no `text` fallback")?;
    let blocks = v["blocks"].as_array().ok_or("slack: no `blocks` array")?;
    if blocks.is_empty() || blocks.len() > 50 {
        return Err(format!("slack: {} blocks (1..=50 allowed)", blocks.len()));
    }
    for b in blocks {
        match b["type"].as_str() {
            Some("header") => {
                if b["text"]["type"] != "plain_text" {
                    return Err("slack: a header's text must be plain_text".into());
                }
                limit("slack header", &b["text"]["text"], 150)?;
            }
            Some("section") => limit("slack section", &b["text"]["text"], 3000).map(|_| ())?,
            Some("context") => {
                for e in b["elements"]
                    .as_array()
                    .ok_or("slack: context without elements")?
                {
                    limit("slack context", &e["text"], 3000)?;
                }
            }
            other => return Err(format!("slack: unexpected block type {other:?}")),
        }
    }
    Ok(text.to_string())
}

/// Checks a Discord webhook body: `content` ≤ 2000, ≤ 10 embeds with title ≤ 256, description
/// ≤ 4096, ≤ 25 fields (name ≤ 256, value ≤ 1024), an integer colour.
pub fn check_discord(r: &Recorded) -> Result<String, String> {
    json_type(r)?;
    let v = r.json();
    limit("discord content", &v["content"], 2000)?;
    let embeds = v["embeds"].as_array().ok_or("discord: no `embeds` array")?;
    if embeds.is_empty() || embeds.len() > 10 {
        return Err(format!("discord: {} embeds (1..=10)", embeds.len()));
    }
    let e = &embeds[0];
    let title = limit("discord title", &e["title"], 256)?;
    limit("discord description", &e["description"], 4096)?;
    if !e["color"].is_u64() {
        return Err("discord: `color` must be an integer".into());
    }
    if !e["url"].as_str().unwrap_or_default().starts_with("http") {
        return Err("discord: `url` must be a link".into());
    }
    let fields = e["fields"].as_array().ok_or("discord: no `fields`")?;
    if fields.len() > 25 {
        return Err(format!("discord: {} fields (at most 25)", fields.len()));
    }
    for f in fields {
        limit("discord field name", &f["name"], 256)?;
        limit("discord field value", &f["value"], 1024)?;
    }
    Ok(title)
}

/// Checks a Teams workflow body: a `message` with one Adaptive Card attachment whose body
/// starts with a TextBlock.
pub fn check_teams(r: &Recorded) -> Result<String, String> {
    json_type(r)?;
    let v = r.json();
    if v["type"] != "message" {
        return Err("teams: `type` must be \"message\"".into());
    }
    let a = &v["attachments"][0];
    if a["contentType"] != "application/vnd.microsoft.card.adaptive" {
        return Err(format!("teams: contentType {}", a["contentType"]));
    }
    let card = &a["content"];
    if card["type"] != "AdaptiveCard" || !card["version"].is_string() {
        return Err("teams: content must be an AdaptiveCard with a version".into());
    }
    let body = card["body"].as_array().ok_or("teams: card without body")?;
    let first = body.first().ok_or("teams: empty card body")?;
    if first["type"] != "TextBlock" {
        return Err("teams: the card must open with a TextBlock".into());
    }
    if r.body.len() > 28 * 1024 {
        return Err(format!(
            "teams: {} bytes (cards are capped at 28 KB)",
            r.body.len()
        ));
    }
    Ok(first["text"].as_str().unwrap_or_default().to_string())
}

/// Checks an ntfy publish: a plain-text body ≤ 4096 bytes, `Title`, `Priority` 1–5, `Tags`,
/// `Click`; returns the title (an RFC 2047 encoded-word decoded).
pub fn check_ntfy(r: &Recorded) -> Result<String, String> {
    if r.method != "POST" && r.method != "PUT" {
        return Err(format!("ntfy: method {}", r.method));
    }
    let body = std::str::from_utf8(&r.body).map_err(|_| "ntfy: body is not UTF-8")?;
    if body.is_empty() || r.body.len() > 4096 {
        return Err(format!("ntfy: body of {} bytes (1..=4096)", r.body.len()));
    }
    let prio: u8 = r
        .header("priority")
        .and_then(|p| p.parse().ok())
        .ok_or("ntfy: no numeric Priority header")?;
    if !(1..=5).contains(&prio) {
        return Err(format!("ntfy: Priority {prio} (1..=5)"));
    }
    r.header("tags")
        .filter(|t| !t.is_empty())
        .ok_or("ntfy: no Tags")?;
    r.header("click")
        .filter(|c| c.starts_with("http"))
        .ok_or("ntfy: no Click link")?;
    let title = r.header("title").ok_or("ntfy: no Title")?;
    Ok(decode_encoded_word(title))
}

fn decode_encoded_word(s: &str) -> String {
    use base64::Engine as _;
    match s
        .strip_prefix("=?UTF-8?B?")
        .and_then(|rest| rest.strip_suffix("?="))
    {
        Some(b64) => base64::engine::general_purpose::STANDARD
            .decode(b64)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .unwrap_or_else(|| s.to_string()),
        None => s.to_string(),
    }
}

fn json_type(r: &Recorded) -> Result<(), String> {
    match r.header("content-type") {
        Some(ct) if ct.starts_with("application/json") => Ok(()),
        other => Err(format!("Content-Type {other:?}, not application/json")),
    }
}

fn limit(what: &str, v: &serde_json::Value, max: usize) -> Result<String, String> {
    let s = v
        .as_str()
        .ok_or(format!("{what}: missing or not a string"))?;
    let n = s.chars().count();
    if n == 0 || n > max {
        return Err(format!("{what}: {n} characters (1..={max})"));
    }
    Ok(s.to_string())
}
