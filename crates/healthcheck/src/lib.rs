//! Server health checks that give verdicts: thresholds in the Nagios range syntax, flap damping,
//! alerts on a change of state, and reports operators' tools already read.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> healthcheck::Result<()> {
//! use std::{sync::Arc, time::Duration};
//! use healthcheck::{CheckEntry, MemorySink, Monitor, Status, Thresholds, checks::TcpCheck};
//!
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
//! let port = listener.local_addr().unwrap().port();
//! let alerts = Arc::new(MemorySink::new());
//! let monitor = Monitor::builder()
//!     .with_host("web1")
//!     .with_check(
//!         CheckEntry::builder("db-port", Arc::new(TcpCheck::new(&format!("127.0.0.1:{port}"))?))
//!             .with_timeout(Duration::from_secs(1))
//!             // Warn above 0.5 s, critical above 2 s to connect.
//!             .with_thresholds(Thresholds::parse(Some("0.5"), Some("2"))?)
//!             .build()?,
//!     )
//!     .with_sink(alerts.clone())
//!     .build()?;
//! let report = monitor.run().await;
//! assert_eq!(report.status, Status::Ok);
//! assert!(alerts.alerts().is_empty()); // a first run that is OK alerts nobody
//!
//! drop(listener); // the port now refuses connections
//! let report = monitor.run().await;
//! assert_eq!(report.checks[0].reason, healthcheck::Reason::Refused);
//! assert_eq!(alerts.alerts()[0].status, Status::Critical);
//! let (line, exit) = healthcheck::report::nagios(&report);
//! assert!(line.starts_with("CRITICAL - 1 of 1 checks not OK"));
//! assert_eq!(exit, 2);
//! # Ok(()) }
//! ```
//!
//! ## Parts
//! - [`Check`]: one async method; [`checks`] has disk (statvfs on its own thread, so a hung NFS
//!   mount cannot block), memory, swap, load, TCP, HTTP(S), TLS certificates (expired, not yet
//!   valid, untrusted and name mismatch told apart, dates read even from an expired certificate),
//!   processes, nginx `stub_status`, PHP-FPM status, MySQL/MariaDB, file freshness.
//! - [`Monitor`]: runs all checks at once, each under its own timeout; applies [`Thresholds`]
//!   ([`Range`] is the Nagios syntax `10`, `10:`, `~:10`, `10:20`, `@10:20`); damps flapping
//!   (`N` of the last `M` runs); keeps the last runs for charts; sends an [`Alert`] to each
//!   [`AlertSink`] ([`WebhookSink`], [`CommandSink`]) only when a state changes.
//! - [`report`]: aligned coloured text, JSON, Prometheus 0.0.4, OpenMetrics, Nagios plugin output,
//!   and an HTML page with no script and no external asset.
//! - [`config`]: the TOML file, with errors naming line and key; [`serve`]: periodic mode serving
//!   `/metrics` and the page.
//!
//! ## Dependencies, and why
//! `tokio` and `async-trait` (checks are async trait objects run concurrently); `rustls`,
//! `tokio-rustls`, `rustls-pki-types`, `rustls-native-certs` (TLS without OpenSSL; the crypto
//! provider is always passed in, never installed process-wide); `x509-parser` (reads the dates of
//! a certificate the verifier rejected: rustls does not expose them); `reqwest` (HTTP/1.1 and 2,
//! chunked bodies, redirects off, on the same rustls); `ring` (SHA-1 for MySQL's
//! `mysql_native_password` — the handshake is about 150 lines here, smaller than a MySQL client
//! crate with its own TLS and pool); `rustix` (`statvfs` without unsafe code); `toml` with
//! `Spanned` (line numbers in errors), `serde`/`serde_json`, `humantime` (durations in config).

mod alert;
mod check;
pub mod checks;
pub mod config;
mod error;
mod monitor;
mod range;
pub mod report;
pub mod serve;
mod status;
pub mod tls;

#[cfg(feature = "conformance")]
pub mod conformance;

pub use alert::{Alert, AlertSink, CommandSink, MemorySink, WebhookSink, WebhookSinkBuilder};
pub use check::{Check, Metric, Observation, Unit};
pub use config::Config;
pub use error::{Error, Result};
pub use monitor::{
    CheckEntry, CheckEntryBuilder, CheckResult, FlapDamping, HISTORY_LEN, HistoryPoint,
    MeasuredMetric, Monitor, MonitorBuilder, Report,
};
pub use range::{Range, Thresholds};
pub use status::{Reason, Status};
