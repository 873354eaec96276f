//! The HTTP layer: one reqwest client on rustls (ring provider passed explicitly, system roots),
//! and the retry rules: 429 and 503 wait for `Retry-After`; 500, 502, 504 and transport failures
//! back off exponentially.

use std::sync::Arc;
use std::time::Duration;

use crate::error::{BoxError, Error, Result};

/// How often and how long requests are retried.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    max_attempts: u32,
    base_delay: Duration,
    max_delay: Duration,
    max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 8,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(60),
            max_retry_after: Duration::from_secs(600),
        }
    }
}

impl RetryPolicy {
    /// Attempts per request, the first included (default 8; at least 1).
    pub fn with_max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts.max(1);
        self
    }

    /// First backoff delay, doubled on each further failure (default 500 ms).
    pub fn with_base_delay(mut self, delay: Duration) -> Self {
        self.base_delay = delay;
        self
    }

    /// Longest backoff delay (default 60 s).
    pub fn with_max_delay(mut self, delay: Duration) -> Self {
        self.max_delay = delay;
        self
    }

    /// Longest `Retry-After` honoured; a longer one fails the request (default 10 minutes).
    pub fn with_max_retry_after(mut self, delay: Duration) -> Self {
        self.max_retry_after = delay;
        self
    }

    pub(crate) fn max_attempts(&self) -> u32 {
        self.max_attempts
    }

    /// The backoff before attempt `attempt + 1` (attempt counts from 1), with up to 25 % jitter.
    pub(crate) fn backoff(&self, attempt: u32) -> Duration {
        let exp = self
            .base_delay
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(16));
        let delay = exp.min(self.max_delay);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        delay + delay.mul_f64(f64::from(nanos % 1000) / 4000.0)
    }

    /// The wait a throttling answer asks for, or an error if it is longer than allowed.
    pub(crate) fn throttle_wait(
        &self,
        what: &str,
        status: u16,
        retry_after: Option<Duration>,
        attempt: u32,
    ) -> Result<Duration> {
        match retry_after {
            Some(wait) if wait > self.max_retry_after => Err(Error::Api {
                what: what.to_owned(),
                status,
                code: "throttled".into(),
                message: format!(
                    "Retry-After of {} s exceeds the {} s allowed",
                    wait.as_secs(),
                    self.max_retry_after.as_secs()
                ),
            }),
            Some(wait) => Ok(wait),
            None => Ok(self.backoff(attempt)),
        }
    }
}

/// The largest answer read: Graph's JSON answers are small (a page of 200 children is well
/// under 1 MiB), so a longer body, announced or streamed, is a failure rather than memory spent.
pub(crate) const MAX_ANSWER_BYTES: usize = 16 << 20;

/// An answer, read whole up to [`MAX_ANSWER_BYTES`] (downloads are not done here).
#[derive(Debug)]
pub(crate) struct Response {
    pub(crate) status: u16,
    pub(crate) retry_after: Option<Duration>,
    pub(crate) body: Vec<u8>,
}

impl Response {
    /// True for answers worth retrying.
    pub(crate) fn is_transient(&self) -> bool {
        matches!(self.status, 429 | 500 | 502 | 503 | 504)
    }

    /// Graph's error code and message, if the body is an OData error.
    pub(crate) fn graph_error(&self) -> (String, String) {
        #[derive(serde::Deserialize)]
        struct Outer {
            error: Inner,
        }
        #[derive(serde::Deserialize)]
        struct Inner {
            #[serde(default)]
            code: String,
            #[serde(default)]
            message: String,
        }
        match serde_json::from_slice::<Outer>(&self.body) {
            Ok(outer) => (outer.error.code, outer.error.message),
            Err(_) => (String::new(), String::new()),
        }
    }

    pub(crate) fn into_error(self, what: &str) -> Error {
        let (code, message) = self.graph_error();
        Error::Api {
            what: what.to_owned(),
            status: self.status,
            code,
            message,
        }
    }
}

/// The shared HTTP client and retry policy.
#[derive(Clone)]
pub(crate) struct Http {
    client: reqwest::Client,
    policy: Arc<RetryPolicy>,
}

