//! TLS client configuration. The crypto provider is always passed in: the crate never installs
//! a process-wide default.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::RootCertStore;
use rustls::crypto::CryptoProvider;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

use crate::error::{Error, Result};

/// Trust anchors for certificate checks.
#[derive(Debug, Clone)]
pub struct Roots {
    store: Arc<RootCertStore>,
}

impl Roots {
    /// The system's trust store (`rustls-native-certs`: `/etc/ssl/certs` on Debian).
    pub fn system() -> Roots {
        let mut store = RootCertStore::empty();
        let found = rustls_native_certs::load_native_certs();
        for cert in found.certs {
            // A certificate the store cannot parse is skipped, as browsers do.
            let _ = store.add(cert);
        }
        Roots {
            store: Arc::new(store),
        }
    }

    /// The certificates of a PEM file (a private CA).
    pub fn from_pem_file(path: &Path) -> Result<Roots> {
        let bytes = std::fs::read(path).map_err(|source| Error::Io {
            path: path.to_owned(),
            source,
        })?;
        Roots::from_pem(&bytes).map_err(|e| match e {
            Error::InvalidConfig { reason, .. } => Error::InvalidConfig {
                field: "ca_file".into(),
                reason: format!("{}: {reason}", path.display()),
            },
            other => other,
        })
    }

    /// The certificates of PEM text.
    pub fn from_pem(pem: &[u8]) -> Result<Roots> {
        let mut store = RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(pem) {
            let cert =
                cert.map_err(|e| crate::error::invalid("ca_file", format!("bad PEM: {e}")))?;
            store
                .add(cert)
                .map_err(|e| crate::error::invalid("ca_file", format!("bad certificate: {e}")))?;
        }
        if store.is_empty() {
            return Err(crate::error::invalid("ca_file", "no certificate found"));
        }
        Ok(Roots {
            store: Arc::new(store),
        })
    }

    pub(crate) fn store(&self) -> Arc<RootCertStore> {
        self.store.clone()
    }
}

/// A client configuration trusting `roots`, with `provider`'s algorithms.
pub fn client_config(provider: Arc<CryptoProvider>, roots: &Roots) -> Result<rustls::ClientConfig> {
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Client {
            what: "TLS",
            source: Box::new(e),
        })?
        .with_root_certificates(roots.store())
        .with_no_client_auth())
}

/// Parses a configured HTTP(S) URL. The error names the field and what is wrong, never the URL
/// itself: it may carry a password, a query key or a webhook token.
pub(crate) fn http_url(field: &str, text: &str) -> Result<reqwest::Url> {
    let url = reqwest::Url::parse(text)
        .map_err(|e| crate::error::invalid(field, format!("not a URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(crate::error::invalid(
            field,
            format!("scheme `{}`: must be http or https", url.scheme()),
        ));
    }
    Ok(url)
}

/// A reqwest client on rustls with `provider` (reqwest needs one even for plain http), trusting
/// `roots` (the system's when `None` and the URL is https); no proxies, no redirects followed.
pub(crate) fn http_client(
    provider: Arc<CryptoProvider>,
    roots: Option<&Roots>,
    timeout: Duration,
    https: bool,
) -> Result<reqwest::Client> {
    let roots = match roots {
        Some(r) => r.clone(),
        None if https => Roots::system(),
        None => Roots {
            store: Arc::new(RootCertStore::empty()),
        },
    };
    let tls = client_config(provider, &roots)?;
    let builder = reqwest::Client::builder()
        .no_proxy()
        .timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("hostguard-healthcheck/", env!("CARGO_PKG_VERSION")));
    builder
        .tls_backend_preconfigured(tls)
        .build()
        .map_err(|e| Error::Client {
            what: "HTTP",
            source: Box::new(e),
        })
}
