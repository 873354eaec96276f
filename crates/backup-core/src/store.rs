//! Opening the object store a repository location names.

use std::sync::Arc;
use std::time::Duration;

use object_store::aws::AmazonS3Builder;
use object_store::prefix::PrefixStore;
use object_store::{ClientOptions, ObjectStore};

use crate::error::{Error, Result};
use crate::local::DurableLocalStore;

/// Where a repository lives and how to reach it.
///
/// A location is either a local directory path (the default, no server needed) or an
/// `s3://bucket/prefix` URL. For S3 the endpoint, region and credentials come from the usual
/// environment variables (`AWS_ENDPOINT_URL`, `AWS_REGION`/`AWS_DEFAULT_REGION`,
/// `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`); a plain-HTTP endpoint is
/// allowed only when it is given explicitly.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    location: String,
    timeout: Duration,
    endpoint: Option<String>,
}

impl StoreOptions {
    /// Options for `location` with a 300 s request timeout (object_store's 30 s default is short
    /// for large packs on a slow link).
    pub fn new(location: impl Into<String>) -> Self {
        StoreOptions {
            location: location.into(),
            timeout: Duration::from_secs(300),
            endpoint: None,
        }
    }

    /// Sets the per-request timeout for remote stores.
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

    /// Opens the store (creating a local directory if needed).
    pub fn build(self) -> Result<Arc<dyn ObjectStore>> {
        if let Some(rest) = self.location.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(Error::Config(format!("{}: no bucket name", self.location)));
            }
            // reqwest is built without a default TLS provider; rustls on ring is ours.
            let _ = rustls::crypto::ring::default_provider().install_default();
            let mut builder = AmazonS3Builder::from_env()
                .with_bucket_name(bucket)
                .with_client_options(ClientOptions::new().with_timeout(self.timeout));
            let endpoint = self
                .endpoint
                .clone()
                .or_else(|| std::env::var("AWS_ENDPOINT_URL").ok());
            if let Some(endpoint) = endpoint {
                builder = builder
                    .with_allow_http(endpoint.starts_with("http://"))
                    .with_endpoint(endpoint);
            }
            if std::env::var_os("AWS_REGION").is_none() {
                if let Ok(region) = std::env::var("AWS_DEFAULT_REGION") {
                    builder = builder.with_region(region);
                }
            }
            let s3 = builder
                .build()
                .map_err(|e| Error::store(&self.location, e))?;
            let prefix = prefix.trim_matches('/');
            return Ok(if prefix.is_empty() {
                Arc::new(s3)
            } else {
                Arc::new(PrefixStore::new(s3, prefix))
            });
        }
        if self.location.contains("://") {
            return Err(Error::Config(format!(
                "{}: only local paths and s3:// URLs are supported",
                self.location
            )));
        }
        std::fs::create_dir_all(&self.location).map_err(|e| Error::io(&self.location, e))?;
        let local = DurableLocalStore::new(std::path::Path::new(&self.location))
            .map_err(|e| Error::store(&self.location, e))?;
        Ok(Arc::new(local))
    }
}
