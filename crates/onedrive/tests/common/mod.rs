//! A mock Microsoft Graph (OneDrive) and identity platform on loopback that enforces the
//! documented protocol: bearer tokens on API calls and none on upload URLs; fragments aligned to
//! 320 KiB, under 60 MiB, in order (416 for repeats); sessions that expire or vanish (404);
//! 429/503 with Retry-After; conflict behaviour; quickXorHash computed by its own byte-at-a-time
//! implementation; and every JSON body checked against the OpenAPI subset's schemas.
//!
//! Protocol and schema violations are recorded, and each test ends with
//! [`MockGraph::assert_clean`].

#![allow(dead_code, unreachable_pub, clippy::result_large_err)]

pub mod schema;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use serde_json::{Value, json};

pub const UNIT: u64 = 327_680;
pub const CLIENT_ID: &str = "test-client";
pub const CLIENT_SECRET: &str = "s3cret-client-value";

/// The hash as a server computes it, byte at a time (no folding): byte i at bit offset
/// 11*i mod 160 of a 20-byte ring, the offsets taken from a table instead of divisions so the
/// mock keeps up with large uploads.
pub fn server_quickxor(data: &[u8]) -> String {
    let mut table = [(0usize, 0u32, 0usize); 160];
    for (i, slot) in table.iter_mut().enumerate() {
        let offset = (11 * i) % 160;
        *slot = (offset / 8, (offset % 8) as u32, (offset / 8 + 1) % 20);
    }
    let mut state = [0u8; 20];
    for block in data.chunks(160) {
        for (&byte, &(low, shift, high)) in block.iter().zip(table.iter()) {
            let spread = u16::from(byte) << shift;
            state[low] ^= spread as u8;
            state[high] ^= (spread >> 8) as u8;
        }
    }
    for (t, l) in state[12..]
        .iter_mut()
        .zip((data.len() as u64).to_le_bytes())
    {
        *t ^= l;
    }
    base64::engine::general_purpose::STANDARD.encode(state)
}

#[derive(Clone, Debug)]
pub struct Node {
    pub id: String,
    pub name: String,
    pub parent: Option<String>,
    pub folder: bool,
    pub content: Vec<u8>,
}

