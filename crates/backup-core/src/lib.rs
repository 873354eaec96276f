//! Deduplicated, compressed, encrypted backups on any [`object_store::ObjectStore`].
//!
//! ```
//! use std::sync::Arc;
//! use backup_core::{BackupOptions, InitOptions, KeySource, NoProgress, Repository, RestoreOptions};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let work = tempfile::tempdir()?;
//! let src = work.path().join("site");
//! std::fs::create_dir(&src)?;
//! std::fs::write(src.join("index.php"), "<?php echo 'hello';")?;
//!
//! // Any object store: a local directory here, S3 or memory elsewhere.
//! let store = backup_core::StoreOptions::new(work.path().join("repo").to_string_lossy())
//!     .with_create(true)
//!     .build()?;
//! let key = KeySource::passphrase("correct horse battery staple");
//! let repo = Arc::new(Repository::init(store, "repo", &key, InitOptions::new()).await?);
//!
//! let options = BackupOptions::builder([&src]).with_tag("nightly").build()?;
//! let (id, snapshot) = backup_core::backup(repo.clone(), options, Arc::new(NoProgress)).await?;
//! assert_eq!(snapshot.summary.files, 1);
//!
//! let target = work.path().join("restored");
//! backup_core::restore(repo, &id, RestoreOptions::builder(&target).build()?, Arc::new(NoProgress)).await?;
//! assert!(backup_core::compare_trees(&src, &target.join("site"))?.is_empty());
//! # Ok(())
//! # }
//! ```
//!
//! The repository format is in `FORMAT.md`; in short: keyed FastCDC chunks, keyed BLAKE3 ids,
//! zstd, pack objects, an index, trees and snapshots, every object a crypto-at-rest envelope bound
//! to its name.
//!
//! Old snapshots are forgotten by a retention policy ([`retention`], which recommends a
//! short-term plus long-term policy); forgetting deletes snapshot objects only, and the data
//! stays until a [`prune`](prune::prune), which runs under an exclusive [`lock`] that
//! backups (shared locks) exclude. [`check`] verifies the structure and, all at
//! once or part by part, the data, naming each damaged object with the snapshots and files it
//! affects.
//! [`repair`] rebuilds the index from the pack headers and rewrites damaged snapshots to keep
//! what can still be read. Every store [`StoreOptions::build`] opens retries transient errors
//! with backoff and bounds every call in time ([`retry`]); the `fault-injection` feature adds
//! `faults`, an object store that misbehaves on purpose, for tests.
//!
//! Snapshots are copied, incrementally, into a mirror on another store by [`copy`]; [`heal`]
//! rebuilds damaged packs, trees, index and snapshot objects from such a mirror, and lost
//! chunks from the source files where they still hold the same data; a host
//! that must not be able to destroy its own history opens its repository append-only
//! ([`append_only`]); and [`schedule`] runs backups, forgets and scrubs from a policy file,
//! keeping a status file for health checks. A host that must not be able to read its own
//! backups writes a write-only repository ([`write_only`]): it holds only the owner's public
//! key, and only the owner's identity opens what is stored.
//!
//! On a remote store (S3), a restore reads only the byte ranges its files need, close ones
//! merged into one ranged GET and 16 in flight ahead of the threads that decode and write, and
//! a backup uploads 6 packs at once ([`BackupOptionsBuilder::with_uploads`]).
//!
//! # Why these dependencies
//!
//! * `object_store`: one async API over local disk, S3 (with conditional puts for `init`) and
//!   memory; built with ring for TLS and signing (no OpenSSL, no aws-lc). Local directories get
//!   its `LocalFileSystem` wrapped with durable, `O_DIRECT` puts (`async-trait` is for that
//!   wrapper, as object_store's trait uses it).
//! * `crypto-at-rest`: all encryption (envelopes with key commitment, Argon2id passphrases,
//!   keyring files); this crate holds no AEAD code.
//! * `fastcdc`: a maintained FastCDC 2020 whose `cut_gear` takes our keyed gear table.
//! * `blake3`: keyed hashing for chunk ids and key derivation at several GB/s.
//! * `zstd`: the best speed/ratio trade-off for backup data; level 1 by default, since small
//!   files compressed in groups gain more than higher levels do.
//! * `ciborium` + `serde_bytes`: CBOR with byte strings, so non-UTF-8 file names round-trip.
//! * `crossbeam-channel`: bounded multi-consumer channels that keep the pipeline's memory bounded.
//! * `globset`: fast matching of many exclude globs; `xattr`, `filetime`: metadata std lacks;
//!   `rustix`: `mknodat` for FIFOs and device nodes, which std cannot create, and `flock` for
//!   the schedule's state directory.
//! * `toml` and `serde_json`: the schedule's policy file (TOML, as operators write other
//!   configuration) and its status file (JSON, which health checks read).

mod backup;
pub mod check;
mod chunker;
mod cipher;
mod compare;
mod compress;
#[cfg(feature = "conformance")]
pub mod conformance;
mod error;
#[cfg(feature = "fault-injection")]
pub mod faults;
pub mod format;
mod fsmeta;
pub mod heal;
#[cfg(test)]
mod hostile_tests;
pub mod keys;
mod local;
pub mod lock;
pub mod ops;
mod pack;
mod pool;
mod progress;
pub mod prune;
pub mod repair;
mod repo;
mod restore;
pub mod retention;
pub mod retry;
mod scan;
mod store;

// Mirrors, append-only handles and schedules (issue 13).
pub mod append_only;
pub mod copy;
mod fetch;
pub mod schedule;
pub mod write_only;

pub use backup::{BackupOptions, BackupOptionsBuilder, backup};
pub use chunker::ChunkerParams;
pub use cipher::KeySource;
pub use compare::{compare_trees, compare_trees_ignoring};
pub use error::{Error, Result, report};
pub use progress::{NoProgress, Progress};
pub use repo::{InitOptions, Repository, SkippedObject};
pub use restore::{DamagedEntry, RestoreOptions, RestoreOptionsBuilder, RestoreSummary, restore};
pub use store::StoreOptions;

pub use append_only::AppendOnlyStore;
