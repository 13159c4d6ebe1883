//! The read-only web view (`trialwatch serve`, `[web] listen` in the daemon): the trial list,
//! trial pages with their timeline plot and diffs, recent changes, the Atom feeds, and JSON
//! under `/api/` in exactly the shapes of the CLI's `--json` (the CLI's own commands produce
//! it, through [`Runner`]).
//!
//! Only GET (and HEAD) exist; every response carries an `ETag` with `Cache-Control: no-cache`
//! (a reader revalidates and gets `304 Not Modified` while nothing changed), a strict
//! `Content-Security-Policy` (no script at all: the pages need none) and `nosniff`. Every piece
//! of CT.gov text is escaped ([`html::esc`]). Binding to loopback is the callers' default.
//!
//! `pages.rs` renders the pages; [`plot`] draws the timeline; [`html`] holds the helpers.

pub mod html;
mod pages;
pub mod plot;

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use sha2::{Digest, Sha256};

use crate::model::NctId;
use crate::store::Store;

/// Runs a CLI command (its arguments without `argv[0]`) on the server's store and returns its
/// standard output, or the error message the CLI would print. The CLI provides it, so the
/// `/api/` answers and the pages are made by the commands themselves.
pub type Runner = Arc<dyn Fn(Vec<String>) -> Result<Vec<u8>, String> + Send + Sync>;

/// What the server needs: the open store, the command runner, and its list cache.
pub struct Web {
    store: Store,
    run: Runner,
    /// The list page's rows, by trial, with the state they were made from: a row is made
    /// again only when its trial's stored state changed.
    rows: Mutex<HashMap<NctId, (String, pages::ListRow)>>,
}

impl Web {
    /// A web view of `store`; `run` executes the CLI's commands on it.
    pub fn new(store: Store, run: Runner) -> Arc<Web> {
        Arc::new(Web {
            store,
            run,
            rows: Mutex::new(HashMap::new()),
        })
    }

    /// Make the list page's rows now, into this server's cache and the store, so that no
    /// request pays for them: on a store the view never listed that decodes each trial's head
    /// once (about 2 s at 10,000 trials), on later starts it reads the rows the store kept.
    pub fn warm(&self) {
        if let Err(e) = pages::rows(self) {
            tracing::warn!(error = %format!("{e:#}"), "could not prepare the trial list; pages make it on demand");
        }
    }

    fn run(&self, args: &[&str]) -> Result<Vec<u8>, String> {
        (self.run)(args.iter().map(|s| s.to_string()).collect())
    }
}

/// The routes, for [`serve`] and for benchmarks that call pages directly.
pub fn router(web: Arc<Web>) -> Router {
    Router::new()
        .route("/", get(list))
        .route("/trials/{nct}", get(trial))
        .route("/changes", get(changes))
        .route("/feeds/{name}", get(feed))
        .route("/api/history/{nct}", get(api_history))
        .route("/api/show/{nct}", get(api_show))
        .route("/api/diff/{nct}", get(api_diff))
        .route("/api/changes", get(api_changes))
        .route("/api/status", get(api_status))
        .fallback(not_found)
        .with_state(web)
}

/// Serve the web view on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    web: Arc<Web>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(web))
        .with_graceful_shutdown(shutdown)
        .await
}

/// A page or document, as the handlers hand it to [`reply`].
pub(crate) struct Doc {
    status: StatusCode,
    content_type: &'static str,
    body: Vec<u8>,
}

const HTML: &str = "text/html; charset=utf-8";
const JSON: &str = "application/json";
const ATOM: &str = "application/atom+xml; charset=utf-8";

impl Doc {
    fn html(status: StatusCode, body: String) -> Doc {
        Doc {
            status,
            content_type: HTML,
            body: body.into_bytes(),
        }
    }
}

fn reply(headers: &HeaderMap, doc: Doc) -> Response {
    let etag = format!("\"{}\"", hex::encode(&Sha256::digest(&doc.body)[..12]));
    let matches = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    let mut resp = if matches && doc.status == StatusCode::OK {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        (doc.status, doc.body).into_response()
    };
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(doc.content_type),
    );
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    resp
}

