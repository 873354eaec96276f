//! nginx `stub_status` and PHP-FPM `pm.status_path` pages.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::crypto::CryptoProvider;

use crate::tls::Roots;

use crate::check::{Check, Observation, Unit};
use crate::error::Result;
use crate::status::Reason;

/// The largest status page read: PHP-FPM's `?full` page for a few hundred workers is well under
/// it; a URL pointing at something else (a download, an endless stream) must not fill memory.
pub const MAX_STATUS_PAGE: usize = 1 << 20;

/// Fetches a status page: the body on 200, else a verdict.
#[derive(Clone)]
struct StatusPage {
    url: reqwest::Url,
    /// The URL without password and query, as messages and `Debug` show it.
    shown: String,
    client: reqwest::Client,
}

impl std::fmt::Debug for StatusPage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StatusPage")
            .field("url", &self.shown)
            .finish_non_exhaustive()
    }
}

impl StatusPage {
    fn new(url: &str, provider: Arc<CryptoProvider>, roots: Option<&Roots>) -> Result<StatusPage> {
        let url = crate::tls::http_url("url", url)?;
        let client = crate::tls::http_client(
            provider,
            roots,
            Duration::from_secs(30),
            url.scheme() == "https",
        )?;
        Ok(StatusPage {
            shown: crate::checks::http::shown(&url),
            url,
            client,
        })
    }

    async fn fetch(&self) -> std::result::Result<(String, f64), Observation> {
        let begun = Instant::now();
        let mut response = self
            .client
            .get(self.url.clone())
            .send()
            .await
            .map_err(|e| crate::checks::http::classify(&e.without_url(), &self.shown))?;
        let code = response.status();
        if !code.is_success() {
            return Err(Observation::critical(
                Reason::HttpStatus,
                format!("{} answered {code}", self.shown),
            ));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| crate::checks::http::classify(&e.without_url(), &self.shown))?
        {
            if body.len() + chunk.len() > MAX_STATUS_PAGE {
                return Err(Observation::critical(
                    Reason::Protocol,
                    format!("{}: page larger than {MAX_STATUS_PAGE} bytes", self.shown),
                ));
            }
            body.extend_from_slice(&chunk);
        }
        let body = String::from_utf8_lossy(&body).into_owned();
        Ok((body, begun.elapsed().as_secs_f64()))
    }
}

/// nginx `stub_status` figures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NginxStatus {
    /// Open client connections.
    pub active: u64,
    /// Accepted connections since start.
    pub accepts: u64,
    /// Handled connections since start (below `accepts` when nginx hit a limit).
    pub handled: u64,
    /// Requests since start.
    pub requests: u64,
    /// Connections reading a request.
    pub reading: u64,
    /// Connections writing a response.
    pub writing: u64,
    /// Idle keep-alive connections.
    pub waiting: u64,
}

/// Parses a `stub_status` page.
pub fn parse_nginx_status(body: &str) -> std::result::Result<NginxStatus, String> {
    let mut lines = body.lines();
    let active = lines
        .next()
        .and_then(|l| l.strip_prefix("Active connections:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or("no `Active connections:` line")?;
    if lines.next().map(str::trim) != Some("server accepts handled requests") {
        return Err("no `server accepts handled requests` line".into());
    }
    let counters: Vec<u64> = lines
        .next()
        .ok_or("no counters line")?
        .split_whitespace()
        .map(|v| v.parse().map_err(|_| format!("`{v}` is not a number")))
        .collect::<std::result::Result<_, _>>()?;
    let [accepts, handled, requests] = counters[..] else {
        return Err("the counters line needs three numbers".into());
    };
    let last = lines.next().ok_or("no Reading/Writing/Waiting line")?;
    let field = |name: &str| -> std::result::Result<u64, String> {
        let after = last
            .split_once(name)
            .ok_or_else(|| format!("no `{name}`"))?
            .1;
        after
            .split_whitespace()
            .next()
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| format!("bad `{name}` value"))
    };
    Ok(NginxStatus {
        active,
        accepts,
        handled,
        requests,
        reading: field("Reading:")?,
        writing: field("Writing:")?,
        waiting: field("Waiting:")?,
    })
}

/// Reads nginx's `stub_status` page. Metrics `active_connections`, `reading`, `writing`,
/// `waiting`, `requests_total`, `dropped_total` (accepts − handled), `response_seconds`.
#[derive(Debug, Clone)]
pub struct NginxStatusCheck {
    page: StatusPage,
}

impl NginxStatusCheck {
    /// A check of the stub_status page at `url`, with the TLS algorithms of `provider` and
    /// `roots` for https (default: the system's).
    pub fn new(
        url: &str,
        provider: Arc<CryptoProvider>,
        roots: Option<&Roots>,
    ) -> Result<NginxStatusCheck> {
        Ok(NginxStatusCheck {
            page: StatusPage::new(url, provider, roots)?,
        })
    }
}

#[async_trait::async_trait]
impl Check for NginxStatusCheck {
    fn kind(&self) -> &'static str {
        "nginx"
    }

    fn primary_metric(&self) -> Option<&'static str> {
        Some("active_connections")
    }

    async fn run(&self) -> Observation {
        let (body, took) = match self.page.fetch().await {
            Ok(b) => b,
            Err(o) => return o,
        };
        match parse_nginx_status(&body) {
            Ok(s) => Observation::ok(format!(
                "{} active, {} requests served",
                s.active, s.requests
            ))
            .with_metric("active_connections", s.active as f64, Unit::Count)
            .with_metric("reading", s.reading as f64, Unit::Count)
            .with_metric("writing", s.writing as f64, Unit::Count)
            .with_metric("waiting", s.waiting as f64, Unit::Count)
            .with_metric("requests_total", s.requests as f64, Unit::Count)
            .with_metric(
                "dropped_total",
                s.accepts.saturating_sub(s.handled) as f64,
                Unit::Count,
            )
            .with_metric("response_seconds", took, Unit::Seconds),
            Err(e) => Observation::critical(
                Reason::Protocol,
                format!("{} is not a stub_status page: {e}", self.page.shown),
            ),
        }
    }
}

