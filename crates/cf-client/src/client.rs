//! The HTTP core: one [`Client`] per token, with retries, a client-side rate limiter, timeouts
//! and pagination streams.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::Stream;
use reqwest::Method;
use reqwest::header::HeaderMap;
use serde::de::DeserializeOwned;
use tokio::time::Instant;

use crate::auth::{Credentials, Secret};
use crate::envelope::{Envelope, ResultInfo};
use crate::error::TransportError;
use crate::{Error, Result};

/// Cloudflare's documented budget: 1,200 requests per 5 minutes per token.
pub const CLOUDFLARE_BUDGET: u32 = 1_200;
/// The window of [`CLOUDFLARE_BUDGET`].
pub const CLOUDFLARE_WINDOW: Duration = Duration::from_secs(300);

/// The longest `retry-after` honoured. Cloudflare's budget refills within its 5-minute window, so
/// a 429 asking for longer fails the call with [`Error::RateLimited`] instead of stalling every
/// caller of the client (and a 5xx's `retry-after` is shortened to it).
pub const MAX_RETRY_AFTER: Duration = CLOUDFLARE_WINDOW;

/// The largest answer read (a page of 5,000 DNS records is about 3 MiB): a longer body, announced
/// or streamed, fails the call with [`Error::Decode`] instead of growing memory without bound.
pub const MAX_RESPONSE_BYTES: usize = 64 << 20;

/// The default API root.
pub const DEFAULT_BASE_URL: &str = "https://api.cloudflare.com/client/v4";

/// Builds a [`Client`]; only [`build`](ClientBuilder::build) gives one, and it needs
/// credentials.
#[derive(Debug, Clone)]
pub struct ClientBuilder {
    base_url: String,
    credentials: Option<Credentials>,
    timeout: Duration,
    connect_timeout: Duration,
    max_retries: u32,
    backoff_base: Duration,
    backoff_max: Duration,
    budget: u32,
    window: Duration,
}

impl Default for ClientBuilder {
    fn default() -> Self {
        ClientBuilder {
            base_url: DEFAULT_BASE_URL.to_owned(),
            credentials: None,
            timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            max_retries: 6,
            backoff_base: Duration::from_millis(250),
            backoff_max: Duration::from_secs(20),
            // A margin below Cloudflare's 1,200 leaves room for other tools on the same token.
            budget: 1_100,
            window: CLOUDFLARE_WINDOW,
        }
    }
}

impl ClientBuilder {
    /// A builder configured from the environment, as the tools use it: `CF_API_TOKEN`, or
    /// `CF_API_EMAIL` with `CF_API_KEY` (legacy); `CF_API_URL` overrides the API root (a mock's
    /// URL, say). Missing credentials are reported by [`build`](ClientBuilder::build).
    pub fn from_env() -> Self {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let mut builder = ClientBuilder::default();
        if let Some(url) = var("CF_API_URL") {
            builder = builder.with_base_url(url);
        }
        if let Some(token) = var("CF_API_TOKEN") {
            builder = builder.with_token(token);
        } else if let (Some(email), Some(key)) = (var("CF_API_EMAIL"), var("CF_API_KEY")) {
            builder = builder.with_legacy_key(email, key);
        }
        builder
    }

    /// Authenticates with an API token (`Authorization: Bearer`).
    pub fn with_token(mut self, token: impl Into<Secret>) -> Self {
        self.credentials = Some(Credentials::Token(token.into()));
        self
    }

    /// Authenticates with the legacy account email and global API key.
    pub fn with_legacy_key(mut self, email: impl Into<String>, key: impl Into<Secret>) -> Self {
        self.credentials = Some(Credentials::LegacyKey {
            email: email.into(),
            key: key.into(),
        });
        self
    }

    /// The API root (default [`DEFAULT_BASE_URL`]); a local mock's URL in tests.
    pub fn with_base_url(mut self, url: impl Into<String>) -> Self {
        self.base_url = url.into();
        self
    }

