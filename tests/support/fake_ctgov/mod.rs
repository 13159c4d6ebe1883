//! A fake ClinicalTrials.gov API v2 server for tests and benchmarks (the machine has no internet).
//!
//! Owns: a real HTTP server on `127.0.0.1:0` that answers the API v2 endpoints trialwatch uses
//! (`/api/v2/studies/{id}`, `/api/v2/studies?filter.ids=…`, `/api/v2/version`) the way CT.gov does
//! (see `docs/ctgov-api.md` §1–2), plus a thread-safe control API to load studies, add aliases,
//! queue faults and read back the requests it served. It does not own fixtures. Its search
//! (`query.cond/term/intr/spons/locn`, `filter.overallStatus`, `filter.advanced`, `fields`) is
//! in `search.rs`; other parameters get a 400 that says so, so a client that starts sending them
//! notices instead of silently getting full studies.
//!
//! It is part of the one test support module (`tests/support/mod.rs`), which the integration
//! tests and the benches include, and only uses crates from `[dependencies]`/`[dev-dependencies]`.
//! Its own tests are beside it in `tests.rs`. `FakeCtGov::start()` is
//! synchronous: the server runs its own tokio runtime on its own thread, so plain `#[test]`s that
//! spawn the `trialwatch` binary can use it as well as `#[tokio::test]`s. Dropping it stops it.
//!
//! Study bodies are stored as the raw bytes given to `put_study` and are never re-serialized, so a
//! list page is just the stored bodies joined with commas (fast enough for 10,000 × 30 KB studies).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

/// CT.gov's largest page; bigger `pageSize` values are cut to this.
const MAX_PAGE_SIZE: usize = 1000;
/// CT.gov's page size when `pageSize` is absent or 0.
const DEFAULT_PAGE_SIZE: usize = 10;
/// The `dataTimestamp` served until `set_data_timestamp` changes it (a value seen live).
const DEFAULT_DATA_TIMESTAMP: &str = "2026-09-04T09:00:06";

/// A misbehaviour to serve instead of (or before) the normal answer; queued with
/// [`FakeCtGov::push_fault`] and consumed by the next matching request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Answer this status with this `text/plain` body (e.g. `Status(400, "…")`, `Status(408, "")`).
    Status(u16, String),
    /// 429, with a `Retry-After: <secs>` header when given.
    TooManyRequests { retry_after_secs: Option<u64> },
    /// 500 `Internal Server Error`.
    ServerError,
    /// 200 with an HTML error page (`content-type: text/html`), as CT.gov's front end sometimes sends.
    Html,
    /// 200 with the normal answer's body cut in half (valid HTTP, broken JSON).
    Truncated,
    /// Wait this long, then answer normally (to trip a client's timeout).
    Delay(Duration),
    /// For list requests only: `{"studies":[]}` with a `nextPageToken` that continues where this
    /// page would have started, as real CT.gov sometimes does. Other requests skip this fault.
    EmptyPage,
    /// For list requests only: `{"studies":[]}` whose `nextPageToken` is always `tw-same-token`,
    /// whatever token was sent (a server going round in circles). Queue several.
    SameNextToken,
    /// For list requests only: `{"studies":[]}` with a fresh `nextPageToken` each time, whatever
    /// token was sent (paging that never ends). Queue several.
    EndlessPages,
    /// 200 `application/json` with `Content-Encoding: gzip` and a [`gzip_bomb`] body: ~13 MB
    /// that inflate to 2 GiB of zero bytes.
    GzipBomb,
    /// 302 with `Location:` this absolute URL (e.g. on another port).
    RedirectTo(String),
}

/// A gzip stream of ~13.5 MB that inflates to 2 GiB of zero bytes: one fixed-Huffman deflate
/// block of a literal 0 followed by length-258/distance-1 matches (13 bits each, so 8 matches
/// are 13 bytes and the block is one 13-byte pattern repeated). The stream has no end (no final
/// block, no trailer): a client that reads all of it fails on the cut, one that caps what it
/// decodes stops long before. Built once per process.
pub fn gzip_bomb() -> Bytes {
    static BOMB: std::sync::OnceLock<Bytes> = std::sync::OnceLock::new();
    BOMB.get_or_init(|| {
        let mut bits = BitWriter::default();
        bits.put(0, 1); // BFINAL = 0
        bits.put(1, 2); // BTYPE = 01, fixed Huffman
        bits.put_code(0b0011_0000, 8); // literal 0
        for _ in 0..24 {
            bits.put_code(0b1100_0101, 8); // length 258 (symbol 285), no extra bits
            bits.put_code(0, 5); // distance 1 (code 0), no extra bits
        }
        let bytes = bits.bytes;
        // Bits 0..11 are the header and the literal; from byte 2 on, the 13-byte period.
        let (prefix, unit) = (&bytes[..2], &bytes[2..15]);
        debug_assert_eq!(&bytes[15..28], unit);
        let units = (2usize << 30) / (8 * 258);
        let mut out = Vec::with_capacity(10 + 2 + units * unit.len());
        out.extend_from_slice(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255]);
        out.extend_from_slice(prefix);
        for _ in 0..units {
            out.extend_from_slice(unit);
        }
        Bytes::from(out)
    })
    .clone()
}

/// Packs bits LSB-first, as deflate does.
#[derive(Default)]
struct BitWriter {
    bytes: Vec<u8>,
    used: u32,
}

