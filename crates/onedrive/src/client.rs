//! The Graph client: drives, items by path and by id, folders, small uploads and downloads.

use std::time::Duration;

use reqwest::Method;
use serde::Deserialize;
use serde_json::json;

use crate::auth::{Authenticator, OAuthConfig};
use crate::error::{Error, Result};
use crate::http::{Http, Response, RetryPolicy};
use crate::names::RemotePath;

/// Microsoft Graph v1.0.
pub const DEFAULT_GRAPH_URL: &str = "https://graph.microsoft.com/v1.0";
/// Upload fragments must be a multiple of this (320 KiB).
pub const FRAGMENT_UNIT: u64 = 320 * 1024;
/// Upload fragments must be smaller than this (60 MiB).
pub const FRAGMENT_LIMIT: u64 = 60 * 1024 * 1024;
/// Default fragment size: 32 units, 10 MiB.
pub const DEFAULT_FRAGMENT_SIZE: u64 = 32 * FRAGMENT_UNIT;
/// Default largest file sent by a single PUT (4 MiB, the limit every account type documents).
pub const DEFAULT_SIMPLE_UPLOAD_LIMIT: u64 = 4 * 1024 * 1024;

/// Which drive.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Drive {
    /// The signed-in user's drive (`/me/drive`; delegated tokens only).
    Me,
    /// A drive by id (`/drives/{id}`).
    Id(String),
    /// A user's drive by user principal name or id (`/users/{upn}/drive`; the usual address
    /// with client credentials).
    User(String),
}

impl Drive {
    fn base(&self) -> String {
        match self {
            Drive::Me => "/me/drive".into(),
            Drive::Id(id) => format!("/drives/{}", encode_segment(id)),
            Drive::User(upn) => format!("/users/{}/drive", encode_segment(upn)),
        }
    }
}

/// An item in a drive.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ItemRef {
    /// By path from the drive's root (`root:/a/b:`; the empty path is the root).
    Path(RemotePath),
    /// By item id (`items/{id}`).
    Id(String),
}

impl From<RemotePath> for ItemRef {
    fn from(path: RemotePath) -> Self {
        ItemRef::Path(path)
    }
}

fn encode_segment(text: &str) -> String {
    percent_encoding::utf8_percent_encode(text, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// What happens when an item of the same name exists (`@microsoft.graph.conflictBehavior`).
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Conflict {
    /// Fail with [`Error::AlreadyExists`].
    Fail,
    /// Replace the existing item (the default).
    #[default]
    Replace,
    /// Keep both: the server picks a new name (`name 1.txt`).
    Rename,
}

impl Conflict {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Conflict::Fail => "fail",
            Conflict::Replace => "replace",
            Conflict::Rename => "rename",
        }
    }
}

/// The properties of a drive item this client reads.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DriveItem {
    /// The item id.
    pub id: String,
    /// The item's name.
    pub name: String,
    /// Size in bytes (for a folder, of everything in it).
    pub size: u64,
    /// True for folders.
    pub is_folder: bool,
    /// The file's quickXorHash (base64), if the server reported one.
    pub quick_xor_hash: Option<String>,
}

#[derive(Deserialize)]
struct RawItem {
    id: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    size: Option<u64>,
    #[serde(default)]
    folder: Option<serde_json::Value>,
    #[serde(default)]
    file: Option<RawFile>,
}

#[derive(Deserialize)]
struct RawFile {
    #[serde(default)]
    hashes: Option<RawHashes>,
}

#[derive(Deserialize)]
struct RawHashes {
    #[serde(rename = "quickXorHash", default)]
    quick_xor_hash: Option<String>,
}

impl From<RawItem> for DriveItem {
    fn from(raw: RawItem) -> Self {
        Self {
            id: raw.id,
            name: raw.name,
            size: raw.size.unwrap_or(0),
            is_folder: raw.folder.is_some(),
            quick_xor_hash: raw
                .file
                .and_then(|f| f.hashes)
                .and_then(|h| h.quick_xor_hash),
        }
    }
}

