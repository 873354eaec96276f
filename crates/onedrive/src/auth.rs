//! OAuth2 for Microsoft Graph: authorization code with PKCE and refresh tokens (personal and
//! work accounts), client credentials (OneDrive for Business, application permissions).
//!
//! # The one-time consent step on a headless server
//!
//! The authorization code flow needs a person to sign in once in a browser; the server then
//! keeps a refresh token and never needs the person again (each refresh returns a new refresh
//! token, which is stored at once, so the chain does not break).
//!
//! 1. Register an application in Entra ID (Azure portal, "App registrations") as a public
//!    client with the redirect URI `http://localhost` and the delegated permissions
//!    `Files.ReadWrite offline_access`.
//! 2. On the server, [`Pkce::generate`] and [`Authenticator::authorization_url`] (the
//!    `onedrive-export login` tool does both) print a URL.
//! 3. Open it in a browser on any machine, sign in and consent. The browser is sent to
//!    `http://localhost/?code=...&state=...`, which fails to load on that machine: that is
//!    expected. Copy the whole address from the address bar.
//! 4. Paste it into the waiting tool: [`Authenticator::complete_login`] checks `state`, redeems
//!    the code with the PKCE verifier, and writes the token file (mode 0600).
//!
//! The code is valid for about ten minutes and works once. The PKCE verifier never leaves the
//! server, so a leaked redirect URL is useless to anyone else.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;
use zeroize::Zeroizing;

use crate::error::{Error, Result};
use crate::http::Http;

/// A secret string (token, client secret, authorization code): zeroized on drop, never shown by
/// `Debug` or `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Zeroizing<String>);

impl Secret {
    /// Wraps a secret.
    pub fn new(value: impl Into<String>) -> Self {
        Self(Zeroizing::new(value.into()))
    }

    /// The secret text, for sending it where it belongs.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Self::new(value)
    }
}

/// Microsoft's identity platform.
pub const DEFAULT_AUTHORITY: &str = "https://login.microsoftonline.com";
/// Delegated scopes for exports to the signed-in user's drive.
pub const DEFAULT_SCOPES: &str = "Files.ReadWrite offline_access";
/// The application scope for client credentials.
pub const CLIENT_CREDENTIALS_SCOPE: &str = "https://graph.microsoft.com/.default";

/// Tokens are refreshed when they have less than this left.
const REFRESH_MARGIN: Duration = Duration::from_secs(300);

/// The longest token lifetime believed (Microsoft's access tokens last about an hour): a longer
/// `expires_in` from the token endpoint, or `expires_at` in the token file, is not trusted.
const MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(24 * 3600);

/// How the client gets its tokens.
#[derive(Debug, Clone)]
enum Grant {
    /// Authorization code + refresh tokens kept in a token file.
    Delegated { token_file: PathBuf },
    /// Client credentials (application permissions, OneDrive for Business).
    ClientCredentials,
}

/// OAuth2 settings; build with [`OAuthConfig::delegated`] or [`OAuthConfig::client_credentials`].
#[derive(Debug, Clone)]
pub struct OAuthConfigBuilder {
    client_id: String,
    client_secret: Option<Secret>,
    tenant: String,
    authority: String,
    token_url: Option<String>,
    scopes: Option<String>,
    redirect_uri: String,
    grant: Grant,
}

/// Validated OAuth2 settings (see [`OAuthConfigBuilder`]).
#[derive(Debug, Clone)]
pub struct OAuthConfig {
    client_id: String,
    client_secret: Option<Secret>,
    authorize_url: String,
    token_url: String,
    scopes: String,
    redirect_uri: String,
    grant: Grant,
}

impl OAuthConfig {
    /// Authorization code with PKCE and refresh tokens for `client_id`, keeping tokens in
    /// `token_file` (tenant `common`: personal and work accounts).
    pub fn delegated(
        client_id: impl Into<String>,
        token_file: impl Into<PathBuf>,
    ) -> OAuthConfigBuilder {
        OAuthConfigBuilder::new(
            client_id.into(),
            Grant::Delegated {
                token_file: token_file.into(),
            },
        )
    }

    /// Client credentials for `client_id` in `tenant` with `secret` (OneDrive for Business,
    /// with application permissions; address drives as `/users/{upn}/drive` or `/drives/{id}`).
    pub fn client_credentials(
        tenant: impl Into<String>,
        client_id: impl Into<String>,
        secret: Secret,
    ) -> OAuthConfigBuilder {
        let mut builder = OAuthConfigBuilder::new(client_id.into(), Grant::ClientCredentials);
        builder.tenant = tenant.into();
        builder.client_secret = Some(secret);
        builder
    }