/// Run a page renderer on a blocking thread (the store is synchronous).
async fn blocking(
    web: Arc<Web>,
    headers: HeaderMap,
    f: impl FnOnce(&Web) -> Doc + Send + 'static,
) -> Response {
    match tokio::task::spawn_blocking(move || f(&web)).await {
        Ok(doc) => reply(&headers, doc),
        Err(_) => reply(
            &headers,
            Doc::html(
                StatusCode::INTERNAL_SERVER_ERROR,
                pages::error_page("Internal error", "The page could not be made."),
            ),
        ),
    }
}

type Params = Query<HashMap<String, String>>;

async fn list(State(web): State<Arc<Web>>, headers: HeaderMap, Query(q): Params) -> Response {
    blocking(web, headers, move |w| pages::list(w, &q)).await
}

async fn trial(
    State(web): State<Arc<Web>>,
    headers: HeaderMap,
    Path(nct): Path<String>,
) -> Response {
    blocking(web, headers, move |w| pages::trial(w, &nct)).await
}

async fn changes(State(web): State<Arc<Web>>, headers: HeaderMap, Query(q): Params) -> Response {
    blocking(web, headers, move |w| pages::changes(w, &q)).await
}

async fn feed(
    State(web): State<Arc<Web>>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Response {
    blocking(web, headers, move |w| pages::feed(w, &name)).await
}

/// `/api/…`: the CLI command's JSON as it printed it; its error as `{"error": …}`.
async fn api(web: Arc<Web>, headers: HeaderMap, args: Vec<String>) -> Response {
    blocking(web, headers, move |w| match (w.run)(args) {
        Ok(body) => Doc {
            status: StatusCode::OK,
            content_type: JSON,
            body,
        },
        Err(e) => {
            let status = if e.contains("is not in the store") || e.contains("no stored version") {
                StatusCode::NOT_FOUND
            } else {
                StatusCode::BAD_REQUEST
            };
            let mut body =
                serde_json::to_vec(&serde_json::json!({ "error": e })).unwrap_or_default();
            body.push(b'\n');
            Doc {
                status,
                content_type: JSON,
                body,
            }
        }
    })
    .await
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

async fn api_history(
    State(web): State<Arc<Web>>,
    headers: HeaderMap,
    Path(nct): Path<String>,
) -> Response {
    api(web, headers, args(&["history", &nct, "--json"])).await
}

async fn api_show(
    State(web): State<Arc<Web>>,
    headers: HeaderMap,
    Path(nct): Path<String>,
    Query(q): Params,
) -> Response {
    let mut a = args(&["show", &nct, "--format", "json"]);
    if let Some(v) = q.get("version") {
        a.extend(args(&["--version", v]));
    }
    api(web, headers, a).await
}

async fn api_diff(
    State(web): State<Arc<Web>>,
    headers: HeaderMap,
    Path(nct): Path<String>,
    Query(q): Params,
) -> Response {
    let mut a = args(&["diff", &nct, "--json"]);
    // Positional FROM and TO, as the CLI takes them; `--` keeps a value from being an option.
    match (q.get("from"), q.get("to")) {
        (Some(f), Some(t)) => a.extend(args(&["--", f, t])),
        (Some(f), None) => a.extend(args(&["--", f])),
        _ => {}
    }
    api(web, headers, a).await
}

async fn api_changes(
    State(web): State<Arc<Web>>,
    headers: HeaderMap,
    Query(q): Params,
) -> Response {
    let mut a = args(&["changes", "--json"]);
    for (key, flag) in [("since", "--since"), ("min_severity", "--min-severity")] {
        if let Some(v) = q.get(key) {
            a.push(format!("{flag}={v}"));
        }
    }
    if let Some(v) = q.get("nct") {
        a.push(format!("--nct={v}"));
    }
    for (key, flag) in [
        ("include_first", "--include-first"),
        ("include_backfill", "--include-backfill"),
    ] {
        if q.get(key).is_some_and(|v| v == "1" || v == "true") {
            a.push(flag.into());
        }
    }
    api(web, headers, a).await
}

async fn api_status(State(web): State<Arc<Web>>, headers: HeaderMap) -> Response {
    api(web, headers, args(&["status", "--json"])).await
}

async fn not_found(headers: HeaderMap) -> Response {
    reply(
        &headers,
        Doc::html(
            StatusCode::NOT_FOUND,
            pages::error_page(
                "Not found",
                "There is no such page. Start from the <a href=\"/\">list of trials</a>.",
            ),
        ),
    )
}