pub struct Session {
    drive: String,
    parent: String,
    name: String,
    conflict: String,
    total: Option<u64>,
    received: Vec<u8>,
    expires: SystemTime,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Target {
    Api,
    Upload,
}

/// A fragment PUT as the mock saw it.
#[derive(Clone, Debug)]
pub struct Fragment {
    pub session: String,
    pub start: u64,
    pub end: u64,
    pub status: u16,
}

#[derive(Default)]
pub struct State {
    pub drives: HashMap<String, HashMap<String, Node>>,
    /// Users' principal names to their drive ids.
    pub users: HashMap<String, String>,
    pub sessions: HashMap<String, Session>,
    next_id: u64,
    // Identity platform.
    pub access_tokens: HashMap<String, SystemTime>,
    pub refresh_tokens: Vec<String>,
    pub used_refresh_tokens: Vec<String>,
    /// Authorization codes to their PKCE challenge.
    pub codes: HashMap<String, String>,
    pub token_lifetime: u64,
    pub token_requests: Vec<String>,
    // Faults.
    pub throttle: Vec<(Target, u16, u64)>,
    pub cut_fragments: u32,
    pub fail_fragments: u32,
    pub expire_after_fragments: Option<u32>,
    pub forget_sessions_after_fragments: Option<u32>,
    pub fragment_delay: Duration,
    pub page_size: usize,
    // Records.
    pub fragments: Vec<Fragment>,
    pub bytes_accepted: u64,
    pub repeats: u32,
    pub sessions_created: u32,
    pub sessions_deleted: u32,
    pub throttled: u32,
    pub cuts: u32,
    pub requests: Vec<(String, String, bool)>,
    pub violations: Vec<String>,
}

pub struct MockGraph {
    pub base: String,
    pub state: Arc<Mutex<State>>,
    schemas: Arc<schema::Schemas>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for MockGraph {
    fn drop(&mut self) {
        self.task.abort();
    }
}

type Body = Full<Bytes>;

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn timestamp(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    jiff::Timestamp::from_second(secs as i64)
        .expect("timestamp")
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

impl MockGraph {
    pub async fn start() -> Self {
        Self::start_with(None).await
    }

    /// The mock behind TLS (rustls on ring) with the certificate in tests/data, valid for
    /// 127.0.0.1; its DER is [`MockGraph::TLS_CERT`].
    pub async fn start_tls() -> Self {
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_no_client_auth()
            .with_single_cert(
                vec![rustls::pki_types::CertificateDer::from(
                    Self::TLS_CERT.to_vec(),
                )],
                rustls::pki_types::PrivateKeyDer::Pkcs8(Self::TLS_KEY.to_vec().into()),
            )
            .expect("server certificate");
        Self::start_with(Some(tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(
            config,
        ))))
        .await
    }

    pub const TLS_CERT: &'static [u8] = include_bytes!("../data/mock-tls-cert.der");
    const TLS_KEY: &'static [u8] = include_bytes!("../data/mock-tls-key.der");

    async fn start_with(tls: Option<tokio_rustls::TlsAcceptor>) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let scheme = if tls.is_some() { "https" } else { "http" };
        let base = format!("{scheme}://{}", listener.local_addr().expect("addr"));
        let mut state = State {
            token_lifetime: 3600,
            page_size: 200,
            ..State::default()
        };
        for drive in ["drive-me", "drive-b"] {
            let mut nodes = HashMap::new();
            nodes.insert(
                format!("{drive}-root"),
                Node {
                    id: format!("{drive}-root"),
                    name: "root".into(),
                    parent: None,
                    folder: true,
                    content: Vec::new(),
                },
            );
            state.drives.insert(drive.into(), nodes);
        }
        state
            .users
            .insert("alice@example.com".into(), "drive-b".into());
        let state = Arc::new(Mutex::new(state));
        let schemas = Arc::new(schema::Schemas::load());
        let (s2, sc2, b2) = (state.clone(), schemas.clone(), base.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (s3, sc3, b3) = (s2.clone(), sc2.clone(), b2.clone());
                let tls = tls.clone();
                tokio::spawn(async move {
                    match tls {
                        Some(acceptor) => {
                            if let Ok(stream) = acceptor.accept(stream).await {
                                serve(stream, s3, sc3, b3).await;
                            }
                        }
                        None => serve(stream, s3, sc3, b3).await,
                    }
                });
            }
        });
        Self {
            base,
            state,
            schemas,
            task,
        }
    }

    pub fn graph_url(&self) -> String {
        format!("{}/v1.0", self.base)
    }

    pub fn token_url(&self) -> String {
        format!("{}/common/oauth2/v2.0/token", self.base)
    }

    pub fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        f(&mut self.state.lock().expect("mock state"))
    }

    /// Registers a refresh token the client may use (as after a consent step).
    pub fn issue_refresh_token(&self, token: &str) {
        self.with(|s| s.refresh_tokens.push(token.into()));
    }

    /// The content of the file at `path` (names joined by `/`) in `drive`.
    pub fn file(&self, drive: &str, path: &str) -> Option<Vec<u8>> {
        self.with(|s| {
            let nodes = s.drives.get(drive)?;
            let id = resolve(nodes, drive, path)?;
            let node = nodes.get(&id)?;
            (!node.folder).then(|| node.content.clone())
        })
    }

    /// Every file under `path` in `drive`, by relative path.
    pub fn files_under(&self, drive: &str, path: &str) -> HashMap<String, Vec<u8>> {
        self.with(|s| {
            let mut out = HashMap::new();
            let Some(nodes) = s.drives.get(drive) else {
                return out;
            };
            let Some(start) = resolve(nodes, drive, path) else {
                return out;
            };
            let mut pending = vec![(start, String::new())];
            while let Some((id, prefix)) = pending.pop() {
                for node in nodes.values().filter(|n| n.parent.as_deref() == Some(&id)) {
                    let rel = if prefix.is_empty() {
                        node.name.clone()
                    } else {
                        format!("{prefix}/{}", node.name)
                    };
                    if node.folder {
                        pending.push((node.id.clone(), rel));
                    } else {
                        out.insert(rel, node.content.clone());
                    }
                }
            }
            out
        })
    }

    /// Seeds a file (creating folders).
    pub fn put_file(&self, drive: &str, path: &str, content: &[u8]) {
        self.with(|s| {
            let mut parent = format!("{drive}-root");
            let names: Vec<&str> = path.split('/').collect();
            for (i, name) in names.iter().enumerate() {
                let last = i + 1 == names.len();
                let existing = child(&s.drives[drive], &parent, name).map(|n| n.id.clone());
                parent = match existing {
                    Some(id) => {
                        if last {
                            s.drives
                                .get_mut(drive)
                                .unwrap()
                                .get_mut(&id)
                                .unwrap()
                                .content = content.to_vec();
                        }
                        id
                    }
                    None => {
                        s.next_id += 1;
                        let id = format!("item{}", s.next_id);
                        s.drives.get_mut(drive).unwrap().insert(
                            id.clone(),
                            Node {
                                id: id.clone(),
                                name: name.to_string(),
                                parent: Some(parent.clone()),
                                folder: !last,
                                content: if last { content.to_vec() } else { Vec::new() },
                            },
                        );
                        id
                    }
                };
            }
        });
    }

    /// Fails the test if the mock saw a protocol or schema violation.
    pub fn assert_clean(&self) {
        let violations = self.with(|s| s.violations.clone());
        assert!(
            violations.is_empty(),
            "protocol violations: {violations:#?}"
        );
    }

    /// Byte ranges accepted more than once for the same session.
    pub fn overlapping_accepted_ranges(&self) -> Vec<Fragment> {
        self.with(|s| {
            let accepted: Vec<&Fragment> = s
                .fragments
                .iter()
                .filter(|f| matches!(f.status, 200..=202))
                .collect();
            let mut out = Vec::new();
            for (i, a) in accepted.iter().enumerate() {
                for b in &accepted[i + 1..] {
                    if a.session == b.session && a.start <= b.end && b.start <= a.end {
                        out.push((*b).clone());
                    }
                }
            }
            out
        })
    }
}