impl BitWriter {
    /// `n` bits of `value`, least significant first (header fields, extra bits).
    fn put(&mut self, value: u32, n: u32) {
        for i in 0..n {
            if self.used.is_multiple_of(8) {
                self.bytes.push(0);
            }
            if (value >> i) & 1 == 1 {
                let last = self.bytes.len() - 1;
                self.bytes[last] |= 1 << (self.used % 8);
            }
            self.used += 1;
        }
    }

    /// A Huffman code of `n` bits, most significant first.
    fn put_code(&mut self, code: u32, n: u32) {
        for i in (0..n).rev() {
            self.put((code >> i) & 1, 1);
        }
    }
}

impl Fault {
    fn applies_to(&self, route: &Route) -> bool {
        match self {
            Fault::EmptyPage | Fault::SameNextToken | Fault::EndlessPages => {
                matches!(route, Route::List)
            }
            _ => true,
        }
    }
}

/// One request as the fake saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedRequest {
    /// Path and query exactly as sent (still percent-encoded), e.g. `/api/v2/studies?filter.ids=…`.
    pub path_and_query: String,
    /// The `User-Agent` header, to check that the client identifies itself.
    pub user_agent: Option<String>,
}

/// Handle to a running fake server; dropping it stops the server.
pub struct FakeCtGov {
    /// Shared with the request handlers; every control method locks it briefly.
    shared: Arc<Shared>,
    /// The bound address (port chosen by the OS).
    addr: SocketAddr,
    /// Fires to stop serving; `None` once sent.
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    /// The server thread, joined on drop so the port is released before the next test binds.
    thread: Option<JoinHandle<()>>,
}

struct Shared {
    /// `http://127.0.0.1:PORT`, used for absolute `Location` headers.
    base_url: String,
    state: Mutex<Inner>,
}

/// One stored study.
struct Entry {
    /// The body exactly as given (outer whitespace trimmed), served as is.
    raw: Bytes,
    /// `identificationModule.nctIdAliases` as numbers, to keep the alias index in step.
    aliases: Vec<u32>,
    /// `statusModule.lastUpdatePostDateStruct.date`, for `AREA[LastUpdatePostDate]RANGE[…]`.
    last_update: Option<String>,
    /// What a search reads of it, built on its first search.
    search: std::sync::OnceLock<search::SearchIndex>,
}

impl Entry {
    fn index(&self) -> &search::SearchIndex {
        self.search
            .get_or_init(|| search::SearchIndex::build(&self.raw))
    }
}

/// Where a page token points: which query it belongs to and where the next page starts.
struct TokenState {
    /// The first request's parameters (except paging ones); later pages must repeat them.
    signature: Vec<(String, String)>,
    offset: usize,
}

#[derive(Default)]
struct Inner {
    /// Studies by NCT number; the BTreeMap gives list answers a stable order.
    studies: BTreeMap<u32, Entry>,
    /// Aliases read from the studies' own `nctIdAliases`: alias number → canonical number.
    body_aliases: HashMap<u32, u32>,
    /// Aliases added with `add_alias` (take precedence over `body_aliases`).
    explicit_aliases: HashMap<u32, u32>,
    /// IDs answered with 400 "incorrect format" although they are well-formed (`reject_id`).
    rejected: HashSet<u32>,
    data_timestamp: String,
    /// Queued faults with their optional path+query filter, consumed first-match-first.
    faults: VecDeque<(Option<String>, Fault)>,
    requests: Vec<RecordedRequest>,
    tokens: HashMap<String, TokenState>,
    /// Cap on the page size actually served (CT.gov's is 1000); lower it to force paging.
    max_page_size: usize,
    /// Source of opaque page tokens.
    rng: Option<fastrand::Rng>,
    /// Record histories (`/api/int/studies/{id}/history[/{v}]`) by NCT number.
    histories: HashMap<u32, History>,
}

/// One study's record history as the website's internal endpoints serve it.
struct History {
    /// The index body, served as is.
    index: Bytes,
    /// Version bodies (`{"studyVersion":v,"study":…}`) by version number.
    versions: BTreeMap<u32, Bytes>,
}

