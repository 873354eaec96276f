//! A Microsoft Graph OneDrive client, and exports to a folder in a customer's own drive.
//!
//! ```
//! use std::sync::Arc;
//! use onedrive::{DirectorySource, Drive, ExportJob, OAuthConfig, OneDriveClient, RemotePath};
//!
//! let state = tempfile::tempdir()?;
//! // Tokens from the one-time consent step (see the `auth` docs), refreshed as needed.
//! let oauth = OAuthConfig::delegated("11111111-2222-3333-4444-555555555555", state.path().join("token.json"))
//!     .build()?;
//! let client = OneDriveClient::builder(oauth).build()?;
//!
//! let site = tempfile::tempdir()?;
//! std::fs::write(site.path().join("index.php"), b"<?php echo 'hi';")?;
//! let job = ExportJob::builder(
//!     client,
//!     Drive::Me,
//!     RemotePath::parse("Exports/example.com")?,
//!     Arc::new(DirectorySource::new(site.path())),
//! )
//! .with_state_dir(state.path().join("export"))
//! .with_age_recipient("age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p")
//! .build()?;
//! // `job.run().await` uploads (and `job.plan().await` is the dry run); both need the network.
//! # drop(job);
//!
//! // The hash OneDrive reports for every file, computed locally.
//! assert_eq!(onedrive::QuickXorHash::digest_base64(b""), "AAAAAAAAAAAAAAAAAAAAAAAAAAA=");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # What is here
//!
//! * **OAuth2** ([`auth`]): authorization code with PKCE and rotating refresh tokens, stored in a
//!   token file written atomically with mode 0600; client credentials for OneDrive for Business.
//!   Tokens refresh five minutes before expiry. Secrets ([`Secret`]) never appear in `Debug`,
//!   logs or errors; upload URLs, which are bearer capabilities, are treated the same way.
//! * **Addressing** ([`Drive`], [`ItemRef`], [`RemotePath`]): `/me/drive`, `/drives/{id}`,
//!   `/users/{upn}/drive`; items by path (`root:/a/b:`, each name percent-encoded) or by id;
//!   recursive folder creation; [`Conflict`] behaviour fail, replace or rename.
//! * **Uploads** ([`OneDriveClient::upload_file`]): one PUT for small files (zero bytes
//!   included); upload sessions for larger ones, in fragments that are a multiple of 320 KiB and
//!   under 60 MiB, in order, without an `Authorization` header; resumed after an interruption or
//!   a crash from the session's `nextExpectedRanges` (the session URL is persisted), a new
//!   session when the old one expired or answers 404, `DELETE` on abort. Every upload is checked
//!   against the server's quickXorHash and size before it counts as done.
//! * **Throttling**: 429 and 503 wait for `Retry-After`; other transient failures back off
//!   exponentially ([`RetryPolicy`]).
//! * **Names** ([`map_name`], [`NamePolicy`]): names OneDrive refuses are found before upload and
//!   mapped reversibly or refused with the rule they break.
//! * **[`QuickXorHash`]**, from Microsoft's published description, folded 160 bytes at a time.
//! * **Exports** ([`ExportJob`]): a selection from an [`ExportSource`] (a directory, or a
//!   backup snapshot through an adapter) to a drive folder; incremental, resumable, optionally
//!   age-encrypted to the customer's recipient, with a manifest; bounded memory. Feature
//!   `backup-core` adds `snapshot::SnapshotSource`, the files of a backup snapshot.
//!
//! # Errors
//!
//! One [`Error`] type; API errors carry Graph's status, code and message, transport errors their
//! source (with any URL removed).
//!
//! # Dependencies, and why
//!
//! * [reqwest] on [rustls] with the ring provider passed explicitly (no process-wide default),
//!   and [rustls_native_certs] for the system's roots: the team's HTTP and TLS stack.
//! * [serde] and [serde_json]: Graph's JSON; [url] and [percent_encoding]: URLs and path
//!   segments; [jiff]: upload session expiry times.
//! * [ring]: PKCE's SHA-256 and random verifier; [base64]: hashes and PKCE.
//! * [crypto_at_rest]: age encryption of exports (its `age` module).
//! * backup-core (optional, feature `backup-core`): reading snapshots for `snapshot::SnapshotSource`.
//! * [tokio], [futures]: parallel uploads (the source trait is blocking, called off the
//!   runtime); [zeroize]: secrets; [tracing]: logs without secrets.

pub mod auth;
mod client;
#[cfg(any(test, feature = "conformance"))]
pub mod conformance;
mod error;
mod export;
mod http;
mod names;
mod quickxor;
#[cfg(feature = "backup-core")]
pub mod snapshot;
mod state;
mod upload;

pub use auth::{Authenticator, OAuthConfig, OAuthConfigBuilder, Pkce, Secret};
pub use client::{
    Conflict, DEFAULT_FRAGMENT_SIZE, DEFAULT_GRAPH_URL, DEFAULT_SIMPLE_UPLOAD_LIMIT, Drive,
    DriveItem, FRAGMENT_LIMIT, FRAGMENT_UNIT, ItemRef, OneDriveClient, OneDriveClientBuilder,
};
pub use error::{BoxError, Error, Result};
pub use export::{
    DirectorySource, ExportEvent, ExportJob, ExportJobBuilder, ExportProgress, ExportSource,
    ExportStatus, ExportSummary, FileAction, MANIFEST_FORMAT, MANIFEST_NAME, Manifest,
    ManifestEntry, SourceEntry, export_status, read_manifest,
};
pub use http::RetryPolicy;
pub use names::{
    MAX_PATH_CHARS, NamePolicy, RemotePath, map_name, map_os_name, name_problem, unmap_name,
    unmap_name_bytes,
};
pub use quickxor::{DIGEST_LEN, QuickXorHash};
pub use upload::{AbortHandle, ProgressFn, Upload};