async fn serve<I>(io: I, state: Arc<Mutex<State>>, schemas: Arc<schema::Schemas>, base: String)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |req| {
        let (s, sc, b) = (state.clone(), schemas.clone(), base.clone());
        async move { handle(req, s, sc, b).await }
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(hyper_util::rt::TokioIo::new(io), service)
        .await;
}

fn child<'a>(nodes: &'a HashMap<String, Node>, parent: &str, name: &str) -> Option<&'a Node> {
    // OneDrive names are case-insensitive.
    nodes
        .values()
        .find(|n| n.parent.as_deref() == Some(parent) && n.name.eq_ignore_ascii_case(name))
}

fn resolve(nodes: &HashMap<String, Node>, drive: &str, path: &str) -> Option<String> {
    let mut id = format!("{drive}-root");
    for name in path.split('/').filter(|n| !n.is_empty()) {
        id = child(nodes, &id, name)?.id.clone();
    }
    Some(id)
}

const FORBIDDEN: &[char] = &['"', '*', ':', '<', '>', '?', '/', '\\', '|'];

fn name_ok(name: &str) -> bool {
    !name.is_empty()
        && !name.contains(FORBIDDEN)
        && !name.starts_with(' ')
        && !name.ends_with(' ')
        && !name.ends_with('.')
}

fn reply(status: u16, body: Value) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("Content-Type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("response")
}

fn empty(status: u16) -> Response<Body> {
    Response::builder()
        .status(status)
        .body(Full::new(Bytes::new()))
        .expect("response")
}

impl State {
    fn item_json(&self, drive: &str, node: &Node) -> Value {
        let mut item = json!({
            "id": node.id,
            "name": node.name,
            "size": if node.folder { self.folder_size(drive, &node.id) } else { node.content.len() as u64 },
            "createdDateTime": "2026-01-02T03:04:05Z",
            "lastModifiedDateTime": "2026-01-02T03:04:05Z",
            "eTag": format!("\"{{{}}},1\"", node.id),
            "parentReference": { "driveId": drive, "id": node.parent.clone().unwrap_or_default() },
        });
        if node.folder {
            let count = self.drives[drive]
                .values()
                .filter(|n| n.parent.as_deref() == Some(&node.id))
                .count();
            item["folder"] = json!({ "childCount": count });
        } else {
            item["file"] = json!({
                "mimeType": "application/octet-stream",
                "hashes": { "quickXorHash": server_quickxor(&node.content) },
            });
            item["cTag"] = json!(format!("\"c:{{{}}},1\"", node.id));
        }
        item
    }

    fn folder_size(&self, drive: &str, id: &str) -> u64 {
        self.drives[drive]
            .values()
            .filter(|n| n.parent.as_deref() == Some(id))
            .map(|n| {
                if n.folder {
                    self.folder_size(drive, &n.id)
                } else {
                    n.content.len() as u64
                }
            })
            .sum()
    }

    fn new_id(&mut self) -> String {
        self.next_id += 1;
        format!("item{}", self.next_id)
    }

    /// Stores `content` as `name` in `parent` under the conflict behaviour; the item id, or an
    /// error answer.
    fn commit(
        &mut self,
        drive: &str,
        parent: &str,
        name: &str,
        conflict: &str,
        content: Vec<u8>,
        folder: bool,
    ) -> Result<(String, bool), Response<Body>> {
        let existing = child(&self.drives[drive], parent, name).map(|n| (n.id.clone(), n.folder));
        match (existing, conflict) {
            (Some(_), "fail") => Err(error(
                409,
                "nameAlreadyExists",
                "The specified item name already exists.",
            )),
            (Some((id, was_folder)), "replace") => {
                if folder || was_folder {
                    return Err(error(
                        409,
                        "nameAlreadyExists",
                        "A folder cannot be replaced.",
                    ));
                }
                self.drives
                    .get_mut(drive)
                    .unwrap()
                    .get_mut(&id)
                    .unwrap()
                    .content = content;
                Ok((id, false))
            }
            (Some(_), "rename") => {
                let (stem, ext) = match name.rsplit_once('.') {
                    Some((s, e)) if !s.is_empty() => (s.to_string(), format!(".{e}")),
                    _ => (name.to_string(), String::new()),
                };
                let mut n = 1;
                let new_name = loop {
                    let candidate = format!("{stem} {n}{ext}");
                    if child(&self.drives[drive], parent, &candidate).is_none() {
                        break candidate;
                    }
                    n += 1;
                };
                self.commit(drive, parent, &new_name, "fail", content, folder)
            }
            (Some(_), other) => Err(error(
                400,
                "invalidRequest",
                &format!("unknown conflict behaviour {other}"),
            )),
            (None, _) => {
                let id = self.new_id();
                self.drives.get_mut(drive).unwrap().insert(
                    id.clone(),
                    Node {
                        id: id.clone(),
                        name: name.into(),
                        parent: Some(parent.into()),
                        folder,
                        content,
                    },
                );
                Ok((id, true))
            }
        }
    }
}

fn error(status: u16, code: &str, message: &str) -> Response<Body> {
    reply(
        status,
        json!({ "error": { "code": code, "message": message } }),
    )
}