impl FakeCtGov {
    /// Binds `127.0.0.1:0` and starts serving on a thread with its own tokio runtime.
    ///
    /// # Panics
    /// If the socket cannot be bound or the runtime cannot be built (a broken test machine).
    pub fn start() -> Self {
        let std_listener =
            std::net::TcpListener::bind("127.0.0.1:0").expect("fake CT.gov: bind 127.0.0.1:0");
        std_listener
            .set_nonblocking(true)
            .expect("fake CT.gov: set_nonblocking");
        let addr = std_listener.local_addr().expect("fake CT.gov: local_addr");
        let shared = Arc::new(Shared {
            base_url: format!("http://{addr}"),
            state: Mutex::new(Inner {
                data_timestamp: DEFAULT_DATA_TIMESTAMP.to_string(),
                max_page_size: MAX_PAGE_SIZE,
                rng: Some(fastrand::Rng::with_seed(u64::from(addr.port()))),
                ..Inner::default()
            }),
        });
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let app = Router::new()
            .fallback(handle)
            .with_state(Arc::clone(&shared));
        let thread = std::thread::Builder::new()
            .name(format!("fake-ctgov-{}", addr.port()))
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .expect("fake CT.gov: tokio runtime");
                rt.block_on(async move {
                    let listener = tokio::net::TcpListener::from_std(std_listener)
                        .expect("fake CT.gov: tokio listener");
                    // Not a graceful shutdown: a request stuck in `Fault::Delay` must not hold up
                    // the test. Dropping the runtime below cancels the connection tasks.
                    tokio::select! {
                        res = axum::serve(listener, app) => {
                            if let Err(err) = res {
                                eprintln!("fake CT.gov stopped: {err}");
                            }
                        }
                        _ = stop_rx => {}
                    }
                });
                rt.shutdown_timeout(Duration::from_millis(100));
            })
            .expect("fake CT.gov: spawn server thread");
        FakeCtGov {
            shared,
            addr,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }

    /// `http://127.0.0.1:PORT`; the API lives under `{base_url}/api/v2`.
    pub fn base_url(&self) -> String {
        self.shared.base_url.clone()
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.shared.lock()
    }

    /// Stores (or replaces) a study, keyed by `protocolSection.identificationModule.nctId`. Its
    /// `nctIdAliases` are indexed too. Returns the canonical ID (`NCT` + 8 digits).
    ///
    /// # Panics
    /// If the body is not JSON or has no valid `nctId` (a broken fixture).
    pub fn put_study(&self, raw: impl Into<String>) -> String {
        let raw: String = raw.into();
        let head: StudyHead = serde_json::from_str(&raw)
            .unwrap_or_else(|e| panic!("fake CT.gov: put_study body is not study JSON: {e}"));
        let id = head.protocol_section.identification_module;
        let nct = id.nct_id.as_deref().and_then(parse_nct_number).expect(
            "fake CT.gov: put_study body has no valid protocolSection.identificationModule.nctId",
        );
        let aliases: Vec<u32> = id
            .nct_id_aliases
            .iter()
            .filter_map(|a| parse_nct_number(a))
            .collect();
        let last_update = head
            .protocol_section
            .status_module
            .last_update_post_date_struct
            .and_then(|d| d.date);
        let trimmed = raw.trim();
        let bytes = if trimmed.len() == raw.len() {
            Bytes::from(raw)
        } else {
            Bytes::copy_from_slice(trimmed.as_bytes())
        };
        let mut st = self.lock();
        st.remove(nct);
        for &a in &aliases {
            st.body_aliases.insert(a, nct);
        }
        st.studies.insert(
            nct,
            Entry {
                raw: bytes,
                aliases,
                last_update,
                search: Default::default(),
            },
        );
        canonical(nct)
    }

    /// Stores `raw` under `id` exactly as given, without reading it: it may be broken JSON, not
    /// UTF-8, or another study's body, so a test can serve what CT.gov should never send. The
    /// single-study endpoint and `filter.ids` answer it for `id`; it declares no aliases.
    ///
    /// # Panics
    /// If `id` is malformed (a broken test).
    pub fn put_study_bytes(&self, id: &str, raw: impl Into<Vec<u8>>) {
        let nct = parse_nct_number(id).expect("fake CT.gov: put_study_bytes: bad ID");
        let mut st = self.lock();
        st.remove(nct);
        st.studies.insert(
            nct,
            Entry {
                raw: Bytes::from(raw.into()),
                aliases: Vec::new(),
                last_update: None,
                search: Default::default(),
            },
        );
    }

    /// Like [`put_study_bytes`](Self::put_study_bytes), listed by `LastUpdatePostDate` queries
    /// as updated on `date` (`YYYY-MM-DD`): a broken study in an incremental answer.
    pub fn put_study_bytes_updated(&self, id: &str, raw: impl Into<Vec<u8>>, date: &str) {
        self.put_study_bytes(id, raw);
        let nct = parse_nct_number(id).expect("fake CT.gov: put_study_bytes_updated: bad ID");
        if let Some(e) = self.lock().studies.get_mut(&nct) {
            e.last_update = Some(date.to_string());
        }
    }

    /// Stores many studies (see [`put_study`](Self::put_study)); returns their canonical IDs.
    pub fn put_studies<I, S>(&self, raws: I) -> Vec<String>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        raws.into_iter().map(|r| self.put_study(r)).collect()
    }

    /// Removes a study (and the aliases its body declared); later requests get 404.
    /// Returns whether it was there.
    pub fn remove_study(&self, id: &str) -> bool {
        let Some(n) = parse_nct_number(id) else {
            return false;
        };
        self.lock().remove(n).is_some()
    }

    /// Makes `alias` an alias of `canonical` without touching the stored body: the single-study
    /// endpoint answers 301 to the canonical study and `filter.ids` matches it. (To exercise
    /// clients that read `nctIdAliases`, put a body that lists the alias instead.)
    ///
    /// # Panics
    /// If either ID is malformed.
    pub fn add_alias(&self, alias: &str, canonical: &str) {
        let a = parse_nct_number(alias).expect("fake CT.gov: add_alias: bad alias ID");
        let c = parse_nct_number(canonical).expect("fake CT.gov: add_alias: bad canonical ID");
        self.lock().explicit_aliases.insert(a, c);
    }

    /// Makes CT.gov reject a well-formed ID as malformed (400 "… has incorrect format"), on both
    /// endpoints, as the live API does for some IDs in `filter.ids` (`docs/ctgov-api.md` §1.2
    /// caveat).
    ///
    /// # Panics
    /// If the ID is not even well-formed (those are rejected anyway).
    pub fn reject_id(&self, id: &str) {
        let n = parse_nct_number(id).expect("fake CT.gov: reject_id: malformed ID");
        self.lock().rejected.insert(n);
    }

    /// Undoes [`FakeCtGov::reject_id`]: the ID is served normally again (CT.gov recovered).
    pub fn accept_id(&self, id: &str) {
        if let Some(n) = parse_nct_number(id) {
            self.lock().rejected.remove(&n);
        }
    }

    /// Sets the `dataTimestamp` that `/api/v2/version` reports.
    pub fn set_data_timestamp(&self, ts: impl Into<String>) {
        self.lock().data_timestamp = ts.into();
    }

    /// Caps the page size actually served (default 1000, like CT.gov), to force token paging.
    pub fn set_max_page_size(&self, n: usize) {
        self.lock().max_page_size = n.clamp(1, MAX_PAGE_SIZE);
    }

    /// Stores (or replaces) a study's record history: `versions[i]` is CT.gov version `i`, posted
    /// on the given day (`YYYY-MM-DD`), its study JSON as the history serves it (HTML markup;
    /// see `support::website_html::history_study`). Each is served wrapped as
    /// `{"studyVersion":i,"study":…}` (the study's bytes as given) and the index is built from
    /// them like CT.gov's: `status` from `statusModule.overallStatus`, `moduleLabels` empty for
    /// version 0 and naming the modules that changed from the version before for the others,
    /// `lastUpdateVersions.primaryOutcomes` the last version whose primary outcomes changed (0
    /// if none), `originalData.primaryOutcomes` version 0's, with `primaryOutcomesSame: true`
    /// when version 0's primary outcomes equal the last version's. The API v2 study
    /// (`put_study`) is not touched. Returns the canonical ID.
    ///
    /// # Panics
    /// On a malformed ID, date or study JSON (a broken test).
    pub fn put_history<D: AsRef<str>>(&self, id: &str, versions: Vec<(D, String)>) -> String {
        let n = parse_nct_number(id).expect("fake CT.gov: put_history: bad ID");
        let studies: Vec<(String, serde_json::Value, String)> = versions
            .into_iter()
            .map(|(d, raw)| {
                let date = d.as_ref().to_string();
                assert!(
                    chrono::NaiveDate::parse_from_str(&date, "%Y-%m-%d").is_ok(),
                    "fake CT.gov: put_history: `{date}` is not YYYY-MM-DD"
                );
                let v: serde_json::Value = serde_json::from_str(&raw)
                    .unwrap_or_else(|e| panic!("fake CT.gov: put_history: not JSON: {e}"));
                (date, v, raw)
            })
            .collect();
        let index = history_index(&studies);
        let versions = studies
            .iter()
            .enumerate()
            .map(|(i, (_, _, raw))| {
                let body = format!("{{\"studyVersion\":{i},\"study\":{}}}", raw.trim());
                (i as u32, Bytes::from(body))
            })
            .collect();
        self.lock().histories.insert(
            n,
            History {
                index: Bytes::from(index.to_string()),
                versions,
            },
        );
        canonical(n)
    }

    /// Replaces the history index body of a study with `body`, served as is (for odd indexes:
    /// `{}`, `{"changes":[]}`, `{"changes":null}`); its versions, if any, stay.
    ///
    /// # Panics
    /// On a malformed ID.
    pub fn put_history_index_raw(&self, id: &str, body: impl Into<String>) {
        let n = parse_nct_number(id).expect("fake CT.gov: put_history_index_raw: bad ID");
        let body = Bytes::from(body.into());
        let mut st = self.lock();
        match st.histories.get_mut(&n) {
            Some(h) => h.index = body,
            None => {
                st.histories.insert(
                    n,
                    History {
                        index: body,
                        versions: BTreeMap::new(),
                    },
                );
            }
        }
    }

    /// Forgets a study's record history; later history requests for it get 404.
    pub fn remove_history(&self, id: &str) -> bool {
        parse_nct_number(id).is_some_and(|n| self.lock().histories.remove(&n).is_some())
    }

    /// Queues a fault for the next request it applies to (faults are consumed in order).
    pub fn push_fault(&self, fault: Fault) {
        self.lock().faults.push_back((None, fault));
    }

    /// Queues a fault for the next request whose path+query (as sent, percent-encoded) contains
    /// `path_contains`, e.g. an NCT ID or `pageToken=`.
    pub fn push_fault_for(&self, path_contains: &str, fault: Fault) {
        self.lock()
            .faults
            .push_back((Some(path_contains.to_string()), fault));
    }

    /// Faults still queued (to assert that a test consumed all it set up).
    pub fn pending_faults(&self) -> usize {
        self.lock().faults.len()
    }

    /// Path+query of every request served so far, in arrival order.
    pub fn requests(&self) -> Vec<String> {
        self.lock()
            .requests
            .iter()
            .map(|r| r.path_and_query.clone())
            .collect()
    }

    /// Every request served so far, with the headers tests care about.
    pub fn recorded(&self) -> Vec<RecordedRequest> {
        self.lock().requests.clone()
    }

    pub fn clear_requests(&self) {
        self.lock().requests.clear();
    }
}

