//! A real webhook receiver for tests: an axum server on `127.0.0.1:0` that records every
//! request (method, path, headers, body), checks the `X-Trialwatch-Signature` with its own
//! secret and its own HMAC code (not trialwatch's), and answers from a script of replies
//! (e.g. 500, 500, then 200), optionally after a delay.
//!
//! Self-contained so several test crates can include it:
//! `#[path = "support/webhook_receiver.rs"] mod webhook_receiver;`
#![allow(dead_code)]

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// One scripted answer.
#[derive(Clone, Debug)]
pub struct Reply {
    pub status: u16,
    /// Wait this long before answering (to test the sender's timeout).
    pub delay: Duration,
    /// Extra response headers, e.g. `Retry-After`.
    pub headers: Vec<(&'static str, String)>,
    pub body: String,
}

impl Reply {
    pub fn status(status: u16) -> Reply {
        Reply {
            status,
            delay: Duration::ZERO,
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
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
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
}

/// A running receiver; stops when dropped.
pub struct WebhookReceiver {
    pub addr: SocketAddr,
    inner: Arc<Mutex<Inner>>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

impl WebhookReceiver {
    /// Starts a receiver that answers 200 unless scripted otherwise.
    pub async fn start(secret: Option<&[u8]>) -> WebhookReceiver {
        let inner = Arc::new(Mutex::new(Inner {
            secret: secret.map(<[u8]>::to_vec),
            script: VecDeque::new(),
            fallback: Reply::status(200),
            requests: Vec::new(),
        }));
        let app = Router::new()
            .fallback(handle)
            .with_state(Arc::clone(&inner));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind webhook receiver");
        let addr = listener.local_addr().expect("local addr");
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await;
        });
        WebhookReceiver {
            addr,
            inner,
            shutdown: Some(tx),
        }
    }

    /// `http://127.0.0.1:<port><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Answers the next requests with `replies`, in order, then with the fallback (200).
    pub fn script(&self, replies: impl IntoIterator<Item = Reply>) {
        let mut inner = self.inner.lock().expect("receiver state");
        inner.script.extend(replies);
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.inner.lock().expect("receiver state").requests.clone()
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
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

async fn handle(
    State(inner): State<Arc<Mutex<Inner>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let reply = {
        let mut inner = inner.lock().expect("receiver state");
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
        });
        let fallback = inner.fallback.clone();
        inner.script.pop_front().unwrap_or(fallback)
    };
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