    /// Sets the API root if `url` is given (a tool's `--api-url`), else keeps the current one.
    pub fn with_base_url_override(self, url: Option<String>) -> Self {
        match url {
            Some(url) => self.with_base_url(url),
            None => self,
        }
    }

    /// Time allowed for one attempt of a call, from sending to the last byte (default 30 s).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Time allowed to connect (default 10 s).
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Retries after a 5xx, 429, timeout or transport failure (default 6).
    pub fn with_max_retries(mut self, retries: u32) -> Self {
        self.max_retries = retries;
        self
    }

    /// Backoff: the first retry waits up to `base`, doubling up to `max`, with full jitter
    /// (defaults 250 ms and 20 s).
    pub fn with_backoff(mut self, base: Duration, max: Duration) -> Self {
        self.backoff_base = base;
        self.backoff_max = max;
        self
    }

    /// The client-side limit: at most `requests` per `window` (default 1,100 per 5 minutes,
    /// under Cloudflare's 1,200).
    pub fn with_rate_limit(mut self, requests: u32, window: Duration) -> Self {
        self.budget = requests;
        self.window = window;
        self
    }

    /// Checks the options and builds the client.
    pub fn build(self) -> Result<Client> {
        let invalid = |field: &str, reason: &str| Error::InvalidConfig {
            field: field.to_owned(),
            reason: reason.to_owned(),
        };
        let credentials = self.credentials.ok_or_else(|| {
            invalid(
                "credentials",
                "an API token (with_token) or email and key (with_legacy_key) is required",
            )
        })?;
        let auth = credentials.headers()?;
        let base = self.base_url.trim_end_matches('/').to_owned();
        if !(base.starts_with("https://") || base.starts_with("http://")) {
            return Err(invalid("base_url", "must start with https:// or http://"));
        }
        if self.budget == 0 || self.window.is_zero() {
            return Err(invalid(
                "rate_limit",
                "requests and window must be positive",
            ));
        }
        if self.timeout.is_zero() {
            return Err(invalid("timeout", "must be positive"));
        }
        // rustls on ring, passed explicitly: no process-wide provider is installed.
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .and_then(|b| {
                let verifier = rustls_platform_verifier::Verifier::new(provider)?;
                Ok(b.dangerous()
                    .with_custom_certificate_verifier(Arc::new(verifier))
                    .with_no_client_auth())
            })
            .map_err(|e| invalid("tls", &e.to_string()))?;
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .connect_timeout(self.connect_timeout)
            .user_agent(concat!("hostguard-cf-client/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| invalid("http", &e.to_string()))?;
        Ok(Client {
            inner: Arc::new(Inner {
                http,
                base,
                auth,
                timeout: self.timeout,
                max_retries: self.max_retries,
                backoff_base: self.backoff_base,
                backoff_max: self.backoff_max,
                limiter: RateLimiter::new(self.budget, self.window),
                stats: Counters::default(),
            }),
        })
    }
}

/// An async Cloudflare API v4 client. Cheap to clone (shared connection pool, rate limiter and
/// counters).
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("base", &self.inner.base)
            .field("credentials", &"[redacted]")
            .finish_non_exhaustive()
    }
}

struct Inner {
    http: reqwest::Client,
    base: String,
    auth: HeaderMap,
    timeout: Duration,
    max_retries: u32,
    backoff_base: Duration,
    backoff_max: Duration,
    limiter: RateLimiter,
    stats: Counters,
}

#[derive(Default)]
struct Counters {
    requests: AtomicU64,
    retries: AtomicU64,
    rate_limited: AtomicU64,
}

/// What the client has done so far (for reports and benchmarks).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClientStats {
    /// HTTP requests sent, retries included.
    pub requests: u64,
    /// Attempts that were retries.
    pub retries: u64,
    /// Answers that were HTTP 429.
    pub rate_limited: u64,
}

