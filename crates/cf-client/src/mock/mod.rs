//! A local Cloudflare API v4 on loopback (feature `mock`) for tests, benchmarks and trying the
//! tools. It enforces the documented protocol rather than accepting anything:
//!
//! - authentication: `Authorization: Bearer` with [`MOCK_TOKEN`] (or the legacy headers when
//!   configured); missing headers get 400 code 6003, wrong ones 403 code 10000;
//! - the envelope on every answer; page-based (`page`, `per_page`, `result_info`) and
//!   cursor-based (`cursor`, `result_info.cursors.after`) paging;
//! - the request budget: over it, 429 with `retry-after` for the rest of the window;
//! - asynchronous list operations (pending until their time has passed; another write while
//!   one runs gets 429);
//! - DNS error codes 81057 (record exists), 81058 (identical record exists), 81044 (no such
//!   record), and the batch endpoint's all-or-nothing transaction (at most 200 operations);
//! - every request body, query parameter and response body is validated against the OpenAPI
//!   subset ([`MockCloudflare::violations`] lists what failed; a bad request also gets 400).
//!
//! Faults can be injected for the next requests ([`Fault`]): 5xx, dropped connections (before
//! or after the change is made), slow answers, 429 storms.

mod spec;

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response};
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::{Error, Result};
use spec::Spec;

/// The API token the mock accepts.
pub const MOCK_TOKEN: &str = "mock-token-6f1d2a7c9b3e";
/// The account id of the mock's account.
pub const MOCK_ACCOUNT: &str = "0123456789abcdef0123456789abcdef";

const TIMESTAMP: &str = "2026-01-01T00:00:00Z";

/// A fault for the next requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fault {
    /// Answer 500 without doing anything.
    ServerError,
    /// Close the connection without an answer, before doing anything.
    DropBefore,
    /// Do the request, then close the connection without an answer.
    DropAfter,
    /// Do the request, then wait this long before answering.
    Slow(Duration),
    /// Answer 429 with `retry-after: 1`.
    RateLimited,
}

/// Builds a [`MockCloudflare`].
#[derive(Debug, Clone)]
pub struct MockBuilder {
    zones: Vec<String>,
    budget: u32,
    window: Duration,
    operation_time: Duration,
    legacy: Option<(String, String)>,
    max_list_items: usize,
}

impl MockBuilder {
    /// Adds a zone (its id is derived from its position).
    pub fn with_zone(mut self, name: &str) -> Self {
        self.zones.push(name.to_owned());
        self
    }

    /// The request budget: `requests` per `window` (default Cloudflare's 1,200 per 5 min).
    pub fn with_budget(mut self, requests: u32, window: Duration) -> Self {
        self.budget = requests;
        self.window = window;
        self
    }

    /// How long a list operation runs before it completes (default 30 ms).
    pub fn with_operation_time(mut self, time: Duration) -> Self {
        self.operation_time = time;
        self
    }

    /// Also accepts the legacy `X-Auth-Email` / `X-Auth-Key` pair.
    pub fn with_legacy_key(mut self, email: &str, key: &str) -> Self {
        self.legacy = Some((email.to_owned(), key.to_owned()));
        self
    }

    /// The most items a list may hold (an add beyond it fails asynchronously).
    pub fn with_max_list_items(mut self, max: usize) -> Self {
        self.max_list_items = max;
        self
    }

    /// Binds 127.0.0.1 on a free port and serves until the mock is dropped.
    pub async fn start(self) -> Result<MockCloudflare> {
        let spec = Spec::load().map_err(|reason| Error::InvalidConfig {
            field: "mock spec".into(),
            reason,
        })?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|source| Error::Io {
                path: "127.0.0.1:0".into(),
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| Error::Io {
            path: "127.0.0.1:0".into(),
            source,
        })?;
        let mut state = State::default();
        for (i, name) in self.zones.iter().enumerate() {
            let mut settings = BTreeMap::new();
            for (k, v) in [
                ("ssl", "flexible"),
                ("always_use_https", "off"),
                ("min_tls_version", "1.0"),
                ("tls_1_3", "off"),
            ] {
                settings.insert(k.to_owned(), json!(v));
            }
            state.zones.push(ZoneState {
                id: format!("{:032x}", 0xa000 + i),
                name: name.clone(),
                records: BTreeMap::new(),
                settings,
                entrypoint: None,
                access_rules: Vec::new(),
            });
        }
        let shared = Arc::new(Shared {
            spec,
            config: self,
            state: Mutex::new(state),
            faults: Mutex::new(VecDeque::new()),
            violations: Mutex::new(Vec::new()),
        });
        let serving = shared.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let shared = serving.clone();
                tokio::spawn(async move {
                    let io = hyper_util::rt::TokioIo::new(stream);
                    let service = hyper::service::service_fn(move |req| {
                        let shared = shared.clone();
                        async move { shared.serve(req).await }
                    });
                    // A service error (an injected drop) closes the connection.
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(io, service)
                        .await;
                });
            }
        });
        Ok(MockCloudflare { addr, shared, task })
    }
}

/// A running mock; stops when dropped.
#[derive(Debug)]
pub struct MockCloudflare {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for MockCloudflare {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Counters of what the mock saw.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct MockStats {
    /// Requests received (answered or not).
    pub requests: u64,
    /// 429 answers sent because the budget was exceeded (injected ones not counted).
    pub over_budget: u64,
    /// The most requests in any sliding window of the configured length.
    pub max_in_window: u64,
    /// Requests per `METHOD /template`.
    pub by_route: BTreeMap<String, u64>,
}

impl MockCloudflare {
    /// A builder with no zones and Cloudflare's budget.
    pub fn builder() -> MockBuilder {
        MockBuilder {
            zones: Vec::new(),
            budget: crate::CLOUDFLARE_BUDGET,
            window: crate::CLOUDFLARE_WINDOW,
            operation_time: Duration::from_millis(30),
            legacy: None,
            max_list_items: 100_000,
        }
    }