impl Drop for FakeCtGov {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The decoded NCT IDs of `filter.ids` in a recorded request (both `,` and `|` separate them),
/// for tests asserting how a client batched.
pub fn filter_ids_of(path_and_query: &str) -> Vec<String> {
    let Ok(uri) = path_and_query.parse::<Uri>() else {
        return Vec::new();
    };
    let Ok(Query(params)) = Query::<Vec<(String, String)>>::try_from_uri(&uri) else {
        return Vec::new();
    };
    params
        .iter()
        .filter(|(k, _)| k == "filter.ids")
        .flat_map(|(_, v)| split_ids(v).map(str::to_string).collect::<Vec<_>>())
        .collect()
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock (in a test thread) must not cascade into every later
        // request; the state is still usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Inner {
    fn remove(&mut self, n: u32) -> Option<Entry> {
        let old = self.studies.remove(&n)?;
        for a in &old.aliases {
            if self.body_aliases.get(a) == Some(&n) {
                self.body_aliases.remove(a);
            }
        }
        Some(old)
    }

    /// The stored study a requested number designates, directly or through an alias.
    fn resolve(&self, n: u32) -> Option<u32> {
        if self.studies.contains_key(&n) {
            return Some(n);
        }
        self.explicit_aliases
            .get(&n)
            .or_else(|| self.body_aliases.get(&n))
            .copied()
            .filter(|c| self.studies.contains_key(c))
    }

    fn take_fault(&mut self, path_and_query: &str, route: &Route) -> Option<Fault> {
        let pos = self.faults.iter().position(|(filter, fault)| {
            fault.applies_to(route)
                && filter
                    .as_deref()
                    .is_none_or(|needle| path_and_query.contains(needle))
        })?;
        self.faults.remove(pos).map(|(_, f)| f)
    }

    fn new_token(&mut self, signature: Vec<(String, String)>, offset: usize) -> String {
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let rng = self.rng.get_or_insert_with(fastrand::Rng::new);
        loop {
            let token: String = (0..48)
                .map(|_| char::from(ALPHABET[rng.usize(..ALPHABET.len())]))
                .collect();
            if !self.tokens.contains_key(&token) {
                self.tokens
                    .insert(token.clone(), TokenState { signature, offset });
                return token;
            }
        }
    }
}

/// Which endpoint a request is for.
enum Route {
    Study(String),
    List,
    Version,
    /// `/api/int/studies/{id}/history`.
    HistoryIndex(String),
    /// `/api/int/studies/{id}/history/{v}` (`v` as sent).
    HistoryVersion(String, String),
    Unknown,
}

fn route_of(path: &str) -> Route {
    if let Some(rest) = path.strip_prefix("/api/int/studies/") {
        let parts: Vec<&str> = rest.split('/').collect();
        return match parts.as_slice() {
            [id, "history"] if !id.is_empty() => Route::HistoryIndex((*id).to_string()),
            [id, "history", v] if !id.is_empty() && !v.is_empty() => {
                Route::HistoryVersion((*id).to_string(), (*v).to_string())
            }
            _ => Route::Unknown,
        };
    }
    match path.strip_prefix("/api/v2") {
        Some("/studies") => Route::List,
        Some("/version") => Route::Version,
        Some(rest) => match rest.strip_prefix("/studies/") {
            Some(id) if !id.is_empty() && !id.contains('/') => Route::Study(id.to_string()),
            _ => Route::Unknown,
        },
        None => Route::Unknown,
    }
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let path_and_query = uri
        .path_and_query()
        .map_or_else(|| uri.path().to_string(), |pq| pq.as_str().to_string());
    let route = route_of(uri.path());
    let fault = {
        let mut st = shared.lock();
        st.requests.push(RecordedRequest {
            path_and_query: path_and_query.clone(),
            user_agent: headers
                .get(header::USER_AGENT)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string),
        });
        st.take_fault(&path_and_query, &route)
    };
    if method != Method::GET {
        return text(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed");
    }
    match fault {
        None => answer(&shared, &route, &uri, false),
        Some(Fault::Status(code, body)) => {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            text(status, body)
        }
        Some(Fault::TooManyRequests { retry_after_secs }) => {
            let mut resp = text(StatusCode::TOO_MANY_REQUESTS, "Too Many Requests");
            if let Some(secs) = retry_after_secs {
                resp.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(secs));
            }
            resp
        }
        Some(Fault::ServerError) => {
            text(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error")
        }
        Some(Fault::Html) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            HTML_ERROR_PAGE,
        )
            .into_response(),
        Some(Fault::Truncated) => {
            let full = answer(&shared, &route, &uri, false);
            let (parts, body) = full.into_parts();
            let bytes = axum::body::to_bytes(body, usize::MAX)
                .await
                .unwrap_or_default();
            let mut parts = parts;
            parts.headers.remove(header::CONTENT_LENGTH);
            Response::from_parts(parts, Body::from(bytes.slice(..bytes.len() / 2)))
        }
        Some(Fault::Delay(d)) => {
            tokio::time::sleep(d).await;
            answer(&shared, &route, &uri, false)
        }
        Some(Fault::EmptyPage) => answer(&shared, &route, &uri, true),
        Some(Fault::SameNextToken) => json(Bytes::from_static(
            br#"{"studies":[],"nextPageToken":"tw-same-token"}"#,
        )),
        Some(Fault::EndlessPages) => {
            let token = shared.lock().new_token(Vec::new(), 0);
            json(format!(r#"{{"studies":[],"nextPageToken":"{token}"}}"#).into())
        }
        Some(Fault::GzipBomb) => (
            StatusCode::OK,
            [
                (header::CONTENT_TYPE, "application/json"),
                (header::CONTENT_ENCODING, "gzip"),
            ],
            gzip_bomb(),
        )
            .into_response(),
        Some(Fault::RedirectTo(location)) => (
            StatusCode::FOUND,
            [
                (header::LOCATION, location.as_str()),
                (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            ],
            "Found",
        )
            .into_response(),
    }
}

fn answer(shared: &Shared, route: &Route, uri: &Uri, empty_page: bool) -> Response {
    match route {
        Route::Study(id) => study(shared, id, uri),
        Route::List => list(shared, uri, empty_page),
        Route::Version => {
            let ts = shared.lock().data_timestamp.clone();
            json(
                serde_json::json!({"apiVersion": "2.0.5", "dataTimestamp": ts})
                    .to_string()
                    .into(),
            )
        }
        Route::HistoryIndex(id) => history(shared, id, None),
        Route::HistoryVersion(id, v) => history(shared, id, Some(v)),
        Route::Unknown => text(StatusCode::NOT_FOUND, "not found"),
    }
}

/// `GET /api/int/studies/{id}/history[/{v}]`: the stored index or version body; 404 with a
/// short text for an unknown study or version (the internal API has no 400s we know of).
fn history(shared: &Shared, id: &str, version: Option<&str>) -> Response {
    let st = shared.lock();
    let Some(h) = parse_nct_number(id).and_then(|n| st.histories.get(&n)) else {
        return text(StatusCode::NOT_FOUND, format!("Study {id} not found"));
    };
    match version {
        None => json(h.index.clone()),
        Some(v) => match v.parse::<u32>().ok().and_then(|v| h.versions.get(&v)) {
            Some(body) => json(body.clone()),
            None => text(
                StatusCode::NOT_FOUND,
                format!("Version {v} of study {id} not found"),
            ),
        },
    }
}

/// CT.gov's section label for a protocol module, as the history index's `moduleLabels` say.
fn module_label(module: &str) -> String {
    match module {
        "identificationModule" => "Study Identification".into(),
        "statusModule" => "Study Status".into(),
        "sponsorCollaboratorsModule" => "Sponsor/Collaborators".into(),
        "oversightModule" => "Oversight".into(),
        "descriptionModule" => "Study Description".into(),
        "conditionsModule" => "Conditions".into(),
        "designModule" => "Study Design".into(),
        "armsInterventionsModule" => "Arms and Interventions".into(),
        "outcomesModule" => "Outcome Measures".into(),
        "eligibilityModule" => "Eligibility".into(),
        "contactsLocationsModule" => "Contacts/Locations".into(),
        "referencesModule" => "References".into(),
        "ipdSharingStatementModule" => "IPD Sharing Statement".into(),
        other => other.to_string(),
    }
}

/// The history index for `(date, study)` versions 0, 1, …, built as [`FakeCtGov::put_history`]
/// documents.
fn history_index(studies: &[(String, serde_json::Value, String)]) -> serde_json::Value {
    use serde_json::{Value, json};
    let ps = |s: &Value| s.get("protocolSection").cloned().unwrap_or(Value::Null);
    let outcomes = |s: &Value| ps(s)["outcomesModule"]["primaryOutcomes"].clone();
    let mut changes = Vec::new();
    let mut last_outcomes_change = 0usize;
    for (i, (date, study, _)) in studies.iter().enumerate() {
        let mut labels: Vec<String> = Vec::new();
        if i > 0 {
            let (before, now) = (ps(&studies[i - 1].1), ps(study));
            let mut keys: BTreeSet<&String> = BTreeSet::new();
            for side in [&before, &now] {
                if let Some(m) = side.as_object() {
                    keys.extend(m.keys());
                }
            }
            labels = keys
                .into_iter()
                .filter(|k| before.get(k.as_str()) != now.get(k.as_str()))
                .map(|k| module_label(k))
                .collect();
            if outcomes(&studies[i - 1].1) != outcomes(study) {
                last_outcomes_change = i;
            }
        }
        let mut entry = json!({"version": i, "date": date, "moduleLabels": labels});
        if let Some(status) = ps(study)["statusModule"]["overallStatus"].as_str() {
            entry["status"] = json!(status);
        }
        changes.push(entry);
    }
    let mut original = json!({});
    if let (Some(first), Some(last)) = (studies.first(), studies.last()) {
        original["primaryOutcomes"] = outcomes(&first.1);
        if outcomes(&first.1) == outcomes(&last.1) {
            original["primaryOutcomesSame"] = json!(true);
        }
    }
    json!({
        "changes": changes,
        "lastUpdateVersions": {"primaryOutcomes": last_outcomes_change},
        "originalData": original,
    })
}

/// `GET /api/v2/studies/{id}`.
fn study(shared: &Shared, id: &str, uri: &Uri) -> Response {
    if let Err(msg) = query_params(uri).and_then(|p| check_params(&p, &[])) {
        return text(StatusCode::BAD_REQUEST, msg);
    }
    let Some(n) = parse_nct_number(id) else {
        return text(
            StatusCode::BAD_REQUEST,
            "Parameter `nctId` has incorrect format",
        );
    };
    let st = shared.lock();
    if st.rejected.contains(&n) {
        return text(
            StatusCode::BAD_REQUEST,
            "Parameter `nctId` has incorrect format",
        );
    }
    if let Some(entry) = st.studies.get(&n) {
        return json(entry.raw.clone());
    }
    match st.resolve(n) {
        Some(c) => {
            let query = uri.query().map(|q| format!("?{q}")).unwrap_or_default();
            let location = format!("{}/api/v2/studies/{}{query}", shared.base_url, canonical(c));
            let mut resp = text(StatusCode::MOVED_PERMANENTLY, "Moved Permanently");
            if let Ok(v) = HeaderValue::from_str(&location) {
                resp.headers_mut().insert(header::LOCATION, v);
            }
            resp
        }
        None => text(StatusCode::NOT_FOUND, format!("NCT number {id} not found")),
    }
}

/// `GET /api/v2/studies` with `filter.ids` and/or `filter.advanced`, paged.
fn list(shared: &Shared, uri: &Uri, empty_page: bool) -> Response {
    let list_params = [
        "filter.ids",
        "filter.advanced",
        "query.term",
        "query.cond",
        "query.intr",
        "query.spons",
        "query.locn",
        "filter.overallStatus",
        "fields",
        "pageSize",
        "pageToken",
        "countTotal",
    ];
    let params = match query_params(uri).and_then(|p| check_params(&p, &list_params).map(|()| p)) {
        Ok(p) => p,
        Err(msg) => return text(StatusCode::BAD_REQUEST, msg),
    };
    let get = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };

    let page_size = match get("pageSize") {
        None => DEFAULT_PAGE_SIZE,
        Some(v) => match v.trim().parse::<usize>() {
            Ok(0) => DEFAULT_PAGE_SIZE,
            Ok(n) => n.min(MAX_PAGE_SIZE),
            Err(_) => {
                return text(
                    StatusCode::BAD_REQUEST,
                    "Parameter `pageSize` has incorrect format",
                );
            }
        },
    };
    let count_total = match get("countTotal") {
        None => false,
        Some(v) if v.eq_ignore_ascii_case("true") => true,
        Some(v) if v.eq_ignore_ascii_case("false") => false,
        Some(_) => {
            return text(
                StatusCode::BAD_REQUEST,
                "Parameter `countTotal` has incorrect format",
            );
        }
    };

    // Parse the filters before touching the store, so a bad request fails whole.
    let mut wanted: Option<Vec<u32>> = None;
    if let Some(ids) = get("filter.ids") {
        let mut nums = Vec::new();
        for (i, item) in split_ids(ids).enumerate() {
            match parse_nct_number(item) {
                Some(n) => nums.push(n),
                None => {
                    return text(
                        StatusCode::BAD_REQUEST,
                        format!(
                            "Item {} in parameter `filter.ids` has incorrect format",
                            i + 1
                        ),
                    );
                }
            }
        }
        wanted = Some(nums);
    }
    let search = if search::is_search(&params) {
        match search::Search::parse(&params) {
            Ok(s) => Some(s),
            Err(msg) => return text(StatusCode::BAD_REQUEST, msg),
        }
    } else {
        None
    };
    let mut range: Option<(String, String)> = None;
    for name in ["filter.advanced", "query.term"] {
        if search.is_some() {
            // The search reads (and has checked) these itself.
            break;
        }
        if let Some(expr) = get(name) {
            match parse_last_update_range(expr) {
                Some(r) => range = Some(r),
                None => {
                    return text(
                        StatusCode::BAD_REQUEST,
                        format!(
                            "Error parsing query in parameter `{name}`: the fake CT.gov server \
                             understands only AREA[LastUpdatePostDate]RANGE[from,to] \
                             (dates YYYY-MM-DD, MIN or MAX)"
                        ),
                    );
                }
            }
        }
    }

    // Later pages must repeat the first request's parameters, paging ones aside.
    let mut signature: Vec<(String, String)> = params
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "pageSize" | "pageToken" | "countTotal"))
        .cloned()
        .collect();
    signature.sort();

