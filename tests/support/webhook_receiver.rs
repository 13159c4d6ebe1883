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
