//! Alerts on a change of state, and the sinks that deliver them.

use std::sync::{Arc, Mutex};

use rustls::crypto::CryptoProvider;

use crate::tls::Roots;
use std::time::Duration;

use serde::Serialize;

use crate::error::{Error, Result, invalid};
use crate::status::{Reason, Status};

/// A change of a check's reported state.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Alert {
    /// The host the check ran on.
    pub host: String,
    /// The check's name.
    pub check: String,
    /// The kind of check.
    pub kind: &'static str,
    /// The state before (`None` on the first run).
    pub previous: Option<Status>,
    /// The new state.
    pub status: Status,
    /// Why.
    pub reason: Reason,
    /// The check's message.
    pub message: String,
    /// Unix time of the run, seconds.
    pub at: u64,
}

/// Something that delivers alerts: a webhook, a command, a test's memory.
#[async_trait::async_trait]
pub trait AlertSink: Send + Sync {
    /// A short name for logs (`webhook`, `command`).
    fn name(&self) -> &str;

    /// Delivers one alert (retrying as the sink sees fit); an error means it was not delivered.
    async fn send(&self, alert: &Alert) -> Result<()>;
}

impl std::fmt::Debug for dyn AlertSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AlertSink({})", self.name())
    }
}

/// Keeps alerts in memory (for tests and embedding).
#[derive(Debug, Default)]
pub struct MemorySink {
    alerts: Mutex<Vec<Alert>>,
}

impl MemorySink {
    /// An empty sink.
    pub fn new() -> MemorySink {
        MemorySink::default()
    }

    /// Every alert received so far.
    pub fn alerts(&self) -> Vec<Alert> {
        self.alerts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

#[async_trait::async_trait]
impl AlertSink for MemorySink {
    fn name(&self) -> &str {
        "memory"
    }
    async fn send(&self, alert: &Alert) -> Result<()> {
        self.alerts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(alert.clone());
        Ok(())
    }
}

/// POSTs each alert as JSON to a URL, retrying with exponential backoff on errors and 5xx.
///
/// Webhook URLs often carry their credential (a token in the path or query, user and password):
/// `Debug` and errors show only the URL's origin.
pub struct WebhookSink {
    url: reqwest::Url,
    /// The URL's origin (scheme, host, port), the only part shown.
    shown: String,
    client: reqwest::Client,
    attempts: u32,
    backoff: Duration,
}

impl std::fmt::Debug for WebhookSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookSink")
            .field("url", &self.shown)
            .field("attempts", &self.attempts)
            .field("backoff", &self.backoff)
            .finish_non_exhaustive()
    }
}

/// Builds a [`WebhookSink`].
#[must_use]
pub struct WebhookSinkBuilder {
    url: String,
    provider: Arc<CryptoProvider>,
    roots: Option<Roots>,
    attempts: u32,
    backoff: Duration,
    timeout: Duration,
}

impl WebhookSink {
    /// Starts a sink that POSTs to `url` (http or https) with the TLS algorithms of `provider`.
    pub fn builder(url: impl Into<String>, provider: Arc<CryptoProvider>) -> WebhookSinkBuilder {
        WebhookSinkBuilder {
            url: url.into(),
            provider,
            roots: None,
            attempts: 4,
            backoff: Duration::from_millis(500),
            timeout: Duration::from_secs(10),
        }
    }
}

impl WebhookSinkBuilder {
    /// Trust anchors for https (default: the system's).
    pub fn with_roots(mut self, roots: Roots) -> Self {
        self.roots = Some(roots);
        self
    }

    /// Attempts in all (default 4, at most 10).
    pub fn with_attempts(mut self, attempts: u32) -> Self {
        self.attempts = attempts;
        self
    }

    /// The wait before the first retry, doubled each time (default 500 ms).
    pub fn with_backoff(mut self, backoff: Duration) -> Self {
        self.backoff = backoff;
        self
    }

    /// The timeout of one attempt (default 10 s).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Checks the URL and builds the client.
    pub fn build(self) -> Result<WebhookSink> {
        let url = crate::tls::http_url("webhook.url", &self.url)?;
        if !(1..=10).contains(&self.attempts) {
            return Err(invalid("webhook.attempts", "must be 1 to 10"));
        }
        let client = crate::tls::http_client(
            self.provider,
            self.roots.as_ref(),
            self.timeout,
            url.scheme() == "https",
        )?;
        Ok(WebhookSink {
            shown: url.origin().ascii_serialization(),
            url,
            client,
            attempts: self.attempts,
            backoff: self.backoff,
        })
    }
}