    let mut st = shared.lock();
    if let (Some(nums), false) = (&wanted, st.rejected.is_empty())
        && let Some(i) = nums.iter().position(|n| st.rejected.contains(n))
    {
        return text(
            StatusCode::BAD_REQUEST,
            format!(
                "Item {} in parameter `filter.ids` has incorrect format",
                i + 1
            ),
        );
    }
    let token = get("pageToken");
    let offset = match token {
        None => 0,
        Some(t) => match st.tokens.get(t) {
            None => {
                return text(
                    StatusCode::BAD_REQUEST,
                    "Parameter `pageToken` has incorrect format",
                );
            }
            Some(ts) if ts.signature != signature => {
                return text(
                    StatusCode::BAD_REQUEST,
                    "Parameter `pageToken` does not match the query: later pages must repeat \
                     the first request's parameters",
                );
            }
            Some(ts) => ts.offset,
        },
    };

    let searched = |e: Option<&Entry>| match (&search, e) {
        (None, _) => true,
        (Some(s), Some(e)) => s.matches(e.index()),
        (Some(_), None) => false,
    };
    let matched: Vec<u32> = match &wanted {
        Some(nums) => {
            let set: BTreeSet<u32> = nums.iter().filter_map(|&n| st.resolve(n)).collect();
            set.into_iter()
                .filter(|n| in_range(st.studies.get(n), range.as_ref()))
                .filter(|n| searched(st.studies.get(n)))
                .collect()
        }
        None => st
            .studies
            .iter()
            .filter(|(_, e)| in_range(Some(e), range.as_ref()))
            .filter(|(_, e)| searched(Some(e)))
            .map(|(n, _)| *n)
            .collect(),
    };
    let fields = search.as_ref().and_then(|s| s.fields.clone());
    let total = matched.len();
    let page_size = page_size.min(st.max_page_size);
    let (page, next_offset): (Vec<Bytes>, usize) = if empty_page {
        (Vec::new(), offset)
    } else {
        let end = offset.saturating_add(page_size).min(total);
        let page = matched
            .get(offset.min(end)..end)
            .unwrap_or_default()
            .iter()
            .filter_map(|n| {
                st.studies.get(n).map(|e| match &fields {
                    Some(f) => Bytes::from(e.index().project(f)),
                    None => e.raw.clone(),
                })
            })
            .collect();
        (page, end)
    };
    let next = (next_offset < total || (empty_page && next_offset <= total))
        .then(|| st.new_token(signature, next_offset));
    drop(st);