/// PHP-FPM pool figures from its plain-text status page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PhpFpmStatus {
    /// The pool's name.
    pub pool: String,
    /// Requests accepted since start.
    pub accepted_conn: u64,
    /// Requests waiting for a free worker.
    pub listen_queue: u64,
    /// Workers serving a request.
    pub active_processes: u64,
    /// Idle workers.
    pub idle_processes: u64,
    /// Times the pool hit `pm.max_children`.
    pub max_children_reached: u64,
    /// Requests slower than `request_slowlog_timeout`.
    pub slow_requests: u64,
}

/// Parses PHP-FPM's plain-text status page (`key: value` lines).
pub fn parse_php_fpm_status(body: &str) -> std::result::Result<PhpFpmStatus, String> {
    let value = |key: &str| -> Option<&str> {
        body.lines()
            .filter_map(|l| l.split_once(':'))
            .find(|(k, _)| k.trim() == key)
            .map(|(_, v)| v.trim())
    };
    let number = |key: &str| -> std::result::Result<u64, String> {
        value(key)
            .ok_or_else(|| format!("no `{key}` line"))?
            .parse()
            .map_err(|_| format!("`{key}` is not a number"))
    };
    Ok(PhpFpmStatus {
        pool: value("pool").ok_or("no `pool` line")?.to_owned(),
        accepted_conn: number("accepted conn")?,
        listen_queue: number("listen queue")?,
        active_processes: number("active processes")?,
        idle_processes: number("idle processes")?,
        max_children_reached: number("max children reached")?,
        slow_requests: number("slow requests")?,
    })
}

/// Reads PHP-FPM's status page (through the web server). Metrics `listen_queue`,
/// `active_processes`, `idle_processes`, `max_children_reached`, `accepted_total`,
/// `slow_requests`, `response_seconds`.
#[derive(Debug, Clone)]
pub struct PhpFpmStatusCheck {
    page: StatusPage,
}

impl PhpFpmStatusCheck {
    /// A check of the status page at `url`, with the TLS algorithms of `provider` and `roots`
    /// for https (default: the system's).
    pub fn new(
        url: &str,
        provider: Arc<CryptoProvider>,
        roots: Option<&Roots>,
    ) -> Result<PhpFpmStatusCheck> {
        Ok(PhpFpmStatusCheck {
            page: StatusPage::new(url, provider, roots)?,
        })
    }
}

#[async_trait::async_trait]
impl Check for PhpFpmStatusCheck {
    fn kind(&self) -> &'static str {
        "php_fpm"
    }

    fn primary_metric(&self) -> Option<&'static str> {
        Some("listen_queue")
    }

    async fn run(&self) -> Observation {
        let (body, took) = match self.page.fetch().await {
            Ok(b) => b,
            Err(o) => return o,
        };
        match parse_php_fpm_status(&body) {
            Ok(s) => Observation::ok(format!(
                "pool {}: {} active, {} idle, {} queued",
                s.pool, s.active_processes, s.idle_processes, s.listen_queue
            ))
            .with_metric("listen_queue", s.listen_queue as f64, Unit::Count)
            .with_metric("active_processes", s.active_processes as f64, Unit::Count)
            .with_metric("idle_processes", s.idle_processes as f64, Unit::Count)
            .with_metric(
                "max_children_reached",
                s.max_children_reached as f64,
                Unit::Count,
            )
            .with_metric("accepted_total", s.accepted_conn as f64, Unit::Count)
            .with_metric("slow_requests", s.slow_requests as f64, Unit::Count)
            .with_metric("response_seconds", took, Unit::Seconds),
            Err(e) => Observation::critical(
                Reason::Protocol,
                format!("{} is not a PHP-FPM status page: {e}", self.page.shown),
            ),
        }
    }
}