    /// A mock with one zone and the defaults, started.
    pub async fn start_with_zone(zone: &str) -> Result<MockCloudflare> {
        MockCloudflare::builder().with_zone(zone).start().await
    }

    /// The API root, `http://127.0.0.1:PORT/client/v4`.
    pub fn url(&self) -> String {
        format!("http://{}/client/v4", self.addr)
    }

    /// Injects `fault` into the next `count` requests whose method is `method` (any method
    /// if `None`).
    pub fn inject(&self, fault: Fault, count: u32, method: Option<&str>) {
        lock(&self.shared.faults).push_back(Injected {
            fault,
            remaining: count,
            method: method.map(str::to_owned),
        });
    }

    /// Spec violations and protocol errors seen so far (empty if every body was valid).
    pub fn violations(&self) -> Vec<String> {
        lock(&self.shared.violations).clone()
    }

    /// Request counters.
    pub fn stats(&self) -> MockStats {
        lock(&self.shared.state).stats.clone()
    }

    /// The id of zone `name`.
    pub fn zone_id(&self, name: &str) -> Option<String> {
        lock(&self.shared.state)
            .zones
            .iter()
            .find(|z| z.name == name)
            .map(|z| z.id.clone())
    }

    /// The DNS records of zone `name` as the mock holds them.
    pub fn records(&self, zone: &str) -> Vec<Value> {
        lock(&self.shared.state)
            .zones
            .iter()
            .find(|z| z.name == zone)
            .map(|z| z.records.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Adds a record behind the client's back (as a dashboard user would).
    pub fn insert_record(&self, zone: &str, record: Value) {
        let mut state = lock(&self.shared.state);
        let id = state.next_id();
        if let Some(z) = state.zones.iter_mut().find(|z| z.name == zone) {
            let record = stored_record(&id, &z.id, &z.name, &record);
            z.records.insert(id, record);
        }
    }

    /// The `ip` and `comment` of every item of list `name`.
    pub fn list_items(&self, name: &str) -> Vec<(String, Option<String>)> {
        let mut state = lock(&self.shared.state);
        state.settle(Instant::now());
        state
            .lists
            .iter()
            .find(|l| l.name == name)
            .map(|l| {
                l.items
                    .values()
                    .map(|i| {
                        (
                            i["ip"].as_str().unwrap_or_default().to_owned(),
                            i.get("comment").and_then(Value::as_str).map(str::to_owned),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The value of zone setting `setting`.
    pub fn setting(&self, zone: &str, setting: &str) -> Option<Value> {
        lock(&self.shared.state)
            .zones
            .iter()
            .find(|z| z.name == zone)
            .and_then(|z| z.settings.get(setting).cloned())
    }

    /// The rules of zone `zone`'s `http_ratelimit` entrypoint.
    pub fn rate_limit_rules(&self, zone: &str) -> Vec<Value> {
        lock(&self.shared.state)
            .zones
            .iter()
            .find(|z| z.name == zone)
            .and_then(|z| z.entrypoint.as_ref())
            .and_then(|e| e["rules"].as_array().cloned())
            .unwrap_or_default()
    }

    /// The access rules of zone `zone` (or the account's with `None`).
    pub fn access_rules(&self, zone: Option<&str>) -> Vec<Value> {
        let state = lock(&self.shared.state);
        match zone {
            Some(name) => state
                .zones
                .iter()
                .find(|z| z.name == name)
                .map(|z| z.access_rules.clone())
                .unwrap_or_default(),
            None => state.account_rules.clone(),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[derive(Debug)]
struct Injected {
    fault: Fault,
    remaining: u32,
    method: Option<String>,
}

#[derive(Debug)]
struct Shared {
    spec: Spec,
    config: MockBuilder,
    state: Mutex<State>,
    faults: Mutex<VecDeque<Injected>>,
    violations: Mutex<Vec<String>>,
}

#[derive(Debug, Default)]
struct State {
    zones: Vec<ZoneState>,
    account_rules: Vec<Value>,
    lists: Vec<ListState>,
    operations: BTreeMap<String, OperationState>,
    counter: u64,
    window_start: Option<Instant>,
    window_count: u32,
    recent: VecDeque<Instant>,
    stats: MockStats,
    max_items: usize,
}

#[derive(Debug)]
struct ZoneState {
    id: String,
    name: String,
    records: BTreeMap<String, Value>,
    settings: BTreeMap<String, Value>,
    entrypoint: Option<Value>,
    access_rules: Vec<Value>,
}

#[derive(Debug)]
struct ListState {
    id: String,
    name: String,
    description: String,
    /// Items by address text (the cursor order).
    items: BTreeMap<String, Value>,
}

#[derive(Debug)]
struct OperationState {
    done_at: Instant,
    list_id: String,
    change: Option<ListChange>,
    status: &'static str,
    error: Option<String>,
}

#[derive(Debug)]
enum ListChange {
    Upsert(Vec<(String, Option<String>)>),
    Replace(Vec<(String, Option<String>)>),
    Remove(Vec<String>),
}

/// An answer: status, envelope, extra headers.
struct Answer {
    status: u16,
    body: Value,
    retry_after: Option<u64>,
}

fn ok(result: Value) -> Answer {
    Answer {
        status: 200,
        body: json!({"success": true, "errors": [], "messages": [], "result": result}),
        retry_after: None,
    }
}

fn ok_paged(result: Value, info: Value) -> Answer {
    let mut a = ok(result);
    a.body["result_info"] = info;
    a
}

fn fail(status: u16, code: u64, message: &str) -> Answer {
    Answer {
        status,
        body: json!({
            "success": false,
            "errors": [{"code": code, "message": message}],
            "messages": [],
            "result": null,
        }),
        retry_after: None,
    }
}

/// What the handler needs from a request.
struct Req {
    method: String,
    path: String,
    query: Vec<(String, String)>,
    body: Option<Value>,
}

impl Req {
    fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

impl State {
    fn next_id(&mut self) -> String {
        self.counter += 1;
        format!("{:032x}", self.counter)
    }

    /// Finishes list operations whose time has come.
    fn settle(&mut self, now: Instant) {
        let due: Vec<String> = self
            .operations
            .iter()
            .filter(|(_, op)| op.change.is_some() && op.done_at <= now)
            .map(|(id, _)| id.clone())
            .collect();
        for id in due {
            let Some(op) = self.operations.get_mut(&id) else {
                continue;
            };
            let Some(change) = op.change.take() else {
                continue;
            };
            let list_id = op.list_id.clone();
            let max = self.max_items;
            let mut ids = Vec::new();
            for _ in 0..match &change {
                ListChange::Upsert(v) | ListChange::Replace(v) => v.len(),
                ListChange::Remove(_) => 0,
            } {
                self.counter += 1;
                ids.push(format!("{:032x}", self.counter));
            }
            let result = self
                .lists
                .iter_mut()
                .find(|l| l.id == list_id)
                .map(|list| apply_list_change(list, change, ids, max));
            let Some(op) = self.operations.get_mut(&id) else {
                continue;
            };
            match result {
                Some(Ok(())) => op.status = "completed",
                Some(Err(e)) => {
                    op.status = "failed";
                    op.error = Some(e);
                }
                None => {
                    op.status = "failed";
                    op.error = Some("the list was deleted".into());
                }
            }
        }
    }

    fn running_operation(&self) -> bool {
        self.operations.values().any(|op| op.change.is_some())
    }
}

fn apply_list_change(
    list: &mut ListState,
    change: ListChange,
    ids: Vec<String>,
    max: usize,
) -> std::result::Result<(), String> {
    let item = |id: String, ip: &str, comment: &Option<String>| {
        let mut v = json!({"id": id, "ip": ip, "created_on": TIMESTAMP, "modified_on": TIMESTAMP});
        if let Some(c) = comment {
            v["comment"] = json!(c);
        }
        v
    };
    match change {
        ListChange::Upsert(items) => {
            let new = items
                .iter()
                .filter(|(ip, _)| !list.items.contains_key(ip))
                .count();
            if list.items.len() + new > max {
                return Err("This list is at the maximum number of items".into());
            }
            for ((ip, comment), id) in items.iter().zip(ids) {
                let id = list
                    .items
                    .get(ip)
                    .and_then(|i| i["id"].as_str().map(str::to_owned))
                    .unwrap_or(id);
                list.items.insert(ip.clone(), item(id, ip, comment));
            }
        }
        ListChange::Replace(items) => {
            if items.len() > max {
                return Err("This list is at the maximum number of items".into());
            }
            list.items.clear();
            for ((ip, comment), id) in items.iter().zip(ids) {
                list.items.insert(ip.clone(), item(id, ip, comment));
            }
        }
        ListChange::Remove(remove) => {
            list.items
                .retain(|_, i| !remove.iter().any(|id| i["id"].as_str() == Some(id)));
        }
    }
    Ok(())
}

impl Shared {
    async fn serve(
        self: Arc<Self>,
        req: Request<hyper::body::Incoming>,
    ) -> std::result::Result<Response<Full<Bytes>>, std::io::Error> {
        let method = req.method().as_str().to_owned();
        let fault = self.take_fault(&method);
        if fault == Some(Fault::DropBefore) {
            return Err(std::io::Error::other("injected drop before the request"));
        }
        let answer = match fault {
            Some(Fault::ServerError) => fail(500, 10001, "Internal server error (injected)"),
            Some(Fault::RateLimited) => {
                let mut a = fail(
                    429,
                    971,
                    "Please wait and consider throttling your request speed",
                );
                a.retry_after = Some(1);
                a
            }
            _ => self.handle(req).await,
        };
        match fault {
            Some(Fault::DropAfter) => {
                return Err(std::io::Error::other("injected drop after the request"));
            }
            Some(Fault::Slow(wait)) => tokio::time::sleep(wait).await,
            _ => {}
        }
        let mut response = Response::builder()
            .status(answer.status)
            .header("content-type", "application/json");
        if let Some(secs) = answer.retry_after {
            response = response.header("retry-after", secs.to_string());
        }
        response
            .body(Full::new(Bytes::from(answer.body.to_string())))
            .map_err(std::io::Error::other)
    }

    fn take_fault(&self, method: &str) -> Option<Fault> {
        let mut faults = lock(&self.faults);
        let pos = faults
            .iter()
            .position(|f| f.remaining > 0 && f.method.as_deref().is_none_or(|m| m == method))?;
        let entry = &mut faults[pos];
        entry.remaining -= 1;
        let fault = entry.fault;
        if entry.remaining == 0 {
            faults.remove(pos);
        }
        Some(fault)
    }

    fn violation(&self, text: String) {
        lock(&self.violations).push(text);
    }

    async fn handle(&self, req: Request<hyper::body::Incoming>) -> Answer {
        let method = req.method().as_str().to_owned();
        let headers = req.headers().clone();
        let uri = req.uri().clone();
        let bytes = match req.into_body().collect().await {
            Ok(b) => b.to_bytes(),
            Err(_) => return fail(400, 6007, "Malformed request body"),
        };
        let Some(path) = uri.path().strip_prefix("/client/v4") else {
            return fail(404, 7003, "No route for the URI");
        };
        let query: Vec<(String, String)> = uri
            .query()
            .map(|q| {
                q.split('&')
                    .filter(|kv| !kv.is_empty())
                    .map(|kv| {
                        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                        (percent_decode(k), percent_decode(v))
                    })
                    .collect()
            })
            .unwrap_or_default();
        {
            let mut state = lock(&self.state);
            let now = Instant::now();
            state.stats.requests += 1;
            state.recent.push_back(now);
            while state
                .recent
                .front()
                .is_some_and(|t| now.duration_since(*t) >= self.config.window)
            {
                state.recent.pop_front();
            }
            let in_window = state.recent.len() as u64;
            state.stats.max_in_window = state.stats.max_in_window.max(in_window);
            let start = match state.window_start {
                Some(s) if now.duration_since(s) < self.config.window => s,
                _ => {
                    state.window_count = 0;
                    state.window_start = Some(now);
                    now
                }
            };
            state.window_count += 1;
            if state.window_count > self.config.budget {
                state.stats.over_budget += 1;
                let left = self.config.window.saturating_sub(now.duration_since(start));
                let mut a = fail(
                    429,
                    971,
                    "Please wait and consider throttling your request speed",
                );
                a.retry_after = Some(left.as_secs_f64().ceil().max(1.0) as u64);
                return a;
            }
        }
        if let Some(answer) = self.check_auth(&headers) {
            return answer;
        }
        let body = if bytes.is_empty() {
            None
        } else {
            match serde_json::from_slice::<Value>(&bytes) {
                Ok(v) => Some(v),
                Err(e) => return fail(400, 6007, &format!("Malformed JSON in request body: {e}")),
            }
        };
        let req = Req {
            method: method.clone(),
            path: path.to_owned(),
            query,
            body,
        };
        let op = self.spec.operation(&method, path);
        let route = op
            .as_ref()
            .map_or_else(|| path.to_owned(), |o| o.template.clone());
        *lock(&self.state)
            .stats
            .by_route
            .entry(format!("{method} {route}"))
            .or_default() += 1;
        if let Some(op) = &op {
            let checked = self
                .spec
                .check_query(op, &method, &req.query)
                .and_then(|()| {
                    self.spec
                        .check_request(op, &method, path, req.body.as_ref())
                });
            if let Err(e) = checked {
                self.violation(format!("request: {e}"));
                return fail(
                    400,
                    6007,
                    &format!("Request does not match the API schema: {e}"),
                );
            }
        }
        let answer = self.route(&req);
        if let Some(op) = &op
            && let Err(e) = self
                .spec
                .check_response(op, &method, answer.status, &answer.body)
        {
            self.violation(format!("response (mock bug): {e}"));
        }
        answer
    }

    fn check_auth(&self, headers: &hyper::HeaderMap) -> Option<Answer> {
        let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        if let Some(auth) = text("authorization") {
            return match auth.strip_prefix("Bearer ") {
                Some(MOCK_TOKEN) => None,
                _ => Some(fail(403, 10000, "Authentication error")),
            };
        }
        match (
            text("x-auth-email"),
            text("x-auth-key"),
            &self.config.legacy,
        ) {
            (Some(email), Some(key), Some((e, k))) if email == e && key == k => None,
            (Some(_), Some(_), _) => Some(fail(403, 9103, "Unknown X-Auth-Key or X-Auth-Email")),
            _ => Some(fail(400, 6003, "Invalid request headers")),
        }
    }

    fn route(&self, req: &Req) -> Answer {
        let segments: Vec<&str> = req.path.trim_matches('/').split('/').collect();
        let mut state = lock(&self.state);
        state.max_items = self.config.max_list_items;
        state.settle(Instant::now());
        let m = req.method.as_str();
        match (m, segments.as_slice()) {
            ("GET", ["user", "tokens", "verify"]) => {
                ok(json!({"id": "ed17574386854bf78a67040be0a770b0", "status": "active"}))
            }
            ("GET", ["zones"]) => {
                let name = req.param("name");
                let zones: Vec<Value> = state
                    .zones
                    .iter()
                    .filter(|z| name.is_none_or(|n| n == z.name))
                    .map(zone_json)
                    .collect();
                paginate(req, zones, 20)
            }
            ("GET", ["zones", zone]) => match state.zones.iter().find(|z| z.id == *zone) {
                Some(z) => ok(zone_json(z)),
                None => fail(404, 1001, "Invalid zone identifier"),
            },
            (_, ["zones", zone, rest @ ..]) => {
                let State { zones, counter, .. } = &mut *state;
                let Some(z) = zones.iter_mut().find(|z| z.id == *zone) else {
                    return fail(404, 1001, "Invalid zone identifier");
                };
                zone_route(z, counter, req, rest)
            }
            (
                _,
                [
                    "accounts",
                    MOCK_ACCOUNT,
                    "firewall",
                    "access_rules",
                    "rules",
                    rest @ ..,
                ],
            ) => {
                let State {
                    account_rules,
                    counter,
                    ..
                } = &mut *state;
                access_route(account_rules, counter, req, rest, ("account", MOCK_ACCOUNT))
            }
            (_, ["accounts", MOCK_ACCOUNT, "rules", "lists", rest @ ..]) => {
                lists_route(&mut state, req, rest, self.config.operation_time)
            }
            (_, ["accounts", ..]) => fail(403, 9109, "Unauthorized to access requested resource"),
            _ => fail(404, 7003, "No route for the URI"),
        }
    }
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match u8::from_str_radix(&text[i + 1..i + 3], 16) {
                Ok(b) => {
                    out.push(b);
                    i += 2;
                }
                Err(_) => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn zone_json(z: &ZoneState) -> Value {
    json!({
        "id": z.id, "name": z.name, "status": "active", "paused": false, "type": "full",
        "development_mode": 0, "name_servers": ["ada.ns.cloudflare.com", "bob.ns.cloudflare.com"],
        "original_name_servers": [], "original_registrar": null, "original_dnshost": null,
        "created_on": TIMESTAMP, "modified_on": TIMESTAMP, "activated_on": TIMESTAMP,
        "meta": {}, "owner": {}, "account": {"id": MOCK_ACCOUNT, "name": "Mock account"},
        "permissions": [], "plan": {},
    })
}

/// Page-based paging of `items` (`page` from 1, `per_page` default `default_per_page`).
fn paginate(req: &Req, items: Vec<Value>, default_per_page: usize) -> Answer {
    let page = req
        .param("page")
        .and_then(|p| p.parse::<f64>().ok())
        .map_or(1, |p| p.max(1.0) as usize);
    let per_page = req
        .param("per_page")
        .and_then(|p| p.parse::<f64>().ok())
        .map_or(default_per_page, |p| p.max(1.0) as usize);
    let total = items.len();
    let pages = total.div_ceil(per_page).max(1);
    let slice: Vec<Value> = items
        .into_iter()
        .skip((page - 1).saturating_mul(per_page))
        .take(per_page)
        .collect();
    let count = slice.len();
    ok_paged(
        json!(slice),
        json!({"page": page, "per_page": per_page, "count": count, "total_count": total, "total_pages": pages}),
    )
}

/// A record as stored and returned: the request's fields plus Cloudflare's.
fn stored_record(id: &str, zone_id: &str, zone_name: &str, body: &Value) -> Value {
    let mut r = body.clone();
    let kind = r["type"].as_str().unwrap_or_default().to_owned();
    let proxiable = matches!(kind.as_str(), "A" | "AAAA" | "CNAME");
    r["id"] = json!(id);
    r["zone_id"] = json!(zone_id);
    r["zone_name"] = json!(zone_name);
    r["proxiable"] = json!(proxiable);
    if r.get("ttl").is_none() {
        r["ttl"] = json!(1);
    }
    if proxiable && r.get("proxied").is_none() {
        r["proxied"] = json!(false);
    }
    if r.get("tags").is_none() {
        r["tags"] = json!([]);
    }
    if r.get("content").is_none() {
        r["content"] = json!("");
    }
    r["created_on"] = json!(TIMESTAMP);
    r["modified_on"] = json!(TIMESTAMP);
    r["meta"] = json!({"source": "primary"});
    r
}

/// What identifies a record's value: type, name, content, data, priority.
fn record_value(r: &Value) -> (String, String, String, String, String) {
    let text = |k: &str| {
        r.get(k)
            .map(|v| match v {
                Value::String(s) => s.trim_end_matches('.').to_ascii_lowercase(),
                other => other.to_string(),
            })
            .unwrap_or_default()
    };
    let kind = text("type").to_ascii_uppercase();
    // CAA and SRV are identified by their data (their content is derived).
    let content = if r.get("data").is_some() {
        String::new()
    } else {
        text("content")
    };
    (kind, text("name"), content, text("data"), text("priority"))
}

/// Checks `body` as a record of zone `zone_name` among `records` (without `except`).
fn check_record(
    records: &BTreeMap<String, Value>,
    zone_name: &str,
    body: &Value,
    except: Option<&str>,
) -> Option<Answer> {
    let name = body["name"]
        .as_str()
        .unwrap_or_default()
        .to_ascii_lowercase();
    if name != zone_name && !name.ends_with(&format!(".{zone_name}")) {
        return Some(fail(400, 9007, "Name is not within the zone"));
    }
    if let Some(ttl) = body.get("ttl").and_then(Value::as_u64)
        && ttl != 1
        && !(60..=86400).contains(&ttl)
    {
        return Some(fail(
            400,
            9021,
            "Invalid TTL. Must be between 60 and 86400 seconds, or 1 for Automatic",
        ));
    }
    let kind = body["type"].as_str().unwrap_or_default();
    let content = body["content"].as_str().unwrap_or_default();
    let valid = match kind {
        "A" => content.parse::<std::net::Ipv4Addr>().is_ok(),
        "AAAA" => content.parse::<std::net::Ipv6Addr>().is_ok(),
        _ => true,
    };
    if !valid {
        return Some(fail(400, 9005, "Content for A/AAAA record is invalid"));
    }
    if body.get("proxied") == Some(&Value::Bool(true)) && !matches!(kind, "A" | "AAAA" | "CNAME") {
        return Some(fail(400, 9004, "This record type cannot be proxied"));
    }
    let value = record_value(body);
    for (id, other) in records {
        if Some(id.as_str()) == except {
            continue;
        }
        if record_value(other) == value {
            return Some(fail(400, 81058, "An identical record already exists."));
        }
        let other_name = other["name"]
            .as_str()
            .unwrap_or_default()
            .to_ascii_lowercase();
        let other_kind = other["type"].as_str().unwrap_or_default();
        if other_name == name && (kind == "CNAME" || other_kind == "CNAME") {
            return Some(fail(400, 81057, "Record already exists."));
        }
    }
    None
}

fn zone_route(z: &mut ZoneState, counter: &mut u64, req: &Req, rest: &[&str]) -> Answer {
    let mut next_id = || {
        *counter += 1;
        format!("{:032x}", *counter)
    };
    let body = req.body.clone().unwrap_or(Value::Null);
    match (req.method.as_str(), rest) {
        ("GET", ["dns_records"]) => {
            for key in ["search", "order", "direction", "match", "tag_match"] {
                if req.param(key).is_some() {
                    return fail(400, 1004, &format!("the mock does not implement `{key}`"));
                }
            }
            let items: Vec<Value> = z
                .records
                .values()
                .filter(|r| {
                    let field = |k: &str| r[k].as_str().unwrap_or_default().to_ascii_lowercase();
                    req.param("name")
                        .is_none_or(|n| field("name") == n.to_ascii_lowercase())
                        && req
                            .param("type")
                            .is_none_or(|t| field("type") == t.to_ascii_lowercase())
                        && req
                            .param("content")
                            .is_none_or(|c| field("content") == c.to_ascii_lowercase())
                        && req
                            .param("comment.contains")
                            .is_none_or(|c| field("comment").contains(&c.to_ascii_lowercase()))
                        && req.param("tag").is_none_or(|t| {
                            r["tags"].as_array().is_some_and(|tags| {
                                tags.iter()
                                    .filter_map(Value::as_str)
                                    .any(|tag| tag == t || tag.split(':').next() == Some(t))
                            })
                        })
                })
                .cloned()
                .collect();
            paginate(req, items, 100)
        }
        ("POST", ["dns_records"]) => {
            if let Some(error) = check_record(&z.records, &z.name, &body, None) {
                return error;
            }
            let id = next_id();
            let record = stored_record(&id, &z.id, &z.name, &body);
            z.records.insert(id, record.clone());
            ok(record)
        }
        ("POST", ["dns_records", "batch"]) => batch(z, &mut next_id, &body),
        (m, ["dns_records", id]) => {
            let Some(existing) = z.records.get(*id).cloned() else {
                return fail(404, 81044, "Record does not exist.");
            };
            match m {
                "GET" => ok(existing),
                "DELETE" => {
                    z.records.remove(*id);
                    ok(json!({"id": id}))
                }
                "PUT" | "PATCH" => {
                    let mut merged = if m == "PUT" {
                        body.clone()
                    } else {
                        existing.clone()
                    };
                    if m == "PATCH" {
                        for (k, v) in body.as_object().into_iter().flatten() {
                            merged[k] = v.clone();
                        }
                    }
                    if let Some(error) = check_record(&z.records, &z.name, &merged, Some(id)) {
                        return error;
                    }
                    let record = stored_record(id, &z.id, &z.name, &merged);
                    z.records.insert((*id).to_owned(), record.clone());
                    ok(record)
                }
                _ => fail(405, 10000, "Method not allowed"),
            }
        }
        (m, ["settings", setting]) => {
            let Some(current) = z.settings.get(*setting).cloned() else {
                return fail(404, 1003, "Unknown or unsupported zone setting");
            };
            let answer = |value: &Value| {
                ok(
                    json!({"id": setting, "value": value, "editable": true, "modified_on": TIMESTAMP}),
                )
            };
            match m {
                "GET" => answer(&current),
                "PATCH" => {
                    let value = body["value"].clone();
                    let allowed: &[&str] = match *setting {
                        "ssl" => &["off", "flexible", "full", "strict"],
                        "min_tls_version" => &["1.0", "1.1", "1.2", "1.3"],
                        "tls_1_3" => &["on", "off", "zrt"],
                        _ => &["on", "off"],
                    };
                    if !value.as_str().is_some_and(|v| allowed.contains(&v)) {
                        return fail(
                            400,
                            1007,
                            &format!("Invalid value for zone setting {setting}"),
                        );
                    }
                    z.settings.insert((*setting).to_owned(), value.clone());
                    answer(&value)
                }
                _ => fail(405, 10000, "Method not allowed"),
            }
        }
        (m, ["rulesets", "phases", "http_ratelimit", "entrypoint"]) => match m {
            "GET" => match &z.entrypoint {
                Some(e) => ok(e.clone()),
                None => fail(
                    404,
                    10003,
                    "could not find entrypoint ruleset in the http_ratelimit phase",
                ),
            },
            "PUT" => {
                let version = z
                    .entrypoint
                    .as_ref()
                    .and_then(|e| e["version"].as_str()?.parse::<u64>().ok())
                    .unwrap_or(0)
                    + 1;
                let id = z
                    .entrypoint
                    .as_ref()
                    .and_then(|e| e["id"].as_str().map(str::to_owned))
                    .unwrap_or_else(&mut next_id);
                let mut rules = Vec::new();
                for rule in body["rules"].as_array().into_iter().flatten() {
                    if rule
                        .get("expression")
                        .and_then(Value::as_str)
                        .is_none_or(str::is_empty)
                    {
                        return fail(400, 20021, "a rule needs an expression");
                    }
                    let mut rule = rule.clone();
                    let rule_id = next_id();
                    rule["id"] = json!(rule_id);
                    if rule.get("ref").is_none() {
                        rule["ref"] = json!(rule_id);
                    }
                    rule["version"] = json!(version.to_string());
                    rule["last_updated"] = json!(TIMESTAMP);
                    if rule.get("enabled").is_none() {
                        rule["enabled"] = json!(true);
                    }
                    rules.push(rule);
                }
                let ruleset = json!({
                    "id": id, "name": body.get("name").cloned().unwrap_or(json!("default")),
                    "description": body.get("description").cloned().unwrap_or(json!("")),
                    "kind": "zone", "phase": "http_ratelimit", "version": version.to_string(),
                    "last_updated": TIMESTAMP, "rules": rules,
                });
                z.entrypoint = Some(ruleset.clone());
                ok(ruleset)
            }
            _ => fail(405, 10000, "Method not allowed"),
        },
        (_, ["firewall", "access_rules", "rules", rest @ ..]) => {
            let zone_id = z.id.clone();
            access_route(&mut z.access_rules, counter, req, rest, ("zone", &zone_id))
        }
        _ => fail(404, 7003, "No route for the URI"),
    }
}

fn batch(z: &mut ZoneState, next_id: &mut dyn FnMut() -> String, body: &Value) -> Answer {
    let list = |k: &str| {
        body.get(k)
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    let (deletes, patches, puts, posts) = (
        list("deletes"),
        list("patches"),
        list("puts"),
        list("posts"),
    );
    if deletes.len() + patches.len() + puts.len() + posts.len() > 200 {
        return fail(400, 81000, "A batch may hold at most 200 operations");
    }
    // All or nothing: work on a copy and keep it only if every operation succeeds.
    let mut records = z.records.clone();
    let mut result = json!({"deletes": [], "patches": [], "puts": [], "posts": []});
    for d in &deletes {
        let id = d["id"].as_str().unwrap_or_default();
        match records.remove(id) {
            Some(r) => push(&mut result["deletes"], r),
            None => return fail(404, 81044, "Record does not exist."),
        }
    }
    for (key, ops) in [("patches", &patches), ("puts", &puts)] {
        for op in ops.iter() {
            let id = op["id"].as_str().unwrap_or_default().to_owned();
            let Some(existing) = records.get(&id).cloned() else {
                return fail(404, 81044, "Record does not exist.");
            };
            let mut merged = if key == "puts" { op.clone() } else { existing };
            if key == "patches" {
                for (k, v) in op.as_object().into_iter().flatten() {
                    merged[k] = v.clone();
                }
            }
            if let Some(obj) = merged.as_object_mut() {
                obj.remove("id");
            }
            if let Some(error) = check_record(&records, &z.name, &merged, Some(&id)) {
                return error;
            }
            let record = stored_record(&id, &z.id, &z.name, &merged);
            records.insert(id, record.clone());
            push(&mut result[key], record);
        }
    }
    for post in &posts {
        if let Some(error) = check_record(&records, &z.name, post, None) {
            return error;
        }
        let id = next_id();
        let record = stored_record(&id, &z.id, &z.name, post);
        records.insert(id, record.clone());
        push(&mut result["posts"], record);
    }
    z.records = records;
    ok(result)
}

fn push(array: &mut Value, item: Value) {
    if let Value::Array(a) = array {
        a.push(item);
    }
}

fn access_route(
    rules: &mut Vec<Value>,
    counter: &mut u64,
    req: &Req,
    rest: &[&str],
    scope: (&str, &str),
) -> Answer {
    let body = req.body.clone().unwrap_or(Value::Null);
    match (req.method.as_str(), rest) {
        ("GET", []) => {
            let items: Vec<Value> = rules
                .iter()
                .filter(|r| {
                    req.param("mode").is_none_or(|m| r["mode"] == m)
                        && req
                            .param("configuration.target")
                            .is_none_or(|t| r["configuration"]["target"] == t)
                        && req
                            .param("configuration.value")
                            .is_none_or(|v| r["configuration"]["value"] == v)
                        && req
                            .param("notes")
                            .is_none_or(|n| r["notes"].as_str().unwrap_or_default().contains(n))
                })
                .cloned()
                .collect();
            paginate(req, items, 20)
        }
        ("POST", []) => {
            let target = body["configuration"]["target"].as_str().unwrap_or_default();
            let value = body["configuration"]["value"].as_str().unwrap_or_default();
            let valid = match target {
                "ip" => value.parse::<std::net::Ipv4Addr>().is_ok(),
                "ip6" => value.parse::<std::net::Ipv6Addr>().is_ok(),
                "ip_range" => match value.parse::<ipnet::IpNet>() {
                    Ok(ipnet::IpNet::V4(n)) => [16, 24].contains(&n.prefix_len()),
                    Ok(ipnet::IpNet::V6(n)) => [32, 48, 64].contains(&n.prefix_len()),
                    Err(_) => false,
                },
                _ => true,
            };
            if !valid {
                return fail(
                    400,
                    10014,
                    "firewallaccessrules.api.validation_error:invalid configuration value",
                );
            }
            if rules.iter().any(|r| {
                r["configuration"]["target"] == target && r["configuration"]["value"] == value
            }) {
                return fail(400, 10009, "firewallaccessrules.api.duplicate_of_existing");
            }
            *counter += 1;
            let rule = json!({
                "id": format!("{:032x}", *counter),
                "mode": body["mode"], "configuration": {"target": target, "value": value},
                "notes": body["notes"], "allowed_modes": ["whitelist", "block", "challenge", "js_challenge", "managed_challenge"],
                "created_on": TIMESTAMP, "modified_on": TIMESTAMP,
                "scope": {"id": scope.1, "type": scope.0},
            });
            rules.push(rule.clone());
            ok(rule)
        }
        (m @ ("DELETE" | "PATCH" | "GET"), [id]) => {
            let Some(pos) = rules.iter().position(|r| r["id"] == *id) else {
                return fail(404, 10001, "firewallaccessrules.api.not_found");
            };
            match m {
                "DELETE" => {
                    rules.remove(pos);
                    ok(json!({"id": id}))
                }
                "PATCH" => {
                    for key in ["mode", "notes"] {
                        if let Some(v) = body.get(key) {
                            rules[pos][key] = v.clone();
                        }
                    }
                    ok(rules[pos].clone())
                }
                _ => ok(rules[pos].clone()),
            }
        }
        _ => fail(404, 7003, "No route for the URI"),
    }
}

fn list_json(l: &ListState) -> Value {
    json!({
        "id": l.id, "name": l.name, "kind": "ip", "description": l.description,
        "num_items": l.items.len(), "num_referencing_filters": 0,
        "created_on": TIMESTAMP, "modified_on": TIMESTAMP,
    })
}

/// Checks a list item's address: IPv4 host or CIDR, IPv6 host or CIDR no longer than /64.
fn valid_list_ip(ip: &str) -> bool {
    if ip.parse::<std::net::IpAddr>().is_ok() {
        return true;
    }
    match ip.parse::<ipnet::IpNet>() {
        Ok(ipnet::IpNet::V4(n)) => n.prefix_len() >= 8 && n == n.trunc(),
        Ok(ipnet::IpNet::V6(n)) => (12..=64).contains(&n.prefix_len()) && n == n.trunc(),
        Err(_) => false,
    }
}

fn lists_route(state: &mut State, req: &Req, rest: &[&str], op_time: Duration) -> Answer {
    let body = req.body.clone().unwrap_or(Value::Null);
    match (req.method.as_str(), rest) {
        ("GET", []) => ok(json!(state.lists.iter().map(list_json).collect::<Vec<_>>())),
        ("POST", []) => {
            let name = body["name"].as_str().unwrap_or_default().to_owned();
            if state.lists.iter().any(|l| l.name == name) {
                return fail(400, 10013, "a list with this name already exists");
            }
            if body["kind"] != "ip" {
                return fail(400, 10003, "the mock supports lists of kind ip only");
            }
            let id = state.next_id();
            state.lists.push(ListState {
                id,
                name,
                description: body["description"].as_str().unwrap_or_default().to_owned(),
                items: BTreeMap::new(),
            });
            let last = state.lists.last().map(list_json).unwrap_or(Value::Null);
            ok(last)
        }
        ("GET", ["bulk_operations", op]) => match state.operations.get(*op) {
            Some(o) => {
                let status = if o.change.is_some() {
                    "running"
                } else {
                    o.status
                };
                let mut result = json!({"id": op, "status": status});
                if status == "completed" || status == "failed" {
                    result["completed"] = json!(TIMESTAMP);
                }
                if let Some(e) = &o.error {
                    result["error"] = json!(e);
                }
                ok(result)
            }
            None => fail(404, 10001, "operation not found"),
        },
        (m, [list_id, tail @ ..]) => {
            let Some(pos) = state.lists.iter().position(|l| l.id == *list_id) else {
                return fail(404, 10000, "list not found");
            };
            match (m, tail) {
                ("GET", []) => ok(list_json(&state.lists[pos])),
                ("DELETE", []) => {
                    state.lists.remove(pos);
                    ok(json!({"id": list_id}))
                }
                ("GET", ["items"]) => {
                    let per_page = req
                        .param("per_page")
                        .and_then(|p| p.parse::<usize>().ok())
                        .unwrap_or(25);
                    let start = match req.param("cursor") {
                        Some(c) => match decode_cursor(c) {
                            Some(start) => start,
                            None => return fail(400, 10001, "invalid cursor"),
                        },
                        None => String::new(),
                    };
                    let list = &state.lists[pos];
                    let mut page: Vec<Value> = list
                        .items
                        .range(start..)
                        .take(per_page + 1)
                        .map(|(_, v)| v.clone())
                        .collect();
                    let after = if page.len() > per_page {
                        page.pop()
                            .and_then(|next| next["ip"].as_str().map(encode_cursor))
                    } else {
                        None
                    };
                    let mut cursors = json!({});
                    if let Some(a) = after {
                        cursors["after"] = json!(a);
                    }
                    ok_paged(json!(page), json!({"cursors": cursors}))
                }
                ("GET", ["items", item]) => {
                    match state.lists[pos].items.values().find(|i| i["id"] == *item) {
                        Some(i) => ok(i.clone()),
                        None => fail(404, 10001, "item not found"),
                    }
                }
                (m @ ("POST" | "PUT" | "DELETE"), ["items"]) => {
                    if state.running_operation() {
                        let mut a = fail(429, 10032, "another bulk operation is in progress");
                        a.retry_after = Some(1);
                        return a;
                    }
                    let change = if m == "DELETE" {
                        let ids: Vec<String> = body["items"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .filter_map(|i| i["id"].as_str().map(str::to_owned))
                            .collect();
                        ListChange::Remove(ids)
                    } else {
                        let mut items = Vec::new();
                        for i in body.as_array().into_iter().flatten() {
                            let Some(ip) = i["ip"].as_str() else {
                                return fail(400, 10021, "the mock's lists hold ip items only");
                            };
                            if !valid_list_ip(ip) {
                                return fail(
                                    400,
                                    10021,
                                    &format!(
                                        "invalid list item ip `{ip}` (IPv6 prefixes must be /12 to /64)"
                                    ),
                                );
                            }
                            items.push((ip.to_owned(), i["comment"].as_str().map(str::to_owned)));
                        }
                        if m == "POST" {
                            ListChange::Upsert(items)
                        } else {
                            ListChange::Replace(items)
                        }
                    };
                    let op_id = state.next_id();
                    state.operations.insert(
                        op_id.clone(),
                        OperationState {
                            done_at: Instant::now() + op_time,
                            list_id: (*list_id).to_owned(),
                            change: Some(change),
                            status: "pending",
                            error: None,
                        },
                    );
                    ok(json!({"operation_id": op_id}))
                }
                _ => fail(404, 7003, "No route for the URI"),
            }
        }
        _ => fail(404, 7003, "No route for the URI"),
    }
}

fn encode_cursor(key: &str) -> String {
    key.bytes().map(|b| format!("{b:02x}")).collect()
}

fn decode_cursor(cursor: &str) -> Option<String> {
    if !cursor.len().is_multiple_of(2) {
        return None;
    }
    let bytes: Option<Vec<u8>> = (0..cursor.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(cursor.get(i..i + 2)?, 16).ok())
        .collect();
    String::from_utf8(bytes?).ok()
}