/// One successful answer: the `result` and `result_info` of the envelope.
#[derive(Debug, Clone)]
pub(crate) struct Answer {
    pub(crate) result: serde_json::Value,
    pub(crate) info: Option<ResultInfo>,
}

/// A request in the making (method, path below the base, query, JSON body).
#[derive(Debug, Clone)]
pub(crate) struct Call {
    pub(crate) method: Method,
    pub(crate) path: String,
    pub(crate) query: Vec<(String, String)>,
    pub(crate) body: Option<serde_json::Value>,
}

impl Call {
    pub(crate) fn new(method: Method, path: impl Into<String>) -> Self {
        Call {
            method,
            path: path.into(),
            query: Vec::new(),
            body: None,
        }
    }

    pub(crate) fn get(path: impl Into<String>) -> Self {
        Call::new(Method::GET, path)
    }

    pub(crate) fn query(mut self, key: &str, value: impl ToString) -> Self {
        self.query.push((key.to_owned(), value.to_string()));
        self
    }

    pub(crate) fn body(mut self, body: serde_json::Value) -> Self {
        self.body = Some(body);
        self
    }

    fn describe(&self) -> String {
        format!("{} {}", self.method, self.path)
    }
}

/// Decodes `value` as `T`, naming the request when it does not fit.
pub(crate) fn decode<T: DeserializeOwned>(request: &str, value: serde_json::Value) -> Result<T> {
    serde_json::from_value(value).map_err(|e| Error::Decode {
        request: request.to_owned(),
        reason: e.to_string(),
    })
}

/// Why an attempt failed, and whether another may succeed.
enum Attempt {
    Retry {
        wait: Option<Duration>,
        error: Error,
    },
    Fatal(Error),
}

impl Client {
    /// A builder; set credentials with [`with_token`](ClientBuilder::with_token).
    pub fn builder() -> ClientBuilder {
        ClientBuilder::default()
    }

    /// Counters of requests, retries and 429 answers since the client was built.
    pub fn stats(&self) -> ClientStats {
        let s = &self.inner.stats;
        ClientStats {
            requests: s.requests.load(Ordering::Relaxed),
            retries: s.retries.load(Ordering::Relaxed),
            rate_limited: s.rate_limited.load(Ordering::Relaxed),
        }
    }

    /// Checks that the token is valid and active (`GET /user/tokens/verify`); returns its
    /// status (`active`). Bad tokens give an [`Error::Api`] for which
    /// [`is_auth`](Error::is_auth) holds.
    pub async fn verify_token(&self) -> Result<String> {
        #[derive(serde::Deserialize)]
        struct Verify {
            status: String,
        }
        let call = Call::get("/user/tokens/verify");
        let request = call.describe();
        let answer = self.send(call).await?;
        let verify: Verify = decode(&request, answer.result)?;
        Ok(verify.status)
    }

    /// Sends `call` and decodes its result as `T`.
    pub(crate) async fn send_as<T: DeserializeOwned>(&self, call: Call) -> Result<T> {
        let request = call.describe();
        let answer = self.send(call).await?;
        decode(&request, answer.result)
    }

    /// Sends `call` with rate limiting, timeouts and retries; returns the successful envelope's
    /// result.
    pub(crate) async fn send(&self, call: Call) -> Result<Answer> {
        let inner = &*self.inner;
        let mut attempt = 0u32;
        loop {
            inner.limiter.acquire().await;
            inner.stats.requests.fetch_add(1, Ordering::Relaxed);
            if attempt > 0 {
                inner.stats.retries.fetch_add(1, Ordering::Relaxed);
            }
            match self.attempt(&call).await {
                Ok(answer) => return Ok(answer),
                Err(Attempt::Fatal(error)) => return Err(error),
                Err(Attempt::Retry { wait, error }) => {
                    if attempt >= inner.max_retries {
                        return Err(error);
                    }
                    let backoff = self.backoff(attempt);
                    let wait = wait.map_or(backoff, |w| w.max(backoff / 4));
                    tracing::debug!(request = %call.describe(), ?wait, %error, "retrying");
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                }
            }
        }
    }