impl Http {
    /// A client trusting the system's roots and `extra_roots` (DER certificates).
    pub(crate) fn new(policy: RetryPolicy, extra_roots: &[Vec<u8>]) -> Result<Self> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        // Unreadable system certificates are skipped; a TLS handshake then fails with a
        // clear certificate error rather than the client failing to build.
        for cert in rustls_native_certs::load_native_certs().certs {
            let _ = roots.add(cert);
        }
        for der in extra_roots {
            roots
                .add(rustls::pki_types::CertificateDer::from(der.clone()))
                .map_err(|e| Error::InvalidConfig(format!("root certificate: {e}")))?;
        }
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::InvalidConfig(format!("TLS: {e}")))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let client = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .connect_timeout(Duration::from_secs(30))
            .read_timeout(Duration::from_secs(120))
            .user_agent(concat!("hostguard-onedrive/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Error::InvalidConfig(format!("HTTP client: {e}")))?;
        Ok(Self {
            client,
            policy: Arc::new(policy),
        })
    }

    pub(crate) fn client(&self) -> &reqwest::Client {
        &self.client
    }

    pub(crate) fn policy(&self) -> &RetryPolicy {
        &self.policy
    }

    /// Sends once; a transport failure is returned as the boxed error.
    pub(crate) async fn send_once(
        &self,
        request: reqwest::RequestBuilder,
    ) -> std::result::Result<Response, BoxError> {
        let mut response = request.send().await.map_err(strip_url)?;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let too_large = || -> BoxError {
            format!("HTTP {status}: answer larger than {MAX_ANSWER_BYTES} bytes").into()
        };
        if response
            .content_length()
            .is_some_and(|n| n > MAX_ANSWER_BYTES as u64)
        {
            return Err(too_large());
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(strip_url)? {
            if body.len() + chunk.len() > MAX_ANSWER_BYTES {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Response {
            status,
            retry_after,
            body,
        })
    }

    /// Sends the request `build` makes, retrying transient failures; returns the final answer
    /// (which may be an error status) or a transport error.
    pub(crate) async fn send(
        &self,
        what: &str,
        build: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<Response> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let last = attempt >= self.policy.max_attempts;
            match self.send_once(build()).await {
                Ok(response) if response.is_transient() && !last => {
                    let wait = if matches!(response.status, 429 | 503) {
                        self.policy.throttle_wait(
                            what,
                            response.status,
                            response.retry_after,
                            attempt,
                        )?
                    } else {
                        self.policy.backoff(attempt)
                    };
                    tracing::debug!(what, status = response.status, ?wait, "retrying");
                    tokio::time::sleep(wait).await;
                }
                Ok(response) => return Ok(response),
                Err(source) if last => {
                    return Err(Error::Transport {
                        what: what.to_owned(),
                        source,
                    });
                }
                Err(error) => {
                    let wait = self.policy.backoff(attempt);
                    tracing::debug!(what, %error, ?wait, "transport failure; retrying");
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }
}

/// reqwest errors name the URL, and upload URLs are bearer capabilities: drop it.
fn strip_url(error: reqwest::Error) -> BoxError {
    Box::new(error.without_url())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Serves one answer of `announced` bytes of JSON whitespace (`None`: chunked, no length),
    /// sending at most a quarter more than the limit.
    async fn serve_large(announced: Option<u64>) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!(
            "http://{}/v1.0/me/drive",
            listener.local_addr().expect("addr")
        );
        tokio::spawn(async move {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            let _ = stream.read(&mut [0u8; 4096]).await;
            let framing = match announced {
                Some(n) => format!("content-length: {n}"),
                None => "transfer-encoding: chunked".to_owned(),
            };
            let head = format!("HTTP/1.1 200 OK\r\n{framing}\r\n\r\n");
            if stream.write_all(head.as_bytes()).await.is_err() || announced.is_some() {
                return;
            }
            let size = format!("{:x}\r\n", 1 << 16);
            let framed = [size.as_bytes(), &[b' '; 1 << 16], b"\r\n"].concat();
            for _ in 0..(MAX_ANSWER_BYTES + MAX_ANSWER_BYTES / 4) >> 16 {
                if stream.write_all(&framed).await.is_err() {
                    return;
                }
            }
            let _ = stream.write_all(b"0\r\n\r\n").await;
        });
        url
    }

    #[tokio::test]
    async fn answers_over_the_limit_are_refused() {
        let http = Http::new(RetryPolicy::default(), &[]).expect("http");
        for announced in [None, Some(MAX_ANSWER_BYTES as u64 + 1)] {
            let url = serve_large(announced).await;
            match http.send_once(http.client().get(&url)).await {
                Ok(answer) => panic!("{announced:?}: {} bytes read", answer.body.len()),
                Err(err) => assert!(err.to_string().contains("larger than"), "{err}"),
            }
        }
    }
}