    let mut body =
        Vec::with_capacity(page.iter().map(Bytes::len).sum::<usize>() + page.len() + 128);
    body.extend_from_slice(b"{\"studies\":[");
    for (i, s) in page.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(s);
    }
    body.push(b']');
    if count_total && token.is_none() {
        body.extend_from_slice(format!(",\"totalCount\":{total}").as_bytes());
    }
    if let Some(t) = next {
        body.extend_from_slice(format!(",\"nextPageToken\":\"{t}\"").as_bytes());
    }
    body.push(b'}');
    json(body.into())
}

fn in_range(entry: Option<&Entry>, range: Option<&(String, String)>) -> bool {
    let Some((from, to)) = range else {
        return entry.is_some();
    };
    let Some(date) = entry.and_then(|e| e.last_update.as_deref()) else {
        return false;
    };
    (from == "MIN" || date >= from.as_str()) && (to == "MAX" || date <= to.as_str())
}

/// `AREA[LastUpdatePostDate]RANGE[2024-01-15,MAX]` → `("2024-01-15", "MAX")`.
fn parse_last_update_range(expr: &str) -> Option<(String, String)> {
    let rest = expr.trim().strip_prefix("AREA[LastUpdatePostDate]")?;
    let inner = rest.trim().strip_prefix("RANGE[")?.strip_suffix(']')?;
    let (from, to) = inner.split_once(',')?;
    let ok = |s: &str| {
        s == "MIN"
            || s == "MAX"
            || (s.len() == 10
                && s.bytes().enumerate().all(|(i, b)| {
                    if i == 4 || i == 7 {
                        b == b'-'
                    } else {
                        b.is_ascii_digit()
                    }
                }))
    };
    let (from, to) = (from.trim(), to.trim());
    (ok(from) && ok(to)).then(|| (from.to_string(), to.to_string()))
}