pub(crate) fn parse_item(what: &str, body: &[u8]) -> Result<DriveItem> {
    serde_json::from_slice::<RawItem>(body)
        .map(DriveItem::from)
        .map_err(|e| Error::invalid_response(what, format!("driveItem: {e}")))
}

/// Settings for a [`OneDriveClient`].
#[derive(Debug)]
pub struct OneDriveClientBuilder {
    oauth: OAuthConfig,
    graph_url: String,
    retry: RetryPolicy,
    fragment_size: u64,
    simple_upload_limit: u64,
    extra_roots: Vec<Vec<u8>>,
}

impl OneDriveClientBuilder {
    /// Also trusts this root certificate (DER), besides the system's (a TLS-inspecting proxy's
    /// private CA, tests). May be given several times.
    pub fn with_root_certificate_der(mut self, der: impl Into<Vec<u8>>) -> Self {
        self.extra_roots.push(der.into());
        self
    }

    /// Graph's base URL (default [`DEFAULT_GRAPH_URL`]; tests point it at a mock).
    pub fn with_graph_url(mut self, url: impl Into<String>) -> Self {
        self.graph_url = url.into();
        self
    }

    /// The retry policy for transient failures.
    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Upload fragment size: a multiple of 320 KiB, under 60 MiB (default 10 MiB). Each upload
    /// in flight holds one fragment in memory.
    pub fn with_fragment_size(mut self, bytes: u64) -> Self {
        self.fragment_size = bytes;
        self
    }

    /// Files up to this size go in one PUT, larger ones through an upload session (default
    /// 4 MiB; at most 250 MB, Graph's documented limit). Zero-byte files always use one PUT.
    pub fn with_simple_upload_limit(mut self, bytes: u64) -> Self {
        self.simple_upload_limit = bytes;
        self
    }

    /// Checks the settings and builds the client.
    pub fn build(self) -> Result<OneDriveClient> {
        if self.fragment_size == 0
            || !self.fragment_size.is_multiple_of(FRAGMENT_UNIT)
            || self.fragment_size >= FRAGMENT_LIMIT
        {
            return Err(Error::InvalidConfig(format!(
                "fragment size {} is not a multiple of 320 KiB below 60 MiB",
                self.fragment_size
            )));
        }
        if self.simple_upload_limit > 250_000_000 {
            return Err(Error::InvalidConfig(format!(
                "simple upload limit {} is above Graph's 250 MB",
                self.simple_upload_limit
            )));
        }
        let graph_url = self.graph_url.trim_end_matches('/').to_owned();
        url::Url::parse(&graph_url)
            .map_err(|e| Error::InvalidConfig(format!("Graph URL `{graph_url}`: {e}")))?;
        let http = Http::new(self.retry, &self.extra_roots)?;
        Ok(OneDriveClient {
            auth: Authenticator::new(self.oauth, http.clone()),
            http,
            graph_url,
            fragment_size: self.fragment_size,
            simple_upload_limit: self.simple_upload_limit,
            buffers: crate::upload::BufferPool::default(),
        })
    }
}

/// A Microsoft Graph OneDrive client; cheap to clone (clones share connections and tokens).
#[derive(Clone)]
pub struct OneDriveClient {
    pub(crate) auth: Authenticator,
    pub(crate) http: Http,
    graph_url: String,
    pub(crate) fragment_size: u64,
    pub(crate) simple_upload_limit: u64,
    pub(crate) buffers: crate::upload::BufferPool,
}

impl std::fmt::Debug for OneDriveClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OneDriveClient")
            .field("graph_url", &self.graph_url)
            .field("fragment_size", &self.fragment_size)
            .finish_non_exhaustive()
    }
}

impl OneDriveClient {
    /// Starts building a client that authenticates with `oauth`.
    pub fn builder(oauth: OAuthConfig) -> OneDriveClientBuilder {
        OneDriveClientBuilder {
            oauth,
            graph_url: DEFAULT_GRAPH_URL.into(),
            retry: RetryPolicy::default(),
            fragment_size: DEFAULT_FRAGMENT_SIZE,
            simple_upload_limit: DEFAULT_SIMPLE_UPLOAD_LIMIT,
            extra_roots: Vec::new(),
        }
    }