    /// Full jitter: a random wait below `base * 2^attempt`, capped.
    fn backoff(&self, attempt: u32) -> Duration {
        let inner = &*self.inner;
        let ceiling = inner
            .backoff_base
            .saturating_mul(1u32 << attempt.min(16))
            .min(inner.backoff_max);
        let millis = ceiling.as_millis().max(1) as u64;
        Duration::from_millis(fastrand::u64(millis / 2..=millis))
    }

    async fn attempt(&self, call: &Call) -> std::result::Result<Answer, Attempt> {
        let inner = &*self.inner;
        let request = call.describe();
        let url = format!("{}{}", inner.base, call.path);
        let mut builder = inner
            .http
            .request(call.method.clone(), &url)
            .headers(inner.auth.clone())
            .timeout(inner.timeout);
        if !call.query.is_empty() {
            builder = builder.query(&call.query);
        }
        if let Some(body) = &call.body {
            builder = builder.json(body);
        }
        let timeout_error = || Error::Timeout {
            request: request.clone(),
            timeout: inner.timeout,
        };
        let transport = |e: reqwest::Error| {
            if e.is_timeout() {
                Attempt::Retry {
                    wait: None,
                    error: timeout_error(),
                }
            } else {
                Attempt::Retry {
                    wait: None,
                    error: Error::Transport {
                        request: request.clone(),
                        source: TransportError(Box::new(e.without_url())),
                    },
                }
            }
        };
        let mut response = builder.send().await.map_err(transport)?;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let too_large = || {
            Attempt::Fatal(Error::Decode {
                request: request.clone(),
                reason: format!("HTTP {status}: answer larger than {MAX_RESPONSE_BYTES} bytes"),
            })
        };
        if response
            .content_length()
            .is_some_and(|n| n > MAX_RESPONSE_BYTES as u64)
        {
            return Err(too_large());
        }
        let mut bytes = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(transport)? {
            if bytes.len() + chunk.len() > MAX_RESPONSE_BYTES {
                return Err(too_large());
            }
            bytes.extend_from_slice(&chunk);
        }
        if status == 429 {
            inner.stats.rate_limited.fetch_add(1, Ordering::Relaxed);
            if retry_after.is_some_and(|wait| wait > MAX_RETRY_AFTER) {
                return Err(Attempt::Fatal(Error::RateLimited {
                    request,
                    retry_after,
                }));
            }
            // Everyone sharing this client waits: the budget is per token, not per call.
            if let Some(wait) = retry_after {
                inner.limiter.pause_for(wait);
            }
            return Err(Attempt::Retry {
                wait: retry_after,
                error: Error::RateLimited {
                    request,
                    retry_after,
                },
            });
        }
        let envelope: std::result::Result<Envelope, _> = serde_json::from_slice(&bytes);
        if status >= 500 {
            let errors = envelope.map(|e| e.errors).unwrap_or_default();
            return Err(Attempt::Retry {
                wait: retry_after.map(|wait| wait.min(MAX_RETRY_AFTER)),
                error: Error::Api {
                    request,
                    status,
                    errors,
                },
            });
        }
        let envelope = envelope.map_err(|e| {
            Attempt::Fatal(Error::Decode {
                request: request.clone(),
                reason: format!("HTTP {status}, not a v4 envelope: {e}"),
            })
        })?;
        if !envelope.success || !(200..300).contains(&status) {
            return Err(Attempt::Fatal(Error::Api {
                request,
                status,
                errors: envelope.errors,
            }));
        }
        Ok(Answer {
            result: envelope.result,
            info: envelope.result_info,
        })
    }