fn split_ids(v: &str) -> impl Iterator<Item = &str> {
    v.split([',', '|']).map(str::trim).filter(|s| !s.is_empty())
}

/// The decoded query parameters, or the text of a 400.
fn query_params(uri: &Uri) -> Result<Vec<(String, String)>, String> {
    Query::<Vec<(String, String)>>::try_from_uri(uri)
        .map(|Query(p)| p)
        .map_err(|e| format!("Malformed query string: {e}"))
}

/// Accepts `format=json`, `markupFormat=markdown` and the endpoint's own `allowed` parameters;
/// anything else is a 400 naming it (the fake implements no other CT.gov feature).
fn check_params(params: &[(String, String)], allowed: &[&str]) -> Result<(), String> {
    for (k, v) in params {
        let fine = match k.as_str() {
            "format" => v == "json",
            "markupFormat" => v == "markdown",
            other => allowed.contains(&other),
        };
        if !fine {
            return Err(format!(
                "Parameter `{k}` with value `{v}` is not supported by the fake CT.gov server"
            ));
        }
    }
    Ok(())
}

/// CT.gov 2.0.5's ID pattern `^[Nn][Cc][Tt]0*[1-9]\d{0,7}$`, as the NCT number.
fn parse_nct_number(s: &str) -> Option<u32> {
    let prefix = s.get(..3)?;
    if !prefix.eq_ignore_ascii_case("nct") {
        return None;
    }
    let digits = s.get(3..)?.trim_start_matches('0');
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

fn canonical(n: u32) -> String {
    format!("NCT{n:08}")
}

fn text(status: StatusCode, body: impl Into<String>) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body.into(),
    )
        .into_response()
}