#[async_trait::async_trait]
impl AlertSink for WebhookSink {
    fn name(&self) -> &str {
        "webhook"
    }

    async fn send(&self, alert: &Alert) -> Result<()> {
        let body = serde_json::to_vec(alert).map_err(|e| Error::Sink {
            sink: "webhook".into(),
            reason: e.to_string(),
        })?;
        let mut wait = self.backoff;
        let mut last = String::new();
        for attempt in 1..=self.attempts {
            let response = self
                .client
                .post(self.url.clone())
                .header("content-type", "application/json")
                .body(body.clone())
                .send()
                .await;
            match response {
                Ok(r) if r.status().is_success() => return Ok(()),
                // A 4xx other than 429 (too many requests) will not get better by retrying.
                Ok(r) if r.status().is_client_error() && r.status().as_u16() != 429 => {
                    return Err(Error::Sink {
                        sink: "webhook".into(),
                        reason: format!("{} answered {}", self.shown, r.status()),
                    });
                }
                Ok(r) => last = format!("{} answered {}", self.shown, r.status()),
                Err(e) => {
                    let e = e.without_url();
                    last = format!("{}: {}", self.shown, crate::checks::http::describe(&e));
                }
            }
            if attempt < self.attempts {
                tokio::time::sleep(wait).await;
                wait = wait.saturating_mul(2);
            }
        }
        Err(Error::Sink {
            sink: "webhook".into(),
            reason: format!("{last} (after {} attempts)", self.attempts),
        })
    }
}

/// Runs a program (argv, no shell) for each alert, with the alert as JSON on its standard input
/// and in `HEALTHCHECK_*` environment variables.
#[derive(Debug, Clone)]
pub struct CommandSink {
    argv: Vec<String>,
    timeout: Duration,
}

impl CommandSink {
    /// A sink running `argv[0]` with the rest as arguments; each run is killed after `timeout`.
    pub fn new(argv: Vec<String>, timeout: Duration) -> Result<CommandSink> {
        if argv.first().is_none_or(|p| p.is_empty()) {
            return Err(invalid("command.argv", "needs a program"));
        }
        Ok(CommandSink { argv, timeout })
    }
}

#[async_trait::async_trait]
impl AlertSink for CommandSink {
    fn name(&self) -> &str {
        "command"
    }

    async fn send(&self, alert: &Alert) -> Result<()> {
        use tokio::io::AsyncWriteExt;
        let fail = |reason: String| Error::Sink {
            sink: "command".into(),
            reason,
        };
        let json = serde_json::to_vec(alert).map_err(|e| fail(e.to_string()))?;
        let mut child = tokio::process::Command::new(&self.argv[0])
            .args(&self.argv[1..])
            .env("HEALTHCHECK_HOST", &alert.host)
            .env("HEALTHCHECK_CHECK", &alert.check)
            .env("HEALTHCHECK_STATUS", alert.status.as_str())
            .env(
                "HEALTHCHECK_PREVIOUS",
                alert.previous.map_or("NONE", |s| s.as_str()),
            )
            .env("HEALTHCHECK_REASON", alert.reason.as_str())
            .env("HEALTHCHECK_MESSAGE", &alert.message)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| fail(format!("cannot run `{}`: {e}", self.argv[0])))?;
        let mut stdin = child.stdin.take();
        let run = async {
            if let Some(stdin) = stdin.as_mut() {
                // A program that does not read its input is fine.
                let _ = stdin.write_all(&json).await;
            }
            drop(stdin);
            child.wait_with_output().await
        };
        let output = tokio::time::timeout(self.timeout, run)
            .await
            .map_err(|_| fail(format!("`{}` did not finish in time", self.argv[0])))?
            .map_err(|e| fail(format!("`{}`: {e}", self.argv[0])))?;
        if output.status.success() {
            Ok(())
        } else {
            let stderr = String::from_utf8_lossy(&output.stderr);
            Err(fail(format!(
                "`{}` failed ({}): {}",
                self.argv[0],
                output.status,
                stderr.trim().chars().take(200).collect::<String>()
            )))
        }
    }
}