    /// The token endpoint.
    pub fn token_url(&self) -> &str {
        &self.token_url
    }
}

impl OAuthConfigBuilder {
    fn new(client_id: String, grant: Grant) -> Self {
        Self {
            client_id,
            client_secret: None,
            tenant: "common".into(),
            authority: DEFAULT_AUTHORITY.into(),
            token_url: None,
            scopes: None,
            redirect_uri: "http://localhost".into(),
            grant,
        }
    }

    /// The tenant (`common`, `consumers`, `organizations`, or a tenant id or domain).
    pub fn with_tenant(mut self, tenant: impl Into<String>) -> Self {
        self.tenant = tenant.into();
        self
    }

    /// The identity platform's base URL (default [`DEFAULT_AUTHORITY`]).
    pub fn with_authority(mut self, authority: impl Into<String>) -> Self {
        self.authority = authority.into();
        self
    }

    /// Overrides the token endpoint (default `{authority}/{tenant}/oauth2/v2.0/token`), for
    /// national clouds and tests.
    pub fn with_token_url(mut self, url: impl Into<String>) -> Self {
        self.token_url = Some(url.into());
        self
    }

    /// Overrides the scopes (space separated).
    pub fn with_scopes(mut self, scopes: impl Into<String>) -> Self {
        self.scopes = Some(scopes.into());
        self
    }

    /// The redirect URI registered for the application (default `http://localhost`).
    pub fn with_redirect_uri(mut self, uri: impl Into<String>) -> Self {
        self.redirect_uri = uri.into();
        self
    }

    /// A client secret for a confidential delegated client (public clients have none).
    pub fn with_client_secret(mut self, secret: Secret) -> Self {
        self.client_secret = Some(secret);
        self
    }

    /// Checks the settings.
    pub fn build(self) -> Result<OAuthConfig> {
        if self.client_id.trim().is_empty() {
            return Err(Error::InvalidConfig("client id is empty".into()));
        }
        if self.tenant.is_empty() || self.tenant.contains(['/', '?', '#']) {
            return Err(Error::InvalidConfig(format!(
                "tenant `{}` is not a tenant name or id",
                self.tenant
            )));
        }
        let authority = self.authority.trim_end_matches('/');
        let token_url = self
            .token_url
            .unwrap_or_else(|| format!("{authority}/{}/oauth2/v2.0/token", self.tenant));
        for (what, url) in [("token URL", &token_url), ("authority", &self.authority)] {
            url::Url::parse(url)
                .map_err(|e| Error::InvalidConfig(format!("{what} `{url}`: {e}")))?;
        }
        let scopes = self.scopes.unwrap_or_else(|| match self.grant {
            Grant::Delegated { .. } => DEFAULT_SCOPES.into(),
            Grant::ClientCredentials => CLIENT_CREDENTIALS_SCOPE.into(),
        });
        if matches!(self.grant, Grant::ClientCredentials) && self.client_secret.is_none() {
            return Err(Error::InvalidConfig(
                "client credentials need a client secret".into(),
            ));
        }
        Ok(OAuthConfig {
            client_id: self.client_id,
            client_secret: self.client_secret,
            authorize_url: format!("{authority}/{}/oauth2/v2.0/authorize", self.tenant),
            token_url,
            scopes,
            redirect_uri: self.redirect_uri,
            grant: self.grant,
        })
    }
}

/// A PKCE verifier (S256) and the `state` value of one login attempt; keep it until the code
/// comes back.
#[derive(Clone)]
pub struct Pkce {
    verifier: Secret,
    state: String,
}

impl std::fmt::Debug for Pkce {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pkce").finish_non_exhaustive()
    }
}

impl Pkce {
    /// A fresh random verifier (43 base64url characters, 256 bits) and state.
    pub fn generate() -> Result<Self> {
        let rng = ring::rand::SystemRandom::new();
        let mut bytes = Zeroizing::new([0u8; 48]);
        ring::rand::SecureRandom::fill(&rng, &mut bytes[..])
            .map_err(|_| Error::Auth("the system random generator failed".into()))?;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        Ok(Self {
            verifier: Secret::new(b64.encode(&bytes[..32])),
            state: b64.encode(&bytes[32..]),
        })
    }