/// The parsed API address.
struct Address {
    drive: String,
    /// `Ok(id)` of an existing item, or `Err((parent id, name))` for a missing last name.
    item: Result<String, Option<(String, String)>>,
    action: String,
}

fn parse_address(state: &State, path: &str) -> Result<Address, Response<Body>> {
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(s)
            .decode_utf8()
            .map(|c| c.into_owned())
    };
    let (drive, rest) = if let Some(rest) = path.strip_prefix("/me/drive") {
        ("drive-me".to_string(), rest)
    } else if let Some(rest) = path.strip_prefix("/drives/") {
        let (id, rest) = rest.split_once('/').unwrap_or((rest, ""));
        (
            decode(id).map_err(|_| error(400, "invalidRequest", "bad drive id"))?,
            rest_with_slash(path, rest),
        )
    } else if let Some(rest) = path.strip_prefix("/users/") {
        let (upn, rest) = rest.split_once('/').unwrap_or((rest, ""));
        let upn = decode(upn).map_err(|_| error(400, "invalidRequest", "bad upn"))?;
        let rest = rest
            .strip_prefix("drive")
            .ok_or_else(|| error(400, "invalidRequest", "expected /drive"))?;
        let drive = state
            .users
            .get(&upn)
            .cloned()
            .ok_or_else(|| error(404, "itemNotFound", "no such user"))?;
        (drive, rest)
    } else {
        return Err(error(400, "invalidRequest", "unknown resource"));
    };
    let nodes = state
        .drives
        .get(&drive)
        .ok_or_else(|| error(404, "itemNotFound", "no such drive"))?;
    let root = format!("{drive}-root");
    let (item, action) = if let Some(rest) = rest.strip_prefix("/root:/") {
        let (raw_path, action) = match rest.find(':') {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, ""),
        };
        let mut names = Vec::new();
        for segment in raw_path.split('/').filter(|s| !s.is_empty()) {
            let name =
                decode(segment).map_err(|_| error(400, "invalidRequest", "bad path encoding"))?;
            if !name_ok(&name) {
                return Err(error(
                    400,
                    "invalidRequest",
                    &format!("invalid name {name:?}"),
                ));
            }
            names.push(name);
        }
        let mut id = root.clone();
        let mut item = Ok(root);
        for (i, name) in names.iter().enumerate() {
            match child(nodes, &id, name) {
                Some(node) => {
                    id = node.id.clone();
                    item = Ok(id.clone());
                }
                None if i + 1 == names.len() => {
                    item = Err(Some((id.clone(), name.clone())));
                }
                None => {
                    item = Err(None);
                    break;
                }
            }
        }
        (item, action.to_string())
    } else if let Some(rest) = rest.strip_prefix("/root") {
        (Ok(root), rest.to_string())
    } else if let Some(rest) = rest.strip_prefix("/items/") {
        let (id, action) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        let id = decode(id).map_err(|_| error(400, "invalidRequest", "bad id"))?;
        (
            if nodes.contains_key(&id) {
                Ok(id)
            } else {
                Err(None)
            },
            action.to_string(),
        )
    } else {
        return Err(error(400, "invalidRequest", "unknown drive resource"));
    };
    Ok(Address {
        drive,
        item,
        action,
    })
}

fn rest_with_slash<'a>(_full: &'a str, rest: &'a str) -> &'a str {
    // "/drives/{id}/root..." leaves "root..." after the split; put the slash back.
    if rest.is_empty() {
        ""
    } else {
        &_full[_full.len() - rest.len() - 1..]
    }
}

