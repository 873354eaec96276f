//! Virus scanning with clamd, incrementally, with a quarantine that loses nothing.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> virusscan::Result<()> {
//! use std::sync::Arc;
//! use virusscan::{Outcome, ScanCache, Scanner, TreeScanner, Verdict};
//!
//! // Any engine implementing `Scanner` works; `ClamdClient` is the real one:
//! // let scanner = virusscan::ClamdClient::unix("/run/clamav/clamd.ctl").build()?;
//! # #[derive(Debug)] struct Marker;
//! # #[async_trait::async_trait]
//! # impl Scanner for Marker {
//! #     async fn scan_reader(&self, r: &mut (dyn tokio::io::AsyncRead + Unpin + Send)) -> virusscan::Result<Verdict> {
//! #         let mut data = Vec::new();
//! #         tokio::io::AsyncReadExt::read_to_end(r, &mut data).await.map_err(virusscan::Error::Source)?;
//! #         Ok(if data.windows(4).any(|w| w == b"EVIL") { Verdict::Infected { signature: "Marker".into() } } else { Verdict::Clean })
//! #     }
//! #     async fn signature_version(&self) -> virusscan::Result<String> { Ok("1".into()) }
//! # }
//! # let scanner = Marker;
//! let scanner: Arc<dyn Scanner> = Arc::new(scanner);
//! let tree = tempfile::tempdir().unwrap();
//! std::fs::write(tree.path().join("index.php"), b"<?php echo 1;").unwrap();
//! std::fs::write(tree.path().join("shell.php"), b"<?php EVIL ?>").unwrap();
//!
//! let scan = TreeScanner::builder(scanner.clone()).with_concurrency(4).build()?;
//! let mut infected = Vec::new();
//! let (summary, cache) = scan
//!     .scan(tree.path(), Some(ScanCache::new("")), |report| {
//!         if let Outcome::Infected { signature } = &report.outcome {
//!             infected.push((report.path.clone(), signature.clone()));
//!         }
//!     })
//!     .await?;
//! assert_eq!((summary.clean, summary.infected), (1, 1));
//! assert_eq!(infected[0].0, tree.path().join("shell.php"));
//!
//! // A rescan skips the file found clean (same inode, size, mtime, ctime, signatures).
//! let (again, _) = scan.scan(tree.path(), cache, |_| {}).await?;
//! assert_eq!((again.unchanged, again.scanned), (1, 1));
//! # Ok(()) }
//! ```
//!
//! - [`Scanner`]: the trait (required: `scan_reader`, `signature_version`). Infected, clean
//!   and too large are [`Verdict`]s; a failure is an `Err`, never a clean verdict.
//!   `virusscan::conformance` (feature `conformance`) is the suite every scanner runs.
//! - [`ClamdClient`]: clamd over TCP or a unix socket; `zPING`, `zVERSION`, `zINSTREAM` with
//!   chunk framing, `zFILDES` descriptor passing on a unix socket (as `clamdscan --fdpass`),
//!   a small pool of `zIDSESSION` sessions, timeouts on every call, and clamd's
//!   `StreamMaxLength` reported as too large even when clamd resets the connection mid-send.
//! - [`TreeScanner`]: a directory tree in parallel (bounded), never following a symlink, with
//!   an incremental [`ScanCache`] keyed on file identity and the signature version.
//! - [`watch`]: inotify on upload directories; a file is scanned once it stops changing.
//! - [`Quarantine`]: moves infected files away with a JSON record and restores them exactly;
//!   a crash at any point leaves each file in place or quarantined with its record.
//!
//! Dependencies, and why: `rustix` (safe `openat`/`fstatat` with `O_NOFOLLOW`, `SCM_RIGHTS`
//! for descriptor passing, inotify, `renameat2(RENAME_NOREPLACE)`; no `unsafe` here), `tokio`
//! and `async-trait` (the scanner is a trait object used from async services), `ring`
//! (SHA-256 of quarantined files), `serde`/`serde_json` (quarantine records).

mod cache;
mod clamd;
#[cfg(feature = "conformance")]
pub mod conformance;
mod error;
mod fdpass;
mod fsutil;
mod quarantine;
mod scanner;
mod tree;
pub mod watch;

pub use cache::ScanCache;
pub use clamd::{ClamdClient, ClamdClientBuilder};
pub use error::{Error, Result};
pub use fsutil::FileIdentity;
pub use quarantine::{Quarantine, QuarantineRecord, RecoveryAction};
pub use scanner::{Scanner, Verdict};
pub use tree::{FileReport, Outcome, SkipReason, TreeScanner, TreeScannerBuilder, TreeSummary};