    /// The S256 challenge: base64url(SHA-256(verifier)).
    pub fn challenge(&self) -> String {
        let digest = ring::digest::digest(&ring::digest::SHA256, self.verifier.expose().as_bytes());
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest)
    }

    /// The `state` value the redirect must carry back.
    pub fn state(&self) -> &str {
        &self.state
    }
}

/// What is stored in the token file (JSON, mode 0600).
#[derive(Serialize, Deserialize)]
struct StoredTokens {
    refresh_token: String,
    #[serde(default)]
    access_token: Option<String>,
    /// Seconds since the epoch.
    #[serde(default)]
    expires_at: u64,
}

impl Drop for StoredTokens {
    fn drop(&mut self) {
        use zeroize::Zeroize;
        self.refresh_token.zeroize();
        if let Some(token) = &mut self.access_token {
            token.zeroize();
        }
    }
}

#[derive(Clone)]
struct AccessToken {
    token: Secret,
    expires_at: SystemTime,
}

/// The token endpoint's answer.
#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    #[serde(default)]
    refresh_token: Option<String>,
    #[serde(default)]
    expires_in: Option<u64>,
}

impl Drop for TokenResponse {
    fn drop(&mut self) {
        use zeroize::Zeroize;
        self.access_token.zeroize();
        if let Some(token) = &mut self.refresh_token {
            token.zeroize();
        }
    }
}

#[derive(Deserialize)]
struct TokenError {
    #[serde(default)]
    error: String,
    #[serde(default)]
    error_description: String,
}

/// Gets, caches and refreshes access tokens; shared by every request of a client.
#[derive(Clone)]
pub struct Authenticator {
    inner: Arc<AuthInner>,
}

struct AuthInner {
    config: OAuthConfig,
    http: Http,
    /// Held across a refresh, so concurrent requests refresh once.
    cached: Mutex<Option<AccessToken>>,
    /// Set after a 401: the access token in the token file was rejected too, so refresh.
    distrust_stored: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Authenticator {
    /// An authenticator for `config`, sending its token requests through `http`.
    pub(crate) fn new(config: OAuthConfig, http: Http) -> Self {
        Self {
            inner: Arc::new(AuthInner {
                config,
                http,
                cached: Mutex::new(None),
                distrust_stored: std::sync::atomic::AtomicBool::new(false),
            }),
        }
    }

    /// An authenticator with its own HTTP client (rustls on ring, system roots).
    pub fn from_config(config: OAuthConfig) -> Result<Self> {
        Ok(Self::new(
            config,
            Http::new(crate::RetryPolicy::default(), &[])?,
        ))
    }

    /// The URL the user opens to sign in and consent (step 2 of the consent step).
    pub fn authorization_url(&self, pkce: &Pkce) -> String {
        let config = &self.inner.config;
        let mut url = match url::Url::parse(&config.authorize_url) {
            Ok(url) => url,
            // build() checked the authority; keep the plain string if it somehow fails.
            Err(_) => return config.authorize_url.clone(),
        };
        url.query_pairs_mut()
            .append_pair("client_id", &config.client_id)
            .append_pair("response_type", "code")
            .append_pair("redirect_uri", &config.redirect_uri)
            .append_pair("response_mode", "query")
            .append_pair("scope", &config.scopes)
            .append_pair("state", pkce.state())
            .append_pair("code_challenge", &pkce.challenge())
            .append_pair("code_challenge_method", "S256");
        url.into()
    }

    /// Completes the login from the redirect address the browser ended on (or from the bare
    /// code): checks `state`, redeems the code and stores the tokens.
    pub async fn complete_login(&self, redirect: &str, pkce: &Pkce) -> Result<()> {
        let redirect = redirect.trim();
        let code = if redirect.contains("code=") || redirect.contains("error=") {
            let query = redirect.split_once('?').map_or(redirect, |(_, q)| q);
            let pairs: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect();
            let get = |key: &str| pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone());
            if let Some(error) = get("error") {
                return Err(Error::Auth(format!(
                    "the sign-in was refused: {error}: {}",
                    get("error_description").unwrap_or_default()
                )));
            }
            if get("state").as_deref() != Some(pkce.state()) {
                return Err(Error::Auth(
                    "the redirect's state does not match this login attempt".into(),
                ));
            }
            Secret::new(get("code").unwrap_or_default())
        } else {
            Secret::new(redirect)
        };
        if code.expose().is_empty() {
            return Err(Error::Auth("the redirect carries no code".into()));
        }
        let config = &self.inner.config;
        let mut form = vec![
            ("grant_type", "authorization_code"),
            ("client_id", &config.client_id),
            ("code", code.expose()),
            ("redirect_uri", &config.redirect_uri),
            ("code_verifier", pkce.verifier.expose()),
            ("scope", &config.scopes),
        ];
        if let Some(secret) = &config.client_secret {
            form.push(("client_secret", secret.expose()));
        }
        let token = self.request_token(&form).await?;
        *self.inner.cached.lock().await = Some(token);
        Ok(())
    }