async fn handle(
    req: Request<Incoming>,
    state: Arc<Mutex<State>>,
    schemas: Arc<schema::Schemas>,
    base: String,
) -> Result<Response<Body>, Cut> {
    let method = req.method().as_str().to_string();
    let uri = req.uri().clone();
    let path = uri.path().to_string();
    let query = uri.query().unwrap_or("").to_string();
    let auth = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let content_range = req
        .headers()
        .get("content-range")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let content_length = req
        .headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    state
        .lock()
        .unwrap()
        .requests
        .push((method.clone(), path.clone(), auth.is_some()));

    if path.starts_with("/upload/") {
        return upload(
            req,
            &state,
            &schemas,
            &base,
            &method,
            &path,
            auth.is_some(),
            content_range,
            content_length,
        )
        .await;
    }
    let body = match req.into_body().collect().await {
        Ok(body) => body.to_bytes().to_vec(),
        Err(_) => return Ok(empty(400)),
    };
    if path.ends_with("/oauth2/v2.0/token") {
        return Ok(token(&state, &body));
    }
    if let Some(id) = path.strip_prefix("/download/") {
        let s = state.lock().unwrap();
        let content = s
            .drives
            .values()
            .find_map(|nodes| nodes.get(id))
            .map(|n| n.content.clone());
        return Ok(match content {
            Some(content) => Response::builder()
                .status(200)
                .body(Full::new(Bytes::from(content)))
                .unwrap(),
            None => empty(404),
        });
    }
    let Some(api_path) = path.strip_prefix("/v1.0") else {
        return Ok(empty(404));
    };
    let mut s = state.lock().unwrap();
    // Bearer auth on every API call.
    let authorized = auth
        .as_deref()
        .and_then(|a| a.strip_prefix("Bearer "))
        .and_then(|t| s.access_tokens.get(t))
        .is_some_and(|expiry| *expiry > SystemTime::now());
    if !authorized {
        let response = error(
            401,
            "InvalidAuthenticationToken",
            "Access token is empty or invalid.",
        );
        return Ok(check_out(&mut s, &schemas.odata_error, response));
    }
    if let Some(i) = s.throttle.iter().position(|(t, _, _)| *t == Target::Api) {
        let (_, status, secs) = s.throttle.remove(i);
        s.throttled += 1;
        let mut response = error(
            status,
            if status == 429 {
                "activityLimitReached"
            } else {
                "serviceNotAvailable"
            },
            "throttled",
        );
        response
            .headers_mut()
            .insert("Retry-After", secs.to_string().parse().unwrap());
        return Ok(response);
    }
    let address = match parse_address(&s, api_path) {
        Ok(address) => address,
        Err(response) => return Ok(check_out(&mut s, &schemas.odata_error, response)),
    };
    let json_body = || serde_json::from_slice::<Value>(&body);
    let drive = address.drive.clone();
    let response = match (method.as_str(), address.action.as_str(), &address.item) {
        ("GET", "", Ok(id)) => {
            let node = s.drives[&drive][id].clone();
            (reply(200, s.item_json(&drive, &node)), Some("item"))
        }
        ("GET", "/children", Ok(id)) => {
            let skip: usize = query
                .strip_prefix("$skiptoken=")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            let mut children: Vec<Node> = s.drives[&drive]
                .values()
                .filter(|n| n.parent.as_deref() == Some(id))
                .cloned()
                .collect();
            children.sort_by(|a, b| a.name.cmp(&b.name));
            let page: Vec<Value> = children
                .iter()
                .skip(skip)
                .take(s.page_size)
                .map(|n| s.item_json(&drive, n))
                .collect();
            let mut out = json!({ "value": page });
            if skip + s.page_size < children.len() {
                out["@odata.nextLink"] = json!(format!(
                    "{base}/v1.0{api_path}?$skiptoken={}",
                    skip + s.page_size
                ));
            }
            (reply(200, out), Some("collection"))
        }
        ("POST", "/children", Ok(parent)) => {
            let parent = parent.clone();
            match json_body() {
                Err(_) => (
                    error(400, "invalidRequest", "body is not JSON"),
                    Some("error"),
                ),
                Ok(request) => {
                    if let Some(v) = schema::violation(&schemas.create_child_request, &request) {
                        s.violations.push(format!("POST children body: {v}"));
                    }
                    let name = request["name"].as_str().unwrap_or("").to_string();
                    let conflict = request["@microsoft.graph.conflictBehavior"]
                        .as_str()
                        .unwrap_or("fail")
                        .to_string();
                    if !request["folder"].is_object() || !name_ok(&name) {
                        (
                            error(
                                400,
                                "invalidRequest",
                                "a folder with a valid name is required",
                            ),
                            Some("error"),
                        )
                    } else {
                        match s.commit(&drive, &parent, &name, &conflict, Vec::new(), true) {
                            Ok((id, _)) => {
                                let node = s.drives[&drive][&id].clone();
                                (reply(201, s.item_json(&drive, &node)), Some("item"))
                            }
                            Err(response) => (response, Some("error")),
                        }
                    }
                }
            }
        }
        ("PUT", "/content", target) => {
            let conflict = query
                .split('&')
                .find_map(|p| p.strip_prefix("@microsoft.graph.conflictBehavior="))
                .unwrap_or("replace")
                .to_string();
            match target {
                Ok(id) if s.drives[&drive][id].folder => (
                    error(400, "invalidRequest", "cannot PUT content to a folder"),
                    Some("error"),
                ),
                Ok(id) => {
                    let node = s.drives[&drive][id].clone();
                    let parent = node.parent.clone().unwrap_or_default();
                    match s.commit(&drive, &parent, &node.name, &conflict, body.clone(), false) {
                        Ok((id, created)) => {
                            let node = s.drives[&drive][&id].clone();
                            (
                                reply(if created { 201 } else { 200 }, s.item_json(&drive, &node)),
                                Some("item"),
                            )
                        }
                        Err(response) => (response, Some("error")),
                    }
                }
                Err(Some((parent, name))) => {
                    let (parent, name) = (parent.clone(), name.clone());
                    match s.commit(&drive, &parent, &name, &conflict, body.clone(), false) {
                        Ok((id, _)) => {
                            let node = s.drives[&drive][&id].clone();
                            (reply(201, s.item_json(&drive, &node)), Some("item"))
                        }
                        Err(response) => (response, Some("error")),
                    }
                }
                Err(None) => (
                    error(404, "itemNotFound", "parent folder not found"),
                    Some("error"),
                ),
            }
        }
        ("GET", "/content", Ok(id)) => {
            let response = Response::builder()
                .status(302)
                .header("Location", format!("{base}/download/{id}"))
                .body(Full::new(Bytes::new()))
                .unwrap();
            (response, None)
        }
        ("POST", "/createUploadSession" | "/microsoft.graph.createUploadSession", target) => {
            let request = json_body().unwrap_or(Value::Null);
            if let Some(v) = schema::violation(&schemas.create_session_request, &request) {
                s.violations.push(format!("createUploadSession body: {v}"));
            }
            let conflict = request["item"]["@microsoft.graph.conflictBehavior"]
                .as_str()
                .unwrap_or("replace")
                .to_string();
            let placement = match target {
                Ok(id) => {
                    let node = &s.drives[&drive][id];
                    if conflict == "fail" {
                        Err(error(
                            409,
                            "nameAlreadyExists",
                            "The specified item name already exists.",
                        ))
                    } else {
                        Ok((node.parent.clone().unwrap_or_default(), node.name.clone()))
                    }
                }
                Err(Some((parent, name))) => Ok((parent.clone(), name.clone())),
                Err(None) => Err(error(404, "itemNotFound", "parent folder not found")),
            };
            match placement {
                Err(response) => (response, Some("error")),
                Ok((parent, name)) => {
                    let id = format!("sess{}", s.new_id());
                    let expires = SystemTime::now() + Duration::from_secs(3600);
                    s.sessions.insert(
                        id.clone(),
                        Session {
                            drive: drive.clone(),
                            parent,
                            name,
                            conflict,
                            total: None,
                            received: Vec::new(),
                            expires,
                        },
                    );
                    s.sessions_created += 1;
                    let body = json!({
                        "uploadUrl": format!("{base}/upload/{id}?sig=capability-{id}"),
                        "expirationDateTime": timestamp(expires),
                        "nextExpectedRanges": ["0-"],
                    });
                    (reply(200, body), Some("session"))
                }
            }
        }
        ("DELETE", "", Ok(id)) => {
            let id = id.clone();
            s.drives.get_mut(&drive).unwrap().remove(&id);
            (empty(204), None)
        }
        (_, _, Err(_)) => (
            error(404, "itemNotFound", "The resource could not be found."),
            Some("error"),
        ),
        _ => (
            error(400, "invalidRequest", "unsupported operation"),
            Some("error"),
        ),
    };
    let (response, kind) = response;
    let validator = match kind {
        Some("item") => Some(&schemas.drive_item),
        Some("collection") => Some(&schemas.collection),
        Some("session") => Some(&schemas.upload_session),
        Some("error") => Some(&schemas.odata_error),
        _ => None,
    };
    Ok(match validator {
        Some(v) => check_out(&mut s, v, response),
        None => response,
    })
}

