//! HTTP(S) status, latency and body match.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::crypto::CryptoProvider;

use crate::tls::Roots;

use crate::check::{Check, Observation, Unit};
use crate::error::{Result, invalid};
use crate::status::Reason;

/// Fetches a URL; expects a status (default any 2xx) and optionally a text in the body.
/// Metrics `response_seconds`, `status_code`, `body_bytes`.
///
/// A password or query in the URL (where credentials go) never reaches messages, reports or
/// `Debug`: they show the URL without them.
#[derive(Clone)]
pub struct HttpCheck {
    url: reqwest::Url,
    /// The URL as shown (see [`shown`]).
    shown: String,
    client: reqwest::Client,
    expect_status: Vec<u16>,
    body_contains: Option<String>,
    max_body: usize,
}

impl std::fmt::Debug for HttpCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpCheck")
            .field("url", &self.shown)
            .field("expect_status", &self.expect_status)
            .field("body_contains", &self.body_contains)
            .field("max_body", &self.max_body)
            .finish_non_exhaustive()
    }
}

/// `url` as messages, reports and `Debug` show it: without its password and query.
pub(crate) fn shown(url: &reqwest::Url) -> String {
    let mut url = url.clone();
    let _ = url.set_password(None);
    url.set_query(None);
    url.to_string()
}

/// Builds an [`HttpCheck`].
#[must_use]
pub struct HttpCheckBuilder {
    url: String,
    provider: Arc<CryptoProvider>,
    roots: Option<Roots>,
    expect_status: Vec<u16>,
    body_contains: Option<String>,
    max_body: usize,
    timeout: Duration,
}

impl HttpCheck {
    /// Starts a check of `url` (http or https) with the TLS algorithms of `provider`.
    pub fn builder(url: impl Into<String>, provider: Arc<CryptoProvider>) -> HttpCheckBuilder {
        HttpCheckBuilder {
            url: url.into(),
            provider,
            roots: None,
            expect_status: Vec::new(),
            body_contains: None,
            max_body: 1 << 20,
            timeout: Duration::from_secs(30),
        }
    }
}

impl HttpCheckBuilder {
    /// Trust anchors for https (default: the system's).
    pub fn with_roots(mut self, roots: Roots) -> Self {
        self.roots = Some(roots);
        self
    }

    /// Accepted status codes (default: any 2xx).
    pub fn with_expect_status(mut self, codes: impl IntoIterator<Item = u16>) -> Self {
        self.expect_status = codes.into_iter().collect();
        self
    }

    /// Text the body must contain.
    pub fn with_body_contains(mut self, text: impl Into<String>) -> Self {
        self.body_contains = Some(text.into());
        self
    }

    /// The most body read for matching (default 1 MiB).
    pub fn with_max_body(mut self, bytes: usize) -> Self {
        self.max_body = bytes;
        self
    }

    /// An upper bound inside the client (the monitor's timeout also applies; default 30 s).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Checks the URL and builds the client.
    pub fn build(self) -> Result<HttpCheck> {
        let url = crate::tls::http_url("url", &self.url)?;
        if let Some(bad) = self
            .expect_status
            .iter()
            .find(|c| !(100..=599).contains(*c))
        {
            return Err(invalid(
                "expect_status",
                format!("{bad} is not an HTTP status"),
            ));
        }
        let client = crate::tls::http_client(
            self.provider,
            self.roots.as_ref(),
            self.timeout,
            url.scheme() == "https",
        )?;
        Ok(HttpCheck {
            shown: shown(&url),
            url,
            client,
            expect_status: self.expect_status,
            body_contains: self.body_contains,
            max_body: self.max_body,
        })
    }
}

/// Names what failed in a reqwest error, down its source chain.
pub(crate) fn describe(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// A reqwest failure as a verdict: refused, DNS, certificate, timeout or other.
pub(crate) fn classify(e: &reqwest::Error, what: &str) -> Observation {
    let text = describe(e);
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        // hyper wraps the rustls error in io::Errors, whose `source()` skips what they wrap.
        let mut io = s.downcast_ref::<std::io::Error>();
        while let Some(e) = io {
            if e.kind() == std::io::ErrorKind::ConnectionRefused {
                return Observation::critical(
                    Reason::Refused,
                    format!("{what}: connection refused"),
                );
            }
            let inner = e.get_ref().map(|i| i as &(dyn std::error::Error + 'static));
            if let Some(tls) = inner.and_then(|i| i.downcast_ref::<rustls::Error>()) {
                return Observation::critical(
                    crate::checks::tls::reason_of(tls),
                    format!("{what}: {tls}"),
                );
            }
            io = inner.and_then(|i| i.downcast_ref::<std::io::Error>());
        }
        if let Some(tls) = s.downcast_ref::<rustls::Error>() {
            return Observation::critical(
                crate::checks::tls::reason_of(tls),
                format!("{what}: {tls}"),
            );
        }
        source = s.source();
    }
    let lower = text.to_ascii_lowercase();
    let reason = if e.is_timeout() {
        Reason::Timeout
    } else if lower.contains("dns")
        || lower.contains("failed to lookup")
        || lower.contains("name or service not known")
    {
        Reason::Dns
    } else if e.is_connect() {
        Reason::Connect
    } else {
        Reason::Protocol
    };
    Observation::critical(reason, format!("{what}: {text}"))
}

#[async_trait::async_trait]
impl Check for HttpCheck {
    fn kind(&self) -> &'static str {
        "http"
    }

    fn primary_metric(&self) -> Option<&'static str> {
        Some("response_seconds")
    }

    async fn run(&self) -> Observation {
        let begun = Instant::now();
        let mut response = match self.client.get(self.url.clone()).send().await {
            Ok(r) => r,
            Err(e) => return classify(&e.without_url(), &self.shown),
        };
        let code = response.status().as_u16();
        let mut body = Vec::new();
        while body.len() < self.max_body {
            match response.chunk().await {
                Ok(Some(chunk)) => body.extend_from_slice(&chunk),
                Ok(None) => break,
                Err(e) => return classify(&e.without_url(), &self.shown),
            }
        }
        body.truncate(self.max_body);
        let took = begun.elapsed().as_secs_f64();
        let status_ok = if self.expect_status.is_empty() {
            (200..300).contains(&code)
        } else {
            self.expect_status.contains(&code)
        };
        let observation = if !status_ok {
            Observation::critical(
                Reason::HttpStatus,
                format!("{} answered {code}", self.shown),
            )
        } else if let Some(needle) = self
            .body_contains
            .as_deref()
            .filter(|n| !contains(&body, n.as_bytes()))
        {
            Observation::critical(
                Reason::BodyMismatch,
                format!("{} answered {code} without `{needle}`", self.shown),
            )
        } else {
            Observation::ok(format!(
                "{} answered {code} in {:.1} ms",
                self.shown,
                took * 1e3
            ))
        };
        observation
            .with_metric("response_seconds", took, Unit::Seconds)
            .with_metric("status_code", f64::from(code), Unit::Number)
            .with_metric("body_bytes", body.len() as f64, Unit::Bytes)
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle)
}