    /// A valid access token: the cached one, or a new one when it has under five minutes left.
    pub(crate) async fn access_token(&self) -> Result<Secret> {
        let mut cached = self.inner.cached.lock().await;
        if let Some(token) = cached.as_ref()
            && token.expires_at > SystemTime::now() + REFRESH_MARGIN
        {
            return Ok(token.token.clone());
        }
        let token = self.fetch_token().await?;
        let secret = token.token.clone();
        *cached = Some(token);
        Ok(secret)
    }

    /// Forgets the cached access token (after a 401), so the next request refreshes.
    pub(crate) async fn invalidate(&self) {
        let mut cached = self.inner.cached.lock().await;
        *cached = None;
        self.inner
            .distrust_stored
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    async fn fetch_token(&self) -> Result<AccessToken> {
        let config = &self.inner.config;
        match &config.grant {
            Grant::ClientCredentials => {
                let secret = config.client_secret.as_ref().map_or("", |s| s.expose());
                self.request_token(&[
                    ("grant_type", "client_credentials"),
                    ("client_id", &config.client_id),
                    ("client_secret", secret),
                    ("scope", &config.scopes),
                ])
                .await
            }
            Grant::Delegated { token_file } => {
                let stored = read_token_file(token_file).await?;
                let remaining = stored.expires_at.saturating_sub(now_secs());
                let distrusted = self
                    .inner
                    .distrust_stored
                    .swap(false, std::sync::atomic::Ordering::SeqCst);
                // A lifetime beyond the cap is a corrupt file: refresh instead.
                if let Some(access) = &stored.access_token
                    && remaining > REFRESH_MARGIN.as_secs()
                    && remaining <= MAX_TOKEN_LIFETIME.as_secs()
                    && !distrusted
                {
                    return Ok(AccessToken {
                        token: Secret::new(access.clone()),
                        expires_at: UNIX_EPOCH + Duration::from_secs(stored.expires_at),
                    });
                }
                let mut form = vec![
                    ("grant_type", "refresh_token"),
                    ("client_id", config.client_id.as_str()),
                    ("refresh_token", stored.refresh_token.as_str()),
                    ("scope", config.scopes.as_str()),
                ];
                if let Some(secret) = &config.client_secret {
                    form.push(("client_secret", secret.expose()));
                }
                self.request_token(&form).await
            }
        }
    }

    /// Posts a grant to the token endpoint; stores a returned refresh token before returning.
    async fn request_token(&self, form: &[(&str, &str)]) -> Result<AccessToken> {
        let config = &self.inner.config;
        let body = Zeroizing::new(
            url::form_urlencoded::Serializer::new(String::new())
                .extend_pairs(form)
                .finish(),
        );
        let grant = form
            .iter()
            .find(|(k, _)| *k == "grant_type")
            .map_or("", |(_, v)| *v);
        let what = format!("token request ({grant})");
        let response = self
            .inner
            .http
            .send(&what, || {
                self.inner
                    .http
                    .client()
                    .post(&config.token_url)
                    .header("Content-Type", "application/x-www-form-urlencoded")
                    .body(body.as_bytes().to_vec())
            })
            .await?;
        let status = response.status;
        if !(200..300).contains(&status) {
            let detail = serde_json::from_slice::<TokenError>(&response.body)
                .map(|e| format!("{}: {}", e.error, e.error_description))
                .unwrap_or_else(|_| format!("HTTP {status}"));
            return Err(Error::Auth(format!(
                "the token endpoint refused the {grant} grant: {detail}"
            )));
        }
        let parsed: TokenResponse = serde_json::from_slice(&response.body)
            .map_err(|e| Error::invalid_response(&what, format!("token response: {e}")))?;
        let lifetime = parsed
            .expires_in
            .unwrap_or(3600)
            .min(MAX_TOKEN_LIFETIME.as_secs());
        let expires_at = SystemTime::now() + Duration::from_secs(lifetime);
        if let (Grant::Delegated { token_file }, Some(refresh)) =
            (&config.grant, &parsed.refresh_token)
        {
            let stored = StoredTokens {
                refresh_token: refresh.clone(),
                access_token: Some(parsed.access_token.clone()),
                expires_at: now_secs() + lifetime,
            };
            write_token_file(token_file, &stored).await?;
        } else if matches!(config.grant, Grant::Delegated { .. }) && grant != "refresh_token" {
            return Err(Error::Auth(
                "the token endpoint returned no refresh token (is offline_access among the scopes?)"
                    .into(),
            ));
        }
        Ok(AccessToken {
            token: Secret::new(parsed.access_token.clone()),
            expires_at,
        })
    }
}

async fn read_token_file(path: &Path) -> Result<StoredTokens> {
    let owned = path.to_path_buf();
    let bytes = tokio::task::spawn_blocking(move || std::fs::read(&owned))
        .await
        .map_err(|e| Error::io(path, std::io::Error::other(e)))?;
    let bytes = match bytes {
        Ok(bytes) => Zeroizing::new(bytes),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Error::Auth(format!(
                "no token file at {}: run the one-time consent step (onedrive-export login)",
                path.display()
            )));
        }
        Err(e) => return Err(Error::io(path, e)),
    };
    serde_json::from_slice(&bytes).map_err(|e| Error::CorruptState {
        path: path.to_path_buf(),
        // serde_json's message names a position, never the content.
        detail: format!("token file: {}", e.classify_text()),
    })
}