/// Validates an outgoing JSON body (the mock's own answers must match the schema too).
fn check_out(
    s: &mut State,
    validator: &jsonschema::Validator,
    response: Response<Body>,
) -> Response<Body> {
    let (parts, body) = response.into_parts();
    let bytes = futures::executor::block_on(body.collect())
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(value) => {
            if let Some(v) = schema::violation(validator, &value) {
                s.violations.push(format!("response body: {v}: {value}"));
            }
        }
        Err(e) => s.violations.push(format!("response body is not JSON: {e}")),
    }
    Response::from_parts(parts, Full::new(bytes))
}

fn token(state: &Mutex<State>, body: &[u8]) -> Response<Body> {
    let form: HashMap<String, String> = url::form_urlencoded::parse(body).into_owned().collect();
    let mut s = state.lock().unwrap();
    let grant = form.get("grant_type").cloned().unwrap_or_default();
    s.token_requests.push(grant.clone());
    let bad = |s: &str| {
        reply(
            400,
            json!({ "error": "invalid_grant", "error_description": s }),
        )
    };
    if form.get("client_id").map(String::as_str) != Some(CLIENT_ID) {
        return reply(
            400,
            json!({ "error": "invalid_client", "error_description": "unknown client" }),
        );
    }
    let issue_refresh = match grant.as_str() {
        "authorization_code" => {
            let code = form.get("code").cloned().unwrap_or_default();
            let Some(challenge) = s.codes.remove(&code) else {
                return bad("AADSTS70008: code invalid or used");
            };
            let verifier = form.get("code_verifier").cloned().unwrap_or_default();
            let digest = ring::digest::digest(&ring::digest::SHA256, verifier.as_bytes());
            if base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest) != challenge {
                return bad("AADSTS501481: code_verifier does not match code_challenge");
            }
            true
        }
        "refresh_token" => {
            let presented = form.get("refresh_token").cloned().unwrap_or_default();
            let Some(i) = s.refresh_tokens.iter().position(|t| *t == presented) else {
                return bad("AADSTS70000: refresh token revoked or already used");
            };
            // Rotation: the old refresh token stops working.
            let old = s.refresh_tokens.remove(i);
            s.used_refresh_tokens.push(old);
            true
        }
        "client_credentials" => {
            if form.get("client_secret").map(String::as_str) != Some(CLIENT_SECRET) {
                return reply(
                    401,
                    json!({ "error": "invalid_client", "error_description": "AADSTS7000215: invalid client secret" }),
                );
            }
            false
        }
        _ => {
            return reply(
                400,
                json!({ "error": "unsupported_grant_type", "error_description": "" }),
            );
        }
    };
    s.next_id += 1;
    let access = format!("access-{}", s.next_id);
    let lifetime = s.token_lifetime;
    s.access_tokens.insert(
        access.clone(),
        SystemTime::now() + Duration::from_secs(lifetime),
    );
    let mut out = json!({ "token_type": "Bearer", "expires_in": lifetime, "access_token": access });
    if issue_refresh {
        let refresh = format!("refresh-{}", s.next_id);
        s.refresh_tokens.push(refresh.clone());
        out["refresh_token"] = json!(refresh);
    }
    reply(200, out)
}