    /// Every item of a page-based list, fetched page by page as the stream is polled.
    pub(crate) fn paged<T: DeserializeOwned + Send + 'static>(
        &self,
        call: Call,
        per_page: u32,
    ) -> impl Stream<Item = Result<T>> + Send + 'static {
        let client = self.clone();
        let pages = futures::stream::try_unfold(Some(1u64), move |page| {
            let client = client.clone();
            let call = call.clone();
            async move {
                let Some(page) = page else {
                    return Ok(None);
                };
                let call = call.query("page", page).query("per_page", per_page);
                let request = call.describe();
                let answer = client.send(call).await?;
                let items: Vec<T> = decode(&request, answer.result)?;
                let info = answer.info.unwrap_or_default();
                let last = match info.total_pages {
                    Some(total) => page >= total,
                    None => (items.len() as u64) < u64::from(per_page),
                };
                let next = if last || items.is_empty() {
                    None
                } else {
                    Some(page + 1)
                };
                Ok::<_, Error>(Some((items, next)))
            }
        });
        flatten(pages)
    }

    /// Every item of a cursor-based list (`result_info.cursors.after`).
    pub(crate) fn cursored<T: DeserializeOwned + Send + 'static>(
        &self,
        call: Call,
        per_page: u32,
    ) -> impl Stream<Item = Result<T>> + Send + 'static {
        let client = self.clone();
        let pages =
            futures::stream::try_unfold(Some(None), move |cursor: Option<Option<String>>| {
                let client = client.clone();
                let call = call.clone();
                async move {
                    let Some(cursor) = cursor else {
                        return Ok(None);
                    };
                    let mut call = call.query("per_page", per_page);
                    if let Some(cursor) = cursor {
                        call = call.query("cursor", cursor);
                    }
                    let request = call.describe();
                    let answer = client.send(call).await?;
                    let items: Vec<T> = decode(&request, answer.result)?;
                    let after = answer
                        .info
                        .and_then(|i| i.cursors)
                        .and_then(|c| c.after)
                        .filter(|a| !a.is_empty());
                    let next = match after {
                        Some(after) if !items.is_empty() => Some(Some(after)),
                        _ => None,
                    };
                    Ok::<_, Error>(Some((items, next)))
                }
            });
        flatten(pages)
    }
}

fn flatten<T: Send + 'static>(
    pages: impl Stream<Item = Result<Vec<T>>> + Send + 'static,
) -> impl Stream<Item = Result<T>> + Send + 'static {
    use futures::StreamExt;
    pages.flat_map(|page| {
        let items: Vec<Result<T>> = match page {
            Ok(items) => items.into_iter().map(Ok).collect(),
            Err(e) => vec![Err(e)],
        };
        futures::stream::iter(items)
    })
}

/// A sliding-window limiter: at most `budget` requests started in any `window`, and a shared
/// pause after a 429. Its queue holds at most `budget` instants.
struct RateLimiter {
    budget: usize,
    window: Duration,
    state: std::sync::Mutex<LimiterState>,
}

struct LimiterState {
    sent: VecDeque<Instant>,
    paused_until: Option<Instant>,
}