trait ClassifyText {
    fn classify_text(&self) -> String;
}

impl ClassifyText for serde_json::Error {
    fn classify_text(&self) -> String {
        format!(
            "{:?} error at line {} column {}",
            self.classify(),
            self.line(),
            self.column()
        )
    }
}

async fn write_token_file(path: &Path, tokens: &StoredTokens) -> Result<()> {
    let json = Zeroizing::new(
        serde_json::to_vec_pretty(tokens).map_err(|e| Error::io(path, std::io::Error::other(e)))?,
    );
    let owned = path.to_path_buf();
    tokio::task::spawn_blocking(move || crate::state::write_atomic(&owned, &json, 0o600))
        .await
        .map_err(|e| Error::io(path, std::io::Error::other(e)))?
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A token endpoint that answers every request with `body` (HTTP 200, JSON), on a thread.
    fn token_endpoint(body: &'static str) -> String {
        use std::io::{BufRead, Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}/token", listener.local_addr().expect("addr"));
        std::thread::spawn(move || {
            for mut stream in listener.incoming().flatten() {
                // The form is read whole (head lines, then Content-Length bytes) first.
                let mut reader = std::io::BufReader::new(&stream);
                let (mut line, mut length) = (String::new(), 0usize);
                while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                    let lower = line.to_ascii_lowercase();
                    if let Some(value) = lower.strip_prefix("content-length:") {
                        length = value.trim().parse().unwrap_or(0);
                    }
                    line.clear();
                }
                let _ = reader.read_exact(&mut vec![0; length]);
                let _ = write!(
                    stream,
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\
                     content-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        url
    }

    #[tokio::test]
    async fn an_absurd_expires_in_is_capped_not_a_panic() {
        let url = token_endpoint(r#"{"access_token":"fresh","expires_in":18446744073709551615}"#);
        let config = OAuthConfig::client_credentials("tenant", "client", Secret::new("s"))
            .with_token_url(url)
            .build()
            .expect("config");
        let auth = Authenticator::from_config(config).expect("authenticator");
        let token = auth.access_token().await.expect("token");
        assert_eq!(token.expose(), "fresh");
        let cached = auth.inner.cached.lock().await;
        let expires_at = cached.as_ref().expect("cached").expires_at;
        assert!(expires_at <= SystemTime::now() + MAX_TOKEN_LIFETIME);
    }

    #[tokio::test]
    async fn a_token_file_with_an_absurd_expiry_is_refreshed_not_a_panic() {
        let url = token_endpoint(
            r#"{"access_token":"refreshed","refresh_token":"r2","expires_in":3600}"#,
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("tokens.json");
        std::fs::write(
            &file,
            r#"{"refresh_token":"r1","access_token":"stale","expires_at":18446744073709551615}"#,
        )
        .expect("token file");
        let config = OAuthConfig::delegated("client", &file)
            .with_token_url(url)
            .build()
            .expect("config");
        let auth = Authenticator::from_config(config).expect("authenticator");
        let token = auth.access_token().await.expect("token");
        assert_eq!(token.expose(), "refreshed");
        let stored = std::fs::read_to_string(&file).expect("token file");
        assert!(stored.contains("r2"), "the new refresh token is stored");
    }
}