#[allow(clippy::too_many_arguments)]
async fn upload(
    req: Request<Incoming>,
    state: &Mutex<State>,
    schemas: &schema::Schemas,
    _base: &str,
    method: &str,
    path: &str,
    has_auth: bool,
    content_range: Option<String>,
    content_length: Option<u64>,
) -> Result<Response<Body>, Cut> {
    let id = path.trim_start_matches("/upload/").to_string();
    let gone = {
        let mut s = state.lock().unwrap();
        if has_auth {
            s.violations.push(format!(
                "{method} to an upload URL carried an Authorization header"
            ));
            return Ok(error(
                401,
                "unauthenticated",
                "Upload URLs take no Authorization header.",
            ));
        }
        if let Some(i) = s.throttle.iter().position(|(t, _, _)| *t == Target::Upload) {
            let (_, status, secs) = s.throttle.remove(i);
            s.throttled += 1;
            let mut response = error(status, "activityLimitReached", "throttled");
            response
                .headers_mut()
                .insert("Retry-After", secs.to_string().parse().unwrap());
            return Ok(response);
        }
        let expired = s
            .sessions
            .get(&id)
            .is_some_and(|sess| sess.expires <= SystemTime::now());
        if expired {
            s.sessions.remove(&id);
        }
        if !s.sessions.contains_key(&id) {
            None
        } else {
            match method {
                "GET" => {
                    let sess = &s.sessions[&id];
                    let next = match sess.total {
                        Some(total) => format!("{}-{}", sess.received.len(), total - 1),
                        None => "0-".into(),
                    };
                    let body = json!({ "expirationDateTime": timestamp(sess.expires), "nextExpectedRanges": [next] });
                    return Ok(check_out(&mut s, &schemas.upload_session, reply(200, body)));
                }
                "DELETE" => {
                    s.sessions.remove(&id);
                    s.sessions_deleted += 1;
                    return Ok(empty(204));
                }
                "PUT" => Some(()),
                _ => return Ok(error(405, "invalidRequest", "method not allowed")),
            }
        }
    };
    if gone.is_none() {
        // Drain the body so the connection stays usable.
        let _ = req.into_body().collect().await;
        return Ok(error(
            404,
            "itemNotFound",
            "The upload session was not found.",
        ));
    }
    // PUT fragment.
    let range = content_range.as_deref().and_then(|r| {
        let r = r.strip_prefix("bytes ")?;
        let (span, total) = r.split_once('/')?;
        let (start, end) = span.split_once('-')?;
        Some((
            start.parse::<u64>().ok()?,
            end.parse::<u64>().ok()?,
            total.parse::<u64>().ok()?,
        ))
    });
    let Some((start, end, total)) = range.filter(|(s, e, _)| s <= e) else {
        state.lock().unwrap().violations.push(format!(
            "fragment without a valid Content-Range: {content_range:?}"
        ));
        return Ok(error(400, "invalidRange", "Content-Range is required"));
    };
    let len = end - start + 1;
    let (cut, fail, delay) = {
        let mut s = state.lock().unwrap();
        let cut = s.cut_fragments > 0;
        if cut {
            s.cut_fragments -= 1;
            s.cuts += 1;
        }
        let fail = !cut && s.fail_fragments > 0;
        if fail {
            s.fail_fragments -= 1;
        }
        (cut, fail, s.fragment_delay)
    };
    let mut body = req.into_body();
    let mut received = Vec::with_capacity(len as usize);
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else { break };
        if let Some(data) = frame.data_ref() {
            received.extend_from_slice(data);
        }
        if cut && received.len() as u64 >= len / 2 {
            // Drop the connection mid-fragment: hyper closes it when the service fails.
            return Err(Cut);
        }
    }
    if delay > Duration::ZERO {
        tokio::time::sleep(delay).await;
    }
    let mut s = state.lock().unwrap();
    let status = fragment(
        &mut s,
        &id,
        start,
        end,
        total,
        len,
        content_length,
        &received,
        fail,
    );
    let fragment_record = Fragment {
        session: id.clone(),
        start,
        end,
        status: status.status().as_u16(),
    };
    s.fragments.push(fragment_record);
    let kind = match status.status().as_u16() {
        200 | 201 => Some(&schemas.drive_item),
        202 => Some(&schemas.upload_session),
        _ if status.headers().get("content-type").is_some() => Some(&schemas.odata_error),
        _ => None,
    };
    Ok(match kind {
        Some(v) => check_out(&mut s, v, status),
        None => status,
    })
}

/// Returned by the service to make hyper drop the connection (a cut mid-fragment).
#[derive(Debug)]
pub struct Cut;

impl std::fmt::Display for Cut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection cut by the test")
    }
}

impl std::error::Error for Cut {}