    /// The authenticator (for the one-time consent step).
    pub fn authenticator(&self) -> &Authenticator {
        &self.auth
    }

    /// The upload fragment size.
    pub fn fragment_size(&self) -> u64 {
        self.fragment_size
    }

    pub(crate) fn item_url(&self, drive: &Drive, item: &ItemRef, action: &str) -> String {
        let base = format!("{}{}", self.graph_url, drive.base());
        match item {
            ItemRef::Path(path) if path.is_root() => format!("{base}/root{action}"),
            ItemRef::Path(path) => format!("{base}/root:/{}:{action}", path.encoded()),
            ItemRef::Id(id) => format!("{base}/items/{}{action}", encode_segment(id)),
        }
    }

    /// Sends an authenticated API request (retrying transient failures; refreshing the token
    /// once on 401).
    pub(crate) async fn api(
        &self,
        what: &str,
        method: Method,
        url: &str,
        body: Option<(&str, Vec<u8>)>,
    ) -> Result<Response> {
        let mut refreshed = false;
        loop {
            let token = self.auth.access_token().await?;
            let response = self
                .http
                .send(what, || {
                    let mut request = self
                        .http
                        .client()
                        .request(method.clone(), url)
                        .bearer_auth(token.expose())
                        .timeout(Duration::from_secs(300));
                    if let Some((content_type, bytes)) = &body {
                        request = request
                            .header("Content-Type", *content_type)
                            .body(bytes.clone());
                    }
                    request
                })
                .await?;
            if response.status == 401 && !refreshed {
                refreshed = true;
                self.auth.invalidate().await;
                continue;
            }
            return Ok(response);
        }
    }

    async fn api_json(
        &self,
        what: &str,
        method: Method,
        url: &str,
        body: &serde_json::Value,
    ) -> Result<Response> {
        let bytes = serde_json::to_vec(body).map_err(|e| Error::InvalidConfig(e.to_string()))?;
        self.api(what, method, url, Some(("application/json", bytes)))
            .await
    }

    /// The item, or `None` if it does not exist.
    pub async fn get_item(&self, drive: &Drive, item: &ItemRef) -> Result<Option<DriveItem>> {
        let what = format!("get {}", describe(item));
        let response = self
            .api(&what, Method::GET, &self.item_url(drive, item, ""), None)
            .await?;
        match response.status {
            200 => parse_item(&what, &response.body).map(Some),
            404 => Ok(None),
            _ => Err(response.into_error(&what)),
        }
    }

    /// A folder's children (every page).
    pub async fn list_children(&self, drive: &Drive, folder: &ItemRef) -> Result<Vec<DriveItem>> {
        #[derive(Deserialize)]
        struct Page {
            value: Vec<RawItem>,
            #[serde(rename = "@odata.nextLink", default)]
            next_link: Option<String>,
        }
        let what = format!("list {}", describe(folder));
        let mut url = self.item_url(drive, folder, "/children");
        let mut items = Vec::new();
        loop {
            let response = self.api(&what, Method::GET, &url, None).await?;
            if response.status != 200 {
                return Err(response.into_error(&what));
            }
            let page: Page = serde_json::from_slice(&response.body)
                .map_err(|e| Error::invalid_response(&what, format!("children: {e}")))?;
            items.extend(page.value.into_iter().map(DriveItem::from));
            match page.next_link {
                Some(next) if next.starts_with(&self.graph_url) => url = next,
                Some(_) => {
                    return Err(Error::invalid_response(
                        &what,
                        "@odata.nextLink points outside the Graph URL",
                    ));
                }
                None => return Ok(items),
            }
        }
    }

    /// Creates folder `name` in `parent`.
    pub async fn create_folder(
        &self,
        drive: &Drive,
        parent: &ItemRef,
        name: &str,
        conflict: Conflict,
    ) -> Result<DriveItem> {
        if let Some(reason) = crate::names::name_problem(name) {
            return Err(Error::InvalidName {
                path: name.to_owned(),
                reason,
            });
        }
        let what = format!("create folder {name} in {}", describe(parent));
        let body = json!({
            "name": name,
            "folder": {},
            "@microsoft.graph.conflictBehavior": conflict.as_str(),
        });
        let response = self
            .api_json(
                &what,
                Method::POST,
                &self.item_url(drive, parent, "/children"),
                &body,
            )
            .await?;
        match response.status {
            200 | 201 => parse_item(&what, &response.body),
            409 => Err(Error::AlreadyExists {
                path: format!("{}/{name}", describe(parent)),
            }),
            _ => Err(response.into_error(&what)),
        }
    }