fn json(body: Bytes) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response()
}

const HTML_ERROR_PAGE: &str = "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<title>ClinicalTrials.gov - Service Temporarily Unavailable</title></head>\n<body><h1>Service \
Temporarily Unavailable</h1><p>ClinicalTrials.gov is experiencing technical difficulties. Please \
try again later.</p></body></html>\n";

/// Just the parts of a study `put_study` indexes; everything else is skipped unparsed.
#[derive(Deserialize)]
struct StudyHead {
    #[serde(rename = "protocolSection", default)]
    protocol_section: ProtocolHead,
}

#[derive(Deserialize, Default)]
struct ProtocolHead {
    #[serde(rename = "identificationModule", default)]
    identification_module: IdentificationHead,
    #[serde(rename = "statusModule", default)]
    status_module: StatusHead,
}

#[derive(Deserialize, Default)]
struct IdentificationHead {
    #[serde(rename = "nctId")]
    nct_id: Option<String>,
    #[serde(rename = "nctIdAliases", default)]
    nct_id_aliases: Vec<String>,
}

#[derive(Deserialize, Default)]
struct StatusHead {
    #[serde(rename = "lastUpdatePostDateStruct")]
    last_update_post_date_struct: Option<DateHead>,
}

#[derive(Deserialize)]
struct DateHead {
    date: Option<String>,
}

// The server's own tests. Benches (`harness = false`) are compiled with `--cfg test` as well and
// include this module too; there the `#[test]`s vanish and their imports go unused.
mod search;

#[cfg(test)]
#[allow(unused_imports)]
mod tests;
