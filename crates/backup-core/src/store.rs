//! Opening the object store a repository location names.

use std::sync::Arc;
use std::time::Duration;

use object_store::aws::AmazonS3Builder;
use object_store::client::{HttpClient, HttpConnector};
use object_store::prefix::PrefixStore;
use object_store::{ClientOptions, ObjectStore};

use crate::error::{Error, Result};
use crate::local::DurableLocalStore;
use crate::retry::{RetryPolicy, RetryingStore};

/// Where a repository lives and how to reach it.
///
/// A location is either a local directory path (the default, no server needed) or an
/// `s3://bucket/prefix` URL. For S3 the endpoint, region and credentials come from the usual
/// environment variables (`AWS_ENDPOINT_URL`, `AWS_REGION`/`AWS_DEFAULT_REGION`,
/// `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`); a plain-HTTP endpoint is
/// allowed only when it is given explicitly.
///
/// Every store built is wrapped in a [`RetryingStore`]: transient errors are retried with
/// exponential backoff and jitter, every call has a timeout, and an error given up on names
/// the object (see [`crate::retry`]). For S3 the retries are object_store's own HTTP client's,
/// configured from the same [`RetryPolicy`], so no request is retried twice.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    location: String,
    timeout: Duration,
    endpoint: Option<String>,
    create: bool,
    retry: RetryPolicy,
}

impl StoreOptions {
    /// Options for `location` with a 300 s request timeout (object_store's 30 s default is short
    /// for large packs on a slow link).
    pub fn new(location: impl Into<String>) -> Self {
        StoreOptions {
            location: location.into(),
            timeout: Duration::from_secs(300),
            endpoint: None,
            create: false,
            retry: RetryPolicy::new(),
        }
    }

    /// Sets how transient errors are retried (the policy's own timeout is replaced by
    /// [`StoreOptions::with_timeout`]'s).
    pub fn with_retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// Creates a local directory that does not exist yet (for [`crate::Repository::init`]);
    /// without it a missing directory is [`Error::NoRepository`], so reading commands never
    /// create paths.
    pub fn with_create(mut self, yes: bool) -> Self {
        self.create = yes;
        self
    }

    /// Sets the per-request timeout (for local stores, per call).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sets the S3 endpoint (overrides `AWS_ENDPOINT_URL`).
    pub fn with_endpoint(mut self, endpoint: impl Into<String>) -> Self {
        self.endpoint = Some(endpoint.into());
        self
    }

    /// The location string.
    pub fn location(&self) -> &str {
        &self.location
    }