impl RateLimiter {
    fn new(budget: u32, window: Duration) -> Self {
        let budget = budget as usize;
        RateLimiter {
            budget,
            window,
            state: std::sync::Mutex::new(LimiterState {
                sent: VecDeque::with_capacity(budget.min(4096)),
                paused_until: None,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LimiterState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn pause_for(&self, wait: Duration) {
        let Some(until) = Instant::now().checked_add(wait) else {
            return;
        };
        let mut state = self.lock();
        if state.paused_until.is_none_or(|p| p < until) {
            state.paused_until = Some(until);
        }
    }

    async fn acquire(&self) {
        loop {
            let wake = {
                let now = Instant::now();
                let mut state = self.lock();
                while state
                    .sent
                    .front()
                    .is_some_and(|t| now.duration_since(*t) >= self.window)
                {
                    state.sent.pop_front();
                }
                match state.paused_until {
                    Some(until) if until > now => until,
                    _ if state.sent.len() < self.budget => {
                        state.sent.push_back(now);
                        return;
                    }
                    _ => state.sent.front().map_or(now, |t| *t + self.window),
                }
            };
            tokio::time::sleep_until(wake).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn limiter_spreads_requests_over_the_window() {
        let limiter = RateLimiter::new(3, Duration::from_secs(10));
        let start = Instant::now();
        for _ in 0..3 {
            limiter.acquire().await;
        }
        assert_eq!(start.elapsed(), Duration::ZERO);
        limiter.acquire().await;
        assert_eq!(start.elapsed(), Duration::from_secs(10));
        limiter.pause_for(Duration::from_secs(30));
        limiter.acquire().await;
        assert_eq!(start.elapsed(), Duration::from_secs(40));
    }

    /// A server that answers every request with `429` and `retry-after: {retry_after}`.
    async fn throttling_server(retry_after: &'static str) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                // The request (a GET, no body) is read whole before answering.
                let mut request = Vec::new();
                let mut buf = [0u8; 4096];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(n @ 1..) => request.extend_from_slice(&buf[..n]),
                        _ => break,
                    }
                }
                let body = r#"{"success":false,"errors":[{"code":10000,"message":"rate limited"}],"messages":[],"result":null}"#;
                let answer = format!(
                    "HTTP/1.1 429 Too Many Requests\r\nretry-after: {retry_after}\r\n\
                     content-type: application/json\r\ncontent-length: {}\r\n\
                     connection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(answer.as_bytes()).await;
            }
        });
        format!("http://{addr}/client/v4")
    }

    #[tokio::test]
    async fn an_absurd_retry_after_fails_the_call_instead_of_panicking_or_stalling() {
        let base = throttling_server("18446744073709551615").await;
        let client = Client::builder()
            .with_token("t")
            .with_base_url(base)
            .with_backoff(Duration::from_millis(1), Duration::from_millis(2))
            .build()
            .expect("client");
        let call = tokio::time::timeout(Duration::from_secs(10), client.verify_token()).await;
        let err = call.expect("answered in time").expect_err("429");
        assert!(
            matches!(err, Error::RateLimited { retry_after: Some(w), .. } if w > MAX_RETRY_AFTER),
            "{err:?}"
        );
        assert_eq!(client.stats().requests, 1, "no retry after a refused wait");
    }

    #[tokio::test]
    async fn an_endless_answer_is_refused_at_the_size_limit() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}/client/v4", listener.local_addr().expect("addr"));
        tokio::spawn(async move {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            let _ = stream.read(&mut [0u8; 4096]).await;
            let head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\
                        transfer-encoding: chunked\r\n\r\n";
            let _ = stream.write_all(head.as_bytes()).await;
            // JSON whitespace, a quarter over the limit, then the end of the body.
            let mut chunk = format!("{:x}\r\n", 1 << 16).into_bytes();
            chunk.extend(std::iter::repeat_n(b' ', 1 << 16));
            chunk.extend_from_slice(b"\r\n");
            for _ in 0..(MAX_RESPONSE_BYTES + MAX_RESPONSE_BYTES / 4) >> 16 {
                if stream.write_all(&chunk).await.is_err() {
                    return;
                }
            }
            let _ = stream.write_all(b"0\r\n\r\n").await;
        });
        let client = Client::builder()
            .with_token("t")
            .with_base_url(base)
            .build()
            .expect("client");
        let err = client.verify_token().await.expect_err("too large");
        assert!(
            matches!(&err, Error::Decode { reason, .. } if reason.contains("larger than")),
            "{err:?}"
        );
    }

    #[test]
    fn builder_needs_credentials_and_a_sane_url() {
        let err = Client::builder().build().expect_err("no credentials");
        assert!(err.to_string().contains("credentials"), "{err}");
        let err = Client::builder()
            .with_token("t")
            .with_base_url("ftp://x")
            .build()
            .expect_err("bad url");
        assert!(err.to_string().contains("base_url"), "{err}");
        let client = Client::builder()
            .with_token("secret-token-value")
            .build()
            .expect("client");
        assert!(!format!("{client:?}").contains("secret-token-value"));
    }
}