#[allow(clippy::too_many_arguments)]
fn fragment(
    s: &mut State,
    id: &str,
    start: u64,
    end: u64,
    total: u64,
    len: u64,
    content_length: Option<u64>,
    body: &[u8],
    fail: bool,
) -> Response<Body> {
    if fail {
        return error(500, "generalException", "transient failure");
    }
    if content_length != Some(len) || body.len() as u64 != len {
        s.violations.push(format!(
            "fragment {start}-{end}: Content-Length {content_length:?}, body {} bytes",
            body.len()
        ));
        return error(400, "invalidRange", "length mismatch");
    }
    if len >= 60 * 1024 * 1024 {
        s.violations
            .push(format!("fragment {start}-{end} is 60 MiB or more"));
        return error(400, "invalidRange", "fragment too large");
    }
    if end + 1 < total && !len.is_multiple_of(UNIT) {
        s.violations.push(format!(
            "fragment {start}-{end} ({len} bytes) is not a multiple of 320 KiB"
        ));
        return error(400, "invalidRange", "fragment not aligned to 320 KiB");
    }
    let sess = s.sessions.get_mut(id).unwrap();
    if sess.total.is_some_and(|t| t != total) || end >= total {
        s.violations.push(format!(
            "fragment {start}-{end}/{total}: total differs or range beyond it"
        ));
        return error(400, "invalidRange", "total size mismatch");
    }
    sess.total = Some(total);
    let have = sess.received.len() as u64;
    if start < have {
        s.repeats += 1;
        return error(
            416,
            "invalidRange",
            "The requested range was already received.",
        );
    }
    if start > have {
        s.violations.push(format!(
            "fragment {start}-{end} leaves a gap after byte {have}"
        ));
        return error(400, "invalidRange", "fragments must be sent in order");
    }
    sess.received.extend_from_slice(body);
    s.bytes_accepted += len;
    let accepted = s.fragments.iter().filter(|f| f.status == 202).count() as u32 + 1;
    if s.expire_after_fragments == Some(accepted) {
        s.expire_after_fragments = None;
        for sess in s.sessions.values_mut() {
            sess.expires = SystemTime::now() - Duration::from_secs(1);
        }
    }
    if s.forget_sessions_after_fragments == Some(accepted) {
        s.forget_sessions_after_fragments = None;
        s.sessions.clear();
        return reply(
            202,
            json!({ "expirationDateTime": timestamp(SystemTime::now()), "nextExpectedRanges": [format!("{}-", end + 1)] }),
        );
    }
    let sess = s.sessions.get_mut(id).unwrap();
    if (sess.received.len() as u64) < total {
        let next = sess.received.len();
        let expires = sess.expires;
        return reply(
            202,
            json!({ "expirationDateTime": timestamp(expires), "nextExpectedRanges": [format!("{next}-{}", total - 1)] }),
        );
    }
    let sess = s.sessions.remove(id).unwrap();
    match s.commit(
        &sess.drive,
        &sess.parent,
        &sess.name,
        &sess.conflict,
        sess.received,
        false,
    ) {
        Ok((item, created)) => {
            let node = s.drives[&sess.drive][&item].clone();
            reply(
                if created { 201 } else { 200 },
                s.item_json(&sess.drive, &node),
            )
        }
        Err(response) => response,
    }
}

/// A non-repeating test pattern (xorshift), so offset mix-ups cannot cancel out.
pub fn data(len: usize, seed: u64) -> Vec<u8> {
    let mut state = 0x2545_f491_4f6c_dd1d_u64 ^ seed;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 32) as u8
        })
        .collect()
}

/// A client of the mock with small fragments and fast retries, its tokens in `token_file`.
pub fn client_builder(
    graph_url: &str,
    token_url: &str,
    token_file: &std::path::Path,
) -> onedrive::OneDriveClientBuilder {
    let oauth = onedrive::OAuthConfig::delegated(CLIENT_ID, token_file)
        .with_token_url(token_url)
        .build()
        .expect("oauth config");
    onedrive::OneDriveClient::builder(oauth)
        .with_graph_url(graph_url)
        .with_retry(
            onedrive::RetryPolicy::default()
                .with_base_delay(Duration::from_millis(10))
                .with_max_delay(Duration::from_millis(100)),
        )
        .with_fragment_size(UNIT)
        .with_simple_upload_limit(UNIT)
}

/// The one-time consent step, with the mock playing the browser's part.
pub async fn login(mock: &MockGraph, client: &onedrive::OneDriveClient) {
    let pkce = onedrive::Pkce::generate().expect("pkce");
    let url = url::Url::parse(&client.authenticator().authorization_url(&pkce)).expect("url");
    let query: HashMap<_, _> = url.query_pairs().into_owned().collect();
    assert_eq!(query["code_challenge_method"], "S256");
    assert_eq!(query["client_id"], CLIENT_ID);
    assert!(query["scope"].contains("offline_access"));
    mock.with(|s| {
        s.codes
            .insert("code-1".into(), query["code_challenge"].clone())
    });
    let redirect = format!("http://localhost/?code=code-1&state={}", pkce.state());
    client
        .authenticator()
        .complete_login(&redirect, &pkce)
        .await
        .expect("login");
}