    /// Makes sure folder `path` exists, creating it and its parents as needed.
    pub async fn ensure_folder(&self, drive: &Drive, path: &RemotePath) -> Result<DriveItem> {
        let mut missing = Vec::new();
        let mut probe = path.clone();
        // Walk up to the deepest folder that exists, then create downwards.
        let mut existing = loop {
            match self.get_item(drive, &ItemRef::Path(probe.clone())).await? {
                Some(item) if item.is_folder => break item,
                Some(_) => {
                    return Err(Error::AlreadyExists {
                        path: format!("{probe} (a file, where a folder is needed)"),
                    });
                }
                None if probe.is_root() => {
                    return Err(Error::invalid_response("get drive root", "root not found"));
                }
                None => {
                    missing.push(probe.clone());
                    probe = probe.parent();
                }
            }
        };
        for folder in missing.into_iter().rev() {
            let name = folder.file_name().unwrap_or_default().to_owned();
            let parent = ItemRef::Id(existing.id.clone());
            existing = match self
                .create_folder(drive, &parent, &name, Conflict::Fail)
                .await
            {
                Ok(item) => item,
                // Created meanwhile by someone else: use theirs.
                Err(Error::AlreadyExists { .. }) => self
                    .get_item(drive, &ItemRef::Path(folder.clone()))
                    .await?
                    .filter(|item| item.is_folder)
                    .ok_or_else(|| Error::AlreadyExists {
                        path: format!("{folder} (not a folder)"),
                    })?,
                Err(e) => return Err(e),
            };
        }
        Ok(existing)
    }

    /// Deletes an item (a missing item is not an error).
    pub async fn delete_item(&self, drive: &Drive, item: &ItemRef) -> Result<()> {
        let what = format!("delete {}", describe(item));
        let response = self
            .api(&what, Method::DELETE, &self.item_url(drive, item, ""), None)
            .await?;
        match response.status {
            200 | 204 | 404 => Ok(()),
            _ => Err(response.into_error(&what)),
        }
    }

    /// Downloads a (small) file whole, or `None` if it does not exist.
    pub async fn download(&self, drive: &Drive, item: &ItemRef) -> Result<Option<Vec<u8>>> {
        let what = format!("download {}", describe(item));
        let response = self
            .api(
                &what,
                Method::GET,
                &self.item_url(drive, item, "/content"),
                None,
            )
            .await?;
        match response.status {
            200 => Ok(Some(response.body)),
            404 => Ok(None),
            _ => Err(response.into_error(&what)),
        }
    }

    /// Uploads `data` to `path` in one PUT (for small files, zero bytes included). The result is
    /// not verified here; [`OneDriveClient::upload_file`] verifies.
    pub async fn put_small(
        &self,
        drive: &Drive,
        path: &RemotePath,
        data: Vec<u8>,
        conflict: Conflict,
    ) -> Result<DriveItem> {
        let what = format!("upload {path}");
        let url = format!(
            "{}?@microsoft.graph.conflictBehavior={}",
            self.item_url(drive, &ItemRef::Path(path.clone()), "/content"),
            conflict.as_str()
        );
        let response = self
            .api(
                &what,
                Method::PUT,
                &url,
                Some(("application/octet-stream", data)),
            )
            .await?;
        match response.status {
            200 | 201 => parse_item(&what, &response.body),
            409 => Err(Error::AlreadyExists {
                path: path.to_string(),
            }),
            _ => Err(response.into_error(&what)),
        }
    }
}

pub(crate) fn describe(item: &ItemRef) -> String {
    match item {
        ItemRef::Path(path) if path.is_root() => "the drive root".into(),
        ItemRef::Path(path) => path.to_string(),
        ItemRef::Id(id) => format!("item {id}"),
    }
}
