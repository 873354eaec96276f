//! TLS certificate days left, with expired, not yet valid, untrusted and name mismatch told apart.
//!
//! The handshake runs through rustls with a verifier that wraps the standard WebPKI verifier: it
//! records the leaf certificate and the verifier's verdict, then fails the handshake as the
//! standard one would. The leaf's dates are read with `x509-parser`, so an expired or untrusted
//! certificate still reports how many days it has (or had) left.

use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::{CertificateError, DigitallySignedStruct, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use crate::check::{Check, Observation, Unit};
use crate::checks::net::{Target, connect};
use crate::error::{Error, Result};
use crate::status::{Reason, Status};
use crate::tls::Roots;

/// Connects to `host:port`, shakes hands and reports the certificate's days left
/// (metric `days_left`, fractional; negative once expired).
#[derive(Debug, Clone)]
pub struct TlsCheck {
    target: Target,
    server_name: ServerName<'static>,
    provider: Arc<CryptoProvider>,
    verifier: Arc<WebPkiServerVerifier>,
}

/// Builds a [`TlsCheck`].
#[must_use]
pub struct TlsCheckBuilder {
    address: String,
    server_name: Option<String>,
    provider: Arc<CryptoProvider>,
    roots: Option<Roots>,
}

impl TlsCheck {
    /// Starts a check of `host:port` with the algorithms of `provider` (for example
    /// `rustls::crypto::ring::default_provider()`).
    pub fn builder(address: impl Into<String>, provider: Arc<CryptoProvider>) -> TlsCheckBuilder {
        TlsCheckBuilder {
            address: address.into(),
            server_name: None,
            provider,
            roots: None,
        }
    }
}

impl TlsCheckBuilder {
    /// The name the certificate must be valid for (default: the host of the address).
    pub fn with_server_name(mut self, name: impl Into<String>) -> Self {
        self.server_name = Some(name.into());
        self
    }

    /// Trust anchors (default: the system's).
    pub fn with_roots(mut self, roots: Roots) -> Self {
        self.roots = Some(roots);
        self
    }

    /// Checks the address and name and builds the verifier.
    pub fn build(self) -> Result<TlsCheck> {
        let target = Target::parse("address", &self.address)?;
        let name = self.server_name.unwrap_or_else(|| target.host.clone());
        let server_name = ServerName::try_from(name.clone())
            .map_err(|e| crate::error::invalid("server_name", format!("`{name}`: {e}")))?;
        let roots = self.roots.unwrap_or_else(Roots::system);
        let verifier =
            WebPkiServerVerifier::builder_with_provider(roots.store(), self.provider.clone())
                .build()
                .map_err(|e| Error::Client {
                    what: "TLS",
                    source: Box::new(e),
                })?;
        Ok(TlsCheck {
            target,
            server_name,
            provider: self.provider,
            verifier,
        })
    }
}

/// The verdict a rustls error stands for.
pub(crate) fn reason_of(e: &rustls::Error) -> Reason {
    match e {
        rustls::Error::InvalidCertificate(c) => match c {
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                Reason::CertExpired
            }
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                Reason::CertNotYetValid
            }
            CertificateError::UnknownIssuer => Reason::CertUntrusted,
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                Reason::CertNameMismatch
            }
            _ => Reason::CertInvalid,
        },
        _ => Reason::Protocol,
    }
}

#[derive(Debug)]
struct Seen {
    leaf: Vec<u8>,
    error: Option<rustls::Error>,
}

/// Records what the standard verifier says about the leaf, then says the same.
#[derive(Debug)]
struct RecordingVerifier {
    inner: Arc<WebPkiServerVerifier>,
    seen: Mutex<Option<Seen>>,
}

impl ServerCertVerifier for RecordingVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        let verdict = self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        );
        *self.seen.lock().unwrap_or_else(|p| p.into_inner()) = Some(Seen {
            leaf: end_entity.to_vec(),
            error: verdict.as_ref().err().cloned(),
        });
        verdict
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// Validity dates of a DER certificate, Unix seconds.
fn validity(der: &[u8]) -> Option<(i64, i64)> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let v = cert.validity();
    Some((v.not_before.timestamp(), v.not_after.timestamp()))
}

fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

#[async_trait::async_trait]
impl Check for TlsCheck {
    fn kind(&self) -> &'static str {
        "tls"
    }

    fn primary_metric(&self) -> Option<&'static str> {
        Some("days_left")
    }

    async fn run(&self) -> Observation {
        let (stream, _) = match connect(&self.target).await {
            Ok(s) => s,
            Err(o) => return o,
        };
        let verifier = Arc::new(RecordingVerifier {
            inner: self.verifier.clone(),
            seen: Mutex::new(None),
        });
        let config = match rustls::ClientConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()
        {
            Ok(c) => c
                .dangerous()
                .with_custom_certificate_verifier(verifier.clone())
                .with_no_client_auth(),
            Err(e) => return Observation::unknown(Reason::CheckFailed, format!("TLS setup: {e}")),
        };
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let handshake = connector.connect(self.server_name.clone(), stream).await;
        let seen = verifier
            .seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        let Some(seen) = seen else {
            let message = match handshake {
                Err(e) => format!(
                    "{}: handshake failed before a certificate: {e}",
                    self.target
                ),
                Ok(_) => format!("{}: no certificate", self.target),
            };
            return Observation::critical(Reason::Protocol, message);
        };
        let Some((not_before, not_after)) = validity(&seen.leaf) else {
            return Observation::critical(
                Reason::CertInvalid,
                format!("{}: the certificate cannot be parsed", self.target),
            );
        };
        let now = now_unix();
        let days_left = (not_after - now) as f64 / 86_400.0;
        let (status, reason, message) = match (&seen.error, &handshake) {
            (Some(e), _) => {
                let reason = reason_of(e);
                let detail = match reason {
                    Reason::CertExpired => format!("expired {:.0} days ago", -days_left.ceil()),
                    Reason::CertNotYetValid => format!(
                        "not valid for another {:.1} days",
                        (not_before - now) as f64 / 86_400.0
                    ),
                    Reason::CertUntrusted => {
                        format!("untrusted issuer, {} days left", days_left.floor())
                    }
                    Reason::CertNameMismatch => format!(
                        "not valid for {}, {} days left",
                        name_text(&self.server_name),
                        days_left.floor()
                    ),
                    _ => format!("{e}, {} days left", days_left.floor()),
                };
                (Status::Critical, reason, detail)
            }
            (None, Err(e)) => (
                Status::Critical,
                Reason::Protocol,
                format!("handshake failed: {e}"),
            ),
            (None, Ok(_)) => (
                Status::Ok,
                Reason::Ok,
                format!("certificate valid for {} more days", days_left.floor()),
            ),
        };
        Observation {
            status,
            reason,
            message: format!("{}: {message}", self.target),
            metrics: Vec::new(),
        }
        .with_metric("days_left", days_left, Unit::Days)
    }
}

fn name_text(name: &ServerName<'_>) -> String {
    match name {
        ServerName::DnsName(d) => d.as_ref().to_owned(),
        ServerName::IpAddress(ip) => std::net::IpAddr::from(*ip).to_string(),
        _ => "the server name".to_owned(),
    }
}