    /// Opens the store, wrapped in a [`RetryingStore`] (its calls need a tokio runtime with
    /// the time driver, as `Runtime::new` and `#[tokio::main]` build). A local directory must
    /// exist unless [`StoreOptions::with_create`] was given. Changes no process-wide state: TLS for S3 uses rustls with the ring provider given
    /// to its own client configuration, not an installed default provider.
    pub fn build(self) -> Result<Arc<dyn ObjectStore>> {
        let policy = self.retry.with_timeout(self.timeout).build()?;
        if let Some(rest) = self.location.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(Error::Config(format!("{}: no bucket name", self.location)));
            }
            // object_store's client retries (and resumes cut downloads); this policy is its.
            let retry = object_store::RetryConfig {
                backoff: object_store::BackoffConfig {
                    init_backoff: policy.initial_backoff(),
                    max_backoff: policy.max_backoff(),
                    base: 2.0,
                },
                max_retries: policy.max_retries() as usize,
                // object_store's own bound: retries reuse the request's signature, which must
                // stay valid (it advises under 5 minutes).
                retry_timeout: object_store::RetryConfig::default().retry_timeout,
            };
            let mut builder = AmazonS3Builder::from_env()
                .with_bucket_name(bucket)
                .with_retry(retry)
                .with_client_options(ClientOptions::new().with_timeout(self.timeout))
                .with_http_connector(RingRustlsConnector);
            let endpoint = self
                .endpoint
                .clone()
                .or_else(|| std::env::var("AWS_ENDPOINT_URL").ok());
            if let Some(endpoint) = endpoint {
                builder = builder
                    .with_allow_http(endpoint.starts_with("http://"))
                    .with_endpoint(endpoint);
            }
            if std::env::var_os("AWS_REGION").is_none()
                && let Ok(region) = std::env::var("AWS_DEFAULT_REGION")
            {
                builder = builder.with_region(region);
            }
            let s3 = builder
                .build()
                .map_err(|e| Error::store(&self.location, e))?;
            let prefix = prefix.trim_matches('/');
            let s3: Arc<dyn ObjectStore> = if prefix.is_empty() {
                Arc::new(s3)
            } else {
                Arc::new(PrefixStore::new(s3, prefix))
            };
            // Deadlines, put reconciliation and error naming only: a call may take every
            // retry of the client below it.
            let deadline = self
                .timeout
                .saturating_mul(policy.max_retries() + 1)
                .saturating_add(policy.max_backoff().saturating_mul(policy.max_retries()));
            let outer = policy.with_max_retries(0).with_timeout(deadline);
            return Ok(Arc::new(RetryingStore::new(s3, outer)));
        }
        if self.location.contains("://") {
            return Err(Error::Config(format!(
                "{}: only local paths and s3:// URLs are supported",
                self.location
            )));
        }
        let dir = std::path::Path::new(&self.location);
        match std::fs::metadata(dir) {
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => {
                return Err(Error::Config(format!(
                    "{}: not a directory (a local repository is a directory)",
                    self.location
                )));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && self.create => {
                std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::NoRepository {
                    location: self.location,
                });
            }
            Err(e) => return Err(Error::io(dir, e)),
        }
        let local = DurableLocalStore::new(std::path::Path::new(&self.location))
            .map_err(|e| Error::store(&self.location, e))?;
        Ok(Arc::new(RetryingStore::new(Arc::new(local), policy)))
    }
}

/// Builds object_store's reqwest client with rustls on ring passed in its own configuration:
/// reqwest is built without a TLS provider, and installing ring as the process-wide default
/// (what object_store's default connector would need) is global state a library must not touch.
/// Certificates are checked by the platform verifier (the system's roots), as reqwest's own
/// rustls setup does. Of the client options it applies the timeouts, plain-HTTP permission and
/// proxy settings; HTTP/2 tuning and extra root certificates are
/// not supported.
#[derive(Debug)]
struct RingRustlsConnector;

impl HttpConnector for RingRustlsConnector {
    fn connect(&self, options: &ClientOptions) -> object_store::Result<HttpClient> {
        use object_store::ClientConfigKey as Key;
        use rustls_platform_verifier::BuilderVerifierExt;
        let generic =
            |source: Box<dyn std::error::Error + Send + Sync>| object_store::Error::Generic {
                store: "S3",
                source,
            };
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .and_then(|b| b.with_platform_verifier())
            .map_err(|e| generic(Box::new(e)))?
            .with_no_client_auth();
        let seconds = |key| {
            options
                .get_config_value(&key)
                .and_then(|v| humantime::parse_duration(&v).ok())
        };
        let mut builder = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            // As object_store's own connector: compression would break Content-Length.
            .no_gzip()
            .no_brotli()
            .no_zstd()
            .no_deflate()
            .https_only(options.get_config_value(&Key::AllowHttp).as_deref() != Some("true"));
        if let Some(timeout) = seconds(Key::Timeout) {
            builder = builder.timeout(timeout);
        }
        if let Some(timeout) = seconds(Key::ConnectTimeout) {
            builder = builder.connect_timeout(timeout);
        }
        if let Some(url) = options.get_config_value(&Key::ProxyUrl) {
            let mut proxy = reqwest::Proxy::all(&url).map_err(|e| generic(Box::new(e)))?;
            if let Some(excludes) = options.get_config_value(&Key::ProxyExcludes) {
                proxy = proxy.no_proxy(reqwest::NoProxy::from_string(&excludes));
            }
            builder = builder.proxy(proxy);
        }
        let client = builder.build().map_err(|e| generic(Box::new(e)))?;
        Ok(HttpClient::new(client))
    }
}
